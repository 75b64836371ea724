/* test-quantize.c: the quantizers and quantized model files.
 *
 * Synthetic layers show each technique doing its job (smoothing on planted activation outliers,
 * the low-rank branch on planted weight outliers); the sam2-shapes model, calibrated on a few of
 * its images, shows GPTQ beating RTN layer by layer, the file round trip being exact, the cache
 * being reused, and every failure ending in a clear error with nothing written. */
#include "check.h"
#include "linear-cpu.h"
#include "lowrank.h"
#include "model.h"
#include "qmodel.h"
#include "quantize.h"
#include "recipe.h"
#include "safetensors.h"
#include "smooth.h"
#include "test-support.h"
#include "weights.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

/* ---- synthetic layers ---- */

static float
gauss (GRand *r)
{
  double u = g_rand_double (r), v = g_rand_double (r);
  return (float) (sqrt (-2.0 * log (u + 1e-300)) * cos (2.0 * G_PI * v));
}

/* Activations of K channels over M tokens, channels `outliers` scaled by `gain` (as LayerNorm
 * outputs of transformers have: a few channels orders of magnitude larger). */
static float *
planted_activations (GRand *r, int M, int K, const int *outliers, int n_out, float gain)
{
  float *x = g_new (float, (size_t) M * K);
  for (size_t i = 0; i < (size_t) M * K; i++)
    x[i] = gauss (r);
  for (int m = 0; m < M; m++)
    for (int j = 0; j < n_out; j++)
      x[(size_t) m * K + outliers[j]] *= gain;
  return x;
}

static float *
random_weight (GRand *r, int N, int K, float scale)
{
  float *w = g_new (float, (size_t) N * K);
  for (size_t i = 0; i < (size_t) N * K; i++)
    w[i] = gauss (r) * scale;
  return w;
}

static double
hessian_of (const float *x, int M, int K, double *h)
{
  memset (h, 0, sizeof (double) * K * K);
  for (int m = 0; m < M; m++)
    for (int i = 0; i < K; i++)
      for (int j = 0; j < K; j++)
        h[(size_t) i * K + j] += (double) x[(size_t) m * K + i] * x[(size_t) m * K + j];
  return 0.0;
}

/* W4A8 error of a layer on x, with smoothing scales s (NULL: none), RTN weights. */
static double
w4a8_error (const float *x, int M, const float *w, int N, int K, const float *s)
{
  Sam2Linear l = { .name = "synthetic", .in_features = K, .out_features = N, .weight = w };
  float *ws = g_new (float, (size_t) N * K);
  if (s != NULL)
    sam2_smooth_weight (w, N, K, s, ws);
  else
    memcpy (ws, w, sizeof (float) * N * K);
  Sam2QuantLinear q = { .act = SAM2_ACT_QUANT_TOKEN_SYM };
  sam2_w4_init (&q.w, N, K, 64, SAM2_QTYPE_SINT4);
  sam2_w4_choose_params (&q.w, ws);
  sam2_w4_quantize_rtn (&q.w, ws);
  float *inv = NULL;
  if (s != NULL) {
    inv = g_new (float, K);
    for (int j = 0; j < K; j++)
      inv[j] = 1.0f / s[j];
    q.smooth_inv = inv;
  }
  double e = sam2_quant_layer_error (&l, &q, x, M, NULL);
  sam2_w4_clear (&q.w);
  g_free (inv);
  g_free (ws);
  return e;
}

static void
test_smoothing_planted_outliers (void)
{
  GRand *r = g_rand_new_with_seed (11);
  const int M = 256, K = 128, N = 96;
  const int outliers[] = { 3, 40, 77, 101 };
  float *x = planted_activations (r, M, K, outliers, G_N_ELEMENTS (outliers), 60.0f);
  float *w = random_weight (r, N, K, 0.1f);
  float absmax[128] = { 0 };
  for (int m = 0; m < M; m++)
    for (int j = 0; j < K; j++)
      absmax[j] = fmaxf (absmax[j], fabsf (x[(size_t) m * K + j]));
  float s[128];
  const float *weights[1] = { w };
  const int rows[1] = { N };
  sam2_smooth_scales (absmax, K, weights, rows, 1, 0.5, s);
  const double plain = w4a8_error (x, M, w, N, K, NULL);
  const double smoothed = w4a8_error (x, M, w, N, K, s);
  g_test_message ("W4A8 output error with activation outliers: %.4f plain, %.4f smoothed", plain,
                  smoothed);
  /* the outlier channels stretch every token's 8-bit range; smoothing moves part of that into
   * the weights, whose 4-bit grid then carries more error: the net must still be lower (a wrong
   * direction of s, or s applied to only one side, makes it several times higher) */
  g_assert_cmpfloat (smoothed, <, plain);
  g_free (x);
  g_free (w);
  g_rand_free (r);
}

static void
test_lowrank_planted_outliers (void)
{
  GRand *r = g_rand_new_with_seed (12);
  const int M = 256, K = 128, N = 96;
  float *x = planted_activations (r, M, K, NULL, 0, 1.0f);
  float *w = random_weight (r, N, K, 0.05f);
  /* a rank-2 structure of large entries: what a few dominant singular directions look like */
  for (int rank = 0; rank < 2; rank++) {
    float *u = random_weight (r, N, 1, 1.0f), *v = random_weight (r, 1, K, 1.0f);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < K; j++)
        w[(size_t) i * K + j] += 0.8f * u[i] * v[j];
    g_free (u);
    g_free (v);
  }
  Sam2Linear l = { .name = "synthetic", .in_features = K, .out_features = N, .weight = w };
  /* W4 without the branch */
  Sam2QuantLinear plain = { .act = SAM2_ACT_QUANT_NONE };
  sam2_w4_init (&plain.w, N, K, 64, SAM2_QTYPE_SINT4);
  sam2_w4_choose_params (&plain.w, w);
  sam2_w4_quantize_rtn (&plain.w, w);
  /* W4 of the residual plus a rank-8 branch */
  const int rank = 8;
  Sam2QuantLinear lr = { .act = SAM2_ACT_QUANT_NONE, .rank = rank };
  lr.lora_up = g_new (float, (size_t) N * rank);
  lr.lora_down = g_new (float, (size_t) rank * K);
  float *res = g_new (float, (size_t) N * K);
  g_assert_true (sam2_lowrank_factor (w, N, K, rank, N, lr.lora_up, lr.lora_down, NULL));
  sam2_lowrank_residual (w, N, K, lr.lora_up, lr.lora_down, rank, res);
  sam2_w4_init (&lr.w, N, K, 64, SAM2_QTYPE_SINT4);
  sam2_w4_choose_params (&lr.w, res);
  sam2_w4_quantize_rtn (&lr.w, res);
  const double e_plain = sam2_quant_layer_error (&l, &plain, x, M, NULL);
  const double e_lr = sam2_quant_layer_error (&l, &lr, x, M, NULL);
  g_test_message ("W4 output error with weight outliers: %.4f plain, %.4f with a rank-%d branch",
                  e_plain, e_lr, rank);
  g_assert_cmpfloat (e_lr, <, 0.5 * e_plain);
  sam2_w4_clear (&plain.w);
  sam2_w4_clear (&lr.w);
  g_free (lr.lora_up);
  g_free (lr.lora_down);
  g_free (res);
  g_free (x);
  g_free (w);
  g_rand_free (r);
}

