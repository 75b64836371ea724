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

typedef enum {
  SAM2_ACT_NONE,
  SAM2_ACT_GELU,         /* exact, erf: "gelu" */
  SAM2_ACT_GELU_TANH,    /* "gelu_new", "gelu_pytorch_tanh", "gelu_fast" (same formula family) */
  SAM2_ACT_RELU,
  SAM2_ACT_SILU,         /* "silu", "swish" */
  SAM2_ACT_SIGMOID,
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
  int num_hidden_layers;
  int num_attention_heads;
  int attention_downsample_rate;
  int num_multimask_outputs;
  int iou_head_depth;
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

/* Parses config.json text. Errors (SAM2_ERROR_CONFIG) name the key: malformed JSON, an unknown
 * model_type, a wrong type ("vision_config.backbone_config.blocks_per_stage: expected a list of
 * integers"), lists of inconsistent lengths, values the architecture cannot take (zero or
 * negative sizes, dims not divisible by heads, ...). */
gboolean sam2_config_parse (const char *json, gssize length, Sam2Config *config, GError **error);
gboolean sam2_config_load (const char *path, Sam2Config *config, GError **error);

/* Consistency checks run by the parsers; exposed for configs built in code. */
gboolean sam2_config_validate (const Sam2Config *config, GError **error);

/* Name of an activation as HF writes it, and the reverse (FALSE for an unknown name). */
const char *sam2_act_name (Sam2Act act);
gboolean sam2_act_from_name (const char *name, Sam2Act *act);

/* A config.json for `config` in the Sam2Model layout (model_type "sam2"), as transformers would
 * read it back; used when writing quantized model files. Free with g_free. */
char *sam2_config_to_json (const Sam2Config *config);

G_END_DECLS

#endif
