/* sam2q: the command-line face of sam2-gst. */
#include "commands.h"
#include "sam2.h"

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "info", sam2q_cmd_info, "print a model's architecture, size and where it was loaded from" },
  { "segment", sam2q_cmd_segment, "segment an image from point / box prompts into mask PNGs and JSON" },
  { "check", sam2q_cmd_check, "compare a model with transformers reference outputs, PASS / FAIL" },
  { "quantize", sam2q_cmd_quantize, "calibrate on frames of a dataset and write a W4A8 model" },
  { "eval", sam2q_cmd_eval, "mIoU against ground truth, relative mIoU, size and latency" },
};

int
sam2q_fail (const char *cmd, const GError *error)
{
  g_printerr ("sam2q %s: %s\n", cmd, error != NULL ? error->message : "failed");
  /* an option's wrong value is the caller's to fix, like a parse error: scripts tell the two
   * apart from a run that failed */
  return error != NULL && error->domain == G_OPTION_ERROR ? SAM2Q_EXIT_USAGE : 1;
}

gboolean
sam2q_int_option_ok (const char *name, int value, int min, int max, GError **error)
{
  if (value == SAM2Q_UNSET || (value >= min && value <= max))
    return TRUE;
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "--%s %d: give a number from %d to %d", name, value, min, max);
  return FALSE;
}

gboolean
sam2q_set_threads (int threads, GError **error)
{
  if (!sam2q_int_option_ok ("threads", threads, 1, SAM2Q_MAX_THREADS, error))
    return FALSE;
  sam2_set_num_threads (threads == SAM2Q_UNSET ? 0 : threads);
  return TRUE;
}

static void
usage (FILE *out)
{
  fprintf (out, "usage: sam2q COMMAND [OPTIONS...]\n\ncommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nMODEL is a directory with config.json and model.safetensors, a HuggingFace id\n"
                "(facebook/sam2.1-hiera-tiny) in the HF cache, or tiny, small, base, large.\n"
                "'sam2q COMMAND --help' describes each command.\n\n"
                "exit status: 0 success, 1 a failure (check: an output out of its bound), 2 a\n"
                "usage error (an unknown option, a missing argument, a value out of range).\n");
}

/* OpenMP threads that spin while they wait for work steal the cores that the rest of the
 * machine (a GStreamer pipeline, other jobs) needs; on a busy 2-core machine sam2q ran 16x
 * slower with libgomp's default. The policy is read when libgomp loads, before main, so sam2q
 * sets it for itself and starts again, unless the user chose a policy. */
static void
prefer_passive_openmp_threads (char **argv)
{
  if (g_getenv ("OMP_WAIT_POLICY") != NULL)
    return;
  g_setenv ("OMP_WAIT_POLICY", "PASSIVE", TRUE);
  execv ("/proc/self/exe", argv);
  /* where exec is impossible, run on with the default policy */
}

/* errno of the first failed write to standard output (print_to_stdout), 0 while none failed */
static int stdout_errno;

/* g_print's handler: GLib's own flushes at every call and drops the error; this one keeps the
 * cause of the first failure for sam2q_stdout_flush's message ("No space left on device") */
static void
print_to_stdout (const gchar *text)
{
  errno = 0;
  if ((fputs (text, stdout) == EOF || fflush (stdout) != 0) && stdout_errno == 0)
    stdout_errno = errno != 0 ? errno : EIO;
}

gboolean
sam2q_stdout_flush (const char *what, GError **error)
{
  /* ferror keeps that a write failed; stdout_errno why, when g_print made it */
  errno = 0;
  if (fflush (stdout) == 0 && !ferror (stdout) && stdout_errno == 0)
    return TRUE;
  const int err = stdout_errno != 0 ? stdout_errno : errno;
  g_set_error (error, G_FILE_ERROR, err != 0 ? g_file_error_from_errno (err) : G_FILE_ERROR_IO,
               "cannot write %s to standard output: %s", what,
               err != 0 ? g_strerror (err) : "a write failed");
  return FALSE;
}

gboolean
sam2q_print_json (const char *text, GError **error)
{
  fputs (text, stdout);
  fputc ('\n', stdout);
  return sam2q_stdout_flush ("the JSON", error);
}

int
main (int argc, char **argv)
{
  prefer_passive_openmp_threads (argv);
  g_set_print_handler (print_to_stdout);
  /* past a file-size limit (ulimit -f) the default action of SIGXFSZ kills the process before
   * the writer can remove its temporary file; ignored, write() fails with EFBIG and the model
   * and mask writers clean up and say so */
  signal (SIGXFSZ, SIG_IGN);
  /* the user's character set, so GLib's messages and file names print as they are (in the "C"
   * locale its quotes and every non-ASCII letter came out as '?'); numbers stay in the C form
   * that options, JSON and recipes are written in */
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C");
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? SAM2Q_EXIT_USAGE : 0;
  }
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0) {
      /* "Usage: sam2q segment [OPTION…]" in the command's help, not "segment [OPTION…]" */
      char *prgname = g_strdup_printf ("sam2q %s", commands[i].name);
      g_set_prgname (prgname);
      g_free (prgname);
      return commands[i].run (argc - 1, argv + 1);
    }
  fprintf (stderr, "sam2q: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return SAM2Q_EXIT_USAGE;
}
