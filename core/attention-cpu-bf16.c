/* attention-cpu-bf16.c: the fused attention of attention-cpu.c with BF16 operands, for CPUs with
 * AVX-512 BF16 (the CPU backend's precision bf16; see attention-cpu.h).
 *
 * Why: vdpbf16ps multiplies 32 pairs of bfloat16 into 16 float accumulators per instruction,
 * twice the products of an FP32 FMA of the same width (measured on the Zen 4 development machine:
 * ~115 against ~46 GMAC/s per core), and attention is the same work in the float and the W4A8
 * model, so the W4A8 encoder's speed-up over FP32 stops where attention's does.
 *
 * Numerics (those of the CUDA backend's BF16 precision): q, k, v and the softmax weights p are
 * rounded to bfloat16 (round to nearest even); both products accumulate in FP32; the scale, the
 * running max, exp and the row sums are FP32 (the sums of the unrounded p, in double across key
 * blocks). The result is within a few bfloat16 roundings of the float attention.
 *
 * Layouts (bf16 pairs as uint32, low half first): per (sequence, head), with kpad = len_k rounded
 * up to 16, Dq = head_dim rounded up to 2 and Dv = head_dim rounded up to 16 (zero padded, so
 * any head_dim runs):
 *   keys    panels of 16 keys, each Dq / 2 rows of 16 pairs: key j's (d, d + 1) in lane j, the
 *           vdpbf16ps operand against a broadcast pair of one query;
 *   values  kpad / 2 rows of Dv pairs: keys (2 r, 2 r + 1) of channel c in pair c, the operand
 *           against a broadcast pair of p. */
#include "attention-cpu.h"
#include "bf16-x86.h"
#include "simd-exp-x86.h"

#include <string.h>

#define MR 6          /* query rows per register tile */
#define KP 16         /* keys per panel (one vector of 16 lanes) */
#define QK_PANELS 4   /* panels per score tile: 6 x 64 scores in 24 accumulators */
#define PV_VECS 3     /* channel vectors per p v tile: 6 x 48 outputs in 18 accumulators */
#define NK SAM2_FLASH_KEYS

G_STATIC_ASSERT (NK % (KP * QK_PANELS) == 0);

static inline int
round_up (int x, int m)
{
  return (x + m - 1) / m * m;
}

static size_t
packed_floats (const Sam2AttentionArgs *a)
{
  /* (kpad, Dq) + (kpad, Dv) bfloat16, two per float */
  return (size_t) round_up (a->len_k, KP) * (round_up (a->head_dim, 2) + round_up (a->head_dim, 16))
         / 2;
}

