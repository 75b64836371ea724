/* test-cuda-ops.c: every non-W4A8 launcher of kernels/kernels.h against the CPU backend op (or
 * the ops-cpu.h kernel behind it) on the same inputs.
 *
 * Each case draws its inputs from its own seed (printed, so a failure can be replayed), runs the
 * GPU launcher into an output poisoned with NaN (every byte 0xff) and the CPU op into a host
 * buffer, then compares:
 *   - data movement (windows, pooling, im2col, upsampling, add, add_row, column scaling, the fp16
 *     and bf16 conversions, the 16-bit outputs of LayerNorm and activation against the float
 *     kernels' rounded on the host): bit for bit, max |gpu - cpu| == 0;
 *   - arithmetic: ||gpu - cpu||_2 / ||cpu||_2 against a named bound per op (below);
 *   - always: no NaN in the GPU output where the CPU has none (an element the kernel forgot to
 *     write stays NaN), and for attention, the output columns and rows outside the written heads
 *     still hold the poison (nothing written out of bounds). Attention inputs hold NaN in their
 *     padding columns and between sequences, so a kernel reading them poisons its output. Each
 *     attention kernel's 16-bit output (out16) is its float output converted, bit for bit.
 * Frame preprocessing: the same floats as sam2_preprocess, bit for bit.
 * The half-precision launchers (the *_16 of kernels.h: LayerNorm and activation outputs,
 * attention, GEMMs, the small-M linear) run in both formats, FP16 and BF16, on each case's
 * inputs, each against the operands rounded to its own format; where a bound covers the
 * operands' rounding, BF16's is FP16's times 8, the ratio of their unit roundoffs.
 * Shapes: edge sizes (1, odd, not multiples of 4, misaligned pointers for the scalar paths) and
 * the real SAM2 tiny / large shapes at 1024x1024.
 *
 * Exits 0 when every case passes, 1 otherwise, 77 (skipped) without a CUDA device. Prints one
 * line per case, with the GPU time of the real shapes' attention and GEMMs. */
#include "backend.h"
#include "image.h"
#include "kernels.h"
#include "ops-cpu.h"
#include "test-support.h"

#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounds ------------------------------------------------------------------------------- */

/* Activations, per element: |gpu - cpu| <= ACT_MAX_REL (|cpu| + |residual|) + ACT_ABS_PER_X |x|
 * with x the activation's input. CUDA's expf / erff / tanhf (2 ulp) against simd-math.h's
 * approximations (exp 2 ulp: sigmoid and SiLU within ~6e-7 relative) and libm's tanhf; GELU's
 * 1 + erf(x / sqrt 2) cancels for x < 0, where what is left is the erfs' absolute errors (4.7e-7
 * for the CPU's rational, 2.4e-7 for erff) times 0.5 |x|. A relative L2 alone would fail there
 * on small tensors: GELU(-5) is -1.4e-6 and the CPU's clamped erf gives 0 below x = -5.7. A
 * wrong constant or a missing bias breaks the bound by orders of magnitude. */
#define ACT_MAX_REL 1e-6
#define ACT_ABS_PER_X 5e-7
/* LayerNorm: the same double statistics summed in another order, then the same three float
 * roundings: differences of an ulp at most in a few elements. */
#define LAYER_NORM_REL_L2 1e-6
/* Softmax rows: expf against the Cephes approximation (2 ulp each) and a float inverse of a
 * double sum: a few ulp. */
#define SOFTMAX_REL_L2 2e-6
/* FP32 attention: both sides are FP32 GEMM-like sums (K = head_dim, then len_k) in different
 * orders plus exp to 2 ulp; the CPU test measured 4e-7 against float64. FP16 or TF32 operands
 * would show ~1e-3. */
#define ATTENTION_REL_L2 1e-5
/* FP16 tensor-core attention against the FP32 CPU op: q, k, v and P each rounded to 11
 * significant bits (2^-12 relative), errors that average in the weighted mean to ~7e-4 of the
 * output's size; a wrong fragment index is an error of order 1. */
#define ATTENTION_F16_REL_L2 3e-3
/* BF16 tensor-core attention, the same against the same: the same roundings to 8 significant
 * bits instead of 11, a unit roundoff of 2^-8 instead of 2^-11, 8 times FP16's; the errors grow
 * with it, and so does the bound. A wrong fragment index is still an error of order 1. */
#define ATTENTION_BF16_REL_L2 (8 * ATTENTION_F16_REL_L2)
/* FP32 SGEMM (no TF32) against oneDNN's sgemm: float sums of K products, relative error growing
 * like 2^-24 sqrt(K), ~1e-6 at K = 4608. TF32 (10-bit mantissa) would be ~5e-4. */
#define GEMM_F32_REL_L2 1e-5
/* FP16 GEMM against the FP32 CPU product of the same fp16-rounded operands: the products are
 * exact in FP32, so only the accumulation differs, but the tensor cores' FP32 accumulation
 * truncates the aligned addends inside each MMA instead of rounding them (a bias of up to an
 * ulp per k-step of 16: ~1e-5 at K = 1152 in the worst case). A wrong operand rounding or an
 * FP16 output shows >= 2e-4. */
#define GEMM_F16_ROUNDED_REL_L2 3e-5
/* BF16 GEMM (and small-M linear) against the FP32 product of the same bf16-rounded operands:
 * products of 8-bit significands are exact in FP32 as well, so again only the FP32 accumulation
 * differs, the same as FP16's: the same bound. */
#define GEMM_BF16_ROUNDED_REL_L2 GEMM_F16_ROUNDED_REL_L2
/* ... and against the unrounded FP32 operands: each operand rounded to 11 bits (2^-12 relative),
 * sums of random-sign products, ~5e-4 measured on such data elsewhere; the bound says "FP16
 * path", not "wrong". */
#define GEMM_F16_REL_L2 3e-3
/* ... and BF16 against the unrounded FP32 operands: each operand rounded to 8 bits, a unit
 * roundoff 8 times FP16's (2^-8 against 2^-11), so 8 times FP16's bound. */
#define GEMM_BF16_REL_L2 (8 * GEMM_F16_REL_L2)
/* BF16 Lt baseline, its bf16 output against the FP32 product of the rounded operands: the output
 * rounding to 8 bits, 2^-9 relative per element at most. */
#define GEMM_BF16_OUTPUT_REL_L2 4e-3

/* ---- harness ------------------------------------------------------------------------------ */

static int n_failed, n_passed;
/* SAM2_CUDA_OPS_QUICK=1: only the cases below QUICK_MAX_FLOATS elements (the edge shapes, not the
 * real SAM2 ones), for a quick look or a slow simulator. */
#define QUICK_MAX_FLOATS 200000
static gboolean quick;
static guint32 next_seed = 20261127;
static cudaStream_t stream;
static Sam2Backend *cpu;

#define CUDA_OK(call)                                                                            \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      fprintf (stderr, "FATAL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                       \
               cudaGetErrorString (e_));                                                         \
      exit (1);                                                                                  \
    }                                                                                            \
  } while (0)

static GRand *
case_rand (guint32 *seed)
{
  *seed = next_seed++;
  return g_rand_new_with_seed (*seed);
}

static void
fill_uniform (GRand *r, float *x, size_t n, double lo, double hi)
{
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, lo, hi);
}

static float *
host_nan (size_t n)
{
  float *p = g_malloc (MAX (n, 1) * sizeof (float));
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}

static float *
dev_alloc (size_t n)
{
  void *p = NULL;
  CUDA_OK (cudaMalloc (&p, MAX (n, 1) * sizeof (float)));
  return p;
}

/* a device copy of host (n), in a buffer of n + extra floats (extra for offset pointers) */
static float *
dev_from (const float *host, size_t n)
{
  float *d = dev_alloc (n);
  CUDA_OK (cudaMemcpy (d, host, n * sizeof (float), cudaMemcpyHostToDevice));
  return d;
}

static void
dev_poison (float *d, size_t n)
{
  CUDA_OK (cudaMemset (d, 0xff, n * sizeof (float)));
}

static float *
host_from_dev (const float *d, size_t n)
{
  float *h = g_malloc (MAX (n, 1) * sizeof (float));
  CUDA_OK (cudaStreamSynchronize (stream));
  CUDA_OK (cudaMemcpy (h, d, n * sizeof (float), cudaMemcpyDeviceToHost));
  return h;
}

static size_t
count_unwritten (const float *gpu, const float *ref, size_t n)
{
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (isnan (gpu[i]) && !isnan (ref[i]))
      bad++;
  return bad;
}

static double
rel_l2 (const float *gpu, const float *ref, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (isnan (ref[i]))
      continue;                        /* poison on both sides: checked for stray writes */
    const double d = (double) gpu[i] - ref[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
  }
  return sqrt (num) / MAX (sqrt (den), 1e-30);
}

/* max |gpu - ref| over the elements where both are numbers, NaN against NaN counting as equal */
static double
max_abs (const float *gpu, const float *ref, size_t n)
{
  double m = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (isnan (gpu[i]) != isnan (ref[i]))
      return INFINITY;
    if (!isnan (gpu[i]))
      m = MAX (m, fabs ((double) gpu[i] - ref[i]));
  }
  return m;
}

/* TRUE (and a line saying so) when quick mode skips a case of n floats */
static gboolean
skip_big (const char *op, size_t n)
{
  if (!quick || n <= QUICK_MAX_FLOATS)
    return FALSE;
  printf ("skip %s: %zu floats (SAM2_CUDA_OPS_QUICK)\n", op, n);
  return TRUE;
}

static void
report (gboolean ok, const char *what, guint32 seed, const char *detail)
{
  printf ("%s %-58s seed %u  %s\n", ok ? "ok  " : "FAIL", what, seed, detail);
  fflush (stdout);
  if (ok)
    n_passed++;
  else
    n_failed++;
}

/* The launcher's status, then the comparison: relative L2 against `bound`, or exact when bound
 * is 0. */
static void
check (const char *what, guint32 seed, int status, const float *gpu_dev, const float *ref,
       size_t n, double bound)
{
  char detail[160];
  if (status != SAM2_CUDA_OK) {
    g_snprintf (detail, sizeof detail, "launcher returned %d", status);
    report (FALSE, what, seed, detail);
    return;
  }
  cudaError_t e = cudaStreamSynchronize (stream);
  if (e != cudaSuccess) {
    g_snprintf (detail, sizeof detail, "kernel failed: %s", cudaGetErrorString (e));
    report (FALSE, what, seed, detail);
    fprintf (stderr, "FATAL: the CUDA context is unusable after a kernel error\n");
    exit (1);
  }
  float *gpu = host_from_dev (gpu_dev, n);
  const size_t unwritten = count_unwritten (gpu, ref, n);
  gboolean ok;
  if (bound == 0.0) {
    const double m = max_abs (gpu, ref, n);
    ok = unwritten == 0 && m == 0.0;
    g_snprintf (detail, sizeof detail, "max_abs %.3g (exact)  unwritten %zu", m, unwritten);
  } else {
    const double r = rel_l2 (gpu, ref, n);
    ok = unwritten == 0 && r <= bound;
    g_snprintf (detail, sizeof detail, "rel_l2 %.3g <= %.2g  unwritten %zu", r, bound, unwritten);
  }
  report (ok, what, seed, detail);
  g_free (gpu);
}

/* An activation's output against the CPU's, per element with the bound of ACT_MAX_REL; x (n) is
 * the activation's input, residual (n) what was added after it or NULL. */
static void
check_act (const char *what, guint32 seed, int status, const float *gpu_dev, const float *ref,
           const float *x, const float *residual, size_t n)
{
  char detail[160];
  if (status != SAM2_CUDA_OK) {
    g_snprintf (detail, sizeof detail, "launcher returned %d", status);
    report (FALSE, what, seed, detail);
    return;
  }
  float *gpu = host_from_dev (gpu_dev, n);
  const size_t unwritten = count_unwritten (gpu, ref, n);
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double bound = ACT_MAX_REL * (fabs (ref[i]) + (residual ? fabs (residual[i]) : 0.0))
                         + ACT_ABS_PER_X * fabs (x[i]) + 1e-37;
    const double e = fabs ((double) gpu[i] - ref[i]) / bound;
    if (!(e <= worst))
      worst = e;                       /* NaN included */
  }
  g_snprintf (detail, sizeof detail, "worst error / bound %.3g <= 1  rel_l2 %.3g  unwritten %zu",
              worst, rel_l2 (gpu, ref, n), unwritten);
  report (unwritten == 0 && worst <= 1.0, what, seed, detail);
  g_free (gpu);
}

/* Milliseconds per call of `run` (after one warm-up call), for the real shapes. */
typedef int (*RunFn) (void *ctx);

static double
time_ms (RunFn run, void *ctx, int reps)
{
  cudaEvent_t t0, t1;
  CUDA_OK (cudaEventCreate (&t0));
  CUDA_OK (cudaEventCreate (&t1));
  if (run (ctx) != SAM2_CUDA_OK)
    return NAN;
  CUDA_OK (cudaEventRecord (t0, stream));
  for (int i = 0; i < reps; i++)
    if (run (ctx) != SAM2_CUDA_OK)
      return NAN;
  CUDA_OK (cudaEventRecord (t1, stream));
  CUDA_OK (cudaEventSynchronize (t1));
  float ms = 0.0f;
  CUDA_OK (cudaEventElapsedTime (&ms, t0, t1));
  CUDA_OK (cudaEventDestroy (t0));
  CUDA_OK (cudaEventDestroy (t1));
  return ms / reps;
}

/* ---- element-wise ------------------------------------------------------------------------- */

static const char *act_names[] = { "none", "gelu", "gelu_tanh", "relu", "silu", "sigmoid" };

/* bias_act and bias_act_residual; `offset` shifts every pointer by that many floats (1: the
 * scalar path). */
static void
test_bias_act (int M, int N, int act, gboolean with_bias, gboolean with_residual, int offset)
{
  if (skip_big ("bias_act", (size_t) M * N))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * N;
  float *y = g_malloc ((n + 1) * sizeof (float)), *bias = g_malloc ((N + 1) * sizeof (float));
  float *res = g_malloc ((n + 1) * sizeof (float));
  fill_uniform (r, y, n + 1, -5.0, 5.0);
  fill_uniform (r, bias, N + 1, -1.0, 1.0);
  fill_uniform (r, res, n + 1, -2.0, 2.0);
  float *dy = dev_from (y, n + 1), *db = dev_from (bias, N + 1), *dr = dev_from (res, n + 1);

  float *ref = g_memdup2 (y + offset, MAX (n, 1) * sizeof (float));
  float *pre = g_malloc (MAX (n, 1) * sizeof (float));   /* the activation's input */
  for (size_t i = 0; i < n; i++)
    pre[i] = with_bias ? y[offset + i] + bias[offset + i % N] : y[offset + i];
  sam2_cpu_bias_act (ref, M, N, with_bias ? bias + offset : NULL, (Sam2Act) act);
  if (with_residual)
    for (size_t i = 0; i < n; i++)
      ref[i] += res[offset + i];

  int st;
  if (with_residual)
    st = sam2_cuda_bias_act_residual (dy + offset, M, N, with_bias ? db + offset : NULL, act,
                                      dr + offset, stream);
  else
    st = sam2_cuda_bias_act (dy + offset, M, N, with_bias ? db + offset : NULL, act, stream);
  char what[128];
  g_snprintf (what, sizeof what, "%s %dx%d %s%s off %d", with_residual ? "bias_act_residual"
              : "bias_act", M, N, act_names[act], with_bias ? " +bias" : "", offset);
  CUDA_OK (cudaStreamSynchronize (stream));
  if (act == SAM2_CUDA_ACT_NONE || act == SAM2_CUDA_ACT_RELU)
    check (what, seed, st, dy + offset, ref, n, 0.0);
  else
    check_act (what, seed, st, dy + offset, ref, pre, with_residual ? res + offset : NULL, n);
  g_free (pre);
  cudaFree (dy);
  cudaFree (db);
  cudaFree (dr);
  g_free (y);
  g_free (bias);
  g_free (res);
  g_free (ref);
  g_rand_free (r);
}

static void
test_activation (size_t n, int act, int offset)
{
  if (skip_big ("activation", n))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  float *x = g_malloc ((n + 2) * sizeof (float));
  fill_uniform (r, x, n + 2, -6.0, 6.0);
  float *dx = dev_from (x, n + 2);
  float *ref = g_memdup2 (x + offset, MAX (n, 1) * sizeof (float));
  cpu->ops->activation (cpu, (Sam2Act) act, ref, n);
  int st = sam2_cuda_activation (act, dx + offset, n, stream);
  char what[128];
  g_snprintf (what, sizeof what, "activation n %zu %s off %d", n, act_names[act], offset);
  CUDA_OK (cudaStreamSynchronize (stream));
  if (act == SAM2_CUDA_ACT_NONE || act == SAM2_CUDA_ACT_RELU)
    check (what, seed, st, dx + offset, ref, n, 0.0);
  else
    check_act (what, seed, st, dx + offset, ref, x + offset, NULL, n);
  cudaFree (dx);
  g_free (x);
  g_free (ref);
  g_rand_free (r);
}

