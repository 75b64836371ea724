/* observers.c: see observers.h. */
#include "observers.h"
#include "backend.h"
#include "config.h"
#include "safetensors.h"
#include <json-glib/json-glib.h>

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _Sam2Observers {
  GHashTable *by_layer;        /* const Sam2Linear * -> Sam2LayerStats * */
  GPtrArray *order;            /* Sam2LayerStats *, model order (for saving) */
  int max_tokens;              /* rows per call entering the Hessian, 0 = all */
  int n_frames;
  /* scratch, sized for the widest layer */
  float *rows;                 /* (rows_capacity) gathered rows: fewer than a call's M */
  size_t rows_capacity;        /* floats */
  float *gram;                 /* (k_max, k_max) their X^T X in float */
  int *index;                  /* (rows of the largest call) */
  size_t index_capacity;
  int *slot_row;               /* (keep) */
  int *sample_rows, *sample_slots; /* (keep) the reservoir's plan for one call */
  float *sample_buf;           /* (keep, k_max) a device's planned rows, before they go to their
                                * slots (NULL on the host, which copies them straight from x) */
  /* statistics in backend memory (NULL: host memory, x is read on the host) */
  Sam2Backend *device;
  int device_status;           /* the first failure of a device call, SAM2_STATUS_OK if none */
  gboolean device_dirty;       /* the device holds statistics the host copies do not */
};

static void
update_absmax (Sam2LayerStats *st)
{
  for (int c = 0; c < st->k; c++)
    st->absmax[c] = fmaxf (fabsf (st->min[c]), fabsf (st->max[c]));
}

static void
stats_free (gpointer p)
{
  Sam2LayerStats *st = p;
  g_free (st->hessian);
  g_free (st->absmax);
  g_free (st->min);
  g_free (st->max);
  g_free (st->samples);
  if (st->rng != NULL)
    g_rand_free (st->rng);
  g_free (st);
}

/* A layer's own random stream, from the recipe's seed and the layer's name (FNV-1a, stable
 * across GLib versions, unlike g_str_hash): its choices then depend only on the rows it sees,
 * not on which other layers are observed nor on how frames are batched. */
static GRand *
layer_rng (guint32 seed, const char *name)
{
  guint32 h = 2166136261u;
  for (const char *p = name; *p != '\0'; p++)
    h = (h ^ (guint8) *p) * 16777619u;
  const guint32 words[2] = { seed, h };
  return g_rand_new_with_seed_array (words, 2);
}

Sam2Observers *
sam2_observers_new (const Sam2Model *model, const Sam2CalibRecipe *calib,
                    gboolean (*wanted) (const Sam2Linear *l, gpointer data), gpointer wanted_data)
{
  return sam2_observers_new_full (model, calib, wanted, wanted_data, NULL, NULL);
}

