/* test-batch.c: encoder passes of several images (Sam2SessionOptions.max_batch,
 * sam2_session_encode_batch / _set_images / _select_image) on the CPU backend.
 *
 *   - sam2-mini-hash (q-pooling, window padding, a global block, 256x256) in FP32 and the same
 *     model quantized W4A8 here: one pass of three images gives each image's features and
 *     decoder outputs as a pass of it alone, with the images selected out of order;
 *   - frames (set_images) give what set_image gives frame by frame, prompts in frame pixels, and
 *     so do frames of different sizes staged into one pass (stage_image, encode_resident);
 *   - the misuses end in an error naming the limit: a max_batch out of range, a pass of 0 or
 *     too many images, selecting an image the last pass did not have.
 *
 *   test-batch RECIPE.yaml     (meson passes configs/hiera_tiny_w4a8.yaml)
 */
#include "session.h"
#include "check.h"
#include "test-support.h"

#include <string.h>

#define N_IMAGES 3

static const char *recipe_path;

static void
test_batch_float (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  sam2_test_check_batch (fp, &cpu, N_IMAGES, SAM2_TEST_BATCH_FP32_TOL);
  sam2_model_unref (fp);
}

static void
test_batch_w4a8 (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  Sam2Model *q = sam2_test_quantize_random (fp, recipe_path, 2);
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  sam2_test_check_batch (q, &cpu, N_IMAGES, SAM2_TEST_BATCH_W4A8_TOL);
  sam2_model_unref (q);
  sam2_model_unref (fp);
}

/* The BF16 precision (AVX-512 BF16 CPUs): the same roundings per element in both passes; oneDNN's
 * GEMM may block the sums by row count, which can move a bfloat16 rounding of an activation by
 * one step, carried on through the model: bounded by the precision's own bound against float64,
 * as the CUDA backend's BF16 batches are (on the Zen 4 development machine both passes gave the
 * same bits). */
static void
test_batch_bf16 (void)
{
  GError *error = NULL;
  if (!sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, &error)) {
    g_test_skip (error->message);
    g_error_free (error);
    return;
  }
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  const Sam2SessionOptions cpu = { SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, 1 };
  sam2_test_check_batch (fp, &cpu, N_IMAGES, SAM2_CHECK_TOL_BF16);
  sam2_model_unref (fp);
}

/* A frame of gradients and a disc, different per seed. */
static guint8 *
make_frame (int w, int h, int seed)
{
  guint8 *px = g_malloc ((size_t) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      guint8 *p = px + ((size_t) y * w + x) * 3;
      const int dx = x - w / 2 - seed * 7, dy = y - h / 3;
      const gboolean disc = dx * dx + dy * dy < (h / 4) * (h / 4);
      p[0] = (guint8) (disc ? 230 : (x * 255 / w + seed * 40) & 255);
      p[1] = (guint8) (disc ? 40 : y * 255 / h);
      p[2] = (guint8) ((x + y + seed * 13) & 255);
    }
  return px;
}

/* Frame masks of every image of a set_images pass equal set_image's, frame by frame. */
static void
test_batch_frames (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  const int W = 200, H = 150;
  guint8 *frames[N_IMAGES];
  for (int i = 0; i < N_IMAGES; i++)
    frames[i] = make_frame (W, H, i);
  const Sam2Point pt = { W * 0.5f, H * 0.33f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &pt, .n_points = 1 };
  const Sam2PredictOptions predict = SAM2_PREDICT_OPTIONS_INIT;
  GError *error = NULL;

  const Sam2SessionOptions one = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  Sam2Session *single = sam2_session_new_full (fp, &one, &error);
  g_assert_no_error (error);
  guint8 *want[N_IMAGES];
  size_t plane = 0;
  for (int i = 0; i < N_IMAGES; i++) {
    g_assert_true (sam2_session_set_image (single, frames[i], W, H, W * 3, SAM2_PIXEL_FORMAT_RGB,
                                           &error));
    g_assert_no_error (error);
    const Sam2Result *r = sam2_session_predict (single, &prompt, 1, &predict, &error);
    g_assert_no_error (error);
    g_assert_cmpint (r->width, ==, W);
    plane = (size_t) r->n_masks * W * H;
    want[i] = g_memdup2 (r->masks, plane);
  }
  sam2_session_free (single);

  const Sam2SessionOptions batch_options = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, N_IMAGES };
  Sam2Session *batch = sam2_session_new_full (fp, &batch_options, &error);
  g_assert_no_error (error);
  g_assert_true (sam2_session_set_images (batch, (const guint8 *const *) frames, N_IMAGES, W, H,
                                          W * 3, SAM2_PIXEL_FORMAT_RGB, &error));
  g_assert_no_error (error);
  for (int i = N_IMAGES - 1; i >= 0; i--) {
    g_assert_true (sam2_session_select_image (batch, i, &error));
    g_assert_no_error (error);
    const Sam2Result *r = sam2_session_predict (batch, &prompt, 1, &predict, &error);
    g_assert_no_error (error);
    /* FP32 rounding between the two passes could flip a pixel whose logit is ~0; none did */
    size_t differ = 0;
    for (size_t k = 0; k < plane; k++)
      differ += r->masks[k] != want[i][k];
    g_test_message ("frame %d: %zu of %zu mask pixels differ", i, differ, plane);
    g_assert_cmpuint (differ, ==, 0);
  }
  sam2_session_free (batch);
  for (int i = 0; i < N_IMAGES; i++) {
    g_free (frames[i]);
    g_free (want[i]);
  }
  sam2_model_unref (fp);
}

