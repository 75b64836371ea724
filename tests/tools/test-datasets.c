/* test-datasets.c: sam2q's datasets (examples/sam2q/datasets.h).
 *
 * coco on the coco-dev fixture must give back exactly the pictures, masks, boxes and points of
 * eval_dev.safetensors, from which it was made. Hand-made COCO and SA-1B directories (PNG
 * through image-io, masks as polygons and RLE through core/rle.c) cover every segmentation
 * form, points.json and the fallbacks; a video written by shapes-video must decode to the
 * frames the shapes scene draws; the random dataset must be a pure function of its seed. Errors
 * must name what is missing or wrong. */
#include "datasets.h"
#include "eval-dataset.h"
#include "sam2.h"
#include "shapes.h"
#include "test-support.h"
#include "tmp-tree.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#include <glib/gstdio.h>

typedef struct {
  char *dir;                   /* a fresh directory per test case */
} Fixture;

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  f->dir = g_dir_make_tmp ("sam2q-datasets-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  remove_tree (f->dir);
  g_free (f->dir);
}

static char *
fixture_path (Fixture *f, const char *first, ...) G_GNUC_NULL_TERMINATED;

static char *
fixture_path (Fixture *f, const char *first, ...)
{
  va_list args;
  va_start (args, first);
  char *rest = g_build_filename_valist (first, &args);
  va_end (args);
  char *path = g_build_filename (f->dir, rest, NULL);
  g_free (rest);
  return path;
}

static void
write_text (const char *path, const char *text)
{
  char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0755);
  g_free (dir);
  GError *error = NULL;
  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

static void
assert_message_has (const GError *error, const char *fragment)
{
  g_assert_nonnull (error);
  if (strstr (error->message, fragment) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", error->message, fragment);
}

/* A picture of shapes written as PNG, with its masks (n x h x w) if asked for. */
static guint8 *
write_shapes_png (const char *path, guint64 seed, int w, int h, int n, guint8 **masks)
{
  guint8 *rgb = g_malloc ((size_t) w * h * 3);
  *masks = g_malloc ((size_t) n * w * h);
  sam2_shapes_draw (seed, w, h, n, rgb, w * 3, *masks);
  char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0755);
  g_free (dir);
  GError *error = NULL;
  sam2q_png_write (path, rgb, w, h, w * 3, 3, &error);
  g_assert_no_error (error);
  return rgb;
}

static void
assert_pixels_equal (const Sam2qImage *image, const guint8 *rgb, int w, int h)
{
  g_assert_cmpint (image->width, ==, w);
  g_assert_cmpint (image->height, ==, h);
  for (int y = 0; y < h; y++)
    g_assert_cmpmem (image->pixels + (size_t) y * image->stride, (size_t) w * 3,
                     rgb + (size_t) y * w * 3, (size_t) w * 3);
}

static void
assert_mask_equal (const Sam2qAnnotation *a, const guint8 *expected, int w, int h)
{
  guint8 *mask = sam2q_annotation_get_mask (a);
  g_assert_cmpint (a->mask->width, ==, w);
  g_assert_cmpint (a->mask->height, ==, h);
  for (size_t i = 0; i < (size_t) w * h; i++)
    if (mask[i] != (expected[i] != 0))
      g_error ("mask differs at pixel (%d, %d)", (int) (i % w), (int) (i / w));
  g_free (mask);
}

/* The point must be the centre of a mask pixel, and the one sam2_shapes_mask_point picks. */
static void
assert_interior_point (const Sam2qAnnotation *a)
{
  guint8 *mask = sam2q_annotation_get_mask (a);
  const int w = a->mask->width, h = a->mask->height;
  const int x = (int) floor (a->point[0]), y = (int) floor (a->point[1]);
  g_assert_cmpint (x, >=, 0);
  g_assert_cmpint (x, <, w);
  g_assert_cmpint (y, >=, 0);
  g_assert_cmpint (y, <, h);
  g_assert_cmpuint (mask[(size_t) y * w + x], ==, 1);
  double expected[2];
  g_assert_true (sam2_shapes_mask_point (mask, w, h, w, expected));
  g_assert_cmpfloat (a->point[0], ==, expected[0]);
  g_assert_cmpfloat (a->point[1], ==, expected[1]);
  g_free (mask);
}

static void
assert_box (const double box[4], double x0, double y0, double x1, double y1)
{
  g_assert_cmpfloat (box[0], ==, x0);
  g_assert_cmpfloat (box[1], ==, y0);
  g_assert_cmpfloat (box[2], ==, x1);
  g_assert_cmpfloat (box[3], ==, y1);
}

static Sam2qDataset *
open_ok (const char *kind, const char *path, const Sam2qDatasetOptions *options)
{
  GError *error = NULL;
  Sam2qDataset *ds = sam2q_dataset_open (kind, path, options, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ds);
  return ds;
}

static void
next_ok (Sam2qDataset *ds, Sam2qSample *sample)
{
  GError *error = NULL;
  gboolean more = sam2q_dataset_next (ds, sample, &error);
  g_assert_no_error (error);
  g_assert_true (more);
}

static void
assert_end (Sam2qDataset *ds, Sam2qSample *sample)
{
  GError *error = NULL;
  g_assert_false (sam2q_dataset_next (ds, sample, &error));
  g_assert_no_error (error);
  g_assert_null (sample->image);
}

static void
expect_open_error (const char *kind, const char *path, const Sam2qDatasetOptions *options,
                   int code, const char *fragment)
{
  GError *error = NULL;
  g_assert_null (sam2q_dataset_open (kind, path, options, &error));
  g_assert_error (error, SAM2Q_DATASET_ERROR, code);
  assert_message_has (error, fragment);
  g_error_free (error);
}

/* ---- coco on the fixture ---------------------------------------------------------------- */

static const Sam2StTensor *
find_tensor (Sam2Safetensors *st, const char *name, Sam2DType dtype, int64_t numel)
{
  const Sam2StTensor *t = sam2_safetensors_find (st, name);
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, dtype);
  g_assert_cmpint (t->numel, ==, numel);
  return t;
}

static float
f32_at (const Sam2StTensor *t, int64_t i)
{
  float v;
  memcpy (&v, (const guint8 *) t->data + 4 * i, 4);
  return v;
}

