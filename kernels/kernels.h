/* kernels.h: the CUDA kernels of the CUDA backend, as C-callable launchers.
 *
 * Every launcher enqueues its work on `stream` and returns at once with 0 or a negative status
 * (SAM2_CUDA_* below, the values of backend.h's SAM2_STATUS_*): a bad argument is
 * SAM2_CUDA_UNSUPPORTED, a launch the runtime refuses SAM2_CUDA_DEVICE. Errors of the kernels
 * themselves surface at the next synchronisation (the backend's download). No launcher allocates
 * device memory: those that need scratch take a `workspace` of the size their *_workspace_bytes
 * function gives, allocated once by the caller. Pointers are device memory unless a comment says
 * host; tensors are float32, row-major, channels-last, as in core/backend.h.
 *
 * This header is plain C (core/backend-cuda.c includes it) and needs only the CUDA runtime and
 * cuBLAS headers. */
#ifndef SAM2_KERNELS_H
#define SAM2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: the values of SAM2_STATUS_* (core/backend.h checks that they agree). */
enum {
  SAM2_CUDA_OK = 0,
  SAM2_CUDA_OUT_OF_MEMORY = -1,
  SAM2_CUDA_DEVICE = -2,
  SAM2_CUDA_UNSUPPORTED = -3,
};

/* Activations: the values of Sam2Act (core/config.h). */
enum {
  SAM2_CUDA_ACT_NONE,
  SAM2_CUDA_ACT_GELU,         /* exact, erf */
  SAM2_CUDA_ACT_GELU_TANH,
  SAM2_CUDA_ACT_RELU,
  SAM2_CUDA_ACT_SILU,
  SAM2_CUDA_ACT_SIGMOID,
};

/* Activation quantization modes: the values of Sam2ActQuantMode (core/quant/formats.h). */
enum {
  SAM2_CUDA_AQ_NONE,
  SAM2_CUDA_AQ_TOKEN_SYM,
  SAM2_CUDA_AQ_TOKEN_ASYM,
  SAM2_CUDA_AQ_TENSOR_SYM,
  SAM2_CUDA_AQ_TENSOR_ASYM,
};

/* The 16-bit float format of the half-precision paths (FP16 and BF16 precision): their operands
 * are bit patterns in uint16_t arrays, rounded from float to nearest even (overflow to infinity,
 * NaN kept, as the hardware conversions do). */
typedef enum {
  SAM2_CUDA_F16,              /* IEEE binary16: 11-bit significand, |x| up to 65504 */
  SAM2_CUDA_BF16,             /* bfloat16: 8-bit significand, float's exponent range */
} Sam2CudaHalf;

/* ---- device (common.cu) ---------------------------------------------------------------------- */

/* Number of CUDA devices; 0 (and SAM2_CUDA_OK) when there is no driver or no device, which is
 * what the runtime reports as cudaErrorInsufficientDriver (35) or cudaErrorNoDevice on a machine
 * without a GPU. Clears the runtime's last error. */
int sam2_cuda_device_count (int *count);

/* Per-process setup of the current device: raises the dynamic shared-memory limit of the kernels
 * that use more than 48 KiB. Idempotent; call before the first launch. */
int sam2_cuda_init (void);

/* ---- element-wise (elementwise.cu) ----------------------------------------------------------- */

/* y (M, N) += bias (N) when bias is not NULL, then act, in place. */
int sam2_cuda_bias_act (float *y, int M, int N, const float *bias, int act, cudaStream_t stream);
/* y (M, N) = act(y + bias (N)) + residual (M, N), in place: the epilogue of a float linear after
 * its GEMM. bias and residual may each be NULL; residual may be y itself (each element is read
 * before it is written) but must not overlap it otherwise. (A residual that is y, as in the
 * backend's linear, is usually better folded into the GEMM as beta = 1.) */
int sam2_cuda_bias_act_residual (float *y, int M, int N, const float *bias, int act,
                                 const float *residual, cudaStream_t stream);
/* x (n) = act(x) in place. */
int sam2_cuda_activation (int act, float *x, size_t n, cudaStream_t stream);
/* y (n) = a + c; y may alias either. */
int sam2_cuda_add (float *y, const float *a, const float *c, size_t n, cudaStream_t stream);
/* y (M, C) = x (M, C) + row (C); y may be x. */
int sam2_cuda_add_row (float *y, const float *x, const float *row, int M, int C,
                       cudaStream_t stream);
/* Row-wise LayerNorm over C channels (biased variance; statistics in double, as the CPU
 * backend); y may be x. */
int sam2_cuda_layer_norm (const float *x, int M, int C, const float *weight, const float *bias,
                          float eps, float *y, cudaStream_t stream);
/* The same LayerNorm with its float output rounded to `type` (bit patterns): the half-precision
 * paths' conversion of sam2_cuda_layer_norm's output, without the float row in memory. */
int sam2_cuda_layer_norm_16 (const float *x, int M, int C, const float *weight, const float *bias,
                             float eps, Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream);
