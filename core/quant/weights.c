/* weights.c: see weights.h. The GPTQ inner loop follows the reference implementation
 * (IST-DASLab/gptq, `fasterquant`): Cholesky of H^-1 in upper form, lazy batch updates. */
#include "weights.h"
#include "sam2.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

float
sam2_round_f16 (float v)
{
#if defined(__FLT16_MAX__)
  return (float) (_Float16) v;
#else
  /* round to 11 significant bits, nearest even, through the exponent of v */
  if (v == 0.0f || !isfinite (v))
    return v;
  int e;
  frexpf (v, &e);
  const float ulp = ldexpf (1.0f, MAX (e - 11, -24));
  return nearbyintf (v / ulp) * ulp;
#endif
}

void
sam2_w4_init (Sam2W4 *w, int n, int k, int group_size, Sam2QType dtype)
{
  memset (w, 0, sizeof *w);
  w->n = n;
  w->k = k;
  w->group_size = group_size > 0 ? MIN (group_size, k) : k;
  w->n_groups = sam2_w4_n_groups (k, w->group_size);
  w->dtype = dtype;
  w->codes = g_new0 (guint8, (size_t) n * sam2_w4_row_bytes (k));
  w->scales = g_new0 (float, (size_t) n * w->n_groups);
  w->zeros = g_new0 (guint8, (size_t) n * w->n_groups);
}

void
sam2_w4_clear (Sam2W4 *w)
{
  g_clear_pointer (&w->codes, g_free);
  g_clear_pointer (&w->scales, g_free);
  g_clear_pointer (&w->zeros, g_free);
}

/* Scale and zero of one (row, group) for the range [lo, hi] (GPTQ's min-max rule). */
static void
range_params (const Sam2W4 *w, float lo, float hi, float *scale, float *zero)
{
  const gboolean sym = w->dtype == SAM2_QTYPE_SINT4;
  float s, z;
  if (sym) {
    const float amax = MAX (-lo, hi);
    s = 2.0f * amax / SAM2_W4_CODE_MAX;
    z = SAM2_SINT4_ZERO;
  } else {
    s = (hi - lo) / SAM2_W4_CODE_MAX;
    z = 0.0f;
  }
  s = sam2_round_f16 (s);
  if (!(s > 0.0f))
    s = 1.0f; /* an all-zero group: any scale codes it exactly */
  if (!sym)
    z = CLAMP (sam2_round_half_away (-lo / s), 0, SAM2_W4_CODE_MAX);
  *scale = s;
  *zero = z;
}

void
sam2_w4_choose_params (Sam2W4 *w, const float *weights)
{
  for (int r = 0; r < w->n; r++) {
    const float *row = weights + (size_t) r * w->k;
    for (int g = 0; g < w->n_groups; g++) {
      const int k0 = g * w->group_size, k1 = MIN (k0 + w->group_size, w->k);
      float lo = 0.0f, hi = 0.0f, scale, zero;
      for (int c = k0; c < k1; c++) {
        lo = MIN (lo, row[c]);
        hi = MAX (hi, row[c]);
      }
      range_params (w, lo, hi, &scale, &zero);
      w->scales[(size_t) r * w->n_groups + g] = scale;
      w->zeros[(size_t) r * w->n_groups + g] = (guint8) zero;
    }
  }
}

/* The 4-bit code of v under (scale, zero): round half away from zero, clamped. */
static inline int
code_of (double v, float scale, int zero)
{
  const double q = v / scale;
  return CLAMP ((int) (q >= 0.0 ? q + 0.5 : q - 0.5) + zero, 0, SAM2_W4_CODE_MAX);
}

/* Weighted squared rounding error of columns [k0, k1) of `row` under (scale, zero). */
static double
group_error (const float *row, int k0, int k1, const double *col_weight, float scale, float zero)
{
  double err = 0.0;
  for (int c = k0; c < k1; c++) {
    const int code = code_of (row[c], scale, (int) zero);
    const double e = row[c] - ((double) code - zero) * scale;
    err += (col_weight != NULL ? col_weight[c] : 1.0) * e * e;
  }
  return err;
}

