/* image.c: pre- and post-processing that reproduce Sam2ImageProcessor bit for bit.
 *
 * Resize: transformers' TorchvisionBackend calls torchvision.transforms.v2.functional.resize
 * (BILINEAR, antialias=True) on the uint8 CHW tensor. On x86 CPUs with AVX2 (and on aarch64)
 * torchvision keeps the tensor in uint8 and torch runs upsample_avx_bilinear_bicubic_uint8
 * (aten/src/ATen/native/cpu/UpSampleKernelAVXAntialias.h), whose integer arithmetic equals the
 * portable separable_upsample_generic_Nd_kernel_impl (UpSampleKernel.cpp):
 *
 *   - per axis, PIL-style antialiased triangle-filter weights in double
 *     (HelperInterpBase::_compute_indices_min_size_weights_aa), normalised per output pixel;
 *   - converted to int16 fixed point with one precision per axis, the largest that keeps the
 *     axis' biggest weight below 2^15 (_compute_index_ranges_int16_weights);
 *   - horizontal pass first (over all input rows), then vertical; a pass is skipped when that
 *     axis keeps its size, and nothing happens at all when both do;
 *   - after each pass: (2^(precision-1) + sum pixel * weight) >> precision, clamped to 0..255.
 *
 * Normalise: rescale and normalise are fused (_fuse_mean_std_and_rescale_factor): the float32
 * mean and std are multiplied by 255 in float32, then tvF.normalize runs x.sub(mean).div_(std)
 * in float32. A (3, 256) table of exactly those values is all it takes.
 *
 * Upsample: F.interpolate(bilinear, align_corners=False) on float32 CPU tensors, as
 * post_process_masks runs it. PyTorch picks one of two kernels (upsample_bilinear2d_kernel_impl_
 * float) whose roundings differ; both are mirrored here, FMA for FMA, as torch 2.x builds them.
 */
#include "image.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Every float and double operation below is rounded where torch's build rounds it, and fused
 * only where it fuses (the explicit fmaf calls). A GNU-dialect build with FMA enabled would let
 * GCC contract other a * b + c on its own (-ffp-contract=fast); this file forbids it. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize ("fp-contract=off")
#endif

/* x86-64 always has SSE2; elsewhere (or built with -DSAM2_IMAGE_NO_SIMD, how the portable path
 * is checked) the plain C loops compute the same integers. */
#if defined(__SSE2__) && !defined(SAM2_IMAGE_NO_SIMD)
#define SAM2_IMAGE_SSE2 1
#include <emmintrin.h>
#endif

/* Sizes above this are refused: larger frames are not video, and the int32 accumulators and
 * tap tables are sized with this bound in mind. */
#define SAM2_RESAMPLER_MAX_SIZE SAM2_MAX_FRAME_SIZE

/* The weights of one axis of the resize. */
typedef struct {
  int in_size, out_size;
  int n_taps;          /* taps stored per output pixel (max over the axis) */
  int precision;       /* fixed-point bits of `weights` */
  int *start;          /* (out_size) first input index */
  int *count;          /* (out_size) number of taps used; n_taps for all of them when padded */
  gint16 *weights;     /* (out_size, n_taps) */
} Sam2Taps;

struct _Sam2Resampler {
  int in_width, in_height, out_width, out_height;
  Sam2Taps horiz, vert;
  guint8 *tmp;         /* (in_height, out_width, 3) RGB: horizontal pass output, or the
                          format-converted input when only the vertical pass runs */
  guint8 *rgb;         /* (out_height, out_width, 3): sam2_preprocess' resized frame */
  float lut[3][256];   /* normalised value of each byte, per channel */
};

/* ---- pixel formats ------------------------------------------------------------------- */

int
sam2_pixel_format_bpp (Sam2PixelFormat format)
{
  switch (format) {
    case SAM2_PIXEL_FORMAT_RGB:
    case SAM2_PIXEL_FORMAT_BGR:
      return 3;
    case SAM2_PIXEL_FORMAT_RGBA:
    case SAM2_PIXEL_FORMAT_RGBX:
    case SAM2_PIXEL_FORMAT_BGRA:
    case SAM2_PIXEL_FORMAT_BGRX:
      return 4;
  }
  g_return_val_if_reached (3);
}

gboolean
sam2_pixel_format_is_bgr (Sam2PixelFormat format)
{
  return format == SAM2_PIXEL_FORMAT_BGR || format == SAM2_PIXEL_FORMAT_BGRA ||
         format == SAM2_PIXEL_FORMAT_BGRX;
}

gboolean
sam2_pixel_format_is_valid (Sam2PixelFormat format)
{
  return format >= SAM2_PIXEL_FORMAT_RGB && format <= SAM2_PIXEL_FORMAT_BGRX;
}

/* ---- resampling weights --------------------------------------------------------------- */

