/* check.c: see check.h. */
#include "check.h"
#include "hash-weights.h"
#include "safetensors.h"
#include "session.h"

#include <math.h>
#include <string.h>

typedef struct {
  Sam2Safetensors **files;
  int n_files;
} RefSet;

static const Sam2StTensor *
ref_find (const RefSet *r, const char *name)
{
  for (int i = 0; i < r->n_files; i++) {
    const Sam2StTensor *t = sam2_safetensors_find (r->files[i], name);
    if (t != NULL)
      return t;
  }
  return NULL;
}

static float *
ref_read (const RefSet *r, const char *name, int64_t *numel, GError **error)
{
  const Sam2StTensor *t = ref_find (r, name);
  if (t == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "reference tensor '%s' not found", name);
    return NULL;
  }
  float *v = g_new (float, MAX (t->numel, 1));
  if (!sam2_st_tensor_to_f32 (t, v, error)) {
    g_free (v);
    return NULL;
  }
  if (numel)
    *numel = t->numel;
  return v;
}

static void
entry_free (gpointer p)
{
  Sam2CheckEntry *e = p;
  g_free (e->name);
  g_free (e);
}

void
sam2_check_report_free (Sam2CheckReport *report)
{
  if (report == NULL)
    return;
  g_ptr_array_unref (report->entries);
  g_free (report->backend);
  g_free (report);
}

static void
add_entry (Sam2CheckReport *rep, const char *name, const float *got, const float *want, size_t n,
           double tolerance)
{
  double num = 0.0, den = 0.0, max_abs = 0.0;
  gboolean finite = TRUE;
  for (size_t i = 0; i < n; i++) {
    double d = (double) got[i] - (double) want[i];
    finite = finite && isfinite (got[i]);
    num += d * d;
    den += (double) want[i] * want[i];
    max_abs = fmax (max_abs, fabs (d));
  }
  tolerance = MAX (tolerance, rep->tolerance_floor);
  Sam2CheckEntry *e = g_new0 (Sam2CheckEntry, 1);
  e->name = g_strdup (name);
  e->rel_l2 = sqrt (num) / fmax (sqrt (den), 1e-30);
  e->max_abs = max_abs;
  e->tolerance = tolerance;
  e->pass = finite && e->rel_l2 <= tolerance;
  if (!e->pass)
    rep->n_failed++;
  g_ptr_array_add (rep->entries, e);
}

/* (C, H, W) reference -> (H, W, C) as our features are stored. */
static void
chw_to_hwc (const float *chw, int C, int H, int W, float *hwc)
{
  for (int c = 0; c < C; c++)
    for (int i = 0; i < H * W; i++)
      hwc[(size_t) i * C + c] = chw[(size_t) c * H * W + i];
}

/* ---- activations captured through the session tap ---- */

typedef struct {
  GHashTable *acts;            /* name -> float copy (channels-last) */
} Capture;

static void
capture_tap (gpointer user_data, const char *name, const float *data, int ndim, const int *shape)
{
  Capture *cap = user_data;
  size_t n = 1;
  for (int d = 0; d < ndim; d++)
    n *= shape[d];
  g_hash_table_replace (cap->acts, g_strdup (name), g_memdup2 (data, n * sizeof (float)));
}

