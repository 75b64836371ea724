/* bf16-x86.h: the 16-lane pieces the CPU's BF16 code shares (attention-cpu-bf16.c,
 * gemm-bf16-cpu.c): a mask of the first n lanes, and 16 floats rounded to bfloat16. For
 * functions compiled with AVX-512 F, BW, VL and BF16. */
#ifndef SAM2_BF16_X86_H
#define SAM2_BF16_X86_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define SAM2_BF16_TARGET "avx512f,avx512bw,avx512vl,avx512bf16"

/* Lanes [0, n) of 16 (none for n <= 0, all for n >= 16). */
static inline __attribute__ ((always_inline, target (SAM2_BF16_TARGET))) __mmask16
sam2_first_lanes16 (long n)
{
  return (__mmask16) (n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u);
}

/* 16 floats (lanes past n read as 0) to bfloat16, round to nearest even (vcvtneps2bf16:
 * subnormals flush to zero). */
static inline __attribute__ ((always_inline, target (SAM2_BF16_TARGET))) __m256i
sam2_to_bf16x16 (const float *x, long n)
{
  return (__m256i) _mm512_cvtneps_pbh (_mm512_maskz_loadu_ps (sam2_first_lanes16 (n), x));
}
#endif

#endif
