/* test-sam2seg-eval.c: on the 48 sam2-shapes evaluation images, the masks sam2seg attaches are
 * exactly the core API's masks for the same point and the same box: the pipeline (buffers,
 * strides, prompt strings, cropping to the box and back) adds no error. Skipped (77) when the
 * fixtures are absent. */
#include "test-util.h"

#include <string.h>

#include "safetensors.h"
#include "sam2.h"

#define EVAL_SET "sam2-shapes/eval_dev.safetensors"

static gchar *
fixture_path (void)
{
  const gchar *dir = g_getenv ("SAM2_FIXTURES");
  if (dir == NULL)
    dir = g_getenv ("SAM2_FIXTURES_DEFAULT");
  return dir != NULL ? g_build_filename (dir, EVAL_SET, NULL) : NULL;
}

GST_START_TEST (test_eval_set_matches_core)
{
  gchar *path = fixture_path ();
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  const Sam2StTensor *images;
  float *points, *boxes;
  Sam2Model *model;
  Sam2Session *session;
  GstHarness *h;
  gint N, S;
  gsize total_diff = 0;
  gint n_nonempty = 0;

  fail_unless (st != NULL, "%s", error ? error->message : "");
  images = sam2_safetensors_find (st, "images_rgb_u8");
  fail_unless (images != NULL && images->dtype == SAM2_DTYPE_U8 && images->ndim == 4);
  N = (gint) images->shape[0];
  S = (gint) images->shape[1];
  fail_unless_equals_int (N, 48);
  points = sam2_safetensors_read_f32 (st, "points_xy", (int64_t) N * 2, &error);
  boxes = sam2_safetensors_read_f32 (st, "boxes_xyxy", (int64_t) N * 4, &error);
  fail_unless (points != NULL && boxes != NULL, "%s", error ? error->message : "");

  model = sam2_model_load (test_model_path (), &error);
  fail_unless (model != NULL, "%s", error ? error->message : "");
  session = sam2_session_new (model, &error);
  fail_unless (session != NULL);
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, S, S, NULL);

  for (gint i = 0; i < N; i++) {
    const guint8 *rgb = (const guint8 *) images->data + (gsize) i * S * S * 3;
    Sam2Point click = { points[2 * i], points[2 * i + 1], SAM2_LABEL_POSITIVE };
    Sam2Prompt prompts[2] = { {0} };
    const Sam2Result *r;
    gchar pstr[64], bstr[128];
    gboolean ok = FALSE;
    GstBuffer *out;
    GstSam2MaskMeta *meta;

    /* %.9g round-trips a float exactly */
    g_snprintf (pstr, sizeof pstr, "%.9g,%.9g", click.x, click.y);
    g_snprintf (bstr, sizeof bstr, "; %.9g,%.9g,%.9g,%.9g", boxes[4 * i], boxes[4 * i + 1],
        boxes[4 * i + 2], boxes[4 * i + 3]);
    g_signal_emit_by_name (h->element, "set-prompts", pstr, bstr, &ok);
    fail_unless (ok, "image %d: prompts %s / %s refused", i, pstr, bstr);
    /* odd padding, so that strides are honoured */
    fail_unless_equals_int (gst_harness_push (h, test_make_frame (rgb, S, S,
                GST_VIDEO_FORMAT_RGB, 4 * (i % 5), i * GST_MSECOND)), GST_FLOW_OK);
    out = gst_harness_pull (h);
    meta = gst_buffer_get_sam2_mask_meta (out);
    fail_unless (meta != NULL);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);

    prompts[0].points = &click;
    prompts[0].n_points = 1;
    prompts[1].has_box = TRUE;
    memcpy (prompts[1].box, boxes + 4 * i, sizeof prompts[1].box);
    fail_unless (sam2_session_set_image (session, rgb, S, S, S * 3, SAM2_PIXEL_FORMAT_RGB,
            &error));
    r = sam2_session_predict (session, prompts, 2, NULL, &error);
    fail_unless (r != NULL, "%s", error ? error->message : "");

    for (gint o = 0; o < 2; o++) {
      const GstSam2Object *obj = gst_sam2_mask_meta_get_object (meta, o);
      guint8 *m = test_object_frame_mask (meta, obj);
      const guint8 *ref = r->masks + (gsize) o * S * S;
      gsize diff = test_count_diff (m, ref, (gsize) S * S);

      total_diff += diff;
      fail_unless (diff == 0, "image %d, %s prompt: %" G_GSIZE_FORMAT " pixels differ", i,
          o == 0 ? "point" : "box", diff);
      fail_unless (obj->iou == r->iou_scores[o]);
      fail_unless (obj->object_score == r->object_scores[o]);
      fail_unless (obj->box.x0 == r->boxes[o].x0 || r->boxes[o].x1 < r->boxes[o].x0);
      n_nonempty += obj->mask != NULL;
      g_free (m);
    }
    gst_buffer_unref (out);
  }
  GST_INFO ("%d images, %d non-empty masks, %" G_GSIZE_FORMAT " differing pixels", N,
      n_nonempty, total_diff);
  fail_unless (n_nonempty > N, "most prompts find their shape");

  gst_harness_teardown (h);
  sam2_session_free (session);
  sam2_model_unref (model);
  g_free (points);
  g_free (boxes);
  sam2_safetensors_close (st);
  g_free (path);
}

GST_END_TEST;

static Suite *
eval_suite (void)
{
  Suite *s = suite_create ("sam2seg-eval");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 120);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_eval_set_matches_core);
  return s;
}

int
main (int argc, char **argv)
{
  gchar *path = fixture_path ();
  gboolean present = path != NULL && g_file_test (path, G_FILE_TEST_EXISTS);

  if (!present) {
    g_print ("SKIP: %s not found; set SAM2_FIXTURES to the fixtures directory\n",
        path ? path : EVAL_SET);
    g_free (path);
    return 77;
  }
  g_free (path);
  gst_check_init (&argc, &argv);
  return gst_check_run_suite (eval_suite (), "sam2seg-eval", __FILE__);
}
