/* bench-gpu: latency and GPU memory of a model on the CUDA backend (or any backend).
 *
 *   sam2-bench-gpu [--model REF | --hash-config CONFIG.json] [--backend cuda] [--precision P]
 *                  [--iterations N] [--warmup N] [--frame WxH] [--batch N]
 *                  [--graphs on|off|both] [--no-graphs] [--profile] [--json]
 *
 * REF is anything sam2_model_load takes: a model directory, an HF id, a shortcut or a quantized
 * model file. After `--warmup` untimed frames (the first one fills the device weight cache),
 * prints the median of N runs of
 *   - the encoder on pixels already in device memory (sam2_session_encode_resident, which waits
 *     for the device), as PyTorch's encoder is timed on a tensor on the GPU; with --batch N, N
 *     images in one pass, also given per image; and the public call that first uploads the
 *     floats from host memory (sam2_session_encode_batch), as "with upload",
 *   - the decoder per prompt (one positive point, multimask, low-res logits to the host),
 *   - end to end per frame (sam2_session_set_image from 8-bit RGB of --frame size, then
 *     sam2_session_predict with that point, masks upsampled to the frame; with --batch N,
 *     sam2_session_set_images of N frames, then select_image and predict on each, divided by N),
 * and the peak device memory the session used (cudaMemGetInfo before the session, and the lowest
 * free memory seen after each stage), as one table line, or one JSON object with --json.
 * CUDA graphs (backend-cuda.c): as the environment says (SAM2_CUDA_GRAPHS) unless --graphs on /
 * off (--no-graphs) sets it; --graphs both measures a session without graphs, then one with them,
 * one line each. The line says whether graphs ran (captured / launched / refused); --warmup is at
 * least 3 with graphs, so that the timed runs replay (the first run of a key is eager, the second
 * captures). --profile times ops one by one, without graphs.
 * A benchmark, not a test: it asserts nothing. */
#include "bench-common.h"
#include "backend-cuda.h"
#include "config.h"
#include "model.h"
#include "session.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

/* Device memory in use by everyone, in bytes; the peak of the session is the growth of this
 * over its lifetime (nothing else runs on the device during the benchmark). */
typedef struct {
  gboolean have;
  size_t base_free, min_free, total;
} MemWatch;

static void
mem_sample (MemWatch *w)
{
  size_t free_b = 0, total = 0;
  if (!w->have || cudaMemGetInfo (&free_b, &total) != cudaSuccess)
    return;
  w->min_free = MIN (w->min_free, free_b);
}

static double
mem_peak_mb (const MemWatch *w)
{
  return w->have ? (double) (w->base_free - w->min_free) / (1024.0 * 1024.0) : 0.0;
}

static void
print_profile (Sam2Session *s, const char *what)
{
  const Sam2OpProfile *prof = s->backend->ops->profile_read (s->backend);
  g_printerr ("%s time by op (device time, one pass):\n", what);
  for (int k = 0; k < SAM2_OP_COUNT; k++)
    if (prof[k].calls > 0)
      g_printerr ("  %-26s %8.2f ms  %5ld calls\n", prof[k].name, prof[k].ms, prof[k].calls);
}

typedef struct {
  const char *name;
  int iterations, warmup, fw, fh, batch;
  gboolean json, profile;
} BenchParams;

/* What CUDA graphs did in this session, for the output line. */
static void
describe_graphs (Sam2Session *s, char *buf, size_t size, Sam2CudaGraphStats *st)
{
  if (!sam2_backend_cuda_graph_stats (s->backend, st) || !st->enabled)
    g_snprintf (buf, size, "off");
  else if (st->refused > 0)
    g_snprintf (buf, size, "on, %u refused", st->refused);
  else
    g_snprintf (buf, size, st->replayed > 0 ? "on" : "on, unused");
}

/* The SAM2_* variables of the environment ("SAM2_CUDA_PINNED=0 ..."), which switch kernel paths
 * on and off: each JSON line says what it measured. Names and values are the user's own, so
 * quotes and backslashes are dropped to keep the line valid JSON. */
