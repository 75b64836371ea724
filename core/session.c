/* session.c: per-stream state and the public image / prompt API. */
#include "session.h"
#include "threads.h"
#ifdef SAM2_HAVE_CUDA
#include "backend-cuda.h"
#endif

#include <math.h>
#include <stdarg.h>
#include <string.h>

static gboolean
check_status (Sam2Session *s, int status, const char *what, GError **error)
{
  if (status == SAM2_STATUS_OK)
    return TRUE;
  const char *detail = s->backend->ops->status_detail != NULL
                       ? s->backend->ops->status_detail (s->backend) : NULL;
  char *extra = detail != NULL ? g_strdup_printf (" (%s)", detail) : NULL;
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND, "%s failed on the %s backend: %s%s", what,
               s->backend->ops->name, sam2_status_describe (status), extra != NULL ? extra : "");
  g_free (extra);
  return FALSE;
}

/* ---- allocation ------------------------------------------------------------------------------ */

typedef struct {
  Sam2Session *s;
  gboolean failed;
} Allocator;

static float *
balloc (Allocator *a, size_t n)
{
  if (a->failed)
    return NULL;
  float *p = a->s->backend->ops->alloc (a->s->backend, n);
  if (p == NULL)
    a->failed = TRUE;
  return p;
}

static void
bfree (Sam2Session *s, float **p)
{
  if (*p != NULL)
    s->backend->ops->free (s->backend, *p);
  *p = NULL;
}

/* Host staging buffers (what upload reads and download writes): the backend's fastest host
 * memory where it has some (backend.h's host_alloc). NULL on failure. */
static float *
host_staging_alloc (Sam2Session *s, size_t n)
{
  const Sam2BackendOps *o = s->backend->ops;
  return o->host_alloc != NULL ? o->host_alloc (s->backend, n) : g_try_new (float, MAX (n, 1));
}

static void
host_staging_free (Sam2Session *s, float **p)
{
  const Sam2BackendOps *o = s->backend->ops;
  if (*p != NULL) {
    if (o->host_free != NULL)
      o->host_free (s->backend, *p);
    else
      g_free (*p);
  }
  *p = NULL;
}

static size_t
mlp_max_width (const Sam2Mlp *mlp)
{
  size_t w = 0;
  for (int i = 0; i < mlp->n_layers; i++)
    w = MAX (w, (size_t) mlp->layers[i].out_features);
  return w;
}

/* A buffer that is a part of a shared scratch: where its pointer goes, and its floats. */
typedef struct {
  float **buf;
  size_t n;
} ScratchPart;

#define DECODER_CALL_PARTS 15

/* The mask decoder's buffers whose contents live within one decode call (keys_pe also within the
 * image side's preparation, after the neck): the image keys' passes through the two-way
 * transformer, a mask prompt's embedding, the upscaling's maps and the masks, which the call
 * reads back before it returns. Parts of the encoder's scratch, which holds nothing between
 * encoder passes, and no encoder pass runs within a decode call. */
static void
decoder_call_parts (Sam2Session *s, ScratchPart parts[DECODER_CALL_PARTS])
{
  const Sam2Model *m = s->model;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, nmt = m->n_mask_tokens;
  const size_t HW = (size_t) m->feat_h[2] * m->feat_w[2];
  const size_t ms2 = (size_t) m->mask_size * m->mask_size;
  const int mic4 = m->mask_norm1.dim;
  const ScratchPart p[DECODER_CALL_PARTS] = {
    { &d->keys, HW * C },
    { &d->keys_pe, HW * C },
    { &d->big_q, HW * C },
    { &d->big_k, HW * C },
    { &d->big_v, HW * C },
    { &d->big_o, HW * C },
    { &d->dense, HW * C },
    { &d->mask_cols, ms2 * MAX (1, mic4) / 4 + ms2 },
    { &d->mask_a, ms2 / 4 * mic4 },
    { &d->mask_b, ms2 / 16 * m->mask_norm2.dim },
    /* wide enough for the upscaling's first layer stacked with the final attention's v */
    { &d->up1_cols, HW * (m->upscale1.out_features + m->final_attn.v_proj.out_features) },
    { &d->up1, 4 * HW * (C / 4) },
    { &d->up2_cols, 4 * HW * m->upscale2.out_features },
    { &d->up2, 16 * HW * (C / 8) },
    { &d->masks, (size_t) nmt * 16 * HW },
  };
  memcpy (parts, p, sizeof p);
}

static void
alloc_encoder (Sam2Session *s, Allocator *a)
{
  const Sam2Model *m = s->model;
  const Sam2HieraConfig *c = &m->config.vision.backbone;
  const size_t tokens = (size_t) m->patch_h * m->patch_w;
  const int F = m->config.vision.fpn_hidden_size;
  const size_t B = (size_t) s->max_batch;

  s->pixels = balloc (a, B * sam2_model_image_floats (m));
  s->pos_embed_dev = balloc (a, tokens * c->hidden_size);
  s->no_memory_dev = balloc (a, F);
  for (int st = 0; st < m->n_stages; st++)
    s->stage_x[st] = balloc (a, B * m->stage_h[st] * m->stage_w[st] * m->stage_dim[st]);

  /* One scratch for the three phases of an encoder pass, which never overlap in time: the patch
   * embedding's im2col (before the blocks), the blocks' temporaries, and the neck's maps by
   * level with its im2col (after the blocks; the decoder reads only s->features); and for the
   * decoder's temporaries of a decode call, between passes (decoder_call_parts). Tiny at 1024,
   * one image: the blocks' 204 MiB (hiera.c's layout; 102 MiB in FP16 on a GPU), which the
   * im2col's 37 MiB, the neck's 85 MiB and the decoder's 57 MiB fit inside. Parts start 256
   * bytes apart. */
  const size_t patch_cols = tokens * m->patch_embed.in_features;
  const size_t blocks = sam2_hiera_scratch_floats (m, s->backend, s->max_batch, FALSE);
  size_t fpn_at[SAM2_MAX_STAGES], neck_end = 0, neck_cols = 0;
  for (int st = 0; st < m->n_stages; st++) {
    const size_t hw = (size_t) m->stage_h[st] * m->stage_w[st];
    fpn_at[st] = neck_end;
    neck_end = sam2_scratch_part_end (neck_end, B * hw * F);
    if (m->neck_kernel > 1)
      neck_cols = MAX (neck_cols, hw * m->neck_conv[m->n_stages - 1 - st].in_features);
  }
  const size_t neck_cols_at = neck_end;
  neck_end += neck_cols;
  ScratchPart dec[DECODER_CALL_PARTS];
  size_t dec_at[DECODER_CALL_PARTS], dec_end = 0;
  decoder_call_parts (s, dec);
  for (int i = 0; i < DECODER_CALL_PARTS; i++) {
    dec_at[i] = dec_end;
    dec_end = sam2_scratch_part_end (dec_end, dec[i].n);
  }
  s->block_scratch_floats = MAX (MAX (patch_cols, blocks), MAX (neck_end, dec_end));
  s->observed_scratch_floats = sam2_hiera_scratch_floats (m, s->backend, s->max_batch, TRUE);
  s->block_scratch = balloc (a, s->block_scratch_floats);
  if (s->block_scratch != NULL) {
    s->patch_cols = s->block_scratch;
    for (int st = 0; st < m->n_stages; st++)
      s->fpn[st] = s->block_scratch + fpn_at[st];
    s->neck_cols = neck_cols > 0 ? s->block_scratch + neck_cols_at : NULL;
    for (int i = 0; i < DECODER_CALL_PARTS; i++)
      *dec[i].buf = s->block_scratch + dec_at[i];
  }
  for (int l = 0; l < 3; l++) {
    const size_t n = (size_t) m->feat_h[l] * m->feat_w[l] * m->feat_c[l];
    s->features[l] = balloc (a, n);
    if (B > 1)
      s->batch_features[l] = balloc (a, B * n);
  }
}

int
sam2_session_block_scratch (Sam2Session *s, float **scratch)
{
  *scratch = s->block_scratch;
  if (s->observer == NULL)
    return SAM2_STATUS_OK;
  /* the blocks' part of an observed pass; the neck's and the patch embedding's are the same */
  if (s->observed_scratch_floats <= s->block_scratch_floats)
    return SAM2_STATUS_OK;
  if (s->observed_scratch == NULL)
    s->observed_scratch = s->backend->ops->alloc (s->backend, s->observed_scratch_floats);
  *scratch = s->observed_scratch;
  return s->observed_scratch != NULL ? SAM2_STATUS_OK : SAM2_STATUS_OUT_OF_MEMORY;
}

