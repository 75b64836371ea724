/* config.c: config.json of a HF SAM2 checkpoint into a Sam2Config, and back. See config.h.
 *
 * Every key the model reads is described once, in the field tables below: its JSON name, where
 * it lives in Sam2Config, its form and its limits. Parsing, range validation, comparison and
 * writing all walk those tables, so a key cannot be read without being validated or written.
 * The consistency rules between keys (heads divide dims, feature sizes match, ...) follow the
 * tables, in sam2_config_validate.
 */
#include "config.h"

#include "sam2.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- field tables ----------------------------------------------------------------------- */

typedef enum {
  SAM2_FIELD_INT,            /* int */
  SAM2_FIELD_PAIR,           /* int[2]: a JSON integer n (-> n, n) or a list [a, b] */
  SAM2_FIELD_SQUARE,         /* int: a JSON integer n or a list [n, n] */
  SAM2_FIELD_LIST,           /* int[max_len] and an int count */
  SAM2_FIELD_PAIR_LIST,      /* int[max_len][2] and an int count: a list of [h, w] */
  SAM2_FIELD_INTEGRAL,       /* double holding an integer (HF types it int; our struct, double) */
  SAM2_FIELD_DOUBLE,
  SAM2_FIELD_BOOL,           /* gboolean */
  SAM2_FIELD_ACT,            /* Sam2Act, from an activation name */
} Sam2ConfigFieldKind;

typedef struct {
  const char *key;
  Sam2ConfigFieldKind kind;
  gboolean nullable;         /* HF types the field Optional: null means the default */
  size_t offset;             /* into Sam2Config */
  size_t count_offset;       /* LIST, PAIR_LIST: the int holding the length */
  int min_len, max_len;      /* LIST, PAIR_LIST */
  double min, max;           /* every number (each entry of a list) lies in [min, max] */
} Sam2ConfigField;

typedef struct {
  const char *path;          /* JSON key path of the object, "" for the top level */
  const Sam2ConfigField *fields;
  guint n_fields;
} Sam2ConfigSection;

#define OFF(member) offsetof (Sam2Config, member)
#define INT(k, m, lo, hi) { k, SAM2_FIELD_INT, FALSE, OFF (m), 0, 0, 0, lo, hi }
#define PAIR(k, m, lo, hi) { k, SAM2_FIELD_PAIR, TRUE, OFF (m), 0, 0, 0, lo, hi }
#define SQUARE(k, m, lo, hi) { k, SAM2_FIELD_SQUARE, FALSE, OFF (m), 0, 0, 0, lo, hi }
#define LIST(k, m, n, nlo, nhi, lo, hi) \
  { k, SAM2_FIELD_LIST, TRUE, OFF (m), OFF (n), nlo, nhi, lo, hi }
#define PAIRS(k, m, n, nlo, nhi, lo, hi) \
  { k, SAM2_FIELD_PAIR_LIST, TRUE, OFF (m), OFF (n), nlo, nhi, lo, hi }
#define INTEGRAL(k, m, lo, hi) { k, SAM2_FIELD_INTEGRAL, FALSE, OFF (m), 0, 0, 0, lo, hi }
#define DOUBLE(k, m, lo, hi) { k, SAM2_FIELD_DOUBLE, FALSE, OFF (m), 0, 0, 0, lo, hi }
#define BOOL(k, m) { k, SAM2_FIELD_BOOL, FALSE, OFF (m), 0, 0, 0, 0, 0 }
#define ACT(k, m) { k, SAM2_FIELD_ACT, FALSE, OFF (m), 0, 0, 0, 0, 0 }

#define MAX_SIZE SAM2_CONFIG_MAX_IMAGE_SIZE
#define MAX_DIM SAM2_CONFIG_MAX_DIM
#define MAX_COUNT SAM2_CONFIG_MAX_BLOCKS
/* layer_norm_eps: 0 would divide by zero on a constant row; above 1 it is no longer an epsilon */
#define EPS_MIN 1e-30
#define EPS_MAX 1.0

/* Sam2HieraDetConfig; the four per-stage lists share n_stages, blocks_per_stage first */
static const Sam2ConfigField sam2_backbone_fields[] = {
  INT ("hidden_size", vision.backbone.hidden_size, 1, MAX_DIM),
  INT ("num_attention_heads", vision.backbone.num_attention_heads, 1, MAX_DIM),
  INT ("num_channels", vision.backbone.num_channels, 1, MAX_DIM),
  PAIR ("image_size", vision.backbone.image_size, 1, MAX_SIZE),
  PAIR ("patch_kernel_size", vision.backbone.patch_kernel_size, 1, MAX_SIZE),
  PAIR ("patch_stride", vision.backbone.patch_stride, 1, MAX_SIZE),
  PAIR ("patch_padding", vision.backbone.patch_padding, 0, MAX_SIZE),
  PAIR ("query_stride", vision.backbone.query_stride, 1, MAX_SIZE),
  PAIR ("window_positional_embedding_background_size", vision.backbone.window_pos_embed_bkg_size,
        1, MAX_SIZE),
  INT ("num_query_pool_stages", vision.backbone.num_query_pool_stages, 0, MAX_COUNT),
  LIST ("blocks_per_stage", vision.backbone.blocks_per_stage, vision.backbone.n_stages, 1,
        SAM2_MAX_STAGES, 1, MAX_COUNT),
  LIST ("embed_dim_per_stage", vision.backbone.embed_dim_per_stage, vision.backbone.n_stages, 1,
        SAM2_MAX_STAGES, 1, MAX_DIM),
  LIST ("num_attention_heads_per_stage", vision.backbone.num_attention_heads_per_stage,
        vision.backbone.n_stages, 1, SAM2_MAX_STAGES, 1, MAX_DIM),
  LIST ("window_size_per_stage", vision.backbone.window_size_per_stage, vision.backbone.n_stages,
        1, SAM2_MAX_STAGES, 1, MAX_SIZE),
  LIST ("global_attention_blocks", vision.backbone.global_attention_blocks,
        vision.backbone.n_global_attention_blocks, 0, SAM2_MAX_GLOBAL_BLOCKS, 0, G_MAXINT),
  DOUBLE ("mlp_ratio", vision.backbone.mlp_ratio, 1e-6, MAX_DIM),
  ACT ("hidden_act", vision.backbone.hidden_act),
  DOUBLE ("layer_norm_eps", vision.backbone.layer_norm_eps, EPS_MIN, EPS_MAX),
};

/* Sam2VisionConfig */
static const Sam2ConfigField sam2_vision_fields[] = {
  LIST ("backbone_channel_list", vision.backbone_channel_list, vision.n_backbone_channels, 1,
        SAM2_MAX_STAGES, 1, MAX_DIM),
  PAIRS ("backbone_feature_sizes", vision.backbone_feature_sizes,
         vision.n_backbone_feature_sizes, 1, SAM2_MAX_FPN_LEVELS, 1, MAX_SIZE),
  INT ("fpn_hidden_size", vision.fpn_hidden_size, 1, MAX_DIM),
  INT ("fpn_kernel_size", vision.fpn_kernel_size, 1, MAX_SIZE),
  INT ("fpn_stride", vision.fpn_stride, 1, MAX_SIZE),
  INT ("fpn_padding", vision.fpn_padding, 0, MAX_SIZE),
  LIST ("fpn_top_down_levels", vision.fpn_top_down_levels, vision.n_fpn_top_down_levels, 0,
        SAM2_MAX_FPN_LEVELS, 0, SAM2_MAX_STAGES - 1),
  INT ("num_feature_levels", vision.num_feature_levels, 1, SAM2_MAX_FPN_LEVELS),
  ACT ("hidden_act", vision.hidden_act),
  DOUBLE ("layer_norm_eps", vision.layer_norm_eps, EPS_MIN, EPS_MAX),
};

/* Sam2PromptEncoderConfig */
static const Sam2ConfigField sam2_prompt_encoder_fields[] = {
  INT ("hidden_size", prompt_encoder.hidden_size, 1, MAX_DIM),
  SQUARE ("image_size", prompt_encoder.image_size, 1, MAX_SIZE),
  SQUARE ("patch_size", prompt_encoder.patch_size, 1, MAX_SIZE),
  INT ("mask_input_channels", prompt_encoder.mask_input_channels, 4, MAX_DIM),
  INT ("num_point_embeddings", prompt_encoder.num_point_embeddings, 4, MAX_COUNT),
  ACT ("hidden_act", prompt_encoder.hidden_act),
  DOUBLE ("layer_norm_eps", prompt_encoder.layer_norm_eps, EPS_MIN, EPS_MAX),
  /* only scales the random init of a buffer the checkpoint overwrites */
  INTEGRAL ("scale", prompt_encoder.scale, -MAX_DIM, MAX_DIM),
};

