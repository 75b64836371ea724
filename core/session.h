/* session.h: per-stream state. Every buffer a forward pass touches is allocated here once, from
 * sizes the model's geometry gives, so running a frame allocates nothing. They also never move
 * while the session lives: the CUDA backend's graphs keep the pointers they were captured with. */
#ifndef SAM2_SESSION_H
#define SAM2_SESSION_H

#include "backend.h"
#include "image.h"

G_BEGIN_DECLS

/* Debug / test hook: called with every named intermediate (channels-last; host memory: on a device
 * backend the session downloads each one first). */
typedef void (*Sam2TapFunc) (gpointer user_data, const char *name, const float *data, int ndim,
                             const int *shape);

/* Sees the input of every linear layer before it runs (calibration observers). x is backend
 * memory, (M, l->in_features). An observer set with sam2_session_set_observer reads it on the
 * host, so it needs a host-memory backend (on a device backend the linear op fails with
 * SAM2_STATUS_UNSUPPORTED); one set with backend_memory TRUE hands it to the backend's stats
 * ops (backend.h) and works on any backend. */
typedef void (*Sam2LinearObserver) (gpointer user_data, const Sam2Linear *l, const float *x, int M);

/* Buffers of the mask decoder for one object. */
/* Calls in a row needing under a quarter of the frame-mask buffer after which it shrinks to the
 * need (sam2_session_predict with frame masks). */
#define SAM2_RES_MASKS_SHRINK_CALLS 64

typedef struct {
  float *tokens;               /* (n_tokens_max, C) queries */
  float *token_pe;             /* (n_tokens_max, C) the prompt tokens, their "positional" part */
  float *tmp_tokens;           /* (n_tokens_max, C) */
  float *q_small, *k_small, *v_small, *o_small; /* (n_tokens_max, C) projections of tokens */
  float *qkv_small;            /* (n_tokens_max, 3 C) stacked self-attention projections */
  /* keys .. big_o, dense, mask_cols .. mask_b, up1_cols .. up2 and masks live within one
   * decode call: parts of the session's block_scratch */
  float *keys;                 /* (HW, C) image side */
  float *keys_pe;              /* (HW, C) keys + image_pe */
  float *big_q;                /* (HW, C) projections of the image side */
  float *big_k;
  float *big_v;
  float *big_o;
  /* The first two-way block's image side without a mask prompt depends on the image alone, so
   * the encoder computes it once per image (sam2_mask_decoder_prepare_image) and every object's
   * pass starts from it: */
  float *image_keys;           /* (HW, C) image embedding + the no-mask dense embedding */
  float *image_k, *image_v;    /* (HW, D) token-to-image k_proj(keys + pe), v_proj(keys) */
  float *image_q;              /* (HW, D) image-to-token q_proj(keys + pe) */
  float *dense;                /* (HW, C) dense prompt embedding when a mask is given */
  float *mask_cols;            /* im2col of the mask input (mask_size^2 / 4, 4) */
  float *mask_a, *mask_b;      /* mask embedding intermediates */
  float *up1_cols;             /* (HW, 4 * C/4) */
  float *up1;                  /* (4 HW, C/4) */
  float *up2_cols;             /* (4 HW, 4 * C/8) */
  float *up2;                  /* (16 HW, C/8) */
  float *hyper;                /* (n_mask_tokens, C/8) */
  float *masks;                /* (n_mask_tokens, 16 HW) */
  float *head_a, *head_b;      /* (n_tokens_max, widest MLP layer) MLP intermediates */
  float *head_out;             /* (obj_offset + 1) IoU head outputs; object score at obj_offset */
  float *host_tokens;          /* (n_tokens_max, C) host staging of the tokens */
  /* host staging buffers (host_tokens, host_iou, the session's host_pixels, host_features and
   * res_lowres) come from the backend's host_alloc: page-locked on a GPU */
  float *host_sparse;          /* (n_tokens_max, C) prompt tokens of one object */
  float *host_iou;             /* (obj_offset + 1) host copy of head_out */
  float *mask_input;           /* (mask_size^2) a mask prompt, backend memory */
  int max_tokens;              /* n_tokens_max */
  int obj_offset;              /* n_mask_tokens rounded up to 64 floats (256 bytes) */
} Sam2DecoderBuffers;

