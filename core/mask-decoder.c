/* mask-decoder.c: Sam2MaskDecoder. A two-way transformer between the prompt tokens and the image
 * embedding, transposed-conv upscaling fused with the high-resolution features, hypernetwork
 * MLPs that turn mask tokens into per-mask weights, and the IoU and object-score heads. */
#include "binder.h"
#include "session.h"

#include <math.h>
#include <string.h>

#define CHECK(expr)                                                                              \
  do {                                                                                           \
    int status_ = (expr);                                                                        \
    if (status_ != SAM2_STATUS_OK)                                                               \
      return status_;                                                                            \
  } while (0)

/* nn.LayerNorm's default: the two-way transformer's norms are built without an eps argument. */
#define TORCH_LAYER_NORM_EPS 1e-5
/* Sam2LayerNorm's default, used by upscale_layer_norm. */
#define SAM2_LAYER_NORM_EPS 1e-6

static void
bind_attention (Sam2Binder *b, Sam2DecoderAttention *a, int C, int downsample, int heads,
                const char *prefix)
{
  a->internal_dim = C / downsample;
  a->heads = heads;
  sam2_bind_linear (b, &a->q_proj, C, a->internal_dim, "%s.q_proj", prefix);
  sam2_bind_linear (b, &a->k_proj, C, a->internal_dim, "%s.k_proj", prefix);
  sam2_bind_linear (b, &a->v_proj, C, a->internal_dim, "%s.v_proj", prefix);
  sam2_bind_linear (b, &a->o_proj, a->internal_dim, C, "%s.o_proj", prefix);
}

/* ConvTranspose2d(c_in, c_out, 2, stride 2) weight (c_in, c_out, 2, 2) -> a linear (4 c_out, c_in)
 * whose output columns are (dy, dx, o), followed by depth_to_space2x. */
static void
bind_upscale (Sam2Binder *b, Sam2Linear *l, int c_in, int c_out, const char *prefix)
{
  const float *w = sam2_bindv (b, 4, (int[]) { c_in, c_out, 2, 2 }, "%s.weight", prefix);
  const float *bias = sam2_bindv (b, 1, (int[]) { c_out }, "%s.bias", prefix);
  l->name = sam2_binder_intern (b, prefix);
  l->in_features = c_in;
  l->out_features = 4 * c_out;
  if (sam2_binder_failed (b))
    return;
  float *wl = sam2_binder_alloc (b, (size_t) 4 * c_out * c_in);
  float *bl = sam2_binder_alloc (b, (size_t) 4 * c_out);
  for (int q = 0; q < 4; q++)
    for (int o = 0; o < c_out; o++) {
      for (int i = 0; i < c_in; i++)
        wl[((size_t) q * c_out + o) * c_in + i] = w[((size_t) i * c_out + o) * 4 + q];
      bl[q * c_out + o] = bias[o];
    }
  l->weight = wl;
  l->bias = bl;
}

