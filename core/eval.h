/* eval.h: mask quality of a model on an evaluation set in the fixtures' format
 * (sam2-shapes/eval_dev.safetensors): images_rgb_u8 (N, S, S, 3), gt_masks_u8 (N, S, S),
 * points_xy (N, 2), boxes_xyxy (N, 4), optionally fp32_{point,box}_lowres_logits (N, h, w).
 *
 * Protocol (fixtures README): one object per image, a single positive point or the box, no
 * multimask; the low-res logits are upsampled bilinearly to S x S, thresholded at 0 and compared
 * with the ground truth by IoU (an empty prediction of an empty mask counts 1). */
#ifndef SAM2_EVAL_H
#define SAM2_EVAL_H

#include "sam2.h"

G_BEGIN_DECLS

typedef enum {
  SAM2_EVAL_POINT,
  SAM2_EVAL_BOX,
  SAM2_EVAL_N_KINDS,
} Sam2EvalKind;

typedef struct {
  int n_images;
  int mask_size;               /* side of the low-res logits */
  double miou[SAM2_EVAL_N_KINDS];
  float *iou[SAM2_EVAL_N_KINDS];        /* (n_images) IoU with the ground truth */
  float *iou_scores[SAM2_EVAL_N_KINDS]; /* (n_images) predicted IoU */
  float *logits[SAM2_EVAL_N_KINDS];     /* (n_images, mask_size, mask_size) */
  gboolean has_reference;      /* the set carries fp32 reference logits */
  double reference_rel_l2[SAM2_EVAL_N_KINDS];  /* our logits vs the set's, relative L2 */
  double encoder_ms;           /* mean per image */
  double decoder_ms;           /* mean per prompt */
  char *backend;               /* sam2_session_describe_backend of the session that ran */
} Sam2EvalResult;

/* The default session (SAM2_SESSION_OPTIONS_INIT). */
Sam2EvalResult *sam2_eval_set_run (Sam2Model *model, const char *path, GError **error);
/* `options` NULL: the defaults. */
Sam2EvalResult *sam2_eval_set_run_full (Sam2Model *model, const char *path,
                                        const Sam2SessionOptions *options, GError **error);
void sam2_eval_result_free (Sam2EvalResult *result);

/* IoU of two 0/1 masks of n pixels, 1 when both are empty. */
double sam2_mask_iou (const guint8 *a, const guint8 *b, size_t n);

G_END_DECLS

#endif