/* The mask decoder's small layers merged into fewer, wider ones (decoder-stacks.c), so that a
 * decoder pass launches fewer kernels; the same products. Built per session from float layers;
 * a part whose layers are quantized stays empty (n_layers or out_features 0), and the decoder
 * uses none of them while an observer needs each layer's own input. */
typedef struct {
  /* the mask tokens' hypernetwork MLPs, block-diagonal: input the mask tokens' rows read as one
   * row, output one row that is `hyper` (n_mask_tokens, C/8); 3 linears instead of 12 */
  Sam2Mlp hyper;
  /* the object-score and IoU heads, block-diagonal: input the first two token rows as one, output
   * head_out's layout (IoU scores, then the object score at obj_offset), before the IoU head's
   * sigmoid; 3 linears instead of 6 */
  Sam2Mlp heads;
  /* (n_two_way) each layer's self-attention projections of the same rows: q and k, and v in a
   * layer without pe, side by side in one output row (out_features 2 or 3 internal_dim) */
  Sam2Linear *self_qkv;
  /* (n_two_way) each layer's projections of the image keys + pe where they are not cached per
   * image (a layer after the first, or a mask prompt): the token-to-image attention's k and the
   * image-to-token attention's q, side by side in one output row (out_features the two internal
   * dims; 0 where they exceed C, dec.big_k's width) */
  Sam2Linear *image_kq;
  /* the final keys' two projections: the upscaling's first transposed convolution (4 C/4
   * columns) and the final attention's v, side by side in one output row of dec.up1_cols
   * (out_features 0 when not built) */
  Sam2Linear upscale_v;
  GPtrArray *weights;          /* what the above own */
} Sam2DecoderStacks;

struct _Sam2Session {
  Sam2Model *model;
  Sam2Backend *backend;
  Sam2BackendKind backend_kind;  /* resolved: CPU or CUDA */
  Sam2Precision precision;       /* resolved: FP32, FP16 or BF16 */
  char *backend_description;     /* sam2_session_describe_backend */
  float *host_features[3];       /* host staging of `features` on a device backend, else NULL */

  /* ---- image encoder ----
   * A pass encodes `batch` images (1 .. max_batch) stacked along the rows: every buffer below
   * with a leading B holds max_batch images, image i at i times one image's size. */
  int max_batch;
  int batch;                   /* images in the pass running or last run (0: none yet) */
  int selected;                /* the image `features` holds */
  float *pixels;               /* (B, 3, S, S) */
  float *pos_embed_dev;        /* (patch_h * patch_w, hidden) the model's pos_embed on the backend */
  float *no_memory_dev;        /* (fpn_hidden) */
  float *no_mask_dev;          /* (hidden) dense embedding without a mask prompt */
  /* patch_cols, fpn and neck_cols are parts of block_scratch, used before and after the blocks */
  float *patch_cols;           /* (patch_h * patch_w, 3 * kh * kw) of one image */
  float *stage_x[SAM2_MAX_STAGES];   /* (B, stage_h * stage_w, stage_dim) block outputs */
  float *block_scratch;        /* temporaries of one Hiera block (the largest) for B images;
                                  also the patch embedding's and the neck's, and the decoder's
                                  of a decode call (alloc_encoder) */
  size_t block_scratch_floats;
  float *observed_scratch;     /* the blocks' temporaries as the ops need them, where more than
                                  block_scratch: under an observer (NULL until needed) */
  size_t observed_scratch_floats;   /* what the ops' blocks need (alloc_encoder) */
  float *fpn[SAM2_MAX_STAGES]; /* (B, H_i * W_i, fpn_hidden) neck outputs by level */
  float *neck_cols;            /* im2col of one image for neck convs with kernel > 1 */
  float *features[3];          /* feat_s0, feat_s1, image embedding of the selected image */
  /* (B, ...) the neck's outputs of a pass of more than one image, copied into `features` by
   * sam2_session_select_image (the decoder's graphs keep `features`' addresses); NULL when
   * max_batch is 1, and a pass of one image writes `features` directly */
  float *batch_features[3];
  gboolean have_features;

  /* ---- mask decoder ---- */
  Sam2DecoderBuffers dec;
  Sam2DecoderStacks stacks;
  float *image_pe;             /* (HW, C) in backend memory */

  /* ---- frames ---- */
  Sam2Resampler *resampler;
  int frame_width, frame_height;  /* the resampler's (the last frame preprocessed) */
  int (*slot_size)[2];         /* (max_batch) width, height of the frame staged in each input
                                * slot; 0, 0: pixels given preprocessed */
  float *host_pixels;          /* (B, 3, S, S) host staging of the preprocessed frames (device
                                * backends only) */

