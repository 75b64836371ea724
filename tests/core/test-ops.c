/* test-ops.c: every op of the CPU backend, called through its op table, against naive float64
 * references written here; the float approximations of simd-math.h against libm; and the
 * vectorised element-wise kernels against their scalar forms.
 *
 * Inputs are pseudo-random (g_rand, fixed seeds) and every op runs over several shapes chosen to
 * hit the edges: sizes of 1, odd sizes, sizes that are not multiples of the SIMD width, len_q !=
 * len_k, rows further apart than their width, several sequences and heads, windows that do not
 * divide the map, floor pooling, padded and strided convolutions. Buffers go through the table's
 * alloc / upload / download, exactly sized (valgrind sees any overrun), and outputs start as NaN
 * so an element an op forgets to write fails the comparison. Padding columns and gaps between
 * sequences of the attention inputs hold NaN too, so reading them poisons the output.
 *
 * Run with --verbose to see every measured error next to its bound. */
#include "test-support.h"

#include "attention-cpu.h"
#include "backend.h"
#include "ops-cpu.h"
#include "simd-math.h"

#include <float.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <string.h>

/* ---- bounds ------------------------------------------------------------------------------- */

/* GEMM-based ops (linear with any activation or residual, matmul_nt, the im2col product) against
 * float64: each output is a float32 sum of K products whose rounding errors add up like a random
 * walk, relative L2 growing like 2^-24 sqrt(K); measured 3.1e-7 at K = 300, the largest K here
 * (the activations add a few ulp on top). A transposed weight, a missing or doubled bias, a
 * wrong activation constant or an off-by-one padding is an error of 1e-5 to 1. */
#define GEMM_REL_L2 1e-6

/* The BF16 precision's GEMM (x and W rounded to bfloat16, FP32 accumulation) against float64 over
 * the same rounded operands: products of 8-bit significands are exact in FP32, so only the FP32
 * sums remain, the same random walk as FP32's (measured 1.2e-7). An operand left in FP32 or
 * rounded towards zero instead of to nearest is an error of ~1e-3; a wrong layout, of order 1. */
#define GEMM_BF16_ROUNDED_REL_L2 GEMM_REL_L2

/* Attention: two GEMMs (K = head_dim, then K = len_k over positive weights), the softmax's exp
 * approximation (2 ulp) and its float32 row sum; the output is a weighted mean of v, so its error
 * relative to its own size is the GEMM's grown by the cancellation of the mean: measured 4.1e-7
 * at len_k = 300 with a peaked softmax. */
#define ATTENTION_REL_L2 1e-6

/* Attention in the backend's BF16 precision (q, k, v and the softmax weights rounded to 8
 * significant bits, FP32 sums) against the same float64 reference: the bound of the CUDA
 * backend's BF16 attention (tests/cuda/test-cuda-ops.c), 8 times its FP16 bound of 3e-3 for a
 * unit roundoff 8 times FP16's; measured up to ~3e-3 here. A wrong lane, pair or padding is an
 * error of order 1. */
#define ATTENTION_BF16_REL_L2 2.4e-2
/* ... and against float64 over q, k and v rounded to bfloat16 as the kernel rounds them: what is
 * left is the softmax weights' own rounding to bfloat16 (2^-9 relative each, averaging over the
 * keys) and FP32 sums, measured up to 1.8e-3; twice that. */
#define ATTENTION_BF16_ROUNDED_REL_L2 4e-3
/* ... and at least this far from the unrounded float64 result: every case has random v, whose
 * rounding alone is ~1e-3 (measured 6.4e-4 at the least); an FP32 kernel left in place of the
 * BF16 one shows ~1e-7. */
#define ATTENTION_BF16_MIN_REL_L2 1e-5

/* LayerNorm: statistics in double, then three float32 roundings per element (the normalised
 * value, times weight, plus bias): measured 4.1e-8. Getting eps wrong by 10x (the test has rows
 * whose variance is comparable to eps), or dividing by C - 1, is an error >= 1e-4. */
#define LAYER_NORM_REL_L2 2e-7

/* simd-math.h against libm over the documented ranges. Cephes' expf is documented within 2 ulp
 * (2^-22 relative at the bottom of a binade, 2.4e-7); checked on every float of [-87, 88] it is
 * within 8.3e-8, so 2e-7 leaves room for another compiler's evaluation and still fails on a
 * wrong digit in the polynomial or the ln 2 split. Eigen's erf rational evaluated in float32 is
 * within 4.68e-7 (7.9 ulp of 1, at x = 3.2697; every float of [0, 4.5] checked), where Horner's
 * roundings add up; the rational itself, in double, is within 6.5e-8 of erf. */
#define EXP_MAX_REL 2e-7
#define ERF_MAX_ABS 5e-7

/* The activation op, element by element against float64 (identity and ReLU exactly):
 * |got - ref| <= ACT_MAX_REL |ref| + (per-activation absolute term) |x|. The relative term is a
 * few ulp (exp within 2 ulp, then one add, one division, one multiply). The absolute term is for
 * the GELUs at negative x, where 1 + erf(...) (or 1 + tanh(...)) cancels: the approximation's
 * absolute error (ERF_MAX_ABS, or tanhf's 1 ulp of 1) times 0.5 |x| is all that is left.
 * Measured: at most 0.68 of this bound (GELU). */
#define ACT_MAX_REL 5e-7
#define GELU_ABS_PER_X (0.5 * ERF_MAX_ABS)
#define GELU_TANH_ABS_PER_X (0.5 * 2.4e-7)

/* sam2_cpu_act_row (vectorised, built with its own flags and clones) against the scalar
 * sam2_cpu_act1: the same formulas, except that act_row's SiLU is x * sigmoid(x), one rounding
 * more than act1's x / (1 + e^-x) (measured 1 ulp; every other activation 0). */
#define ACT_VEC_MAX_ULPS 2

/* sam2_cpu_softmax_rows against float64, per element:
 *   |got - ref| <= (SOFTMAX_MAX_REL + SOFTMAX_ARG_REL |x - max|) ref + SOFTMAX_MAX_ABS.
 * SOFTMAX_MAX_REL: the exp's 2 ulp, the float32 row sum (its relative error grows like sqrt(N),
 * up to 4096 terms here) and one multiply. SOFTMAX_ARG_REL: x - max is itself a float32
 * subtraction, off by up to half an ulp of |x - max|, which exp turns into a relative error of
 * |x - max| 2^-24 (2e-6 at x - max = -35; it only matters for elements that are tiny anyway).
 * That term is reached (just above |x - max| = 64): the peaked rows sit at 0.9 of this bound.
 * SOFTMAX_MAX_ABS: below e^-87.3 sam2_exp_approx clamps to FLT_MIN instead of 0.
 * The rows sum to 1 within SOFTMAX_SUM_TOL (the float32 sum's error again). */
#define SOFTMAX_MAX_REL 5e-7
#define SOFTMAX_ARG_REL (FLT_EPSILON / 2)
#define SOFTMAX_MAX_ABS (2.0 * FLT_MIN)
#define SOFTMAX_SUM_TOL 5e-7

/* Data movement (window (un)partition, max_pool, im2col, depth_to_space2x) and single float32
 * additions (add, add_row, add_upsample2x, the depth_to_space2x addend) must match bit for bit:
 * the float64 sum of two floats rounded to float32 is their float32 sum (double rounding is
 * harmless for + since 53 >= 2 * 24 + 2), so there is no rounding left to differ. */

/* ---- helpers ------------------------------------------------------------------------------ */

static const Sam2Act all_acts[] = { SAM2_ACT_NONE, SAM2_ACT_GELU, SAM2_ACT_GELU_TANH,
                                    SAM2_ACT_RELU, SAM2_ACT_SILU, SAM2_ACT_SIGMOID };
static const char *act_names[] = { "none", "gelu", "gelu_tanh", "relu", "silu", "sigmoid" };

static double
act_ref (Sam2Act act, double x)
{
  switch (act) {
  case SAM2_ACT_NONE:
    return x;
  case SAM2_ACT_GELU:
    return 0.5 * x * (1.0 + erf (x / sqrt (2.0)));
  case SAM2_ACT_GELU_TANH:
    return 0.5 * x * (1.0 + tanh (sqrt (2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case SAM2_ACT_RELU:
    return x > 0.0 ? x : 0.0;
  case SAM2_ACT_SILU:
    return x / (1.0 + exp (-x));
  case SAM2_ACT_SIGMOID:
    return 1.0 / (1.0 + exp (-x));
  }
  g_assert_not_reached ();
}

static double
act_abs_per_x (Sam2Act act)
{
  return act == SAM2_ACT_GELU ? GELU_ABS_PER_X : act == SAM2_ACT_GELU_TANH ? GELU_TANH_ABS_PER_X
                                                                           : 0.0;
}

static float *
rand_floats (GRand *r, size_t n, double lo, double hi)
{
  float *x = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, lo, hi);
  return x;
}

static float *
nan_floats (size_t n)
{
  float *x = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    x[i] = NAN;
  return x;
}

/* A backend buffer holding `host` (n floats), or NaN when host is NULL. */
static float *
dev_new (Sam2Backend *b, const float *host, size_t n)
{
  float *d = b->ops->alloc (b, n);
  g_assert_nonnull (d);
  if (host != NULL) {
    g_assert_cmpint (b->ops->upload (b, d, host, n), ==, SAM2_STATUS_OK);
  } else {
    float *nan = nan_floats (n);
    g_assert_cmpint (b->ops->upload (b, d, nan, n), ==, SAM2_STATUS_OK);
    g_free (nan);
  }
  return d;
}

/* A host copy of a backend buffer. */
static float *
dev_get (Sam2Backend *b, const float *d, size_t n)
{
  float *h = g_new (float, MAX (n, 1));
  g_assert_cmpint (b->ops->download (b, h, d, n), ==, SAM2_STATUS_OK);
  return h;
}

static void
check_ok (const char *what, int status)
{
  if (status != SAM2_STATUS_OK) {
    g_test_message ("FAIL %s: status %d", what, status);
    g_test_fail ();
  }
}

static double
check_rel_l2 (const char *what, const float *got, const double *ref, size_t n, double tol)
{
  double num = 0.0, den = 0.0, worst = -1.0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double) got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    if (!(fabs (d) <= worst)) {
      worst = fabs (d);
      wi = i;
    }
  }
  const double err = sqrt (num) / fmax (sqrt (den), 1e-300);
  if (g_test_verbose ())
    g_test_message ("%-60s rel_l2 %.2e (bound %.0e, %.2f of it)", what, err, tol, err / tol);
  if (!(err <= tol)) {
    g_test_message ("FAIL %s: relative L2 %.3e > %.0e; worst element [%zu] %.9g, want %.9g", what,
                    err, tol, wi, n ? got[wi] : 0.0, n ? ref[wi] : 0.0);
    g_test_fail ();
  }
  return err;
}

