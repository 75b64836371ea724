/* calib.cu: the calibration-statistics launchers of kernels.h: row gathering, running per-column
 * ranges, the Gram matrix X^T X of gathered rows (cuBLAS) and its double accumulation. They run
 * while the float model is calibrated on the GPU (core/quant/observers.c through the backend's
 * stats ops), so the statistics never leave the device until quantization reads them. */
#include "common.cuh"

#include <math.h>

/* out (n, k) = x[rows[i]] for i < n; rows are device indices into x's rows. */
static __global__ void
gather_rows_kernel (const float *__restrict__ x, int k, const int *__restrict__ rows, int n,
                    float *__restrict__ out)
{
  const size_t total = (size_t) n * k;
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    const size_t r = i / (size_t) k, c = i % (size_t) k;
    out[i] = x[(size_t) rows[r] * k + c];
  }
}

extern "C" int
sam2_cuda_gather_rows (const float *x, int k, const int *rows, int n, float *out,
                       cudaStream_t stream)
{
  if (x == NULL || rows == NULL || out == NULL || k < 1 || n < 0)
    return SAM2_CUDA_UNSUPPORTED;
  if (n == 0)
    return SAM2_CUDA_OK;
  SAM2_LAUNCH (sam2_ew_blocks ((size_t) n * k), SAM2_EW_THREADS, 0, stream,
               gather_rows_kernel) (x, k, rows, n, out);
  return sam2_launch_status ();
}

/* Float min / max through the integer order of their bits (there are no float atomics for
 * them): with the sign bit clear, the bits order like signed ints; with it set (-0.0 included,
 * whose int is INT_MIN) a larger magnitude is a larger unsigned pattern, so the order reverses.
 * Mixed signs come out right both ways (a negative's int is negative, its unsigned above every
 * positive's). NaN is not expected (the float forward would already be wrong) and not ordered. */
__device__ __forceinline__ void
atomic_min_float (float *addr, float v)
{
  if (!signbit (v))
    atomicMin (reinterpret_cast<int *> (addr), __float_as_int (v));
  else
    atomicMax (reinterpret_cast<unsigned int *> (addr), __float_as_uint (v));
}

__device__ __forceinline__ void
atomic_max_float (float *addr, float v)
{
  if (!signbit (v))
    atomicMax (reinterpret_cast<int *> (addr), __float_as_int (v));
  else
    atomicMin (reinterpret_cast<unsigned int *> (addr), __float_as_uint (v));
}

/* Rows per block of the range kernel: each thread walks this many rows of one column, so the
 * atomics are one per (column, block of rows). */
#define RANGE_ROWS 256

/* min (k) = min(min, x[:, c]), max likewise; blocks are (column tile of blockDim.x, row chunk). */
static __global__ void
column_range_kernel (const float *__restrict__ x, int M, int k, float *col_min, float *col_max)
{
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k)
    return;
  const int r0 = blockIdx.y * RANGE_ROWS, r1 = r0 + RANGE_ROWS < M ? r0 + RANGE_ROWS : M;
  float lo = INFINITY, hi = -INFINITY;
  for (int r = r0; r < r1; r++) {
    const float v = x[(size_t) r * k + c];
    lo = fminf (lo, v);
    hi = fmaxf (hi, v);
  }
  if (r1 > r0) {
    atomic_min_float (&col_min[c], lo);
    atomic_max_float (&col_max[c], hi);
  }
}

extern "C" int
sam2_cuda_column_range (const float *x, int M, int k, float *min, float *max, cudaStream_t stream)
{
  if (x == NULL || min == NULL || max == NULL || M < 0 || k < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0)
    return SAM2_CUDA_OK;
  const unsigned tile = 128;
  const dim3 grid ((k + tile - 1) / tile, (M + RANGE_ROWS - 1) / RANGE_ROWS);
  if (grid.y > 65535u)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH (grid, tile, 0, stream, column_range_kernel) (x, M, k, min, max);
  return sam2_launch_status ();
}

static __global__ void
fill_kernel (float *p, size_t n, float v)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = v;
}

extern "C" int
sam2_cuda_fill (float *p, size_t n, float value, cudaStream_t stream)
{
  if (p == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  if (n == 0)
    return SAM2_CUDA_OK;
  SAM2_LAUNCH (sam2_ew_blocks (n), SAM2_EW_THREADS, 0, stream, fill_kernel) (p, n, value);
  return sam2_launch_status ();
}

/* h (n) += g (n) in double: float products within one call, double across calls, as the CPU
 * observers do. */
static __global__ void
accumulate_kernel (double *__restrict__ h, const float *__restrict__ g, size_t n)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    h[i] += (double) g[i];
}

extern "C" int
sam2_cuda_gram_accumulate (cublasHandle_t handle, const float *rows, int n, int k, float *gram,
                           double *hessian, cudaStream_t stream)
{
  if (handle == NULL || rows == NULL || gram == NULL || hessian == NULL || n < 0 || k < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (n == 0)
    return SAM2_CUDA_OK;
  /* rows (n, k) row-major is R^T column-major with ld k: gram = R^T R is (k, k), symmetric, so
   * its storage order does not matter */
  const float one = 1.0f, zero = 0.0f;
  if (cublasSgemm (handle, CUBLAS_OP_N, CUBLAS_OP_T, k, k, n, &one, rows, k, rows, k, &zero, gram,
                   k) != CUBLAS_STATUS_SUCCESS)
    return SAM2_CUDA_DEVICE;
  const size_t kk = (size_t) k * k;
  SAM2_LAUNCH (sam2_ew_blocks (kk), SAM2_EW_THREADS, 0, stream,
               accumulate_kernel) (hessian, gram, kk);
  return sam2_launch_status ();
}
