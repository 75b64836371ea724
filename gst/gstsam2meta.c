/* GStreamer SAM2 segmentation metadata
 *
 * gstsam2meta.c: see gstsam2meta.h. This is libgstsam2meta, shared by the plugin and by
 * applications, so that both see one registered meta API (the pattern of libgstvideo's metas).
 */
#include "gstsam2meta.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC (sam2_meta_debug);
#define GST_CAT_DEFAULT sam2_meta_debug

GType
gst_sam2_mask_meta_api_get_type (void)
{
  static GType type = 0;
  static const gchar *tags[] = { GST_META_TAG_VIDEO_STR,
    GST_META_TAG_VIDEO_ORIENTATION_STR, GST_META_TAG_VIDEO_SIZE_STR, NULL
  };

  if (g_once_init_enter (&type)) {
    GType t = gst_meta_api_type_register ("GstSam2MaskMetaAPI", tags);
    g_once_init_leave (&type, t);
  }
  return type;
}

static void
clear_object (gpointer data)
{
  GstSam2Object *o = data;
  gst_clear_buffer (&o->mask);
}

static gboolean
gst_sam2_mask_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstSam2MaskMeta *m = (GstSam2MaskMeta *) meta;

  m->width = m->height = 0;
  m->objects = g_array_new (FALSE, TRUE, sizeof (GstSam2Object));
  g_array_set_clear_func (m->objects, clear_object);
  return TRUE;
}

static void
gst_sam2_mask_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  GstSam2MaskMeta *m = (GstSam2MaskMeta *) meta;

  g_clear_pointer (&m->objects, g_array_unref);
}

/* [v0, v0 + n) of a length-`from` axis, scaled to a length-`to` axis: the start rounded down and
 * the end rounded up, so the scaled rectangle still covers every pixel the object touched. */
static void
scale_span (gint v0, gint n, gint from, gint to, gint * out0, gint * out_n)
{
  gint64 a, b;

  if (n <= 0 || from <= 0) {
    *out0 = 0;
    *out_n = 0;
    return;
  }
  a = ((gint64) v0 * to) / from;
  b = ((gint64) (v0 + n) * to + from - 1) / from;
  a = CLAMP (a, 0, to);
  b = CLAMP (b, 0, to);
  *out0 = (gint) a;
  *out_n = (gint) (b - a);
}

static void
scale_object (GstSam2Object * o, gint sw, gint sh, gint dw, gint dh)
{
  GstVideoRectangle *l = &o->location;
  gint x, w, y, h;

  scale_span (l->x, l->w, sw, dw, &x, &w);
  scale_span (l->y, l->h, sh, dh, &y, &h);
  l->x = x;
  l->w = w;
  l->y = y;
  l->h = h;

  if (o->box.x1 >= o->box.x0 && o->box.y1 >= o->box.y0) {
    scale_span (o->box.x0, o->box.x1 - o->box.x0 + 1, sw, dw, &x, &w);
    scale_span (o->box.y0, o->box.y1 - o->box.y0 + 1, sh, dh, &y, &h);
    o->box.x0 = x;
    o->box.x1 = x + w - 1;
    o->box.y0 = y;
    o->box.y1 = y + h - 1;
  }
}

/* Whether the picture's display aspect ratio differs between in and out (sizes times pixel
 * aspect ratios, compared exactly; an unknown ratio, 0/1, counts as square pixels). */
static gboolean
display_aspect_changes (const GstVideoInfo * in, const GstVideoInfo * out)
{
  const guint64 in_pn = MAX (GST_VIDEO_INFO_PAR_N (in), 1);
  const guint64 in_pd = MAX (GST_VIDEO_INFO_PAR_D (in), 1);
  const guint64 out_pn = MAX (GST_VIDEO_INFO_PAR_N (out), 1);
  const guint64 out_pd = MAX (GST_VIDEO_INFO_PAR_D (out), 1);

  /* in_w in_pn / (in_h in_pd) against out_w out_pn / (out_h out_pd), cross-multiplied: four
   * factors below 2^31 each side, exact in 128 bits */
  const unsigned __int128 a = (unsigned __int128) ((guint64) GST_VIDEO_INFO_WIDTH (in)
      * GST_VIDEO_INFO_HEIGHT (out)) * (in_pn * out_pd);
  const unsigned __int128 b = (unsigned __int128) ((guint64) GST_VIDEO_INFO_WIDTH (out)
      * GST_VIDEO_INFO_HEIGHT (in)) * (out_pn * in_pd);
  return a != b;
}

