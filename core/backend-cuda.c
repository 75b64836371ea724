/* backend-cuda.c: the op table of backend.h on one CUDA device.
 *
 * One stream carries every op in order; one cuBLAS handle bound to it does the float GEMMs, with
 * CUBLAS_DEFAULT_MATH so FP32 never silently becomes TF32 (FP32 must match the CPU oracle within
 * float rounding). Launchers (kernels/kernels.h) enqueue and return; errors of kernels surface at
 * the next synchronisation, which is download() (and upload(), see there).
 *
 * Weights live in the model, in host memory. The first time a layer runs, its weights are copied
 * to the device (FP32, or 16-bit for SAM2_PRECISION_FP16 and SAM2_PRECISION_BF16, or the
 * repacked W4A8 blob and its float parts for quantized layers) into a cache keyed by the host
 * Sam2Linear / Sam2LayerNorm pointer, which the model never moves. In the 16-bit precisions (FP16
 * and BF16 take the same paths, with operands of their own format: cu->half) the attention
 * products run on the tensor cores too (sam2_cuda_attention_16), the linear layers through
 * cuBLASLt with their bias in its epilogue (a few token rows through
 * sam2_cuda_linear_16_small_m), and the blocks' MLP halves without float intermediates
 * (cuda_norm_mlp). Scratch (16-bit activations, the W4A8 workspace) grows to the
 * largest need it has seen: the first frame sizes it (the encoder's layers are the widest, so a
 * later prompt with more points does not grow it either), and after that nothing is allocated
 * per frame. All of it is freed in destroy.
 *
 * CUDA graphs (run_graph): the session hands the pure-device part of the encoder and of each
 * decoder pass to run_graph with a key naming its launch sequence. The first call of a key runs
 * eagerly (it fills the weight cache and grows scratch, which a capture cannot); the second is
 * captured on the stream (cudaStreamCaptureModeThreadLocal), instantiated and launched; later
 * calls replay it, one cudaGraphLaunch instead of ~90 (decoder) or ~150 (encoder) launches. At
 * most GRAPH_MAX_EXECS graphs are held; a new one replaces the least recently used only when
 * that one has been idle for GRAPH_IDLE_CALLS calls, else the new key runs eagerly (a rotation
 * of more keys than that never turns into a capture per call). cuBLAS runs with a workspace
 * of ours (cublasSetWorkspace), so a captured GEMM allocates nothing. A graph keeps the scratch
 * pointers it was captured with: growing scratch bumps scratch_gen, and a graph of an older
 * generation is captured again before it is launched. The environment variable
 * SAM2_CUDA_GRAPHS=0 (or off / no / false) turns graphs off for backends created after it is
 * set; profiling (profile_start) runs everything eagerly too, since it wants a time per op.
 */
#include "backend-cuda.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

G_STATIC_ASSERT ((int) SAM2_CUDA_OK == (int) SAM2_STATUS_OK);
G_STATIC_ASSERT ((int) SAM2_CUDA_OUT_OF_MEMORY == (int) SAM2_STATUS_OUT_OF_MEMORY);
G_STATIC_ASSERT ((int) SAM2_CUDA_DEVICE == (int) SAM2_STATUS_DEVICE);
G_STATIC_ASSERT ((int) SAM2_CUDA_UNSUPPORTED == (int) SAM2_STATUS_UNSUPPORTED);
G_STATIC_ASSERT (SAM2_CUDA_ACT_NONE == (int) SAM2_ACT_NONE);
G_STATIC_ASSERT (SAM2_CUDA_ACT_GELU == (int) SAM2_ACT_GELU);
G_STATIC_ASSERT (SAM2_CUDA_ACT_GELU_TANH == (int) SAM2_ACT_GELU_TANH);
G_STATIC_ASSERT (SAM2_CUDA_ACT_RELU == (int) SAM2_ACT_RELU);
G_STATIC_ASSERT (SAM2_CUDA_ACT_SILU == (int) SAM2_ACT_SILU);
G_STATIC_ASSERT (SAM2_CUDA_ACT_SIGMOID == (int) SAM2_ACT_SIGMOID);
G_STATIC_ASSERT (SAM2_CUDA_AQ_NONE == (int) SAM2_ACT_QUANT_NONE);
G_STATIC_ASSERT (SAM2_CUDA_AQ_TOKEN_SYM == (int) SAM2_ACT_QUANT_TOKEN_SYM);
G_STATIC_ASSERT (SAM2_CUDA_AQ_TOKEN_ASYM == (int) SAM2_ACT_QUANT_TOKEN_ASYM);
G_STATIC_ASSERT (SAM2_CUDA_AQ_TENSOR_SYM == (int) SAM2_ACT_QUANT_TENSOR_SYM);
G_STATIC_ASSERT (SAM2_CUDA_AQ_TENSOR_ASYM == (int) SAM2_ACT_QUANT_TENSOR_ASYM);
/* Sam2AttentionArgs, field for field, then the 16-bit output */
G_STATIC_ASSERT (offsetof (Sam2CudaAttentionArgs, out16) == sizeof (Sam2AttentionArgs));

/* Keys remembered (seen once, or with a graph) and graphs held at once: the encoder and the
 * decoder variants of a stream of prompts are a handful; 32 leaves room for many objects with
 * different point counts. */
#define GRAPH_SLOTS 128
#define GRAPH_MAX_EXECS 32
/* A held graph not launched in this many run_graph calls may make room for a new one. */
#define GRAPH_IDLE_CALLS 64
/* cuBLAS's recommended workspace on Hopper (4 MiB elsewhere): a captured GEMM uses it instead of
 * allocating from cuBLAS's own pool. */
#define CUBLAS_WORKSPACE_BYTES ((size_t) 32 << 20)

/* One key of run_graph. */
typedef struct {
  gboolean used;
  guint64 key;
  cudaGraphExec_t exec;        /* NULL until captured (the key has run eagerly once) */
  gboolean refused;            /* capturing it failed: it runs eagerly from now on */
  guint64 scratch_gen;         /* the scratch buffers exec points at */
  guint64 last_use;
} GraphSlot;

/* Profiling: one event pair per op call, read back once in profile_read. */
typedef struct {
  Sam2OpKind kind;
  cudaEvent_t start, stop;
} OpEvents;

typedef enum {
  WEIGHTS_F32,
  WEIGHTS_16,                  /* the 16-bit format of the precision (cu->half) */
  WEIGHTS_W4A8,
} WeightsKind;

/* The device form of one linear layer. */
typedef struct {
  WeightsKind kind;
  int n, k;
  float *w32;                  /* (n, k) F32 */
  uint16_t *w16;               /* (n, k) FP16 or BF16 (cu->half) */
  float *bias;                 /* (n) or NULL; F32 in every kind */
  void *blob;                  /* W4A8: sam2_cuda_w4a8_blob_layout */
  float *smooth_inv;           /* W4A8: (k) or NULL */
  float *lora_down, *lora_up;  /* W4A8: (rank, k), (n, rank) */
  Sam2CudaW4A8Layer layer;     /* W4A8: pointers into the above */
} CudaLinear;

typedef struct {
  float *weight, *bias;        /* (dim) */
} CudaNorm;

typedef struct {
  Sam2Backend parent;
  Sam2BackendOps ops;          /* cuda_ops, less the optional ops switched off */
  Sam2Precision precision;     /* FP32, FP16 or BF16 */
  Sam2CudaHalf half;           /* FP16 and BF16 precision: the format of 16-bit operands */
  int device;
  char *device_name;
  cudaStream_t stream;
  cublasHandle_t cublas;
  cublasLtHandle_t cublaslt;   /* 16-bit GEMMs with the bias epilogue; NULL: GemmEx + bias pass */
  gboolean small_m;            /* 16-bit linears of <= SAM2_CUDA_LINEAR_SMALL_M_MAX rows: own
                                  kernel */
  gboolean fused_mlp;          /* 16-bit norm_mlp without its float intermediates (cuda_norm_mlp) */
  gboolean fused_norm_quant;   /* LayerNorms fused into W4A8 quantization (cuda_norm_w4a8_linear) */
  gboolean quant_next;         /* fc2's quantization in fc1's GEMM (cuda_norm_w4a8_mlp_next;
                                  opt-in: SAM2_CUDA_QUANT_NEXT=1) */
  gboolean norm_f16;           /* 16-bit: qkv's LayerNorm writes its operand
                                  (norm_windows_linear) */
  Sam2CudaSolver *solver;      /* cuSOLVER for calibration's GPTQ, made on first use */
  gboolean pinned;             /* host_alloc gives page-locked memory (SAM2_CUDA_PINNED) */
  GHashTable *linears;         /* const Sam2Linear * -> CudaLinear * */
  GHashTable *norms;           /* const Sam2LayerNorm * -> CudaNorm * */
  uint16_t *x16;               /* 16-bit activations of the widest linear input seen */
  size_t x16_bytes;
  void *w4a8_ws;               /* sam2_cuda_w4a8_linear's workspace, the largest need seen */
  size_t w4a8_ws_bytes;
  void *w4a8_next_ws;          /* fc2's kernel rows when fc1's GEMM writes them */
  size_t w4a8_next_ws_bytes;
  float *qkv_float;            /* qkv's float rows where cuBLASLt has no 16-bit output for it */
  size_t qkv_float_bytes;
  size_t qkv_float_chunk_bytes; /* their most per GEMM (QKV_FLOAT_CHUNK_BYTES) */
  unsigned int *next_counters; /* sam2_cuda_w4a8_gemm_quantize_next's, zero between launches */
  size_t next_counters_bytes;
  unsigned int *row_counter;   /* sam2_cuda_norm_linear_16_small_m's, zero between launches */
  char detail[256];            /* the last CUDA / cuBLAS failure in words */
  gboolean profiling;
  Sam2OpProfile profile[SAM2_OP_COUNT];
  GArray *events;              /* OpEvents, a pool reused across profile_start calls */
  guint n_events;              /* pairs recorded since profile_start */
  void *cublas_ws;             /* CUBLAS_WORKSPACE_BYTES, cuBLAS's workspace (see run_graph) */
  /* calibration statistics (stats_*): scratch grown to the largest call seen */
  void *stats_index;           /* int row indices: the Hessian's, then the reservoir's */
  size_t stats_index_bytes;
  void *stats_rows;            /* gathered rows (n, k) */
  size_t stats_rows_bytes;
  void *stats_gram;            /* (k, k) FP32 Gram matrix of one call */
  size_t stats_gram_bytes;
  /* frame preprocessing (cuda_preprocess): the resampler tables of the last frame size, the
   * frame's bytes and the horizontal pass's, grown to the largest frame seen */
  int pre_size[4];             /* in_w, in_h, out_w, out_h of the tables (0: none) */
  int32_t *pre_h_start, *pre_v_start, *pre_v_count;
  int16_t *pre_h_weights, *pre_v_weights;
  float *pre_lut;
  void *pre_frame, *pre_tmp;
  size_t pre_frame_bytes, pre_tmp_bytes;
  /* CUDA graphs */
  gboolean graphs;             /* enabled: a workspace is set and SAM2_CUDA_GRAPHS is not 0 */
  gboolean capturing;          /* inside a capture: nothing may allocate or synchronise */
  gboolean capture_needs_eager; /* the capture met a first use (weights, scratch): retry later */
  gboolean graph_warned;       /* one g_warning per backend for a failed capture */
  guint64 scratch_gen;         /* bumped whenever a scratch buffer is reallocated */
  guint64 graph_clock;
  GraphSlot slots[GRAPH_SLOTS];
  Sam2CudaGraphStats graph_stats;
  Sam2CudaPathStats path_stats;
} Sam2BackendCuda;

/* ---- errors ---------------------------------------------------------------------------------- */

static int
cuda_fail (Sam2BackendCuda *cu, cudaError_t err, const char *what)
{
  g_snprintf (cu->detail, sizeof cu->detail, "%s: %s: %s", what, cudaGetErrorName (err),
              cudaGetErrorString (err));
  /* a non-sticky error (a failed allocation, a refused launch) stays as the runtime's "last
   * error"; clear it so the next check does not report it again */
  (void) cudaGetLastError ();
  return err == cudaErrorMemoryAllocation ? SAM2_STATUS_OUT_OF_MEMORY : SAM2_STATUS_DEVICE;
}

static const char *
cublas_status_name (cublasStatus_t st)
{
  switch (st) {
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  default: return "a cuBLAS error";
  }
}

/* A launcher's status (a SAM2_CUDA_* code, the GEMM launchers' included), with the op named for
 * the error message. */
static int
launched (Sam2BackendCuda *cu, int status, const char *what)
{
  if (status != SAM2_STATUS_OK) {
    cudaError_t err = cudaPeekAtLastError ();
    if (err != cudaSuccess)
      return cuda_fail (cu, err, what);
    g_snprintf (cu->detail, sizeof cu->detail, "%s: %s", what,
                status == SAM2_STATUS_UNSUPPORTED ? "arguments the kernel does not support"
                : status == SAM2_STATUS_OUT_OF_MEMORY ? "out of memory"
                : "the launch failed");
  }
  return status;
}

#define CUDA_TRY(cu, call, what)                                                                 \
  do {                                                                                           \
    cudaError_t err_ = (call);                                                                   \
    if (err_ != cudaSuccess)                                                                     \
      return cuda_fail ((cu), err_, (what));                                                     \
  } while (0)

#define LAUNCH(cu, call, what)                                                                   \
  do {                                                                                           \
    int st_ = launched ((cu), (call), (what));                                                   \
    if (st_ != SAM2_STATUS_OK)                                                                   \
      return st_;                                                                                \
  } while (0)

static const char *
cuda_status_detail (Sam2Backend *b)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  return cu->detail[0] != '\0' ? cu->detail : NULL;
}

/* ---- profiling ------------------------------------------------------------------------------- */

static int
profile_begin (Sam2BackendCuda *cu, Sam2OpKind kind, OpEvents **out)
{
  *out = NULL;
  if (!cu->profiling)
    return SAM2_STATUS_OK;
  if (cu->n_events == cu->events->len) {
    /* the pool grows only while profiling: a benchmark aid, not the hot path */
    OpEvents e = { kind, NULL, NULL };
    CUDA_TRY (cu, cudaEventCreate (&e.start), "creating a profiling event");
    cudaError_t err = cudaEventCreate (&e.stop);
    if (err != cudaSuccess) {
      cudaEventDestroy (e.start);
      return cuda_fail (cu, err, "creating a profiling event");
    }
    g_array_append_val (cu->events, e);
  }
  OpEvents *e = &g_array_index (cu->events, OpEvents, cu->n_events);
  e->kind = kind;
  CUDA_TRY (cu, cudaEventRecord (e->start, cu->stream), "recording a profiling event");
  *out = e;
  return SAM2_STATUS_OK;
}

static int
profile_end (Sam2BackendCuda *cu, OpEvents *e, int status)
{
  if (e == NULL || status != SAM2_STATUS_OK)
    return status;
  CUDA_TRY (cu, cudaEventRecord (e->stop, cu->stream), "recording a profiling event");
  cu->n_events++;
  return SAM2_STATUS_OK;
}

/* Device time per op kind when profiling is on (events on the stream; off costs one branch). */
#define PROFILED(kind, call)                                                                     \
  do {                                                                                           \
    Sam2BackendCuda *cu_ = (Sam2BackendCuda *) b;                                                \
    OpEvents *ev_;                                                                               \
    status = profile_begin (cu_, (kind), &ev_);                                                  \
    if (status == SAM2_STATUS_OK)                                                                \
      status = (call);                                                                           \
    status = profile_end (cu_, ev_, status);                                                     \
  } while (0)

