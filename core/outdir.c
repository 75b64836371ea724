/* outdir.c: output directories of the tools that write models (sam2q quantize, sam2calib).
 *
 * A run checks its output directory before minutes of calibration, but creates it only when
 * it writes the model, and removes what it created if that write fails: a failed or stopped
 * run leaves no trace, not even an empty directory. */
#include "sam2.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

/* `dir` itself when it exists, else its nearest existing ancestor (".", "/" at worst). */
static char *
nearest_existing (const char *dir)
{
  char *at = g_strdup (dir);
  while (!g_file_test (at, G_FILE_TEST_EXISTS)) {
    char *up = g_path_get_dirname (at);
    const gboolean top = strcmp (up, at) == 0;
    g_free (at);
    at = up;
    if (top)
      break;
  }
  return at;
}

/* Makes and removes a file in `dir`: the one test that sees permissions, read-only mounts and
 * ACLs alike. errno of the failure, or 0. */
static int
probe_write (const char *dir)
{
  char *probe = g_build_filename (dir, ".sam2-write-test-XXXXXX", NULL);
  const int fd = g_mkstemp (probe);
  const int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    close (fd);
    g_unlink (probe);
  }
  g_free (probe);
  return err;
}

gboolean
sam2_check_output_dir (const char *dir, const char *what, const char *hint, GError **error)
{
  g_return_val_if_fail (dir != NULL && what != NULL && hint != NULL, FALSE);
  char *base = nearest_existing (dir);
  const gboolean exists = strcmp (base, dir) == 0;
  int err = g_file_test (base, G_FILE_TEST_IS_DIR) ? probe_write (base) : ENOTDIR;
  if (err != 0) {
    if (exists)
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
                   "cannot write to the %s directory %s: %s; %s", what, dir, g_strerror (err),
                   hint);
    else
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
                   "cannot create the %s directory %s: %s: %s; %s", what, dir, base,
                   g_strerror (err), hint);
  }
  g_free (base);
  return err == 0;
}

gboolean
sam2_output_dir_create (const char *dir, char **created, GError **error)
{
  g_return_val_if_fail (dir != NULL && created != NULL, FALSE);
  *created = NULL;
  if (g_file_test (dir, G_FILE_TEST_IS_DIR))
    return TRUE;
  /* the topmost missing directory: the one to remove (with what is below it) on failure */
  char *top = g_strdup (dir);
  for (;;) {
    char *up = g_path_get_dirname (top);
    if (strcmp (up, top) == 0 || g_file_test (up, G_FILE_TEST_EXISTS)) {
      g_free (up);
      break;
    }
    g_free (top);
    top = up;
  }
  if (g_mkdir_with_parents (dir, 0755) != 0) {
    const int err = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
                 "cannot create the directory %s: %s", dir, g_strerror (err));
    sam2_output_dir_remove_created (dir, top);
    g_free (top);
    return FALSE;
  }
  *created = top;
  return TRUE;
}

void
sam2_output_dir_remove_created (const char *dir, const char *created)
{
  if (dir == NULL || created == NULL)
    return;
  /* innermost first; g_rmdir removes only empty directories, so nothing written is lost */
  char *at = g_strdup (dir);
  for (;;) {
    const gboolean last = strcmp (at, created) == 0;
    if (g_rmdir (at) != 0 && errno != ENOENT)
      break;
    char *up = g_path_get_dirname (at);
    const gboolean top = strcmp (up, at) == 0;
    g_free (at);
    at = up;
    if (last || top)
      break;
  }
  g_free (at);
}
