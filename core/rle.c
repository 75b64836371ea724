/* rle.c: COCO run-length encoding, a port of pycocotools' maskApi.c (rleEncode, rleDecode,
 * rleMerge, rleFrPoly, rleToString, rleFrString, rleArea, rleToBbox) that keeps its exact
 * arithmetic, so that strings, areas and boxes are the ones the COCO API computes. What differs
 * is only what pycocotools leaves undefined: every input is validated, integer arithmetic that
 * could overflow is done in 64 bits, and a malformed string is an error instead of garbage. */
#include "rle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sam2.h"

/* Counts are 32-bit in the format, so a mask may hold at most 2^32 - 1 pixels. */
#define MAX_PIXELS ((guint64) G_MAXUINT32)
/* Polygon coordinates are multiplied by 5 and rasterised point by point along each edge;
 * beyond this magnitude the edge alone would need tens of millions of points, which no real
 * annotation has, and the int arithmetic of the reference would overflow. */
#define MAX_POLYGON_COORD 1e6
/* Upsampling factor of rleFrPoly: edges are traced on a grid 5x finer than the pixels. */
#define POLY_SCALE 5.0
/* Points one polygon's trace may visit (two ints each): within MAX_POLYGON_COORD, a few
 * thousand vertices zig-zagging far outside the image would otherwise ask for tens of GB. A
 * real outline's trace is about 5x its perimeter in pixels: 16.7 M points is a perimeter of
 * 3.3 M pixels, 200 times around a 4K frame. */
#define MAX_POLYGON_TRACE ((size_t) 1 << 24)

/* A coordinate on the fine grid; (int) truncates towards zero, as in the reference, also for
 * negative coordinates. */
static inline int
poly_grid (double c)
{
  return (int) (POLY_SCALE * c + .5);
}

/* Points rle_from_polygon's trace visits for the k vertices xy (x, y pairs). */
static size_t
polygon_trace_points (const double *xy, int k)
{
  size_t m = 0;
  for (int j = 0; j < k; j++) {
    const int next = (j + 1) % k;
    const int dx = abs (poly_grid (xy[2 * j]) - poly_grid (xy[2 * next]));
    const int dy = abs (poly_grid (xy[2 * j + 1]) - poly_grid (xy[2 * next + 1]));
    m += (size_t) MAX (dx, dy) + 1;
  }
  return m;
}

static Sam2Rle *
rle_new (int height, int width, const guint32 *counts, int n_counts)
{
  Sam2Rle *rle = g_new (Sam2Rle, 1);
  rle->height = height;
  rle->width = width;
  rle->n_counts = n_counts;
  rle->counts = g_new (guint32, MAX (n_counts, 1));
  if (n_counts > 0)
    memcpy (rle->counts, counts, sizeof (guint32) * n_counts);
  return rle;
}

void
sam2_rle_free (Sam2Rle *rle)
{
  if (rle == NULL)
    return;
  g_free (rle->counts);
  g_free (rle);
}

static gboolean
check_size (int height, int width, GError **error)
{
  if (height < 0 || width < 0 || (guint64) height * (guint64) width > MAX_PIXELS) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "invalid RLE size %d x %d (height x width): must be non-negative with at most "
                 "2^32 - 1 pixels", height, width);
    return FALSE;
  }
  return TRUE;
}

/* ---- masks ------------------------------------------------------------------------------- */

/* Column-major runs being built: `run` pixels of `value` so far. */
typedef struct {
  GArray *counts;              /* guint32 */
  guint8 value;
  guint32 run;
} RunBuilder;

static inline void
runs_add (RunBuilder *b, guint8 value, guint32 n)
{
  if (n == 0)
    return;
  if (value != b->value) {
    g_array_append_val (b->counts, b->run);
    b->run = 0;
    b->value = value;
  }
  b->run += n;
}

