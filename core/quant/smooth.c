/* smooth.c: see smooth.h. */
#include "smooth.h"

#include <math.h>

#define SMOOTH_MIN 1e-5
#define SMOOTH_MAX 1e5

void
sam2_smooth_scales (const float *x_absmax, int k, const float *const *weights, const int *rows,
                    int n_weights, double alpha, float *s)
{
  /* max|W_j| row by row, along memory (a max is exact: the order does not matter) */
  double *wmax = g_new0 (double, k);
  for (int i = 0; i < n_weights; i++)
    for (int r = 0; r < rows[i]; r++) {
      const float *row = weights[i] + (size_t) r * k;
      for (int j = 0; j < k; j++)
        wmax[j] = fmax (wmax[j], fabs (row[j]));
    }
  for (int j = 0; j < k; j++) {
    const double xmax = x_absmax[j];
    if (!(xmax > 0.0) || !(wmax[j] > 0.0)) {
      s[j] = 1.0f;
      continue;
    }
    const double v = pow (xmax, alpha) / pow (wmax[j], 1.0 - alpha);
    s[j] = (float) fmin (fmax (v, SMOOTH_MIN), SMOOTH_MAX);
  }
  g_free (wmax);
}

void
sam2_smooth_weight (const float *w, int n, int k, const float *s, float *out)
{
  for (int r = 0; r < n; r++)
    for (int j = 0; j < k; j++)
      out[(size_t) r * k + j] = w[(size_t) r * k + j] * s[j];
}
