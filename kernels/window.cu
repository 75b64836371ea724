/* window.cu: the data-movement launchers of kernels.h, with the layouts of core/ops-cpu.c.
 *
 * One thread per output element (or per float4 of it when the channel count and the pointers
 * allow), grid-stride. Each kernel is a pure copy (or a max, or one add): the results equal the
 * CPU backend's bit for bit. The exception is the depth-to-space of the mask decoder's
 * upscaling, which can fold in the LayerNorm and activation that follow it (their kernels'
 * floats), and the hypernetworks' product after it (float sums in their own order). The index
 * type is 32-bit when the element count allows, since the divisions that decompose an output
 * index dominate these kernels otherwise. */
#include "common.cuh"
#include "layernorm-row.cuh"

#include <math.h>

template <typename I>
static __device__ __forceinline__ I
grid_first ()
{
  return (I) blockIdx.x * blockDim.x + threadIdx.x;
}

template <typename I>
static __device__ __forceinline__ I
grid_stride ()
{
  return (I) gridDim.x * blockDim.x;
}

/* Element type of the channel dimension: float, or float4 when C % 4 == 0 and the buffers are
 * 16-byte aligned (then C is given in float4 units). */
template <typename T>
static __device__ __forceinline__ T
zero_of ()
{
  return T ();
}
template <>
__device__ __forceinline__ float4
zero_of<float4> ()
{
  return make_float4 (0.0f, 0.0f, 0.0f, 0.0f);
}

