/* corpus-main.c: replays fuzz corpora without libFuzzer, so that they run as regression tests.
 *
 * Linked with one fuzz-<target>.c; each argument is a corpus directory whose files are passed,
 * one by one, to the target's LLVMFuzzerTestOneInput. A crash or abort fails the test; so does a
 * missing or empty directory, so a corpus cannot silently drop out of CI.
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* A copy of exactly `size` bytes, so that an overread leaves the allocation (valgrind, ASan). */
static void
run_one (const char *path)
{
  GError *error = NULL;
  char *contents;
  gsize size;
  if (!g_file_get_contents (path, &contents, &size, &error))
    g_error ("cannot read %s: %s", path, error->message);
  uint8_t *copy = g_malloc (MAX (size, 1));
  memcpy (copy, contents, size);
  g_free (contents);
  LLVMFuzzerTestOneInput (copy, size);
  g_free (copy);
}

static int
run_directory (const char *path)
{
  GError *error = NULL;
  GDir *dir = g_dir_open (path, 0, &error);
  if (dir == NULL) {
    g_printerr ("cannot open corpus %s: %s\n", path, error->message);
    g_error_free (error);
    return -1;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_build_filename (path, name, NULL));
  g_dir_close (dir);
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++) {
    g_print ("%s\n", (const char *) names->pdata[i]);
    run_one (names->pdata[i]);
  }
  int n = (int) names->len;
  g_ptr_array_unref (names);
  return n;
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    g_printerr ("usage: %s CORPUS_DIR...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    int n = run_directory (argv[i]);
    if (n <= 0) {
      g_printerr ("corpus %s is missing or empty\n", argv[i]);
      return 1;
    }
    g_print ("%d inputs from %s: no crash\n", n, argv[i]);
  }
  return 0;
}