static void
compare_activations (Sam2CheckReport *rep, const RefSet *r, Sam2Model *model, Capture *cap)
{
  GError *error = NULL;
  for (int i = 0; i < model->n_blocks; i++) {
    char *ref_name = g_strdup_printf ("act/vision_encoder.backbone.blocks.%d/0", i);
    char *tap_name = g_strdup_printf ("blocks.%d", i);
    const float *got = g_hash_table_lookup (cap->acts, tap_name);
    int64_t n = 0;
    if (ref_find (r, ref_name) != NULL && got != NULL) {
      float *want = ref_read (r, ref_name, &n, &error);
      if (want != NULL) {
        char *label = g_strdup_printf ("act/%s", tap_name);
        add_entry (rep, label, got, want, (size_t) n, SAM2_CHECK_TOL_ACTIVATIONS);
        g_free (label);
      }
      g_clear_error (&error);
      g_free (want);
    }
    g_free (ref_name);
    g_free (tap_name);
  }
  const int F = model->config.vision.fpn_hidden_size;
  for (int k = 0; k < model->n_stages; k++) {
    const int level = model->n_stages - 1 - k;
    char *ref_name = g_strdup_printf ("act/vision_encoder.neck/0.%d", k);
    char *tap_name = g_strdup_printf ("neck.%d", level);
    const float *got = g_hash_table_lookup (cap->acts, tap_name);
    int64_t n = 0;
    if (ref_find (r, ref_name) != NULL && got != NULL) {
      float *want = ref_read (r, ref_name, &n, &error);
      const int H = model->stage_h[level], W = model->stage_w[level];
      if (want != NULL && n == (int64_t) H * W * F) {
        float *hwc = g_new (float, n);
        chw_to_hwc (want, F, H, W, hwc);
        char *label = g_strdup_printf ("act/%s", tap_name);
        add_entry (rep, label, got, hwc, (size_t) n, SAM2_CHECK_TOL_ACTIVATIONS);
        g_free (label);
        g_free (hwc);
      }
      g_clear_error (&error);
      g_free (want);
    }
    g_free (ref_name);
    g_free (tap_name);
  }
}

/* ---- cases ---- */

static gboolean
read_case_prompts (const RefSet *r, const char *prefix, const char *cname, Sam2Prompt **prompts,
                   Sam2Point **points, int *n_objects, GError **error)
{
  char *pn = g_strdup_printf ("%sin/%s/input_points", prefix, cname);
  char *ln = g_strdup_printf ("%sin/%s/input_labels", prefix, cname);
  char *bn = g_strdup_printf ("%sin/%s/input_boxes", prefix, cname);
  const Sam2StTensor *pt = ref_find (r, pn), *bt = ref_find (r, bn);
  gboolean ok = FALSE;
  float *pv = NULL, *lv = NULL, *bv = NULL;
  int n_obj = 0, n_pts = 0;
  if (pt != NULL) {
    if (pt->ndim != 4 || pt->shape[0] != 1 || pt->shape[3] != 2)
      goto bad;
    n_obj = (int) pt->shape[1];
    n_pts = (int) pt->shape[2];
    pv = ref_read (r, pn, NULL, error);
    lv = ref_read (r, ln, NULL, error);
    if (pv == NULL || lv == NULL)
      goto out;
  }
  if (bt != NULL) {
    if (bt->ndim != 3 || bt->shape[0] != 1 || bt->shape[2] != 4
        || (pt != NULL && bt->shape[1] != n_obj))
      goto bad;
    n_obj = (int) bt->shape[1];
    bv = ref_read (r, bn, NULL, error);
    if (bv == NULL)
      goto out;
  }
  if (n_obj == 0)
    goto bad;
  *prompts = g_new0 (Sam2Prompt, n_obj);
  *points = g_new0 (Sam2Point, (size_t) MAX (n_obj * n_pts, 1));
  for (int o = 0; o < n_obj; o++) {
    Sam2Prompt *p = &(*prompts)[o];
    for (int i = 0; i < n_pts; i++) {
      Sam2Point *q = &(*points)[o * n_pts + i];
      q->x = pv[(o * n_pts + i) * 2];
      q->y = pv[(o * n_pts + i) * 2 + 1];
      q->label = (int) lrintf (lv[o * n_pts + i]);
    }
    p->points = *points + (size_t) o * n_pts;
    p->n_points = n_pts;
    if (bv != NULL) {
      p->has_box = TRUE;
      memcpy (p->box, bv + o * 4, sizeof p->box);
    }
  }
  *n_objects = n_obj;
  ok = TRUE;
  goto out;
bad:
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
               "case '%s%s': input_points / input_labels / input_boxes have unexpected shapes",
               prefix, cname);
out:
  g_free (pv);
  g_free (lv);
  g_free (bv);
  g_free (pn);
  g_free (ln);
  g_free (bn);
  return ok;
}

