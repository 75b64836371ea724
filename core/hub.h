/* hub.h: turning what users type into model files on disk.
 *
 * Accepted, in this order: an existing path (a directory with config.json and model.safetensors
 * or a sharded model.safetensors.index.json; a .safetensors file whose directory holds
 * config.json; a config.json), then the shortcuts tiny, small, base, base-plus, large for
 * facebook/sam2.1-hiera-* (also the bare repo names sam2.1-hiera-* and sam2-hiera-*), then an HF
 * id "org/name" looked up in the HF cache. Shortcuts and ids take an optional "@revision" (a
 * branch with a file under refs/, or a snapshot's commit hash). The cache is found as
 * huggingface_hub does: $HF_HUB_CACHE, else the legacy $HUGGINGFACE_HUB_CACHE, else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (a leading ~
 * is expanded, empty variables count as unset); inside it
 * models--org--name/snapshots/<contents of refs/main>/, or the only snapshot when refs/main is
 * missing. Nothing is downloaded, so HF_HUB_OFFLINE changes nothing. Nothing outside the given
 * path, or the cache, is read: shard names in an index must be plain file names.
 */
#ifndef SAM2_HUB_H
#define SAM2_HUB_H

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *config_path;           /* .../config.json */
  char **weight_paths;         /* NULL-terminated: one file, or the shards of an index */
  char *hf_id;                 /* "facebook/sam2.1-hiera-tiny" when resolved from an id, else NULL */
} Sam2ModelFiles;

/* Expands a shortcut to its HF id ("tiny" -> "facebook/sam2.1-hiera-tiny"), ignoring case; NULL
 * if not one. */
const char *sam2_hub_shortcut_id (const char *reference);

/* Resolves `reference`. When nothing is found the SAM2_ERROR_NOT_FOUND message says where it
 * looked and the command that fetches the files (`hf download facebook/sam2.1-hiera-tiny`); a
 * directory without config.json, or without weights, gets its own message. A corrupt shard
 * index is SAM2_ERROR_FORMAT, an unreadable one SAM2_ERROR_IO. Only checks that the files exist;
 * their contents are read by the loaders. */
Sam2ModelFiles *sam2_hub_resolve (const char *reference, GError **error);
void sam2_model_files_free (Sam2ModelFiles *files);   /* NULL is a no-op */

/* The HF hub cache directory in use (see above). Free with g_free. */
char *sam2_hub_cache_dir (void);

G_END_DECLS

#endif
