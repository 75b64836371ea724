/* threads.h: the thread count of sam2_set_num_threads (sam2.h), for every thread that runs work.
 *
 * OpenMP keeps its thread count per calling thread: omp_set_num_threads on the application's
 * main thread does not reach a session driven from another thread (a GStreamer streaming
 * thread, a worker). The count is therefore kept process-wide here and applied by the entry
 * points that start parallel work (encoder, frame staging, decoder, quantization), on the
 * thread that calls them. */
#ifndef SAM2_THREADS_H
#define SAM2_THREADS_H

#include <glib.h>

G_BEGIN_DECLS

/* Gives the calling thread the process-wide count, when sam2_set_num_threads set one (otherwise
 * OpenMP's own default, OMP_NUM_THREADS or one per core, stays). Cheap: one atomic read. */
void sam2_threads_apply (void);

G_END_DECLS

#endif