static void
check_exact (const char *what, const float *got, const float *want, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (memcmp (&got[i], &want[i], sizeof (float)) != 0) {
      guint32 gb, wb;
      memcpy (&gb, &got[i], 4);
      memcpy (&wb, &want[i], 4);
      g_test_message ("FAIL %s: element %zu of %zu is %.9g (0x%08x), want %.9g (0x%08x)", what, i,
                      n, got[i], gb, want[i], wb);
      g_test_fail ();
      return;
    }
  if (g_test_verbose ())
    g_test_message ("%-60s exact (%zu floats)", what, n);
}

/* Distance in representable floats (+0 and -0 are the same point). */
static gint64
ulp_distance (float a, float b)
{
  gint32 ia, ib;
  memcpy (&ia, &a, 4);
  memcpy (&ib, &b, 4);
  gint64 oa = ia >= 0 ? ia : -(gint64) (ia & 0x7fffffff);
  gint64 ob = ib >= 0 ? ib : -(gint64) (ib & 0x7fffffff);
  return oa > ob ? oa - ob : ob - oa;
}

/* ---- linear ------------------------------------------------------------------------------- */

/* y (M, N) = x W^T + b in float64 */
static double *
linear_ref (const float *x, const float *w, const float *bias, int M, int K, int N)
{
  double *y = g_new (double, (size_t) M * N);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bias != NULL ? bias[n] : 0.0;
      for (int k = 0; k < K; k++)
        s += (double) x[(size_t) m * K + k] * w[(size_t) n * K + k];
      y[(size_t) m * N + n] = s;
    }
  return y;
}

/* The linear op of a backend in `precision` against float64 over the products of its operands as
 * that precision rounds them (FP32: as given; BF16: x and W rounded to bfloat16), within
 * `bound`. A fresh backend per shape: the BF16 backend keeps each weight's bf16 copy by address,
 * and a freed weight's address comes back. */
static void
check_linear (Sam2Precision precision, double bound)
{
  static const struct { int M, K, N; } shapes[] = {
    { 1, 1, 1 }, { 1, 7, 3 }, { 5, 3, 17 }, { 13, 33, 9 }, { 9, 48, 48 } /* square: W vs W^T */,
    { 64, 96, 288 }, { 100, 257, 31 }, { 37, 300, 65 },
  };
  GRand *r = g_rand_new_with_seed (1001);
  char what[256];
  const gboolean bf16 = precision == SAM2_PRECISION_BF16;

  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    Sam2Backend *b = sam2_backend_cpu_new_full (precision, NULL);
    const int M = shapes[si].M, K = shapes[si].K, N = shapes[si].N;
    const size_t ny = (size_t) M * N;
    /* weights sized so outputs are O(1): the activations see both their tails and their knee */
    const double a = 4.0 / sqrt (K);
    float *x = rand_floats (r, (size_t) M * K, -1, 1);
    float *w = rand_floats (r, (size_t) N * K, -a, a);
    float *xr = g_memdup2 (x, (size_t) M * K * sizeof (float));
    float *wr = g_memdup2 (w, (size_t) N * K * sizeof (float));
    for (size_t i = 0; bf16 && i < (size_t) M * K; i++)
      xr[i] = sam2_test_round_bf16 (x[i]);
    for (size_t i = 0; bf16 && i < (size_t) N * K; i++)
      wr[i] = sam2_test_round_bf16 (w[i]);
    float *bias = rand_floats (r, N, -1, 1);
    float *res = rand_floats (r, ny, -2, 2);
    float *dx = dev_new (b, x, (size_t) M * K), *dw = dev_new (b, w, (size_t) N * K);
    float *db = dev_new (b, bias, N), *dres = dev_new (b, res, ny);

    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      Sam2Linear l = { .name = "test", .in_features = K, .out_features = N, .weight = dw,
                       .bias = with_bias ? db : NULL };
      double *z = linear_ref (xr, wr, with_bias ? bias : NULL, M, K, N);
      double *ref = g_new (double, ny);

      for (guint ai = 0; ai < G_N_ELEMENTS (all_acts); ai++) {
        const Sam2Act act = all_acts[ai];
        float *dy = dev_new (b, NULL, ny);
        g_snprintf (what, sizeof what, "linear %s M%d K%d N%d bias %d act %s",
                    sam2_precision_to_string (precision), M, K, N, with_bias, act_names[act]);
        check_ok (what, b->ops->linear (b, &l, dx, M, dy, act, NULL));
        float *y = dev_get (b, dy, ny);
        for (size_t i = 0; i < ny; i++)
          ref[i] = act_ref (act, z[i]);
        check_rel_l2 (what, y, ref, ny, bound);
        g_free (y);
        b->ops->free (b, dy);
      }

      for (size_t i = 0; i < ny; i++)
        ref[i] = z[i] + res[i];
      /* residual in its own buffer, left untouched */
      float *dy = dev_new (b, NULL, ny);
      g_snprintf (what, sizeof what, "linear M%d K%d N%d bias %d + residual", M, K, N, with_bias);
      check_ok (what, b->ops->linear (b, &l, dx, M, dy, SAM2_ACT_NONE, dres));
      float *y = dev_get (b, dy, ny);
      check_rel_l2 (what, y, ref, ny, bound);
      float *res_after = dev_get (b, dres, ny);
      g_snprintf (what, sizeof what, "linear M%d K%d N%d residual unchanged", M, K, N);
      check_exact (what, res_after, res, ny);
      g_free (res_after);
      g_free (y);
      b->ops->free (b, dy);

      /* residual == y: accumulate in place */
      dy = dev_new (b, res, ny);
      g_snprintf (what, sizeof what, "linear M%d K%d N%d bias %d + residual in place", M, K, N,
                  with_bias);
      check_ok (what, b->ops->linear (b, &l, dx, M, dy, SAM2_ACT_NONE, dy));
      y = dev_get (b, dy, ny);
      check_rel_l2 (what, y, ref, ny, bound);
      g_free (y);
      b->ops->free (b, dy);

      g_free (ref);
      g_free (z);
    }
    b->ops->free (b, dx);
    b->ops->free (b, dw);
    b->ops->free (b, db);
    b->ops->free (b, dres);
    g_free (x);
    g_free (w);
    g_free (xr);
    g_free (wr);
    g_free (bias);
    g_free (res);
    sam2_backend_free (b);
  }
  g_rand_free (r);
}

static void
test_linear (void)
{
  check_linear (SAM2_PRECISION_FP32, GEMM_REL_L2);
}

static void
test_linear_bf16 (void)
{
  GError *error = NULL;
  if (!sam2_backend_cpu_supports (SAM2_PRECISION_BF16, &error)) {
    g_test_skip (error->message);
    g_error_free (error);
    return;
  }
  check_linear (SAM2_PRECISION_BF16, GEMM_BF16_ROUNDED_REL_L2);
}

/* ---- layer_norm --------------------------------------------------------------------------- */

