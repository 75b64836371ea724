/* model.h: the read-only SAM2 image model, its weights bound by HF name.
 *
 * Everything shape-related that does not depend on a frame (block geometry at the configured
 * image size, the interpolated positional embeddings, weights rearranged for our GEMM layout) is
 * computed once here at load time. A model never changes after loading, so sessions in several
 * threads can share it.
 */
#ifndef SAM2_MODEL_H
#define SAM2_MODEL_H

#include "sam2.h"
#include "config.h"
#include "formats.h"
#include "safetensors.h"

G_BEGIN_DECLS

/* y (M, out) = x (M, in) W^T + b: nn.Linear, and every 1x1 or im2col'd convolution. */
typedef struct {
  const char *name;            /* HF prefix, e.g. "vision_encoder.backbone.blocks.3.attn.qkv" */
  int in_features;             /* K */
  int out_features;            /* N */
  const float *weight;         /* (N, K) row-major */
  const float *bias;           /* (N) or NULL */
  Sam2QuantLinear *quant;      /* quantized form (weight is then NULL), owned by the model */
} Sam2Linear;

/* A float tensor the model was built from, by HF name (what a model file would store). */
typedef struct {
  const float *data;
  int ndim;
  int64_t shape[4];
} Sam2TensorRef;

typedef struct {
  int dim;
  float eps;
  const float *weight;         /* (dim) */
  const float *bias;           /* (dim) */
} Sam2LayerNorm;

/* Sam2FeedForward: proj_in, layers.*, proj_out with an activation between, optional sigmoid. */
typedef struct {
  int n_layers;
  Sam2Linear *layers;          /* (n_layers): proj_in, layers.0 .. layers.{n-3}, proj_out */
  Sam2Act act;
  gboolean sigmoid_output;
} Sam2Mlp;

/* One Hiera block with its geometry at the configured input size. */
typedef struct {
  int index;
  int stage;
  int dim;                     /* input channels */
  int dim_out;
  int heads;
  int head_dim;
  int window;                  /* window side; 0 for global attention */
  int q_stride;                /* query pooling stride (1: none) */
  int in_h, in_w;              /* token grid entering the block */
  int out_h, out_w;            /* after query pooling */
  /* windowed geometry (window > 0) */
  int n_win_h, n_win_w;        /* windows over the padded input grid */
  int out_window;              /* window / q_stride */
  /* attention sequence lengths */
  int n_seq;                   /* windows (or 1 when global) */
  int len_k;                   /* keys per sequence */
  int len_q;                   /* queries per sequence after pooling */
  Sam2LayerNorm norm1, norm2;
  Sam2Linear qkv, attn_proj;
  gboolean has_skip_proj;      /* dim != dim_out: the residual goes through `proj` and pooling */
  Sam2Linear skip_proj;
  Sam2Mlp mlp;
} Sam2HieraBlock;

/* Sam2Attention of the mask decoder. */
typedef struct {
  int internal_dim;
  int heads;
  Sam2Linear q_proj, k_proj, v_proj, o_proj;
} Sam2DecoderAttention;

typedef struct {
  gboolean skip_first_layer_pe;
  Sam2DecoderAttention self_attn, cross_token_to_image, cross_image_to_token;
  Sam2LayerNorm norm1, norm2, norm3, norm4;
  Sam2Mlp mlp;
} Sam2TwoWayBlock;

struct _Sam2Model {
  gint ref_count;
  Sam2Config config;
  char *name;                  /* what the user asked for */
  char *config_json;           /* config.json as read */
  size_t weights_bytes;        /* size of the weight files */
  int64_t n_params;            /* parameters bound (image model) */

  Sam2Safetensors **files;
  int n_files;
  GPtrArray *owned;            /* buffers we converted, rearranged or derived (g_free) */
  GStringChunk *names;         /* layer names */
  GHashTable *tensors;         /* HF name -> Sam2TensorRef of every float tensor bound */
  GPtrArray *linears;          /* Sam2Linear * of every linear / conv layer, in module order */
  Sam2Model *base;             /* a quantized model built in memory keeps its float model alive */

  /* quantized models */
  gboolean quantized;
  char *recipe_yaml;           /* the resolved recipe */
  char *provenance_json;       /* source model, calibration frames, tool version */
  gboolean keep_float32;       /* float tensors are saved as F32 (else matrices as F16) */

