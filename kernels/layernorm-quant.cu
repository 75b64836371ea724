/* layernorm-quant.cu: activation quantization of a W4A8 layer into the GEMM's kernel rows
 * (sam2_cuda_quantize_rows, kernels.h), and the same fused with the LayerNorm before the layer
 * (sam2_cuda_layer_norm_quantize_rows: the normalised row kept in shared memory).
 *
 * One warp per row, QUANT_WARPS rows per block. Per row: the range of v = x smooth_inv (min(0, .)
 * and max(0, .), as core/quant/linear-cpu.c's row_range), the row's scale and zero point, the
 * codes written over the whole kernel row (group padding and row padding as 0), the sums of each
 * group's codes, and the low-rank down-projection t when the layer has one.
 *
 * Bit-exactness with the CPU (sam2_quantize_activations, code_c and row_params of linear-cpu.c):
 * every float operation that decides a code is written as an explicit IEEE intrinsic (__fmul_rn,
 * __fdiv_rn, __fadd_rn, __fsub_rn), so nvcc cannot contract a multiply and an add into an FMA
 * (which it does by default) nor replace the division by a reciprocal; min and max are exact, so
 * the order of the warp's reduction does not matter (the CPU's vector and scalar forms agree for
 * the same reason); rounding is v + copysign(0.5, v) truncated toward zero (__float2int_rz),
 * which is the CPU's `(int) (v + copysignf (0.5f, v))`. The row's parameters are computed by
 * every lane from the same reduced values, so every lane holds the same ones. */
#include "common.cuh"
#include "layernorm-row.cuh"
#include "quantize-row.cuh"

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define QUANT_WARPS 8      /* rows per block */

