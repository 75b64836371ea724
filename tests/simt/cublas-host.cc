/* cublas-host.cc: the cuBLAS and cuBLASLt calls the kernel files make, computed on the host for
 * the SIMT emulator (simt.cc): operands converted to float, one sgemm of the host BLAS, the
 * cuBLASLt bias epilogue, the result rounded to the output type. These are NVIDIA's libraries,
 * not ours: the emulated suites check what our launchers ask of them (shapes, leading dimensions,
 * transposes, types, the epilogue) and the kernels around them, with the suites' own bounds for
 * the library's products. Anything outside what the kernels use answers NOT_SUPPORTED. */
#include "simt-device.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdlib.h>
#include <string.h>

#include <vector>

#include <cblas.h>

namespace {

int handle_token;

/* what a layout, a matmul description and a preference hold here */
struct Layout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};

struct MatmulDesc {
  cublasOperation_t ta, tb;
  cublasLtEpilogue_t epilogue;
  const void *bias;
  int bias_type;   /* CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; -1 (cuBLASLt's default): D's type */
};

CBLAS_TRANSPOSE
trans (cublasOperation_t op)
{
  return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
}

bool
supported_type (cudaDataType_t t)
{
  return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF;
}

float
load (cudaDataType_t t, const void *p, size_t i)
{
  switch (t) {
  case CUDA_R_16F:
    return __half2float (static_cast<const __half *> (p)[i]);
  case CUDA_R_16BF:
    return __bfloat162float (static_cast<const __nv_bfloat16 *> (p)[i]);
  default:
    return static_cast<const float *> (p)[i];
  }
}

void
store (cudaDataType_t t, void *p, size_t i, float v)
{
  switch (t) {
  case CUDA_R_16F:
    static_cast<__half *> (p)[i] = __float2half_rn (v);
    break;
  case CUDA_R_16BF:
    static_cast<__nv_bfloat16 *> (p)[i] = __float2bfloat16_rn (v);
    break;
  default:
    static_cast<float *> (p)[i] = v;
  }
}

/* (rows, cols) column-major with leading dimension ld, as floats with ld = rows */
std::vector<float>
to_float (cudaDataType_t t, const void *p, int rows, int cols, int ld)
{
  std::vector<float> f ((size_t) rows * cols);
  for (int c = 0; c < cols; c++)
    for (int r = 0; r < rows; r++)
      f[(size_t) c * rows + r] = load (t, p, (size_t) c * ld + r);
  return f;
}

/* D (m, n) = alpha op(A) op(B) + beta C (+ bias per row), column-major, any of the three types */
void
gemm (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
      cudaDataType_t at, const void *A, int lda, cudaDataType_t bt, const void *B, int ldb,
      float beta, cudaDataType_t ct, const void *C, int ldc, cudaDataType_t dt, void *D, int ldd,
      const float *bias)
{
  const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
  const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
  const std::vector<float> a = to_float (at, A, ar, ac, lda), b = to_float (bt, B, br, bc, ldb);
  std::vector<float> d = beta != 0.0f ? to_float (ct, C, m, n, ldc)
                                      : std::vector<float> ((size_t) m * n, 0.0f);
  cblas_sgemm (CblasColMajor, trans (ta), trans (tb), m, n, k, alpha, a.data (), ar, b.data (),
               br, beta, d.data (), m);
  for (int c = 0; c < n; c++)
    for (int r = 0; r < m; r++) {
      float v = d[(size_t) c * m + r];
      if (bias != nullptr)
        v += bias[r];
      store (dt, D, (size_t) c * ldd + r, v);
    }
}

cudaStream_t bound_stream = nullptr;

}  // namespace

