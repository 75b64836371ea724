/* test-meta.c: GstSam2MaskMeta: the API applications use, its transforms (copy, scale,
 * everything else refused), and that it survives videoconvertscale with its rectangles scaled. */
#include "test-util.h"

#include <gst/app/gstappsink.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* A 40x30 frame holding one object: a 10x6 rectangle of mask at (12, 8) with a hole. */
static GstBuffer *
make_buffer_with_meta (void)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, 40 * 30 * 3, NULL);
  GstSam2MaskMeta *meta = gst_buffer_add_sam2_mask_meta (buf, 40, 30);
  guint8 m[6][10];
  GstSam2Object o = { 0 };

  memset (m, 1, sizeof m);
  m[2][3] = 0;
  o.id = 5;
  o.prompt_id = 2;
  o.box = (GstSam2Box) { 12, 8, 21, 13 };
  o.iou = 0.75f;
  o.object_score = 3.5f;
  o.location = (GstVideoRectangle) { 12, 8, 10, 6 };
  o.mask = gst_sam2_mask_buffer_new (&m[0][0], 10, 10, 6);
  gst_sam2_mask_meta_add_object (meta, &o);
  gst_buffer_unref (o.mask);
  /* an empty object: no mask, no location */
  memset (&o, 0, sizeof o);
  o.id = 6;
  o.box = (GstSam2Box) { 0, 0, -1, -1 };
  gst_sam2_mask_meta_add_object (meta, &o);
  return buf;
}

GST_START_TEST (test_api)
{
  GstBuffer *buf = make_buffer_with_meta ();
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buf);
  const GstSam2Object *o;
  GstVideoMeta *vm;
  GstMapInfo map;
  guint8 *plane;
  const gchar *const *tags;

  fail_unless (meta != NULL);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
  o = gst_sam2_mask_meta_get_object (meta, 0);
  fail_unless_equals_int (o->id, 5);
  fail_unless (gst_sam2_mask_meta_find_object (meta, 6) == gst_sam2_mask_meta_get_object (meta,
          1));
  fail_unless (gst_sam2_mask_meta_find_object (meta, 7) == NULL);
  fail_unless (gst_sam2_mask_meta_get_object (meta, 2) == NULL);

  /* the mask is GRAY8 0 / 255 with a video meta; the stride is the default one */
  vm = gst_buffer_get_video_meta (o->mask);
  fail_unless (vm != NULL);
  fail_unless_equals_int (vm->format, GST_VIDEO_FORMAT_GRAY8);
  fail_unless_equals_int (vm->width, 10);
  fail_unless_equals_int (vm->height, 6);
  fail_unless_equals_int (vm->stride[0], 12);
  fail_unless (gst_buffer_map (o->mask, &map, GST_MAP_READ));
  fail_unless_equals_int (map.data[0], 255);
  fail_unless_equals_int (map.data[2 * 12 + 3], 0);
  gst_buffer_unmap (o->mask, &map);

  plane = g_malloc (40 * 30);
  fail_unless (gst_sam2_object_render_mask (o, plane, 40, 40, 30));
  for (gint y = 0; y < 30; y++)
    for (gint x = 0; x < 40; x++) {
      gboolean in = x >= 12 && x < 22 && y >= 8 && y < 14 && !(x == 15 && y == 10);
      fail_unless_equals_int (plane[y * 40 + x], in);
    }
  fail_unless (gst_sam2_object_render_mask (gst_sam2_mask_meta_get_object (meta, 1), plane,
          40, 40, 30));
  for (gint i = 0; i < 40 * 30; i++)
    fail_unless_equals_int (plane[i], 0);
  g_free (plane);

  tags = gst_meta_api_type_get_tags (GST_SAM2_MASK_META_API_TYPE);
  fail_unless (g_strv_length ((gchar **) tags) == 3);
  fail_unless (gst_meta_api_type_has_tag (GST_SAM2_MASK_META_API_TYPE,
          g_quark_from_string (GST_META_TAG_VIDEO_STR)));
  fail_unless (gst_meta_api_type_has_tag (GST_SAM2_MASK_META_API_TYPE,
          g_quark_from_string (GST_META_TAG_VIDEO_ORIENTATION_STR)));
  fail_unless (gst_meta_api_type_has_tag (GST_SAM2_MASK_META_API_TYPE,
          g_quark_from_string (GST_META_TAG_VIDEO_SIZE_STR)));
  gst_buffer_unref (buf);
}

