/* commands.h: the sam2q subcommands. Each parses its own options and returns the exit status. */
#ifndef SAM2Q_COMMANDS_H
#define SAM2Q_COMMANDS_H

#include <glib.h>

int sam2q_cmd_info (int argc, char **argv);
int sam2q_cmd_check (int argc, char **argv);
int sam2q_cmd_quantize (int argc, char **argv);
int sam2q_cmd_eval (int argc, char **argv);
int sam2q_cmd_segment (int argc, char **argv);

/* Prints "sam2q <cmd>: <message>" to stderr and returns the exit status for failures. */
int sam2q_fail (const char *cmd, const GError *error);

#endif