static __device__ __forceinline__ float
add_of (float a, float b)
{
  return a + b;
}
static __device__ __forceinline__ float4
add_of (float4 a, float4 b)
{
  return make_float4 (a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

static bool
use_index32 (size_t n)
{
  return n < ((size_t) 1 << 31);
}

/* ---- window_partition / unpartition ----------------------------------------------------------- */

/* x (H, W, C) -> windows (nh * nw, ws * ws, C), zeros where the window is past the map. */
template <typename T, typename I>
static __global__ void
window_partition_kernel (const T *x, int H, int W, int C, int ws, int nw, I total, T *win)
{
  for (I i = grid_first<I> (); i < total; i += grid_stride<I> ()) {
    const I c = i % C;
    const I pos = i / C;                       /* (wi, dy, dx) */
    const I dx = pos % ws, dy = (pos / ws) % ws, wi = pos / ((I) ws * ws);
    const I yy = (wi / nw) * ws + dy, xx = (wi % nw) * ws + dx;
    win[i] = (yy < (I) H && xx < (I) W) ? x[(yy * W + xx) * C + c] : zero_of<T> ();
  }
}

__device__ __forceinline__ float
plus (float a, float b)
{
  return a + b;
}

__device__ __forceinline__ float4
plus (float4 a, float4 b)
{
  return make_float4 (a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

/* windows (nh * nw, ws * ws, C) -> x (H, W, C), dropping the padding; with a residual (which may
 * be x: each element is read and written by one thread) x = residual + the map. */
template <typename T, typename I>
static __global__ void
window_unpartition_kernel (const T *win, int nw, int ws, int C, int W, I total, const T *residual,
                           T *x)
{
  for (I i = grid_first<I> (); i < total; i += grid_stride<I> ()) {
    const I c = i % C;
    const I pos = i / C;                       /* (yy, xx) */
    const I xx = pos % W, yy = pos / W;
    const I wi = (yy / ws) * nw + xx / ws;
    const T v = win[((wi * ws + yy % ws) * ws + xx % ws) * C + c];
    x[i] = residual != nullptr ? plus (residual[i], v) : v;
  }
}

static bool
vec4_ok (int C, const void *a, const void *b, const void *c = NULL)
{
  return C % 4 == 0 && sam2_aligned16 (a) && sam2_aligned16 (b) && (c == NULL || sam2_aligned16 (c));
}

extern "C" int
sam2_cuda_window_partition (const float *x, int H, int W, int C, int ws, float *windows,
                            cudaStream_t stream)
{
  if (x == NULL || windows == NULL || H < 0 || W < 0 || C < 1 || ws < 1)
    return SAM2_CUDA_UNSUPPORTED;
  const int nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
  const size_t total = (size_t) nh * nw * ws * ws * C;
  if (total == 0)
    return SAM2_CUDA_OK;
  const bool v = vec4_ok (C, x, windows);
  const int cv = v ? C / 4 : C;
  const size_t tv = v ? total / 4 : total;
  const unsigned blocks = sam2_ew_blocks (tv);
  if (v && use_index32 (tv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_partition_kernel<float4, uint32_t>) (
        (const float4 *) x, H, W, cv, ws, nw, (uint32_t) tv, (float4 *) windows);
  else if (v)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_partition_kernel<float4, size_t>) (
        (const float4 *) x, H, W, cv, ws, nw, tv, (float4 *) windows);
  else if (use_index32 (tv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_partition_kernel<float, uint32_t>) (
        x, H, W, cv, ws, nw, (uint32_t) tv, windows);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_partition_kernel<float, size_t>) (
        x, H, W, cv, ws, nw, tv, windows);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_window_unpartition (const float *windows, int n_win_h, int n_win_w, int ws, int C,
                              int H, int W, const float *residual, float *x, cudaStream_t stream)
{
  if (x == NULL || windows == NULL || H < 0 || W < 0 || C < 1 || ws < 1
      || (size_t) n_win_h * ws < (size_t) H || (size_t) n_win_w * ws < (size_t) W)
    return SAM2_CUDA_UNSUPPORTED;
  const size_t total = (size_t) H * W * C;
  if (total == 0)
    return SAM2_CUDA_OK;
  const bool v = vec4_ok (C, x, windows, residual);
  const int cv = v ? C / 4 : C;
  const size_t tv = v ? total / 4 : total;
  /* the source index reaches the padded grid's size, not just H * W * C */
  const size_t src = (size_t) n_win_h * n_win_w * ws * ws * cv;
  const unsigned blocks = sam2_ew_blocks (tv);
  const bool i32 = use_index32 (src > tv ? src : tv);
  if (v && i32)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_unpartition_kernel<float4, uint32_t>) (
        (const float4 *) windows, n_win_w, ws, cv, W, (uint32_t) tv, (const float4 *) residual,
        (float4 *) x);
  else if (v)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_unpartition_kernel<float4, size_t>) (
        (const float4 *) windows, n_win_w, ws, cv, W, tv, (const float4 *) residual,
        (float4 *) x);
  else if (i32)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_unpartition_kernel<float, uint32_t>) (
        windows, n_win_w, ws, cv, W, (uint32_t) tv, residual, x);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, window_unpartition_kernel<float, size_t>) (
        windows, n_win_w, ws, cv, W, tv, residual, x);
  return sam2_launch_status ();
}

/* ---- max_pool ------------------------------------------------------------------------------- */

/* The elements max pooling compares: floats as they are, or the 16-bit bit patterns of the
 * half-precision paths (BF16 false: FP16) widened, exactly; the winner's own bits are kept. */
struct PoolF32 {
  using T = float;
  static __device__ __forceinline__ float value (float v) { return v; }
  static __device__ __forceinline__ float minus_inf () { return -INFINITY; }
};
template <bool BF16>
struct Pool16 {
  using T = uint16_t;
  static __device__ __forceinline__ float value (uint16_t b) { return sam2_from16<BF16> (b); }
  static __device__ __forceinline__ uint16_t minus_inf () { return sam2_to16<BF16> (-INFINITY); }
};

/* y (n_img, H / s, W / s, C) = max over s x s of x, whose pixels are `ld` elements apart. The
 * comparison and its order (dy, then dx, from -inf) are those of sam2_cpu_max_pool, so a NaN
 * input is skipped there and here alike. Scalar: ld need not be a multiple of 4 (q inside qkv).
 * On 16-bit rows the rounding of the float input gives the rounding of the float output
 * (rounding keeps the order), except where a window's values all round to zero with both
 * signs. */
template <class E>
static __global__ void
max_pool_kernel (const typename E::T *x, int H, int W, int C, int ld, int s, int oh, int ow,
                 size_t total, typename E::T *y)
{
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % C);
    const size_t o = i / C;                    /* (img, oy, ox) */
    const int ox = (int) (o % ow), oy = (int) ((o / ow) % oh);
    const size_t img = o / ((size_t) ow * oh);
    const typename E::T *base = x + img * H * W * (size_t) ld + c;
    float m = -INFINITY;
    typename E::T best = E::minus_inf ();
    for (int dy = 0; dy < s; dy++)
      for (int dx = 0; dx < s; dx++) {
        const typename E::T e = base[((size_t) (oy * s + dy) * W + (ox * s + dx)) * ld];
        const float p = E::value (e);
        if (p > m) {
          m = p;
          best = e;
        }
      }
    y[i] = best;
  }
}

