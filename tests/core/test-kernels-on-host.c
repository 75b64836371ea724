/* test-kernels-on-host.c: CUDA kernel files compiled as host C (kernels/host-emulation.h) and
 * checked against the CPU code they mirror, so that their arithmetic and launch logic are
 * tested on every machine, GPU or not (the CUDA suite runs them on a device where there is one).
 *
 *   - preprocess.cu: sam2_cuda_preprocess with the resampler's own tables gives sam2_preprocess'
 *     floats bit for bit, over sizes that shrink, enlarge or keep each axis, every pixel format
 *     and rows with padding. */
#define SAM2_KERNELS_ON_HOST 1
/* the host copy under its own name: the library's CUDA build defines the real one */
#define sam2_cuda_preprocess sam2_cuda_preprocess_on_host
#include "../../kernels/preprocess.cu"

#include "image.h"

#include <glib.h>
#include <string.h>

static void
test_preprocess (gconstpointer data)
{
  const int *size = data;
  const int W = size[0], H = size[1], out_w = size[2], out_h = size[3];
  static const Sam2PixelFormat formats[] = { SAM2_PIXEL_FORMAT_RGB, SAM2_PIXEL_FORMAT_BGR,
                                             SAM2_PIXEL_FORMAT_RGBA, SAM2_PIXEL_FORMAT_RGBX,
                                             SAM2_PIXEL_FORMAT_BGRA, SAM2_PIXEL_FORMAT_BGRX };
  GError *error = NULL;
  Sam2Resampler *r = sam2_resampler_new (W, H, out_w, out_h, &error);
  g_assert_no_error (error);
  Sam2ResampleAxis h, v;
  sam2_resampler_get_axes (r, &h, &v);
  const size_t n = (size_t) 3 * out_w * out_h;
  float *want = g_new (float, n), *got = g_new (float, n);
  guint8 *tmp = g_new (guint8, (size_t) H * out_w * 3);
  GRand *rng = g_rand_new_with_seed ((guint32) (W * 7919 + H));
  for (size_t f = 0; f < G_N_ELEMENTS (formats); f++) {
    const int bpp = sam2_pixel_format_bpp (formats[f]), stride = W * bpp + 5;
    guint8 *frame = g_new (guint8, (size_t) stride * H);
    for (size_t i = 0; i < (size_t) stride * H; i++)
      frame[i] = (guint8) g_rand_int_range (rng, 0, 256);
    sam2_preprocess (r, frame, stride, formats[f], want);
    const Sam2CudaPreprocessArgs args = {
      .in_w = W, .in_h = H, .out_w = out_w, .out_h = out_h, .stride = (size_t) stride,
      .bpp = bpp, .red = sam2_pixel_format_is_bgr (formats[f]) ? 2 : 0, .h_taps = h.count[0],
      .h_stride = h.n_taps, .h_precision = h.precision, .h_start = h.start,
      .h_weights = h.weights, .v_taps = v.n_taps, .v_precision = v.precision,
      .v_start = v.start, .v_count = v.count, .v_weights = v.weights,
      .lut = sam2_resampler_get_normalize_lut (r),
    };
    memset (got, 0xff, n * sizeof (float));   /* NaN: an output the kernels skip fails */
    g_assert_cmpint (sam2_cuda_preprocess (&args, frame, tmp, got, NULL), ==, SAM2_CUDA_OK);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
      differ += memcmp (&got[i], &want[i], sizeof (float)) != 0;
    g_test_message ("%dx%d -> %dx%d, format %d: %zu of %zu floats differ", W, H, out_w, out_h,
                    (int) formats[f], differ, n);
    g_assert_cmpuint (differ, ==, 0);
    g_free (frame);
  }
  g_rand_free (rng);
  g_free (tmp);
  g_free (want);
  g_free (got);
  sam2_resampler_free (r);
}

/* The launcher refuses what the kernels cannot do instead of reading out of bounds. */
static void
test_preprocess_refuses (void)
{
  const int32_t start[1] = { 0 };
  const int16_t weights[1] = { 1 << 14 };
  const float lut[768] = { 0 };
  guint8 frame[12] = { 0 }, tmp[12];
  float out[3];
  const Sam2CudaPreprocessArgs ok = {
    .in_w = 1, .in_h = 1, .out_w = 1, .out_h = 1, .stride = 3, .bpp = 3, .red = 0,
    .h_taps = 1, .h_stride = 1, .h_precision = 14, .h_start = start, .h_weights = weights,
    .v_taps = 1, .v_precision = 14, .v_start = start, .v_count = start, .v_weights = weights,
    .lut = lut,
  };
  g_assert_cmpint (sam2_cuda_preprocess (&ok, frame, tmp, out, NULL), ==, SAM2_CUDA_OK);
  Sam2CudaPreprocessArgs bad = ok;
  bad.stride = 2;                        /* shorter than a row */
  g_assert_cmpint (sam2_cuda_preprocess (&bad, frame, tmp, out, NULL), ==, SAM2_CUDA_UNSUPPORTED);
  bad = ok;
  bad.bpp = 2;
  g_assert_cmpint (sam2_cuda_preprocess (&bad, frame, tmp, out, NULL), ==, SAM2_CUDA_UNSUPPORTED);
  bad = ok;
  bad.out_w = 2;                         /* a horizontal pass without tmp */
  g_assert_cmpint (sam2_cuda_preprocess (&bad, frame, NULL, out, NULL), ==,
                   SAM2_CUDA_UNSUPPORTED);
  bad = ok;
  bad.out_h = 2;
  bad.v_weights = NULL;                  /* a vertical pass without its table */
  g_assert_cmpint (sam2_cuda_preprocess (&bad, frame, tmp, out, NULL), ==, SAM2_CUDA_UNSUPPORTED);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* in_w, in_h, out_w, out_h: both axes down (1080p, 4K), up, one axis kept (the frame read
   * directly for RGB, reordered for the others), both kept, tiny inputs, odd sizes */
  static const int sizes[][4] = {
    { 1920, 1080, 1024, 1024 }, { 3840, 2160, 1024, 1024 }, { 160, 120, 1024, 1024 },
    { 1024, 700, 1024, 1024 }, { 700, 1024, 1024, 1024 }, { 1024, 1024, 1024, 1024 },
    { 3, 5, 256, 256 }, { 1, 1, 64, 64 }, { 257, 255, 256, 256 }, { 640, 480, 256, 256 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++) {
    char *name = g_strdup_printf ("/kernels-on-host/preprocess/%dx%d-to-%dx%d", sizes[i][0],
                                  sizes[i][1], sizes[i][2], sizes[i][3]);
    g_test_add_data_func (name, sizes[i], test_preprocess);
    g_free (name);
  }
  g_test_add_func ("/kernels-on-host/preprocess/refuses", test_preprocess_refuses);
  return g_test_run ();
}
