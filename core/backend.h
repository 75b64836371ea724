/* backend.h: the small op table the model runs on.
 *
 * The model code (hiera.c, neck.c, mask-decoder.c) describes the computation as calls to these
 * ops on buffers the session allocated through the same backend; it never touches activations
 * itself. The CPU backend is the oracle; a CUDA backend implements the same table on device
 * memory and is tested op by op against it.
 *
 * All tensors are float32, row-major, channels-last: a (H, W, C) map is H*W rows of C floats.
 * Ops return 0 on success or a negative SAM2_STATUS_* code; the session turns a failure into a
 * GError once, at the API boundary.
 */
#ifndef SAM2_BACKEND_H
#define SAM2_BACKEND_H

#include "image.h"
#include "model.h"

G_BEGIN_DECLS

enum {
  SAM2_STATUS_OK = 0,
  SAM2_STATUS_OUT_OF_MEMORY = -1,
  SAM2_STATUS_DEVICE = -2,
  SAM2_STATUS_UNSUPPORTED = -3,
};

/* Multi-head attention over `batch` independent sequences. Row `i` of sequence `s` of X lives at
 * X + s * X_batch_stride + i * X_ld; head h occupies columns [h * head_dim, (h + 1) * head_dim).
 * out = softmax(scale * q k^T) v per head, written the same way (heads concatenated). */
typedef struct {
  int batch;
  int heads;
  int head_dim;
  int len_q;
  int len_k;
  float scale;
  const float *q; int q_ld; size_t q_batch_stride;
  const float *k; int k_ld; size_t k_batch_stride;
  const float *v; int v_ld; size_t v_batch_stride;
  float *out; int out_ld; size_t out_batch_stride;
} Sam2AttentionArgs;

typedef struct _Sam2Backend Sam2Backend;

/* What a backend's norm_attention_linear pass leaves unused of the float buffers the ops fill
 * (norm_attention_linear_spares). */
typedef enum {
  /* qkv's output and the pooled q held in 16 bits, in the first halves of qkv_buf's and q_buf's
   * bytes; nothing written to the window partition's buffer */
  SAM2_PASS_QKV_HALVES = 1 << 0,
  /* args->out not written: the attention hands proj its output in a form of the backend's */
  SAM2_PASS_NO_ATTENTION_OUT = 1 << 1,
} Sam2PassSpares;

/* Op kinds for profiling. */
typedef enum {
  SAM2_OP_LINEAR,
  SAM2_OP_LAYER_NORM,
  SAM2_OP_ACTIVATION,
  SAM2_OP_ADD,
  SAM2_OP_ATTENTION,
  SAM2_OP_WINDOW,
  SAM2_OP_MAX_POOL,
  SAM2_OP_IM2COL,
  SAM2_OP_RESAMPLE,
  SAM2_OP_MATMUL,
  SAM2_OP_COUNT,
} Sam2OpKind;

typedef struct {
  const char *name;
  double ms;
  long calls;
} Sam2OpProfile;

/* Sets SAM2_OP_COUNT per-op totals to zero, each named for its op kind ("linear", "attention",
 * ...): what every backend's profile_start does, so that all name their ops alike. */
void sam2_op_profile_reset (Sam2OpProfile *profile);

/* A SAM2_STATUS_* failure in words ("out of memory", ...), for error messages. */
const char *sam2_status_describe (int status);

