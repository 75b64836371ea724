/* image-io.c: image files in and PNG files out through short-lived GStreamer pipelines.
 *
 * Loading runs   filesrc ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink
 * to PAUSED and takes the preroll sample: a still image prerolls its only picture, a video or an
 * animation its first frame, and nothing has to play. Writing runs
 *   appsrc ! pngenc ! filesink
 * into a temporary file in the target's directory and renames it into place once the pipeline has
 * seen EOS, so a failed or interrupted write never leaves a half-written PNG under the real name.
 *
 * Pipelines are built element by element rather than with gst_parse_launch so that file names
 * reach filesrc / filesink verbatim (spaces, quotes and '!' need no escaping). Every wait on the
 * bus is bounded, so a damaged file or a stuck decoder produces an error instead of a hang. */
#include "image-io-gst.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>

/* Decoding a picture takes milliseconds to a few seconds even for very large files; anything
 * slower is a broken file or decoder, and the caller is better served by an error. */
#define LOAD_TIMEOUT (30 * GST_SECOND)
/* Encoding is bounded by the same base plus time that grows with the picture: pngenc takes about
 * 0.04 s per megapixel on smooth RGB and masks but up to 2 s on noise-like RGB (measured on one
 * core), so the allowance leaves a wide margin even for that. */
#define WRITE_TIMEOUT_BASE (30 * GST_SECOND)
#define WRITE_TIMEOUT_PER_MEGAPIXEL (5 * GST_SECOND)

G_DEFINE_QUARK (sam2q-image-error-quark, sam2q_image_error)

/* ---- initialisation --------------------------------------------------------------------- */

static gpointer
init_gstreamer_once (gpointer data)
{
  GError *error = NULL;
  /* An application (or a GStreamer element hosting us) may have initialised GStreamer with its
   * own options already; initialising again would be harmless but we must not override it. */
  if (!gst_is_initialized () && !gst_init_check (NULL, NULL, &error))
    return error;            /* kept for the life of the process: every later call reports it */
  return NULL;
}

gboolean
sam2q_image_io_init (GError **error)
{
  static GOnce once = G_ONCE_INIT;
  const GError *init_error = g_once (&once, init_gstreamer_once, NULL);
  if (init_error != NULL) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER,
                 "cannot initialise GStreamer: %s", init_error->message);
    return FALSE;
  }
  return TRUE;
}

static GstElement *
make_element (const char *factory, const char *package, GError **error)
{
  GstElement *element = gst_element_factory_make (factory, NULL);
  if (element == NULL)
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER,
                 "the GStreamer element '%s' is not available; install %s", factory, package);
  return element;
}

/* ---- loading ----------------------------------------------------------------------------- */

typedef struct {
  Sam2qVideoLink video;        /* pipeline and videoconvert */
  GMutex lock;                 /* decodebin's signals arrive on streaming threads */
  char *unknown_type;          /* media type decodebin found no decoder for, if any */
} LoadContext;

/* jpegdec defaults to libjpeg's fast IDCT; the accurate one is libjpeg's own default, which PIL
 * and torchvision keep. The two differ by up to a few levels on ~40 % of the samples of a typical
 * photo, so choosing the accurate one keeps our pixels (and so the masks) closer to those of the
 * Python reference; the YUV to RGB step (videoconvert rather than libjpeg) still differs a little. */
static void
on_deep_element_added (GstBin *decodebin, GstBin *sub_bin, GstElement *element, gpointer data)
{
  if (g_object_class_find_property (G_OBJECT_GET_CLASS (element), "idct-method") != NULL)
    gst_util_set_object_arg (G_OBJECT (element), "idct-method", "islow");
}

static void
on_unknown_type (GstElement *decodebin, GstPad *pad, GstCaps *caps, LoadContext *ctx)
{
  g_mutex_lock (&ctx->lock);
  if (ctx->unknown_type == NULL && caps != NULL && !gst_caps_is_empty (caps))
    ctx->unknown_type = g_strdup (gst_structure_get_name (gst_caps_get_structure (caps, 0)));
  g_mutex_unlock (&ctx->lock);
}

