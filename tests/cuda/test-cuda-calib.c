/* test-cuda-calib.c: calibration on the CUDA backend against the CPU.
 *
 *   - the statistics: the same float model (sam2-shapes, trained activations) and the same frames
 *     through a CPU session with host observers and a CUDA session with device observers (the
 *     backend's stats ops): every layer's Hessian, ranges and reservoir rows agree within
 *     STATS_TOL, token counts exactly (the random choices are made on the host from one seed);
 *     one case with fewer Hessian rows per call than the layers have (the gather path) and one
 *     with all rows;
 *   - the whole calibrator: sam2_calibrator_new_full on CUDA and on the CPU, the recipe given on
 *     the command line, the same frames: the two quantized models give the same outputs on the
 *     CPU within QUANT_TOL (GPTQ runs on the GPU for the CUDA one), and so does a CUDA one with
 *     all frames in one encoder pass (calib.batch_size); one whose float model ran in BF16
 *     (`sam2q quantize --dtype bfloat16`) is as good a quantization (BF16_CALIB_ERROR_RATIO);
 *     the time per frame of each is logged;
 *   - GPTQ on the GPU against the CPU's on random layers: codes, output errors and the singular
 *     case (GPTQ_CODES_AGREE, GPTQ_ERROR_RATIO).
 *
 *   test-cuda-calib RECIPE.yaml     (meson passes configs/hiera_tiny_w4a8.yaml)
 *
 * Exits 77 (skipped) without a CUDA device; skips a test whose fixture is absent. */
#include "observers.h"
#include "backend-cuda.h"
#include "kernels.h"
#include "model.h"
#include "weights.h"
#include "session.h"
#include "test-support.h"

#include <math.h>
#include <string.h>

/* CPU and CUDA run the float model in FP32 within ~1e-6 of each other (README: <= 9.7e-7 on the
 * tiny architecture), so statistics summed from the same rows agree to a few 1e-6 relative
 * (cuBLAS and oneDNN also sum the Gram matrix in different orders); a wrong row, a missed call or
 * a transposed Hessian is O(1). */
#define STATS_TOL 1e-4
/* Two GPTQ runs on Hessians that differ by ~1e-6 may round a few weights the other way; each
 * such flip is one 4-bit step of one weight. The outputs of the two quantized models then differ
 * like CPU vs CUDA W4A8 (test-cuda-model's W4A8_CPU_CUDA_TOL, 2e-2); a calibration on wrong
 * statistics differs by O(1) of the quantization error itself, well above. */
#define QUANT_TOL 2e-2
/* A calibration whose float model runs in BF16 sees activations ~1e-2 off FP32's (8 significant
 * bits per GEMM operand), so its ranges, smoothing and GPTQ Hessians move by about that much and
 * GPTQ takes other, equally good codes: the model is not near the FP32-calibrated one (as far
 * from it as both are from the float model), but it must be as good a quantization of the same
 * float model: its error against the float model within BF16_CALIB_ERROR_RATIO of the
 * CPU-calibrated model's. */
#define BF16_CALIB_ERROR_RATIO 1.25

#define N_FRAMES 3

static const char *recipe_path;

static Sam2Model *
load_shapes (void)
{
  char *dir = sam2_test_fixture_path ("sam2-shapes/model.safetensors");
  if (dir == NULL)
    return NULL;
  char *model_dir = g_path_get_dirname (dir);
  GError *error = NULL;
  Sam2Model *m = sam2_model_load (model_dir, &error);
  g_assert_no_error (error);
  g_free (model_dir);
  g_free (dir);
  return m;
}

/* Frame f: smooth colour fields with a few edges, like the pictures the model was trained on. */
static void
frame_pixels (float *px, int S, int f)
{
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) {
        const double t = (double) (x * (c + 1) + y * (f + 2)) / S;
        const gboolean inside = (x - S / 3 - 7 * f) * (x - S / 3 - 7 * f) + (y - S / 2) * (y - S / 2)
                                < S * S / 16;
        px[((size_t) c * S + y) * S + x] = (float) (sin (3.0 * t + f) + (inside ? 1.5 : -0.5));
      }
}

