/* test-util.c: see test-util.h. */
#include "test-util.h"

#include "sam2.h"

#include <gst/app/gstappsink.h>
#include <string.h>

const gchar *
test_model_path (void)
{
  const gchar *path = g_getenv ("SAM2_SHAPES_MODEL");
  fail_unless (path != NULL, "SAM2_SHAPES_MODEL is not set (run the tests with meson test)");
  return path;
}

guint8 *
test_load_demo_rgb (const gchar * name, gint * width, gint * height)
{
  const gchar *dir = g_getenv ("SAM2_DEMO_DIR");
  gchar *path, *desc;
  GstElement *pipeline, *sink;
  GstSample *sample;
  GstVideoInfo info;
  GstVideoFrame frame;
  guint8 *rgb;

  fail_unless (dir != NULL, "SAM2_DEMO_DIR is not set (run the tests with meson test)");
  path = g_build_filename (dir, name, NULL);
  desc = g_strdup_printf ("filesrc location=\"%s\" ! pngdec ! videoconvert ! "
      "video/x-raw,format=RGB ! appsink name=sink sync=false", path);
  pipeline = gst_parse_launch (desc, NULL);
  fail_unless (pipeline != NULL);
  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  fail_unless_equals_int (gst_element_set_state (pipeline, GST_STATE_PLAYING),
      GST_STATE_CHANGE_ASYNC);
  sample = gst_app_sink_pull_sample (GST_APP_SINK (sink));
  fail_unless (sample != NULL, "could not decode %s", path);
  fail_unless (gst_video_info_from_caps (&info, gst_sample_get_caps (sample)));
  fail_unless (gst_video_frame_map (&frame, &info, gst_sample_get_buffer (sample),
          GST_MAP_READ));
  *width = GST_VIDEO_INFO_WIDTH (&info);
  *height = GST_VIDEO_INFO_HEIGHT (&info);
  rgb = g_malloc ((gsize) *width * *height * 3);
  for (gint y = 0; y < *height; y++)
    memcpy (rgb + (gsize) y * *width * 3, (guint8 *) GST_VIDEO_FRAME_PLANE_DATA (&frame, 0)
        + (gsize) y * GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0), (gsize) *width * 3);
  gst_video_frame_unmap (&frame);
  gst_sample_unref (sample);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  g_free (desc);
  g_free (path);
  return rgb;
}

GstBuffer *
test_make_frame (const guint8 * rgb, gint width, gint height, GstVideoFormat format, gint pad,
    GstClockTime pts)
{
  GstVideoInfo info;
  GstBuffer *buf;
  GstMapInfo map;
  gint bpp, stride;
  gsize offset[GST_VIDEO_MAX_PLANES] = { 0 };
  gint strides[GST_VIDEO_MAX_PLANES] = { 0 };
  gboolean bgr = format == GST_VIDEO_FORMAT_BGR || format == GST_VIDEO_FORMAT_BGRA
      || format == GST_VIDEO_FORMAT_BGRx;

  fail_unless (gst_video_info_set_format (&info, format, width, height));
  bpp = GST_VIDEO_INFO_COMP_PSTRIDE (&info, 0);
  stride = GST_VIDEO_INFO_PLANE_STRIDE (&info, 0) + pad;
  buf = gst_buffer_new_allocate (NULL, (gsize) stride * height, NULL);
  fail_unless (gst_buffer_map (buf, &map, GST_MAP_WRITE));
  memset (map.data, 0xA5, map.size);   /* padding that would show if read */
  for (gint y = 0; y < height; y++) {
    guint8 *row = map.data + (gsize) y * stride;
    for (gint x = 0; x < width; x++) {
      const guint8 *s = rgb + ((gsize) y * width + x) * 3;
      guint8 *d = row + (gsize) x * bpp;
      d[0] = bgr ? s[2] : s[0];
      d[1] = s[1];
      d[2] = bgr ? s[0] : s[2];
      if (bpp == 4)
        d[3] = 255;
    }
  }
  gst_buffer_unmap (buf, &map);
  strides[0] = stride;
  gst_buffer_add_video_meta_full (buf, GST_VIDEO_FRAME_FLAG_NONE, format, width, height, 1,
      offset, strides);
  GST_BUFFER_PTS (buf) = pts;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 30;
  return buf;
}