static gboolean
pad_is_video (GstPad *pad)
{
  GstCaps *caps = gst_pad_get_current_caps (pad);
  if (caps == NULL)
    caps = gst_pad_query_caps (pad, NULL);
  gboolean video = !gst_caps_is_empty (caps) && !gst_caps_is_any (caps) &&
                   g_str_has_prefix (gst_structure_get_name (gst_caps_get_structure (caps, 0)),
                                     "video/");
  gst_caps_unref (caps);
  return video;
}

static void
on_pad_added (GstElement *decodebin, GstPad *pad, Sam2qVideoLink *link)
{
  if (pad_is_video (pad)) {
    g_mutex_lock (&link->lock);
    gboolean take = !link->linked;
    if (take) {
      GstPad *sink = gst_element_get_static_pad (link->convert, "sink");
      link->linked = gst_pad_link (pad, sink) == GST_PAD_LINK_OK;
      gst_object_unref (sink);
    }
    g_mutex_unlock (&link->lock);
    if (take)
      return;
  }
  /* Audio, subtitles and further video tracks are drained into a fakesink: left unlinked they
   * could stop decodebin with not-linked before the first picture arrives. It does not take
   * part in prerolling (async=false), so sparse streams cannot hold up the wait for the picture. */
  GstElement *sink = gst_element_factory_make ("fakesink", NULL);
  if (sink == NULL)
    return;
  g_object_set (sink, "sync", FALSE, "async", FALSE, NULL);
  gst_bin_add (GST_BIN (link->pipeline), sink);
  GstPad *sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_link (pad, sinkpad);
  gst_object_unref (sinkpad);
  gst_element_sync_state_with_parent (sink);
}

static void
on_no_more_pads (GstElement *decodebin, Sam2qVideoLink *link)
{
  g_mutex_lock (&link->lock);
  gboolean video = link->linked;
  g_mutex_unlock (&link->lock);
  /* Without a video stream appsink never prerolls; say so on the bus instead of timing out. */
  if (!video) {
    GstStructure *s = gst_structure_new_empty (SAM2Q_NO_VIDEO_MESSAGE);
    gst_element_post_message (decodebin, gst_message_new_application (GST_OBJECT (decodebin), s));
  }
}

void
sam2q_video_link_connect (Sam2qVideoLink *link, GstElement *decodebin)
{
  g_signal_connect (decodebin, "pad-added", G_CALLBACK (on_pad_added), link);
  g_signal_connect (decodebin, "no-more-pads", G_CALLBACK (on_no_more_pads), link);
}

/* Stops the pipeline and frees the context. Going to NULL joins the streaming threads, so no
 * signal handler can still be using the context when it is freed. */
static void
load_context_free (LoadContext *ctx)
{
  if (ctx->video.pipeline != NULL) {
    gst_element_set_state (ctx->video.pipeline, GST_STATE_NULL);
    gst_object_unref (ctx->video.pipeline);
  }
  g_free (ctx->unknown_type);
  g_mutex_clear (&ctx->video.lock);
  g_mutex_clear (&ctx->lock);
  g_free (ctx);
}

static void
load_context_free_async (GstElement *pipeline, gpointer ctx)
{
  load_context_free (ctx);
}

/* Checks the file before GStreamer sees it: filesrc's messages for these cases ("Resource not
 * found.", "Could not open file for reading.") do not say what to do about them. */
static gboolean
check_readable (const char *path, const char *display, GError **error)
{
  /* O_NONBLOCK: opening a FIFO that has no writer yet must not block this check. */
  int fd = g_open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0) {
    int saved = errno;
    if (saved == ENOENT)
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_NOT_FOUND,
                   "cannot read %s: file not found", display);
    else
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_READ, "cannot read %s: %s",
                   display, g_strerror (saved));
    return FALSE;
  }
  struct stat st;
  gboolean ok = FALSE;
  if (fstat (fd, &st) != 0)
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_READ, "cannot read %s: %s", display,
                 g_strerror (errno));
  else if (S_ISDIR (st.st_mode))
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_READ,
                 "cannot read %s: it is a directory, not an image file", display);
  else if (S_ISREG (st.st_mode) && st.st_size == 0)
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot decode %s: the file is empty (0 bytes)", display);
  else
    ok = TRUE;               /* pipes and devices are left to filesrc (which, like any reader,
                              * waits in open() for a FIFO to get a writer) */
  close (fd);
  return ok;
}

