/* gemm-float.cu: the float GEMMs of kernels.h through cuBLAS, and the conversions that feed the
 * half-precision ones (an activation folded in where one precedes).
 *
 * Every GEMM here is row-major C (M, N) = A (M, K) B^T with B (N, K) (a linear layer's x W^T).
 * cuBLAS is column-major, where the row-major A is A^T (K x M, ld K), B is B^T (K x N, ld K) and
 * C is C^T (N x M, ld N); C^T = B A^T, so each call computes the column-major (N x M) product
 * op(B^T) = transpose of the (K x N) matrix at B, times the (K x M) matrix at A untransposed. */
#include "common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

extern "C" int
sam2_cuda_gemm_f32_nt (cublasHandle_t h, const float *A, const float *B, int M, int N, int K,
                       float beta, float *C)
{
  if (h == NULL || A == NULL || B == NULL || C == NULL || M < 0 || N < 0 || K < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  const float alpha = 1.0f;
  cublasStatus_t st = cublasSgemm (h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, B, K, A, K, &beta,
                                   C, N);
  return st == CUBLAS_STATUS_SUCCESS ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}

/* cuBLAS's name of a 16-bit format */
static cudaDataType_t
cuda_type16 (Sam2CudaHalf type)
{
  return type == SAM2_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

extern "C" int
sam2_cuda_gemm_16_nt (cublasHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                      const uint16_t *B16, int M, int N, int K, float beta, float *C_f32)
{
  if (h == NULL || A16 == NULL || B16 == NULL || C_f32 == NULL || M < 0 || N < 0 || K < 1
      || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  const float alpha = 1.0f;
  /* 16-bit operands on the tensor cores, FP32 accumulation and an FP32 C (so beta = 1 adds a
   * float residual without rounding it to 16 bits) */
  const cudaDataType_t t = cuda_type16 (type);
  cublasStatus_t st = cublasGemmEx (h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, B16, t, K, A16,
                                    t, K, &beta, C_f32, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
  return st == CUBLAS_STATUS_SUCCESS ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}

/* ---- conversions ------------------------------------------------------------------------------ */

/* y (n) = 16-bit act(x (+ addend)). VEC (x and addend 16-byte and y 8-byte aligned): four values
 * per step, one 16-byte load (each) and one 8-byte store, then the n % 4 tail one by one. act
 * NONE is the identity (sam2_act_apply), so the plain conversions, the sums' and the
 * half-precision activation-then-conversion are this one kernel. The sum is float's, as
 * sam2_cuda_add writes it. */
template <bool BF16, bool VEC>
static __global__ void
act_to_16_kernel (int act, const float *__restrict__ x, const float *__restrict__ addend, size_t n,
                  uint16_t *__restrict__ y)
{
  const size_t stride = (size_t) gridDim.x * blockDim.x;
  const size_t first = (size_t) blockIdx.x * blockDim.x + threadIdx.x;
  size_t scalar_from = 0;
  if (VEC) {
    const size_t n4 = n / 4;
    for (size_t i = first; i < n4; i += stride) {
      float4 v = reinterpret_cast<const float4 *> (x)[i];
      if (addend != NULL) {
        const float4 a = reinterpret_cast<const float4 *> (addend)[i];
        v = make_float4 (v.x + a.x, v.y + a.y, v.z + a.z, v.w + a.w);
      }
      uint2 packed;
      packed.x = (uint32_t) sam2_to16<BF16> (sam2_act_apply (act, v.x))
                 | (uint32_t) sam2_to16<BF16> (sam2_act_apply (act, v.y)) << 16;
      packed.y = (uint32_t) sam2_to16<BF16> (sam2_act_apply (act, v.z))
                 | (uint32_t) sam2_to16<BF16> (sam2_act_apply (act, v.w)) << 16;
      reinterpret_cast<uint2 *> (y)[i] = packed;
    }
    scalar_from = n4 * 4;
  }
  for (size_t i = scalar_from + first; i < n; i += stride)
    y[i] = sam2_to16<BF16> (sam2_act_apply (act, addend != NULL ? x[i] + addend[i] : x[i]));
}

template <bool BF16>
static int
launch_act_to_16 (int act, const float *x, const float *addend, size_t n, uint16_t *y,
                  cudaStream_t stream)
{
  if (x == NULL || y == NULL || !sam2_act_valid (act))
    return SAM2_CUDA_UNSUPPORTED;
  if (n == 0)
    return SAM2_CUDA_OK;
  if (sam2_aligned16 (x) && (addend == NULL || sam2_aligned16 (addend))
      && ((uintptr_t) y & 7) == 0)
    SAM2_LAUNCH (sam2_ew_blocks (n / 4 + 1), SAM2_EW_THREADS, 0, stream,
                 act_to_16_kernel<BF16, true>) (act, x, addend, n, y);
  else
    SAM2_LAUNCH (sam2_ew_blocks (n), SAM2_EW_THREADS, 0, stream,
                 act_to_16_kernel<BF16, false>) (act, x, addend, n, y);
  return sam2_launch_status ();
}

static int
act_to_16 (int act, const float *x, const float *addend, size_t n, Sam2CudaHalf type,
           uint16_t *y16, cudaStream_t stream)
{
  if (!sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  return type == SAM2_CUDA_BF16 ? launch_act_to_16<true> (act, x, addend, n, y16, stream)
                                : launch_act_to_16<false> (act, x, addend, n, y16, stream);
}

extern "C" int
sam2_cuda_activation_to_16 (int act, const float *x, size_t n, Sam2CudaHalf type, uint16_t *y16,
                            cudaStream_t stream)
{
  return act_to_16 (act, x, NULL, n, type, y16, stream);
}

extern "C" int
sam2_cuda_sum_to_16 (const float *x, const float *addend, size_t n, Sam2CudaHalf type,
                     uint16_t *y16, cudaStream_t stream)
{
  if (addend == NULL)
    return SAM2_CUDA_UNSUPPORTED;
  return act_to_16 (SAM2_CUDA_ACT_NONE, x, addend, n, type, y16, stream);
}

extern "C" int
sam2_cuda_f32_to_16 (const float *x, size_t n, Sam2CudaHalf type, uint16_t *y,
                     cudaStream_t stream)
{
  return sam2_cuda_activation_to_16 (SAM2_CUDA_ACT_NONE, x, n, type, y, stream);
}

/* ---- cuBLASLt: the BF16 baseline and the 16-bit GEMMs with their bias epilogue --------------- */

/* Largest power of two, up to 256, dividing the address: cuBLASLt's heuristic assumes 256-byte
 * aligned matrices unless told otherwise, and an algorithm picked under that assumption may not
 * run on an activation that starts inside a larger buffer. */
static uint32_t
alignment_of (const void *p)
{
  const uintptr_t a = (uintptr_t) p;
  uint32_t align = 256;
  while (align > 1 && a % align != 0)
    align /= 2;
  return align;
}

/* D (M, N) = A (M, K) B^T [+ bias (N)] + beta C (M, N), row-major (the column-major view at the
 * top of the file), `ab` operands, `cd` output, FP32 accumulation and scale, the heuristic's first
 * algorithm. bias (FP32, 16-byte aligned) selects CUBLASLT_EPILOGUE_BIAS; C may be D. The
 * descriptors and the heuristic query are host work per call (a few microseconds, gone under a
 * CUDA graph, which records the chosen kernel). SAM2_CUDA_UNSUPPORTED when no algorithm fits. */
static int
lt_matmul_nt (cublasLtHandle_t h, cudaDataType_t ab, cudaDataType_t cd, const void *A,
              const void *B, int M, int N, int K, const float *bias, float beta, const void *C,
              void *D, cudaStream_t stream, void *workspace, size_t ws_bytes)
{
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  int status = SAM2_CUDA_DEVICE;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = bias != NULL ? CUBLASLT_EPILOGUE_BIAS
                                                   : CUBLASLT_EPILOGUE_DEFAULT;
  const float alpha = 1.0f;
  /* "A" of the product is B (its first operand), "B" is A, C and D share one layout */
  const struct {
    cublasLtMatmulPreferenceAttributes_t attr;
    uint32_t bytes;
  } aligns[] = {
    { CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of (B) },
    { CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of (A) },
    { CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of (C) },
    { CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of (D) },
  };
  cublasLtMatmulHeuristicResult_t heur;
  int found = 0;

  if (cublasLtMatmulDescCreate (&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
    goto out;
  if (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)
          != CUBLAS_STATUS_SUCCESS
      || cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)
             != CUBLAS_STATUS_SUCCESS
      || cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                         sizeof epilogue)
             != CUBLAS_STATUS_SUCCESS)
    goto out;
  if (bias != NULL
      && cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                         sizeof bias)
             != CUBLAS_STATUS_SUCCESS)
    goto out;
  /* the bias is FP32 whatever the output: cuBLASLt's default is the output's type */
  if (bias != NULL && cd != CUDA_R_32F) {
    const cudaDataType_t bias_type = CUDA_R_32F;
    if (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                        sizeof bias_type)
        != CUBLAS_STATUS_SUCCESS) {
      status = SAM2_CUDA_UNSUPPORTED;
      goto out;
    }
  }
  if (cublasLtMatrixLayoutCreate (&la, ab, K, N, K) != CUBLAS_STATUS_SUCCESS
      || cublasLtMatrixLayoutCreate (&lb, ab, K, M, K) != CUBLAS_STATUS_SUCCESS
      || cublasLtMatrixLayoutCreate (&lc, cd, N, M, N) != CUBLAS_STATUS_SUCCESS)
    goto out;
  if (cublasLtMatmulPreferenceCreate (&pref) != CUBLAS_STATUS_SUCCESS
      || cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                               &ws_bytes, sizeof ws_bytes)
             != CUBLAS_STATUS_SUCCESS)
    goto out;
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++)
    if (cublasLtMatmulPreferenceSetAttribute (pref, aligns[i].attr, &aligns[i].bytes,
                                              sizeof aligns[i].bytes)
        != CUBLAS_STATUS_SUCCESS)
      goto out;
  if (cublasLtMatmulAlgoGetHeuristic (h, op, la, lb, lc, lc, pref, 1, &heur, &found)
          != CUBLAS_STATUS_SUCCESS
      || found < 1) {
    status = SAM2_CUDA_UNSUPPORTED;
    goto out;
  }
  {
    const cublasStatus_t st = cublasLtMatmul (h, op, &alpha, B, la, A, lb, &beta, C, lc, D, lc,
                                              &heur.algo, workspace, ws_bytes, stream);
    status = st == CUBLAS_STATUS_SUCCESS         ? SAM2_CUDA_OK
             : st == CUBLAS_STATUS_NOT_SUPPORTED ? SAM2_CUDA_UNSUPPORTED
                                                 : SAM2_CUDA_DEVICE;
  }
out:
  if (pref != NULL)
    cublasLtMatmulPreferenceDestroy (pref);
  if (lc != NULL)
    cublasLtMatrixLayoutDestroy (lc);
  if (lb != NULL)
    cublasLtMatrixLayoutDestroy (lb);
  if (la != NULL)
    cublasLtMatrixLayoutDestroy (la);
  if (op != NULL)
    cublasLtMatmulDescDestroy (op);
  return status;
}

