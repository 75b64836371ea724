/* attention-f16.cu: sam2_cuda_attention_f16 (kernels.h), the tensor-core variant of the flash
 * attention: Q, K, V and the probabilities P rounded to FP16 as mma.sync.m16n8k16 operands, with
 * FP32 accumulation, FP32 online softmax (max, exp, sums) and an FP32 output.
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
 * Row stride paddings of 8 halves make the 8 rows g of a fragment load hit distinct banks. */
#include "common.cuh"

#include <cuda_fp16.h>
#include <math.h>

namespace {

constexpr int BQ = 64, BK = 64, WARPS = 4, THREADS = 32 * WARPS;
constexpr int VT_LD = BK + 8;   /* halves */

template <int NJ>
struct TcSmem {
  static constexpr int DP = 16 * NJ;
  static constexpr int K_LD = DP + 8;                       /* halves */
  static constexpr size_t K_HALVES = (size_t) BK * K_LD;
  static constexpr size_t VT_HALVES = (size_t) DP * VT_LD;
  static constexpr size_t BYTES = (K_HALVES + VT_HALVES) * sizeof (__half);
};

__device__ __forceinline__ uint32_t
pack_half2 (float lo, float hi)
{
  const __half2 h = __floats2half2_rn (lo, hi);   /* .x (low 16 bits) = lo */
  return *reinterpret_cast<const uint32_t *> (&h);
}

__device__ __forceinline__ void
mma_16816 (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

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
template <int NJ, bool VEC>
__global__ void __launch_bounds__ (THREADS)
flash_f16_kernel (const Sam2CudaAttentionArgs a, int q_tiles)
{
  using L = TcSmem<NJ>;
  constexpr int DP = L::DP;
  constexpr int ND = DP / 8;     /* 8-column blocks of the output */
  extern __shared__ float4 smem4[];
  __half *Ks = reinterpret_cast<__half *> (smem4);   /* (BK, K_LD) */
  __half *Vt = Ks + L::K_HALVES;                      /* (DP, VT_LD) */

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
      qf[kc][0] = pack_half2 (in0 && d0 < D ? r0[d0] : 0.0f, in0 && d0 + 1 < D ? r0[d0 + 1] : 0.0f);
      qf[kc][1] = pack_half2 (in1 && d0 < D ? r1[d0] : 0.0f, in1 && d0 + 1 < D ? r1[d0 + 1] : 0.0f);
      qf[kc][2] = pack_half2 (in0 && d1 < D ? r0[d1] : 0.0f, in0 && d1 + 1 < D ? r0[d1 + 1] : 0.0f);
      qf[kc][3] = pack_half2 (in1 && d1 < D ? r1[d1] : 0.0f, in1 && d1 + 1 < D ? r1[d1 + 1] : 0.0f);
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
        kh.x = pack_half2 (kx.x, kx.y);
        kh.y = pack_half2 (kx.z, kx.w);
        *reinterpret_cast<uint2 *> (Ks + r * L::K_LD + c) = kh;
        Vt[(c + 0) * VT_LD + r] = __float2half_rn (vx.x);
        Vt[(c + 1) * VT_LD + r] = __float2half_rn (vx.y);
        Vt[(c + 2) * VT_LD + r] = __float2half_rn (vx.z);
        Vt[(c + 3) * VT_LD + r] = __float2half_rn (vx.w);
      }
    } else {
      for (int idx = threadIdx.x; idx < BK * DP; idx += THREADS) {
        const int r = idx / DP, c = idx % DP;
        float kx = 0.0f, vx = 0.0f;
        if (r < kv && c < D) {
          kx = kb[(size_t) (k0 + r) * a.k_ld + c];
          vx = vb[(size_t) (k0 + r) * a.v_ld + c];
        }
        Ks[r * L::K_LD + c] = __float2half_rn (kx);
        Vt[c * VT_LD + r] = __float2half_rn (vx);
      }
    }
    __syncthreads ();

