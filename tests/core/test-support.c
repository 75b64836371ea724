/* test-support.c */
#include "test-support.h"

#include "config.h"
#include "model.h"
#include "session.h"

#include <math.h>
#include <string.h>

const char *
sam2_test_fixtures_dir (void)
{
  const char *dir = g_getenv ("SAM2_FIXTURES");
  if (dir != NULL && *dir != '\0')
    return dir;
  dir = g_getenv ("SAM2_FIXTURES_DEFAULT");
  return dir != NULL ? dir : "../shared/fixtures";
}

char *
sam2_test_fixture_path (const char *relative)
{
  char *path = g_build_filename (sam2_test_fixtures_dir (), relative, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    char *msg = g_strdup_printf ("fixture %s not found; set SAM2_FIXTURES to the fixtures directory "
                                 "(default ../shared/fixtures next to the project)", path);
    g_test_skip (msg);
    g_free (msg);
    g_free (path);
    return NULL;
  }
  return path;
}

Sam2Safetensors *
sam2_test_open_fixture (const char *relative)
{
  char *path = sam2_test_fixture_path (relative);
  if (path == NULL)
    return NULL;
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return st;
}

double
sam2_rel_l2 (const float *a, const float *b, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - (double) b[i];
    num += d * d;
    den += (double) b[i] * (double) b[i];
  }
  return sqrt (num) / fmax (sqrt (den), 1e-30);
}

double
sam2_max_abs_diff (const float *a, const float *b, size_t n)
{
  double m = 0.0;
  for (size_t i = 0; i < n; i++)
    m = fmax (m, fabs ((double) a[i] - (double) b[i]));
  return m;
}

void
sam2_test_assert_report_passes (Sam2CheckReport *report, int min_cases)
{
  g_test_message ("backend: %s", report->backend);
  for (guint i = 0; i < report->entries->len; i++) {
    const Sam2CheckEntry *e = report->entries->pdata[i];
    g_test_message ("%-40s rel_l2 %.3e max_abs %.3e (bound %.0e) %s", e->name, e->rel_l2,
                    e->max_abs, e->tolerance, e->pass ? "PASS" : "FAIL");
  }
  for (guint i = 0; i < report->entries->len; i++) {
    const Sam2CheckEntry *e = report->entries->pdata[i];
    if (!e->pass)
      g_error ("%s on %s: relative L2 error %.3e exceeds %.0e", e->name, report->backend,
               e->rel_l2, e->tolerance);
  }
  g_assert_cmpint (report->n_cases, >=, min_cases);
  g_assert_cmpint (report->n_failed, ==, 0);
}

Sam2Model *
sam2_test_load_mini (void)
{
  char *dir = sam2_test_fixture_path ("sam2-mini-hash");
  if (dir == NULL)
    return NULL;
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return model;
}

Sam2Model *
sam2_test_hashed_model (const char *config_path)
{
  GError *error = NULL;
  Sam2Config config;
  g_assert_true (sam2_config_load (config_path, &config, &error));
  g_assert_no_error (error);
  Sam2Model *model = sam2_model_new_hashed (&config, &error);
  g_assert_no_error (error);
  return model;
}

Sam2Model *
sam2_test_tiny_hashed (void)
{
  char *cfg = sam2_test_fixture_path ("sam2-tiny-hash/config.json");
  if (cfg == NULL)
    return NULL;
  Sam2Model *model = sam2_test_hashed_model (cfg);
  g_free (cfg);
  return model;
}

Sam2CheckReport *
sam2_test_check_mini_reference (const Sam2SessionOptions *options)
{
  char *ref = sam2_test_fixture_path ("sam2-mini-hash/reference.safetensors");
  Sam2Model *model = ref != NULL ? sam2_test_load_mini () : NULL;
  Sam2CheckReport *report = NULL;
  if (model == NULL)
    goto out;
  GError *error = NULL;
  const char *paths[] = { ref, NULL };
  report = sam2_check_reference_full (model, paths, options, &error);
  g_assert_no_error (error);
  sam2_test_assert_report_passes (report, 10);
  int acts = 0;
  for (guint i = 0; i < report->entries->len; i++)
    acts += g_str_has_prefix (((Sam2CheckEntry *) report->entries->pdata[i])->name, "act/");
  g_assert_cmpint (acts, ==, 11);
  sam2_model_unref (model);
out:
  g_free (ref);
  return report;
}

