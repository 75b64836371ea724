/* hub.c: model references (paths, HF ids, shortcuts) to files on disk. See hub.h.
 *
 * Nothing here downloads: a missing model is an error whose message names the command that
 * fetches it. Messages list what was tried, since "not found" alone leaves a user guessing
 * which cache, which file, which revision.
 */
#include "hub.h"

#include "config.h"
#include "sam2.h"

#include <json-glib/json-glib.h>
#include <string.h>

#define SAM2_HUB_WEIGHTS "model.safetensors"
#define SAM2_HUB_INDEX "model.safetensors.index.json"
#define SAM2_HUB_CONFIG "config.json"
/* huggingface_hub's validate_repo_id: at most 96 characters per id */
#define SAM2_HUB_MAX_ID 96

typedef struct {
  const char *name;
  const char *id;
} Sam2HubShortcut;

static const Sam2HubShortcut sam2_hub_shortcuts[] = {
  { "tiny", "facebook/sam2.1-hiera-tiny" },
  { "small", "facebook/sam2.1-hiera-small" },
  { "base", "facebook/sam2.1-hiera-base-plus" },
  { "base-plus", "facebook/sam2.1-hiera-base-plus" },
  { "large", "facebook/sam2.1-hiera-large" },
  /* the repo names without their org, as people copy them from the model cards */
  { "sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny" },
  { "sam2.1-hiera-small", "facebook/sam2.1-hiera-small" },
  { "sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-base-plus" },
  { "sam2.1-hiera-large", "facebook/sam2.1-hiera-large" },
  { "sam2-hiera-tiny", "facebook/sam2-hiera-tiny" },
  { "sam2-hiera-small", "facebook/sam2-hiera-small" },
  { "sam2-hiera-base-plus", "facebook/sam2-hiera-base-plus" },
  { "sam2-hiera-large", "facebook/sam2-hiera-large" },
};

/* Where resolution came from, for messages. */
typedef struct {
  const char *reference;       /* as the user typed it */
  const char *hf_id;           /* NULL for a path */
  const char *revision;        /* NULL: main */
} Sam2HubOrigin;

const char *
sam2_hub_shortcut_id (const char *reference)
{
  if (reference == NULL)
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (sam2_hub_shortcuts); i++)
    if (g_ascii_strcasecmp (reference, sam2_hub_shortcuts[i].name) == 0)
      return sam2_hub_shortcuts[i].id;
  return NULL;
}

void
sam2_model_files_free (Sam2ModelFiles *files)
{
  if (files == NULL)
    return;
  g_free (files->config_path);
  g_strfreev (files->weight_paths);
  g_free (files->hf_id);
  g_free (files);
}

/* ---- the cache directory --------------------------------------------------------------------- */

/* os.getenv as huggingface_hub uses it, except that an empty value counts as unset (Python
 * would take "" as the current directory). */
static const char *
sam2_hub_env (const char *name)
{
  const char *value = g_getenv (name);
  return value != NULL && *value != '\0' ? value : NULL;
}

static const char *
sam2_hub_home (void)
{
  /* $HOME first, as Python's expanduser; g_get_home_dir() caches its first answer */
  const char *home = sam2_hub_env ("HOME");
  return home != NULL ? home : g_get_home_dir ();
}

/* os.path.expanduser for "~" and "~/..." */
static char *
sam2_hub_expand_user (const char *path)
{
  if (path[0] == '~' && (path[1] == '\0' || path[1] == '/'))
    return g_build_filename (sam2_hub_home (), path + 1, NULL);
  return g_strdup (path);
}

char *
sam2_hub_cache_dir (void)
{
  const char *value;
  if ((value = sam2_hub_env ("HF_HUB_CACHE")) != NULL
      || (value = sam2_hub_env ("HUGGINGFACE_HUB_CACHE")) != NULL)
    return sam2_hub_expand_user (value);
  char *home;
  if ((value = sam2_hub_env ("HF_HOME")) != NULL)
    home = g_strdup (value);
  else if ((value = sam2_hub_env ("XDG_CACHE_HOME")) != NULL)
    home = g_build_filename (value, "huggingface", NULL);
  else
    home = g_build_filename ("~", ".cache", "huggingface", NULL);
  char *expanded = sam2_hub_expand_user (home);
  char *cache = g_build_filename (expanded, "hub", NULL);
  g_free (expanded);
  g_free (home);
  return cache;
}

