/* test-model.c: the FP32 model against transformers' Sam2Model (float64 references).
 *
 * sam2-mini-hash: a small config that hits every code path, loaded from its checkpoint, every
 * case, every image embedding and every recorded block / neck activation. sam2-tiny-hash: the real
 * sam2.1-hiera-tiny architecture at 1024x1024 with its 309 weights regenerated from the hash. The
 * bounds are the named constants of check.h. */
#include "backend.h"
#include "check.h"
#include "config.h"
#include "hash-weights.h"
#include "model.h"
#include "test-support.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <unistd.h>
#include <string.h>

/* The checkpoint of the fixtures was written from the hash function: both must agree exactly. */
static void
test_hash_weights_match_checkpoint (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("sam2-mini-hash/model.safetensors");
  if (st == NULL)
    return;
  int checked = 0;
  for (int i = 0; i < sam2_safetensors_n_tensors (st); i++) {
    const Sam2StTensor *t = sam2_safetensors_nth (st, i);
    float *want = sam2_safetensors_read_f32 (st, t->name, t->numel, NULL);
    float *got = g_new (float, t->numel);
    sam2_hash_fill_weight (t->name, t->ndim, t->shape, got);
    g_assert_cmpmem (got, t->numel * sizeof (float), want, t->numel * sizeof (float));
    g_free (got);
    g_free (want);
    checked++;
  }
  g_assert_cmpint (checked, >, 200);
  sam2_safetensors_close (st);
}

static void
test_mini_reference (void)
{
  Sam2CheckReport *report = sam2_test_check_mini_reference (NULL);
  if (report != NULL)
    sam2_check_report_free (report);
}

/* The tiny model as built, before its check against the references. */
static void
inspect_tiny (Sam2Model *model)
{
  g_assert_cmpint (sam2_model_get_image_size (model), ==, 1024);
  /* every state-dict value of Sam2Model(sam2.1-hiera-tiny), parameters and the two Fourier
   * buffers, was bound ("params/tiny" in hf_keys_configs.json), and nothing else */
  g_assert_cmpint (model->n_params, ==, 31441233);
}

static void
test_tiny_reference (void)
{
  sam2_test_check_tiny_reference (NULL, inspect_tiny);
}

/* The CPU backend's BF16 precision (where the CPU has AVX-512 BF16) against the same references,
 * every output within check.h's BF16 bound, as the CUDA backend's BF16 is held. */
static gboolean
cpu_bf16_or_skip (void)
{
  GError *error = NULL;
  if (sam2_backend_cpu_supports (SAM2_PRECISION_BF16, &error))
    return TRUE;
  g_test_skip (error->message);
  g_error_free (error);
  return FALSE;
}

static void
test_mini_reference_bf16 (void)
{
  const Sam2SessionOptions bf16 = { SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, 1 };
  if (!cpu_bf16_or_skip ())
    return;
  Sam2CheckReport *report = sam2_test_check_mini_reference (&bf16);
  if (report != NULL) {
    g_assert_cmpstr (report->backend, ==, "cpu bf16");
    sam2_check_report_free (report);
  }
}

static void
test_tiny_reference_bf16 (void)
{
  const Sam2SessionOptions bf16 = { SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, 1 };
  if (cpu_bf16_or_skip ())
    sam2_test_check_tiny_reference (&bf16, NULL);
}

/* The parameters a config makes us bind are exactly the state-dict keys (and shapes) transformers
 * lists for Sam2Model of that size: nothing missing, nothing invented. */
