/* simd-math.h: exp and erf for float32 written with arithmetic and bit operations only, so the
 * loops that call them vectorise (`#pragma omp simd`); libm's expf / erff are scalar calls and
 * were a third of the CPU encoder's non-GEMM time (softmax over 4096-key global attention, GELU).
 *
 * exp: Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial), within 2 ulp.
 * erf: the rational approximation Eigen uses for float (odd degree-13 / even degree-8 in x,
 * clamped to |x| <= 4 where erf is 1 to float precision); evaluated in float it is within 4.7e-7
 * absolute (8 ulp of 1, near |x| = 3.3). GELU inherits that as an absolute error of
 * 0.5 |x| 4.7e-7, far below the model tolerances, though relatively poor for x < -4 where GELU
 * itself is below 1e-6. Both are tested against libm in tests/core/test-ops.c. */
#ifndef SAM2_SIMD_MATH_H
#define SAM2_SIMD_MATH_H

#include <stdint.h>
#include <string.h>

/* sam2_exp_approx's largest input: larger ones give exp(88) = 1.65e38, not infinity, so a
 * function that divides by it must treat what lies beyond itself (SiLU below -88). */
#define SAM2_EXP_APPROX_MAX 88.0f

/* exp's constants, shared with the vector forms (simd-exp-x86.h): the smallest input (exp of it
 * is the smallest normal float), 1 / ln 2, ln 2 as an exact head and a tail, and the degree-5
 * polynomial of (exp(r) - 1 - r) / r^2 from its highest coefficient down */
#define SAM2_EXP_APPROX_MIN (-87.33654f)
#define SAM2_EXP_LOG2E 1.44269504088896341f
#define SAM2_EXP_LN2_HI 0.693359375f
#define SAM2_EXP_LN2_LO (-2.12194440e-4f)
#define SAM2_EXP_P0 1.9875691500e-4f
#define SAM2_EXP_P1 1.3981999507e-3f
#define SAM2_EXP_P2 8.3334519073e-3f
#define SAM2_EXP_P3 4.1665795894e-2f
#define SAM2_EXP_P4 1.6666665459e-1f
#define SAM2_EXP_P5 5.0000001201e-1f

static inline float
sam2_exp_approx (float x)
{
  /* the clamps send a NaN to the lower bound (a comparison with NaN is false), so that the
   * integer conversion below stays defined; the NaN itself is what is returned */
  float xc = x > SAM2_EXP_APPROX_MIN ? x : SAM2_EXP_APPROX_MIN;
  xc = xc < SAM2_EXP_APPROX_MAX ? xc : SAM2_EXP_APPROX_MAX;
  /* n = round(x / ln 2), r = x - n ln 2 with ln 2 split into an exact head and a tail */
  float fn = xc * SAM2_EXP_LOG2E;
  fn = fn + (fn >= 0.0f ? 0.5f : -0.5f);
  int32_t n = (int32_t) fn;
  float r = xc - (float) n * SAM2_EXP_LN2_HI;
  r = r - (float) n * SAM2_EXP_LN2_LO;
  float p = SAM2_EXP_P0;
  p = p * r + SAM2_EXP_P1;
  p = p * r + SAM2_EXP_P2;
  p = p * r + SAM2_EXP_P3;
  p = p * r + SAM2_EXP_P4;
  p = p * r + SAM2_EXP_P5;
  p = p * r * r + r + 1.0f;
  /* scale by 2^n through the exponent bits; n is within [-126, 127] after the clamps */
  int32_t bits = (n + 127) << 23;
  float scale;
  memcpy (&scale, &bits, sizeof scale);
  return x == x ? p * scale : x;
}

static inline float
sam2_erf_approx (float x)
{
  x = x < -4.0f ? -4.0f : x;
  x = x > 4.0f ? 4.0f : x;
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

#endif
