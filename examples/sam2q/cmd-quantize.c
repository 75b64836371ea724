/* sam2q quantize --model MODEL [--config RECIPE.yaml] [--dataset KIND ...] [--output-dir DIR]
 *
 * Calibrates the float model on frames of a dataset (decoded with GStreamer), quantizes it per
 * the recipe and writes one .safetensors file. A progress bar on a terminal, plain lines
 * otherwise. */
#include "commands.h"
#include "datasets.h"
#include "model.h"
#include "qmodel.h"
#include "quantize.h"
#include "recipe.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  gboolean tty;
  gint64 start;
  const char *last_stage;
} Progress;

static void
progress_line (Progress *p, const char *stage, int done, int total, const char *item, double err)
{
  const double secs = (g_get_monotonic_time () - p->start) / 1e6;
  if (p->tty) {
    const int width = 30, filled = total > 0 ? width * done / total : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
      bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    g_printerr ("\r\033[K%-11s [%s] %d/%d  %6.1f s  %s", stage, bar, done, total, secs,
                item ? item : "");
    if (done == total)
      g_printerr ("\n");
  } else {
    if (isnan (err))
      g_printerr ("%s %d/%d %.1fs %s\n", stage, done, total, secs, item ? item : "");
    else
      g_printerr ("%s %d/%d %.1fs %s error %.4f\n", stage, done, total, secs, item, err);
  }
  p->last_stage = stage;
}

static void
on_quant_progress (gpointer data, const char *stage, int done, int total, const char *item,
                   double error)
{
  progress_line (data, stage, done, total, item, error);
}

typedef struct {
  const char *kind;
  const char *path;
  Sam2qDatasetOptions opts;
} Source;

/* sha256 over the frames' sizes and pixels: the calibration set's identity for the cache. */
static char *
frames_digest (const Source *src, GError **error)
{
  Sam2qDataset *ds = sam2q_dataset_open (src->kind, src->path, &src->opts, error);
  if (ds == NULL)
    return NULL;
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  Sam2qSample s = { 0 };
  while (sam2q_dataset_next (ds, &s, error)) {
    const int dims[2] = { s.image->width, s.image->height };
    g_checksum_update (sum, (const guchar *) dims, sizeof dims);
    for (int y = 0; y < s.image->height; y++)
      g_checksum_update (sum, s.image->pixels + (size_t) y * s.image->stride, s.image->width * 3);
  }
  char *hex = error != NULL && *error != NULL ? NULL : g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  sam2q_sample_clear (&s);
  sam2q_dataset_free (ds);
  return hex;
}

static gboolean
calibrate (Sam2Calibrator *c, const Source *src, Progress *p, GError **error)
{
  Sam2qDataset *ds = sam2q_dataset_open (src->kind, src->path, &src->opts, error);
  if (ds == NULL)
    return FALSE;
  Sam2qSample s = { 0 };
  gboolean ok = TRUE;
  int n = 0;
  const int total = src->opts.limit;
  while (ok && sam2q_dataset_next (ds, &s, error)) {
    ok = sam2_calibrator_add_image (c, s.image->pixels, s.image->width, s.image->height,
                                    s.image->stride, SAM2_PIXEL_FORMAT_RGB, error);
    if (ok) {
      n++;
      progress_line (p, "calibrating", n, MAX (total, n), s.name, NAN);
    } else {
      g_prefix_error (error, "%s dataset, sample %d (%s): ", src->kind, s.index, s.name);
    }
  }
  if (ok && error != NULL && *error != NULL)
    ok = FALSE;
  /* the library would say only that it has no calibration frames */
  if (ok && n == 0) {
    char *display = src->path != NULL ? g_filename_display_name (src->path) : NULL;
    g_set_error (error, SAM2Q_DATASET_ERROR, SAM2Q_DATASET_ERROR_NOT_FOUND,
                 "the %s dataset%s%s contained no pictures to calibrate on", src->kind,
                 display != NULL ? " at " : "", display != NULL ? display : "");
    g_free (display);
    ok = FALSE;
  }
  sam2q_sample_clear (&s);
  sam2q_dataset_free (ds);
  return ok;
}

/* DIR/<model>-<recipe>.safetensors, known before the model loads: a directory (or a device)
 * already there under that name is refused before calibrating, not after. */
