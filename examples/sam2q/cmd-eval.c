/* sam2q eval MODEL [MODEL...] (--eval-set FILE | --dataset coco --coco-root DIR | ...)
 *                  [--reference-model REF] [--json]
 *
 * Mask quality against ground truth with one point and one box prompt per object (mIoU), the
 * same relative to a reference model on the same prompts, model size and compression against
 * FP16, latency: one table row per model, or JSON (one object, or an array for several models). */
#include "backend-args.h"
#include "commands.h"
#include "eval-dataset.h"
#include "eval.h"
#include "hub.h"
#include "model.h"
#include "qmodel.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* The random dataset's pictures for evaluation, unless --seed says otherwise: not the recipes'
 * default calibration seed (0), so that evaluating after calibrating, both on generated
 * pictures, does not score the calibration pictures. */
#define EVAL_DEFAULT_SEED 1

typedef struct {
  char *eval_set;
  char *dataset;
  char *root;
  int num_samples;
  int seed;
  Sam2SessionOptions session;  /* backend and precision */
} Source;

static gboolean
evaluate (Sam2Model *model, const Source *src, Sam2qEvalScores *out, GError **error)
{
  if (src->eval_set == NULL)
    return sam2q_eval_dataset (model, src->dataset, src->root, src->num_samples, src->seed,
                               &src->session, out, error);
  Sam2EvalResult *r = sam2_eval_set_run_full (model, src->eval_set, &src->session, error);
  if (r == NULL)
    return FALSE;
  g_strlcpy (out->backend, r->backend, sizeof out->backend);
  out->miou[0] = r->miou[SAM2_EVAL_POINT];
  out->miou[1] = r->miou[SAM2_EVAL_BOX];
  for (int k = 0; k < 2; k++) {
    const Sam2EvalKind kind = k == 0 ? SAM2_EVAL_POINT : SAM2_EVAL_BOX;
    out->logits_rel_l2[k] = r->has_reference ? r->reference_rel_l2[kind] : NAN;
    out->iou[k] = g_array_sized_new (FALSE, FALSE, sizeof (double), r->n_images);
    for (int i = 0; i < r->n_images; i++) {
      const double iou = r->iou[kind][i];
      g_array_append_val (out->iou[k], iou);
    }
  }
  out->encoder_ms = r->encoder_ms;
  out->decoder_ms = r->decoder_ms;
  out->n_images = out->n_objects = r->n_images;
  sam2_eval_result_free (r);
  return TRUE;
}

/* Weights as stored: the quantized file's tensors, or the float checkpoint in F32. */
static size_t
model_bytes (const Sam2Model *m)
{
  return m->quantized ? sam2_qmodel_weight_bytes (m) : (size_t) m->n_params * 4;
}

typedef struct {
  const char *name;
  Sam2Model *model;
  Sam2qEvalScores s;
} Row;

/* An object "changed" when its IoU with the ground truth moved by more than this from the
 * reference model's on the same prompt: a mask that switched to another candidate or lost a
 * part, not a boundary that moved by a pixel. */
#define CHANGED_IOU 0.1

/* Objects whose IoU (kind 0 point, 1 box) moved by more than CHANGED_IOU from the reference's;
 * -1 when the per-object IoUs cannot be paired. */
static int
changed_objects (const Row *r, const Row *ref, int kind)
{
  const GArray *a = r->s.iou[kind], *b = ref->s.iou[kind];
  if (a == NULL || b == NULL || a->len != b->len)
    return -1;
  int n = 0;
  for (guint i = 0; i < a->len; i++)
    n += fabs (g_array_index (a, double, i) - g_array_index (b, double, i)) > CHANGED_IOU;
  return n;
}

/* json-glib writes a NaN or an infinity as "nan.0" / "inf.0", which no JSON reader takes; null
 * says there is no number (a relative mIoU against a reference that scored 0). */
