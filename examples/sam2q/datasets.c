/* datasets.c: the dataset kinds of datasets.h behind one small table of functions.
 *
 * Each kind opens (checks its layout, reads what indexes the samples) and then produces one
 * sample per call. Masks from every kind end up as Sam2Rle: COCO polygons, uncompressed and
 * compressed RLE go through core/rle.c exactly as pycocotools decodes them, and the procedural
 * shapes are encoded once. A mask is decoded to pixels here only when its box or point must be
 * computed from it, into one scratch buffer per sample. */
#include "datasets.h"
#include "image-io-gst.h"

#include <string.h>

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "sam2.h"
#include "shapes.h"

#define RANDOM_DEFAULT_SIZE 256
#define RANDOM_DEFAULT_SAMPLES 64
#define RANDOM_DEFAULT_SHAPES 6
/* A decoder that produces no frame for this long is stuck or the file is broken. */
#define VIDEO_TIMEOUT (30 * GST_SECOND)

G_DEFINE_QUARK (sam2q-dataset-error-quark, sam2q_dataset_error)

typedef struct {
  const char *name;
  gboolean (*open) (Sam2qDataset *ds, GError **error);
  /* FALSE with no error at the end. */
  gboolean (*next) (Sam2qDataset *ds, Sam2qSample *sample, GError **error);
  void (*free) (gpointer data);
} DatasetClass;

struct _Sam2qDataset {
  const DatasetClass *klass;
  char *path;
  Sam2qDatasetOptions options;             /* defaults filled in; split points to `split` */
  char *split;
  int index;                               /* samples handed out (or failed) so far */
  int size;                                /* -1 while unknown */
  gpointer data;                           /* the kind's own state */
};

/* ---- samples ---------------------------------------------------------------------------- */

void
sam2q_sample_clear (Sam2qSample *sample)
{
  if (sample == NULL)
    return;
  for (int i = 0; i < sample->n_annotations; i++)
    sam2_rle_free (sample->annotations[i].mask);
  g_free (sample->annotations);
  g_free (sample->name);
  sam2q_image_free (sample->image);
  memset (sample, 0, sizeof *sample);
}

void
sam2q_annotation_decode_mask (const Sam2qAnnotation *annotation, guint8 *mask, int stride)
{
  g_return_if_fail (annotation != NULL && annotation->mask != NULL);
  sam2_rle_decode (annotation->mask, mask, stride);
}

guint8 *
sam2q_annotation_get_mask (const Sam2qAnnotation *annotation)
{
  g_return_val_if_fail (annotation != NULL && annotation->mask != NULL, NULL);
  const Sam2Rle *rle = annotation->mask;
  guint8 *mask = g_malloc ((size_t) MAX (rle->width, 1) * MAX (rle->height, 1));
  sam2_rle_decode (rle, mask, rle->width);
  return mask;
}

/* Takes `rle`; fills area, and box and point from the mask where the dataset gave none. The
 * scratch buffer (picture-sized) is allocated on first use and reused for the whole sample. */
static void
annotation_complete (Sam2qAnnotation *a, Sam2Rle *rle, gboolean have_box, gboolean have_point,
                     guint8 **scratch)
{
  a->mask = rle;
  a->area = sam2_rle_area (rle);
  if (have_box && have_point)
    return;
  const int w = rle->width, h = rle->height;
  if (*scratch == NULL)
    *scratch = g_malloc ((size_t) MAX (w, 1) * MAX (h, 1));
  sam2_rle_decode (rle, *scratch, w);
  if (!have_box)
    sam2_shapes_mask_box (*scratch, w, h, w, a->box);
  if (!have_point && !sam2_shapes_mask_point (*scratch, w, h, w, a->point)) {
    /* An empty mask (a degenerate polygon) has no inside; the box centre is the best guess. */
    a->point[0] = (a->box[0] + a->box[2]) / 2;
    a->point[1] = (a->box[1] + a->box[3]) / 2;
  }
}

static Sam2qImage *
load_picture (const Sam2qDataset *ds, const char *file, GError **error)
{
  GError *local = NULL;
  Sam2qImage *image = sam2q_image_load (file, &local);
  if (image == NULL)
    g_propagate_prefixed_error (error, local, "%s dataset, sample %d: ", ds->klass->name,
                                ds->index);
  return image;
}

/* ---- JSON helpers ----------------------------------------------------------------------- */

static JsonParser *
parse_json_file (const char *path, GError **error)
{
  char *display = g_filename_display_name (path);
  GError *local = NULL;
  JsonParser *parser = NULL;
  GMappedFile *file = g_mapped_file_new (path, FALSE, &local);
  if (file == NULL) {
    if (local->domain == G_FILE_ERROR && local->code == G_FILE_ERROR_NOENT)
      g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND, "%s not found",
                   display);
    else
      g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND, "cannot read %s: %s",
                   display, local->message);
    goto out;
  }
  const char *text = g_mapped_file_get_contents (file);
  const gsize length = g_mapped_file_get_length (file);
  /* strict JSON first: json-glib recurses without limit (a deeply nested file overflows the
   * stack) and takes some non-JSON; the check's message gives line and column */
  if (!sam2_config_check_json (text != NULL ? text : "", length, &local)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT, "%s: %s", display,
                 local->message);
    goto out;
  }
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, (gssize) length, &local)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT, "%s: malformed JSON: %s",
                 display, local->message);
    g_clear_object (&parser);
  }
out:
  g_clear_error (&local);
  if (file != NULL)
    g_mapped_file_unref (file);
  g_free (display);
  return parser;
}

static gboolean
node_number (JsonNode *node, double *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType type = json_node_get_value_type (node);
  if (type == G_TYPE_INT64)
    *out = (double) json_node_get_int (node);
  else if (type == G_TYPE_DOUBLE)
    *out = json_node_get_double (node);
  else
    return FALSE;
  return TRUE;
}

static gboolean
node_integer (JsonNode *node, gint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return TRUE;
}