gboolean
sam2_mask_decoder_bind (Sam2Binder *b, GError **error)
{
  Sam2Model *m = b->model;
  const Sam2MaskDecoderConfig *dc = &m->config.mask_decoder;
  const int C = dc->hidden_size;
  const char *P = "mask_decoder";

  if (C % 8 != 0 || C % (dc->attention_downsample_rate * dc->num_attention_heads) != 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "mask_decoder_config: hidden_size %d must be a multiple of 8 and of "
                 "attention_downsample_rate x num_attention_heads (%d x %d)", C,
                 dc->attention_downsample_rate, dc->num_attention_heads);
    return FALSE;
  }
  m->decoder_dim = C;
  m->n_mask_tokens = dc->num_multimask_outputs + 1;
  m->obj_score_token = sam2_bindv (b, 2, (int[]) { 1, C }, "%s.obj_score_token.weight", P);
  m->iou_token = sam2_bindv (b, 2, (int[]) { 1, C }, "%s.iou_token.weight", P);
  m->mask_tokens = sam2_bindv (b, 2, (int[]) { m->n_mask_tokens, C }, "%s.mask_tokens.weight", P);

  m->n_two_way = dc->num_hidden_layers;
  m->two_way = sam2_binder_alloc0 (b, sizeof (Sam2TwoWayBlock) * m->n_two_way);
  for (int i = 0; i < m->n_two_way; i++) {
    Sam2TwoWayBlock *t = &m->two_way[i];
    char *prefix = g_strdup_printf ("%s.transformer.layers.%d", P, i);
    char *name;
    t->skip_first_layer_pe = i == 0;
    name = g_strconcat (prefix, ".self_attn", NULL);
    bind_attention (b, &t->self_attn, C, 1, dc->num_attention_heads, name);
    g_free (name);
    name = g_strconcat (prefix, ".cross_attn_token_to_image", NULL);
    bind_attention (b, &t->cross_token_to_image, C, dc->attention_downsample_rate,
                    dc->num_attention_heads, name);
    g_free (name);
    name = g_strconcat (prefix, ".cross_attn_image_to_token", NULL);
    bind_attention (b, &t->cross_image_to_token, C, dc->attention_downsample_rate,
                    dc->num_attention_heads, name);
    g_free (name);
    sam2_bind_layer_norm (b, &t->norm1, C, TORCH_LAYER_NORM_EPS, "%s.layer_norm1", prefix);
    sam2_bind_layer_norm (b, &t->norm2, C, TORCH_LAYER_NORM_EPS, "%s.layer_norm2", prefix);
    sam2_bind_layer_norm (b, &t->norm3, C, TORCH_LAYER_NORM_EPS, "%s.layer_norm3", prefix);
    sam2_bind_layer_norm (b, &t->norm4, C, TORCH_LAYER_NORM_EPS, "%s.layer_norm4", prefix);
    /* Sam2FeedForward's default activation (relu) and, as in the reference, as many layers as
     * the transformer has blocks. */
    sam2_bind_mlp (b, &t->mlp, C, dc->mlp_dim, C, dc->num_hidden_layers, SAM2_ACT_RELU, FALSE,
                   "%s.mlp", prefix);
    g_free (prefix);
  }
  bind_attention (b, &m->final_attn, C, dc->attention_downsample_rate, dc->num_attention_heads,
                  "mask_decoder.transformer.final_attn_token_to_image");
  sam2_bind_layer_norm (b, &m->final_norm, C, TORCH_LAYER_NORM_EPS,
                        "%s.transformer.layer_norm_final_attn", P);

  bind_upscale (b, &m->upscale1, C, C / 4, "mask_decoder.upscale_conv1");
  bind_upscale (b, &m->upscale2, C / 4, C / 8, "mask_decoder.upscale_conv2");
  sam2_bind_layer_norm (b, &m->upscale_norm, C / 4, SAM2_LAYER_NORM_EPS, "%s.upscale_layer_norm", P);

  m->hyper_mlps = sam2_binder_alloc0 (b, sizeof (Sam2Mlp) * m->n_mask_tokens);
  for (int i = 0; i < m->n_mask_tokens; i++)
    sam2_bind_mlp (b, &m->hyper_mlps[i], C, C, C / 8, 3, SAM2_ACT_RELU, FALSE,
                   "%s.output_hypernetworks_mlps.%d", P, i);
  sam2_bind_mlp (b, &m->iou_head, C, dc->iou_head_hidden_dim, m->n_mask_tokens,
                 dc->iou_head_depth, SAM2_ACT_RELU, TRUE, "%s.iou_prediction_head", P);
  sam2_bind_mlp (b, &m->obj_score_head, C, C, 1, 3, SAM2_ACT_RELU, FALSE,
                 "%s.pred_obj_score_head", P);
  if (dc->iou_head_depth < 2 || dc->num_hidden_layers < 2) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "mask_decoder_config: iou_head_depth (%d) and num_hidden_layers (%d) must be at "
                 "least 2 (they also size two-layer MLPs)", dc->iou_head_depth,
                 dc->num_hidden_layers);
    return FALSE;
  }
  return TRUE;
}

/* Sam2FeedForward on M rows, after x = norm (x) in place when `norm` is not NULL (an MLP of
 * two layers or more); `a` and `b2` are scratch of M x widest layer. Output to `out`, plus
 * `residual` (M x out, may be `out` or x) when not NULL, added by the last layer. */
