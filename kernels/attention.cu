/* attention.cu: out = softmax(scale q k^T) v per sequence and head (kernels.h), in FP32 without a
 * score matrix in memory.
 *
 * Two kernels, both FP32 SIMT with FP32 FMA (no tensor cores, no fast-math: expf, IEEE division):
 *
 * flash_kernel: a block of 256 threads owns 64 queries of one (sequence, head) and walks the keys
 *   in tiles of 64 with the online softmax (running row max m and sum l; the output rescaled by
 *   exp(m_old - m_new) when the max grows). Q, the K and V tiles and the tile's probabilities P
 *   live in shared memory; thread (ty = tid / 16, tx = tid % 16) owns rows 4 ty .. 4 ty + 3 of the
 *   tile, score columns tx + 16 j (j < 4) and output columns tx + 16 j (j < D_pad / 16), so a
 *   row's max and sum are reductions over the 16 lanes of a half-warp. head_dim is padded to
 *   D_pad = 16 NJ with zero columns in Q, K and V (they add 0 to every dot product).
 *   Used for Hiera's windows (len 16 .. 256, thousands of sequences), its global blocks (4096 x
 *   4096) and the image-to-token attention of the mask decoder (4096 queries, ~7 keys).
 *
 * decode_kernel: few queries against many keys (the decoder's token-to-image attention: ~7
 *   queries, 4096 keys, head_dim 16 or 32), where flash_kernel would run one block per head
 *   walking 64 key tiles in sequence. Here a block owns one query row of one head; each of its
 *   256 threads keeps its own online softmax over keys t, t + 256, ... with the output row in
 *   registers, a few keys per step (their loads in flight together), and the block merges the
 *   256 partial (m, l, o) at the end.
 *
 * Keys past len_k get the score -inf (probability exactly 0) and their V rows are loaded as 0, so
 * no garbage (or NaN in a caller's padding) reaches the output; queries past len_q compute on
 * zero rows and are not written. The first key tile always holds key 0, so the running max is
 * finite from the first tile on and exp(m_old - m_new) never sees -inf - (-inf). */
#include "common.cuh"

#include <atomic>
#include <math.h>

