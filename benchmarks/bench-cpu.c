/* bench-cpu: CPU latency of the FP32 model next to the GEMM library it runs on.
 *
 *   sam2-bench-cpu [--model REF | --hash-config CONFIG.json] [--iterations N] [--threads N]
 *
 * Prints the sgemm rate of the GEMM library the CPU backend uses (oneDNN) on shapes the tiny
 * encoder runs, the encoder latency (median) and
 * the GFLOP/s it achieves (FLOPs counted from the model's geometry, 2 per multiply-add, the
 * same convention as PyTorch's FLOP counter), the decoder latency per prompt, and the peak
 * resident memory; and which attention path the CPU backend takes on this machine. A benchmark,
 * not a test: it asserts nothing. */
#include "attention-cpu.h"
#include "bench-common.h"
#include "config.h"
#include "model.h"
#include "session.h"

#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

/* Best-of oneDNN sgemm rate for (M, K) x (N, K)^T, row-major, in GFLOP/s: the call and layout
 * the backend's linear op makes. */
static double
sgemm_rate (int M, int K, int N)
{
  float *a = g_new (float, (size_t) M * K), *b = g_new (float, (size_t) N * K);
  float *c = g_new (float, (size_t) M * N);
  for (size_t i = 0; i < (size_t) M * K; i++)
    a[i] = (float) (i % 13) * 0.01f;
  for (size_t i = 0; i < (size_t) N * K; i++)
    b[i] = (float) (i % 7) * 0.01f;
  double best = 1e30, start = bench_now_ms ();
  while (bench_now_ms () - start < 1500.0) {
    double t0 = bench_now_ms ();
    dnnl_sgemm ('N', 'T', M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    best = MIN (best, bench_now_ms () - t0);
  }
  g_free (a);
  g_free (b);
  g_free (c);
  return 2.0 * M * N * K / (best * 1e6);
}

static double
linear_flops (const Sam2Linear *l, double M)
{
  return 2.0 * M * l->in_features * l->out_features;
}

/* FLOPs of one encoder pass (patch embedding, blocks, neck, conv_s0/s1). */
static double
encoder_flops (const Sam2Model *m)
{
  double f = linear_flops (&m->patch_embed, (double) m->patch_h * m->patch_w);
  for (int i = 0; i < m->n_blocks; i++) {
    const Sam2HieraBlock *b = &m->blocks[i];
    const double tin = (double) b->in_h * b->in_w, tout = (double) b->out_h * b->out_w;
    const double keys = (double) b->n_seq * b->len_k, queries = (double) b->n_seq * b->len_q;
    f += linear_flops (&b->qkv, keys) + linear_flops (&b->attn_proj, queries);
    f += 4.0 * b->n_seq * b->len_q * (double) b->len_k * b->dim_out; /* q k^T and p v */
    if (b->has_skip_proj)
      f += linear_flops (&b->skip_proj, tin);
    for (int l = 0; l < b->mlp.n_layers; l++)
      f += linear_flops (&b->mlp.layers[l], tout);
  }
  for (int s = 0; s < m->n_stages; s++)
    f += linear_flops (&m->neck_conv[m->n_stages - 1 - s], (double) m->stage_h[s] * m->stage_w[s]);
  f += linear_flops (&m->conv_s0, (double) m->feat_h[0] * m->feat_w[0]);
  f += linear_flops (&m->conv_s1, (double) m->feat_h[1] * m->feat_w[1]);
  return f;
}

/* One profiled pass of `s`, op by op: its time to `decimals` places and its calls. */
static void
print_profile (Sam2Session *s, const char *heading, int decimals)
{
  const Sam2OpProfile *prof = s->backend->ops->profile_read (s->backend);
  g_print ("%s\n", heading);
  for (int k = 0; k < SAM2_OP_COUNT; k++)
    if (prof[k].calls > 0)
      g_print ("  %-26s %8.*f ms  %5ld calls\n", prof[k].name, decimals, prof[k].ms,
               prof[k].calls);
}

int
main (int argc, char **argv)
{
  int iterations, rc;
  Sam2Precision precision;
  Sam2Model *model = bench_cpu_model_start (&argc, &argv, "- CPU latency of the model",
                                             "timed encoder runs (default 5)", &iterations,
                                             &precision, &rc);
  if (model == NULL)
    return rc;
  GError *error = NULL;
  const int S = sam2_model_get_image_size (model);
  g_print ("threads: %d\n", sam2_get_num_threads ());
  /* which attention the backend runs for the encoder's head_dim 96 (attention-cpu.h) */
  const Sam2AttentionArgs probe = { .head_dim = 96 };
  g_print ("attention: %s\n", precision == SAM2_PRECISION_BF16
           ? "fused AVX-512 BF16"
           : sam2_cpu_flash_supported (&probe)
           ? "fused AVX2 (SAM2_CPU_ATTENTION=sgemm for oneDNN sgemm)"
           : "oneDNN sgemm + softmax (SAM2_CPU_ATTENTION=fused for the fused AVX2 kernel)");
  g_print ("oneDNN sgemm (best of 1.5 s), GFLOP/s:\n");
  static const int shapes[][3] = { { 4096, 384, 1536 }, { 4096, 1536, 384 }, { 65536, 96, 288 },
                                   { 16384, 192, 768 }, { 2048, 2048, 2048 } };
  double blas_peak = 0.0;
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++) {
    double r = sgemm_rate (shapes[i][0], shapes[i][1], shapes[i][2]);
    blas_peak = MAX (blas_peak, r);
    g_print ("  %6d x %5d x %5d  %7.1f\n", shapes[i][0], shapes[i][1], shapes[i][2], r);
  }

  /* the CPU backend always: AUTO would pick CUDA on a machine with a GPU */
  const Sam2SessionOptions cpu_only = { SAM2_BACKEND_CPU, precision, 1 };
  Sam2Session *s = sam2_session_new_full (model, &cpu_only, &error);
  if (s == NULL) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  g_print ("session: %s\n", sam2_session_describe_backend (s));
  float *pixels = bench_hash_pixels ((size_t) 3 * S * S); /* (3, S, S) */
  sam2_session_encode (s, pixels, NULL); /* warm-up: page faults, thread pool */
  double *t = g_new (double, iterations);
  for (int i = 0; i < iterations; i++) {
    double t0 = bench_now_ms ();
    if (!sam2_session_encode (s, pixels, &error)) {
      g_printerr ("%s\n", error->message);
      return 1;
    }
    t[i] = bench_now_ms () - t0;
  }
  const double enc_ms = bench_median (t, iterations);
  /* one more pass with per-op timing, to show where the time goes */
  s->backend->ops->profile_start (s->backend);
  sam2_session_encode (s, pixels, NULL);
  print_profile (s, "encoder time by op (one pass):", 1);
  const double gflop = encoder_flops (model) / 1e9;
  g_print ("encoder %dx%d: %.1f ms median of %d, %.2f GFLOP, %.1f GFLOP/s (%.0f%% of the best "
           "sgemm rate above)\n", S, S, enc_ms, iterations, gflop, gflop / (enc_ms / 1e3),
           100.0 * gflop / (enc_ms / 1e3) / blas_peak);

  const Sam2Point pt = { S * 0.5f, S * 0.375f, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &pt, .n_points = 1 };
  sam2_session_decode (s, &prompt, 1, TRUE, NULL);
  const int dec_iters = 20;
  double *td = g_new (double, dec_iters);
  for (int i = 0; i < dec_iters; i++) {
    double t0 = bench_now_ms ();
    sam2_session_decode (s, &prompt, 1, TRUE, NULL);
    td[i] = bench_now_ms () - t0;
  }
  g_print ("decoder: %.2f ms per prompt (one point, multimask, median of %d)\n",
           bench_median (td, dec_iters), dec_iters);
  s->backend->ops->profile_start (s->backend);
  sam2_session_decode (s, &prompt, 1, TRUE, NULL);
  print_profile (s, "decoder time by op (one prompt):", 2);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  g_print ("peak resident memory: %.0f MB\n", ru.ru_maxrss / 1024.0);
  g_free (t);
  g_free (td);
  g_free (pixels);
  sam2_session_free (s);
  sam2_model_unref (model);
  return 0;
}
