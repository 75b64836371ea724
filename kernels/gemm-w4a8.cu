/* gemm-w4a8.cu: the W4A8 GEMM of the CUDA backend (kernels.h, section W4A8): weight repacking on
 * the host, the tensor-core GEMM with its epilogue, and the whole layer (quantize + GEMM).
 *
 * Arithmetic (the CPU kernel's, core/quant/linear-cpu.c, so that the outputs agree with
 * sam2_quant_linear_forward to the last bit wherever the CPU's float steps are the same):
 *   per (row m, channel n, group g): isum = sum_k a_k q_k - z asum[m][g] - Za wsum[g][n], exact
 *     in int32 (the zero-point compensation: sum (a - Za)(q - z) expanded);
 *   f = sum over g, in group order, of (float) isum * s[g][n] (a multiply then an add, rounded
 *     each: __fmul_rn / __fadd_rn, never contracted into an FMA; the first group assigned);
 *   pre = f sa[m] + bias[n]; then + t[m] . L_up[n] (rank terms in order), act, + residual.
 * The integer sums come from mma.sync.m16n8k32 s8 x s8 -> s32 (H100 has no int4 tensor cores):
 * the 4-bit codes q (0..15) are unpacked to bytes in registers by two masks, and are valid s8
 * operands as they are; the activation codes are the int8 kernel rows of layernorm-quant.cu.
 *
 * Tiling: a block computes BM x 64 outputs (BM 128 with 8 warps, or 64 with 4 warps for small
 * M), each warp 32 x 32 (2 x 4 mma tiles of 16 x 8), over K tiles of 64 columns (two 32-column
 * mma steps) in a 3-stage cp.async pipeline. Activation tiles are stored with rows 80 bytes
 * apart in shared memory: the A-fragment loads (lane: row lane / 4, word lane % 4) then hit 32
 * distinct banks (row r at word 20 r: banks 0, 20, 8, 28, 16, 4, 24, 12 plus 0..3). Weight tiles
 * are stored as packed (8 channels, step, lane) words, so each lane's B word is one
 * conflict-free 32-bit load. A 32-column step never straddles two weight groups (the kernel row
 * layout), so after each step that ends a group the int32 accumulators are turned into float
 * and cleared. */
#include "common.cuh"
#include "ptx.cuh"
#include "quantize-row.cuh"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <type_traits>

namespace {

constexpr int BN = 64;           /* outputs per block along N (the geometry's n_pad unit) */
constexpr int BK = 64;           /* columns per K tile (the geometry's row_bytes unit) */
constexpr int STAGES = 3;
constexpr int A_LD = BK + 16;    /* shared row stride of the activation tile, bytes */
constexpr int B_WORDS = (BN / 8) * (BK / 32) * 32;   /* packed weight words per tile */

inline int
round_up (int x, int m)
{
  return (x + m - 1) / m * m;
}

inline size_t
align256 (size_t x)
{
  return (x + 255) & ~(size_t) 255;
}

__device__ __forceinline__ float
act_apply (int act, float x)
{
  switch (act) {
  case SAM2_CUDA_ACT_GELU:
    return 0.5f * x * (1.0f + erff (x * 0.70710678118654752f));
  case SAM2_CUDA_ACT_GELU_TANH:
    return 0.5f * x * (1.0f + tanhf (0.7978845608028654f * (x + 0.044715f * x * x * x)));
  case SAM2_CUDA_ACT_RELU:
    return x > 0.0f ? x : 0.0f;
  case SAM2_CUDA_ACT_SILU:
    return x / (1.0f + expf (-x));
  case SAM2_CUDA_ACT_SIGMOID:
    return 1.0f / (1.0f + expf (-x));
  default:
    return x;
  }
}

struct GemmArgs {
  Sam2CudaW4A8Geometry geo;
  const uint32_t *w;         /* (n_pad / 8, row_bytes / 32, 32) */
  const int32_t *wzero;      /* (n_groups, n_pad) */
  const int32_t *wsum;       /* (n_groups, n_pad) */
  const float *wscale;       /* (n_groups, n_pad) */
  const float *bias;         /* (n) or NULL */
  int rank;
  const float *lora_up;      /* (n, rank) */
  const float *t;            /* (M, rank) */
  const int8_t *codes;       /* (M, row_bytes) */
  const float *sa;           /* (M) */
  const int32_t *za;         /* (M) */
  const int32_t *asum;       /* (M, n_groups) */
  int M;
  int act;
  const float *residual;     /* (M, n) or NULL; may be y */
  float *y;                  /* (M, n) */
  bool pair_ok;              /* y and residual 8-byte aligned (v2's paired stores) */
  bool rank_vec4;            /* rank % 4 == 0, t and lora_up 16-byte aligned (v2's float4s) */
  /* the next layer's quantization of y (the QNEXT kernels; sam2_cuda_w4a8_gemm_quantize_next) */
  struct {
    Sam2CudaW4A8Layer layer;   /* the next layer (layer.geo.k = N): its quantization's part */
    Sam2CudaActRows rows;      /* written; t NULL unless the layer has a rank */
    unsigned int *counters;    /* (M tiles) zero between launches */
    int pl_index;              /* quantize_row_v2's positions per lane: 4, 8, 16 */
  } qn;
};

/* The QNEXT kernels' shared memory past the pipeline's: the tile-done flag (16 bytes), then each
 * warp's group sums of the row it quantizes (at most QNEXT_MAX_GROUPS). */
constexpr int QNEXT_MAX_GROUPS = 64;

__host__ __device__ constexpr int
qnext_shared_bytes (int warps, int n_groups)
{
  return 16 + warps * n_groups * 4;
}

/* Block (BM / 32) x 2 warps; tile rows m0 .. m0 + BM - 1 (blockIdx.y), channels n0 .. n0 + 63
 * (blockIdx.x). Two blocks per SM: 16 warps to hide the latency of mma.sync and of the group
 * folds, which caps BM = 128 at 128 registers (ptxas spills about 24 bytes, in the fold). */
template <int BM>
__global__ void __launch_bounds__ (BM * 2, 2)
w4a8_gemm_kernel (const GemmArgs p)
{
  constexpr int THREADS = BM * 2;
  SAM2_STATIC_SHARED (int8_t, a_s, [STAGES][BM * A_LD]);       /* (BM, A_LD) per stage */
  SAM2_STATIC_SHARED (uint32_t, b_s, [STAGES][B_WORDS]);       /* (8, 2, 32) per stage */

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;           /* warp tile rows wm*32, cols wn*32 */
  const int gid = lane / 4, tg = lane % 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int row_bytes = p.geo.row_bytes, n_pad = p.geo.n_pad, NG = p.geo.n_groups;
  const int steps_row = row_bytes / 32, GP = p.geo.group_pad, steps = p.geo.steps;
  const int n_kt = row_bytes / BK;
  const int M = p.M;

  /* Stage loaders: A is BM x 64 bytes = BM * 4 chunks of 16 bytes (2 per thread); rows past M
   * load row M - 1 (in bounds; their outputs are never stored). B is 8 octets x 256 bytes =
   * 128 chunks. */
  auto load_stage = [&] (int stage, int kt) {
#pragma unroll
    for (int i = 0; i < (BM * 4) / THREADS; i++) {
      const int c = tid + i * THREADS, r = c / 4, q = c % 4;
      const int gm = min (m0 + r, M - 1);
      cp_async16 (&a_s[stage][r * A_LD + q * 16],
                  p.codes + (size_t) gm * row_bytes + (size_t) kt * BK + q * 16);
    }
    if (tid < (B_WORDS * 4) / 16) {
      const int o = tid / 16, q = tid % 16;    /* octet, 16-byte chunk of its 2 steps */
      cp_async16 (&b_s[stage][o * 64 + q * 4],
                  p.w + ((size_t) (n0 / 8 + o) * steps_row + (size_t) kt * 2) * 32 + q * 4);
    }
  };

  int32_t acc[2][4][4];            /* [m tile][n tile][fragment]: int32 sums of the group */
  float f[2][4][4];                /* the float sums over the groups done */
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        acc[i][j][e] = 0;
        f[i][j][e] = 0.0f;
      }

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < n_kt)
      load_stage (s, s);
    cp_async_commit ();
  }

  int g_done = 0;                  /* groups already in f */
  for (int kt = 0; kt < n_kt; kt++) {
    cp_async_wait<STAGES - 2> ();
    __syncthreads ();              /* tile kt visible to all; stage (kt - 1) % STAGES free */
    if (kt + STAGES - 1 < n_kt)
      load_stage ((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    cp_async_commit ();            /* possibly empty: keeps the group count per iteration */

    const int8_t *as = a_s[kt % STAGES];
    const uint32_t *bs = b_s[kt % STAGES];
#pragma unroll
    for (int j = 0; j < 2; j++) {
      const int s = kt * 2 + j;    /* 32-column step of the row */
      if (s >= steps)
        break;                     /* the row's 64-byte padding: zeros, nothing to add */
      uint32_t af[2][4];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int r = wm * 32 + i * 16 + gid;
        const int8_t *base = as + j * 32 + tg * 4;
        af[i][0] = *reinterpret_cast<const uint32_t *> (base + r * A_LD);
        af[i][1] = *reinterpret_cast<const uint32_t *> (base + (r + 8) * A_LD);
        af[i][2] = *reinterpret_cast<const uint32_t *> (base + r * A_LD + 16);
        af[i][3] = *reinterpret_cast<const uint32_t *> (base + (r + 8) * A_LD + 16);
      }
#pragma unroll
      for (int n = 0; n < 4; n++) {
        const uint32_t wv = bs[(wn * 4 + n) * 64 + j * 32 + lane];
        const uint32_t b0 = wv & 0x0f0f0f0fu, b1 = (wv >> 4) & 0x0f0f0f0fu;
#pragma unroll
        for (int i = 0; i < 2; i++)
          mma_s8 (acc[i][n], af[i], b0, b1);
      }
      /* the step ends a group: fold its exact sums into f */
      if (((s + 1) * 32) % GP == 0 || s + 1 == steps) {
        const int g = g_done;
        /* this thread's rows (fragment rows gid and gid + 8 of each m tile), clamped: their
         * Za and asum[row][g] (loaded here rather than kept live through the main loop: fewer
         * registers) */
        int32_t as_[2][2], zr[2][2];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int row = min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1);
            as_[i][h] = p.asum[(size_t) row * NG + g];
            zr[i][h] = p.za[row];
          }
#pragma unroll
        for (int n = 0; n < 4; n++) {
          const int c = n0 + wn * 32 + n * 8 + tg * 2;       /* even, < n_pad */
          const size_t o = (size_t) g * n_pad + c;
          const int2 wz = *reinterpret_cast<const int2 *> (p.wzero + o);
          const int2 ws = *reinterpret_cast<const int2 *> (p.wsum + o);
          const float2 sc = *reinterpret_cast<const float2 *> (p.wscale + o);
#pragma unroll
          for (int i = 0; i < 2; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
              const int32_t v0 = acc[i][n][h * 2] - wz.x * as_[i][h] - zr[i][h] * ws.x;
              const int32_t v1 = acc[i][n][h * 2 + 1] - wz.y * as_[i][h] - zr[i][h] * ws.y;
              const float f0 = __fmul_rn ((float) v0, sc.x), f1 = __fmul_rn ((float) v1, sc.y);
              f[i][n][h * 2] = g == 0 ? f0 : __fadd_rn (f[i][n][h * 2], f0);
              f[i][n][h * 2 + 1] = g == 0 ? f1 : __fadd_rn (f[i][n][h * 2 + 1], f1);
              acc[i][n][h * 2] = 0;
              acc[i][n][h * 2 + 1] = 0;
            }
        }
        g_done++;
      }
    }
  }
  cp_async_wait<0> ();             /* no copy in flight when the block exits */

  /* Epilogue: each output once, by the thread that holds it (so residual may be y). */
  const int N = p.geo.n;
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = m0 + wm * 32 + i * 16 + gid + h * 8;
      if (r >= M)
        continue;
      const float sa = p.sa[r];
      const float *tr = p.rank > 0 ? p.t + (size_t) r * p.rank : nullptr;