static int
mlp_forward (Sam2Session *s, const Sam2Mlp *mlp, const Sam2LayerNorm *norm, float *x, int M,
             float *a, float *b2, float *out, const float *residual)
{
  Sam2Backend *b = s->backend;
  g_return_val_if_fail (norm == NULL || mlp->n_layers >= 2, SAM2_STATUS_UNSUPPORTED);
  const float *in = x;
  float *bufs[2] = { a, b2 };
  for (int i = 0; i < mlp->n_layers; i++) {
    const gboolean last = i == mlp->n_layers - 1;
    float *y = last ? out : bufs[i % 2];
    const Sam2Act act = last ? SAM2_ACT_NONE : mlp->act;
    if (i == 0 && norm != NULL)
      CHECK (sam2_session_norm_sum_linear (s, norm, &mlp->layers[0], x, NULL, M, act, NULL, y));
    else
      CHECK (sam2_session_linear (s, &mlp->layers[i], in, M, y, act, last ? residual : NULL));
    in = y;
  }
  if (mlp->sigmoid_output)
    CHECK (b->ops->activation (b, SAM2_ACT_SIGMOID, out,
                               (size_t) M * mlp->layers[mlp->n_layers - 1].out_features));
  return SAM2_STATUS_OK;
}

/* The attention and o_proj of Sam2Attention on projected Q (Lq, D), K and V (Lk, D), rows
 * q_ld, k_ld and v_ld floats apart: out (Lq, C) = o_proj(...) + residual (Lq, C; the residual
 * connection, may be `out` itself), or without one when `residual` is NULL. O (Lq, D) holds the
 * attention's output where the backend does not pass it to o_proj in a form of its own. */
static int
attention_projected_ld (Sam2Session *s, const Sam2DecoderAttention *a, const float *Q, int q_ld,
                        int len_q, const float *K, int k_ld, const float *V, int v_ld, int len_k,
                        float *O, float *out, const float *residual)
{
  const int D = a->internal_dim, hd = D / a->heads;
  Sam2AttentionArgs args = {
    .batch = 1, .heads = a->heads, .head_dim = hd, .len_q = len_q, .len_k = len_k,
    .scale = 1.0f / sqrtf ((float) hd),
    .q = Q, .q_ld = q_ld, .k = K, .k_ld = k_ld, .v = V, .v_ld = v_ld, .out = O, .out_ld = D,
  };
  return sam2_session_attention_linear (s, &args, &a->o_proj, out, residual);
}

/* The same with Q, K and V packed (ld D each). */
static int
attention_projected (Sam2Session *s, const Sam2DecoderAttention *a, const float *Q, int len_q,
                     const float *K, const float *V, int len_k, float *O, float *out,
                     const float *residual)
{
  const int D = a->internal_dim;
  return attention_projected_ld (s, a, Q, D, len_q, K, D, V, D, len_k, O, out, residual);
}

/* Sam2Attention from projected Q (Lq, D): out (Lq, C) = o_proj(attn(Q, k_proj(k), v_proj(v))) +
 * residual (none when NULL). */
static int
attention_kv_forward (Sam2Session *s, const Sam2DecoderAttention *a, const float *Q, int len_q,
                      const float *k, const float *v, int len_k, float *K, float *V, float *O,
                      float *out, const float *residual)
{
  CHECK (sam2_session_linear (s, &a->k_proj, k, len_k, K, SAM2_ACT_NONE, NULL));
  CHECK (sam2_session_linear (s, &a->v_proj, v, len_k, V, SAM2_ACT_NONE, NULL));
  return attention_projected (s, a, Q, len_q, K, V, len_k, O, out, residual);
}

/* Sam2Attention: out (Lq, C) = o_proj(attn(q_proj(q), k_proj(k), v_proj(v))) + residual (none
 * when NULL). */
static int
attention_forward (Sam2Session *s, const Sam2DecoderAttention *a, const float *q, int len_q,
                   const float *k, const float *v, int len_k, float *Q, float *K, float *V,
                   float *O, float *out, const float *residual)
{
  CHECK (sam2_session_linear (s, &a->q_proj, q, len_q, Q, SAM2_ACT_NONE, NULL));
  return attention_kv_forward (s, a, Q, len_q, k, v, len_k, K, V, O, out, residual);
}

