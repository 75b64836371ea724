/* test-sam2seg.c: sam2seg in a harness with the demo model: formats and strides, the metadata
 * on every buffer and its agreement with the core API, prompts from properties, signals,
 * events and upstream ROIs, object ids, interval and QoS skipping, flushes and new streams,
 * prompts across caps changes, latency, and every way it refuses to start. */
#include "test-util.h"

#include <string.h>

#include "sam2.h"

/* examples/demo/prompts.txt: a click on the green triangle of shapes-0 and a box around the
 * yellow square. */
#define DEMO_IMAGE "shapes-0.png"
#define DEMO_POINTS "42.5,95.5"
#define DEMO_BOXES "; 173,0,255,80"
static const Sam2Point demo_click = { 42.5f, 95.5f, SAM2_LABEL_POSITIVE };

static guint8 *demo_rgb;
static gint demo_w, demo_h;

static void
load_demo (void)
{
  if (demo_rgb == NULL)
    demo_rgb = test_load_demo_rgb (DEMO_IMAGE, &demo_w, &demo_h);
}

/* The core API's masks for the demo prompts: (2, H, W). */
static guint8 *
core_demo_masks (gboolean multimask, gfloat threshold, gfloat * ious)
{
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (test_model_path (), &error);
  Sam2Session *session;
  Sam2Prompt prompts[2] = { {0} };
  Sam2PredictOptions options = SAM2_PREDICT_OPTIONS_INIT;
  const Sam2Result *r;
  guint8 *masks;
  const gsize plane = (gsize) demo_w * demo_h;

  fail_unless (model != NULL, "%s", error ? error->message : "");
  session = sam2_session_new (model, &error);
  fail_unless (session != NULL);
  fail_unless (sam2_session_set_image (session, demo_rgb, demo_w, demo_h, demo_w * 3,
          SAM2_PIXEL_FORMAT_RGB, &error));
  prompts[0].points = &demo_click;
  prompts[0].n_points = 1;
  prompts[1].has_box = TRUE;
  prompts[1].box[0] = 173;
  prompts[1].box[1] = 0;
  prompts[1].box[2] = 255;
  prompts[1].box[3] = 80;
  options.multimask = multimask;
  options.mask_threshold = threshold;
  r = sam2_session_predict (session, prompts, 2, &options, &error);
  fail_unless (r != NULL, "%s", error ? error->message : "");
  masks = g_malloc (2 * plane);
  for (gint o = 0; o < 2; o++) {
    gint best = 0;
    for (gint m = 1; m < r->n_masks; m++)
      if (r->iou_scores[o * r->n_masks + m] > r->iou_scores[o * r->n_masks + best])
        best = m;
    memcpy (masks + o * plane, r->masks + ((gsize) o * r->n_masks + best) * plane, plane);
    ious[o] = r->iou_scores[o * r->n_masks + best];
  }
  sam2_session_free (session);
  sam2_model_unref (model);
  return masks;
}

/* The bounding box of a 0/1 plane, inclusive, as the meta states it (x1 < x0 when empty). */
static GstSam2Box
plane_box (const guint8 * m, gint W, gint H)
{
  GstSam2Box b = { W, H, -1, -1 };
  for (gint y = 0; y < H; y++)
    for (gint x = 0; x < W; x++)
      if (m[(gsize) y * W + x]) {
        b.x0 = MIN (b.x0, x);
        b.y0 = MIN (b.y0, y);
        b.x1 = MAX (b.x1, x);
        b.y1 = MAX (b.y1, y);
      }
  if (b.x1 < 0)
    b.x0 = b.y0 = 0;
  return b;
}

/* The core API's masks for one click per object on a w x h RGB frame: (n, H, W). */
static guint8 *
core_click_masks (const guint8 * rgb, gint w, gint h, const Sam2Point * clicks, gint n)
{
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (test_model_path (), &error);
  Sam2Session *session = sam2_session_new (model, &error);
  Sam2Prompt *prompts = g_new0 (Sam2Prompt, n);
  const Sam2Result *r;
  guint8 *masks;

  fail_unless (session != NULL, "%s", error ? error->message : "");
  fail_unless (sam2_session_set_image (session, rgb, w, h, w * 3, SAM2_PIXEL_FORMAT_RGB,
          &error));
  for (gint o = 0; o < n; o++) {
    prompts[o].points = &clicks[o];
    prompts[o].n_points = 1;
  }
  r = sam2_session_predict (session, prompts, n, NULL, &error);
  fail_unless (r != NULL, "%s", error ? error->message : "");
  masks = g_malloc ((gsize) n * w * h);
  memcpy (masks, r->masks, (gsize) n * w * h);
  g_free (prompts);
  sam2_session_free (session);
  sam2_model_unref (model);
  return masks;
}

/* The top-left w x h of the demo image, packed. */
static guint8 *
demo_crop (gint w, gint h)
{
  guint8 *rgb = g_malloc ((gsize) w * h * 3);
  for (gint y = 0; y < h; y++)
    memcpy (rgb + (gsize) y * w * 3, demo_rgb + (gsize) y * demo_w * 3, (gsize) w * 3);
  return rgb;
}

/* Checks a buffer's meta against the frame: masks inside, boxes equal to the masks' bounding
 * boxes, one sam2-object ROI per non-empty object with matching params. */
