/* commands.h: the sam2q subcommands. Each parses its own options and returns the exit status. */
#ifndef SAM2Q_COMMANDS_H
#define SAM2Q_COMMANDS_H

#include <glib.h>

int sam2q_cmd_info (int argc, char **argv);
int sam2q_cmd_check (int argc, char **argv);
int sam2q_cmd_quantize (int argc, char **argv);
int sam2q_cmd_eval (int argc, char **argv);
int sam2q_cmd_segment (int argc, char **argv);

/* The exit status of a usage error: an unknown option, a missing argument, a value out of its
 * range or one that does not apply (1 is a run that failed). */
#define SAM2Q_EXIT_USAGE 2

/* Prints "sam2q <cmd>: <message>" to stderr and returns the exit status: SAM2Q_EXIT_USAGE for a
 * G_OPTION_ERROR, else 1. */
int sam2q_fail (const char *cmd, const GError *error);

/* Flushes standard output; FALSE with a G_FILE_ERROR naming `what` ("the table") when anything
 * printed there could not be written (a full disk, a closed pipe): a command that printed its
 * results must not then exit 0. */
gboolean sam2q_stdout_flush (const char *what, GError **error);

/* Writes `text` and a newline to standard output as bytes and flushes: g_print would convert
 * to the locale's character set. FALSE with a G_FILE_ERROR when the output cannot be written. */
gboolean sam2q_print_json (const char *text, GError **error);

/* The initial value of an integer option, left there by GOption when the option is not given
 * (a count typed as 0 or -5 must be refused, not taken for "not given"). */
#define SAM2Q_UNSET G_MININT
#define SAM2Q_MAX_THREADS 1024

/* TRUE when integer option `name` (its long name) was not given or lies in [min, max]; else a
 * G_OPTION_ERROR_BAD_VALUE naming it and the range. */
gboolean sam2q_int_option_ok (const char *name, int value, int min, int max, GError **error);
/* --threads checked (1 .. SAM2Q_MAX_THREADS) and applied; not given: one per core. */
gboolean sam2q_set_threads (int threads, GError **error);

#endif