#pragma unroll
      for (int n = 0; n < 4; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
          const int c = n0 + wn * 32 + n * 8 + tg * 2 + e;
          if (c >= N)
            continue;
          float v = __fmul_rn (f[i][n][h * 2 + e], sa);
          if (p.bias != nullptr)
            v = __fadd_rn (v, p.bias[c]);
          if (tr != nullptr) {
            const float *l = p.lora_up + (size_t) c * p.rank;
            for (int k = 0; k < p.rank; k++)
              v = __fadd_rn (v, __fmul_rn (tr[k], l[k]));
          }
          v = act_apply (p.act, v);
          const size_t o = (size_t) r * N + c;
          if (p.residual != nullptr)
            v = __fadd_rn (v, p.residual[o]);
          p.y[o] = v;
        }
    }
}

/* ---- v2 GEMM -------------------------------------------------------------------------------
 * The same tiles, pipeline and arithmetic as w4a8_gemm_kernel (v1), with the per-group fold made
 * cheaper, because for groups of 64 / 128 the fold, not the mma, bounded v1 (per output and
 * group: two IMADs, an I2F at a quarter of the FP32 rate, FMUL, FADD, a select and a reset,
 * against two to four 32-column mma steps of tensor time):
 *   - MAGIC: the int32 accumulators start each group at 0x4B400000 (the bits of 1.5 * 2^23;
 *     the group's first mma takes it as its C operand), so after the group's mma and its
 *     zero-point terms they hold the bits of the float
 *     12582912 + isum, exact while |isum| < 2^22; one FADD of -12582912 then gives (float) isum
 *     exactly, with no I2F. |isum| <= group_pad * 255 * 15, below 2^22 for group_pad <= 1024
 *     (MAGIC_MAX_GROUP_PAD); larger groups use the I2F (MAGIC false). Integer adds wrap
 *     modulo 2^32, so the intermediate sums cannot spoil the final value.
 *   - the float sums start at -0.0f, the identity of __fadd_rn (-0 + x is x for every x,
 *     +0 and -0 included), so every group is added, with no first-group select: the same bits
 *     as v1's "the first group assigned".
 *   - the Za wsum term is skipped by whole warps whose rows all have Za = 0 (every symmetric
 *     row: TOKEN_SYM and TENSOR_SYM layers): a warp-uniform branch, decided once.
 *   - no modulo per step (steps counted within the group), no accumulator clearing (the first
 *     mma of a group starts from the constant), the fold's operands prefetched into L1 at the
 *     group's first step, and an epilogue whose executed code is short (see there).
 *   - A fragments by ldmatrix.x4 (one instruction per 16-row m tile and step instead of four
 *     32-bit loads): matrix j of the x4 is rows (j % 2) * 8 .. + 7, bytes (j / 2) * 16 .. + 15 of
 *     the 16 x 32 step, which is exactly mma's a0..a3 (row gid / gid + 8, bytes tg * 4 + 0 / 16);
 *     lane l gives the address of row l % 8 of matrix l / 8. The 80-byte row stride keeps each
 *     8-address phase on distinct 16-byte bank groups (words 20 r mod 32).
 * ptxas (CUDA 13, sm_90): 128 registers and no spills for all four instances (v1's BM = 128
 * spills 24 bytes; its BM = 64 uses 152 registers). */
