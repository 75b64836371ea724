/* backend-cpu.c: the reference backend. GEMMs go to oneDNN's sgemm (its JIT kernels ran the
 * encoder's shapes 1.2-2x faster than OpenBLAS 0.3.21 here, most for the K = 96 of stage 1);
 * oneDNN, OpenBLAS (LAPACK) and the loops here share one OpenMP thread pool. In the BF16
 * precision (AVX-512 BF16 CPUs) the float layers' GEMMs go to oneDNN's bf16 matmul
 * (gemm-bf16-cpu.c) and attention to the BF16 fused kernel (attention-cpu-bf16.c). */
#include "attention-cpu.h"
#include "backend.h"
#include "gemm-bf16-cpu.h"
#include "linear-cpu.h"
#include "ops-cpu.h"

#include <dnnl.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Queries handled per attention task: the score scratch is rows x len_k per thread. 128 rows
 * measured fastest for both 64-key windows and 4096-key global attention (32 and 64 lose 10-25%
 * to GEMM calls too small for BLAS to reach its rate). */
#define ATTENTION_ROW_BLOCK 128

typedef struct {
  Sam2Backend parent;
  Sam2Precision precision;     /* FP32, or BF16 (attention and float layers, where the CPU can) */
  Sam2GemmBf16 *gemm_bf16;     /* BF16: the float layers' GEMMs and their bf16 weights */
  float *scores;               /* (n_threads, ATTENTION_ROW_BLOCK, max_len_k) */
  size_t scores_per_thread;
  int scratch_threads;
  float *flash;                /* fused attention: per-thread scratch, then the packed keys */
  size_t flash_floats;
  gboolean profiling;
  Sam2OpProfile profile[SAM2_OP_COUNT];
  void *quant_scratch;         /* quantized layers' scratch, grown on the first frame */
  size_t quant_scratch_bytes;
} Sam2BackendCpu;

static const char *op_names[SAM2_OP_COUNT] = {
  [SAM2_OP_LINEAR] = "linear", [SAM2_OP_LAYER_NORM] = "layer_norm",
  [SAM2_OP_ACTIVATION] = "activation", [SAM2_OP_ADD] = "add", [SAM2_OP_ATTENTION] = "attention",
  [SAM2_OP_WINDOW] = "window (un)partition", [SAM2_OP_MAX_POOL] = "max_pool",
  [SAM2_OP_IM2COL] = "im2col", [SAM2_OP_RESAMPLE] = "upsample / depth_to_space",
  [SAM2_OP_MATMUL] = "matmul",
};

const char *
sam2_status_describe (int status)
{
  switch (status) {
  case SAM2_STATUS_OUT_OF_MEMORY:
    return "out of memory";
  case SAM2_STATUS_DEVICE:
    return "the compute device failed";
  case SAM2_STATUS_UNSUPPORTED:
    return "an operation is not supported by this backend";
  default:
    return "unknown failure";
  }
}

void
sam2_op_profile_reset (Sam2OpProfile *profile)
{
  for (int k = 0; k < SAM2_OP_COUNT; k++)
    profile[k] = (Sam2OpProfile) { op_names[k], 0.0, 0 };
}

/* Wall time per op kind when profiling is on (a benchmark aid; off costs one branch). */
#define PROFILED(kind, call)                                                                     \
  do {                                                                                           \
    Sam2BackendCpu *cpu_ = (Sam2BackendCpu *) b;                                                 \
    gint64 t0_ = cpu_->profiling ? g_get_monotonic_time () : 0;                                  \
    call;                                                                                        \
    if (cpu_->profiling) {                                                                       \
      cpu_->profile[kind].ms += (g_get_monotonic_time () - t0_) / 1e3;                           \
      cpu_->profile[kind].calls++;                                                               \
    }                                                                                            \
  } while (0)

static float *
cpu_alloc (Sam2Backend *b, size_t n)
{
  return g_try_malloc (MAX (n, 1) * sizeof (float));
}

static void
cpu_free (Sam2Backend *b, float *p)
{
  g_free (p);
}

static int
cpu_copy (Sam2Backend *b, float *dst, const float *src, size_t n)
{
  memcpy (dst, src, n * sizeof (float));
  return SAM2_STATUS_OK;
}

