/* gptq-solve.cu: one layer's GPTQ on the device (kernels.h, GPTQ section): the inverse Hessian's
 * Cholesky factor through cuSOLVER, the columns by gptq.cu's kernels, the block updates through
 * cuBLAS, in the order of core/quant/weights.c's CPU solve.
 *
 * LAPACK's column-major view of the row-major symmetric H is H itself, so the calls are those
 * weights.c makes: dpotrf 'L', dpotri 'L' (the inverse in the column-major lower triangle, the
 * row-major upper one), the row-major lower triangle mirrored from it, dpotrf 'U' (the factor in
 * the row-major lower triangle), then moved to the upper one with zeros below. */
#include "common.cuh"

#include <cusolverDn.h>
#include <dlfcn.h>
#include <stdlib.h>

/* cuSOLVER is loaded when the first solver is made, not linked: it is several hundred MB, wanted
 * by calibration alone, and a machine without it (the GPU machines carry it in PyTorch's CUDA
 * wheels) must still run everything else; there sam2_cuda_solver_new returns NULL and GPTQ stays
 * on the CPU. The functions used, from the library of the headers' major version. */
#define SAM2_STR_(x) #x
#define SAM2_STR(x) SAM2_STR_ (x)
/* Under the SIMT emulator (tests/simt) the functions are the emulator's own, in the program
 * (dlopen (NULL)): cusolver-host.cc computes them with LAPACK. */
#ifdef SAM2_SIMT_ON_HOST
#define CUSOLVER_SONAME NULL
#else
#define CUSOLVER_SONAME "libcusolver.so." SAM2_STR (CUSOLVER_VER_MAJOR)
#endif

struct CusolverApi {
  decltype (&cusolverDnCreate) create;
  decltype (&cusolverDnDestroy) destroy;
  decltype (&cusolverDnSetStream) set_stream;
  decltype (&cusolverDnDpotrf_bufferSize) potrf_size;
  decltype (&cusolverDnDpotrf) potrf;
  decltype (&cusolverDnDpotri_bufferSize) potri_size;
  decltype (&cusolverDnDpotri) potri;
};

struct Sam2CudaSolver {
  CusolverApi api;
  cusolverDnHandle_t handle;
  double *work;                /* the factorizations' workspace, `lwork` doubles */
  int lwork;
  int *info;                   /* device: cuSOLVER's status of the last call */
};