static void
test_param_names_match_hf (gconstpointer data)
{
  const char *size = data;
  char *path = sam2_test_fixture_path ("hf_keys_configs.json");
  if (path == NULL)
    return;
  GError *error = NULL;
  JsonParser *parser = json_parser_new ();
  g_assert_true (json_parser_load_from_file (parser, path, &error));
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  char *cfg_key = g_strconcat ("config/", size, NULL), *keys_key = g_strconcat ("sam2_image/", size, NULL);
  char *cfg_json = json_to_string (json_object_get_member (root, cfg_key), FALSE);
  JsonObject *keys = json_object_get_object_member (root, keys_key);
  Sam2Config config;
  g_assert_true (sam2_config_parse (cfg_json, -1, &config, &error));
  g_assert_no_error (error);
  GPtrArray *specs = sam2_model_param_specs (&config, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (specs->len, ==, json_object_get_size (keys));
  for (guint i = 0; i < specs->len; i++) {
    const Sam2ParamSpec *spec = specs->pdata[i];
    if (!json_object_has_member (keys, spec->name))
      g_error ("%s: we bind '%s', which Sam2Model does not have", size, spec->name);
    JsonArray *shape = json_object_get_array_member (keys, spec->name);
    g_assert_cmpuint (json_array_get_length (shape), ==, (guint) spec->ndim);
    for (int d = 0; d < spec->ndim; d++)
      g_assert_cmpint (json_array_get_int_element (shape, d), ==, spec->shape[d]);
  }
  g_ptr_array_unref (specs);
  g_free (cfg_json);
  g_free (cfg_key);
  g_free (keys_key);
  g_object_unref (parser);
  g_free (path);
}

/* Configurations the shipped fixtures do not cover (tools/gen_reference.py: windows with padding
 * at pooled stage starts, two pooling stages, deeper decoders with 4 multimask outputs, 3x3 FPN
 * convs, tanh GELU, ...), built from their config.json with hash weights. */
static void
test_generated_reference (gconstpointer data)
{
  const char *name = data;
  const char *root = g_getenv ("SAM2_TEST_DATA");
  g_assert_nonnull (root);
  char *cfg = g_build_filename (root, "refs", name, "config.json", NULL);
  char *ref = g_build_filename (root, "refs", name, "reference.safetensors", NULL);
  GError *error = NULL;
  Sam2Model *model = sam2_test_hashed_model (cfg);
  const char *paths[] = { ref, NULL };
  Sam2CheckReport *report = sam2_check_reference (model, paths, &error);
  g_assert_no_error (error);
  sam2_test_assert_report_passes (report, 5);
  sam2_check_report_free (report);
  sam2_model_unref (model);
  g_free (cfg);
  g_free (ref);
}

/* Stacked vs separate decoder layers on the CPU. */
static void
test_decoder_stacks (void)
{
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  sam2_test_check_decoder_stacks (&cpu, SAM2_TEST_DECODER_STACKS_FP32_TOL);
}

/* `fp` quantized per the recipe `yaml` (written to a temporary file) from two random frames. */
static Sam2Model *
quantize_with (Sam2Model *fp, const char *yaml)
{
  GError *error = NULL;
  char *recipe = NULL;
  const int fd = g_file_open_tmp ("sam2-recipe-XXXXXX.yaml", &recipe, &error);
  g_assert_no_error (error);
  close (fd);
  g_assert_true (g_file_set_contents (recipe, yaml, -1, &error));
  Sam2Model *q = sam2_test_quantize_random (fp, recipe, 2);
  g_unlink (recipe);
  g_free (recipe);
  return q;
}

/* A W4A8 model whose mask decoder is quantized too (skips.decoder false): the stacks are built
 * only from float layers, so every quantized part runs layer by layer, and the decoder gives
 * the same outputs with and without them (the quantized parts take the same path in both). */
static void
test_decoder_stacks_quantized (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  Sam2Model *q = quantize_with (fp, "quant:\n"
                                     "  wgts: {dtype: sint4, group_shapes: [[1, 128]]}\n"
                                     "  ipts: {dtype: sint8, granularity: per_token}\n"
                                     "skips: {patch_embed: true, decoder: false}\n");
  int quantized = 0;
  for (guint i = 0; i < q->linears->len; i++) {
    const Sam2Linear *l = q->linears->pdata[i];
    quantized += g_str_has_prefix (l->name, "mask_decoder.") && l->quant != NULL;
  }
  g_test_message ("%d quantized mask decoder layers", quantized);
  g_assert_cmpint (quantized, >, 0);
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  sam2_test_check_decoder_stacks_on (q, &cpu, SAM2_TEST_DECODER_STACKS_FP32_TOL);
  sam2_model_unref (q);
  sam2_model_unref (fp);
}

/* Low-res logits of one point prompt (multimask) on hash pixels, copied out, in `precision`. */
static float *
point_logits (Sam2Model *m, Sam2Precision precision, size_t *n, char **backend)
{
  const Sam2SessionOptions o = { SAM2_BACKEND_CPU, precision, 1 };
  GError *error = NULL;
  Sam2Session *s = sam2_session_new_full (m, &o, &error);
  g_assert_no_error (error);
  const int S = sam2_model_get_image_size (m);
  float *px = g_new (float, (size_t) 3 * S * S);
  sam2_test_fill_pixels (px, (size_t) 3 * S * S, 7);
  g_assert_true (sam2_session_encode (s, px, &error));
  const Sam2Point pt = { S * 0.4f, S * 0.6f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &pt, .n_points = 1 };
  const Sam2Result *r = sam2_session_decode (s, &prompt, 1, TRUE, &error);
  g_assert_no_error (error);
  *n = (size_t) r->n_objects * r->n_masks * r->mask_size * r->mask_size;
  float *out = g_memdup2 (r->lowres_logits, *n * sizeof (float));
  *backend = g_strdup (sam2_session_describe_backend (s));
  g_free (px);
  sam2_session_free (s);
  return out;
}

/* A W4A8 model in the CPU's BF16 precision: its quantized layers run W4A8 as in FP32 and only
 * the float layers and attention change, so the outputs stay within check.h's BF16 bound of the
 * FP32 session's (and differ from them: BF16 ran). */
static void
test_quantized_bf16 (void)
{
  if (!cpu_bf16_or_skip ())
    return;
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  Sam2Model *q = quantize_with (fp, "quant:\n"
                                     "  wgts: {dtype: sint4, group_shapes: [[1, 128]]}\n"
                                     "  ipts: {dtype: sint8, granularity: per_token}\n");
  size_t n32, n16;
  char *b32, *b16;
  float *l32 = point_logits (q, SAM2_PRECISION_FP32, &n32, &b32);
  float *l16 = point_logits (q, SAM2_PRECISION_BF16, &n16, &b16);
  g_assert_cmpstr (b32, ==, "cpu w4a8 + fp32");
  g_assert_cmpstr (b16, ==, "cpu w4a8 + bf16");
  g_assert_cmpuint (n32, ==, n16);
  const double rel = sam2_rel_l2 (l16, l32, n32);
  g_test_message ("W4A8 logits, BF16 against FP32: rel L2 %.3e (bound %.1e)", rel,
                  SAM2_CHECK_TOL_BF16);
  g_assert_cmpfloat (rel, <=, SAM2_CHECK_TOL_BF16);
  g_assert_cmpfloat (rel, >, 0.0);
  g_free (l32);
  g_free (l16);
  g_free (b32);
  g_free (b16);
  sam2_model_unref (q);
  sam2_model_unref (fp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/model/hash-weights-match-checkpoint", test_hash_weights_match_checkpoint);
  g_test_add_func ("/model/mini-hash-reference", test_mini_reference);
  g_test_add_func ("/model/tiny-hash-reference", test_tiny_reference);
  g_test_add_func ("/model/mini-hash-reference-bf16", test_mini_reference_bf16);
  g_test_add_func ("/model/tiny-hash-reference-bf16", test_tiny_reference_bf16);
  g_test_add_func ("/model/decoder-stacks", test_decoder_stacks);
  g_test_add_func ("/model/decoder-stacks-quantized", test_decoder_stacks_quantized);
  g_test_add_func ("/model/quantized-bf16", test_quantized_bf16);
  static const char *generated[] = { "holdout", "windows-pad", "two-pool-stages", "deep-decoder",
                                      "gelu-tanh" };
  for (guint i = 0; i < G_N_ELEMENTS (generated); i++) {
    char *name = g_strconcat ("/model/generated-reference/", generated[i], NULL);
    g_test_add_data_func (name, generated[i], test_generated_reference);
    g_free (name);
  }
  static const char *sizes[] = { "tiny", "small", "base-plus", "large" };
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++) {
    char *name = g_strconcat ("/model/param-names-match-hf/", sizes[i], NULL);
    g_test_add_data_func (name, sizes[i], test_param_names_match_hf);
    g_free (name);
  }
  return g_test_run ();
}
