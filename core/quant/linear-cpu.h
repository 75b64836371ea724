/* linear-cpu.h: quantized linear layers on the CPU.
 *
 * Two paths with the same arithmetic contract:
 *   - the reference ("fake quant"): activations quantized and dequantized exactly as the kernel
 *     quantizes them, weights dequantized to float, a float GEMM. Slow, obviously right; the
 *     oracle of the kernel and of device kernels.
 *   - the kernel: int8 activations times the 4-bit codes as int8, int32 sums per weight group,
 *     scaled to float per (token, output, group); bias, low-rank branch, activation and residual
 *     in the epilogue. Real integer arithmetic (AVX2 / AVX-512 with a portable C fallback).
 * Weight-only layers (SAM2_ACT_QUANT_NONE) keep float activations; both paths then use the
 * dequantized weights with a float GEMM.
 *
 * y (M, N) = act(W4A8(x (M, K)) + bias + low-rank(x)) + residual; `residual` may be y; act and
 * residual are not combined (as the backend's linear op). */
#ifndef SAM2_QUANT_LINEAR_CPU_H
#define SAM2_QUANT_LINEAR_CPU_H

#include "config.h"
#include "formats.h"

G_BEGIN_DECLS

/* Quantizes rows of x (M, K), after multiplying by smooth_inv (K) when given, per the layer's
 * mode: codes (M, k_stride) as int8 (symmetric) or uint8 (asymmetric) bytes, scales (M), zero
 * points (M, 0 for symmetric). The layout contract of formats.h. */
void sam2_quantize_activations (const Sam2QuantLinear *q, const float *x, int M, guint8 *codes,
                                int k_stride, float *scales, int32_t *zeros);

/* The reference path. `scratch` as from sam2_quant_linear_scratch_bytes. */
void sam2_quant_linear_reference (const Sam2QuantLinear *q, const float *x, int M, float *y,
                                  Sam2Act act, const float *residual, void *scratch);

/* Prepares q->kernel (repacked codes, per-group sums, dequantized weights for weight-only
 * layers); idempotent. FALSE only when out of memory. */
gboolean sam2_quant_linear_prepare (Sam2QuantLinear *q);

/* The kernel path; q must be prepared. */
void sam2_quant_linear_forward (const Sam2QuantLinear *q, const float *x, int M, float *y,
                                Sam2Act act, const float *residual, void *scratch);

/* Scratch either path needs for M rows, in bytes (allocated once by the caller). */
size_t sam2_quant_linear_scratch_bytes (const Sam2QuantLinear *q, int M);

/* The MLP half of a transformer block in one pass over the rows:
 *   y (M, N2) = fc2 (act (fc1 (LN (x (M, K1))))) + residual
 * Each work item takes a few rows through the LayerNorm (when norm is given), fc1's activation
 * quantization, fc1, the activation, fc2's activation quantization and fc2, so neither the
 * normalised input nor the hidden activations (M, N1) go through memory, and no layer reads its
 * input back to quantize it. The outputs are bit-identical to sam2_cpu_layer_norm, then
 * sam2_quant_linear_forward of fc1 with `act`, then of fc2 with the residual (the same
 * operations on the same values). y may be x and residual. */
typedef struct {
  const float *weight, *bias;  /* (K1) */
  float eps;
} Sam2QuantNorm;

/* Whether sam2_quant_mlp_forward runs these layers for M rows: both W4A8 (not weight-only) and
 * prepared, no low-rank branch, fc1's outputs fc2's inputs, and rows enough for the threads
 * to share row blocks. Otherwise the caller runs the ops one by one. */
gboolean sam2_quant_mlp_fusable (const Sam2QuantLinear *fc1, const Sam2QuantLinear *fc2, int M);
/* Its scratch in bytes (per thread, for the current OpenMP thread count). */
size_t sam2_quant_mlp_scratch_bytes (const Sam2QuantLinear *fc1, const Sam2QuantLinear *fc2);
/* norm may be NULL (x goes to fc1 as it is); fusable must hold. */
void sam2_quant_mlp_forward (const Sam2QuantNorm *norm, const Sam2QuantLinear *fc1, Sam2Act act,
                             const Sam2QuantLinear *fc2, const float *x, int M, float *y,
                             const float *residual, void *scratch);

G_END_DECLS

#endif