static void
alloc_decoder (Sam2Session *s, Allocator *a)
{
  const Sam2Model *m = s->model;
  Sam2DecoderBuffers *d = &s->dec;
  const int C = m->decoder_dim, nmt = m->n_mask_tokens;
  const size_t HW = (size_t) m->feat_h[2] * m->feat_w[2];
  const size_t ms2 = (size_t) m->mask_size * m->mask_size;
  const int T = 2 + nmt + sam2_prompt_encoder_max_tokens (SAM2_MAX_POINTS_PER_OBJECT);
  d->max_tokens = T;

  d->tokens = balloc (a, (size_t) T * C);
  d->token_pe = balloc (a, (size_t) T * C);
  d->tmp_tokens = balloc (a, (size_t) T * C);
  d->q_small = balloc (a, (size_t) T * C);
  d->k_small = balloc (a, (size_t) T * C);
  d->v_small = balloc (a, (size_t) T * C);
  d->o_small = balloc (a, (size_t) T * C);
  d->qkv_small = balloc (a, (size_t) T * 3 * C);
  /* the first two-way block's image side, computed once per image */
  const int dt = m->n_two_way > 0 ? m->two_way[0].cross_token_to_image.internal_dim : 1;
  const int di = m->n_two_way > 0 ? m->two_way[0].cross_image_to_token.internal_dim : 1;
  d->image_keys = balloc (a, HW * C);
  d->image_k = balloc (a, HW * dt);
  d->image_v = balloc (a, HW * dt);
  d->image_q = balloc (a, HW * di);
  /* keys, keys_pe, big_*, dense, mask_*, up*, masks: parts of the encoder's scratch
   * (decoder_call_parts, alloc_encoder) */
  d->hyper = balloc (a, (size_t) nmt * (C / 8));
  size_t widest = mlp_max_width (&m->iou_head);
  widest = MAX (widest, mlp_max_width (&m->obj_score_head));
  for (int i = 0; i < nmt; i++)
    widest = MAX (widest, mlp_max_width (&m->hyper_mlps[i]));
  for (int l = 0; l < m->n_two_way; l++)
    widest = MAX (widest, mlp_max_width (&m->two_way[l].mlp));
  d->head_a = balloc (a, (size_t) T * widest);
  d->head_b = balloc (a, (size_t) T * widest);
  d->obj_offset = (MAX (nmt, 1) + 63) / 64 * 64;
  d->head_out = balloc (a, (size_t) d->obj_offset + 1);
  d->mask_input = balloc (a, ms2);
  d->host_sparse = g_new (float, (size_t) T * C);
  d->host_tokens = host_staging_alloc (s, (size_t) T * C);
  d->host_iou = host_staging_alloc (s, (size_t) d->obj_offset + 1);
  a->failed = a->failed || d->host_tokens == NULL || d->host_iou == NULL;
  s->image_pe = balloc (a, HW * C);
  s->no_mask_dev = balloc (a, C);
}

static void
free_buffers (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2DecoderBuffers *d = &s->dec;
  bfree (s, &s->pixels);
  bfree (s, &s->pos_embed_dev);
  bfree (s, &s->no_memory_dev);
  for (int st = 0; st < m->n_stages; st++) {
    bfree (s, &s->stage_x[st]);
    s->fpn[st] = NULL;           /* parts of block_scratch (alloc_encoder) */
  }
  s->patch_cols = NULL;
  s->neck_cols = NULL;
  bfree (s, &s->block_scratch);
  bfree (s, &s->observed_scratch);
  for (int l = 0; l < 3; l++) {
    bfree (s, &s->features[l]);
    bfree (s, &s->batch_features[l]);
  }
  ScratchPart parts[DECODER_CALL_PARTS];
  decoder_call_parts (s, parts);
  for (int i = 0; i < DECODER_CALL_PARTS; i++)
    *parts[i].buf = NULL;
  float **dec[] = { &d->tokens, &d->token_pe, &d->tmp_tokens, &d->q_small, &d->k_small,
                    &d->v_small, &d->o_small, &d->qkv_small, &d->image_keys, &d->image_k,
                    &d->image_v, &d->image_q, &d->hyper, &d->head_a, &d->head_b, &d->head_out,
                    &d->mask_input, &s->image_pe, &s->no_mask_dev };
  for (size_t i = 0; i < G_N_ELEMENTS (dec); i++)
    bfree (s, dec[i]);
  g_clear_pointer (&d->host_sparse, g_free);
  host_staging_free (s, &d->host_tokens);
  host_staging_free (s, &d->host_iou);
  host_staging_free (s, &s->host_pixels);
  for (int l = 0; l < 3; l++)
    host_staging_free (s, &s->host_features[l]);
  host_staging_free (s, &s->res_lowres);
}

/* Constants the forward passes read from backend memory, uploaded once. */
static int
upload_constants (Sam2Session *s)
{
  const Sam2Model *m = s->model;
  Sam2Backend *b = s->backend;
  const int C = m->decoder_dim;
  const size_t HW = (size_t) m->feat_h[2] * m->feat_w[2];
  int st = b->ops->upload (b, s->pos_embed_dev, m->pos_embed,
                           (size_t) m->patch_h * m->patch_w * m->config.vision.backbone.hidden_size);
  if (st == SAM2_STATUS_OK)
    st = b->ops->upload (b, s->no_memory_dev, m->no_memory_embedding,
                         m->config.vision.fpn_hidden_size);
  if (st == SAM2_STATUS_OK)
    st = b->ops->upload (b, s->no_mask_dev, m->no_mask_embed, C);
  if (st == SAM2_STATUS_OK) {
    float *pe = g_new (float, HW * C);
    sam2_prompt_encoder_image_pe (m, pe);
    st = b->ops->upload (b, s->image_pe, pe, HW * C);
    g_free (pe);
  }
  return st;
}

/* ---- backend selection ----------------------------------------------------------------------- */

static const char *const backend_names[] = { "auto", "cpu", "cuda" };
static const char *const precision_names[] = { "auto", "fp32", "fp16", "bf16" };

const char *
sam2_backend_kind_to_string (Sam2BackendKind kind)
{
  return (guint) kind < G_N_ELEMENTS (backend_names) ? backend_names[kind] : "unknown";
}

const char *
sam2_precision_to_string (Sam2Precision precision)
{
  return (guint) precision < G_N_ELEMENTS (precision_names) ? precision_names[precision]
                                                            : "unknown";
}

/* The index of `name` (any case) in `names`, or -1. */
static int
name_index (const char *const *names, guint n_names, const char *name)
{
  for (guint i = 0; i < n_names; i++)
    if (g_ascii_strcasecmp (name, names[i]) == 0)
      return (int) i;
  return -1;
}

gboolean
sam2_session_options_parse (Sam2SessionOptions *options, const char *backend,
                            const char *precision, GError **error)
{
  g_return_val_if_fail (options != NULL, FALSE);
  if (backend != NULL) {
    const int i = name_index (backend_names, G_N_ELEMENTS (backend_names), backend);
    if (i < 0) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "unknown backend '%s': use auto, cpu or cuda", backend);
      return FALSE;
    }
    options->backend = (Sam2BackendKind) i;
  }
  if (precision != NULL) {
    const int i = name_index (precision_names, G_N_ELEMENTS (precision_names), precision);
    if (i < 0) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "unknown precision '%s': use auto, fp32, fp16 or bf16", precision);
      return FALSE;
    }
    options->precision = (Sam2Precision) i;
  }
  return TRUE;
}

gboolean
sam2_backend_available (Sam2BackendKind kind, GError **error)
{
  if (kind != SAM2_BACKEND_CUDA)
    return TRUE;
#ifdef SAM2_HAVE_CUDA
  return sam2_backend_cuda_probe (error);
#else
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
               "this build has no CUDA backend: configure with -Dcuda=enabled (needs nvcc, the "
               "CUDA runtime and cuBLAS), or use the CPU backend");
  return FALSE;
#endif
}

/* The backend AUTO stands for: the environment variable SAM2_BACKEND when set, else CUDA when
 * the build has it and a device is present, else the CPU. */
