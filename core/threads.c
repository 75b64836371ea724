/* threads.c: one knob for BLAS and OpenMP threads. */
#include "sam2.h"

#include <omp.h>

void openblas_set_num_threads (int num_threads);

void
sam2_set_num_threads (int n_threads)
{
  if (n_threads <= 0)
    n_threads = omp_get_num_procs ();
  omp_set_num_threads (n_threads);
  openblas_set_num_threads (n_threads);
}

int
sam2_get_num_threads (void)
{
  return omp_get_max_threads ();
}