int
sam2_mask_decoder_prepare_image (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, HW = m->feat_h[2] * m->feat_w[2];
  if (m->n_two_way == 0)
    return SAM2_STATUS_OK;
  const Sam2TwoWayBlock *t = &m->two_way[0];
  CHECK (b->ops->add_row (b, d->image_keys, s->features[2], s->no_mask_dev, HW, C));
  CHECK (b->ops->add (b, d->keys_pe, d->image_keys, s->image_pe, (size_t) HW * C));
  CHECK (sam2_session_linear (s, &t->cross_token_to_image.k_proj, d->keys_pe, HW, d->image_k,
                              SAM2_ACT_NONE, NULL));
  CHECK (sam2_session_linear (s, &t->cross_token_to_image.v_proj, d->image_keys, HW, d->image_v,
                              SAM2_ACT_NONE, NULL));
  return sam2_session_linear (s, &t->cross_image_to_token.q_proj, d->keys_pe, HW, d->image_q,
                              SAM2_ACT_NONE, NULL);
}

/* The self-attention of two-way layer l on the T token rows (queries), in place: with the q / k
 * (/ v) projections stacked into one layer (session.h's stacks) unless an observer needs each
 * layer's input. The first layer (skip_first_layer_pe) replaces the tokens by their attention:
 * no residual, no pe, and its input is the uploaded tokens themselves (d->token_pe, which
 * sam2_mask_decoder_run then does not copy into the queries). */
static int
self_attention (Sam2Session *s, int l, int T)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  Sam2DecoderBuffers *d = &s->dec;
  const Sam2TwoWayBlock *t = &m->two_way[l];
  const Sam2DecoderAttention *a = &t->self_attn;
  const int C = m->decoder_dim, D = a->internal_dim;
  float *queries = d->tokens, *tmp = d->tmp_tokens;
  const Sam2Linear *qkv = &s->stacks.self_qkv[l];
  const gboolean pe = !t->skip_first_layer_pe;
  const float *in = !pe && l == 0 ? d->token_pe : queries;
  if (qkv->out_features == 0 || s->observer != NULL) {
    const float *qk_in = in;
    if (pe) {
      CHECK (b->ops->add (b, tmp, queries, d->token_pe, (size_t) T * C));
      qk_in = tmp;
    }
    return attention_forward (s, a, qk_in, T, qk_in, in, T, d->q_small, d->k_small, d->v_small,
                              d->o_small, queries, pe ? queries : NULL);
  }
  const int ld = qkv->out_features;   /* 3 D without pe (v stacked too), else 2 D */
  if (pe)
    CHECK (sam2_session_norm_sum_linear (s, NULL, qkv, queries, d->token_pe, T, SAM2_ACT_NONE, tmp,
                                         d->qkv_small));
  else
    CHECK (sam2_session_linear (s, qkv, in, T, d->qkv_small, SAM2_ACT_NONE, NULL));
  const float *V = d->qkv_small + 2 * D;
  int v_ld = ld;
  if (pe) {
    CHECK (sam2_session_linear (s, &a->v_proj, queries, T, d->v_small, SAM2_ACT_NONE, NULL));
    V = d->v_small;
    v_ld = D;
  }
  return attention_projected_ld (s, a, d->qkv_small, ld, T, d->qkv_small + D, ld, V, v_ld, T,
                                 d->o_small, queries, pe ? queries : NULL);
}

/* The final keys' stacked projection (session.h's stacks), or NULL where it is not built or an
 * observer must see each layer's input. */
static const Sam2Linear *
upscale_v_stack (Sam2Session *s)
{
  return s->stacks.upscale_v.out_features > 0 && s->observer == NULL ? &s->stacks.upscale_v
                                                                     : NULL;
}

/* Layer l's stacked projection of the image keys + pe (token-to-image k, image-to-token q;
 * session.h's stacks), or NULL where it is not built or an observer must see each layer's
 * input. */