/* In-place softmax of each of M rows of N (row sum in double, as the CPU backend). */
int sam2_cuda_softmax_rows (float *x, int M, int N, cudaStream_t stream);
/* A window partition folded into the LayerNorm before it (a Hiera block's first half): x holds
 * n_img maps of (h, w) rows, and the rows written (or quantized) are the
 * n_img * ceil(h / ws) * ceil(w / ws) * ws * ws of sam2_cuda_window_partition of each image's
 * normalised map in turn, a row of zeros (the partition's padding, after the LayerNorm) where a
 * window reaches past the map. */
typedef struct {
  int n_img, h, w, ws;
} Sam2CudaRowWindows;

/* The rows such a partition gives, or -1 for a bad one (a size below 1). */
long long sam2_cuda_row_windows_rows (const Sam2CudaRowWindows *windows);

/* sam2_cuda_layer_norm_16's output partitioned into windows in the same pass: the 16-bit rows
 * (sam2_cuda_row_windows_rows (windows), C) that sam2_cuda_window_partition of each image's
 * normalised map then sam2_cuda_f32_to_16 give, bit for bit; x holds the windows->n_img
 * (h, w, C) maps. */
int sam2_cuda_layer_norm_windows_16 (const float *x, const Sam2CudaRowWindows *windows, int C,
                                     const float *weight, const float *bias, float eps,
                                     Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream);

/* sam2_cuda_window_partition of each of the windows->n_img (h, w, C) maps in x, rounded to
 * `type`: the rows (sam2_cuda_row_windows_rows (windows), C) of the partition then
 * sam2_cuda_f32_to_16, bit for bit (padding rows zeros), in one pass (elementwise.cu). */
int sam2_cuda_window_partition_16 (const float *x, const Sam2CudaRowWindows *windows, int C,
                                   Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream);

/* y (M, K) = x (M, K) * scale (K) per column (the smoothing of a quantized layer's input). */
int sam2_cuda_scale_columns (const float *x, int M, int K, const float *scale, float *y,
                             cudaStream_t stream);

/* ---- data movement (window.cu) --------------------------------------------------------------- */

/* The ops of the same names in core/backend.h, with the same layouts. */
int sam2_cuda_window_partition (const float *x, int H, int W, int C, int ws, float *windows,
                                cudaStream_t stream);
int sam2_cuda_window_unpartition (const float *windows, int n_win_h, int n_win_w, int ws, int C,
                                  int H, int W, const float *residual, float *x,
                                  cudaStream_t stream);
int sam2_cuda_max_pool (const float *x, int n_img, int H, int W, int C, int ld, int s, float *y,
                        cudaStream_t stream);
/* The same on 16-bit rows of `type` (x, y bit patterns; ld in halves): for x the rounding of
 * sam2_cuda_max_pool's input, the rounding of its output (rounding keeps the order), bit for bit
 * except where a window's values all round to zero with both signs (then either zero). */
int sam2_cuda_max_pool_16 (const uint16_t *x, int n_img, int H, int W, int C, int ld, int s,
                           Sam2CudaHalf type, uint16_t *y, cudaStream_t stream);
int sam2_cuda_im2col_planar (const float *x, int C, int H, int W, int kh, int kw, int stride,
                             int pad, float *cols, cudaStream_t stream);
int sam2_cuda_im2col (const float *x, int H, int W, int C, int kh, int kw, int stride, int pad,
                      float *cols, cudaStream_t stream);
int sam2_cuda_add_upsample2x (float *y, const float *x, int H, int W, int C, cudaStream_t stream);
int sam2_cuda_depth_to_space2x (const float *x, int H, int W, int C, const float *addend,
                                float *y, cudaStream_t stream);
/* sam2_cuda_depth_to_space2x of x rows x_ld >= 4 C floats apart, then (weight and bias (C) not
 * NULL) sam2_cuda_layer_norm over C in place, then sam2_cuda_activation (act): the same floats
 * in one pass (the mask decoder's upscaling; the LayerNorm variant is a warp per output
 * pixel). */
int sam2_cuda_depth_to_space2x_norm_act (const float *x, int x_ld, int H, int W, int C,
                                         const float *addend, const float *weight,
                                         const float *bias, float eps, int act, float *y,
                                         cudaStream_t stream);
/* The same writing y16 (2H, 2W, C), the results rounded to `type` as sam2_cuda_f32_to_16 rounds
 * sam2_cuda_depth_to_space2x_norm_act's floats: the 16-bit operand of the layer that reads them
 * (the upscaling's second transposed convolution), the same bits, the floats never written.
 * With the LayerNorm, `sums` (2H, 2W, C) is its scratch (the floats before the norm are left
 * there); without, a warp per pixel too, and `sums` is not used. */
int sam2_cuda_depth_to_space2x_norm_act_16 (const float *x, int x_ld, int H, int W, int C,
                                            const float *addend, const float *weight,
                                            const float *bias, float eps, int act, float *sums,
                                            Sam2CudaHalf type, uint16_t *y16,
                                            cudaStream_t stream);
