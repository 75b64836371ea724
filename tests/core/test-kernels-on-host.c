/* test-kernels-on-host.c: CUDA kernel files compiled as host C (kernels/host-emulation.h) and
 * checked against the CPU code they mirror, so that their arithmetic and launch logic are
 * tested on every machine, GPU or not (the CUDA suite runs them on a device where there is one).
 *
 *   - preprocess.cu: sam2_cuda_preprocess with the resampler's own tables gives sam2_preprocess'
 *     floats bit for bit, over sizes that shrink, enlarge or keep each axis, every pixel format
 *     and rows with padding;
 *   - gptq.cu: the block kernel against the CPU's block (sam2_gptq_block_cpu) from the same
 *     weights, factor and order, block after block: codes, scaled errors and updated weights bit
 *     for bit (group tails, act order, UINT4 and SINT4); the factor's copy, mirror and move
 *     against their definitions. */
#define SAM2_KERNELS_ON_HOST 1
/* the host copies under their own names: the library's CUDA build defines the real ones */
#define sam2_cuda_preprocess sam2_cuda_preprocess_on_host
#define sam2_cuda_gptq_damped_copy sam2_cuda_gptq_damped_copy_on_host
#define sam2_cuda_gptq_mirror sam2_cuda_gptq_mirror_on_host
#define sam2_cuda_gptq_upper_factor sam2_cuda_gptq_upper_factor_on_host
#define sam2_cuda_gptq_columns sam2_cuda_gptq_columns_on_host
#include "../../kernels/preprocess.cu"
#include "../../kernels/gptq.cu"

#include "image.h"
#include "weights.h"

#include <cblas.h>

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

/* ---- GPTQ ---------------------------------------------------------------------------------- */

/* Each block from the same inputs on both sides (the CPU's weights after the previous blocks,
 * transposed into the kernel's layout), as GPTQ runs it with a real factor's shape: U upper
 * triangular with a positive diagonal. */
