/* test-quant-linear.c: the CPU quantized linear layer (core/quant/linear-cpu.c) and the W4
 * dequantization (core/quant/formats.c).
 *
 *   (a) sam2_quantize_activations against a scalar re-implementation of formats.h written here,
 *       exactly (codes, scales, zero points), on rows with ties, zeros, one sign, outliers and
 *       clamping static scales, through every activation quantizer the CPU has;
 *   (b) the kernel (sam2_quant_linear_forward) against the reference within float rounding, per
 *       element, with the bounds below; every kernel path the CPU runs (C, AVX2, AVX-512 VNNI,
 *       picked with SAM2_QUANT_KERNEL) must give bit-identical outputs; and a construction whose
 *       every float step is exact (power-of-two scales, small integers) where kernel, reference
 *       and a float64 computation must agree bit for bit, with codes at the int16 limits of the
 *       AVX2 kernel;
 *   (c) the reference against a float64 computation from the codes (sam2_w4_get, not
 *       sam2_w4_dequantize) and this file's quantizer.
 *   (d) the fused MLP (sam2_quant_mlp_forward) against the unfused ops (LayerNorm, fc1, fc2),
 *       bit for bit, on every kernel path.
 *
 * Layers are random (fixed seeds): UINT4 and SINT4 codes, groups of 64, 128, 256 and K (tail
 * groups: K = 112, 144, 448, 576 with 64 or 256; K odd), group sizes that are not multiples of
 * the kernel's 32-column steps, N not a multiple of the 16-channel blocks, M = 1 and row counts
 * that leave rows over after the 3-row (AVX2) and 4-row (AVX-512) tiles, bias, smoothing, low
 * rank 8 and 32, every activation, residual separate and residual == y, all five activation
 * modes; enough rows for the path where each thread quantizes its own rows, and an output large
 * enough to be written with non-temporal stores. Outputs start as NaN (an unwritten element
 * fails), scratch is exactly the size the library asks for (valgrind sees overruns; under
 * valgrind, oneDNN 2.6's JIT sgemm itself reports 32-byte reads past its own packing buffer for
 * K >= 512, in the low-rank and weight-only products: a plain dnnl_sgemm call does the same).
 *
 * Run with --verbose to see each case's worst error as a fraction of its bound. */
#include "formats.h"
#include "linear-cpu.h"
#include "ops-cpu.h"
#include "quant-layers.h"

#include <float.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <string.h>

/* ---- bounds ------------------------------------------------------------------------------- */

/* Unit roundoff of float32: one rounding changes a value by at most U times its magnitude. */
#define U ((double) FLT_EPSILON / 2)

/* Every bound below is per element, against the magnitudes of what was summed, computed in
 * float64 here:
 *   main = sum_k |xq_k w_nk|     (dequantized activations times dequantized weights)
 *   lr   = sum_i |L_up[n,i]| sum_k |xs_k L_down[i,k]|   (the low-rank branch, xs = x smooth_inv)
 *   pre  = the value before the activation, act = after it, y = the output.
 * Against |y| alone a bound would have to be loose wherever the sum cancels; against the
 * magnitudes it is tight everywhere, and a real bug (a wrong nibble, a tail column dropped, a
 * zero point not removed) moves an element by at least one term, |xq_k w_nk| ~ main / K, which
 * is 100 times the largest bound here (K <= 1536, bounds <= (n_groups + 4) 2U main for the
 * quantized paths). */

/* Slope bound of the activations (GELU's derivative peaks at 1.129; the others are <= 1): an
 * input error e moves the output by at most ACT_LIP e. */
#define ACT_LIP 1.13

/* sam2_cpu_act1 against libm in float64 (tests/core/test-ops.c): relative to the output, plus,
 * for the GELUs, an absolute error of 0.5 |x| times the erf / tanh approximation error. */
#define ACT_REL 5e-7
#define ACT_ABS_PER_X 2.4e-7

/* Every bound gets this factor over the worst case it is derived from: a margin for the
 * derivation's approximations (first order in U), not for the kernel. */
#define MARGIN 2.0

/* (c) reference vs float64: the reference rounds each dequantized activation and weight to
 * float once (2U relative per product), the smoothed row once (U on the low-rank terms), the
 * float64 sum once to float (U |pre|), then act1 (ACT_REL, ACT_ABS_PER_X) and the residual add
 * (U |y|). Its sums are float64: no term that grows with K. */
static double
ref_bound (double main, double lr, double pre, double act, double y)
{
  return MARGIN * (ACT_LIP * (2 * U * main + U * lr + U * fabs (pre)) + ACT_REL * fabs (act)
                   + ACT_ABS_PER_X * fabs (pre) + U * fabs (y));
}

/* (b) kernel vs reference, W4A8: both start from the same integers. The kernel's int32 group
 * sums are exact, each group adds one product and one sum rounding (n_groups U main), the
 * activation scale, bias and low-rank additions one each (3U |pre|). Its low-rank branch is a
 * float32 sgemm over K (worst case K U, plus the rounding of smoothing folded into L_down) and a
 * float32 sum over the rank (R U). The reference's own distance to exact adds 2U main + U lr +
 * U |pre|. Then the activation (the vectorised sam2_cpu_act_row against the scalar act1: 2 ulp
 * of the output) and the residual add (U |y| each). */
static double
kernel_bound (int n_groups, int K, int R, double main, double lr, double pre, double act,
              double y)
{
  return MARGIN * (ACT_LIP * ((n_groups + 3) * U * main + (K + R + 3) * U * lr + 4 * U * fabs (pre))
                   + 4 * U * fabs (act) + 2 * U * fabs (y));
}

/* (b) weight-only (W4A16): a float32 sgemm over K of x and the prepared weights
 * (W + L_up L_down) diag(smooth_inv), each rounded once: (K + 2) U of everything summed, low rank
 * included; the reference's distance to exact as above. */
static double
weight_only_bound (int K, int R, double main, double lr, double pre, double act, double y)
{
  return MARGIN * (ACT_LIP * ((K + R + 4) * U * (main + lr) + 4 * U * fabs (pre))
                   + 4 * U * fabs (act) + 2 * U * fabs (y));
}

