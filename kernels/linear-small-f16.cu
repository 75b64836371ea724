/* linear-small-f16.cu: sam2_cuda_linear_16_small_m (kernels.h), the half-precision paths' linear
 * for a handful of rows: the mask decoder's token-side layers (~7 tokens: the two-way blocks' token
 * projections and MLPs, the hypernetworks, the IoU head; 40 of its ~50 linears per prompt).
 *
 * With M = 7, cuBLAS runs a tile meant for hundreds of rows, after a conversion pass over x, and
 * the bias is another pass: three launches for a product that reads at most 1 MB of weights.
 * Here one warp owns one output column n: its lanes stream W[n] (K halves, 16 bytes per lane
 * per step) and keep one FP32 sum per row; the rows of x are read from L1 / L2 (M K floats, 56 KB
 * at most for K = 2048 and M = 7) and rounded to FP16 (BF16) as they are read, so the operands
 * are exactly those of the cuBLAS path (x and W in the 16-bit format, products exact in FP32,
 * FP32 sums: only the order of the additions differs). The warp's sums are reduced by a
 * butterfly, and lane m writes row m: act(sum + bias) + residual, the backend linear's epilogue,
 * in the same launch. An addend to x (the decoder's positional encodings: linear (x + pe)) is
 * added in float as the rows are read, so the sum is never written; and a LayerNorm in front
 * (sam2_cuda_norm_linear_16_small_m: the decoder's norm, then projection) is computed by every
 * block into shared memory, so the norm needs no launch of its own. */
#include "common.cuh"
#include "layernorm-row.cuh"