void
sam2_test_check_tiny_reference (const Sam2SessionOptions *options,
                                void (*inspect) (Sam2Model *model))
{
  char *main_ref = sam2_test_fixture_path ("sam2-tiny-hash/reference_main.safetensors");
  char *feat_ref = sam2_test_fixture_path ("sam2-tiny-hash/reference_feat_s0.safetensors");
  Sam2Model *model = main_ref && feat_ref ? sam2_test_tiny_hashed () : NULL;
  if (model == NULL)
    goto out;
  if (inspect != NULL)
    inspect (model);
  GError *error = NULL;
  const char *paths[] = { main_ref, feat_ref, NULL };
  Sam2CheckReport *report = sam2_check_reference_full (model, paths, options, &error);
  g_assert_no_error (error);
  sam2_test_assert_report_passes (report, 5);
  sam2_check_report_free (report);
  sam2_model_unref (model);
out:
  g_free (main_ref);
  g_free (feat_ref);
}

int
sam2_test_cuda_init (int *argc, char ***argv, const char **recipe_path)
{
  g_test_init (argc, argv, NULL);
  GError *error = NULL;
  if (!sam2_backend_available (SAM2_BACKEND_CUDA, &error)) {
    g_printerr ("skipped: %s\n", error->message);
    g_error_free (error);
    return 77;
  }
  if (*argc != 2) {
    g_printerr ("usage: %s RECIPE.yaml (configs/hiera_tiny_w4a8.yaml)\n", (*argv)[0]);
    return 2;
  }
  *recipe_path = (*argv)[1];
  return 0;
}

/* ---- batches: one pass of n images against n passes of one ----------------------------------- */

/* Uniform noise over the range of ImageNet-normalised pixels, different per seed. */
void
sam2_test_fill_pixels (float *px, size_t n, guint32 seed)
{
  GRand *rng = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    px[i] = (float) g_rand_double_range (rng, -2.0, 2.5);
  g_rand_free (rng);
}

/* What one image gives: its three feature maps, then the decoder's outputs (logits, IoU and
 * object scores) for a multimask point prompt and a single-mask box prompt, in one array each. */
typedef struct {
  GArray *features[3];
  GArray *decoded;
} ImageOutputs;

static void
image_outputs_read (Sam2Session *s, Sam2Model *model, ImageOutputs *out)
{
  GError *error = NULL;
  for (int l = 0; l < 3; l++) {
    int h, w, c;
    const float *f = sam2_session_get_features (s, l, &h, &w, &c);
    g_assert_nonnull (f);
    out->features[l] = g_array_new (FALSE, FALSE, sizeof (float));
    g_array_append_vals (out->features[l], f, (guint) h * w * c);
  }
  out->decoded = g_array_new (FALSE, FALSE, sizeof (float));
  const float S = (float) sam2_model_get_image_size (model);
  const Sam2Point pts[] = { { S * 0.4f, S * 0.55f, SAM2_LABEL_POSITIVE },
                            { S * 0.7f, S * 0.2f, SAM2_LABEL_NEGATIVE } };
  const Sam2Prompt point = { .points = pts, .n_points = 2 };
  const Sam2Prompt box = { .has_box = TRUE, .box = { S * 0.1f, S * 0.2f, S * 0.6f, S * 0.9f } };
  const Sam2Prompt *prompts[] = { &point, &box };
  for (int i = 0; i < 2; i++) {
    const Sam2Result *r = sam2_session_decode (s, prompts[i], 1, i == 0, &error);
    g_assert_no_error (error);
    const size_t ms2 = (size_t) r->mask_size * r->mask_size;
    g_array_append_vals (out->decoded, r->lowres_logits, (guint) (r->n_masks * ms2));
    g_array_append_vals (out->decoded, r->iou_scores, (guint) r->n_masks);
    g_array_append_vals (out->decoded, r->object_scores, 1);
  }
}

static void
image_outputs_clear (ImageOutputs *o)
{
  for (int l = 0; l < 3; l++)
    g_array_unref (o->features[l]);
  g_array_unref (o->decoded);
}