static void
cuda_profile_start (Sam2Backend *b)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  sam2_op_profile_reset (cu->profile);
  cu->n_events = 0;
  cu->profiling = TRUE;
}

/* Adds the recorded pairs to the totals (waiting for the stream) and recycles their events: the
 * totals accumulate since profile_start, as on the CPU, and the event pool does not grow when a
 * benchmark reads after every frame. */
static const Sam2OpProfile *
cuda_profile_read (Sam2Backend *b)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (cu->n_events > 0 && cudaStreamSynchronize (cu->stream) == cudaSuccess) {
    for (guint i = 0; i < cu->n_events; i++) {
      OpEvents *e = &g_array_index (cu->events, OpEvents, i);
      float ms = 0.0f;
      if (cudaEventElapsedTime (&ms, e->start, e->stop) == cudaSuccess) {
        cu->profile[e->kind].ms += ms;
        cu->profile[e->kind].calls++;
      }
    }
  }
  (void) cudaGetLastError ();
  cu->n_events = 0;
  return cu->profile;
}

/* ---- memory ---------------------------------------------------------------------------------- */

/* A run_graph body that moves data to or from the host would replay with stale host memory: such
 * a body is a bug in the caller, refused (the capture then fails and the key runs eagerly). */
static gboolean
refuse_in_capture (Sam2BackendCuda *cu, const char *what)
{
  if (!cu->capturing)
    return FALSE;
  g_snprintf (cu->detail, sizeof cu->detail, "%s inside a CUDA graph capture", what);
  return TRUE;
}

/* A first use inside a capture (a layer's weights to copy, scratch to grow) cannot be captured:
 * the capture is abandoned and the call runs eagerly, which does it; the next call captures. */
static int
first_use_in_capture (Sam2BackendCuda *cu, const char *what)
{
  cu->capture_needs_eager = TRUE;
  g_snprintf (cu->detail, sizeof cu->detail, "%s needed inside a CUDA graph capture", what);
  return SAM2_STATUS_DEVICE;
}

/* n floats of device memory, or of page-locked host memory when `host`; NULL on failure (the
 * detail says why). */
static float *
cuda_allocate (Sam2BackendCuda *cu, size_t n, gboolean host)
{
  void *p = NULL;
  cudaError_t err = cudaSetDevice (cu->device);
  if (err == cudaSuccess)
    err = host ? cudaMallocHost (&p, MAX (n, 1) * sizeof (float))
               : cudaMalloc (&p, MAX (n, 1) * sizeof (float));
  if (err != cudaSuccess) {
    cuda_fail (cu, err, host ? "cudaMallocHost" : "cudaMalloc");
    return NULL;
  }
  return p;
}

static float *
cuda_alloc (Sam2Backend *b, size_t n)
{
  return cuda_allocate ((Sam2BackendCuda *) b, n, FALSE);
}

static void
cuda_free (Sam2Backend *b, float *p)
{
  /* cudaFree waits for work using p; nothing useful to do with a failure while freeing */
  if (p != NULL && cudaFree (p) != cudaSuccess)
    (void) cudaGetLastError ();
}

/* backend.h's host_alloc: page-locked host memory, which the DMA engines read and write directly
 * (pageable memory goes through a driver bounce buffer, at a fraction of the bus's speed: the
 * frame's 12 MB of pixels and the decoder's logits cross it every frame and every prompt).
 * SAM2_CUDA_PINNED=0 gives plain memory, to compare. */
static float *
cuda_host_alloc (Sam2Backend *b, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  return cu->pinned ? cuda_allocate (cu, n, TRUE) : g_try_new (float, MAX (n, 1));
}

static void
cuda_host_free (Sam2Backend *b, float *p)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (!cu->pinned)
    g_free (p);
  else if (p != NULL && cudaFreeHost (p) != cudaSuccess)
    (void) cudaGetLastError ();
}

/* Host -> device, then wait: callers reuse their host buffers right away (host_tokens for the
 * next object, the frame's pixels), and pageable cudaMemcpyAsync does not promise to have
 * read the source when it returns. Waiting also surfaces errors of earlier kernels here. */
static int
cuda_upload (Sam2Backend *b, float *dst, const float *host, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (refuse_in_capture (cu, "upload"))
    return SAM2_STATUS_UNSUPPORTED;
  /* every frame and every decode starts with an upload: make this session's device current in
   * the calling thread (a session may move between threads, e.g. GStreamer's) */
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  if (n == 0)
    return SAM2_STATUS_OK;
  CUDA_TRY (cu, cudaMemcpyAsync (dst, host, n * sizeof (float), cudaMemcpyHostToDevice,
                                 cu->stream), "upload (cudaMemcpyAsync)");
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), "upload (the kernels before it)");
  return SAM2_STATUS_OK;
}

/* Device -> host after everything enqueued before: the point where kernel errors surface. */
static int
cuda_download (Sam2Backend *b, float *host, const float *src, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (refuse_in_capture (cu, "download"))
    return SAM2_STATUS_UNSUPPORTED;
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  if (n > 0)
    CUDA_TRY (cu, cudaMemcpyAsync (host, src, n * sizeof (float), cudaMemcpyDeviceToHost,
                                   cu->stream), "download (cudaMemcpyAsync)");
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), "download (the kernels before it)");
  CUDA_TRY (cu, cudaGetLastError (), "download (a kernel launch)");
  return SAM2_STATUS_OK;
}

/* backend.h's upload_async / download_async: the copy enqueued, no wait. From and to
 * page-locked memory the copy engine runs it in stream order; with SAM2_CUDA_PINNED=0 the
 * buffers are pageable and the runtime completes such a copy before returning, which is safe
 * too. */
static int
cuda_copy_async (Sam2BackendCuda *cu, void *dst, const void *src, size_t n,
                 enum cudaMemcpyKind kind, const char *what)
{
  if (refuse_in_capture (cu, what))
    return SAM2_STATUS_UNSUPPORTED;
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  if (n > 0)
    CUDA_TRY (cu, cudaMemcpyAsync (dst, src, n * sizeof (float), kind, cu->stream), what);
  return SAM2_STATUS_OK;
}

static int
cuda_upload_async (Sam2Backend *b, float *dst, const float *host, size_t n)
{
  return cuda_copy_async ((Sam2BackendCuda *) b, dst, host, n, cudaMemcpyHostToDevice,
                          "upload (cudaMemcpyAsync)");
}

static int
cuda_download_async (Sam2Backend *b, float *host, const float *src, size_t n)
{
  return cuda_copy_async ((Sam2BackendCuda *) b, host, src, n, cudaMemcpyDeviceToHost,
                          "download (cudaMemcpyAsync)");
}

/* Device -> device on the stream: no wait, and capturable (a memcpy node of a graph). */
static int
cuda_copy (Sam2Backend *b, float *dst, const float *src, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (n > 0)
    CUDA_TRY (cu, cudaMemcpyAsync (dst, src, n * sizeof (float), cudaMemcpyDeviceToDevice,
                                   cu->stream), "copy (cudaMemcpyAsync)");
  return SAM2_STATUS_OK;
}

static int
cuda_synchronize (Sam2Backend *b)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (refuse_in_capture (cu, "synchronize"))
    return SAM2_STATUS_UNSUPPORTED;
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), "the kernels enqueued");
  CUDA_TRY (cu, cudaGetLastError (), "a kernel launch");
  return SAM2_STATUS_OK;
}

/* The attention kernel is flash-style (no score matrix), so there is nothing to reserve. */
static int
cuda_reserve_attention (Sam2Backend *b, int max_len_q, int max_len_k)
{
  return SAM2_STATUS_OK;
}

/* A device copy of `bytes` of host memory (weights, once per layer). The copy is on the session's
 * stream and waited for: the caller may free a temporary source at once, and the kernels that
 * read the weights next are ordered after it. */
static int
device_alloc (Sam2BackendCuda *cu, size_t bytes, void **out, const char *what)
{
  *out = NULL;
  CUDA_TRY (cu, cudaMalloc (out, MAX (bytes, 1)), what);
  return SAM2_STATUS_OK;
}

static int
device_copy (Sam2BackendCuda *cu, const void *host, size_t bytes, void **out)
{
  *out = NULL;
  if (host == NULL)
    return SAM2_STATUS_OK;
  int st = device_alloc (cu, bytes, out, "cudaMalloc (weights)");
  if (st != SAM2_STATUS_OK)
    return st;
  cudaError_t err = cudaMemcpyAsync (*out, host, bytes, cudaMemcpyHostToDevice, cu->stream);
  if (err == cudaSuccess)
    err = cudaStreamSynchronize (cu->stream);
  if (err != cudaSuccess) {
    cudaFree (*out);
    *out = NULL;
    return cuda_fail (cu, err, "copying weights to the device");
  }
  return SAM2_STATUS_OK;
}

/* Grows a scratch buffer; the stream is drained first because kernels may still read the old
 * one. Only the first frame (and profiling) reach the allocation. */
static int
grow_scratch (Sam2BackendCuda *cu, void **buf, size_t *have, size_t need, const char *what)
{
  if (need <= *have)
    return SAM2_STATUS_OK;
  if (cu->capturing)
    return first_use_in_capture (cu, what);
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), what);
  /* captured graphs point at the old buffer: they are recaptured before their next launch */
  cu->scratch_gen++;
  if (*buf != NULL)
    cudaFree (*buf);
  *buf = NULL;
  *have = 0;
  CUDA_TRY (cu, cudaMalloc (buf, need), what);
  *have = need;
  return SAM2_STATUS_OK;
}

/* ---- the weight cache ------------------------------------------------------------------------ */

static void
cuda_linear_free (gpointer data)
{
  CudaLinear *w = data;
  void *ptrs[] = { w->w32, w->w16, w->bias, w->blob, w->smooth_inv, w->lora_down, w->lora_up };
  for (guint i = 0; i < G_N_ELEMENTS (ptrs); i++)
    if (ptrs[i] != NULL)
      cudaFree (ptrs[i]);
  g_free (w);
}

static void
cuda_norm_free (gpointer data)
{
  CudaNorm *n = data;
  if (n->weight != NULL)
    cudaFree (n->weight);
  if (n->bias != NULL)
    cudaFree (n->bias);
  g_free (n);
}

/* IEEE half from float, round to nearest even; overflow to infinity, subnormals kept. Host-side,
 * once per layer: the weights of the FP16 precision. */
static uint16_t
f32_to_f16 (float f)
{
  union { float f; uint32_t u; } v = { f };
  const uint32_t sign = (v.u >> 16) & 0x8000u;
  const uint32_t absu = v.u & 0x7fffffffu;
  if (absu >= 0x7f800000u)                        /* inf, nan */
    return (uint16_t) (sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0));
  if (absu >= 0x477ff000u)                        /* rounds to >= 65536: inf */
    return (uint16_t) (sign | 0x7c00u);
  if (absu < 0x38800000u) {                       /* below 2^-14: subnormal or zero */
    if (absu < 0x33000000u)                       /* below half the smallest subnormal */
      return (uint16_t) sign;
    const uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
    const int shift = 126 - (int) (absu >> 23);   /* 14 .. 24 */
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1)))
      h++;
    return (uint16_t) (sign | h);
  }
  uint32_t h = ((absu >> 13) - (112u << 10));
  const uint32_t rem = absu & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
    h++;                                          /* may carry into the exponent: still right */
  return (uint16_t) (sign | h);
}

/* bfloat16 from float, round to nearest even (overflow to infinity), NaN kept quiet: the upper
 * half of the float's bits. Host-side, once per layer: the weights of the BF16 precision. */
static uint16_t
f32_to_bf16 (float f)
{
  uint32_t u;
  memcpy (&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

/* A weight-only quantized layer (no activation quantization) runs as a float layer: the
 * dequantized weight with the low-rank branch and the smoothing folded in,
 * W_eff = (W + L_up L_down) diag(smooth_inv), the algebra the CPU backend uses for it. */
static float *
weight_only_effective (const Sam2QuantLinear *q)
{
  const int N = q->w.n, K = q->w.k, R = q->rank;
  float *w = g_try_new (float, (size_t) N * K);
  if (w == NULL)
    return NULL;
  sam2_w4_dequantize (&q->w, w);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) {
      double acc = w[(size_t) n * K + k];
      for (int r = 0; r < R; r++)
        acc += (double) q->lora_up[(size_t) n * R + r] * q->lora_down[(size_t) r * K + k];
      if (q->smooth_inv != NULL)
        acc *= q->smooth_inv[k];
      w[(size_t) n * K + k] = (float) acc;
    }
  return w;
}

static int
upload_float_weights (Sam2BackendCuda *cu, CudaLinear *d, const float *w)
{
  const size_t nk = (size_t) d->n * d->k;
  if (cu->precision == SAM2_PRECISION_FP32) {
    d->kind = WEIGHTS_F32;
    return device_copy (cu, w, nk * sizeof (float), (void **) &d->w32);
  }
  d->kind = WEIGHTS_16;
  uint16_t *h = g_try_new (uint16_t, nk);
  if (h == NULL)
    return SAM2_STATUS_OUT_OF_MEMORY;
  for (size_t i = 0; i < nk; i++)
    h[i] = cu->half == SAM2_CUDA_BF16 ? f32_to_bf16 (w[i]) : f32_to_f16 (w[i]);
  int st = device_copy (cu, h, nk * sizeof (uint16_t), (void **) &d->w16);
  g_free (h);
  return st;
}

static int
upload_w4a8 (Sam2BackendCuda *cu, const Sam2QuantLinear *q, CudaLinear *d)
{
  Sam2CudaW4A8Layer *L = &d->layer;
  d->kind = WEIGHTS_W4A8;
  sam2_cuda_w4a8_geometry (q->w.n, q->w.k, q->w.group_size, &L->geo);
  if (L->geo.n_groups != q->w.n_groups) {
    g_snprintf (cu->detail, sizeof cu->detail, "layer %dx%d: %d weight groups, the kernel's "
                "geometry has %d", q->w.n, q->w.k, q->w.n_groups, L->geo.n_groups);
    return SAM2_STATUS_UNSUPPORTED;
  }
  Sam2CudaW4A8Blob lay;
  sam2_cuda_w4a8_blob_layout (&L->geo, &lay);
  void *host = g_try_malloc0 (lay.total);
  if (host == NULL)
    return SAM2_STATUS_OUT_OF_MEMORY;
  sam2_cuda_w4a8_pack_host (&L->geo, q->w.codes, q->w.scales, q->w.zeros, host);
  int st = device_copy (cu, host, lay.total, &d->blob);
  g_free (host);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, q->smooth_inv, (size_t) q->w.k * sizeof (float),
                      (void **) &d->smooth_inv);
  if (st == SAM2_STATUS_OK && q->rank > 0)
    st = device_copy (cu, q->lora_down, (size_t) q->rank * q->w.k * sizeof (float),
                      (void **) &d->lora_down);
  if (st == SAM2_STATUS_OK && q->rank > 0)
    st = device_copy (cu, q->lora_up, (size_t) q->w.n * q->rank * sizeof (float),
                      (void **) &d->lora_up);
  if (st != SAM2_STATUS_OK)
    return st;
  const char *base = d->blob;
  L->act_mode = (int) q->act;
  L->act_scale = q->act_scale;
  L->act_zero = q->act_zero;
  L->w = (const uint32_t *) (base + lay.w);
  L->wzero = (const int32_t *) (base + lay.wzero);
  L->wsum = (const int32_t *) (base + lay.wsum);
  L->wscale = (const float *) (base + lay.wscale);
  L->bias = d->bias;
  L->smooth_inv = d->smooth_inv;
  L->rank = q->rank;
  L->lora_down = d->lora_down;
  L->lora_up = d->lora_up;
  return SAM2_STATUS_OK;
}

