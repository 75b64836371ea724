/* test-simt-warp.cc: the SIMT emulator's warp operations against CUDA's definitions of them, on
 * a kernel that uses each with per-lane arguments (the CUDA suites' kernels use few of these
 * forms, so a model error there would go unseen): __shfl_sync with a different source per lane,
 * __shfl_xor_sync, __shfl_down_sync and __shfl_up_sync within segments of 16 and 8 lanes,
 * __ballot_sync, __any_sync, __all_sync, and __syncthreads between the two warps of a block
 * (each reads what the other wrote). Exits 1 on the first difference. */
#include "simt-device.h"

#include <stdio.h>

namespace {

constexpr int THREADS = 64;
constexpr int OUTS = 8;

__global__ void
warp_ops_kernel (int *out)
{
  SAM2_STATIC_SHARED (int, other, [THREADS]);
  const int tid = threadIdx.x, lane = tid % 32;
  const int v = 1000 * (int) blockIdx.x + 10 * tid;
  int *o = out + ((size_t) blockIdx.x * THREADS + tid) * OUTS;
  o[0] = __shfl_sync (0xffffffffu, v, (lane * 7 + 3) % 32);
  o[1] = __shfl_xor_sync (0xffffffffu, v, lane % 4 + 1);
  o[2] = __shfl_down_sync (0xffffffffu, v, 3, 16);
  o[3] = __shfl_up_sync (0xffffffffu, v, 2, 8);
  o[4] = (int) __ballot_sync (0xffffffffu, lane % 3 == 0);
  o[5] = __any_sync (0xffffffffu, lane == 31 && tid >= 32);
  o[6] = __all_sync (0xffffffffu, tid < 32);
  other[tid] = v;
  __syncthreads ();
  o[7] = other[(tid + 32) % THREADS];
}

/* CUDA's definitions, lane by lane */
int
expected (int block, int tid, int k)
{
  const int lane = tid % 32, base = tid - lane;
  auto v = [&] (int l) { return 1000 * block + 10 * (base + l); };
  switch (k) {
  case 0:
    return v ((lane * 7 + 3) % 32);
  case 1:
    return v (lane ^ (lane % 4 + 1));
  case 2:
    return lane % 16 + 3 < 16 ? v (lane + 3) : v (lane);
  case 3:
    return lane % 8 >= 2 ? v (lane - 2) : v (lane);
  case 4: {
    unsigned b = 0;
    for (int l = 0; l < 32; l += 3)
      b |= 1u << l;
    return (int) b;
  }
  case 5:
    return base == 32;
  case 6:
    return base == 0;
  default:
    return 1000 * block + 10 * ((tid + 32) % THREADS);
  }
}

}  // namespace

int
main ()
{
  const int blocks = 3;
  int *out = nullptr;
  if (cudaMalloc ((void **) &out, sizeof (int) * blocks * THREADS * OUTS) != cudaSuccess)
    return 1;
  SAM2_LAUNCH (blocks, THREADS, 0, 0, warp_ops_kernel) (out);
  int failures = 0;
  for (int b = 0; b < blocks; b++)
    for (int t = 0; t < THREADS; t++)
      for (int k = 0; k < OUTS; k++) {
        const int got = out[(b * THREADS + t) * OUTS + k], want = expected (b, t, k);
        if (got != want && failures++ < 10)
          printf ("block %d thread %d output %d: %d, CUDA gives %d\n", b, t, k, got, want);
      }
  cudaFree (out);
  printf ("%s: %d differences in %d outputs\n", failures ? "FAIL" : "PASS", failures,
          blocks * THREADS * OUTS);
  return failures ? 1 : 0;
}