/* ---- messages -------------------------------------------------------------------------------- */

static char *
sam2_hub_fetch_hint (const Sam2HubOrigin *origin)
{
  if (origin->hf_id == NULL)
    return g_strdup ("");
  char *revision = origin->revision != NULL ? g_strdup_printf (" --revision %s", origin->revision)
                                            : g_strdup ("");
  char *hint = g_strdup_printf ("; fetch it with: hf download %s%s (or huggingface-cli download "
                                "%s%s)", origin->hf_id, revision, origin->hf_id, revision);
  g_free (revision);
  return hint;
}

/* "model 'tiny' (facebook/sam2.1-hiera-tiny)", "model 'org/name'", "directory /x" */
static char *
sam2_hub_describe (const Sam2HubOrigin *origin, const char *dir)
{
  if (origin->hf_id == NULL)
    return g_strdup_printf ("directory %s", dir);
  if (strcmp (origin->reference, origin->hf_id) == 0)
    return g_strdup_printf ("model '%s' (snapshot %s)", origin->reference, dir);
  return g_strdup_printf ("model '%s' (%s, snapshot %s)", origin->reference, origin->hf_id, dir);
}

/* ---- files in a directory -------------------------------------------------------------------- */

static gboolean
sam2_hub_is_file (const char *path)
{
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

/* A shard name from an index: a plain file name, so the index cannot point outside its
 * directory. */
static gboolean
sam2_hub_is_plain_name (const char *name)
{
  return *name != '\0' && strcmp (name, ".") != 0 && strcmp (name, "..") != 0
         && strchr (name, '/') == NULL && strchr (name, '\\') == NULL;
}

static gint
sam2_hub_compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The weight_map object of an index's text. */
static gboolean
sam2_hub_index_weight_map (JsonParser *parser, const char *text, gsize length, JsonObject **map,
                           GError **error)
{
  if (!sam2_config_check_json (text, length, error)
      || !json_parser_load_from_data (parser, text, (gssize) length, error))
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  JsonNode *node = root != NULL && JSON_NODE_HOLDS_OBJECT (root)
                   ? json_object_get_member (json_node_get_object (root), "weight_map") : NULL;
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "no \"weight_map\" object");
    return FALSE;
  }
  *map = json_node_get_object (node);
  return TRUE;
}

/* The unique file names a weight_map maps tensors to, sorted (model-00001-of-0000N first). */
static char **
sam2_hub_index_names (JsonObject *map, GError **error)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GHashTable *seen = g_hash_table_new (g_str_hash, g_str_equal);
  GList *members = json_object_get_members (map);
  gboolean ok = TRUE;
  for (GList *l = members; l != NULL && ok; l = l->next) {
    JsonNode *node = json_object_get_member (map, l->data);
    const char *name = JSON_NODE_HOLDS_VALUE (node)
                       && json_node_get_value_type (node) == G_TYPE_STRING
                       ? json_node_get_string (node) : NULL;
    ok = name != NULL && sam2_hub_is_plain_name (name);
    if (!ok)
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT,
                   "weight_map[\"%s\"] is not a file name in the index's directory",
                   (const char *) l->data);
    else if (g_hash_table_add (seen, (gpointer) name))
      g_ptr_array_add (names, g_strdup (name));
  }
  g_list_free (members);
  g_hash_table_destroy (seen);
  if (ok && names->len == 0) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "\"weight_map\" is empty");
    ok = FALSE;
  }
  if (!ok) {
    g_ptr_array_free (names, TRUE);
    return NULL;
  }
  g_ptr_array_sort (names, sam2_hub_compare_strings);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

/* The shard file names of an index file; NULL with SAM2_ERROR_IO when it cannot be read,
 * SAM2_ERROR_FORMAT when it is corrupt. */