/* The device form of `l`, made on first use. */
static int
linear_weights (Sam2BackendCuda *cu, const Sam2Linear *l, const CudaLinear **out)
{
  CudaLinear *d = g_hash_table_lookup (cu->linears, l);
  if (d != NULL) {
    *out = d;
    return SAM2_STATUS_OK;
  }
  if (cu->capturing)
    return first_use_in_capture (cu, "copying a layer's weights");
  d = g_new0 (CudaLinear, 1);
  d->n = l->out_features;
  d->k = l->in_features;
  const Sam2QuantLinear *q = l->quant;
  const float *bias = q != NULL ? q->bias : l->bias;
  int st = device_copy (cu, bias, (size_t) d->n * sizeof (float), (void **) &d->bias);
  if (st == SAM2_STATUS_OK) {
    if (q == NULL) {
      st = upload_float_weights (cu, d, l->weight);
    } else if (q->act == SAM2_ACT_QUANT_NONE) {
      float *w = weight_only_effective (q);
      st = w != NULL ? upload_float_weights (cu, d, w) : SAM2_STATUS_OUT_OF_MEMORY;
      g_free (w);
    } else {
      st = upload_w4a8 (cu, q, d);
    }
  }
  if (st != SAM2_STATUS_OK) {
    cuda_linear_free (d);
    return st;
  }
  g_hash_table_insert (cu->linears, (gpointer) l, d);
  *out = d;
  return SAM2_STATUS_OK;
}

static int
norm_weights (Sam2BackendCuda *cu, const Sam2LayerNorm *n, const CudaNorm **out)
{
  CudaNorm *d = g_hash_table_lookup (cu->norms, n);
  if (d != NULL) {
    *out = d;
    return SAM2_STATUS_OK;
  }
  if (cu->capturing)
    return first_use_in_capture (cu, "copying a norm's weights");
  d = g_new0 (CudaNorm, 1);
  int st = device_copy (cu, n->weight, (size_t) n->dim * sizeof (float), (void **) &d->weight);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, n->bias, (size_t) n->dim * sizeof (float), (void **) &d->bias);
  if (st != SAM2_STATUS_OK) {
    cuda_norm_free (d);
    return st;
  }
  g_hash_table_insert (cu->norms, (gpointer) n, d);
  *out = d;
  return SAM2_STATUS_OK;
}

/* ---- ops ------------------------------------------------------------------------------------- */

/* The 16-bit operand scratch, grown to `halves` (see grow_scratch). */
static int
f16_scratch (Sam2BackendCuda *cu, size_t halves, uint16_t **out)
{
  int st = grow_scratch (cu, (void **) &cu->x16, &cu->x16_bytes, halves * sizeof (uint16_t),
                         "the 16-bit activation scratch");
  *out = cu->x16;
  return st;
}

/* y (M, N) = act(a16 W^T + bias) + residual for 16-bit weights, a16 (M, K) the 16-bit operand
 * already on the device: cuBLASLt with the bias (and residual) in its epilogue, or, where it
 * offers no algorithm for the shape and alignment, cublasGemmEx and a separate epilogue pass. */
static int
f16_linear_from16 (Sam2BackendCuda *cu, const CudaLinear *w, const uint16_t *a16, int M, float *y,
                   Sam2Act act, const float *residual, const char *what)
{
  const int N = w->n, K = w->k;
  if (cu->cublaslt != NULL && (w->bias != NULL || residual != NULL)) {
    int st = sam2_cuda_gemm_16_bias_nt (cu->cublaslt, cu->half, a16, w->w16, M, N, K, w->bias,
                                        residual != NULL ? 1.0f : 0.0f, residual, y, cu->stream,
                                        cu->cublas_ws, CUBLAS_WORKSPACE_BYTES);
    if (st == SAM2_STATUS_OK) {
      if (act != SAM2_ACT_NONE)
        LAUNCH (cu, sam2_cuda_activation ((int) act, y, (size_t) M * N, cu->stream), what);
      return SAM2_STATUS_OK;
    }
    if (st != SAM2_STATUS_UNSUPPORTED)
      return launched (cu, st, what);
  }
  /* residual == y: the GEMM accumulates into it (beta 1); another buffer: the epilogue adds it */
  const float beta = residual != NULL && residual == y ? 1.0f : 0.0f;
  const float *epilogue_residual = residual != y ? residual : NULL;
  LAUNCH (cu, sam2_cuda_gemm_16_nt (cu->cublas, cu->half, a16, w->w16, M, N, K, beta, y), what);
  if (w->bias != NULL || act != SAM2_ACT_NONE || epilogue_residual != NULL)
    LAUNCH (cu, sam2_cuda_bias_act_residual (y, M, N, w->bias, (int) act, epilogue_residual,
                                             cu->stream), what);
  return SAM2_STATUS_OK;
}

static int
cuda_linear_run (Sam2Backend *b, const Sam2Linear *l, const float *x, int M, float *y, Sam2Act act,
                 const float *residual)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (act != SAM2_ACT_NONE && residual != NULL)
    return SAM2_STATUS_UNSUPPORTED;
  if (M == 0)
    return SAM2_STATUS_OK;
  const CudaLinear *w;
  int st = linear_weights (cu, l, &w);
  if (st != SAM2_STATUS_OK)
    return st;

  if (w->kind == WEIGHTS_W4A8) {
    st = grow_scratch (cu, &cu->w4a8_ws, &cu->w4a8_ws_bytes,
                       sam2_cuda_w4a8_linear_workspace_bytes (&w->layer, M),
                       "the W4A8 workspace");
    if (st != SAM2_STATUS_OK)
      return st;
    st = launched (cu, sam2_cuda_w4a8_linear (&w->layer, x, M, y, (int) act, residual,
                                              cu->cublas, cu->stream, cu->w4a8_ws), l->name);
    /* the low-rank GEMM of a wide rank calls cublasSetStream, which puts cuBLAS back on its own
     * workspace pool: give it ours again, for the float GEMMs after it (and their capture) */
    if (w->layer.rank > SAM2_CUDA_QUANT_MAX_FUSED_RANK && cu->cublas_ws != NULL) {
      cublasStatus_t cst = cublasSetWorkspace (cu->cublas, cu->cublas_ws, CUBLAS_WORKSPACE_BYTES);
      if (cst != CUBLAS_STATUS_SUCCESS && st == SAM2_STATUS_OK) {
        g_snprintf (cu->detail, sizeof cu->detail, "%s: cublasSetWorkspace: %s", l->name,
                    cublas_status_name (cst));
        st = SAM2_STATUS_DEVICE;
      }
    }
    return st;
  }

  const int N = w->n, K = w->k;
  if (w->kind == WEIGHTS_16 && cu->small_m && M <= SAM2_CUDA_LINEAR_SMALL_M_MAX) {
    /* the decoder's token rows: one launch instead of conversion, GEMM and epilogue */
    LAUNCH (cu, sam2_cuda_linear_16_small_m (x, NULL, M, K, cu->half, w->w16, N, w->bias,
                                             (int) act, residual, y, cu->stream), l->name);
    return SAM2_STATUS_OK;
  }
  if (w->kind == WEIGHTS_16) {
    uint16_t *x16;
    st = f16_scratch (cu, (size_t) M * K, &x16);
    if (st != SAM2_STATUS_OK)
      return st;
    LAUNCH (cu, sam2_cuda_f32_to_16 (x, (size_t) M * K, cu->half, x16, cu->stream), l->name);
    return f16_linear_from16 (cu, w, x16, M, y, act, residual, l->name);
  }
  /* residual == y: the GEMM accumulates into it (beta 1); another buffer: the epilogue adds it */
  const float beta = residual != NULL && residual == y ? 1.0f : 0.0f;
  const float *epilogue_residual = residual != y ? residual : NULL;
  LAUNCH (cu, sam2_cuda_gemm_f32_nt (cu->cublas, x, w->w32, M, N, K, beta, y), l->name);
  if (w->bias != NULL || act != SAM2_ACT_NONE || epilogue_residual != NULL)
    LAUNCH (cu, sam2_cuda_bias_act_residual (y, M, N, w->bias, (int) act, epilogue_residual,
                                             cu->stream), l->name);
  return SAM2_STATUS_OK;
}

static int
cuda_layer_norm_run (Sam2Backend *b, const Sam2LayerNorm *n, const float *x, int M, float *y)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  const CudaNorm *d;
  int st = norm_weights (cu, n, &d);
  if (st != SAM2_STATUS_OK)
    return st;
  LAUNCH (cu, sam2_cuda_layer_norm (x, M, n->dim, d->weight, d->bias, n->eps, y, cu->stream),
          "layer_norm");
  return SAM2_STATUS_OK;
}

/* Sam2AttentionArgs as the kernels take them: float inputs and output. */
static Sam2CudaAttentionArgs
cuda_attention_args (const Sam2AttentionArgs *a)
{
  return (Sam2CudaAttentionArgs) {
    .batch = a->batch, .heads = a->heads, .head_dim = a->head_dim, .len_q = a->len_q,
    .len_k = a->len_k, .scale = a->scale,
    .q = a->q, .q_ld = a->q_ld, .q_batch_stride = a->q_batch_stride,
    .k = a->k, .k_ld = a->k_ld, .k_batch_stride = a->k_batch_stride,
    .v = a->v, .v_ld = a->v_ld, .v_batch_stride = a->v_batch_stride,
    .out = a->out, .out_ld = a->out_ld, .out_batch_stride = a->out_batch_stride,
  };
}

/* The attention kernel of the precision for `args` (inputs and output as set there: 16-bit ones
 * in a 16-bit precision only). */
static int
cuda_attention_launch (Sam2BackendCuda *cu, const Sam2CudaAttentionArgs *args)
{
  if (args->head_dim < 1 || args->head_dim > SAM2_CUDA_ATTENTION_MAX_HEAD_DIM) {
    g_snprintf (cu->detail, sizeof cu->detail, "attention: head_dim %d is outside 1..%d",
                args->head_dim, SAM2_CUDA_ATTENTION_MAX_HEAD_DIM);
    return SAM2_STATUS_UNSUPPORTED;
  }
  /* 16-bit precisions: q k^T and p v on the tensor cores (16-bit operands, FP32 softmax and
   * sums), the same rounding of operands as the 16-bit GEMMs */
  if (cu->precision != SAM2_PRECISION_FP32)
    LAUNCH (cu, sam2_cuda_attention_16 (args, cu->half, cu->stream), "attention (16-bit)");
  else
    LAUNCH (cu, sam2_cuda_attention (args, cu->stream), "attention");
  return SAM2_STATUS_OK;
}

static int
cuda_attention_run (Sam2Backend *b, const Sam2AttentionArgs *a)
{
  const Sam2CudaAttentionArgs args = cuda_attention_args (a);
  return cuda_attention_launch ((Sam2BackendCuda *) b, &args);
}

static int
cuda_matmul_nt_run (Sam2Backend *b, const float *A, const float *B, int M, int N, int K, float *C)
{
  /* FP32 in every precision: the hypernetwork product is a few KFLOP, both operands activations */
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  return launched (cu, sam2_cuda_gemm_f32_nt (cu->cublas, A, B, M, N, K, 0.0f, C), "matmul_nt");
}

/* The thin ops: a launcher each, profiled by kind. */

static int
cuda_linear (Sam2Backend *b, const Sam2Linear *l, const float *x, int M, float *y, Sam2Act act,
             const float *residual)
{
  int status;
  PROFILED (SAM2_OP_LINEAR, cuda_linear_run (b, l, x, M, y, act, residual));
  return status;
}

/* The device counter of sam2_cuda_norm_linear_16_small_m, zeroed once (each launch leaves it
 * so); allocated at a first, eager, use. */
static int
row_counter (Sam2BackendCuda *cu, unsigned int **out)
{
  if (cu->row_counter == NULL) {
    if (cu->capturing)
      return first_use_in_capture (cu, "allocating the row counter");
    int st = device_alloc (cu, sizeof (unsigned int), (void **) &cu->row_counter,
                           "the row counter");
    if (st != SAM2_STATUS_OK)
      return st;
    CUDA_TRY (cu, cudaMemsetAsync (cu->row_counter, 0, sizeof (unsigned int), cu->stream),
              "the row counter");
  }
  *out = cu->row_counter;
  return SAM2_STATUS_OK;
}

/* backend.h's norm_sum_linear for 16-bit weights: the token-row linear (cuda_linear_run's) reads
 * x + addend itself, and normalises its rows first (writing them back) when there is a norm; for
 * more rows the sums go straight into the GEMM's 16-bit operand (the conversion cuda_linear_run
 * runs anyway), without a norm. One or two launches fewer than the ops, and for HW rows the
 * float sums' write and read, the same floats. FP32 and W4A8 layers are left to the ops. */
static int
cuda_norm_sum_linear (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *l, float *x,
                      const float *addend, int M, Sam2Act act, float *y, gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  if (M < 1)
    return SAM2_STATUS_OK;
  const CudaLinear *w;
  int status = linear_weights (cu, l, &w);
  if (status != SAM2_STATUS_OK || w->kind != WEIGHTS_16)
    return status;
  const gboolean small = cu->small_m && M <= SAM2_CUDA_LINEAR_SMALL_M_MAX;
  if (n != NULL) {
    if (!small || n->dim != w->k
        || (size_t) M * w->k * sizeof (float) > SAM2_CUDA_NORM_LINEAR_SMALL_M_MAX_BYTES)
      return SAM2_STATUS_OK;
    const CudaNorm *d;
    unsigned int *counter = NULL;
    status = norm_weights (cu, n, &d);
    if (status == SAM2_STATUS_OK)
      status = row_counter (cu, &counter);
    if (status != SAM2_STATUS_OK)
      return status;
    const Sam2CudaRowNorm norm = { d->weight, d->bias, n->eps };
    *done = TRUE;
    PROFILED (SAM2_OP_LINEAR,
              launched (cu, sam2_cuda_norm_linear_16_small_m (&norm, counter, x, addend, M, w->k,
                                                              cu->half, w->w16, w->n, w->bias,
                                                              (int) act, y, cu->stream),
                        l->name));
    return status;
  }
  if (small) {
    *done = TRUE;
    PROFILED (SAM2_OP_LINEAR,
              launched (cu, sam2_cuda_linear_16_small_m (x, addend, M, w->k, cu->half, w->w16,
                                                         w->n, w->bias, (int) act, NULL, y,
                                                         cu->stream), l->name));
    return status;
  }
  if (addend == NULL)
    return SAM2_STATUS_OK;   /* the plain linear */
  uint16_t *x16;   /* (M, K) */
  status = f16_scratch (cu, (size_t) M * w->k, &x16);
  if (status != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  PROFILED (SAM2_OP_LINEAR,
            launched (cu, sam2_cuda_sum_to_16 (x, addend, (size_t) M * w->k, cu->half, x16,
                                               cu->stream), l->name));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR, f16_linear_from16 (cu, w, x16, M, y, act, NULL, l->name));
  return status;
}

/* The kind of weights linear_weights gives l, without uploading them. */
static WeightsKind
linear_kind (const Sam2BackendCuda *cu, const Sam2Linear *l)
{
  if (l->quant != NULL && l->quant->act != SAM2_ACT_QUANT_NONE)
    return WEIGHTS_W4A8;
  return cu->precision == SAM2_PRECISION_FP32 ? WEIGHTS_F32 : WEIGHTS_16;
}

