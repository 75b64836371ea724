/* attention-16.cuh: the kernels of sam2_cuda_attention_16 (kernels.h), the tensor-core variant of
 * the flash attention, and their launch; attention-f16.cu instantiates them for FP16 and holds
 * the C entry points, attention-bf16.cu for BF16 (one translation unit per format, so that the
 * two sets of 48 kernel instances compile in parallel). The kernels: Q, K, V and the
 * probabilities P rounded to FP16 or bfloat16 (Op16 below) as mma.sync.m16n8k16 operands, with
 * FP32 accumulation, FP32 online softmax (max, exp, sums) and an FP32 output (or its 16-bit
 * rounding, out16: the next linear layer's operand).
 *
 * A block of 4 warps owns 64 queries of one (sequence, head) (16 rows per warp, the M of the mma)
 * and walks the keys in tiles of 64 (FlashAttention-2's split: no exchange between warps).
 * Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4), as the PTX ISA gives them:
 *   A (16 x 16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..),
 *                           a3 = (g+8, 2t+8..), two halves per register, lower column in the
 *                           low half;
 *   B (16 x 8, "col"):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g);
 *   C (16 x 8, f32):        c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1).
 * S = Q K^T takes B from K stored (key, d) in shared memory (b0 = K[key g][d 2t..2t+1], one
 * 32-bit load); O += P V takes A from S's C fragments of two neighbouring 8-key blocks (the C
 * layout of keys 0..7 and 8..15 is exactly the A layout of a 16-key step) and B from V stored
 * transposed, (d, key), so that b0 = V^T[d g][key 2t..2t+1] is again one 32-bit load.
 * Q's fragments are loaded once into registers. Head dims are padded to 16 with zeros.
 * Row stride paddings of 8 halves make the 8 rows g of a fragment load hit distinct banks.
 *
 * Two versions (sam2_cuda_attention_16_version):
 *   v1 (flash_f16_kernel): the first one, kept for comparison and for unaligned inputs. It stores
 *      V transposed with 2-byte stores whose addresses, for neighbouring threads, fall 16 banks
 *      apart (a 16-way conflict per store), loads each tile only after the previous one is done,
 *      and gives a block 64 queries: for the 4096-token global blocks every block reads all of
 *      K and V in FP32 from L2, 64 times per head (tiny: 0.35 ms, ~2.3 TB/s of L2 reads).
 *   v2 (flash_f16_v2_kernel, the default): V stays (key, d) in shared memory, written like K by
 *      8-byte stores, and its B fragments come from ldmatrix.trans (the transposed 8 x 8 halves:
 *      lane gets rows 2t, 2t+1 of column g, which is b0); when len_q > 64 a block of 8 warps owns
 *      128 queries (half the K / V reads per query) and issues the next tile's global loads into
 *      registers before the current tile's products, so the loads' latency hides behind them;
 *      the softmax runs in base 2 (scale * log2(e) folded into one multiply, exp2f). Few queries
 *      against many keys (the mask decoder's token-to-image attention) go to sam2_cuda_attention's
 *      decode kernel, which splits the keys over a block instead of walking 64 tiles with one
 *      block per head (0.105 -> 0.021 ms for 7 x 4096 keys, 8 heads, on an H200). v2 also reads
 *      q, k and v already in the operand format (q16, k16, v16: a Hiera block's qkv output in 16
 *      bits), storing them as they come: half the bytes per load, no conversion. */
#ifndef SAM2_KERNELS_ATTENTION_16_CUH
#define SAM2_KERNELS_ATTENTION_16_CUH

#include "common.cuh"
#include "ptx.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <string.h>
#include <type_traits>

namespace {

constexpr int BQ = 64, BK = 64, WARPS = 4, THREADS = 32 * WARPS;
constexpr int VT_LD = BK + 8;   /* halves */

template <int NJ>
struct TcSmem {
  static constexpr int DP = 16 * NJ;
  static constexpr int K_LD = DP + 8;                       /* halves */
  static constexpr size_t K_HALVES = (size_t) BK * K_LD;
  static constexpr size_t VT_HALVES = (size_t) DP * VT_LD;
  static constexpr size_t BYTES = (K_HALVES + VT_HALVES) * sizeof (uint16_t);
};

/* The operand format of a kernel instance: a pair of floats rounded and packed into one 32-bit
 * fragment register (lo in the low 16 bits, one conversion instruction for both) and the
 * tensor-core product c (16 x 8, f32) += a (16 x 16) b (16 x 8). Both formats share the
 * fragment layouts and ldmatrix; single values go to shared memory as sam2_to16's bit patterns
 * (common.cuh). */
template <bool BF16>
struct Op16;

template <>
struct Op16<false> {
  static __device__ __forceinline__ uint32_t
  pack2 (float lo, float hi)
  {
    const __half2 h = __floats2half2_rn (lo, hi);
    uint32_t u;   /* the bits through memcpy, not a pointer cast: no aliasing for any compiler */
    memcpy (&u, &h, sizeof u);
    return u;
  }