constexpr int MAGIC_MAX_GROUP_PAD = 1024;
constexpr int32_t MAGIC_BITS = 0x4B400000;     /* 12582912.0f */
constexpr float MAGIC_F = 12582912.0f;

/* Tiling of the v2 kernel template: Config<BM, KSTEPS, STAGES, PERSIST>.
 *   - v2 (kernel version 2): 64-byte K tiles (two 32-column steps), 3 stages, one BM x 64 tile
 *     per block (the grid covers every tile): the measured kernel (kernels/NOTES.md).
 *   - v3 (kernel version 3): 128-byte K tiles (four steps; with groups of 128 one group per
 *     tile), 4 stages, and persistent blocks: a grid of as many blocks as the GPU holds at once
 *     (SMs x blocks per SM), each walking the M tiles blockIdx.y, + gridDim.y, ... of its N tile
 *     with one cp.async pipeline across tile ends, so the next tile's first K tiles load while
 *     this tile folds and runs its epilogue. Why: on the H200 (NOTES.md, v2 table) v2 ran at a
 *     fifth to a half of cuBLAS FP16's rate on the encoder's thin shapes with only 16 warps per
 *     SM, which is latency-bound: a block holds two 10 KB K tiles in flight (long K: 1536 columns
 *     took ~1 us per tile, 24 tiles in 28 us where the tensor work is ~8 us), and at K 96 each
 *     block is a short chain load -> mma -> fold -> store (3072 blocks in ~12 waves) whose load
 *     latency nothing overlaps. v3 keeps three 22 KB tiles in flight per block (3.3x the bytes)
 *     and overlaps the tile change. Same fragments, same fold, same epilogue, same bits. */
template <int BM_, int KSTEPS_, int STAGES_, bool PERSIST_>
struct Config {
  static constexpr int BM = BM_;
  static constexpr int KSTEPS = KSTEPS_;          /* 32-column steps per K tile */
  static constexpr int KT = KSTEPS * 32;          /* bytes of a row per K tile */
  static constexpr int STAGES = STAGES_;
  static constexpr bool PERSIST = PERSIST_;
  static constexpr int THREADS = BM * 2;
  /* row stride of the activation tile in shared memory: 16 bytes past the tile, so the 8 rows
   * of an ldmatrix phase start 20 (KT 64) or 36 (KT 128) words apart: distinct bank quads */
  static constexpr int A_LD = KT + 16;
  static constexpr int A_BYTES = BM * A_LD;                       /* per stage */
  static constexpr int B_WORDS = (BN / 8) * KSTEPS * 32;          /* per stage: (8, KSTEPS, 32) */
  static constexpr int SHARED_BYTES = STAGES * (A_BYTES + B_WORDS * 4);
  static constexpr int MIN_BLOCKS = BM == 128 ? 2 : 4;            /* per SM (launch bounds) */
};

using V2Big = Config<128, 2, 3, false>;
using V2Small = Config<64, 2, 3, false>;
using V3Big = Config<128, 4, 4, true>;
using V3Small = Config<64, 4, 4, true>;

/* The next layer's quantization of an M tile's rows of y (QNEXT), after this block stored its
 * part of them: the block that finishes the tile's last N block quantizes all of its rows, a
 * warp per row, with quantize_row_v2 (sam2_cuda_quantize_rows's code: the same bits). The
 * fence before the count makes each block's stores visible before the count says they are done;
 * the one after it, for the block that reads them. atomicInc wraps the counter back to 0 at
 * the last of the gridDim.x blocks, so every launch leaves the counters as it found them. */
template <class C>
__device__ __forceinline__ void
quantize_next_tile (const GemmArgs &p, int m0, int8_t *extra)
{
  constexpr int WARPS = C::THREADS / 32;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  int *const last = reinterpret_cast<int *> (extra);
  __threadfence ();
  __syncthreads ();
  if (tid == 0)
    *last = atomicInc (&p.qn.counters[m0 / C::BM], gridDim.x - 1) == gridDim.x - 1;
  __syncthreads ();
  if (!*last)
    return;
  __threadfence ();
  const Sam2CudaW4A8Layer &l = p.qn.layer;
  const Sam2CudaActRows &o = p.qn.rows;
  const int NG = l.geo.n_groups, K = l.geo.k;
  int32_t *gsum = reinterpret_cast<int32_t *> (extra + 16) + warp * NG;   /* (NG) */
  for (int r = warp; r < C::BM && m0 + r < p.M; r += WARPS) {   /* uniform over the warp */
    const int m = m0 + r;
    for (int g = lane; g < NG; g += 32)
      gsum[g] = 0;
    __syncwarp ();
    const float *xr = p.y + (size_t) m * K;                                /* (K) */
    /* the warp's next row into L1 while this one is quantized: a row is a chain of dependent
     * steps (range, reduction, codes), so its loads are the latency one warp can hide */
    if (r + WARPS < C::BM && m + WARPS < p.M)
      for (int c = lane * 32; c < K; c += 32 * 32)
        prefetch_l1 (xr + (size_t) WARPS * K + c);
    auto row = [&] (auto pl) {
      quantize_row_v2<true, decltype (pl)::value> (l.geo, l.act_mode, l.act_scale, l.act_zero,
                                                   l.smooth_inv, l.rank, l.lora_down, xr, m,
                                                   lane, gsum, o.codes, o.scales, o.zeros,
                                                   o.sums, o.t);
    };
    if (p.qn.pl_index == 0)
      row (std::integral_constant<int, 4> {});
    else if (p.qn.pl_index == 1)
      row (std::integral_constant<int, 8> {});
    else
      row (std::integral_constant<int, 16> {});
    __syncwarp ();   /* gsum read by every lane before the next row clears it */
  }
}

/* BM = 128: 8 warps, two blocks per SM (128 registers); BM = 64: 4 warps, four blocks.
 * Dynamic shared memory C::SHARED_BYTES (above 48 KB for v3: raised by sam2_cuda_w4a8_prepare),
 * and for QNEXT qnext_shared_bytes after it. */
