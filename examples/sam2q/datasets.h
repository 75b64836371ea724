/* datasets.h: pictures (and, where the dataset has them, ground-truth objects) for sam2q's
 * calibration and evaluation, one sample at a time, from five kinds of source:
 *
 *   random   procedural shapes (examples/common/shapes.h) from a seed: pictures + masks
 *   coco     ROOT/{val2017,train2017}/ + ROOT/annotations/instances_{val,train}2017.json
 *            (polygons, uncompressed and compressed RLE), optional ROOT/points.json
 *   sa1b     a directory of SA-1B files: sa_N.jpg next to sa_N.json (compressed RLE masks,
 *            boxes, point_coords)
 *   images   a directory of image files, in name order, no annotations
 *   video    a video file, decoded with GStreamer, every n-th frame, no annotations
 *
 *   Sam2qDataset *ds = sam2q_dataset_open ("coco", "/data/coco", NULL, &error);
 *   Sam2qSample sample = { 0 };
 *   while (sam2q_dataset_next (ds, &sample, &error)) {
 *     for (int i = 0; i < sample.n_annotations; i++) {
 *       const Sam2qAnnotation *a = &sample.annotations[i];
 *       // a->box, a->point: prompts; sam2q_annotation_get_mask (a): the ground truth
 *     }
 *   }
 *   if (error != NULL) ...                     // FALSE with no error: the end
 *   sam2q_sample_clear (&sample);
 *   sam2q_dataset_free (ds);
 *
 * Masks are kept as COCO run-length encodings (core/rle.h) and decoded on request: a COCO
 * picture with 50 objects holds a few kilobytes of runs instead of 50 full-size masks. The coco
 * kind keeps its parsed annotation file in memory while open, about 12 times the file's size
 * (instances_val2017.json: some 0.3 GB; for train2017, about 5.5 GB, a subset file is kinder).
 *
 * Prompt points: SA-1B's own point_coords; else an entry of points.json (below); else the mask
 * pixel farthest from the mask's border (sam2_shapes_mask_point in shapes.h: Euclidean
 * distance transform, ties to the pixel nearest the centroid), which lies well inside even
 * concave or ring-shaped objects, unlike the centroid or the box centre.
 *
 * points.json (COCO only; looked for at ROOT/points.json, then ROOT/annotations/points.json) is
 * a list of {"image_id": N, "point": [x, y], "label": 1} ("label" optional, 1 if given: the
 * points are positive prompts) and optionally "annotation_id": M. An
 * entry with annotation_id sets that annotation's point; entries with only image_id set the
 * points of that picture's annotations in order (the k-th such entry for the k-th annotation).
 *
 * Decoding pictures goes through sam2q_image_load, so any format an installed GStreamer plugin
 * reads works, and errors name the file. */
#ifndef SAM2Q_DATASETS_H
#define SAM2Q_DATASETS_H

#include <glib.h>

#include "image-io.h"
#include "rle.h"

G_BEGIN_DECLS

#define SAM2Q_DATASET_ERROR (sam2q_dataset_error_quark ())
GQuark sam2q_dataset_error_quark (void);

/* Picture decoding errors keep their SAM2Q_IMAGE_ERROR domain (with the sample named in front);
 * these are the dataset's own. */
typedef enum {
  SAM2Q_DATASET_ERROR_INVALID,     /* unknown kind, options out of range */
  SAM2Q_DATASET_ERROR_NOT_FOUND,   /* the dataset or a file its layout needs is missing */
  SAM2Q_DATASET_ERROR_FORMAT,      /* an annotation file is malformed or contradicts the picture */
  SAM2Q_DATASET_ERROR_VIDEO,       /* the video cannot be decoded */
} Sam2qDatasetErrorCode;

/* All zero (or NULL options) means the defaults in brackets. */
typedef struct {
  int limit;                   /* at most this many samples [all; random: 64] */
  guint64 seed;                /* random: seed of the pictures [0] */
  int width, height;           /* random: picture size [256 x 256] */
  int n_shapes;                /* random: shapes per picture [6] */
  const char *split;           /* coco: "val2017" or "train2017" [val2017 if its annotation
                                * file exists, else train2017] */
  int frame_stride;            /* video: take frames 0, n, 2n, ... [1] */
} Sam2qDatasetOptions;

typedef struct {
  gint64 id;                   /* annotation id (coco, sa1b), shape index (random); -1 if none */
  int category_id;             /* coco category; random: 1 ellipse, 2 rectangle, 3 triangle */
  gboolean iscrowd;            /* coco's iscrowd */
  double box[4];               /* x0, y0, x1, y1 in pixels (coco and SA-1B: x, y, x + w, y + h
                                * of their bbox; random: the mask's box, x1 and y1 exclusive) */
  double point[2];             /* x, y in pixels: a positive prompt (see above) */
  guint64 area;                /* pixels in the mask */
  Sam2Rle *mask;               /* the mask, picture-sized, run-length encoded */
} Sam2qAnnotation;

typedef struct {
  int index;                   /* 0, 1, 2, ... in the order the dataset gives samples */
  gint64 image_id;             /* coco / sa1b image id, video frame number, else index */
  char *name;                  /* the picture's file name, or "frame-000042" / "random-000003" */
  double timestamp;            /* video: seconds from the start; -1 for pictures */
  Sam2qImage *image;           /* RGB8 */
  int n_annotations;
  Sam2qAnnotation *annotations;
} Sam2qSample;

typedef struct _Sam2qDataset Sam2qDataset;

/* NULL-terminated: "random", "coco", "sa1b", "images", "video". */
const char *const *sam2q_dataset_kinds (void);

/* Opens the dataset and checks its layout (and, for coco, reads the annotation file), so that
 * a wrong path fails here with the path that was expected. `path` is ignored for random. */
Sam2qDataset *sam2q_dataset_open (const char *kind, const char *path,
                                  const Sam2qDatasetOptions *options, GError **error);
void sam2q_dataset_free (Sam2qDataset *dataset);

/* The number of samples, or -1 while unknown (a video before its end). */
int sam2q_dataset_size (const Sam2qDataset *dataset);

/* The next sample into `sample` (zero-initialised before the first call; what it held is
 * cleared first). FALSE with no error at the end; FALSE with an error otherwise, after which
 * the dataset may be freed or the next sample asked for. */
gboolean sam2q_dataset_next (Sam2qDataset *dataset, Sam2qSample *sample, GError **error);

/* Frees what the sample holds and zeroes it. */
void sam2q_sample_clear (Sam2qSample *sample);

/* The annotation's mask as height x width bytes 0 / 1 (g_free), or decoded into `mask` with
 * `stride` bytes per row. */
guint8 *sam2q_annotation_get_mask (const Sam2qAnnotation *annotation);
void sam2q_annotation_decode_mask (const Sam2qAnnotation *annotation, guint8 *mask, int stride);

G_END_DECLS

#endif