Sam2Rle *
sam2_rle_encode_region (const guint8 *region, int stride, int x0, int y0, int w, int h,
                        int width, int height)
{
  g_return_val_if_fail (width >= 0 && height >= 0, NULL);
  g_return_val_if_fail ((guint64) width * (guint64) height <= MAX_PIXELS, NULL);
  g_return_val_if_fail (w >= 0 && h >= 0 && x0 >= 0 && y0 >= 0, NULL);
  g_return_val_if_fail ((gint64) x0 + w <= width && (gint64) y0 + h <= height, NULL);
  g_return_val_if_fail (region != NULL || w == 0 || h == 0, NULL);
  g_return_val_if_fail (stride >= w, NULL);

  /* the runs only change inside the region: at most two per region pixel, plus the first */
  RunBuilder b = { g_array_sized_new (FALSE, FALSE, sizeof (guint32), 16), 0, 0 };
  for (int x = 0; x < width; x++) {
    if (x < x0 || x >= x0 + w || h == 0) {
      runs_add (&b, 0, (guint32) height);
      continue;
    }
    const guint8 *column = region + (x - x0);
    runs_add (&b, 0, (guint32) y0);
    for (int y = 0; y < h; y++)
      runs_add (&b, column[(size_t) y * stride] != 0, 1);
    runs_add (&b, 0, (guint32) (height - y0 - h));
  }
  g_array_append_val (b.counts, b.run);
  Sam2Rle *rle = rle_new (height, width, (const guint32 *) b.counts->data, (int) b.counts->len);
  g_array_unref (b.counts);
  return rle;
}

Sam2Rle *
sam2_rle_encode (const guint8 *mask, int width, int height, int stride)
{
  /* the whole mask as its own region */
  return sam2_rle_encode_region (mask, stride, 0, 0, width, height, width, height);
}

void
sam2_rle_decode (const Sam2Rle *rle, guint8 *mask, int stride)
{
  g_return_if_fail (rle != NULL);
  g_return_if_fail (stride >= rle->width);
  const int height = rle->height, width = rle->width;
  for (int y = 0; y < height; y++)
    memset (mask + (size_t) y * stride, 0, width);
  if (height == 0 || width == 0)
    return;

  /* Runs of ones are written column piece by column piece; a hand-made RLE whose counts run past
   * the mask is cut at its end, as pycocotools' rleDecode does. */
  const guint64 area = (guint64) height * width;
  guint64 position = 0;
  for (int i = 0; i < rle->n_counts && position < area; i++) {
    guint64 end = MIN (position + rle->counts[i], area);
    if (i % 2 == 1) {
      while (position < end) {
        int x = (int) (position / height), y = (int) (position % height);
        int rows = (int) MIN ((guint64) (height - y), end - position);
        guint8 *p = mask + (size_t) y * stride + x;
        for (int r = 0; r < rows; r++, p += stride)
          *p = 1;
        position += rows;
      }
    }
    position = end;
  }
}

/* ---- string form ------------------------------------------------------------------------- */

char *
sam2_rle_to_string (const Sam2Rle *rle)
{
  g_return_val_if_fail (rle != NULL, NULL);
  /* A 32-bit difference takes at most 7 characters of 5 bits. */
  char *s = g_malloc ((size_t) rle->n_counts * 7 + 1);
  size_t p = 0;
  for (int i = 0; i < rle->n_counts; i++) {
    gint64 x = rle->counts[i];
    /* i > 2, not i >= 2: the third count is stored as is. This is pycocotools' format. */
    if (i > 2)
      x -= rle->counts[i - 2];
    gboolean more = TRUE;
    while (more) {
      int c = (int) (x & 0x1f);
      x >>= 5;                 /* arithmetic shift: keeps the sign of negative differences */
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more)
        c |= 0x20;
      s[p++] = (char) (c + 48);
    }
  }
  s[p] = '\0';
  return s;
}