static char **
sam2_hub_read_index (const char *index_path, GError **error)
{
  char *text = NULL;
  gsize length = 0;
  GError *local = NULL;
  if (!g_file_get_contents (index_path, &text, &length, &local)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot read %s: %s", index_path,
                 local->message);
    g_error_free (local);
    return NULL;
  }
  JsonParser *parser = json_parser_new_immutable ();
  JsonObject *map = NULL;
  char **names = NULL;
  if (sam2_hub_index_weight_map (parser, text, length, &map, &local))
    names = sam2_hub_index_names (map, &local);
  g_object_unref (parser);
  g_free (text);
  if (local != NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT, "%s: %s", index_path, local->message);
    g_error_free (local);
  }
  return names;
}

/* The shard paths of `dir`'s index, each checked to exist. */
static char **
sam2_hub_index_shards (const char *dir, const char *index_path, const Sam2HubOrigin *origin,
                       GError **error)
{
  char **names = sam2_hub_read_index (index_path, error);
  if (names == NULL)
    return NULL;
  guint n = g_strv_length (names);
  char **paths = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++) {
    paths[i] = g_build_filename (dir, names[i], NULL);
    if (!sam2_hub_is_file (paths[i])) {
      char *hint = sam2_hub_fetch_hint (origin);
      g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                   "%s lists the shard %s, which is missing (%s)%s", index_path, names[i],
                   paths[i], hint);
      g_free (hint);
      g_strfreev (paths);
      g_strfreev (names);
      return NULL;
    }
  }
  g_strfreev (names);
  return paths;
}

static Sam2ModelFiles *
sam2_hub_files_new (char *config_path, char **weight_paths, const Sam2HubOrigin *origin)
{
  Sam2ModelFiles *files = g_new0 (Sam2ModelFiles, 1);
  files->config_path = config_path;
  files->weight_paths = weight_paths;
  files->hf_id = g_strdup (origin->hf_id);
  return files;
}

static gboolean
sam2_hub_missing_config (const char *dir, const Sam2HubOrigin *origin, GError **error)
{
  char *what = sam2_hub_describe (origin, dir);
  char *hint = sam2_hub_fetch_hint (origin);
  if (origin->hf_id != NULL)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "%s has no " SAM2_HUB_CONFIG " (an interrupted download?)%s", what, hint);
  else
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "%s has no " SAM2_HUB_CONFIG "; a SAM2 checkpoint directory holds "
                 SAM2_HUB_CONFIG " and " SAM2_HUB_WEIGHTS " (as save_pretrained writes them, or "
                 "hf download facebook/sam2.1-hiera-tiny --local-dir DIR)", what);
  g_free (hint);
  g_free (what);
  return FALSE;
}

static gboolean
sam2_hub_missing_weights (const char *dir, const Sam2HubOrigin *origin, GError **error)
{
  char *what = sam2_hub_describe (origin, dir);
  char *hint = sam2_hub_fetch_hint (origin);
  char *bin = g_build_filename (dir, "pytorch_model.bin", NULL);
  const char *only_bin = sam2_hub_is_file (bin)
                         ? "; it has only pytorch_model.bin, which this library does not read: "
                           "convert it with transformers (save_pretrained writes safetensors)"
                         : "";
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
               "%s has " SAM2_HUB_CONFIG " but neither " SAM2_HUB_WEIGHTS " nor " SAM2_HUB_INDEX
               "%s%s", what, only_bin, hint);
  g_free (bin);
  g_free (hint);
  g_free (what);
  return FALSE;
}

/* A checkpoint directory: config.json plus model.safetensors, else the shards of an index. */
static Sam2ModelFiles *
sam2_hub_resolve_dir (const char *dir, const Sam2HubOrigin *origin, GError **error)
{
  char *config = g_build_filename (dir, SAM2_HUB_CONFIG, NULL);
  if (!sam2_hub_is_file (config)) {
    g_free (config);
    sam2_hub_missing_config (dir, origin, error);
    return NULL;
  }
  char **weights = NULL;
  char *single = g_build_filename (dir, SAM2_HUB_WEIGHTS, NULL);
  char *index = g_build_filename (dir, SAM2_HUB_INDEX, NULL);
  if (sam2_hub_is_file (single)) {
    weights = g_new0 (char *, 2);
    weights[0] = g_steal_pointer (&single);
  } else if (sam2_hub_is_file (index)) {
    weights = sam2_hub_index_shards (dir, index, origin, error);
  } else {
    sam2_hub_missing_weights (dir, origin, error);
  }
  g_free (single);
  g_free (index);
  if (weights == NULL) {
    g_free (config);
    return NULL;
  }
  return sam2_hub_files_new (config, weights, origin);
}