static gboolean
resolve_backend (Sam2BackendKind *kind, GError **error)
{
  const char *env = g_getenv ("SAM2_BACKEND");
  if (*kind == SAM2_BACKEND_AUTO && env != NULL && *env != '\0') {
    Sam2SessionOptions from_env = SAM2_SESSION_OPTIONS_INIT;
    if (!sam2_session_options_parse (&from_env, env, NULL, error)) {
      g_prefix_error (error, "environment variable SAM2_BACKEND: ");
      return FALSE;
    }
    *kind = from_env.backend;
  }
  if (*kind == SAM2_BACKEND_AUTO)
    *kind = sam2_backend_available (SAM2_BACKEND_CUDA, NULL) ? SAM2_BACKEND_CUDA
                                                             : SAM2_BACKEND_CPU;
  return TRUE;
}

gboolean
sam2_precision_available (Sam2BackendKind kind, Sam2Precision precision, GError **error)
{
  if (!resolve_backend (&kind, error) || !sam2_backend_available (kind, error))
    return FALSE;
  return kind != SAM2_BACKEND_CPU || sam2_backend_cpu_supports (precision, error);
}

/* Resolves AUTO and makes the backend; an explicit request that cannot be met is an error, never
 * a quiet fallback to another backend or precision. */
static Sam2Backend *
make_backend (const Sam2SessionOptions *o, gboolean quantized, Sam2BackendKind *kind,
              Sam2Precision *precision, char **description, GError **error)
{
  Sam2BackendKind k = o->backend;
  if (!resolve_backend (&k, error))
    return NULL;
  /* AUTO precision is what a float checkpoint holds, FP32; a quantized model's float layers are
   * 16-bit in its file, so on CUDA they and attention run FP16 (sam2.h) */
  Sam2Precision p = o->precision;
  if (p == SAM2_PRECISION_AUTO)
    p = quantized && k == SAM2_BACKEND_CUDA ? SAM2_PRECISION_FP16 : SAM2_PRECISION_FP32;
  *kind = k;
  *precision = p;
  if (k == SAM2_BACKEND_CPU) {
    Sam2Backend *b = sam2_backend_cpu_new_full (p, error);
    if (b == NULL) {
      if (error != NULL && *error != NULL) {
        char *hint = g_strconcat ((*error)->message, "; use precision auto or fp32, or backend "
                                  "cuda", NULL);
        g_free ((*error)->message);
        (*error)->message = hint;
      }
      return NULL;
    }
    *description = g_strdup_printf ("cpu %s%s", quantized ? "w4a8 + " : "",
                                    sam2_precision_to_string (p));
    return b;
  }
  if (k != SAM2_BACKEND_CUDA) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT, "unknown backend %d", (int) k);
    return NULL;
  }
#ifdef SAM2_HAVE_CUDA
  /* sam2_backend_cuda_new probes for a device itself and fails with the probe's error */
  Sam2Backend *b = sam2_backend_cuda_new (p, error);
  if (b != NULL)
    *description = g_strdup_printf ("cuda %s%s, %s", quantized ? "w4a8 + " : "",
                                    sam2_precision_to_string (p),
                                    sam2_backend_cuda_device_name (b));
  return b;
#else
  sam2_backend_available (SAM2_BACKEND_CUDA, error);   /* FALSE: says this build has no CUDA */
  return NULL;
#endif
}

Sam2Session *
sam2_session_new (Sam2Model *model, GError **error)
{
  return sam2_session_new_full (model, NULL, error);
}

Sam2Session *
sam2_session_new_full (Sam2Model *model, const Sam2SessionOptions *options, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  static const Sam2SessionOptions defaults = SAM2_SESSION_OPTIONS_INIT;
  if (options == NULL)
    options = &defaults;
  if (options->max_batch < 0 || options->max_batch > SAM2_SESSION_MAX_BATCH) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "max_batch %d: a session encodes 1 to %d images per pass", options->max_batch,
                 SAM2_SESSION_MAX_BATCH);
    return NULL;
  }
  Sam2BackendKind kind;
  Sam2Precision precision;
  char *description = NULL;
  Sam2Backend *backend = make_backend (options, sam2_model_is_quantized (model), &kind, &precision,
                                      &description, error);
  if (backend == NULL)
    return NULL;

  Sam2Session *s = g_new0 (Sam2Session, 1);
  s->model = sam2_model_ref (model);
  s->max_batch = MAX (options->max_batch, 1);
  s->slot_size = g_malloc0_n ((gsize) s->max_batch, sizeof *s->slot_size);
  s->linear_images = 1;
  s->backend = backend;
  s->backend_kind = kind;
  s->precision = precision;
  s->backend_description = description;

  Allocator a = { .s = s };
  alloc_encoder (s, &a);
  alloc_decoder (s, &a);
  sam2_decoder_stacks_build (s);
  /* a device's frames are staged on the host when it does not resize them itself; host memory
   * takes them straight into its input (stage_frame) */
  gboolean host_ok = TRUE;
  if (backend->ops->device_memory) {
    s->host_pixels = host_staging_alloc (s, (size_t) s->max_batch * 3 * model->image_size
                                               * model->image_size);
    host_ok = s->host_pixels != NULL;
  }
  /* features handed to callers must be host memory: staged through download on a device */
  for (int l = 0; l < 3 && backend->ops->device_memory; l++) {
    s->host_features[l] = host_staging_alloc (s, (size_t) model->feat_h[l] * model->feat_w[l]
                                                    * model->feat_c[l]);
    host_ok = host_ok && s->host_features[l] != NULL;
  }
  int max_q = 1, max_k = 1;
  for (int i = 0; i < model->n_blocks; i++) {
    max_q = MAX (max_q, model->blocks[i].len_q);
    max_k = MAX (max_k, model->blocks[i].len_k);
  }
  const int HW = model->feat_h[2] * model->feat_w[2];
  max_q = MAX (max_q, HW);
  max_k = MAX (max_k, HW);
  if (a.failed || !host_ok
      || s->backend->ops->reserve_attention (s->backend, max_q, max_k) != SAM2_STATUS_OK) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "not enough memory for a %dx%d session of this model on the %s backend%s",
                 model->image_size, model->image_size, s->backend->ops->name,
                 s->max_batch > 1 ? " with this max_batch; try fewer images per pass" : "");
    sam2_session_free (s);
    return NULL;
  }
  if (!check_status (s, upload_constants (s), "uploading the model constants", error)) {
    sam2_session_free (s);
    return NULL;
  }
  return s;
}

Sam2BackendKind
sam2_session_get_backend (const Sam2Session *s)
{
  g_return_val_if_fail (s != NULL, SAM2_BACKEND_AUTO);
  return s->backend_kind;
}

Sam2Precision
sam2_session_get_precision (const Sam2Session *s)
{
  g_return_val_if_fail (s != NULL, SAM2_PRECISION_AUTO);
  return s->precision;
}

const char *
sam2_session_describe_backend (const Sam2Session *s)
{
  g_return_val_if_fail (s != NULL, NULL);
  return s->backend_description;
}

void
sam2_session_free (Sam2Session *s)
{
  if (s == NULL)
    return;
  free_buffers (s);
  sam2_backend_free (s->backend);
  sam2_resampler_free (s->resampler);
  g_free (s->slot_size);
  sam2_decoder_stacks_clear (s);
  g_free (s->backend_description);
  g_free (s->res_iou);
  g_free (s->res_obj);
  g_free (s->res_masks);
  g_free (s->res_boxes);
  g_free (s->upsampled);
  g_free (s->scaled_prompts);
  g_free (s->scaled_points);
  g_free (s->mask_prompts);
  sam2_model_unref (s->model);
  g_free (s);
}

void
sam2_session_set_tap (Sam2Session *s, Sam2TapFunc tap, gpointer user_data)
{
  s->tap = tap;
  s->tap_data = user_data;
}

void
sam2_session_set_observer (Sam2Session *s, Sam2LinearObserver observer, gpointer user_data)
{
  sam2_session_set_observer_full (s, observer, user_data, FALSE);
}

void
sam2_session_set_observer_full (Sam2Session *s, Sam2LinearObserver observer, gpointer user_data,
                                gboolean backend_memory)
{
  s->observer = observer;
  s->observer_data = user_data;
  s->observer_backend_memory = backend_memory;
}

int
sam2_session_linear (Sam2Session *s, const Sam2Linear *l, const float *x, int M, float *y,
                     Sam2Act act, const float *residual)
{
  /* a host observer reads x on the host, so it needs a host-memory backend */
  if (s->observer != NULL) {
    if (s->backend->ops->device_memory && !s->observer_backend_memory)
      return SAM2_STATUS_UNSUPPORTED;
    const int images = s->linear_images;
    g_return_val_if_fail (M % images == 0, SAM2_STATUS_UNSUPPORTED);
    const int rows = M / images;
    for (int i = 0; i < images; i++)
      s->observer (s->observer_data, l, x + (size_t) i * rows * l->in_features, rows);
  }
  return s->backend->ops->linear (s->backend, l, x, M, y, act, residual);
}