Sam2Rle *
sam2_rle_from_string (const char *string, int height, int width, GError **error)
{
  g_return_val_if_fail (string != NULL, NULL);
  if (!check_size (height, width, error))
    return NULL;

  const size_t length = strlen (string);
  guint32 *counts = g_new (guint32, MAX (length, 1));
  int n = 0;
  guint64 total = 0;
  size_t p = 0;
  Sam2Rle *rle = NULL;
  while (p < length) {
    const size_t start = p;
    gint64 x = 0;
    int k = 0;
    gboolean more = TRUE;
    while (more) {
      if (p >= length) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "invalid RLE string: it ends in the middle of count %d (which starts at "
                     "character %zu)", n, start);
        goto out;
      }
      int c = (unsigned char) string[p] - 48;
      if (c < 0 || c > 63) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "invalid RLE string: character %zu is '%c' (0x%02x); only '0' to 'o' "
                     "(0x30 to 0x6f) can occur", p, g_ascii_isprint (string[p]) ? string[p] : '?',
                     (unsigned char) string[p]);
        goto out;
      }
      /* 7 characters carry 35 bits, more than any 32-bit count or difference needs. */
      if (k == 7) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "invalid RLE string: count %d (from character %zu) is longer than 7 "
                     "characters and cannot fit in 32 bits", n, start);
        goto out;
      }
      x |= (gint64) (c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      p++;
      k++;
      if (!more && (c & 0x10))
        x |= -((gint64) 1 << (5 * k));      /* sign extension */
    }
    if (n > 2)
      x += counts[n - 2];
    if (x < 0 || x > G_MAXUINT32) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "invalid RLE string: count %d (from character %zu) is %" G_GINT64_FORMAT
                   ", outside 0 to 2^32 - 1", n, start, x);
      goto out;
    }
    counts[n++] = (guint32) x;
    total += (guint64) x;
  }
  if (total != (guint64) height * width) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "invalid RLE string: its %d runs add up to %" G_GUINT64_FORMAT " pixels but a "
                 "%d x %d (height x width) mask has %" G_GUINT64_FORMAT, n, total, height, width,
                 (guint64) height * width);
    goto out;
  }
  rle = rle_new (height, width, counts, n);

out:
  g_free (counts);
  return rle;
}

Sam2Rle *
sam2_rle_from_counts (const guint32 *counts, int n_counts, int height, int width, GError **error)
{
  g_return_val_if_fail (counts != NULL || n_counts == 0, NULL);
  g_return_val_if_fail (n_counts >= 0, NULL);
  if (!check_size (height, width, error))
    return NULL;
  guint64 total = 0;
  for (int i = 0; i < n_counts; i++)
    total += counts[i];
  if (total != (guint64) height * width) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "invalid RLE counts: its %d runs add up to %" G_GUINT64_FORMAT " pixels but a "
                 "%d x %d (height x width) mask has %" G_GUINT64_FORMAT, n_counts, total, height,
                 width, (guint64) height * width);
    return NULL;
  }
  return rle_new (height, width, counts, n_counts);
}

/* ---- polygons ---------------------------------------------------------------------------- */

static int
compare_u32 (const void *a, const void *b)
{
  guint32 c = *(const guint32 *) a, d = *(const guint32 *) b;
  return c > d ? 1 : c < d ? -1 : 0;
}

/* rleFrPoly: traces the closed polygon on a 5x grid, keeps the points where the trace crosses a
 * pixel column centre, and turns those crossings (sorted in column-major order) into runs that
 * toggle at each one. k >= 1 vertices. */