static void
test_coco_dev (void)
{
  char *root = sam2_test_fixture_path ("sam2-shapes/coco-dev");
  if (root == NULL)
    return;
  Sam2Safetensors *st = sam2_test_open_fixture ("sam2-shapes/eval_dev.safetensors");
  if (st == NULL) {
    g_free (root);
    return;
  }
  const int n = 48, s = 256;
  const Sam2StTensor *images =
      find_tensor (st, "images_rgb_u8", SAM2_DTYPE_U8, (int64_t) n * s * s * 3);
  const Sam2StTensor *masks = find_tensor (st, "gt_masks_u8", SAM2_DTYPE_U8, (int64_t) n * s * s);
  const Sam2StTensor *points = find_tensor (st, "points_xy", SAM2_DTYPE_F32, n * 2);
  const Sam2StTensor *boxes = find_tensor (st, "boxes_xyxy", SAM2_DTYPE_F32, n * 4);

  Sam2qDataset *ds = open_ok ("coco", root, NULL);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, n);
  Sam2qSample sample = { 0 };
  for (int i = 0; i < n; i++) {
    next_ok (ds, &sample);
    char *name = g_strdup_printf ("%012d.png", i + 1);
    g_assert_cmpstr (sample.name, ==, name);
    g_free (name);
    g_assert_cmpint (sample.index, ==, i);
    g_assert_cmpint (sample.image_id, ==, i + 1);
    /* PNG is lossless: the pictures are those of the fixture, byte for byte. */
    const guint8 *pixels = (const guint8 *) images->data + (size_t) i * s * s * 3;
    assert_pixels_equal (sample.image, pixels, s, s);
    g_assert_cmpint (sample.n_annotations, ==, 1);
    const Sam2qAnnotation *a = &sample.annotations[0];
    assert_mask_equal (a, (const guint8 *) masks->data + (size_t) i * s * s, s, s);
    assert_box (a->box, f32_at (boxes, 4 * i), f32_at (boxes, 4 * i + 1),
                f32_at (boxes, 4 * i + 2), f32_at (boxes, 4 * i + 3));
    /* points.json holds the fixture's prompts. */
    g_assert_cmpfloat (a->point[0], ==, f32_at (points, 2 * i));
    g_assert_cmpfloat (a->point[1], ==, f32_at (points, 2 * i + 1));
    g_assert_cmpint (a->category_id, ==, 1);
    g_assert_false (a->iscrowd);
    g_assert_cmpint (a->id, ==, i + 1);
  }
  assert_end (ds, &sample);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, n);
  sam2q_dataset_free (ds);

  Sam2qDatasetOptions options = { .limit = 5 };
  ds = open_ok ("coco", root, &options);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 5);
  for (int i = 0; i < 5; i++)
    next_ok (ds, &sample);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  sam2_safetensors_close (st);
  g_free (root);
}

/* ---- hand-made coco --------------------------------------------------------------------- */

#define COCO_W 96
#define COCO_H 64

static void
append_counts (GString *json, const Sam2Rle *rle)
{
  g_string_append (json, "[");
  for (int i = 0; i < rle->n_counts; i++)
    g_string_append_printf (json, "%s%u", i > 0 ? "," : "", rle->counts[i]);
  g_string_append (json, "]");
}

/* Writes ROOT/val2017/{a,b}.png and the annotation file: picture a with a polygon, a polygon
 * in two parts and a crowd region in uncompressed RLE; picture b with shape 0 of its masks in
 * compressed RLE and no bbox (taken from the mask). Returns b's shape-0 mask. */
static guint8 *
write_coco (Fixture *f, const char *extra_annotation)
{
  char *a_png = fixture_path (f, "coco", "val2017", "a.png", NULL);
  char *b_png = fixture_path (f, "coco", "val2017", "b.png", NULL);
  guint8 *masks_a, *masks_b;
  g_free (write_shapes_png (a_png, 11, COCO_W, COCO_H, 3, &masks_a));
  g_free (write_shapes_png (b_png, 12, COCO_W, COCO_H, 3, &masks_b));
  Sam2Rle *crowd = sam2_rle_encode (masks_a, COCO_W, COCO_H, COCO_W);
  Sam2Rle *shape = sam2_rle_encode (masks_b, COCO_W, COCO_H, COCO_W);
  char *counts = sam2_rle_to_string (shape);
  /* Compressed counts may hold backslashes, which JSON escapes. */
  char *compressed = g_strescape (counts, NULL);
  g_free (counts);

  GString *json = g_string_new ("{\"images\": [");
  g_string_append_printf (json, "{\"id\": 7, \"file_name\": \"a.png\", \"width\": %d, "
                          "\"height\": %d},", COCO_W, COCO_H);
  g_string_append_printf (json, "{\"id\": 9, \"file_name\": \"b.png\", \"width\": %d, "
                          "\"height\": %d}], \"annotations\": [", COCO_W, COCO_H);
  g_string_append (json, "{\"id\": 100, \"image_id\": 7, \"category_id\": 3, \"iscrowd\": 0, "
                   "\"bbox\": [10, 5, 30, 20], \"segmentation\": [[10, 5, 40, 5, 25, 25]]},");
  g_string_append (json, "{\"id\": 101, \"image_id\": 9, \"category_id\": 4, "
                   "\"segmentation\": {\"size\": [64, 96], \"counts\": \"");
  g_string_append (json, compressed);
  g_string_append (json, "\"}},");
  g_string_append (json, "{\"id\": 102, \"image_id\": 7, \"category_id\": 5, \"bbox\": [50, 10, "
                   "40, 40], \"segmentation\": [[50, 10, 90, 10, 90, 50, 80, 50, 80, 20, 60, 20, "
                   "60, 50, 50, 50], [0, 60, 4, 60, 2, 63]]},");
  g_string_append (json, "{\"id\": 103, \"image_id\": 7, \"iscrowd\": 1, \"bbox\": [0, 0, 1, 1], "
                   "\"segmentation\": {\"size\": [64, 96], \"counts\": ");
  append_counts (json, crowd);
  g_string_append (json, "}}");
  if (extra_annotation != NULL)
    g_string_append_printf (json, ", %s", extra_annotation);
  g_string_append (json, "], \"categories\": []}");
  char *ann = fixture_path (f, "coco", "annotations", "instances_val2017.json", NULL);
  write_text (ann, json->str);

  g_string_free (json, TRUE);
  g_free (ann);
  g_free (compressed);
  sam2_rle_free (crowd);
  sam2_rle_free (shape);
  g_free (a_png);
  g_free (b_png);
  g_free (masks_a);
  guint8 *b0 = g_memdup2 (masks_b, COCO_W * COCO_H);
  g_free (masks_b);
  return b0;
}

