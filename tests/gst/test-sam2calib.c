/* test-sam2calib.c: sam2calib with the demo model: caps for every input format, the messages
 * and their order, a quantized model that loads, frame-stride, the statistics cache, every way
 * it refuses to start or to finish (with no file left behind), stopping while it quantizes,
 * while it writes and from its worker's thread, properties set in READY, the device kept
 * across restarts, and sam2seg switching
 * to the model it writes while the stream runs. Calibration uses a small round-to-nearest
 * recipe (a second or two per run on the demo model); the shipped recipes are tested by the
 * core tests and sam2q. */
#include "test-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "safetensors.h"
#include "sam2.h"

/* RTN weights, few tokens: quick to quantize, same code paths for the element. The file name
 * is the recipe name, which goes into the output file name. */
#define TEST_RECIPE "quant:\n  wgts:\n    kernel_gptq: false\n" \
  "calib:\n  max_tokens: 256\n  keep_tokens: 64\n"
#define TEST_RECIPE_NAME "rtn-small"

static gchar *tmp_dir;          /* per test case */
static gchar *recipe_path;

static void
setup (void)
{
  GError *error = NULL;

  tmp_dir = g_dir_make_tmp ("sam2calib-test-XXXXXX", &error);
  fail_unless (tmp_dir != NULL, "%s", error ? error->message : "");
  recipe_path = g_build_filename (tmp_dir, TEST_RECIPE_NAME ".yaml", NULL);
  fail_unless (g_file_set_contents (recipe_path, TEST_RECIPE, -1, NULL));
}

static void
remove_tree (const gchar * path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const gchar *name;

  if (dir != NULL) {
    while ((name = g_dir_read_name (dir)) != NULL) {
      gchar *child = g_build_filename (path, name, NULL);
      remove_tree (child);
      g_free (child);
    }
    g_dir_close (dir);
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}

static void
teardown (void)
{
  remove_tree (tmp_dir);
  g_clear_pointer (&tmp_dir, g_free);
  g_clear_pointer (&recipe_path, g_free);
}

/* A directory under the test's temporary directory (not created). */
static gchar *
out_dir (const gchar * name)
{
  return g_build_filename (tmp_dir, name, NULL);
}

/* Number of .safetensors files (and leftovers of atomic writes) in `dir`. */
static guint
count_outputs (const gchar * dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const gchar *name;
  guint n = 0;

  if (d == NULL)
    return 0;
  while ((name = g_dir_read_name (d)) != NULL)
    n += strstr (name, ".safetensors") != NULL || name[0] == '.';
  g_dir_close (d);
  return n;
}

/* The names in `dir` that start with `prefix` and end with `suffix`, in a new NULL-terminated
 * array (g_strfreev). */
static gchar **
files_like (const gchar * dir, const gchar * prefix, const gchar * suffix)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  GPtrArray *names = g_ptr_array_new ();
  const gchar *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (g_str_has_prefix (name, prefix) && g_str_has_suffix (name, suffix))
      g_ptr_array_add (names, g_build_filename (dir, name, NULL));
  if (d != NULL)
    g_dir_close (d);
  g_ptr_array_add (names, NULL);
  return (gchar **) g_ptr_array_free (names, FALSE);
}

/* A sam2calib with the demo model and the test recipe writing to `output`, then the given
 * properties (NULL-terminated pairs). async=FALSE so that the harness can start it. */
static GstElement *
make_calib (const gchar * output, const gchar * first_property, ...)
{
  GstElement *calib = gst_element_factory_make ("sam2calib", NULL);
  va_list args;

  fail_unless (calib != NULL, "sam2calib not found: is GST_PLUGIN_PATH the build's gst/?");
  g_object_set (calib, "model", test_model_path (), "config", recipe_path, "output", output,
      "async", FALSE, NULL);
  va_start (args, first_property);
  if (first_property != NULL)
    g_object_set_valist (G_OBJECT (calib), first_property, args);
  va_end (args);
  return calib;
}

static GstHarness *
calib_harness (GstElement * calib, GstBus * bus, GstVideoFormat format, gint w, gint h)
{
  GstHarness *harness;
  gchar *caps;

  if (bus != NULL)
    gst_element_set_bus (calib, bus);
  harness = gst_harness_new_with_element (calib, "sink", NULL);
  caps = g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1",
      gst_video_format_to_string (format), w, h);
  gst_harness_set_src_caps_str (harness, caps);
  g_free (caps);
  return harness;
}

/* A frame of any supported format: packed RGB formats from the pixels, YUV ones made by
 * converting them (so every format carries the same picture). */
static GstBuffer *
make_any_frame (const guint8 * rgb, gint w, gint h, GstVideoFormat format, GstClockTime pts)
{
  GstVideoInfo in_info, out_info;
  GstVideoConverter *conv;
  GstBuffer *in, *out;
  GstVideoFrame fin, fout;

  if (format != GST_VIDEO_FORMAT_NV12 && format != GST_VIDEO_FORMAT_I420)
    return test_make_frame (rgb, w, h, format, 0, pts);
  in = test_make_frame (rgb, w, h, GST_VIDEO_FORMAT_RGB, 0, pts);
  gst_video_info_set_format (&in_info, GST_VIDEO_FORMAT_RGB, w, h);
  gst_video_info_set_format (&out_info, format, w, h);
  conv = gst_video_converter_new (&in_info, &out_info, NULL);
  out = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&out_info), NULL);
  fail_unless (gst_video_frame_map (&fin, &in_info, in, GST_MAP_READ));
  fail_unless (gst_video_frame_map (&fout, &out_info, out, GST_MAP_WRITE));
  gst_video_converter_frame (conv, &fin, &fout);
  gst_video_frame_unmap (&fin);
  gst_video_frame_unmap (&fout);
  gst_video_converter_free (conv);
  gst_buffer_unref (in);
  GST_BUFFER_PTS (out) = pts;
  GST_BUFFER_DURATION (out) = GST_SECOND / 30;
  return out;
}

static guint8 *demo_rgb;
static gint demo_w, demo_h;

static void
load_demo (void)
{
  if (demo_rgb == NULL)
    demo_rgb = test_load_demo_rgb ("shapes-0.png", &demo_w, &demo_h);
}

/* A harness on `calib` fed RGB frames of the demo picture's size. */
static GstHarness *
demo_harness (GstElement * calib, GstBus * bus)
{
  load_demo ();
  return calib_harness (calib, bus, GST_VIDEO_FORMAT_RGB, demo_w, demo_h);
}

/* Pushes the demo picture as an RGB frame at `pts`. */
static GstFlowReturn
push_demo (GstHarness * h, GstClockTime pts)
{
  return gst_harness_push (h, make_any_frame (demo_rgb, demo_w, demo_h, GST_VIDEO_FORMAT_RGB,
          pts));
}

/* The element messages named `name` among `msgs`. */
static guint
count_named (GList * msgs, const gchar * name)
{
  guint n = 0;
  for (GList * l = msgs; l; l = l->next) {
    const GstStructure *s = gst_message_get_structure (l->data);
    n += GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ELEMENT && gst_structure_has_name (s, name);
  }
  return n;
}

static GList *
drain_bus (GstBus * bus)
{
  GList *msgs = NULL;
  GstMessage *m;
  while ((m = gst_bus_pop (bus)) != NULL)
    msgs = g_list_append (msgs, m);
  return msgs;
}

static void
free_messages (GList * msgs)
{
  g_list_free_full (msgs, (GDestroyNotify) gst_message_unref);
}

/* The first error on the bus, if any. */
static GError *
bus_error (GList * msgs)
{
  for (GList * l = msgs; l; l = l->next)
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ERROR) {
      GError *error = NULL;
      gst_message_parse_error (l->data, &error, NULL);
      return error;
    }
  return NULL;
}

/* ---- formats ------------------------------------------------------------------------------- */

/* Every format of the template negotiates and its frame runs through the model: one
 * "sam2calib-progress" per frame. num-frames=2 with one frame pushed, so nothing quantizes. */
