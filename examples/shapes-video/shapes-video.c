/* shapes-video: writes a video of moving shapes (examples/common/shapes.h) and, next to it, a
 * JSON file with every visible shape's box and prompt point in every frame, to try video
 * segmentation on and to evaluate it against.
 *
 *   shapes-video --width 640 --height 480 --fps 30 --frames 300 --seed 7 --output shapes.webm
 *
 * writes shapes.webm and shapes.json. The container follows the output's extension: .webm (the
 * default) is VP8 in WebM, .mkv VP8 in Matroska, .avi Motion JPEG in AVI; all of these come
 * with gstreamer1.0-plugins-good. The pipeline is
 *
 *   appsrc ! videoconvert ! vp8enc ! webmmux ! filesink
 *
 * With --live, frames are produced at the frame rate and timestamped as a live source would, so
 * the program can stand in for a camera (for example writing into a FIFO that a segmentation
 * pipeline reads). Frame t is a pure function of (seed, t), so the annotations hold for the
 * decoded video whatever the encoder did to its pixels. */
#include <string.h>

#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <json-glib/json-glib.h>

#include "shapes.h"

/* Frames waiting in appsrc: enough to keep the encoder busy, little memory. */
#define QUEUED_FRAMES 4

typedef struct {
  int width, height, fps, frames, shapes;
  gint64 seed;
  char *output, *annotations;
  gboolean live;
} Options;

typedef struct {
  const char *extension, *encoder, *muxer;
} Format;

static const Format formats[] = {
  { ".webm", "vp8enc", "webmmux" },
  { ".mkv", "vp8enc", "matroskamux" },
  { ".avi", "jpegenc", "avimux" },
};

static const Format *
format_for (const char *path)
{
  for (size_t i = 0; i < G_N_ELEMENTS (formats); i++)
    if (g_str_has_suffix (path, formats[i].extension))
      return &formats[i];
  return NULL;
}

static GstElement *
make_element (const char *factory, GError **error)
{
  GstElement *element = gst_element_factory_make (factory, NULL);
  if (element == NULL)
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
                 "the GStreamer element '%s' is not available; install "
                 "gstreamer1.0-plugins-base and gstreamer1.0-plugins-good", factory);
  return element;
}

/* vp8enc's defaults (256 kbit/s, best-quality deadline) blur the noise texture that the model
 * saw in training and are slow; a constant quality keeps the pictures close to what was drawn. */
static void
configure_encoder (GstElement *encoder, const char *factory)
{
  if (strcmp (factory, "vp8enc") == 0) {
    gst_util_set_object_arg (G_OBJECT (encoder), "end-usage", "cq");
    g_object_set (encoder, "cq-level", 8, "target-bitrate", 64 * 1000 * 1000, "deadline",
                  (gint64) 1, "keyframe-max-dist", 60, NULL);
  } else {
    g_object_set (encoder, "quality", 95, NULL);
  }
}

static GstElement *
build_pipeline (const Options *opt, const Format *format, GstElement **appsrc, GError **error)
{
  const char *factories[] = { "appsrc", "videoconvert", format->encoder, format->muxer,
                              "filesink" };
  GstElement *elements[G_N_ELEMENTS (factories)] = { NULL };
  for (size_t i = 0; i < G_N_ELEMENTS (factories); i++) {
    if ((elements[i] = make_element (factories[i], error)) == NULL) {
      for (size_t j = 0; j < i; j++)
        gst_object_unref (gst_object_ref_sink (elements[j]));
      return NULL;
    }
  }
  GstElement *pipeline = gst_pipeline_new ("shapes-video");
  for (size_t i = 0; i < G_N_ELEMENTS (elements); i++)
    gst_bin_add (GST_BIN (pipeline), elements[i]);
  if (!gst_element_link_many (elements[0], elements[1], elements[2], elements[3], elements[4],
                              NULL)) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
                 "cannot link appsrc ! videoconvert ! %s ! %s ! filesink", format->encoder,
                 format->muxer);
    gst_object_unref (pipeline);
    return NULL;
  }

  GstVideoInfo info;
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_RGB, opt->width, opt->height);
  GST_VIDEO_INFO_FPS_N (&info) = opt->fps;
  GST_VIDEO_INFO_FPS_D (&info) = 1;
  GstCaps *caps = gst_video_info_to_caps (&info);
  g_object_set (elements[0], "caps", caps, "format", GST_FORMAT_TIME, "is-live", opt->live,
                NULL);
  gst_caps_unref (caps);
  configure_encoder (elements[2], format->encoder);
  g_object_set (elements[4], "location", opt->output, NULL);
  *appsrc = elements[0];
  return pipeline;
}

/* The first error on the bus, as a GError; NULL if none arrived within `timeout`. */
static GError *
pop_error (GstBus *bus, GstClockTime timeout, gboolean *eos)
{
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, timeout, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  GError *error = NULL;
  if (msg != NULL && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    char *debug = NULL;
    gst_message_parse_error (msg, &error, &debug);
    g_prefix_error (&error, "%s: ", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)));
    g_free (debug);
  } else if (msg != NULL && eos != NULL) {
    *eos = TRUE;
  }
  if (msg != NULL)
    gst_message_unref (msg);
  return error;
}