/* add (y = a + c, y aliasing a when `alias`), add_row, scale_columns: single roundings, exact */
static void
test_add (int M, int N, int offset, gboolean alias)
{
  g_assert (M > 0 && N > 0);       /* and tells GCC that n below is not a wrapped negative */
  if (skip_big ("add", (size_t) M * N))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * N;
  float *a = g_malloc ((n + 1) * sizeof (float)), *c = g_malloc ((n + 1) * sizeof (float));
  fill_uniform (r, a, n + 1, -3.0, 3.0);
  fill_uniform (r, c, n + 1, -3.0, 3.0);
  float *da = dev_from (a, n + 1), *dc = dev_from (c, n + 1), *dy = dev_alloc (n + 1);
  char what[128];

  float *ref = host_nan (n);
  cpu->ops->add (cpu, ref, a + offset, c + offset, n);
  dev_poison (dy, n + 1);
  float *out = alias ? da + offset : dy + offset;
  int st = sam2_cuda_add (out, da + offset, dc + offset, n, stream);
  g_snprintf (what, sizeof what, "add n %zu off %d%s", n, offset, alias ? " in place" : "");
  check (what, seed, st, out, ref, n, 0.0);

  /* add_row: rows of N, the row from c; in place on a fresh copy of a */
  CUDA_OK (cudaMemcpy (da, a, (n + 1) * sizeof (float), cudaMemcpyHostToDevice));
  cpu->ops->add_row (cpu, ref, a + offset, c + offset, M, N);
  dev_poison (dy, n + 1);
  out = alias ? da + offset : dy + offset;
  st = sam2_cuda_add_row (out, da + offset, dc + offset, M, N, stream);
  g_snprintf (what, sizeof what, "add_row %dx%d off %d%s", M, N, offset, alias ? " in place" : "");
  check (what, seed, st, out, ref, n, 0.0);

  /* scale_columns: y = x * scale[col] */
  CUDA_OK (cudaMemcpy (da, a, (n + 1) * sizeof (float), cudaMemcpyHostToDevice));
  for (int m = 0; m < M; m++)
    for (int k = 0; k < N; k++)
      ref[(size_t) m * N + k] = a[offset + (size_t) m * N + k] * c[offset + k];
  dev_poison (dy, n + 1);
  st = sam2_cuda_scale_columns (da + offset, M, N, dc + offset, dy + offset, stream);
  g_snprintf (what, sizeof what, "scale_columns %dx%d off %d", M, N, offset);
  check (what, seed, st, dy + offset, ref, n, 0.0);

  cudaFree (da);
  cudaFree (dc);
  cudaFree (dy);
  g_free (a);
  g_free (c);
  g_free (ref);
  g_rand_free (r);
}

/* LayerNorm; `mean_offset` adds a large mean to every other row (the case a float one-pass
 * variance gets wrong); in place when `in_place`. */
static void
test_layer_norm (int M, int C, float eps, double mean_offset, gboolean in_place)
{
  if (skip_big ("layer_norm", (size_t) M * C))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * C;
  float *x = g_malloc (MAX (n, 1) * sizeof (float)), *w = g_malloc (C * sizeof (float));
  float *b = g_malloc (C * sizeof (float));
  fill_uniform (r, x, n, -2.0, 2.0);
  for (int m = 1; m < M; m += 2)
    for (int c = 0; c < C; c++)
      x[(size_t) m * C + c] += (float) mean_offset;
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dx = dev_from (x, n), *dw = dev_from (w, C), *db = dev_from (b, C), *dy = dev_alloc (n);
  dev_poison (dy, n);
  float *ref = host_nan (n);
  Sam2LayerNorm ln = { .dim = C, .eps = eps, .weight = w, .bias = b };
  cpu->ops->layer_norm (cpu, &ln, x, M, ref);
  float *out = in_place ? dx : dy;
  int st = sam2_cuda_layer_norm (dx, M, C, dw, db, eps, out, stream);
  char what[128];
  g_snprintf (what, sizeof what, "layer_norm %dx%d eps %g mean+%g%s", M, C, eps, mean_offset,
              in_place ? " in place" : "");
  check (what, seed, st, out, ref, n, LAYER_NORM_REL_L2);
  cudaFree (dx);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dy);
  g_free (x);
  g_free (w);
  g_free (b);
  g_free (ref);
  g_rand_free (r);
}

static void
test_softmax (int M, int N, double spread)
{
  if (skip_big ("softmax", (size_t) M * N))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * N;
  float *x = g_malloc (n * sizeof (float));
  fill_uniform (r, x, n, -spread, spread);
  float *dx = dev_from (x, n);
  sam2_cpu_softmax_rows (x, M, N);
  int st = sam2_cuda_softmax_rows (dx, M, N, stream);
  char what[128];
  g_snprintf (what, sizeof what, "softmax_rows %dx%d spread %g", M, N, spread);
  check (what, seed, st, dx, x, n, SOFTMAX_REL_L2);
  cudaFree (dx);
  g_free (x);
  g_rand_free (r);
}

/* The 16-bit formats every half-precision launcher runs in, and helpers of the 16-bit checks
 * (defined with those below). */
static const Sam2CudaHalf halves[] = { SAM2_CUDA_F16, SAM2_CUDA_BF16 };
static const char *half_name (Sam2CudaHalf type);
static size_t mismatched16 (Sam2CudaHalf type, const uint16_t *got, const float *f, size_t n);
static uint16_t *to16 (Sam2CudaHalf type, const float *dev, size_t n);

/* ---- data movement -------------------------------------------------------------------------- */

static void
test_windows (int H, int W, int C, int ws, int offset)
{
  if (skip_big ("windows", (size_t) H * W * C))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
  const size_t n = (size_t) H * W * C, nwin = (size_t) nh * nw * ws * ws * C;
  float *x = g_malloc ((n + 1) * sizeof (float));
  fill_uniform (r, x, n + 1, -1.0, 1.0);
  float *dx = dev_from (x, n + 1), *dwin = dev_alloc (nwin + 1), *dback = dev_alloc (n + 1);
  float *ref = host_nan (nwin);
  cpu->ops->window_partition (cpu, x + offset, H, W, C, ws, ref);
  dev_poison (dwin, nwin + 1);
  int st = sam2_cuda_window_partition (dx + offset, H, W, C, ws, dwin + offset, stream);
  char what[128];
  g_snprintf (what, sizeof what, "window_partition %dx%dx%d ws %d off %d", H, W, C, ws, offset);
  check (what, seed, st, dwin + offset, ref, nwin, 0.0);

  /* the same rounded to 16 bits in one pass (the stage starts' qkv operand): bit for bit */
  uint16_t *dwin16 = NULL, *got16 = g_malloc ((nwin + 1) * 2);
  CUDA_OK (cudaMalloc ((void **) &dwin16, (nwin + 1) * 2));
  const Sam2CudaRowWindows rw = { 1, H, W, ws };
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    CUDA_OK (cudaMemset (dwin16, 0xff, (nwin + 1) * 2));
    st = sam2_cuda_window_partition_16 (dx + offset, &rw, C, halves[t], dwin16 + offset, stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (got16, dwin16 + offset, nwin * 2, cudaMemcpyDeviceToHost));
    const size_t bad = mismatched16 (halves[t], got16, ref, nwin);
    char detail[64];
    g_snprintf (what, sizeof what, "window_partition_16 %s %dx%dx%d ws %d off %d",
                half_name (halves[t]), H, W, C, ws, offset);
    g_snprintf (detail, sizeof detail, "status %d  mismatched %zu (exact)", st, bad);
    report (st == SAM2_CUDA_OK && bad == 0, what, seed, detail);
  }
  cudaFree (dwin16);
  g_free (got16);

  /* unpartition from independent random windows (padding included) */
  float *win = g_malloc ((nwin + 1) * sizeof (float));
  fill_uniform (r, win, nwin + 1, -1.0, 1.0);
  CUDA_OK (cudaMemcpy (dwin, win, (nwin + 1) * sizeof (float), cudaMemcpyHostToDevice));
  float *back = host_nan (n);
  cpu->ops->window_unpartition (cpu, win + offset, nh, nw, ws, C, H, W, NULL, back);
  dev_poison (dback, n + 1);
  st = sam2_cuda_window_unpartition (dwin + offset, nh, nw, ws, C, H, W, NULL, dback + offset,
                                     stream);
  g_snprintf (what, sizeof what, "window_unpartition %dx%dx%d ws %d off %d", H, W, C, ws, offset);
  check (what, seed, st, dback + offset, back, n, 0.0);

  /* the same added to a residual (x, here), in place: the CPU's sums exactly */
  cpu->ops->window_unpartition (cpu, win + offset, nh, nw, ws, C, H, W, x + offset, back);
  CUDA_OK (cudaMemcpy (dback, dx, (n + 1) * sizeof (float), cudaMemcpyDeviceToDevice));
  st = sam2_cuda_window_unpartition (dwin + offset, nh, nw, ws, C, H, W, dback + offset,
                                     dback + offset, stream);
  g_snprintf (what, sizeof what, "window_unpartition + residual %dx%dx%d ws %d off %d", H, W, C,
              ws, offset);
  check (what, seed, st, dback + offset, back, n, 0.0);

  cudaFree (dx);
  cudaFree (dwin);
  cudaFree (dback);
  g_free (x);
  g_free (win);
  g_free (ref);
  g_free (back);
  g_rand_free (r);
}

static void
test_max_pool (int n_img, int H, int W, int C, int ld, int s)
{
  if (skip_big ("max_pool", (size_t) n_img * H * W * ld))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) n_img * H * W * ld;
  const size_t no = (size_t) n_img * (H / s) * (W / s) * C;
  float *x = g_malloc (n * sizeof (float));
  fill_uniform (r, x, n, -1.0, 1.0);
  float *dx = dev_from (x, n), *dy = dev_alloc (no);
  dev_poison (dy, no);
  float *ref = host_nan (no);
  cpu->ops->max_pool (cpu, x, n_img, H, W, C, ld, s, ref);
  int st = sam2_cuda_max_pool (dx, n_img, H, W, C, ld, s, dy, stream);
  char what[128];
  g_snprintf (what, sizeof what, "max_pool %dx(%dx%dx%d) ld %d s %d", n_img, H, W, C, ld, s);
  check (what, seed, st, dy, ref, no, 0.0);

  /* on 16-bit rows (q pooled from qkv's 16-bit output): the pooled floats rounded, bit for bit */
  uint16_t *dy16 = NULL, *got16 = g_malloc (MAX (no, 1) * 2);
  CUDA_OK (cudaMalloc ((void **) &dy16, MAX (no, 1) * 2));
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    uint16_t *dx16 = to16 (halves[t], dx, n);
    CUDA_OK (cudaMemset (dy16, 0xff, MAX (no, 1) * 2));
    st = sam2_cuda_max_pool_16 (dx16, n_img, H, W, C, ld, s, halves[t], dy16, stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (got16, dy16, no * 2, cudaMemcpyDeviceToHost));
    const size_t bad = mismatched16 (halves[t], got16, ref, no);
    char detail[64];
    g_snprintf (what, sizeof what, "max_pool_16 %s %dx(%dx%dx%d) ld %d s %d",
                half_name (halves[t]), n_img, H, W, C, ld, s);
    g_snprintf (detail, sizeof detail, "status %d  mismatched %zu (exact)", st, bad);
    report (st == SAM2_CUDA_OK && bad == 0, what, seed, detail);
    cudaFree (dx16);
  }
  cudaFree (dy16);
  g_free (got16);
  cudaFree (dx);
  cudaFree (dy);
  g_free (x);
  g_free (ref);
  g_rand_free (r);
}

static void
test_im2col (gboolean planar, int C, int H, int W, int kh, int kw, int stride, int pad)
{
  if (skip_big ("im2col", (size_t) C * H * W * kh * kw))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int oh = (H + 2 * pad - kh) / stride + 1, ow = (W + 2 * pad - kw) / stride + 1;
  const size_t n = (size_t) C * H * W, no = (size_t) oh * ow * C * kh * kw;
  float *x = g_malloc (n * sizeof (float));
  fill_uniform (r, x, n, -1.0, 1.0);
  float *dx = dev_from (x, n), *dy = dev_alloc (no);
  dev_poison (dy, no);
  float *ref = host_nan (no);
  int st;
  if (planar) {
    cpu->ops->im2col_planar (cpu, x, C, H, W, kh, kw, stride, pad, ref);
    st = sam2_cuda_im2col_planar (dx, C, H, W, kh, kw, stride, pad, dy, stream);
  } else {
    cpu->ops->im2col (cpu, x, H, W, C, kh, kw, stride, pad, ref);
    st = sam2_cuda_im2col (dx, H, W, C, kh, kw, stride, pad, dy, stream);
  }
  char what[128];
  g_snprintf (what, sizeof what, "%s C %d %dx%d k %dx%d s %d p %d", planar ? "im2col_planar"
              : "im2col", C, H, W, kh, kw, stride, pad);
  check (what, seed, st, dy, ref, no, 0.0);
  cudaFree (dx);
  cudaFree (dy);
  g_free (x);
  g_free (ref);
  g_rand_free (r);
}

static void
test_upsample (int H, int W, int C, int offset)
{
  if (skip_big ("upsample", (size_t) 4 * H * W * C))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) H * W * C, no = 4 * n;
  float *x = g_malloc ((4 * n + 1) * sizeof (float)), *y = g_malloc ((no + 1) * sizeof (float));
  float *add = g_malloc ((no + 1) * sizeof (float));
  fill_uniform (r, x, 4 * n + 1, -1.0, 1.0);
  fill_uniform (r, y, no + 1, -1.0, 1.0);
  fill_uniform (r, add, no + 1, -1.0, 1.0);
  float *dx = dev_from (x, 4 * n + 1), *dy = dev_from (y, no + 1), *dadd = dev_from (add, no + 1);
  char what[128];

  float *ref = g_memdup2 (y + offset, no * sizeof (float));
  cpu->ops->add_upsample2x (cpu, ref, x + offset, H, W, C);
  int st = sam2_cuda_add_upsample2x (dy + offset, dx + offset, H, W, C, stream);
  g_snprintf (what, sizeof what, "add_upsample2x %dx%dx%d off %d", H, W, C, offset);
  check (what, seed, st, dy + offset, ref, no, 0.0);

  /* depth_to_space2x: x (H*W, 4C); with the addend, then without */
  for (int with_add = 1; with_add >= 0; with_add--) {
    cpu->ops->depth_to_space2x (cpu, x + offset, 4 * C, H, W, C, with_add ? add + offset : NULL,
                                NULL, SAM2_ACT_NONE, ref);
    dev_poison (dy, no + 1);
    st = sam2_cuda_depth_to_space2x (dx + offset, H, W, C, with_add ? dadd + offset : NULL,
                                     dy + offset, stream);
    g_snprintf (what, sizeof what, "depth_to_space2x %dx%dx%d off %d%s", H, W, C, offset,
                with_add ? " +addend" : "");
    check (what, seed, st, dy + offset, ref, no, 0.0);
  }
  /* the addend as the output (the decoder adds a skip in place) */
  CUDA_OK (cudaMemcpy (dadd, add, (no + 1) * sizeof (float), cudaMemcpyHostToDevice));
  cpu->ops->depth_to_space2x (cpu, x + offset, 4 * C, H, W, C, add + offset, NULL, SAM2_ACT_NONE,
                              ref);
  st = sam2_cuda_depth_to_space2x (dx + offset, H, W, C, dadd + offset, dadd + offset, stream);
  g_snprintf (what, sizeof what, "depth_to_space2x %dx%dx%d off %d addend is y", H, W, C, offset);
  check (what, seed, st, dadd + offset, ref, no, 0.0);

  cudaFree (dx);
  cudaFree (dy);
  cudaFree (dadd);
  g_free (x);
  g_free (y);
  g_free (add);
  g_free (ref);
  g_rand_free (r);
}

/* depth_to_space2x with the LayerNorm (weight / bias when `with_norm`) and activation folded in
 * (the decoder's upscaling), against the three kernels one after another: the same floats
 * (each of those is checked against the CPU above). The addend apart, as the output, and none;
 * `offset` misaligns every buffer (the scalar path); x's rows `ld_pad` floats apart more than
 * 4 C (the reference reads a packed copy). */