static char *
kernel_switches (void)
{
  GString *out = g_string_new (NULL);
  char **env = g_get_environ ();
  for (char **e = env; *e != NULL; e++) {
    if (!g_str_has_prefix (*e, "SAM2_"))
      continue;
    if (out->len > 0)
      g_string_append_c (out, ' ');
    for (const char *c = *e; *c != '\0'; c++)
      if (*c != '"' && *c != '\\' && (guchar) *c >= 0x20)
        g_string_append_c (out, *c);
  }
  g_strfreev (env);
  return g_string_free (out, FALSE);
}

/* What a pipeline does with n frames: one encoder pass over them, then the prompt on each. */
static gboolean
frames_end_to_end (Sam2Session *s, const guint8 **frames, int n, int fw, int fh,
                   const Sam2Prompt *prompt, const Sam2PredictOptions *popts, GError **error)
{
  if (!sam2_session_set_images (s, frames, n, fw, fh, fw * 3, SAM2_PIXEL_FORMAT_RGB, error))
    return FALSE;
  for (int i = 0; i < n; i++)
    if (!sam2_session_select_image (s, i, error)
        || sam2_session_predict (s, prompt, 1, popts, error) == NULL)
      return FALSE;
  return TRUE;
}

/* One session: warm-up, timed runs, one output line. `graphs` is "1", "0" or NULL (the
 * environment's SAM2_CUDA_GRAPHS as it is). Returns the exit status. */
