/* formats.h: the layouts of quantized tensors, defined once. Everything that packs, unpacks,
 * saves, loads or computes with quantized weights uses these definitions.
 *
 * 4-bit weights, W (N, K) ~ (q - z) * s:
 *   - q: 4-bit codes 0..15, packed two per byte along K: code of (n, k) is in byte
 *     n * ((K + 1) / 2) + k / 2, low nibble for even k, high nibble for odd k; an odd K leaves the
 *     last high nibble 0.
 *   - groups along K of `group_size` columns (64, 128, 256, or K for one group per output
 *     channel); n_groups = ceil(K / group_size); the last group holds the K % group_size columns
 *     left over when K is not a multiple (a tail group, e.g. K = 112 with groups of 64).
 *   - s: one scale per (n, group), float (stored as F16 in model files: quantizers round the scale
 *     to F16 before choosing codes, so what is stored is exactly what was used).
 *   - z: one zero point per (n, group), 0..15, one byte each. UINT4 chooses it per group
 *     (asymmetric); SINT4 fixes it to 8 (codes 0..15 are the values -8..7), so both types share
 *     one kernel.
 *
 * 8-bit activations, per token (row) m of X (M, K): x ~ (a - za[m]) * sa[m]
 *   - symmetric (SINT8): a in -127..127, za = 0, sa = max|x| / 127.
 *   - asymmetric (UINT8, for skewed inputs such as post-GELU): a in 0..255,
 *     sa = (max - min) / 255, za = round(-min / sa).
 *   - static per tensor: one (sa, za) from calibration for every token.
 *   Rounding is to nearest, ties away from zero (lrintf is not used: it depends on the rounding
 *   mode), then clamped. A token holding a NaN or an infinity has sa = NaN, za = 0 and every a
 *   the code of 0, so its outputs are NaN (as in float), on every CPU path and on the GPU.
 *
 * Smoothing: the layer computes with X / s and W * s (per input channel k). When the input comes
 * straight from a LayerNorm, 1 / s is folded into that norm's weight and bias and the layer
 * stores no smoothing; otherwise the layer keeps `smooth_inv` = 1 / s and multiplies before
 * quantizing activations.
 *
 * Low-rank branch (SVDQuant): y += ((X / s) L_down^T) L_up^T with L_down (r, K), L_up (N, r),
 * float in memory, F16 in model files.
 */
#ifndef SAM2_QUANT_FORMATS_H
#define SAM2_QUANT_FORMATS_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  SAM2_QTYPE_NONE,             /* kept in floating point */
  SAM2_QTYPE_UINT4,
  SAM2_QTYPE_SINT4,
  SAM2_QTYPE_UINT8,
  SAM2_QTYPE_SINT8,
} Sam2QType;

typedef enum {
  SAM2_ACT_QUANT_NONE,         /* weight-only: activations stay float */
  SAM2_ACT_QUANT_TOKEN_SYM,    /* dynamic per token, SINT8 */
  SAM2_ACT_QUANT_TOKEN_ASYM,   /* dynamic per token, UINT8 with a zero point */
  SAM2_ACT_QUANT_TENSOR_SYM,   /* static per tensor from calibration, SINT8 */
  SAM2_ACT_QUANT_TENSOR_ASYM,  /* static per tensor, UINT8 with a zero point */
} Sam2ActQuantMode;

#define SAM2_W4_CODE_MAX 15
#define SAM2_SINT4_ZERO 8

static inline int
sam2_w4_row_bytes (int k)
{
  return (k + 1) / 2;
}

static inline int
sam2_w4_n_groups (int k, int group_size)
{
  return (k + group_size - 1) / group_size;
}

static inline int
sam2_w4_get (const guint8 *packed, int k_dim, int n, int k)
{
  guint8 b = packed[(size_t) n * sam2_w4_row_bytes (k_dim) + k / 2];
  return (k & 1) ? b >> 4 : b & 15;
}

static inline void
sam2_w4_set (guint8 *packed, int k_dim, int n, int k, int code)
{
  guint8 *b = &packed[(size_t) n * sam2_w4_row_bytes (k_dim) + k / 2];
  *b = (k & 1) ? (guint8) ((*b & 0x0f) | (code << 4)) : (guint8) ((*b & 0xf0) | code);
}

/* Round to nearest, ties away from zero, independent of the FPU rounding mode. */
static inline int
sam2_round_half_away (float x)
{
  return (int) (x >= 0.0f ? x + 0.5f : x - 0.5f);
}

/* A 4-bit weight matrix with its groups. */
typedef struct {
  int n, k;                    /* output, input features */
  int group_size;              /* columns per group (the last may be shorter) */
  int n_groups;
  Sam2QType dtype;             /* UINT4 or SINT4 */
  guint8 *codes;               /* (n, sam2_w4_row_bytes (k)) */
  float *scales;               /* (n, n_groups) */
  guint8 *zeros;               /* (n, n_groups) */
} Sam2W4;

/* A linear layer in its quantized form (the Sam2Linear.quant of a quantized model). */
typedef struct {
  Sam2W4 w;
  const float *bias;           /* (n) or NULL */
  Sam2ActQuantMode act;
  float act_scale, act_zero;   /* static modes only */
  float *smooth_inv;           /* (k) or NULL */
  int rank;                    /* 0: no low-rank branch */
  float *lora_down;            /* (rank, k) */
  float *lora_up;              /* (n, rank) */
  gpointer kernel;             /* backend-prepared form (e.g. the CPU int8 kernel's layout) */
  GDestroyNotify kernel_free;
} Sam2QuantLinear;

/* Dequantized weight (n, k) as float, W ~ (q - z) s. */
void sam2_w4_dequantize (const Sam2W4 *w, float *out);

G_END_DECLS

#endif