/* Whether layer l on `rows` rows can take a 16-bit operand that another pass wrote: a 16-bit
 * precision, 16-bit weights, 1 .. G_MAXINT rows and more than the token-row linear takes (which
 * reads floats itself). */
static gboolean
layer_kind_takes_16 (const Sam2BackendCuda *cu, const Sam2Linear *l, size_t rows)
{
  return cu->precision != SAM2_PRECISION_FP32 && rows > 0 && rows <= G_MAXINT
         && !(cu->small_m && rows <= SAM2_CUDA_LINEAR_SMALL_M_MAX)
         && linear_kind (cu, l) == WEIGHTS_16;
}

/* layer_kind_takes_16, with l's weights in *w when it can. */
static int
layer_takes_16 (Sam2BackendCuda *cu, const Sam2Linear *l, size_t rows, const CudaLinear **w,
                gboolean *takes)
{
  *takes = FALSE;
  if (!layer_kind_takes_16 (cu, l, rows))
    return SAM2_STATUS_OK;
  const int status = linear_weights (cu, l, w);
  *takes = status == SAM2_STATUS_OK && (*w)->kind == WEIGHTS_16;
  return status;
}

/* backend.h's norm_linear_pair for two 16-bit layers on more rows than the token-row linear
 * takes: one pass (sam2_cuda_norm_operands_16) normalises x in place and writes both GEMM
 * operands, x + addend and x, which the ops wrote with a LayerNorm, a sum conversion and a plain
 * conversion; then the two GEMMs. Two launches and a float read and write of x fewer, the same
 * bits (SAM2_CUDA_NORM_PAIR=0 for the ops). */
static int
cuda_norm_linear_pair (Sam2Backend *b, const Sam2LayerNorm *n, float *x, const float *addend,
                       int M, const Sam2Linear *l1, float *y1, const Sam2Linear *l2, float *y2,
                       gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  const int K = l1->in_features;
  if (M < 1 || addend == NULL || l2->in_features != K || (n != NULL && n->dim != K))
    return SAM2_STATUS_OK;
  const CudaLinear *w1, *w2;
  gboolean takes1, takes2 = FALSE;
  int status = layer_takes_16 (cu, l1, (size_t) M, &w1, &takes1);
  if (status == SAM2_STATUS_OK && takes1)
    status = layer_takes_16 (cu, l2, (size_t) M, &w2, &takes2);
  if (status != SAM2_STATUS_OK || !takes2)
    return status;
  const CudaNorm *d = NULL;
  if (n != NULL && (status = norm_weights (cu, n, &d)) != SAM2_STATUS_OK)
    return status;
  /* x + addend (M, K), then x (M, K) 256 bytes aligned, as the scratch's start: cuBLASLt picks
   * its algorithm by the operand's alignment, and the ops' GEMMs read theirs from the start */
  uint16_t *x16;
  const size_t MK = (size_t) M * K, plain_at = (MK + 127) & ~(size_t) 127;
  if ((status = f16_scratch (cu, plain_at + MK, &x16)) != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  const Sam2CudaRowNorm norm = { d != NULL ? d->weight : NULL, d != NULL ? d->bias : NULL,
                                 n != NULL ? n->eps : 0.0f };
  PROFILED (n != NULL ? SAM2_OP_LAYER_NORM : SAM2_OP_LINEAR,
            launched (cu, sam2_cuda_norm_operands_16 (x, M, K, n != NULL ? &norm : NULL, addend,
                                                      cu->half, x16, x16 + plain_at,
                                                      cu->stream),
                      l1->name));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR, f16_linear_from16 (cu, w1, x16, M, y1, SAM2_ACT_NONE, NULL,
                                                 l1->name));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR, f16_linear_from16 (cu, w2, x16 + plain_at, M, y2, SAM2_ACT_NONE,
                                                 NULL, l2->name));
  return status;
}

static int
cuda_layer_norm (Sam2Backend *b, const Sam2LayerNorm *n, const float *x, int M, float *y)
{
  int status;
  PROFILED (SAM2_OP_LAYER_NORM, cuda_layer_norm_run (b, n, x, M, y));
  return status;
}

static int
cuda_activation (Sam2Backend *b, Sam2Act act, float *x, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_ACTIVATION,
            launched (cu, sam2_cuda_activation ((int) act, x, n, cu->stream), "activation"));
  return status;
}

static int
cuda_add (Sam2Backend *b, float *y, const float *a, const float *c, size_t n)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_ADD, launched (cu, sam2_cuda_add (y, a, c, n, cu->stream), "add"));
  return status;
}

static int
cuda_add_row (Sam2Backend *b, float *y, const float *x, const float *row, int M, int C)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_ADD,
            launched (cu, sam2_cuda_add_row (y, x, row, M, C, cu->stream), "add_row"));
  return status;
}

static int
cuda_attention (Sam2Backend *b, const Sam2AttentionArgs *a)
{
  int status;
  PROFILED (SAM2_OP_ATTENTION, cuda_attention_run (b, a));
  return status;
}

/* A block's qkv operand in 16 bits, x16 (rows of `win`, K): the windows of LN (x) (n, d) in
 * one pass, or, without a norm (x normalised already), the windows of x; the ops' rounding of
 * their float rows either way. */
static int
windows_operand_16 (Sam2BackendCuda *cu, const Sam2LayerNorm *n, const CudaNorm *d,
                    const float *x, const Sam2CudaRowWindows *win, int K, uint16_t *x16)
{
  Sam2Backend *b = &cu->parent;
  int status;
  if (n != NULL)
    PROFILED (SAM2_OP_LAYER_NORM,
              launched (cu, sam2_cuda_layer_norm_windows_16 (x, win, n->dim, d->weight, d->bias,
                                                             n->eps, cu->half, x16, cu->stream),
                        "layer_norm"));
  else
    PROFILED (SAM2_OP_WINDOW,
              launched (cu, sam2_cuda_window_partition_16 (x, win, K, cu->half, x16, cu->stream),
                        "window_partition"));
  return status;
}

/* Whether an attention of `rows` output rows hands `proj` its 16-bit operand (the
 * attention_linear path): SAM2_CUDA_ATTENTION_OUT16 not 0, and layer_kind_takes_16. */
static gboolean
proj_kind_takes_out16 (const Sam2BackendCuda *cu, const Sam2Linear *proj, size_t rows)
{
  return cu->ops.attention_linear != NULL && layer_kind_takes_16 (cu, proj, rows);
}

/* proj_kind_takes_out16, with proj's weights in *w when it does. */
static int
proj_takes_out16 (Sam2BackendCuda *cu, const Sam2Linear *proj, size_t rows, const CudaLinear **w,
                  gboolean *takes)
{
  *takes = FALSE;
  return proj_kind_takes_out16 (cu, proj, rows) ? layer_takes_16 (cu, proj, rows, w, takes)
                                                : SAM2_STATUS_OK;
}

/* The attention of `args` (its inputs as set: floats or 16-bit), then y (rows, N) = proj (its
 * output) + residual: through proj's 16-bit operand out16 (the attention_linear path) when not
 * NULL (w: proj's weights), else through the float rows `out` and cuda_linear_run. */
static int
attention_then_linear (Sam2BackendCuda *cu, Sam2CudaAttentionArgs args, uint16_t *out16,
                       float *out, const Sam2Linear *proj, const CudaLinear *w, float *y,
                       const float *residual)
{
  Sam2Backend *b = &cu->parent;
  const int rows = args.batch * args.len_q;
  int status;
  args.out = out16 != NULL ? NULL : out;
  args.out16 = out16;
  args.out16_type = cu->half;
  PROFILED (SAM2_OP_ATTENTION, cuda_attention_launch (cu, &args));
  if (status != SAM2_STATUS_OK)
    return status;
  if (out16 != NULL)
    PROFILED (SAM2_OP_LINEAR, f16_linear_from16 (cu, w, out16, rows, y, SAM2_ACT_NONE, residual,
                                                 proj->name));
  else
    PROFILED (SAM2_OP_LINEAR, cuda_linear_run (b, proj, out, rows, y, SAM2_ACT_NONE, residual));
  return status;
}

/* backend.h's attention_linear for 16-bit weights in a 16-bit precision: the attention writes
 * the layer's 16-bit operand (the rounding cuda_linear_run's conversion would apply), which the
 * GEMM reads; one launch and the float rows' write and read fewer, the same bits
 * (SAM2_CUDA_ATTENTION_OUT16=0 for the ops). Token rows (the small-M linear reads floats itself),
 * FP32 and W4A8 layers are left to the ops. */
static int
cuda_attention_linear (Sam2Backend *b, const Sam2AttentionArgs *a, const Sam2Linear *l, float *y,
                       const float *residual, gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  const size_t M = (size_t) a->batch * a->len_q;
  const int K = a->heads * a->head_dim;
  if (K != l->in_features || a->out_ld != K
      || (a->batch > 1 && a->out_batch_stride != (size_t) a->len_q * K))
    return SAM2_STATUS_OK;
  const CudaLinear *w;
  gboolean takes;
  int status = proj_takes_out16 (cu, l, M, &w, &takes);
  if (status != SAM2_STATUS_OK || !takes)
    return status;
  uint16_t *x16;   /* (M, K) */
  if ((status = f16_scratch (cu, M * K, &x16)) != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  return attention_then_linear (cu, cuda_attention_args (a), x16, NULL, l, w, y, residual);
}

/* y16 (M, N) = a16 W^T + bias of a 16-bit layer rounded to the backend's 16-bit format
 * (sam2_cuda_gemm_16_bias_nt_to16); *refused TRUE, with nothing launched, where cuBLASLt offers
 * no algorithm with a 16-bit output for it. */
static int
linear_16_to16 (Sam2BackendCuda *cu, const CudaLinear *w, const uint16_t *a16, int M,
                uint16_t *y16, const char *what, gboolean *refused)
{
  const int st = sam2_cuda_gemm_16_bias_nt_to16 (cu->cublaslt, cu->half, a16, w->w16, M, w->n,
                                                 w->k, w->bias, y16, cu->stream, cu->cublas_ws,
                                                 CUBLAS_WORKSPACE_BYTES);
  *refused = st == SAM2_CUDA_UNSUPPORTED;
  return *refused ? SAM2_STATUS_OK : launched (cu, st, what);
}

/* Element offset of p in buf (floats), or -1 when p lies before it. */
static ptrdiff_t
offset_in (const float *buf, const float *p)
{
  return p >= buf ? p - buf : -1;
}

/* The float rows of qkv's output per GEMM where cuBLASLt has no 16-bit output for qkv's shape
 * (qkv16_from_float_chunks): 16 MiB whatever the layer's width (a few GEMMs per block, a small
 * buffer); SAM2_CUDA_QKV_FLOAT_CHUNK (bytes) sets another, for tests that need several chunks of
 * small layers. */
#define QKV_FLOAT_CHUNK_BYTES ((size_t) 16 << 20)

/* How norm_attention_linear's pass runs a block (qkv_pass_plan), decided from the layers and
 * the geometry alone, so that norm_attention_linear_spares can say it before the buffers exist:
 *   takes   the pass runs (qkv's output and the pooled q in 16 bits in the first halves of
 *           qkv_buf's and q_buf's bytes, the windows in the 16-bit scratch);
 *   out16   the attention writes proj's 16-bit operand (args->out unwritten). */
typedef struct {
  gboolean takes, out16;
} QkvPassPlan;

/* The plan for a block on M rows of qkv (windows included), `rows` of the attention's output,
 * q, k and v at element offsets q_at (in q_buf's rows when pooled, else qkv_buf's), k_at and
 * v_at of qkv_buf's rows, `reads_16`: whether the attention takes 16-bit inputs where they
 * would lie (sam2_cuda_attention_16_reads_16 or its _at form). */
static QkvPassPlan
qkv_pass_plan (const Sam2BackendCuda *cu, const Sam2LayerNorm *n, const Sam2Linear *qkv,
               long long M, int q_stride, const Sam2AttentionArgs *a, ptrdiff_t q_at,
               ptrdiff_t k_at, ptrdiff_t v_at, gboolean reads_16, const Sam2Linear *proj)
{
  QkvPassPlan plan = { FALSE, FALSE };
  const int N3 = qkv->out_features, width = a->heads * a->head_dim;
  const gboolean pooled = q_stride > 1;
  if (cu->precision == SAM2_PRECISION_FP32 || cu->cublaslt == NULL || !cu->norm_f16
      || M <= SAM2_CUDA_LINEAR_SMALL_M_MAX || M > G_MAXINT || a->k_ld != N3 || a->v_ld != N3
      || a->q_ld != (pooled ? width : N3) || q_at < 0 || q_at >= a->q_ld || k_at < 0
      || k_at >= N3 || v_at < 0 || v_at >= N3 || linear_kind (cu, qkv) != WEIGHTS_16
      || (n != NULL && qkv->in_features != n->dim) || !reads_16)
    return plan;
  plan.takes = TRUE;
  plan.out16 = proj_kind_takes_out16 (cu, proj, (size_t) a->batch * a->len_q);
  return plan;
}

/* backend.h's norm_attention_linear_spares: qkv_pass_plan with q, k and v where the model's
 * blocks put them. */
static unsigned
cuda_norm_attention_linear_spares (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *qkv,
                                   int n_img, int H, int W, int ws, int q_stride,
                                   const Sam2AttentionArgs *a, const Sam2Linear *proj)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  const int width = a->heads * a->head_dim;
  /* qkv's operand rows: every window (padding included), or the maps' rows */
  const Sam2CudaRowWindows win = { n_img, H, W, ws > 0 ? ws : 1 };
  const Sam2CudaAttentionArgs in16 = cuda_attention_args (a);
  const QkvPassPlan plan
    = qkv_pass_plan (cu, n, qkv, sam2_cuda_row_windows_rows (&win), q_stride, a, 0, width,
                     2 * width, sam2_cuda_attention_16_reads_16_at (&in16, 0, width, 2 * width),
                     proj);
  return (plan.takes ? SAM2_PASS_QKV_HALVES : 0u) | (plan.out16 ? SAM2_PASS_NO_ATTENTION_OUT : 0u);
}

/* qkv16 (M, N) = x16 W^T + bias rounded to the 16-bit format, through float GEMMs of up to
 * QKV_FLOAT_CHUNK_BYTES each and their conversion: where cuBLASLt has no 16-bit output for the
 * shape. The pass keeps its 16-bit layout (the model sized qkv_buf for it); the values are the
 * float output's rounding, as the to-16 epilogue's, up to the float GEMM's own summation order
 * (another M may choose another algorithm). */
static int
qkv16_from_float_chunks (Sam2BackendCuda *cu, const CudaLinear *w, const uint16_t *x16, int M,
                         uint16_t *qkv16, const char *what)
{
  const int N = w->n;
  const int chunk = (int) MAX ((size_t) 1, MIN ((size_t) M, cu->qkv_float_chunk_bytes
                                                               / (sizeof (float) * (size_t) N)));
  int status = grow_scratch (cu, (void **) &cu->qkv_float, &cu->qkv_float_bytes,
                             (size_t) chunk * N * sizeof (float), "qkv's float output");
  for (int r0 = 0; r0 < M && status == SAM2_STATUS_OK; r0 += chunk) {
    const int rows = MIN (chunk, M - r0);
    status = f16_linear_from16 (cu, w, x16 + (size_t) r0 * w->k, rows, cu->qkv_float,
                                SAM2_ACT_NONE, NULL, what);
    if (status == SAM2_STATUS_OK)
      status = launched (cu, sam2_cuda_f32_to_16 (cu->qkv_float, (size_t) rows * N, cu->half,
                                                  qkv16 + (size_t) r0 * N, cu->stream), what);
  }
  return status;
}