template <class C, bool MAGIC, bool QNEXT>
__global__ void __launch_bounds__ (C::THREADS, C::MIN_BLOCKS)
w4a8_gemm_v2_kernel (const GemmArgs p)
{
  constexpr int BM = C::BM, THREADS = C::THREADS, STAGES = C::STAGES, KSTEPS = C::KSTEPS;
  constexpr int A_LD = C::A_LD;
  SAM2_DYNAMIC_SHARED (int8_t, smem);
  int8_t *const a_s = smem;                                        /* (STAGES, BM, A_LD) */
  uint32_t *const b_s = reinterpret_cast<uint32_t *> (smem + STAGES * C::A_BYTES);
                                                                   /* (STAGES, 8, KSTEPS, 32) */
  constexpr int32_t ACC0 = MAGIC ? MAGIC_BITS : 0;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / 2, wn = warp % 2;           /* warp tile rows wm*32, cols wn*32 */
  const int gid = lane / 4, tg = lane % 4;
  const int n0 = blockIdx.x * BN;
  const int row_bytes = p.geo.row_bytes, n_pad = p.geo.n_pad, NG = p.geo.n_groups;
  const int steps_row = row_bytes / 32, GP = p.geo.group_pad, steps = p.geo.steps;
  const int n_kt = (row_bytes + C::KT - 1) / C::KT;   /* the last may be half a tile (KT 128) */
  const int M = p.M;
  /* this block's M tiles: blockIdx.y, + gridDim.y, ... (one for v2's grid) */
  const int m_tiles = (M + BM - 1) / BM;
  const int my_tiles = C::PERSIST ? (m_tiles - (int) blockIdx.y + (int) gridDim.y - 1)
                                        / (int) gridDim.y
                                  : 1;
  const int n_work = my_tiles * n_kt;               /* (tile, K tile) pairs, in order */

  /* The loader walks the same (tile, K tile) sequence STAGES - 1 pairs ahead of the products.
   * A: BM rows x KT bytes in 16-byte chunks; rows past M load row M - 1 (in bounds; their
   * outputs are never stored); chunks past the row's end (the half tile of a row of 64 x odd
   * bytes) are not loaded: the steps there are past `steps` and never read. B: 8 octets x
   * KSTEPS steps x 32 words. */
  int ld_tile = 0, ld_kt = 0;
  auto load_next = [&] (int stage) {
    const int m0l = ((int) blockIdx.y + ld_tile * (int) gridDim.y) * BM;
    int8_t *as = a_s + stage * C::A_BYTES;
    uint32_t *bs = b_s + stage * C::B_WORDS;
#pragma unroll
    for (int i = 0; i < (BM * KSTEPS * 2) / THREADS; i++) {
      const int c = tid + i * THREADS, r = c / (KSTEPS * 2), q = c % (KSTEPS * 2);
      const int col = ld_kt * C::KT + q * 16;
      if (KSTEPS == 2 || col < row_bytes)
        cp_async16 (as + r * A_LD + q * 16,
                    p.codes + (size_t) min (m0l + r, M - 1) * row_bytes + col);
    }
    constexpr int B_CHUNKS = C::B_WORDS / 4;
#pragma unroll
    for (int i = 0; i < (B_CHUNKS + THREADS - 1) / THREADS; i++) {
      const int c = tid + i * THREADS;
      const int o = c / (KSTEPS * 8), q = c % (KSTEPS * 8);   /* octet, chunk of its steps */
      const int s = ld_kt * KSTEPS + q / 8;
      if ((B_CHUNKS % THREADS == 0 || c < B_CHUNKS) && (KSTEPS == 2 || s < steps_row))
        cp_async16 (bs + o * (KSTEPS * 32) + q * 4,
                    p.w + ((size_t) (n0 / 8 + o) * steps_row + s) * 32 + (q % 8) * 4);
    }
    if (++ld_kt == n_kt) {
      ld_kt = 0;
      ld_tile++;
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < n_work)
      load_next (s);
    cp_async_commit ();
  }

  /* this lane's ldmatrix row and byte offset within a warp's 16-row m tile and 32-byte step */
  const int lm_off = ((lane % 8) + ((lane / 8) % 2) * 8) * A_LD + (lane / 16) * 16;
  int work = 0;                                     /* the (tile, K tile) pair being multiplied */

  for (int tile = 0; tile < my_tiles; tile++) {
    const int m0 = ((int) blockIdx.y + tile * (int) gridDim.y) * BM;

    /* Does any row of this warp have Za != 0? (rows past M are clamped to M - 1, as in the fold) */
    bool za_any;
    {
      int z = 0;
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++)
          z |= p.za[min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1)];
      za_any = __any_sync (0xffffffffu, z != 0);
    }

    int32_t acc[2][4][4];
    float f[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          acc[i][j][e] = ACC0;
          f[i][j][e] = -0.0f;
        }

    /* The group's exact sums into f (one subtraction per term, exact in int32), then the
     * accumulators are left as they are: the group's first step starts them afresh (below).
     * ZA: apply the Za wsum term (a warp with a nonzero Za); a compile-time choice, so that the
     * symmetric warps' fold has neither the loads nor the multiplies of the term. */
    auto fold = [&] (auto za_tag, int g) {
      constexpr bool ZA = decltype (za_tag)::value;
      int32_t as_[2][2], zr[2][2];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int row = min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1);
          as_[i][h] = p.asum[(size_t) row * NG + g];
          zr[i][h] = ZA ? p.za[row] : 0;
        }
