/* attention-cpu.c: fused attention with an online softmax for AVX2 + FMA (see attention-cpu.h).
 *
 * Why not sgemm: the encoder's global blocks (4096 x 4096 keys, head_dim 96) wrote a 128 x 4096
 * score block per call (2 MB, out of L2), read it back for the softmax and again for p v, and
 * oneDNN repacked the same keys for each of the 32 query blocks of a head; the windowed blocks
 * made thousands of 16- to 64-wide GEMM calls whose setup outweighed their work. Here the keys of
 * a head are packed once, a 6-query x 16-key tile of scores is a register block of 12 FMA
 * accumulators, and the scores of 6 queries against 512 keys (12 KB) never leave L1.
 *
 * Sums are reordered against the sgemm path (per key block, then across blocks, rescaled by the
 * running max): the same rounding magnitudes, not the same bits. */
#include "attention-cpu.h"
#include "simd-exp-x86.h"
#include "simd-math.h"

#include <math.h>
#include <string.h>

#define MR 6   /* query rows per register tile */
#define KP 16  /* keys per packed panel (two vectors) */
#define NK SAM2_FLASH_KEYS

G_STATIC_ASSERT (NK % KP == 0);

static size_t
packed_floats (const Sam2AttentionArgs *a)
{
  return 2 * (size_t) (a->len_k + KP - 1) / KP * KP * a->head_dim;
}