static void
add_double (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

/* v / ref, or NAN where the reference scored nothing to compare with. */
static double
relative (double v, double ref)
{
  return ref > 0.0 ? v / ref : NAN;
}

static void
add_double_array (JsonBuilder *b, const char *key, const GArray *values)
{
  json_builder_set_member_name (b, key);
  json_builder_begin_array (b);
  for (guint i = 0; values != NULL && i < values->len; i++)
    json_builder_add_double_value (b, g_array_index (values, double, i));
  json_builder_end_array (b);
}

static JsonNode *
row_json (const Row *r, const Row *ref)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  char *name = g_filename_display_name (r->name);    /* JSON strings are UTF-8 */
  json_builder_set_member_name (b, "model");
  json_builder_add_string_value (b, name);
  g_free (name);
  json_builder_set_member_name (b, "quantized");
  json_builder_add_boolean_value (b, r->model->quantized);
  json_builder_set_member_name (b, "n_images");
  json_builder_add_int_value (b, r->s.n_images);
  json_builder_set_member_name (b, "n_objects");
  json_builder_add_int_value (b, r->s.n_objects);
  json_builder_set_member_name (b, "n_skipped_empty");
  json_builder_add_int_value (b, r->s.n_skipped_empty);
  add_double (b, "miou_point", r->s.miou[0]);
  add_double (b, "miou_box", r->s.miou[1]);
  if (ref != NULL) {
    char *ref_name = g_filename_display_name (ref->name);
    json_builder_set_member_name (b, "reference_model");
    json_builder_add_string_value (b, ref_name);
    g_free (ref_name);
    add_double (b, "reference_miou_point", ref->s.miou[0]);
    add_double (b, "reference_miou_box", ref->s.miou[1]);
    add_double (b, "relative_miou_point", relative (r->s.miou[0], ref->s.miou[0]));
    add_double (b, "relative_miou_box", relative (r->s.miou[1], ref->s.miou[1]));
    for (int k = 0; k < 2; k++) {
      const int changed = changed_objects (r, ref, k);
      if (changed >= 0) {
        json_builder_set_member_name (b, k == 0 ? "changed_point" : "changed_box");
        json_builder_add_int_value (b, changed);
      }
    }
  }
  const size_t bytes = model_bytes (r->model), fp16 = sam2_model_fp16_bytes (r->model);
  json_builder_set_member_name (b, "size_bytes");
  json_builder_add_int_value (b, (gint64) bytes);
  json_builder_set_member_name (b, "fp16_size_bytes");
  json_builder_add_int_value (b, (gint64) fp16);
  add_double (b, "compression_vs_fp16", (double) fp16 / bytes);
  add_double (b, "encoder_ms", r->s.encoder_ms);
  add_double (b, "decoder_ms", r->s.decoder_ms);
  json_builder_set_member_name (b, "backend");
  json_builder_add_string_value (b, r->s.backend);
  /* how far the mask logits moved from the set's own fp32 outputs: unlike mIoU, it does not
   * hinge on a few objects whose mask flips */
  if (!isnan (r->s.logits_rel_l2[0])) {
    add_double (b, "logits_rel_l2_point", r->s.logits_rel_l2[0]);
    add_double (b, "logits_rel_l2_box", r->s.logits_rel_l2[1]);
  }
  /* per object, in the set's order: which objects a quantized model changes */
  add_double_array (b, "iou_point", r->s.iou[0]);
  add_double_array (b, "iou_box", r->s.iou[1]);
  json_builder_end_object (b);
  JsonNode *node = json_builder_get_root (b);
  g_object_unref (b);
  return node;
}

static gboolean
print_json (Row *rows, int n, const Row *ref, GError **error)
{
  JsonNode *root;
  if (n == 1) {
    root = row_json (&rows[0], ref);
  } else {
    JsonArray *a = json_array_new ();
    for (int i = 0; i < n; i++)
      json_array_add_element (a, row_json (&rows[i], ref));
    root = json_node_new (JSON_NODE_ARRAY);
    json_node_take_array (root, a);
  }
  char *text = json_to_string (root, TRUE);
  const gboolean written = sam2q_print_json (text, error);
  g_free (text);
  json_node_unref (root);
  return written;
}

