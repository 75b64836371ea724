/* test-sam2overlay.c: sam2overlay draws exactly what core/overlay.c draws for the frame-sized
 * mask, also for masks scaled on the way, leaves frames without objects alone, and sits in the
 * pipeline the issue asks for. */
#include "test-util.h"

#include <string.h>

#include "overlay.h"

#define W 160
#define H 120

static guint8 *
gradient_rgb (void)
{
  guint8 *rgb = g_malloc (W * H * 3);
  for (gint y = 0; y < H; y++)
    for (gint x = 0; x < W; x++) {
      guint8 *p = rgb + (y * W + x) * 3;
      p[0] = (guint8) x;
      p[1] = (guint8) (y * 2);
      p[2] = (guint8) (x + y);
    }
  return rgb;
}

/* A disc of radius 18 around (60, 50) as a mask of its bounding box, at `scale` times the
 * box's resolution (1: the box size; 0.5: half, as after a meta was scaled up). */
static void
add_disc_object (GstBuffer * buf, guint id, gdouble scale)
{
  GstSam2MaskMeta *meta = gst_buffer_add_sam2_mask_meta (buf, W, H);
  const gint x0 = 42, y0 = 32, side = 37;
  const gint ms = (gint) (side * scale);
  guint8 *m = g_malloc (ms * ms);
  GstSam2Object o = { 0 };

  for (gint y = 0; y < ms; y++)
    for (gint x = 0; x < ms; x++) {
      gdouble fx = x0 + (x + 0.5) / scale - 60.5, fy = y0 + (y + 0.5) / scale - 50.5;
      m[y * ms + x] = fx * fx + fy * fy <= 18 * 18;
    }
  o.id = id;
  o.box = (GstSam2Box) { x0, y0, x0 + side - 1, y0 + side - 1 };
  o.location = (GstVideoRectangle) { x0, y0, side, side };
  o.mask = gst_sam2_mask_buffer_new (m, ms, ms, ms);
  o.iou = 0.9f;
  gst_sam2_mask_meta_add_object (meta, &o);
  gst_buffer_unref (o.mask);
  g_free (m);
}

static Sam2PixelFormat
sam2_format (GstVideoFormat f)
{
  switch (f) {
    case GST_VIDEO_FORMAT_RGB:
      return SAM2_PIXEL_FORMAT_RGB;
    case GST_VIDEO_FORMAT_RGBA:
      return SAM2_PIXEL_FORMAT_RGBA;
    case GST_VIDEO_FORMAT_RGBx:
      return SAM2_PIXEL_FORMAT_RGBX;
    case GST_VIDEO_FORMAT_BGR:
      return SAM2_PIXEL_FORMAT_BGR;
    case GST_VIDEO_FORMAT_BGRA:
      return SAM2_PIXEL_FORMAT_BGRA;
    default:
      return SAM2_PIXEL_FORMAT_BGRX;
  }
}

static GstBuffer *
run_overlay (GstBuffer * in, GstVideoFormat format, const gchar * first_property, ...)
{
  GstElement *ov = gst_element_factory_make ("sam2overlay", NULL);
  GstHarness *h;
  GstBuffer *out;
  gchar *caps;
  va_list args;

  va_start (args, first_property);
  if (first_property != NULL)
    g_object_set_valist (G_OBJECT (ov), first_property, args);
  va_end (args);
  h = gst_harness_new_with_element (ov, "sink", "src");
  caps = g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1",
      gst_video_format_to_string (format), W, H);
  gst_harness_set_src_caps_str (h, caps);
  g_free (caps);
  out = gst_harness_push_and_pull (h, in);
  fail_unless (out != NULL);
  gst_harness_teardown (h);
  gst_object_unref (ov);
  return out;
}

/* The frame rows of `buf` (stride from its video meta) equal `ref` (tightly packed). */
static void
assert_frame_equals (GstBuffer * buf, GstVideoFormat format, const guint8 * ref)
{
  GstVideoInfo info;
  GstVideoFrame frame;
  gint bpp;

  gst_video_info_set_format (&info, format, W, H);
  bpp = GST_VIDEO_INFO_COMP_PSTRIDE (&info, 0);
  fail_unless (gst_video_frame_map (&frame, &info, buf, GST_MAP_READ));
  for (gint y = 0; y < H; y++) {
    const guint8 *row = (const guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&frame, 0)
        + (gsize) y * GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
    fail_unless (memcmp (row, ref + (gsize) y * W * bpp, (gsize) W * bpp) == 0,
        "row %d differs", y);
  }
  gst_video_frame_unmap (&frame);
}