static void
assert_batch_close (const char *what, int image, const GArray *got, const GArray *want,
                    double tol)
{
  g_assert_cmpuint (got->len, ==, want->len);
  const double rel = sam2_rel_l2 ((const float *) got->data, (const float *) want->data, want->len);
  g_test_message ("image %d %-16s batch vs single rel_l2 %.3e (bound %.0e)", image, what, rel,
                  tol);
  if (!(rel <= tol))
    g_error ("image %d, %s: one pass of the batch and a pass of the image alone differ by %.3e "
             "(relative L2), more than %.0e", image, what, rel, tol);
}

void
sam2_test_check_batch (Sam2Model *model, const Sam2SessionOptions *options, int n, double tol)
{
  GError *error = NULL;
  const size_t image_floats = (size_t) 3 * sam2_model_get_image_size (model)
                              * sam2_model_get_image_size (model);
  float *pixels = g_new (float, n * image_floats);
  for (int i = 0; i < n; i++)
    sam2_test_fill_pixels (pixels + i * image_floats, image_floats, 900 + i);

  /* each image alone, in a session of one */
  Sam2SessionOptions single_options = *options;
  single_options.max_batch = 1;
  Sam2Session *single = sam2_session_new_full (model, &single_options, &error);
  g_assert_no_error (error);
  g_test_message ("running on %s", sam2_session_describe_backend (single));
  ImageOutputs *want = g_new0 (ImageOutputs, n);
  for (int i = 0; i < n; i++) {
    g_assert_true (sam2_session_encode (single, pixels + i * image_floats, &error));
    g_assert_no_error (error);
    image_outputs_read (single, model, &want[i]);
  }
  sam2_session_free (single);

  /* all in one pass; the images selected out of order, the first twice (after the others) */
  Sam2SessionOptions batch_options = *options;
  batch_options.max_batch = n;
  Sam2Session *batch = sam2_session_new_full (model, &batch_options, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sam2_session_get_max_batch (batch), ==, n);
  g_assert_true (sam2_session_encode_batch (batch, pixels, n, &error));
  g_assert_no_error (error);
  g_assert_cmpint (sam2_session_get_n_images (batch), ==, n);
  for (int k = 0; k <= n; k++) {
    const int image = k == 0 ? 0 : n - k;   /* 0, n-1, n-2, ..., 0 */
    g_assert_true (sam2_session_select_image (batch, image, &error));
    g_assert_no_error (error);
    ImageOutputs got;
    image_outputs_read (batch, model, &got);
    static const char *levels[] = { "features/0", "features/1", "image_embeddings" };
    for (int l = 0; l < 3; l++)
      assert_batch_close (levels[l], image, got.features[l], want[image].features[l], tol);
    assert_batch_close ("decoder", image, got.decoded, want[image].decoded, tol);
    image_outputs_clear (&got);
  }
  sam2_session_free (batch);
  for (int i = 0; i < n; i++)
    image_outputs_clear (&want[i]);
  g_free (want);
  g_free (pixels);
}

Sam2Model *
sam2_test_quantize_random (Sam2Model *fp, const char *recipe_path, int n_frames)
{
  GError *error = NULL;
  Sam2Recipe *recipe = sam2_recipe_load (recipe_path, &error);
  g_assert_no_error (error);
  Sam2Calibrator *c = sam2_calibrator_new (fp, recipe, &error);
  g_assert_no_error (error);
  const size_t n = (size_t) 3 * sam2_model_get_image_size (fp) * sam2_model_get_image_size (fp);
  float *px = g_new (float, n);
  for (int f = 0; f < n_frames; f++) {
    sam2_test_fill_pixels (px, n, 100 + f);
    g_assert_true (sam2_calibrator_add_pixels (c, px, &error));
    g_assert_no_error (error);
  }
  Sam2Model *q = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (sam2_model_is_quantized (q));
  sam2_calibrator_free (c);
  sam2_recipe_free (recipe);
  g_free (px);
  return q;
}

/* ---- the decoder's stacked layers (session.h's stacks) against the separate ones ------------ */

static void
ignore_layer_input (gpointer user_data, const Sam2Linear *l, const float *x, int M)
{
}

/* The masks' logits of a point and a box prompt into logits, their IoU and object scores into
 * scores (compared apart: the scores are a few numbers next to 3 x 65536 logits). */