/* Sam2MaskDecoderConfig */
static const Sam2ConfigField sam2_mask_decoder_fields[] = {
  INT ("hidden_size", mask_decoder.hidden_size, 8, MAX_DIM),
  ACT ("hidden_act", mask_decoder.hidden_act),
  INT ("mlp_dim", mask_decoder.mlp_dim, 1, MAX_DIM),
  INT ("num_hidden_layers", mask_decoder.num_hidden_layers, 1, MAX_COUNT),
  INT ("num_attention_heads", mask_decoder.num_attention_heads, 1, MAX_DIM),
  INT ("attention_downsample_rate", mask_decoder.attention_downsample_rate, 1, MAX_DIM),
  INT ("num_multimask_outputs", mask_decoder.num_multimask_outputs, 1, MAX_COUNT),
  INT ("iou_head_depth", mask_decoder.iou_head_depth, 1, MAX_COUNT),
  INT ("iou_head_hidden_dim", mask_decoder.iou_head_hidden_dim, 1, MAX_DIM),
  BOOL ("dynamic_multimask_via_stability", mask_decoder.dynamic_multimask_via_stability),
  DOUBLE ("dynamic_multimask_stability_delta", mask_decoder.dynamic_multimask_stability_delta,
          -1e6, 1e6),
  DOUBLE ("dynamic_multimask_stability_thresh", mask_decoder.dynamic_multimask_stability_thresh,
          -1e6, 1e6),
};

#define SECTION(path, fields) { path, fields, G_N_ELEMENTS (fields) }
enum { SECTION_BACKBONE, SECTION_VISION, SECTION_PROMPT_ENCODER, SECTION_MASK_DECODER };
static const Sam2ConfigSection sam2_config_sections[] = {
  SECTION ("vision_config.backbone_config", sam2_backbone_fields),
  SECTION ("vision_config", sam2_vision_fields),
  SECTION ("prompt_encoder_config", sam2_prompt_encoder_fields),
  SECTION ("mask_decoder_config", sam2_mask_decoder_fields),
};

typedef int Sam2IntPair[2];

#define FIELD_PTR(config, field, type) ((type *) ((char *) (config) + (field)->offset))
#define FIELD_CPTR(config, field, type) ((const type *) ((const char *) (config) + (field)->offset))
#define COUNT_PTR(config, field) ((int *) ((char *) (config) + (field)->count_offset))
#define COUNT_CPTR(config, field) ((const int *) ((const char *) (config) + (field)->count_offset))

/* ---- defaults ------------------------------------------------------------------------------ */

static void
sam2_config_set_list (int *dst, int *count, const int *values, int n)
{
  memcpy (dst, values, sizeof (int) * n);
  *count = n;
}

void
sam2_config_init_defaults (Sam2Config *config)
{
  g_return_if_fail (config != NULL);
  /* zeroed first so unused list entries and padding compare equal between configs */
  memset (config, 0, sizeof *config);
  config->model_type = SAM2_MODEL_TYPE_SAM2;

  Sam2HieraConfig *b = &config->vision.backbone;
  b->hidden_size = 96;
  b->num_attention_heads = 1;
  b->num_channels = 3;
  b->image_size[0] = b->image_size[1] = 1024;
  b->patch_kernel_size[0] = b->patch_kernel_size[1] = 7;
  b->patch_stride[0] = b->patch_stride[1] = 4;
  b->patch_padding[0] = b->patch_padding[1] = 3;
  b->query_stride[0] = b->query_stride[1] = 2;
  b->window_pos_embed_bkg_size[0] = b->window_pos_embed_bkg_size[1] = 7;
  b->num_query_pool_stages = 3;
  sam2_config_set_list (b->blocks_per_stage, &b->n_stages, (const int[]) { 1, 2, 7, 2 }, 4);
  sam2_config_set_list (b->embed_dim_per_stage, &b->n_stages, (const int[]) { 96, 192, 384, 768 },
                        4);
  sam2_config_set_list (b->num_attention_heads_per_stage, &b->n_stages,
                        (const int[]) { 1, 2, 4, 8 }, 4);
  sam2_config_set_list (b->window_size_per_stage, &b->n_stages, (const int[]) { 8, 4, 14, 7 }, 4);
  sam2_config_set_list (b->global_attention_blocks, &b->n_global_attention_blocks,
                        (const int[]) { 5, 7, 9 }, 3);
  b->mlp_ratio = 4.0;
  b->hidden_act = SAM2_ACT_GELU;
  b->layer_norm_eps = 1e-6;

  Sam2VisionConfig *v = &config->vision;
  sam2_config_set_list (v->backbone_channel_list, &v->n_backbone_channels,
                        (const int[]) { 768, 384, 192, 96 }, 4);
  v->n_backbone_feature_sizes = 3;
  for (int i = 0; i < 3; i++)
    v->backbone_feature_sizes[i][0] = v->backbone_feature_sizes[i][1] = 256 >> i;
  v->fpn_hidden_size = 256;
  v->fpn_kernel_size = 1;
  v->fpn_stride = 1;
  v->fpn_padding = 0;
  sam2_config_set_list (v->fpn_top_down_levels, &v->n_fpn_top_down_levels, (const int[]) { 2, 3 },
                        2);
  v->num_feature_levels = 3;
  v->hidden_act = SAM2_ACT_GELU;
  v->layer_norm_eps = 1e-6;

  Sam2PromptEncoderConfig *p = &config->prompt_encoder;
  p->hidden_size = 256;
  p->image_size = 1024;
  p->patch_size = 16;
  p->mask_input_channels = 16;
  p->num_point_embeddings = 4;
  p->hidden_act = SAM2_ACT_GELU;
  p->layer_norm_eps = 1e-6;
  p->scale = 1.0;

  Sam2MaskDecoderConfig *d = &config->mask_decoder;
  d->hidden_size = 256;
  d->hidden_act = SAM2_ACT_GELU;
  d->mlp_dim = 2048;
  d->num_hidden_layers = 2;
  d->num_attention_heads = 8;
  d->attention_downsample_rate = 2;
  d->num_multimask_outputs = 3;
  d->iou_head_depth = 3;
  d->iou_head_hidden_dim = 256;
  d->dynamic_multimask_via_stability = TRUE;
  d->dynamic_multimask_stability_delta = 0.05;
  d->dynamic_multimask_stability_thresh = 0.98;
}

/* ---- activations -------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  Sam2Act act;
} Sam2ActName;

/* First name of each activation is the one written back. Only names whose formula is exactly
 * one of ours: gelu_10 clips, quick_gelu is x * sigmoid(1.702x), which no Sam2Act computes. */
static const Sam2ActName sam2_act_names[] = {
  { "gelu", SAM2_ACT_GELU },
  { "gelu_python", SAM2_ACT_GELU },
  { "gelu_pytorch_tanh", SAM2_ACT_GELU_TANH },
  { "gelu_new", SAM2_ACT_GELU_TANH },
  { "gelu_python_tanh", SAM2_ACT_GELU_TANH },
  { "gelu_accurate", SAM2_ACT_GELU_TANH },
  { "gelu_fast", SAM2_ACT_GELU_TANH },
  { "relu", SAM2_ACT_RELU },
  { "silu", SAM2_ACT_SILU },
  { "swish", SAM2_ACT_SILU },
  { "sigmoid", SAM2_ACT_SIGMOID },
  { "linear", SAM2_ACT_NONE },
};

const char *
sam2_act_name (Sam2Act act)
{
  for (guint i = 0; i < G_N_ELEMENTS (sam2_act_names); i++)
    if (sam2_act_names[i].act == act)
      return sam2_act_names[i].name;
  return NULL;
}

gboolean
sam2_act_from_name (const char *name, Sam2Act *act)
{
  g_return_val_if_fail (act != NULL, FALSE);
  if (name == NULL)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (sam2_act_names); i++)
    if (strcmp (sam2_act_names[i].name, name) == 0) {
      *act = sam2_act_names[i].act;
      return TRUE;
    }
  return FALSE;
}

static char *
sam2_act_supported_names (void)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (sam2_act_names); i++)
    g_string_append_printf (s, "%s%s", i > 0 ? ", " : "", sam2_act_names[i].name);
  return g_string_free (s, FALSE);
}

/* ---- strict JSON syntax ------------------------------------------------------------------ */

/* json-glib 1.6 accepts what Python's json module (and so transformers) refuses: single quotes,
 * hex numbers, a second value after the first. It silently wraps integers beyond 64 bits (so
 * 18446744073709551617 would read as 1) and recurses without a depth limit (a few thousand
 * '[' overflow the stack). This RFC 8259 scan runs first and refuses all of it; the scan itself
 * keeps its nesting in a fixed array, not on the call stack. */
#define SAM2_CONFIG_MAX_JSON_DEPTH 64

typedef enum {
  SCAN_VALUE,                /* a value is required */
  SCAN_VALUE_OR_CLOSE,       /* just after '[' */
  SCAN_KEY,                  /* after ',' in an object */
  SCAN_KEY_OR_CLOSE,         /* just after '{' */
  SCAN_COLON,
  SCAN_COMMA_OR_CLOSE,
  SCAN_DONE,
} Sam2ScanState;

