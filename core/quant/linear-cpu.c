/* linear-cpu.c: quantized linear layers on the CPU; the contract is in linear-cpu.h, the layouts
 * in formats.h.
 *
 * The W4A8 kernel
 * ---------------
 * The x86 byte dot products (vpmaddubsw; vpdpbusd with VNNI) multiply an unsigned byte by a
 * signed one. The unsigned operand here is the weights' 4-bit code q (0..15), kept as it is
 * stored, and the signed one the activation as int8: a (-127..127) for symmetric rows, u - 128
 * for asymmetric ones (u 0..255). The zero points come out exactly, in int32, per weight group:
 *   sum_k (a_k - Za)(q_k - z) = sum_k a_k q_k - z sum_k a_k - Za sum_k (q_k - z)
 * with Za = 0 (symmetric) or za - 128 (asymmetric), sum_k a_k per (row, group) taken when the row
 * is quantized, and sum_k (q_k - z) per (channel, group) at prepare time (the zero-point
 * compensation of gemmlowp and of oneDNN's int8 kernels, done per group as in QServe's W4A8 GEMM).
 *
 * Weights. The codes are expanded once, in prepare, to one byte each and repacked in blocks of 16
 * output channels: per 4 consecutive k, 64 bytes holding q[n0 + j][k .. k + 3] at bytes
 * 4j .. 4j + 3 (the "4 k per 32-bit lane" operand layout of VNNI, oneDNN's brgemm int8 and
 * llama.cpp's repacked x86 kernels). A 32-bit lane is one output channel, so the dot products land
 * in int32 lanes per channel without horizontal sums. Bytes rather than nibbles double the weight
 * memory but leave no unpacking in the inner loop, which on these shapes is bound by the vector
 * ALUs, not by memory (Marlin and QServe unpack in registers because small-batch GPU GEMMs are
 * memory bound). Groups are padded to 32 k with zero codes (a tail group, K odd, a group size not
 * a multiple of 32), and activation rows get the same padding (pad bytes 0), so every loop runs
 * whole 32-k steps; the padding adds nothing to any sum.
 *
 * Inner loop, AVX2 (no VNNI): per 4 k, the 2 weight vectors of the block (channels 0-7, 8-15) are
 * loaded once and multiplied (vpmaddubsw: u8 x s8, adjacent pairs summed into int16, saturating)
 * with the broadcast activation quad (vpbroadcastd) of each of 3 rows. With q <= 15 and
 * |a| <= 128 a pair sum is at most 2 * 15 * 128 = 3840, so vpmaddubsw never saturates, and 8 of
 * them still fit int16 (8 * 3840 = 30720 < 32767): a whole 32-k step is summed in int16 (vpaddw)
 * and widened once (vpmaddwd by ones, vpaddd). That is 9 multiply uops per 256 products of a row
 * and channel octet, where an int8 x int8 GEMM without VNNI needs 16 (one vpmaddwd per vpmaddubsw,
 * since a single int8 x int8 pair can already saturate): the 4-bit weights buy it. Tile: 3 rows x
 * 16 channels (6 int16 sums, 6 int32 sums, 2 weight vectors, a broadcast and the ones, loaded
 * anew each step: all 16 ymm registers). Measured 1.2-1.4x the throughput of the int8-weights
 * form (weights signed, 2 rows x 16 channels, int16 sums over 16 k). A single weight group
 * (K <= group size: stage 1's K = 96) has its own form, with no float sums carried across groups
 * (about 10% faster there).
 * Inner loop, AVX-512 VNNI: vpdpbusd (u8 x s8, 4 products summed into int32, no intermediate
 * saturation), 4 rows x 16 channels per tile, one weight zmm per 4 k shared by the 4 rows.
 * Portable C: the same sums in plain int32 arithmetic.
 *
 * Per group the exact int32 sum becomes float: acc += (float) isum * s[n][g], as a multiply then
 * an add in every path (no FMA), and the per-row activation scale is applied once at the end (it
 * is common to all groups: one multiply per output instead of one per group, and one rounding
 * fewer). So the C, AVX2 and AVX-512 paths give bit-identical outputs; (float) isum is exact while
 * |isum| < 2^24, which holds for every group of up to 4386 columns (|a - Za| <= 255 and
 * |q - z| <= 15 per column).
 *
 * Epilogue. Without a low-rank branch or an activation, the tiles finish the outputs in y:
 * acc sa[m] + bias + residual, with non-temporal stores when y is far larger than the caches.
 * A tile's row piece (16 floats) straddles two cache lines of a 16-byte aligned y, and partly
 * streamed lines stall the stores: where whole rows of at most 512 outputs are streamed and the
 * weights of all channel blocks take at most 64 KiB (AVX2; stage 1 of the tiny encoder), each
 * 3-row tile runs over all blocks (weights from L1 and L2) into a buffer in L1, and the rows,
 * contiguous in y, are streamed from it in whole lines (stage-1 qkv 8%, a 96 -> 384 layer 17%
 * faster on the 2-core Zen 3; the 576-column stage-2 qkv with 110 KiB of weights gained nothing).
 * Otherwise they leave acc sa + bias in a stack buffer of up to 128 outputs per row, and a second
 * pass adds the low-rank branch, applies the activation (sam2_cpu_act_row) and the residual. The
 * low-rank branch is t (M, r) = x (L_down diag(smooth_inv))^T by one dnnl_sgemm per call
 * (smoothing folded into L_down at prepare), then t L_up^T added per row and chunk (the fused
 * low-rank up-projection of nunchaku's SVDQuant kernels): a separate sgemm with beta = 1 into y
 * would need y to hold the pre-activation sum, which breaks residual == y with an activation and
 * costs another pass over y.
 *
 * Blocking and threads: rows in blocks of 48 (the codes of a block, 48 x K bytes, stay in L2
 * while the weights pass); within a block, each tile sweeps as many 16-channel weight blocks as
 * fit L1 together (16 for K = 96, 1 for K >= 1536), so weights come from L1 and each
 * row's outputs are written in contiguous runs. With many row blocks each work item is one row
 * block over all outputs and quantizes its own rows just before using them (the codes never leave
 * the cache); with few (small M: the decoder) all rows are quantized first and the items are (row
 * block, channel range) pairs, so that M = 1 still spreads over the threads. OpenMP, dynamic
 * schedule.
 *
 * Fused MLP (sam2_quant_mlp_forward): a block's LayerNorm, fc1, activation and fc2 per row block
 * of 12-48 rows, in one work item: the normalised rows go straight to fc1's codes, fc1's outputs
 * to a buffer the size of the block that stays in L2, the activation and fc2's quantization run
 * on it there, and fc2 writes the block's outputs. Unfused, the hidden activations (4 times the
 * block's width) were written as floats by fc1 and read back twice by fc2's quantization; on
 * the 2-core AVX2 machine the MLP of a stage-1 block (65536 rows) took 1.4x as long that way.
 *
 * Dispatch: the best of AVX-512 VNNI, AVX2 and C that the CPU runs, chosen in prepare
 * (__builtin_cpu_supports). The environment variable SAM2_QUANT_KERNEL = c | avx2 caps the choice
 * (it never selects what the CPU lacks): tests use it to compare the paths.
 *
 * Weight-only layers (SAM2_ACT_QUANT_NONE, the W4A16 CPU path): prepare dequantizes the weights
 * once, folds the low-rank branch and the smoothing into them
 * (W_eff = (W + L_up L_down) diag(smooth_inv), exact algebra: nothing is quantized between them),
 * and the forward is one dnnl_sgemm and the epilogue. */