/* out (M, 4 H W) = A (M, C) y^T for y (2H, 2W, C) = sam2_cuda_depth_to_space2x_norm_act (x, x_ld,
 * H, W, C, addend, no LayerNorm, act), y never written: the mask decoder's last upscaling step
 * and the hypernetworks' product (masks = hyper up2^T) in one pass. y's floats are the scatter
 * kernel's; each product is a float FMA chain in c order, so it differs from a GEMM of y (another
 * order) by rounding only. M at most SAM2_CUDA_D2S_MATMUL_MAX_M, C at most
 * SAM2_CUDA_D2S_MATMUL_MAX_C. */
#define SAM2_CUDA_D2S_MATMUL_MAX_M 8
#define SAM2_CUDA_D2S_MATMUL_MAX_C 256
int sam2_cuda_depth_to_space2x_matmul (const float *x, int x_ld, int H, int W, int C,
                                       const float *addend, int act, const float *A, int M,
                                       float *out, cudaStream_t stream);

/* ---- frame preprocessing (preprocess.cu) ------------------------------------------------------ */

/* core/image.c's resampler tables and frame layout, the tables in device memory. */
typedef struct {
  int in_w, in_h, out_w, out_h;
  size_t stride;               /* bytes from one frame row to the next */
  int bpp;                     /* 3 or 4 bytes per pixel */
  int red;                     /* byte of red in a pixel: 0 (RGB*) or 2 (BGR*) */
  int h_taps, h_stride;        /* horizontal: taps of every output pixel (the host pads the
                                  table), weights stored per output pixel */
  int h_precision;             /* fraction bits */
  const int32_t *h_start;      /* (out_w) first input pixel */
  const int16_t *h_weights;    /* (out_w, h_stride) */
  int v_taps, v_precision;     /* vertical: taps stored per output row, fraction bits */
  const int32_t *v_start, *v_count; /* (out_h) first input row, rows used */
  const int16_t *v_weights;    /* (out_h, v_taps) */
  const float *lut;            /* (3, 256) the normalised value of each byte per channel */
} Sam2CudaPreprocessArgs;

/* sam2_preprocess on the device, bit for bit: frame (in_h rows of `stride` bytes) resized and
 * normalised into out (3, out_h, out_w) float planes. tmp holds in_h * out_w * 3 bytes (unused,
 * may be NULL, when the frame is packed RGB of the output width). The tables of an axis whose
 * size does not change are not read. */
int sam2_cuda_preprocess (const Sam2CudaPreprocessArgs *args, const uint8_t *frame, uint8_t *tmp,
                          float *out, cudaStream_t stream);

/* ---- attention (attention.cu) ---------------------------------------------------------------- */

/* Sam2AttentionArgs of core/backend.h, field for field, and a 16-bit output. */
typedef struct {
  int batch;
  int heads;
  int head_dim;                /* 1 .. SAM2_CUDA_ATTENTION_MAX_HEAD_DIM */
  int len_q;
  int len_k;                   /* >= 1 */
  float scale;
  const float *q; int q_ld; size_t q_batch_stride;
  const float *k; int k_ld; size_t k_batch_stride;
  const float *v; int v_ld; size_t v_batch_stride;
  float *out; int out_ld; size_t out_batch_stride;
  /* When not NULL, the output goes here instead of `out` (which may then be NULL), each value
   * rounded to out16_type as sam2_cuda_f32_to_16 rounds it, with out_ld and out_batch_stride
   * counted in halves: the 16-bit operand of the linear layer that reads the attention, without
   * the float rows and their conversion in between. The same bits as `out` converted. */
  uint16_t *out16; Sam2CudaHalf out16_type;
  /* When q16 is not NULL, q, k and v are read from q16, k16 and v16 instead (which the float
   * pointers may then be NULL), in the launch's 16-bit format with the lds and batch strides
   * counted in halves: sam2_cuda_attention_16 only, where sam2_cuda_attention_16_reads_16 says
   * so. The operands the kernels multiply are those of the floats that round to them, so the
   * same bits. */
  const uint16_t *q16, *k16, *v16;
} Sam2CudaAttentionArgs;

/* SAM2's head dims are 96 (tiny, small), 56 (base+), 72 (large), 32 and 16 (mask decoder). */
#define SAM2_CUDA_ATTENTION_MAX_HEAD_DIM 128

/* out = softmax(scale q k^T) v per sequence and head, flash-style (no score matrix in memory), in
 * FP32 (FMA, expf), written as floats or (out16) rounded to 16 bits. Any len_q >= 0, len_k >= 1,
 * strides and ld (each ld >= heads * head_dim);
 * float4 loads when head_dim, the ld, the batch strides and the pointers are multiples of 4
 * floats. head_dim above SAM2_CUDA_ATTENTION_MAX_HEAD_DIM is SAM2_CUDA_UNSUPPORTED. The kernels'
 * shared-memory limits are raised on first use per device (or by sam2_cuda_init). */
int sam2_cuda_attention (const Sam2CudaAttentionArgs *args, cudaStream_t stream);

/* The same on the tensor cores (attention-16.cuh): q, k, v and the softmax probabilities rounded
 * to `type` as mma.sync operands (for F16, |q|, |k|, |v| must stay below 65504), FP32
 * accumulation, softmax and output; relative error ~1e-3 (F16) or ~1e-2 (BF16) against the FP32
 * kernel. Same arguments and limits, out16 in `type` only; needs no shared-memory setup. For the
 * half-precision paths. */