/* The masks of a point at (fx, fy) of the frame (fractions of its size), from the selected
 * image of `s`: a copy, n_masks * w * h bytes. */
static guint8 *
point_masks (Sam2Session *s, int w, int h, float fx, float fy, size_t *bytes)
{
  const Sam2Point pt = { w * fx, h * fy, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &pt, .n_points = 1 };
  const Sam2PredictOptions predict = SAM2_PREDICT_OPTIONS_INIT;
  GError *error = NULL;
  const Sam2Result *r = sam2_session_predict (s, &prompt, 1, &predict, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->width, ==, w);
  *bytes = (size_t) r->n_masks * w * h;
  return g_memdup2 (r->masks, *bytes);
}

/* Frames of different sizes staged into one pass (sam2_session_stage_image, slots filled out of
 * order, then sam2_session_encode_resident, as batched calibration does) give each frame's
 * masks as a pass of it alone; a slot past max_batch is refused. */
static void
test_batch_staged (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  const int size[N_IMAGES][2] = { { 200, 150 }, { 120, 90 }, { 256, 256 } };
  guint8 *frames[N_IMAGES], *want[N_IMAGES];
  size_t bytes[N_IMAGES];
  GError *error = NULL;
  const Sam2SessionOptions one = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  Sam2Session *single = sam2_session_new_full (fp, &one, &error);
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES; i++) {
    const int w = size[i][0], h = size[i][1];
    frames[i] = make_frame (w, h, i);
    g_assert_true (sam2_session_set_image (single, frames[i], w, h, w * 3, SAM2_PIXEL_FORMAT_RGB,
                                           &error));
    want[i] = point_masks (single, w, h, 0.5f, 0.33f, &bytes[i]);
  }
  sam2_session_free (single);

  const Sam2SessionOptions batch_options = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, N_IMAGES };
  Sam2Session *s = sam2_session_new_full (fp, &batch_options, &error);
  g_assert_no_error (error);
  const int order[N_IMAGES] = { 2, 0, 1 };
  for (int k = 0; k < N_IMAGES; k++) {
    const int i = order[k], w = size[i][0], h = size[i][1];
    g_assert_true (sam2_session_stage_image (s, i, frames[i], w, h, w * 3, SAM2_PIXEL_FORMAT_RGB,
                                             &error));
    g_assert_no_error (error);
  }
  g_assert_true (sam2_session_encode_resident (s, N_IMAGES, &error));
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES; i++) {
    g_assert_true (sam2_session_select_image (s, i, &error));
    size_t n;
    guint8 *got = point_masks (s, size[i][0], size[i][1], 0.5f, 0.33f, &n);
    g_assert_cmpuint (n, ==, bytes[i]);
    size_t differ = 0;
    for (size_t k = 0; k < n; k++)
      differ += got[k] != want[i][k];
    g_test_message ("frame %d (%dx%d): %zu of %zu mask pixels differ", i, size[i][0], size[i][1],
                    differ, n);
    g_assert_cmpuint (differ, ==, 0);
    g_free (got);
  }
  g_assert_false (sam2_session_stage_image (s, N_IMAGES, frames[0], 200, 150, 600,
                                            SAM2_PIXEL_FORMAT_RGB, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "takes 1 to 3 images"));
  g_clear_error (&error);
  sam2_session_free (s);
  for (int i = 0; i < N_IMAGES; i++) {
    g_free (frames[i]);
    g_free (want[i]);
  }
  sam2_model_unref (fp);
}

