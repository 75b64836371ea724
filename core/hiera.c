/* hiera.c: the Hiera trunk (Sam2HieraDetModel): patch embedding, windowed positional embedding,
 * multi-scale blocks with windowed / global attention and query pooling at stage starts. */
#include "binder.h"
#include "session.h"

#include <math.h>

#define CHECK(expr)                                                                              \
  do {                                                                                           \
    int status_ = (expr);                                                                        \
    if (status_ != SAM2_STATUS_OK)                                                               \
      return status_;                                                                            \
  } while (0)

static gboolean
is_global_block (const Sam2HieraConfig *c, int index)
{
  for (int i = 0; i < c->n_global_attention_blocks; i++)
    if (c->global_attention_blocks[i] == index)
      return TRUE;
  return FALSE;
}

/* torch's cubic convolution coefficients (A = -0.75), upsample_bicubic2d. */
static void
cubic_coefficients (double t, double coeffs[4])
{
  const double A = -0.75;
  double x;
  x = t + 1.0;
  coeffs[0] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
  x = t;
  coeffs[1] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
  x = 1.0 - t;
  coeffs[2] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
  x = 2.0 - t;
  coeffs[3] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
}

/* F.interpolate(pos_embed, size=(h, w), mode="bicubic", align_corners=False) of a (C, bh, bw)
 * map, plus the window embedding (C, ws, ws) tiled, as (h * w, C) rows. In double: the model
 * input of every frame gets this added, so it is worth computing once and exactly. */
static void
build_pos_embed (const float *bkg, int C, int bh, int bw, const float *win, int ws, int h, int w,
                 float *out)
{
  const double sy = (double) bh / h, sx = (double) bw / w;
  for (int y = 0; y < h; y++) {
    double ry = sy * (y + 0.5) - 0.5;
    int iy = (int) floor (ry);
    double cy[4];
    cubic_coefficients (ry - iy, cy);
    for (int x = 0; x < w; x++) {
      double rx = sx * (x + 0.5) - 0.5;
      int ix = (int) floor (rx);
      double cx[4];
      cubic_coefficients (rx - ix, cx);
      for (int c = 0; c < C; c++) {
        const float *plane = bkg + (size_t) c * bh * bw;
        double acc = 0.0;
        for (int j = 0; j < 4; j++) {
          int yy = CLAMP (iy - 1 + j, 0, bh - 1);
          double row = 0.0;
          for (int i = 0; i < 4; i++) {
            int xx = CLAMP (ix - 1 + i, 0, bw - 1);
            row += cx[i] * plane[yy * bw + xx];
          }
          acc += cy[j] * row;
        }
        acc += win[((size_t) c * ws + y % ws) * ws + x % ws];
        out[((size_t) y * w + x) * C + c] = (float) acc;
      }
    }
  }
}

/* Geometry of block `blk` given its input grid; FALSE when the reference could not run it. */
static gboolean
block_geometry (Sam2HieraBlock *blk, int in_h, int in_w, GError **error)
{
  blk->in_h = in_h;
  blk->in_w = in_w;
  blk->out_h = in_h / blk->q_stride;
  blk->out_w = in_w / blk->q_stride;
  if (blk->out_h < 1 || blk->out_w < 1) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "Hiera block %d: query pooling by %d of a %dx%d token grid leaves nothing; the "
                 "image is too small for this many pooling stages", blk->index, blk->q_stride,
                 in_h, in_w);
    return FALSE;
  }
  if (blk->window == 0) {
    blk->n_seq = 1;
    blk->len_k = in_h * in_w;
    blk->len_q = blk->out_h * blk->out_w;
    return TRUE;
  }
  const int ws = blk->window;
  blk->n_win_h = (in_h + ws - 1) / ws;
  blk->n_win_w = (in_w + ws - 1) / ws;
  blk->out_window = ws / blk->q_stride;
  blk->n_seq = blk->n_win_h * blk->n_win_w;
  blk->len_k = ws * ws;
  blk->len_q = blk->out_window * blk->out_window;
  if (blk->out_window < 1 || (blk->out_h + blk->out_window - 1) / blk->out_window != blk->n_win_h
      || (blk->out_w + blk->out_window - 1) / blk->out_window != blk->n_win_w) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "Hiera block %d: window %d with query stride %d on a %dx%d grid does not tile "
                 "the pooled %dx%d grid; the reference model cannot run this configuration "
                 "either", blk->index, ws, blk->q_stride, in_h, in_w, blk->out_h, blk->out_w);
    return FALSE;
  }
  return TRUE;
}