/* ---- annotations ------------------------------------------------------------------------ */

static void
add_doubles (JsonBuilder *b, const char *name, const double *values, int n)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_double_value (b, values[i]);
  json_builder_end_array (b);
}

static void
begin_annotations (JsonBuilder *b, const Options *opt, const Sam2ShapesScene *scene)
{
  json_builder_begin_object (b);
  char *video = g_path_get_basename (opt->output);
  json_builder_set_member_name (b, "video");
  json_builder_add_string_value (b, video);
  g_free (video);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, opt->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, opt->height);
  json_builder_set_member_name (b, "fps");
  json_builder_add_int_value (b, opt->fps);
  json_builder_set_member_name (b, "n_frames");
  json_builder_add_int_value (b, opt->frames);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, opt->seed);
  json_builder_set_member_name (b, "shapes");
  json_builder_begin_array (b);
  for (int i = 0; i < opt->shapes; i++) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "id");
    json_builder_add_int_value (b, i);
    json_builder_set_member_name (b, "kind");
    json_builder_add_string_value (b, sam2_shape_kind_name (sam2_shapes_scene_get_kind (scene, i)));
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "frames");
  json_builder_begin_array (b);
}

/* One frame's visible shapes: id, box (x0, y0, x1, y1; x1, y1 exclusive), point, area. */
static void
add_frame_annotations (JsonBuilder *b, int frame, int fps, const Sam2ShapeInfo *info, int n)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "frame");
  json_builder_add_int_value (b, frame);
  json_builder_set_member_name (b, "time");
  json_builder_add_double_value (b, (double) frame / fps);
  json_builder_set_member_name (b, "objects");
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++) {
    if (info[i].area == 0)
      continue;
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "id");
    json_builder_add_int_value (b, i);
    add_doubles (b, "box", info[i].box, 4);
    add_doubles (b, "point", info[i].point, 2);
    json_builder_set_member_name (b, "area");
    json_builder_add_int_value (b, (gint64) info[i].area);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static gboolean
write_annotations (JsonBuilder *b, const char *path, GError **error)
{
  json_builder_end_array (b);
  json_builder_end_object (b);
  JsonNode *root = json_builder_get_root (b);
  JsonGenerator *gen = json_generator_new ();
  json_generator_set_root (gen, root);
  gboolean ok = json_generator_to_file (gen, path, error);
  g_object_unref (gen);
  json_node_unref (root);
  return ok;
}

/* ---- frames ----------------------------------------------------------------------------- */

static GstBuffer *
render_frame (const Sam2ShapesScene *scene, const GstVideoInfo *info, int frame, int fps)
{
  GstBuffer *buffer = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (info), NULL);
  GstMapInfo map;
  gst_buffer_map (buffer, &map, GST_MAP_WRITE);
  /* Row padding is never shown but is zeroed so no uninitialised bytes reach the encoder. */
  memset (map.data, 0, map.size);
  sam2_shapes_scene_render (scene, frame, map.data + GST_VIDEO_INFO_PLANE_OFFSET (info, 0),
                            GST_VIDEO_INFO_PLANE_STRIDE (info, 0), NULL);
  gst_buffer_unmap (buffer, &map);
  GST_BUFFER_PTS (buffer) = gst_util_uint64_scale_int (frame, GST_SECOND, fps);
  GST_BUFFER_DURATION (buffer) = gst_util_uint64_scale_int (frame + 1, GST_SECOND, fps) -
                                 GST_BUFFER_PTS (buffer);
  return buffer;
}

/* Pushes every frame, never more than QUEUED_FRAMES ahead of the encoder, watching the bus so
 * that an encoder or file error ends the loop at once instead of leaving appsrc blocked. */
static gboolean
push_frames (const Options *opt, GstElement *pipeline, GstElement *appsrc,
             const Sam2ShapesScene *scene, JsonBuilder *annotations, GError **error)
{
  GstVideoInfo info;
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_RGB, opt->width, opt->height);
  const guint64 queue_limit = (guint64) QUEUED_FRAMES * GST_VIDEO_INFO_SIZE (&info);
  GstBus *bus = gst_element_get_bus (pipeline);
  Sam2ShapeInfo *shapes = g_new (Sam2ShapeInfo, opt->shapes);
  const gint64 start = g_get_monotonic_time ();
  gboolean ok = TRUE;
  for (int t = 0; t < opt->frames && ok; t++) {
    GstBuffer *buffer = render_frame (scene, &info, t, opt->fps);
    sam2_shapes_scene_describe (scene, t, shapes);
    add_frame_annotations (annotations, t, opt->fps, shapes, opt->shapes);
    if (opt->live) {
      const gint64 due = start + (gint64) (GST_BUFFER_PTS (buffer) / GST_USECOND);
      if (due > g_get_monotonic_time ())
        g_usleep (due - g_get_monotonic_time ());
    }
    if (gst_app_src_push_buffer (GST_APP_SRC (appsrc), buffer) != GST_FLOW_OK) {
      *error = pop_error (bus, 0, NULL);
      if (*error == NULL)
        g_set_error (error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
                     "the pipeline stopped accepting frames at frame %d", t);
      ok = FALSE;
    }
    while (ok && gst_app_src_get_current_level_bytes (GST_APP_SRC (appsrc)) > queue_limit)
      ok = (*error = pop_error (bus, 5 * GST_MSECOND, NULL)) == NULL;
    if (ok)
      ok = (*error = pop_error (bus, 0, NULL)) == NULL;
  }
  g_free (shapes);
  gst_object_unref (bus);
  return ok;
}