/* HelperInterpLinear::aa_filter: the triangle of PIL's bilinear filter. */
static double
sam2_triangle (double x)
{
  x = fabs (x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

/* HelperInterpBase::_compute_indices_min_size_weights_aa for output pixel i: fills w[0..count)
 * with the normalised double weights and returns their maximum. Every operation is kept in
 * PyTorch's order, since a last-bit difference in a weight can flip a rounded int16 weight. */
static double
sam2_taps_compute_one (int i, int in_size, double scale, double support, int max_taps,
                       double *w, int *start, int *count)
{
  double center = scale * (i + 0.5);
  double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  gint64 xmin = MAX ((gint64) (center - support + 0.5), 0);
  gint64 xsize = MIN ((gint64) (center + support + 0.5), (gint64) in_size) - xmin;
  double total = 0.0, wt_max = 0.0;

  xsize = CLAMP (xsize, 0, max_taps);
  for (gint64 j = 0; j < xsize; j++) {
    w[j] = sam2_triangle (((double) (j + xmin) - center + 0.5) * invscale);
    total += w[j];
  }
  if (total != 0.0) {
    for (gint64 j = 0; j < xsize; j++) {
      w[j] /= total;
      wt_max = MAX (wt_max, w[j]);
    }
  }
  *start = (int) xmin;
  *count = (int) xsize;
  return wt_max;
}

/* _compute_index_ranges_int16_weights' precision choice: the largest number of fraction bits p
 * (at most 22) with round(wt_max * 2^p) < 2^15, wt_max the largest weight of the whole axis, so
 * that every weight fits an int16 (upscaling, wt_max 1: 14 bits; 1920 -> 1024 and
 * 1080 -> 1024: 15; 4000 -> 1024: 16; at most 22 for extreme reductions). */
static int
sam2_taps_precision (double wt_max)
{
  int precision;
  for (precision = 0; precision < 22; precision++) {
    int next_value = (int) (0.5 + wt_max * (1 << (precision + 1)));
    if (next_value >= (1 << 15))
      break;
  }
  return precision;
}

static void
sam2_taps_clear (Sam2Taps *t)
{
  g_free (t->start);
  g_free (t->count);
  g_free (t->weights);
  memset (t, 0, sizeof *t);
}

/* Gives every output pixel the same number of taps, n_taps = min(max_taps, in_size), by moving
 * the window left where it would run past the end and padding with zero weights, which add
 * nothing to the sums. A fixed tap count lets the horizontal pass unroll its inner loop instead
 * of mispredicting a trip count that changes from pixel to pixel. */
static void
sam2_taps_pad (Sam2Taps *t)
{
  int k_max = MIN (t->n_taps, t->in_size);
  for (int i = 0; i < t->out_size; i++) {
    gint16 *w = t->weights + (size_t) i * t->n_taps;
    int start = MIN (t->start[i], t->in_size - k_max);
    int shift = t->start[i] - start;
    if (shift > 0) {
      memmove (w + shift, w, (size_t) t->count[i] * sizeof *w);
      memset (w, 0, (size_t) shift * sizeof *w);
    }
    t->start[i] = start;
    t->count[i] = k_max;
  }
}

/* The tap table of one axis (support = scale when downscaling, 1 when upscaling, as
 * _compute_index_ranges_weights with interp_size 2 and antialias); padded: see sam2_taps_pad. */
static gboolean
sam2_taps_init (Sam2Taps *t, int in_size, int out_size, gboolean padded, GError **error)
{
  double scale = (double) in_size / out_size;
  double support = scale >= 1.0 ? 1.0 * scale : 1.0;
  int max_taps = (int) ceil (support) * 2 + 1;
  double wt_max = 0.0;

  memset (t, 0, sizeof *t);
  t->in_size = in_size;
  t->out_size = out_size;
  t->n_taps = max_taps;
  t->start = g_try_new (int, out_size);
  t->count = g_try_new (int, out_size);
  t->weights = g_try_new0 (gint16, (gsize) out_size * max_taps);
  double *w = g_try_new0 (double, (gsize) out_size * max_taps);
  if (t->start == NULL || t->count == NULL || t->weights == NULL || w == NULL) {
    g_free (w);
    sam2_taps_clear (t);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "out of memory for the resize weights of %d -> %d pixels", in_size, out_size);
    return FALSE;
  }

  for (int i = 0; i < out_size; i++) {
    double m = sam2_taps_compute_one (i, in_size, scale, support, max_taps, w + (gsize) i * max_taps,
                                      &t->start[i], &t->count[i]);
    wt_max = MAX (wt_max, m);
  }

  t->precision = sam2_taps_precision (wt_max);
  for (gsize k = 0; k < (gsize) out_size * max_taps; k++) {
    double v = w[k] * (1 << t->precision);
    t->weights[k] = (gint16) (v < 0 ? (int) (-0.5 + v) : (int) (0.5 + v));
  }
  g_free (w);
  if (padded)
    sam2_taps_pad (t);
  return TRUE;
}

/* ---- normalisation ------------------------------------------------------------------- */

static const float sam2_imagenet_mean[3] = { 0.485f, 0.456f, 0.406f };
static const float sam2_imagenet_std[3] = { 0.229f, 0.224f, 0.225f };

/* Each of the 256 byte values as the processor normalises it: mean and std are float32
 * tensors scaled by 1 / rescale_factor = 255 in float32, then (x - mean) / std in float32. */
static void
sam2_normalize_lut (float lut[3][256])
{
  for (int c = 0; c < 3; c++) {
    float mean = sam2_imagenet_mean[c] * 255.0f;
    float std = sam2_imagenet_std[c] * 255.0f;
    for (int v = 0; v < 256; v++)
      lut[c][v] = ((float) v - mean) / std;
  }
}

/* One (w, 3) RGB row into the planes of a (3, h, w) tensor. */
static void
sam2_normalize_row (float lut[3][256], const guint8 *rgb, int width, float *r, float *g, float *b)
{
  for (int x = 0; x < width; x++) {
    r[x] = lut[0][rgb[3 * x + 0]];
    g[x] = lut[1][rgb[3 * x + 1]];
    b[x] = lut[2][rgb[3 * x + 2]];
  }
}

void
sam2_normalize_rgb8 (const guint8 *rgb, int width, int height, float *pixel_values)
{
  g_return_if_fail (rgb != NULL && pixel_values != NULL && width > 0 && height > 0);

  float lut[3][256];
  size_t plane = (size_t) width * height;
  sam2_normalize_lut (lut);
  for (int y = 0; y < height; y++) {
    size_t o = (size_t) y * width;
    sam2_normalize_row (lut, rgb + 3 * o, width, pixel_values + o, pixel_values + plane + o,
                        pixel_values + 2 * plane + o);
  }
}

/* ---- the resampler ------------------------------------------------------------------- */

Sam2Resampler *
sam2_resampler_new (int in_width, int in_height, int out_width, int out_height, GError **error)
{
  if (in_width <= 0 || in_height <= 0 || out_width <= 0 || out_height <= 0 ||
      in_width > SAM2_RESAMPLER_MAX_SIZE || in_height > SAM2_RESAMPLER_MAX_SIZE ||
      out_width > SAM2_RESAMPLER_MAX_SIZE || out_height > SAM2_RESAMPLER_MAX_SIZE) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "cannot resize %dx%d to %dx%d: sizes must be between 1 and %d", in_width,
                 in_height, out_width, out_height, SAM2_RESAMPLER_MAX_SIZE);
    return NULL;
  }

  Sam2Resampler *r = g_new0 (Sam2Resampler, 1);
  r->in_width = in_width;
  r->in_height = in_height;
  r->out_width = out_width;
  r->out_height = out_height;
  /* The vertical pass reads whole rows per tap, so it keeps the exact (unpadded) counts. */
  if (!sam2_taps_init (&r->horiz, in_width, out_width, TRUE, error) ||
      !sam2_taps_init (&r->vert, in_height, out_height, FALSE, error)) {
    sam2_resampler_free (r);
    return NULL;
  }
  r->tmp = g_try_malloc ((gsize) in_height * out_width * 3);
  r->rgb = g_try_malloc ((gsize) out_height * out_width * 3);
  if (r->tmp == NULL || r->rgb == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "out of memory for the buffers of a %dx%d -> %dx%d resize", in_width, in_height,
                 out_width, out_height);
    sam2_resampler_free (r);
    return NULL;
  }
  sam2_normalize_lut (r->lut);
  return r;
}

