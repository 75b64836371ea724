/* test-hub.c: model references against fake HuggingFace caches and checkpoint directories built
 * in a temporary directory. HOME points there too, so the real cache is never read. */
#include "test-support.h"

#include "hub.h"
#include "sam2.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TINY_ID "facebook/sam2.1-hiera-tiny"
#define TINY_REPO "models--facebook--sam2.1-hiera-tiny"

typedef struct {
  char *root;                  /* the temporary directory */
} Fixture;

static const char *const hub_env_vars[] = {
  "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME",
};

static void
write_file (const char *root, const char *relative, const char *contents)
{
  char *path = g_build_filename (root, relative, NULL);
  char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  GError *error = NULL;
  g_file_set_contents (path, contents, -1, &error);
  g_assert_no_error (error);
  g_free (dir);
  g_free (path);
}

static void
make_dir (const char *root, const char *relative)
{
  char *path = g_build_filename (root, relative, NULL);
  g_assert_cmpint (g_mkdir_with_parents (path, 0755), ==, 0);
  g_free (path);
}

/* relative `link` in `root` -> `target` (as given, relative to the link's directory) */
static void
make_symlink (const char *root, const char *link, const char *target)
{
  char *path = g_build_filename (root, link, NULL);
  char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_cmpint (symlink (target, path), ==, 0);
  g_free (dir);
  g_free (path);
}

/* rm -rf that does not follow symlinks */
static void
remove_tree (const char *path)
{
  GStatBuf st;
  if (g_lstat (path, &st) != 0)
    return;
  if (S_ISDIR (st.st_mode)) {
    GDir *dir = g_dir_open (path, 0, NULL);
    g_assert_nonnull (dir);
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
      g_free (child);
    }
    g_dir_close (dir);
    g_assert_cmpint (g_rmdir (path), ==, 0);
  } else {
    g_assert_cmpint (g_unlink (path), ==, 0);
  }
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  f->root = g_dir_make_tmp ("sam2-hub-XXXXXX", &error);
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (hub_env_vars); i++)
    g_unsetenv (hub_env_vars[i]);
  char *home = g_build_filename (f->root, "home", NULL);
  g_setenv ("HOME", home, TRUE);
  g_free (home);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  remove_tree (f->root);
  g_assert_false (g_file_test (f->root, G_FILE_TEST_EXISTS));
  g_free (f->root);
}

static char *
path_in (const Fixture *f, const char *relative)
{
  return g_build_filename (f->root, relative, NULL);
}

/* A cache at <root>/<cache> holding tiny with its files as HF stores them: symlinks from the
 * snapshot into blobs/. */
static char *
make_tiny_cache (const Fixture *f, const char *cache)
{
  char *repo = g_build_filename (cache, TINY_REPO, NULL);
  char *r = g_build_filename (f->root, repo, NULL);
  write_file (r, "refs/main", "abc123\n");
  write_file (r, "blobs/c0ffee", "{\"model_type\": \"sam2_video\"}");
  write_file (r, "blobs/beef", "weights");
  make_symlink (r, "snapshots/abc123/config.json", "../../blobs/c0ffee");
  make_symlink (r, "snapshots/abc123/model.safetensors", "../../blobs/beef");
  g_free (r);
  return repo;
}

static void
assert_files (const Sam2ModelFiles *files, const char *config, const char *const *weights,
              const char *hf_id)
{
  g_assert_nonnull (files);
  g_assert_cmpstr (files->config_path, ==, config);
  g_assert_nonnull (files->weight_paths);
  g_assert_cmpuint (g_strv_length (files->weight_paths), ==, g_strv_length ((char **) weights));
  for (guint i = 0; weights[i] != NULL; i++)
    g_assert_cmpstr (files->weight_paths[i], ==, weights[i]);
  g_assert_cmpstr (files->hf_id, ==, hf_id);
  g_assert_true (g_file_test (files->config_path, G_FILE_TEST_IS_REGULAR));
}

/* Resolution must fail with `code` and a message holding every needle (NULL-terminated). */
static void
assert_resolve_error (const char *reference, int code, ...)
{
  GError *error = NULL;
  Sam2ModelFiles *files = sam2_hub_resolve (reference, &error);
  if (files != NULL)
    g_error ("'%s' unexpectedly resolved to %s", reference, files->config_path);
  g_assert_error (error, SAM2_ERROR, code);
  va_list args;
  va_start (args, code);
  const char *needle;
  while ((needle = va_arg (args, const char *)) != NULL)
    if (strstr (error->message, needle) == NULL)
      g_error ("message \"%s\" lacks \"%s\"", error->message, needle);
  va_end (args);
  g_test_message ("ok: %s", error->message);
  g_error_free (error);
}