extern "C" {

cublasStatus_t
cublasCreate_v2 (cublasHandle_t *handle)
{
  *handle = reinterpret_cast<cublasHandle_t> (&handle_token);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDestroy_v2 (cublasHandle_t)
{
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetStream_v2 (cublasHandle_t, cudaStream_t stream)
{
  bound_stream = stream;           /* kept only for cublasGetStream: work runs in call order */
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasGetStream_v2 (cublasHandle_t, cudaStream_t *stream)
{
  *stream = bound_stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetWorkspace_v2 (cublasHandle_t, void *, size_t)
{
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetMathMode (cublasHandle_t, cublasMath_t mode)
{
  /* FP32 products stay FP32 (no TF32), which is what the host computes */
  return mode == CUBLAS_DEFAULT_MATH || mode == CUBLAS_PEDANTIC_MATH ? CUBLAS_STATUS_SUCCESS
                                                                     : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t
cublasSgemm_v2 (cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                const float *alpha, const float *A, int lda, const float *B, int ldb,
                const float *beta, float *C, int ldc)
{
  const float al = *alpha, be = *beta;   /* host pointer mode: read at the call */
  sam2_simt::enqueue ([=] {
    cblas_sgemm (CblasColMajor, trans (ta), trans (tb), m, n, k, al, A, lda, B, ldb, be, C, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDgemm_v2 (cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                const double *alpha, const double *A, int lda, const double *B, int ldb,
                const double *beta, double *C, int ldc)
{
  const double al = *alpha, be = *beta;
  sam2_simt::enqueue ([=] {
    cblas_dgemm (CblasColMajor, trans (ta), trans (tb), m, n, k, al, A, lda, B, ldb, be, C, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasGemmEx (cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
              const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
              cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
              cublasComputeType_t compute, cublasGemmAlgo_t)
{
  if (compute != CUBLAS_COMPUTE_32F || !supported_type (at) || !supported_type (bt)
      || !supported_type (ct))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const float al = *static_cast<const float *> (alpha), be = *static_cast<const float *> (beta);
  sam2_simt::enqueue ([=] {
    gemm (ta, tb, m, n, k, al, at, A, lda, bt, B, ldb, be, ct, C, ldc, ct, C, ldc, nullptr);
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtCreate (cublasLtHandle_t *handle)
{
  *handle = reinterpret_cast<cublasLtHandle_t> (&handle_token);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtDestroy (cublasLtHandle_t)
{
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescCreate (cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                          cudaDataType_t scale)
{
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  MatmulDesc *d
      = new MatmulDesc { CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr, -1 };
  *desc = reinterpret_cast<cublasLtMatmulDesc_t> (d);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t desc)
{
  delete reinterpret_cast<MatmulDesc *> (desc);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                const void *buf, size_t bytes)
{
  MatmulDesc *d = reinterpret_cast<MatmulDesc *> (desc);
  switch (attr) {
  case CUBLASLT_MATMUL_DESC_TRANSA:
    memcpy (&d->ta, buf, bytes < sizeof d->ta ? bytes : sizeof d->ta);
    return CUBLAS_STATUS_SUCCESS;
  case CUBLASLT_MATMUL_DESC_TRANSB:
    memcpy (&d->tb, buf, bytes < sizeof d->tb ? bytes : sizeof d->tb);
    return CUBLAS_STATUS_SUCCESS;
  case CUBLASLT_MATMUL_DESC_EPILOGUE:
    memcpy (&d->epilogue, buf, bytes < sizeof d->epilogue ? bytes : sizeof d->epilogue);
    return d->epilogue == CUBLASLT_EPILOGUE_DEFAULT || d->epilogue == CUBLASLT_EPILOGUE_BIAS
               ? CUBLAS_STATUS_SUCCESS
               : CUBLAS_STATUS_NOT_SUPPORTED;
  case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
    memcpy (&d->bias, buf, sizeof d->bias);
    return CUBLAS_STATUS_SUCCESS;
  case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: {
    int32_t t;
    memcpy (&t, buf, bytes < sizeof t ? bytes : sizeof t);
    if (t != -1 && !supported_type ((cudaDataType_t) t))
      return CUBLAS_STATUS_NOT_SUPPORTED;
    d->bias_type = t;
    return CUBLAS_STATUS_SUCCESS;
  }
  default:
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
}

cublasStatus_t
cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                            uint64_t cols, int64_t ld)
{
  if (!supported_type (type))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  *layout = reinterpret_cast<cublasLtMatrixLayout_t> (new Layout { type, rows, cols, ld });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t layout)
{
  delete reinterpret_cast<Layout *> (layout);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceCreate (cublasLtMatmulPreference_t *pref)
{
  *pref = reinterpret_cast<cublasLtMatmulPreference_t> (new int (0));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceDestroy (cublasLtMatmulPreference_t pref)
{
  delete reinterpret_cast<int *> (pref);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceSetAttribute (cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                      const void *, size_t)
{
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t, cublasLtMatmulDesc_t desc,
                                cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                cublasLtMatrixLayout_t, cublasLtMatrixLayout_t ld,
                                cublasLtMatmulPreference_t, int requested,
                                cublasLtMatmulHeuristicResult_t results[], int *found)
{
  /* one "algorithm": the host's */
  if (requested < 1)
    return CUBLAS_STATUS_INVALID_VALUE;
  /* SAM2_SIMT_LT_NO_16_BIAS_OUTPUT set: none for a 16-bit output with a bias epilogue, as a
   * cuBLASLt may answer for some shapes, so that the callers' fallbacks run here too */
  const cudaDataType_t out = reinterpret_cast<const Layout *> (ld)->type;
  if (getenv ("SAM2_SIMT_LT_NO_16_BIAS_OUTPUT") != nullptr
      && reinterpret_cast<const MatmulDesc *> (desc)->epilogue == CUBLASLT_EPILOGUE_BIAS
      && (out == CUDA_R_16F || out == CUDA_R_16BF)) {
    *found = 0;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  memset (&results[0], 0, sizeof results[0]);
  results[0].state = CUBLAS_STATUS_SUCCESS;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmul (cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb,
                const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D,
                cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *, void *, size_t,
                cudaStream_t)
{
  const MatmulDesc *d = reinterpret_cast<const MatmulDesc *> (desc);
  const Layout *a = reinterpret_cast<const Layout *> (la), *b = reinterpret_cast<const Layout *> (lb);
  const Layout *c = reinterpret_cast<const Layout *> (lc), *o = reinterpret_cast<const Layout *> (ld);
  const int m = (int) o->rows, n = (int) o->cols;
  const int k = (int) (d->ta == CUBLAS_OP_N ? a->cols : a->rows);
  if ((d->ta == CUBLAS_OP_N ? a->rows : a->cols) != (uint64_t) m
      || (d->tb == CUBLAS_OP_N ? b->rows : b->cols) != (uint64_t) k
      || (d->tb == CUBLAS_OP_N ? b->cols : b->rows) != (uint64_t) n || c->rows != o->rows
      || c->cols != o->cols
      || (d->epilogue == CUBLASLT_EPILOGUE_BIAS && d->bias == nullptr))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float *> (alpha), be = *static_cast<const float *> (beta);
  /* the descriptions by value: the caller may destroy them once the call is enqueued */
  const Layout av = *a, bv = *b, cv = *c, ov = *o;
  const cublasOperation_t ta = d->ta, tb = d->tb;
  /* the bias in its type, which is D's unless set: a float bias read as halves (the attribute
   * forgotten) gives other sums, as on the GPU */
  const void *bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
  const cudaDataType_t bias_type = d->bias_type == -1 ? ov.type : (cudaDataType_t) d->bias_type;
  sam2_simt::enqueue ([=] {
    std::vector<float> b;
    if (bias != nullptr)
      for (int i = 0; i < m; i++)
        b.push_back (load (bias_type, bias, (size_t) i));
    gemm (ta, tb, m, n, k, al, av.type, A, (int) av.ld, bv.type, B, (int) bv.ld, be, cv.type, C,
          (int) cv.ld, ov.type, D, (int) ov.ld, bias != nullptr ? b.data () : nullptr);
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