int
sam2_rows_per_pass (int rows, size_t row_floats, size_t budget)
{
  const size_t most = MAX ((size_t) 128, budget / MAX (row_floats, (size_t) 1));
  if ((size_t) rows <= most)
    return rows;
  const size_t passes = ((size_t) rows + most - 1) / most;
  const size_t chunk = (((size_t) rows + passes - 1) / passes + 127) / 128 * 128;
  return (int) MIN (chunk, (size_t) rows);
}

int
sam2_session_linear_in_passes (Sam2Session *s, const Sam2Linear *l, const float *x, int M,
                               float *y, Sam2Act act, const float *residual)
{
  const int K = l->in_features, N = l->out_features;
  const int chunk = s->observer != NULL ? M
                                        : sam2_rows_per_pass (M, (size_t) K,
                                                              SAM2_LINEAR_PASS_ELEMENTS);
  for (int r0 = 0; r0 < M; r0 += chunk) {
    const int status
      = sam2_session_linear (s, l, x + (size_t) r0 * K, MIN (chunk, M - r0), y + (size_t) r0 * N,
                             act, residual != NULL ? residual + (size_t) r0 * N : NULL);
    if (status != SAM2_STATUS_OK)
      return status;
  }
  return SAM2_STATUS_OK;
}

int
sam2_session_linear_one_image (Sam2Session *s, const Sam2Linear *l, const float *x, int M,
                               float *y, Sam2Act act, const float *residual)
{
  const int images = s->linear_images;
  s->linear_images = 1;
  const int status = sam2_session_linear_in_passes (s, l, x, M, y, act, residual);
  s->linear_images = images;
  return status;
}

/* The backend's one-pass form of what the calling helper does (an optional op of backend.h
 * whose last argument is `gboolean *done`), where it has one and no observer needs to see the
 * layers' inputs: the caller returns the op's status when it failed or ran, and goes on to the
 * separate ops when the backend declined (done FALSE). */
#define TRY_BACKEND_PASS(s, op, ...)                                                            \
  do {                                                                                          \
    Sam2Backend *const pass_b_ = (s)->backend;                                                  \
    if (pass_b_->ops->op != NULL && (s)->observer == NULL) {                                    \
      gboolean pass_done_ = FALSE;                                                              \
      const int pass_status_ = pass_b_->ops->op (pass_b_, __VA_ARGS__, &pass_done_);           \
      if (pass_status_ != SAM2_STATUS_OK || pass_done_)                                         \
        return pass_status_;                                                                    \
    }                                                                                           \
  } while (0)

int
sam2_session_norm_sum_linear (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Linear *l,
                              float *x, const float *addend, int M, Sam2Act act, float *sum_buf,
                              float *y)
{
  Sam2Backend *b = s->backend;
  TRY_BACKEND_PASS (s, norm_sum_linear, n, l, x, addend, M, act, y);
  if (n != NULL) {
    const int status = b->ops->layer_norm (b, n, x, M, x);
    if (status != SAM2_STATUS_OK)
      return status;
  }
  const float *in = x;
  if (addend != NULL) {
    const int status = b->ops->add (b, sum_buf, x, addend, (size_t) M * l->in_features);
    if (status != SAM2_STATUS_OK)
      return status;
    in = sum_buf;
  }
  return sam2_session_linear (s, l, in, M, y, act, NULL);
}

int
sam2_session_norm_linear_pair (Sam2Session *s, const Sam2LayerNorm *n, float *x,
                               const float *addend, int M, float *sum_buf, const Sam2Linear *l1,
                               float *y1, const Sam2Linear *l2, float *y2)
{
  Sam2Backend *b = s->backend;
  g_return_val_if_fail (l1->in_features == l2->in_features, SAM2_STATUS_UNSUPPORTED);
  TRY_BACKEND_PASS (s, norm_linear_pair, n, x, addend, M, l1, y1, l2, y2);
  /* the norm first, so that the sum below can still take the backend's norm_sum_linear */
  int status = n != NULL ? b->ops->layer_norm (b, n, x, M, x) : SAM2_STATUS_OK;
  if (status == SAM2_STATUS_OK)
    status = sam2_session_norm_sum_linear (s, NULL, l1, x, addend, M, SAM2_ACT_NONE, sum_buf, y1);
  if (status == SAM2_STATUS_OK)
    status = sam2_session_linear (s, l2, x, M, y2, SAM2_ACT_NONE, NULL);
  return status;
}

int
sam2_session_norm_mlp (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Mlp *mlp,
                       const float *x, int M, float *norm_buf, float *hidden, float *y,
                       const float *residual)
{
  g_return_val_if_fail (mlp->n_layers == 2 && !mlp->sigmoid_output, SAM2_STATUS_UNSUPPORTED);
  Sam2Backend *b = s->backend;
  if (b->ops->norm_mlp != NULL && s->observer == NULL)
    return b->ops->norm_mlp (b, n, &mlp->layers[0], mlp->act, &mlp->layers[1], x, M, norm_buf,
                             hidden, y, residual);
  int status = b->ops->layer_norm (b, n, x, M, norm_buf);
  if (status == SAM2_STATUS_OK)
    status = sam2_session_linear (s, &mlp->layers[0], norm_buf, M, hidden, mlp->act, NULL);
  if (status == SAM2_STATUS_OK)
    status = sam2_session_linear (s, &mlp->layers[1], hidden, M, y, SAM2_ACT_NONE, residual);
  return status;
}

int
sam2_session_norm_windows_linear (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Linear *l,
                                  const float *x, int n_img, int H, int W, int ws,
                                  float *norm_buf, float *win_buf, float *y)
{
  Sam2Backend *b = s->backend;
  if (n != NULL)
    TRY_BACKEND_PASS (s, norm_windows_linear, n, l, x, n_img, H, W, ws, y);
  const int C = l->in_features, tokens = H * W;
  const float *normed = x;
  if (n != NULL) {
    int status = b->ops->layer_norm (b, n, x, n_img * tokens, norm_buf);
    if (status != SAM2_STATUS_OK)
      return status;
    normed = norm_buf;
  }
  if (ws == 0)
    return sam2_session_linear (s, l, normed, n_img * tokens, y, SAM2_ACT_NONE, NULL);
  const int n_win = ((H + ws - 1) / ws) * ((W + ws - 1) / ws);
  const size_t win_rows = (size_t) n_win * ws * ws;   /* per image */
  for (int i = 0; i < n_img; i++) {
    int status = b->ops->window_partition (b, normed + (size_t) i * tokens * C, H, W, C, ws,
                                           win_buf + i * win_rows * C);
    if (status != SAM2_STATUS_OK)
      return status;
  }
  return sam2_session_linear (s, l, win_buf, (int) (n_img * win_rows), y, SAM2_ACT_NONE, NULL);
}

int
sam2_session_norm_attention_linear (Sam2Session *s, const Sam2LayerNorm *n, const Sam2Linear *qkv,
                                    const float *x, int n_img, int H, int W, int ws, int q_stride,
                                    float *norm_buf, float *win_buf, float *qkv_buf,
                                    float *q_buf, const Sam2AttentionArgs *args,
                                    const Sam2Linear *proj, float *y, gboolean planned)
{
  Sam2Backend *b = s->backend;
  TRY_BACKEND_PASS (s, norm_attention_linear, n, qkv, x, n_img, H, W, ws, q_stride, qkv_buf,
                    q_buf, args, proj, y);
  if (planned) {
    g_critical ("the %s backend declined the attention pass of %s that it planned: the "
                "scratch is too small for the separate ops",
                b->ops->name, qkv->name != NULL ? qkv->name : "a block");
    return SAM2_STATUS_UNSUPPORTED;
  }
  int status = sam2_session_norm_windows_linear (s, n, qkv, x, n_img, H, W, ws, norm_buf,
                                                 win_buf, qkv_buf);
  if (status == SAM2_STATUS_OK && q_stride > 1) {
    const int C = args->heads * args->head_dim;
    status = b->ops->max_pool (b, qkv_buf, args->batch, ws > 0 ? ws : H, ws > 0 ? ws : W, C,
                               qkv->out_features, q_stride, q_buf);
  }
  if (status != SAM2_STATUS_OK)
    return status;
  return sam2_session_attention_linear (s, args, proj, y, NULL);
}

