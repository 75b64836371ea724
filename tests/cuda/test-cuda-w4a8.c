/* test-cuda-w4a8.c: the W4A8 kernels of the CUDA backend (kernels/gemm-w4a8.cu,
 * kernels/layernorm-quant.cu) against the CPU quantized linear layer (core/quant/linear-cpu.c).
 *
 *   (a) sam2_cuda_quantize_rows against sam2_quantize_activations: codes, scales and zero points
 *       bit for bit (the kernel rows' int8 form mapped back to formats.h's), every padding byte
 *       of the kernel rows 0, the group sums exact, and the fused low-rank down-projection t
 *       against a float64 dot product within float32 summation error;
 *   (b) sam2_cuda_w4a8_linear against sam2_quant_linear_forward (the CPU's integer kernel) on
 *       fresh random layers: UINT4 and SINT4, groups of 64, 128, 256 and one per channel, K in
 *       {96, 112, 144, 192, 256, 448, 576, 768, 1536} (tail groups where K is not a multiple;
 *       rows of 128, 192 and 256 bytes and longer, each width of the quantization's sweep), N in
 *       {96, 200, 384} (and 640), M in {1, 5, 64, 300, 3400, 4096}, the four
 *       activation-quantization modes, bias, smoothing, rank 0 / 16 / 32 (and 160, the cuBLAS
 *       down-projection), every activation, residual separate and in place.
 *   (c) sam2_cuda_w4a8_norm_linear (the LayerNorm, and a window partition, fused into the
 *       quantization) against sam2_cuda_layer_norm (sam2_cuda_window_partition) then
 *       sam2_cuda_w4a8_linear on the device: y and the kernel rows the same bytes; refused
 *       (UNSUPPORTED, nothing launched) exactly where kernels.h says.
 *   (d) tokens holding a NaN or an infinity: scale NaN and the codes of 0 as on the CPU, so NaN
 *       outputs for them and the others unaffected.
 *   (e) sam2_cuda_w4a8_gemm_quantize_next (an MLP's fc1 GEMM quantizing its output for fc2)
 *       against sam2_cuda_w4a8_linear then sam2_cuda_quantize_rows: y and fc2's kernel rows the
 *       same bytes, twice, the tile counters back at 0; refused where kernels.h says.
 * The whole list runs on each kernel version (kernels.h, SAM2_W4A8_KERNEL): v1, v2 and v3 (v2's
 * arithmetic with deeper, persistent tiles: the same bits as v2 wherever v2 has them), each with
 * its own summary lines ("v1: ... PASS"); the exit status fails if any fails.
 * Device outputs start as NaN (every element must be written), the workspace starts as 0xff
 * bytes, and a canary after y must survive. Exits 77 (skipped) without a CUDA device.
 * --max-work MACS skips the cases with more than MACS multiply-adds (M N K) and counts them, and
 * --kernel-version N runs kernel version N only: the SIMT emulator's runs of this file
 * (tests/simt), which execute every GPU thread on the host.
 *
 * Tolerances (max |gpu - cpu| over the output, relative to the scale: max |y| of the CPU's
 * output and, with an activation, of its input, the CPU's output without activation and
 * residual), added up per case:
 *   - TOL_INTEGER, always: the integer sums are exact on both sides and the per-group float
 *     steps are the CPU kernel's operation for operation, so without a low-rank branch and with
 *     no activation or ReLU the outputs should be the same floats (bit-identical cases are
 *     counted and printed); the bound leaves room for a CPU build whose compiler contracts the
 *     epilogue's multiply-adds into FMAs (one rounding per add).
 *   - TOL_ACT_APPROX, GELU / GELU-tanh / SiLU / sigmoid: CUDA's erff / tanhf / expf against the
 *     CPU's approximations (tests/core/test-quant-linear.c bounds those at 5e-7 relative plus
 *     2.4e-7 |x| absolute for the GELUs, x the pre-activation, which may exceed max |y|).
 *   - TOL_LOWRANK, with a low-rank branch: t = (x smooth_inv) L_down^T is summed over K in
 *     float32 in a different order than the CPU's sgemm (which also folds smooth_inv into L_down
 *     first): K U of the branch at worst, sqrt(K) U typically, the branch being ~5 % of y.
 * A real defect (a wrong nibble, a dropped tail column, a zero point not removed) moves an
 * element by at least one product term, about 1 / K of the row's magnitude: >= 6e-4 here. */
#include "formats.h"
#include "kernels.h"
#include "linear-cpu.h"
#include "cuda-check.h"
#include "quant-layers.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_INTEGER 1e-6
#define TOL_ACT_APPROX 3e-6
#define TOL_LOWRANK 3e-6
/* t of the fused down-projection against float64: K float32 roundings of the sum of |terms| */
#define TOL_T_PER_K 1.2e-7

static int failures, checks;
static int verbose;                /* --verbose: every case's error */
static double max_work;            /* --max-work: M N K above which a case is skipped; 0: none */
static int skipped_cases;
static int only_version;           /* --kernel-version: 1, 2 or 3; 0: all */

static int
skip_case (const Sam2TestCase *c)
{
  if (max_work > 0 && (double) c->M * c->spec.N * c->spec.K > max_work) {
    skipped_cases++;
    return 1;
  }
  return 0;
}

/* Cases, random layers and inputs: tests/common/quant-layers.h, as in test-quant-linear.c. */

/* ---- the layer on the device -------------------------------------------------------------- */

typedef struct {
  Sam2CudaW4A8Layer l;
  void *blob, *bias, *smooth, *ldown, *lup;
} DevLayer;

static void *
upload (const void *host, size_t bytes)
{
  if (host == NULL)
    return NULL;
  void *d = NULL;
  CK (cudaMalloc (&d, bytes));
  CK (cudaMemcpy (d, host, bytes, cudaMemcpyHostToDevice));
  return d;
}

static void
dev_layer_init (DevLayer *d, const Sam2QuantLinear *q)
{
  const int N = q->w.n, K = q->w.k, R = q->rank;
  memset (d, 0, sizeof *d);
  Sam2CudaW4A8Layer *l = &d->l;
  sam2_cuda_w4a8_geometry (N, K, q->w.group_size, &l->geo);
  if (l->geo.n_groups != q->w.n_groups) {
    fprintf (stderr, "geometry: %d groups, formats.h says %d\n", l->geo.n_groups,
             q->w.n_groups);
    exit (1);
  }
  Sam2CudaW4A8Blob b;
  sam2_cuda_w4a8_blob_layout (&l->geo, &b);
  void *host = g_malloc (b.total);
  sam2_cuda_w4a8_pack_host (&l->geo, q->w.codes, q->w.scales, q->w.zeros, host);
  d->blob = upload (host, b.total);
  g_free (host);
  l->act_mode = (int) q->act;
  l->act_scale = q->act_scale;
  l->act_zero = q->act_zero;
  l->w = (const uint32_t *) ((char *) d->blob + b.w);
  l->wzero = (const int32_t *) ((char *) d->blob + b.wzero);
  l->wsum = (const int32_t *) ((char *) d->blob + b.wsum);
  l->wscale = (const float *) ((char *) d->blob + b.wscale);
  d->bias = upload (q->bias, (size_t) N * sizeof (float));
  d->smooth = upload (q->smooth_inv, (size_t) K * sizeof (float));
  d->ldown = upload (q->lora_down, (size_t) R * K * sizeof (float));
  d->lup = upload (q->lora_up, (size_t) N * R * sizeof (float));
  l->bias = d->bias;
  l->smooth_inv = d->smooth;
  l->rank = R;
  l->lora_down = d->ldown;
  l->lora_up = d->lup;
}