static void
test_layer_norm (void)
{
  static const struct { int M, C; double eps; } shapes[] = {
    { 1, 1, 1e-6 }, { 1, 7, 1e-5 }, { 3, 96, 1e-6 }, { 17, 33, 1e-5 }, { 12, 256, 1e-6 },
    { 100, 768, 1e-6 },  /* 76800 floats: the parallel path */
  };
  /* row scales and offsets: variances from ~3e-7 (comparable to eps, so eps matters) to ~30,
   * means up to 1000 (where a one-pass variance would lose its digits) */
  static const double scales[] = { 1.0, 1e-3, 10.0, 0.3 };
  static const double means[] = { 0.0, 1000.0, -3.0, 0.5 };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1002);
  char what[256];

  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    const int M = shapes[si].M, C = shapes[si].C;
    const size_t n = (size_t) M * C;
    float *x = g_new (float, n);
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++)
        x[(size_t) m * C + c] = (float) (means[m % 4] + scales[(m / 4 + m) % 4] *
                                         g_rand_double_range (r, -1, 1));
    float *w = rand_floats (r, C, -2, 2), *bias = rand_floats (r, C, -1, 1);
    float *dw = dev_new (b, w, C), *db = dev_new (b, bias, C);
    Sam2LayerNorm ln = { .dim = C, .eps = (float) shapes[si].eps, .weight = dw, .bias = db };

    double *ref = g_new (double, n);
    for (int m = 0; m < M; m++) {
      const float *xr = x + (size_t) m * C;
      double mean = 0.0, var = 0.0;
      for (int c = 0; c < C; c++)
        mean += xr[c];
      mean /= C;
      for (int c = 0; c < C; c++)
        var += (xr[c] - mean) * (xr[c] - mean);
      var /= C;
      for (int c = 0; c < C; c++)
        ref[(size_t) m * C + c] = (xr[c] - mean) / sqrt (var + (double) ln.eps) * w[c] + bias[c];
    }

    float *dx = dev_new (b, x, n), *dy = dev_new (b, NULL, n);
    g_snprintf (what, sizeof what, "layer_norm M%d C%d eps %g", M, C, shapes[si].eps);
    check_ok (what, b->ops->layer_norm (b, &ln, dx, M, dy));
    float *y = dev_get (b, dy, n);
    check_rel_l2 (what, y, ref, n, LAYER_NORM_REL_L2);
    float *x_after = dev_get (b, dx, n);
    g_snprintf (what, sizeof what, "layer_norm M%d C%d input unchanged", M, C);
    check_exact (what, x_after, x, n);
    g_free (x_after);
    g_free (y);

    /* in place */
    g_snprintf (what, sizeof what, "layer_norm M%d C%d eps %g in place", M, C, shapes[si].eps);
    check_ok (what, b->ops->layer_norm (b, &ln, dx, M, dx));
    y = dev_get (b, dx, n);
    check_rel_l2 (what, y, ref, n, LAYER_NORM_REL_L2);
    g_free (y);

    b->ops->free (b, dx);
    b->ops->free (b, dy);
    b->ops->free (b, dw);
    b->ops->free (b, db);
    g_free (ref);
    g_free (x);
    g_free (w);
    g_free (bias);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- activation --------------------------------------------------------------------------- */

/* Inputs for the element-wise tests: uniform over [-lim, lim] after a few fixed points. */
static float *
act_inputs (GRand *r, size_t n, double lim)
{
  /* and beyond exp's range (silu(-3e38) was -1.8: exp's input is clamped at 88); not where
   * sigmoid or SiLU come out below the smallest normal float, which they give to an absolute
   * 1e-38 only */
  static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 1e-3f, -1e-3f, 1.0f, -1.0f,
                                   5.66f, -5.66f, 12.0f, -12.0f, 3.0f, -3.0f, 88.5f, 200.0f,
                                   -200.0f, 1e30f, -1e30f, -3e38f };
  float *x = rand_floats (r, n, -lim, lim);
  for (size_t i = 0; i < MIN (n, G_N_ELEMENTS (special)); i++)
    x[i] = special[i];
  return x;
}

static void
check_act (const char *what, Sam2Act act, const float *x, const float *got, size_t n)
{
  /* identity and ReLU have nothing to round: they must be exact */
  const gboolean exact = act == SAM2_ACT_NONE || act == SAM2_ACT_RELU;
  double worst = 0.0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    const double ref = act_ref (act, x[i]);
    const double err = fabs (got[i] - ref);
    const double ratio = exact ? (err == 0.0 ? 0.0 : INFINITY)
                               : err / (ACT_MAX_REL * fabs (ref) +
                                        act_abs_per_x (act) * fabs (x[i]) + 1e-38);
    if (!(ratio <= worst)) {
      worst = ratio;
      wi = i;
    }
  }
  if (g_test_verbose ())
    g_test_message ("%-60s max error %.2f of the bound", what, worst);
  if (!(worst <= 1.0)) {
    g_test_message ("FAIL %s: x = %.9g gives %.9g, want %.9g (%.2f times the bound)", what, x[wi],
                    got[wi], act_ref (act, x[wi]), worst);
    g_test_fail ();
  }
}

static void
test_activation (void)
{
  static const size_t sizes[] = { 1, 7, 16, 33, 4099, 70001 };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1003);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++)
    for (guint ai = 0; ai < G_N_ELEMENTS (all_acts); ai++) {
      const size_t n = sizes[si];
      const Sam2Act act = all_acts[ai];
      float *x = act_inputs (r, n, 12.0);
      float *dx = dev_new (b, x, n);
      g_snprintf (what, sizeof what, "activation %s n %zu", act_names[act], n);
      check_ok (what, b->ops->activation (b, act, dx, n));
      float *y = dev_get (b, dx, n);
      check_act (what, act, x, y, n);
      g_free (y);
      g_free (x);
      b->ops->free (b, dx);
    }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- add, add_row ------------------------------------------------------------------------- */

static void
test_add (void)
{
  static const size_t sizes[] = { 1, 5, 1000, 70001 };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1004);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++) {
    const size_t n = sizes[si];
    float *a = rand_floats (r, n, -3, 3), *c = rand_floats (r, n, -3, 3);
    float *sum = g_new (float, n), *twice = g_new (float, n);
    for (size_t i = 0; i < n; i++) {
      sum[i] = (float) ((double) a[i] + (double) c[i]);
      twice[i] = (float) ((double) a[i] + (double) a[i]);
    }
    /* 0: y separate, 1: y == a, 2: y == c, 3: y == a == c */
    for (int mode = 0; mode < 4; mode++) {
      float *da = dev_new (b, a, n), *dc = dev_new (b, c, n), *dy = dev_new (b, NULL, n);
      float *out = mode == 0 ? dy : mode == 2 ? dc : da;
      const float *second = mode == 3 ? da : dc;
      g_snprintf (what, sizeof what, "add n %zu alias mode %d", n, mode);
      check_ok (what, b->ops->add (b, out, da, second, n));
      float *y = dev_get (b, out, n);
      check_exact (what, y, mode == 3 ? twice : sum, n);
      g_free (y);
      if (mode == 0) {
        y = dev_get (b, da, n);
        check_exact ("add: a unchanged", y, a, n);
        g_free (y);
        y = dev_get (b, dc, n);
        check_exact ("add: c unchanged", y, c, n);
        g_free (y);
      }
      b->ops->free (b, da);
      b->ops->free (b, dc);
      b->ops->free (b, dy);
    }
    g_free (a);
    g_free (c);
    g_free (sum);
    g_free (twice);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

static void
test_add_row (void)
{
  static const struct { int M, C; } shapes[] = {
    { 1, 1 }, { 3, 7 }, { 1, 33 }, { 50, 17 }, { 300, 256 },
  };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1005);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    const int M = shapes[si].M, C = shapes[si].C;
    const size_t n = (size_t) M * C;
    float *x = rand_floats (r, n, -3, 3), *row = rand_floats (r, C, -3, 3);
    float *want = g_new (float, n);
    for (size_t i = 0; i < n; i++)
      want[i] = (float) ((double) x[i] + (double) row[i % C]);
    for (int in_place = 0; in_place <= 1; in_place++) {
      float *dx = dev_new (b, x, n), *drow = dev_new (b, row, C), *dy = dev_new (b, NULL, n);
      float *out = in_place ? dx : dy;
      g_snprintf (what, sizeof what, "add_row M%d C%d in place %d", M, C, in_place);
      check_ok (what, b->ops->add_row (b, out, dx, drow, M, C));
      float *y = dev_get (b, out, n);
      check_exact (what, y, want, n);
      g_free (y);
      b->ops->free (b, dx);
      b->ops->free (b, drow);
      b->ops->free (b, dy);
    }
    g_free (x);
    g_free (row);
    g_free (want);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- attention ---------------------------------------------------------------------------- */

typedef struct {
  int batch, heads, head_dim, len_q, len_k;
  gboolean q_in_qkv;   /* q, k, v from one (len, 3C) buffer at columns 0, C, 2C (len_q == len_k) */
  gboolean kv_fused;   /* k and v from one (len_k, 3C) buffer, q separate (query pooling) */
  int ld_pad;          /* floats after each row of every buffer (NaN) */
  int batch_gap;       /* floats between sequences (NaN) */
  double amp;          /* amplitude of q and k: how peaked the softmax is */
  gboolean int_qk;     /* q and k integers in [-amp, amp] and head_dim a square: the scores are
                          exact in float32 and span hundreds, so the max subtraction matters */
} AttentionCase;

static const AttentionCase attention_cases[] = {
  /* window attention: 7x7 windows, q k v straight from the qkv GEMM */
  { 4, 2, 16, 49, 49, TRUE, TRUE, 0, 0, 1.0 },
  /* query pooling: 8x8 windows whose q was pooled to 4x4 */
  { 3, 2, 8, 16, 64, FALSE, TRUE, 0, 0, 1.0 },
  /* one key: softmax of one element, out = v */
  { 2, 3, 5, 7, 1, FALSE, FALSE, 3, 5, 1.0 },
  /* global attention longer than the 128-query row block, with a partial last block */
  { 1, 2, 32, 300, 300, TRUE, TRUE, 0, 0, 1.0 },
  /* decoder token -> image and image -> token, odd head_dim, peaked softmax */
  { 1, 8, 16, 7, 300, FALSE, FALSE, 1, 0, 3.0 },
  { 2, 1, 3, 300, 7, FALSE, FALSE, 2, 11, 3.0 },
  { 1, 1, 1, 1, 1, FALSE, FALSE, 0, 0, 1.0 },
  { 2, 3, 7, 129, 257, FALSE, TRUE, 4, 3, 2.0 },
  /* logits spanning hundreds (exp of the unshifted scores would overflow) */
  { 2, 2, 16, 20, 40, FALSE, FALSE, 0, 0, 8.0, TRUE },
  { 1, 3, 4, 150, 150, TRUE, TRUE, 0, 0, 8.0, TRUE },
  /* head_dim a multiple of 8 (the fused AVX2 path where the CPU has it): one key; len_k not a
   * multiple of the 16-key panel nor of the 512-key block, the running max rising block after
   * block; query tiles of 6 with 1..5 rows left over; an 8-wide last column chunk (D 24, 40);
   * several 128-query tasks sharing one head's packed keys; strides and gaps (NaN) */
  { 2, 2, 8, 5, 1, FALSE, FALSE, 3, 7, 1.0 },
  { 1, 1, 16, 1, 1, FALSE, FALSE, 0, 0, 1.0 },
  { 2, 3, 24, 7, 17, FALSE, TRUE, 2, 5, 2.0 },
  { 1, 2, 32, 13, 300, FALSE, FALSE, 1, 0, 3.0 },
  { 1, 1, 40, 130, 529, FALSE, FALSE, 0, 9, 2.0 },
  { 3, 2, 96, 16, 64, FALSE, TRUE, 0, 0, 1.0 },
  { 1, 2, 16, 300, 300, TRUE, TRUE, 4, 0, 8.0, TRUE },
  { 1, 1, 64, 9, 520, FALSE, FALSE, 0, 0, 8.0, TRUE },
};

static float
qk_value (GRand *r, const AttentionCase *tc)
{
  if (tc->int_qk)
    return (float) g_rand_int_range (r, -(int) tc->amp, (int) tc->amp + 1);
  return (float) (g_rand_double_range (r, -1, 1) * tc->amp);
}

/* out (B, Lq, C) in float64 from the host images of run_attention_case, q k v optionally
 * rounded to bfloat16 first. */
static void
attention_ref (const AttentionCase *tc, const float *hq, const float *hk, const float *hv,
               size_t q_stride, int q_ld, size_t kv_stride, int kv_ld, int k_off, int v_off,
               double scale, gboolean bf16, double *ref)
{
  const int B = tc->batch, nh = tc->heads, D = tc->head_dim, Lq = tc->len_q, Lk = tc->len_k;
  double *p = g_new (double, Lk);
  size_t gi = 0;
#define IN(x) (bf16 ? (double) sam2_test_round_bf16 (x) : (double) (x))
  for (int s = 0; s < B; s++)
    for (int i = 0; i < Lq; i++)
      for (int h = 0; h < nh; h++) {
        const float *qi = hq + s * q_stride + (size_t) i * q_ld + h * D;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < Lk; j++) {
          const float *kj = hk + s * kv_stride + (size_t) j * kv_ld + k_off + h * D;
          double dot = 0.0;
          for (int d = 0; d < D; d++)
            dot += IN (qi[d]) * IN (kj[d]);
          p[j] = dot * scale;
          mx = fmax (mx, p[j]);
        }
        for (int j = 0; j < Lk; j++) {
          p[j] = exp (p[j] - mx);
          sum += p[j];
        }
        for (int d = 0; d < D; d++) {
          double acc = 0.0;
          for (int j = 0; j < Lk; j++)
            acc += p[j] * IN (hv[s * kv_stride + (size_t) j * kv_ld + v_off + h * D + d]);
          ref[gi++] = acc / sum;
        }
      }
#undef IN
  g_free (p);
}

