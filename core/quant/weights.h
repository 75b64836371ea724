/* weights.h: 4-bit weight quantizers: round to nearest (RTN) and GPTQ.
 *
 * Both quantize W (n, k), row-major, into a Sam2W4 whose scales and zero points are chosen per
 * (row, group) from the weights before any update ("static groups"), so GPTQ with act order
 * needs no permutation at inference: a column keeps the group of its position in W.
 * Scales are rounded to F16 before codes are chosen (formats.h). */
#ifndef SAM2_QUANT_WEIGHTS_H
#define SAM2_QUANT_WEIGHTS_H

#include "formats.h"
#include "recipe.h"

G_BEGIN_DECLS

/* Allocates codes, scales and zeros of an n x k matrix; group_size 0 = one group per row. */
void sam2_w4_init (Sam2W4 *w, int n, int k, int group_size, Sam2QType dtype);
void sam2_w4_clear (Sam2W4 *w);

/* Per-(row, group) scale and zero point from the range of `weights` (GPTQ's min-max rule: the
 * range always includes 0; SINT4 uses a symmetric range with zero 8). */
void sam2_w4_choose_params (Sam2W4 *w, const float *weights);

/* The same with a searched range (GPTQ's `mse` grid, DeepCompressor's `calib_range`): per
 * (row, group) the min-max range scaled by 1 - i * max_shrink / grids, i = 0..grids, whichever
 * gives the smallest sum over the group's columns c of col_weight[c] * (w_c - q(w_c))^2.
 * col_weight (k) = the Hessian's diagonal, E[x_c^2], makes that the error of the products
 * x_c w_c the layer computes; NULL weighs every column 1 (the weights' own error). Clipping a
 * few large weights buys finer steps for all the others. max_shrink in [0, 1), grids >= 1. */
void sam2_w4_choose_params_searched (Sam2W4 *w, const float *weights, const double *col_weight,
                                     double max_shrink, int grids);

/* The code of value v in (row, group) under w's parameters. */
int sam2_w4_code (const Sam2W4 *w, int row, int group, double v);

/* RTN: every code from the parameters. */
void sam2_w4_quantize_rtn (Sam2W4 *w, const float *weights);

/* GPTQ (Frantar et al. 2022): columns quantized one at a time in blocks, the error of each
 * spread over the columns not yet quantized through the inverse Hessian's Cholesky factor.
 * `hessian` (k, k) is sum x x^T over calibration rows (any positive scale), symmetric to the bit
 * (entry (i, j) the same double as (j, i)). Damping is
 * recipe->gptq_damp of the mean diagonal, multiplied by 10 on each failed Cholesky, up to
 * recipe->gptq_inv_tries attempts. Parameters must have been chosen (sam2_w4_choose_params). */
gboolean sam2_w4_quantize_gptq (Sam2W4 *w, const float *weights, const double *hessian,
                                const Sam2WeightRecipe *recipe, GError **error);

/* GPTQ's solve on another device (the CUDA backend's): the steps of the CPU's on W (n, k) and
 * H (k, k), row-major doubles whose columns are in quantization order (perm[i]: the column of w
 * at position i; W may be overwritten), blocks of `block` columns, the damping d0 first, x10
 * per failed Cholesky, `tries` values; writes w->codes. Returns 0, 1 when H was not positive
 * definite with any of them, 2 when the device cannot solve (then the CPU does), or -1 with
 * *error set. */
typedef int (*Sam2GptqSolver) (gpointer device, Sam2W4 *w, double *W, const double *H,
                               const int *perm, int block, double d0, int tries, GError **error);

/* sam2_w4_quantize_gptq with the solve on `solver` (NULL: the CPU's). */
gboolean sam2_w4_quantize_gptq_on (Sam2W4 *w, const float *weights, const double *hessian,
                                   const Sam2WeightRecipe *recipe, Sam2GptqSolver solver,
                                   gpointer device, GError **error);

/* One block of the CPU's GPTQ columns: positions i1 .. i2 - 1 of every row of W (n, k,
 * row-major, quantization order) coded into w->codes (at column perm[i]) with the rest of the
 * block updated through U (the upper factor, row-major), the scaled errors into
 * err[r * ld_err + i - i1]. The oracle of the device's block kernel (kernels/gptq.cu). */
void sam2_gptq_block_cpu (Sam2W4 *w, double *W, const double *U, const int *perm, int i1, int i2,
                          double *err, int ld_err);

/* F16 round trip of a float (what a value becomes once stored as F16). */
float sam2_round_f16 (float v);

G_END_DECLS

#endif
