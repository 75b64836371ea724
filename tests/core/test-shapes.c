/* test-shapes.c: the trained sam2-shapes model reproduces the reference fp32 mIoU on eval_dev.
 *
 * This is the end-to-end check of the FP32 path on a model whose activations were shaped by
 * training: preprocessing (through the resampler at equal size), prompt scaling, encoder,
 * decoder, upsampling, thresholding. */
#include "eval.h"
#include "safetensors.h"
#include "test-support.h"

#include <glib/gstdio.h>
#include <string.h>

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

/* A set without images is an error: its mIoU was reported as 0, which reads as a model that
 * failed every object. */
static void
test_empty_set_refused (void)
{
  char *dir = sam2_test_fixture_path ("sam2-shapes");
  if (dir == NULL)
    return;
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (dir, &error);
  g_assert_no_error (error);
  char *tmp = g_dir_make_tmp ("sam2-empty-set-XXXXXX", &error);
  g_assert_no_error (error);
  char *set = g_build_filename (tmp, "empty.safetensors", NULL);
  Sam2StWriter *w = sam2_st_writer_new ();
  const int64_t images[4] = { 0, 64, 64, 3 }, masks[3] = { 0, 64, 64 }, points[2] = { 0, 2 },
                boxes[2] = { 0, 4 };
  const guint8 none = 0;
  g_assert_true (sam2_st_writer_add (w, "images_rgb_u8", SAM2_DTYPE_U8, 4, images, &none, NULL));
  g_assert_true (sam2_st_writer_add (w, "gt_masks_u8", SAM2_DTYPE_U8, 3, masks, &none, NULL));
  g_assert_true (sam2_st_writer_add (w, "points_xy", SAM2_DTYPE_F32, 2, points, &none, NULL));
  g_assert_true (sam2_st_writer_add (w, "boxes_xyxy", SAM2_DTYPE_F32, 2, boxes, &none, NULL));
  g_assert_true (sam2_st_writer_write (w, set, &error));
  g_assert_no_error (error);
  sam2_st_writer_free (w);
  g_assert_null (sam2_eval_set_run (model, set, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "holds no images to evaluate on"));
  g_clear_error (&error);
  g_unlink (set);
  g_rmdir (tmp);
  g_free (set);
  g_free (tmp);
  sam2_model_unref (model);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/shapes/eval-dev-miou", test_eval_dev_miou);
  g_test_add_func ("/shapes/empty-set-refused", test_empty_set_refused);
  return g_test_run ();
}