Sam2Observers *
sam2_observers_new_full (const Sam2Model *model, const Sam2CalibRecipe *calib,
                         gboolean (*wanted) (const Sam2Linear *l, gpointer data),
                         gpointer wanted_data, Sam2Backend *device, GError **error)
{
  g_return_val_if_fail (device == NULL || device->ops->stats_new != NULL, NULL);
  Sam2Observers *obs = g_new0 (Sam2Observers, 1);
  obs->by_layer = g_hash_table_new (g_direct_hash, g_direct_equal);
  obs->order = g_ptr_array_new_with_free_func (stats_free);
  obs->max_tokens = calib->max_tokens;
  obs->device = device;
  const int keep = MAX (calib->keep_tokens, 1);
  int k_max = 1;
  for (guint i = 0; i < model->linears->len; i++) {
    const Sam2Linear *l = model->linears->pdata[i];
    if (wanted != NULL && !wanted (l, wanted_data))
      continue;
    Sam2LayerStats *st = g_new0 (Sam2LayerStats, 1);
    st->layer = l;
    st->k = l->in_features;
    st->hessian = g_new0 (double, (size_t) st->k * st->k);
    st->absmax = g_new0 (float, st->k);
    st->min = g_new (float, st->k);
    st->max = g_new (float, st->k);
    for (int c = 0; c < st->k; c++) {
      st->min[c] = INFINITY;
      st->max[c] = -INFINITY;
    }
    st->keep = keep;
    st->rng = layer_rng ((guint32) calib->seed, l->name);
    st->samples = g_new0 (float, (size_t) st->keep * st->k);
    g_hash_table_insert (obs->by_layer, (gpointer) l, st);
    g_ptr_array_add (obs->order, st);
    k_max = MAX (k_max, st->k);
    if (device != NULL && (st->device = device->ops->stats_new (device, st->k)) == NULL) {
      const char *detail = device->ops->status_detail ? device->ops->status_detail (device) : NULL;
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                   "cannot hold the calibration statistics of %s (K = %d) on the %s backend%s%s; "
                   "calibrate on the CPU or with fewer quantized layers", l->name, st->k,
                   device->ops->name, detail ? ": " : "", detail ? detail : "");
      sam2_observers_free (obs);
      return NULL;
    }
  }
  obs->slot_row = g_new (int, keep);
  obs->sample_rows = g_new (int, keep);
  obs->sample_slots = g_new (int, keep);
  obs->sample_buf = device != NULL ? g_new (float, (size_t) keep * k_max) : NULL;
  if (device == NULL)
    obs->gram = g_new (float, (size_t) k_max * k_max);
  return obs;
}

void
sam2_observers_free (Sam2Observers *obs)
{
  if (obs == NULL)
    return;
  for (guint i = 0; obs->device != NULL && i < obs->order->len; i++) {
    Sam2LayerStats *st = obs->order->pdata[i];
    if (st->device != NULL)
      obs->device->ops->stats_free (obs->device, st->device);
  }
  g_hash_table_unref (obs->by_layer);
  g_ptr_array_unref (obs->order);
  g_free (obs->rows);
  g_free (obs->gram);
  g_free (obs->index);
  g_free (obs->slot_row);
  g_free (obs->sample_rows);
  g_free (obs->sample_slots);
  g_free (obs->sample_buf);
  g_free (obs);
}

Sam2LayerStats *
sam2_observers_get (Sam2Observers *obs, const Sam2Linear *l)
{
  return g_hash_table_lookup (obs->by_layer, l);
}

int
sam2_observers_n_frames (const Sam2Observers *obs)
{
  return obs->n_frames;
}

void
sam2_observers_frame_done (Sam2Observers *obs)
{
  obs->n_frames++;
}

static void
update_ranges (Sam2LayerStats *st, const float *x, int M)
{
  const int K = st->k;
  for (int m = 0; m < M; m++) {
    const float *r = x + (size_t) m * K;
    for (int c = 0; c < K; c++) {
      st->min[c] = r[c] < st->min[c] ? r[c] : st->min[c];
      st->max[c] = r[c] > st->max[c] ? r[c] : st->max[c];
    }
  }
  update_absmax (st);
}

/* The random choices of one call of M rows, made on the host in the same order whatever memory
 * x is in, so the CPU and a device backend keep the same rows from the same seed. */

/* Algorithm R over all rows ever seen: every row has the same chance to be kept. Fills
 * obs->sample_rows / sample_slots with (row of this call, reservoir slot) pairs, one per slot
 * (the last row drawn for a slot is the one a copy in row order would leave there), and returns
 * their number. */
static int
plan_reservoir (Sam2Observers *obs, Sam2LayerStats *st, int M)
{
  int *last = obs->slot_row;               /* (keep) row of this call per slot, -1: none */
  for (int i = 0; i < st->keep; i++)
    last[i] = -1;
  for (int m = 0; m < M; m++) {
    const int64_t t = st->n_tokens + m;
    if (st->n_samples < st->keep) {
      last[st->n_samples++] = m;
    } else {
      const int64_t j = (int64_t) (g_rand_double (st->rng) * (double) (t + 1));
      if (j < st->keep)
        last[j] = m;
    }
  }
  int n = 0;
  for (int i = 0; i < st->keep; i++)
    if (last[i] >= 0) {
      obs->sample_rows[n] = last[i];
      obs->sample_slots[n++] = i;
    }
  return n;
}

