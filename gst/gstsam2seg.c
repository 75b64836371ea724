/* GStreamer SAM2 plugin
 *
 * gstsam2seg.c: sam2seg, Segment Anything 2 on video frames, results as buffer metadata.
 */
/**
 * SECTION:element-sam2seg
 * @title: sam2seg
 * @see_also: sam2overlay, sam2json, #GstSam2MaskMeta
 *
 * Segments the objects given by prompts (points and boxes in frame pixels, or the boxes of an
 * upstream detector's #GstVideoRegionOfInterestMeta) in every frame with a Segment Anything 2
 * model, and attaches the masks to the buffer. The frame itself is not modified.
 *
 * ## Metadata
 *
 * Every output buffer carries one #GstSam2MaskMeta (gstsam2meta.h, libgstsam2meta): per object
 * its id, the prompt it answers, the box of its mask, the predicted IoU, the object score and
 * a GRAY8 mask covering only the box. With no prompt at all the meta is there and empty, and
 * the model does not run: downstream can tell "looked, nothing asked" from "not analysed".
 * Every object with a non-empty mask also gets a #GstVideoRegionOfInterestMeta of type
 * "sam2-object" (id = object id, parent_id = the upstream ROI's id for ROI prompts, else -1)
 * with a "sam2-object" parameter structure holding id (uint), prompt-id (int), iou (double)
 * and object-score (double), for consumers that only know GStreamer 1.22's metas. A buffer that
 * already carries them (a sam2seg upstream) gets this element's instead.
 *
 * ## Prompts
 *
 * #GstSam2Seg:points is "x,y[,label] x,y[,label]; x,y": ';' separates objects, whitespace the
 * points of one object (no spaces inside a point); label 1 is a positive click (the default),
 * 0 a negative one. #GstSam2Seg:boxes is "x0,y0,x1,y1; x0,y0,x1,y1", one box per object.
 * Object i takes the i-th ';' entry of both strings, so clicks can refine a box; an empty entry
 * means none ("5,5" and "; 10,10,50,50" are a point object 0 and a box object 1). Coordinates
 * are frame pixels and may be decimals. Malformed strings fail at start with an error quoting
 * the bad part; at run time they are refused with a warning and the previous prompts stay.
 *
 * Prompts outside the frame are treated the same way once the frame size is known (the first
 * caps): the prompts sam2seg starts with fail negotiation with an error; run-time prompts are
 * refused with a warning, also those given before the first caps (checked there; the prompts
 * sam2seg started with stay). When the frame size changes later (a camera or an adaptive
 * stream renegotiates), the prompts in use and those waiting for the next frame move to the
 * same places in the new frame (scaled, to 1/100 pixel), and #GstSam2Seg:points and
 * #GstSam2Seg:boxes are rewritten to the scaled values.
 *
 * At run time, prompts change through the #GstSam2Seg::set-prompts and
 * #GstSam2Seg::clear-prompts action signals, by setting the properties, or with a serialized
 * custom downstream event (%GST_EVENT_CUSTOM_DOWNSTREAM or its out-of-band variant) whose
 * structure is named "sam2-prompts" with string fields "points" and "boxes" (an absent field
 * is empty; both absent clears the prompts). sam2seg consumes that event. New prompts apply
 * from the next frame, which is always segmented whatever the interval. Prompts set while
 * sam2seg starts (READY to PAUSED, while its model loads) are the ones it starts with. All of
 * these may come from any thread: writes are taken one at a time, each whole.
 *
 * #GstSam2Seg:roi-types lists (comma-separated) the roi types of upstream
 * #GstVideoRegionOfInterestMeta whose boxes become prompts, after the explicit prompts, up to
 * #GstSam2Seg:max-objects objects in all.
 *
 * ## Object ids
 *
 * Explicit prompts get ids when they are set: object i of the first prompt set has id i;
 * each later set numbers its objects after the highest id handed out so far, so an id never
 * names two different objects in a stream. The prompt id is the object's index in the prompt
 * strings. Objects from ROI prompts take the id of the previous segmented frame's ROI object
 * of the same roi type whose prompt box overlaps theirs most (box IoU >= 0.3, each old id used
 * once, best pairs first), else a new id; their prompt id is the upstream ROI's id.
 *
 * ## Scheduling, QoS and latency
 *
 * The model runs every #GstSam2Seg:interval frames; the frames between reuse the last result
 * (same objects, same masks). With #GstBaseTransform:qos (TRUE here), a frame that QoS events
 * say is already late also reuses the last result instead of running the model; the buffer is
 * never dropped. A frame with new prompts or a new size, the first frame, and the first frame
 * after a flushing seek or at a new stream (STREAM_START) always run the model; after a flush
 * or a new stream, upstream ROIs also start new objects (new ids). What was skipped and why is
 * logged at DEBUG level in the "sam2seg" category, and the counts are in #GstSam2Seg:stats.
 *
 * In live pipelines sam2seg adds its processing time to the latency: the longest of the last
 * 16 frames it segmented, and before the first frame the time of a warm-up run (a blank
 * model-sized frame and one click) done when the element starts. When frames start taking
 * over 1.25 times the latency last reported, sam2seg posts one latency message so the
 * pipeline asks again.
 *
 * ## Model
 *
 * #GstSam2Seg:model, #GstSam2Seg:backend and #GstSam2Seg:precision are read when the element
 * starts (READY to PAUSED) and cannot change while it runs (set them in NULL or READY; a change
 * while running is refused with a warning). Loading errors are reported as
 * %GST_RESOURCE_ERROR_NOT_FOUND or %GST_RESOURCE_ERROR_SETTINGS with the loader's message,
 * which says what to do (e.g. which command downloads the checkpoint).
 *
 * Input is RGB, RGBA, RGBx, BGR, BGRA or BGRx in system memory, 1 to 16384 pixels wide and
 * high, any rate; put videoconvert before sam2seg for anything else. Frames are read whole:
 * sam2seg does not offer upstream the crop meta (an upstream videocrop then crops the pixels
 * itself).
 *
 * ## Calibrate, then segment, in one pipeline
 *
 * With #GstSam2Seg:calibrator (an element, for applications) or #GstSam2Seg:calibrator-name
 * (its name, for gst-launch-1.0, whose parser cannot refer to another element in an object
 * property), sam2seg follows a sam2calib of the same pipeline: it segments with its own
 * (float) model until sam2calib's #GstSam2Calib::quantized signal, then loads the quantized
 * file in that signal's thread (sam2calib's worker, not the streaming thread) and swaps it in
 * before the next frame, which is segmented at once; the stream is not interrupted and
 * every buffer keeps its meta. sam2seg then posts an element message
 * "sam2seg-model-switched" with path (string). If the file cannot be loaded, a warning says
 * why and the float model stays. The name is looked up in the whole pipeline when sam2seg
 * starts; an unknown name, or an element without a "quantized" signal, fails the start.
 * Calibrate the same model sam2seg runs (sam2calib's model); #GstSam2Seg:precision must stay
 * auto (any other value fails the start): the switch changes it from FP32 to W4A8.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 filesrc location=video.mp4 ! decodebin ! videoconvert ! \
 *     sam2seg model=tiny points="320,240" ! sam2overlay ! videoconvert ! autovideosink
 * ]| Segments the object under pixel (320, 240) in every frame and shows it.
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! video/x-raw,format=RGB ! \
 *     sam2seg model=tiny boxes="100,80,300,260" interval=5 ! sam2json location=masks.jsonl ! \
 *     fakesink
 * ]| Segments the object in a box every fifth camera frame and writes the masks as JSON lines.
 * |[
 * gst-launch-1.0 filesrc location=shapes.webm ! decodebin ! videoconvert ! \
 *     video/x-raw,format=RGB ! tee name=t \
 *     t. ! queue ! sam2calib name=cal model=models/sam2-shapes num-frames=8 output=/tmp/q \
 *     t. ! queue ! sam2seg model=models/sam2-shapes calibrator-name=cal points="128,128" ! \
 *     sam2overlay ! videoconvert ! autovideosink
 * ]| Segments with the float model from the first frame and with the W4A8 model sam2calib
 * makes from the first 8 frames as soon as it is written.
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2seg.h"
#include "gstsam2meta.h"
#include "gstsam2prompts.h"
#include "gstsam2util.h"

#include <gst/video/video.h>
#include <string.h>

#include "sam2.h"

GST_DEBUG_CATEGORY_STATIC (gst_sam2_seg_debug);
#define GST_CAT_DEFAULT gst_sam2_seg_debug

#define DEFAULT_MODEL "tiny"
#define DEFAULT_BACKEND GST_SAM2_SEG_BACKEND_AUTO
#define DEFAULT_PRECISION GST_SAM2_SEG_PRECISION_AUTO
#define DEFAULT_POINTS ""
#define DEFAULT_BOXES ""
#define DEFAULT_ROI_TYPES ""
#define DEFAULT_MULTIMASK FALSE
#define DEFAULT_MASK_THRESHOLD 0.0f
#define DEFAULT_MAX_OBJECTS 16
#define MAX_MAX_OBJECTS 256
#define DEFAULT_INTERVAL 1
#define MAX_INTERVAL 10000

/* ROI prompts keep the id of the previous frame's object whose box overlaps theirs this much:
 * low enough for a detector's jitter and motion between segmented frames, high enough that
 * neighbours do not swap. */
#define ROI_MATCH_MIN_IOU 0.3f
/* Frames whose processing time the latency estimate looks at. */
#define LATENCY_WINDOW 16
/* Post a latency message when the estimate exceeds the reported latency by this factor. */
#define LATENCY_REPOST_FACTOR 1.25