static const Sam2Linear *
image_kq_stack (Sam2Session *s, int l)
{
  return s->stacks.image_kq != NULL && s->stacks.image_kq[l].out_features > 0
             && s->observer == NULL
           ? &s->stacks.image_kq[l]
           : NULL;
}

/* `image_cached`: the first block's image side is d->image_k / image_v / image_q (no mask
 * prompt: d->keys then starts as d->image_keys). */
static int
two_way_transformer (Sam2Session *s, int T, gboolean image_cached)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, HW = m->feat_h[2] * m->feat_w[2];
  float *queries = d->tokens, *qpe = d->token_pe, *tmp = d->tmp_tokens;
  /* the last layer's norm4 of the keys, applied where the keys are next read: inside their two
   * projections where the backend has one pass for both (sam2_session_norm_linear_pair) */
  const Sam2LayerNorm *keys_norm = NULL;

  for (int l = 0; l < m->n_two_way; l++) {
    const Sam2TwoWayBlock *t = &m->two_way[l];
    CHECK (self_attention (s, l, T));

    /* tokens attend to the image: q_proj (norm1 (tokens) + pe), the norm in place */
    const gboolean cached = image_cached && l == 0;
    const Sam2DecoderAttention *t2i = &t->cross_token_to_image;
    const Sam2Linear *kq = image_kq_stack (s, l);
    CHECK (sam2_session_norm_sum_linear (s, &t->norm1, &t2i->q_proj, queries, qpe, T,
                                         SAM2_ACT_NONE, tmp, d->q_small));
    if (cached) {
      CHECK (attention_projected (s, t2i, d->q_small, T, d->image_k, d->image_v, HW, d->o_small,
                                  queries, queries));
    } else if (kq != NULL) {
      /* K here and the image-to-token attention's Q below, side by side in big_k, from the keys
       * + pe (which the backend may not write into keys_pe: nothing else reads them), and V */
      CHECK (sam2_session_norm_linear_pair (s, keys_norm, d->keys, s->image_pe, HW, d->keys_pe,
                                            kq, d->big_k, &t2i->v_proj, d->big_v));
      const int D = t2i->internal_dim;
      CHECK (attention_projected_ld (s, t2i, d->q_small, D, T, d->big_k, kq->out_features,
                                     d->big_v, D, HW, d->o_small, queries, queries));
    } else {
      if (keys_norm != NULL)
        CHECK (b->ops->layer_norm (b, keys_norm, d->keys, HW, d->keys));
      CHECK (b->ops->add (b, d->keys_pe, d->keys, s->image_pe, (size_t) HW * C));
      CHECK (attention_kv_forward (s, t2i, d->q_small, T, d->keys_pe, d->keys, HW, d->big_k,
                                   d->big_v, d->o_small, queries, queries));
    }

    /* the MLP of norm2 (tokens) (the norm in place), its residual added by its last layer */
    CHECK (mlp_forward (s, &t->mlp, &t->norm2, queries, T, d->head_a, d->head_b, queries,
                        queries));

    /* the image attends to the tokens: k_proj (norm3 (tokens) + pe), the norm in place, and
     * v_proj (tokens) */
    const Sam2DecoderAttention *i2t = &t->cross_image_to_token;
    const int D = i2t->internal_dim;
    /* the image side's queries: cached per image (the keys are still the image's, no mask
     * prompt; their residual is then read from d->image_keys, so sam2_mask_decoder_run needs no
     * copy of them into d->keys), projected with K above (kq), or here from keys_pe (still
     * keys + pe: the keys change only at this attention's output) */
    const float *Q = d->image_q;
    int q_ld = D;
    if (!cached && kq != NULL) {
      Q = d->big_k + t2i->internal_dim;
      q_ld = kq->out_features;
    } else if (!cached) {
      CHECK (sam2_session_linear (s, &i2t->q_proj, d->keys_pe, HW, d->big_q, SAM2_ACT_NONE,
                                  NULL));
      Q = d->big_q;
    }
    CHECK (sam2_session_norm_sum_linear (s, &t->norm3, &i2t->k_proj, queries, qpe, T,
                                         SAM2_ACT_NONE, tmp, d->k_small));
    CHECK (sam2_session_linear (s, &i2t->v_proj, queries, T, d->v_small, SAM2_ACT_NONE, NULL));
    CHECK (attention_projected_ld (s, i2t, Q, q_ld, HW, d->k_small, D, d->v_small, D, T,
                                   d->big_o, d->keys, cached ? d->image_keys : d->keys));
    keys_norm = &t->norm4;
  }

  /* the final attention: q_proj (tokens + pe), k_proj (keys + pe), v_proj (keys), the latter
   * with the upscaling's first layer (which then finds its output in up1_cols) or alone; the
   * keys normalised in place first (the upscaling reads them too) */
  const Sam2DecoderAttention *fa = &m->final_attn;
  const int D = fa->internal_dim;
  CHECK (sam2_session_norm_sum_linear (s, NULL, &fa->q_proj, queries, qpe, T, SAM2_ACT_NONE,
                                       tmp, d->q_small));
  const Sam2Linear *uv = upscale_v_stack (s);
  CHECK (sam2_session_norm_linear_pair (s, keys_norm, d->keys, s->image_pe, HW, d->keys_pe,
                                        &fa->k_proj, d->big_k, uv != NULL ? uv : &fa->v_proj,
                                        uv != NULL ? d->up1_cols : d->big_v));
  const float *V = uv != NULL ? d->up1_cols + m->upscale1.out_features : d->big_v;
  const int v_ld = uv != NULL ? uv->out_features : D;
  CHECK (attention_projected_ld (s, fa, d->q_small, D, T, d->big_k, D, V, v_ld, HW, d->o_small,
                                 queries, queries));
  return b->ops->layer_norm (b, &m->final_norm, queries, T, queries);
}