GstHarness *
test_seg_harness_new (GstVideoFormat format, gint width, gint height,
    const gchar * first_property, ...)
{
  GstElement *seg = gst_element_factory_make ("sam2seg", NULL);
  GstHarness *h;
  gchar *caps;
  va_list args;

  fail_unless (seg != NULL, "sam2seg not found: is GST_PLUGIN_PATH set to the build's gst/?");
  g_object_set (seg, "model", test_model_path (), NULL);
  va_start (args, first_property);
  if (first_property != NULL)
    g_object_set_valist (G_OBJECT (seg), first_property, args);
  va_end (args);
  h = gst_harness_new_with_element (seg, "sink", "src");
  gst_object_unref (seg);
  caps = g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1",
      gst_video_format_to_string (format), width, height);
  gst_harness_set_src_caps_str (h, caps);
  g_free (caps);
  return h;
}

GError *
test_start_error (GstElement * element, gchar ** debug)
{
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GstStateChangeReturn ret;
  GError *error = NULL;

  gst_element_set_bus (element, bus);
  ret = gst_element_set_state (element, GST_STATE_PAUSED);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg != NULL) {
    gst_message_parse_error (msg, &error, debug);
    gst_message_unref (msg);
    fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  } else if (debug != NULL) {
    *debug = NULL;
  }
  gst_element_set_state (element, GST_STATE_NULL);
  gst_element_set_bus (element, NULL);
  gst_object_unref (bus);
  return error;
}

guint8 *
test_object_frame_mask (const GstSam2MaskMeta * meta, const GstSam2Object * o)
{
  const gint W = meta->width, H = meta->height;
  guint8 *plane = g_malloc ((gsize) W * H);

  if (o->mask != NULL) {
    fail_unless (o->location.x >= 0 && o->location.y >= 0);
    fail_unless (o->location.w > 0 && o->location.h > 0);
    fail_unless (o->location.x + o->location.w <= W && o->location.y + o->location.h <= H,
        "object %u: location %d,%d %dx%d outside the %dx%d frame", o->id, o->location.x,
        o->location.y, o->location.w, o->location.h, W, H);
  }
  fail_unless (gst_sam2_object_render_mask (o, plane, W, W, H));
  return plane;
}

gsize
test_count_diff (const guint8 * a, const guint8 * b, gsize n)
{
  gsize d = 0;
  for (gsize i = 0; i < n; i++)
    d += (a[i] != 0) != (b[i] != 0);
  return d;
}

static gboolean
sink_accepts_size (GstPad * sinkpad, gint width, gint height)
{
  GstCaps *caps = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING, "RGB",
      "width", G_TYPE_INT, width, "height", G_TYPE_INT, height,
      "framerate", GST_TYPE_FRACTION, 30, 1, NULL);
  const gboolean accepted = gst_pad_query_accept_caps (sinkpad, caps);
  gst_caps_unref (caps);
  return accepted;
}

void
test_assert_frame_size_caps (const gchar * factory)
{
  GstElement *element = gst_element_factory_make (factory, NULL);
  fail_unless (element != NULL, "no element %s", factory);
  GstPad *sinkpad = gst_element_get_static_pad (element, "sink");
  fail_unless (sink_accepts_size (sinkpad, SAM2_MAX_FRAME_SIZE, 16));
  fail_unless (sink_accepts_size (sinkpad, 16, SAM2_MAX_FRAME_SIZE));
  fail_if (sink_accepts_size (sinkpad, SAM2_MAX_FRAME_SIZE + 1, 16));
  fail_if (sink_accepts_size (sinkpad, 16, SAM2_MAX_FRAME_SIZE + 1));
  gst_object_unref (sinkpad);
  gst_object_unref (element);
}

gboolean
test_proposes_crop_meta (GstHarness * h)
{
  GstCaps *caps = gst_pad_get_current_caps (h->srcpad);
  GstQuery *query;
  gboolean video_meta, crop_meta;

  fail_unless (caps != NULL, "set the harness's caps first");
  gst_harness_add_propose_allocation_meta (h, GST_VIDEO_META_API_TYPE, NULL);
  gst_harness_add_propose_allocation_meta (h, GST_VIDEO_CROP_META_API_TYPE, NULL);
  query = gst_query_new_allocation (caps, TRUE);
  fail_unless (gst_pad_peer_query (h->srcpad, query));
  video_meta = gst_query_find_allocation_meta (query, GST_VIDEO_META_API_TYPE, NULL);
  crop_meta = gst_query_find_allocation_meta (query, GST_VIDEO_CROP_META_API_TYPE, NULL);
  /* the video meta (strides) is still welcome: only the crop is refused */
  fail_unless (video_meta, "the element no longer accepts GstVideoMeta");
  gst_query_unref (query);
  gst_caps_unref (caps);
  return crop_meta;
}