int sam2_cuda_attention_16 (const Sam2CudaAttentionArgs *args, Sam2CudaHalf type,
                            cudaStream_t stream);
/* 1 when sam2_cuda_attention_16 takes args' 16-bit inputs (q16, k16, v16): the current kernels
 * (version 2), not a few-queries shape (those run the FP32 kernel), head_dim a multiple of 4,
 * k16 and v16 rows 8-byte aligned (pointers, lds and batch strides) and q16 rows 4-byte aligned;
 * else 0. */
int sam2_cuda_attention_16_reads_16 (const Sam2CudaAttentionArgs *args);
/* The same question before the buffers exist (to size them): args' pointers are not read; q16,
 * k16 and v16 would lie q_at, k_at and v_at halves past the starts of 16-byte aligned buffers. */
int sam2_cuda_attention_16_reads_16_at (const Sam2CudaAttentionArgs *args, size_t q_at,
                                        size_t k_at, size_t v_at);

/* Which half-precision attention kernels run: 2, the current ones, unless the environment
 * variable SAM2_ATTENTION_KERNEL is "v1" (read once, at the first call), which selects the first
 * version, kept for comparison (attention-16.cuh says how they differ). The setter overrides the
 * choice (1 or 2; any other value goes back to the environment's) for tests and benchmarks that
 * run both; not meant to be called while attention is being launched from another thread. */
int sam2_cuda_attention_16_version (void);
void sam2_cuda_attention_16_set_version (int version);

/* ---- W4A8 (layernorm-quant.cu, gemm-w4a8.cu) ------------------------------------------------- */

/* Which W4A8 kernels run (activation quantization and GEMM): 2, the current ones, unless the
 * environment variable SAM2_W4A8_KERNEL (read once, at the first W4A8 call) is "v1", the first
 * versions, kept for comparison and as the fallback, or "v3": v2's quantization and v2's GEMM
 * arithmetic (the same bits) with deeper tiles and persistent blocks (gemm-w4a8.cu says why),
 * not yet timed on a GPU, so not the default. The setter overrides the choice (1, 2 or 3; any
 * other value goes back to the environment's) for tests and benchmarks that run them all; it is
 * not meant to be called while W4A8 work is being launched from another thread. */
int sam2_cuda_w4a8_kernel_version (void);
void sam2_cuda_w4a8_set_kernel_version (int version);

/* The kernel-side geometry of a W4A8 layer (N, K, group size), from sam2_cuda_w4a8_geometry.
 *
 * Activation rows in the kernel layout ("kernel rows"): int8 codes, each weight group starting
 * at a multiple of group_pad = group_size rounded up to 32, the columns past a group's end 0,
 * the row padded with 0 to `row_bytes`, a multiple of 64 (the GEMM's K tile). Symmetric rows
 * hold the codes a (-127..127); asymmetric rows hold u - 128 for the UINT8 codes u of formats.h,
 * with the row's zero point kept as Za = za - 128 (so a - Za = u - za, as the CPU kernel does).
 * K steps of 32 columns never straddle two groups. This is the CPU kernel's row layout
 * (core/quant/linear-cpu.c, `kl` = steps * 32) padded further to the 64-column tile. */
typedef struct {
  int n, k;                    /* output, input features */
  int group_size, n_groups;
  int group_pad;               /* group_size rounded up to 32 */
  int steps;                   /* 32-column steps holding data: the last group's end */
  int row_bytes;               /* kernel row length, steps * 32 rounded up to 64 */
  int n_pad;                   /* n rounded up to the GEMM's N tile (64) */
} Sam2CudaW4A8Geometry;

void sam2_cuda_w4a8_geometry (int n, int k, int group_size, Sam2CudaW4A8Geometry *geo);

/* The weights repacked for the GEMM, as one blob (host memory here, uploaded as it is):
 *   w       (n_pad / 8, row_bytes / 32, 32) uint32: per 8 output channels and 32-column step,
 *           the 32 words the 32 lanes of a warp hold as the B operand of one
 *           mma.m16n8k32: lane (g = lane / 4, t = lane % 4) gets channel n0 + g, columns
 *           4t .. 4t + 3 in nibbles 0, 2, 4, 6 and columns 16 + 4t .. 16 + 4t + 3 in nibbles
 *           1, 3, 5, 7, so (w & 0x0f0f0f0f) and ((w >> 4) & 0x0f0f0f0f) are the two operand
 *           registers; codes past a group's end, past K and past N are 0.
 *   wzero   (n_groups, n_pad) int32: z, the group zero point (0 past N)
 *   wsum    (n_groups, n_pad) int32: sum of (q - z) over the group's columns
 *   wscale  (n_groups, n_pad) float: the group scale (0 past N)
 * Offsets are in bytes from the blob's start, each a multiple of 256; the blob must start at a
 * 16-byte aligned device address (cudaMalloc's 256 will do), the kernel rows' codes too. */
typedef struct {
  size_t w, wzero, wsum, wscale;
  size_t total;
} Sam2CudaW4A8Blob;

void sam2_cuda_w4a8_blob_layout (const Sam2CudaW4A8Geometry *geo, Sam2CudaW4A8Blob *blob);

