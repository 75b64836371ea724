/* config.h: the architecture of a SAM2 checkpoint, read from its HF config.json.
 *
 * Both layouts the hub uses are accepted: Sam2Model ("model_type": "sam2") and Sam2VideoModel
 * ("sam2_video", what facebook/sam2.1-hiera-* hold); the video-only keys are read past. Keys
 * missing from the file take the defaults of transformers' Sam2*Config classes (v5.17), so a
 * config saved by any transformers version loads the same model the reference would build.
 */
#ifndef SAM2_CONFIG_H
#define SAM2_CONFIG_H

#include <glib.h>

G_BEGIN_DECLS

#define SAM2_MAX_STAGES 8
#define SAM2_MAX_GLOBAL_BLOCKS 64
#define SAM2_MAX_FPN_LEVELS 8

/* Limits the validator enforces, far above any released checkpoint (large: 1024 px input, dims up
 * to 1152, 48 blocks), so that every value and every size derived from one fits an int: any
 * Hiera feature map, padded to whole windows, at its widest (qkv or MLP hidden) holds at most
 * SAM2_CONFIG_MAX_ELEMENTS values. Not bounded: the score matrix of a global-attention block,
 * (h * w)^2 per head, which code must tile or size with size_t. */
#define SAM2_CONFIG_MAX_IMAGE_SIZE 8192     /* image sides, kernels, strides, paddings, windows */
#define SAM2_CONFIG_MAX_DIM 65536           /* channels, hidden sizes, MLP widths, heads */
#define SAM2_CONFIG_MAX_BLOCKS 256          /* Hiera blocks in total; also layer, mask-token and
                                               point-embedding counts */
#define SAM2_CONFIG_MAX_ELEMENTS G_MAXINT32

/* Activations by formula. Every HF name (transformers/activations.py) whose formula is one of
 * these maps to it; the others (quick_gelu, gelu_10, mish, ...) are rejected. */
typedef enum {
  SAM2_ACT_NONE,         /* identity: "linear" */
  SAM2_ACT_GELU,         /* exact, erf: "gelu", "gelu_python" */
  SAM2_ACT_GELU_TANH,    /* 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))): "gelu_pytorch_tanh",
                            "gelu_new", "gelu_python_tanh", "gelu_accurate", and "gelu_fast" (the
                            same with sqrt(2/pi) rounded to 0.7978845608, 4e-12 relative) */
  SAM2_ACT_RELU,         /* "relu" */
  SAM2_ACT_SILU,         /* "silu", "swish" */
  SAM2_ACT_SIGMOID,      /* "sigmoid" */
} Sam2Act;

typedef enum {
  SAM2_MODEL_TYPE_SAM2,        /* Sam2Model */
  SAM2_MODEL_TYPE_SAM2_VIDEO,  /* Sam2VideoModel: same image path plus memory modules */
} Sam2ModelType;

typedef struct {
  /* vision_config.backbone_config (Sam2HieraDetConfig) */
  int hidden_size;                           /* embed dim of the patch embedding */
  int num_attention_heads;
  int num_channels;
  int image_size[2];                         /* (h, w) */
  int patch_kernel_size[2];
  int patch_stride[2];
  int patch_padding[2];
  int query_stride[2];
  int window_pos_embed_bkg_size[2];          /* window_positional_embedding_background_size */
  int num_query_pool_stages;
  int n_stages;
  int blocks_per_stage[SAM2_MAX_STAGES];
  int embed_dim_per_stage[SAM2_MAX_STAGES];
  int num_attention_heads_per_stage[SAM2_MAX_STAGES];
  int window_size_per_stage[SAM2_MAX_STAGES];
  int n_global_attention_blocks;
  int global_attention_blocks[SAM2_MAX_GLOBAL_BLOCKS];
  double mlp_ratio;
  Sam2Act hidden_act;
  double layer_norm_eps;
} Sam2HieraConfig;

typedef struct {
  Sam2HieraConfig backbone;
  /* vision_config (Sam2VisionConfig) */
  int n_backbone_channels;
  int backbone_channel_list[SAM2_MAX_STAGES];      /* high stage first: [768, 384, 192, 96] */
  int n_backbone_feature_sizes;
  int backbone_feature_sizes[SAM2_MAX_FPN_LEVELS][2];
  int fpn_hidden_size;
  int fpn_kernel_size;
  int fpn_stride;
  int fpn_padding;
  int n_fpn_top_down_levels;
  int fpn_top_down_levels[SAM2_MAX_FPN_LEVELS];
  int num_feature_levels;
  Sam2Act hidden_act;
  double layer_norm_eps;
} Sam2VisionConfig;

typedef struct {
  int hidden_size;
  int image_size;
  int patch_size;
  int mask_input_channels;
  int num_point_embeddings;
  Sam2Act hidden_act;
  double layer_norm_eps;
  double scale;
} Sam2PromptEncoderConfig;

typedef struct {
  int hidden_size;
  Sam2Act hidden_act;
  int mlp_dim;
  int num_hidden_layers;                     /* two-way blocks; also the layer count of each block's
                                                MLP (HF passes it as num_layers) */
  int num_attention_heads;
  int attention_downsample_rate;
  int num_multimask_outputs;
  int iou_head_depth;                        /* HF builds max(depth, 2) linear layers */
  int iou_head_hidden_dim;
  gboolean dynamic_multimask_via_stability;
  double dynamic_multimask_stability_delta;
  double dynamic_multimask_stability_thresh;
} Sam2MaskDecoderConfig;

