/* overlay.c: see overlay.h. Plain loops over the frame: drawing costs far less than the model. */
#include "overlay.h"
#include "image.h"

/* Well-separated hues (Tableau 10), so neighbouring ids stay distinguishable. */
static const guint8 palette[][3] = {
  { 31, 119, 180 }, { 255, 127, 14 }, { 44, 160, 44 }, { 214, 39, 40 }, { 148, 103, 189 },
  { 140, 86, 75 }, { 227, 119, 194 }, { 127, 127, 127 }, { 188, 189, 34 }, { 23, 190, 207 },
};

/* 3x5 bitmaps of the digits 0-9, one row per 3 bits. */
static const guint8 digits[10][5] = {
  { 7, 5, 5, 5, 7 }, { 2, 6, 2, 2, 7 }, { 7, 1, 7, 4, 7 }, { 7, 1, 7, 1, 7 }, { 5, 5, 7, 1, 1 },
  { 7, 4, 7, 1, 7 }, { 7, 4, 7, 5, 7 }, { 7, 1, 1, 1, 1 }, { 7, 5, 7, 5, 7 }, { 7, 5, 7, 1, 7 },
};

void
sam2_overlay_color (int id, guint8 rgb[3])
{
  const guint8 *c = palette[(guint) id % G_N_ELEMENTS (palette)];
  rgb[0] = c[0];
  rgb[1] = c[1];
  rgb[2] = c[2];
}

static inline void
put (guint8 *px, const int order[3], const guint8 rgb[3], float alpha)
{
  for (int c = 0; c < 3; c++)
    px[order[c]] = (guint8) (px[order[c]] + alpha * (rgb[c] - px[order[c]]) + 0.5f);
}

static void
channel_order (Sam2PixelFormat format, int order[3])
{
  const gboolean bgr = format == SAM2_PIXEL_FORMAT_BGR || format == SAM2_PIXEL_FORMAT_BGRA
                       || format == SAM2_PIXEL_FORMAT_BGRX;
  order[0] = bgr ? 2 : 0;
  order[1] = 1;
  order[2] = bgr ? 0 : 2;
}

static void
draw_rect (guint8 *pixels, int width, int height, int stride, int bpp, const int order[3],
           const Sam2Box *b, const guint8 rgb[3])
{
  for (int x = MAX (b->x0, 0); x <= MIN (b->x1, width - 1); x++) {
    if (b->y0 >= 0 && b->y0 < height)
      put (pixels + (size_t) b->y0 * stride + x * bpp, order, rgb, 1.0f);
    if (b->y1 >= 0 && b->y1 < height)
      put (pixels + (size_t) b->y1 * stride + x * bpp, order, rgb, 1.0f);
  }
  for (int y = MAX (b->y0, 0); y <= MIN (b->y1, height - 1); y++) {
    if (b->x0 >= 0 && b->x0 < width)
      put (pixels + (size_t) y * stride + b->x0 * bpp, order, rgb, 1.0f);
    if (b->x1 >= 0 && b->x1 < width)
      put (pixels + (size_t) y * stride + b->x1 * bpp, order, rgb, 1.0f);
  }
}

static void
draw_number (guint8 *pixels, int width, int height, int stride, int bpp, const int order[3],
             int x0, int y0, int value, const guint8 rgb[3])
{
  /* unsigned: ids are guint in the meta, and a '-' has no glyph (it indexed digits[-3]) */
  char text[16];
  int n = g_snprintf (text, sizeof text, "%u", (guint) value);
  const int scale = MAX (1, MIN (width, height) / 200);
  for (int i = 0; i < n; i++)
    for (int r = 0; r < 5; r++)
      for (int c = 0; c < 3; c++) {
        if (!(digits[text[i] - '0'][r] & (4 >> c)))
          continue;
        for (int dy = 0; dy < scale; dy++)
          for (int dx = 0; dx < scale; dx++) {
            int x = x0 + (i * 4 + c) * scale + dx, y = y0 + r * scale + dy;
            if (x >= 0 && x < width && y >= 0 && y < height)
              put (pixels + (size_t) y * stride + x * bpp, order, rgb, 1.0f);
          }
      }
}

