/* GStreamer SAM2 plugin
 *
 * gstsam2prompts.h: the prompt strings of sam2seg (its points / boxes properties, the
 * set-prompts signal and the sam2-prompts event), parsed into libsam2 prompts.
 *
 *   points  "x,y[,label] x,y[,label] ...; x,y ..."   ';' separates objects, whitespace the
 *                                                    points of one object; label 1 (positive,
 *                                                    the default) or 0 (negative)
 *   boxes   "x0,y0,x1,y1; x0,y0,x1,y1"               one box per object
 *
 * Coordinates are frame pixels (decimals allowed). Object i takes the i-th ';'-separated entry
 * of both strings, so a box and clicks can refine the same object; an empty entry means "none
 * of these for this object" ("; 10,10,50,50" is a box-only object 1 after a point-only object
 * 0 when points is "5,5"). A trailing ';' is ignored, and strings of only blanks and ';' are
 * no prompts. Otherwise every object needs a point or a box.
 */
#ifndef __GST_SAM2_PROMPTS_H__
#define __GST_SAM2_PROMPTS_H__

#include <glib.h>
#include "sam2.h"

G_BEGIN_DECLS

#define GST_SAM2_PROMPTS_ERROR (gst_sam2_prompts_error_quark ())
GQuark gst_sam2_prompts_error_quark (void);

typedef enum
{
  GST_SAM2_PROMPTS_ERROR_SYNTAX,        /* a string does not follow the syntax above */
  GST_SAM2_PROMPTS_ERROR_OUTSIDE,       /* a prompt lies outside the frame */
} GstSam2PromptsError;

typedef struct _GstSam2Prompts GstSam2Prompts;

struct _GstSam2Prompts
{
  gint n_objects;
  Sam2Prompt *prompts;          /* (n_objects); point arrays point into `points` */
  Sam2Point *points;            /* all objects' points */
  /* the prompts as they were before the first gst_sam2_prompts_scale, and their frame size:
   * every scale starts from them, so sizes that come and go leave no drift (NULL: not scaled) */
  GstSam2Prompts *base;
  gint base_width, base_height;
};

/* NULL and empty strings mean no prompts: the result then has n_objects == 0. Errors say which
 * string, object and point is wrong and quote it. */
GstSam2Prompts *gst_sam2_prompts_parse (const gchar * points, const gchar * boxes,
    GError ** error);
void gst_sam2_prompts_free (GstSam2Prompts * prompts);
GstSam2Prompts *gst_sam2_prompts_copy (const GstSam2Prompts * prompts);

/* Whether every point lies inside a width x height frame and every box overlaps it. */
gboolean gst_sam2_prompts_check_frame (const GstSam2Prompts * prompts, gint width,
    gint height, GError ** error);

/* Moves the prompts of a from_width x from_height frame to the same places in a to_width x
 * to_height frame (a caps change): coordinates are scaled, rounded to 1/100 pixel (what
 * gst_sam2_prompts_to_strings writes) and points and box corners kept inside the new frame.
 * Always from the prompts as first given (and their frame), not from the last scale's rounded
 * and clamped values: through a 2x3 frame and back, a point at (639, 479) of 640x480 came back
 * at (637.26, 478.08). */
void gst_sam2_prompts_scale (GstSam2Prompts * prompts, gint from_width, gint from_height,
    gint to_width, gint to_height);

/* The points and boxes strings (g_free) that gst_sam2_prompts_parse reads back as `prompts`
 * (coordinates with at most two decimals, as gst_sam2_prompts_scale leaves them). */
void gst_sam2_prompts_to_strings (const GstSam2Prompts * prompts, gchar ** points,
    gchar ** boxes);

G_END_DECLS

#endif /* __GST_SAM2_PROMPTS_H__ */
