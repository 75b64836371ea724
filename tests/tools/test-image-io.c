/* test-image-io.c: sam2q's image reading and PNG writing through GStreamer.
 *
 * PNG is lossless, so pictures written with sam2q_png_write must read back with exactly the same
 * pixels (grey expanded to R = G = B, alpha dropped), whatever the stride they were written from.
 * JPEG files are produced with GStreamer's own jpegenc and compared approximately. Every failure
 * must come back as a GError in SAM2Q_IMAGE_ERROR and leave no temporary file behind. */
#include "image-io.h"
#include "tmp-tree.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>

typedef struct {
  char *dir;                   /* a fresh directory per test case */
} Fixture;

/* Temporary files of sam2q_png_write are hidden and end in .tmp; none may survive a call. */
static void
assert_no_temp_files (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  g_assert_nonnull (dir);
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL) {
    if (name[0] == '.' && g_str_has_suffix (name, ".tmp"))
      g_error ("temporary file %s left behind in %s", name, path);
    char *child = g_build_filename (path, name, NULL);
    if (g_file_test (child, G_FILE_TEST_IS_DIR))
      assert_no_temp_files (child);
    g_free (child);
  }
  g_dir_close (dir);
}

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  f->dir = g_dir_make_tmp ("sam2q-image-io-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  assert_no_temp_files (f->dir);
  remove_tree (f->dir);
  g_free (f->dir);
}

static char *
fixture_path (Fixture *f, const char *name)
{
  return g_build_filename (f->dir, name, NULL);
}

static void
write_file (const char *path, const void *data, gsize size)
{
  GError *error = NULL;
  g_file_set_contents (path, data, (gssize) size, &error);
  g_assert_no_error (error);
}

/* Runs a gst-launch style pipeline to EOS. The file it writes is set on the element named "out"
 * (no escaping of the path in the description); `input`, if given, is pushed into the appsrc
 * named "in" with `input_caps`. */
static void
run_pipeline (const char *description, const char *out_path, GstCaps *input_caps,
              GstBuffer *input)
{
  GError *error = NULL;
  sam2q_image_io_init (&error);
  g_assert_no_error (error);
  GstElement *pipeline = gst_parse_launch (description, &error);
  g_assert_no_error (error);
  GstElement *out = gst_bin_get_by_name (GST_BIN (pipeline), "out");
  g_object_set (out, "location", out_path, NULL);
  gst_object_unref (out);
  GstElement *in = NULL;
  if (input != NULL) {
    in = gst_bin_get_by_name (GST_BIN (pipeline), "in");
    g_object_set (in, "caps", input_caps, "format", GST_FORMAT_TIME, NULL);
  }
  g_assert_cmpint (gst_element_set_state (pipeline, GST_STATE_PLAYING), !=,
                   GST_STATE_CHANGE_FAILURE);
  if (in != NULL) {
    g_assert_cmpint (gst_app_src_push_buffer (GST_APP_SRC (in), input), ==, GST_FLOW_OK);
    gst_app_src_end_of_stream (GST_APP_SRC (in));
    gst_object_unref (in);
  }
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
                                                GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (msg);
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    gst_message_parse_error (msg, &error, NULL);
    g_assert_no_error (error);
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
}

/* A deterministic picture with `channels` bytes per pixel at `stride`; padding bytes hold 0xAB
 * so that a writer reading them would show up as wrong pixels or a wrong size. */
static guint8 *
make_pixels (int width, int height, int stride, int channels)
{
  guint8 *pixels = g_malloc ((size_t) stride * height);
  memset (pixels, 0xAB, (size_t) stride * height);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      for (int c = 0; c < channels; c++)
        pixels[(size_t) y * stride + (size_t) x * channels + c] =
            (guint8) (x * 7 + y * 13 + c * 71 + (x * y) % 5);
  return pixels;
}

/* The RGB value the loader must return for pixel (x, y) of a picture from make_pixels. */
static void
expected_rgb (const guint8 *pixels, int stride, int channels, int x, int y, guint8 rgb[3])
{
  const guint8 *p = pixels + (size_t) y * stride + (size_t) x * channels;
  for (int c = 0; c < 3; c++)
    rgb[c] = channels == 1 ? p[0] : p[c];
}