/* GPTQ on a synthetic layer with correlated inputs: its output error is below RTN's. */
static void
test_gptq_synthetic (void)
{
  GRand *r = g_rand_new_with_seed (13);
  const int M = 512, K = 96, N = 64;
  float *x = planted_activations (r, M, K, NULL, 0, 1.0f);
  /* correlate the channels, as real features are */
  for (int m = 0; m < M; m++)
    for (int j = 1; j < K; j++)
      x[(size_t) m * K + j] += 0.7f * x[(size_t) m * K + j - 1];
  float *w = random_weight (r, N, K, 0.1f);
  double *h = g_new (double, (size_t) K * K);
  hessian_of (x, M, K, h);
  Sam2WeightRecipe wr = { .dtype = SAM2_QTYPE_SINT4, .group_size = 32, .gptq = TRUE,
                          .gptq_damp = 0.01, .gptq_block = 32, .gptq_act_order = TRUE,
                          .gptq_inv_tries = 5 };
  Sam2Linear l = { .name = "synthetic", .in_features = K, .out_features = N, .weight = w };
  Sam2QuantLinear rtn = { .act = SAM2_ACT_QUANT_NONE }, gptq = { .act = SAM2_ACT_QUANT_NONE };
  sam2_w4_init (&rtn.w, N, K, 32, SAM2_QTYPE_SINT4);
  sam2_w4_choose_params (&rtn.w, w);
  sam2_w4_quantize_rtn (&rtn.w, w);
  sam2_w4_init (&gptq.w, N, K, 32, SAM2_QTYPE_SINT4);
  sam2_w4_choose_params (&gptq.w, w);
  g_assert_true (sam2_w4_quantize_gptq (&gptq.w, w, h, &wr, NULL));
  const double e_rtn = sam2_quant_layer_error (&l, &rtn, x, M, NULL);
  const double e_gptq = sam2_quant_layer_error (&l, &gptq, x, M, NULL);
  g_test_message ("synthetic layer: RTN %.4f, GPTQ %.4f", e_rtn, e_gptq);
  g_assert_cmpfloat (e_gptq, <, e_rtn);
  /* static groups: the group parameters are those chosen before GPTQ, column order unchanged */
  g_assert_cmpmem (rtn.w.scales, sizeof (float) * N * rtn.w.n_groups, gptq.w.scales,
                   sizeof (float) * N * gptq.w.n_groups);
  sam2_w4_clear (&rtn.w);
  sam2_w4_clear (&gptq.w);
  g_free (h);
  g_free (x);
  g_free (w);
  g_rand_free (r);
}

/* A K not divisible by the group (base-plus / large have K = 112, 144, 448, 576): a tail group. */
static void
test_tail_group (void)
{
  GRand *r = g_rand_new_with_seed (14);
  const int K = 112, N = 8;
  float *w = random_weight (r, N, K, 0.2f);
  Sam2W4 q;
  sam2_w4_init (&q, N, K, 64, SAM2_QTYPE_UINT4);
  g_assert_cmpint (q.n_groups, ==, 2);
  sam2_w4_choose_params (&q, w);
  sam2_w4_quantize_rtn (&q, w);
  float *deq = g_new (float, (size_t) N * K);
  sam2_w4_dequantize (&q, deq);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < K; j++) {
      const float step = q.scales[i * q.n_groups + j / 64];
      g_assert_cmpfloat (fabsf (deq[i * K + j] - w[i * K + j]), <=, 0.5f * step + 1e-6f);
    }
  sam2_w4_clear (&q);
  g_free (deq);
  g_free (w);
  g_rand_free (r);
}

/* Weighted squared rounding error of RTN codes under w's parameters. */
static double
rtn_weighted_error (Sam2W4 *q, const float *w, const double *col_weight)
{
  sam2_w4_quantize_rtn (q, w);
  float *deq = g_new (float, (size_t) q->n * q->k);
  sam2_w4_dequantize (q, deq);
  double err = 0.0;
  for (int i = 0; i < q->n; i++)
    for (int j = 0; j < q->k; j++) {
      const double d = deq[(size_t) i * q->k + j] - w[(size_t) i * q->k + j];
      err += (col_weight ? col_weight[j] : 1.0) * d * d;
    }
  g_free (deq);
  return err;
}

/* The clipping search (calib_range): on Gaussian weights the extremes of a group of 64 lie
 * far out in the tails, and a range clipped below them gives every other weight a finer step,
 * so the error drops below min-max, for both objectives and both types; with no shrink allowed
 * the search gives min-max exactly. */
#define RANGE_SEARCH_MIN_GAIN 0.95  /* the search must remove at least 5% of the error */

static void
test_range_search (void)
{
  GRand *r = g_rand_new_with_seed (15);
  const int K = 128, N = 16;
  float *w = random_weight (r, N, K, 0.05f);
  double *col_weight = g_new (double, K);
  for (int j = 0; j < K; j++)
    col_weight[j] = 0.1 + g_rand_double (r);
  const Sam2QType types[] = { SAM2_QTYPE_SINT4, SAM2_QTYPE_UINT4 };
  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    for (int weighted = 0; weighted < 2; weighted++) {
      const double *cw = weighted ? col_weight : NULL;
      Sam2W4 minmax, searched, unshrunk;
      sam2_w4_init (&minmax, N, K, 64, types[t]);
      sam2_w4_init (&searched, N, K, 64, types[t]);
      sam2_w4_init (&unshrunk, N, K, 64, types[t]);
      sam2_w4_choose_params (&minmax, w);
      sam2_w4_choose_params_searched (&searched, w, cw, 0.5, 25);
      sam2_w4_choose_params_searched (&unshrunk, w, cw, 0.0, 4);
      const double e_minmax = rtn_weighted_error (&minmax, w, cw);
      const double e_searched = rtn_weighted_error (&searched, w, cw);
      g_test_message ("type %d, weighted %d: min-max %.4g, searched %.4g", types[t], weighted,
                      e_minmax, e_searched);
      g_assert_cmpfloat (e_searched, <, RANGE_SEARCH_MIN_GAIN * e_minmax);
      g_assert_cmpmem (unshrunk.scales, sizeof (float) * N * unshrunk.n_groups, minmax.scales,
                       sizeof (float) * N * minmax.n_groups);
      g_assert_cmpmem (unshrunk.zeros, N * unshrunk.n_groups, minmax.zeros, N * minmax.n_groups);
      sam2_w4_clear (&minmax);
      sam2_w4_clear (&searched);
      sam2_w4_clear (&unshrunk);
    }
  g_free (col_weight);
  g_free (w);
  g_rand_free (r);
}

/* ---- on the sam2-shapes model ---- */