int
sam2_session_attention_linear (Sam2Session *s, const Sam2AttentionArgs *args, const Sam2Linear *l,
                               float *y, const float *residual)
{
  Sam2Backend *b = s->backend;
  const int K = args->heads * args->head_dim;
  const gboolean packed = K == l->in_features && args->out_ld == K
                          && (args->batch <= 1
                              || args->out_batch_stride == (size_t) args->len_q * K);
  g_return_val_if_fail (packed, SAM2_STATUS_UNSUPPORTED);
  TRY_BACKEND_PASS (s, attention_linear, args, l, y, residual);
  const int status = b->ops->attention (b, args);
  if (status != SAM2_STATUS_OK)
    return status;
  return sam2_session_linear (s, l, args->out, args->batch * args->len_q, y, SAM2_ACT_NONE,
                              residual);
}

int
sam2_session_depth_to_space2x_linear (Sam2Session *s, const float *x, int x_ld, int H, int W,
                                      int C, const float *addend, const Sam2LayerNorm *norm,
                                      Sam2Act act, float *t, const Sam2Linear *l, float *y)
{
  Sam2Backend *b = s->backend;
  g_return_val_if_fail (l->in_features == C, SAM2_STATUS_UNSUPPORTED);
  TRY_BACKEND_PASS (s, depth_to_space2x_linear, x, x_ld, H, W, C, addend, norm, act, t, l, y);
  const int status = b->ops->depth_to_space2x (b, x, x_ld, H, W, C, addend, norm, act, t);
  if (status != SAM2_STATUS_OK)
    return status;
  return sam2_session_linear (s, l, t, 4 * H * W, y, SAM2_ACT_NONE, NULL);
}

int
sam2_session_depth_to_space2x_matmul (Sam2Session *s, const float *x, int x_ld, int H, int W,
                                      int C, const float *addend, Sam2Act act, float *t,
                                      const float *A, int M, float *out)
{
  Sam2Backend *b = s->backend;
  /* the map is no layer's input: the pass runs under an observer too (TRY_BACKEND_PASS would
   * give the observer the ops, which it has no use for here) */
  if (b->ops->depth_to_space2x_matmul != NULL) {
    gboolean done = FALSE;
    const int status = b->ops->depth_to_space2x_matmul (b, x, x_ld, H, W, C, addend, act, A, M,
                                                        out, &done);
    if (status != SAM2_STATUS_OK || done)
      return status;
  }
  const int status = b->ops->depth_to_space2x (b, x, x_ld, H, W, C, addend, NULL, act, t);
  if (status != SAM2_STATUS_OK)
    return status;
  return b->ops->matmul_nt (b, A, t, M, 4 * H * W, C, out);
}

void
sam2_session_emit_tap (Sam2Session *s, const char *name, const float *data, int ndim, ...)
{
  if (s->tap == NULL)
    return;
  int shape[8];
  size_t n = 1;
  va_list ap;
  va_start (ap, ndim);
  for (int d = 0; d < ndim && d < 8; d++) {
    shape[d] = va_arg (ap, int);
    n *= (size_t) shape[d];
  }
  va_end (ap);
  if (!s->backend->ops->device_memory) {
    s->tap (s->tap_data, name, data, ndim, shape);
    return;
  }
  /* taps are a debugging aid: a host copy per call is fine there; a failed copy skips the tap
   * (the forward pass reports the device error itself at its next download) */
  float *host = g_try_new (float, MAX (n, 1));
  if (host != NULL && s->backend->ops->download (s->backend, host, data, n) == SAM2_STATUS_OK)
    s->tap (s->tap_data, name, host, ndim, shape);
  g_free (host);
}

void
sam2_session_emit_map_tap (Sam2Session *s, const char *name, const float *data, int h, int w,
                           int c)
{
  if (s->batch > 1)
    sam2_session_emit_tap (s, name, data, 4, s->batch, h, w, c);
  else
    sam2_session_emit_tap (s, name, data, 3, h, w, c);
}

/* ---- device graphs ---------------------------------------------------------------------------- */

/* Keys of backend.h's run_graph: everything that changes the launch sequence or a shape. The
 * encoder has one sequence per session (the input size is the model's). A decoder pass depends
 * on the number of prompt tokens (points, their padding and a box's three tokens: n_sparse) and
 * on whether a mask prompt is given; the number of objects (one pass each), multimask (chosen on
 * the host afterwards) and the prompt values (uploaded tokens) do not change it. */
#define GRAPH_KEY_ENCODER ((guint64) 1 << 56)   /* | the number of images */
#define GRAPH_KEY_DECODER ((guint64) 2 << 56)
#define GRAPH_KEY_SELECT ((guint64) 3 << 56)    /* | the image's index */

static guint64
decoder_graph_key (int n_sparse, gboolean has_dense)
{
  return GRAPH_KEY_DECODER | ((guint64) (has_dense ? 1 : 0) << 32) | (guint32) n_sparse;
}

/* Runs body (device work only) through the backend's graphs when it has them. Taps download
 * intermediates in the middle of a pass and observers read them on the host: such a session runs
 * eagerly. */
static int
run_device (Sam2Session *s, guint64 key, int (*body) (gpointer), gpointer data)
{
  Sam2Backend *b = s->backend;
  if (b->ops->run_graph == NULL || s->tap != NULL || s->observer != NULL)
    return body (data);
  return b->ops->run_graph (b, key, body, data);
}

/* ---- image encoder ----------------------------------------------------------------------------- */

typedef struct {
  Sam2Session *s;
  const char *failed;          /* the stage that failed, for the error message */
} EncoderPass;

static int
encoder_body (gpointer data)
{
  EncoderPass *p = data;
  p->failed = "the image encoder";
  p->s->linear_images = p->s->batch;
  int st = sam2_hiera_forward (p->s);
  if (st == SAM2_STATUS_OK) {
    p->failed = "the FPN neck";
    st = sam2_neck_forward (p->s);
  }
  p->s->linear_images = 1;
  if (st != SAM2_STATUS_OK || p->s->batch > 1)
    return st;
  /* one image: its features are the decoder's already */
  p->failed = "the mask decoder's image side";
  return sam2_mask_decoder_prepare_image (p->s);
}

/* A new pass begins: whatever happens next, the last one's images can no longer be decoded
 * or selected. */
static void
forget_batch (Sam2Session *s)
{
  s->have_features = FALSE;
  s->batch = 0;
}

/* Image s->selected of the batch into the decoder's features, then their per-image part. */
static int
select_body (gpointer data)
{
  Sam2Session *s = data;
  const Sam2Model *m = s->model;
  for (int l = 0; l < 3; l++) {
    const size_t n = (size_t) m->feat_h[l] * m->feat_w[l] * m->feat_c[l];
    int st = s->backend->ops->copy (s->backend, s->features[l],
                                    s->batch_features[l] + s->selected * n, n);
    if (st != SAM2_STATUS_OK)
      return st;
  }
  return sam2_mask_decoder_prepare_image (s);
}

/* Waits for what a device enqueued, so that a failure is reported by the call that caused it
 * (not by the next decode) and a caller's timing of it is complete. */
static gboolean
finish_device_work (Sam2Session *s, const char *what, GError **error)
{
  return s->backend->ops->synchronize == NULL
         || check_status (s, s->backend->ops->synchronize (s->backend), what, error);
}

static gboolean
select_image (Sam2Session *s, int index, GError **error)
{
  const char *what = "selecting an image of the batch";
  s->have_features = FALSE;
  s->selected = index;
  if (!check_status (s, run_device (s, GRAPH_KEY_SELECT | (guint32) index, select_body, s), what,
                     error)
      || !finish_device_work (s, what, error))
    return FALSE;
  s->have_features = TRUE;
  return TRUE;
}

/* The encoder on the n images in s->pixels. */
static gboolean
encode_uploaded (Sam2Session *s, int n, GError **error)
{
  sam2_threads_apply ();
  s->have_features = FALSE;
  s->batch = n;
  s->selected = 0;
  EncoderPass pass = { s, NULL };
  if (!check_status (s, run_device (s, GRAPH_KEY_ENCODER | (guint32) n, encoder_body, &pass),
                     pass.failed != NULL ? pass.failed : "the image encoder", error)
      || !finish_device_work (s, "the image encoder", error)) {
    forget_batch (s);   /* nothing of a failed pass can be selected */
    return FALSE;
  }
  if (n > 1)
    return select_image (s, 0, error);
  s->have_features = TRUE;
  return TRUE;
}