/* The rows entering the Hessian: NULL for all M, else max_tokens of them drawn without
 * replacement (partial Fisher-Yates) into obs->index, *n set either way. */
static const int *
plan_hessian (Sam2Observers *obs, Sam2LayerStats *st, int M, int *n)
{
  *n = M;
  if (obs->max_tokens <= 0 || M <= obs->max_tokens)
    return NULL;
  if (obs->index_capacity < (size_t) M) {
    g_free (obs->index);
    obs->index = g_new (int, M);
    obs->index_capacity = M;
  }
  for (int i = 0; i < M; i++)
    obs->index[i] = i;
  *n = obs->max_tokens;
  for (int i = 0; i < *n; i++) {
    const int j = i + (int) g_rand_int_range (st->rng, 0, M - i);
    const int tmp = obs->index[i];
    obs->index[i] = obs->index[j];
    obs->index[j] = tmp;
  }
  return obs->index;
}

/* H += X^T X over the chosen rows, upper triangle only (sam2_observers_sync mirrors it): ssyrk
 * does half a GEMM's work, and these products cost as much as the float forward itself on the
 * widest layers (K = 1536 and 3072 of tiny: 4096 rows each). Float products within one call (a
 * few thousand rows), double across calls. */
static void
host_hessian (Sam2Observers *obs, Sam2LayerStats *st, const float *x, const int *rows, int n)
{
  const int K = st->k;
  if (rows != NULL) {
    /* grown on demand, not sized by max_tokens up front: n < the call's M, so the buffer stays
     * below the caller's own activations whatever the recipe says */
    if (obs->rows_capacity < (size_t) n * K) {
      g_free (obs->rows);
      obs->rows_capacity = (size_t) n * K;
      obs->rows = g_new (float, obs->rows_capacity);
    }
    for (int i = 0; i < n; i++)
      memcpy (obs->rows + (size_t) i * K, x + (size_t) rows[i] * K, K * sizeof (float));
    x = obs->rows;
  }
  cblas_ssyrk (CblasRowMajor, CblasUpper, CblasTrans, K, n, 1.0f, x, K, 0.0f, obs->gram, K);
  for (int i = 0; i < K; i++)
    for (int j = i; j < K; j++)
      st->hessian[(size_t) i * K + j] += obs->gram[(size_t) i * K + j];
}

/* The lower triangle from the upper one (the host path sums only the upper). */
static void
mirror_hessian (Sam2LayerStats *st)
{
  const int K = st->k;
  for (int i = 0; i < K; i++)
    for (int j = i + 1; j < K; j++)
      st->hessian[(size_t) j * K + i] = st->hessian[(size_t) i * K + j];
}

/* The reservoir's rows into their slots: row i of the plan is row `rows[i]` of `from`, or row i
 * when rows is NULL (rows gathered in plan order). */
static void
store_samples (Sam2Observers *obs, Sam2LayerStats *st, const float *from, const int *rows,
               int n_samples)
{
  for (int i = 0; i < n_samples; i++)
    memcpy (st->samples + (size_t) obs->sample_slots[i] * st->k,
            from + (size_t) (rows != NULL ? rows[i] : i) * st->k, st->k * sizeof (float));
}

/* The first device failure is kept; later calls do nothing until sam2_observers_sync reports it. */
static void
device_failed (Sam2Observers *obs, int status)
{
  if (obs->device_status == SAM2_STATUS_OK)
    obs->device_status = status;
}

