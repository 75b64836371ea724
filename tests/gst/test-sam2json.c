/* test-sam2json.c: sam2json writes one JSON object per frame whose RLE masks decode to the
 * meta's masks, passes buffers untouched, and fails clearly when it cannot open or write. */
#include "test-util.h"

#include <glib/gstdio.h>
#include <math.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include "rle.h"

#define W 64
#define H 48

static GstBuffer *
frame_with_objects (guint n, GstClockTime pts)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, W * H * 3, NULL);
  GstSam2MaskMeta *meta;

  gst_buffer_memset (buf, 0, 0x40, W * H * 3);
  GST_BUFFER_PTS (buf) = pts;
  if (n == G_MAXUINT)           /* no meta at all */
    return buf;
  meta = gst_buffer_add_sam2_mask_meta (buf, W, H);
  for (guint i = 0; i < n; i++) {
    /* a (5 + i)-pixel square at (3 + 10 i, 4 + i), with a diagonal cut */
    const gint s = 5 + i;
    guint8 m[16 * 16];
    GstSam2Object o = { 0 };
    for (gint y = 0; y < s; y++)
      for (gint x = 0; x < s; x++)
        m[y * s + x] = x >= y / 2;
    o.id = 10 + i;
    o.prompt_id = (gint) i;
    o.box = (GstSam2Box) { 3 + 10 * i, 4 + i, 3 + 10 * i + s - 1, 4 + i + s - 1 };
    o.location = (GstVideoRectangle) { o.box.x0, o.box.y0, s, s };
    o.iou = 0.5f + 0.1f * i;
    o.object_score = -1.25f + i;
    o.mask = gst_sam2_mask_buffer_new (m, s, s, s);
    gst_sam2_mask_meta_add_object (meta, &o);
    gst_buffer_unref (o.mask);
  }
  /* with three: one whose location leaves the frame at the left and bottom, its 4x3 mask
   * stretched over 10x7 pixels (as after a scale), read through its location only */
  if (n == 3) {
    const guint8 m[12] = { 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0 };
    GstSam2Object o = { 0 };
    o.id = 50;
    o.location = (GstVideoRectangle) { -3, H - 4, 10, 7 };
    o.box = (GstSam2Box) { 0, H - 4, 6, H - 1 };
    o.mask = gst_sam2_mask_buffer_new (m, 4, 4, 3);
    gst_sam2_mask_meta_add_object (meta, &o);
    gst_buffer_unref (o.mask);
  }
  /* one empty object at the end */
  if (n > 0) {
    GstSam2Object o = { 0 };
    o.id = 99;
    o.box = (GstSam2Box) { 0, 0, -1, -1 };
    gst_sam2_mask_meta_add_object (meta, &o);
  }
  return buf;
}

static GstHarness *
json_harness (const gchar * location, GstElement ** element)
{
  GstElement *json = gst_element_factory_make ("sam2json", NULL);
  GstHarness *h;

  g_object_set (json, "location", location, NULL);
  h = gst_harness_new_with_element (json, "sink", "src");
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=64,height=48,"
      "framerate=30/1");
  *element = json;
  return h;
}

static void
check_object (JsonObject * jo, const GstSam2Object * o)
{
  JsonArray *box = json_object_get_array_member (jo, "box");
  JsonObject *mask = json_object_get_object_member (jo, "mask");
  JsonArray *size = json_object_get_array_member (mask, "size");
  const gchar *counts = json_object_get_string_member (mask, "counts");
  GError *error = NULL;
  Sam2Rle *rle;
  guint8 decoded[W * H], expected[W * H];

  fail_unless_equals_int (json_object_get_int_member (jo, "id"), o->id);
  fail_unless_equals_int (json_object_get_int_member (jo, "prompt_id"), o->prompt_id);
  fail_unless_equals_int (json_array_get_int_element (box, 0), o->box.x0);
  fail_unless_equals_int (json_array_get_int_element (box, 1), o->box.y0);
  fail_unless_equals_int (json_array_get_int_element (box, 2), o->box.x1);
  fail_unless_equals_int (json_array_get_int_element (box, 3), o->box.y1);
  fail_unless (fabs (json_object_get_double_member (jo, "iou") - o->iou) < 1e-5);
  fail_unless (fabs (json_object_get_double_member (jo, "object_score") - o->object_score) <
      1e-5);
  fail_unless_equals_int (json_array_get_int_element (size, 0), H);
  fail_unless_equals_int (json_array_get_int_element (size, 1), W);
  rle = sam2_rle_from_string (counts, H, W, &error);
  fail_unless (rle != NULL, "%s", error ? error->message : "");
  sam2_rle_decode (rle, decoded, W);
  sam2_rle_free (rle);
  fail_unless (gst_sam2_object_render_mask (o, expected, W, W, H));
  fail_unless (memcmp (decoded, expected, sizeof decoded) == 0, "object %u: RLE differs",
      o->id);
}