typedef struct {
  Sam2Model *fp;
  Sam2Safetensors *set;
  char *tmp;
} Shapes;

static gboolean
shapes_open (Shapes *sh)
{
  memset (sh, 0, sizeof *sh);
  char *dir = sam2_test_fixture_path ("sam2-shapes");
  if (dir == NULL)
    return FALSE;
  sh->set = sam2_test_open_fixture ("sam2-shapes/eval_dev.safetensors");
  GError *error = NULL;
  sh->fp = sam2_model_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  sh->tmp = g_dir_make_tmp ("sam2-quant-XXXXXX", NULL);
  return sh->set != NULL;
}

static void
rm_rf (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL) {
    char *p = g_build_filename (dir, name, NULL);
    if (g_file_test (p, G_FILE_TEST_IS_DIR))
      rm_rf (p);
    else
      g_unlink (p);
    g_free (p);
  }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (dir);
}

static void
shapes_close (Shapes *sh)
{
  sam2_model_unref (sh->fp);
  sam2_safetensors_close (sh->set);
  if (sh->tmp != NULL)
    rm_rf (sh->tmp);
  g_free (sh->tmp);
}

static Sam2Recipe *
recipe_from (const char *yaml)
{
  GError *error = NULL;
  Sam2Recipe *r = sam2_recipe_parse (yaml, -1, "<test>", &error);
  g_assert_no_error (error);
  return r;
}

/* Calibrates on images [first, first + n) of eval_dev. */
static Sam2Calibrator *
calibrate (Shapes *sh, const Sam2Recipe *r, int first, int n)
{
  GError *error = NULL;
  Sam2Calibrator *c = sam2_calibrator_new (sh->fp, r, &error);
  g_assert_no_error (error);
  const Sam2StTensor *img = sam2_safetensors_find (sh->set, "images_rgb_u8");
  const guint8 *px = img->data;
  for (int i = first; i < first + n; i++) {
    g_assert_true (sam2_calibrator_add_image (c, px + (size_t) i * 256 * 256 * 3, 256, 256,
                                              256 * 3, SAM2_PIXEL_FORMAT_RGB, &error));
    g_assert_no_error (error);
  }
  return c;
}

static const char *W4_GPTQ = "quant:\n  wgts:\n    dtype: sint4\n    group_shapes: [[1, 32]]\n"
                             "    kernel_gptq: {damp_percentage: 0.01, block_size: 32, act_order: true}\n"
                             "  ipts: null\n";

static void
test_gptq_beats_rtn_per_layer (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  Sam2Recipe *r = recipe_from (W4_GPTQ);
  Sam2Calibrator *c = calibrate (&sh, r, 0, 8);
  GError *error = NULL;
  Sam2Model *qm = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  const GPtrArray *rep = sam2_calibrator_get_report (c);
  g_assert_cmpuint (rep->len, >, 10);
  int better = 0;
  for (guint i = 0; i < rep->len; i++) {
    const Sam2LayerReport *l = rep->pdata[i];
    g_test_message ("%-60s RTN %.4f  GPTQ %.4f", l->name, l->rtn_error, l->error);
    better += l->error < l->rtn_error;
  }
  /* GPTQ minimises exactly this error on the calibration inputs; the report measures it on a
   * reservoir sample of those inputs, so every layer must improve */
  g_assert_cmpint (better, ==, (int) rep->len);
  sam2_model_unref (qm);
  sam2_calibrator_free (c);
  sam2_recipe_free (r);
out:
  shapes_close (&sh);
}

/* A copy of the multimask low-res logits (*n floats) of `m` for one click on a fixed image. */
static float *
click_logits (Sam2Model *m, size_t *n)
{
  GError *error = NULL;
  Sam2Session *s = sam2_session_new (m, &error);
  g_assert_no_error (error);
  guint8 rgb[256 * 256 * 3];
  for (size_t i = 0; i < sizeof rgb; i++)
    rgb[i] = (guint8) ((i * 7919) >> 3);
  g_assert_true (sam2_session_set_image (s, rgb, 256, 256, 768, SAM2_PIXEL_FORMAT_RGB, &error));
  const Sam2Point p = { 100, 120, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &p, .n_points = 1 };
  const Sam2Result *r = sam2_session_decode (s, &prompt, 1, TRUE, &error);
  g_assert_no_error (error);
  *n = (size_t) r->n_masks * r->mask_size * r->mask_size;
  float *logits = g_memdup2 (r->lowres_logits, *n * sizeof (float));
  sam2_session_free (s);
  return logits;
}

static void
assert_same_outputs (Sam2Model *a, Sam2Model *b)
{
  size_t na, nb;
  float *la = click_logits (a, &na), *lb = click_logits (b, &nb);
  g_assert_cmpmem (la, na * sizeof (float), lb, nb * sizeof (float));
  g_free (la);
  g_free (lb);
}

/* Relative L2 distance of two models' multimask logits for one click on a fixed image. */
static double
logits_distance (Sam2Model *a, Sam2Model *b)
{
  size_t na, nb;
  float *la = click_logits (a, &na), *lb = click_logits (b, &nb);
  g_assert_cmpuint (na, ==, nb);
  double d = sam2_rel_l2 (lb, la, na);
  g_free (la);
  g_free (lb);
  return d;
}

/* A quantized model stays close to its float model: per-layer errors of a few 1e-3 add up to
 * about 1e-2 on the logits here; a layer computing garbage gives O(1). */
#define QUANTIZED_LOGITS_BOUND 0.1

static const char *W4A8_SVD = "quant:\n  wgts:\n    dtype: sint4\n    group_shapes: [[1, 32]]\n"
                              "    kernel_gptq: {damp_percentage: 0.01, block_size: 32}\n"
                              "  ipts: {dtype: sint8, granularity: per_token, post_gelu: asymmetric}\n"
                              "smooth: {alpha: 0.5}\nlow_rank: {rank: 8}\n";

static void assert_bad_values_refused (const char *good, const char *tmp);

static void
test_file_round_trip (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  Sam2Recipe *r = recipe_from (W4A8_SVD);
  Sam2Calibrator *c = calibrate (&sh, r, 0, 4);
  GError *error = NULL;
  Sam2Model *qm = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  char *path = g_build_filename (sh.tmp, "shapes-w4a8.safetensors", NULL);
  g_assert_true (sam2_model_save (qm, path, &error));
  g_assert_no_error (error);
  Sam2Model *loaded = sam2_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_true (sam2_model_is_quantized (loaded));
  /* the same numbers in memory and from the file, and near the float model */
  assert_same_outputs (qm, loaded);
  g_assert_cmpfloat (logits_distance (qm, sh.fp), <, QUANTIZED_LOGITS_BOUND);
  /* metadata a safetensors tool sees */
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (sam2_safetensors_metadata (st, "format"), ==, SAM2_QMODEL_FORMAT);
  g_assert_nonnull (strstr (sam2_safetensors_metadata (st, "provenance"), "\"calibration_frames\": 4"));
  g_assert_nonnull (strstr (sam2_safetensors_metadata (st, "recipe"), "rank: 8"));
  sam2_safetensors_close (st);
  /* smaller than the float model in FP16 */
  g_assert_cmpuint (sam2_qmodel_weight_bytes (loaded), <, sam2_model_fp16_bytes (sh.fp));
  assert_bad_values_refused (path, sh.tmp);
  sam2_model_unref (loaded);
  sam2_model_unref (qm);
  sam2_calibrator_free (c);
  sam2_recipe_free (r);
  g_free (path);
out:
  shapes_close (&sh);
}

