/* test-image.c: pre- and post-processing against transformers' Sam2ImageProcessor.
 *
 * Two sources of truth: the shared fixture preproc.safetensors (skipped when absent), and
 * tests/data/image-refs.safetensors, made by tools/gen_image_refs.py from inputs this file
 * regenerates bit for bit (sam2_test_hash below mirrors the script's hash). */
#include "test-support.h"

#include "image.h"
#include "sam2.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The resize is integer arithmetic and the normalisation is one float32 subtraction and one
 * float32 division per value, both exactly as torch does them: there is no rounding left to
 * differ, so the processor's float32 output must be met to the last bit. */
#define PREPROC_MAX_ULPS 0

/* The fixture's post-processing ran on another machine and torch build (2.11), whose generic
 * bilinear kernel computes the source index as fma(scale, dst + 0.5, -0.5); torch 2.15's AVX2
 * build (and this code, which the self-made references pin) rounds the product first. That
 * moves a few sample positions by one float ulp of the index: observed max |diff| 1.1e-6 of the
 * largest logit, relative L2 2.2e-7. */
#define POST_LOGITS_MAX_REL 4e-6
#define POST_LOGITS_REL_L2 1e-6

/* ---- deterministic inputs (see tools/gen_image_refs.py) ------------------------------------ */

static guint64
sam2_test_hash (guint64 seed, guint64 index)
{
  guint64 z = (seed << 40) ^ index;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static float *
hash_plane (guint64 seed, int width, int height)
{
  float *plane = g_new (float, (size_t) width * height);
  for (size_t i = 0; i < (size_t) width * height; i++)
    plane[i] = (float) ((gint64) (sam2_test_hash (seed, i) >> 40) - (1 << 23)) / (1 << 20);
  return plane;
}

/* A frame of `kind` ("noise", "white", "checker") in `format` with `pad` bytes after each row;
 * every byte not set by the kind comes from the hash. */
static guint8 *
make_frame (const char *kind, guint64 seed, int width, int height, Sam2PixelFormat format,
            int pad, int *stride)
{
  int bpp = sam2_pixel_format_bpp (format);
  *stride = width * bpp + pad;
  size_t n = (size_t) *stride * height;
  guint8 *frame = g_malloc (n);
  for (size_t i = 0; i < n; i++)
    frame[i] = (guint8) (sam2_test_hash (seed, i) >> 56);
  if (strcmp (kind, "noise") == 0)
    return frame;
  g_assert_true (strcmp (kind, "white") == 0 || strcmp (kind, "checker") == 0);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      guint8 v = strcmp (kind, "white") == 0 ? 255 : ((x + y) & 1) * 255;
      memset (frame + (size_t) y * *stride + (size_t) x * bpp, v, 3);
    }
  return frame;
}

/* The same RGB pixels in another layout (pad bytes and alpha from the hash). */
static guint8 *
repack (const guint8 *rgb, int width, int height, Sam2PixelFormat format, int pad, int *stride)
{
  guint8 *frame = make_frame ("noise", 99, width, height, format, pad, stride);
  int bpp = sam2_pixel_format_bpp (format);
  gboolean bgr = sam2_pixel_format_is_bgr (format);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      for (int c = 0; c < 3; c++)
        frame[(size_t) y * *stride + (size_t) x * bpp + (bgr ? 2 - c : c)] =
            rgb[((size_t) y * width + x) * 3 + c];
  return frame;
}

/* ---- references ---------------------------------------------------------------------------- */

/* tests/data sits next to this directory; meson runs tests from the build root, which is where
 * the compiler's relative __FILE__ starts. $SAM2_TEST_DATA overrides. */
static Sam2Safetensors *
open_image_refs (void)
{
  const char *dir = g_getenv ("SAM2_TEST_DATA");
  char *path;
  if (dir != NULL && *dir != '\0') {
    path = g_build_filename (dir, "image-refs.safetensors", NULL);
  } else {
    char *here = g_path_get_dirname (__FILE__);
    path = g_build_filename (here, "..", "data", "image-refs.safetensors", NULL);
    g_free (here);
  }
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_error ("%s not found: run the test from the build directory or set SAM2_TEST_DATA to "
             "the project's tests/data", path);
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return st;
}