#define ASSERT_RESOLVE_ERROR(reference, code, ...)                                                 \
  assert_resolve_error (reference, code, __VA_ARGS__, NULL)

/* ---- tests ---------------------------------------------------------------------------------- */

static void
test_shortcuts (void)
{
  g_assert_cmpstr (sam2_hub_shortcut_id ("tiny"), ==, TINY_ID);
  g_assert_cmpstr (sam2_hub_shortcut_id ("small"), ==, "facebook/sam2.1-hiera-small");
  g_assert_cmpstr (sam2_hub_shortcut_id ("base"), ==, "facebook/sam2.1-hiera-base-plus");
  g_assert_cmpstr (sam2_hub_shortcut_id ("base-plus"), ==, "facebook/sam2.1-hiera-base-plus");
  g_assert_cmpstr (sam2_hub_shortcut_id ("large"), ==, "facebook/sam2.1-hiera-large");
  g_assert_cmpstr (sam2_hub_shortcut_id ("TINY"), ==, TINY_ID);
  g_assert_cmpstr (sam2_hub_shortcut_id ("Base-Plus"), ==, "facebook/sam2.1-hiera-base-plus");
  g_assert_cmpstr (sam2_hub_shortcut_id ("sam2.1-hiera-tiny"), ==, TINY_ID);
  g_assert_cmpstr (sam2_hub_shortcut_id ("SAM2.1-Hiera-Large"), ==, "facebook/sam2.1-hiera-large");
  g_assert_cmpstr (sam2_hub_shortcut_id ("sam2-hiera-small"), ==, "facebook/sam2-hiera-small");
  g_assert_null (sam2_hub_shortcut_id ("huge"));
  g_assert_null (sam2_hub_shortcut_id ("tiny2"));
  g_assert_null (sam2_hub_shortcut_id (" tiny"));
  g_assert_null (sam2_hub_shortcut_id (""));
  g_assert_null (sam2_hub_shortcut_id (TINY_ID));
  g_assert_null (sam2_hub_shortcut_id (NULL));
  sam2_model_files_free (NULL);
}

static void
assert_cache_dir (const char *expected)
{
  char *dir = sam2_hub_cache_dir ();
  g_assert_cmpstr (dir, ==, expected);
  g_free (dir);
}

/* huggingface_hub/constants.py: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
 * XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. */
static void
test_cache_dir (Fixture *f, gconstpointer data)
{
  char *home = path_in (f, "home");
  char *expected = g_build_filename (home, ".cache", "huggingface", "hub", NULL);
  assert_cache_dir (expected);
  g_free (expected);

  g_setenv ("XDG_CACHE_HOME", "/xdg", TRUE);
  assert_cache_dir ("/xdg/huggingface/hub");
  g_setenv ("HF_HOME", "/hfhome", TRUE);
  assert_cache_dir ("/hfhome/hub");
  g_setenv ("HUGGINGFACE_HUB_CACHE", "/legacy", TRUE);
  assert_cache_dir ("/legacy");
  g_setenv ("HF_HUB_CACHE", "/hubcache", TRUE);
  assert_cache_dir ("/hubcache");

  /* a leading ~ is the home directory, as Python's expanduser does */
  g_setenv ("HF_HUB_CACHE", "~/my-cache", TRUE);
  expected = g_build_filename (home, "my-cache", NULL);
  assert_cache_dir (expected);
  g_free (expected);
  g_setenv ("HF_HUB_CACHE", "~", TRUE);
  assert_cache_dir (home);
  g_setenv ("HF_HUB_CACHE", "~user/x", TRUE);   /* only ~ and ~/ expand */
  assert_cache_dir ("~user/x");

  /* empty variables count as unset */
  g_setenv ("HF_HUB_CACHE", "", TRUE);
  assert_cache_dir ("/legacy");
  g_unsetenv ("HUGGINGFACE_HUB_CACHE");
  g_setenv ("HF_HOME", "~/hf", TRUE);
  expected = g_build_filename (home, "hf", "hub", NULL);
  assert_cache_dir (expected);
  g_free (expected);
  g_setenv ("HF_HOME", "", TRUE);
  g_setenv ("XDG_CACHE_HOME", "~/xdg", TRUE);
  expected = g_build_filename (home, "xdg", "huggingface", "hub", NULL);
  assert_cache_dir (expected);
  g_free (expected);
  g_free (home);
}