static void
test_depth_to_space_norm_act (int H, int W, int C, gboolean with_norm, int act, int offset,
                              int ld_pad)
{
  const size_t no = (size_t) 4 * H * W * C;
  if (skip_big ("depth_to_space2x_norm_act", no))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int x_ld = 4 * C + ld_pad;
  const size_t nx = (size_t) H * W * x_ld;
  float *x = g_malloc ((no + 1) * sizeof (float)), *add = g_malloc ((no + 1) * sizeof (float));
  float *w = g_malloc (C * sizeof (float)), *b = g_malloc (C * sizeof (float));
  float *x_strided = g_malloc ((nx + 1) * sizeof (float));
  fill_uniform (r, x, no + 1, -2.0, 2.0);
  for (size_t i = 0; i <= nx; i++)   /* padding: garbage the kernel must not read */
    x_strided[i] = NAN;
  for (size_t row = 0; row < (size_t) H * W; row++)
    memcpy (x_strided + offset + row * x_ld, x + offset + row * 4 * C, 4 * C * sizeof (float));
  fill_uniform (r, add, no + 1, -1.0, 1.0);
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dx = dev_from (x, no + 1), *dadd = dev_from (add, no + 1);
  float *dxs = dev_from (x_strided, nx + 1);
  float *dw = with_norm ? dev_from (w, C) : NULL, *db = with_norm ? dev_from (b, C) : NULL;
  float *dref = dev_alloc (no + 1), *dy = dev_alloc (no + 1);
  const float eps = 1e-6f;
  char what[160];
  for (int addend = 0; addend < 3; addend++) {         /* apart, as the output, none */
    const char *addend_name[] = { "+addend", "+addend is y", "" };
    CUDA_OK (cudaMemcpy (dadd, add, (no + 1) * sizeof (float), cudaMemcpyHostToDevice));
    dev_poison (dref, no + 1);
    int st = sam2_cuda_depth_to_space2x (dx + offset, H, W, C, addend < 2 ? dadd + offset : NULL,
                                         dref + offset, stream);
    if (st == SAM2_CUDA_OK && with_norm)
      st = sam2_cuda_layer_norm (dref + offset, 4 * H * W, C, dw, db, eps, dref + offset, stream);
    if (st == SAM2_CUDA_OK)
      st = sam2_cuda_activation (act, dref + offset, no, stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    float *ref = host_from_dev (dref + offset, no);
    float *out = addend == 1 ? dadd : dy;
    if (addend != 1)
      dev_poison (dy, no + 1);
    if (st == SAM2_CUDA_OK)
      st = sam2_cuda_depth_to_space2x_norm_act (dxs + offset, x_ld, H, W, C,
                                                addend < 2 ? dadd + offset : NULL, dw, db, eps,
                                                act, out + offset, stream);
    g_snprintf (what, sizeof what, "depth_to_space2x %dx%dx%d ld %d%s act %d off %d%s", H, W, C,
                x_ld, with_norm ? " norm" : "", act, offset, addend_name[addend]);
    check (what, seed, st, out + offset, ref, no, 0.0);
    g_free (ref);
  }
  cudaFree (dx);
  cudaFree (dxs);
  cudaFree (dadd);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dref);
  cudaFree (dy);
  g_free (x);
  g_free (x_strided);
  g_free (add);
  g_free (w);
  g_free (b);
  g_rand_free (r);
}

/* sam2_cuda_depth_to_space2x_matmul (the decoder's last upscaling step with the hypernetworks'
 * product): bit for bit against a host FMA chain in c order over sam2_cuda_depth_to_space2x's
 * output (checked above against the CPU), and within GEMM_F32_REL_L2 of the CPU's
 * depth_to_space2x then matmul_nt. With and without the addend; `offset` misaligns every buffer
 * (the scalar path); x's rows `ld_pad` floats apart more than 4 C. */
static void
test_depth_to_space_matmul (int H, int W, int C, int M, int act, int offset, int ld_pad)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int x_ld = 4 * C + ld_pad;
  const size_t P = (size_t) 4 * H * W, nx = (size_t) H * W * x_ld, no = P * C, nm = (size_t) M * P;
  float *x = g_malloc ((nx + 1) * sizeof (float)), *add = g_malloc ((no + 1) * sizeof (float));
  float *A = g_malloc ((size_t) M * C * sizeof (float) + sizeof (float));
  fill_uniform (r, x, nx + 1, -2.0, 2.0);
  fill_uniform (r, add, no + 1, -1.0, 1.0);
  fill_uniform (r, A, (size_t) M * C + 1, -1.0, 1.0);
  float *dx = dev_from (x, nx + 1), *dadd = dev_from (add, no + 1);
  float *dA = dev_from (A, (size_t) M * C + 1), *dy = dev_alloc (no + 1), *dout = dev_alloc (nm + 1);
  float *y = g_malloc ((no + 1) * sizeof (float)), *ref = g_malloc ((nm + 1) * sizeof (float));
  float *fma_ref = g_malloc ((nm + 1) * sizeof (float));
  char what[160];
  for (int with_add = 1; with_add >= 0; with_add--) {
    const float *addend = with_add ? add + offset : NULL;
    const float *daddend = with_add ? dadd + offset : NULL;
    /* the CPU oracle: the scatter with its activation, then the product */
    cpu->ops->depth_to_space2x (cpu, x + offset, x_ld, H, W, C, addend, NULL, (Sam2Act) act, y);
    cpu->ops->matmul_nt (cpu, A + offset, y, M, (int) P, C, ref);
    /* the device scatter's floats, summed on the host in the kernel's order */
    int st = sam2_cuda_depth_to_space2x_norm_act (dx + offset, x_ld, H, W, C, daddend, NULL,
                                                  NULL, 0.0f, act, dy + offset, stream);
    float *yd = host_from_dev (dy + offset, no);
    for (int m = 0; m < M; m++)
      for (size_t p = 0; p < P; p++) {
        float acc = 0.0f;
        for (int c = 0; c < C; c++)
          acc = fmaf (A[offset + m * C + c], yd[p * C + c], acc);
        fma_ref[m * P + p] = acc;
      }
    g_free (yd);
    if (st == SAM2_CUDA_OK) {
      dev_poison (dout, nm + 1);
      st = sam2_cuda_depth_to_space2x_matmul (dx + offset, x_ld, H, W, C, daddend, act,
                                              dA + offset, M, dout + offset, stream);
    }
    g_snprintf (what, sizeof what, "depth_to_space2x_matmul %dx%dx%d M %d ld %d act %d off %d%s",
                H, W, C, M, x_ld, act, offset, with_add ? " +addend" : "");
    check (what, seed, st, dout + offset, fma_ref, nm, 0.0);
    g_snprintf (what, sizeof what, "depth_to_space2x_matmul %dx%dx%d M %d vs the CPU%s", H, W, C,
                M, with_add ? " +addend" : "");
    check (what, seed, st, dout + offset, ref, nm, GEMM_F32_REL_L2);
  }
  cudaFree (dx);
  cudaFree (dadd);
  cudaFree (dA);
  cudaFree (dy);
  cudaFree (dout);
  g_free (x);
  g_free (add);
  g_free (A);
  g_free (y);
  g_free (ref);
  g_free (fma_ref);
  g_rand_free (r);
}

/* ---- 16-bit formats ------------------------------------------------------------------------- */

/* The formats of the half-precision launchers (kernels.h's *_16): a test of one runs both, FP16
 * then BF16, on the same inputs (one seed), each against its own rounding of them. */

static const char *
half_name (Sam2CudaHalf type)
{
  return type == SAM2_CUDA_BF16 ? "bf16" : "f16";
}

/* TRUE (and a line saying so) when quick mode leaves out a case of n floats in `type`: FP16 runs
 * every shape it ran there before BF16 existed; BF16, the same kernels' other instances, adds only
 * the edge shapes, which keeps the emulator's run short. */
static gboolean
skip_half (Sam2CudaHalf type, const char *what, size_t n)
{
  return type == SAM2_CUDA_BF16 && skip_big (what, n);
}

/* IEEE binary16, round to nearest even (overflow to infinity, NaN stays NaN) */
static uint16_t
host_f16 (float f)
{
  uint32_t x;
  memcpy (&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)                /* NaN: a quiet one */
    return (uint16_t) (sign | 0x7e00u);
  if (ax >= 0x477ff000u)               /* >= 65520: rounds past 65504 */
    return (uint16_t) (sign | 0x7c00u);
  if (ax < 0x38800000u) {              /* below 2^-14: a subnormal half, units of 2^-24 */
    float a;
    memcpy (&a, &ax, 4);
    return (uint16_t) (sign | (uint32_t) nearbyintf (a * 16777216.0f));
  }
  uint32_t h = (ax - 0x38000000u) >> 13; /* exponent rebased 127 -> 15, 10 mantissa bits */
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++;
  return (uint16_t) (sign | h);
}

static float
host_f16_to_f32 (uint16_t h)
{
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float v = e == 0 ? ldexpf ((float) m, -24)
                  : e == 31 ? (m != 0 ? NAN : INFINITY) : ldexpf ((float) (m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}

static float
host_bf16_to_f32 (uint16_t h)
{
  uint32_t x = (uint32_t) h << 16;
  float f;
  memcpy (&f, &x, 4);
  return f;
}

static uint16_t
host_to16 (Sam2CudaHalf type, float f)
{
  return type == SAM2_CUDA_BF16 ? sam2_test_f32_to_bf16 (f) : host_f16 (f);
}

static float
host_from16 (Sam2CudaHalf type, uint16_t h)
{
  return type == SAM2_CUDA_BF16 ? host_bf16_to_f32 (h) : host_f16_to_f32 (h);
}

/* elements of got (n) other than f (n) rounded on the host, bit for bit except that any NaN
 * matches any other (the device's conversions give one canonical NaN); the first few printed */
static size_t
mismatched16 (Sam2CudaHalf type, const uint16_t *got, const float *f, size_t n)
{
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    const uint16_t want = host_to16 (type, f[i]);
    if (got[i] == want || (isnan (host_from16 (type, got[i])) && isnan (f[i])))
      continue;
    if (bad < 3)
      printf ("     [%zu] x %.9g: device 0x%04x host 0x%04x\n", i, f[i], got[i], want);
    bad++;
  }
  return bad;
}

/* the device 16-bit copy of dev (n) */
static uint16_t *
to16 (Sam2CudaHalf type, const float *dev, size_t n)
{
  uint16_t *d16 = NULL;
  CUDA_OK (cudaMalloc ((void **) &d16, MAX (n, 1) * 2));
  int st = sam2_cuda_f32_to_16 (dev, n, type, d16, stream);
  if (st != SAM2_CUDA_OK) {
    fprintf (stderr, "FATAL: conversion launcher returned %d\n", st);
    exit (1);
  }
  return d16;
}

/* x (n) rounded to `type` and back: the operands the 16-bit products multiply */
static float *
rounded16 (Sam2CudaHalf type, const float *x, size_t n)
{
  float *y = g_malloc (MAX (n, 1) * sizeof (float));
  for (size_t i = 0; i < n; i++)
    y[i] = host_from16 (type, host_to16 (type, x[i]));
  return y;
}

/* ---- 16-bit outputs of LayerNorm and activation (the fused MLP's passes) -------------------- */

/* sam2_cuda_layer_norm_16 against sam2_cuda_layer_norm's float output rounded on the host,
 * sam2_cuda_activation_to_16 against sam2_cuda_activation's and sam2_cuda_sum_to_16 against
 * sam2_cuda_add's, bit for bit in each format: the fused MLP and the decoder's sums of keys and
 * positional encodings rely on these being the same values as the unfused ops followed by the
 * conversion. */
static void
test_outputs_16 (int M, int C, int act, int offset)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * C;
  float *x = g_malloc ((n + 1) * sizeof (float)), *w = g_malloc (C * sizeof (float));
  float *b = g_malloc (C * sizeof (float));
  fill_uniform (r, x, n + 1, -3.0, 3.0);
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dx = dev_from (x, n + 1), *dw = dev_from (w, C), *db = dev_from (b, C);
  float *dy = dev_alloc (n + 1);
  fill_uniform (r, x, n + 1, -3.0, 3.0);
  float *dadd = dev_from (x, n + 1);   /* another draw: the addend of the sums */
  uint16_t *d16 = NULL;
  CUDA_OK (cudaMalloc ((void **) &d16, (n + 4) * 2));
  static const char *kind_names[] = { "layer_norm_16", "activation_to_16", "sum_to_16" };
  uint16_t *got = g_malloc ((n + 1) * 2);
  float *f = g_malloc ((n + 1) * sizeof (float));
  char what[128], detail[96];

  for (int kind = 0; kind < 3; kind++) {
    /* the float op once, then each format's fused rounding into a poisoned (NaN) output */
    int st1;
    if (kind == 0) {
      st1 = sam2_cuda_layer_norm (dx + offset, M, C, dw, db, 1e-6f, dy + offset, stream);
    } else if (kind == 2) {
      st1 = sam2_cuda_add (dy + offset, dx + offset, dadd + offset, n, stream);
    } else {
      CUDA_OK (cudaMemcpy (dy, dx, (n + 1) * sizeof (float), cudaMemcpyDeviceToDevice));
      st1 = sam2_cuda_activation (act, dy + offset, n, stream);
    }
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (f, dy + offset, n * sizeof (float), cudaMemcpyDeviceToHost));
    for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
      const Sam2CudaHalf type = halves[t];
      g_snprintf (what, sizeof what, "%s %s %dx%d%s%s off %d", kind_names[kind],
                  half_name (type), M, C, kind == 1 ? " " : "", kind == 1 ? act_names[act] : "",
                  offset);
      if (skip_half (type, what, n))
        continue;
      CUDA_OK (cudaMemset (d16, 0xff, (n + 4) * 2));
      const int st2 = kind == 0
        ? sam2_cuda_layer_norm_16 (dx + offset, M, C, dw, db, 1e-6f, type, d16 + offset, stream)
        : kind == 1
        ? sam2_cuda_activation_to_16 (act, dx + offset, n, type, d16 + offset, stream)
        : sam2_cuda_sum_to_16 (dx + offset, dadd + offset, n, type, d16 + offset, stream);
      CUDA_OK (cudaStreamSynchronize (stream));
      CUDA_OK (cudaMemcpy (got, d16 + offset, n * 2, cudaMemcpyDeviceToHost));
      const size_t bad = mismatched16 (type, got, f, n);
      g_snprintf (detail, sizeof detail, "status %d %d  mismatched %zu (exact)", st1, st2, bad);
      report (st1 == SAM2_CUDA_OK && st2 == SAM2_CUDA_OK && bad == 0, what, seed, detail);
    }
  }
  cudaFree (dx);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dy);
  cudaFree (dadd);
  cudaFree (d16);
  g_free (x);
  g_free (w);
  g_free (b);
  g_free (got);
  g_free (f);
  g_rand_free (r);
}

/* sam2_cuda_depth_to_space2x_norm_act_16 against sam2_cuda_depth_to_space2x_norm_act (checked
 * above against the scatter, LayerNorm and activation kernels) rounded on the host, bit for bit
 * in each format: the decoder's upscaling writing its second layer's operand
 * (cuda_depth_to_space2x_linear). With and without the LayerNorm (whose scratch is `sums`) and
 * the addend; x's rows `ld_pad` floats apart more than 4 C; `offset` misaligns every buffer. */
static void
test_depth_to_space_16 (int H, int W, int C, gboolean with_norm, int act, int offset, int ld_pad)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int x_ld = 4 * C + ld_pad;
  const size_t nx = (size_t) H * W * x_ld, no = (size_t) 4 * H * W * C;
  float *x = g_malloc ((nx + 1) * sizeof (float)), *add = g_malloc ((no + 1) * sizeof (float));
  float *w = g_malloc (C * sizeof (float)), *b = g_malloc (C * sizeof (float));
  fill_uniform (r, x, nx + 1, -2.0, 2.0);
  fill_uniform (r, add, no + 1, -1.0, 1.0);
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dx = dev_from (x, nx + 1), *dadd = dev_from (add, no + 1);
  float *dw = with_norm ? dev_from (w, C) : NULL, *db = with_norm ? dev_from (b, C) : NULL;
  float *dref = dev_alloc (no + 1), *dsums = dev_alloc (no + 1);
  uint16_t *d16 = NULL, *got = g_malloc ((no + 1) * 2);
  CUDA_OK (cudaMalloc ((void **) &d16, (no + 2) * 2));
  const float eps = 1e-6f;
  char what[160], detail[96];
  for (int with_add = 1; with_add >= 0; with_add--) {
    const float *addend = with_add ? dadd + offset : NULL;
    const int st_ref = sam2_cuda_depth_to_space2x_norm_act (dx + offset, x_ld, H, W, C, addend,
                                                            dw, db, eps, act, dref + offset,
                                                            stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    float *ref = host_from_dev (dref + offset, no);
    for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
      const Sam2CudaHalf type = halves[t];
      g_snprintf (what, sizeof what, "depth_to_space2x_16 %s %dx%dx%d ld %d%s act %d off %d%s",
                  half_name (type), H, W, C, x_ld, with_norm ? " norm" : "", act, offset,
                  with_add ? " +addend" : "");
      if (skip_half (type, what, no))
        continue;
      CUDA_OK (cudaMemset (d16, 0xff, (no + 2) * 2));
      const int st = sam2_cuda_depth_to_space2x_norm_act_16 (dx + offset, x_ld, H, W, C, addend,
                                                             dw, db, eps, act,
                                                             with_norm ? dsums + offset : NULL,
                                                             type, d16 + offset, stream);
      CUDA_OK (cudaMemcpy (got, d16 + offset, (no + 1) * 2, cudaMemcpyDeviceToHost));
      const size_t bad = mismatched16 (type, got, ref, no);
      g_snprintf (detail, sizeof detail, "status %d %d, mismatched %zu, after the end 0x%04x",
                  st_ref, st, bad, got[no]);
      report (st_ref == SAM2_CUDA_OK && st == SAM2_CUDA_OK && bad == 0 && got[no] == 0xffff,
              what, seed, detail);
    }
    g_free (ref);
  }
  cudaFree (dx);
  cudaFree (dadd);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dref);
  cudaFree (dsums);
  cudaFree (d16);
  g_free (x);
  g_free (add);
  g_free (w);
  g_free (b);
  g_free (got);
  g_rand_free (r);
}