  static __device__ __forceinline__ void
  mma (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
  {
    mma_16816 (c, a, b0, b1);
  }
};

template <>
struct Op16<true> {
  static __device__ __forceinline__ uint32_t
  pack2 (float lo, float hi)
  {
    const __nv_bfloat162 h = __floats2bfloat162_rn (lo, hi);
    uint32_t u;
    memcpy (&u, &h, sizeof u);
    return u;
  }

  static __device__ __forceinline__ void
  mma (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
  {
    mma_16816_bf16 (c, a, b0, b1);
  }
};

__device__ __forceinline__ float
quad_max (float v)
{
  v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, 1));
  return fmaxf (v, __shfl_xor_sync (0xffffffffu, v, 2));
}

__device__ __forceinline__ float
quad_sum (float v)
{
  v += __shfl_xor_sync (0xffffffffu, v, 1);
  return v + __shfl_xor_sync (0xffffffffu, v, 2);
}

/* grid: (q_tiles * heads * batch); block: 128; dynamic shared memory TcSmem<NJ>::BYTES (under
 * 48 KB for every NJ: 35 KB at head_dim 128). */
template <int NJ, bool VEC, bool BF16>
__global__ void __launch_bounds__ (THREADS)
flash_f16_kernel (const Sam2CudaAttentionArgs a, int q_tiles)
{
  using L = TcSmem<NJ>;
  using O = Op16<BF16>;
  constexpr int DP = L::DP;
  constexpr int ND = DP / 8;     /* 8-column blocks of the output */
  SAM2_DYNAMIC_SHARED (float4, smem4);
  uint16_t *Ks = reinterpret_cast<uint16_t *> (smem4);   /* (BK, K_LD) */
  uint16_t *Vt = Ks + L::K_HALVES;                        /* (DP, VT_LD) */

  const int tile = (int) (blockIdx.x % (unsigned) q_tiles);
  const int rest = (int) (blockIdx.x / (unsigned) q_tiles);
  const int head = rest % a.heads, seq = rest / a.heads;
  const int D = a.head_dim;
  const int q0 = tile * BQ;
  const size_t hoff = (size_t) head * D;
  const float *qb = a.q + seq * a.q_batch_stride + hoff;
  const float *kb = a.k + seq * a.k_batch_stride + hoff;
  const float *vb = a.v + seq * a.v_batch_stride + hoff;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;

  /* Q fragments for the whole padded head dimension, zero past len_q and past D */
  uint32_t qf[NJ][4];
  {
    const bool in0 = row0 < a.len_q, in1 = row1 < a.len_q;
    const float *r0 = qb + (size_t) row0 * a.q_ld, *r1 = qb + (size_t) row1 * a.q_ld;
#pragma unroll
    for (int kc = 0; kc < NJ; kc++) {
      const int d0 = kc * 16 + 2 * t, d1 = d0 + 8;
      qf[kc][0] = O::pack2 (in0 && d0 < D ? r0[d0] : 0.0f, in0 && d0 + 1 < D ? r0[d0 + 1] : 0.0f);
      qf[kc][1] = O::pack2 (in1 && d0 < D ? r1[d0] : 0.0f, in1 && d0 + 1 < D ? r1[d0 + 1] : 0.0f);
      qf[kc][2] = O::pack2 (in0 && d1 < D ? r0[d1] : 0.0f, in0 && d1 + 1 < D ? r0[d1 + 1] : 0.0f);
      qf[kc][3] = O::pack2 (in1 && d1 < D ? r1[d1] : 0.0f, in1 && d1 + 1 < D ? r1[d1 + 1] : 0.0f);
    }
  }

  float o[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; nd++)
    o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;   /* rows row0, row1: running max */
  float l0 = 0.0f, l1 = 0.0f;             /* this lane's part of the running sums */

  for (int k0 = 0; k0 < a.len_k; k0 += BK) {
    const int kv = min (BK, a.len_k - k0);
    /* K (key, d) and V^T (d, key) tiles in half, zero past kv and D; the previous iteration
     * ended with a barrier */
    if (VEC) {
      constexpr int C4 = DP / 4;
      for (int idx = threadIdx.x; idx < BK * C4; idx += THREADS) {
        const int r = idx / C4, c = (idx % C4) * 4;
        float4 kx = make_float4 (0.0f, 0.0f, 0.0f, 0.0f), vx = kx;
        if (r < kv && c < D) {
          kx = *reinterpret_cast<const float4 *> (kb + (size_t) (k0 + r) * a.k_ld + c);
          vx = *reinterpret_cast<const float4 *> (vb + (size_t) (k0 + r) * a.v_ld + c);
        }
        /* r * K_LD + c is a multiple of 4 halves: an 8-byte store */
        uint2 kh;
        kh.x = O::pack2 (kx.x, kx.y);
        kh.y = O::pack2 (kx.z, kx.w);
        *reinterpret_cast<uint2 *> (Ks + r * L::K_LD + c) = kh;
        Vt[(c + 0) * VT_LD + r] = sam2_to16<BF16> (vx.x);
        Vt[(c + 1) * VT_LD + r] = sam2_to16<BF16> (vx.y);
        Vt[(c + 2) * VT_LD + r] = sam2_to16<BF16> (vx.z);
        Vt[(c + 3) * VT_LD + r] = sam2_to16<BF16> (vx.w);
      }
    } else {
      for (int idx = threadIdx.x; idx < BK * DP; idx += THREADS) {
        const int r = idx / DP, c = idx % DP;
        float kx = 0.0f, vx = 0.0f;
        if (r < kv && c < D) {
          kx = kb[(size_t) (k0 + r) * a.k_ld + c];
          vx = vb[(size_t) (k0 + r) * a.v_ld + c];
        }
        Ks[r * L::K_LD + c] = sam2_to16<BF16> (kx);
        Vt[c * VT_LD + r] = sam2_to16<BF16> (vx);
      }
    }
    __syncthreads ();

    /* S (16 rows x 64 keys per warp) = Q K^T, 8 key blocks of 8 */
    float s[8][4];
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
      s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
      const uint16_t *kr = Ks + (nb * 8 + g) * L::K_LD + 2 * t;
#pragma unroll
      for (int kc = 0; kc < NJ; kc++) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t *> (kr + kc * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t *> (kr + kc * 16 + 8);
        O::mma (s[nb], qf[kc], b0, b1);
      }
    }

    /* online softmax in FP32; keys past kv get -inf (p = 0) */
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
      const int c = nb * 8 + 2 * t;
      s[nb][0] = c < kv ? s[nb][0] * a.scale : -INFINITY;
      s[nb][1] = c + 1 < kv ? s[nb][1] * a.scale : -INFINITY;
      s[nb][2] = c < kv ? s[nb][2] * a.scale : -INFINITY;
      s[nb][3] = c + 1 < kv ? s[nb][3] * a.scale : -INFINITY;
      mx0 = fmaxf (mx0, fmaxf (s[nb][0], s[nb][1]));
      mx1 = fmaxf (mx1, fmaxf (s[nb][2], s[nb][3]));
    }
    const float mn0 = fmaxf (m0, quad_max (mx0)), mn1 = fmaxf (m1, quad_max (mx1));
    const float alpha0 = expf (m0 - mn0), alpha1 = expf (m1 - mn1);  /* 0 on the first tile */
    m0 = mn0;
    m1 = mn1;
    float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
      s[nb][0] = expf (s[nb][0] - mn0);
      s[nb][1] = expf (s[nb][1] - mn0);
      s[nb][2] = expf (s[nb][2] - mn1);
      s[nb][3] = expf (s[nb][3] - mn1);
      ls0 += s[nb][0] + s[nb][1];
      ls1 += s[nb][2] + s[nb][3];
    }
    l0 = l0 * alpha0 + ls0;
    l1 = l1 * alpha1 + ls1;