static size_t
task_floats (const Sam2AttentionArgs *a)
{
  const size_t rows = MIN (a->len_q, SAM2_FLASH_ROWS);
  const size_t dq = round_up (a->head_dim, 2), dv = round_up (a->head_dim, 16);
  /* q in bf16, output accumulators, one tile of scores, its p in bf16, row max, row sums
   * (double), alignment slack */
  return rows * dq / 2 + rows * dv + (size_t) MR * NK + (size_t) MR * NK / 2 + rows + 2 * rows
         + 32;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BF16_X86 1
#define TARGET SAM2_BF16_TARGET ",fma"
#define AVX512 __attribute__ ((target (TARGET)))
#define INLINE_AVX512 static inline __attribute__ ((always_inline, target (TARGET)))

/* s (rows, 16 np) at ld `lds` = scale q (rows, Dq) k^T over np panels of packed keys; q as bf16
 * pairs, dq2 = Dq / 2 per row. */
INLINE_AVX512 void
score_tile (const int rows, const int np, const uint32_t *q, int dq2, const uint32_t *kp,
            __m512 scale, float *s, int lds)
{
  const size_t panel = (size_t) dq2 * KP;
  __m512 acc[MR][QK_PANELS];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int p = 0; p < QK_PANELS; p++)
      if (i < rows && p < np)
        acc[i][p] = _mm512_setzero_ps ();
  for (int t = 0; t < dq2; t++) {
    __m512bh b[QK_PANELS];
#pragma GCC unroll 4
    for (int p = 0; p < QK_PANELS; p++)
      if (p < np)
        b[p] = (__m512bh) _mm512_loadu_si512 (kp + p * panel + (size_t) t * KP);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows) {
        const __m512bh x = (__m512bh) _mm512_set1_epi32 ((int) q[(size_t) i * dq2 + t]);
#pragma GCC unroll 4
        for (int p = 0; p < QK_PANELS; p++)
          if (p < np)
            acc[i][p] = _mm512_dpbf16_ps (acc[i][p], x, b[p]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int p = 0; p < QK_PANELS; p++)
      if (i < rows && p < np)
        _mm512_storeu_ps (s + (size_t) i * lds + p * KP, _mm512_mul_ps (acc[i][p], scale));
}

/* o (rows, 16 nv) at ld `ldo` += p (rows, 2 npairs) as bf16 pairs at ld NK / 2 times `npairs`
 * rows of packed value pairs (ld dv). */
INLINE_AVX512 void
pv_tile (const int rows, const int nv, const uint32_t *p, int npairs, const uint32_t *v, int dv,
         float *o, int ldo)
{
  __m512 acc[MR][PV_VECS];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
    for (int z = 0; z < PV_VECS; z++)
      if (i < rows && z < nv)
        acc[i][z] = _mm512_loadu_ps (o + (size_t) i * ldo + z * 16);
  for (int r = 0; r < npairs; r++) {
    __m512bh b[PV_VECS];
#pragma GCC unroll 3
    for (int z = 0; z < PV_VECS; z++)
      if (z < nv)
        b[z] = (__m512bh) _mm512_loadu_si512 (v + (size_t) r * dv + z * 16);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows) {
        const __m512bh x = (__m512bh) _mm512_set1_epi32 ((int) p[(size_t) i * (NK / 2) + r]);
#pragma GCC unroll 3
        for (int z = 0; z < PV_VECS; z++)
          if (z < nv)
            acc[i][z] = _mm512_dpbf16_ps (acc[i][z], x, b[z]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
    for (int z = 0; z < PV_VECS; z++)
      if (i < rows && z < nv)
        _mm512_storeu_ps (o + (size_t) i * ldo + z * 16, acc[i][z]);
}

/* The score tiles of `rows` queries against nk keys (panels of kp), np panels at a time. */
INLINE_AVX512 void
score_rows (const int rows, const uint32_t *q, int dq2, const uint32_t *kp, int nk, __m512 scale,
            float *s)
{
  const int panels = (nk + KP - 1) / KP;
  const size_t panel = (size_t) dq2 * KP;
  int p0 = 0;
  for (; p0 + QK_PANELS <= panels; p0 += QK_PANELS)
    score_tile (rows, QK_PANELS, q, dq2, kp + p0 * panel, scale, s + p0 * KP, NK);
  switch (panels - p0) {
  case 3:
    score_tile (rows, 3, q, dq2, kp + p0 * panel, scale, s + p0 * KP, NK);
    break;
  case 2:
    score_tile (rows, 2, q, dq2, kp + p0 * panel, scale, s + p0 * KP, NK);
    break;
  case 1:
    score_tile (rows, 1, q, dq2, kp + p0 * panel, scale, s + p0 * KP, NK);
    break;
  default:
    break;
  }
}

/* o (rows, Dv) += p v over npairs key pairs, PV_VECS channel vectors at a time. */
INLINE_AVX512 void
pv_rows (const int rows, const uint32_t *p, int npairs, const uint32_t *v, int dv, float *o)
{
  int c = 0;
  for (; c + 16 * PV_VECS <= dv; c += 16 * PV_VECS)
    pv_tile (rows, PV_VECS, p, npairs, v + c, dv, o + c, dv);
  switch ((dv - c) / 16) {
  case 2:
    pv_tile (rows, 2, p, npairs, v + c, dv, o + c, dv);
    break;
  case 1:
    pv_tile (rows, 1, p, npairs, v + c, dv, o + c, dv);
    break;
  default:
    break;
  }
}

/* One register tile of `rows` queries against one key block of nk keys: scores, the online
 * softmax update of the rows' max, sum and output, and o += p v. */
INLINE_AVX512 void
flash_rows (const int rows, const uint32_t *q, int dq2, const uint32_t *kp, int nk,
            const uint32_t *vp, int dv, __m512 scale, float *s, uint32_t *pb, float *m, double *l,
            float *o)
{
  score_rows (rows, q, dq2, kp, nk, scale, s);
  for (int i = 0; i < rows; i++) {
    float *r = s + (size_t) i * NK;
    uint16_t *pr = (uint16_t *) (pb + (size_t) i * (NK / 2));
    __m512 vmx = _mm512_set1_ps (m[i]);
    for (int j = 0; j < nk; j += 16)
      vmx = _mm512_mask_max_ps (vmx, sam2_first_lanes16 (nk - j), vmx, _mm512_loadu_ps (r + j));
    const float mx = _mm512_reduce_max_ps (vmx);
    const __m512 vm = _mm512_set1_ps (mx);
    __m512 vsum = _mm512_setzero_ps ();
    /* p of the lanes past nk is 0, so the odd key of a last pair adds nothing */
    for (int j = 0; j < nk; j += 16) {
      const __mmask16 live = sam2_first_lanes16 (nk - j);
      const __m512 s16 = _mm512_sub_ps (_mm512_loadu_ps (r + j), vm);
      const __m512 e = _mm512_maskz_mov_ps (live, sam2_exp16_avx512 (s16));
      vsum = _mm512_add_ps (vsum, e);
      _mm256_storeu_si256 ((__m256i *) (pr + j), (__m256i) _mm512_cvtneps_pbh (e));
    }
    if (mx != m[i]) { /* the running max grew: rescale what was summed under the old one */
      const __m512 vc = _mm512_set1_ps (sam2_exp16_avx512 (_mm512_set1_ps (m[i] - mx))[0]);
      float *orow = o + (size_t) i * dv;
      for (int d = 0; d < dv; d += 16)
        _mm512_storeu_ps (orow + d, _mm512_mul_ps (_mm512_loadu_ps (orow + d), vc));
      l[i] *= vc[0];
      m[i] = mx;
    }
    l[i] += _mm512_reduce_add_ps (vsum);
  }
  pv_rows (rows, pb, (nk + 1) / 2, vp, dv, o);
}

static AVX512 void
pack_bf16 (const Sam2AttentionArgs *a, int seq, int head, float *packed)
{
  const int D = a->head_dim, dq2 = round_up (D, 2) / 2, dv = round_up (D, 16);
  const int kpad = round_up (a->len_k, KP);
  const float *k = a->k + seq * a->k_batch_stride + (size_t) head * D;
  const float *v = a->v + seq * a->v_batch_stride + (size_t) head * D;
  uint32_t *kp = (uint32_t *) packed, *vp = kp + (size_t) kpad * dq2;

  /* keys: 8 pairs of a key's row at a time, scattered to lane j of the panel's rows */
  for (int j = 0; j < kpad; j++) {
    uint32_t *dst = kp + (size_t) (j / KP) * dq2 * KP + j % KP;
    const float *kj = k + (size_t) j * a->k_ld;
    for (int t0 = 0; t0 < dq2; t0 += 8) {
      uint32_t pairs[8];
      const __m256i packed = j < a->len_k ? sam2_to_bf16x16 (kj + 2 * t0, D - 2 * t0)
                                          : _mm256_setzero_si256 ();
      _mm256_storeu_si256 ((__m256i *) pairs, packed);
      for (int t = t0; t < MIN (dq2, t0 + 8); t++)
        dst[(size_t) t * KP] = pairs[t - t0];
    }
  }
  /* values: keys 2r and 2r + 1 interleaved channel by channel */
  for (int r = 0; r < kpad / 2; r++) {
    const int j = 2 * r;
    const float *v0 = v + (size_t) j * a->v_ld, *v1 = v0 + a->v_ld;
    uint32_t *dst = vp + (size_t) r * dv;
    for (int c = 0; c < dv; c += 16) {
      const int n = MAX (0, MIN (16, D - c));
      const __m256i lo = j < a->len_k ? sam2_to_bf16x16 (v0 + c, n) : _mm256_setzero_si256 ();
      const __m256i hi = j + 1 < a->len_k ? sam2_to_bf16x16 (v1 + c, n) : _mm256_setzero_si256 ();
      /* unpack interleaves within 128-bit lanes: pairs 0-3 and 8-11, then 4-7 and 12-15 */
      const __m256i a0 = _mm256_unpacklo_epi16 (lo, hi), a1 = _mm256_unpackhi_epi16 (lo, hi);
      _mm256_storeu_si256 ((__m256i *) (dst + c), _mm256_permute2x128_si256 (a0, a1, 0x20));
      _mm256_storeu_si256 ((__m256i *) (dst + c + 8), _mm256_permute2x128_si256 (a0, a1, 0x31));
    }
  }
}

static AVX512 void
flash_task_bf16 (const Sam2AttentionArgs *a, int seq, int head, int q0, int nq,
                 const float *packed, float *scratch)
{
  const int D = a->head_dim, dq2 = round_up (D, 2) / 2, dv = round_up (D, 16);
  const int kpad = round_up (a->len_k, KP);
  const size_t hoff = (size_t) head * D;
  const float *q = a->q + seq * a->q_batch_stride + (size_t) q0 * a->q_ld + hoff;
  float *out = a->out + seq * a->out_batch_stride + (size_t) q0 * a->out_ld + hoff;
  const uint32_t *kp = (const uint32_t *) packed, *vp = kp + (size_t) kpad * dq2;

  uint32_t *qb = (uint32_t *) scratch;                     /* (nq, dq2) bf16 pairs */
  float *o = scratch + (size_t) nq * dq2;                  /* (nq, dv) */
  float *s = o + (size_t) nq * dv;                         /* (MR, NK) */
  uint32_t *pb = (uint32_t *) (s + (size_t) MR * NK);      /* (MR, NK / 2) bf16 pairs */
  float *m = (float *) (pb + (size_t) MR * NK / 2);        /* (nq) */
  double *l = (double *) (((uintptr_t) (m + nq) + 7) & ~(uintptr_t) 7);

  for (int i = 0; i < nq; i++)
    for (int d = 0; d < 2 * dq2; d += 16)
      _mm256_mask_storeu_epi16 ((uint16_t *) (qb + (size_t) i * dq2) + d,
                                (__mmask16) sam2_first_lanes16 (2 * dq2 - d),
                                sam2_to_bf16x16 (q + (size_t) i * a->q_ld + d, D - d));
  memset (o, 0, (size_t) nq * dv * sizeof (float));
  for (int i = 0; i < nq; i++) {
    m[i] = -1e30f; /* below any score; exp of (it - a score) is ~1e-38, nothing against l = 0 */
    l[i] = 0.0;
  }

  const __m512 vscale = _mm512_set1_ps (a->scale);
  for (int k0 = 0; k0 < a->len_k; k0 += NK) {
    const int nk = MIN (NK, a->len_k - k0);
    const uint32_t *kb = kp + (size_t) k0 * dq2, *vb = vp + (size_t) (k0 / 2) * dv;
    int i0 = 0;
    for (; i0 + MR <= nq; i0 += MR)
      flash_rows (MR, qb + (size_t) i0 * dq2, dq2, kb, nk, vb, dv, vscale, s, pb, m + i0, l + i0,
                  o + (size_t) i0 * dv);
    switch (nq - i0) {
#define TAIL(r)                                                                                  \
  case r:                                                                                        \
    flash_rows (r, qb + (size_t) i0 * dq2, dq2, kb, nk, vb, dv, vscale, s, pb, m + i0, l + i0,   \
                o + (size_t) i0 * dv);                                                           \
    break;
      TAIL (1) TAIL (2) TAIL (3) TAIL (4) TAIL (5)
#undef TAIL
    default:
      break;
    }
  }

  for (int i = 0; i < nq; i++) {
    const __m512 inv = _mm512_set1_ps ((float) (1.0 / l[i]));
    for (int d = 0; d < D; d += 16)
      _mm512_mask_storeu_ps (out + (size_t) i * a->out_ld + d, sam2_first_lanes16 (D - d),
                             _mm512_mul_ps (_mm512_loadu_ps (o + (size_t) i * dv + d), inv));
  }
}
#endif

gboolean
sam2_cpu_flash_bf16_available (void)
{
#ifdef BF16_X86
  return __builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw")
         && __builtin_cpu_supports ("avx512vl") && __builtin_cpu_supports ("avx512bf16");
#else
  return FALSE;
#endif
}

const Sam2FlashKernel *
sam2_cpu_flash_bf16 (void)
{
#ifdef BF16_X86
  static const Sam2FlashKernel kernel = { packed_floats, task_floats, pack_bf16,
                                          flash_task_bf16 };
  return &kernel;
#else
  return NULL;
#endif
}