static void
check_meta_consistent (GstBuffer * buf, gint W, gint H)
{
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buf);
  guint n_rois = 0, n_nonempty = 0;
  gpointer state = NULL;
  GstMeta *m;

  fail_unless (meta != NULL, "no GstSam2MaskMeta on the buffer");
  fail_unless_equals_int (meta->width, W);
  fail_unless_equals_int (meta->height, H);
  for (guint i = 0; i < gst_sam2_mask_meta_get_n_objects (meta); i++) {
    const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
    guint8 *plane = test_object_frame_mask (meta, o);
    GstSam2Box b = plane_box (plane, W, H);

    fail_unless (o->box.x0 == b.x0 && o->box.y0 == b.y0 && o->box.x1 == b.x1
        && o->box.y1 == b.y1, "object %u: box %d,%d-%d,%d, mask spans %d,%d-%d,%d", o->id,
        o->box.x0, o->box.y0, o->box.x1, o->box.y1, b.x0, b.y0, b.x1, b.y1);
    if (o->mask != NULL) {
      GstVideoMeta *vm = gst_buffer_get_video_meta (o->mask);
      n_nonempty++;
      fail_unless (vm != NULL);
      fail_unless_equals_int (vm->format, GST_VIDEO_FORMAT_GRAY8);
      fail_unless_equals_int (vm->width, o->location.w);
      fail_unless_equals_int (vm->height, o->location.h);
      fail_unless_equals_int (o->location.x, o->box.x0);
      fail_unless_equals_int (o->location.w, o->box.x1 - o->box.x0 + 1);
    }
    g_free (plane);
  }
  while ((m = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) != NULL) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) m;
    const GstSam2Object *o;
    GstStructure *s;
    guint id;
    gint prompt_id;

    if (roi->roi_type != g_quark_from_string ("sam2-object"))
      continue;
    n_rois++;
    o = gst_sam2_mask_meta_find_object (meta, (guint) roi->id);
    fail_unless (o != NULL, "ROI %d names no object", roi->id);
    fail_unless_equals_int (roi->x, o->location.x);
    fail_unless_equals_int (roi->y, o->location.y);
    fail_unless_equals_int (roi->w, o->location.w);
    fail_unless_equals_int (roi->h, o->location.h);
    s = gst_video_region_of_interest_meta_get_param (roi, "sam2-object");
    fail_unless (s != NULL);
    fail_unless (gst_structure_get_uint (s, "id", &id));
    fail_unless (gst_structure_get_int (s, "prompt-id", &prompt_id));
    fail_unless_equals_int (id, o->id);
    fail_unless_equals_int (prompt_id, o->prompt_id);
    fail_unless (gst_structure_has_field_typed (s, "iou", G_TYPE_DOUBLE));
    fail_unless (gst_structure_has_field_typed (s, "object-score", G_TYPE_DOUBLE));
  }
  fail_unless_equals_int (n_rois, n_nonempty);
}

static GstStructure *
get_stats (GstHarness * h)
{
  GstStructure *s = NULL;
  g_object_get (h->element, "stats", &s, NULL);
  fail_unless (s != NULL);
  return s;
}

static guint64
stat (GstHarness * h, const gchar * field)
{
  GstStructure *s = get_stats (h);
  guint64 v = 0;
  fail_unless (gst_structure_get_uint64 (s, field, &v), "no %s in stats", field);
  gst_structure_free (s);
  return v;
}

static GstBuffer *
push_pull (GstHarness * h, GstBuffer * in)
{
  fail_unless_equals_int (gst_harness_push (h, in), GST_FLOW_OK);
  return gst_harness_pull (h);
}

static GstBuffer *
demo_frame (GstVideoFormat format, gint pad, guint i)
{
  return test_make_frame (demo_rgb, demo_w, demo_h, format, pad, i * (GST_SECOND / 30));
}

/* Every format, with padded rows, gives the core API's masks exactly. */
GST_START_TEST (test_formats_match_core)
{
  static const GstVideoFormat formats[] = { GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_RGBA,
    GST_VIDEO_FORMAT_RGBx, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_BGRA, GST_VIDEO_FORMAT_BGRx
  };
  gfloat ious[2];
  guint8 *ref;
  const gsize plane = (gsize) 256 * 256;

  load_demo ();
  ref = core_demo_masks (FALSE, 0.0f, ious);
  for (guint f = 0; f < G_N_ELEMENTS (formats); f++) {
    GstHarness *h = test_seg_harness_new (formats[f], demo_w, demo_h, "points", DEMO_POINTS,
        "boxes", DEMO_BOXES, NULL);
    GstBuffer *out = push_pull (h, demo_frame (formats[f], 12 + 4 * f, 0));
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);
    GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
    GstVideoInfo info;

    fail_unless (gst_video_info_from_caps (&info, caps));
    fail_unless_equals_int (GST_VIDEO_INFO_FORMAT (&info), formats[f]);
    gst_caps_unref (caps);
    check_meta_consistent (out, demo_w, demo_h);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
    for (guint i = 0; i < 2; i++) {
      const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
      guint8 *m = test_object_frame_mask (meta, o);
      gsize diff = test_count_diff (m, ref + i * plane, plane);
      fail_unless (diff == 0, "%s, object %u: %" G_GSIZE_FORMAT " pixels differ from the core "
          "API", gst_video_format_to_string (formats[f]), i, diff);
      fail_unless (o->mask != NULL, "the demo prompts find their shapes");
      fail_unless_equals_int (o->id, i);
      fail_unless_equals_int (o->prompt_id, i);
      fail_unless_equals_float (o->iou, ious[i]);
      g_free (m);
    }
    gst_buffer_unref (out);
    gst_harness_teardown (h);
  }
  g_free (ref);
}

GST_END_TEST;

/* multimask keeps the candidate with the best predicted IoU, as the core API reports it;
 * mask-threshold moves the mask boundary exactly as the core's threshold does. */
GST_START_TEST (test_multimask_and_threshold)
{
  const gsize plane = (gsize) 256 * 256;

  load_demo ();
  for (gint variant = 0; variant < 2; variant++) {
    gboolean multimask = variant == 0;
    gfloat threshold = variant == 0 ? 0.0f : 2.5f;
    gfloat ious[2];
    guint8 *ref = core_demo_masks (multimask, threshold, ious);
    GstHarness *h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points",
        DEMO_POINTS, "boxes", DEMO_BOXES, "multimask", multimask, "mask-threshold",
        threshold, NULL);
    GstBuffer *out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);

    check_meta_consistent (out, demo_w, demo_h);
    for (guint i = 0; i < 2; i++) {
      const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
      guint8 *m = test_object_frame_mask (meta, o);
      fail_unless_equals_int (test_count_diff (m, ref + i * plane, plane), 0);
      fail_unless_equals_float (o->iou, ious[i]);
      g_free (m);
    }
    gst_buffer_unref (out);
    gst_harness_teardown (h);
    g_free (ref);
  }
}

GST_END_TEST;

/* Without prompts the model does not run and every buffer still carries an empty meta. */
GST_START_TEST (test_no_prompts_empty_meta)
{
  GstHarness *h;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGBx, demo_w, demo_h, NULL);
  for (guint i = 0; i < 3; i++) {
    GstBuffer *in = demo_frame (GST_VIDEO_FORMAT_RGBx, 0, i);
    GstBuffer *out = push_pull (h, in);
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);
    GstMapInfo a, b;
    GstBuffer *again = demo_frame (GST_VIDEO_FORMAT_RGBx, 0, i);

    fail_unless (meta != NULL);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 0);
    fail_if (gst_buffer_get_video_region_of_interest_meta (out) != NULL);
    /* the pixels are untouched */
    fail_unless (gst_buffer_map (out, &a, GST_MAP_READ));
    fail_unless (gst_buffer_map (again, &b, GST_MAP_READ));
    fail_unless (a.size == b.size && memcmp (a.data, b.data, a.size) == 0);
    gst_buffer_unmap (out, &a);
    gst_buffer_unmap (again, &b);
    gst_buffer_unref (again);
    gst_buffer_unref (out);
  }
  fail_unless_equals_int (stat (h, "frames"), 3);
  fail_unless_equals_int (stat (h, "inferences"), 0);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* A meta on every buffer of a stream, masks inside the frame, boxes equal to the masks. */