/* Fills `out` (blob.total bytes, host) from the formats.h layout (host): codes (n, (k + 1) / 2)
 * packed two per byte, scales and zeros (n, n_groups). */
void sam2_cuda_w4a8_pack_host (const Sam2CudaW4A8Geometry *geo, const uint8_t *codes,
                               const float *scales, const uint8_t *zeros, void *out);

/* A W4A8 layer on the device: the prepared blob's arrays and the layer's float parts. */
typedef struct {
  Sam2CudaW4A8Geometry geo;
  int act_mode;                /* SAM2_CUDA_AQ_* other than NONE */
  float act_scale, act_zero;   /* static modes */
  const uint32_t *w;
  const int32_t *wzero, *wsum;
  const float *wscale;
  const float *bias;           /* (n) or NULL */
  const float *smooth_inv;     /* (k) or NULL */
  int rank;                    /* low-rank branch, 0: none */
  const float *lora_down;      /* (rank, k) */
  const float *lora_up;        /* (n, rank) */
} Sam2CudaW4A8Layer;

/* Quantized activation rows (kernel rows) and their per-row terms. */
typedef struct {
  int8_t *codes;               /* (M, row_bytes) */
  float *scales;               /* (M) sa */
  int32_t *zeros;              /* (M) Za */
  int32_t *sums;               /* (M, n_groups) sum of each group's codes */
  float *t;                    /* (M, rank) (x smooth_inv) L_down^T, or NULL when rank is 0 */
} Sam2CudaActRows;

/* The low-rank down-projection is computed inside the quantization pass up to this rank; above
 * it sam2_cuda_w4a8_linear uses cuBLAS. */
#define SAM2_CUDA_QUANT_MAX_FUSED_RANK 128

/* Quantizes x (M, K = layer->geo.k) into kernel rows: smoothing, the row's scale and zero point
 * per layer->act_mode exactly as sam2_quantize_activations (codes, scales and zero points bit
 * for bit), group sums and, when layer->rank is 1 .. SAM2_CUDA_QUANT_MAX_FUSED_RANK and out->t
 * is not NULL, the low-rank down-projection t (float32 sums, not bit-exact with the CPU's). */
int sam2_cuda_quantize_rows (const Sam2CudaW4A8Layer *layer, const float *x, int M,
                             const Sam2CudaActRows *out, cudaStream_t stream);

/* A LayerNorm over a W4A8 layer's K input columns: y = (x - mean) rstd weight + bias, as
 * sam2_cuda_layer_norm computes it (weight, bias (K) on the device). */
typedef struct {
  const float *weight, *bias;
  float eps;
} Sam2CudaRowNorm;

/* sam2_cuda_quantize_rows of sam2_cuda_layer_norm's output (x (M, K) normalised; with `windows`
 * not NULL, of its window partition (Sam2CudaRowWindows, above; M then from
 * sam2_cuda_row_windows_rows)), without that output in memory: one pass reads x and writes the kernel rows. Codes, scales, zero points,
 * group sums and t are the bits the kernels give (for t: when the LayerNorm's output would be
 * 16-byte aligned, as cudaMalloc'd rows of a K that is a multiple of 4 are; t's summation order
 * follows the row's alignment). Kernel version 2 only, rank 0 .. SAM2_CUDA_QUANT_MAX_FUSED_RANK,
 * K up to ~1400 (the block's normalised rows in 48 KiB of shared memory): otherwise
 * SAM2_CUDA_UNSUPPORTED before anything is launched, and the caller runs the kernels apart. */
int sam2_cuda_layer_norm_quantize_rows (const Sam2CudaW4A8Layer *layer,
                                        const Sam2CudaRowNorm *norm,
                                        const Sam2CudaRowWindows *windows, const float *x, int M,
                                        const Sam2CudaActRows *out, cudaStream_t stream);
/* 1 when sam2_cuda_layer_norm_quantize_rows takes this layer (kernel version, rank, K), else 0. */
int sam2_cuda_layer_norm_quantize_rows_supported (const Sam2CudaW4A8Layer *layer);

/* y (M, N) = act(x_q W_q^T + bias + t L_up^T) + residual on quantized rows `a` (a->t read only
 * when layer->rank > 0); residual may be y. The per-group float arithmetic is the CPU kernel's
 * (sam2_quant_linear_forward), operation for operation. */
int sam2_cuda_w4a8_gemm (const Sam2CudaW4A8Layer *layer, const Sam2CudaActRows *a, int M,
                         float *y, int act, const float *residual, cudaStream_t stream);