/* One case through b->ops->attention against float64 within `bound`; when `rounded_bound` is
 * positive (a BF16 backend) also against float64 over q, k and v rounded to bfloat16 within it,
 * and no closer than ATTENTION_BF16_MIN_REL_L2 to the unrounded result. */
static void
run_attention_case (Sam2Backend *b, const AttentionCase *tc, GRand *r, gboolean reserved,
                    double bound, double rounded_bound)
{
  const int B = tc->batch, nh = tc->heads, D = tc->head_dim, Lq = tc->len_q, Lk = tc->len_k;
  const int C = nh * D;
  char what[256];
  g_snprintf (what, sizeof what, "attention B%d heads%d D%d Lq%d Lk%d%s%s pad%d gap%d amp %g%s%s",
              B, nh, D, Lq, Lk, tc->q_in_qkv ? " qkv" : "",
              !tc->q_in_qkv && tc->kv_fused ? " kv" : "", tc->ld_pad, tc->batch_gap, tc->amp,
              tc->int_qk ? " int" : "", reserved ? " reserved" : "");

  /* kv buffer (fused: k, v and, with q_in_qkv, q) or three separate ones */
  const int fused_ld = 3 * C + tc->ld_pad, sep_ld = C + tc->ld_pad;
  const int kv_ld = tc->kv_fused ? fused_ld : sep_ld;
  const int q_ld = tc->q_in_qkv ? fused_ld : sep_ld;
  const size_t kv_stride = (size_t) Lk * kv_ld + tc->batch_gap;
  const size_t q_stride = tc->q_in_qkv ? kv_stride : (size_t) Lq * q_ld + tc->batch_gap;
  const size_t kv_n = (size_t) B * kv_stride, q_n = (size_t) B * q_stride;
  const int kv_cols = tc->kv_fused ? 3 * C : C;

  /* host images: NaN everywhere but the data */
  float *hk = nan_floats (kv_n), *hv = tc->kv_fused ? hk : nan_floats (kv_n);
  float *hq = tc->q_in_qkv ? hk : nan_floats (q_n);
  for (int s = 0; s < B; s++)
    for (int i = 0; i < Lk; i++)
      for (int c = 0; c < kv_cols; c++) {
        const size_t o = s * kv_stride + (size_t) i * kv_ld + c;
        /* in a fused buffer columns [0, C) are q, [C, 2C) k, [2C, 3C) v */
        const gboolean is_v = tc->kv_fused ? c >= 2 * C : FALSE;
        hk[o] = is_v ? (float) g_rand_double_range (r, -1, 1) : qk_value (r, tc);
        if (!tc->kv_fused)
          hv[o] = (float) g_rand_double_range (r, -1, 1);
      }
  if (!tc->q_in_qkv)
    for (int s = 0; s < B; s++)
      for (int i = 0; i < Lq; i++)
        for (int c = 0; c < C; c++)
          hq[s * q_stride + (size_t) i * q_ld + c] = qk_value (r, tc);
  const int k_off = tc->kv_fused ? C : 0, v_off = tc->kv_fused ? 2 * C : 0;

  float *dk = dev_new (b, hk, kv_n);
  float *dv = tc->kv_fused ? dk : dev_new (b, hv, kv_n);
  float *dq = tc->q_in_qkv ? dk : dev_new (b, hq, q_n);

  const int out_ld = C + tc->ld_pad;
  const size_t out_stride = (size_t) Lq * out_ld + tc->batch_gap, out_n = B * out_stride;
  const float sentinel = -12345.5f;
  float *hout = g_new (float, out_n);
  for (size_t i = 0; i < out_n; i++)
    hout[i] = sentinel;
  float *dout = dev_new (b, hout, out_n);

  const Sam2AttentionArgs args = {
    .batch = B, .heads = nh, .head_dim = D, .len_q = Lq, .len_k = Lk,
    .scale = (float) (1.0 / sqrt (D)),
    .q = dq, .q_ld = q_ld, .q_batch_stride = q_stride,
    .k = dk + k_off, .k_ld = kv_ld, .k_batch_stride = kv_stride,
    .v = dv + v_off, .v_ld = kv_ld, .v_batch_stride = kv_stride,
    .out = dout, .out_ld = out_ld, .out_batch_stride = out_stride,
  };
  check_ok (what, b->ops->attention (b, &args));
  float *out = dev_get (b, dout, out_n);

  /* float64 references, gathered with the output's written elements: of the inputs as given,
   * and (BF16) of q, k and v as the BF16 kernel rounds them */
  const size_t n = (size_t) B * Lq * C;
  float *got = g_new (float, n);
  double *ref = g_new (double, n);
  attention_ref (tc, hq, hk, hv, q_stride, q_ld, kv_stride, kv_ld, k_off, v_off, args.scale,
                 FALSE, ref);
  size_t gi = 0;
  for (int s = 0; s < B; s++)
    for (int i = 0; i < Lq; i++)
      for (int c = 0; c < C; c++)
        got[gi++] = out[s * out_stride + (size_t) i * out_ld + c];
  const double err = check_rel_l2 (what, got, ref, n, bound);
  if (rounded_bound > 0.0 && !(err >= ATTENTION_BF16_MIN_REL_L2)) {
    g_test_message ("FAIL %s: relative L2 %.3e, under %.0e: the operands were not rounded to "
                    "bfloat16", what, err, ATTENTION_BF16_MIN_REL_L2);
    g_test_fail ();
  }
  if (rounded_bound > 0.0) {
    char what_rounded[300];
    g_snprintf (what_rounded, sizeof what_rounded, "%s, operands rounded", what);
    attention_ref (tc, hq, hk, hv, q_stride, q_ld, kv_stride, kv_ld, k_off, v_off, args.scale,
                   TRUE, ref);
    check_rel_l2 (what_rounded, got, ref, n, rounded_bound);
  }

  /* nothing outside the output rows' first C columns was written */
  for (size_t o = 0; o < out_n; o++) {
    const size_t in_seq = o % out_stride;
    const gboolean written = in_seq < (size_t) Lq * out_ld && (int) (in_seq % out_ld) < C;
    if (!written && memcmp (&out[o], &sentinel, sizeof sentinel) != 0) {
      g_test_message ("FAIL %s: wrote %g at offset %zu, outside the output", what, out[o], o);
      g_test_fail ();
      break;
    }
  }

  b->ops->free (b, dk);
  if (!tc->kv_fused)
    b->ops->free (b, dv);
  if (!tc->q_in_qkv)
    b->ops->free (b, dq);
  b->ops->free (b, dout);
  g_free (hk);
  if (!tc->kv_fused)
    g_free (hv);
  if (!tc->q_in_qkv)
    g_free (hq);
  g_free (hout);
  g_free (out);
  g_free (ref);
  g_free (got);
}

