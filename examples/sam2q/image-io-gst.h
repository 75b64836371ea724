/* image-io-gst.h: the GStreamer decoding pieces of image-io.c that datasets.c's video reader
 * shares (both run filesrc ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink). */
#ifndef SAM2Q_IMAGE_IO_GST_H
#define SAM2Q_IMAGE_IO_GST_H

#include <gst/gst.h>

#include "image-io.h"

G_BEGIN_DECLS

/* What to install when GStreamer has no decoder for a file. */
#define SAM2Q_PLUGINS_HINT "install gstreamer1.0-plugins-good / -bad / -libav"

/* Posted by decodebin (an application message of this name) when it has found all streams and
 * none of them is video. */
#define SAM2Q_NO_VIDEO_MESSAGE "sam2q-no-video-stream"

typedef struct {
  GstElement *pipeline;        /* the streams not taken are drained into fakesinks added here */
  GstElement *convert;         /* the first video pad of decodebin is linked here */
  GMutex lock;                 /* decodebin's signals arrive on streaming threads; the owner
                                * initialises and clears it */
  gboolean linked;
} Sam2qVideoLink;

/* Connects decodebin's pad-added and no-more-pads so that its first video pad is linked to
 * link->convert, other streams are drained, and a file without video posts
 * SAM2Q_NO_VIDEO_MESSAGE. `link` must outlive the pipeline's streaming threads. */
void sam2q_video_link_connect (Sam2qVideoLink *link, GstElement *decodebin);

/* Copies the RGB frame of `sample` into a new Sam2qImage (rows padded to 4 bytes as GStreamer
 * lays out RGB), whatever stride the decoder's buffer had; errors name the file `display`. */
Sam2qImage *sam2q_image_from_sample (GstSample *sample, const char *display, GError **error);

G_END_DECLS

#endif
