/* common.cu: device discovery and the per-process setup of the kernels (kernels.h, "device"). */
#include "common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" int
sam2_cuda_device_count (int *count)
{
  if (count == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount (&n);
  /* The runtime keeps the error as its last error: clear it so that the next launch check of
   * whoever calls us does not report it. */
  (void) cudaGetLastError ();
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    *count = 0;
    return SAM2_CUDA_OK;
  }
  if (err != cudaSuccess) {
    *count = 0;
    return SAM2_CUDA_DEVICE;
  }
  *count = n;
  return SAM2_CUDA_OK;
}

extern "C" int
sam2_cuda_init (void)
{
  const int st = sam2_cuda_attention_prepare ();
  return st != SAM2_CUDA_OK ? st : sam2_cuda_w4a8_prepare ();
}

int
sam2_kernel_version (int *slot, const char *var, int max_version)
{
  int v = __atomic_load_n (slot, __ATOMIC_RELAXED);
  if (v == 0) {
    const char *e = getenv (var);
    v = 2;
    for (int k = 1; e != nullptr && k <= max_version; k++) {
      char vk[16];
      snprintf (vk, sizeof vk, "v%d", k);
      if (strcmp (e, vk) == 0 || strcmp (e, vk + 1) == 0)
        v = k;
    }
    __atomic_store_n (slot, v, __ATOMIC_RELAXED);
  }
  return v;
}

void
sam2_kernel_version_set (int *slot, int version, int max_version)
{
  __atomic_store_n (slot, version >= 1 && version <= max_version ? version : 0,
                    __ATOMIC_RELAXED);
}
