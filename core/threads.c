/* threads.c: one knob for BLAS and OpenMP threads (threads.h says why it is kept here). */
#include "threads.h"
#include "sam2.h"

#include <omp.h>

void openblas_set_num_threads (int num_threads);

static gint requested_threads;     /* 0: never set */

void
sam2_set_num_threads (int n_threads)
{
  if (n_threads <= 0)
    n_threads = omp_get_num_procs ();
  g_atomic_int_set (&requested_threads, n_threads);
  omp_set_num_threads (n_threads);
  openblas_set_num_threads (n_threads);
}

int
sam2_get_num_threads (void)
{
  sam2_threads_apply ();
  return omp_get_max_threads ();
}

void
sam2_threads_apply (void)
{
  const int n = g_atomic_int_get (&requested_threads);
  if (n > 0 && omp_get_max_threads () != n)
    omp_set_num_threads (n);
}
