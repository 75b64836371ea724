/* quantize-row.cuh: one warp's per-token INT8 quantization of a row into the W4A8 GEMM's kernel
 * row (range, scale and zero point, codes, group sums, the fused low-rank down-projection), with
 * the CPU's arithmetic to the bit (layernorm-quant.cu's header comment says how). Shared by the
 * quantization kernels (layernorm-quant.cu) and the GEMM that quantizes the next layer's input in
 * its epilogue (gemm-w4a8.cu): the same code, so the same codes. */
#ifndef SAM2_KERNELS_QUANTIZE_ROW_CUH
#define SAM2_KERNELS_QUANTIZE_ROW_CUH

#include "common.cuh"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* After a warp's code sweep over row m: its group sums (gsum, in shared memory, complete once
 * the warp syncs), scale and zero point to their arrays. */
__device__ __forceinline__ void
store_row_terms (const RowQuant &p, const int32_t *gsum, int NG, int m, int lane,
                 float *__restrict__ scales, int32_t *__restrict__ zeros,
                 int32_t *__restrict__ sums)
{
  __syncwarp ();
  for (int g = lane; g < NG; g += 32)
    sums[(size_t) m * NG + g] = gsum[g];
  if (lane == 0) {
    scales[m] = p.scale;
    zeros[m] = p.za_kernel;
  }
}

/* Low-rank down-projection t[m][i] = sum_k v_k L_down[i][k] of row xr (K), v = x smooth_inv,
 * a column per lane at a time (float32, lane-strided partial sums and a butterfly: not the
 * CPU's summation order, a float rounding apart). */
__device__ __forceinline__ void
lowrank_down_scalar (const float *__restrict__ smooth, int rank, const float *__restrict__ ldown,
                     const float *__restrict__ xr, int K, int m, int lane, float *__restrict__ t)
{
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
 * This is one warp's work on its row xr (K), in global memory (quantize_rows_v2_kernel, and the
 * W4A8 GEMM's output in gemm-w4a8.cu's quantize_next_tile) or in shared memory
 * (layer_norm_quantize_rows_kernel); gsum: the warp's group sums, zeroed. */
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
  store_row_terms (p, gsum, NG, m, lane, scales, zeros, sums);

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
    lowrank_down_scalar (smooth, rank, ldown, xr, K, m, lane, t);
}

/* ---- host: the launchers' choices ---- */

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

}  // namespace

#endif