static JsonNode *
member (JsonObject *object, const char *name)
{
  return object != NULL ? json_object_get_member (object, name) : NULL;
}

static JsonArray *
member_array (JsonObject *object, const char *name)
{
  JsonNode *node = member (object, name);
  return node != NULL && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
}

static JsonObject *
node_object (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

/* An array of exactly n numbers. */
static gboolean
node_numbers (JsonNode *node, double *out, guint n)
{
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return FALSE;
  JsonArray *array = json_node_get_array (node);
  if (json_array_get_length (array) != n)
    return FALSE;
  for (guint i = 0; i < n; i++)
    if (!node_number (json_array_get_element (array, i), &out[i]))
      return FALSE;
  return TRUE;
}

/* COCO's [x, y, w, h] as x0, y0, x1, y1. */
static gboolean
node_xywh (JsonNode *node, double box[4])
{
  double xywh[4];
  if (!node_numbers (node, xywh, 4) || xywh[2] < 0 || xywh[3] < 0)
    return FALSE;
  box[0] = xywh[0];
  box[1] = xywh[1];
  box[2] = xywh[0] + xywh[2];
  box[3] = xywh[1] + xywh[3];
  return TRUE;
}

/* ---- masks from annotations ------------------------------------------------------------- */

static Sam2Rle *
rle_from_polygon_list (JsonArray *polygons, int height, int width, GError **error)
{
  const guint n = json_array_get_length (polygons);
  double **coords = g_new0 (double *, MAX (n, 1));
  int *n_coords = g_new0 (int, MAX (n, 1));
  Sam2Rle *rle = NULL;
  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element (polygons, i);
    if (!JSON_NODE_HOLDS_ARRAY (node)) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "polygon %u is not a list of coordinates", i);
      goto out;
    }
    JsonArray *poly = json_node_get_array (node);
    n_coords[i] = (int) json_array_get_length (poly);
    coords[i] = g_new (double, MAX (n_coords[i], 1));
    for (int j = 0; j < n_coords[i]; j++)
      if (!node_number (json_array_get_element (poly, j), &coords[i][j])) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "polygon %u: coordinate %d is not a number", i, j);
        goto out;
      }
  }
  rle = sam2_rle_from_polygons ((const double *const *) coords, n_coords, (int) n, height, width,
                                error);
out:
  for (guint i = 0; i < n; i++)
    g_free (coords[i]);
  g_free (coords);
  g_free (n_coords);
  return rle;
}

static Sam2Rle *
rle_from_rle_object (JsonObject *object, int height, int width, GError **error)
{
  double size[2];
  if (!node_numbers (member (object, "size"), size, 2)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "the RLE has no \"size\": [height, width]");
    return NULL;
  }
  if (size[0] != height || size[1] != width) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "the RLE's size is %g x %g (height x width) but the picture is %d x %d",
                 size[0], size[1], height, width);
    return NULL;
  }
  JsonNode *counts = member (object, "counts");
  if (counts != NULL && JSON_NODE_HOLDS_VALUE (counts) &&
      json_node_get_value_type (counts) == G_TYPE_STRING)
    return sam2_rle_from_string (json_node_get_string (counts), height, width, error);
  if (counts == NULL || !JSON_NODE_HOLDS_ARRAY (counts)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "the RLE's \"counts\" is neither a string nor a list of integers");
    return NULL;
  }
  JsonArray *array = json_node_get_array (counts);
  const guint n = json_array_get_length (array);
  guint32 *values = g_new (guint32, MAX (n, 1));
  Sam2Rle *rle = NULL;
  for (guint i = 0; i < n; i++) {
    gint64 v;
    if (!node_integer (json_array_get_element (array, i), &v) || v < 0 || v > G_MAXUINT32) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "RLE count %u is not an integer from 0 to 2^32 - 1", i);
      goto out;
    }
    values[i] = (guint32) v;
  }
  rle = sam2_rle_from_counts (values, (int) n, height, width, error);
out:
  g_free (values);
  return rle;
}

/* A COCO / SA-1B "segmentation": polygons, or an RLE object with counts as a list (uncompressed)
 * or a string (compressed). Errors are reported against `where`. */
static Sam2Rle *
rle_from_segmentation (JsonNode *seg, int height, int width, const char *where, GError **error)
{
  GError *local = NULL;
  Sam2Rle *rle = NULL;
  if (seg == NULL)
    g_set_error (&local, SAM2_ERROR, SAM2_ERROR_FORMAT, "there is no \"segmentation\"");
  else if (JSON_NODE_HOLDS_ARRAY (seg))
    rle = rle_from_polygon_list (json_node_get_array (seg), height, width, &local);
  else if (JSON_NODE_HOLDS_OBJECT (seg))
    rle = rle_from_rle_object (json_node_get_object (seg), height, width, &local);
  else
    g_set_error (&local, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "\"segmentation\" is neither a list of polygons nor an RLE object");
  if (rle == NULL) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT, "%s: %s", where,
                 local->message);
    g_error_free (local);
  }
  return rle;
}

/* Decoded pictures must have the size the annotations were made for. */
static gboolean
check_picture_size (const Sam2qImage *image, double width, double height, const char *file,
                    const char *annotations, GError **error)
{
  if (image->width == width && image->height == height)
    return TRUE;
  char *display = g_filename_display_name (file);
  g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT,
               "%s gives %g x %g pixels for %s but the file is %d x %d", annotations, width,
               height, display, image->width, image->height);
  g_free (display);
  return FALSE;
}

/* ---- random ----------------------------------------------------------------------------- */