void
sam2_observers_observe (gpointer data, const Sam2Linear *l, const float *x, int M)
{
  Sam2Observers *obs = data;
  Sam2LayerStats *st = g_hash_table_lookup (obs->by_layer, l);
  if (st == NULL || M <= 0)
    return;
  const int n_samples = plan_reservoir (obs, st, M);
  int n_hessian;
  const int *hessian_rows = plan_hessian (obs, st, M, &n_hessian);
  if (obs->device == NULL) {
    update_ranges (st, x, M);
    store_samples (obs, st, x, obs->sample_rows, n_samples);
    host_hessian (obs, st, x, hessian_rows, n_hessian);
  } else {
    /* after a failure nothing more is observed; sam2_observers_check reports it */
    if (obs->device_status != SAM2_STATUS_OK)
      return;
    const int status = obs->device->ops->stats_observe (obs->device, st->device, x, M,
                                                        hessian_rows, n_hessian,
                                                        obs->sample_rows, n_samples,
                                                        obs->sample_buf);
    if (status != SAM2_STATUS_OK) {
      device_failed (obs, status);
      return;
    }
    obs->device_dirty = TRUE;
    store_samples (obs, st, obs->sample_buf, NULL, n_samples);
  }
  st->n_hessian_tokens += n_hessian;
  st->n_tokens += M;
}

gboolean
sam2_observers_check (Sam2Observers *obs, GError **error)
{
  if (obs->device == NULL || obs->device_status == SAM2_STATUS_OK)
    return TRUE;
  const char *detail = obs->device->ops->status_detail != NULL
                       ? obs->device->ops->status_detail (obs->device) : NULL;
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
               "calibration statistics on the %s backend failed: %s%s%s%s; calibrate on the CPU "
               "instead", obs->device->ops->name, sam2_status_describe (obs->device_status),
               detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
  return FALSE;
}

gboolean
sam2_observers_sync (Sam2Observers *obs, GError **error)
{
  if (obs->device == NULL) {
    for (guint i = 0; i < obs->order->len; i++)
      mirror_hessian (obs->order->pdata[i]);
    return TRUE;
  }
  if (obs->device_status == SAM2_STATUS_OK && obs->device_dirty) {
    for (guint i = 0; i < obs->order->len && obs->device_status == SAM2_STATUS_OK; i++) {
      Sam2LayerStats *st = obs->order->pdata[i];
      const int status = obs->device->ops->stats_read (obs->device, st->device, st->hessian,
                                                       st->min, st->max);
      if (status != SAM2_STATUS_OK)
        device_failed (obs, status);
      else
        update_absmax (st);
    }
    obs->device_dirty = FALSE;
  }
  return sam2_observers_check (obs, error);
}

/* ---- cache ---- */

static char *
tensor_name (const Sam2LayerStats *st, const char *what)
{
  return g_strconcat (st->layer->name, ".", what, NULL);
}