/* backend.h's norm_attention_linear for 16-bit qkv weights in a 16-bit precision: qkv's
 * LayerNorm + windows pass into its 16-bit operand (as cuda_norm_windows_linear; without a norm,
 * the windows alone), qkv's GEMM writing its output in 16 bits (sam2_cuda_gemm_16_bias_nt_to16:
 * the float output's rounding), q pooled from those where the block pools queries
 * (sam2_cuda_max_pool_16), the attention reading them (sam2_cuda_attention_16's q16, k16, v16:
 * the operands the float rows round to), then proj as attention_linear runs it: the same bits as
 * the ops, with qkv's output written and read in 2 bytes per element instead of 4
 * (SAM2_CUDA_QKV16=0 for the ops). Where cuBLASLt has no 16-bit-output algorithm for the shape,
 * qkv's output is made in float chunks and rounded (qkv16_from_float_chunks): the pass keeps
 * the 16-bit layout that norm_attention_linear_spares promised. */
static int
cuda_norm_attention_linear (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *qkv,
                            const float *x, int n_img, int H, int W, int ws, int q_stride,
                            float *qkv_buf, float *q_buf, const Sam2AttentionArgs *a,
                            const Sam2Linear *proj, float *y, gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  const Sam2CudaRowWindows win = { n_img, H, W, ws > 0 ? ws : 1 };
  const long long M = sam2_cuda_row_windows_rows (&win);
  const int N3 = qkv->out_features, width = a->heads * a->head_dim;
  const gboolean pooled = q_stride > 1;
  /* q in qkv's rows, or pooled into q_buf's; k and v in qkv's rows */
  const ptrdiff_t q_at = offset_in (pooled ? q_buf : qkv_buf, a->q);
  const ptrdiff_t k_at = offset_in (qkv_buf, a->k), v_at = offset_in (qkv_buf, a->v);
  /* qkv's 16-bit output (M, N3) in the first half of qkv_buf's bytes, the pooled q (rows, width)
   * in q_buf's: no memory of its own; the attention reads them in those buffers' layout,
   * counted in halves */
  uint16_t *qkv16 = (uint16_t *) qkv_buf, *q16 = pooled ? (uint16_t *) q_buf : qkv16;
  Sam2CudaAttentionArgs in16 = cuda_attention_args (a);
  in16.q = in16.k = in16.v = NULL;
  in16.q16 = q16 + q_at;
  in16.k16 = qkv16 + k_at;
  in16.v16 = qkv16 + v_at;
  const QkvPassPlan plan = qkv_pass_plan (cu, n, qkv, M, q_stride, a, q_at, k_at, v_at,
                                          sam2_cuda_attention_16_reads_16 (&in16), proj);
  if (!plan.takes)
    return SAM2_STATUS_OK;
  const CudaLinear *w, *wp = NULL;
  const CudaNorm *d = NULL;
  int status = linear_weights (cu, qkv, &w);
  if (status == SAM2_STATUS_OK && n != NULL)
    status = norm_weights (cu, n, &d);
  if (status == SAM2_STATUS_OK && plan.out16)
    status = linear_weights (cu, proj, &wp);
  if (status != SAM2_STATUS_OK)
    return status;
  const size_t rows = (size_t) a->batch * a->len_q;
  /* the scratch: (M, K) qkv's operand, later (rows, width) the attention's output for proj */
  uint16_t *x16;
  if ((status = f16_scratch (cu, MAX ((size_t) M * w->k, rows * width), &x16)) != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  if ((status = windows_operand_16 (cu, n, d, x, &win, w->k, x16)) != SAM2_STATUS_OK)
    return status;
  gboolean refused;
  PROFILED (SAM2_OP_LINEAR, linear_16_to16 (cu, w, x16, (int) M, qkv16, qkv->name, &refused));
  if (status == SAM2_STATUS_OK && refused) {
    cu->path_stats.qkv16_float++;
    PROFILED (SAM2_OP_LINEAR, qkv16_from_float_chunks (cu, w, x16, (int) M, qkv16, qkv->name));
  } else if (status == SAM2_STATUS_OK) {
    cu->path_stats.qkv16++;
  }
  if (status == SAM2_STATUS_OK && pooled) {
    const int side_h = ws > 0 ? ws : H, side_w = ws > 0 ? ws : W;
    PROFILED (SAM2_OP_MAX_POOL,
              launched (cu, sam2_cuda_max_pool_16 (qkv16, a->batch, side_h, side_w, width, N3,
                                                   q_stride, cu->half, q16, cu->stream),
                        "max_pool"));
  }
  if (status != SAM2_STATUS_OK)
    return status;
  return attention_then_linear (cu, in16, plan.out16 ? x16 : NULL, a->out, proj, wp, y, NULL);
}

/* Whether fc1 (LN (x)) can run as one quantization pass and a GEMM: fc1 a W4A8 layer that
 * sam2_cuda_layer_norm_quantize_rows takes (kernels v2, a low-rank branch of at most
 * SAM2_CUDA_QUANT_MAX_FUSED_RANK, a row that fits its shared memory), SAM2_CUDA_NORM_QUANT not 0.
 * The device forms of both come back in *w and *d. */
static int
norm_quant_applies (Sam2BackendCuda *cu, const Sam2LayerNorm *n, const Sam2Linear *l,
                    const CudaLinear **w, const CudaNorm **d, gboolean *applies)
{
  *applies = FALSE;
  if (!cu->fused_norm_quant)
    return SAM2_STATUS_OK;
  int st = linear_weights (cu, l, w);
  if (st != SAM2_STATUS_OK || (*w)->kind != WEIGHTS_W4A8 || (*w)->layer.geo.k != n->dim
      || !sam2_cuda_layer_norm_quantize_rows_supported (&(*w)->layer))
    return st;
  st = norm_weights (cu, n, d);
  *applies = st == SAM2_STATUS_OK;
  return st;
}

/* y = act (l (LN (x))) (windows NULL) or l (windows (LN (x))) with the LayerNorm (and the window
 * partition) fused into the W4A8 layer's activation quantization (sam2_cuda_w4a8_norm_linear):
 * the bits of cuda_layer_norm (cuda_window_partition) then cuda_linear, without the normalised
 * rows in memory. */
static int
cuda_norm_w4a8_linear (Sam2BackendCuda *cu, const CudaNorm *d, float eps, const CudaLinear *w,
                       const char *name, const Sam2CudaRowWindows *windows, const float *x,
                       int M, float *y, Sam2Act act)
{
  int st = grow_scratch (cu, &cu->w4a8_ws, &cu->w4a8_ws_bytes,
                         sam2_cuda_w4a8_linear_workspace_bytes (&w->layer, M),
                         "the W4A8 workspace");
  if (st != SAM2_STATUS_OK)
    return st;
  const Sam2CudaRowNorm norm = { d->weight, d->bias, eps };
  return launched (cu, sam2_cuda_w4a8_norm_linear (&w->layer, &norm, windows, x, M, y, (int) act,
                                                   NULL, cu->stream, cu->w4a8_ws), name);
}

/* The MLP y = fc2 (act (fc1 (LN (x)))) + residual of two W4A8 layers with the LayerNorm in fc1's
 * quantization (norm_quant_applies said so for fc1) and fc2's quantization in fc1's GEMM
 * (sam2_cuda_w4a8_gemm_quantize_next): hidden is written as before, and fc2's kernel rows come
 * out of the same launch instead of a pass that reads hidden again. The same bits as the ops.
 * *done FALSE, with nothing launched, where it does not apply (SAM2_CUDA_QUANT_NEXT not 1, fc2 not
 * W4A8 or not a layer the fused kernel takes, hidden not 16-byte aligned). */
static int
cuda_norm_w4a8_mlp_next (Sam2BackendCuda *cu, const CudaNorm *d, float eps, const CudaLinear *w1,
                         const Sam2Linear *fc1, Sam2Act act, const Sam2Linear *fc2,
                         const float *x, int M, float *hidden, float *y, const float *residual,
                         gboolean *done)
{
  *done = FALSE;
  const CudaLinear *w2;
  int st = cu->quant_next ? linear_weights (cu, fc2, &w2) : SAM2_STATUS_OK;
  if (!cu->quant_next || st != SAM2_STATUS_OK || w2->kind != WEIGHTS_W4A8
      || !sam2_cuda_w4a8_quantize_next_supported (&w1->layer, &w2->layer)
      || ((uintptr_t) hidden & 15) != 0)
    return st;
  const size_t counters = sam2_cuda_w4a8_quantize_next_counters (M) * sizeof (unsigned int);
  const size_t had = cu->next_counters_bytes;
  st = grow_scratch (cu, &cu->w4a8_ws, &cu->w4a8_ws_bytes,
                     sam2_cuda_w4a8_linear_workspace_bytes (&w1->layer, M), "the W4A8 workspace");
  if (st == SAM2_STATUS_OK)
    st = grow_scratch (cu, &cu->w4a8_next_ws, &cu->w4a8_next_ws_bytes,
                       sam2_cuda_w4a8_linear_workspace_bytes (&w2->layer, M),
                       "the next layer's W4A8 rows");
  if (st == SAM2_STATUS_OK)
    st = grow_scratch (cu, (void **) &cu->next_counters, &cu->next_counters_bytes, counters,
                       "the W4A8 tile counters");
  if (st != SAM2_STATUS_OK)
    return st;
  /* counters start at zero once (each launch leaves them so) */
  if (cu->next_counters_bytes != had)
    CUDA_TRY (cu, cudaMemsetAsync (cu->next_counters, 0, cu->next_counters_bytes, cu->stream),
              "the W4A8 tile counters");
  Sam2CudaActRows rows1, rows2;
  sam2_cuda_w4a8_workspace_rows (&w1->layer, M, cu->w4a8_ws, &rows1);
  sam2_cuda_w4a8_workspace_rows (&w2->layer, M, cu->w4a8_next_ws, &rows2);
  const Sam2CudaRowNorm norm = { d->weight, d->bias, eps };
  *done = TRUE;
  LAUNCH (cu, sam2_cuda_layer_norm_quantize_rows (&w1->layer, &norm, NULL, x, M, &rows1,
                                                  cu->stream), fc1->name);
  LAUNCH (cu, sam2_cuda_w4a8_gemm_quantize_next (&w1->layer, &rows1, M, hidden, (int) act,
                                                 &w2->layer, &rows2, cu->next_counters,
                                                 cu->stream), fc1->name);
  LAUNCH (cu, sam2_cuda_w4a8_gemm (&w2->layer, &rows2, M, y, SAM2_ACT_NONE, residual,
                                   cu->stream), fc2->name);
  return SAM2_STATUS_OK;
}

/* backend.h's norm_windows_linear: one pass for a W4A8 qkv layer (norm_quant_applies); with
 * 16-bit weights in a 16-bit precision, the LayerNorm writes the partitioned operand (one
 * pass where the three ops take LayerNorm, partition and conversion: the same roundings, so the
 * same bits; SAM2_CUDA_NORM_F16=0 for the ops). */
static int
cuda_norm_windows_linear (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *l,
                          const float *x, int n_img, int H, int W, int ws, float *y,
                          gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  /* ws 1 maps every row to itself: the rows as they are, for ws 0 */
  const Sam2CudaRowWindows win = { n_img, H, W, ws > 0 ? ws : 1 };
  const long long M = sam2_cuda_row_windows_rows (&win);
  if (M <= 0 || M > G_MAXINT)
    return SAM2_STATUS_OK;   /* no rows (or more than an int): the model's ops */
  const CudaLinear *w;
  const CudaNorm *d;
  gboolean quant;
  int status = norm_quant_applies (cu, n, l, &w, &d, &quant);
  if (status != SAM2_STATUS_OK)
    return status;
  if (quant) {
    *done = TRUE;
    PROFILED (SAM2_OP_LINEAR, cuda_norm_w4a8_linear (cu, d, n->eps, w, l->name,
                                                     ws > 0 ? &win : NULL, x, (int) M, y,
                                                     SAM2_ACT_NONE));
    return status;
  }
  /* few rows take the one-launch token-row linear (cuda_linear_run): left to it */
  if (!cu->norm_f16 || cu->precision == SAM2_PRECISION_FP32
      || M <= SAM2_CUDA_LINEAR_SMALL_M_MAX)
    return SAM2_STATUS_OK;
  status = linear_weights (cu, l, &w);
  if (status != SAM2_STATUS_OK || w->kind != WEIGHTS_16 || w->k != n->dim)
    return status;
  uint16_t *a16;   /* (M, K) */
  status = norm_weights (cu, n, &d);
  if (status == SAM2_STATUS_OK)
    status = f16_scratch (cu, (size_t) M * w->k, &a16);
  if (status != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  status = windows_operand_16 (cu, n, d, x, &win, w->k, a16);
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR,
              f16_linear_from16 (cu, w, a16, (int) M, y, SAM2_ACT_NONE, NULL, l->name));
  return status;
}

/* backend.h's norm_mlp. In a 16-bit precision with 16-bit weights (and more rows than the
 * token-row kernel takes) the three-op form's float intermediates that exist only to be converted
 * stay out of memory: LayerNorm writes the 16-bit operand of fc1 directly, fc1's float output
 * gets its activation and its 16-bit rounding in one pass, and fc2 adds bias and residual in
 * cuBLASLt's epilogue. The roundings are the three ops' in the same places, so the outputs are
 * the same bits (test-cuda-model checks it), for ~40 bytes less traffic per element of the
 * block's input and two launches fewer. With a W4A8 fc1, the LayerNorm runs inside fc1's activation
 * quantization (cuda_norm_w4a8_linear: the same bits, norm_buf not written). Otherwise (FP32,
 * SAM2_CUDA_FUSED_MLP=0, SAM2_CUDA_NORM_QUANT=0) the three ops; norm_buf is written only there. */
static int
cuda_norm_mlp (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *fc1, Sam2Act act,
               const Sam2Linear *fc2, const float *x, int M, float *norm_buf, float *hidden,
               float *y, const float *residual)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  const CudaLinear *w1 = NULL, *w2 = NULL;
  const CudaNorm *d = NULL;
  int status = SAM2_STATUS_OK;
  gboolean fused = cu->fused_mlp && cu->precision != SAM2_PRECISION_FP32
                   && M > SAM2_CUDA_LINEAR_SMALL_M_MAX;
  if (fused) {
    status = linear_weights (cu, fc1, &w1);
    if (status == SAM2_STATUS_OK)
      status = linear_weights (cu, fc2, &w2);
    if (status == SAM2_STATUS_OK)
      status = norm_weights (cu, n, &d);
    if (status != SAM2_STATUS_OK)
      return status;
    fused = w1->kind == WEIGHTS_16 && w2->kind == WEIGHTS_16 && w1->k == n->dim
            && w2->k == w1->n;
  }
  if (!fused) {
    gboolean norm_quant, next = FALSE;
    status = norm_quant_applies (cu, n, fc1, &w1, &d, &norm_quant);
    if (status == SAM2_STATUS_OK && norm_quant)
      PROFILED (SAM2_OP_LINEAR, cuda_norm_w4a8_mlp_next (cu, d, n->eps, w1, fc1, act, fc2, x, M,
                                                         hidden, y, residual, &next));
    if (status != SAM2_STATUS_OK || next)
      return status;
    if (norm_quant) {
      PROFILED (SAM2_OP_LINEAR,
                cuda_norm_w4a8_linear (cu, d, n->eps, w1, fc1->name, NULL, x, M, hidden, act));
    } else if (status == SAM2_STATUS_OK) {
      status = cuda_layer_norm (b, n, x, M, norm_buf);
      if (status == SAM2_STATUS_OK)
        status = cuda_linear (b, fc1, norm_buf, M, hidden, act, NULL);
    }
    if (status == SAM2_STATUS_OK)
      status = cuda_linear (b, fc2, hidden, M, y, SAM2_ACT_NONE, residual);
    return status;
  }
  uint16_t *a16;   /* fc1's operand (M, K1), then fc2's (M, N1) */
  status = f16_scratch (cu, (size_t) M * MAX (w1->k, w1->n), &a16);
  if (status != SAM2_STATUS_OK)
    return status;
  PROFILED (SAM2_OP_LAYER_NORM,
            launched (cu, sam2_cuda_layer_norm_16 (x, M, n->dim, d->weight, d->bias, n->eps,
                                                   cu->half, a16, cu->stream), "layer_norm"));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR,
              f16_linear_from16 (cu, w1, a16, M, hidden, SAM2_ACT_NONE, NULL, fc1->name));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_ACTIVATION,
              launched (cu, sam2_cuda_activation_to_16 ((int) act, hidden, (size_t) M * w1->n,
                                                        cu->half, a16, cu->stream), fc1->name));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR,
              f16_linear_from16 (cu, w2, a16, M, y, SAM2_ACT_NONE, residual, fc2->name));
  return status;
}