static gboolean
random_open (Sam2qDataset *ds, GError **error)
{
  Sam2qDatasetOptions *o = &ds->options;
  o->width = o->width > 0 ? o->width : RANDOM_DEFAULT_SIZE;
  o->height = o->height > 0 ? o->height : RANDOM_DEFAULT_SIZE;
  o->n_shapes = o->n_shapes > 0 ? o->n_shapes : RANDOM_DEFAULT_SHAPES;
  if (o->width > SAM2_MAX_FRAME_SIZE || o->height > SAM2_MAX_FRAME_SIZE ||
      o->n_shapes > SAM2_SHAPES_MAX) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_INVALID,
                 "random dataset: pictures of %d x %d with %d shapes; the limits are %d x %d "
                 "and %d shapes", o->width, o->height, o->n_shapes, SAM2_MAX_FRAME_SIZE,
                 SAM2_MAX_FRAME_SIZE, SAM2_SHAPES_MAX);
    return FALSE;
  }
  ds->size = o->limit > 0 ? o->limit : RANDOM_DEFAULT_SAMPLES;
  return TRUE;
}

/* Sample i's picture seed: splitmix64 of (seed, i), so neighbouring seeds and indices give
 * unrelated pictures. */
static guint64
random_picture_seed (guint64 seed, int index)
{
  guint64 z = seed + (guint64) (index + 1) * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static gboolean
random_next (Sam2qDataset *ds, Sam2qSample *sample, GError **error)
{
  const Sam2qDatasetOptions *o = &ds->options;
  const int w = o->width, h = o->height, n = o->n_shapes;
  const size_t plane = (size_t) w * h;
  const guint64 seed = random_picture_seed (o->seed, ds->index);
  Sam2qImage *image = g_new0 (Sam2qImage, 1);
  image->width = w;
  image->height = h;
  image->stride = GST_ROUND_UP_4 (w * 3);
  image->pixels = g_malloc0 ((size_t) image->stride * h);
  guint8 *masks = g_malloc ((size_t) n * plane);
  sam2_shapes_draw (seed, w, h, n, image->pixels, image->stride, masks);
  /* Only for the kinds (the categories): a scene of the same seed has the picture's shapes. */
  Sam2ShapesScene *scene = sam2_shapes_scene_new (seed, w, h, n);

  sample->image = image;
  sample->name = g_strdup_printf ("random-%06d", ds->index);
  sample->annotations = g_new0 (Sam2qAnnotation, n);
  for (int i = 0; i < n; i++) {
    const guint8 *mask = masks + i * plane;
    Sam2qAnnotation *a = &sample->annotations[sample->n_annotations];
    if (!sam2_shapes_mask_box (mask, w, h, w, a->box))
      continue;              /* hidden under later shapes */
    sam2_shapes_mask_point (mask, w, h, w, a->point);
    a->id = i;
    a->category_id = 1 + (int) sam2_shapes_scene_get_kind (scene, i);
    a->mask = sam2_rle_encode (mask, w, h, w);
    a->area = sam2_rle_area (a->mask);
    sample->n_annotations++;
  }
  sam2_shapes_scene_free (scene);
  g_free (masks);
  return TRUE;
}

/* ---- coco ------------------------------------------------------------------------------- */

typedef struct {
  JsonParser *parser;                      /* the whole annotation file, kept for iteration */
  char *annotation_file;                   /* display name, for messages */
  char *image_dir;
  JsonArray *images, *annotations;
  GArray **per_image;                      /* per image: indices into `annotations` */
  guint n_images;
  GHashTable *point_by_annotation;         /* annotation id (gint64 *) -> double[2] */
  GHashTable *points_by_image;             /* image id (gint64 *) -> GArray of double[2] */
} CocoData;

static void
coco_free (gpointer data)
{
  CocoData *c = data;
  if (c->per_image != NULL)
    for (guint i = 0; i < c->n_images; i++)
      if (c->per_image[i] != NULL)
        g_array_unref (c->per_image[i]);
  g_free (c->per_image);
  if (c->parser != NULL)
    g_object_unref (c->parser);
  if (c->point_by_annotation != NULL)
    g_hash_table_unref (c->point_by_annotation);
  if (c->points_by_image != NULL)
    g_hash_table_unref (c->points_by_image);
  g_free (c->annotation_file);
  g_free (c->image_dir);
  g_free (c);
}

static gint64 *
int64_key (gint64 value)
{
  gint64 *key = g_new (gint64, 1);
  *key = value;
  return key;
}

static gboolean
coco_format_error (GError **error, const CocoData *c, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
coco_format_error (GError **error, const CocoData *c, const char *fmt, ...)
{
  va_list args;
  va_start (args, fmt);
  char *message = g_strdup_vprintf (fmt, args);
  va_end (args);
  g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT, "%s: %s",
               c->annotation_file, message);
  g_free (message);
  return FALSE;
}

/* Finds the annotation file of the requested split or, with none requested, of val2017 or else
 * train2017, and says which paths were expected when there is none. */
static char *
coco_find_annotations (Sam2qDataset *ds, GError **error)
{
  const char *splits[] = { "val2017", "train2017" };
  for (size_t i = 0; i < G_N_ELEMENTS (splits); i++) {
    if (ds->split != NULL && strcmp (ds->split, splits[i]) != 0)
      continue;
    char *name = g_strdup_printf ("instances_%s.json", splits[i]);
    char *file = g_build_filename (ds->path, "annotations", name, NULL);
    g_free (name);
    if (g_file_test (file, G_FILE_TEST_IS_REGULAR)) {
      if (ds->split == NULL)
        ds->split = g_strdup (splits[i]);
      return file;
    }
    g_free (file);
  }
  char *display = g_filename_display_name (ds->path);
  if (ds->split != NULL)
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "coco dataset: %s/annotations/instances_%s.json not found", display, ds->split);
  else
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "coco dataset: neither %s/annotations/instances_val2017.json nor "
                 "%s/annotations/instances_train2017.json exists (COCO layout: ROOT/val2017/*.jpg "
                 "and ROOT/annotations/instances_val2017.json)", display, display);
  g_free (display);
  return NULL;
}