gboolean
sam2_hiera_bind (Sam2Binder *b, GError **error)
{
  Sam2Model *m = b->model;
  const Sam2HieraConfig *c = &m->config.vision.backbone;
  const char *P = "vision_encoder.backbone";
  const int C0 = c->hidden_size;

  if (c->image_size[0] != c->image_size[1]) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "backbone image_size %dx%d is not square; SAM2's prompt encoder and mask "
                 "decoder assume a square input", c->image_size[0], c->image_size[1]);
    return FALSE;
  }
  if (c->query_stride[0] != c->query_stride[1]) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "query_stride [%d, %d] is not square; the reference unpartitions windows with "
                 "query_stride[0] on both axes", c->query_stride[0], c->query_stride[1]);
    return FALSE;
  }
  m->image_size = c->image_size[0];
  const int kh = c->patch_kernel_size[0], kw = c->patch_kernel_size[1];
  if (c->patch_stride[0] != c->patch_stride[1] || c->patch_padding[0] != c->patch_padding[1]) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "patch_stride and patch_padding must be equal on both axes");
    return FALSE;
  }
  m->patch_h = (m->image_size + 2 * c->patch_padding[0] - kh) / c->patch_stride[0] + 1;
  m->patch_w = (m->image_size + 2 * c->patch_padding[1] - kw) / c->patch_stride[1] + 1;

  sam2_bind_conv (b, &m->patch_embed, c->num_channels, C0, kh, kw, "%s.patch_embed.projection", P);
  const int bh = c->window_pos_embed_bkg_size[0], bw = c->window_pos_embed_bkg_size[1];
  const int ws0 = c->window_size_per_stage[0];
  const float *bkg = sam2_bindv (b, 4, (int[]) { 1, C0, bh, bw }, "%s.pos_embed", P);
  const float *win = sam2_bindv (b, 4, (int[]) { 1, C0, ws0, ws0 }, "%s.pos_embed_window", P);

  m->n_stages = c->n_stages;
  m->n_blocks = 0;
  for (int s = 0; s < c->n_stages; s++)
    m->n_blocks += c->blocks_per_stage[s];
  m->blocks = sam2_binder_alloc0 (b, sizeof (Sam2HieraBlock) * m->n_blocks);

  int index = 0;
  for (int s = 0; s < c->n_stages; s++) {
    for (int j = 0; j < c->blocks_per_stage[s]; j++, index++) {
      Sam2HieraBlock *blk = &m->blocks[index];
      const gboolean first = s > 0 && j == 0;
      blk->index = index;
      blk->stage = s;
      blk->dim = first ? c->embed_dim_per_stage[s - 1] : c->embed_dim_per_stage[s];
      blk->dim_out = c->embed_dim_per_stage[s];
      blk->heads = c->num_attention_heads_per_stage[s];
      blk->head_dim = blk->dim_out / blk->heads;
      /* the first block of a stage still attends in the previous stage's windows */
      blk->window = first ? c->window_size_per_stage[s - 1] : c->window_size_per_stage[s];
      if (is_global_block (c, index))
        blk->window = 0;
      blk->q_stride = (first && s <= c->num_query_pool_stages) ? c->query_stride[0] : 1;
      blk->has_skip_proj = blk->dim != blk->dim_out;

      const int hidden = (int) (blk->dim_out * c->mlp_ratio);
      sam2_bind_layer_norm (b, &blk->norm1, blk->dim, c->layer_norm_eps, "%s.blocks.%d.layer_norm1",
                            P, index);
      sam2_bind_linear (b, &blk->qkv, blk->dim, 3 * blk->dim_out, "%s.blocks.%d.attn.qkv", P,
                        index);
      sam2_bind_linear (b, &blk->attn_proj, blk->dim_out, blk->dim_out, "%s.blocks.%d.attn.proj",
                        P, index);
      sam2_bind_layer_norm (b, &blk->norm2, blk->dim_out, c->layer_norm_eps,
                            "%s.blocks.%d.layer_norm2", P, index);
      sam2_bind_mlp (b, &blk->mlp, blk->dim_out, hidden, blk->dim_out, 2, c->hidden_act, FALSE,
                     "%s.blocks.%d.mlp", P, index);
      if (blk->has_skip_proj)
        sam2_bind_linear (b, &blk->skip_proj, blk->dim, blk->dim_out, "%s.blocks.%d.proj", P,
                          index);
      else if (blk->q_stride > 1) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                     "Hiera block %d pools queries but keeps %d channels: the reference adds the "
                     "unpooled residual to the pooled output and cannot run this configuration",
                     index, blk->dim);
        return FALSE;
      }
    }
    m->stage_end[s] = index - 1;
  }
  if (sam2_binder_failed (b))
    return TRUE; /* the binder error is reported by the caller */

  int h = m->patch_h, w = m->patch_w;
  for (int i = 0; i < m->n_blocks; i++) {
    Sam2HieraBlock *blk = &m->blocks[i];
    if (!block_geometry (blk, h, w, error))
      return FALSE;
    h = blk->out_h;
    w = blk->out_w;
    m->stage_h[blk->stage] = h;
    m->stage_w[blk->stage] = w;
    m->stage_dim[blk->stage] = blk->dim_out;
  }

  if (m->patch_h % ws0 != 0 || m->patch_w % ws0 != 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "the %dx%d patch grid is not a multiple of the first window size %d, so the "
                 "window positional embedding cannot be tiled over it (the reference fails too)",
                 m->patch_h, m->patch_w, ws0);
    return FALSE;
  }
  m->pos_embed = sam2_binder_alloc (b, (size_t) m->patch_h * m->patch_w * C0);
  build_pos_embed (bkg, C0, bh, bw, win, ws0, m->patch_h, m->patch_w, m->pos_embed);
  return TRUE;
}

