/* common.cu: device discovery and the per-process setup of the kernels (kernels.h, "device"). */
#include "common.cuh"

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
  return sam2_cuda_attention_prepare ();
}

int
sam2_kernel_version (int *slot, const char *var)
{
  int v = __atomic_load_n (slot, __ATOMIC_RELAXED);
  if (v == 0) {
    const char *e = getenv (var);
    v = e != nullptr && (strcmp (e, "v1") == 0 || strcmp (e, "1") == 0) ? 1 : 2;
    __atomic_store_n (slot, v, __ATOMIC_RELAXED);
  }
  return v;
}

void
sam2_kernel_version_set (int *slot, int version)
{
  __atomic_store_n (slot, version == 1 || version == 2 ? version : 0, __ATOMIC_RELAXED);
}
