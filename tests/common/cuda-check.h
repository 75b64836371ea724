/* cuda-check.h: CK (call), for the CUDA tests and benchmarks: a CUDA runtime call that must
 * succeed, else the file, line, call and CUDA's message on stderr and exit (1). */
#ifndef SAM2_TEST_CUDA_CHECK_H
#define SAM2_TEST_CUDA_CHECK_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(call)                                                                             \
  do {                                                                                       \
    cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess) {                                                                 \
      fprintf (stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString (e_)); \
      exit (1);                                                                              \
    }                                                                                        \
  } while (0)

#endif
