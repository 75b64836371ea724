/* annotation-rois: runs a gst-launch-1.0 style pipeline in which the boxes of an annotation
 * file (shapes-video's JSON) reach sam2seg as GstVideoRegionOfInterestMeta, the way a
 * detector's boxes would: the annotations stand in for a detector.
 *
 *   annotation-rois --annotations shapes.json [--roi-type shape] [--element NAME] PIPELINE...
 *
 * PIPELINE is a gst-launch-1.0 description (the arguments are joined with spaces, as
 * gst-launch-1.0 does). Before every buffer enters the element named NAME (default: the first
 * sam2seg of the pipeline), the visible objects of the annotated frame with the buffer's
 * timestamp get one ROI meta each: roi_type ROI-TYPE (default "shape"), the annotated box,
 * id = the shape's id. sam2seg roi-types=shape turns them into box prompts and keeps each
 * object's id (and overlay colour) across frames. Runs to EOS; exits 1 on an error, after
 * printing it.
 *
 *   annotation-rois --annotations shapes.json filesrc location=shapes.webm ! decodebin ! \
 *       videoconvert ! sam2seg model=models/sam2-shapes roi-types=shape ! sam2overlay ! \
 *       videoconvert ! autovideosink
 */
#include <string.h>

#include <gst/gst.h>
#include <gst/video/video.h>
#include <json-glib/json-glib.h>

typedef struct {
  gint id;
  guint x, y, w, h;
} Roi;

typedef struct {
  gint fps;
  GPtrArray *frames;           /* GArray of Roi per frame index */
  GQuark roi_type;
  guint64 tagged;
} Annotations;

static Annotations *
annotations_load (const char *path, const char *roi_type, GError **error)
{
  JsonParser *parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, error)) {
    g_object_unref (parser);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *top = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  if (top == NULL || !json_object_has_member (top, "fps")
      || !json_object_has_member (top, "frames")) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s: not a shapes-video annotation file (needs \"fps\" and \"frames\")", path);
    g_object_unref (parser);
    return NULL;
  }
  Annotations *a = g_new0 (Annotations, 1);
  a->fps = (gint) json_object_get_int_member (top, "fps");
  a->roi_type = g_quark_from_string (roi_type);
  a->frames = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  JsonArray *frames = json_object_get_array_member (top, "frames");
  for (guint f = 0; frames != NULL && f < json_array_get_length (frames); f++) {
    JsonObject *frame = json_array_get_object_element (frames, f);
    JsonArray *objects = json_object_get_array_member (frame, "objects");
    GArray *rois = g_array_new (FALSE, FALSE, sizeof (Roi));
    for (guint o = 0; objects != NULL && o < json_array_get_length (objects); o++) {
      JsonObject *obj = json_array_get_object_element (objects, o);
      JsonArray *box = json_object_get_array_member (obj, "box");
      if (box == NULL || json_array_get_length (box) != 4)
        continue;
      /* x1, y1 are exclusive in the annotations, as w = x1 - x0 wants */
      const double x0 = json_array_get_double_element (box, 0);
      const double y0 = json_array_get_double_element (box, 1);
      const double x1 = json_array_get_double_element (box, 2);
      const double y1 = json_array_get_double_element (box, 3);
      if (x1 <= x0 || y1 <= y0)
        continue;
      Roi r = { (gint) json_object_get_int_member (obj, "id"), (guint) x0, (guint) y0,
                (guint) (x1 - x0), (guint) (y1 - y0) };
      g_array_append_val (rois, r);
    }
    g_ptr_array_add (a->frames, rois);
  }
  g_object_unref (parser);
  if (a->fps <= 0 || a->frames->len == 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: no frames or no frame rate",
                 path);
    g_ptr_array_unref (a->frames);
    g_free (a);
    return NULL;
  }
  return a;
}