gboolean
sam2_observers_save (Sam2Observers *obs, const char *path, GError **error)
{
  Sam2StWriter *w = sam2_st_writer_new ();
  gboolean ok = TRUE;
  GString *counts = g_string_new ("{");
  for (guint i = 0; ok && i < obs->order->len; i++) {
    const Sam2LayerStats *st = obs->order->pdata[i];
    const int64_t kk[2] = { st->k, st->k }, k1[1] = { st->k }, sk[2] = { st->n_samples, st->k };
    struct { const char *what; Sam2DType dt; int nd; const int64_t *shape; const void *data; } t[] = {
      { "hessian", SAM2_DTYPE_F64, 2, kk, st->hessian }, { "absmax", SAM2_DTYPE_F32, 1, k1, st->absmax },
      { "min", SAM2_DTYPE_F32, 1, k1, st->min }, { "max", SAM2_DTYPE_F32, 1, k1, st->max },
      { "samples", SAM2_DTYPE_F32, 2, sk, st->samples },
    };
    for (guint j = 0; ok && j < G_N_ELEMENTS (t); j++) {
      char *name = tensor_name (st, t[j].what);
      ok = sam2_st_writer_add (w, name, t[j].dt, t[j].nd, t[j].shape, t[j].data, error);
      g_free (name);
    }
    g_string_append_printf (counts, "%s\"%s\": [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                            i ? ", " : "", st->layer->name, st->n_tokens, st->n_hessian_tokens);
  }
  g_string_append_c (counts, '}');
  char *frames = g_strdup_printf ("%d", obs->n_frames);
  sam2_st_writer_set_metadata (w, "format", "sam2-gst.calibration-statistics");
  sam2_st_writer_set_metadata (w, "frames", frames);
  sam2_st_writer_set_metadata (w, "tokens", counts->str);
  ok = ok && sam2_st_writer_write (w, path, error);
  g_free (frames);
  g_string_free (counts, TRUE);
  sam2_st_writer_free (w);
  return ok;
}

/* One layer's statistics in a cache file, found and checked before anything is copied. */
typedef struct {
  const Sam2StTensor *hessian, *absmax, *min, *max, *samples;
  int n_samples;
  int64_t n_tokens, n_hessian_tokens;
} CachedLayer;

/* Tensor `what` of layer `st` in `file`: `dtype`, `numel` elements, none NaN, and finite unless
 * `infinite_ok` (the ranges of a layer that has not seen a token yet are +-inf). */
static const Sam2StTensor *
cached_tensor (const Sam2Safetensors *file, const Sam2LayerStats *st, const char *what,
               Sam2DType dtype, int64_t numel, gboolean infinite_ok, GError **error)
{
  char *name = tensor_name (st, what);
  const Sam2StTensor *t = sam2_safetensors_find (file, name);
  gboolean ok = t != NULL && t->dtype == dtype && t->numel == numel;
  /* element by element through memcpy: a tensor of a tampered file need not be aligned */
  const guint8 *bytes = ok ? t->data : NULL;
  for (int64_t i = 0; ok && i < numel; i++) {
    double v;
    if (dtype == SAM2_DTYPE_F64) {
      memcpy (&v, bytes + i * sizeof (double), sizeof (double));
    } else {
      float f;
      memcpy (&f, bytes + i * sizeof (float), sizeof (float));
      v = f;
    }
    ok = infinite_ok ? !isnan (v) : isfinite (v);
  }
  if (!ok)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: calibration cache lacks '%s' with the expected shape and finite values; "
                 "delete the cache file", sam2_safetensors_path (file), name);
  g_free (name);
  return ok ? t : NULL;
}

/* The [n_tokens, n_hessian_tokens] pair of `name` in the `tokens` object: two integers,
 * 0 <= n_hessian_tokens <= n_tokens. */
static gboolean
cached_counts (JsonObject *tokens, const char *name, int64_t *n_tokens, int64_t *n_hessian)
{
  JsonNode *node = tokens != NULL ? json_object_get_member (tokens, name) : NULL;
  JsonArray *a = node != NULL && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  if (a == NULL || json_array_get_length (a) != 2)
    return FALSE;
  for (guint i = 0; i < 2; i++) {
    JsonNode *v = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_INT64)
      return FALSE;
  }
  *n_tokens = json_array_get_int_element (a, 0);
  *n_hessian = json_array_get_int_element (a, 1);
  return *n_hessian >= 0 && *n_hessian <= *n_tokens;
}

/* All or nothing: every layer's tensors and counts are checked first, so a damaged file leaves
 * the statistics as they were (the caller then recomputes them from frames). */
