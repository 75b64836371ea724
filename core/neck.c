/* neck.c: the FPN neck (Sam2VisionNeck) and the features the mask decoder takes: lateral convs
 * top-down with nearest 2x upsampling on the configured levels, conv_s0 / conv_s1 on the two
 * high-resolution levels (as Sam2Model.get_image_features does once per image), and the "no
 * memory" embedding added to the image embedding. */
#include "binder.h"
#include "session.h"

#define CHECK(expr)                                                                              \
  do {                                                                                           \
    int status_ = (expr);                                                                        \
    if (status_ != SAM2_STATUS_OK)                                                               \
      return status_;                                                                            \
  } while (0)

static gboolean
is_top_down (const Sam2VisionConfig *v, int level)
{
  for (int i = 0; i < v->n_fpn_top_down_levels; i++)
    if (v->fpn_top_down_levels[i] == level)
      return TRUE;
  return FALSE;
}

gboolean
sam2_neck_bind (Sam2Binder *b, GError **error)
{
  Sam2Model *m = b->model;
  const Sam2VisionConfig *v = &m->config.vision;
  const int F = v->fpn_hidden_size, n = m->n_stages;
  const int k = v->fpn_kernel_size;

  if (v->fpn_stride != 1 || 2 * v->fpn_padding != k - 1) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "FPN convs with kernel %d, stride %d, padding %d change the feature size; the "
                 "neck needs size-preserving convs (stride 1, padding (kernel - 1) / 2)", k,
                 v->fpn_stride, v->fpn_padding);
    return FALSE;
  }
  if (v->n_backbone_channels != n) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "backbone_channel_list has %d entries for %d backbone stages",
                 v->n_backbone_channels, n);
    return FALSE;
  }
  if (v->num_feature_levels != 3 || n < 3) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "num_feature_levels is %d with %d stages; the SAM2 mask decoder takes exactly "
                 "three feature levels", v->num_feature_levels, n);
    return FALSE;
  }
  m->neck_kernel = k;
  m->neck_padding = v->fpn_padding;
  for (int i = 0; i < n; i++) {
    const int stage = n - 1 - i;
    if (v->backbone_channel_list[i] != m->stage_dim[stage]) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "backbone_channel_list[%d] = %d but backbone stage %d outputs %d channels",
                   i, v->backbone_channel_list[i], stage, m->stage_dim[stage]);
      return FALSE;
    }
    sam2_bind_conv (b, &m->neck_conv[i], m->stage_dim[stage], F, k, k,
                    "vision_encoder.neck.convs.%d", i);
  }
  for (int level = 0; level < n - 1; level++)
    if (is_top_down (v, level)
        && (m->stage_h[level] != 2 * m->stage_h[level + 1]
            || m->stage_w[level] != 2 * m->stage_w[level + 1])) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "FPN level %d (%dx%d) is not twice level %d (%dx%d), so its top-down "
                   "connection cannot add the upsampled features", level, m->stage_h[level],
                   m->stage_w[level], level + 1, m->stage_h[level + 1], m->stage_w[level + 1]);
      return FALSE;
    }

  const int D = m->config.mask_decoder.hidden_size;
  if (D != F) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "mask_decoder_config.hidden_size (%d) differs from fpn_hidden_size (%d); the "
                 "decoder reads the FPN features directly", D, F);
    return FALSE;
  }
  sam2_bind_conv (b, &m->conv_s0, D, D / 8, 1, 1, "mask_decoder.conv_s0");
  sam2_bind_conv (b, &m->conv_s1, D, D / 4, 1, 1, "mask_decoder.conv_s1");
  m->no_memory_embedding = sam2_bind (b, "no_memory_embedding", 3, 1, 1, F);

  for (int level = 0; level < 3; level++) {
    m->feat_h[level] = m->stage_h[level];
    m->feat_w[level] = m->stage_w[level];
    if (v->backbone_feature_sizes[level][0] != m->stage_h[level]
        || v->backbone_feature_sizes[level][1] != m->stage_w[level]) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "backbone_feature_sizes[%d] is %dx%d but the backbone produces %dx%d at "
                   "this image size", level, v->backbone_feature_sizes[level][0],
                   v->backbone_feature_sizes[level][1], m->stage_h[level], m->stage_w[level]);
      return FALSE;
    }
  }
  m->feat_c[0] = D / 8;
  m->feat_c[1] = D / 4;
  m->feat_c[2] = F;
  return TRUE;
}

/* The lateral conv of `level` for all images of the pass into `out` (B, H * W, F). */
static int
lateral_conv (Sam2Session *s, int level, float *out)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  const int n = m->n_stages;
  const Sam2Linear *conv = &m->neck_conv[n - 1 - level];
  const int H = m->stage_h[level], W = m->stage_w[level];
  if (m->neck_kernel == 1)
    return sam2_session_linear_in_passes (s, conv, s->stage_x[level], s->batch * H * W, out,
                                          SAM2_ACT_NONE, NULL);
  /* a wider kernel through an im2col of one image at a time */
  for (int i = 0; i < s->batch; i++) {
    CHECK (b->ops->im2col (b, s->stage_x[level] + (size_t) i * H * W * m->stage_dim[level], H, W,
                           m->stage_dim[level], m->neck_kernel, m->neck_kernel, 1,
                           m->neck_padding, s->neck_cols));
    CHECK (sam2_session_linear_one_image (s, conv, s->neck_cols, H * W,
                                          out + (size_t) i * H * W * conv->out_features,
                                          SAM2_ACT_NONE, NULL));
  }
  return SAM2_STATUS_OK;
}

int
sam2_neck_forward (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  const Sam2VisionConfig *v = &m->config.vision;
  Sam2Backend *b = s->backend;
  const int F = v->fpn_hidden_size, n = m->n_stages, nb = s->batch;

  for (int level = n - 1; level >= 0; level--) {
    CHECK (lateral_conv (s, level, s->fpn[level]));
    if (level < n - 1 && is_top_down (v, level)) {
      const size_t hw = (size_t) m->stage_h[level] * m->stage_w[level];
      const size_t hw_up = (size_t) m->stage_h[level + 1] * m->stage_w[level + 1];
      for (int i = 0; i < nb; i++)
        CHECK (b->ops->add_upsample2x (b, s->fpn[level] + i * hw * F,
                                       s->fpn[level + 1] + i * hw_up * F, m->stage_h[level + 1],
                                       m->stage_w[level + 1], F));
    }
    char name[32];
    g_snprintf (name, sizeof name, "neck.%d", level);
    sam2_session_emit_map_tap (s, name, s->fpn[level], m->stage_h[level], m->stage_w[level], F);
  }

  /* one image: straight into the decoder's features; more: into the batch's, from which
   * sam2_session_select_image copies one */
  float *const *feat = nb == 1 ? s->features : s->batch_features;
  CHECK (sam2_session_linear_in_passes (s, &m->conv_s0, s->fpn[0],
                                        nb * m->feat_h[0] * m->feat_w[0], feat[0],
                                        SAM2_ACT_NONE, NULL));
  CHECK (sam2_session_linear_in_passes (s, &m->conv_s1, s->fpn[1],
                                        nb * m->feat_h[1] * m->feat_w[1], feat[1],
                                        SAM2_ACT_NONE, NULL));
  CHECK (b->ops->add_row (b, feat[2], s->fpn[2], s->no_memory_dev,
                          nb * m->feat_h[2] * m->feat_w[2], F));
  return SAM2_STATUS_OK;
}