/* The tokens of one object into d->token_pe: object score, IoU, mask tokens, then the prompt.
 * Host data reaches the device here, before the graphable part, which copies them into the
 * queries (d->tokens) on the device: one upload (and wait) per object, not two. */
int
sam2_mask_decoder_upload (Sam2Session *s, const float *sparse, int n_sparse)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, nmt = m->n_mask_tokens;
  const int T = 2 + nmt + n_sparse;

  float *host_tokens = d->host_tokens;
  memcpy (host_tokens, m->obj_score_token, sizeof (float) * C);
  memcpy (host_tokens + C, m->iou_token, sizeof (float) * C);
  memcpy (host_tokens + 2 * C, m->mask_tokens, sizeof (float) * nmt * C);
  memcpy (host_tokens + (size_t) (2 + nmt) * C, sparse, sizeof (float) * n_sparse * C);
  /* host_tokens is a staging buffer, next written by the next object's upload, after this
   * object's results were read back (which waits): no need to wait for the copy here */
  if (b->ops->upload_async != NULL)
    return b->ops->upload_async (b, d->token_pe, host_tokens, (size_t) T * C);
  return b->ops->upload (b, d->token_pe, host_tokens, (size_t) T * C);
}

/* Device work only (a run_graph body): every argument is a session buffer or follows from
 * (n_sparse, has_dense) and the model. Writes d->masks and d->head_out (IoU, then the object
 * score). */