static int
bench_session (Sam2Model *model, const Sam2SessionOptions *options, const char *graphs,
               const BenchParams *bp, gboolean header)
{
  GError *error = NULL;
  const int S = sam2_model_get_image_size (model);
  const int iterations = bp->iterations, fw = bp->fw, fh = bp->fh, nb = bp->batch;
  const char *name = bp->name;
  if (graphs != NULL)
    g_setenv ("SAM2_CUDA_GRAPHS", graphs, TRUE);

  /* the CUDA context exists before the baseline, so its own memory is not counted */
  MemWatch mem = { FALSE, 0, 0, 0 };
  if (sam2_backend_available (SAM2_BACKEND_CUDA, NULL) && cudaFree (NULL) == cudaSuccess
      && cudaMemGetInfo (&mem.base_free, &mem.total) == cudaSuccess) {
    mem.have = TRUE;
    mem.min_free = mem.base_free;
  }
  Sam2SessionOptions batch_options = *options;
  batch_options.max_batch = nb;
  Sam2Session *s = sam2_session_new_full (model, &batch_options, &error);
  if (s == NULL) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  mem_sample (&mem);

  /* nb different images and frames */
  float *pixels = bench_hash_pixels ((size_t) nb * 3 * S * S); /* (nb, 3, S, S) */
  guint8 *rgb = g_new (guint8, (size_t) nb * fw * fh * 3);
  for (size_t i = 0; i < (size_t) nb * fw * fh * 3; i++)
    rgb[i] = (guint8) ((i * 2654435761u) >> 24);
  const guint8 **frames = g_new (const guint8 *, nb);
  for (int i = 0; i < nb; i++)
    frames[i] = rgb + (size_t) i * fw * fh * 3;
  const Sam2Point pt_model = { S * 0.5f, S * 0.375f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt_model = { .points = &pt_model, .n_points = 1 };
  const Sam2Point pt_frame = { fw * 0.5f, fh * 0.375f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt_frame = { .points = &pt_frame, .n_points = 1 };
  Sam2PredictOptions popts = SAM2_PREDICT_OPTIONS_INIT;

  /* warm-up: the device weight cache, scratch growth, cuBLAS heuristics, page faults, and the
   * graphs (eager first run, capture on the second) */
  for (int i = 0; i < bp->warmup; i++) {
    if (!sam2_session_encode_batch (s, pixels, nb, &error)
        || sam2_session_decode (s, &prompt_model, 1, TRUE, &error) == NULL
        || !frames_end_to_end (s, frames, nb, fw, fh, &prompt_frame, &popts, &error)) {
      g_printerr ("warm-up: %s\n", error->message);
      return 1;
    }
    mem_sample (&mem);
  }

  double *t_enc = g_new (double, iterations), *t_dec = g_new (double, iterations);
  double *t_e2e = g_new (double, iterations), *t_up = g_new (double, iterations);
  for (int i = 0; i < iterations; i++) {
    double t0 = bench_now_ms ();
    gboolean ok = sam2_session_encode_batch (s, pixels, nb, &error);
    t_up[i] = bench_now_ms () - t0;
    t0 = bench_now_ms ();
    ok = ok && sam2_session_encode_resident (s, nb, &error);
    t_enc[i] = bench_now_ms () - t0;
    mem_sample (&mem);
    t0 = bench_now_ms ();
    ok = ok && sam2_session_decode (s, &prompt_model, 1, TRUE, &error) != NULL;
    t_dec[i] = bench_now_ms () - t0;
    t0 = bench_now_ms ();
    ok = ok && frames_end_to_end (s, frames, nb, fw, fh, &prompt_frame, &popts, &error);
    t_e2e[i] = (bench_now_ms () - t0) / nb;
    mem_sample (&mem);
    if (!ok) {
      g_printerr ("run %d: %s\n", i, error->message);
      return 1;
    }
  }
  /* read before profiling, which runs without graphs */
  Sam2CudaGraphStats gst;
  char graphs_desc[64];
  describe_graphs (s, graphs_desc, sizeof graphs_desc, &gst);
  if (bp->profile) {
    /* profile_start resets the counters: one window per stage */
    s->backend->ops->profile_start (s->backend);
    sam2_session_encode_batch (s, pixels, nb, NULL);
    print_profile (s, nb > 1 ? "encoder (the whole batch)" : "encoder");
    s->backend->ops->profile_start (s->backend);
    sam2_session_decode (s, &prompt_model, 1, TRUE, NULL);
    print_profile (s, "decoder (one prompt)");
  }

  const double enc = bench_median (t_enc, iterations), dec = bench_median (t_dec, iterations);
  const double e2e = bench_median (t_e2e, iterations), up = bench_median (t_up, iterations);
  const char *desc = sam2_session_describe_backend (s);
  if (bp->json) {
    char *switches = kernel_switches ();
    char peak[32] = "null";
    if (mem.have)
      g_snprintf (peak, sizeof peak, "%.1f", mem_peak_mb (&mem));
    g_print ("{\"model\": \"%s\", \"quantized\": %s, \"backend\": \"%s\", \"image_size\": %d, "
             "\"frame\": \"%dx%d\", \"batch\": %d, \"iterations\": %d, \"warmup\": %d, "
             "\"encoder_ms\": %.3f, \"encoder_ms_per_image\": %.3f, "
             "\"encoder_with_upload_ms\": %.3f, "
             "\"decoder_ms_per_prompt\": %.3f, \"end_to_end_ms_per_frame\": %.3f, "
             "\"peak_gpu_mb\": %s, \"cuda_graphs\": %s, \"graphs_captured\": %u, "
             "\"graph_launches\": %u, \"graphs_refused\": %u, \"switches\": \"%s\"}\n",
             name, sam2_model_is_quantized (model) ? "true" : "false", desc, S, fw, fh, nb,
             iterations, bp->warmup, enc, enc / nb, up, dec, e2e, peak,
             gst.enabled && gst.replayed > 0 ? "true" : "false", gst.captured, gst.replayed,
             gst.refused, switches);
    g_free (switches);
  } else {
    if (header)
      g_print ("%-40s %-44s %5s %5s %9s %9s %9s %9s %9s %10s  %s\n", "model", "backend", "size",
               "batch", "enc ms", "/image", "+upload", "dec ms", "e2e ms", "peak GPU MB",
               "graphs");
    g_print ("%-40s %-44s %5d %5d %9.2f %9.2f %9.2f %9.3f %9.2f %10.1f  %s\n", name, desc, S, nb,
             enc, enc / nb, up, dec, e2e, mem_peak_mb (&mem), graphs_desc);
  }
  g_free (t_enc);
  g_free (t_dec);
  g_free (t_e2e);
  g_free (t_up);
  g_free (pixels);
  g_free (rgb);
  g_free (frames);
  sam2_session_free (s);
  return 0;
}

int
main (int argc, char **argv)
{
  char *model_ref = NULL, *hash_config = NULL, *backend = NULL, *precision = NULL;
  char *frame = NULL, *graphs = NULL;
  int iterations = 20, warmup = 3, batch = 1;
  gboolean json = FALSE, profile = FALSE, no_graphs = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_STRING, &model_ref,
      "model directory, HF id, shortcut or quantized model file", "REF" },
    { "hash-config", 'c', 0, G_OPTION_ARG_FILENAME, &hash_config,
      "build the model from CONFIG.json with hash weights (default: the tiny fixture config)",
      "CONFIG" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "auto, cpu or cuda (default cuda)",
      "NAME" },
    { "precision", 'p', 0, G_OPTION_ARG_STRING, &precision,
      "auto, fp32, fp16 or bf16 (default auto)",
      "P" },
    { "iterations", 'n', 0, G_OPTION_ARG_INT, &iterations, "timed runs of each stage (default 20)",
      "N" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &warmup, "untimed frames first (default 3)", "N" },
    { "frame", 'f', 0, G_OPTION_ARG_STRING, &frame,
      "frame size of the end-to-end runs (default 1280x720)", "WxH" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch,
      "images per encoder pass (default 1; the session's max_batch)", "N" },
    { "graphs", 'g', 0, G_OPTION_ARG_STRING, &graphs,
      "CUDA graphs: on, off, or both (a line without, then one with; default: as "
      "SAM2_CUDA_GRAPHS says, on when unset)", "MODE" },
    { "no-graphs", 0, 0, G_OPTION_ARG_NONE, &no_graphs, "the same as --graphs off", NULL },
    { "profile", 0, 0, G_OPTION_ARG_NONE, &profile,
      "also print device time per op (stderr; ops run one by one, without graphs)", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print one JSON object instead of a table line",
      NULL },
    { NULL }
  };
  if (!bench_parse_options (&argc, &argv, entries, "- latency and GPU memory of a SAM2 model"))
    return 2;
  GError *error = NULL;
  int fw = 1280, fh = 720;
  if (frame != NULL && (sscanf (frame, "%dx%d", &fw, &fh) != 2 || fw <= 0 || fh <= 0)) {
    g_printerr ("--frame %s: expected WxH, e.g. 1280x720\n", frame);
    return 2;
  }
  /* the SAM2_CUDA_GRAPHS value of each session to run, NULL for the environment's */
  const char *modes[2] = { NULL, NULL };
  int n_modes = 1;
  if (no_graphs || g_strcmp0 (graphs, "off") == 0) {
    modes[0] = "0";
  } else if (g_strcmp0 (graphs, "on") == 0) {
    modes[0] = "1";
  } else if (g_strcmp0 (graphs, "both") == 0) {
    modes[0] = "0";
    modes[1] = "1";
    n_modes = 2;
  } else if (graphs != NULL) {
    g_printerr ("--graphs %s: expected on, off or both\n", graphs);
    return 2;
  }
  if (batch < 1 || batch > SAM2_SESSION_MAX_BATCH) {
    g_printerr ("--batch %d: 1 to %d images per pass\n", batch, SAM2_SESSION_MAX_BATCH);
    return 2;
  }
  iterations = MAX (iterations, 1);
  /* a key's first run is eager and its second captures: the timed runs replay from the third */
  warmup = MAX (warmup, 3);
  Sam2SessionOptions options = { SAM2_BACKEND_CUDA, SAM2_PRECISION_AUTO, 1 };
  if (!sam2_session_options_parse (&options, backend, precision, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }

  /* no device: skipped, as the CUDA tests are (77) */
  if (options.backend == SAM2_BACKEND_CUDA && !sam2_backend_available (SAM2_BACKEND_CUDA, &error)) {
    g_printerr ("skipped: %s\n", error->message);
    g_error_free (error);
    return 77;
  }

  const char *name;
  Sam2Model *model = bench_load_model (model_ref, hash_config, &name, &error);
  if (model == NULL) {
    g_printerr ("cannot build the model: %s\n", error->message);
    return 1;
  }
  const BenchParams bp = { name, iterations, warmup, fw, fh, batch, json, profile };
  int status = 0;
  for (int i = 0; i < n_modes && status == 0; i++)
    status = bench_session (model, &options, modes[i], &bp, i == 0);
  sam2_model_unref (model);
  g_free (model_ref);
  g_free (hash_config);
  g_free (backend);
  g_free (precision);
  g_free (frame);
  g_free (graphs);
  return status;
}