#pragma unroll
      for (int n = 0; n < 4; n++) {
        const int c = n0 + wn * 32 + n * 8 + tg * 2;       /* even, < n_pad */
        const size_t o = (size_t) g * n_pad + c;
        const int2 wz = *reinterpret_cast<const int2 *> (p.wzero + o);
        const float2 sc = *reinterpret_cast<const float2 *> (p.wscale + o);
        int2 ws = make_int2 (0, 0);
        if (ZA)
          ws = *reinterpret_cast<const int2 *> (p.wsum + o);
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            int32_t v0 = acc[i][n][h * 2] - wz.x * as_[i][h];
            int32_t v1 = acc[i][n][h * 2 + 1] - wz.y * as_[i][h];
            if (ZA) {
              v0 -= zr[i][h] * ws.x;
              v1 -= zr[i][h] * ws.y;
            }
            float x0, x1;
            if (MAGIC) {
              /* exact: integers within 2^22 of 1.5 * 2^23 */
              x0 = __fadd_rn (__int_as_float (v0), -MAGIC_F);
              x1 = __fadd_rn (__int_as_float (v1), -MAGIC_F);
            } else {
              x0 = (float) v0;
              x1 = (float) v1;
            }
            f[i][n][h * 2] = __fadd_rn (f[i][n][h * 2], __fmul_rn (x0, sc.x));
            f[i][n][h * 2 + 1] = __fadd_rn (f[i][n][h * 2 + 1], __fmul_rn (x1, sc.y));
          }
      }
    };

    /* Steps are counted within the group (no division by group_pad per step): a group's first
     * step gives the mma the constant ACC0 as its C operand instead of the accumulators, which
     * replaces v1's clearing of the 32 accumulators after each fold; its last step (group_pad /
     * 32 steps, or the row's last step for the tail group) is followed by the fold. */
    const int spg = GP / 32;
    int g_done = 0, gstep = 0;
    for (int kt = 0; kt < n_kt; kt++, work++) {
      cp_async_wait<STAGES - 2> ();
      __syncthreads ();              /* pair `work` visible to all; its previous stage free */
      if (work + STAGES - 1 < n_work)
        load_next ((work + STAGES - 1) % STAGES);
      cp_async_commit ();            /* possibly empty: keeps the group count per iteration */

      const int8_t *as = a_s + (work % STAGES) * C::A_BYTES;
      const uint32_t *bs = b_s + (work % STAGES) * C::B_WORDS;
#pragma unroll
      for (int j = 0; j < KSTEPS; j++) {
        const int s = kt * KSTEPS + j;
        if (s >= steps)
          break;
        uint32_t af[2][4];
#pragma unroll
        for (int i = 0; i < 2; i++)
          ldmatrix_x4 (af[i], as + (wm * 32 + i * 16) * A_LD + j * 32 + lm_off);
        if (gstep == 0) {
          /* the group's fold reads its per-column terms and the rows' sums from global memory
           * after the group's steps: ask for them into L1 now, so that the fold's loads (which
           * every warp of a block waits for in turn) are L1 hits rather than L2 round trips. No
           * register is held: prefetch has no destination. */
          {
            const size_t o = (size_t) g_done * n_pad + n0 + wn * 32 + tg * 2;
#pragma unroll
            for (int n = 0; n < 4; n++) {
              prefetch_l1 (p.wzero + o + n * 8);
              prefetch_l1 (p.wscale + o + n * 8);
              if (za_any)
                prefetch_l1 (p.wsum + o + n * 8);
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
              for (int h = 0; h < 2; h++)
                prefetch_l1 (p.asum
                             + (size_t) min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1) * NG
                             + g_done);
          }
#pragma unroll
          for (int n = 0; n < 4; n++) {
            const uint32_t wv = bs[(wn * 4 + n) * (KSTEPS * 32) + j * 32 + lane];
            const uint32_t b0 = wv & 0x0f0f0f0fu, b1 = (wv >> 4) & 0x0f0f0f0fu;
#pragma unroll
            for (int i = 0; i < 2; i++)
              mma_s8_from (acc[i][n], af[i], b0, b1, ACC0);
          }
        } else {
#pragma unroll
          for (int n = 0; n < 4; n++) {
            const uint32_t wv = bs[(wn * 4 + n) * (KSTEPS * 32) + j * 32 + lane];
            const uint32_t b0 = wv & 0x0f0f0f0fu, b1 = (wv >> 4) & 0x0f0f0f0fu;
#pragma unroll
            for (int i = 0; i < 2; i++)
              mma_s8 (acc[i][n], af[i], b0, b1);
          }
        }
        gstep++;
        if (gstep == spg || s + 1 == steps) {
          if (za_any)
            fold (std::true_type {}, g_done);
          else
            fold (std::false_type {}, g_done);
          g_done++;
          gstep = 0;
        }
      }
    }

    /* Epilogue: v1's operations in v1's order (f sa, + bias, + rank terms, act, + residual),
     * regrouped so that the code a warp runs is short and contiguous: v1 inlines the act switch
     * (a jump table and erff / tanhf / expf bodies) for each of the 32 outputs, some 19000
     * instructions whose executed path jumps across ~300 KB of code, an instruction-cache miss
     * per output for every block. Here the steps before the act run for all 32 outputs (rows
     * and columns clamped for the loads; what lies outside is never stored), the act switch is
     * taken once with one unrolled loop per case, and the stores are 8-byte pairs when N and the
     * arrays allow. */
    const int N = p.geo.n;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1);
        const float sa = p.sa[r];
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
          for (int e = 0; e < 2; e++)
            f[i][n][h * 2 + e] = __fmul_rn (f[i][n][h * 2 + e], sa);
      }
    if (p.bias != nullptr) {
#pragma unroll
      for (int n = 0; n < 4; n++) {
        const int c = n0 + wn * 32 + n * 8 + tg * 2;
        const float b0 = p.bias[min (c, N - 1)], b1 = p.bias[min (c + 1, N - 1)];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            f[i][n][h * 2] = __fadd_rn (f[i][n][h * 2], b0);
            f[i][n][h * 2 + 1] = __fadd_rn (f[i][n][h * 2 + 1], b1);
          }
      }
    }
    if (p.rank > 0 && p.rank_vec4) {
      /* the same terms in the same order, read 4 ranks at a time: per 4 ranks, one 16-byte load
       * per row (4) and per column (8) for the 128 products, instead of two 4-byte loads per
       * product */
      const int R = p.rank;
      for (int k = 0; k < R; k += 4) {
        float4 tv[2][2];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int r = min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1);
            tv[i][h] = *reinterpret_cast<const float4 *> (p.t + (size_t) r * R + k);
          }
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const int c = min (n0 + wn * 32 + n * 8 + tg * 2 + e, N - 1);
            const float4 lv = *reinterpret_cast<const float4 *> (p.lora_up + (size_t) c * R + k);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
              for (int h = 0; h < 2; h++) {
                float v = f[i][n][h * 2 + e];
                v = __fadd_rn (v, __fmul_rn (tv[i][h].x, lv.x));
                v = __fadd_rn (v, __fmul_rn (tv[i][h].y, lv.y));
                v = __fadd_rn (v, __fmul_rn (tv[i][h].z, lv.z));
                v = __fadd_rn (v, __fmul_rn (tv[i][h].w, lv.w));
                f[i][n][h * 2 + e] = v;
              }
          }
      }
    } else if (p.rank > 0) {
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int r = min (m0 + wm * 32 + i * 16 + gid + h * 8, M - 1);
          const float *tr = p.t + (size_t) r * p.rank;
#pragma unroll
          for (int n = 0; n < 4; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
              const int c = min (n0 + wn * 32 + n * 8 + tg * 2 + e, N - 1);
              const float *l = p.lora_up + (size_t) c * p.rank;
              float v = f[i][n][h * 2 + e];
              for (int k = 0; k < p.rank; k++)
                v = __fadd_rn (v, __fmul_rn (tr[k], l[k]));
              f[i][n][h * 2 + e] = v;
            }
        }
    }
    switch (p.act) {
#define W4A8_ACT_ALL(ACT)                                                                      \
    _Pragma ("unroll") for (int i = 0; i < 2; i++)                                             \
      _Pragma ("unroll") for (int n = 0; n < 4; n++)                                           \
        _Pragma ("unroll") for (int e = 0; e < 4; e++)                                         \
          f[i][n][e] = act_apply (ACT, f[i][n][e]);                                            \
    break;
    case SAM2_CUDA_ACT_GELU:
      W4A8_ACT_ALL (SAM2_CUDA_ACT_GELU)
    case SAM2_CUDA_ACT_GELU_TANH:
      W4A8_ACT_ALL (SAM2_CUDA_ACT_GELU_TANH)
    case SAM2_CUDA_ACT_RELU:
      W4A8_ACT_ALL (SAM2_CUDA_ACT_RELU)
    case SAM2_CUDA_ACT_SILU:
      W4A8_ACT_ALL (SAM2_CUDA_ACT_SILU)
    case SAM2_CUDA_ACT_SIGMOID:
      W4A8_ACT_ALL (SAM2_CUDA_ACT_SIGMOID)
#undef W4A8_ACT_ALL
    default:
      break;
    }
    /* pairs: c even, so (r N + c) is even when N is; y and residual 8-byte aligned (pair_ok) */
    const bool pairs = p.pair_ok && N % 2 == 0;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = m0 + wm * 32 + i * 16 + gid + h * 8;
        if (r >= M)
          continue;
#pragma unroll
        for (int n = 0; n < 4; n++) {
          const int c = n0 + wn * 32 + n * 8 + tg * 2;
          const size_t o = (size_t) r * N + c;
          float v0 = f[i][n][h * 2], v1 = f[i][n][h * 2 + 1];
          if (pairs && c + 1 < N) {
            if (p.residual != nullptr) {
              const float2 rv = *reinterpret_cast<const float2 *> (p.residual + o);
              v0 = __fadd_rn (v0, rv.x);
              v1 = __fadd_rn (v1, rv.y);
            }
            *reinterpret_cast<float2 *> (p.y + o) = make_float2 (v0, v1);
          } else {
            if (c < N) {
              if (p.residual != nullptr)
                v0 = __fadd_rn (v0, p.residual[o]);
              p.y[o] = v0;
            }
            if (c + 1 < N) {
              if (p.residual != nullptr)
                v1 = __fadd_rn (v1, p.residual[o + 1]);
              p.y[o + 1] = v1;
            }
          }
        }
      }
    if constexpr (QNEXT)
      quantize_next_tile<C> (p, m0, smem + C::SHARED_BYTES);
  }
  cp_async_wait<0> ();             /* no copy in flight when the block exits */
}

/* y (M, K) = x (M, K) * smooth (K) per column: the rows cuBLAS projects when the rank is above
 * the fused limit (the same single rounding as the fused path's). */