static void
assert_fails (gboolean ok, GError **error, const char *fragment)
{
  g_assert_false (ok);
  g_assert_error (*error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s", (*error)->message);
  g_assert_nonnull (strstr ((*error)->message, fragment));
  g_clear_error (error);
}

static void
test_batch_misuse (void)
{
  Sam2Model *fp = sam2_test_load_mini ();
  if (fp == NULL)
    return;
  GError *error = NULL;
  char *range = g_strdup_printf ("1 to %d images per pass", SAM2_SESSION_MAX_BATCH);
  Sam2SessionOptions o = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, -1 };
  g_assert_null (sam2_session_new_full (fp, &o, &error));
  assert_fails (FALSE, &error, range);
  o.max_batch = SAM2_SESSION_MAX_BATCH + 1;
  g_assert_null (sam2_session_new_full (fp, &o, &error));
  assert_fails (FALSE, &error, range);
  g_free (range);

  /* 0 means one image per pass, as a zero-initialised options struct gives */
  o.max_batch = 0;
  Sam2Session *s = sam2_session_new_full (fp, &o, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sam2_session_get_max_batch (s), ==, 1);
  g_assert_cmpint (sam2_session_get_n_images (s), ==, 0);
  assert_fails (sam2_session_select_image (s, 0, &error), &error, "had 0 images");
  sam2_session_free (s);

  o.max_batch = 2;
  s = sam2_session_new_full (fp, &o, &error);
  g_assert_no_error (error);
  const int S = sam2_model_get_image_size (fp);
  float *px = g_new0 (float, (size_t) 3 * 3 * S * S);
  assert_fails (sam2_session_encode_batch (s, px, 3, &error), &error, "takes 1 to 2");
  assert_fails (sam2_session_encode_batch (s, px, 0, &error), &error, "takes 1 to 2");
  guint8 rgb[4 * 4 * 3] = { 0 };
  const guint8 *frames[3] = { rgb, rgb, rgb };
  assert_fails (sam2_session_set_images (s, frames, 3, 4, 4, 12, SAM2_PIXEL_FORMAT_RGB, &error),
                &error, "takes 1 to 2");
  const guint8 *with_null[2] = { rgb, NULL };
  assert_fails (sam2_session_set_images (s, with_null, 2, 4, 4, 12, SAM2_PIXEL_FORMAT_RGB,
                                         &error), &error, "frame 1 of 2 has no pixels");
  g_assert_true (sam2_session_encode_batch (s, px, 2, &error));
  g_assert_no_error (error);
  assert_fails (sam2_session_select_image (s, 2, &error), &error, "had 2 images");
  assert_fails (sam2_session_select_image (s, -1, &error), &error, "had 2 images");
  /* a pass of one image in a session of two */
  g_assert_true (sam2_session_encode (s, px, &error));
  g_assert_no_error (error);
  g_assert_cmpint (sam2_session_get_n_images (s), ==, 1);
  g_assert_true (sam2_session_select_image (s, 0, &error));
  assert_fails (sam2_session_select_image (s, 1, &error), &error, "had 1 image");
  g_free (px);
  sam2_session_free (s);
  sam2_model_unref (fp);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (argc != 2) {
    g_printerr ("usage: %s RECIPE.yaml (configs/hiera_tiny_w4a8.yaml)\n", argv[0]);
    return 2;
  }
  recipe_path = argv[1];
  g_test_add_func ("/batch/float", test_batch_float);
  g_test_add_func ("/batch/w4a8", test_batch_w4a8);
  g_test_add_func ("/batch/bf16", test_batch_bf16);
  g_test_add_func ("/batch/frames", test_batch_frames);
  g_test_add_func ("/batch/staged", test_batch_staged);
  g_test_add_func ("/batch/misuse", test_batch_misuse);
  return g_test_run ();
}
