/* overlay.h: drawing masks, boxes and ids onto 8-bit frames (used by sam2q and sam2overlay). */
#ifndef SAM2_OVERLAY_H
#define SAM2_OVERLAY_H

#include "sam2.h"

G_BEGIN_DECLS

typedef struct {
  float fill_alpha;            /* 0..1 opacity of the mask fill (0.45 by default) */
  gboolean outline;            /* draw the mask's outer boundary in the object's colour */
  gboolean boxes;              /* draw the bounding box */
  gboolean ids;                /* draw the object id (digits) at the box corner */
} Sam2OverlayStyle;

#define SAM2_OVERLAY_STYLE_INIT { 0.45f, TRUE, TRUE, TRUE }

/* The colour of object `id` (a fixed palette, stable across frames), as R, G, B. */
void sam2_overlay_color (int id, guint8 rgb[3]);

/* Blends one object's 0/1 mask (frame-sized, `mask_stride` bytes per row) into interleaved pixels
 * of `format`. `box` may be NULL. */
void sam2_overlay_draw_mask (guint8 *pixels, int width, int height, int stride,
                             Sam2PixelFormat format, const guint8 *mask, int mask_stride,
                             const Sam2Box *box, int id, const Sam2OverlayStyle *style);

/* The same for a mask that covers only `region` of the frame (inclusive bounds, frame pixels)
 * at its own resolution, mask_width x mask_height bytes, stretched over the region with
 * nearest-neighbour sampling: the layout of GstSam2MaskMeta and GstAnalytics segmentation
 * masks. Pixels outside the region are outside the mask. With a region-sized mask, the result
 * is that of sam2_overlay_draw_mask on the frame-sized mask holding it. */
void sam2_overlay_draw_mask_region (guint8 *pixels, int width, int height, int stride,
                                    Sam2PixelFormat format, const guint8 *mask, int mask_width,
                                    int mask_height, int mask_stride, const Sam2Box *region,
                                    const Sam2Box *box, int id, const Sam2OverlayStyle *style);

G_END_DECLS

#endif
