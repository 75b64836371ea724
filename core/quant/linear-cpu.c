/* linear-cpu.c: quantized linear layers on the CPU; the contract is in linear-cpu.h, the layouts
 * in formats.h.
 *
 * The W4A8 kernel
 * ---------------
 * Activations. Each row is quantized once per call (smoothing multiply first) to unsigned bytes u
 * with a per-row zero point Z: asymmetric rows keep theirs (u = a, Z = za); symmetric rows are
 * shifted (u = a + 128, Z = 128), because the x86 byte dot products (vpmaddubsw, vpdpbusd)
 * multiply an unsigned operand by a signed one. The zero point is removed exactly in int32, per
 * weight group: sum_k (u_k - Z) w_k = sum_k u_k w_k - Z sum_k w_k, with sum_k w_k precomputed per
 * (n, group) (the zero-point compensation of gemmlowp and of oneDNN's s8s8 kernels, done per
 * group as in QServe's W4A8 GEMM).
 *
 * Weights. The 4-bit codes are expanded once, in prepare, to int8 w = q - z (-15..15) and
 * repacked in blocks of 16 output channels: per 4 consecutive k, 64 bytes holding
 * w[n0 + j][k .. k + 3] at bytes 4j .. 4j + 3 (the "4 k per 32-bit lane" operand layout of VNNI,
 * oneDNN's brgemm int8 and llama.cpp's repacked x86 kernels). One 32-bit lane is one output
 * channel, so the dot products land in int32 lanes per channel without any horizontal sum.
 * Expanding to bytes doubles the weight memory but leaves no nibble unpacking in the inner loop,
 * which on these shapes is bound by the vector ALUs, not by memory (Marlin and QServe unpack in
 * registers because GPU GEMMs at small batch are bound by memory). Groups are padded to 16 k with
 * zero weights (a tail group, K odd, or a group size not a multiple of 16), and the activation
 * rows are laid out with the same padding (pad bytes 0), so every loop runs whole 16-k steps.
 *
 * Inner loop, AVX2 (no VNNI): per 16 k and per row, the 4 activation quads are broadcast
 * (vpbroadcastd) and multiplied with the 2 x 4 weight vectors of the block (vpmaddubsw: u8 x s8,
 * adjacent pairs summed into int16, saturating). With |w| <= 15 and u <= 255 a pair sum is at most
 * 2 * 255 * 15 = 7650, so vpmaddubsw never saturates, and four of them still fit int16
 * (4 * 7650 = 30600 < 32767): the 4 products of a 16-k step are added in int16 (vpaddw) and
 * widened once (vpmaddwd by ones, then vpaddd). That is 1.25 multiply uops per 32 MACs instead of
 * the 2 an int8 x int8 GEMM needs without VNNI (where one vpmaddubsw can already saturate) --
 * the 4-bit weights buy it. Tile: 2 rows x 16 channels, the 8 weight vectors of a step held in
 * registers and reused by both rows; all 16 ymm registers are in use.
 * Inner loop, AVX-512 VNNI: vpdpbusd (u8 x s8, 4 products summed into int32, no intermediate
 * saturation), 4 rows x 16 channels per tile, one weight zmm per 4 k shared by the 4 rows.
 * Portable C: the same sums in plain int32 arithmetic.
 *
 * Per group the int32 sum (exact) becomes float: acc += (float) (isum - Z wsum) * s[n][g], as a
 * multiply then an add in every path (no FMA), and the per-row activation scale is applied once at
 * the end (it is common to all groups: one multiply per output instead of one per group, and one
 * rounding fewer). So the C, AVX2 and AVX-512 paths give bit-identical outputs, and the int32
 * sums are exact in all of them; (float) isum is exact while |isum| < 2^24, which holds for every
 * group of up to 4386 columns (255 * 15 * 4386 < 2^24).
 *
 * Epilogue, per row and chunk of up to 128 outputs in a stack buffer: * activation scale, + bias,
 * + low-rank branch, activation (sam2_cpu_act_row), + residual. The low-rank branch is
 * t (M, r) = x (L_down diag(smooth_inv))^T by one dnnl_sgemm per call (smoothing folded into
 * L_down at prepare), then t L_up^T added in the epilogue of each tile (the fused low-rank
 * up-projection of nunchaku's SVDQuant kernels): a separate sgemm with beta = 1 into y would
 * need y to hold the pre-activation sum, which breaks residual == y with an activation and costs
 * one more pass over y. Working in a buffer is also what makes residual == y safe.
 *
 * Blocking and threads: rows in blocks of 64 (the activation codes of a block, 64 x K bytes, stay
 * in L2 while every weight block passes), output channels in chunks of 128 (the epilogue buffer);
 * within a chunk each 16-channel weight block (K x 16 bytes, in L1 up to K = 2048) is reused by
 * all row tiles of the row block. With many row blocks each work item is one row block over all
 * outputs and quantizes its own rows just before using them (the codes never leave the cache);
 * with few (small M, the decoder) all rows are quantized first and the items are (row block,
 * channel range) pairs, so that M = 1 still spreads over the threads. OpenMP dynamic schedule.
 *
 * Dispatch: the best of AVX-512 VNNI, AVX2 and C that the CPU runs, chosen in prepare
 * (__builtin_cpu_supports). The environment variable SAM2_QUANT_KERNEL = c | avx2 | avx512-vnni
 * caps the choice (it never selects what the CPU lacks): tests use it to compare the paths.
 *
 * Weight-only layers (SAM2_ACT_QUANT_NONE, the W4A16 CPU path): prepare dequantizes the weights
 * once, folds the low-rank branch and the smoothing into them
 * (W_eff = (W + L_up L_down) diag(smooth_inv), exact algebra: nothing is quantized between them),
 * and the forward is one dnnl_sgemm plus the epilogue. */
#include "linear-cpu.h"
#include "ops-cpu.h"

#include <dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define SAM2_QUANT_X86 1
#include <immintrin.h>
#endif

/* Epilogue loops compiled for AVX-512 and AVX2 as well, picked at load time (the idiom of
 * ops-cpu-vec.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SAM2_QUANT_CLONES \
  __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SAM2_QUANT_CLONES
#endif

#define NB 16             /* output channels per packed weight block */
#define KSTEP 16          /* k per inner step; groups and activation rows are padded to it */
#define ROW_BLOCK 64      /* rows per work item (a multiple of every tile height) */
#define CHUNK 128         /* outputs per epilogue buffer (a multiple of NB) */
#define WO_CHUNK_ROWS 256 /* weight-only path: rows per sgemm when act and residual combine */
#define L1_WEIGHT_BYTES 24576 /* weight blocks a row sweep reuses from L1 (of 32 KiB or more) */
#define KERNEL_MAGIC 0x53513441u /* "SQ4A": the kernel is this file's */

typedef enum {
  ISA_C,
  ISA_AVX2,
  ISA_AVX512_VNNI,
} Sam2QuantIsa;

typedef struct _Sam2QuantKernel Sam2QuantKernel;

/* Where results go: row r, column j (< nn, counted from the first channel computed) gets
 *   out[r ld + j] = (acc[r][j] sa[r] + bias[j]) + res[r ld + j]
 * with acc[r][j] = sum_g (float) (isum_g - za[r] wsum_g) s_g (bias and res optional; res may be
 * out: each element is read before it is written). */