static int
cpu_reserve_attention (Sam2Backend *b, int max_len_q, int max_len_k)
{
  Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
  int threads = omp_get_max_threads ();
  size_t need = (size_t) MIN (max_len_q, ATTENTION_ROW_BLOCK) * (size_t) max_len_k;
  if (need <= cpu->scores_per_thread && threads <= cpu->scratch_threads)
    return SAM2_STATUS_OK;
  need = MAX (need, cpu->scores_per_thread);
  threads = MAX (threads, cpu->scratch_threads);
  float *scores = g_try_malloc (need * threads * sizeof (float));
  if (scores == NULL)
    return SAM2_STATUS_OUT_OF_MEMORY;
  g_free (cpu->scores);
  cpu->scores = scores;
  cpu->scores_per_thread = need;
  cpu->scratch_threads = threads;
  return SAM2_STATUS_OK;
}

/* The quantized layers' scratch grown to `need` bytes (it only grows: the first frame sizes it). */
static int
quant_scratch_reserve (Sam2BackendCpu *cpu, size_t need)
{
  if (need <= cpu->quant_scratch_bytes)
    return SAM2_STATUS_OK;
  void *p = g_try_realloc (cpu->quant_scratch, need);
  if (p == NULL)
    return SAM2_STATUS_OUT_OF_MEMORY;
  cpu->quant_scratch = p;
  cpu->quant_scratch_bytes = need;
  return SAM2_STATUS_OK;
}

static int
cpu_linear_run (Sam2Backend *b, const Sam2Linear *l, const float *x, int M, float *y, Sam2Act act,
            const float *residual)
{
  g_return_val_if_fail (act == SAM2_ACT_NONE || residual == NULL, SAM2_STATUS_UNSUPPORTED);
  Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
  if (l->quant != NULL) {
    const int status = quant_scratch_reserve (cpu, sam2_quant_linear_scratch_bytes (l->quant, M));
    if (status != SAM2_STATUS_OK)
      return status;
    sam2_quant_linear_forward (l->quant, x, M, y, act, residual, cpu->quant_scratch);
    return SAM2_STATUS_OK;
  }
  const int N = l->out_features, K = l->in_features;
  float beta = 0.0f;
  if (residual != NULL) {
    if (residual != y)
      memcpy (y, residual, (size_t) M * N * sizeof (float));
    beta = 1.0f;
  }
  /* y (M, N) = x (M, K) W^T, W (N, K): row-major "NT" */
  if (cpu->gemm_bf16 != NULL) {
    const int status = sam2_gemm_bf16_nt (cpu->gemm_bf16, x, M, l->weight, N, K, beta != 0.0f, y);
    if (status != SAM2_STATUS_OK)
      return status;
  } else if (dnnl_sgemm ('N', 'T', M, N, K, 1.0f, x, K, l->weight, K, beta, y, N)
             != dnnl_success) {
    return SAM2_STATUS_UNSUPPORTED;
  }
  sam2_cpu_bias_act (y, M, N, l->bias, act);
  return SAM2_STATUS_OK;
}

static int
cpu_layer_norm_run (Sam2Backend *b, const Sam2LayerNorm *n, const float *x, int M, float *y)
{
  sam2_cpu_layer_norm (x, M, n->dim, n->weight, n->bias, n->eps, y);
  return SAM2_STATUS_OK;
}

static int
cpu_activation_run (Sam2Backend *b, Sam2Act act, float *x, size_t n)
{
  sam2_cpu_activation (act, x, n);
  return SAM2_STATUS_OK;
}

static int
cpu_add_run (Sam2Backend *b, float *y, const float *a, const float *c, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++)
    y[i] = a[i] + c[i];
  return SAM2_STATUS_OK;
}

static int
cpu_add_row_run (Sam2Backend *b, float *y, const float *x, const float *row, int M, int C)
{
#pragma omp parallel for schedule(static) if ((size_t) M * C > 65536)
  for (int m = 0; m < M; m++)
    for (int c = 0; c < C; c++)
      y[(size_t) m * C + c] = x[(size_t) m * C + c] + row[c];
  return SAM2_STATUS_OK;
}

