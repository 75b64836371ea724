/* test-rle.c: COCO run-length encoding against pycocotools.
 *
 * tests/data/rle-refs.json (tools/gen_rle_refs.py) holds what pycocotools 2.0.11 makes of
 * polygons (frPyObjects + merge, as COCO.annToRLE) and of masks (encode): compressed strings,
 * areas and boxes, which must come out identical here. The coco-dev fixture's annotations
 * (uncompressed RLE) must decode to their stated area and box. Round trips, edge sizes and
 * malformed input cover the rest. */
#include "rle.h"
#include "sam2.h"
#include "test-support.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------------- */

static void
assert_message_has (const GError *error, const char *fragment)
{
  if (strstr (error->message, fragment) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", error->message, fragment);
}

static void
assert_counts_equal (const Sam2Rle *rle, const guint32 *counts, int n, const char *what)
{
  if (rle->n_counts != n)
    g_error ("%s: %d runs, expected %d", what, rle->n_counts, n);
  for (int i = 0; i < n; i++)
    if (rle->counts[i] != counts[i])
      g_error ("%s: run %d is %u, expected %u", what, i, rle->counts[i], counts[i]);
}

static void
assert_rles_equal (const Sam2Rle *a, const Sam2Rle *b, const char *what)
{
  g_assert_cmpint (a->height, ==, b->height);
  g_assert_cmpint (a->width, ==, b->width);
  assert_counts_equal (a, b->counts, b->n_counts, what);
}

/* A mask in a buffer wider than its rows, with guard bytes that decoding must leave alone. */
#define GUARD 0xa5
#define PAD 3

static guint8 *
mask_buffer_new (int width, int height, int *stride)
{
  *stride = width + PAD;
  guint8 *buf = g_malloc ((size_t) *stride * MAX (height, 1));
  memset (buf, GUARD, (size_t) *stride * MAX (height, 1));
  return buf;
}

static void
assert_guards_intact (const guint8 *buf, int width, int height, int stride)
{
  for (int y = 0; y < height; y++)
    for (int x = width; x < stride; x++)
      g_assert_cmpuint (buf[(size_t) y * stride + x], ==, GUARD);
}

/* Decodes, re-encodes and goes through the string form, checking each step is lossless. */
static void
assert_round_trip (const Sam2Rle *rle, const char *what)
{
  int stride;
  guint8 *mask = mask_buffer_new (rle->width, rle->height, &stride);
  sam2_rle_decode (rle, mask, stride);
  assert_guards_intact (mask, rle->width, rle->height, stride);
  guint64 ones = 0;
  for (int y = 0; y < rle->height; y++)
    for (int x = 0; x < rle->width; x++) {
      guint8 v = mask[(size_t) y * stride + x];
      g_assert_true (v == 0 || v == 1);
      ones += v;
    }
  g_assert_cmpuint (ones, ==, sam2_rle_area (rle));

  Sam2Rle *again = sam2_rle_encode (mask, rle->width, rle->height, stride);
  assert_rles_equal (again, rle, what);
  char *s = sam2_rle_to_string (rle);
  GError *error = NULL;
  Sam2Rle *parsed = sam2_rle_from_string (s, rle->height, rle->width, &error);
  g_assert_no_error (error);
  assert_rles_equal (parsed, rle, what);
  sam2_rle_free (parsed);
  sam2_rle_free (again);
  g_free (s);
  g_free (mask);
}

static void
assert_bbox (const Sam2Rle *rle, JsonArray *expected, const char *what)
{
  double box[4];
  sam2_rle_bbox (rle, box);
  for (int i = 0; i < 4; i++)
    if (box[i] != json_array_get_double_element (expected, i))
      g_error ("%s: bbox[%d] is %g, expected %g", what, i, box[i],
               json_array_get_double_element (expected, i));
}

/* tests/data sits next to this directory; meson runs tests from the build root, which is where
 * the compiler's relative __FILE__ starts. $SAM2_TEST_DATA overrides. */
static JsonParser *
load_refs (void)
{
  const char *dir = g_getenv ("SAM2_TEST_DATA");
  char *path;
  if (dir != NULL && *dir != '\0') {
    path = g_build_filename (dir, "rle-refs.json", NULL);
  } else {
    char *here = g_path_get_dirname (__FILE__);
    path = g_build_filename (here, "..", "data", "rle-refs.json", NULL);
    g_free (here);
  }
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    g_error ("%s not found: run the test from the build directory or set SAM2_TEST_DATA to "
             "the project's tests/data", path);
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  g_free (path);
  return parser;
}

static JsonArray *
refs_array (JsonParser *parser, const char *name)
{
  return json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), name);
}

