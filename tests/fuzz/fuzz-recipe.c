/* fuzz-recipe.c: the quantization recipe parser on arbitrary bytes.
 *
 * Built two ways: by run-fuzz.sh with libFuzzer and ASan/UBSan, and by meson with corpus-main.c,
 * which replays the committed corpus as a regression test. Besides crashes it checks the
 * parser's promises: a SAM2_ERROR_CONFIG exactly when parsing fails, with a message that starts
 * "<source>:<line>:<column>: "; and for every accepted recipe: sam2_recipe_to_yaml writes plain
 * ASCII that parses back to an equal recipe and is written again identically, a copy is equal,
 * and its patterns can be matched against layer names.
 */
#include "recipe.h"
#include "sam2.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_SOURCE "<fuzz>"

static void
fuzz_require (gboolean condition)
{
  if (!condition)
    abort ();
}

/* "<fuzz>:<line>:<column>: " with line and column >= 1 */
static gboolean
fuzz_has_position (const char *message)
{
  const char *p = message + strlen (FUZZ_SOURCE);
  if (!g_str_has_prefix (message, FUZZ_SOURCE ":"))
    return FALSE;
  for (int field = 0; field < 2; field++) {
    p++;
    if (*p < '1' || *p > '9')
      return FALSE;
    while (g_ascii_isdigit (*p))
      p++;
    if (*p != ':')
      return FALSE;
  }
  return p[1] == ' ' && p[2] != '\0';
}

static void
fuzz_check_accepted (const Sam2Recipe *recipe)
{
  fuzz_require (strcmp (recipe->name, "custom") == 0);
  char *yaml = sam2_recipe_to_yaml (recipe);
  for (const char *p = yaml; *p != '\0'; p++)
    fuzz_require ((*p >= 0x20 && *p < 0x7f) || *p == '\n');

  GError *error = NULL;
  Sam2Recipe *back = sam2_recipe_parse (yaml, -1, FUZZ_SOURCE, &error);
  if (back == NULL) {
    g_printerr ("to_yaml output does not parse back: %s\n%s", error->message, yaml);
    abort ();
  }
  fuzz_require (sam2_recipe_equal (recipe, back));
  char *again = sam2_recipe_to_yaml (back);
  fuzz_require (strcmp (yaml, again) == 0);

  Sam2Recipe *copy = sam2_recipe_copy (recipe);
  fuzz_require (sam2_recipe_equal (recipe, copy));
  static const char *const layers[] = {
    "vision_encoder.backbone.blocks.0.attn.qkv",
    "vision_encoder.backbone.blocks.11.mlp.proj_out",
    "mask_decoder.transformer.layers.1.self_attn.q_proj",
  };
  for (guint i = 0; i < G_N_ELEMENTS (layers); i++)
    fuzz_require (sam2_recipe_pattern_skips (copy, layers[i])
                  == sam2_recipe_pattern_skips (recipe, layers[i]));

  sam2_recipe_free (copy);
  g_free (again);
  sam2_recipe_free (back);
  g_free (yaml);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  Sam2Recipe *recipe = sam2_recipe_parse ((const char *) data, (gssize) size, FUZZ_SOURCE, &error);
  if (recipe != NULL) {
    fuzz_require (error == NULL);
    fuzz_check_accepted (recipe);
    sam2_recipe_free (recipe);
  } else {
    fuzz_require (error != NULL && g_error_matches (error, SAM2_ERROR, SAM2_ERROR_CONFIG));
    if (!fuzz_has_position (error->message)) {
      g_printerr ("error without a position: %s\n", error->message);
      abort ();
    }
    g_clear_error (&error);
  }
  return 0;
}
