/* model.c: building a Sam2Model from checkpoint files (or hash weights), sharing and freeing it. */
#include "binder.h"
#include "hash-weights.h"
#include "hub.h"
#include "qmodel.h"

#include <math.h>
#include <string.h>

static void
param_spec_free (gpointer p)
{
  Sam2ParamSpec *spec = p;
  g_free (spec->name);
  g_free (spec);
}

static void
model_free (Sam2Model *m)
{
  if (m->linears != NULL) {
    for (guint i = 0; i < m->linears->len; i++)
      sam2_quant_linear_free (((Sam2Linear *) m->linears->pdata[i])->quant);
    g_ptr_array_unref (m->linears);
  }
  if (m->tensors != NULL)
    g_hash_table_unref (m->tensors);
  sam2_model_unref (m->base);
  g_free (m->recipe_yaml);
  g_free (m->provenance_json);
  for (int i = 0; i < m->n_files; i++)
    sam2_safetensors_close (m->files[i]);
  g_free (m->files);
  if (m->owned != NULL)
    g_ptr_array_unref (m->owned);
  if (m->names != NULL)
    g_string_chunk_free (m->names);
  g_free (m->name);
  g_free (m->config_json);
  g_free (m);
}

Sam2Model *
sam2_model_ref (Sam2Model *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_atomic_int_inc (&model->ref_count);
  return model;
}

void
sam2_model_unref (Sam2Model *model)
{
  if (model != NULL && g_atomic_int_dec_and_test (&model->ref_count))
    model_free (model);
}

Sam2Model *
sam2_model_new_empty (const Sam2Config *config, const char *config_json, const char *name)
{
  Sam2Model *m = g_new0 (Sam2Model, 1);
  m->ref_count = 1;
  m->config = *config;
  m->config_json = g_strdup (config_json);
  m->name = g_strdup (name);
  m->owned = g_ptr_array_new_with_free_func (g_free);
  m->names = g_string_chunk_new (4096);
  m->tensors = g_hash_table_new (g_str_hash, g_str_equal);
  m->linears = g_ptr_array_new ();
  return m;
}

Sam2Model *
sam2_model_bind_all (Sam2Model *m, Sam2Provider provide, Sam2QuantProvider provide_quant,
                     gpointer user_data, GPtrArray **specs_out, GError **error)
{
  Sam2Binder b = { .model = m, .provide = provide, .provide_quant = provide_quant,
                   .user_data = user_data };
  b.specs = g_ptr_array_new_with_free_func (param_spec_free);
  GError *module_error = NULL;

  gboolean ok = sam2_hiera_bind (&b, &module_error) && b.error == NULL
                && sam2_neck_bind (&b, &module_error) && b.error == NULL
                && sam2_prompt_encoder_bind (&b, &module_error) && b.error == NULL
                && sam2_mask_decoder_bind (&b, &module_error) && b.error == NULL;
  if (!ok) {
    if (module_error != NULL) {
      g_propagate_error (error, module_error);
      g_clear_error (&b.error);
    } else {
      g_propagate_error (error, b.error);
    }
    g_ptr_array_unref (b.specs);
    sam2_model_unref (m);
    return NULL;
  }
  if (specs_out != NULL)
    *specs_out = b.specs;
  else
    g_ptr_array_unref (b.specs);
  return m;
}

/* ---- provider: checkpoint files ------------------------------------------------------------ */

