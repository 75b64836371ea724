/* prompt-encoder.c: Sam2PromptEncoder. Points and boxes become sparse tokens through random
 * Fourier features (on the host: a few tokens, computed in double); a mask prompt becomes a dense
 * embedding through two strided 2x2 convs (on the backend: it is image-sized). Also the
 * image-wide positional embedding the mask decoder adds to the image tokens. */
#include "binder.h"
#include "session.h"

#include <math.h>

gboolean
sam2_prompt_encoder_bind (Sam2Binder *b, GError **error)
{
  Sam2Model *m = b->model;
  const Sam2PromptEncoderConfig *pc = &m->config.prompt_encoder;
  const int C = pc->hidden_size, mic = pc->mask_input_channels;
  const char *P = "prompt_encoder";

  if (C % 2 != 0 || mic % 4 != 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "prompt_encoder_config: hidden_size (%d) must be even and mask_input_channels "
                 "(%d) a multiple of 4", C, mic);
    return FALSE;
  }
  m->embed_size = pc->image_size / pc->patch_size;
  m->mask_size = 4 * m->embed_size;
  if (pc->image_size != m->image_size || m->embed_size != m->feat_h[2]
      || m->embed_size != m->feat_w[2] || C != m->config.vision.fpn_hidden_size) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "prompt_encoder_config (image_size %d, patch_size %d, hidden_size %d) does not "
                 "match the vision encoder (input %d, embedding %dx%d, fpn_hidden_size %d)",
                 pc->image_size, pc->patch_size, C, m->image_size, m->feat_h[2], m->feat_w[2],
                 m->config.vision.fpn_hidden_size);
    return FALSE;
  }

  m->point_gaussian = sam2_bindv (b, 2, (int[]) { 2, C / 2 }, "%s.shared_embedding.positional_embedding", P);
  m->image_gaussian = sam2_bind (b, "shared_image_embedding.positional_embedding", 2, 2, C / 2);
  m->point_embed = sam2_bindv (b, 2, (int[]) { pc->num_point_embeddings, C }, "%s.point_embed.weight", P);
  m->not_a_point_embed = sam2_bindv (b, 2, (int[]) { 1, C }, "%s.not_a_point_embed.weight", P);
  m->no_mask_embed = sam2_bindv (b, 2, (int[]) { 1, C }, "%s.no_mask_embed.weight", P);
  sam2_bind_conv (b, &m->mask_conv1, 1, mic / 4, 2, 2, "%s.mask_embed.conv1", P);
  sam2_bind_conv (b, &m->mask_conv2, mic / 4, mic, 2, 2, "%s.mask_embed.conv2", P);
  sam2_bind_conv (b, &m->mask_conv3, mic, C, 1, 1, "%s.mask_embed.conv3", P);
  sam2_bind_layer_norm (b, &m->mask_norm1, mic / 4, pc->layer_norm_eps, "%s.mask_embed.layer_norm1", P);
  sam2_bind_layer_norm (b, &m->mask_norm2, mic, pc->layer_norm_eps, "%s.mask_embed.layer_norm2", P);
  return TRUE;
}

/* Sam2PositionalEmbedding of a point already normalised to [0, 1]^2: [sin, cos] of 2 pi (2p - 1) G. */
static void
fourier_features (const float *gaussian, int half, double x, double y, double *out)
{
  x = 2.0 * x - 1.0;
  y = 2.0 * y - 1.0;
  for (int j = 0; j < half; j++) {
    double a = 2.0 * M_PI * (x * gaussian[j] + y * gaussian[half + j]);
    out[j] = sin (a);
    out[half + j] = cos (a);
  }
}

void
sam2_prompt_encoder_image_pe (const Sam2Model *m, float *pe)
{
  const int C = m->config.prompt_encoder.hidden_size, E = m->embed_size;
  double *f = g_new (double, C);
  for (int i = 0; i < E; i++)
    for (int j = 0; j < E; j++) {
      fourier_features (m->image_gaussian, C / 2, (j + 0.5) / E, (i + 0.5) / E, f);
      for (int c = 0; c < C; c++)
        pe[((size_t) i * E + j) * C + c] = (float) f[c];
    }
  g_free (f);
}

int
sam2_prompt_encoder_max_tokens (int n_points)
{
  return MAX (n_points, 1) + 3;
}

/* One point token: Fourier features of the pixel-centre coordinate, replaced for "not a point",
 * zeroed for padding, plus the label's learned embedding. */