#include "linear-cpu.h"
#include "ops-cpu.h"

#include <dnnl.h>
#include <float.h>
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
 * ops-cpu-vec.c, and its exception under ThreadSanitizer). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) \
    && !defined(__SANITIZE_THREAD__)
#define SAM2_QUANT_CLONES \
  __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SAM2_QUANT_CLONES
#endif

#define NB 16             /* output channels per packed weight block */
#define KSTEP 32          /* k per inner step; groups and activation rows are padded to it */
#define ROW_BLOCK 48      /* rows per work item (a multiple of the AVX2 and AVX-512 tiles) */
#define CHUNK 128         /* outputs per epilogue buffer row (a multiple of NB) */
#define WO_CHUNK_ROWS 256 /* weight-only path: rows per sgemm when act and residual combine */
#define STREAM_BYTES ((size_t) 32 << 20) /* outputs from this size are stored non-temporally */
#define L1_WEIGHT_BYTES 24576 /* weight blocks a row sweep reuses from L1 (of 32 KiB or more) */
#define KERNEL_MAGIC 0x53513441u /* "SQ4A": the kernel is this file's */

typedef enum {
  ISA_C,
  ISA_AVX2,
  ISA_AVX512_VNNI,
} Sam2QuantIsa;

typedef struct _Sam2QuantKernel Sam2QuantKernel;

/* Quantized activation rows as the kernel reads them. */
typedef struct {
  const guint8 *codes;   /* (rows, ld): int8 codes in the kernel layout */
  size_t ld;
  const int32_t *zero;   /* (rows): Za, 0 (symmetric) or za - 128 */
  const int32_t *sums;   /* (rows, n_groups): sum of the codes of each group */
} Sam2ActRows;

/* Where results go: row r, column j (< nn, counted from the first channel computed) gets
 *   out[r ld + j] = (acc[r][j] sa[r] + bias[j]) + res[r ld + j]
 * with acc[r][j] = sum_g (float) isum_g[r][j] s_g[j] (bias and res optional; res may be out: each
 * element is read before it is written). */
typedef struct {
  float *out;
  size_t ld;
  const float *sa;       /* (rows) */
  const float *bias;     /* (nn) or NULL */
  const float *res;      /* rows ld apart, or NULL */
  int nn;
  gboolean stream;       /* an output far larger than the caches: non-temporal stores */
} Sam2TileOut;

/* The integer GEMM of `rows` activation rows with weight blocks nb0 .. nb1 - 1, stored as o
 * says. */
typedef void (*Sam2QuantBlockFn) (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows,
                                  int nb0, int nb1, const Sam2TileOut *o);

struct _Sam2QuantKernel {
  guint32 magic;
  Sam2QuantIsa isa;
  Sam2QuantBlockFn block;
  gboolean asym;            /* activations with zero points */
  int n_blocks;             /* ceil(N / NB) */
  int n_groups;
  int group_pad;            /* group_size rounded up to KSTEP: the stride of groups in a row */
  int group_steps;          /* KSTEP steps of a full group */
  int last_steps;           /* KSTEP steps of the last (possibly tail) group */
  int kl;                   /* activation row length in the kernel layout, a multiple of KSTEP */
  int l1_blocks;            /* weight blocks that fit L1 together: the span of a row sweep */
  guint8 *w;                /* (n_blocks, kl / 4, NB, 4): the codes q, 64-byte aligned */
  int32_t *wzero;           /* (n_blocks, n_groups, NB): z, 0 past N */
  int32_t *wsum;            /* (n_blocks, n_groups, NB): sum of q - z over the group */
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

/* min(0, min_k v) and max(0, max_k v) of v = x * smooth (smooth may be NULL), and whether every
 * v is finite (the range is meaningless otherwise: row_params). Min and max are exact, so the
 * vector and scalar forms agree whatever their order. */
static gboolean
row_range_c (const float *x, const float *smooth, int n, float *lo, float *hi)
{
  float l = 0.0f, h = 0.0f;
  gboolean finite = TRUE;
  for (int k = 0; k < n; k++) {
    const float v = smooth != NULL ? x[k] * smooth[k] : x[k];
    finite &= fabsf (v) <= FLT_MAX;    /* false for NaN and +-inf */
    l = v < l ? v : l;
    h = v > h ? v : h;
  }
  *lo = l;
  *hi = h;
  return finite;
}

/* One code, exactly as the vector forms compute it: the clamps are vmaxps / vminps with the bound
 * second (a NaN gives the bound), and v + copysign(0.5, v) truncated is sam2_round_half_away
 * (x - 0.5 is x + (-0.5) in IEEE arithmetic). */
static inline guint8
code_c (float v, const Sam2RowQuant *p)
{
  v = v / p->scale;
  v = v > p->lo ? v : p->lo;
  v = v < p->hi ? v : p->hi;
  return (guint8) (((int) (v + copysignf (0.5f, v)) + p->add) ^ p->flip);
}

static void
row_codes_c (const float *x, const float *smooth, int n, const Sam2RowQuant *p, guint8 *dst)
{
  for (int k = 0; k < n; k++)
    dst[k] = code_c (smooth != NULL ? x[k] * smooth[k] : x[k], p);
}

#ifdef SAM2_QUANT_X86
__attribute__ ((target ("avx2"))) static gboolean
row_range_avx2 (const float *x, const float *smooth, int n, float *lo, float *hi)
{
  const __m256 magnitude = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));
  const __m256 largest = _mm256_set1_ps (FLT_MAX);
  __m256 l = _mm256_setzero_ps (), h = _mm256_setzero_ps (), bad = _mm256_setzero_ps ();
  int k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 v = _mm256_loadu_ps (x + k);
    if (smooth != NULL)
      v = _mm256_mul_ps (v, _mm256_loadu_ps (smooth + k));
    /* |v| <= FLT_MAX is false for NaN and +-inf (vminps / vmaxps would drop a NaN: then the
     * lanes' ranges are wrong, but the row is refused as a whole) */
    bad = _mm256_or_ps (bad, _mm256_cmp_ps (_mm256_and_ps (v, magnitude), largest, _CMP_NLE_UQ));
    l = _mm256_min_ps (l, v);
    h = _mm256_max_ps (h, v);
  }
  float lv[8], hv[8], lt, ht;
  _mm256_storeu_ps (lv, l);
  _mm256_storeu_ps (hv, h);
  const gboolean finite = row_range_c (x + k, smooth != NULL ? smooth + k : NULL, n - k, &lt, &ht)
                          && _mm256_movemask_ps (bad) == 0;
  for (int i = 0; i < 8; i++) {
    lt = lv[i] < lt ? lv[i] : lt;
    ht = hv[i] > ht ? hv[i] : ht;
  }
  *lo = lt;
  *hi = ht;
  return finite;
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
 * same way. A row holding a NaN or an infinity (after smoothing), in any mode, gets scale NaN
 * and every code that of 0 (zero point 0 when asymmetric), so its outputs are NaN as the float
 * layer's would be, and the same on every path: the range once dropped a NaN, and an infinite
 * scale coded the finite values as 0, so the row came out finite and wrong. */