static void
test_attention (void)
{
  /* One backend never told what is coming, so the op allocates its scratch on the first call and
   * grows it as the cases get longer; then one reserved for the largest case up front (as a
   * session does) and reused for all of them. */
  GRand *r = g_rand_new_with_seed (1006);
  Sam2Backend *b = sam2_backend_cpu_new ();
  for (guint i = 0; i < G_N_ELEMENTS (attention_cases); i++)
    run_attention_case (b, &attention_cases[i], r, FALSE, ATTENTION_REL_L2, 0.0);
  sam2_backend_free (b);
  b = sam2_backend_cpu_new ();
  check_ok ("reserve_attention", b->ops->reserve_attention (b, 300, 300));
  for (guint i = 0; i < G_N_ELEMENTS (attention_cases); i++)
    run_attention_case (b, &attention_cases[i], r, TRUE, ATTENTION_REL_L2, 0.0);
  sam2_backend_free (b);
  g_rand_free (r);
}

/* The BF16 precision's attention kernel (AVX-512 BF16 CPUs only) on the same cases: any head_dim
 * (odd ones zero padded), keys past a block, padded last pairs and panels, row tails. */
static void
test_attention_bf16 (void)
{
  GError *error = NULL;
  Sam2Backend *b = sam2_backend_cpu_new_full (SAM2_PRECISION_BF16, &error);
  if (b == NULL) {
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
    g_test_skip (error->message);
    g_error_free (error);
    return;
  }
  GRand *r = g_rand_new_with_seed (1007);
  for (guint i = 0; i < G_N_ELEMENTS (attention_cases); i++)
    run_attention_case (b, &attention_cases[i], r, FALSE, ATTENTION_BF16_REL_L2,
                        ATTENTION_BF16_ROUNDED_REL_L2);
  sam2_backend_free (b);
  g_rand_free (r);
}

/* A NaN in q poisons its own row and head, a NaN in k every row of its head, and nothing else
 * (rows longer than a key block, so the running max and the rescale meet the NaN too): as the
 * float formula says, on the fused attention kernels (FP32 where this machine or
 * SAM2_CPU_ATTENTION=fused picks it; BF16 where the CPU has it). The sgemm path promises nothing
 * here: its softmax is built with -ffinite-math-only to vectorise (ops-cpu-vec.c), and gives a
 * NaN key's head finite outputs. */
static void
check_attention_nan (Sam2Backend *b, const char *what)
{
  const int nh = 2, D = 32, Lq = 20, Lk = 600, C = nh * D;
  GRand *r = g_rand_new_with_seed (1008);
  float *q = rand_floats (r, (size_t) Lq * C, -1, 1), *k = rand_floats (r, (size_t) Lk * C, -1, 1);
  float *v = rand_floats (r, (size_t) Lk * C, -1, 1);
  q[3 * C + 5] = NAN;             /* row 3, head 0 */
  k[550 * C + D + 7] = NAN;       /* key 550 (the second key block), head 1 */
  float *dq = dev_new (b, q, (size_t) Lq * C), *dk = dev_new (b, k, (size_t) Lk * C);
  float *dv = dev_new (b, v, (size_t) Lk * C), *dout = dev_new (b, NULL, (size_t) Lq * C);
  const Sam2AttentionArgs args = {
    .batch = 1, .heads = nh, .head_dim = D, .len_q = Lq, .len_k = Lk,
    .scale = (float) (1.0 / sqrt (D)),
    .q = dq, .q_ld = C, .q_batch_stride = (size_t) Lq * C,
    .k = dk, .k_ld = C, .k_batch_stride = (size_t) Lk * C,
    .v = dv, .v_ld = C, .v_batch_stride = (size_t) Lk * C,
    .out = dout, .out_ld = C, .out_batch_stride = (size_t) Lq * C,
  };
  check_ok (what, b->ops->attention (b, &args));
  float *out = dev_get (b, dout, (size_t) Lq * C);
  for (int i = 0; i < Lq; i++)
    for (int c = 0; c < C; c++) {
      const gboolean poisoned = c >= D || i == 3;
      if (poisoned != (gboolean) isnan (out[(size_t) i * C + c])) {
        g_test_message ("FAIL %s: row %d column %d is %g, expected %s", what, i, c,
                        out[(size_t) i * C + c], poisoned ? "NaN" : "a number");
        g_test_fail ();
        i = Lq;
        break;
      }
    }
  g_free (out);
  b->ops->free (b, dq);
  b->ops->free (b, dk);
  b->ops->free (b, dv);
  b->ops->free (b, dout);
  g_free (q);
  g_free (k);
  g_free (v);
  g_rand_free (r);
}

static void
test_attention_nan (void)
{
  const Sam2AttentionArgs head_dim_32 = { .head_dim = 32 };
  Sam2Backend *b = sam2_backend_cpu_new ();
  if (sam2_cpu_flash_supported (&head_dim_32))
    check_attention_nan (b, "attention fp32 (fused) NaN");
  sam2_backend_free (b);
  b = sam2_backend_cpu_new_full (SAM2_PRECISION_BF16, NULL);
  if (b != NULL)
    check_attention_nan (b, "attention bf16 NaN");
  sam2_backend_free (b);
}

/* ---- window partition / unpartition -------------------------------------------------------- */

static void
test_window (void)
{
  static const struct { int H, W, C, ws; } shapes[] = {
    { 7, 7, 3, 7 }, { 9, 11, 5, 4 }, { 1, 1, 1, 1 }, { 1, 1, 2, 3 }, { 14, 14, 8, 8 },
    { 5, 3, 1, 2 }, { 16, 16, 4, 8 },
    { 64, 70, 17, 14 },  /* 76160 floats: the parallel path, padding on both sides */
  };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1007);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    const int H = shapes[si].H, W = shapes[si].W, C = shapes[si].C, ws = shapes[si].ws;
    const int nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
    const size_t nx = (size_t) H * W * C, nwin = (size_t) nh * nw * ws * ws * C;
    float *x = rand_floats (r, nx, -1, 1);
    float *want = g_new (float, nwin);
    for (int wy = 0; wy < nh; wy++)
      for (int wx = 0; wx < nw; wx++)
        for (int dy = 0; dy < ws; dy++)
          for (int dx = 0; dx < ws; dx++)
            for (int c = 0; c < C; c++) {
              const int yy = wy * ws + dy, xx = wx * ws + dx;
              want[((((size_t) wy * nw + wx) * ws + dy) * ws + dx) * C + c] =
                yy < H && xx < W ? x[((size_t) yy * W + xx) * C + c] : 0.0f;
            }

    float *dx = dev_new (b, x, nx), *dwin = dev_new (b, NULL, nwin);
    g_snprintf (what, sizeof what, "window_partition H%d W%d C%d ws%d", H, W, C, ws);
    check_ok (what, b->ops->window_partition (b, dx, H, W, C, ws, dwin));
    float *win = dev_get (b, dwin, nwin);
    check_exact (what, win, want, nwin);

    /* round trip */
    float *dback = dev_new (b, NULL, nx);
    g_snprintf (what, sizeof what, "window round trip H%d W%d C%d ws%d", H, W, C, ws);
    check_ok (what, b->ops->window_unpartition (b, dwin, nh, nw, ws, C, H, W, NULL, dback));
    float *back = dev_get (b, dback, nx);
    check_exact (what, back, x, nx);
    g_free (back);

    /* unpartition of arbitrary windows: the padding values must be cropped away */
    float *rw = rand_floats (r, nwin, -1, 1);
    float *want_x = g_new (float, nx);
    for (int yy = 0; yy < H; yy++)
      for (int xx = 0; xx < W; xx++)
        for (int c = 0; c < C; c++)
          want_x[((size_t) yy * W + xx) * C + c] =
            rw[((((size_t) (yy / ws) * nw + xx / ws) * ws + yy % ws) * ws + xx % ws) * C + c];
    float *drw = dev_new (b, rw, nwin), *dun = dev_new (b, NULL, nx);
    g_snprintf (what, sizeof what, "window_unpartition H%d W%d C%d ws%d", H, W, C, ws);
    check_ok (what, b->ops->window_unpartition (b, drw, nh, nw, ws, C, H, W, NULL, dun));
    float *un = dev_get (b, dun, nx);
    check_exact (what, un, want_x, nx);
    g_free (un);

    /* with a residual, separate and in place: residual + map, the add op's sum */
    float *res = rand_floats (r, nx, -1, 1);
    for (size_t i = 0; i < nx; i++)
      want_x[i] = res[i] + want_x[i];
    float *dres = dev_new (b, res, nx);
    g_snprintf (what, sizeof what, "window_unpartition + residual H%d W%d C%d ws%d", H, W, C, ws);
    check_ok (what, b->ops->window_unpartition (b, drw, nh, nw, ws, C, H, W, dres, dun));
    un = dev_get (b, dun, nx);
    check_exact (what, un, want_x, nx);
    g_free (un);
    g_snprintf (what, sizeof what, "window_unpartition + residual in place H%d W%d C%d ws%d", H, W,
                C, ws);
    check_ok (what, b->ops->window_unpartition (b, drw, nh, nw, ws, C, H, W, dres, dres));
    un = dev_get (b, dres, nx);
    check_exact (what, un, want_x, nx);
    g_free (un);
    b->ops->free (b, dres);
    g_free (res);

    b->ops->free (b, dx);
    b->ops->free (b, dwin);
    b->ops->free (b, dback);
    b->ops->free (b, drw);
    b->ops->free (b, dun);
    g_free (x);
    g_free (want);
    g_free (win);
    g_free (rw);
    g_free (want_x);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- max_pool ----------------------------------------------------------------------------- */

