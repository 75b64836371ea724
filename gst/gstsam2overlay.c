/* GStreamer SAM2 plugin
 *
 * gstsam2overlay.c: sam2overlay, draws the objects of GstSam2MaskMeta onto the frames.
 */
/**
 * SECTION:element-sam2overlay
 * @title: sam2overlay
 * @see_also: sam2seg, #GstSam2MaskMeta
 *
 * Draws the objects of the #GstSam2MaskMeta on each frame: the mask as a semi-transparent fill
 * in the object's colour with a solid outline, its bounding box and its id. Colours come from
 * a fixed palette indexed by the object id, so an object keeps its colour from frame to frame.
 * Frames without the meta pass unchanged. Masks are drawn at the frame's size even when the
 * meta was scaled on the way (after videoconvertscale): each mask is stretched over its
 * location.
 *
 * Works in place on RGB, RGBA, RGBx, BGR, BGRA and BGRx (put videoconvert around it for other
 * formats); frames whose meta has no object are not even mapped. Frames are drawn whole:
 * sam2overlay does not offer upstream the crop meta.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=video.mp4 ! decodebin ! videoconvert ! \
 *     sam2seg model=tiny points="320,240" ! sam2overlay fill-alpha=0.3 ids=false ! \
 *     videoconvert ! autovideosink
 * ]|
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2overlay.h"
#include "gstsam2meta.h"
#include "gstsam2util.h"

#include "overlay.h"

GST_DEBUG_CATEGORY_STATIC (gst_sam2_overlay_debug);
#define GST_CAT_DEFAULT gst_sam2_overlay_debug

#define DEFAULT_FILL_ALPHA 0.45
#define DEFAULT_OUTLINE TRUE
#define DEFAULT_BOXES TRUE
#define DEFAULT_IDS TRUE

enum
{
  PROP_0,
  PROP_FILL_ALPHA,
  PROP_OUTLINE,
  PROP_BOXES,
  PROP_IDS,
};

struct _GstSam2Overlay
{
  GstVideoFilter parent;

  /* properties; under the object lock */
  gdouble fill_alpha;
  gboolean outline;
  gboolean boxes;
  gboolean ids;

  Sam2PixelFormat format;
};

#define gst_sam2_overlay_parent_class parent_class
G_DEFINE_TYPE (GstSam2Overlay, gst_sam2_overlay, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE (sam2overlay, "sam2overlay", GST_RANK_NONE,
    GST_TYPE_SAM2_OVERLAY);

#define SAM2_OVERLAY_CAPS GST_VIDEO_CAPS_MAKE ("{ " GST_SAM2_RGB_FORMATS " }")

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (SAM2_OVERLAY_CAPS));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (SAM2_OVERLAY_CAPS));

static gboolean
gst_sam2_overlay_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstSam2Overlay *self = GST_SAM2_OVERLAY (filter);

  if (!gst_sam2_pixel_format_from_video (GST_VIDEO_INFO_FORMAT (in_info), &self->format)) {
    GST_ERROR_OBJECT (self, "unsupported format in %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  return TRUE;
}

/* [v0, v0 + n) of a `from`-long axis on a `to`-long one, covering every touched pixel (the
 * meta's own scaling rule; used when a meta reaches us without having been scaled). */
static void
rescale_span (gint v0, gint n, gint from, gint to, gint * o0, gint * on)
{
  gint64 a = ((gint64) v0 * to) / from;
  gint64 b = ((gint64) (v0 + n) * to + from - 1) / from;

  *o0 = (gint) a;
  *on = (gint) MAX (b - a, 0);
}

/* Frames are drawn from the start of the plane at the caps' size: no crop meta
 * (gstsam2util.h). */
static gboolean
gst_sam2_overlay_propose_allocation (GstBaseTransform * trans, GstQuery * decide_query,
    GstQuery * query)
{
  return gst_sam2_propose_allocation_without_crop (GST_BASE_TRANSFORM_CLASS (parent_class),
      trans, decide_query, query);
}

/* Nothing to draw: the frame passes unmapped. GstVideoFilter maps it for writing before
 * transform_frame_ip, which copies memory the buffer shares (with a tee's other branches, say)
 * even when nothing is drawn. */
static GstFlowReturn
gst_sam2_overlay_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  const GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buf);

  if (meta == NULL || gst_sam2_mask_meta_get_n_objects (meta) == 0)
    return GST_FLOW_OK;
  return GST_BASE_TRANSFORM_CLASS (parent_class)->transform_ip (trans, buf);
}