GST_END_TEST;

GST_START_TEST (test_copy_transform)
{
  GstBuffer *buf = make_buffer_with_meta ();
  GstBuffer *copy = gst_buffer_copy (buf);
  GstBuffer *part;
  GstSam2MaskMeta *a = gst_buffer_get_sam2_mask_meta (buf);
  GstSam2MaskMeta *b = gst_buffer_get_sam2_mask_meta (copy);

  fail_unless (b != NULL && b != a);
  fail_unless_equals_int (b->width, 40);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (b), 2);
  for (guint i = 0; i < 2; i++) {
    const GstSam2Object *x = gst_sam2_mask_meta_get_object (a, i);
    const GstSam2Object *y = gst_sam2_mask_meta_get_object (b, i);
    fail_unless (memcmp (x, y, sizeof *x) == 0);
  }
  /* the copy shares the mask: one reference each */
  fail_unless_equals_int (GST_MINI_OBJECT_REFCOUNT_VALUE (gst_sam2_mask_meta_get_object (a,
              0)->mask), 2);
  gst_buffer_unref (buf);
  fail_unless_equals_int (GST_MINI_OBJECT_REFCOUNT_VALUE (gst_sam2_mask_meta_get_object (b,
              0)->mask), 1);

  /* a copy of some of the bytes is not the frame any more */
  part = gst_buffer_copy_region (copy, GST_BUFFER_COPY_ALL, 0, 100);
  fail_unless (gst_buffer_get_sam2_mask_meta (part) == NULL);
  gst_buffer_unref (part);
  gst_buffer_unref (copy);
}

GST_END_TEST;

static guint
count_mask_metas (GstBuffer * buf)
{
  gpointer state = NULL;
  guint n = 0;

  while (gst_buffer_iterate_meta_filtered (buf, &state, GST_SAM2_MASK_META_API_TYPE) != NULL)
    n++;
  return n;
}

/* One mask meta per buffer: adding replaces (a second segmenter's result is the one readers
 * get), and metas copied onto a buffer that has one replace it too. */
GST_START_TEST (test_add_replaces)
{
  GstBuffer *buf = make_buffer_with_meta (), *other = gst_buffer_new ();
  GstSam2MaskMeta *second = gst_buffer_add_sam2_mask_meta (buf, 40, 30);

  fail_unless_equals_int (count_mask_metas (buf), 1);
  fail_unless (gst_buffer_get_sam2_mask_meta (buf) == second);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (second), 0);

  gst_buffer_add_sam2_mask_meta (other, 8, 8);
  fail_unless (gst_buffer_copy_into (other, buf, GST_BUFFER_COPY_META, 0, -1));
  fail_unless_equals_int (count_mask_metas (other), 1);
  fail_unless_equals_int (gst_buffer_get_sam2_mask_meta (other)->width, 40);
  gst_buffer_unref (other);
  gst_buffer_unref (buf);
}

GST_END_TEST;

static GstBuffer *
transform (GstBuffer * buf, GQuark type, gpointer data, gboolean * ok)
{
  GstBuffer *dest = gst_buffer_new ();
  GstMeta *meta = (GstMeta *) gst_buffer_get_sam2_mask_meta (buf);
  *ok = meta->info->transform_func (dest, meta, buf, type, data);
  return dest;
}

