/* read-meta.c: reads sam2seg's results in an application.
 *
 * Builds  source ! videoconvert ! sam2seg ! appsink, pulls the frames and prints, per frame,
 * the objects of their GstSam2MaskMeta. Uses only GStreamer and gstsam2meta.h (link with
 * libgstsam2meta: pkg-config --cflags --libs gstsam2meta gstreamer-app-1.0).
 *
 *   read-meta [-m MODEL] [-p POINTS] [-b BOXES] [-n FRAMES] [VIDEO-FILE]
 *
 * Without a file it segments videotestsrc's bouncing ball; MODEL defaults to "tiny" (any
 * model sam2seg takes, e.g. models/sam2-shapes), POINTS to the centre of its 320x240 frames. A
 * file's frame size is known only once it plays: give it POINTS or BOXES.
 *
 *   ./build/examples/apps/read-meta -m models/sam2-shapes -p 160,120 -n 10
 *   ./build/examples/apps/read-meta -m tiny -p 320,240 video.mp4
 */
#include <gst/gst.h>
#include <gst/app/gstappsink.h>

#include "gstsam2meta.h"

/* Pixels set in an object's mask, read through its GstVideoMeta (the stride may be padded). */
static guint64
mask_area (const GstSam2Object * o)
{
  GstVideoMeta *vmeta;
  GstMapInfo map;
  guint64 area = 0;

  if (o->mask == NULL || (vmeta = gst_buffer_get_video_meta (o->mask)) == NULL)
    return 0;
  if (!gst_buffer_map (o->mask, &map, GST_MAP_READ))
    return 0;
  for (guint y = 0; y < vmeta->height; y++) {
    const guint8 *row = map.data + vmeta->offset[0] + (gsize) y * vmeta->stride[0];
    for (guint x = 0; x < vmeta->width; x++)
      area += row[x] != 0;
  }
  gst_buffer_unmap (o->mask, &map);
  return area;
}

static void
print_frame (guint64 n, GstBuffer * buffer)
{
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buffer);

  g_print ("frame %" G_GUINT64_FORMAT " pts %" GST_TIME_FORMAT ":", n,
      GST_TIME_ARGS (GST_BUFFER_PTS (buffer)));
  if (meta == NULL) {
    g_print (" no GstSam2MaskMeta\n");
    return;
  }
  g_print (" %u objects in %dx%d\n", gst_sam2_mask_meta_get_n_objects (meta), meta->width,
      meta->height);
  for (guint i = 0; i < gst_sam2_mask_meta_get_n_objects (meta); i++) {
    const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
    GstVideoMeta *vmeta = o->mask ? gst_buffer_get_video_meta (o->mask) : NULL;

    if (o->mask == NULL) {
      g_print ("  object %u (prompt %d): empty mask, iou %.3f, object score %.2f\n", o->id,
          o->prompt_id, o->iou, o->object_score);
      continue;
    }
    /* the mask covers `location`; its own size differs once the meta has been scaled */
    g_print ("  object %u (prompt %d): box %d,%d-%d,%d, iou %.3f, object score %.2f, "
        "mask %ux%u at %d,%d %dx%d, %" G_GUINT64_FORMAT " pixels\n", o->id, o->prompt_id,
        o->box.x0, o->box.y0, o->box.x1, o->box.y1, o->iou, o->object_score,
        vmeta ? vmeta->width : 0, vmeta ? vmeta->height : 0, o->location.x, o->location.y,
        o->location.w, o->location.h, mask_area (o));
  }
}

int
main (int argc, char **argv)
{
  gchar *model = NULL, *points = NULL, *boxes = NULL;
  gint frames = 30;
  GOptionEntry entries[] = {
    {"model", 'm', 0, G_OPTION_ARG_STRING, &model, "SAM2 model (default: tiny)", "MODEL"},
    {"points", 'p', 0, G_OPTION_ARG_STRING, &points,
        "point prompts, sam2seg syntax (default: the frame centre)", "POINTS"},
    {"boxes", 'b', 0, G_OPTION_ARG_STRING, &boxes, "box prompts, sam2seg syntax", "BOXES"},
    {"frames", 'n', 0, G_OPTION_ARG_INT, &frames,
        "frames of the test source (default: 30)", "N"},
    {NULL}
  };
  GOptionContext *ctx = g_option_context_new ("[VIDEO-FILE]");
  GError *error = NULL;
  GstElement *pipeline, *seg, *sink;
  GstSample *sample;
  GstBus *bus;
  GstMessage *msg;
  gchar *desc;
  guint64 n = 0;
  int ret = 0;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  g_option_context_free (ctx);

  if (argc > 1) {
    if (points == NULL && boxes == NULL) {
      g_printerr ("give prompts for %s: -p X,Y or -b X0,Y0,X1,Y1 in its pixels\n", argv[1]);
      return 2;
    }
    gchar *uri = gst_filename_to_uri (argv[1], &error);
    if (uri == NULL) {
      g_printerr ("%s\n", error->message);
      return 2;
    }
    desc = g_strdup_printf ("uridecodebin uri=\"%s\" ! videoconvert ! sam2seg name=seg ! "
        "appsink name=sink sync=false", uri);
    g_free (uri);
  } else {
    desc = g_strdup_printf ("videotestsrc pattern=ball num-buffers=%d ! "
        "video/x-raw,width=320,height=240 ! videoconvert ! sam2seg name=seg ! "
        "appsink name=sink sync=false", frames);
    if (points == NULL && boxes == NULL)
      points = g_strdup ("160,120");
  }
  pipeline = gst_parse_launch (desc, &error);
  g_free (desc);
  if (pipeline == NULL) {
    g_printerr ("could not build the pipeline: %s (is the sam2 plugin in "
        "GST_PLUGIN_PATH?)\n", error->message);
    return 1;
  }
  seg = gst_bin_get_by_name (GST_BIN (pipeline), "seg");
  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  g_object_set (seg, "model", model ? model : "tiny", "points", points ? points : "",
      "boxes", boxes ? boxes : "", NULL);

  bus = gst_element_get_bus (pipeline);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  /* pull until EOS; an error (e.g. a model that cannot be loaded) stops the stream without
   * EOS, so the bus is looked at between pulls */
  for (;;) {
    sample = gst_app_sink_try_pull_sample (GST_APP_SINK (sink), 100 * GST_MSECOND);
    if (sample != NULL) {
      print_frame (n++, gst_sample_get_buffer (sample));
      gst_sample_unref (sample);
      continue;
    }
    if (gst_app_sink_is_eos (GST_APP_SINK (sink)))
      break;
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (msg != NULL) {
      gchar *debug = NULL;
      gst_message_parse_error (msg, &error, &debug);
      g_printerr ("error from %s: %s\n", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)),
          error->message);
      if (debug != NULL)
        g_printerr ("(%s)\n", debug);
      g_free (debug);
      g_clear_error (&error);
      gst_message_unref (msg);
      ret = 1;
      break;
    }
  }
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (seg);
  gst_object_unref (sink);
  gst_object_unref (pipeline);
  g_free (model);
  g_free (points);
  g_free (boxes);
  return ret;
}