#define ROI_TYPE_OBJECT "sam2-object"

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_BACKEND,
  PROP_PRECISION,
  PROP_POINTS,
  PROP_BOXES,
  PROP_ROI_TYPES,
  PROP_MULTIMASK,
  PROP_MASK_THRESHOLD,
  PROP_MAX_OBJECTS,
  PROP_INTERVAL,
  PROP_STATS,
  PROP_CALIBRATOR,
  PROP_CALIBRATOR_NAME,
};

enum
{
  SIGNAL_SET_PROMPTS,
  SIGNAL_CLEAR_PROMPTS,
  LAST_SIGNAL
};

static guint gst_sam2_seg_signals[LAST_SIGNAL];

typedef struct
{
  GstSam2Object obj;            /* holds a reference to obj.mask */
  gint parent_roi;              /* id of the upstream ROI it came from, -1 for explicit prompts */
} SegObject;

/* An ROI prompt of the current frame, or of the previous segmented frame (a track). */
typedef struct
{
  guint id;
  gint roi_id;
  GQuark roi_type;
  gfloat box[4];
} RoiPrompt;

struct _GstSam2Seg
{
  GstBaseTransform parent;

  /* properties; under the object lock */
  gchar *model_ref;
  GstSam2SegBackend backend;
  GstSam2SegPrecision precision;
  gchar *points, *boxes;
  gchar *roi_types_str;
  GArray *roi_types;            /* GQuark */
  gboolean multimask;
  gfloat mask_threshold;
  guint max_objects;
  guint interval;

  /* Serialises the writers of points and boxes (the two properties, set-prompts, clear-prompts,
   * the sam2-prompts event, a frame size change, start): a property writes one string and puts
   * the other back, so without it two writers in turn could put back a stale one (and a size
   * change between them scaled the stale one twice). Taken before the object lock, and never
   * held while a message is posted or a property notified (a handler may set prompts). */
  GMutex prompts_lock;
  /* prompts set since the last frame; under the object lock */
  GstSam2Prompts *pending;
  gboolean prompts_changed;
  gboolean started;
  gboolean starting;            /* start() is loading the model: settings are taken */
  gint frame_width, frame_height;       /* 0 before caps */
  /* prompts given at run time before the first caps, not checked against a frame yet: where
   * they came from (NULL: none), and the strings the element started with, which stay if
   * they do not fit */
  const gchar *unchecked_origin;
  gchar *start_points, *start_boxes;

  /* QoS: the running time before which frames are late; under the object lock */
  GstClockTime earliest_time;

  /* latency and statistics; under the object lock */
  GstClockTime times[LATENCY_WINDOW];
  guint n_times, times_pos;
  GstClockTime warmup_time;
  GstClockTime reported_latency;
  gboolean latency_posted;
  guint64 frames, inferences, skipped_interval, skipped_qos;
  GstClockTime last_time;

  /* streaming state: the streaming thread, or start/stop while it does not run */
  Sam2Model *model;
  Sam2Session *session;
  Sam2SessionOptions session_options;  /* backend, precision: set at start from the properties */
  GstVideoInfo info;
  Sam2PixelFormat format;
  GstSam2Prompts *prompts;      /* the active explicit prompts */
  guint id_base;                /* id of explicit object 0 */
  guint next_id;
  gboolean warned_max_objects;
  GArray *last;                 /* SegObject: the result reused on skipped frames */
  gboolean have_last;
  gint last_width, last_height;
  guint frames_since_inference;
  GArray *tracks;               /* RoiPrompt of the previous segmented frame */
  /* scratch, reused from frame to frame */
  GArray *frame_prompts;        /* Sam2Prompt */
  GArray *frame_rois;           /* RoiPrompt */
  GArray *frame_types;          /* GQuark: copy of roi_types */

  /* calibrate-then-segment; under the object lock */
  GstElement *calibrator;       /* property */
  gchar *calibrator_name;       /* property */
  GstElement *followed;         /* the calibrator whose signal is connected, start to stop */
  gulong quantized_id;
  guint run;                    /* counts starts: a handler of an earlier run stores nothing */
  Sam2Model *next_model;        /* loaded from the calibrator's file, swapped in at a frame */
  Sam2Session *next_session;
  gchar *next_path;
};

#define gst_sam2_seg_parent_class parent_class
G_DEFINE_TYPE (GstSam2Seg, gst_sam2_seg, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (sam2seg, "sam2seg", GST_RANK_NONE, GST_TYPE_SAM2_SEG);

#define SAM2_SEG_FORMATS "{ " GST_SAM2_RGB_FORMATS " }"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_SAM2_VIDEO_CAPS_MAKE (SAM2_SEG_FORMATS)));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_SAM2_VIDEO_CAPS_MAKE (SAM2_SEG_FORMATS)));

GType
gst_sam2_seg_backend_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_SAM2_SEG_BACKEND_AUTO,
        "CUDA when this build has it and a GPU is present, else the CPU", "auto"},
    {GST_SAM2_SEG_BACKEND_CPU,
        "CPU (FP32; BF16 where the CPU has it; W4A8 for quantized files)", "cpu"},
    {GST_SAM2_SEG_BACKEND_CUDA,
          "CUDA GPU (fails at start when this build has no CUDA backend or no GPU is found)",
        "cuda"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstSam2SegBackend", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_sam2_seg_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_SAM2_SEG_PRECISION_AUTO,
          "What the model file holds: FP32 for float checkpoints, W4A8 for quantized files "
          "(their float layers and attention FP16 on CUDA, FP32 on the CPU)", "auto"},
    {GST_SAM2_SEG_PRECISION_FP32,
          "FP32 (a quantized file: its W4A8 layers stay W4A8, the rest FP32)", "fp32"},
    {GST_SAM2_SEG_PRECISION_FP16,
          "FP16 GEMM and attention operands, FP32 accumulation (the CUDA backend only; a "
          "quantized file: its W4A8 layers stay W4A8)", "fp16"},
    {GST_SAM2_SEG_PRECISION_W4A8,
        "W4A8 (needs a quantized model file: fails at start otherwise)", "w4a8"},
    {GST_SAM2_SEG_PRECISION_BF16,
          "BF16 GEMM and attention operands, FP32 accumulation: float's range, 8x FP16's "
          "rounding error (CUDA, and CPUs with AVX-512 BF16, where it is about twice as fast "
          "as FP32; fails at start on other CPUs; a quantized file: its W4A8 layers stay W4A8)",
          "bf16"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstSam2SegPrecision", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* ---- prompts ------------------------------------------------------------------------------ */

/* Which strings a prompt update gives; the other stays as it is. */
typedef enum
{
  PROMPTS_BOTH,
  PROMPTS_POINTS,
  PROMPTS_BOXES,
} PromptsGiven;

/* Makes (points, boxes) the prompts from the next frame on; with PROMPTS_POINTS (BOXES) only
 * the points (boxes) are given, and the current boxes (points) stay. Before start the strings
 * are only stored (start() parses them and fails with an error); once started they are checked
 * first and refused with a warning when wrong. Returns whether they were taken. */
static gboolean
gst_sam2_seg_update_prompts (GstSam2Seg * self, PromptsGiven given, const gchar * points,
    const gchar * boxes, const gchar * origin, gboolean notify)
{
  GError *error = NULL;
  GstSam2Prompts *parsed;
  gboolean started, points_changed, boxes_changed;
  gchar *kept = NULL;
  gint w, h;

  g_mutex_lock (&self->prompts_lock);
  if (given != PROMPTS_BOTH) {
    GST_OBJECT_LOCK (self);
    kept = g_strdup (given == PROMPTS_POINTS ? self->boxes : self->points);
    GST_OBJECT_UNLOCK (self);
    if (given == PROMPTS_POINTS)
      boxes = kept;
    else
      points = kept;
  }
  parsed = gst_sam2_prompts_parse (points, boxes, &error);

  GST_OBJECT_LOCK (self);
  started = self->started;
  w = self->frame_width;
  h = self->frame_height;
  if (parsed != NULL && w > 0 && !gst_sam2_prompts_check_frame (parsed, w, h, &error))
    g_clear_pointer (&parsed, gst_sam2_prompts_free);
  if (parsed == NULL && started) {
    GST_OBJECT_UNLOCK (self);
    g_mutex_unlock (&self->prompts_lock);
    g_free (kept);
    GST_WARNING_OBJECT (self, "refusing the prompts from %s: %s", origin, error->message);
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Ignoring the new prompts from %s, the previous prompts stay: %s", origin,
            error->message), (NULL));
    g_clear_error (&error);
    return FALSE;
  }
  points_changed = g_strcmp0 (self->points, points ? points : "") != 0;
  boxes_changed = g_strcmp0 (self->boxes, boxes ? boxes : "") != 0;
  if (started && w == 0) {
    /* no frame yet to check them against: the first caps will */
    if (self->unchecked_origin == NULL) {
      self->start_points = g_strdup (self->points);
      self->start_boxes = g_strdup (self->boxes);
    }
    self->unchecked_origin = origin;
  }
  g_free (self->points);
  g_free (self->boxes);
  self->points = g_strdup (points ? points : "");
  self->boxes = g_strdup (boxes ? boxes : "");
  if (started) {
    gst_sam2_prompts_free (self->pending);
    self->pending = parsed;
    self->prompts_changed = TRUE;
    parsed = NULL;
  }
  GST_OBJECT_UNLOCK (self);
  g_mutex_unlock (&self->prompts_lock);

  GST_DEBUG_OBJECT (self, "prompts from %s: points \"%s\", boxes \"%s\"%s", origin,
      points ? points : "", boxes ? boxes : "", started ? "" : " (checked at start)");
  g_free (kept);
  gst_sam2_prompts_free (parsed);
  g_clear_error (&error);
  /* set_property notifies by itself; the signal and the event change the properties too */
  if (notify && points_changed)
    g_object_notify (G_OBJECT (self), "points");
  if (notify && boxes_changed)
    g_object_notify (G_OBJECT (self), "boxes");
  return TRUE;
}