static guint32 *
uint_array (JsonArray *array, int *n)
{
  *n = (int) json_array_get_length (array);
  guint32 *values = g_new (guint32, MAX (*n, 1));
  for (int i = 0; i < *n; i++)
    values[i] = (guint32) json_array_get_int_element (array, i);
  return values;
}

/* ---- pycocotools references ------------------------------------------------------------- */

static void
test_refs_polygons (void)
{
  JsonParser *parser = load_refs ();
  JsonArray *cases = refs_array (parser, "polygons");
  g_assert_cmpuint (json_array_get_length (cases), >=, 20);
  for (guint c = 0; c < json_array_get_length (cases); c++) {
    JsonObject *ref = json_array_get_object_element (cases, c);
    const char *name = json_object_get_string_member (ref, "name");
    const int height = json_object_get_int_member (ref, "height");
    const int width = json_object_get_int_member (ref, "width");
    JsonArray *polys = json_object_get_array_member (ref, "polygons");
    const int n_polygons = json_array_get_length (polys);
    double **coords = g_new (double *, n_polygons);
    int *n_coords = g_new (int, n_polygons);
    for (int p = 0; p < n_polygons; p++) {
      JsonArray *poly = json_array_get_array_element (polys, p);
      n_coords[p] = json_array_get_length (poly);
      coords[p] = g_new (double, n_coords[p]);
      for (int j = 0; j < n_coords[p]; j++)
        coords[p][j] = json_array_get_double_element (poly, j);
    }

    GError *error = NULL;
    Sam2Rle *rle = sam2_rle_from_polygons ((const double *const *) coords, n_coords, n_polygons,
                                           height, width, &error);
    g_assert_no_error (error);
    char *s = sam2_rle_to_string (rle);
    const char *expected = json_object_get_string_member (ref, "counts");
    if (strcmp (s, expected) != 0)
      g_error ("polygon case %s: counts \"%s\", pycocotools \"%s\"", name, s, expected);
    g_assert_cmpuint (sam2_rle_area (rle), ==, json_object_get_int_member (ref, "area"));
    assert_bbox (rle, json_object_get_array_member (ref, "bbox"), name);
    assert_round_trip (rle, name);

    sam2_rle_free (rle);
    g_free (s);
    for (int p = 0; p < n_polygons; p++)
      g_free (coords[p]);
    g_free (coords);
    g_free (n_coords);
  }
  g_object_unref (parser);
}

static void
test_refs_masks (void)
{
  JsonParser *parser = load_refs ();
  JsonArray *cases = refs_array (parser, "masks");
  g_assert_cmpuint (json_array_get_length (cases), >=, 10);
  for (guint c = 0; c < json_array_get_length (cases); c++) {
    JsonObject *ref = json_array_get_object_element (cases, c);
    const char *name = json_object_get_string_member (ref, "name");
    const int height = json_object_get_int_member (ref, "height");
    const int width = json_object_get_int_member (ref, "width");
    int n_runs;
    guint32 *runs = uint_array (json_object_get_array_member (ref, "runs"), &n_runs);

    GError *error = NULL;
    Sam2Rle *from_runs = sam2_rle_from_counts (runs, n_runs, height, width, &error);
    g_assert_no_error (error);
    /* Pixels to runs is compared with maskUtils.encode through the string. */
    int stride;
    guint8 *mask = mask_buffer_new (width, height, &stride);
    sam2_rle_decode (from_runs, mask, stride);
    Sam2Rle *encoded = sam2_rle_encode (mask, width, height, stride);
    assert_counts_equal (encoded, runs, n_runs, name);
    char *s = sam2_rle_to_string (encoded);
    const char *expected = json_object_get_string_member (ref, "counts");
    if (strcmp (s, expected) != 0)
      g_error ("mask case %s: counts \"%s\", pycocotools \"%s\"", name, s, expected);

    Sam2Rle *parsed = sam2_rle_from_string (expected, height, width, &error);
    g_assert_no_error (error);
    assert_counts_equal (parsed, runs, n_runs, name);
    g_assert_cmpuint (sam2_rle_area (parsed), ==, json_object_get_int_member (ref, "area"));
    assert_bbox (parsed, json_object_get_array_member (ref, "bbox"), name);
    assert_round_trip (parsed, name);

    sam2_rle_free (parsed);
    sam2_rle_free (encoded);
    sam2_rle_free (from_runs);
    g_free (s);
    g_free (mask);
    g_free (runs);
  }
  g_object_unref (parser);
}