/* The reference: the frame packed, drawn by core/overlay.c with the frame-sized mask. */
static guint8 *
reference (const guint8 * rgb, GstVideoFormat format, GstBuffer * with_meta,
    const Sam2OverlayStyle * style)
{
  GstBuffer *packed = test_make_frame (rgb, W, H, format, 0, 0);
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (with_meta);
  GstVideoInfo info;
  GstMapInfo map;
  guint8 *out;
  gint bpp;

  gst_video_info_set_format (&info, format, W, H);
  bpp = GST_VIDEO_INFO_COMP_PSTRIDE (&info, 0);
  out = g_malloc ((gsize) W * H * bpp);
  fail_unless (gst_buffer_map (packed, &map, GST_MAP_READ));
  for (gint y = 0; y < H; y++)
    memcpy (out + (gsize) y * W * bpp, map.data + (gsize) y * GST_VIDEO_INFO_PLANE_STRIDE (&info,
            0), (gsize) W * bpp);
  gst_buffer_unmap (packed, &map);
  gst_buffer_unref (packed);
  for (guint i = 0; i < gst_sam2_mask_meta_get_n_objects (meta); i++) {
    const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
    guint8 *plane = test_object_frame_mask (meta, o);
    Sam2Box box = { o->box.x0, o->box.y0, o->box.x1, o->box.y1 };
    sam2_overlay_draw_mask (out, W, H, W * bpp, sam2_format (format), plane, W, &box,
        (int) o->id, style);
    g_free (plane);
  }
  return out;
}

/* An id of 2^31 or more (ids are guint) is drawn as its digits: formatted as a negative int,
 * its '-' indexed the digit glyphs at -3 (found under AddressSanitizer). */
GST_START_TEST (test_large_id)
{
  guint8 frame[40 * 20 * 3] = { 0 }, mask[40 * 20];
  Sam2OverlayStyle style = SAM2_OVERLAY_STYLE_INIT;
  Sam2Box box = { 0, 0, 39, 19 };

  memset (mask, 1, sizeof mask);
  style.ids = TRUE;
  sam2_overlay_draw_mask (frame, 40, 20, 40 * 3, SAM2_PIXEL_FORMAT_RGB, mask, 40, &box,
      (int) 0x80000005u, &style);
  fail_unless (frame[0] != 0);
}

GST_END_TEST;

GST_START_TEST (test_matches_core_overlay)
{
  static const GstVideoFormat formats[] = { GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGRx,
    GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGR
  };
  static const gdouble scales[] = { 1.0, 0.5 };
  guint8 *rgb = gradient_rgb ();
  const Sam2OverlayStyle style = SAM2_OVERLAY_STYLE_INIT;

  for (guint f = 0; f < G_N_ELEMENTS (formats); f++)
    for (guint s = 0; s < G_N_ELEMENTS (scales); s++) {
      GstBuffer *in = test_make_frame (rgb, W, H, formats[f], 8, 0);
      GstBuffer *out;
      guint8 *ref;

      add_disc_object (in, 3 + f, scales[s]);
      ref = reference (rgb, formats[f], in, &style);
      out = run_overlay (in, formats[f], NULL);
      assert_frame_equals (out, formats[f], ref);
      gst_buffer_unref (out);
      g_free (ref);
    }
  g_free (rgb);
}

GST_END_TEST;