static GstFlowReturn
gst_sam2_overlay_transform_frame_ip (GstVideoFilter * filter, GstVideoFrame * frame)
{
  GstSam2Overlay *self = GST_SAM2_OVERLAY (filter);
  GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (frame->buffer);
  const gint W = GST_VIDEO_FRAME_WIDTH (frame), H = GST_VIDEO_FRAME_HEIGHT (frame);
  Sam2OverlayStyle style = SAM2_OVERLAY_STYLE_INIT;
  guint8 *pixels = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  const gint stride = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  guint n;

  if (meta == NULL)
    return GST_FLOW_OK;

  GST_OBJECT_LOCK (self);
  style.fill_alpha = (float) self->fill_alpha;
  style.outline = self->outline;
  style.boxes = self->boxes;
  style.ids = self->ids;
  GST_OBJECT_UNLOCK (self);

  n = gst_sam2_mask_meta_get_n_objects (meta);
  for (guint i = 0; i < n; i++) {
    const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
    GstVideoRectangle l = o->location;
    Sam2Box region, box = { o->box.x0, o->box.y0, o->box.x1, o->box.y1 };
    const guint8 *mask = NULL;
    gint mw = 0, mh = 0, mstride = 0;
    GstMapInfo map = { 0 };
    gboolean mapped = FALSE;

    if (meta->width > 0 && meta->height > 0 && (meta->width != W || meta->height != H)) {
      gint x, w, y, h;
      rescale_span (l.x, l.w, meta->width, W, &l.x, &l.w);
      rescale_span (l.y, l.h, meta->height, H, &l.y, &l.h);
      if (box.x1 >= box.x0) {
        rescale_span (box.x0, box.x1 - box.x0 + 1, meta->width, W, &x, &w);
        rescale_span (box.y0, box.y1 - box.y0 + 1, meta->height, H, &y, &h);
        box.x0 = x;
        box.x1 = x + w - 1;
        box.y0 = y;
        box.y1 = y + h - 1;
      }
    }

    if (o->mask != NULL && l.w > 0 && l.h > 0) {
      GstVideoMeta *vmeta = gst_buffer_get_video_meta (o->mask);
      gsize offset = 0;
      if (vmeta != NULL) {
        mw = vmeta->width;
        mh = vmeta->height;
        mstride = vmeta->stride[0];
        offset = vmeta->offset[0];
      } else {
        mw = o->location.w;
        mh = o->location.h;
        mstride = mw;
      }
      mapped = mw > 0 && mh > 0 && gst_buffer_map (o->mask, &map, GST_MAP_READ);
      if (mapped && offset + (gsize) (mh - 1) * mstride + mw <= map.size) {
        mask = map.data + offset;
      } else {
        GST_WARNING_OBJECT (self, "object %u: unreadable %dx%d mask, drawing its box only",
            o->id, mw, mh);
      }
    }
    region.x0 = l.x;
    region.y0 = l.y;
    region.x1 = l.x + l.w - 1;
    region.y1 = l.y + l.h - 1;
    sam2_overlay_draw_mask_region (pixels, W, H, stride, self->format, mask, mw, mh, mstride,
        &region, &box, (int) o->id, &style);
    if (mapped)
      gst_buffer_unmap (o->mask, &map);
  }
  GST_LOG_OBJECT (self, "drew %u objects", n);
  return GST_FLOW_OK;
}

static void
gst_sam2_overlay_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstSam2Overlay *self = GST_SAM2_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_FILL_ALPHA:
      self->fill_alpha = g_value_get_double (value);
      break;
    case PROP_OUTLINE:
      self->outline = g_value_get_boolean (value);
      break;
    case PROP_BOXES:
      self->boxes = g_value_get_boolean (value);
      break;
    case PROP_IDS:
      self->ids = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sam2_overlay_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstSam2Overlay *self = GST_SAM2_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_FILL_ALPHA:
      g_value_set_double (value, self->fill_alpha);
      break;
    case PROP_OUTLINE:
      g_value_set_boolean (value, self->outline);
      break;
    case PROP_BOXES:
      g_value_set_boolean (value, self->boxes);
      break;
    case PROP_IDS:
      g_value_set_boolean (value, self->ids);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sam2_overlay_init (GstSam2Overlay * self)
{
  self->fill_alpha = DEFAULT_FILL_ALPHA;
  self->outline = DEFAULT_OUTLINE;
  self->boxes = DEFAULT_BOXES;
  self->ids = DEFAULT_IDS;
}

static void
gst_sam2_overlay_class_init (GstSam2OverlayClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sam2_overlay_debug, "sam2overlay", 0,
      "SAM2 mask overlay");

  gobject_class->set_property = gst_sam2_overlay_set_property;
  gobject_class->get_property = gst_sam2_overlay_get_property;

  g_object_class_install_property (gobject_class, PROP_FILL_ALPHA,
      g_param_spec_double ("fill-alpha", "Fill alpha",
          "Opacity of the mask fill: 0 = outline only, 1 = solid", 0.0, 1.0,
          DEFAULT_FILL_ALPHA,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_OUTLINE,
      g_param_spec_boolean ("outline", "Outline",
          "Draw the mask's boundary in the object's colour", DEFAULT_OUTLINE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_BOXES,
      g_param_spec_boolean ("boxes", "Boxes",
          "Draw each object's bounding box", DEFAULT_BOXES,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_IDS,
      g_param_spec_boolean ("ids", "Ids",
          "Draw each object's id at the top-left corner of its box", DEFAULT_IDS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "SAM2 mask overlay", "Filter/Effect/Video",
      "Draws the objects of sam2seg's GstSam2MaskMeta onto the frames: each mask as a "
      "semi-transparent fill with an outline, its bounding box and its id, in a colour fixed "
      "per object id. Frames without the meta pass unchanged. RGB/BGR formats with or "
      "without alpha, in place. Example: gst-launch-1.0 videotestsrc ! videoconvert ! "
      "sam2seg model=tiny points=\"160,120\" ! sam2overlay ! videoconvert ! autovideosink",
      "sam2-gst developers");

  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_sam2_overlay_set_info);
  trans_class->propose_allocation = GST_DEBUG_FUNCPTR (gst_sam2_overlay_propose_allocation);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_sam2_overlay_transform_ip);
  filter_class->transform_frame_ip = GST_DEBUG_FUNCPTR (gst_sam2_overlay_transform_frame_ip);
}