static gboolean
gst_sam2_seg_set_prompts (GstSam2Seg * self, const gchar * points, const gchar * boxes)
{
  gboolean started;
  GError *error = NULL;
  GstSam2Prompts *p;

  GST_OBJECT_LOCK (self);
  started = self->started;
  GST_OBJECT_UNLOCK (self);
  /* before start the signal still tells the caller whether the strings are right */
  if (!started) {
    p = gst_sam2_prompts_parse (points, boxes, &error);
    if (p == NULL) {
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("Ignoring the new prompts from the set-prompts signal, the previous prompts stay: "
              "%s", error->message), (NULL));
      g_clear_error (&error);
      return FALSE;
    }
    gst_sam2_prompts_free (p);
  }
  return gst_sam2_seg_update_prompts (self, PROMPTS_BOTH, points, boxes,
      "the set-prompts signal", TRUE);
}

static void
gst_sam2_seg_clear_prompts (GstSam2Seg * self)
{
  gst_sam2_seg_update_prompts (self, PROMPTS_BOTH, NULL, NULL, "the clear-prompts signal",
      TRUE);
}

static void
gst_sam2_seg_set_roi_types (GstSam2Seg * self, const gchar * types)
{
  gchar **names = g_strsplit (types ? types : "", ",", -1);

  GST_OBJECT_LOCK (self);
  g_free (self->roi_types_str);
  self->roi_types_str = g_strdup (types ? types : "");
  g_array_set_size (self->roi_types, 0);
  for (gchar ** n = names; *n != NULL; n++) {
    g_strstrip (*n);
    if (**n != '\0') {
      GQuark q = g_quark_from_string (*n);
      g_array_append_val (self->roi_types, q);
    }
  }
  GST_OBJECT_UNLOCK (self);
  g_strfreev (names);
}

/* ---- results ------------------------------------------------------------------------------ */

static void
clear_seg_object (gpointer data)
{
  SegObject *o = data;
  gst_clear_buffer (&o->obj.mask);
}

static gfloat
box_iou (const gfloat a[4], const gfloat b[4])
{
  gfloat ix = MIN (a[2], b[2]) - MAX (a[0], b[0]);
  gfloat iy = MIN (a[3], b[3]) - MAX (a[1], b[1]);
  gfloat inter, uni;

  if (ix <= 0 || iy <= 0)
    return 0.0f;
  inter = ix * iy;
  uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0 ? inter / uni : 0.0f;
}

/* Gives the current ROI prompts the ids of the previous frame's ROI objects, best overlaps
 * first (greedy: a few dozen boxes at most), and new ids to the rest. */
static void
gst_sam2_seg_match_rois (GstSam2Seg * self)
{
  GArray *cur = self->frame_rois, *prev = self->tracks;
  gboolean *cur_done = g_newa (gboolean, cur->len + 1);
  gboolean *prev_done = g_newa (gboolean, prev->len + 1);

  memset (cur_done, 0, sizeof (gboolean) * (cur->len + 1));
  memset (prev_done, 0, sizeof (gboolean) * (prev->len + 1));
  for (;;) {
    gfloat best = ROI_MATCH_MIN_IOU;
    gint bi = -1, bj = -1;
    for (guint i = 0; i < cur->len; i++) {
      const RoiPrompt *c = &g_array_index (cur, RoiPrompt, i);
      if (cur_done[i])
        continue;
      for (guint j = 0; j < prev->len; j++) {
        const RoiPrompt *p = &g_array_index (prev, RoiPrompt, j);
        gfloat iou;
        if (prev_done[j] || p->roi_type != c->roi_type)
          continue;
        iou = box_iou (c->box, p->box);
        if (iou >= best) {
          best = iou;
          bi = (gint) i;
          bj = (gint) j;
        }
      }
    }
    if (bi < 0)
      break;
    g_array_index (cur, RoiPrompt, bi).id = g_array_index (prev, RoiPrompt, bj).id;
    cur_done[bi] = prev_done[bj] = TRUE;
    GST_LOG_OBJECT (self, "ROI %d keeps object id %u (box IoU %.2f)",
        g_array_index (cur, RoiPrompt, bi).roi_id, g_array_index (cur, RoiPrompt, bi).id,
        best);
  }
  for (guint i = 0; i < cur->len; i++) {
    if (!cur_done[i]) {
      g_array_index (cur, RoiPrompt, i).id = self->next_id++;
      GST_LOG_OBJECT (self, "ROI %d is new object %u", g_array_index (cur, RoiPrompt,
              i).roi_id, g_array_index (cur, RoiPrompt, i).id);
    }
  }
  g_array_set_size (prev, 0);
  g_array_append_vals (prev, cur->data, cur->len);
}

/* The boxes of upstream ROI metas of the listed types, clamped to the frame, at most `budget`. */
static void
gst_sam2_seg_collect_rois (GstSam2Seg * self, GstBuffer * buf, guint budget)
{
  const gint W = GST_VIDEO_INFO_WIDTH (&self->info), H = GST_VIDEO_INFO_HEIGHT (&self->info);
  gpointer state = NULL;
  GstMeta *meta;
  guint ignored = 0;

  g_array_set_size (self->frame_rois, 0);
  if (self->frame_types->len == 0)
    return;
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) != NULL) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    gboolean wanted = FALSE;
    RoiPrompt rp;

    for (guint t = 0; t < self->frame_types->len && !wanted; t++)
      wanted = g_array_index (self->frame_types, GQuark, t) == roi->roi_type;
    if (!wanted)
      continue;
    if (roi->w == 0 || roi->h == 0 || roi->x >= (guint) W || roi->y >= (guint) H) {
      GST_LOG_OBJECT (self, "ignoring empty or off-frame ROI %d", roi->id);
      continue;
    }
    if (self->frame_rois->len >= budget) {
      ignored++;
      continue;
    }
    rp.id = 0;
    rp.roi_id = roi->id;
    rp.roi_type = roi->roi_type;
    rp.box[0] = (gfloat) roi->x;
    rp.box[1] = (gfloat) roi->y;
    rp.box[2] = (gfloat) MIN ((guint64) roi->x + roi->w, (guint64) W);
    rp.box[3] = (gfloat) MIN ((guint64) roi->y + roi->h, (guint64) H);
    g_array_append_val (self->frame_rois, rp);
  }
  if (ignored > 0)
    GST_DEBUG_OBJECT (self, "max-objects reached: ignoring %u ROI prompts", ignored);
}

/* The objects in self->last are the result for a W x H frame, for this and later frames. */
static void
gst_sam2_seg_result_complete (GstSam2Seg * self, gint W, gint H)
{
  self->have_last = TRUE;
  self->last_width = W;
  self->last_height = H;
}