static void
assert_close (const char *layer, const char *what, const float *a, const float *b, size_t n)
{
  const double e = sam2_rel_l2 (a, b, n);
  if (!(e <= STATS_TOL))
    g_error ("%s %s: CUDA vs CPU relative L2 %.3g > %.1g", layer, what, e, STATS_TOL);
}

/* Host and device observers on the same frames; max_tokens 0 = every row enters the Hessian. */
static void
test_stats (gconstpointer data)
{
  const int max_tokens = GPOINTER_TO_INT (data);
  Sam2Model *m = load_shapes ();
  if (m == NULL)
    return;
  GError *error = NULL;
  Sam2CalibRecipe calib = { .num_samples = N_FRAMES, .batch_size = 1, .max_tokens = max_tokens,
                            .keep_tokens = 64, .seed = 5 };
  const Sam2SessionOptions cpu_opts = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  const Sam2SessionOptions cuda_opts = { SAM2_BACKEND_CUDA, SAM2_PRECISION_FP32, 1 };
  Sam2Session *cpu = sam2_session_new_full (m, &cpu_opts, &error);
  g_assert_no_error (error);
  Sam2Session *gpu = sam2_session_new_full (m, &cuda_opts, &error);
  g_assert_no_error (error);
  Sam2Observers *host = sam2_observers_new (m, &calib, NULL, NULL);
  Sam2Observers *dev = sam2_observers_new_full (m, &calib, NULL, NULL, gpu->backend, &error);
  g_assert_no_error (error);
  sam2_session_set_observer (cpu, sam2_observers_observe, host);
  sam2_session_set_observer_full (gpu, sam2_observers_observe, dev, TRUE);

  const int S = sam2_model_get_image_size (m);
  float *px = g_new (float, (size_t) 3 * S * S);
  for (int f = 0; f < N_FRAMES; f++) {
    frame_pixels (px, S, f);
    g_assert_true (sam2_session_encode (cpu, px, &error));
    g_assert_no_error (error);
    g_assert_true (sam2_session_encode (gpu, px, &error));
    g_assert_no_error (error);
    g_assert_true (sam2_observers_check (dev, &error));
  }
  g_assert_true (sam2_observers_sync (dev, &error));
  g_assert_no_error (error);
  g_assert_true (sam2_observers_sync (host, &error));   /* its Hessian's lower half */

  int n_layers = 0;
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    const Sam2LayerStats *a = sam2_observers_get (dev, l), *b = sam2_observers_get (host, l);
    g_assert_true ((a == NULL) == (b == NULL));
    if (a == NULL || b->n_tokens == 0)
      continue;
    const int k = b->k;
    g_assert_cmpint (a->n_tokens, ==, b->n_tokens);
    g_assert_cmpint (a->n_hessian_tokens, ==, b->n_hessian_tokens);
    g_assert_cmpint (a->n_samples, ==, b->n_samples);
    if (max_tokens > 0 && b->n_tokens > (int64_t) max_tokens * N_FRAMES)
      g_assert_cmpint (b->n_hessian_tokens, <, b->n_tokens);   /* the gather path ran */
    float *ha = g_new (float, (size_t) k * k), *hb = g_new (float, (size_t) k * k);
    for (size_t j = 0; j < (size_t) k * k; j++) {
      ha[j] = (float) a->hessian[j];
      hb[j] = (float) b->hessian[j];
    }
    assert_close (l->name, "hessian", ha, hb, (size_t) k * k);
    assert_close (l->name, "min", a->min, b->min, k);
    assert_close (l->name, "max", a->max, b->max, k);
    assert_close (l->name, "absmax", a->absmax, b->absmax, k);
    assert_close (l->name, "samples", a->samples, b->samples, (size_t) b->n_samples * k);
    g_free (ha);
    g_free (hb);
    n_layers++;
  }
  g_test_message ("max_tokens %d: %d layers agree", max_tokens, n_layers);
  g_assert_cmpint (n_layers, >=, 16);   /* every encoder linear of sam2-shapes, at least */

  g_free (px);
  sam2_observers_free (dev);   /* before its backend goes with the session */
  sam2_observers_free (host);
  sam2_session_free (gpu);
  sam2_session_free (cpu);
  sam2_model_unref (m);
}

