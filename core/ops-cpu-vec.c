/* ops-cpu-vec.c: the element-wise kernels that must vectorise (softmax, GELU, sigmoid, bias).
 *
 * Built with -fno-math-errno -fno-trapping-math -ffinite-math-only -fno-signed-zeros (see
 * core/meson.build): without them GCC keeps the clamps and selects of simd-math.h as branches and
 * the loops run scalar, 10x slower. The inputs here are finite activations, so nothing is lost;
 * NaN and infinity behaviour is unspecified. */
#include "ops-cpu.h"
#include "simd-math.h"

#include <math.h>

/* The element-wise kernels are compiled for AVX2+FMA and AVX-512 as well and picked at load
 * time, so one binary runs anywhere and vectorises wide where the CPU can. Not under
 * ThreadSanitizer: the clones' resolvers run during relocation, before its runtime starts, and
 * the instrumented code crashed every program before main. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) \
    && !defined(__SANITIZE_THREAD__)
#define SAM2_CLONES __attribute__ ((target_clones ("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SAM2_CLONES
#endif

static inline float
gelu (float x)
{
  return 0.5f * x * (1.0f + sam2_erf_approx (x * (float) M_SQRT1_2));
}

static inline float
sigmoid (float x)
{
  return 1.0f / (1.0f + sam2_exp_approx (-x));
}

/* One row in place; a switch outside the loop so each case vectorises. */
SAM2_CLONES void
sam2_cpu_act_row (Sam2Act act, float *x, int n)
{
  switch (act) {
  case SAM2_ACT_NONE:
    break;
  case SAM2_ACT_GELU:
#pragma omp simd
    for (int i = 0; i < n; i++)
      x[i] = gelu (x[i]);
    break;
  case SAM2_ACT_RELU:
#pragma omp simd
    for (int i = 0; i < n; i++)
      x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    break;
  case SAM2_ACT_SIGMOID:
#pragma omp simd
    for (int i = 0; i < n; i++)
      x[i] = sigmoid (x[i]);
    break;
  case SAM2_ACT_SILU:
    /* below -88 the result is under 1e-36 (it underflows past -104), but exp's input is clamped
     * at 88, so x * sigmoid (x) would come out as x / 1.65e38: -1.8 at -3e38 */
#pragma omp simd
    for (int i = 0; i < n; i++)
      x[i] = x[i] < -SAM2_EXP_APPROX_MAX ? -0.0f : x[i] * sigmoid (x[i]);
    break;
  default:
    for (int i = 0; i < n; i++)
      x[i] = sam2_cpu_act1 (act, x[i]);
    break;
  }
}

SAM2_CLONES void
sam2_cpu_add_row_inplace (float *row, const float *bias, int N)
{
#pragma omp simd
  for (int n = 0; n < N; n++)
    row[n] += bias[n];
}

/* One row of N softmax inputs -> exp (x - max), unnormalised; returns 1 / their sum. Inlined into
 * each clone of its callers, so it vectorises for their targets. */
static inline __attribute__ ((always_inline)) float
softmax_row_exp (float *r, int N)
{
  float mx = r[0];
#pragma omp simd reduction(max : mx)
  for (int n = 0; n < N; n++)
    mx = r[n] > mx ? r[n] : mx;
  /* the sum in double: a float sum of thousands of terms loses digits in a way that depends on
   * whether the loop vectorised, and the whole row is scaled by its inverse */
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int n = 0; n < N; n++) {
    r[n] = sam2_exp_approx (r[n] - mx);
    sum += r[n];
  }
  return (float) (1.0 / sum);
}

SAM2_CLONES void
sam2_cpu_softmax_rows_unnormalized (float *x, int M, int N, float *inv_sum)
{
  for (int m = 0; m < M; m++)
    inv_sum[m] = softmax_row_exp (x + (size_t) m * N, N);
}

SAM2_CLONES void
sam2_cpu_scale_rows (float *x, int M, int N, int ld, const float *scale)
{
  for (int m = 0; m < M; m++) {
    float *r = x + (size_t) m * ld;
#pragma omp simd
    for (int n = 0; n < N; n++)
      r[n] *= scale[m];
  }
}

SAM2_CLONES void
sam2_cpu_softmax_rows (float *x, int M, int N)
{
  for (int m = 0; m < M; m++) {
    float *r = x + (size_t) m * N;
    const float inv = softmax_row_exp (r, N);
#pragma omp simd
    for (int n = 0; n < N; n++)
      r[n] *= inv;
  }
}

