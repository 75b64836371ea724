/* binder.h: binding HF-named parameters to model fields while building a model.
 *
 * Each module asks for the tensors it needs by name and expected shape; the binder gets them from
 * a provider (checkpoint files, or the fixtures' hash function), converts them to float32 when
 * needed and remembers the first error, so a build reports exactly which tensor is missing or
 * mis-shaped. Module code binds everything first and checks sam2_binder_failed() before deriving
 * anything from the values.
 */
#ifndef SAM2_BINDER_H
#define SAM2_BINDER_H

#include "model.h"

G_BEGIN_DECLS

/* Returns float32 data for `name` with exactly `shape`, or NULL with `error` set. The data must
 * live as long as the model: providers register buffers they allocate with sam2_binder_own. */
typedef struct _Sam2Binder Sam2Binder;
typedef const float *(*Sam2Provider) (Sam2Binder *binder, gpointer user_data, const char *name,
                                      int ndim, const int64_t *shape, GError **error);

/* Optional: the quantized form of linear layer `name` (in -> out), or NULL to bind it in float
 * (then *error stays NULL). The returned layer is owned by the model from then on. */
typedef Sam2QuantLinear *(*Sam2QuantProvider) (Sam2Binder *binder, gpointer user_data,
                                               const char *name, int in, int out, GError **error);

struct _Sam2Binder {
  Sam2Model *model;
  Sam2Provider provide;
  Sam2QuantProvider provide_quant;
  gpointer user_data;
  GError *error;               /* first failure */
  GPtrArray *specs;            /* Sam2ParamSpec of everything bound, in order */
};

/* A tensor of `ndim` dims given as ints. NULL (and the binder failed) when unavailable. */
const float *sam2_bind (Sam2Binder *b, const char *name, int ndim, ...);
/* The same with a printf-style name: sam2_bindf (b, 2, (int[]){out, in}, "blocks.%d.qkv", i). */
const float *sam2_bindv (Sam2Binder *b, int ndim, const int *shape, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);

/* nn.Linear `prefix`.weight (out, in) and `prefix`.bias (out). */
void sam2_bind_linear (Sam2Binder *b, Sam2Linear *l, int in, int out, const char *fmt, ...)
  G_GNUC_PRINTF (5, 6);
/* A convolution weight (out, in, kh, kw) + bias bound as a linear over im2col columns (in, ky, kx). */
void sam2_bind_conv (Sam2Binder *b, Sam2Linear *l, int in, int out, int kh, int kw,
                     const char *fmt, ...) G_GNUC_PRINTF (7, 8);
void sam2_bind_layer_norm (Sam2Binder *b, Sam2LayerNorm *n, int dim, double eps,
                           const char *fmt, ...) G_GNUC_PRINTF (5, 6);
/* Sam2FeedForward with `n_layers` linears. */
void sam2_bind_mlp (Sam2Binder *b, Sam2Mlp *m, int in, int hidden, int out, int n_layers,
                    Sam2Act act, gboolean sigmoid_output, const char *fmt, ...)
  G_GNUC_PRINTF (9, 10);

gboolean sam2_binder_failed (const Sam2Binder *b);
/* Zeroed memory the model owns from now on (freed with it). */
void *sam2_binder_alloc0 (Sam2Binder *b, size_t bytes);
float *sam2_binder_alloc (Sam2Binder *b, size_t n_floats);
/* A string the model owns. */
const char *sam2_binder_intern (Sam2Binder *b, const char *s);

/* An unbound model of `config` (ref count 1), and binding all its modules through the providers;
 * on failure the model is unreffed and NULL returned. */
Sam2Model *sam2_model_new_empty (const Sam2Config *config, const char *config_json,
                                 const char *name);
Sam2Model *sam2_model_bind_all (Sam2Model *m, Sam2Provider provide, Sam2QuantProvider provide_quant,
                                gpointer user_data, GPtrArray **specs, GError **error);

/* The provider reading the model's own files (m->files): checks shape and dtype, converts F16 /
 * BF16 / F64 to float. */
const float *sam2_model_provide_from_files (Sam2Binder *b, gpointer user_data, const char *name,
                                            int ndim, const int64_t *shape, GError **error);

/* Module binders (hiera.c, neck.c, prompt-encoder.c, mask-decoder.c); each also derives what it
 * precomputes (geometry, positional embeddings) once all its weights bound. */
gboolean sam2_hiera_bind (Sam2Binder *b, GError **error);
gboolean sam2_neck_bind (Sam2Binder *b, GError **error);
gboolean sam2_prompt_encoder_bind (Sam2Binder *b, GError **error);
gboolean sam2_mask_decoder_bind (Sam2Binder *b, GError **error);

G_END_DECLS

#endif