/* Runs the model on `buf` with the explicit and ROI prompts and makes the result the last one. */
static GstFlowReturn
gst_sam2_seg_infer (GstSam2Seg * self, GstBuffer * buf, guint max_objects, gboolean multimask,
    gfloat threshold)
{
  const gint W = GST_VIDEO_INFO_WIDTH (&self->info), H = GST_VIDEO_INFO_HEIGHT (&self->info);
  Sam2PredictOptions options = SAM2_PREDICT_OPTIONS_INIT;
  const Sam2Result *r;
  GstVideoFrame frame;
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  guint n_explicit = self->prompts ? (guint) self->prompts->n_objects : 0;
  guint n;

  if (n_explicit > max_objects) {
    if (!self->warned_max_objects)
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("%u objects are prompted but max-objects is %u: segmenting the first %u",
              n_explicit, max_objects, max_objects), (NULL));
    self->warned_max_objects = TRUE;
    n_explicit = max_objects;
  }
  gst_sam2_seg_collect_rois (self, buf, max_objects - n_explicit);
  gst_sam2_seg_match_rois (self);

  g_array_set_size (self->frame_prompts, 0);
  if (n_explicit > 0)
    g_array_append_vals (self->frame_prompts, self->prompts->prompts, n_explicit);
  for (guint i = 0; i < self->frame_rois->len; i++) {
    const RoiPrompt *rp = &g_array_index (self->frame_rois, RoiPrompt, i);
    Sam2Prompt p = { 0 };
    p.has_box = TRUE;
    memcpy (p.box, rp->box, sizeof p.box);
    g_array_append_val (self->frame_prompts, p);
  }
  n = self->frame_prompts->len;

  /* the last result is this frame's once it is complete: a failure below leaves none, so a
   * later frame (after the application recovers with a flushing seek) runs the model again
   * instead of reusing a half-made result for `interval` frames */
  g_array_set_size (self->last, 0);
  self->have_last = FALSE;
  if (n == 0) {
    GST_LOG_OBJECT (self, "no prompts: nothing to segment");
    gst_sam2_seg_result_complete (self, W, H);
    return GST_FLOW_OK;
  }

  /* one session for every frame size: libsam2 rebuilds its resizer and grows its mask and box
   * buffers when the size changes (caps changes) */

  if (!gst_video_frame_map (&frame, &self->info, buf, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map the video frame for reading."),
        (NULL));
    return GST_FLOW_ERROR;
  }
  if (!sam2_session_set_image (self->session, GST_VIDEO_FRAME_PLANE_DATA (&frame, 0), W, H,
          GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0), self->format, &error)) {
    gst_video_frame_unmap (&frame);
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("The SAM2 image encoder failed: %s",
            error->message), (NULL));
    g_clear_error (&error);
    return GST_FLOW_ERROR;
  }
  gst_video_frame_unmap (&frame);

  /* with multimask, the candidate the model rates best, as SAM's predictors do: chosen before
   * the masks are upsampled to the frame (the other two cost memory and time for nothing) */
  options.multimask = multimask;
  options.best_only = TRUE;
  options.mask_threshold = threshold;
  options.frame_masks = TRUE;
  r = sam2_session_predict (self->session, (const Sam2Prompt *) self->frame_prompts->data,
      (gint) n, &options, &error);
  if (r == NULL) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("The SAM2 mask decoder failed: %s",
            error->message), (NULL));
    g_clear_error (&error);
    return GST_FLOW_ERROR;
  }

  for (guint o = 0; o < n; o++) {
    SegObject so = { 0 };
    const Sam2Box *b = &r->boxes[o];                /* one mask per object (best_only) */
    const guint8 *plane = r->masks + (gsize) o * W * H;

    if (o < n_explicit) {
      so.obj.id = self->id_base + o;
      so.obj.prompt_id = (gint) o;
      so.parent_roi = -1;
    } else {
      const RoiPrompt *rp = &g_array_index (self->frame_rois, RoiPrompt, o - n_explicit);
      so.obj.id = rp->id;
      so.obj.prompt_id = rp->roi_id;
      so.parent_roi = rp->roi_id;
    }
    so.obj.iou = r->iou_scores[o];
    so.obj.object_score = r->object_scores[o];
    so.obj.box.x0 = b->x0;
    so.obj.box.y0 = b->y0;
    so.obj.box.x1 = b->x1;
    so.obj.box.y1 = b->y1;
    if (b->x1 >= b->x0 && b->y1 >= b->y0) {
      const gint bw = b->x1 - b->x0 + 1, bh = b->y1 - b->y0 + 1;
      so.obj.location.x = b->x0;
      so.obj.location.y = b->y0;
      so.obj.location.w = bw;
      so.obj.location.h = bh;
      so.obj.mask = gst_sam2_mask_buffer_new (plane + (gsize) b->y0 * W + b->x0, W, bw, bh);
      if (so.obj.mask == NULL) {
        GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Out of memory for a %dx%d mask.", bw,
                bh), (NULL));
        return GST_FLOW_ERROR;
      }
    } else {
      so.obj.box.x0 = so.obj.box.y0 = 0;
      so.obj.box.x1 = so.obj.box.y1 = -1;
    }
    g_array_append_val (self->last, so);
  }

  {
    GstClockTime elapsed = (GstClockTime) (g_get_monotonic_time () - t0) * GST_USECOND;
    GstClockTime estimate = 0;
    gboolean post;

    GST_OBJECT_LOCK (self);
    self->times[self->times_pos] = elapsed;
    self->times_pos = (self->times_pos + 1) % LATENCY_WINDOW;
    self->n_times = MIN (self->n_times + 1, LATENCY_WINDOW);
    for (guint i = 0; i < self->n_times; i++)
      estimate = MAX (estimate, self->times[i]);
    self->inferences++;
    self->last_time = elapsed;
    post = GST_CLOCK_TIME_IS_VALID (self->reported_latency) && !self->latency_posted
        && estimate > self->reported_latency * LATENCY_REPOST_FACTOR;
    if (post)
      self->latency_posted = TRUE;
    GST_OBJECT_UNLOCK (self);

    GST_LOG_OBJECT (self, "segmented %u objects in %" GST_TIME_FORMAT, n,
        GST_TIME_ARGS (elapsed));
    if (post) {
      GST_INFO_OBJECT (self, "processing takes %" GST_TIME_FORMAT ", more than the reported "
          "latency: asking the pipeline to query it again", GST_TIME_ARGS (estimate));
      gst_element_post_message (GST_ELEMENT (self),
          gst_message_new_latency (GST_OBJECT (self)));
    }
  }
  gst_sam2_seg_result_complete (self, W, H);
  return GST_FLOW_OK;
}

static gboolean
remove_object_roi (GstBuffer * buf, GstMeta ** meta, gpointer object_type)
{
  if ((*meta)->info->api == GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE
      && ((GstVideoRegionOfInterestMeta *) * meta)->roi_type == GPOINTER_TO_UINT (object_type))
    *meta = NULL;               /* gst_buffer_foreach_meta removes it */
  return TRUE;
}

/* The last result as the buffer's mask meta and object ROIs, replacing those of a sam2seg
 * upstream (readers would get the first segmenter's otherwise). */
static void
gst_sam2_seg_attach (GstSam2Seg * self, GstBuffer * buf)
{
  GstSam2MaskMeta *meta = gst_buffer_add_sam2_mask_meta (buf, self->last_width,
      self->last_height);

  gst_buffer_foreach_meta (buf, remove_object_roi,
      GUINT_TO_POINTER (g_quark_from_static_string (ROI_TYPE_OBJECT)));

  for (guint i = 0; i < self->last->len; i++) {
    const SegObject *so = &g_array_index (self->last, SegObject, i);
    GstVideoRegionOfInterestMeta *roi;

    gst_sam2_mask_meta_add_object (meta, &so->obj);
    if (so->obj.mask == NULL)
      continue;
    roi = gst_buffer_add_video_region_of_interest_meta (buf, ROI_TYPE_OBJECT,
        so->obj.location.x, so->obj.location.y, so->obj.location.w, so->obj.location.h);
    roi->id = (gint) so->obj.id;
    roi->parent_id = so->parent_roi;
    gst_video_region_of_interest_meta_add_param (roi, gst_structure_new (ROI_TYPE_OBJECT,
            "id", G_TYPE_UINT, so->obj.id, "prompt-id", G_TYPE_INT, so->obj.prompt_id,
            "iou", G_TYPE_DOUBLE, (gdouble) so->obj.iou, "object-score", G_TYPE_DOUBLE,
            (gdouble) so->obj.object_score, NULL));
  }
}

/* ---- calibrate, then segment --------------------------------------------------------------- */

static void
clear_next_model_locked (GstSam2Seg * self)
{
  g_clear_pointer (&self->next_session, sam2_session_free);
  g_clear_pointer (&self->next_model, sam2_model_unref);
  g_clear_pointer (&self->next_path, g_free);
}

/* sam2calib's "quantized" handler, in sam2calib's worker thread: the load and the session's
 * allocations happen here, so that the streaming thread only swaps two pointers. */
static void
gst_sam2_seg_on_quantized (GstElement * calibrator, const gchar * path, GstSam2Seg * self)
{
  GError *error = NULL;
  Sam2Model *model;
  Sam2Session *session = NULL;
  Sam2SessionOptions options;
  gboolean started;
  guint run;

  /* the run this signal belongs to: a stop and a new start while the file loads (the handler
   * is disconnected at stop, but one already running goes on) must not hand the new run this
   * run's model; the options are the run's too, written by start */
  GST_OBJECT_LOCK (self);
  run = self->run;
  options = self->session_options;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "%s wrote %s: loading it", GST_ELEMENT_NAME (calibrator), path);
  model = sam2_model_load (path, &error);
  if (model != NULL)
    session = sam2_session_new_full (model, &options, &error);
  if (session == NULL) {
    GST_ELEMENT_WARNING (self, RESOURCE, READ,
        ("Could not switch to the quantized model %s, segmenting on with the current one: %s",
            path, error->message), (NULL));
    g_clear_error (&error);
    if (model)
      sam2_model_unref (model);
    return;
  }
  GST_OBJECT_LOCK (self);
  started = self->started && self->run == run;
  if (started) {
    clear_next_model_locked (self);
    self->next_model = model;
    self->next_session = session;
    self->next_path = g_strdup (path);
  }
  GST_OBJECT_UNLOCK (self);
  if (!started) {
    sam2_session_free (session);
    sam2_model_unref (model);
  }
}

/* At a frame boundary, in the streaming thread: takes the model the calibrator made, if one is
 * waiting, and makes this frame run it. */
static void
gst_sam2_seg_maybe_switch_model (GstSam2Seg * self)
{
  Sam2Model *model;
  Sam2Session *session;
  gchar *path;

  GST_OBJECT_LOCK (self);
  model = self->next_model;
  session = self->next_session;
  path = self->next_path;
  self->next_model = NULL;
  self->next_session = NULL;
  self->next_path = NULL;
  GST_OBJECT_UNLOCK (self);
  if (model == NULL)
    return;

  sam2_session_free (self->session);
  sam2_model_unref (self->model);
  self->session = session;
  self->model = model;
  self->have_last = FALSE;      /* segment this frame with the new model, whatever interval */
  GST_INFO_OBJECT (self, "switched to the quantized model %s", path);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self),
          gst_structure_new ("sam2seg-model-switched", "path", G_TYPE_STRING, path, NULL)));
  g_free (path);
}

/* The element to follow: the calibrator property, else calibrator-name looked up in the
 * outermost bin. NULL without error when neither is set. */
static GstElement *
gst_sam2_seg_find_calibrator (GstSam2Seg * self, GError ** error)
{
  GstElement *calibrator = NULL;
  gchar *name;
  GstObject *top, *parent;

  GST_OBJECT_LOCK (self);
  if (self->calibrator != NULL)
    calibrator = gst_object_ref (self->calibrator);
  name = g_strdup (self->calibrator_name);
  GST_OBJECT_UNLOCK (self);

  if (calibrator == NULL && name != NULL && *name != '\0') {
    top = gst_object_ref (GST_OBJECT (self));
    while ((parent = gst_object_get_parent (top)) != NULL) {
      gst_object_unref (top);
      top = parent;
    }
    if (GST_IS_BIN (top))
      calibrator = gst_bin_get_by_name (GST_BIN (top), name);
    gst_object_unref (top);
    if (calibrator == NULL) {
      g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
          "calibrator-name=%s: there is no element of that name in the pipeline; name the "
          "sam2calib (sam2calib name=%s ...) or clear calibrator-name", name, name);
      g_free (name);
      return NULL;
    }
  }
  g_free (name);
  if (calibrator != NULL
      && g_signal_lookup ("quantized", G_OBJECT_TYPE (calibrator)) == 0) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "the calibrator %s is a %s, which has no \"quantized\" signal; use a sam2calib",
        GST_ELEMENT_NAME (calibrator), G_OBJECT_TYPE_NAME (calibrator));
    gst_object_unref (calibrator);
    return NULL;
  }
  return calibrator;
}

