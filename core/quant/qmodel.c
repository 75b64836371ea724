/* qmodel.c: see qmodel.h. */
#include "qmodel.h"
#include "binder.h"
#include "linear-cpu.h"
#include "weights.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* ---- layers and plans ---- */

Sam2QuantLinear *
sam2_quant_linear_new (void)
{
  return g_new0 (Sam2QuantLinear, 1);
}

void
sam2_quant_linear_free (Sam2QuantLinear *q)
{
  if (q == NULL)
    return;
  if (q->kernel != NULL && q->kernel_free != NULL)
    q->kernel_free (q->kernel);
  sam2_w4_clear (&q->w);
  g_free (q->smooth_inv);
  g_free (q->lora_down);
  g_free (q->lora_up);
  g_free (q);
}

Sam2QuantPlan *
sam2_quant_plan_new (void)
{
  Sam2QuantPlan *p = g_new0 (Sam2QuantPlan, 1);
  p->layers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify) sam2_quant_linear_free);
  p->overrides = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return p;
}

void
sam2_quant_plan_free (Sam2QuantPlan *p)
{
  if (p == NULL)
    return;
  g_hash_table_unref (p->layers);
  g_hash_table_unref (p->overrides);
  g_free (p->recipe_yaml);
  g_free (p->provenance_json);
  g_free (p);
}

static const char *
act_mode_name (Sam2ActQuantMode m)
{
  static const char *names[] = { "none", "token_sym", "token_asym", "tensor_sym", "tensor_asym" };
  return names[m];
}

static gboolean
act_mode_from_name (const char *s, Sam2ActQuantMode *m)
{
  for (int i = SAM2_ACT_QUANT_NONE; i <= SAM2_ACT_QUANT_TENSOR_ASYM; i++)
    if (g_strcmp0 (s, act_mode_name (i)) == 0) {
      *m = i;
      return TRUE;
    }
  return FALSE;
}

static gboolean
prepare_all (Sam2Model *m, GError **error)
{
  for (guint i = 0; i < m->linears->len; i++) {
    Sam2Linear *l = m->linears->pdata[i];
    if (l->quant != NULL && !sam2_quant_linear_prepare (l->quant)) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                   "out of memory preparing the kernels of %s", l->name);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- building in memory ---- */

typedef struct {
  Sam2Model *fp;
  Sam2QuantPlan *plan;
} BuildContext;

static const float *
provide_from_plan (Sam2Binder *b, gpointer data, const char *name, int ndim, const int64_t *shape,
                   GError **error)
{
  BuildContext *ctx = data;
  const float *src = g_hash_table_lookup (ctx->plan->overrides, name);
  const Sam2TensorRef *ref = g_hash_table_lookup (ctx->fp->tensors, name);
  if (ref == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS, "tensor '%s' is not in the float model",
                 name);
    return NULL;
  }
  const gboolean round = ndim >= 2 && !ctx->plan->keep_float32;
  if (src == NULL && !round)
    return ref->data; /* unchanged: the float model's memory, which the model keeps alive */
  if (src == NULL)
    src = ref->data;
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];
  /* overrides belong to the plan: copy them; matrices as a file stores them (F16) */
  float *dst = sam2_binder_alloc (b, (size_t) numel);
  for (int64_t i = 0; i < numel; i++)
    dst[i] = round ? sam2_round_f16 (src[i]) : src[i];
  return dst;
}

static Sam2QuantLinear *
provide_quant_from_plan (Sam2Binder *b, gpointer data, const char *name, int in, int out,
                         GError **error)
{
  BuildContext *ctx = data;
  gpointer key, value;
  if (!g_hash_table_lookup_extended (ctx->plan->layers, name, &key, &value))
    return NULL;
  g_hash_table_steal (ctx->plan->layers, name);
  g_free (key);
  Sam2QuantLinear *q = value;
  g_assert (q->w.n == out && q->w.k == in);
  return q;
}

