/* GStreamer SAM2 plugin
 *
 * gstsam2util.c: helpers shared by the elements; see gstsam2util.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2util.h"

gboolean
gst_sam2_pixel_format_from_video (GstVideoFormat format, Sam2PixelFormat * out)
{
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
      *out = SAM2_PIXEL_FORMAT_RGB;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBA:
      *out = SAM2_PIXEL_FORMAT_RGBA;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBx:
      *out = SAM2_PIXEL_FORMAT_RGBX;
      return TRUE;
    case GST_VIDEO_FORMAT_BGR:
      *out = SAM2_PIXEL_FORMAT_BGR;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRA:
      *out = SAM2_PIXEL_FORMAT_BGRA;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRx:
      *out = SAM2_PIXEL_FORMAT_BGRX;
      return TRUE;
    default:
      return FALSE;
  }
}
