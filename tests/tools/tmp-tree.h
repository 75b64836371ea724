/* tmp-tree.h: the temporary directories of the tools tests. */
#ifndef SAM2_TESTS_TMP_TREE_H
#define SAM2_TESTS_TMP_TREE_H

#include <glib.h>

G_BEGIN_DECLS

/* Removes `path` and, if it is a directory, everything under it (symbolic links are removed,
 * never followed). Errors are ignored. */
void remove_tree (const char *path);

G_END_DECLS

#endif