void
sam2_w4_choose_params_searched (Sam2W4 *w, const float *weights, const double *col_weight,
                                double max_shrink, int grids)
{
  g_return_if_fail (grids >= 1 && max_shrink >= 0.0 && max_shrink < 1.0);
  for (int r = 0; r < w->n; r++) {
    const float *row = weights + (size_t) r * w->k;
    for (int g = 0; g < w->n_groups; g++) {
      const int k0 = g * w->group_size, k1 = MIN (k0 + w->group_size, w->k);
      float lo = 0.0f, hi = 0.0f, best_scale = 1.0f, best_zero = 0.0f;
      for (int c = k0; c < k1; c++) {
        lo = MIN (lo, row[c]);
        hi = MAX (hi, row[c]);
      }
      double best = G_MAXDOUBLE;
      /* i = 0 is the min-max range itself, so the search never does worse than it */
      for (int i = 0; i <= grids; i++) {
        const float p = (float) (1.0 - max_shrink * i / grids);
        float scale, zero;
        range_params (w, p * lo, p * hi, &scale, &zero);
        const double err = group_error (row, k0, k1, col_weight, scale, zero);
        if (err < best) {
          best = err;
          best_scale = scale;
          best_zero = zero;
        }
      }
      w->scales[(size_t) r * w->n_groups + g] = best_scale;
      w->zeros[(size_t) r * w->n_groups + g] = (guint8) best_zero;
    }
  }
}

int
sam2_w4_code (const Sam2W4 *w, int row, int group, double v)
{
  const size_t i = (size_t) row * w->n_groups + group;
  return code_of (v, w->scales[i], w->zeros[i]);
}

static inline double
dequant (const Sam2W4 *w, int row, int group, int code)
{
  const size_t i = (size_t) row * w->n_groups + group;
  return ((double) code - w->zeros[i]) * w->scales[i];
}

void
sam2_w4_quantize_rtn (Sam2W4 *w, const float *weights)
{
  for (int r = 0; r < w->n; r++)
    for (int c = 0; c < w->k; c++)
      sam2_w4_set (w->codes, w->k, r, c,
                   sam2_w4_code (w, r, c / w->group_size, weights[(size_t) r * w->k + c]));
}

/* Upper Cholesky factor U of H^-1 (H^-1 = U^T U), row-major, with damping d0, 10 d0, ... (tries
 * values); FALSE when H stays singular. H0 is symmetric to the bit (weights.h asks it of the
 * Hessian; quantize.c's smoothed_hessian mirrors one triangle; the permutation keeps it), so
 * LAPACK's column-major view of the row-major buffer is the same matrix: the calls below are
 * LAPACK's own column-major ones on it, the routines and triangles (dpotrf 'L', dpotri 'L',
 * dpotrf 'U') that LAPACKE's row-major calls run on transposed copies, on the same numbers, hence
 * the same bits, without the two k x k copies per call. The factor then lies transposed (in the
 * row-major lower triangle) and is moved to the upper one once, at the end. */
static gboolean
inverse_cholesky (double *H, const double *H0, int k, double d0, int tries)
{
  double d = d0;
  for (int t = 0; t < tries; t++, d *= 10.0) {
    memcpy (H, H0, sizeof (double) * k * k);
    for (int i = 0; i < k; i++)
      H[(size_t) i * k + i] += d;
    if (LAPACKE_dpotrf (LAPACK_COL_MAJOR, 'L', k, H, k) != 0)
      continue;
    if (LAPACKE_dpotri (LAPACK_COL_MAJOR, 'L', k, H, k) != 0)
      continue;
    /* the inverse is in the column-major lower triangle, the row-major upper one: mirror it
     * into the row-major lower one, which dpotrf 'U' reads in the column-major view */
    for (int i = 0; i < k; i++)
      for (int j = i + 1; j < k; j++)
        H[(size_t) j * k + i] = H[(size_t) i * k + j];
    if (LAPACKE_dpotrf (LAPACK_COL_MAJOR, 'U', k, H, k) != 0)
      continue;
    /* U (i, j), i <= j, is at column-major (i, j), the row-major (j, i): move it up, zero below */
    for (int i = 0; i < k; i++)
      for (int j = i + 1; j < k; j++) {
        H[(size_t) i * k + j] = H[(size_t) j * k + i];
        H[(size_t) j * k + i] = 0.0;
      }
    return TRUE;
  }
  return FALSE;
}

typedef struct {
  int i;
  double d;
} DiagOrder;

static int
by_diag_desc (const void *a, const void *b)
{
  const DiagOrder *x = a, *y = b;
  if (x->d != y->d)
    return x->d < y->d ? 1 : -1;
  return x->i - y->i; /* stable: ties keep their order */
}

gboolean
sam2_w4_quantize_gptq (Sam2W4 *w, const float *weights, const double *hessian,
                       const Sam2WeightRecipe *recipe, GError **error)
{
  return sam2_w4_quantize_gptq_on (w, weights, hessian, recipe, NULL, NULL, error);
}

