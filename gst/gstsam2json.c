/* GStreamer SAM2 plugin
 *
 * gstsam2json.c: sam2json, writes the GstSam2MaskMeta of every frame as one JSON line.
 */
/**
 * SECTION:element-sam2json
 * @title: sam2json
 * @see_also: sam2seg, #GstSam2MaskMeta
 *
 * Writes one JSON object per frame, one per line (JSON lines), to #GstSam2Json:location, and
 * passes the buffers on untouched:
 *
 * |[
 * {"frame": 0, "pts": 0, "time": 0.000000000, "width": 640, "height": 480, "objects": [
 *   {"id": 0, "prompt_id": 0, "box": [120, 80, 260, 300], "iou": 0.97, "object_score": 9.1,
 *    "mask": {"size": [480, 640], "counts": "Pd`32n..."}}]}
 * ]|
 *
 * (on one line in the file). frame counts the buffers from 0; pts is the buffer timestamp in
 * nanoseconds and time the same in seconds (both null when the buffer has none); width and
 * height are those of the frame the meta describes; box is [x0, y0, x1, y1], inclusive pixel
 * bounds; iou is the predicted IoU and object_score the object-presence logit; mask is the
 * object's full-frame mask as COCO compressed RLE (decode with pycocotools'
 * mask.decode, or sam2_rle_from_string). A frame without a #GstSam2MaskMeta has
 * "objects": [] and width / height 0; a meta that gives no frame size (sam2seg always does)
 * has "mask": null.
 *
 * Each line is flushed when written, so the file can be followed while the pipeline runs;
 * EOS flushes again. Failing to open the file, or to write it (a full disk), is an error
 * naming the file.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=video.mp4 ! decodebin ! videoconvert ! \
 *     sam2seg model=tiny points="320,240" ! sam2json location=masks.jsonl ! fakesink
 * ]|
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2json.h"
#include "gstsam2meta.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>

#include "rle.h"

GST_DEBUG_CATEGORY_STATIC (gst_sam2_json_debug);
#define GST_CAT_DEFAULT gst_sam2_json_debug

enum
{
  PROP_0,
  PROP_LOCATION,
};

struct _GstSam2Json
{
  GstBaseTransform parent;

  gchar *location;              /* under the object lock */

  FILE *file;
  guint64 frame;
  GString *line;
  guint8 *plane;                /* one object's location in the frame, as 0 / 1 */
  gsize plane_size;
  gboolean warned_too_large;    /* a frame past the RLE's 2^32 - 1 pixels was reported */
};

#define gst_sam2_json_parent_class parent_class
G_DEFINE_TYPE (GstSam2Json, gst_sam2_json, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (sam2json, "sam2json", GST_RANK_NONE, GST_TYPE_SAM2_JSON);

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS ("video/x-raw(ANY)"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS ("video/x-raw(ANY)"));

static void
append_float (GString * s, gdouble v)
{
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (v)) {
    g_string_append (s, "null");
    return;
  }
  g_string_append (s, g_ascii_formatd (buf, sizeof buf, "%.6g", v));
}

/* COCO strings use characters 48..111, which include '\\' (92): JSON needs it escaped. */
static void
append_json_string (GString * s, const gchar * str)
{
  g_string_append_c (s, '"');
  for (const gchar * c = str; *c; c++) {
    if (*c == '"' || *c == '\\')
      g_string_append_c (s, '\\');
    g_string_append_c (s, *c);
  }
  g_string_append_c (s, '"');
}

static gboolean
gst_sam2_json_write_error (GstSam2Json * self, int err)
{
  gchar *location;

  GST_OBJECT_LOCK (self);
  location = g_strdup (self->location);
  GST_OBJECT_UNLOCK (self);
  if (err == ENOSPC)
    GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT,
        ("No space left on the device holding \"%s\".", location),
        ("%s", g_strerror (err)));
  else
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
        ("Error while writing to file \"%s\".", location), ("%s", g_strerror (err)));
  g_free (location);
  return FALSE;
}

static gboolean
gst_sam2_json_flush (GstSam2Json * self)
{
  if (self->file != NULL && fflush (self->file) != 0)
    return gst_sam2_json_write_error (self, errno);
  return TRUE;
}