typedef struct {
  float *out;
  size_t ld;
  const float *sa;       /* (rows) */
  const float *bias;     /* (nn) or NULL */
  const float *res;      /* rows ld apart, or NULL */
  int nn;
} Sam2TileOut;

/* The int32 GEMM of `rows` activation rows (a, lda apart, kernel zero points za) with weight
 * blocks nb0 .. nb1 - 1, stored as o says. */
typedef void (*Sam2QuantBlockFn) (const Sam2QuantKernel *kn, const guint8 *a, size_t lda,
                                  const int32_t *za, int rows, int nb0, int nb1,
                                  const Sam2TileOut *o);

struct _Sam2QuantKernel {
  guint32 magic;
  Sam2QuantIsa isa;
  Sam2QuantBlockFn block;
  int n_blocks;             /* ceil(N / NB) */
  int n_groups;
  int group_pad;            /* group_size rounded up to KSTEP: the stride of groups in a row */
  int group_steps;          /* KSTEP steps of a full group */
  int last_steps;           /* KSTEP steps of the last (possibly tail) group */
  int kl;                   /* activation row length in the kernel layout, a multiple of KSTEP */
  int l1_blocks;            /* weight blocks that fit L1 together: the span of a row sweep */
  int8_t *w;                /* (n_blocks, kl / 4, NB, 4): w = q - z, 64-byte aligned */
  int32_t *wsum;            /* (n_blocks, n_groups, NB): sum of w over the group */
  float *wscale;            /* (n_blocks, n_groups, NB): the group scales, 0 past N */
  float *lora_down;         /* (rank, K): L_down diag(smooth_inv) */
  float *lora_up_t;         /* (rank, N): L_up transposed, rows of the epilogue's update */
  float *w_float;           /* weight-only: (N, K) = (W + L_up L_down) diag(smooth_inv) */
};

static inline int
round_up (int x, int m)
{
  return (x + m - 1) / m * m;
}

static inline int
act_is_asym (Sam2ActQuantMode mode)
{
  return mode == SAM2_ACT_QUANT_TOKEN_ASYM || mode == SAM2_ACT_QUANT_TENSOR_ASYM;
}

static inline int
act_is_static (Sam2ActQuantMode mode)
{
  return mode == SAM2_ACT_QUANT_TENSOR_SYM || mode == SAM2_ACT_QUANT_TENSOR_ASYM;
}