static GstFlowReturn
gst_sam2_seg_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);
  const gint W = GST_VIDEO_INFO_WIDTH (&self->info), H = GST_VIDEO_INFO_HEIGHT (&self->info);
  GstSam2Prompts *new_prompts = NULL;
  gboolean changed, run, qos;
  guint interval, max_objects;
  gboolean multimask;
  gfloat threshold;
  GstClockTime earliest, running_time;
  GstFlowReturn ret = GST_FLOW_OK;

  qos = gst_base_transform_is_qos_enabled (trans);
  gst_sam2_seg_maybe_switch_model (self);
  GST_OBJECT_LOCK (self);
  changed = self->prompts_changed;
  if (changed) {
    new_prompts = self->pending;
    self->pending = NULL;
    self->prompts_changed = FALSE;
  }
  interval = self->interval;
  max_objects = self->max_objects;
  multimask = self->multimask;
  threshold = self->mask_threshold;
  earliest = self->earliest_time;
  g_array_set_size (self->frame_types, 0);
  g_array_append_vals (self->frame_types, self->roi_types->data, self->roi_types->len);
  self->frames++;
  GST_OBJECT_UNLOCK (self);

  if (changed) {
    gst_sam2_prompts_free (self->prompts);
    self->prompts = new_prompts;
    self->id_base = self->next_id;
    self->next_id += self->prompts ? (guint) self->prompts->n_objects : 0;
    self->warned_max_objects = FALSE;
    GST_DEBUG_OBJECT (self, "new prompts: %d objects, ids from %u",
        self->prompts ? self->prompts->n_objects : 0, self->id_base);
  }

  running_time = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME,
      GST_BUFFER_PTS (buf));
  run = TRUE;
  if (changed) {
    GST_LOG_OBJECT (self, "new prompts: segmenting this frame");
  } else if (!self->have_last || self->last_width != W || self->last_height != H) {
    GST_LOG_OBJECT (self, "no result for this frame size yet: segmenting this frame");
  } else if (self->frames_since_inference + 1 < interval) {
    run = FALSE;
    GST_DEBUG_OBJECT (self, "skipping frame %" GST_TIME_FORMAT ": interval %u, %u frames "
        "since the model last ran; reusing its result", GST_TIME_ARGS (GST_BUFFER_PTS (buf)),
        interval, self->frames_since_inference + 1);
    GST_OBJECT_LOCK (self);
    self->skipped_interval++;
    GST_OBJECT_UNLOCK (self);
  } else if (qos && GST_CLOCK_TIME_IS_VALID (earliest)
      && GST_CLOCK_TIME_IS_VALID (running_time) && running_time <= earliest) {
    run = FALSE;
    GST_DEBUG_OBJECT (self, "skipping frame %" GST_TIME_FORMAT ": late (QoS: running time %"
        GST_TIME_FORMAT " <= earliest %" GST_TIME_FORMAT "); reusing the last result",
        GST_TIME_ARGS (GST_BUFFER_PTS (buf)), GST_TIME_ARGS (running_time),
        GST_TIME_ARGS (earliest));
    GST_OBJECT_LOCK (self);
    self->skipped_qos++;
    GST_OBJECT_UNLOCK (self);
  }

  if (run) {
    ret = gst_sam2_seg_infer (self, buf, max_objects, multimask, threshold);
    if (ret != GST_FLOW_OK)
      return ret;
    self->frames_since_inference = 0;
  } else {
    self->frames_since_inference++;
  }
  gst_sam2_seg_attach (self, buf);
  return ret;
}

/* ---- negotiation, events, queries ---------------------------------------------------------- */

/* Frames are read from the start of the plane at the caps' size: no crop meta (gstsam2util.h). */
static gboolean
gst_sam2_seg_propose_allocation (GstBaseTransform * trans, GstQuery * decide_query,
    GstQuery * query)
{
  return gst_sam2_propose_allocation_without_crop (GST_BASE_TRANSFORM_CLASS (parent_class),
      trans, decide_query, query);
}

static gboolean
gst_sam2_seg_set_caps (GstBaseTransform * trans, GstCaps * incaps, GstCaps * outcaps)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);
  GstVideoInfo info;
  GError *error = NULL, *refused = NULL;
  const gchar *refused_origin = NULL;
  gboolean ok, points_changed = FALSE, boxes_changed = FALSE;
  gint W, H, old_w, old_h;

  if (!gst_video_info_from_caps (&info, incaps)) {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  if (!gst_sam2_pixel_format_from_video (GST_VIDEO_INFO_FORMAT (&info), &self->format)) {
    GST_ERROR_OBJECT (self, "unsupported format in %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }

  W = GST_VIDEO_INFO_WIDTH (&info);
  H = GST_VIDEO_INFO_HEIGHT (&info);
  g_mutex_lock (&self->prompts_lock);
  GST_OBJECT_LOCK (self);
  old_w = self->frame_width;
  old_h = self->frame_height;
  if (old_w == 0 && self->unchecked_origin != NULL
      && !gst_sam2_prompts_check_frame (self->pending, W, H, &refused)) {
    /* prompts given at run time before the first caps are refused as at any other time:
     * with a warning, and the prompts the element started with stay (checked below) */
    refused_origin = self->unchecked_origin;
    gst_sam2_prompts_free (self->pending);
    self->pending = gst_sam2_prompts_parse (self->start_points, self->start_boxes, NULL);
    g_free (self->points);
    g_free (self->boxes);
    self->points = g_steal_pointer (&self->start_points);
    self->boxes = g_steal_pointer (&self->start_boxes);
    points_changed = boxes_changed = TRUE;
  }
  self->unchecked_origin = NULL;
  g_clear_pointer (&self->start_points, g_free);
  g_clear_pointer (&self->start_boxes, g_free);
  if (old_w != 0 && (old_w != W || old_h != H)) {
    /* a renegotiated size (a camera, an adaptive stream): the prompts are frame pixels, so
     * they move to the same places in the new frame, and the properties say so */
    gchar *points, *boxes;
    gst_sam2_prompts_scale (self->pending, old_w, old_h, W, H);
    gst_sam2_prompts_scale (self->prompts, old_w, old_h, W, H);
    gst_sam2_prompts_to_strings (self->prompts_changed ? self->pending : self->prompts,
        &points, &boxes);
    points_changed = g_strcmp0 (points, self->points) != 0;
    boxes_changed = g_strcmp0 (boxes, self->boxes) != 0;
    g_free (self->points);
    g_free (self->boxes);
    self->points = points;
    self->boxes = boxes;
    GST_INFO_OBJECT (self, "frame size %dx%d -> %dx%d: prompts scaled to points \"%s\", "
        "boxes \"%s\"", old_w, old_h, W, H, points, boxes);
  }
  ok = gst_sam2_prompts_check_frame (self->prompts_changed ? self->pending : self->prompts,
      W, H, &error);
  if (ok) {
    self->frame_width = W;
    self->frame_height = H;
  }
  GST_OBJECT_UNLOCK (self);
  g_mutex_unlock (&self->prompts_lock);
  if (refused_origin != NULL) {
    GST_WARNING_OBJECT (self, "refusing the prompts from %s: %s", refused_origin,
        refused->message);
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Ignoring the new prompts from %s, the prompts sam2seg started with stay: %s",
            refused_origin, refused->message), (NULL));
    g_clear_error (&refused);
  }
  if (points_changed)
    g_object_notify (G_OBJECT (self), "points");
  if (boxes_changed)
    g_object_notify (G_OBJECT (self), "boxes");
  if (!ok) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("The prompts do not fit the %dx%d video: %s",
            GST_VIDEO_INFO_WIDTH (&info), GST_VIDEO_INFO_HEIGHT (&info), error->message),
        (NULL));
    g_clear_error (&error);
    return FALSE;
  }
  if (GST_VIDEO_INFO_WIDTH (&info) != GST_VIDEO_INFO_WIDTH (&self->info)
      || GST_VIDEO_INFO_HEIGHT (&info) != GST_VIDEO_INFO_HEIGHT (&self->info))
    g_array_set_size (self->tracks, 0);
  self->info = info;
  GST_DEBUG_OBJECT (self, "%dx%d %s", GST_VIDEO_INFO_WIDTH (&info),
      GST_VIDEO_INFO_HEIGHT (&info), GST_VIDEO_INFO_NAME (&info));
  return TRUE;
}

/* After a flushing seek or at a new stream the frames are not those the last result answers:
 * it is not reused (the next frame runs the model, whatever the interval), the ROI tracks
 * start over, and earlier QoS deadlines no longer apply. Object ids keep counting: an id
 * never names two objects. */