/* Turns the first error GStreamer reported while loading into one that says what to do. */
static void
set_load_error_from_gst (GError **error, const char *display, const GError *gst_error,
                         const char *debug, const char *unknown_type)
{
  GQuark domain = gst_error->domain;
  int code = gst_error->code;
  if (domain == GST_RESOURCE_ERROR && code == GST_RESOURCE_ERROR_NOT_FOUND) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_NOT_FOUND,
                 "cannot read %s: file not found", display);
  } else if (domain == GST_RESOURCE_ERROR) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_READ, "cannot read %s: %s", display,
                 gst_error->message);
  } else if (domain == GST_STREAM_ERROR && code == GST_STREAM_ERROR_TYPE_NOT_FOUND) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_UNSUPPORTED,
                 "cannot decode %s: not an image file (GStreamer does not recognise its contents)",
                 display);
  } else if (domain == GST_STREAM_ERROR && code == GST_STREAM_ERROR_WRONG_TYPE) {
    /* Recognised as something that is not a picture at all ("This appears to be a text file."). */
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_UNSUPPORTED,
                 "cannot decode %s: not an image file (%s)", display, gst_error->message);
  } else if ((domain == GST_CORE_ERROR && code == GST_CORE_ERROR_MISSING_PLUGIN) ||
             (domain == GST_STREAM_ERROR && code == GST_STREAM_ERROR_CODEC_NOT_FOUND)) {
    if (unknown_type != NULL)
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_UNSUPPORTED,
                   "cannot decode %s: no GStreamer decoder for this file type, %s (%s)", display,
                   unknown_type, SAM2Q_PLUGINS_HINT);
    else
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_UNSUPPORTED,
                   "cannot decode %s: no GStreamer decoder for this file type (%s)", display,
                   SAM2Q_PLUGINS_HINT);
  } else if (domain == GST_STREAM_ERROR) {
    /* DECODE, DEMUX, FORMAT, FAILED (not-negotiated, internal flow errors): the decoder found
     * the file but could not turn it into a picture. The debug string's first line is source
     * location and element path; what follows, if anything, names the cause. */
    const char *cause = debug != NULL ? strchr (debug, '\n') : NULL;
    cause = cause != NULL && cause[1] != '\0' ? cause + 1 : NULL;
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot decode %s: the image data is damaged, truncated or unsupported (%s%s%s)",
                 display, gst_error->message, cause != NULL ? " " : "",
                 cause != NULL ? cause : "");
  } else {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER, "cannot decode %s: %s",
                 display, gst_error->message);
  }
}

typedef enum { PREROLLED, FAILED, TIMED_OUT } PrerollOutcome;

/* Waits until the pipeline has prerolled (ASYNC_DONE: a picture or EOS reached appsink), failed
 * or run out of time. Warnings are remembered because decoders report a damaged picture as a
 * warning and then simply produce nothing. */
static PrerollOutcome
wait_for_preroll (LoadContext *ctx, const char *display, char **last_warning, GError **error)
{
  GstBus *bus = gst_element_get_bus (ctx->video.pipeline);
  const GstMessageType wanted = GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR |
                                GST_MESSAGE_WARNING | GST_MESSAGE_APPLICATION;
  const gint64 deadline = g_get_monotonic_time () + LOAD_TIMEOUT / GST_USECOND;
  PrerollOutcome outcome = FAILED;
  gboolean done = FALSE;

  while (!done) {
    gint64 left = deadline - g_get_monotonic_time ();
    GstMessage *msg = left > 0
                          ? gst_bus_timed_pop_filtered (bus, (GstClockTime) left * GST_USECOND,
                                                        wanted)
                          : NULL;
    if (msg == NULL) {
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_TIMEOUT,
                   "cannot decode %s: no picture after %d s; the file may be damaged or the "
                   "decoder stuck", display, (int) (LOAD_TIMEOUT / GST_SECOND));
      outcome = TIMED_OUT;
      break;
    }
    switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ASYNC_DONE:
      /* Bins aggregate their children's async messages, but check it is the pipeline's own. */
      if (GST_MESSAGE_SRC (msg) == GST_OBJECT (ctx->video.pipeline)) {
        outcome = PREROLLED;
        done = TRUE;
      }
      break;
    case GST_MESSAGE_ERROR: {
      GError *gst_error = NULL;
      char *debug = NULL;
      gst_message_parse_error (msg, &gst_error, &debug);
      g_mutex_lock (&ctx->lock);
      set_load_error_from_gst (error, display, gst_error, debug, ctx->unknown_type);
      g_mutex_unlock (&ctx->lock);
      g_error_free (gst_error);
      g_free (debug);
      done = TRUE;
      break;
    }
    case GST_MESSAGE_WARNING: {
      GError *gst_error = NULL;
      gst_message_parse_warning (msg, &gst_error, NULL);
      g_free (*last_warning);
      *last_warning = g_strdup (gst_error->message);
      g_error_free (gst_error);
      break;
    }
    case GST_MESSAGE_APPLICATION:
      if (gst_message_has_name (msg, SAM2Q_NO_VIDEO_MESSAGE)) {
        g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_UNSUPPORTED,
                     "cannot decode %s: the file holds no picture (no video stream)", display);
        done = TRUE;
      }
      break;
    default:
      break;
    }
    gst_message_unref (msg);
  }
  gst_object_unref (bus);
  return outcome;
}