static char **
ref_cases (Sam2Safetensors *st, const char *list)
{
  const char *names = sam2_safetensors_metadata (st, list);
  g_assert_nonnull (names);
  return g_strsplit (names, ",", -1);
}

static const char *
ref_meta (Sam2Safetensors *st, const char *group, const char *name)
{
  char *key = g_strdup_printf ("%s.%s", group, name);
  const char *value = sam2_safetensors_metadata (st, key);
  if (value == NULL)
    g_error ("image-refs.safetensors lacks %s", key);
  g_free (key);
  return value;
}

static const Sam2StTensor *
ref_tensor (Sam2Safetensors *st, const char *group, const char *name, Sam2DType dtype)
{
  char *key = g_strdup_printf ("%s/%s", group, name);
  const Sam2StTensor *t = sam2_safetensors_find (st, key);
  if (t == NULL)
    g_error ("image-refs.safetensors lacks tensor %s", key);
  g_assert_cmpint (t->dtype, ==, dtype);
  g_free (key);
  return t;
}

static void
assert_sha256 (const char *what, const void *data, size_t size, const char *expected)
{
  char *digest = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, size);
  if (strcmp (digest, expected) != 0)
    g_error ("%s: sha256 %s, the reference %s", what, digest, expected);
  g_free (digest);
}

/* ---- fp16 ---------------------------------------------------------------------------------- */

/* IEEE binary16 bits of f, rounded to nearest even: what torch's .half() does. */
static guint16
f32_to_f16_bits (float f)
{
  guint32 x;
  memcpy (&x, &f, sizeof x);
  guint32 sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u)                        /* inf, nan */
    return (guint16) (sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
  if (a >= 0x477ff000u)                        /* rounds past 65504 */
    return (guint16) (sign | 0x7c00u);
  if (a < 0x38800000u) {                       /* below 2^-14: a multiple of 2^-24 */
    float v;
    memcpy (&v, &a, sizeof v);
    return (guint16) (sign | (guint32) lrintf (v * 16777216.0f));
  }
  guint32 r = a + 0x0fffu + ((a >> 13) & 1u);  /* round the 13 dropped bits to even */
  return (guint16) (sign | ((r - (112u << 23)) >> 13));
}

/* How many floats lie between a and b (0: the same value). */
static gint64
ulp_distance (float a, float b)
{
  gint32 ia, ib;
  memcpy (&ia, &a, sizeof ia);
  memcpy (&ib, &b, sizeof ib);
  /* Map the sign-magnitude bit patterns onto a line that orders them like the floats. */
  gint64 la = ia < 0 ? (gint64) G_MININT32 - ia : ia;
  gint64 lb = ib < 0 ? (gint64) G_MININT32 - ib : ib;
  return la > lb ? la - lb : lb - la;
}

/* ---- fixture: preproc.safetensors ----------------------------------------------------------- */

static float *
fixture_preprocess (Sam2Safetensors *st, int size)
{
  const Sam2StTensor *img = sam2_safetensors_find (st, "image_rgb_u8");
  g_assert_nonnull (img);
  g_assert_cmpint (img->dtype, ==, SAM2_DTYPE_U8);
  g_assert_cmpint (img->ndim, ==, 3);
  int h = (int) img->shape[0], w = (int) img->shape[1];
  g_assert_cmpint (img->shape[2], ==, 3);

  GError *error = NULL;
  Sam2Resampler *r = sam2_resampler_new (w, h, size, size, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sam2_resampler_in_width (r), ==, w);
  g_assert_cmpint (sam2_resampler_in_height (r), ==, h);
  float *pv = g_new (float, (size_t) 3 * size * size);
  sam2_preprocess (r, img->data, w * 3, SAM2_PIXEL_FORMAT_RGB, pv);
  sam2_resampler_free (r);
  return pv;
}

