/* decoder-stacks.c: the mask decoder's small linear layers merged into fewer, wider ones.
 *
 * A decoder pass runs once per prompt on a handful of token rows, so on a GPU its time is the
 * number of kernels more than their work. Layers that read the same rows become one layer
 * (their weights stacked: the self-attention's q, k and v projections; the image keys' two
 * projections in a layer that does not cache them), and layers of
 * independent small MLPs that read neighbouring rows become one block-diagonal layer (the four
 * hypernetwork MLPs; the object-score and IoU heads). A stacked layer's output i sums exactly
 * the products of the layer it came from, the other blocks adding zeros, so the results differ
 * from the separate layers only by the order a GEMM picks for the longer sums. The weights are
 * the session's (host memory; a device backend copies them like any layer's). */
#include "session.h"

#include <string.h>

/* Where one source layer's weights go in a stacked layer: rows row .. row + N - 1, columns
 * col .. col + K - 1. */
typedef struct {
  const Sam2Linear *src;
  int row, col;
} Block;

static gboolean
is_float (const Sam2Linear *l)
{
  return l->quant == NULL && l->weight != NULL;
}

/* A layer of n_out x n_in zeros with `blocks` copied in (biases too, zero elsewhere); FALSE, and
 * nothing made, when a source layer is quantized or a block does not fit. */
static gboolean
stack_linear (Sam2DecoderStacks *st, Sam2Linear *out, int n_in, int n_out, const Block *blocks,
              int n_blocks)
{
  gboolean bias = FALSE;
  for (int i = 0; i < n_blocks; i++) {
    const Sam2Linear *l = blocks[i].src;
    if (!is_float (l) || blocks[i].row < 0 || blocks[i].col < 0
        || blocks[i].row + l->out_features > n_out || blocks[i].col + l->in_features > n_in)
      return FALSE;
    bias = bias || l->bias != NULL;
  }
  float *w = g_try_new0 (float, (size_t) n_out * n_in + (bias ? n_out : 0));
  if (w == NULL)
    return FALSE;
  g_ptr_array_add (st->weights, w);
  float *b = bias ? w + (size_t) n_out * n_in : NULL;
  for (int i = 0; i < n_blocks; i++) {
    const Sam2Linear *l = blocks[i].src;
    for (int r = 0; r < l->out_features; r++)
      memcpy (w + (size_t) (blocks[i].row + r) * n_in + blocks[i].col,
              l->weight + (size_t) r * l->in_features, sizeof (float) * l->in_features);
    if (l->bias != NULL)
      memcpy (b + blocks[i].row, l->bias, sizeof (float) * l->out_features);
  }
  out->name = blocks[0].src->name;   /* errors and profiles name the first source layer */
  out->in_features = n_in;
  out->out_features = n_out;
  out->weight = w;
  out->bias = b;
  out->quant = NULL;
  return TRUE;
}

/* An MLP whose layer l is block-diagonal over the MLPs' layers l: MLP j reads columns from
 * in_col[j] of the input row and writes its hidden units next to each other, its output from
 * out_row[j] of a last layer of n_out outputs. The MLPs need the same depth and activation. */
static gboolean
stack_mlps (Sam2DecoderStacks *st, Sam2Mlp *out, const Sam2Mlp *const *mlps, int n,
            const int *in_col, int n_in, const int *out_row, int n_out)
{
  const int depth = mlps[0]->n_layers;
  for (int j = 1; j < n; j++)
    if (mlps[j]->n_layers != depth || mlps[j]->act != mlps[0]->act)
      return FALSE;
  Sam2Linear *layers = g_new0 (Sam2Linear, depth);
  g_ptr_array_add (st->weights, layers);
  Block *blocks = g_newa (Block, n);
  int width = n_in;
  for (int l = 0; l < depth; l++) {
    const gboolean last = l == depth - 1;
    int row = 0, col = 0;   /* where MLP j's hidden units go, and where its input is */
    for (int j = 0; j < n; j++) {
      const Sam2Linear *src = &mlps[j]->layers[l];
      blocks[j] = (Block) { src, last ? out_row[j] : row, l == 0 ? in_col[j] : col };
      row += src->out_features;
      col += src->in_features;
    }
    if (!stack_linear (st, &layers[l], width, last ? n_out : row, blocks, n))
      return FALSE;
    width = row;
  }
  out->n_layers = depth;
  out->layers = layers;
  out->act = mlps[0]->act;
  out->sigmoid_output = FALSE;   /* the caller applies a head's own output activation */
  return TRUE;
}

