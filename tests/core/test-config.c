/* test-config.c: config.json parsing, validation and writing against what transformers 5.17
 * reads from the same files (the fixtures' configs and the four released sizes). */
#include "test-support.h"

#include "config.h"
#include "sam2.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static void
assert_ints (const int *values, int n, const int *expected, int n_expected)
{
  g_assert_cmpint (n, ==, n_expected);
  for (int i = 0; i < n; i++)
    g_assert_cmpint (values[i], ==, expected[i]);
}

#define ASSERT_INTS(values, n, ...)                                                                \
  assert_ints (values, n, (const int[]) { __VA_ARGS__ },                                          \
               sizeof ((const int[]) { __VA_ARGS__ }) / sizeof (int))

static Sam2Config
parse_ok (const char *json)
{
  Sam2Config config;
  GError *error = NULL;
  if (!sam2_config_parse (json, -1, &config, &error))
    g_error ("parse failed: %s\nfor: %.400s", error->message, json);
  return config;
}

/* Parse must fail with SAM2_ERROR_CONFIG and a message holding every needle (NULL-terminated). */
static void
assert_parse_error (const char *json, gssize length, ...)
{
  Sam2Config config, before;
  sam2_config_init_defaults (&config);
  config.mask_decoder.mlp_dim = 12345;   /* a value no parse would produce */
  before = config;
  GError *error = NULL;
  gboolean ok = sam2_config_parse (json, length, &config, &error);
  if (ok)
    g_error ("parse unexpectedly succeeded for: %.400s", json);
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  va_list args;
  va_start (args, length);
  const char *needle;
  while ((needle = va_arg (args, const char *)) != NULL)
    if (strstr (error->message, needle) == NULL)
      g_error ("message \"%s\" lacks \"%s\"", error->message, needle);
  va_end (args);
  /* a failed parse leaves the caller's config alone */
  g_assert_true (sam2_config_equal (&config, &before));
  g_assert_cmpint (config.mask_decoder.mlp_dim, ==, 12345);
  g_test_message ("ok: %s", error->message);
  g_error_free (error);
}

/* `base` with the member at dotted `path` replaced by the JSON `value` (NULL: removed);
 * objects on the way are created. */
static char *
with_member (const char *base, const char *path, const char *value)
{
  GError *error = NULL;
  JsonNode *root = json_from_string (base, &error);
  g_assert_no_error (error);
  JsonObject *object = json_node_get_object (root);
  char **keys = g_strsplit (path, ".", -1);
  guint n = g_strv_length (keys);
  for (guint i = 0; i + 1 < n; i++) {
    JsonNode *child = json_object_get_member (object, keys[i]);
    if (child == NULL || !JSON_NODE_HOLDS_OBJECT (child)) {
      json_object_set_object_member (object, keys[i], json_object_new ());
      child = json_object_get_member (object, keys[i]);
    }
    object = json_node_get_object (child);
  }
  if (value == NULL) {
    json_object_remove_member (object, keys[n - 1]);
  } else {
    JsonNode *node = json_from_string (value, &error);
    g_assert_no_error (error);
    json_object_set_member (object, keys[n - 1], node);
  }
  char *text = json_to_string (root, FALSE);
  json_node_unref (root);
  g_strfreev (keys);
  return text;
}

/* "{}" (the defaults, sam2.1-hiera-tiny) with one member set, expected to fail. */
#define ASSERT_MEMBER_ERROR(path, value, ...)                                                      \
  G_STMT_START {                                                                                   \
    char *json_ = with_member ("{}", path, value);                                                 \
    assert_parse_error (json_, -1, __VA_ARGS__, NULL);                                             \
    g_free (json_);                                                                                \
  } G_STMT_END

static Sam2Config
parse_member (const char *base, const char *path, const char *value)
{
  char *json = with_member (base, path, value);
  Sam2Config config = parse_ok (json);
  g_free (json);
  return config;
}

/* to_json, parse back, compare; model_type comes back as SAM2. */
static void
assert_round_trip (const Sam2Config *config)
{
  char *json = sam2_config_to_json (config);
  Sam2Config back = parse_ok (json), expected = *config;
  expected.model_type = SAM2_MODEL_TYPE_SAM2;
  g_assert_true (sam2_config_equal (&back, &expected));
  /* HF's strict dataclasses refuse an int for a float field */
  g_assert_nonnull (strstr (json, "\"mlp_ratio\": "));
  g_assert_null (strstr (json, "\"mlp_ratio\": 4,"));
  g_assert_null (strstr (json, "\"layer_norm_eps\": 1,"));
  g_assert_nonnull (strstr (json, "\"architectures\": [\"Sam2Model\"]"));
  g_free (json);
}

static char *
read_fixture_text (const char *relative)
{
  char *path = sam2_test_fixture_path (relative);
  if (path == NULL)
    return NULL;
  char *text = NULL;
  GError *error = NULL;
  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  g_free (path);
  return text;
}

static void
assert_tiny_backbone (const Sam2Config *c)
{
  const Sam2HieraConfig *b = &c->vision.backbone;
  g_assert_cmpint (b->hidden_size, ==, 96);
  g_assert_cmpint (b->num_attention_heads, ==, 1);
  g_assert_cmpint (b->num_channels, ==, 3);
  ASSERT_INTS (b->image_size, 2, 1024, 1024);
  ASSERT_INTS (b->patch_kernel_size, 2, 7, 7);
  ASSERT_INTS (b->patch_stride, 2, 4, 4);
  ASSERT_INTS (b->patch_padding, 2, 3, 3);
  ASSERT_INTS (b->query_stride, 2, 2, 2);
  ASSERT_INTS (b->window_pos_embed_bkg_size, 2, 7, 7);
  g_assert_cmpint (b->num_query_pool_stages, ==, 3);
  ASSERT_INTS (b->blocks_per_stage, b->n_stages, 1, 2, 7, 2);
  ASSERT_INTS (b->embed_dim_per_stage, b->n_stages, 96, 192, 384, 768);
  ASSERT_INTS (b->num_attention_heads_per_stage, b->n_stages, 1, 2, 4, 8);
  ASSERT_INTS (b->window_size_per_stage, b->n_stages, 8, 4, 14, 7);
  ASSERT_INTS (b->global_attention_blocks, b->n_global_attention_blocks, 5, 7, 9);
  g_assert_cmpfloat (b->mlp_ratio, ==, 4.0);
  g_assert_cmpint (b->hidden_act, ==, SAM2_ACT_GELU);
  g_assert_cmpfloat (b->layer_norm_eps, ==, 1e-6);
}