namespace {

constexpr int BQ = 64;          /* queries per block */
constexpr int BK = 64;          /* keys per tile */
constexpr int THREADS = 256;    /* 16 x 16: (ty, tx) */
constexpr int MAX_NJ = SAM2_CUDA_ATTENTION_MAX_HEAD_DIM / 16;

/* Shared-memory layout of flash_kernel, in floats. Q and K rows are padded by 4 floats: the S
 * loop reads K rows tx + 16 j as float4, and a row stride of 4 (mod 32 banks, or 20 for odd NJ)
 * puts 8 consecutive rows, a float4 phase, on 8 distinct bank quads. P rows likewise. V is read
 * one float per lane along a row, conflict-free without padding. Every offset is a multiple of
 * 4 floats (float4 alignment). */
template <int NJ>
struct FlashSmem {
  static constexpr int DP = 16 * NJ;
  static constexpr int QK_LD = DP + 4;
  static constexpr int V_LD = DP;
  static constexpr int P_LD = BK + 4;
  static constexpr int Q_OFF = 0;
  static constexpr int K_OFF = Q_OFF + BQ * QK_LD;
  static constexpr int V_OFF = K_OFF + BK * QK_LD;
  static constexpr int P_OFF = V_OFF + BK * V_LD;
  static constexpr int FLOATS = P_OFF + BQ * P_LD;
  static constexpr size_t BYTES = (size_t) FLOATS * sizeof (float);
};

/* dst (64, DP) with row stride dst_ld <- src rows (rows_valid, D) `src_ld` apart, zero elsewhere.
 * VEC: D, src_ld and src are multiples of 4 floats / 16 bytes, so a float4 of columns is either
 * all inside D or all past it. */
template <int NJ, bool VEC>
__device__ __forceinline__ void
load_tile (float *dst, int dst_ld, const float *src, size_t src_ld, int rows_valid, int D)
{
  constexpr int DP = 16 * NJ;
  if (VEC) {
    constexpr int C4 = DP / 4;
    for (int idx = threadIdx.x; idx < 64 * C4; idx += THREADS) {
      const int r = idx / C4, c = (idx % C4) * 4;
      float4 v = make_float4 (0.0f, 0.0f, 0.0f, 0.0f);
      if (r < rows_valid && c < D)
        v = *reinterpret_cast<const float4 *> (src + (size_t) r * src_ld + c);
      *reinterpret_cast<float4 *> (dst + r * dst_ld + c) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < 64 * DP; idx += THREADS) {
      const int r = idx / DP, c = idx % DP;
      float v = 0.0f;
      if (r < rows_valid && c < D)
        v = src[(size_t) r * src_ld + c];
      dst[r * dst_ld + c] = v;
    }
  }
}

__device__ __forceinline__ float
half_warp_max (float v)
{
  /* xor offsets below 16 stay inside the half-warp that shares the rows */
  for (int o = 8; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float
half_warp_sum (float v)
{
  for (int o = 8; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

/* grid: (q_tiles * heads * batch); block: 256; dynamic shared memory FlashSmem<NJ>::BYTES.
 * Two blocks per SM (128 registers a thread) while two tiles' shared memory fits (NJ <= 6:
 * 93 KB at head_dim 96); past that one block fits anyway, so the registers are not capped. */
template <int NJ, bool VEC>
__global__ void __launch_bounds__ (THREADS, NJ <= 6 ? 2 : 1)
flash_kernel (const Sam2CudaAttentionArgs a, int q_tiles)
{
  using L = FlashSmem<NJ>;
  constexpr int DP = L::DP;
  SAM2_DYNAMIC_SHARED (float4, smem4);
  float *smem = reinterpret_cast<float *> (smem4);
  float *Qs = smem + L::Q_OFF;   /* (BQ, QK_LD) */
  float *Ks = smem + L::K_OFF;   /* (BK, QK_LD) */
  float *Vs = smem + L::V_OFF;   /* (BK, V_LD) */
  float *Ps = smem + L::P_OFF;   /* (BQ, P_LD) */

  const int tile = (int) (blockIdx.x % (unsigned) q_tiles);
  const int rest = (int) (blockIdx.x / (unsigned) q_tiles);
  const int head = rest % a.heads, seq = rest / a.heads;
  const int D = a.head_dim;
  const int q0 = tile * BQ;
  const size_t hoff = (size_t) head * D;
  const float *qb = a.q + seq * a.q_batch_stride + (size_t) q0 * a.q_ld + hoff;
  const float *kb = a.k + seq * a.k_batch_stride + hoff;
  const float *vb = a.v + seq * a.v_batch_stride + hoff;

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  load_tile<NJ, VEC> (Qs, L::QK_LD, qb, a.q_ld, min (BQ, a.len_q - q0), D);

  float o[4][NJ];
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < NJ; j++)
      o[i][j] = 0.0f;
  }

  for (int k0 = 0; k0 < a.len_k; k0 += BK) {
    const int kv = min (BK, a.len_k - k0);
    /* the previous iteration ended with a barrier: nobody reads Ks, Vs or Ps any more */
    load_tile<NJ, VEC> (Ks, L::QK_LD, kb + (size_t) k0 * a.k_ld, a.k_ld, kv, D);
    load_tile<NJ, VEC> (Vs, L::V_LD, vb + (size_t) k0 * a.v_ld, a.v_ld, kv, D);
    __syncthreads ();

    /* S (4 x 4 per thread) = Q K^T over the padded head dimension */
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
        s[i][j] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < DP; d += 4) {
      float4 qv[4], kk[4];
#pragma unroll
      for (int i = 0; i < 4; i++)
        qv[i] = *reinterpret_cast<const float4 *> (Qs + (ty * 4 + i) * L::QK_LD + d);
#pragma unroll
      for (int j = 0; j < 4; j++)
        kk[j] = *reinterpret_cast<const float4 *> (Ks + (tx + 16 * j) * L::QK_LD + d);
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
          s[i][j] = fmaf (qv[i].x, kk[j].x, s[i][j]);
          s[i][j] = fmaf (qv[i].y, kk[j].y, s[i][j]);
          s[i][j] = fmaf (qv[i].z, kk[j].z, s[i][j]);
          s[i][j] = fmaf (qv[i].w, kk[j].w, s[i][j]);
        }
    }

    /* online softmax per row; P to shared memory for the P V product */
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float mt = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float v = (tx + 16 * j < kv) ? s[i][j] * a.scale : -INFINITY;
        s[i][j] = v;
        mt = fmaxf (mt, v);
      }
      const float mn = fmaxf (m[i], half_warp_max (mt));
      const float alpha = expf (m[i] - mn);     /* 0 on the first tile (m = -inf) */
      float ls = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float p = expf (s[i][j] - mn);    /* 0 for the masked keys */
        Ps[(ty * 4 + i) * L::P_LD + tx + 16 * j] = p;
        ls += p;
      }
      l[i] = l[i] * alpha + half_warp_sum (ls);
      m[i] = mn;
#pragma unroll
      for (int j = 0; j < NJ; j++)
        o[i][j] *= alpha;
    }
    __syncthreads ();

    /* O += P V; columns of P past kv are 0 and V rows past kv are 0, so the loop may stop at kv
     * rounded up to the float4 */
    const int cmax = (kv + 3) & ~3;
    for (int c = 0; c < cmax; c += 4) {
      float4 pv[4];
#pragma unroll
      for (int i = 0; i < 4; i++)
        pv[i] = *reinterpret_cast<const float4 *> (Ps + (ty * 4 + i) * L::P_LD + c);
#pragma unroll
      for (int j = 0; j < NJ; j++) {
        const float v0 = Vs[(c + 0) * L::V_LD + tx + 16 * j];
        const float v1 = Vs[(c + 1) * L::V_LD + tx + 16 * j];
        const float v2 = Vs[(c + 2) * L::V_LD + tx + 16 * j];
        const float v3 = Vs[(c + 3) * L::V_LD + tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; i++) {
          o[i][j] = fmaf (pv[i].x, v0, o[i][j]);
          o[i][j] = fmaf (pv[i].y, v1, o[i][j]);
          o[i][j] = fmaf (pv[i].z, v2, o[i][j]);
          o[i][j] = fmaf (pv[i].w, v3, o[i][j]);
        }
      }
    }
    __syncthreads ();
  }

  const size_t ob = seq * a.out_batch_stride + hoff;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = q0 + ty * 4 + i;
    if (r >= a.len_q)
      continue;
    const float inv = 1.0f / l[i];              /* l >= 1: the max key contributes exp(0) */