void
sam2_resampler_free (Sam2Resampler *r)
{
  if (r == NULL)
    return;
  sam2_taps_clear (&r->horiz);
  sam2_taps_clear (&r->vert);
  g_free (r->tmp);
  g_free (r->rgb);
  g_free (r);
}

static void
axis_view (const Sam2Taps *t, Sam2ResampleAxis *out)
{
  out->in_size = t->in_size;
  out->out_size = t->out_size;
  out->n_taps = t->n_taps;
  out->precision = t->precision;
  out->start = t->start;
  out->count = t->count;
  out->weights = t->weights;
}

void
sam2_resampler_get_axes (const Sam2Resampler *r, Sam2ResampleAxis *horizontal,
                         Sam2ResampleAxis *vertical)
{
  g_return_if_fail (r != NULL && horizontal != NULL && vertical != NULL);
  axis_view (&r->horiz, horizontal);
  axis_view (&r->vert, vertical);
}

const float *
sam2_resampler_get_normalize_lut (const Sam2Resampler *r)
{
  g_return_val_if_fail (r != NULL, NULL);
  return &r->lut[0][0];
}

int
sam2_resampler_in_width (const Sam2Resampler *r)
{
  g_return_val_if_fail (r != NULL, 0);
  return r->in_width;
}

int
sam2_resampler_in_height (const Sam2Resampler *r)
{
  g_return_val_if_fail (r != NULL, 0);
  return r->in_height;
}

/* (2^(p-1) + sum) >> p clamped to a byte: the rounding of basic_loop_aa_horizontal<uint8_t> and
 * of the AVX kernels (srai, then packs/packus saturation). */
static inline guint8
sam2_fixed_to_u8 (gint32 acc, int precision)
{
  gint32 v = acc >> precision;
  return (guint8) CLAMP (v, 0, 255);
}

/* Horizontal pass, output pixels [x_begin, x_end) of one row, k taps each (padded table).
 * bpp, the channel offsets and, for the common tap counts, k are constants at each call site,
 * so the tap loop unrolls per format. */
static inline void
sam2_hpass_scalar (const Sam2Taps *t, const guint8 *in, guint8 *out, int x_begin, int x_end,
                   int bpp, int ro, int go, int bo, int k)
{
  const int precision = t->precision, n_taps = t->n_taps;
  const gint32 round = 1 << (precision - 1);
  const int *start = t->start;
  const gint16 *weights = t->weights;
  for (int x = x_begin; x < x_end; x++) {
    const guint8 *p = in + (size_t) start[x] * bpp;
    const gint16 *w = weights + (size_t) x * n_taps;
    gint32 ar = round, ag = round, ab = round;
    for (int j = 0; j < k; j++, p += bpp) {
      ar += p[ro] * w[j];
      ag += p[go] * w[j];
      ab += p[bo] * w[j];
    }
    out[3 * x + 0] = sam2_fixed_to_u8 (ar, precision);
    out[3 * x + 1] = sam2_fixed_to_u8 (ag, precision);
    out[3 * x + 2] = sam2_fixed_to_u8 (ab, precision);
  }
}

#ifdef SAM2_IMAGE_SSE2
/* The same sums with SSE2, the way PIL-SIMD and torch's AVX kernel do it: two neighbouring
 * pixels are interleaved channel by channel as int16 and pmaddwd multiplies them by their two
 * weights, giving the (exact, int32) partial sums of all channels at once. Reads 8 bytes per
 * pair of taps, so with 3-byte pixels the caller keeps the last window of a row on the scalar
 * path. Lane c of the result is byte c of the pixel, whatever the format's channel order. */
static inline __m128i
sam2_sse2_taps (const guint8 *p, const gint16 *w, int bpp, int k)
{
  const __m128i zero = _mm_setzero_si128 ();
  __m128i acc = zero;
  int j = 0;
  for (; j + 1 < k; j += 2, p += 2 * bpp) {
    __m128i a = _mm_loadl_epi64 ((const __m128i *) p);
    __m128i b = bpp == 4 ? _mm_srli_si128 (a, 4) : _mm_srli_si128 (a, 3);
    __m128i ab = _mm_unpacklo_epi8 (_mm_unpacklo_epi8 (a, b), zero);
    gint32 wpair = (gint32) (((guint32) (guint16) w[j + 1] << 16) | (guint16) w[j]);
    acc = _mm_add_epi32 (acc, _mm_madd_epi16 (ab, _mm_set1_epi32 (wpair)));
  }
  if (j < k) {
    gint32 bytes;
    memcpy (&bytes, p, sizeof bytes);
    __m128i a = _mm_unpacklo_epi16 (_mm_unpacklo_epi8 (_mm_cvtsi32_si128 (bytes), zero), zero);
    acc = _mm_add_epi32 (acc, _mm_madd_epi16 (a, _mm_set1_epi32 ((guint16) w[j])));
  }
  return acc;
}