static void
test_max_pool (void)
{
  /* ld = 3C pools q (offset 0) or k (offset C) straight out of a qkv buffer */
  static const struct { int n_img, H, W, C, ld, s; } shapes[] = {
    { 1, 8, 8, 16, 48, 2 }, { 3, 7, 9, 5, 15, 2 }, { 2, 1, 1, 3, 3, 1 }, { 1, 5, 5, 1, 1, 3 },
    { 1, 3, 2, 2, 7, 2 }, { 2, 9, 10, 33, 33, 4 },
    { 4, 14, 14, 32, 96, 2 },  /* 75264 floats: the parallel path */
  };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1008);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    const int N = shapes[si].n_img, H = shapes[si].H, W = shapes[si].W, C = shapes[si].C;
    const int ld = shapes[si].ld, s = shapes[si].s, oh = H / s, ow = W / s;
    const size_t nx = (size_t) N * H * W * ld, ny = (size_t) N * oh * ow * C;
    /* mostly negative, so a max that starts from 0 shows; the rows and columns the floor drops
     * hold the largest values, so pooling them shows */
    float *x = rand_floats (r, nx, -4, 1);
    for (int img = 0; img < N; img++)
      for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++)
          if (yy >= oh * s || xx >= ow * s)
            for (int c = 0; c < ld; c++)
              x[(((size_t) img * H + yy) * W + xx) * ld + c] = 100.0f + c;
    float *dx = dev_new (b, x, nx);
    for (int off = 0; off + C <= ld && off <= C; off += C) {
      float *want = g_new (float, ny);
      for (int img = 0; img < N; img++)
        for (int oy = 0; oy < oh; oy++)
          for (int ox = 0; ox < ow; ox++)
            for (int c = 0; c < C; c++) {
              float m = -INFINITY;
              for (int dy = 0; dy < s; dy++)
                for (int ddx = 0; ddx < s; ddx++)
                  m = fmaxf (m, x[(((size_t) img * H + oy * s + dy) * W + ox * s + ddx) * ld +
                                  off + c]);
              want[(((size_t) img * oh + oy) * ow + ox) * C + c] = m;
            }
      float *dy = dev_new (b, NULL, ny);
      g_snprintf (what, sizeof what, "max_pool n%d H%d W%d C%d ld%d s%d offset %d", N, H, W, C,
                  ld, s, off);
      check_ok (what, b->ops->max_pool (b, dx + off, N, H, W, C, ld, s, dy));
      float *y = dev_get (b, dy, ny);
      check_exact (what, y, want, ny);
      g_free (y);
      g_free (want);
      b->ops->free (b, dy);
    }
    b->ops->free (b, dx);
    g_free (x);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- im2col ------------------------------------------------------------------------------- */

typedef struct { int C, H, W, kh, kw, stride, pad; } ConvShape;

static const ConvShape conv_shapes[] = {
  { 3, 37, 29, 7, 7, 4, 3 },  /* the patch embedding, on sizes that leave partial windows */
  { 3, 16, 16, 7, 7, 4, 3 },
  { 2, 5, 3, 1, 1, 1, 0 },    /* 1x1 */
  { 1, 1, 1, 1, 1, 1, 0 },
  { 3, 1, 1, 3, 3, 1, 1 },    /* all but the centre tap is padding */
  { 4, 9, 7, 3, 3, 2, 1 },
  { 4, 8, 8, 2, 2, 2, 0 },    /* the mask downscaling convs */
  { 1, 5, 4, 4, 4, 3, 2 },    /* pad > stride / 2 */
  { 5, 7, 8, 3, 2, 1, 1 },    /* kh != kw */
  { 16, 11, 13, 3, 3, 1, 1 },
};

static int
conv_out (int in, int k, int stride, int pad)
{
  return (in + 2 * pad - k) / stride + 1;
}

static void
run_im2col (Sam2Backend *b, const ConvShape *cs, GRand *r, gboolean planar)
{
  const int C = cs->C, H = cs->H, W = cs->W, kh = cs->kh, kw = cs->kw, st = cs->stride,
            pad = cs->pad;
  const int oh = conv_out (H, kh, st, pad), ow = conv_out (W, kw, st, pad), K = C * kh * kw;
  const int Cout = 5;
  const size_t nx = (size_t) C * H * W, ncols = (size_t) oh * ow * K, ny = (size_t) oh * ow * Cout;
  char what[256];
  float *x = rand_floats (r, nx, -1, 1);
  /* the input as (c, y, x) whatever its layout */
#define X_AT(c, iy, ix)                                                                          \
  (planar ? x[((size_t) (c) * H + (iy)) * W + (ix)] : x[((size_t) (iy) * W + (ix)) * C + (c)])

  float *want = g_new (float, ncols);
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++)
      for (int c = 0; c < C; c++)
        for (int ky = 0; ky < kh; ky++)
          for (int kx = 0; kx < kw; kx++) {
            const int iy = oy * st - pad + ky, ix = ox * st - pad + kx;
            want[((size_t) oy * ow + ox) * K + ((size_t) c * kh + ky) * kw + kx] =
              iy >= 0 && iy < H && ix >= 0 && ix < W ? X_AT (c, iy, ix) : 0.0f;
          }
  float *dx = dev_new (b, x, nx), *dcols = dev_new (b, NULL, ncols);
  g_snprintf (what, sizeof what, "im2col%s C%d H%d W%d k%dx%d s%d p%d", planar ? "_planar" : "",
              C, H, W, kh, kw, st, pad);
  if (planar)
    check_ok (what, b->ops->im2col_planar (b, dx, C, H, W, kh, kw, st, pad, dcols));
  else
    check_ok (what, b->ops->im2col (b, dx, H, W, C, kh, kw, st, pad, dcols));
  float *cols = dev_get (b, dcols, ncols);
  check_exact (what, cols, want, ncols);

  /* the convolution as the model runs it (linear over the columns) against a direct one */
  const double a = 4.0 / sqrt (K);
  float *w = rand_floats (r, (size_t) Cout * K, -a, a), *bias = rand_floats (r, Cout, -1, 1);
  float *dw = dev_new (b, w, (size_t) Cout * K), *db = dev_new (b, bias, Cout);
  float *dy = dev_new (b, NULL, ny);
  const Sam2Linear l = { .name = "conv", .in_features = K, .out_features = Cout, .weight = dw,
                         .bias = db };
  check_ok (what, b->ops->linear (b, &l, dcols, oh * ow, dy, SAM2_ACT_NONE, NULL));
  float *y = dev_get (b, dy, ny);
  double *ref = g_new (double, ny);
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++)
      for (int co = 0; co < Cout; co++) {
        double s = bias[co];
        for (int c = 0; c < C; c++)
          for (int ky = 0; ky < kh; ky++)
            for (int kx = 0; kx < kw; kx++) {
              const int iy = oy * st - pad + ky, ix = ox * st - pad + kx;
              if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                s += (double) w[(((size_t) co * C + c) * kh + ky) * kw + kx] * X_AT (c, iy, ix);
            }
        ref[((size_t) oy * ow + ox) * Cout + co] = s;
      }
#undef X_AT
  g_strlcat (what, " conv product", sizeof what);
  check_rel_l2 (what, y, ref, ny, GEMM_REL_L2);

  b->ops->free (b, dx);
  b->ops->free (b, dcols);
  b->ops->free (b, dw);
  b->ops->free (b, db);
  b->ops->free (b, dy);
  g_free (x);
  g_free (want);
  g_free (cols);
  g_free (w);
  g_free (bias);
  g_free (y);
  g_free (ref);
}

static void
test_im2col_planar (void)
{
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1009);
  for (guint i = 0; i < G_N_ELEMENTS (conv_shapes); i++)
    run_im2col (b, &conv_shapes[i], r, TRUE);
  g_rand_free (r);
  sam2_backend_free (b);
}

static void
test_im2col (void)
{
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1010);
  for (guint i = 0; i < G_N_ELEMENTS (conv_shapes); i++)
    run_im2col (b, &conv_shapes[i], r, FALSE);
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- resampling --------------------------------------------------------------------------- */

static const struct { int H, W, C; } resample_shapes[] = {
  { 1, 1, 1 }, { 3, 5, 7 }, { 1, 4, 2 }, { 8, 8, 32 }, { 16, 17, 33 },
};

