/* GStreamer SAM2 plugin
 *
 * gstsam2calib.h: sam2calib, W4A8 calibration of a SAM2 model from the frames of a stream.
 */
#ifndef __GST_SAM2_CALIB_H__
#define __GST_SAM2_CALIB_H__

#include <gst/gst.h>
#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

typedef enum
{
  GST_SAM2_CALIB_DEVICE_CPU,
  GST_SAM2_CALIB_DEVICE_CUDA,
} GstSam2CalibDevice;

#define GST_TYPE_SAM2_CALIB_DEVICE (gst_sam2_calib_device_get_type ())
GType gst_sam2_calib_device_get_type (void);

typedef enum
{
  GST_SAM2_CALIB_PRECISION_FP32,
  GST_SAM2_CALIB_PRECISION_BF16,
  GST_SAM2_CALIB_PRECISION_FP16,
} GstSam2CalibPrecision;

#define GST_TYPE_SAM2_CALIB_PRECISION (gst_sam2_calib_precision_get_type ())
GType gst_sam2_calib_precision_get_type (void);

#define GST_TYPE_SAM2_CALIB (gst_sam2_calib_get_type ())
G_DECLARE_FINAL_TYPE (GstSam2Calib, gst_sam2_calib, GST, SAM2_CALIB, GstBaseSink)

GST_ELEMENT_REGISTER_DECLARE (sam2calib);

G_END_DECLS

#endif /* __GST_SAM2_CALIB_H__ */