static inline void
sam2_hpass_sse2 (const Sam2Taps *t, const guint8 *in, guint8 *out, int x_begin, int x_end,
                 int bpp, int ro, int k)
{
  const int n_taps = t->n_taps;
  const __m128i round = _mm_set1_epi32 (1 << (t->precision - 1));
  const __m128i shift = _mm_cvtsi32_si128 (t->precision);
  const int *start = t->start;
  const gint16 *weights = t->weights;
  for (int x = x_begin; x < x_end; x++) {
    __m128i acc = sam2_sse2_taps (in + (size_t) start[x] * bpp, weights + (size_t) x * n_taps,
                                  bpp, k);
    acc = _mm_sra_epi32 (_mm_add_epi32 (acc, round), shift);
    acc = _mm_packus_epi16 (_mm_packs_epi32 (acc, acc), acc);
    guint32 v = (guint32) _mm_cvtsi128_si32 (acc);
    out[3 * x + 0] = (guint8) (v >> (8 * ro));
    out[3 * x + 1] = (guint8) (v >> 8);
    out[3 * x + 2] = (guint8) (v >> (8 * (2 - ro)));
  }
}

/* Output pixels whose window of 8-byte loads stays inside the row: with 3-byte pixels, those
 * with start + k < in_size; with 4-byte pixels, all of them. Starts never decrease. */
static int
sam2_hpass_simd_end (const Sam2Taps *t, int bpp, int k)
{
  int x_end = t->out_size;
  if (bpp == 4)
    return x_end;
  while (x_end > 0 && t->start[x_end - 1] + k >= t->in_size)
    x_end--;
  return x_end;
}
#endif

static inline void
sam2_hpass (const Sam2Taps *t, const guint8 *in, guint8 *out, int bpp, int ro, int k)
{
  int x_simd = 0;
#ifdef SAM2_IMAGE_SSE2
  x_simd = sam2_hpass_simd_end (t, bpp, k);
  sam2_hpass_sse2 (t, in, out, 0, x_simd, bpp, ro, k);
#endif
  sam2_hpass_scalar (t, in, out, x_simd, t->out_size, bpp, ro, 1, 2 - ro, k);
}

/* Tap counts are 2 * ceil(support) + 1: 3 when upscaling, 5 up to 2x down, 7 up to 3x, 9 up to
 * 4x (4K -> 1024); other counts take the loop with a variable bound. */
static inline void
sam2_hpass_k (const Sam2Taps *t, const guint8 *in, guint8 *out, int bpp, int ro)
{
  switch (t->count[0]) {
    case 3:
      sam2_hpass (t, in, out, bpp, ro, 3);
      break;
    case 5:
      sam2_hpass (t, in, out, bpp, ro, 5);
      break;
    case 7:
      sam2_hpass (t, in, out, bpp, ro, 7);
      break;
    case 9:
      sam2_hpass (t, in, out, bpp, ro, 9);
      break;
    default:
      sam2_hpass (t, in, out, bpp, ro, t->count[0]);
      break;
  }
}

static void
sam2_resample_horizontal_row (const Sam2Taps *t, const guint8 *in, guint8 *out,
                              Sam2PixelFormat format)
{
  switch (format) {
    case SAM2_PIXEL_FORMAT_RGB:
      sam2_hpass_k (t, in, out, 3, 0);
      break;
    case SAM2_PIXEL_FORMAT_BGR:
      sam2_hpass_k (t, in, out, 3, 2);
      break;
    case SAM2_PIXEL_FORMAT_RGBA:
    case SAM2_PIXEL_FORMAT_RGBX:
      sam2_hpass_k (t, in, out, 4, 0);
      break;
    case SAM2_PIXEL_FORMAT_BGRA:
    case SAM2_PIXEL_FORMAT_BGRX:
      sam2_hpass_k (t, in, out, 4, 2);
      break;
  }
}

/* Width unchanged: the pixels only change layout, to packed RGB. */
static void
sam2_convert_row (const guint8 *in, guint8 *out, int width, Sam2PixelFormat format)
{
  int bpp = sam2_pixel_format_bpp (format);
  int ro = sam2_pixel_format_is_bgr (format) ? 2 : 0;
  for (int x = 0; x < width; x++, in += bpp) {
    out[3 * x + 0] = in[ro];
    out[3 * x + 1] = in[1];
    out[3 * x + 2] = in[2 - ro];
  }
}

/* Vertical pass, bytes [begin, end) of output row y: a weighted sum of whole input rows, byte
 * for byte (basic_loop_aa_vertical<uint8_t>; the layout of the bytes does not matter). */
static void
sam2_vpass_scalar (const Sam2Taps *t, int y, const guint8 *in, size_t in_stride, int begin,
                   int end, guint8 *out)
{
  const gint32 round = 1 << (t->precision - 1);
  const gint16 *w = t->weights + (size_t) y * t->n_taps;
  const guint8 *base = in + (size_t) t->start[y] * in_stride;
  for (int i = begin; i < end; i++) {
    gint32 acc = round;
    for (int k = 0; k < t->count[y]; k++)
      acc += base[(size_t) k * in_stride + i] * w[k];
    out[i] = sam2_fixed_to_u8 (acc, t->precision);
  }
}

#ifdef SAM2_IMAGE_SSE2
/* acc[0..3] += the 16 bytes of rows a and b (as int16) times their weights, interleaved so
 * that pmaddwd forms a * wa + b * wb per byte (PIL-SIMD's ImagingResampleVertical). */
static inline void
sam2_vpass_sse2_pair (__m128i acc[4], __m128i a, __m128i b, __m128i wpair)
{
  const __m128i zero = _mm_setzero_si128 ();
  __m128i a_lo = _mm_unpacklo_epi8 (a, zero), a_hi = _mm_unpackhi_epi8 (a, zero);
  __m128i b_lo = _mm_unpacklo_epi8 (b, zero), b_hi = _mm_unpackhi_epi8 (b, zero);
  acc[0] = _mm_add_epi32 (acc[0], _mm_madd_epi16 (_mm_unpacklo_epi16 (a_lo, b_lo), wpair));
  acc[1] = _mm_add_epi32 (acc[1], _mm_madd_epi16 (_mm_unpackhi_epi16 (a_lo, b_lo), wpair));
  acc[2] = _mm_add_epi32 (acc[2], _mm_madd_epi16 (_mm_unpacklo_epi16 (a_hi, b_hi), wpair));
  acc[3] = _mm_add_epi32 (acc[3], _mm_madd_epi16 (_mm_unpackhi_epi16 (a_hi, b_hi), wpair));
}

