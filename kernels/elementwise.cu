/* elementwise.cu: the element-wise launchers of kernels.h (bias + activation + residual, add,
 * add_row, LayerNorm and LayerNorm to FP16, softmax, column scaling), each one pass over memory.
 *
 * The flat kernels are grid-stride loops over float4 when every pointer is 16-byte aligned (and,
 * for the per-row operands, the row length a multiple of 4), with a scalar tail; otherwise
 * scalar. LayerNorm and softmax use one warp per row with the row statistics in double, as
 * core/ops-cpu.c does. */
#include "common.cuh"
#include "layernorm-row.cuh"

#include <cuda_fp16.h>
#include <math.h>

/* ---- bias + activation + residual ------------------------------------------------------------ */

/* y (total = M * N) = act(y + bias[col]) + residual; bias (N) and residual (total) may be NULL.
 * VEC: y, bias, residual 16-byte aligned and N % 4 == 0 when bias is given (then a float4 never
 * straddles two rows). */
template <bool VEC>
static __global__ void
bias_act_residual_kernel (float *__restrict__ y, size_t total, int N, const float *bias, int act,
                          const float *residual)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  size_t first = (size_t) blockIdx.x * blockDim.x + threadIdx.x;
  size_t scalar_from = 0;
  if (VEC) {
    const size_t n4 = total / 4;
    float4 *y4 = reinterpret_cast<float4 *> (y);
    for (size_t i = first; i < n4; i += stride) {
      float4 v = y4[i];
      if (bias != NULL) {
        const float4 b = reinterpret_cast<const float4 *> (bias)[(i * 4 % (size_t) N) / 4];
        v.x += b.x;
        v.y += b.y;
        v.z += b.z;
        v.w += b.w;
      }
      v.x = sam2_act_apply (act, v.x);
      v.y = sam2_act_apply (act, v.y);
      v.z = sam2_act_apply (act, v.z);
      v.w = sam2_act_apply (act, v.w);
      if (residual != NULL) {
        const float4 r = reinterpret_cast<const float4 *> (residual)[i];
        v.x += r.x;
        v.y += r.y;
        v.z += r.z;
        v.w += r.w;
      }
      y4[i] = v;
    }
    scalar_from = n4 * 4;
  }
  for (size_t i = scalar_from + first; i < total; i += stride) {
    float v = y[i];
    if (bias != NULL)
      v += bias[i % (size_t) N];
    v = sam2_act_apply (act, v);
    if (residual != NULL)
      v += residual[i];
    y[i] = v;
  }
}