static GstFlowReturn
gst_sam2_json_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstSam2Json *self = GST_SAM2_JSON (trans);
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buf);
  GString *s = self->line;
  const GstClockTime pts = GST_BUFFER_PTS (buf);
  gint W = 0, H = 0;
  guint n = 0;

  g_string_truncate (s, 0);
  g_string_append_printf (s, "{\"frame\": %" G_GUINT64_FORMAT ", \"pts\": ", self->frame++);
  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    g_string_append_printf (s, "%" G_GUINT64_FORMAT ", \"time\": ", pts);
    /* to the nanosecond: six significant digits gave frames of the same second after ~3 h */
    g_string_append_printf (s, "%" G_GUINT64_FORMAT ".%09" G_GUINT64_FORMAT,
        pts / GST_SECOND, pts % GST_SECOND);
  } else {
    g_string_append (s, "null, \"time\": null");
  }
  if (meta != NULL) {
    W = meta->width;
    H = meta->height;
    n = gst_sam2_mask_meta_get_n_objects (meta);
  }
  g_string_append_printf (s, ", \"width\": %d, \"height\": %d, \"objects\": [", W, H);

  /* COCO's RLE counts are 32-bit: a larger frame (possible in a meta an application made; not
   * from sam2seg) has no mask string */
  const gboolean too_large = (guint64) W * (guint64) H > G_MAXUINT32;
  if (n > 0 && too_large && !self->warned_too_large) {
    self->warned_too_large = TRUE;
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("Frames of %dx%d pixels have more than 2^32 - 1 "
            "pixels, which COCO's RLE cannot count: their masks are written as null.", W, H),
        (NULL));
  }
  for (guint i = 0; i < n; i++) {
    const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
    Sam2Rle *rle;
    gchar *counts;

    g_string_append_printf (s, "%s{\"id\": %u, \"prompt_id\": %d, \"box\": [%d, %d, %d, %d], "
        "\"iou\": ", i > 0 ? ", " : "", o->id, o->prompt_id, o->box.x0, o->box.y0, o->box.x1,
        o->box.y1);
    append_float (s, o->iou);
    g_string_append (s, ", \"object_score\": ");
    append_float (s, o->object_score);
    if (W <= 0 || H <= 0 || too_large) {
      /* a meta that does not say its frame size: no frame to encode the mask against */
      g_string_append (s, ", \"mask\": null}");
      continue;
    }
    /* only the object's location (within the frame) is read and encoded: rendering and
     * encoding the whole frame per object took seconds per 4K frame of many small objects */
    const GstVideoRectangle *l = &o->location;
    const gint x0 = CLAMP (l->x, 0, W), y0 = CLAMP (l->y, 0, H);
    const gint x1 = (gint) CLAMP ((gint64) l->x + MAX (l->w, 0), x0, W);
    const gint y1 = (gint) CLAMP ((gint64) l->y + MAX (l->h, 0), y0, H);
    const gsize area = (gsize) (x1 - x0) * (y1 - y0);
    if (area > self->plane_size) {
      g_free (self->plane);
      self->plane = g_try_malloc (area);
      self->plane_size = self->plane != NULL ? area : 0;
      if (self->plane == NULL) {
        GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Out of memory for the %dx%d mask of "
                "object %u.", x1 - x0, y1 - y0, o->id), (NULL));
        return GST_FLOW_ERROR;
      }
    }
    if (!gst_sam2_object_render_mask_rect (o, self->plane, x1 - x0, x0, y0, x1 - x0,
            y1 - y0)) {
      GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not read the mask of object %u.",
              o->id), (NULL));
      return GST_FLOW_ERROR;
    }
    rle = sam2_rle_encode_region (self->plane, x1 - x0, x0, y0, x1 - x0, y1 - y0, W, H);
    counts = sam2_rle_to_string (rle);
    g_string_append_printf (s, ", \"mask\": {\"size\": [%d, %d], \"counts\": ", H, W);
    append_json_string (s, counts);
    g_string_append (s, "}}");
    g_free (counts);
    sam2_rle_free (rle);
  }
  g_string_append (s, "]}\n");

  if (fwrite (s->str, 1, s->len, self->file) != s->len) {
    gst_sam2_json_write_error (self, errno);
    return GST_FLOW_ERROR;
  }
  /* one line at a time, so that the file can be followed (tail -f) while the pipeline runs and
   * a full disk shows on the frame that hit it */
  if (!gst_sam2_json_flush (self))
    return GST_FLOW_ERROR;
  return GST_FLOW_OK;
}