/* Bytes [0, n_bytes rounded down to 16) of output row y; returns where the scalar tail starts. */
static int
sam2_vpass_sse2 (const Sam2Taps *t, int y, const guint8 *in, size_t in_stride, int n_bytes,
                 guint8 *out)
{
  const gint16 *w = t->weights + (size_t) y * t->n_taps;
  const guint8 *base = in + (size_t) t->start[y] * in_stride;
  const int count = t->count[y];
  const __m128i round = _mm_set1_epi32 (1 << (t->precision - 1));
  const __m128i shift = _mm_cvtsi32_si128 (t->precision);
  int i = 0;
  for (; i + 16 <= n_bytes; i += 16) {
    __m128i acc[4] = { round, round, round, round };
    int k = 0;
    for (; k + 1 < count; k += 2) {
      gint32 wpair = (gint32) (((guint32) (guint16) w[k + 1] << 16) | (guint16) w[k]);
      __m128i a = _mm_loadu_si128 ((const __m128i *) (base + (size_t) k * in_stride + i));
      __m128i b = _mm_loadu_si128 ((const __m128i *) (base + (size_t) (k + 1) * in_stride + i));
      sam2_vpass_sse2_pair (acc, a, b, _mm_set1_epi32 (wpair));
    }
    if (k < count) {
      __m128i a = _mm_loadu_si128 ((const __m128i *) (base + (size_t) k * in_stride + i));
      sam2_vpass_sse2_pair (acc, a, _mm_setzero_si128 (), _mm_set1_epi32 ((guint16) w[k]));
    }
    for (int q = 0; q < 4; q++)
      acc[q] = _mm_sra_epi32 (acc[q], shift);
    __m128i lo = _mm_packs_epi32 (acc[0], acc[1]), hi = _mm_packs_epi32 (acc[2], acc[3]);
    _mm_storeu_si128 ((__m128i *) (out + i), _mm_packus_epi16 (lo, hi));
  }
  return i;
}
#endif

static void
sam2_vpass_row (const Sam2Taps *t, int y, const guint8 *in, size_t in_stride, int n_bytes,
                guint8 *out)
{
  int done = 0;
#ifdef SAM2_IMAGE_SSE2
  done = sam2_vpass_sse2 (t, y, in, in_stride, n_bytes, out);
#endif
  sam2_vpass_scalar (t, y, in, in_stride, done, n_bytes, out);
}

/* Rows of packed RGB that the vertical stage reads: the input itself when it is RGB and keeps
 * its width, else r->tmp filled by the horizontal pass (or the format conversion). */
static const guint8 *
sam2_resampler_stage1 (Sam2Resampler *r, const guint8 *pixels, int stride, Sam2PixelFormat format,
                       size_t *row_stride)
{
  gboolean need_h = r->in_width != r->out_width;
  size_t tmp_stride = (size_t) r->out_width * 3;

  if (!need_h && format == SAM2_PIXEL_FORMAT_RGB) {
    *row_stride = (size_t) stride;
    return pixels;
  }

  int in_h = r->in_height;
#pragma omp parallel for schedule(static) if ((gint64) in_h * r->out_width > 65536)
  for (int y = 0; y < in_h; y++) {
    const guint8 *in = pixels + (size_t) y * stride;
    guint8 *out = r->tmp + (size_t) y * tmp_stride;
    if (need_h)
      sam2_resample_horizontal_row (&r->horiz, in, out, format);
    else
      sam2_convert_row (in, out, r->in_width, format);
  }
  *row_stride = tmp_stride;
  return r->tmp;
}

/* Output row y of the resize into `out` (out_width * 3 bytes), from the stage-1 rows. */
static inline void
sam2_resampler_output_row (const Sam2Resampler *r, int y, const guint8 *rows, size_t row_stride,
                           guint8 *out)
{
  int n_bytes = r->out_width * 3;
  if (r->in_height != r->out_height)
    sam2_vpass_row (&r->vert, y, rows, row_stride, n_bytes, out);
  else
    memcpy (out, rows + (size_t) y * row_stride, n_bytes);
}

static gboolean
sam2_resampler_check_input (const Sam2Resampler *r, const guint8 *pixels, int stride,
                            Sam2PixelFormat format)
{
  g_return_val_if_fail (r != NULL && pixels != NULL, FALSE);
  g_return_val_if_fail (sam2_pixel_format_is_valid (format), FALSE);
  g_return_val_if_fail (stride >= r->in_width * sam2_pixel_format_bpp (format), FALSE);
  return TRUE;
}

void
sam2_resampler_resize_rgb8 (Sam2Resampler *r, const guint8 *pixels, int stride,
                            Sam2PixelFormat format, guint8 *out_rgb)
{
  if (!sam2_resampler_check_input (r, pixels, stride, format))
    return;
  g_return_if_fail (out_rgb != NULL);

  size_t row_stride;
  const guint8 *rows = sam2_resampler_stage1 (r, pixels, stride, format, &row_stride);
  int out_h = r->out_height;
  size_t out_stride = (size_t) r->out_width * 3;
#pragma omp parallel for schedule(static) if ((gint64) out_h * r->out_width > 65536)
  for (int y = 0; y < out_h; y++)
    sam2_resampler_output_row (r, y, rows, row_stride, out_rgb + (size_t) y * out_stride);
}

void
sam2_preprocess (Sam2Resampler *r, const guint8 *pixels, int stride, Sam2PixelFormat format,
                 float *pixel_values)
{
  if (!sam2_resampler_check_input (r, pixels, stride, format))
    return;
  g_return_if_fail (pixel_values != NULL);

  size_t row_stride;
  const guint8 *rows = sam2_resampler_stage1 (r, pixels, stride, format, &row_stride);
  int out_h = r->out_height, out_w = r->out_width;
  size_t plane = (size_t) out_w * out_h;
  /* Each row is normalised right after it is resized, while it is still in cache. */
#pragma omp parallel for schedule(static) if ((gint64) out_h * out_w > 65536)
  for (int y = 0; y < out_h; y++) {
    guint8 *rgb = r->rgb + (size_t) y * out_w * 3;
    size_t o = (size_t) y * out_w;
    sam2_resampler_output_row (r, y, rows, row_stride, rgb);
    sam2_normalize_row (r->lut, rgb, out_w, pixel_values + o, pixel_values + plane + o,
                        pixel_values + 2 * plane + o);
  }
}