static char *
shape_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int d = 0; d < ndim; d++)
    g_string_append_printf (s, d ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, shape[d]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* The index of the first NaN or infinity of v (n), or n. Whole blocks are tested by their
 * exponent bits with no branch, so the compiler vectorises the scan. */
static size_t
first_non_finite (const float *v, size_t n)
{
  for (size_t i = 0; i < n; i += 1024) {
    const size_t end = MIN (n, i + 1024);
    guint32 any = 0;
    for (size_t j = i; j < end; j++) {
      guint32 bits;
      memcpy (&bits, &v[j], sizeof bits);
      any |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (any)
      for (size_t j = i; j < end; j++)
        if (!isfinite (v[j]))
          return j;
  }
  return n;
}

const float *
sam2_model_provide_from_files (Sam2Binder *b, gpointer user_data, const char *name, int ndim,
                    const int64_t *shape, GError **error)
{
  Sam2Model *m = b->model;
  const Sam2StTensor *t = NULL;
  const Sam2Safetensors *file = NULL;
  for (int i = 0; i < m->n_files && t == NULL; i++) {
    t = sam2_safetensors_find (m->files[i], name);
    file = m->files[i];
  }
  if (t == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "tensor '%s' is missing from %s; the checkpoint does not match its config.json "
                 "(or is not a SAM2 checkpoint)", name,
                 m->n_files ? sam2_safetensors_path (m->files[0]) : "the weights");
    return NULL;
  }
  gboolean same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++)
    same = t->shape[d] == shape[d];
  if (!same) {
    char *got = shape_string (t->ndim, t->shape), *want = shape_string (ndim, shape);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "tensor '%s' in %s has shape %s but config.json implies %s; the checkpoint and "
                 "its config.json do not belong together", name, sam2_safetensors_path (file), got,
                 want);
    g_free (got);
    g_free (want);
    return NULL;
  }
  if (!sam2_dtype_is_float (t->dtype) || t->dtype == SAM2_DTYPE_BOOL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "tensor '%s' in %s has dtype %s; SAM2 weights must be F32, F16 or BF16", name,
                 sam2_safetensors_path (file), sam2_dtype_name (t->dtype));
    return NULL;
  }
  /* F32 data aligned in the mapping is used in place; anything else is converted once. */
  const float *data = t->data;
  if (!(t->dtype == SAM2_DTYPE_F32 && ((uintptr_t) t->data % sizeof (float)) == 0)) {
    float *dst = sam2_binder_alloc (b, (size_t) t->numel);
    if (!sam2_st_tensor_to_f32 (t, dst, error))
      return NULL;
    data = dst;
  }
  /* A NaN or an infinity in a weight runs on to every output it reaches: masks of nothing and
   * NaN scores, with no error. One pass over the weights at load (~30 ms for tiny here). */
  const size_t bad = first_non_finite (data, (size_t) t->numel);
  if (bad < (size_t) t->numel) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "tensor '%s' in %s holds %s at element %zu; the checkpoint is corrupt", name,
                 sam2_safetensors_path (file), isnan (data[bad]) ? "a NaN" : "an infinity", bad);
    return NULL;
  }
  return data;
}

static gboolean
open_weight_files (Sam2Model *m, char **paths, GError **error)
{
  m->n_files = (int) g_strv_length (paths);
  m->files = g_new0 (Sam2Safetensors *, MAX (m->n_files, 1));
  for (int i = 0; i < m->n_files; i++) {
    m->files[i] = sam2_safetensors_open (paths[i], error);
    if (m->files[i] == NULL)
      return FALSE;
    m->weights_bytes += sam2_safetensors_file_size (m->files[i]);
  }
  return TRUE;
}

static Sam2Model *
load_resolved (const char *config_path, char **weight_paths, const char *name, GError **error)
{
  char *json = NULL;
  gsize len = 0;
  GError *io_error = NULL;
  if (!g_file_get_contents (config_path, &json, &len, &io_error)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot read %s: %s", config_path,
                 io_error->message);
    g_error_free (io_error);
    return NULL;
  }
  Sam2Config config;
  if (!sam2_config_parse (json, (gssize) len, &config, error)) {
    g_prefix_error (error, "%s: ", config_path);
    g_free (json);
    return NULL;
  }
  Sam2Model *m = sam2_model_new_empty (&config, json, name);
  g_free (json);
  if (!open_weight_files (m, weight_paths, error)) {
    model_free (m);
    return NULL;
  }
  return sam2_model_bind_all (m, sam2_model_provide_from_files, NULL, NULL, NULL, error);
}

Sam2Model *
sam2_model_load (const char *reference, GError **error)
{
  g_return_val_if_fail (reference != NULL, NULL);
  if (sam2_qmodel_file_check (reference))
    return sam2_qmodel_load (reference, error);
  GError *local = NULL;
  Sam2ModelFiles *files = sam2_hub_resolve (reference, &local);
  if (files == NULL) {
    /* A .safetensors file without a config.json beside it can only be a model that carries its
     * own config (a quantized one), and came here because it could not be read as one: its
     * own damage says more than the missing config does. */
    Sam2Safetensors *st = NULL;
    if (g_error_matches (local, SAM2_ERROR, SAM2_ERROR_NOT_FOUND)
        && g_str_has_suffix (reference, ".safetensors")
        && g_file_test (reference, G_FILE_TEST_IS_REGULAR)
        && (st = sam2_safetensors_open (reference, error)) == NULL) {
      g_prefix_error (error, "cannot read the model: ");
      g_error_free (local);
      return NULL;
    }
    sam2_safetensors_close (st);
    g_propagate_error (error, local);
    return NULL;
  }
  Sam2Model *m = load_resolved (files->config_path, files->weight_paths, reference, error);
  sam2_model_files_free (files);
  return m;
}

