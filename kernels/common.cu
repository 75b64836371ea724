/* common.cu: device discovery and the per-process setup of the kernels (kernels.h, "device"). */
#include "common.cuh"

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
