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

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define QUANT_WARPS 8      /* rows per block */

namespace {

/* Quantization parameters of a row, as linear-cpu.c's Sam2RowQuant in the kernel form: the
 * int8 code is round(clamp(v / scale, lo, hi)) + add, where add is 0 for symmetric rows and
 * za - 128 for asymmetric ones (the CPU's (r + za) ^ 0x80 read as int8). */
struct RowQuant {
  float scale, lo, hi;
  int add;
  int za_kernel;           /* Za: 0 (symmetric) or za - 128 */
};

/* sam2_round_half_away of formats.h: (int) (x >= 0 ? x + 0.5f : x - 0.5f). */
__device__ __forceinline__ int
round_half_away (float x)
{
  return __float2int_rz (x >= 0.0f ? __fadd_rn (x, 0.5f) : __fsub_rn (x, 0.5f));
}

__device__ __forceinline__ float
smoothed (const float *x, const float *smooth, int k)
{
  return smooth != nullptr ? __fmul_rn (x[k], smooth[k]) : x[k];
}

/* Four values x[4 k .. 4 k + 3] times their smoothing factors (s4 NULL: none), as smoothed (). */
__device__ __forceinline__ float4
smoothed4 (const float4 *x4, const float4 *s4, int k)
{
  float4 v = x4[k];
  if (s4 != nullptr) {
    const float4 sm = s4[k];
    v.x = __fmul_rn (v.x, sm.x);
    v.y = __fmul_rn (v.y, sm.y);
    v.z = __fmul_rn (v.z, sm.z);
    v.w = __fmul_rn (v.w, sm.w);
  }
  return v;
}

/* |v| <= FLT_MAX: false for NaN and +-inf (linear-cpu.c's row_range) */
__device__ __forceinline__ bool
is_finite_value (float v)
{
  return fabsf (v) <= 3.402823466e38f;
}

/* A row's range including 0 and whether all of it is finite, gathered value by value in each
 * lane (the comparisons of linear-cpu.c's row_range: the same treatment of -0 and NaN) and then
 * over the warp. */
struct RowRange {
  float lo = 0.0f, hi = 0.0f;
  bool finite = true;

  __device__ __forceinline__ void
  add (float v)
  {
    finite = finite && is_finite_value (v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }

  /* every lane ends with the warp's range */
  __device__ __forceinline__ void
  reduce_warp ()
  {
    for (int o = 16; o > 0; o /= 2) {
      const float l2 = __shfl_xor_sync (0xffffffffu, lo, o);
      const float h2 = __shfl_xor_sync (0xffffffffu, hi, o);
      lo = l2 < lo ? l2 : lo;
      hi = h2 > hi ? h2 : hi;
    }
    finite = __all_sync (0xffffffffu, finite);
  }
};

/* row_params of linear-cpu.c: lo, hi are the row's range including 0 (unused for static modes);
 * a row that is not all finite gets scale NaN and every code that of 0 (zero point 0). */
__device__ __forceinline__ RowQuant
row_params (int mode, float act_scale, float act_zero, float lo, float hi, bool finite)
{
  const bool asym = mode == SAM2_CUDA_AQ_TOKEN_ASYM || mode == SAM2_CUDA_AQ_TENSOR_ASYM;
  const bool stat = mode == SAM2_CUDA_AQ_TENSOR_SYM || mode == SAM2_CUDA_AQ_TENSOR_ASYM;
  float scale, zero = 0.0f;
  if (stat) {
    scale = act_scale;
    zero = act_zero;
  } else {
    if (asym) {
      scale = __fdiv_rn (__fsub_rn (hi, lo), 255.0f);
    } else {
      const float amax = hi > -lo ? hi : -lo;          /* glib's MAX (hi, -lo) */
      scale = __fdiv_rn (amax, 127.0f);
    }
    if (scale > 0.0f && asym)
      zero = (float) round_half_away (__fdiv_rn (-lo, scale));
  }
  if (!(scale > 0.0f))
    scale = 1.0f;
  if (!finite) {
    scale = __int_as_float (0x7fc00000);    /* NaN */
    zero = 0.0f;
  }
  RowQuant p;
  p.scale = scale;
  if (asym) {
    /* glib's CLAMP (zero, 0, 255): (x > hi ? hi : (x < lo ? lo : x)) */
    const float zc = zero > 255.0f ? 255.0f : (zero < 0.0f ? 0.0f : zero);
    const int za = round_half_away (zc);
    p.lo = (float) -za;
    p.hi = (float) (255 - za);
    p.add = za - 128;
    p.za_kernel = za - 128;
  } else {
    p.lo = -127.0f;
    p.hi = 127.0f;
    p.add = 0;
    p.za_kernel = 0;
  }
  if (!finite)
    p.lo = p.hi = 0.0f;   /* v / NaN is NaN, which the clamps turn into 0: the code of 0 */
  return p;
}

/* code_c of linear-cpu.c, in the kernel's int8 form (its clamps: a NaN gives the bound). */
__device__ __forceinline__ int
code_of (float v, const RowQuant &p)
{
  v = __fdiv_rn (v, p.scale);
  v = v > p.lo ? v : p.lo;
  v = v < p.hi ? v : p.hi;
  return __float2int_rz (__fadd_rn (v, copysignf (0.5f, v))) + p.add;
}

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
  __syncwarp ();
  for (int g = lane; g < NG; g += 32)
    sums[(size_t) m * NG + g] = gsum[g];
  if (lane == 0) {
    scales[m] = p.scale;
    zeros[m] = p.za_kernel;
  }