/* ---- post-processing ----------------------------------------------------------------- */

/* One axis of F.interpolate(bilinear, align_corners=False) in float32: compute_source_index_
 * and_lambda with area_pixel_compute_scale (float in / out) and guard_index_and_lambda. */
typedef struct {
  int i0, i1;
  float l0, l1;
} Sam2Lerp;

static inline Sam2Lerp
sam2_lerp_index (int o, int in_size, int out_size, float scale, gboolean fused)
{
  Sam2Lerp e;
  if (in_size == out_size) {
    e.i0 = e.i1 = o;
    e.l0 = 1.0f;
    e.l1 = 0.0f;
    return e;
  }
  /* area_pixel_compute_source_index. In torch 2.15's x86 AVX2 build the channels-last kernel
   * has it contracted into an FMA and the generic kernel's index tables do not (the fixture's
   * torch 2.11 build contracted both: see POST_LOGITS_MAX_REL in test-image.c). */
  float src = fused ? fmaf (scale, (float) o + 0.5f, -0.5f) : scale * ((float) o + 0.5f) - 0.5f;
  if (src < 0.0f)
    src = 0.0f;
  e.i0 = MIN ((int) floorf (src), in_size - 1);
  e.l1 = src - (float) e.i0;
  e.l1 = e.l1 < 0.0f ? 0.0f : e.l1 > 1.0f ? 1.0f : e.l1;
  e.l0 = 1.0f - e.l1;
  e.i1 = e.i0 + (e.i0 < in_size - 1 ? 1 : 0);
  return e;
}

/* Columns whose index and weights are computed at once, on the stack. */
#define SAM2_UPSAMPLE_CHUNK 256

/* The FMAs below must be real fused operations for the results to equal torch's. Without -mfma
 * fmaf() is a libm call (correct, but it makes the upsample several times slower); on x86 a
 * second copy of the row kernel is built for FMA hardware and picked at run time. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__FMA__)
#define SAM2_IMAGE_FMA_DISPATCH 1
#include <immintrin.h>
#endif
#ifdef __GNUC__
#define SAM2_ALWAYS_INLINE inline __attribute__ ((always_inline))
#else
#define SAM2_ALWAYS_INLINE inline
#endif

typedef struct {
  const float *src;
  int src_h, src_w, out_h, out_w;
  float scale_h, scale_w;
  gboolean small;      /* out_h + out_w <= 128: torch's channels-last kernel */
  float *dst;          /* output row y at dst + (y - dst_row0) * out_w */
  int dst_row0;
} Sam2Upsample;

/* upsample_generic_Nd_kernel_impl<2, HelperInterpLinear>: Interpolate<2, ..., 2> evaluates
 * "t0 * w0 + t1 * w1" per axis, width inside height, which torch's (GCC, -mfma) build contracts
 * to fma(t0, w0, t1 * w1). */
static SAM2_ALWAYS_INLINE void
sam2_upsample_span_generic (const float *r0, const float *r1, Sam2Lerp h, const Sam2Lerp *ws,
                            int n, float *dst)
{
  for (int i = 0; i < n; i++) {
    Sam2Lerp w = ws[i];
    float t0 = fmaf (r0[w.i0], w.l0, r0[w.i1] * w.l1);
    float t1 = fmaf (r1[w.i0], w.l0, r1[w.i1] * w.l1);
    dst[i] = fmaf (t0, h.l0, t1 * h.l1);
  }
}

/* cpu_upsample_linear_channels_last, scalar tail (one channel): four products of combined
 * weights, "i00 * w00 + i01 * w01 + i10 * w10 + i11 * w11", which torch's build evaluates as
 * fma(i11, w11, fma(i10, w10, fma(i00, w00, i01 * w01))). */
static SAM2_ALWAYS_INLINE void
sam2_upsample_span_small (const float *r0, const float *r1, Sam2Lerp h, const Sam2Lerp *ws,
                          int n, float *dst)
{
  for (int i = 0; i < n; i++) {
    Sam2Lerp w = ws[i];
    float w00 = h.l0 * w.l0, w01 = h.l0 * w.l1, w10 = h.l1 * w.l0, w11 = h.l1 * w.l1;
    dst[i] = fmaf (r1[w.i1], w11, fmaf (r1[w.i0], w10, fmaf (r0[w.i0], w00, r0[w.i1] * w01)));
  }
}

/* Rows [y_begin, y_end): the column weights are computed once per chunk and reused down the
 * rows of the block. */
static SAM2_ALWAYS_INLINE void
sam2_upsample_rows_body (const Sam2Upsample *u, int y_begin, int y_end)
{
  Sam2Lerp ws[SAM2_UPSAMPLE_CHUNK];
  for (int x0 = 0; x0 < u->out_w; x0 += SAM2_UPSAMPLE_CHUNK) {
    int n = MIN (SAM2_UPSAMPLE_CHUNK, u->out_w - x0);
    for (int i = 0; i < n; i++)
      ws[i] = sam2_lerp_index (x0 + i, u->src_w, u->out_w, u->scale_w, u->small);
    for (int y = y_begin; y < y_end; y++) {
      Sam2Lerp h = sam2_lerp_index (y, u->src_h, u->out_h, u->scale_h, u->small);
      const float *r0 = u->src + (size_t) h.i0 * u->src_w;
      const float *r1 = u->src + (size_t) h.i1 * u->src_w;
      float *d = u->dst + (size_t) (y - u->dst_row0) * u->out_w + x0;
      if (u->small)
        sam2_upsample_span_small (r0, r1, h, ws, n, d);
      else
        sam2_upsample_span_generic (r0, r1, h, ws, n, d);
    }
  }
}