/* One block of queries of one head: S = scale q k^T, row softmax, out = S v. */
static void
attention_block (const Sam2AttentionArgs *a, int seq, int head, int q0, int nq, float *scores)
{
  const size_t hoff = (size_t) head * a->head_dim;
  const float *q = a->q + seq * a->q_batch_stride + (size_t) q0 * a->q_ld + hoff;
  const float *k = a->k + seq * a->k_batch_stride + hoff;
  const float *v = a->v + seq * a->v_batch_stride + hoff;
  float *out = a->out + seq * a->out_batch_stride + (size_t) q0 * a->out_ld + hoff;

  float inv_sum[ATTENTION_ROW_BLOCK];
  dnnl_sgemm ('N', 'T', nq, a->len_k, a->head_dim, a->scale, q, a->q_ld, k, a->k_ld, 0.0f, scores,
              a->len_k);
  /* unnormalised exp; the 1 / sum goes on the (nq, head_dim) output instead of the scores */
  sam2_cpu_softmax_rows_unnormalized (scores, nq, a->len_k, inv_sum);
  dnnl_sgemm ('N', 'N', nq, a->head_dim, a->len_k, 1.0f, scores, a->len_k, v, a->v_ld, 0.0f, out,
              a->out_ld);
  sam2_cpu_scale_rows (out, nq, a->head_dim, a->out_ld, inv_sum);
}

/* The fused path (attention-cpu.c): each (sequence, head)'s keys packed once. When one task
 * covers all queries of a sequence (windows, the decoder), a task is a sequence, all its heads
 * in turn, packing each into the thread's scratch (thousands of small windows: fewer, larger
 * tasks; with fewer sequences than threads, a task per head); else the keys are packed in a
 * pass of their own into a shared buffer, then one task per (sequence, head, SAM2_FLASH_ROWS
 * queries). */
static int
cpu_attention_flash (Sam2BackendCpu *cpu, const Sam2FlashKernel *kn, const Sam2AttentionArgs *a)
{
  const int row_blocks = (a->len_q + SAM2_FLASH_ROWS - 1) / SAM2_FLASH_ROWS;
  const long heads = (long) a->batch * a->heads;
  const gboolean shared = row_blocks > 1;
  const int threads = omp_get_max_threads ();
  /* fewer sequences than threads (the decoder's token-to-image attention: one sequence of a
   * few queries against 4096 keys, 8 heads): a task per head, or one thread would do it all */
  const gboolean per_head = !shared && a->batch < threads;
  const long tasks = shared ? heads * row_blocks : per_head ? heads : a->batch;
  const size_t packed = kn->packed_floats (a), task = kn->task_floats (a);
  /* each thread's part a whole number of cache lines apart (no false sharing) */
  const size_t per_thread = (task + (shared ? 0 : packed) + 15) & ~(size_t) 15;
  const size_t need = per_thread * threads + (shared ? packed * heads : 0);
  if (need > cpu->flash_floats) {
    g_free (cpu->flash);
    cpu->flash = g_try_malloc (need * sizeof (float));
    cpu->flash_floats = cpu->flash ? need : 0;
    if (cpu->flash == NULL)
      return SAM2_STATUS_OUT_OF_MEMORY;
  }
  float *keys = cpu->flash + per_thread * threads;
  if (shared) {
#pragma omp parallel for schedule(dynamic, 1) if (heads > 1)
    for (long h = 0; h < heads; h++)
      kn->pack_keys (a, (int) (h / a->heads), (int) (h % a->heads), keys + (size_t) h * packed);
  }
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1)
  for (long t = 0; t < tasks; t++) {
    float *scratch = cpu->flash + (size_t) omp_get_thread_num () * per_thread;
    if (shared) {
      const int rb = (int) (t % row_blocks);
      const long h = t / row_blocks;
      const int q0 = rb * SAM2_FLASH_ROWS, nq = MIN (SAM2_FLASH_ROWS, a->len_q - q0);
      kn->task (a, (int) (h / a->heads), (int) (h % a->heads), q0, nq, keys + (size_t) h * packed,
                scratch);
    } else {
      const int seq = (int) (per_head ? t / a->heads : t);
      const int h0 = per_head ? (int) (t % a->heads) : 0, h1 = per_head ? h0 + 1 : a->heads;
      for (int head = h0; head < h1; head++) {
        kn->pack_keys (a, seq, head, scratch + task);
        kn->task (a, seq, head, 0, a->len_q, scratch + task, scratch);
      }
    }
  }
  return SAM2_STATUS_OK;
}