static void
row_params (const Sam2QuantLinear *q, Sam2QuantIsa isa, const float *x, Sam2RowQuant *p,
            gboolean kernel_form)
{
  const int K = q->w.k;
  const gboolean asym = act_is_asym (q->act);
  float scale, zero = 0.0f, lo, hi;
  gboolean finite;
#ifdef SAM2_QUANT_X86
  if (isa >= ISA_AVX2)
    finite = row_range_avx2 (x, q->smooth_inv, K, &lo, &hi);
  else
#endif
    finite = row_range_c (x, q->smooth_inv, K, &lo, &hi);
  if (act_is_static (q->act)) {
    scale = q->act_scale;
    zero = q->act_zero;
  } else {
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
  if (!finite) {
    scale = NAN;
    zero = 0.0f;
  }
  p->scale = scale;
  if (asym) {
    /* clamped before rounding (the same for whole bounds), so a wild static value cannot
     * overflow the conversion */
    const int za = sam2_round_half_away (CLAMP (zero, 0.0f, 255.0f));
    p->lo = (float) -za;
    p->hi = (float) (255 - za);
    p->add = za;
    p->flip = kernel_form ? 0x80 : 0;  /* the kernel's signed form: u - 128 */
    p->zero = za;
  } else {
    /* codes -127..127 as int8 bytes, in both forms: computed as a + 128 (0..255, what the
     * unsigned packing instructions narrow) with the top bit flipped back */
    p->lo = -127.0f;
    p->hi = 127.0f;
    p->add = 128;
    p->flip = 0x80;
    p->zero = 0;
  }
  if (!finite)
    p->lo = p->hi = 0.0f;   /* v / NaN is NaN, which the clamps turn into 0: the code of 0 */
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
  size_t sums;                  /* (M, n_groups) int32 */
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
    s->sums = off;
    off = align64 (off + (size_t) M * q->w.n_groups * sizeof (int32_t));
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

static void block_c (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows, int nb0, int nb1,
                     const Sam2TileOut *o);
#ifdef SAM2_QUANT_X86
static void block_avx2 (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows, int nb0,
                        int nb1, const Sam2TileOut *o);
static void block_avx512_vnni (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows,
                               int nb0, int nb1, const Sam2TileOut *o);
#endif

static void
kernel_free (gpointer data)
{
  Sam2QuantKernel *kn = data;
  if (kn == NULL)
    return;
  free (kn->w);
  g_free (kn->wzero);
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
  kn->asym = act_is_asym (q->act);
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
  kn->wzero = g_try_new0 (int32_t, (size_t) kn->n_blocks * NG * NB);
  kn->wsum = g_try_new0 (int32_t, (size_t) kn->n_blocks * NG * NB);
  kn->wscale = g_try_new0 (float, (size_t) kn->n_blocks * NG * NB);
  if (kn->wzero == NULL || kn->wsum == NULL || kn->wscale == NULL)
    return FALSE;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const int nb = n / NB, j = n % NB;
    guint8 *wb = kn->w + (size_t) nb * kn->kl * NB;         /* (kl / 4, NB, 4) */
    for (int g = 0; g < NG; g++) {
      const int k0 = g * G, k1 = MIN (k0 + G, K);
      const int z = w->zeros[(size_t) n * NG + g];
      int32_t sum = 0;
      for (int k = k0; k < k1; k++) {
        const int code = sam2_w4_get (w->codes, K, n, k);
        const int pos = g * kn->group_pad + (k - k0);   /* position in the padded row */
        wb[(size_t) (pos & ~3) * NB + j * 4 + (pos & 3)] = (guint8) code;
        sum += code - z;
      }
      const size_t o = ((size_t) nb * NG + g) * NB + j;
      kn->wzero[o] = z;
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
  /* the int16 sums of the AVX2 kernel are exact only for codes and zero points <= 15 */
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

/* The loop nest every path shares: rows in tiles of MR (the last ones one at a time) and, for
 * each tile, a sweep over up to l1_blocks weight blocks: their weights stay in L1 across the
 * sweep, and each row's outputs are written in contiguous runs, which the hardware prefetchers
 * follow. With large K a sweep is one block, and the order becomes block by block, each block's
 * weights reused by all row tiles. `tile` is called as tile (r, mr, nb). */
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
tile_c (const Sam2QuantKernel *kn, const Sam2ActRows *a, int r, int nb, const Sam2TileOut *o,
        int col)
{
  const int NG = kn->n_groups;
  const int32_t *wzero = kn->wzero + (size_t) nb * NG * NB;  /* (NG, NB) */
  const int32_t *wsum = kn->wsum + (size_t) nb * NG * NB;    /* (NG, NB) */
  const float *wscale = kn->wscale + (size_t) nb * NG * NB;  /* (NG, NB) */
  const gint8 *ap = (const gint8 *) (a->codes + (size_t) r * a->ld);
  const guint8 *wp = kn->w + (size_t) nb * kn->kl * NB;
  const int32_t za = a->zero[r], *asum = a->sums + (size_t) r * NG;
  float f[NB] = { 0 };
  for (int g = 0; g < NG; g++) {
    const int quads = (g + 1 < NG ? kn->group_steps : kn->last_steps) * (KSTEP / 4);
    int32_t acc[NB];
    for (int j = 0; j < NB; j++)
      acc[j] = -wzero[g * NB + j] * asum[g] - za * wsum[g * NB + j];
    for (int i = 0; i < quads; i++, ap += 4, wp += 4 * NB)
      for (int j = 0; j < NB; j++)
        acc[j] += wp[4 * j] * ap[0] + wp[4 * j + 1] * ap[1] + wp[4 * j + 2] * ap[2]
                  + wp[4 * j + 3] * ap[3];
    for (int j = 0; j < NB; j++) {
      const float v = (float) acc[j] * wscale[g * NB + j];
      f[j] = g == 0 ? v : f[j] + v;   /* 0 + v would turn -0 into +0: assign, as the SIMD paths */
    }
  }
  store_row_c (f, o, r, col);
}

static void
block_c (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows, int nb0, int nb1,
         const Sam2TileOut *o)
{
#define SAM2_TILE_C(r, mr, nb) tile_c (kn, a, r, nb, o, ((nb) - nb0) * NB)
  SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 1, SAM2_TILE_C);
#undef SAM2_TILE_C
}

#ifdef SAM2_QUANT_X86
/* An empty asm that claims to modify v: keeps v in a register (GCC otherwise folds the weight
 * loads into every row's vpmaddubsw as memory operands, multiplying the loads) and stops GCC's
 * reassociation from regrouping the int16 sums into trees that need more registers than there
 * are (it then spills inside the loop). */
#define SAM2_PIN(v) __asm__ ("" : "+x"(v))

/* Quad i (4 k) of the current step for up to 3 rows: t_rh (+)= q (channels 8h..8h+7) x a_r. */
#define SAM2_AVX2_QUAD(i, first)                                                           \
  do {                                                                                     \
    __m256i w0_ = _mm256_load_si256 ((const __m256i *) (wp + (i) * 4 * NB));               \
    __m256i w1_ = _mm256_load_si256 ((const __m256i *) (wp + (i) * 4 * NB + 32));          \
    SAM2_PIN (w0_);                                                                        \
    SAM2_PIN (w1_);                                                                        \
    __m256i b_ = _mm256_set1_epi32 (load_quad (a0 + 4 * (i)));                             \
    t00 = (first) ? _mm256_maddubs_epi16 (w0_, b_)                                         \
                  : _mm256_add_epi16 (t00, _mm256_maddubs_epi16 (w0_, b_));                \
    t01 = (first) ? _mm256_maddubs_epi16 (w1_, b_)                                         \
                  : _mm256_add_epi16 (t01, _mm256_maddubs_epi16 (w1_, b_));                \
    SAM2_PIN (t00);                                                                        \
    SAM2_PIN (t01);                                                                        \
    if (mr > 1) {                                                                          \
      b_ = _mm256_set1_epi32 (load_quad (a1 + 4 * (i)));                                   \
      t10 = (first) ? _mm256_maddubs_epi16 (w0_, b_)                                       \
                    : _mm256_add_epi16 (t10, _mm256_maddubs_epi16 (w0_, b_));              \
      t11 = (first) ? _mm256_maddubs_epi16 (w1_, b_)                                       \
                    : _mm256_add_epi16 (t11, _mm256_maddubs_epi16 (w1_, b_));              \
      SAM2_PIN (t10);                                                                      \
      SAM2_PIN (t11);                                                                      \
    }                                                                                      \
    if (mr > 2) {                                                                          \
      b_ = _mm256_set1_epi32 (load_quad (a2 + 4 * (i)));                                   \
      t20 = (first) ? _mm256_maddubs_epi16 (w0_, b_)                                       \
                    : _mm256_add_epi16 (t20, _mm256_maddubs_epi16 (w0_, b_));              \
      t21 = (first) ? _mm256_maddubs_epi16 (w1_, b_)                                       \
                    : _mm256_add_epi16 (t21, _mm256_maddubs_epi16 (w1_, b_));              \
      SAM2_PIN (t20);                                                                      \
      SAM2_PIN (t21);                                                                      \
    }                                                                                      \
  } while (0)

/* The group's zero-point terms, -(z asum[g] + Za wsum), as the starting value of an int32 sum:
 * computed while the loop runs rather than after it (Za is 0 for symmetric rows). */
#define SAM2_AVX2_CORR(r, zv, sv)                                                          \
  _mm256_sub_epi32 (                                                                       \
    asym ? _mm256_mullo_epi32 (sv, _mm256_set1_epi32 (-za##r)) : _mm256_setzero_si256 (),  \
    _mm256_mullo_epi32 (zv, _mm256_set1_epi32 (as##r[g])))

/* acc (+)= (float) isum * scale; the first group assigns (0 + v would turn -0 into +0; the C
 * path assigns too, so the paths stay bit-identical). */
#define SAM2_AVX2_GROUP_ACC(acc, isum, scale)                                              \
  do {                                                                                     \
    const __m256 v_ = _mm256_mul_ps (_mm256_cvtepi32_ps (isum), scale);                    \
    acc = g == 0 ? v_ : _mm256_add_ps (acc, v_);                                           \
  } while (0)

static const int16_t ones16[16] __attribute__ ((aligned (32))) = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* A tile of mr (1 .. 3) rows from r0 x 16 channels of block nb, over all groups. Per 32-k step
 * each row and channel octet gets one int16 sum of 8 vpmaddubsw (exact: see the top of the
 * file), widened once. */
__attribute__ ((target ("avx2"), always_inline)) static inline void
tile_avx2 (const Sam2QuantKernel *kn, const Sam2ActRows *a, const int mr, const int one_group,
           int r0, int nb, const Sam2TileOut *o, int col)
{
  /* one_group (a constant where inlined): the float accumulators are the group's products,
   * nothing is carried across groups */
  const int NG = one_group ? 1 : kn->n_groups;
  const int32_t *wzero = kn->wzero + (size_t) nb * NG * NB;  /* (NG, NB) */
  const int32_t *wsum = kn->wsum + (size_t) nb * NG * NB;    /* (NG, NB) */
  const float *wscale = kn->wscale + (size_t) nb * NG * NB;  /* (NG, NB) */
  const guint8 *wp = kn->w + (size_t) nb * kn->kl * NB;      /* (kl / 4, NB, 4) */
  const guint8 *a0 = a->codes + (size_t) r0 * a->ld;
  const guint8 *a1 = mr > 1 ? a0 + a->ld : a0, *a2 = mr > 2 ? a0 + 2 * a->ld : a0;
  const int32_t *as0 = a->sums + (size_t) r0 * NG;
  const int32_t *as1 = mr > 1 ? as0 + NG : as0, *as2 = mr > 2 ? as0 + 2 * NG : as0;
  const int32_t za0 = a->zero[r0], za1 = mr > 1 ? a->zero[r0 + 1] : 0;
  const int32_t za2 = mr > 2 ? a->zero[r0 + 2] : 0;
  const gboolean asym = kn->asym;
  __m256 f00 = _mm256_setzero_ps (), f01 = f00, f10 = f00, f11 = f00, f20 = f00, f21 = f00;
  for (int g = 0; g < NG; g++) {
    const int steps = one_group || g + 1 == NG ? kn->last_steps : kn->group_steps;
    const __m256i z0 = _mm256_loadu_si256 ((const __m256i *) (wzero + g * NB));
    const __m256i z1 = _mm256_loadu_si256 ((const __m256i *) (wzero + g * NB + 8));
    const __m256i s0 = _mm256_loadu_si256 ((const __m256i *) (wsum + g * NB));
    const __m256i s1 = _mm256_loadu_si256 ((const __m256i *) (wsum + g * NB + 8));
    __m256i c00 = SAM2_AVX2_CORR (0, z0, s0), c01 = SAM2_AVX2_CORR (0, z1, s1);
    __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01;
    if (mr > 1) {
      c10 = SAM2_AVX2_CORR (1, z0, s0);
      c11 = SAM2_AVX2_CORR (1, z1, s1);
    }
    if (mr > 2) {
      c20 = SAM2_AVX2_CORR (2, z0, s0);
      c21 = SAM2_AVX2_CORR (2, z1, s1);
    }
    for (int s = 0; s < steps; s++, a0 += KSTEP, a1 += KSTEP, a2 += KSTEP, wp += KSTEP * NB) {
      const __m256i t_unused = _mm256_setzero_si256 ();  /* rows past mr: never used */
      __m256i t00, t01, t10 = t_unused, t11 = t_unused, t20 = t_unused, t21 = t_unused;
      SAM2_AVX2_QUAD (0, 1);
      SAM2_AVX2_QUAD (1, 0);
      SAM2_AVX2_QUAD (2, 0);
      SAM2_AVX2_QUAD (3, 0);
      SAM2_AVX2_QUAD (4, 0);
      SAM2_AVX2_QUAD (5, 0);
      SAM2_AVX2_QUAD (6, 0);
      SAM2_AVX2_QUAD (7, 0);
      /* the ones are loaded again each step rather than kept: the register they would hold
       * keeps all six int32 sums in registers (otherwise one is spilled and reloaded per step) */
      const __m256i *onesp = (const __m256i *) ones16;
      __asm__ ("" : "+r"(onesp));
      const __m256i ones = _mm256_load_si256 (onesp);
      c00 = _mm256_add_epi32 (c00, _mm256_madd_epi16 (t00, ones));
      c01 = _mm256_add_epi32 (c01, _mm256_madd_epi16 (t01, ones));
      if (mr > 1) {
        c10 = _mm256_add_epi32 (c10, _mm256_madd_epi16 (t10, ones));
        c11 = _mm256_add_epi32 (c11, _mm256_madd_epi16 (t11, ones));
      }
      if (mr > 2) {
        c20 = _mm256_add_epi32 (c20, _mm256_madd_epi16 (t20, ones));
        c21 = _mm256_add_epi32 (c21, _mm256_madd_epi16 (t21, ones));
      }
    }
    const __m256 sc0 = _mm256_loadu_ps (wscale + g * NB);
    const __m256 sc1 = _mm256_loadu_ps (wscale + g * NB + 8);
    SAM2_AVX2_GROUP_ACC (f00, c00, sc0);
    SAM2_AVX2_GROUP_ACC (f01, c01, sc1);
    if (mr > 1) {
      SAM2_AVX2_GROUP_ACC (f10, c10, sc0);
      SAM2_AVX2_GROUP_ACC (f11, c11, sc1);
    }
    if (mr > 2) {
      SAM2_AVX2_GROUP_ACC (f20, c20, sc0);
      SAM2_AVX2_GROUP_ACC (f21, c21, sc1);
    }
  }
  const float *bias = o->bias != NULL ? o->bias + col : NULL;
  for (int r = 0; r < mr; r++) {
    const __m256 fa = r == 0 ? f00 : r == 1 ? f10 : f20, fb = r == 0 ? f01 : r == 1 ? f11 : f21;
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
    if (o->stream && ((uintptr_t) out & 15) == 0) {
      /* 16-byte streams: g_malloc'd tensors are 16-byte aligned (mmap + header), not 32 */
      _mm_stream_ps (out, _mm256_castps256_ps128 (v0));
      _mm_stream_ps (out + 4, _mm256_extractf128_ps (v0, 1));
      _mm_stream_ps (out + 8, _mm256_castps256_ps128 (v1));
      _mm_stream_ps (out + 12, _mm256_extractf128_ps (v1, 1));
    } else {
      _mm256_storeu_ps (out, v0);
      _mm256_storeu_ps (out + 8, v1);
    }
  }
}

/* Streaming from a row tile's buffer: rows of up to STAGE_N outputs, while the weights of all
 * blocks (which each row tile then sweeps) stay within L1 and L2. */
#define STAGE_N 512
#define STAGE_WEIGHT_BYTES 65536

/* n floats from src to dst: dst's whole 64-byte lines with non-temporal stores, the partial
 * lines at either end with ordinary ones (a partly streamed line costs a partial
 * write-combining flush). */
__attribute__ ((target ("avx2"))) static void
stream_rows_avx2 (float *dst, const float *src, size_t n)
{
  const size_t head = (size_t) ((64 - ((uintptr_t) dst & 63)) & 63) / sizeof (float);
  if (((uintptr_t) dst & 3) != 0 || head >= n) {
    memcpy (dst, src, n * sizeof (float));
    return;
  }
  memcpy (dst, src, head * sizeof (float));
  size_t i = head;
  for (; i + 16 <= n; i += 16) {
    _mm256_stream_ps (dst + i, _mm256_loadu_ps (src + i));
    _mm256_stream_ps (dst + i + 8, _mm256_loadu_ps (src + i + 8));
  }
  memcpy (dst + i, src + i, (n - i) * sizeof (float));
}

__attribute__ ((target ("avx2"))) static void
block_avx2 (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows, int nb0, int nb1,
            const Sam2TileOut *o)
{
#define SAM2_TILE_AVX2(r, mr, nb) tile_avx2 (kn, a, mr, 0, r, nb, o, ((nb) - nb0) * NB)
#define SAM2_TILE_AVX2_1(r, mr, nb) tile_avx2 (kn, a, mr, 1, r, nb, o, ((nb) - nb0) * NB)
  if (o->stream && nb0 == 0 && nb1 == kn->n_blocks
      && (size_t) o->nn == o->ld && o->nn <= STAGE_N
      && (size_t) kn->n_blocks * kn->kl * NB <= STAGE_WEIGHT_BYTES) {
    /* whole rows of y, streamed: a row tile's rows, contiguous in y, are computed into a
     * buffer in L1 and streamed in whole 64-byte lines (the tiles' own 16-float row pieces
     * straddle two lines when y is 16-byte aligned, as g_malloc'd tensors are) */
    float stage[3 * STAGE_N] __attribute__ ((aligned (64)));  /* (3, nn) */
    for (int r = 0; r < rows;) {
      const int mr = rows - r >= 3 ? 3 : 1;
      const Sam2ActRows ar = {
        .codes = a->codes + (size_t) r * a->ld, .ld = a->ld, .zero = a->zero + r,
        .sums = a->sums + (size_t) r * kn->n_groups,
      };
      const Sam2TileOut so = {
        .out = stage, .ld = o->ld, .sa = o->sa + r, .bias = o->bias,
        .res = o->res != NULL ? o->res + (size_t) r * o->ld : NULL, .nn = o->nn,
      };
      for (int nb = 0; nb < nb1; nb++) {
        if (kn->n_groups == 1 && mr == 3)
          tile_avx2 (kn, &ar, 3, 1, 0, nb, &so, nb * NB);
        else if (kn->n_groups == 1)
          tile_avx2 (kn, &ar, 1, 1, 0, nb, &so, nb * NB);
        else if (mr == 3)
          tile_avx2 (kn, &ar, 3, 0, 0, nb, &so, nb * NB);
        else
          tile_avx2 (kn, &ar, 1, 0, 0, nb, &so, nb * NB);
      }
      stream_rows_avx2 (o->out + (size_t) r * o->ld, stage, (size_t) mr * o->nn);
      r += mr;
    }
  } else if (kn->n_groups == 1) {
    SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 3, SAM2_TILE_AVX2_1);
  } else {
    SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 3, SAM2_TILE_AVX2);
  }
#undef SAM2_TILE_AVX2
#undef SAM2_TILE_AVX2_1
  if (o->stream)
    _mm_sfence ();  /* the streamed stores are ordered before whatever follows the item */
}

/* A tile of mr (1 .. 4) rows x 16 channels, VNNI: vpdpbusd (codes as the unsigned operand,
 * activations as the signed one) straight into int32. The float steps use the explicitly rounded
 * forms, which no compiler setting contracts into an FMA: the outputs stay bit-identical to the
 * C and AVX2 paths. */
#define SAM2_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

__attribute__ ((target ("avx512f,avx512vnni"), always_inline)) static inline void
tile_avx512_vnni (const Sam2QuantKernel *kn, const Sam2ActRows *a, const int mr, int r0, int nb,
                  const Sam2TileOut *o, int col)
{
  const int NG = kn->n_groups;
  const int32_t *wzero = kn->wzero + (size_t) nb * NG * NB;  /* (NG, NB) */
  const int32_t *wsum = kn->wsum + (size_t) nb * NG * NB;    /* (NG, NB) */
  const float *wscale = kn->wscale + (size_t) nb * NG * NB;  /* (NG, NB) */
  const guint8 *wp = kn->w + (size_t) nb * kn->kl * NB;      /* (kl / 4, NB, 4) */
  const guint8 *ap = a->codes + (size_t) r0 * a->ld;
  __m512 f[4];
  for (int r = 0; r < 4; r++)
    f[r] = _mm512_setzero_ps ();
  for (int g = 0; g < NG; g++) {
    const int quads = (g + 1 < NG ? kn->group_steps : kn->last_steps) * (KSTEP / 4);
    const __m512i zv = _mm512_loadu_si512 ((const void *) (wzero + g * NB));
    const __m512i sv = _mm512_loadu_si512 ((const void *) (wsum + g * NB));
    __m512i c[4];
    for (int r = 0; r < mr; r++) {
      const __m512i corr = _mm512_add_epi32 (
        _mm512_mullo_epi32 (zv, _mm512_set1_epi32 (a->sums[(size_t) (r0 + r) * NG + g])),
        _mm512_mullo_epi32 (sv, _mm512_set1_epi32 (a->zero[r0 + r])));
      c[r] = _mm512_sub_epi32 (_mm512_setzero_si512 (), corr);
    }
    for (int i = 0; i < quads; i++, ap += 4, wp += 4 * NB) {
      const __m512i w = _mm512_load_si512 ((const void *) wp);
      for (int r = 0; r < mr; r++)
        c[r] = _mm512_dpbusd_epi32 (c[r], w,
                                    _mm512_set1_epi32 (load_quad (ap + (size_t) r * a->ld)));
    }
    const __m512 sc = _mm512_loadu_ps (wscale + g * NB);
    for (int r = 0; r < mr; r++) {
      const __m512 v = _mm512_mul_round_ps (_mm512_cvtepi32_ps (c[r]), sc, SAM2_RN);
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
    float *out = o->out + off;
    if (o->stream && ((uintptr_t) out & 15) == 0) {
      _mm_stream_ps (out, _mm512_extractf32x4_ps (v, 0));
      _mm_stream_ps (out + 4, _mm512_extractf32x4_ps (v, 1));
      _mm_stream_ps (out + 8, _mm512_extractf32x4_ps (v, 2));
      _mm_stream_ps (out + 12, _mm512_extractf32x4_ps (v, 3));
    } else {
      _mm512_storeu_ps (out, v);
    }
  }
}

__attribute__ ((target ("avx512f,avx512vnni"))) static void
block_avx512_vnni (const Sam2QuantKernel *kn, const Sam2ActRows *a, int rows, int nb0, int nb1,
                   const Sam2TileOut *o)
{
  /* 4-row tiles; the last rows one at a time */
#define SAM2_TILE_512(r, mr, nb)                                                            \
  do {                                                                                      \
    if ((mr) == 4)                                                                          \
      tile_avx512_vnni (kn, a, 4, r, nb, o, ((nb) - nb0) * NB);                             \
    else                                                                                    \
      tile_avx512_vnni (kn, a, 1, r, nb, o, ((nb) - nb0) * NB);                             \
  } while (0)
  SAM2_BLOCK_LOOPS (kn, rows, nb0, nb1, 4, SAM2_TILE_512);
#undef SAM2_TILE_512
  if (o->stream)
    _mm_sfence ();
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

/* Sums of each group's codes (as int8) of one kernel-layout row; the padding is 0. */
static void
group_sums_c (const Sam2QuantKernel *kn, const guint8 *row, int32_t *sums)
{
  for (int g = 0; g < kn->n_groups; g++) {
    const int len = (g + 1 < kn->n_groups ? kn->group_steps : kn->last_steps) * KSTEP;
    const gint8 *p = (const gint8 *) (row + (size_t) g * kn->group_pad);
    int32_t s = 0;
    for (int k = 0; k < len; k++)
      s += p[k];
    sums[g] = s;
  }
}

#ifdef SAM2_QUANT_X86
/* The same with vpsadbw: sums of a + 128 as unsigned bytes, 128 per byte taken off after. */
__attribute__ ((target ("avx2"))) static void
group_sums_avx2 (const Sam2QuantKernel *kn, const guint8 *row, int32_t *sums)
{
  const __m256i flip = _mm256_set1_epi8 ((char) 0x80), zero = _mm256_setzero_si256 ();
  for (int g = 0; g < kn->n_groups; g++) {
    const int len = (g + 1 < kn->n_groups ? kn->group_steps : kn->last_steps) * KSTEP;
    const guint8 *p = row + (size_t) g * kn->group_pad;
    __m256i acc = zero;
    for (int k = 0; k < len; k += 32) {
      const __m256i b = _mm256_xor_si256 (_mm256_loadu_si256 ((const __m256i *) (p + k)), flip);
      acc = _mm256_add_epi64 (acc, _mm256_sad_epu8 (b, zero));
    }
    int64_t l[4];
    _mm256_storeu_si256 ((__m256i *) l, acc);
    sums[g] = (int32_t) (l[0] + l[1] + l[2] + l[3] - 128 * (int64_t) len);
  }
}
#endif

/* Row x into the kernel layout (int8 codes, groups at group_pad strides, pads 0), with its scale,
 * kernel zero point Za and group sums. */
static void
quantize_row_kernel (const Sam2QuantLinear *q, const Sam2QuantKernel *kn, const float *xr,
                     guint8 *dst, float *scale, int32_t *zero, int32_t *sums)
{
  const int K = q->w.k, G = q->w.group_size;
  const Sam2QuantIsa isa = kn->isa;
  Sam2RowQuant p;
  row_params (q, isa, xr, &p, TRUE);
  if (kn->group_pad == G || kn->n_groups == 1) {
    row_codes (isa, xr, q->smooth_inv, K, &p, dst);
    memset (dst + K, 0, (size_t) (kn->kl - K));
  } else {
    for (int g = 0; g < kn->n_groups; g++) {
      const int k0 = g * G, len = MIN (G, K - k0), o = g * kn->group_pad;
      row_codes (isa, xr + k0, q->smooth_inv != NULL ? q->smooth_inv + k0 : NULL, len, &p, dst + o);
      memset (dst + o + len, 0, (size_t) (g + 1 < kn->n_groups ? kn->group_pad : kn->kl - o) - len);
    }
  }
#ifdef SAM2_QUANT_X86
  if (isa >= ISA_AVX2)
    group_sums_avx2 (kn, dst, sums);
  else
#endif
    group_sums_c (kn, dst, sums);
  *scale = p.scale;
  *zero = kn->asym ? p.zero - 128 : 0;
}

static int
max_threads (void)
{
#ifdef _OPENMP
  return omp_get_max_threads ();
#else
  return 1;
#endif
}

static void
forward_w4a8 (const Sam2QuantLinear *q, const Sam2QuantKernel *kn, const float *x, int M,
              float *y, Sam2Act act, const float *residual, void *scratch)
{
  const int K = q->w.k, N = q->w.n, R = q->rank, NG = kn->n_groups;
  Sam2QuantScratch s;
  scratch_layout (q, M, &s);
  guint8 *base = scratch_base (scratch);
  guint8 *codes = base + s.codes;                  /* (M, kl) */
  float *sa = (float *) (base + s.scales);         /* (M) */
  int32_t *za = (int32_t *) (base + s.zeros);      /* (M) */
  int32_t *sums = (int32_t *) (base + s.sums);     /* (M, NG) */
  float *t = (float *) (base + s.t);               /* (M, R) */
  const size_t kl = kn->kl;

  if (R > 0 && dnnl_sgemm ('N', 'T', M, R, K, 1.0f, x, K, kn->lora_down, K, 0.0f, t, R)
                 != dnnl_success)
    g_critical ("dnnl_sgemm failed on the low-rank branch (%d x %d x %d)", M, K, R);

  const int n_threads = max_threads ();
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
  /* an output that cannot stay in the caches anyway is written around them: no read for
   * ownership of each line before it is overwritten (store bandwidth measured 15 GB/s with,
   * 20-30 GB/s without, on 2 Zen 3 cores) */
  const gboolean stream = (size_t) M * N * sizeof (float) >= STREAM_BYTES;

#pragma omp parallel if (n_threads > 1)
  {
    if (!fused) {
#pragma omp for schedule(static)
      for (int m = 0; m < M; m++)
        quantize_row_kernel (q, kn, x + (size_t) m * K, codes + m * kl, &sa[m], &za[m],
                             sums + (size_t) m * NG);
    }
#pragma omp for schedule(dynamic)
    for (long item = 0; item < n_items; item++) {
      const int m0 = (int) (item / n_chunks) * ROW_BLOCK, rows = MIN (ROW_BLOCK, M - m0);
      const int nb0 = (int) (item % n_chunks) * item_blocks;
      const int nb1 = MIN (nb0 + item_blocks, kn->n_blocks);
      if (fused)
        for (int r = m0; r < m0 + rows; r++)
          quantize_row_kernel (q, kn, x + (size_t) r * K, codes + r * kl, &sa[r], &za[r],
                               sums + (size_t) r * NG);
      const Sam2ActRows a = {
        .codes = codes + m0 * kl, .ld = kl, .zero = za + m0, .sums = sums + (size_t) m0 * NG,
      };
      if (direct) {
        const int n0 = nb0 * NB;
        const Sam2TileOut o = {
          .out = y + (size_t) m0 * N + n0, .ld = N, .sa = sa + m0,
          .bias = q->bias != NULL ? q->bias + n0 : NULL,
          .res = residual != NULL ? residual + (size_t) m0 * N + n0 : NULL,
          .nn = MIN (nb1 * NB, N) - n0, .stream = stream,
        };
        kn->block (kn, &a, rows, nb0, nb1, &o);
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
        kn->block (kn, &a, rows, c0, c1, &o);
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

/* ---- the fused MLP -------------------------------------------------------------------------- */

/* Rows per work item of the fused MLP: a multiple of the AVX2 and AVX-512 tiles (3 and 4 rows),
 * as many as keep the item's hidden rows, MLP_HIDDEN_BYTES, in L2 with the codes. Fewer rows than
 * ROW_BLOCK cost little: the weights a row block re-reads come from L2 or L3 at a small fraction
 * of the time the block's products take. */
#define MLP_HIDDEN_BYTES (192 << 10)
#define MLP_ROW_QUANTUM 12

static int
mlp_rows (const Sam2QuantLinear *fc1)
{
  const int fit = MLP_HIDDEN_BYTES / (fc1->w.n * (int) sizeof (float));
  return CLAMP (fit / MLP_ROW_QUANTUM * MLP_ROW_QUANTUM, MLP_ROW_QUANTUM, ROW_BLOCK);
}

/* One thread's buffers for a row block of `rows` rows: offsets within its slice. */
typedef struct {
  size_t xrow;                       /* (K1) floats: one normalised input row */
  size_t codes1, sa1, za1, sums1;    /* fc1's rows: (rows, kl1), (rows), (rows), (rows, NG1) */
  size_t hidden;                     /* (rows, N1) floats: act (fc1 (x)) */
  size_t codes2, sa2, za2, sums2;    /* fc2's rows, as fc1's */
  size_t slice;                      /* bytes per thread, a multiple of 64 */
} Sam2MlpScratch;

static void
mlp_scratch_layout (const Sam2QuantLinear *fc1, const Sam2QuantLinear *fc2, Sam2MlpScratch *s)
{
  const size_t rows = mlp_rows (fc1);
  const size_t kl1 = kernel_row_length (&fc1->w), kl2 = kernel_row_length (&fc2->w);
  size_t off = 0;
#define SAM2_MLP_PLACE(field, bytes) \
  do {                               \
    s->field = off;                  \
    off = align64 (off + (bytes));   \
  } while (0)
  SAM2_MLP_PLACE (xrow, (size_t) fc1->w.k * sizeof (float));
  SAM2_MLP_PLACE (codes1, rows * kl1);
  SAM2_MLP_PLACE (sa1, rows * sizeof (float));
  SAM2_MLP_PLACE (za1, rows * sizeof (int32_t));
  SAM2_MLP_PLACE (sums1, rows * fc1->w.n_groups * sizeof (int32_t));
  SAM2_MLP_PLACE (hidden, rows * fc1->w.n * sizeof (float));
  SAM2_MLP_PLACE (codes2, rows * kl2);
  SAM2_MLP_PLACE (sa2, rows * sizeof (float));
  SAM2_MLP_PLACE (za2, rows * sizeof (int32_t));
  SAM2_MLP_PLACE (sums2, rows * fc2->w.n_groups * sizeof (int32_t));
#undef SAM2_MLP_PLACE
  s->slice = off;
}

gboolean
sam2_quant_mlp_fusable (const Sam2QuantLinear *fc1, const Sam2QuantLinear *fc2, int M)
{
  g_return_val_if_fail (fc1 != NULL && fc2 != NULL, FALSE);
  const Sam2QuantKernel *k1 = fc1->kernel, *k2 = fc2->kernel;
  if (k1 == NULL || k2 == NULL || k1->magic != KERNEL_MAGIC || k2->magic != KERNEL_MAGIC)
    return FALSE;
  if (fc1->act == SAM2_ACT_QUANT_NONE || fc2->act == SAM2_ACT_QUANT_NONE || fc1->rank > 0
      || fc2->rank > 0 || fc1->w.n != fc2->w.k)
    return FALSE;
  /* the condition under which forward_w4a8 itself works by row blocks */
  const int rows = mlp_rows (fc1);
  return (M + rows - 1) / rows >= 4 * max_threads ();
}

size_t
sam2_quant_mlp_scratch_bytes (const Sam2QuantLinear *fc1, const Sam2QuantLinear *fc2)
{
  g_return_val_if_fail (fc1 != NULL && fc2 != NULL, 0);
  Sam2MlpScratch s;
  mlp_scratch_layout (fc1, fc2, &s);
  return s.slice * max_threads () + 64;
}

/* Rows m0 .. m0 + rows - 1 through the whole MLP, in `slice`. Every step is the one the unfused
 * ops take on the same values: sam2_cpu_layer_norm's row, quantize_row_kernel, the tiles with
 * acc sa + bias, the activation in CHUNK-column pieces from column 0 (forward_w4a8's epilogue on
 * row blocks), and fc2's direct tiles with the residual. */
static void
mlp_row_block (const Sam2QuantNorm *norm, const Sam2QuantLinear *fc1, Sam2Act act,
               const Sam2QuantLinear *fc2, const float *x, int m0, int rows, float *y,
               const float *residual, gboolean stream, guint8 *slice, const Sam2MlpScratch *l)
{
  const Sam2QuantKernel *kn1 = fc1->kernel, *kn2 = fc2->kernel;
  const int K1 = fc1->w.k, N1 = fc1->w.n, N2 = fc2->w.n;
  const int NG1 = kn1->n_groups, NG2 = kn2->n_groups;
  const size_t kl1 = kn1->kl, kl2 = kn2->kl;
  float *xrow = (float *) (slice + l->xrow);            /* (K1) */
  guint8 *codes1 = slice + l->codes1;                   /* (rows, kl1) */
  float *sa1 = (float *) (slice + l->sa1);              /* (rows) */
  int32_t *za1 = (int32_t *) (slice + l->za1);          /* (rows) */
  int32_t *sums1 = (int32_t *) (slice + l->sums1);      /* (rows, NG1) */
  float *hidden = (float *) (slice + l->hidden);        /* (rows, N1) */
  guint8 *codes2 = slice + l->codes2;                   /* (rows, kl2) */
  float *sa2 = (float *) (slice + l->sa2);              /* (rows) */
  int32_t *za2 = (int32_t *) (slice + l->za2);          /* (rows) */
  int32_t *sums2 = (int32_t *) (slice + l->sums2);      /* (rows, NG2) */

  /* every input row is read here, before any output row is written: y may be x */
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t) (m0 + r) * K1;
    if (norm != NULL) {
      sam2_cpu_layer_norm_row (xr, K1, norm->weight, norm->bias, norm->eps, xrow);
      xr = xrow;
    }
    quantize_row_kernel (fc1, kn1, xr, codes1 + r * kl1, &sa1[r], &za1[r], sums1 + r * NG1);
  }
  const Sam2ActRows a1 = { .codes = codes1, .ld = kl1, .zero = za1, .sums = sums1 };
  const Sam2TileOut o1 = { .out = hidden, .ld = N1, .sa = sa1, .bias = fc1->bias, .nn = N1 };
  kn1->block (kn1, &a1, rows, 0, kn1->n_blocks, &o1);
  for (int r = 0; r < rows; r++) {
    float *h = hidden + (size_t) r * N1;
    for (int c = 0; c < N1; c += CHUNK)
      sam2_cpu_act_row (act, h + c, MIN (CHUNK, N1 - c));
    quantize_row_kernel (fc2, kn2, h, codes2 + r * kl2, &sa2[r], &za2[r], sums2 + r * NG2);
  }
  const Sam2ActRows a2 = { .codes = codes2, .ld = kl2, .zero = za2, .sums = sums2 };
  const Sam2TileOut o2 = {
    .out = y + (size_t) m0 * N2, .ld = N2, .sa = sa2, .bias = fc2->bias,
    .res = residual != NULL ? residual + (size_t) m0 * N2 : NULL, .nn = N2, .stream = stream,
  };
  kn2->block (kn2, &a2, rows, 0, kn2->n_blocks, &o2);
}

void
sam2_quant_mlp_forward (const Sam2QuantNorm *norm, const Sam2QuantLinear *fc1, Sam2Act act,
                        const Sam2QuantLinear *fc2, const float *x, int M, float *y,
                        const float *residual, void *scratch)
{
  g_return_if_fail (x != NULL && y != NULL && scratch != NULL);
  g_return_if_fail (sam2_quant_mlp_fusable (fc1, fc2, M));
  Sam2MlpScratch l;
  mlp_scratch_layout (fc1, fc2, &l);
  guint8 *base = scratch_base (scratch);
  const int rows = mlp_rows (fc1), n_items = (M + rows - 1) / rows;
  /* as forward_w4a8 decides for fc2 alone */
  const gboolean stream = (size_t) M * fc2->w.n * sizeof (float) >= STREAM_BYTES;
#pragma omp parallel
  {
#ifdef _OPENMP
    guint8 *slice = base + (size_t) omp_get_thread_num () * l.slice;
#else
    guint8 *slice = base;
#endif
#pragma omp for schedule(dynamic)
    for (int item = 0; item < n_items; item++) {
      const int m0 = item * rows;
      mlp_row_block (norm, fc1, act, fc2, x, m0, MIN (rows, M - m0), y, residual, stream, slice,
                     &l);
    }
  }
}
