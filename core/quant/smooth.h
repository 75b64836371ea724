/* smooth.h: SmoothQuant (Xiao et al. 2023): per input channel scales s that move activation
 * outliers into the weights, X W^T = (X / s) (W s)^T, so both quantize better. */
#ifndef SAM2_QUANT_SMOOTH_H
#define SAM2_QUANT_SMOOTH_H

#include <glib.h>

G_BEGIN_DECLS

/* s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), W_j over the rows of every weight in `weights`
 * (layers reading the same input share one s), clamped to [1e-5, 1e5]; channels never active or
 * with all-zero weights keep s = 1. */
void sam2_smooth_scales (const float *x_absmax, int k, const float *const *weights,
                         const int *rows, int n_weights, double alpha, float *s);

/* W (n, k) * s per column, into out (may be W). */
void sam2_smooth_weight (const float *w, int n, int k, const float *s, float *out);

G_END_DECLS

#endif