GST_START_TEST (test_meta_on_every_buffer)
{
  GstHarness *h;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_BGR, demo_w, demo_h, "points",
      "42.5,95.5; 100,30 120,40; 5,250", "boxes", "; ; ; 173,0,255,80", NULL);
  for (guint i = 0; i < 4; i++) {
    GstBuffer *out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_BGR, 0, i));
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);

    check_meta_consistent (out, demo_w, demo_h);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 4);
    for (guint j = 0; j < 4; j++)
      fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, j)->id, j);
    gst_buffer_unref (out);
  }
  fail_unless_equals_int (stat (h, "inferences"), 4);
  gst_harness_teardown (h);
}

GST_END_TEST;

static GstBuffer *
frame_with_rois (guint i, const gchar * type0, gint id0, guint x0, guint y0, guint w0,
    guint h0, const gchar * type1, gint id1, guint x1, guint y1, guint w1, guint h1)
{
  GstBuffer *buf = demo_frame (GST_VIDEO_FORMAT_RGB, 0, i);
  GstVideoRegionOfInterestMeta *roi;

  if (type0 != NULL) {
    roi = gst_buffer_add_video_region_of_interest_meta (buf, type0, x0, y0, w0, h0);
    roi->id = id0;
  }
  if (type1 != NULL) {
    roi = gst_buffer_add_video_region_of_interest_meta (buf, type1, x1, y1, w1, h1);
    roi->id = id1;
  }
  return buf;
}

static const GstSam2Object *
object_for_prompt (GstSam2MaskMeta * meta, gint prompt_id)
{
  for (guint i = 0; i < gst_sam2_mask_meta_get_n_objects (meta); i++)
    if (gst_sam2_mask_meta_get_object (meta, i)->prompt_id == prompt_id)
      return gst_sam2_mask_meta_get_object (meta, i);
  fail ("no object answers prompt %d", prompt_id);
  return NULL;
}

/* Boxes of upstream ROI metas of the listed types are prompts; ids follow the boxes. */
GST_START_TEST (test_roi_prompts_and_ids)
{
  GstHarness *h;
  GstBuffer *out;
  GstSam2MaskMeta *meta;
  const GstSam2Object *sq, *yellow;
  guint sq_id, yellow_id;
  gfloat ious[2];
  guint8 *ref, *m;

  load_demo ();
  ref = core_demo_masks (FALSE, 0.0f, ious);
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "roi-types", "car, truck",
      NULL);

  /* frame 0: a car around the magenta square, a person (not listed) around the triangle */
  out = push_pull (h, frame_with_rois (0, "car", 7, 58, 0, 90, 72, "person", 8, 25, 80, 60,
          50));
  check_meta_consistent (out, demo_w, demo_h);
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  sq = object_for_prompt (meta, 7);
  sq_id = sq->id;
  fail_unless (sq->mask != NULL);
  fail_unless (sq->box.x0 >= 55 && sq->box.x1 <= 150 && sq->box.y1 <= 75,
      "the square's mask stays in its box: %d,%d-%d,%d", sq->box.x0, sq->box.y0, sq->box.x1,
      sq->box.y1);
  {
    GstVideoRegionOfInterestMeta *roi = NULL;
    gpointer state = NULL;
    GstMeta *mm;
    while ((mm = gst_buffer_iterate_meta_filtered (out, &state,
                GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) != NULL)
      if (((GstVideoRegionOfInterestMeta *) mm)->roi_type ==
          g_quark_from_string ("sam2-object"))
        roi = (GstVideoRegionOfInterestMeta *) mm;
    fail_unless (roi != NULL);
    fail_unless_equals_int (roi->parent_id, 7);
  }
  gst_buffer_unref (out);

  /* frame 1: the detector moved its box by a few pixels and renumbered it: same object; a
   * truck appears around the yellow square (the demo box): a new object, and its mask is
   * the core's for that box */
  out = push_pull (h, frame_with_rois (1, "truck", 3, 173, 0, 82, 80, "car", 9, 61, 2, 88,
          70));
  check_meta_consistent (out, demo_w, demo_h);
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
  fail_unless_equals_int (object_for_prompt (meta, 9)->id, sq_id);
  yellow = object_for_prompt (meta, 3);
  yellow_id = yellow->id;
  fail_unless (yellow_id != sq_id);
  m = test_object_frame_mask (meta, yellow);
  fail_unless_equals_int (test_count_diff (m, ref + 256 * 256, 256 * 256), 0);
  g_free (m);
  gst_buffer_unref (out);

  /* frame 2: the car box jumps onto the yellow square, where the truck was: the types differ,
   * so the car is a new object and the truck is gone */
  out = push_pull (h, frame_with_rois (2, "car", 9, 173, 0, 82, 80, NULL, 0, 0, 0, 0, 0));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  fail_unless (object_for_prompt (meta, 9)->id != sq_id);
  fail_unless (object_for_prompt (meta, 9)->id != yellow_id);
  gst_buffer_unref (out);

  /* max-objects bounds the ROI prompts */
  g_object_set (h->element, "max-objects", 1, NULL);
  out = push_pull (h, frame_with_rois (3, "truck", 3, 173, 0, 82, 80, "car", 9, 61, 2, 88,
          70));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  gst_buffer_unref (out);

  gst_harness_teardown (h);
  g_free (ref);
}

GST_END_TEST;

static gint stop_setting;       /* set_points_until_stopped runs while 0 */

static GstBus *
watch_bus (GstHarness * h)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (h->element, bus);
  return bus;
}

static gchar *
pop_warning (GstBus * bus)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  GError *err = NULL;
  gchar *text;

  fail_unless (msg != NULL, "no warning was posted");
  gst_message_parse_warning (msg, &err, NULL);
  text = g_strdup (err->message);
  g_error_free (err);
  gst_message_unref (msg);
  return text;
}

/* set-prompts / clear-prompts change the prompts at the next frame, whatever the interval;
 * bad strings are refused with a warning and the old prompts stay. */