namespace {

constexpr int WARPS = 8;   /* output columns per block */

/* VEC: K % 8 == 0, x and w16 16-byte aligned (16-byte loads of 8 halves and 2 float4). BF16:
 * the operands' format (sam2_to16). NORM: the rows are first normalised by `norm` (a warp per
 * row, layernorm-row.cuh's arithmetic, so layer_norm_kernel's floats) into shared memory, which
 * the products then read; every block counts itself once it has read x, and the last writes the
 * normalised rows over x, as the LayerNorm kernel run in place would have left them. */
template <bool VEC, bool BF16, bool NORM>
__global__ void __launch_bounds__ (WARPS * 32)
linear_small_m_kernel (float *x_rows, const float *__restrict__ x_addend, int M, int K,
                       const uint16_t *__restrict__ w, int N, const float *__restrict__ bias,
                       int act, const float *residual, float *y, Sam2CudaRowNorm norm,
                       unsigned int *counter)
{
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * WARPS + warp;
  const float *x = x_rows;
  if (NORM) {
    SAM2_DYNAMIC_SHARED (float4, rows4);
    float *rows = reinterpret_cast<float *> (rows4);   /* (M, K) */
    SAM2_STATIC_SHARED (unsigned int, last, [1]);
    for (int r = warp; r < M; r += WARPS) {
      const float *xr = x_rows + (size_t) r * K;
      const Sam2RowNormStats st = sam2_row_norm_stats (xr, K, norm.eps, lane);
      for (int c = lane; c < K; c += 32)
        rows[r * K + c] = sam2_row_norm_value (xr[c], st, norm.weight[c], norm.bias[c]);
    }
    __syncthreads ();
    /* this block's reads of x are done: count it; the grid's last block writes x */
    if (threadIdx.x == 0)
      last[0] = atomicInc (counter, gridDim.x - 1) == gridDim.x - 1;
    __syncthreads ();
    if (last[0])
      for (int i = threadIdx.x; i < M * K; i += blockDim.x)
        x_rows[i] = rows[i];
    x = rows;
  }
  if (n >= N)
    return;   /* a whole warp, after the block's barriers */
  float acc[SAM2_CUDA_LINEAR_SMALL_M_MAX];
#pragma unroll
  for (int m = 0; m < SAM2_CUDA_LINEAR_SMALL_M_MAX; m++)
    acc[m] = 0.0f;
  const uint16_t *wr = w + (size_t) n * K;   /* (K) */
  if (VEC) {
    for (int k = lane * 8; k < K; k += 32 * 8) {
      const uint4 raw = *reinterpret_cast<const uint4 *> (wr + k);
      const uint32_t words[4] = { raw.x, raw.y, raw.z, raw.w };
      float wf[8];
#pragma unroll
      for (int j = 0; j < 4; j++) {   /* the lower-addressed half in the low 16 bits */
        wf[2 * j] = sam2_from16<BF16> ((uint16_t) (words[j] & 0xffffu));
        wf[2 * j + 1] = sam2_from16<BF16> ((uint16_t) (words[j] >> 16));
      }
#pragma unroll
      for (int m = 0; m < SAM2_CUDA_LINEAR_SMALL_M_MAX; m++) {
        if (m >= M)
          break;
        const float4 *xr = reinterpret_cast<const float4 *> (x + (size_t) m * K + k);
        float4 a = xr[0], b = xr[1];
        if (x_addend != nullptr) {   /* the float sum, rounded as sam2_cuda_add's */
          const float4 *ar = reinterpret_cast<const float4 *> (x_addend + (size_t) m * K + k);
          const float4 c = ar[0], d = ar[1];
          a = make_float4 (a.x + c.x, a.y + c.y, a.z + c.z, a.w + c.w);
          b = make_float4 (b.x + d.x, b.y + d.y, b.z + d.z, b.w + d.w);
        }
        float s = acc[m];
        s = fmaf (sam2_round16<BF16> (a.x), wf[0], s);
        s = fmaf (sam2_round16<BF16> (a.y), wf[1], s);
        s = fmaf (sam2_round16<BF16> (a.z), wf[2], s);
        s = fmaf (sam2_round16<BF16> (a.w), wf[3], s);
        s = fmaf (sam2_round16<BF16> (b.x), wf[4], s);
        s = fmaf (sam2_round16<BF16> (b.y), wf[5], s);
        s = fmaf (sam2_round16<BF16> (b.z), wf[6], s);
        s = fmaf (sam2_round16<BF16> (b.w), wf[7], s);
        acc[m] = s;
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      const float wk = sam2_from16<BF16> (wr[k]);
#pragma unroll
      for (int m = 0; m < SAM2_CUDA_LINEAR_SMALL_M_MAX; m++) {
        if (m >= M)
          break;
        float xk = x[(size_t) m * K + k];
        if (x_addend != nullptr)
          xk += x_addend[(size_t) m * K + k];
        acc[m] = fmaf (sam2_round16<BF16> (xk), wk, acc[m]);
      }
    }
  }
  /* every lane ends with every row's sum; lane m keeps row m's */
  float mine = 0.0f;
#pragma unroll
  for (int m = 0; m < SAM2_CUDA_LINEAR_SMALL_M_MAX; m++) {
    if (m >= M)
      break;
    float s = acc[m];
    for (int o = 16; o > 0; o /= 2)
      s += __shfl_xor_sync (0xffffffffu, s, o);
    if (lane == m)
      mine = s;
  }
  if (lane < M) {
    const size_t i = (size_t) lane * N + n;
    float v = mine + (bias != nullptr ? bias[n] : 0.0f);
    v = sam2_act_apply (act, v);
    if (residual != nullptr)
      v += residual[i];   /* read before the write: residual may be y */
    y[i] = v;
  }
}

template <bool BF16, bool NORM>
int
launch_small_m (float *x, const float *x_addend, int M, int K, const uint16_t *w, int N,
                const float *bias, int act, const float *residual, float *y,
                const Sam2CudaRowNorm &norm, unsigned int *counter, cudaStream_t stream)
{
  const unsigned blocks = (unsigned) ((N + WARPS - 1) / WARPS);
  const size_t smem = NORM ? (size_t) M * K * sizeof (float) : 0;
  /* with NORM the products read the shared rows, 16-byte aligned */
  if (K % 8 == 0 && (NORM || sam2_aligned16 (x)) && sam2_aligned16 (w)
      && (x_addend == nullptr || sam2_aligned16 (x_addend)))
    SAM2_LAUNCH (blocks, WARPS * 32, smem, stream, linear_small_m_kernel<true, BF16, NORM>) (
        x, x_addend, M, K, w, N, bias, act, residual, y, norm, counter);
  else
    SAM2_LAUNCH (blocks, WARPS * 32, smem, stream, linear_small_m_kernel<false, BF16, NORM>) (
        x, x_addend, M, K, w, N, bias, act, residual, y, norm, counter);
  return sam2_launch_status ();
}

const Sam2CudaRowNorm no_norm = { nullptr, nullptr, 0.0f };

} /* namespace */

extern "C" int
sam2_cuda_linear_16_small_m (const float *x, const float *x_addend, int M, int K,
                             Sam2CudaHalf type, const uint16_t *w16, int N, const float *bias,
                             int act, const float *residual, float *y, cudaStream_t stream)
{
  if (x == nullptr || w16 == nullptr || y == nullptr || M < 0
      || M > SAM2_CUDA_LINEAR_SMALL_M_MAX || K < 1 || N < 0 || !sam2_act_valid (act)
      || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  /* x is only read without a norm */
  float *xr = const_cast<float *> (x);
  return type == SAM2_CUDA_BF16
           ? launch_small_m<true, false> (xr, x_addend, M, K, w16, N, bias, act, residual, y,
                                          no_norm, nullptr, stream)
           : launch_small_m<false, false> (xr, x_addend, M, K, w16, N, bias, act, residual, y,
                                           no_norm, nullptr, stream);
}

extern "C" int
sam2_cuda_norm_linear_16_small_m (const Sam2CudaRowNorm *norm, unsigned int *counter, float *x,
                                  const float *x_addend, int M, int K, Sam2CudaHalf type,
                                  const uint16_t *w16, int N, const float *bias, int act, float *y,
                                  cudaStream_t stream)
{
  if (norm == nullptr || norm->weight == nullptr || norm->bias == nullptr || counter == nullptr
      || x == nullptr || w16 == nullptr || y == nullptr || y == x
      || M < 1 || M > SAM2_CUDA_LINEAR_SMALL_M_MAX || K < 1 || N < 1
      || (size_t) M * K * sizeof (float) > SAM2_CUDA_NORM_LINEAR_SMALL_M_MAX_BYTES
      || !sam2_act_valid (act) || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  return type == SAM2_CUDA_BF16
           ? launch_small_m<true, true> (x, x_addend, M, K, w16, N, bias, act, nullptr, y, *norm,
                                         counter, stream)
           : launch_small_m<false, true> (x, x_addend, M, K, w16, N, bias, act, nullptr, y, *norm,
                                          counter, stream);
}