/* A model calibrated on N_FRAMES frames on `backend` in `precision`, `batch` frames per encoder
 * pass. */
static Sam2Model *
calibrate (Sam2Model *fp, const Sam2Recipe *recipe, Sam2BackendKind backend,
           Sam2Precision precision, int batch, double *ms_per_frame)
{
  GError *error = NULL;
  const Sam2SessionOptions o = { backend, precision, 1 };
  Sam2Recipe *r = sam2_recipe_copy (recipe);
  r->calib.batch_size = batch;
  Sam2Calibrator *c = sam2_calibrator_new_full (fp, r, &o, &error);
  g_assert_no_error (error);
  const int S = sam2_model_get_image_size (fp);
  float *px = g_new (float, (size_t) 3 * S * S);
  const gint64 t0 = g_get_monotonic_time ();
  for (int f = 0; f < N_FRAMES; f++) {
    frame_pixels (px, S, f);
    g_assert_true (sam2_calibrator_add_pixels (c, px, &error));
    g_assert_no_error (error);
  }
  *ms_per_frame = (g_get_monotonic_time () - t0) / 1e3 / N_FRAMES;
  g_test_message ("calibrating on %s, %d frame%s per pass: %.1f ms per frame",
                  sam2_calibrator_describe_backend (c), batch, batch == 1 ? "" : "s",
                  *ms_per_frame);
  Sam2Model *q = sam2_calibrator_quantize (c, NULL, NULL, &error);
  g_assert_no_error (error);
  sam2_calibrator_free (c);
  sam2_recipe_free (r);
  g_free (px);
  return q;
}

/* Image embedding of frame 0 on the CPU. */
static float *
embedding (Sam2Model *m, size_t *n)
{
  GError *error = NULL;
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  Sam2Session *s = sam2_session_new_full (m, &cpu, &error);
  g_assert_no_error (error);
  const int S = sam2_model_get_image_size (m);
  float *px = g_new (float, (size_t) 3 * S * S);
  frame_pixels (px, S, 0);
  g_assert_true (sam2_session_encode (s, px, &error));
  int h, w, c;
  const float *e = sam2_session_get_features (s, 2, &h, &w, &c);
  *n = (size_t) h * w * c;
  float *copy = g_memdup2 (e, *n * sizeof (float));
  sam2_session_free (s);
  g_free (px);
  return copy;
}

