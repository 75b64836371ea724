/* bench-cuda-gemm.c: the W4A8 linear of the CUDA backend (kernels/gemm-w4a8.cu) against cuBLAS
 * FP16 and BF16 GEMMs of the same shapes: the linear layers of the SAM2 Hiera image encoders
 * (tiny: dims 96 / 192 / 384 / 768, large: 144 / 288 / 576 / 1152) at a 1024 x 1024 input, whose
 * four stages hold 256^2, 128^2, 64^2 and 32^2 tokens; per stage qkv (d -> 3d), proj (d -> d),
 * MLP up (d -> 4d) and down (4d -> d).
 *
 * Per shape, for each W4A8 kernel version (kernels.h: v3, then v2, the default, then v1): W4A8 as
 * the backend calls it (quantize + GEMM, sam2_cuda_w4a8_linear), the GEMM alone on rows quantized
 * beforehand, the quantization alone (v3's is v2's kernel: not printed again); then cuBLAS FP16
 * and BF16 (cublasGemmEx, FP32 accumulation, 16-bit output: what a half-precision linear layer
 * would run). For the MLP's first layer of each
 * stage, also its LayerNorm and quantization as two kernels against the fused kernel
 * (sam2_cuda_layer_norm_quantize_rows), and its GEMM then the quantization of its output for the
 * MLP's second layer against the GEMM that quantizes (sam2_cuda_w4a8_gemm_quantize_next, kernels
 * v2 and v3), printed after the table. Times are the median over
 * --iters runs, each timed alone with CUDA events, after warm-up runs; TOPS count 2 M N K
 * operations. The weights are random codes in groups of 128 (one group per channel when
 * K < 128), the activations random floats: the kernels' work does not depend on the values.
 *
 *   sam2-bench-cuda-gemm [--model tiny|large|all] [--iters N] [--warmup N] */
#include "cuda-check.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKB(call)                                                                            \
  do {                                                                                       \
    cublasStatus_t s_ = (call);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                       \
      fprintf (stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, (int) s_); \
      exit (1);                                                                              \
    }                                                                                        \
  } while (0)