Sam2qImage *
sam2q_image_from_sample (GstSample *sample, const char *display, GError **error)
{
  GstVideoInfo info;
  GstCaps *caps = gst_sample_get_caps (sample);
  GstBuffer *buffer = gst_sample_get_buffer (sample);
  if (caps == NULL || buffer == NULL || !gst_video_info_from_caps (&info, caps)) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot decode %s: the decoder produced no usable picture", display);
    return NULL;
  }
  const int width = GST_VIDEO_INFO_WIDTH (&info), height = GST_VIDEO_INFO_HEIGHT (&info);
  if (width <= 0 || height <= 0) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot decode %s: the image has no pixels (%d x %d)", display, width, height);
    return NULL;
  }
  GstVideoFrame frame;
  if (!gst_video_frame_map (&frame, &info, buffer, GST_MAP_READ)) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot decode %s: the decoded picture is smaller than its %d x %d size", display,
                 width, height);
    return NULL;
  }
  const int stride = GST_VIDEO_INFO_PLANE_STRIDE (&info, 0);
  const size_t row_bytes = (size_t) width * 3;
  guint8 *pixels = g_try_malloc0 ((size_t) stride * (size_t) height);
  if (pixels == NULL) {
    gst_video_frame_unmap (&frame);
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                 "cannot load %s: not enough memory for a %d x %d image", display, width, height);
    return NULL;
  }
  const guint8 *src = GST_VIDEO_FRAME_PLANE_DATA (&frame, 0);
  const int src_stride = GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
  for (int y = 0; y < height; y++)
    memcpy (pixels + (size_t) y * stride, src + (gssize) y * src_stride, row_bytes);
  gst_video_frame_unmap (&frame);

  Sam2qImage *image = g_new0 (Sam2qImage, 1);
  image->width = width;
  image->height = height;
  image->stride = stride;
  image->pixels = pixels;
  return image;
}

