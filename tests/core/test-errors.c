/* test-errors.c: bad checkpoints and bad calls end in a clear GError, never a crash, and
 * alternative but valid checkpoints (F16 / BF16 weights, the Sam2VideoModel layout with its
 * extra tensors) load. Checkpoints are derived from sam2-mini-hash into a temporary directory. */
#include "check.h"
#include "model.h"
#include "safetensors.h"
#include "session.h"
#include "backend.h"
#include "test-support.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

typedef struct {
  char *dir;                   /* temporary model directory */
  Sam2Safetensors *src;        /* the mini checkpoint */
  char *config_json;           /* its config.json */
} Fixture;

static gboolean
fixture_setup (Fixture *f)
{
  memset (f, 0, sizeof *f);
  f->src = sam2_test_open_fixture ("sam2-mini-hash/model.safetensors");
  char *cfg = sam2_test_fixture_path ("sam2-mini-hash/config.json");
  if (f->src == NULL || cfg == NULL) {
    g_free (cfg);
    return FALSE;
  }
  g_assert_true (g_file_get_contents (cfg, &f->config_json, NULL, NULL));
  g_free (cfg);
  f->dir = g_dir_make_tmp ("sam2-errors-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  return TRUE;
}

static void
fixture_teardown (Fixture *f)
{
  if (f->dir != NULL) {
    GDir *d = g_dir_open (f->dir, 0, NULL);
    const char *name;
    while (d != NULL && (name = g_dir_read_name (d)) != NULL) {
      char *p = g_build_filename (f->dir, name, NULL);
      g_unlink (p);
      g_free (p);
    }
    if (d != NULL)
      g_dir_close (d);
    g_rmdir (f->dir);
  }
  g_free (f->dir);
  g_free (f->config_json);
  sam2_safetensors_close (f->src);
}

typedef enum {
  EDIT_NONE, EDIT_DROP, EDIT_RESHAPE, EDIT_INT64, EDIT_F16, EDIT_BF16, EDIT_EXTRA,
  EDIT_NAN, EDIT_INF_F16,      /* one element of the target a NaN (F32), an infinity (as F16) */
} Edit;

static guint16
f32_to_f16 (float f)
{
  /* round-to-nearest-even through the bit pattern; the mini weights are normal numbers */
  guint32 x;
  memcpy (&x, &f, 4);
  guint32 sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
  int e = (int) exp - 127 + 15;
  if (e <= 0)
    return (guint16) sign;
  guint32 m = mant >> 13, rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (m & 1)))
    m++;
  if (m == 0x400) {
    m = 0;
    e++;
  }
  return (guint16) (sign | (guint32) e << 10 | m);
}

/* Writes DIR/model.safetensors from the mini checkpoint with `edit` applied to `target`. */
static void
write_checkpoint (Fixture *f, Edit edit, const char *target)
{
  Sam2StWriter *w = sam2_st_writer_new ();
  GError *error = NULL;
  for (int i = 0; i < sam2_safetensors_n_tensors (f->src); i++) {
    const Sam2StTensor *t = sam2_safetensors_nth (f->src, i);
    const gboolean hit = target == NULL || strcmp (t->name, target) == 0;
    float *v = sam2_safetensors_read_f32 (f->src, t->name, t->numel, &error);
    g_assert_no_error (error);
    if (hit && edit == EDIT_DROP) {
      g_free (v);
      continue;
    }
    if (hit && edit == EDIT_RESHAPE) {
      int64_t shape[1] = { t->numel };
      g_assert_true (sam2_st_writer_add (w, t->name, SAM2_DTYPE_F32, 1, shape, v, &error));
    } else if (hit && edit == EDIT_INT64) {
      gint64 *iv = g_new0 (gint64, t->numel);
      g_assert_true (sam2_st_writer_add (w, t->name, SAM2_DTYPE_I64, t->ndim, t->shape, iv, &error));
      g_free (iv);
    } else if (hit && (edit == EDIT_F16 || edit == EDIT_BF16 || edit == EDIT_INF_F16)) {
      guint16 *h = g_new (guint16, t->numel);
      for (int64_t k = 0; k < t->numel; k++)
        h[k] = edit != EDIT_BF16 ? f32_to_f16 (v[k]) : sam2_test_f32_to_bf16 (v[k]);
      if (edit == EDIT_INF_F16)
        h[t->numel / 2] = 0x7c00;      /* +infinity */
      g_assert_true (sam2_st_writer_add (w, t->name, edit != EDIT_BF16 ? SAM2_DTYPE_F16 : SAM2_DTYPE_BF16,
                                         t->ndim, t->shape, h, &error));
      g_free (h);
    } else {
      if (hit && edit == EDIT_NAN)
        v[t->numel / 2] = NAN;
      g_assert_true (sam2_st_writer_add (w, t->name, SAM2_DTYPE_F32, t->ndim, t->shape, v, &error));
    }
    g_assert_no_error (error);
    g_free (v);
  }
  if (edit == EDIT_EXTRA) {
    /* tensors only Sam2VideoModel has; the image model must ignore them */
    float extra[6] = { 1, 2, 3, 4, 5, 6 };
    int64_t shape[2] = { 2, 3 };
    g_assert_true (sam2_st_writer_add (w, "memory_encoder.fuser.layers.0.weight", SAM2_DTYPE_F32, 2, shape, extra, &error));
    g_assert_true (sam2_st_writer_add (w, "object_pointer_proj.layers.0.bias", SAM2_DTYPE_F32, 2, shape, extra, &error));
  }
  char *path = g_build_filename (f->dir, "model.safetensors", NULL);
  g_assert_true (sam2_st_writer_write (w, path, &error));
  g_assert_no_error (error);
  sam2_st_writer_free (w);
  g_free (path);
}