static Sam2QuantIsa
isa_select (void)
{
  Sam2QuantIsa best = ISA_C;
#ifdef SAM2_QUANT_X86
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx2"))
    best = ISA_AVX2;
  if (__builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512vnni"))
    best = ISA_AVX512_VNNI;
#endif
  const char *cap = g_getenv ("SAM2_QUANT_KERNEL");
  if (cap != NULL) {
    if (g_strcmp0 (cap, "c") == 0)
      best = ISA_C;
    else if (g_strcmp0 (cap, "avx2") == 0)
      best = MIN (best, ISA_AVX2);
  }
  return best;
}

/* ---- activation quantization ---------------------------------------------------------------- */

/* Quantization parameters of one row: codes are round(clamp(v / scale, lo, hi)) + add, stored as
 * bytes XOR flip. lo and hi are whole numbers, so rounding after the clamp equals clamping after
 * the rounding (rounding is monotonic and keeps whole numbers), and the float never overflows
 * the int conversion. */
typedef struct {
  float scale;
  float lo, hi;
  int add;
  guint8 flip;
  int32_t zero;   /* the row's zero point as formats.h defines it (0 when symmetric) */
} Sam2RowQuant;

/* min(0, min_k v) and max(0, max_k v) of v = x * smooth (smooth may be NULL). Min and max are
 * exact, so the vector and scalar forms agree whatever their order. */
static void
row_range_c (const float *x, const float *smooth, int n, float *lo, float *hi)
{
  float l = 0.0f, h = 0.0f;
  for (int k = 0; k < n; k++) {
    const float v = smooth != NULL ? x[k] * smooth[k] : x[k];
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  *lo = l;
  *hi = h;
}

/* One code, exactly as the vector forms compute it: v + copysign(0.5, v) truncated is
 * sam2_round_half_away (x - 0.5 is x + (-0.5) in IEEE arithmetic). */
static inline guint8
code_c (float v, const Sam2RowQuant *p)
{
  v = v / p->scale;
  v = v < p->lo ? p->lo : v;
  v = v > p->hi ? p->hi : v;
  return (guint8) (((int) (v + copysignf (0.5f, v)) + p->add) ^ p->flip);
}

static void
row_codes_c (const float *x, const float *smooth, int n, const Sam2RowQuant *p, guint8 *dst)
{
  for (int k = 0; k < n; k++)
    dst[k] = code_c (smooth != NULL ? x[k] * smooth[k] : x[k], p);
}

#ifdef SAM2_QUANT_X86
__attribute__ ((target ("avx2"))) static void
row_range_avx2 (const float *x, const float *smooth, int n, float *lo, float *hi)
{
  __m256 l = _mm256_setzero_ps (), h = _mm256_setzero_ps ();
  int k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 v = _mm256_loadu_ps (x + k);
    if (smooth != NULL)
      v = _mm256_mul_ps (v, _mm256_loadu_ps (smooth + k));
    l = _mm256_min_ps (l, v);
    h = _mm256_max_ps (h, v);
  }
  float lv[8], hv[8], lt, ht;
  _mm256_storeu_ps (lv, l);
  _mm256_storeu_ps (hv, h);
  row_range_c (x + k, smooth != NULL ? smooth + k : NULL, n - k, &lt, &ht);
  for (int i = 0; i < 8; i++) {
    lt = lv[i] < lt ? lv[i] : lt;
    ht = hv[i] > ht ? hv[i] : ht;
  }
  *lo = lt;
  *hi = ht;
}

/* 8 codes as int32 lanes: the operations of code_c, lane by lane. */
__attribute__ ((target ("avx2"))) static inline __m256i
codes8_avx2 (__m256 v, __m256 scale, __m256 lo, __m256 hi, __m256i add)
{
  const __m256 sign = _mm256_set1_ps (-0.0f), half = _mm256_set1_ps (0.5f);
  v = _mm256_div_ps (v, scale);
  v = _mm256_max_ps (v, lo);
  v = _mm256_min_ps (v, hi);
  v = _mm256_add_ps (v, _mm256_or_ps (half, _mm256_and_ps (v, sign)));
  return _mm256_add_epi32 (_mm256_cvttps_epi32 (v), add);
}

__attribute__ ((target ("avx2"))) static void
row_codes_avx2 (const float *x, const float *smooth, int n, const Sam2RowQuant *p, guint8 *dst)
{
  const __m256 scale = _mm256_set1_ps (p->scale), lo = _mm256_set1_ps (p->lo);
  const __m256 hi = _mm256_set1_ps (p->hi);
  const __m256i add = _mm256_set1_epi32 (p->add), flip = _mm256_set1_epi8 ((char) p->flip);
  /* packs / packus interleave the 128-bit lanes; this puts the 8 dwords back in order */
  const __m256i order = _mm256_setr_epi32 (0, 4, 1, 5, 2, 6, 3, 7);
  int k = 0;
  for (; k + 32 <= n; k += 32) {
    __m256i c[4];
    for (int i = 0; i < 4; i++) {
      __m256 v = _mm256_loadu_ps (x + k + 8 * i);
      if (smooth != NULL)
        v = _mm256_mul_ps (v, _mm256_loadu_ps (smooth + k + 8 * i));
      c[i] = codes8_avx2 (v, scale, lo, hi, add);
    }
    /* every code is 0..255 here: the saturating packs are plain narrowing */
    __m256i b = _mm256_packus_epi16 (_mm256_packs_epi32 (c[0], c[1]),
                                     _mm256_packs_epi32 (c[2], c[3]));
    b = _mm256_xor_si256 (_mm256_permutevar8x32_epi32 (b, order), flip);
    _mm256_storeu_si256 ((__m256i *) (dst + k), b);
  }
  row_codes_c (x + k, smooth != NULL ? smooth + k : NULL, n - k, p, dst + k);
}
#endif

/* The parameters of row x (K) under q's mode (formats.h): dynamic modes from the row's range,
 * which includes 0 (as the weight quantizer's, sam2_w4_choose_params), so 0 is coded exactly and
 * the asymmetric zero point falls in 0..255 by construction (it is still clamped). A row whose
 * range is 0 (all zeros) gets scale 1, where every code is the zero point: no division by zero,
 * and the row dequantizes to exact zeros. A static scale that is not positive is treated the
 * same way. */
static void
row_params (const Sam2QuantLinear *q, Sam2QuantIsa isa, const float *x, Sam2RowQuant *p,
            gboolean kernel_form)
{
  const int K = q->w.k;
  const gboolean asym = act_is_asym (q->act);
  float scale, zero = 0.0f;
  if (act_is_static (q->act)) {
    scale = q->act_scale;
    zero = q->act_zero;
  } else {
    float lo, hi;
#ifdef SAM2_QUANT_X86
    if (isa >= ISA_AVX2)
      row_range_avx2 (x, q->smooth_inv, K, &lo, &hi);
    else
#endif
      row_range_c (x, q->smooth_inv, K, &lo, &hi);
    if (asym) {
      scale = (hi - lo) / 255.0f;
    } else {
      const float amax = MAX (hi, -lo);
      scale = amax / 127.0f;
    }
    if (scale > 0.0f && asym)
      zero = (float) sam2_round_half_away (-lo / scale);
  }
  if (!(scale > 0.0f))
    scale = 1.0f;
  p->scale = scale;
  if (asym) {
    /* clamped before rounding (the same for whole bounds), so a wild static value cannot
     * overflow the conversion */
    const int za = sam2_round_half_away (CLAMP (zero, 0.0f, 255.0f));
    p->lo = (float) -za;
    p->hi = (float) (255 - za);
    p->add = za;
    p->flip = 0;
    p->zero = za;
  } else {
    /* codes -127..127; the kernel keeps them as u = a + 128, the public form as int8 bytes,
     * which are (a + 128) with the top bit flipped */
    p->lo = -127.0f;
    p->hi = 127.0f;
    p->add = 128;
    p->flip = kernel_form ? 0 : 0x80;
    p->zero = 0;
  }
}

static void
row_codes (Sam2QuantIsa isa, const float *x, const float *smooth, int n, const Sam2RowQuant *p,
           guint8 *dst)
{
#ifdef SAM2_QUANT_X86
  if (isa >= ISA_AVX2) {
    row_codes_avx2 (x, smooth, n, p, dst);
    return;
  }
#endif
  row_codes_c (x, smooth, n, p, dst);
}

void
sam2_quantize_activations (const Sam2QuantLinear *q, const float *x, int M, guint8 *codes,
                           int k_stride, float *scales, int32_t *zeros)
{
  g_return_if_fail (q != NULL && q->act != SAM2_ACT_QUANT_NONE && k_stride >= q->w.k);
  const int K = q->w.k;
  const Sam2QuantIsa isa = isa_select ();
#pragma omp parallel for schedule(static) if ((size_t) M * K > 65536)
  for (int m = 0; m < M; m++) {
    Sam2RowQuant p;
    const float *xr = x + (size_t) m * K;
    row_params (q, isa, xr, &p, FALSE);
    row_codes (isa, xr, q->smooth_inv, K, &p, codes + (size_t) m * k_stride);
    scales[m] = p.scale;
    zeros[m] = p.zero;
  }
}

/* ---- scratch -------------------------------------------------------------------------------- */

typedef struct {
  int kl;                       /* kernel activation row length */
  size_t codes, scales, zeros;  /* W4A8: (M, kl) bytes, (M) floats, (M) int32 */
  size_t t;                     /* (M, rank) floats */
  size_t wo;                    /* weight-only: (min(M, WO_CHUNK_ROWS), N) floats */
  size_t ref_codes, ref_xq, ref_xs, ref_t;   /* reference, one row: K bytes, K, K floats,
                                                rank doubles */
  size_t total;
} Sam2QuantScratch;

static inline size_t
align64 (size_t x)
{
  return (x + 63) & ~(size_t) 63;
}

static int
kernel_row_length (const Sam2W4 *w)
{
  const int gp = round_up (w->group_size, KSTEP);
  const int last = w->k - (w->n_groups - 1) * w->group_size;
  return (w->n_groups - 1) * gp + round_up (last, KSTEP);
}

/* Offsets from the scratch pointer aligned up to 64 bytes (the caller's pointer need not be). */
static void
scratch_layout (const Sam2QuantLinear *q, int M, Sam2QuantScratch *s)
{
  const size_t K = q->w.k, N = q->w.n, r = q->rank;
  size_t off = 0, fwd, ref;
  memset (s, 0, sizeof *s);
  if (q->act != SAM2_ACT_QUANT_NONE) {
    s->kl = kernel_row_length (&q->w);
    s->codes = off;
    off = align64 (off + (size_t) M * s->kl);
    s->scales = off;
    off = align64 (off + (size_t) M * sizeof (float));
    s->zeros = off;
    off = align64 (off + (size_t) M * sizeof (int32_t));
    s->t = off;
    off = align64 (off + (size_t) M * r * sizeof (float));
  } else {
    s->wo = off;
    off = align64 (off + (size_t) MIN (M, WO_CHUNK_ROWS) * N * sizeof (float));
  }
  fwd = off;
  off = 0;
  s->ref_codes = off;
  off = align64 (off + K);
  s->ref_xq = off;
  off = align64 (off + K * sizeof (float));
  s->ref_xs = off;
  off = align64 (off + K * sizeof (float));
  s->ref_t = off;
  off = align64 (off + r * sizeof (double));
  ref = off;
  s->total = MAX (fwd, ref) + 64;
}

static guint8 *
scratch_base (void *scratch)
{
  return (guint8 *) (((uintptr_t) scratch + 63) & ~(uintptr_t) 63);
}

size_t
sam2_quant_linear_scratch_bytes (const Sam2QuantLinear *q, int M)
{
  g_return_val_if_fail (q != NULL && M >= 0, 0);
  Sam2QuantScratch s;
  scratch_layout (q, M, &s);
  return s.total;
}

/* ---- reference ------------------------------------------------------------------------------ */

/* The weights dequantized by sam2_w4_dequantize and the activations quantized by
 * sam2_quantize_activations and dequantized to float ((a - za) sa, one rounding): the float
 * tensors a fake-quantized model computes with. The products are then summed in double, so the
 * reference adds no error that grows with K or depends on summation order: what a kernel differs
 * from it by is the kernel's own rounding. The dequantized weights are allocated here (an oracle,
 * not a hot path); the scratch holds one row's temporaries. */
void
sam2_quant_linear_reference (const Sam2QuantLinear *q, const float *x, int M, float *y,
                             Sam2Act act, const float *residual, void *scratch)
{
  g_return_if_fail (q != NULL && x != NULL && y != NULL && scratch != NULL);
  const int K = q->w.k, N = q->w.n, R = q->rank;
  Sam2QuantScratch s;
  scratch_layout (q, M, &s);
  guint8 *base = scratch_base (scratch);
  guint8 *codes = base + s.ref_codes;           /* (K) */
  float *xq = (float *) (base + s.ref_xq);      /* (K) the row as the GEMM sees it */
  float *xs = (float *) (base + s.ref_xs);      /* (K) the smoothed row, for the low rank */
  double *t = (double *) (base + s.ref_t);      /* (R) */
  float *w = g_new (float, (size_t) N * K);     /* (N, K) */
  sam2_w4_dequantize (&q->w, w);

  for (int m = 0; m < M; m++) {
    const float *xr = x + (size_t) m * K;
    for (int k = 0; k < K; k++)
      xs[k] = q->smooth_inv != NULL ? xr[k] * q->smooth_inv[k] : xr[k];
    if (q->act == SAM2_ACT_QUANT_NONE) {
      memcpy (xq, xs, (size_t) K * sizeof (float));
    } else {
      float sa;
      int32_t za;
      sam2_quantize_activations (q, xr, 1, codes, K, &sa, &za);
      const gboolean asym = act_is_asym (q->act);
      for (int k = 0; k < K; k++) {
        const int a = asym ? (int) codes[k] : (int) (gint8) codes[k];
        xq[k] = (float) (a - za) * sa;
      }
    }
    for (int i = 0; i < R; i++) {
      double acc = 0.0;
      for (int k = 0; k < K; k++)
        acc += (double) xs[k] * q->lora_down[(size_t) i * K + k];
      t[i] = acc;
    }
#pragma omp parallel for schedule(static) if ((size_t) N * K > 65536)
    for (int n = 0; n < N; n++) {
      const float *wr = w + (size_t) n * K;
      double acc = 0.0;
      for (int k = 0; k < K; k++)
        acc += (double) xq[k] * wr[k];
      if (q->bias != NULL)
        acc += q->bias[n];
      for (int i = 0; i < R; i++)
        acc += t[i] * q->lora_up[(size_t) n * R + i];
      const float v = sam2_cpu_act1 (act, (float) acc);
      /* residual may be y: its element is read before it is written */
      const size_t o = (size_t) m * N + n;
      y[o] = residual != NULL ? v + residual[o] : v;
    }
  }
  g_free (w);
}

/* ---- prepare -------------------------------------------------------------------------------- */

static void block_c (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za,
                     int rows, int nb0, int nb1, const Sam2TileOut *o);
#ifdef SAM2_QUANT_X86
static void block_avx2 (const Sam2QuantKernel *kn, const guint8 *a, size_t lda,
                        const int32_t *za, int rows, int nb0, int nb1, const Sam2TileOut *o);
static void block_avx512_vnni (const Sam2QuantKernel *kn, const guint8 *a, size_t lda,
                               const int32_t *za, int rows, int nb0, int nb1,
                               const Sam2TileOut *o);
#endif

static void
kernel_free (gpointer data)
{
  Sam2QuantKernel *kn = data;
  if (kn == NULL)
    return;
  free (kn->w);
  g_free (kn->wsum);
  g_free (kn->wscale);
  g_free (kn->lora_down);
  g_free (kn->lora_up_t);
  g_free (kn->w_float);
  g_free (kn);
}

/* Weight-only: (W + L_up L_down) diag(smooth_inv), each element rounded once from double. */
static gboolean
prepare_weight_only (const Sam2QuantLinear *q, Sam2QuantKernel *kn)
{
  const int N = q->w.n, K = q->w.k, R = q->rank;
  kn->w_float = g_try_new (float, (size_t) N * K);
  if (kn->w_float == NULL)
    return FALSE;
  sam2_w4_dequantize (&q->w, kn->w_float);
  if (R == 0 && q->smooth_inv == NULL)
    return TRUE;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      double v = kn->w_float[(size_t) n * K + k];
      for (int i = 0; i < R; i++)
        v += (double) q->lora_up[(size_t) n * R + i] * q->lora_down[(size_t) i * K + k];
      if (q->smooth_inv != NULL)
        v *= q->smooth_inv[k];
      kn->w_float[(size_t) n * K + k] = (float) v;
    }
  return TRUE;
}