int
sam2_mask_decoder_run (Sam2Session *s, int n_sparse, gboolean has_dense)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, nmt = m->n_mask_tokens;
  const int H = m->feat_h[2], W = m->feat_w[2], HW = H * W;
  const int T = 2 + nmt + n_sparse;

  /* the queries start as the uploaded tokens, which stay as their positional part; a first
   * layer without pe reads them there and writes the queries first (self_attention) */
  if (m->n_two_way == 0 || !m->two_way[0].skip_first_layer_pe)
    CHECK (b->ops->copy (b, d->tokens, d->token_pe, (size_t) T * C));
  /* d->keys: the image's keys, with the mask prompt's dense embedding when there is one;
   * without, the first block reads the per-image d->image_keys (and its projections) and
   * writes d->keys first (two_way_transformer), so they are not copied here (HW C floats) */
  if (has_dense)
    CHECK (b->ops->add (b, d->keys, s->features[2], d->dense, (size_t) HW * C));
  else if (m->n_two_way == 0)
    CHECK (b->ops->add_row (b, d->keys, s->features[2], s->no_mask_dev, HW, C));

  CHECK (two_way_transformer (s, T, !has_dense && m->n_two_way > 0));
  sam2_session_emit_tap (s, "decoder.queries", d->tokens, 2, T, C);
  sam2_session_emit_tap (s, "decoder.keys", d->keys, 2, HW, C);

  /* upscaling: ConvTranspose2d as GEMM + depth-to-space, fused with the high-res features and the
   * LayerNorm and GELUs that follow (one pass each on a GPU) */
  const int C4 = C / 4, C8 = C / 8;
  const Sam2Linear *uv = upscale_v_stack (s);   /* then up1_cols holds upscale1's output */
  if (uv == NULL)
    CHECK (sam2_session_linear (s, &m->upscale1, d->keys, HW, d->up1_cols, SAM2_ACT_NONE, NULL));
  CHECK (sam2_session_depth_to_space2x_linear (s, d->up1_cols,
                                               uv != NULL ? uv->out_features : 4 * C4, H, W, C4,
                                               s->features[1], &m->upscale_norm, SAM2_ACT_GELU,
                                               d->up1, &m->upscale2, d->up2_cols));

  /* the hypernetworks as one MLP of block-diagonal layers (session.h's stacks) unless an
   * observer must see each token's layers */
  const gboolean stacked = s->observer == NULL;
  if (stacked && s->stacks.hyper.n_layers > 0)
    CHECK (mlp_forward (s, &s->stacks.hyper, NULL, d->tokens + (size_t) 2 * C, 1, d->head_a,
                        d->head_b, d->hyper, NULL));
  else
    for (int i = 0; i < nmt; i++)
      CHECK (mlp_forward (s, &m->hyper_mlps[i], NULL, d->tokens + (size_t) (2 + i) * C, 1,
                          d->head_a, d->head_b, d->hyper + (size_t) i * C8, NULL));
  /* the masks: the last upscaling step and the product with the hypernetworks' outputs, in one
   * pass where the backend has one (the upscaled map d->up2 then never written) */
  CHECK (sam2_session_depth_to_space2x_matmul (s, d->up2_cols, 4 * C8, 2 * H, 2 * W, C8,
                                               s->features[0], SAM2_ACT_GELU, d->up2, d->hyper,
                                               nmt, d->masks));

  /* both heads into one buffer, read back by one download; the object score at an offset of
   * 256 bytes, the alignment of a buffer of its own (which the kernels may rely on) */
  if (stacked && s->stacks.heads.n_layers > 0) {
    /* both from the first two token rows at once; then the IoU head's own sigmoid */
    CHECK (mlp_forward (s, &s->stacks.heads, NULL, d->tokens, 1, d->head_a, d->head_b,
                        d->head_out, NULL));
    return m->iou_head.sigmoid_output
             ? b->ops->activation (b, SAM2_ACT_SIGMOID, d->head_out, (size_t) nmt)
             : SAM2_STATUS_OK;
  }
  CHECK (mlp_forward (s, &m->iou_head, NULL, d->tokens + C, 1, d->head_a, d->head_b,
                      d->head_out, NULL));
  return mlp_forward (s, &m->obj_score_head, NULL, d->tokens, 1, d->head_a, d->head_b,
                      d->head_out + d->obj_offset, NULL);
}

int
sam2_mask_decoder_read_heads (Sam2Session *s, float *iou_obj)
{
  const Sam2BackendOps *o = s->backend->ops;
  const size_t n = (size_t) s->dec.obj_offset + 1;
  if (o->download_async != NULL)
    return o->download_async (s->backend, iou_obj, s->dec.head_out, n);
  return o->download (s->backend, iou_obj, s->dec.head_out, n);
}

int
sam2_mask_decoder_read_masks (Sam2Session *s, int first_token, int n_tokens, float *masks)
{
  const Sam2Model *m = s->model;
  const size_t ms2 = (size_t) m->mask_size * m->mask_size;
  return s->backend->ops->download (s->backend, masks, s->dec.masks + first_token * ms2,
                                    n_tokens * ms2);
}