static void
assert_image_equals (const Sam2qImage *image, const guint8 *pixels, int width, int height,
                     int stride, int channels)
{
  g_assert_nonnull (image);
  g_assert_cmpint (image->width, ==, width);
  g_assert_cmpint (image->height, ==, height);
  g_assert_cmpint (image->stride, >=, width * 3);
  g_assert_cmpint (image->stride % 4, ==, 0);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      guint8 want[3];
      expected_rgb (pixels, stride, channels, x, y, want);
      const guint8 *got = image->pixels + (size_t) y * image->stride + (size_t) x * 3;
      if (memcmp (got, want, 3) != 0)
        g_error ("pixel (%d, %d) of a %d-channel %dx%d picture: got %u,%u,%u, want %u,%u,%u", x,
                 y, channels, width, height, got[0], got[1], got[2], want[0], want[1], want[2]);
    }
}

static void
roundtrip (Fixture *f, const char *name, int width, int height, int stride, int channels)
{
  GError *error = NULL;
  char *path = fixture_path (f, name);
  guint8 *pixels = make_pixels (width, height, stride, channels);
  g_assert_true (sam2q_png_write (path, pixels, width, height, stride, channels, &error));
  g_assert_no_error (error);
  Sam2qImage *image = sam2q_image_load (path, &error);
  g_assert_no_error (error);
  assert_image_equals (image, pixels, width, height, stride, channels);
  sam2q_image_free (image);
  g_free (pixels);
  g_free (path);
}

/* ---- PNG round trips --------------------------------------------------------------------- */

static void
test_png_gray (Fixture *f, gconstpointer data)
{
  roundtrip (f, "gray.png", 33, 17, 40, 1);
  roundtrip (f, "gray-tight.png", 33, 17, 33, 1);
  roundtrip (f, "gray-1x1.png", 1, 1, 1, 1);
}

static void
test_png_rgb (Fixture *f, gconstpointer data)
{
  roundtrip (f, "rgb.png", 33, 17, 33 * 3 + 5, 3);
  roundtrip (f, "rgb-tight.png", 33, 17, 33 * 3, 3);
  roundtrip (f, "rgb-large.png", 640, 480, 640 * 3, 3);
}

static void
test_png_rgba (Fixture *f, gconstpointer data)
{
  /* Alpha takes 231 values, 0 and 255 included: the loader must drop it, not premultiply. */
  roundtrip (f, "rgba.png", 33, 17, 33 * 4 + 12, 4);
  roundtrip (f, "rgba-tight.png", 33, 17, 33 * 4, 4);
}

static void
test_png_odd_names (Fixture *f, gconstpointer data)
{
  /* What gst-launch syntax would need escaped must reach filesrc / filesink verbatim. */
  roundtrip (f, "with space 'single' \"double\" ! pipe=x.png", 5, 3, 15, 3);
  roundtrip (f, "caf\xc3\xa9 \xe2\x9c\x93.png", 5, 3, 5, 1);
}

static void
test_png_overwrite_and_mode (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "mask.png");
  write_file (path, "old contents", 12);
  roundtrip (f, "mask.png", 9, 4, 9, 1);

  /* The temporary file is created with 0666 less the umask, so the renamed result has the
   * permissions any other newly created file would have (not mkstemp's 0600). */
  mode_t mask = umask (022);
  umask (mask);
  struct stat st;
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0666 & ~mask);
  g_free (path);
}

/* ---- JPEG, videos ------------------------------------------------------------------------- */

static void
test_jpeg_approximate (Fixture *f, gconstpointer data)
{
  const int width = 64, height = 48, stride = width * 3;
  GError *error = NULL;
  char *path = fixture_path (f, "gradient.jpg");
  /* Smooth content, so a quality-95 JPEG stays within a few levels everywhere. */
  guint8 *pixels = g_malloc ((size_t) stride * height);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      guint8 *p = pixels + (size_t) y * stride + (size_t) x * 3;
      p[0] = (guint8) (x * 4);
      p[1] = (guint8) (y * 5);
      p[2] = (guint8) (128 + x - y);
    }
  GstVideoInfo info;
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_RGB, width, height);
  GST_VIDEO_INFO_FPS_N (&info) = 0;
  GST_VIDEO_INFO_FPS_D (&info) = 1;
  GstCaps *caps = gst_video_info_to_caps (&info);
  run_pipeline ("appsrc name=in ! videoconvert ! jpegenc quality=95 ! filesink name=out", path,
                caps, gst_buffer_new_memdup (pixels, (gsize) stride * height));
  gst_caps_unref (caps);

  Sam2qImage *image = sam2q_image_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (image->width, ==, width);
  g_assert_cmpint (image->height, ==, height);
  double sum = 0;
  int worst = 0;
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      for (int c = 0; c < 3; c++) {
        int d = abs ((int) image->pixels[(size_t) y * image->stride + (size_t) x * 3 + c] -
                     (int) pixels[(size_t) y * stride + (size_t) x * 3 + c]);
        sum += d;
        worst = MAX (worst, d);
      }
  const double mean = sum / (width * height * 3);
  g_test_message ("JPEG q95 round trip: mean |diff| %.2f, max %d", mean, worst);
  g_assert_cmpfloat (mean, <, 2.0);
  g_assert_cmpint (worst, <=, 16);
  g_free (pixels);
  sam2q_image_free (image);
  g_free (path);
}