static int
launch_bias_act_residual (float *y, size_t total, int N, const float *bias, int act,
                          const float *residual, cudaStream_t stream)
{
  if (y == NULL || N < 1 || !sam2_act_valid (act))
    return SAM2_CUDA_UNSUPPORTED;
  if (total == 0 || (bias == NULL && act == SAM2_CUDA_ACT_NONE && residual == NULL))
    return SAM2_CUDA_OK;
  const bool vec = sam2_aligned16 (y) && (bias == NULL || (sam2_aligned16 (bias) && N % 4 == 0))
                   && (residual == NULL || sam2_aligned16 (residual));
  const unsigned blocks = sam2_ew_blocks (vec ? total / 4 + 1 : total);
  if (vec)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, bias_act_residual_kernel<true>) (
        y, total, N, bias, act, residual);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, bias_act_residual_kernel<false>) (
        y, total, N, bias, act, residual);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_bias_act (float *y, int M, int N, const float *bias, int act, cudaStream_t stream)
{
  if (M < 0 || N < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  return launch_bias_act_residual (y, (size_t) M * N, N, bias, act, NULL, stream);
}

extern "C" int
sam2_cuda_bias_act_residual (float *y, int M, int N, const float *bias, int act,
                             const float *residual, cudaStream_t stream)
{
  if (M < 0 || N < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  return launch_bias_act_residual (y, (size_t) M * N, N, bias, act, residual, stream);
}

extern "C" int
sam2_cuda_activation (int act, float *x, size_t n, cudaStream_t stream)
{
  if (n == 0 && sam2_act_valid (act))
    return SAM2_CUDA_OK;
  /* N = 1: no bias, so the row length plays no part */
  return launch_bias_act_residual (x, n, 1, NULL, act, NULL, stream);
}

/* ---- add, add_row, scale_columns ------------------------------------------------------------- */

/* y (total) = a (total) op c, where c is either a full tensor (ROW == false) or a row (N)
 * broadcast over the rows (ROW == true, y = a + c[col]); MUL multiplies instead of adding.
 * VEC: all pointers 16-byte aligned and, for a row, N % 4 == 0. */
template <bool VEC, bool ROW, bool MUL>
static __global__ void
binary_kernel (float *y, const float *a, const float *c, size_t total, int N)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  const size_t first = (size_t) blockIdx.x * blockDim.x + threadIdx.x;
  size_t scalar_from = 0;
  if (VEC) {
    const size_t n4 = total / 4;
    for (size_t i = first; i < n4; i += stride) {
      const float4 va = reinterpret_cast<const float4 *> (a)[i];
      const float4 vc = reinterpret_cast<const float4 *> (c)[ROW ? (i * 4 % (size_t) N) / 4 : i];
      float4 v;
      v.x = MUL ? va.x * vc.x : va.x + vc.x;
      v.y = MUL ? va.y * vc.y : va.y + vc.y;
      v.z = MUL ? va.z * vc.z : va.z + vc.z;
      v.w = MUL ? va.w * vc.w : va.w + vc.w;
      reinterpret_cast<float4 *> (y)[i] = v;
    }
    scalar_from = n4 * 4;
  }
  for (size_t i = scalar_from + first; i < total; i += stride) {
    const float vc = c[ROW ? i % (size_t) N : i];
    y[i] = MUL ? a[i] * vc : a[i] + vc;
  }
}

template <bool ROW, bool MUL>
static int
launch_binary (float *y, const float *a, const float *c, size_t total, int N, cudaStream_t stream)
{
  if (y == NULL || a == NULL || c == NULL || N < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (total == 0)
    return SAM2_CUDA_OK;
  const bool vec = sam2_aligned16 (y) && sam2_aligned16 (a) && sam2_aligned16 (c)
                   && (!ROW || N % 4 == 0);
  const unsigned blocks = sam2_ew_blocks (vec ? total / 4 + 1 : total);
  if (vec)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 binary_kernel<true, ROW, MUL>) (y, a, c, total, N);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 binary_kernel<false, ROW, MUL>) (y, a, c, total, N);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_add (float *y, const float *a, const float *c, size_t n, cudaStream_t stream)
{
  return launch_binary<false, false> (y, a, c, n, 1, stream);
}

extern "C" int
sam2_cuda_add_row (float *y, const float *x, const float *row, int M, int C, cudaStream_t stream)
{
  if (M < 0 || C < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || C == 0)
    return SAM2_CUDA_OK;
  return launch_binary<true, false> (y, x, row, (size_t) M * C, C, stream);
}

extern "C" int
sam2_cuda_scale_columns (const float *x, int M, int K, const float *scale, float *y,
                         cudaStream_t stream)
{
  if (M < 0 || K < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || K == 0)
    return SAM2_CUDA_OK;
  return launch_binary<true, true> (y, x, scale, (size_t) M * K, K, stream);
}

/* ---- LayerNorm and softmax: one warp per row ------------------------------------------------ */

#define ROWS_PER_BLOCK (SAM2_EW_THREADS / 32)

static __device__ __forceinline__ float
warp_max_float (float v)
{
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync (0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

/* x, y (M, C); y may be x: a lane writes only the elements it read itself, after the row's
 * statistics are complete. The row's arithmetic is layernorm-row.cuh's (shared with the fused
 * LayerNorm + quantization of layernorm-quant.cu). With OUT F16 or BF16 the float is then
 * rounded to that format (y is uint16_t bit patterns): the values the half-precision paths'
 * conversion of the float output gives. With windows (win.ws > 0; then y is not x) output row m
 * is the normalised row sam2_window_source_row names, zeros for a padding row: the window
 * partition of the output, folded in. */
enum NormOut { OUT_F32, OUT_F16, OUT_BF16 };

template <NormOut OUT>
static __global__ void
layer_norm_kernel (const float *x, int M, int C, const float *__restrict__ weight,
                   const float *__restrict__ bias, float eps, Sam2CudaRowWindows win, void *y)
{
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= M)
    return;
  const long long src = sam2_window_source_row (win, row);   /* the same in every lane */
  const float *xr = x + (size_t) (src >= 0 ? src : 0) * C;
  Sam2RowNormStats st = { 0.0, 0.0 };
  if (src >= 0)
    st = sam2_row_norm_stats (xr, C, eps, lane);
  for (int c = lane; c < C; c += 32) {
    const float out = src >= 0 ? sam2_row_norm_value (xr[c], st, weight[c], bias[c]) : 0.0f;
    if (OUT != OUT_F32)
      static_cast<uint16_t *> (y)[(size_t) row * C + c] = sam2_to16<OUT == OUT_BF16> (out);
    else
      static_cast<float *> (y)[(size_t) row * C + c] = out;
  }
}

/* M output rows; win.ws 0: the rows of x as they are */
template <NormOut OUT>
static int
launch_layer_norm (const float *x, long long M, int C, const float *weight, const float *bias,
                   float eps, const Sam2CudaRowWindows &win, void *y, cudaStream_t stream)
{
  if (x == NULL || y == NULL || weight == NULL || bias == NULL || M < 0 || M > 0x7fffffff
      || C < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  const unsigned blocks = (unsigned) ((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
  SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, layer_norm_kernel<OUT>) (
      x, (int) M, C, weight, bias, eps, win, y);
  return sam2_launch_status ();
}

static const Sam2CudaRowWindows rows_as_they_are = { 0, 0, 0, 0 };

extern "C" int
sam2_cuda_layer_norm (const float *x, int M, int C, const float *weight, const float *bias,
                      float eps, float *y, cudaStream_t stream)
{
  return launch_layer_norm<OUT_F32> (x, M, C, weight, bias, eps, rows_as_they_are, y, stream);
}

/* the 16-bit output rows of sam2_cuda_layer_norm_16 / _windows_16 */
static int
launch_layer_norm_16 (const float *x, long long M, int C, const float *weight, const float *bias,
                      float eps, const Sam2CudaRowWindows &win, Sam2CudaHalf type, uint16_t *y16,
                      cudaStream_t stream)
{
  if (!sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  return type == SAM2_CUDA_BF16
           ? launch_layer_norm<OUT_BF16> (x, M, C, weight, bias, eps, win, y16, stream)
           : launch_layer_norm<OUT_F16> (x, M, C, weight, bias, eps, win, y16, stream);
}

extern "C" int
sam2_cuda_layer_norm_16 (const float *x, int M, int C, const float *weight, const float *bias,
                         float eps, Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream)
{
  return launch_layer_norm_16 (x, M, C, weight, bias, eps, rows_as_they_are, type, y16, stream);
}

extern "C" int
sam2_cuda_layer_norm_windows_16 (const float *x, const Sam2CudaRowWindows *windows, int C,
                                 const float *weight, const float *bias, float eps,
                                 Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream)
{
  if (windows == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  return launch_layer_norm_16 (x, sam2_cuda_row_windows_rows (windows), C, weight, bias, eps,
                               *windows, type, y16, stream);
}

/* sam2_cuda_window_partition_16: a warp per output row, as layer_norm_kernel; the row of x that
 * sam2_window_source_row names, rounded, or zeros for a padding row. */
template <bool BF16>
static __global__ void
windows_to_16_kernel (const float *__restrict__ x, int M, int C, Sam2CudaRowWindows win,
                      uint16_t *__restrict__ y)
{
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= M)
    return;
  const long long src = sam2_window_source_row (win, row);
  for (int c = lane; c < C; c += 32)
    y[(size_t) row * C + c] = sam2_to16<BF16> (src >= 0 ? x[(size_t) src * C + c] : 0.0f);
}

extern "C" int
sam2_cuda_window_partition_16 (const float *x, const Sam2CudaRowWindows *windows, int C,
                               Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream)
{
  if (x == NULL || windows == NULL || y16 == NULL || C < 1 || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  const long long M = sam2_cuda_row_windows_rows (windows);
  if (M < 0 || M > 0x7fffffff)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  const unsigned blocks = (unsigned) ((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
  if (type == SAM2_CUDA_BF16)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, windows_to_16_kernel<true>) (
        x, (int) M, C, *windows, y16);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, windows_to_16_kernel<false>) (
        x, (int) M, C, *windows, y16);
  return sam2_launch_status ();
}

/* sam2_cuda_norm_operands_16: a warp per row, as layer_norm_kernel. In place: each lane reads
 * and writes only its own columns once the row's statistics are known. The sum is float's, as
 * act_to_16_kernel's (gemm-float.cu). */
template <bool BF16, bool NORM>
static __global__ void
norm_operands_16_kernel (float *x, int M, int C, Sam2CudaRowNorm norm,
                         const float *__restrict__ addend, uint16_t *__restrict__ sum16,
                         uint16_t *__restrict__ plain16)
{
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= M)
    return;
  float *xr = x + (size_t) row * C;
  Sam2RowNormStats st = { 0.0, 0.0 };
  if (NORM)
    st = sam2_row_norm_stats (xr, C, norm.eps, lane);
  for (int c = lane; c < C; c += 32) {
    const size_t i = (size_t) row * C + c;
    float v = xr[c];
    if (NORM) {
      v = sam2_row_norm_value (v, st, norm.weight[c], norm.bias[c]);
      xr[c] = v;
    }
    if (sum16 != nullptr)
      sum16[i] = sam2_to16<BF16> (v + addend[i]);
    if (plain16 != nullptr)
      plain16[i] = sam2_to16<BF16> (v);
  }
}

template <bool BF16>
static void
launch_norm_operands_16 (float *x, int M, int C, const Sam2CudaRowNorm *norm,
                         const float *addend, uint16_t *sum16, uint16_t *plain16,
                         cudaStream_t stream)
{
  const unsigned blocks = (unsigned) ((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
  const Sam2CudaRowNorm none = { NULL, NULL, 0.0f };
  if (norm != NULL)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, norm_operands_16_kernel<BF16, true>) (
        x, M, C, *norm, addend, sum16, plain16);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, norm_operands_16_kernel<BF16, false>) (
        x, M, C, none, addend, sum16, plain16);
}

extern "C" int
sam2_cuda_norm_operands_16 (float *x, int M, int C, const Sam2CudaRowNorm *norm,
                            const float *addend, Sam2CudaHalf type, uint16_t *sum16,
                            uint16_t *plain16, cudaStream_t stream)
{
  if (x == NULL || M < 0 || C < 1 || !sam2_half_valid (type)
      || (norm != NULL && (norm->weight == NULL || norm->bias == NULL))
      || (sum16 != NULL && addend == NULL))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || (norm == NULL && sum16 == NULL && plain16 == NULL))
    return SAM2_CUDA_OK;
  if (type == SAM2_CUDA_BF16)
    launch_norm_operands_16<true> (x, M, C, norm, addend, sum16, plain16, stream);
  else
    launch_norm_operands_16<false> (x, M, C, norm, addend, sum16, plain16, stream);
  return sam2_launch_status ();
}

/* x (M, N) in place: exp(x - row max) / row sum, the sum in double and its inverse rounded to
 * float once, as sam2_cpu_softmax_rows. */
static __global__ void
softmax_rows_kernel (float *x, int M, int N)
{
  const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= M)
    return;
  float *r = x + (size_t) row * N;
  float mx = r[0];
  for (int c = lane; c < N; c += 32)
    mx = r[c] > mx ? r[c] : mx;
  mx = warp_max_float (mx);
  double s = 0.0;
  for (int c = lane; c < N; c += 32) {
    const float e = expf (r[c] - mx);
    r[c] = e;
    s += (double) e;
  }
  const float inv = (float) (1.0 / sam2_warp_sum_double (s));
  for (int c = lane; c < N; c += 32)
    r[c] *= inv;
}

extern "C" int
sam2_cuda_softmax_rows (float *x, int M, int N, cudaStream_t stream)
{
  if (x == NULL || M < 0 || N < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  const unsigned blocks = (unsigned) ((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
  SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, softmax_rows_kernel) (x, M, N);
  return sam2_launch_status ();
}
