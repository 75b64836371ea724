/* backend-args.h: the --backend / --precision options of the sam2q commands that run a model. */
#ifndef SAM2Q_BACKEND_ARGS_H
#define SAM2Q_BACKEND_ARGS_H

#include "sam2.h"

G_BEGIN_DECLS

typedef struct {
  char *backend;               /* as given, NULL: auto */
  char *precision;
} Sam2qBackendArgs;

/* Two GOptionEntry initialisers for a Sam2qBackendArgs `args`. */
#define SAM2Q_BACKEND_ENTRIES(args)                                                               \
  { "backend", 0, 0, G_OPTION_ARG_STRING, &(args).backend,                                       \
    "auto (CUDA when built with it and a GPU is present, else CPU), cpu or cuda", "NAME" },      \
  { "precision", 0, 0, G_OPTION_ARG_STRING, &(args).precision,                                   \
    "auto (fp32; fp16 float layers for a quantized model on CUDA), fp32, fp16 (CUDA) or bf16 "  \
    "(CUDA, or CPUs with AVX-512 BF16); quantized layers stay W4A8", "P" }

/* Session options from the arguments; FALSE with an error naming the valid values, or saying
 * why an explicitly requested backend or precision cannot run here (checked before any model is
 * loaded). */
gboolean sam2q_backend_args_resolve (const Sam2qBackendArgs *args, Sam2SessionOptions *options,
                                     GError **error);
void sam2q_backend_args_clear (Sam2qBackendArgs *args);

G_END_DECLS

#endif