static Sam2Rle *
rle_from_polygon (const double *xy, int k, int height, int width)
{
  int *x = g_new (int, k + 1), *y = g_new (int, k + 1);
  for (int j = 0; j < k; j++) {
    x[j] = poly_grid (xy[2 * j]);
    y[j] = poly_grid (xy[2 * j + 1]);
  }
  x[k] = x[0];
  y[k] = y[0];

  size_t m = polygon_trace_points (xy, k);
  int *u = g_new (int, m), *v = g_new (int, m);
  m = 0;
  for (int j = 0; j < k; j++) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
    const int dx = abs (xe - xs), dy = abs (ys - ye);
    /* Each edge is traced from the same end whichever way the polygon runs, so that shared
     * edges of touching polygons rasterise identically. */
    const gboolean flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) {
      int t = xs; xs = xe; xe = t;
      t = ys; ys = ye; ye = t;
    }
    /* A zero-length edge (a repeated vertex) is one point at the vertex: the reference divides
     * 0 by 0 for its slope and converts the NaN to int, but the point shares its column with
     * its neighbours, so it never makes a crossing; slope 0 keeps its row finite. */
    const double s = dx >= dy ? (dx > 0 ? (double) (ye - ys) / dx : 0.0)
                              : (double) (xe - xs) / dy;
    if (dx >= dy) {
      for (int d = 0; d <= dx; d++) {
        int t = flip ? dx - d : d;
        u[m] = t + xs;
        v[m] = (int) (ys + s * t + .5);
        m++;
      }
    } else {
      for (int d = 0; d <= dy; d++) {
        int t = flip ? dy - d : d;
        v[m] = t + ys;
        u[m] = (int) (xs + s * t + .5);
        m++;
      }
    }
  }
  g_free (x);
  g_free (y);

  /* Crossings of pixel column centres, moved back to pixel coordinates. */
  guint32 *a = g_new (guint32, m + 1);
  size_t n = 0;
  for (size_t j = 1; j < m; j++) {
    if (u[j] == u[j - 1])
      continue;
    double xd = (double) (u[j] < u[j - 1] ? u[j] : u[j] - 1);
    xd = (xd + .5) / POLY_SCALE - .5;
    if (floor (xd) != xd || xd < 0 || xd > width - 1)
      continue;
    double yd = (double) (v[j] < v[j - 1] ? v[j] : v[j - 1]);
    yd = (yd + .5) / POLY_SCALE - .5;
    if (yd < 0)
      yd = 0;
    else if (yd > height)
      yd = height;
    yd = ceil (yd);
    a[n++] = (guint32) ((gint64) xd * height + (gint64) yd);
  }
  g_free (u);
  g_free (v);
  a[n++] = (guint32) ((guint64) height * width);

  qsort (a, n, sizeof (guint32), compare_u32);
  guint32 previous = 0;
  for (size_t j = 0; j < n; j++) {
    guint32 t = a[j];
    a[j] -= previous;
    previous = t;
  }
  /* Two crossings at the same position cancel: the zero-length run between them is dropped and
   * its neighbours merged. */
  guint32 *b = g_new (guint32, n);
  size_t j = 0, nb = 0;
  b[nb++] = a[j++];
  while (j < n) {
    if (a[j] > 0) {
      b[nb++] = a[j++];
    } else {
      j++;
      if (j < n)
        b[nb - 1] += a[j++];
    }
  }
  Sam2Rle *rle = rle_new (height, width, b, (int) nb);
  g_free (a);
  g_free (b);
  return rle;
}

/* rleMerge with intersect = 0: the union of two masks of the same size, walking both run lists
 * at once. The result has the reference's run boundaries, which matters for its string form. */
static Sam2Rle *
rle_union (const Sam2Rle *a, const Sam2Rle *b)
{
  guint32 *counts = g_new (guint32, (size_t) a->n_counts + b->n_counts + 1);
  guint32 ca = a->n_counts > 0 ? a->counts[0] : 0, cb = b->n_counts > 0 ? b->counts[0] : 0;
  gboolean v = FALSE, va = FALSE, vb = FALSE;
  int m = 0, ia = 1, ib = 1;
  guint32 cc = 0;
  guint64 remaining = 1;
  while (remaining > 0) {
    guint32 c = MIN (ca, cb);
    cc += c;
    remaining = 0;
    ca -= c;
    if (ca == 0 && ia < a->n_counts) {
      ca = a->counts[ia++];
      va = !va;
    }
    remaining += ca;
    cb -= c;
    if (cb == 0 && ib < b->n_counts) {
      cb = b->counts[ib++];
      vb = !vb;
    }
    remaining += cb;
    gboolean vp = v;
    v = va || vb;
    if (v != vp || remaining == 0) {
      counts[m++] = cc;
      cc = 0;
    }
  }
  Sam2Rle *rle = rle_new (a->height, a->width, counts, m);
  g_free (counts);
  return rle;
}