/* A percentage, or "-" where there is no number. */
static void
print_percent (double v)
{
  if (isfinite (v))
    g_print (" %7.2f%%", 100.0 * v);
  else
    g_print (" %8s", "-");
}

static void
print_table (Row *rows, int n, const Row *ref, const Source *src)
{
  g_print ("evaluated on %s: %d images, %d objects, one point and one box prompt each\n",
           src->eval_set ? src->eval_set : src->root ? src->root : src->dataset,
           rows[0].s.n_images, rows[0].s.n_objects);
  /* every row ran with the same options, so on the same backend */
  if (rows[0].s.n_skipped_empty > 0)
    g_print ("left out: %d objects whose ground-truth mask is empty (no IoU is defined)\n",
             rows[0].s.n_skipped_empty);
  g_print ("backend: %s\n\n", rows[0].s.backend);
  int width = 40;  /* the model column fits the longest name */
  for (int i = 0; i < n; i++)
    width = MAX (width, (int) strlen (rows[i].name));
  g_print ("%-*s %8s %8s", width, "model", "mIoU pt", "mIoU box");
  if (ref != NULL)
    g_print (" %8s %8s %11s", "rel pt", "rel box", "changed");
  g_print (" %9s %8s %9s %9s\n", "size MB", "vs FP16", "enc ms", "dec ms");
  for (int i = 0; i < n; i++) {
    const Row *r = &rows[i];
    const size_t bytes = model_bytes (r->model);
    g_print ("%-*s %8.4f %8.4f", width, r->name, r->s.miou[0], r->s.miou[1]);
    if (ref != NULL) {
      print_percent (relative (r->s.miou[0], ref->s.miou[0]));
      print_percent (relative (r->s.miou[1], ref->s.miou[1]));
      const int cp = changed_objects (r, ref, 0), cb = changed_objects (r, ref, 1);
      char changed[32] = "-";
      if (cp >= 0 && cb >= 0)
        g_snprintf (changed, sizeof changed, "%d / %d", cp, cb);
      g_print (" %11s", changed);
    }
    g_print (" %9.2f %7.2fx %9.1f %9.2f\n", bytes / 1e6,
             (double) sam2_model_fp16_bytes (r->model) / bytes, r->s.encoder_ms, r->s.decoder_ms);
  }
  if (ref != NULL)
    g_print ("\nreference %s: mIoU point %.4f, box %.4f; changed: objects whose IoU moved by "
             "more than %.1f from the reference's (point / box)\n", ref->name, ref->s.miou[0],
             ref->s.miou[1], CHANGED_IOU);
}

/* Options that the chosen source does not read are errors, not ignored: --seed with COCO or -n
 * with an eval set would otherwise look as if they had taken effect. */
static gboolean
options_fit_source (const Source *src, const char *coco_root, const char *sa1b_root,
                    GError **error)
{
  const char *kind = src->eval_set != NULL ? "--eval-set" : src->dataset;
  const char *wrong = NULL;
  if (src->eval_set != NULL && src->num_samples != SAM2Q_UNSET)
    wrong = "--num-samples";
  else if (g_strcmp0 (src->dataset, "random") != 0 && src->seed != SAM2Q_UNSET)
    wrong = "--seed";
  else if (g_strcmp0 (src->dataset, "coco") != 0 && coco_root != NULL)
    wrong = "--coco-root";
  else if (g_strcmp0 (src->dataset, "sa1b") != 0 && sa1b_root != NULL)
    wrong = "--sa1b-root";
  if (wrong == NULL)
    return TRUE;
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "%s does not apply to %s%s; leave it out", wrong,
               src->eval_set != NULL ? "" : "--dataset ", kind);
  return FALSE;
}