static void
test_coco_handmade (Fixture *f, gconstpointer data)
{
  guint8 *b0 = write_coco (f, NULL);
  char *root = fixture_path (f, "coco", NULL);
  Sam2qDataset *ds = open_ok ("coco", root, NULL);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 2);
  Sam2qSample sample = { 0 };

  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "a.png");
  g_assert_cmpint (sample.image_id, ==, 7);
  g_assert_cmpint (sample.n_annotations, ==, 3);
  const Sam2qAnnotation *tri = &sample.annotations[0];
  g_assert_cmpint (tri->id, ==, 100);
  g_assert_cmpint (tri->category_id, ==, 3);
  assert_box (tri->box, 10, 5, 40, 25);
  g_assert_cmpuint (tri->area, >, 250);
  assert_interior_point (tri);
  /* A polygon in two parts, one of them concave: the point must avoid the notch. */
  const Sam2qAnnotation *u = &sample.annotations[1];
  g_assert_cmpint (u->id, ==, 102);
  assert_interior_point (u);
  g_assert_false (u->point[0] > 60 && u->point[0] < 80 && u->point[1] > 20);
  const Sam2qAnnotation *crowd = &sample.annotations[2];
  g_assert_true (crowd->iscrowd);
  g_assert_cmpint (crowd->id, ==, 103);
  assert_box (crowd->box, 0, 0, 1, 1);     /* the annotation's own bbox wins */
  assert_interior_point (crowd);

  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "b.png");
  g_assert_cmpint (sample.n_annotations, ==, 1);
  const Sam2qAnnotation *rle = &sample.annotations[0];
  assert_mask_equal (rle, b0, COCO_W, COCO_H);
  g_assert_false (rle->iscrowd);
  double box[4];
  sam2_shapes_mask_box (b0, COCO_W, COCO_H, COCO_W, box);
  assert_box (rle->box, box[0], box[1], box[2], box[3]);
  assert_interior_point (rle);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  /* points.json: by annotation id, and by image in annotation order. */
  char *points = fixture_path (f, "coco", "points.json", NULL);
  write_text (points, "[{\"image_id\": 7, \"point\": [1.5, 2.5], \"label\": 1},"
              " {\"image_id\": 7, \"point\": [3, 4]},"
              " {\"annotation_id\": 101, \"image_id\": 9, \"point\": [5.25, 6]}]");
  ds = open_ok ("coco", root, NULL);
  next_ok (ds, &sample);
  g_assert_cmpfloat (sample.annotations[0].point[0], ==, 1.5);
  g_assert_cmpfloat (sample.annotations[0].point[1], ==, 2.5);
  g_assert_cmpfloat (sample.annotations[1].point[0], ==, 3);
  g_assert_cmpfloat (sample.annotations[1].point[1], ==, 4);
  assert_interior_point (&sample.annotations[2]);     /* no third entry for image 7 */
  next_ok (ds, &sample);
  g_assert_cmpfloat (sample.annotations[0].point[0], ==, 5.25);
  g_assert_cmpfloat (sample.annotations[0].point[1], ==, 6);
  sam2q_sample_clear (&sample);
  sam2q_dataset_free (ds);

  write_text (points, "[{\"image_id\": 7, \"point\": [1.5]}]");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT, "points.json: entry 0");
  /* a negative point was taken as a positive one */
  write_text (points, "[{\"image_id\": 7, \"point\": [1, 2], \"label\": 1},"
              " {\"image_id\": 7, \"point\": [1, 2], \"label\": 0}]");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT,
                     "points.json: entry 1 has a \"label\" other than 1");

  g_free (points);
  g_free (root);
  g_free (b0);
}

static void
test_coco_errors (Fixture *f, gconstpointer data)
{
  char *root = fixture_path (f, "coco", NULL);
  char *missing = fixture_path (f, "nowhere", NULL);
  expect_open_error ("coco", missing, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND, "is not a directory");
  g_mkdir_with_parents (root, 0755);
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND,
                     "annotations/instances_val2017.json");
  Sam2qDatasetOptions train = { .split = "train2017" };
  expect_open_error ("coco", root, &train, SAM2Q_DATASET_ERROR_NOT_FOUND,
                     "annotations/instances_train2017.json not found");

  char *ann = fixture_path (f, "coco", "annotations", "instances_val2017.json", NULL);
  write_text (ann, "{\"images\": [\n{\"id\": 1,, }]}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT,
                     "instances_val2017.json: invalid JSON at line 2");
  /* nesting that overflowed json-glib's stack: refused before json-glib sees it */
  GString *deep = g_string_new ("{\"images\": ");
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, ']');
  g_string_append_c (deep, '}');
  write_text (ann, deep->str);
  g_string_free (deep, TRUE);
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT, "nested more than");
  write_text (ann, "{\"images\": [{\"id\": 1, \"file_name\": \"x.png\", \"width\": 4}]}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT, "images[0] needs");
  /* 2^32 x 2^32 pixels: the product overflowed int64 (to 0) in the size check */
  write_text (ann, "{\"images\": [{\"id\": 1, \"file_name\": \"x.png\", \"width\": 4294967296, "
              "\"height\": 4294967296}]}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT, "has an invalid size");
  /* a side past int with a plane under 2^32: it was cast to int (-1294967296 pixels wide) */
  write_text (ann, "{\"images\": [{\"id\": 1, \"file_name\": \"x.png\", \"width\": 3000000000, "
              "\"height\": 1}]}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT, "has an invalid size");
  write_text (ann, "{\"images\": [], \"annotations\": [{\"id\": 1, \"image_id\": 5}]}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_FORMAT,
                     "annotations[0] refers to image_id 5");
  write_text (ann, "{\"images\": []}");
  expect_open_error ("coco", root, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND, "val2017 is missing");

  /* Per-sample errors name the sample and let the next one through. */
  g_free (write_coco (f, "{\"id\": 200, \"image_id\": 9, \"segmentation\": {\"size\": [64, 96], "
                      "\"counts\": [1, 2, 3]}}"));
  char *b_png = fixture_path (f, "coco", "val2017", "b.png", NULL);
  Sam2qDataset *ds = open_ok ("coco", root, NULL);
  Sam2qSample sample = { 0 };
  next_ok (ds, &sample);
  GError *error = NULL;
  g_assert_false (sam2q_dataset_next (ds, &sample, &error));
  g_assert_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT);
  assert_message_has (error, "annotations[4] (id 200)");
  assert_message_has (error, "add up to 6 pixels");
  g_clear_error (&error);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  g_free (write_coco (f, "{\"id\": 201, \"image_id\": 9, \"segmentation\": {\"size\": [60, 96], "
                      "\"counts\": \"0\"}}"));
  ds = open_ok ("coco", root, NULL);
  next_ok (ds, &sample);
  g_assert_false (sam2q_dataset_next (ds, &sample, &error));
  assert_message_has (error, "size is 60 x 96 (height x width) but the picture is 64 x 96");
  g_clear_error (&error);
  sam2q_dataset_free (ds);

  g_unlink (b_png);
  ds = open_ok ("coco", root, NULL);
  next_ok (ds, &sample);
  g_assert_false (sam2q_dataset_next (ds, &sample, &error));
  g_assert_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_NOT_FOUND);
  assert_message_has (error, "coco dataset, sample 1: ");
  assert_message_has (error, "b.png");
  g_clear_error (&error);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  g_free (b_png);
  g_free (ann);
  g_free (missing);
  g_free (root);
}