  /* ---- results (host) ---- */
  Sam2Result result;
  int result_capacity_objects;
  float *res_iou, *res_obj, *res_lowres;
  size_t res_masks_capacity;
  guint8 *res_masks;
  int res_masks_small_calls;   /* calls in a row that needed under a quarter of res_masks */
  Sam2Box *res_boxes;
  size_t res_boxes_capacity;
  float *upsampled;            /* sam2_upsample_threshold's scratch for one mask */
  size_t upsampled_capacity;
  Sam2Prompt *scaled_prompts;  /* frame prompts scaled to the model input */
  Sam2Point *scaled_points;    /* (capacity, SAM2_MAX_POINTS_PER_OBJECT) */
  int scaled_capacity;
  float *mask_prompts;         /* (capacity, mask_size^2): the prompts' mask logits, copied */
  size_t mask_prompts_capacity;  /* floats */

  Sam2TapFunc tap;
  gpointer tap_data;
  Sam2LinearObserver observer;
  gpointer observer_data;
  gboolean observer_backend_memory;  /* the observer takes x in backend memory */
  /* Images whose rows, image after image, a linear call of the running pass spans: s->batch in
   * the encoder's batched layers, 1 elsewhere. The observer sees each image's rows as a call of
   * its own, so calibration statistics do not depend on how frames are batched. */
  int linear_images;
};

/* Internal API used by tests and tools. */
void sam2_session_set_tap (Sam2Session *s, Sam2TapFunc tap, gpointer user_data);
void sam2_session_emit_tap (Sam2Session *s, const char *name, const float *data, int ndim, ...);
void sam2_session_set_observer (Sam2Session *s, Sam2LinearObserver observer, gpointer user_data);
void sam2_session_set_observer_full (Sam2Session *s, Sam2LinearObserver observer,
                                     gpointer user_data, gboolean backend_memory);

/* Image `index` (0 .. max_batch - 1) of the next encoder pass, put into the session's input
 * without running the encoder: a frame preprocessed as sam2_session_set_image does (on the
 * device where the backend resizes frames), or preprocessed (3, S, S) pixels. Frames of
 * different sizes can share a pass; sam2_session_encode_resident then runs it (batched
 * calibration). The last pass's images can no longer be selected afterwards. */
gboolean sam2_session_stage_image (Sam2Session *s, int index, const guint8 *pixels, int width,
                                   int height, int stride, Sam2PixelFormat format,
                                   GError **error);
gboolean sam2_session_stage_pixels (Sam2Session *s, int index, const float *pixel_values,
                                    GError **error);

/* The encoder on the first n images already in s->pixels (backend memory: what the last
 * sam2_session_encode_batch, set_images or stage_* calls put there), without moving pixels:
 * batched calibration runs its staged frames with it, and benchmarks time the encoder alone
 * with it, as PyTorch's are timed on a tensor already on the device. */
gboolean sam2_session_encode_resident (Sam2Session *s, int n, GError **error);

/* Every linear layer of the model runs through here: the observer (when set) sees its input,
 * then the backend computes it (float or quantized). */
int sam2_session_linear (Sam2Session *s, const Sam2Linear *l, const float *x, int M, float *y,
                         Sam2Act act, const float *residual);
/* Operand elements (rows x in_features) per call of sam2_session_linear_in_passes: 6 Mi, what
 * the blocks' own GEMMs take at tiny's first stage (65536 x 96), so that a device backend's
 * 16-bit operand scratch is not sized by the largest maps' convs. */
#define SAM2_LINEAR_PASS_ELEMENTS ((size_t) 6 << 20)
/* Rows per pass where `rows` rows of `row_floats` each go in passes of at most `budget` floats:
 * equal passes of a multiple of 128 rows (GEMM tiles), at least 128 rows; all where they fit. */
int sam2_rows_per_pass (int rows, size_t row_floats, size_t budget);
/* sam2_session_linear on row chunks of at most SAM2_LINEAR_PASS_ELEMENTS operand elements (rows
 * are independent; residual's rows go with them), or whole under an observer, which sees each
 * image's rows as one call. */
int sam2_session_linear_in_passes (Sam2Session *s, const Sam2Linear *l, const float *x, int M,
                                   float *y, Sam2Act act, const float *residual);