namespace {

/* Block: QUANT_WARPS warps, one row each. Dynamic shared memory: (QUANT_WARPS, n_groups) int32,
 * each warp's group sums. */
__global__ void __launch_bounds__ (QUANT_WARPS * 32)
quantize_rows_kernel (Sam2CudaW4A8Geometry geo, int mode, float act_scale, float act_zero,
                      const float *__restrict__ smooth, int rank, const float *__restrict__ ldown,
                      const float *__restrict__ x, int M, int8_t *__restrict__ codes,
                      float *__restrict__ scales, int32_t *__restrict__ zeros,
                      int32_t *__restrict__ sums, float *__restrict__ t)
{
  SAM2_DYNAMIC_SHARED (int32_t, gsum_all);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m = blockIdx.x * QUANT_WARPS + warp;
  const int K = geo.k, G = geo.group_size, NG = geo.n_groups, GP = geo.group_pad;
  int32_t *gsum = gsum_all + (size_t) warp * NG;   /* (NG) this warp's row */
  for (int g = lane; g < NG; g += 32)
    gsum[g] = 0;
  __syncwarp ();
  if (m >= M)
    return;   /* a whole warp leaves: no block-wide barrier follows */
  const float *xr = x + (size_t) m * K;             /* (K) */

  /* the range (static modes need only the finiteness) */
  RowRange range;
  for (int k = lane; k < K; k += 32)
    range.add (smoothed (xr, smooth, k));
  range.reduce_warp ();
  const RowQuant p = row_params (mode, act_scale, act_zero, range.lo, range.hi, range.finite);

  /* Codes: lane handles 4 consecutive positions per 128-byte sweep of the kernel row. The 4
   * lie in one group (group_pad is a multiple of 32), and so do the 32 positions of 8
   * consecutive lanes (an aligned 32-byte step): their sum is reduced over those 8 lanes and
   * added to the group's once. */
  int8_t *dst = codes + (size_t) m * geo.row_bytes;          /* (row_bytes) */
  for (int base = 0; base < geo.row_bytes; base += 128) {   /* uniform over the warp */
    const int pos = base + lane * 4;
    const bool data = pos < geo.steps * 32;   /* steps * 32 <= row_bytes */
    uint32_t word = 0;
    int s = 0, g = 0;
    if (data) {
      g = pos / GP;
      const int off = pos - g * GP;
      for (int j = 0; j < 4; j++) {
        const int k = g * G + off + j;
        if (off + j < G && k < K) {
          const int c = code_of (smoothed (xr, smooth, k), p);
          s += c;
          word |= (uint32_t) (uint8_t) (int8_t) c << (8 * j);
        }
      }
    }
    /* row_bytes is a multiple of 64, not of 128: the last sweep may cover half a row */
    if (pos < geo.row_bytes)
      *reinterpret_cast<uint32_t *> (dst + pos) = word;
    for (int o = 1; o < 8; o *= 2)
      s += __shfl_xor_sync (0xffffffffu, s, o);
    if (lane % 8 == 0 && data)
      atomicAdd (&gsum[g], s);
  }
  store_row_terms (p, gsum, NG, m, lane, scales, zeros, sums);

  if (t != nullptr)
    lowrank_down_scalar (smooth, rank, ldown, xr, K, m, lane, t);
}

/* The v2 kernel: one warp per row of x (M, K) in global memory. */
template <bool VEC, int PL>
__global__ void __launch_bounds__ (QUANT_WARPS * 32)
quantize_rows_v2_kernel (Sam2CudaW4A8Geometry geo, int mode, float act_scale, float act_zero,
                         const float *__restrict__ smooth, int rank,
                         const float *__restrict__ ldown, const float *__restrict__ x, int M,
                         int8_t *__restrict__ codes, float *__restrict__ scales,
                         int32_t *__restrict__ zeros, int32_t *__restrict__ sums,
                         float *__restrict__ t)
{
  SAM2_DYNAMIC_SHARED (int32_t, gsum_all);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m = blockIdx.x * QUANT_WARPS + warp;
  int32_t *gsum = gsum_all + (size_t) warp * geo.n_groups;   /* (n_groups) this warp's row */
  for (int g = lane; g < geo.n_groups; g += 32)
    gsum[g] = 0;
  __syncwarp ();
  if (m >= M)
    return;   /* a whole warp leaves: no block-wide barrier follows */
  quantize_row_v2<VEC, PL> (geo, mode, act_scale, act_zero, smooth, rank, ldown,
                            x + (size_t) m * geo.k, m, lane, gsum, codes, scales, zeros, sums, t);
}

/* Shared memory of the fused LayerNorm + quantization, per warp: its group sums, then its
 * normalised row, each rounded up to 16 bytes (the row is read as float4s). */
struct NormQuantSmem {
  int sums, row;               /* int32s, floats per warp */
  size_t bytes;                /* the block's */
};

__host__ __device__ inline NormQuantSmem
norm_quant_smem (const Sam2CudaW4A8Geometry &geo)
{
  NormQuantSmem s;
  s.sums = (geo.n_groups + 3) / 4 * 4;
  s.row = (geo.k + 3) / 4 * 4;
  s.bytes = (size_t) QUANT_WARPS * (s.sums + s.row) * 4;
  return s;
}

/* LayerNorm fused with the v2 quantization: the warp normalises its row of x (M, K) (or, with
 * windows, the row sam2_window_source_row names; zeros for a padding row) into shared memory with
 * layernorm-row.cuh's arithmetic (that of sam2_cuda_layer_norm), then quantizes it with
 * quantize_row_v2, as sam2_cuda_quantize_rows would the LayerNorm kernel's output: the same
 * floats in, the same code, so the same bits out. The float row never reaches memory. */
template <bool VEC, int PL>
__global__ void __launch_bounds__ (QUANT_WARPS * 32)
layer_norm_quantize_rows_kernel (Sam2CudaW4A8Geometry geo, int mode, float act_scale,
                                 float act_zero, const float *__restrict__ smooth, int rank,
                                 const float *__restrict__ ldown,
                                 const float *__restrict__ norm_weight,
                                 const float *__restrict__ norm_bias, float eps,
                                 Sam2CudaRowWindows win, const float *__restrict__ x, int M,
                                 int8_t *__restrict__ codes,
                                 float *__restrict__ scales, int32_t *__restrict__ zeros,
                                 int32_t *__restrict__ sums, float *__restrict__ t)
{
  SAM2_DYNAMIC_SHARED (int32_t, smem);
  const NormQuantSmem lay = norm_quant_smem (geo);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int m = blockIdx.x * QUANT_WARPS + warp;
  int32_t *gsum = smem + (size_t) warp * lay.sums;                        /* (n_groups) */
  float *row = reinterpret_cast<float *> (smem + (size_t) QUANT_WARPS * lay.sums)
               + (size_t) warp * lay.row;                                  /* (K) */
  for (int g = lane; g < geo.n_groups; g += 32)
    gsum[g] = 0;
  __syncwarp ();
  if (m >= M)
    return;   /* a whole warp leaves: no block-wide barrier follows */
  const long long src = sam2_window_source_row (win, m);   /* the same in every lane */
  if (src >= 0) {
    const float *xr = x + (size_t) src * geo.k;                            /* (K) */
    const Sam2RowNormStats st = sam2_row_norm_stats (xr, geo.k, eps, lane);
    for (int c = lane; c < geo.k; c += 32)
      row[c] = sam2_row_norm_value (xr[c], st, norm_weight[c], norm_bias[c]);
  } else {
    for (int c = lane; c < geo.k; c += 32)
      row[c] = 0.0f;
  }
  __syncwarp ();   /* the row is read across lanes from here on */
  quantize_row_v2<VEC, PL> (geo, mode, act_scale, act_zero, smooth, rank, ldown, row, m, lane,
                            gsum, codes, scales, zeros, sums, t);
}

typedef void (*QuantV2Fn) (Sam2CudaW4A8Geometry, int, float, float, const float *, int,
                           const float *, const float *, int, int8_t *, float *, int32_t *,
                           int32_t *, float *);
typedef void (*NormQuantFn) (Sam2CudaW4A8Geometry, int, float, float, const float *, int,
                             const float *, const float *, const float *, float,
                             Sam2CudaRowWindows, const float *, int, int8_t *, float *,
                             int32_t *, int32_t *, float *);

/* The checks both launchers make before anything runs; M > 0. */
bool
rows_args_ok (const Sam2CudaW4A8Layer *layer, const float *x, const Sam2CudaActRows *out)
{
  if (x == nullptr || out->codes == nullptr || out->scales == nullptr || out->zeros == nullptr
      || out->sums == nullptr)
    return false;
  const Sam2CudaW4A8Geometry &geo = layer->geo;
  /* the warp's row sweep relies on these (sam2_cuda_w4a8_geometry guarantees them) */
  if (geo.k <= 0 || geo.group_size <= 0 || geo.group_pad % 32 != 0 || geo.row_bytes % 64 != 0
      || geo.steps * 32 > geo.row_bytes)
    return false;
  const bool fuse_t = layer->rank > 0 && layer->rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK
                      && out->t != nullptr;
  return !(fuse_t && layer->lora_down == nullptr);
}

const QuantV2Fn quant_v2_kernels[2][3] = {
  { quantize_rows_v2_kernel<false, 4>, quantize_rows_v2_kernel<false, 8>,
    quantize_rows_v2_kernel<false, 16> },
  { quantize_rows_v2_kernel<true, 4>, quantize_rows_v2_kernel<true, 8>,
    quantize_rows_v2_kernel<true, 16> },
};

const NormQuantFn norm_quant_kernels[2][3] = {
  { layer_norm_quantize_rows_kernel<false, 4>, layer_norm_quantize_rows_kernel<false, 8>,
    layer_norm_quantize_rows_kernel<false, 16> },
  { layer_norm_quantize_rows_kernel<true, 4>, layer_norm_quantize_rows_kernel<true, 8>,
    layer_norm_quantize_rows_kernel<true, 16> },
};

}  // namespace