GST_START_TEST (test_formats)
{
  const GstVideoFormat formats[] = { GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_RGBA,
    GST_VIDEO_FORMAT_RGBx, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_BGRA, GST_VIDEO_FORMAT_BGRx,
    GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_I420
  };
  gchar *dir = out_dir ("formats");

  load_demo ();
  for (guint i = 0; i < G_N_ELEMENTS (formats); i++) {
    GstBus *bus = gst_bus_new ();
    GstElement *calib = make_calib (dir, "num-frames", 2, NULL);
    GstHarness *h = calib_harness (calib, bus, formats[i], demo_w, demo_h);
    GList *msgs;
    GError *error;

    fail_unless_equals_int (gst_harness_push (h, make_any_frame (demo_rgb, demo_w, demo_h,
                formats[i], 0)), GST_FLOW_OK);
    msgs = drain_bus (bus);
    error = bus_error (msgs);
    fail_unless (error == NULL, "%s: %s", gst_video_format_to_string (formats[i]),
        error ? error->message : "");
    fail_unless_equals_int (count_named (msgs, "sam2calib-progress"), 1);
    free_messages (msgs);
    gst_harness_teardown (h);
    gst_object_unref (calib);
    gst_object_unref (bus);
  }
  /* the template says what the element takes */
  {
    GstElementFactory *f = gst_element_factory_find ("sam2calib");
    GstCaps *caps = NULL;
    for (const GList * t = gst_element_factory_get_static_pad_templates (f); t; t = t->next)
      caps = gst_static_caps_get (&((GstStaticPadTemplate *) t->data)->static_caps);
    GstCaps *nv12 = gst_caps_from_string ("video/x-raw,format=NV12,width=640,height=480");
    GstCaps *gray = gst_caps_from_string ("video/x-raw,format=GRAY8,width=640,height=480");
    fail_unless (caps != NULL);
    fail_unless (gst_caps_can_intersect (caps, nv12));
    fail_if (gst_caps_can_intersect (caps, gray));
    gst_caps_unref (nv12);
    gst_caps_unref (gray);
    gst_caps_unref (caps);
    gst_object_unref (f);
  }
  fail_unless_equals_int (count_outputs (dir), 0);
  g_free (dir);
}

GST_END_TEST;

/* ---- a whole calibration ------------------------------------------------------------------- */

static void
on_quantized (GstElement * calib, const gchar * path, gchar ** out)
{
  fail_unless (*out == NULL, "quantized emitted twice");
  *out = g_strdup (path);
}

GST_START_TEST (test_frame_size_limit_in_caps)
{
  test_assert_frame_size_caps ("sam2calib");
}

GST_END_TEST;

/* Frames, then EOS: messages in order, the file named as sam2q names it, loadable and
 * quantized, EOS posted after it is written, later buffers dropped with OK. */
GST_START_TEST (test_calibrate_messages_model)
{
  gchar *dir = out_dir ("out/nested");
  gchar *expect = g_build_filename (dir, "sam2-shapes-" TEST_RECIPE_NAME ".safetensors", NULL);
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 3, NULL);
  GstHarness *h;
  gchar *signalled = NULL;
  GList *msgs, *l;
  GError *error = NULL;
  Sam2Model *model;
  gint phase = 0;               /* 0 start, 1 frames, 2 layers, 3 complete, 4 done, 5 eos */
  guint frames = 0, layers = 0, layer_total = 0;
  GStatBuf st;

  load_demo ();
  g_signal_connect (calib, "quantized", G_CALLBACK (on_quantized), &signalled);
  h = calib_harness (calib, bus, GST_VIDEO_FORMAT_NV12, demo_w, demo_h);
  for (gint i = 0; i < 5; i++)
    fail_unless_equals_int (gst_harness_push (h, make_any_frame (demo_rgb, demo_w, demo_h,
                GST_VIDEO_FORMAT_NV12, i * GST_SECOND / 30)), GST_FLOW_OK);
  /* returns when sam2calib lets EOS through: after the file is written */
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  fail_unless (g_file_test (expect, G_FILE_TEST_IS_REGULAR), "%s is missing", expect);
  fail_unless (signalled != NULL && strcmp (signalled, expect) == 0, "quantized(%s)",
      signalled);

  msgs = drain_bus (bus);
  error = bus_error (msgs);
  fail_unless (error == NULL, "%s", error ? error->message : "");
  for (l = msgs; l; l = l->next) {
    GstMessage *m = l->data;
    const GstStructure *s = gst_message_get_structure (m);

    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gchar *code, *text;
      gst_message_parse_progress (m, &type, &code, &text);
      fail_unless_equals_string (code, "sam2calib");
      if (type == GST_PROGRESS_TYPE_START) {
        fail_unless_equals_int (phase, 0);
        phase = 1;
      } else if (type == GST_PROGRESS_TYPE_COMPLETE) {
        fail_unless_equals_int (phase, 2);
        fail_unless_equals_string (text, expect);
        phase = 3;
      } else {
        fail_unless_equals_int (type, GST_PROGRESS_TYPE_CONTINUE);
        fail_unless (phase == 1 || phase == 2);
      }
      g_free (code);
      g_free (text);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (s, "sam2calib-progress")) {
      guint f, total;
      fail_unless_equals_int (phase, 1);
      fail_unless (gst_structure_get_uint (s, "frames", &f));
      fail_unless (gst_structure_get_uint (s, "total", &total));
      fail_unless_equals_int (f, ++frames);
      fail_unless_equals_int (total, 3);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (s, "sam2calib-layer")) {
      gint done, total;
      gdouble err;
      fail_unless (phase == 1 || phase == 2);
      fail_unless_equals_int (frames, 3);
      phase = 2;
      fail_unless (gst_structure_get_int (s, "done", &done));
      fail_unless (gst_structure_get_int (s, "total", &total));
      fail_unless (gst_structure_get_double (s, "error", &err));
      fail_unless_equals_int (done, ++layers);
      fail_unless (g_str_has_prefix (gst_structure_get_string (s, "layer"), "vision_encoder."),
          "layer %s", gst_structure_get_string (s, "layer"));
      fail_unless (gst_structure_get_string (s, "stage") != NULL);
      /* a quantized layer's relative output error: small but not zero */
      fail_unless (isfinite (err) && err > 0.0 && err < 0.5, "error %g", err);
      layer_total = total;
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (s, "sam2calib-done")) {
      guint n;
      guint64 size;
      gdouble secs;
      fail_unless_equals_int (phase, 3);
      phase = 4;
      fail_unless_equals_string (gst_structure_get_string (s, "path"), expect);
      fail_unless (gst_structure_get_uint (s, "n-frames", &n));
      fail_unless_equals_int (n, 3);
      fail_unless (gst_structure_get_uint64 (s, "size", &size));
      fail_unless (g_stat (expect, &st) == 0);
      fail_unless_equals_uint64 (size, (guint64) st.st_size);
      fail_unless (gst_structure_get_double (s, "seconds", &secs) && secs > 0.0);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS) {
      fail_unless_equals_int (phase, 4);
      phase = 5;
    }
  }
  fail_unless_equals_int (phase, 5);
  fail_unless (layers > 0 && layers == layer_total, "%u of %u layers", layers, layer_total);
  free_messages (msgs);

  model = sam2_model_load (expect, &error);
  fail_unless (model != NULL, "%s", error ? error->message : "");
  fail_unless (sam2_model_is_quantized (model));
  sam2_model_unref (model);
  /* nothing but the model in the directory: no temporary file, no write probe */
  fail_unless_equals_int (count_outputs (dir), 1);

  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (signalled);
  g_free (expect);
  g_free (dir);
}

GST_END_TEST;

/* output may name the file; EOS before num-frames quantizes what arrived; post-messages=FALSE
 * keeps the per-frame and per-layer messages off the bus but not sam2calib-done. */
GST_START_TEST (test_output_file_eos_early)
{
  gchar *path = g_build_filename (tmp_dir, "sub", "mine.safetensors", NULL);
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (path, "num-frames", 50, "post-messages", FALSE, NULL);
  GstHarness *h;
  GList *msgs;
  guint n;
  const GstStructure *s = NULL;

  h = demo_harness (calib, bus);
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  fail_unless (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  msgs = drain_bus (bus);
  fail_unless_equals_int (count_named (msgs, "sam2calib-progress"), 0);
  fail_unless_equals_int (count_named (msgs, "sam2calib-layer"), 0);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 1);
  for (GList * l = msgs; l; l = l->next) {
    fail_if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_PROGRESS);
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ELEMENT)
      s = gst_message_get_structure (l->data);
  }
  fail_unless (gst_structure_get_uint (s, "n-frames", &n));
  fail_unless_equals_int (n, 1);
  free_messages (msgs);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (path);
}

