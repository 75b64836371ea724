/* quantize.c: the calibrator. Frames run through the float model with observers on every layer
 * the recipe quantizes; quantization then works layer by layer:
 *
 *   smoothing (optional, only with 8-bit activations): one scale vector per group of layers that
 *     read the same input; folded into the LayerNorm that produces that input where there is one;
 *   low-rank branch (optional): SVD of the smoothed weight (or of its quantization error);
 *   4-bit weights: GPTQ on the Hessian of the (smoothed) input, or RTN;
 *   8-bit activations: per token, symmetric, or asymmetric for inputs that follow an activation
 *     function (skewed: GELU outputs lie mostly in [-0.17, 0]); or static per tensor from the
 *     calibration range.
 * Every layer's output error is measured on calibration samples against the float layer and
 * reported, next to what plain RTN would have given. */
#include "sam2.h"
#include "linear-cpu.h"
#include "lowrank.h"
#include "qmodel.h"
#include "quantize.h"
#include "session.h"
#include "smooth.h"
#include "threads.h"
#include "weights.h"

#include <dnnl.h>
#include <errno.h>
#include <fnmatch.h>
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#define SAM2_VERSION_STRING "sam2-gst 0.1.0"

struct _Sam2Calibrator {
  Sam2Model *model;
  Sam2Recipe *recipe;
  Sam2Session *session;
  Sam2Observers *obs;
  GHashTable *post_activation; /* Sam2Linear * whose input is an activation function's output */
  GChecksum *frames_digest;    /* over the raw frames added */
  GRand *rng;                  /* decoder calibration prompts */
  int batch;                   /* frames per encoder pass (calib.batch_size, <= num_samples) */
  int n_pending;               /* frames in the session's input waiting for their pass */
  gboolean decoder_calibrated; /* decoder layers are quantized: prompts run on every frame */
  char *cache_path;            /* where statistics go (NULL: no cache) */
  char *model_digest;          /* sha256 of the float weights (calibrator_model_digest); NULL
                                  until asked */
  gboolean from_cache;
  gboolean cached;             /* the statistics are in the cache: loaded or saved there */
  GPtrArray *report;           /* Sam2LayerReport * */
};

/* ---- which layers ---- */

static gboolean
name_has_prefix_block (const char *name, int block)
{
  char prefix[64];
  g_snprintf (prefix, sizeof prefix, "vision_encoder.backbone.blocks.%d.", block);
  return g_str_has_prefix (name, prefix);
}

gboolean
sam2_recipe_quantizes (const Sam2Recipe *r, const Sam2Model *m, const Sam2Linear *l)
{
  const char *name = l->name;
  if (g_str_has_prefix (name, "prompt_encoder."))
    return FALSE;
  if (r->skips.decoder && g_str_has_prefix (name, "mask_decoder."))
    return FALSE;
  if (r->skips.patch_embed && l == &m->patch_embed)
    return FALSE;
  if (r->skips.first_block && name_has_prefix_block (name, 0))
    return FALSE;
  if (r->skips.last_block && name_has_prefix_block (name, m->n_blocks - 1))
    return FALSE;
  return !sam2_recipe_pattern_skips (r, name);
}

static gboolean
observe_wanted (const Sam2Linear *l, gpointer data)
{
  Sam2Calibrator *c = data;
  return sam2_recipe_quantizes (c->recipe, c->model, l);
}

static void
mark_post_activation (GHashTable *set, const Sam2Mlp *mlp)
{
  for (int i = 1; i < mlp->n_layers; i++)
    g_hash_table_add (set, &mlp->layers[i]);
}

static GHashTable *
post_activation_layers (const Sam2Model *m)
{
  GHashTable *set = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (int i = 0; i < m->n_blocks; i++)
    mark_post_activation (set, &m->blocks[i].mlp);
  for (int i = 0; i < m->n_two_way; i++)
    mark_post_activation (set, &m->two_way[i].mlp);
  for (int i = 0; i < m->n_mask_tokens; i++)
    mark_post_activation (set, &m->hyper_mlps[i]);
  mark_post_activation (set, &m->iou_head);
  mark_post_activation (set, &m->obj_score_head);
  return set;
}

/* ---- calibrator ---- */

static void
report_free (gpointer p)
{
  Sam2LayerReport *r = p;
  g_free (r->name);
  g_free (r);
}

Sam2Calibrator *
sam2_calibrator_new (Sam2Model *model, const Sam2Recipe *recipe, GError **error)
{
  return sam2_calibrator_new_full (model, recipe, NULL, error);
}

