/* smooth.c: see smooth.h. */
#include "smooth.h"

#include <math.h>

#define SMOOTH_MIN 1e-5
#define SMOOTH_MAX 1e5

void
sam2_smooth_scales (const float *x_absmax, int k, const float *const *weights, const int *rows,
                    int n_weights, double alpha, float *s)
{
  for (int j = 0; j < k; j++) {
    double wmax = 0.0;
    for (int i = 0; i < n_weights; i++)
      for (int r = 0; r < rows[i]; r++)
        wmax = fmax (wmax, fabs (weights[i][(size_t) r * k + j]));
    const double xmax = x_absmax[j];
    if (!(xmax > 0.0) || !(wmax > 0.0)) {
      s[j] = 1.0f;
      continue;
    }
    const double v = pow (xmax, alpha) / pow (wmax, 1.0 - alpha);
    s[j] = (float) fmin (fmax (v, SMOOTH_MIN), SMOOTH_MAX);
  }
}

void
sam2_smooth_weight (const float *w, int n, int k, const float *s, float *out)
{
  for (int r = 0; r < n; r++)
    for (int j = 0; j < k; j++)
      out[(size_t) r * k + j] = w[(size_t) r * k + j] * s[j];
}