Sam2qImage *
sam2q_image_load (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!sam2q_image_io_init (error))
    return NULL;
  char *display = g_filename_display_name (path);
  Sam2qImage *image = NULL;
  if (!check_readable (path, display, error)) {
    g_free (display);
    return NULL;
  }

  LoadContext *ctx = g_new0 (LoadContext, 1);
  g_mutex_init (&ctx->lock);
  g_mutex_init (&ctx->video.lock);
  GstElement *src = NULL, *decode = NULL, *sink = NULL;
  if ((src = make_element ("filesrc", "gstreamer1.0 (core elements)", error)) == NULL ||
      (decode = make_element ("decodebin", "gstreamer1.0-plugins-base", error)) == NULL ||
      (ctx->video.convert = make_element ("videoconvert", "gstreamer1.0-plugins-base", error)) ==
          NULL ||
      (sink = make_element ("appsink", "gstreamer1.0-plugins-base", error)) == NULL) {
    /* Elements not yet in a bin are floating: sink them before dropping them. */
    GstElement *made[] = { src, decode, ctx->video.convert, sink };
    for (size_t i = 0; i < G_N_ELEMENTS (made); i++)
      if (made[i] != NULL)
        gst_object_unref (gst_object_ref_sink (made[i]));
    goto out;
  }

  ctx->video.pipeline = gst_pipeline_new ("sam2q-image-load");
  g_object_set (src, "location", path, NULL);
  GstCaps *rgb = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING, "RGB", NULL);
  /* Only the preroll sample is taken; keeping no last-sample avoids an extra reference to a
   * possibly large frame, and one queued buffer is all a picture needs. */
  g_object_set (sink, "caps", rgb, "sync", FALSE, "max-buffers", 1, "enable-last-sample", FALSE,
                NULL);
  gst_caps_unref (rgb);
  gst_bin_add_many (GST_BIN (ctx->video.pipeline), src, decode, ctx->video.convert, sink, NULL);
  if (!gst_element_link (src, decode) || !gst_element_link (ctx->video.convert, sink)) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER,
                 "cannot decode %s: could not link the decoding pipeline", display);
    goto out;
  }
  g_signal_connect (decode, "deep-element-added", G_CALLBACK (on_deep_element_added), NULL);
  g_signal_connect (decode, "unknown-type", G_CALLBACK (on_unknown_type), ctx);
  sam2q_video_link_connect (&ctx->video, decode);

  /* A synchronous failure (filesrc cannot open the file) has already posted its error on the
   * bus, so the wait below reports it either way. */
  gst_element_set_state (ctx->video.pipeline, GST_STATE_PAUSED);
  char *warning = NULL;
  PrerollOutcome outcome = wait_for_preroll (ctx, display, &warning, error);
  if (outcome == PREROLLED) {
    GstSample *sample = gst_app_sink_try_pull_preroll (GST_APP_SINK (sink), 0);
    if (sample != NULL) {
      image = sam2q_image_from_sample (sample, display, error);
      gst_sample_unref (sample);
    } else {
      /* Prerolled on EOS: the stream ended before any picture was decoded. */
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_CORRUPT,
                   "cannot decode %s: no picture could be decoded from it; the image data is "
                   "damaged or truncated%s%s%s", display,
                   warning != NULL ? " (" : "", warning != NULL ? warning : "",
                   warning != NULL ? ")" : "");
    }
  }
  g_free (warning);
  if (outcome == TIMED_OUT) {
    /* Whatever is stuck (a read from a stalled pipe or network file system, a decoder in a
     * loop) would block the state change to NULL as well; tear down on GStreamer's thread pool
     * so the caller gets its error now. The context goes with the pipeline. */
    gst_element_call_async (ctx->video.pipeline, load_context_free_async, ctx, NULL);
    ctx = NULL;
  }

out:
  if (ctx != NULL)
    load_context_free (ctx);
  g_free (display);
  return image;
}

void
sam2q_image_free (Sam2qImage *image)
{
  if (image == NULL)
    return;
  g_free (image->pixels);
  g_free (image);
}

/* ---- writing ----------------------------------------------------------------------------- */

static void
set_write_error (GError **error, const char *display, const char *reason)
{
  g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_WRITE,
               "cannot write %s: %s; choose another output path", display, reason);
}

/* Creates an empty, unique temporary file next to `path` and returns its name. Creating it here
 * (O_EXCL, mode 0666 less the umask, as the final file should have) both reserves the name and
 * turns an unwritable directory into a precise errno before any pipeline is built. */
static char *
create_temp_file (const char *path, const char *display, GError **error)
{
  char *dir = g_path_get_dirname (path);
  char *base = g_path_get_basename (path);
  char *temp = NULL;
  for (int attempt = 0; attempt < 100; attempt++) {
    /* Hidden, marked .tmp, and short enough for NAME_MAX even with a long final name. */
    temp = g_strdup_printf ("%s%s.%.200s.%08x.tmp", dir, G_DIR_SEPARATOR_S, base,
                            g_random_int ());
    int fd = g_open (temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      close (fd);
      break;
    }
    int saved = errno;
    g_clear_pointer (&temp, g_free);
    if (saved != EEXIST) {
      set_write_error (error, display, g_strerror (saved));
      break;
    }
  }
  if (temp == NULL && error != NULL && *error == NULL)
    set_write_error (error, display, "could not create a unique temporary file next to it");
  g_free (dir);
  g_free (base);
  return temp;
}

static void
pipeline_stop_async (GstElement *pipeline, gpointer data)
{
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
}