/* Everything but the backbone is the same in all four released sizes. */
static void
assert_released_heads (const Sam2Config *c)
{
  const Sam2VisionConfig *v = &c->vision;
  g_assert_cmpint (v->n_backbone_feature_sizes, ==, 3);
  for (int i = 0; i < 3; i++)
    ASSERT_INTS (v->backbone_feature_sizes[i], 2, 256 >> i, 256 >> i);
  g_assert_cmpint (v->fpn_hidden_size, ==, 256);
  g_assert_cmpint (v->fpn_kernel_size, ==, 1);
  g_assert_cmpint (v->fpn_stride, ==, 1);
  g_assert_cmpint (v->fpn_padding, ==, 0);
  ASSERT_INTS (v->fpn_top_down_levels, v->n_fpn_top_down_levels, 2, 3);
  g_assert_cmpint (v->num_feature_levels, ==, 3);
  g_assert_cmpint (v->hidden_act, ==, SAM2_ACT_GELU);
  g_assert_cmpfloat (v->layer_norm_eps, ==, 1e-6);

  const Sam2PromptEncoderConfig *p = &c->prompt_encoder;
  g_assert_cmpint (p->hidden_size, ==, 256);
  g_assert_cmpint (p->image_size, ==, 1024);
  g_assert_cmpint (p->patch_size, ==, 16);
  g_assert_cmpint (p->mask_input_channels, ==, 16);
  g_assert_cmpint (p->num_point_embeddings, ==, 4);
  g_assert_cmpint (p->hidden_act, ==, SAM2_ACT_GELU);
  g_assert_cmpfloat (p->layer_norm_eps, ==, 1e-6);
  g_assert_cmpfloat (p->scale, ==, 1.0);

  const Sam2MaskDecoderConfig *d = &c->mask_decoder;
  g_assert_cmpint (d->hidden_size, ==, 256);
  g_assert_cmpint (d->hidden_act, ==, SAM2_ACT_GELU);
  g_assert_cmpint (d->mlp_dim, ==, 2048);
  g_assert_cmpint (d->num_hidden_layers, ==, 2);
  g_assert_cmpint (d->num_attention_heads, ==, 8);
  g_assert_cmpint (d->attention_downsample_rate, ==, 2);
  g_assert_cmpint (d->num_multimask_outputs, ==, 3);
  g_assert_cmpint (d->iou_head_depth, ==, 3);
  g_assert_cmpint (d->iou_head_hidden_dim, ==, 256);
  g_assert_true (d->dynamic_multimask_via_stability);
  g_assert_cmpfloat (d->dynamic_multimask_stability_delta, ==, 0.05);
  g_assert_cmpfloat (d->dynamic_multimask_stability_thresh, ==, 0.98);
}

/* ---- defaults ---------------------------------------------------------------------------- */

static void
test_defaults (void)
{
  Sam2Config c;
  sam2_config_init_defaults (&c);
  g_assert_cmpint (c.model_type, ==, SAM2_MODEL_TYPE_SAM2);
  assert_tiny_backbone (&c);
  ASSERT_INTS (c.vision.backbone_channel_list, c.vision.n_backbone_channels, 768, 384, 192, 96);
  assert_released_heads (&c);
  GError *error = NULL;
  g_assert_true (sam2_config_validate (&c, &error));
  g_assert_no_error (error);

  /* missing objects, missing keys and null Optional fields all take the defaults */
  const char *same[] = {
    "{}",
    " \n{ }\n ",
    "{\"model_type\": \"sam2\"}",
    "{\"vision_config\": null, \"prompt_encoder_config\": null, \"mask_decoder_config\": null}",
    "{\"vision_config\": {\"backbone_config\": {}}, \"prompt_encoder_config\": {}}",
    ("{\"vision_config\": {\"backbone_config\": {\"image_size\": null, \"blocks_per_stage\": null,"
     " \"global_attention_blocks\": null}, \"backbone_feature_sizes\": null}}"),
    "{\"model_type\": null, \"architectures\": null}",
    "{\"architectures\": []}",
  };
  for (guint i = 0; i < G_N_ELEMENTS (same); i++) {
    Sam2Config parsed = parse_ok (same[i]);
    g_assert_true (sam2_config_equal (&parsed, &c));
  }
}

/* ---- the fixtures and the released configs ------------------------------------------------ */

static void
test_fixture_mini (void)
{
  char *text = read_fixture_text ("sam2-mini-hash/config.json");
  if (text == NULL)
    return;
  Sam2Config c = parse_ok (text);
  g_free (text);
  const Sam2HieraConfig *b = &c.vision.backbone;
  g_assert_cmpint (c.model_type, ==, SAM2_MODEL_TYPE_SAM2);
  g_assert_cmpint (b->hidden_size, ==, 16);
  ASSERT_INTS (b->image_size, 2, 256, 256);
  ASSERT_INTS (b->blocks_per_stage, b->n_stages, 1, 2, 3, 1);
  ASSERT_INTS (b->embed_dim_per_stage, b->n_stages, 16, 32, 64, 128);
  ASSERT_INTS (b->num_attention_heads_per_stage, b->n_stages, 1, 2, 4, 8);
  ASSERT_INTS (b->window_size_per_stage, b->n_stages, 4, 4, 6, 4);
  ASSERT_INTS (b->global_attention_blocks, b->n_global_attention_blocks, 4);
  ASSERT_INTS (c.vision.backbone_channel_list, c.vision.n_backbone_channels, 128, 64, 32, 16);
  g_assert_cmpint (c.vision.fpn_hidden_size, ==, 64);
  ASSERT_INTS (c.vision.backbone_feature_sizes[0], 2, 64, 64);
  ASSERT_INTS (c.vision.backbone_feature_sizes[2], 2, 16, 16);
  g_assert_cmpint (c.prompt_encoder.image_size, ==, 256);
  g_assert_cmpint (c.prompt_encoder.hidden_size, ==, 64);
  g_assert_cmpint (c.mask_decoder.hidden_size, ==, 64);
  g_assert_cmpint (c.mask_decoder.mlp_dim, ==, 128);
  g_assert_cmpint (c.mask_decoder.iou_head_hidden_dim, ==, 64);

  /* the geometry the README promises: 64x64 patches, q-pooling to 8x8 */
  const int expected[4] = { 64, 32, 16, 8 };
  for (int s = 0; s < 4; s++) {
    int h = 0, w = 0;
    g_assert_true (sam2_config_stage_size (&c, s, &h, &w));
    g_assert_cmpint (h, ==, expected[s]);
    g_assert_cmpint (w, ==, expected[s]);
  }
  g_assert_false (sam2_config_stage_size (&c, 4, NULL, NULL));
  g_assert_false (sam2_config_stage_size (&c, -1, NULL, NULL));
  assert_round_trip (&c);
}