GST_END_TEST;

/* batch-size=2 with num-frames=3: frames wait in twos (a progress message per frame all the
 * same), the third runs alone at quantization; the file counts three frames and records the
 * batch size in its recipe. */
GST_START_TEST (test_batch_size)
{
  gchar *path = g_build_filename (tmp_dir, "batched.safetensors", NULL);
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (path, "num-frames", 3, "batch-size", 2, NULL);
  GstHarness *h;
  GList *msgs;
  guint n = 0, batch = 0;
  const GstStructure *done = NULL;
  GError *error = NULL;
  Sam2Safetensors *file;
  const gchar *recipe;

  g_object_get (calib, "batch-size", &batch, NULL);
  fail_unless_equals_int (batch, 2);
  h = demo_harness (calib, bus);
  for (guint i = 0; i < 3; i++)
    fail_unless_equals_int (push_demo (h, i * GST_SECOND / 30), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  msgs = drain_bus (bus);
  fail_unless_equals_int (count_named (msgs, "sam2calib-progress"), 3);
  for (GList * l = msgs; l; l = l->next)
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (gst_message_get_structure (l->data), "sam2calib-done"))
      done = gst_message_get_structure (l->data);
  fail_unless (done != NULL);
  fail_unless (gst_structure_get_uint (done, "n-frames", &n));
  fail_unless_equals_int (n, 3);
  free_messages (msgs);
  file = sam2_safetensors_open (path, &error);
  fail_unless (file != NULL, "%s", error ? error->message : "");
  recipe = sam2_safetensors_metadata (file, "recipe");
  fail_unless (recipe != NULL && strstr (recipe, "batch_size: 2") != NULL, "%s", recipe);
  sam2_safetensors_close (file);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (path);
}

GST_END_TEST;

/* frame-stride=3 takes frames 0, 3, 6...: the frames between run nothing and post nothing. */
GST_START_TEST (test_frame_stride)
{
  gchar *dir = out_dir ("stride");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 3, "frame-stride", 3, NULL);
  GstHarness *h;
  const guint expected[7] = { 1, 0, 0, 1, 0, 0, 1 };

  h = demo_harness (calib, bus);
  for (guint i = 0; i < 6; i++) {
    GList *msgs;
    fail_unless_equals_int (push_demo (h, i * GST_SECOND / 30), GST_FLOW_OK);
    msgs = drain_bus (bus);
    fail_unless_equals_int (count_named (msgs, "sam2calib-progress"), expected[i]);
    free_messages (msgs);
  }
  /* stopped with 2 of 3 frames: no quantization, no file */
  gst_harness_teardown (h);
  fail_unless_equals_int (count_outputs (dir), 0);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

/* ---- statistics cache ---------------------------------------------------------------------- */

/* One harness run over `frames` (RGB, demo size) then EOS, on `device` in `precision` (NULL: the
 * default); the sam2calib-done structure (a copy) or NULL, the warnings and the error message
 * through the pointers. */
static GstStructure *
cache_run_in (const gchar * device, const gchar * precision, const gchar * output,
    const gchar * cache, guint num_frames, guint8 ** frames, guint n, gchar ** warning,
    gchar ** error_message)
{
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (output, "num-frames", num_frames, "cache-dir", cache, NULL);
  GstHarness *h;
  GstStructure *done = NULL;
  GList *msgs;

  gst_util_set_object_arg (G_OBJECT (calib), "device", device);
  if (precision != NULL)
    gst_util_set_object_arg (G_OBJECT (calib), "precision", precision);
  h = calib_harness (calib, bus, GST_VIDEO_FORMAT_RGB, demo_w, demo_h);
  for (guint i = 0; i < n; i++)
    fail_unless_equals_int (gst_harness_push (h, make_any_frame (frames[i], demo_w, demo_h,
                GST_VIDEO_FORMAT_RGB, i * GST_SECOND / 30)), GST_FLOW_OK);
  gst_harness_push_event (h, gst_event_new_eos ());
  msgs = drain_bus (bus);
  *warning = NULL;
  *error_message = NULL;
  for (GList * l = msgs; l; l = l->next) {
    GstMessage *m = l->data;
    GError *e = NULL;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_WARNING && *warning == NULL) {
      gst_message_parse_warning (m, &e, NULL);
      *warning = g_strdup (e->message);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR && *error_message == NULL) {
      gst_message_parse_error (m, &e, NULL);
      *error_message = g_strdup (e->message);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (gst_message_get_structure (m), "sam2calib-done")) {
      done = gst_structure_copy (gst_message_get_structure (m));
    }
    g_clear_error (&e);
  }
  free_messages (msgs);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  return done;
}

static GstStructure *
cache_run_on (const gchar * device, const gchar * output, const gchar * cache,
    guint num_frames, guint8 ** frames, guint n, gchar ** warning, gchar ** error_message)
{
  return cache_run_in (device, NULL, output, cache, num_frames, frames, n, warning,
      error_message);
}

static GstStructure *
cache_run (const gchar * output, const gchar * cache, guint num_frames, guint8 ** frames,
    guint n, gchar ** warning, gchar ** error_message)
{
  return cache_run_on ("cpu", output, cache, num_frames, frames, n, warning, error_message);
}

static gboolean
done_cached (const GstStructure * done)
{
  gboolean cached = FALSE;
  fail_unless (done != NULL);
  fail_unless (gst_structure_get_boolean (done, "cached", &cached));
  return cached;
}

/* The same frames again reuse the statistics; other frames after a matching first one
 * restart calibration from the first that differs; EOS inside a reused set is an error. */