static int
cuda_window_partition (Sam2Backend *b, const float *x, int H, int W, int C, int ws, float *win)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_WINDOW,
            launched (cu, sam2_cuda_window_partition (x, H, W, C, ws, win, cu->stream),
                      "window_partition"));
  return status;
}

static int
cuda_window_unpartition (Sam2Backend *b, const float *win, int n_win_h, int n_win_w, int ws,
                         int C, int H, int W, const float *residual, float *x)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_WINDOW,
            launched (cu, sam2_cuda_window_unpartition (win, n_win_h, n_win_w, ws, C, H, W,
                                                        residual, x, cu->stream),
                      "window_unpartition"));
  return status;
}

static int
cuda_max_pool (Sam2Backend *b, const float *x, int n_img, int H, int W, int C, int ld, int s,
               float *y)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_MAX_POOL,
            launched (cu, sam2_cuda_max_pool (x, n_img, H, W, C, ld, s, y, cu->stream),
                      "max_pool"));
  return status;
}

static int
cuda_im2col_planar (Sam2Backend *b, const float *x, int C, int H, int W, int kh, int kw,
                    int stride, int pad, float *cols)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_IM2COL,
            launched (cu, sam2_cuda_im2col_planar (x, C, H, W, kh, kw, stride, pad, cols,
                                                   cu->stream), "im2col_planar"));
  return status;
}

static int
cuda_im2col (Sam2Backend *b, const float *x, int H, int W, int C, int kh, int kw, int stride,
             int pad, float *cols)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_IM2COL,
            launched (cu, sam2_cuda_im2col (x, H, W, C, kh, kw, stride, pad, cols, cu->stream),
                      "im2col"));
  return status;
}

static int
cuda_add_upsample2x (Sam2Backend *b, float *y, const float *x, int H, int W, int C)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_RESAMPLE,
            launched (cu, sam2_cuda_add_upsample2x (y, x, H, W, C, cu->stream),
                      "add_upsample2x"));
  return status;
}

/* depth_to_space2x (with its LayerNorm and activation) into y (2H, 2W, C), or, with y16, into
 * y16 rounded to the backend's 16-bit format (y then the LayerNorm's scratch). */
static int
cuda_depth_to_space2x_run (Sam2BackendCuda *cu, const float *x, int x_ld, int H, int W, int C,
                           const float *addend, const Sam2LayerNorm *norm, Sam2Act act, float *y,
                           uint16_t *y16)
{
  const CudaNorm *d = NULL;
  if (norm != NULL) {
    g_return_val_if_fail (norm->dim == C, SAM2_STATUS_UNSUPPORTED);
    int st = norm_weights (cu, norm, &d);
    if (st != SAM2_STATUS_OK)
      return st;
  }
  const float *weight = d != NULL ? d->weight : NULL, *bias = d != NULL ? d->bias : NULL;
  const float eps = norm != NULL ? norm->eps : 0.0f;
  return launched (cu,
                   y16 != NULL
                     ? sam2_cuda_depth_to_space2x_norm_act_16 (x, x_ld, H, W, C, addend, weight,
                                                               bias, eps, (int) act, y, cu->half,
                                                               y16, cu->stream)
                     : sam2_cuda_depth_to_space2x_norm_act (x, x_ld, H, W, C, addend, weight,
                                                            bias, eps, (int) act, y, cu->stream),
                   "depth_to_space2x");
}

/* With the LayerNorm and activation folded in, timed as resampling. */
static int
cuda_depth_to_space2x (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                       const float *addend, const Sam2LayerNorm *norm, Sam2Act act, float *y)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  int status;
  PROFILED (SAM2_OP_RESAMPLE,
            cuda_depth_to_space2x_run (cu, x, x_ld, H, W, C, addend, norm, act, y, NULL));
  return status;
}

/* backend.h's depth_to_space2x_matmul: the scatter's floats multiplied into the products as
 * they are made (sam2_cuda_depth_to_space2x_matmul), where depth_to_space2x wrote t and
 * matmul_nt's FP32 cuBLAS GEMM (every precision's) read it back: one launch and t's write and
 * read fewer (SAM2_CUDA_UPSCALE_MASKS=0 for the ops). Timed as resampling. */
static int
cuda_depth_to_space2x_matmul (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                              const float *addend, Sam2Act act, const float *A, int M,
                              float *out, gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  if (M < 1 || M > SAM2_CUDA_D2S_MATMUL_MAX_M || C < 1 || C > SAM2_CUDA_D2S_MATMUL_MAX_C)
    return SAM2_STATUS_OK;
  *done = TRUE;
  int status;
  PROFILED (SAM2_OP_RESAMPLE,
            launched (cu, sam2_cuda_depth_to_space2x_matmul (x, x_ld, H, W, C, addend, (int) act,
                                                             A, M, out, cu->stream),
                      "depth_to_space2x_matmul"));
  return status;
}

/* backend.h's depth_to_space2x_linear for a 16-bit layer in a 16-bit precision: the scatter
 * (with its LayerNorm and activation) writes the layer's 16-bit operand, the rounding
 * cuda_linear_run's conversion would apply, which the GEMM reads; t holds the sums the LayerNorm
 * reads back. One launch and the floats' write and read fewer, the same bits
 * (SAM2_CUDA_UPSCALE16=0 for the ops). FP32 and W4A8 layers are left to the ops. */
static int
cuda_depth_to_space2x_linear (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                              const float *addend, const Sam2LayerNorm *norm, Sam2Act act,
                              float *t, const Sam2Linear *l, float *y, gboolean *done)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  *done = FALSE;
  const size_t M = (size_t) 4 * H * W;
  if (l->in_features != C || (norm != NULL && norm->dim != C))
    return SAM2_STATUS_OK;
  const CudaLinear *w;
  gboolean takes;
  int status = layer_takes_16 (cu, l, M, &w, &takes);
  if (status != SAM2_STATUS_OK || !takes)
    return status;
  uint16_t *t16;   /* (4 H W, C) */
  if ((status = f16_scratch (cu, M * C, &t16)) != SAM2_STATUS_OK)
    return status;
  *done = TRUE;
  PROFILED (SAM2_OP_RESAMPLE,
            cuda_depth_to_space2x_run (cu, x, x_ld, H, W, C, addend, norm, act, t, t16));
  if (status == SAM2_STATUS_OK)
    PROFILED (SAM2_OP_LINEAR, f16_linear_from16 (cu, w, t16, (int) M, y, SAM2_ACT_NONE, NULL,
                                                 l->name));
  return status;
}

static int
cuda_matmul_nt (Sam2Backend *b, const float *A, const float *B, int M, int N, int K, float *C)
{
  int status;
  PROFILED (SAM2_OP_MATMUL, cuda_matmul_nt_run (b, A, B, M, N, K, C));
  return status;
}

/* ---- CUDA graphs ----------------------------------------------------------------------------- */

static GraphSlot *
graph_slot_find (Sam2BackendCuda *cu, guint64 key)
{
  for (int i = 0; i < GRAPH_SLOTS; i++)
    if (cu->slots[i].used && cu->slots[i].key == key)
      return &cu->slots[i];
  return NULL;
}

/* Destroys a slot's executable graph. Only outside a capture; the stream is drained first so a
 * launch still in flight never loses its graph (eviction and recapture are rare). */
static void
graph_exec_drop (Sam2BackendCuda *cu, GraphSlot *g)
{
  if (g->exec == NULL)
    return;
  if (cudaStreamSynchronize (cu->stream) != cudaSuccess)
    (void) cudaGetLastError ();   /* a kernel failure: the next download reports it */
  if (cudaGraphExecDestroy (g->exec) != cudaSuccess)
    (void) cudaGetLastError ();
  g->exec = NULL;
}

/* A slot for a key that has just run eagerly: a free one, else the least recently used of those
 * without a graph (there are always some: GRAPH_SLOTS > GRAPH_MAX_EXECS), forgotten. */
static void
graph_slot_claim (Sam2BackendCuda *cu, guint64 key)
{
  GraphSlot *g = NULL;
  for (int i = 0; i < GRAPH_SLOTS; i++) {
    GraphSlot *c = &cu->slots[i];
    if (!c->used) {
      g = c;
      break;
    }
    if (c->exec == NULL && (g == NULL || c->last_use < g->last_use))
      g = c;
  }
  if (g == NULL)
    return;   /* unreachable; the key just runs eagerly again next time */
  *g = (GraphSlot) { .used = TRUE, .key = key, .last_use = cu->graph_clock };
}

/* Room for one more graph: TRUE when fewer than GRAPH_MAX_EXECS are held, or after dropping the
 * least recently used one if it has been idle long enough. */
static gboolean
graph_make_room (Sam2BackendCuda *cu)
{
  GraphSlot *lru = NULL;
  int held = 0;
  for (int i = 0; i < GRAPH_SLOTS; i++) {
    GraphSlot *c = &cu->slots[i];
    if (c->exec == NULL)
      continue;
    held++;
    if (lru == NULL || c->last_use < lru->last_use)
      lru = c;
  }
  if (held < GRAPH_MAX_EXECS)
    return TRUE;
  if (cu->graph_clock - lru->last_use <= GRAPH_IDLE_CALLS)
    return FALSE;
  graph_exec_drop (cu, lru);
  cu->graph_stats.evicted++;
  return TRUE;
}

/* Capturing `key` failed for a reason a retry would meet again: it runs eagerly from now on.
 * Results do not change (the eager path runs the same kernels in the same order), so this is the
 * one place where falling back is right; it is said once per backend, naming the CUDA error. */
static void
graph_refuse (Sam2BackendCuda *cu, GraphSlot *g, const char *what, const char *why)
{
  g->refused = TRUE;
  cu->graph_stats.refused++;
  if (!cu->graph_warned) {
    cu->graph_warned = TRUE;
    g_warning ("CUDA graphs: %s for key 0x%" G_GINT64_MODIFIER "x failed (%s); that work runs "
               "without a graph from now on (same results, more launch overhead; "
               "SAM2_CUDA_GRAPHS=0 turns graphs off)", what, g->key, why);
  }
}

static int
graph_launch (Sam2BackendCuda *cu, GraphSlot *g)
{
  CUDA_TRY (cu, cudaGraphLaunch (g->exec, cu->stream), "launching a CUDA graph");
  cu->graph_stats.replayed++;
  return SAM2_STATUS_OK;
}

/* Captures body on the stream, instantiates and launches it; when any step fails the body runs
 * eagerly instead (a failed capture enqueued nothing: its work was recorded, not run). */
static int
graph_capture (Sam2BackendCuda *cu, GraphSlot *g, int (*body) (gpointer), gpointer data)
{
  cudaError_t err = cudaStreamBeginCapture (cu->stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    (void) cudaGetLastError ();
    graph_refuse (cu, g, "cudaStreamBeginCapture", cudaGetErrorName (err));
    return body (data);
  }
  cu->capturing = TRUE;
  cu->capture_needs_eager = FALSE;
  const int st = body (data);
  cu->capturing = FALSE;
  cudaGraph_t graph = NULL;
  /* always ended, whatever the body did: the stream must leave capture mode */
  err = cudaStreamEndCapture (cu->stream, &graph);
  if (st != SAM2_STATUS_OK || err != cudaSuccess || graph == NULL) {
    char why[sizeof cu->detail + 64];
    if (st != SAM2_STATUS_OK)
      g_snprintf (why, sizeof why, "%s", cu->detail[0] != '\0' ? cu->detail : "an op failed");
    else
      g_snprintf (why, sizeof why, "cudaStreamEndCapture: %s: %s", cudaGetErrorName (err),
                  cudaGetErrorString (err));
    if (graph != NULL)
      cudaGraphDestroy (graph);
    (void) cudaGetLastError ();
    if (cu->capture_needs_eager)
      cu->capture_needs_eager = FALSE;   /* not a failure: the eager run below does the first use */
    else
      graph_refuse (cu, g, "capturing", why);
    cu->detail[0] = '\0';
    return body (data);
  }
  size_t nodes = 0;
  if (cudaGraphGetNodes (graph, NULL, &nodes) == cudaSuccess) {
    cu->graph_stats.last_nodes = (guint) nodes;
    cu->graph_stats.captured_nodes += nodes;
  }
  cudaGraphExec_t exec = NULL;
  err = cudaGraphInstantiate (&exec, graph, 0);
  cudaGraphDestroy (graph);
  if (err != cudaSuccess || exec == NULL) {
    (void) cudaGetLastError ();
    graph_refuse (cu, g, "cudaGraphInstantiate",
                  err != cudaSuccess ? cudaGetErrorName (err) : "no executable graph");
    return body (data);
  }
  g->exec = exec;
  g->scratch_gen = cu->scratch_gen;
  cu->graph_stats.captured++;
  return graph_launch (cu, g);
}

static int
cuda_run_graph (Sam2Backend *b, guint64 key, int (*body) (gpointer), gpointer data)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  /* the calling thread may be a new one (a session used from another thread): its current
   * device is not the session's on a machine with several GPUs (inside a capture it was set
   * by the run around it) */
  if (!cu->capturing)
    CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  /* profiling records events per op, which a graph would hide; a nested call is part of the
   * capture around it */
  if (!cu->graphs || cu->profiling || cu->capturing) {
    cu->graph_stats.eager++;
    return body (data);
  }
  cu->graph_clock++;
  GraphSlot *g = graph_slot_find (cu, key);
  if (g == NULL) {
    /* the first run of a key: eager, as it may copy weights and grow scratch */
    cu->graph_stats.eager++;
    const int st = body (data);
    if (st == SAM2_STATUS_OK)
      graph_slot_claim (cu, key);
    return st;
  }
  g->last_use = cu->graph_clock;
  if (g->refused) {
    cu->graph_stats.eager++;
    return body (data);
  }
  if (g->exec != NULL && g->scratch_gen != cu->scratch_gen)
    graph_exec_drop (cu, g);   /* it points at scratch that has been reallocated since */
  if (g->exec != NULL)
    return graph_launch (cu, g);
  if (!graph_make_room (cu)) {
    cu->graph_stats.eager++;   /* every held graph is in use: this key waits for one to idle */
    return body (data);
  }
  return graph_capture (cu, g, body, data);
}