static char *
output_path (const char *dir, const char *model_ref, const Sam2Recipe *recipe, GError **error)
{
  char *file = sam2_quantized_file_name (model_ref, recipe);
  char *path = g_build_filename (dir, file, NULL);
  g_free (file);
  if (!g_file_test (path, G_FILE_TEST_EXISTS) || g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return path;
  char *display = g_filename_display_name (path);
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
               "%s is %s, where the model would be written; move it away or choose another "
               "--output-dir", display,
               g_file_test (path, G_FILE_TEST_IS_DIR) ? "a directory" : "not a regular file");
  g_free (display);
  g_free (path);
  return NULL;
}

/* Input channels that were zero on every calibration row lose their weights (GPTQ zeroes them:
 * on these frames they carried nothing): harmless if they stay zero on the user's video, wrong
 * if not, so say which layers and what to do. */
static void
warn_dead_channels (const GPtrArray *rep)
{
  int layers = 0, channels = 0;
  const Sam2LayerReport *most = NULL;
  for (guint i = 0; i < rep->len; i++) {
    const Sam2LayerReport *r = rep->pdata[i];
    if (r->dead_channels == 0)
      continue;
    layers++;
    channels += r->dead_channels;
    if (most == NULL || r->dead_channels > most->dead_channels)
      most = r;
  }
  if (layers > 0)
    g_printerr ("warning: %d layer%s had input channels that were zero on every calibration frame "
                "(%d in all; most in %s: %d of %d); GPTQ set their weights to 0. If such inputs "
                "can be active on your video, calibrate on more (or more varied) frames\n",
                layers, layers == 1 ? "" : "s", channels, most->name, most->dead_channels,
                most->k);
}

static void
print_summary (Sam2Calibrator *c, Sam2Model *fp, Sam2Model *q, const char *path, double secs)
{
  const GPtrArray *rep = sam2_calibrator_get_report (c);
  double sum = 0.0, worst = 0.0;
  const Sam2LayerReport *w = NULL;
  for (guint i = 0; i < rep->len; i++) {
    const Sam2LayerReport *r = rep->pdata[i];
    sum += r->error;
    if (r->error > worst) {
      worst = r->error;
      w = r;
    }
  }
  const size_t bytes = sam2_qmodel_weight_bytes (q), fp16 = sam2_model_fp16_bytes (fp);
  g_print ("quantized %u layers from %d frames in %.1f s\n", rep->len,
           sam2_calibrator_get_n_frames (c), secs);
  if (rep->len > 0)
    g_print ("layer output error: mean %.4f, worst %.4f (%s)\n", sum / rep->len, worst,
             w ? w->name : "");
  /* a recipe that keeps most layers float (or in float32), or a large rank, can make the file
   * larger than FP16: say so rather than "0.50x smaller" */
  const double ratio = (double) fp16 / bytes;
  g_print ("size %.2f MB, %.2fx %s than FP16 (%.2f MB)\n", bytes / 1e6,
           ratio >= 1.0 ? ratio : 1.0 / ratio, ratio >= 1.0 ? "smaller" : "larger", fp16 / 1e6);
  if (rep->len == 0)
    g_printerr ("warning: the recipe quantized no layer (its skips cover every one)\n");
  warn_dead_channels (rep);
  if (path != NULL)
    g_print ("wrote %s\n", path);
}