static void
point_token (const Sam2Model *m, double x, double y, int label, float *token)
{
  const Sam2PromptEncoderConfig *pc = &m->config.prompt_encoder;
  const int C = pc->hidden_size;
  double f[C];
  if (label == SAM2_LABEL_NOT_A_POINT) {
    for (int c = 0; c < C; c++)
      token[c] = m->not_a_point_embed[c];
    return;
  }
  if (label == SAM2_LABEL_PAD) {
    for (int c = 0; c < C; c++)
      token[c] = 0.0f;
    return;
  }
  fourier_features (m->point_gaussian, C / 2, x / pc->image_size, y / pc->image_size, f);
  for (int c = 0; c < C; c++)
    token[c] = (float) (f[c] + m->point_embed[(size_t) label * C + c]);
}

int
sam2_prompt_encoder_sparse (const Sam2Model *m, const Sam2Prompt *p, float *tokens, int max_tokens)
{
  const int C = m->config.prompt_encoder.hidden_size;
  int n = 0;
  if (p->n_points > 0 || !p->has_box) {
    /* Without any prompt the reference embeds a single "not a point" at the origin. */
    static const Sam2Point none = { 0.0f, 0.0f, SAM2_LABEL_NOT_A_POINT };
    const Sam2Point *pts = p->n_points > 0 ? p->points : &none;
    const int np = MAX (p->n_points, 1);
    for (int i = 0; i < np && n < max_tokens; i++, n++)
      point_token (m, pts[i].x + 0.5, pts[i].y + 0.5, pts[i].label, tokens + (size_t) n * C);
    /* Points alone are padded with one "not a point" (at (0, 0), not shifted), as the reference. */
    if (!p->has_box && n < max_tokens) {
      point_token (m, 0.0, 0.0, SAM2_LABEL_NOT_A_POINT, tokens + (size_t) n * C);
      n++;
    }
  }
  if (p->has_box && n + 3 <= max_tokens) {
    point_token (m, p->box[0] + 0.5, p->box[1] + 0.5, SAM2_LABEL_BOX_TOP_LEFT,
                 tokens + (size_t) n * C);
    point_token (m, p->box[2] + 0.5, p->box[3] + 0.5, SAM2_LABEL_BOX_BOTTOM_RIGHT,
                 tokens + (size_t) (n + 1) * C);
    point_token (m, 0.0, 0.0, SAM2_LABEL_NOT_A_POINT, tokens + (size_t) (n + 2) * C);
    n += 3;
  }
  return n;
}

#define CHECK(expr)                                                                              \
  do {                                                                                           \
    int status_ = (expr);                                                                        \
    if (status_ != SAM2_STATUS_OK)                                                               \
      return status_;                                                                            \
  } while (0)

int
sam2_prompt_encoder_dense (Sam2Session *s, const float *mask)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  const Sam2Act act = m->config.prompt_encoder.hidden_act;
  Sam2DecoderBuffers *d = &s->dec;
  const int ms = m->mask_size, h1 = ms / 2, h2 = ms / 4;

  CHECK (b->ops->im2col (b, mask, ms, ms, 1, 2, 2, 2, 0, d->mask_cols));
  CHECK (sam2_session_linear (s, &m->mask_conv1, d->mask_cols, h1 * h1, d->mask_a, SAM2_ACT_NONE, NULL));
  CHECK (b->ops->layer_norm (b, &m->mask_norm1, d->mask_a, h1 * h1, d->mask_a));
  CHECK (b->ops->activation (b, act, d->mask_a, (size_t) h1 * h1 * m->mask_norm1.dim));
  CHECK (b->ops->im2col (b, d->mask_a, h1, h1, m->mask_norm1.dim, 2, 2, 2, 0, d->mask_cols));
  CHECK (sam2_session_linear (s, &m->mask_conv2, d->mask_cols, h2 * h2, d->mask_b, SAM2_ACT_NONE, NULL));
  CHECK (b->ops->layer_norm (b, &m->mask_norm2, d->mask_b, h2 * h2, d->mask_b));
  CHECK (b->ops->activation (b, act, d->mask_b, (size_t) h2 * h2 * m->mask_norm2.dim));
  return sam2_session_linear (s, &m->mask_conv3, d->mask_b, h2 * h2, d->dense, SAM2_ACT_NONE, NULL);
}
