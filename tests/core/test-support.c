/* test-support.c */
#include "test-support.h"

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