#pragma unroll
    for (int j = 0; j < NJ; j++) {
      const int d = tx + 16 * j;
      if (d < D)
        sam2_attention_store (a, ob + (size_t) r * a.out_ld + d, o[i][j] * inv);
    }
  }
}

/* ---- few queries, many keys ------------------------------------------------------------------ */

constexpr int DECODE_MAX_NJ = 2;          /* head_dim <= 32: the output row stays in registers */
constexpr int DECODE_MAX_LEN_Q = 16;
constexpr int DECODE_MIN_LEN_K = 4 * BK;  /* below, flash_kernel's key loop is short anyway */
constexpr int DECODE_KEYS_PER_STEP = 4;   /* keys a thread loads at once at head_dim <= 16 (half
                                           * as many at <= 32): 128 floats of K and V in flight */

/* Merge weight of a partial softmax with max `m` into the merged max `mm`; 0 for an empty part
 * (m = -inf), also when every part is empty (no -inf - -inf). */
__device__ __forceinline__ float
merge_weight (float m, float mm)
{
  return m == -INFINITY ? 0.0f : expf (m - mm);
}

/* grid: (len_q * heads * batch); block: 256. */
template <int NJ, bool VEC>
__global__ void __launch_bounds__ (THREADS)
decode_kernel (const Sam2CudaAttentionArgs a)
{
  constexpr int DP = 16 * NJ;
  constexpr int WARPS = THREADS / 32;
  SAM2_STATIC_SHARED (float, part, [WARPS][DP + 2]);    /* per warp: o (DP), m, l */

  const int row = (int) (blockIdx.x % (unsigned) a.len_q);
  const int rest = (int) (blockIdx.x / (unsigned) a.len_q);
  const int head = rest % a.heads, seq = rest / a.heads;
  const int D = a.head_dim;
  const size_t hoff = (size_t) head * D;
  const float *qr = a.q + seq * a.q_batch_stride + (size_t) row * a.q_ld + hoff;
  const float *kb = a.k + seq * a.k_batch_stride + hoff;
  const float *vb = a.v + seq * a.v_batch_stride + hoff;

  float q[DP], o[DP];
#pragma unroll
  for (int d = 0; d < DP; d++) {
    q[d] = d < D ? qr[d] : 0.0f;
    o[d] = 0.0f;
  }
  /* keys base, base + 256, ... G at a time: their K and V loads are issued together, then
   * the group's scores, one rescale of the running output by the group's max, and its terms (one
   * key at a time left the loop waiting on each key's loads: ~20 us for 4096 keys) */
  constexpr int G = DECODE_KEYS_PER_STEP / NJ;
  float m = -INFINITY, l = 0.0f;
  for (int base = threadIdx.x; base < a.len_k; base += THREADS * G) {
    float kv[G][DP], vv[G][DP];
    bool valid[G];   /* key base + g * THREADS exists: loaded, and scored below */
#pragma unroll
    for (int g = 0; g < G; g++) {
      const int key = base + g * THREADS;
      valid[g] = key < a.len_k;
      const float *kr = kb + (size_t) (valid[g] ? key : 0) * a.k_ld;
      const float *vr = vb + (size_t) (valid[g] ? key : 0) * a.v_ld;
      if (VEC) {
#pragma unroll
        for (int d = 0; d < DP; d += 4) {
          float4 k4 = make_float4 (0.0f, 0.0f, 0.0f, 0.0f), v4 = k4;
          if (valid[g] && d < D) {
            k4 = *reinterpret_cast<const float4 *> (kr + d);
            v4 = *reinterpret_cast<const float4 *> (vr + d);
          }
          kv[g][d] = k4.x, kv[g][d + 1] = k4.y, kv[g][d + 2] = k4.z, kv[g][d + 3] = k4.w;
          vv[g][d] = v4.x, vv[g][d + 1] = v4.y, vv[g][d + 2] = v4.z, vv[g][d + 3] = v4.w;
        }
      } else {
#pragma unroll
        for (int d = 0; d < DP; d++) {
          kv[g][d] = valid[g] && d < D ? kr[d] : 0.0f;
          vv[g][d] = valid[g] && d < D ? vr[d] : 0.0f;
        }
      }
    }
    float sc[G];
    float mg = m;   /* the group's new max: finite, key `base` is valid */
#pragma unroll
    for (int g = 0; g < G; g++) {
      float dot = 0.0f;
#pragma unroll
      for (int d = 0; d < DP; d++)
        dot = fmaf (q[d], kv[g][d], dot);
      sc[g] = valid[g] ? dot * a.scale : -INFINITY;
      mg = fmaxf (mg, sc[g]);
    }
    const float alpha = expf (m - mg);   /* 0 for the thread's first group, 1 if m held */
    l *= alpha;
#pragma unroll
    for (int d = 0; d < DP; d++)
      o[d] *= alpha;
    m = mg;
#pragma unroll
    for (int g = 0; g < G; g++) {
      const float p = expf (sc[g] - m);  /* 0 past len_k */
      l += p;
#pragma unroll
      for (int d = 0; d < DP; d++)
        o[d] = fmaf (p, vv[g][d], o[d]);
    }
  }

  /* merge the 32 partials of the warp, then the warps' through shared memory */
  for (int off = 16; off > 0; off >>= 1) {
    const float m2 = __shfl_xor_sync (0xffffffffu, m, off);
    const float l2 = __shfl_xor_sync (0xffffffffu, l, off);
    const float mm = fmaxf (m, m2);
    const float w1 = merge_weight (m, mm), w2 = merge_weight (m2, mm);
    l = l * w1 + l2 * w2;
#pragma unroll
    for (int d = 0; d < DP; d++) {
      const float o2 = __shfl_xor_sync (0xffffffffu, o[d], off);
      o[d] = o[d] * w1 + o2 * w2;
    }
    m = mm;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
#pragma unroll
    for (int d = 0; d < DP; d++)
      part[warp][d] = o[d];
    part[warp][DP] = m;
    part[warp][DP + 1] = l;
  }
  __syncthreads ();
  if (warp == 0 && lane < D) {
    float mm = -INFINITY;
    for (int w = 0; w < WARPS; w++)
      mm = fmaxf (mm, part[w][DP]);
    float lsum = 0.0f, osum = 0.0f;
    for (int w = 0; w < WARPS; w++) {
      const float wt = merge_weight (part[w][DP], mm);
      lsum += part[w][DP + 1] * wt;
      osum += part[w][lane] * wt;
    }
    sam2_attention_store (a, seq * a.out_batch_stride + (size_t) row * a.out_ld + hoff + lane,
                          osum / lsum);
  }
}