/* Checks every image entry and groups the annotations by image, in file order. */
static gboolean
coco_index (CocoData *c, GError **error)
{
  c->n_images = json_array_get_length (c->images);
  c->per_image = g_new0 (GArray *, MAX (c->n_images, 1));
  GHashTable *by_id = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  gboolean ok = TRUE;
  for (guint i = 0; i < c->n_images && ok; i++) {
    JsonObject *image = node_object (json_array_get_element (c->images, i));
    gint64 id, width, height;
    JsonNode *file = member (image, "file_name");
    if (image == NULL || !node_integer (member (image, "id"), &id) ||
        !node_integer (member (image, "width"), &width) ||
        !node_integer (member (image, "height"), &height) || file == NULL ||
        json_node_get_value_type (file) != G_TYPE_STRING)
      ok = coco_format_error (error, c, "images[%u] needs an integer \"id\", \"width\" and "
                              "\"height\" and a string \"file_name\"", i);
    else if (width <= 0 || height <= 0 || width > G_MAXINT || height > G_MAXINT
             || height > G_MAXUINT32 / width)    /* each side an int, the plane 32-bit */
      ok = coco_format_error (error, c, "images[%u] (%s) has an invalid size %" G_GINT64_FORMAT
                              " x %" G_GINT64_FORMAT, i, json_node_get_string (file), width,
                              height);
    else if (g_hash_table_contains (by_id, &id))
      ok = coco_format_error (error, c, "images[%u] repeats image id %" G_GINT64_FORMAT, i, id);
    else
      g_hash_table_insert (by_id, int64_key (id), GUINT_TO_POINTER (i + 1));
    c->per_image[i] = g_array_new (FALSE, FALSE, sizeof (guint));
  }
  const guint n_annotations = c->annotations != NULL ? json_array_get_length (c->annotations) : 0;
  for (guint a = 0; a < n_annotations && ok; a++) {
    JsonObject *ann = node_object (json_array_get_element (c->annotations, a));
    gint64 image_id;
    if (ann == NULL || !node_integer (member (ann, "image_id"), &image_id)) {
      ok = coco_format_error (error, c, "annotations[%u] has no integer \"image_id\"", a);
      break;
    }
    guint slot = GPOINTER_TO_UINT (g_hash_table_lookup (by_id, &image_id));
    if (slot == 0)
      ok = coco_format_error (error, c, "annotations[%u] refers to image_id %" G_GINT64_FORMAT
                              ", which is not in \"images\"", a, image_id);
    else
      g_array_append_val (c->per_image[slot - 1], a);
  }
  g_hash_table_unref (by_id);
  return ok;
}

/* points.json: see datasets.h. */
static gboolean
coco_read_points (CocoData *c, const char *root, GError **error)
{
  char *path = g_build_filename (root, "points.json", NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_free (path);
    path = g_build_filename (root, "annotations", "points.json", NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
      g_free (path);
      return TRUE;
    }
  }
  JsonParser *parser = parse_json_file (path, error);
  char *display = g_filename_display_name (path);
  g_free (path);
  if (parser == NULL) {
    g_free (display);
    return FALSE;
  }
  gboolean ok = TRUE;
  c->point_by_annotation = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  c->points_by_image = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                              (GDestroyNotify) g_array_unref);
  JsonNode *root_node = json_parser_get_root (parser);
  if (root_node == NULL || !JSON_NODE_HOLDS_ARRAY (root_node)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT,
                 "%s: expected a list of {\"image_id\": N, \"point\": [x, y]}", display);
    ok = FALSE;
  }
  JsonArray *entries = ok ? json_node_get_array (root_node) : NULL;
  for (guint i = 0; ok && i < json_array_get_length (entries); i++) {
    JsonObject *entry = node_object (json_array_get_element (entries, i));
    gint64 image_id, annotation_id;
    gint64 label = 1;
    double *xy = g_new (double, 2);
    if (entry == NULL || !node_numbers (member (entry, "point"), xy, 2)) {
      g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT,
                   "%s: entry %u has no \"point\": [x, y]", display, i);
      ok = FALSE;
      g_free (xy);
    } else if (member (entry, "label") != NULL
               && (!node_integer (member (entry, "label"), &label) || label != 1)) {
      /* it was taken as a positive click all the same */
      g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT,
                   "%s: entry %u has a \"label\" other than 1; each object is prompted with "
                   "one positive point, so give only positive points (label 1)", display, i);
      ok = FALSE;
      g_free (xy);
    } else if (node_integer (member (entry, "annotation_id"), &annotation_id)) {
      g_hash_table_replace (c->point_by_annotation, int64_key (annotation_id), xy);
    } else if (node_integer (member (entry, "image_id"), &image_id)) {
      GArray *list = g_hash_table_lookup (c->points_by_image, &image_id);
      if (list == NULL) {
        list = g_array_new (FALSE, FALSE, sizeof (double) * 2);
        g_hash_table_insert (c->points_by_image, int64_key (image_id), list);
      }
      g_array_append_vals (list, xy, 1);
      g_free (xy);
    } else {
      g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT,
                   "%s: entry %u has neither an integer \"image_id\" nor \"annotation_id\"",
                   display, i);
      ok = FALSE;
      g_free (xy);
    }
  }
  g_object_unref (parser);
  g_free (display);
  return ok;
}

static gboolean
coco_open (Sam2qDataset *ds, GError **error)
{
  CocoData *c = g_new0 (CocoData, 1);
  ds->data = c;
  char *root_display = g_filename_display_name (ds->path);
  if (!g_file_test (ds->path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "coco dataset: %s is not a directory (expected the COCO root with "
                 "annotations/ and val2017/ or train2017/)", root_display);
    g_free (root_display);
    return FALSE;
  }
  g_free (root_display);
  char *file = coco_find_annotations (ds, error);
  if (file == NULL)
    return FALSE;
  c->annotation_file = g_filename_display_name (file);
  c->parser = parse_json_file (file, error);
  g_free (file);
  if (c->parser == NULL)
    return FALSE;

  JsonObject *root = node_object (json_parser_get_root (c->parser));
  c->images = member_array (root, "images");
  c->annotations = member_array (root, "annotations");
  if (c->images == NULL)
    return coco_format_error (error, c, "expected an object with an \"images\" list");
  if (member (root, "annotations") != NULL && c->annotations == NULL)
    return coco_format_error (error, c, "\"annotations\" is not a list");
  if (!coco_index (c, error))
    return FALSE;

  c->image_dir = g_build_filename (ds->path, ds->split, NULL);
  if (!g_file_test (c->image_dir, G_FILE_TEST_IS_DIR)) {
    char *display = g_filename_display_name (c->image_dir);
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "coco dataset: the picture directory %s is missing (%s lists %u pictures)",
                 display, c->annotation_file, c->n_images);
    g_free (display);
    return FALSE;
  }
  if (!coco_read_points (c, ds->path, error))
    return FALSE;
  ds->size = ds->options.limit > 0 ? MIN ((guint) ds->options.limit, c->n_images) : c->n_images;
  return TRUE;
}