/* sam2_cuda_w4a8_gemm (no residual) that also quantizes its output for the W4A8 layer `next`
 * that reads it (next->geo.k = layer->geo.n: fc2 after fc1): y is written as before, and
 * next_rows get sam2_cuda_quantize_rows (next, y, M) to the bit (the same device code), the
 * separate pass gone. How: the last of an M tile's N blocks to finish (a per-tile counter,
 * atomicInc after a fence) quantizes the tile's rows, which the others just wrote and the L2
 * still holds. `counters` (sam2_cuda_w4a8_quantize_next_counters (M) of them, on the device)
 * must be zero before the first call; each call leaves them zero. Kernel versions 2 and 3,
 * next->rank 0 .. SAM2_CUDA_QUANT_MAX_FUSED_RANK, next's K and group size multiples of 4 with
 * at most 64 groups, y, next's smoothing and L_down 16-byte aligned, next_rows->codes too:
 * otherwise SAM2_CUDA_UNSUPPORTED, nothing launched (sam2_cuda_w4a8_quantize_next_supported
 * says which layer pairs qualify), and the caller runs the quantization apart. The tile's
 * quantization is one block's work (16 rows per warp), so with few M tiles in flight it may
 * end later than the separate pass would: the backend takes this path only when asked
 * (SAM2_CUDA_QUANT_NEXT=1) until a GPU has timed it (sam2-bench-cuda-gemm's last table). */
int sam2_cuda_w4a8_quantize_next_supported (const Sam2CudaW4A8Layer *layer,
                                            const Sam2CudaW4A8Layer *next);
size_t sam2_cuda_w4a8_quantize_next_counters (int M);
int sam2_cuda_w4a8_gemm_quantize_next (const Sam2CudaW4A8Layer *layer, const Sam2CudaActRows *a,
                                       int M, float *y, int act, const Sam2CudaW4A8Layer *next,
                                       const Sam2CudaActRows *next_rows, unsigned int *counters,
                                       cudaStream_t stream);

/* The whole layer from float x (M, K): quantize, then the GEMM. The workspace holds the kernel
 * rows (and, for a rank above SAM2_CUDA_QUANT_MAX_FUSED_RANK, the smoothed rows for a cuBLAS
 * down-projection through `cublas`, which may be NULL otherwise; the call binds it to `stream`).
 * Alignment: 256 bytes (what cudaMalloc gives). */
size_t sam2_cuda_w4a8_linear_workspace_bytes (const Sam2CudaW4A8Layer *layer, int M);
/* Where, in such a workspace (256-byte aligned), the layer's M kernel rows lie (rows->t NULL
 * unless the layer has a rank): for a caller that fills them another way
 * (sam2_cuda_layer_norm_quantize_rows, sam2_cuda_w4a8_gemm_quantize_next) and then runs
 * sam2_cuda_w4a8_gemm. */
void sam2_cuda_w4a8_workspace_rows (const Sam2CudaW4A8Layer *layer, int M, void *workspace,
                                    Sam2CudaActRows *rows);
int sam2_cuda_w4a8_linear (const Sam2CudaW4A8Layer *layer, const float *x, int M, float *y,
                           int act, const float *residual, cublasHandle_t cublas,
                           cudaStream_t stream, void *workspace);
/* The layer on LN (x) (or on the window partition of LN (x)): sam2_cuda_w4a8_linear of
 * sam2_cuda_layer_norm's output (partitioned), the same bits, with the LayerNorm fused into the
 * quantization (sam2_cuda_layer_norm_quantize_rows; the same workspace). SAM2_CUDA_UNSUPPORTED,
 * with nothing launched, where that kernel does not apply
 * (sam2_cuda_layer_norm_quantize_rows_supported). */
int sam2_cuda_w4a8_norm_linear (const Sam2CudaW4A8Layer *layer, const Sam2CudaRowNorm *norm,
                                const Sam2CudaRowWindows *windows, const float *x, int M,
                                float *y, int act, const float *residual, cudaStream_t stream,
                                void *workspace);

/* ---- GPTQ (gptq.cu, gptq-solve.cu): calibration's weight quantization on the device ---------- */

/* One layer's GPTQ on the device, the steps of core/quant/weights.c's (sam2_w4_quantize_gptq):
 * positions i are columns in quantization order (act order), perm[i] the weight column. */
typedef struct {
  int n, k;                    /* output rows, input columns */
  int block;                   /* columns per lazy-update block */
  int group_size, n_groups;
  double *W;                   /* (n, k) column-major (row r, position i at i * n + r): the
                                  weights, updated as GPTQ goes */
  double *U;                   /* (k, k) row-major: the factor, made by the solve */
  double *err;                 /* (n, block) column-major: a block's scaled errors */
  const int *perm;             /* (k) */
  const float *scales;         /* (n, n_groups) the chosen scales (host: sam2_w4_choose_params) */
  const uint8_t *zeros;        /* (n, n_groups) and zero points */
  uint8_t *codes;              /* (k, n): the code of row r, column c at c * n + r */
} Sam2CudaGptq;

/* The element-wise steps (gptq.cu; each also compiles as host C for tests): U = H0 + d I; the
 * row-major lower triangle from the upper one; the factor moved from the row-major lower
 * triangle to the upper one, zeros below; the columns of positions i1 .. i2 - 1 (at most
 * g->block of them), one thread per row. */
int sam2_cuda_gptq_damped_copy (const double *H0, int k, double d, double *U,
                                cudaStream_t stream);
int sam2_cuda_gptq_mirror (int k, double *U, cudaStream_t stream);
int sam2_cuda_gptq_upper_factor (int k, double *U, cudaStream_t stream);
int sam2_cuda_gptq_columns (const Sam2CudaGptq *g, int i1, int i2, cudaStream_t stream);