/* ---- sa1b ------------------------------------------------------------------------------- */

#define SA_W 80
#define SA_H 60
#define SA_SHAPES 3

/* sa_N.json for a picture of shapes: every visible shape as compressed RLE with its bbox and
 * point_coords (its interior point moved by a quarter pixel, to tell it from a computed one). */
static guint8 *
write_sa1b_pair (Fixture *f, int number, gboolean name_in_json)
{
  char *png = g_strdup_printf ("sa_%d.%s", number, name_in_json ? "png" : "jpg");
  char *png_path = fixture_path (f, "sa1b", png, NULL);
  guint8 *masks;
  /* A PNG under a .jpg name: decodebin goes by the contents, as SA-1B needs no more. */
  g_free (write_shapes_png (png_path, 30 + number, SA_W, SA_H, SA_SHAPES, &masks));
  GString *json = g_string_new ("{\"image\": {");
  g_string_append_printf (json, "\"image_id\": %d, \"width\": %d, \"height\": %d", 1000 + number,
                          SA_W, SA_H);
  if (name_in_json)
    g_string_append_printf (json, ", \"file_name\": \"%s\"", png);
  g_string_append (json, "}, \"annotations\": [");
  int written = 0;
  for (int i = 0; i < SA_SHAPES; i++) {
    const guint8 *mask = masks + (size_t) i * SA_W * SA_H;
    double box[4], point[2];
    if (!sam2_shapes_mask_box (mask, SA_W, SA_H, SA_W, box))
      continue;
    sam2_shapes_mask_point (mask, SA_W, SA_H, SA_W, point);
    Sam2Rle *rle = sam2_rle_encode (mask, SA_W, SA_H, SA_W);
    char *raw = sam2_rle_to_string (rle);
    char *counts = g_strescape (raw, NULL);     /* backslashes are JSON escapes */
    g_free (raw);
    g_string_append_printf (json, "%s{\"id\": %d, \"segmentation\": {\"size\": [%d, %d], "
                            "\"counts\": \"%s\"}, \"bbox\": [%g, %g, %g, %g], \"area\": %"
                            G_GUINT64_FORMAT ", \"point_coords\": [[%g, %g]], "
                            "\"predicted_iou\": 0.9, \"crop_box\": [0, 0, %d, %d]}",
                            written++ > 0 ? ", " : "", i, SA_H, SA_W, counts, box[0], box[1],
                            box[2] - box[0], box[3] - box[1], sam2_rle_area (rle),
                            point[0] + 0.25, point[1], SA_W, SA_H);
    g_free (counts);
    sam2_rle_free (rle);
  }
  g_string_append (json, "]}");
  char *name = g_strdup_printf ("sa_%d.json", number);
  char *json_path = fixture_path (f, "sa1b", name, NULL);
  write_text (json_path, json->str);
  g_string_free (json, TRUE);
  g_free (json_path);
  g_free (name);
  g_free (png_path);
  g_free (png);
  return masks;
}

static void
check_sa1b_sample (const Sam2qSample *sample, const guint8 *masks)
{
  int k = 0;
  for (int i = 0; i < SA_SHAPES; i++) {
    const guint8 *mask = masks + (size_t) i * SA_W * SA_H;
    double box[4], point[2];
    if (!sam2_shapes_mask_box (mask, SA_W, SA_H, SA_W, box))
      continue;
    g_assert_cmpint (k, <, sample->n_annotations);
    const Sam2qAnnotation *a = &sample->annotations[k++];
    g_assert_cmpint (a->id, ==, i);
    assert_mask_equal (a, mask, SA_W, SA_H);
    assert_box (a->box, box[0], box[1], box[2], box[3]);
    sam2_shapes_mask_point (mask, SA_W, SA_H, SA_W, point);
    g_assert_cmpfloat (a->point[0], ==, point[0] + 0.25);
    g_assert_cmpfloat (a->point[1], ==, point[1]);
  }
  g_assert_cmpint (k, ==, sample->n_annotations);
}

static void
test_sa1b (Fixture *f, gconstpointer data)
{
  guint8 *masks1 = write_sa1b_pair (f, 1, TRUE);
  guint8 *masks2 = write_sa1b_pair (f, 2, FALSE);
  char *dir = fixture_path (f, "sa1b", NULL);
  Sam2qDataset *ds = open_ok ("sa1b", dir, NULL);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 2);
  Sam2qSample sample = { 0 };
  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "sa_1.png");
  g_assert_cmpint (sample.image_id, ==, 1001);
  check_sa1b_sample (&sample, masks1);
  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "sa_2.jpg");
  check_sa1b_sample (&sample, masks2);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  /* A third annotation file whose picture is missing: named in the error, then the end. */
  g_free (write_sa1b_pair (f, 3, FALSE));
  char *jpg = fixture_path (f, "sa1b", "sa_3.jpg", NULL);
  g_unlink (jpg);
  ds = open_ok ("sa1b", dir, NULL);
  next_ok (ds, &sample);
  next_ok (ds, &sample);
  GError *error = NULL;
  g_assert_false (sam2q_dataset_next (ds, &sample, &error));
  g_assert_error (error, SAM2Q_IMAGE_ERROR, SAM2Q_IMAGE_ERROR_NOT_FOUND);
  assert_message_has (error, "sa_3.jpg");
  g_clear_error (&error);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  char *json3 = fixture_path (f, "sa1b", "sa_3.json", NULL);
  write_text (json3, "{\"image\": {\"width\": 80}}");
  ds = open_ok ("sa1b", dir, NULL);
  next_ok (ds, &sample);
  next_ok (ds, &sample);
  g_assert_false (sam2q_dataset_next (ds, &sample, &error));
  g_assert_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT);
  assert_message_has (error, "sa_3.json: expected \"image\"");
  g_clear_error (&error);
  sam2q_dataset_free (ds);

  /* "annotations" missing, or not a list: an error naming the file and the member (it was read
   * as a picture without objects); sa_3.jpg is there again, so only the member is wrong */
  g_free (write_sa1b_pair (f, 3, FALSE));
  const struct { const char *json, *message; } bad_annotations[] = {
    { "{\"image\": {\"width\": 80, \"height\": 60}, \"annotations\": {}}",
      "sa_3.json: \"annotations\" is not a list" },
    { "{\"image\": {\"width\": 80, \"height\": 60}}", "sa_3.json: \"annotations\" is missing" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad_annotations); i++) {
    write_text (json3, bad_annotations[i].json);
    ds = open_ok ("sa1b", dir, NULL);
    next_ok (ds, &sample);
    next_ok (ds, &sample);
    g_assert_false (sam2q_dataset_next (ds, &sample, &error));
    g_assert_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT);
    assert_message_has (error, bad_annotations[i].message);
    g_clear_error (&error);
    sam2q_dataset_free (ds);
  }

  char *empty = fixture_path (f, "empty", NULL);
  g_mkdir_with_parents (empty, 0755);
  expect_open_error ("sa1b", empty, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND, "no SA-1B annotation");

  sam2q_sample_clear (&sample);
  g_free (empty);
  g_free (json3);
  g_free (jpg);
  g_free (dir);
  g_free (masks1);
  g_free (masks2);
}