Sam2Calibrator *
sam2_calibrator_new_full (Sam2Model *model, const Sam2Recipe *recipe,
                          const Sam2SessionOptions *options, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (model->quantized) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "%s is already quantized; calibrate the float model it came from", model->name);
    return NULL;
  }
  Sam2Calibrator *c = g_new0 (Sam2Calibrator, 1);
  c->model = sam2_model_ref (model);
  if (recipe != NULL) {
    c->recipe = sam2_recipe_copy (recipe);
  } else {
    c->recipe = g_new0 (Sam2Recipe, 1);
    sam2_recipe_init_defaults (c->recipe);
  }
  Sam2SessionOptions run = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  if (options != NULL && options->backend != SAM2_BACKEND_AUTO)
    run = *options;
  if (run.precision == SAM2_PRECISION_AUTO)
    run.precision = SAM2_PRECISION_FP32;
  /* frames are added one at a time and wait in the session's input for a full batch (no more
   * than the frames the recipe expects: the encoder's buffers grow with the batch) */
  c->batch = CLAMP (MIN (c->recipe->calib.batch_size, c->recipe->calib.num_samples), 1,
                    SAM2_SESSION_MAX_BATCH);
  run.max_batch = c->batch;
  c->session = sam2_session_new_full (model, &run, error);
  if (c->session == NULL) {
    sam2_calibrator_free (c);
    return NULL;
  }
  /* on a device backend the statistics stay in its memory (backend.h's stats ops) */
  Sam2Backend *device = c->session->backend->ops->device_memory ? c->session->backend : NULL;
  if (device != NULL && device->ops->stats_new == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "the %s backend cannot gather calibration statistics; calibrate on the CPU",
                 device->ops->name);
    sam2_calibrator_free (c);
    return NULL;
  }
  c->obs = sam2_observers_new_full (model, &c->recipe->calib, observe_wanted, c, device, error);
  if (c->obs == NULL) {
    sam2_calibrator_free (c);
    return NULL;
  }
  sam2_session_set_observer_full (c->session, sam2_observers_observe, c->obs, device != NULL);
  c->post_activation = post_activation_layers (model);
  c->frames_digest = g_checksum_new (G_CHECKSUM_SHA256);
  c->rng = g_rand_new_with_seed ((guint32) c->recipe->calib.seed);
  for (guint i = 0; i < model->linears->len && !c->decoder_calibrated; i++) {
    const Sam2Linear *l = model->linears->pdata[i];
    c->decoder_calibrated = g_str_has_prefix (l->name, "mask_decoder.")
                            && l != &model->conv_s0 && l != &model->conv_s1
                            && sam2_recipe_quantizes (c->recipe, model, l);
  }
  c->report = g_ptr_array_new_with_free_func (report_free);
  return c;
}

void
sam2_calibrator_free (Sam2Calibrator *c)
{
  if (c == NULL)
    return;
  /* the observers may hold statistics in the session's backend: free them first */
  sam2_observers_free (c->obs);
  sam2_session_free (c->session);
  if (c->post_activation)
    g_hash_table_unref (c->post_activation);
  if (c->frames_digest)
    g_checksum_free (c->frames_digest);
  if (c->rng)
    g_rand_free (c->rng);
  if (c->report)
    g_ptr_array_unref (c->report);
  g_free (c->cache_path);
  g_free (c->model_digest);
  sam2_recipe_free (c->recipe);
  sam2_model_unref (c->model);
  g_free (c);
}

/* The decoder's layers see prompts, not only frames: when they are quantized, every calibration
 * frame also runs a few prompts (a centre click, a random click, a box), drawn from the seed. */
static gboolean
calibrate_decoder (Sam2Calibrator *c, GError **error)
{
  if (!c->decoder_calibrated)
    return TRUE;
  const float S = (float) c->model->image_size;
  Sam2Point centre = { S / 2, S / 2, SAM2_LABEL_POSITIVE };
  Sam2Point random = { (float) g_rand_double_range (c->rng, 0, S - 1),
                       (float) g_rand_double_range (c->rng, 0, S - 1), SAM2_LABEL_POSITIVE };
  const float w = (float) g_rand_double_range (c->rng, S / 8, S / 2);
  Sam2Prompt prompts[3] = {
    { .points = &centre, .n_points = 1 },
    { .points = &random, .n_points = 1 },
    { .has_box = TRUE, .box = { centre.x - w / 2, centre.y - w / 2, centre.x + w / 2, centre.y + w / 2 } },
  };
  return sam2_session_decode (c->session, prompts, 3, FALSE, error) != NULL;
}

static gboolean
frame_done (Sam2Calibrator *c, GError **error)
{
  if (!calibrate_decoder (c, error) || !sam2_observers_check (c->obs, error))
    return FALSE;
  sam2_observers_frame_done (c->obs);
  return TRUE;
}

/* The pending frames through one encoder pass, then each one's decoder prompts. They stop being
 * pending whatever happens: a failed pass is reported once, by the call that ran it. */
static gboolean
encode_pending (Sam2Calibrator *c, GError **error)
{
  const int n = c->n_pending;
  c->n_pending = 0;
  if (n == 0)
    return TRUE;
  if (!sam2_session_encode_resident (c->session, n, error))
    return FALSE;
  for (int i = 0; i < n; i++)
    if (!sam2_session_select_image (c->session, i, error) || !frame_done (c, error))
      return FALSE;
  return TRUE;
}

/* A frame now in the session's input: its pass runs once the batch is full (or at
 * sam2_calibrator_flush / quantize). */
static gboolean
frame_pending (Sam2Calibrator *c, GError **error)
{
  return ++c->n_pending < c->batch || encode_pending (c, error);
}

static void
digest_image (Sam2Calibrator *c, const guint8 *pixels, int width, int height, int stride,
              Sam2PixelFormat format)
{
  const int row = width * sam2_pixel_format_bpp (format);
  for (int y = 0; y < height; y++)
    g_checksum_update (c->frames_digest, pixels + (size_t) y * stride, row);
}