/* Frames three to an encoder pass (calib.batch_size; five frames, so the last pass runs with two
 * at sam2_calibrator_flush) calibrate the model that one frame per pass does: the same rows drawn,
 * statistics that differ by the float rounding of GEMMs over more rows (test-observers.c), so
 * the layers' output errors stay within BATCHED_LAYER_ERROR_BOUND (8e-6 measured) and only a few
 * GPTQ codes round the other way: the decoder's layers, calibrated on ~100 prompt tokens, have
 * ill-conditioned Hessians, and the logits moved by 7e-3. Running the prompts of each pass's
 * first frame for all its frames moved the layer errors by 2e-3 and the logits by 6e-2. */
#define BATCHED_LAYER_ERROR_BOUND 1e-4
#define BATCHED_LOGITS_BOUND 2e-2

static void
test_batched_calibration (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  /* the decoder quantized too: its prompts run on each frame of a pass in turn */
  char *yaml1 = g_strconcat (W4A8_SVD, "skips: {decoder: false}\n", NULL);
  char *yaml3 = g_strconcat (yaml1, "calib: {batch_size: 3}\n", NULL);
  Sam2Recipe *r1 = recipe_from (yaml1), *r3 = recipe_from (yaml3);
  Sam2Calibrator *c1 = calibrate (&sh, r1, 0, 5), *c3 = calibrate (&sh, r3, 0, 5);
  g_assert_cmpint (sam2_calibrator_get_n_frames (c3), ==, 5);   /* two of them still pending */
  GError *error = NULL;
  g_assert_true (sam2_calibrator_flush (c3, &error));   /* runs those two */
  g_assert_true (sam2_calibrator_flush (c3, &error));   /* nothing left: nothing to do */
  g_assert_no_error (error);
  g_assert_cmpint (sam2_calibrator_get_n_frames (c3), ==, 5);
  Sam2Model *q1 = sam2_calibrator_quantize (c1, NULL, NULL, &error);
  g_assert_no_error (error);
  Sam2Model *q3 = sam2_calibrator_quantize (c3, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sam2_calibrator_get_n_frames (c3), ==, 5);
  const GPtrArray *rep1 = sam2_calibrator_get_report (c1), *rep3 = sam2_calibrator_get_report (c3);
  g_assert_cmpuint (rep3->len, ==, rep1->len);
  double worst = 0.0;
  for (guint i = 0; i < rep1->len; i++) {
    const Sam2LayerReport *a = rep1->pdata[i], *b = rep3->pdata[i];
    g_assert_cmpstr (a->name, ==, b->name);
    worst = MAX (worst, fabs (a->error - b->error));
  }
  const double d = logits_distance (q3, q1);
  g_test_message ("batch 3 against 1: logits %.2e apart, layer errors at most %.2e apart", d,
                  worst);
  g_assert_cmpfloat (worst, <, BATCHED_LAYER_ERROR_BOUND);
  g_assert_cmpfloat (d, <, BATCHED_LOGITS_BOUND);

  /* the batch size is not part of the statistics cache's key: a run in threes finds the
   * statistics a frame-by-frame run saved */
  char *cache = g_build_filename (sh.tmp, "cache-batched", NULL);
  gboolean hit = TRUE;
  Sam2Calibrator *saver = calibrate (&sh, r1, 0, 2);
  g_assert_true (sam2_calibrator_use_cache (saver, cache, "frames-0-2", &hit, &error));
  g_assert_false (hit);
  Sam2Model *qs = sam2_calibrator_quantize (saver, NULL, NULL, &error);
  g_assert_no_error (error);
  Sam2Calibrator *reader = sam2_calibrator_new (sh.fp, r3, &error);
  g_assert_true (sam2_calibrator_use_cache (reader, cache, "frames-0-2", &hit, &error));
  g_assert_true (hit);
  g_assert_cmpint (sam2_calibrator_get_n_frames (reader), ==, 2);
  sam2_calibrator_free (reader);
  sam2_calibrator_free (saver);
  sam2_model_unref (qs);
  g_free (cache);
  sam2_model_unref (q3);
  sam2_model_unref (q1);
  sam2_calibrator_free (c3);
  sam2_calibrator_free (c1);
  sam2_recipe_free (r3);
  sam2_recipe_free (r1);
  g_free (yaml3);
  g_free (yaml1);
out:
  shapes_close (&sh);
}

/* Float32 storage, and a float layer reading a smoothed LayerNorm's output (its weight then
 * carries the smoothing scales): both paths of the float tensors of a quantized model. */
static const char *W4A8_F32 = "quant:\n  wgts: {dtype: uint4, group_size: 32}\n"
                              "  ipts: {dtype: sint8}\nsmooth: {alpha: 0.5}\n"
                              "skips:\n  patterns: [\"vision_encoder.backbone.blocks.1.proj\"]\n"
                              "  dtype: float32\n";

static void
test_float32_storage_and_smoothed_float_layer (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  Sam2Recipe *r = recipe_from (W4A8_F32);
  Sam2Calibrator *c = calibrate (&sh, r, 0, 3);
  GError *error = NULL;
  Sam2Model *qm = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  /* the calibrator (and the plan it built the model from) are gone before the model is used */
  sam2_calibrator_free (c);
  char *path = g_build_filename (sh.tmp, "f32.safetensors", NULL);
  g_assert_true (sam2_model_save (qm, path, &error));
  Sam2Model *loaded = sam2_model_load (path, &error);
  g_assert_no_error (error);
  assert_same_outputs (qm, loaded);
  g_assert_cmpfloat (logits_distance (qm, sh.fp), <, QUANTIZED_LOGITS_BOUND);
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_cmpint (sam2_safetensors_find (st, "vision_encoder.backbone.blocks.1.proj.weight")->dtype,
                   ==, SAM2_DTYPE_F32);
  sam2_safetensors_close (st);
  sam2_model_unref (loaded);
  sam2_model_unref (qm);
  sam2_recipe_free (r);
  g_free (path);
out:
  shapes_close (&sh);
}

/* `src` copied to `dst` with its metadata `keys` (NULL-terminated), `key` among them set to
 * `value` (NULL: all kept), and when `tensor` is not NULL, that tensor's bytes replaced by
 * `bytes` (its size; NULL: its own) and, when `rows` >= 0, cut to its first `rows` rows. */