typedef struct {
  const char *name;
  void (*destroy) (Sam2Backend *b);

  /* memory: device buffers of floats (host memory for the CPU backend) */
  float *(*alloc) (Sam2Backend *b, size_t n_floats);
  void (*free) (Sam2Backend *b, float *p);
  int (*upload) (Sam2Backend *b, float *dst, const float *host, size_t n);
  int (*download) (Sam2Backend *b, float *host, const float *src, size_t n);
  /* dst = src, n floats of backend memory, in order with the ops (unlike upload, a run_graph
   * body may call it); the two must not overlap. */
  int (*copy) (Sam2Backend *b, float *dst, const float *src, size_t n);
  /* Optional (NULL: g_try_new / g_free): host memory that upload and download move fastest,
   * for the session's staging buffers (page-locked on a GPU, which its copy engines reach
   * directly); NULL on failure. The session frees it with host_free before destroying b. */
  float *(*host_alloc) (Sam2Backend *b, size_t n_floats);
  void (*host_free) (Sam2Backend *b, float *p);
  /* Optional (NULL: upload / download): the same copies between backend memory and a host_alloc
   * buffer without waiting for them, so that a decoder pass waits once, not per copy. They run
   * in order with the ops and are complete after the next download or synchronize; until then
   * the host buffer must not be written (upload_async) or read (download_async). */
  int (*upload_async) (Sam2Backend *b, float *dst, const float *host, size_t n);
  int (*download_async) (Sam2Backend *b, float *host, const float *src, size_t n);
  /* Optional (NULL: the session runs sam2_preprocess on the host and uploads the floats): the
   * same on the backend, with the same result bit for bit. `pixels` is a frame in host memory of
   * r's input size (`stride` bytes per row, `format`); pixel_values (3, r's output size) is
   * backend memory. Like upload, not inside run_graph. */
  int (*preprocess) (Sam2Backend *b, const Sam2Resampler *r, const guint8 *pixels, int stride,
                     Sam2PixelFormat format, float *pixel_values);
  /* Called once per session with the largest attention it will run, so no op allocates later. */
  int (*reserve_attention) (Sam2Backend *b, int max_len_q, int max_len_k);

  /* y (M, N) = act(x (M, K) W^T + b) + residual; residual (M, N) may be y itself; act and
   * residual are not combined (no SAM2 layer needs both). */
  int (*linear) (Sam2Backend *b, const Sam2Linear *l, const float *x, int M, float *y, Sam2Act act,
                 const float *residual);
  /* Row-wise LayerNorm over `n->dim` channels of M rows; y may be x. */
  int (*layer_norm) (Sam2Backend *b, const Sam2LayerNorm *n, const float *x, int M, float *y);
  /* Optional (NULL: the model runs the three ops itself): the MLP half of a transformer block,
   * y (M, N2) = fc2 (act (fc1 (LN (x (M, K1))))) + residual, with the results of layer_norm then
   * linear twice. norm_buf (M, K1) and hidden (M, N1) are buffers for the intermediates, which
   * a backend that fuses the steps may leave unwritten; y may be x and residual. */
  int (*norm_mlp) (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *fc1, Sam2Act act,
                   const Sam2Linear *fc2, const float *x, int M, float *norm_buf, float *hidden,
                   float *y, const float *residual);
  /* Optional: a block's first half up to its qkv layer in one pass, y (M, N) = l (windows
   * (LN (x))), x the rows of n_img (H, W, n->dim) maps, windows those of window_partition of each
   * image with window ws in turn (ws 0: the rows as they are, M = n_img H W), with the results
   * of layer_norm, window_partition and linear. *done FALSE, with nothing run, where the backend
   * has no such pass for this layer (NULL: for none); the model then runs the three ops. */
  int (*norm_windows_linear) (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *l,
                              const float *x, int n_img, int H, int W, int ws, float *y,
                              gboolean *done);
  /* Optional: x = n (x) in place when n is not NULL (a LayerNorm over x's rows), then y (M, N) =
   * act (l (x + addend)) (addend (M, K) or NULL), with the results of layer_norm, add and linear
   * one after another, without writing the sum (the mask decoder's tokens after a norm, plus
   * their positional encodings; the image keys plus theirs). *done FALSE, with nothing run,
   * where the backend has no such pass for this layer and M (NULL: for none); the model then
   * runs the ops. */
  int (*norm_sum_linear) (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *l, float *x,
                          const float *addend, int M, Sam2Act act, float *y, gboolean *done);
  /* Optional: x = n (x) in place when n is not NULL, then y1 (M, N1) = l1 (x + addend) and y2
   * (M, N2) = l2 (x), both layers reading x's K columns (addend (M, K)), with the results of
   * layer_norm, add and the two linears (the mask decoder's keys after their norm: the
   * projections of keys + pe and of keys). *done FALSE, with nothing run, where the backend has
   * no such pass for these layers and M (NULL: for none); the model then runs the ops. */
  int (*norm_linear_pair) (Sam2Backend *b, const Sam2LayerNorm *n, float *x, const float *addend,
                           int M, const Sam2Linear *l1, float *y1, const Sam2Linear *l2,
                           float *y2, gboolean *done);
  int (*activation) (Sam2Backend *b, Sam2Act act, float *x, size_t n);
  /* Optional: y (M, N) = l (attention (args)) + residual (M, N; NULL: none; may be y), M =
   * args->batch * args->len_q, with the results of attention then linear, for an attention whose
   * output rows are packed (out_ld l's in_features; out_batch_stride len_q out_ld where batch >
   * 1). args->out is the buffer the ops would write; a backend that hands the layer the
   * attention's output in its own operand format may leave it unwritten. *done FALSE, with
   * nothing run, where the backend has no such pass for this layer and M (NULL: for none); the
   * model then runs the ops. */
  int (*attention_linear) (Sam2Backend *b, const Sam2AttentionArgs *args, const Sam2Linear *l,
                           float *y, const float *residual, gboolean *done);
  /* Optional: a transformer block's attention half, y (M, N) = proj (attention (qkv (windows
   * (LN (x))))), with the results of norm_windows_linear (n, qkv, x, n_img, H, W, ws; n NULL: x
   * is normalised already) into qkv_buf; where q_stride > 1, max_pool of q (the first heads
   * head_dim columns of qkv_buf's rows, per window of ws x ws rows, or per H x W map when ws is
   * 0) into q_buf; then attention_linear (args, proj, y, no residual), args' k and v pointing
   * into qkv_buf (rows qkv's out_features apart) and q into qkv_buf, or into q_buf when pooled
   * (rows heads head_dim apart). The backend may hold qkv's output and the pooled q in a form of
   * its own (in those buffers or elsewhere), so their floats are not to be read after it; and
   * may leave args->out unwritten. *done FALSE, with nothing run,
   * where it has no such pass for these layers (NULL: for none); the model then runs the ops. */
  int (*norm_attention_linear) (Sam2Backend *b, const Sam2LayerNorm *n, const Sam2Linear *qkv,
                                const float *x, int n_img, int H, int W, int ws, int q_stride,
                                float *qkv_buf, float *q_buf, const Sam2AttentionArgs *args,
                                const Sam2Linear *proj, float *y, gboolean *done);
  /* Optional: what norm_attention_linear's pass leaves unused of the buffers the ops would fill,
   * for a block of these layers and this geometry, so that the model can size its scratch:
   * SAM2_PASS_* flags, 0 where the pass declines (or uses them all). args as
   * norm_attention_linear takes them, except that its pointers are not read: q would lie at the
   * start of qkv_buf's rows (of q_buf's where q_stride > 1), k and v at columns heads * head_dim
   * and twice that of qkv_buf's rows, every buffer 256-byte aligned. A pass planned so runs so
   * (with buffers laid out so) whenever no observer needs the layers' inputs. */
  unsigned (*norm_attention_linear_spares) (Sam2Backend *b, const Sam2LayerNorm *n,
                                            const Sam2Linear *qkv, int n_img, int H, int W,
                                            int ws, int q_stride, const Sam2AttentionArgs *args,
                                            const Sam2Linear *proj);
  /* y = a + c (n floats); y may alias either. */
  int (*add) (Sam2Backend *b, float *y, const float *a, const float *c, size_t n);
  /* y (M, C) = x (M, C) + row (C) broadcast over rows; y may be x. */
  int (*add_row) (Sam2Backend *b, float *y, const float *x, const float *row, int M, int C);
  int (*attention) (Sam2Backend *b, const Sam2AttentionArgs *args);

  /* (H, W, C) -> (n_win_h * n_win_w, ws * ws, C), zero-padding the bottom and right. */
  int (*window_partition) (Sam2Backend *b, const float *x, int H, int W, int C, int ws,
                           float *windows);
  /* The inverse, cropping the padding: windows over an (n_win_h*ws, n_win_w*ws) grid -> (H, W, C),
   * added to residual (H, W, C) when it is not NULL (x = residual + map, in that order, as the
   * add op; residual may be x): a block's attention branch joins its residual in this pass. */
  int (*window_unpartition) (Sam2Backend *b, const float *windows, int n_win_h, int n_win_w,
                             int ws, int C, int H, int W, const float *residual, float *x);
  /* Max pooling with kernel = stride = s and floor sizes on n_img (H, W, C) maps whose rows are
   * `ld` floats apart (to pool q straight out of a qkv buffer); y is (n_img, H/s, W/s, C). */
  int (*max_pool) (Sam2Backend *b, const float *x, int n_img, int H, int W, int C, int ld, int s,
                   float *y);
  /* im2col of planar (C, H, W) input (the pixels): rows (oh, ow), columns (c, ky, kx). */
  int (*im2col_planar) (Sam2Backend *b, const float *x, int C, int H, int W, int kh, int kw,
                        int stride, int pad, float *cols);
  /* im2col of channels-last (H, W, C): rows (oh, ow), columns (c, ky, kx) like conv weights. */
  int (*im2col) (Sam2Backend *b, const float *x, int H, int W, int C, int kh, int kw, int stride,
                 int pad, float *cols);
  /* y (2H, 2W, C) += nearest 2x upsampling of x (H, W, C). */
  int (*add_upsample2x) (Sam2Backend *b, float *y, const float *x, int H, int W, int C);
  /* ConvTranspose2d k2 s2 output scatter: x (H*W, 4*C; rows x_ld >= 4 C floats apart) with
   * columns (dy, dx, c) -> y (2H, 2W, C), plus `addend` (2H, 2W, C) when not NULL (it may be y),
   * then the LayerNorm `norm` over C when not NULL, then `act`: the mask decoder's upscaling
   * steps after a transposed convolution in one pass, the same floats as the scatter,
   * layer_norm and activation one after another. */
  int (*depth_to_space2x) (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                           const float *addend, const Sam2LayerNorm *norm, Sam2Act act, float *y);
  /* Optional: y (4 H W, N) = l (t) for t (2H, 2W, C) = depth_to_space2x (x, x_ld, H, W, C,
   * addend, norm, act), with the results of the two ops one after another (the mask decoder's
   * second transposed convolution on the first one's output). t is the buffer the ops would
   * write; a backend that hands the layer its operand in a format of its own may use t as
   * scratch, so its floats are not to be read after. *done FALSE, with nothing run, where the
   * backend has no such pass for this layer (NULL: for none); the model then runs the ops. */
  int (*depth_to_space2x_linear) (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                                  const float *addend, const Sam2LayerNorm *norm, Sam2Act act,
                                  float *t, const Sam2Linear *l, float *y, gboolean *done);
  /* C (M, N) = A (M, K) B^T with B (N, K): the hypernetwork product of the mask decoder. */
  int (*matmul_nt) (Sam2Backend *b, const float *A, const float *B, int M, int N, int K, float *C);
  /* Optional: out (M, 4 H W) = A (M, C) t^T for t (2H, 2W, C) = depth_to_space2x (x, x_ld, H, W,
   * C, addend, no norm, act), t never written: the mask decoder's last upscaling step and the
   * hypernetworks' product in one pass, the results of depth_to_space2x then matmul_nt up to the
   * order of the product's float sums. *done FALSE, with nothing run, where the backend has no
   * such pass for these sizes (NULL: for none); the model then runs the two ops. */
  int (*depth_to_space2x_matmul) (Sam2Backend *b, const float *x, int x_ld, int H, int W, int C,
                                  const float *addend, Sam2Act act, const float *A, int M,
                                  float *out, gboolean *done);

  /* Profiling (benchmarks): start accumulating wall time per op kind (resets the counters), and
   * read it back as SAM2_OP_COUNT entries. */
  void (*profile_start) (Sam2Backend *b);
  const Sam2OpProfile *(*profile_read) (Sam2Backend *b);

  /* TRUE when alloc() returns memory the host must not touch (a GPU's): the session then stages
   * what it hands to callers (features, taps) through download(). */
  gboolean device_memory;
  /* Optional (NULL for the CPU): the device's own words for the last failure (e.g.
   * "cudaErrorIllegalAddress: an illegal memory access was encountered"), appended to the
   * session's GError; NULL when there is nothing to add. */
  const char *(*status_detail) (Sam2Backend *b);
  /* Optional (NULL when ops complete before they return, as on the CPU): waits for every op
   * enqueued so far and reports the first failure among them. */
  int (*synchronize) (Sam2Backend *b);
  /* Optional (NULL on the CPU, where launches cost nothing): runs `body (data)` as a replayable
   * device graph identified by `key`, and returns its status. `body` must only enqueue ops: no
   * upload, download, synchronize or alloc, and it must issue the same op calls with the same
   * arguments (buffers, sizes, host scalars) every time it runs under the same key; everything
   * that changes the sequence or a shape belongs in the key (values computed on the host per
   * call must reach the device through an upload before, never as op arguments). The backend
   * runs a key's first call eagerly (it may still cache weights and grow scratch), captures the
   * second and replays from then on; it may also run any call eagerly (graphs off, profiling, a
   * capture that failed), with results identical to a replay: same kernels, same order. A graph
   * keeps pointing at the buffers it was captured with: the caller never frees or moves them
   * while the backend lives. */
  int (*run_graph) (Sam2Backend *b, guint64 key, int (*body) (gpointer data), gpointer data);

  /* Optional (device backends; NULL on the CPU, where the observers read x on the host):
   * calibration statistics of one linear layer's input kept in backend memory, so the float
   * model can be calibrated without copying every activation to the host
   * (core/quant/observers.c makes the random choices and owns the host copies).
   * stats_new: for K input channels, the Hessian sum H (K, K) in double at 0 and the per-channel
   * min / max at +inf / -inf; NULL on failure (status_detail says why).
   * stats_observe: x (M, K) backend memory: min / max over all M rows; H += sum of x_r x_r^T
   * over the rows r listed in hessian_rows (host memory, n_hessian of them; NULL: all M rows);
   * rows sample_rows (host, n_samples) copied into host `samples` (n_samples, K) before it
   * returns. stats_read: H, min and max into host memory (after everything enqueued). */
  gpointer (*stats_new) (Sam2Backend *b, int k);
  void (*stats_free) (Sam2Backend *b, gpointer stats);
  int (*stats_observe) (Sam2Backend *b, gpointer stats, const float *x, int M,
                        const int *hessian_rows, int n_hessian, const int *sample_rows,
                        int n_samples, float *samples);
  int (*stats_read) (Sam2Backend *b, gpointer stats, double *hessian, float *min, float *max);
  /* Optional, for calibration's quantization step (NULL: GPTQ runs on the CPU): GPTQ's solve on
   * the device (core/quant/weights.h's Sam2GptqSolver), W (n, k) and H (k, k) in host memory,
   * row-major doubles in quantization order; writes w->codes (host). 0, 1 when H stayed
   * singular at every damping, 2 when the device cannot solve here (no solver library: nothing
   * written, the caller solves on the CPU), or a negative SAM2_STATUS_*. */
  int (*gptq_solve) (Sam2Backend *b, Sam2W4 *w, const double *W, const double *H,
                     const int *perm, int block, double d0, int tries);
} Sam2BackendOps;

struct _Sam2Backend {
  const Sam2BackendOps *ops;
};

/* The CPU backend in FP32. */
Sam2Backend *sam2_backend_cpu_new (void);
/* The CPU backend in `precision`: FP32, or BF16 where sam2_backend_cpu_supports says the CPU can
 * (the float layers' GEMMs and attention's two products with bfloat16 operands, FP32
 * accumulation; the rest FP32, as the CUDA backend's BF16). NULL with its error otherwise. */
Sam2Backend *sam2_backend_cpu_new_full (Sam2Precision precision, GError **error);
/* Whether this CPU runs the backend in `precision` (AUTO: FP32): FP32 always; BF16 where the CPU
 * has AVX-512 BF16, oneDNN a bf16 matmul for it, and the environment variable SAM2_CPU_BF16 is
 * not "0" (which makes any CPU answer no, for tests and users). FALSE with the reason otherwise
 * (callers add what to use instead, in their own option names). */
gboolean sam2_backend_cpu_supports (Sam2Precision precision, GError **error);
/* NULL-safe. */
void sam2_backend_free (Sam2Backend *b);

G_END_DECLS

#endif