static void
graphs_free (Sam2BackendCuda *cu)
{
  for (int i = 0; i < GRAPH_SLOTS; i++)
    if (cu->slots[i].exec != NULL && cudaGraphExecDestroy (cu->slots[i].exec) != cudaSuccess)
      (void) cudaGetLastError ();
  memset (cu->slots, 0, sizeof cu->slots);
}

/* A switch from the environment, `unset` when the variable is not set: 0 / off / no / false turn
 * it off, anything else on. */
static gboolean
env_switch (const char *name, gboolean unset)
{
  const char *v = g_getenv (name);
  if (v == NULL)
    return unset;
  return !(g_strcmp0 (v, "0") == 0 || g_ascii_strcasecmp (v, "off") == 0
           || g_ascii_strcasecmp (v, "no") == 0 || g_ascii_strcasecmp (v, "false") == 0);
}

/* An on-by-default switch. */
static gboolean
env_switch_on (const char *name)
{
  return env_switch (name, TRUE);
}

/* ---- frame preprocessing ------------------------------------------------------------------- */

/* cudaFree of each *bufs[i] that is set, then NULL. */
static void
free_device_buffers (void **const *bufs, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (*bufs[i] != NULL)
      cudaFree (*bufs[i]);
    *bufs[i] = NULL;
  }
}

static void
preprocess_tables_free (Sam2BackendCuda *cu)
{
  void **const tables[] = { (void **) &cu->pre_h_start, (void **) &cu->pre_v_start,
                            (void **) &cu->pre_v_count, (void **) &cu->pre_h_weights,
                            (void **) &cu->pre_v_weights, (void **) &cu->pre_lut };
  free_device_buffers (tables, G_N_ELEMENTS (tables));
  memset (cu->pre_size, 0, sizeof cu->pre_size);
}

/* The resampler's tables on the device; they depend on the sizes alone, so they are copied
 * again only when those change (a new frame size). */
static int
preprocess_tables (Sam2BackendCuda *cu, const Sam2Resampler *r, const Sam2ResampleAxis *h,
                   const Sam2ResampleAxis *v)
{
  const int size[4] = { h->in_size, v->in_size, h->out_size, v->out_size };
  if (memcmp (size, cu->pre_size, sizeof size) == 0)
    return SAM2_STATUS_OK;
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), "preprocessing (the kernels before it)");
  preprocess_tables_free (cu);
  int st = device_copy (cu, h->start, sizeof (int32_t) * h->out_size, (void **) &cu->pre_h_start);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, h->weights, sizeof (int16_t) * h->out_size * h->n_taps,
                      (void **) &cu->pre_h_weights);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, v->start, sizeof (int32_t) * v->out_size, (void **) &cu->pre_v_start);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, v->count, sizeof (int32_t) * v->out_size, (void **) &cu->pre_v_count);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, v->weights, sizeof (int16_t) * v->out_size * v->n_taps,
                      (void **) &cu->pre_v_weights);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, sam2_resampler_get_normalize_lut (r), sizeof (float) * 3 * 256,
                      (void **) &cu->pre_lut);
  if (st != SAM2_STATUS_OK) {
    preprocess_tables_free (cu);
    return st;
  }
  memcpy (cu->pre_size, size, sizeof size);
  return SAM2_STATUS_OK;
}

/* backend.h's preprocess: the frame's bytes cross the bus instead of the model input's floats
 * (1080p RGB: 6 MB against 12.6 MB at 1024x1024), and the resize runs on the device instead of
 * the host's cores (4 ms per 1080p frame on two of them, sam2-bench-masks). */
static int
cuda_preprocess (Sam2Backend *b, const Sam2Resampler *r, const guint8 *pixels, int stride,
                 Sam2PixelFormat format, float *pixel_values)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (refuse_in_capture (cu, "preprocess"))
    return SAM2_STATUS_UNSUPPORTED;
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  Sam2ResampleAxis h, v;
  sam2_resampler_get_axes (r, &h, &v);
  int st = preprocess_tables (cu, r, &h, &v);
  const int bpp = sam2_pixel_format_bpp (format);
  const size_t row_bytes = (size_t) h.in_size * bpp;
  if (st == SAM2_STATUS_OK)
    st = grow_scratch (cu, &cu->pre_frame, &cu->pre_frame_bytes, row_bytes * v.in_size,
                       "the frame (preprocessing)");
  if (st == SAM2_STATUS_OK)
    st = grow_scratch (cu, &cu->pre_tmp, &cu->pre_tmp_bytes,
                       (size_t) v.in_size * h.out_size * 3, "the resized rows (preprocessing)");
  if (st != SAM2_STATUS_OK)
    return st;
  /* The caller may reuse its frame as soon as this returns. From pageable memory the copy has
   * read it by then, but not from page-locked memory (a frame in CUDA host memory), where the
   * copy runs on: wait for it. The stream is idle before a frame's first copy, so this waits
   * for the copy alone. */
  CUDA_TRY (cu, cudaMemcpy2DAsync (cu->pre_frame, row_bytes, pixels, (size_t) stride, row_bytes,
                                   (size_t) v.in_size, cudaMemcpyHostToDevice, cu->stream),
            "uploading the frame (cudaMemcpy2DAsync)");
  CUDA_TRY (cu, cudaStreamSynchronize (cu->stream), "uploading the frame (cudaStreamSynchronize)");
  const Sam2CudaPreprocessArgs args = {
    .in_w = h.in_size, .in_h = v.in_size, .out_w = h.out_size, .out_h = v.out_size,
    .stride = row_bytes, .bpp = bpp, .red = sam2_pixel_format_is_bgr (format) ? 2 : 0,
    .h_taps = h.count[0], .h_stride = h.n_taps, .h_precision = h.precision,
    .h_start = cu->pre_h_start, .h_weights = cu->pre_h_weights,
    .v_taps = v.n_taps, .v_precision = v.precision, .v_start = cu->pre_v_start,
    .v_count = cu->pre_v_count, .v_weights = cu->pre_v_weights, .lut = cu->pre_lut,
  };
  LAUNCH (cu, sam2_cuda_preprocess (&args, cu->pre_frame, cu->pre_tmp, pixel_values, cu->stream),
          "preprocess");
  return SAM2_STATUS_OK;
}

/* ---- GPTQ on the device (calibration) ------------------------------------------------------- */

#ifdef SAM2_HAVE_CUSOLVER
/* backend.h's gptq_solve: the layer's arrays on the device for the time of the call (calibration
 * quantizes one layer at a time; a few cudaMallocs per layer are nothing beside its solve), W
 * transposed on the host into the kernels' column-major form, the codes packed on the way
 * back. */
static int
cuda_gptq_solve (Sam2Backend *b, Sam2W4 *w, const double *W, const double *H, const int *perm,
                 int block, double d0, int tries)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  const int n = w->n, k = w->k, NG = w->n_groups, B = MAX (block, 1);
  if (cu->solver == NULL && !sam2_cuda_solver_available ())
    return 2;   /* no cuSOLVER library here: the caller solves on the CPU */
  if (cu->solver == NULL && (cu->solver = sam2_cuda_solver_new (cu->stream)) == NULL) {
    g_snprintf (cu->detail, sizeof cu->detail, "GPTQ: cuSOLVER could not be started");
    return SAM2_STATUS_DEVICE;
  }
  double *Wt = g_try_new (double, (size_t) n * k);    /* (n, k) column-major */
  guint8 *codes = g_try_new (guint8, (size_t) n * k); /* (k, n) */
  if (Wt == NULL || codes == NULL) {
    g_free (Wt);
    g_free (codes);
    return SAM2_STATUS_OUT_OF_MEMORY;
  }
  for (int r = 0; r < n; r++)
    for (int i = 0; i < k; i++)
      Wt[(size_t) i * n + r] = W[(size_t) r * k + i];
  Sam2CudaGptq g = { .n = n, .k = k, .block = B, .group_size = w->group_size, .n_groups = NG };
  double *dH = NULL;
  /* the inputs copied over (device_copy waits: the host ones may go), the rest allocated */
  int st = device_copy (cu, Wt, sizeof (double) * n * k, (void **) &g.W);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, H, sizeof (double) * k * k, (void **) &dH);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, perm, sizeof (int) * k, (void **) &g.perm);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, w->scales, sizeof (float) * n * NG, (void **) &g.scales);
  if (st == SAM2_STATUS_OK)
    st = device_copy (cu, w->zeros, (size_t) n * NG, (void **) &g.zeros);
  if (st == SAM2_STATUS_OK)
    st = device_alloc (cu, sizeof (double) * k * k, (void **) &g.U, "cudaMalloc (GPTQ)");
  if (st == SAM2_STATUS_OK)
    st = device_alloc (cu, sizeof (double) * n * B, (void **) &g.err, "cudaMalloc (GPTQ)");
  if (st == SAM2_STATUS_OK)
    st = device_alloc (cu, (size_t) n * k, (void **) &g.codes, "cudaMalloc (GPTQ)");
  if (st == SAM2_STATUS_OK) {
    const int kst = sam2_cuda_gptq_solve (cu->solver, cu->cublas, &g, dH, d0, tries, cu->stream);
    if (kst == 1)
      st = 1;   /* singular at every damping: the caller says so */
    else if (kst != SAM2_CUDA_OK)
      st = launched (cu, kst, "GPTQ on the device");
  }
  if (st == SAM2_STATUS_OK) {
    /* where a fault of the kernels, cuSOLVER or cuBLAS surfaces: report it, then free below */
    cudaError_t err = cudaMemcpyAsync (codes, g.codes, (size_t) n * k, cudaMemcpyDeviceToHost,
                                       cu->stream);
    if (err == cudaSuccess)
      err = cudaStreamSynchronize (cu->stream);
    if (err != cudaSuccess) {
      st = cuda_fail (cu, err, "GPTQ on the device");
    } else {
      for (int c = 0; c < k; c++)
        for (int r = 0; r < n; r++)
          sam2_w4_set (w->codes, k, r, c, codes[(size_t) c * n + r]);
    }
  }
  cudaStreamSynchronize (cu->stream);   /* nothing may still use the buffers */
  void **const bufs[] = { (void **) &g.W, (void **) &dH, (void **) &g.perm, (void **) &g.scales,
                          (void **) &g.zeros, (void **) &g.U, (void **) &g.err,
                          (void **) &g.codes };
  free_device_buffers (bufs, G_N_ELEMENTS (bufs));
  g_free (Wt);
  g_free (codes);
  return st;
}
#endif

/* ---- lifetime -------------------------------------------------------------------------------- */

static void
cuda_destroy (Sam2Backend *b)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  if (cu->stream != NULL) {
    cudaSetDevice (cu->device);
    cudaStreamSynchronize (cu->stream);
  }
  graphs_free (cu);
  g_clear_pointer (&cu->linears, g_hash_table_unref);
  g_clear_pointer (&cu->norms, g_hash_table_unref);
  if (cu->events != NULL) {
    for (guint i = 0; i < cu->events->len; i++) {
      OpEvents *e = &g_array_index (cu->events, OpEvents, i);
      cudaEventDestroy (e->start);
      cudaEventDestroy (e->stop);
    }
    g_array_unref (cu->events);
  }
  /* the scratch buffers grown by the ops */
  void **const scratch[] = { (void **) &cu->x16, &cu->w4a8_ws, &cu->w4a8_next_ws,
                             (void **) &cu->qkv_float, (void **) &cu->next_counters,
                             (void **) &cu->row_counter, &cu->stats_index, &cu->stats_rows,
                             &cu->stats_gram, &cu->pre_frame, &cu->pre_tmp };
  free_device_buffers (scratch, G_N_ELEMENTS (scratch));
  preprocess_tables_free (cu);
#ifdef SAM2_HAVE_CUSOLVER
  g_clear_pointer (&cu->solver, sam2_cuda_solver_free);
#endif
  if (cu->cublaslt != NULL)
    cublasLtDestroy (cu->cublaslt);
  if (cu->cublas != NULL)
    cublasDestroy (cu->cublas);
  /* after the handle: cuBLAS may use its workspace until it is destroyed */
  if (cu->cublas_ws != NULL)
    cudaFree (cu->cublas_ws);
  if (cu->stream != NULL)
    cudaStreamDestroy (cu->stream);
  (void) cudaGetLastError ();
  g_free (cu->device_name);
  g_free (cu);
}

/* ---- calibration statistics (backend.h's stats ops) ------------------------------------------ */

/* One layer's statistics on the device. */
typedef struct {
  int k;
  double *hessian;             /* (k, k) */
  float *min, *max;            /* (k) */
} CudaStats;

static void
cuda_stats_free (Sam2Backend *b, gpointer p)
{
  CudaStats *st = p;
  if (st == NULL)
    return;
  cudaFree (st->hessian);
  cudaFree (st->min);
  cudaFree (st->max);
  (void) cudaGetLastError ();
  g_free (st);
}

static int
stats_init (Sam2BackendCuda *cu, CudaStats *st)
{
  const size_t k = (size_t) st->k;
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  CUDA_TRY (cu, cudaMalloc ((void **) &st->hessian, k * k * sizeof (double)),
            "cudaMalloc (calibration Hessian)");
  CUDA_TRY (cu, cudaMalloc ((void **) &st->min, k * sizeof (float)), "cudaMalloc (ranges)");
  CUDA_TRY (cu, cudaMalloc ((void **) &st->max, k * sizeof (float)), "cudaMalloc (ranges)");
  CUDA_TRY (cu, cudaMemsetAsync (st->hessian, 0, k * k * sizeof (double), cu->stream),
            "clearing the calibration Hessian");
  LAUNCH (cu, sam2_cuda_fill (st->min, k, INFINITY, cu->stream), "calibration ranges");
  LAUNCH (cu, sam2_cuda_fill (st->max, k, -INFINITY, cu->stream), "calibration ranges");
  return SAM2_STATUS_OK;
}

static gpointer
cuda_stats_new (Sam2Backend *b, int k)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  CudaStats *st = g_new0 (CudaStats, 1);
  st->k = k;
  if (k < 1 || stats_init (cu, st) != SAM2_STATUS_OK) {
    cuda_stats_free (b, st);
    return NULL;
  }
  return st;
}

/* Host row indices to the device index scratch at `offset` ints, in stream order. No wait
 * here: cuda_stats_observe ends by waiting for its stream (the samples' download or a
 * synchronize), so the caller's arrays are free again when it returns, with one wait per call
 * instead of one per copy. */
static int
stats_upload_rows (Sam2BackendCuda *cu, const int *rows, int n, size_t offset)
{
  CUDA_TRY (cu, cudaMemcpyAsync ((int *) cu->stats_index + offset, rows, (size_t) n * sizeof (int),
                                 cudaMemcpyHostToDevice, cu->stream),
            "uploading calibration row indices");
  return SAM2_STATUS_OK;
}