/* A .safetensors file: config.json from its directory; a shard listed in that directory's index
 * brings the other shards along, since one shard alone is not a model. */
static Sam2ModelFiles *
sam2_hub_resolve_weights_file (const char *path, const Sam2HubOrigin *origin, GError **error)
{
  char *dir = g_path_get_dirname (path);
  char *config = g_build_filename (dir, SAM2_HUB_CONFIG, NULL);
  if (!sam2_hub_is_file (config)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "%s has no " SAM2_HUB_CONFIG " next to it (looked for %s); the model's "
                 "architecture comes from that file", path, config);
    g_free (config);
    g_free (dir);
    return NULL;
  }
  char **weights = NULL;
  GError *local = NULL;
  char *index = g_build_filename (dir, SAM2_HUB_INDEX, NULL);
  if (sam2_hub_is_file (index)) {
    char *base = g_path_get_basename (path);
    /* an index that does not list this file is another model's business: ignore it */
    char **names = sam2_hub_read_index (index, NULL);
    if (names != NULL && g_strv_contains ((const char *const *) names, base))
      weights = sam2_hub_index_shards (dir, index, origin, &local);
    g_strfreev (names);
    g_free (base);
  }
  g_free (index);
  g_free (dir);
  if (local != NULL) {
    g_propagate_error (error, local);
    g_free (config);
    return NULL;
  }
  if (weights == NULL) {
    weights = g_new0 (char *, 2);
    weights[0] = g_strdup (path);
  }
  return sam2_hub_files_new (config, weights, origin);
}

static Sam2ModelFiles *
sam2_hub_resolve_path (const char *path, GError **error)
{
  const Sam2HubOrigin origin = { path, NULL, NULL };
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    return sam2_hub_resolve_dir (path, &origin, error);
  if (g_str_has_suffix (path, ".safetensors"))
    return sam2_hub_resolve_weights_file (path, &origin, error);
  char *base = g_path_get_basename (path);
  const gboolean is_config = strcmp (base, SAM2_HUB_CONFIG) == 0;
  g_free (base);
  if (is_config) {
    char *dir = g_path_get_dirname (path);
    Sam2ModelFiles *files = sam2_hub_resolve_dir (dir, &origin, error);
    g_free (dir);
    return files;
  }
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
               "%s is a file but neither a checkpoint directory, a .safetensors file nor a "
               SAM2_HUB_CONFIG, path);
  return NULL;
}

/* ---- HF ids in the cache --------------------------------------------------------------------- */

/* One part of an id as huggingface_hub's validate_repo_id allows it: [A-Za-z0-9_.-], no "--"
 * or "..", not starting or ending with '-' or '.'. Keeps ids from naming paths. */
static gboolean
sam2_hub_is_id_part (const char *part, size_t length)
{
  if (length == 0 || length > SAM2_HUB_MAX_ID)
    return FALSE;
  for (size_t i = 0; i < length; i++) {
    const char c = part[i];
    if (!g_ascii_isalnum (c) && c != '_' && c != '.' && c != '-')
      return FALSE;
    if (i > 0 && (c == '-' || c == '.') && part[i - 1] == c)
      return FALSE;
  }
  return strchr ("-.", part[0]) == NULL && strchr ("-.", part[length - 1]) == NULL;
}

static gboolean
sam2_hub_is_id (const char *id)
{
  const char *slash = strchr (id, '/');
  return slash != NULL && strlen (id) <= SAM2_HUB_MAX_ID
         && sam2_hub_is_id_part (id, slash - id)
         && sam2_hub_is_id_part (slash + 1, strlen (slash + 1));
}

