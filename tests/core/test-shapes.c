/* test-shapes.c: the trained sam2-shapes model reproduces the reference fp32 mIoU on eval_dev.
 *
 * This is the end-to-end check of the FP32 path on a model whose activations were shaped by
 * training: preprocessing (through the resampler at equal size), prompt scaling, encoder,
 * decoder, upsampling, thresholding. */
#include "eval.h"
#include "test-support.h"

/* The reference mIoU of eval_dev (fixtures README) and how far ours may lie from it. */
#define SHAPES_MIOU_POINT 0.6192
#define SHAPES_MIOU_BOX 0.7130
#define SHAPES_MIOU_TOLERANCE 0.002
/* Our float32 logits against the set's fp32 logits: the reference ran on a GPU with TF32
 * matmuls (10-bit mantissa, ~1e-3 per product), so agreement is bounded by that, not by us. */
#define SHAPES_LOGITS_TF32_TOLERANCE 1e-2

static void
test_eval_dev_miou (void)
{
  char *dir = sam2_test_fixture_path ("sam2-shapes");
  char *set = sam2_test_fixture_path ("sam2-shapes/eval_dev.safetensors");
  if (dir == NULL || set == NULL)
    goto out;
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (dir, &error);
  g_assert_no_error (error);
  Sam2EvalResult *r = sam2_eval_set_run (model, set, &error);
  g_assert_no_error (error);
  g_test_message ("mIoU point %.4f (ref %.4f), box %.4f (ref %.4f); logits rel L2 vs fp32 "
                  "point %.2e box %.2e; encoder %.1f ms, decoder %.1f ms",
                  r->miou[SAM2_EVAL_POINT], SHAPES_MIOU_POINT, r->miou[SAM2_EVAL_BOX],
                  SHAPES_MIOU_BOX, r->reference_rel_l2[SAM2_EVAL_POINT],
                  r->reference_rel_l2[SAM2_EVAL_BOX], r->encoder_ms, r->decoder_ms);
  g_assert_cmpint (r->n_images, ==, 48);
  g_assert_cmpfloat_with_epsilon (r->miou[SAM2_EVAL_POINT], SHAPES_MIOU_POINT,
                                  SHAPES_MIOU_TOLERANCE);
  g_assert_cmpfloat_with_epsilon (r->miou[SAM2_EVAL_BOX], SHAPES_MIOU_BOX, SHAPES_MIOU_TOLERANCE);
  g_assert_true (r->has_reference);
  g_assert_cmpfloat (r->reference_rel_l2[SAM2_EVAL_POINT], <=, SHAPES_LOGITS_TF32_TOLERANCE);
  g_assert_cmpfloat (r->reference_rel_l2[SAM2_EVAL_BOX], <=, SHAPES_LOGITS_TF32_TOLERANCE);
  sam2_eval_result_free (r);
  sam2_model_unref (model);
out:
  g_free (dir);
  g_free (set);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/shapes/eval-dev-miou", test_eval_dev_miou);
  return g_test_run ();
}