  /* ---- Hiera trunk ---- */
  int image_size;              /* square input side */
  Sam2Linear patch_embed;      /* conv as GEMM over im2col columns (c, ky, kx) */
  int patch_h, patch_w;        /* token grid after patch embedding */
  float *pos_embed;            /* (patch_h * patch_w, hidden): bicubic background + tiled window */
  int n_blocks;
  Sam2HieraBlock *blocks;
  int n_stages;
  int stage_end[SAM2_MAX_STAGES];  /* index of each stage's last block */
  int stage_h[SAM2_MAX_STAGES], stage_w[SAM2_MAX_STAGES], stage_dim[SAM2_MAX_STAGES];

  /* ---- FPN neck: conv i applies to stage (n_stages - 1 - i) ---- */
  Sam2Linear neck_conv[SAM2_MAX_STAGES];
  int neck_kernel, neck_padding;

  /* ---- features the mask decoder takes ---- */
  Sam2Linear conv_s0, conv_s1;
  const float *no_memory_embedding;   /* (fpn_hidden) */
  int feat_h[3], feat_w[3], feat_c[3];/* 0, 1: high-res after conv_s0/1; 2: image embedding */

  /* ---- prompt encoder ---- */
  int embed_size;              /* image embedding side (prompt encoder image_size / patch_size) */
  int mask_size;               /* 4 * embed_size */
  const float *point_gaussian; /* (2, hidden/2) prompt_encoder.shared_embedding */
  const float *image_gaussian; /* (2, hidden/2) shared_image_embedding */
  const float *point_embed;    /* (num_point_embeddings, hidden) */
  const float *not_a_point_embed;  /* (hidden) */
  const float *no_mask_embed;  /* (hidden) */
  Sam2Linear mask_conv1, mask_conv2, mask_conv3;  /* 2x2 s2, 2x2 s2, 1x1 as GEMMs */
  Sam2LayerNorm mask_norm1, mask_norm2;
  float *image_pe;             /* (embed_size^2, hidden) image-wide positional embedding */

  /* ---- mask decoder ---- */
  int decoder_dim;
  int n_mask_tokens;
  const float *obj_score_token;/* (hidden) */
  const float *iou_token;      /* (hidden) */
  const float *mask_tokens;    /* (n_mask_tokens, hidden) */
  int n_two_way;
  Sam2TwoWayBlock *two_way;
  Sam2DecoderAttention final_attn;
  Sam2LayerNorm final_norm;
  Sam2Linear upscale1, upscale2;   /* ConvTranspose2d k2 s2 as GEMMs: (4 * c_out, c_in) */
  Sam2LayerNorm upscale_norm;
  Sam2Mlp *hyper_mlps;         /* (n_mask_tokens) */
  Sam2Mlp iou_head;
  Sam2Mlp obj_score_head;
};

/* Builds a model from a parsed config and a tensor lookup. `lookup` returns the tensor of that HF
 * name or NULL. Used by the file loader and by the hash-weight builder. */
typedef const Sam2StTensor *(*Sam2TensorLookup) (gpointer user_data, const char *name);

Sam2Model *sam2_model_build (const Sam2Config *config, const char *config_json, const char *name,
                             Sam2TensorLookup lookup, gpointer user_data, GError **error);

/* A model of `config` whose every weight is the fixtures' hash function of its name. */
Sam2Model *sam2_model_new_hashed (const Sam2Config *config, GError **error);

/* All HF parameter names (with shapes) of the image model of `config`, in module order; used to
 * regenerate hash weights and to report what a checkpoint lacks. Free with g_ptr_array_unref. */
typedef struct {
  char *name;
  int ndim;
  int64_t shape[4];
} Sam2ParamSpec;
GPtrArray *sam2_model_param_specs (const Sam2Config *config, GError **error);

/* Floats of one preprocessed input image, (num_channels, S, S): what a session's input slot, a
 * calibration frame and a reference's pixel_values hold. */
static inline size_t
sam2_model_image_floats (const Sam2Model *m)
{
  return (size_t) m->config.vision.backbone.num_channels * m->image_size * m->image_size;
}

G_END_DECLS

#endif
