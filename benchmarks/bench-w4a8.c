/* bench-w4a8: the CPU W4A8 linear kernel against float32 sgemm and oneDNN's int8 matmul, on the
 * linear layers of the tiny Hiera encoder at 1024 x 1024.
 *
 *   sam2-bench-w4a8 [--seconds S] [--threads N] [--asym] [--rank R] [--act gelu] [--only TEXT]
 *
 * Per shape (M x K -> N: tokens x in -> out features), best time over S seconds (default 3,
 * shared by the first three, which take turns) of:
 *   fp32   dnnl_sgemm ('N', 'T'): the float linear op of the CPU backend, without its bias pass;
 *   w4a8   sam2_quant_linear_forward: activation quantization (per token, symmetric unless
 *          --asym), the 4-bit x 8-bit integer GEMM with per-group scales (128 columns; one group
 *          of K for K = 96), bias, the optional low-rank branch (--rank) and activation; all of
 *          the layer, nothing prepared per call;
 *   quant  sam2_quantize_activations alone (the share of w4a8 spent quantizing);
 *   onednn oneDNN's u8 x s8 -> s32 matmul on the same shape (weights K x N in its "ba" layout),
 *          the integer GEMM alone with no scales, what oneDNN reaches with its own kernels (and
 *          the name of the implementation it picked: brg:avx512_core_vnni on VNNI CPUs).
 * Rates count 2 operations per multiply-add of the M x K x N product (GFLOP/s for float, GOP/s
 * for integer). A benchmark, not a test: it asserts nothing. */
#include "bench-common.h"
#include "formats.h"
#include "linear-cpu.h"
#include "quant-layers.h"

#include <dnnl.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int M, K, N;
  const char *what;
} Shape;

/* The tiny encoder's linear layers (Hiera stages 1-4 at 256, 128, 64, 32 tokens a side). */
static const Shape shapes[] = {
  { 65536, 96, 288, "stage 1 qkv" },
  { 65536, 96, 384, "stage 1 mlp fc1" },
  { 65536, 384, 96, "stage 1 mlp fc2" },
  { 16384, 192, 576, "stage 2 qkv" },
  { 16384, 192, 768, "stage 2 mlp fc1" },
  { 16384, 768, 192, "stage 2 mlp fc2" },
  { 4096, 384, 1152, "stage 3 qkv" },
  { 4096, 384, 1536, "stage 3 mlp fc1" },
  { 4096, 1536, 384, "stage 3 mlp fc2" },
  { 1024, 768, 2304, "stage 4 qkv" },
  { 1024, 768, 3072, "stage 4 mlp fc1" },
  { 1024, 3072, 768, "stage 4 mlp fc2" },
};

static double seconds = 3.0;

/* Best times in ms of each of n functions on data, over `seconds` in all: the functions take
 * turns (a tenth of the time each, at least 2 runs per turn, after one warm-up), so that a
 * change in clock speed or in the machine's load over the run affects them alike. */
static void
best_ms (void (*const *fn) (gpointer), int n, gpointer data, double *best)
{
  for (int f = 0; f < n; f++) {
    fn[f] (data);
    best[f] = 1e30;
  }
  for (int turn = 0; turn < 10; turn++)
    for (int f = 0; f < n; f++) {
      const double start = bench_now_ms ();
      for (int i = 0; i < 2 || bench_now_ms () - start < seconds * 1e3 / (10 * n); i++) {
        const double t0 = bench_now_ms ();
        fn[f] (data);
        best[f] = MIN (best[f], bench_now_ms () - t0);
      }
    }
}

typedef struct {
  const Shape *s;
  float *x, *w, *y;             /* (M, K), (N, K), (M, N) */
  Sam2QuantLinear *q;
  void *scratch;
  Sam2Act act;
  guint8 *codes;                /* (M, K) */
  float *scales;
  int32_t *zeros;
  dnnl_primitive_t mm;
  dnnl_stream_t stream;
  dnnl_memory_t mem_a, mem_b, mem_c;
} Bench;

static void
run_sgemm (gpointer data)
{
  Bench *b = data;
  const Shape *s = b->s;
  dnnl_sgemm ('N', 'T', s->M, s->N, s->K, 1.0f, b->x, s->K, b->w, s->K, 0.0f, b->y, s->N);
}

static void
run_w4a8 (gpointer data)
{
  Bench *b = data;
  sam2_quant_linear_forward (b->q, b->x, b->s->M, b->y, b->act, NULL, b->scratch);
}

static void
run_quant (gpointer data)
{
  Bench *b = data;
  sam2_quantize_activations (b->q, b->x, b->s->M, b->codes, b->s->K, b->scales, b->zeros);
}

static void
run_onednn (gpointer data)
{
  Bench *b = data;
  const dnnl_exec_arg_t args[] = {
    { DNNL_ARG_SRC, b->mem_a }, { DNNL_ARG_WEIGHTS, b->mem_b }, { DNNL_ARG_DST, b->mem_c },
  };
  dnnl_primitive_execute (b->mm, b->stream, 3, args);
  dnnl_stream_wait (b->stream);
}