/* The image keys + pe feed two projections in every layer that does not read them from the
 * per-image cache: the token-to-image k and, after the tokens' attention and MLP (the keys
 * unchanged meanwhile), the image-to-token q. One layer of HW rows instead of two: on a GPU one
 * GEMM and one 16-bit conversion of the keys fewer per layer. */
static void
stack_image_kq (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2DecoderStacks *st = &s->stacks;
  const int C = m->decoder_dim;
  st->image_kq = g_new0 (Sam2Linear, MAX (m->n_two_way, 1));
  g_ptr_array_add (st->weights, st->image_kq);
  for (int l = 0; l < m->n_two_way; l++) {
    const Sam2Linear *k = &m->two_way[l].cross_token_to_image.k_proj;
    const Sam2Linear *q = &m->two_way[l].cross_image_to_token.q_proj;
    const Block blocks[2] = { { k, 0, 0 }, { q, k->out_features, 0 } };
    const int n_out = k->out_features + q->out_features;
    /* the output goes to dec.big_k, (HW, C) */
    if (n_out > C || !stack_linear (st, &st->image_kq[l], C, n_out, blocks, 2))
      st->image_kq[l].out_features = 0;
  }
}

/* The keys after the last two-way layer feed the final attention's v and the upscaling's first
 * layer: one layer of HW rows instead of two (the upscaling's part first, read by the
 * depth-to-space with the stacked row as its stride). */
static void
stack_upscale_v (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2DecoderStacks *st = &s->stacks;
  const Sam2Linear *up = &m->upscale1, *v = &m->final_attn.v_proj;
  const Block blocks[2] = { { up, 0, 0 }, { v, up->out_features, 0 } };
  if (up->in_features != v->in_features
      || !stack_linear (st, &st->upscale_v, up->in_features, up->out_features + v->out_features,
                        blocks, 2))
    st->upscale_v.out_features = 0;
}

void
sam2_decoder_stacks_build (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2DecoderStacks *st = &s->stacks;
  const int C = m->decoder_dim, nmt = m->n_mask_tokens;
  st->weights = g_ptr_array_new_with_free_func (g_free);

  /* hypernetworks: mask token i (row 2 + i of the tokens, contiguous) to row i of `hyper` */
  if (nmt >= 2) {
    const Sam2Mlp **mlps = g_newa (const Sam2Mlp *, nmt);
    int *in_col = g_newa (int, nmt), *out_row = g_newa (int, nmt);
    const int c8 = m->hyper_mlps[0].layers[m->hyper_mlps[0].n_layers - 1].out_features;
    for (int i = 0; i < nmt; i++) {
      mlps[i] = &m->hyper_mlps[i];
      in_col[i] = i * C;
      out_row[i] = i * c8;
    }
    if (!stack_mlps (st, &st->hyper, mlps, nmt, in_col, nmt * C, out_row, nmt * c8))
      st->hyper.n_layers = 0;
  }

  /* heads: the object-score token (row 0) and the IoU token (row 1) to d->head_out's layout,
   * the IoU scores first, the object score at obj_offset */
  {
    const Sam2Mlp *mlps[2] = { &m->obj_score_head, &m->iou_head };
    const int in_col[2] = { 0, C }, out_row[2] = { s->dec.obj_offset, 0 };
    if (!stack_mlps (st, &st->heads, mlps, 2, in_col, 2 * C, out_row, s->dec.obj_offset + 1))
      st->heads.n_layers = 0;
  }

  /* self-attention: q and k read the same rows (queries + pe), and v too in a layer without
   * pe; Q, K (and V) side by side in one output row */
  st->self_qkv = g_new0 (Sam2Linear, MAX (m->n_two_way, 1));
  g_ptr_array_add (st->weights, st->self_qkv);
  for (int l = 0; l < m->n_two_way; l++) {
    const Sam2DecoderAttention *a = &m->two_way[l].self_attn;
    const int D = a->internal_dim;
    const Block blocks[3] = {
      { &a->q_proj, 0, 0 }, { &a->k_proj, D, 0 }, { &a->v_proj, 2 * D, 0 },
    };
    const int n = m->two_way[l].skip_first_layer_pe ? 3 : 2;
    /* the output goes to dec.qkv_small, (n_tokens_max, 3 C) */
    if (n * D > 3 * C || !stack_linear (st, &st->self_qkv[l], C, n * D, blocks, n))
      st->self_qkv[l].out_features = 0;
  }
  stack_image_kq (s);
  stack_upscale_v (s);
}

void
sam2_decoder_stacks_clear (Sam2Session *s)
{
  g_clear_pointer (&s->stacks.weights, g_ptr_array_unref);
  memset (&s->stacks, 0, sizeof s->stacks);
}