GST_START_TEST (test_signal_prompts)
{
  GstHarness *h;
  GstBus *bus;
  GstBuffer *out;
  GstSam2MaskMeta *meta;
  gboolean ok = FALSE;
  gchar *points = NULL, *warning;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS,
      "interval", 100, NULL);
  bus = watch_bus (h);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 0)->id, 0);
  gst_buffer_unref (out);

  g_signal_emit_by_name (h->element, "set-prompts", "100,30; 42.5,95.5", "; ; 173,0,255,80",
      &ok);
  fail_unless (ok);
  g_object_get (h->element, "points", &points, NULL);
  fail_unless_equals_string (points, "100,30; 42.5,95.5");
  g_free (points);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 1));
  check_meta_consistent (out, demo_w, demo_h);
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 3);
  for (guint i = 0; i < 3; i++) {
    /* new prompts, new ids after the ones handed out so far */
    fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, i)->id, 1 + i);
    fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, i)->prompt_id, i);
  }
  gst_buffer_unref (out);

  /* a typo: refused, said on the bus, the previous prompts stay */
  g_signal_emit_by_name (h->element, "set-prompts", "100,30 4x,5", NULL, &ok);
  fail_if (ok);
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "\"4x\"") != NULL, "warning: %s", warning);
  g_free (warning);
  /* outside the frame */
  g_signal_emit_by_name (h->element, "set-prompts", "300,30", NULL, &ok);
  fail_if (ok);
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "outside the 256x256 frame") != NULL, "warning: %s", warning);
  g_free (warning);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 2));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 3);
  gst_buffer_unref (out);

  g_signal_emit_by_name (h->element, "clear-prompts");
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 3));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 0);
  gst_buffer_unref (out);

  /* a property change applies like a signal */
  g_object_set (h->element, "boxes", "173,0,255,80", NULL);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 4));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 0)->id, 4);
  gst_buffer_unref (out);

  /* the model ran on frames 0, 1 and 4; frame 3 had no prompt, frame 2 was in the interval */
  fail_unless_equals_int (stat (h, "inferences"), 3);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* The sam2-prompts custom event sets the prompts in stream order and is consumed. */
GST_START_TEST (test_event_prompts)
{
  GstHarness *h;
  GstBuffer *out;
  GstSam2MaskMeta *meta;
  GstEvent *ev;
  gchar *boxes = NULL;
  guint events_before;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_BGRA, demo_w, demo_h, "points", DEMO_POINTS,
      NULL);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_BGRA, 0, 0));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 1);
  gst_buffer_unref (out);

  events_before = gst_harness_events_received (h);
  fail_unless (gst_harness_push_event (h, gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
              gst_structure_new ("sam2-prompts", "boxes", G_TYPE_STRING,
                  "173,0,255,80; 58,0,148,72", NULL))));
  /* another custom event is not ours and goes on */
  fail_unless (gst_harness_push_event (h, gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
              gst_structure_new_empty ("something-else"))));
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_BGRA, 0, 1));
  check_meta_consistent (out, demo_w, demo_h);
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
  fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 0)->id, 1);
  gst_buffer_unref (out);
  g_object_get (h->element, "boxes", &boxes, NULL);
  fail_unless_equals_string (boxes, "173,0,255,80; 58,0,148,72");
  g_free (boxes);

  fail_unless_equals_int (gst_harness_events_received (h), events_before + 1);
  while ((ev = gst_harness_try_pull_event (h)) != NULL) {
    const GstStructure *s = gst_event_get_structure (ev);
    fail_if (s != NULL && gst_structure_has_name (s, "sam2-prompts"));
    gst_event_unref (ev);
  }

  /* a field of another type is refused and the prompts stay (read as absent, it cleared them) */
  fail_unless (gst_harness_push_event (h, gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
              gst_structure_new ("sam2-prompts", "points", G_TYPE_INT, 5, NULL))));
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_BGRA, 0, 2));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 2);
  gst_buffer_unref (out);

  /* an event with neither field clears */
  fail_unless (gst_harness_push_event (h, gst_event_new_custom (GST_EVENT_CUSTOM_DOWNSTREAM,
              gst_structure_new_empty ("sam2-prompts"))));
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_BGRA, 0, 2));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 0);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* interval: the model runs on frames 0, N, 2N...; the frames between carry its result. */
GST_START_TEST (test_interval)
{
  GstHarness *h;
  GstBuffer *prev = NULL;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS,
      "boxes", DEMO_BOXES, "interval", 3, NULL);
  for (guint i = 0; i < 7; i++) {
    GstBuffer *out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, i));
    GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);

    check_meta_consistent (out, demo_w, demo_h);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
    for (guint j = 0; prev != NULL && j < 2; j++) {
      const GstSam2Object *a =
          gst_sam2_mask_meta_get_object (gst_buffer_get_sam2_mask_meta (prev), j);
      const GstSam2Object *b = gst_sam2_mask_meta_get_object (meta, j);
      /* same objects on every frame (the same image); skipped frames share the masks of the
       * frame the model last ran on, the others have masks of their own */
      fail_unless_equals_int (a->id, b->id);
      fail_unless (memcmp (&a->box, &b->box, sizeof a->box) == 0);
      if (i % 3 == 0)
        fail_unless (a->mask != b->mask, "frame %u was not segmented", i);
      else
        fail_unless (a->mask == b->mask, "frame %u was segmented", i);
    }
    gst_clear_buffer (&prev);
    prev = out;
  }
  fail_unless_equals_int (stat (h, "frames"), 7);
  fail_unless_equals_int (stat (h, "inferences"), 3);
  fail_unless_equals_int (stat (h, "skipped-interval"), 4);
  fail_unless_equals_int (stat (h, "skipped"), 4);
  fail_unless_equals_int (stat (h, "skipped-qos"), 0);
  gst_buffer_unref (prev);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* A demo frame with one upstream ROI of type "thing" around the yellow square. */
static GstBuffer *
demo_frame_with_roi (guint i)
{
  GstBuffer *buf = demo_frame (GST_VIDEO_FORMAT_RGB, 0, i);
  GstVideoRegionOfInterestMeta *roi =
      gst_buffer_add_video_region_of_interest_meta (buf, "thing", 173, 0, 82, 80);

  roi->id = 7;
  return buf;
}

/* Re-sends caps and a segment, as after a flush with reset (or a new stream). */
static void
resend_caps (GstHarness * h)
{
  gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,framerate=30/1",
      demo_w, demo_h);
  gst_harness_set_src_caps_str (h, caps);
  g_free (caps);
}

/* After a flushing seek, and at a new stream, the frames are not those the last result
 * answers: the next frame runs the model whatever the interval, and ROI objects are new
 * objects (new ids). Between them the interval holds as usual. */