Sam2Model *
sam2_qmodel_build (Sam2Model *fp, Sam2QuantPlan *plan, GError **error)
{
  char *name = g_strdup_printf ("%s (quantized)", fp->name);
  Sam2Model *m = sam2_model_new_empty (&fp->config, fp->config_json, name);
  g_free (name);
  BuildContext ctx = { fp, plan };
  m = sam2_model_bind_all (m, provide_from_plan, provide_quant_from_plan, &ctx, NULL, error);
  if (m == NULL)
    return NULL;
  m->quantized = TRUE;
  m->keep_float32 = plan->keep_float32;
  m->base = sam2_model_ref (fp); /* float tensors may point into it */
  m->recipe_yaml = g_strdup (plan->recipe_yaml);
  m->provenance_json = g_strdup (plan->provenance_json);
  if (!prepare_all (m, error)) {
    sam2_model_unref (m);
    return NULL;
  }
  return m;
}

/* TRUE when the n values of layer.part are finite (and positive with `positive`); otherwise an
 * error "<where>: <layer>.<part> holds ...; <advice>". */
static gboolean
check_finite (const char *where, const char *layer, const char *part, const float *v, size_t n,
              gboolean positive, const char *advice, GError **error)
{
  for (size_t i = 0; i < n; i++)
    if (!isfinite (v[i]) || (positive && !(v[i] > 0.0f))) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "%s: %s.%s holds %s (element %zu); %s",
                   where, layer, part,
                   positive ? "a value that is not a positive finite number"
                            : "a value that is not finite", i, advice);
      return FALSE;
    }
  return TRUE;
}

/* Static activation parameters as the calibrator writes them: a positive scale a float holds
 * (a double below float's range would become 0) and a zero point the 8-bit codes can hold;
 * anything finite in the dynamic modes, which do not use them. */
static gboolean
act_params_valid (Sam2ActQuantMode act, double scale, double zero)
{
  if (act == SAM2_ACT_QUANT_TENSOR_SYM || act == SAM2_ACT_QUANT_TENSOR_ASYM)
    return (float) scale > 0.0f && scale <= G_MAXFLOAT && zero >= 0.0 && zero <= 255.0
           && zero == floor (zero) && (act == SAM2_ACT_QUANT_TENSOR_ASYM || zero == 0.0);
  return isfinite (scale) && isfinite (zero);
}

/* ---- saving ---- */

static char *
layers_json (const Sam2Model *m)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    const Sam2QuantLinear *q = l->quant;
    if (q == NULL)
      continue;
    json_builder_set_member_name (b, l->name);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "dtype");
    json_builder_add_string_value (b, q->w.dtype == SAM2_QTYPE_SINT4 ? "sint4" : "uint4");
    json_builder_set_member_name (b, "group_size");
    json_builder_add_int_value (b, q->w.group_size);
    json_builder_set_member_name (b, "act");
    json_builder_add_string_value (b, act_mode_name (q->act));
    json_builder_set_member_name (b, "act_scale");
    json_builder_add_double_value (b, q->act_scale);
    json_builder_set_member_name (b, "act_zero");
    json_builder_add_double_value (b, q->act_zero);
    json_builder_set_member_name (b, "rank");
    json_builder_add_int_value (b, q->rank);
    json_builder_set_member_name (b, "smooth");
    json_builder_add_boolean_value (b, q->smooth_inv != NULL);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);
  JsonNode *root = json_builder_get_root (b);
  char *text = json_to_string (root, FALSE);
  json_node_unref (root);
  g_object_unref (b);
  return text;
}

static gboolean
add_f16 (Sam2StWriter *w, const char *name, int ndim, const int64_t *shape, const float *v,
         GError **error)
{
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];
  guint16 *h = g_new (guint16, MAX (numel, 1));
  for (int64_t i = 0; i < numel; i++) {
#if defined(__FLT16_MAX__)
    _Float16 f = (_Float16) v[i];
    memcpy (&h[i], &f, 2);
#else
#error "a compiler with _Float16 is needed to write F16 tensors"
#endif
  }
  gboolean ok = sam2_st_writer_add (w, name, SAM2_DTYPE_F16, ndim, shape, h, error);
  g_free (h);
  return ok;
}

/* What the reader accepts of a layer's values (the writer checks the same): positive finite
 * scales within FP16's range (the file's type; the quantizer rounds them to it), zero points of
 * 4 bits, static activation parameters act_params_valid takes, positive finite smoothing
 * divisors and finite low-rank factors (they enter every output: a NaN would make the layer
 * compute garbage without an error). The error: "<where>: <what is wrong>; <advice>". */