/* eval needs ground truth: images and video, which quantize reads, have none. Checked before
 * the usage as a whole, whose text did not say which kind was wrong. */
static gboolean
dataset_kind_ok (const char *kind, GError **error)
{
  static const char *const kinds[] = { "coco", "sa1b", "random", NULL };
  if (kind == NULL || g_strv_contains (kinds, kind))
    return TRUE;
  if (g_strv_contains (sam2q_dataset_kinds (), kind))
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--dataset %s has no ground truth to evaluate against; eval takes coco, sa1b or "
                 "random", kind);
  else
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "unknown --dataset '%s'; eval takes coco, sa1b or random", kind);
  return FALSE;
}

/* Whether `reference` names a model on this machine, found as sam2_model_load finds it but
 * without reading its weights: a typo in the second MODEL or in --reference-model then fails at
 * once, not after the first model's whole evaluation. */
static gboolean
model_found (const char *reference, GError **error)
{
  if (sam2_qmodel_file_check (reference))
    return TRUE;
  Sam2ModelFiles *files = sam2_hub_resolve (reference, NULL);
  if (files != NULL) {
    sam2_model_files_free (files);
    return TRUE;
  }
  /* the loader's own message (where it looked, how to fetch the files): it stops at the same
   * place, before any weights */
  Sam2Model *model = sam2_model_load (reference, error);
  sam2_model_unref (model);
  return model != NULL;
}

static gboolean
models_found (char **models, int n, const char *reference, GError **error)
{
  for (int i = 0; i < n; i++)
    if (!model_found (models[i], error))
      return FALSE;
  if (reference != NULL && !model_found (reference, error)) {
    g_prefix_error (error, "reference model: ");
    return FALSE;
  }
  return TRUE;
}