static void
gst_sam2_seg_reset_stream (GstSam2Seg * self, const gchar * why)
{
  GST_DEBUG_OBJECT (self, "%s: forgetting the last result and the ROI tracks", why);
  g_array_set_size (self->last, 0);
  self->have_last = FALSE;
  self->frames_since_inference = 0;
  g_array_set_size (self->tracks, 0);
  GST_OBJECT_LOCK (self);
  self->earliest_time = GST_CLOCK_TIME_NONE;
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_sam2_seg_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_OOB:{
      const GstStructure *s = gst_event_get_structure (event);
      if (s != NULL && gst_structure_has_name (s, "sam2-prompts")) {
        /* a field of another type is refused like a bad string: read as absent, it cleared
         * every prompt */
        if ((gst_structure_has_field (s, "points")
                && !gst_structure_has_field_typed (s, "points", G_TYPE_STRING))
            || (gst_structure_has_field (s, "boxes")
                && !gst_structure_has_field_typed (s, "boxes", G_TYPE_STRING)))
          GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
              ("Ignoring the new prompts from a sam2-prompts event, the previous prompts stay: "
                  "its points and boxes fields must be strings"), ("%" GST_PTR_FORMAT, s));
        else
          gst_sam2_seg_update_prompts (self, PROMPTS_BOTH,
              gst_structure_get_string (s, "points"), gst_structure_get_string (s, "boxes"),
              "a sam2-prompts event", TRUE);
        gst_event_unref (event);
        return TRUE;
      }
      break;
    }
    case GST_EVENT_FLUSH_STOP:
    case GST_EVENT_STREAM_START:
      /* serialized: the streaming thread is not in transform_ip */
      gst_sam2_seg_reset_stream (self, GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP ?
          "flush" : "new stream");
      break;
    default:
      break;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static gboolean
gst_sam2_seg_src_event (GstBaseTransform * trans, GstEvent * event)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);

  if (GST_EVENT_TYPE (event) == GST_EVENT_QOS) {
    GstQOSType type;
    gdouble proportion;
    GstClockTimeDiff diff;
    GstClockTime timestamp;

    gst_event_parse_qos (event, &type, &proportion, &diff, &timestamp);
    GST_OBJECT_LOCK (self);
    if (GST_CLOCK_TIME_IS_VALID (timestamp)) {
      /* as GstBaseTransform does: frames up to timestamp + jitter would be late as well */
      if (diff >= 0 || (GstClockTime) (-diff) <= timestamp)
        self->earliest_time = timestamp + diff;
      else
        self->earliest_time = 0;
    }
    GST_OBJECT_UNLOCK (self);
    GST_LOG_OBJECT (self, "QoS: proportion %.3f, jitter %" G_GINT64_FORMAT " ns at %"
        GST_TIME_FORMAT, proportion, diff, GST_TIME_ARGS (timestamp));
    /* Forwarded without GstBaseTransform's handler on purpose: that one would make the base
     * class drop late buffers, where sam2seg keeps them and reuses its last result. */
    return gst_pad_push_event (GST_BASE_TRANSFORM_SINK_PAD (trans), event);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->src_event (trans, event);
}

static GstClockTime
gst_sam2_seg_latency_estimate (GstSam2Seg * self)
{
  GstClockTime estimate = 0;

  if (self->n_times == 0)
    return self->warmup_time;
  for (guint i = 0; i < self->n_times; i++)
    estimate = MAX (estimate, self->times[i]);
  return estimate;
}

static gboolean
gst_sam2_seg_query (GstBaseTransform * trans, GstPadDirection direction, GstQuery * query)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);

  if (direction == GST_PAD_SRC && GST_QUERY_TYPE (query) == GST_QUERY_LATENCY) {
    gboolean live;
    GstClockTime min, max, ours;

    if (!gst_pad_peer_query (GST_BASE_TRANSFORM_SINK_PAD (trans), query))
      return FALSE;
    gst_query_parse_latency (query, &live, &min, &max);
    GST_OBJECT_LOCK (self);
    ours = gst_sam2_seg_latency_estimate (self);
    if (live) {
      self->reported_latency = ours;
      self->latency_posted = FALSE;
    }
    GST_OBJECT_UNLOCK (self);
    if (live) {
      min += ours;
      if (GST_CLOCK_TIME_IS_VALID (max))
        max += ours;
      gst_query_set_latency (query, live, min, max);
    }
    GST_DEBUG_OBJECT (self, "latency: live %d, ours %" GST_TIME_FORMAT ", total min %"
        GST_TIME_FORMAT " max %" GST_TIME_FORMAT, live, GST_TIME_ARGS (ours),
        GST_TIME_ARGS (min), GST_TIME_ARGS (max));
    return TRUE;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction, query);
}

/* ---- start / stop ------------------------------------------------------------------------ */

/* One inference on a blank model-sized frame: it pays the first-run costs (thread pools, page
 * faults in the weights) before the first real frame and gives the latency estimate before
 * that frame. It uses a session of its own, as a session serves one frame size. */
static gboolean
gst_sam2_seg_warm_up (GstSam2Seg * self, GError ** error)
{
  const gint S = sam2_model_get_image_size (self->model);
  Sam2Session *session = sam2_session_new_full (self->model, &self->session_options, error);
  guint8 *pixels;
  Sam2Point click = { S / 2.0f, S / 2.0f, SAM2_LABEL_POSITIVE };
  Sam2Prompt prompt = { 0 };
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok;

  if (session == NULL)
    return FALSE;
  pixels = g_malloc ((gsize) S * S * 3);
  memset (pixels, 128, (gsize) S * S * 3);
  prompt.points = &click;
  prompt.n_points = 1;
  ok = sam2_session_set_image (session, pixels, S, S, S * 3, SAM2_PIXEL_FORMAT_RGB, error)
      && sam2_session_predict (session, &prompt, 1, NULL, error) != NULL;
  g_free (pixels);
  sam2_session_free (session);
  if (ok) {
    GST_OBJECT_LOCK (self);
    self->warmup_time = (GstClockTime) (g_get_monotonic_time () - t0) * GST_USECOND;
    GST_OBJECT_UNLOCK (self);
    GST_INFO_OBJECT (self, "warm-up run on a %dx%d frame: %" GST_TIME_FORMAT, S, S,
        GST_TIME_ARGS (self->warmup_time));
  }
  return ok;
}

static gboolean
gst_sam2_seg_start (GstBaseTransform * trans)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);
  GstElement *calibrator;
  gchar *model_ref, *points, *boxes;
  GstSam2SegBackend backend;
  GstSam2SegPrecision precision;
  GstSam2Prompts *prompts;
  Sam2SessionOptions options = SAM2_SESSION_OPTIONS_INIT;
  GError *error = NULL;

  GST_OBJECT_LOCK (self);
  self->starting = TRUE;
  model_ref = g_strdup (self->model_ref);
  points = g_strdup (self->points);
  boxes = g_strdup (self->boxes);
  backend = self->backend;
  precision = self->precision;
  GST_OBJECT_UNLOCK (self);

  /* the library's options: w4a8 and auto run what the file holds (auto precision); written
   * under the lock, as the "quantized" handler of a previous run may still read them */
  options.backend = backend == GST_SAM2_SEG_BACKEND_CUDA ? SAM2_BACKEND_CUDA
      : backend == GST_SAM2_SEG_BACKEND_CPU ? SAM2_BACKEND_CPU : SAM2_BACKEND_AUTO;
  options.precision = precision == GST_SAM2_SEG_PRECISION_FP32
      ? SAM2_PRECISION_FP32 : precision == GST_SAM2_SEG_PRECISION_FP16
      ? SAM2_PRECISION_FP16 : precision == GST_SAM2_SEG_PRECISION_BF16
      ? SAM2_PRECISION_BF16 : SAM2_PRECISION_AUTO;
  GST_OBJECT_LOCK (self);
  self->session_options = options;
  GST_OBJECT_UNLOCK (self);
  if (!sam2_backend_available (self->session_options.backend, &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("backend=cuda is not available: %s. Use backend=auto or backend=cpu.",
            error->message), (NULL));
    g_clear_error (&error);
    goto fail;
  }
  if (precision == GST_SAM2_SEG_PRECISION_FP16
      && (backend == GST_SAM2_SEG_BACKEND_CPU
          || !sam2_backend_available (SAM2_BACKEND_CUDA, NULL))) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("precision=fp16 needs the CUDA backend, and this element runs on the CPU (FP32, BF16 "
            "where the CPU has AVX-512 BF16, and W4A8 from quantized model files). Use "
            "precision=auto, fp32 or bf16."), (NULL));
    goto fail;
  }
  if (!sam2_precision_available (self->session_options.backend,
          self->session_options.precision, &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("precision=%s: %s. Use precision=auto "
            "or fp32, or backend=cuda.",
            sam2_precision_to_string (self->session_options.precision),
            error->message), (NULL));
    g_clear_error (&error);
    goto fail;
  }
  prompts = gst_sam2_prompts_parse (points, boxes, &error);
  if (prompts == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Invalid prompts: %s", error->message),
        (NULL));
    g_clear_error (&error);
    goto fail;
  }
  self->model = gst_sam2_load_model (GST_ELEMENT (self), GST_CAT_DEFAULT, model_ref);
  if (self->model == NULL) {
    gst_sam2_prompts_free (prompts);
    goto fail;
  }
  if (precision == GST_SAM2_SEG_PRECISION_W4A8 && !sam2_model_is_quantized (self->model)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("precision=w4a8 needs a quantized model file, but \"%s\" is a float checkpoint. "
            "Make one with \"sam2q quantize\" or the sam2calib element, or use precision=auto, "
            "fp32, fp16 or bf16.", model_ref), (NULL));
    gst_sam2_prompts_free (prompts);
    goto fail;
  }
  if (!gst_sam2_seg_warm_up (self, &error)
      || (self->session = sam2_session_new_full (self->model, &self->session_options,
              &error)) == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
        ("Could not run the SAM2 model \"%s\": %s", model_ref, error->message), (NULL));
    g_clear_error (&error);
    gst_sam2_prompts_free (prompts);
    goto fail;
  }

  GST_INFO_OBJECT (self, "model \"%s\" runs on %s", model_ref,
      sam2_session_describe_backend (self->session));

  calibrator = gst_sam2_seg_find_calibrator (self, &error);
  if (error != NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("%s", error->message), (NULL));
    g_clear_error (&error);
    gst_sam2_prompts_free (prompts);
    goto fail;
  }
  if (calibrator != NULL && precision != GST_SAM2_SEG_PRECISION_AUTO) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("With a calibrator, precision must be auto: sam2seg starts with the float model and "
            "switches to the W4A8 model the calibrator writes."), (NULL));
    gst_object_unref (calibrator);
    gst_sam2_prompts_free (prompts);
    goto fail;
  }

  /* Prompts set while the model loaded were only stored (started was FALSE): they are the
   * ones to start with, parsed like those read above. No writer runs from here until started
   * is TRUE. */
  g_mutex_lock (&self->prompts_lock);
  GST_OBJECT_LOCK (self);
  if (g_strcmp0 (points, self->points) != 0 || g_strcmp0 (boxes, self->boxes) != 0) {
    gst_sam2_prompts_free (prompts);
    prompts = gst_sam2_prompts_parse (self->points, self->boxes, &error);
    if (prompts == NULL) {
      GST_OBJECT_UNLOCK (self);
      g_mutex_unlock (&self->prompts_lock);
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Invalid prompts: %s", error->message),
          (NULL));
      g_clear_error (&error);
      gst_clear_object (&calibrator);
      goto fail;
    }
  }
  clear_next_model_locked (self);
  self->followed = calibrator;
  gst_sam2_prompts_free (self->pending);
  self->pending = prompts;
  self->prompts_changed = TRUE;
  self->started = TRUE;
  self->starting = FALSE;
  self->run++;
  self->earliest_time = GST_CLOCK_TIME_NONE;
  self->n_times = self->times_pos = 0;
  self->reported_latency = GST_CLOCK_TIME_NONE;
  self->latency_posted = FALSE;
  self->frames = self->inferences = self->skipped_interval = self->skipped_qos = 0;
  self->last_time = GST_CLOCK_TIME_NONE;
  self->frame_width = self->frame_height = 0;
  GST_OBJECT_UNLOCK (self);
  g_mutex_unlock (&self->prompts_lock);
  /* connected once started: a "quantized" emitted before was dropped by the handler */
  if (calibrator != NULL) {
    self->quantized_id = g_signal_connect_object (calibrator, "quantized",
        G_CALLBACK (gst_sam2_seg_on_quantized), self, 0);
    GST_INFO_OBJECT (self, "switching to the model %s writes", GST_ELEMENT_NAME (calibrator));
  }
  self->next_id = 0;
  self->id_base = 0;
  self->have_last = FALSE;
  self->frames_since_inference = 0;
  gst_video_info_init (&self->info);

  g_free (model_ref);
  g_free (points);
  g_free (boxes);
  return TRUE;

