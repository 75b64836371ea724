/* hub.h: turning what users type into model files on disk.
 *
 * Accepted: a directory with config.json (and model.safetensors or a sharded
 * model.safetensors.index.json), a path to a .safetensors file whose directory holds config.json,
 * an HF id "org/name" looked up in the HF cache, and the shortcuts tiny, small, base, base-plus,
 * large for facebook/sam2.1-hiera-*. The cache is found as huggingface_hub does:
 * $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub; inside it models--org--name/snapshots/<contents of refs/main>/.
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

/* Expands a shortcut to its HF id ("tiny" -> "facebook/sam2.1-hiera-tiny"); NULL if not one. */
const char *sam2_hub_shortcut_id (const char *reference);

/* Resolves `reference`. When nothing is found the SAM2_ERROR_NOT_FOUND message says where it
 * looked and the command that fetches the files (`hf download facebook/sam2.1-hiera-tiny`). */
Sam2ModelFiles *sam2_hub_resolve (const char *reference, GError **error);
void sam2_model_files_free (Sam2ModelFiles *files);

/* The HF hub cache directory in use (see above). Free with g_free. */
char *sam2_hub_cache_dir (void);

G_END_DECLS

#endif