extern "C" int
sam2_cuda_quantize_rows (const Sam2CudaW4A8Layer *layer, const float *x, int M,
                         const Sam2CudaActRows *out, cudaStream_t stream)
{
  if (layer == nullptr || out == nullptr || M < 0 || layer->act_mode < SAM2_CUDA_AQ_TOKEN_SYM
      || layer->act_mode > SAM2_CUDA_AQ_TENSOR_ASYM || layer->rank < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  if (!rows_args_ok (layer, x, out))
    return SAM2_CUDA_UNSUPPORTED;
  const Sam2CudaW4A8Geometry &geo = layer->geo;
  const bool fuse_t = layer->rank > 0 && layer->rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK
                      && out->t != nullptr;
  const size_t smem = (size_t) QUANT_WARPS * geo.n_groups * sizeof (int32_t);
  if (smem > 48 * 1024)
    return SAM2_CUDA_UNSUPPORTED;   /* > 1536 groups: no such layer */
  const int blocks = (M + QUANT_WARPS - 1) / QUANT_WARPS;
  /* v2 stores 16 bytes at a time: codes 16-byte aligned (row_bytes is a multiple of 64) */
  if (sam2_cuda_w4a8_kernel_version () >= 2 && ((uintptr_t) out->codes & 15) == 0) {
    const QuantV2Fn fn = quant_v2_kernels[vector_loads (layer, x)][positions_per_lane_index (geo)];
    SAM2_LAUNCH (blocks, QUANT_WARPS * 32, smem, stream, fn) (
      geo, layer->act_mode, layer->act_scale, layer->act_zero, layer->smooth_inv, layer->rank,
      layer->lora_down, x, M, out->codes, out->scales, out->zeros, out->sums,
      fuse_t ? out->t : nullptr);
    return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
  }
  SAM2_LAUNCH (blocks, QUANT_WARPS * 32, smem, stream, quantize_rows_kernel) (
    geo, layer->act_mode, layer->act_scale, layer->act_zero, layer->smooth_inv, layer->rank,
    layer->lora_down, x, M, out->codes, out->scales, out->zeros, out->sums,
    fuse_t ? out->t : nullptr);
  return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}

extern "C" long long
sam2_cuda_row_windows_rows (const Sam2CudaRowWindows *w)
{
  if (w == nullptr || w->n_img < 1 || w->h < 1 || w->w < 1 || w->ws < 1)
    return -1;
  const long long nh = (w->h + w->ws - 1) / w->ws, nw = (w->w + w->ws - 1) / w->ws;
  return (long long) w->n_img * nh * nw * w->ws * w->ws;
}

extern "C" int
sam2_cuda_layer_norm_quantize_rows_supported (const Sam2CudaW4A8Layer *layer)
{
  /* v2 only (v1, the fallback, has no fused form), a fused down-projection or none, the block's
   * rows in the default 48 KiB of shared memory (K up to ~1400) */
  return layer != nullptr && sam2_cuda_w4a8_kernel_version () >= 2
         && layer->rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK
         && norm_quant_smem (layer->geo).bytes <= 48 * 1024;
}

extern "C" int
sam2_cuda_layer_norm_quantize_rows (const Sam2CudaW4A8Layer *layer, const Sam2CudaRowNorm *norm,
                                    const Sam2CudaRowWindows *windows, const float *x, int M,
                                    const Sam2CudaActRows *out, cudaStream_t stream)
{
  if (layer == nullptr || norm == nullptr || out == nullptr || M < 0
      || layer->act_mode < SAM2_CUDA_AQ_TOKEN_SYM || layer->act_mode > SAM2_CUDA_AQ_TENSOR_ASYM
      || layer->rank < 0 || norm->weight == nullptr || norm->bias == nullptr)
    return SAM2_CUDA_UNSUPPORTED;
  if (!sam2_cuda_layer_norm_quantize_rows_supported (layer)
      || (windows != nullptr && sam2_cuda_row_windows_rows (windows) != M))
    return SAM2_CUDA_UNSUPPORTED;
  Sam2CudaRowWindows win = { 0, 0, 0, 0 };   /* ws 0: the rows as they are */
  if (windows != nullptr)
    win = *windows;
  const Sam2CudaW4A8Geometry &geo = layer->geo;
  const NormQuantSmem lay = norm_quant_smem (geo);
  if (M == 0)
    return SAM2_CUDA_OK;
  if (!rows_args_ok (layer, x, out) || ((uintptr_t) out->codes & 15) != 0)
    return SAM2_CUDA_UNSUPPORTED;
  const bool fuse_t = layer->rank > 0 && out->t != nullptr;
  const int blocks = (M + QUANT_WARPS - 1) / QUANT_WARPS;
  /* the shared row is 16-byte aligned whatever x is; x itself is read a float at a time */
  const NormQuantFn fn = norm_quant_kernels[vector_loads (layer, nullptr)]
                                           [positions_per_lane_index (geo)];
  SAM2_LAUNCH (blocks, QUANT_WARPS * 32, lay.bytes, stream, fn) (
    geo, layer->act_mode, layer->act_scale, layer->act_zero, layer->smooth_inv, layer->rank,
    layer->lora_down, norm->weight, norm->bias, norm->eps, win, x, M, out->codes, out->scales,
    out->zeros, out->sums, fuse_t ? out->t : nullptr);
  return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}