/* sam2_cuda_norm_operands_16 against sam2_cuda_layer_norm in place, then sam2_cuda_sum_to_16's
 * and sam2_cuda_f32_to_16's roundings on the host, bit for bit in each format: x after the call
 * (normalised when `with_norm`, else untouched), sum16 = x + addend and plain16 = x, each also
 * alone (the other NULL stays poisoned). The decoder's keys after norm4 (cuda_norm_linear_pair)
 * rely on it. Rows of mean up to +-50. */
static void
test_norm_operands_16 (int M, int C, gboolean with_norm, int offset)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t n = (size_t) M * C;
  float *x = g_malloc ((n + 1) * sizeof (float)), *add = g_malloc ((n + 1) * sizeof (float));
  float *w = g_malloc (C * sizeof (float)), *b = g_malloc (C * sizeof (float));
  fill_uniform (r, x, n + 1, -3.0, 3.0);
  for (int m = 0; m < M; m++) {
    const float mean = (float) g_rand_double_range (r, -50.0, 50.0);
    for (int c = 0; c < C; c++)
      x[offset + (size_t) m * C + c] += mean;
  }
  fill_uniform (r, add, n + 1, -3.0, 3.0);
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dw = dev_from (w, C), *db = dev_from (b, C), *dadd = dev_from (add, n + 1);
  /* the reference rows: the LayerNorm kernel in place, or x as it is */
  float *dref = dev_from (x, n + 1);
  int st_ref = with_norm ? sam2_cuda_layer_norm (dref + offset, M, C, dw, db, 1e-5f,
                                                 dref + offset, stream)
                         : SAM2_CUDA_OK;
  float *want = host_from_dev (dref + offset, n), *sum = g_malloc (MAX (n, 1) * sizeof (float));
  for (size_t i = 0; i < n; i++)
    sum[i] = want[i] + add[offset + i];
  const Sam2CudaRowNorm norm = { dw, db, 1e-5f };
  uint16_t *d16 = NULL, *got = g_malloc ((2 * n + 1) * 2);
  CUDA_OK (cudaMalloc ((void **) &d16, (2 * n + 4) * 2));
  static const char *outs[] = { "both", "sum only", "plain only" };
  char what[128], detail[128];
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++)
    for (int o = 0; o < 3; o++) {
      const Sam2CudaHalf type = halves[t];
      g_snprintf (what, sizeof what, "norm_operands_16 %s %dx%d%s %s off %d", half_name (type),
                  M, C, with_norm ? " norm" : "", outs[o], offset);
      if (skip_half (type, what, 2 * n))
        continue;
      float *dx = dev_from (x, n + 1);
      CUDA_OK (cudaMemset (d16, 0xff, (2 * n + 4) * 2));
      uint16_t *sum16 = d16 + offset, *plain16 = d16 + offset + n;
      const int st = sam2_cuda_norm_operands_16 (dx + offset, M, C, with_norm ? &norm : NULL,
                                                 dadd + offset, type, o != 2 ? sum16 : NULL,
                                                 o != 1 ? plain16 : NULL, stream);
      float *xa = host_from_dev (dx + offset, n);
      CUDA_OK (cudaMemcpy (got, d16 + offset, 2 * n * 2, cudaMemcpyDeviceToHost));
      const size_t bad_x = memcmp (xa, want, n * sizeof (float)) != 0;
      size_t bad_sum = 0, bad_plain = 0;
      if (o != 2)
        bad_sum = mismatched16 (type, got, sum, n);
      else
        for (size_t i = 0; i < n; i++)
          bad_sum += got[i] != 0xffff;
      if (o != 1)
        bad_plain = mismatched16 (type, got + n, want, n);
      else
        for (size_t i = 0; i < n; i++)
          bad_plain += got[n + i] != 0xffff;
      g_snprintf (detail, sizeof detail, "status %d %d  x %s, mismatched sum %zu plain %zu",
                  st_ref, st, bad_x ? "differs" : "same", bad_sum, bad_plain);
      report (st_ref == SAM2_CUDA_OK && st == SAM2_CUDA_OK && bad_x == 0 && bad_sum == 0
                  && bad_plain == 0, what, seed, detail);
      cudaFree (dx);
      g_free (xa);
    }
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dadd);
  cudaFree (dref);
  cudaFree (d16);
  g_free (x);
  g_free (add);
  g_free (w);
  g_free (b);
  g_free (want);
  g_free (sum);
  g_free (got);
  g_rand_free (r);
}

/* sam2_cuda_layer_norm_windows_16 against sam2_cuda_layer_norm, then sam2_cuda_window_partition
 * of each image and the rounding on the host, bit for bit in each format (padding rows 0): the
 * half-precision paths' qkv operand made in one pass (cuda_norm_windows_linear) relies on it.
 * Rows of mean up to +-100. */
static void
test_layer_norm_windows_16 (int n_img, int H, int W, int C, int ws)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const Sam2CudaRowWindows win = { n_img, H, W, ws };
  const size_t map = (size_t) H * W, n = (size_t) n_img * map * C;
  const size_t rows = (size_t) sam2_cuda_row_windows_rows (&win), per_img = rows / n_img;
  float *x = g_malloc (n * sizeof (float)), *w = g_malloc (C * sizeof (float));
  float *b = g_malloc (C * sizeof (float));
  fill_uniform (r, x, n, -3.0, 3.0);
  for (size_t i = 0; i < n; i++)
    x[i] += (float) (100.0 * ((i / C) % 3) - 100.0);
  fill_uniform (r, w, C, 0.5, 1.5);
  fill_uniform (r, b, C, -0.5, 0.5);
  float *dx = dev_from (x, n), *dw = dev_from (w, C), *db = dev_from (b, C);
  float *dn = dev_alloc (n), *dwin = dev_alloc (rows * C);
  uint16_t *d16 = NULL;
  CUDA_OK (cudaMalloc ((void **) &d16, rows * C * 2));
  int st1 = sam2_cuda_layer_norm (dx, (int) (n_img * map), C, dw, db, 1e-6f, dn, stream);
  for (int i = 0; i < n_img && st1 == SAM2_CUDA_OK; i++)
    st1 = sam2_cuda_window_partition (dn + i * map * C, H, W, C, ws, dwin + i * per_img * C,
                                      stream);
  CUDA_OK (cudaStreamSynchronize (stream));
  float *f = g_malloc (rows * C * sizeof (float));
  uint16_t *got = g_malloc (rows * C * 2);
  CUDA_OK (cudaMemcpy (f, dwin, rows * C * sizeof (float), cudaMemcpyDeviceToHost));
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    const Sam2CudaHalf type = halves[t];
    char what[128], detail[96];
    g_snprintf (what, sizeof what, "layer_norm_windows_16 %s %dx%dx%dx%d ws %d",
                half_name (type), n_img, H, W, C, ws);
    if (skip_half (type, what, rows * C))
      continue;
    CUDA_OK (cudaMemset (d16, 0xff, rows * C * 2));
    const int st2 = sam2_cuda_layer_norm_windows_16 (dx, &win, C, dw, db, 1e-6f, type, d16,
                                                     stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (got, d16, rows * C * 2, cudaMemcpyDeviceToHost));
    const size_t bad = mismatched16 (type, got, f, rows * C);
    g_snprintf (detail, sizeof detail, "status %d %d  mismatched %zu of %zu (exact)", st1, st2,
                bad, rows * C);
    report (st1 == SAM2_CUDA_OK && st2 == SAM2_CUDA_OK && bad == 0, what, seed, detail);
  }
  cudaFree (dx);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dn);
  cudaFree (dwin);
  cudaFree (d16);
  g_free (x);
  g_free (w);
  g_free (b);
  g_free (f);
  g_free (got);
  g_rand_free (r);
}

/* ---- attention ---------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int batch, heads, head_dim, len_q, len_k;
  int q_ld, k_ld, v_ld, out_ld;        /* 0: heads * head_dim */
  int gap;                             /* extra rows between sequences (NaN) */
  gboolean shared_qkv;                 /* q, k, v interleaved in one (.., 3 d) buffer */
  int misalign;                        /* offset every base pointer by this many floats */
  gboolean timed;
} AttnCase;

typedef struct {
  Sam2CudaAttentionArgs a;
  Sam2CudaHalf type;                   /* of run_attention_16 */
} AttnRun;

static int
run_attention (void *ctx)
{
  return sam2_cuda_attention (&((AttnRun *) ctx)->a, stream);
}

static int
run_attention_16 (void *ctx)
{
  const AttnRun *run = ctx;
  return sam2_cuda_attention_16 (&run->a, run->type, stream);
}

/* host buffer of `rows` rows of `ld` floats, NaN except columns < width of the rows that belong
 * to a sequence */
static float *
attn_input (GRand *r, int batch, int len, int ld, int width, size_t batch_stride, size_t total)
{
  float *x = host_nan (total);
  for (int s = 0; s < batch; s++)
    for (int i = 0; i < len; i++)
      for (int c = 0; c < width; c++)
        x[s * batch_stride + (size_t) i * ld + c] = (float) g_rand_double_range (r, -1.5, 1.5);
  return x;
}

/* The poison of dout (out_n floats at `off` past an allocation poisoned from its start) still
 * there wherever ref is NaN (padding columns, gap rows) and in the `off` floats before it:
 * nothing written out of bounds. */
static void
check_attention_stray (const char *name, guint32 seed, const float *dout, int off,
                       const float *ref, size_t out_n)
{
  float *gpu = host_from_dev (dout + off, out_n);
  size_t stray = 0;
  for (size_t i = 0; i < out_n; i++)
    if (isnan (ref[i]) && !isnan (gpu[i]))
      stray++;
  float *before = host_from_dev (dout, off);
  for (int i = 0; i < off; i++)
    if (!isnan (before[i]))
      stray++;
  char what[160], detail[64];
  g_snprintf (what, sizeof what, "%s: nothing written outside", name);
  g_snprintf (detail, sizeof detail, "stray writes %zu", stray);
  report (stray == 0, what, seed, detail);
  g_free (gpu);
  g_free (before);
}

/* The attention of `run` again with its output rounded to `type` in a 16-bit buffer (out16):
 * every written element the same bits as sam2_cuda_f32_to_16 of the float output the same
 * kernel gave (dout_f32, device, out_n floats; `run`'s float output before this call), and
 * nothing written where ref is NaN (padding columns, gap rows) or in the `off` halves before it.
 * run->a.out is restored. */
static void
check_attention_out16 (const char *name, guint32 seed, AttnRun *run, int (*fn) (void *),
                       Sam2CudaHalf type, const float *dout_f32, int off, const float *ref,
                       size_t out_n)
{
  const size_t n16 = out_n + off;
  uint16_t *d16 = (uint16_t *) dev_alloc ((n16 + 1) / 2);
  CUDA_OK (cudaMemset (d16, 0xff, n16 * sizeof (uint16_t)));
  uint16_t *dconv = (uint16_t *) dev_alloc ((out_n + 1) / 2);
  int st = sam2_cuda_f32_to_16 (dout_f32, out_n, type, dconv, stream);
  float *const out = run->a.out;
  run->a.out = NULL;
  run->a.out16 = d16 + off;
  run->a.out16_type = type;
  if (st == SAM2_CUDA_OK)
    st = fn (run);
  run->a.out = out;
  run->a.out16 = NULL;
  char what[160], detail[96];
  g_snprintf (what, sizeof what, "%s -> %s out16 = float out converted", name, half_name (type));
  if (st != SAM2_CUDA_OK) {
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (FALSE, what, seed, detail);
  } else {
    uint16_t *got = g_new (uint16_t, n16), *want = g_new (uint16_t, MAX (out_n, 1));
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (got, d16, n16 * sizeof (uint16_t), cudaMemcpyDeviceToHost));
    CUDA_OK (cudaMemcpy (want, dconv, out_n * sizeof (uint16_t), cudaMemcpyDeviceToHost));
    size_t differ = 0, stray = 0;
    for (int i = 0; i < off; i++)
      stray += got[i] != 0xffff;
    for (size_t i = 0; i < out_n; i++) {
      if (isnan (ref[i]))
        stray += got[off + i] != 0xffff;
      else
        differ += got[off + i] != want[i];
    }
    g_snprintf (detail, sizeof detail, "%zu of %zu differ, %zu stray writes", differ, out_n,
                stray);
    report (differ == 0 && stray == 0, what, seed, detail);
    g_free (got);
    g_free (want);
  }
  cudaFree (d16);
  cudaFree (dconv);
}

/* The v2 tensor-core attention of `run` again from 16-bit inputs (q16, k16, v16: q, k and v
 * converted by sam2_cuda_f32_to_16, padding and gaps included; `base` the allocations the float
 * pointers of run->a point into, NULL when q, k, v share base[0]): the same output bits as from
 * the floats, which the kernel rounds to the same operands, wherever
 * sam2_cuda_attention_16_reads_16 takes the inputs (aligned rows), and SAM2_CUDA_UNSUPPORTED
 * where it does not. run->a is restored. */
static void
check_attention_in16 (const char *name, guint32 seed, AttnRun *run, float *const base[3],
                      const size_t count[3], float *dout, int off, size_t out_n)
{
  float *want = host_from_dev (dout + off, out_n);
  const Sam2CudaAttentionArgs saved = run->a;
  const int n_bufs = base[1] == NULL ? 1 : 3;
  uint16_t *b16[3] = { NULL, NULL, NULL };
  for (int i = 0; i < n_bufs; i++)
    b16[i] = to16 (run->type, base[i], count[i]);
  /* each pointer at its float's offset, in halves */
  const float *fp[3] = { saved.q, saved.k, saved.v };
  const uint16_t *hp[3];
  for (int i = 0; i < 3; i++) {
    const int b = n_bufs == 1 ? 0 : i;
    hp[i] = b16[b] + (fp[i] - base[b]);
  }
  run->a.q16 = hp[0];
  run->a.k16 = hp[1];
  run->a.v16 = hp[2];
  run->a.q = run->a.k = run->a.v = NULL;
  const gboolean takes = sam2_cuda_attention_16_reads_16 (&run->a);
  dev_poison (dout, out_n + off);
  const int st = run_attention_16 (run);
  float *got = host_from_dev (dout + off, out_n);
  char what[160], detail[96];
  g_snprintf (what, sizeof what, "%s 16-bit inputs%s", name, takes ? "" : " (refused)");
  if (takes) {
    size_t differ = 0;
    for (size_t i = 0; i < out_n; i++)
      differ += memcmp (&got[i], &want[i], sizeof (float)) != 0;
    g_snprintf (detail, sizeof detail, "status %d  %zu of %zu differ from the float inputs'", st,
                differ, out_n);
    report (st == SAM2_CUDA_OK && differ == 0, what, seed, detail);
  } else {
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (st == SAM2_CUDA_UNSUPPORTED, what, seed, detail);
  }
  run->a = saved;
  for (int i = 0; i < n_bufs; i++)
    cudaFree (b16[i]);
  g_free (want);
  g_free (got);
}