int
sam2q_cmd_quantize (int argc, char **argv)
{
  char *model_ref = NULL, *config = NULL, *out_dir = NULL, *dataset = NULL, *coco_root = NULL;
  char *sa1b_root = NULL, *data_path = NULL, *device = NULL, *dtype = NULL, *cache_dir = NULL;
  int num_samples = SAM2Q_UNSET, batch_size = SAM2Q_UNSET, threads = SAM2Q_UNSET;
  int frame_stride = SAM2Q_UNSET;
  gboolean no_save = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_STRING, &model_ref,
      "tiny, small, base, large, a directory or an HF id (required)", "MODEL" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
      "recipe YAML (configs/*.yaml; default: W4 GPTQ g128 + per-token A8)", "RECIPE" },
    { "output-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir,
      "where <model>-<recipe>.safetensors goes (default: .)", "DIR" },
    { "dataset", 'd', 0, G_OPTION_ARG_STRING, &dataset,
      "calibration frames: random (default), coco, sa1b, images, video", "KIND" },
    { "coco-root", 0, 0, G_OPTION_ARG_FILENAME, &coco_root, "COCO root for --dataset coco", "DIR" },
    { "sa1b-root", 0, 0, G_OPTION_ARG_FILENAME, &sa1b_root, "SA-1B directory for --dataset sa1b",
      "DIR" },
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &data_path,
      "image directory (--dataset images) or video file (--dataset video)", "PATH" },
    { "frame-stride", 0, 0, G_OPTION_ARG_INT, &frame_stride, "video: take every Nth frame", "N" },
    { "num-calib-samples", 'n', 0, G_OPTION_ARG_INT, &num_samples,
      "calibration frames (default: the recipe's calib.num_samples)", "N" },
    { "batch-size", 'b', 0, G_OPTION_ARG_INT, &batch_size,
      "frames per encoder pass, 1 to 32, as recipes' calib.batch_size (default: the recipe's): "
      "the same statistics as one at a time; meant for --device cuda (the CPU gains nothing); "
      "memory grows with it", "N" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device,
      "cpu (default) or cuda: where the float model runs and the statistics are gathered",
      "DEVICE" },
    { "dtype", 0, 0, G_OPTION_ARG_STRING, &dtype,
      "precision of the float model during calibration: float32 (default), bfloat16 (CUDA, "
      "or CPUs with AVX-512 BF16) or float16 (CUDA): 16-bit GEMM and attention operands",
      "DTYPE" },
    { "cache-dir", 0, 0, G_OPTION_ARG_FILENAME, &cache_dir,
      "reuse calibration statistics of the same model, frames and recipe", "DIR" },
    { "no-save-model", 0, 0, G_OPTION_ARG_NONE, &no_save, "quantize and report, write nothing",
      NULL },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: one per core)", "N" },
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("- quantize a SAM2 model (W4A8) from calibration "
                                              "frames");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1;
  Sam2Recipe *recipe = NULL;
  Sam2Model *fp = NULL, *q = NULL;
  Sam2Calibrator *c = NULL;
  char *path = NULL, *digest = NULL;
  Progress progress = { isatty (STDERR_FILENO), g_get_monotonic_time (), NULL };
  Source src = { 0 };

  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 1 || model_ref == NULL) {
    if (error == NULL)
      g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "--model is required and there are no positional arguments (see sam2q "
                           "quantize --help)");
    rc = SAM2Q_EXIT_USAGE;
    sam2q_fail ("quantize", error);
    goto out;
  }
  /* the float model's backend and precision during calibration */
  Sam2SessionOptions run = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  if (device != NULL && strcmp (device, "cpu") != 0) {
    if (strcmp (device, "cuda") != 0) {
      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--device %s: use cpu or cuda", device);
      goto fail;
    }
    run.backend = SAM2_BACKEND_CUDA;
  }
  if (dtype != NULL && strcmp (dtype, "float32") != 0) {
    const gboolean f16 = strcmp (dtype, "float16") == 0, bf16 = strcmp (dtype, "bfloat16") == 0;
    GError *inner = NULL;
    if (!f16 && !bf16) {
      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--dtype %s: use float32, float16 or bfloat16", dtype);
      goto fail;
    }
    if (f16 && run.backend != SAM2_BACKEND_CUDA) {
      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--dtype float16: the CPU backend computes in float32 or bfloat16; use --dtype "
                   "float32 or bfloat16, or --device cuda for a float16 model");
      goto fail;
    }
    run.precision = f16 ? SAM2_PRECISION_FP16 : SAM2_PRECISION_BF16;
    if (run.backend == SAM2_BACKEND_CPU
        && !sam2_precision_available (run.backend, run.precision, &inner)) {
      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--dtype bfloat16: %s; use --dtype float32, or --device cuda", inner->message);
      g_error_free (inner);
      goto fail;
    }
  }
  src.kind = dataset ? dataset : "random";
  /* before anything reads them: an unknown kind named as such, and options the kind does not
   * read refused rather than ignored */
  if (!g_strv_contains (sam2q_dataset_kinds (), src.kind)) {
    g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "unknown --dataset '%s'; the kinds are random, coco, sa1b, images and video",
                 src.kind);
    goto fail;
  }
  const struct { const char *option; gboolean given; const char *kind; } owned[] = {
    { "--coco-root", coco_root != NULL, "coco" },
    { "--sa1b-root", sa1b_root != NULL, "sa1b" },
    { "--frame-stride", frame_stride != SAM2Q_UNSET, "video" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (owned); i++)
    if (owned[i].given && strcmp (src.kind, owned[i].kind) != 0) {
      g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "%s is read only with --dataset %s (the dataset is %s)", owned[i].option,
                   owned[i].kind, src.kind);
      goto fail;
    }
  if (data_path != NULL && strcmp (src.kind, "images") != 0 && strcmp (src.kind, "video") != 0) {
    g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--data is read only with --dataset images or video (the dataset is %s)",
                 src.kind);
    goto fail;
  }
  src.path = strcmp (src.kind, "coco") == 0   ? coco_root
             : strcmp (src.kind, "sa1b") == 0 ? sa1b_root
                                              : data_path;
  if (strcmp (src.kind, "random") != 0 && src.path == NULL) {
    g_set_error (&error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--dataset %s needs %s", src.kind,
                 strcmp (src.kind, "coco") == 0   ? "--coco-root DIR"
                 : strcmp (src.kind, "sa1b") == 0 ? "--sa1b-root DIR"
                                                  : "--data PATH");
    goto fail;
  }
  /* the recipe's own ranges (core/quant/recipe.c) for the counts it holds */
  if (!sam2q_int_option_ok ("num-calib-samples", num_samples, 1, 100000, &error)
      || !sam2q_int_option_ok ("batch-size", batch_size, 1, SAM2_SESSION_MAX_BATCH, &error)
      || !sam2q_int_option_ok ("frame-stride", frame_stride, 1, G_MAXINT, &error))
    goto fail;
  if (config != NULL && (recipe = sam2_recipe_load (config, &error)) == NULL)
    goto fail;
  if (recipe == NULL) {
    recipe = g_new0 (Sam2Recipe, 1);
    sam2_recipe_init_defaults (recipe);
  }
  if (num_samples != SAM2Q_UNSET)
    recipe->calib.num_samples = num_samples;
  if (batch_size != SAM2Q_UNSET)
    recipe->calib.batch_size = batch_size;
  src.opts.limit = recipe->calib.num_samples;
  src.opts.seed = recipe->calib.seed;
  src.opts.frame_stride = frame_stride != SAM2Q_UNSET ? frame_stride : 1;
  const char *dir = out_dir ? out_dir : ".";
  if (!no_save && (!sam2_check_output_dir (dir, "output", "choose another --output-dir", &error)
                   || (path = output_path (dir, model_ref, recipe, &error)) == NULL))
    goto fail;
  if (!sam2q_set_threads (threads, &error))
    goto fail;
  if ((fp = sam2_model_load (model_ref, &error)) == NULL)
    goto fail;
  if ((c = sam2_calibrator_new_full (fp, recipe, &run, &error)) == NULL)
    goto fail;
  g_printerr ("calibrating on %s\n", sam2_calibrator_describe_backend (c));

  gboolean hit = FALSE;
  if (cache_dir != NULL) {
    if ((digest = frames_digest (&src, &error)) == NULL
        || !sam2_calibrator_use_cache (c, cache_dir, digest, &hit, &error))
      goto fail;
    if (hit)
      g_printerr ("calibration statistics of %d frames loaded from %s\n",
                  sam2_calibrator_get_n_frames (c), cache_dir);
  }
  if (!hit) {
    const gint64 t0 = g_get_monotonic_time ();
    if (!calibrate (c, &src, &progress, &error) || !sam2_calibrator_flush (c, &error))
      goto fail;
    const double secs = (g_get_monotonic_time () - t0) / 1e6;
    const int n = sam2_calibrator_get_n_frames (c);
    g_printerr ("ran %d frame%s through the float model in %.1f s (%.0f ms per frame)\n", n,
                n == 1 ? "" : "s", secs, n > 0 ? 1e3 * secs / n : 0.0);
    if (n > 0 && n < recipe->calib.num_samples)
      g_printerr ("sam2q quantize: warning: the dataset had %d frame%s of the %d asked for "
                  "(-n / calib.num_samples); calibrating on %s\n", n, n == 1 ? "" : "s",
                  recipe->calib.num_samples, n == 1 ? "it" : "those");
  }
  if ((q = sam2_calibrator_quantize (c, on_quant_progress, &progress, &error)) == NULL)
    goto fail;
  if (path != NULL && !sam2_model_save (q, path, &error))
    goto fail;
  print_summary (c, fp, q, path, (g_get_monotonic_time () - progress.start) / 1e6);
  if (!sam2q_stdout_flush ("the summary", &error))
    goto fail;
  rc = 0;
  goto out;
fail:
  rc = sam2q_fail ("quantize", error);
out:
  g_clear_error (&error);
  sam2_calibrator_free (c);
  sam2_model_unref (q);
  sam2_model_unref (fp);
  sam2_recipe_free (recipe);
  g_option_context_free (ctx);
  g_free (path);
  g_free (digest);
  g_free (model_ref);
  g_free (config);
  g_free (out_dir);
  g_free (dataset);
  g_free (coco_root);
  g_free (sa1b_root);
  g_free (data_path);
  g_free (device);
  g_free (dtype);
  g_free (cache_dir);
  return rc;
}
