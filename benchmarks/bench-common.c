/* bench-common.c: what the benchmarks share (see bench-common.h). */
#include "bench-common.h"

#include "config.h"
#include "backend.h"
#include "model.h"

#include <stdlib.h>

double
bench_now_ms (void)
{
  return g_get_monotonic_time () / 1e3;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

double
bench_median (double *v, int n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

float *
bench_hash_pixels (size_t n)
{
  float *pixels = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    pixels[i] = (float) ((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  return pixels;
}

gboolean
bench_parse_options (int *argc, char ***argv, const GOptionEntry *entries, const char *summary)
{
  GOptionContext *ctx = g_option_context_new (summary);
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  const gboolean ok = g_option_context_parse (ctx, argc, argv, &error);
  if (!ok) {
    g_printerr ("%s\n", error->message);
    g_error_free (error);
  }
  g_option_context_free (ctx);
  return ok;
}

Sam2Model *
bench_load_model (const char *model_ref, const char *hash_config, const char **name,
                  GError **error)
{
  const char *from = model_ref;
  Sam2Model *model;
  if (model_ref != NULL) {
    model = sam2_model_load (model_ref, error);
  } else {
    Sam2Config config;
    from = hash_config ? hash_config : "../shared/fixtures/sam2-tiny-hash/config.json";
    model = sam2_config_load (from, &config, error) ? sam2_model_new_hashed (&config, error)
                                                     : NULL;
  }
  if (name != NULL)
    *name = from;
  return model;
}

/* `model` quantized per the recipe at `recipe_path`, calibrated on one frame of hash pixels: the
 * layout and cost of a quantized model, for speed only (one frame makes poor statistics). The
 * reference to `model` is taken. */
static Sam2Model *
quantize_for_speed (Sam2Model *model, const char *recipe_path, GError **error)
{
  Sam2Recipe *recipe = sam2_recipe_load (recipe_path, error);
  Sam2Calibrator *calib = recipe ? sam2_calibrator_new (model, recipe, error) : NULL;
  Sam2Model *quantized = NULL;
  if (calib != NULL) {
    const int S = sam2_model_get_image_size (model);
    float *pixels = bench_hash_pixels ((size_t) 3 * S * S); /* (3, S, S) */
    if (sam2_calibrator_add_pixels (calib, pixels, error))
      quantized = sam2_calibrator_quantize (calib, NULL, NULL, error);
    g_free (pixels);
  }
  sam2_calibrator_free (calib);
  sam2_recipe_free (recipe);
  sam2_model_unref (model);
  return quantized;
}

Sam2Model *
bench_cpu_model_start (int *argc, char ***argv, const char *summary, const char *iterations_help,
                       int *iterations, Sam2Precision *precision, int *exit_code)
{
  char *model_ref = NULL, *hash_config = NULL, *recipe = NULL, *precision_name = NULL;
  int threads = 0;
  *iterations = 5;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_STRING, &model_ref, "model directory, HF id or shortcut", "REF" },
    { "hash-config", 'c', 0, G_OPTION_ARG_FILENAME, &hash_config,
      "build the model from CONFIG.json with hash weights (default: the tiny fixture config)",
      "CONFIG" },
    { "iterations", 'n', 0, G_OPTION_ARG_INT, iterations, iterations_help, "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: all cores)", "N" },
    { "quantize", 'q', 0, G_OPTION_ARG_FILENAME, &recipe,
      "quantize the (float) model per RECIPE.yaml first, calibrated on one hash frame (for speed, "
      "not accuracy)", "RECIPE" },
    { "precision", 'p', 0, G_OPTION_ARG_STRING, &precision_name,
      "fp32 (default) or bf16 (CPUs with AVX-512 BF16)", "P" },
    { NULL }
  };
  *exit_code = 2;
  if (!bench_parse_options (argc, argv, entries, summary))
    return NULL;
  GError *error = NULL;
  Sam2SessionOptions o = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, 1 };
  const gboolean parsed = sam2_session_options_parse (&o, NULL, precision_name, &error);
  g_free (precision_name);
  if (!parsed || !sam2_backend_cpu_supports (o.precision, &error)) {
    g_printerr ("--precision: %s\n", error->message);
    g_error_free (error);
    g_free (model_ref);
    g_free (hash_config);
    g_free (recipe);
    return NULL;
  }
  *precision = o.precision;
  *exit_code = 1;
  sam2_set_num_threads (threads);
  Sam2Model *model = bench_load_model (model_ref, hash_config, NULL, &error);
  if (model == NULL) {
    g_printerr ("cannot build the model: %s\n", error->message);
    g_clear_error (&error);
  } else if (recipe != NULL && (model = quantize_for_speed (model, recipe, &error)) == NULL) {
    g_printerr ("cannot quantize the model: %s\n", error->message);
    g_clear_error (&error);
  } else if (recipe != NULL) {
    g_print ("quantized per %s from one hash frame (speed, not accuracy); the peak resident "
             "memory printed includes that calibration\n", recipe);
  }
  g_free (model_ref);
  g_free (hash_config);
  g_free (recipe);
  return model;
}