static void
rewrite_safetensors_rows (const char *src, const char *dst, const char *const *keys,
                          const char *key, const char *value, const char *tensor,
                          const void *bytes, int64_t rows)
{
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (src, &error);
  g_assert_no_error (error);
  Sam2StWriter *w = sam2_st_writer_new ();
  for (int i = 0; i < sam2_safetensors_n_tensors (st); i++) {
    const Sam2StTensor *t = sam2_safetensors_nth (st, i);
    const gboolean hit = tensor != NULL && strcmp (t->name, tensor) == 0;
    int64_t shape[8];
    memcpy (shape, t->shape, sizeof (int64_t) * t->ndim);
    if (hit && rows >= 0)
      shape[0] = MIN (rows, shape[0]);
    const void *data = hit && bytes != NULL ? bytes : t->data;
    g_assert_true (sam2_st_writer_add (w, t->name, t->dtype, t->ndim, shape, data, &error));
  }
  for (guint i = 0; keys[i] != NULL; i++) {
    const char *v = key != NULL && strcmp (keys[i], key) == 0 ? value
                                                             : sam2_safetensors_metadata (st, keys[i]);
    if (v != NULL)
      sam2_st_writer_set_metadata (w, keys[i], v);
  }
  g_assert_true (sam2_st_writer_write (w, dst, &error));
  sam2_st_writer_free (w);
  sam2_safetensors_close (st);
}

static void
rewrite_safetensors (const char *src, const char *dst, const char *const *keys, const char *key,
                     const char *value, const char *tensor, const void *bytes)
{
  rewrite_safetensors_rows (src, dst, keys, key, value, tensor, bytes, -1);
}

static void
rewrite_quantized_file (const char *src, const char *dst, const char *key, const char *value,
                        const char *tensor, const void *bytes)
{
  static const char *const keys[] = { "format", "format_version", "config", "recipe",
                                      "provenance", "layers", NULL };
  rewrite_safetensors (src, dst, keys, key, value, tensor, bytes);
}

/* The first quantized layer of `m` with a low-rank branch (rank) or a smoothing divisor. */
static const Sam2Linear *
first_layer_with (const Sam2Model *m, gboolean rank)
{
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    if (l->quant != NULL && (rank ? l->quant->rank > 0 : l->quant->smooth_inv != NULL))
      return l;
  }
  return NULL;
}

/* Values a damaged file may hold in tensors of the right shape: a NaN or an infinity in a
 * low-rank factor, a NaN or a zero smoothing divisor (a model that loaded them computed NaN
 * scores or other masks, exit 0); a format version with trailing text. Each is an error that
 * names the tensor, and the same model saved with such values is refused before anything is
 * written. */