static gboolean
prepare_w4a8 (const Sam2QuantLinear *q, Sam2QuantKernel *kn)
{
  const Sam2W4 *w = &q->w;
  const int N = w->n, K = w->k, G = w->group_size, NG = w->n_groups, R = q->rank;
  kn->n_blocks = (N + NB - 1) / NB;
  kn->n_groups = NG;
  kn->group_pad = round_up (G, KSTEP);
  kn->group_steps = kn->group_pad / KSTEP;
  kn->kl = kernel_row_length (w);
  kn->last_steps = (kn->kl - (NG - 1) * kn->group_pad) / KSTEP;
  kn->l1_blocks = MAX (1, L1_WEIGHT_BYTES / (kn->kl * NB));
  const size_t wbytes = (size_t) kn->n_blocks * kn->kl * NB;
  void *wmem = NULL;
  if (posix_memalign (&wmem, 64, MAX (wbytes, 64)) != 0)
    return FALSE;
  kn->w = wmem;
  memset (kn->w, 0, wbytes);
  kn->wsum = g_try_new0 (int32_t, (size_t) kn->n_blocks * NG * NB);
  kn->wscale = g_try_new0 (float, (size_t) kn->n_blocks * NG * NB);
  if (kn->wsum == NULL || kn->wscale == NULL)
    return FALSE;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const int nb = n / NB, j = n % NB;
    int8_t *wb = kn->w + (size_t) nb * kn->kl * NB;       /* (kl / 4, NB, 4) */
    for (int g = 0; g < NG; g++) {
      const int k0 = g * G, k1 = MIN (k0 + G, K);
      const int z = w->zeros[(size_t) n * NG + g];
      int32_t sum = 0;
      for (int k = k0; k < k1; k++) {
        const int v = sam2_w4_get (w->codes, K, n, k) - z;
        const int pos = g * kn->group_pad + (k - k0);   /* position in the padded row */
        wb[(size_t) (pos & ~3) * NB + j * 4 + (pos & 3)] = (int8_t) v;
        sum += v;
      }
      const size_t o = ((size_t) nb * NG + g) * NB + j;
      kn->wsum[o] = sum;
      kn->wscale[o] = w->scales[(size_t) n * NG + g];
    }
  }
  if (R > 0) {
    kn->lora_down = g_try_new (float, (size_t) R * K);
    kn->lora_up_t = g_try_new (float, (size_t) R * N);
    if (kn->lora_down == NULL || kn->lora_up_t == NULL)
      return FALSE;
    for (int i = 0; i < R; i++)
      for (int k = 0; k < K; k++)
        kn->lora_down[(size_t) i * K + k] =
          q->lora_down[(size_t) i * K + k] * (q->smooth_inv != NULL ? q->smooth_inv[k] : 1.0f);
    for (int n = 0; n < N; n++)
      for (int i = 0; i < R; i++)
        kn->lora_up_t[(size_t) i * N + n] = q->lora_up[(size_t) n * R + i];
  }
  switch (kn->isa) {
#ifdef SAM2_QUANT_X86
  case ISA_AVX512_VNNI:
    kn->block = block_avx512_vnni;
    break;
  case ISA_AVX2:
    kn->block = block_avx2;
    break;
#endif
  default:
    kn->block = block_c;
    break;
  }
  return TRUE;
}