static void
test_fixture_preprocess_256 (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("preproc.safetensors");
  if (st == NULL)
    return;
  float *pv = fixture_preprocess (st, 256);
  const Sam2StTensor *ref = sam2_safetensors_find (st, "pixel_values_256");
  g_assert_nonnull (ref);
  g_assert_cmpint (ref->dtype, ==, SAM2_DTYPE_F32);
  g_assert_cmpint (ref->numel, ==, 3 * 256 * 256);

  gint64 max_ulps = 0;
  for (gint64 i = 0; i < ref->numel; i++) {
    float b;
    memcpy (&b, (const guint8 *) ref->data + 4 * i, sizeof b);
    max_ulps = MAX (max_ulps, ulp_distance (pv[i], b));
  }
  g_test_message ("pixel_values_256: max %" G_GINT64_FORMAT " ulp", max_ulps);
  g_assert_cmpint (max_ulps, <=, PREPROC_MAX_ULPS);
  g_free (pv);
  sam2_safetensors_close (st);
}

static void
test_fixture_preprocess_1024 (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("preproc.safetensors");
  if (st == NULL)
    return;
  float *pv = fixture_preprocess (st, 1024);
  const Sam2StTensor *ref = sam2_safetensors_find (st, "pixel_values_1024");
  g_assert_nonnull (ref);
  g_assert_cmpint (ref->dtype, ==, SAM2_DTYPE_F16);
  g_assert_cmpint (ref->numel, ==, 3 * 1024 * 1024);

  /* Stored as fp16: our float32, rounded the way .half() rounds, must give the same bits. */
  gint64 mismatches = 0;
  for (gint64 i = 0; i < ref->numel; i++) {
    guint16 b;
    memcpy (&b, (const guint8 *) ref->data + 2 * i, sizeof b);
    mismatches += f32_to_f16_bits (pv[i]) != b;
  }
  g_assert_cmpint (mismatches, ==, 0);
  g_free (pv);
  sam2_safetensors_close (st);
}

/* (1, 1, 3, 64, 64) mask logits -> (1, 3, 120, 160), one plane at a time as post_process_masks
 * (F.interpolate is per channel). */
static float *
fixture_post_logits (Sam2Safetensors *st, int *out_h, int *out_w, gint64 *n)
{
  const Sam2StTensor *masks = sam2_safetensors_find (st, "mini_pred_masks");
  const Sam2StTensor *post = sam2_safetensors_find (st, "mini_post_logits");
  g_assert_nonnull (masks);
  g_assert_nonnull (post);
  g_assert_cmpint (masks->ndim, ==, 5);
  g_assert_cmpint (post->ndim, ==, 4);
  int planes = (int) masks->shape[2], h = (int) masks->shape[3], w = (int) masks->shape[4];
  *out_h = (int) post->shape[2];
  *out_w = (int) post->shape[3];
  g_assert_cmpint (post->shape[1], ==, planes);

  GError *error = NULL;
  float *low = sam2_safetensors_read_f32 (st, "mini_pred_masks", -1, &error);
  g_assert_no_error (error);
  *n = (gint64) planes * *out_h * *out_w;
  float *up = g_new (float, *n);
  for (int c = 0; c < planes; c++)
    sam2_upsample_bilinear (low + (size_t) c * h * w, h, w, up + (size_t) c * *out_h * *out_w,
                            *out_h, *out_w);
  g_free (low);
  return up;
}

static void
test_fixture_post_logits (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("preproc.safetensors");
  if (st == NULL)
    return;
  int oh, ow;
  gint64 n;
  float *up = fixture_post_logits (st, &oh, &ow, &n);
  GError *error = NULL;
  float *ref = sam2_safetensors_read_f32 (st, "mini_post_logits", n, &error);
  g_assert_no_error (error);

  double max_ref = 0.0;
  for (gint64 i = 0; i < n; i++)
    max_ref = fmax (max_ref, fabs (ref[i]));
  double max_rel = sam2_max_abs_diff (up, ref, n) / max_ref, rel_l2 = sam2_rel_l2 (up, ref, n);
  g_test_message ("mini_post_logits: max |diff| %.3g of max |ref|, relative L2 %.3g", max_rel,
                  rel_l2);
  g_assert_cmpfloat (max_rel, <=, POST_LOGITS_MAX_REL);
  g_assert_cmpfloat (rel_l2, <=, POST_LOGITS_REL_L2);
  g_free (ref);
  g_free (up);
  sam2_safetensors_close (st);
}