GST_START_TEST (test_cache)
{
  gchar *cache = out_dir ("cache");
  gchar *out1 = out_dir ("c1"), *out2 = out_dir ("c2"), *out3 = out_dir ("c3");
  gchar *out4 = out_dir ("c4");
  gchar *path2 = g_build_filename (out2, "sam2-shapes-" TEST_RECIPE_NAME ".safetensors", NULL);
  gint w, h;
  guint8 *a, *b, *c;
  gchar *warning, *err;
  GstStructure *done;
  guint n;
  Sam2Model *model;
  GError *error = NULL;

  load_demo ();
  a = demo_rgb;
  b = test_load_demo_rgb ("shapes-3.png", &w, &h);
  fail_unless (w == demo_w && h == demo_h);
  c = test_load_demo_rgb ("shapes-7.png", &w, &h);
  fail_unless (w == demo_w && h == demo_h);

  /* first run: computed and cached */
  done = cache_run (out1, cache, 2, (guint8 *[]) { a, b }, 2, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  fail_if (done_cached (done));
  gst_structure_free (done);

  /* same frames: loaded, and the model is as good as a model */
  done = cache_run (out2, cache, 2, (guint8 *[]) { a, b }, 2, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  fail_unless (done_cached (done));
  fail_unless (gst_structure_get_uint (done, "n-frames", &n));
  fail_unless_equals_int (n, 2);
  gst_structure_free (done);
  model = sam2_model_load (path2, &error);
  fail_unless (model != NULL && sam2_model_is_quantized (model), "%s",
      error ? error->message : "");
  sam2_model_unref (model);

  /* same first frame, then another: a warning, and the set becomes (c, a) from c on */
  done = cache_run (out3, cache, 2, (guint8 *[]) { a, c, a }, 3, &warning, &err);
  fail_unless (err == NULL, "%s", err);
  fail_unless (warning != NULL && strstr (warning, "Frame 2 differs from the cached "
          "calibration set") != NULL, "%s", warning);
  fail_if (done_cached (done));
  fail_unless (gst_structure_get_uint (done, "n-frames", &n));
  fail_unless_equals_int (n, 2);
  gst_structure_free (done);
  g_free (warning);

  /* EOS after the first frame of a cached set: an error and no file; the index is gone, so
   * that the next run over these frames does not stop at the same place again */
  done = cache_run (out4, cache, 2, (guint8 *[]) { a }, 1, &warning, &err);
  fail_unless (done == NULL);
  fail_unless (err != NULL && strstr (err, "before the set was complete") != NULL, "%s", err);
  fail_unless_equals_int (count_outputs (out4), 0);
  g_free (err);
  done = cache_run (out4, cache, 2, (guint8 *[]) { a }, 1, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  fail_unless (gst_structure_get_uint (done, "n-frames", &n));
  fail_unless_equals_int (n, 1);
  gst_structure_free (done);

  g_free (b);
  g_free (c);
  g_free (path2);
  g_free (out1);
  g_free (out2);
  g_free (out3);
  g_free (out4);
  g_free (cache);
}

GST_END_TEST;

/* An index whose statistics are gone (deleted to free space) is not followed: the run computes
 * them (it used to compare the frames, find nothing at the end and fail at EOS with "no
 * calibration frames"). A save that fails (a directory in the statistics' place, as a full
 * disk would) leaves no index, and a warning says so. A stream that goes on past a set an
 * earlier EOS cut short is told as such, not as a frame that differs. */
GST_START_TEST (test_cache_incomplete)
{
  gchar *cache = out_dir ("cache-incomplete"), *out = out_dir ("ci");
  gchar **stats, **indexes;
  gchar *warning, *err;
  GstStructure *done;
  gint w, h;
  guint8 *b;

  load_demo ();
  b = test_load_demo_rgb ("shapes-3.png", &w, &h);
  done = cache_run (out, cache, 2, (guint8 *[]) { demo_rgb, b }, 2, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  gst_structure_free (done);

  stats = files_like (cache, "calib-", ".safetensors");
  fail_unless_equals_int (g_strv_length (stats), 1);
  fail_unless_equals_int (g_unlink (stats[0]), 0);
  done = cache_run (out, cache, 2, (guint8 *[]) { demo_rgb, b }, 2, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  fail_if (done_cached (done));
  gst_structure_free (done);

  /* the statistics' file name taken by a directory: the save fails */
  indexes = files_like (cache, "sam2calib-", ".index");
  fail_unless_equals_int (g_strv_length (indexes), 1);
  fail_unless_equals_int (g_unlink (stats[0]), 0);
  fail_unless_equals_int (g_unlink (indexes[0]), 0);
  fail_unless_equals_int (g_mkdir (stats[0], 0755), 0);
  gst_check_add_log_filter ("sam2", G_LOG_LEVEL_WARNING,
      g_regex_new ("could not write the calibration cache", 0, 0, NULL), NULL, NULL, NULL);
  done = cache_run (out, cache, 2, (guint8 *[]) { demo_rgb, b }, 2, &warning, &err);
  gst_check_clear_log_filter ();
  fail_unless (err == NULL, "%s", err);
  fail_unless (warning != NULL && strstr (warning, "could not be saved") != NULL, "%s",
      warning);
  fail_unless (g_file_test (indexes[0], G_FILE_TEST_EXISTS) == FALSE, "an index without "
      "statistics was written");
  gst_structure_free (done);
  g_free (warning);
  fail_unless_equals_int (g_rmdir (stats[0]), 0);

  /* a set cut at 1 frame of 3 by EOS, then a stream that goes on */
  done = cache_run (out, cache, 3, (guint8 *[]) { b }, 1, &warning, &err);
  fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
  gst_structure_free (done);
  done = cache_run (out, cache, 3, (guint8 *[]) { b, demo_rgb, b, demo_rgb }, 4, &warning,
      &err);
  fail_unless (err == NULL, "%s", err);
  fail_unless (warning != NULL && strstr (warning, "goes on past the cached calibration "
          "set") != NULL, "%s", warning);
  gst_structure_free (done);
  g_free (warning);

  g_strfreev (indexes);
  g_strfreev (stats);
  g_free (b);
  g_free (out);
  g_free (cache);
}

GST_END_TEST;

/* The sam2calib-done message among `msgs` (NULL if none). */
static const GstStructure *
find_done (GList * msgs)
{
  for (GList * l = msgs; l; l = l->next)
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (gst_message_get_structure (l->data), "sam2calib-done"))
      return gst_message_get_structure (l->data);
  return NULL;
}

static void
check_backend (const GstStructure * done, const gchar * device)
{
  const gchar *backend;

  fail_unless (done != NULL, "no sam2calib-done");
  backend = gst_structure_get_string (done, "backend");
  fail_unless (backend != NULL && g_str_has_prefix (backend, device),
      "device=%s calibrated on \"%s\"", device, backend);
}

/* precision=bf16 on a CPU that has it: the frames run in BF16 (the done message says so) and the
 * file is written. The precision is part of the statistics cache's key: an FP32 run over the
 * same frames computes its own, and a second BF16 run reuses the first's. */
GST_START_TEST (test_precision_bf16)
{
  gchar *out = out_dir ("bf16"), *cache = g_build_filename (tmp_dir, "cache-bf16", NULL);
  gchar *warning, *error_message;
  GstStructure *done;
  const gchar *backend;

  if (!sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, NULL)) {
    GST_INFO ("this CPU has no BF16: precision=bf16 not run");
    g_free (out);
    g_free (cache);
    return;
  }
  load_demo ();
  done = cache_run_in ("cpu", "bf16", out, cache, 2, (guint8 *[]) { demo_rgb, demo_rgb }, 2,
      &warning, &error_message);
  fail_unless (error_message == NULL, "error: %s", error_message);
  fail_unless (done != NULL, "no sam2calib-done");
  backend = gst_structure_get_string (done, "backend");
  fail_unless_equals_string (backend, "cpu bf16");
  fail_unless_equals_int (count_outputs (out), 1);
  fail_if (done_cached (done));
  gst_structure_free (done);
  g_free (warning);

  for (guint run = 0; run < 2; run++) {
    const gchar *precision = run == 0 ? "fp32" : "bf16";
    done = cache_run_in ("cpu", precision, out, cache, 2,
        (guint8 *[]) { demo_rgb, demo_rgb }, 2, &warning, &error_message);
    fail_unless (error_message == NULL, "%s: error: %s", precision, error_message);
    fail_unless_equals_int (done_cached (done), run == 1);
    gst_structure_free (done);
    g_free (warning);
  }
  g_free (out);
  g_free (cache);
}

GST_END_TEST;

/* The device a run starts on calibrates all of it: after a cached set breaks off (calibration
 * restarts with a new calibrator) and after a restart (PLAYING -> READY -> PLAYING); the done
 * message's backend says where the frames ran. These once fell back to the CPU, which only a
 * machine with a GPU shows: without one only device=cpu runs here. */
GST_START_TEST (test_device_kept)
{
  const gchar *devices[] = { "cpu", "cuda" };
  gint w, h;
  guint8 *b;

  load_demo ();
  b = test_load_demo_rgb ("shapes-3.png", &w, &h);
  fail_unless (w == demo_w && h == demo_h);
  for (guint d = 0; d < G_N_ELEMENTS (devices); d++) {
    const gchar *device = devices[d];
    gchar *name = g_strdup_printf ("cache-%s", device);
    gchar *cache = out_dir (name);
    gchar *out = out_dir (device);
    gchar *warning, *err;
    GstStructure *done;
    GstBus *bus;
    GstElement *calib;
    GstHarness *harness;

    if (strcmp (device, "cuda") == 0 && !sam2_backend_available (SAM2_BACKEND_CUDA, NULL)) {
      GST_INFO ("no CUDA here: device=cuda not tested");
      g_free (name);
      g_free (cache);
      g_free (out);
      continue;
    }
    /* a cached set (demo, b); then (demo, demo): the second frame differs from the set's */
    done = cache_run_on (device, out, cache, 2, (guint8 *[]) { demo_rgb, b }, 2, &warning,
        &err);
    fail_unless (err == NULL && warning == NULL, "%s %s", err, warning);
    check_backend (done, device);
    gst_structure_free (done);
    done = cache_run_on (device, out, cache, 2, (guint8 *[]) { demo_rgb, demo_rgb, demo_rgb },
        3, &warning, &err);
    fail_unless (err == NULL, "%s", err);
    fail_unless (warning != NULL && strstr (warning, "differs from the cached") != NULL,
        "%s", warning);
    check_backend (done, device);
    gst_structure_free (done);
    g_free (warning);

    /* one element, two runs */
    bus = gst_bus_new ();
    calib = make_calib (out, "num-frames", 1, NULL);
    gst_util_set_object_arg (G_OBJECT (calib), "device", device);
    harness = demo_harness (calib, bus);
    for (guint run = 0; run < 2; run++) {
      GList *msgs;
      GError *error;

      if (run == 1) {
        gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,"
            "framerate=30/1", demo_w, demo_h);
        fail_unless_equals_int (gst_element_set_state (calib, GST_STATE_READY),
            GST_STATE_CHANGE_SUCCESS);
        fail_unless (gst_element_set_state (calib, GST_STATE_PLAYING)
            != GST_STATE_CHANGE_FAILURE);
        /* a new stream: the sink pad lost its sticky events when it was deactivated */
        fail_unless (gst_harness_push_event (harness,
                gst_event_new_stream_start ("second-run")));
        gst_harness_set_src_caps_str (harness, caps);
        g_free (caps);
      }
      fail_unless_equals_int (push_demo (harness, 0), GST_FLOW_OK);
      fail_unless (gst_harness_push_event (harness, gst_event_new_eos ()));
      msgs = drain_bus (bus);
      error = bus_error (msgs);
      fail_unless (error == NULL, "run %u: %s", run, error ? error->message : "");
      check_backend (find_done (msgs), device);
      free_messages (msgs);
    }
    gst_harness_teardown (harness);
    gst_object_unref (calib);
    gst_object_unref (bus);
    g_free (name);
    g_free (cache);
    g_free (out);
  }
  g_free (b);
}

GST_END_TEST;

/* Properties set in READY (before the first run, and between runs) are the ones a run uses,
 * without a warning; a wrong one set there still fails the start, before any frame. */
GST_START_TEST (test_ready_mutable)
{
  gchar *dir_a = out_dir ("ready-a"), *dir_b = out_dir ("ready-b"), *dir_c = out_dir ("ready-c");
  gchar *bad_recipe = g_build_filename (tmp_dir, "bad.yaml", NULL);
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir_a, "num-frames", 4, NULL);
  GstHarness *h = NULL;
  GstMessage *msg;
  GError *error = NULL;
  guint n;

  load_demo ();
  gst_element_set_bus (calib, bus);
  fail_unless_equals_int (gst_element_set_state (calib, GST_STATE_READY),
      GST_STATE_CHANGE_SUCCESS);
  for (guint run = 0; run < 2; run++) {
    const gchar *dir = run == 0 ? dir_b : dir_c;
    GList *msgs;
    const GstStructure *done;

    g_object_set (calib, "num-frames", 1, "output", dir, NULL);
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING | GST_MESSAGE_ERROR);
    fail_unless (msg == NULL, "a property set in READY was refused");
    g_object_get (calib, "num-frames", &n, NULL);
    fail_unless_equals_int (n, 1);
    if (run == 0) {
      h = demo_harness (calib, NULL);       /* READY -> PLAYING */
    } else {
      gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,"
          "framerate=30/1", demo_w, demo_h);
      fail_unless (gst_element_set_state (calib, GST_STATE_PLAYING)
          != GST_STATE_CHANGE_FAILURE);
      fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("run-2")));
      gst_harness_set_src_caps_str (h, caps);
      g_free (caps);
    }
    /* one frame is num-frames now: quantized at once, written to the new output */
    fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
    fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
    fail_unless_equals_int (count_outputs (dir), 1);
    msgs = drain_bus (bus);
    error = bus_error (msgs);
    fail_unless (error == NULL, "%s", error ? error->message : "");
    done = find_done (msgs);
    fail_unless (done != NULL && gst_structure_get_uint (done, "n-frames", &n));
    fail_unless_equals_int (n, 1);
    free_messages (msgs);
    fail_unless_equals_int (gst_element_set_state (calib, GST_STATE_READY),
        GST_STATE_CHANGE_SUCCESS);
  }
  fail_if (g_file_test (dir_a, G_FILE_TEST_EXISTS), "the first output was used");

  /* a recipe set in READY is checked when the element starts */
  fail_unless (g_file_set_contents (bad_recipe, "quant:\n  wgts:\n    dtype: sint5\n", -1,
          NULL));
  g_object_set (calib, "config", bad_recipe, NULL);
  fail_unless_equals_int (gst_element_set_state (calib, GST_STATE_PAUSED),
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  gst_message_parse_error (msg, &error, NULL);
  fail_unless (strstr (error->message, "Invalid calibration recipe") != NULL, "%s",
      error->message);
  g_clear_error (&error);
  gst_message_unref (msg);

  gst_harness_teardown (h);
  gst_element_set_bus (calib, NULL);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (bad_recipe);
  g_free (dir_a);
  g_free (dir_b);
  g_free (dir_c);
}