/* FALSE with an error unless 1 <= n <= the session's max_batch. */
static gboolean
check_batch (const Sam2Session *s, int n, GError **error)
{
  if (n >= 1 && n <= s->max_batch)
    return TRUE;
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
               "%d images in one pass: this session takes 1 to %d (its max_batch option)", n,
               s->max_batch);
  return FALSE;
}

gboolean
sam2_session_encode_batch (Sam2Session *s, const float *pixel_values, int n, GError **error)
{
  g_return_val_if_fail (s != NULL && pixel_values != NULL, FALSE);
  const Sam2Model *m = s->model;
  if (!check_batch (s, n, error))
    return FALSE;
  const size_t floats = (size_t) n * sam2_model_image_floats (m);
  forget_batch (s);
  memset (s->slot_size, 0, (size_t) n * sizeof *s->slot_size);
  if (!check_status (s, s->backend->ops->upload (s->backend, s->pixels, pixel_values, floats),
                     "uploading the pixels", error))
    return FALSE;
  return encode_uploaded (s, n, error);
}

gboolean
sam2_session_encode_resident (Sam2Session *s, int n, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (!check_batch (s, n, error))
    return FALSE;
  return encode_uploaded (s, n, error);
}

gboolean
sam2_session_encode (Sam2Session *s, const float *pixel_values, GError **error)
{
  return sam2_session_encode_batch (s, pixel_values, 1, error);
}

static gboolean
check_frame (gboolean have_pixels, int width, int height, int stride, Sam2PixelFormat format,
             GError **error)
{
  /* before the format's bytes per pixel are asked for: an unknown format has none, and was
   * refused only by the preprocessing, which then left the previous frame's pixels in place */
  if (!sam2_pixel_format_is_valid (format)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "invalid image: pixel format %d is not a Sam2PixelFormat", (int) format);
    return FALSE;
  }
  if (!have_pixels || width <= 0 || height <= 0
      || stride < width * sam2_pixel_format_bpp (format)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "invalid image: %dx%d pixels with a stride of %d bytes", width, height, stride);
    return FALSE;
  }
  return TRUE;
}

/* The resampler for frames of this size (kept while the size stays), or FALSE with an error
 * (a model without RGB input, a size the resampler refuses). */
static gboolean
prepare_resampler (Sam2Session *s, int width, int height, GError **error)
{
  const Sam2Model *m = s->model;
  if (m->config.vision.backbone.num_channels != 3) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "this model takes %d input channels, not RGB images; use sam2_session_encode",
                 m->config.vision.backbone.num_channels);
    return FALSE;
  }
  if (s->resampler == NULL || s->frame_width != width || s->frame_height != height) {
    sam2_resampler_free (s->resampler);
    s->resampler = sam2_resampler_new (width, height, m->image_size, m->image_size, error);
    if (s->resampler == NULL)
      return FALSE;
    s->frame_width = width;
    s->frame_height = height;
  }
  return TRUE;
}

/* Frame `index` of the next pass into the session's input, preprocessed where the encoder runs
 * (the backend's preprocess op, e.g. the GPU's resize of the uploaded bytes) or on the host and
 * uploaded. The frame has been checked and the resampler made for its size. */
static gboolean
stage_frame (Sam2Session *s, int index, const guint8 *pixels, int stride, Sam2PixelFormat format,
             GError **error)
{
  sam2_threads_apply ();
  const Sam2Model *m = s->model;
  const size_t image_floats = sam2_model_image_floats (m);
  const Sam2BackendOps *o = s->backend->ops;
  float *slot = s->pixels + index * image_floats;
  s->slot_size[index][0] = s->frame_width;
  s->slot_size[index][1] = s->frame_height;
  if (o->preprocess != NULL)
    return check_status (s, o->preprocess (s->backend, s->resampler, pixels, stride, format, slot),
                         "preprocessing the frame", error);
  if (!o->device_memory) {
    /* the input is host memory: no staging copy (12 MB per frame at 1024 x 1024) */
    sam2_preprocess (s->resampler, pixels, stride, format, slot);
    return TRUE;
  }
  float *host = s->host_pixels + index * image_floats;
  sam2_preprocess (s->resampler, pixels, stride, format, host);
  return check_status (s, o->upload (s->backend, slot, host, image_floats),
                       "uploading the pixels", error);
}

static gboolean
check_index (const Sam2Session *s, int index, GError **error)
{
  if (index >= 0 && index < s->max_batch)
    return TRUE;
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
               "image %d of a pass: this session takes 1 to %d images (its max_batch option)",
               index, s->max_batch);
  return FALSE;
}

gboolean
sam2_session_stage_image (Sam2Session *s, int index, const guint8 *pixels, int width, int height,
                          int stride, Sam2PixelFormat format, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (!check_index (s, index, error)
      || !check_frame (pixels != NULL, width, height, stride, format, error)
      || !prepare_resampler (s, width, height, error))
    return FALSE;
  forget_batch (s);
  return stage_frame (s, index, pixels, stride, format, error);
}

gboolean
sam2_session_stage_pixels (Sam2Session *s, int index, const float *pixel_values, GError **error)
{
  g_return_val_if_fail (s != NULL && pixel_values != NULL, FALSE);
  if (!check_index (s, index, error))
    return FALSE;
  const Sam2Model *m = s->model;
  const size_t floats = sam2_model_image_floats (m);
  forget_batch (s);
  s->slot_size[index][0] = s->slot_size[index][1] = 0;
  return check_status (s, s->backend->ops->upload (s->backend, s->pixels + index * floats,
                                                   pixel_values, floats),
                       "uploading the pixels", error);
}

gboolean
sam2_session_set_images (Sam2Session *s, const guint8 *const *pixels, int n, int width,
                         int height, int stride, Sam2PixelFormat format, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (!check_batch (s, n, error))
    return FALSE;
  if (!check_frame (pixels != NULL, width, height, stride, format, error))
    return FALSE;
  for (int i = 0; i < n; i++)
    if (pixels[i] == NULL) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "invalid image: frame %d of %d has no pixels", i, n);
      return FALSE;
    }
  if (!prepare_resampler (s, width, height, error))
    return FALSE;
  forget_batch (s);
  for (int i = 0; i < n; i++)
    if (!stage_frame (s, i, pixels[i], stride, format, error))
      return FALSE;
  return encode_uploaded (s, n, error);
}

gboolean
sam2_session_set_image (Sam2Session *s, const guint8 *pixels, int width, int height, int stride,
                        Sam2PixelFormat format, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  return sam2_session_set_images (s, &pixels, 1, width, height, stride, format, error);
}

gboolean
sam2_session_select_image (Sam2Session *s, int index, GError **error)
{
  g_return_val_if_fail (s != NULL, FALSE);
  if (index < 0 || index >= s->batch) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "image %d: the last encoder pass had %d image%s", index, s->batch,
                 s->batch == 1 ? "" : "s");
    return FALSE;
  }
  if (s->batch == 1 || (index == s->selected && s->have_features))
    return TRUE;
  return select_image (s, index, error);
}

int
sam2_session_get_n_images (const Sam2Session *s)
{
  g_return_val_if_fail (s != NULL, 0);
  return s->batch;
}

int
sam2_session_get_max_batch (const Sam2Session *s)
{
  g_return_val_if_fail (s != NULL, 0);
  return s->max_batch;
}

const float *
sam2_session_get_features (Sam2Session *s, int level, int *height, int *width, int *channels)
{
  g_return_val_if_fail (s != NULL && level >= 0 && level < 3, NULL);
  if (!s->have_features)
    return NULL;
  if (height)
    *height = s->model->feat_h[level];
  if (width)
    *width = s->model->feat_w[level];
  if (channels)
    *channels = s->model->feat_c[level];
  if (!s->backend->ops->device_memory)
    return s->features[level];
  const size_t n = (size_t) s->model->feat_h[level] * s->model->feat_w[level]
                   * s->model->feat_c[level];
  if (s->backend->ops->download (s->backend, s->host_features[level], s->features[level], n)
      != SAM2_STATUS_OK)
    return NULL;
  return s->host_features[level];
}

/* ---- prompts and the mask decoder -------------------------------------------------------------- */

static gboolean
ensure_result_capacity (Sam2Session *s, int n_objects)
{
  const Sam2Model *m = s->model;
  if (n_objects <= s->result_capacity_objects)
    return TRUE;
  const size_t nmt = m->n_mask_tokens, ms2 = (size_t) m->mask_size * m->mask_size;
  g_free (s->res_iou);
  g_free (s->res_obj);
  host_staging_free (s, &s->res_lowres);   /* the decoder's logits are downloaded into it */
  s->res_iou = g_try_new (float, n_objects * nmt);
  s->res_obj = g_try_new (float, n_objects);
  s->res_lowres = host_staging_alloc (s, n_objects * nmt * ms2);
  s->result_capacity_objects = n_objects;
  if (s->res_iou == NULL || s->res_obj == NULL || s->res_lowres == NULL) {
    s->result_capacity_objects = 0;
    return FALSE;
  }
  return TRUE;
}