static void
test_fixture_shapes (void)
{
  char *text = read_fixture_text ("sam2-shapes/config.json");
  if (text == NULL)
    return;
  Sam2Config c = parse_ok (text);
  g_free (text);
  const Sam2HieraConfig *b = &c.vision.backbone;
  g_assert_cmpint (b->hidden_size, ==, 32);
  ASSERT_INTS (b->blocks_per_stage, b->n_stages, 1, 2, 4, 1);
  ASSERT_INTS (b->window_size_per_stage, b->n_stages, 8, 4, 8, 4);
  ASSERT_INTS (b->global_attention_blocks, b->n_global_attention_blocks, 5);
  g_assert_cmpint (c.vision.fpn_hidden_size, ==, 128);
  g_assert_cmpint (c.mask_decoder.mlp_dim, ==, 512);
  g_assert_cmpint (c.prompt_encoder.image_size, ==, 256);
  assert_round_trip (&c);
}

static void
test_fixture_tiny (void)
{
  char *image = read_fixture_text ("sam2-tiny-hash/config.json");
  char *video = image != NULL ? read_fixture_text ("sam2-tiny-hash/video_config.json") : NULL;
  if (video == NULL) {
    g_free (image);
    return;
  }
  Sam2Config a = parse_ok (image), b = parse_ok (video);
  g_free (image);
  g_free (video);
  g_assert_cmpint (a.model_type, ==, SAM2_MODEL_TYPE_SAM2);
  g_assert_cmpint (b.model_type, ==, SAM2_MODEL_TYPE_SAM2_VIDEO);
  assert_tiny_backbone (&a);
  assert_released_heads (&a);
  b.model_type = SAM2_MODEL_TYPE_SAM2;
  g_assert_true (sam2_config_equal (&a, &b));
  Sam2Config defaults;
  sam2_config_init_defaults (&defaults);
  g_assert_true (sam2_config_equal (&a, &defaults));
  assert_round_trip (&a);
}

typedef struct {
  const char *size;
  int hidden, heads, bkg;
  int blocks[4], dims[4], stage_heads[4], windows[4], global[3];
} Sam2ReleasedSize;

/* What transformers reads from the hub's configs (hf_keys_configs.json, written by it). */
static const Sam2ReleasedSize released_sizes[] = {
  { "tiny", 96, 1, 7, { 1, 2, 7, 2 }, { 96, 192, 384, 768 }, { 1, 2, 4, 8 }, { 8, 4, 14, 7 },
    { 5, 7, 9 } },
  { "small", 96, 1, 7, { 1, 2, 11, 2 }, { 96, 192, 384, 768 }, { 1, 2, 4, 8 }, { 8, 4, 14, 7 },
    { 7, 10, 13 } },
  { "base-plus", 112, 2, 14, { 2, 3, 16, 3 }, { 112, 224, 448, 896 }, { 2, 4, 8, 16 },
    { 8, 4, 14, 7 }, { 12, 16, 20 } },
  { "large", 144, 2, 7, { 2, 6, 36, 4 }, { 144, 288, 576, 1152 }, { 2, 4, 8, 16 },
    { 8, 4, 16, 8 }, { 23, 33, 43 } },
};

static void
test_released_configs (void)
{
  char *path = sam2_test_fixture_path ("hf_keys_configs.json");
  if (path == NULL)
    return;
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  g_free (path);
  JsonObject *all = json_node_get_object (json_parser_get_root (parser));

  for (guint i = 0; i < G_N_ELEMENTS (released_sizes); i++) {
    const Sam2ReleasedSize *r = &released_sizes[i];
    Sam2Config parsed[2];
    for (int video = 0; video < 2; video++) {
      char *key = g_strdup_printf ("%s/%s", video ? "video_config" : "config", r->size);
      JsonNode *node = json_object_get_member (all, key);
      g_assert_nonnull (node);
      char *text = json_to_string (node, TRUE);
      Sam2Config c = parse_ok (text);
      g_free (text);
      g_free (key);

      g_assert_cmpint (c.model_type, ==, video ? SAM2_MODEL_TYPE_SAM2_VIDEO
                                               : SAM2_MODEL_TYPE_SAM2);
      const Sam2HieraConfig *b = &c.vision.backbone;
      g_assert_cmpint (b->hidden_size, ==, r->hidden);
      g_assert_cmpint (b->num_attention_heads, ==, r->heads);
      ASSERT_INTS (b->window_pos_embed_bkg_size, 2, r->bkg, r->bkg);
      assert_ints (b->blocks_per_stage, b->n_stages, r->blocks, 4);
      assert_ints (b->embed_dim_per_stage, b->n_stages, r->dims, 4);
      assert_ints (b->num_attention_heads_per_stage, b->n_stages, r->stage_heads, 4);
      assert_ints (b->window_size_per_stage, b->n_stages, r->windows, 4);
      assert_ints (b->global_attention_blocks, b->n_global_attention_blocks, r->global, 3);
      ASSERT_INTS (c.vision.backbone_channel_list, c.vision.n_backbone_channels, r->dims[3],
                   r->dims[2], r->dims[1], r->dims[0]);
      assert_released_heads (&c);
      for (int s = 0; s < 4; s++) {
        int h, w;
        g_assert_true (sam2_config_stage_size (&c, s, &h, &w));
        g_assert_cmpint (h, ==, 256 >> s);
        g_assert_cmpint (w, ==, 256 >> s);
      }
      assert_round_trip (&c);
      parsed[video] = c;
    }
    parsed[1].model_type = SAM2_MODEL_TYPE_SAM2;
    g_assert_true (sam2_config_equal (&parsed[0], &parsed[1]));
  }
  g_object_unref (parser);
}

/* ---- accepted forms -------------------------------------------------------------------------- */