/* oneDNN's u8 (M, K) x s8 (K, N) -> s32 (M, N) matmul; the name of its implementation into
 * `impl`, or FALSE when it cannot be set up. */
static gboolean
onednn_setup (Bench *b, dnnl_engine_t engine, guint8 *a, gint8 *w, int32_t *c, char *impl,
              size_t impl_len)
{
  const Shape *s = b->s;
  dnnl_memory_desc_t md_a, md_b, md_c;
  const dnnl_dims_t da = { s->M, s->K }, db = { s->K, s->N }, dc = { s->M, s->N };
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd;
  if (dnnl_memory_desc_init_by_tag (&md_a, 2, da, dnnl_u8, dnnl_ab) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&md_b, 2, db, dnnl_s8, dnnl_ba) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&md_c, 2, dc, dnnl_s32, dnnl_ab) != dnnl_success
      || dnnl_matmul_desc_init (&desc, &md_a, &md_b, NULL, &md_c) != dnnl_success
      || dnnl_primitive_desc_create (&pd, &desc, NULL, engine, NULL) != dnnl_success)
    return FALSE;
  const char *name = NULL;
  dnnl_primitive_desc_query (pd, dnnl_query_impl_info_str, 0, &name);
  g_strlcpy (impl, name != NULL ? name : "?", impl_len);
  const gboolean ok = dnnl_primitive_create (&b->mm, pd) == dnnl_success
                      && dnnl_stream_create (&b->stream, engine, dnnl_stream_default_flags)
                           == dnnl_success
                      && dnnl_memory_create (&b->mem_a, &md_a, engine, a) == dnnl_success
                      && dnnl_memory_create (&b->mem_b, &md_b, engine, w) == dnnl_success
                      && dnnl_memory_create (&b->mem_c, &md_c, engine, c) == dnnl_success;
  dnnl_primitive_desc_destroy (pd);
  return ok;
}

static Sam2QuantLinear *
layer_new (GRand *r, const Shape *s, Sam2ActQuantMode mode, int rank)
{
  Sam2QuantLinear *q = g_new0 (Sam2QuantLinear, 1);
  Sam2W4 *w = &q->w;
  w->n = s->N;
  w->k = s->K;
  w->group_size = s->K == 96 ? s->K : 128;
  w->n_groups = sam2_w4_n_groups (s->K, w->group_size);
  w->dtype = SAM2_QTYPE_UINT4;
  const size_t bytes = (size_t) s->N * sam2_w4_row_bytes (s->K);
  w->codes = g_new (guint8, bytes);
  for (size_t i = 0; i < bytes; i++)
    w->codes[i] = (guint8) g_rand_int (r);
  w->scales = g_new (float, (size_t) s->N * w->n_groups);
  w->zeros = g_new (guint8, (size_t) s->N * w->n_groups);
  for (size_t i = 0; i < (size_t) s->N * w->n_groups; i++) {
    w->scales[i] = (float) g_rand_double_range (r, 0.005, 0.02);
    w->zeros[i] = (guint8) g_rand_int_range (r, 0, 16);
  }
  float *bias = g_new (float, s->N);
  for (int n = 0; n < s->N; n++)
    bias[n] = (float) g_rand_double_range (r, -0.1, 0.1);
  q->bias = bias;
  q->act = mode;
  q->rank = rank;
  if (rank > 0) {
    q->lora_down = g_new (float, (size_t) rank * s->K);
    q->lora_up = g_new (float, (size_t) s->N * rank);
    for (size_t i = 0; i < (size_t) rank * s->K; i++)
      q->lora_down[i] = (float) g_rand_double_range (r, -0.1, 0.1);
    for (size_t i = 0; i < (size_t) s->N * rank; i++)
      q->lora_up[i] = (float) g_rand_double_range (r, -0.1, 0.1);
  }
  return q;
}

