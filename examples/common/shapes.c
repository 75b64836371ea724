/* shapes.c: the procedural shapes of shapes.h.
 *
 * Parameters are drawn once per scene from a splitmix64 stream in a fixed order, so a seed
 * always gives the same shapes; per-pixel noise comes from a counter-based hash of (seed, frame,
 * pixel, channel), so any frame can be drawn on its own. Geometry follows train_shapes.py: pixel
 * centres at (x + 0.5, y + 0.5), ellipses and rectangles in a frame rotated by theta, triangles
 * with vertices at (cx + r1 cos a, cy + r2 sin a) for three sorted random angles, stripes of
 * amplitude 35 across the rotated x axis. */
#include "shapes.h"

#include <math.h>
#include <string.h>

/* Gaussian noise on every channel, as in training. */
#define NOISE_SIGMA 6.0
#define STRIPE_AMPLITUDE 35.0
#define STRIPE_PROBABILITY 0.4
/* train_shapes.py's radii are 10 + 45 u pixels on 256 x 256 pictures. */
#define REFERENCE_SIZE 256.0
#define RADIUS_MIN 10.0
#define RADIUS_RANGE 45.0
/* Motion per frame, in reference pixels and radians: slow enough for a tracker to follow. */
#define SPEED_MIN 0.5
#define SPEED_RANGE 2.5
#define SPIN_MAX 0.04

struct _Sam2ShapesScene {
  int width, height;
  gboolean moving;
  guint64 noise_key;
  guint8 color0[3], color1[3];             /* background gradient ends */
  double gradient_angle;
  int n_shapes;
  struct Shape {
    Sam2ShapeKind kind;
    double cx, cy, r1, r2, theta;
    double corner_angle[3];                /* triangles: sorted, in [0, 2 pi) */
    guint8 color[3];
    gboolean striped;
    double stripe_frequency, stripe_phase; /* radians per pixel along the rotated x axis */
    double vx, vy, spin;                   /* pixels and radians per frame */
  } *shapes;
};

typedef struct Shape Shape;

/* Where a shape is in one frame. */
typedef struct {
  double cx, cy, cos_t, sin_t;
  double tx[3], ty[3];                     /* triangle corners */
  double reach;                            /* no pixel of the shape is farther from the centre */
} Pose;

/* ---- randomness ------------------------------------------------------------------------- */

