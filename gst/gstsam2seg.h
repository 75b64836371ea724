/* GStreamer SAM2 plugin
 *
 * gstsam2seg.h: sam2seg, segmentation of video frames with Segment Anything 2.
 */
#ifndef __GST_SAM2_SEG_H__
#define __GST_SAM2_SEG_H__

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

typedef enum
{
  GST_SAM2_SEG_BACKEND_AUTO,
  GST_SAM2_SEG_BACKEND_CPU,
  GST_SAM2_SEG_BACKEND_CUDA,
} GstSam2SegBackend;

typedef enum
{
  GST_SAM2_SEG_PRECISION_AUTO,
  GST_SAM2_SEG_PRECISION_FP32,
  GST_SAM2_SEG_PRECISION_FP16,
  GST_SAM2_SEG_PRECISION_W4A8,
  GST_SAM2_SEG_PRECISION_BF16,
} GstSam2SegPrecision;

#define GST_TYPE_SAM2_SEG_BACKEND (gst_sam2_seg_backend_get_type ())
GType gst_sam2_seg_backend_get_type (void);
#define GST_TYPE_SAM2_SEG_PRECISION (gst_sam2_seg_precision_get_type ())
GType gst_sam2_seg_precision_get_type (void);

#define GST_TYPE_SAM2_SEG (gst_sam2_seg_get_type ())
G_DECLARE_FINAL_TYPE (GstSam2Seg, gst_sam2_seg, GST, SAM2_SEG, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (sam2seg);

G_END_DECLS

#endif /* __GST_SAM2_SEG_H__ */
