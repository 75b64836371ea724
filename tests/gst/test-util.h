/* test-util.h: what the element tests share: the demo model and images, frames in every format,
 * harnesses around configured elements, and errors from elements that fail to start. */
#ifndef SAM2_GST_TEST_UTIL_H
#define SAM2_GST_TEST_UTIL_H

#include <gst/gst.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>

#include "gstsam2meta.h"

G_BEGIN_DECLS

/* The demo model (models/sam2-shapes, 256x256 input), from $SAM2_SHAPES_MODEL. */
const gchar *test_model_path (void);

/* A demo image (examples/demo/<name>) decoded to tightly packed RGB; g_free. */
guint8 *test_load_demo_rgb (const gchar * name, gint * width, gint * height);

/* A w x h frame of `format` holding the RGB pixels, rows padded by `pad` bytes beyond the
 * default stride and described by a GstVideoMeta (so the stride is the meta's), with `pts`. */
GstBuffer *test_make_frame (const guint8 * rgb, gint width, gint height,
    GstVideoFormat format, gint pad, GstClockTime pts);

/* A sam2seg with the demo model and the given properties (NULL-terminated name / value
 * pairs), in a harness fed with `format` frames of width x height at 30 fps. */
GstHarness *test_seg_harness_new (GstVideoFormat format, gint width, gint height,
    const gchar * first_property, ...);

/* Takes an element through NULL -> PAUSED with a bus and returns the first error posted
 * (NULL if it started); the element is back in NULL afterwards. `debug` may be NULL. */
GError *test_start_error (GstElement * element, gchar ** debug);

/* The object's mask as a frame-sized 0/1 plane (g_free), checked to lie inside the frame. */
guint8 *test_object_frame_mask (const GstSam2MaskMeta * meta, const GstSam2Object * object);

/* Pixel-exact equality of two w x h planes; the number of differing pixels. */
gsize test_count_diff (const guint8 * a, const guint8 * b, gsize n);

/* Checks that the sink pad of a new `factory` element accepts RGB frames of the core's largest
 * size (SAM2_MAX_FRAME_SIZE) on either axis and refuses one pixel more: too large a frame fails
 * negotiation instead of the first buffer. */
void test_assert_frame_size_caps (const gchar * factory);

/* Whether the element of `h` (caps already set), asked by upstream for its allocation
 * parameters while the harness's sink offers GstVideoMeta and GstVideoCropMeta, passes the
 * crop meta on. */
gboolean test_proposes_crop_meta (GstHarness * h);

G_END_DECLS

#endif
