/* eval-dataset.c: mIoU of a model on an annotated dataset (coco, sa1b, random): every object
 * not marked as a crowd is prompted once with its box and once with its point; the mask at
 * threshold 0 is compared with the ground truth. */
#include "eval-dataset.h"
#include "eval.h"

#include <math.h>
#include <string.h>

void
sam2q_eval_scores_clear (Sam2qEvalScores *scores)
{
  for (int k = 0; k < 2; k++)
    g_clear_pointer (&scores->iou[k], g_array_unref);
}

gboolean
sam2q_eval_dataset (Sam2Model *model, const char *kind, const char *root, int limit, int seed,
                    const Sam2SessionOptions *options, Sam2qEvalScores *out, GError **error)
{
  Sam2qDatasetOptions opts = { .limit = limit, .seed = (guint64) seed };
  Sam2qDataset *ds = sam2q_dataset_open (kind, root, &opts, error);
  if (ds == NULL)
    return FALSE;
  Sam2Session *s = sam2_session_new_full (model, options, error);
  if (s == NULL) {
    sam2q_dataset_free (ds);
    return FALSE;
  }
  g_strlcpy (out->backend, sam2_session_describe_backend (s), sizeof out->backend);
  Sam2qSample sample = { 0 };
  double sum[2] = { 0, 0 };
  gint64 t_enc = 0, t_dec = 0;
  int n_objects = 0, n_images = 0, n_empty = 0;
  gboolean ok = TRUE;
  guint8 *gt = NULL;
  for (int k = 0; k < 2; k++) {
    out->iou[k] = g_array_new (FALSE, FALSE, sizeof (double));
    out->logits_rel_l2[k] = NAN;
  }
  size_t gt_size = 0;

  while (ok && sam2q_dataset_next (ds, &sample, error)) {
    const Sam2qImage *im = sample.image;
    gint64 t0 = g_get_monotonic_time ();
    ok = sam2_session_set_image (s, im->pixels, im->width, im->height, im->stride,
                                 SAM2_PIXEL_FORMAT_RGB, error);
    /* a picture the library refuses (too large, say): name it, as a wrong prompt is named */
    if (!ok)
      g_prefix_error (error, "%s dataset, sample %d (%s): ", kind, sample.index, sample.name);
    t_enc += g_get_monotonic_time () - t0;
    n_images++;
    const size_t plane = (size_t) im->width * im->height;
    if (gt_size < plane) {
      g_free (gt);
      gt = g_malloc (plane);
      gt_size = plane;
    }
    for (int i = 0; ok && i < sample.n_annotations; i++) {
      const Sam2qAnnotation *a = &sample.annotations[i];
      if (a->iscrowd || a->mask == NULL)
        continue;
      if (a->area == 0) {
        n_empty++;
        continue;
      }
      sam2q_annotation_decode_mask (a, gt, im->width);
      const Sam2Point pt = { (float) a->point[0], (float) a->point[1], SAM2_LABEL_POSITIVE };
      Sam2Prompt prompts[2] = {
        { .points = &pt, .n_points = 1 },
        /* as given: COCO's x + w may equal the width, which the prompt encoder takes as is */
        { .has_box = TRUE, .box = { (float) a->box[0], (float) a->box[1], (float) a->box[2],
                                    (float) a->box[3] } },
      };
      for (int k = 0; ok && k < 2; k++) {
        t0 = g_get_monotonic_time ();
        const Sam2Result *r = sam2_session_predict (s, &prompts[k], 1, NULL, error);
        t_dec += g_get_monotonic_time () - t0;
        ok = r != NULL;
        /* a prompt the data gave wrong: name where it came from */
        if (!ok)
          g_prefix_error (error, "%s dataset, sample %d (%s), annotation %" G_GINT64_FORMAT
                          ", %s prompt: ", kind, sample.index, sample.name, a->id,
                          k == 0 ? "point" : "box");
        if (ok) {
          const double iou = sam2_mask_iou (r->masks, gt, plane);
          g_array_append_val (out->iou[k], iou);
          sum[k] += iou;
        }
      }
      n_objects++;
    }
  }
  if (ok && error != NULL && *error != NULL)
    ok = FALSE;
  if (ok && n_objects == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "%s has no annotated objects to evaluate on%s", root ? root : kind,
                 n_empty > 0 ? " (every mask is empty)" : "");
    ok = FALSE;
  }
  if (ok) {
    out->miou[0] = sum[0] / n_objects;
    out->miou[1] = sum[1] / n_objects;
    out->n_images = n_images;
    out->n_objects = n_objects;
    out->n_skipped_empty = n_empty;
    out->encoder_ms = t_enc / 1e3 / n_images;
    out->decoder_ms = t_dec / 1e3 / (2.0 * n_objects);
  }
  g_free (gt);
  sam2q_sample_clear (&sample);
  sam2_session_free (s);
  sam2q_dataset_free (ds);
  return ok;
}