static void
decode_outputs (Sam2Session *s, const float *pixels, GArray *logits, GArray *scores)
{
  GError *error = NULL;
  g_assert_true (sam2_session_encode (s, pixels, &error));
  g_assert_no_error (error);
  const Sam2Point pts[] = { { 120, 90, SAM2_LABEL_POSITIVE }, { 30, 200, SAM2_LABEL_NEGATIVE } };
  const Sam2Prompt prompts[] = { { .points = pts, .n_points = 2 },
                                 { .has_box = TRUE, .box = { 40, 50, 200, 220 } } };
  const Sam2Result *r = sam2_session_decode (s, prompts, 2, TRUE, &error);
  g_assert_no_error (error);
  g_array_append_vals (logits, r->lowres_logits,
                       (guint) ((size_t) r->n_objects * r->n_masks * r->mask_size * r->mask_size));
  g_array_append_vals (scores, r->iou_scores, (guint) (r->n_objects * r->n_masks));
  g_array_append_vals (scores, r->object_scores, (guint) r->n_objects);
}

static void
assert_stacks_close (const char *backend, const char *what, const GArray *got, const GArray *want,
                     double tol)
{
  g_assert_cmpuint (got->len, ==, want->len);
  const double rel = sam2_rel_l2 ((float *) got->data, (float *) want->data, want->len);
  g_test_message ("%s: %s of stacked vs separate decoder layers, rel_l2 %.3e (bound %.0e)",
                  backend, what, rel, tol);
  g_assert_cmpfloat (rel, <=, tol);
}

void
sam2_test_check_decoder_stacks (const Sam2SessionOptions *options, double tol)
{
  Sam2Model *m = sam2_test_load_mini ();
  if (m == NULL)
    return;
  sam2_test_check_decoder_stacks_on (m, options, tol);
  Sam2Session *s = sam2_session_new_full (m, options, NULL);
  g_assert_nonnull (s);
  /* a float model: every stack is there */
  g_assert_cmpint (s->stacks.hyper.n_layers, ==, m->hyper_mlps[0].n_layers);
  g_assert_cmpint (s->stacks.heads.n_layers, ==, m->iou_head.n_layers);
  g_assert_cmpint (s->stacks.upscale_v.out_features, >, 0);
  for (int l = 0; l < m->n_two_way; l++) {
    g_assert_cmpint (s->stacks.self_qkv[l].out_features, >, 0);
    g_assert_cmpint (s->stacks.image_kq[l].out_features, >, 0);
  }
  sam2_session_free (s);
  sam2_model_unref (m);
}

void
sam2_test_check_decoder_stacks_on (Sam2Model *m, const Sam2SessionOptions *options, double tol)
{
  GError *error = NULL;
  const int S = sam2_model_get_image_size (m);
  float *pixels = g_new (float, (size_t) 3 * S * S);
  sam2_test_fill_pixels (pixels, (size_t) 3 * S * S, 5);
  Sam2Session *stacked = sam2_session_new_full (m, options, &error);
  g_assert_no_error (error);
  /* an observer (in backend memory, so any backend takes it) makes the decoder run each layer
   * on its own */
  Sam2Session *separate = sam2_session_new_full (m, options, &error);
  g_assert_no_error (error);
  sam2_session_set_observer_full (separate, ignore_layer_input, NULL, TRUE);
  GArray *out[4];
  for (int i = 0; i < 4; i++)
    out[i] = g_array_new (FALSE, FALSE, sizeof (float));
  decode_outputs (stacked, pixels, out[0], out[1]);
  decode_outputs (separate, pixels, out[2], out[3]);
  const char *backend = sam2_session_describe_backend (stacked);
  assert_stacks_close (backend, "mask logits", out[0], out[2], tol);
  assert_stacks_close (backend, "IoU and object scores", out[1], out[3], tol);
  for (int i = 0; i < 4; i++)
    g_array_unref (out[i]);
  sam2_session_free (stacked);
  sam2_session_free (separate);
  g_free (pixels);
}

guint16
sam2_test_f32_to_bf16 (float f)
{
  guint32 x;
  memcpy (&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (guint16) ((x >> 16) | 0x0040u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (guint16) (x >> 16);
}

float
sam2_test_round_bf16 (float f)
{
  const guint32 x = (guint32) sam2_test_f32_to_bf16 (f) << 16;
  memcpy (&f, &x, 4);
  return f;
}
