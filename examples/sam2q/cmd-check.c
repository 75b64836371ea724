/* sam2q check MODEL REFERENCE.safetensors...
 * sam2q check --hash-weights CONFIG.json REFERENCE.safetensors...
 *
 * Runs every case of the reference files (the fixtures' naming scheme) and prints the relative
 * L2 error of each output against its bound; exits 0 only if everything passes. */
#include "backend-args.h"
#include "check.h"
#include "commands.h"
#include "config.h"
#include "model.h"

static Sam2Model *
load_model (const char *hash_config, const char *reference, GError **error)
{
  if (hash_config == NULL)
    return sam2_model_load (reference, error);
  Sam2Config config;
  if (!sam2_config_load (hash_config, &config, error))
    return NULL;
  return sam2_model_new_hashed (&config, error);
}

/* A directory given as a reference reached mmap, whose "No such device" said nothing of the
 * mistake; found before the model loads. */
static gboolean
references_are_files (const char *const *references, GError **error)
{
  for (; *references != NULL; references++)
    if (g_file_test (*references, G_FILE_TEST_IS_DIR)) {
      char *display = g_filename_display_name (*references);
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_ISDIR,
                   "%s is a directory; give the reference .safetensors file", display);
      g_free (display);
      return FALSE;
    }
  return TRUE;
}

int
sam2q_cmd_check (int argc, char **argv)
{
  char *hash_config = NULL;
  int threads = SAM2Q_UNSET;
  gboolean quiet = FALSE;
  Sam2qBackendArgs bargs = { NULL, NULL };
  Sam2SessionOptions sopts;
  GOptionEntry entries[] = {
    { "hash-weights", 0, 0, G_OPTION_ARG_FILENAME, &hash_config,
      "build the model from CONFIG.json with the fixtures' hash weights instead of loading MODEL",
      "CONFIG" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: one per core)", "N" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "print only failures and the summary", NULL },
    SAM2Q_BACKEND_ENTRIES (bargs),
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("[MODEL] REFERENCE.safetensors... - compare with "
                                              "transformers reference outputs");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 0;
  Sam2Model *model = NULL;
  Sam2CheckReport *report = NULL;

  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto fail_usage;
  if (argc < (hash_config != NULL ? 2 : 3)) {
    g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                         "expected MODEL and at least one REFERENCE.safetensors (or "
                         "--hash-weights CONFIG and references)");
    goto fail_usage;
  }
  if (!sam2q_set_threads (threads, &error))
    goto fail;
  if (!sam2q_backend_args_resolve (&bargs, &sopts, &error))
    goto fail;
  const char *const *references = (const char *const *) argv + (hash_config ? 1 : 2);
  if (!references_are_files (references, &error))
    goto fail;
  model = load_model (hash_config, hash_config != NULL ? NULL : argv[1], &error);
  if (model == NULL)
    goto fail;
  report = sam2_check_reference_full (model, references, &sopts, &error);
  if (report == NULL)
    goto fail;

  g_print ("backend: %s\n", report->backend);
  g_print ("%-44s %12s %12s %10s  %s\n", "output", "rel L2", "max |diff|", "bound", "result");
  for (guint i = 0; i < report->entries->len; i++) {
    const Sam2CheckEntry *e = report->entries->pdata[i];
    if (quiet && e->pass)
      continue;
    g_print ("%-44s %12.3e %12.3e %10.1e  %s\n", e->name, e->rel_l2, e->max_abs, e->tolerance,
             e->pass ? "PASS" : "FAIL");
  }
  g_print ("%d cases, %u outputs compared, %d failed: %s\n", report->n_cases,
           report->entries->len, report->n_failed, report->n_failed == 0 ? "PASS" : "FAIL");
  if (!sam2q_stdout_flush ("the report", &error))
    goto fail;
  rc = report->n_failed == 0 ? 0 : 1;
  goto out;

fail_usage:
  rc = SAM2Q_EXIT_USAGE;
  sam2q_fail ("check", error);
  goto out;
fail:
  rc = sam2q_fail ("check", error);
out:
  g_clear_error (&error);
  sam2_check_report_free (report);
  sam2_model_unref (model);
  g_option_context_free (ctx);
  g_free (hash_config);
  sam2q_backend_args_clear (&bargs);
  return rc;
}