static void
test_resolve_ids (Fixture *f, gconstpointer data)
{
  char *repo = make_tiny_cache (f, "cache");
  char *cache = path_in (f, "cache");
  char *snapshot = g_build_filename (f->root, repo, "snapshots", "abc123", NULL);
  char *config = g_build_filename (snapshot, "config.json", NULL);
  char *weights = g_build_filename (snapshot, "model.safetensors", NULL);
  const char *expected_weights[] = { weights, NULL };
  g_setenv ("HF_HUB_CACHE", cache, TRUE);

  const char *references[] = {
    "tiny", "TINY", TINY_ID, "sam2.1-hiera-tiny", "tiny@main", TINY_ID "@main", "tiny@abc123",
  };
  for (guint i = 0; i < G_N_ELEMENTS (references); i++) {
    GError *error = NULL;
    Sam2ModelFiles *files = sam2_hub_resolve (references[i], &error);
    g_assert_no_error (error);
    assert_files (files, config, expected_weights, TINY_ID);
    sam2_model_files_free (files);
  }

  /* the same cache found through HF_HOME, XDG_CACHE_HOME and HOME */
  const char *const homes[][3] = {
    { "HF_HOME", "hfhome", "hfhome/hub" },
    { "XDG_CACHE_HOME", "xdg", "xdg/huggingface/hub" },
    { "HOME", "home", "home/.cache/huggingface/hub" },
  };
  g_unsetenv ("HF_HUB_CACHE");
  for (guint i = 0; i < G_N_ELEMENTS (homes); i++) {
    char *other_repo = make_tiny_cache (f, homes[i][2]);
    char *value = g_build_filename (f->root, homes[i][1], NULL);
    g_setenv (homes[i][0], value, TRUE);
    char *other_config = g_build_filename (f->root, other_repo, "snapshots", "abc123",
                                           "config.json", NULL);
    GError *error = NULL;
    Sam2ModelFiles *files = sam2_hub_resolve ("tiny", &error);
    g_assert_no_error (error);
    g_assert_cmpstr (files->config_path, ==, other_config);
    sam2_model_files_free (files);
    g_unsetenv (homes[i][0]);
    g_free (other_config);
    g_free (value);
    g_free (other_repo);
  }
  g_setenv ("HOME", "/nonexistent-home", TRUE);
  g_setenv ("HF_HUB_CACHE", cache, TRUE);

  /* not cached: where it looked, and how to fetch it */
  ASSERT_RESOLVE_ERROR ("large", SAM2_ERROR_NOT_FOUND,
                        "model 'large' (facebook/sam2.1-hiera-large) is not in the HuggingFace "
                        "cache at ", cache, "models--facebook--sam2.1-hiera-large",
                        "fetch it with: hf download facebook/sam2.1-hiera-large (or "
                        "huggingface-cli download facebook/sam2.1-hiera-large)",
                        "or pass a directory containing config.json and model.safetensors");
  ASSERT_RESOLVE_ERROR ("someone/sam2-finetune", SAM2_ERROR_NOT_FOUND,
                        "model 'someone/sam2-finetune' is not in the HuggingFace cache",
                        "hf download someone/sam2-finetune");
  ASSERT_RESOLVE_ERROR ("large@v2", SAM2_ERROR_NOT_FOUND,
                        "hf download facebook/sam2.1-hiera-large --revision v2");

  /* revisions */
  ASSERT_RESOLVE_ERROR ("tiny@v9", SAM2_ERROR_NOT_FOUND,
                        "revision 'v9' is neither a ref under", "--revision v9");
  ASSERT_RESOLVE_ERROR ("tiny@../../../etc", SAM2_ERROR_NOT_FOUND,
                        "'../../../etc' is not a valid revision");
  ASSERT_RESOLVE_ERROR ("tiny@", SAM2_ERROR_NOT_FOUND, "'' is not a valid revision");
  ASSERT_RESOLVE_ERROR (TINY_ID "@/abs", SAM2_ERROR_NOT_FOUND, "not a valid revision");
  char *repo_dir = g_build_filename (f->root, repo, NULL);
  write_file (repo_dir, "refs/v1", "def456");
  write_file (repo_dir, "snapshots/def456/config.json", "{}");
  write_file (repo_dir, "snapshots/def456/model.safetensors", "w");
  write_file (repo_dir, "refs/pr/7", "abc123");
  GError *error = NULL;
  Sam2ModelFiles *files = sam2_hub_resolve ("tiny@v1", &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (files->config_path, "snapshots/def456/config.json"));
  sam2_model_files_free (files);
  files = sam2_hub_resolve (TINY_ID "@def456", &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (files->config_path, "snapshots/def456/config.json"));
  sam2_model_files_free (files);
  files = sam2_hub_resolve ("tiny@pr/7", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (files->config_path, ==, config);
  sam2_model_files_free (files);

  /* refs/main pointing nowhere */
  write_file (repo_dir, "refs/main", "0000");
  ASSERT_RESOLVE_ERROR ("tiny", SAM2_ERROR_NOT_FOUND, "refs/main in ", "points to commit 0000",
                        "is missing", "hf download " TINY_ID);
  /* no refs/main: the only snapshot, else a choice to make */
  char *main_ref = g_build_filename (repo_dir, "refs", "main", NULL);
  g_assert_cmpint (g_unlink (main_ref), ==, 0);
  ASSERT_RESOLVE_ERROR ("tiny", SAM2_ERROR_NOT_FOUND, "has no refs/main and 2 snapshots (abc123, "
                        "def456)", TINY_ID "@<revision>");
  char *second = g_build_filename (repo_dir, "snapshots", "def456", NULL);
  remove_tree (second);
  files = sam2_hub_resolve ("tiny", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (files->config_path, ==, config);
  sam2_model_files_free (files);
  char *snapshots = g_build_filename (repo_dir, "snapshots", NULL);
  remove_tree (snapshots);
  ASSERT_RESOLVE_ERROR ("tiny", SAM2_ERROR_NOT_FOUND, "has no snapshot",
                        "hf download " TINY_ID);

  /* an interrupted download: the snapshot lacks files, or its links dangle */
  write_file (repo_dir, "refs/main", "abc123");
  make_symlink (repo_dir, "snapshots/abc123/config.json", "../../blobs/missing");
  ASSERT_RESOLVE_ERROR ("tiny", SAM2_ERROR_NOT_FOUND, "model 'tiny' (" TINY_ID ", snapshot ",
                        "has no config.json (an interrupted download?)", "hf download " TINY_ID);
  write_file (repo_dir, "snapshots/abc123/model.safetensors.index.json",
              "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}");
  char *link = g_build_filename (repo_dir, "snapshots", "abc123", "config.json", NULL);
  g_assert_cmpint (g_unlink (link), ==, 0);
  make_symlink (repo_dir, "snapshots/abc123/config.json", "../../blobs/c0ffee");
  ASSERT_RESOLVE_ERROR (TINY_ID, SAM2_ERROR_NOT_FOUND, "lists the shard "
                        "model-00001-of-00002.safetensors, which is missing",
                        "hf download " TINY_ID);

  g_free (link);
  g_free (snapshots);
  g_free (second);
  g_free (main_ref);
  g_free (repo_dir);
  g_free (weights);
  g_free (config);
  g_free (snapshot);
  g_free (cache);
  g_free (repo);
}

static void
test_resolve_directories (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  /* a save_pretrained directory, as a path and through its files */
  write_file (f->root, "ckpt/config.json", "{}");
  write_file (f->root, "ckpt/model.safetensors", "w");
  char *dir = path_in (f, "ckpt");
  char *config = g_build_filename (dir, "config.json", NULL);
  char *weights = g_build_filename (dir, "model.safetensors", NULL);
  const char *single[] = { weights, NULL };
  const char *references[] = { dir, config, weights };
  for (guint i = 0; i < G_N_ELEMENTS (references); i++) {
    Sam2ModelFiles *files = sam2_hub_resolve (references[i], &error);
    g_assert_no_error (error);
    assert_files (files, config, single, NULL);
    sam2_model_files_free (files);
  }
  /* an existing directory wins over a shortcut of the same name (as transformers does) */
  char *cwd = g_get_current_dir ();
  g_assert_cmpint (g_chdir (f->root), ==, 0);
  write_file (f->root, "tiny/config.json", "{}");
  write_file (f->root, "tiny/model.safetensors", "w");
  Sam2ModelFiles *files = sam2_hub_resolve ("tiny", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (files->config_path, ==, "tiny/config.json");
  g_assert_null (files->hf_id);
  sam2_model_files_free (files);
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  g_free (cwd);

  /* a weights file with another name, from a directory holding config.json */
  write_file (f->root, "ckpt/quantized-w4a8.safetensors", "w");
  char *other = g_build_filename (dir, "quantized-w4a8.safetensors", NULL);
  const char *other_weights[] = { other, NULL };
  files = sam2_hub_resolve (other, &error);
  g_assert_no_error (error);
  assert_files (files, config, other_weights, NULL);
  sam2_model_files_free (files);

  /* what is missing, precisely */
  write_file (f->root, "noconfig/model.safetensors", "w");
  char *noconfig = path_in (f, "noconfig");
  ASSERT_RESOLVE_ERROR (noconfig, SAM2_ERROR_NOT_FOUND, "directory ", "has no config.json; a SAM2 "
                        "checkpoint directory holds config.json and model.safetensors");
  char *noconfig_weights = g_build_filename (noconfig, "model.safetensors", NULL);
  ASSERT_RESOLVE_ERROR (noconfig_weights, SAM2_ERROR_NOT_FOUND, "has no config.json next to it");
  write_file (f->root, "noweights/config.json", "{}");
  char *noweights = path_in (f, "noweights");
  ASSERT_RESOLVE_ERROR (noweights, SAM2_ERROR_NOT_FOUND, "has config.json but neither "
                        "model.safetensors nor model.safetensors.index.json");
  write_file (f->root, "noweights/pytorch_model.bin", "w");
  ASSERT_RESOLVE_ERROR (noweights, SAM2_ERROR_NOT_FOUND, "only pytorch_model.bin");
  make_dir (f->root, "nested/config.json");   /* a directory named config.json is no config */
  char *nested = path_in (f, "nested");
  ASSERT_RESOLVE_ERROR (nested, SAM2_ERROR_NOT_FOUND, "has no config.json");
  char *readme = path_in (f, "ckpt/README.md");
  write_file (f->root, "ckpt/README.md", "hi");
  ASSERT_RESOLVE_ERROR (readme, SAM2_ERROR_NOT_FOUND, "is a file but neither");

  /* references that name nothing */
  ASSERT_RESOLVE_ERROR ("", SAM2_ERROR_NOT_FOUND, "empty model reference");
  ASSERT_RESOLVE_ERROR ("./nope", SAM2_ERROR_NOT_FOUND, "./nope: no such file or directory");
  ASSERT_RESOLVE_ERROR ("/nope/a/b", SAM2_ERROR_NOT_FOUND, "no such file or directory");
  ASSERT_RESOLVE_ERROR ("nope.safetensors", SAM2_ERROR_NOT_FOUND, "no such file or directory");
  ASSERT_RESOLVE_ERROR ("hiera", SAM2_ERROR_NOT_FOUND,
                        "model 'hiera' is neither an existing directory or .safetensors file, an "
                        "HF id (org/name[@revision]) nor a shortcut (tiny, small, base, "
                        "base-plus, large)");
  ASSERT_RESOLVE_ERROR ("org/na--me", SAM2_ERROR_NOT_FOUND, "neither");
  ASSERT_RESOLVE_ERROR ("org/../x", SAM2_ERROR_NOT_FOUND, "no such file or directory");

  g_free (readme);
  g_free (nested);
  g_free (noweights);
  g_free (noconfig_weights);
  g_free (noconfig);
  g_free (other);
  g_free (weights);
  g_free (config);
  g_free (dir);
}

static void
test_resolve_sharded (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  write_file (f->root, "big/config.json", "{}");
  write_file (f->root, "big/model.safetensors.index.json",
              "{\"metadata\": {\"total_size\": 12},\n \"weight_map\": {"
              "\"vision_encoder.a\": \"model-00002-of-00002.safetensors\","
              " \"vision_encoder.b\": \"model-00001-of-00002.safetensors\","
              " \"mask_decoder.c\": \"model-00002-of-00002.safetensors\"}}");
  write_file (f->root, "big/model-00001-of-00002.safetensors", "1");
  write_file (f->root, "big/model-00002-of-00002.safetensors", "2");
  char *dir = path_in (f, "big");
  char *config = g_build_filename (dir, "config.json", NULL);
  char *shard1 = g_build_filename (dir, "model-00001-of-00002.safetensors", NULL);
  char *shard2 = g_build_filename (dir, "model-00002-of-00002.safetensors", NULL);
  const char *shards[] = { shard1, shard2, NULL };

  Sam2ModelFiles *files = sam2_hub_resolve (dir, &error);
  g_assert_no_error (error);
  assert_files (files, config, shards, NULL);
  sam2_model_files_free (files);
  /* one shard brings the others along */
  files = sam2_hub_resolve (shard2, &error);
  g_assert_no_error (error);
  assert_files (files, config, shards, NULL);
  sam2_model_files_free (files);
  /* a file the index does not list stays alone */
  write_file (f->root, "big/extra.safetensors", "x");
  char *extra = g_build_filename (dir, "extra.safetensors", NULL);
  const char *alone[] = { extra, NULL };
  files = sam2_hub_resolve (extra, &error);
  g_assert_no_error (error);
  assert_files (files, config, alone, NULL);
  sam2_model_files_free (files);

  /* model.safetensors wins over an index, as in transformers */
  write_file (f->root, "big/model.safetensors", "w");
  char *single = g_build_filename (dir, "model.safetensors", NULL);
  const char *single_weights[] = { single, NULL };
  files = sam2_hub_resolve (dir, &error);
  g_assert_no_error (error);
  assert_files (files, config, single_weights, NULL);
  sam2_model_files_free (files);
  g_assert_cmpint (g_unlink (single), ==, 0);

  /* a missing shard */
  g_assert_cmpint (g_unlink (shard1), ==, 0);
  ASSERT_RESOLVE_ERROR (dir, SAM2_ERROR_NOT_FOUND, "model.safetensors.index.json lists the shard "
                        "model-00001-of-00002.safetensors, which is missing");
  ASSERT_RESOLVE_ERROR (shard2, SAM2_ERROR_NOT_FOUND, "which is missing");

  /* corrupt or hostile indexes */
  struct {
    const char *index;
    const char *needle;
  } bad[] = {
    { "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}", "weight_map[\"a\"] is not a file name in "
      "the index's directory" },
    { "{\"weight_map\": {\"a\": \"/abs.safetensors\"}}", "is not a file name" },
    { "{\"weight_map\": {\"a\": \"..\"}}", "is not a file name" },
    { "{\"weight_map\": {\"a\": 3}}", "is not a file name" },
    { "{\"weight_map\": {}}", "\"weight_map\" is empty" },
    { "{\"metadata\": {}}", "no \"weight_map\" object" },
    { "{\"weight_map\": [\"a\"]}", "no \"weight_map\" object" },
    { "[]", "no \"weight_map\" object" },
    { "{\"weight_map\": {\"a\": \"x\"", "invalid JSON at line 1" },
    { "", "invalid JSON" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    write_file (f->root, "big/model.safetensors.index.json", bad[i].index);
    ASSERT_RESOLVE_ERROR (dir, SAM2_ERROR_FORMAT, "model.safetensors.index.json: ", bad[i].needle);
  }
  /* deep nesting, which json-glib alone would recurse into */
  GString *deep = g_string_new ("{\"weight_map\": ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  write_file (f->root, "big/model.safetensors.index.json", deep->str);
  g_string_free (deep, TRUE);
  ASSERT_RESOLVE_ERROR (dir, SAM2_ERROR_FORMAT, "nested more than 64 levels");
  /* a weights file next to a corrupt index stays alone */
  files = sam2_hub_resolve (extra, &error);
  g_assert_no_error (error);
  assert_files (files, config, alone, NULL);
  sam2_model_files_free (files);

  /* an unreadable index */
  if (geteuid () != 0) {
    char *index = g_build_filename (dir, "model.safetensors.index.json", NULL);
    g_assert_cmpint (g_chmod (index, 0), ==, 0);
    ASSERT_RESOLVE_ERROR (dir, SAM2_ERROR_IO, "cannot read");
    g_free (index);
  }

  g_free (single);
  g_free (extra);
  g_free (shard2);
  g_free (shard1);
  g_free (config);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/hub/shortcuts", test_shortcuts);
  g_test_add ("/hub/cache-dir", Fixture, NULL, fixture_setup, test_cache_dir, fixture_teardown);
  g_test_add ("/hub/resolve/ids", Fixture, NULL, fixture_setup, test_resolve_ids,
              fixture_teardown);
  g_test_add ("/hub/resolve/directories", Fixture, NULL, fixture_setup, test_resolve_directories,
              fixture_teardown);
  g_test_add ("/hub/resolve/sharded", Fixture, NULL, fixture_setup, test_resolve_sharded,
              fixture_teardown);
  return g_test_run ();
}