static void
test_calibrator (void)
{
  Sam2Model *fp = load_shapes ();
  if (fp == NULL)
    return;
  GError *error = NULL;
  Sam2Recipe *recipe = sam2_recipe_load (recipe_path, &error);
  g_assert_no_error (error);
  double ms_cpu, ms_cuda, ms_batched, ms_bf16;
  Sam2Model *q_cpu = calibrate (fp, recipe, SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1, &ms_cpu);
  Sam2Model *q_cuda = calibrate (fp, recipe, SAM2_BACKEND_CUDA, SAM2_PRECISION_FP32, 1,
                                 &ms_cuda);
  /* all frames in one pass: the device's statistics of a batched pass (split per image by the
   * session) */
  Sam2Model *q_batched = calibrate (fp, recipe, SAM2_BACKEND_CUDA, SAM2_PRECISION_FP32, N_FRAMES,
                                    &ms_batched);
  Sam2Model *q_bf16 = calibrate (fp, recipe, SAM2_BACKEND_CUDA, SAM2_PRECISION_BF16, 1,
                                 &ms_bf16);
  size_t n, n2;
  float *a = embedding (q_cuda, &n), *b = embedding (q_cpu, &n2), *f = embedding (fp, &n2);
  float *a3 = embedding (q_batched, &n2), *a16 = embedding (q_bf16, &n2);
  const double e = sam2_rel_l2 (a, b, n), e_quant = sam2_rel_l2 (b, f, n);
  const double e_batched = sam2_rel_l2 (a3, b, n), e_quant_bf16 = sam2_rel_l2 (a16, f, n);
  g_test_message ("image embedding: CUDA-calibrated vs CPU-calibrated %.3g, %d frames per pass "
                  "%.3g (quantization error itself %.3g; calibrated with the float model in "
                  "BF16: %.3g, and %.3g from the CPU-calibrated one); %.1f vs %.1f ms per "
                  "calibration frame (%.1f batched, %.1f BF16)", e, N_FRAMES, e_batched, e_quant,
                  e_quant_bf16, sam2_rel_l2 (a16, b, n), ms_cuda, ms_cpu, ms_batched, ms_bf16);
  g_assert_cmpfloat (e, <=, QUANT_TOL);
  g_assert_cmpfloat (e_batched, <=, QUANT_TOL);
  g_assert_cmpfloat (e_quant_bf16, <=, BF16_CALIB_ERROR_RATIO * e_quant);
  g_free (a);
  g_free (a3);
  g_free (a16);
  g_free (b);
  g_free (f);
  sam2_model_unref (q_batched);
  sam2_model_unref (q_bf16);
  sam2_model_unref (q_cuda);
  sam2_model_unref (q_cpu);
  sam2_recipe_free (recipe);
  sam2_model_unref (fp);
}

/* ---- GPTQ on the device ----------------------------------------------------------------------- */

/* GPTQ on the GPU (the backend's gptq_solve: cuSOLVER's factorizations, the block kernel, cuBLAS
 * block updates) against the CPU's (LAPACK, OpenBLAS) on the same layer and Hessian. The two
 * factorizations differ by rounding, so a few weights near a rounding boundary may take the
 * other code, and each such flip moves the later updates a little: at least GPTQ_CODES_AGREE of
 * the codes agree, and the layer's output error on the calibration rows, ||X (W - Wq)^T|| over
 * ||X W^T||, is within GPTQ_ERROR_RATIO of the CPU's (a CPU simulation with the factor
 * perturbed by 1e-11 and another summation order gave all codes equal; a dropped or misplaced
 * block update gave 97-98% and 1.5-3% more error). Blocks of 32 make several block updates even
 * on the small layers. The damping retries on a Hessian that needs the third damping. */
#define GPTQ_CODES_AGREE 0.995
#define GPTQ_ERROR_RATIO 1.005

static Sam2Backend *cuda_backend;

static int
gpu_solver (gpointer device, Sam2W4 *w, double *W, const double *H, const int *perm, int block,
            double d0, int tries, GError **error)
{
  Sam2Backend *b = device;
  const int st = b->ops->gptq_solve (b, w, W, H, perm, block, d0, tries);
  if (st < 0)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND, "gptq_solve: status %d (%s)", st,
                 b->ops->status_detail (b) ? b->ops->status_detail (b) : "");
  return st < 0 ? -1 : st;
}

/* ||X (W - Wq)^T|| / ||X W^T|| over the rows of X (m, k) */
static double
output_error (const float *X, int m, const float *W, const Sam2W4 *q)
{
  const int n = q->n, k = q->k;
  float *deq = g_new (float, (size_t) n * k);
  sam2_w4_dequantize (q, deq);
  double num = 0.0, den = 0.0;
  for (int i = 0; i < m; i++)
    for (int r = 0; r < n; r++) {
      double y = 0.0, yq = 0.0;
      for (int c = 0; c < k; c++) {
        y += (double) X[(size_t) i * k + c] * W[(size_t) r * k + c];
        yq += (double) X[(size_t) i * k + c] * deq[(size_t) r * k + c];
      }
      num += (y - yq) * (y - yq);
      den += y * y;
    }
  g_free (deq);
  return sqrt (num / den);
}