#pragma unroll
    for (int nd = 0; nd < ND; nd++) {
      o[nd][0] *= alpha0;
      o[nd][1] *= alpha0;
      o[nd][2] *= alpha1;
      o[nd][3] *= alpha1;
    }

    /* O += P V in 16-key steps; steps wholly past kv hold p = 0 and are skipped */
#pragma unroll
    for (int kc = 0; kc < BK / 16; kc++) {
      if (kc * 16 >= kv)
        break;
      uint32_t pa[4];
      pa[0] = O::pack2 (s[2 * kc][0], s[2 * kc][1]);
      pa[1] = O::pack2 (s[2 * kc][2], s[2 * kc][3]);
      pa[2] = O::pack2 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = O::pack2 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int nd = 0; nd < ND; nd++) {
        const uint16_t *vr = Vt + (nd * 8 + g) * VT_LD + kc * 16 + 2 * t;
        const uint32_t b0 = *reinterpret_cast<const uint32_t *> (vr);
        const uint32_t b1 = *reinterpret_cast<const uint32_t *> (vr + 8);
        O::mma (o[nd], pa, b0, b1);
      }
    }
    __syncthreads ();
  }

  /* l >= 1 once the quad's parts are summed (the row max contributes exp(0)) */
  const float inv0 = 1.0f / quad_sum (l0), inv1 = 1.0f / quad_sum (l1);
  const size_t ob = seq * a.out_batch_stride + hoff;
  const size_t o0 = ob + (size_t) row0 * a.out_ld, o1 = ob + (size_t) row1 * a.out_ld;