gboolean
sam2_quant_linear_prepare (Sam2QuantLinear *q)
{
  g_return_val_if_fail (q != NULL, FALSE);
  if (q->kernel != NULL) {
    g_return_val_if_fail (((Sam2QuantKernel *) q->kernel)->magic == KERNEL_MAGIC, FALSE);
    return TRUE;
  }
  const Sam2W4 *w = &q->w;
  g_return_val_if_fail (w->n > 0 && w->k > 0 && w->group_size > 0, FALSE);
  g_return_val_if_fail (w->n_groups == sam2_w4_n_groups (w->k, w->group_size), FALSE);
  g_return_val_if_fail (q->rank == 0 || (q->lora_down != NULL && q->lora_up != NULL), FALSE);
  /* the int16 sums of the AVX2 kernel are exact only for |q - z| <= 15 */
  for (size_t i = 0; i < (size_t) w->n * w->n_groups; i++)
    g_return_val_if_fail (w->zeros[i] <= SAM2_W4_CODE_MAX, FALSE);

  Sam2QuantKernel *kn = g_try_new0 (Sam2QuantKernel, 1);
  if (kn == NULL)
    return FALSE;
  kn->magic = KERNEL_MAGIC;
  kn->isa = isa_select ();
  const gboolean ok = q->act == SAM2_ACT_QUANT_NONE ? prepare_weight_only (q, kn)
                                                    : prepare_w4a8 (q, kn);
  if (!ok) {
    kernel_free (kn);
    return FALSE;
  }
  q->kernel = kn;
  q->kernel_free = kernel_free;
  return TRUE;
}

/* ---- micro-kernels -------------------------------------------------------------------------- */

static inline int32_t
load_quad (const guint8 *p)
{
  int32_t v;
  memcpy (&v, p, sizeof v);
  return v;
}

/* Row r of a tile from its accumulators f (NB), in scalar float: the C path, and the vector
 * paths' partial blocks (the same operations as their vector stores, so the same results). */
static inline void
store_row_c (const float *f, const Sam2TileOut *o, int r, int col)
{
  float *out = o->out + (size_t) r * o->ld + col;
  const float *res = o->res != NULL ? o->res + (size_t) r * o->ld + col : NULL;
  const float *bias = o->bias != NULL ? o->bias + col : NULL;
  const int nn = MIN (NB, o->nn - col);
  for (int j = 0; j < nn; j++) {
    float v = f[j] * o->sa[r];
    if (bias != NULL)
      v = v + bias[j];
    if (res != NULL)
      v = v + res[j];
    out[j] = v;
  }
}

/* The loop nest every path shares: rows in tiles of `mr`, and, for each tile, a sweep over up to
 * l1_blocks weight blocks (their weights stay in L1 across the sweep, and each row's outputs are
 * written in one contiguous run, which the hardware prefetchers follow; with large K a sweep is
 * one block and the order becomes block by block, the weights reused by all row tiles). `tile`
 * is called as tile (r, mr, nb). */
#define SAM2_BLOCK_LOOPS(kn, rows, nb0, nb1, MR, tile)                                    \
  do {                                                                                    \
    for (int c0_ = (nb0); c0_ < (nb1); c0_ += (kn)->l1_blocks) {                          \
      const int c1_ = MIN (c0_ + (kn)->l1_blocks, (nb1));                                 \
      int r_ = 0;                                                                         \
      for (; r_ + (MR) <= (rows); r_ += (MR))                                             \
        for (int nb_ = c0_; nb_ < c1_; nb_++)                                             \
          tile (r_, MR, nb_);                                                             \
      for (; r_ < (rows); r_++)                                                           \
        for (int nb_ = c0_; nb_ < c1_; nb_++)                                             \
          tile (r_, 1, nb_);                                                              \
    }                                                                                     \
  } while (0)

static void
tile_c (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za, int r, int nb,
        const Sam2TileOut *o, int col)
{
  const int NG = kn->n_groups;
  const int32_t *wsum = kn->wsum + (size_t) nb * NG * NB;   /* (NG, NB) */
  const float *wscale = kn->wscale + (size_t) nb * NG * NB; /* (NG, NB) */
  {
    const guint8 *ap = a + (size_t) r * lda;
    const int8_t *wp = kn->w + (size_t) nb * kn->kl * NB;
    float f[NB] = { 0 };
    for (int g = 0; g < NG; g++) {
      const int quads = (g + 1 < NG ? kn->group_steps : kn->last_steps) * (KSTEP / 4);
      int32_t acc[NB] = { 0 };
      for (int i = 0; i < quads; i++, ap += 4, wp += 4 * NB)
        for (int j = 0; j < NB; j++)
          acc[j] += ap[0] * wp[4 * j] + ap[1] * wp[4 * j + 1] + ap[2] * wp[4 * j + 2]
                    + ap[3] * wp[4 * j + 3];
      for (int j = 0; j < NB; j++) {
        const float v = (float) (acc[j] - za[r] * wsum[g * NB + j]) * wscale[g * NB + j];
        f[j] = g == 0 ? v : f[j] + v;
      }
    }
    store_row_c (f, o, r, col);
  }
}

static void
block_c (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za, int rows,
         int nb0, int nb1, const Sam2TileOut *o)
{
#define SAM2_TILE_C(r, mr, nb) tile_c (kn, a, lda, za, r, nb, o, ((nb) - nb0) * NB)
  SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 1, SAM2_TILE_C);
#undef SAM2_TILE_C
}

#ifdef SAM2_QUANT_X86
/* An empty asm that claims to modify v: keeps v in a register (GCC otherwise folds the weight
 * loads into both rows' vpmaddubsw as memory operands, doubling the loads) and stops GCC's
 * reassociation from regrouping the int16 sums into a tree that needs more registers than
 * there are (it then spills inside the loop): measured 1.6x on the inner loop. */
#define SAM2_PIN(v) __asm__ ("" : "+x"(v))

/* One 16-k step of one row: 4 broadcast activation quads against the step's 8 weight vectors
 * (quad q, channels 8h .. 8h + 7 in w##q##h), accumulated into c0 (channels 0..7) and c1. */
