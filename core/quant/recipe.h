/* recipe.h: quantization recipes, YAML files in the style of DeepCompressor.
 *
 *   quant:
 *     wgts:                        # 4-bit weights
 *       dtype: sint4               # sint4 | uint4
 *       group_shapes: [[1, 128]]   # [1, -1] = one group per output channel; or group_size: 128
 *       kernel_gptq:               # `kernel_gptq: false` (or null) = round to nearest (RTN)
 *         damp_percentage: 0.01
 *         block_size: 128
 *         act_order: true          # with static groups: no permutation at inference
 *         num_inv_tries: 10        # Cholesky retries, damping x10 each time
 *       calib_range:               # clipping search per (row, group); absent, false or null =
 *         max_shrink: 0.2          #   min-max ranges. Ranges 1, 1 - 0.2/20, ..., 0.8 of min-max
 *         num_grids: 20            #   are tried and the smallest error kept; the error is
 *         objective: products_error#   products_error (sum E[x^2] (w - q(w))^2, from the
 *                                  #   calibration Hessian's diagonal) or tensor_error (of w)
 *     ipts:                        # 8-bit activations; `ipts: null` or dtype: null = weight-only
 *       dtype: sint8               # sint8 | uint8
 *       granularity: per_token     # per_token (dynamic) | per_tensor (static, from calibration)
 *       post_gelu: asymmetric      # asymmetric (uint8 + zero point) | symmetric (sint8 only),
 *                                  #   for inputs after GELU
 *   smooth:                        # SmoothQuant; absent = off; needs quantized activations
 *     alpha: 0.5                   # a number in [0, 1], or `search` (grid over [0, 1] by output error)
 *     grid: 20
 *     fold: true                   # fold 1 / s into the preceding LayerNorm where there is one
 *   low_rank:                      # SVDQuant branch; absent or rank 0 = off
 *     rank: 32
 *     exclusive: false             # true: separate branches for the q, k, v slices of a fused qkv
 *     compensate: false            # true: decompose the quantization error instead of the weight
 *   calib:
 *     num_samples: 128
 *     batch_size: 1                # frames per encoder pass, 1 to 32 (same statistics; for a GPU)
 *     max_tokens: 4096             # tokens per frame and layer entering the Hessians (0 = all)
 *     keep_tokens: 512             # tokens per layer kept for error measurement and alpha search
 *     seed: 0
 *   skips:                         # layers kept in floating point
 *     patch_embed: true            # also the short keys skip_patch_embed, skip_first_block,
 *     first_block: false           #   skip_last_block, skip_decoder at the top level
 *     last_block: false
 *     decoder: true
 *     patterns: ["*.attn.proj"]    # glob patterns of HF layer names (fnmatch)
 *     dtype: float16               # how layers kept in floating point are stored: float16 halves
 *                                  #   them; float32 keeps them exactly as the float model
 *
 * Top-level short keys accepted as well: group_shapes, group_size, skip_patch_embed,
 * skip_first_block, skip_last_block, skip_decoder; `quant.smooth` and `quant.wgts.low_rank` are
 * accepted for `smooth` and `low_rank`. Every key is checked: an unknown key, a wrong type or an
 * out-of-range value is an error naming the key path and its line and column in the file.
 */
#ifndef SAM2_QUANT_RECIPE_H
#define SAM2_QUANT_RECIPE_H

#include "formats.h"

G_BEGIN_DECLS

typedef struct {
  Sam2QType dtype;             /* UINT4 or SINT4 */
  int group_size;              /* 0: one group per output channel (the whole K) */
  gboolean gptq;
  double gptq_damp;            /* fraction of the mean Hessian diagonal added to it */
  int gptq_block;
  gboolean gptq_act_order;
  int gptq_inv_tries;
  gboolean range_search;       /* calib_range: clipping range searched per (row, group) */
  double range_max_shrink;     /* the range shrinks down to 1 - max_shrink of min-max */
  int range_grids;             /* in this many steps */
  gboolean range_products;     /* objective: products_error (TRUE) or tensor_error */
} Sam2WeightRecipe;