static void
test_jpeg_large (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  char *path = fixture_path (f, "large.jpg");
  run_pipeline ("videotestsrc num-buffers=1 pattern=smpte ! "
                "video/x-raw,width=4000,height=3000,framerate=0/1 ! jpegenc ! filesink name=out",
                path, NULL, NULL);
  Sam2qImage *image = sam2q_image_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (image->width, ==, 4000);
  g_assert_cmpint (image->height, ==, 3000);
  g_assert_cmpint (image->stride, ==, 12000);
  /* SMPTE bars: the first bar is grey-white, the second yellow (no blue). Exact levels depend on
   * jpegenc / jpegdec range handling, so only the colours are checked. */
  const guint8 *p = image->pixels + (size_t) 1500 * image->stride + 100 * 3;
  g_assert_cmpint (p[0], >, 150);
  g_assert_cmpint (abs (p[0] - p[1]), <=, 8);
  g_assert_cmpint (abs (p[0] - p[2]), <=, 8);
  p = image->pixels + (size_t) 1500 * image->stride + 900 * 3;
  g_assert_cmpint (p[0], >, 150);
  g_assert_cmpint (p[1], >, 150);
  g_assert_cmpint (p[2], <, 40);
  /* The last pixel is decoded too (light grey there, not the zeros of a short copy). */
  p = image->pixels + (size_t) 2999 * image->stride + 3999 * 3;
  g_assert_cmpint (p[0], >, 100);
  g_assert_cmpint (abs (p[0] - p[1]), <=, 8);
  g_assert_cmpint (abs (p[0] - p[2]), <=, 8);
  sam2q_image_free (image);
  g_free (path);
}

static void
test_video_first_frame (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  char *path = fixture_path (f, "clip.avi");
  /* The ball moves from frame to frame, so only frame 0 matches a one-frame encode of the same
   * pattern; the audio track is there to be ignored. */
  run_pipeline ("videotestsrc num-buffers=10 pattern=ball ! "
                "video/x-raw,width=96,height=64,framerate=10/1 ! jpegenc ! mux. "
                "audiotestsrc num-buffers=10 samplesperbuffer=800 ! audio/x-raw,rate=8000 ! mux. "
                "avimux name=mux ! filesink name=out", path, NULL, NULL);
  char *first_path = fixture_path (f, "first.jpg");
  run_pipeline ("videotestsrc num-buffers=1 pattern=ball ! "
                "video/x-raw,width=96,height=64,framerate=10/1 ! jpegenc ! filesink name=out",
                first_path, NULL, NULL);
  Sam2qImage *image = sam2q_image_load (path, &error);
  g_assert_no_error (error);
  Sam2qImage *first = sam2q_image_load (first_path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (image->width, ==, 96);
  g_assert_cmpint (image->height, ==, 64);
  g_assert_cmpint (image->stride, ==, first->stride);
  /* Same encoder, same input frame, same decoder: identical bytes. */
  g_assert_cmpmem (image->pixels, (gsize) image->stride * image->height, first->pixels,
                   (gsize) first->stride * first->height);
  sam2q_image_free (image);
  sam2q_image_free (first);
  g_free (first_path);
  g_free (path);
}

/* ---- load errors -------------------------------------------------------------------------- */

static void
assert_load_fails (const char *path, int code, const char *fragment)
{
  GError *error = NULL;
  Sam2qImage *image = sam2q_image_load (path, &error);
  g_assert_null (image);
  /* The code also proves the failure was recognised, not caught by the 30 s guard (TIMEOUT). */
  g_assert_error (error, SAM2Q_IMAGE_ERROR, code);
  g_test_message ("%s -> %s", path, error->message);
  if (strstr (error->message, fragment) == NULL)
    g_error ("error \"%s\" does not mention \"%s\"", error->message, fragment);
  g_error_free (error);
}

static void
test_load_missing (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "missing.png");
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_NOT_FOUND, "file not found");
  g_free (path);
}