static void
assert_bad_values_refused (const char *good, const char *tmp)
{
  GError *error = NULL;
  Sam2Model *m = sam2_qmodel_load (good, &error);
  g_assert_no_error (error);
  const Sam2Linear *low = first_layer_with (m, TRUE), *smoothed = first_layer_with (m, FALSE);
  g_assert_nonnull (low);
  g_assert_nonnull (smoothed);
  char *bad = g_build_filename (tmp, "bad-values.safetensors", NULL);
  const struct { const Sam2Linear *l; const char *part; size_t n; float value; } cases[] = {
    { low, "lora_up", (size_t) low->out_features * low->quant->rank, NAN },
    { low, "lora_down", (size_t) low->quant->rank * low->in_features, INFINITY },
    { smoothed, "smooth_inv", (size_t) smoothed->in_features, NAN },
    { smoothed, "smooth_inv", (size_t) smoothed->in_features, 0.0f },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    char *tensor = g_strconcat (cases[c].l->name, ".", cases[c].part, NULL);
    const gboolean f16 = strcmp (cases[c].part, "smooth_inv") != 0;
    /* all ones, one bad element in the middle */
    void *bytes = f16 ? (void *) g_new (guint16, cases[c].n) : (void *) g_new (float, cases[c].n);
    for (size_t i = 0; i < cases[c].n; i++) {
      const float v = i == cases[c].n / 2 ? cases[c].value : 1.0f;
      if (f16) {
        const _Float16 h = (_Float16) v;
        memcpy ((guint16 *) bytes + i, &h, 2);
      } else {
        ((float *) bytes)[i] = v;
      }
    }
    rewrite_quantized_file (good, bad, NULL, NULL, tensor, bytes);
    g_assert_null (sam2_qmodel_load (bad, &error));
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, tensor));
    g_test_message ("%s", error->message);
    g_clear_error (&error);
    g_free (bytes);
    g_free (tensor);
  }
  rewrite_quantized_file (good, bad, "format_version", "1junk", NULL, NULL);
  g_assert_null (sam2_qmodel_load (bad, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_VERSION);
  g_clear_error (&error);

  /* saving: a NaN branch, then an infinite static activation scale, each refused with the
   * layer's name and no file */
  char *out = g_build_filename (tmp, "not-written.safetensors", NULL);
  Sam2QuantLinear *q = low->quant;
  const float kept = q->lora_up[0];
  q->lora_up[0] = NAN;
  g_assert_false (sam2_model_save (m, out, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, low->name));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  q->lora_up[0] = kept;
  const Sam2ActQuantMode mode = q->act;
  const float scale = q->act_scale;
  q->act = SAM2_ACT_QUANT_TENSOR_SYM;
  q->act_scale = INFINITY;
  g_assert_false (sam2_model_save (m, out, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  q->act = mode;
  q->act_scale = scale;
  g_assert_true (sam2_model_save (m, out, &error));  /* restored, it saves */
  g_assert_no_error (error);
  sam2_model_unref (m);
  g_free (out);
  g_free (bad);
}

/* The one calibration cache file in `dir`. */
static char *
cache_file_in (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  char *path = NULL;
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL) {
    g_assert_null (path);
    path = g_build_filename (dir, name, NULL);
  }
  g_dir_close (d);
  g_assert_nonnull (path);
  return path;
}

static void
test_cache_reuse (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  Sam2Recipe *r = recipe_from (W4_GPTQ);
  char *cache = g_build_filename (sh.tmp, "cache", NULL);
  GError *error = NULL;
  gboolean hit = TRUE;
  Sam2Calibrator *c1 = sam2_calibrator_new (sh.fp, r, &error);
  g_assert_true (sam2_calibrator_use_cache (c1, cache, "frames-0-3", &hit, &error));
  g_assert_false (hit);
  sam2_calibrator_free (c1);
  c1 = calibrate (&sh, r, 0, 3);
  g_assert_true (sam2_calibrator_use_cache (c1, cache, "frames-0-3", &hit, &error));
  Sam2Model *q1 = sam2_calibrator_quantize (c1, NULL, NULL, &error);
  g_assert_no_error (error);
  /* a second run over the same set loads the statistics instead of running frames */
  Sam2Calibrator *c2 = sam2_calibrator_new (sh.fp, r, &error);
  g_assert_true (sam2_calibrator_use_cache (c2, cache, "frames-0-3", &hit, &error));
  g_assert_true (hit);
  g_assert_cmpint (sam2_calibrator_get_n_frames (c2), ==, 3);
  Sam2Model *q2 = sam2_calibrator_quantize (c2, NULL, NULL, &error);
  g_assert_no_error (error);
  assert_same_outputs (q1, q2);

  /* The float forward's precision is part of the key: a BF16 calibrator over the same frames
   * does not take the FP32 statistics (its activations round otherwise); where this CPU runs
   * BF16, only that part is checked here (SAM2_CPU_BF16=0 or another CPU: nothing to run). */
  const Sam2SessionOptions bf16 = { SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, 1 };
  if (sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, NULL)) {
    Sam2Calibrator *cb = sam2_calibrator_new_full (sh.fp, r, &bf16, &error);
    g_assert_no_error (error);
    g_assert_true (sam2_calibrator_use_cache (cb, cache, "frames-0-3", &hit, &error));
    g_assert_false (hit);
    g_assert_cmpint (sam2_calibrator_get_n_frames (cb), ==, 0);
    sam2_calibrator_free (cb);
  } else {
    g_test_message ("no BF16 on this CPU: the key's precision part unchecked");
  }

  /* A damaged entry (statistics of other frames, the last layer's token count lost) is
   * ignored with a warning and leaves the statistics of the frames already run untouched: all
   * or nothing, so the model equals the one from the frames alone. */
  Sam2Calibrator *other = calibrate (&sh, r, 3, 6);
  char *other_dir = g_build_filename (sh.tmp, "cache-other", NULL);
  g_assert_true (sam2_calibrator_use_cache (other, other_dir, "frames-0-3", &hit, &error));
  Sam2Model *qo = sam2_calibrator_quantize (other, NULL, NULL, &error);
  g_assert_no_error (error);
  char *other_file = cache_file_in (other_dir), *cache_path = cache_file_in (cache);
  Sam2Safetensors *st = sam2_safetensors_open (other_file, &error);
  g_assert_no_error (error);
  JsonNode *tokens = json_from_string (sam2_safetensors_metadata (st, "tokens"), NULL);
  sam2_safetensors_close (st);
  const Sam2Linear *last = NULL;
  for (guint i = 0; i < sh.fp->linears->len; i++)
    if (json_object_has_member (json_node_get_object (tokens),
                                ((const Sam2Linear *) sh.fp->linears->pdata[i])->name))
      last = sh.fp->linears->pdata[i];
  g_assert_nonnull (last);
  json_object_remove_member (json_node_get_object (tokens), last->name);
  char *damaged = json_to_string (tokens, FALSE);
  static const char *const cache_keys[] = { "format", "frames", "tokens", NULL };
  rewrite_safetensors (other_file, cache_path, cache_keys, "tokens", damaged, NULL, NULL);
  Sam2Calibrator *c3 = calibrate (&sh, r, 0, 3);
  g_test_expect_message ("sam2", G_LOG_LEVEL_WARNING, "ignoring calibration cache*token or sample count for*");
  g_assert_true (sam2_calibrator_use_cache (c3, cache, "frames-0-3", &hit, &error));
  g_test_assert_expected_messages ();
  g_assert_false (hit);
  Sam2Model *q3 = sam2_calibrator_quantize (c3, NULL, NULL, &error);
  g_assert_no_error (error);
  assert_same_outputs (q1, q3);

  /* Infinite ranges in a layer that has seen tokens (only a layer that has seen none keeps its
   * starting +-inf): a per-tensor activation scale from them was infinite, and the file written
   * with it did not load. Ignored with a warning, like the entry above. */
  char *min_name = g_strconcat (last->name, ".min", NULL);
  st = sam2_safetensors_open (other_file, &error);
  g_assert_no_error (error);
  const Sam2StTensor *mins = sam2_safetensors_find (st, min_name);
  g_assert_nonnull (mins);
  float *inf_mins = g_memdup2 (mins->data, mins->nbytes);
  inf_mins[0] = -INFINITY;
  sam2_safetensors_close (st);
  rewrite_safetensors (other_file, cache_path, cache_keys, NULL, NULL, min_name, inf_mins);
  Sam2Calibrator *c4 = calibrate (&sh, r, 0, 3);
  g_test_expect_message ("sam2", G_LOG_LEVEL_WARNING, "ignoring calibration cache*finite*");
  g_assert_true (sam2_calibrator_use_cache (c4, cache, "frames-0-3", &hit, &error));
  g_test_assert_expected_messages ();
  g_assert_false (hit);
  sam2_calibrator_free (c4);

  /* Fewer kept samples than observation keeps (min(tokens, keep)), none here: the smoothing
   * search then ran on no sample, never filled its scales and quantized with uninitialised
   * ones. Ignored with a warning too. */
  char *samples_name = g_strconcat (last->name, ".samples", NULL);
  rewrite_safetensors_rows (other_file, cache_path, cache_keys, NULL, NULL, samples_name, NULL,
                            0);
  Sam2Calibrator *c5 = calibrate (&sh, r, 0, 3);
  g_test_expect_message ("sam2", G_LOG_LEVEL_WARNING, "ignoring calibration cache*token or sample count for*");
  g_assert_true (sam2_calibrator_use_cache (c5, cache, "frames-0-3", &hit, &error));
  g_test_assert_expected_messages ();
  g_assert_false (hit);
  sam2_calibrator_free (c5);
  g_free (samples_name);
  g_free (inf_mins);
  g_free (min_name);
  sam2_model_unref (q3);
  sam2_model_unref (qo);
  sam2_calibrator_free (c3);
  sam2_calibrator_free (other);
  json_node_unref (tokens);
  g_free (damaged);
  g_free (other_file);
  g_free (cache_path);
  g_free (other_dir);
  sam2_model_unref (q1);
  sam2_model_unref (q2);
  sam2_calibrator_free (c1);
  sam2_calibrator_free (c2);
  sam2_recipe_free (r);
  g_free (cache);
out:
  shapes_close (&sh);
}

/* The `layers` metadata text `layers` with member `field` of layer `layer` set to the JSON
 * `value`. */
static char *
layers_with_field (const char *layers, const char *layer, const char *field, const char *value)
{
  JsonParser *parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, layers, -1, NULL));
  JsonObject *d = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                                 layer);
  g_assert_nonnull (d);
  JsonNode *v = json_from_string (value, NULL);
  g_assert_nonnull (v);
  json_object_set_member (d, field, v);
  char *text = json_to_string (json_parser_get_root (parser), FALSE);
  g_object_unref (parser);
  return text;
}

/* A quantized file whose metadata or quantized tensors were tampered with: each case is a
 * SAM2_ERROR naming what is wrong, never a crash and never a model that computes garbage. */