static void
test_int_or_list (void)
{
  Sam2Config defaults;
  sam2_config_init_defaults (&defaults);
  /* every "int or list" key, given as an int, is the same model */
  const char *json =
    "{\"vision_config\": {\"backbone_config\": {\"image_size\": 1024, \"patch_kernel_size\": 7,"
    " \"patch_stride\": 4, \"patch_padding\": 3, \"query_stride\": 2,"
    " \"window_positional_embedding_background_size\": 7}},"
    " \"prompt_encoder_config\": {\"image_size\": [1024, 1024], \"patch_size\": [16, 16]}}";
  Sam2Config c = parse_ok (json);
  g_assert_true (sam2_config_equal (&c, &defaults));

  /* integral floats, as some writers emit ints; -0.0 is 0 */
  c = parse_ok ("{\"vision_config\": {\"backbone_config\": {\"blocks_per_stage\": [1.0, 2, 7e0, "
                "2.0], \"hidden_size\": 96.0, \"patch_padding\": [3.0, 3]}, \"fpn_padding\": -0.0},"
                " \"mask_decoder_config\": {\"mlp_dim\": 2048.0},"
                " \"prompt_encoder_config\": {\"scale\": 1.0}}");
  g_assert_true (sam2_config_equal (&c, &defaults));
  /* floats given as ints */
  c = parse_ok ("{\"vision_config\": {\"backbone_config\": {\"mlp_ratio\": 4},"
                " \"layer_norm_eps\": 1e-6}, \"mask_decoder_config\":"
                " {\"dynamic_multimask_stability_thresh\": 1}}");
  g_assert_cmpfloat (c.vision.backbone.mlp_ratio, ==, 4.0);
  g_assert_cmpfloat (c.mask_decoder.dynamic_multimask_stability_thresh, ==, 1.0);

  /* non-square values where the model allows them: a patch kernel whose grid stays square */
  char *json5 = with_member ("{}", "vision_config.backbone_config.patch_kernel_size", "[7, 5]");
  c = parse_member (json5, "vision_config.backbone_config.patch_padding", "[3, 2]");
  ASSERT_INTS (c.vision.backbone.patch_kernel_size, 2, 7, 5);
  ASSERT_INTS (c.vision.backbone.patch_padding, 2, 3, 2);
  assert_round_trip (&c);
  /* ...and refused where it would not (a 256x257 grid) */
  assert_parse_error (json5, -1, "must divide the 256x257 patch grid", NULL);
  g_free (json5);

  /* unknown keys (HF's generic ones and anything else) are ignored; the last duplicate wins,
   * as in Python */
  c = parse_ok ("{\"id2label\": {\"0\": \"a\"}, \"return_dict\": true, \"dtype\": \"float16\","
                " \"torchscript\": false, \"whatever\": [[[{}]]], \"vision_config\": {\"x\": 1,"
                " \"backbone_config\": {\"_name_or_path\": \"\", \"y\": null}},"
                " \"mask_decoder_config\": {\"mlp_dim\": 1, \"mlp_dim\": 2048}}");
  g_assert_true (sam2_config_equal (&c, &defaults));

  /* strings may hold any escape */
  c = parse_ok ("{\"note\": \"\\u00e9\\n\\t\\\"\\\\\\/ \\ud83d\\ude00 caf\xc3\xa9\","
                " \"model_type\": \"sam2\"}");
  g_assert_true (sam2_config_equal (&c, &defaults));
}