/* ---- cases, layers and inputs (tests/common/quant-layers.h) ------------------------------- */

static const Sam2Act all_acts[] = { SAM2_ACT_NONE, SAM2_ACT_GELU, SAM2_ACT_GELU_TANH,
                                    SAM2_ACT_RELU, SAM2_ACT_SILU, SAM2_ACT_SIGMOID };

/* ---- the test's own quantizer and float64 model ---------------------------------------------- */

/* formats.h, written out directly: v = x * smooth_inv in float, then
 *   symmetric:  sa = max|v| / 127, a = clamp(round(v / sa), -127, 127), za = 0
 *   asymmetric: sa = (max - min) / 255 over a range that includes 0, za = round(-min / sa)
 *               clamped to 0..255, a = clamp(round(v / sa) + za, 0, 255)
 *   static:     sa = act_scale, za = round(act_zero) clamped to 0..255
 *   a zero range (or a non-positive static scale): sa = 1, za = 0
 *   a NaN or an infinity among the v: sa = NaN, za = 0, every a = 0 (the code of 0) */
static void
test_quantize_row (const Sam2QuantLinear *q, const float *x, int *a, float *sa, int *za)
{
  const int K = q->w.k;
  const gboolean asym = sam2_test_mode_asym (q->act);
  float lo = 0.0f, hi = 0.0f, scale;
  int zero = 0;
  gboolean finite = TRUE;
  float *v = g_new (float, K);
  for (int k = 0; k < K; k++) {
    v[k] = q->smooth_inv != NULL ? x[k] * q->smooth_inv[k] : x[k];
    finite = finite && isfinite (v[k]);
    lo = MIN (lo, v[k]);
    hi = MAX (hi, v[k]);
  }
  if (!finite) {
    for (int k = 0; k < K; k++)
      a[k] = 0;
    *sa = NAN;
    *za = 0;
    g_free (v);
    return;
  }
  if (sam2_test_mode_static (q->act)) {
    scale = q->act_scale;
    zero = asym ? CLAMP (sam2_round_half_away (q->act_zero), 0, 255) : 0;
  } else if (asym) {
    scale = (hi - lo) / 255.0f;
    zero = scale > 0.0f ? CLAMP (sam2_round_half_away (-lo / scale), 0, 255) : 0;
  } else {
    scale = MAX (hi, -lo) / 127.0f;
  }
  if (!(scale > 0.0f)) {
    scale = 1.0f;
    zero = 0;
  }
  for (int k = 0; k < K; k++) {
    const int c = sam2_round_half_away (v[k] / scale);
    a[k] = asym ? CLAMP (c + zero, 0, 255) : CLAMP (c, -127, 127);
  }
  *sa = scale;
  *za = zero;
  g_free (v);
}

static double
act_f64 (Sam2Act act, double x)
{
  switch (act) {
  case SAM2_ACT_NONE:
    return x;
  case SAM2_ACT_GELU:
    return 0.5 * x * (1.0 + erf (x / sqrt (2.0)));
  case SAM2_ACT_GELU_TANH:
    return 0.5 * x * (1.0 + tanh (sqrt (2.0 / G_PI) * (x + 0.044715 * x * x * x)));
  case SAM2_ACT_RELU:
    return x > 0.0 ? x : 0.0;
  case SAM2_ACT_SILU:
    return x / (1.0 + exp (-x));
  case SAM2_ACT_SIGMOID:
    return 1.0 / (1.0 + exp (-x));
  }
  g_assert_not_reached ();
}

/* Everything per output (M, N) in float64: pre-activation, activation, output, and the
 * magnitudes the bounds use. */
typedef struct {
  double *pre, *act, *y, *main, *lr;
} Model64;

static Model64
model64 (const Sam2QuantLinear *q, const float *x, int M, Sam2Act act, const float *residual)
{
  const int K = q->w.k, N = q->w.n, R = q->rank, NG = q->w.n_groups;
  Model64 o;
  const size_t MN = (size_t) M * N;
  o.pre = g_new (double, MN);
  o.act = g_new (double, MN);
  o.y = g_new (double, MN);
  o.main = g_new (double, MN);
  o.lr = g_new0 (double, MN);
  double *w = g_new (double, (size_t) N * K);      /* (N, K) dequantized from the codes */
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      const int g = k / q->w.group_size;
      w[(size_t) n * K + k] = ((double) sam2_w4_get (q->w.codes, K, n, k) - q->w.zeros[n * NG + g])
                              * q->w.scales[n * NG + g];
    }
  double *xq = g_new (double, K), *xs = g_new (double, K), *t = g_new (double, MAX (R, 1));
  double *tabs = g_new (double, MAX (R, 1));
  int *a = g_new (int, K);
  for (int m = 0; m < M; m++) {
    const float *xr = x + (size_t) m * K;
    for (int k = 0; k < K; k++)
      xs[k] = q->smooth_inv != NULL ? (double) xr[k] * q->smooth_inv[k] : xr[k];
    if (q->act == SAM2_ACT_QUANT_NONE) {
      memcpy (xq, xs, K * sizeof (double));
    } else {
      float sa;
      int za;
      test_quantize_row (q, xr, a, &sa, &za);
      for (int k = 0; k < K; k++)
        xq[k] = (double) (a[k] - za) * sa;
    }
    for (int i = 0; i < R; i++) {
      t[i] = tabs[i] = 0.0;
      for (int k = 0; k < K; k++) {
        t[i] += xs[k] * q->lora_down[(size_t) i * K + k];
        tabs[i] += fabs (xs[k] * q->lora_down[(size_t) i * K + k]);
      }
    }
    for (int n = 0; n < N; n++) {
      const size_t o_ = (size_t) m * N + n;
      double s = 0.0, mag = 0.0;
      for (int k = 0; k < K; k++) {
        s += xq[k] * w[(size_t) n * K + k];
        mag += fabs (xq[k] * w[(size_t) n * K + k]);
      }
      if (q->bias != NULL) {
        s += q->bias[n];
        mag += fabs (q->bias[n]);
      }
      for (int i = 0; i < R; i++) {
        s += t[i] * q->lora_up[(size_t) n * R + i];
        o.lr[o_] += tabs[i] * fabs (q->lora_up[(size_t) n * R + i]);
      }
      o.pre[o_] = s;
      o.main[o_] = mag;
      o.act[o_] = act_f64 (act, s);
      o.y[o_] = o.act[o_] + (residual != NULL ? residual[o_] : 0.0);
    }
  }
  g_free (w);
  g_free (xq);
  g_free (xs);
  g_free (t);
  g_free (tabs);
  g_free (a);
  return o;
}