GST_START_TEST (test_lines)
{
  gchar *dir = g_dir_make_tmp ("sam2json-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "out.jsonl", NULL);
  GstElement *json;
  GstHarness *h = json_harness (path, &json);
  GstBuffer *in[4];
  gchar *contents = NULL, **lines;
  GError *error = NULL;

  in[0] = frame_with_objects (2, 0);
  in[1] = frame_with_objects (0, GST_SECOND / 2);
  /* past three hours: six significant digits gave 10800 for 10800.033 */
  in[2] = frame_with_objects (G_MAXUINT, 10800 * GST_SECOND + 33 * GST_MSECOND);
  in[3] = frame_with_objects (3, GST_CLOCK_TIME_NONE);
  for (guint i = 0; i < 4; i++) {
    GstBuffer *out;
    gst_buffer_ref (in[i]);
    out = gst_harness_push_and_pull (h, in[i]);
    /* passthrough: the very same buffer */
    fail_unless (out == in[i]);
    gst_buffer_unref (out);
  }
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));

  /* each line is flushed as it is written */
  fail_unless (g_file_get_contents (path, &contents, NULL, &error));
  lines = g_strsplit (contents, "\n", -1);
  fail_unless_equals_int (g_strv_length (lines), 5);
  fail_unless_equals_string (lines[4], "");
  for (guint i = 0; i < 4; i++) {
    JsonParser *parser = json_parser_new ();
    JsonObject *root;
    JsonArray *objects;
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (in[i]);

    fail_unless (json_parser_load_from_data (parser, lines[i], -1, &error), "line %u: %s", i,
        error ? error->message : "");
    root = json_node_get_object (json_parser_get_root (parser));
    fail_unless_equals_int (json_object_get_int_member (root, "frame"), i);
    if (GST_BUFFER_PTS_IS_VALID (in[i])) {
      fail_unless_equals_int64 (json_object_get_int_member (root, "pts"),
          GST_BUFFER_PTS (in[i]));
      fail_unless (fabs (json_object_get_double_member (root, "time") -
              (gdouble) GST_BUFFER_PTS (in[i]) / GST_SECOND) < 1e-9);
    } else {
      fail_unless (json_object_get_null_member (root, "pts"));
      fail_unless (json_object_get_null_member (root, "time"));
    }
    fail_unless_equals_int (json_object_get_int_member (root, "width"), meta ? W : 0);
    objects = json_object_get_array_member (root, "objects");
    fail_unless_equals_int (json_array_get_length (objects),
        meta ? gst_sam2_mask_meta_get_n_objects (meta) : 0);
    for (guint j = 0; j < json_array_get_length (objects); j++)
      check_object (json_array_get_object_element (objects, j),
          gst_sam2_mask_meta_get_object (meta, j));
    g_object_unref (parser);
  }
  g_strfreev (lines);
  g_free (contents);
  for (guint i = 0; i < 4; i++)
    gst_buffer_unref (in[i]);
  gst_harness_teardown (h);
  gst_object_unref (json);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

GST_END_TEST;

/* A frame of more than 2^32 - 1 pixels (a meta an application may make; RLE counts are 32-bit):
 * its masks are null, with one warning, and nothing is rendered at frame size (it crashed on
 * the encoder's refusal after clearing a 4 GB plane). */
GST_START_TEST (test_frame_too_large_for_rle)
{
  gchar *dir = g_dir_make_tmp ("sam2json-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "out.jsonl", NULL);
  GstElement *json;
  GstHarness *h = json_harness (path, &json);
  GstBus *bus = gst_bus_new ();
  GstBuffer *buf = gst_buffer_new_allocate (NULL, W * H * 3, NULL);
  GstSam2MaskMeta *meta = gst_buffer_add_sam2_mask_meta (buf, 65536, 65537);
  const guint8 m[64] = { 1 };
  GstSam2Object o = { 0 };
  gchar *contents = NULL;
  GstMessage *msg;

  gst_element_set_bus (json, bus);
  o.location = (GstVideoRectangle) { 100, 100, 8, 8 };
  o.box = (GstSam2Box) { 100, 100, 107, 107 };
  o.mask = gst_sam2_mask_buffer_new (m, 8, 8, 8);
  gst_sam2_mask_meta_add_object (meta, &o);
  gst_buffer_unref (o.mask);
  gst_buffer_unref (gst_harness_push_and_pull (h, buf));
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  fail_unless (g_file_get_contents (path, &contents, NULL, NULL));
  fail_unless (strstr (contents, "\"mask\": null") != NULL, "%s", contents);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning");
  gst_message_unref (msg);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR) == NULL);

  gst_element_set_bus (json, NULL);
  gst_object_unref (bus);
  g_free (contents);
  gst_harness_teardown (h);
  gst_object_unref (json);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