static void
test_model_types (void)
{
  struct {
    const char *json;
    Sam2ModelType type;
  } cases[] = {
    { "{\"model_type\": \"sam2\"}", SAM2_MODEL_TYPE_SAM2 },
    { "{\"model_type\": \"sam2_video\"}", SAM2_MODEL_TYPE_SAM2_VIDEO },
    { "{\"architectures\": [\"Sam2Model\"]}", SAM2_MODEL_TYPE_SAM2 },
    { "{\"architectures\": [\"Sam2VideoModel\"]}", SAM2_MODEL_TYPE_SAM2_VIDEO },
    { "{\"architectures\": [\"Other\", \"Sam2VideoModel\"]}", SAM2_MODEL_TYPE_SAM2_VIDEO },
    { "{\"num_maskmem\": 7, \"memory_attention_hidden_size\": 256}", SAM2_MODEL_TYPE_SAM2_VIDEO },
    /* model_type decides over the rest */
    { "{\"model_type\": \"sam2\", \"architectures\": [\"Sam2VideoModel\"], \"num_maskmem\": 7}",
      SAM2_MODEL_TYPE_SAM2 },
    { "{\"vision_config\": {\"model_type\": \"sam2_vision_model\", \"backbone_config\":"
      " {\"model_type\": \"sam2_hiera_det_model\"}}, \"prompt_encoder_config\":"
      " {\"model_type\": \"\"}, \"mask_decoder_config\": {\"model_type\": \"anything\"}}",
      SAM2_MODEL_TYPE_SAM2 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    Sam2Config c = parse_ok (cases[i].json);
    g_assert_cmpint (c.model_type, ==, cases[i].type);
  }

  assert_parse_error ("{\"model_type\": \"sam\"}", -1, "model_type \"sam\" is not supported",
                      "\"sam2\"", "\"sam2_video\"", NULL);
  assert_parse_error ("{\"model_type\": \"sam3_video\"}", -1, "\"sam3_video\"", NULL);
  assert_parse_error ("{\"model_type\": 2}", -1, "model_type: expected a string, got a number",
                      NULL);
  assert_parse_error ("{\"architectures\": [\"SamModel\"]}", -1, "\"SamModel\"", "not supported",
                      NULL);
  assert_parse_error ("{\"architectures\": \"Sam2Model\"}", -1,
                      "architectures: expected a list of strings, got a string", NULL);
  assert_parse_error ("{\"architectures\": [1]}", -1, "architectures: expected a list of strings",
                      NULL);
  assert_parse_error ("{\"vision_config\": {\"model_type\": \"sam_vision_model\"}}", -1,
                      "vision_config.model_type is \"sam_vision_model\"", "sam2_vision_model",
                      NULL);
  assert_parse_error ("{\"vision_config\": {\"backbone_config\": {\"model_type\": \"timm_wrapper\"}"
                      "}}", -1, "vision_config.backbone_config.model_type", "timm_wrapper", NULL);
}

/* ---- refused input ------------------------------------------------------------------------ */

static void
test_malformed_json (void)
{
  assert_parse_error ("{\"model_type\": \"sam2\", \"vision_config\": {", -1,
                      "invalid JSON at line 1", "unexpected end", NULL);
  assert_parse_error ("{\"model_type\": \"sa", -1, "unterminated string", NULL);
  assert_parse_error ("{\"a\": 1} garbage", -1, "after the JSON value", NULL);
  assert_parse_error ("{\"a\": 1} {}", -1, "after the JSON value", NULL);
  assert_parse_error ("{\"a\": 1}\n\n  x", -1, "line 3, column 3", NULL);
  assert_parse_error ("", -1, "empty", NULL);
  assert_parse_error ("  \n ", -1, "empty", NULL);
  assert_parse_error ("{'a': 1}", -1, "expected a key in double quotes", NULL);
  assert_parse_error ("{\"a\": 0x10}", -1, "invalid JSON", NULL);
  assert_parse_error ("{\"a\": 01}", -1, "invalid JSON", NULL);
  assert_parse_error ("{\"a\": NaN}", -1, "expected a value", NULL);
  assert_parse_error ("{\"a\": Infinity}", -1, "expected a value", NULL);
  assert_parse_error ("{\"a\": 1.}", -1, "digits must follow", NULL);
  assert_parse_error ("{\"a\": 1e}", -1, "digits must follow the exponent", NULL);
  assert_parse_error ("{\"a\": -}", -1, "invalid number", NULL);
  assert_parse_error ("{\"a\": 1,}", -1, "expected a key", NULL);
  assert_parse_error ("{\"a\": [1,]}", -1, "expected a value", NULL);
  assert_parse_error ("{\"a\" 1}", -1, "expected ':'", NULL);
  assert_parse_error ("{\"a\": 1 \"b\": 2}", -1, "expected ',' or '}'", NULL);
  assert_parse_error ("{\"a\": [1 2]}", -1, "expected ',' or ']'", NULL);
  assert_parse_error ("{\"a\": tru}", -1, "expected a value", NULL);
  assert_parse_error ("{\"a\": \"x\ty\"}", -1, "control character", NULL);
  assert_parse_error ("{\"a\": \"\\x\"}", -1, "invalid escape", NULL);
  assert_parse_error ("{\"a\": \"\\u12G4\"}", -1, "four hexadecimal digits", NULL);
  /* a NUL escape ended the string early: "relu\u0000 but gelu" was read as relu */
  assert_parse_error ("{\"hidden_act\": \"relu\\u0000 but gelu\"}", -1, "NUL character", NULL);
  assert_parse_error ("{\"a\": \"\xff\"}", -1, "not UTF-8", NULL);
  assert_parse_error ("\xef\xbb\xbf{}", -1, "expected a value", NULL);   /* BOM, as Python */
  /* an embedded NUL with an explicit length */
  assert_parse_error ("{\"a\": 1}\0{}", 11, "NUL byte", NULL);
  /* json-glib would wrap these to -1 and 1 */
  assert_parse_error ("{\"a\": 99999999999999999999999}", -1, "does not fit in 64 bits", NULL);
  assert_parse_error ("{\"a\": 18446744073709551617}", -1, "does not fit in 64 bits", NULL);
  assert_parse_error ("{\"a\": -9223372036854775809}", -1, "does not fit in 64 bits", NULL);
  Sam2Config c = parse_ok ("{\"a\": 9223372036854775807, \"b\": -9223372036854775808}");
  g_assert_cmpint (c.model_type, ==, SAM2_MODEL_TYPE_SAM2);

  /* nesting that would overflow json-glib's recursion */
  GString *deep = g_string_new ("{\"a\": ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  assert_parse_error (deep->str, -1, "nested more than 64 levels", NULL);
  g_string_truncate (deep, 0);
  for (int i = 0; i < 63; i++)
    g_string_append (deep, "{\"a\": ");
  g_string_append (deep, "1");
  for (int i = 0; i < 63; i++)
    g_string_append_c (deep, '}');
  c = parse_ok (deep->str);   /* 63 levels are fine */
  g_string_free (deep, TRUE);

  /* the config is a JSON object */
  assert_parse_error ("[]", -1, "expected a JSON object (the config dict), got a list", NULL);
  assert_parse_error ("\"sam2\"", -1, "got a string", NULL);
  assert_parse_error ("12", -1, "got a number", NULL);
  assert_parse_error ("null", -1, "got null", NULL);
}

static void
test_type_errors (void)
{
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "\"1, 2, 7, 2\"",
                       "vision_config.backbone_config.blocks_per_stage: expected a list of "
                       "integers, got a string");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "{}",
                       "blocks_per_stage: expected a list of integers, got an object");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, \"2\", 7, 2]",
                       "blocks_per_stage: expected a list of integers, but entry 1 is a string");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, 2.5, 7, 2]",
                       "vision_config.backbone_config.blocks_per_stage[1]: expected an integer, "
                       "got 2.5");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, null, 7, 2]",
                       "entry 1 is null");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "\"96\"",
                       "vision_config.backbone_config.hidden_size: expected an integer, got a "
                       "string");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "true",
                       "hidden_size: expected an integer, got a boolean");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "null",
                       "hidden_size: expected an integer, got null");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "96.5",
                       "hidden_size: expected an integer, got 96.5");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.image_size", "\"1024\"",
                       "image_size: expected an integer or a list of 2 integers, got a string");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.image_size", "[1024]",
                       "image_size: expected 2 entries, got 1");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.query_stride", "[2, 2, 2]",
                       "query_stride: expected 2 entries, got 3");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.mlp_ratio", "\"4\"",
                       "mlp_ratio: expected a number, got a string");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_act", "1",
                       "vision_config.backbone_config.hidden_act: expected an activation name "
                       "(a string), got a number");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_feature_sizes", "[[256, 256], [128], [64, 64]]",
                       "vision_config.backbone_feature_sizes[1]: expected 2 entries, got 1");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_feature_sizes", "[256, 128, 64]",
                       "backbone_feature_sizes[0]: expected a list of 2 integers, got a number");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_feature_sizes", "\"x\"",
                       "backbone_feature_sizes: expected a list of [height, width] lists");
  ASSERT_MEMBER_ERROR ("vision_config.fpn_top_down_levels", "2",
                       "fpn_top_down_levels: expected a list of integers, got a number");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config", "[]",
                       "vision_config.backbone_config: expected an object, got a list");
  ASSERT_MEMBER_ERROR ("vision_config", "\"sam2\"", "vision_config: expected an object, got a "
                       "string");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config", "1", "prompt_encoder_config: expected an object");
  ASSERT_MEMBER_ERROR ("mask_decoder_config", "[{}]", "mask_decoder_config: expected an object");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.dynamic_multimask_via_stability", "1",
                       "mask_decoder_config.dynamic_multimask_via_stability: expected true or "
                       "false, got a number");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.dynamic_multimask_via_stability", "null",
                       "expected true or false, got null");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.image_size", "[1024, 512]",
                       "prompt_encoder_config.image_size: [1024, 512] is not square");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.patch_size", "[16, 16, 16]", "expected 2 entries");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.scale", "1.5", "scale: expected an integer, got 1.5");
  ASSERT_MEMBER_ERROR ("vision_config.layer_norm_eps", "null",
                       "vision_config.layer_norm_eps: expected a number, got null");
}

