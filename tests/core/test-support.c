/* test-support.c */
#include "test-support.h"

#include "config.h"
#include "model.h"

#include <math.h>

const char *
sam2_test_fixtures_dir (void)
{
  const char *dir = g_getenv ("SAM2_FIXTURES");
  if (dir != NULL && *dir != '\0')
    return dir;
  dir = g_getenv ("SAM2_FIXTURES_DEFAULT");
  return dir != NULL ? dir : "../shared/fixtures";
}

char *
sam2_test_fixture_path (const char *relative)
{
  char *path = g_build_filename (sam2_test_fixtures_dir (), relative, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    char *msg = g_strdup_printf ("fixture %s not found; set SAM2_FIXTURES to the fixtures directory "
                                 "(default ../shared/fixtures next to the project)", path);
    g_test_skip (msg);
    g_free (msg);
    g_free (path);
    return NULL;
  }
  return path;
}

Sam2Safetensors *
sam2_test_open_fixture (const char *relative)
{
  char *path = sam2_test_fixture_path (relative);
  if (path == NULL)
    return NULL;
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_free (path);
  return st;
}

double
sam2_rel_l2 (const float *a, const float *b, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - (double) b[i];
    num += d * d;
    den += (double) b[i] * (double) b[i];
  }
  return sqrt (num) / fmax (sqrt (den), 1e-30);
}

double
sam2_max_abs_diff (const float *a, const float *b, size_t n)
{
  double m = 0.0;
  for (size_t i = 0; i < n; i++)
    m = fmax (m, fabs ((double) a[i] - (double) b[i]));
  return m;
}

void
sam2_test_assert_report_passes (Sam2CheckReport *report, int min_cases)
{
  g_test_message ("backend: %s", report->backend);
  for (guint i = 0; i < report->entries->len; i++) {
    const Sam2CheckEntry *e = report->entries->pdata[i];
    g_test_message ("%-40s rel_l2 %.3e max_abs %.3e (bound %.0e) %s", e->name, e->rel_l2,
                    e->max_abs, e->tolerance, e->pass ? "PASS" : "FAIL");
  }
  for (guint i = 0; i < report->entries->len; i++) {
    const Sam2CheckEntry *e = report->entries->pdata[i];
    if (!e->pass)
      g_error ("%s on %s: relative L2 error %.3e exceeds %.0e", e->name, report->backend,
               e->rel_l2, e->tolerance);
  }
  g_assert_cmpint (report->n_cases, >=, min_cases);
  g_assert_cmpint (report->n_failed, ==, 0);
}

Sam2Model *
sam2_test_load_mini (void)
{
  char *dir = sam2_test_fixture_path ("sam2-mini-hash");
  if (dir == NULL)
    return NULL;
  GError *error = NULL;
  Sam2Model *model = sam2_model_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return model;
}

Sam2Model *
sam2_test_hashed_model (const char *config_path)
{
  GError *error = NULL;
  Sam2Config config;
  g_assert_true (sam2_config_load (config_path, &config, &error));
  g_assert_no_error (error);
  Sam2Model *model = sam2_model_new_hashed (&config, &error);
  g_assert_no_error (error);
  return model;
}

Sam2Model *
sam2_test_tiny_hashed (void)
{
  char *cfg = sam2_test_fixture_path ("sam2-tiny-hash/config.json");
  if (cfg == NULL)
    return NULL;
  Sam2Model *model = sam2_test_hashed_model (cfg);
  g_free (cfg);
  return model;
}

Sam2CheckReport *
sam2_test_check_mini_reference (const Sam2SessionOptions *options)
{
  char *ref = sam2_test_fixture_path ("sam2-mini-hash/reference.safetensors");
  Sam2Model *model = ref != NULL ? sam2_test_load_mini () : NULL;
  Sam2CheckReport *report = NULL;
  if (model == NULL)
    goto out;
  GError *error = NULL;
  const char *paths[] = { ref, NULL };
  report = sam2_check_reference_full (model, paths, options, &error);
  g_assert_no_error (error);
  sam2_test_assert_report_passes (report, 10);
  int acts = 0;
  for (guint i = 0; i < report->entries->len; i++)
    acts += g_str_has_prefix (((Sam2CheckEntry *) report->entries->pdata[i])->name, "act/");
  g_assert_cmpint (acts, ==, 11);
  sam2_model_unref (model);
out:
  g_free (ref);
  return report;
}

void
sam2_test_check_tiny_reference (const Sam2SessionOptions *options,
                                void (*inspect) (Sam2Model *model))
{
  char *main_ref = sam2_test_fixture_path ("sam2-tiny-hash/reference_main.safetensors");
  char *feat_ref = sam2_test_fixture_path ("sam2-tiny-hash/reference_feat_s0.safetensors");
  Sam2Model *model = main_ref && feat_ref ? sam2_test_tiny_hashed () : NULL;
  if (model == NULL)
    goto out;
  if (inspect != NULL)
    inspect (model);
  GError *error = NULL;
  const char *paths[] = { main_ref, feat_ref, NULL };
  Sam2CheckReport *report = sam2_check_reference_full (model, paths, options, &error);
  g_assert_no_error (error);
  sam2_test_assert_report_passes (report, 5);
  sam2_check_report_free (report);
  sam2_model_unref (model);
out:
  g_free (main_ref);
  g_free (feat_ref);
}

int
sam2_test_cuda_init (int *argc, char ***argv, const char **recipe_path)
{
  g_test_init (argc, argv, NULL);
  GError *error = NULL;
  if (!sam2_backend_available (SAM2_BACKEND_CUDA, &error)) {
    g_printerr ("skipped: %s\n", error->message);
    g_error_free (error);
    return 77;
  }
  if (*argc != 2) {
    g_printerr ("usage: %s RECIPE.yaml (configs/hiera_tiny_w4a8.yaml)\n", (*argv)[0]);
    return 2;
  }
  *recipe_path = (*argv)[1];
  return 0;
}