static void
write_config (Fixture *f, const char *json)
{
  char *path = g_build_filename (f->dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  g_free (path);
}

static void
expect_load_error (Fixture *f, int code, const char *fragment)
{
  GError *error = NULL;
  Sam2Model *m = sam2_model_load (f->dir, &error);
  g_assert_null (m);
  g_assert_error (error, SAM2_ERROR, code);
  if (strstr (error->message, fragment) == NULL)
    g_error ("error message \"%s\" does not mention \"%s\"", error->message, fragment);
  g_test_message ("%s", error->message);
  g_error_free (error);
}

static void
test_missing_tensor (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_DROP, "mask_decoder.iou_token.weight");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "mask_decoder.iou_token.weight");
  }
  fixture_teardown (&f);
}

static void
test_misshaped_tensor (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_RESHAPE, "vision_encoder.backbone.blocks.2.attn.qkv.weight");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "blocks.2.attn.qkv.weight");
  }
  fixture_teardown (&f);
}

static void
test_integer_weights (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_INT64, "prompt_encoder.point_embed.weight");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "I64");
  }
  fixture_teardown (&f);
}

/* A NaN or an infinity in a weight ran on to NaN scores and empty masks without an error. */
static void
test_non_finite_weights (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_NAN, "vision_encoder.backbone.blocks.1.mlp.proj_in.weight");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "blocks.1.mlp.proj_in.weight' in");
    write_checkpoint (&f, EDIT_INF_F16, "mask_decoder.iou_token.weight");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "an infinity");
  }
  fixture_teardown (&f);
}

static void
test_truncated_checkpoint (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_NONE, NULL);
    char *path = g_build_filename (f.dir, "model.safetensors", NULL);
    char *data;
    gsize len;
    g_assert_true (g_file_get_contents (path, &data, &len, NULL));
    /* cut in the data, then in the header, then to nothing */
    const gsize cuts[] = { len / 2, 100, 5, 0 };
    for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
      g_assert_true (g_file_set_contents (path, data, (gssize) cuts[i], NULL));
      expect_load_error (&f, SAM2_ERROR_FORMAT, "model.safetensors");
    }
    g_free (data);
    g_free (path);
  }
  fixture_teardown (&f);
}

static void
test_bad_configs (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_checkpoint (&f, EDIT_NONE, NULL);
    write_config (&f, "{\"model_type\": \"sam\"}");
    expect_load_error (&f, SAM2_ERROR_CONFIG, "model_type");
    write_config (&f, "{\"model_type\": \"sam2\", \"vision_config\": ");
    expect_load_error (&f, SAM2_ERROR_CONFIG, "config.json");
    /* a valid config that does not describe these weights */
    write_config (&f, "{\"model_type\": \"sam2\"}");
    expect_load_error (&f, SAM2_ERROR_WEIGHTS, "config.json");
  }
  fixture_teardown (&f);
}

/* Reduced-precision and video-layout checkpoints load; F16 / BF16 weights change the outputs
 * only by their rounding (bounded loosely: this checks loading, not numerics). */