/* ---- images ----------------------------------------------------------------------------- */

static void
test_images (Fixture *f, gconstpointer data)
{
  char *a = fixture_path (f, "pics", "a.png", NULL);
  char *b = fixture_path (f, "pics", "B.PNG", NULL);
  guint8 *masks;
  guint8 *rgb_a = write_shapes_png (a, 1, 40, 30, 2, &masks);
  g_free (masks);
  guint8 *rgb_b = write_shapes_png (b, 2, 50, 20, 2, &masks);
  g_free (masks);
  char *text = fixture_path (f, "pics", "notes.txt", NULL);
  write_text (text, "not a picture");
  char *hidden = fixture_path (f, "pics", ".hidden.png", NULL);
  write_text (hidden, "hidden files are skipped");
  char *sub = fixture_path (f, "pics", "sub.png", NULL);
  g_mkdir_with_parents (sub, 0755);

  char *dir = fixture_path (f, "pics", NULL);
  Sam2qDataset *ds = open_ok ("images", dir, NULL);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 2);
  Sam2qSample sample = { 0 };
  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "B.PNG");     /* byte order of names */
  assert_pixels_equal (sample.image, rgb_b, 50, 20);
  g_assert_cmpint (sample.n_annotations, ==, 0);
  g_assert_cmpfloat (sample.timestamp, ==, -1);
  next_ok (ds, &sample);
  g_assert_cmpstr (sample.name, ==, "a.png");
  g_assert_cmpint (sample.index, ==, 1);
  assert_pixels_equal (sample.image, rgb_a, 40, 30);
  assert_end (ds, &sample);
  sam2q_dataset_free (ds);

  g_unlink (a);
  g_unlink (b);
  expect_open_error ("images", dir, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND, "no image files (");
  expect_open_error ("images", dir, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND, "/pics");
  char *none = fixture_path (f, "none", NULL);
  expect_open_error ("images", none, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND,
                     "cannot open the directory");

  g_free (none);
  g_free (dir);
  g_free (sub);
  g_free (hidden);
  g_free (text);
  g_free (rgb_a);
  g_free (rgb_b);
  g_free (a);
  g_free (b);
}

/* ---- video ------------------------------------------------------------------------------ */

#define VIDEO_W 128
#define VIDEO_H 96
#define VIDEO_FRAMES 13
#define VIDEO_SEED 5
#define VIDEO_SHAPES 3
/* Mean absolute difference per channel between a decoded frame and the drawn one. The pictures
 * carry independent Gaussian noise (sigma 6) on every channel, which 4:2:0 chroma (all VP8 can
 * store) mostly averages away: about 5.5 for WebM whatever the quantizer, 1.7 for Motion JPEG.
 * Swapped channels or a picture from elsewhere differ by tens; a neighbouring frame is checked
 * to be farther than the right one. */
#define VIDEO_TOLERANCE_WEBM 7.5
#define VIDEO_TOLERANCE_AVI 3.0

static char *
write_video (Fixture *f, const char *name)
{
  const char *tool = g_getenv ("SAM2_SHAPES_VIDEO");
  if (tool == NULL || !g_file_test (tool, G_FILE_TEST_IS_EXECUTABLE)) {
    g_test_skip ("shapes-video not built; set SAM2_SHAPES_VIDEO to its path");
    return NULL;
  }
  char *out = fixture_path (f, name, NULL);
  char *width = g_strdup_printf ("%d", VIDEO_W), *height = g_strdup_printf ("%d", VIDEO_H);
  char *frames = g_strdup_printf ("%d", VIDEO_FRAMES), *seed = g_strdup_printf ("%d", VIDEO_SEED);
  char *shapes = g_strdup_printf ("%d", VIDEO_SHAPES);
  const char *argv[] = { tool, "--width", width, "--height", height, "--fps", "10",
                         "--frames", frames, "--seed", seed, "--shapes", shapes, "--output", out,
                         NULL };
  char *err = NULL;
  int status = 0;
  GError *error = NULL;
  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, &err, &status,
                &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("shapes-video failed: %s", err);
  g_free (err);
  g_free (width);
  g_free (height);
  g_free (frames);
  g_free (seed);
  g_free (shapes);
  return out;
}

static double
mean_abs_diff (const Sam2qImage *image, const guint8 *rgb)
{
  double sum = 0;
  for (int y = 0; y < image->height; y++)
    for (int x = 0; x < image->width * 3; x++)
      sum += fabs ((double) image->pixels[(size_t) y * image->stride + x] -
                   rgb[(size_t) y * image->width * 3 + x]);
  return sum / ((double) image->width * image->height * 3);
}

