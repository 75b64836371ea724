/* bench-masks: the per-object mask post-processing of sam2seg and sam2_session_predict's frame
 * masks, alone: low-res logits (256 x 256) upsampled to the frame, thresholded and boxed; and,
 * per frame, the preprocessing of the frame to the model's 1024 x 1024 input.
 *
 *   sam2-bench-masks [--threads N] [--rounds N]
 *
 * Times, per object and frame size (best of N rounds of 30), the current path
 * (sam2_upsample_threshold: columns once per source row, rows blended a block at a time and
 * thresholded in cache, then sam2_mask_box) against the two-pass form it replaced
 * (sam2_upsample_bilinear into a float plane, sam2_threshold, sam2_mask_box). Both give the same
 * bytes (tests/core/test-image.c); the mask is a disc, as a segmented object's logits. A
 * benchmark, not a test: it asserts nothing. */
#include "image.h"
#include "sam2.h"

#include <glib.h>
#include <stdio.h>

#define MASK_SIZE 256
#define REPEATS 30

static double
now_ms (void)
{
  return (double) g_get_monotonic_time () / 1e3;
}

/* The other host work of every frame: sam2_preprocess of an RGB frame to the model's input
 * (1024 x 1024 floats), per frame rather than per object. */
static void
bench_preprocess (int W, int H, int rounds)
{
  const int S = 1024;
  GError *error = NULL;
  Sam2Resampler *r = sam2_resampler_new (W, H, S, S, &error);
  if (r == NULL) {
    g_printerr ("%s\n", error->message);
    g_error_free (error);
    return;
  }
  guint8 *rgb = g_new (guint8, (size_t) W * H * 3);
  for (size_t i = 0; i < (size_t) W * H * 3; i++)
    rgb[i] = (guint8) ((i * 2654435761u) >> 24);
  float *pixels = g_new (float, (size_t) 3 * S * S);
  double best = G_MAXDOUBLE;
  for (int k = 0; k < rounds * 3; k++) {
    double t0 = now_ms ();
    sam2_preprocess (r, rgb, W * 3, SAM2_PIXEL_FORMAT_RGB, pixels);
    best = MIN (best, now_ms () - t0);
  }
  g_print ("%4dx%-4d  preprocessing to %dx%d (per frame): %6.2f ms\n", W, H, S, S, best);
  g_free (pixels);
  g_free (rgb);
  sam2_resampler_free (r);
}

int
main (int argc, char **argv)
{
  int threads = 0, rounds = 7;
  GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: one per core)", "N" },
    { "rounds", 'r', 0, G_OPTION_ARG_INT, &rounds, "rounds, the best is printed (default 7)",
      "N" },
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("- mask post-processing per object");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || threads < 0 || rounds < 1) {
    g_printerr ("sam2-bench-masks: %s\n", error ? error->message : "--threads >= 0, --rounds >= 1");
    g_option_context_free (ctx);
    return 2;
  }
  g_option_context_free (ctx);
  sam2_set_num_threads (threads);
  g_print ("threads: %d\n", sam2_get_num_threads ());

  float *logits = g_new (float, MASK_SIZE * MASK_SIZE);
  for (int y = 0; y < MASK_SIZE; y++)
    for (int x = 0; x < MASK_SIZE; x++) {
      const float dx = x - 100.0f, dy = y - 140.0f;
      logits[y * MASK_SIZE + x] = 40.0f - (dx * dx + dy * dy) / 50.0f;
    }
  static const int frames[][2] = { { 1280, 720 }, { 1920, 1080 }, { 3840, 2160 } };
  for (guint f = 0; f < G_N_ELEMENTS (frames); f++) {
    const int W = frames[f][0], H = frames[f][1];
    const size_t plane = (size_t) W * H;
    float *up = g_new (float, plane);
    const size_t scratch_floats = sam2_upsample_threshold_scratch (MASK_SIZE, H, W);
    float *scratch = g_new (float, scratch_floats);
    guint8 *mask = g_new (guint8, plane);
    double two_pass = G_MAXDOUBLE, fused = G_MAXDOUBLE;
    volatile int sink = 0;
    for (int r = 0; r < rounds; r++) {
      double t0 = now_ms ();
      for (int k = 0; k < REPEATS; k++) {
        sam2_upsample_bilinear (logits, MASK_SIZE, MASK_SIZE, up, H, W);
        sam2_threshold (up, plane, 0.0f, mask);
        sink += sam2_mask_box (mask, W, H).x1;
      }
      double t1 = now_ms ();
      for (int k = 0; k < REPEATS; k++) {
        sam2_upsample_threshold (logits, MASK_SIZE, MASK_SIZE, H, W, 0.0f, scratch,
                                 scratch_floats, mask);
        sink += sam2_mask_box (mask, W, H).x1;
      }
      double t2 = now_ms ();
      two_pass = MIN (two_pass, (t1 - t0) / REPEATS);
      fused = MIN (fused, (t2 - t1) / REPEATS);
    }
    g_print ("%4dx%-4d  upsample + threshold + box: %6.2f ms (two passes over a float plane: "
             "%6.2f ms)\n", W, H, fused, two_pass);
    g_free (up);
    bench_preprocess (W, H, rounds);
    g_free (scratch);
    g_free (mask);
  }
  g_free (logits);
  return 0;
}