static void
test_activations (void)
{
  struct {
    const char *name;
    Sam2Act act;
  } names[] = {
    { "gelu", SAM2_ACT_GELU }, { "gelu_python", SAM2_ACT_GELU },
    { "gelu_pytorch_tanh", SAM2_ACT_GELU_TANH }, { "gelu_new", SAM2_ACT_GELU_TANH },
    { "gelu_python_tanh", SAM2_ACT_GELU_TANH }, { "gelu_accurate", SAM2_ACT_GELU_TANH },
    { "gelu_fast", SAM2_ACT_GELU_TANH }, { "relu", SAM2_ACT_RELU }, { "silu", SAM2_ACT_SILU },
    { "swish", SAM2_ACT_SILU }, { "sigmoid", SAM2_ACT_SIGMOID }, { "linear", SAM2_ACT_NONE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    Sam2Act act = (Sam2Act) -1;
    g_assert_true (sam2_act_from_name (names[i].name, &act));
    g_assert_cmpint (act, ==, names[i].act);
    /* the canonical name maps back to the same activation */
    Sam2Act back;
    g_assert_true (sam2_act_from_name (sam2_act_name (act), &back));
    g_assert_cmpint (back, ==, act);

    char *quoted = g_strdup_printf ("\"%s\"", names[i].name);
    Sam2Config c = parse_member ("{}", "vision_config.backbone_config.hidden_act", quoted);
    g_assert_cmpint (c.vision.backbone.hidden_act, ==, names[i].act);
    c = parse_member ("{}", "prompt_encoder_config.hidden_act", quoted);
    g_assert_cmpint (c.prompt_encoder.hidden_act, ==, names[i].act);
    assert_round_trip (&c);
    g_free (quoted);
  }
  g_assert_cmpstr (sam2_act_name (SAM2_ACT_GELU), ==, "gelu");
  g_assert_cmpstr (sam2_act_name (SAM2_ACT_GELU_TANH), ==, "gelu_pytorch_tanh");
  g_assert_cmpstr (sam2_act_name (SAM2_ACT_SILU), ==, "silu");
  g_assert_null (sam2_act_name ((Sam2Act) 99));
  Sam2Act act = SAM2_ACT_RELU;
  g_assert_false (sam2_act_from_name (NULL, &act));
  g_assert_false (sam2_act_from_name ("GELU", &act));   /* HF's names are case-sensitive */
  g_assert_false (sam2_act_from_name ("quick_gelu", &act));
  g_assert_cmpint (act, ==, SAM2_ACT_RELU);

  /* formulas we do not compute are refused, listing what is supported */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_act", "\"quick_gelu\"",
                       "vision_config.backbone_config.hidden_act: unsupported activation "
                       "\"quick_gelu\"", "supported: gelu, gelu_python, gelu_pytorch_tanh",
                       "swish");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.hidden_act", "\"gelu_10\"", "\"gelu_10\"");
  ASSERT_MEMBER_ERROR ("vision_config.hidden_act", "\"mish\"", "vision_config.hidden_act");
}

static void
test_inconsistent_lists (void)
{
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.embed_dim_per_stage", "[96, 192, 384]",
                       "vision_config.backbone_config: embed_dim_per_stage has 3 entries but "
                       "blocks_per_stage has 4");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, 2, 7]",
                       "embed_dim_per_stage has 4 entries (the default) but blocks_per_stage "
                       "has 3");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.window_size_per_stage", "[8, 4, 14, 7, 7]",
                       "window_size_per_stage has 5 entries");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[]",
                       "blocks_per_stage: 0 entries; expected 1 to 8");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage",
                       "[1, 1, 1, 1, 1, 1, 1, 1, 1]", "blocks_per_stage: 9 entries; expected 1 "
                       "to 8");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.global_attention_blocks",
                       "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,"
                       " 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,"
                       " 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56,"
                       " 57, 58, 59, 60, 61, 62, 63, 64]", "65 entries; expected 0 to 64");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_channel_list", "[768, 384, 192]",
                       "vision_config.backbone_channel_list must be [768, 384, 192, 96], "
                       "embed_dim_per_stage reversed");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_channel_list", "[96, 192, 384, 768]",
                       "backbone_channel_list must be [768, 384, 192, 96]");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_feature_sizes", "[[256, 256], [128, 128]]",
                       "backbone_feature_sizes has 2 entries for 3 feature levels");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_feature_sizes",
                       "[[256, 256], [128, 128], [32, 64]]",
                       "vision_config.backbone_feature_sizes[2] is [32, 64] but the backbone "
                       "produces 64x64 maps");
  ASSERT_MEMBER_ERROR ("vision_config.num_feature_levels", "2",
                       "vision_config.num_feature_levels is 2; SAM2's mask decoder takes "
                       "exactly 3");
  ASSERT_MEMBER_ERROR ("vision_config.fpn_top_down_levels", "[2, 4]",
                       "vision_config.fpn_top_down_levels[1] is 4; levels are stages 0 to 3");
  ASSERT_MEMBER_ERROR ("vision_config.fpn_top_down_levels", "[-1]", "fpn_top_down_levels[0]: -1 "
                       "is out of range");

  /* three stages are enough for three feature levels */
  char *json = with_member ("{}", "vision_config.backbone_config.blocks_per_stage", "[1, 2, 7]");
  char *next = with_member (json, "vision_config.backbone_config.embed_dim_per_stage",
                            "[96, 192, 384]");
  g_free (json);
  json = with_member (next, "vision_config.backbone_config.num_attention_heads_per_stage",
                      "[1, 2, 4]");
  g_free (next);
  next = with_member (json, "vision_config.backbone_config.window_size_per_stage", "[8, 4, 14]");
  g_free (json);
  json = with_member (next, "vision_config.backbone_channel_list", "[384, 192, 96]");
  g_free (next);
  next = with_member (json, "vision_config.fpn_top_down_levels", "[1, 2]");
  Sam2Config c = parse_ok (next);
  g_assert_cmpint (c.vision.backbone.n_stages, ==, 3);
  /* unused entries are zeroed, so equal configs compare equal */
  g_assert_cmpint (c.vision.backbone.blocks_per_stage[3], ==, 0);
  g_assert_cmpint (c.vision.backbone_channel_list[3], ==, 0);
  assert_round_trip (&c);
  g_free (json);
  g_free (next);

  /* ...but two are not */
  json = with_member ("{}", "vision_config.backbone_config.blocks_per_stage", "[1, 2]");
  next = with_member (json, "vision_config.backbone_config.embed_dim_per_stage", "[96, 192]");
  g_free (json);
  json = with_member (next, "vision_config.backbone_config.num_attention_heads_per_stage",
                      "[1, 2]");
  g_free (next);
  next = with_member (json, "vision_config.backbone_config.window_size_per_stage", "[8, 4]");
  g_free (json);
  json = with_member (next, "vision_config.backbone_channel_list", "[192, 96]");
  g_free (next);
  next = with_member (json, "vision_config.fpn_top_down_levels", "[]");
  assert_parse_error (next, -1, "vision_config.num_feature_levels (3) exceeds the 2 backbone "
                      "stages", NULL);
  g_free (json);
  g_free (next);
}

