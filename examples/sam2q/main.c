/* sam2q: the command-line face of sam2-gst. */
#include "commands.h"
#include "sam2.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "info", sam2q_cmd_info, "print a model's architecture, size and where it was loaded from" },
  { "segment", sam2q_cmd_segment, "segment an image from point / box prompts into mask PNGs and JSON" },
  { "check", sam2q_cmd_check, "compare a model with transformers reference outputs, PASS / FAIL" },
};

int
sam2q_fail (const char *cmd, const GError *error)
{
  g_printerr ("sam2q %s: %s\n", cmd, error != NULL ? error->message : "failed");
  return 1;
}

static void
usage (FILE *out)
{
  fprintf (out, "usage: sam2q COMMAND [OPTIONS...]\n\ncommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nMODEL is a directory with config.json and model.safetensors, a HuggingFace id\n"
                "(facebook/sam2.1-hiera-tiny) in the HF cache, or tiny, small, base, large.\n"
                "'sam2q COMMAND --help' describes each command.\n");
}

int
main (int argc, char **argv)
{
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "sam2q: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