/* The written bytes of `temp` on the disk before the rename makes them the file: otherwise a
 * crash soon after could leave `path` renamed but empty (filesink closes without fsync). */
static gboolean
sync_file (const char *temp, const char *display, GError **error)
{
  const int fd = g_open (temp, O_RDONLY, 0);
  if (fd < 0 || fsync (fd) != 0) {
    set_write_error (error, display, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return FALSE;
  }
  close (fd);
  return TRUE;
}

/* Runs appsrc ! pngenc ! filesink on one picture and waits for EOS. */
static gboolean
encode_png (const char *temp, const char *display, const GstVideoInfo *info, const guint8 *pixels,
            int stride, int channels, GError **error)
{
  GstElement *src = NULL, *enc = NULL, *sink = NULL;
  if ((src = make_element ("appsrc", "gstreamer1.0-plugins-base", error)) == NULL ||
      (enc = make_element ("pngenc", "gstreamer1.0-plugins-good", error)) == NULL ||
      (sink = make_element ("filesink", "gstreamer1.0 (core elements)", error)) == NULL) {
    GstElement *made[] = { src, enc, sink };
    for (size_t i = 0; i < G_N_ELEMENTS (made); i++)
      if (made[i] != NULL)
        gst_object_unref (gst_object_ref_sink (made[i]));
    return FALSE;
  }

  GstElement *pipeline = gst_pipeline_new ("sam2q-png-write");
  GstCaps *caps = gst_video_info_to_caps (info);
  g_object_set (src, "caps", caps, "format", GST_FORMAT_TIME, NULL);
  gst_caps_unref (caps);
  g_object_set (sink, "location", temp, NULL);
  gst_bin_add_many (GST_BIN (pipeline), src, enc, sink, NULL);
  gboolean ok = FALSE, timed_out = FALSE;
  if (!gst_element_link_many (src, enc, sink, NULL)) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER,
                 "cannot write %s: could not link the PNG encoding pipeline", display);
    goto out;
  }

  /* A buffer without GstVideoMeta is read in GStreamer's default layout (rows padded to 4 bytes),
   * the one layout every element understands; the caller's rows, at any stride, are copied into
   * it rather than described by a meta that pngenc never promised to honour. */
  GstBuffer *buffer = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (info), NULL);
  GstMapInfo map;
  if (buffer == NULL || !gst_buffer_map (buffer, &map, GST_MAP_WRITE)) {
    if (buffer != NULL)
      gst_buffer_unref (buffer);
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_WRITE,
                 "cannot write %s: not enough memory for a %d x %d image", display,
                 GST_VIDEO_INFO_WIDTH (info), GST_VIDEO_INFO_HEIGHT (info));
    goto out;
  }
  const int width = GST_VIDEO_INFO_WIDTH (info), height = GST_VIDEO_INFO_HEIGHT (info);
  const int dst_stride = GST_VIDEO_INFO_PLANE_STRIDE (info, 0);
  const size_t row_bytes = (size_t) width * channels;
  guint8 *dst = map.data + GST_VIDEO_INFO_PLANE_OFFSET (info, 0);
  for (int y = 0; y < height; y++) {
    memcpy (dst + (size_t) y * dst_stride, pixels + (size_t) y * stride, row_bytes);
    /* Padding is never encoded but is zeroed so the buffer holds no uninitialised bytes. */
    memset (dst + (size_t) y * dst_stride + row_bytes, 0, dst_stride - row_bytes);
  }
  gst_buffer_unmap (buffer, &map);
  GST_BUFFER_PTS (buffer) = 0;

  /* READY->PAUSED starts appsrc synchronously, so it accepts the buffer right after this. */
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  gst_app_src_push_buffer (GST_APP_SRC (src), buffer);
  gst_app_src_end_of_stream (GST_APP_SRC (src));

  GstBus *bus = gst_element_get_bus (pipeline);
  const double megapixels = (double) width * height / 1e6;
  const GstClockTime timeout =
      WRITE_TIMEOUT_BASE + (GstClockTime) (megapixels * WRITE_TIMEOUT_PER_MEGAPIXEL);
  GstMessage *msg =
      gst_bus_timed_pop_filtered (bus, timeout, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  if (msg == NULL) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_TIMEOUT,
                 "cannot write %s: encoding did not finish within %d s", display,
                 (int) (timeout / GST_SECOND));
    timed_out = TRUE;
  } else if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *gst_error = NULL;
    gst_message_parse_error (msg, &gst_error, NULL);
    if (gst_error->domain == GST_RESOURCE_ERROR)
      set_write_error (error, display, gst_error->message);
    else
      g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_GSTREAMER,
                   "cannot write %s: PNG encoding failed: %s", display, gst_error->message);
    g_error_free (gst_error);
  } else {
    ok = TRUE;
  }
  if (msg != NULL)
    gst_message_unref (msg);
  gst_object_unref (bus);

