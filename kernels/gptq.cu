/* gptq.cu: the element-wise parts of GPTQ on the GPU, which gptq-solve.cu runs between cuSOLVER's
 * factorizations and cuBLAS's block updates (the calibration's quantization step with
 * `--device cuda`; the CPU's is core/quant/weights.c).
 *
 * Layouts: the weights W as (k, n) column-major doubles, so that one thread per output row reads
 * and writes its row with neighbouring threads on neighbouring addresses (row r of position i at
 * W[i * n + r]); the block's scaled errors likewise (block, n); the codes as (k, n) bytes, one per
 * weight, packed on the host; U, the factor, row-major (k, k) as on the CPU.
 *
 * The kernels are independent grid-stride loops, so this file also compiles as host C
 * (host-emulation.h): tests/core/test-kernels-on-host.c checks the block kernel against the CPU's
 * block (sam2_gptq_block_cpu) bit for bit. Every double operation that decides a code or an
 * update is an explicit IEEE intrinsic, as the CPU rounds it (no FMA contraction). One
 * difference remains outside sane inputs: the int conversion of |v / scale| >= 2^31 (or NaN)
 * saturates on the GPU and gives INT_MIN on x86; the weights' own scales keep |v / scale| <= 8. */
#ifdef SAM2_KERNELS_ON_HOST
#include "host-emulation.h"   /* tests/core/test-kernels-on-host.c */
#else
#include "common.cuh"
#endif

#define GPTQ_CODE_MAX 15   /* formats.h's SAM2_W4_CODE_MAX */

/* U (k, k) = H0 + d I: the damped matrix the first factorization starts from. */
static __global__ void
gptq_damped_copy_kernel (const double *H0, int k, double d, double *U)
{
  const size_t total = (size_t) k * k;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x)
    U[i] = i / k == i % k ? __dadd_rn (H0[i], d) : H0[i];
}

/* Row-major lower triangle from the upper one (the inverse, which dpotri left in LAPACK's
 * column-major lower triangle), for the second factorization. */
static __global__ void
gptq_mirror_kernel (int k, double *U)
{
  const size_t total = (size_t) k * k;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x) {
    const size_t r = i / k, c = i % k;
    if (r > c)
      U[i] = U[c * k + r];
  }
}

/* The factor from LAPACK's column-major upper triangle (the row-major lower one) to the
 * row-major upper one, zeros below: each pair (r, c), r < c, is one thread's. */
static __global__ void
gptq_upper_factor_kernel (int k, double *U)
{
  const size_t total = (size_t) k * k;
  for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (size_t) gridDim.x * blockDim.x) {
    const size_t r = i / k, c = i % k;
    if (r < c) {
      U[r * k + c] = U[c * k + r];
      U[c * k + r] = 0.0;
    }
  }
}

/* One block of columns, positions i1 .. i2 - 1, one thread per row: sam2_gptq_block_cpu's
 * arithmetic (weights.c's code_of and dequant, the error scaled by the factor's diagonal, the
 * rest of the block updated), operation for operation. */
static __global__ void
gptq_columns_kernel (Sam2CudaGptq g, int i1, int i2)
{
  const int n = g.n, k = g.k;
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x) {
    for (int i = i1; i < i2; i++) {
      const int col = g.perm[i], group = col / g.group_size;
      const float scale = g.scales[(size_t) r * g.n_groups + group];
      const int zero = g.zeros[(size_t) r * g.n_groups + group];
      const double v = g.W[(size_t) i * n + r];
      const double q = __ddiv_rn (v, (double) scale);
      int code = (int) (q >= 0.0 ? __dadd_rn (q, 0.5) : __dsub_rn (q, 0.5)) + zero;
      code = code < 0 ? 0 : code > GPTQ_CODE_MAX ? GPTQ_CODE_MAX : code;
      g.codes[(size_t) col * n + r] = (uint8_t) code;
      const double dq = __dmul_rn (__dsub_rn ((double) code, (double) zero), (double) scale);
      const double e = __ddiv_rn (__dsub_rn (v, dq), g.U[(size_t) i * k + i]);
      g.err[(size_t) (i - i1) * n + r] = e;
      const double *u = g.U + (size_t) i * k;
      for (int j = i + 1; j < i2; j++) {
        double *wj = g.W + (size_t) j * n + r;
        *wj = __dsub_rn (*wj, __dmul_rn (e, u[j]));
      }
    }
  }
}

SAM2_KERNEL_API int
sam2_cuda_gptq_damped_copy (const double *H0, int k, double d, double *U, cudaStream_t stream)
{
  if (H0 == NULL || U == NULL || k < 1)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH_EW (gptq_damped_copy_kernel, (size_t) k * k, stream) (H0, k, d, U);
  return sam2_launch_status ();
}

SAM2_KERNEL_API int
sam2_cuda_gptq_mirror (int k, double *U, cudaStream_t stream)
{
  if (U == NULL || k < 1)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH_EW (gptq_mirror_kernel, (size_t) k * k, stream) (k, U);
  return sam2_launch_status ();
}

SAM2_KERNEL_API int
sam2_cuda_gptq_upper_factor (int k, double *U, cudaStream_t stream)
{
  if (U == NULL || k < 1)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH_EW (gptq_upper_factor_kernel, (size_t) k * k, stream) (k, U);
  return sam2_launch_status ();
}

SAM2_KERNEL_API int
sam2_cuda_gptq_columns (const Sam2CudaGptq *g, int i1, int i2, cudaStream_t stream)
{
  if (g == NULL || g->W == NULL || g->U == NULL || g->err == NULL || g->perm == NULL
      || g->scales == NULL || g->zeros == NULL || g->codes == NULL || g->n < 1 || g->k < 1
      || g->group_size < 1 || i1 < 0 || i2 > g->k || i1 >= i2 || i2 - i1 > g->block)
    return SAM2_CUDA_UNSUPPORTED;
  SAM2_LAUNCH_EW (gptq_columns_kernel, (size_t) g->n, stream) (*g, i1, i2);
  return sam2_launch_status ();
}
