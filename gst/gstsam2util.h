/* GStreamer SAM2 plugin
 *
 * gstsam2util.h: what sam2seg, sam2overlay and sam2calib share.
 */
#ifndef __GST_SAM2_UTIL_H__
#define __GST_SAM2_UTIL_H__

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include "sam2.h"

G_BEGIN_DECLS

/* The packed RGB video formats the core reads directly (Sam2PixelFormat), for caps strings:
 * GST_VIDEO_CAPS_MAKE ("{ " GST_SAM2_RGB_FORMATS " }"). */
#define GST_SAM2_RGB_FORMATS "RGB, RGBA, RGBx, BGR, BGRA, BGRx"

/* GST_VIDEO_CAPS_MAKE with the sizes the core takes (1 to SAM2_MAX_FRAME_SIZE): a larger
 * frame fails negotiation, not the first buffer. */
#define GST_SAM2_VIDEO_SIZE_RANGE "(int) [ 1, " G_STRINGIFY (SAM2_MAX_FRAME_SIZE) " ]"
#define GST_SAM2_VIDEO_CAPS_MAKE(formats)                                       \
  "video/x-raw, format = (string) " formats ", width = " GST_SAM2_VIDEO_SIZE_RANGE \
  ", height = " GST_SAM2_VIDEO_SIZE_RANGE ", framerate = " GST_VIDEO_FPS_RANGE

/* GstBaseTransform::propose_allocation for elements that read or draw whole frames from the
 * start of the plane: `parent`'s answer (GstVideoFilter's, or the in-place default that
 * forwards downstream's) without GstVideoCropMeta, which a downstream sink may offer. Offered,
 * an upstream videocrop would send uncropped frames with a crop meta these elements ignore. */
gboolean gst_sam2_propose_allocation_without_crop (GstBaseTransformClass * parent,
    GstBaseTransform * trans, GstQuery * decide_query, GstQuery * query);

/* The core's pixel format for a packed RGB video format; FALSE for any other format. */
gboolean gst_sam2_pixel_format_from_video (GstVideoFormat format, Sam2PixelFormat * out);

/* Whether the model property is set; when it is not, posts the element error for `element`
 * (logging to `cat`: RESOURCE NOT_FOUND, saying what the property takes) and returns FALSE. */
gboolean gst_sam2_model_ref_check (GstElement * element, GstDebugCategory * cat,
    const gchar * model_ref);

/* sam2_model_load (model_ref) for `element`, which logs to `cat`. When model_ref is unset or the
 * load fails, posts the element error (see gst_sam2_model_ref_check; RESOURCE NOT_FOUND when the
 * model is missing or unreadable, RESOURCE SETTINGS otherwise) and returns NULL. */
Sam2Model *gst_sam2_load_model (GstElement * element, GstDebugCategory * cat,
    const gchar * model_ref);

G_END_DECLS

#endif /* __GST_SAM2_UTIL_H__ */