static gboolean
gst_sam2_json_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstSam2Json *self = GST_SAM2_JSON (trans);

  if (GST_EVENT_TYPE (event) == GST_EVENT_EOS && !gst_sam2_json_flush (self)) {
    gst_event_unref (event);
    return FALSE;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static gboolean
gst_sam2_json_start (GstBaseTransform * trans)
{
  GstSam2Json *self = GST_SAM2_JSON (trans);
  gchar *location;

  GST_OBJECT_LOCK (self);
  location = g_strdup (self->location);
  GST_OBJECT_UNLOCK (self);

  if (location == NULL || *location == '\0') {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No file name specified for writing: set the location property."), (NULL));
    g_free (location);
    return FALSE;
  }
  self->file = g_fopen (location, "wb");
  if (self->file == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
        ("Could not open file \"%s\" for writing.", location), GST_ERROR_SYSTEM);
    g_free (location);
    return FALSE;
  }
  GST_DEBUG_OBJECT (self, "writing to %s", location);
  g_free (location);
  self->frame = 0;
  return TRUE;
}

static gboolean
gst_sam2_json_stop (GstBaseTransform * trans)
{
  GstSam2Json *self = GST_SAM2_JSON (trans);
  gboolean ok = TRUE;

  if (self->file != NULL) {
    ok = fclose (self->file) == 0;
    self->file = NULL;
    if (!ok)
      gst_sam2_json_write_error (self, errno);
  }
  g_clear_pointer (&self->plane, g_free);
  self->plane_size = 0;
  self->warned_too_large = FALSE;
  return ok;
}

static void
gst_sam2_json_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstSam2Json *self = GST_SAM2_JSON (object);

  switch (prop_id) {
    case PROP_LOCATION:
      /* the file is opened at start, as filesink does */
      GST_OBJECT_LOCK (self);
      if (self->file != NULL) {
        GST_OBJECT_UNLOCK (self);
        GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
            ("Changing the location of sam2json while a file is open is not supported; "
                "set it in the NULL or READY state."), (NULL));
        break;
      }
      g_free (self->location);
      self->location = g_value_dup_string (value);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_sam2_json_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstSam2Json *self = GST_SAM2_JSON (object);

  switch (prop_id) {
    case PROP_LOCATION:
      GST_OBJECT_LOCK (self);
      g_value_set_string (value, self->location);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_sam2_json_finalize (GObject * object)
{
  GstSam2Json *self = GST_SAM2_JSON (object);

  g_free (self->location);
  g_string_free (self->line, TRUE);
  g_free (self->plane);
  if (self->file != NULL)
    fclose (self->file);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_sam2_json_init (GstSam2Json * self)
{
  self->line = g_string_sized_new (4096);
  /* reads metadata only: buffers go through as they are */
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), TRUE);
}

static void
gst_sam2_json_class_init (GstSam2JsonClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sam2_json_debug, "sam2json", 0, "SAM2 masks as JSON lines");

  gobject_class->set_property = gst_sam2_json_set_property;
  gobject_class->get_property = gst_sam2_json_get_property;
  gobject_class->finalize = gst_sam2_json_finalize;

  g_object_class_install_property (gobject_class, PROP_LOCATION,
      g_param_spec_string ("location", "File location",
          "File to write the JSON lines to (created or truncated at start)", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "SAM2 masks to JSON lines", "Filter/Video/Metadata",
      "Writes the GstSam2MaskMeta of every frame as one JSON object per line: frame number, "
      "pts (ns) and time (s), and per object id, prompt_id, box [x0, y0, x1, y1], iou, "
      "object_score and the full-frame mask as COCO compressed RLE {\"size\": [h, w], "
      "\"counts\": \"...\"}. Buffers pass unchanged. Example: gst-launch-1.0 filesrc "
      "location=in.mp4 ! decodebin ! videoconvert ! sam2seg model=tiny points=\"320,240\" ! "
      "sam2json location=masks.jsonl ! fakesink",
      "sam2-gst developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_sam2_json_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_sam2_json_stop);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_sam2_json_transform_ip);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_sam2_json_sink_event);
  trans_class->transform_ip_on_passthrough = TRUE;
}