static void
test_fixture_post_binary (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("preproc.safetensors");
  if (st == NULL)
    return;
  int oh, ow;
  gint64 n;
  float *up = fixture_post_logits (st, &oh, &ow, &n);
  const Sam2StTensor *ref = sam2_safetensors_find (st, "mini_post_binary");
  g_assert_nonnull (ref);
  g_assert_cmpint (ref->numel, ==, n);
  g_assert_true (ref->dtype == SAM2_DTYPE_U8 || ref->dtype == SAM2_DTYPE_BOOL);

  guint8 *mask = g_malloc (n);
  size_t set = sam2_threshold (up, n, 0.0f, mask);
  size_t ref_set = 0;
  for (gint64 i = 0; i < n; i++)
    ref_set += ((const guint8 *) ref->data)[i] != 0;
  g_assert_cmpuint (set, ==, ref_set);
  g_assert_cmpmem (mask, n, ref->data, n);
  g_free (mask);
  g_free (up);
  sam2_safetensors_close (st);
}

/* ---- self-made references: tests/data/image-refs.safetensors -------------------------------- */

static void
test_refs_resize (void)
{
  Sam2Safetensors *st = open_image_refs ();
  char **names = ref_cases (st, "resize_cases");
  for (char **name = names; *name != NULL; name++) {
    char kind[16], digest[65];
    int seed, w, h, ow, oh, format, pad, step;
    g_assert_cmpint (sscanf (ref_meta (st, "resize", *name), "%15s %d %d %d %d %d %d %d %d %64s",
                             kind, &seed, &w, &h, &ow, &oh, &format, &pad, &step, digest), ==, 10);
    int stride;
    guint8 *frame = make_frame (kind, seed, w, h, format, pad, &stride);
    GError *error = NULL;
    Sam2Resampler *r = sam2_resampler_new (w, h, ow, oh, &error);
    g_assert_no_error (error);
    size_t row_bytes = (size_t) ow * 3;
    guint8 *out = g_malloc (row_bytes * oh);
    sam2_resampler_resize_rgb8 (r, frame, stride, format, out);

    /* The sampled rows first: a failure there says where and by how much. */
    const Sam2StTensor *rows = ref_tensor (st, "resize", *name, SAM2_DTYPE_U8);
    g_assert_cmpint (rows->shape[0], ==, (oh + step - 1) / step);
    g_assert_cmpint (rows->shape[1], ==, (gint64) row_bytes);
    for (int i = 0; i < rows->shape[0]; i++) {
      const guint8 *want = (const guint8 *) rows->data + i * row_bytes;
      const guint8 *got = out + (size_t) i * step * row_bytes;
      for (size_t b = 0; b < row_bytes; b++)
        if (got[b] != want[b])
          g_error ("resize %s: row %d byte %zu is %d, torch %d", *name, i * step, b, got[b],
                   want[b]);
    }
    assert_sha256 (*name, out, row_bytes * oh, digest);
    g_test_message ("resize %s (%dx%d -> %dx%d, format %d, pad %d): exact", *name, w, h, ow, oh,
                    format, pad);
    g_free (out);
    sam2_resampler_free (r);
    g_free (frame);
  }
  g_strfreev (names);
  sam2_safetensors_close (st);
}