static void
test_attention (const AttnCase *tc)
{
  if (skip_big (tc->name,
                (size_t) tc->batch * tc->heads * tc->head_dim * (tc->len_q + tc->len_k)))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int width = tc->heads * tc->head_dim;
  const int d3 = 3 * width;
  int q_ld = tc->q_ld ? tc->q_ld : width, k_ld = tc->k_ld ? tc->k_ld : width;
  int v_ld = tc->v_ld ? tc->v_ld : width, out_ld = tc->out_ld ? tc->out_ld : width;
  const int off = tc->misalign;
  float *hq, *hk, *hv, *hqkv = NULL;
  size_t q_bs, k_bs, v_bs, q_n, k_n, v_n;
  size_t qkv_n = 0, qkv_bs = 0;
  if (tc->shared_qkv) {
    /* Hiera: q, k, v at columns 0, d, 2 d of (len, 3 d) rows; len_q == len_k */
    q_ld = k_ld = v_ld = d3;
    qkv_bs = (size_t) (tc->len_k + tc->gap) * d3;
    qkv_n = qkv_bs * tc->batch + off;
    hqkv = attn_input (r, tc->batch, tc->len_k, d3, d3, qkv_bs, qkv_n - off);
    q_bs = k_bs = v_bs = qkv_bs;
    hq = hqkv;
    hk = hqkv + width;
    hv = hqkv + 2 * width;
    q_n = k_n = v_n = 0;
  } else {
    q_bs = (size_t) (tc->len_q + tc->gap) * q_ld;
    k_bs = (size_t) (tc->len_k + tc->gap) * k_ld;
    v_bs = (size_t) (tc->len_k + tc->gap) * v_ld;
    q_n = q_bs * tc->batch;
    k_n = k_bs * tc->batch;
    v_n = v_bs * tc->batch;
    hq = attn_input (r, tc->batch, tc->len_q, q_ld, width, q_bs, q_n);
    hk = attn_input (r, tc->batch, tc->len_k, k_ld, width, k_bs, k_n);
    hv = attn_input (r, tc->batch, tc->len_k, v_ld, width, v_bs, v_n);
  }
  const size_t out_bs = (size_t) (tc->len_q + tc->gap) * out_ld;
  const size_t out_n = out_bs * tc->batch;

  /* device copies at `off` floats past a 256-byte aligned base */
  float *dq, *dk, *dv, *dqkv = NULL, *d_alloc[3] = { NULL, NULL, NULL };
  if (tc->shared_qkv) {
    dqkv = dev_alloc (qkv_n);
    CUDA_OK (cudaMemcpy (dqkv + off, hqkv, (qkv_n - off) * sizeof (float),
                         cudaMemcpyHostToDevice));
    dq = dqkv + off;
    dk = dqkv + off + width;
    dv = dqkv + off + 2 * width;
  } else {
    const float *src[3] = { hq, hk, hv };
    const size_t cnt[3] = { q_n, k_n, v_n };
    for (int i = 0; i < 3; i++) {
      d_alloc[i] = dev_alloc (cnt[i] + off);
      CUDA_OK (cudaMemcpy (d_alloc[i] + off, src[i], cnt[i] * sizeof (float),
                           cudaMemcpyHostToDevice));
    }
    dq = d_alloc[0] + off;
    dk = d_alloc[1] + off;
    dv = d_alloc[2] + off;
  }
  float *dout = dev_alloc (out_n + off);
  dev_poison (dout, out_n + off);

  float *ref = host_nan (out_n);
  Sam2AttentionArgs ca = {
    .batch = tc->batch, .heads = tc->heads, .head_dim = tc->head_dim, .len_q = tc->len_q,
    .len_k = tc->len_k, .scale = 1.0f / sqrtf ((float) tc->head_dim),
    .q = hq, .q_ld = q_ld, .q_batch_stride = q_bs,
    .k = hk, .k_ld = k_ld, .k_batch_stride = k_bs,
    .v = hv, .v_ld = v_ld, .v_batch_stride = v_bs,
    .out = ref, .out_ld = out_ld, .out_batch_stride = out_bs,
  };
  int st = cpu->ops->attention (cpu, &ca);
  if (st != SAM2_STATUS_OK) {
    report (FALSE, tc->name, seed, "CPU attention failed");
    goto out;
  }
  AttnRun run = { .a = {
    .batch = tc->batch, .heads = tc->heads, .head_dim = tc->head_dim, .len_q = tc->len_q,
    .len_k = tc->len_k, .scale = ca.scale,
    .q = dq, .q_ld = q_ld, .q_batch_stride = q_bs,
    .k = dk, .k_ld = k_ld, .k_batch_stride = k_bs,
    .v = dv, .v_ld = v_ld, .v_batch_stride = v_bs,
    .out = dout + off, .out_ld = out_ld, .out_batch_stride = out_bs,
  } };
  st = sam2_cuda_attention (&run.a, stream);
  /* compares the whole output buffer: the written region against the CPU, and the rest (padding
   * columns, gap rows) NaN on both sides, which max_abs-style NaN matching checks below */
  check (tc->name, seed, st, dout + off, ref, out_n, ATTENTION_REL_L2);
  if (st == SAM2_CUDA_OK) {
    check_attention_stray (tc->name, seed, dout, off, ref, out_n);
    for (size_t t = 0; t < G_N_ELEMENTS (halves); t++)
      check_attention_out16 (tc->name, seed, &run, run_attention, halves[t], dout + off, off,
                             ref, out_n);
    if (tc->timed) {
      const double ms = time_ms (run_attention, &run, 5);
      const double flop = 4.0 * tc->batch * tc->heads * (double) tc->len_q * tc->len_k
                          * tc->head_dim;
      printf ("time %-58s %.3f ms  %.1f TFLOP/s\n", tc->name, ms, flop / ms / 1e9);
    }
  }

  /* the tensor-core variants, both kernel versions in each format, on the same inputs, each
   * into a freshly poisoned output */
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++)
    for (int version = 1; version <= 2; version++) {
      run.type = halves[t];
      sam2_cuda_attention_16_set_version (version);
      dev_poison (dout, out_n + off);
      st = run_attention_16 (&run);
      char what[160];
      g_snprintf (what, sizeof what, "%s [%s mma v%d]", tc->name, half_name (run.type),
                  version);
      check (what, seed, st, dout + off, ref, out_n,
             run.type == SAM2_CUDA_BF16 ? ATTENTION_BF16_REL_L2 : ATTENTION_F16_REL_L2);
      if (st == SAM2_CUDA_OK) {
        check_attention_stray (what, seed, dout, off, ref, out_n);
        check_attention_out16 (what, seed, &run, run_attention_16, run.type, dout + off, off, ref,
                               out_n);
        if (version == 2) {
          float *const bases[3] = { tc->shared_qkv ? dqkv : d_alloc[0],
                                    tc->shared_qkv ? NULL : d_alloc[1],
                                    tc->shared_qkv ? NULL : d_alloc[2] };
          const size_t counts[3] = { tc->shared_qkv ? qkv_n : q_n + off, k_n + off, v_n + off };
          check_attention_in16 (what, seed, &run, bases, counts, dout, off, out_n);
        }
        if (tc->timed) {
          const double ms = time_ms (run_attention_16, &run, 5);
          const double flop = 4.0 * tc->batch * tc->heads * (double) tc->len_q * tc->len_k
                              * tc->head_dim;
          printf ("time %-58s %.3f ms  %.1f TFLOP/s\n", what, ms, flop / ms / 1e9);
        }
      }
    }
  sam2_cuda_attention_16_set_version (0);   /* back to the environment's choice */
out:
  cudaFree (dqkv);
  for (int i = 0; i < 3; i++)
    cudaFree (d_alloc[i]);
  cudaFree (dout);
  if (tc->shared_qkv)
    g_free (hqkv);
  else {
    g_free (hq);
    g_free (hk);
    g_free (hv);
  }
  g_free (ref);
  g_rand_free (r);
}

static void
test_attention_unsupported (void)
{
  float *d = dev_alloc (1024);
  Sam2CudaAttentionArgs a = {
    .batch = 1, .heads = 1, .head_dim = SAM2_CUDA_ATTENTION_MAX_HEAD_DIM + 1, .len_q = 2,
    .len_k = 2, .scale = 1.0f, .q = d, .q_ld = 129, .k = d, .k_ld = 129, .v = d, .v_ld = 129,
    .out = d, .out_ld = 129,
  };
  int st = sam2_cuda_attention (&a, stream);
  char what[96], detail[64];
  g_snprintf (detail, sizeof detail, "status %d", st);
  report (st == SAM2_CUDA_UNSUPPORTED, "attention head_dim 129 is UNSUPPORTED", 0, detail);
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    st = sam2_cuda_attention_16 (&a, halves[t], stream);
    g_snprintf (what, sizeof what, "attention_16 %s head_dim 129 is UNSUPPORTED",
                half_name (halves[t]));
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (st == SAM2_CUDA_UNSUPPORTED, what, 0, detail);
  }
  /* outputs: none, a 16-bit one of the other format than the mma's (an out16_type outside the
   * enum is not tested: loading it is undefined in the kernels' C++, and UBSan says so) */
  a.head_dim = 8;
  a.out = NULL;
  st = sam2_cuda_attention (&a, stream);
  g_snprintf (detail, sizeof detail, "status %d", st);
  report (st == SAM2_CUDA_UNSUPPORTED, "attention without an output is UNSUPPORTED", 0, detail);
  a.out16 = (uint16_t *) d;
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    a.out16_type = halves[1 - t];
    st = sam2_cuda_attention_16 (&a, halves[t], stream);
    g_snprintf (what, sizeof what, "attention_16 %s with %s out16 is UNSUPPORTED",
                half_name (halves[t]), half_name (halves[1 - t]));
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (st == SAM2_CUDA_UNSUPPORTED, what, 0, detail);
  }
  /* rows narrower than the heads' columns (2 x 8), each in turn, and no keys, in both launchers
   * (sam2_attention_args_valid) */
  const Sam2CudaAttentionArgs ok = {
    .batch = 1, .heads = 2, .head_dim = 8, .len_q = 2, .len_k = 2, .scale = 1.0f,
    .q = d, .q_ld = 16, .k = d, .k_ld = 16, .v = d, .v_ld = 16, .out = d + 512, .out_ld = 16,
  };
  static const char *cases[] = { "q_ld 15", "k_ld 15", "v_ld 15", "out_ld 15", "len_k 0" };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++) {
    Sam2CudaAttentionArgs b = ok;
    int *field[] = { &b.q_ld, &b.k_ld, &b.v_ld, &b.out_ld, &b.len_k };
    *field[c] = c < 4 ? 15 : 0;
    st = sam2_cuda_attention (&b, stream);
    g_snprintf (what, sizeof what, "attention with %s is UNSUPPORTED", cases[c]);
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (st == SAM2_CUDA_UNSUPPORTED, what, 0, detail);
    st = sam2_cuda_attention_16 (&b, SAM2_CUDA_F16, stream);
    g_snprintf (what, sizeof what, "attention_16 with %s is UNSUPPORTED", cases[c]);
    g_snprintf (detail, sizeof detail, "status %d", st);
    report (st == SAM2_CUDA_UNSUPPORTED, what, 0, detail);
  }
  /* and the same arguments with full rows run */
  st = sam2_cuda_attention (&ok, stream);
  const cudaError_t e = cudaStreamSynchronize (stream);
  g_snprintf (detail, sizeof detail, "status %d  stream %s", st, cudaGetErrorString (e));
  report (st == SAM2_CUDA_OK && e == cudaSuccess, "attention with full rows runs", 0, detail);
  cudaFree (d);
}

/* ---- GEMMs and conversions ------------------------------------------------------------------ */

/* the bound of a 16-bit product of `type` against the FP32 product of the same rounded operands */
static double
gemm_rounded_bound (Sam2CudaHalf type)
{
  return type == SAM2_CUDA_BF16 ? GEMM_BF16_ROUNDED_REL_L2 : GEMM_F16_ROUNDED_REL_L2;
}

typedef struct {
  cublasHandle_t h;
  const void *A, *B;
  int M, N, K;
  float beta;
  float *C;
  gboolean half;                       /* 16-bit operands of `type`, else FP32 */
  Sam2CudaHalf type;
} GemmRun;

static int
run_gemm (void *ctx)
{
  GemmRun *g = ctx;
  return g->half ? sam2_cuda_gemm_16_nt (g->h, g->type, g->A, g->B, g->M, g->N, g->K, g->beta,
                                         g->C)
                 : sam2_cuda_gemm_f32_nt (g->h, g->A, g->B, g->M, g->N, g->K, g->beta, g->C);
}

/* 16-bit conversions on the device against the host's, bit for bit: random values over a wide
 * range of magnitudes (fp16 subnormals, overflow to infinity) and the edge values; BF16 then
 * converts edges of its own. */
static void
test_conversions (size_t n)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  /* bfloat16's edges, as float bits: the largest finite bfloat16 (0x7f7f); the float halfway
   * from it to infinity, FLT_MAX and its negative halfway (infinities: 0x7f7f is odd); 1 + 2^-8
   * and 1 + 3 2^-8, halfway cases that round to even down (1) and up (1 + 2^-6); a bfloat16
   * subnormal and halfway cases between subnormals (to 0 and to 0x0002); float's smallest
   * subnormal (to 0); NaNs: quiet, negative with a payload, and signalling with its payload in
   * the lower half only, which a plain round-by-carry would turn into infinity */
  static const uint32_t bf16_edges[] = { 0x7f7f0000u, 0x7f7f8000u, 0x7f7fffffu, 0xff7f8000u,
                                         0x3f808000u, 0x3f818000u, 0x00010000u, 0x00008000u,
                                         0x00018000u, 0x00000001u, 0x7fc00000u, 0xffc00001u,
                                         0x7f800001u };
  const size_t n_f16 = n + 16, n_bf16 = n_f16 + G_N_ELEMENTS (bf16_edges);
  float *x = g_malloc (n_bf16 * sizeof (float));
  for (size_t i = 0; i < n; i++)
    x[i] = (float) (g_rand_double_range (r, -1.0, 1.0)
                    * ldexp (1.0, g_rand_int_range (r, -30, 20)));
  const float edges[16] = { 0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.0f, 65520.0f, -65520.0f,
                            5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 6.1035156e-5f,
                            6.0975552e-5f, 1e-9f, INFINITY, -INFINITY };
  memcpy (x + n, edges, sizeof edges);
  memcpy (x + n_f16, bf16_edges, sizeof bf16_edges);
  float *dx = dev_from (x, n_bf16);
  uint16_t *d16 = NULL, *got = g_malloc (n_bf16 * 2);
  CUDA_OK (cudaMalloc ((void **) &d16, n_bf16 * 2));
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    const Sam2CudaHalf type = halves[t];
    const size_t m = type == SAM2_CUDA_BF16 ? n_bf16 : n_f16;
    CUDA_OK (cudaMemset (d16, 0xff, m * 2));
    int st = sam2_cuda_f32_to_16 (dx, m, type, d16, stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    CUDA_OK (cudaMemcpy (got, d16, m * 2, cudaMemcpyDeviceToHost));
    const size_t bad = mismatched16 (type, got, x, m);
    char what[96], detail[64];
    g_snprintf (what, sizeof what, "f32_to_16 %s n %zu", half_name (type), m);
    g_snprintf (detail, sizeof detail, "status %d  mismatched %zu (exact)", st, bad);
    report (st == SAM2_CUDA_OK && bad == 0, what, seed, detail);
  }
  cudaFree (dx);
  cudaFree (d16);
  g_free (x);
  g_free (got);
  g_rand_free (r);
}

typedef struct {
  cublasLtHandle_t lt;
  void *ws;
  Sam2CudaHalf type;
  const uint16_t *A, *B;
  int M, N, K;
  const float *bias;
  float beta;
  const float *C;
  float *D;
} GemmBiasRun;

static int
run_gemm_16_bias (void *ctx)
{
  GemmBiasRun *g = ctx;
  return sam2_cuda_gemm_16_bias_nt (g->lt, g->type, g->A, g->B, g->M, g->N, g->K, g->bias,
                                    g->beta, g->C, g->D, stream, g->ws,
                                    SAM2_CUDA_LT_WORKSPACE_BYTES);
}

/* the half-precision paths' previous linear: GemmEx, then a separate bias pass (for the timing
 * beside the epilogue version) */
typedef struct {
  cublasHandle_t h;
  Sam2CudaHalf type;
  const uint16_t *A, *B;
  int M, N, K;
  const float *bias;
  float *D;
} GemmThenBiasRun;

static int
run_gemm_16_then_bias (void *ctx)
{
  GemmThenBiasRun *g = ctx;
  int st = sam2_cuda_gemm_16_nt (g->h, g->type, g->A, g->B, g->M, g->N, g->K, 0.0f, g->D);
  return st != SAM2_CUDA_OK ? st : sam2_cuda_bias_act (g->D, g->M, g->N, g->bias, 0, stream);
}

typedef struct {
  const float *x, *x_addend;
  int M, K;
  Sam2CudaHalf type;
  const uint16_t *w16;
  int N;
  const float *bias;
  int act;
  const float *residual;
  float *y;
} SmallMRun;

static int
run_linear_small_m (void *ctx)
{
  SmallMRun *g = ctx;
  return sam2_cuda_linear_16_small_m (g->x, g->x_addend, g->M, g->K, g->type, g->w16, g->N,
                                      g->bias, g->act, g->residual, g->y, stream);
}

/* what the half-precision paths ran before for the same layer: conversion, GemmEx, bias pass */
typedef struct {
  cublasHandle_t h;
  Sam2CudaHalf type;
  const float *x;
  uint16_t *x16;
  int M, K;
  const uint16_t *w16;
  int N;
  const float *bias;
  float *y;
} SmallMCublasRun;

static int
run_small_m_cublas (void *ctx)
{
  SmallMCublasRun *g = ctx;
  int st = sam2_cuda_f32_to_16 (g->x, (size_t) g->M * g->K, g->type, g->x16, stream);
  if (st == SAM2_CUDA_OK)
    st = sam2_cuda_gemm_16_nt (g->h, g->type, g->x16, g->w16, g->M, g->N, g->K, 0.0f, g->y);
  return st != SAM2_CUDA_OK ? st : sam2_cuda_bias_act (g->y, g->M, g->N, g->bias, 0, stream);
}

/* sam2_cuda_norm_linear_16_small_m on g's layer (no residual), with and without x_addend,
 * against sam2_cuda_layer_norm in place then sam2_cuda_linear_16_small_m: the same floats in x
 * and y, and the counter back at 0. */