static void
test_gptq_solve (gconstpointer data)
{
  const int *spec = data;
  const int n = spec[0], k = spec[1], G = spec[2], m = 4 * k;
  if (cuda_backend == NULL) {
    GError *error = NULL;
    cuda_backend = sam2_backend_cuda_new (SAM2_PRECISION_FP32, &error);
    g_assert_no_error (error);
  }
#ifdef SAM2_HAVE_CUSOLVER
  const gboolean solver = sam2_cuda_solver_available ();
#else
  const gboolean solver = FALSE;
#endif
  if (cuda_backend->ops->gptq_solve == NULL || !solver) {
    g_test_skip ("no cuSOLVER here (this build, the library, or SAM2_CUDA_GPTQ=0): GPTQ stays on "
                 "the CPU");
    return;
  }
  GRand *rng = g_rand_new_with_seed ((guint32) (n + 7 * k));
  float *X = g_new (float, (size_t) m * k), *W = g_new (float, (size_t) n * k);
  for (size_t i = 0; i < (size_t) m * k; i++)   /* a few strong channels, as real inputs */
    X[i] = (float) (g_rand_double_range (rng, -1, 1) * (i % k < 4 ? 8.0 : 1.0));
  for (size_t i = 0; i < (size_t) n * k; i++)
    W[i] = (float) g_rand_double_range (rng, -0.1, 0.1);
  double *H = g_new0 (double, (size_t) k * k);   /* 2 X^T X */
  for (int i = 0; i < m; i++)
    for (int a = 0; a < k; a++)
      for (int c = a; c < k; c++)
        H[(size_t) a * k + c] += 2.0 * X[(size_t) i * k + a] * X[(size_t) i * k + c];
  for (int a = 0; a < k; a++)
    for (int c = 0; c < a; c++)
      H[(size_t) a * k + c] = H[(size_t) c * k + a];
  Sam2WeightRecipe wr = { .dtype = SAM2_QTYPE_SINT4, .group_size = G, .gptq = TRUE,
                          .gptq_damp = 0.01, .gptq_block = 32, .gptq_act_order = TRUE,
                          .gptq_inv_tries = 5 };
  Sam2W4 cpu, gpu, rtn;
  Sam2W4 *all[3] = { &cpu, &gpu, &rtn };
  for (int i = 0; i < 3; i++) {
    sam2_w4_init (all[i], n, k, G, wr.dtype);
    sam2_w4_choose_params (all[i], W);
  }
  GError *error = NULL;
  g_assert_true (sam2_w4_quantize_gptq (&cpu, W, H, &wr, &error));
  g_assert_no_error (error);
  g_assert_true (sam2_w4_quantize_gptq_on (&gpu, W, H, &wr, gpu_solver, cuda_backend, &error));
  g_assert_no_error (error);
  sam2_w4_quantize_rtn (&rtn, W);
  size_t same = 0;
  for (int r = 0; r < n; r++)
    for (int c = 0; c < k; c++)
      same += sam2_w4_get (cpu.codes, k, r, c) == sam2_w4_get (gpu.codes, k, r, c);
  const double agree = (double) same / ((double) n * k);
  const double e_cpu = output_error (X, m, W, &cpu), e_gpu = output_error (X, m, W, &gpu);
  const double e_rtn = output_error (X, m, W, &rtn);
  g_test_message ("%dx%d, groups of %d: codes agree %.4f; output error GPU %.5f, CPU %.5f, RTN "
                  "%.5f", n, k, G, agree, e_gpu, e_cpu, e_rtn);
  g_assert_cmpfloat (agree, >=, GPTQ_CODES_AGREE);
  g_assert_cmpfloat (e_gpu, <=, GPTQ_ERROR_RATIO * e_cpu);
  g_assert_cmpfloat (e_gpu, <, e_rtn);

  /* the damping retries: a Hessian with one negative eigenvalue, -0.5 (H = I but for entry (0, 0))
   * and damping 0.01 of its mean diagonal (~1): H + d I is positive definite at the third d
   * (0.01, 0.1, 1), not before; the same codes as the CPU's, and two tries refused */
  {
    double *H3 = g_new0 (double, (size_t) k * k);
    for (int a = 0; a < k; a++)
      H3[(size_t) a * k + a] = a == 0 ? -0.5 : 1.0;
    Sam2WeightRecipe retry = wr;
    retry.gptq_inv_tries = 3;
    g_assert_true (sam2_w4_quantize_gptq_on (&gpu, W, H3, &retry, gpu_solver, cuda_backend,
                                             &error));
    g_assert_no_error (error);
    g_assert_true (sam2_w4_quantize_gptq (&cpu, W, H3, &retry, &error));
    g_assert_no_error (error);
    size_t same3 = 0;
    for (int r = 0; r < n; r++)
      for (int c = 0; c < k; c++)
        same3 += sam2_w4_get (cpu.codes, k, r, c) == sam2_w4_get (gpu.codes, k, r, c);
    g_assert_cmpfloat ((double) same3 / ((double) n * k), >=, GPTQ_CODES_AGREE);
    retry.gptq_inv_tries = 2;
    g_assert_false (sam2_w4_quantize_gptq_on (&gpu, W, H3, &retry, gpu_solver, cuda_backend,
                                              &error));
    g_clear_error (&error);
    g_free (H3);
  }

  /* a Hessian that stays singular (rank one, no damping, one try): refused as on the CPU */
  Sam2WeightRecipe bad = wr;
  bad.gptq_damp = 0.0;
  bad.gptq_inv_tries = 1;
  for (int a = 0; a < k; a++)
    for (int c = 0; c < k; c++)
      H[(size_t) a * k + c] = (double) X[a] * X[c] + (a == c && X[a] == 0.0f ? 1.0 : 0.0);
  g_assert_false (sam2_w4_quantize_gptq_on (&gpu, W, H, &bad, gpu_solver, cuda_backend, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "not positive definite"));
  g_clear_error (&error);
  g_assert_false (sam2_w4_quantize_gptq (&cpu, W, H, &bad, &error));
  g_clear_error (&error);

  for (int i = 0; i < 3; i++)
    sam2_w4_clear (all[i]);
  g_free (X);
  g_free (W);
  g_free (H);
  g_rand_free (rng);
}