#define CKS(call)                                                                            \
  do {                                                                                       \
    int s_ = (call);                                                                         \
    if (s_ != SAM2_CUDA_OK) {                                                                \
      fprintf (stderr, "%s:%d: %s: status %d\n", __FILE__, __LINE__, #call, s_);             \
      exit (1);                                                                              \
    }                                                                                        \
  } while (0)

#define GROUP 128

typedef struct {
  const char *model, *layer;
  int M, K, N;
} Shape;

static int iters = 20, warmup = 5;

/* xorshift: reproducible data without libc's rand state */
static uint32_t rng = 0x9e3779b9u;

static uint32_t
next_u32 (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static float
next_float (void)   /* uniform in [-1, 1) */
{
  return (float) (next_u32 () >> 8) / (float) (1u << 23) - 1.0f;
}

/* IEEE half of |f| < 2 (truncated mantissa: data for timing, not arithmetic). */
static uint16_t
to_half (float f)
{
  uint32_t b;
  memcpy (&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int e = (int) ((b >> 23) & 0xff) - 127 + 15;
  if (e <= 0)
    return (uint16_t) sign;
  return (uint16_t) (sign | ((uint32_t) e << 10) | ((b >> 13) & 0x3ff));
}

static uint16_t
to_bf16 (float f)
{
  uint32_t b;
  memcpy (&b, &f, 4);
  return (uint16_t) (b >> 16);
}

static int
cmp_float (const void *a, const void *b)
{
  const float x = *(const float *) a, y = *(const float *) b;
  return x < y ? -1 : x > y;
}

typedef enum {
  RUN_W4A8_LINEAR, RUN_W4A8_GEMM, RUN_W4A8_QUANT, RUN_CUBLAS_F16, RUN_CUBLAS_BF16,
  RUN_NORM_APART, RUN_NORM_FUSED, RUN_NEXT_APART, RUN_NEXT_FUSED
} RunKind;

typedef struct {
  const Sam2CudaW4A8Layer *layer;
  const Sam2CudaActRows *rows;
  const float *x;
  float *y;
  void *ws;
  cublasHandle_t cublas;
  const void *a16, *b16;      /* (M, K), (N, K) */
  void *c16;                  /* (M, N) */
  const Sam2CudaRowNorm *norm;
  float *normed;              /* (M, K): the LayerNorm's output when it runs apart */
  const Sam2CudaW4A8Layer *next;   /* the MLP's second layer (K = N): its quantization only */
  const Sam2CudaActRows *next_rows;
  unsigned int *counters;
  int M, K, N;
} RunArgs;

static void
run_once (RunKind kind, const RunArgs *r)
{
  const float one = 1.0f, zero = 0.0f;
  switch (kind) {
  case RUN_W4A8_LINEAR:
    CKS (sam2_cuda_w4a8_linear (r->layer, r->x, r->M, r->y, SAM2_CUDA_ACT_NONE, NULL, r->cublas,
                                0, r->ws));
    break;
  case RUN_W4A8_GEMM:
    CKS (sam2_cuda_w4a8_gemm (r->layer, r->rows, r->M, r->y, SAM2_CUDA_ACT_NONE, NULL, 0));
    break;
  case RUN_W4A8_QUANT:
    CKS (sam2_cuda_quantize_rows (r->layer, r->x, r->M, r->rows, 0));
    break;
  case RUN_NORM_APART:
    CKS (sam2_cuda_layer_norm (r->x, r->M, r->K, r->norm->weight, r->norm->bias, r->norm->eps,
                               r->normed, 0));
    CKS (sam2_cuda_quantize_rows (r->layer, r->normed, r->M, r->rows, 0));
    break;
  case RUN_NORM_FUSED:
    CKS (sam2_cuda_layer_norm_quantize_rows (r->layer, r->norm, NULL, r->x, r->M, r->rows, 0));
    break;
  case RUN_NEXT_APART:
    CKS (sam2_cuda_w4a8_gemm (r->layer, r->rows, r->M, r->y, SAM2_CUDA_ACT_GELU, NULL, 0));
    CKS (sam2_cuda_quantize_rows (r->next, r->y, r->M, r->next_rows, 0));
    break;
  case RUN_NEXT_FUSED:
    CKS (sam2_cuda_w4a8_gemm_quantize_next (r->layer, r->rows, r->M, r->y, SAM2_CUDA_ACT_GELU,
                                            r->next, r->next_rows, r->counters, 0));
    break;
  case RUN_CUBLAS_F16:
  case RUN_CUBLAS_BF16: {
    /* row-major C (M, N) = A (M, K) B (N, K)^T is column-major C^T (N, M) = B^T' A^T' */
    const cudaDataType_t t = kind == RUN_CUBLAS_F16 ? CUDA_R_16F : CUDA_R_16BF;
    CKB (cublasGemmEx (r->cublas, CUBLAS_OP_T, CUBLAS_OP_N, r->N, r->M, r->K, &one, r->b16, t,
                       r->K, r->a16, t, r->K, &zero, r->c16, t, r->N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT));
    break;
  }
  }
}

/* Median milliseconds of one run. */
static float
time_kind (RunKind kind, const RunArgs *r)
{
  cudaEvent_t e0, e1;
  CK (cudaEventCreate (&e0));
  CK (cudaEventCreate (&e1));
  for (int i = 0; i < warmup; i++)
    run_once (kind, r);
  CK (cudaDeviceSynchronize ());
  float *ms = malloc (sizeof (float) * iters);
  for (int i = 0; i < iters; i++) {
    CK (cudaEventRecord (e0, 0));
    run_once (kind, r);
    CK (cudaEventRecord (e1, 0));
    CK (cudaEventSynchronize (e1));
    CK (cudaEventElapsedTime (&ms[i], e0, e1));
  }
  qsort (ms, iters, sizeof (float), cmp_float);
  const float med = iters % 2 ? ms[iters / 2] : 0.5f * (ms[iters / 2 - 1] + ms[iters / 2]);
  free (ms);
  CK (cudaEventDestroy (e0));
  CK (cudaEventDestroy (e1));
  return med;
}

static void *
dev_alloc (size_t bytes)
{
  void *p = NULL;
  CK (cudaMalloc (&p, bytes > 0 ? bytes : 1));
  return p;
}

/* Sums over the shapes benchmarked so far (ms): v3, v2 and v1 linear, cuBLAS FP16; v3, v2 and v1
 * GEMM alone. */
static double totals[4], gemm_totals[3];

/* The MLP's first layer ("up") of each stage: its LayerNorm and quantization as two kernels
 * (sam2_cuda_layer_norm, sam2_cuda_quantize_rows) and fused (sam2_cuda_layer_norm_quantize_rows),
 * kernels v2; printed after the main table. */
typedef struct {
  Shape shape;
  float apart, fused;
  float next_apart[2], next_fused[2];   /* kernels v2, v3 */
} NormTiming;
static NormTiming norm_timings[8];
static int n_norm_timings;

static void
bench_shape (const Shape *s, cublasHandle_t cublas)
{
  const int M = s->M, K = s->K, N = s->N;
  Sam2CudaW4A8Layer layer;
  memset (&layer, 0, sizeof layer);
  sam2_cuda_w4a8_geometry (N, K, GROUP, &layer.geo);
  const int NG = layer.geo.n_groups;

  /* weights: random codes, zero points and scales in the formats.h layout, packed */
  const size_t cb = (size_t) N * ((K + 1) / 2);
  uint8_t *codes = malloc (cb), *zeros = malloc ((size_t) N * NG);
  float *scales = malloc (sizeof (float) * N * NG);
  for (size_t i = 0; i < cb; i++)
    codes[i] = (uint8_t) next_u32 ();
  for (size_t i = 0; i < (size_t) N * NG; i++) {
    zeros[i] = (uint8_t) (next_u32 () & 15);
    scales[i] = 0.01f * (1.5f + next_float ());
  }
  Sam2CudaW4A8Blob blob;
  sam2_cuda_w4a8_blob_layout (&layer.geo, &blob);
  void *host_blob = malloc (blob.total);
  sam2_cuda_w4a8_pack_host (&layer.geo, codes, scales, zeros, host_blob);
  char *dblob = dev_alloc (blob.total);
  CK (cudaMemcpy (dblob, host_blob, blob.total, cudaMemcpyHostToDevice));
  layer.act_mode = SAM2_CUDA_AQ_TOKEN_SYM;
  layer.w = (const uint32_t *) (dblob + blob.w);
  layer.wzero = (const int32_t *) (dblob + blob.wzero);
  layer.wsum = (const int32_t *) (dblob + blob.wsum);
  layer.wscale = (const float *) (dblob + blob.wscale);

  /* activations (M, K) float and 16-bit operands */
  float *hx = malloc (sizeof (float) * M * K);
  for (size_t i = 0; i < (size_t) M * K; i++)
    hx[i] = next_float ();
  float *dx = dev_alloc (sizeof (float) * M * K);
  CK (cudaMemcpy (dx, hx, sizeof (float) * M * K, cudaMemcpyHostToDevice));
  float *dy = dev_alloc (sizeof (float) * M * N);
  void *ws = dev_alloc (sam2_cuda_w4a8_linear_workspace_bytes (&layer, M));

  /* rows quantized once for the GEMM-only timing */
  Sam2CudaActRows rows;
  rows.codes = dev_alloc ((size_t) M * layer.geo.row_bytes);
  rows.scales = dev_alloc (sizeof (float) * M);
  rows.zeros = dev_alloc (sizeof (int32_t) * M);
  rows.sums = dev_alloc (sizeof (int32_t) * M * NG);
  rows.t = NULL;
  CKS (sam2_cuda_quantize_rows (&layer, dx, M, &rows, 0));

  uint16_t *h16 = malloc (sizeof (uint16_t) * ((size_t) M * K > (size_t) N * K
                                                 ? (size_t) M * K : (size_t) N * K));
  void *a16 = dev_alloc (2 * (size_t) M * K), *b16 = dev_alloc (2 * (size_t) N * K);
  void *a_bf = dev_alloc (2 * (size_t) M * K), *b_bf = dev_alloc (2 * (size_t) N * K);
  void *c16 = dev_alloc (2 * (size_t) M * N);
  for (size_t i = 0; i < (size_t) M * K; i++)
    h16[i] = to_half (hx[i]);
  CK (cudaMemcpy (a16, h16, 2 * (size_t) M * K, cudaMemcpyHostToDevice));
  for (size_t i = 0; i < (size_t) M * K; i++)
    h16[i] = to_bf16 (hx[i]);
  CK (cudaMemcpy (a_bf, h16, 2 * (size_t) M * K, cudaMemcpyHostToDevice));
  for (size_t i = 0; i < (size_t) N * K; i++)
    h16[i] = to_half (0.05f * next_float ());
  CK (cudaMemcpy (b16, h16, 2 * (size_t) N * K, cudaMemcpyHostToDevice));
  for (size_t i = 0; i < (size_t) N * K; i++)
    h16[i] = to_bf16 (0.05f * next_float ());
  CK (cudaMemcpy (b_bf, h16, 2 * (size_t) N * K, cudaMemcpyHostToDevice));

  RunArgs r = {
    .layer = &layer, .rows = &rows, .x = dx, .y = dy, .ws = ws, .cublas = cublas,
    .a16 = a16, .b16 = b16, .c16 = c16, .M = M, .K = K, .N = N,
  };
  /* every kernel version (kernels.h): [0] v3, [1] v2 (the default), [2] v1 */
  float t_lin[3], t_gemm[3], t_quant[3];
  for (int v = 0; v < 3; v++) {
    sam2_cuda_w4a8_set_kernel_version (3 - v);
    t_lin[v] = time_kind (RUN_W4A8_LINEAR, &r);
    t_gemm[v] = time_kind (RUN_W4A8_GEMM, &r);
    t_quant[v] = time_kind (RUN_W4A8_QUANT, &r);
  }
  sam2_cuda_w4a8_set_kernel_version (0);
  /* kernels v2 for both columns (the fused kernel has no v1 form; SAM2_W4A8_KERNEL=v1 in the
   * environment would otherwise refuse it), restored below */
  sam2_cuda_w4a8_set_kernel_version (2);
  if (strcmp (s->layer, "up") == 0 && sam2_cuda_layer_norm_quantize_rows_supported (&layer)
      && n_norm_timings < (int) (sizeof norm_timings / sizeof norm_timings[0])) {
    float *nw = dev_alloc (sizeof (float) * K), *nb = dev_alloc (sizeof (float) * K);
    CK (cudaMemcpy (nw, hx, sizeof (float) * K, cudaMemcpyHostToDevice));
    CK (cudaMemcpy (nb, hx + K, sizeof (float) * K, cudaMemcpyHostToDevice));
    const Sam2CudaRowNorm norm = { nw, nb, 1e-6f };
    r.norm = &norm;
    r.normed = dev_alloc (sizeof (float) * M * K);
    NormTiming *nt = &norm_timings[n_norm_timings++];
    nt->shape = *s;
    nt->apart = time_kind (RUN_NORM_APART, &r);
    nt->fused = time_kind (RUN_NORM_FUSED, &r);
    /* the MLP's second layer reads this one's output: its quantization apart or in this GEMM
     * (only its geometry and quantization mode matter to either) */
    Sam2CudaW4A8Layer next;
    memset (&next, 0, sizeof next);
    sam2_cuda_w4a8_geometry (K, N, GROUP, &next.geo);
    next.act_mode = SAM2_CUDA_AQ_TOKEN_SYM;
    Sam2CudaActRows next_rows = {
      dev_alloc ((size_t) M * next.geo.row_bytes), dev_alloc (sizeof (float) * M),
      dev_alloc (sizeof (int32_t) * M), dev_alloc (sizeof (int32_t) * M * next.geo.n_groups),
      NULL,
    };
    const size_t nc = sam2_cuda_w4a8_quantize_next_counters (M);
    r.counters = dev_alloc (nc * sizeof (unsigned int));
    CK (cudaMemset (r.counters, 0, nc * sizeof (unsigned int)));
    r.next = &next;
    r.next_rows = &next_rows;
    for (int v = 0; v < 2; v++) {
      sam2_cuda_w4a8_set_kernel_version (2 + v);
      nt->next_apart[v] = time_kind (RUN_NEXT_APART, &r);
      nt->next_fused[v] = time_kind (RUN_NEXT_FUSED, &r);
    }
    sam2_cuda_w4a8_set_kernel_version (2);
    CK (cudaFree (next_rows.codes));
    CK (cudaFree (next_rows.scales));
    CK (cudaFree (next_rows.zeros));
    CK (cudaFree (next_rows.sums));
    CK (cudaFree (r.counters));
    CK (cudaFree (nw));
    CK (cudaFree (nb));
    CK (cudaFree (r.normed));
  }
  sam2_cuda_w4a8_set_kernel_version (0);
  const float t_f16 = time_kind (RUN_CUBLAS_F16, &r);
  r.a16 = a_bf;
  r.b16 = b_bf;
  const float t_bf16 = time_kind (RUN_CUBLAS_BF16, &r);
  const double ops = 2.0 * M * N * K;
#define TOPS(ms) (ops / ((ms) * 1e-3) / 1e12)
  printf ("%-5s %-5s %6d %5d %5d | %8.4f %6.1f | %8.4f %6.1f | %8.4f %6.1f | %8.4f %6.1f "
          "| %8.4f | %8.4f %6.1f | %8.4f %6.1f | %8.4f | %8.4f %6.1f | %8.4f %6.1f "
          "| %5.2fx %5.2fx %5.2fx\n",
          s->model, s->layer, M, K, N, t_lin[0], TOPS (t_lin[0]), t_gemm[0], TOPS (t_gemm[0]),
          t_lin[1], TOPS (t_lin[1]), t_gemm[1], TOPS (t_gemm[1]), t_quant[1], t_lin[2],
          TOPS (t_lin[2]), t_gemm[2], TOPS (t_gemm[2]), t_quant[2], t_f16, TOPS (t_f16), t_bf16,
          TOPS (t_bf16), t_f16 / t_lin[0], t_f16 / t_lin[1], t_f16 / t_lin[2]);
#undef TOPS
  fflush (stdout);
  for (int v = 0; v < 3; v++) {
    totals[v] += t_lin[v];
    gemm_totals[v] += t_gemm[v];
  }
  totals[3] += t_f16;

  CK (cudaFree (dblob));
  CK (cudaFree (dx));
  CK (cudaFree (dy));
  CK (cudaFree (ws));
  CK (cudaFree (rows.codes));
  CK (cudaFree (rows.scales));
  CK (cudaFree (rows.zeros));
  CK (cudaFree (rows.sums));
  CK (cudaFree (a16));
  CK (cudaFree (b16));
  CK (cudaFree (a_bf));
  CK (cudaFree (b_bf));
  CK (cudaFree (c16));
  free (codes);
  free (zeros);
  free (scales);
  free (host_blob);
  free (hx);
  free (h16);
}

/* The 16 linear shapes of one encoder: 4 stages x (qkv, proj, mlp up, mlp down). */
static int
model_shapes (const char *model, int embed, Shape *out)
{
  int n = 0;
  for (int stage = 0; stage < 4; stage++) {
    const int d = embed << stage, side = 256 >> stage, M = side * side;
    const Shape s[4] = {
      { model, "qkv", M, d, 3 * d },
      { model, "proj", M, d, d },
      { model, "up", M, d, 4 * d },
      { model, "down", M, 4 * d, d },
    };
    for (int i = 0; i < 4; i++)
      out[n++] = s[i];
  }
  return n;
}

int
main (int argc, char **argv)
{
  const char *which = "all";
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--model") == 0 && i + 1 < argc)
      which = argv[++i];
    else if (strcmp (argv[i], "--iters") == 0 && i + 1 < argc)
      iters = atoi (argv[++i]);
    else if (strcmp (argv[i], "--warmup") == 0 && i + 1 < argc)
      warmup = atoi (argv[++i]);
    else {
      fprintf (stderr, "usage: %s [--model tiny|large|all] [--iters N] [--warmup N]\n", argv[0]);
      return 2;
    }
  }
  if (iters < 1)
    iters = 1;
  if (warmup < 0)
    warmup = 0;
  int count = 0;
  if (cudaGetDeviceCount (&count) != cudaSuccess || count == 0) {
    fprintf (stderr, "no CUDA device\n");
    return 77;
  }
  struct cudaDeviceProp prop;
  CK (cudaGetDeviceProperties (&prop, 0));
  cublasHandle_t cublas;
  CKB (cublasCreate (&cublas));
  CKB (cublasSetStream (cublas, 0));

  Shape shapes[32];
  int n = 0;
  if (strcmp (which, "tiny") == 0 || strcmp (which, "all") == 0)
    n += model_shapes ("tiny", 96, shapes + n);
  if (strcmp (which, "large") == 0 || strcmp (which, "all") == 0)
    n += model_shapes ("large", 144, shapes + n);
  if (n == 0) {
    fprintf (stderr, "unknown model %s\n", which);
    return 2;
  }
  printf ("%s, W4A8 groups of %d, median of %d runs after %d warm-up\n", prop.name, GROUP, iters,
          warmup);
  printf ("%-5s %-5s %6s %5s %5s | %-15s | %-15s | %-15s | %-15s | %-8s | %-15s | %-15s | %-8s "
          "| %-15s | %-15s | %s\n", "model", "layer", "M", "K", "N", "v3 linear", "v3 gemm",
          "v2 linear", "v2 gemm", "v2 quant", "v1 linear", "v1 gemm", "v1 quant", "cublas fp16",
          "cublas bf16", "fp16/linear v3, v2, v1");
  printf ("%-5s %-5s %6s %5s %5s | %8s %6s | %8s %6s | %8s %6s | %8s %6s | %8s | %8s %6s "
          "| %8s %6s | %8s | %8s %6s | %8s %6s |\n", "", "", "", "", "", "ms", "TOPS", "ms",
          "TOPS", "ms", "TOPS", "ms", "TOPS", "ms", "ms", "TOPS", "ms", "TOPS", "ms", "ms", "TOPS",
          "ms", "TOPS");
  for (int i = 0; i < n; i++)
    bench_shape (&shapes[i], cublas);
  printf ("sum over the %d shapes: v3 linear %.4f ms, v2 linear %.4f ms, v1 linear %.4f ms, "
          "cuBLAS FP16 %.4f ms (fp16/v3 %.2fx, fp16/v2 %.2fx, fp16/v1 %.2fx); GEMM alone: v3 "
          "%.4f ms, v2 %.4f ms, v1 %.4f ms\n", n, totals[0], totals[1], totals[2], totals[3],
          totals[3] / totals[0], totals[3] / totals[1], totals[3] / totals[2], gemm_totals[0],
          gemm_totals[1], gemm_totals[2]);
  printf ("\nLayerNorm + quantization of the MLP's input (v2): two kernels, fused\n");
  printf ("%-5s %6s %5s | %8s | %8s | %s\n", "model", "M", "K", "apart ms", "fused ms",
          "apart/fused");
  for (int i = 0; i < n_norm_timings; i++) {
    const NormTiming *nt = &norm_timings[i];
    printf ("%-5s %6d %5d | %8.4f | %8.4f | %5.2fx\n", nt->shape.model, nt->shape.M, nt->shape.K,
            nt->apart, nt->fused, nt->apart / nt->fused);
  }
  printf ("\nThe MLP's first layer (GELU) and the quantization of its output for the second: "
          "the GEMM then the pass, or the GEMM quantizing (sam2_cuda_w4a8_gemm_quantize_next)\n");
  printf ("%-5s %6s %5s %5s | %8s | %8s | %8s | %8s | %s\n", "model", "M", "K", "N",
          "v2 apart", "v2 fused", "v3 apart", "v3 fused", "apart/fused v2, v3");
  for (int i = 0; i < n_norm_timings; i++) {
    const NormTiming *nt = &norm_timings[i];
    printf ("%-5s %6d %5d %5d | %8.4f | %8.4f | %8.4f | %8.4f | %5.2fx %5.2fx\n",
            nt->shape.model, nt->shape.M, nt->shape.K, nt->shape.N, nt->next_apart[0],
            nt->next_fused[0], nt->next_apart[1], nt->next_fused[1],
            nt->next_apart[0] / nt->next_fused[0], nt->next_apart[1] / nt->next_fused[1]);
  }
  CKB (cublasDestroy (cublas));
  return 0;
}