/* ---- properties ------------------------------------------------------------------------- */

static void
test_empty_and_full (void)
{
  const int sizes[][2] = { { 1, 1 }, { 5, 3 }, { 64, 48 }, { 1, 300 }, { 300, 1 } };
  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++) {
    const int w = sizes[i][0], h = sizes[i][1];
    int stride;
    guint8 *mask = mask_buffer_new (w, h, &stride);
    for (int y = 0; y < h; y++)
      memset (mask + (size_t) y * stride, 0, w);
    Sam2Rle *empty = sam2_rle_encode (mask, w, h, stride);
    const guint32 empty_counts[] = { (guint32) (w * h) };
    assert_counts_equal (empty, empty_counts, 1, "empty");
    g_assert_cmpuint (sam2_rle_area (empty), ==, 0);
    double box[4];
    sam2_rle_bbox (empty, box);
    g_assert_true (box[0] == 0 && box[1] == 0 && box[2] == 0 && box[3] == 0);
    assert_round_trip (empty, "empty");

    /* Any non-zero byte counts as set. */
    for (int y = 0; y < h; y++)
      memset (mask + (size_t) y * stride, 0xff, w);
    Sam2Rle *full = sam2_rle_encode (mask, w, h, stride);
    const guint32 full_counts[] = { 0, (guint32) (w * h) };
    assert_counts_equal (full, full_counts, 2, "full");
    g_assert_cmpuint (sam2_rle_area (full), ==, (guint64) w * h);
    sam2_rle_bbox (full, box);
    g_assert_true (box[0] == 0 && box[1] == 0 && box[2] == w && box[3] == h);
    assert_round_trip (full, "full");
    sam2_rle_free (empty);
    sam2_rle_free (full);
    g_free (mask);
  }
}

