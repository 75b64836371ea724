/* tmp-tree.c: see tmp-tree.h. */
#include "tmp-tree.h"

#include <glib/gstdio.h>

void
remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK)) {
    GDir *dir = g_dir_open (path, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
      g_free (child);
    }
    if (dir != NULL)
      g_dir_close (dir);
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}