/* A branch (a file under refs/, may contain '/') or a commit hash: relative, no "." or ".."
 * components, so it stays inside the model's cache folder. */
static gboolean
sam2_hub_is_revision (const char *revision)
{
  if (*revision == '\0' || *revision == '/')
    return FALSE;
  char **parts = g_strsplit (revision, "/", -1);
  gboolean ok = TRUE;
  for (char **p = parts; *p != NULL && ok; p++)
    ok = **p != '\0' && strcmp (*p, ".") != 0 && strcmp (*p, "..") != 0
         && strchr (*p, '\\') == NULL;
  g_strfreev (parts);
  return ok;
}

/* The commit a ref points to: its file's first line. NULL when the file is absent. */
static char *
sam2_hub_read_ref (const char *repo_dir, const char *revision)
{
  char *path = g_build_filename (repo_dir, "refs", revision, NULL);
  char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL)) {
    g_free (path);
    return NULL;
  }
  g_free (path);
  g_strstrip (text);
  if (!sam2_hub_is_plain_name (text)) {
    g_free (text);
    return NULL;
  }
  return text;
}

/* Snapshot folder names, sorted. */
static GPtrArray *
sam2_hub_list_snapshots (const char *snapshots_dir)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GDir *dir = g_dir_open (snapshots_dir, 0, NULL);
  if (dir == NULL)
    return names;
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL) {
    char *path = g_build_filename (snapshots_dir, name, NULL);
    if (g_file_test (path, G_FILE_TEST_IS_DIR))
      g_ptr_array_add (names, g_strdup (name));
    g_free (path);
  }
  g_dir_close (dir);
  g_ptr_array_sort (names, sam2_hub_compare_strings);
  return names;
}

static char *
sam2_hub_join_names (GPtrArray *names)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < names->len; i++)
    g_string_append_printf (s, "%s%s", i > 0 ? ", " : "", (const char *) names->pdata[i]);
  return g_string_free (s, FALSE);
}

/* The only snapshot, when refs/main is missing (a cache copied without refs, or filled by
 * hand); several are ambiguous. */
static char *
sam2_hub_only_snapshot (const char *repo_dir, const char *snapshots, const Sam2HubOrigin *origin,
                        GError **error)
{
  GPtrArray *names = sam2_hub_list_snapshots (snapshots);
  char *snapshot = NULL;
  if (names->len == 1) {
    snapshot = g_build_filename (snapshots, names->pdata[0], NULL);
  } else if (names->len == 0) {
    char *hint = sam2_hub_fetch_hint (origin);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "model '%s': the cache folder %s has no snapshot (an interrupted download?)%s",
                 origin->reference, repo_dir, hint);
    g_free (hint);
  } else {
    char *list = sam2_hub_join_names (names);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "model '%s': the cache folder %s has no refs/main and %u snapshots (%s); pass "
                 "%s@<revision> or one snapshot directory", origin->reference, repo_dir,
                 names->len, list, origin->hf_id);
    g_free (list);
  }
  g_ptr_array_free (names, TRUE);
  return snapshot;
}

/* The snapshot directory of `origin->revision` (main by default) in `repo_dir`: the commit in
 * refs/<revision>, else a commit hash naming the snapshot directly. */
static char *
sam2_hub_find_snapshot (const char *repo_dir, const Sam2HubOrigin *origin, GError **error)
{
  char *snapshots = g_build_filename (repo_dir, "snapshots", NULL);
  const char *revision = origin->revision != NULL ? origin->revision : "main";
  char *commit = sam2_hub_read_ref (repo_dir, revision);
  char *snapshot = NULL;
  if (commit == NULL && origin->revision == NULL) {
    snapshot = sam2_hub_only_snapshot (repo_dir, snapshots, origin, error);
  } else {
    const char *name = commit != NULL ? commit : revision;
    if (sam2_hub_is_plain_name (name))
      snapshot = g_build_filename (snapshots, name, NULL);
    if (snapshot == NULL || !g_file_test (snapshot, G_FILE_TEST_IS_DIR)) {
      char *hint = sam2_hub_fetch_hint (origin);
      if (commit != NULL)
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                     "model '%s': refs/%s in %s points to commit %s, whose snapshot %s is "
                     "missing%s", origin->reference, revision, repo_dir, commit, snapshot, hint);
      else
        g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                     "model '%s': revision '%s' is neither a ref under %s/refs nor a snapshot "
                     "under %s%s", origin->reference, revision, repo_dir, snapshots, hint);
      g_free (hint);
      g_clear_pointer (&snapshot, g_free);
    }
  }
  g_free (commit);
  g_free (snapshots);
  return snapshot;
}