static void
test_zero_size (void)
{
  GError *error = NULL;
  Sam2Rle *rle = sam2_rle_encode (NULL, 0, 7, 0);
  const guint32 zero[] = { 0 };
  assert_counts_equal (rle, zero, 1, "0 x 7");
  g_assert_cmpuint (sam2_rle_area (rle), ==, 0);
  char *s = sam2_rle_to_string (rle);
  g_assert_cmpstr (s, ==, "0");
  Sam2Rle *parsed = sam2_rle_from_string (s, 7, 0, &error);
  g_assert_no_error (error);
  assert_rles_equal (parsed, rle, "0 x 7 parsed");
  sam2_rle_free (parsed);
  parsed = sam2_rle_from_string ("", 0, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (parsed->n_counts, ==, 0);
  g_assert_cmpuint (sam2_rle_area (parsed), ==, 0);
  sam2_rle_free (parsed);
  Sam2Rle *none = sam2_rle_from_polygons (NULL, NULL, 0, 4, 5, &error);
  g_assert_no_error (error);
  const guint32 all[] = { 20 };
  assert_counts_equal (none, all, 1, "no polygons");
  sam2_rle_free (none);
  sam2_rle_free (rle);
  g_free (s);
  sam2_rle_free (NULL);
}

/* splitmix64: random masks that are the same on every run. */
static guint64
next_random (guint64 *state)
{
  guint64 z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void
test_random_round_trips (void)
{
  guint64 state = 42;
  for (int trial = 0; trial < 200; trial++) {
    const int w = 1 + (int) (next_random (&state) % 70), h = 1 + (int) (next_random (&state) % 70);
    /* Densities from almost empty to almost full, and runs from single pixels to columns. */
    const guint64 threshold = next_random (&state);
    const int run = 1 + (int) (next_random (&state) % 40);
    int stride;
    guint8 *mask = mask_buffer_new (w, h, &stride);
    guint8 value = 0;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        if ((x * h + y) % run == 0)
          value = next_random (&state) < threshold ? (guint8) (1 + next_random (&state) % 255) : 0;
        mask[(size_t) y * stride + x] = value;
      }
    Sam2Rle *rle = sam2_rle_encode (mask, w, h, stride);
    guint64 total = 0;
    for (int i = 0; i < rle->n_counts; i++) {
      total += rle->counts[i];
      if (i > 0)       /* canonical: only the leading run of zeros may be empty */
        g_assert_cmpuint (rle->counts[i], >, 0);
    }
    g_assert_cmpuint (total, ==, (guint64) w * h);
    assert_round_trip (rle, "random");

    int decoded_stride;
    guint8 *decoded = mask_buffer_new (w, h, &decoded_stride);
    sam2_rle_decode (rle, decoded, decoded_stride);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        g_assert_cmpuint (decoded[(size_t) y * decoded_stride + x], ==,
                          mask[(size_t) y * stride + x] != 0);
    sam2_rle_free (rle);
    g_free (mask);
    g_free (decoded);
  }
}

/* Long runs with large differences between them need several characters per count, with both
 * signs; pycocotools' own format is checked by the references, this checks the range. */
/* A mask that is 0 outside a rectangle, encoded from the rectangle alone, gives the counts of
 * the whole mask: rectangles at the edges, empty, full, one pixel, and frames of zero size. */
static void
test_region (void)
{
  GRand *r = g_rand_new_with_seed (4242);
  for (int i = 0; i < 400; i++) {
    const int W = g_rand_int_range (r, 0, 40), H = g_rand_int_range (r, 0, 40);
    const int x0 = W > 0 ? g_rand_int_range (r, 0, W + 1) : 0;
    const int y0 = H > 0 ? g_rand_int_range (r, 0, H + 1) : 0;
    const int w = g_rand_int_range (r, 0, W - x0 + 1), h = g_rand_int_range (r, 0, H - y0 + 1);
    const int stride = w + g_rand_int_range (r, 0, 4);
    const int fill = g_rand_int_range (r, 0, 4);   /* 0: empty, 3: full, else random */
    guint8 *region = g_malloc0 ((size_t) MAX (stride * h, 1));
    guint8 *full = g_malloc0 ((size_t) MAX (W * H, 1));
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        const guint8 v = fill == 3 ? 255 : fill == 0 ? 0 : g_rand_int_range (r, 0, 2) * 7;
        region[(size_t) y * stride + x] = v;
        full[(size_t) (y0 + y) * W + x0 + x] = v;
      }
    Sam2Rle *want = sam2_rle_encode (full, W, H, W);
    Sam2Rle *got = sam2_rle_encode_region (region, stride, x0, y0, w, h, W, H);
    g_assert_nonnull (got);
    g_assert_cmpint (got->width, ==, W);
    g_assert_cmpint (got->height, ==, H);
    g_assert_cmpmem (got->counts, got->n_counts * sizeof (guint32), want->counts,
                     want->n_counts * sizeof (guint32));
    sam2_rle_free (want);
    sam2_rle_free (got);
    g_free (region);
    g_free (full);
  }
  g_rand_free (r);
}

static void
test_large_counts (void)
{
  const guint32 counts[] = { 5, 3000000, 1, 7, 2999990, 123456, 1 };
  guint64 total = 0;
  for (size_t i = 0; i < G_N_ELEMENTS (counts); i++)
    total += counts[i];
  /* 6123460 = 4 * 1530865 */
  g_assert_cmpuint (total, ==, 6123460);
  GError *error = NULL;
  Sam2Rle *rle = sam2_rle_from_counts (counts, G_N_ELEMENTS (counts), 4, 1530865, &error);
  g_assert_no_error (error);
  char *s = sam2_rle_to_string (rle);
  Sam2Rle *parsed = sam2_rle_from_string (s, 4, 1530865, &error);
  g_assert_no_error (error);
  assert_rles_equal (parsed, rle, "large counts");
  g_assert_cmpuint (sam2_rle_area (rle), ==, 3000000 + 7 + 123456);
  sam2_rle_free (parsed);
  sam2_rle_free (rle);
  g_free (s);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void
expect_string_error (const char *counts, int height, int width, const char *fragment)
{
  GError *error = NULL;
  Sam2Rle *rle = sam2_rle_from_string (counts, height, width, &error);
  g_assert_null (rle);
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, fragment);
  g_error_free (error);
}

