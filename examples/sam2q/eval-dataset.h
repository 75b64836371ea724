/* eval-dataset.h: sam2q's evaluation on annotated datasets (see datasets.h). */
#ifndef SAM2Q_EVAL_DATASET_H
#define SAM2Q_EVAL_DATASET_H

#include "datasets.h"
#include "sam2.h"

G_BEGIN_DECLS

typedef struct {
  double miou[2];              /* point, box */
  GArray *iou[2];              /* of double: IoU of every object in order (point, box) */
  double logits_rel_l2[2];     /* low-res logits vs the set's fp32 reference, relative L2; NAN
                                * where the set has none */
  int n_images;
  int n_objects;
  int n_skipped_empty;         /* objects left out: their ground-truth mask has no pixel (an
                                * empty polygon list, a polygon outside the picture), so no
                                * IoU can be defined for them */
  double encoder_ms;           /* per image */
  double decoder_ms;           /* per prompt, including upsampling to the picture */
  char backend[192];           /* sam2_session_describe_backend of the session that ran */
} Sam2qEvalScores;

/* Frees the per-object arrays. */
void sam2q_eval_scores_clear (Sam2qEvalScores *scores);

/* Box and point prompt per object of the first `limit` samples (0: all) of the dataset; `seed`
 * chooses the pictures of the random dataset. */
gboolean sam2q_eval_dataset (Sam2Model *model, const char *kind, const char *root, int limit,
                             int seed, const Sam2SessionOptions *options, Sam2qEvalScores *out,
                             GError **error);

G_END_DECLS

#endif
