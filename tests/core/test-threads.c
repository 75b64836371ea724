/* test-threads.c: sam2_set_num_threads holds for work started on any thread.
 *
 * OpenMP keeps its thread count per thread, so a count set on the main thread would not reach a
 * session driven from another (a GStreamer streaming thread). The count asked for here is one
 * more than the cores, which neither OpenMP's default nor a fresh thread has, and the other
 * thread's count is read after each entry point ran there. */
#include "model.h"
#include "test-support.h"

#include <omp.h>

typedef struct {
  Sam2Model *model;
  int encoder_threads, decoder_threads;
} ThreadRun;

static gpointer
run_session (gpointer data)
{
  ThreadRun *run = data;
  GError *error = NULL;
  Sam2Session *s = sam2_session_new (run->model, &error);
  g_assert_no_error (error);
  const size_t n = sam2_model_image_floats (run->model);
  float *px = g_new (float, n);
  sam2_test_fill_pixels (px, n, 3);
  g_assert_true (sam2_session_encode (s, px, &error));
  run->encoder_threads = omp_get_max_threads ();
  omp_set_num_threads (1);       /* the decoder must apply the count again */
  const int S = sam2_model_get_image_size (run->model);
  const Sam2Point pt = { S * 0.5f, S * 0.5f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &pt, .n_points = 1 };
  g_assert_nonnull (sam2_session_decode (s, &prompt, 1, FALSE, &error));
  g_assert_no_error (error);
  run->decoder_threads = omp_get_max_threads ();
  g_free (px);
  sam2_session_free (s);
  return NULL;
}

static void
test_other_thread (void)
{
  Sam2Model *model = sam2_test_load_mini ();
  if (model == NULL)
    return;
  const int saved = sam2_get_num_threads (), wanted = omp_get_num_procs () + 1;
  sam2_set_num_threads (wanted);
  ThreadRun run = { model, 0, 0 };
  g_thread_join (g_thread_new ("session", run_session, &run));
  sam2_set_num_threads (saved);
  g_assert_cmpint (run.encoder_threads, ==, wanted);
  g_assert_cmpint (run.decoder_threads, ==, wanted);
  sam2_model_unref (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/threads/other-thread", test_other_thread);
  return g_test_run ();
}
