/* binder.c: see binder.h. */
#include "binder.h"

#include <stdarg.h>

static void
record_spec (Sam2Binder *b, const char *name, int ndim, const int64_t *shape)
{
  Sam2ParamSpec *spec = g_new0 (Sam2ParamSpec, 1);
  spec->name = g_strdup (name);
  spec->ndim = ndim;
  for (int d = 0; d < ndim && d < 4; d++)
    spec->shape[d] = shape[d];
  g_ptr_array_add (b->specs, spec);
}

static const float *
bind_shape (Sam2Binder *b, const char *name, int ndim, const int64_t *shape)
{
  if (b->error != NULL)
    return NULL;
  record_spec (b, name, ndim, shape);
  const float *data = b->provide (b, b->user_data, name, ndim, shape, &b->error);
  if (data != NULL) {
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
      numel *= shape[d];
    b->model->n_params += numel;
    Sam2TensorRef *ref = sam2_binder_alloc0 (b, sizeof (Sam2TensorRef));
    ref->data = data;
    ref->ndim = ndim;
    for (int d = 0; d < ndim && d < 4; d++)
      ref->shape[d] = shape[d];
    g_hash_table_insert (b->model->tensors, (gpointer) sam2_binder_intern (b, name), ref);
  }
  return data;
}

const float *
sam2_bind (Sam2Binder *b, const char *name, int ndim, ...)
{
  int64_t shape[4];
  va_list ap;
  va_start (ap, ndim);
  for (int d = 0; d < ndim; d++)
    shape[d] = va_arg (ap, int);
  va_end (ap);
  return bind_shape (b, name, ndim, shape);
}

const float *
sam2_bindv (Sam2Binder *b, int ndim, const int *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  int64_t shape64[4];
  for (int d = 0; d < ndim; d++)
    shape64[d] = shape[d];
  const float *data = bind_shape (b, name, ndim, shape64);
  g_free (name);
  return data;
}

static void
bind_linear_named (Sam2Binder *b, Sam2Linear *l, const char *prefix, int in, int out, int ndim,
                   const int64_t *weight_shape)
{
  char *wname = g_strconcat (prefix, ".weight", NULL);
  char *bname = g_strconcat (prefix, ".bias", NULL);
  int64_t bias_shape[1] = { out };
  l->name = sam2_binder_intern (b, prefix);
  l->in_features = in;
  l->out_features = out;
  l->weight = NULL;
  l->quant = NULL;
  if (b->error == NULL && b->provide_quant != NULL)
    l->quant = b->provide_quant (b, b->user_data, prefix, in, out, &b->error);
  if (l->quant != NULL) {
    /* the float weight is not part of a quantized layer; its parameters still count */
    record_spec (b, wname, ndim, weight_shape);
    b->model->n_params += (int64_t) in * out;
  } else {
    l->weight = bind_shape (b, wname, ndim, weight_shape);
  }
  l->bias = bind_shape (b, bname, 1, bias_shape);
  if (l->quant != NULL)
    l->quant->bias = l->bias;
  g_ptr_array_add (b->model->linears, l);
  g_free (wname);
  g_free (bname);
}

void
sam2_bind_linear (Sam2Binder *b, Sam2Linear *l, int in, int out, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  int64_t shape[2] = { out, in };
  bind_linear_named (b, l, prefix, in, out, 2, shape);
  g_free (prefix);
}

void
sam2_bind_conv (Sam2Binder *b, Sam2Linear *l, int in, int out, int kh, int kw,
                const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  /* (out, in, kh, kw) row-major is already (out, in * kh * kw) with columns ordered (c, ky, kx). */
  int64_t shape[4] = { out, in, kh, kw };
  /* the config bounds each factor (channels 65536, kernel sides 8192), not their product */
  const int64_t k = (int64_t) in * kh * kw;
  if (k > G_MAXINT && b->error == NULL)
    g_set_error (&b->error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "%s: a convolution of %d channels and a %dx%d kernel (%" G_GINT64_FORMAT
                 " weights per output) is beyond what this build supports; the config is wrong",
                 prefix, in, kh, kw, k);
  bind_linear_named (b, l, prefix, k > G_MAXINT ? 0 : (int) k, out, 4, shape);
  g_free (prefix);
}

void
sam2_bind_layer_norm (Sam2Binder *b, Sam2LayerNorm *n, int dim, double eps, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  n->dim = dim;
  n->eps = (float) eps;
  n->weight = sam2_bindv (b, 1, (int[]) { dim }, "%s.weight", prefix);
  n->bias = sam2_bindv (b, 1, (int[]) { dim }, "%s.bias", prefix);
  g_free (prefix);
}

void
sam2_bind_mlp (Sam2Binder *b, Sam2Mlp *m, int in, int hidden, int out, int n_layers, Sam2Act act,
               gboolean sigmoid_output, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  m->n_layers = n_layers;
  m->act = act;
  m->sigmoid_output = sigmoid_output;
  m->layers = sam2_binder_alloc0 (b, sizeof (Sam2Linear) * n_layers);
  sam2_bind_linear (b, &m->layers[0], in, hidden, "%s.proj_in", prefix);
  for (int i = 1; i < n_layers - 1; i++)
    sam2_bind_linear (b, &m->layers[i], hidden, hidden, "%s.layers.%d", prefix, i - 1);
  sam2_bind_linear (b, &m->layers[n_layers - 1], hidden, out, "%s.proj_out", prefix);
  g_free (prefix);
}

gboolean
sam2_binder_failed (const Sam2Binder *b)
{
  return b->error != NULL;
}

void *
sam2_binder_alloc0 (Sam2Binder *b, size_t bytes)
{
  void *p = g_malloc0 (MAX (bytes, 1));
  g_ptr_array_add (b->model->owned, p);
  return p;
}

float *
sam2_binder_alloc (Sam2Binder *b, size_t n_floats)
{
  return sam2_binder_alloc0 (b, n_floats * sizeof (float));
}

const char *
sam2_binder_intern (Sam2Binder *b, const char *s)
{
  return g_string_chunk_insert_const (b->model->names, s);
}
