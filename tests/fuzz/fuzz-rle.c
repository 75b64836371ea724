/* fuzz-rle.c: the COCO mask readers of core/rle.c (compressed RLE strings, polygons) on
 * arbitrary bytes, as sam2q reads them from COCO / SA-1B annotation files.
 *
 * Built two ways: by run-fuzz.sh with libFuzzer and ASan/UBSan, and by meson with corpus-main.c,
 * which replays the committed corpus as a regression test. Input: byte 0 the mask height and
 * byte 1 its width (each modulo 40), byte 2 the kind (even: the rest is an RLE string; odd: the
 * rest is polygons, byte 3 their count modulo 4 and then little-endian doubles, split evenly).
 * Besides crashes it checks the readers' promises: a SAM2_ERROR_FORMAT exactly when reading
 * fails, and for an accepted mask: runs that add up to height x width, an area within the mask
 * equal to the decoded pixels, and a string form that reads back to the same pixels.
 */
#include "rle.h"
#include "sam2.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define MAX_POLYGONS 4

static void
fuzz_require (gboolean condition)
{
  if (!condition)
    abort ();
}

static void
fuzz_check_accepted (const Sam2Rle *rle, int height, int width)
{
  fuzz_require (rle->height == height && rle->width == width && rle->n_counts >= 0);
  guint64 total = 0;
  for (int i = 0; i < rle->n_counts; i++)
    total += rle->counts[i];
  fuzz_require (total == (guint64) height * width);

  guint8 *mask = g_malloc0 ((size_t) MAX (height * width, 1));
  sam2_rle_decode (rle, mask, width);
  guint64 set = 0;
  for (int i = 0; i < height * width; i++) {
    fuzz_require (mask[i] <= 1);
    set += mask[i];
  }
  fuzz_require (sam2_rle_area (rle) == set);

  /* the string form reads back to the same pixels */
  char *s = sam2_rle_to_string (rle);
  GError *error = NULL;
  Sam2Rle *back = sam2_rle_from_string (s, height, width, &error);
  if (back == NULL) {
    g_printerr ("to_string output does not read back: %s\n%s\n", error->message, s);
    abort ();
  }
  guint8 *again = g_malloc0 ((size_t) MAX (height * width, 1));
  sam2_rle_decode (back, again, width);
  fuzz_require (memcmp (mask, again, (size_t) height * width) == 0);
  sam2_rle_free (back);
  g_free (again);
  g_free (s);
  g_free (mask);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 3)
    return 0;
  const int height = data[0] % 40, width = data[1] % 40;
  const gboolean polygons = data[2] & 1;
  data += 3;
  size -= 3;

  GError *error = NULL;
  Sam2Rle *rle;
  if (!polygons) {
    char *text = g_strndup ((const char *) data, size);
    rle = sam2_rle_from_string (text, height, width, &error);
    g_free (text);
  } else {
    if (size < 1)
      return 0;
    const int n_polygons = data[0] % MAX_POLYGONS;
    const size_t n_values = (size - 1) / sizeof (double);
    double *values = g_new0 (double, MAX (n_values, 1));
    memcpy (values, data + 1, n_values * sizeof (double));
    const double *polys[MAX_POLYGONS];
    int n_coords[MAX_POLYGONS];
    size_t at = 0;
    for (int i = 0; i < n_polygons; i++) {
      const size_t share = n_values / n_polygons;
      polys[i] = values + at;
      n_coords[i] = (int) share;
      at += share;
    }
    rle = sam2_rle_from_polygons (polys, n_coords, n_polygons, height, width, &error);
    g_free (values);
  }
  if (rle != NULL) {
    fuzz_require (error == NULL);
    fuzz_check_accepted (rle, height, width);
    sam2_rle_free (rle);
  } else {
    fuzz_require (error != NULL && g_error_matches (error, SAM2_ERROR, SAM2_ERROR_FORMAT));
    fuzz_require (error->message != NULL && error->message[0] != '\0');
    g_clear_error (&error);
  }
  return 0;
}