gboolean
sam2_calibrator_add_image (Sam2Calibrator *c, const guint8 *pixels, int width, int height,
                           int stride, Sam2PixelFormat format, GError **error)
{
  /* resized where the encoder runs (on the GPU for CUDA), into the pass's next slot */
  if (!sam2_session_stage_image (c->session, c->n_pending, pixels, width, height, stride, format,
                                 error))
    return FALSE;
  digest_image (c, pixels, width, height, stride, format);
  return frame_pending (c, error);
}

gboolean
sam2_calibrator_add_pixels (Sam2Calibrator *c, const float *pixel_values, GError **error)
{
  if (!sam2_session_stage_pixels (c->session, c->n_pending, pixel_values, error))
    return FALSE;
  const size_t n = sam2_model_image_floats (c->model);
  g_checksum_update (c->frames_digest, (const guchar *) pixel_values, n * sizeof (float));
  return frame_pending (c, error);
}

const char *
sam2_calibrator_describe_backend (const Sam2Calibrator *c)
{
  return sam2_session_describe_backend (c->session);
}

gboolean
sam2_calibrator_flush (Sam2Calibrator *c, GError **error)
{
  return encode_pending (c, error);
}

int
sam2_calibrator_get_n_frames (const Sam2Calibrator *c)
{
  return sam2_observers_n_frames (c->obs) + c->n_pending;
}

const GPtrArray *
sam2_calibrator_get_report (const Sam2Calibrator *c)
{
  return c->report;
}

/* sha256 over every float tensor of the model, in name order. */
static char *
model_digest (const Sam2Model *m)
{
  GList *names = g_list_sort (g_hash_table_get_keys (m->tensors), (GCompareFunc) strcmp);
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (GList *n = names; n != NULL; n = n->next) {
    const Sam2TensorRef *ref = g_hash_table_lookup (m->tensors, n->data);
    int64_t numel = 1;
    for (int d = 0; d < ref->ndim; d++)
      numel *= ref->shape[d];
    g_checksum_update (sum, (const guchar *) n->data, strlen (n->data));
    g_checksum_update (sum, (const guchar *) ref->data, (gssize) (numel * sizeof (float)));
  }
  g_list_free (names);
  char *hex = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  return hex;
}

/* model_digest of c's model, computed once per calibrator (hashing every weight takes seconds
 * for large): the cache key and the provenance both need it. */
static const char *
calibrator_model_digest (Sam2Calibrator *c)
{
  if (c->model_digest == NULL)
    c->model_digest = model_digest (c->model);
  return c->model_digest;
}

/* DIR/calib-<key>.safetensors: the cache entry of c's model, recipe and precision for the
 * frames `set_digest` names. */
static char *
cache_entry_path (Sam2Calibrator *c, const char *dir, const char *set_digest)
{
  /* the statistics depend on the model, the frames, the recipe's calibration and skips, how
   * the observers draw them, and the precision of the float forward that fed them (BF16 or FP16
   * activations round differently: a BF16 run must not reuse FP32 statistics, nor the other way
   * round); not on the batch size (the same draws, test-observers), nor on the backend within
   * one precision (CPU and CUDA FP32 differ by float rounding only) */
  const char *mdigest = calibrator_model_digest (c);
  char *recipe = sam2_recipe_statistics_yaml (c->recipe);
  GChecksum *key = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (key, (const guchar *) SAM2_OBSERVERS_SCHEME, -1);
  /* FP32 adds nothing, so the FP32 entries of earlier versions stay valid */
  const Sam2Precision precision = c->session->precision;
  if (precision != SAM2_PRECISION_FP32)
    g_checksum_update (key, (const guchar *) sam2_precision_to_string (precision), -1);
  g_checksum_update (key, (const guchar *) mdigest, -1);
  g_checksum_update (key, (const guchar *) set_digest, -1);
  g_checksum_update (key, (const guchar *) recipe, -1);
  char *file = g_strdup_printf ("calib-%.24s.safetensors", g_checksum_get_string (key));
  char *path = g_build_filename (dir, file, NULL);
  g_free (file);
  g_checksum_free (key);
  g_free (recipe);
  return path;
}

gboolean
sam2_calibrator_cache_contains (Sam2Calibrator *c, const char *dir, const char *set_digest)
{
  char *path = cache_entry_path (c, dir, set_digest);
  const gboolean found = g_file_test (path, G_FILE_TEST_IS_REGULAR);
  g_free (path);
  return found;
}

gboolean
sam2_calibrator_use_cache (Sam2Calibrator *c, const char *dir, const char *set_digest,
                           gboolean *hit, GError **error)
{
  *hit = FALSE;
  if (g_mkdir_with_parents (dir, 0755) != 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO,
                 "cannot create the cache directory %s: %s; choose another --cache-dir", dir,
                 g_strerror (errno));
    return FALSE;
  }
  g_free (c->cache_path);
  c->cache_path = cache_entry_path (c, dir, set_digest);
  if (!g_file_test (c->cache_path, G_FILE_TEST_IS_REGULAR))
    return TRUE;
  GError *local = NULL;
  if (!sam2_observers_load (c->obs, c->cache_path, &local)) {
    /* a damaged entry is recomputed and overwritten, not fatal */
    g_warning ("ignoring calibration cache %s: %s", c->cache_path, local->message);
    g_error_free (local);
    return TRUE;
  }
  c->from_cache = TRUE;
  c->cached = TRUE;
  c->n_pending = 0;   /* the cached statistics hold these frames already */
  *hit = TRUE;
  return TRUE;
}