static gboolean
layer_values_ok (const char *where, const char *name, const Sam2QuantLinear *q,
                 const char *advice, GError **error)
{
  const size_t n_params = (size_t) q->w.n * q->w.n_groups;
  if (!check_finite (where, name, "scales", q->w.scales, n_params, TRUE, advice, error))
    return FALSE;
  for (size_t i = 0; i < n_params; i++)
    if (q->w.zeros[i] > SAM2_W4_CODE_MAX || !isfinite (sam2_round_f16 (q->w.scales[i]))) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s: %s has a zero point above 15 or a scale beyond FP16's range; %s", where,
                   name, advice);
      return FALSE;
    }
  if (!act_params_valid (q->act, q->act_scale, q->act_zero)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: %s has activation scale %g and zero point %g, not valid for its mode %s; "
                 "%s", where, name, q->act_scale, q->act_zero, act_mode_name (q->act), advice);
    return FALSE;
  }
  return (q->smooth_inv == NULL
          || check_finite (where, name, "smooth_inv", q->smooth_inv, q->w.k, TRUE, advice, error))
         && (q->rank == 0
             || (check_finite (where, name, "lora_down", q->lora_down, (size_t) q->rank * q->w.k,
                               FALSE, advice, error)
                 && check_finite (where, name, "lora_up", q->lora_up, (size_t) q->w.n * q->rank,
                                  FALSE, advice, error)));
}

gboolean
sam2_qmodel_layer_check (const char *name, const Sam2QuantLinear *q, GError **error)
{
  return layer_values_ok ("cannot store quantized layer", name, q,
                          "the calibration statistics or the model's weights are out of range: "
                          "calibrate again without the statistics cache, or keep this layer in "
                          "float (the recipe's skips)", error);
}

static gboolean
add_quant_layer (Sam2StWriter *w, const char *name, const Sam2QuantLinear *q, GError **error)
{
  /* never a file this reader would refuse */
  if (!sam2_qmodel_layer_check (name, q, error))
    return FALSE;
  const int64_t codes[2] = { q->w.n, sam2_w4_row_bytes (q->w.k) };
  const int64_t groups[2] = { q->w.n, q->w.n_groups };
  char *n_codes = g_strconcat (name, ".qweight", NULL), *n_scales = g_strconcat (name, ".scales", NULL);
  char *n_zeros = g_strconcat (name, ".zeros", NULL);
  gboolean ok = sam2_st_writer_add (w, n_codes, SAM2_DTYPE_U8, 2, codes, q->w.codes, error)
                && add_f16 (w, n_scales, 2, groups, q->w.scales, error)
                && sam2_st_writer_add (w, n_zeros, SAM2_DTYPE_U8, 2, groups, q->w.zeros, error);
  if (ok && q->smooth_inv != NULL) {
    char *n = g_strconcat (name, ".smooth_inv", NULL);
    const int64_t k[1] = { q->w.k };
    ok = sam2_st_writer_add (w, n, SAM2_DTYPE_F32, 1, k, q->smooth_inv, error);
    g_free (n);
  }
  if (ok && q->rank > 0) {
    char *nd = g_strconcat (name, ".lora_down", NULL), *nu = g_strconcat (name, ".lora_up", NULL);
    const int64_t down[2] = { q->rank, q->w.k }, up[2] = { q->w.n, q->rank };
    ok = add_f16 (w, nd, 2, down, q->lora_down, error) && add_f16 (w, nu, 2, up, q->lora_up, error);
    g_free (nd);
    g_free (nu);
  }
  g_free (n_codes);
  g_free (n_scales);
  g_free (n_zeros);
  return ok;
}