static void
model64_free (Model64 *o)
{
  g_free (o->pre);
  g_free (o->act);
  g_free (o->y);
  g_free (o->main);
  g_free (o->lr);
}

/* ---- running the library ------------------------------------------------------------------ */

/* The kernel paths to compare; SAM2_QUANT_KERNEL caps the one prepare picks, so on a CPU without
 * AVX-512 the last two are the same path (and on one without AVX2, all three). */
static const char *kernel_paths[] = { "c", "avx2", NULL };

static void
prepare_path (Sam2QuantLinear *q, const char *path)
{
  if (q->kernel != NULL) {
    q->kernel_free (q->kernel);
    q->kernel = NULL;
  }
  if (path != NULL)
    g_setenv ("SAM2_QUANT_KERNEL", path, TRUE);
  else
    g_unsetenv ("SAM2_QUANT_KERNEL");
  g_assert_true (sam2_quant_linear_prepare (q));
  gpointer k = q->kernel;
  g_assert_true (sam2_quant_linear_prepare (q));   /* idempotent */
  g_assert_true (q->kernel == k);
  g_unsetenv ("SAM2_QUANT_KERNEL");
}

static float *
nan_floats (size_t n)
{
  float *v = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    v[i] = NAN;
  return v;
}

/* y = layer(x) through `fn` (forward or reference), with the residual as asked; y starts as NaN
 * (or as the residual, in place). */
static float *
run (void (*fn) (const Sam2QuantLinear *, const float *, int, float *, Sam2Act, const float *,
                 void *),
     const Sam2QuantLinear *q, const float *x, int M, Sam2Act act, Sam2TestResidual rk,
     const float *residual)
{
  const size_t MN = (size_t) M * q->w.n;
  float *y = nan_floats (MN);
  if (rk == SAM2_TEST_RES_IN_PLACE)
    memcpy (y, residual, MN * sizeof (float));
  const size_t bytes = sam2_quant_linear_scratch_bytes (q, M);
  void *scratch = g_malloc (MAX (bytes, 1));
  fn (q, x, M, y, act,
      rk == SAM2_TEST_RES_NONE ? NULL : rk == SAM2_TEST_RES_IN_PLACE ? y : residual, scratch);
  g_free (scratch);
  return y;
}

/* ---- the comparisons ---------------------------------------------------------------------- */

/* Runs one case through every kernel path and the reference; checks (b) and (c). */
static void
check_case (const Sam2TestCase *c)
{
  float *x, *residual;
  Sam2QuantLinear *q = sam2_test_case_new (c, &x, &residual);
  const int M = c->M, N = c->spec.N, K = c->spec.K;
  const size_t MN = (size_t) M * N;
  char *name = sam2_test_case_name (c);

  float *ref = run (sam2_quant_linear_reference, q, x, M, c->act, c->res, residual);
  float *first = NULL;
  for (guint p = 0; p < G_N_ELEMENTS (kernel_paths); p++) {
    prepare_path (q, kernel_paths[p]);
    float *y = run (sam2_quant_linear_forward, q, x, M, c->act, c->res, residual);
    if (first == NULL) {
      first = y;
      continue;
    }
    for (size_t i = 0; i < MN; i++)
      if (memcmp (&y[i], &first[i], sizeof (float)) != 0) {
        g_test_message ("FAIL %s: path %s element %zu is %.9g, path c gives %.9g", name,
                        kernel_paths[p] ? kernel_paths[p] : "best", i, y[i], first[i]);
        g_test_fail ();
        break;
      }
    g_free (y);
  }

  Model64 o = model64 (q, x, M, c->act, residual);
  double worst_ref = 0.0, worst_kernel = 0.0;
  size_t bad_ref = 0, bad_kernel = 0;
  for (size_t i = 0; i < MN; i++) {
    const double br = ref_bound (o.main[i], o.lr[i], o.pre[i], o.act[i], o.y[i]);
    const double bk = c->spec.mode == SAM2_ACT_QUANT_NONE
      ? weight_only_bound (K, c->spec.rank, o.main[i], o.lr[i], o.pre[i], o.act[i], o.y[i])
      : kernel_bound (q->w.n_groups, K, c->spec.rank, o.main[i], o.lr[i], o.pre[i], o.act[i],
                      o.y[i]);
    const double er = fabs ((double) ref[i] - o.y[i]), ek = fabs ((double) first[i] - ref[i]);
    /* a zero bound (an exact output) must be met exactly; NaN fails both ways */
    if (!(er <= br) && bad_ref++ == 0)
      g_test_message ("FAIL %s: reference [%zu] %.9g, float64 %.9g (bound %.3g)", name, i, ref[i],
                      o.y[i], br);
    if (!(ek <= bk) && bad_kernel++ == 0)
      g_test_message ("FAIL %s: kernel [%zu] %.9g, reference %.9g (bound %.3g)", name, i,
                      first[i], ref[i], bk);
    if (br > 0.0)
      worst_ref = MAX (worst_ref, er / br);
    if (bk > 0.0)
      worst_kernel = MAX (worst_kernel, ek / bk);
  }
  if (bad_ref > 0 || bad_kernel > 0)
    g_test_fail ();
  if (g_test_verbose ())
    g_test_message ("%-72s kernel %.3f, reference %.3f of bound", name, worst_kernel, worst_ref);

  model64_free (&o);
  g_free (name);
  g_free (first);
  g_free (ref);
  g_free (residual);
  g_free (x);
  sam2_test_layer_free (q);
}

