/* observers.c: see observers.h. */
#include "observers.h"
#include "safetensors.h"

#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _Sam2Observers {
  GHashTable *by_layer;        /* const Sam2Linear * -> Sam2LayerStats * */
  GPtrArray *order;            /* Sam2LayerStats *, model order (for saving) */
  int max_tokens;              /* rows per call entering the Hessian, 0 = all */
  GRand *rng;
  int n_frames;
  /* scratch, sized for the widest layer */
  float *rows;                 /* (max_tokens, k_max) gathered rows */
  float *gram;                 /* (k_max, k_max) their X^T X in float */
  int *index;                  /* (rows of the largest call) */
  size_t index_capacity;
};

static void
stats_free (gpointer p)
{
  Sam2LayerStats *st = p;
  g_free (st->hessian);
  g_free (st->absmax);
  g_free (st->min);
  g_free (st->max);
  g_free (st->samples);
  g_free (st);
}

Sam2Observers *
sam2_observers_new (const Sam2Model *model, const Sam2CalibRecipe *calib,
                    gboolean (*wanted) (const Sam2Linear *l, gpointer data), gpointer wanted_data)
{
  Sam2Observers *obs = g_new0 (Sam2Observers, 1);
  obs->by_layer = g_hash_table_new (g_direct_hash, g_direct_equal);
  obs->order = g_ptr_array_new_with_free_func (stats_free);
  obs->max_tokens = calib->max_tokens;
  obs->rng = g_rand_new_with_seed ((guint32) calib->seed);
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
    st->keep = MAX (calib->keep_tokens, 1);
    st->samples = g_new0 (float, (size_t) st->keep * st->k);
    g_hash_table_insert (obs->by_layer, (gpointer) l, st);
    g_ptr_array_add (obs->order, st);
    k_max = MAX (k_max, st->k);
  }
  const int rows = obs->max_tokens > 0 ? obs->max_tokens : 0;
  obs->rows = rows > 0 ? g_new (float, (size_t) rows * k_max) : NULL;
  obs->gram = g_new (float, (size_t) k_max * k_max);
  return obs;
}

void
sam2_observers_free (Sam2Observers *obs)
{
  if (obs == NULL)
    return;
  g_hash_table_unref (obs->by_layer);
  g_ptr_array_unref (obs->order);
  g_rand_free (obs->rng);
  g_free (obs->rows);
  g_free (obs->gram);
  g_free (obs->index);
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
  for (int c = 0; c < K; c++)
    st->absmax[c] = fmaxf (fabsf (st->min[c]), fabsf (st->max[c]));
}

/* Algorithm R over all rows ever seen: every row has the same chance to be kept. */
static void
update_reservoir (Sam2Observers *obs, Sam2LayerStats *st, const float *x, int M)
{
  const size_t row_bytes = (size_t) st->k * sizeof (float);
  for (int m = 0; m < M; m++) {
    const int64_t t = st->n_tokens + m;
    if (st->n_samples < st->keep) {
      memcpy (st->samples + (size_t) st->n_samples * st->k, x + (size_t) m * st->k, row_bytes);
      st->n_samples++;
    } else {
      const int64_t j = (int64_t) (g_rand_double (obs->rng) * (double) (t + 1));
      if (j < st->keep)
        memcpy (st->samples + (size_t) j * st->k, x + (size_t) m * st->k, row_bytes);
    }
  }
}