static void
test_refs_upsample (void)
{
  Sam2Safetensors *st = open_image_refs ();
  char **names = ref_cases (st, "upsample_cases");
  for (char **name = names; *name != NULL; name++) {
    char digest[65];
    int seed, w, h, ow, oh, step;
    g_assert_cmpint (sscanf (ref_meta (st, "upsample", *name), "%d %d %d %d %d %d %64s", &seed,
                             &w, &h, &ow, &oh, &step, digest), ==, 7);
    float *src = hash_plane (seed, w, h);
    float *out = g_new (float, (size_t) ow * oh);
    sam2_upsample_bilinear (src, h, w, out, oh, ow);

    const Sam2StTensor *rows = ref_tensor (st, "upsample", *name, SAM2_DTYPE_F32);
    g_assert_cmpint (rows->shape[0], ==, (oh + step - 1) / step);
    g_assert_cmpint (rows->shape[1], ==, ow);
    for (int i = 0; i < rows->shape[0]; i++) {
      for (int x = 0; x < ow; x++) {
        float want, got = out[(size_t) i * step * ow + x];
        memcpy (&want, (const guint8 *) rows->data + ((size_t) i * ow + x) * 4, sizeof want);
        if (memcmp (&got, &want, sizeof got) != 0)
          g_error ("upsample %s: (%d, %d) is %.9g, torch %.9g", *name, i * step, x, got, want);
      }
    }
    assert_sha256 (*name, out, sizeof (float) * ow * oh, digest);
    g_free (out);
    g_free (src);
  }
  g_strfreev (names);
  sam2_safetensors_close (st);
}

static void
test_refs_processor (void)
{
  Sam2Safetensors *st = open_image_refs ();
  char **names = ref_cases (st, "processor_cases");
  for (char **name = names; *name != NULL; name++) {
    char kind[16];
    int seed, w, h, size, format, pad;
    g_assert_cmpint (sscanf (ref_meta (st, "processor", *name), "%15s %d %d %d %d %d %d", kind,
                             &seed, &w, &h, &size, &format, &pad), ==, 7);
    int stride;
    guint8 *frame = make_frame (kind, seed, w, h, format, pad, &stride);
    GError *error = NULL;
    Sam2Resampler *r = sam2_resampler_new (w, h, size, size, &error);
    g_assert_no_error (error);
    size_t n = (size_t) 3 * size * size;
    float *pv = g_new (float, n);
    sam2_preprocess (r, frame, stride, format, pv);
    const Sam2StTensor *ref = ref_tensor (st, "processor", *name, SAM2_DTYPE_F32);
    g_assert_cmpint (ref->numel, ==, (gint64) n);
    g_assert_cmpmem (pv, n * sizeof (float), ref->data, ref->nbytes);
    g_free (pv);
    sam2_resampler_free (r);
    g_free (frame);
  }
  g_strfreev (names);
  sam2_safetensors_close (st);
}

/* Every byte value, every channel: the whole of the normalisation. */
static void
test_refs_normalize (void)
{
  Sam2Safetensors *st = open_image_refs ();
  const Sam2StTensor *lut = sam2_safetensors_find (st, "normalize_lut");
  g_assert_nonnull (lut);
  g_assert_cmpint (lut->numel, ==, 3 * 256);
  guint8 ramp[256 * 3];
  for (int v = 0; v < 256; v++)
    memset (ramp + 3 * v, v, 3);
  float pv[3 * 256];
  sam2_normalize_rgb8 (ramp, 256, 1, pv);
  g_assert_cmpmem (pv, sizeof pv, lut->data, lut->nbytes);
  sam2_safetensors_close (st);
}

/* ---- formats, strides, pass skipping -------------------------------------------------------- */

/* One image in all six layouts, with and without row padding, resizes to the same bytes as
 * packed RGB; sam2_preprocess equals resize + sam2_normalize_rgb8. Sizes cover both passes,
 * either pass alone and none. */
