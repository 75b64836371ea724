/* gemm-bf16-cpu.h: the float layers' GEMM of the CPU backend's BF16 precision, through oneDNN's
 * bf16 matmul (AVX-512 BF16 kernels): y (M, N) = x (M, K) W^T with x and W rounded to bfloat16
 * (round to nearest even) and FP32 accumulation and output, the numerics of the CUDA backend's
 * BF16 GEMMs.
 *
 * Each weight is converted once, on its first use, and kept with its oneDNN primitives
 * (keyed by the weight's address: the model is read-only and outlives the backend that holds
 * this). One per backend (per session); not thread-safe, as the backend is not. */
#ifndef SAM2_GEMM_BF16_CPU_H
#define SAM2_GEMM_BF16_CPU_H

#include <glib.h>

G_BEGIN_DECLS

typedef struct _Sam2GemmBf16 Sam2GemmBf16;

/* Whether oneDNN has a bf16 matmul of its own kernels (not only its reference one) for this CPU:
 * asked once per process, as oneDNN reads its instruction-set cap (ONEDNN_MAX_CPU_ISA) once. */
gboolean sam2_gemm_bf16_available (void);
/* For a CPU where sam2_gemm_bf16_available (); NULL when oneDNN's engine cannot be made. */
Sam2GemmBf16 *sam2_gemm_bf16_new (void);
/* NULL-safe. */
void sam2_gemm_bf16_free (Sam2GemmBf16 *g);

/* y (M, N) = x (M, K) w^T, plus y's previous contents when `accumulate`; w (N, K) row-major
 * float. A SAM2_STATUS_* code. */
int sam2_gemm_bf16_nt (Sam2GemmBf16 *g, const float *x, int M, const float *w, int N, int K,
                       gboolean accumulate, float *y);

G_END_DECLS

#endif
