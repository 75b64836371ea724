/* lowrank.h: the SVDQuant low-rank branch (Li et al. 2024): W = L_up L_down + R, with the
 * rank-r part kept in 16-bit and only the residual R quantized to 4 bits, so the weight outliers
 * the top singular directions carry never meet the 4-bit grid. */
#ifndef SAM2_QUANT_LOWRANK_H
#define SAM2_QUANT_LOWRANK_H

#include <glib.h>

G_BEGIN_DECLS

/* Best rank-r approximation of m (n, k) by SVD (LAPACK gesdd), split into slices of
 * `slice_rows` rows decomposed separately (n when shared); `up` (n, r_total) is block-diagonal
 * over the slices, `down` (r_total, k) with r_total = r * n / slice_rows. Both factors are
 * rounded to F16, as stored. FALSE when the SVD fails. */
gboolean sam2_lowrank_factor (const float *m, int n, int k, int rank, int slice_rows, float *up,
                              float *down, GError **error);

/* r_total for the shapes above (rank capped by each slice's min(rows, k)). */
int sam2_lowrank_total_rank (int n, int k, int rank, int slice_rows);

/* out (n, k) = m - up down. */
void sam2_lowrank_residual (const float *m, int n, int k, const float *up, const float *down,
                            int r_total, float *out);

G_END_DECLS

#endif