static void
test_formats (void)
{
  static const int sizes[][4] = {
    { 123, 45, 64, 100 }, { 50, 30, 200, 90 }, { 77, 40, 77, 64 }, { 77, 40, 30, 40 },
    { 31, 17, 31, 17 }, { 2, 1, 5, 3 },
  };
  static const int pads[] = { 0, 1, 13 };
  for (size_t s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int w = sizes[s][0], h = sizes[s][1], ow = sizes[s][2], oh = sizes[s][3];
    int rgb_stride;
    guint8 *rgb = make_frame ("noise", 40 + s, w, h, SAM2_PIXEL_FORMAT_RGB, 0, &rgb_stride);
    GError *error = NULL;
    Sam2Resampler *r = sam2_resampler_new (w, h, ow, oh, &error);
    g_assert_no_error (error);
    size_t out_bytes = (size_t) ow * oh * 3, n_values = (size_t) ow * oh * 3;
    guint8 *expected = g_malloc (out_bytes), *out = g_malloc (out_bytes);
    float *expected_pv = g_new (float, n_values), *pv = g_new (float, n_values);
    sam2_resampler_resize_rgb8 (r, rgb, rgb_stride, SAM2_PIXEL_FORMAT_RGB, expected);
    sam2_normalize_rgb8 (expected, ow, oh, expected_pv);

    for (int f = SAM2_PIXEL_FORMAT_RGB; f <= SAM2_PIXEL_FORMAT_BGRX; f++) {
      for (size_t p = 0; p < G_N_ELEMENTS (pads); p++) {
        int stride;
        guint8 *frame = repack (rgb, w, h, f, pads[p], &stride);
        memset (out, 0xab, out_bytes);
        sam2_resampler_resize_rgb8 (r, frame, stride, f, out);
        g_assert_cmpmem (out, out_bytes, expected, out_bytes);
        sam2_preprocess (r, frame, stride, f, pv);
        g_assert_cmpmem (pv, n_values * sizeof (float), expected_pv, n_values * sizeof (float));
        g_free (frame);
      }
    }
    if (w == ow && h == oh)
      g_assert_cmpmem (expected, out_bytes, rgb, out_bytes);
    g_free (pv);
    g_free (expected_pv);
    g_free (out);
    g_free (expected);
    sam2_resampler_free (r);
    g_free (rgb);
  }
}

static void
test_pixel_formats (void)
{
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_RGB), ==, 3);
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_BGR), ==, 3);
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_RGBA), ==, 4);
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_RGBX), ==, 4);
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_BGRA), ==, 4);
  g_assert_cmpint (sam2_pixel_format_bpp (SAM2_PIXEL_FORMAT_BGRX), ==, 4);
  g_assert_false (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_RGB));
  g_assert_false (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_RGBA));
  g_assert_false (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_RGBX));
  g_assert_true (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_BGR));
  g_assert_true (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_BGRA));
  g_assert_true (sam2_pixel_format_is_bgr (SAM2_PIXEL_FORMAT_BGRX));
}

static void
assert_resampler_refused (int in_w, int in_h, int out_w, int out_h)
{
  GError *error = NULL;
  Sam2Resampler *r = sam2_resampler_new (in_w, in_h, out_w, out_h, &error);
  g_assert_null (r);
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "16384"));
  g_error_free (error);
}

static void
test_resampler_errors (void)
{
  assert_resampler_refused (0, 10, 10, 10);
  assert_resampler_refused (10, -1, 10, 10);
  assert_resampler_refused (10, 10, 0, 10);
  assert_resampler_refused (10, 10, 10, -7);
  assert_resampler_refused (16385, 10, 10, 10);
  assert_resampler_refused (10, 10, 10, 16385);
  assert_resampler_refused (G_MININT, G_MAXINT, 1, 1);

  /* The limit itself is fine (a 16384 x 2 strip to one pixel). */
  GError *error = NULL;
  Sam2Resampler *r = sam2_resampler_new (16384, 2, 1, 1, &error);
  g_assert_no_error (error);
  guint8 *strip = g_malloc (16384 * 2 * 3), out[3];
  memset (strip, 77, 16384 * 2 * 3);
  sam2_resampler_resize_rgb8 (r, strip, 16384 * 3, SAM2_PIXEL_FORMAT_RGB, out);
  g_assert_cmpint (out[0], ==, 77);
  g_assert_cmpint (out[2], ==, 77);
  g_free (strip);
  sam2_resampler_free (r);
  sam2_resampler_free (NULL);
}