int
sam2q_cmd_eval (int argc, char **argv)
{
  Source src = { .num_samples = SAM2Q_UNSET, .seed = SAM2Q_UNSET };
  char *reference = NULL, *coco_root = NULL, *sa1b_root = NULL;
  gboolean json = FALSE;
  int threads = SAM2Q_UNSET;
  Sam2qBackendArgs bargs = { NULL, NULL };
  GOptionEntry entries[] = {
    { "eval-set", 'e', 0, G_OPTION_ARG_FILENAME, &src.eval_set,
      "an evaluation set in the fixtures' format (e.g. sam2-shapes/eval_dev.safetensors)", "FILE" },
    { "dataset", 'd', 0, G_OPTION_ARG_STRING, &src.dataset,
      "coco, sa1b or random: prompts and ground truth from the annotations", "KIND" },
    { "coco-root", 0, 0, G_OPTION_ARG_FILENAME, &coco_root,
      "COCO root (val2017/ and annotations/instances_val2017.json)", "DIR" },
    { "sa1b-root", 0, 0, G_OPTION_ARG_FILENAME, &sa1b_root, "directory of SA-1B sa_*.jpg/json",
      "DIR" },
    { "num-samples", 'n', 0, G_OPTION_ARG_INT, &src.num_samples,
      "--dataset only: images to evaluate (default: all; random: 64)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT, &src.seed,
      "random: seed of the generated pictures (default 1; calibration takes the recipe's "
      "calib.seed, 0 by default: evaluate on other pictures than those)", "N" },
    { "reference-model", 'r', 0, G_OPTION_ARG_STRING, &reference,
      "also evaluate this model on the same prompts and report relative mIoU", "REF" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print JSON instead of a table", NULL },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: one per core)", "N" },
    SAM2Q_BACKEND_ENTRIES (bargs),
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("MODEL [MODEL...] - mask quality, size and latency");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1, n_rows = 0;
  Row *rows = NULL, ref = { 0 };

  gboolean parsed = g_option_context_parse (ctx, &argc, &argv, &error)
                    && dataset_kind_ok (src.dataset, &error);
  if (parsed && src.dataset != NULL)
    src.root = g_strdup (g_strcmp0 (src.dataset, "coco") == 0   ? coco_root
                         : g_strcmp0 (src.dataset, "sa1b") == 0 ? sa1b_root
                                                                : NULL);
  if (!parsed || argc < 2 || (src.eval_set == NULL) == (src.dataset == NULL)
      || (src.dataset != NULL && g_strcmp0 (src.dataset, "random") != 0 && src.root == NULL)) {
    if (error == NULL)
      g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "expected one or more MODELs and either --eval-set FILE or --dataset "
                           "coco --coco-root DIR (or sa1b --sa1b-root DIR, or random)");
    rc = SAM2Q_EXIT_USAGE;
    sam2q_fail ("eval", error);
    goto out;
  }
  if (!sam2q_set_threads (threads, &error)
      || !sam2q_int_option_ok ("num-samples", src.num_samples, 1, G_MAXINT, &error)
      || !options_fit_source (&src, coco_root, sa1b_root, &error))
    goto fail;
  if (src.seed == SAM2Q_UNSET)
    src.seed = EVAL_DEFAULT_SEED;
  if (src.num_samples == SAM2Q_UNSET)
    src.num_samples = 0;    /* the dataset's default */
  if (!sam2q_backend_args_resolve (&bargs, &src.session, &error))
    goto fail;
  /* a missing set is found before any model is loaded (and not blamed on the first model) */
  if (src.eval_set != NULL && !g_file_test (src.eval_set, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (&error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "--eval-set %s: %s (an evaluation set in the fixtures' format, e.g. "
                 "sam2-shapes/eval_dev.safetensors)", src.eval_set,
                 g_file_test (src.eval_set, G_FILE_TEST_EXISTS) ? "not a file" : "no such file");
    goto fail;
  }
  if (!models_found (argv + 1, argc - 1, reference, &error))
    goto fail;
  rows = g_new0 (Row, argc - 1);
  n_rows = argc - 1;
  for (int i = 0; i < n_rows; i++) {
    rows[i].name = argv[i + 1];
    /* loading errors name the file already */
    if ((rows[i].model = sam2_model_load (argv[i + 1], &error)) == NULL)
      goto fail;
    if (!evaluate (rows[i].model, &src, &rows[i].s, &error)) {
      g_prefix_error (&error, "evaluating %s: ", argv[i + 1]);
      goto fail;
    }
  }
  /* the reference: a row's scores when it is one of the models (the float model usually is),
   * else evaluated on its own */
  const Row *refp = NULL;
  for (int i = 0; reference != NULL && i < n_rows && refp == NULL; i++)
    if (strcmp (rows[i].name, reference) == 0)
      refp = &rows[i];
  if (reference != NULL && refp == NULL) {
    refp = &ref;
    ref.name = reference;
    if ((ref.model = sam2_model_load (reference, &error)) == NULL) {
      g_prefix_error (&error, "reference model: ");
      goto fail;
    }
    if (!evaluate (ref.model, &src, &ref.s, &error)) {
      g_prefix_error (&error, "reference %s: ", reference);
      goto fail;
    }
  }
  if (json) {
    if (!print_json (rows, n_rows, refp, &error))
      goto fail;
  } else {
    print_table (rows, n_rows, refp, &src);
    if (!sam2q_stdout_flush ("the table", &error))
      goto fail;
  }
  rc = 0;
  goto out;
fail:
  rc = sam2q_fail ("eval", error);
out:
  g_clear_error (&error);
  for (int i = 0; i < n_rows; i++) {
    sam2_model_unref (rows[i].model);
    sam2q_eval_scores_clear (&rows[i].s);
  }
  g_free (rows);
  sam2_model_unref (ref.model);
  sam2q_eval_scores_clear (&ref.s);
  g_option_context_free (ctx);
  g_free (src.eval_set);
  g_free (src.dataset);
  g_free (src.root);
  g_free (coco_root);
  g_free (sa1b_root);
  g_free (reference);
  sam2q_backend_args_clear (&bargs);
  return rc;
}
