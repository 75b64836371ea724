/* test-support.h: finding the reference fixtures and comparing tensors in the core tests. */
#ifndef SAM2_TEST_SUPPORT_H
#define SAM2_TEST_SUPPORT_H

#include <glib.h>
#include "safetensors.h"

/* $SAM2_FIXTURES, else the build's default (../shared/fixtures next to the project). */
const char *sam2_test_fixtures_dir (void);

/* The absolute path of `relative` inside the fixtures, or NULL after calling g_test_skip() with a
 * message saying which file is missing and how to point the tests at the fixtures. */
char *sam2_test_fixture_path (const char *relative);

/* Opens a fixture safetensors file, or skips (NULL) when absent; fails the test when corrupt. */
Sam2Safetensors *sam2_test_open_fixture (const char *relative);

/* ||a - b||_2 / max(||b||_2, tiny): the relative L2 error used against float64 references. */
double sam2_rel_l2 (const float *a, const float *b, size_t n);
/* max |a - b| */
double sam2_max_abs_diff (const float *a, const float *b, size_t n);

#endif