/* ---- threshold and boxes -------------------------------------------------------------------- */

static void
test_threshold (void)
{
  const float logits[] = { -1.0f, 0.0f, 0.5f, -0.0f, 2.0f, 1e-30f, NAN };
  guint8 mask[G_N_ELEMENTS (logits)];
  const guint8 at_zero[] = { 0, 0, 1, 0, 1, 1, 0 };
  g_assert_cmpuint (sam2_threshold (logits, G_N_ELEMENTS (logits), 0.0f, mask), ==, 3);
  g_assert_cmpmem (mask, sizeof mask, at_zero, sizeof at_zero);
  const guint8 at_half[] = { 0, 0, 0, 0, 1, 0, 0 };   /* strictly greater, as "masks > t" */
  g_assert_cmpuint (sam2_threshold (logits, G_N_ELEMENTS (logits), 0.5f, mask), ==, 1);
  g_assert_cmpmem (mask, sizeof mask, at_half, sizeof at_half);
  g_assert_cmpuint (sam2_threshold (NULL, 0, 0.0f, NULL), ==, 0);
}

static void
assert_box (Sam2Box box, int x0, int y0, int x1, int y1)
{
  g_assert_cmpint (box.x0, ==, x0);
  g_assert_cmpint (box.y0, ==, y0);
  g_assert_cmpint (box.x1, ==, x1);
  g_assert_cmpint (box.y1, ==, y1);
}

static void
test_mask_box (void)
{
  enum { W = 7, H = 5 };
  guint8 mask[W * H] = { 0 };

  Sam2Box empty = sam2_mask_box (mask, W, H);
  g_assert_cmpint (empty.x1, <, empty.x0);
  assert_box (empty, 0, 0, -1, -1);
  assert_box (sam2_mask_box (NULL, 0, 0), 0, 0, -1, -1);

  mask[3 * W + 4] = 1;
  assert_box (sam2_mask_box (mask, W, H), 4, 3, 4, 3);

  mask[1 * W + 5] = 1;                   /* right of and above the first: box grows both ways */
  mask[4 * W + 2] = 255;                 /* any non-zero byte counts */
  assert_box (sam2_mask_box (mask, W, H), 2, 1, 5, 4);

  memset (mask, 1, sizeof mask);
  assert_box (sam2_mask_box (mask, W, H), 0, 0, W - 1, H - 1);

  memset (mask, 0, sizeof mask);
  mask[0] = 1;
  mask[W * H - 1] = 1;
  assert_box (sam2_mask_box (mask, W, H), 0, 0, W - 1, H - 1);
}

/* The box of random masks (sparse blobs and scattered bytes, widths around the 8-byte steps)
 * against a plain scan of every byte. */
static void
test_mask_box_random (void)
{
  static const int sizes[][2] = { { 1, 1 }, { 7, 3 }, { 8, 2 }, { 9, 5 }, { 15, 4 }, { 16, 16 },
                                  { 17, 9 }, { 64, 33 }, { 1920, 12 } };
  GRand *r = g_rand_new_with_seed (2711);
  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++) {
    const int W = sizes[si][0], H = sizes[si][1];
    guint8 *mask = g_new0 (guint8, (size_t) W * H);
    for (int trial = 0; trial < 50; trial++) {
      memset (mask, 0, (size_t) W * H);
      const int set = g_rand_int_range (r, 0, 4);
      for (int k = 0; k < set; k++)
        mask[g_rand_int_range (r, 0, W * H)] = (guint8) g_rand_int_range (r, 1, 256);
      int x0 = W, y0 = H, x1 = -1, y1 = -1;
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
          if (mask[(size_t) y * W + x]) {
            x0 = MIN (x0, x);
            x1 = MAX (x1, x);
            y0 = MIN (y0, y);
            y1 = MAX (y1, y);
          }
      if (y1 < 0)
        assert_box (sam2_mask_box (mask, W, H), 0, 0, -1, -1);
      else
        assert_box (sam2_mask_box (mask, W, H), x0, y0, x1, y1);
    }
    g_free (mask);
  }
  g_rand_free (r);
}