/* ---- per-layer quantization ---- */

static Sam2ActQuantMode
act_mode_for (const Sam2Calibrator *c, const Sam2Linear *l)
{
  const Sam2ActRecipe *a = &c->recipe->ipts;
  if (a->dtype == SAM2_QTYPE_NONE)
    return SAM2_ACT_QUANT_NONE;
  gboolean asym = a->dtype == SAM2_QTYPE_UINT8
                  || (a->post_gelu_asymmetric && g_hash_table_contains (c->post_activation, l));
  if (a->per_tensor)
    return asym ? SAM2_ACT_QUANT_TENSOR_ASYM : SAM2_ACT_QUANT_TENSOR_SYM;
  return asym ? SAM2_ACT_QUANT_TOKEN_ASYM : SAM2_ACT_QUANT_TOKEN_SYM;
}

/* Static activation range from the observed per-channel range of x / s. */
static void
static_act_params (const Sam2LayerStats *st, const float *s, Sam2QuantLinear *q)
{
  float lo = 0.0f, hi = 0.0f, amax = 0.0f;
  for (int j = 0; j < st->k; j++) {
    const float inv = s ? 1.0f / s[j] : 1.0f;
    lo = MIN (lo, st->min[j] * inv);
    hi = MAX (hi, st->max[j] * inv);
    amax = MAX (amax, st->absmax[j] * inv);
  }
  if (q->act == SAM2_ACT_QUANT_TENSOR_SYM) {
    q->act_scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    q->act_zero = 0.0f;
  } else if (q->act == SAM2_ACT_QUANT_TENSOR_ASYM) {
    q->act_scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    q->act_zero = (float) CLAMP (sam2_round_half_away (-lo / q->act_scale), 0, 255);
  }
}

/* The float layer's outputs without bias, x (m, k) W^T: (m, n). The bias is
 * carried exactly by both sides of an error, so it is left out. */
static float *
float_outputs (const Sam2Linear *l, const float *x, int m)
{
  const int n = l->out_features, k = l->in_features;
  float *yf = g_new0 (float, (size_t) MAX (m, 1) * n);
  /* float GEMM: its rounding (~1e-6 relative) is far below the errors it measures (>= 1e-4) */
  if (m > 0)
    dnnl_sgemm ('N', 'T', m, n, k, 1.0f, x, k, l->weight, k, 0.0f, yf, n);
  return yf;
}

/* sam2_quant_layer_error against the float outputs yf = float_outputs (l, x, m), which depend
 * on the layer and its rows only: computed once for every quantization tried on them. */
static double
layer_error (const Sam2Linear *l, const Sam2QuantLinear *q, const float *x, int m,
             const float *folded_s, const float *yf)
{
  if (m <= 0)
    return NAN;
  const int n = l->out_features, k = l->in_features;
  float *xin = g_memdup2 (x, sizeof (float) * m * k);
  if (folded_s != NULL)
    for (int r = 0; r < m; r++)
      for (int j = 0; j < k; j++)
        xin[(size_t) r * k + j] /= folded_s[j];
  float *yq = g_new (float, (size_t) m * n);
  Sam2QuantLinear tmp = *q;
  tmp.bias = NULL;
  tmp.kernel = NULL;
  tmp.kernel_free = NULL;
  void *scratch = g_malloc (sam2_quant_linear_scratch_bytes (&tmp, m));
  /* the integer kernel the model runs, not the scalar reference: the same outputs within float
   * rounding (test-quant-linear), at a fraction of the cost of the smoothing search's many
   * calls; the reference only if preparing it runs out of memory */
  if (sam2_quant_linear_prepare (&tmp)) {
    sam2_quant_linear_forward (&tmp, xin, m, yq, SAM2_ACT_NONE, NULL, scratch);
    tmp.kernel_free (tmp.kernel);
  } else {
    sam2_quant_linear_reference (&tmp, xin, m, yq, SAM2_ACT_NONE, NULL, scratch);
  }
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < (size_t) m * n; i++) {
    double d = (double) yq[i] - yf[i];
    num += d * d;
    den += (double) yf[i] * yf[i];
  }
  g_free (scratch);
  g_free (xin);
  g_free (yq);
  return sqrt (num) / fmax (sqrt (den), 1e-30);
}

double
sam2_quant_layer_error (const Sam2Linear *l, const Sam2QuantLinear *q, const float *x, int m,
                        const float *folded_s)
{
  if (m <= 0)
    return NAN;
  float *yf = float_outputs (l, x, m);
  const double e = layer_error (l, q, x, m, folded_s, yf);
  g_free (yf);
  return e;
}