static void
dev_layer_free (DevLayer *d)
{
  CK (cudaFree (d->blob));
  CK (cudaFree (d->bias));
  CK (cudaFree (d->smooth));
  CK (cudaFree (d->ldown));
  CK (cudaFree (d->lup));
}

/* ---- (a) quantization --------------------------------------------------------------------- */

static void
fail (const char *name, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (failures < 40)
    fprintf (stderr, "FAIL %s: %s\n", name, msg);
  g_free (msg);
  failures++;
}

static void
check_quantize (const char *name, const Sam2QuantLinear *q, const DevLayer *d, const float *x,
                const float *dx, int M)
{
  const Sam2CudaW4A8Geometry *geo = &d->l.geo;
  const int K = q->w.k, R = q->rank, NG = geo->n_groups, RB = geo->row_bytes;
  Sam2CudaActRows rows;
  const size_t cbytes = (size_t) M * RB;
  CK (cudaMalloc ((void **) &rows.codes, cbytes));
  CK (cudaMalloc ((void **) &rows.scales, (size_t) M * 4));
  CK (cudaMalloc ((void **) &rows.zeros, (size_t) M * 4));
  CK (cudaMalloc ((void **) &rows.sums, (size_t) M * NG * 4));
  rows.t = NULL;
  if (R > 0 && R <= SAM2_CUDA_QUANT_MAX_FUSED_RANK)
    CK (cudaMalloc ((void **) &rows.t, (size_t) M * R * 4));
  CK (cudaMemset (rows.codes, 0x5a, cbytes));   /* a pad byte left unwritten reads 0x5a */
  CK (cudaMemset (rows.scales, 0xff, (size_t) M * 4));
  CK (cudaMemset (rows.zeros, 0xff, (size_t) M * 4));
  CK (cudaMemset (rows.sums, 0xff, (size_t) M * NG * 4));
  if (rows.t != NULL)
    CK (cudaMemset (rows.t, 0xff, (size_t) M * R * 4));
  int st = sam2_cuda_quantize_rows (&d->l, dx, M, &rows, 0);
  CK (cudaDeviceSynchronize ());
  checks++;
  if (st != SAM2_CUDA_OK) {
    fail (name, "sam2_cuda_quantize_rows returned %d", st);
    goto out;
  }
  {
    int8_t *gc = g_malloc (cbytes);                  /* (M, row_bytes) */
    float *gs = g_new (float, M), *gt = NULL;
    int32_t *gz = g_new (int32_t, M), *gsum = g_new (int32_t, (size_t) M * NG);
    CK (cudaMemcpy (gc, rows.codes, cbytes, cudaMemcpyDeviceToHost));
    CK (cudaMemcpy (gs, rows.scales, (size_t) M * 4, cudaMemcpyDeviceToHost));
    CK (cudaMemcpy (gz, rows.zeros, (size_t) M * 4, cudaMemcpyDeviceToHost));
    CK (cudaMemcpy (gsum, rows.sums, (size_t) M * NG * 4, cudaMemcpyDeviceToHost));
    if (rows.t != NULL) {
      gt = g_new (float, (size_t) M * R);
      CK (cudaMemcpy (gt, rows.t, (size_t) M * R * 4, cudaMemcpyDeviceToHost));
    }
    guint8 *cc = g_malloc ((size_t) M * K);          /* (M, K) formats.h codes */
    float *cs = g_new (float, M);
    int32_t *cz = g_new (int32_t, M);
    sam2_quantize_activations (q, x, M, cc, K, cs, cz);
    const int asym = sam2_test_mode_asym (q->act);
    const int G = geo->group_size, GP = geo->group_pad;
    int bad = 0;
    for (int m = 0; m < M && bad < 5; m++) {
      if (memcmp (&gs[m], &cs[m], 4) != 0) {
        fail (name, "row %d scale %.9g, cpu %.9g", m, gs[m], cs[m]);
        bad++;
      }
      if (gz[m] != (asym ? cz[m] - 128 : 0)) {
        fail (name, "row %d zero %d, cpu za %d", m, gz[m], cz[m]);
        bad++;
      }
      for (int p = 0; p < RB && bad < 5; p++) {
        const int g = p / GP, off = p % GP, k = g * G + off;
        int want = 0;
        if (g < NG && off < G && k < K) {
          const guint8 c = cc[(size_t) m * K + k];
          want = asym ? (int) c - 128 : (int) (gint8) c;
        }
        if (gc[(size_t) m * RB + p] != want) {
          fail (name, "row %d byte %d (k %d): code %d, cpu %d", m, p, k, gc[(size_t) m * RB + p],
                want);
          bad++;
        }
      }
      for (int g = 0; g < NG && bad < 5; g++) {
        int32_t s = 0;
        for (int k = g * G; k < K && k < (g + 1) * G; k++) {
          const guint8 c = cc[(size_t) m * K + k];
          s += asym ? (int) c - 128 : (int) (gint8) c;
        }
        if (gsum[(size_t) m * NG + g] != s) {
          fail (name, "row %d group %d sum %d, cpu %d", m, g, gsum[(size_t) m * NG + g], s);
          bad++;
        }
      }
      for (int i = 0; gt != NULL && i < R && bad < 5; i++) {
        double acc = 0.0, mag = 0.0;
        for (int k = 0; k < K; k++) {
          const float v = q->smooth_inv != NULL ? x[(size_t) m * K + k] * q->smooth_inv[k]
                                                : x[(size_t) m * K + k];
          acc += (double) v * q->lora_down[(size_t) i * K + k];
          mag += fabs ((double) v * q->lora_down[(size_t) i * K + k]);
        }
        const double e = fabs (gt[(size_t) m * R + i] - acc);
        /* a token with a NaN or an infinity: t is not finite either ((d)) */
        if (isfinite (acc) ? !(e <= TOL_T_PER_K * K * mag + 1e-30)
                           : isfinite (gt[(size_t) m * R + i])) {
          fail (name, "row %d t[%d] %.9g, float64 %.9g", m, i, gt[(size_t) m * R + i], acc);
          bad++;
        }
      }
    }
    g_free (gc);
    g_free (gs);
    g_free (gz);
    g_free (gsum);
    g_free (gt);
    g_free (cc);
    g_free (cs);
    g_free (cz);
  }
out:
  CK (cudaFree (rows.codes));
  CK (cudaFree (rows.scales));
  CK (cudaFree (rows.zeros));
  CK (cudaFree (rows.sums));
  CK (cudaFree (rows.t));
}

/* ---- (b) the whole layer ------------------------------------------------------------------ */

#define CANARY 64                  /* floats after y that must keep their pattern */
#define CANARY_BITS 0x7f8cafe5u    /* a signalling NaN no kernel writes */
#define WS_CANARY 256              /* bytes after the workspace that must keep their pattern */

static double worst_integer, worst_other;   /* exact-path cases; activation / low-rank ones */
static int exact_cases, integer_cases;

