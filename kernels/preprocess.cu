/* preprocess.cu: sam2_preprocess (core/image.c) on the device: the antialiased bilinear resize
 * of an 8-bit frame to the model's input, then ImageNet normalisation into planar floats.
 *
 * The resize is integer arithmetic with the host's tables (int16 weights, `precision` fraction
 * bits, int32 sums started at the rounding half, shifted and clamped to a byte), so each output
 * byte is the same integer whichever order a thread adds its taps in; the normalisation reads
 * the host's 256-entry table per channel. The planes therefore equal the CPU's bit for bit.
 *
 * Two passes, as on the host: horizontal (each input row to the output width, packed RGB bytes;
 * a channel reorder alone when the width does not change), then vertical fused with the
 * normalisation (each output pixel from its column of horizontal-pass bytes). One thread per
 * output pixel and pass, three channels each; the frames are small next to the encoder (1080p:
 * 2 M pixels in, 1 M out). Independent grid-stride loops, so the file also compiles as host C
 * (host-emulation.h), which CI checks against sam2_preprocess. */
#ifdef SAM2_KERNELS_ON_HOST
#include "host-emulation.h"   /* tests/core/test-kernels-on-host.c */
#else
#include "common.cuh"
#endif

/* (2^(p-1) + sum) >> p clamped to a byte (image.c's sam2_fixed_to_u8). */
static __device__ __forceinline__ uint8_t
fixed_to_u8 (int32_t acc, int precision)
{
  const int32_t v = acc >> precision;
  return (uint8_t) (v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass: row y, output pixel x of `tmp` (in_h, out_w, 3) from the frame (in_h rows of
 * `stride` bytes, bpp bytes per pixel, red at byte red); every output pixel has `taps` taps (the
 * host pads the table), its weights `wstride` apart. */
static __global__ void
horizontal_kernel (const uint8_t *frame, size_t stride, int bpp, int red, int in_h, int out_w,
                   int taps, int wstride, int precision, const int32_t *start,
                   const int16_t *weights, uint8_t *tmp)
{
  const size_t total = (size_t) in_h * out_w;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x) {
    const int y = (int) (i / out_w), x = (int) (i % out_w);
    const uint8_t *p = frame + (size_t) y * stride + (size_t) start[x] * bpp;
    const int16_t *w = weights + (size_t) x * wstride;
    const int32_t half = 1 << (precision - 1);
    int32_t r = half, g = half, b = half;
    for (int j = 0; j < taps; j++, p += bpp) {
      r += p[red] * w[j];
      g += p[1] * w[j];
      b += p[2 - red] * w[j];
    }
    uint8_t *o = tmp + i * 3;
    o[0] = fixed_to_u8 (r, precision);
    o[1] = fixed_to_u8 (g, precision);
    o[2] = fixed_to_u8 (b, precision);
  }
}

/* The width unchanged: packed RGB bytes in `tmp` (in_h, w, 3), channels reordered. */
static __global__ void
convert_kernel (const uint8_t *frame, size_t stride, int bpp, int red, int in_h, int w,
                uint8_t *tmp)
{
  const size_t total = (size_t) in_h * w;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x) {
    const int y = (int) (i / w), x = (int) (i % w);
    const uint8_t *p = frame + (size_t) y * stride + (size_t) x * bpp;
    uint8_t *o = tmp + i * 3;
    o[0] = p[red];
    o[1] = p[1];
    o[2] = p[2 - red];
  }
}

/* Vertical pass and normalisation: output pixel (y, x) from rows start[y] .. start[y] +
 * count[y] - 1 of `rows` (packed RGB, `row_stride` bytes apart), or row y itself when the height
 * does not change (taps 0), into the planes of `out` (3, out_h, out_w). */
static __global__ void
vertical_normalize_kernel (const uint8_t *rows, size_t row_stride, int out_h, int out_w, int taps,
                           int precision, const int32_t *start, const int32_t *count,
                           const int16_t *weights, const float *lut, float *out)
{
  const size_t plane = (size_t) out_h * out_w;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < plane;
       i += (size_t) gridDim.x * blockDim.x) {
    const int y = (int) (i / out_w), x = (int) (i % out_w);
    uint8_t v[3];
    if (taps == 0) {
      const uint8_t *p = rows + (size_t) y * row_stride + (size_t) x * 3;
      v[0] = p[0];
      v[1] = p[1];
      v[2] = p[2];
    } else {
      const uint8_t *p = rows + (size_t) start[y] * row_stride + (size_t) x * 3;
      const int16_t *w = weights + (size_t) y * taps;
      const int32_t half = 1 << (precision - 1);
      int32_t acc[3] = { half, half, half };
      for (int k = 0; k < count[y]; k++, p += row_stride)
        for (int c = 0; c < 3; c++)
          acc[c] += p[c] * w[k];
      for (int c = 0; c < 3; c++)
        v[c] = fixed_to_u8 (acc[c], precision);
    }
    for (int c = 0; c < 3; c++)
      out[c * plane + i] = lut[c * 256 + v[c]];
  }
}

SAM2_KERNEL_API int
sam2_cuda_preprocess (const Sam2CudaPreprocessArgs *a, const uint8_t *frame, uint8_t *tmp,
                      float *out, cudaStream_t stream)
{
  if (a == NULL || frame == NULL || out == NULL || a->in_w < 1 || a->in_h < 1 || a->out_w < 1
      || a->out_h < 1 || (a->bpp != 3 && a->bpp != 4) || (a->red != 0 && a->red != 2)
      || a->stride < (size_t) a->in_w * a->bpp || a->lut == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  const bool resize_w = a->in_w != a->out_w, resize_h = a->in_h != a->out_h;
  if ((resize_w && (a->h_taps < 1 || a->h_stride < a->h_taps || a->h_precision < 1
                    || a->h_start == NULL || a->h_weights == NULL))
      || (resize_h && (a->v_taps < 1 || a->v_precision < 1 || a->v_start == NULL
                       || a->v_count == NULL || a->v_weights == NULL))
      || ((resize_w || a->bpp != 3 || a->red != 0) && tmp == NULL))
    return SAM2_CUDA_UNSUPPORTED;

  /* the rows the vertical pass reads: the frame itself when it already is packed RGB of the
   * output width, else the horizontal pass (or the reorder) into tmp */
  const uint8_t *rows = frame;
  size_t row_stride = a->stride;
  const size_t in_pixels = (size_t) a->in_h * a->out_w;
  if (resize_w) {
    SAM2_LAUNCH_EW (horizontal_kernel, in_pixels, stream) (
        frame, a->stride, a->bpp, a->red, a->in_h, a->out_w, a->h_taps, a->h_stride,
        a->h_precision, a->h_start, a->h_weights, tmp);
  } else if (a->bpp != 3 || a->red != 0) {
    SAM2_LAUNCH_EW (convert_kernel, in_pixels, stream) (
        frame, a->stride, a->bpp, a->red, a->in_h, a->out_w, tmp);
  }
  if (resize_w || a->bpp != 3 || a->red != 0) {
    rows = tmp;
    row_stride = (size_t) a->out_w * 3;
  }
  const size_t plane = (size_t) a->out_h * a->out_w;
  SAM2_LAUNCH_EW (vertical_normalize_kernel, plane, stream) (
      rows, row_stride, a->out_h, a->out_w, resize_h ? a->v_taps : 0, a->v_precision,
      a->v_start, a->v_count, a->v_weights, a->lut, out);
  return sam2_launch_status ();
}