/* A cuSOLVER handle on a stream with its factorization workspace (which it grows to the largest
 * k seen: the one allocation of this section, made once per size during calibration). The
 * library is loaded then (libcusolver.so of the headers' major version), not linked: NULL when
 * it is not there or not usable. */
typedef struct Sam2CudaSolver Sam2CudaSolver;
Sam2CudaSolver *sam2_cuda_solver_new (cudaStream_t stream);
/* 1 when the cuSOLVER library loads (checked once; no handle, no device memory), else 0. */
int sam2_cuda_solver_available (void);
void sam2_cuda_solver_free (Sam2CudaSolver *solver);

/* The whole solve: for d = d0, 10 d0, ... (`tries` values), U = the upper Cholesky factor of
 * (H0 + d I)^-1 (cuSOLVER's dpotrf, dpotri, dpotrf on LAPACK's column-major view of the
 * row-major symmetric matrix, as weights.c calls LAPACK), then the columns block by block, each
 * block's error carried to the later columns by cublasDgemm (`cublas` already bound to `stream`).
 * H0 (k, k) row-major, bit-symmetric. SAM2_CUDA_OK with g->codes written, 1 when every damping
 * left the matrix singular, or a negative status. Synchronises with the stream to read
 * cuSOLVER's status after each factorization. */
int sam2_cuda_gptq_solve (Sam2CudaSolver *solver, cublasHandle_t cublas, const Sam2CudaGptq *g,
                          const double *H0, double d0, int tries, cudaStream_t stream);

/* ---- float GEMMs (gemm-float.cu) ------------------------------------------------------------- */

/* C (M, N) = A (M, K) B^T + beta C with B (N, K), row-major, through cublasSgemm in FP32 (the
 * handle's math mode must not allow TF32: the backend sets CUBLAS_DEFAULT_MATH). The handle must
 * already be bound to the stream the caller wants. */
int sam2_cuda_gemm_f32_nt (cublasHandle_t h, const float *A, const float *B, int M, int N, int K,
                           float beta, float *C);

/* y (n) = x rounded to `type` (Sam2CudaHalf), as bit patterns: the operands of the
 * half-precision paths (and of the BF16 baseline). */
int sam2_cuda_f32_to_16 (const float *x, size_t n, Sam2CudaHalf type, uint16_t *y,
                         cudaStream_t stream);
/* y16 (n) = act(x) rounded to `type`: an activation and the half-precision paths' conversion of
 * its output in one pass (gemm-float.cu, the conversions' kernel). */
int sam2_cuda_activation_to_16 (int act, const float *x, size_t n, Sam2CudaHalf type,
                                uint16_t *y16, cudaStream_t stream);
/* y16 (n) = (x + addend) rounded to `type`: sam2_cuda_add's sums and their conversion in one
 * pass, the sums never written (the decoder's image keys plus their positional encoding). */
int sam2_cuda_sum_to_16 (const float *x, const float *addend, size_t n, Sam2CudaHalf type,
                         uint16_t *y16, cudaStream_t stream);
/* The 16-bit operands of two layers that read the same rows (elementwise.cu; the mask decoder's
 * keys, whose projections read keys + pe and keys): x (M, C) normalised in place by `norm` (NULL:
 * left as it is; sam2_cuda_layer_norm's floats, layernorm-row.cuh), then sum16 (M, C) = (x +
 * addend) rounded to `type` as sam2_cuda_sum_to_16 rounds it (skipped when sum16 is NULL; addend
 * (M, C) is then not read) and plain16 (M, C) = x rounded as sam2_cuda_f32_to_16 (skipped when
 * NULL): one pass over the rows, the same bits as those kernels one after another. */
int sam2_cuda_norm_operands_16 (float *x, int M, int C, const Sam2CudaRowNorm *norm,
                                const float *addend, Sam2CudaHalf type, uint16_t *sum16,
                                uint16_t *plain16, cudaStream_t stream);

/* The half-precision paths of float layers: C (M, N) = A (M, K) B^T + beta C with 16-bit
 * operands of `type` (A (M, K), B (N, K), from sam2_cuda_f32_to_16) on the tensor cores, FP32
 * accumulation and an FP32 C, through cublasGemmEx. The handle must already be bound to the
 * caller's stream. */
int sam2_cuda_gemm_16_nt (cublasHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                          const uint16_t *B16, int M, int N, int K, float beta, float *C_f32);

/* The half-precision paths' linear for a few rows (linear-small-f16.cu): y (M, N) = act(x16
 * (M, K) W^T + bias) + residual with x16 the rows x rounded to `type` and W (N, K) of `type`,
 * products of the rounded operands summed in FP32 (the operands of sam2_cuda_f32_to_16 +
 * sam2_cuda_gemm_16_nt, another order of the additions), bias and residual as
 * sam2_cuda_bias_act_residual (either may be NULL; residual may be y), in one launch: for the
 * mask decoder's token rows, where the cuBLAS path's three launches cost more than the product.
 * M at most SAM2_CUDA_LINEAR_SMALL_M_MAX. With x_addend (M, K) not NULL the rows are x +
 * x_addend, the floats sam2_cuda_add would write, summed as they are read. */
