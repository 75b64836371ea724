/* image-io.h: reading and writing image files for sam2q through GStreamer's own decoders and
 * encoders (no image library of our own): any format an installed GStreamer plugin decodes
 * (PNG, JPEG, BMP, ...) comes in as RGB8; masks and overlays go out as PNG. */
#ifndef SAM2Q_IMAGE_IO_H
#define SAM2Q_IMAGE_IO_H

#include <glib.h>

G_BEGIN_DECLS

/* The GError domain of everything below. */
#define SAM2Q_IMAGE_ERROR (sam2q_image_error_quark ())
GQuark sam2q_image_error_quark (void);

typedef enum {
  SAM2Q_IMAGE_ERROR_NOT_FOUND,    /* the input file does not exist */
  SAM2Q_IMAGE_ERROR_READ,         /* it exists but cannot be read (permissions, a directory, I/O) */
  SAM2Q_IMAGE_ERROR_UNSUPPORTED,  /* not an image, or no installed GStreamer plugin decodes it */
  SAM2Q_IMAGE_ERROR_CORRUPT,      /* recognised but empty, truncated, damaged or zero-sized */
  SAM2Q_IMAGE_ERROR_TIMEOUT,      /* decoding or encoding did not finish in time */
  SAM2Q_IMAGE_ERROR_WRITE,        /* the output file could not be created, written or renamed */
  SAM2Q_IMAGE_ERROR_GSTREAMER,    /* GStreamer or one of its core elements is unavailable */
  SAM2Q_IMAGE_ERROR_INVALID,      /* bad arguments (size, stride, channel count) */
} Sam2qImageErrorCode;

typedef struct {
  int width, height;
  int stride;                  /* bytes per row (width * 3 rounded as GStreamer lays it out) */
  guint8 *pixels;              /* RGB8 */
} Sam2qImage;

/* Calls gst_init if needed. Errors say what failed ("cannot decode photo.xyz: no decoder for
 * this format; install gstreamer1.0-plugins-good") and never abort. Videos and animations give
 * their first frame. JPEG orientation tags are not applied: pixels come as stored in the file. */
Sam2qImage *sam2q_image_load (const char *path, GError **error);
void sam2q_image_free (Sam2qImage *image);

/* Writes 8-bit grey (channels = 1) or RGB (3) or RGBA (4) pixels as PNG, atomically (temporary
 * file next to `path`, renamed on success; nothing left behind on failure). */
gboolean sam2q_png_write (const char *path, const guint8 *pixels, int width, int height,
                          int stride, int channels, GError **error);

/* The same PNG, flushed to the disk, under a new hidden temporary name beside `path` (in its
 * directory, so that a rename over `path` is atomic); returns that name (g_free it), which the
 * caller renames into place or unlinks: for outputs that must appear together or not at all.
 * Nothing is left behind on failure (NULL). */
char *sam2q_png_write_temp (const char *path, const guint8 *pixels, int width, int height,
                            int stride, int channels, GError **error);

/* `text` the same way: under a new hidden temporary name beside `path`, flushed to the disk
 * (for a summary written with the images it describes). */
char *sam2q_text_write_temp (const char *path, const char *text, GError **error);

/* Initialises GStreamer once per process if the application has not done so already; the two
 * functions above call it themselves. Safe to call from any thread, any number of times. */
gboolean sam2q_image_io_init (GError **error);

G_END_DECLS

#endif