static gboolean
validate_prompt (const Sam2Model *m, const Sam2Prompt *p, int index, float width, float height,
                 GError **error)
{
  const int n_labels = m->config.prompt_encoder.num_point_embeddings;
  if (p->n_points < 0 || (p->n_points > 0 && p->points == NULL)
      || p->n_points > SAM2_MAX_POINTS_PER_OBJECT) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "object %d: %d points given; an object takes 0 to %d points", index,
                 p->n_points, SAM2_MAX_POINTS_PER_OBJECT);
    return FALSE;
  }
  /* padding and not-a-point entries are skipped: they prompt nothing */
  int n_real = 0;
  for (int i = 0; i < p->n_points; i++)
    n_real += p->points[i].label != SAM2_LABEL_PAD && p->points[i].label != SAM2_LABEL_NOT_A_POINT;
  if (n_real == 0 && !p->has_box && p->mask_logits == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "object %d has no prompt: give at least one point, a box or a mask", index);
    return FALSE;
  }
  for (int i = 0; i < p->n_points; i++) {
    const Sam2Point *pt = &p->points[i];
    if (pt->label != SAM2_LABEL_PAD && pt->label != SAM2_LABEL_NOT_A_POINT
        && (pt->label < 0 || pt->label >= n_labels)) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "object %d, point %d: label %d is not one of -10 (padding), -1 (not a point), "
                   "0 (negative), 1 (positive), 2/3 (box corners)", index, i, pt->label);
      return FALSE;
    }
    if (pt->label == SAM2_LABEL_PAD || pt->label == SAM2_LABEL_NOT_A_POINT)
      continue;
    if (!isfinite (pt->x) || !isfinite (pt->y) || pt->x < 0 || pt->y < 0 || pt->x >= width
        || pt->y >= height) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "object %d, point %d at (%g, %g) lies outside the %gx%g image", index, i,
                   pt->x, pt->y, width, height);
      return FALSE;
    }
  }
  if (p->has_box) {
    const float *bx = p->box;
    gboolean finite = isfinite (bx[0]) && isfinite (bx[1]) && isfinite (bx[2]) && isfinite (bx[3]);
    if (!finite || bx[0] > bx[2] || bx[1] > bx[3] || bx[2] < 0 || bx[3] < 0 || bx[0] >= width
        || bx[1] >= height) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                   "object %d: box (%g, %g, %g, %g) is empty, inverted or outside the %gx%g "
                   "image; boxes are x0, y0, x1, y1 with x0 <= x1 and y0 <= y1", index, bx[0],
                   bx[1], bx[2], bx[3], width, height);
      return FALSE;
    }
  }
  return TRUE;
}

/* HF's _dynamic_multimask_via_stability for one object, in two steps so that only the masks it
 * keeps cross to the host: the single-mask output (token 0) stays when its stability (area above
 * +delta over area above -delta) reaches the threshold (or the model has no such switch) ... */
static gboolean
single_mask_is_stable (const Sam2Model *m, const float *mask0)
{
  const Sam2MaskDecoderConfig *dc = &m->config.mask_decoder;
  if (!dc->dynamic_multimask_via_stability || m->n_mask_tokens < 2)
    return TRUE;
  const size_t ms2 = (size_t) m->mask_size * m->mask_size;
  const float delta = (float) dc->dynamic_multimask_stability_delta;
  size_t inter = 0, uni = 0;
  for (size_t i = 0; i < ms2; i++) {
    inter += mask0[i] > delta;
    uni += mask0[i] > -delta;
  }
  const double stability = uni > 0 ? (double) inter / (double) uni : 1.0;
  /* torch compares in float32 */
  return (float) stability >= (float) dc->dynamic_multimask_stability_thresh;
}

/* ... else the multimask token (1 ..) with the best predicted IoU replaces it. */
static int
best_multimask_token (const Sam2Model *m, const float *iou)
{
  int best = 1;
  for (int t = 2; t < m->n_mask_tokens; t++)
    if (iou[t] > iou[best])
      best = t;
  return best;
}

typedef struct {
  Sam2Session *s;
  int n_sparse;
  gboolean has_dense;
} DecoderPass;

/* The device part of one object's decoder pass: the mask prompt's dense embedding (its logits are
 * uploaded before) and the mask decoder. */
static int
decoder_body (gpointer data)
{
  DecoderPass *p = data;
  if (p->has_dense) {
    int st = sam2_prompt_encoder_dense (p->s, p->s->dec.mask_input);
    if (st != SAM2_STATUS_OK)
      return st;
  }
  return sam2_mask_decoder_run (p->s, p->n_sparse, p->has_dense);
}

static const Sam2Result *
decode (Sam2Session *s, const Sam2Prompt *prompts, int n_prompts, gboolean multimask,
        GError **error)
{
  const Sam2Model *m = s->model;
  const int nmt = m->n_mask_tokens;
  const size_t ms2 = (size_t) m->mask_size * m->mask_size;
  const int n_out = multimask ? nmt - 1 : 1;

  if (!s->have_features) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "no image has been encoded in this session yet");
    return NULL;
  }
  if (n_prompts <= 0 || prompts == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "no prompts given: pass at least one object with points, a box or a mask");
    return NULL;
  }
  if (multimask && nmt < 2) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "this model has no multimask outputs");
    return NULL;
  }
  if (!ensure_result_capacity (s, n_prompts)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND, "out of memory for %d objects",
                 n_prompts);
    return NULL;
  }

  float *all_iou = s->dec.host_iou;
  float *sparse = s->dec.host_sparse;
  for (int o = 0; o < n_prompts; o++) {
    const Sam2Prompt *p = &prompts[o];
    int n_sparse = sam2_prompt_encoder_sparse (m, p, sparse, s->dec.max_tokens - 2 - nmt);
    gboolean has_dense = p->mask_logits != NULL;
    /* host data first (uploads), then the device work (a graph after its first runs), then the
     * results back */
    int st = SAM2_STATUS_OK;
    if (has_dense)
      st = s->backend->ops->upload (s->backend, s->dec.mask_input, p->mask_logits, ms2);
    if (st == SAM2_STATUS_OK)
      st = sam2_mask_decoder_upload (s, sparse, n_sparse);
    if (st == SAM2_STATUS_OK) {
      DecoderPass pass = { s, n_sparse, has_dense };
      st = run_device (s, decoder_graph_key (n_sparse, has_dense), decoder_body, &pass);
    }
    /* the heads, then only the masks kept, straight into the result */
    if (st == SAM2_STATUS_OK)
      st = sam2_mask_decoder_read_heads (s, all_iou);
    float *iou_out = s->res_iou + (size_t) o * n_out;
    float *mask_out = s->res_lowres + (size_t) o * n_out * ms2;
    int token = multimask ? 1 : 0;
    if (st == SAM2_STATUS_OK)
      st = sam2_mask_decoder_read_masks (s, token, n_out, mask_out);
    if (st == SAM2_STATUS_OK && !multimask && !single_mask_is_stable (m, mask_out)) {
      token = best_multimask_token (m, all_iou);
      st = sam2_mask_decoder_read_masks (s, token, 1, mask_out);
    }
    if (!check_status (s, st, "the mask decoder", error))
      return NULL;
    s->res_obj[o] = all_iou[s->dec.obj_offset];
    memcpy (iou_out, all_iou + token, sizeof (float) * n_out);
  }

  Sam2Result *r = &s->result;
  memset (r, 0, sizeof *r);
  r->n_objects = n_prompts;
  r->n_masks = n_out;
  r->mask_size = m->mask_size;
  r->iou_scores = s->res_iou;
  r->object_scores = s->res_obj;
  r->lowres_logits = s->res_lowres;
  return r;
}

const Sam2Result *
sam2_session_decode (Sam2Session *s, const Sam2Prompt *prompts, int n_prompts, gboolean multimask,
                     GError **error)
{
  sam2_threads_apply ();
  g_return_val_if_fail (s != NULL, NULL);
  const float S = (float) s->model->image_size;
  for (int o = 0; o < n_prompts && prompts != NULL; o++)
    if (!validate_prompt (s->model, &prompts[o], o, S, S, error))
      return NULL;
  return decode (s, prompts, n_prompts, multimask, error);
}