  /* Low-rank down-projection t[m][i] = sum_k v_k L_down[i][k] (float32, lane-strided partial
   * sums and a butterfly: not the CPU's summation order, a float rounding apart). */
  if (t != nullptr)
    for (int i = 0; i < rank; i++) {
      const float *l = ldown + (size_t) i * K;
      float acc = 0.0f;
      for (int k = lane; k < K; k += 32)
        acc = fmaf (smoothed (xr, smooth, k), l[k], acc);
      for (int o = 16; o > 0; o /= 2)
        acc += __shfl_xor_sync (0xffffffffu, acc, o);
      if (lane == 0)
        t[(size_t) m * rank + i] = acc;
    }
}

/* v2: the same arithmetic (row_params, code_of) and outputs as quantize_rows_kernel, made
 * bandwidth-bound. v1 kept one 4-byte load per lane in flight (a lane-strided scalar loop) and
 * stored 4 bytes per lane, far below what is needed to cover the memory latency. Here, with
 * VEC (K and group_size multiples of 4, x and smooth 16-byte aligned: every SAM2 layer):
 *   - the range pass reads float4s, four per lane in flight;
 *   - the code pass gives each lane PL consecutive kernel-row positions (PL = 4, 8 or 16 by the
 *     row's length, so that short rows keep most lanes busy through the divisions; PL | 32 |
 *     group_pad, so they lie in one group and a 32-byte step spans 32 / PL lanes), read as PL / 4
 *     float4s when they are all data (the usual case) and one by one otherwise (a group's or the
 *     row's tail, with v1's bounds), and stored as one PL-byte word; the step's sum is reduced
 *     over its lanes and added to the group's in shared memory.
 * The second pass re-reads the row from L1 / L2 (a warp's row is at most 18 KiB; the block's 8
 * rows were just read). Without VEC every column is read one by one (still PL per lane).
 * This is one warp's work on its row xr (K), in global memory (quantize_rows_v2_kernel) or in
 * shared memory (layer_norm_quantize_rows_kernel); gsum: the warp's group sums, zeroed. */
template <bool VEC, int PL>
__device__ __forceinline__ void
quantize_row_v2 (const Sam2CudaW4A8Geometry &geo, int mode, float act_scale, float act_zero,
                 const float *__restrict__ smooth, int rank, const float *__restrict__ ldown,
                 const float *__restrict__ xr, int m, int lane, int32_t *gsum,
                 int8_t *__restrict__ codes, float *__restrict__ scales,
                 int32_t *__restrict__ zeros, int32_t *__restrict__ sums, float *__restrict__ t)
{
  const int K = geo.k, G = geo.group_size, NG = geo.n_groups, GP = geo.group_pad;
  /* the range (static modes need only the finiteness) */
  RowRange range;
  if (VEC) {
    const float4 *x4 = reinterpret_cast<const float4 *> (xr);
    const float4 *s4 = reinterpret_cast<const float4 *> (smooth);
    const int K4 = K / 4;
#pragma unroll 4
    for (int k = lane; k < K4; k += 32) {
      const float4 v = smoothed4 (x4, s4, k);
      range.add (v.x);
      range.add (v.y);
      range.add (v.z);
      range.add (v.w);
    }
  } else {
    for (int k = lane; k < K; k += 32)
      range.add (smoothed (xr, smooth, k));
  }
  range.reduce_warp ();
  const RowQuant p = row_params (mode, act_scale, act_zero, range.lo, range.hi, range.finite);

  /* PL positions per lane (4, 8 or 16, chosen by the launcher so that one sweep of the warp
   * covers a short row with most lanes busy), a 32-byte step over 32 / PL lanes */
  constexpr int Q = PL / 4;                                  /* float4s and code words per lane */
  constexpr int STEP_LANES = 32 / PL;
  int8_t *dst = codes + (size_t) m * geo.row_bytes;          /* (row_bytes), 16-byte aligned */
  const int data_end = geo.steps * 32;                       /* <= row_bytes */
  for (int base = 0; base < geo.row_bytes; base += 32 * PL) {   /* uniform over the warp */
    const int pos = base + lane * PL;
    const bool data = pos < data_end;   /* the same for every lane of a 32-byte step */
    uint32_t w[Q];
#pragma unroll
    for (int q = 0; q < Q; q++)
      w[q] = 0;
    int s = 0, g = 0;
    if (data) {
      g = pos / GP;
      const int off = pos - g * GP;     /* a multiple of PL */
      const int k0 = g * G + off;
      if (VEC && off + PL <= G && k0 + PL <= K) {
        /* PL data columns k0 .. k0 + PL - 1, k0 a multiple of 4 (G and off are) */
        const float4 *x4 = reinterpret_cast<const float4 *> (xr + k0);
        const float4 *s4 = smooth != nullptr ? reinterpret_cast<const float4 *> (smooth + k0)
                                             : nullptr;
        float4 v[Q];
#pragma unroll
        for (int q = 0; q < Q; q++)
          v[q] = smoothed4 (x4, s4, q);
#pragma unroll
        for (int q = 0; q < Q; q++) {
          const int c0 = code_of (v[q].x, p), c1 = code_of (v[q].y, p);
          const int c2 = code_of (v[q].z, p), c3 = code_of (v[q].w, p);
          s += c0 + c1 + c2 + c3;
          w[q] = (uint32_t) (uint8_t) c0 | (uint32_t) (uint8_t) c1 << 8
                 | (uint32_t) (uint8_t) c2 << 16 | (uint32_t) (uint8_t) c3 << 24;
        }
      } else {
#pragma unroll
        for (int j = 0; j < PL; j++) {
          const int k = k0 + j;
          if (off + j < G && k < K) {
            const int c = code_of (smoothed (xr, smooth, k), p);
            s += c;
            w[j / 4] |= (uint32_t) (uint8_t) (int8_t) c << (8 * (j % 4));
          }
        }
      }
    }
    /* row_bytes is a multiple of 64: a lane's PL bytes are all inside the row or all past it */
    if (pos < geo.row_bytes) {
      if (PL == 16)
        *reinterpret_cast<uint4 *> (dst + pos) = make_uint4 (w[0], w[Q > 1 ? 1 : 0],
                                                             w[Q > 2 ? 2 : 0], w[Q > 3 ? 3 : 0]);
      else if (PL == 8)
        *reinterpret_cast<uint2 *> (dst + pos) = make_uint2 (w[0], w[Q > 1 ? 1 : 0]);
      else
        *reinterpret_cast<uint32_t *> (dst + pos) = w[0];
    }
#pragma unroll
    for (int o = 1; o < STEP_LANES; o *= 2)
      s += __shfl_xor_sync (0xffffffffu, s, o);
    if (lane % STEP_LANES == 0 && data)
      atomicAdd (&gsum[g], s);
  }
  __syncwarp ();
  for (int g = lane; g < NG; g += 32)
    sums[(size_t) m * NG + g] = gsum[g];
  if (lane == 0) {
    scales[m] = p.scale;
    zeros[m] = p.za_kernel;
  }

  /* The low-rank down-projection: v1's, with 16-byte loads under VEC (L_down's rows then
   * 16-byte aligned too: checked at the launch) */
  if (t != nullptr && VEC) {
    const float4 *x4 = reinterpret_cast<const float4 *> (xr);
    const float4 *s4 = reinterpret_cast<const float4 *> (smooth);
    const int K4 = K / 4;
    for (int i = 0; i < rank; i++) {
      const float4 *l4 = reinterpret_cast<const float4 *> (ldown + (size_t) i * K);
      float acc = 0.0f;
      for (int k = lane; k < K4; k += 32) {
        const float4 v = smoothed4 (x4, s4, k);
        const float4 l = l4[k];
        acc = fmaf (v.x, l.x, acc);
        acc = fmaf (v.y, l.y, acc);
        acc = fmaf (v.z, l.z, acc);
        acc = fmaf (v.w, l.w, acc);
      }
      for (int o = 16; o > 0; o /= 2)
        acc += __shfl_xor_sync (0xffffffffu, acc, o);
      if (lane == 0)
        t[(size_t) m * rank + i] = acc;
    }
  } else if (t != nullptr)
    for (int i = 0; i < rank; i++) {
      const float *l = ldown + (size_t) i * K;
      float acc = 0.0f;
      for (int k = lane; k < K; k += 32)
        acc = fmaf (smoothed (xr, smooth, k), l[k], acc);
      for (int o = 16; o > 0; o /= 2)
        acc += __shfl_xor_sync (0xffffffffu, acc, o);
      if (lane == 0)
        t[(size_t) m * rank + i] = acc;
    }
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

/* SAM2_W4A8_QUANT_PL=16 keeps 16 positions per lane for every row length (v2 as first written),
 * for comparison; read once. */
bool
sixteen_per_lane ()
{
  static const bool on = [] {
    const char *e = getenv ("SAM2_W4A8_QUANT_PL");
    return e != nullptr && strcmp (e, "16") == 0;
  }();
  return on;
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

/* v2's positions per lane: 16 fill a warp's sweep from 512-byte rows on; with 16, a 128-byte row
 * (K 96: tiny's first stage) had data on 6 of 32 lanes through the divisions, with 4 on 24; 8
 * for rows up to 256 bytes. Index 0, 1, 2 for 4, 8, 16. */
int
positions_per_lane_index (const Sam2CudaW4A8Geometry &geo)
{
  return sixteen_per_lane () || geo.row_bytes > 256 ? 2 : geo.row_bytes > 128 ? 1 : 0;
}

/* v2's 16-byte loads: K and the group size multiples of 4, the row (x's rows or the shared
 * normalised one), smooth_inv and L_down 16-byte aligned. */
bool
vector_loads (const Sam2CudaW4A8Layer *layer, const float *x)
{
  return layer->geo.k % 4 == 0 && layer->geo.group_size % 4 == 0
         && ((uintptr_t) x & 15) == 0 && ((uintptr_t) layer->smooth_inv & 15) == 0
         && ((uintptr_t) layer->lora_down & 15) == 0;
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