/* Scratch layout of one block for `nb` images, in floats, shared by the planner and the forward
 * pass, for a backend whose attention pass leaves `spares` (backend.h's Sam2PassSpares) of the
 * ops' buffers unused, or (observed) for an observer's pass (no spares, the MLP's rows whole).
 * Every part holds the images one after another and starts on a 256-byte boundary. Parts whose
 * contents are never live at the same time share space (block_forward's order):
 *   norm      LN (x): read by qkv (via the windows) and, at stage starts, the skip projection
 *             after the attention; then reused by the MLP half's LayerNorm;
 *   windows   the window partition of norm, dead once qkv has read it;
 *   attn      the attention's output, born after qkv's GEMM: so windows and attn share one part;
 *   qkv, q    qkv's output and the pooled q, read by the attention (in halves where the backend
 *             holds them in 16 bits);
 *   proj      attn's projection, born after the attention, which is qkv's and q's last reader:
 *             it shares qkv's part;
 *   skip      the skip projection at stage starts, made after the attention (its input, norm,
 *             lives on) and dead once max-pooled into the block's output: in qkv's part after
 *             proj;
 *   hidden    the MLP's hidden rows (of mlp_chunk_rows rows), after norm (the attention half
 *             is over). */
typedef struct {
  size_t norm, windows, qkv, q, attn, proj, skip, hidden;
  size_t total;
} BlockScratch;

/* The MLP's hidden rows per pass of the MLP half: at most MLP_HIDDEN_CHUNK floats (32 MiB), so
 * that they are not the largest part of the scratch (tiny's first stage: 4 passes of 16384 rows
 * instead of 65536 rows' 100 MB); whole under an observer, which sees each layer's input as one
 * call. */
#define MLP_HIDDEN_CHUNK ((size_t) 8 << 20)

/* Rows per MLP pass of a block on `rows` rows (sam2_rows_per_pass). */
static int
mlp_chunk_rows (const Sam2HieraBlock *blk, int rows, gboolean observed)
{
  return observed ? rows
                  : sam2_rows_per_pass (rows, (size_t) blk->mlp.layers[0].out_features,
                                        MLP_HIDDEN_CHUNK);
}

static BlockScratch
block_scratch_layout (const Sam2HieraBlock *blk, int nb, unsigned spares, gboolean observed)
{
  BlockScratch l = { 0 };
  const gboolean halves = (spares & SAM2_PASS_QKV_HALVES) != 0;
  const size_t tin = (size_t) nb * blk->in_h * blk->in_w;
  const size_t tout = (size_t) nb * blk->out_h * blk->out_w;
  const size_t padded = (size_t) nb * blk->n_seq * blk->len_k;
  const size_t pooled = (size_t) nb * blk->n_seq * blk->len_q;
  l.norm = 0;
  const size_t at = sam2_scratch_part_end (0, MAX (tin * blk->dim, tout * blk->dim_out));
  /* attention phase */
  const size_t windows = blk->window > 0 && !halves ? padded * blk->dim : 0;
  const size_t attn = MAX (pooled, tout) * blk->dim_out;
  const size_t attn_out = (spares & SAM2_PASS_NO_ATTENTION_OUT) ? 0 : attn;
  l.windows = l.attn = at;
  l.qkv = l.proj = sam2_scratch_part_end (at, MAX (windows, attn_out));
  l.skip = sam2_scratch_part_end (l.proj, attn);
  const size_t skip = (blk->has_skip_proj && blk->q_stride > 1) ? tin * blk->dim_out : 0;
  const size_t qkv = padded * 3 * blk->dim_out;
  l.q = sam2_scratch_part_end (l.qkv, MAX (halves ? (qkv + 1) / 2 : qkv, l.skip - l.qkv + skip));
  const size_t q = blk->q_stride > 1 ? pooled * blk->dim_out : 0;
  const size_t attention_end = l.q + (halves ? (q + 1) / 2 : q);
  /* MLP phase reuses everything after the norm output */
  l.hidden = at;
  const size_t mlp_rows = (size_t) mlp_chunk_rows (blk, (int) tout, observed);
  const size_t mlp_end = at + mlp_rows * blk->mlp.layers[0].out_features;
  l.total = MAX (attention_end, mlp_end);
  return l;
}