gboolean
sam2_qmodel_save (const Sam2Model *m, const char *path, GError **error)
{
  g_return_val_if_fail (m->quantized, FALSE);
  Sam2StWriter *w = sam2_st_writer_new ();
  gboolean ok = TRUE;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, m->tensors);
  while (ok && g_hash_table_iter_next (&it, &key, &value)) {
    const Sam2TensorRef *ref = value;
    ok = ref->ndim >= 2 && !m->keep_float32
             ? add_f16 (w, key, ref->ndim, ref->shape, ref->data, error)
             : sam2_st_writer_add (w, key, SAM2_DTYPE_F32, ref->ndim, ref->shape, ref->data,
                                   error);
  }
  for (guint i = 0; ok && i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    if (l->quant != NULL)
      ok = add_quant_layer (w, l->name, l->quant, error);
  }
  if (ok) {
    char *version = g_strdup_printf ("%d", SAM2_QMODEL_VERSION);
    char *config = sam2_config_to_json (&m->config);
    char *layers = layers_json (m);
    sam2_st_writer_set_metadata (w, "format", SAM2_QMODEL_FORMAT);
    sam2_st_writer_set_metadata (w, "format_version", version);
    sam2_st_writer_set_metadata (w, "config", config);
    sam2_st_writer_set_metadata (w, "recipe", m->recipe_yaml ? m->recipe_yaml : "");
    sam2_st_writer_set_metadata (w, "provenance", m->provenance_json ? m->provenance_json : "{}");
    sam2_st_writer_set_metadata (w, "layers", layers);
    ok = sam2_st_writer_write (w, path, error);
    g_free (version);
    g_free (config);
    g_free (layers);
  }
  sam2_st_writer_free (w);
  return ok;
}

/* ---- loading ---- */

gboolean
sam2_qmodel_file_check (const char *path)
{
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return FALSE;
  Sam2Safetensors *st = sam2_safetensors_open (path, NULL);
  gboolean is = st != NULL
                && g_strcmp0 (sam2_safetensors_metadata (st, "format"), SAM2_QMODEL_FORMAT) == 0;
  sam2_safetensors_close (st);
  return is;
}

typedef struct {
  Sam2Safetensors *file;
  JsonObject *layers;
} LoadContext;

/* The float view of tensor `name` with `numel` elements and `dtype`, or an error naming it. */
static const Sam2StTensor *
require_tensor (const Sam2Safetensors *st, const char *layer, const char *part, Sam2DType dtype,
                int64_t d0, int64_t d1, GError **error)
{
  char *name = g_strconcat (layer, ".", part, NULL);
  const Sam2StTensor *t = sam2_safetensors_find (st, name);
  gboolean ok = t != NULL && t->dtype == dtype && t->ndim == (d1 >= 0 ? 2 : 1) && t->shape[0] == d0
                && (d1 < 0 || t->shape[1] == d1);
  if (!ok)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "%s: quantized tensor '%s' is missing or not %s [%" G_GINT64_FORMAT
                 "%s]; the file is corrupt or from an incompatible version",
                 sam2_safetensors_path (st), name, sam2_dtype_name (dtype), d0,
                 d1 >= 0 ? ", ..." : "");
  g_free (name);
  return ok ? t : NULL;
}

static float *
tensor_floats (const Sam2StTensor *t, GError **error)
{
  float *v = g_new (float, MAX (t->numel, 1));
  if (!sam2_st_tensor_to_f32 (t, v, error)) {
    g_free (v);
    return NULL;
  }
  return v;
}

/* One layer's description in the `layers` metadata, checked: the file is untrusted. */
typedef struct {
  Sam2QType dtype;
  int group, rank;
  Sam2ActQuantMode act;
  double act_scale, act_zero;
  gboolean smooth;
} LayerDescription;

/* Integer member `key` of `d` (absent: `fallback`) within [lo, hi]; FALSE for another type. */
static gboolean
int_member (JsonObject *d, const char *key, gint64 fallback, gint64 lo, gint64 hi, int *value)
{
  JsonNode *n = json_object_get_member (d, key);
  gint64 v = fallback;
  if (n != NULL) {
    if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
      return FALSE;
    v = json_node_get_int (n);
  }
  *value = (int) CLAMP (v, lo, hi);
  return v >= lo && v <= hi;
}

/* Number member `key` of `d` (integer or double; absent: 0), finite. */
static gboolean
number_member (JsonObject *d, const char *key, double *value)
{
  JsonNode *n = json_object_get_member (d, key);
  *value = 0.0;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *value = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *value = json_node_get_double (n);
  else
    return FALSE;
  return isfinite (*value);
}

static gboolean
string_member (JsonObject *d, const char *key, const char **value)
{
  JsonNode *n = json_object_get_member (d, key);
  *value = n != NULL && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
           ? json_node_get_string (n) : "";
  return n != NULL && **value != '\0';
}

/* The description of layer `name` (in x out) from `node`, or FALSE when any field is missing,
 * of the wrong type or out of range (act_params_valid). */
