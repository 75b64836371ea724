/* bench-common.h: what the benchmarks share: the clock, the median, option parsing and the
 * model to run. */
#ifndef SAM2_BENCH_COMMON_H
#define SAM2_BENCH_COMMON_H

#include <glib.h>

#include "sam2.h"

/* The monotonic clock in milliseconds. */
double bench_now_ms (void);

/* The median of n > 0 values (the mean of the middle two when n is even); sorts v in place. */
double bench_median (double *v, int n);

/* `n` preprocessed pixel values of a hash pattern in [-1, 1), the benchmarks' input images
 * (free with g_free). */
float *bench_hash_pixels (size_t n);

/* Parses the command line with `entries`; on an error prints it and returns FALSE (the
 * benchmark then exits with 2). */
gboolean bench_parse_options (int *argc, char ***argv, const GOptionEntry *entries,
                              const char *summary);

/* The model a benchmark runs: `model_ref` (anything sam2_model_load takes) when set, else the
 * architecture of `hash_config` (NULL: the tiny fixture's config.json) with hash weights. *name
 * (may be NULL) is set to what the model was built from. NULL with an error. */
Sam2Model *bench_load_model (const char *model_ref, const char *hash_config, const char **name,
                             GError **error);

/* The start the CPU model benchmarks share: parses --model / --hash-config / --iterations (its
 * help `iterations_help`, default 5) / --threads / --quantize / --precision, sets the thread
 * count and loads the model (as bench_load_model), quantized per --quantize's recipe when given
 * (calibrated on one hash frame: the quantized model's layout and cost, not its accuracy).
 * *precision: the CPU backend's precision asked for (FP32 by default; BF16 only where this CPU
 * runs it). NULL after printing why; *exit_code is then 2 (usage) or 1. */
Sam2Model *bench_cpu_model_start (int *argc, char ***argv, const char *summary,
                                  const char *iterations_help, int *iterations,
                                  Sam2Precision *precision, int *exit_code);

#endif
