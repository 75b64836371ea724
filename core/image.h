/* image.h: pre- and post-processing equal to transformers' Sam2ImageProcessor.
 *
 * Preprocessing: 8-bit frame -> resize to the model's square input with torchvision's uint8
 * bilinear antialiased resize (what the processor runs on CPU tensors: separable passes with
 * fixed-point int16 weights, rounded back to 8 bits after each pass) -> (x / 255 - mean) / std
 * with the ImageNet mean and std, computed as the processor does, (x - 255 mean) / (255 std) in
 * float32 -> planar (3, S, S) float. Bit-identical to the processor's output.
 *
 * Post-processing: low-res mask logits -> F.interpolate(bilinear, align_corners=False) to the
 * frame size -> threshold -> bounding box.
 */
#ifndef SAM2_IMAGE_H
#define SAM2_IMAGE_H

#include "sam2.h"

G_BEGIN_DECLS

/* Everything that depends only on (input size, output size): tap indices and fixed-point weights
 * of both passes and the intermediate buffer. Built once per frame size, reused for every frame;
 * it holds scratch buffers, so one call at a time per resampler (calls run their rows on the
 * OpenMP threads). Sizes are 1 to SAM2_MAX_FRAME_SIZE (16384) pixels. */
typedef struct _Sam2Resampler Sam2Resampler;

Sam2Resampler *sam2_resampler_new (int in_width, int in_height, int out_width, int out_height,
                                   GError **error);
void sam2_resampler_free (Sam2Resampler *r);
int sam2_resampler_in_width (const Sam2Resampler *r);
int sam2_resampler_in_height (const Sam2Resampler *r);

/* Resizes 8-bit interleaved pixels to (out_h, out_w, 3) RGB bytes, exactly as torchvision. */
void sam2_resampler_resize_rgb8 (Sam2Resampler *r, const guint8 *pixels, int stride,
                                 Sam2PixelFormat format, guint8 *out_rgb);

/* Resize + ImageNet normalisation into planar (3, out_h, out_w) floats. */
void sam2_preprocess (Sam2Resampler *r, const guint8 *pixels, int stride, Sam2PixelFormat format,
                      float *pixel_values);

/* The tables of one axis of a resampler, for a device that resizes the same way
 * (kernels/preprocess.cu); read-only, owned by the resampler. Output index i sums the inputs
 * start[i] .. start[i] + count[i] - 1 times weights[i * n_taps + k], integers with `precision`
 * fraction bits; the horizontal axis is padded so that count[i] is the same for every i
 * (min (n_taps, in_size)). */
typedef struct {
  int in_size, out_size;
  int n_taps;
  int precision;
  const int *start;            /* (out_size) */
  const int *count;            /* (out_size) */
  const gint16 *weights;       /* (out_size, n_taps) */
} Sam2ResampleAxis;

void sam2_resampler_get_axes (const Sam2Resampler *r, Sam2ResampleAxis *horizontal,
                              Sam2ResampleAxis *vertical);
/* (3, 256): the normalised float of each byte value, per channel (R, G, B). */
const float *sam2_resampler_get_normalize_lut (const Sam2Resampler *r);

/* Normalises already-sized (h, w, 3) RGB bytes into planar floats (no resize). */
void sam2_normalize_rgb8 (const guint8 *rgb, int width, int height, float *pixel_values);

/* Bytes per pixel of a format (3 or 4); and whether it is stored B, G, R. */
int sam2_pixel_format_bpp (Sam2PixelFormat format);
/* Whether `format` is one of the Sam2PixelFormat values (a cast integer may not be). */
gboolean sam2_pixel_format_is_valid (Sam2PixelFormat format);
gboolean sam2_pixel_format_is_bgr (Sam2PixelFormat format);

/* F.interpolate(src[None, None], (out_h, out_w), mode="bilinear", align_corners=False) on one
 * float plane, bit for bit as torch 2.15's CPU kernels (x86 AVX2 build; both the generic kernel
 * and the one torch takes when out_h + out_w <= 128). post_process_masks interpolates all masks
 * of an image in one call, which equals this plane by plane except where torch runs one thread
 * on exactly 3 planes (its channels-last kernel then, last-ulp differences). */
void sam2_upsample_bilinear (const float *src, int src_h, int src_w, float *dst, int out_h,
                             int out_w);

/* dst[i] = src[i] > threshold; returns the number of set pixels. */
size_t sam2_threshold (const float *src, size_t n, float threshold, guint8 *dst);

/* sam2_upsample_bilinear then sam2_threshold, the same bits, without the (out_h, out_w) float
 * plane: the columns are interpolated once per source row, then rows are blended a block at a
 * time into `scratch` and thresholded from there (for a 1080p mask from 256x256 logits, a fifth
 * of the interpolations and 8 MB less written and read back). `scratch` holds `scratch_floats`
 * floats: sam2_upsample_threshold_scratch (src_h, out_h, out_w) for a block per thread at the
 * current thread count (sam2_get_num_threads); fewer threads run if it holds fewer blocks, and
 * one block is the least. Returns the number of set pixels. */
size_t sam2_upsample_threshold_scratch (int src_h, int out_h, int out_w);
size_t sam2_upsample_threshold (const float *src, int src_h, int src_w, int out_h, int out_w,
                                float threshold, float *scratch, size_t scratch_floats,
                                guint8 *dst);

/* Inclusive bounding box of the non-zero pixels; { 0, 0, -1, -1 } (x1 < x0) when there are none. */
Sam2Box sam2_mask_box (const guint8 *mask, int width, int height);

G_END_DECLS

#endif