/* The attention's arguments in a block on nb images, q, k and v in qkv's rows (q pooled into
 * q_buf's at stage starts), the output in out's rows; NULL buffers leave their pointers NULL (the
 * geometry alone, for norm_attention_linear_spares). */
static Sam2AttentionArgs
block_attention_args (const Sam2HieraBlock *blk, int nb, const float *qkv, const float *q_buf,
                      float *out)
{
  const int d = blk->dim_out;
  const gboolean pooled = blk->q_stride > 1;
  const int q_ld = pooled ? d : 3 * d;
  return (Sam2AttentionArgs) {
    .batch = nb * blk->n_seq, .heads = blk->heads, .head_dim = blk->head_dim,
    .len_q = blk->len_q, .len_k = blk->len_k, .scale = 1.0f / sqrtf ((float) blk->head_dim),
    .q = pooled ? q_buf : qkv, .q_ld = q_ld, .q_batch_stride = (size_t) blk->len_q * q_ld,
    .k = qkv != NULL ? qkv + d : NULL, .k_ld = 3 * d,
    .k_batch_stride = (size_t) blk->len_k * 3 * d,
    .v = qkv != NULL ? qkv + 2 * d : NULL, .v_ld = 3 * d,
    .v_batch_stride = (size_t) blk->len_k * 3 * d,
    .out = out, .out_ld = d, .out_batch_stride = (size_t) blk->len_q * d,
  };
}

/* What the backend's attention pass spares of the block's buffers on nb images (0 where it has
 * none). */
static unsigned
block_spares (Sam2Backend *b, const Sam2HieraBlock *blk, int nb)
{
  const Sam2BackendOps *o = b->ops;
  if (o->norm_attention_linear == NULL || o->norm_attention_linear_spares == NULL)
    return 0;
  const Sam2AttentionArgs args = block_attention_args (blk, nb, NULL, NULL, NULL);
  return o->norm_attention_linear_spares (b, blk->has_skip_proj ? NULL : &blk->norm1, &blk->qkv,
                                          nb, blk->in_h, blk->in_w, blk->window, blk->q_stride,
                                          &args, &blk->attn_proj);
}

size_t
sam2_hiera_scratch_floats (const Sam2Model *m, Sam2Backend *b, int max_batch, gboolean observed)
{
  size_t floats = 0;
  for (int i = 0; i < m->n_blocks; i++)
    for (int nb = 1; nb <= max_batch; nb++) {
      const unsigned spares = observed ? 0 : block_spares (b, &m->blocks[i], nb);
      floats = MAX (floats, block_scratch_layout (&m->blocks[i], nb, spares, observed).total);
    }
  return floats;
}

/* One block on s->batch images: the row-wise ops (norms, linears, the residual add) take all
 * images' rows at once, attention takes all their windows (or, global, one sequence each) as
 * its batch; only the window (un)partition is per image. */