/* Products larger than this (M N K) get fewer rows: the float64 model and the scalar C path
 * are O(M N K), and the suite also runs under valgrind. */
#define CASE_MAX_MACS 12000000

static void
clip_rows (Sam2TestCase *c)
{
  const double per_row = (double) c->spec.N * c->spec.K;
  if (c->M * per_row > CASE_MAX_MACS)
    c->M = MAX (1, (int) (CASE_MAX_MACS / per_row) | 1);
}

/* Every K x N x group, the other parameters cycling. */
static void
test_shapes (void)
{
  static const int Ks[] = { 96, 112, 144, 384, 448, 576, 1536, 97 };
  static const int Ns[] = { 1, 7, 96, 288 };
  static const int Gs[] = { 64, 128, 256, 0 };
  static const int Ms[] = { 1, 5, 64, 300, 7, 6 };
  static const int ranks[] = { 0, 8, 32 };
  int i = 0;
  for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
    for (guint ni = 0; ni < G_N_ELEMENTS (Ns); ni++)
      for (guint gi = 0; gi < G_N_ELEMENTS (Gs); gi++, i++) {
        Sam2TestCase c = {
          .spec = { .N = Ns[ni], .K = Ks[ki], .G = Gs[gi],
                    .dtype = i % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4,
                    .mode = (Sam2ActQuantMode) (i / 2 % 5), .bias = i / 3 % 2,
                    .smooth = i / 5 % 2, .rank = ranks[i / 7 % 3] },
          .M = Ms[i % G_N_ELEMENTS (Ms)],
          .act = all_acts[i / 11 % 6],
          .res = (Sam2TestResidual) (i / 13 % 3),
          .seed = 1000 + i,
        };
        clip_rows (&c);
        check_case (&c);
      }
  /* group sizes that are not multiples of 16, with and without a tail */
  static const int odd[][3] = { { 97, 40, 3 }, { 144, 40, 4 }, { 576, 24, 1 }, { 1536, 48, 2 } };
  for (guint j = 0; j < G_N_ELEMENTS (odd); j++, i++) {
    Sam2TestCase c = {
      .spec = { .N = 23, .K = odd[j][0], .G = odd[j][1], .dtype = SAM2_QTYPE_UINT4,
                .mode = (Sam2ActQuantMode) odd[j][2], .bias = TRUE, .smooth = j % 2,
                .rank = j % 2 ? 8 : 0 },
      .M = 9,
      .act = all_acts[j],
      .res = (Sam2TestResidual) (j % 3),
      .seed = 1000 + i,
    };
    check_case (&c);
  }
}

/* Every activation mode x activation x residual kind, at a shape with a tail group
 * (144 = 2 x 64 + 16) and a partial channel block. */
static void
test_epilogue (void)
{
  static const int ranks[] = { 0, 8, 32 };
  int i = 0;
  for (int mode = 0; mode < 5; mode++)
    for (guint a = 0; a < G_N_ELEMENTS (all_acts); a++)
      for (int res = 0; res < 3; res++, i++) {
        Sam2TestCase c = {
          .spec = { .N = 40, .K = 144, .G = 64,
                    .dtype = i % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4,
                    .mode = (Sam2ActQuantMode) mode, .bias = i / 2 % 2, .smooth = i / 4 % 2,
                    .rank = ranks[(mode + a) % 3] },
          .M = 13,
          .act = all_acts[a],
          .res = (Sam2TestResidual) res,
          .seed = 5000 + i,
        };
        check_case (&c);
      }
}

/* Enough rows that every thread gets several row blocks: the path where each work item
 * quantizes its own rows. */
static void
test_many_rows (void)
{
  for (int mode = 1; mode < 5; mode++) {
    Sam2TestCase c = {
      .spec = { .N = 72, .K = 96, .G = 0, .dtype = SAM2_QTYPE_UINT4,
                .mode = (Sam2ActQuantMode) mode, .bias = TRUE, .smooth = mode % 2, .rank = 8 },
      .M = 64 * 4 * 8 + 37,
      .act = mode % 2 ? SAM2_ACT_GELU : SAM2_ACT_NONE,
      .res = (Sam2TestResidual) (mode % 3),
      .seed = 7000 + mode,
    };
    check_case (&c);
  }
}

/* An output of 32 MiB or more, which the kernel writes with non-temporal stores, in place over
 * its residual, `offset` floats into its allocation: rows taken from it must equal the same rows
 * computed alone (a few rows, stored normally), bit for bit. */
static void
check_streamed_output (const Sam2TestLayerSpec *s, int M, int offset, guint32 seed)
{
  const int N = s->N, K = s->K, slice = 7;
  GRand *r = g_rand_new_with_seed (seed);
  Sam2QuantLinear *q = sam2_test_layer_new (r, s);
  float *x = sam2_test_input_new (r, q, M);
  float *ybuf = g_new (float, (size_t) M * N + offset);
  float *y = ybuf + offset;   /* the residual, then the output */
  for (size_t i = 0; i < (size_t) M * N; i++)
    y[i] = (float) sam2_test_gauss (r);
  float *residual = g_new (float, (size_t) M * N);
  memcpy (residual, y, (size_t) M * N * sizeof (float));
  prepare_path (q, NULL);
  void *scratch = g_malloc (sam2_quant_linear_scratch_bytes (q, M));
  sam2_quant_linear_forward (q, x, M, y, SAM2_ACT_NONE, y, scratch);
  const int starts[] = { 0, 4097, M / 2 + 1, M - 7 };
  float *part = nan_floats ((size_t) slice * N);
  for (guint i = 0; i < G_N_ELEMENTS (starts); i++) {
    const size_t o = (size_t) starts[i] * N;
    sam2_quant_linear_forward (q, x + (size_t) starts[i] * K, slice, part, SAM2_ACT_NONE,
                               residual + o, scratch);
    g_assert_cmpmem (part, (size_t) slice * N * sizeof (float), y + o,
                     (size_t) slice * N * sizeof (float));
  }
  g_free (part);
  g_free (scratch);
  g_free (residual);
  g_free (ybuf);
  g_free (x);
  sam2_test_layer_free (q);
  g_rand_free (r);
}

