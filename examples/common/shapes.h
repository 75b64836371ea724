/* shapes.h: procedural pictures of filled shapes with ground-truth masks, drawn the way the
 * sam2-shapes fixture model was trained (generators/train_shapes.py, `gen`): a two-colour
 * gradient background, ellipses, rectangles and triangles in random colours, some with stripes,
 * later shapes occluding earlier ones, and Gaussian pixel noise (sigma 6). Everything is a pure
 * function of a 64-bit seed (and, for moving scenes, the frame index), at any image size:
 * shape sizes scale with min(width, height) / 256, so 256 x 256 matches the training images.
 *
 *   Sam2ShapesScene *scene = sam2_shapes_scene_new (seed, 640, 480, 6);
 *   for (int t = 0; t < 100; t++) {
 *     sam2_shapes_scene_render (scene, t, rgb, 640 * 3, masks);   // masks: 6 x 480 x 640 bytes
 *     sam2_shapes_scene_describe (scene, t, info);                // boxes and prompt points
 *   }
 *   sam2_shapes_scene_free (scene);
 *
 * Shapes translate and rotate smoothly and bounce off the borders; frame t is computed directly
 * from t (no stepping), so frames can be rendered in any order and by several threads. */
#ifndef SAM2_SHAPES_H
#define SAM2_SHAPES_H

#include <glib.h>

G_BEGIN_DECLS

/* At most this many shapes per picture (masks are labelled with one byte internally). */
#define SAM2_SHAPES_MAX 255

typedef enum {
  SAM2_SHAPE_ELLIPSE,
  SAM2_SHAPE_RECTANGLE,
  SAM2_SHAPE_TRIANGLE,
} Sam2ShapeKind;

/* What a prompt or an evaluation needs of one shape in one picture. Everything describes the
 * visible part (what later shapes and the borders leave of it), which is the ground truth. */
typedef struct {
  guint64 area;                /* visible pixels; 0 when the shape is hidden or outside */
  double box[4];               /* x0, y0, x1, y1 in pixels, x1 and y1 exclusive (the mask's
                                * bounding box, as train_shapes.py computes it); zeros if hidden */
  double point[2];             /* x, y of a visible pixel centre, see sam2_shapes_mask_point */
} Sam2ShapeInfo;

typedef struct _Sam2ShapesScene Sam2ShapesScene;

/* A scene of `n_shapes` (1 to SAM2_SHAPES_MAX) moving shapes on a `width` x `height` picture
 * (both 1 to 16384). Never fails for valid arguments. */
Sam2ShapesScene *sam2_shapes_scene_new (guint64 seed, int width, int height, int n_shapes);
void sam2_shapes_scene_free (Sam2ShapesScene *scene);

int sam2_shapes_scene_get_width (const Sam2ShapesScene *scene);
int sam2_shapes_scene_get_height (const Sam2ShapesScene *scene);
int sam2_shapes_scene_get_n_shapes (const Sam2ShapesScene *scene);
Sam2ShapeKind sam2_shapes_scene_get_kind (const Sam2ShapesScene *scene, int shape);
const char *sam2_shape_kind_name (Sam2ShapeKind kind);     /* "ellipse", "rectangle", "triangle" */

/* Draws frame `frame` (>= 0) as RGB8 rows of `stride` bytes into `rgb`. `masks`, if not NULL,
 * receives n_shapes planes of height x width bytes (row-major, no padding), 1 where that shape
 * is visible and 0 elsewhere; the planes never overlap. */
void sam2_shapes_scene_render (const Sam2ShapesScene *scene, int frame, guint8 *rgb, int stride,
                               guint8 *masks);

/* Fills info[0 .. n_shapes - 1] for frame `frame` (the same masks render produces). */
void sam2_shapes_scene_describe (const Sam2ShapesScene *scene, int frame, Sam2ShapeInfo *info);

/* One still picture like those of train_shapes.py: shapes where the seed puts them (they may
 * be cut by the borders), no motion. `masks` as for sam2_shapes_scene_render, or NULL. The
 * shapes (kinds, sizes, colours, in order) are those of sam2_shapes_scene_new with the same
 * seed, size and count; only the scene's positions differ, kept off the borders by its bounce. */
void sam2_shapes_draw (guint64 seed, int width, int height, int n_shapes, guint8 *rgb,
                       int stride, guint8 *masks);

/* ---- mask helpers ---------------------------------------------------------------------- */

/* The bounding box of the non-zero bytes of a mask, x1 and y1 exclusive; FALSE (and zeros)
 * when the mask is empty. */
gboolean sam2_shapes_mask_box (const guint8 *mask, int width, int height, int stride,
                               double box[4]);

/* A prompt point well inside a mask: the centre (x + 0.5, y + 0.5) of the pixel farthest (in
 * Euclidean distance) from every pixel outside the mask, the picture's surroundings counting as
 * outside. Ties, common on the ridge of elongated shapes, go to the pixel closest to the mask's
 * centroid, then to the first in row-major order, so the choice is deterministic and central.
 * FALSE (and zeros) when the mask is empty. */
gboolean sam2_shapes_mask_point (const guint8 *mask, int width, int height, int stride,
                                 double point[2]);

G_END_DECLS

#endif