typedef struct {
  Sam2QType dtype;             /* NONE (weight-only), UINT8 or SINT8 */
  gboolean per_tensor;         /* static scales from calibration instead of per token */
  gboolean post_gelu_asymmetric;
} Sam2ActRecipe;

typedef struct {
  gboolean enabled;
  double alpha;                /* when !search */
  gboolean search;
  int grid;
  gboolean fold;
} Sam2SmoothRecipe;

typedef struct {
  int rank;                    /* 0: off */
  gboolean exclusive;
  gboolean compensate;
} Sam2LowRankRecipe;

typedef struct {
  int num_samples;
  int batch_size;
  int max_tokens;              /* 0: all */
  int keep_tokens;
  guint64 seed;
} Sam2CalibRecipe;

typedef struct {
  gboolean patch_embed;
  gboolean first_block;
  gboolean last_block;
  gboolean decoder;
  char **patterns;             /* NULL-terminated, may be NULL */
  gboolean keep_float32;       /* float layers stored as F32 instead of F16 */
} Sam2SkipRecipe;

typedef struct _Sam2Recipe {
  char *name;                  /* file name without extension, or "default" */
  Sam2WeightRecipe wgts;
  Sam2ActRecipe ipts;
  Sam2SmoothRecipe smooth;
  Sam2LowRankRecipe low_rank;
  Sam2CalibRecipe calib;
  Sam2SkipRecipe skips;
} Sam2Recipe;

/* W4 (SINT4, groups of 128, GPTQ with act order), A8 per token, no smoothing, no low rank,
 * 128 calibration samples, patch embedding and mask decoder kept in float. Overwrites the whole
 * struct, name "default" included (owned: release with sam2_recipe_clear). */
void sam2_recipe_init_defaults (Sam2Recipe *recipe);
/* Frees what a recipe owns (name, patterns) and sets them to NULL, for recipes not allocated by
 * this API (on the stack, inside another struct); NULL is a no-op. */
void sam2_recipe_clear (Sam2Recipe *recipe);

/* Parses YAML text; `source` names it in errors (a path, or "<string>"; NULL = "<string>") and
 * gives the recipe its name (the file name without directory and extension; "custom" for a
 * source in <...>). Keys absent from the text keep the defaults above (so GPTQ stays on unless
 * `kernel_gptq: false`). Errors: SAM2_ERROR_CONFIG,
 * "<source>:<line>:<column>: <key.path>: <what is wrong; what is accepted>". recipe.c lists the
 * reading rules (booleans, null, numbers, aliases, limits). */
Sam2Recipe *sam2_recipe_parse (const char *text, gssize length, const char *source,
                               GError **error);
/* The same from a file; SAM2_ERROR_IO when it cannot be read. */
Sam2Recipe *sam2_recipe_load (const char *path, GError **error);
Sam2Recipe *sam2_recipe_copy (const Sam2Recipe *recipe);
void sam2_recipe_free (Sam2Recipe *recipe);

/* The fully resolved recipe as YAML (every key, defaults included), which sam2_recipe_parse
 * reads back to an equal recipe; stored in quantized model files. Free with g_free. */
char *sam2_recipe_to_yaml (const Sam2Recipe *recipe);
/* The same with calib.batch_size left at 1: what calibration statistics depend on (a batch
 * changes how frames are run, not what is drawn from them), for statistics caches' keys. */
char *sam2_recipe_statistics_yaml (const Sam2Recipe *recipe);
/* The recipe's name as sam2_recipe_to_yaml's first line gives it (escaped, printable ASCII), or
 * NULL when `yaml` (a quantized file's metadata: untrusted) does not start with that line. */
char *sam2_recipe_yaml_name (const char *yaml);
/* Whether two recipes quantize alike: the name is not compared, nor settings of a feature that is
 * off (GPTQ, smoothing) or unused (alpha when searched); NULL and empty pattern lists are equal. */
gboolean sam2_recipe_equal (const Sam2Recipe *a, const Sam2Recipe *b);

/* Whether the HF layer `name` is kept in float under the recipe's patterns (the structural skips
 * patch_embed / first / last block / decoder are applied by the quantizer, which knows the model). */
gboolean sam2_recipe_pattern_skips (const Sam2Recipe *recipe, const char *layer_name);

G_END_DECLS

#endif