GST_END_TEST;

/* The compressed string contains characters JSON must escape ('\\'): it still parses back. */
GST_START_TEST (test_escaping)
{
  guint8 mask[W * H];
  Sam2Rle *rle;
  gchar *counts;
  gboolean found = FALSE;

  /* search a mask whose COCO string has a backslash, so the test means something */
  for (gint n = 1; n < W * H && !found; n += 7) {
    memset (mask, 0, sizeof mask);
    memset (mask, 1, n);
    rle = sam2_rle_encode (mask, W, H, W);
    counts = sam2_rle_to_string (rle);
    found = strchr (counts, '\\') != NULL;
    g_free (counts);
    sam2_rle_free (rle);
    if (found) {
      gchar *dir = g_dir_make_tmp ("sam2json-XXXXXX", NULL);
      gchar *path = g_build_filename (dir, "out.jsonl", NULL);
      GstElement *json;
      GstHarness *h = json_harness (path, &json);
      GstBuffer *buf = gst_buffer_new_allocate (NULL, W * H * 3, NULL);
      GstSam2MaskMeta *meta = gst_buffer_add_sam2_mask_meta (buf, W, H);
      GstSam2Object o = { 0 };
      JsonParser *parser = json_parser_new ();
      GError *error = NULL;

      o.location = (GstVideoRectangle) { 0, 0, W, H };
      o.box = (GstSam2Box) { 0, 0, W - 1, H - 1 };
      o.mask = gst_sam2_mask_buffer_new (mask, W, W, H);
      gst_sam2_mask_meta_add_object (meta, &o);
      gst_buffer_unref (o.mask);
      gst_buffer_ref (buf);
      gst_buffer_unref (gst_harness_push_and_pull (h, buf));
      fail_unless (json_parser_load_from_file (parser, path, &error), "%s",
          error ? error->message : "");
      check_object (json_array_get_object_element (json_object_get_array_member
              (json_node_get_object (json_parser_get_root (parser)), "objects"), 0),
          gst_sam2_mask_meta_get_object (meta, 0));
      g_object_unref (parser);
      gst_buffer_unref (buf);
      gst_harness_teardown (h);
      gst_object_unref (json);
      g_unlink (path);
      g_rmdir (dir);
      g_free (path);
      g_free (dir);
    }
  }
  fail_unless (found, "no mask with a backslash in its COCO string was found");
}

GST_END_TEST;

static void
expect_error (GstBus * bus, gint code, const gchar * needle)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  GError *err = NULL;

  fail_unless (msg != NULL, "no error posted");
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (err->domain == GST_RESOURCE_ERROR && err->code == code, "%s %d: %s",
      g_quark_to_string (err->domain), err->code, err->message);
  fail_unless (strstr (err->message, needle) != NULL, "\"%s\" not in: %s", needle,
      err->message);
  g_error_free (err);
  gst_message_unref (msg);
}

GST_START_TEST (test_open_error)
{
  GstElement *json = gst_element_factory_make ("sam2json", NULL);
  GError *err;

  g_object_set (json, "location", "/nonexistent-dir/masks.jsonl", NULL);
  err = test_start_error (json, NULL);
  fail_unless (err != NULL);
  fail_unless (g_error_matches (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_WRITE));
  fail_unless (strstr (err->message, "/nonexistent-dir/masks.jsonl") != NULL, "%s",
      err->message);
  g_error_free (err);

  g_object_set (json, "location", NULL, NULL);
  err = test_start_error (json, NULL);
  fail_unless (g_error_matches (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND));
  g_error_free (err);
  gst_object_unref (json);
}

GST_END_TEST;

/* /dev/full opens and then fails every write with ENOSPC: a full disk. */
GST_START_TEST (test_disk_full)
{
  GstElement *json;
  GstHarness *h;
  GstBus *bus = gst_bus_new ();

  if (!g_file_test ("/dev/full", G_FILE_TEST_EXISTS)) {
    GST_INFO ("no /dev/full here");
    gst_object_unref (bus);
    return;
  }
  h = json_harness ("/dev/full", &json);
  gst_element_set_bus (json, bus);
  fail_unless_equals_int (gst_harness_push (h, frame_with_objects (1, 0)), GST_FLOW_ERROR);
  expect_error (bus, GST_RESOURCE_ERROR_NO_SPACE_LEFT, "/dev/full");
  gst_element_set_bus (json, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  gst_object_unref (json);
}

GST_END_TEST;

static Suite *
sam2json_suite (void)
{
  Suite *s = suite_create ("sam2json");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_lines);
  tcase_add_test (tc, test_escaping);
  tcase_add_test (tc, test_frame_too_large_for_rle);
  tcase_add_test (tc, test_open_error);
  tcase_add_test (tc, test_disk_full);
  return s;
}

GST_CHECK_MAIN (sam2json);