GST_START_TEST (test_flush_and_new_stream_forget)
{
  GstHarness *h;
  GstBuffer *prev, *out;
  GstSam2MaskMeta *meta;
  guint roi_id;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS,
      "roi-types", "thing", "interval", 10, NULL);
  prev = push_pull (h, demo_frame_with_roi (0));
  meta = gst_buffer_get_sam2_mask_meta (prev);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
  roi_id = gst_sam2_mask_meta_get_object (meta, 1)->id;
  /* within the interval: the same result */
  out = push_pull (h, demo_frame_with_roi (1));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless (gst_sam2_mask_meta_get_object (meta, 0)->mask ==
      gst_sam2_mask_meta_get_object (gst_buffer_get_sam2_mask_meta (prev), 0)->mask);
  gst_buffer_unref (out);
  fail_unless_equals_int (stat (h, "inferences"), 1);

  for (guint step = 0; step < 2; step++) {
    if (step == 0) {
      fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
      fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
    } else {
      fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("next")));
    }
    resend_caps (h);
    out = push_pull (h, demo_frame_with_roi (2 + step));
    check_meta_consistent (out, demo_w, demo_h);
    meta = gst_buffer_get_sam2_mask_meta (out);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
    fail_unless_equals_int (stat (h, "inferences"), 2 + step);
    fail_unless (gst_sam2_mask_meta_get_object (meta, 0)->mask !=
        gst_sam2_mask_meta_get_object (gst_buffer_get_sam2_mask_meta (prev), 0)->mask,
        "%s: the result from before was reused", step == 0 ? "flush" : "stream-start");
    /* the explicit object is the same prompt, the ROI one a new object */
    fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 0)->id, 0);
    fail_unless (gst_sam2_mask_meta_get_object (meta, 1)->id > roi_id,
        "%s: ROI object id %u kept", step == 0 ? "flush" : "stream-start", roi_id);
    roi_id = gst_sam2_mask_meta_get_object (meta, 1)->id;
    gst_buffer_unref (prev);
    prev = out;
  }
  gst_buffer_unref (prev);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Late frames (per a QoS event from downstream) reuse the last result and are not dropped;
 * the QoS event goes on upstream; qos=false turns this off. */
GST_START_TEST (test_qos_skipping)
{
  for (gint qos = 1; qos >= 0; qos--) {
    GstHarness *h;
    GstEvent *ev;
    const GstClockTime frame = GST_SECOND / 30;

    load_demo ();
    h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS,
        "qos", (gboolean) qos, NULL);
    gst_buffer_unref (push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0)));

    /* downstream saw frame 1 arrive 100 ms late: frames up to 1 + 100 ms are late too */
    fail_unless (gst_harness_push_upstream_event (h, gst_event_new_qos (GST_QOS_TYPE_UNDERFLOW,
                0.5, 100 * GST_MSECOND, frame)));
    ev = gst_harness_pull_upstream_event (h);
    while (ev != NULL && GST_EVENT_TYPE (ev) != GST_EVENT_QOS) {
      gst_event_unref (ev);
      ev = gst_harness_try_pull_upstream_event (h);
    }
    fail_unless (ev != NULL, "the QoS event did not reach upstream");
    gst_event_unref (ev);

    /* frames 1..4 (33..133 ms) are late; frame 5 (167 ms) is not */
    for (guint i = 1; i <= 5; i++) {
      GstBuffer *out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, i));
      fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects
          (gst_buffer_get_sam2_mask_meta (out)), 1);
      gst_buffer_unref (out);
    }
    fail_unless_equals_int (gst_harness_buffers_received (h), 6);
    if (qos) {
      fail_unless_equals_int (stat (h, "skipped-qos"), 4);
      fail_unless_equals_int (stat (h, "inferences"), 2);
    } else {
      fail_unless_equals_int (stat (h, "skipped-qos"), 0);
      fail_unless_equals_int (stat (h, "inferences"), 6);
    }
    gst_harness_teardown (h);
  }
}

GST_END_TEST;

/* Live latency: upstream's plus sam2seg's processing estimate (the warm-up before the first
 * frame, then the longest recent frame). */
GST_START_TEST (test_latency)
{
  GstHarness *h;
  GstClockTime lat, ours;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS,
      NULL);
  gst_harness_set_upstream_latency (h, 10 * GST_MSECOND);
  ours = stat (h, "latency");
  fail_unless (ours > 0, "no estimate from the warm-up run");
  lat = gst_harness_query_latency (h);
  fail_unless_equals_uint64 (lat, 10 * GST_MSECOND + ours);

  for (guint i = 0; i < 3; i++)
    gst_buffer_unref (push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, i)));
  ours = stat (h, "latency");
  fail_unless (ours >= stat (h, "last-processing-time"));
  lat = gst_harness_query_latency (h);
  fail_unless_equals_uint64 (lat, 10 * GST_MSECOND + ours);
  gst_harness_teardown (h);
}

GST_END_TEST;

static void
expect_start_error (GstElement * seg, GQuark domain, gint code, const gchar * needle)
{
  gchar *debug = NULL;
  GError *err = test_start_error (seg, &debug);

  fail_unless (err != NULL, "sam2seg started; expected an error saying \"%s\"", needle);
  fail_unless (err->domain == domain && err->code == code, "error %s %d: %s",
      g_quark_to_string (err->domain), err->code, err->message);
  fail_unless (strstr (err->message, needle) != NULL, "\"%s\" not in: %s", needle,
      err->message);
  GST_INFO ("expected error: %s (%s)", err->message, debug);
  g_error_free (err);
  g_free (debug);
}

static GstElement *
make_seg (const gchar * first_property, ...);

static GstElement *
make_seg (const gchar * first_property, ...)
{
  GstElement *seg = gst_element_factory_make ("sam2seg", NULL);
  va_list args;

  g_object_set (seg, "model", test_model_path (), NULL);
  va_start (args, first_property);
  if (first_property != NULL)
    g_object_set_valist (G_OBJECT (seg), first_property, args);
  va_end (args);
  return gst_object_ref_sink (seg);
}

GST_START_TEST (test_error_model)
{
  GstElement *seg = make_seg ("model", "/nonexistent/sam2-model", NULL);
  expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "/nonexistent/sam2-model");
  g_object_set (seg, "model", "", NULL);
  expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "set the model property");
  gst_object_unref (seg);
}

GST_END_TEST;