static void
test_architecture_errors (void)
{
  /* positive sizes */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "0",
                       "vision_config.backbone_config.hidden_size: 0 is out of range; expected 1 "
                       "to 65536");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, 0, 7, 2]",
                       "vision_config.backbone_config.blocks_per_stage[1]: 0 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.patch_stride", "-4",
                       "patch_stride: -4 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.window_size_per_stage", "[8, 0, 14, 7]",
                       "window_size_per_stage[1]: 0 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.global_attention_blocks", "[-1]",
                       "global_attention_blocks[0]: -1 is out of range");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.num_multimask_outputs", "0",
                       "num_multimask_outputs: 0 is out of range");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.attention_downsample_rate", "0",
                       "attention_downsample_rate: 0 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.layer_norm_eps", "0",
                       "layer_norm_eps: 0 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.mlp_ratio", "-1", "mlp_ratio: -1 is out "
                       "of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.mlp_ratio", "0.001",
                       "mlp_ratio 0.001 gives stage 0 an MLP of 0 channels");
  /* written out: json-glib's writer, used by with_member, cannot express inf */
  assert_parse_error ("{\"vision_config\": {\"backbone_config\": {\"mlp_ratio\": 1e400}}}", -1,
                      "mlp_ratio: inf is out of range", NULL);

  /* heads, channels */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.num_attention_heads_per_stage",
                       "[1, 2, 5, 8]", "embed_dim_per_stage[2] (384) is not divisible by "
                       "num_attention_heads_per_stage[2] (5)");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "64",
                       "hidden_size (64) must equal embed_dim_per_stage[0] (96)");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.num_channels", "1",
                       "num_channels is 1; only RGB");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.num_attention_heads", "3",
                       "mask_decoder_config.hidden_size (256) must be divisible by "
                       "attention_downsample_rate * num_attention_heads (2 * 3)");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.attention_downsample_rate", "64",
                       "(64 * 8)");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.hidden_size", "128",
                       "prompt_encoder_config.hidden_size (256), mask_decoder_config.hidden_size "
                       "(128) and vision_config.fpn_hidden_size (256) must be equal");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.mask_input_channels", "18",
                       "mask_input_channels (18) must be divisible by 4");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.num_point_embeddings", "3",
                       "num_point_embeddings: 3 is out of range; expected 4");
  char *json = with_member ("{}", "mask_decoder_config.hidden_size", "260");
  char *next = with_member (json, "prompt_encoder_config.hidden_size", "260");
  g_free (json);
  json = with_member (next, "vision_config.fpn_hidden_size", "260");
  assert_parse_error (json, -1, "mask_decoder_config.hidden_size (260) must be divisible by 8",
                      NULL);
  g_free (json);
  g_free (next);

  /* input geometry */
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.image_size", "512",
                       "vision_config.backbone_config.image_size [1024, 1024] must be the square "
                       "input side prompt_encoder_config.image_size (512)");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.image_size", "[1024, 768]",
                       "image_size [1024, 768] must be the square input side");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.patch_size", "24",
                       "prompt_encoder_config.image_size (1024) is not a multiple of "
                       "patch_size (24)");
  ASSERT_MEMBER_ERROR ("prompt_encoder_config.patch_size", "32",
                       "image_size / patch_size is 32 but the image embedding is 64x64");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.patch_kernel_size", "[4096, 4096]",
                       "leaves no pixels for some stage");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.window_size_per_stage", "[12, 4, 14, 7]",
                       "window_size_per_stage[0] (12) must divide the 256x256 patch grid");

  /* query pooling where transformers fails */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.query_stride", "[2, 1]",
                       "query_stride [2, 1] is not square");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.global_attention_blocks", "[3]",
                       "block 3 starts query-pooling stage 2 and cannot attend globally");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.window_size_per_stage", "[8, 1, 14, 7]",
                       "window_size_per_stage[1] (1) with query_stride 2 does not tile stage 2");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.num_query_pool_stages", "2",
                       "fpn_top_down_levels: level 2 (64x64) is not twice level 3 (64x64)");
  json = with_member ("{}", "vision_config.backbone_config.embed_dim_per_stage",
                      "[96, 96, 384, 768]");
  next = with_member (json, "vision_config.backbone_channel_list", "[768, 384, 96, 96]");
  assert_parse_error (next, -1, "stage 1 pools queries but keeps 96 channels", NULL);
  g_free (json);
  g_free (next);

  /* accepted as transformers accepts them */
  Sam2Config c = parse_member ("{}", "vision_config.backbone_config.global_attention_blocks",
                               "[5, 7, 9, 500]");
  ASSERT_INTS (c.vision.backbone.global_attention_blocks,
               c.vision.backbone.n_global_attention_blocks, 5, 7, 9, 500);
  c = parse_member ("{}", "vision_config.backbone_config.global_attention_blocks", "[]");
  g_assert_cmpint (c.vision.backbone.n_global_attention_blocks, ==, 0);
  c = parse_member ("{}", "vision_config.backbone_config.num_query_pool_stages", "7");
  g_assert_cmpint (c.vision.backbone.num_query_pool_stages, ==, 7);
  c = parse_member ("{}", "vision_config.fpn_top_down_levels", "[0, 1, 2, 3]");
  g_assert_cmpint (c.vision.n_fpn_top_down_levels, ==, 4);
  c = parse_member ("{}", "mask_decoder_config.iou_head_depth", "1");
  g_assert_cmpint (c.mask_decoder.iou_head_depth, ==, 1);
  assert_round_trip (&c);
}

static void
test_limits (void)
{
  /* values that would overflow an int or an allocation get a message, not a wrap */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.image_size", "1e12",
                       "vision_config.backbone_config.image_size: 1000000000000 is out of range;"
                       " expected 1 to 8192");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "1000000000000",
                       "hidden_size: 1000000000000 is out of range; expected 1 to 65536");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.hidden_size", "4294967392",
                       "4294967392 is out of range");   /* 2^32 + 96: would wrap to 96 */
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, 2, 1e300, 2]",
                       "blocks_per_stage[2]: 1e+300 is out of range");
  assert_parse_error ("{\"vision_config\": {\"backbone_config\": {\"blocks_per_stage\":"
                      " [1, 2, 1e400, 2]}}}", -1, "blocks_per_stage[2]: expected an integer, got "
                      "inf", NULL);
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.image_size", "16384",
                       "16384 is out of range; expected 1 to 8192");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.mlp_dim", "65537", "65537 is out of range");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[100, 100, 50, 50]",
                       "blocks_per_stage: 300 blocks in total; at most 256");
  ASSERT_MEMBER_ERROR ("vision_config.backbone_config.blocks_per_stage", "[1, 2, 257, 2]",
                       "blocks_per_stage[2]: 257 is out of range; expected 1 to 256");
  ASSERT_MEMBER_ERROR ("mask_decoder_config.dynamic_multimask_stability_delta", "1e300",
                       "dynamic_multimask_stability_delta: 1e+300 is out of range");

  /* the largest sizes pass the range checks but not the feature-map bound */
  char *json = with_member ("{}", "vision_config.backbone_config.patch_stride", "1");
  char *next = with_member (json, "vision_config.backbone_config.patch_padding", "0");
  g_free (json);
  json = with_member (next, "vision_config.backbone_config.patch_kernel_size", "1");
  g_free (next);
  next = with_member (json, "vision_config.backbone_config.image_size", "8192");
  g_free (json);
  json = with_member (next, "prompt_encoder_config.image_size", "8192");
  g_free (next);
  assert_parse_error (json, -1, "stage 0 would hold", "more than 2147483647", NULL);
  g_free (json);
}

