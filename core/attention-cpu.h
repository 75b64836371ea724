/* attention-cpu.h: the CPU backend's fused ("flash") attention: FP32 for AVX2 + FMA machines
 * (attention-cpu.c), BF16 operands for AVX-512 BF16 ones (attention-cpu-bf16.c, the backend's
 * precision bf16).
 *
 * Per task (one sequence, one head, up to SAM2_FLASH_ROWS queries) the keys are swept in blocks of
 * SAM2_FLASH_KEYS with an online softmax: the scores of a few queries against one key block stay
 * in L1, the block's packed keys and its values in L2, and the output accumulates in the task's
 * scratch, rescaled when a row's running max grows. Where the CPU lacks AVX2 / FMA, has AVX-512
 * (oneDNN's sgemm was faster there), or head_dim is not a multiple of 8, the backend keeps its
 * sgemm + softmax path; SAM2_CPU_ATTENTION=fused or =sgemm overrides the choice (read once).
 * Layouts as in backend.h. */
#ifndef SAM2_ATTENTION_CPU_H
#define SAM2_ATTENTION_CPU_H

#include "backend.h"

G_BEGIN_DECLS

#define SAM2_FLASH_ROWS 128 /* queries per task */
/* keys per block of the online softmax (a multiple of 16): 512 ran the 4096-key global blocks
 * 8% faster than 256 and 12% faster than 128 here (fewer rescales; k and v of a block, 384 KB at
 * head_dim 96, still fit a 512 KB L2) */
#define SAM2_FLASH_KEYS 512

/* One fused kernel: per (sequence, head) the keys and values packed once, then tasks of up to
 * SAM2_FLASH_ROWS queries.
 *   packed_floats: floats of one (sequence, head)'s packed keys and values;
 *   task_floats:   floats of a task's scratch (a thread's, reused across its tasks);
 *   pack_keys:     packs the keys and values of (seq, head) into `packed`;
 *   task:          queries [q0, q0 + nq) of (seq, head), nq <= SAM2_FLASH_ROWS, with the keys
 *                  packed by pack_keys; `scratch` holds task_floats floats. */
typedef struct {
  size_t (*packed_floats) (const Sam2AttentionArgs *a);
  size_t (*task_floats) (const Sam2AttentionArgs *a);
  void (*pack_keys) (const Sam2AttentionArgs *a, int seq, int head, float *packed);
  void (*task) (const Sam2AttentionArgs *a, int seq, int head, int q0, int nq,
                const float *packed, float *scratch);
} Sam2FlashKernel;

/* TRUE when the backend runs `a` with the FP32 kernel on this CPU (see above). */
gboolean sam2_cpu_flash_supported (const Sam2AttentionArgs *a);

/* The FP32 kernel (attention-cpu.c): k packed for the score kernel in panels of 16 keys, each
 * head_dim rows of 16 (key-minor), the last panel zero-padded; then v in column chunks of 16
 * (8 for a last one), each chunk's len_k rows contiguous. NULL in a build without it (not
 * x86-64 with GCC); use it where sam2_cpu_flash_supported says so. */
const Sam2FlashKernel *sam2_cpu_flash_fp32 (void);

/* The BF16 kernel: the same tasks and blocking, q k^T and p v with bfloat16 operands and FP32
 * accumulation (vdpbf16ps), softmax in FP32; any head_dim (zero padded to 16). Only where
 * sam2_cpu_flash_bf16_available (): the CPU has AVX-512 F, BW, VL and BF16; NULL in a build
 * without it. */
gboolean sam2_cpu_flash_bf16_available (void);
const Sam2FlashKernel *sam2_cpu_flash_bf16 (void);

G_END_DECLS

#endif