static gboolean
sam2_config_syntax_error (const char *text, const char *at, GError **error, const char *what)
{
  int line = 1, column = 1;
  for (const char *p = text; p < at; p++) {
    if (*p == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "invalid JSON at line %d, column %d: %s",
               line, column, what);
  return FALSE;
}

/* `*p` is past the opening quote; leaves `*p` past the closing one. */
static const char *
sam2_config_scan_string (const char **p, const char *end)
{
  const char *s = *p;
  while (s < end) {
    unsigned char c = (unsigned char) *s;
    if (c == '"') {
      *p = s + 1;
      return NULL;
    }
    if (c < 0x20) {
      *p = s;
      return "control character in a string (escape it)";
    }
    if (c == '\\') {
      if (s + 1 >= end)
        break;
      char e = s[1];
      if (e == 'u') {
        for (int i = 2; i < 6; i++)
          if (s + i >= end || !g_ascii_isxdigit (s[i])) {
            *p = s;
            return "\\u needs four hexadecimal digits";
          }
        /* json-glib's strings end at a NUL: "relu\u0000 but gelu" would read as "relu" */
        if (memcmp (s + 2, "0000", 4) == 0) {
          *p = s;
          return "\\u0000 (a NUL character) in a string";
        }
        s += 6;
        continue;
      }
      if (strchr ("\"\\/bfnrt", e) == NULL || e == '\0') {
        *p = s;
        return "invalid escape in a string";
      }
      s += 2;
      continue;
    }
    s++;
  }
  *p = end;
  return "unterminated string";
}

/* RFC 8259 number; integers (no fraction or exponent) must fit in 64 bits. */
static const char *
sam2_config_scan_number (const char **p, const char *end)
{
  const char *s = *p;
  gboolean negative = FALSE, integer = TRUE;
  if (s < end && *s == '-') {
    negative = TRUE;
    s++;
  }
  const char *digits = s;
  if (s < end && *s == '0')
    s++;
  else if (s < end && *s >= '1' && *s <= '9')
    while (s < end && g_ascii_isdigit (*s))
      s++;
  else
    return "invalid number";
  const char *digits_end = s;
  if (s < end && *s == '.') {
    integer = FALSE;
    s++;
    if (s >= end || !g_ascii_isdigit (*s))
      return "invalid number: digits must follow '.'";
    while (s < end && g_ascii_isdigit (*s))
      s++;
  }
  if (s < end && (*s == 'e' || *s == 'E')) {
    integer = FALSE;
    s++;
    if (s < end && (*s == '+' || *s == '-'))
      s++;
    if (s >= end || !g_ascii_isdigit (*s))
      return "invalid number: digits must follow the exponent";
    while (s < end && g_ascii_isdigit (*s))
      s++;
  }
  if (integer) {
    const char *limit = negative ? "9223372036854775808" : "9223372036854775807";
    size_t n = digits_end - digits;
    if (n > 19 || (n == 19 && memcmp (digits, limit, 19) > 0))
      return "integer does not fit in 64 bits";
  }
  *p = s;
  return NULL;
}

static gboolean
sam2_config_scan_literal (const char **p, const char *end, const char *word)
{
  size_t n = strlen (word);
  if ((size_t) (end - *p) < n || memcmp (*p, word, n) != 0)
    return FALSE;
  *p += n;
  return TRUE;
}

gboolean
sam2_config_check_json (const char *text, size_t length, GError **error)
{
  g_return_val_if_fail (text != NULL || length == 0, FALSE);
  if (text == NULL)
    text = "";
  const char *invalid = NULL;
  if (!g_utf8_validate (text, length, &invalid))
    return sam2_config_syntax_error (text, invalid, error,
                                     *invalid == '\0' ? "NUL byte" : "not UTF-8 text");

  char stack[SAM2_CONFIG_MAX_JSON_DEPTH];
  int depth = 0;
  Sam2ScanState state = SCAN_VALUE;
  const char *p = text, *end = text + length;
  for (;;) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
      p++;
    if (p == end) {
      if (state == SCAN_DONE)
        return TRUE;
      return sam2_config_syntax_error (text, p, error, depth == 0 && state == SCAN_VALUE
                                       ? "no JSON value (empty text)" : "unexpected end of text");
    }
    const char c = *p;
    const char *what = NULL;
    gboolean value_done = FALSE;
    switch (state) {
    case SCAN_DONE:
      return sam2_config_syntax_error (text, p, error, "unexpected text after the JSON value");
    case SCAN_VALUE_OR_CLOSE:
    case SCAN_VALUE:
      if (state == SCAN_VALUE_OR_CLOSE && c == ']') {
        p++;
        depth--;
        value_done = TRUE;
      } else if (c == '{' || c == '[') {
        if (depth == SAM2_CONFIG_MAX_JSON_DEPTH)
          return sam2_config_syntax_error (text, p, error, "nested more than 64 levels deep");
        stack[depth++] = c;
        state = c == '{' ? SCAN_KEY_OR_CLOSE : SCAN_VALUE_OR_CLOSE;
        p++;
      } else if (c == '"') {
        p++;
        what = sam2_config_scan_string (&p, end);
        value_done = TRUE;
      } else if (c == '-' || g_ascii_isdigit (c)) {
        what = sam2_config_scan_number (&p, end);
        value_done = TRUE;
      } else if (sam2_config_scan_literal (&p, end, "true")
                 || sam2_config_scan_literal (&p, end, "false")
                 || sam2_config_scan_literal (&p, end, "null")) {
        value_done = TRUE;
      } else {
        what = "expected a value";
      }
      break;
    case SCAN_KEY_OR_CLOSE:
    case SCAN_KEY:
      if (state == SCAN_KEY_OR_CLOSE && c == '}') {
        p++;
        depth--;
        value_done = TRUE;
      } else if (c == '"') {
        p++;
        what = sam2_config_scan_string (&p, end);
        state = SCAN_COLON;
      } else {
        what = "expected a key in double quotes";
      }
      break;
    case SCAN_COLON:
      if (c == ':') {
        p++;
        state = SCAN_VALUE;
      } else {
        what = "expected ':'";
      }
      break;
    case SCAN_COMMA_OR_CLOSE: {
      const char open = stack[depth - 1];
      if (c == ',') {
        p++;
        state = open == '{' ? SCAN_KEY : SCAN_VALUE;
      } else if (c == (open == '{' ? '}' : ']')) {
        p++;
        depth--;
        value_done = TRUE;
      } else {
        what = open == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
      }
      break;
    }
    }
    if (what != NULL)
      return sam2_config_syntax_error (text, p, error, what);
    if (value_done)
      state = depth == 0 ? SCAN_DONE : SCAN_COMMA_OR_CLOSE;
  }
}

/* ---- reading values ------------------------------------------------------------------------ */

static char *
sam2_config_path (const char *prefix, const char *key)
{
  return *prefix == '\0' ? g_strdup (key) : g_strconcat (prefix, ".", key, NULL);
}

static const char *
sam2_config_node_kind (JsonNode *node)
{
  switch (json_node_get_node_type (node)) {
  case JSON_NODE_OBJECT:
    return "an object";
  case JSON_NODE_ARRAY:
    return "a list";
  case JSON_NODE_NULL:
    return "null";
  case JSON_NODE_VALUE:
    break;
  }
  GType type = json_node_get_value_type (node);
  if (type == G_TYPE_STRING)
    return "a string";
  if (type == G_TYPE_BOOLEAN)
    return "a boolean";
  return "a number";
}

static gboolean
sam2_config_type_error (const char *path, const char *expected, JsonNode *node, GError **error)
{
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: expected %s, got %s", path, expected,
               sam2_config_node_kind (node));
  return FALSE;
}

static gboolean
sam2_config_range_error (const char *path, double value, double min, double max, GError **error)
{
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
               "%s: %.15g is out of range; expected %.15g to %.15g", path, value, min, max);
  return FALSE;
}

static gboolean
sam2_config_is_number (JsonNode *node)
{
  if (!JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  GType type = json_node_get_value_type (node);
  return type == G_TYPE_INT64 || type == G_TYPE_DOUBLE;
}

/* An integer as HF's strict dataclasses want it, or an integral float (4.0) as some writers
 * produce; within [min, max]. */
static gboolean
sam2_config_read_int (JsonNode *node, const char *path, double min, double max, int *out,
                      GError **error)
{
  if (!sam2_config_is_number (node))
    return sam2_config_type_error (path, "an integer", node, error);
  double value;
  if (json_node_get_value_type (node) == G_TYPE_INT64) {
    value = (double) json_node_get_int (node);
  } else {
    value = json_node_get_double (node);
    if (!isfinite (value) || value != floor (value)) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: expected an integer, got %.17g",
                   path, value);
      return FALSE;
    }
  }
  if (value < min || value > max)
    return sam2_config_range_error (path, value, min, max, error);
  *out = (int) value;
  return TRUE;
}