static void
sam2_upsample_rows (const Sam2Upsample *u, int y_begin, int y_end)
{
  sam2_upsample_rows_body (u, y_begin, y_end);
}

#ifdef SAM2_IMAGE_FMA_DISPATCH
__attribute__ ((target ("fma"))) static void
sam2_upsample_rows_fma (const Sam2Upsample *u, int y_begin, int y_end)
{
  sam2_upsample_rows_body (u, y_begin, y_end);
}
#endif

typedef void (*Sam2UpsampleRowsFn) (const Sam2Upsample *u, int y_begin, int y_end);

static Sam2UpsampleRowsFn
sam2_upsample_rows_fn (void)
{
#ifdef SAM2_IMAGE_FMA_DISPATCH
  if (__builtin_cpu_supports ("fma"))
    return sam2_upsample_rows_fma;
#endif
  return sam2_upsample_rows;
}

/* The generic kernel, separably. Its per-pixel arithmetic, fma(fma(r0[i0], l0, r0[i1] * l1),
 * h.l0, fma(r1[i0], l0, r1[i1] * l1) * h.l1), has an inner term per (source row, output column):
 * computing it once per source row (T, the columns pass) and blending two rows of T per output
 * row (the rows pass) does the same operations on the same values, so the same bits, with the
 * column interpolation done out_h / src_h times less often and a rows pass that vectorises. */
static SAM2_ALWAYS_INLINE void
sam2_upsample_columns_body (const Sam2Upsample *u, int r_begin, int r_end, float *T)
{
  Sam2Lerp ws[SAM2_UPSAMPLE_CHUNK];
  for (int x0 = 0; x0 < u->out_w; x0 += SAM2_UPSAMPLE_CHUNK) {
    int n = MIN (SAM2_UPSAMPLE_CHUNK, u->out_w - x0);
    for (int i = 0; i < n; i++)
      ws[i] = sam2_lerp_index (x0 + i, u->src_w, u->out_w, u->scale_w, FALSE);
    for (int r = r_begin; r < r_end; r++) {
      const float *row = u->src + (size_t) r * u->src_w;
      float *t = T + (size_t) r * u->out_w + x0;
      for (int i = 0; i < n; i++)
        t[i] = fmaf (row[ws[i].i0], ws[i].l0, row[ws[i].i1] * ws[i].l1);
    }
  }
}

/* d[x] = fma (t0[x], l0, t1[x] * l1): one output row blended from two rows of T. */
static void
sam2_upsample_blend_span (const float *t0, const float *t1, float l0, float l1, int n, float *d)
{
  for (int x = 0; x < n; x++)
    d[x] = fmaf (t0[x], l0, t1[x] * l1);
}

static void
sam2_upsample_columns (const Sam2Upsample *u, int r_begin, int r_end, float *T)
{
  sam2_upsample_columns_body (u, r_begin, r_end, T);
}

#ifdef SAM2_IMAGE_FMA_DISPATCH
__attribute__ ((target ("fma"))) static void
sam2_upsample_columns_fma (const Sam2Upsample *u, int r_begin, int r_end, float *T)
{
  sam2_upsample_columns_body (u, r_begin, r_end, T);
}

/* the span with AVX2 FMAs: _mm256_fmadd_ps is fmaf lane by lane (one rounding) */
__attribute__ ((target ("avx2,fma"))) static void
sam2_upsample_blend_span_avx2 (const float *t0, const float *t1, float l0, float l1, int n,
                               float *d)
{
  const __m256 v0 = _mm256_set1_ps (l0), v1 = _mm256_set1_ps (l1);
  int x = 0;
  for (; x + 8 <= n; x += 8)
    _mm256_storeu_ps (d + x, _mm256_fmadd_ps (_mm256_loadu_ps (t0 + x), v0,
                                              _mm256_mul_ps (_mm256_loadu_ps (t1 + x), v1)));
  for (; x < n; x++)
    d[x] = fmaf (t0[x], l0, t1[x] * l1);
}
#endif

typedef void (*Sam2UpsampleBlendFn) (const float *t0, const float *t1, float l0, float l1, int n,
                                     float *d);

/* Output rows [y_begin, y_end) from T into dst (row y at dst + (y - y_begin) * out_w). */
static void
sam2_upsample_blend (const Sam2Upsample *u, Sam2UpsampleBlendFn span, const float *T, int y_begin,
                     int y_end, float *dst)
{
  for (int y = y_begin; y < y_end; y++) {
    Sam2Lerp h = sam2_lerp_index (y, u->src_h, u->out_h, u->scale_h, FALSE);
    span (T + (size_t) h.i0 * u->out_w, T + (size_t) h.i1 * u->out_w, h.l0, h.l1, u->out_w,
          dst + (size_t) (y - y_begin) * u->out_w);
  }
}

typedef void (*Sam2UpsampleColumnsFn) (const Sam2Upsample *u, int r_begin, int r_end, float *T);

static void
sam2_upsample_separable_fns (Sam2UpsampleColumnsFn *columns, Sam2UpsampleBlendFn *span)
{
  *columns = sam2_upsample_columns;
  *span = sam2_upsample_blend_span;
#ifdef SAM2_IMAGE_FMA_DISPATCH
  if (__builtin_cpu_supports ("fma")) {
    *columns = sam2_upsample_columns_fma;
    if (__builtin_cpu_supports ("avx2"))
      *span = sam2_upsample_blend_span_avx2;
  }
#endif
}

/* Rows per parallel work item. */
#define SAM2_UPSAMPLE_BLOCK 16

void
sam2_upsample_bilinear (const float *src, int src_h, int src_w, float *dst, int out_h, int out_w)
{
  g_return_if_fail (src != NULL && dst != NULL);
  g_return_if_fail (src_h > 0 && src_w > 0 && out_h > 0 && out_w > 0);

  /* _use_vectorized_kernel_cond_2d: for one channel, small outputs take the channels-last
   * kernel, everything else the generic one. Scales as area_pixel_compute_scale<float>. */
  Sam2Upsample u = {
    .src = src, .src_h = src_h, .src_w = src_w, .out_h = out_h, .out_w = out_w,
    .scale_h = (float) src_h / (float) out_h, .scale_w = (float) src_w / (float) out_w,
    .small = out_h + out_w <= 128, .dst = dst,
  };
  Sam2UpsampleRowsFn rows = sam2_upsample_rows_fn ();
  int n_blocks = (out_h + SAM2_UPSAMPLE_BLOCK - 1) / SAM2_UPSAMPLE_BLOCK;

#pragma omp parallel for schedule(static) if ((gint64) out_h * out_w > 65536)
  for (int b = 0; b < n_blocks; b++)
    rows (&u, b * SAM2_UPSAMPLE_BLOCK, MIN (out_h, (b + 1) * SAM2_UPSAMPLE_BLOCK));
}