static void
check_norm_linear_small_m (const SmallMRun *g, const float *x_addend, guint32 seed)
{
  const int M = g->M, K = g->K, N = g->N;
  const size_t nx = (size_t) M * K, ny = (size_t) M * N;
  float *w = g_malloc (K * sizeof (float)), *b = g_malloc (K * sizeof (float));
  for (int k = 0; k < K; k++) {
    w[k] = 0.5f + (float) (k % 7) / 7.0f;
    b[k] = (float) (k % 5) / 5.0f - 0.4f;
  }
  float *dw = dev_from (w, K), *db = dev_from (b, K);
  const Sam2CudaRowNorm norm = { dw, db, 1e-6f };
  unsigned int *counter = NULL;
  CUDA_OK (cudaMalloc ((void **) &counter, sizeof *counter));
  CUDA_OK (cudaMemset (counter, 0, sizeof *counter));
  float *xa = dev_alloc (nx), *xb = dev_alloc (nx), *ya = dev_alloc (ny), *yb = dev_alloc (ny);
  for (int with_addend = 0; with_addend <= 1; with_addend++) {
    const float *addend = with_addend ? x_addend : NULL;
    CUDA_OK (cudaMemcpy (xa, g->x, nx * sizeof (float), cudaMemcpyDeviceToDevice));
    CUDA_OK (cudaMemcpy (xb, g->x, nx * sizeof (float), cudaMemcpyDeviceToDevice));
    dev_poison (ya, ny);
    dev_poison (yb, ny);
    int st = sam2_cuda_layer_norm (xa, M, K, dw, db, norm.eps, xa, stream);
    if (st == SAM2_CUDA_OK)
      st = sam2_cuda_linear_16_small_m (xa, addend, M, K, g->type, g->w16, N, g->bias, g->act,
                                        NULL, ya, stream);
    if (st == SAM2_CUDA_OK)
      st = sam2_cuda_norm_linear_16_small_m (&norm, counter, xb, addend, M, K, g->type, g->w16,
                                             N, g->bias, g->act, yb, stream);
    CUDA_OK (cudaStreamSynchronize (stream));
    float *want_x = host_from_dev (xa, nx), *want_y = host_from_dev (ya, ny);
    char what[128];
    g_snprintf (what, sizeof what, "norm_linear_16_small_m %s %dx%dx%d%s: y", half_name (g->type),
                M, N, K, with_addend ? " + addend" : "");
    check (what, seed, st, yb, want_y, ny, 0.0);
    g_snprintf (what, sizeof what, "norm_linear_16_small_m %s %dx%dx%d%s: x normalised",
                half_name (g->type), M, N, K, with_addend ? " + addend" : "");
    check (what, seed, st, xb, want_x, nx, 0.0);
    unsigned int after = 1;
    CUDA_OK (cudaMemcpy (&after, counter, sizeof after, cudaMemcpyDeviceToHost));
    g_snprintf (what, sizeof what, "norm_linear_16_small_m %s %dx%dx%d: counter", half_name (g->type),
                M, N, K);
    report (after == 0, what, seed, after == 0 ? "back at 0" : "not reset");
    g_free (want_x);
    g_free (want_y);
  }
  cudaFree (dw);
  cudaFree (db);
  cudaFree (counter);
  cudaFree (xa);
  cudaFree (xb);
  cudaFree (ya);
  cudaFree (yb);
  g_free (w);
  g_free (b);
}

/* sam2_cuda_linear_16_small_m against the CPU in each format: the product of the operands
 * rounded to it, then bias, activation and residual as the backend's linear does them.
 * residual_mode 0: none, 1: another buffer, 2: y itself. offset 1 shifts x and y off 16-byte
 * alignment (the scalar path). Quick mode times FP16 only: BF16 would double the timing's
 * emulated launches, and an emulator's times say nothing of either. */
static void
test_linear_small_m (cublasHandle_t h, int M, int N, int K, int act, gboolean with_bias,
                     int residual_mode, int offset, gboolean timed)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t nx = (size_t) M * K, nw = (size_t) N * K, ny = (size_t) M * N;
  float *x = g_malloc ((nx + 1) * sizeof (float)), *w = g_malloc (nw * sizeof (float));
  float *bias = g_malloc (N * sizeof (float)), *res = g_malloc ((ny + 1) * sizeof (float));
  float *ref = g_malloc (MAX (ny, 1) * sizeof (float));
  fill_uniform (r, x, nx + 1, -1.0, 1.0);
  fill_uniform (r, w, nw, -1.0, 1.0);
  fill_uniform (r, bias, N, -1.0, 1.0);
  fill_uniform (r, res, ny + 1, -1.0, 1.0);
  float *dx = dev_from (x, nx + 1), *dw = dev_from (w, nw), *db = dev_from (bias, N);
  float *dres = dev_from (res, ny + 1), *dy = dev_alloc (ny + 1);
  const float *res_host = residual_mode == 2 ? res + offset : res;
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    const Sam2CudaHalf type = halves[t];
    uint16_t *dw16 = to16 (type, dw, nw);
    float *xr = rounded16 (type, x + offset, nx), *wr = rounded16 (type, w, nw);
    cpu->ops->matmul_nt (cpu, xr, wr, M, N, K, ref);
    sam2_cpu_bias_act (ref, M, N, with_bias ? bias : NULL, (Sam2Act) act);
    if (residual_mode != 0)
      for (size_t i = 0; i < ny; i++)
        ref[i] += res_host[i];
    float *y = dy + offset;
    const float *residual = NULL;
    if (residual_mode == 2) {
      /* y holds the residual: the layer adds onto it */
      CUDA_OK (cudaMemcpy (dy, dres, (ny + 1) * sizeof (float), cudaMemcpyDeviceToDevice));
      residual = y;
    } else {
      dev_poison (dy, ny + 1);
      residual = residual_mode == 1 ? dres : NULL;
    }
    SmallMRun g = { dx + offset, NULL, M, K, type, dw16, N, with_bias ? db : NULL, act, residual,
                    y };
    const int st = run_linear_small_m (&g);
    char what[128];
    g_snprintf (what, sizeof what, "linear_16_small_m %s %dx%dx%d %s%s%s off %d",
                half_name (type), M, N, K, act_names[act], with_bias ? " +bias" : "",
                residual_mode == 1 ? " +residual"
                : residual_mode == 2 ? " +residual in place" : "", offset);
    check (what, seed, st, y, ref, ny, gemm_rounded_bound (type));
    if (residual_mode != 2) {
      /* x + addend (the decoder's positional encodings) summed as read: the floats of the layer
       * run on sam2_cuda_add's sum */
      float *dsum = dev_alloc (nx + 1), *dsum_out = dev_alloc (ny + 1);
      float *addend = g_malloc ((nx + 1) * sizeof (float));
      fill_uniform (r, addend, nx + 1, -1.0, 1.0);
      float *dadd = dev_from (addend, nx + 1);
      g_free (addend);
      int st2 = sam2_cuda_add (dsum + offset, dx + offset, dadd + offset, nx, stream);
      SmallMRun ga = g;
      ga.x = dsum + offset;
      ga.y = dsum_out + offset;
      dev_poison (dsum_out, ny + 1);
      if (st2 == SAM2_CUDA_OK)
        st2 = run_linear_small_m (&ga);
      CUDA_OK (cudaStreamSynchronize (stream));
      float *want = host_from_dev (dsum_out + offset, ny);
      ga.x = dx + offset;
      ga.x_addend = dadd + offset;
      ga.y = y;
      dev_poison (dy, ny + 1);
      if (st2 == SAM2_CUDA_OK)
        st2 = run_linear_small_m (&ga);
      char what_sum[128];
      g_snprintf (what_sum, sizeof what_sum, "linear_16_small_m %s %dx%dx%d x + addend off %d",
                  half_name (type), M, N, K, offset);
      check (what_sum, seed, st2, y, want, ny, 0.0);
      g_free (want);
      if (residual_mode == 0)
        check_norm_linear_small_m (&g, dadd + offset, seed);
      cudaFree (dsum);
      cudaFree (dsum_out);
      cudaFree (dadd);
    }
    if (timed && (type == SAM2_CUDA_F16 || !quick) && st == SAM2_CUDA_OK && residual_mode == 0) {
      uint16_t *dx16 = NULL;
      CUDA_OK (cudaMalloc ((void **) &dx16, nx * 2));
      SmallMCublasRun g2 = { h, type, dx + offset, dx16, M, K, dw16, N, db, dy };
      const double ms = time_ms (run_linear_small_m, &g, 5);
      const double ms_cublas = time_ms (run_small_m_cublas, &g2, 5);
      printf ("time %-58s %.4f ms (conversion + GemmEx + bias pass %.4f ms)\n", what, ms,
              ms_cublas);
      cudaFree (dx16);
    }
    cudaFree (dw16);
    g_free (xr);
    g_free (wr);
  }
  cudaFree (dx);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dres);
  cudaFree (dy);
  g_free (x);
  g_free (w);
  g_free (bias);
  g_free (res);
  g_free (ref);
  g_rand_free (r);
}

/* sam2_cuda_gemm_16_bias_nt in each format against the CPU product of the operands rounded to it
 * plus bias and residual: bias alone (D poisoned), bias + a residual in another buffer, bias +
 * the residual accumulated in place, the residual alone, and D one float past an aligned base
 * (cuBLASLt must then pick an algorithm for 4-byte alignment, or say UNSUPPORTED, which the
 * backend answers with its GemmEx path). */
static void
test_gemm_16_bias (cublasHandle_t h, cublasLtHandle_t lt, void *lt_ws, int M, int N, int K,
                   gboolean timed)
{
  if (skip_big ("gemm_16_bias", (size_t) M * N * K / 8))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t na = (size_t) M * K, nb = (size_t) N * K, nc = (size_t) M * N;
  float *A = g_malloc (na * sizeof (float)), *B = g_malloc (nb * sizeof (float));
  float *bias = g_malloc (N * sizeof (float)), *R = g_malloc (nc * sizeof (float));
  float *prod = g_malloc (nc * sizeof (float)), *ref = g_malloc (nc * sizeof (float));
  fill_uniform (r, A, na, -1.0, 1.0);
  fill_uniform (r, B, nb, -1.0, 1.0);
  fill_uniform (r, bias, N, -1.0, 1.0);
  fill_uniform (r, R, nc, -1.0, 1.0);
  float *dA = dev_from (A, na), *dB = dev_from (B, nb), *dbias = dev_from (bias, N);
  float *dR = dev_from (R, nc), *dD = dev_alloc (nc + 1);

  enum { BIAS, BIAS_RESIDUAL, BIAS_IN_PLACE, RESIDUAL_IN_PLACE, BIAS_MISALIGNED, N_CASES };
  static const char *names[N_CASES] = { "bias", "bias + residual", "bias + residual in place",
                                        "residual in place", "bias, D misaligned" };
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    const Sam2CudaHalf type = halves[t];
    uint16_t *dA16 = to16 (type, dA, na), *dB16 = to16 (type, dB, nb);
    float *Ar = rounded16 (type, A, na), *Br = rounded16 (type, B, nb);
    cpu->ops->matmul_nt (cpu, Ar, Br, M, N, K, prod);
    for (int c = 0; c < N_CASES; c++) {
      const gboolean with_bias = c != RESIDUAL_IN_PLACE;
      const gboolean with_res = c == BIAS_RESIDUAL || c == BIAS_IN_PLACE
                                || c == RESIDUAL_IN_PLACE;
      float *D = dD + (c == BIAS_MISALIGNED ? 1 : 0);
      for (size_t i = 0; i < nc; i++)
        ref[i] = prod[i] + (with_bias ? bias[i % N] : 0.0f) + (with_res ? R[i] : 0.0f);
      if (c == BIAS_IN_PLACE || c == RESIDUAL_IN_PLACE)
        CUDA_OK (cudaMemcpy (D, R, nc * sizeof (float), cudaMemcpyHostToDevice));
      else
        dev_poison (dD, nc + 1);
      const float *C = !with_res ? NULL : c == BIAS_RESIDUAL ? dR : D;
      GemmBiasRun g = { lt, lt_ws, type, dA16, dB16, M, N, K, with_bias ? dbias : NULL,
                        with_res ? 1.0f : 0.0f, C, D };
      const int st = run_gemm_16_bias (&g);
      char what[128];
      g_snprintf (what, sizeof what, "gemm_16_bias_nt %s %dx%dx%d %s", half_name (type), M, N,
                  K, names[c]);
      /* cuBLASLt may offer no algorithm for rows that are not 16-byte multiples or for D off its
       * alignment; the backend then runs GemmEx and a bias pass. SAM2's shapes must run. */
      const gboolean may_refuse = c == BIAS_MISALIGNED || K % 8 != 0 || N % 4 != 0;
      if (st == SAM2_CUDA_UNSUPPORTED && may_refuse)
        printf ("note %-58s UNSUPPORTED by cuBLASLt: the backend's GemmEx path runs it\n", what);
      else
        check (what, seed, st, D, ref, nc, gemm_rounded_bound (type));
      if (timed && c == BIAS) {
        double ms_lt = time_ms (run_gemm_16_bias, &g, 5);
        GemmThenBiasRun g2 = { h, type, dA16, dB16, M, N, K, dbias, dD };
        double ms_sep = time_ms (run_gemm_16_then_bias, &g2, 5);
        printf ("time %-58s %.3f ms (GemmEx + bias pass %.3f ms)\n", what, ms_lt, ms_sep);
      }
    }
    /* the 16-bit output, with and without bias: the float output's bits rounded */
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      GemmBiasRun g = { lt, lt_ws, type, dA16, dB16, M, N, K, with_bias ? dbias : NULL, 0.0f,
                        NULL, dD };
      const int st_f = run_gemm_16_bias (&g);
      uint16_t *want = to16 (type, dD, nc), *dD16 = NULL;
      CUDA_OK (cudaMalloc ((void **) &dD16, nc * 2));
      CUDA_OK (cudaMemset (dD16, 0xff, nc * 2));
      const int st = sam2_cuda_gemm_16_bias_nt_to16 (lt, type, dA16, dB16, M, N, K,
                                                      with_bias ? dbias : NULL, dD16, stream,
                                                      lt_ws, SAM2_CUDA_LT_WORKSPACE_BYTES);
      char what[128], detail[96];
      g_snprintf (what, sizeof what, "gemm_16_bias_nt_to16 %s %dx%dx%d%s", half_name (type), M,
                  N, K, with_bias ? " bias" : "");
      if (st == SAM2_CUDA_UNSUPPORTED || st_f == SAM2_CUDA_UNSUPPORTED) {
        printf ("note %-58s UNSUPPORTED by cuBLASLt: the backend keeps qkv's float output\n",
                what);
      } else {
        uint16_t *a = g_malloc (nc * 2), *b = g_malloc (nc * 2);
        CUDA_OK (cudaStreamSynchronize (stream));
        CUDA_OK (cudaMemcpy (a, dD16, nc * 2, cudaMemcpyDeviceToHost));
        CUDA_OK (cudaMemcpy (b, want, nc * 2, cudaMemcpyDeviceToHost));
        size_t differ = 0;
        for (size_t i = 0; i < nc; i++)
          differ += a[i] != b[i];
        g_snprintf (detail, sizeof detail, "status %d %d  %zu of %zu differ from the float "
                    "output rounded", st_f, st, differ, nc);
        report (st == SAM2_CUDA_OK && st_f == SAM2_CUDA_OK && differ == 0, what, seed, detail);
        g_free (a);
        g_free (b);
      }
      cudaFree (want);
      cudaFree (dD16);
    }
    cudaFree (dA16);
    cudaFree (dB16);
    g_free (Ar);
    g_free (Br);
  }
  cudaFree (dA);
  cudaFree (dB);
  cudaFree (dbias);
  cudaFree (dR);
  cudaFree (dD);
  g_free (A);
  g_free (B);
  g_free (bias);
  g_free (R);
  g_free (prod);
  g_free (ref);
  g_rand_free (r);
}

