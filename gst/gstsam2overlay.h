/* GStreamer SAM2 plugin
 *
 * gstsam2overlay.h: sam2overlay, draws GstSam2MaskMeta onto the frames.
 */
#ifndef __GST_SAM2_OVERLAY_H__
#define __GST_SAM2_OVERLAY_H__

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_SAM2_OVERLAY (gst_sam2_overlay_get_type ())
G_DECLARE_FINAL_TYPE (GstSam2Overlay, gst_sam2_overlay, GST, SAM2_OVERLAY, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (sam2overlay);

G_END_DECLS

#endif /* __GST_SAM2_OVERLAY_H__ */