static GstPadProbeReturn
add_rois (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Annotations *a = data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  if (!GST_BUFFER_PTS_IS_VALID (buf))
    return GST_PAD_PROBE_OK;
  /* the frame whose time span holds the timestamp (decoders keep the encoder's timestamps) */
  const guint64 f = gst_util_uint64_scale_round (GST_BUFFER_PTS (buf), a->fps, GST_SECOND);
  if (f >= a->frames->len)
    return GST_PAD_PROBE_OK;
  const GArray *rois = a->frames->pdata[f];
  buf = gst_buffer_make_writable (buf);
  for (guint i = 0; i < rois->len; i++) {
    const Roi *r = &g_array_index (rois, Roi, i);
    GstVideoRegionOfInterestMeta *m =
        gst_buffer_add_video_region_of_interest_meta_id (buf, a->roi_type, r->x, r->y, r->w,
                                                         r->h);
    m->id = r->id;
  }
  a->tagged++;
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  return GST_PAD_PROBE_OK;
}

static GstElement *
find_target (GstBin *bin, const char *name)
{
  if (name != NULL)
    return gst_bin_get_by_name (bin, name);
  GstIterator *it = gst_bin_iterate_recurse (bin);
  GValue item = G_VALUE_INIT;
  GstElement *found = NULL;
  while (found == NULL && gst_iterator_next (it, &item) == GST_ITERATOR_OK) {
    GstElement *e = g_value_get_object (&item);
    GstElementFactory *f = gst_element_get_factory (e);
    if (f != NULL && strcmp (GST_OBJECT_NAME (f), "sam2seg") == 0)
      found = gst_object_ref (e);
    g_value_reset (&item);
  }
  g_value_unset (&item);
  gst_iterator_free (it);
  return found;
}

int
main (int argc, char **argv)
{
  char *annotations = NULL, *roi_type = NULL, *element = NULL;
  const GOptionEntry entries[] = {
    { "annotations", 'a', 0, G_OPTION_ARG_FILENAME, &annotations,
      "shapes-video annotation file (required)", "FILE" },
    { "roi-type", 't', 0, G_OPTION_ARG_STRING, &roi_type, "roi_type of the metas (shape)",
      "TYPE" },
    { "element", 'e', 0, G_OPTION_ARG_STRING, &element,
      "element whose input gets the metas (default: the first sam2seg)", "NAME" },
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("PIPELINE - annotated boxes as ROI metadata");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  GError *error = NULL;
  int status = 1;
  GstElement *pipeline = NULL, *target = NULL;
  Annotations *a = NULL;

  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (annotations == NULL || argc < 2) {
    g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                         "give --annotations FILE and a pipeline (see --help)");
    goto out;
  }
  if ((a = annotations_load (annotations, roi_type ? roi_type : "shape", &error)) == NULL)
    goto out;
  pipeline = gst_parse_launchv ((const gchar **) argv + 1, &error);
  if (pipeline == NULL)
    goto out;
  g_clear_error (&error);       /* a non-fatal parse warning */
  if (!GST_IS_BIN (pipeline) || (target = find_target (GST_BIN (pipeline), element)) == NULL) {
    g_set_error (&error, GST_CORE_ERROR, GST_CORE_ERROR_FAILED,
                 "no element %s%s%s in the pipeline", element ? "named \"" : "sam2seg",
                 element ? element : "", element ? "\"" : "");
    goto out;
  }
  GstPad *pad = gst_element_get_static_pad (target, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, add_rois, a, NULL);
  gst_object_unref (pad);

  GstBus *bus = gst_element_get_bus (pipeline);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE) {
    GstMessage *msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
                                                  GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
    if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
      gst_message_parse_error (msg, &error, NULL);
      g_prefix_error (&error, "%s: ", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)));
    } else {
      status = 0;
    }
    gst_message_unref (msg);
  } else {
    GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (msg != NULL) {
      gst_message_parse_error (msg, &error, NULL);
      gst_message_unref (msg);
    } else {
      g_set_error_literal (&error, GST_CORE_ERROR, GST_CORE_ERROR_STATE_CHANGE,
                           "the pipeline did not start");
    }
  }
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  if (status == 0)
    g_printerr ("annotation-rois: tagged %" G_GUINT64_FORMAT " frames with annotated boxes\n",
                a->tagged);

out:
  if (error != NULL && status != 0)
    g_printerr ("annotation-rois: %s\n", error->message);
  g_clear_error (&error);
  if (target)
    gst_object_unref (target);
  if (pipeline)
    gst_object_unref (pipeline);
  if (a) {
    g_ptr_array_unref (a->frames);
    g_free (a);
  }
  g_option_context_free (ctx);
  g_free (annotations);
  g_free (roi_type);
  g_free (element);
  return status;
}