/* The layer's weight times s per input channel (W s), or a copy of it when s is NULL. */
static float *
smoothed_weight (const Sam2Linear *l, const float *s)
{
  const int n = l->out_features, k = l->in_features;
  if (s == NULL)
    return g_memdup2 (l->weight, sizeof (float) * n * k);
  float *w = g_new (float, (size_t) n * k);
  sam2_smooth_weight (l->weight, n, k, s, w);
  return w;
}

/* 1 / s: what a layer whose smoothing is not folded into a norm multiplies its input by. */
static float *
smooth_inverse (const float *s, int k)
{
  float *inv = g_new (float, k);
  for (int j = 0; j < k; j++)
    inv[j] = 1.0f / s[j];
  return inv;
}

/* A layer quantized with RTN only (no low rank), for the report and the alpha search. */
static double
rtn_error (const Sam2Calibrator *c, const Sam2Linear *l, const Sam2LayerStats *st,
           const float *s, gboolean folded, const float *yf)
{
  const int n = l->out_features, k = l->in_features;
  float *w = smoothed_weight (l, s);
  Sam2QuantLinear q = { 0 };
  sam2_w4_init (&q.w, n, k, c->recipe->wgts.group_size, c->recipe->wgts.dtype);
  sam2_w4_choose_params (&q.w, w);
  sam2_w4_quantize_rtn (&q.w, w);
  q.act = act_mode_for (c, l);
  q.smooth_inv = s != NULL && !folded ? smooth_inverse (s, k) : NULL;
  static_act_params (st, s, &q);
  double e = layer_error (l, &q, st->samples, st->n_samples, folded ? s : NULL, yf);
  sam2_w4_clear (&q.w);
  g_free (q.smooth_inv);
  g_free (w);
  return e;
}

/* Rows of the qkv slices decomposed separately ("exclusive") or the whole weight. */
static int
lowrank_slice_rows (const Sam2Calibrator *c, const Sam2Linear *l)
{
  if (c->recipe->low_rank.exclusive && g_str_has_suffix (l->name, ".attn.qkv")
      && l->out_features % 3 == 0)
    return l->out_features / 3;
  return l->out_features;
}

/* The Hessian of the smoothed input x / s (GPTQ's), (k, k). */
static double *
smoothed_hessian (const Sam2LayerStats *st, const float *s)
{
  const int k = st->k;
  double *h = g_new (double, (size_t) k * k);
  /* from the upper triangle, mirrored: symmetric to the bit whatever filled the statistics (the
   * host observers mirror theirs; a device's Gram matrix or a cache file need not), which
   * GPTQ's LAPACK calls rely on (weights.c, inverse_cholesky) */
  for (int i = 0; i < k; i++)
    for (int j = i; j < k; j++)
      h[(size_t) i * k + j] = h[(size_t) j * k + i]
        = st->hessian[(size_t) i * k + j] / (s ? (double) s[i] * s[j] : 1.0);
  return h;
}

/* Scales and zeros: min-max, or the recipe's calib_range search weighted by E[x_c^2] of the
 * smoothed inputs (the Hessian's diagonal over the calibration tokens). */
static void
choose_weight_params (Sam2W4 *w, const float *weights, const Sam2LayerStats *st, const float *s,
                      const Sam2WeightRecipe *wr)
{
  if (!wr->range_search) {
    sam2_w4_choose_params (w, weights);
    return;
  }
  double *col_weight = NULL;
  if (wr->range_products) {
    const int k = st->k;
    col_weight = g_new (double, k);
    for (int i = 0; i < k; i++)
      col_weight[i] = st->hessian[(size_t) i * k + i] / (s ? (double) s[i] * s[i] : 1.0);
  }
  sam2_w4_choose_params_searched (w, weights, col_weight, wr->range_max_shrink, wr->range_grids);
  g_free (col_weight);
}

/* weights.h's Sam2GptqSolver on the calibrating backend (its gptq_solve: the CUDA backend's, on
 * the GPU), a failure in words. */
static int
device_gptq (gpointer device, Sam2W4 *w, double *W, const double *H, const int *perm, int block,
             double d0, int tries, GError **error)
{
  Sam2Backend *b = device;
  const int st = b->ops->gptq_solve (b, w, W, H, perm, block, d0, tries);
  if (st == 2) {
    static gsize said = 0;
    if (g_once_init_enter (&said)) {
      g_message ("GPTQ runs on the CPU: the %s backend has no solver library here (cuSOLVER)",
                 b->ops->name);
      g_once_init_leave (&said, 1);
    }
  }
  if (st < 0) {
    const char *detail = b->ops->status_detail != NULL ? b->ops->status_detail (b) : NULL;
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "GPTQ of a %dx%d layer on the %s backend: %s%s%s (SAM2_CUDA_GPTQ=0 runs GPTQ on "
                 "the CPU)", w->n, w->k, b->ops->name, sam2_status_describe (st),
                 detail != NULL ? ": " : "", detail != NULL ? detail : "");
    return -1;
  }
  return st;
}