/* The point of the k-th annotation (id `id`) of image `image_id` from points.json, if any. */
static gboolean
coco_listed_point (const CocoData *c, gint64 image_id, gint64 id, guint k, double point[2])
{
  const double *xy = NULL;
  if (c->point_by_annotation != NULL && id >= 0)
    xy = g_hash_table_lookup (c->point_by_annotation, &id);
  if (xy == NULL && c->points_by_image != NULL) {
    GArray *list = g_hash_table_lookup (c->points_by_image, &image_id);
    if (list != NULL && k < list->len)
      xy = &g_array_index (list, double, 2 * k);
  }
  if (xy == NULL)
    return FALSE;
  point[0] = xy[0];
  point[1] = xy[1];
  return TRUE;
}

static gboolean
coco_annotation (const CocoData *c, JsonObject *ann, guint index, gint64 image_id, guint k,
                 int width, int height, Sam2qAnnotation *a, guint8 **scratch, GError **error)
{
  gint64 value;
  a->id = node_integer (member (ann, "id"), &value) ? value : -1;
  a->category_id = node_integer (member (ann, "category_id"), &value) ? (int) value : 0;
  a->iscrowd = node_integer (member (ann, "iscrowd"), &value) && value != 0;
  JsonNode *bbox = member (ann, "bbox");
  gboolean have_box = bbox != NULL && node_xywh (bbox, a->box);
  if (bbox != NULL && !have_box)
    return coco_format_error (error, c, "annotations[%u] (id %" G_GINT64_FORMAT "): \"bbox\" "
                              "is not [x, y, width, height]", index, a->id);
  gboolean have_point = coco_listed_point (c, image_id, a->id, k, a->point);

  char *where = g_strdup_printf ("%s: annotations[%u] (id %" G_GINT64_FORMAT ")",
                                 c->annotation_file, index, a->id);
  Sam2Rle *rle = rle_from_segmentation (member (ann, "segmentation"), height, width, where,
                                        error);
  g_free (where);
  if (rle == NULL)
    return FALSE;
  annotation_complete (a, rle, have_box, have_point, scratch);
  return TRUE;
}

static gboolean
coco_next (Sam2qDataset *ds, Sam2qSample *sample, GError **error)
{
  const CocoData *c = ds->data;
  JsonObject *image = json_array_get_object_element (c->images, ds->index);
  const char *file_name = json_object_get_string_member (image, "file_name");
  const gint64 image_id = json_object_get_int_member (image, "id");
  const int width = (int) json_object_get_int_member (image, "width");
  const int height = (int) json_object_get_int_member (image, "height");
  char *file = g_build_filename (c->image_dir, file_name, NULL);
  sample->image_id = image_id;
  sample->name = g_strdup (file_name);
  sample->image = load_picture (ds, file, error);
  gboolean ok = sample->image != NULL &&
                check_picture_size (sample->image, width, height, file, c->annotation_file,
                                    error);
  g_free (file);
  if (!ok)
    return FALSE;

  GArray *indices = c->per_image[ds->index];
  sample->annotations = g_new0 (Sam2qAnnotation, MAX (indices->len, 1));
  guint8 *scratch = NULL;
  for (guint k = 0; k < indices->len && ok; k++) {
    const guint index = g_array_index (indices, guint, k);
    ok = coco_annotation (c, json_array_get_object_element (c->annotations, index), index,
                          image_id, k, width, height, &sample->annotations[k], &scratch, error);
    if (ok)
      sample->n_annotations++;
  }
  g_free (scratch);
  return ok;
}

/* ---- directories: sa1b and images ------------------------------------------------------- */

typedef struct {
  GPtrArray *files;                        /* full paths, sorted by name */
} FileList;

static void
file_list_free (gpointer data)
{
  FileList *list = data;
  g_ptr_array_unref (list->files);
  g_free (list);
}

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static const char *const image_extensions[] = {
  ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
};

static gboolean
is_image_name (const char *name)
{
  char *lower = g_ascii_strdown (name, -1);
  gboolean image = FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS (image_extensions) && !image; i++)
    image = g_str_has_suffix (lower, image_extensions[i]);
  g_free (lower);
  return image;
}

static gboolean
is_sa1b_annotation_name (const char *name)
{
  return g_str_has_prefix (name, "sa_") && g_str_has_suffix (name, ".json");
}

/* The regular, non-hidden files of `dir` that `accept` takes, sorted by name. */
static GPtrArray *
list_files (const char *kind, const char *dir, gboolean (*accept) (const char *),
            const char *expected, GError **error)
{
  GError *local = NULL;
  GDir *handle = g_dir_open (dir, 0, &local);
  char *display = g_filename_display_name (dir);
  if (handle == NULL) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "%s dataset: cannot open the directory %s: %s", kind, display, local->message);
    g_error_free (local);
    g_free (display);
    return NULL;
  }
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (handle)) != NULL) {
    if (name[0] == '.' || !accept (name))
      continue;
    char *path = g_build_filename (dir, name, NULL);
    if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (files, path);
    else
      g_free (path);
  }
  g_dir_close (handle);
  if (files->len == 0) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "%s dataset: no %s in %s", kind, expected, display);
    g_ptr_array_unref (files);
    files = NULL;
  } else {
    g_ptr_array_sort (files, compare_paths);
  }
  g_free (display);
  return files;
}