#pragma unroll
  for (int nd = 0; nd < ND; nd++) {
    const int d = nd * 8 + 2 * t;
    if (row0 < a.len_q) {
      if (d < D)
        sam2_attention_store (a, o0 + d, o[nd][0] * inv0);
      if (d + 1 < D)
        sam2_attention_store (a, o0 + d + 1, o[nd][1] * inv0);
    }
    if (row1 < a.len_q) {
      if (d < D)
        sam2_attention_store (a, o1 + d, o[nd][2] * inv1);
      if (d + 1 < D)
        sam2_attention_store (a, o1 + d + 1, o[nd][3] * inv1);
    }
  }
}


/* ---- v2 -------------------------------------------------------------------------------------- */

/* K and V tiles of BK keys, both (key, d) with rows of DP + 8 halves (the padding puts the 8 rows
 * of an ldmatrix or of a fragment load on distinct banks for every DP, a multiple of 16). */
template <int NJ>
struct V2Smem {
  static constexpr int DP = 16 * NJ;
  static constexpr int LD = DP + 8;                              /* halves */
  static constexpr size_t HALVES = (size_t) BK * LD;             /* one of K, V */
  static constexpr size_t BYTES = 2 * HALVES * sizeof (uint16_t);  /* 34.8 KB at head_dim 128 */
};

/* The element type of q, k and v in memory: floats, rounded to the operand format as they are
 * stored into shared memory, or (IN16) already in that format (Sam2CudaAttentionArgs' q16, k16,
 * v16), and four of them, one load. */
template <bool IN16>
struct V2In {
  using T = float;
  using Four = float4;
  static __device__ __forceinline__ const T *k (const Sam2CudaAttentionArgs &a) { return a.k; }
  static __device__ __forceinline__ const T *v (const Sam2CudaAttentionArgs &a) { return a.v; }
  static __device__ __forceinline__ const T *q (const Sam2CudaAttentionArgs &a) { return a.q; }
  static __device__ __forceinline__ Four zero () { return make_float4 (0.0f, 0.0f, 0.0f, 0.0f); }
};
template <>
struct V2In<true> {
  using T = uint16_t;
  using Four = uint2;
  static __device__ __forceinline__ const T *k (const Sam2CudaAttentionArgs &a) { return a.k16; }
  static __device__ __forceinline__ const T *v (const Sam2CudaAttentionArgs &a) { return a.v16; }
  static __device__ __forceinline__ const T *q (const Sam2CudaAttentionArgs &a) { return a.q16; }
  static __device__ __forceinline__ Four zero () { return make_uint2 (0u, 0u); }   /* +0, +0 */
};

/* This thread's part of the K and V tile at key k0 (ITEMS groups of 4 elements of each,
 * row-major over the tile's BK x DP/4 groups), zero past len_k and past head_dim. */