static gboolean
run (const Options *opt, GError **error)
{
  const Format *format = format_for (opt->output);
  GstElement *appsrc = NULL;
  GstElement *pipeline = build_pipeline (opt, format, &appsrc, error);
  if (pipeline == NULL)
    return FALSE;
  Sam2ShapesScene *scene = sam2_shapes_scene_new ((guint64) opt->seed, opt->width, opt->height,
                                                  opt->shapes);
  JsonBuilder *annotations = json_builder_new ();
  begin_annotations (annotations, opt, scene);

  gboolean ok = FALSE;
  GstBus *bus = gst_element_get_bus (pipeline);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    if ((*error = pop_error (bus, 0, NULL)) == NULL)
      g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_STATE_CHANGE,
                   "cannot start the pipeline writing %s", opt->output);
  } else if (push_frames (opt, pipeline, appsrc, scene, annotations, error)) {
    gst_app_src_end_of_stream (GST_APP_SRC (appsrc));
    gboolean eos = FALSE;
    /* The muxer finishes the file (index, duration) only on EOS. */
    *error = pop_error (bus, GST_CLOCK_TIME_NONE, &eos);
    ok = eos && write_annotations (annotations, opt->annotations, error);
  }
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  g_object_unref (annotations);
  sam2_shapes_scene_free (scene);
  return ok;
}

static gboolean
check_options (Options *opt, GError **error)
{
  const char *problem = NULL;
  if (opt->output == NULL)
    problem = "--output is required (a .webm, .mkv or .avi file)";
  else if (format_for (opt->output) == NULL)
    problem = "--output must end in .webm, .mkv or .avi (the name picks the format)";
  else if (opt->width < 16 || opt->width > 8192 || opt->height < 16 || opt->height > 8192)
    problem = "--width and --height must be 16 to 8192";
  else if (opt->fps < 1 || opt->fps > 240)
    problem = "--fps must be 1 to 240";
  else if (opt->frames < 1)
    problem = "--frames must be at least 1";
  else if (opt->shapes < 1 || opt->shapes > SAM2_SHAPES_MAX)
    problem = "--shapes must be 1 to 255";
  if (problem != NULL) {
    g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, problem);
    return FALSE;
  }
  if (opt->annotations == NULL) {
    const char *dot = strrchr (opt->output, '.');
    opt->annotations = g_strdup_printf ("%.*s.json", (int) (dot - opt->output), opt->output);
  }
  return TRUE;
}

int
main (int argc, char **argv)
{
  Options opt = { .width = 640, .height = 480, .fps = 30, .frames = 150, .shapes = 4 };
  const GOptionEntry entries[] = {
    { "width", 0, 0, G_OPTION_ARG_INT, &opt.width, "Picture width (640)", "PIXELS" },
    { "height", 0, 0, G_OPTION_ARG_INT, &opt.height, "Picture height (480)", "PIXELS" },
    { "fps", 0, 0, G_OPTION_ARG_INT, &opt.fps, "Frames per second (30)", "N" },
    { "frames", 0, 0, G_OPTION_ARG_INT, &opt.frames, "Number of frames (150)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &opt.seed, "Seed of the scene (0)", "N" },
    { "shapes", 0, 0, G_OPTION_ARG_INT, &opt.shapes, "Number of shapes (4)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &opt.output,
      "Video file: .webm (VP8), .mkv (VP8) or .avi (Motion JPEG)", "FILE" },
    { "annotations", 0, 0, G_OPTION_ARG_FILENAME, &opt.annotations,
      "Per-frame boxes and points (default: the output with .json)", "FILE" },
    { "live", 0, 0, G_OPTION_ARG_NONE, &opt.live, "Produce frames in real time, as a camera",
      NULL },
    { NULL }
  };
  GOptionContext *context = g_option_context_new ("- write a video of moving shapes");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_add_group (context, gst_init_get_option_group ());
  GError *error = NULL;
  int status = 0;
  if (!g_option_context_parse (context, &argc, &argv, &error) || !check_options (&opt, &error) ||
      !run (&opt, &error)) {
    g_printerr ("shapes-video: %s\n", error->message);
    g_error_free (error);
    status = 1;
  }
  g_option_context_free (context);
  g_free (opt.output);
  g_free (opt.annotations);
  return status;
}