/* The box and the id of a mask, as `style` asks; nothing for an empty or NULL box. */
static void
draw_box_and_id (guint8 *pixels, int width, int height, int stride, int bpp, const int order[3],
                 const Sam2Box *box, int id, const guint8 rgb[3], const Sam2OverlayStyle *style)
{
  if (box == NULL || box->x1 < box->x0)
    return;
  if (style->boxes)
    draw_rect (pixels, width, height, stride, bpp, order, box, rgb);
  if (style->ids)
    draw_number (pixels, width, height, stride, bpp, order, box->x0 + 2, box->y0 + 2, id, rgb);
}

void
sam2_overlay_draw_mask (guint8 *pixels, int width, int height, int stride, Sam2PixelFormat format,
                        const guint8 *mask, int mask_stride, const Sam2Box *box, int id,
                        const Sam2OverlayStyle *style)
{
  static const Sam2OverlayStyle defaults = SAM2_OVERLAY_STYLE_INIT;
  if (style == NULL)
    style = &defaults;
  const int bpp = sam2_pixel_format_bpp (format);
  int order[3];
  channel_order (format, order);
  guint8 rgb[3];
  sam2_overlay_color (id, rgb);

  for (int y = 0; y < height; y++) {
    const guint8 *m = mask + (size_t) y * mask_stride;
    guint8 *row = pixels + (size_t) y * stride;
    for (int x = 0; x < width; x++) {
      if (!m[x])
        continue;
      /* a mask pixel with a 4-neighbour outside the mask (or the frame edge) is boundary */
      const gboolean edge = x == 0 || y == 0 || x == width - 1 || y == height - 1 || !m[x - 1]
                            || !m[x + 1] || !m[x - mask_stride] || !m[x + mask_stride];
      put (row + x * bpp, order, rgb, style->outline && edge ? 1.0f : style->fill_alpha);
    }
  }
  draw_box_and_id (pixels, width, height, stride, bpp, order, box, id, rgb, style);
}

/* Whether frame pixel (x, y) is in a mask stretched over `r` (rw x rh pixels). */
static inline gboolean
region_mask_at (const guint8 *mask, int mw, int mh, int mstride, const Sam2Box *r, int rw,
                int rh, int x, int y)
{
  if (x < r->x0 || x > r->x1 || y < r->y0 || y > r->y1)
    return FALSE;
  const int mx = (int) (((int64_t) (x - r->x0) * mw) / rw);
  const int my = (int) (((int64_t) (y - r->y0) * mh) / rh);
  return mask[(size_t) my * mstride + mx] != 0;
}

void
sam2_overlay_draw_mask_region (guint8 *pixels, int width, int height, int stride,
                               Sam2PixelFormat format, const guint8 *mask, int mask_width,
                               int mask_height, int mask_stride, const Sam2Box *region,
                               const Sam2Box *box, int id, const Sam2OverlayStyle *style)
{
  static const Sam2OverlayStyle defaults = SAM2_OVERLAY_STYLE_INIT;
  if (style == NULL)
    style = &defaults;
  const int bpp = sam2_pixel_format_bpp (format);
  int order[3];
  channel_order (format, order);
  guint8 rgb[3];
  sam2_overlay_color (id, rgb);

  if (mask != NULL && region != NULL && mask_width > 0 && mask_height > 0
      && region->x1 >= region->x0 && region->y1 >= region->y0) {
    const Sam2Box *r = region;
    const int rw = r->x1 - r->x0 + 1, rh = r->y1 - r->y0 + 1;
    for (int y = MAX (r->y0, 0); y <= MIN (r->y1, height - 1); y++) {
      guint8 *row = pixels + (size_t) y * stride;
      for (int x = MAX (r->x0, 0); x <= MIN (r->x1, width - 1); x++) {
        if (!region_mask_at (mask, mask_width, mask_height, mask_stride, r, rw, rh, x, y))
          continue;
        /* boundary as in sam2_overlay_draw_mask: a 4-neighbour outside the mask or the frame */
        const gboolean edge
          = x == 0 || y == 0 || x == width - 1 || y == height - 1
            || !region_mask_at (mask, mask_width, mask_height, mask_stride, r, rw, rh, x - 1, y)
            || !region_mask_at (mask, mask_width, mask_height, mask_stride, r, rw, rh, x + 1, y)
            || !region_mask_at (mask, mask_width, mask_height, mask_stride, r, rw, rh, x, y - 1)
            || !region_mask_at (mask, mask_width, mask_height, mask_stride, r, rw, rh, x, y + 1);
        put (row + x * bpp, order, rgb, style->outline && edge ? 1.0f : style->fill_alpha);
      }
    }
  }
  draw_box_and_id (pixels, width, height, stride, bpp, order, box, id, rgb, style);
}