extern "C" int
sam2_cuda_gemm_bf16_nt (cublasLtHandle_t h, const uint16_t *A, const uint16_t *B, int M, int N,
                        int K, uint16_t *C, cudaStream_t stream, void *workspace)
{
  if (h == NULL || A == NULL || B == NULL || C == NULL || workspace == NULL || M < 0 || N < 0
      || K < 1)
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  return lt_matmul_nt (h, CUDA_R_16BF, CUDA_R_16BF, A, B, M, N, K, NULL, 0.0f, C, C, stream,
                       workspace, SAM2_CUDA_LT_WORKSPACE_BYTES);
}

extern "C" int
sam2_cuda_gemm_16_bias_nt_to16 (cublasLtHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                                const uint16_t *B16, int M, int N, int K, const float *bias,
                                uint16_t *D16, cudaStream_t stream, void *workspace,
                                size_t workspace_bytes)
{
  if (h == NULL || A16 == NULL || B16 == NULL || D16 == NULL || workspace == NULL || M < 0
      || N < 0 || K < 1 || (bias != NULL && !sam2_aligned16 (bias)) || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  return lt_matmul_nt (h, cuda_type16 (type), cuda_type16 (type), A16, B16, M, N, K, bias, 0.0f,
                       D16, D16, stream, workspace, workspace_bytes);
}

extern "C" int
sam2_cuda_gemm_16_bias_nt (cublasLtHandle_t h, Sam2CudaHalf type, const uint16_t *A16,
                           const uint16_t *B16, int M, int N, int K, const float *bias,
                           float beta, const float *C_f32, float *D_f32, cudaStream_t stream,
                           void *workspace, size_t workspace_bytes)
{
  if (h == NULL || A16 == NULL || B16 == NULL || D_f32 == NULL || workspace == NULL || M < 0
      || N < 0 || K < 1 || (beta != 0.0f && C_f32 == NULL)
      || (bias != NULL && !sam2_aligned16 (bias)) || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  if (M == 0 || N == 0)
    return SAM2_CUDA_OK;
  return lt_matmul_nt (h, cuda_type16 (type), CUDA_R_32F, A16, B16, M, N, K, bias, beta,
                       beta != 0.0f ? (const void *) C_f32 : (const void *) D_f32, D_f32, stream,
                       workspace, workspace_bytes);
}