static gboolean
parse_layer_description (JsonNode *node, int in, int out, LayerDescription *desc)
{
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return FALSE;
  JsonObject *d = json_node_get_object (node);
  const char *dtype, *act;
  JsonNode *smooth = json_object_get_member (d, "smooth");
  if (!string_member (d, "dtype", &dtype) || !string_member (d, "act", &act)
      || !act_mode_from_name (act, &desc->act)
      || !int_member (d, "group_size", 0, 1, in, &desc->group)
      || !int_member (d, "rank", 0, 0, (gint64) MIN (in, out) * 3, &desc->rank)
      || !number_member (d, "act_scale", &desc->act_scale)
      || !number_member (d, "act_zero", &desc->act_zero)
      || (smooth != NULL && (!JSON_NODE_HOLDS_VALUE (smooth)
                             || json_node_get_value_type (smooth) != G_TYPE_BOOLEAN)))
    return FALSE;
  desc->smooth = smooth != NULL && json_node_get_boolean (smooth);
  if (strcmp (dtype, "sint4") == 0)
    desc->dtype = SAM2_QTYPE_SINT4;
  else if (strcmp (dtype, "uint4") == 0)
    desc->dtype = SAM2_QTYPE_UINT4;
  else
    return FALSE;
  return act_params_valid (desc->act, desc->act_scale, desc->act_zero);
}

static Sam2QuantLinear *
provide_quant_from_file (Sam2Binder *b, gpointer data, const char *name, int in, int out,
                         GError **error)
{
  LoadContext *ctx = data;
  if (!json_object_has_member (ctx->layers, name))
    return NULL;
  LayerDescription desc;
  if (!parse_layer_description (json_object_get_member (ctx->layers, name), in, out, &desc)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: the description of quantized layer %s in the metadata is invalid; the file "
                 "is corrupt or from an incompatible version", sam2_safetensors_path (ctx->file),
                 name);
    return NULL;
  }
  const int group = desc.group, rank = desc.rank, n_groups = sam2_w4_n_groups (in, group);
  /* every tensor found with its shape before anything is allocated: the shapes come from the
   * file's own config and layer table, and a tensor the file holds bounds what they ask for */
  const Sam2StTensor *codes, *scales, *zeros, *smooth = NULL, *down = NULL, *up = NULL;
  if ((codes = require_tensor (ctx->file, name, "qweight", SAM2_DTYPE_U8, out,
                               sam2_w4_row_bytes (in), error)) == NULL
      || (scales = require_tensor (ctx->file, name, "scales", SAM2_DTYPE_F16, out, n_groups,
                                   error)) == NULL
      || (zeros = require_tensor (ctx->file, name, "zeros", SAM2_DTYPE_U8, out, n_groups,
                                  error)) == NULL
      || (desc.smooth && (smooth = require_tensor (ctx->file, name, "smooth_inv", SAM2_DTYPE_F32,
                                                   in, -1, error)) == NULL)
      || (rank > 0 && ((down = require_tensor (ctx->file, name, "lora_down", SAM2_DTYPE_F16, rank,
                                               in, error)) == NULL
                       || (up = require_tensor (ctx->file, name, "lora_up", SAM2_DTYPE_F16, out,
                                                rank, error)) == NULL)))
    return NULL;
  Sam2QuantLinear *q = sam2_quant_linear_new ();
  sam2_w4_init (&q->w, out, in, group, desc.dtype);
  q->act = desc.act;
  q->act_scale = (float) desc.act_scale;
  q->act_zero = (float) desc.act_zero;
  q->rank = rank;
  if (!sam2_st_tensor_to_f32 (scales, q->w.scales, error)
      || (smooth != NULL && (q->smooth_inv = tensor_floats (smooth, error)) == NULL)
      || (rank > 0 && ((q->lora_down = tensor_floats (down, error)) == NULL
                       || (q->lora_up = tensor_floats (up, error)) == NULL)))
    goto fail;
  memcpy (q->w.codes, codes->data, codes->nbytes);
  memcpy (q->w.zeros, zeros->data, zeros->nbytes);
  if (!layer_values_ok (sam2_safetensors_path (ctx->file), name, q, "the file is corrupt", error))
    goto fail;
  return q;