/* ---- launch ---------------------------------------------------------------------------------- */

typedef void (*FlashFn) (const Sam2CudaAttentionArgs, int);
typedef void (*DecodeFn) (const Sam2CudaAttentionArgs);

template <int NJ>
struct Table {
  static void fill (FlashFn (*flash)[2], size_t *bytes)
  {
    flash[NJ - 1][0] = flash_kernel<NJ, false>;
    flash[NJ - 1][1] = flash_kernel<NJ, true>;
    bytes[NJ - 1] = FlashSmem<NJ>::BYTES;
    Table<NJ - 1>::fill (flash, bytes);
  }
};
template <>
struct Table<0> {
  static void fill (FlashFn (*)[2], size_t *) {}
};

struct Kernels {
  FlashFn flash[MAX_NJ][2];
  size_t bytes[MAX_NJ];
  DecodeFn decode[DECODE_MAX_NJ][2];
  Kernels ()
  {
    Table<MAX_NJ>::fill (flash, bytes);
    decode[0][0] = decode_kernel<1, false>;
    decode[0][1] = decode_kernel<1, true>;
    decode[1][0] = decode_kernel<2, false>;
    decode[1][1] = decode_kernel<2, true>;
  }
};

const Kernels &
kernels ()
{
  static const Kernels k;
  return k;
}