GST_END_TEST;

/* ---- errors -------------------------------------------------------------------------------- */

static void
expect_start_error (GstElement * calib, GQuark domain, gint code, const gchar * part,
    const gchar * part2)
{
  GError *error = test_start_error (calib, NULL);

  fail_unless (error != NULL, "started, expected an error containing \"%s\"", part);
  fail_unless (error->domain == domain && error->code == code, "%s %d: %s",
      g_quark_to_string (error->domain), error->code, error->message);
  fail_unless (strstr (error->message, part) != NULL, "\"%s\" not in \"%s\"", part,
      error->message);
  fail_unless (part2 == NULL || strstr (error->message, part2) != NULL,
      "\"%s\" not in \"%s\"", part2, error->message);
  g_error_free (error);
}

GST_START_TEST (test_error_eos_without_frames)
{
  gchar *dir = out_dir ("empty");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, NULL);
  GstHarness *h = calib_harness (calib, bus, GST_VIDEO_FORMAT_RGB, 64, 64);
  GList *msgs;
  GError *error;

  /* EOS is not let through */
  fail_if (gst_harness_push_event (h, gst_event_new_eos ()));
  msgs = drain_bus (bus);
  error = bus_error (msgs);
  fail_unless (error != NULL);
  fail_unless (g_str_has_prefix (error->message,
          "no calibration frames arrived before end of stream: "), "%s", error->message);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 0);
  for (GList * l = msgs; l; l = l->next)
    fail_if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_EOS);
  g_error_free (error);
  free_messages (msgs);
  gst_harness_teardown (h);
  fail_unless_equals_int (count_outputs (dir), 0);
  /* the output directory is made only to write the model: not even an empty one is left */
  fail_if (g_file_test (dir, G_FILE_TEST_EXISTS), "%s was created", dir);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_error_start)
{
  gchar *blocker = g_build_filename (tmp_dir, "a-file", NULL);
  gchar *under_file = g_build_filename (blocker, "models", NULL);
  gchar *dir = out_dir ("errors");
  gchar *bad_recipe = g_build_filename (tmp_dir, "bad.yaml", NULL);
  GstElement *calib;

  /* a file where a directory should be: cannot be created, whoever runs the test (root
   * writes to read-only directories, so permissions would not do) */
  fail_unless (g_file_set_contents (blocker, "x", -1, NULL));
  calib = make_calib (under_file, NULL);
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE,
      "cannot create the output directory", under_file);
  gst_object_unref (calib);

  /* the parser's message: file, line, column and key */
  fail_unless (g_file_set_contents (bad_recipe, "quant:\n  wgts:\n    dtype: sint5\n", -1,
          NULL));
  calib = make_calib (dir, "config", bad_recipe, NULL);
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "Invalid calibration recipe", "bad.yaml:3:12: quant.wgts.dtype");
  gst_object_unref (calib);
  g_unlink (bad_recipe);

  calib = make_calib (dir, "config", "/nonexistent/recipe.yaml", NULL);
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "Could not read the recipe /nonexistent/recipe.yaml", NULL);
  gst_object_unref (calib);

  calib = make_calib (dir, "model", "/nonexistent/sam2-model", NULL);
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "Could not load the SAM2 model \"/nonexistent/sam2-model\"", NULL);
  gst_object_unref (calib);

  /* without a GPU (or CUDA in the build) device=cuda fails at start with the backend's reason */
  if (!sam2_backend_available (SAM2_BACKEND_CUDA, NULL)) {
    calib = make_calib (dir, NULL);
    gst_util_set_object_arg (G_OBJECT (calib), "device", "cuda");
    expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "Cannot calibrate", "CUDA");
    gst_object_unref (calib);
  }

  /* a 16-bit precision the device cannot give, before the model loads: fp16 on the CPU, and
   * bf16 on a CPU without AVX-512 BF16 (SAM2_CPU_BF16=0 makes any CPU answer so) */
  calib = make_calib (dir, NULL);
  gst_util_set_object_arg (G_OBJECT (calib), "precision", "fp16");
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "precision=fp16: precision fp16 needs the CUDA backend", "Use precision=fp32");
  gst_util_set_object_arg (G_OBJECT (calib), "precision", "bf16");
  g_setenv ("SAM2_CPU_BF16", "0", TRUE);
  expect_start_error (calib, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "precision=bf16: precision bf16 is not available on the CPU", "SAM2_CPU_BF16=0");
  g_unsetenv ("SAM2_CPU_BF16");
  gst_object_unref (calib);

  /* nothing written anywhere; the output directory itself may exist (checked writable) */
  fail_unless_equals_int (count_outputs (dir), 0);
  fail_unless_equals_int (count_outputs (tmp_dir), 0);
  g_free (blocker);
  g_free (under_file);
  g_free (dir);
  g_free (bad_recipe);
}