void
sam2_gptq_block_cpu (Sam2W4 *w, double *W, const double *U, const int *perm, int i1, int i2,
                     double *err, int ld_err)
{
  const int n = w->n, k = w->k, count = i2 - i1;
  /* Within a block a row's columns depend only on that row's own earlier ones, so the rows run
   * in parallel, each through the block's columns in order: the same operations per row as
   * column by column over all rows (the same bits), on every thread. */
#pragma omp parallel for schedule(static) if ((size_t) n * count * count > 262144)
  for (int r = 0; r < n; r++) {
    double *wr = W + (size_t) r * k;
    for (int i = i1; i < i2; i++) {
      const int col = perm[i], group = col / w->group_size;
      const int code = sam2_w4_code (w, r, group, wr[i]);
      sam2_w4_set (w->codes, k, r, col, code);   /* a byte holds two columns of one row */
      const double e = (wr[i] - dequant (w, r, group, code)) / U[(size_t) i * k + i];
      err[(size_t) r * ld_err + (i - i1)] = e;
      /* the rest of the block absorbs this column's error */
      const double *u = U + (size_t) i * k;
      for (int j = i + 1; j < i2; j++)
        wr[j] -= e * u[j];
    }
  }
}

/* The CPU's solve: the inverse Hessian's Cholesky factor, then the columns in blocks. */
static int
solve_cpu (Sam2W4 *w, double *W, const double *H0, const int *perm, int B, double d0, int tries)
{
  const int n = w->n, k = w->k;
  double *U = g_new (double, (size_t) k * k);      /* upper Cholesky of H^-1 */
  double *err = g_new (double, (size_t) n * B);    /* (n, B) scaled errors of a block */
  if (!inverse_cholesky (U, H0, k, d0, tries)) {
    g_free (U);
    g_free (err);
    return 1;
  }
  for (int i1 = 0; i1 < k; i1 += B) {
    const int i2 = MIN (i1 + B, k), count = i2 - i1;
    sam2_gptq_block_cpu (w, W, U, perm, i1, i2, err, B);
    /* lazy update of the columns after the block: W[:, i2:] -= Err (n, count) U[i1:i2, i2:] */
    if (i2 < k)
      cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k - i2, count, -1.0, err, B,
                   U + (size_t) i1 * k + i2, k, 1.0, W + i2, k);
  }

  g_free (U);
  g_free (err);
  return 0;
}

gboolean
sam2_w4_quantize_gptq_on (Sam2W4 *w, const float *weights, const double *hessian,
                          const Sam2WeightRecipe *recipe, Sam2GptqSolver solver, gpointer device,
                          GError **error)
{
  const int n = w->n, k = w->k, B = MAX (recipe->gptq_block, 1);
  const int tries = MAX (recipe->gptq_inv_tries, 1);
  double *W = g_new (double, (size_t) n * k);      /* (n, k) permuted columns */
  double *H0 = g_new (double, (size_t) k * k);     /* permuted, dead columns fixed */
  int *perm = g_new (int, k);
  DiagOrder *order = g_new (DiagOrder, k);
  gboolean ok = TRUE;

  for (int c = 0; c < k; c++)
    order[c] = (DiagOrder) { c, hessian[(size_t) c * k + c] };
  if (recipe->gptq_act_order)
    qsort (order, k, sizeof *order, by_diag_desc);
  for (int c = 0; c < k; c++)
    perm[c] = order[c].i;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++)
      H0[(size_t) i * k + j] = hessian[(size_t) perm[i] * k + perm[j]];
  for (int r = 0; r < n; r++)
    for (int c = 0; c < k; c++)
      W[(size_t) r * k + c] = weights[(size_t) r * k + perm[c]];
  /* a channel never active carries no information: its weight cannot matter, zero it */
  for (int c = 0; c < k; c++)
    if (H0[(size_t) c * k + c] == 0.0) {
      H0[(size_t) c * k + c] = 1.0;
      for (int r = 0; r < n; r++)
        W[(size_t) r * k + c] = 0.0;
    }

  /* the first damping: recipe->gptq_damp of the mean diagonal */
  double mean = 0.0;
  for (int i = 0; i < k; i++)
    mean += H0[(size_t) i * k + i];
  mean /= k;
  const double d0 = recipe->gptq_damp * mean;
  int singular = solver != NULL ? solver (device, w, W, H0, perm, B, d0, tries, error) : 2;
  if (singular == 2)   /* no device solve (or none there): the CPU's */
    singular = solve_cpu (w, W, H0, perm, B, d0, tries);
  if (singular < 0) {
    ok = FALSE;   /* the device's error is set */
  } else if (singular > 0) {
    /* tries dampings d0, 10 d0, ..., 10^(tries - 1) d0 (inverse_cholesky) */
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "GPTQ: the %dx%d Hessian was not positive definite with any of the %d dampings "
                 "tried (%.3g to %.3g of its mean diagonal); calibrate on more (or more varied) "
                 "frames, or raise kernel_gptq.damp_percentage or num_inv_tries", k, k, tries,
                 recipe->gptq_damp, recipe->gptq_damp * pow (10.0, tries - 1));
    ok = FALSE;
  }

  g_free (W);
  g_free (H0);
  g_free (perm);
  g_free (order);
  return ok;
}