static void
test_string_errors (void)
{
  /* "51" is runs 5, 1: a 2 x 3 mask. */
  GError *error = NULL;
  Sam2Rle *ok = sam2_rle_from_string ("51", 2, 3, &error);
  g_assert_no_error (error);
  sam2_rle_free (ok);

  expect_string_error ("5 1", 2, 3, "character 1 is ' '");
  expect_string_error ("5p", 2, 3, "character 1 is 'p'");
  expect_string_error ("5\x01", 2, 3, "(0x01)");
  /* 'P' = 48 + 32: the continuation bit is set on the last character. */
  expect_string_error ("5P", 2, 3, "ends in the middle of count 1");
  expect_string_error ("51", 2, 4, "add up to 6 pixels but a 2 x 4");
  expect_string_error ("511", 2, 3, "add up to 7 pixels");
  /* '?' = 48 + 15 has no sign bit... '@' = 48 + 16 is -16: a negative first run. */
  expect_string_error ("@", 2, 3, "count 0 (from character 0) is -16");
  /* The fourth count is the second plus the difference: 1 - 2 < 0. */
  expect_string_error ("51>", 2, 3, "add up to");
  expect_string_error ("5111N", 2, 3, "count 4 (from character 4) is -1");
  expect_string_error ("PPPPPPPP0", 2, 3, "longer than 7 characters");
  expect_string_error ("", 2, 3, "0 runs add up to 0 pixels");
  expect_string_error ("0", -1, 3, "invalid RLE size -1 x 3");
  expect_string_error ("0", 70000, 70000, "at most 2^32 - 1 pixels");
}