GST_END_TEST;

/* Whether `msgs` hold a progress message of `type`. */
static gboolean
has_progress (GList * msgs, GstProgressType type)
{
  for (GList * l = msgs; l; l = l->next)
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_PROGRESS) {
      GstProgressType t;
      gst_message_parse_progress (l->data, &t, NULL, NULL);
      if (t == type)
        return TRUE;
    }
  return FALSE;
}

/* The bus's messages up to the worker's CANCELED progress message, which a stopped element's
 * worker may post after the stop returned (from its own thread): waits up to a minute for it,
 * and fails without it. */
static GList *
messages_until_cancelled (GstBus * bus)
{
  GList *msgs = NULL;
  gboolean cancelled = FALSE;

  for (gint i = 0; i < 600 && !cancelled; i++) {
    GList *more = drain_bus (bus);
    cancelled = has_progress (more, GST_PROGRESS_TYPE_CANCELED);
    msgs = g_list_concat (msgs, more);
    if (!cancelled)
      g_usleep (100 * 1000);
  }
  fail_unless (cancelled, "no CANCELED progress message");
  return msgs;
}

/* Stopping while the worker quantizes: waits for it, discards the result, posts CANCELED. */
GST_START_TEST (test_stop_while_quantizing)
{
  gchar *dir = out_dir ("stopped");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 1, NULL);
  GstHarness *h;
  GList *msgs;

  h = demo_harness (calib, bus);
  /* the first frame completes the set: the worker starts as this push returns */
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  fail_unless_equals_int (gst_element_set_state (calib, GST_STATE_READY),
      GST_STATE_CHANGE_SUCCESS);
  /* the stop waited for the worker: its CANCELED is on the bus already */
  msgs = drain_bus (bus);
  fail_unless (has_progress (msgs, GST_PROGRESS_TYPE_CANCELED), "no CANCELED progress message");
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 0);
  fail_unless (bus_error (msgs) == NULL);
  free_messages (msgs);
  fail_unless_equals_int (count_outputs (dir), 0);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

/* Stops from the worker's thread count here, and each stop's result. */
typedef struct
{
  gint stops;                   /* atomic */
  gint failed;                  /* atomic: a stop did not return SUCCESS */
} SelfStop;

static void
self_stop (GstElement * calib, SelfStop * st)
{
  if (gst_element_set_state (calib, GST_STATE_NULL) != GST_STATE_CHANGE_SUCCESS)
    g_atomic_int_inc (&st->failed);
  g_atomic_int_inc (&st->stops);
}

/* The count of self_stop calls once the one expected has returned: the element may be in
 * NULL before set_state returns in the worker's thread (ASan's timing showed it), so a
 * check right after get_state would race with the count. */
static gint
stops_after_wait (SelfStop * st)
{
  for (gint i = 0; i < 600 && g_atomic_int_get (&st->stops) == 0; i++)
    g_usleep (100 * 1000);
  return g_atomic_int_get (&st->stops);
}

/* Stops the element from the worker's thread: the "quantized" handler. */
static void
stop_on_quantized (GstElement * calib, const gchar * path, SelfStop * st)
{
  self_stop (calib, st);
}

/* The same from a sync bus handler on sam2calib-done. */
static GstBusSyncReply
stop_on_done (GstBus * bus, GstMessage * m, gpointer data)
{
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
      && gst_structure_has_name (gst_message_get_structure (m), "sam2calib-done"))
    self_stop (GST_ELEMENT (GST_MESSAGE_SRC (m)), data);
  return GST_BUS_PASS;
}

/* An application may shut the pipeline down from the "quantized" handler or from a sync bus
 * handler on sam2calib-done, both in the worker's thread: the stop must not wait for that
 * thread (it once joined itself: GLib aborts on that), and the file, complete before the
 * stop, stays. The element starts again afterwards. */
GST_START_TEST (test_stop_from_worker)
{
  for (guint variant = 0; variant < 2; variant++) {
    gchar *name = g_strdup_printf ("self-stop-%u", variant);
    gchar *dir = out_dir (name);
    GstBus *bus = gst_bus_new ();
    GstElement *calib = make_calib (dir, "num-frames", 1, NULL);
    GstHarness *h;
    GstState state;
    SelfStop st = { 0 };

    if (variant == 0)
      g_signal_connect (calib, "quantized", G_CALLBACK (stop_on_quantized), &st);
    else
      gst_bus_set_sync_handler (bus, stop_on_done, &st, NULL);
    h = demo_harness (calib, bus);
    fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
    /* waits for the worker; the stop wakes it (EOS is then not let through), and the stop
     * may still be on its way down in the worker's thread */
    gst_harness_push_event (h, gst_event_new_eos ());
    fail_unless_equals_int (gst_element_get_state (calib, &state, NULL, 60 * GST_SECOND),
        GST_STATE_CHANGE_SUCCESS);
    fail_unless_equals_int (state, GST_STATE_NULL);
    fail_unless_equals_int (stops_after_wait (&st), 1);
    fail_unless_equals_int (g_atomic_int_get (&st.failed), 0);
    fail_unless_equals_int (count_outputs (dir), 1);

    /* and it runs again */
    if (variant == 0)
      g_signal_handlers_disconnect_by_func (calib, stop_on_quantized, &st);
    else
      gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
    fail_unless (gst_element_set_state (calib, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("again")));
    {
      gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,"
          "framerate=30/1", demo_w, demo_h);
      gst_harness_set_src_caps_str (h, caps);
      g_free (caps);
    }
    fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
    fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
    fail_unless_equals_int (count_outputs (dir), 1);

    gst_harness_teardown (h);
    gst_object_unref (calib);
    gst_object_unref (bus);
    g_free (dir);
    g_free (name);
  }
}

GST_END_TEST;

/* Stops the element from a sync bus handler when the worker reports its second layer. */
static GstBusSyncReply
stop_at_second_layer (GstBus * bus, GstMessage * m, gpointer data)
{
  const GstStructure *s;
  gint done = 0;

  if (GST_MESSAGE_TYPE (m) != GST_MESSAGE_ELEMENT)
    return GST_BUS_PASS;
  s = gst_message_get_structure (m);
  if (gst_structure_has_name (s, "sam2calib-layer")
      && gst_structure_get_int (s, "done", &done) && done == 2)
    self_stop (GST_ELEMENT (GST_MESSAGE_SRC (m)), data);
  return GST_BUS_PASS;
}

/* A stop cancels the quantization itself, not only its result: stopped from the worker's
 * thread at its second layer (where the stop cannot wait for the worker), the quantizer
 * reports no third layer, the run ends CANCELED, and nothing is written. (Before the core
 * quantizer could be cancelled, it went on through every layer first.) */