static int
cpu_attention_run (Sam2Backend *b, const Sam2AttentionArgs *a)
{
  Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
  /* BF16 is a precision only where its kernel is there (sam2_backend_cpu_supports) */
  if (cpu->precision == SAM2_PRECISION_BF16)
    return cpu_attention_flash (cpu, sam2_cpu_flash_bf16 (), a);
  if (sam2_cpu_flash_supported (a))
    return cpu_attention_flash (cpu, sam2_cpu_flash_fp32 (), a);
  int status = cpu_reserve_attention (b, a->len_q, a->len_k);
  if (status != SAM2_STATUS_OK)
    return status;

  const int row_blocks = (a->len_q + ATTENTION_ROW_BLOCK - 1) / ATTENTION_ROW_BLOCK;
  const long tasks = (long) a->batch * a->heads * row_blocks;
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1)
  for (long t = 0; t < tasks; t++) {
    int rb = (int) (t % row_blocks);
    int head = (int) ((t / row_blocks) % a->heads);
    int seq = (int) (t / ((long) row_blocks * a->heads));
    int q0 = rb * ATTENTION_ROW_BLOCK;
    int nq = MIN (ATTENTION_ROW_BLOCK, a->len_q - q0);
    float *scores = cpu->scores + (size_t) omp_get_thread_num () * cpu->scores_per_thread;
    attention_block (a, seq, head, q0, nq, scores);
  }
  return SAM2_STATUS_OK;
}

static int
cpu_window_partition_run (Sam2Backend *b, const float *x, int H, int W, int C, int ws, float *win)
{
  sam2_cpu_window_partition (x, H, W, C, ws, win);
  return SAM2_STATUS_OK;
}

static int
cpu_window_unpartition_run (Sam2Backend *b, const float *win, int n_win_h, int n_win_w, int ws,
                            int C, int H, int W, const float *residual, float *x)
{
  sam2_cpu_window_unpartition (win, n_win_h, n_win_w, ws, C, H, W, residual, x);
  return SAM2_STATUS_OK;
}

static int
cpu_max_pool_run (Sam2Backend *b, const float *x, int n_img, int H, int W, int C, int ld, int s,
              float *y)
{
  sam2_cpu_max_pool (x, n_img, H, W, C, ld, s, y);
  return SAM2_STATUS_OK;
}

static int
cpu_im2col_planar_run (Sam2Backend *b, const float *x, int C, int H, int W, int kh, int kw,
                   int stride, int pad, float *cols)
{
  sam2_cpu_im2col_planar (x, C, H, W, kh, kw, stride, pad, cols);
  return SAM2_STATUS_OK;
}

static int
cpu_im2col_run (Sam2Backend *b, const float *x, int H, int W, int C, int kh, int kw, int stride,
            int pad, float *cols)
{
  sam2_cpu_im2col (x, H, W, C, kh, kw, stride, pad, cols);
  return SAM2_STATUS_OK;
}

static int
cpu_add_upsample2x_run (Sam2Backend *b, float *y, const float *x, int H, int W, int C)
{
  sam2_cpu_add_upsample2x (y, x, H, W, C);
  return SAM2_STATUS_OK;
}

static int
cpu_depth_to_space2x_run (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                          const float *addend, float *y)
{
  g_return_val_if_fail (x_ld >= 4 * C, SAM2_STATUS_UNSUPPORTED);
  sam2_cpu_depth_to_space2x (x, x_ld, H, W, C, addend, y);
  return SAM2_STATUS_OK;
}

static int
cpu_matmul_nt_run (Sam2Backend *b, const float *A, const float *B, int M, int N, int K, float *C)
{
  return dnnl_sgemm ('N', 'T', M, N, K, 1.0f, A, K, B, K, 0.0f, C, N) == dnnl_success
             ? SAM2_STATUS_OK
             : SAM2_STATUS_UNSUPPORTED;
}

static int
cpu_linear (Sam2Backend *b, const Sam2Linear *l, const float *x, int M, float *y, Sam2Act act,
            const float *residual)
{
  int status;
  PROFILED (SAM2_OP_LINEAR, status = cpu_linear_run (b, l, x, M, y, act, residual));
  return status;
}

static int
cpu_layer_norm (Sam2Backend *b, const Sam2LayerNorm *n, const float *x, int M, float *y)
{
  int status;
  PROFILED (SAM2_OP_LAYER_NORM, status = cpu_layer_norm_run (b, n, x, M, y));
  return status;
}

/* Both layers W4A8: one pass per row block (sam2_quant_mlp_forward), timed as linear; else the
 * three ops. */