static void
test_gptq_columns (gconstpointer data)
{
  const int *spec = data;
  const int n = spec[0], k = spec[1], G = spec[2], B = spec[3];
  const Sam2QType dtype = spec[4] ? SAM2_QTYPE_SINT4 : SAM2_QTYPE_UINT4;
  GRand *rng = g_rand_new_with_seed ((guint32) (n * 131 + k));
  float *weights = g_new (float, (size_t) n * k);            /* (n, k) */
  for (size_t i = 0; i < (size_t) n * k; i++)
    weights[i] = (float) g_rand_double_range (rng, -0.2, 0.2);
  Sam2W4 cpu, dev;
  sam2_w4_init (&cpu, n, k, G, dtype);
  sam2_w4_init (&dev, n, k, G, dtype);
  sam2_w4_choose_params (&cpu, weights);
  sam2_w4_choose_params (&dev, weights);
  int *perm = g_new (int, k);                                 /* a random order */
  for (int i = 0; i < k; i++)
    perm[i] = i;
  for (int i = k - 1; i > 0; i--) {
    const int j = g_rand_int_range (rng, 0, i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  double *U = g_new0 (double, (size_t) k * k);                /* (k, k) row-major, upper */
  for (int i = 0; i < k; i++) {
    U[(size_t) i * k + i] = g_rand_double_range (rng, 0.5, 1.5);
    for (int j = i + 1; j < k; j++)
      U[(size_t) i * k + j] = g_rand_double_range (rng, -0.1, 0.1);
  }
  double *W = g_new (double, (size_t) n * k);                 /* (n, k), order of perm */
  for (int r = 0; r < n; r++)
    for (int i = 0; i < k; i++)
      W[(size_t) r * k + i] = weights[(size_t) r * k + perm[i]];
  double *err = g_new (double, (size_t) n * B);               /* (n, B) */
  double *Wt = g_new (double, (size_t) n * k);                /* (n, k) column-major */
  double *errt = g_new (double, (size_t) n * B);              /* (n, B) column-major */
  guint8 *codes = g_new0 (guint8, (size_t) n * k);            /* (k, n) */
  const Sam2CudaGptq g = { .n = n, .k = k, .block = B, .group_size = dev.group_size,
                           .n_groups = dev.n_groups, .W = Wt, .U = U, .err = errt, .perm = perm,
                           .scales = dev.scales, .zeros = dev.zeros, .codes = codes };
  size_t differ = 0;
  for (int i1 = 0; i1 < k; i1 += B) {
    const int i2 = MIN (i1 + B, k), count = i2 - i1;
    for (int r = 0; r < n; r++)
      for (int i = 0; i < k; i++)
        Wt[(size_t) i * n + r] = W[(size_t) r * k + i];
    g_assert_cmpint (sam2_cuda_gptq_columns (&g, i1, i2, NULL), ==, SAM2_CUDA_OK);
    sam2_gptq_block_cpu (&cpu, W, U, perm, i1, i2, err, B);
    for (int r = 0; r < n; r++)
      for (int i = i1; i < i2; i++) {
        differ += memcmp (&Wt[(size_t) i * n + r], &W[(size_t) r * k + i], sizeof (double)) != 0;
        differ += memcmp (&errt[(size_t) (i - i1) * n + r], &err[(size_t) r * B + i - i1],
                          sizeof (double)) != 0;
        differ += codes[(size_t) perm[i] * n + r]
                  != sam2_w4_get (cpu.codes, k, r, perm[i]);
      }
    if (i2 < k)   /* the CPU's lazy update, so the next block starts from its weights */
      cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k - i2, count, -1.0, err, B,
                   U + (size_t) i1 * k + i2, k, 1.0, W + i2, k);
  }
  g_test_message ("%dx%d, groups of %d, blocks of %d: %zu of %zu values differ", n, k, G, B,
                  differ, (size_t) n * k * 3);
  g_assert_cmpuint (differ, ==, 0);
  /* a block longer than the error buffer, or reaching past k, is refused */
  g_assert_cmpint (sam2_cuda_gptq_columns (&g, 0, MIN (B + 1, k + 1), NULL), ==,
                   SAM2_CUDA_UNSUPPORTED);
  sam2_w4_clear (&cpu);
  sam2_w4_clear (&dev);
  g_free (weights);
  g_free (perm);
  g_free (U);
  g_free (W);
  g_free (err);
  g_free (Wt);
  g_free (errt);
  g_free (codes);
  g_rand_free (rng);
}

/* The factor's element-wise steps against their definitions. */
static void
test_gptq_factor_steps (void)
{
  const int k = 37;
  double *H = g_new (double, (size_t) k * k), *U = g_new (double, (size_t) k * k);
  double *want = g_new (double, (size_t) k * k);
  for (int i = 0; i < k * k; i++)
    H[i] = (double) (i % 101) * 0.37 - 3.0;
  g_assert_cmpint (sam2_cuda_gptq_damped_copy (H, k, 0.25, U, NULL), ==, SAM2_CUDA_OK);
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++)
      g_assert_true (U[i * k + j] == (i == j ? H[i * k + j] + 0.25 : H[i * k + j]));
  /* mirror: the row-major lower triangle from the upper one */
  memcpy (want, U, sizeof (double) * k * k);
  for (int i = 0; i < k; i++)
    for (int j = i + 1; j < k; j++)
      want[(size_t) j * k + i] = want[(size_t) i * k + j];
  g_assert_cmpint (sam2_cuda_gptq_mirror (k, U, NULL), ==, SAM2_CUDA_OK);
  g_assert_cmpmem (U, sizeof (double) * k * k, want, sizeof (double) * k * k);
  /* move: the lower triangle to the upper one, zeros below */
  for (int i = 0; i < k * k; i++)
    U[i] = (double) i;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++)
      want[(size_t) i * k + j] = i <= j ? (double) (j * k + i) : 0.0;
  g_assert_cmpint (sam2_cuda_gptq_upper_factor (k, U, NULL), ==, SAM2_CUDA_OK);
  g_assert_cmpmem (U, sizeof (double) * k * k, want, sizeof (double) * k * k);
  g_free (H);
  g_free (U);
  g_free (want);
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
  /* n, k, group (0: one per row), block, SINT4: tails of groups and blocks, one block, tiny's
   * shapes */
  static const int gptq[][5] = {
    { 37, 150, 64, 32, 0 }, { 5, 200, 128, 128, 1 }, { 64, 96, 0, 128, 1 },
    { 96, 384, 128, 128, 0 }, { 3, 7, 0, 4, 0 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (gptq); i++) {
    char *name = g_strdup_printf ("/kernels-on-host/gptq/columns-%dx%d-g%d-b%d", gptq[i][0],
                                  gptq[i][1], gptq[i][2], gptq[i][3]);
    g_test_add_data_func (name, gptq[i], test_gptq_columns);
    g_free (name);
  }
  g_test_add_func ("/kernels-on-host/gptq/factor-steps", test_gptq_factor_steps);
  return g_test_run ();
}