static void
test_streamed_output (void)
{
  const Sam2TestLayerSpec s = { .N = 1024, .K = 32, .G = 0, .dtype = SAM2_QTYPE_UINT4,
                                .mode = SAM2_ACT_QUANT_TOKEN_ASYM, .bias = TRUE };
  check_streamed_output (&s, 8192, 0, 15000);
}

/* Streamed outputs of up to 512 columns whose weights fit L1 are computed a row tile at a time
 * into a buffer and streamed from it in whole lines (AVX2): one group and several, a partial
 * channel block (N % 16), a last row block of 1 .. 2 rows past the 3-row tiles (M % 48 = 31),
 * and outputs at 16-byte and 4-byte alignments (the streamed lines start mid-row). */
static void
test_streamed_output_staged (void)
{
  const Sam2TestLayerSpec specs[] = {
    { .N = 296, .K = 96, .G = 0, .dtype = SAM2_QTYPE_UINT4, .mode = SAM2_ACT_QUANT_TOKEN_SYM,
      .bias = TRUE },
    { .N = 200, .K = 144, .G = 64, .dtype = SAM2_QTYPE_SINT4,
      .mode = SAM2_ACT_QUANT_TOKEN_ASYM, .bias = FALSE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (specs); i++) {
    /* just over 32 MiB of outputs */
    const int M = ((32 << 20) / (specs[i].N * (int) sizeof (float)) / 48 + 1) * 48 + 31;
    check_streamed_output (&specs[i], M, 0, 15100 + i);
    check_streamed_output (&specs[i], M, 1, 15200 + i);
  }
}

/* ---- the fused MLP ------------------------------------------------------------------------ */

typedef struct {
  Sam2TestLayerSpec fc1, fc2;  /* fc2.K = fc1.N, fc2.N = fc1.K */
  gboolean norm;
  Sam2Act act;
  Sam2TestResidual res;        /* IN_PLACE: y is x and the residual, as in a Hiera block */
  guint32 seed;
} MlpCase;

/* The unfused ops: LayerNorm, fc1 with act, fc2 with the residual, into y (M, N2). */
static void
mlp_unfused (const MlpCase *c, const Sam2QuantNorm *n, Sam2QuantLinear *fc1,
             Sam2QuantLinear *fc2, const float *x, int M, float *y, const float *residual)
{
  float *norm = g_new (float, (size_t) M * c->fc1.K);
  float *hidden = g_new (float, (size_t) M * c->fc1.N);
  void *scratch = g_malloc (MAX (sam2_quant_linear_scratch_bytes (fc1, M),
                                 sam2_quant_linear_scratch_bytes (fc2, M)));
  if (n != NULL)
    sam2_cpu_layer_norm (x, M, c->fc1.K, n->weight, n->bias, n->eps, norm);
  else
    memcpy (norm, x, (size_t) M * c->fc1.K * sizeof (float));
  sam2_quant_linear_forward (fc1, norm, M, hidden, c->act, NULL, scratch);
  sam2_quant_linear_forward (fc2, hidden, M, y, SAM2_ACT_NONE, residual, scratch);
  g_free (scratch);
  g_free (hidden);
  g_free (norm);
}

/* sam2_quant_mlp_forward equals the unfused ops bit for bit, on every kernel path, with rows
 * enough for every thread to take several row blocks (and a partial last block). */
static void
check_mlp_case (const MlpCase *c)
{
  GRand *r = g_rand_new_with_seed (c->seed);
  Sam2QuantLinear *fc1 = sam2_test_layer_new (r, &c->fc1);
  Sam2QuantLinear *fc2 = sam2_test_layer_new (r, &c->fc2);
  const int K1 = c->fc1.K;
  float *lnw = g_new (float, K1), *lnb = g_new (float, K1);
  for (int k = 0; k < K1; k++) {
    lnw[k] = (float) (1.0 + 0.3 * sam2_test_gauss (r));
    lnb[k] = (float) (0.2 * sam2_test_gauss (r));
  }
  const Sam2QuantNorm norm = { lnw, lnb, 1e-6f };
#ifdef _OPENMP
  const int threads = omp_get_max_threads ();
#else
  const int threads = 1;
#endif
  const int M = 4 * threads * 48 + 7;
  const size_t MK = (size_t) M * K1;
  float *x = g_new (float, MK), *residual = g_new (float, MK);
  for (size_t i = 0; i < MK; i++) {
    x[i] = (float) (3.0 + sam2_test_gauss (r));   /* a mean the LayerNorm removes */
    residual[i] = (float) sam2_test_gauss (r);
  }
  if (sam2_test_mode_static (c->fc1.mode))
    sam2_test_set_static_params (fc1, x, M);
  /* fc2's static range from the unfused hidden values would need them first: a fixed one */
  if (sam2_test_mode_static (c->fc2.mode)) {
    fc2->act_scale = 0.05f;
    fc2->act_zero = sam2_test_mode_asym (c->fc2.mode) ? 10.0f : 0.0f;
  }
  const Sam2QuantNorm *n = c->norm ? &norm : NULL;
  for (int p = 0; p < 3; p++) {
    prepare_path (fc1, kernel_paths[p]);
    prepare_path (fc2, kernel_paths[p]);
    g_assert_true (sam2_quant_mlp_fusable (fc1, fc2, M));
    g_assert_false (sam2_quant_mlp_fusable (fc1, fc2, 1));
    float *want = nan_floats (MK), *got = nan_floats (MK);
    const float *res = NULL;
    if (c->res == SAM2_TEST_RES_IN_PLACE) {
      memcpy (want, x, MK * sizeof (float));
      memcpy (got, x, MK * sizeof (float));
    } else if (c->res == SAM2_TEST_RES_SEPARATE) {
      res = residual;
    }
    const gboolean in_place = c->res == SAM2_TEST_RES_IN_PLACE;
    mlp_unfused (c, n, fc1, fc2, in_place ? want : x, M, want, in_place ? want : res);
    void *scratch = g_malloc (sam2_quant_mlp_scratch_bytes (fc1, fc2));
    sam2_quant_mlp_forward (n, fc1, c->act, fc2, in_place ? got : x, M, got,
                            in_place ? got : res, scratch);
    g_assert_cmpmem (got, MK * sizeof (float), want, MK * sizeof (float));
    g_free (scratch);
    g_free (got);
    g_free (want);
  }
  g_free (residual);
  g_free (x);
  g_free (lnb);
  g_free (lnw);
  sam2_test_layer_free (fc2);
  sam2_test_layer_free (fc1);
  g_rand_free (r);
}

static void
test_fused_mlp (void)
{
  const MlpCase cases[] = {
    /* a Hiera MLP: folded smoothing before fc1, post-GELU asymmetric with smoothing for fc2;
     * K1 and N2 not multiples of 32 or 16, fc2 with a tail group */
    { .fc1 = { .N = 160, .K = 40, .G = 0, .dtype = SAM2_QTYPE_SINT4,
               .mode = SAM2_ACT_QUANT_TOKEN_SYM, .bias = TRUE },
      .fc2 = { .N = 40, .K = 160, .G = 64, .dtype = SAM2_QTYPE_SINT4,
               .mode = SAM2_ACT_QUANT_TOKEN_ASYM, .bias = TRUE, .smooth = TRUE },
      .norm = TRUE, .act = SAM2_ACT_GELU, .res = SAM2_TEST_RES_IN_PLACE, .seed = 16000 },
    /* a wide hidden layer (fewer rows per block), static modes, no norm, a separate residual */
    { .fc1 = { .N = 4096, .K = 24, .G = 0, .dtype = SAM2_QTYPE_UINT4,
               .mode = SAM2_ACT_QUANT_TENSOR_SYM, .smooth = TRUE },
      .fc2 = { .N = 24, .K = 4096, .G = 256, .dtype = SAM2_QTYPE_UINT4,
               .mode = SAM2_ACT_QUANT_TENSOR_ASYM, .bias = TRUE },
      .norm = FALSE, .act = SAM2_ACT_RELU, .res = SAM2_TEST_RES_SEPARATE, .seed = 16001 },
    /* no residual, no activation, odd sizes and a group size that is not a multiple of 32 */
    { .fc1 = { .N = 100, .K = 33, .G = 0, .dtype = SAM2_QTYPE_UINT4,
               .mode = SAM2_ACT_QUANT_TOKEN_ASYM, .bias = TRUE },
      .fc2 = { .N = 33, .K = 100, .G = 48, .dtype = SAM2_QTYPE_SINT4,
               .mode = SAM2_ACT_QUANT_TOKEN_SYM },
      .norm = TRUE, .act = SAM2_ACT_NONE, .res = SAM2_TEST_RES_NONE, .seed = 16002 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    check_mlp_case (&cases[i]);
}

/* Low-rank branches and weight-only layers are not fused. */
static void
test_fused_mlp_refused (void)
{
  Sam2TestLayerSpec s1 = { .N = 64, .K = 32, .G = 0, .dtype = SAM2_QTYPE_UINT4,
                           .mode = SAM2_ACT_QUANT_TOKEN_SYM };
  Sam2TestLayerSpec s2 = { .N = 32, .K = 64, .G = 0, .dtype = SAM2_QTYPE_UINT4,
                           .mode = SAM2_ACT_QUANT_TOKEN_ASYM, .rank = 4 };
  GRand *r = g_rand_new_with_seed (16100);
  Sam2QuantLinear *fc1 = sam2_test_layer_new (r, &s1), *fc2 = sam2_test_layer_new (r, &s2);
  s2.rank = 0;
  s2.mode = SAM2_ACT_QUANT_NONE;
  Sam2QuantLinear *wo = sam2_test_layer_new (r, &s2);
  prepare_path (fc1, NULL);
  prepare_path (fc2, NULL);
  g_assert_false (sam2_quant_mlp_fusable (fc1, fc2, 1 << 20));
  g_assert_false (sam2_quant_mlp_fusable (fc1, wo, 1 << 20));   /* wo not prepared */
  prepare_path (wo, NULL);
  g_assert_false (sam2_quant_mlp_fusable (fc1, wo, 1 << 20));
  sam2_test_layer_free (wo);
  sam2_test_layer_free (fc2);
  sam2_test_layer_free (fc1);
  g_rand_free (r);
}

/* (a) Codes, scales and zero points exactly as this file's quantizer, through each activation
 * quantizer the CPU has (the vector one and the C one). */
static void
test_quantize_activations (void)
{
  static const int Ks[] = { 1, 7, 31, 32, 33, 96, 97, 1536 };
  int i = 0;
  for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
    for (int mode = 1; mode < 5; mode++)
      for (int smooth = 0; smooth < 2; smooth++, i++) {
        const Sam2TestLayerSpec s = { .N = 1, .K = Ks[ki], .G = 0, .dtype = SAM2_QTYPE_UINT4,
                                      .mode = (Sam2ActQuantMode) mode, .smooth = smooth,
                                      .dyadic = i % 3 == 0 };
        GRand *r = g_rand_new_with_seed (9000 + i);
        Sam2QuantLinear *q = sam2_test_layer_new (r, &s);
        const int M = 16, K = Ks[ki], stride = K + 3;
        float *x = sam2_test_input_new (r, q, M);
        sam2_test_set_static_params (q, x, M);
        /* rows with a NaN or an infinity (in the vector part, and in the scalar tail) */
        x[(size_t) 3 * K + (i * 7) % K] = NAN;
        x[(size_t) 7 * K + K - 1] = INFINITY;
        x[(size_t) 11 * K] = -INFINITY;
        int *want = g_new (int, K);
        guint8 *codes = g_new (guint8, (size_t) M * stride);
        float *scales = g_new (float, M);
        int32_t *zeros = g_new (int32_t, M);
        for (guint p = 0; p < G_N_ELEMENTS (kernel_paths); p++) {
          if (kernel_paths[p] != NULL)
            g_setenv ("SAM2_QUANT_KERNEL", kernel_paths[p], TRUE);
          memset (codes, 0xa5, (size_t) M * stride);
          sam2_quantize_activations (q, x, M, codes, stride, scales, zeros);
          g_unsetenv ("SAM2_QUANT_KERNEL");
          for (int m = 0; m < M; m++) {
            float sa;
            int za;
            test_quantize_row (q, x + (size_t) m * K, want, &sa, &za);
            g_assert_true (scales[m] == sa || (isnan (scales[m]) && isnan (sa)));
            g_assert_cmpint (zeros[m], ==, za);
            for (int k = 0; k < K; k++) {
              const guint8 b = codes[(size_t) m * stride + k];
              const int got = sam2_test_mode_asym (q->act) ? b : (gint8) b;
              if (got != want[k])
                g_error ("K %d %s smooth %d row %d [%d]: code %d, want %d (x %.9g, scale %.9g)", K,
                         sam2_test_mode_names[mode], smooth, m, k, got, want[k],
                         x[(size_t) m * K + k], sa);
            }
            for (int k = K; k < stride; k++)
              g_assert_cmpint (codes[(size_t) m * stride + k], ==, 0xa5);  /* past K: untouched */
          }
        }
        g_free (want);
        g_free (codes);
        g_free (scales);
        g_free (zeros);
        g_free (x);
        sam2_test_layer_free (q);
        g_rand_free (r);
      }
}

/* A token holding a NaN or an infinity gives NaN outputs on every kernel path and in the
 * reference (formats.h), as the float layer would, and leaves the other tokens as they are: the
 * range once dropped a NaN (vmaxps), shrinking the row's scale, and an infinite scale coded
 * every finite value as 0, so the row came out finite and wrong. */
static void
test_non_finite_rows (void)
{
  static const float bad[] = { NAN, INFINITY, -INFINITY };
  static const int Ks[] = { 33, 96, 100 };
  int i = 0;
  for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
    for (int mode = 1; mode < 5; mode++)
      for (guint b = 0; b < G_N_ELEMENTS (bad); b++, i++) {
        const int K = Ks[ki], M = 5, N = 24;
        const Sam2TestLayerSpec spec = { .N = N, .K = K, .G = 32, .dtype = SAM2_QTYPE_SINT4,
                                         .mode = (Sam2ActQuantMode) mode, .bias = TRUE,
                                         .smooth = i % 2, .rank = i % 3 == 0 ? 4 : 0 };
        GRand *r = g_rand_new_with_seed (7700 + i);
        Sam2QuantLinear *q = sam2_test_layer_new (r, &spec);
        float *x = sam2_test_input_new (r, q, M);
        sam2_test_set_static_params (q, x, M);
        float *clean = g_memdup2 (x, (size_t) M * K * sizeof (float));
        x[(size_t) 2 * K + (i * 5) % K] = bad[b];
        for (guint p = 0; p <= G_N_ELEMENTS (kernel_paths); p++) {
          const gboolean reference = p == G_N_ELEMENTS (kernel_paths);
          if (!reference)
            prepare_path (q, kernel_paths[p]);
          void (*fn) (const Sam2QuantLinear *, const float *, int, float *, Sam2Act,
                      const float *, void *)
              = reference ? sam2_quant_linear_reference : sam2_quant_linear_forward;
          float *y = run (fn, q, x, M, SAM2_ACT_GELU, SAM2_TEST_RES_NONE, NULL);
          float *y_clean = run (fn, q, clean, M, SAM2_ACT_GELU, SAM2_TEST_RES_NONE, NULL);
          for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
              const size_t o = (size_t) m * N + n;
              if (m == 2 ? !isnan (y[o]) : memcmp (&y[o], &y_clean[o], sizeof (float)) != 0)
                g_error ("K %d %s, %g in row 2, %s: y[%d][%d] = %.9g (without it %.9g)", K,
                         sam2_test_mode_names[mode], bad[b],
                         reference ? "reference" : kernel_paths[p] ? kernel_paths[p] : "best",
                         m, n, y[o], y_clean[o]);
            }
          g_free (y);
          g_free (y_clean);
        }
        g_free (clean);
        g_free (x);
        sam2_test_layer_free (q);
        g_rand_free (r);
      }
}

/* Inputs whose quantization is exact: the row's values are whole multiples of a power-of-two
 * scale 2^-e with codes spanning the full range (so the dynamic scale comes out exactly 2^-e),
 * divided by power-of-two smoothing factors. */
static float *
dyadic_input (GRand *r, Sam2QuantLinear *q, int M, gboolean extreme)
{
  const int K = q->w.k;
  const gboolean asym = sam2_test_mode_asym (q->act);
  const int e = g_rand_int_range (r, 0, 3);
  /* extreme asymmetric rows sit at the bottom of the range (za 255: every u - za is -255 or 0) */
  const int za = asym ? (extreme ? 255 : g_rand_int_range (r, 0, 256)) : 0;
  const float step = ldexpf (1.0f, -e);
  float *x = g_new (float, (size_t) M * K);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      int a;
      if (extreme) /* the int16 limits of the AVX2 kernel (see below); row 0 all at the bottom */
        a = asym ? (m == 0 || (m + k) % 5 == 0 ? 0 : 255)
                 : (m == 0 || (m + k) % 5 == 0 ? -127 : 127);
      else if (k == 0)
        a = asym ? 0 : 127;
      else if (k == 1)
        a = asym ? 255 : -127;
      else
        a = asym ? g_rand_int_range (r, 0, 256) : g_rand_int_range (r, -127, 128);
      float v = (float) (a - za) * step;
      if (q->smooth_inv != NULL)
        v /= q->smooth_inv[k];
      x[(size_t) m * K + k] = v;
    }
  /* dynamic modes find the same: each row's range is exactly (0 - za) .. (255 - za) steps
   * (asymmetric) or -127 .. 127 steps (symmetric) */
  if (sam2_test_mode_static (q->act)) {
    q->act_scale = step;
    q->act_zero = (float) za;
  }
  return x;
}

/* (b) exactly: power-of-two weight scales, activation scales and smoothing, small-integer codes,
 * bias and low-rank factors on a grid of 1/2. Every float step of kernel and reference is then
 * exact, as is the float64 model: all three must agree bit for bit, which they do only if the
 * integer sums are exact. The extreme inputs reach the int16 sums of the AVX2 kernel at their
 * limits: weight codes 15 against activations stored as -128 (asymmetric codes 0) or +-127, 8
 * pairs of products per sum (-30720 and +-30480, against 32767), and weights at +-15 after their
 * zero points. */
static void
test_exact (void)
{
  static const int Ks[] = { 96, 97, 144, 256, 384 };
  /* 40: a group size that is not a multiple of the kernel's 16-column steps (formats.h names
   * 64, 128, 256 and K; the kernel pads any size) */
  static const int Gs[] = { 64, 128, 0, 40 };
  int i = 0;
  for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
    for (int mode = 1; mode < 5; mode++)
      for (int extreme = 0; extreme < 2; extreme++, i++) {
        const Sam2TestLayerSpec s = { .N = 37, .K = Ks[ki], .G = Gs[i / 2 % 4],
                                      .dtype = i % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4,
                                      .mode = (Sam2ActQuantMode) mode, .bias = !extreme,
                                      .smooth = i / 2 % 2, .rank = extreme ? 0 : 4,
                                      .dyadic = TRUE };
        GRand *r = g_rand_new_with_seed (11000 + i);
        Sam2QuantLinear *q = sam2_test_layer_new (r, &s);
        const int M = 9, N = s.N, K = s.K;
        if (extreme) {
          /* every weight -15 or +15: codes 0 / 15 against zero points 15 / 0 (UINT4); SINT4
           * reaches -8 .. 7 only */
          for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++)
              sam2_w4_set (q->w.codes, K, n, k, (n + k) % 3 ? 15 : 0);
          if (s.dtype == SAM2_QTYPE_UINT4)
            for (int g = 0; g < N * q->w.n_groups; g++)
              q->w.zeros[g] = g % 2 ? 15 : 0;
        }
        float *x = dyadic_input (r, q, M, extreme);
        const Sam2Act act = i / 2 % 2 ? SAM2_ACT_RELU : SAM2_ACT_NONE;
        const Sam2TestResidual rk = (Sam2TestResidual) (i % 3);
        float *residual = g_new (float, (size_t) M * N);
        for (int j = 0; j < M * N; j++)
          residual[j] = g_rand_int_range (r, -64, 65) / 4.0f;
        Model64 o = model64 (q, x, M, act, rk == SAM2_TEST_RES_NONE ? NULL : residual);
        /* the model's sums are exact (float64, 53 bits) and their results fit float32 exactly:
         * check the construction is what it claims */
        for (int j = 0; j < M * N; j++)
          g_assert_cmpfloat (o.y[j], ==, (double) (float) o.y[j]);
        float *ref = run (sam2_quant_linear_reference, q, x, M, act, rk, residual);
        for (guint p = 0; p < G_N_ELEMENTS (kernel_paths); p++) {
          prepare_path (q, kernel_paths[p]);
          float *y = run (sam2_quant_linear_forward, q, x, M, act, rk, residual);
          for (int j = 0; j < M * N; j++)
            if (y[j] != (float) o.y[j] || ref[j] != (float) o.y[j])
              g_error ("exact K %d %s extreme %d path %s [%d]: kernel %.9g, reference %.9g, "
                       "float64 %.17g", K, sam2_test_mode_names[mode], extreme,
                       kernel_paths[p] ? kernel_paths[p] : "best", j, y[j], ref[j], o.y[j]);
          g_free (y);
        }
        model64_free (&o);
        g_free (ref);
        g_free (residual);
        g_free (x);
        sam2_test_layer_free (q);
        g_rand_free (r);
      }
}