static gboolean
file_list_open (Sam2qDataset *ds, gboolean (*accept) (const char *), const char *expected,
                GError **error)
{
  GPtrArray *files = list_files (ds->klass->name, ds->path, accept, expected, error);
  if (files == NULL)
    return FALSE;
  FileList *list = g_new0 (FileList, 1);
  list->files = files;
  ds->data = list;
  ds->size = ds->options.limit > 0 ? MIN ((guint) ds->options.limit, files->len) : files->len;
  return TRUE;
}

static gboolean
images_open (Sam2qDataset *ds, GError **error)
{
  return file_list_open (ds, is_image_name,
                         "image files (.jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp, .ppm)",
                         error);
}

static gboolean
images_next (Sam2qDataset *ds, Sam2qSample *sample, GError **error)
{
  const FileList *list = ds->data;
  const char *file = g_ptr_array_index (list->files, ds->index);
  sample->image_id = ds->index;
  sample->name = g_path_get_basename (file);
  sample->image = load_picture (ds, file, error);
  return sample->image != NULL;
}

static gboolean
sa1b_open (Sam2qDataset *ds, GError **error)
{
  return file_list_open (ds, is_sa1b_annotation_name,
                         "SA-1B annotation files (sa_N.json next to sa_N.jpg)", error);
}

static gboolean
sa1b_format_error (GError **error, const char *file, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
sa1b_format_error (GError **error, const char *file, const char *fmt, ...)
{
  va_list args;
  va_start (args, fmt);
  char *message = g_strdup_vprintf (fmt, args);
  va_end (args);
  char *display = g_filename_display_name (file);
  g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_FORMAT, "%s: %s", display,
               message);
  g_free (display);
  g_free (message);
  return FALSE;
}

/* SA-1B's "point_coords": [[x, y], ...]; the first point is the prompt the mask was made from. */
static gboolean
sa1b_point (JsonObject *ann, double point[2])
{
  JsonArray *coords = member_array (ann, "point_coords");
  return coords != NULL && json_array_get_length (coords) > 0 &&
         node_numbers (json_array_get_element (coords, 0), point, 2);
}

static gboolean
sa1b_annotations (const char *json_file, JsonArray *anns, int width, int height,
                  Sam2qSample *sample, GError **error)
{
  const guint n = json_array_get_length (anns);
  sample->annotations = g_new0 (Sam2qAnnotation, MAX (n, 1));
  guint8 *scratch = NULL;
  gboolean ok = TRUE;
  char *display = g_filename_display_name (json_file);
  for (guint i = 0; i < n && ok; i++) {
    JsonObject *ann = node_object (json_array_get_element (anns, i));
    Sam2qAnnotation *a = &sample->annotations[i];
    gint64 id;
    a->id = node_integer (member (ann, "id"), &id) ? id : -1;
    JsonNode *bbox = member (ann, "bbox");
    gboolean have_box = bbox != NULL && node_xywh (bbox, a->box);
    if (ann == NULL || (bbox != NULL && !have_box)) {
      ok = sa1b_format_error (error, json_file, "annotations[%u] is not an object with \"bbox\": "
                              "[x, y, width, height]", i);
      break;
    }
    char *where = g_strdup_printf ("%s: annotations[%u] (id %" G_GINT64_FORMAT ")", display, i,
                                   a->id);
    Sam2Rle *rle = rle_from_segmentation (member (ann, "segmentation"), height, width, where,
                                          error);
    g_free (where);
    if (rle == NULL) {
      ok = FALSE;
      break;
    }
    annotation_complete (a, rle, have_box, sa1b_point (ann, a->point), &scratch);
    sample->n_annotations++;
  }
  g_free (display);
  g_free (scratch);
  return ok;
}

/* The picture is named by "file_name", else it is the .jpg of the same name. */
static char *
sa1b_picture_path (const char *json_file, JsonObject *info)
{
  JsonNode *name = member (info, "file_name");
  char *dir = g_path_get_dirname (json_file);
  char *file;
  if (name != NULL && json_node_get_value_type (name) == G_TYPE_STRING) {
    file = g_build_filename (dir, json_node_get_string (name), NULL);
  } else {
    char *base = g_path_get_basename (json_file);
    base[strlen (base) - strlen (".json")] = '\0';
    char *jpg = g_strconcat (base, ".jpg", NULL);
    file = g_build_filename (dir, jpg, NULL);
    g_free (jpg);
    g_free (base);
  }
  g_free (dir);
  return file;
}

static gboolean
sa1b_sample (Sam2qDataset *ds, const char *json_file, JsonObject *root, Sam2qSample *sample,
             GError **error)
{
  JsonObject *info = node_object (member (root, "image"));
  gint64 width, height, image_id;
  if (info == NULL || !node_integer (member (info, "width"), &width) ||
      !node_integer (member (info, "height"), &height) || width <= 0 || height <= 0 ||
      width > G_MAXINT || height > G_MAXINT || height > G_MAXUINT32 / width)
    return sa1b_format_error (error, json_file, "expected \"image\": {\"width\": W, "
                              "\"height\": H, \"file_name\": ...} with a positive size");
  /* every SA-1B file has the list, empty or not: without it (or with an object there) a wrong
   * file was read as a picture with no objects */
  JsonArray *anns = member_array (root, "annotations");
  if (anns == NULL)
    return sa1b_format_error (error, json_file, "\"annotations\" %s; expected \"annotations\": "
                              "[{\"segmentation\": ..., \"bbox\": ...}, ...]",
                              member (root, "annotations") != NULL ? "is not a list"
                                                                    : "is missing");
  char *file = sa1b_picture_path (json_file, info);
  sample->image_id = node_integer (member (info, "image_id"), &image_id) ? image_id : ds->index;
  sample->name = g_path_get_basename (file);
  sample->image = load_picture (ds, file, error);
  char *json_display = g_filename_display_name (json_file);
  gboolean ok = sample->image != NULL &&
                check_picture_size (sample->image, (double) width, (double) height, file,
                                    json_display, error) &&
                sa1b_annotations (json_file, anns, (int) width, (int) height, sample, error);
  g_free (json_display);
  g_free (file);
  return ok;
}