static void
check_video (Fixture *f, const char *name, double tolerance)
{
  char *video = write_video (f, name);
  if (video == NULL)
    return;
  Sam2ShapesScene *scene = sam2_shapes_scene_new (VIDEO_SEED, VIDEO_W, VIDEO_H, VIDEO_SHAPES);
  guint8 *rgb = g_malloc (VIDEO_W * VIDEO_H * 3);
  Sam2qDatasetOptions options = { .frame_stride = 4 };
  Sam2qDataset *ds = open_ok ("video", video, &options);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, -1);
  Sam2qSample sample = { 0 };
  for (int k = 0; k * 4 < VIDEO_FRAMES; k++) {
    next_ok (ds, &sample);
    g_assert_cmpint (sample.image_id, ==, 4 * k);
    g_assert_cmpfloat_with_epsilon (sample.timestamp, 0.4 * k, 1e-6);
    g_assert_cmpint (sample.n_annotations, ==, 0);
    sam2_shapes_scene_render (scene, 4 * k, rgb, VIDEO_W * 3, NULL);
    const double diff = mean_abs_diff (sample.image, rgb);
    g_test_message ("%s frame %d: mean absolute difference %.2f", name, 4 * k, diff);
    if (diff > tolerance)
      g_error ("%s frame %d differs from the scene by %.2f on average (tolerance %.1f)", name,
               4 * k, diff, tolerance);
    if (k > 0) {
      /* Against the previous frame taken, the difference must be clearly larger. */
      sam2_shapes_scene_render (scene, 4 * (k - 1), rgb, VIDEO_W * 3, NULL);
      g_assert_cmpfloat (mean_abs_diff (sample.image, rgb), >, diff);
    }
  }
  assert_end (ds, &sample);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 4);
  sam2q_dataset_free (ds);

  /* The annotations next to the video describe the same scene. */
  char *dot = strrchr (video, '.');
  char *json = g_strdup_printf ("%.*s.json", (int) (dot - video), video);
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (parser, json, &error);
  g_assert_no_error (error);
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpint (json_object_get_int_member (root, "n_frames"), ==, VIDEO_FRAMES);
  JsonArray *frames = json_object_get_array_member (root, "frames");
  g_assert_cmpuint (json_array_get_length (frames), ==, VIDEO_FRAMES);
  Sam2ShapeInfo info[VIDEO_SHAPES];
  for (int t = 0; t < VIDEO_FRAMES; t++) {
    sam2_shapes_scene_describe (scene, t, info);
    JsonArray *objects = json_object_get_array_member (json_array_get_object_element (frames, t),
                                                       "objects");
    guint k = 0;
    for (int i = 0; i < VIDEO_SHAPES; i++) {
      if (info[i].area == 0)
        continue;
      JsonObject *o = json_array_get_object_element (objects, k++);
      g_assert_cmpint (json_object_get_int_member (o, "id"), ==, i);
      JsonArray *box = json_object_get_array_member (o, "box");
      JsonArray *point = json_object_get_array_member (o, "point");
      for (guint c = 0; c < 4; c++)
        g_assert_cmpfloat (json_array_get_double_element (box, c), ==, info[i].box[c]);
      for (guint c = 0; c < 2; c++)
        g_assert_cmpfloat (json_array_get_double_element (point, c), ==, info[i].point[c]);
    }
    g_assert_cmpuint (json_array_get_length (objects), ==, k);
  }
  g_object_unref (parser);
  g_free (json);
  g_free (rgb);
  sam2_shapes_scene_free (scene);
  g_free (video);
}

static void
test_video_webm (Fixture *f, gconstpointer data)
{
  check_video (f, "shapes.webm", VIDEO_TOLERANCE_WEBM);
}

static void
test_video_avi (Fixture *f, gconstpointer data)
{
  check_video (f, "shapes.avi", VIDEO_TOLERANCE_AVI);
}

static void
test_video_errors (Fixture *f, gconstpointer data)
{
  char *missing = fixture_path (f, "missing.webm", NULL);
  expect_open_error ("video", missing, NULL, SAM2Q_DATASET_ERROR_NOT_FOUND,
                     "missing.webm not found");
  char *text = fixture_path (f, "text.webm", NULL);
  write_text (text, "this is not a video at all, only some text in a file\n");
  expect_open_error ("video", text, NULL, SAM2Q_DATASET_ERROR_VIDEO, "cannot decode");
  g_free (text);
  g_free (missing);

  Sam2qDatasetOptions limit = { .limit = 2 };
  char *video = write_video (f, "short.webm");
  if (video == NULL)
    return;
  Sam2qDataset *ds = open_ok ("video", video, &limit);
  Sam2qSample sample = { 0 };
  next_ok (ds, &sample);
  next_ok (ds, &sample);
  g_assert_cmpint (sample.image_id, ==, 1);
  assert_end (ds, &sample);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 2);
  sam2q_dataset_free (ds);
  g_free (video);
}

/* ---- shapes (examples/common) ----------------------------------------------------------- */

/* The prompt point must be at the largest distance from the outside, found here by brute force
 * (outside the picture counts as outside the mask). */
static void
test_shapes_point (void)
{
  guint64 state = 7;
  for (int trial = 0; trial < 40; trial++) {
    const int w = 5 + trial % 17, h = 4 + (trial * 7) % 19;
    guint8 *mask = g_malloc0 ((size_t) w * h);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        state = state * G_GUINT64_CONSTANT (6364136223846793005) + 1442695040888963407u;
        mask[y * w + x] = (state >> 60) < (guint64) (trial % 3 == 0 ? 15 : 12);
      }
    double point[2];
    if (!sam2_shapes_mask_point (mask, w, h, w, point)) {
      for (int i = 0; i < w * h; i++)
        g_assert_cmpuint (mask[i], ==, 0);
      g_free (mask);
      continue;
    }
    double best = 0, chosen = -1;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        if (!mask[y * w + x])
          continue;
        int edge = MIN (MIN (x + 1, y + 1), MIN (w - x, h - y));
        double d = (double) edge * edge;
        for (int v = 0; v < h; v++)
          for (int u = 0; u < w; u++)
            if (!mask[v * w + u])
              d = MIN (d, (double) (u - x) * (u - x) + (double) (v - y) * (v - y));
        best = MAX (best, d);
        if (x + 0.5 == point[0] && y + 0.5 == point[1])
          chosen = d;
      }
    g_assert_cmpfloat (chosen, ==, best);
    g_free (mask);
  }
  guint8 empty[4] = { 0 };
  double point[2] = { 1, 1 }, box[4] = { 1, 1, 1, 1 };
  g_assert_false (sam2_shapes_mask_point (empty, 2, 2, 2, point));
  g_assert_false (sam2_shapes_mask_box (empty, 2, 2, 2, box));
  g_assert_true (point[0] == 0 && point[1] == 0 && box[2] == 0);
}

/* A frame depends on its index only: drawing frames out of order gives the same pictures, the
 * masks agree with describe, and the shapes move. */
