/* host-emulation.h: compiles a kernel file's grid-stride kernels and its launcher as plain host
 * C, so that a machine without a GPU (CI) can check their arithmetic against the CPU code they
 * mirror (tests/core/test-kernels-on-host.c). A "grid" is one thread, block 0 of 1 and thread
 * 0 of 1, so every grid-stride loop walks all its indices in order, and SAM2_LAUNCH_EW calls the
 * kernel as a function. What this cannot see: races between threads, shared memory, warp
 * operations; only kernels written as independent grid-stride loops are compiled this way.
 *
 * A kernel file opts in by including this instead of common.cuh under SAM2_KERNELS_ON_HOST. */
#ifndef SAM2_KERNELS_HOST_EMULATION_H
#define SAM2_KERNELS_HOST_EMULATION_H

#include "kernels.h"

#include <stdbool.h>
#include <stdint.h>

/* the CUDA headers kernels.h includes define these for nvcc */
#undef __global__
#undef __device__
#undef __forceinline__
#define __global__
#define __device__
#define __forceinline__ inline
#define SAM2_KERNEL_API

static const struct {
  unsigned x;
} blockIdx = { 0 }, threadIdx = { 0 }, blockDim = { 1 }, gridDim = { 1 };

#define SAM2_LAUNCH_EW(kernel, work_items, stream) ((void) (work_items), (void) (stream), kernel)

/* CUDA's IEEE double intrinsics: the plain operations (host C without FMA contraction, as the
 * project builds it for x86-64 without -mfma, rounds each one the same way) */
static inline double
__dadd_rn (double a, double b)
{
  return a + b;
}

static inline double
__dsub_rn (double a, double b)
{
  return a - b;
}

static inline double
__dmul_rn (double a, double b)
{
  return a * b;
}

static inline double
__ddiv_rn (double a, double b)
{
  return a / b;
}

static inline int
sam2_launch_status (void)
{
  return SAM2_CUDA_OK;
}

#endif