fail:
  sam2_quant_linear_free (q);
  return NULL;
}

Sam2Model *
sam2_qmodel_load (const char *path, GError **error)
{
  Sam2Safetensors *st = sam2_safetensors_open (path, error);
  if (st == NULL)
    return NULL;
  const char *format = sam2_safetensors_metadata (st, "format");
  const char *version = sam2_safetensors_metadata (st, "format_version");
  const char *config_json = sam2_safetensors_metadata (st, "config");
  const char *layers = sam2_safetensors_metadata (st, "layers");
  if (g_strcmp0 (format, SAM2_QMODEL_FORMAT) != 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s is not a quantized model written by sam2-gst", path);
    sam2_safetensors_close (st);
    return NULL;
  }
  char expected[16];
  g_snprintf (expected, sizeof expected, "%d", SAM2_QMODEL_VERSION);
  if (g_strcmp0 (version, expected) != 0) {     /* exactly as written: "1junk" is not 1 */
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_VERSION,
                 "%s uses quantized-model format version %s; this build reads version %d: "
                 "quantize the model again with this version (or use the sam2-gst that wrote it)",
                 path, version ? version : "(none)", SAM2_QMODEL_VERSION);
    sam2_safetensors_close (st);
    return NULL;
  }
  Sam2Config config;
  JsonParser *parser = json_parser_new ();
  /* both documents are checked as strict JSON first: json-glib recurses without limit and a
   * deeply nested `layers` would overflow the stack */
  if (config_json == NULL || !sam2_config_parse (config_json, -1, &config, error)
      || layers == NULL || !sam2_config_check_json (layers, strlen (layers), error)
      || !json_parser_load_from_data (parser, layers, -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    if (error != NULL && *error == NULL)
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s: the config or layer metadata of this quantized model is missing or "
                   "malformed; the file is corrupt", path);
    else
      g_prefix_error (error, "%s: the config or layer metadata of this quantized model is "
                      "malformed (the file is corrupt): ", path);
    g_object_unref (parser);
    sam2_safetensors_close (st);
    return NULL;
  }
  Sam2Model *m = sam2_model_new_empty (&config, config_json, path);
  m->n_files = 1;
  m->files = g_new0 (Sam2Safetensors *, 1);
  m->files[0] = st;
  m->weights_bytes = sam2_safetensors_file_size (st);
  LoadContext ctx = { st, json_node_get_object (json_parser_get_root (parser)) };
  m = sam2_model_bind_all (m, sam2_model_provide_from_files, provide_quant_from_file, &ctx, NULL,
                           error);
  g_object_unref (parser);
  if (m == NULL)
    return NULL;
  m->quantized = TRUE;
  /* float matrices stored as F32 are saved back as F32 */
  const Sam2StTensor *probe = sam2_safetensors_find (st, "vision_encoder.backbone.pos_embed");
  m->keep_float32 = probe != NULL && probe->dtype == SAM2_DTYPE_F32;
  m->recipe_yaml = g_strdup (sam2_safetensors_metadata (st, "recipe"));
  m->provenance_json = g_strdup (sam2_safetensors_metadata (st, "provenance"));
  if (!prepare_all (m, error)) {
    sam2_model_unref (m);
    return NULL;
  }
  return m;
}

/* ---- description ---- */

/* A string member of a provenance object, printable ASCII only (it came from a file). */
static const char *
provenance_string (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  const char *s = json_node_get_string (n);
  for (const char *p = s; *p != '\0'; p++)
    if (!g_ascii_isprint (*p))
      return NULL;
  return s;
}