static gboolean
sa1b_next (Sam2qDataset *ds, Sam2qSample *sample, GError **error)
{
  const FileList *list = ds->data;
  const char *json_file = g_ptr_array_index (list->files, ds->index);
  JsonParser *parser = parse_json_file (json_file, error);
  if (parser == NULL)
    return FALSE;
  gboolean ok = sa1b_sample (ds, json_file, node_object (json_parser_get_root (parser)), sample,
                             error);
  g_object_unref (parser);
  return ok;
}

/* ---- video ------------------------------------------------------------------------------ */

typedef struct {
  Sam2qVideoLink link;                     /* pipeline and videoconvert */
  GstElement *sink;
  int decoded;                             /* frames pulled from the decoder so far */
  gboolean finished;
} VideoData;

static void
video_free (gpointer data)
{
  VideoData *v = data;
  /* Going to NULL joins the streaming threads, so no signal can still reach `v`. */
  if (v->link.pipeline != NULL) {
    gst_element_set_state (v->link.pipeline, GST_STATE_NULL);
    gst_object_unref (v->link.pipeline);
  }
  g_mutex_clear (&v->link.lock);
  g_free (v);
}

static void
set_video_error (GError **error, const char *display, GstMessage *msg)
{
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_APPLICATION) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: %s has no video stream", display);
    return;
  }
  GError *gst_error = NULL;
  gst_message_parse_error (msg, &gst_error, NULL);
  const gboolean missing = (gst_error->domain == GST_CORE_ERROR &&
                            gst_error->code == GST_CORE_ERROR_MISSING_PLUGIN) ||
                           (gst_error->domain == GST_STREAM_ERROR &&
                            gst_error->code == GST_STREAM_ERROR_CODEC_NOT_FOUND);
  g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
               "video dataset: cannot decode %s: %s%s%s", display, gst_error->message,
               missing ? "; " : "", missing ? SAM2Q_PLUGINS_HINT : "");
  g_error_free (gst_error);
}

static GstElement *
make_element (const char *factory, GError **error)
{
  GstElement *element = gst_element_factory_make (factory, NULL);
  if (element == NULL)
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: the GStreamer element '%s' is not available; install "
                 "gstreamer1.0-plugins-base", factory);
  return element;
}

/*   filesrc ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink
 * built element by element so that the file name reaches filesrc verbatim. */
static gboolean
video_build (VideoData *v, const char *path, GError **error)
{
  const char *factories[] = { "filesrc", "decodebin", "videoconvert", "capsfilter", "appsink" };
  GstElement *e[G_N_ELEMENTS (factories)] = { NULL };
  for (size_t i = 0; i < G_N_ELEMENTS (factories); i++)
    if ((e[i] = make_element (factories[i], error)) == NULL) {
      for (size_t j = 0; j < i; j++)
        gst_object_unref (gst_object_ref_sink (e[j]));
      return FALSE;
    }
  v->link.pipeline = gst_pipeline_new ("sam2q-video-dataset");
  v->link.convert = e[2];
  v->sink = e[4];
  gst_bin_add_many (GST_BIN (v->link.pipeline), e[0], e[1], e[2], e[3], e[4], NULL);
  g_object_set (e[0], "location", path, NULL);
  GstCaps *caps = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING, "RGB", NULL);
  g_object_set (e[3], "caps", caps, NULL);
  gst_caps_unref (caps);
  /* Not synchronised to the clock: frames come as fast as they are asked for; two in flight
   * bound the memory whatever the video's length. */
  g_object_set (e[4], "sync", FALSE, "max-buffers", 2, "drop", FALSE, NULL);
  sam2q_video_link_connect (&v->link, e[1]);
  if (!gst_element_link (e[0], e[1]) || !gst_element_link_many (e[2], e[3], e[4], NULL)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: cannot link the decoding pipeline");
    return FALSE;
  }
  return TRUE;
}

/* Prerolls, so that a file that is no video or has no decoder fails when the dataset opens. */
static gboolean
video_open (Sam2qDataset *ds, GError **error)
{
  VideoData *v = g_new0 (VideoData, 1);
  g_mutex_init (&v->link.lock);
  ds->data = v;
  ds->options.frame_stride = MAX (ds->options.frame_stride, 1);
  char *display = g_filename_display_name (ds->path);
  gboolean ok = FALSE;
  GError *init_error = NULL;
  if (!g_file_test (ds->path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "video dataset: %s not found (or not a file)", display);
    goto out;
  }
  if (!sam2q_image_io_init (&init_error)) {
    g_propagate_prefixed_error (error, init_error, "video dataset: ");
    goto out;
  }
  if (!video_build (v, ds->path, error))
    goto out;

  GstBus *bus = gst_element_get_bus (v->link.pipeline);
  gst_element_set_state (v->link.pipeline, GST_STATE_PAUSED);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, VIDEO_TIMEOUT,
                                                GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR |
                                                GST_MESSAGE_APPLICATION);
  if (msg == NULL)
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: %s did not start decoding within %d s", display,
                 (int) (VIDEO_TIMEOUT / GST_SECOND));
  else if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_ASYNC_DONE)
    set_video_error (error, display, msg);
  else
    ok = gst_element_set_state (v->link.pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE;
  if (msg != NULL)
    gst_message_unref (msg);
  gst_object_unref (bus);
  if (!ok && error != NULL && *error == NULL)
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: cannot start decoding %s", display);
out:
  g_free (display);
  return ok;
}

static double
sample_seconds (GstSample *sample)
{
  GstBuffer *buffer = gst_sample_get_buffer (sample);
  const GstSegment *segment = gst_sample_get_segment (sample);
  if (!GST_BUFFER_PTS_IS_VALID (buffer) || segment == NULL)
    return -1;
  guint64 t = gst_segment_to_stream_time (segment, GST_FORMAT_TIME, GST_BUFFER_PTS (buffer));
  return t == GST_CLOCK_TIME_NONE ? -1 : (double) t / GST_SECOND;
}

