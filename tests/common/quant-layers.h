/* quant-layers.h: random W4A8 layers, inputs and cases for the tests of the quantized linear
 * layer (tests/core/test-quant-linear.c, tests/cuda/test-cuda-w4a8.c), and the layers' cleanup
 * for the benchmarks (benchmarks/bench-w4a8.c). Every value comes from the GRand passed in (a
 * case's seed), drawn in a fixed order: a seed always gives the same layer and input. */
#ifndef SAM2_TEST_QUANT_LAYERS_H
#define SAM2_TEST_QUANT_LAYERS_H

#include <glib.h>
#include "formats.h"
#include "linear-cpu.h"

/* A random layer's shape and options (sam2_test_layer_new). */
typedef struct {
  int N, K, G;                 /* G 0: one group of K */
  Sam2QType dtype;
  Sam2ActQuantMode mode;
  gboolean bias, smooth;
  int rank;
  gboolean dyadic;             /* every value a small multiple of a power of two */
} Sam2TestLayerSpec;

/* How a case passes the residual to the layer. */
typedef enum {
  SAM2_TEST_RES_NONE,
  SAM2_TEST_RES_SEPARATE,
  SAM2_TEST_RES_IN_PLACE,      /* residual == y */
} Sam2TestResidual;

/* One case of the layer tests: a layer, M rows of input drawn from the seed, the activation and
 * the residual. */
typedef struct {
  Sam2TestLayerSpec spec;
  int M;
  Sam2Act act;
  Sam2TestResidual res;
  guint32 seed;
} Sam2TestCase;

/* Names for messages, indexed by Sam2ActQuantMode and by Sam2Act. */
extern const char *const sam2_test_mode_names[];
extern const char *const sam2_test_act_names[];

/* The asymmetric modes (token or tensor); the static (per-tensor) ones. */
gboolean sam2_test_mode_asym (Sam2ActQuantMode m);
gboolean sam2_test_mode_static (Sam2ActQuantMode m);

/* A standard normal sample (Box-Muller, two draws). */
double sam2_test_gauss (GRand *r);

/* A layer of the shape and options of `s`: codes uniform in 0..15; per group, scales
 * 0.01 e^u (u uniform in [-1, 1]) and zero points uniform in 0..15 (SINT4: SAM2_SINT4_ZERO);
 * bias uniform in [-1, 1]; smooth_inv e^u (u in [-1.4, 1.4]); L_down Gaussian / sqrt(K), L_up
 * 0.1 Gaussian / sqrt(rank). Dyadic: scales 2^-2..2^0, bias multiples of 1/4 in [-4, 4],
 * smooth_inv 2^-1..2^1, the low-rank factors multiples of 1/2 in [-1, 1]. Free with
 * sam2_test_layer_free. */
Sam2QuantLinear *sam2_test_layer_new (GRand *r, const Sam2TestLayerSpec *s);

/* Frees a layer whose arrays are g_malloc'ed (prepared or not); any of them may be NULL. */
void sam2_test_layer_free (Sam2QuantLinear *q);

/* (M, K) activations for `q`, rows of kinds the quantizer must get right, by m % 8: Gaussian,
 * Gaussian with outlier channels, post-GELU-like (skewed, mostly positive), all zeros, all
 * positive, all negative, half-integer multiples of the scale (ties, exactly, when smoothing is
 * off or dyadic), wide. M = 1 gets a Gaussian row. g_free the result. */
float *sam2_test_input_new (GRand *r, const Sam2QuantLinear *q, int M);

/* Static (per-tensor) parameters as a calibration would set them from x (M, K), at 0.8 of the
 * range so that the largest values clamp; nothing for the dynamic modes. */
void sam2_test_set_static_params (Sam2QuantLinear *q, const float *x, int M);

/* A case's layer and data, drawn in this order from a GRand seeded with c->seed: the layer
 * (sam2_test_layer_new), x (M, K) (sam2_test_input_new), the static parameters from x
 * (sam2_test_set_static_params), then a Gaussian residual (M, N), or NULL for
 * SAM2_TEST_RES_NONE. g_free *x and *residual. */
Sam2QuantLinear *sam2_test_case_new (const Sam2TestCase *c, float **x, float **residual);

/* "M 5 K 144 N 96 g 64 u4 token_sym bias smooth r 16 gelu res 1": the case for messages;
 * g_free it. */
char *sam2_test_case_name (const Sam2TestCase *c);

#endif