/* sam2_upsample_threshold against sam2_upsample_bilinear then sam2_threshold: the same bytes and
 * count, for a 1080p frame, small outputs (torch's other kernel), heights that leave a partial
 * last block, one row, and more threads than the scratch was sized for. */
static void
test_upsample_threshold (void)
{
  static const int outs[][2] = { { 1080, 1920 }, { 37, 45 }, { 50, 60 }, { 1, 300 }, { 17, 3 },
                                 { 256, 256 } };
  const int ms = 64;
  float *src = hash_plane (91, ms, ms);
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++) {
    const int oh = outs[i][0], ow = outs[i][1];
    const size_t n = (size_t) oh * ow;
    float *plane = g_new (float, n);
    guint8 *want = g_new (guint8, n), *got = g_new (guint8, n);
    sam2_upsample_bilinear (src, ms, ms, plane, oh, ow);
    const float threshold = 0.25f;
    const size_t want_count = sam2_threshold (plane, n, threshold, want);
    const size_t floats = sam2_upsample_threshold_scratch (ms, oh, ow);
    float *scratch = g_new (float, floats);
    memset (got, 0xaa, n);
    const size_t got_count = sam2_upsample_threshold (src, ms, ms, oh, ow, threshold, scratch,
                                                      floats, got);
    g_assert_cmpuint (got_count, ==, want_count);
    g_assert_cmpmem (got, n, want, n);
    g_free (scratch);
    g_free (plane);
    g_free (want);
    g_free (got);
  }
  /* a scratch sized for one thread, used with more threads: one block at a time */
  const int saved = sam2_get_num_threads ();
  sam2_set_num_threads (1);
  const size_t one = sam2_upsample_threshold_scratch (ms, 1080, 1920);
  g_assert_cmpuint (one, ==, (size_t) (ms + 16) * 1920);
  sam2_set_num_threads (4);
  float *scratch = g_new (float, one);
  guint8 *a = g_new (guint8, 1080 * 1920), *b = g_new (guint8, 1080 * 1920);
  float *plane = g_new (float, 1080 * 1920);
  sam2_upsample_bilinear (src, ms, ms, plane, 1080, 1920);
  sam2_threshold (plane, (size_t) 1080 * 1920, 0.0f, a);
  sam2_upsample_threshold (src, ms, ms, 1080, 1920, 0.0f, scratch, one, b);
  g_assert_cmpmem (a, 1080 * 1920, b, 1080 * 1920);
  sam2_set_num_threads (saved);
  g_free (scratch);
  g_free (plane);
  g_free (a);
  g_free (b);
  g_free (src);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/image/fixture/preprocess-256", test_fixture_preprocess_256);
  g_test_add_func ("/image/fixture/preprocess-1024-fp16", test_fixture_preprocess_1024);
  g_test_add_func ("/image/fixture/post-logits", test_fixture_post_logits);
  g_test_add_func ("/image/fixture/post-binary", test_fixture_post_binary);
  g_test_add_func ("/image/refs/resize", test_refs_resize);
  g_test_add_func ("/image/refs/upsample", test_refs_upsample);
  g_test_add_func ("/image/refs/processor", test_refs_processor);
  g_test_add_func ("/image/refs/normalize", test_refs_normalize);
  g_test_add_func ("/image/formats-and-strides", test_formats);
  g_test_add_func ("/image/pixel-formats", test_pixel_formats);
  g_test_add_func ("/image/resampler-errors", test_resampler_errors);
  g_test_add_func ("/image/threshold", test_threshold);
  g_test_add_func ("/image/mask-box", test_mask_box);
  g_test_add_func ("/image/mask-box-random", test_mask_box_random);
  g_test_add_func ("/image/upsample-threshold", test_upsample_threshold);
  int status = g_test_run ();
#ifdef _OPENMP
  /* Joins libgomp's worker threads, which otherwise outlive main and leave valgrind reporting
   * their thread-local storage as possibly lost. */
  omp_pause_resource_all (omp_pause_hard);
#endif
  return status;
}