static gboolean
sam2_config_read_double (JsonNode *node, const char *path, double min, double max, double *out,
                         GError **error)
{
  if (!sam2_config_is_number (node))
    return sam2_config_type_error (path, "a number", node, error);
  double value = json_node_get_value_type (node) == G_TYPE_INT64
                 ? (double) json_node_get_int (node) : json_node_get_double (node);
  if (!isfinite (value) || value < min || value > max)
    return sam2_config_range_error (path, value, min, max, error);
  *out = value;
  return TRUE;
}

/* A list of ints of length [min_len, max_len]; `expected` names the form in type errors. */
static gboolean
sam2_config_read_int_array (JsonNode *node, const char *path, const char *expected, int min_len,
                            int max_len, double min, double max, int *out, int *n_out,
                            GError **error)
{
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return sam2_config_type_error (path, expected, node, error);
  JsonArray *array = json_node_get_array (node);
  guint n = json_array_get_length (array);
  if (n < (guint) min_len || n > (guint) max_len) {
    if (min_len == max_len)
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: expected %d entries, got %u", path,
                   min_len, n);
    else
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "%s: %u entries; expected %d to %d", path, n, min_len, max_len);
    return FALSE;
  }
  for (guint i = 0; i < n; i++) {
    JsonNode *element = json_array_get_element (array, i);
    if (!sam2_config_is_number (element)) {
      char *what = g_strdup_printf ("%s, but entry %u is %s", expected, i,
                                    sam2_config_node_kind (element));
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: expected %s", path, what);
      g_free (what);
      return FALSE;
    }
    char *entry = g_strdup_printf ("%s[%u]", path, i);
    gboolean ok = sam2_config_read_int (element, entry, min, max, &out[i], error);
    g_free (entry);
    if (!ok)
      return FALSE;
  }
  *n_out = (int) n;
  return TRUE;
}

/* int or [a, b] (PAIR), int or [n, n] (SQUARE) */
static gboolean
sam2_config_read_pair (JsonNode *node, const char *path, const Sam2ConfigField *field, int out[2],
                       GError **error)
{
  const char *expected = "an integer or a list of 2 integers";
  if (sam2_config_is_number (node)) {
    if (!sam2_config_read_int (node, path, field->min, field->max, &out[0], error))
      return FALSE;
    out[1] = out[0];
    return TRUE;
  }
  int n;
  return sam2_config_read_int_array (node, path, expected, 2, 2, field->min, field->max, out, &n,
                                     error);
}

static gboolean
sam2_config_read_pair_list (JsonNode *node, const char *path, const Sam2ConfigField *field,
                            int (*out)[2], int *n_out, GError **error)
{
  const char *expected = "a list of [height, width] lists";
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return sam2_config_type_error (path, expected, node, error);
  JsonArray *array = json_node_get_array (node);
  guint n = json_array_get_length (array);
  if (n < (guint) field->min_len || n > (guint) field->max_len) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: %u entries; expected %d to %d", path,
                 n, field->min_len, field->max_len);
    return FALSE;
  }
  for (guint i = 0; i < n; i++) {
    char *entry = g_strdup_printf ("%s[%u]", path, i);
    int count;
    gboolean ok = sam2_config_read_int_array (json_array_get_element (array, i), entry,
                                              "a list of 2 integers", 2, 2, field->min,
                                              field->max, out[i], &count, error);
    g_free (entry);
    if (!ok)
      return FALSE;
  }
  *n_out = (int) n;
  return TRUE;
}

static gboolean
sam2_config_read_act (JsonNode *node, const char *path, Sam2Act *out, GError **error)
{
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    return sam2_config_type_error (path, "an activation name (a string)", node, error);
  const char *name = json_node_get_string (node);
  if (sam2_act_from_name (name, out))
    return TRUE;
  char *names = sam2_act_supported_names ();
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
               "%s: unsupported activation \"%s\"; supported: %s", path, name, names);
  g_free (names);
  return FALSE;
}

/* One key into its place in `config`; list lengths go to `*length`. */
static gboolean
sam2_config_read_field (JsonNode *node, const char *path, const Sam2ConfigField *field,
                        Sam2Config *config, int *length, GError **error)
{
  switch (field->kind) {
  case SAM2_FIELD_INT:
    return sam2_config_read_int (node, path, field->min, field->max,
                                 FIELD_PTR (config, field, int), error);
  case SAM2_FIELD_PAIR:
    return sam2_config_read_pair (node, path, field, FIELD_PTR (config, field, int), error);
  case SAM2_FIELD_SQUARE: {
    int pair[2];
    if (!sam2_config_read_pair (node, path, field, pair, error))
      return FALSE;
    if (pair[0] != pair[1]) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "%s: [%d, %d] is not square; the prompt encoder takes one side for both axes",
                   path, pair[0], pair[1]);
      return FALSE;
    }
    *FIELD_PTR (config, field, int) = pair[0];
    return TRUE;
  }
  case SAM2_FIELD_LIST: {
    int *values = FIELD_PTR (config, field, int);
    if (!sam2_config_read_int_array (node, path, "a list of integers", field->min_len,
                                     field->max_len, field->min, field->max, values, length,
                                     error))
      return FALSE;
    memset (values + *length, 0, sizeof (int) * (field->max_len - *length));
    return TRUE;
  }
  case SAM2_FIELD_PAIR_LIST: {
    int (*values)[2] = FIELD_PTR (config, field, Sam2IntPair);
    if (!sam2_config_read_pair_list (node, path, field, values, length, error))
      return FALSE;
    memset (values + *length, 0, sizeof (int[2]) * (field->max_len - *length));
    return TRUE;
  }
  case SAM2_FIELD_INTEGRAL: {
    int value;
    if (!sam2_config_read_int (node, path, field->min, field->max, &value, error))
      return FALSE;
    *FIELD_PTR (config, field, double) = value;
    return TRUE;
  }
  case SAM2_FIELD_DOUBLE:
    return sam2_config_read_double (node, path, field->min, field->max,
                                    FIELD_PTR (config, field, double), error);
  case SAM2_FIELD_BOOL:
    if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
      return sam2_config_type_error (path, "true or false", node, error);
    *FIELD_PTR (config, field, gboolean) = json_node_get_boolean (node);
    return TRUE;
  case SAM2_FIELD_ACT:
    return sam2_config_read_act (node, path, FIELD_PTR (config, field, Sam2Act), error);
  }
  g_return_val_if_reached (FALSE);
}

static gboolean
sam2_config_is_list (const Sam2ConfigField *field)
{
  return field->kind == SAM2_FIELD_LIST || field->kind == SAM2_FIELD_PAIR_LIST;
}

/* Lists sharing a count (the per-stage lists) must agree, whether given or defaulted: HF
 * indexes all of them by stage. */
static gboolean
sam2_config_check_shared_lengths (const Sam2ConfigSection *section, const int *lengths,
                                  const gboolean *given, GError **error)
{
  for (guint i = 0; i < section->n_fields; i++) {
    const Sam2ConfigField *a = &section->fields[i];
    if (!sam2_config_is_list (a))
      continue;
    for (guint j = i + 1; j < section->n_fields; j++) {
      const Sam2ConfigField *b = &section->fields[j];
      if (!sam2_config_is_list (b) || b->count_offset != a->count_offset
          || lengths[i] == lengths[j])
        continue;
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                   "%s: %s has %d entries%s but %s has %d%s; each stage needs one entry in "
                   "every per-stage list", section->path, b->key, lengths[j],
                   given[j] ? "" : " (the default)", a->key, lengths[i],
                   given[i] ? "" : " (the default)");
      return FALSE;
    }
  }
  return TRUE;
}

#define SAM2_CONFIG_MAX_FIELDS 32

static gboolean
sam2_config_parse_section (JsonObject *object, const Sam2ConfigSection *section,
                           Sam2Config *config, GError **error)
{
  int lengths[SAM2_CONFIG_MAX_FIELDS] = { 0 };
  gboolean given[SAM2_CONFIG_MAX_FIELDS] = { FALSE };
  g_assert (section->n_fields <= SAM2_CONFIG_MAX_FIELDS);

  for (guint i = 0; i < section->n_fields; i++) {
    const Sam2ConfigField *field = &section->fields[i];
    if (sam2_config_is_list (field))
      lengths[i] = *COUNT_PTR (config, field);
  }
  for (guint i = 0; i < section->n_fields; i++) {
    const Sam2ConfigField *field = &section->fields[i];
    JsonNode *node = object != NULL ? json_object_get_member (object, field->key) : NULL;
    if (node == NULL || (field->nullable && JSON_NODE_HOLDS_NULL (node)))
      continue;
    char *path = sam2_config_path (section->path, field->key);
    gboolean ok = sam2_config_read_field (node, path, field, config, &lengths[i], error);
    g_free (path);
    if (!ok)
      return FALSE;
    given[i] = TRUE;
  }
  if (!sam2_config_check_shared_lengths (section, lengths, given, error))
    return FALSE;
  for (guint i = 0; i < section->n_fields; i++)
    if (given[i] && sam2_config_is_list (&section->fields[i]))
      *COUNT_PTR (config, &section->fields[i]) = lengths[i];
  return TRUE;
}