#define SAM2_AVX2_ROW_STEP(p, c0, c1)                                                       \
  do {                                                                                      \
    __m256i b_ = _mm256_set1_epi32 (load_quad (p));                                         \
    __m256i t0_ = _mm256_maddubs_epi16 (b_, w00), t1_ = _mm256_maddubs_epi16 (b_, w01);     \
    b_ = _mm256_set1_epi32 (load_quad ((p) + 4));                                           \
    t0_ = _mm256_add_epi16 (t0_, _mm256_maddubs_epi16 (b_, w10));                           \
    t1_ = _mm256_add_epi16 (t1_, _mm256_maddubs_epi16 (b_, w11));                           \
    SAM2_PIN (t0_);                                                                         \
    SAM2_PIN (t1_);                                                                         \
    b_ = _mm256_set1_epi32 (load_quad ((p) + 8));                                           \
    t0_ = _mm256_add_epi16 (t0_, _mm256_maddubs_epi16 (b_, w20));                           \
    t1_ = _mm256_add_epi16 (t1_, _mm256_maddubs_epi16 (b_, w21));                           \
    SAM2_PIN (t0_);                                                                         \
    SAM2_PIN (t1_);                                                                         \
    b_ = _mm256_set1_epi32 (load_quad ((p) + 12));                                          \
    t0_ = _mm256_add_epi16 (t0_, _mm256_maddubs_epi16 (b_, w30));                           \
    t1_ = _mm256_add_epi16 (t1_, _mm256_maddubs_epi16 (b_, w31));                           \
    /* four pair sums of at most 7650 each: exact in int16; widened once per step */        \
    c0 = _mm256_add_epi32 (c0, _mm256_madd_epi16 (t0_, ones));                              \
    c1 = _mm256_add_epi32 (c1, _mm256_madd_epi16 (t1_, ones));                              \
  } while (0)

/* acc (+)= (float) isum * scale: the first group assigns (0 + v would turn -0 into +0, and the
 * C path assigns too, so the paths stay bit-identical) */
#define SAM2_AVX2_GROUP_ACC(g, acc, isum, scale)                                            \
  do {                                                                                      \
    const __m256 v_ = _mm256_mul_ps (_mm256_cvtepi32_ps (isum), scale);                     \
    acc = (g) == 0 ? v_ : _mm256_add_ps (acc, v_);                                          \
  } while (0)

/* A tile of mr (1 or 2) rows x 16 channels over all groups. The accumulators start each group
 * at -Z wsum (the zero-point correction, computed while the loop runs rather than after it). */
__attribute__ ((target ("avx2"), always_inline)) static inline void
tile_avx2 (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za,
           const int mr, int nb, const Sam2TileOut *o, int r0, int col)
{
  const int8_t *wb = kn->w + (size_t) nb * kn->kl * NB;                 /* (kl / 4, NB, 4) */
  const int32_t *wsum = kn->wsum + (size_t) nb * kn->n_groups * NB;     /* (n_groups, NB) */
  const float *wscale = kn->wscale + (size_t) nb * kn->n_groups * NB;   /* (n_groups, NB) */
  a += (size_t) r0 * lda;
  za += r0;
  const __m256i ones = _mm256_set1_epi16 (1);
  const __m256i z0 = _mm256_set1_epi32 (-za[0]), z1 = _mm256_set1_epi32 (mr > 1 ? -za[1] : 0);
  __m256 f00 = _mm256_setzero_ps (), f01 = f00, f10 = f00, f11 = f00;
  const guint8 *ap = a;
  const int8_t *wp = wb;
  for (int g = 0; g < kn->n_groups; g++) {
    const int steps = g + 1 < kn->n_groups ? kn->group_steps : kn->last_steps;
    const __m256i s0 = _mm256_loadu_si256 ((const __m256i *) (wsum + g * NB));
    const __m256i s1 = _mm256_loadu_si256 ((const __m256i *) (wsum + g * NB + 8));
    __m256i c00 = _mm256_mullo_epi32 (z0, s0), c01 = _mm256_mullo_epi32 (z0, s1);
    __m256i c10 = _mm256_mullo_epi32 (z1, s0), c11 = _mm256_mullo_epi32 (z1, s1);
    for (int s = 0; s < steps; s++, ap += KSTEP, wp += KSTEP * NB) {
      /* wqh: k-quad q of the step, channels 8h .. 8h + 7 */
      __m256i w00 = _mm256_load_si256 ((const __m256i *) wp);
      __m256i w01 = _mm256_load_si256 ((const __m256i *) wp + 1);
      __m256i w10 = _mm256_load_si256 ((const __m256i *) wp + 2);
      __m256i w11 = _mm256_load_si256 ((const __m256i *) wp + 3);
      __m256i w20 = _mm256_load_si256 ((const __m256i *) wp + 4);
      __m256i w21 = _mm256_load_si256 ((const __m256i *) wp + 5);
      __m256i w30 = _mm256_load_si256 ((const __m256i *) wp + 6);
      __m256i w31 = _mm256_load_si256 ((const __m256i *) wp + 7);
      SAM2_PIN (w00);
      SAM2_PIN (w01);
      SAM2_PIN (w10);
      SAM2_PIN (w11);
      SAM2_PIN (w20);
      SAM2_PIN (w21);
      SAM2_PIN (w30);
      SAM2_PIN (w31);
      SAM2_AVX2_ROW_STEP (ap, c00, c01);
      if (mr > 1)
        SAM2_AVX2_ROW_STEP (ap + lda, c10, c11);
    }
    const __m256 sc0 = _mm256_loadu_ps (wscale + g * NB), sc1 = _mm256_loadu_ps (wscale + g * NB + 8);
    SAM2_AVX2_GROUP_ACC (g, f00, c00, sc0);
    SAM2_AVX2_GROUP_ACC (g, f01, c01, sc1);
    if (mr > 1) {
      SAM2_AVX2_GROUP_ACC (g, f10, c10, sc0);
      SAM2_AVX2_GROUP_ACC (g, f11, c11, sc1);
    }
  }
  const float *bias = o->bias != NULL ? o->bias + col : NULL;
  for (int r = 0; r < mr; r++) {
    const __m256 fa = r == 0 ? f00 : f10, fb = r == 0 ? f01 : f11;
    if (o->nn - col < NB) {
      float fr[NB];
      _mm256_storeu_ps (fr, fa);
      _mm256_storeu_ps (fr + 8, fb);
      store_row_c (fr, o, r0 + r, col);
      continue;
    }
    const __m256 sa = _mm256_set1_ps (o->sa[r0 + r]);
    __m256 v0 = _mm256_mul_ps (fa, sa), v1 = _mm256_mul_ps (fb, sa);
    if (bias != NULL) {
      v0 = _mm256_add_ps (v0, _mm256_loadu_ps (bias));
      v1 = _mm256_add_ps (v1, _mm256_loadu_ps (bias + 8));
    }
    const size_t off = (size_t) (r0 + r) * o->ld + col;
    if (o->res != NULL) {
      v0 = _mm256_add_ps (v0, _mm256_loadu_ps (o->res + off));
      v1 = _mm256_add_ps (v1, _mm256_loadu_ps (o->res + off + 8));
    }
    float *out = o->out + off;
    _mm256_storeu_ps (out, v0);
    _mm256_storeu_ps (out + 8, v1);
  }
}