int
main (int argc, char **argv)
{
  int threads = 0, rank = 0;
  gboolean asym = FALSE;
  char *act_name = NULL, *only = NULL;
  GOptionEntry entries[] = {
    { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "Time per shape (3)", "S" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "OpenMP threads (all)", "N" },
    { "asym", 0, 0, G_OPTION_ARG_NONE, &asym, "Asymmetric per-token activations", NULL },
    { "rank", 0, 0, G_OPTION_ARG_INT, &rank, "Low-rank branch of this rank (0)", "R" },
    { "act", 0, 0, G_OPTION_ARG_STRING, &act_name, "Epilogue activation (linear)", "NAME" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &only, "Only the layers whose name has TEXT", "TEXT" },
    { NULL },
  };
  if (!bench_parse_options (&argc, &argv, entries,
                            "- W4A8 CPU kernel vs fp32 sgemm and oneDNN int8"))
    return 2;
  Sam2Act act = SAM2_ACT_NONE;
  if (act_name != NULL && !sam2_act_from_name (act_name, &act)) {
    fprintf (stderr, "unknown activation %s\n", act_name);
    return 2;
  }
#ifdef _OPENMP
  if (threads > 0)
    omp_set_num_threads (threads);
  threads = omp_get_max_threads ();
#else
  threads = 1;
#endif
  dnnl_engine_t engine;
  if (dnnl_engine_create (&engine, dnnl_cpu, 0) != dnnl_success)
    engine = NULL;

  printf ("W4A8 (UINT4 weights, group 128 or K; %s per-token int8 activations; bias; rank %d; "
          "act %s) vs fp32 and oneDNN int8, %d threads, best over %.1f s per shape\n\n",
          asym ? "asymmetric" : "symmetric", rank, sam2_act_name (act), threads, seconds);
  printf ("%-16s %-19s %17s %25s %14s %17s\n", "layer", "M x K -> N", "fp32 ms GFLOP/s",
          "w4a8 ms GOP/s (x fp32)", "quant ms (%)", "onednn ms GOP/s");
  GRand *r = g_rand_new_with_seed (42);
  char impl[128] = "";
  double sum_fp32 = 0.0, sum_w4a8 = 0.0;
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++) {
    const Shape *s = &shapes[i];
    if (only != NULL && strstr (s->what, only) == NULL)
      continue;
    const size_t MK = (size_t) s->M * s->K, NK = (size_t) s->N * s->K, MN = (size_t) s->M * s->N;
    Bench b = { .s = s, .act = act };
    b.x = g_new (float, MK);
    b.w = g_new (float, NK);
    b.y = g_new (float, MN);
    for (size_t j = 0; j < MK; j++)
      b.x[j] = (float) g_rand_double_range (r, -1.0, 1.0);
    for (size_t j = 0; j < NK; j++)
      b.w[j] = (float) g_rand_double_range (r, -0.1, 0.1);
    b.q = layer_new (r, s, asym ? SAM2_ACT_QUANT_TOKEN_ASYM : SAM2_ACT_QUANT_TOKEN_SYM, rank);
    if (!sam2_quant_linear_prepare (b.q)) {
      fprintf (stderr, "out of memory\n");
      return 1;
    }
    b.scratch = g_malloc (sam2_quant_linear_scratch_bytes (b.q, s->M));
    b.codes = g_new (guint8, MK);
    b.scales = g_new (float, s->M);
    b.zeros = g_new (int32_t, s->M);

    void (*const fns[]) (gpointer) = { run_sgemm, run_w4a8, run_quant };
    double t[3];
    best_ms (fns, 3, &b, t);
    const double t_fp32 = t[0], t_w4a8 = t[1], t_quant = t[2];
    const double ops = 2.0 * s->M * s->K * s->N;
    sum_fp32 += t_fp32;
    sum_w4a8 += t_w4a8;

    char onednn[64] = "-";
    gint8 *w8 = g_new0 (gint8, NK);
    int32_t *c32 = g_new (int32_t, MN);
    if (engine != NULL && onednn_setup (&b, engine, b.codes, w8, c32, impl, sizeof impl)) {
      void (*const fn[]) (gpointer) = { run_onednn };
      double t_int8;
      run_quant (&b);
      best_ms (fn, 1, &b, &t_int8);
      g_snprintf (onednn, sizeof onednn, "%8.2f %7.1f", t_int8, ops / (t_int8 * 1e6));
      dnnl_primitive_destroy (b.mm);
      dnnl_stream_destroy (b.stream);
      dnnl_memory_destroy (b.mem_a);
      dnnl_memory_destroy (b.mem_b);
      dnnl_memory_destroy (b.mem_c);
    }
    char shape[32];
    g_snprintf (shape, sizeof shape, "%d x %d -> %d", s->M, s->K, s->N);
    printf ("%-16s %-19s %8.2f %8.1f %8.2f %7.1f (%.2fx) %7.2f (%3.0f%%) %17s\n", s->what, shape,
            t_fp32, ops / (t_fp32 * 1e6), t_w4a8, ops / (t_w4a8 * 1e6), t_fp32 / t_w4a8, t_quant,
            100.0 * t_quant / t_w4a8, onednn);
    fflush (stdout);

    g_free (w8);
    g_free (c32);
    g_free (b.codes);
    g_free (b.scales);
    g_free (b.zeros);
    g_free (b.scratch);
    sam2_test_layer_free (b.q);
    g_free (b.x);
    g_free (b.w);
    g_free (b.y);
  }
  printf ("\nall layers: fp32 %.1f ms, w4a8 %.1f ms (%.2fx); oneDNN int8 implementation: %s\n",
          sum_fp32, sum_w4a8, sum_fp32 / sum_w4a8, impl);
  g_rand_free (r);
  g_free (act_name);
  g_free (only);
  if (engine != NULL)
    dnnl_engine_destroy (engine);
  return 0;
}