static int
cuda_stats_observe (Sam2Backend *b, gpointer p, const float *x, int M, const int *hessian_rows,
                    int n_hessian, const int *sample_rows, int n_samples, float *samples)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  CudaStats *st = p;
  const int k = st->k;
  if (refuse_in_capture (cu, "calibration statistics"))
    return SAM2_STATUS_UNSUPPORTED;
  if (M <= 0)
    return SAM2_STATUS_OK;
  const int n_h = hessian_rows != NULL ? n_hessian : 0;
  const int n_gather = MAX (n_h, n_samples);
  int status = grow_scratch (cu, &cu->stats_index, &cu->stats_index_bytes,
                             (size_t) MAX (n_h + n_samples, 1) * sizeof (int),
                             "calibration index scratch");
  if (status == SAM2_STATUS_OK)
    status = grow_scratch (cu, &cu->stats_rows, &cu->stats_rows_bytes,
                           (size_t) MAX (n_gather, 1) * k * sizeof (float),
                           "calibration row scratch");
  if (status == SAM2_STATUS_OK)
    status = grow_scratch (cu, &cu->stats_gram, &cu->stats_gram_bytes,
                           (size_t) k * k * sizeof (float), "calibration Gram scratch");
  if (status != SAM2_STATUS_OK)
    return status;

  LAUNCH (cu, sam2_cuda_column_range (x, M, k, st->min, st->max, cu->stream), "calibration ranges");
  const float *rows = x;
  int n = M;
  if (hessian_rows != NULL) {
    if ((status = stats_upload_rows (cu, hessian_rows, n_h, 0)) != SAM2_STATUS_OK)
      return status;
    LAUNCH (cu, sam2_cuda_gather_rows (x, k, cu->stats_index, n_h, cu->stats_rows, cu->stream),
            "gathering calibration rows");
    rows = cu->stats_rows;
    n = n_h;
  }
  LAUNCH (cu, sam2_cuda_gram_accumulate (cu->cublas, rows, n, k, cu->stats_gram, st->hessian,
                                         cu->stream), "calibration Hessian (cublasSgemm)");
  if (n_samples > 0) {
    /* the Hessian's rows are consumed in stream order before these overwrite them */
    if ((status = stats_upload_rows (cu, sample_rows, n_samples, (size_t) n_h)) != SAM2_STATUS_OK)
      return status;
    LAUNCH (cu, sam2_cuda_gather_rows (x, k, (const int *) cu->stats_index + n_h, n_samples,
                                       cu->stats_rows, cu->stream), "gathering calibration rows");
    return cuda_download (b, samples, cu->stats_rows, (size_t) n_samples * k);
  }
  return cuda_synchronize (b);
}

static int
cuda_stats_read (Sam2Backend *b, gpointer p, double *hessian, float *min, float *max)
{
  Sam2BackendCuda *cu = (Sam2BackendCuda *) b;
  CudaStats *st = p;
  const size_t k = (size_t) st->k;
  if (refuse_in_capture (cu, "calibration statistics"))
    return SAM2_STATUS_UNSUPPORTED;
  CUDA_TRY (cu, cudaSetDevice (cu->device), "cudaSetDevice");
  CUDA_TRY (cu, cudaMemcpyAsync (hessian, st->hessian, k * k * sizeof (double),
                                 cudaMemcpyDeviceToHost, cu->stream), "reading the Hessian");
  CUDA_TRY (cu, cudaMemcpyAsync (min, st->min, k * sizeof (float), cudaMemcpyDeviceToHost,
                                 cu->stream), "reading the ranges");
  CUDA_TRY (cu, cudaMemcpyAsync (max, st->max, k * sizeof (float), cudaMemcpyDeviceToHost,
                                 cu->stream), "reading the ranges");
  return cuda_synchronize (b);
}

static const Sam2BackendOps cuda_ops = {
  .name = "cuda",
  .destroy = cuda_destroy,
  .alloc = cuda_alloc,
  .free = cuda_free,
  .upload = cuda_upload,
  .download = cuda_download,
  .copy = cuda_copy,
  .host_alloc = cuda_host_alloc,
  .host_free = cuda_host_free,
  .upload_async = cuda_upload_async,
  .download_async = cuda_download_async,
  .preprocess = cuda_preprocess,
  .reserve_attention = cuda_reserve_attention,
  .linear = cuda_linear,
  .layer_norm = cuda_layer_norm,
  .norm_windows_linear = cuda_norm_windows_linear,
  .norm_sum_linear = cuda_norm_sum_linear,
  .norm_linear_pair = cuda_norm_linear_pair,
  .norm_mlp = cuda_norm_mlp,
  .attention_linear = cuda_attention_linear,
  .norm_attention_linear = cuda_norm_attention_linear,
  .norm_attention_linear_spares = cuda_norm_attention_linear_spares,
  .activation = cuda_activation,
  .add = cuda_add,
  .add_row = cuda_add_row,
  .attention = cuda_attention,
  .window_partition = cuda_window_partition,
  .window_unpartition = cuda_window_unpartition,
  .max_pool = cuda_max_pool,
  .im2col_planar = cuda_im2col_planar,
  .im2col = cuda_im2col,
  .add_upsample2x = cuda_add_upsample2x,
  .depth_to_space2x = cuda_depth_to_space2x,
  .depth_to_space2x_linear = cuda_depth_to_space2x_linear,
  .depth_to_space2x_matmul = cuda_depth_to_space2x_matmul,
  .matmul_nt = cuda_matmul_nt,
  .profile_start = cuda_profile_start,
  .profile_read = cuda_profile_read,
  .device_memory = TRUE,
  .status_detail = cuda_status_detail,
  .synchronize = cuda_synchronize,
  .run_graph = cuda_run_graph,
  .stats_new = cuda_stats_new,
  .stats_free = cuda_stats_free,
  .stats_observe = cuda_stats_observe,
  .stats_read = cuda_stats_read,
};

gboolean
sam2_backend_cuda_probe (GError **error)
{
  int count = 0;
  int st = sam2_cuda_device_count (&count);
  if (st != SAM2_CUDA_OK) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "no CUDA device found: the CUDA runtime failed to list devices; check the "
                 "NVIDIA driver (nvidia-smi) or use the CPU backend");
    return FALSE;
  }
  if (count == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "no CUDA device found: no NVIDIA driver or GPU is visible to this process "
                 "(check nvidia-smi and CUDA_VISIBLE_DEVICES); use the CPU backend");
    return FALSE;
  }
  return TRUE;
}

static gboolean
setup_failed (Sam2BackendCuda *cu, cudaError_t err, const char *what, GError **error)
{
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND, "CUDA backend: %s failed: %s (%s)", what,
               cudaGetErrorString (err), cudaGetErrorName (err));
  cuda_destroy (&cu->parent);
  return FALSE;
}

Sam2Backend *
sam2_backend_cuda_new (Sam2Precision precision, GError **error)
{
  if (!sam2_backend_cuda_probe (error))
    return NULL;
  Sam2BackendCuda *cu = g_new0 (Sam2BackendCuda, 1);
  cu->ops = cuda_ops;
  cu->parent.ops = &cu->ops;
  cu->precision = precision == SAM2_PRECISION_FP16 || precision == SAM2_PRECISION_BF16
                    ? precision : SAM2_PRECISION_FP32;
  cu->half = precision == SAM2_PRECISION_BF16 ? SAM2_CUDA_BF16 : SAM2_CUDA_F16;
  cu->linears = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, cuda_linear_free);
  cu->norms = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, cuda_norm_free);
  cu->events = g_array_new (FALSE, FALSE, sizeof (OpEvents));

  cudaError_t err = cudaGetDevice (&cu->device);
  if (err != cudaSuccess) {
    setup_failed (cu, err, "cudaGetDevice", error);
    return NULL;
  }
  struct cudaDeviceProp prop;
  if ((err = cudaGetDeviceProperties (&prop, cu->device)) != cudaSuccess) {
    setup_failed (cu, err, "cudaGetDeviceProperties", error);
    return NULL;
  }
  cu->device_name = g_strdup_printf ("%s (device %d, compute %d.%d, %.0f GiB)", prop.name,
                                     cu->device, prop.major, prop.minor,
                                     prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  int st = sam2_cuda_init ();
  if (st != SAM2_CUDA_OK) {
    err = cudaGetLastError ();
    setup_failed (cu, err != cudaSuccess ? err : cudaErrorUnknown,
                  "preparing the kernels (sam2_cuda_init)", error);
    return NULL;
  }
  /* non-blocking: another library's work on the legacy default stream never serialises with
   * this session's; everything of the session, weight copies included, is ordered on it */
  if ((err = cudaStreamCreateWithFlags (&cu->stream, cudaStreamNonBlocking)) != cudaSuccess) {
    cu->stream = NULL;
    setup_failed (cu, err, "cudaStreamCreate", error);
    return NULL;
  }
  cublasStatus_t cst = cublasCreate (&cu->cublas);
  if (cst != CUBLAS_STATUS_SUCCESS)
    cu->cublas = NULL;
  if (cst == CUBLAS_STATUS_SUCCESS)
    cst = cublasSetStream (cu->cublas, cu->stream);
  /* FP32 stays FP32 (no TF32); the 16-bit GemmEx path picks tensor cores from its operand types */
  if (cst == CUBLAS_STATUS_SUCCESS)
    cst = cublasSetMathMode (cu->cublas, CUBLAS_DEFAULT_MATH);
  if (cst != CUBLAS_STATUS_SUCCESS) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "CUDA backend: setting up cuBLAS failed: %s (%d)", cublas_status_name (cst),
                 (int) cst);
    cuda_destroy (&cu->parent);
    return NULL;
  }
  /* cuBLAS's workspace, ours: set after cublasSetStream (which resets it), so a captured GEMM
   * allocates nothing. Set whether graphs are on or off: the same workspace means the same GEMM
   * algorithms, so SAM2_CUDA_GRAPHS=0 gives the same bits. Without it the backend still works,
   * eagerly: graphs stay off. */
  if ((err = cudaMalloc (&cu->cublas_ws, CUBLAS_WORKSPACE_BYTES)) != cudaSuccess) {
    (void) cudaGetLastError ();
    cu->cublas_ws = NULL;
  } else if (cublasSetWorkspace (cu->cublas, cu->cublas_ws, CUBLAS_WORKSPACE_BYTES)
             != CUBLAS_STATUS_SUCCESS) {
    cudaFree (cu->cublas_ws);      /* cuBLAS keeps its own pool */
    cu->cublas_ws = NULL;
  }
  cu->graphs = env_switch_on ("SAM2_CUDA_GRAPHS") && cu->cublas_ws != NULL;
  cu->small_m = env_switch_on ("SAM2_CUDA_SMALL_M");   /* 0: cuBLAS for every row count */
  cu->fused_mlp = env_switch_on ("SAM2_CUDA_FUSED_MLP"); /* 0: norm_mlp as its three ops */
  /* 0: a W4A8 fc1's LayerNorm as its own kernel */
  cu->fused_norm_quant = env_switch_on ("SAM2_CUDA_NORM_QUANT");
  /* off unless asked for (SAM2_CUDA_QUANT_NEXT=1) until a GPU has timed it: the last N block
   * of an M tile quantizes all of the tile's rows, 16 per warp, which may leave a tail where
   * few M tiles are in flight (kernels/NOTES.md) */
  cu->quant_next = env_switch ("SAM2_CUDA_QUANT_NEXT", FALSE);
  /* 0: in FP16 / BF16, qkv's LayerNorm, window partition and conversion as three ops */
  cu->norm_f16 = env_switch_on ("SAM2_CUDA_NORM_F16");
  /* 0: in FP16 / BF16, the decoder's keys normalised, summed with pe and converted by three
   * ops */
  if (!env_switch_on ("SAM2_CUDA_NORM_PAIR"))
    cu->ops.norm_linear_pair = NULL;
  /* 0: in FP16 / BF16, the attention writes floats that o_proj / proj converts */
  if (!env_switch_on ("SAM2_CUDA_ATTENTION_OUT16"))
    cu->ops.attention_linear = NULL;
  /* 0: the decoder's last upscaling step writes its floats for the hypernetworks' GEMM */
  if (!env_switch_on ("SAM2_CUDA_UPSCALE_MASKS"))
    cu->ops.depth_to_space2x_matmul = NULL;
  /* 0: in FP16 / BF16, the decoder's upscaling writes floats that its second layer converts */
  if (!env_switch_on ("SAM2_CUDA_UPSCALE16"))
    cu->ops.depth_to_space2x_linear = NULL;
  /* 0: in FP16 / BF16, qkv's output is float, and the attention rounds it as it reads it */
  const char *chunk = g_getenv ("SAM2_CUDA_QKV_FLOAT_CHUNK");
  cu->qkv_float_chunk_bytes = chunk != NULL ? g_ascii_strtoull (chunk, NULL, 10) : 0;
  if (cu->qkv_float_chunk_bytes == 0)
    cu->qkv_float_chunk_bytes = QKV_FLOAT_CHUNK_BYTES;
  if (!env_switch_on ("SAM2_CUDA_QKV16")) {
    cu->ops.norm_attention_linear = NULL;
    cu->ops.norm_attention_linear_spares = NULL;
  }
  cu->pinned = env_switch_on ("SAM2_CUDA_PINNED");        /* 0: pageable staging buffers */
  if (!env_switch_on ("SAM2_CUDA_PREPROCESS"))           /* 0: resize on the host */
    cu->ops.preprocess = NULL;
#ifdef SAM2_HAVE_CUSOLVER
  /* 0: calibration's GPTQ on the CPU (so too, said at the first layer, where the cuSOLVER
   * library cannot be loaded: looked for then, not here, so inference never loads it) */
  if (env_switch_on ("SAM2_CUDA_GPTQ"))
    cu->ops.gptq_solve = cuda_gptq_solve;
#endif
  /* cuBLASLt for the 16-bit GEMMs with their bias (and residual) in its epilogue, on the same
   * workspace (one stream: the two libraries never run at once); SAM2_CUDA_LT_EPILOGUE=0 keeps
   * cublasGemmEx and the separate bias pass, for comparison */
  if (cu->cublas_ws != NULL && env_switch_on ("SAM2_CUDA_LT_EPILOGUE")
      && cublasLtCreate (&cu->cublaslt) != CUBLAS_STATUS_SUCCESS)
    cu->cublaslt = NULL;
  return &cu->parent;
}

const char *
sam2_backend_cuda_device_name (Sam2Backend *b)
{
  g_return_val_if_fail (b != NULL && b->ops->destroy == cuda_destroy, NULL);
  return ((Sam2BackendCuda *) b)->device_name;
}

/* b as the CUDA backend, or NULL for any other backend (or none). */
static const Sam2BackendCuda *
cuda_backend_of (Sam2Backend *b)
{
  return b != NULL && b->ops->destroy == cuda_destroy ? (const Sam2BackendCuda *) b : NULL;
}

gboolean
sam2_backend_cuda_path_stats (Sam2Backend *b, Sam2CudaPathStats *stats)
{
  g_return_val_if_fail (stats != NULL, FALSE);
  const Sam2BackendCuda *cu = cuda_backend_of (b);
  *stats = cu != NULL ? cu->path_stats : (Sam2CudaPathStats) { 0 };
  return cu != NULL;
}

gboolean
sam2_backend_cuda_graph_stats (Sam2Backend *b, Sam2CudaGraphStats *stats)
{
  g_return_val_if_fail (stats != NULL, FALSE);
  memset (stats, 0, sizeof *stats);
  const Sam2BackendCuda *cu = cuda_backend_of (b);
  if (cu == NULL)
    return FALSE;
  *stats = cu->graph_stats;
  stats->enabled = cu->graphs;
  for (int i = 0; i < GRAPH_SLOTS; i++)
    stats->held += cu->slots[i].exec != NULL;
  return TRUE;
}