#define SAM2_CUDA_LINEAR_SMALL_M_MAX 16
int sam2_cuda_linear_16_small_m (const float *x, const float *x_addend, int M, int K,
                                 Sam2CudaHalf type, const uint16_t *w16, int N, const float *bias,
                                 int act, const float *residual, float *y, cudaStream_t stream);

#define SAM2_CUDA_NORM_LINEAR_SMALL_M_MAX_BYTES 49152   /* M K floats in shared memory */
/* x (M, K) = norm (x) in place (Sam2CudaRowNorm, the W4A8 section's: the floats
 * sam2_cuda_layer_norm writes), and y (M, N) = act (x16 W^T + bias) of those rows (+ x_addend
 * when not NULL), as sam2_cuda_linear_16_small_m, in one launch (the decoder's token rows: a
 * LayerNorm, then a projection of its output): each block normalises the rows into shared
 * memory, and the last one to have read x (`counter`, on the device, 0 between launches: each
 * launch leaves it so) writes them back. No residual; y must not be x. SAM2_CUDA_UNSUPPORTED
 * beyond SAM2_CUDA_NORM_LINEAR_SMALL_M_MAX_BYTES of rows. */
int sam2_cuda_norm_linear_16_small_m (const Sam2CudaRowNorm *norm, unsigned int *counter, float *x,
                                      const float *x_addend, int M, int K, Sam2CudaHalf type,
                                      const uint16_t *w16, int N, const float *bias, int act,
                                      float *y, cudaStream_t stream);

/* The BF16 baseline: C (M, N) bf16 = A (M, K) B^T, bf16 operands, FP32 accumulation, through
 * cuBLASLt with its heuristic's first algorithm. Descriptors are created per call (host memory
 * only): a benchmark reference, not a hot path. */
#define SAM2_CUDA_LT_WORKSPACE_BYTES ((size_t) 32 << 20)
int sam2_cuda_gemm_bf16_nt (cublasLtHandle_t h, const uint16_t *A, const uint16_t *B, int M,
                            int N, int K, uint16_t *C, cudaStream_t stream, void *workspace);

/* The half-precision paths' GEMM with its bias in cuBLASLt's epilogue: D (M, N) = A (M, K) B^T
 * + bias (N) + beta C (M, N), 16-bit operands of `type` (as sam2_cuda_gemm_16_nt), FP32
 * accumulation, C and D FP32;
 * bias (16-byte aligned) may be NULL, C may be D (a residual accumulated in place) or another
 * buffer of the same shape, and is not read when beta is 0. The bias epilogue saves the read and
 * write of D that a separate bias pass costs. Descriptors and the heuristic query are host work
 * per call (recorded once under a CUDA graph). SAM2_CUDA_UNSUPPORTED when cuBLASLt offers no
 * algorithm for the shape and the pointers' alignment: the caller then uses
 * sam2_cuda_gemm_16_nt and a separate epilogue. */
int sam2_cuda_gemm_16_bias_nt (cublasLtHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                               const uint16_t *B16, int M, int N, int K, const float *bias,
                               float beta, const float *C_f32, float *D_f32, cudaStream_t stream,
                               void *workspace, size_t workspace_bytes);
/* The same with a 16-bit output: D16 (M, N) = A (M, K) B^T + bias (N), the FP32 sum and bias
 * that sam2_cuda_gemm_16_bias_nt writes rounded once to `type`, so the bits of
 * sam2_cuda_f32_to_16 of its output (the bias stays FP32: CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
 * whose default is D's type; test-cuda-ops checks the bits on the device); no C. Half the
 * output's bytes for a reader that takes 16-bit operands anyway (the attention after qkv).
 * SAM2_CUDA_UNSUPPORTED, nothing launched, where cuBLASLt offers no algorithm. */
int sam2_cuda_gemm_16_bias_nt_to16 (cublasLtHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                                    const uint16_t *B16, int M, int N, int K, const float *bias,
                                    uint16_t *D16, cudaStream_t stream, void *workspace,
                                    size_t workspace_bytes);

/* ---- calibration statistics (calib.cu) ------------------------------------------------------- */

/* out (n, k) = rows rows[0..n) of x (., k); `rows` is a device array of row indices. */
int sam2_cuda_gather_rows (const float *x, int k, const int *rows, int n, float *out,
                           cudaStream_t stream);
/* Running per-column range of x (M, k): min (k) = min(min, column), max (k) = max(max, column).
 * Start them at +inf / -inf (sam2_cuda_fill). */
int sam2_cuda_column_range (const float *x, int M, int k, float *min, float *max,
                            cudaStream_t stream);
/* p (n) = value. */
int sam2_cuda_fill (float *p, size_t n, float value, cudaStream_t stream);
/* hessian (k, k) += rows^T rows for rows (n, k): the Gram matrix in FP32 through cublasSgemm
 * into `gram` (k, k) (scratch; the handle bound to `stream`, without TF32), added in double. */
int sam2_cuda_gram_accumulate (cublasHandle_t handle, const float *rows, int n, int k, float *gram,
                               double *hessian, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
