/* sam2q info MODEL */
#include "commands.h"
#include "sam2.h"

int
sam2q_cmd_info (int argc, char **argv)
{
  GOptionContext *ctx = g_option_context_new ("MODEL - print a model's summary");
  GError *error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 2) {
    if (error == NULL)
      g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "expected exactly one MODEL (see sam2q info --help)");
    g_option_context_free (ctx);
    sam2q_fail ("info", error);
    g_error_free (error);
    return SAM2Q_EXIT_USAGE;
  }
  g_option_context_free (ctx);
  Sam2Model *model = sam2_model_load (argv[1], &error);
  if (model == NULL) {
    int rc = sam2q_fail ("info", error);
    g_error_free (error);
    return rc;
  }
  char *text = sam2_model_describe (model);
  g_print ("%s", text);
  g_free (text);
  /* what --backend auto would run on, and why CUDA is not used when it is not */
  GError *cuda_error = NULL;
  if (sam2_backend_available (SAM2_BACKEND_CUDA, &cuda_error))
    g_print ("backend (auto): cuda\n");
  else
    g_print ("backend (auto): cpu (cuda: %s)\n", cuda_error->message);
  g_clear_error (&cuda_error);
  sam2_model_unref (model);
  if (!sam2q_stdout_flush ("the summary", &error)) {
    int rc = sam2q_fail ("info", error);
    g_error_free (error);
    return rc;
  }
  return 0;
}
