/* GStreamer SAM2 plugin
 *
 * gstsam2util.c: helpers shared by the elements; see gstsam2util.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2util.h"

gboolean
gst_sam2_pixel_format_from_video (GstVideoFormat format, Sam2PixelFormat * out)
{
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
      *out = SAM2_PIXEL_FORMAT_RGB;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBA:
      *out = SAM2_PIXEL_FORMAT_RGBA;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBx:
      *out = SAM2_PIXEL_FORMAT_RGBX;
      return TRUE;
    case GST_VIDEO_FORMAT_BGR:
      *out = SAM2_PIXEL_FORMAT_BGR;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRA:
      *out = SAM2_PIXEL_FORMAT_BGRA;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRx:
      *out = SAM2_PIXEL_FORMAT_BGRX;
      return TRUE;
    default:
      return FALSE;
  }
}

/* the element's own category, for what GST_ELEMENT_ERROR and GST_INFO_OBJECT log below */
#define GST_CAT_DEFAULT cat

gboolean
gst_sam2_model_ref_check (GstElement * element, GstDebugCategory * cat,
    const gchar * model_ref)
{
  if (model_ref != NULL && *model_ref != '\0')
    return TRUE;
  GST_ELEMENT_ERROR (element, RESOURCE, NOT_FOUND,
      ("No model given: set the model property to a model directory, a Hugging Face id "
          "(facebook/sam2.1-hiera-tiny) or a shortcut (tiny, small, base or base-plus, large)."),
      (NULL));
  return FALSE;
}

Sam2Model *
gst_sam2_load_model (GstElement * element, GstDebugCategory * cat, const gchar * model_ref)
{
  GError *error = NULL;
  Sam2Model *model;

  if (!gst_sam2_model_ref_check (element, cat, model_ref))
    return NULL;
  GST_INFO_OBJECT (element, "loading model \"%s\"", model_ref);
  model = sam2_model_load (model_ref, &error);
  if (model != NULL)
    return model;
  if (g_error_matches (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND)
      || g_error_matches (error, SAM2_ERROR, SAM2_ERROR_IO))
    GST_ELEMENT_ERROR (element, RESOURCE, NOT_FOUND,
        ("Could not load the SAM2 model \"%s\": %s", model_ref, error->message),
        ("sam2_model_load: %s %d", g_quark_to_string (error->domain), error->code));
  else
    GST_ELEMENT_ERROR (element, RESOURCE, SETTINGS,
        ("Could not load the SAM2 model \"%s\": %s", model_ref, error->message),
        ("sam2_model_load: %s %d", g_quark_to_string (error->domain), error->code));
  g_clear_error (&error);
  return NULL;
}

gboolean
gst_sam2_propose_allocation_without_crop (GstBaseTransformClass * parent,
    GstBaseTransform * trans, GstQuery * decide_query, GstQuery * query)
{
  guint index;

  if (parent->propose_allocation != NULL
      && !parent->propose_allocation (trans, decide_query, query))
    return FALSE;
  while (gst_query_find_allocation_meta (query, GST_VIDEO_CROP_META_API_TYPE, &index))
    gst_query_remove_nth_allocation_meta (query, index);
  return TRUE;
}