static int
cpu_norm_mlp (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *fc1, Sam2Act act,
              const Sam2Linear *fc2, const float *x, int M, float *norm_buf, float *hidden,
              float *y, const float *residual)
{
  if (fc1->quant != NULL && fc2->quant != NULL
      && sam2_quant_mlp_fusable (fc1->quant, fc2->quant, M)) {
    Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
    int status = quant_scratch_reserve (cpu, sam2_quant_mlp_scratch_bytes (fc1->quant, fc2->quant));
    if (status != SAM2_STATUS_OK)
      return status;
    const Sam2QuantNorm qn = { n->weight, n->bias, n->eps };
    PROFILED (SAM2_OP_LINEAR, sam2_quant_mlp_forward (&qn, fc1->quant, act, fc2->quant, x, M, y,
                                                      residual, cpu->quant_scratch));
    return SAM2_STATUS_OK;
  }
  int status = cpu_layer_norm (b, n, x, M, norm_buf);
  if (status == SAM2_STATUS_OK)
    status = cpu_linear (b, fc1, norm_buf, M, hidden, act, NULL);
  if (status == SAM2_STATUS_OK)
    status = cpu_linear (b, fc2, hidden, M, y, SAM2_ACT_NONE, residual);
  return status;
}

static int
cpu_activation (Sam2Backend *b, Sam2Act act, float *x, size_t n)
{
  int status;
  PROFILED (SAM2_OP_ACTIVATION, status = cpu_activation_run (b, act, x, n));
  return status;
}

static int
cpu_add (Sam2Backend *b, float *y, const float *a, const float *c, size_t n)
{
  int status;
  PROFILED (SAM2_OP_ADD, status = cpu_add_run (b, y, a, c, n));
  return status;
}

static int
cpu_add_row (Sam2Backend *b, float *y, const float *x, const float *row, int M, int C)
{
  int status;
  PROFILED (SAM2_OP_ADD, status = cpu_add_row_run (b, y, x, row, M, C));
  return status;
}

static int
cpu_attention (Sam2Backend *b, const Sam2AttentionArgs *a)
{
  int status;
  PROFILED (SAM2_OP_ATTENTION, status = cpu_attention_run (b, a));
  return status;
}

static int
cpu_window_partition (Sam2Backend *b, const float *x, int H, int W, int C, int ws, float *win)
{
  int status;
  PROFILED (SAM2_OP_WINDOW, status = cpu_window_partition_run (b, x, H, W, C, ws, win));
  return status;
}

static int
cpu_window_unpartition (Sam2Backend *b, const float *win, int n_win_h, int n_win_w, int ws, int C,
                        int H, int W, const float *residual, float *x)
{
  int status;
  PROFILED (SAM2_OP_WINDOW, status = cpu_window_unpartition_run (b, win, n_win_h, n_win_w, ws, C,
                                                                 H, W, residual, x));
  return status;
}

static int
cpu_max_pool (Sam2Backend *b, const float *x, int n_img, int H, int W, int C, int ld, int s,
              float *y)
{
  int status;
  PROFILED (SAM2_OP_MAX_POOL, status = cpu_max_pool_run (b, x, n_img, H, W, C, ld, s, y));
  return status;
}

static int
cpu_im2col_planar (Sam2Backend *b, const float *x, int C, int H, int W, int kh, int kw,
                   int stride, int pad, float *cols)
{
  int status;
  PROFILED (SAM2_OP_IM2COL, status = cpu_im2col_planar_run (b, x, C, H, W, kh, kw, stride, pad, cols));
  return status;
}

static int
cpu_im2col (Sam2Backend *b, const float *x, int H, int W, int C, int kh, int kw, int stride,
            int pad, float *cols)
{
  int status;
  PROFILED (SAM2_OP_IM2COL, status = cpu_im2col_run (b, x, H, W, C, kh, kw, stride, pad, cols));
  return status;
}

static int
cpu_add_upsample2x (Sam2Backend *b, float *y, const float *x, int H, int W, int C)
{
  int status;
  PROFILED (SAM2_OP_RESAMPLE, status = cpu_add_upsample2x_run (b, y, x, H, W, C));
  return status;
}

/* The oracle of the fused op: the three ops one after another, each timed as itself. */
static int
cpu_depth_to_space2x (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                      const float *addend, const Sam2LayerNorm *norm, Sam2Act act, float *y)
{
  g_return_val_if_fail (norm == NULL || norm->dim == C, SAM2_STATUS_UNSUPPORTED);
  int status;
  PROFILED (SAM2_OP_RESAMPLE,
            status = cpu_depth_to_space2x_run (b, x, x_ld, H, W, C, addend, y));
  if (status == SAM2_STATUS_OK && norm != NULL)
    status = cpu_layer_norm (b, norm, y, 4 * H * W, y);
  if (status == SAM2_STATUS_OK && act != SAM2_ACT_NONE)
    status = cpu_activation (b, act, y, (size_t) 4 * H * W * C);
  return status;
}

