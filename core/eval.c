/* eval.c: see eval.h. */
#include "eval.h"
#include "image.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>

double
sam2_mask_iou (const guint8 *a, const guint8 *b, size_t n)
{
  size_t inter = 0, uni = 0;
  for (size_t i = 0; i < n; i++) {
    gboolean pa = a[i] != 0, pb = b[i] != 0;
    inter += pa && pb;
    uni += pa || pb;
  }
  return uni > 0 ? (double) inter / (double) uni : 1.0;
}

void
sam2_eval_result_free (Sam2EvalResult *r)
{
  if (r == NULL)
    return;
  for (int k = 0; k < SAM2_EVAL_N_KINDS; k++) {
    g_free (r->iou[k]);
    g_free (r->iou_scores[k]);
    g_free (r->logits[k]);
  }
  g_free (r->backend);
  g_free (r);
}

static const Sam2StTensor *
require (const Sam2Safetensors *st, const char *name, Sam2DType dtype, int ndim, GError **error)
{
  const Sam2StTensor *t = sam2_safetensors_find (st, name);
  if (t == NULL || t->dtype != dtype || t->ndim != ndim) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: '%s' missing or not a %d-d %s tensor; not an evaluation set in the "
                 "fixtures' format", sam2_safetensors_path (st), name, ndim, sam2_dtype_name (dtype));
    return NULL;
  }
  return t;
}

static double
rel_l2 (const float *a, const float *b, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - b[i];
    num += d * d;
    den += (double) b[i] * b[i];
  }
  return sqrt (num) / fmax (sqrt (den), 1e-30);
}

Sam2EvalResult *
sam2_eval_set_run (Sam2Model *model, const char *path, GError **error)
{
  return sam2_eval_set_run_full (model, path, NULL, error);
}

Sam2EvalResult *
sam2_eval_set_run_full (Sam2Model *model, const char *path, const Sam2SessionOptions *options,
                        GError **error)
{
  Sam2Safetensors *st = sam2_safetensors_open (path, error);
  if (st == NULL)
    return NULL;
  Sam2EvalResult *r = NULL;
  Sam2Session *s = NULL;
  float *points = NULL, *boxes = NULL, *up = NULL;
  guint8 *pred = NULL;

  const Sam2StTensor *img = require (st, "images_rgb_u8", SAM2_DTYPE_U8, 4, error);
  const Sam2StTensor *gt = img ? require (st, "gt_masks_u8", SAM2_DTYPE_U8, 3, error) : NULL;
  if (gt == NULL)
    goto fail;
  const int N = (int) img->shape[0], H = (int) img->shape[1], W = (int) img->shape[2];
  if (img->shape[3] != 3 || gt->shape[0] != N || gt->shape[1] != H || gt->shape[2] != W) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: images (%dx%dx%d) and ground-truth masks do not match", path, N, H, W);
    goto fail;
  }
  /* an mIoU over no object is no number: not 0, which would read as a model that failed */
  if (N == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s holds no images to evaluate on; give a set with at least one", path);
    goto fail;
  }
  if ((points = sam2_safetensors_read_f32 (st, "points_xy", (int64_t) N * 2, error)) == NULL
      || (boxes = sam2_safetensors_read_f32 (st, "boxes_xyxy", (int64_t) N * 4, error)) == NULL)
    goto fail;
  if ((s = sam2_session_new_full (model, options, error)) == NULL)
    goto fail;

  const int ms = sam2_model_get_mask_size (model);
  const size_t ms2 = (size_t) ms * ms, plane = (size_t) H * W;
  r = g_new0 (Sam2EvalResult, 1);
  r->n_images = N;
  r->mask_size = ms;
  r->backend = g_strdup (sam2_session_describe_backend (s));
  for (int k = 0; k < SAM2_EVAL_N_KINDS; k++) {
    r->iou[k] = g_new0 (float, N);
    r->iou_scores[k] = g_new0 (float, N);
    r->logits[k] = g_new0 (float, (size_t) N * ms2);
  }
  const size_t up_floats = sam2_upsample_threshold_scratch (ms, H, W);
  up = g_new (float, up_floats);   /* upsampling scratch */
  pred = g_new (guint8, plane);
  const guint8 *images = img->data, *masks = gt->data;
  gint64 t_encode = 0, t_decode = 0;

  for (int i = 0; i < N; i++) {
    gint64 t0 = g_get_monotonic_time ();
    if (!sam2_session_set_image (s, images + (size_t) i * plane * 3, W, H, W * 3,
                                 SAM2_PIXEL_FORMAT_RGB, error))
      goto fail;
    t_encode += g_get_monotonic_time () - t0;
    /* prompts are in image pixels; predict scales them to the model input as the processor */
    const Sam2Point pt = { points[2 * i], points[2 * i + 1], SAM2_LABEL_POSITIVE };
    Sam2Prompt prompts[SAM2_EVAL_N_KINDS] = {
      [SAM2_EVAL_POINT] = { .points = &pt, .n_points = 1 },
      [SAM2_EVAL_BOX] = { .has_box = TRUE },
    };
    memcpy (prompts[SAM2_EVAL_BOX].box, boxes + 4 * i, 4 * sizeof (float));
    for (int k = 0; k < SAM2_EVAL_N_KINDS; k++) {
      Sam2PredictOptions opts = SAM2_PREDICT_OPTIONS_INIT;
      opts.frame_masks = FALSE;
      t0 = g_get_monotonic_time ();
      const Sam2Result *res = sam2_session_predict (s, &prompts[k], 1, &opts, error);
      t_decode += g_get_monotonic_time () - t0;
      if (res == NULL)
        goto fail;
      memcpy (r->logits[k] + (size_t) i * ms2, res->lowres_logits, ms2 * sizeof (float));
      r->iou_scores[k][i] = res->iou_scores[0];
      sam2_upsample_threshold (res->lowres_logits, ms, ms, H, W, 0.0f, up, up_floats, pred);
      r->iou[k][i] = (float) sam2_mask_iou (pred, masks + (size_t) i * plane, plane);
    }
  }
  for (int k = 0; k < SAM2_EVAL_N_KINDS; k++) {
    double sum = 0.0;
    for (int i = 0; i < N; i++)
      sum += r->iou[k][i];
    r->miou[k] = sum / N;
  }
  r->encoder_ms = t_encode / 1e3 / N;
  r->decoder_ms = t_decode / 1e3 / (N * SAM2_EVAL_N_KINDS);

  static const char *ref_names[SAM2_EVAL_N_KINDS] = { "fp32_point_lowres_logits",
                                                      "fp32_box_lowres_logits" };
  r->has_reference = TRUE;
  for (int k = 0; k < SAM2_EVAL_N_KINDS; k++) {
    const Sam2StTensor *t = sam2_safetensors_find (st, ref_names[k]);
    if (t == NULL || t->numel != (int64_t) (N * ms2)) {
      r->has_reference = FALSE;
      continue;
    }
    float *ref = sam2_safetensors_read_f32 (st, ref_names[k], t->numel, error);
    if (ref == NULL)
      goto fail;
    r->reference_rel_l2[k] = rel_l2 (r->logits[k], ref, (size_t) t->numel);
    g_free (ref);
  }
  goto out;

fail:
  sam2_eval_result_free (r);
  r = NULL;
out:
  g_free (up);
  g_free (pred);
  g_free (points);
  g_free (boxes);
  sam2_session_free (s);
  sam2_safetensors_close (st);
  return r;
}