__attribute__ ((target ("avx2"))) static void
block_avx2 (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za, int rows,
            int nb0, int nb1, const Sam2TileOut *o)
{
#define SAM2_TILE_AVX2(r, mr, nb) tile_avx2 (kn, a, lda, za, mr, nb, o, r, ((nb) - nb0) * NB)
  SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 2, SAM2_TILE_AVX2);
#undef SAM2_TILE_AVX2
}

/* A tile of mr (1 .. 4) rows x 16 channels, VNNI. The float step uses the explicitly rounded
 * forms so that no compiler setting can contract it into an FMA: the outputs stay bit-identical
 * to the C and AVX2 paths. */
#define SAM2_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

__attribute__ ((target ("avx512f,avx512vnni"), always_inline)) static inline void
tile_avx512_vnni (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za,
                  const int mr, int nb, const Sam2TileOut *o, int r0, int col)
{
  const int8_t *wb = kn->w + (size_t) nb * kn->kl * NB;                 /* (kl / 4, NB, 4) */
  const int32_t *wsum = kn->wsum + (size_t) nb * kn->n_groups * NB;     /* (n_groups, NB) */
  const float *wscale = kn->wscale + (size_t) nb * kn->n_groups * NB;   /* (n_groups, NB) */
  a += (size_t) r0 * lda;
  za += r0;
  __m512 f[4];
  for (int r = 0; r < 4; r++)
    f[r] = _mm512_setzero_ps ();
  const guint8 *ap = a;
  const int8_t *wp = wb;
  for (int g = 0; g < kn->n_groups; g++) {
    const int quads = (g + 1 < kn->n_groups ? kn->group_steps : kn->last_steps) * (KSTEP / 4);
    __m512i c[4];
    for (int r = 0; r < 4; r++)
      c[r] = _mm512_setzero_si512 ();
    for (int i = 0; i < quads; i++, ap += 4, wp += 4 * NB) {
      const __m512i w = _mm512_load_si512 ((const void *) wp);
      for (int r = 0; r < mr; r++)
        c[r] = _mm512_dpbusd_epi32 (c[r], _mm512_set1_epi32 (load_quad (ap + (size_t) r * lda)), w);
    }
    const __m512i s = _mm512_loadu_si512 ((const void *) (wsum + g * NB));
    const __m512 sc = _mm512_loadu_ps (wscale + g * NB);
    for (int r = 0; r < mr; r++) {
      const __m512i isum = _mm512_sub_epi32 (c[r], _mm512_mullo_epi32 (_mm512_set1_epi32 (za[r]), s));
      const __m512 v = _mm512_mul_round_ps (_mm512_cvtepi32_ps (isum), sc, SAM2_RN);
      f[r] = g == 0 ? v : _mm512_add_round_ps (f[r], v, SAM2_RN);
    }
  }
  const float *bias = o->bias != NULL ? o->bias + col : NULL;
  for (int r = 0; r < mr; r++) {
    if (o->nn - col < NB) {
      float fr[NB];
      _mm512_storeu_ps (fr, f[r]);
      store_row_c (fr, o, r0 + r, col);
      continue;
    }
    __m512 v = _mm512_mul_round_ps (f[r], _mm512_set1_ps (o->sa[r0 + r]), SAM2_RN);
    if (bias != NULL)
      v = _mm512_add_round_ps (v, _mm512_loadu_ps (bias), SAM2_RN);
    const size_t off = (size_t) (r0 + r) * o->ld + col;
    if (o->res != NULL)
      v = _mm512_add_round_ps (v, _mm512_loadu_ps (o->res + off), SAM2_RN);
    _mm512_storeu_ps (o->out + off, v);
  }
}

__attribute__ ((target ("avx512f,avx512vnni"))) static void
block_avx512_vnni (const Sam2QuantKernel *kn, const guint8 *a, size_t lda, const int32_t *za,
                   int rows, int nb0, int nb1, const Sam2TileOut *o)
{
  /* 4-row tiles; the last rows go one at a time */
#define SAM2_TILE_512(r, mr, nb)                                                            \
  do {                                                                                      \
    if ((mr) == 4)                                                                          \
      tile_avx512_vnni (kn, a, lda, za, 4, nb, o, r, ((nb) - nb0) * NB);                    \
    else                                                                                    \
      tile_avx512_vnni (kn, a, lda, za, 1, nb, o, r, ((nb) - nb0) * NB);                    \
  } while (0)
  SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 4, SAM2_TILE_512);
#undef SAM2_TILE_512
}
#endif

/* ---- epilogue and drivers ------------------------------------------------------------------- */

/* What the tiles leave to a second pass, over rows x n outputs of pre (ld apart, modified):
 * + bias (weight-only path; the W4A8 tiles add it), + t[r] (rank) . lora_up_t[:, j] (ldl apart),
 * act, + residual (ldy apart, may be y) -> y. */
SAM2_QUANT_CLONES static void
epilogue (float *pre, int ld, int rows, int n, const float *bias, const float *t, int rank,
          const float *lora_up_t, int ldl, Sam2Act act, const float *residual, float *y,
          size_t ldy)
{
  for (int r = 0; r < rows; r++) {
    float *v = pre + (size_t) r * ld;
    if (bias != NULL) {
#pragma omp simd
      for (int j = 0; j < n; j++)
        v[j] = v[j] + bias[j];
    }
    for (int i = 0; i < rank; i++) {
      const float ti = t[(size_t) r * rank + i];
      const float *l = lora_up_t + (size_t) i * ldl;
#pragma omp simd
      for (int j = 0; j < n; j++)
        v[j] = v[j] + ti * l[j];
    }
    sam2_cpu_act_row (act, v, n);
    float *yr = y + (size_t) r * ldy;
    if (residual != NULL) {
      const float *res = residual + (size_t) r * ldy;
#pragma omp simd
      for (int j = 0; j < n; j++)
        yr[j] = v[j] + res[j];
    } else {
      memcpy (yr, v, (size_t) n * sizeof (float));
    }
  }
}

/* Row m of x into the kernel layout (groups at group_pad strides, pads 0). */
static void
quantize_row_kernel (const Sam2QuantLinear *q, const Sam2QuantKernel *kn, const float *xr,
                     guint8 *dst, float *scale, int32_t *zero)
{
  const int K = q->w.k, G = q->w.group_size;
  const Sam2QuantIsa isa = kn->isa;
  Sam2RowQuant p;
  row_params (q, isa, xr, &p, TRUE);
  if (kn->group_pad == G || kn->n_groups == 1) {
    row_codes (isa, xr, q->smooth_inv, K, &p, dst);
  } else {
    for (int g = 0; g < kn->n_groups; g++) {
      const int k0 = g * G, len = MIN (G, K - k0), o = g * kn->group_pad;
      row_codes (isa, xr + k0, q->smooth_inv != NULL ? q->smooth_inv + k0 : NULL, len, &p, dst + o);
      memset (dst + o + len, 0, (size_t) (g + 1 < kn->n_groups ? kn->group_pad : kn->kl - o) - len);
    }
  }
  if (kn->group_pad == G || kn->n_groups == 1)
    memset (dst + K, 0, (size_t) (kn->kl - K));
  *scale = p.scale;
  *zero = p.add;  /* the kernel's zero point: 128 for the shifted symmetric codes */
}