static gboolean
run_case (Sam2CheckReport *rep, const RefSet *r, Sam2Session *s, const char *prefix,
          const char *cname, GError **error)
{
  char *mname = g_strdup_printf ("%sout/%s/pred_masks", prefix, cname);
  const Sam2StTensor *mt = ref_find (r, mname);
  g_free (mname);
  if (mt == NULL || mt->ndim != 5) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "case '%s%s' has no out/%s/pred_masks of 5 dims", prefix, cname, cname);
    return FALSE;
  }
  const gboolean multimask = mt->shape[2] > 1;
  Sam2Prompt *prompts = NULL;
  Sam2Point *points = NULL;
  int n_obj = 0;
  if (!read_case_prompts (r, prefix, cname, &prompts, &points, &n_obj, error))
    return FALSE;
  const Sam2Result *res = sam2_session_decode (s, prompts, n_obj, multimask, error);
  g_free (prompts);
  g_free (points);
  if (res == NULL)
    return FALSE;

  static const char *outputs[] = { "pred_masks", "iou_scores", "object_score_logits" };
  for (int i = 0; i < 3; i++) {
    char *name = g_strdup_printf ("%sout/%s/%s", prefix, cname, outputs[i]);
    int64_t n = 0;
    float *want = ref_read (r, name, &n, error);
    g_free (name);
    if (want == NULL)
      return FALSE;
    const float *got = i == 0 ? res->lowres_logits : i == 1 ? res->iou_scores : res->object_scores;
    const int64_t have = (int64_t) res->n_objects
                         * (i == 0 ? (int64_t) res->n_masks * res->mask_size * res->mask_size
                            : i == 1 ? res->n_masks : 1);
    if (have != n) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "case '%s%s': reference %s has %" G_GINT64_FORMAT " values, the model made %"
                   G_GINT64_FORMAT, prefix, cname, outputs[i], n, have);
      g_free (want);
      return FALSE;
    }
    char *label = g_strdup_printf ("%s%s/%s", prefix, cname, outputs[i]);
    add_entry (rep, label, got, want, (size_t) n,
               i == 0 ? SAM2_CHECK_TOL_LOGITS : SAM2_CHECK_TOL_SCORES);
    g_free (label);
    g_free (want);
  }
  rep->n_cases++;
  return TRUE;
}

static gboolean
compare_features (Sam2CheckReport *rep, const RefSet *r, Sam2Session *s, const char *prefix,
                  GError **error)
{
  for (int level = 0; level < 3; level++) {
    char *name = g_strdup_printf ("%sout/image_embeddings/%d", prefix, level);
    const Sam2StTensor *t = ref_find (r, name);
    if (t == NULL) {
      g_free (name);
      continue;
    }
    int H, W, C;
    const float *got = sam2_session_get_features (s, level, &H, &W, &C);
    if (got == NULL) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                   "reading image_embeddings/%d back from the %s backend failed", level,
                   sam2_session_describe_backend (s));
      g_free (name);
      return FALSE;
    }
    int64_t n = 0;
    float *want = ref_read (r, name, &n, error);
    g_free (name);
    if (want == NULL)
      return FALSE;
    if (n != (int64_t) H * W * C) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "reference image_embeddings/%d has %" G_GINT64_FORMAT " values, the model "
                   "makes %dx%dx%d", level, n, C, H, W);
      g_free (want);
      return FALSE;
    }
    float *hwc = g_new (float, n);
    chw_to_hwc (want, C, H, W, hwc);
    char *label = g_strdup_printf ("%simage_embeddings/%d", prefix, level);
    add_entry (rep, label, got, hwc, (size_t) n, SAM2_CHECK_TOL_FEATURES);
    g_free (label);
    g_free (hwc);
    g_free (want);
  }
  return TRUE;
}

/* Case names found as "<prefix>in/<case>/..." keys, sorted. */
static GPtrArray *
find_cases (const RefSet *r, const char *prefix)
{
  GPtrArray *cases = g_ptr_array_new_with_free_func (g_free);
  char *in_prefix = g_strconcat (prefix, "in/", NULL);
  for (int f = 0; f < r->n_files; f++)
    for (int i = 0; i < sam2_safetensors_n_tensors (r->files[f]); i++) {
      const char *name = sam2_safetensors_nth (r->files[f], i)->name;
      if (!g_str_has_prefix (name, in_prefix))
        continue;
      const char *rest = name + strlen (in_prefix);
      const char *slash = strchr (rest, '/');
      if (slash == NULL)
        continue;
      char *cname = g_strndup (rest, slash - rest);
      gboolean seen = FALSE;
      for (guint k = 0; k < cases->len && !seen; k++)
        seen = strcmp (cases->pdata[k], cname) == 0;
      if (seen)
        g_free (cname);
      else
        g_ptr_array_add (cases, cname);
    }
  g_free (in_prefix);
  g_ptr_array_sort (cases, (GCompareFunc) g_strcmp0);
  return cases;
}

