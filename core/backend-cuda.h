/* backend-cuda.h: the CUDA backend (core/backend-cuda.c, built only with -Dcuda=enabled / auto
 * and nvcc present; SAM2_HAVE_CUDA is then defined for everything that links libsam2).
 *
 * Memory from alloc() is device memory: the session never dereferences it on the host, it moves
 * data through upload() / download() only. Weights stay in the model (host); the backend copies
 * each layer to the device the first time it runs it and keeps the copy until it is destroyed.
 */
#ifndef SAM2_BACKEND_CUDA_H
#define SAM2_BACKEND_CUDA_H

#include "backend.h"

G_BEGIN_DECLS

/* TRUE when at least one CUDA device can be used; otherwise FALSE and `error` says why (no
 * driver, no device), in words a user can act on. */
gboolean sam2_backend_cuda_probe (GError **error);

/* A backend on the current CUDA device. `precision` is SAM2_PRECISION_FP32 (cuBLAS SGEMM without
 * TF32: results within float32 rounding of the CPU backend), SAM2_PRECISION_FP16 (float layers'
 * GEMMs and attention's two products with FP16 operands and FP32 accumulation; softmax, norms
 * and activations stay FP32) or SAM2_PRECISION_BF16 (the same with bfloat16 operands);
 * SAM2_PRECISION_AUTO means FP32. Quantized layers run the W4A8 kernels in every precision. */
Sam2Backend *sam2_backend_cuda_new (Sam2Precision precision, GError **error);

/* "NVIDIA H200 (device 0, compute 9.0, 139 GiB)": for tools that print what ran. */
const char *sam2_backend_cuda_device_name (Sam2Backend *b);

/* CUDA graphs (backend-cuda.c, run_graph in backend.h): on unless the environment variable
 * SAM2_CUDA_GRAPHS is 0 / off / no / false when the backend is created; outputs are the same bits
 * either way. Counters since the backend was created, for tools and tests. */
typedef struct {
  gboolean enabled;            /* graphs on for this backend */
  guint captured;              /* graphs captured and instantiated */
  guint replayed;              /* graph launches (the capturing call's own launch included) */
  guint eager;                 /* run_graph calls that ran their ops one by one: a key's first
                                * call, profiling, graphs off, a refused key */
  guint refused;               /* keys whose capture failed (g_warning once): eager from then on */
  guint evicted;               /* idle graphs dropped for a newer key (32 are held at most) */
  guint held;                  /* executable graphs held now */
  guint last_nodes;            /* nodes (kernels, copies) of the graph captured last */
  guint64 captured_nodes;      /* nodes of all graphs captured, summed */
} Sam2CudaGraphStats;

/* Fills `stats` and returns TRUE for a CUDA backend; FALSE (stats zeroed) for any other. */
gboolean sam2_backend_cuda_graph_stats (Sam2Backend *b, Sam2CudaGraphStats *stats);

/* Calls of the backend's fused 16-bit paths that took the path (eager runs and graph captures;
 * replays run no host code), for tests and tools that must know a path ran, not only that its
 * results match. */
typedef struct {
  guint qkv16;                 /* norm_attention_linear with qkv's output in 16 bits */
  guint qkv16_float;           /* norm_attention_linear whose qkv ran as float GEMMs, rounded
                                * (no cuBLASLt algorithm with a 16-bit output for the shape) */
} Sam2CudaPathStats;

/* Fills `stats` and returns TRUE for a CUDA backend; FALSE (stats zeroed) for any other. */
gboolean sam2_backend_cuda_path_stats (Sam2Backend *b, Sam2CudaPathStats *stats);

G_END_DECLS

#endif