static void
test_counts_errors (void)
{
  GError *error = NULL;
  const guint32 counts[] = { 2, 3, 1 };
  g_assert_null (sam2_rle_from_counts (counts, 3, 2, 2, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, "3 runs add up to 6 pixels but a 2 x 2");
  g_clear_error (&error);
  g_assert_null (sam2_rle_from_counts (counts, 3, -2, 3, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_clear_error (&error);
  /* Runs whose sum only fits in 64 bits must not wrap around to the right total. */
  const guint32 huge[] = { G_MAXUINT32, G_MAXUINT32, 2 };
  g_assert_null (sam2_rle_from_counts (huge, 3, 1, 0, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_clear_error (&error);
}

static void
test_polygon_errors (void)
{
  GError *error = NULL;
  const double odd[] = { 1, 2, 3, 4, 5 };
  const double *polys[] = { odd };
  int n = 5;
  g_assert_null (sam2_rle_from_polygons (polys, &n, 1, 10, 10, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, "polygon 0: 5 coordinates");
  g_clear_error (&error);

  const double good[] = { 1, 1, 8, 1, 4, 8 };
  const double nan_poly[] = { 1, 1, NAN, 1, 4, 8 };
  const double *two[] = { good, nan_poly };
  int n2[] = { 6, 6 };
  g_assert_null (sam2_rle_from_polygons (two, n2, 2, 10, 10, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, "polygon 1: coordinate 2 is nan");
  g_clear_error (&error);

  const double far[] = { 1, 1, 8, 1, 4, 1e9 };
  const double *far_polys[] = { far };
  g_assert_null (sam2_rle_from_polygons (far_polys, n2, 1, 10, 10, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, "coordinate 5 is 1e+09");
  g_clear_error (&error);

  /* Vertices within range but zig-zagging far outside the image: 1000 edges of 2e6 pixels
   * would trace 1e10 points (80 GB); refused before anything is allocated. */
  double *zigzag = g_new (double, 2000);
  for (int j = 0; j < 1000; j++) {
    zigzag[2 * j] = j % 2 ? 1e6 : -1e6;
    zigzag[2 * j + 1] = j;
  }
  const double *zigzag_polys[] = { zigzag };
  int n_zigzag = 2000;
  g_assert_null (sam2_rle_from_polygons (zigzag_polys, &n_zigzag, 1, 10, 10, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  assert_message_has (error, "far outside the 10x10 image");
  g_clear_error (&error);
  g_free (zigzag);

  /* A repeated vertex (a zero-length edge, whose slope was 0 / 0 and its row a NaN converted
   * to int) rasterises as the polygon without the repeat, as in the reference. */
  const double once[] = { 1, 1, 8, 1, 4, 8 }, twice[] = { 1, 1, 8, 1, 8, 1, 4, 8 };
  const double *once_polys[] = { once }, *twice_polys[] = { twice };
  int n_once = 6, n_twice = 8;
  Sam2Rle *a = sam2_rle_from_polygons (once_polys, &n_once, 1, 10, 10, &error);
  Sam2Rle *b = sam2_rle_from_polygons (twice_polys, &n_twice, 1, 10, 10, &error);
  g_assert_no_error (error);
  g_assert_cmpint (a->n_counts, ==, b->n_counts);
  g_assert_cmpmem (a->counts, a->n_counts * sizeof (guint32), b->counts,
                   b->n_counts * sizeof (guint32));
  sam2_rle_free (a);
  sam2_rle_free (b);

  /* A polygon of one or two vertices has no inside. */
  const double point[] = { 3, 3 };
  const double *point_polys[] = { point };
  int one = 2;
  Sam2Rle *rle = sam2_rle_from_polygons (point_polys, &one, 1, 10, 10, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (sam2_rle_area (rle), ==, 0);
  sam2_rle_free (rle);
}

/* ---- fixtures ---------------------------------------------------------------------------- */

/* The coco-dev annotations are uncompressed RLE with the area and box pycocotools computed. */
static void
test_coco_dev_annotations (void)
{
  char *path = sam2_test_fixture_path ("sam2-shapes/coco-dev/annotations/instances_val2017.json");
  if (path == NULL)
    return;
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  JsonArray *anns = json_object_get_array_member (root, "annotations");
  g_assert_cmpuint (json_array_get_length (anns), ==, 48);
  for (guint i = 0; i < json_array_get_length (anns); i++) {
    JsonObject *ann = json_array_get_object_element (anns, i);
    JsonObject *seg = json_object_get_object_member (ann, "segmentation");
    JsonArray *size = json_object_get_array_member (seg, "size");
    const int height = json_array_get_int_element (size, 0);
    const int width = json_array_get_int_element (size, 1);
    int n;
    guint32 *counts = uint_array (json_object_get_array_member (seg, "counts"), &n);
    Sam2Rle *rle = sam2_rle_from_counts (counts, n, height, width, &error);
    g_assert_no_error (error);
    char *what = g_strdup_printf ("coco-dev annotation %u", i);
    g_assert_cmpuint (sam2_rle_area (rle), ==, json_object_get_int_member (ann, "area"));
    assert_bbox (rle, json_object_get_array_member (ann, "bbox"), what);
    assert_round_trip (rle, what);
    g_free (what);
    g_free (counts);
    sam2_rle_free (rle);
  }
  g_object_unref (parser);
  g_free (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/rle/refs/polygons", test_refs_polygons);
  g_test_add_func ("/rle/refs/masks", test_refs_masks);
  g_test_add_func ("/rle/empty-and-full", test_empty_and_full);
  g_test_add_func ("/rle/zero-size", test_zero_size);
  g_test_add_func ("/rle/random-round-trips", test_random_round_trips);
  g_test_add_func ("/rle/large-counts", test_large_counts);
  g_test_add_func ("/rle/region", test_region);
  g_test_add_func ("/rle/errors/string", test_string_errors);
  g_test_add_func ("/rle/errors/counts", test_counts_errors);
  g_test_add_func ("/rle/errors/polygons", test_polygon_errors);
  g_test_add_func ("/rle/fixture/coco-dev", test_coco_dev_annotations);
  return g_test_run ();
}