GST_START_TEST (test_error_backend_precision)
{
  GstElement *seg = make_seg (NULL);

  /* backend=cuda fails at start only where CUDA cannot run (no CUDA build, or no GPU) */
  if (!sam2_backend_available (SAM2_BACKEND_CUDA, NULL)) {
    gst_util_set_object_arg (G_OBJECT (seg), "backend", "cuda");
    expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "backend=cuda is not available");
  }
  gst_util_set_object_arg (G_OBJECT (seg), "backend", "cpu");
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "fp16");
  expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "precision=fp16 needs the CUDA backend");
  /* bf16 on the CPU: refused where the CPU lacks AVX-512 BF16 (SAM2_CPU_BF16=0 makes any CPU
   * answer so), run where it has it */
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "bf16");
  g_setenv ("SAM2_CPU_BF16", "0", TRUE);
  expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "precision bf16 is not available on the CPU: the environment variable SAM2_CPU_BF16=0");
  g_unsetenv ("SAM2_CPU_BF16");
  if (sam2_precision_available (SAM2_BACKEND_CPU, SAM2_PRECISION_BF16, NULL))
    fail_unless (test_start_error (seg, NULL) == NULL);
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "w4a8");
  expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "needs a quantized model file");
  /* and it starts with what this build has */
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "fp32");
  fail_unless (test_start_error (seg, NULL) == NULL);
  gst_util_set_object_arg (G_OBJECT (seg), "backend", "auto");
  gst_util_set_object_arg (G_OBJECT (seg), "precision", "auto");
  fail_unless (test_start_error (seg, NULL) == NULL);
  gst_object_unref (seg);
}

GST_END_TEST;

/* Malformed prompt strings fail at start, quoting the bad part. */
GST_START_TEST (test_error_prompts)
{
  static const struct
  {
    const gchar *points, *boxes, *needle;
  } cases[] = {
    {"10,20 30", NULL, "\"30\""},
    {"10,abc", NULL, "\"abc\""},
    {"10,20,7", NULL, "label is 1 (positive) or 0 (negative), not \"7\""},
    {"10,20; ;", NULL, "object 1 has neither points nor a box"},
    {"-3,20", NULL, "cannot be negative"},
    {NULL, "1,2,3", "\"1,2,3\""},
    {NULL, "50,50,10,10", "x0 <= x1"},
    {NULL, "1,2,3,4,5", "\"1,2,3,4,5\""},
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    GstElement *seg = make_seg ("points", cases[i].points, "boxes", cases[i].boxes, NULL);
    expect_start_error (seg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS, cases[i].needle);
    gst_object_unref (seg);
  }
}

GST_END_TEST;

/* Prompts outside the negotiated frame fail negotiation with an error saying so. */
GST_START_TEST (test_error_prompts_outside_frame)
{
  GstElement *seg = make_seg ("points", "300,20", NULL);
  GstHarness *h = gst_harness_new_with_element (seg, "sink", "src");
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *err = NULL;

  gst_element_set_bus (seg, bus);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=256,height=256,"
      "framerate=30/1");
  load_demo ();
  fail_unless_equals_int (gst_harness_push (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0)),
      GST_FLOW_NOT_NEGOTIATED);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (strstr (err->message, "(300, 20) lies outside the 256x256 frame") != NULL,
      "%s", err->message);
  g_error_free (err);
  gst_message_unref (msg);
  gst_element_set_bus (seg, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  gst_object_unref (seg);
}

GST_END_TEST;

/* The model cannot change while running: refused with a warning, the value stays. */
GST_START_TEST (test_model_fixed_while_running)
{
  GstHarness *h;
  GstBus *bus;
  gchar *model = NULL, *warning;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, NULL);
  bus = watch_bus (h);
  g_object_set (h->element, "model", "large", NULL);
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "cannot change while sam2seg runs") != NULL, "%s", warning);
  g_free (warning);
  g_object_get (h->element, "model", &model, NULL);
  fail_unless_equals_string (model, test_model_path ());
  g_free (model);
  gst_buffer_unref (push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0)));
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* More explicit objects than max-objects: the first ones, and a warning. */
GST_START_TEST (test_max_objects)
{
  GstHarness *h;
  GstBus *bus;
  GstBuffer *out;
  gchar *warning;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points",
      "42.5,95.5; 100,30; 200,40", "max-objects", 2, NULL);
  bus = watch_bus (h);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 2);
  gst_buffer_unref (out);
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "max-objects is 2") != NULL, "%s", warning);
  g_free (warning);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_frame_size_limit_in_caps)
{
  test_assert_frame_size_caps ("sam2seg");
}

GST_END_TEST;

/* Frames are read whole: the crop meta a sink downstream offers is not passed upstream (a
 * videocrop would send uncropped frames, read at the caps' smaller size from the top left). */
GST_START_TEST (test_no_crop_meta_upstream)
{
  GstHarness *h;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS, NULL);
  gst_buffer_unref (push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0)));
  fail_if (test_proposes_crop_meta (h));
  gst_harness_teardown (h);
}

GST_END_TEST;

/* A frame that already carries a mask meta and sam2-object ROIs (a sam2seg upstream) leaves
 * with this element's only: readers would get the first segmenter's result otherwise. */
