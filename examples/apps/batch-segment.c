/* batch-segment: the library's batch API in an application, offline.
 *
 *   batch-segment [--model REF] [--images N] [--batch B] [--backend auto|cpu|cuda]
 *                 [--precision auto|fp32|fp16|bf16] [--width W] [--height H]
 *
 * Draws N pictures of filled shapes (examples/common/shapes.h, with their true masks), encodes
 * them B at a time in one encoder pass each (sam2_session_set_images), then for every picture
 * of the pass selects it (sam2_session_select_image) and segments each shape from one click at
 * its centre (sam2_session_predict). Prints each picture's mean IoU against the true masks and,
 * at the end, the mean over all pictures and the pictures per second. The model should be one
 * that knows such pictures: the demo model models/sam2-shapes (the default). Exits 0 when every
 * call succeeded, 1 otherwise, with the library's message. */
#include "eval.h"
#include "sam2.h"
#include "shapes.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#define SHAPES_PER_PICTURE 3

typedef struct {
  int width, height;
  guint8 *rgb;                 /* (height, width, 3) */
  guint8 *masks;               /* (SHAPES_PER_PICTURE, height, width) true masks */
  Sam2Point points[SHAPES_PER_PICTURE];
  Sam2Prompt prompts[SHAPES_PER_PICTURE];
  int n_prompts;               /* visible shapes */
  int shape_of[SHAPES_PER_PICTURE];
} Picture;

static void
picture_draw (Picture *p, guint64 seed, int width, int height)
{
  p->width = width;
  p->height = height;
  p->rgb = g_malloc ((size_t) width * height * 3);
  p->masks = g_malloc ((size_t) SHAPES_PER_PICTURE * width * height);
  sam2_shapes_draw (seed, width, height, SHAPES_PER_PICTURE, p->rgb, width * 3, p->masks);
  p->n_prompts = 0;
  for (int s = 0; s < SHAPES_PER_PICTURE; s++) {
    double xy[2];
    if (!sam2_shapes_mask_point (p->masks + (size_t) s * width * height, width, height, width, xy))
      continue;   /* hidden behind the others */
    const int o = p->n_prompts++;
    p->points[o] = (Sam2Point) { (float) xy[0], (float) xy[1], SAM2_LABEL_POSITIVE };
    p->prompts[o] = (Sam2Prompt) { .points = &p->points[o], .n_points = 1 };
    p->shape_of[o] = s;
  }
}

static void
picture_clear (Picture *p)
{
  g_clear_pointer (&p->rgb, g_free);
  g_clear_pointer (&p->masks, g_free);
}

int
main (int argc, char **argv)
{
  char *model_ref = NULL, *backend = NULL, *precision = NULL;
  int n_images = 8, batch = 4, width = 320, height = 240;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_STRING, &model_ref,
      "model directory, HF id or file (default models/sam2-shapes)", "REF" },
    { "images", 'n', 0, G_OPTION_ARG_INT, &n_images, "pictures to segment (default 8)", "N" },
    { "batch", 'b', 0, G_OPTION_ARG_INT, &batch, "pictures per encoder pass (default 4)", "B" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend, "auto, cpu or cuda", "NAME" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &precision, "auto, fp32, fp16 or bf16", "P" },
    { "width", 0, 0, G_OPTION_ARG_INT, &width, "picture width (default 320)", "W" },
    { "height", 0, 0, G_OPTION_ARG_INT, &height, "picture height (default 240)", "H" },
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("- segment pictures a batch at a time");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1;
  Sam2Model *model = NULL;
  Sam2Session *session = NULL;
  Picture *pics = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("batch-segment: %s\n", error->message);
    g_option_context_free (ctx);
    g_error_free (error);
    return 2;
  }
  g_option_context_free (ctx);
  if (n_images < 1 || batch < 1 || batch > SAM2_SESSION_MAX_BATCH || width < 1 || height < 1) {
    g_printerr ("batch-segment: --images, --width and --height must be positive, --batch "
                "1 to %d\n", SAM2_SESSION_MAX_BATCH);
    return 2;
  }

  /* one session for the whole run, its encoder buffers sized for `batch` pictures */
  Sam2SessionOptions options = SAM2_SESSION_OPTIONS_INIT;
  options.max_batch = batch;
  if (!sam2_session_options_parse (&options, backend, precision, &error))
    goto fail;
  model = sam2_model_load (model_ref != NULL ? model_ref : "models/sam2-shapes", &error);
  if (model == NULL)
    goto fail;
  session = sam2_session_new_full (model, &options, &error);
  if (session == NULL)
    goto fail;
  printf ("%s, %d pictures of %dx%d, %d per encoder pass\n",
          sam2_session_describe_backend (session), n_images, width, height, batch);

  pics = g_new0 (Picture, batch);
  const guint8 **frames = g_newa (const guint8 *, batch);
  const size_t plane = (size_t) width * height;
  double iou_sum = 0.0;
  const gint64 start = g_get_monotonic_time ();
  for (int first = 0; first < n_images; first += batch) {
    const int n = MIN (batch, n_images - first);
    for (int i = 0; i < n; i++) {
      picture_draw (&pics[i], (guint64) (first + i), width, height);
      frames[i] = pics[i].rgb;
    }
    if (!sam2_session_set_images (session, frames, n, width, height, width * 3,
                                  SAM2_PIXEL_FORMAT_RGB, &error))
      goto fail;
    for (int i = 0; i < n; i++) {
      const Picture *p = &pics[i];
      double iou = 1.0;
      if (p->n_prompts > 0) {
        if (!sam2_session_select_image (session, i, &error))
          goto fail;
        const Sam2Result *r = sam2_session_predict (session, p->prompts, p->n_prompts, NULL,
                                                    &error);
        if (r == NULL)
          goto fail;
        iou = 0.0;
        for (int o = 0; o < r->n_objects; o++)
          iou += sam2_mask_iou (r->masks + (size_t) o * r->n_masks * plane,
                           p->masks + (size_t) p->shape_of[o] * plane, plane);
        iou /= r->n_objects;
      }
      printf ("picture %3d: %d objects, mean IoU %.3f\n", first + i, p->n_prompts, iou);
      iou_sum += iou;
    }
    for (int i = 0; i < n; i++)
      picture_clear (&pics[i]);
  }
  const double seconds = (double) (g_get_monotonic_time () - start) / 1e6;
  printf ("mean IoU %.3f over %d pictures, %.1f pictures/s\n", iou_sum / n_images, n_images,
          n_images / seconds);
  rc = 0;
  goto out;

fail:
  g_printerr ("batch-segment: %s\n", error->message);
  g_clear_error (&error);
out:
  if (pics != NULL)
    for (int i = 0; i < batch; i++)
      picture_clear (&pics[i]);
  g_free (pics);
  sam2_session_free (session);
  if (model != NULL)
    sam2_model_unref (model);
  g_free (model_ref);
  g_free (backend);
  g_free (precision);
  return rc;
}