static guint64
mix64 (guint64 z)
{
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static double
next_uniform (guint64 *state)
{
  *state += G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
  return (double) (mix64 (*state) >> 11) * 0x1.0p-53;     /* [0, 1) */
}

/* A standard normal sample that depends only on (key, counter): Box-Muller on two 32-bit
 * uniforms from one hash. */
static double
hashed_normal (guint64 key, guint64 counter)
{
  guint64 z = mix64 (key ^ mix64 (counter + G_GUINT64_CONSTANT (0x9E3779B97F4A7C15)));
  double u1 = ((double) (z >> 32) + 0.5) * 0x1.0p-32;      /* (0, 1): log is finite */
  double u2 = (double) (z & 0xffffffffu) * 0x1.0p-32;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

/* ---- scenes ----------------------------------------------------------------------------- */

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x > y ? 1 : x < y ? -1 : 0;
}

static void
draw_shape (Shape *s, guint64 *rng, int width, int height, double scale)
{
  const int kind = (int) (next_uniform (rng) * 3);
  s->kind = (Sam2ShapeKind) MIN (kind, 2);
  s->cx = next_uniform (rng) * width;
  s->cy = next_uniform (rng) * height;
  s->r1 = (RADIUS_MIN + next_uniform (rng) * RADIUS_RANGE) * scale;
  s->r2 = (RADIUS_MIN + next_uniform (rng) * RADIUS_RANGE) * scale;
  s->theta = next_uniform (rng) * G_PI;
  for (int i = 0; i < 3; i++)
    s->corner_angle[i] = next_uniform (rng) * 2 * G_PI;
  qsort (s->corner_angle, 3, sizeof (double), compare_doubles);
  for (int c = 0; c < 3; c++)
    s->color[c] = (guint8) (next_uniform (rng) * 255);
  s->striped = next_uniform (rng) < STRIPE_PROBABILITY;
  s->stripe_frequency = (0.1 + next_uniform (rng) * 0.4) / scale;
  /* train_shapes.py takes the phase from the absolute position; kept fixed so that stripes
   * travel with a moving shape, and equal to the still picture's. */
  s->stripe_phase = s->cx * cos (s->theta) + s->cy * sin (s->theta);
  const double speed = (SPEED_MIN + next_uniform (rng) * SPEED_RANGE) * scale;
  const double heading = next_uniform (rng) * 2 * G_PI;
  s->vx = speed * cos (heading);
  s->vy = speed * sin (heading);
  s->spin = (2 * next_uniform (rng) - 1) * SPIN_MAX;
}

static Sam2ShapesScene *
scene_new (guint64 seed, int width, int height, int n_shapes, gboolean moving)
{
  g_return_val_if_fail (width >= 1 && width <= 16384 && height >= 1 && height <= 16384, NULL);
  g_return_val_if_fail (n_shapes >= 1 && n_shapes <= SAM2_SHAPES_MAX, NULL);
  Sam2ShapesScene *scene = g_new0 (Sam2ShapesScene, 1);
  scene->width = width;
  scene->height = height;
  scene->moving = moving;
  scene->n_shapes = n_shapes;
  guint64 rng = mix64 (seed ^ G_GUINT64_CONSTANT (0x5348415045530001));   /* "SHAPES" */
  scene->noise_key = mix64 (seed ^ G_GUINT64_CONSTANT (0x4E4F495345000002));  /* "NOISE" */
  for (int c = 0; c < 3; c++)
    scene->color0[c] = (guint8) (next_uniform (&rng) * 255);
  for (int c = 0; c < 3; c++)
    scene->color1[c] = (guint8) (next_uniform (&rng) * 255);
  scene->gradient_angle = next_uniform (&rng) * 2 * G_PI;
  const double scale = MIN (width, height) / REFERENCE_SIZE;
  scene->shapes = g_new0 (Shape, n_shapes);
  for (int i = 0; i < n_shapes; i++)
    draw_shape (&scene->shapes[i], &rng, width, height, scale);
  return scene;
}

Sam2ShapesScene *
sam2_shapes_scene_new (guint64 seed, int width, int height, int n_shapes)
{
  return scene_new (seed, width, height, n_shapes, TRUE);
}

void
sam2_shapes_scene_free (Sam2ShapesScene *scene)
{
  if (scene == NULL)
    return;
  g_free (scene->shapes);
  g_free (scene);
}

int
sam2_shapes_scene_get_width (const Sam2ShapesScene *scene)
{
  return scene->width;
}

int
sam2_shapes_scene_get_height (const Sam2ShapesScene *scene)
{
  return scene->height;
}

int
sam2_shapes_scene_get_n_shapes (const Sam2ShapesScene *scene)
{
  return scene->n_shapes;
}

Sam2ShapeKind
sam2_shapes_scene_get_kind (const Sam2ShapesScene *scene, int shape)
{
  g_return_val_if_fail (shape >= 0 && shape < scene->n_shapes, SAM2_SHAPE_ELLIPSE);
  return scene->shapes[shape].kind;
}

const char *
sam2_shape_kind_name (Sam2ShapeKind kind)
{
  switch (kind) {
  case SAM2_SHAPE_ELLIPSE:
    return "ellipse";
  case SAM2_SHAPE_RECTANGLE:
    return "rectangle";
  case SAM2_SHAPE_TRIANGLE:
    return "triangle";
  }
  return "unknown";
}

/* ---- motion ----------------------------------------------------------------------------- */

/* Position on a segment [lo, hi] of a point moving at constant speed that bounces off the ends:
 * a triangle wave, so the position at any time is computed directly. */
static double
bounce (double start, double velocity, double t, double lo, double hi)
{
  const double length = hi - lo;
  if (length <= 0)
    return (lo + hi) / 2;
  double x = fmod (start + velocity * t - lo, 2 * length);
  if (x < 0)
    x += 2 * length;
  return lo + (x <= length ? x : 2 * length - x);
}

static void
shape_pose (const Sam2ShapesScene *scene, const Shape *s, int frame, Pose *pose)
{
  double spin = 0;
  pose->cx = s->cx;
  pose->cy = s->cy;
  if (scene->moving) {
    /* The centre bounces half a radius in from the border: shapes leave the picture partly,
     * as objects do, but never for long. */
    const double margin = 0.5 * MAX (s->r1, s->r2);
    pose->cx = bounce (s->cx, s->vx, frame, margin, scene->width - margin);
    pose->cy = bounce (s->cy, s->vy, frame, margin, scene->height - margin);
    spin = s->spin * frame;
  }
  const double theta = s->theta + spin;
  pose->cos_t = cos (theta);
  pose->sin_t = sin (theta);
  /* Triangles are not rotated by theta in train_shapes.py, only by the spin here. */
  const double cs = cos (spin), ss = sin (spin);
  for (int i = 0; i < 3; i++) {
    double ox = s->r1 * cos (s->corner_angle[i]), oy = s->r2 * sin (s->corner_angle[i]);
    pose->tx[i] = pose->cx + ox * cs - oy * ss;
    pose->ty[i] = pose->cy + ox * ss + oy * cs;
  }
  pose->reach = sqrt (s->r1 * s->r1 + s->r2 * s->r2) + 1;
}

/* Whether the pixel centre (px, py) lies in the shape. */
static gboolean
shape_contains (const Shape *s, const Pose *p, double px, double py)
{
  const double dx = px - p->cx, dy = py - p->cy;
  const double u = dx * p->cos_t + dy * p->sin_t, v = -dx * p->sin_t + dy * p->cos_t;
  switch (s->kind) {
  case SAM2_SHAPE_ELLIPSE:
    return (u / s->r1) * (u / s->r1) + (v / s->r2) * (v / s->r2) <= 1;
  case SAM2_SHAPE_RECTANGLE:
    return fabs (u) <= s->r1 && fabs (v) <= s->r2;
  case SAM2_SHAPE_TRIANGLE: {
    double e[3];
    for (int i = 0; i < 3; i++) {
      int j = (i + 1) % 3;
      e[i] = (p->tx[j] - p->tx[i]) * (py - p->ty[i]) - (p->ty[j] - p->ty[i]) * (px - p->tx[i]);
    }
    return (e[0] >= 0 && e[1] >= 0 && e[2] >= 0) || (e[0] <= 0 && e[1] <= 0 && e[2] <= 0);
  }
  }
  return FALSE;
}

/* labels[y * width + x]: 0 for background, i + 1 where shape i is the topmost. Only pixels
 * within a shape's reach are tested. */
static guint8 *
render_labels (const Sam2ShapesScene *scene, int frame, Pose *poses)
{
  const int w = scene->width, h = scene->height;
  guint8 *labels = g_malloc0 ((size_t) w * h);
  for (int i = 0; i < scene->n_shapes; i++) {
    const Shape *s = &scene->shapes[i];
    Pose *p = &poses[i];
    shape_pose (scene, s, frame, p);
    const int x0 = (int) CLAMP (floor (p->cx - p->reach), 0, w);
    const int x1 = (int) CLAMP (ceil (p->cx + p->reach), 0, w);
    const int y0 = (int) CLAMP (floor (p->cy - p->reach), 0, h);
    const int y1 = (int) CLAMP (ceil (p->cy + p->reach), 0, h);
    for (int y = y0; y < y1; y++)
      for (int x = x0; x < x1; x++)
        if (shape_contains (s, p, x + 0.5, y + 0.5))
          labels[(size_t) y * w + x] = (guint8) (i + 1);
  }
  return labels;
}

static void
render_pixels (const Sam2ShapesScene *scene, int frame, const guint8 *labels, const Pose *poses,
               guint8 *rgb, int stride)
{
  const int w = scene->width, h = scene->height;
  const double ca = cos (scene->gradient_angle), sa = sin (scene->gradient_angle);
  const double extent = MAX (w, h);
  const guint64 frame_key = mix64 (scene->noise_key + (guint64) frame);
  for (int y = 0; y < h; y++) {
    guint8 *row = rgb + (size_t) y * stride;
    for (int x = 0; x < w; x++) {
      const double px = x + 0.5, py = y + 0.5;
      const int label = labels[(size_t) y * w + x];
      double value[3];
      if (label == 0) {
        double t = CLAMP ((px * ca + py * sa) / extent * 0.7 + 0.5, 0.0, 1.0);
        for (int c = 0; c < 3; c++)
          value[c] = scene->color0[c] * (1 - t) + scene->color1[c] * t;
      } else {
        const Shape *s = &scene->shapes[label - 1];
        const Pose *p = &poses[label - 1];
        double stripes = 0;
        if (s->striped) {
          double u = (px - p->cx) * p->cos_t + (py - p->cy) * p->sin_t;
          stripes = STRIPE_AMPLITUDE * sin ((u + s->stripe_phase) * s->stripe_frequency);
        }
        for (int c = 0; c < 3; c++)
          value[c] = s->color[c] + stripes;
      }
      const guint64 index = ((guint64) y * w + x) * 3;
      for (int c = 0; c < 3; c++) {
        double v = value[c] + hashed_normal (frame_key, index + c) * NOISE_SIGMA;
        row[x * 3 + c] = (guint8) CLAMP (nearbyint (v), 0, 255);
      }
    }
  }
}

static void
labels_to_masks (const guint8 *labels, int n_shapes, size_t n_pixels, guint8 *masks)
{
  memset (masks, 0, (size_t) n_shapes * n_pixels);
  for (size_t i = 0; i < n_pixels; i++)
    if (labels[i] != 0)
      masks[(size_t) (labels[i] - 1) * n_pixels + i] = 1;
}

void
sam2_shapes_scene_render (const Sam2ShapesScene *scene, int frame, guint8 *rgb, int stride,
                          guint8 *masks)
{
  g_return_if_fail (scene != NULL && rgb != NULL);
  g_return_if_fail (frame >= 0 && stride >= scene->width * 3);
  Pose *poses = g_new (Pose, scene->n_shapes);
  guint8 *labels = render_labels (scene, frame, poses);
  render_pixels (scene, frame, labels, poses, rgb, stride);
  if (masks != NULL)
    labels_to_masks (labels, scene->n_shapes, (size_t) scene->width * scene->height, masks);
  g_free (labels);
  g_free (poses);
}

void
sam2_shapes_scene_describe (const Sam2ShapesScene *scene, int frame, Sam2ShapeInfo *info)
{
  g_return_if_fail (scene != NULL && info != NULL && frame >= 0);
  const int w = scene->width, h = scene->height;
  Pose *poses = g_new (Pose, scene->n_shapes);
  guint8 *labels = render_labels (scene, frame, poses);
  guint8 *mask = g_malloc ((size_t) w * h);
  for (int i = 0; i < scene->n_shapes; i++) {
    guint64 area = 0;
    for (size_t p = 0; p < (size_t) w * h; p++) {
      mask[p] = labels[p] == i + 1;
      area += mask[p];
    }
    info[i].area = area;
    sam2_shapes_mask_box (mask, w, h, w, info[i].box);
    sam2_shapes_mask_point (mask, w, h, w, info[i].point);
  }
  g_free (mask);
  g_free (labels);
  g_free (poses);
}

void
sam2_shapes_draw (guint64 seed, int width, int height, int n_shapes, guint8 *rgb, int stride,
                  guint8 *masks)
{
  Sam2ShapesScene *scene = scene_new (seed, width, height, n_shapes, FALSE);
  g_return_if_fail (scene != NULL);
  sam2_shapes_scene_render (scene, 0, rgb, stride, masks);
  sam2_shapes_scene_free (scene);
}

/* ---- mask helpers ----------------------------------------------------------------------- */

gboolean
sam2_shapes_mask_box (const guint8 *mask, int width, int height, int stride, double box[4])
{
  int x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (int y = 0; y < height; y++) {
    const guint8 *row = mask + (size_t) y * stride;
    for (int x = 0; x < width; x++)
      if (row[x]) {
        x0 = MIN (x0, x);
        x1 = MAX (x1, x);
        y0 = MIN (y0, y);
        y1 = MAX (y1, y);
      }
  }
  if (x1 < 0) {
    box[0] = box[1] = box[2] = box[3] = 0;
    return FALSE;
  }
  box[0] = x0;
  box[1] = y0;
  box[2] = x1 + 1;
  box[3] = y1 + 1;
  return TRUE;
}

/* One row of the exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher, 2012):
 * d[q] = min over p of (q - p)^2 + f[p], through the lower envelope of the parabolas. f is
 * finite everywhere (the first pass saw background in every column). */
static void
distance_row (const double *f, int n, double *d, int *v, double *z)
{
  int k = 0;
  v[0] = 0;
  z[0] = -INFINITY;
  z[1] = INFINITY;
  for (int q = 1; q < n; q++) {
    /* z[0] = -inf: the loop stops at k = 0 at the latest. */
    double s;
    for (;;) {
      const int p = v[k];
      s = ((f[q] + (double) q * q) - (f[p] + (double) p * p)) / (2.0 * (q - p));
      if (s > z[k])
        break;
      k--;
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = INFINITY;
  }
  k = 0;
  for (int q = 0; q < n; q++) {
    while (z[k + 1] < q)
      k++;
    d[q] = (double) (q - v[k]) * (q - v[k]) + f[v[k]];
  }
}

gboolean
sam2_shapes_mask_point (const guint8 *mask, int width, int height, int stride, double point[2])
{
  double box[4];
  point[0] = point[1] = 0;
  if (!sam2_shapes_mask_box (mask, width, height, stride, box))
    return FALSE;
  /* Outside the box there is only background, so the transform runs on the box grown by one
   * pixel on each side, whose rim is background (inside the picture or beyond it). */
  const int bx = (int) box[0] - 1, by = (int) box[1] - 1;
  const int cw = (int) (box[2] - box[0]) + 2, ch = (int) (box[3] - box[1]) + 2;
  double *g = g_new (double, (size_t) cw * ch);

  /* Pass 1, columns: squared distance to the nearest background pixel in the same column. */
  double cx = 0, cy = 0, n = 0;
  for (int x = 0; x < cw; x++) {
    int last = -1;                         /* row of the nearest background above */
    for (int y = 0; y < ch; y++) {
      const int mx = bx + x, my = by + y;
      gboolean inside = mx >= 0 && mx < width && my >= 0 && my < height &&
                        mask[(size_t) my * stride + mx] != 0;
      if (!inside) {
        last = y;
        g[(size_t) y * cw + x] = 0;
      } else {
        g[(size_t) y * cw + x] = (double) (y - last);
        cx += mx + 0.5;
        cy += my + 0.5;
        n++;
      }
    }
    int next = ch;                         /* the rim row below is background */
    for (int y = ch - 1; y >= 0; y--) {
      double *cell = &g[(size_t) y * cw + x];
      if (*cell == 0)
        next = y;
      else
        *cell = MIN (*cell, (double) (next - y));
      *cell *= *cell;
    }
  }
  cx /= n;
  cy /= n;

  /* Pass 2, rows; keep the farthest pixel, ties to the one nearest the centroid. */
  double *d = g_new (double, cw), *z = g_new (double, cw + 1);
  int *v = g_new (int, cw);
  double best = -1, best_centre = 0;
  for (int y = 0; y < ch; y++) {
    distance_row (g + (size_t) y * cw, cw, d, v, z);
    for (int x = 0; x < cw; x++) {
      if (d[x] < best)
        continue;
      const double px = bx + x + 0.5, py = by + y + 0.5;
      const double centre = (px - cx) * (px - cx) + (py - cy) * (py - cy);
      if (d[x] > best || centre < best_centre) {
        best = d[x];
        best_centre = centre;
        point[0] = px;
        point[1] = py;
      }
    }
  }
  g_free (d);
  g_free (z);
  g_free (v);
  g_free (g);
  return TRUE;
}