GST_START_TEST (test_scale_transform)
{
  GstBuffer *buf = make_buffer_with_meta ();
  GstVideoInfo in, out;
  GstVideoMetaTransform trans = { &in, &out };
  GstBuffer *dest;
  GstSam2MaskMeta *m;
  const GstSam2Object *o;
  gboolean ok;

  gst_video_info_set_format (&in, GST_VIDEO_FORMAT_RGB, 40, 30);
  gst_video_info_set_format (&out, GST_VIDEO_FORMAT_RGB, 100, 20);
  /* square pixels both sides: 4:3 becomes 5:1, and a scaler may have added borders (the meta
   * cannot tell): refused */
  dest = transform (buf, gst_video_meta_transform_scale_get_quark (), &trans, &ok);
  fail_if (ok);
  fail_unless (gst_buffer_get_sam2_mask_meta (dest) == NULL);
  gst_buffer_unref (dest);
  /* the same 4:3 picture on pixels 4/15 as wide as high: stretched, so the rectangles follow */
  out.par_n = 4;
  out.par_d = 15;
  dest = transform (buf, gst_video_meta_transform_scale_get_quark (), &trans, &ok);
  fail_unless (ok);
  m = gst_buffer_get_sam2_mask_meta (dest);
  fail_unless_equals_int (m->width, 100);
  fail_unless_equals_int (m->height, 20);
  o = gst_sam2_mask_meta_get_object (m, 0);
  /* x: [12, 22) * 2.5 = [30, 55); y: [8, 14) * 2/3 = [5.33, 9.33) -> [5, 10) */
  fail_unless_equals_int (o->location.x, 30);
  fail_unless_equals_int (o->location.w, 25);
  fail_unless_equals_int (o->location.y, 5);
  fail_unless_equals_int (o->location.h, 5);
  fail_unless_equals_int (o->box.x0, 30);
  fail_unless_equals_int (o->box.x1, 54);
  fail_unless_equals_int (o->box.y0, 5);
  fail_unless_equals_int (o->box.y1, 9);
  /* the mask keeps its resolution; the location says where it goes */
  fail_unless (o->mask == gst_sam2_mask_meta_get_object (gst_buffer_get_sam2_mask_meta (buf),
          0)->mask);
  fail_unless_equals_int (o->iou, 0.75f);
  o = gst_sam2_mask_meta_get_object (m, 1);
  fail_unless_equals_int (o->location.w, 0);
  fail_unless (o->box.x1 < o->box.x0);
  gst_buffer_unref (dest);

  /* anything else is refused */
  dest = transform (buf, g_quark_from_string ("gst-video-rotate"), NULL, &ok);
  fail_if (ok);
  fail_unless (gst_buffer_get_sam2_mask_meta (dest) == NULL);
  gst_buffer_unref (dest);
  gst_buffer_unref (buf);
}

GST_END_TEST;

static GstPadProbeReturn
keep_buffer (GstPad * pad, GstPadProbeInfo * info, gpointer user_data)
{
  GstBuffer **slot = user_data;
  if (*slot == NULL)
    *slot = gst_buffer_ref (GST_PAD_PROBE_INFO_BUFFER (info));
  return GST_PAD_PROBE_OK;
}

/* Runs `desc` (with an element "seg" and an appsink "sink") and returns the first buffer
 * leaving seg and the first reaching the sink. */