    /* S (16 rows x 64 keys per warp) = Q K^T, 8 key blocks of 8 */
    float s[8][4];
#pragma unroll
    for (int nb = 0; nb < 8; nb++) {
      s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
      const __half *kr = Ks + (nb * 8 + g) * L::K_LD + 2 * t;
#pragma unroll
      for (int kc = 0; kc < NJ; kc++) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t *> (kr + kc * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t *> (kr + kc * 16 + 8);
        mma_16816 (s[nb], qf[kc], b0, b1);
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
      pa[0] = pack_half2 (s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack_half2 (s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack_half2 (s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack_half2 (s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int nd = 0; nd < ND; nd++) {
        const __half *vr = Vt + (nd * 8 + g) * VT_LD + kc * 16 + 2 * t;
        const uint32_t b0 = *reinterpret_cast<const uint32_t *> (vr);
        const uint32_t b1 = *reinterpret_cast<const uint32_t *> (vr + 8);
        mma_16816 (o[nd], pa, b0, b1);
      }
    }
    __syncthreads ();
  }

  /* l >= 1 once the quad's parts are summed (the row max contributes exp(0)) */
  const float inv0 = 1.0f / quad_sum (l0), inv1 = 1.0f / quad_sum (l1);
  float *ob = a.out + seq * a.out_batch_stride + hoff;
#pragma unroll
  for (int nd = 0; nd < ND; nd++) {
    const int d = nd * 8 + 2 * t;
    if (row0 < a.len_q) {
      if (d < D)
        ob[(size_t) row0 * a.out_ld + d] = o[nd][0] * inv0;
      if (d + 1 < D)
        ob[(size_t) row0 * a.out_ld + d + 1] = o[nd][1] * inv0;
    }
    if (row1 < a.len_q) {
      if (d < D)
        ob[(size_t) row1 * a.out_ld + d] = o[nd][2] * inv1;
      if (d + 1 < D)
        ob[(size_t) row1 * a.out_ld + d + 1] = o[nd][3] * inv1;
    }
  }
}

typedef void (*TcFn) (const Sam2CudaAttentionArgs, int);

template <int NJ>
void
fill (TcFn (*fn)[2], size_t *bytes)
{
  fn[NJ - 1][0] = flash_f16_kernel<NJ, false>;
  fn[NJ - 1][1] = flash_f16_kernel<NJ, true>;
  bytes[NJ - 1] = TcSmem<NJ>::BYTES;
  if constexpr (NJ > 1)
    fill<NJ - 1> (fn, bytes);
}

constexpr int MAX_NJ = SAM2_CUDA_ATTENTION_MAX_HEAD_DIM / 16;

struct TcKernels {
  TcFn fn[MAX_NJ][2];
  size_t bytes[MAX_NJ];
  TcKernels () { fill<MAX_NJ> (fn, bytes); }
};

bool
aligned_floats (const float *p, int ld, size_t batch_stride)
{
  return sam2_aligned16 (p) && ld % 4 == 0 && batch_stride % 4 == 0;
}

} /* namespace */

extern "C" int
sam2_cuda_attention_f16 (const Sam2CudaAttentionArgs *args, cudaStream_t stream)
{
  if (args == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  const Sam2CudaAttentionArgs a = *args;
  if (a.batch < 0 || a.heads < 1 || a.head_dim < 1
      || a.head_dim > SAM2_CUDA_ATTENTION_MAX_HEAD_DIM || a.len_q < 0 || a.len_k < 1
      || a.q == NULL || a.k == NULL || a.v == NULL || a.out == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  const int width = a.heads * a.head_dim;
  if (a.q_ld < width || a.k_ld < width || a.v_ld < width || a.out_ld < width)
    return SAM2_CUDA_UNSUPPORTED;
  if (a.batch == 0 || a.len_q == 0)
    return SAM2_CUDA_OK;
  static const TcKernels k;
  const int nj = (a.head_dim + 15) / 16;
  /* Q is read per element (once per block); K and V by float4 when aligned */
  const bool vec = a.head_dim % 4 == 0 && aligned_floats (a.k, a.k_ld, a.k_batch_stride)
                   && aligned_floats (a.v, a.v_ld, a.v_batch_stride);
  const int q_tiles = (a.len_q + BQ - 1) / BQ;
  const size_t blocks = (size_t) a.batch * a.heads * q_tiles;
  if (blocks > 0x7fffffffu)
    return SAM2_CUDA_UNSUPPORTED;
  k.fn[nj - 1][vec]<<<(unsigned) blocks, THREADS, k.bytes[nj - 1], stream>>> (a, q_tiles);
  return sam2_launch_status ();
}