Sam2Model *
sam2_model_load_files (const char *config_json_path, const char *weights_path, GError **error)
{
  char *paths[2] = { (char *) weights_path, NULL };
  return load_resolved (config_json_path, paths, weights_path, error);
}

/* ---- provider: hash weights ---------------------------------------------------------------- */

static const float *
provide_hashed (Sam2Binder *b, gpointer user_data, const char *name, int ndim,
                const int64_t *shape, GError **error)
{
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];
  float *dst = sam2_binder_alloc (b, (size_t) numel);
  sam2_hash_fill_weight (name, ndim, shape, dst);
  return dst;
}

Sam2Model *
sam2_model_new_hashed (const Sam2Config *config, GError **error)
{
  if (!sam2_config_validate (config, error))
    return NULL;
  char *json = sam2_config_to_json (config);
  Sam2Model *m = sam2_model_new_empty (config, json, "hash weights");
  g_free (json);
  return sam2_model_bind_all (m, provide_hashed, NULL, NULL, NULL, error);
}

/* Zeroed buffers: calloc'd pages are not touched, so listing even a large model costs little. */
static const float *
provide_zeros (Sam2Binder *b, gpointer user_data, const char *name, int ndim,
               const int64_t *shape, GError **error)
{
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];
  return sam2_binder_alloc (b, (size_t) numel);
}

GPtrArray *
sam2_model_param_specs (const Sam2Config *config, GError **error)
{
  GPtrArray *specs = NULL;
  Sam2Model *m = sam2_model_new_empty (config, "", "specs");
  m = sam2_model_bind_all (m, provide_zeros, NULL, NULL, &specs, error);
  sam2_model_unref (m);
  return specs;
}

/* ---- queries ------------------------------------------------------------------------------- */

int
sam2_model_get_image_size (const Sam2Model *model)
{
  return model->image_size;
}

int
sam2_model_get_mask_size (const Sam2Model *model)
{
  return model->mask_size;
}

char *
sam2_model_describe (const Sam2Model *m)
{
  const Sam2HieraConfig *c = &m->config.vision.backbone;
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "model: %s\n", m->name);
  g_string_append_printf (s, "type: %s\n", m->config.model_type == SAM2_MODEL_TYPE_SAM2_VIDEO
                                               ? "sam2_video (image path used)"
                                               : "sam2");
  g_string_append_printf (s, "input: %dx%d, image embedding %dx%dx%d, masks %dx%d\n",
                          m->image_size, m->image_size, m->feat_h[2], m->feat_w[2], m->feat_c[2],
                          m->mask_size, m->mask_size);
  g_string_append (s, "hiera stages (blocks / dim / heads / window):");
  for (int i = 0; i < c->n_stages; i++)
    g_string_append_printf (s, " %d/%d/%d/%d", c->blocks_per_stage[i], c->embed_dim_per_stage[i],
                            c->num_attention_heads_per_stage[i], c->window_size_per_stage[i]);
  g_string_append (s, "\nglobal attention blocks:");
  for (int i = 0; i < c->n_global_attention_blocks; i++)
    g_string_append_printf (s, " %d", c->global_attention_blocks[i]);
  g_string_append_printf (s, "\nparameters (image model): %" G_GINT64_FORMAT " (%.1f M)\n",
                          m->n_params, m->n_params / 1e6);
  if (m->weights_bytes > 0)
    g_string_append_printf (s, "weights on disk: %.1f MB in %d file(s)\n",
                            m->weights_bytes / 1e6, m->n_files);
  char *quantized = sam2_qmodel_describe (m);
  g_string_append (s, quantized);
  g_free (quantized);
  return g_string_free (s, FALSE);
}