static void
run_pipeline (const gchar * desc, GstBuffer ** at_seg, GstSample ** at_sink)
{
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (desc, &error);
  GstElement *seg, *sink;
  GstPad *pad;

  fail_unless (pipeline != NULL, "%s", error ? error->message : "");
  seg = gst_bin_get_by_name (GST_BIN (pipeline), "seg");
  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  g_object_set (seg, "model", test_model_path (), NULL);
  pad = gst_element_get_static_pad (seg, "src");
  *at_seg = NULL;
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, keep_buffer, at_seg, NULL);
  gst_object_unref (pad);
  fail_unless (gst_element_set_state (pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  *at_sink = gst_app_sink_pull_sample (GST_APP_SINK (sink));
  fail_unless (*at_sink != NULL);
  fail_unless (*at_seg != NULL);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (seg);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
}

/* videoconvertscale to another display aspect ratio with square pixels adds borders: the meta is
 * dropped, never left over the wrong pixels (it was stretched over the borders). */
GST_START_TEST (test_dropped_by_letterbox)
{
  gchar *desc;
  GstBuffer *before;
  GstSample *sample;
  const gchar *dir = g_getenv ("SAM2_DEMO_DIR");

  desc = g_strdup_printf ("filesrc location=\"%s/shapes-0.png\" ! pngdec ! videoconvert ! "
      "video/x-raw,format=RGB,pixel-aspect-ratio=1/1 ! sam2seg name=seg points=\"42.5,95.5\" ! "
      "videoconvertscale ! video/x-raw,format=BGRx,width=128,height=64,pixel-aspect-ratio=1/1 ! "
      "appsink name=sink sync=false", dir);
  run_pipeline (desc, &before, &sample);
  fail_unless (gst_buffer_get_sam2_mask_meta (before) != NULL);
  fail_unless (gst_buffer_get_sam2_mask_meta (gst_sample_get_buffer (sample)) == NULL,
      "the meta survived a letterboxing scale");
  gst_buffer_unref (before);
  gst_sample_unref (sample);
  g_free (desc);
}

GST_END_TEST;

/* Through videoconvertscale the rectangles follow the frame; the masks stay as they were. */
GST_START_TEST (test_survives_videoconvertscale)
{
  gchar *desc;
  GstBuffer *before;
  GstSample *sample;
  GstSam2MaskMeta *a, *b;
  GstVideoRegionOfInterestMeta *roi;
  const gchar *dir = g_getenv ("SAM2_DEMO_DIR");

  desc = g_strdup_printf ("filesrc location=\"%s/shapes-0.png\" ! pngdec ! videoconvert ! "
      "video/x-raw,format=RGB ! sam2seg name=seg points=\"42.5,95.5; 200,40\" ! "
      "videoconvertscale ! video/x-raw,format=BGRx,width=128,height=96 ! "
      "appsink name=sink sync=false", dir);
  run_pipeline (desc, &before, &sample);
  a = gst_buffer_get_sam2_mask_meta (before);
  b = gst_buffer_get_sam2_mask_meta (gst_sample_get_buffer (sample));
  fail_unless (a != NULL && b != NULL, "the meta did not survive videoconvertscale");
  fail_unless_equals_int (a->width, 256);
  fail_unless_equals_int (b->width, 128);
  fail_unless_equals_int (b->height, 96);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (b), 2);
  for (guint i = 0; i < 2; i++) {
    const GstSam2Object *x = gst_sam2_mask_meta_get_object (a, i);
    const GstSam2Object *y = gst_sam2_mask_meta_get_object (b, i);
    const GstVideoRectangle *l = &x->location;
    fail_unless (x->mask != NULL);
    fail_unless_equals_int (y->id, x->id);
    fail_unless (y->mask == x->mask);
    /* start rounded down, end rounded up: the scaled rectangle covers the object */
    fail_unless_equals_int (y->location.x, l->x * 128 / 256);
    fail_unless_equals_int (y->location.y, l->y * 96 / 256);
    fail_unless_equals_int (y->location.x + y->location.w,
        ((l->x + l->w) * 128 + 255) / 256);
    fail_unless_equals_int (y->location.y + y->location.h, ((l->y + l->h) * 96 + 255) / 256);
    fail_unless (y->location.x + y->location.w <= 128 && y->location.y + y->location.h <= 96);
    fail_unless_equals_int (y->box.x0, y->location.x);
    fail_unless_equals_int (y->box.y1, y->location.y + y->location.h - 1);
  }
  /* the 1.22 ROI meta is scaled by GStreamer itself */
  roi = gst_buffer_get_video_region_of_interest_meta (gst_sample_get_buffer (sample));
  fail_unless (roi != NULL);
  fail_unless (roi->x + roi->w <= 128);
  gst_buffer_unref (before);
  gst_sample_unref (sample);
  g_free (desc);

  /* a format change alone keeps the rectangles as they are */
  desc = g_strdup_printf ("filesrc location=\"%s/shapes-0.png\" ! pngdec ! videoconvert ! "
      "video/x-raw,format=RGB ! sam2seg name=seg points=\"42.5,95.5\" ! videoconvert ! "
      "video/x-raw,format=I420 ! appsink name=sink sync=false", dir);
  run_pipeline (desc, &before, &sample);
  a = gst_buffer_get_sam2_mask_meta (before);
  b = gst_buffer_get_sam2_mask_meta (gst_sample_get_buffer (sample));
  fail_unless (b != NULL);
  fail_unless (memcmp (gst_sam2_mask_meta_get_object (a, 0), gst_sam2_mask_meta_get_object (b,
              0), sizeof (GstSam2Object)) == 0);
  gst_buffer_unref (before);
  gst_sample_unref (sample);
  g_free (desc);
}