GST_START_TEST (test_replaces_upstream_result)
{
  GstHarness *h;
  GstBuffer *in, *out;
  GstSam2MaskMeta *old_meta;
  GstSam2Object old = { 0 };
  GstVideoRegionOfInterestMeta *roi;
  guint8 mask[4] = { 1, 1, 1, 1 };
  gpointer state = NULL;
  guint n_metas = 0;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", DEMO_POINTS, NULL);
  in = demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0);
  old_meta = gst_buffer_add_sam2_mask_meta (in, demo_w, demo_h);
  old.id = 99;
  old.box = (GstSam2Box) { 0, 0, 1, 1 };
  old.location = (GstVideoRectangle) { 0, 0, 2, 2 };
  old.mask = gst_sam2_mask_buffer_new (mask, 2, 2, 2);
  gst_sam2_mask_meta_add_object (old_meta, &old);
  gst_buffer_unref (old.mask);
  roi = gst_buffer_add_video_region_of_interest_meta (in, "sam2-object", 0, 0, 2, 2);
  roi->id = 99;

  out = push_pull (h, in);
  while (gst_buffer_iterate_meta_filtered (out, &state, GST_SAM2_MASK_META_API_TYPE) != NULL)
    n_metas++;
  fail_unless_equals_int (n_metas, 1);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta (out)),
      1);
  fail_unless (gst_sam2_mask_meta_find_object (gst_buffer_get_sam2_mask_meta (out), 99) == NULL);
  check_meta_consistent (out, demo_w, demo_h);        /* no ROI left naming object 99 */
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Frames of another size than the model's input, with several objects, are segmented exactly
 * as the core API does; and a caps change to a smaller frame with more objects gets the
 * next frame segmented at the new size (this once overflowed libsam2's box array). */
GST_START_TEST (test_other_sizes_and_caps_change)
{
  static const Sam2Point clicks[3] = { {42.5f, 95.5f, 1}, {100, 30, 1}, {20, 20, 1} };
  GstHarness *h;
  GstBuffer *out;
  GstSam2MaskMeta *meta;
  guint8 *small, *ref;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", "40,90",
      "interval", 50, NULL);
  gst_buffer_unref (push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0)));

  small = demo_crop (160, 120);
  ref = core_click_masks (small, 160, 120, clicks, 3);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=160,height=120,"
      "framerate=30/1");
  g_object_set (h->element, "points", "42.5,95.5; 100,30; 20,20", NULL);
  for (guint i = 1; i <= 2; i++) {
    out = push_pull (h, test_make_frame (small, 160, 120, GST_VIDEO_FORMAT_RGB, 8,
            i * GST_SECOND));
    check_meta_consistent (out, 160, 120);
    meta = gst_buffer_get_sam2_mask_meta (out);
    fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 3);
    for (guint o = 0; o < 3; o++) {
      guint8 *m = test_object_frame_mask (meta, gst_sam2_mask_meta_get_object (meta, o));
      fail_unless_equals_int (test_count_diff (m, ref + o * 160 * 120, 160 * 120), 0);
      g_free (m);
    }
    gst_buffer_unref (out);
  }
  /* frame 0 and frame 1 (new size, new prompts); frame 2 is within the interval */
  fail_unless_equals_int (stat (h, "inferences"), 2);
  g_free (ref);
  g_free (small);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Object 0's mask on `out` equals the core API's for one click at (x, y) on `rgb`. */
static void
check_click_mask (GstBuffer * out, const guint8 * rgb, gint w, gint h, gfloat x, gfloat y)
{
  const Sam2Point click = { x, y, SAM2_LABEL_POSITIVE };
  guint8 *ref = core_click_masks (rgb, w, h, &click, 1);
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (out);
  guint8 *m;

  check_meta_consistent (out, w, h);
  m = test_object_frame_mask (meta, gst_sam2_mask_meta_get_object (meta, 0));
  fail_unless_equals_int (test_count_diff (m, ref, (gsize) w * h), 0);
  g_free (m);
  g_free (ref);
}

static void
check_prompt_props (GstElement * seg, const gchar * points, const gchar * boxes)
{
  gchar *p = NULL, *b = NULL;

  g_object_get (seg, "points", &p, "boxes", &b, NULL);
  fail_unless_equals_string (p, points);
  fail_unless_equals_string (b, boxes);
  g_free (p);
  g_free (b);
}

/* A renegotiated frame size moves the prompts, active and pending, to the same places of the
 * new frame (the properties say where), instead of failing negotiation when they fall
 * outside it; the objects keep their ids. */
GST_START_TEST (test_caps_change_scales_prompts)
{
  GstHarness *h;
  GstBuffer *out;
  GstSam2MaskMeta *meta;
  guint8 *crop;
  gboolean ok = FALSE;

  load_demo ();
  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, demo_w, demo_h, "points", "128,64",
      "boxes", DEMO_BOXES, "interval", 50, NULL);
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 2);
  gst_buffer_unref (out);

  /* half the size: the point at (128, 64) would lie outside a 128x128 frame */
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=128,height=128,"
      "framerate=30/1");
  check_prompt_props (h->element, "64,32", "; 86.5,0,127.5,40");
  crop = demo_crop (128, 128);
  out = push_pull (h, test_make_frame (crop, 128, 128, GST_VIDEO_FORMAT_RGB, 0, GST_SECOND));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 2);
  fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 0)->id, 0);
  fail_unless_equals_int (gst_sam2_mask_meta_get_object (meta, 1)->id, 1);
  check_click_mask (out, crop, 128, 128, 64, 32);
  gst_buffer_unref (out);
  g_free (crop);

  /* new prompts for the 128x128 frames, pending when the size changes again */
  g_signal_emit_by_name (h->element, "set-prompts", "100,50", NULL, &ok);
  fail_unless (ok);
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=64,height=64,"
      "framerate=30/1");
  check_prompt_props (h->element, "50,25", "");
  crop = demo_crop (64, 64);
  out = push_pull (h, test_make_frame (crop, 64, 64, GST_VIDEO_FORMAT_RGB, 0,
          2 * GST_SECOND));
  meta = gst_buffer_get_sam2_mask_meta (out);
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (meta), 1);
  check_click_mask (out, crop, 64, 64, 50, 25);
  gst_buffer_unref (out);
  g_free (crop);
  fail_unless_equals_int (stat (h, "inferences"), 3);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Prompts given at run time before the first caps could not be checked against a frame: at
 * the first caps they are refused like run-time prompts at any other time (a warning, the
 * prompts the element started with stay), not with an error that ends the stream. */
GST_START_TEST (test_prompts_before_first_caps)
{
  GstElement *seg = make_seg ("points", DEMO_POINTS, NULL);
  GstHarness *h = gst_harness_new_with_element (seg, "sink", "src");
  GstBus *bus = watch_bus (h);
  GstBuffer *out;
  gchar *warning;
  gboolean ok = FALSE;

  load_demo ();
  g_signal_emit_by_name (seg, "set-prompts", "300,20", NULL, &ok);
  fail_unless (ok, "no frame size yet: taken, checked at the first caps");
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=256,height=256,"
      "framerate=30/1");
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "Ignoring the new prompts from the set-prompts signal") != NULL
      && strstr (warning, "(300, 20) lies outside the 256x256 frame") != NULL, "%s",
      warning);
  g_free (warning);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR) == NULL);
  check_prompt_props (seg, DEMO_POINTS, "");
  check_click_mask (out, demo_rgb, demo_w, demo_h, demo_click.x, demo_click.y);
  gst_buffer_unref (out);

  gst_element_set_bus (seg, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  gst_object_unref (seg);
}

GST_END_TEST;

/* A malformed set-prompts string before the element starts: FALSE, and a warning on the bus
 * says why, as at run time. */