static void
assert_corrupt_metadata_refused (const char *good, const char *tmp)
{
  char *bad = g_build_filename (tmp, "tampered.safetensors", NULL);
  GError *error = NULL;
  Sam2Model *m = sam2_qmodel_load (good, &error);
  g_assert_no_error (error);
  /* the first quantized layer */
  const Sam2Linear *layer = NULL;
  for (guint i = 0; i < m->linears->len && layer == NULL; i++)
    if (((const Sam2Linear *) m->linears->pdata[i])->quant != NULL)
      layer = m->linears->pdata[i];
  g_assert_nonnull (layer);
  char *name = g_strdup (layer->name);
  const int n_groups = layer->quant->w.n_groups, out = layer->out_features;
  sam2_model_unref (m);

  /* json-glib recurses without limit: 100000 nested arrays overflowed the stack */
  GString *deep = g_string_new (NULL);
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, ']');
  const struct { const char *field, *value; } fields[] = {
    { "group_size", "\"64\"" }, { "group_size", "64.5" }, { "group_size", "0" },
    { "group_size", "1000000000000" }, { "rank", "-1" }, { "rank", "1000000" },
    { "dtype", "\"int4\"" }, { "dtype", "4" }, { "act", "\"per_channel\"" },
    { "smooth", "\"yes\"" }, { "act_scale", "\"0.1\"" }, { "act_scale", "[]" },
  };
  Sam2Safetensors *st = sam2_safetensors_open (good, &error);
  g_assert_no_error (error);
  char *good_layers = g_strdup (sam2_safetensors_metadata (st, "layers"));
  sam2_safetensors_close (st);
  const int n_cases = 4 + G_N_ELEMENTS (fields) + 3;
  for (int c = 0; c < n_cases; c++) {
    char *layers = NULL;
    const char *key = "layers", *value = NULL;
    guint16 *scales = NULL;
    if (c == 0) {
      value = deep->str;
    } else if (c == 1) {
      value = "[]";                                          /* not an object */
    } else if (c == 2) {
      value = "{\"x\": 1";                                   /* not JSON */
    } else if (c == 3) {
      layers = g_strdup_printf ("{\"%s\": 5}", name);         /* a layer that is no object */
    } else if (c < 4 + (int) G_N_ELEMENTS (fields)) {
      layers = layers_with_field (good_layers, name, fields[c - 4].field, fields[c - 4].value);
    } else if (c < n_cases - 1) {
      /* static activation parameters: a negative scale, a symmetric mode with a zero point */
      const gboolean asym = c == n_cases - 3;
      char *mode = layers_with_field (good_layers, name, "act",
                                      asym ? "\"tensor_asym\"" : "\"tensor_sym\"");
      char *scaled = layers_with_field (mode, name, "act_scale", asym ? "-1.0" : "0.5");
      layers = layers_with_field (scaled, name, "act_zero", asym ? "0" : "3");
      g_free (mode);
      g_free (scaled);
    } else {
      /* an infinite weight scale (FP16 0x7c00) */
      key = NULL;
      scales = g_new (guint16, (size_t) out * n_groups);
      for (size_t i = 0; i < (size_t) out * n_groups; i++)
        scales[i] = 0x3c00;                                  /* 1.0 */
      scales[0] = 0x7c00;
    }
    char *scales_name = g_strconcat (name, ".scales", NULL);
    rewrite_quantized_file (good, bad, key, layers != NULL ? layers : value,
                            scales != NULL ? scales_name : NULL, scales);
    m = sam2_qmodel_load (bad, &error);
    g_assert_null (m);
    g_assert_nonnull (error);
    g_assert_true (error->domain == SAM2_ERROR);
    g_assert_nonnull (strstr (error->message, bad));
    g_test_message ("case %d: %s", c, error->message);
    g_clear_error (&error);
    g_free (scales_name);
    g_free (scales);
    g_free (layers);
  }
  /* a file of another format version, and one that is no quantized model at all */
  rewrite_quantized_file (good, bad, "format_version", "2", NULL, NULL);
  g_assert_null (sam2_qmodel_load (bad, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_VERSION);
  g_assert_nonnull (strstr (error->message, "quantize the model again"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  rewrite_quantized_file (good, bad, "format", "something-else", NULL, NULL);
  g_assert_null (sam2_qmodel_load (bad, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_clear_error (&error);
  /* the untampered copy still loads: the cases fail for what they change */
  rewrite_quantized_file (good, bad, NULL, NULL, NULL, NULL);
  m = sam2_qmodel_load (bad, &error);
  g_assert_no_error (error);
  sam2_model_unref (m);
  g_string_free (deep, TRUE);
  g_free (good_layers);
  g_free (name);
  g_free (bad);
}

/* sam2q info's lines for a quantized model, and what it leaves out of tampered metadata: the
 * provenance and recipe come from the file, so only what reads cleanly is printed. */
static void
assert_description (const char *good, const char *tmp)
{
  char *bad = g_build_filename (tmp, "described.safetensors", NULL);
  GError *error = NULL;
  Sam2Model *m = sam2_model_load (good, &error);
  g_assert_no_error (error);
  char *text = sam2_model_describe (m);
  g_test_message ("%s", text);
  g_assert_nonnull (strstr (text, "quantized: "));
  g_assert_nonnull (strstr (text, " linear layers in 4 bits ("));
  g_assert_nonnull (strstr (text, "activations: float (weight-only) on "));
  g_assert_nonnull (strstr (text, "recipe: custom\n"));
  g_assert_nonnull (strstr (text, "calibrated: 2 frames (sha256:"));
  g_free (text);
  sam2_model_unref (m);

  const struct { const char *key, *value, *present, *absent; } cases[] = {
    /* a control character in a string: that field is left out, the others stay */
    { "provenance", "{\"calibration_frames\": 2, \"source_model\": \"a\\u001b[2Jb\"}",
      "calibrated: 2 frames\n", "from " },
    { "provenance", "not JSON", NULL, "calibrated:" },
    { "provenance", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
      NULL, "calibrated:" },
    { "recipe", "# sam2 quantization recipe \"x\ny\", every key resolved\n", NULL, "recipe:" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    rewrite_quantized_file (good, bad, cases[i].key, cases[i].value, NULL, NULL);
    m = sam2_model_load (bad, &error);
    g_assert_no_error (error);
    text = sam2_model_describe (m);
    if (cases[i].present != NULL)
      g_assert_nonnull (strstr (text, cases[i].present));
    g_assert_null (strstr (text, cases[i].absent));
    g_assert_nonnull (strstr (text, "quantized: "));
    g_free (text);
    sam2_model_unref (m);
  }
  g_free (bad);
}

/* Output directories: checked without being made, made by the save, and gone again when the
 * save fails (past RLIMIT_FSIZE, which binds root too). `plain_file` is a regular file. */
static void
assert_output_dirs_leave_nothing (Sam2Model *qm, const char *tmp, const char *plain_file)
{
  GError *error = NULL;
  char *top = g_build_filename (tmp, "new", NULL);
  char *nested = g_build_filename (top, "deeper", "still", NULL);
  char *path = g_build_filename (nested, "model.safetensors", NULL);

  g_assert_true (sam2_check_output_dir (nested, "output", "hint", &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (top, G_FILE_TEST_EXISTS));
  char *under_file = g_build_filename (plain_file, "sub", NULL);
  g_assert_false (sam2_check_output_dir (under_file, "output", "hint", &error));
  g_assert_nonnull (strstr (error->message, "cannot create the output directory"));
  g_clear_error (&error);
  g_free (under_file);

  void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
  struct rlimit saved, lowered;
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  lowered = saved;
  lowered.rlim_cur = 4096;
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lowered), ==, 0);
  const gboolean saved_ok = sam2_model_save (qm, path, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  signal (SIGXFSZ, old_handler);
  g_assert_false (saved_ok);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (g_file_test (top, G_FILE_TEST_EXISTS));

  g_assert_true (sam2_model_save (qm, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));

  /* undoing stops at a directory that holds something */
  char *created = NULL, *more = g_build_filename (nested, "a", "b", NULL);
  char *first_new = g_build_filename (nested, "a", NULL);
  g_assert_true (sam2_output_dir_create (more, &created, &error));
  g_assert_cmpstr (created, ==, first_new);
  g_free (first_new);
  sam2_output_dir_remove_created (more, top);
  g_assert_false (g_file_test (created, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  g_free (created);
  g_free (more);
  g_free (path);
  g_free (nested);
  g_free (top);
}

static void
test_failures_leave_nothing (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  GError *error = NULL;
  Sam2Calibrator *c = sam2_calibrator_new (sh.fp, NULL, &error);
  g_assert_no_error (error);
  /* no frames */
  g_assert_null (sam2_calibrator_quantize (c, NULL, NULL, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  sam2_calibrator_free (c);

  Sam2Recipe *r = recipe_from (W4_GPTQ);
  c = calibrate (&sh, r, 0, 2);
  Sam2Model *qm = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  /* an output whose directory is a regular file: fails even as root, leaves nothing */
  char *file = g_build_filename (sh.tmp, "plain-file", NULL);
  g_assert_true (g_file_set_contents (file, "x", 1, NULL));
  char *bad = g_build_filename (file, "model.safetensors", NULL);
  g_assert_false (sam2_model_save (qm, bad, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
  assert_output_dirs_leave_nothing (qm, sh.tmp, file);

  /* a corrupt file: every truncation is an error, never a crash */
  char *path = g_build_filename (sh.tmp, "q.safetensors", NULL);
  g_assert_true (sam2_model_save (qm, path, &error));
  assert_corrupt_metadata_refused (path, sh.tmp);
  assert_description (path, sh.tmp);
  char *data;
  gsize len;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  const gsize cuts[] = { len - 1, len / 2, 4096, 9 };
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_assert_true (g_file_set_contents (path, data, (gssize) cuts[i], NULL));
    Sam2Model *m = sam2_qmodel_load (path, &error);
    g_assert_null (m);
    g_assert_nonnull (error);
    g_clear_error (&error);
    /* through the general loader too: the file's own fault, not a config.json it never needed
     * (a damaged quantized file is no longer recognised as one, and was then taken for a
     * checkpoint's weights) */
    g_assert_null (sam2_model_load (path, &error));
    g_assert_nonnull (error);
    if (i < 2)        /* the header intact: the tensors past the end */
      g_assert_nonnull (strstr (error->message, "truncated"));
    g_assert_null (strstr (error->message, "config.json"));
    g_test_message ("cut at %zu: %s", cuts[i], error->message);
    g_clear_error (&error);
  }
  g_free (data);
  sam2_model_unref (qm);
  sam2_calibrator_free (c);
  sam2_recipe_free (r);
  g_free (file);
  g_free (bad);
  g_free (path);
out:
  shapes_close (&sh);
}

/* Counts the progress calls; cancels `cancellable` at the call numbered `cancel_at`. */
typedef struct {
  int calls;
  int cancel_at;
  GCancellable *cancellable;
} CancelAt;

static void
cancel_at_progress (gpointer data, const char *stage, int done, int total, const char *item,
                    double error)
{
  CancelAt *ca = data;
  (void) stage, (void) done, (void) total, (void) item, (void) error;
  if (++ca->calls == ca->cancel_at)
    g_cancellable_cancel (ca->cancellable);
}

/* A cancelled quantization stops at the next layer (no layer quantized after the cancel, none
 * at all when cancelled before), says so with G_IO_ERROR_CANCELLED, and leaves the calibrator
 * as it was: quantizing it again gives the model a run without the cancel gives. */
static void
test_cancel (void)
{
  Shapes sh;
  if (!shapes_open (&sh))
    goto out;
  Sam2Recipe *r = recipe_from (W4A8_SVD);
  Sam2Calibrator *c = calibrate (&sh, r, 0, 2);
  GError *error = NULL;

  CancelAt ca = { 0, 0, g_cancellable_new () };
  g_cancellable_cancel (ca.cancellable);
  g_assert_null (sam2_calibrator_quantize_cancellable (c, cancel_at_progress, &ca,
                                                       ca.cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (ca.calls, ==, 0);
  g_clear_error (&error);
  g_object_unref (ca.cancellable);

  /* from the progress callback, as an application's stop would come */
  ca = (CancelAt) { 0, 3, g_cancellable_new () };
  g_assert_null (sam2_calibrator_quantize_cancellable (c, cancel_at_progress, &ca,
                                                       ca.cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (ca.calls, ==, 3);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_object_unref (ca.cancellable);

  /* not cancelled: every layer, and the model of a plain run */
  ca = (CancelAt) { 0, -1, g_cancellable_new () };
  Sam2Model *after = sam2_calibrator_quantize_cancellable (c, cancel_at_progress, &ca,
                                                           ca.cancellable, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ca.calls, >, 3);
  g_object_unref (ca.cancellable);
  Sam2Calibrator *fresh = calibrate (&sh, r, 0, 2);
  Sam2Model *plain = sam2_calibrator_quantize (fresh, NULL, NULL, &error);
  g_assert_no_error (error);
  assert_same_outputs (after, plain);

  sam2_model_unref (plain);
  sam2_model_unref (after);
  sam2_calibrator_free (fresh);
  sam2_calibrator_free (c);
  sam2_recipe_free (r);
out:
  shapes_close (&sh);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/quantize/smoothing-planted-outliers", test_smoothing_planted_outliers);
  g_test_add_func ("/quantize/lowrank-planted-outliers", test_lowrank_planted_outliers);
  g_test_add_func ("/quantize/gptq-synthetic", test_gptq_synthetic);
  g_test_add_func ("/quantize/tail-group", test_tail_group);
  g_test_add_func ("/quantize/range-search", test_range_search);
  g_test_add_func ("/quantize/gptq-beats-rtn-per-layer", test_gptq_beats_rtn_per_layer);
  g_test_add_func ("/quantize/file-round-trip", test_file_round_trip);
  g_test_add_func ("/quantize/float32-storage-smoothed-float-layer",
                   test_float32_storage_and_smoothed_float_layer);
  g_test_add_func ("/quantize/cache-reuse", test_cache_reuse);
  g_test_add_func ("/quantize/batched-calibration", test_batched_calibration);
  g_test_add_func ("/quantize/failures-leave-nothing", test_failures_leave_nothing);
  g_test_add_func ("/quantize/cancel", test_cancel);
  return g_test_run ();
}