/* The next decoded frame, or NULL at the end (no error) or on failure. */
static GstSample *
video_pull (Sam2qDataset *ds, VideoData *v, GError **error)
{
  GstSample *sample = gst_app_sink_try_pull_sample (GST_APP_SINK (v->sink), VIDEO_TIMEOUT);
  if (sample != NULL || gst_app_sink_is_eos (GST_APP_SINK (v->sink)))
    return sample;
  char *display = g_filename_display_name (ds->path);
  GstBus *bus = gst_element_get_bus (v->link.pipeline);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg != NULL) {
    set_video_error (error, display, msg);
    gst_message_unref (msg);
  } else {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: no frame decoded from %s within %d s after frame %d", display,
                 (int) (VIDEO_TIMEOUT / GST_SECOND), v->decoded);
  }
  gst_object_unref (bus);
  g_free (display);
  return NULL;
}

static gboolean
video_next (Sam2qDataset *ds, Sam2qSample *sample, GError **error)
{
  VideoData *v = ds->data;
  if (v->finished) {
    ds->size = ds->index;
    return FALSE;
  }
  GstSample *frame = NULL;
  int number = -1;
  /* Frames between the ones taken are decoded and dropped. */
  while ((frame = video_pull (ds, v, error)) != NULL) {
    number = v->decoded++;
    if (number % ds->options.frame_stride == 0)
      break;
    gst_sample_unref (frame);
  }
  if (frame == NULL) {
    /* The end, or an error after which the stream cannot go on. */
    v->finished = TRUE;
    if (*error == NULL)
      ds->size = ds->index;
    return FALSE;
  }
  sample->image_id = number;
  sample->name = g_strdup_printf ("frame-%06d", number);
  sample->timestamp = sample_seconds (frame);
  /* The reason is said below; image-io's own words would name the video file, not the frame. */
  sample->image = sam2q_image_from_sample (frame, "a video frame", NULL);
  gst_sample_unref (frame);
  if (sample->image == NULL) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_VIDEO,
                 "video dataset: frame %d could not be read as RGB", number);
    return FALSE;
  }
  return TRUE;
}

/* ---- the table and the public functions ------------------------------------------------- */

static const DatasetClass dataset_classes[] = {
  { "random", random_open, random_next, NULL },
  { "coco", coco_open, coco_next, coco_free },
  { "sa1b", sa1b_open, sa1b_next, file_list_free },
  { "images", images_open, images_next, file_list_free },
  { "video", video_open, video_next, video_free },
};

const char *const *
sam2q_dataset_kinds (void)
{
  static const char *const kinds[] = { "random", "coco", "sa1b", "images", "video", NULL };
  return kinds;
}

Sam2qDataset *
sam2q_dataset_open (const char *kind, const char *path, const Sam2qDatasetOptions *options,
                    GError **error)
{
  g_return_val_if_fail (kind != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  const DatasetClass *klass = NULL;
  for (size_t i = 0; i < G_N_ELEMENTS (dataset_classes); i++)
    if (strcmp (kind, dataset_classes[i].name) == 0)
      klass = &dataset_classes[i];
  if (klass == NULL) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_INVALID,
                 "unknown dataset kind '%s'; the kinds are random, coco, sa1b, images and video",
                 kind);
    return NULL;
  }
  const gboolean needs_path = klass->open != random_open;
  if (needs_path && (path == NULL || *path == '\0')) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_INVALID,
                 "the %s dataset needs a path (%s)", kind,
                 klass->open == video_open ? "a video file" : "a directory");
    return NULL;
  }
  Sam2qDatasetOptions defaults = { 0 };
  if (options == NULL)
    options = &defaults;
  if (options->limit < 0 || options->width < 0 || options->height < 0 ||
      options->n_shapes < 0 || options->frame_stride < 0) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_INVALID,
                 "%s dataset: negative limit, size, shape count or frame stride", kind);
    return NULL;
  }
  if (options->split != NULL && strcmp (options->split, "val2017") != 0 &&
      strcmp (options->split, "train2017") != 0) {
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_INVALID,
                 "%s dataset: unknown split '%s'; use val2017 or train2017", kind,
                 options->split);
    return NULL;
  }
  Sam2qDataset *ds = g_new0 (Sam2qDataset, 1);
  ds->klass = klass;
  ds->path = g_strdup (path != NULL ? path : "");
  ds->options = *options;
  ds->split = g_strdup (options->split);
  ds->options.split = NULL;
  ds->size = -1;
  if (!klass->open (ds, error)) {
    sam2q_dataset_free (ds);
    return NULL;
  }
  ds->options.split = ds->split;
  return ds;
}

void
sam2q_dataset_free (Sam2qDataset *dataset)
{
  if (dataset == NULL)
    return;
  if (dataset->klass->free != NULL && dataset->data != NULL)
    dataset->klass->free (dataset->data);
  g_free (dataset->path);
  g_free (dataset->split);
  g_free (dataset);
}

int
sam2q_dataset_size (const Sam2qDataset *dataset)
{
  g_return_val_if_fail (dataset != NULL, -1);
  return dataset->size;
}

gboolean
sam2q_dataset_next (Sam2qDataset *dataset, Sam2qSample *sample, GError **error)
{
  g_return_val_if_fail (dataset != NULL && sample != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  sam2q_sample_clear (sample);
  const int limit = dataset->options.limit;
  if ((dataset->size >= 0 && dataset->index >= dataset->size) ||
      (limit > 0 && dataset->index >= limit)) {
    dataset->size = dataset->index;
    return FALSE;
  }
  sample->index = dataset->index;
  sample->timestamp = -1;
  GError *local = NULL;
  gboolean ok = dataset->klass->next (dataset, sample, &local);
  if (ok || local != NULL)
    dataset->index++;      /* a sample that failed is skipped by the next call */
  if (!ok) {
    sam2q_sample_clear (sample);
    if (local != NULL)
      g_propagate_error (error, local);
  }
  return ok;
}