template <int NJ, int NT, bool BF16, bool IN16>
struct V2Tile {
  using O = Op16<BF16>;
  using In = V2In<IN16>;
  using T = typename In::T;
  using Four = typename In::Four;
  static constexpr int C4 = 4 * NJ;                 /* groups of 4 per padded row */
  static constexpr int ITEMS = BK * C4 / NT;        /* NT: threads of the block */
  static_assert (BK * C4 % NT == 0, "whole groups per thread");
  Four k[ITEMS], v[ITEMS];

  /* item j of this thread: tile row r, first column c */
  static __device__ __forceinline__ void
  item (int j, int &r, int &c)
  {
    const int idx = (int) threadIdx.x + j * NT;
    r = idx / C4;
    c = (idx % C4) * 4;
  }

  /* the 4 elements at tile row r, column c: zero past len_k and past head_dim (head_dim % 4 ==
   * 0, so c < head_dim covers all four) */
  static __device__ __forceinline__ void
  fetch (const T *kb, const T *vb, const Sam2CudaAttentionArgs &a, int key, int c, Four &kx,
         Four &vx)
  {
    kx = vx = In::zero ();
    if (key < a.len_k && c < a.head_dim) {
      kx = *reinterpret_cast<const Four *> (kb + (size_t) key * a.k_ld + c);
      vx = *reinterpret_cast<const Four *> (vb + (size_t) key * a.v_ld + c);
    }
  }

  /* four elements as the operand format's halves */
  static __device__ __forceinline__ uint2
  halves (const float4 &x)
  {
    uint2 h;
    h.x = O::pack2 (x.x, x.y);
    h.y = O::pack2 (x.z, x.w);
    return h;
  }
  static __device__ __forceinline__ uint2 halves (const uint2 &x) { return x; }

  /* 8-byte stores of the halves (r * LD + c is a multiple of 4 halves) */
  static __device__ __forceinline__ void
  put (uint16_t *Ks, uint16_t *Vs, int r, int c, const Four &kx, const Four &vx)
  {
    constexpr int LD = V2Smem<NJ>::LD;
    *reinterpret_cast<uint2 *> (Ks + r * LD + c) = halves (kx);
    *reinterpret_cast<uint2 *> (Vs + r * LD + c) = halves (vx);
  }

  /* prefetch: the tile at key k0 into registers ... */
  __device__ __forceinline__ void
  load (const T *kb, const T *vb, const Sam2CudaAttentionArgs &a, int k0)
  {
#pragma unroll
    for (int j = 0; j < ITEMS; j++) {
      int r, c;
      item (j, r, c);
      fetch (kb, vb, a, k0 + r, c, k[j], v[j]);
    }
  }

  /* ... and from them into shared memory */
  __device__ __forceinline__ void
  store (uint16_t *Ks, uint16_t *Vs) const
  {
#pragma unroll
    for (int j = 0; j < ITEMS; j++) {
      int r, c;
      item (j, r, c);
      put (Ks, Vs, r, c, k[j], v[j]);
    }
  }

  /* no prefetch: straight from global to shared memory, one pair of groups at a time */
  static __device__ __forceinline__ void
  copy (const T *kb, const T *vb, const Sam2CudaAttentionArgs &a, int k0, uint16_t *Ks,
        uint16_t *Vs)
  {
#pragma unroll 2
    for (int j = 0; j < ITEMS; j++) {
      int r, c;
      item (j, r, c);
      Four kx, vx;
      fetch (kb, vb, a, k0 + r, c, kx, vx);
      put (Ks, Vs, r, c, kx, vx);
    }
  }
};

/* grid: (q_tiles * heads * batch); block: 32 WARPS; dynamic shared memory V2Smem<NJ>::BYTES.
 * Needs head_dim % 4 == 0 and K and V rows aligned for 4-element loads (float4; IN16: 8 bytes,
 * and 4-byte aligned Q rows). WARPS 8 prefetches the next tile into registers (2 NJ groups of 4
 * per thread); WARPS 4 (len_q <= 64: Hiera's windows) would need twice that, so it loads each
 * tile when it needs it, as v1 does. IN16: q, k, v already in the operand format (q16, k16,
 * v16), stored as they are: the same operands, so the same bits, as floats that round to them. */