/* ---- objects and model types ---------------------------------------------------------------- */

/* The sub-object `key` of `parent` (NULL when absent or null: defaults apply). */
static gboolean
sam2_config_get_object (JsonObject *parent, const char *prefix, const char *key,
                        JsonObject **out, GError **error)
{
  *out = NULL;
  JsonNode *node = parent != NULL ? json_object_get_member (parent, key) : NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    char *path = sam2_config_path (prefix, key);
    sam2_config_type_error (path, "an object", node, error);
    g_free (path);
    return FALSE;
  }
  *out = json_node_get_object (node);
  return TRUE;
}

/* A string member, NULL when absent or null. */
static gboolean
sam2_config_get_string (JsonObject *object, const char *prefix, const char *key,
                        const char **out, GError **error)
{
  *out = NULL;
  JsonNode *node = object != NULL ? json_object_get_member (object, key) : NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING) {
    char *path = sam2_config_path (prefix, key);
    sam2_config_type_error (path, "a string", node, error);
    g_free (path);
    return FALSE;
  }
  *out = json_node_get_string (node);
  return TRUE;
}

/* HF builds sub-configs through CONFIG_MAPPING[model_type]: another type there is another
 * model (a SAM 1 vision encoder, a timm backbone). */
static gboolean
sam2_config_check_sub_type (JsonObject *object, const char *path, const char *expected,
                            GError **error)
{
  const char *type;
  if (!sam2_config_get_string (object, path, "model_type", &type, error))
    return FALSE;
  if (type == NULL || strcmp (type, expected) == 0)
    return TRUE;
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
               "%s.model_type is \"%s\"; only \"%s\" is supported", path, type, expected);
  return FALSE;
}

/* Keys only Sam2VideoConfig has; a config without model_type or architectures but with these is
 * a video config. */
static const char *const sam2_video_keys[] = {
  "num_maskmem", "memory_attention_hidden_size", "memory_encoder_hidden_size",
  "memory_fuser_embed_dim", "mask_downsampler_embed_dim", "max_object_pointers_in_encoder",
};

static gboolean
sam2_config_unsupported_type (const char *what, GError **error)
{
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
               "%s is not supported; supported: model_type \"sam2\" (Sam2Model) and "
               "\"sam2_video\" (Sam2VideoModel), the SAM2 / SAM2.1 checkpoints", what);
  return FALSE;
}

static gboolean
sam2_config_model_type_from_architectures (JsonArray *array, Sam2ModelType *type,
                                           gboolean *found, GError **error)
{
  guint n = json_array_get_length (array);
  GString *seen = g_string_new (NULL);
  for (guint i = 0; i < n; i++) {
    JsonNode *element = json_array_get_element (array, i);
    if (!JSON_NODE_HOLDS_VALUE (element) || json_node_get_value_type (element) != G_TYPE_STRING) {
      g_string_free (seen, TRUE);
      return sam2_config_type_error ("architectures", "a list of strings", element, error);
    }
    const char *name = json_node_get_string (element);
    const gboolean image = strcmp (name, "Sam2Model") == 0;
    if (image || strcmp (name, "Sam2VideoModel") == 0) {
      *type = image ? SAM2_MODEL_TYPE_SAM2 : SAM2_MODEL_TYPE_SAM2_VIDEO;
      *found = TRUE;
      g_string_free (seen, TRUE);
      return TRUE;
    }
    g_string_append_printf (seen, "%s\"%s\"", i > 0 ? ", " : "", name);
  }
  if (n == 0) {
    g_string_free (seen, TRUE);
    return TRUE;
  }
  char *what = g_strdup_printf ("a config without model_type for architectures [%s]", seen->str);
  g_string_free (seen, TRUE);
  sam2_config_unsupported_type (what, error);
  g_free (what);
  return FALSE;
}

/* model_type, else architectures, else the presence of video keys; neither means Sam2Model. */
static gboolean
sam2_config_read_model_type (JsonObject *root, Sam2ModelType *type, GError **error)
{
  const char *name;
  if (!sam2_config_get_string (root, "", "model_type", &name, error))
    return FALSE;
  if (name != NULL) {
    if (strcmp (name, "sam2") == 0) {
      *type = SAM2_MODEL_TYPE_SAM2;
      return TRUE;
    }
    if (strcmp (name, "sam2_video") == 0) {
      *type = SAM2_MODEL_TYPE_SAM2_VIDEO;
      return TRUE;
    }
    char *what = g_strdup_printf ("model_type \"%s\"", name);
    sam2_config_unsupported_type (what, error);
    g_free (what);
    return FALSE;
  }

  JsonNode *architectures = json_object_get_member (root, "architectures");
  if (architectures != NULL && !JSON_NODE_HOLDS_NULL (architectures)) {
    if (!JSON_NODE_HOLDS_ARRAY (architectures))
      return sam2_config_type_error ("architectures", "a list of strings", architectures, error);
    gboolean found = FALSE;
    if (!sam2_config_model_type_from_architectures (json_node_get_array (architectures), type,
                                                    &found, error))
      return FALSE;
    if (found)
      return TRUE;
  }
  *type = SAM2_MODEL_TYPE_SAM2;
  for (guint i = 0; i < G_N_ELEMENTS (sam2_video_keys); i++)
    if (json_object_has_member (root, sam2_video_keys[i]))
      *type = SAM2_MODEL_TYPE_SAM2_VIDEO;
  return TRUE;
}

static gboolean
sam2_config_parse_root (JsonObject *root, Sam2Config *config, GError **error)
{
  JsonObject *vision, *backbone, *prompt_encoder, *mask_decoder;
  if (!sam2_config_read_model_type (root, &config->model_type, error)
      || !sam2_config_get_object (root, "", "vision_config", &vision, error)
      || !sam2_config_get_object (vision, "vision_config", "backbone_config", &backbone, error)
      || !sam2_config_get_object (root, "", "prompt_encoder_config", &prompt_encoder, error)
      || !sam2_config_get_object (root, "", "mask_decoder_config", &mask_decoder, error)
      || !sam2_config_check_sub_type (vision, "vision_config", "sam2_vision_model", error)
      || !sam2_config_check_sub_type (backbone, "vision_config.backbone_config",
                                      "sam2_hiera_det_model", error))
    return FALSE;

  JsonObject *objects[] = { backbone, vision, prompt_encoder, mask_decoder };
  for (guint i = 0; i < G_N_ELEMENTS (sam2_config_sections); i++)
    if (!sam2_config_parse_section (objects[i], &sam2_config_sections[i], config, error))
      return FALSE;
  return TRUE;
}

gboolean
sam2_config_parse (const char *json, gssize length, Sam2Config *config, GError **error)
{
  g_return_val_if_fail (json != NULL || length == 0, FALSE);
  g_return_val_if_fail (config != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  size_t size = length < 0 ? strlen (json) : (size_t) length;
  if (!sam2_config_check_json (json, size, error))
    return FALSE;

  JsonParser *parser = json_parser_new_immutable ();
  GError *json_error = NULL;
  if (!json_parser_load_from_data (parser, json, (gssize) size, &json_error)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "invalid JSON: %s", json_error->message);
    g_error_free (json_error);
    g_object_unref (parser);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  gboolean ok;
  Sam2Config parsed;
  sam2_config_init_defaults (&parsed);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "expected a JSON object (the config dict), got %s",
                 root != NULL ? sam2_config_node_kind (root) : "nothing");
    ok = FALSE;
  } else {
    ok = sam2_config_parse_root (json_node_get_object (root), &parsed, error)
         && sam2_config_validate (&parsed, error);
  }
  g_object_unref (parser);
  if (ok)
    *config = parsed;
  return ok;
}

gboolean
sam2_config_load (const char *path, Sam2Config *config, GError **error)
{
  g_return_val_if_fail (path != NULL, FALSE);
  char *text = NULL;
  gsize length = 0;
  GError *io_error = NULL;
  if (!g_file_get_contents (path, &text, &length, &io_error)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot read %s: %s", path, io_error->message);
    g_error_free (io_error);
    return FALSE;
  }
  gboolean ok = sam2_config_parse (text, (gssize) length, config, error);
  if (!ok)
    g_prefix_error (error, "%s: ", path);
  g_free (text);
  return ok;
}

/* ---- validation ---------------------------------------------------------------------------- */

static gboolean
sam2_config_check_value (const char *prefix, const char *key, int index, double value,
                         double min, double max, GError **error)
{
  if (value >= min && value <= max)
    return TRUE;
  char *path = index < 0 ? sam2_config_path (prefix, key)
                         : g_strdup_printf ("%s%s%s[%d]", prefix, *prefix ? "." : "", key, index);
  sam2_config_range_error (path, value, min, max, error);
  g_free (path);
  return FALSE;
}

