/* quantize.h: the calibrator's internals that tests and tools look at: which layers a recipe
 * quantizes, and what quantization did to each (output error on calibration samples). */
#ifndef SAM2_QUANT_QUANTIZE_H
#define SAM2_QUANT_QUANTIZE_H

#include "model.h"
#include "observers.h"
#include "recipe.h"

G_BEGIN_DECLS

typedef struct {
  char *name;                  /* HF layer name */
  int n, k;
  double alpha;                /* smoothing strength used; NaN without smoothing */
  gboolean folded;             /* smoothing folded into the preceding LayerNorm */
  int rank;                    /* low-rank branch rank (0: none) */
  double rtn_error;            /* relative output error of plain RTN, same smoothing and act mode */
  double error;                /* relative output error of the layer as quantized */
  int dead_channels;           /* input channels zero on every calibration row: GPTQ sets their
                                * weights to 0 (they carried no information on these frames) */
} Sam2LayerReport;

/* Whether the recipe quantizes layer l of model m (structural skips, patterns; the prompt
 * encoder always stays float). */
gboolean sam2_recipe_quantizes (const Sam2Recipe *recipe, const Sam2Model *m, const Sam2Linear *l);

/* After sam2_calibrator_quantize: one report per quantized layer, in model order. */
const GPtrArray *sam2_calibrator_get_report (const Sam2Calibrator *c);

/* Relative output error ||y_q - y|| / ||y|| of the quantized layer q against the float layer l
 * on rows x (m, k) of its float input (smoothing folded into a norm is applied by dividing x by
 * `folded_s` when not NULL). */
double sam2_quant_layer_error (const Sam2Linear *l, const Sam2QuantLinear *q, const float *x,
                               int m, const float *folded_s);

G_END_DECLS

#endif