static bool
load_cusolver (CusolverApi *api)
{
  /* kept loaded for the process: a handle's functions must outlive every solver */
  static void *lib = dlopen (CUSOLVER_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return false;
  void *f[7];
  static const char *const names[7] = {
    "cusolverDnCreate", "cusolverDnDestroy", "cusolverDnSetStream",
    "cusolverDnDpotrf_bufferSize", "cusolverDnDpotrf", "cusolverDnDpotri_bufferSize",
    "cusolverDnDpotri",
  };
  for (int i = 0; i < 7; i++)
    if ((f[i] = dlsym (lib, names[i])) == NULL)
      return false;
  api->create = (decltype (api->create)) f[0];
  api->destroy = (decltype (api->destroy)) f[1];
  api->set_stream = (decltype (api->set_stream)) f[2];
  api->potrf_size = (decltype (api->potrf_size)) f[3];
  api->potrf = (decltype (api->potrf)) f[4];
  api->potri_size = (decltype (api->potri_size)) f[5];
  api->potri = (decltype (api->potri)) f[6];
  return true;
}

extern "C" int
sam2_cuda_solver_available (void)
{
  CusolverApi api;
  return load_cusolver (&api) ? 1 : 0;
}

extern "C" Sam2CudaSolver *
sam2_cuda_solver_new (cudaStream_t stream)
{
  Sam2CudaSolver *s = (Sam2CudaSolver *) calloc (1, sizeof *s);
  if (s == NULL)
    return NULL;
  if (!load_cusolver (&s->api) || s->api.create (&s->handle) != CUSOLVER_STATUS_SUCCESS) {
    free (s);
    return NULL;
  }
  if (s->api.set_stream (s->handle, stream) != CUSOLVER_STATUS_SUCCESS
      || cudaMalloc ((void **) &s->info, sizeof (int)) != cudaSuccess) {
    (void) cudaGetLastError ();
    s->api.destroy (s->handle);
    free (s);
    return NULL;
  }
  return s;
}

extern "C" void
sam2_cuda_solver_free (Sam2CudaSolver *s)
{
  if (s == NULL)
    return;
  cudaFree (s->work);
  cudaFree (s->info);
  s->api.destroy (s->handle);
  free (s);
}

namespace {

/* The workspace for dpotrf and dpotri of order k, grown when a larger k needs more. */
int
ensure_workspace (Sam2CudaSolver *s, int k, double *A)
{
  int l1 = 0, l2 = 0, l3 = 0;
  if (s->api.potrf_size (s->handle, CUBLAS_FILL_MODE_LOWER, k, A, k, &l1)
        != CUSOLVER_STATUS_SUCCESS
      || s->api.potri_size (s->handle, CUBLAS_FILL_MODE_LOWER, k, A, k, &l2)
           != CUSOLVER_STATUS_SUCCESS
      || s->api.potrf_size (s->handle, CUBLAS_FILL_MODE_UPPER, k, A, k, &l3)
           != CUSOLVER_STATUS_SUCCESS)
    return SAM2_CUDA_DEVICE;
  int need = l1 > l2 ? l1 : l2;
  need = need > l3 ? need : l3;
  if (need <= s->lwork && s->work != NULL)
    return SAM2_CUDA_OK;
  cudaFree (s->work);
  s->work = NULL;
  s->lwork = 0;
  if (cudaMalloc ((void **) &s->work, (size_t) (need > 0 ? need : 1) * sizeof (double))
      != cudaSuccess) {
    (void) cudaGetLastError ();
    return SAM2_CUDA_OUT_OF_MEMORY;
  }
  s->lwork = need;
  return SAM2_CUDA_OK;
}

/* cuSOLVER's verdict of the call just enqueued: 0 OK, > 0 not positive definite, < 0 a failure
 * (the status). */
int
factor_info (Sam2CudaSolver *s, cusolverStatus_t st, cudaStream_t stream)
{
  if (st != CUSOLVER_STATUS_SUCCESS)
    return SAM2_CUDA_DEVICE;
  int info = 0;
  if (cudaMemcpyAsync (&info, s->info, sizeof info, cudaMemcpyDeviceToHost, stream) != cudaSuccess
      || cudaStreamSynchronize (stream) != cudaSuccess)
    return SAM2_CUDA_DEVICE;
  return info == 0 ? 0 : info > 0 ? 1 : SAM2_CUDA_UNSUPPORTED;
}

/* U = upper Cholesky factor of (H0 + d I)^-1; 0, 1 (singular) or a negative status. */
int
inverse_cholesky (Sam2CudaSolver *s, const double *H0, int k, double d, double *U,
                  cudaStream_t stream)
{
  int st = sam2_cuda_gptq_damped_copy (H0, k, d, U, stream);
  if (st != SAM2_CUDA_OK)
    return st;
  st = factor_info (s, s->api.potrf (s->handle, CUBLAS_FILL_MODE_LOWER, k, U, k, s->work,
                                         s->lwork, s->info), stream);
  if (st != 0)
    return st;
  st = factor_info (s, s->api.potri (s->handle, CUBLAS_FILL_MODE_LOWER, k, U, k, s->work,
                                         s->lwork, s->info), stream);
  if (st != 0)
    return st;
  if ((st = sam2_cuda_gptq_mirror (k, U, stream)) != SAM2_CUDA_OK)
    return st;
  st = factor_info (s, s->api.potrf (s->handle, CUBLAS_FILL_MODE_UPPER, k, U, k, s->work,
                                         s->lwork, s->info), stream);
  if (st != 0)
    return st;
  return sam2_cuda_gptq_upper_factor (k, U, stream);
}

}  // namespace

extern "C" int
sam2_cuda_gptq_solve (Sam2CudaSolver *s, cublasHandle_t cublas, const Sam2CudaGptq *g,
                      const double *H0, double d0, int tries, cudaStream_t stream)
{
  if (s == NULL || cublas == NULL || g == NULL || H0 == NULL || g->U == NULL || g->k < 1
      || g->n < 1 || g->block < 1 || tries < 1)
    return SAM2_CUDA_UNSUPPORTED;
  const int n = g->n, k = g->k, B = g->block;
  int st = ensure_workspace (s, k, g->U);
  if (st != SAM2_CUDA_OK)
    return st;
  /* (cublasSetStream would also reset the handle's workspace: the caller binds it) */
  if (s->api.set_stream (s->handle, stream) != CUSOLVER_STATUS_SUCCESS)
    return SAM2_CUDA_DEVICE;

  double d = d0;
  st = 1;
  for (int t = 0; t < tries && st == 1; t++, d *= 10.0)
    st = inverse_cholesky (s, H0, k, d, g->U, stream);
  if (st != 0)
    return st;   /* 1: singular at every damping; or a failure */

  const double minus_one = -1.0, one = 1.0;
  for (int i1 = 0; i1 < k; i1 += B) {
    const int i2 = i1 + B < k ? i1 + B : k, count = i2 - i1;
    if ((st = sam2_cuda_gptq_columns (g, i1, i2, stream)) != SAM2_CUDA_OK)
      return st;
    /* W[:, i2:] (n, k - i2) -= Err (n, count) U[i1:i2, i2:]: column-major W and Err (ld n), the
     * row-major block of U read as its transpose (ld k) */
    if (i2 < k
        && cublasDgemm (cublas, CUBLAS_OP_N, CUBLAS_OP_T, n, k - i2, count, &minus_one, g->err, n,
                        g->U + (size_t) i1 * k + i2, k, &one, g->W + (size_t) i2 * n, n)
             != CUBLAS_STATUS_SUCCESS)
      return SAM2_CUDA_DEVICE;
  }
  return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}