typedef struct {
  Sam2ModelType model_type;
  Sam2VisionConfig vision;
  Sam2PromptEncoderConfig prompt_encoder;
  Sam2MaskDecoderConfig mask_decoder;
} Sam2Config;

/* Fills `config` with the transformers defaults (sam2.1-hiera-tiny). */
void sam2_config_init_defaults (Sam2Config *config);

/* Parses config.json text (`length` -1: NUL-terminated). Errors (SAM2_ERROR_CONFIG) name the key:
 * malformed JSON (strict RFC 8259, at most 64 levels deep, integers within 64 bits), an unknown
 * model_type, a wrong type ("vision_config.backbone_config.blocks_per_stage: expected a list of
 * integers, got a string"), lists of inconsistent lengths, values the architecture cannot take
 * (zero or negative sizes, dims not divisible by heads, ...). Keys HF types as "int or list"
 * (image_size, patch_*, query_stride, prompt encoder image_size / patch_size) take both forms;
 * integers written as integral floats (4.0) are accepted; null means the default where HF's
 * field is Optional; unknown keys are ignored. The config is validated before it is returned;
 * on error `config` is left untouched. */
gboolean sam2_config_parse (const char *json, gssize length, Sam2Config *config, GError **error);
/* The same on a file; messages start with the path. SAM2_ERROR_IO when it cannot be read. */
gboolean sam2_config_load (const char *path, Sam2Config *config, GError **error);

/* Consistency checks run by the parsers; exposed for configs built in code. Beyond the limits
 * above and positive sizes it checks everything later code indexes or divides by:
 * - the model input is a square of prompt_encoder.image_size pixels (HF's prompt encoder and
 *   processor use that side; HF ignores the backbone's image_size), so backbone image_size must
 *   be that same square;
 * - per-stage lists have one entry per stage, n_stages <= SAM2_MAX_STAGES, hidden_size equals
 *   embed_dim_per_stage[0], each stage dim divides by its heads, num_channels is 3;
 * - query_stride is square; every query-pooling stage (1 .. num_query_pool_stages) changes the
 *   channel count and starts with a windowed block whose windows, shrunk by the stride, tile
 *   the pooled grid; window_size_per_stage[0] divides the patch grid (where transformers itself
 *   fails: modulo by zero, view errors, or windows silently folded into the batch);
 * - global_attention_blocks are >= 0; indices past the last block are accepted and never match,
 *   as in HF;
 * - backbone_channel_list is embed_dim_per_stage reversed; num_feature_levels is 3 (the mask
 *   decoder unpacks two high-resolution maps); backbone_feature_sizes are the sizes the
 *   backbone produces; fpn_top_down_levels are stage indices whose upsampled source matches;
 * - fpn_hidden_size, prompt encoder and mask decoder hidden_size are equal and divisible by 8
 *   (the upscaling convs use /4 and /8); the mask decoder hidden size divides by
 *   attention_downsample_rate * num_attention_heads; image_size / patch_size is integral and is
 *   the image embedding side, with levels 1 and 0 at 2x and 4x; mask_input_channels divides by
 *   4; num_point_embeddings >= 4 (box corners use embeddings 2 and 3). */
gboolean sam2_config_validate (const Sam2Config *config, GError **error);

/* Spatial size of the output of Hiera stage `stage` (0 .. n_stages - 1) for the configured
 * backbone image_size: patch embedding, then max-pooling by query_stride (floor) at the start of
 * stages 1 .. num_query_pool_stages. FALSE when `stage` is out of range or a size would be < 1. */
gboolean sam2_config_stage_size (const Sam2Config *config, int stage, int *height, int *width);

/* TRUE when every field the parser sets is equal (model_type included; list entries past their
 * count are not compared). */
gboolean sam2_config_equal (const Sam2Config *a, const Sam2Config *b);

/* Strict RFC 8259 syntax check, run before json-glib on untrusted text: json-glib 1.6 also
 * takes single quotes, hex numbers and trailing values, wraps integers beyond 64 bits and
 * recurses without limit (deep nesting overflows the stack). Refuses those, nesting deeper than
 * 64, NUL bytes and invalid UTF-8; the SAM2_ERROR_CONFIG message gives line and column. */
gboolean sam2_config_check_json (const char *text, size_t length, GError **error);

/* Name of an activation as HF writes it, and the reverse (FALSE for an unknown name). */
const char *sam2_act_name (Sam2Act act);
gboolean sam2_act_from_name (const char *name, Sam2Act *act);

/* A config.json for `config` in the Sam2Model layout (model_type "sam2", architectures
 * ["Sam2Model"]) that transformers' Sam2Config.from_dict accepts and sam2_config_parse reads back
 * to an equal config (model_type becomes SAM2 for a video config); floats keep a decimal point,
 * as HF's strict dataclasses want, and are written at the shortest precision that round-trips.
 * Used when writing quantized model files. `config` should be valid. Free with g_free. */
char *sam2_config_to_json (const Sam2Config *config);

G_END_DECLS

#endif