static void
run_case (const Sam2TestCase *c, cublasHandle_t cublas, int check_codes)
{
  if (skip_case (c))
    return;
  char *name = sam2_test_case_name (c);
  float *x, *res;                                    /* (M, K); (M, N) or NULL */
  Sam2QuantLinear *q = sam2_test_case_new (c, &x, &res);
  const int M = c->M, N = q->w.n, K = q->w.k;

  /* the CPU's integer kernel */
  if (!sam2_quant_linear_prepare (q)) {
    fprintf (stderr, "prepare failed\n");
    exit (1);
  }
  float *want = g_new (float, (size_t) M * N);       /* (M, N) */
  if (res != NULL)
    memcpy (want, res, (size_t) M * N * sizeof (float));
  void *scratch = g_malloc (MAX (sam2_quant_linear_scratch_bytes (q, M), 1));
  sam2_quant_linear_forward (q, x, M, want, c->act, c->res == SAM2_TEST_RES_NONE ? NULL : want,
                             scratch);
  /* the scale of the errors: outputs, and for an activation its input too (an error there
   * passes through with the activation's slope while the output may be squashed, sigmoid's
   * into (0, 1)) */
  double scale = 0.0;
  for (size_t i = 0; i < (size_t) M * N; i++)
    scale = MAX (scale, fabs (want[i]));
  if (c->act != SAM2_ACT_NONE) {
    float *pre = g_new (float, (size_t) M * N);    /* (M, N) */
    sam2_quant_linear_forward (q, x, M, pre, SAM2_ACT_NONE, NULL, scratch);
    for (size_t i = 0; i < (size_t) M * N; i++)
      scale = MAX (scale, fabs (pre[i]));
    g_free (pre);
  }
  g_free (scratch);

  DevLayer d;
  dev_layer_init (&d, q);
  float *dx = upload (x, (size_t) M * K * sizeof (float));
  float *dy = NULL, *dres = NULL;
  const size_t ybytes = (size_t) M * N * sizeof (float);
  CK (cudaMalloc ((void **) &dy, ybytes + CANARY * sizeof (float)));
  CK (cudaMemset (dy, 0xff, ybytes));                /* NaN: every element must be written */
  {
    uint32_t canary[CANARY];
    for (int i = 0; i < CANARY; i++)
      canary[i] = CANARY_BITS;
    CK (cudaMemcpy ((char *) dy + ybytes, canary, sizeof canary, cudaMemcpyHostToDevice));
  }
  if (c->res == SAM2_TEST_RES_SEPARATE)
    dres = upload (res, ybytes);
  else if (c->res == SAM2_TEST_RES_IN_PLACE)
    CK (cudaMemcpy (dy, res, ybytes, cudaMemcpyHostToDevice));
  /* the workspace as 0xff bytes, then WS_CANARY bytes of 0xa5 that must survive */
  const size_t wbytes = sam2_cuda_w4a8_linear_workspace_bytes (&d.l, M);
  void *ws = NULL;
  CK (cudaMalloc (&ws, wbytes + WS_CANARY));
  CK (cudaMemset (ws, 0xff, wbytes));
  CK (cudaMemset ((char *) ws + wbytes, 0xa5, WS_CANARY));
  const int st = sam2_cuda_w4a8_linear (&d.l, dx, M, dy, (int) c->act,
                                        c->res == SAM2_TEST_RES_SEPARATE ? dres
                                        : c->res == SAM2_TEST_RES_IN_PLACE ? dy : NULL,
                                        cublas, 0, ws);
  CK (cudaDeviceSynchronize ());
  checks++;
  if (st != SAM2_CUDA_OK) {
    fail (name, "sam2_cuda_w4a8_linear returned %d", st);
  } else {
    float *got = g_malloc (ybytes + CANARY * sizeof (float));
    CK (cudaMemcpy (got, dy, ybytes + CANARY * sizeof (float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < CANARY; i++) {
      uint32_t b;
      memcpy (&b, &got[(size_t) M * N + i], 4);
      if (b != CANARY_BITS) {
        fail (name, "wrote past y (float %d after the end)", i);
        break;
      }
    }
    double emax = 0.0;
    size_t worst = 0, unwritten = 0, same = 0;
    for (size_t i = 0; i < (size_t) M * N; i++) {
      if (isnan (got[i])) {
        unwritten++;
        continue;
      }
      same += memcmp (&got[i], &want[i], 4) == 0;
      const double e = fabs ((double) got[i] - want[i]);
      if (e > emax) {
        emax = e;
        worst = i;
      }
    }
    const double rel = emax / MAX (scale, 1e-30);
    const int approx = c->act != SAM2_ACT_NONE && c->act != SAM2_ACT_RELU;
    const double tol = TOL_INTEGER + (approx ? TOL_ACT_APPROX : 0.0)
                       + (c->spec.rank > 0 ? TOL_LOWRANK : 0.0);
    if (verbose)
      printf ("%s: error %.3g of the scale (%.2f of the tolerance)%s\n", name, rel, rel / tol,
              same == (size_t) M * N ? ", bit-identical" : "");
    if (c->spec.rank > 0 || approx) {
      worst_other = MAX (worst_other, rel);
    } else {
      worst_integer = MAX (worst_integer, rel);
      integer_cases++;
      exact_cases += same == (size_t) M * N;
    }
    if (unwritten > 0)
      fail (name, "%zu of %zu outputs not written (NaN)", unwritten, (size_t) M * N);
    else if (!(rel <= tol))
      fail (name, "max error %.3g of the scale %.3g = %.3g > %.1g at (%zu, %zu): %.9g, cpu %.9g",
            emax, scale, rel, tol, worst / N, worst % N, got[worst], want[worst]);
    g_free (got);
    guint8 tail[WS_CANARY];
    CK (cudaMemcpy (tail, (char *) ws + wbytes, WS_CANARY, cudaMemcpyDeviceToHost));
    for (int i = 0; i < WS_CANARY; i++)
      if (tail[i] != 0xa5) {
        fail (name, "wrote past the workspace (byte %d after its %zu)", i, wbytes);
        break;
      }
  }
  if (check_codes)
    check_quantize (name, q, &d, x, dx, M);

  CK (cudaFree (ws));
  CK (cudaFree (dy));
  CK (cudaFree (dres));
  CK (cudaFree (dx));
  dev_layer_free (&d);
  g_free (want);
  g_free (res);
  g_free (x);
  sam2_test_layer_free (q);
  g_free (name);
}

/* ---- (d) tokens holding a NaN or an infinity ---------------------------------------------- */

/* formats.h: such a token has scale NaN and every code that of 0, on the GPU as on the CPU (the
 * codes, scales and sums bit for bit through check_quantize), so its outputs are NaN; the other
 * tokens are unaffected (within (b)'s tolerance of the CPU's). Every mode, a row long enough for
 * the vector range pass (K 96) and one that is not (K 101). */
static void
run_non_finite_cases (cublasHandle_t cublas, guint32 *seed)
{
  static const float bad[] = { NAN, INFINITY, -INFINITY };
  const int M = 5, bad_row = 2;
  for (int mode = 1; mode < 5; mode++)
    for (int v = 0; v < 2; v++) {
      const float value = bad[(mode + v) % 3];
      Sam2TestCase c = {
        .spec = { .N = 96, .K = v ? 101 : 96, .G = v ? 0 : 64, .dtype = SAM2_QTYPE_SINT4,
                  .mode = (Sam2ActQuantMode) mode, .bias = 1, .smooth = v, .rank = v ? 0 : 16 },
        .M = M, .act = SAM2_ACT_GELU, .res = SAM2_TEST_RES_NONE, .seed = (*seed)++,
      };
      char *base = sam2_test_case_name (&c);
      char *name = g_strdup_printf ("%s, %g in row %d", base, value, bad_row);
      g_free (base);
      float *x, *res;
      Sam2QuantLinear *q = sam2_test_case_new (&c, &x, &res);
      const int N = q->w.n, K = q->w.k;
      x[(size_t) bad_row * K + (mode * 37) % K] = value;
      if (!sam2_quant_linear_prepare (q)) {
        fprintf (stderr, "prepare failed\n");
        exit (1);
      }
      float *want = g_new (float, (size_t) M * N);   /* (M, N) */
      void *scratch = g_malloc (MAX (sam2_quant_linear_scratch_bytes (q, M), 1));
      sam2_quant_linear_forward (q, x, M, want, c.act, NULL, scratch);
      g_free (scratch);
      DevLayer d;
      dev_layer_init (&d, q);
      float *dx = upload (x, (size_t) M * K * sizeof (float)), *dy = NULL;
      const size_t ybytes = (size_t) M * N * sizeof (float);
      CK (cudaMalloc ((void **) &dy, ybytes));
      CK (cudaMemset (dy, 0, ybytes));                 /* NaN only where written as NaN */
      const size_t wbytes = sam2_cuda_w4a8_linear_workspace_bytes (&d.l, M);
      void *ws = NULL;
      CK (cudaMalloc (&ws, MAX (wbytes, 1)));
      const int st = sam2_cuda_w4a8_linear (&d.l, dx, M, dy, (int) c.act, NULL, cublas, 0, ws);
      CK (cudaDeviceSynchronize ());
      checks++;
      if (st != SAM2_CUDA_OK) {
        fail (name, "sam2_cuda_w4a8_linear returned %d", st);
      } else {
        float *got = g_malloc (ybytes);
        CK (cudaMemcpy (got, dy, ybytes, cudaMemcpyDeviceToHost));
        double scale = 0.0;
        for (size_t i = 0; i < (size_t) M * N; i++)
          if (i / N != bad_row)
            scale = MAX (scale, fabs (want[i]));
        const double tol = TOL_INTEGER + TOL_ACT_APPROX + (c.spec.rank > 0 ? TOL_LOWRANK : 0.0);
        for (size_t i = 0; i < (size_t) M * N; i++) {
          const int m = (int) (i / N);
          if (m == bad_row ? !(isnan (got[i]) && isnan (want[i]))
                           : !(fabs ((double) got[i] - want[i]) <= tol * scale)) {
            fail (name, "y[%d][%zu] %.9g, cpu %.9g", m, i % N, got[i], want[i]);
            break;
          }
        }
        g_free (got);
      }
      check_quantize (name, q, &d, x, dx, M);
      CK (cudaFree (ws));
      CK (cudaFree (dy));
      CK (cudaFree (dx));
      dev_layer_free (&d);
      g_free (want);
      g_free (res);
      g_free (x);
      sam2_test_layer_free (q);
      g_free (name);
    }
  printf ("non-finite tokens: 8 cases\n");
}

/* ---- (c) the LayerNorm fused into the quantization ----------------------------------------- */

#define NORM_EPS 1e-6f

static int norm_fused_cases, norm_unsupported_cases;
static int norm_failures;          /* (c)'s, apart from the version's summary */

/* The rule kernels.h gives for sam2_cuda_layer_norm_quantize_rows: kernels v2, rank at most
 * SAM2_CUDA_QUANT_MAX_FUSED_RANK, QUANT_WARPS (8) rows of K floats and their group sums (each
 * rounded up to 4) in 48 KiB. */
static int
norm_quant_expected (const DevLayer *d)
{
  const Sam2CudaW4A8Geometry *g = &d->l.geo;
  const size_t smem = (size_t) 8 * ((g->n_groups + 3) / 4 * 4 + (g->k + 3) / 4 * 4) * 4;
  return sam2_cuda_w4a8_kernel_version () >= 2 && d->l.rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK
         && smem <= 48 * 1024;
}

/* sam2_cuda_w4a8_norm_linear against sam2_cuda_layer_norm (then sam2_cuda_window_partition of
 * each image, with `win`) then sam2_cuda_w4a8_linear on the device: y and the whole workspace
 * (kernel rows, scales, zero points, group sums, t; both start as 0xff bytes) must be the same
 * bytes. Rows get a mean of up to +-80 and spreads from 1 to 3, the LayerNorm a weight and bias
 * per channel. Where the fused kernel does not apply it must say so before launching anything
 * (y untouched). With windows, c->M is the maps' rows (n_img H W) and the case has no
 * residual. */
static void
run_norm_case (const Sam2TestCase *c, const Sam2CudaRowWindows *win, cublasHandle_t cublas)
{
  if (skip_case (c))
    return;
  char *base = sam2_test_case_name (c);
  char *name = win != NULL ? g_strdup_printf ("%s windows %dx%dx%d ws %d", base, win->n_img,
                                              win->h, win->w, win->ws)
                           : g_strdup (base);
  g_free (base);
  float *x, *res;                                    /* (Mx, K); (M, N) or NULL */
  Sam2QuantLinear *q = sam2_test_case_new (c, &x, &res);
  const int Mx = c->M, N = q->w.n, K = q->w.k;
  const int M = win != NULL ? (int) sam2_cuda_row_windows_rows (win) : Mx;   /* rows quantized */
  for (int m = 0; m < Mx; m++)
    for (int k = 0; k < K; k++)
      x[(size_t) m * K + k] = x[(size_t) m * K + k] * (float) (1 + m % 3) + 40.0f * (m % 5 - 2);
  float *nw = g_new (float, K), *nb = g_new (float, K);   /* (K) the LayerNorm's */
  for (int k = 0; k < K; k++) {
    nw[k] = 1.0f + 0.3f * (float) (k % 7 - 3);
    nb[k] = 0.1f * (float) (k % 5 - 2);
  }
  DevLayer d;
  dev_layer_init (&d, q);
  float *dx = upload (x, (size_t) Mx * K * sizeof (float));
  const Sam2CudaRowNorm norm = { upload (nw, K * sizeof (float)), upload (nb, K * sizeof (float)),
                                 NORM_EPS };
  const size_t ybytes = (size_t) M * N * sizeof (float);
  const size_t wbytes = sam2_cuda_w4a8_linear_workspace_bytes (&d.l, M);
  float *dn = NULL, *dwin = NULL;                    /* (Mx, K), (M, K) */
  float *ya = NULL, *yb = NULL, *dres = NULL;        /* (M, N) x 3 */
  void *wa = NULL, *wb = NULL;
  CK (cudaMalloc ((void **) &dn, (size_t) Mx * K * sizeof (float)));
  CK (cudaMalloc ((void **) &dwin, (size_t) M * K * sizeof (float)));
  CK (cudaMalloc ((void **) &ya, ybytes));
  CK (cudaMalloc ((void **) &yb, ybytes));
  CK (cudaMalloc (&wa, wbytes));
  CK (cudaMalloc (&wb, wbytes));
  CK (cudaMemset (wa, 0xff, wbytes));
  CK (cudaMemset (wb, 0xff, wbytes));
  if (c->res == SAM2_TEST_RES_IN_PLACE) {
    CK (cudaMemcpy (ya, res, ybytes, cudaMemcpyHostToDevice));
    CK (cudaMemcpy (yb, res, ybytes, cudaMemcpyHostToDevice));
  } else {
    CK (cudaMemset (ya, 0xff, ybytes));
    CK (cudaMemset (yb, 0xff, ybytes));
  }
  if (c->res == SAM2_TEST_RES_SEPARATE)
    dres = upload (res, ybytes);
  const float *ra = c->res == SAM2_TEST_RES_SEPARATE ? dres
                    : c->res == SAM2_TEST_RES_IN_PLACE ? ya : NULL;
  const float *rb = c->res == SAM2_TEST_RES_IN_PLACE ? yb : ra;

  const int expected = norm_quant_expected (&d);
  checks++;
  if (sam2_cuda_layer_norm_quantize_rows_supported (&d.l) != expected)
    fail (name, "layer_norm_quantize_rows_supported says %d, kernels.h's rule %d",
          !expected, expected);
  const int st = sam2_cuda_w4a8_norm_linear (&d.l, &norm, win, dx, M, yb, (int) c->act, rb, 0,
                                             wb);
  CK (cudaDeviceSynchronize ());
  if (!expected) {
    norm_unsupported_cases++;
    uint32_t first = 0;
    CK (cudaMemcpy (&first, yb, 4, cudaMemcpyDeviceToHost));
    if (st != SAM2_CUDA_UNSUPPORTED)
      fail (name, "norm_linear returned %d where the fused kernel does not apply", st);
    else if (c->res != SAM2_TEST_RES_IN_PLACE && first != 0xffffffffu)
      fail (name, "norm_linear wrote y although it returned UNSUPPORTED");
    goto out;
  }
  if (st != SAM2_CUDA_OK) {
    fail (name, "sam2_cuda_w4a8_norm_linear returned %d", st);
    goto out;
  }
  norm_fused_cases++;
  int apart = sam2_cuda_layer_norm (dx, Mx, K, norm.weight, norm.bias, NORM_EPS, dn, 0);
  const float *seq = dn;
  if (win != NULL) {
    const size_t map = (size_t) win->h * win->w, per_img = (size_t) M / win->n_img;
    for (int i = 0; i < win->n_img && apart == SAM2_CUDA_OK; i++)
      apart = sam2_cuda_window_partition (dn + i * map * K, win->h, win->w, K, win->ws,
                                          dwin + i * per_img * K, 0);
    seq = dwin;
  }
  if (apart == SAM2_CUDA_OK)
    apart = sam2_cuda_w4a8_linear (&d.l, seq, M, ya, (int) c->act, ra, cublas, 0, wa);
  if (apart != SAM2_CUDA_OK) {
    fail (name, "the LayerNorm kernel, partition and layer apart failed (%d)", apart);
    goto out;
  }
  CK (cudaDeviceSynchronize ());
  {
    guint8 *ha = g_malloc (MAX (ybytes, wbytes)), *hb = g_malloc (MAX (ybytes, wbytes));
    CK (cudaMemcpy (ha, ya, ybytes, cudaMemcpyDeviceToHost));
    CK (cudaMemcpy (hb, yb, ybytes, cudaMemcpyDeviceToHost));
    if (memcmp (ha, hb, ybytes) != 0) {
      size_t i = 0;
      while (memcmp (ha + i * 4, hb + i * 4, 4) == 0)
        i++;
      float fa, fb;
      memcpy (&fa, ha + i * 4, 4);
      memcpy (&fb, hb + i * 4, 4);
      fail (name, "fused y differs at (%zu, %zu): %.9g, apart %.9g", i / N, i % N, fb, fa);
    }
    CK (cudaMemcpy (ha, wa, wbytes, cudaMemcpyDeviceToHost));
    CK (cudaMemcpy (hb, wb, wbytes, cudaMemcpyDeviceToHost));
    if (memcmp (ha, hb, wbytes) != 0) {
      size_t i = 0;
      while (ha[i] == hb[i])
        i++;
      fail (name, "fused kernel rows differ from the LayerNorm's quantized at workspace byte "
            "%zu of %zu", i, wbytes);
    }
    g_free (ha);
    g_free (hb);
  }
out:
  CK (cudaFree ((void *) norm.weight));
  CK (cudaFree ((void *) norm.bias));
  CK (cudaFree (dn));
  CK (cudaFree (dwin));
  CK (cudaFree (ya));
  CK (cudaFree (yb));
  CK (cudaFree (dres));
  CK (cudaFree (wa));
  CK (cudaFree (wb));
  CK (cudaFree (dx));
  dev_layer_free (&d);
  g_free (nw);
  g_free (nb);
  g_free (res);
  g_free (x);
  sam2_test_layer_free (q);
  g_free (name);
}

/* (c)'s cases: the encoder's LayerNorm widths of every SAM2 size (96 .. 1152) and beyond the
 * shared-memory limit (1536), an odd K (scalar loads), groups of 64 and 128 and one per channel,
 * every activation-quantization mode, smoothing, ranks 0, 16 and 160 (the cuBLAS branch: not
 * fused), GELU or none, every residual form, rows from 1 to 4096. */
static void
run_norm_suite (cublasHandle_t cublas, guint32 *seed)
{
  const int Ks[] = { 96, 101, 144, 192, 288, 384, 576, 768, 1152, 1536 };
  const int groups[] = { 64, 128, 0 };
  const Sam2ActQuantMode modes[] = { SAM2_ACT_QUANT_TOKEN_SYM, SAM2_ACT_QUANT_TOKEN_ASYM,
                                     SAM2_ACT_QUANT_TENSOR_SYM, SAM2_ACT_QUANT_TENSOR_ASYM };
  const int ranks[] = { 0, 16, 160 };
  const int Ms[] = { 1, 7, 300, 4096 };
  int n = 0;
  norm_fused_cases = norm_unsupported_cases = 0;
  for (int ki = 0; ki < (int) G_N_ELEMENTS (Ks); ki++)
    for (int gi = 0; gi < 3; gi++)
      for (int v = 0; v < 2; v++, n++) {
        Sam2TestCase c = {
          .spec = { .N = v ? 384 : 96, .K = Ks[ki], .G = groups[gi],
                    .dtype = (n / 7) % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4,
                    .mode = modes[n % 4],
                    .bias = 1, .smooth = (n / 4) % 2, .rank = ranks[(n / 2) % 3] },
          .M = Ms[(n / 3) % 4], .act = (n / 5) % 2 ? SAM2_ACT_GELU : SAM2_ACT_NONE,
          .res = (Sam2TestResidual) (n % 3), .seed = (*seed)++,
        };
        run_norm_case (&c, NULL, cublas);
      }
  /* With window partitions (a Hiera block's first half): windows that fit and windows past the
   * map's edge (padding rows), several images, tiny's stage widths. */
  const Sam2CudaRowWindows wins[] = {
    { 1, 16, 16, 8 }, { 2, 10, 9, 4 }, { 3, 14, 14, 14 }, { 2, 32, 32, 7 }, { 1, 5, 3, 8 },
  };
  const int wKs[] = { 96, 192, 384, 768, 144 };
  for (int i = 0; i < (int) G_N_ELEMENTS (wins); i++, n++) {
    Sam2TestCase c = {
      .spec = { .N = 3 * wKs[i], .K = wKs[i], .G = i % 2 ? 64 : 128,
                .dtype = i % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4, .mode = modes[i % 4],
                .bias = 1, .smooth = i % 2, .rank = i == 2 ? 16 : 0 },
      .M = wins[i].n_img * wins[i].h * wins[i].w, .act = SAM2_ACT_NONE,
      .res = SAM2_TEST_RES_NONE, .seed = (*seed)++,
    };
    run_norm_case (&c, &wins[i], cublas);
  }
  printf ("layer norm fused into the quantization: %d cases, %d fused and the same bits as "
          "apart, %d refused as kernels.h says\n", n, norm_fused_cases, norm_unsupported_cases);
}

/* ---- (e) the next layer's quantization fused into the GEMM --------------------------------- */

static int next_fused_cases, next_unsupported_cases;
static int next_failures;          /* (e)'s, apart from the version's summary */

/* The rule kernels.h gives for sam2_cuda_w4a8_gemm_quantize_next, for layers whose arrays
 * cudaMalloc aligned: kernels v2 or v3, next's K = the layer's N, rank at most
 * SAM2_CUDA_QUANT_MAX_FUSED_RANK, K and group size multiples of 4, at most 64 groups. */
static int
next_expected (const DevLayer *d1, const DevLayer *d2)
{
  const Sam2CudaW4A8Geometry *g = &d2->l.geo;
  return sam2_cuda_w4a8_kernel_version () >= 2 && g->k == d1->l.geo.n
         && d2->l.rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK && g->k % 4 == 0
         && g->group_size % 4 == 0 && g->n_groups <= 64;
}

/* Compares two device buffers byte for byte; fails naming `what` and the first difference. */
static void
same_device_bytes (const char *name, const char *what, const void *a, const void *b,
                   size_t bytes)
{
  guint8 *ha = g_malloc (bytes), *hb = g_malloc (bytes);
  CK (cudaMemcpy (ha, a, bytes, cudaMemcpyDeviceToHost));
  CK (cudaMemcpy (hb, b, bytes, cudaMemcpyDeviceToHost));
  if (memcmp (ha, hb, bytes) != 0) {
    size_t i = 0;
    while (ha[i] == hb[i])
      i++;
    fail (name, "%s differ at byte %zu of %zu (%02x, apart %02x)", what, i, bytes, hb[i], ha[i]);
  }
  g_free (ha);
  g_free (hb);
}

/* sam2_cuda_w4a8_gemm_quantize_next (layer c1, then next c2 reading its output) against
 * sam2_cuda_w4a8_linear then sam2_cuda_quantize_rows on the device: y and next's whole workspace
 * (both start as 0xff bytes) the same bytes, the counters zero after each call; twice, so that
 * a counter left behind by the first call would show in the second. Where the fused kernel does
 * not apply it must say so before launching anything (y untouched). */
static void
run_next_case (const Sam2TestCase *c1, const Sam2TestCase *c2, cublasHandle_t cublas)
{
  if (skip_case (c1))
    return;
  char *n1 = sam2_test_case_name (c1), *n2 = sam2_test_case_name (c2);
  char *name = g_strdup_printf ("%s -> %s", n1, n2);
  g_free (n1);
  g_free (n2);
  float *x, *res1, *x2, *res2;                       /* (M, K1); the rest unused */
  Sam2QuantLinear *q1 = sam2_test_case_new (c1, &x, &res1);
  Sam2QuantLinear *q2 = sam2_test_case_new (c2, &x2, &res2);
  const int M = c1->M, N = q1->w.n, K = q1->w.k;
  DevLayer d1, d2;
  dev_layer_init (&d1, q1);
  dev_layer_init (&d2, q2);
  float *dx = upload (x, (size_t) M * K * sizeof (float));
  const size_t ybytes = (size_t) M * N * sizeof (float);
  const size_t w1 = sam2_cuda_w4a8_linear_workspace_bytes (&d1.l, M);
  const size_t w2 = sam2_cuda_w4a8_linear_workspace_bytes (&d2.l, M);
  const size_t nc = sam2_cuda_w4a8_quantize_next_counters (M);
  float *ya = NULL, *yb = NULL;                      /* (M, N) */
  void *wa1 = NULL, *wb1 = NULL, *wa2 = NULL, *wb2 = NULL;
  unsigned int *counters = NULL;                     /* (nc) */
  CK (cudaMalloc ((void **) &ya, ybytes));
  CK (cudaMalloc ((void **) &yb, ybytes));
  CK (cudaMalloc (&wa1, w1));
  CK (cudaMalloc (&wb1, w1));
  CK (cudaMalloc (&wa2, w2));
  CK (cudaMalloc (&wb2, w2));
  CK (cudaMalloc ((void **) &counters, nc * sizeof (unsigned int)));
  CK (cudaMemset (counters, 0, nc * sizeof (unsigned int)));
  CK (cudaMemset (ya, 0xff, ybytes));
  CK (cudaMemset (yb, 0xff, ybytes));
  CK (cudaMemset (wa2, 0xff, w2));
  CK (cudaMemset (wb2, 0xff, w2));
  Sam2CudaActRows rows1, rows_a, rows_b;
  sam2_cuda_w4a8_workspace_rows (&d1.l, M, wb1, &rows1);
  sam2_cuda_w4a8_workspace_rows (&d2.l, M, wa2, &rows_a);
  sam2_cuda_w4a8_workspace_rows (&d2.l, M, wb2, &rows_b);

  const int expected = next_expected (&d1, &d2);
  checks++;
  if (sam2_cuda_w4a8_quantize_next_supported (&d1.l, &d2.l) != expected)
    fail (name, "quantize_next_supported says %d, kernels.h's rule %d", !expected, expected);
  int st = sam2_cuda_quantize_rows (&d1.l, dx, M, &rows1, 0);
  if (st == SAM2_CUDA_OK)
    st = sam2_cuda_w4a8_gemm_quantize_next (&d1.l, &rows1, M, yb, (int) c1->act, &d2.l, &rows_b,
                                            counters, 0);
  CK (cudaDeviceSynchronize ());
  if (!expected) {
    next_unsupported_cases++;
    uint32_t first = 0;
    CK (cudaMemcpy (&first, yb, 4, cudaMemcpyDeviceToHost));
    if (st != SAM2_CUDA_UNSUPPORTED)
      fail (name, "gemm_quantize_next returned %d where it does not apply", st);
    else if (first != 0xffffffffu)
      fail (name, "gemm_quantize_next wrote y although it returned UNSUPPORTED");
    goto out;
  }
  if (st != SAM2_CUDA_OK) {
    fail (name, "sam2_cuda_w4a8_gemm_quantize_next returned %d", st);
    goto out;
  }
  next_fused_cases++;
  st = sam2_cuda_w4a8_linear (&d1.l, dx, M, ya, (int) c1->act, NULL, cublas, 0, wa1);
  if (st == SAM2_CUDA_OK)
    st = sam2_cuda_quantize_rows (&d2.l, ya, M, &rows_a, 0);
  if (st != SAM2_CUDA_OK) {
    fail (name, "the layer and the next quantization apart failed (%d)", st);
    goto out;
  }
  for (int round = 0; round < 2; round++) {
    if (round == 1) {
      CK (cudaMemset (yb, 0xff, ybytes));
      CK (cudaMemset (wb2, 0xff, w2));
      st = sam2_cuda_w4a8_gemm_quantize_next (&d1.l, &rows1, M, yb, (int) c1->act, &d2.l,
                                              &rows_b, counters, 0);
      if (st != SAM2_CUDA_OK) {
        fail (name, "the second sam2_cuda_w4a8_gemm_quantize_next returned %d", st);
        break;
      }
    }
    CK (cudaDeviceSynchronize ());
    same_device_bytes (name, round ? "y (second call)" : "y", ya, yb, ybytes);
    same_device_bytes (name, round ? "next's kernel rows (second call)" : "next's kernel rows",
                       wa2, wb2, w2);
    unsigned int *hc = g_new (unsigned int, nc);
    CK (cudaMemcpy (hc, counters, nc * sizeof (unsigned int), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < nc; i++)
      if (hc[i] != 0) {
        fail (name, "counter %zu is %u after the call", i, hc[i]);
        break;
      }
    g_free (hc);
  }
out:
  CK (cudaFree (ya));
  CK (cudaFree (yb));
  CK (cudaFree (wa1));
  CK (cudaFree (wb1));
  CK (cudaFree (wa2));
  CK (cudaFree (wb2));
  CK (cudaFree (counters));
  CK (cudaFree (dx));
  dev_layer_free (&d1);
  dev_layer_free (&d2);
  g_free (x);
  g_free (res1);
  g_free (x2);
  g_free (res2);
  sam2_test_layer_free (q1);
  sam2_test_layer_free (q2);
  g_free (name);
}

/* (e)'s cases: an MLP's fc1 -> fc2 of the encoders' stage widths (and widths past the fused
 * kernel's reach: an N not a multiple of 4, more than 64 groups, a rank for cuBLAS), every
 * activation-quantization mode of fc2, its smoothing and ranks 0 and 16, groups of 64 and 128 and
 * one per channel, GELU or none, rows from 1 to 4096 (many M tiles per N block on the two-SM
 * emulated device). */
static void
run_next_suite (guint32 *seed, cublasHandle_t cublas)
{
  const int K1s[] = { 96, 144, 192, 96, 144, 64 };
  const int N1s[] = { 384, 576, 768, 102, 4608, 256 };
  const int groups[] = { 128, 64, 0 };
  const Sam2ActQuantMode modes[] = { SAM2_ACT_QUANT_TOKEN_SYM, SAM2_ACT_QUANT_TOKEN_ASYM,
                                     SAM2_ACT_QUANT_TENSOR_SYM, SAM2_ACT_QUANT_TENSOR_ASYM };
  const int Ms[] = { 1, 7, 300, 4096, 3400 };
  int n = 0;
  next_fused_cases = next_unsupported_cases = 0;
  for (int li = 0; li < (int) G_N_ELEMENTS (K1s); li++)
    for (int v = 0; v < 4; v++, n++) {
      const int N1 = N1s[li];
      Sam2TestCase c1 = {
        .spec = { .N = N1, .K = K1s[li], .G = groups[(n + 1) % 3],
                  .dtype = n % 2 ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4,
                  .mode = SAM2_ACT_QUANT_TOKEN_SYM, .bias = 1, .smooth = 0, .rank = 0 },
        .M = N1 > 1024 ? 7 : Ms[(n / 2) % 5], .act = v % 2 ? SAM2_ACT_NONE : SAM2_ACT_GELU,
        .res = SAM2_TEST_RES_NONE, .seed = (*seed)++,
      };
      Sam2TestCase c2 = {
        .spec = { .N = K1s[li], .K = N1, .G = groups[n % 3],
                  .dtype = n % 3 ? SAM2_QTYPE_UINT4 : SAM2_QTYPE_SINT4, .mode = modes[v],
                  .bias = 1, .smooth = n % 2, .rank = li == 5 ? 160 : (n / 3) % 2 ? 16 : 0 },
        .M = 1, .act = SAM2_ACT_NONE, .res = SAM2_TEST_RES_NONE, .seed = (*seed)++,
      };
      run_next_case (&c1, &c2, cublas);
    }
  printf ("next layer's quantization fused into the GEMM: %d cases, %d fused and the same bits "
          "as apart, %d refused as kernels.h says\n", n, next_fused_cases,
          next_unsupported_cases);
}

/* The whole case list, on the kernels chosen by sam2_cuda_w4a8_set_kernel_version. */
static void
run_suite (cublasHandle_t cublas)
{
  const Sam2QType dtypes[] = { SAM2_QTYPE_UINT4, SAM2_QTYPE_SINT4 };
  const int groups[] = { 64, 128, 256, 0 };
  const int Ks[] = { 96, 112, 144, 192, 256, 448, 576, 768, 1536 };
  const int Ns[] = { 96, 200, 384 };
  const int small_Ms[] = { 1, 5, 64, 300 };
  const Sam2ActQuantMode modes[] = { SAM2_ACT_QUANT_TOKEN_SYM, SAM2_ACT_QUANT_TOKEN_ASYM,
                                     SAM2_ACT_QUANT_TENSOR_SYM, SAM2_ACT_QUANT_TENSOR_ASYM };
  const int ranks[] = { 0, 16, 32 };
  guint32 seed = 1;
  int n_cases = 0;

  /* Shapes: every dtype, group, K and N; M, mode and the options cycle. */
  for (int di = 0; di < 2; di++)
    for (int gi = 0; gi < 4; gi++)
      for (int ki = 0; ki < (int) G_N_ELEMENTS (Ks); ki++)
        for (int ni = 0; ni < 3; ni++, n_cases++) {
          const int i = n_cases;
          Sam2TestCase c = {
            .spec = { .N = Ns[ni], .K = Ks[ki], .G = groups[gi], .dtype = dtypes[di],
                      .mode = modes[i % 4], .bias = (i / 4) % 2, .smooth = (i / 8) % 2,
                      .rank = ranks[(i / 3) % 3] },
            .M = small_Ms[(i / 2) % 4], .act = (Sam2Act) (i % 6), .res = (Sam2TestResidual) (i % 3),
            .seed = seed++,
          };
          run_case (&c, cublas, 1);
        }
  printf ("shapes: %d cases\n", n_cases);

  /* Options: every mode, bias, smoothing, rank, activation and residual on two shapes with
   * tail groups. */
  int n_opt = 0;
  for (int mi = 0; mi < 4; mi++)
    for (int b = 0; b < 2; b++)
      for (int s = 0; s < 2; s++)
        for (int ri = 0; ri < 3; ri++)
          for (int a = 0; a < 6; a++)
            for (int rk = 0; rk < 3; rk++, n_opt++) {
              const int alt = n_opt % 2;
              Sam2TestCase c = {
                .spec = { .N = alt ? 200 : 96, .K = alt ? 576 : 144, .G = alt ? 256 : 64,
                          .dtype = dtypes[(n_opt / 2) % 2], .mode = modes[mi],
                          .bias = b, .smooth = s, .rank = ranks[ri] },
                .M = alt ? 64 : 5, .act = (Sam2Act) a, .res = (Sam2TestResidual) rk,
                .seed = seed++,
              };
              run_case (&c, cublas, a == 0 && rk == 0);
            }
  printf ("options: %d cases\n", n_opt);

  /* Many rows (the 128-row tiles), every mode, with and without the low-rank branch. */
  int n_big = 0;
  for (int mi = 0; mi < 4; mi++)
    for (int v = 0; v < 2; v++, n_big++) {
      Sam2TestCase c = {
        .spec = { .N = v ? 384 : 200, .K = v ? 1536 : 768, .G = v ? 128 : 0,
                  .dtype = dtypes[(mi + v) % 2], .mode = modes[mi], .bias = 1, .smooth = v,
                  .rank = v ? 32 : 0 },
        .M = 4096, .act = v ? SAM2_ACT_GELU : SAM2_ACT_NONE, .res = (Sam2TestResidual) (1 + v),
        .seed = seed++,
      };
      run_case (&c, cublas, 1);
    }
  /* Enough row and channel tiles for the 128-row tile kernels (at least 264 blocks of 128 x 64:
   * 27 x 10 here), M not a multiple of 128: groups of 64 with symmetric rows (v2: the magic-number fold, the
   * Za term skipped) and one group per channel of K = 1536 with asymmetric rows (v2: group_pad
   * over 1024, the I2F fold, the Za term applied). */
  for (int v = 0; v < 2; v++, n_big++) {
    Sam2TestCase c = {
      .spec = { .N = 640, .K = v ? 1536 : 576, .G = v ? 0 : 64, .dtype = dtypes[v],
                .mode = modes[v], .bias = 1, .smooth = v, .rank = 0 },
      .M = 3400, .act = SAM2_ACT_NONE, .res = (Sam2TestResidual) (v + 1), .seed = seed++,
    };
    run_case (&c, cublas, 1);
  }
  /* A rank above the fused limit: the down-projection through cuBLAS. */
  for (int s = 0; s < 2; s++, n_big++) {
    Sam2TestCase c = {
      .spec = { .N = 200, .K = 448, .G = 128, .dtype = SAM2_QTYPE_UINT4,
                .mode = modes[1 + s], .bias = 1, .smooth = s, .rank = 160 },
      .M = 300, .act = SAM2_ACT_GELU, .res = SAM2_TEST_RES_SEPARATE, .seed = seed++,
    };
    run_case (&c, cublas, 0);
  }
  /* Beyond SAM2's shapes, what formats.h allows: odd K (the last byte's high nibble unused),
   * odd N, a group size that is not a multiple of the 32-column steps. */
  for (int v = 0; v < 4; v++, n_big++) {
    Sam2TestCase c = {
      .spec = { .N = v % 2 ? 77 : 131, .K = v < 2 ? 101 : 333, .G = v % 2 ? 48 : 0,
                .dtype = dtypes[v % 2], .mode = modes[v], .bias = v % 2, .smooth = v / 2,
                .rank = v == 3 ? 16 : 0 },
      .M = v < 2 ? 300 : 7, .act = SAM2_ACT_NONE, .res = (Sam2TestResidual) (v % 3), .seed = seed++,
    };
    run_case (&c, cublas, 1);
  }
  printf ("large and odd: %d cases\n", n_big);

  run_non_finite_cases (cublas, &seed);

  /* (c) on its own summary line (its switch, SAM2_CUDA_NORM_QUANT, is not the kernel version's) */
  const int before = failures;
  run_norm_suite (cublas, &seed);
  norm_failures = failures - before;
  failures = before;

  /* (e) likewise (its switch: SAM2_CUDA_QUANT_NEXT) */
  run_next_suite (&seed, cublas);
  next_failures = failures - before;
  failures = before;

  /* M = 0 is a no-op that succeeds. */
  {
    Sam2CudaW4A8Layer l;
    memset (&l, 0, sizeof l);
    sam2_cuda_w4a8_geometry (96, 112, 64, &l.geo);
    l.act_mode = SAM2_CUDA_AQ_TOKEN_SYM;
    checks++;
    if (sam2_cuda_w4a8_linear (&l, NULL, 0, NULL, 0, NULL, NULL, 0, NULL) != SAM2_CUDA_OK)
      fail ("M 0", "not OK");
  }

}

int
main (int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    verbose |= strcmp (argv[i], "--verbose") == 0;
    if (strcmp (argv[i], "--max-work") == 0 && i + 1 < argc)
      max_work = atof (argv[++i]);
    if (strcmp (argv[i], "--kernel-version") == 0 && i + 1 < argc)
      only_version = atoi (argv[++i]);
  }
  int count = 0;
  if (cudaGetDeviceCount (&count) != cudaSuccess || count == 0) {
    (void) cudaGetLastError ();
    printf ("no CUDA device: skipped\n");
    return 77;
  }
  cublasHandle_t cublas;
  if (cublasCreate (&cublas) != CUBLAS_STATUS_SUCCESS) {
    fprintf (stderr, "cublasCreate failed\n");
    return 1;
  }
  /* Every kernel version (kernels.h, SAM2_W4A8_KERNEL): v1, the fallback, v2, the default, and
   * v3; each gets the full list and its own summary line. */
  int total_failures = 0;
  for (int version = 1; version <= 3; version++) {
    if (only_version != 0 && version != only_version)
      continue;
    sam2_cuda_w4a8_set_kernel_version (version);
    failures = checks = exact_cases = integer_cases = norm_failures = skipped_cases = 0;
    worst_integer = worst_other = 0.0;
    printf ("-- W4A8 kernels v%d\n", version);
    run_suite (cublas);
    printf ("v%d: no low rank, act none / relu: worst error %.3g of the scale (tolerance %.1g), "
            "%d of %d cases bit-identical\n", version, worst_integer, TOL_INTEGER, exact_cases,
            integer_cases);
    printf ("v%d: low rank or a transcendental act: worst error %.3g of the scale (tolerance per "
            "case, at most %.1g)\n", version, worst_other,
            TOL_INTEGER + TOL_LOWRANK + TOL_ACT_APPROX);
    if (skipped_cases > 0)
      printf ("v%d: %d cases above --max-work %.3g skipped\n", version, skipped_cases, max_work);
    printf ("v%d norm-quant: %d failures: %s\n", version, norm_failures,
            norm_failures ? "FAIL" : "PASS");
    printf ("v%d quant-next: %d failures: %s\n", version, next_failures,
            next_failures ? "FAIL" : "PASS");
    printf ("v%d: %d checks, %d failures: %s\n", version, checks, failures,
            failures ? "FAIL" : "PASS");
    fflush (stdout);
    total_failures += failures + norm_failures + next_failures;
  }
  sam2_cuda_w4a8_set_kernel_version (0);
  cublasDestroy (cublas);
  printf ("%s\n", total_failures ? "FAIL" : "PASS");
  return total_failures ? 1 : 0;
}