static int
block_forward (Sam2Session *s, const Sam2HieraBlock *blk, const float *x, float *S, float *out)
{
  Sam2Backend *b = s->backend;
  const Sam2BackendOps *o = b->ops;
  const int nb = s->batch;
  /* an observer sees each layer's input: the ops run, in their own buffers */
  const gboolean observed = s->observer != NULL;
  const unsigned spares = observed ? 0 : block_spares (b, blk, nb);
  const BlockScratch l = block_scratch_layout (blk, nb, spares, observed);
  float *norm = S + l.norm;
  const int tin = blk->in_h * blk->in_w, tout = blk->out_h * blk->out_w;
  const int d = blk->dim_out;

  /* residual: the input itself, or its projection (pooled at stage starts) written to `out`
   * after the attention, where its temporary can lie in qkv's dead part */
  const float *residual = blk->has_skip_proj ? out : x;
  const Sam2LayerNorm *norm1 = &blk->norm1;
  const float *qkv_in = x;
  if (blk->has_skip_proj) {
    /* the projection reads the normalised map too: it is made here, and qkv takes it as it is */
    CHECK (o->layer_norm (b, &blk->norm1, x, nb * tin, norm));
    norm1 = NULL;
    qkv_in = norm;
  }
  /* LayerNorm (unless done above), window partition, qkv, attention and proj, q pooled from
   * qkv's output at stage starts: one pass from the block's input where the backend has one
   * (which must run where it said it spares buffers: they were not made for the ops) */
  const Sam2AttentionArgs args = block_attention_args (blk, nb, S + l.qkv, S + l.q, S + l.attn);
  float *proj = S + l.proj;
  CHECK (sam2_session_norm_attention_linear (s, norm1, &blk->qkv, qkv_in, nb, blk->in_h,
                                             blk->in_w, blk->window, blk->q_stride, norm,
                                             S + l.windows, S + l.qkv, S + l.q, &args,
                                             &blk->attn_proj, proj, spares != 0));
  if (blk->has_skip_proj && blk->q_stride > 1) {
    CHECK (sam2_session_linear (s, &blk->skip_proj, norm, nb * tin, S + l.skip, SAM2_ACT_NONE,
                                NULL));
    CHECK (o->max_pool (b, S + l.skip, nb, blk->in_h, blk->in_w, d, d, blk->q_stride, out));
  } else if (blk->has_skip_proj) {
    CHECK (sam2_session_linear (s, &blk->skip_proj, norm, nb * tin, out, SAM2_ACT_NONE, NULL));
  }

  /* out = residual + the attention branch (residual may be out itself): with windows, in the
   * unpartition's pass */
  if (blk->window > 0) {
    const size_t win_floats = (size_t) blk->n_seq * blk->len_q * d, map = (size_t) tout * d;
    for (int i = 0; i < nb; i++)
      CHECK (o->window_unpartition (b, proj + i * win_floats, blk->n_win_h, blk->n_win_w,
                                    blk->out_window, d, blk->out_h, blk->out_w,
                                    residual + i * map, out + i * map));
  } else {
    CHECK (o->add (b, out, residual, proj, (size_t) nb * tout * d));
  }

  /* MLP with its residual accumulated in place, a chunk of rows at a time (its rows are
   * independent) */
  const int rows = nb * tout, chunk = mlp_chunk_rows (blk, rows, observed);
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    float *y = out + (size_t) r0 * d;
    CHECK (sam2_session_norm_mlp (s, &blk->norm2, &blk->mlp, y, MIN (chunk, rows - r0), norm,
                                  S + l.hidden, y, y));
  }
  return SAM2_STATUS_OK;
}

int
sam2_hiera_forward (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  const Sam2HieraConfig *c = &m->config.vision.backbone;
  Sam2Backend *b = s->backend;
  const int tokens = m->patch_h * m->patch_w;
  const size_t image_floats = sam2_model_image_floats (m);

  /* the patch embedding image by image: its im2col is the largest single-image buffer, and the
   * positional embedding is added as the GEMM's residual, which is one image's rows */
  for (int i = 0; i < s->batch; i++) {
    CHECK (b->ops->im2col_planar (b, s->pixels + i * image_floats, c->num_channels,
                                  m->image_size, m->image_size, c->patch_kernel_size[0],
                                  c->patch_kernel_size[1], c->patch_stride[0],
                                  c->patch_padding[0], s->patch_cols));
    CHECK (sam2_session_linear_one_image (s, &m->patch_embed, s->patch_cols, tokens,
                                          s->stage_x[0] + (size_t) i * tokens * c->hidden_size,
                                          SAM2_ACT_NONE, s->pos_embed_dev));
  }
  sam2_session_emit_map_tap (s, "patch_embed+pos", s->stage_x[0], m->patch_h, m->patch_w,
                             c->hidden_size);

  float *scratch;
  CHECK (sam2_session_block_scratch (s, &scratch));
  for (int i = 0; i < m->n_blocks; i++) {
    const Sam2HieraBlock *blk = &m->blocks[i];
    const float *x = blk->stage > 0 && i == m->stage_end[blk->stage - 1] + 1
                         ? s->stage_x[blk->stage - 1]
                         : s->stage_x[blk->stage];
    CHECK (block_forward (s, blk, x, scratch, s->stage_x[blk->stage]));
    char name[64];
    g_snprintf (name, sizeof name, "blocks.%d", i);
    sam2_session_emit_map_tap (s, name, s->stage_x[blk->stage], blk->out_h, blk->out_w,
                               blk->dim_out);
  }
  return SAM2_STATUS_OK;
}