/* ---- configs built in code ---------------------------------------------------------------- */

static void
test_validate_in_code (void)
{
  Sam2Config c;
  GError *error = NULL;

  sam2_config_init_defaults (&c);
  c.vision.backbone.n_stages = SAM2_MAX_STAGES + 1;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "blocks_per_stage: 9 entries; expected 1 to 8"));
  g_clear_error (&error);
  g_assert_false (sam2_config_stage_size (&c, 0, NULL, NULL));
  /* to_json never reads past the arrays, whatever the counts say */
  g_free (sam2_config_to_json (&c));

  sam2_config_init_defaults (&c);
  c.vision.backbone.n_global_attention_blocks = -1;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "global_attention_blocks: -1 entries"));
  g_clear_error (&error);

  sam2_config_init_defaults (&c);
  c.vision.backbone.mlp_ratio = NAN;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "mlp_ratio: nan is out of range"));
  g_clear_error (&error);
  char *json = sam2_config_to_json (&c);   /* written, but not as JSON anyone reads */
  Sam2Config back;
  g_assert_false (sam2_config_parse (json, -1, &back, NULL));
  g_free (json);

  sam2_config_init_defaults (&c);
  c.prompt_encoder.scale = 0.5;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "prompt_encoder_config.scale: 0.5 is not an integer"));
  g_clear_error (&error);

  sam2_config_init_defaults (&c);
  c.mask_decoder.hidden_act = (Sam2Act) 42;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "mask_decoder_config.hidden_act: unknown activation"));
  g_clear_error (&error);

  sam2_config_init_defaults (&c);
  c.model_type = (Sam2ModelType) 7;
  g_assert_false (sam2_config_validate (&c, &error));
  g_clear_error (&error);

  sam2_config_init_defaults (&c);
  c.vision.backbone_feature_sizes[1][0] = 0;
  g_assert_false (sam2_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "backbone_feature_sizes[1]: 0 is out of range"));
  g_clear_error (&error);

  /* a valid config built in code round-trips */
  sam2_config_init_defaults (&c);
  c.model_type = SAM2_MODEL_TYPE_SAM2_VIDEO;
  c.vision.backbone.mlp_ratio = 2.6666666666666665;
  c.vision.backbone.layer_norm_eps = 1e-5;
  c.mask_decoder.dynamic_multimask_stability_delta = 0.1 + 0.2;
  c.mask_decoder.dynamic_multimask_via_stability = FALSE;
  c.prompt_encoder.scale = -3;
  c.vision.backbone.hidden_act = SAM2_ACT_GELU_TANH;
  g_assert_true (sam2_config_validate (&c, NULL));
  assert_round_trip (&c);
  json = sam2_config_to_json (&c);
  g_assert_nonnull (strstr (json, "\"dynamic_multimask_stability_delta\": 0.30000000000000004"));
  g_assert_nonnull (strstr (json, "\"layer_norm_eps\": 1e-05"));
  g_assert_nonnull (strstr (json, "\"mlp_ratio\": 2.6666666666666665"));
  g_assert_nonnull (strstr (json, "\"scale\": -3,"));
  g_assert_nonnull (strstr (json, "\"dynamic_multimask_via_stability\": false"));
  g_assert_nonnull (strstr (json, "\"hidden_act\": \"gelu_pytorch_tanh\""));
  g_assert_nonnull (strstr (json, "\"model_type\": \"sam2_hiera_det_model\""));
  g_assert_nonnull (strstr (json, "\"model_type\": \"sam2_vision_model\""));
  g_free (json);
}

/* ---- files ---------------------------------------------------------------------------------- */

static void
test_load (void)
{
  GError *error = NULL;
  char *dir = g_dir_make_tmp ("sam2-config-XXXXXX", &error);
  g_assert_no_error (error);
  char *good = g_build_filename (dir, "config.json", NULL);
  char *bad = g_build_filename (dir, "bad.json", NULL);
  char *missing = g_build_filename (dir, "missing.json", NULL);
  g_assert_true (g_file_set_contents (good, "{\"model_type\": \"sam2_video\"}", -1, NULL));
  g_assert_true (g_file_set_contents (bad, "{\"vision_config\": {\"fpn_hidden_size\": 0}}", -1,
                                      NULL));

  Sam2Config c;
  g_assert_true (sam2_config_load (good, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.model_type, ==, SAM2_MODEL_TYPE_SAM2_VIDEO);

  g_assert_false (sam2_config_load (bad, &c, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  g_assert_true (g_str_has_prefix (error->message, bad));
  g_assert_nonnull (strstr (error->message, "vision_config.fpn_hidden_size: 0 is out of range"));
  g_clear_error (&error);

  g_assert_false (sam2_config_load (missing, &c, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  g_assert_nonnull (strstr (error->message, missing));
  g_clear_error (&error);

  g_unlink (good);
  g_unlink (bad);
  g_rmdir (dir);
  g_free (missing);
  g_free (bad);
  g_free (good);
  g_free (dir);
}

static void
test_json_check (void)
{
  GError *error = NULL;
  const char *all = "[1, 2.5e-3, -0, true, false, null, \"\", {}, []]";
  g_assert_true (sam2_config_check_json (all, strlen (all), &error));
  g_assert_no_error (error);
  g_assert_false (sam2_config_check_json (NULL, 0, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  g_clear_error (&error);
  /* a length that ends inside a token */
  g_assert_false (sam2_config_check_json ("{\"a\": true}", 8, &error));
  g_clear_error (&error);
  g_assert_false (sam2_config_check_json ("{\"a\": \"\\u12", 11, &error));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/fixture/mini", test_fixture_mini);
  g_test_add_func ("/config/fixture/shapes", test_fixture_shapes);
  g_test_add_func ("/config/fixture/tiny", test_fixture_tiny);
  g_test_add_func ("/config/released", test_released_configs);
  g_test_add_func ("/config/int-or-list", test_int_or_list);
  g_test_add_func ("/config/model-types", test_model_types);
  g_test_add_func ("/config/malformed-json", test_malformed_json);
  g_test_add_func ("/config/type-errors", test_type_errors);
  g_test_add_func ("/config/activations", test_activations);
  g_test_add_func ("/config/inconsistent-lists", test_inconsistent_lists);
  g_test_add_func ("/config/architecture-errors", test_architecture_errors);
  g_test_add_func ("/config/limits", test_limits);
  g_test_add_func ("/config/validate-in-code", test_validate_in_code);
  g_test_add_func ("/config/load", test_load);
  g_test_add_func ("/config/json-check", test_json_check);
  return g_test_run ();
}