fail:
  GST_OBJECT_LOCK (self);
  self->starting = FALSE;
  GST_OBJECT_UNLOCK (self);
  g_clear_pointer (&self->session, sam2_session_free);
  g_clear_pointer (&self->model, sam2_model_unref);
  g_free (model_ref);
  g_free (points);
  g_free (boxes);
  return FALSE;
}

static gboolean
gst_sam2_seg_stop (GstBaseTransform * trans)
{
  GstSam2Seg *self = GST_SAM2_SEG (trans);
  GstElement *followed;

  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  g_clear_pointer (&self->pending, gst_sam2_prompts_free);
  self->prompts_changed = FALSE;
  self->frame_width = self->frame_height = 0;
  self->unchecked_origin = NULL;
  g_clear_pointer (&self->start_points, g_free);
  g_clear_pointer (&self->start_boxes, g_free);
  followed = self->followed;
  self->followed = NULL;
  GST_OBJECT_UNLOCK (self);
  if (followed != NULL) {
    g_signal_handler_disconnect (followed, self->quantized_id);
    self->quantized_id = 0;
    gst_object_unref (followed);
  }
  /* a handler that was already running stores nothing once started is FALSE */
  GST_OBJECT_LOCK (self);
  clear_next_model_locked (self);
  GST_OBJECT_UNLOCK (self);

  g_clear_pointer (&self->prompts, gst_sam2_prompts_free);
  g_array_set_size (self->last, 0);
  g_array_set_size (self->tracks, 0);
  self->have_last = FALSE;
  g_clear_pointer (&self->session, sam2_session_free);
  g_clear_pointer (&self->model, sam2_model_unref);
  return TRUE;
}

/* ---- GObject ------------------------------------------------------------------------------ */

/* Sets one of the properties read at start (model, backend, precision, calibrator,
 * calibrator-name), or refuses with a warning while sam2seg starts or runs. The check and the
 * write under one lock hold: a start in between would run the old value while the new one
 * read back. */
static void
gst_sam2_seg_set_start_property (GstSam2Seg * self, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  gboolean running;

  GST_OBJECT_LOCK (self);
  running = self->started || self->starting;
  if (!running) {
    switch (prop_id) {
      case PROP_MODEL:
        g_free (self->model_ref);
        self->model_ref = g_value_dup_string (value);
        break;
      case PROP_BACKEND:
        self->backend = g_value_get_enum (value);
        break;
      case PROP_PRECISION:
        self->precision = g_value_get_enum (value);
        break;
      case PROP_CALIBRATOR:
        gst_object_replace ((GstObject **) & self->calibrator, g_value_get_object (value));
        break;
      case PROP_CALIBRATOR_NAME:
        g_free (self->calibrator_name);
        self->calibrator_name = g_value_dup_string (value);
        break;
      default:
        g_assert_not_reached ();
    }
  }
  GST_OBJECT_UNLOCK (self);
  if (running) {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("The %s property cannot change while sam2seg runs; set it in the NULL or READY "
            "state. Keeping the current value.", pspec->name), (NULL));
  }
}