/* The same for a call on one image's rows inside a batched encoder pass (the patch embedding and
 * the neck's wider convs run image by image), in passes as sam2_session_linear_in_passes. */
int sam2_session_linear_one_image (Sam2Session *s, const Sam2Linear *l, const float *x, int M,
                                   float *y, Sam2Act act, const float *residual);
/* x = n (x) in place (n NULL: x as it is), then y = act (l (x + addend)) (addend (M, K) or NULL):
 * the backend's norm_sum_linear where it has one for this layer and no observer needs to see the
 * layer's input, else layer_norm, add into sum_buf (M, K) and l. */
int sam2_session_norm_sum_linear (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Linear *l,
                                  float *x, const float *addend, int M, Sam2Act act,
                                  float *sum_buf, float *y);
/* y = fc2 (act (fc1 (LN (x)))) + residual (the MLP half of a block; y may be x and residual):
 * the backend's norm_mlp where it has one and no observer needs to see the layers' inputs, else
 * layer_norm into norm_buf (M, K1), fc1 into hidden (M, N1) and fc2. */
int sam2_session_norm_mlp (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Mlp *mlp,
                           const float *x, int M, float *norm_buf, float *hidden, float *y,
                           const float *residual);

/* y = l (windows (LN (x))) for n_img (H, W) maps of x (window partition with window ws; 0: none;
 * n NULL: x is normalised already): the backend's one pass (norm_windows_linear) where it has
 * one for this layer, n is given and no observer needs to see the layer's input, else
 * layer_norm into norm_buf (n_img H W, K), window_partition of each image into win_buf and l. */
int sam2_session_norm_windows_linear (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Linear *l,
                                      const float *x, int n_img, int H, int W, int ws,
                                      float *norm_buf, float *win_buf, float *y);

/* x = n (x) in place (n NULL: x as it is), then y1 = l1 (x + addend) and y2 = l2 (x): the
 * backend's norm_linear_pair where it has one for these layers and no observer needs to see
 * their inputs, else layer_norm in place, then sam2_session_norm_sum_linear without a norm
 * (sum_buf (M, K)) and l2. */
int sam2_session_norm_linear_pair (Sam2Session *s, const Sam2LayerNorm *n, float *x,
                                   const float *addend, int M, float *sum_buf,
                                   const Sam2Linear *l1, float *y1, const Sam2Linear *l2,
                                   float *y2);

/* A block's attention half: y = proj (attention (qkv (windows (LN (x))))) (n NULL: x normalised
 * already), q max-pooled by q_stride into q_buf where it is above 1 (backend.h's
 * norm_attention_linear says how args point into qkv_buf and q_buf): the backend's pass where it
 * has one for these layers and no observer needs to see the layers' inputs, else
 * sam2_session_norm_windows_linear (norm_buf, win_buf) into qkv_buf, max_pool into q_buf and
 * sam2_session_attention_linear. `planned`: the buffers were sized for the pass, as the
 * backend's norm_attention_linear_spares said, and too small for the ops: the pass declining is
 * then an error (SAM2_STATUS_UNSUPPORTED), not a turn to the ops. */
int sam2_session_norm_attention_linear (Sam2Session *s, const Sam2LayerNorm *n,
                                        const Sam2Linear *qkv, const float *x, int n_img, int H,
                                        int W, int ws, int q_stride, float *norm_buf,
                                        float *win_buf, float *qkv_buf, float *q_buf,
                                        const Sam2AttentionArgs *args, const Sam2Linear *proj,
                                        float *y, gboolean planned);

/* y = l (attention (args)) + residual (NULL: none; may be y), the attention's output rows
 * packed (args->out_ld = l's in_features; args->out_batch_stride = len_q of them where batch >
 * 1): the backend's
 * attention_linear where it has one for this layer and no observer needs to see the layer's
 * input (args->out then may stay unwritten), else attention into args->out and l. */
int sam2_session_attention_linear (Sam2Session *s, const Sam2AttentionArgs *args,
                                   const Sam2Linear *l, float *y, const float *residual);

/* y = l (depth_to_space2x (x, x_ld, H, W, C, addend, norm, act)) (backend.h's ops): the
 * backend's depth_to_space2x_linear where it has one for this layer and no observer needs to see
 * the layer's input (t's floats are then not to be read after), else depth_to_space2x into t
 * (2H, 2W, C) and l. */