/* Devices whose shared-memory limits were raised (bit per device ordinal below 64). */
std::atomic<unsigned long long> prepared_devices (0);

bool
aligned_floats (const float *p, int ld, size_t batch_stride)
{
  return sam2_aligned16 (p) && ld % 4 == 0 && batch_stride % 4 == 0;
}

} /* namespace */

bool
sam2_cuda_attention_decode_shape (const Sam2CudaAttentionArgs &a)
{
  return (a.head_dim + 15) / 16 <= DECODE_MAX_NJ && a.len_q <= DECODE_MAX_LEN_Q
         && a.len_k >= DECODE_MIN_LEN_K;
}

int
sam2_cuda_attention_prepare (void)
{
  int dev = 0;
  if (cudaGetDevice (&dev) != cudaSuccess)
    return SAM2_CUDA_DEVICE;
  const unsigned long long bit = dev < 64 ? 1ull << dev : 0ull;
  if (bit != 0 && (prepared_devices.load () & bit) != 0)
    return SAM2_CUDA_OK;
  const Kernels &k = kernels ();
  for (int nj = 0; nj < MAX_NJ; nj++)
    for (int v = 0; v < 2; v++)
      if (cudaFuncSetAttribute ((const void *) k.flash[nj][v],
                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int) k.bytes[nj])
          != cudaSuccess) {
        (void) cudaGetLastError ();
        return SAM2_CUDA_DEVICE;
      }
  prepared_devices.fetch_or (bit);
  return SAM2_CUDA_OK;
}

extern "C" int
sam2_cuda_attention (const Sam2CudaAttentionArgs *args, cudaStream_t stream)
{
  if (args == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  const Sam2CudaAttentionArgs a = *args;
  if (!sam2_attention_args_valid (a) || a.q == NULL || a.k == NULL || a.v == NULL
      || a.q16 != NULL)
    return SAM2_CUDA_UNSUPPORTED;
  if (a.batch == 0 || a.len_q == 0)
    return SAM2_CUDA_OK;
  int status = sam2_cuda_attention_prepare ();
  if (status != SAM2_CUDA_OK)
    return status;

  const int nj = (a.head_dim + 15) / 16;
  const bool vec = a.head_dim % 4 == 0 && aligned_floats (a.q, a.q_ld, a.q_batch_stride)
                   && aligned_floats (a.k, a.k_ld, a.k_batch_stride)
                   && aligned_floats (a.v, a.v_ld, a.v_batch_stride);
  const Kernels &k = kernels ();
  const size_t seqs = (size_t) a.batch * a.heads;
  if (sam2_cuda_attention_decode_shape (a)) {
    const size_t blocks = seqs * a.len_q;
    if (blocks > 0x7fffffffu)
      return SAM2_CUDA_UNSUPPORTED;
    SAM2_LAUNCH ((unsigned) blocks, THREADS, 0, stream, k.decode[nj - 1][vec]) (a);
    return sam2_launch_status ();
  }
  const int q_tiles = (a.len_q + BQ - 1) / BQ;
  const size_t blocks = seqs * q_tiles;
  if (blocks > 0x7fffffffu)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH ((unsigned) blocks, THREADS, k.bytes[nj - 1], stream,
               k.flash[nj - 1][vec]) (a, q_tiles);
  return sam2_launch_status ();
}
