/* rle.h: COCO's run-length encoding of binary masks, as pycocotools defines it.
 *
 * Runs alternate 0s and 1s, starting with 0s, over the mask in column-major order (down each
 * column, left to right); the compressed string form is pycocotools' LEB128-like text encoding
 * of the counts (each count minus the one two before, 5 bits per character + 48). Polygons are
 * rasterised the way pycocotools' frPyObjects / rleFrPoly does, so areas and IoUs computed from
 * COCO annotations agree with the COCO API. */
#ifndef SAM2_RLE_H
#define SAM2_RLE_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  int height, width;
  int n_counts;
  guint32 *counts;
} Sam2Rle;

/* mask: row-major bytes (non-zero = set), `stride` bytes per row. */
Sam2Rle *sam2_rle_encode (const guint8 *mask, int width, int height, int stride);
/* The same RLE for a width x height mask that is 0 outside the rectangle (x0, y0, w, h) and
 * holds `region` (w x h bytes, `stride` per row) inside it; the rectangle lies in the mask.
 * Reads only the region: for a small object in a large frame the cost is that of the region
 * plus the frame's width, not the frame's area. */
Sam2Rle *sam2_rle_encode_region (const guint8 *region, int stride, int x0, int y0, int w, int h,
                                 int width, int height);
/* Writes 0/1 bytes, row-major. */
void sam2_rle_decode (const Sam2Rle *rle, guint8 *mask, int stride);
void sam2_rle_free (Sam2Rle *rle);

/* The compressed COCO string ("counts" of a compressed RLE) and back. Errors (SAM2_ERROR_FORMAT)
 * for strings that are not valid or whose runs do not add up to height * width. */
char *sam2_rle_to_string (const Sam2Rle *rle);
Sam2Rle *sam2_rle_from_string (const char *counts, int height, int width, GError **error);
/* An uncompressed RLE ("counts" as a list of integers). */
Sam2Rle *sam2_rle_from_counts (const guint32 *counts, int n_counts, int height, int width,
                               GError **error);
/* Polygons [x0, y0, x1, y1, ...] in pixel coordinates, merged (union) into one mask. */
Sam2Rle *sam2_rle_from_polygons (const double *const *polygons, const int *n_coords,
                                 int n_polygons, int height, int width, GError **error);

guint64 sam2_rle_area (const Sam2Rle *rle);
/* Bounding box [x, y, w, h] as pycocotools' toBbox. */
void sam2_rle_bbox (const Sam2Rle *rle, double bbox[4]);

G_END_DECLS

#endif