__global__ void
scale_columns_kernel (const float *__restrict__ x, const float *__restrict__ s, size_t n, int K,
                      float *__restrict__ y)
{
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t) gridDim.x * blockDim.x)
    y[i] = __fmul_rn (x[i], s[i % K]);
}

/* Workspace offsets of sam2_cuda_w4a8_linear, from a 256-byte aligned base. */
struct Workspace {
  size_t codes, scales, zeros, sums, t, xs, total;
};

Workspace
workspace_layout (const Sam2CudaW4A8Layer *l, int M)
{
  Workspace w;
  size_t off = 0;
  const size_t m = (size_t) M;
  w.codes = off;
  off = align256 (off + m * l->geo.row_bytes);
  w.scales = off;
  off = align256 (off + m * sizeof (float));
  w.zeros = off;
  off = align256 (off + m * sizeof (int32_t));
  w.sums = off;
  off = align256 (off + m * l->geo.n_groups * sizeof (int32_t));
  w.t = off;
  off = align256 (off + m * (size_t) l->rank * sizeof (float));
  w.xs = off;
  if (l->rank > SAM2_CUDA_QUANT_MAX_FUSED_RANK && l->smooth_inv != nullptr)
    off = align256 (off + m * l->geo.k * sizeof (float));
  w.total = off;
  return w;
}

/* The kernel rows of M rows in a workspace laid out by workspace_layout. */
void
workspace_rows (const Sam2CudaW4A8Layer *l, int M, void *workspace, Sam2CudaActRows *rows)
{
  const Workspace ws = workspace_layout (l, M);
  uint8_t *base = (uint8_t *) workspace;
  rows->codes = (int8_t *) (base + ws.codes);
  rows->scales = (float *) (base + ws.scales);
  rows->zeros = (int32_t *) (base + ws.zeros);
  rows->sums = (int32_t *) (base + ws.sums);
  rows->t = l->rank > 0 ? (float *) (base + ws.t) : nullptr;
}

bool
geometry_ok (const Sam2CudaW4A8Geometry &g)
{
  return g.n > 0 && g.k > 0 && g.group_size > 0 && g.n_groups > 0 && g.group_pad % 32 == 0
         && g.row_bytes % BK == 0 && g.n_pad % BN == 0 && g.steps * 32 <= g.row_bytes;
}

/* Per device: the v3 kernels' shared-memory limit raised, and the number of blocks of each
 * v3 tiling the GPU holds at once (the persistent grid). */
constexpr int MAX_PREPARED_DEVICES = 64;
std::atomic<int> resident_big[MAX_PREPARED_DEVICES], resident_small[MAX_PREPARED_DEVICES];

template <class C>
const void *
v2_kernel (bool magic, bool qnext)
{
  if (qnext)
    return magic ? (const void *) w4a8_gemm_v2_kernel<C, true, true>
                 : (const void *) w4a8_gemm_v2_kernel<C, false, true>;
  return magic ? (const void *) w4a8_gemm_v2_kernel<C, true, false>
               : (const void *) w4a8_gemm_v2_kernel<C, false, false>;
}

/* Tiling C's dynamic shared memory, the QNEXT kernels' for their largest group count. */
template <class C>
constexpr int
max_shared_bytes ()
{
  return C::SHARED_BYTES + qnext_shared_bytes (C::THREADS / 32, QNEXT_MAX_GROUPS);
}

/* How many blocks of tiling C an SM of `prop` holds: the launch bounds' count, fewer where its
 * shared memory (with the 1 KB the hardware keeps per block) does not hold them. */
template <class C>
int
resident_blocks (const cudaDeviceProp &prop)
{
  const int by_shared = (int) (prop.sharedMemPerMultiprocessor / (max_shared_bytes<C> () + 1024));
  const int per_sm = by_shared < C::MIN_BLOCKS ? by_shared : C::MIN_BLOCKS;
  return (per_sm > 0 ? per_sm : 1) * prop.multiProcessorCount;
}

/* Raises the limit of tiling C's four kernels to what they may ask for. */
template <class C>
bool
raise_shared_limit ()
{
  for (int k = 0; k < 4; k++)
    if (cudaFuncSetAttribute (v2_kernel<C> (k & 1, k & 2), cudaFuncAttributeMaxDynamicSharedMemorySize,
                              max_shared_bytes<C> ())
        != cudaSuccess)
      return false;
  return true;
}

}  // namespace

int
sam2_cuda_w4a8_prepare (void)
{
  int dev = 0;
  if (cudaGetDevice (&dev) != cudaSuccess)
    return SAM2_CUDA_DEVICE;
  if (dev < 0 || dev >= MAX_PREPARED_DEVICES)
    return SAM2_CUDA_UNSUPPORTED;
  if (resident_big[dev].load () > 0)
    return SAM2_CUDA_OK;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties (&prop, dev) != cudaSuccess || !raise_shared_limit<V3Big> ()
      || !raise_shared_limit<V3Small> ()) {
    (void) cudaGetLastError ();
    return SAM2_CUDA_DEVICE;
  }
  resident_small[dev].store (resident_blocks<V3Small> (prop));
  resident_big[dev].store (resident_blocks<V3Big> (prop));
  return SAM2_CUDA_OK;
}

namespace {

/* Launches the v2 kernel template with tiling C: a block per tile, or for a persistent tiling
 * as many blocks as the device holds at once (whole columns of M tiles per N tile, at least
 * one; each block then walks ceil or floor of m_tiles / grid.y tiles). With the next layer's
 * quantization (p.qn.counters not NULL), the QNEXT kernel. */
template <class C>
int
launch_v2 (const GemmArgs &p, bool magic, int n_tiles, cudaStream_t stream)
{
  const int m_tiles = (p.M + C::BM - 1) / C::BM;
  int rows = m_tiles;
  if (C::PERSIST) {
    int dev = 0;
    if (cudaGetDevice (&dev) != cudaSuccess || dev < 0 || dev >= MAX_PREPARED_DEVICES)
      return SAM2_CUDA_DEVICE;
    const int resident = (C::BM == 128 ? resident_big : resident_small)[dev].load ();
    const int per_column = resident / n_tiles > 1 ? resident / n_tiles : 1;
    rows = m_tiles < per_column ? m_tiles : per_column;
  }
  const dim3 grid (n_tiles, rows);
  if (grid.y > 65535)
    return SAM2_CUDA_UNSUPPORTED;
  const bool qnext = p.qn.counters != nullptr;
  const size_t bytes = C::SHARED_BYTES
                       + (qnext ? qnext_shared_bytes (C::THREADS / 32, p.qn.layer.geo.n_groups)
                                : 0);
  typedef void (*Kernel) (const GemmArgs);
  const Kernel k = (Kernel) v2_kernel<C> (magic, qnext);
  SAM2_LAUNCH (grid, C::THREADS, bytes, stream, k) (p);
  return SAM2_CUDA_OK;
}

}  // namespace

/* The kernel version: 0 until chosen, then 1, 2 or 3 (see sam2_cuda_w4a8_kernel_version). */
static int kernel_version;

extern "C" int
sam2_cuda_w4a8_kernel_version (void)
{
  return sam2_kernel_version (&kernel_version, "SAM2_W4A8_KERNEL", 3);
}

extern "C" void
sam2_cuda_w4a8_set_kernel_version (int version)
{
  sam2_kernel_version_set (&kernel_version, version, 3);
}