GST_START_TEST (test_style_properties)
{
  guint8 *rgb = gradient_rgb ();
  Sam2OverlayStyle style = { 0.2f, FALSE, TRUE, FALSE };
  GstBuffer *in = test_make_frame (rgb, W, H, GST_VIDEO_FORMAT_RGB, 0, 0);
  GstBuffer *out;
  guint8 *ref;

  add_disc_object (in, 1, 1.0);
  ref = reference (rgb, GST_VIDEO_FORMAT_RGB, in, &style);
  out = run_overlay (in, GST_VIDEO_FORMAT_RGB, "fill-alpha", 0.2, "outline", FALSE, "ids",
      FALSE, NULL);
  assert_frame_equals (out, GST_VIDEO_FORMAT_RGB, ref);
  gst_buffer_unref (out);
  g_free (ref);

  /* nothing to draw: the frame is untouched */
  in = test_make_frame (rgb, W, H, GST_VIDEO_FORMAT_RGB, 0, 0);
  add_disc_object (in, 1, 1.0);
  out = run_overlay (in, GST_VIDEO_FORMAT_RGB, "fill-alpha", 0.0, "outline", FALSE, "ids",
      FALSE, "boxes", FALSE, NULL);
  assert_frame_equals (out, GST_VIDEO_FORMAT_RGB, rgb);
  gst_buffer_unref (out);
  g_free (rgb);
}

GST_END_TEST;

GST_START_TEST (test_without_meta_unchanged)
{
  guint8 *rgb = gradient_rgb ();
  GstBuffer *out = run_overlay (test_make_frame (rgb, W, H, GST_VIDEO_FORMAT_RGB, 4, 0),
      GST_VIDEO_FORMAT_RGB, NULL);
  assert_frame_equals (out, GST_VIDEO_FORMAT_RGB, rgb);
  gst_buffer_unref (out);
  g_free (rgb);
}

GST_END_TEST;

/* A frame with nothing to draw (no meta, or a meta without objects) is not mapped for writing:
 * its memory, shared with another reference (a tee's other branch), is not copied. */
GST_START_TEST (test_nothing_to_draw_not_copied)
{
  guint8 *rgb = gradient_rgb ();

  for (guint with_meta = 0; with_meta < 2; with_meta++) {
    GstBuffer *in = test_make_frame (rgb, W, H, GST_VIDEO_FORMAT_RGB, 0, 0), *out;
    GstMemory *mem = gst_buffer_peek_memory (in, 0);

    if (with_meta)
      gst_buffer_add_sam2_mask_meta (in, W, H);
    gst_buffer_ref (in);        /* the other branch's reference */
    out = run_overlay (in, GST_VIDEO_FORMAT_RGB, NULL);
    fail_unless (gst_buffer_peek_memory (out, 0) == mem, "frame copied (meta: %u)", with_meta);
    assert_frame_equals (out, GST_VIDEO_FORMAT_RGB, rgb);
    gst_buffer_unref (out);
    gst_buffer_unref (in);
  }
  g_free (rgb);
}

GST_END_TEST;

/* Frames are drawn whole: the crop meta a sink downstream offers is not passed upstream. */
GST_START_TEST (test_no_crop_meta_upstream)
{
  GstHarness *h = gst_harness_new ("sam2overlay");

  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=160,height=120,framerate=30/1");
  fail_if (test_proposes_crop_meta (h));
  gst_harness_teardown (h);
}

GST_END_TEST;

/* The pipeline of the issue, with no code around it (fakesink for the display). */
GST_START_TEST (test_pipeline)
{
  gchar *desc = g_strdup_printf ("videotestsrc num-buffers=3 pattern=ball ! "
      "video/x-raw,width=160,height=120 ! videoconvert ! sam2seg model=\"%s\" "
      "points=\"80,60\" ! sam2overlay ! videoconvert ! fakesink", test_model_path ());
  GstElement *pipeline = gst_parse_launch (desc, NULL);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;

  fail_unless (gst_element_set_state (pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_timed_pop_filtered (bus, 30 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_free (desc);
}

GST_END_TEST;

static Suite *
sam2overlay_suite (void)
{
  Suite *s = suite_create ("sam2overlay");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_large_id);
  tcase_add_test (tc, test_matches_core_overlay);
  tcase_add_test (tc, test_style_properties);
  tcase_add_test (tc, test_without_meta_unchanged);
  tcase_add_test (tc, test_nothing_to_draw_not_copied);
  tcase_add_test (tc, test_no_crop_meta_upstream);
  tcase_add_test (tc, test_pipeline);
  return s;
}

GST_CHECK_MAIN (sam2overlay);