static void
test_shapes_scene (void)
{
  const int w = 120, h = 90, n = 4;
  Sam2ShapesScene *scene = sam2_shapes_scene_new (42, w, h, n);
  g_assert_cmpint (sam2_shapes_scene_get_width (scene), ==, w);
  g_assert_cmpint (sam2_shapes_scene_get_height (scene), ==, h);
  g_assert_cmpint (sam2_shapes_scene_get_n_shapes (scene), ==, n);
  const int stride = w * 3 + 5;
  guint8 *first = g_malloc0 ((size_t) stride * h), *again = g_malloc0 ((size_t) stride * h);
  guint8 *masks = g_malloc ((size_t) n * w * h), *masks_again = g_malloc ((size_t) n * w * h);
  sam2_shapes_scene_render (scene, 30, first, stride, masks);
  sam2_shapes_scene_render (scene, 3, again, stride, NULL);
  g_assert_true (memcmp (first, again, (size_t) stride * h) != 0);
  sam2_shapes_scene_render (scene, 30, again, stride, masks_again);
  g_assert_cmpmem (first, (size_t) stride * h, again, (size_t) stride * h);
  g_assert_cmpmem (masks, (size_t) n * w * h, masks_again, (size_t) n * w * h);
  Sam2ShapeInfo info[4];
  sam2_shapes_scene_describe (scene, 30, info);
  for (int i = 0; i < n; i++) {
    const guint8 *mask = masks + (size_t) i * w * h;
    guint64 area = 0;
    for (int p = 0; p < w * h; p++)
      area += mask[p];
    g_assert_cmpuint (info[i].area, ==, area);
    double box[4];
    sam2_shapes_mask_box (mask, w, h, w, box);
    assert_box (info[i].box, box[0], box[1], box[2], box[3]);
    if (area > 0)
      g_assert_cmpuint (mask[(int) info[i].point[1] * w + (int) info[i].point[0]], ==, 1);
  }
  Sam2ShapeInfo later[4];
  sam2_shapes_scene_describe (scene, 60, later);
  gboolean moved = FALSE;
  for (int i = 0; i < n; i++)
    moved |= memcmp (info[i].box, later[i].box, sizeof info[i].box) != 0;
  g_assert_true (moved);
  g_assert_cmpstr (sam2_shape_kind_name (sam2_shapes_scene_get_kind (scene, 0)), !=, "unknown");
  sam2_shapes_scene_free (scene);
  sam2_shapes_scene_free (NULL);
  g_free (first);
  g_free (again);
  g_free (masks);
  g_free (masks_again);
}

/* ---- random ----------------------------------------------------------------------------- */

static void
assert_samples_equal (const Sam2qSample *a, const Sam2qSample *b)
{
  g_assert_cmpstr (a->name, ==, b->name);
  g_assert_cmpint (a->image->stride, ==, b->image->stride);
  g_assert_cmpmem (a->image->pixels, (size_t) a->image->stride * a->image->height,
                   b->image->pixels, (size_t) b->image->stride * b->image->height);
  g_assert_cmpint (a->n_annotations, ==, b->n_annotations);
  for (int i = 0; i < a->n_annotations; i++) {
    const Sam2qAnnotation *x = &a->annotations[i], *y = &b->annotations[i];
    g_assert_cmpint (x->id, ==, y->id);
    g_assert_cmpmem (x->box, sizeof x->box, y->box, sizeof y->box);
    g_assert_cmpmem (x->point, sizeof x->point, y->point, sizeof y->point);
    g_assert_cmpint (x->mask->n_counts, ==, y->mask->n_counts);
    g_assert_cmpmem (x->mask->counts, x->mask->n_counts * 4, y->mask->counts,
                     y->mask->n_counts * 4);
  }
}

static void
test_random (void)
{
  Sam2qDatasetOptions options = { .limit = 6, .seed = 99, .width = 100, .height = 80,
                                  .n_shapes = 5 };
  Sam2qDataset *one = open_ok ("random", NULL, &options);
  Sam2qDataset *two = open_ok ("random", NULL, &options);
  options.seed = 100;
  Sam2qDataset *other = open_ok ("random", NULL, &options);
  g_assert_cmpint (sam2q_dataset_size (one), ==, 6);
  Sam2qSample a = { 0 }, b = { 0 }, c = { 0 };
  int total = 0;
  for (int i = 0; i < 6; i++) {
    next_ok (one, &a);
    next_ok (two, &b);
    next_ok (other, &c);
    assert_samples_equal (&a, &b);
    g_assert_cmpint (a.image->width, ==, 100);
    g_assert_cmpint (a.image->height, ==, 80);
    g_assert_true (memcmp (a.image->pixels, c.image->pixels, (size_t) a.image->stride * 80) != 0);
    /* Visible shapes only; masks never overlap; box and point from the mask. */
    guint8 *seen = g_malloc0 (100 * 80);
    for (int k = 0; k < a.n_annotations; k++) {
      const Sam2qAnnotation *ann = &a.annotations[k];
      g_assert_cmpuint (ann->area, >, 0);
      g_assert_cmpint (ann->category_id, >=, 1);
      g_assert_cmpint (ann->category_id, <=, 3);
      guint8 *mask = sam2q_annotation_get_mask (ann);
      double box[4];
      sam2_shapes_mask_box (mask, 100, 80, 100, box);
      assert_box (ann->box, box[0], box[1], box[2], box[3]);
      for (int p = 0; p < 100 * 80; p++) {
        g_assert_false (mask[p] && seen[p]);
        seen[p] |= mask[p];
      }
      g_free (mask);
      assert_interior_point (ann);
    }
    total += a.n_annotations;
    g_free (seen);
  }
  g_assert_cmpint (total, >, 6);
  assert_end (one, &a);
  sam2q_dataset_free (one);
  sam2q_dataset_free (two);
  sam2q_dataset_free (other);
  sam2q_sample_clear (&b);
  sam2q_sample_clear (&c);

  /* Defaults: 64 pictures of 256 x 256, sample 3 the same whether or not 0-2 were asked for. */
  Sam2qDataset *ds = open_ok ("random", NULL, NULL);
  g_assert_cmpint (sam2q_dataset_size (ds), ==, 64);
  for (int i = 0; i < 4; i++)
    next_ok (ds, &a);
  g_assert_cmpint (a.image->width, ==, 256);
  g_assert_cmpstr (a.name, ==, "random-000003");
  sam2q_sample_clear (&a);
  sam2q_dataset_free (ds);
}