static Sam2QuantLinear *
quantize_layer (Sam2Calibrator *c, const Sam2Linear *l, const Sam2LayerStats *st, const float *s,
                gboolean folded, Sam2LayerReport *rep, GError **error)
{
  const Sam2Recipe *r = c->recipe;
  const int n = l->out_features, k = l->in_features;
  Sam2QuantLinear *q = sam2_quant_linear_new ();
  float *w = smoothed_weight (l, s);           /* the smoothed weight */
  float *res = NULL;                           /* what the 4-bit codes represent */
  gboolean ok = TRUE;

  q->act = act_mode_for (c, l);
  static_act_params (st, s, q);
  if (s != NULL && !folded)
    q->smooth_inv = smooth_inverse (s, k);

  sam2_w4_init (&q->w, n, k, r->wgts.group_size, r->wgts.dtype);
  const int slice = lowrank_slice_rows (c, l);
  const int rank = r->low_rank.rank > 0 ? sam2_lowrank_total_rank (n, k, r->low_rank.rank, slice) : 0;
  res = g_memdup2 (w, sizeof (float) * n * k);
  if (rank > 0 && !r->low_rank.compensate) {
    q->rank = rank;
    q->lora_up = g_new (float, (size_t) n * rank);
    q->lora_down = g_new (float, (size_t) rank * k);
    ok = sam2_lowrank_factor (w, n, k, r->low_rank.rank, slice, q->lora_up, q->lora_down, error);
    if (ok)
      sam2_lowrank_residual (w, n, k, q->lora_up, q->lora_down, rank, res);
  }
  if (ok) {
    choose_weight_params (&q->w, res, st, s, &r->wgts);
    if (r->wgts.gptq) {
      double *h = smoothed_hessian (st, s);
      for (int c = 0; c < k; c++)   /* sam2_w4_quantize_gptq_on's dead channels */
        rep->dead_channels += h[(size_t) c * k + c] == 0.0;
      Sam2Backend *dev = c->session->backend;
      ok = sam2_w4_quantize_gptq_on (&q->w, res, h, &r->wgts,
                                     dev->ops->gptq_solve != NULL ? device_gptq : NULL, dev,
                                     error);
      g_free (h);
    } else {
      sam2_w4_quantize_rtn (&q->w, res);
    }
  }
  if (ok && rank > 0 && r->low_rank.compensate) {
    /* the branch carries what the 4-bit codes missed */
    float *deq = g_new (float, (size_t) n * k);
    sam2_w4_dequantize (&q->w, deq);
    for (size_t i = 0; i < (size_t) n * k; i++)
      deq[i] = w[i] - deq[i];
    q->rank = rank;
    q->lora_up = g_new (float, (size_t) n * rank);
    q->lora_down = g_new (float, (size_t) rank * k);
    ok = sam2_lowrank_factor (deq, n, k, r->low_rank.rank, slice, q->lora_up, q->lora_down, error);
    g_free (deq);
  }
  if (ok) {
    rep->rank = q->rank;
    float *yf = float_outputs (l, st->samples, st->n_samples);
    rep->error = layer_error (l, q, st->samples, st->n_samples, folded ? s : NULL, yf);
    rep->rtn_error = rtn_error (c, l, st, s, folded, yf);
    g_free (yf);
    /* a layer the file could not hold, or one that computes NaN, ends the run here rather than
     * in a file that does not load or a model that segments nothing */
    ok = sam2_qmodel_layer_check (l->name, q, error);
    if (ok && st->n_samples > 0 && isnan (rep->error)) {   /* no samples: NaN, nothing measured */
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "%s: the quantized layer's outputs on the calibration samples are not numbers; "
                   "the calibration statistics or the model's weights are out of range: calibrate "
                   "again without the statistics cache", l->name);
      ok = FALSE;
    }
  } else {
    g_prefix_error (error, "%s: ", l->name);
  }
  g_free (w);
  g_free (res);
  if (!ok) {
    sam2_quant_linear_free (q);
    return NULL;
  }
  return q;
}

/* ---- smoothing groups ---- */

typedef struct {
  const Sam2Linear *members[2];
  int n_members;
  const Sam2LayerNorm *norm;   /* producing the shared input, or NULL */
  char *norm_name;
  float *s;                    /* (k) or NULL: not smoothed */
  double alpha;
} SmoothGroup;

static void
group_free (gpointer p)
{
  SmoothGroup *g = p;
  g_free (g->norm_name);
  g_free (g->s);
  g_free (g);
}

static GPtrArray *
smoothing_groups (Sam2Calibrator *c)
{
  const Sam2Model *m = c->model;
  GPtrArray *groups = g_ptr_array_new_with_free_func (group_free);
  GHashTable *grouped = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (int i = 0; i < m->n_blocks; i++) {
    const Sam2HieraBlock *b = &m->blocks[i];
    SmoothGroup *g1 = g_new0 (SmoothGroup, 1), *g2 = g_new0 (SmoothGroup, 1);
    g1->members[g1->n_members++] = &b->qkv;
    if (b->has_skip_proj)
      g1->members[g1->n_members++] = &b->skip_proj;
    g1->norm = &b->norm1;
    g1->norm_name = g_strdup_printf ("vision_encoder.backbone.blocks.%d.layer_norm1", i);
    g2->members[g2->n_members++] = &b->mlp.layers[0];
    g2->norm = &b->norm2;
    g2->norm_name = g_strdup_printf ("vision_encoder.backbone.blocks.%d.layer_norm2", i);
    g_ptr_array_add (groups, g1);
    g_ptr_array_add (groups, g2);
    for (int j = 0; j < g1->n_members; j++)
      g_hash_table_add (grouped, (gpointer) g1->members[j]);
    g_hash_table_add (grouped, (gpointer) g2->members[0]);
  }
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    if (g_hash_table_contains (grouped, l))
      continue;
    SmoothGroup *g = g_new0 (SmoothGroup, 1);
    g->members[g->n_members++] = l;
    g_ptr_array_add (groups, g);
  }
  g_hash_table_unref (grouped);
  return groups;
}