static void
test_gemm (cublasHandle_t h, cublasLtHandle_t lt, void *lt_ws, int M, int N, int K, gboolean timed)
{
  if (skip_big ("gemm", (size_t) M * N * K / 8))
    return;
  guint32 seed;
  GRand *r = case_rand (&seed);
  const size_t na = (size_t) M * K, nb = (size_t) N * K, nc = (size_t) M * N;
  float *A = g_malloc (na * sizeof (float)), *B = g_malloc (nb * sizeof (float));
  float *C0 = g_malloc (nc * sizeof (float)), *ref = g_malloc (nc * sizeof (float));
  fill_uniform (r, A, na, -1.0, 1.0);
  fill_uniform (r, B, nb, -1.0, 1.0);
  fill_uniform (r, C0, nc, -1.0, 1.0);
  float *dA = dev_from (A, na), *dB = dev_from (B, nb), *dC = dev_alloc (nc);
  char what[128];
  double ms;

  /* FP32, beta 0 into a poisoned C, then beta 1 onto C0 */
  for (int with_beta = 0; with_beta <= 1; with_beta++) {
    cpu->ops->matmul_nt (cpu, A, B, M, N, K, ref);
    if (with_beta) {
      for (size_t i = 0; i < nc; i++)
        ref[i] += C0[i];
      CUDA_OK (cudaMemcpy (dC, C0, nc * sizeof (float), cudaMemcpyHostToDevice));
    } else {
      dev_poison (dC, nc);
    }
    GemmRun g = { h, dA, dB, M, N, K, with_beta ? 1.0f : 0.0f, dC, FALSE, SAM2_CUDA_F16 };
    int st = run_gemm (&g);
    g_snprintf (what, sizeof what, "gemm_f32_nt %dx%dx%d beta %d", M, N, K, with_beta);
    check (what, seed, st, dC, ref, nc, GEMM_F32_REL_L2);
    if (timed && with_beta == 0 && (ms = time_ms (run_gemm, &g, 5)) > 0)
      printf ("time %-58s %.3f ms  %.1f TFLOP/s\n", what, ms, 2.0 * M * N * K / ms / 1e9);
  }
  float *ref_f32 = g_memdup2 (ref, nc * sizeof (float));   /* A B^T + C0 of the FP32 operands */

  /* 16-bit operands of each format, FP32 C with beta 1: against the product of the rounded
   * operands, then against the FP32 operands */
  for (size_t t = 0; t < G_N_ELEMENTS (halves); t++) {
    const Sam2CudaHalf type = halves[t];
    uint16_t *dA16 = to16 (type, dA, na), *dB16 = to16 (type, dB, nb);
    float *Ar = rounded16 (type, A, na), *Br = rounded16 (type, B, nb);
    cpu->ops->matmul_nt (cpu, Ar, Br, M, N, K, ref);
    for (size_t i = 0; i < nc; i++)
      ref[i] += C0[i];
    CUDA_OK (cudaMemcpy (dC, C0, nc * sizeof (float), cudaMemcpyHostToDevice));
    GemmRun g = { h, dA16, dB16, M, N, K, 1.0f, dC, TRUE, type };
    int st = run_gemm (&g);
    g_snprintf (what, sizeof what, "gemm_16_nt %s %dx%dx%d beta 1 (rounded operands)",
                half_name (type), M, N, K);
    check (what, seed, st, dC, ref, nc, gemm_rounded_bound (type));
    g_snprintf (what, sizeof what, "gemm_16_nt %s %dx%dx%d beta 1 (fp32 operands)",
                half_name (type), M, N, K);
    check (what, seed, st, dC, ref_f32, nc,
           type == SAM2_CUDA_BF16 ? GEMM_BF16_REL_L2 : GEMM_F16_REL_L2);
    if (timed) {
      g.beta = 0.0f;
      g_snprintf (what, sizeof what, "gemm_16_nt %s %dx%dx%d", half_name (type), M, N, K);
      if ((ms = time_ms (run_gemm, &g, 5)) > 0)
        printf ("time %-58s %.3f ms  %.1f TFLOP/s\n", what, ms, 2.0 * M * N * K / ms / 1e9);
    }
    cudaFree (dA16);
    cudaFree (dB16);
    g_free (Ar);
    g_free (Br);
  }

  /* BF16 Lt baseline: its bf16 output against the FP32 product of the rounded operands */
  uint16_t *dAb = to16 (SAM2_CUDA_BF16, dA, na), *dBb = to16 (SAM2_CUDA_BF16, dB, nb);
  uint16_t *dCb = NULL;
  float *Ar = rounded16 (SAM2_CUDA_BF16, A, na), *Br = rounded16 (SAM2_CUDA_BF16, B, nb);
  cpu->ops->matmul_nt (cpu, Ar, Br, M, N, K, ref);
  CUDA_OK (cudaMalloc ((void **) &dCb, nc * 2));
  CUDA_OK (cudaMemset (dCb, 0xff, nc * 2));
  int st = sam2_cuda_gemm_bf16_nt (lt, dAb, dBb, M, N, K, dCb, stream, lt_ws);
  CUDA_OK (cudaStreamSynchronize (stream));
  uint16_t *cb = g_malloc (nc * 2);
  float *cf = g_malloc (nc * sizeof (float));
  CUDA_OK (cudaMemcpy (cb, dCb, nc * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < nc; i++)
    cf[i] = host_bf16_to_f32 (cb[i]);
  const double rl = rel_l2 (cf, ref, nc);
  const size_t unwritten = count_unwritten (cf, ref, nc);
  char detail[128];
  g_snprintf (what, sizeof what, "gemm_bf16_nt %dx%dx%d (rounded operands)", M, N, K);
  if (st == SAM2_CUDA_UNSUPPORTED && K % 8 != 0) {
    /* a benchmark reference: cuBLASLt may offer no algorithm for rows that are not 16-byte
     * multiples, and the launcher says so instead of failing */
    printf ("note %-58s UNSUPPORTED by cuBLASLt (K %% 8 != 0): not counted\n", what);
  } else {
    g_snprintf (detail, sizeof detail, "status %d  rel_l2 %.3g <= %.2g  unwritten %zu", st, rl,
                GEMM_BF16_OUTPUT_REL_L2, unwritten);
    report (st == SAM2_CUDA_OK && rl <= GEMM_BF16_OUTPUT_REL_L2 && unwritten == 0, what, seed,
            detail);
  }

  g_free (cb);
  g_free (cf);
  g_free (Ar);
  g_free (Br);
  g_free (ref_f32);
  cudaFree (dCb);
  cudaFree (dAb);
  cudaFree (dBb);
  cudaFree (dA);
  cudaFree (dB);
  cudaFree (dC);
  g_free (A);
  g_free (B);
  g_free (C0);
  g_free (ref);
  g_rand_free (r);
}

/* Every half-precision launcher refuses a format that is neither FP16 nor BF16 with
 * SAM2_CUDA_UNSUPPORTED, on arguments that are otherwise valid, and launches nothing (a stray
 * launch would fail on the stream, or write outside). */
static void
test_half_unsupported (cublasHandle_t h, cublasLtHandle_t lt, void *lt_ws)
{
  const Sam2CudaHalf bad = (Sam2CudaHalf) (SAM2_CUDA_BF16 + 1);
  float *d = dev_alloc (1024);
  uint16_t *d16 = NULL;
  CUDA_OK (cudaMalloc ((void **) &d16, 1024 * 2));
  const Sam2CudaRowWindows win = { 1, 4, 4, 2 };
  const Sam2CudaAttentionArgs a = {
    .batch = 1, .heads = 1, .head_dim = 8, .len_q = 4, .len_k = 4, .scale = 1.0f,
    .q = d, .q_ld = 8, .k = d, .k_ld = 8, .v = d, .v_ld = 8, .out = d + 512, .out_ld = 8,
  };
  const struct {
    const char *launcher;
    int status;
  } calls[] = {
    { "layer_norm_16", sam2_cuda_layer_norm_16 (d, 4, 8, d, d, 1e-6f, bad, d16, stream) },
    { "layer_norm_windows_16",
      sam2_cuda_layer_norm_windows_16 (d, &win, 8, d, d, 1e-6f, bad, d16, stream) },
    { "f32_to_16", sam2_cuda_f32_to_16 (d, 16, bad, d16, stream) },
    { "activation_to_16",
      sam2_cuda_activation_to_16 (SAM2_CUDA_ACT_GELU, d, 16, bad, d16, stream) },
    { "norm_operands_16", sam2_cuda_norm_operands_16 (d, 4, 8, NULL, d, bad, d16, NULL, stream) },
    { "window_partition_16", sam2_cuda_window_partition_16 (d, &win, 8, bad, d16, stream) },
    { "depth_to_space2x_norm_act_16",
      sam2_cuda_depth_to_space2x_norm_act_16 (d, 32, 2, 2, 8, NULL, NULL, NULL, 0.0f,
                                              SAM2_CUDA_ACT_NONE, NULL, bad, d16, stream) },
    { "max_pool_16", sam2_cuda_max_pool_16 (d16, 1, 4, 4, 8, 8, 2, bad, d16 + 512, stream) },
    { "attention_16", sam2_cuda_attention_16 (&a, bad, stream) },
    { "gemm_16_nt", sam2_cuda_gemm_16_nt (h, bad, d16, d16, 4, 4, 8, 0.0f, d) },
    { "linear_16_small_m", sam2_cuda_linear_16_small_m (d, NULL, 4, 8, bad, d16, 4, NULL,
                                                        SAM2_CUDA_ACT_NONE, NULL, d + 512,
                                                        stream) },
    { "gemm_16_bias_nt", sam2_cuda_gemm_16_bias_nt (lt, bad, d16, d16, 4, 4, 8, NULL, 0.0f, NULL,
                                                    d, stream, lt_ws,
                                                    SAM2_CUDA_LT_WORKSPACE_BYTES) },
    { "gemm_16_bias_nt_to16", sam2_cuda_gemm_16_bias_nt_to16 (lt, bad, d16, d16, 4, 4, 8, NULL,
                                                              d16 + 512, stream, lt_ws,
                                                              SAM2_CUDA_LT_WORKSPACE_BYTES) },
  };
  const cudaError_t e = cudaStreamSynchronize (stream);
  for (size_t i = 0; i < G_N_ELEMENTS (calls); i++) {
    char what[96], detail[96];
    g_snprintf (what, sizeof what, "%s of format %d is UNSUPPORTED", calls[i].launcher, (int) bad);
    g_snprintf (detail, sizeof detail, "status %d  stream %s", calls[i].status,
                cudaGetErrorString (e));
    report (calls[i].status == SAM2_CUDA_UNSUPPORTED && e == cudaSuccess, what, 0, detail);
  }
  cudaFree (d);
  cudaFree (d16);
}

/* ---- frame preprocessing ------------------------------------------------------------------ */

static void *
dev_bytes_from (const void *host, size_t bytes)
{
  void *d = NULL;
  CUDA_OK (cudaMalloc (&d, MAX (bytes, 1)));
  CUDA_OK (cudaMemcpy (d, host, bytes, cudaMemcpyHostToDevice));
  return d;
}

/* sam2_cuda_preprocess against sam2_preprocess: the same floats bit for bit (integer resize,
 * the same normalisation table), from a frame with padding at the end of each row. */
static void
test_preprocess (int W, int H, int out_w, int out_h, Sam2PixelFormat format)
{
  guint32 seed;
  GRand *r = case_rand (&seed);
  const int bpp = sam2_pixel_format_bpp (format), stride = W * bpp + 3;
  guint8 *frame = g_malloc ((size_t) stride * H);
  for (size_t i = 0; i < (size_t) stride * H; i++)
    frame[i] = (guint8) g_rand_int_range (r, 0, 256);
  GError *error = NULL;
  Sam2Resampler *rs = sam2_resampler_new (W, H, out_w, out_h, &error);
  g_assert_no_error (error);
  const size_t n = (size_t) 3 * out_w * out_h;
  float *ref = host_nan (n);
  sam2_preprocess (rs, frame, stride, format, ref);

  Sam2ResampleAxis h, v;
  sam2_resampler_get_axes (rs, &h, &v);
  void *d_frame = dev_bytes_from (frame, (size_t) stride * H);
  void *d_h_start = dev_bytes_from (h.start, sizeof (int) * h.out_size);
  void *d_h_weights = dev_bytes_from (h.weights, sizeof (gint16) * h.out_size * h.n_taps);
  void *d_v_start = dev_bytes_from (v.start, sizeof (int) * v.out_size);
  void *d_v_count = dev_bytes_from (v.count, sizeof (int) * v.out_size);
  void *d_v_weights = dev_bytes_from (v.weights, sizeof (gint16) * v.out_size * v.n_taps);
  void *d_lut = dev_bytes_from (sam2_resampler_get_normalize_lut (rs), sizeof (float) * 768);
  void *d_tmp = NULL;
  CUDA_OK (cudaMalloc (&d_tmp, (size_t) H * out_w * 3));
  float *d_out = dev_alloc (n);
  dev_poison (d_out, n);
  const Sam2CudaPreprocessArgs args = {
    .in_w = W, .in_h = H, .out_w = out_w, .out_h = out_h, .stride = (size_t) stride, .bpp = bpp,
    .red = sam2_pixel_format_is_bgr (format) ? 2 : 0, .h_taps = h.count[0], .h_stride = h.n_taps,
    .h_precision = h.precision, .h_start = d_h_start, .h_weights = d_h_weights,
    .v_taps = v.n_taps, .v_precision = v.precision, .v_start = d_v_start, .v_count = d_v_count,
    .v_weights = d_v_weights, .lut = d_lut,
  };
  const int st = sam2_cuda_preprocess (&args, d_frame, d_tmp, d_out, stream);
  char what[128];
  g_snprintf (what, sizeof what, "preprocess %dx%d -> %dx%d format %d", W, H, out_w, out_h,
              (int) format);
  check (what, seed, st, d_out, ref, n, 0.0);
  void *bufs[] = { d_frame, d_h_start, d_h_weights, d_v_start, d_v_count, d_v_weights, d_lut,
                   d_tmp, d_out };
  for (size_t i = 0; i < G_N_ELEMENTS (bufs); i++)
    cudaFree (bufs[i]);
  sam2_resampler_free (rs);
  g_free (frame);
  g_free (ref);
  g_rand_free (r);
}

/* ---- main ----------------------------------------------------------------------------------- */

int
main (void)
{
  int count = 0;
  quick = g_getenv ("SAM2_CUDA_OPS_QUICK") != NULL
          && g_strcmp0 (g_getenv ("SAM2_CUDA_OPS_QUICK"), "0") != 0;
  int st = sam2_cuda_device_count (&count);
  if (st != SAM2_CUDA_OK || count == 0) {
    printf ("skipped: no usable CUDA device (sam2_cuda_device_count: status %d, %d devices)\n",
            st, count);
    return 77;
  }
  struct cudaDeviceProp prop;
  CUDA_OK (cudaGetDeviceProperties (&prop, 0));
  printf ("device: %s (compute %d.%d)\n", prop.name, prop.major, prop.minor);
  if (sam2_cuda_init () != SAM2_CUDA_OK) {
    printf ("FAIL sam2_cuda_init\n");
    return 1;
  }
  CUDA_OK (cudaStreamCreateWithFlags (&stream, cudaStreamNonBlocking));
  cublasHandle_t h;
  cublasLtHandle_t lt;
  if (cublasCreate (&h) != CUBLAS_STATUS_SUCCESS
      || cublasSetStream (h, stream) != CUBLAS_STATUS_SUCCESS
      || cublasSetMathMode (h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS
      || cublasLtCreate (&lt) != CUBLAS_STATUS_SUCCESS) {
    printf ("FAIL cuBLAS setup\n");
    return 1;
  }
  void *lt_ws = NULL;
  CUDA_OK (cudaMalloc (&lt_ws, SAM2_CUDA_LT_WORKSPACE_BYTES));
  cpu = sam2_backend_cpu_new ();

  /* element-wise: odd and aligned shapes, the scalar path (offset 1), real MLP shapes */
  const int ew_shapes[][2] = { { 1, 1 }, { 3, 5 }, { 7, 33 }, { 17, 64 }, { 4096, 1536 },
                               { 1024, 4608 } };
  for (size_t s = 0; s < G_N_ELEMENTS (ew_shapes); s++)
    for (int act = 0; act <= SAM2_CUDA_ACT_SIGMOID; act++)
      for (int off = 0; off <= 1; off++) {
        const gboolean big = ew_shapes[s][0] * ew_shapes[s][1] > 100000;
        if (big && (off == 1 || (act != SAM2_CUDA_ACT_GELU && act != SAM2_CUDA_ACT_NONE)))
          continue;
        test_bias_act (ew_shapes[s][0], ew_shapes[s][1], act, TRUE, FALSE, off);
        if (!big)
          test_bias_act (ew_shapes[s][0], ew_shapes[s][1], act, FALSE, FALSE, off);
        test_bias_act (ew_shapes[s][0], ew_shapes[s][1], act, act != SAM2_CUDA_ACT_RELU, TRUE,
                       off);
      }
  const size_t act_sizes[] = { 0, 1, 3, 1001, 4096 * 1536 + 3 };
  for (size_t s = 0; s < G_N_ELEMENTS (act_sizes); s++)
    for (int act = 0; act <= SAM2_CUDA_ACT_SIGMOID; act++)
      for (int off = 0; off <= 1; off++)
        test_activation (act_sizes[s], act, off);
  const int add_shapes[][2] = { { 1, 1 }, { 5, 3 }, { 9, 12 }, { 4096, 384 }, { 65536, 96 } };
  for (size_t s = 0; s < G_N_ELEMENTS (add_shapes); s++)
    for (int off = 0; off <= 1; off++)
      for (int alias = 0; alias <= 1; alias++)
        test_add (add_shapes[s][0], add_shapes[s][1], off, alias);
  /* LayerNorm: C = 1, odd C, rows comparable to eps, real widths (tiny 96 .. large 1152, the
   * decoder's 256), large means */
  test_layer_norm (1, 1, 1e-6f, 0.0, FALSE);
  test_layer_norm (3, 7, 1e-6f, 0.0, FALSE);
  test_layer_norm (5, 33, 1.0f, 0.0, TRUE);
  test_layer_norm (65536, 96, 1e-6f, 0.0, FALSE);
  test_layer_norm (4096, 384, 1e-6f, 1000.0, TRUE);
  test_layer_norm (1024, 1152, 1e-6f, 100.0, FALSE);
  test_layer_norm (4096, 256, 1e-5f, 0.0, FALSE);
  /* 16-bit outputs of LayerNorm and activation: tiny stage 0's MLP, a tail, misaligned */
  test_outputs_16 (65536, 96, SAM2_CUDA_ACT_GELU, 0);
  test_outputs_16 (33, 37, SAM2_CUDA_ACT_GELU, 0);
  test_outputs_16 (5, 13, SAM2_CUDA_ACT_RELU, 1);
  /* ... and the decoder's keys' two operands after their norm: the real models' 64x64 x 256,
   * without the norm (a first layer with a mask prompt), a tail, misaligned */
  test_norm_operands_16 (4096, 256, TRUE, 0);
  test_norm_operands_16 (4096, 256, FALSE, 0);
  test_norm_operands_16 (7, 37, TRUE, 1);
  test_norm_operands_16 (256, 256, TRUE, 0);   /* sam2-mini-hash's keys: BF16 in quick mode too */
  /* ... and the upscaling's first step writing the second layer's operand: the real models'
   * 64x64 at 64 channels from the stacked rows (4 C + 256), a 16x16 map at 16, odd C with
   * a misaligned start, without the LayerNorm */
  test_depth_to_space_16 (64, 64, 64, TRUE, SAM2_CUDA_ACT_GELU, 0, 256);
  test_depth_to_space_16 (16, 16, 16, TRUE, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_16 (5, 3, 33, TRUE, SAM2_CUDA_ACT_GELU_TANH, 1, 3);
  test_depth_to_space_16 (7, 4, 32, FALSE, SAM2_CUDA_ACT_GELU, 1, 0);
  /* ... and partitioned into windows: tiny's stage 0 (8 on 256x256) and 2 (14 on 64x64, padded),
   * two images with padding on both edges, a window of 1 (the rows as they are), odd C */
  test_layer_norm_windows_16 (1, 256, 256, 96, 8);
  test_layer_norm_windows_16 (1, 64, 64, 384, 14);
  test_layer_norm_windows_16 (2, 10, 9, 33, 4);
  test_layer_norm_windows_16 (3, 7, 5, 16, 1);
  test_softmax (1, 1, 1.0);
  test_softmax (3, 17, 4.0);
  test_softmax (64, 4096, 20.0);
  test_softmax (7, 300, 80.0);

  /* windows: tiny stage 0 (8 on 256x256), 14 on 64x64 (padded to 70), 7 on 32x32 (padded), the
   * large 16 on 64x64, odd shapes and channels (scalar path) */
  test_windows (256, 256, 96, 8, 0);
  test_windows (64, 64, 384, 14, 0);
  test_windows (32, 32, 768, 7, 0);
  test_windows (64, 64, 576, 16, 0);
  test_windows (5, 3, 1, 4, 0);
  test_windows (7, 9, 3, 2, 1);
  test_windows (13, 11, 8, 5, 1);
  /* max_pool: q pooled out of qkv windows (ld 3 d), the skip projection, floor sizes */
  test_max_pool (1024, 8, 8, 192, 576, 2);
  test_max_pool (1, 256, 256, 192, 192, 2);
  test_max_pool (25, 14, 14, 768, 2304, 2);
  test_max_pool (2, 7, 5, 3, 5, 2);
  test_max_pool (3, 9, 9, 5, 11, 3);
  test_max_pool (1, 1, 1, 1, 1, 1);
  /* im2col: the patch embedding (3, 1024, 1024) k7 s4 p3; channels-last convolutions */
  test_im2col (TRUE, 3, 1024, 1024, 7, 7, 4, 3);
  test_im2col (TRUE, 2, 9, 11, 3, 3, 2, 1);
  test_im2col (TRUE, 1, 5, 5, 1, 1, 1, 0);
  test_im2col (FALSE, 256, 64, 64, 3, 3, 1, 1);
  test_im2col (FALSE, 5, 9, 7, 3, 3, 2, 1);
  test_im2col (FALSE, 4, 16, 16, 2, 2, 2, 0);
  test_im2col (FALSE, 3, 13, 13, 4, 4, 4, 0);
  test_im2col (FALSE, 1, 256, 256, 4, 4, 4, 0);
  /* upsampling: the FPN (32 -> 64 at 256 channels), the decoder's upscaling, odd */
  test_upsample (32, 32, 256, 0);
  test_upsample (64, 64, 64, 0);
  test_upsample (128, 128, 32, 0);
  test_upsample (3, 5, 7, 0);
  test_upsample (1, 1, 1, 1);
  test_upsample (4, 3, 8, 1);
  /* the decoder's upscaling steps (64 -> 128 at 64 channels with the LayerNorm and GELU, then
   * 128 -> 256 at 32 with GELU), smaller, odd C below and above a warp, misaligned */
  test_depth_to_space_norm_act (64, 64, 64, TRUE, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_norm_act (128, 128, 32, FALSE, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_norm_act (16, 16, 64, TRUE, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_norm_act (16, 16, 32, FALSE, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_norm_act (5, 3, 33, TRUE, SAM2_CUDA_ACT_GELU_TANH, 1, 0);
  test_depth_to_space_norm_act (3, 4, 7, TRUE, SAM2_CUDA_ACT_NONE, 0, 0);
  test_depth_to_space_norm_act (4, 3, 8, FALSE, SAM2_CUDA_ACT_RELU, 1, 0);
  test_depth_to_space_norm_act (1, 1, 1, TRUE, SAM2_CUDA_ACT_SILU, 1, 0);
  /* rows wider than 4 C (the decoder's upscale1 stacked with the final attention's v: 4 C + D),
   * float4 steps and not */
  test_depth_to_space_norm_act (16, 16, 64, TRUE, SAM2_CUDA_ACT_GELU, 0, 128);
  test_depth_to_space_norm_act (16, 16, 32, FALSE, SAM2_CUDA_ACT_GELU, 0, 64);
  test_depth_to_space_norm_act (5, 3, 8, FALSE, SAM2_CUDA_ACT_NONE, 0, 3);
  /* ... and the last step with the hypernetworks' product: the real models' 128x128 at 32
   * channels and 4 masks, the most masks, odd sizes (scalar path), one mask, padded rows */
  test_depth_to_space_matmul (128, 128, 32, 4, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_matmul (16, 16, 32, SAM2_CUDA_D2S_MATMUL_MAX_M, SAM2_CUDA_ACT_GELU, 0, 0);
  test_depth_to_space_matmul (5, 3, 7, 3, SAM2_CUDA_ACT_GELU_TANH, 1, 0);
  test_depth_to_space_matmul (4, 6, 8, 1, SAM2_CUDA_ACT_NONE, 0, 4);
  test_depth_to_space_matmul (3, 5, 12, 2, SAM2_CUDA_ACT_GELU, 0, 3);
  /* preprocessing: down and up in each axis, one axis unchanged (the reorder and the frame read
   * directly), every format */
  const int pre_sizes[][4] = { { 1920, 1080, 1024, 1024 }, { 160, 120, 1024, 1024 },
                               { 1024, 700, 1024, 1024 }, { 700, 1024, 1024, 1024 },
                               { 1024, 1024, 1024, 1024 }, { 3, 5, 256, 256 },
                               { 257, 255, 256, 256 } };
  const Sam2PixelFormat pre_formats[] = { SAM2_PIXEL_FORMAT_RGB, SAM2_PIXEL_FORMAT_BGR,
                                          SAM2_PIXEL_FORMAT_RGBA, SAM2_PIXEL_FORMAT_BGRX };
  for (size_t s = 0; s < G_N_ELEMENTS (pre_sizes); s++)
    for (size_t f = 0; f < G_N_ELEMENTS (pre_formats); f++)
      test_preprocess (pre_sizes[s][0], pre_sizes[s][1], pre_sizes[s][2], pre_sizes[s][3],
                       pre_formats[f]);

  /* attention */
  const AttnCase attn[] = {
    /* Hiera tiny at 1024: stage 0 windows (1024 x 64 tokens, d 96), stage 2 windows 14 (25
     * padded windows of 196), global (4096 x 4096, 4 heads), stage-start pooled q (16 vs 64) */
    { "attn tiny s0 window 1024x64 h1 d96", 1024, 1, 96, 64, 64, 0, 0, 0, 0, 0, TRUE, 0, TRUE },
    { "attn tiny s2 window 25x196 h4 d96", 25, 4, 96, 196, 196, 0, 0, 0, 0, 0, TRUE, 0, TRUE },
    { "attn tiny global 4096 h4 d96", 1, 4, 96, 4096, 4096, 0, 0, 0, 0, 0, TRUE, 0, TRUE },
    { "attn tiny s1 pooled q 1024x16v64 h2 d96", 1024, 2, 96, 16, 64, 192, 576, 576, 0, 0, FALSE,
      0, TRUE },
    /* Hiera large: global (8 heads, d 72), stage 2 windows 16 (256 tokens), stage 3 pooled */
    { "attn large global 4096 h8 d72", 1, 8, 72, 4096, 4096, 0, 0, 0, 0, 0, TRUE, 0, TRUE },
    { "attn large s2 window 16x256 h8 d72", 16, 8, 72, 256, 256, 0, 0, 0, 0, 0, TRUE, 0, TRUE },
    { "attn large s3 pooled q 16x64v256 h16 d72", 16, 16, 72, 64, 256, 1152, 3456, 3456, 0, 0,
      FALSE, 0, TRUE },
    /* base+ (d 56), mask decoder: image-to-token, token-to-image (the split-key kernel), self */
    { "attn base+ window 64x64 h2 d56", 64, 2, 56, 64, 64, 0, 0, 0, 0, 0, TRUE, 0, FALSE },
    { "attn decoder img->tok 4096v7 h8 d16", 1, 8, 16, 4096, 7, 128, 128, 128, 128, 0, FALSE, 0,
      TRUE },
    { "attn decoder tok->img 7v4096 h8 d16", 1, 8, 16, 7, 4096, 128, 128, 128, 128, 0, FALSE, 0,
      TRUE },
    { "attn decoder self 7v7 h8 d32", 1, 8, 32, 7, 7, 256, 256, 256, 256, 0, FALSE, 0, FALSE },
    { "attn decoder tok->img 2x6v4096 h8 d32 gaps", 2, 8, 32, 6, 4096, 260, 264, 268, 272, 3,
      FALSE, 0, FALSE },
    /* edges: len 1, odd head dims (scalar loads), padded ld, gaps between sequences, misaligned
     * bases (scalar path), max head_dim */
    { "attn len_q 1 len_k 1 d1", 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, FALSE, 0, FALSE },
    { "attn 3x(5v70) h3 d13 ld+3 gaps", 3, 3, 13, 5, 70, 42, 45, 47, 41, 2, FALSE, 0, FALSE },
    { "attn 2x(3v1000) h2 d13 split-key scalar", 2, 2, 13, 3, 1000, 29, 31, 26, 33, 1, FALSE, 0,
      FALSE },
    { "attn 2x(9v300) h1 d30 split-key", 2, 1, 30, 9, 300, 0, 0, 0, 0, 0, FALSE, 0, FALSE },
    { "attn 2x(130v67) h2 d33", 2, 2, 33, 130, 67, 0, 0, 0, 0, 1, FALSE, 0, FALSE },
    { "attn 1x(65v129) h2 d128", 1, 2, 128, 65, 129, 0, 0, 0, 0, 0, FALSE, 0, FALSE },
    { "attn 3x(100v100) h2 d100 misaligned", 3, 2, 100, 100, 100, 0, 0, 0, 0, 1, FALSE, 1, FALSE },
    { "attn 2x(64v64) h4 d96 qkv misaligned", 2, 4, 96, 64, 64, 0, 0, 0, 0, 0, TRUE, 2, FALSE },
    /* Hiera's stage 3 windows (7 x 7 tokens, packed q, k, v), aligned: the 16-bit inputs run */
    { "attn 3x(49v49) h2 d96 qkv", 3, 2, 96, 49, 49, 0, 0, 0, 0, 0, TRUE, 0, FALSE },
    { "attn 2x(17v5) h2 d8", 2, 2, 8, 17, 5, 0, 0, 0, 0, 0, FALSE, 0, FALSE },
    /* FP16 v2's wide blocks (len_q > 64: 128 queries, prefetch): a last tile of one query (7 of
     * 8 warps idle), head_dim 36 (zero columns 36..47), padded ld, gaps, a partial key tile;
     * and a single key */
    { "attn 2x(129v300) h2 d36 ld+4 gaps", 2, 2, 36, 129, 300, 76, 80, 84, 88, 2, FALSE, 0,
      FALSE },
    { "attn 1x(300v1) h1 d4", 1, 1, 4, 300, 1, 0, 0, 0, 0, 0, FALSE, 0, FALSE },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (attn); i++)
    test_attention (&attn[i]);
  test_attention_unsupported ();

  /* GEMMs: edges, Hiera tiny stage 0 qkv (65536 x 288 x 96), stage 2 qkv, large stage 3 MLP */
  test_conversions (100000);
  test_conversions (99999);   /* a tail of 3 after the 4-wide steps */
  test_gemm (h, lt, lt_ws, 1, 1, 1, FALSE);
  test_gemm (h, lt, lt_ws, 7, 5, 3, FALSE);
  test_gemm (h, lt, lt_ws, 33, 17, 65, FALSE);
  test_gemm (h, lt, lt_ws, 65536, 288, 96, TRUE);
  test_gemm (h, lt, lt_ws, 4096, 1152, 384, TRUE);
  test_gemm (h, lt, lt_ws, 1024, 4608, 1152, TRUE);
  /* the half-precision paths' linear for the decoder's token rows: its shapes (7 tokens;
   * 256 -> 2048 -> 256 MLP, 256 -> 128 attention projections, one-row hypernetworks), 16 rows,
   * edges */
  test_linear_small_m (h, 7, 256, 256, SAM2_CUDA_ACT_NONE, TRUE, 0, 0, TRUE);
  test_linear_small_m (h, 7, 2048, 256, SAM2_CUDA_ACT_RELU, TRUE, 0, 0, TRUE);
  test_linear_small_m (h, 7, 256, 2048, SAM2_CUDA_ACT_NONE, TRUE, 2, 0, FALSE);
  test_linear_small_m (h, 7, 128, 256, SAM2_CUDA_ACT_NONE, TRUE, 0, 0, TRUE);
  test_linear_small_m (h, 1, 32, 256, SAM2_CUDA_ACT_RELU, TRUE, 0, 0, FALSE);
  test_linear_small_m (h, 16, 256, 256, SAM2_CUDA_ACT_GELU, TRUE, 0, 0, FALSE);
  test_linear_small_m (h, 9, 256, 256, SAM2_CUDA_ACT_NONE, FALSE, 1, 0, FALSE);
  test_linear_small_m (h, 5, 13, 37, SAM2_CUDA_ACT_SIGMOID, TRUE, 1, 1, FALSE);
  test_linear_small_m (h, 3, 40, 64, SAM2_CUDA_ACT_NONE, TRUE, 2, 1, FALSE);
  test_linear_small_m (h, 1, 1, 1, SAM2_CUDA_ACT_NONE, TRUE, 0, 0, FALSE);
  /* misaligned rows (the normalised variant reads its shared copy 16 bytes at a time), K not a
   * multiple of 8 */
  test_linear_small_m (h, 6, 24, 48, SAM2_CUDA_ACT_RELU, TRUE, 0, 1, FALSE);
  test_linear_small_m (h, 4, 9, 37, SAM2_CUDA_ACT_GELU, FALSE, 0, 1, FALSE);
  /* the half-precision paths' GEMM with cuBLASLt's bias epilogue: edges, tiny stage 0 qkv,
   * stage 2 fc1 */
  test_gemm_16_bias (h, lt, lt_ws, 1, 1, 1, FALSE);
  test_gemm_16_bias (h, lt, lt_ws, 7, 5, 3, FALSE);
  test_gemm_16_bias (h, lt, lt_ws, 33, 17, 64, FALSE);
  test_gemm_16_bias (h, lt, lt_ws, 65536, 288, 96, TRUE);
  test_gemm_16_bias (h, lt, lt_ws, 4096, 1536, 384, TRUE);
  test_half_unsupported (h, lt, lt_ws);

  sam2_backend_free (cpu);
  cudaFree (lt_ws);
  cublasLtDestroy (lt);
  cublasDestroy (h);
  cudaStreamDestroy (stream);
  if (n_failed == 0)
    printf ("PASS test-cuda-ops: %d checks\n", n_passed);
  else
    printf ("FAIL test-cuda-ops: %d of %d checks failed\n", n_failed, n_passed + n_failed);
  return n_failed == 0 ? 0 : 1;
}