static void
test_open_errors (void)
{
  const char *const *kinds = sam2q_dataset_kinds ();
  g_assert_cmpstr (kinds[0], ==, "random");
  g_assert_cmpstr (kinds[4], ==, "video");
  g_assert_null (kinds[5]);
  expect_open_error ("lvis", "/tmp", NULL, SAM2Q_DATASET_ERROR_INVALID,
                     "unknown dataset kind 'lvis'");
  expect_open_error ("coco", NULL, NULL, SAM2Q_DATASET_ERROR_INVALID, "needs a path");
  expect_open_error ("video", "", NULL, SAM2Q_DATASET_ERROR_INVALID, "a video file");
  Sam2qDatasetOptions negative = { .limit = -1 };
  expect_open_error ("random", NULL, &negative, SAM2Q_DATASET_ERROR_INVALID, "negative");
  Sam2qDatasetOptions split = { .split = "test2017" };
  expect_open_error ("coco", "/tmp", &split, SAM2Q_DATASET_ERROR_INVALID, "unknown split");
  Sam2qDatasetOptions huge = { .n_shapes = 300 };
  expect_open_error ("random", NULL, &huge, SAM2Q_DATASET_ERROR_INVALID, "255 shapes");
  sam2q_dataset_free (NULL);
  sam2q_sample_clear (NULL);
}

/* ---- evaluation on a dataset (eval-dataset.c) ------------------------------------------- */

/* A COCO root with one picture of shapes and these annotations (a JSON list's members). */
static char *
write_eval_coco (Fixture *f, const char *name, const char *annotations)
{
  char *picture = fixture_path (f, name, "val2017", "a.png", NULL);
  guint8 *masks;
  g_free (write_shapes_png (picture, 5, 96, 80, 2, &masks));
  g_free (masks);
  g_free (picture);
  char *json = g_strdup_printf ("{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", "
                                "\"width\": 96, \"height\": 80}], \"annotations\": [%s]}",
                                annotations);
  char *file = fixture_path (f, name, "annotations", "instances_val2017.json", NULL);
  write_text (file, json);
  g_free (file);
  g_free (json);
  return fixture_path (f, name, NULL);
}

/* Objects whose ground truth has no pixel are left out and counted (they were scored, with an
 * IoU of 0, or 1 against an empty prediction); a prompt outside the picture is an error that
 * names the sample and the annotation. */
static void
test_eval_dataset (Fixture *f, gconstpointer data)
{
  char *model_dir = sam2_test_fixture_path ("sam2-shapes");
  if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR)) {
    g_test_skip ("no sam2-shapes fixture");
    g_free (model_dir);
    return;
  }
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (model_dir, &error);
  g_assert_no_error (error);
  const char *square = "{\"id\": 1, \"image_id\": 1, \"segmentation\": "
                       "[[10, 10, 40, 10, 40, 40, 10, 40]]}";
  char *only = write_eval_coco (f, "only", square);
  char *with_empty = g_strdup_printf ("%s, {\"id\": 2, \"image_id\": 1, \"segmentation\": [], "
                                      "\"bbox\": [50, 50, 10, 10]}, {\"id\": 3, \"image_id\": 1, "
                                      "\"segmentation\": [[200, 200, 220, 200, 220, 220]]}",
                                      square);
  char *empty = write_eval_coco (f, "empty", with_empty);
  Sam2qEvalScores a = { 0 }, b = { 0 };
  g_assert_true (sam2q_eval_dataset (model, "coco", only, 0, 0, NULL, &a, &error));
  g_assert_no_error (error);
  g_assert_true (sam2q_eval_dataset (model, "coco", empty, 0, 0, NULL, &b, &error));
  g_assert_no_error (error);
  g_assert_cmpint (b.n_objects, ==, 1);
  g_assert_cmpint (b.n_skipped_empty, ==, 2);
  g_assert_cmpint (a.n_skipped_empty, ==, 0);
  g_assert_cmpfloat (b.miou[0], ==, a.miou[0]);
  g_assert_cmpfloat (b.miou[1], ==, a.miou[1]);
  sam2q_eval_scores_clear (&a);
  sam2q_eval_scores_clear (&b);

  char *outside = write_eval_coco (f, "outside", "{\"id\": 7, \"image_id\": 1, \"bbox\": "
                                   "[300, 300, 10, 10], \"segmentation\": "
                                   "[[10, 10, 40, 10, 40, 40]]}");
  g_assert_false (sam2q_eval_dataset (model, "coco", outside, 0, 0, NULL, &b, &error));
  assert_message_has (error, "coco dataset, sample 0 (a.png), annotation 7, box prompt: ");
  g_clear_error (&error);
  sam2q_eval_scores_clear (&b);

  char *all_empty = write_eval_coco (f, "all-empty", "{\"id\": 2, \"image_id\": 1, "
                                     "\"segmentation\": [], \"bbox\": [5, 5, 10, 10]}");
  g_assert_false (sam2q_eval_dataset (model, "coco", all_empty, 0, 0, NULL, &b, &error));
  assert_message_has (error, "no annotated objects to evaluate on (every mask is empty)");
  g_clear_error (&error);
  sam2q_eval_scores_clear (&b);

  g_free (all_empty);
  g_free (outside);
  g_free (empty);
  g_free (with_empty);
  g_free (only);
  sam2_model_unref (model);
  g_free (model_dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/datasets/coco/coco-dev", test_coco_dev);
  g_test_add ("/datasets/coco/handmade", Fixture, NULL, fixture_set_up, test_coco_handmade,
              fixture_tear_down);
  g_test_add ("/datasets/coco/errors", Fixture, NULL, fixture_set_up, test_coco_errors,
              fixture_tear_down);
  g_test_add ("/datasets/sa1b", Fixture, NULL, fixture_set_up, test_sa1b, fixture_tear_down);
  g_test_add ("/datasets/images", Fixture, NULL, fixture_set_up, test_images, fixture_tear_down);
  g_test_add ("/datasets/video/webm", Fixture, NULL, fixture_set_up, test_video_webm,
              fixture_tear_down);
  g_test_add ("/datasets/video/avi", Fixture, NULL, fixture_set_up, test_video_avi,
              fixture_tear_down);
  g_test_add ("/datasets/video/errors", Fixture, NULL, fixture_set_up, test_video_errors,
              fixture_tear_down);
  g_test_add_func ("/datasets/shapes/point", test_shapes_point);
  g_test_add_func ("/datasets/shapes/scene", test_shapes_scene);
  g_test_add_func ("/datasets/random", test_random);
  g_test_add_func ("/datasets/open-errors", test_open_errors);
  g_test_add ("/datasets/eval", Fixture, NULL, fixture_set_up, test_eval_dataset,
              fixture_tear_down);
  return g_test_run ();
}