Sam2Rle *
sam2_rle_from_polygons (const double *const *polygons, const int *n_coords, int n_polygons,
                        int height, int width, GError **error)
{
  g_return_val_if_fail (n_polygons >= 0, NULL);
  g_return_val_if_fail (n_polygons == 0 || (polygons != NULL && n_coords != NULL), NULL);
  if (!check_size (height, width, error))
    return NULL;
  for (int i = 0; i < n_polygons; i++) {
    if (n_coords[i] < 2 || n_coords[i] % 2 != 0) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "invalid polygon %d: %d coordinates; a polygon is a list of x, y pairs", i,
                   n_coords[i]);
      return NULL;
    }
    for (int j = 0; j < n_coords[i]; j++) {
      double c = polygons[i][j];
      if (!isfinite (c) || fabs (c) > MAX_POLYGON_COORD) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "invalid polygon %d: coordinate %d is %g; coordinates must be finite and "
                     "within +-%g pixels", i, j, c, MAX_POLYGON_COORD);
        return NULL;
      }
    }
    const size_t trace = polygon_trace_points (polygons[i], n_coords[i] / 2);
    if (trace > MAX_POLYGON_TRACE) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "invalid polygon %d: tracing its edges takes %zu points, more than %zu; "
                   "they run far outside the %dx%d image and the annotation is corrupt", i,
                   trace, MAX_POLYGON_TRACE, width, height);
      return NULL;
    }
  }
  if (n_polygons == 0 || height == 0 || width == 0) {
    guint32 all = (guint32) ((guint64) height * width);
    return rle_new (height, width, &all, 1);
  }

  Sam2Rle *merged = rle_from_polygon (polygons[0], n_coords[0] / 2, height, width);
  for (int i = 1; i < n_polygons; i++) {
    Sam2Rle *next = rle_from_polygon (polygons[i], n_coords[i] / 2, height, width);
    Sam2Rle *both = rle_union (merged, next);
    sam2_rle_free (merged);
    sam2_rle_free (next);
    merged = both;
  }
  return merged;
}

/* ---- measures ---------------------------------------------------------------------------- */

guint64
sam2_rle_area (const Sam2Rle *rle)
{
  g_return_val_if_fail (rle != NULL, 0);
  guint64 area = 0;
  for (int i = 1; i < rle->n_counts; i += 2)
    area += rle->counts[i];
  return area;
}

/* rleToBbox as fixed in pycocotools 2.0.7+: a run of ones that spans several columns covers
 * whole columns, so the box takes the full height. */
void
sam2_rle_bbox (const Sam2Rle *rle, double bbox[4])
{
  g_return_if_fail (rle != NULL);
  bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
  const int m = rle->n_counts / 2 * 2;
  if (m == 0 || rle->height == 0 || rle->width == 0)
    return;
  const guint64 h = (guint64) rle->height;
  guint64 xs = rle->width, ys = h, xe = 0, ye = 0, cc = 0;
  for (int j = 0; j < m; j++) {
    guint64 start = cc;
    cc += rle->counts[j];
    if (j % 2 == 0 || rle->counts[j] == 0)
      continue;
    guint64 x_start = start / h, y_start = start % h;
    guint64 x_end = (cc - 1) / h, y_end = (cc - 1) % h;
    xs = MIN (xs, x_start);
    xe = MAX (xe, x_end);
    if (x_start < x_end) {
      ys = 0;
      ye = h - 1;
    } else {
      ys = MIN (ys, y_start);
      ye = MAX (ye, y_end);
    }
  }
  /* The reference computes these in unsigned 32-bit arithmetic, so a mask with no pixels
   * (only zero-length runs of ones) gives the wrapped-around values; that case has no box. */
  if (xs > xe || ys > ye)
    return;
  bbox[0] = (double) xs;
  bbox[1] = (double) ys;
  bbox[2] = (double) (xe - xs + 1);
  bbox[3] = (double) (ye - ys + 1);
}