static void
check_loads_and_matches (Fixture *f, double bound)
{
  GError *error = NULL;
  Sam2Model *m = sam2_model_load (f->dir, &error);
  g_assert_no_error (error);
  char *ref = sam2_test_fixture_path ("sam2-mini-hash/reference.safetensors");
  const char *paths[] = { ref, NULL };
  Sam2CheckReport *rep = sam2_check_reference (m, paths, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < rep->entries->len; i++) {
    const Sam2CheckEntry *e = rep->entries->pdata[i];
    if (e->rel_l2 > bound)
      g_error ("%s: relative error %.3e above %.1e", e->name, e->rel_l2, bound);
  }
  sam2_check_report_free (rep);
  sam2_model_unref (m);
  g_free (ref);
}

/* The half-precision bounds: F16 keeps 11 significant bits (2^-11 = 4.9e-4 relative per weight),
 * BF16 8 bits (3.9e-3); errors of independent weights partly cancel through a layer. */
#define F16_WEIGHTS_BOUND 5e-3
#define BF16_WEIGHTS_BOUND 5e-2

static void
test_half_precision_checkpoints (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    write_config (&f, f.config_json);
    write_checkpoint (&f, EDIT_F16, NULL);
    check_loads_and_matches (&f, F16_WEIGHTS_BOUND);
    write_checkpoint (&f, EDIT_BF16, NULL);
    check_loads_and_matches (&f, BF16_WEIGHTS_BOUND);
  }
  fixture_teardown (&f);
}

static void
test_video_layout (void)
{
  Fixture f;
  if (fixture_setup (&f)) {
    /* the same architecture in the Sam2VideoModel layout, plus video-only tensors */
    GString *cfg = g_string_new (f.config_json);
    char *p = strstr (cfg->str, "\"model_type\": \"sam2\"");
    g_assert_nonnull (p);
    g_string_insert (cfg, p - cfg->str + strlen ("\"model_type\": \"sam2"), "_video");
    write_config (&f, cfg->str);
    g_string_free (cfg, TRUE);
    write_checkpoint (&f, EDIT_EXTRA, NULL);
    check_loads_and_matches (&f, SAM2_CHECK_TOL_LOGITS);
  }
  fixture_teardown (&f);
}

/* ---- calls ---- */

static Sam2Session *
mini_session (Sam2Model **model)
{
  *model = sam2_test_load_mini ();
  if (*model == NULL)
    return NULL;
  GError *error = NULL;
  Sam2Session *s = sam2_session_new (*model, &error);
  g_assert_no_error (error);
  return s;
}

static void
expect_call_error (const Sam2Result *r, GError *error, const char *fragment)
{
  g_assert_null (r);
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  if (strstr (error->message, fragment) == NULL)
    g_error ("error message \"%s\" does not mention \"%s\"", error->message, fragment);
  g_test_message ("%s", error->message);
  g_error_free (error);
}

/* A previous result's low-res logits passed back as the mask prompts of more objects than it
 * had (sam2.h suggests it): the same outputs as from a copy of them. The decoder wrote, and on
 * growth freed, the result while later objects still read their prompts from it. */
