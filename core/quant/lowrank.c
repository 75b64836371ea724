/* lowrank.c: see lowrank.h. */
#include "lowrank.h"
#include "sam2.h"
#include "weights.h"

#include <cblas.h>
#include <lapacke.h>
#include <string.h>

int
sam2_lowrank_total_rank (int n, int k, int rank, int slice_rows)
{
  const int slices = n / slice_rows;
  return slices * MIN (rank, MIN (slice_rows, k));
}

gboolean
sam2_lowrank_factor (const float *m, int n, int k, int rank, int slice_rows, float *up,
                     float *down, GError **error)
{
  const int slices = n / slice_rows, mn = MIN (slice_rows, k), r = MIN (rank, mn);
  const int r_total = sam2_lowrank_total_rank (n, k, rank, slice_rows);
  double *a = g_new (double, (size_t) slice_rows * k);
  double *s = g_new (double, mn), *u = g_new (double, (size_t) slice_rows * mn);
  double *vt = g_new (double, (size_t) mn * k);
  gboolean ok = TRUE;
  memset (up, 0, sizeof (float) * n * r_total);
  for (int sl = 0; ok && sl < slices; sl++) {
    for (size_t i = 0; i < (size_t) slice_rows * k; i++)
      a[i] = m[(size_t) sl * slice_rows * k + i];
    /* a = u diag(s) vt, economy size, singular values descending */
    if (LAPACKE_dgesdd (LAPACK_ROW_MAJOR, 'S', slice_rows, k, a, k, s, u, mn, vt, k) != 0) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "the SVD of a %dx%d weight did not converge", slice_rows, k);
      ok = FALSE;
      break;
    }
    for (int i = 0; i < slice_rows; i++)
      for (int j = 0; j < r; j++)
        up[(size_t) (sl * slice_rows + i) * r_total + sl * r + j]
          = sam2_round_f16 ((float) (u[(size_t) i * mn + j] * s[j]));
    for (int j = 0; j < r; j++)
      for (int c = 0; c < k; c++)
        down[(size_t) (sl * r + j) * k + c] = sam2_round_f16 ((float) vt[(size_t) j * k + c]);
  }
  g_free (a);
  g_free (s);
  g_free (u);
  g_free (vt);
  return ok;
}

void
sam2_lowrank_residual (const float *m, int n, int k, const float *up, const float *down,
                       int r_total, float *out)
{
  if (out != m)
    memcpy (out, m, sizeof (float) * n * k);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, r_total, -1.0f, up, r_total, down,
               k, 1.0f, out, k);
}
