/* GStreamer SAM2 plugin
 *
 * plugin.c: registers sam2seg, sam2overlay, sam2json and sam2calib.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gst/gst.h>

#include "gstsam2calib.h"
#include "gstsam2json.h"
#include "gstsam2overlay.h"
#include "gstsam2seg.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ret = FALSE;

  ret |= GST_ELEMENT_REGISTER (sam2seg, plugin);
  ret |= GST_ELEMENT_REGISTER (sam2overlay, plugin);
  ret |= GST_ELEMENT_REGISTER (sam2json, plugin);
  ret |= GST_ELEMENT_REGISTER (sam2calib, plugin);
  return ret;
}

/* GST_LICENSE_UNKNOWN is GStreamer's tag for licenses outside its list (the project is
 * Apache-2.0, which the list does not name). */
GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, sam2,
    "Segment Anything 2 on video: segmentation, overlay, JSON output, W4A8 calibration",
    plugin_init, VERSION, GST_LICENSE_UNKNOWN, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
