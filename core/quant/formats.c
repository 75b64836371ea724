/* formats.c: the one dequantization of formats.h, shared by the reference linear layer, the
 * weight-only CPU path and the tests of device kernels. */
#include "formats.h"

void
sam2_w4_dequantize (const Sam2W4 *w, float *out)
{
  g_return_if_fail (w != NULL && out != NULL && w->group_size > 0);
#pragma omp parallel for schedule(static) if ((size_t) w->n * w->k > 65536)
  for (int n = 0; n < w->n; n++) {
    const float *s = w->scales + (size_t) n * w->n_groups;   /* (n_groups) */
    const guint8 *z = w->zeros + (size_t) n * w->n_groups;   /* (n_groups) */
    float *row = out + (size_t) n * w->k;                    /* (k) */
    for (int k = 0; k < w->k; k++) {
      const int g = k / w->group_size;
      /* (q - z) is a small integer, exact in float: one rounding, in the product */
      row[k] = (float) (sam2_w4_get (w->codes, w->k, n, k) - z[g]) * s[g];
    }
  }
}