static size_t
task_floats (const Sam2AttentionArgs *a)
{
  const size_t rows = MIN (a->len_q, SAM2_FLASH_ROWS);
  /* scaled q, output accumulators, one tile of scores, row max, row sums (double) */
  return 2 * rows * a->head_dim + (size_t) MR * NK + rows + 2 * rows + 16;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FLASH_X86 1
#define AVX2 __attribute__ ((target ("avx2,fma")))
#define INLINE_AVX2 static inline __attribute__ ((always_inline, target ("avx2,fma")))

INLINE_AVX2 float
hmax8 (__m256 v)
{
  __m128 m = _mm_max_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  m = _mm_max_ps (m, _mm_movehl_ps (m, m));
  m = _mm_max_ss (m, _mm_movehdup_ps (m));
  return _mm_cvtss_f32 (m);
}

INLINE_AVX2 float
hsum8 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

/* s (rows, 16) at ld `lds` = q (rows, D), contiguous, times one panel of packed keys. */
INLINE_AVX2 void
score_tile (const int rows, const float *q, const float *kp, int D, __m256 scale, float *s,
            int lds)
{
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
    if (i < rows)
      acc[i][0] = acc[i][1] = _mm256_setzero_ps ();
  for (int d = 0; d < D; d++) {
    const __m256 b0 = _mm256_loadu_ps (kp + d * KP), b1 = _mm256_loadu_ps (kp + d * KP + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows) {
        const __m256 x = _mm256_broadcast_ss (q + (size_t) i * D + d);
        acc[i][0] = _mm256_fmadd_ps (x, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps (x, b1, acc[i][1]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++)
    if (i < rows) {
      _mm256_storeu_ps (s + (size_t) i * lds, _mm256_mul_ps (acc[i][0], scale));
      _mm256_storeu_ps (s + (size_t) i * lds + 8, _mm256_mul_ps (acc[i][1], scale));
    }
}

/* o (rows, D) += p (rows, nk) at ld NK times rows [k0, k0 + nk) of v packed in column chunks of
 * 16 (8 for a last chunk), chunk c at v + 16 c kpad; D a multiple of 8. */
INLINE_AVX2 void
pv_tile (const int rows, const float *p, int k0, int nk, const float *v, size_t kpad, float *o,
         int D)
{
  int dc = 0;
  for (; dc + 16 <= D; dc += 16) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows) {
        acc[i][0] = _mm256_loadu_ps (o + (size_t) i * D + dc);
        acc[i][1] = _mm256_loadu_ps (o + (size_t) i * D + dc + 8);
      }
    const float *vj = v + dc * kpad + (size_t) k0 * 16;
    for (int j = 0; j < nk; j++, vj += 16) {
      const __m256 b0 = _mm256_loadu_ps (vj), b1 = _mm256_loadu_ps (vj + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++)
        if (i < rows) {
          const __m256 x = _mm256_broadcast_ss (p + (size_t) i * NK + j);
          acc[i][0] = _mm256_fmadd_ps (x, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps (x, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows) {
        _mm256_storeu_ps (o + (size_t) i * D + dc, acc[i][0]);
        _mm256_storeu_ps (o + (size_t) i * D + dc + 8, acc[i][1]);
      }
  }
  if (dc < D) { /* the last 8 columns */
    __m256 acc[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows)
        acc[i] = _mm256_loadu_ps (o + (size_t) i * D + dc);
    const float *vj = v + dc * kpad + (size_t) k0 * 8;
    for (int j = 0; j < nk; j++, vj += 8) {
      const __m256 b0 = _mm256_loadu_ps (vj);
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++)
        if (i < rows)
          acc[i] = _mm256_fmadd_ps (_mm256_broadcast_ss (p + (size_t) i * NK + j), b0, acc[i]);
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
      if (i < rows)
        _mm256_storeu_ps (o + (size_t) i * D + dc, acc[i]);
  }
}

/* One register tile of `rows` queries against one key block: scores, the online softmax update
 * of the rows' max, sum and output, and o += p v. */
INLINE_AVX2 void
flash_rows (const int rows, const float *q, const float *kp, int k0, int nk, const float *v,
            size_t kpad, int D, __m256 scale, float *s, float *m, double *l, float *o)
{
  const int panels = (nk + KP - 1) / KP;
  for (int pnl = 0; pnl < panels; pnl++)
    score_tile (rows, q, kp + (size_t) pnl * KP * D, D, scale, s + pnl * KP, NK);
  for (int i = 0; i < rows; i++) {
    float *r = s + (size_t) i * NK;
    int j = 0;
    __m256 vmx = _mm256_set1_ps (m[i]);
    for (; j + 8 <= nk; j += 8)
      vmx = _mm256_max_ps (vmx, _mm256_loadu_ps (r + j));
    float mx = hmax8 (vmx);
    for (; j < nk; j++)
      mx = r[j] > mx ? r[j] : mx;
    const __m256 vm = _mm256_set1_ps (mx);
    __m256 vsum = _mm256_setzero_ps ();
    for (j = 0; j + 8 <= nk; j += 8) {
      const __m256 e = sam2_exp8_avx2 (_mm256_sub_ps (_mm256_loadu_ps (r + j), vm));
      _mm256_storeu_ps (r + j, e);
      vsum = _mm256_add_ps (vsum, e);
    }
    float sum = hsum8 (vsum);
    for (; j < nk; j++) {
      r[j] = sam2_exp_approx (r[j] - mx);
      sum += r[j];
    }
    if (mx != m[i]) { /* the running max grew: rescale what was summed under the old one */
      const float corr = sam2_exp_approx (m[i] - mx);
      const __m256 vc = _mm256_set1_ps (corr);
      float *orow = o + (size_t) i * D;
      for (int d = 0; d < D; d += 8)
        _mm256_storeu_ps (orow + d, _mm256_mul_ps (_mm256_loadu_ps (orow + d), vc));
      l[i] *= corr;
      m[i] = mx;
    }
    l[i] += sum;
  }
  pv_tile (rows, s, k0, nk, v, kpad, o, D);
}

/* 8 rows of 8 (r[0..7]) transposed in place. */
INLINE_AVX2 void
transpose8 (__m256 r[8])
{
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps (r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps (r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps (t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps (t[i], t[i + 2], 0xee);
    u[i + 2] = _mm256_shuffle_ps (t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps (t[i + 1], t[i + 3], 0xee);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps (u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps (u[i], u[i + 4], 0x31);
  }
}

static AVX2 void
pack_avx2 (const Sam2AttentionArgs *a, int seq, int head, float *packed)
{
  const int D = a->head_dim;
  const float *k = a->k + seq * a->k_batch_stride + (size_t) head * D;
  const float *v = a->v + seq * a->v_batch_stride + (size_t) head * D;
  const int panels = (a->len_k + KP - 1) / KP;
  /* k: 8 keys x 8 dims at a time, transposed; keys past len_k as zeros */
  for (int p = 0; p < panels; p++) {
    float *dst = packed + (size_t) p * KP * D;
    for (int c0 = 0; c0 < KP; c0 += 8) {
      const int j0 = p * KP + c0, valid = MAX (0, MIN (8, a->len_k - j0));
      for (int d0 = 0; d0 < D; d0 += 8) {
        __m256 r[8];
        for (int t = 0; t < 8; t++)
          r[t] = t < valid ? _mm256_loadu_ps (k + (size_t) (j0 + t) * a->k_ld + d0)
                           : _mm256_setzero_ps ();
        transpose8 (r);
        for (int t = 0; t < 8; t++)
          _mm256_storeu_ps (dst + (size_t) (d0 + t) * KP + c0, r[t]);
      }
    }
  }
  /* v in column chunks of 16 (the last may be 8 wide), each chunk's rows contiguous */
  const size_t kpad = (size_t) panels * KP;
  float *vp = packed + kpad * D;
  for (int c0 = 0; c0 < D; c0 += 16) {
    float *dst = vp + (size_t) c0 * kpad;
    const float *src = v + c0;
    if (D - c0 >= 16)
      for (int j = 0; j < a->len_k; j++, dst += 16, src += a->v_ld) {
        _mm256_storeu_ps (dst, _mm256_loadu_ps (src));
        _mm256_storeu_ps (dst + 8, _mm256_loadu_ps (src + 8));
      }
    else
      for (int j = 0; j < a->len_k; j++, dst += 8, src += a->v_ld)
        _mm256_storeu_ps (dst, _mm256_loadu_ps (src));
  }
}

static AVX2 void
flash_task_avx2 (const Sam2AttentionArgs *a, int seq, int head, int q0, int nq,
                 const float *packed, float *scratch)
{
  const int D = a->head_dim;
  const size_t hoff = (size_t) head * D;
  const float *q = a->q + seq * a->q_batch_stride + (size_t) q0 * a->q_ld + hoff;
  float *out = a->out + seq * a->out_batch_stride + (size_t) q0 * a->out_ld + hoff;

  float *qs = scratch, *o = qs + (size_t) nq * D, *s = o + (size_t) nq * D;
  float *m = s + (size_t) MR * NK;
  double *l = (double *) (((uintptr_t) (m + nq) + 7) & ~(uintptr_t) 7);

  /* q rows copied together (the tile kernel broadcasts from 6 of them); the scale goes on the
   * scores, one rounding as in sgemm's alpha q k^T */
  const __m256 vscale = _mm256_set1_ps (a->scale);
  for (int i = 0; i < nq; i++)
    memcpy (qs + (size_t) i * D, q + (size_t) i * a->q_ld, D * sizeof (float));
  memset (o, 0, (size_t) nq * D * sizeof (float));
  for (int i = 0; i < nq; i++) {
    m[i] = -1e30f; /* below any score; exp of (it - a score) underflows to 0 against l = 0 */
    l[i] = 0.0;
  }

  const size_t kpad = (size_t) (a->len_k + KP - 1) / KP * KP;
  for (int k0 = 0; k0 < a->len_k; k0 += NK) {
    const int nk = MIN (NK, a->len_k - k0);
    const float *kp = packed + (size_t) k0 * D, *vp = packed + kpad * D;
    int i0 = 0;
    for (; i0 + MR <= nq; i0 += MR)
      flash_rows (MR, qs + (size_t) i0 * D, kp, k0, nk, vp, kpad, D, vscale, s, m + i0, l + i0,
                  o + (size_t) i0 * D);
    switch (nq - i0) {
#define TAIL(r)                                                                                  \
  case r:                                                                                        \
    flash_rows (r, qs + (size_t) i0 * D, kp, k0, nk, vp, kpad, D, vscale, s, m + i0, l + i0,            \
                o + (size_t) i0 * D);                                                           \
    break;
      TAIL (1) TAIL (2) TAIL (3) TAIL (4) TAIL (5)
#undef TAIL
    default:
      break;
    }
  }

  for (int i = 0; i < nq; i++) {
    const __m256 inv = _mm256_set1_ps ((float) (1.0 / l[i]));
    for (int d = 0; d < D; d += 8)
      _mm256_storeu_ps (out + (size_t) i * a->out_ld + d,
                        _mm256_mul_ps (_mm256_loadu_ps (o + (size_t) i * D + d), inv));
  }
}
#endif

#ifdef FLASH_X86
/* Whether this machine runs the fused path: AVX2 and FMA, and no AVX-512F unless
 * SAM2_CPU_ATTENTION=fused asks for it (=sgemm turns the fused path off anywhere). On the
 * 16-core AVX-512 Xeon of the GPU machines the encoder's attention took 98.9 ms through oneDNN's
 * sgemm (which uses AVX-512 there) and 132.5 ms through this AVX2 kernel (16 threads, FP32,
 * sam2-bench-cpu, two sessions on the same machine type); on the AVX2-only development machine the
 * fused path is the faster one (README). */
static gboolean
flash_wanted (void)
{
  const char *e = g_getenv ("SAM2_CPU_ATTENTION");
  if (e != NULL && g_ascii_strcasecmp (e, "sgemm") == 0)
    return FALSE;
  if (!__builtin_cpu_supports ("avx2") || !__builtin_cpu_supports ("fma"))
    return FALSE;
  if (e != NULL && g_ascii_strcasecmp (e, "fused") == 0)
    return TRUE;
  return !__builtin_cpu_supports ("avx512f");
}
#endif

gboolean
sam2_cpu_flash_supported (const Sam2AttentionArgs *a)
{
#ifdef FLASH_X86
  /* decided once per process: sessions on several threads ask at their first pass together */
  static gsize cpu_ok = 0;   /* 0: not decided yet, 1: no, 2: yes */
  if (g_once_init_enter (&cpu_ok))
    g_once_init_leave (&cpu_ok, flash_wanted () ? 2 : 1);
  return cpu_ok == 2 && a->head_dim % 8 == 0 && a->head_dim > 0;
#else
  return FALSE;
#endif
}

const Sam2FlashKernel *
sam2_cpu_flash_fp32 (void)
{
#ifdef FLASH_X86
  static const Sam2FlashKernel kernel = { packed_floats, task_floats, pack_avx2,
                                          flash_task_avx2 };
  return &kernel;
#else
  return NULL;
#endif
}
