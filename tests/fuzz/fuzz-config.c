/* fuzz-config.c: the config.json parser on arbitrary bytes.
 *
 * Built two ways: by run-fuzz.sh with libFuzzer and ASan/UBSan, and by meson with corpus-main.c,
 * which replays the committed corpus as a regression test. Besides crashes it checks the
 * parser's promises: a SAM2_ERROR_CONFIG exactly when parsing fails, the caller's config left
 * alone on failure, and for every accepted config: it validates, every stage has a size, and
 * sam2_config_to_json writes text that parses back to an equal config and is written again
 * identically.
 */
#include "config.h"
#include "sam2.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
fuzz_require (gboolean condition)
{
  if (!condition)
    abort ();
}

static void
fuzz_check_accepted (const Sam2Config *config)
{
  GError *error = NULL;
  fuzz_require (sam2_config_validate (config, &error));
  fuzz_require (error == NULL);
  const Sam2HieraConfig *b = &config->vision.backbone;
  fuzz_require (b->n_stages >= 1 && b->n_stages <= SAM2_MAX_STAGES);
  for (int s = 0; s < b->n_stages; s++) {
    int h = 0, w = 0;
    fuzz_require (sam2_config_stage_size (config, s, &h, &w));
    fuzz_require (h >= 1 && w >= 1 && h <= SAM2_CONFIG_MAX_IMAGE_SIZE
                  && w <= SAM2_CONFIG_MAX_IMAGE_SIZE);
  }
  fuzz_require (!sam2_config_stage_size (config, b->n_stages, NULL, NULL));
  fuzz_require (sam2_act_name (b->hidden_act) != NULL);

  char *json = sam2_config_to_json (config);
  Sam2Config back;
  if (!sam2_config_parse (json, -1, &back, &error)) {
    g_printerr ("to_json output does not parse back: %s\n%s", error->message, json);
    abort ();
  }
  Sam2Config expected = *config;
  expected.model_type = SAM2_MODEL_TYPE_SAM2;
  fuzz_require (sam2_config_equal (&back, &expected));
  char *again = sam2_config_to_json (&back);
  fuzz_require (strcmp (json, again) == 0);
  g_free (again);
  g_free (json);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  Sam2Config config, untouched;
  memset (&config, 0xa5, sizeof config);
  untouched = config;
  GError *error = NULL;
  const gboolean parsed = sam2_config_parse ((const char *) data, (gssize) size, &config, &error);
  if (parsed) {
    fuzz_require (error == NULL);
    fuzz_check_accepted (&config);
  } else {
    fuzz_require (error != NULL && g_error_matches (error, SAM2_ERROR, SAM2_ERROR_CONFIG));
    fuzz_require (error->message != NULL && error->message[0] != '\0');
    fuzz_require (memcmp (&config, &untouched, sizeof config) == 0);
    g_clear_error (&error);
  }
  /* the syntax check alone: an error exactly when it refuses, and it passes what parsed */
  const gboolean syntax = sam2_config_check_json ((const char *) data, size, &error);
  fuzz_require (syntax == (error == NULL));
  fuzz_require (syntax || !parsed);
  g_clear_error (&error);
  return 0;
}