/* Ranges of every field of a section, as the parser enforces them, for configs built in code. */
static gboolean
sam2_config_validate_section (const Sam2Config *config, const Sam2ConfigSection *section,
                              GError **error)
{
  for (guint i = 0; i < section->n_fields; i++) {
    const Sam2ConfigField *f = &section->fields[i];
    const char *p = section->path;
    switch (f->kind) {
    case SAM2_FIELD_INT:
    case SAM2_FIELD_SQUARE:
      if (!sam2_config_check_value (p, f->key, -1, *FIELD_CPTR (config, f, int), f->min, f->max,
                                    error))
        return FALSE;
      break;
    case SAM2_FIELD_PAIR:
      for (int k = 0; k < 2; k++)
        if (!sam2_config_check_value (p, f->key, k, FIELD_CPTR (config, f, int)[k], f->min, f->max,
                                      error))
          return FALSE;
      break;
    case SAM2_FIELD_LIST:
    case SAM2_FIELD_PAIR_LIST: {
      const int n = *COUNT_CPTR (config, f);
      if (n < f->min_len || n > f->max_len) {
        char *path = sam2_config_path (p, f->key);
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s: %d entries; expected %d to %d",
                     path, n, f->min_len, f->max_len);
        g_free (path);
        return FALSE;
      }
      const int per_entry = f->kind == SAM2_FIELD_LIST ? 1 : 2;
      const int *values = FIELD_CPTR (config, f, int);
      for (int k = 0; k < n * per_entry; k++)
        if (!sam2_config_check_value (p, f->key, k / per_entry, values[k], f->min, f->max, error))
          return FALSE;
      break;
    }
    case SAM2_FIELD_INTEGRAL: {
      const double value = *FIELD_CPTR (config, f, double);
      if (value != floor (value)) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s.%s: %.17g is not an integer", p,
                     f->key, value);
        return FALSE;
      }
      if (!sam2_config_check_value (p, f->key, -1, value, f->min, f->max, error))
        return FALSE;
      break;
    }
    case SAM2_FIELD_DOUBLE: {
      const double value = *FIELD_CPTR (config, f, double);
      if (!isfinite (value) || value < f->min || value > f->max) {
        char *path = sam2_config_path (p, f->key);
        sam2_config_range_error (path, value, f->min, f->max, error);
        g_free (path);
        return FALSE;
      }
      break;
    }
    case SAM2_FIELD_BOOL:
      break;
    case SAM2_FIELD_ACT:
      if (sam2_act_name (*FIELD_CPTR (config, f, Sam2Act)) == NULL) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s.%s: unknown activation %d", p,
                     f->key, (int) *FIELD_CPTR (config, f, Sam2Act));
        return FALSE;
      }
      break;
    }
  }
  return TRUE;
}

#define BACKBONE "vision_config.backbone_config"