static void
gst_sam2_seg_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstSam2Seg *self = GST_SAM2_SEG (object);

  switch (prop_id) {
    case PROP_MODEL:
    case PROP_BACKEND:
    case PROP_PRECISION:
      gst_sam2_seg_set_start_property (self, prop_id, value, pspec);
      break;
    case PROP_POINTS:
      gst_sam2_seg_update_prompts (self, PROMPTS_POINTS, g_value_get_string (value), NULL,
          "the points property", FALSE);
      break;
    case PROP_BOXES:
      gst_sam2_seg_update_prompts (self, PROMPTS_BOXES, NULL, g_value_get_string (value),
          "the boxes property", FALSE);
      break;
    case PROP_ROI_TYPES:
      gst_sam2_seg_set_roi_types (self, g_value_get_string (value));
      break;
    case PROP_MULTIMASK:
      GST_OBJECT_LOCK (self);
      self->multimask = g_value_get_boolean (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_MASK_THRESHOLD:
      GST_OBJECT_LOCK (self);
      self->mask_threshold = g_value_get_float (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_MAX_OBJECTS:
      GST_OBJECT_LOCK (self);
      self->max_objects = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_INTERVAL:
      GST_OBJECT_LOCK (self);
      self->interval = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_CALIBRATOR:
    case PROP_CALIBRATOR_NAME:
      gst_sam2_seg_set_start_property (self, prop_id, value, pspec);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_sam2_seg_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstSam2Seg *self = GST_SAM2_SEG (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model_ref);
      break;
    case PROP_BACKEND:
      g_value_set_enum (value, self->backend);
      break;
    case PROP_PRECISION:
      g_value_set_enum (value, self->precision);
      break;
    case PROP_POINTS:
      g_value_set_string (value, self->points);
      break;
    case PROP_BOXES:
      g_value_set_string (value, self->boxes);
      break;
    case PROP_ROI_TYPES:
      g_value_set_string (value, self->roi_types_str);
      break;
    case PROP_MULTIMASK:
      g_value_set_boolean (value, self->multimask);
      break;
    case PROP_MASK_THRESHOLD:
      g_value_set_float (value, self->mask_threshold);
      break;
    case PROP_MAX_OBJECTS:
      g_value_set_uint (value, self->max_objects);
      break;
    case PROP_INTERVAL:
      g_value_set_uint (value, self->interval);
      break;
    case PROP_STATS:
      g_value_take_boxed (value, gst_structure_new ("application/x-sam2seg-stats",
              "frames", G_TYPE_UINT64, self->frames,
              "inferences", G_TYPE_UINT64, self->inferences,
              "skipped", G_TYPE_UINT64, self->skipped_interval + self->skipped_qos,
              "skipped-interval", G_TYPE_UINT64, self->skipped_interval,
              "skipped-qos", G_TYPE_UINT64, self->skipped_qos,
              "last-processing-time", G_TYPE_UINT64, self->last_time,
              "latency", G_TYPE_UINT64, gst_sam2_seg_latency_estimate (self), NULL));
      break;
    case PROP_CALIBRATOR:
      g_value_set_object (value, self->calibrator);
      break;
    case PROP_CALIBRATOR_NAME:
      g_value_set_string (value, self->calibrator_name);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sam2_seg_finalize (GObject * object)
{
  GstSam2Seg *self = GST_SAM2_SEG (object);

  g_mutex_clear (&self->prompts_lock);
  g_free (self->model_ref);
  gst_clear_object (&self->calibrator);
  g_free (self->calibrator_name);
  clear_next_model_locked (self);
  g_free (self->points);
  g_free (self->boxes);
  g_free (self->start_points);
  g_free (self->start_boxes);
  g_free (self->roi_types_str);
  g_array_unref (self->roi_types);
  gst_sam2_prompts_free (self->pending);
  gst_sam2_prompts_free (self->prompts);
  g_array_unref (self->last);
  g_array_unref (self->tracks);
  g_array_unref (self->frame_prompts);
  g_array_unref (self->frame_rois);
  g_array_unref (self->frame_types);
  if (self->session)
    sam2_session_free (self->session);
  if (self->model)
    sam2_model_unref (self->model);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_sam2_seg_init (GstSam2Seg * self)
{
  g_mutex_init (&self->prompts_lock);
  self->model_ref = g_strdup (DEFAULT_MODEL);
  self->backend = DEFAULT_BACKEND;
  self->precision = DEFAULT_PRECISION;
  self->points = g_strdup (DEFAULT_POINTS);
  self->boxes = g_strdup (DEFAULT_BOXES);
  self->roi_types_str = g_strdup (DEFAULT_ROI_TYPES);
  self->roi_types = g_array_new (FALSE, FALSE, sizeof (GQuark));
  self->multimask = DEFAULT_MULTIMASK;
  self->mask_threshold = DEFAULT_MASK_THRESHOLD;
  self->max_objects = DEFAULT_MAX_OBJECTS;
  self->interval = DEFAULT_INTERVAL;
  self->earliest_time = GST_CLOCK_TIME_NONE;
  self->reported_latency = GST_CLOCK_TIME_NONE;
  self->last_time = GST_CLOCK_TIME_NONE;
  self->last = g_array_new (FALSE, TRUE, sizeof (SegObject));
  g_array_set_clear_func (self->last, clear_seg_object);
  self->tracks = g_array_new (FALSE, FALSE, sizeof (RoiPrompt));
  self->frame_prompts = g_array_new (FALSE, TRUE, sizeof (Sam2Prompt));
  self->frame_rois = g_array_new (FALSE, FALSE, sizeof (RoiPrompt));
  self->frame_types = g_array_new (FALSE, FALSE, sizeof (GQuark));
  gst_video_info_init (&self->info);

  /* never modifies pixels, only adds metadata: in place, never passthrough (metadata needs a
   * writable buffer) */
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);
  /* QoS handling is ours (skip the model, keep the frame); see gst_sam2_seg_src_event */
  gst_base_transform_set_qos_enabled (GST_BASE_TRANSFORM (self), TRUE);
}

static void
gst_sam2_seg_class_init (GstSam2SegClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sam2_seg_debug, "sam2seg", 0,
      "SAM2 segmentation (what runs, what is skipped and why)");

  gobject_class->set_property = gst_sam2_seg_set_property;
  gobject_class->get_property = gst_sam2_seg_get_property;
  gobject_class->finalize = gst_sam2_seg_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "SAM2 model: a directory with config.json and model.safetensors (e.g. "
          "models/sam2-shapes), a quantized model file, a Hugging Face id in the local HF "
          "cache (facebook/sam2.1-hiera-tiny) or a shortcut: tiny, small, base (or base-plus), large. "
          "Read at start; cannot change while running",
          DEFAULT_MODEL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_BACKEND,
      g_param_spec_enum ("backend", "Backend",
          "Where the model runs: auto picks CUDA when this build has it and a GPU is "
          "present, else the CPU; cuda fails at start when it cannot run",
          GST_TYPE_SAM2_SEG_BACKEND, DEFAULT_BACKEND,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision",
          "Arithmetic of the model: auto runs what the model file holds; a precision the file, "
          "this build or this CPU cannot give fails at start",
          GST_TYPE_SAM2_SEG_PRECISION, DEFAULT_PRECISION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_POINTS,
      g_param_spec_string ("points", "Points",
          "Point prompts in frame pixels (scaled when the frame size changes): "
          "\"x,y[,label] x,y[,label]; x,y\" - ';' separates "
          "objects, whitespace the points of one object; label 1 = positive (default), "
          "0 = negative. Object i pairs with the i-th entry of boxes",
          DEFAULT_POINTS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_BOXES,
      g_param_spec_string ("boxes", "Boxes",
          "Box prompts in frame pixels (scaled when the frame size changes): "
          "\"x0,y0,x1,y1; x0,y0,x1,y1\", one box per object; "
          "object i pairs with the i-th entry of points (empty entries allowed)",
          DEFAULT_BOXES,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_ROI_TYPES,
      g_param_spec_string ("roi-types", "ROI types",
          "Comma-separated roi types of upstream GstVideoRegionOfInterestMeta (e.g. a "
          "detector's \"person,car\") whose boxes become prompts; empty = none",
          DEFAULT_ROI_TYPES,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MULTIMASK,
      g_param_spec_boolean ("multimask", "Multimask",
          "Ask the model for three candidate masks per object and keep the one with the best "
          "predicted IoU (helps with single ambiguous clicks)",
          DEFAULT_MULTIMASK,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MASK_THRESHOLD,
      g_param_spec_float ("mask-threshold", "Mask threshold",
          "Mask logit above which a pixel belongs to the object (SAM uses 0; higher = "
          "tighter masks)", -100.0f, 100.0f, DEFAULT_MASK_THRESHOLD,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MAX_OBJECTS,
      g_param_spec_uint ("max-objects", "Max objects",
          "Most objects segmented per frame (each costs one decoder run): explicit prompts "
          "first, then ROI prompts in metadata order", 1, MAX_MAX_OBJECTS,
          DEFAULT_MAX_OBJECTS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_INTERVAL,
      g_param_spec_uint ("interval", "Interval",
          "Run the model every N frames; the frames between reuse the last result. Frames "
          "with new prompts always run it", 1, MAX_INTERVAL, DEFAULT_INTERVAL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  /**
   * GstSam2Seg:stats:
   *
   * Counters since start: frames, inferences (frames the model ran on), skipped (the rest),
   * skipped-interval, skipped-qos, last-processing-time and latency (the current estimate,
   * ns).
   */
  g_object_class_install_property (gobject_class, PROP_STATS,
      g_param_spec_boxed ("stats", "Statistics",
          "application/x-sam2seg-stats: frames, inferences, skipped, skipped-interval, "
          "skipped-qos (guint64 counts since start), last-processing-time and latency "
          "(guint64 ns: the latency sam2seg adds in live pipelines)", GST_TYPE_STRUCTURE,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  /**
   * GstSam2Seg:calibrator:
   *
   * A sam2calib (any element with a "quantized" signal carrying a model path) whose model
   * sam2seg switches to once it is written; see "Calibrate, then segment". Takes precedence
   * over #GstSam2Seg:calibrator-name.
   */
  g_object_class_install_property (gobject_class, PROP_CALIBRATOR,
      g_param_spec_object ("calibrator", "Calibrator",
          "A sam2calib element: segment with the float model until it emits \"quantized\", "
          "then with the quantized model, from the next frame on (for applications; "
          "gst-launch-1.0 uses calibrator-name)", GST_TYPE_ELEMENT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_CALIBRATOR_NAME,
      g_param_spec_string ("calibrator-name", "Calibrator name",
          "Name of a sam2calib in the same pipeline (sam2calib name=cal ... sam2seg "
          "calibrator-name=cal): the calibrator property for gst-launch-1.0, looked up when "
          "sam2seg starts (READY to PAUSED); empty = none", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));

  /**
   * GstSam2Seg::set-prompts:
   * @sam2seg: the element
   * @points: point prompts, the syntax of #GstSam2Seg:points (NULL = none)
   * @boxes: box prompts, the syntax of #GstSam2Seg:boxes (NULL = none)
   *
   * Replaces the prompts from the next frame on (and the points / boxes properties).
   * Returns: %TRUE when taken, %FALSE when a string is malformed or a prompt lies outside
   * the current frame (a warning message then says why and the old prompts stay). Before the
   * first caps there is no frame to check against: prompts outside the first frame are
   * refused there, with the same warning.
   */
  gst_sam2_seg_signals[SIGNAL_SET_PROMPTS] =
      g_signal_new_class_handler ("set-prompts", G_TYPE_FROM_CLASS (klass),
      G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION, G_CALLBACK (gst_sam2_seg_set_prompts), NULL, NULL,
      NULL, G_TYPE_BOOLEAN, 2, G_TYPE_STRING, G_TYPE_STRING);
  /**
   * GstSam2Seg::clear-prompts:
   * @sam2seg: the element
   *
   * Removes every explicit prompt from the next frame on.
   */
  gst_sam2_seg_signals[SIGNAL_CLEAR_PROMPTS] =
      g_signal_new_class_handler ("clear-prompts", G_TYPE_FROM_CLASS (klass),
      G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION, G_CALLBACK (gst_sam2_seg_clear_prompts), NULL,
      NULL, NULL, G_TYPE_NONE, 0);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "SAM2 segmentation", "Filter/Analyzer/Video",
      "Segments the objects given by point / box prompts or upstream ROI metadata in every "
      "frame with Segment Anything 2 and attaches the masks as GstSam2MaskMeta (plus one "
      "\"sam2-object\" GstVideoRegionOfInterestMeta per object); the pixels pass unchanged. "
      "Prompts: points=\"x,y[,label] x,y; x,y\" (';' between objects), "
      "boxes=\"x0,y0,x1,y1; ...\", runtime changes with the set-prompts / clear-prompts "
      "action signals or a \"sam2-prompts\" custom downstream event (string fields points, "
      "boxes). Posts a warning for refused runtime prompts, latency messages when "
      "processing slows down, and an element message sam2seg-model-switched (field path) "
      "when it takes the model its calibrator has written. Example: gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! "
      "videoconvert ! sam2seg model=tiny points=\"320,240\" ! sam2overlay ! videoconvert ! "
      "autovideosink",
      "sam2-gst developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_sam2_seg_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_sam2_seg_stop);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_sam2_seg_set_caps);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_sam2_seg_transform_ip);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_sam2_seg_sink_event);
  trans_class->src_event = GST_DEBUG_FUNCPTR (gst_sam2_seg_src_event);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_sam2_seg_query);
  trans_class->propose_allocation = GST_DEBUG_FUNCPTR (gst_sam2_seg_propose_allocation);
  trans_class->passthrough_on_same_caps = FALSE;
  trans_class->transform_ip_on_passthrough = FALSE;

  gst_type_mark_as_plugin_api (GST_TYPE_SAM2_SEG_BACKEND, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_SAM2_SEG_PRECISION, 0);
}