/* H += X^T X over the call's rows, or over max_tokens of them drawn without replacement. */
static void
update_hessian (Sam2Observers *obs, Sam2LayerStats *st, const float *x, int M)
{
  const int K = st->k;
  const float *rows = x;
  int n = M;
  if (obs->max_tokens > 0 && M > obs->max_tokens) {
    if (obs->index_capacity < (size_t) M) {
      g_free (obs->index);
      obs->index = g_new (int, M);
      obs->index_capacity = M;
    }
    for (int i = 0; i < M; i++)
      obs->index[i] = i;
    n = obs->max_tokens;
    for (int i = 0; i < n; i++) {  /* partial Fisher-Yates */
      int j = i + (int) g_rand_int_range (obs->rng, 0, M - i);
      int tmp = obs->index[i];
      obs->index[i] = obs->index[j];
      obs->index[j] = tmp;
      memcpy (obs->rows + (size_t) i * K, x + (size_t) obs->index[i] * K, K * sizeof (float));
    }
    rows = obs->rows;
  }
  /* float products within one call (a few thousand rows), double across calls */
  dnnl_sgemm ('T', 'N', K, K, n, 1.0f, rows, K, rows, K, 0.0f, obs->gram, K);
  for (size_t i = 0; i < (size_t) K * K; i++)
    st->hessian[i] += obs->gram[i];
  st->n_hessian_tokens += n;
}

void
sam2_observers_observe (gpointer data, const Sam2Linear *l, const float *x, int M)
{
  Sam2Observers *obs = data;
  Sam2LayerStats *st = g_hash_table_lookup (obs->by_layer, l);
  if (st == NULL || M <= 0)
    return;
  update_ranges (st, x, M);
  update_reservoir (obs, st, x, M);
  update_hessian (obs, st, x, M);
  st->n_tokens += M;
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

static gboolean
load_into (const Sam2Safetensors *st_file, const Sam2LayerStats *st, const char *what, void *dst,
           Sam2DType dtype, int64_t numel, GError **error)
{
  char *name = tensor_name (st, what);
  const Sam2StTensor *t = sam2_safetensors_find (st_file, name);
  gboolean ok = t != NULL && t->dtype == dtype && t->numel == numel;
  if (ok)
    memcpy (dst, t->data, t->nbytes);
  else
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "%s: calibration cache lacks '%s' with the expected shape; delete the cache file",
                 sam2_safetensors_path (st_file), name);
  g_free (name);
  return ok;
}

gboolean
sam2_observers_load (Sam2Observers *obs, const char *path, GError **error)
{
  Sam2Safetensors *f = sam2_safetensors_open (path, error);
  if (f == NULL)
    return FALSE;
  gboolean ok = g_strcmp0 (sam2_safetensors_metadata (f, "format"),
                           "sam2-gst.calibration-statistics") == 0;
  if (!ok)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "%s is not a calibration cache", path);
  const char *frames = ok ? sam2_safetensors_metadata (f, "frames") : NULL;
  const char *tokens = ok ? sam2_safetensors_metadata (f, "tokens") : NULL;
  for (guint i = 0; ok && i < obs->order->len; i++) {
    Sam2LayerStats *st = obs->order->pdata[i];
    char *sname = tensor_name (st, "samples");
    const Sam2StTensor *s = sam2_safetensors_find (f, sname);
    g_free (sname);
    st->n_samples = s != NULL && s->ndim == 2 ? (int) MIN (s->shape[0], st->keep) : 0;
    ok = load_into (f, st, "hessian", st->hessian, SAM2_DTYPE_F64, (int64_t) st->k * st->k, error)
         && load_into (f, st, "absmax", st->absmax, SAM2_DTYPE_F32, st->k, error)
         && load_into (f, st, "min", st->min, SAM2_DTYPE_F32, st->k, error)
         && load_into (f, st, "max", st->max, SAM2_DTYPE_F32, st->k, error)
         && load_into (f, st, "samples", st->samples, SAM2_DTYPE_F32,
                       (int64_t) st->n_samples * st->k, error);
    /* token counts: "name": [n_tokens, n_hessian_tokens] */
    char *key = g_strdup_printf ("\"%s\": [", st->layer->name);
    const char *at = ok && tokens ? strstr (tokens, key) : NULL;
    if (ok && (at == NULL
               || sscanf (at + strlen (key), "%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT,
                          &st->n_tokens, &st->n_hessian_tokens) != 2)) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s: no token count for %s; delete the cache file", path, st->layer->name);
      ok = FALSE;
    }
    g_free (key);
  }
  if (ok)
    obs->n_frames = frames ? atoi (frames) : 0;
  sam2_safetensors_close (f);
  return ok;
}
