/* GStreamer SAM2 segmentation metadata
 *
 * gstsam2meta.h: the results of sam2seg as buffer metadata, for applications and elements.
 *
 * Include with only GStreamer around (no libsam2 header is needed) and link with
 * libgstsam2meta (pkg-config gstsam2meta):
 *
 *   GstSam2MaskMeta *meta = gst_buffer_get_sam2_mask_meta (buffer);
 *   for (guint i = 0; meta != NULL && i < gst_sam2_mask_meta_get_n_objects (meta); i++) {
 *     const GstSam2Object *o = gst_sam2_mask_meta_get_object (meta, i);
 *     g_print ("object %u (prompt %d): box %d,%d-%d,%d iou %.2f\n", o->id, o->prompt_id,
 *         o->box.x0, o->box.y0, o->box.x1, o->box.y1, o->iou);
 *   }
 *
 * Layout (that of GstAnalytics segmentation entries): per object, a GRAY8 mask buffer (0 outside
 * the object, 255 inside) carrying a #GstVideoMeta, which covers only `location`, a rectangle in
 * frame pixels. sam2seg makes the mask exactly as large as the location; after scaling
 * (videoconvertscale), the location and the box follow the frame and the mask keeps its own
 * resolution: map mask pixel (mx, my) to the frame by stretching the mask over the location
 * (gst_sam2_object_render_mask() does that with nearest-neighbour sampling).
 *
 * Transforms: copies of a whole buffer copy the meta (the mask buffers are shared: they are
 * never written after they are attached); scaling (GST_VIDEO_META_TRANSFORM_IS_SCALE) that keeps
 * the display aspect ratio (sizes and pixel aspect ratios) scales the locations and boxes;
 * everything else is refused, so the meta is dropped rather than left wrong: crops, flips,
 * rotations, copies of part of a buffer's bytes, and a scale that changes the display aspect
 * ratio, where the scaler may add borders (videoconvertscale's default, add-borders) or stretch
 * the picture, and the transform is not told which. Scale with the aspect kept (leave the
 * output's pixel-aspect-ratio free) or attach the meta after the scaler. The API carries
 * the tags "video", "orientation" and "size".
 */
#ifndef __GST_SAM2_META_H__
#define __GST_SAM2_META_H__

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#ifndef GST_SAM2_META_API
#define GST_SAM2_META_API extern
#endif

/**
 * GstSam2Box:
 * @x0: left column, frame pixels, inclusive
 * @y0: top row, inclusive
 * @x1: right column, inclusive; x1 < x0 when the mask is empty
 * @y1: bottom row, inclusive
 *
 * A bounding box in the frame the meta describes.
 */
typedef struct
{
  gint x0, y0, x1, y1;
} GstSam2Box;

/**
 * GstSam2Object:
 * @id: the object's id, stable across frames (see the sam2seg documentation)
 * @prompt_id: the prompt this object answers: the index of the object in sam2seg's prompt
 *     strings, or the id of the upstream #GstVideoRegionOfInterestMeta it came from
 * @box: the bounding box of the mask, in frame pixels
 * @iou: the model's predicted IoU of the mask (0..1)
 * @object_score: the model's object-presence logit (> 0: the object is present)
 * @mask: GRAY8 buffer with a #GstVideoMeta (0 = background, 255 = object), covering
 *     @location; %NULL when the mask is empty
 * @location: the rectangle of the frame the mask covers, frame pixels (w = h = 0 when empty)
 *
 * One segmented object.
 */
typedef struct
{
  guint id;
  gint prompt_id;
  GstSam2Box box;
  gfloat iou;
  gfloat object_score;
  GstBuffer *mask;
  GstVideoRectangle location;
} GstSam2Object;

typedef struct _GstSam2MaskMeta GstSam2MaskMeta;

/**
 * GstSam2MaskMeta:
 * @meta: parent #GstMeta
 * @width: width of the frame the coordinates refer to
 * @height: height of that frame
 *
 * The objects segmented in one frame. Read them with gst_sam2_mask_meta_get_n_objects() and
 * gst_sam2_mask_meta_get_object().
 */
struct _GstSam2MaskMeta
{
  GstMeta meta;

  gint width, height;

  /*< private > */
  GArray *objects;              /* GstSam2Object */
  gpointer _gst_reserved[GST_PADDING];
};

GST_SAM2_META_API GType gst_sam2_mask_meta_api_get_type (void);
#define GST_SAM2_MASK_META_API_TYPE (gst_sam2_mask_meta_api_get_type ())

GST_SAM2_META_API const GstMetaInfo *gst_sam2_mask_meta_get_info (void);
#define GST_SAM2_MASK_META_INFO (gst_sam2_mask_meta_get_info ())

#define gst_buffer_get_sam2_mask_meta(b) \
    ((GstSam2MaskMeta *) gst_buffer_get_meta ((b), GST_SAM2_MASK_META_API_TYPE))

/* An empty meta for a frame of width x height pixels. The buffer must be writable. A buffer
 * carries one mask meta at most: one already there is removed (a second segmenter in a
 * pipeline replaces the first's result, which gst_buffer_get_sam2_mask_meta would otherwise
 * keep returning). */
GST_SAM2_META_API GstSam2MaskMeta *gst_buffer_add_sam2_mask_meta (GstBuffer * buffer,
    gint width, gint height);

GST_SAM2_META_API guint gst_sam2_mask_meta_get_n_objects (const GstSam2MaskMeta * meta);

/* The object at @index (0 .. n_objects - 1), owned by the meta; NULL when out of range. */
GST_SAM2_META_API const GstSam2Object *gst_sam2_mask_meta_get_object (const GstSam2MaskMeta *
    meta, guint index);

/* The object with id @id, or NULL. */
GST_SAM2_META_API const GstSam2Object *gst_sam2_mask_meta_find_object (const GstSam2MaskMeta *
    meta, guint id);

/* Appends a copy of @object; the meta takes a reference to @object->mask. */
GST_SAM2_META_API void gst_sam2_mask_meta_add_object (GstSam2MaskMeta * meta,
    const GstSam2Object * object);

/* A GRAY8 mask buffer with a GstVideoMeta from @width x @height bytes at @data (@stride bytes
 * per row; non-zero = object), stored as 0 / 255. %NULL when memory runs out. */
GST_SAM2_META_API GstBuffer *gst_sam2_mask_buffer_new (const guint8 * data, gint stride,
    gint width, gint height);

/* Writes the object's mask into a frame-sized plane of @width x @height bytes (@stride bytes per
 * row) as 0 / 1, the mask stretched over its location (nearest neighbour); pixels outside the
 * location are set to 0. @width and @height are those of the meta. FALSE when the mask buffer
 * cannot be read. */
GST_SAM2_META_API gboolean gst_sam2_object_render_mask (const GstSam2Object * object,
    guint8 * dest, gint stride, gint width, gint height);

/* The same for the rectangle (@x, @y, @width, @height) of the frame only, written to @dest
 * (@width x @height bytes, @stride per row): for a small object in a large frame, its location
 * instead of the whole frame. */
GST_SAM2_META_API gboolean gst_sam2_object_render_mask_rect (const GstSam2Object * object,
    guint8 * dest, gint stride, gint x, gint y, gint width, gint height);

G_END_DECLS

#endif /* __GST_SAM2_META_H__ */