static gboolean
sam2_config_fail (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
sam2_config_fail (GError **error, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error_literal (error, SAM2_ERROR, SAM2_ERROR_CONFIG, message);
  g_free (message);
  return FALSE;
}

static int
sam2_config_conv_out (int size, int kernel, int stride, int padding)
{
  const gint64 span = (gint64) size + 2 * (gint64) padding - kernel;
  return span < 0 ? 0 : (int) (span / stride + 1);
}

/* Stage sizes for all stages; FALSE (without error) when one would be empty. Assumes the
 * ranges of sam2_config_validate_section, so nothing overflows. */
static gboolean
sam2_config_stage_sizes (const Sam2HieraConfig *b, int sizes[SAM2_MAX_STAGES][2])
{
  for (int axis = 0; axis < 2; axis++) {
    int size = sam2_config_conv_out (b->image_size[axis], b->patch_kernel_size[axis],
                                     b->patch_stride[axis], b->patch_padding[axis]);
    for (int s = 0; s < b->n_stages; s++) {
      if (s > 0 && s <= b->num_query_pool_stages)
        size /= b->query_stride[axis];
      if (size < 1)
        return FALSE;
      sizes[s][axis] = size;
    }
  }
  return TRUE;
}

gboolean
sam2_config_stage_size (const Sam2Config *config, int stage, int *height, int *width)
{
  g_return_val_if_fail (config != NULL, FALSE);
  int sizes[SAM2_MAX_STAGES][2];
  const Sam2HieraConfig *b = &config->vision.backbone;
  if (stage < 0 || stage >= b->n_stages || b->n_stages > SAM2_MAX_STAGES
      || !sam2_config_validate_section (config, &sam2_config_sections[SECTION_BACKBONE], NULL)
      || !sam2_config_stage_sizes (b, sizes))
    return FALSE;
  if (height != NULL)
    *height = sizes[stage][0];
  if (width != NULL)
    *width = sizes[stage][1];
  return TRUE;
}

static gboolean
sam2_config_is_global_block (const Sam2HieraConfig *b, int index)
{
  for (int i = 0; i < b->n_global_attention_blocks; i++)
    if (b->global_attention_blocks[i] == index)
      return TRUE;
  return FALSE;
}

static gboolean
sam2_config_validate_stages (const Sam2HieraConfig *b, GError **error)
{
  int total = 0;
  for (int s = 0; s < b->n_stages; s++) {
    if (b->embed_dim_per_stage[s] % b->num_attention_heads_per_stage[s] != 0)
      return sam2_config_fail (error, BACKBONE ".embed_dim_per_stage[%d] (%d) is not divisible by "
                               "num_attention_heads_per_stage[%d] (%d)", s,
                               b->embed_dim_per_stage[s], s, b->num_attention_heads_per_stage[s]);
    /* Python's int() truncation, as HF sizes the MLP */
    const double hidden = floor (b->embed_dim_per_stage[s] * b->mlp_ratio);
    if (hidden < 1 || hidden > SAM2_CONFIG_MAX_DIM)
      return sam2_config_fail (error, BACKBONE ".mlp_ratio %.17g gives stage %d an MLP of %.0f "
                               "channels; expected 1 to %d", b->mlp_ratio, s, hidden,
                               SAM2_CONFIG_MAX_DIM);
    total += b->blocks_per_stage[s];
  }
  if (total > SAM2_CONFIG_MAX_BLOCKS)
    return sam2_config_fail (error, BACKBONE ".blocks_per_stage: %d blocks in total; at most %d",
                             total, SAM2_CONFIG_MAX_BLOCKS);
  if (b->hidden_size != b->embed_dim_per_stage[0])
    return sam2_config_fail (error, BACKBONE ".hidden_size (%d) must equal "
                             "embed_dim_per_stage[0] (%d): the patch embedding feeds stage 0",
                             b->hidden_size, b->embed_dim_per_stage[0]);
  if (b->num_channels != 3)
    return sam2_config_fail (error, BACKBONE ".num_channels is %d; only RGB models (3) are "
                             "supported", b->num_channels);
  return TRUE;
}

/* Query pooling at the start of stages 1 .. num_query_pool_stages: the first block still
 * attends in the previous stage's windows, pools inside them and unpartitions the result with
 * windows shrunk by query_stride[0], next to a residual pooled through the projection. Where
 * these disagree transformers fails (modulo by zero, view errors) or silently mixes windows
 * into the batch, so there is no reference to match. */
static gboolean
sam2_config_validate_pooling (const Sam2HieraConfig *b, int sizes[SAM2_MAX_STAGES][2],
                              GError **error)
{
  const int q = b->query_stride[0];
  if (b->query_stride[1] != q)
    return sam2_config_fail (error, BACKBONE ".query_stride [%d, %d] is not square; transformers "
                             "shrinks the attention windows by query_stride[0] on both axes",
                             q, b->query_stride[1]);
  int first_block = 0;
  for (int s = 0; s < b->n_stages; s++) {
    const gboolean pooled = s > 0 && s <= b->num_query_pool_stages;
    if (pooled && sam2_config_is_global_block (b, first_block))
      return sam2_config_fail (error, BACKBONE ".global_attention_blocks: block %d starts "
                               "query-pooling stage %d and cannot attend globally (transformers "
                               "divides by its window size, 0)", first_block, s);
    if (pooled && q > 1 && b->embed_dim_per_stage[s] == b->embed_dim_per_stage[s - 1])
      return sam2_config_fail (error, BACKBONE ".embed_dim_per_stage: stage %d pools queries "
                               "but keeps %d channels; transformers pools the residual only "
                               "through the projection a channel change adds", s,
                               b->embed_dim_per_stage[s]);
    if (pooled) {
      const int window = b->window_size_per_stage[s - 1], pooled_window = window / q;
      for (int axis = 0; axis < 2; axis++) {
        const int in = sizes[s - 1][axis], out = sizes[s][axis];
        if (pooled_window < 1
            || (out + pooled_window - 1) / pooled_window != (in + window - 1) / window)
          return sam2_config_fail (error, BACKBONE ".window_size_per_stage[%d] (%d) with "
                                   "query_stride %d does not tile stage %d: its %dx%d grid "
                                   "pools to %dx%d", s - 1, window, q, s, sizes[s - 1][0],
                                   sizes[s - 1][1], sizes[s][0], sizes[s][1]);
      }
    }
    first_block += b->blocks_per_stage[s];
  }
  return TRUE;
}

static gboolean
sam2_config_validate_backbone (const Sam2Config *config, int sizes[SAM2_MAX_STAGES][2],
                               GError **error)
{
  const Sam2HieraConfig *b = &config->vision.backbone;
  const int side = config->prompt_encoder.image_size;
  if (!sam2_config_validate_stages (b, error))
    return FALSE;
  if (b->image_size[0] != side || b->image_size[1] != side)
    return sam2_config_fail (error, BACKBONE ".image_size [%d, %d] must be the square input "
                             "side prompt_encoder_config.image_size (%d): transformers runs the "
                             "backbone on the processor's square input and ignores this key, "
                             "while the prompt encoder places points on that side",
                             b->image_size[0], b->image_size[1], side);
  if (!sam2_config_stage_sizes (b, sizes))
    return sam2_config_fail (error, BACKBONE ": a %dx%d input leaves no pixels for some stage "
                             "(patch kernel %dx%d, stride %dx%d, padding %dx%d, query stride "
                             "%dx%d)", b->image_size[0], b->image_size[1],
                             b->patch_kernel_size[0], b->patch_kernel_size[1], b->patch_stride[0],
                             b->patch_stride[1], b->patch_padding[0], b->patch_padding[1],
                             b->query_stride[0], b->query_stride[1]);
  const int w0 = b->window_size_per_stage[0];
  if (sizes[0][0] % w0 != 0 || sizes[0][1] % w0 != 0)
    return sam2_config_fail (error, BACKBONE ".window_size_per_stage[0] (%d) must divide the "
                             "%dx%d patch grid: the window position embedding is tiled over it",
                             w0, sizes[0][0], sizes[0][1]);
  for (int s = 0; s < b->n_stages; s++) {
    /* the stage's first block still works on the previous stage's grid, padded to whole
     * windows, and its qkv or MLP output is the widest tensor there */
    const int in = s > 0 ? s - 1 : 0;
    const int window = MAX (b->window_size_per_stage[in], b->window_size_per_stage[s]);
    const double mlp = floor (b->embed_dim_per_stage[s] * b->mlp_ratio);
    const double widest = fmax (mlp, 3.0 * b->embed_dim_per_stage[s]);
    const double elements = (double) (sizes[in][0] + window - 1) * (sizes[in][1] + window - 1)
                            * widest;
    if (elements > SAM2_CONFIG_MAX_ELEMENTS)
      return sam2_config_fail (error, BACKBONE ": stage %d would hold %.0f values in one "
                               "feature map, more than %d", s, elements,
                               SAM2_CONFIG_MAX_ELEMENTS);
  }
  return sam2_config_validate_pooling (b, sizes, error);
}

static gboolean
sam2_config_validate_neck (const Sam2Config *config, int stage_sizes[SAM2_MAX_STAGES][2],
                           GError **error)
{
  const Sam2VisionConfig *v = &config->vision;
  const Sam2HieraConfig *b = &v->backbone;
  const int n = b->n_stages;

  gboolean channels_match = v->n_backbone_channels == n;
  for (int i = 0; channels_match && i < n; i++)
    channels_match = v->backbone_channel_list[i] == b->embed_dim_per_stage[n - 1 - i];
  if (!channels_match) {
    GString *expected = g_string_new (NULL);
    for (int i = 0; i < n; i++)
      g_string_append_printf (expected, "%s%d", i > 0 ? ", " : "",
                              b->embed_dim_per_stage[n - 1 - i]);
    sam2_config_fail (error, "vision_config.backbone_channel_list must be [%s], "
                      "embed_dim_per_stage reversed: the neck convs take the backbone's stage "
                      "outputs, deepest first", expected->str);
    g_string_free (expected, TRUE);
    return FALSE;
  }
  if (v->num_feature_levels != 3)
    return sam2_config_fail (error, "vision_config.num_feature_levels is %d; SAM2's mask decoder "
                             "takes exactly 3 (two high-resolution maps and the image embedding)",
                             v->num_feature_levels);
  if (n < v->num_feature_levels)
    return sam2_config_fail (error, "vision_config.num_feature_levels (%d) exceeds the %d "
                             "backbone stages", v->num_feature_levels, n);

  int sizes[SAM2_MAX_STAGES][2];
  for (int s = 0; s < n; s++)
    for (int axis = 0; axis < 2; axis++) {
      sizes[s][axis] = sam2_config_conv_out (stage_sizes[s][axis], v->fpn_kernel_size,
                                             v->fpn_stride, v->fpn_padding);
      if (sizes[s][axis] < 1)
        return sam2_config_fail (error, "vision_config: the FPN conv (kernel %d, stride %d, "
                                 "padding %d) leaves nothing of stage %d's %dx%d map",
                                 v->fpn_kernel_size, v->fpn_stride, v->fpn_padding, s,
                                 stage_sizes[s][0], stage_sizes[s][1]);
    }
  for (int i = 0; i < v->n_fpn_top_down_levels; i++) {
    const int level = v->fpn_top_down_levels[i];
    if (level >= n)
      return sam2_config_fail (error, "vision_config.fpn_top_down_levels[%d] is %d; levels are "
                               "stages 0 to %d", i, level, n - 1);
    if (level < n - 1 && (sizes[level][0] != 2 * sizes[level + 1][0]
                          || sizes[level][1] != 2 * sizes[level + 1][1]))
      return sam2_config_fail (error, "vision_config.fpn_top_down_levels: level %d (%dx%d) is "
                               "not twice level %d (%dx%d), so the 2x upsampled top-down "
                               "features cannot be added", level, sizes[level][0],
                               sizes[level][1], level + 1, sizes[level + 1][0],
                               sizes[level + 1][1]);
  }
  if (v->n_backbone_feature_sizes != v->num_feature_levels)
    return sam2_config_fail (error, "vision_config.backbone_feature_sizes has %d entries for %d "
                             "feature levels", v->n_backbone_feature_sizes,
                             v->num_feature_levels);
  for (int level = 0; level < v->num_feature_levels; level++)
    if (v->backbone_feature_sizes[level][0] != sizes[level][0]
        || v->backbone_feature_sizes[level][1] != sizes[level][1])
      return sam2_config_fail (error, "vision_config.backbone_feature_sizes[%d] is [%d, %d] but "
                               "the backbone produces %dx%d maps at that level for a %dx%d "
                               "input", level, v->backbone_feature_sizes[level][0],
                               v->backbone_feature_sizes[level][1], sizes[level][0],
                               sizes[level][1], b->image_size[0], b->image_size[1]);
  return TRUE;
}

static gboolean
sam2_config_validate_heads (const Sam2Config *config, GError **error)
{
  const Sam2VisionConfig *v = &config->vision;
  const Sam2PromptEncoderConfig *p = &config->prompt_encoder;
  const Sam2MaskDecoderConfig *d = &config->mask_decoder;

  if (p->hidden_size != v->fpn_hidden_size || d->hidden_size != v->fpn_hidden_size)
    return sam2_config_fail (error, "prompt_encoder_config.hidden_size (%d), "
                             "mask_decoder_config.hidden_size (%d) and "
                             "vision_config.fpn_hidden_size (%d) must be equal: prompts, "
                             "decoder and image features share one embedding space",
                             p->hidden_size, d->hidden_size, v->fpn_hidden_size);
  if (d->hidden_size % 8 != 0)
    return sam2_config_fail (error, "mask_decoder_config.hidden_size (%d) must be divisible by "
                             "8: the upscaling convs output hidden_size / 4 and / 8 channels",
                             d->hidden_size);
  const gint64 per_head = (gint64) d->attention_downsample_rate * d->num_attention_heads;
  if (d->hidden_size % per_head != 0)
    return sam2_config_fail (error, "mask_decoder_config.hidden_size (%d) must be divisible by "
                             "attention_downsample_rate * num_attention_heads (%d * %d)",
                             d->hidden_size, d->attention_downsample_rate,
                             d->num_attention_heads);
  if (p->image_size % p->patch_size != 0)
    return sam2_config_fail (error, "prompt_encoder_config.image_size (%d) is not a multiple of "
                             "patch_size (%d)", p->image_size, p->patch_size);
  const int side = p->image_size / p->patch_size;
  const int (*sizes)[2] = v->backbone_feature_sizes;
  const int last = v->num_feature_levels - 1;
  if (sizes[last][0] != side || sizes[last][1] != side)
    return sam2_config_fail (error, "prompt_encoder_config: image_size / patch_size is %d but "
                             "the image embedding is %dx%d", side, sizes[last][0],
                             sizes[last][1]);
  for (int level = 0; level < last; level++) {
    const int scale = 1 << (last - level);
    if (sizes[level][0] != scale * side || sizes[level][1] != scale * side)
      return sam2_config_fail (error, "vision_config.backbone_feature_sizes[%d] is [%d, %d]; the "
                               "mask decoder upsamples the %dx%d embedding onto it, so it must "
                               "be %dx%d", level, sizes[level][0], sizes[level][1], side, side,
                               scale * side, scale * side);
  }
  if (p->mask_input_channels % 4 != 0)
    return sam2_config_fail (error, "prompt_encoder_config.mask_input_channels (%d) must be "
                             "divisible by 4: the mask embedding's first conv has a quarter of "
                             "them", p->mask_input_channels);
  return TRUE;
}

gboolean
sam2_config_validate (const Sam2Config *config, GError **error)
{
  g_return_val_if_fail (config != NULL, FALSE);
  if (config->model_type != SAM2_MODEL_TYPE_SAM2
      && config->model_type != SAM2_MODEL_TYPE_SAM2_VIDEO)
    return sam2_config_fail (error, "unknown model type %d", (int) config->model_type);
  for (guint i = 0; i < G_N_ELEMENTS (sam2_config_sections); i++)
    if (!sam2_config_validate_section (config, &sam2_config_sections[i], error))
      return FALSE;
  int sizes[SAM2_MAX_STAGES][2];
  return sam2_config_validate_backbone (config, sizes, error)
         && sam2_config_validate_neck (config, sizes, error)
         && sam2_config_validate_heads (config, error);
}

/* ---- comparison ----------------------------------------------------------------------------- */

static gboolean
sam2_config_field_equal (const Sam2Config *a, const Sam2Config *b, const Sam2ConfigField *f)
{
  switch (f->kind) {
  case SAM2_FIELD_INT:
  case SAM2_FIELD_SQUARE:
    return *FIELD_CPTR (a, f, int) == *FIELD_CPTR (b, f, int);
  case SAM2_FIELD_PAIR:
    return memcmp (FIELD_CPTR (a, f, int), FIELD_CPTR (b, f, int), 2 * sizeof (int)) == 0;
  case SAM2_FIELD_LIST:
  case SAM2_FIELD_PAIR_LIST: {
    const int n = *COUNT_CPTR (a, f);
    if (n != *COUNT_CPTR (b, f))
      return FALSE;
    const int per_entry = f->kind == SAM2_FIELD_LIST ? 1 : 2;
    const int k = CLAMP (n, 0, f->max_len) * per_entry;
    return memcmp (FIELD_CPTR (a, f, int), FIELD_CPTR (b, f, int), k * sizeof (int)) == 0;
  }
  case SAM2_FIELD_INTEGRAL:
  case SAM2_FIELD_DOUBLE:
    return *FIELD_CPTR (a, f, double) == *FIELD_CPTR (b, f, double);
  case SAM2_FIELD_BOOL:
    return !*FIELD_CPTR (a, f, gboolean) == !*FIELD_CPTR (b, f, gboolean);
  case SAM2_FIELD_ACT:
    return *FIELD_CPTR (a, f, Sam2Act) == *FIELD_CPTR (b, f, Sam2Act);
  }
  g_return_val_if_reached (FALSE);
}

gboolean
sam2_config_equal (const Sam2Config *a, const Sam2Config *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);
  if (a->model_type != b->model_type)
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (sam2_config_sections); i++) {
    const Sam2ConfigSection *section = &sam2_config_sections[i];
    for (guint j = 0; j < section->n_fields; j++)
      if (!sam2_config_field_equal (a, b, &section->fields[j]))
        return FALSE;
  }
  return TRUE;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* The shortest decimal that reads back to the same double, with a '.' or an exponent so Python
 * reads a float (HF's strict dataclasses refuse an int for a float field). */
static void
sam2_config_append_double (GString *out, double value)
{
  if (!isfinite (value)) {
    /* not JSON; only reachable for an invalid config, which then fails to parse back */
    g_string_append (out, isnan (value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
    return;
  }
  char buffer[G_ASCII_DTOSTR_BUF_SIZE];
  for (int precision = 1; precision <= 17; precision++) {
    char format[8];
    g_snprintf (format, sizeof format, "%%.%dg", precision);
    g_ascii_formatd (buffer, sizeof buffer, format, value);
    if (g_ascii_strtod (buffer, NULL) == value)
      break;
  }
  g_string_append (out, buffer);
  if (strpbrk (buffer, ".eE") == NULL)
    g_string_append (out, ".0");
}

static void
sam2_config_append_ints (GString *out, const int *values, int n)
{
  g_string_append_c (out, '[');
  for (int i = 0; i < n; i++)
    g_string_append_printf (out, "%s%d", i > 0 ? ", " : "", values[i]);
  g_string_append_c (out, ']');
}

static void
sam2_config_append_key (GString *out, int indent, const char *key)
{
  g_string_append_printf (out, "%*s\"%s\": ", indent, "", key);
}

static void
sam2_config_append_field (GString *out, const Sam2Config *config, const Sam2ConfigField *f)
{
  switch (f->kind) {
  case SAM2_FIELD_INT:
  case SAM2_FIELD_SQUARE:
    g_string_append_printf (out, "%d", *FIELD_CPTR (config, f, int));
    break;
  case SAM2_FIELD_PAIR:
    sam2_config_append_ints (out, FIELD_CPTR (config, f, int), 2);
    break;
  case SAM2_FIELD_LIST:
    sam2_config_append_ints (out, FIELD_CPTR (config, f, int),
                             CLAMP (*COUNT_CPTR (config, f), 0, f->max_len));
    break;
  case SAM2_FIELD_PAIR_LIST: {
    const int (*pairs)[2] = FIELD_CPTR (config, f, Sam2IntPair);
    const int n = CLAMP (*COUNT_CPTR (config, f), 0, f->max_len);
    g_string_append_c (out, '[');
    for (int i = 0; i < n; i++) {
      g_string_append (out, i > 0 ? ", " : "");
      sam2_config_append_ints (out, pairs[i], 2);
    }
    g_string_append_c (out, ']');
    break;
  }
  case SAM2_FIELD_INTEGRAL: {
    const double value = *FIELD_CPTR (config, f, double);
    if (value == floor (value) && fabs (value) < 1e15)
      g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64) value);
    else
      sam2_config_append_double (out, value);
    break;
  }
  case SAM2_FIELD_DOUBLE:
    sam2_config_append_double (out, *FIELD_CPTR (config, f, double));
    break;
  case SAM2_FIELD_BOOL:
    g_string_append (out, *FIELD_CPTR (config, f, gboolean) ? "true" : "false");
    break;
  case SAM2_FIELD_ACT: {
    const char *name = sam2_act_name (*FIELD_CPTR (config, f, Sam2Act));
    if (name != NULL)
      g_string_append_printf (out, "\"%s\"", name);
    else
      g_string_append (out, "null");
    break;
  }
  }
}

/* The fields of a section as members of an open object; `model_type` (may be NULL) and the
 * backbone (for vision_config) follow. Ends without a newline or comma. */
static void
sam2_config_append_section (GString *out, const Sam2Config *config, int section, int indent)
{
  static const char *const model_types[] = {
    [SECTION_BACKBONE] = "sam2_hiera_det_model",
    [SECTION_VISION] = "sam2_vision_model",
  };
  const Sam2ConfigSection *s = &sam2_config_sections[section];
  for (guint i = 0; i < s->n_fields; i++) {
    sam2_config_append_key (out, indent, s->fields[i].key);
    sam2_config_append_field (out, config, &s->fields[i]);
    g_string_append (out, ",\n");
  }
  if (section == SECTION_VISION) {
    sam2_config_append_key (out, indent, "backbone_config");
    g_string_append (out, "{\n");
    sam2_config_append_section (out, config, SECTION_BACKBONE, indent + 2);
    g_string_append_printf (out, "\n%*s},\n", indent, "");
  }
  sam2_config_append_key (out, indent, "model_type");
  g_string_append_printf (out, "\"%s\"", section < (int) G_N_ELEMENTS (model_types)
                          ? model_types[section] : "");
}

char *
sam2_config_to_json (const Sam2Config *config)
{
  g_return_val_if_fail (config != NULL, NULL);
  static const struct {
    const char *key;
    int section;
  } members[] = {
    { "vision_config", SECTION_VISION },
    { "prompt_encoder_config", SECTION_PROMPT_ENCODER },
    { "mask_decoder_config", SECTION_MASK_DECODER },
  };
  GString *out = g_string_new ("{\n  \"architectures\": [\"Sam2Model\"],\n"
                               "  \"model_type\": \"sam2\",\n");
  for (guint i = 0; i < G_N_ELEMENTS (members); i++) {
    sam2_config_append_key (out, 2, members[i].key);
    g_string_append (out, "{\n");
    sam2_config_append_section (out, config, members[i].section, 4);
    g_string_append (out, i + 1 < G_N_ELEMENTS (members) ? "\n  },\n" : "\n  }\n");
  }
  g_string_append (out, "}\n");
  return g_string_free (out, FALSE);
}