static gboolean
gst_sam2_mask_meta_transform (GstBuffer * dest, GstMeta * meta, GstBuffer * buffer,
    GQuark type, gpointer data)
{
  GstSam2MaskMeta *src = (GstSam2MaskMeta *) meta;
  GstSam2MaskMeta *dst;
  gint dw = src->width, dh = src->height;
  gboolean scale = FALSE;

  if (GST_META_TRANSFORM_IS_COPY (type)) {
    GstMetaTransformCopy *copy = data;
    /* a copy of some of the bytes of a frame is no longer that frame */
    if (copy->region)
      return FALSE;
  } else if (GST_VIDEO_META_TRANSFORM_IS_SCALE (type)) {
    GstVideoMetaTransform *trans = data;
    if (display_aspect_changes (trans->in_info, trans->out_info)) {
      /* a letterboxed and a stretched picture look the same from here */
      GST_INFO ("dropping the SAM2 mask meta: the scale changes the display aspect ratio, "
          "%dx%d (par %d/%d) -> %dx%d (par %d/%d), and the picture may have borders",
          GST_VIDEO_INFO_WIDTH (trans->in_info), GST_VIDEO_INFO_HEIGHT (trans->in_info),
          GST_VIDEO_INFO_PAR_N (trans->in_info), GST_VIDEO_INFO_PAR_D (trans->in_info),
          GST_VIDEO_INFO_WIDTH (trans->out_info), GST_VIDEO_INFO_HEIGHT (trans->out_info),
          GST_VIDEO_INFO_PAR_N (trans->out_info), GST_VIDEO_INFO_PAR_D (trans->out_info));
      return FALSE;
    }
    dw = GST_VIDEO_INFO_WIDTH (trans->out_info);
    dh = GST_VIDEO_INFO_HEIGHT (trans->out_info);
    scale = TRUE;
  } else {
    GST_DEBUG ("dropping the SAM2 mask meta on a %s transform",
        g_quark_to_string (type));
    return FALSE;
  }

  dst = gst_buffer_add_sam2_mask_meta (dest, dw, dh);
  if (dst == NULL)
    return FALSE;
  for (guint i = 0; i < src->objects->len; i++) {
    GstSam2Object o = g_array_index (src->objects, GstSam2Object, i);
    if (scale)
      scale_object (&o, src->width, src->height, dw, dh);
    gst_sam2_mask_meta_add_object (dst, &o);
  }
  GST_LOG ("%s %u objects, %dx%d -> %dx%d", scale ? "scaled" : "copied",
      src->objects->len, src->width, src->height, dw, dh);
  return TRUE;
}

const GstMetaInfo *
gst_sam2_mask_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter ((GstMetaInfo **) & info)) {
    const GstMetaInfo *mi;
    GST_DEBUG_CATEGORY_INIT (sam2_meta_debug, "sam2meta", 0, "SAM2 mask metadata");
    mi = gst_meta_register (GST_SAM2_MASK_META_API_TYPE, "GstSam2MaskMeta",
        sizeof (GstSam2MaskMeta), gst_sam2_mask_meta_init, gst_sam2_mask_meta_free,
        gst_sam2_mask_meta_transform);
    g_once_init_leave ((GstMetaInfo **) & info, (GstMetaInfo *) mi);
  }
  return info;
}

static gboolean
remove_mask_meta (GstBuffer * buffer, GstMeta ** meta, gpointer user_data)
{
  if ((*meta)->info->api == GST_SAM2_MASK_META_API_TYPE)
    *meta = NULL;               /* gst_buffer_foreach_meta removes it */
  return TRUE;
}

GstSam2MaskMeta *
gst_buffer_add_sam2_mask_meta (GstBuffer * buffer, gint width, gint height)
{
  GstSam2MaskMeta *meta;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  g_return_val_if_fail (width >= 0 && height >= 0, NULL);

  if (gst_buffer_get_sam2_mask_meta (buffer) != NULL)
    gst_buffer_foreach_meta (buffer, remove_mask_meta, NULL);
  meta = (GstSam2MaskMeta *) gst_buffer_add_meta (buffer, GST_SAM2_MASK_META_INFO, NULL);
  if (meta == NULL)
    return NULL;
  meta->width = width;
  meta->height = height;
  return meta;
}

guint
gst_sam2_mask_meta_get_n_objects (const GstSam2MaskMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0);
  return meta->objects->len;
}

const GstSam2Object *
gst_sam2_mask_meta_get_object (const GstSam2MaskMeta * meta, guint index)
{
  g_return_val_if_fail (meta != NULL, NULL);
  if (index >= meta->objects->len)
    return NULL;
  return &g_array_index (meta->objects, GstSam2Object, index);
}

const GstSam2Object *
gst_sam2_mask_meta_find_object (const GstSam2MaskMeta * meta, guint id)
{
  g_return_val_if_fail (meta != NULL, NULL);
  for (guint i = 0; i < meta->objects->len; i++) {
    const GstSam2Object *o = &g_array_index (meta->objects, GstSam2Object, i);
    if (o->id == id)
      return o;
  }
  return NULL;
}