gboolean
sam2_observers_load (Sam2Observers *obs, const char *path, GError **error)
{
  Sam2Safetensors *f = sam2_safetensors_open (path, error);
  if (f == NULL)
    return FALSE;
  const char *frames = sam2_safetensors_metadata (f, "frames");
  const char *tokens = sam2_safetensors_metadata (f, "tokens");
  char *end = NULL;
  const gint64 n_frames = frames != NULL ? g_ascii_strtoll (frames, &end, 10) : 0;
  JsonParser *parser = json_parser_new_immutable ();
  gboolean ok = g_strcmp0 (sam2_safetensors_metadata (f, "format"),
                           "sam2-gst.calibration-statistics") == 0;
  if (!ok)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "%s is not a calibration cache", path);
  else if (!(ok = end != NULL && *end == '\0' && n_frames >= 1 && n_frames <= G_MAXINT
                  && tokens != NULL && sam2_config_check_json (tokens, strlen (tokens), NULL)
                  && json_parser_load_from_data (parser, tokens, -1, NULL)
                  && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))))
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: the frame or token counts of this calibration cache are missing or "
                 "malformed; delete the cache file", path);
  JsonObject *counts = ok ? json_node_get_object (json_parser_get_root (parser)) : NULL;
  CachedLayer *cached = g_new0 (CachedLayer, MAX (obs->order->len, 1));
  for (guint i = 0; ok && i < obs->order->len; i++) {
    const Sam2LayerStats *st = obs->order->pdata[i];
    CachedLayer *c = &cached[i];
    char *sname = tensor_name (st, "samples");
    const Sam2StTensor *s = sam2_safetensors_find (f, sname);
    g_free (sname);
    c->n_samples = s != NULL && s->ndim == 2 ? (int) MIN (s->shape[0], st->keep) : 0;
    /* observation keeps min(tokens, keep) samples, never fewer */
    if (!(ok = cached_counts (counts, st->layer->name, &c->n_tokens, &c->n_hessian_tokens)
               && c->n_samples == MIN (c->n_tokens, st->keep))) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s: no valid token or sample count for %s; delete the cache file", path,
                   st->layer->name);
      break;
    }
    /* ranges stay infinite only in a layer that has seen no token: every row sets every channel */
    const gboolean unseen = c->n_tokens == 0;
    ok = (c->hessian = cached_tensor (f, st, "hessian", SAM2_DTYPE_F64, (int64_t) st->k * st->k,
                                      FALSE, error)) != NULL
         && (c->absmax = cached_tensor (f, st, "absmax", SAM2_DTYPE_F32, st->k, unseen,
                                        error)) != NULL
         && (c->min = cached_tensor (f, st, "min", SAM2_DTYPE_F32, st->k, unseen, error)) != NULL
         && (c->max = cached_tensor (f, st, "max", SAM2_DTYPE_F32, st->k, unseen, error)) != NULL
         && (c->samples = cached_tensor (f, st, "samples", SAM2_DTYPE_F32,
                                         (int64_t) c->n_samples * st->k, FALSE, error)) != NULL;
    for (int j = 0; ok && !unseen && j < st->k; j++) {
      float lo, hi;
      memcpy (&lo, (const guint8 *) c->min->data + (size_t) j * sizeof (float), sizeof lo);
      memcpy (&hi, (const guint8 *) c->max->data + (size_t) j * sizeof (float), sizeof hi);
      if (!(lo <= hi)) {
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                     "%s: the range of channel %d of %s is empty (min above max); delete the "
                     "cache file", path, j, st->layer->name);
        ok = FALSE;
      }
    }
  }
  for (guint i = 0; ok && i < obs->order->len; i++) {
    Sam2LayerStats *st = obs->order->pdata[i];
    const CachedLayer *c = &cached[i];
    memcpy (st->hessian, c->hessian->data, c->hessian->nbytes);
    memcpy (st->absmax, c->absmax->data, c->absmax->nbytes);
    memcpy (st->min, c->min->data, c->min->nbytes);
    memcpy (st->max, c->max->data, c->max->nbytes);
    memcpy (st->samples, c->samples->data, c->samples->nbytes);
    st->n_samples = c->n_samples;
    st->n_tokens = c->n_tokens;
    st->n_hessian_tokens = c->n_hessian_tokens;
  }
  if (ok)
    obs->n_frames = (int) n_frames;
  g_free (cached);
  g_object_unref (parser);
  sam2_safetensors_close (f);
  return ok;
}
