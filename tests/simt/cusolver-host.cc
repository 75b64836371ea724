/* cusolver-host.cc: the cuSOLVER functions GPTQ's GPU solve calls (kernels/gptq-solve.cu, which
 * looks them up with dlsym), computed on the host for the SIMT emulator by the LAPACK routines
 * the CPU's GPTQ uses: Cholesky factorisation and inverse of a column-major double matrix, the
 * status in the device int cuSOLVER writes it to (0, or > 0 for a matrix that is not positive
 * definite). The emulator's programs export them (--export-dynamic); under SAM2_SIMT_ON_HOST
 * gptq-solve.cu opens the program itself instead of libcusolver. */
#include "simt-device.h"

#include <cusolverDn.h>
#include <lapacke.h>

namespace {

int handle_token;

char
uplo_char (cublasFillMode_t uplo)
{
  return uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
}

}  // namespace

extern "C" {

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnCreate (cusolverDnHandle_t *handle)
{
  *handle = reinterpret_cast<cusolverDnHandle_t> (&handle_token);
  return CUSOLVER_STATUS_SUCCESS;
}

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnDestroy (cusolverDnHandle_t)
{
  return CUSOLVER_STATUS_SUCCESS;
}

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnSetStream (cusolverDnHandle_t, cudaStream_t)
{
  return CUSOLVER_STATUS_SUCCESS;
}

/* LAPACK needs no workspace for these: one double keeps the caller's allocation non-empty */
__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnDpotrf_bufferSize (cusolverDnHandle_t, cublasFillMode_t, int n, double *, int lda,
                             int *lwork)
{
  if (n < 0 || lda < (n > 1 ? n : 1))
    return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = 1;
  return CUSOLVER_STATUS_SUCCESS;
}

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnDpotri_bufferSize (cusolverDnHandle_t h, cublasFillMode_t uplo, int n, double *A,
                             int lda, int *lwork)
{
  return cusolverDnDpotrf_bufferSize (h, uplo, n, A, lda, lwork);
}

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnDpotrf (cusolverDnHandle_t, cublasFillMode_t uplo, int n, double *A, int lda,
                  double *, int, int *info)
{
  if (n < 0 || lda < (n > 1 ? n : 1))
    return CUSOLVER_STATUS_INVALID_VALUE;
  const char u = uplo_char (uplo);
  sam2_simt::enqueue ([=] { *info = (int) LAPACKE_dpotrf_work (LAPACK_COL_MAJOR, u, n, A, lda); });
  return CUSOLVER_STATUS_SUCCESS;
}

__attribute__ ((visibility ("default"))) cusolverStatus_t
cusolverDnDpotri (cusolverDnHandle_t, cublasFillMode_t uplo, int n, double *A, int lda,
                  double *, int, int *info)
{
  if (n < 0 || lda < (n > 1 ? n : 1))
    return CUSOLVER_STATUS_INVALID_VALUE;
  const char u = uplo_char (uplo);
  sam2_simt::enqueue ([=] { *info = (int) LAPACKE_dpotri_work (LAPACK_COL_MAJOR, u, n, A, lda); });
  return CUSOLVER_STATUS_SUCCESS;
}

}  // extern "C"