static void
test_add_upsample2x (void)
{
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1011);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (resample_shapes); si++) {
    const int H = resample_shapes[si].H, W = resample_shapes[si].W, C = resample_shapes[si].C;
    const size_t nx = (size_t) H * W * C, ny = 4 * nx;
    float *x = rand_floats (r, nx, -2, 2), *y0 = rand_floats (r, ny, -2, 2);
    float *want = g_new (float, ny);
    for (int oy = 0; oy < 2 * H; oy++)
      for (int ox = 0; ox < 2 * W; ox++)
        for (int c = 0; c < C; c++) {
          const size_t o = ((size_t) oy * 2 * W + ox) * C + c;
          want[o] = (float) ((double) y0[o] + x[((size_t) (oy / 2) * W + ox / 2) * C + c]);
        }
    float *dx = dev_new (b, x, nx), *dy = dev_new (b, y0, ny);
    g_snprintf (what, sizeof what, "add_upsample2x H%d W%d C%d", H, W, C);
    check_ok (what, b->ops->add_upsample2x (b, dy, dx, H, W, C));
    float *y = dev_get (b, dy, ny);
    check_exact (what, y, want, ny);
    b->ops->free (b, dx);
    b->ops->free (b, dy);
    g_free (x);
    g_free (y0);
    g_free (y);
    g_free (want);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

static void
test_depth_to_space2x (void)
{
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1012);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (resample_shapes); si++) {
    const int H = resample_shapes[si].H, W = resample_shapes[si].W, C = resample_shapes[si].C;
    const size_t n = (size_t) H * W * 4 * C;
    /* with_addend 2: the addend again, x's rows 3 floats apart more than their 4 C */
    const int ld_pad = 3, ld_max = 4 * C + ld_pad;
    float *x = rand_floats (r, (size_t) H * W * ld_max, -2, 2), *addend = rand_floats (r, n, -2, 2);
    for (int case_i = 0; case_i < 3; case_i++) {
      const int with_addend = case_i > 0, x_ld = case_i == 2 ? ld_max : 4 * C;
      float *want = g_new (float, n);
      /* x row (iy, ix) holds columns (dy, dx, c): ConvTranspose2d k2 s2 output pixel
       * (2 iy + dy, 2 ix + dx) */
      for (int iy = 0; iy < H; iy++)
        for (int ix = 0; ix < W; ix++)
          for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
              for (int c = 0; c < C; c++) {
                const size_t o = ((size_t) (2 * iy + dy) * 2 * W + 2 * ix + dx) * C + c;
                const float v = x[((size_t) iy * W + ix) * x_ld + (dy * 2 + dx) * C + c];
                want[o] = with_addend ? (float) ((double) v + addend[o]) : v;
              }
      float *dx = dev_new (b, x, (size_t) H * W * ld_max), *da = dev_new (b, addend, n);
      float *dy = dev_new (b, NULL, n);
      g_snprintf (what, sizeof what, "depth_to_space2x H%d W%d C%d addend %d x_ld %d", H, W, C,
                  with_addend, x_ld);
      check_ok (what, b->ops->depth_to_space2x (b, dx, x_ld, H, W, C, with_addend ? da : NULL,
                                                NULL, SAM2_ACT_NONE, dy));
      float *y = dev_get (b, dy, n);
      check_exact (what, y, want, n);
      b->ops->free (b, dx);
      b->ops->free (b, da);
      b->ops->free (b, dy);
      g_free (y);
      g_free (want);
    }
    g_free (x);
    g_free (addend);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- matmul_nt ---------------------------------------------------------------------------- */

/* depth_to_space2x with the LayerNorm and / or activation folded in: the floats of the three ops
 * one after another (each tested against its own reference above), with the addend apart and as
 * the output. */
static void
test_depth_to_space2x_norm_act (void)
{
  static const Sam2Act acts[] = { SAM2_ACT_NONE, SAM2_ACT_GELU, SAM2_ACT_RELU };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1013);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (resample_shapes); si++) {
    const int H = resample_shapes[si].H, W = resample_shapes[si].W, C = resample_shapes[si].C;
    const size_t n = (size_t) H * W * 4 * C;
    float *x = rand_floats (r, n, -2, 2), *addend = rand_floats (r, n, -2, 2);
    float *w = rand_floats (r, C, -2, 2), *bias = rand_floats (r, C, -1, 1);
    float *dx = dev_new (b, x, n), *dw = dev_new (b, w, C), *db = dev_new (b, bias, C);
    const Sam2LayerNorm ln = { .dim = C, .eps = 1e-6f, .weight = dw, .bias = db };
    for (int with_norm = 0; with_norm <= 1; with_norm++)
      for (guint ai = 0; ai < G_N_ELEMENTS (acts); ai++)
        for (int addend_is_y = 0; addend_is_y <= 1; addend_is_y++) {
          const Sam2LayerNorm *norm = with_norm ? &ln : NULL;
          const Sam2Act act = acts[ai];
          float *want_d = dev_new (b, addend, n), *got_d = dev_new (b, addend, n);
          float *da = addend_is_y ? got_d : dev_new (b, addend, n);
          check_ok ("depth_to_space2x alone",
                    b->ops->depth_to_space2x (b, dx, 4 * C, H, W, C, want_d, NULL, SAM2_ACT_NONE,
                                              want_d));
          if (norm != NULL)
            check_ok ("layer_norm alone", b->ops->layer_norm (b, norm, want_d, 4 * H * W, want_d));
          check_ok ("activation alone", b->ops->activation (b, act, want_d, n));
          g_snprintf (what, sizeof what, "depth_to_space2x H%d W%d C%d norm %d %s addend is y %d",
                      H, W, C, with_norm, act_names[act], addend_is_y);
          check_ok (what, b->ops->depth_to_space2x (b, dx, 4 * C, H, W, C, da, norm, act, got_d));
          float *want = dev_get (b, want_d, n), *got = dev_get (b, got_d, n);
          check_exact (what, got, want, n);
          g_free (want);
          g_free (got);
          if (!addend_is_y)
            b->ops->free (b, da);
          b->ops->free (b, want_d);
          b->ops->free (b, got_d);
        }
    b->ops->free (b, dx);
    b->ops->free (b, dw);
    b->ops->free (b, db);
    g_free (x);
    g_free (addend);
    g_free (w);
    g_free (bias);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

static void
test_matmul_nt (void)
{
  static const struct { int M, N, K; } shapes[] = {
    { 1, 1, 1 }, { 4, 17, 8 }, { 7, 33, 65 }, { 3, 5, 300 },
    { 4, 16384, 32 },  /* the hypernetwork product: mask tokens x a 128x128 map */
  };
  Sam2Backend *b = sam2_backend_cpu_new ();
  GRand *r = g_rand_new_with_seed (1013);
  char what[256];
  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++) {
    const int M = shapes[si].M, N = shapes[si].N, K = shapes[si].K;
    float *A = rand_floats (r, (size_t) M * K, -1, 1), *B = rand_floats (r, (size_t) N * K, -1, 1);
    double *ref = linear_ref (A, B, NULL, M, K, N);
    float *dA = dev_new (b, A, (size_t) M * K), *dB = dev_new (b, B, (size_t) N * K);
    float *dC = dev_new (b, NULL, (size_t) M * N);
    g_snprintf (what, sizeof what, "matmul_nt M%d N%d K%d", M, N, K);
    check_ok (what, b->ops->matmul_nt (b, dA, dB, M, N, K, dC));
    float *Cm = dev_get (b, dC, (size_t) M * N);
    check_rel_l2 (what, Cm, ref, (size_t) M * N, GEMM_REL_L2);
    b->ops->free (b, dA);
    b->ops->free (b, dB);
    b->ops->free (b, dC);
    g_free (A);
    g_free (B);
    g_free (Cm);
    g_free (ref);
  }
  g_rand_free (r);
  sam2_backend_free (b);
}

/* ---- simd-math.h and the vectorised kernels ----------------------------------------------- */

static void
check_exp_at (float x, double *worst, float *worst_x)
{
  const double want = exp ((double) x);
  const double err = fabs ((double) sam2_exp_approx (x) - want) / want;
  if (!(err <= *worst)) {
    *worst = err;
    *worst_x = x;
  }
}

static void
test_exp_approx (void)
{
  double worst = 0.0;
  float worst_x = 0.0f;
  const int n = 1 << 21;
  for (int i = 0; i <= n; i++)
    check_exp_at ((float) (-87.0 + 175.0 * i / n), &worst, &worst_x);
  /* every float around the seams of the range reduction, where round(x / ln 2) changes */
  for (int k = -126; k <= 127; k++) {
    float x = (float) ((k + 0.5) * M_LN2);
    for (int j = 0; j < 64; j++)
      x = nextafterf (x, -INFINITY);
    for (int j = 0; j < 128; j++, x = nextafterf (x, INFINITY))
      if (x >= -87.0f && x <= 88.0f)
        check_exp_at (x, &worst, &worst_x);
  }
  static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, -87.0f, 88.0f, 1.0f, -1.0f };
  for (guint i = 0; i < G_N_ELEMENTS (special); i++)
    check_exp_at (special[i], &worst, &worst_x);
  if (g_test_verbose ())
    g_test_message ("exp_approx: max relative error %.3e at x = %.9g (bound %.1e)", worst,
                    worst_x, EXP_MAX_REL);
  if (!(worst <= EXP_MAX_REL)) {
    g_test_message ("FAIL exp_approx: relative error %.3e > %.1e at x = %.9g", worst, EXP_MAX_REL,
                    worst_x);
    g_test_fail ();
  }
}