static void
test_load_text (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "notes.png");
  const char *text = "These are notes, not a picture.\nSecond line of plain text.\n";
  write_file (path, text, strlen (text));
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "not an image file");

  /* Longer text is recognised as text/plain, which decodebin refuses differently. */
  GString *long_text = g_string_new (NULL);
  for (int i = 0; i < 200; i++)
    g_string_append_printf (long_text, "line %d of a plain text file that is not a picture\n", i);
  write_file (path, long_text->str, long_text->len);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "not an image file");
  g_string_free (long_text, TRUE);
  g_free (path);
}

static void
test_load_empty (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "empty.png");
  write_file (path, "", 0);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_CORRUPT, "empty");
  g_free (path);
}

static void
test_load_directory (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "folder.png");
  g_assert_cmpint (g_mkdir (path, 0755), ==, 0);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_READ, "directory");
  g_free (path);
}

/* Whether any installed decoder (avdec_webp, webpdec, ...) takes `media_type`. */
static gboolean
have_decoder_for (const char *media_type)
{
  GList *decoders = gst_element_factory_list_get_elements (GST_ELEMENT_FACTORY_TYPE_DECODER,
                                                           GST_RANK_MARGINAL);
  GstCaps *caps = gst_caps_new_empty_simple (media_type);
  GList *taking = gst_element_factory_list_filter (decoders, caps, GST_PAD_SINK, FALSE);
  gboolean found = taking != NULL;
  gst_plugin_feature_list_free (taking);
  gst_plugin_feature_list_free (decoders);
  gst_caps_unref (caps);
  return found;
}

static void
test_load_unknown_format (Fixture *f, gconstpointer data)
{
  /* A WebP header: typefinding recognises it. Without a WebP decoder (-bad or -libav) the error
   * must name the type and the packages; with one, the bogus body must fail to decode. */
  static const guint8 webp[] = {
    'R', 'I', 'F', 'F', 0x24, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' ', 0x18, 0, 0, 0,
    1,   2,   3,   4,   5,    6, 7, 8, 9,   10,  11,  12,  13,  14,  15,  16,  17,   18, 19, 20,
    21,  22,  23,  24,
  };
  GError *error = NULL;
  g_assert_true (sam2q_image_io_init (&error));
  g_assert_no_error (error);
  char *path = fixture_path (f, "picture.webp");
  write_file (path, webp, sizeof webp);
  if (!have_decoder_for ("image/webp")) {
    assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "no GStreamer decoder");
    assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "image/webp");
    assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "gstreamer1.0-plugins-");
  } else {
    g_test_message ("a WebP decoder is installed: checking that a damaged WebP fails cleanly");
    assert_load_fails (path, SAM2Q_IMAGE_ERROR_CORRUPT, "cannot decode");
  }
  g_free (path);
}

static void
test_load_corrupt_png (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  char *path = fixture_path (f, "damaged.png");
  guint8 *pixels = make_pixels (64, 64, 64 * 3, 3);
  g_assert_true (sam2q_png_write (path, pixels, 64, 64, 64 * 3, 3, &error));
  g_assert_no_error (error);
  char *contents;
  gsize size;
  g_file_get_contents (path, &contents, &size, &error);
  g_assert_no_error (error);

  /* Keep the signature and IHDR (typefinding still says PNG), scramble the pixel data. */
  for (gsize i = 64; i < size; i++)
    contents[i] = (char) (i * 37 + 11);
  write_file (path, contents, size);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_CORRUPT, "cannot decode");

  /* Cut off half-way through the pixel data. */
  g_free (contents);
  g_assert_true (sam2q_png_write (path, pixels, 64, 64, 64 * 3, 3, &error));
  g_assert_no_error (error);
  g_file_get_contents (path, &contents, &size, &error);
  g_assert_no_error (error);
  write_file (path, contents, size / 2);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_CORRUPT, "cannot decode");

  g_free (contents);
  g_free (pixels);
  g_free (path);
}

static void
test_load_audio_only (Fixture *f, gconstpointer data)
{
  /* Decodable, but nothing in it is a picture: an error at once, not a wait for the timeout. */
  char *path = fixture_path (f, "sound.wav");
  run_pipeline ("audiotestsrc num-buffers=5 ! wavenc ! filesink name=out", path, NULL, NULL);
  assert_load_fails (path, SAM2Q_IMAGE_ERROR_UNSUPPORTED, "no video stream");
  g_free (path);
}

