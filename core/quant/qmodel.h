/* qmodel.h: quantized models, built in memory from a quantization plan, saved to and loaded
 * from one .safetensors file that any safetensors tool can read.
 *
 * The file holds:
 *   - every float tensor of the model under its HF name (matrices as F16, vectors as F32; all
 *     F32 when the recipe keeps float layers in float32),
 *     including LayerNorms with smoothing folded in and the biases of quantized layers;
 *   - for each quantized layer <name>: <name>.qweight (U8, packed 4-bit codes, formats.h),
 *     <name>.scales (F16), <name>.zeros (U8), and when present <name>.smooth_inv (F32),
 *     <name>.lora_down and <name>.lora_up (F16);
 *   - metadata: "format" = "sam2-gst.quantized", "format_version", "config" (config.json of the
 *     architecture), "recipe" (the resolved YAML), "provenance" (JSON: source model and digest,
 *     calibration frames and digest, tool version, date) and "layers" (JSON: per quantized layer
 *     its weight type, group size, activation mode, static activation range, rank).
 * Writing is atomic (temporary file + rename). Loading checks the format version and every shape.
 */
#ifndef SAM2_QUANT_QMODEL_H
#define SAM2_QUANT_QMODEL_H

#include "model.h"

G_BEGIN_DECLS

#define SAM2_QMODEL_FORMAT "sam2-gst.quantized"
#define SAM2_QMODEL_VERSION 1

/* What a quantizer decided, before it becomes a model. */
typedef struct {
  GHashTable *layers;          /* layer name -> Sam2QuantLinear * */
  GHashTable *overrides;       /* tensor name -> float * replacing the float model's values */
  char *recipe_yaml;
  char *provenance_json;
  gboolean keep_float32;       /* float tensors stay F32 (else matrices become F16) */
} Sam2QuantPlan;

Sam2QuantPlan *sam2_quant_plan_new (void);
void sam2_quant_plan_free (Sam2QuantPlan *plan);

/* The quantized model of `fp` under `plan`; the plan's layers move into the model (the plan may
 * be freed afterwards). Float tensors the plan does not quantize are rounded to F16 when they are
 * matrices (unless plan->keep_float32), exactly as a saved file stores them, so the model in
 * memory equals the loaded file. */
Sam2Model *sam2_qmodel_build (Sam2Model *fp, Sam2QuantPlan *plan, GError **error);

gboolean sam2_qmodel_save (const Sam2Model *model, const char *path, GError **error);
/* Whether `path` is a quantized model file (by its metadata; FALSE for anything unreadable). */
gboolean sam2_qmodel_file_check (const char *path);
Sam2Model *sam2_qmodel_load (const char *path, GError **error);

/* Whether layer `name` can be stored as the file reader accepts it back: finite parameters
 * (positive scales within FP16's range, zero points of 4 bits, static activation parameters a
 * float and the 8-bit codes hold, finite smoothing divisors and low-rank factors); otherwise an
 * error naming the layer and what to do. The quantizer checks each layer as it makes it, and
 * sam2_qmodel_save before it writes. */
gboolean sam2_qmodel_layer_check (const char *name, const Sam2QuantLinear *q, GError **error);

/* Quantized layers: allocation of the optional parts, and freeing (NULL-safe). */
Sam2QuantLinear *sam2_quant_linear_new (void);
void sam2_quant_linear_free (Sam2QuantLinear *q);

/* For `sam2q info`: what is quantized and how (4-bit layers, weight types and groups,
 * activation modes, low-rank branches), the recipe's name and the provenance (calibration
 * frames and their digest, source model, tool, date), as lines of text; "" for a float model.
 * The metadata comes from the file: what cannot be read is left out, never trusted. */
char *sam2_qmodel_describe (const Sam2Model *model);

/* Bytes the model's weights take in the file format (for size and compression reports), and the
 * same model's bytes in FP16. */
size_t sam2_qmodel_weight_bytes (const Sam2Model *model);
size_t sam2_model_fp16_bytes (const Sam2Model *model);

G_END_DECLS

#endif