size_t
sam2_threshold (const float *src, size_t n, float threshold, guint8 *dst)
{
  g_return_val_if_fail (n == 0 || (src != NULL && dst != NULL), 0);

  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    dst[i] = src[i] > threshold;
    count += dst[i];
  }
  return count;
}

size_t
sam2_upsample_threshold_scratch (int src_h, int out_h, int out_w)
{
  if (src_h <= 0 || out_h <= 0 || out_w <= 0)
    return 0;
  const int n_blocks = (out_h + SAM2_UPSAMPLE_BLOCK - 1) / SAM2_UPSAMPLE_BLOCK;
  const size_t blocks = (size_t) MIN (n_blocks, sam2_get_num_threads ()) * SAM2_UPSAMPLE_BLOCK
                        * out_w;
  return (size_t) src_h * out_w + blocks;   /* T of the separable path, then one block each */
}

size_t
sam2_upsample_threshold (const float *src, int src_h, int src_w, int out_h, int out_w,
                         float threshold, float *scratch, size_t scratch_floats, guint8 *dst)
{
  g_return_val_if_fail (src != NULL && scratch != NULL && dst != NULL, 0);
  g_return_val_if_fail (src_h > 0 && src_w > 0 && out_h > 0 && out_w > 0, 0);
  const size_t block_floats = (size_t) SAM2_UPSAMPLE_BLOCK * out_w;
  g_return_val_if_fail (scratch_floats >= (size_t) src_h * out_w + block_floats, 0);

  const Sam2Upsample u = {
    .src = src, .src_h = src_h, .src_w = src_w, .out_h = out_h, .out_w = out_w,
    .scale_h = (float) src_h / (float) out_h, .scale_w = (float) src_w / (float) out_w,
    .small = out_h + out_w <= 128,
  };
  const int n_blocks = (out_h + SAM2_UPSAMPLE_BLOCK - 1) / SAM2_UPSAMPLE_BLOCK;
  float *T = scratch;                                    /* (src_h, out_w) */
  float *blocks = scratch + (size_t) src_h * out_w;      /* (threads, BLOCK, out_w) */
  /* as many threads as the scratch holds blocks, at most */
  const int threads = (int) MIN ((scratch_floats - (size_t) src_h * out_w) / block_floats,
                                 (size_t) MAX (1, sam2_get_num_threads ()));
  const gboolean parallel = (gint64) out_h * out_w > 65536;
  Sam2UpsampleRowsFn rows = sam2_upsample_rows_fn ();
  Sam2UpsampleColumnsFn columns;
  Sam2UpsampleBlendFn span;
  sam2_upsample_separable_fns (&columns, &span);
  if (!u.small) {
    const int row_blocks = (src_h + SAM2_UPSAMPLE_BLOCK - 1) / SAM2_UPSAMPLE_BLOCK;
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int b = 0; b < row_blocks; b++)
      columns (&u, b * SAM2_UPSAMPLE_BLOCK, MIN (src_h, (b + 1) * SAM2_UPSAMPLE_BLOCK), T);
  }
  size_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : count) num_threads(threads) if (parallel)
  for (int b = 0; b < n_blocks; b++) {
    const int y0 = b * SAM2_UPSAMPLE_BLOCK, y1 = MIN (out_h, y0 + SAM2_UPSAMPLE_BLOCK);
    float *block = blocks + (size_t) omp_get_thread_num () * block_floats;
    if (u.small) {
      /* torch's other kernel (combined weights): row by row as sam2_upsample_bilinear */
      Sam2Upsample ub = u;
      ub.dst = block;
      ub.dst_row0 = y0;
      rows (&ub, y0, y1);
    } else {
      sam2_upsample_blend (&u, span, T, y0, y1, block);
    }
    count += sam2_threshold (block, (size_t) (y1 - y0) * out_w, threshold,
                             dst + (size_t) y0 * out_w);
  }
  return count;
}

/* Index of the first / last non-zero byte of row[0..n), or -1: eight bytes at a time through
 * the zeros (a mask row is mostly zeros; byte by byte this was 2 ms of a 1080p frame). */
static int
first_nonzero (const guint8 *row, int n)
{
  int x = 0;
  for (; x + 8 <= n; x += 8) {
    guint64 w;
    memcpy (&w, row + x, sizeof w);
    if (w != 0)
      break;
  }
  for (; x < n; x++)
    if (row[x])
      return x;
  return -1;
}

static int
last_nonzero (const guint8 *row, int n)
{
  int end = n;
  for (; end >= 8; end -= 8) {
    guint64 w;
    memcpy (&w, row + end - 8, sizeof w);
    if (w != 0)
      break;
  }
  for (int x = end - 1; x >= 0; x--)
    if (row[x])
      return x;
  return -1;
}

Sam2Box
sam2_mask_box (const guint8 *mask, int width, int height)
{
  Sam2Box box = { 0, 0, -1, -1 };
  if (width <= 0 || height <= 0)
    return box;
  g_return_val_if_fail (mask != NULL, box);

  int x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (int y = 0; y < height; y++) {
    const guint8 *row = mask + (size_t) y * width;
    const int first = first_nonzero (row, width);
    if (first < 0)
      continue;
    x0 = MIN (x0, first);
    x1 = MAX (x1, last_nonzero (row, width));
    if (y1 < 0)
      y0 = y;
    y1 = y;
  }
  if (y1 >= 0) {
    box.x0 = x0;
    box.y0 = y0;
    box.x1 = x1;
    box.y1 = y1;
  }
  return box;
}