static void
assert_mask_prompt_from_result (Sam2Session *s, const Sam2Prompt *point)
{
  GError *error = NULL;
  const Sam2Result *r = sam2_session_predict (s, point, 1, NULL, &error);
  g_assert_no_error (error);
  const size_t ms2 = (size_t) r->mask_size * r->mask_size;
  float *copy = g_memdup2 (r->lowres_logits, ms2 * sizeof (float));
  Sam2Prompt three[3];
  for (int i = 0; i < 3; i++) {
    three[i] = *point;
    three[i].mask_logits = r->lowres_logits;
  }
  r = sam2_session_predict (s, three, 3, NULL, &error);
  g_assert_no_error (error);
  float *got = g_memdup2 (r->lowres_logits, 3 * ms2 * sizeof (float));
  for (int i = 0; i < 3; i++)
    three[i].mask_logits = copy;
  r = sam2_session_predict (s, three, 3, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (got, 3 * ms2 * sizeof (float), r->lowres_logits, 3 * ms2 * sizeof (float));
  g_free (got);
  g_free (copy);
}

static void
test_bad_calls (void)
{
  Sam2Model *model = NULL;
  Sam2Session *s = mini_session (&model);
  if (s == NULL)
    return;
  GError *error = NULL;
  const Sam2Result *r;
  const Sam2Point inside = { 50, 60, SAM2_LABEL_POSITIVE };
  Sam2Prompt prompt = { .points = &inside, .n_points = 1 };

  /* nothing encoded yet */
  r = sam2_session_predict (s, &prompt, 1, NULL, &error);
  expect_call_error (r, error, "set_image");
  error = NULL;
  g_assert_null (sam2_session_decode (s, &prompt, 1, FALSE, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* bad images */
  guint8 pixels[40 * 30 * 4] = { 0 };
  g_assert_false (sam2_session_set_image (s, pixels, 0, 30, 0, SAM2_PIXEL_FORMAT_RGB, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (sam2_session_set_image (s, pixels, 40, 30, 100, SAM2_PIXEL_FORMAT_RGBA, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (sam2_session_set_image (s, NULL, 40, 30, 120, SAM2_PIXEL_FORMAT_RGB, &error));
  g_clear_error (&error);
  g_assert_true (sam2_session_set_image (s, pixels, 40, 30, 120, SAM2_PIXEL_FORMAT_RGB, &error));
  g_assert_no_error (error);

  /* bad prompts on a 40x30 frame */
  r = sam2_session_predict (s, &prompt, 1, NULL, &error);
  expect_call_error (r, error, "outside");
  error = NULL;
  r = sam2_session_predict (s, &prompt, 0, NULL, &error);
  expect_call_error (r, error, "no prompts");
  error = NULL;
  Sam2Prompt empty = { 0 };
  r = sam2_session_predict (s, &empty, 1, NULL, &error);
  expect_call_error (r, error, "no prompt");
  error = NULL;
  const Sam2Point nan_point = { NAN, 3, SAM2_LABEL_POSITIVE };
  Sam2Prompt p_nan = { .points = &nan_point, .n_points = 1 };
  r = sam2_session_predict (s, &p_nan, 1, NULL, &error);
  expect_call_error (r, error, "outside");
  error = NULL;
  const Sam2Point bad_label = { 3, 3, 7 };
  Sam2Prompt p_label = { .points = &bad_label, .n_points = 1 };
  r = sam2_session_predict (s, &p_label, 1, NULL, &error);
  expect_call_error (r, error, "label 7");
  error = NULL;
  Sam2Prompt p_box = { .has_box = TRUE, .box = { 30, 20, 10, 5 } };
  r = sam2_session_predict (s, &p_box, 1, NULL, &error);
  expect_call_error (r, error, "inverted");
  error = NULL;
  Sam2Point many[SAM2_MAX_POINTS_PER_OBJECT + 1];
  for (int i = 0; i <= SAM2_MAX_POINTS_PER_OBJECT; i++)
    many[i] = (Sam2Point) { 1, 1, SAM2_LABEL_POSITIVE };
  Sam2Prompt p_many = { .points = many, .n_points = SAM2_MAX_POINTS_PER_OBJECT + 1 };
  r = sam2_session_predict (s, &p_many, 1, NULL, &error);
  expect_call_error (r, error, "points");
  error = NULL;

  /* and a good one still works afterwards, with masks inside the frame */
  const Sam2Point ok = { 20, 15, SAM2_LABEL_POSITIVE };
  Sam2Prompt p_ok = { .points = &ok, .n_points = 1 };
  r = sam2_session_predict (s, &p_ok, 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->width, ==, 40);
  g_assert_cmpint (r->height, ==, 30);
  g_assert_cmpint (r->n_masks, ==, 1);
  g_assert_nonnull (r->masks);

  /* no prompt array: an error, not the previous call's prompts again */
  r = sam2_session_predict (s, NULL, 1, NULL, &error);
  expect_call_error (r, error, "no prompts");
  error = NULL;
  /* points that are all padding prompt nothing */
  const Sam2Point pads[2] = { { 0, 0, SAM2_LABEL_PAD }, { 0, 0, SAM2_LABEL_NOT_A_POINT } };
  Sam2Prompt p_pads = { .points = pads, .n_points = 2 };
  r = sam2_session_predict (s, &p_pads, 1, NULL, &error);
  expect_call_error (r, error, "no prompt");
  error = NULL;
  /* an unknown pixel format is refused (the previous pixels were encoded instead) */
  g_assert_false (sam2_session_set_image (s, pixels, 40, 30, 160, (Sam2PixelFormat) 42, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (sam2_session_set_image (s, pixels, 40, 30, 120, SAM2_PIXEL_FORMAT_RGB, &error));
  assert_mask_prompt_from_result (s, &p_ok);

  /* a larger frame with one object, then a smaller one with more objects: the result buffers
   * must grow for the object count even though the mask bytes fit (found by the sam2seg tests) */
  static guint8 big[256 * 256 * 3];
  g_assert_true (sam2_session_set_image (s, big, 256, 256, 768, SAM2_PIXEL_FORMAT_RGB, &error));
  r = sam2_session_predict (s, &p_ok, 1, NULL, &error);
  g_assert_no_error (error);
  Sam2Prompt five[5];
  for (int i = 0; i < 5; i++)
    five[i] = p_ok;
  g_assert_true (sam2_session_set_image (s, pixels, 40, 30, 120, SAM2_PIXEL_FORMAT_RGB, &error));
  Sam2PredictOptions multi = SAM2_PREDICT_OPTIONS_INIT;
  multi.multimask = TRUE;
  r = sam2_session_predict (s, five, 5, &multi, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->n_objects * r->n_masks, ==, 15);
  for (int i = 0; i < 15; i++)
    g_assert_cmpint (r->boxes[i].x1, <, 40);

  /* many objects on a large frame once, then one object on it: the mask buffer shrinks after
   * SAM2_RES_MASKS_SHRINK_CALLS such calls (it kept the largest size for the rest of the
   * stream) and the mask stays the same */
  g_assert_true (sam2_session_set_image (s, big, 256, 256, 768, SAM2_PIXEL_FORMAT_RGB, &error));
  r = sam2_session_predict (s, five, 5, &multi, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (s->res_masks_capacity, ==, 15 * 256 * 256);
  r = sam2_session_predict (s, &p_ok, 1, NULL, &error);
  guint8 *first = g_memdup2 (r->masks, 256 * 256);
  for (int i = 1; i < SAM2_RES_MASKS_SHRINK_CALLS; i++) {
    g_assert_cmpuint (s->res_masks_capacity, ==, 15 * 256 * 256);
    r = sam2_session_predict (s, &p_ok, 1, NULL, &error);
    g_assert_no_error (error);
  }
  g_assert_cmpuint (s->res_masks_capacity, ==, 256 * 256);
  g_assert_cmpmem (r->masks, 256 * 256, first, 256 * 256);
  g_free (first);

  /* best_only: each object's candidate of highest predicted IoU, the same logits, score and
   * mask as in the full multimask result, chosen before upsampling */
  const Sam2Point other = { 100.0f, 60.0f, SAM2_LABEL_POSITIVE };
  Sam2Prompt two[2] = { p_ok, { .points = &other, .n_points = 1 } };
  r = sam2_session_predict (s, two, 2, &multi, &error);
  g_assert_no_error (error);
  const int ms2 = r->mask_size * r->mask_size;
  float *iou = g_memdup2 (r->iou_scores, 6 * sizeof (float));
  float *lowres = g_memdup2 (r->lowres_logits, (size_t) 6 * ms2 * sizeof (float));
  guint8 *masks = g_memdup2 (r->masks, (size_t) 6 * 256 * 256);
  Sam2PredictOptions best = multi;
  best.best_only = TRUE;
  r = sam2_session_predict (s, two, 2, &best, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->n_masks, ==, 1);
  for (int o = 0; o < 2; o++) {
    int b = 0;
    for (int m = 1; m < 3; m++)
      if (iou[o * 3 + m] > iou[o * 3 + b])
        b = m;
    g_assert_cmpfloat (r->iou_scores[o], ==, iou[o * 3 + b]);
    g_assert_cmpmem (r->lowres_logits + (size_t) o * ms2, ms2 * sizeof (float),
                     lowres + (size_t) (o * 3 + b) * ms2, ms2 * sizeof (float));
    g_assert_cmpmem (r->masks + (size_t) o * 256 * 256, 256 * 256,
                     masks + (size_t) (o * 3 + b) * 256 * 256, 256 * 256);
  }
  g_free (iou);
  g_free (lowres);
  g_free (masks);

  sam2_session_free (s);
  sam2_model_unref (model);
}

/* Backend and precision names: each parses back to itself (any case); an unknown one is an error
 * that lists the valid names; FP16 on the CPU, and BF16 on a CPU without AVX-512 BF16, are
 * refused with what to use instead, never quietly run in FP32. */
static void
test_session_options (void)
{
  for (int p = SAM2_PRECISION_AUTO; p <= SAM2_PRECISION_BF16; p++) {
    Sam2SessionOptions o = SAM2_SESSION_OPTIONS_INIT;
    char *upper = g_ascii_strup (sam2_precision_to_string ((Sam2Precision) p), -1);
    g_assert_true (sam2_session_options_parse (&o, NULL, upper, NULL));
    g_assert_cmpint (o.precision, ==, p);
    g_free (upper);
  }
  g_assert_cmpstr (sam2_precision_to_string (SAM2_PRECISION_BF16), ==, "bf16");
  Sam2SessionOptions o = SAM2_SESSION_OPTIONS_INIT;
  GError *error = NULL;
  g_assert_false (sam2_session_options_parse (&o, NULL, "fp8", &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "auto, fp32, fp16 or bf16"));
  g_clear_error (&error);

  Sam2Model *model = sam2_test_load_mini ();
  if (model == NULL)
    return;
  const Sam2SessionOptions fp16 = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP16, 1 };
  g_assert_null (sam2_session_new_full (model, &fp16, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  if (strstr (error->message, "precision fp16 needs the CUDA backend") == NULL)
    g_error ("error message \"%s\" does not say why", error->message);
  g_clear_error (&error);
  /* BF16 runs where the CPU has AVX-512 BF16 and is refused, saying so, where it has not */
  const Sam2SessionOptions bf16 = { SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, 1 };
  Sam2Session *s = sam2_session_new_full (model, &bf16, &error);
  if (sam2_backend_cpu_supports (SAM2_PRECISION_BF16, NULL)) {
    g_assert_no_error (error);
    g_assert_cmpint (sam2_session_get_precision (s), ==, SAM2_PRECISION_BF16);
    g_assert_cmpstr (sam2_session_describe_backend (s), ==, "cpu bf16");
    sam2_session_free (s);
  } else {
    g_assert_null (s);
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
    if (strstr (error->message, "precision bf16 is not available on the CPU: ") == NULL)
      g_error ("error message \"%s\" does not say why", error->message);
    g_clear_error (&error);
  }
  /* the refusal, on any CPU: SAM2_CPU_BF16=0 makes this one answer as one without BF16 */
  g_setenv ("SAM2_CPU_BF16", "0", TRUE);
  g_assert_null (sam2_session_new_full (model, &bf16, &error));
  g_unsetenv ("SAM2_CPU_BF16");
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
  if (strstr (error->message, "SAM2_CPU_BF16=0 turns it off; use precision auto or fp32") == NULL)
    g_error ("error message \"%s\" does not say why and what to do", error->message);
  g_clear_error (&error);
  /* sam2_precision_available says the same before any model is loaded, AUTO resolved the way a
   * session resolves it (SAM2_BACKEND=cpu pins the CPU even where CUDA runs) */
  g_setenv ("SAM2_CPU_BF16", "0", TRUE);
  g_setenv ("SAM2_BACKEND", "cpu", TRUE);
  g_assert_false (sam2_precision_available (SAM2_BACKEND_AUTO, SAM2_PRECISION_BF16, &error));
  g_unsetenv ("SAM2_BACKEND");
  g_unsetenv ("SAM2_CPU_BF16");
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
  g_assert_true (sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_AUTO, NULL));
  g_assert_true (sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, NULL));
  g_assert_false (sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_FP16, NULL));
  g_clear_error (&error);
  sam2_model_unref (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/errors/missing-tensor", test_missing_tensor);
  g_test_add_func ("/errors/misshaped-tensor", test_misshaped_tensor);
  g_test_add_func ("/errors/integer-weights", test_integer_weights);
  g_test_add_func ("/errors/truncated-checkpoint", test_truncated_checkpoint);
  g_test_add_func ("/errors/non-finite-weights", test_non_finite_weights);
  g_test_add_func ("/errors/bad-configs", test_bad_configs);
  g_test_add_func ("/errors/bad-calls", test_bad_calls);
  g_test_add_func ("/errors/session-options", test_session_options);
  g_test_add_func ("/checkpoints/half-precision", test_half_precision_checkpoints);
  g_test_add_func ("/checkpoints/video-layout", test_video_layout);
  return g_test_run ();
}