static float *
read_pixels (const RefSet *r, const char *prefix, Sam2Model *model, GError **error)
{
  const size_t n = sam2_model_image_floats (model);
  if (strcmp (prefix, "hashpix/") == 0) {
    float *px = g_new (float, n);
    sam2_hash_fill_pixels (px, n);
    return px;
  }
  const char *names[] = { "in/pixel_values", "in/pixel_values_f16" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    const Sam2StTensor *t = ref_find (r, names[i]);
    if (t == NULL)
      continue;
    if ((size_t) t->numel != n) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s has %" G_GINT64_FORMAT " values; the model takes 3x%dx%d", names[i],
                   t->numel, model->image_size, model->image_size);
      return NULL;
    }
    return ref_read (r, names[i], NULL, error);
  }
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
               "the reference has no in/pixel_values or in/pixel_values_f16");
  return NULL;
}

static gboolean
run_prefix (Sam2CheckReport *rep, const RefSet *r, Sam2Model *model, Sam2Session *s,
            const char *prefix, GError **error)
{
  GPtrArray *cases = find_cases (r, prefix);
  gboolean ok = TRUE;
  if (cases->len == 0)
    goto out;
  float *pixels = read_pixels (r, prefix, model, error);
  ok = pixels != NULL && sam2_session_encode (s, pixels, error);
  g_free (pixels);
  ok = ok && compare_features (rep, r, s, prefix, error);
  for (guint i = 0; ok && i < cases->len; i++)
    ok = run_case (rep, r, s, prefix, cases->pdata[i], error);
out:
  g_ptr_array_unref (cases);
  return ok;
}

Sam2CheckReport *
sam2_check_reference (Sam2Model *model, const char *const *paths, GError **error)
{
  return sam2_check_reference_full (model, paths, NULL, error);
}

Sam2CheckReport *
sam2_check_reference_full (Sam2Model *model, const char *const *paths,
                           const Sam2SessionOptions *options, GError **error)
{
  RefSet r = { 0 };
  r.n_files = (int) g_strv_length ((char **) paths);
  r.files = g_new0 (Sam2Safetensors *, MAX (r.n_files, 1));
  Sam2CheckReport *rep = NULL;
  Sam2Session *s = NULL;
  Capture cap = { g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free) };

  for (int i = 0; i < r.n_files; i++)
    if ((r.files[i] = sam2_safetensors_open (paths[i], error)) == NULL)
      goto fail;
  s = sam2_session_new_full (model, options, error);
  if (s == NULL)
    goto fail;
  rep = g_new0 (Sam2CheckReport, 1);
  rep->backend = g_strdup (sam2_session_describe_backend (s));
  if (sam2_session_get_precision (s) == SAM2_PRECISION_FP16)
    rep->tolerance_floor = SAM2_CHECK_TOL_FP16;
  else if (sam2_session_get_precision (s) == SAM2_PRECISION_BF16)
    rep->tolerance_floor = SAM2_CHECK_TOL_BF16;
  rep->entries = g_ptr_array_new_with_free_func (entry_free);

  sam2_session_set_tap (s, capture_tap, &cap);
  if (!run_prefix (rep, &r, model, s, "", error))
    goto fail;
  sam2_session_set_tap (s, NULL, NULL);
  compare_activations (rep, &r, model, &cap);
  if (!run_prefix (rep, &r, model, s, "hashpix/", error))
    goto fail;
  if (rep->n_cases == 0 && rep->entries->len == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                 "no reference case found (expected in/<case>/input_points or input_boxes and "
                 "out/<case>/pred_masks)");
    goto fail;
  }
  goto out;
fail:
  sam2_check_report_free (rep);
  rep = NULL;
out:
  sam2_session_free (s);
  g_hash_table_unref (cap.acts);
  for (int i = 0; i < r.n_files; i++)
    sam2_safetensors_close (r.files[i]);
  g_free (r.files);
  return rep;
}