extern "C" void
sam2_cuda_w4a8_geometry (int n, int k, int group_size, Sam2CudaW4A8Geometry *geo)
{
  /* a group of K or more is one group per channel (formats.h's group_size = K) */
  if (group_size <= 0 || group_size > k)
    group_size = k;
  geo->n = n;
  geo->k = k;
  geo->group_size = group_size;
  geo->n_groups = (k + group_size - 1) / group_size;
  geo->group_pad = round_up (group_size, 32);
  const int last = k - (geo->n_groups - 1) * group_size;   /* the tail group's columns */
  geo->steps = ((geo->n_groups - 1) * geo->group_pad + round_up (last, 32)) / 32;
  geo->row_bytes = round_up (geo->steps * 32, BK);
  geo->n_pad = round_up (n, BN);
}

extern "C" void
sam2_cuda_w4a8_blob_layout (const Sam2CudaW4A8Geometry *geo, Sam2CudaW4A8Blob *blob)
{
  const size_t per_group = (size_t) geo->n_groups * geo->n_pad * 4;
  size_t off = 0;
  blob->w = off;
  off = align256 (off + (size_t) geo->n_pad * geo->row_bytes / 2);   /* 4 bits per weight */
  blob->wzero = off;
  off = align256 (off + per_group);
  blob->wsum = off;
  off = align256 (off + per_group);
  blob->wscale = off;
  off = align256 (off + per_group);
  blob->total = off;
}

extern "C" void
sam2_cuda_w4a8_pack_host (const Sam2CudaW4A8Geometry *geo, const uint8_t *codes,
                          const float *scales, const uint8_t *zeros, void *out)
{
  Sam2CudaW4A8Blob b;
  sam2_cuda_w4a8_blob_layout (geo, &b);
  memset (out, 0, b.total);
  uint8_t *base = (uint8_t *) out;
  uint32_t *w = (uint32_t *) (base + b.w);             /* (n_pad / 8, row_bytes / 32, 32) */
  int32_t *wzero = (int32_t *) (base + b.wzero);       /* (n_groups, n_pad) */
  int32_t *wsum = (int32_t *) (base + b.wsum);         /* (n_groups, n_pad) */
  float *wscale = (float *) (base + b.wscale);         /* (n_groups, n_pad) */
  const int N = geo->n, K = geo->k, G = geo->group_size, NG = geo->n_groups;
  const int GP = geo->group_pad, steps_row = geo->row_bytes / 32;
  const size_t cb = (size_t) (K + 1) / 2;              /* bytes per row of `codes` */
  for (int n = 0; n < N; n++) {
    const uint8_t *cr = codes + (size_t) n * cb;
    /* codes: position p (of the kernel row) holds column k = g G + (p - g GP) of group g */
    for (int s = 0; s < geo->steps; s++)
      for (int tg = 0; tg < 4; tg++) {
        uint32_t word = 0;
        for (int nib = 0; nib < 8; nib++) {
          /* nibble 2i: column 4 tg + i of the step; nibble 2i + 1: column 16 + 4 tg + i */
          const int col = (nib & 1) * 16 + tg * 4 + nib / 2;
          const int pos = s * 32 + col, g = pos / GP, off = pos - g * GP;
          const int k = g * G + off;
          if (g >= NG || off >= G || k >= K)
            continue;
          const uint32_t q = (k & 1) ? cr[k / 2] >> 4 : cr[k / 2] & 15;
          word |= q << (4 * nib);
        }
        const int lane = (n % 8) * 4 + tg;
        w[((size_t) (n / 8) * steps_row + s) * 32 + lane] = word;
      }
    for (int g = 0; g < NG; g++) {
      const int z = zeros[(size_t) n * NG + g];
      int32_t sum = 0;
      for (int k = g * G; k < K && k < (g + 1) * G; k++)
        sum += ((k & 1) ? cr[k / 2] >> 4 : cr[k / 2] & 15) - z;
      const size_t o = (size_t) g * geo->n_pad + n;
      wzero[o] = z;
      wsum[o] = sum;
      wscale[o] = scales[(size_t) n * NG + g];
    }
  }
}

/* sam2_cuda_w4a8_gemm, and with `next` (checked by the caller) the QNEXT kernel that quantizes y
 * for it into next_rows. */
static int
gemm_run (const Sam2CudaW4A8Layer *layer, const Sam2CudaActRows *a, int M, float *y, int act,
          const float *residual, const Sam2CudaW4A8Layer *next, const Sam2CudaActRows *next_rows,
          unsigned int *counters, cudaStream_t stream)
{
  if (layer == nullptr || a == nullptr || M < 0 || !geometry_ok (layer->geo) || layer->rank < 0
      || act < SAM2_CUDA_ACT_NONE || act > SAM2_CUDA_ACT_SIGMOID)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  if (y == nullptr || a->codes == nullptr || a->scales == nullptr || a->zeros == nullptr
      || a->sums == nullptr || layer->w == nullptr || layer->wzero == nullptr
      || layer->wsum == nullptr || layer->wscale == nullptr
      || (layer->rank > 0 && (a->t == nullptr || layer->lora_up == nullptr)))
    return SAM2_CUDA_UNSUPPORTED;
  /* cp.async copies 16 bytes from the codes and the packed weights, the group folds read
   * 8-byte pairs of wzero / wsum / wscale: misaligned arrays would fault */
  if (((uintptr_t) a->codes & 15) != 0 || ((uintptr_t) layer->w & 15) != 0
      || ((uintptr_t) layer->wzero & 7) != 0 || ((uintptr_t) layer->wsum & 7) != 0
      || ((uintptr_t) layer->wscale & 7) != 0)
    return SAM2_CUDA_UNSUPPORTED;
  GemmArgs p;
  p.geo = layer->geo;
  p.w = layer->w;
  p.wzero = layer->wzero;
  p.wsum = layer->wsum;
  p.wscale = layer->wscale;
  p.bias = layer->bias;
  p.rank = layer->rank;
  p.lora_up = layer->lora_up;
  p.t = a->t;
  p.codes = a->codes;
  p.sa = a->scales;
  p.za = a->zeros;
  p.asum = a->sums;
  p.M = M;
  p.act = act;
  p.residual = residual;
  p.y = y;
  p.pair_ok = ((uintptr_t) y & 7) == 0 && ((uintptr_t) residual & 7) == 0;
  p.rank_vec4 = layer->rank % 4 == 0 && ((uintptr_t) a->t & 15) == 0
                && ((uintptr_t) layer->lora_up & 15) == 0;
  p.qn = {};
  if (next != nullptr) {
    p.qn.layer = *next;
    p.qn.rows = *next_rows;
    if (next->rank == 0)
      p.qn.rows.t = nullptr;
    p.qn.counters = counters;
    p.qn.pl_index = positions_per_lane_index (next->geo);
  }
  const int n_tiles = layer->geo.n_pad / BN;
  /* 128-row tiles unless that leaves fewer than about two blocks per SM of an H100 (132) */
  const long blocks128 = (long) ((M + 127) / 128) * n_tiles;
  const int version = sam2_cuda_w4a8_kernel_version ();
  if (version >= 2) {
    const bool magic = layer->geo.group_pad <= MAGIC_MAX_GROUP_PAD;
    int st;
    if (version == 3) {
      st = sam2_cuda_w4a8_prepare ();
      if (st == SAM2_CUDA_OK)
        st = blocks128 >= 264 ? launch_v2<V3Big> (p, magic, n_tiles, stream)
                              : launch_v2<V3Small> (p, magic, n_tiles, stream);
    } else {
      st = blocks128 >= 264 ? launch_v2<V2Big> (p, magic, n_tiles, stream)
                            : launch_v2<V2Small> (p, magic, n_tiles, stream);
    }
    if (st != SAM2_CUDA_OK)
      return st;
    return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
  }
  if (blocks128 >= 264) {
    const dim3 grid (n_tiles, (M + 127) / 128);
    if (grid.y > 65535)
      return SAM2_CUDA_UNSUPPORTED;
    SAM2_LAUNCH (grid, 256, 0, stream, w4a8_gemm_kernel<128>) (p);
  } else {
    const dim3 grid (n_tiles, (M + 63) / 64);
    if (grid.y > 65535)          /* not reached (few blocks take this branch); as the others */
      return SAM2_CUDA_UNSUPPORTED;
    SAM2_LAUNCH (grid, 128, 0, stream, w4a8_gemm_kernel<64>) (p);
  }
  return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}