void
gst_sam2_mask_meta_add_object (GstSam2MaskMeta * meta, const GstSam2Object * object)
{
  GstSam2Object copy;

  g_return_if_fail (meta != NULL && object != NULL);
  copy = *object;
  if (copy.mask != NULL)
    gst_buffer_ref (copy.mask);
  g_array_append_val (meta->objects, copy);
}

GstBuffer *
gst_sam2_mask_buffer_new (const guint8 * data, gint stride, gint width, gint height)
{
  GstVideoInfo info;
  GstBuffer *buffer;
  GstMapInfo map;
  gpointer data_copy;
  gint dstride;

  g_return_val_if_fail (data != NULL && width > 0 && height > 0 && stride >= width, NULL);

  if (!gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, width, height))
    return NULL;
  /* gst_buffer_new_allocate aborts the process when memory runs out (GLib's allocator):
   * callers are told instead, as the NULL return says */
  data_copy = g_try_malloc (GST_VIDEO_INFO_SIZE (&info));
  if (data_copy == NULL)
    return NULL;
  buffer = gst_buffer_new_wrapped_full (0, data_copy, GST_VIDEO_INFO_SIZE (&info), 0,
      GST_VIDEO_INFO_SIZE (&info), data_copy, g_free);
  dstride = GST_VIDEO_INFO_PLANE_STRIDE (&info, 0);
  if (!gst_buffer_map (buffer, &map, GST_MAP_WRITE)) {
    gst_buffer_unref (buffer);
    return NULL;
  }
  for (gint y = 0; y < height; y++) {
    const guint8 *s = data + (gsize) y * stride;
    guint8 *d = map.data + (gsize) y * dstride;
    for (gint x = 0; x < width; x++)
      d[x] = s[x] ? 255 : 0;
    memset (d + width, 0, dstride - width);
  }
  gst_buffer_unmap (buffer, &map);
  gst_buffer_add_video_meta_full (buffer, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_FORMAT_GRAY8,
      width, height, 1, info.offset, info.stride);
  return buffer;
}

gboolean
gst_sam2_object_render_mask (const GstSam2Object * object, guint8 * dest, gint stride,
    gint width, gint height)
{
  return gst_sam2_object_render_mask_rect (object, dest, stride, 0, 0, width, height);
}

gboolean
gst_sam2_object_render_mask_rect (const GstSam2Object * object, guint8 * dest, gint stride,
    gint rx, gint ry, gint width, gint height)
{
  const GstVideoRectangle *l;
  GstVideoMeta *vmeta;
  GstMapInfo map;
  gint mw, mh, mstride;
  gsize moffset = 0;

  g_return_val_if_fail (object != NULL && stride >= width && width >= 0 && height >= 0, FALSE);
  g_return_val_if_fail (dest != NULL || width == 0 || height == 0, FALSE);

  for (gint y = 0; y < height; y++)
    memset (dest + (gsize) y * stride, 0, width);
  l = &object->location;
  if (object->mask == NULL || l->w <= 0 || l->h <= 0)
    return TRUE;

  vmeta = gst_buffer_get_video_meta (object->mask);
  if (vmeta != NULL) {
    mw = vmeta->width;
    mh = vmeta->height;
    mstride = vmeta->stride[0];
    moffset = vmeta->offset[0];
  } else {
    /* a mask made without a video meta is tightly packed at the location's size */
    mw = l->w;
    mh = l->h;
    mstride = l->w;
  }
  if (mw <= 0 || mh <= 0 || !gst_buffer_map (object->mask, &map, GST_MAP_READ))
    return FALSE;
  if (moffset + (gsize) (mh - 1) * mstride + mw > map.size) {
    gst_buffer_unmap (object->mask, &map);
    return FALSE;
  }

  /* frame pixels (x, y) of the rectangle, 64-bit: a location may lie anywhere */
  for (gint64 y = MAX ((gint64) l->y, ry); y < MIN ((gint64) l->y + l->h, (gint64) ry + height);
      y++) {
    const gint my = (gint) (((y - l->y) * mh) / l->h);
    const guint8 *src = map.data + moffset + (gsize) my * mstride;
    guint8 *d = dest + (gsize) (y - ry) * stride;
    for (gint64 x = MAX ((gint64) l->x, rx);
        x < MIN ((gint64) l->x + l->w, (gint64) rx + width); x++) {
      const gint mx = (gint) (((x - l->x) * mw) / l->w);
      d[x - rx] = src[mx] != 0;
    }
  }
  gst_buffer_unmap (object->mask, &map);
  return TRUE;
}