/* yf: each member's float_outputs on its samples (NULL for a member not quantized). */
static double
group_error (Sam2Calibrator *c, const SmoothGroup *g, const float *s, gboolean folded,
             float *const *yf)
{
  double e = 0.0;
  for (int i = 0; i < g->n_members; i++) {
    const Sam2LayerStats *st = sam2_observers_get (c->obs, g->members[i]);
    if (st != NULL)
      e += rtn_error (c, g->members[i], st, s, folded, yf[i]);
  }
  return e;
}

/* Scales for a group, or none (NULL) when smoothing does not apply to it. FALSE when the search
 * finds no strength with a finite output error (nothing to choose by). */
static gboolean
smooth_group (Sam2Calibrator *c, SmoothGroup *g, GError **error)
{
  const Sam2SmoothRecipe *sr = &c->recipe->smooth;
  g->alpha = NAN;
  if (!sr->enabled || c->recipe->ipts.dtype == SAM2_QTYPE_NONE)
    return TRUE;
  /* the statistics of a quantized member describe the shared input */
  const Sam2LayerStats *st = NULL;
  for (int i = 0; i < g->n_members && st == NULL; i++)
    st = sam2_observers_get (c->obs, g->members[i]);
  if (st == NULL)
    return TRUE;
  const int k = st->k;
  const float *weights[2];
  int rows[2];
  for (int i = 0; i < g->n_members; i++) {
    weights[i] = g->members[i]->weight;
    rows[i] = g->members[i]->out_features;
  }
  const gboolean folded = sr->fold && g->norm != NULL;
  g->s = g_new (float, k);
  if (!sr->search) {
    g->alpha = sr->alpha;
    sam2_smooth_scales (st->absmax, k, weights, rows, g->n_members, sr->alpha, g->s);
    return TRUE;
  }
  float *trial = g_new (float, k);
  float *yf[G_N_ELEMENTS (g->members)] = { NULL };
  for (int i = 0; i < g->n_members; i++) {
    const Sam2LayerStats *mst = sam2_observers_get (c->obs, g->members[i]);
    if (mst != NULL)
      yf[i] = float_outputs (g->members[i], mst->samples, mst->n_samples);
  }
  double best = INFINITY;
  for (int i = 0; i <= sr->grid; i++) {
    const double alpha = (double) i / sr->grid;
    sam2_smooth_scales (st->absmax, k, weights, rows, g->n_members, alpha, trial);
    const double e = group_error (c, g, trial, folded, yf);
    if (e < best) {
      best = e;
      g->alpha = alpha;
      memcpy (g->s, trial, sizeof (float) * k);
    }
  }
  for (int i = 0; i < g->n_members; i++)
    g_free (yf[i]);
  g_free (trial);
  if (isnan (g->alpha)) {
    /* g->s was never filled */
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "%s: the smoothing search found no strength with a finite output error on the "
                 "%d calibration samples kept for it; calibrate again (without the cache) or "
                 "set a fixed smooth.alpha", g->members[0]->name, st->n_samples);
    return FALSE;
  }
  return TRUE;
}

/* LayerNorm weight and bias divided by s: the norm then outputs x / s. */
static void
fold_into_norm (Sam2QuantPlan *plan, const SmoothGroup *g)
{
  const int k = g->norm->dim;
  float *w = g_new (float, k), *b = g_new (float, k);
  for (int j = 0; j < k; j++) {
    w[j] = g->norm->weight[j] / g->s[j];
    b[j] = g->norm->bias[j] / g->s[j];
  }
  g_hash_table_insert (plan->overrides, g_strconcat (g->norm_name, ".weight", NULL), w);
  g_hash_table_insert (plan->overrides, g_strconcat (g->norm_name, ".bias", NULL), b);
}

/* s as a JSON string literal, quotes included and escaped as JSON needs. */
static char *
json_string (const char *s)
{
  JsonNode *node = json_node_init_string (json_node_alloc (), s);
  char *text = json_to_string (node, FALSE);
  json_node_unref (node);
  return text;
}

static char *
provenance (Sam2Calibrator *c)
{
  const char *digest = calibrator_model_digest (c);
  char *source = json_string (c->model->name);   /* a path or hub reference: any characters */
  GDateTime *now = g_date_time_new_now_utc ();
  char *date = g_date_time_format_iso8601 (now);
  char *json = g_strdup_printf ("{\"source_model\": %s, \"source_digest\": \"sha256:%s\", "
                                "\"calibration_frames\": %d, \"calibration_digest\": \"sha256:%s\", "
                                "\"statistics_from_cache\": %s, \"tool\": \"%s\", \"created\": \"%s\"}",
                                source, digest, sam2_calibrator_get_n_frames (c),
                                g_checksum_get_string (c->frames_digest),
                                c->from_cache ? "true" : "false", SAM2_VERSION_STRING, date);
  g_free (source);
  g_free (date);
  g_date_time_unref (now);
  return json;
}