/* Frame-space prompts scaled to the model input per axis, as Sam2Processor does. */
static void
scale_prompt (const Sam2Prompt *in, Sam2Prompt *out, Sam2Point *points, float sx, float sy)
{
  *out = *in;
  for (int i = 0; i < in->n_points; i++) {
    points[i] = in->points[i];
    points[i].x *= sx;
    points[i].y *= sy;
  }
  out->points = points;
  out->box[0] = in->box[0] * sx;
  out->box[1] = in->box[1] * sy;
  out->box[2] = in->box[2] * sx;
  out->box[3] = in->box[3] * sy;
}

/* Each object's candidate of highest predicted IoU (the first of equals) moved to its place in
 * a one-mask result: the session's arrays compacted in place, in object order (an object's
 * slot never lies after its candidates). */
static void
keep_best_candidates (Sam2Session *s, Sam2Result *r)
{
  const int k = r->n_masks;
  const size_t ms2 = (size_t) r->mask_size * r->mask_size;
  for (int o = 0; o < r->n_objects; o++) {
    int best = 0;
    for (int m = 1; m < k; m++)
      if (s->res_iou[o * k + m] > s->res_iou[o * k + best])
        best = m;
    s->res_iou[o] = s->res_iou[o * k + best];
    memmove (s->res_lowres + o * ms2, s->res_lowres + ((size_t) o * k + best) * ms2,
             ms2 * sizeof (float));
  }
  r->n_masks = 1;
}

static gboolean
frame_masks (Sam2Session *s, Sam2Result *r, float threshold, GError **error)
{
  const size_t plane = (size_t) r->width * r->height;
  const size_t n = (size_t) r->n_objects * r->n_masks;
  /* masks and boxes grow separately: fewer, larger frames need more mask bytes but fewer boxes.
   * The masks also shrink once SAM2_RES_MASKS_SHRINK_CALLS calls in a row needed under a quarter
   * of them: one frame of many objects held its gigabytes for the rest of the stream (256
   * objects at 4K: 2.1 GB), and a stream alternating between few and many objects does not
   * reallocate every frame. */
  s->res_masks_small_calls = n * plane < s->res_masks_capacity / 4 ? s->res_masks_small_calls + 1
                                                                    : 0;
  if (s->res_masks_capacity < n * plane
      || s->res_masks_small_calls >= SAM2_RES_MASKS_SHRINK_CALLS) {
    s->res_masks_small_calls = 0;
    g_free (s->res_masks);
    s->res_masks = g_try_malloc (n * plane);
    s->res_masks_capacity = s->res_masks ? n * plane : 0;
  }
  if (s->res_boxes_capacity < n) {
    g_free (s->res_boxes);
    s->res_boxes = g_try_new (Sam2Box, n);
    s->res_boxes_capacity = s->res_boxes ? n : 0;
  }
  /* a few upsampled rows per thread, thresholded at once (sam2_upsample_threshold) */
  const size_t scratch = sam2_upsample_threshold_scratch (r->mask_size, r->height, r->width);
  if (s->upsampled_capacity < scratch) {
    g_free (s->upsampled);
    s->upsampled = g_try_new (float, scratch);
    s->upsampled_capacity = s->upsampled ? scratch : 0;
  }
  if (s->res_masks_capacity < n * plane || s->res_boxes_capacity < n
      || s->upsampled_capacity < scratch) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND,
                 "out of memory for %zu masks of %dx%d", n, r->width, r->height);
    return FALSE;
  }
  const size_t ms2 = (size_t) r->mask_size * r->mask_size;
  for (size_t i = 0; i < n; i++) {
    guint8 *mask = s->res_masks + i * plane;
    sam2_upsample_threshold (r->lowres_logits + i * ms2, r->mask_size, r->mask_size, r->height,
                             r->width, threshold, s->upsampled, s->upsampled_capacity, mask);
    s->res_boxes[i] = sam2_mask_box (mask, r->width, r->height);
  }
  r->masks = s->res_masks;
  r->boxes = s->res_boxes;
  return TRUE;
}

/* Whether a mask prompt points into this session's own result logits. */
static gboolean
in_session_result (const Sam2Session *s, const float *logits)
{
  const size_t floats = (size_t) s->result_capacity_objects * s->model->n_mask_tokens
                        * s->model->mask_size * s->model->mask_size;
  /* as addresses: the prompt may point anywhere, and C orders pointers into one object only */
  const uintptr_t at = (uintptr_t) logits, start = (uintptr_t) s->res_lowres;
  return logits != NULL && s->res_lowres != NULL && at >= start
         && at < start + floats * sizeof (float);
}

/* Mask prompts taken from this session's previous result (sam2.h suggests passing one back) are
 * copied before decoding: the decoder overwrites those logits, or frees them when the number of
 * objects grows, while later objects still read theirs. Other callers' buffers are read as
 * they are. */
static gboolean
copy_mask_prompts (Sam2Session *s, int n_prompts, GError **error)
{
  const size_t ms2 = (size_t) s->model->mask_size * s->model->mask_size;
  int n_masks = 0;
  for (int o = 0; o < n_prompts; o++)
    n_masks += in_session_result (s, s->scaled_prompts[o].mask_logits);
  if (n_masks == 0)
    return TRUE;
  if ((size_t) n_masks * ms2 > s->mask_prompts_capacity) {
    g_free (s->mask_prompts);
    s->mask_prompts = g_try_new (float, (size_t) n_masks * ms2);
    s->mask_prompts_capacity = s->mask_prompts != NULL ? (size_t) n_masks * ms2 : 0;
    if (s->mask_prompts == NULL) {
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND, "out of memory for %d mask prompts",
                   n_masks);
      return FALSE;
    }
  }
  float *next = s->mask_prompts;
  for (int o = 0; o < n_prompts; o++) {
    Sam2Prompt *p = &s->scaled_prompts[o];
    if (!in_session_result (s, p->mask_logits))
      continue;
    memcpy (next, p->mask_logits, ms2 * sizeof (float));
    p->mask_logits = next;
    next += ms2;
  }
  return TRUE;
}

const Sam2Result *
sam2_session_predict (Sam2Session *s, const Sam2Prompt *prompts, int n_prompts,
                      const Sam2PredictOptions *options, GError **error)
{
  g_return_val_if_fail (s != NULL, NULL);
  static const Sam2PredictOptions defaults = SAM2_PREDICT_OPTIONS_INIT;
  if (options == NULL)
    options = &defaults;
  if (s->resampler == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "no frame set: call sam2_session_set_image before predicting");
    return NULL;
  }
  /* the selected image's frame; pixels given preprocessed keep the last frame's size */
  const int *staged = s->batch > 0 ? s->slot_size[s->selected] : NULL;
  const int fw = staged != NULL && staged[0] > 0 ? staged[0] : s->frame_width;
  const int fh = staged != NULL && staged[0] > 0 ? staged[1] : s->frame_height;
  const float W = (float) fw, H = (float) fh;
  const float S = (float) s->model->image_size;
  if (prompts == NULL || n_prompts <= 0) {
    /* before the scaled prompts of an earlier call could stand in for them */
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "no prompts given: pass at least one object with points, a box or a mask");
    return NULL;
  }
  if (n_prompts > s->scaled_capacity) {
    g_free (s->scaled_prompts);
    g_free (s->scaled_points);
    s->scaled_prompts = g_new (Sam2Prompt, n_prompts);
    s->scaled_points = g_new (Sam2Point, (size_t) n_prompts * SAM2_MAX_POINTS_PER_OBJECT);
    s->scaled_capacity = n_prompts;
  }
  for (int o = 0; o < n_prompts; o++) {
    if (!validate_prompt (s->model, &prompts[o], o, W, H, error))
      return NULL;
    scale_prompt (&prompts[o], &s->scaled_prompts[o],
                  s->scaled_points + (size_t) o * SAM2_MAX_POINTS_PER_OBJECT, S / W, S / H);
  }
  if (!copy_mask_prompts (s, n_prompts, error))
    return NULL;
  const Sam2Result *r = decode (s, s->scaled_prompts, n_prompts, options->multimask, error);
  if (r != NULL && options->multimask && options->best_only)
    keep_best_candidates (s, &s->result);
  if (r != NULL && options->frame_masks) {
    Sam2Result *rw = &s->result;
    rw->width = fw;
    rw->height = fh;
    if (!frame_masks (s, rw, options->mask_threshold, error))
      r = NULL;
  }
  return r;
}