GST_END_TEST;

/* A flip is not something the meta can follow: videoflip leaves it behind. */
GST_START_TEST (test_dropped_by_flip)
{
  gchar *desc;
  GstBuffer *before;
  GstSample *sample;

  desc = g_strdup_printf ("filesrc location=\"%s/shapes-0.png\" ! pngdec ! videoconvert ! "
      "video/x-raw,format=RGB ! sam2seg name=seg points=\"42.5,95.5\" ! "
      "videoflip video-direction=horiz ! appsink name=sink sync=false",
      g_getenv ("SAM2_DEMO_DIR"));
  run_pipeline (desc, &before, &sample);
  fail_unless (gst_buffer_get_sam2_mask_meta (before) != NULL);
  fail_unless (gst_buffer_get_sam2_mask_meta (gst_sample_get_buffer (sample)) == NULL);
  gst_buffer_unref (before);
  gst_sample_unref (sample);
  g_free (desc);
}

GST_END_TEST;

/* A mask buffer the memory limit cannot hold is NULL, as documented, and the process lives
 * (gst_buffer_new_allocate aborted it: a 4K frame of 256 objects ended the application). In a
 * child under a 1 GB address-space limit; not under AddressSanitizer, whose shadow memory does
 * not fit such a limit. */
GST_START_TEST (test_mask_buffer_out_of_memory)
{
#if defined(__SANITIZE_ADDRESS__)
  GST_INFO ("skipped under AddressSanitizer");
#else
  const guint8 small[16] = { 1 };
  int status = 0;
  pid_t pid = fork ();

  fail_unless (pid >= 0);
  if (pid == 0) {
    struct rlimit limit = { 1ul << 30, 1ul << 30 };
    GstBuffer *b;
    if (setrlimit (RLIMIT_AS, &limit) != 0)
      _exit (3);
    /* 40000 x 40000: 1.6 GB; the data is never read when the buffer cannot be made */
    b = gst_sam2_mask_buffer_new (small, 40000, 40000, 40000);
    _exit (b == NULL ? 0 : 2);
  }
  fail_unless (waitpid (pid, &status, 0) == pid);
  fail_unless (WIFEXITED (status), "the child died (signal %d)",
      WIFSIGNALED (status) ? WTERMSIG (status) : 0);
  fail_unless_equals_int (WEXITSTATUS (status), 0);
#endif
}

GST_END_TEST;

static Suite *
meta_suite (void)
{
  Suite *s = suite_create ("sam2meta");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_api);
  tcase_add_test (tc, test_copy_transform);
  tcase_add_test (tc, test_add_replaces);
  tcase_add_test (tc, test_scale_transform);
  tcase_add_test (tc, test_survives_videoconvertscale);
  tcase_add_test (tc, test_dropped_by_letterbox);
  tcase_add_test (tc, test_dropped_by_flip);
  tcase_add_test (tc, test_mask_buffer_out_of_memory);
  return s;
}

GST_CHECK_MAIN (meta);