out:
  if (timed_out) {
    /* Whatever is stuck (a write to a stalled file system) would block the state change too:
     * stop on GStreamer's thread pool and let the caller remove the temporary file now. */
    gst_element_call_async (pipeline, pipeline_stop_async, NULL, NULL);
    return FALSE;
  }
  /* filesink flushes and closes the file on the way to NULL; only then may it be renamed. */
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  return ok;
}

char *
sam2q_png_write_temp (const char *path, const guint8 *pixels, int width, int height, int stride,
                      int channels, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (pixels != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  char *display = g_filename_display_name (path);
  char *temp = NULL;
  GstVideoFormat format = channels == 1   ? GST_VIDEO_FORMAT_GRAY8
                          : channels == 3 ? GST_VIDEO_FORMAT_RGB
                          : channels == 4 ? GST_VIDEO_FORMAT_RGBA
                                          : GST_VIDEO_FORMAT_UNKNOWN;
  GstVideoInfo info;
  if (format == GST_VIDEO_FORMAT_UNKNOWN) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_INVALID,
                 "cannot write %s: %d channels per pixel; PNG output takes 1 (grey), 3 (RGB) or "
                 "4 (RGBA)", display, channels);
    goto out;
  }
  if (width <= 0 || height <= 0 || width > G_MAXINT / channels || stride < width * channels) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_INVALID,
                 "cannot write %s: invalid image size %d x %d with %d bytes per row", display,
                 width, height, stride);
    goto out;
  }
  if (!sam2q_image_io_init (error))
    goto out;
  gst_video_info_init (&info);
  if (!gst_video_info_set_format (&info, format, width, height)) {
    g_set_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_INVALID,
                 "cannot write %s: an image of %d x %d is too large", display, width, height);
    goto out;
  }
  /* A single picture, not a stream: framerate 0/1 is GStreamer's convention for still images. */
  GST_VIDEO_INFO_FPS_N (&info) = 0;
  GST_VIDEO_INFO_FPS_D (&info) = 1;

  if ((temp = create_temp_file (path, display, error)) == NULL)
    goto out;
  if (!encode_png (temp, display, &info, pixels, stride, channels, error)
      || !sync_file (temp, display, error)) {
    g_unlink (temp);
    g_clear_pointer (&temp, g_free);
  }

out:
  g_free (display);
  return temp;
}

char *
sam2q_text_write_temp (const char *path, const char *text, GError **error)
{
  g_return_val_if_fail (path != NULL && text != NULL, NULL);
  char *display = g_filename_display_name (path);
  char *temp = create_temp_file (path, display, error);
  if (temp != NULL) {
    FILE *f = fopen (temp, "w");
    int err = f == NULL ? errno : 0;
    if (f != NULL && fputs (text, f) < 0)
      err = errno;
    if (f != NULL && fclose (f) != 0 && err == 0)
      err = errno;
    if (err != 0)
      set_write_error (error, display, g_strerror (err));
    if (err != 0 || !sync_file (temp, display, error)) {
      g_unlink (temp);
      g_clear_pointer (&temp, g_free);
    }
  }
  g_free (display);
  return temp;
}

gboolean
sam2q_png_write (const char *path, const guint8 *pixels, int width, int height, int stride,
                 int channels, GError **error)
{
  char *temp = sam2q_png_write_temp (path, pixels, width, height, stride, channels, error);
  if (temp == NULL)
    return FALSE;
  const gboolean ok = g_rename (temp, path) == 0;
  if (!ok) {
    char *display = g_filename_display_name (path);
    set_write_error (error, display, g_strerror (errno));
    g_free (display);
    g_unlink (temp);
  }
  g_free (temp);
  return ok;
}