GST_START_TEST (test_stop_cancels_quantizer)
{
  gchar *dir = out_dir ("stop-cancels");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 1, NULL);
  GstHarness *h;
  GList *msgs;
  SelfStop st = { 0 };
  gint layers = 0, total = 0;

  gst_bus_set_sync_handler (bus, stop_at_second_layer, &st, NULL);
  h = demo_harness (calib, bus);
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  fail_unless_equals_int (stops_after_wait (&st), 1);
  fail_unless_equals_int (g_atomic_int_get (&st.failed), 0);
  /* the worker goes on in its own thread after the stop: wait for its last word */
  msgs = messages_until_cancelled (bus);
  for (GList * l = msgs; l; l = l->next)
    if (GST_MESSAGE_TYPE (l->data) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (gst_message_get_structure (l->data), "sam2calib-layer")) {
      layers++;
      gst_structure_get_int (gst_message_get_structure (l->data), "total", &total);
    }
  fail_unless (total > 2, "the model has %d layers to quantize", total);
  fail_unless_equals_int (layers, 2);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 0);
  free_messages (msgs);
  fail_unless_equals_int (count_outputs (dir), 0);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

/* Stops the element when the worker says it writes the file: the stop lands after the
 * worker's check that follows the quantizer, while the file is being written. */
static GstBusSyncReply
stop_on_writing (GstBus * bus, GstMessage * m, gpointer data)
{
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
    GstProgressType type;
    gchar *text = NULL;
    gst_message_parse_progress (m, &type, NULL, &text);
    if (type == GST_PROGRESS_TYPE_CONTINUE && g_str_has_prefix (text, "writing"))
      self_stop (GST_ELEMENT (GST_MESSAGE_SRC (m)), data);
    g_free (text);
  }
  return GST_BUS_PASS;
}

static void
count_quantized (GstElement * calib, const gchar * path, gint * n)
{
  g_atomic_int_inc (n);
}

/* A stop while the model is written: nothing at the output path (an older file there stays
 * as it was), no temporary left, CANCELED and no sam2calib-done or quantized. */
GST_START_TEST (test_stop_while_writing)
{
  gchar *path = g_build_filename (tmp_dir, "w", "out.safetensors", NULL);
  gchar *dir = g_path_get_dirname (path);
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (path, "num-frames", 1, NULL);
  GstHarness *h;
  GList *msgs;
  SelfStop st = { 0 };
  GstState state;
  gint quantized = 0;
  gchar *contents = NULL;

  fail_unless (g_mkdir_with_parents (dir, 0755) == 0);
  fail_unless (g_file_set_contents (path, "older", -1, NULL));
  g_signal_connect (calib, "quantized", G_CALLBACK (count_quantized), &quantized);
  gst_bus_set_sync_handler (bus, stop_on_writing, &st, NULL);
  h = demo_harness (calib, bus);
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  gst_harness_push_event (h, gst_event_new_eos ());
  fail_unless_equals_int (gst_element_get_state (calib, &state, NULL, 60 * GST_SECOND),
      GST_STATE_CHANGE_SUCCESS);
  fail_unless_equals_int (state, GST_STATE_NULL);
  fail_unless_equals_int (stops_after_wait (&st), 1);
  fail_unless_equals_int (g_atomic_int_get (&st.failed), 0);
  /* the element is stopped, but its worker may still be finishing: wait for its last word */
  msgs = messages_until_cancelled (bus);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 0);
  fail_if (has_progress (msgs, GST_PROGRESS_TYPE_COMPLETE),
      "COMPLETE after a stop while writing");
  free_messages (msgs);
  fail_unless_equals_int (g_atomic_int_get (&quantized), 0);
  fail_unless (g_file_get_contents (path, &contents, NULL, NULL));
  fail_unless_equals_string (contents, "older");
  fail_unless_equals_int (count_outputs (dir), 1);

  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (contents);
  g_free (dir);
  g_free (path);
}

GST_END_TEST;

/* A flushing seek while the worker quantizes loses nothing: the EOS after it waits for the same
 * quantization, and the file is written once. */
GST_START_TEST (test_flush_while_quantizing)
{
  gchar *dir = out_dir ("flushed");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 1, NULL);
  GstHarness *h;
  GList *msgs;

  h = demo_harness (calib, bus);
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  {
    /* flush-stop(reset) clears the segment: the harness sends caps and a new segment */
    gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,framerate=30/1",
        demo_w, demo_h);
    gst_harness_set_src_caps_str (h, caps);
    g_free (caps);
  }
  /* frames after the flush are dropped: the set is complete */
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  fail_unless_equals_int (count_outputs (dir), 1);
  msgs = drain_bus (bus);
  fail_unless (bus_error (msgs) == NULL);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 1);
  fail_unless_equals_int (count_named (msgs, "sam2calib-progress"), 1);
  free_messages (msgs);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

/* The worker held at its first layer message until the test lets it go. */
typedef struct
{
  gint held;                    /* atomic: the worker is waiting */
  gint release;                 /* atomic: let it go */
} HeldWorker;

static GstBusSyncReply
hold_worker (GstBus * bus, GstMessage * m, gpointer data)
{
  HeldWorker *hw = data;

  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
      && gst_structure_has_name (gst_message_get_structure (m), "sam2calib-layer")
      && !g_atomic_int_get (&hw->held)) {
    g_atomic_int_set (&hw->held, 1);
    while (!g_atomic_int_get (&hw->release))
      g_usleep (1000);
  }
  return GST_BUS_PASS;
}

typedef struct
{
  GstHarness *h;
  gint done;                    /* atomic: the EOS push returned */
} EosPush;

static gpointer
push_eos (gpointer data)
{
  EosPush *e = data;
  gboolean handled = gst_harness_push_event (e->h, gst_event_new_eos ());

  g_atomic_int_set (&e->done, 1);
  return GINT_TO_POINTER (handled);
}

/* PLAYING to PAUSED while EOS waits for the quantization: the change completes at once and
 * the EOS, already received and synchronised, completes when the file is written, in PAUSED.
 * The wait once sat before GstBaseSink saw the EOS: the change could go ASYNC until the
 * quantization ended (minutes for a large model), and the EOS then waited in PAUSED for
 * PLAYING to preroll again. */
GST_START_TEST (test_pause_while_eos_waits)
{
  gchar *dir = out_dir ("paused");
  GstBus *bus = gst_bus_new ();
  GstElement *calib = make_calib (dir, "num-frames", 2, NULL);
  HeldWorker hw = { 0, 0 };
  EosPush push = { NULL, 0 };
  GstHarness *h;
  GThread *eos;
  GList *msgs;
  GstStateChangeReturn paused;
  gboolean eos_handled, done_in_paused;

  gst_bus_set_sync_handler (bus, hold_worker, &hw, NULL);
  h = demo_harness (calib, bus);
  fail_unless_equals_int (push_demo (h, 0), GST_FLOW_OK);
  push.h = h;
  eos = g_thread_new ("eos", push_eos, &push);    /* EOS after 1 of 2 frames starts the worker */
  for (gint i = 0; i < 6000 && !g_atomic_int_get (&hw.held); i++)
    g_usleep (1000);
  paused = gst_element_set_state (calib, GST_STATE_PAUSED);
  g_atomic_int_set (&hw.release, 1);
  for (gint i = 0; i < 60000 && !g_atomic_int_get (&push.done); i++)
    g_usleep (1000);
  done_in_paused = g_atomic_int_get (&push.done);
  /* back to PLAYING before any check: an EOS waiting for it would leave a failed check
   * hanging */
  gst_element_set_state (calib, GST_STATE_PLAYING);
  eos_handled = GPOINTER_TO_INT (g_thread_join (eos));
  fail_unless (g_atomic_int_get (&hw.held), "the worker never reported a layer");
  fail_unless_equals_int (paused, GST_STATE_CHANGE_SUCCESS);
  fail_unless (done_in_paused, "the EOS waited in PAUSED after the file was written");
  fail_unless (eos_handled);
  fail_unless_equals_int (count_outputs (dir), 1);
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  msgs = drain_bus (bus);
  fail_unless (bus_error (msgs) == NULL);
  fail_unless_equals_int (count_named (msgs, "sam2calib-done"), 1);
  free_messages (msgs);
  gst_harness_teardown (h);
  gst_object_unref (calib);
  gst_object_unref (bus);
  g_free (dir);
}