static int
cpu_matmul_nt (Sam2Backend *b, const float *A, const float *B, int M, int N, int K, float *C)
{
  int status;
  PROFILED (SAM2_OP_MATMUL, status = cpu_matmul_nt_run (b, A, B, M, N, K, C));
  return status;
}

static void
cpu_profile_start (Sam2Backend *b)
{
  Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
  sam2_op_profile_reset (cpu->profile);
  cpu->profiling = TRUE;
}

static const Sam2OpProfile *
cpu_profile_read (Sam2Backend *b)
{
  return ((Sam2BackendCpu *) b)->profile;
}

static void
cpu_destroy (Sam2Backend *b)
{
  Sam2BackendCpu *cpu = (Sam2BackendCpu *) b;
  g_free (cpu->scores);
  g_free (cpu->flash);
  g_free (cpu->quant_scratch);
  sam2_gemm_bf16_free (cpu->gemm_bf16);
  g_free (cpu);
}

static const Sam2BackendOps cpu_ops = {
  .name = "cpu",
  .destroy = cpu_destroy,
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_copy,
  .download = cpu_copy,
  .copy = cpu_copy,
  .reserve_attention = cpu_reserve_attention,
  .linear = cpu_linear,
  .layer_norm = cpu_layer_norm,
  .norm_mlp = cpu_norm_mlp,
  .activation = cpu_activation,
  .add = cpu_add,
  .add_row = cpu_add_row,
  .attention = cpu_attention,
  .window_partition = cpu_window_partition,
  .window_unpartition = cpu_window_unpartition,
  .max_pool = cpu_max_pool,
  .im2col_planar = cpu_im2col_planar,
  .im2col = cpu_im2col,
  .add_upsample2x = cpu_add_upsample2x,
  .depth_to_space2x = cpu_depth_to_space2x,
  .matmul_nt = cpu_matmul_nt,
  .profile_start = cpu_profile_start,
  .profile_read = cpu_profile_read,
};

Sam2Backend *
sam2_backend_cpu_new (void)
{
  return sam2_backend_cpu_new_full (SAM2_PRECISION_FP32, NULL);
}

gboolean
sam2_backend_cpu_supports (Sam2Precision precision, GError **error)
{
  if (precision == SAM2_PRECISION_FP32 || precision == SAM2_PRECISION_AUTO)
    return TRUE;
  if (precision == SAM2_PRECISION_BF16) {
    const char *cap = g_getenv ("SAM2_CPU_BF16");
    const char *why = cap != NULL && strcmp (cap, "0") == 0
        ? "the environment variable SAM2_CPU_BF16=0 turns it off"
        : !sam2_cpu_flash_bf16_available () ? "this CPU lacks the AVX-512 BF16 instructions"
        : !sam2_gemm_bf16_available ()
        ? "oneDNN has no bf16 matmul for this CPU (is its instruction set capped by "
          "ONEDNN_MAX_CPU_ISA?)"
        : NULL;
    if (why == NULL)
      return TRUE;
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "precision bf16 is not available on the CPU: %s", why);
    return FALSE;
  }
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
               "precision %s needs the CUDA backend (the CPU computes in FP32, and in BF16 where "
               "it has AVX-512 BF16)", sam2_precision_to_string (precision));
  return FALSE;
}

Sam2Backend *
sam2_backend_cpu_new_full (Sam2Precision precision, GError **error)
{
  if (!sam2_backend_cpu_supports (precision, error))
    return NULL;
  Sam2GemmBf16 *gemm_bf16 = NULL;
  if (precision == SAM2_PRECISION_BF16 && (gemm_bf16 = sam2_gemm_bf16_new ()) == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "precision bf16 on the CPU: oneDNN could not make its engine");
    return NULL;
  }
  Sam2BackendCpu *cpu = g_new0 (Sam2BackendCpu, 1);
  cpu->parent.ops = &cpu_ops;
  cpu->precision = precision == SAM2_PRECISION_AUTO ? SAM2_PRECISION_FP32 : precision;
  cpu->gemm_bf16 = gemm_bf16;
  return &cpu->parent;
}

void
sam2_backend_free (Sam2Backend *b)
{
  if (b != NULL)
    b->ops->destroy (b);
}