template <class E>
static int
launch_max_pool (const typename E::T *x, int n_img, int H, int W, int C, int ld, int s,
                 typename E::T *y, cudaStream_t stream)
{
  if (x == NULL || y == NULL || n_img < 0 || H < 0 || W < 0 || C < 1 || ld < C || s < 1)
    return SAM2_CUDA_UNSUPPORTED;
  const int oh = H / s, ow = W / s;
  const size_t total = (size_t) n_img * oh * ow * C;
  if (total == 0)
    return SAM2_CUDA_OK;
  SAM2_LAUNCH (sam2_ew_blocks (total), SAM2_EW_THREADS, 0, stream, max_pool_kernel<E>) (
      x, H, W, C, ld, s, oh, ow, total, y);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_max_pool (const float *x, int n_img, int H, int W, int C, int ld, int s, float *y,
                    cudaStream_t stream)
{
  return launch_max_pool<PoolF32> (x, n_img, H, W, C, ld, s, y, stream);
}

extern "C" int
sam2_cuda_max_pool_16 (const uint16_t *x, int n_img, int H, int W, int C, int ld, int s,
                       Sam2CudaHalf type, uint16_t *y, cudaStream_t stream)
{
  if (!sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  return type == SAM2_CUDA_BF16
           ? launch_max_pool<Pool16<true>> (x, n_img, H, W, C, ld, s, y, stream)
           : launch_max_pool<Pool16<false>> (x, n_img, H, W, C, ld, s, y, stream);
}

/* ---- im2col ------------------------------------------------------------------------------- */

static inline int
conv_out_size (int in, int k, int stride, int pad)
{
  return (in + 2 * pad - k) / stride + 1;
}

/* cols (oh * ow, C * kh * kw), columns (c, ky, kx); zeros outside the image. PLANAR: x is
 * (C, H, W), else (H, W, C). One thread per output element: the writes are coalesced; the reads
 * of the channels-last form are strided by C but each input pixel is reused kh * kw times from
 * L1/L2. */
template <bool PLANAR, typename I>
static __global__ void
im2col_kernel (const float *x, int C, int H, int W, int kh, int kw, int stride, int pad, int ow,
               I total, float *cols)
{
  const I ncol = (I) C * kh * kw;
  for (I i = grid_first<I> (); i < total; i += grid_stride<I> ()) {
    const I col = i % ncol, row = i / ncol;
    const int kx = (int) (col % kw), ky = (int) ((col / kw) % kh), c = (int) (col / ((I) kw * kh));
    const int ox = (int) (row % ow), oy = (int) (row / ow);
    const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    float v = 0.0f;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
      v = PLANAR ? x[((I) c * H + iy) * W + ix] : x[((I) iy * W + ix) * C + c];
    cols[i] = v;
  }
}

template <bool PLANAR>
static int
launch_im2col (const float *x, int C, int H, int W, int kh, int kw, int stride, int pad,
               float *cols, cudaStream_t stream)
{
  if (x == NULL || cols == NULL || C < 1 || H < 1 || W < 1 || kh < 1 || kw < 1 || stride < 1
      || pad < 0)
    return SAM2_CUDA_UNSUPPORTED;
  const int oh = conv_out_size (H, kh, stride, pad), ow = conv_out_size (W, kw, stride, pad);
  if (oh < 1 || ow < 1)
    return SAM2_CUDA_OK;
  const size_t total = (size_t) oh * ow * C * kh * kw;
  const size_t in = (size_t) C * H * W;
  const unsigned blocks = sam2_ew_blocks (total);
  if (use_index32 (total > in ? total : in))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, im2col_kernel<PLANAR, uint32_t>) (
        x, C, H, W, kh, kw, stride, pad, ow, (uint32_t) total, cols);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, im2col_kernel<PLANAR, size_t>) (
        x, C, H, W, kh, kw, stride, pad, ow, total, cols);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_im2col_planar (const float *x, int C, int H, int W, int kh, int kw, int stride, int pad,
                         float *cols, cudaStream_t stream)
{
  return launch_im2col<true> (x, C, H, W, kh, kw, stride, pad, cols, stream);
}

extern "C" int
sam2_cuda_im2col (const float *x, int H, int W, int C, int kh, int kw, int stride, int pad,
                  float *cols, cudaStream_t stream)
{
  return launch_im2col<false> (x, C, H, W, kh, kw, stride, pad, cols, stream);
}

/* ---- 2x upsampling ---------------------------------------------------------------------------- */

/* y (2H, 2W, C) += x (H, W, C) nearest. */
template <typename T, typename I>
static __global__ void
add_upsample2x_kernel (T *y, const T *x, int W, int C, I total)
{
  const I OW = (I) 2 * W;
  for (I i = grid_first<I> (); i < total; i += grid_stride<I> ()) {
    const I c = i % C, pos = i / C;
    const I ox = pos % OW, oy = pos / OW;
    y[i] = add_of (y[i], x[((oy / 2) * W + ox / 2) * C + c]);
  }
}

extern "C" int
sam2_cuda_add_upsample2x (float *y, const float *x, int H, int W, int C, cudaStream_t stream)
{
  if (x == NULL || y == NULL || H < 0 || W < 0 || C < 1)
    return SAM2_CUDA_UNSUPPORTED;
  const size_t total = (size_t) 4 * H * W * C;
  if (total == 0)
    return SAM2_CUDA_OK;
  const bool v = vec4_ok (C, x, y);
  const int cv = v ? C / 4 : C;
  const size_t tv = v ? total / 4 : total;
  const unsigned blocks = sam2_ew_blocks (tv);
  if (v && use_index32 (tv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, add_upsample2x_kernel<float4, uint32_t>) (
        (float4 *) y, (const float4 *) x, W, cv, (uint32_t) tv);
  else if (v)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, add_upsample2x_kernel<float4, size_t>) (
        (float4 *) y, (const float4 *) x, W, cv, tv);
  else if (use_index32 (tv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, add_upsample2x_kernel<float, uint32_t>) (
        y, x, W, cv, (uint32_t) tv);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 add_upsample2x_kernel<float, size_t>) (y, x, W, cv, tv);
  return sam2_launch_status ();
}

static __device__ __forceinline__ float
act_of (int act, float v)
{
  return sam2_act_apply (act, v);
}
static __device__ __forceinline__ float4
act_of (int act, float4 v)
{
  return make_float4 (sam2_act_apply (act, v.x), sam2_act_apply (act, v.y),
                      sam2_act_apply (act, v.z), sam2_act_apply (act, v.w));
}

/* x (H * W, 4 * C; rows x_ld apart) with columns (dy, dx, c) -> y (2H, 2W, C), plus addend
 * (2H, 2W, C) when not NULL (x + addend, the CPU's order; addend may be y), then act
 * (sam2_act_apply, as the activation kernel). C and x_ld in units of T. */
template <typename T, typename I>
static __global__ void
depth_to_space2x_kernel (const T *x, int x_ld, int W, int C, const T *addend, int act, I total,
                         T *y)
{
  const I OW = (I) 2 * W;
  for (I i = grid_first<I> (); i < total; i += grid_stride<I> ()) {
    const I c = i % C, pos = i / C;
    const I ox = pos % OW, oy = pos / OW;
    const I q = (oy % 2) * 2 + ox % 2;
    T v = x[((oy / 2) * W + ox / 2) * x_ld + q * C + c];
    if (addend != NULL)
      v = add_of (v, addend[i]);
    y[i] = act != SAM2_CUDA_ACT_NONE ? act_of (act, v) : v;
  }
}

#define NORM_ROWS_PER_BLOCK (SAM2_EW_THREADS / 32)

/* The same with the LayerNorm over C between the add and act (NORM), or writing 16-bit results
 * (TO16), a warp per output pixel. The pixel's C floats are one contiguous run of x (input pixel
 * (oy/2, ox/2), columns (dy, dx)); with NORM the sums are written to y first and normalised
 * there, every lane reading back only the elements it wrote itself, with layernorm-row.cuh's row
 * arithmetic: the floats of layer_norm_kernel (elementwise.cu) run on depth_to_space2x_kernel's
 * output, then the activation kernel's. TO16: the results go to y16 instead, rounded to the
 * format as sam2_cuda_f32_to_16 rounds them (y then holds the sums, or is not written without
 * NORM). */
template <bool NORM, bool TO16, bool BF16>
static __global__ void
depth_to_space2x_norm_kernel (const float *x, int x_ld, int W, int C, const float *addend,
                              const float *__restrict__ weight, const float *__restrict__ bias,
                              float eps, int act, long long rows, float *y, uint16_t *y16)
{
  const long long row = (long long) blockIdx.x * NORM_ROWS_PER_BLOCK + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  const long long OW = 2LL * W, ox = row % OW, oy = row / OW;
  const float *xr = x + ((oy / 2) * W + ox / 2) * x_ld + ((oy % 2) * 2 + ox % 2) * C;
  const float *ar = addend != NULL ? addend + row * C : NULL;
  float *yr = NORM ? y + row * C : NULL;
  Sam2RowNormStats st = { 0.0, 0.0 };
  if (NORM) {
    for (int c = lane; c < C; c += 32)
      yr[c] = ar != NULL ? add_of (xr[c], ar[c]) : xr[c];
    st = sam2_row_norm_stats (yr, C, eps, lane);
  }
  for (int c = lane; c < C; c += 32) {
    float v = NORM ? sam2_row_norm_value (yr[c], st, weight[c], bias[c])
                   : (ar != NULL ? add_of (xr[c], ar[c]) : xr[c]);
    v = sam2_act_apply (act, v);
    if (TO16)
      y16[row * C + c] = sam2_to16<BF16> (v);
    else
      yr[c] = v;
  }
}

/* One depth_to_space2x_norm_kernel instance per (norm, output) pair: NORM or TO16 (the plain
 * float scatter is the elementwise kernel's). */
template <bool NORM, bool TO16, bool BF16>
static int
launch_depth_to_space2x_rows (const float *x, int x_ld, int H, int W, int C, const float *addend,
                              const float *weight, const float *bias, float eps, int act,
                              float *y, uint16_t *y16, cudaStream_t stream)
{
  const long long rows = 4LL * H * W;
  const long long blocks = (rows + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK;
  if (blocks > 0x7fffffffLL)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH ((unsigned) blocks, SAM2_EW_THREADS, 0, stream,
               depth_to_space2x_norm_kernel<NORM, TO16, BF16>) (
      x, x_ld, W, C, addend, weight, bias, eps, act, rows, y, y16);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_depth_to_space2x_norm_act (const float *x, int x_ld, int H, int W, int C,
                                     const float *addend, const float *weight, const float *bias,
                                     float eps, int act, float *y, cudaStream_t stream)
{
  if (x == NULL || y == NULL || H < 0 || W < 0 || C < 1 || x_ld < 4 * C || !sam2_act_valid (act)
      || (weight == NULL) != (bias == NULL))
    return SAM2_CUDA_UNSUPPORTED;
  const size_t total = (size_t) 4 * H * W * C;
  if (total == 0)
    return SAM2_CUDA_OK;
  if (weight != NULL)
    return launch_depth_to_space2x_rows<true, false, false> (x, x_ld, H, W, C, addend, weight,
                                                             bias, eps, act, y, NULL, stream);
  const bool v = vec4_ok (C, x, y, addend) && x_ld % 4 == 0;
  const int cv = v ? C / 4 : C, ldv = v ? x_ld / 4 : x_ld;
  const size_t tv = v ? total / 4 : total;
  const unsigned blocks = sam2_ew_blocks (tv);
  if (v && use_index32 (tv) && use_index32 ((size_t) H * W * ldv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, depth_to_space2x_kernel<float4, uint32_t>) (
        (const float4 *) x, ldv, W, cv, (const float4 *) addend, act, (uint32_t) tv,
        (float4 *) y);
  else if (v)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, depth_to_space2x_kernel<float4, size_t>) (
        (const float4 *) x, ldv, W, cv, (const float4 *) addend, act, tv, (float4 *) y);
  else if (use_index32 (tv) && use_index32 ((size_t) H * W * ldv))
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, depth_to_space2x_kernel<float, uint32_t>) (
        x, ldv, W, cv, addend, act, (uint32_t) tv, y);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream, depth_to_space2x_kernel<float, size_t>) (
        x, ldv, W, cv, addend, act, tv, y);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_depth_to_space2x_norm_act_16 (const float *x, int x_ld, int H, int W, int C,
                                        const float *addend, const float *weight,
                                        const float *bias, float eps, int act, float *sums,
                                        Sam2CudaHalf type, uint16_t *y16, cudaStream_t stream)
{
  if (x == NULL || y16 == NULL || H < 0 || W < 0 || C < 1 || x_ld < 4 * C
      || !sam2_act_valid (act) || !sam2_half_valid (type) || (weight == NULL) != (bias == NULL)
      || (weight != NULL && sums == NULL))
    return SAM2_CUDA_UNSUPPORTED;
  if ((size_t) H * W == 0)
    return SAM2_CUDA_OK;
  const bool bf16 = type == SAM2_CUDA_BF16;
  if (weight != NULL)
    return bf16 ? launch_depth_to_space2x_rows<true, true, true> (
                      x, x_ld, H, W, C, addend, weight, bias, eps, act, sums, y16, stream)
                : launch_depth_to_space2x_rows<true, true, false> (
                      x, x_ld, H, W, C, addend, weight, bias, eps, act, sums, y16, stream);
  return bf16 ? launch_depth_to_space2x_rows<false, true, true> (
                    x, x_ld, H, W, C, addend, NULL, NULL, 0.0f, act, NULL, y16, stream)
              : launch_depth_to_space2x_rows<false, true, false> (
                    x, x_ld, H, W, C, addend, NULL, NULL, 0.0f, act, NULL, y16, stream);
}

/* sam2_cuda_depth_to_space2x_matmul: a thread per output pixel, which scatters its C values
 * (x + addend, then act: depth_to_space2x_kernel's floats) and multiplies them into M running
 * sums, one FMA per (m, c) in c order; A (M, C) staged in shared memory for every thread to
 * read. T float4 (then C and x_ld in float4 units, 4 columns per step in the same order) or
 * float. */
template <typename T, typename I>
static __global__ void
depth_to_space2x_matmul_kernel (const T *x, int x_ld, int W, int C, const T *addend, int act,
                                const float *__restrict__ A, int M, I pixels, float *out)
{
  constexpr int L = sizeof (T) / sizeof (float);   /* floats per step */
  SAM2_STATIC_SHARED (float, a_s, [SAM2_CUDA_D2S_MATMUL_MAX_M * SAM2_CUDA_D2S_MATMUL_MAX_C]);
  const int CF = C * L;
  for (int i = threadIdx.x; i < M * CF; i += blockDim.x)
    a_s[i] = A[i];
  __syncthreads ();
  const I OW = (I) 2 * W;
  for (I p = grid_first<I> (); p < pixels; p += grid_stride<I> ()) {
    const I ox = p % OW, oy = p / OW;
    const T *xr = x + ((oy / 2) * W + ox / 2) * x_ld + ((oy % 2) * 2 + ox % 2) * C;
    const T *ar = addend != NULL ? addend + p * C : NULL;
    float acc[SAM2_CUDA_D2S_MATMUL_MAX_M];
#pragma unroll
    for (int m = 0; m < SAM2_CUDA_D2S_MATMUL_MAX_M; m++)
      acc[m] = 0.0f;
    for (int c = 0; c < C; c++) {
      T v = xr[c];
      if (ar != NULL)
        v = add_of (v, ar[c]);
      if (act != SAM2_CUDA_ACT_NONE)
        v = act_of (act, v);
      const float *vf = (const float *) &v;
#pragma unroll
      for (int j = 0; j < L; j++)
#pragma unroll
        for (int m = 0; m < SAM2_CUDA_D2S_MATMUL_MAX_M; m++)
          if (m < M)
            acc[m] = __fmaf_rn (a_s[m * CF + c * L + j], vf[j], acc[m]);
    }
#pragma unroll
    for (int m = 0; m < SAM2_CUDA_D2S_MATMUL_MAX_M; m++)
      if (m < M)
        out[(size_t) m * pixels + p] = acc[m];
  }
}

extern "C" int
sam2_cuda_depth_to_space2x_matmul (const float *x, int x_ld, int H, int W, int C,
                                   const float *addend, int act, const float *A, int M,
                                   float *out, cudaStream_t stream)
{
  if (x == NULL || A == NULL || out == NULL || H < 0 || W < 0 || C < 1
      || C > SAM2_CUDA_D2S_MATMUL_MAX_C || M < 1 || M > SAM2_CUDA_D2S_MATMUL_MAX_M
      || x_ld < 4 * C || !sam2_act_valid (act))
    return SAM2_CUDA_UNSUPPORTED;
  const size_t pixels = (size_t) 4 * H * W;
  if (pixels == 0)
    return SAM2_CUDA_OK;
  const bool v = vec4_ok (C, x, addend) && x_ld % 4 == 0;
  const int cv = v ? C / 4 : C, ldv = v ? x_ld / 4 : x_ld;
  const unsigned blocks = sam2_ew_blocks (pixels);
  const bool i32 = use_index32 (pixels * C) && use_index32 ((size_t) H * W * x_ld);
  const float4 *x4 = (const float4 *) x, *addend4 = (const float4 *) addend;
  if (v && i32)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 depth_to_space2x_matmul_kernel<float4, uint32_t>) (
        x4, ldv, W, cv, addend4, act, A, M, (uint32_t) pixels, out);
  else if (v)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 depth_to_space2x_matmul_kernel<float4, size_t>) (
        x4, ldv, W, cv, addend4, act, A, M, pixels, out);
  else if (i32)
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 depth_to_space2x_matmul_kernel<float, uint32_t>) (
        x, ldv, W, cv, addend, act, A, M, (uint32_t) pixels, out);
  else
    SAM2_LAUNCH (blocks, SAM2_EW_THREADS, 0, stream,
                 depth_to_space2x_matmul_kernel<float, size_t>) (
        x, ldv, W, cv, addend, act, A, M, pixels, out);
  return sam2_launch_status ();
}

extern "C" int
sam2_cuda_depth_to_space2x (const float *x, int H, int W, int C, const float *addend, float *y,
                            cudaStream_t stream)
{
  return sam2_cuda_depth_to_space2x_norm_act (x, 4 * C, H, W, C, addend, NULL, NULL, 0.0f,
                                              SAM2_CUDA_ACT_NONE, y, stream);
}