GST_END_TEST;

/* ---- calibrate, then segment ---------------------------------------------------------------- */

typedef struct
{
  GstElement *pipeline;
  gint switched;                /* atomic: sam2seg posted sam2seg-model-switched */
  gint after;                   /* buffers out of sam2seg after the switch */
  gint before;
  gint bad_meta;                /* buffers without a one-object meta */
  gchar *switched_path;
} SwitchState;

static GstBusSyncReply
switch_sync_handler (GstBus * bus, GstMessage * m, gpointer data)
{
  SwitchState *st = data;
  const GstStructure *s = gst_message_get_structure (m);

  /* runs in the posting thread: sam2seg posts before it pushes the frame it switched on */
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
      && gst_structure_has_name (s, "sam2seg-model-switched")) {
    st->switched_path = g_strdup (gst_structure_get_string (s, "path"));
    g_atomic_int_inc (&st->switched);
  }
  return GST_BUS_PASS;
}

static GstPadProbeReturn
count_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  SwitchState *st = data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buf);

  if (meta == NULL || gst_sam2_mask_meta_get_n_objects (meta) != 1)
    g_atomic_int_inc (&st->bad_meta);
  if (g_atomic_int_get (&st->switched)) {
    /* enough frames with the quantized model: end the stream */
    if (g_atomic_int_add (&st->after, 1) + 1 == 5)
      gst_element_post_message (st->pipeline, gst_message_new_application (NULL,
              gst_structure_new_empty ("enough")));
  } else {
    g_atomic_int_inc (&st->before);
  }
  return GST_PAD_PROBE_OK;
}

GST_START_TEST (test_calibrate_then_segment)
{
  gchar *dir = out_dir ("switch");
  gchar *expect = g_build_filename (dir, "sam2-shapes-" TEST_RECIPE_NAME ".safetensors", NULL);
  gchar *desc;
  GstElement *seg;
  GstPad *pad;
  GstBus *bus;
  SwitchState st = { 0 };
  gboolean eos = FALSE;

  /* a live source, so that frames keep coming while the worker quantizes */
  desc = g_strdup_printf ("videotestsrc is-live=true pattern=ball num-buffers=600 ! "
      "video/x-raw,format=RGB,width=256,height=256,framerate=15/1 ! tee name=t "
      "t. ! queue ! sam2calib name=cal model=\"%s\" config=\"%s\" num-frames=2 output=\"%s\" "
      "t. ! queue ! sam2seg name=seg model=\"%s\" calibrator-name=cal points=\"128,128\" ! "
      "fakesink sync=false", test_model_path (), recipe_path, dir, test_model_path ());
  st.pipeline = gst_parse_launch (desc, NULL);
  fail_unless (st.pipeline != NULL);
  seg = gst_bin_get_by_name (GST_BIN (st.pipeline), "seg");
  pad = gst_element_get_static_pad (seg, "src");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_probe, &st, NULL);
  bus = gst_element_get_bus (st.pipeline);
  gst_bus_set_sync_handler (bus, switch_sync_handler, &st, NULL);

  fail_unless (gst_element_set_state (st.pipeline, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  while (!eos) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 100 * GST_SECOND,
        GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_APPLICATION);
    fail_unless (m != NULL, "timed out: %d frames before the switch, %d after",
        st.before, st.after);
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *error = NULL;
      gst_message_parse_error (m, &error, NULL);
      fail ("error from %s: %s", GST_OBJECT_NAME (GST_MESSAGE_SRC (m)), error->message);
    }
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_APPLICATION)
      gst_element_send_event (st.pipeline, gst_event_new_eos ());
    eos = GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS;
    gst_message_unref (m);
  }
  gst_element_set_state (st.pipeline, GST_STATE_NULL);

  fail_unless_equals_int (g_atomic_int_get (&st.switched), 1);
  fail_unless_equals_string (st.switched_path, expect);
  /* the float model segmented the first frames, the quantized one the rest, and every
   * frame carried its meta across the switch */
  fail_unless (st.before >= 1, "no frame before the switch");
  fail_unless (st.after >= 5, "%d frames after the switch", st.after);
  fail_unless_equals_int (g_atomic_int_get (&st.bad_meta), 0);
  fail_unless (g_file_test (expect, G_FILE_TEST_IS_REGULAR));

  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (seg);
  gst_object_unref (st.pipeline);
  g_free (st.switched_path);
  g_free (desc);
  g_free (expect);
  g_free (dir);
}

GST_END_TEST;

/* sam2seg refuses a calibrator it cannot follow, at start. */
GST_START_TEST (test_seg_calibrator_errors)
{
  GstElement *seg = gst_element_factory_make ("sam2seg", NULL);
  GstElement *pipeline, *other;
  GError *error;

  g_object_set (seg, "model", test_model_path (), "calibrator-name", "nowhere", NULL);
  error = test_start_error (seg, NULL);
  fail_unless (error != NULL && strstr (error->message,
          "calibrator-name=nowhere: there is no element of that name") != NULL, "%s",
      error ? error->message : "started");
  g_clear_error (&error);
  gst_object_unref (seg);

  /* an element without the signal, given as an object */
  pipeline = gst_pipeline_new (NULL);
  seg = gst_element_factory_make ("sam2seg", NULL);
  other = gst_element_factory_make ("fakesink", "notcalib");
  gst_bin_add_many (GST_BIN (pipeline), seg, other, NULL);
  g_object_set (seg, "model", test_model_path (), "calibrator", other, NULL);
  error = test_start_error (seg, NULL);
  fail_unless (error != NULL && strstr (error->message, "no \"quantized\" signal") != NULL,
      "%s", error ? error->message : "started");
  g_clear_error (&error);

  /* the name resolves in the pipeline the same way */
  g_object_set (seg, "calibrator", NULL, "calibrator-name", "notcalib", NULL);
  error = test_start_error (seg, NULL);
  fail_unless (error != NULL && strstr (error->message, "no \"quantized\" signal") != NULL,
      "%s", error ? error->message : "started");
  g_clear_error (&error);

  /* a calibrator switches the model to W4A8: an explicit float precision contradicts it */
  other = gst_element_factory_make ("sam2calib", "cal");
  gst_bin_add (GST_BIN (pipeline), other);
  g_object_set (seg, "calibrator-name", "cal", NULL);
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "fp32");
  error = test_start_error (seg, NULL);
  fail_unless (error != NULL && strstr (error->message, "precision must be auto") != NULL,
      "%s", error ? error->message : "started");
  g_clear_error (&error);
  gst_object_unref (pipeline);
}

GST_END_TEST;

static Suite *
sam2calib_suite (void)
{
  Suite *s = suite_create ("sam2calib");
  TCase *tc = tcase_create ("general");

  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_set_timeout (tc, 150);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_formats);
  tcase_add_test (tc, test_frame_size_limit_in_caps);
  tcase_add_test (tc, test_calibrate_messages_model);
  tcase_add_test (tc, test_output_file_eos_early);
  tcase_add_test (tc, test_frame_stride);
  tcase_add_test (tc, test_batch_size);
  tcase_add_test (tc, test_cache);
  tcase_add_test (tc, test_cache_incomplete);
  tcase_add_test (tc, test_device_kept);
  tcase_add_test (tc, test_precision_bf16);
  tcase_add_test (tc, test_ready_mutable);
  tcase_add_test (tc, test_error_eos_without_frames);
  tcase_add_test (tc, test_error_start);
  tcase_add_test (tc, test_stop_while_quantizing);
  tcase_add_test (tc, test_flush_while_quantizing);
  tcase_add_test (tc, test_pause_while_eos_waits);
  tcase_add_test (tc, test_stop_from_worker);
  tcase_add_test (tc, test_stop_cancels_quantizer);
  tcase_add_test (tc, test_stop_while_writing);
  tcase_add_test (tc, test_calibrate_then_segment);
  tcase_add_test (tc, test_seg_calibrator_errors);
  return s;
}

GST_CHECK_MAIN (sam2calib);