template <int NJ, int WARPS, bool BF16, bool IN16>
__global__ void __launch_bounds__ (32 * WARPS)
flash_f16_v2_kernel (const Sam2CudaAttentionArgs a, int q_tiles)
{
  using L = V2Smem<NJ>;
  using O = Op16<BF16>;
  using In = V2In<IN16>;
  using T = typename In::T;
  constexpr int NT = 32 * WARPS, BQ2 = 16 * WARPS;
  constexpr int DP = L::DP, LD = L::LD;
  constexpr int ND = DP / 8;
  constexpr bool PREFETCH = WARPS == 8;
  SAM2_DYNAMIC_SHARED (float4, smem4);
  uint16_t *Ks = reinterpret_cast<uint16_t *> (smem4);   /* (BK, LD) */
  uint16_t *Vs = Ks + L::HALVES;                          /* (BK, LD) */

  const int tile = (int) (blockIdx.x % (unsigned) q_tiles);
  const int rest = (int) (blockIdx.x / (unsigned) q_tiles);
  const int head = rest % a.heads, seq = rest / a.heads;
  const int D = a.head_dim;
  const int q0 = tile * BQ2;
  const size_t hoff = (size_t) head * D;
  const T *qb = In::q (a) + seq * a.q_batch_stride + hoff;
  const T *kb = In::k (a) + seq * a.k_batch_stride + hoff;
  const T *vb = In::v (a) + seq * a.v_batch_stride + hoff;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;
  /* a warp whose 16 rows all lie past len_q only helps to load the tiles */
  const bool active = q0 + warp * 16 < a.len_q;
  const float scale2 = a.scale * 1.4426950408889634f;   /* scores in base 2 */

  uint32_t qf[NJ][4];
  {
    const bool in0 = row0 < a.len_q, in1 = row1 < a.len_q;
    const T *r0 = qb + (size_t) row0 * a.q_ld, *r1 = qb + (size_t) row1 * a.q_ld;
    /* the pair (d, d + 1) of a row as one fragment register, zero outside */
    auto pair = [&] (bool in, const T *r, int d) -> uint32_t {
      if (!in || d >= D)
        return 0u;
      if constexpr (IN16)
        return *reinterpret_cast<const uint32_t *> (r + d);
      else
        return O::pack2 (r[d], r[d + 1]);
    };
#pragma unroll
    for (int kc = 0; kc < NJ; kc++) {
      const int d0 = kc * 16 + 2 * t, d1 = d0 + 8;   /* even, and D % 4 == 0: d < D covers d+1 */
      qf[kc][0] = pair (in0, r0, d0);
      qf[kc][1] = pair (in1, r1, d0);
      qf[kc][2] = pair (in0, r0, d1);
      qf[kc][3] = pair (in1, r1, d1);
    }
  }

  float o[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; nd++)
    o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;   /* running max of rows row0, row1 (base-2 scores) */
  float l0 = 0.0f, l1 = 0.0f;             /* this lane's part of the running sums */

  /* ldmatrix.trans row addresses of this lane within a (16 keys, 16 d) block of V: matrix
   * i = lane / 8 covers keys 8 (i & 1) .. +7 and d 8 (i >> 1) .. +7, so the four registers are
   * b0, b1 of one 8-column output block and b0, b1 of the next */
  const int v_lane = (((lane >> 3) & 1) * 8 + (lane & 7)) * LD + (lane >> 4) * 8;

  using Tile = V2Tile<NJ, NT, BF16, IN16>;
  struct Empty {};
  /* the registers of the prefetched tile exist only when PREFETCH */
  typename std::conditional<PREFETCH, Tile, Empty>::type next;
  if constexpr (PREFETCH)
    next.load (kb, vb, a, 0);
  for (int k0 = 0; k0 < a.len_k; k0 += BK) {
    const int kv = min (BK, a.len_k - k0);
    /* the previous iteration ended with a barrier: the tile buffers are free */
    if constexpr (PREFETCH)
      next.store (Ks, Vs);
    else
      Tile::copy (kb, vb, a, k0, Ks, Vs);
    __syncthreads ();
    if constexpr (PREFETCH) {
      if (k0 + BK < a.len_k)
        next.load (kb, vb, a, k0 + BK);   /* in flight while this tile is multiplied */
    }

    if (active) {
      /* S (16 rows x 64 keys per warp) = Q K^T, 8 key blocks of 8 */
      float s[8][4];
#pragma unroll
      for (int nb = 0; nb < 8; nb++) {
        s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
        const uint16_t *kr = Ks + (nb * 8 + g) * LD + 2 * t;
#pragma unroll
        for (int kc = 0; kc < NJ; kc++) {
          const uint32_t b0 = *reinterpret_cast<const uint32_t *> (kr + kc * 16);
          const uint32_t b1 = *reinterpret_cast<const uint32_t *> (kr + kc * 16 + 8);
          O::mma (s[nb], qf[kc], b0, b1);
        }
      }

      /* online softmax in base 2; keys past kv get -inf (p = 0) */
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < 8; nb++) {
        const int c = nb * 8 + 2 * t;
        s[nb][0] = c < kv ? s[nb][0] * scale2 : -INFINITY;
        s[nb][1] = c + 1 < kv ? s[nb][1] * scale2 : -INFINITY;
        s[nb][2] = c < kv ? s[nb][2] * scale2 : -INFINITY;
        s[nb][3] = c + 1 < kv ? s[nb][3] * scale2 : -INFINITY;
        mx0 = fmaxf (mx0, fmaxf (s[nb][0], s[nb][1]));
        mx1 = fmaxf (mx1, fmaxf (s[nb][2], s[nb][3]));
      }
      const float mn0 = fmaxf (m0, quad_max (mx0)), mn1 = fmaxf (m1, quad_max (mx1));
      const float alpha0 = exp2f (m0 - mn0), alpha1 = exp2f (m1 - mn1);  /* 0 on the first tile */
      m0 = mn0;
      m1 = mn1;
      float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
      for (int nb = 0; nb < 8; nb++) {
        s[nb][0] = exp2f (s[nb][0] - mn0);
        s[nb][1] = exp2f (s[nb][1] - mn0);
        s[nb][2] = exp2f (s[nb][2] - mn1);
        s[nb][3] = exp2f (s[nb][3] - mn1);
        ls0 += s[nb][0] + s[nb][1];
        ls1 += s[nb][2] + s[nb][3];
      }
      l0 = l0 * alpha0 + ls0;
      l1 = l1 * alpha1 + ls1;
#pragma unroll
      for (int nd = 0; nd < ND; nd++) {
        o[nd][0] *= alpha0;
        o[nd][1] *= alpha0;
        o[nd][2] *= alpha1;
        o[nd][3] *= alpha1;
      }

      /* O += P V in 16-key steps (steps wholly past kv hold p = 0 and are skipped), two 8-column
       * output blocks per ldmatrix */
#pragma unroll
      for (int kc = 0; kc < BK / 16; kc++) {
        if (kc * 16 >= kv)
          break;
        uint32_t pa[4];
        pa[0] = O::pack2 (s[2 * kc][0], s[2 * kc][1]);
        pa[1] = O::pack2 (s[2 * kc][2], s[2 * kc][3]);
        pa[2] = O::pack2 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
        pa[3] = O::pack2 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
        for (int np = 0; np < ND / 2; np++) {
          uint32_t b[4];
          ldmatrix_x4_trans (b, Vs + kc * 16 * LD + np * 16 + v_lane);
          O::mma (o[2 * np], pa, b[0], b[1]);
          O::mma (o[2 * np + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads ();
  }

  if (!active)
    return;
  const float inv0 = 1.0f / quad_sum (l0), inv1 = 1.0f / quad_sum (l1);
  const size_t ob = seq * a.out_batch_stride + hoff;
  const size_t o0 = ob + (size_t) row0 * a.out_ld, o1 = ob + (size_t) row1 * a.out_ld;
#pragma unroll
  for (int nd = 0; nd < ND; nd++) {
    const int d = nd * 8 + 2 * t;   /* even, D % 4 == 0: d < D covers d + 1 */
    if (d >= D)
      continue;
    if (row0 < a.len_q) {
      sam2_attention_store (a, o0 + d, o[nd][0] * inv0);
      sam2_attention_store (a, o0 + d + 1, o[nd][1] * inv0);
    }
    if (row1 < a.len_q) {
      sam2_attention_store (a, o1 + d, o[nd][2] * inv1);
      sam2_attention_store (a, o1 + d + 1, o[nd][3] * inv1);
    }
  }
}

typedef void (*TcFn) (const Sam2CudaAttentionArgs, int);

constexpr int MAX_NJ = SAM2_CUDA_ATTENTION_MAX_HEAD_DIM / 16;

/* Launch tables of one operand format by head-dim chunks NJ: v1[nj - 1][vec],
 * v2[in16][nj - 1][warps == 8] */
template <bool BF16>
struct TcKernels {
  TcFn v1[MAX_NJ][2];
  size_t v1_bytes[MAX_NJ];
  TcFn v2[2][MAX_NJ][2];
  size_t v2_bytes[MAX_NJ];

  template <int NJ>
  void
  fill ()
  {
    v1[NJ - 1][0] = flash_f16_kernel<NJ, false, BF16>;
    v1[NJ - 1][1] = flash_f16_kernel<NJ, true, BF16>;
    v1_bytes[NJ - 1] = TcSmem<NJ>::BYTES;
    v2[0][NJ - 1][0] = flash_f16_v2_kernel<NJ, 4, BF16, false>;
    v2[0][NJ - 1][1] = flash_f16_v2_kernel<NJ, 8, BF16, false>;
    v2[1][NJ - 1][0] = flash_f16_v2_kernel<NJ, 4, BF16, true>;
    v2[1][NJ - 1][1] = flash_f16_v2_kernel<NJ, 8, BF16, true>;
    v2_bytes[NJ - 1] = V2Smem<NJ>::BYTES;
    if constexpr (NJ > 1)
      this->template fill<NJ - 1> ();
  }

  TcKernels () { fill<MAX_NJ> (); }
};

bool
aligned_floats (const float *p, int ld, size_t batch_stride)
{
  return sam2_aligned16 (p) && ld % 4 == 0 && batch_stride % 4 == 0;
}

/* Above this many queries a v2 block takes 8 warps (128 queries) and prefetches; Hiera's
 * windows of 64 (tiny, stage 0) and 16 .. 64 pooled queries keep 4 warps, which would
 * otherwise leave half of them idle. */
constexpr int V2_WIDE_MIN_LEN_Q = 65;

/* The launch of one format's kernels for checked arguments (batch, len_q >= 1; not a decode
 * shape): v2 (when `v2` and K, V are float4-aligned) or v1. */
template <bool BF16>
int
launch_attention_16 (const Sam2CudaAttentionArgs &a, bool v2, cudaStream_t stream)
{
  static const TcKernels<BF16> k;
  const int nj = (a.head_dim + 15) / 16;
  const bool in16 = a.q16 != nullptr;
  /* Q is read per element (once per block), or by pairs of halves; K and V by 4 elements when
   * aligned (the caller checked the 16-bit inputs with sam2_cuda_attention_16_reads_16) */
  const bool vec = in16 || (a.head_dim % 4 == 0 && aligned_floats (a.k, a.k_ld, a.k_batch_stride)
                            && aligned_floats (a.v, a.v_ld, a.v_batch_stride));
  const size_t seqs = (size_t) a.batch * a.heads;
  if ((v2 && vec) || in16) {
    const bool wide = a.len_q >= V2_WIDE_MIN_LEN_Q;
    const int warps = wide ? 8 : 4;   /* 16 queries each */
    const int q_tiles = (a.len_q + 16 * warps - 1) / (16 * warps);
    const size_t blocks = seqs * q_tiles;
    if (blocks > 0x7fffffffu)
      return SAM2_CUDA_UNSUPPORTED;
    SAM2_LAUNCH ((unsigned) blocks, 32 * warps, k.v2_bytes[nj - 1], stream,
                 k.v2[in16][nj - 1][wide]) (a, q_tiles);
    return sam2_launch_status ();
  }
  const int q_tiles = (a.len_q + BQ - 1) / BQ;
  const size_t blocks = seqs * q_tiles;
  if (blocks > 0x7fffffffu)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH ((unsigned) blocks, THREADS, k.v1_bytes[nj - 1], stream,
               k.v1[nj - 1][vec]) (a, q_tiles);
  return sam2_launch_status ();
}

} /* namespace */

/* Each format's launch_attention_16, defined in its own translation unit. */
int sam2_attention_16_launch_f16 (const Sam2CudaAttentionArgs &a, bool v2, cudaStream_t stream);
int sam2_attention_16_launch_bf16 (const Sam2CudaAttentionArgs &a, bool v2, cudaStream_t stream);

#endif