static void
describe_provenance (GString *out, const char *json)
{
  if (json == NULL || !sam2_config_check_json (json, strlen (json), NULL))
    return;
  JsonParser *parser = json_parser_new_immutable ();
  if (json_parser_load_from_data (parser, json, -1, NULL)
      && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    JsonObject *o = json_node_get_object (json_parser_get_root (parser));
    JsonNode *frames = json_object_get_member (o, "calibration_frames");
    const char *digest = provenance_string (o, "calibration_digest");
    const char *source = provenance_string (o, "source_model");
    const char *source_digest = provenance_string (o, "source_digest");
    const char *tool = provenance_string (o, "tool"), *created = provenance_string (o, "created");
    g_string_append (out, "calibrated:");
    if (frames != NULL && JSON_NODE_HOLDS_VALUE (frames)
        && json_node_get_value_type (frames) == G_TYPE_INT64)
      g_string_append_printf (out, " %" G_GINT64_FORMAT " frames", json_node_get_int (frames));
    if (digest != NULL)
      g_string_append_printf (out, " (%s)", digest);
    if (source != NULL)
      g_string_append_printf (out, ", from %s", source);
    if (source_digest != NULL)
      g_string_append_printf (out, " (%s)", source_digest);
    if (tool != NULL)
      g_string_append_printf (out, ", by %s", tool);
    if (created != NULL)
      g_string_append_printf (out, ", %s", created);
    g_string_append_c (out, '\n');
  }
  g_object_unref (parser);
}

char *
sam2_qmodel_describe (const Sam2Model *m)
{
  if (!m->quantized)
    return g_strdup ("");
  int n_quant = 0, n_sint4 = 0, n_lowrank = 0, max_rank = 0, group = 0;
  int n_act[SAM2_ACT_QUANT_TENSOR_ASYM + 1] = { 0 };
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2QuantLinear *q = ((const Sam2Linear *) m->linears->pdata[i])->quant;
    if (q == NULL)
      continue;
    n_quant++;
    n_sint4 += q->w.dtype == SAM2_QTYPE_SINT4;
    n_act[q->act]++;
    n_lowrank += q->rank > 0;
    max_rank = MAX (max_rank, q->rank);
    group = MAX (group, q->w.group_size);   /* a row shorter than the group is one group */
  }
  GString *out = g_string_new (NULL);
  g_string_append_printf (out, "quantized: %d of %u linear layers in 4 bits (", n_quant,
                          m->linears->len);
  if (n_sint4 > 0)
    g_string_append_printf (out, "%d sint4%s", n_sint4, n_sint4 < n_quant ? ", " : "");
  if (n_sint4 < n_quant)
    g_string_append_printf (out, "%d uint4", n_quant - n_sint4);
  g_string_append_printf (out, ", groups of %d columns), the others float\n", group);
  static const char *act_text[] = { "float (weight-only)", "int8 per token",
                                    "uint8 per token (after GELU)", "int8 per tensor (static)",
                                    "uint8 per tensor (static)" };
  g_string_append (out, "activations:");
  gboolean first = TRUE;
  for (int a = 0; a <= SAM2_ACT_QUANT_TENSOR_ASYM; a++)
    if (n_act[a] > 0) {
      g_string_append_printf (out, "%s %s on %d", first ? "" : ",", act_text[a], n_act[a]);
      first = FALSE;
    }
  g_string_append_c (out, '\n');
  if (n_lowrank > 0)
    g_string_append_printf (out, "low-rank branches (SVDQuant): %d layers, rank up to %d\n",
                            n_lowrank, max_rank);
  char *name = sam2_recipe_yaml_name (m->recipe_yaml);
  if (name != NULL)
    g_string_append_printf (out, "recipe: %s\n", name);
  g_free (name);
  describe_provenance (out, m->provenance_json);
  return g_string_free (out, FALSE);
}

/* ---- sizes ---- */

size_t
sam2_qmodel_weight_bytes (const Sam2Model *m)
{
  size_t bytes = 0;
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init (&it, m->tensors);
  while (g_hash_table_iter_next (&it, &key, &value)) {
    const Sam2TensorRef *ref = value;
    int64_t numel = 1;
    for (int d = 0; d < ref->ndim; d++)
      numel *= ref->shape[d];
    bytes += (size_t) numel * (ref->ndim >= 2 && m->quantized && !m->keep_float32 ? 2 : 4);
  }
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2QuantLinear *q = ((Sam2Linear *) m->linears->pdata[i])->quant;
    if (q == NULL)
      continue;
    bytes += (size_t) q->w.n * sam2_w4_row_bytes (q->w.k) + (size_t) q->w.n * q->w.n_groups * 3;
    bytes += q->smooth_inv ? (size_t) q->w.k * 4 : 0;
    bytes += (size_t) q->rank * (q->w.n + q->w.k) * 2;
  }
  return bytes;
}

size_t
sam2_model_fp16_bytes (const Sam2Model *m)
{
  return (size_t) m->n_params * 2;
}
