/* backend-args.c: see backend-args.h. */
#include "backend-args.h"

gboolean
sam2q_backend_args_resolve (const Sam2qBackendArgs *args, Sam2SessionOptions *options,
                            GError **error)
{
  *options = (Sam2SessionOptions) SAM2_SESSION_OPTIONS_INIT;
  GError *local = NULL;
  if (!sam2_session_options_parse (options, args->backend, args->precision, &local)) {
    /* a misspelt name is a usage error (exit 2), as GOption's own errors are */
    g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, local->message);
    g_error_free (local);
    return FALSE;
  }
  /* fail before loading a large model when the backend or precision asked for cannot run */
  if (!sam2_backend_available (options->backend, error))
    return FALSE;
  if (sam2_precision_available (options->backend, options->precision, error))
    return TRUE;
  g_prefix_error (error, "--precision %s: ", sam2_precision_to_string (options->precision));
  char *hint = g_strconcat ((*error)->message, "; use --precision auto or fp32, or --backend cuda",
                            NULL);
  g_free ((*error)->message);
  (*error)->message = hint;
  return FALSE;
}

void
sam2q_backend_args_clear (Sam2qBackendArgs *args)
{
  g_clear_pointer (&args->backend, g_free);
  g_clear_pointer (&args->precision, g_free);
}