int sam2_session_depth_to_space2x_linear (Sam2Session *s, const float *x, int x_ld, int H, int W,
                                          int C, const float *addend, const Sam2LayerNorm *norm,
                                          Sam2Act act, float *t, const Sam2Linear *l, float *y);

/* out (M, 4 H W) = A (M, C) depth_to_space2x (x, x_ld, H, W, C, addend, no norm, act)^T
 * (backend.h's ops): the backend's depth_to_space2x_matmul where it has one for these sizes (t
 * then not written; with an observer too, as nothing here is a layer's input), else
 * depth_to_space2x into t (2H, 2W, C) and matmul_nt. */
int sam2_session_depth_to_space2x_matmul (Sam2Session *s, const float *x, int x_ld, int H, int W,
                                          int C, const float *addend, Sam2Act act, float *t,
                                          const float *A, int M, float *out);

/* s->stacks from the model's float decoder layers, and their release (decoder-stacks.c). */
void sam2_decoder_stacks_build (Sam2Session *s);
void sam2_decoder_stacks_clear (Sam2Session *s);

/* The module forwards; each returns a SAM2_STATUS_*. */
int sam2_hiera_forward (Sam2Session *s);
int sam2_neck_forward (Sam2Session *s);
/* Floats of the Hiera blocks' scratch (the largest block's) for passes of 1 .. max_batch
 * images: laid out for the backend's passes, or (observed) for the ops, which run while an
 * observer needs the layers' inputs. */
size_t sam2_hiera_scratch_floats (const Sam2Model *m, Sam2Backend *b, int max_batch,
                                  gboolean observed);
/* The blocks' scratch for the pass about to run: block_scratch, or under an observer where the
 * ops need more than block_scratch holds, observed_scratch, made at the first such pass. */
int sam2_session_block_scratch (Sam2Session *s, float **scratch);
/* The end of a part of n floats starting at `at` within a shared scratch, rounded up so that the
 * next part starts 256 bytes after the one before (the alignment of a buffer of its own, which
 * kernels and cuBLASLt's algorithm choice may rely on). */
static inline size_t
sam2_scratch_part_end (size_t at, size_t n)
{
  return (at + n + 63) & ~(size_t) 63;
}
/* Emits a tap of a (h, w, c) map for each image of the pass: (h, w, c) for one image, else
 * (batch, h, w, c). */
void sam2_session_emit_map_tap (Sam2Session *s, const char *name, const float *data, int h, int w,
                                int c);

/* Prompt encoding on the host: sparse tokens (n, C) of one object, returns n (<= max). */
int sam2_prompt_encoder_sparse (const Sam2Model *m, const Sam2Prompt *p, float *tokens,
                                int max_tokens);
int sam2_prompt_encoder_max_tokens (int n_points);
/* image_pe: (embed_size^2, C) into host memory. */
void sam2_prompt_encoder_image_pe (const Sam2Model *m, float *pe);
/* Dense embedding of a low-res mask prompt into s->dec.dense. */
int sam2_prompt_encoder_dense (Sam2Session *s, const float *mask_logits_backend);

/* The mask decoder for one object, in three steps so that the middle one can run as a device
 * graph (backend.h, run_graph): upload its tokens (into s->dec.token_pe; possibly without
 * waiting); run (device work only: copies them into the queries first; reads s->dec.dense when
 * has_dense); read back the heads (obj_offset + 1 floats: n_mask_tokens IoU scores, the object
 * score at obj_offset; possibly without waiting, so valid only after the next read_masks) and
 * the low-res logits of the mask tokens first_token .. first_token + n_tokens - 1 ((n_tokens,
 * mask_size^2), waiting for everything before) into host memory, only those a result keeps. */
int sam2_mask_decoder_upload (Sam2Session *s, const float *sparse, int n_sparse);
int sam2_mask_decoder_run (Sam2Session *s, int n_sparse, gboolean has_dense);
/* The decoder's image side that does not depend on the prompt (the first two-way block's
 * projections of the image embedding without a mask prompt): run by the encoder, once per
 * image, so each object's pass skips three HW-row projections. */
int sam2_mask_decoder_prepare_image (Sam2Session *s);
int sam2_mask_decoder_read_heads (Sam2Session *s, float *iou_obj);
int sam2_mask_decoder_read_masks (Sam2Session *s, int first_token, int n_tokens, float *masks);

G_END_DECLS

#endif