static void
forward_w4a8 (const Sam2QuantLinear *q, const Sam2QuantKernel *kn, const float *x, int M,
              float *y, Sam2Act act, const float *residual, void *scratch)
{
  const int K = q->w.k, N = q->w.n, R = q->rank;
  Sam2QuantScratch s;
  scratch_layout (q, M, &s);
  guint8 *base = scratch_base (scratch);
  guint8 *codes = base + s.codes;               /* (M, kl) */
  float *sa = (float *) (base + s.scales);      /* (M) */
  int32_t *za = (int32_t *) (base + s.zeros);   /* (M) */
  float *t = (float *) (base + s.t);            /* (M, R) */
  const size_t kl = kn->kl;

  if (R > 0 && dnnl_sgemm ('N', 'T', M, R, K, 1.0f, x, K, kn->lora_down, K, 0.0f, t, R)
                 != dnnl_success)
    g_critical ("dnnl_sgemm failed on the low-rank branch (%d x %d x %d)", M, K, R);

#ifdef _OPENMP
  const int n_threads = omp_get_max_threads ();
#else
  const int n_threads = 1;
#endif
  const int n_row_blocks = (M + ROW_BLOCK - 1) / ROW_BLOCK;
  const gboolean fused = n_row_blocks >= 4 * n_threads;
  /* channel blocks per item: all of them when fused, else few enough for 4 items per thread */
  int item_blocks = kn->n_blocks;
  if (!fused) {
    const int want = (4 * n_threads + n_row_blocks - 1) / n_row_blocks;
    item_blocks = MAX (1, kn->n_blocks / want);
  }
  const int n_chunks = (kn->n_blocks + item_blocks - 1) / item_blocks;
  const long n_items = (long) n_row_blocks * n_chunks;
  /* without a low-rank branch or an activation the tiles finish the outputs in y */
  const gboolean direct = R == 0 && act == SAM2_ACT_NONE;

#pragma omp parallel if (n_threads > 1)
  {
    if (!fused) {
#pragma omp for schedule(static)
      for (int m = 0; m < M; m++)
        quantize_row_kernel (q, kn, x + (size_t) m * K, codes + m * kl, &sa[m], &za[m]);
    }
#pragma omp for schedule(dynamic)
    for (long item = 0; item < n_items; item++) {
      const int m0 = (int) (item / n_chunks) * ROW_BLOCK, rows = MIN (ROW_BLOCK, M - m0);
      const int nb0 = (int) (item % n_chunks) * item_blocks;
      const int nb1 = MIN (nb0 + item_blocks, kn->n_blocks);
      if (fused)
        for (int r = 0; r < rows; r++)
          quantize_row_kernel (q, kn, x + (size_t) (m0 + r) * K, codes + (m0 + r) * kl,
                               &sa[m0 + r], &za[m0 + r]);
      if (direct) {
        const int n0 = nb0 * NB;
        const Sam2TileOut o = {
          .out = y + (size_t) m0 * N + n0, .ld = N, .sa = sa + m0,
          .bias = q->bias != NULL ? q->bias + n0 : NULL,
          .res = residual != NULL ? residual + (size_t) m0 * N + n0 : NULL,
          .nn = MIN (nb1 * NB, N) - n0,
        };
        kn->block (kn, codes + m0 * kl, kl, za + m0, rows, nb0, nb1, &o);
        continue;
      }
      float pre[ROW_BLOCK * CHUNK] __attribute__ ((aligned (64)));  /* (rows, CHUNK) */
      for (int c0 = nb0; c0 < nb1; c0 += CHUNK / NB) {
        const int c1 = MIN (c0 + CHUNK / NB, nb1);
        const int n0 = c0 * NB, nn = MIN (c1 * NB, N) - n0;
        const Sam2TileOut o = {
          .out = pre, .ld = CHUNK, .sa = sa + m0,
          .bias = q->bias != NULL ? q->bias + n0 : NULL, .nn = nn,
        };
        kn->block (kn, codes + m0 * kl, kl, za + m0, rows, c0, c1, &o);
        epilogue (pre, CHUNK, rows, nn, NULL, t + (size_t) m0 * R, R,
                  R > 0 ? kn->lora_up_t + n0 : NULL, N, act,
                  residual != NULL ? residual + (size_t) m0 * N + n0 : NULL,
                  y + (size_t) m0 * N + n0, N);
      }
    }
  }
}

static void
forward_weight_only (const Sam2QuantLinear *q, const Sam2QuantKernel *kn, const float *x, int M,
                     float *y, Sam2Act act, const float *residual, void *scratch)
{
  const int K = q->w.k, N = q->w.n;
  if (residual == NULL || act == SAM2_ACT_NONE) {
    float beta = 0.0f;
    if (residual != NULL) {
      if (residual != y)
        memcpy (y, residual, (size_t) M * N * sizeof (float));
      beta = 1.0f;
    }
    /* y (M, N) (+)= x (M, K) W_eff^T, W_eff (N, K): row-major "NT" as the float linear op */
    if (dnnl_sgemm ('N', 'T', M, N, K, 1.0f, x, K, kn->w_float, K, beta, y, N) != dnnl_success)
      g_critical ("dnnl_sgemm failed (%d x %d x %d)", M, K, N);
    sam2_cpu_bias_act (y, M, N, q->bias, act);
    return;
  }
  /* act then residual: the product goes through a buffer, so residual may be y */
  Sam2QuantScratch s;
  scratch_layout (q, M, &s);
  float *buf = (float *) (scratch_base (scratch) + s.wo);   /* (WO_CHUNK_ROWS, N) */
  for (int m0 = 0; m0 < M; m0 += WO_CHUNK_ROWS) {
    const int rows = MIN (WO_CHUNK_ROWS, M - m0);
    if (dnnl_sgemm ('N', 'T', rows, N, K, 1.0f, x + (size_t) m0 * K, K, kn->w_float, K, 0.0f,
                    buf, N) != dnnl_success)
      g_critical ("dnnl_sgemm failed (%d x %d x %d)", rows, K, N);
#pragma omp parallel for schedule(static) if ((size_t) rows * N > 65536)
    for (int r = 0; r < rows; r++)
      epilogue (buf + (size_t) r * N, N, 1, N, q->bias, NULL, 0, NULL, 0, act,
                residual + (size_t) (m0 + r) * N, y + (size_t) (m0 + r) * N, N);
  }
}

void
sam2_quant_linear_forward (const Sam2QuantLinear *q, const float *x, int M, float *y,
                           Sam2Act act, const float *residual, void *scratch)
{
  g_return_if_fail (q != NULL && x != NULL && y != NULL && scratch != NULL);
  const Sam2QuantKernel *kn = q->kernel;
  g_return_if_fail (kn != NULL && kn->magic == KERNEL_MAGIC);
  if (M <= 0)
    return;
  if (q->act == SAM2_ACT_QUANT_NONE)
    forward_weight_only (q, kn, x, M, y, act, residual, scratch);
  else
    forward_w4a8 (q, kn, x, M, y, act, residual, scratch);
}