static void
test_erf_approx (void)
{
  double worst = 0.0;
  float worst_x = 0.0f;
  /* [-6, 6], then 3 <= |x| <= 4 densely: the float evaluation of the rational loses most there */
  const int n = 1 << 20, n_dense = 1 << 19;
  static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 4.0f, -4.0f, 3.99f, -3.99f };
  for (int i = 0; i <= n + 2 * n_dense + (int) G_N_ELEMENTS (special); i++) {
    float x;
    if (i <= n)
      x = (float) (-6.0 + 12.0 * i / n);
    else if (i <= n + 2 * n_dense)
      x = (float) ((i % 2 ? 1.0 : -1.0) * (3.0 + (double) (i - n) / (2 * n_dense)));
    else
      x = special[i - n - 2 * n_dense - 1];
    const double err = fabs ((double) sam2_erf_approx (x) - erf ((double) x));
    if (!(err <= worst)) {
      worst = err;
      worst_x = x;
    }
  }
  if (g_test_verbose ())
    g_test_message ("erf_approx: max absolute error %.3e at x = %.9g (bound %.1e)", worst,
                    worst_x, ERF_MAX_ABS);
  if (!(worst <= ERF_MAX_ABS)) {
    g_test_message ("FAIL erf_approx: absolute error %.3e > %.1e at x = %.9g", worst, ERF_MAX_ABS,
                    worst_x);
    g_test_fail ();
  }
}

static void
test_act_row (void)
{
  GRand *r = g_rand_new_with_seed (1014);
  char what[256];
  for (guint ai = 0; ai < G_N_ELEMENTS (all_acts); ai++) {
    const Sam2Act act = all_acts[ai];
    gint64 worst = 0;
    /* every length up to past two AVX-512 vectors, then a long unaligned row */
    for (int len = 1; len <= 41; len++) {
      const int n = len == 41 ? 4103 : len;
      float *buf = act_inputs (r, (size_t) n + 1, 20.0);
      float *x = buf + 1;
      float *want = g_new (float, n);
      for (int i = 0; i < n; i++)
        want[i] = sam2_cpu_act1 (act, x[i]);
      float *in = g_new (float, n);
      memcpy (in, x, n * sizeof (float));
      sam2_cpu_act_row (act, x, n);
      for (int i = 0; i < n; i++) {
        const gint64 d = ulp_distance (x[i], want[i]);
        if (d > worst)
          worst = d;
        if (d > ACT_VEC_MAX_ULPS) {
          g_test_message ("FAIL act_row %s n %d: x = %.9g gives %.9g, act1 %.9g (%" G_GINT64_FORMAT
                          " ulp)", act_names[act], n, in[i], x[i], want[i], d);
          g_test_fail ();
          break;
        }
      }
      g_free (in);
      g_free (want);
      g_free (buf);
    }
    g_snprintf (what, sizeof what, "act_row %s vs act1", act_names[act]);
    if (g_test_verbose ())
      g_test_message ("%-60s max %" G_GINT64_FORMAT " ulp (bound %d)", what, worst,
                      ACT_VEC_MAX_ULPS);
  }
  g_rand_free (r);
}

static void
test_softmax_rows (void)
{
  static const int lengths[] = { 1, 2, 7, 64, 300, 4096 };
  static const double amps[] = { 0.1, 5.0, 60.0 };  /* flat, typical, exp underflowing */
  GRand *r = g_rand_new_with_seed (1015);
  char what[256];
  for (guint li = 0; li < G_N_ELEMENTS (lengths); li++)
    for (guint ai = 0; ai < G_N_ELEMENTS (amps); ai++) {
      const int N = lengths[li], M = 3;
      const size_t n = (size_t) M * N;
      float *x = rand_floats (r, n, -amps[ai], amps[ai]);
      /* an offset per row: the max subtraction must take it out */
      for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++)
          x[(size_t) m * N + j] += (float) (m * 40 - 40);
      float *y = g_new (float, n);
      memcpy (y, x, n * sizeof (float));
      sam2_cpu_softmax_rows (y, M, N);
      double worst = 0.0, worst_sum = 0.0;
      for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t) m * N, *yr = y + (size_t) m * N;
        double mx = -INFINITY, sum = 0.0, got_sum = 0.0;
        for (int j = 0; j < N; j++)
          mx = fmax (mx, xr[j]);
        for (int j = 0; j < N; j++)
          sum += exp ((double) xr[j] - mx);
        for (int j = 0; j < N; j++) {
          const double ref = exp ((double) xr[j] - mx) / sum;
          const double rel = SOFTMAX_MAX_REL + SOFTMAX_ARG_REL * (mx - xr[j]);
          worst = fmax (worst, fabs (yr[j] - ref) / (rel * ref + SOFTMAX_MAX_ABS));
          got_sum += yr[j];
        }
        worst_sum = fmax (worst_sum, fabs (got_sum - 1.0));
      }
      g_snprintf (what, sizeof what, "softmax_rows N%d amplitude %g", N, amps[ai]);
      if (g_test_verbose ())
        g_test_message ("%-60s %.2f of the bound, |sum - 1| %.2e (bound %.0e)", what, worst,
                        worst_sum, SOFTMAX_SUM_TOL);
      if (!(worst <= 1.0) || !(worst_sum <= SOFTMAX_SUM_TOL)) {
        g_test_message ("FAIL %s: %.2f times the element bound, |row sum - 1| = %.3e", what, worst,
                        worst_sum);
        g_test_fail ();
      }
      g_free (x);
      g_free (y);
    }
  g_rand_free (r);
}

/* ---- profiling ---------------------------------------------------------------------------- */

static void
test_profile (void)
{
  Sam2Backend *b = sam2_backend_cpu_new ();
  const float w[6] = { 1, 2, 3, 4, 5, 6 }, x[3] = { 1, -1, 2 };
  float *dw = dev_new (b, w, 6), *dx = dev_new (b, x, 3), *dy = dev_new (b, NULL, 2);
  const Sam2Linear l = { .name = "p", .in_features = 3, .out_features = 2, .weight = dw };
  /* calls before profile_start are not counted */
  g_assert_cmpint (b->ops->linear (b, &l, dx, 1, dy, SAM2_ACT_NONE, NULL), ==, 0);

  b->ops->profile_start (b);
  g_assert_cmpint (b->ops->linear (b, &l, dx, 1, dy, SAM2_ACT_NONE, NULL), ==, 0);
  const Sam2OpProfile *p = b->ops->profile_read (b);
  g_assert_nonnull (p);
  g_assert_cmpstr (p[SAM2_OP_LINEAR].name, ==, "linear");
  for (int k = 0; k < SAM2_OP_COUNT; k++) {
    g_assert_nonnull (p[k].name);
    g_assert_cmpint (p[k].calls, ==, k == SAM2_OP_LINEAR ? 1 : 0);
    g_assert_cmpfloat (p[k].ms, >=, 0.0);
    if (k != SAM2_OP_LINEAR)
      g_assert_cmpfloat (p[k].ms, ==, 0.0);
  }
  float *y = dev_get (b, dy, 2);
  g_assert_cmpfloat (y[0], ==, 5.0f);
  g_assert_cmpfloat (y[1], ==, 11.0f);
  g_free (y);

  /* profile_start resets */
  b->ops->profile_start (b);
  g_assert_cmpint (b->ops->add (b, dx, dx, dx, 3), ==, 0);
  p = b->ops->profile_read (b);
  g_assert_cmpint (p[SAM2_OP_LINEAR].calls, ==, 0);
  g_assert_cmpint (p[SAM2_OP_ADD].calls, ==, 1);

  b->ops->free (b, dw);
  b->ops->free (b, dx);
  b->ops->free (b, dy);
  sam2_backend_free (b);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops/linear", test_linear);
  g_test_add_func ("/ops/layer-norm", test_layer_norm);
  g_test_add_func ("/ops/activation", test_activation);
  g_test_add_func ("/ops/add", test_add);
  g_test_add_func ("/ops/add-row", test_add_row);
  g_test_add_func ("/ops/linear-bf16", test_linear_bf16);
  g_test_add_func ("/ops/attention", test_attention);
  g_test_add_func ("/ops/attention-bf16", test_attention_bf16);
  g_test_add_func ("/ops/attention-nan", test_attention_nan);
  g_test_add_func ("/ops/window", test_window);
  g_test_add_func ("/ops/max-pool", test_max_pool);
  g_test_add_func ("/ops/im2col-planar", test_im2col_planar);
  g_test_add_func ("/ops/im2col", test_im2col);
  g_test_add_func ("/ops/add-upsample2x", test_add_upsample2x);
  g_test_add_func ("/ops/depth-to-space2x", test_depth_to_space2x);
  g_test_add_func ("/ops/depth-to-space2x-norm-act", test_depth_to_space2x_norm_act);
  g_test_add_func ("/ops/matmul-nt", test_matmul_nt);
  g_test_add_func ("/simd/exp", test_exp_approx);
  g_test_add_func ("/simd/erf", test_erf_approx);
  g_test_add_func ("/simd/act-row", test_act_row);
  g_test_add_func ("/simd/softmax-rows", test_softmax_rows);
  g_test_add_func ("/ops/profile", test_profile);
  int status = g_test_run ();
#ifdef _OPENMP
  /* Joins libgomp's worker threads, which otherwise outlive main and leave valgrind reporting
   * their thread-local storage as possibly lost. */
  omp_pause_resource_all (omp_pause_hard);
#endif
  return status;
}