/* ---- write errors ------------------------------------------------------------------------- */

static void
assert_write_fails (const char *path, int width, int height, int stride, int channels, int code,
                    const char *fragment)
{
  GError *error = NULL;
  guint8 pixels[64 * 4] = { 0 };
  g_assert_false (sam2q_png_write (path, pixels, width, height, stride, channels, &error));
  g_assert_error (error, SAM2Q_IMAGE_ERROR, code);
  g_test_message ("%s -> %s", path, error->message);
  if (strstr (error->message, fragment) == NULL)
    g_error ("error \"%s\" does not mention \"%s\"", error->message, fragment);
  g_error_free (error);
}

static void
test_write_parent_is_file (Fixture *f, gconstpointer data)
{
  /* A regular file as the parent fails with ENOTDIR even for root, unlike permission bits. */
  char *parent = fixture_path (f, "plain-file");
  write_file (parent, "x", 1);
  char *path = g_build_filename (parent, "out.png", NULL);
  assert_write_fails (path, 4, 4, 4, 1, SAM2Q_IMAGE_ERROR_WRITE, path);
  assert_write_fails (path, 4, 4, 4, 1, SAM2Q_IMAGE_ERROR_WRITE, "Not a directory");
  assert_write_fails (path, 4, 4, 4, 1, SAM2Q_IMAGE_ERROR_WRITE, "choose another output path");
  g_free (path);
  g_free (parent);
}

static void
test_write_missing_dir (Fixture *f, gconstpointer data)
{
  char *path = g_build_filename (f->dir, "no-such-dir", "out.png", NULL);
  assert_write_fails (path, 4, 4, 4, 1, SAM2Q_IMAGE_ERROR_WRITE, "No such file or directory");
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_free (path);
}

static void
test_write_onto_directory (Fixture *f, gconstpointer data)
{
  /* Encoding succeeds, the final rename cannot replace a directory: the temporary file must go. */
  char *path = fixture_path (f, "taken.png");
  g_assert_cmpint (g_mkdir (path, 0755), ==, 0);
  assert_write_fails (path, 4, 4, 12, 3, SAM2Q_IMAGE_ERROR_WRITE, "choose another output path");
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_DIR));
  g_free (path);
}

static void
test_write_invalid_arguments (Fixture *f, gconstpointer data)
{
  char *path = fixture_path (f, "bad.png");
  assert_write_fails (path, 4, 4, 8, 2, SAM2Q_IMAGE_ERROR_INVALID, "channels");
  assert_write_fails (path, 4, 4, 11, 3, SAM2Q_IMAGE_ERROR_INVALID, "invalid image size");
  assert_write_fails (path, 0, 4, 4, 1, SAM2Q_IMAGE_ERROR_INVALID, "invalid image size");
  assert_write_fails (path, 4, -1, 4, 1, SAM2Q_IMAGE_ERROR_INVALID, "invalid image size");
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_free (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(name, func) \
  g_test_add ("/image-io/" name, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  /* Loading first: sam2q_image_load must initialise GStreamer on its own. */
  ADD ("load/missing", test_load_missing);
  ADD ("load/text-renamed-png", test_load_text);
  ADD ("load/empty-file", test_load_empty);
  ADD ("load/directory", test_load_directory);
  ADD ("load/unknown-format", test_load_unknown_format);
  ADD ("load/corrupt-png", test_load_corrupt_png);
  ADD ("load/audio-only", test_load_audio_only);
  ADD ("png/gray", test_png_gray);
  ADD ("png/rgb", test_png_rgb);
  ADD ("png/rgba", test_png_rgba);
  ADD ("png/odd-names", test_png_odd_names);
  ADD ("png/overwrite-and-mode", test_png_overwrite_and_mode);
  ADD ("jpeg/approximate", test_jpeg_approximate);
  ADD ("jpeg/large-4000x3000", test_jpeg_large);
  ADD ("video/first-frame", test_video_first_frame);
  ADD ("write/parent-is-file", test_write_parent_is_file);
  ADD ("write/missing-directory", test_write_missing_dir);
  ADD ("write/onto-directory", test_write_onto_directory);
  ADD ("write/invalid-arguments", test_write_invalid_arguments);
#undef ADD
  return g_test_run ();
}