GST_START_TEST (test_set_prompts_malformed_before_start)
{
  GstElement *seg = make_seg ("points", DEMO_POINTS, NULL);
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *error = NULL;
  gboolean ok = TRUE;

  gst_element_set_bus (seg, bus);
  g_signal_emit_by_name (seg, "set-prompts", "100,30 4x,5", NULL, &ok);
  fail_if (ok);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning for a malformed set-prompts before start");
  gst_message_parse_warning (msg, &error, NULL);
  fail_unless (strstr (error->message, "set-prompts") != NULL, "%s", error->message);
  check_prompt_props (seg, DEMO_POINTS, "");
  g_error_free (error);
  gst_message_unref (msg);
  gst_element_set_bus (seg, NULL);
  gst_object_unref (bus);
  gst_object_unref (seg);
}

GST_END_TEST;

/* Waits until `seg` is on its way from READY to PAUSED (start() runs there), then gives it new
 * prompts and another model, as an application thread may while the model loads. */
static gpointer
set_while_starting (gpointer data)
{
  GstElement *seg = data;
  gboolean ok = FALSE;

  for (gint i = 0; i < 20000; i++) {
    GstState cur, next;
    GST_OBJECT_LOCK (seg);
    cur = GST_STATE (seg);
    next = GST_STATE_NEXT (seg);
    GST_OBJECT_UNLOCK (seg);
    if (cur == GST_STATE_READY && next == GST_STATE_PAUSED)
      break;
    g_usleep (500);
  }
  g_signal_emit_by_name (seg, "set-prompts", "100,30; 42.5,95.5", NULL, &ok);
  g_object_set (seg, "model", "large", NULL);
  return GINT_TO_POINTER (ok);
}

/* Settings given while sam2seg starts (loading its model takes a while): the prompts are the
 * ones it starts with (it started with those it had read before, and the new ones, stored,
 * never applied), and the model cannot change any more (the property took the new value while
 * the element ran the old one). */
GST_START_TEST (test_settings_while_starting)
{
  GstElement *seg = make_seg ("points", DEMO_POINTS, NULL);
  GstBus *bus = gst_bus_new ();
  GstHarness *h;
  GThread *thread;
  GstBuffer *out;
  gchar *model = NULL, *warning;

  load_demo ();
  gst_element_set_bus (seg, bus);
  thread = g_thread_new ("set-while-starting", set_while_starting, seg);
  h = gst_harness_new_with_element (seg, "sink", "src");     /* starts it */
  fail_unless (g_thread_join (thread) != NULL, "set-prompts refused its strings");
  gst_harness_set_src_caps_str (h, "video/x-raw,format=RGB,width=256,height=256,"
      "framerate=30/1");
  out = push_pull (h, demo_frame (GST_VIDEO_FORMAT_RGB, 0, 0));
  fail_unless_equals_int (gst_sam2_mask_meta_get_n_objects (gst_buffer_get_sam2_mask_meta
          (out)), 2);
  gst_buffer_unref (out);
  g_object_get (seg, "model", &model, NULL);
  fail_unless_equals_string (model, test_model_path ());
  g_free (model);
  warning = pop_warning (bus);
  fail_unless (strstr (warning, "cannot change while sam2seg runs") != NULL, "%s", warning);
  g_free (warning);

  gst_element_set_bus (seg, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
  gst_object_unref (seg);
}

GST_END_TEST;

static gpointer
set_points_until_stopped (gpointer data)
{
  GstElement *seg = data;

  while (!g_atomic_int_get (&stop_setting))
    g_object_set (seg, "points", "10,10", NULL);
  return NULL;
}

/* The points property written from another thread while the frame size changes back and
 * forth: the boxes follow the size, scaled once per change (a points write put back the boxes
 * it had read before a change, which the next change scaled again: 100 became 200, 400,
 * 800 ...). */
GST_START_TEST (test_prompt_writes_race_size_changes)
{
  GstHarness *h;
  GThread *thread;

  h = test_seg_harness_new (GST_VIDEO_FORMAT_RGB, 128, 128, "boxes", "0,0,100,100",
      "points", "10,10", NULL);
  g_atomic_int_set (&stop_setting, 0);
  thread = g_thread_new ("set-points", set_points_until_stopped, h->element);
  for (gint i = 0; i < 40; i++) {
    const gint side = i % 2 ? 128 : 256;
    gchar *caps = g_strdup_printf ("video/x-raw,format=RGB,width=%d,height=%d,"
        "framerate=30/1", side, side);
    gchar *boxes = NULL, *want = g_strdup_printf ("0,0,%d,%d", side * 100 / 128,
        side * 100 / 128);
    gst_harness_set_src_caps_str (h, caps);
    g_object_get (h->element, "boxes", &boxes, NULL);
    fail_unless_equals_string (boxes, want);
    g_free (boxes);
    g_free (want);
    g_free (caps);
  }
  g_atomic_int_set (&stop_setting, 1);
  g_thread_join (thread);
  gst_harness_teardown (h);
}

GST_END_TEST;

static Suite *
sam2seg_suite (void)
{
  Suite *s = suite_create ("sam2seg");
  TCase *tc = tcase_create ("general");

  tcase_set_timeout (tc, 120);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_formats_match_core);
  tcase_add_test (tc, test_multimask_and_threshold);
  tcase_add_test (tc, test_no_prompts_empty_meta);
  tcase_add_test (tc, test_meta_on_every_buffer);
  tcase_add_test (tc, test_roi_prompts_and_ids);
  tcase_add_test (tc, test_signal_prompts);
  tcase_add_test (tc, test_event_prompts);
  tcase_add_test (tc, test_interval);
  tcase_add_test (tc, test_flush_and_new_stream_forget);
  tcase_add_test (tc, test_qos_skipping);
  tcase_add_test (tc, test_latency);
  tcase_add_test (tc, test_error_model);
  tcase_add_test (tc, test_error_backend_precision);
  tcase_add_test (tc, test_error_prompts);
  tcase_add_test (tc, test_error_prompts_outside_frame);
  tcase_add_test (tc, test_model_fixed_while_running);
  tcase_add_test (tc, test_max_objects);
  tcase_add_test (tc, test_frame_size_limit_in_caps);
  tcase_add_test (tc, test_no_crop_meta_upstream);
  tcase_add_test (tc, test_replaces_upstream_result);
  tcase_add_test (tc, test_other_sizes_and_caps_change);
  tcase_add_test (tc, test_caps_change_scales_prompts);
  tcase_add_test (tc, test_prompts_before_first_caps);
  tcase_add_test (tc, test_set_prompts_malformed_before_start);
  tcase_add_test (tc, test_settings_while_starting);
  tcase_add_test (tc, test_prompt_writes_race_size_changes);
  return s;
}

GST_CHECK_MAIN (sam2seg);