extern "C" int
sam2_cuda_w4a8_gemm (const Sam2CudaW4A8Layer *layer, const Sam2CudaActRows *a, int M, float *y,
                     int act, const float *residual, cudaStream_t stream)
{
  return gemm_run (layer, a, M, y, act, residual, nullptr, nullptr, nullptr, stream);
}

extern "C" int
sam2_cuda_w4a8_quantize_next_supported (const Sam2CudaW4A8Layer *layer,
                                        const Sam2CudaW4A8Layer *next)
{
  return layer != nullptr && next != nullptr && sam2_cuda_w4a8_kernel_version () >= 2
         && next->geo.k == layer->geo.n && next->act_mode >= SAM2_CUDA_AQ_TOKEN_SYM
         && next->act_mode <= SAM2_CUDA_AQ_TENSOR_ASYM && next->rank >= 0
         && next->rank <= SAM2_CUDA_QUANT_MAX_FUSED_RANK && next->geo.k % 4 == 0
         && next->geo.group_size % 4 == 0 && next->geo.n_groups <= QNEXT_MAX_GROUPS
         && geometry_ok (next->geo) && ((uintptr_t) next->smooth_inv & 15) == 0
         && ((uintptr_t) next->lora_down & 15) == 0
         && (next->rank == 0 || next->lora_down != nullptr);
}

extern "C" size_t
sam2_cuda_w4a8_quantize_next_counters (int M)
{
  return M > 0 ? (size_t) (M + 63) / 64 : 0;   /* M tiles of the smaller tiling */
}

extern "C" int
sam2_cuda_w4a8_gemm_quantize_next (const Sam2CudaW4A8Layer *layer, const Sam2CudaActRows *a,
                                   int M, float *y, int act, const Sam2CudaW4A8Layer *next,
                                   const Sam2CudaActRows *next_rows, unsigned int *counters,
                                   cudaStream_t stream)
{
  if (!sam2_cuda_w4a8_quantize_next_supported (layer, next) || next_rows == nullptr
      || counters == nullptr || M < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  /* quantize_row_v2's 16-byte loads of y's rows and stores of the codes */
  if (y == nullptr || ((uintptr_t) y & 15) != 0 || next_rows->codes == nullptr
      || ((uintptr_t) next_rows->codes & 15) != 0 || next_rows->scales == nullptr
      || next_rows->zeros == nullptr || next_rows->sums == nullptr)
    return SAM2_CUDA_UNSUPPORTED;
  return gemm_run (layer, a, M, y, act, nullptr, next, next_rows, counters, stream);
}

extern "C" void
sam2_cuda_w4a8_workspace_rows (const Sam2CudaW4A8Layer *layer, int M, void *workspace,
                               Sam2CudaActRows *rows)
{
  workspace_rows (layer, M, workspace, rows);
}

extern "C" size_t
sam2_cuda_w4a8_linear_workspace_bytes (const Sam2CudaW4A8Layer *layer, int M)
{
  if (layer == nullptr || M < 0)
    return 0;
  return workspace_layout (layer, M).total;
}

extern "C" int
sam2_cuda_w4a8_linear (const Sam2CudaW4A8Layer *layer, const float *x, int M, float *y, int act,
                       const float *residual, cublasHandle_t cublas, cudaStream_t stream,
                       void *workspace)
{
  if (layer == nullptr || M < 0 || !geometry_ok (layer->geo))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  if (workspace == nullptr || x == nullptr || ((uintptr_t) workspace & 255) != 0)
    return SAM2_CUDA_UNSUPPORTED;
  const int R = layer->rank;
  if (R > SAM2_CUDA_QUANT_MAX_FUSED_RANK && (cublas == nullptr || layer->lora_down == nullptr))
    return SAM2_CUDA_UNSUPPORTED;
  const Workspace ws = workspace_layout (layer, M);
  uint8_t *base = (uint8_t *) workspace;
  Sam2CudaActRows rows;
  workspace_rows (layer, M, workspace, &rows);
  int st = sam2_cuda_quantize_rows (layer, x, M, &rows, stream);
  if (st != SAM2_CUDA_OK)
    return st;
  if (R > SAM2_CUDA_QUANT_MAX_FUSED_RANK) {
    /* t (M, R) = xs (M, K) L_down^T (R, K)^T: column-major t^T (R, M) = L_down (as (K, R)
     * col-major, transposed) times xs (as (K, M) col-major) */
    const float *xs = x;
    const int K = layer->geo.k;
    if (layer->smooth_inv != nullptr) {
      float *buf = (float *) (base + ws.xs);
      const size_t n = (size_t) M * K;
      const int blocks = (int) ((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536);
      SAM2_LAUNCH (blocks, 256, 0, stream, scale_columns_kernel) (x, layer->smooth_inv, n, K, buf);
      if (cudaGetLastError () != cudaSuccess)
        return SAM2_CUDA_DEVICE;
      xs = buf;
    }
    const float one = 1.0f, zero = 0.0f;
    /* cublasSetStream also drops a workspace set with cublasSetWorkspace for cuBLAS's own
     * pool, which allocates, also inside a graph capture: bind only when another stream is
     * asked for than the one the handle has (the backend's, with its workspace) */
    cudaStream_t bound = nullptr;
    if (cublasGetStream (cublas, &bound) != CUBLAS_STATUS_SUCCESS
        || (bound != stream && cublasSetStream (cublas, stream) != CUBLAS_STATUS_SUCCESS)
        || cublasSgemm (cublas, CUBLAS_OP_T, CUBLAS_OP_N, R, M, K, &one, layer->lora_down, K, xs,
                        K, &zero, rows.t, R) != CUBLAS_STATUS_SUCCESS)
      return SAM2_CUDA_DEVICE;
  }
  return sam2_cuda_w4a8_gemm (layer, &rows, M, y, act, residual, stream);
}

extern "C" int
sam2_cuda_w4a8_norm_linear (const Sam2CudaW4A8Layer *layer, const Sam2CudaRowNorm *norm,
                            const Sam2CudaRowWindows *windows, const float *x, int M, float *y,
                            int act, const float *residual, cudaStream_t stream,
                            void *workspace)
{
  if (layer == nullptr || M < 0 || !geometry_ok (layer->geo)
      || !sam2_cuda_layer_norm_quantize_rows_supported (layer))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  if (workspace == nullptr || ((uintptr_t) workspace & 255) != 0)
    return SAM2_CUDA_UNSUPPORTED;
  Sam2CudaActRows rows;
  workspace_rows (layer, M, workspace, &rows);
  /* UNSUPPORTED here (kernel v1, a rank for cuBLAS, a row too long, windows for another M) has
   * launched nothing */
  const int st = sam2_cuda_layer_norm_quantize_rows (layer, norm, windows, x, M, &rows, stream);
  if (st != SAM2_CUDA_OK)
    return st;
  return sam2_cuda_w4a8_gemm (layer, &rows, M, y, act, residual, stream);
}