int
main (int argc, char **argv)
{
  const int rc = sam2_test_cuda_init (&argc, &argv, &recipe_path);
  if (rc != 0)
    return rc;
  g_test_add_data_func ("/cuda/calib/stats-gathered-rows", GINT_TO_POINTER (1000), test_stats);
  g_test_add_data_func ("/cuda/calib/stats-all-rows", GINT_TO_POINTER (0), test_stats);
  /* n, k, group: tiny's stage 2 qkv input, a tail group (large's 144), one group per row;
   * before the calibrator, whose CUDA run uses GPTQ on the GPU too */
  static const int gptq[][3] = { { 192, 384, 128 }, { 100, 144, 128 }, { 64, 96, 0 } };
  for (size_t i = 0; i < G_N_ELEMENTS (gptq); i++) {
    char *name = g_strdup_printf ("/cuda/calib/gptq-%dx%d-g%d", gptq[i][0], gptq[i][1],
                                  gptq[i][2]);
    g_test_add_data_func (name, gptq[i], test_gptq_solve);
    g_free (name);
  }
  g_test_add_func ("/cuda/calib/calibrator", test_calibrator);
  const int rc2 = g_test_run ();
  if (cuda_backend != NULL)
    cuda_backend->ops->destroy (cuda_backend);
  return rc2;
}
