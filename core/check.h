/* check.h: comparing a model with reference outputs of transformers' Sam2Model.
 *
 * Reference files follow the fixtures' naming scheme (fixtures README): inputs under
 * in/<case>/..., outputs under out/<case>/{iou_scores,pred_masks,object_score_logits} and
 * out/image_embeddings/{0,1,2}, optional per-module activations under act/..., and the same
 * cases on hash pixels under hashpix/. Several files may be given together (the tiny reference
 * is split in two). Used by `sam2q check` and by the tests.
 */
#ifndef SAM2_CHECK_H
#define SAM2_CHECK_H

#include "sam2.h"

G_BEGIN_DECLS

/* Relative L2 error bounds against float64 references. A float32 forward pass lands near 1e-5 on
 * the embeddings (fixtures README); the bounds leave an order of magnitude for accumulation order
 * and stay far below any real bug (a wrong eps or a missing term is > 1e-3). */
#define SAM2_CHECK_TOL_FEATURES 1e-4
/* Mask logits pass through the whole decoder; "well under 1e-3" is what float32 reaches. */
#define SAM2_CHECK_TOL_LOGITS 1e-3
/* IoU predictions and object-score logits. */
#define SAM2_CHECK_TOL_SCORES 1e-3
/* Intermediate activations (act/...), only reported to localise a mismatch. */
#define SAM2_CHECK_TOL_ACTIVATIONS 1e-4
/* FP16 GEMM operands (precision fp16): each operand is rounded to 11 significant bits (4.9e-4
 * relative) and the errors of dozens of chained layers add up; 1e-2 is the bound every output is
 * held to then. Subtle bugs (> 1e-3) are the FP32 run's to catch: FP16 shares every kernel but
 * the GEMM operands' type. */
#define SAM2_CHECK_TOL_FP16 1e-2
/* BF16 GEMM operands (precision bf16): 8 significant bits, a unit roundoff of 3.9e-3, 8x FP16's,
 * so the same chain of layers is held to 8x FP16's bound. */
#define SAM2_CHECK_TOL_BF16 8e-2

typedef struct {
  char *name;                  /* e.g. "p1/pred_masks", "image_embeddings/0", "act/blocks.3" */
  double rel_l2;
  double max_abs;
  double tolerance;
  gboolean pass;
} Sam2CheckEntry;

typedef struct {
  GPtrArray *entries;          /* Sam2CheckEntry, in the order checked */
  int n_failed;
  int n_cases;                 /* prompt cases run */
  char *backend;               /* sam2_session_describe_backend of the session that ran */
  double tolerance_floor;      /* every bound is at least this: SAM2_CHECK_TOL_FP16 in FP16,
                                  SAM2_CHECK_TOL_BF16 in BF16 */
} Sam2CheckReport;

/* Runs every case found in the reference files on `model`. FALSE (and `error`) only when the
 * files cannot be read or hold no case; a numerical mismatch is a report with n_failed > 0. */
Sam2CheckReport *sam2_check_reference (Sam2Model *model, const char *const *reference_paths,
                                       GError **error);
/* The same on the backend and precision of `options` (NULL: the defaults), e.g. the CUDA backend
 * against the same references. In FP16 every bound is raised to SAM2_CHECK_TOL_FP16, in BF16 to
 * SAM2_CHECK_TOL_BF16. */
Sam2CheckReport *sam2_check_reference_full (Sam2Model *model,
                                            const char *const *reference_paths,
                                            const Sam2SessionOptions *options, GError **error);
void sam2_check_report_free (Sam2CheckReport *report);

G_END_DECLS

#endif