/* sam2_w4_dequantize is (q - z) s in float, element by element: nibble order, odd K, groups. */
static void
test_dequantize (void)
{
  static const int Ks[] = { 1, 97, 112, 256 };
  for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++) {
    const Sam2TestLayerSpec s = { .N = 5, .K = Ks[ki], .G = 64, .dtype = SAM2_QTYPE_UINT4 };
    GRand *r = g_rand_new_with_seed (13000 + ki);
    Sam2QuantLinear *q = sam2_test_layer_new (r, &s);
    const int K = s.K, NG = q->w.n_groups;
    float *w = nan_floats ((size_t) s.N * K);
    sam2_w4_dequantize (&q->w, w);
    for (int n = 0; n < s.N; n++)
      for (int k = 0; k < K; k++) {
        const guint8 byte = q->w.codes[(size_t) n * ((K + 1) / 2) + k / 2];
        const int code = k % 2 ? byte >> 4 : byte & 15;  /* formats.h: low nibble for even k */
        const int g = k / 64;
        g_assert_cmpfloat (w[(size_t) n * K + k], ==,
                           (float) (code - q->w.zeros[n * NG + g]) * q->w.scales[n * NG + g]);
      }
    g_free (w);
    sam2_test_layer_free (q);
    g_rand_free (r);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/quant-linear/dequantize", test_dequantize);
  g_test_add_func ("/quant-linear/quantize-activations", test_quantize_activations);
  g_test_add_func ("/quant-linear/exact", test_exact);
  g_test_add_func ("/quant-linear/non-finite-rows", test_non_finite_rows);
  g_test_add_func ("/quant-linear/epilogue", test_epilogue);
  g_test_add_func ("/quant-linear/shapes", test_shapes);
  g_test_add_func ("/quant-linear/many-rows", test_many_rows);
  g_test_add_func ("/quant-linear/streamed-output", test_streamed_output);
  g_test_add_func ("/quant-linear/streamed-output-staged", test_streamed_output_staged);
  g_test_add_func ("/quant-linear/fused-mlp", test_fused_mlp);
  g_test_add_func ("/quant-linear/fused-mlp-refused", test_fused_mlp_refused);
  int status = g_test_run ();
#ifdef _OPENMP
  /* joins libgomp's worker threads, which otherwise outlive main (valgrind) */
  omp_pause_resource_all (omp_pause_hard);
#endif
  return status;
}