Sam2Model *
sam2_calibrator_quantize (Sam2Calibrator *c, Sam2ProgressFunc progress, gpointer user_data,
                          GError **error)
{
  return sam2_calibrator_quantize_cancellable (c, progress, user_data, NULL, error);
}

Sam2Model *
sam2_calibrator_quantize_cancellable (Sam2Calibrator *c, Sam2ProgressFunc progress,
                                      gpointer user_data, GCancellable *cancellable,
                                      GError **error)
{
  sam2_threads_apply ();
  if (!encode_pending (c, error))
    return NULL;
  if (sam2_calibrator_get_n_frames (c) == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "no calibration frames: add at least one frame (128 recommended) before "
                 "quantizing");
    return NULL;
  }
  if (!c->from_cache && !sam2_observers_sync (c->obs, error))
    return NULL;
  if (c->cache_path != NULL && !c->from_cache) {
    GError *local = NULL;
    c->cached = sam2_observers_save (c->obs, c->cache_path, &local);
    if (!c->cached) {
      g_warning ("could not write the calibration cache: %s", local->message);
      g_error_free (local);
    }
  }
  g_ptr_array_set_size (c->report, 0);
  Sam2QuantPlan *plan = sam2_quant_plan_new ();
  GPtrArray *groups = smoothing_groups (c);
  int total = 0, done = 0;
  for (guint i = 0; i < c->model->linears->len; i++)
    total += sam2_recipe_quantizes (c->recipe, c->model, c->model->linears->pdata[i]);

  /* cancellation points: before each group's smoothing and each layer's quantization (the
   * units of work, up to seconds each for the large checkpoints), and before the assembly */
  gboolean ok = TRUE;
  for (guint gi = 0; ok && gi < groups->len; gi++) {
    SmoothGroup *g = groups->pdata[gi];
    if (g_cancellable_set_error_if_cancelled (cancellable, error)
        || !smooth_group (c, g, error)) {
      ok = FALSE;
      break;
    }
    const gboolean folded = g->s != NULL && c->recipe->smooth.fold && g->norm != NULL;
    if (folded)
      fold_into_norm (plan, g);
    for (int i = 0; ok && i < g->n_members; i++) {
      const Sam2Linear *l = g->members[i];
      const Sam2LayerStats *st = sam2_observers_get (c->obs, l);
      if (st == NULL) {
        /* a float member of a folded group reads x / s too: give it W s */
        if (folded)
          g_hash_table_insert (plan->overrides, g_strconcat (l->name, ".weight", NULL),
                               smoothed_weight (l, g->s));
        continue;
      }
      if (g_cancellable_set_error_if_cancelled (cancellable, error)) {
        ok = FALSE;
        break;
      }
      Sam2LayerReport *rep = g_new0 (Sam2LayerReport, 1);
      rep->name = g_strdup (l->name);
      rep->n = l->out_features;
      rep->k = l->in_features;
      rep->alpha = g->alpha;
      rep->folded = folded;
      Sam2QuantLinear *q = quantize_layer (c, l, st, g->s, folded, rep, error);
      if (q == NULL) {
        report_free (rep);
        ok = FALSE;
        break;
      }
      g_hash_table_insert (plan->layers, g_strdup (l->name), q);
      g_ptr_array_add (c->report, rep);
      if (progress != NULL)
        progress (user_data, "quantizing", ++done, total, l->name, rep->error);
    }
  }
  g_ptr_array_unref (groups);
  Sam2Model *qm = NULL;
  if (ok && !g_cancellable_set_error_if_cancelled (cancellable, error)) {
    plan->keep_float32 = c->recipe->skips.keep_float32;
    plan->recipe_yaml = sam2_recipe_to_yaml (c->recipe);
    plan->provenance_json = provenance (c);
    qm = sam2_qmodel_build (c->model, plan, error);
  }
  sam2_quant_plan_free (plan);
  return qm;
}

/* ---- public model helpers ---- */

gboolean
sam2_model_is_quantized (const Sam2Model *model)
{
  return model->quantized;
}

gboolean
sam2_model_save (const Sam2Model *model, const char *path, GError **error)
{
  if (!model->quantized) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "%s is a float model; only quantized models are written by sam2-gst (float "
                 "models stay in their HF checkpoint)", model->name);
    return FALSE;
  }
  /* the directory is made here, not when the run checked it, and removed again (what this call
   * made of it) if the write fails: a failed run leaves nothing behind */
  char *dir = g_path_get_dirname (path), *created = NULL;
  gboolean ok = sam2_output_dir_create (dir, &created, error)
                && sam2_qmodel_save (model, path, error);
  if (!ok)
    sam2_output_dir_remove_created (dir, created);
  g_free (created);
  g_free (dir);
  return ok;
}

gboolean
sam2_calibrator_statistics_cached (const Sam2Calibrator *c)
{
  return c->cached;
}
