/* GStreamer SAM2 plugin
 *
 * gstsam2json.h: sam2json, writes GstSam2MaskMeta as JSON lines.
 */
#ifndef __GST_SAM2_JSON_H__
#define __GST_SAM2_JSON_H__

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_SAM2_JSON (gst_sam2_json_get_type ())
G_DECLARE_FINAL_TYPE (GstSam2Json, gst_sam2_json, GST, SAM2_JSON, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (sam2json);

G_END_DECLS

#endif /* __GST_SAM2_JSON_H__ */