static Sam2ModelFiles *
sam2_hub_resolve_id (const Sam2HubOrigin *origin, GError **error)
{
  char *cache = sam2_hub_cache_dir ();
  char **parts = g_strsplit (origin->hf_id, "/", 2);
  char *repo_name = g_strdup_printf ("models--%s--%s", parts[0], parts[1]);
  char *repo_dir = g_build_filename (cache, repo_name, NULL);
  g_free (repo_name);
  g_strfreev (parts);

  Sam2ModelFiles *files = NULL;
  if (!g_file_test (repo_dir, G_FILE_TEST_IS_DIR)) {
    char *hint = sam2_hub_fetch_hint (origin);
    char *name = strcmp (origin->reference, origin->hf_id) == 0
                 ? g_strdup_printf ("model '%s'", origin->reference)
                 : g_strdup_printf ("model '%s' (%s)", origin->reference, origin->hf_id);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "%s is not in the HuggingFace cache at %s (no %s)%s, or pass a directory "
                 "containing " SAM2_HUB_CONFIG " and " SAM2_HUB_WEIGHTS, name, cache, repo_dir,
                 hint);
    g_free (name);
    g_free (hint);
  } else {
    char *snapshot = sam2_hub_find_snapshot (repo_dir, origin, error);
    if (snapshot != NULL)
      files = sam2_hub_resolve_dir (snapshot, origin, error);
    g_free (snapshot);
  }
  g_free (repo_dir);
  g_free (cache);
  return files;
}

/* ---- entry point ----------------------------------------------------------------------------- */

static gboolean
sam2_hub_looks_like_path (const char *reference)
{
  return reference[0] == '/' || reference[0] == '.' || reference[0] == '~'
         || g_str_has_suffix (reference, ".safetensors") || g_str_has_suffix (reference, ".json")
         || strchr (reference, '/') != strrchr (reference, '/');
}

Sam2ModelFiles *
sam2_hub_resolve (const char *reference, GError **error)
{
  g_return_val_if_fail (reference != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (*reference == '\0') {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "empty model reference; pass a directory, an HF id or one of tiny, small, "
                 "base, base-plus, large");
    return NULL;
  }
  if (g_file_test (reference, G_FILE_TEST_EXISTS))
    return sam2_hub_resolve_path (reference, error);

  /* "name@revision"; '@' is in no valid id */
  char *name = g_strdup (reference);
  char *at = strchr (name, '@');
  const char *revision = NULL;
  if (at != NULL) {
    *at = '\0';
    revision = at + 1;
  }
  const char *shortcut = sam2_hub_shortcut_id (name);
  const char *id = shortcut != NULL ? shortcut : name;
  Sam2ModelFiles *files = NULL;
  if (sam2_hub_is_id (id) && revision != NULL && !sam2_hub_is_revision (revision)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "model '%s': '%s' is not a valid revision (a branch such as main, or a commit "
                 "hash)", reference, revision);
  } else if (sam2_hub_is_id (id)) {
    const Sam2HubOrigin origin = { reference, id, revision };
    files = sam2_hub_resolve_id (&origin, error);
  } else if (sam2_hub_looks_like_path (reference)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND, "%s: no such file or directory",
                 reference);
  } else {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_NOT_FOUND,
                 "model '%s' is neither an existing directory or .safetensors file, an HF id "
                 "(org/name[@revision]) nor a shortcut (tiny, small, base, base-plus, large)",
                 reference);
  }
  g_free (name);
  return files;
}
