/* bench-attention: the CPU backend's attention op alone, on the encoder's attention shapes.
 *
 *   sam2-bench-attention [--model REF | --hash-config CONFIG.json] [--iterations N] [--threads N]
 *
 * For every Hiera block, q k v laid out as the block lays them out (q, k, v interleaved in one
 * qkv buffer, or q pooled into its own buffer), the op timed alone: per block the median time and
 * the rate (4 * len_q * len_k * dim FLOPs per sequence: q k^T and p v), then the sum over blocks.
 * A benchmark, not a test: it asserts nothing, but prints a checksum of the outputs so that two
 * builds can be compared. */
#include "bench-common.h"
#include "backend.h"
#include "model.h"

#include <math.h>
#include <stdio.h>

int
main (int argc, char **argv)
{
  int iterations, rc;
  Sam2Precision precision;
  Sam2Model *model = bench_cpu_model_start (&argc, &argv,
                                             "- the CPU attention op on the encoder's shapes",
                                             "timed runs per block (default 5)", &iterations,
                                             &precision, &rc);
  if (model == NULL)
    return rc;
  g_print ("threads: %d, precision %s\n", sam2_get_num_threads (),
           sam2_precision_to_string (precision));
  Sam2Backend *b = sam2_backend_cpu_new_full (precision, NULL);
  double total_ms = 0.0, total_gflop = 0.0, checksum = 0.0;
  double *t = g_new (double, iterations);
  for (int i = 0; i < model->n_blocks; i++) {
    const Sam2HieraBlock *blk = &model->blocks[i];
    const int d = blk->dim_out, pooled = blk->q_stride > 1;
    const size_t kv_n = (size_t) blk->n_seq * blk->len_k * 3 * d;
    const size_t q_n = (size_t) blk->n_seq * blk->len_q * d;
    float *qkv = g_new (float, kv_n), *q = pooled ? g_new (float, q_n) : NULL;
    float *out = g_new (float, q_n);
    for (size_t j = 0; j < kv_n; j++)
      qkv[j] = (float) ((j * 2654435761u) % 1000) / 250.0f - 2.0f;
    for (size_t j = 0; pooled && j < q_n; j++)
      q[j] = (float) ((j * 40503u) % 1000) / 250.0f - 2.0f;
    const Sam2AttentionArgs args = {
      .batch = blk->n_seq, .heads = blk->heads, .head_dim = blk->head_dim,
      .len_q = blk->len_q, .len_k = blk->len_k, .scale = 1.0f / sqrtf ((float) blk->head_dim),
      .q = pooled ? q : qkv, .q_ld = pooled ? d : 3 * d,
      .q_batch_stride = (size_t) blk->len_q * (pooled ? d : 3 * d),
      .k = qkv + d, .k_ld = 3 * d, .k_batch_stride = (size_t) blk->len_k * 3 * d,
      .v = qkv + 2 * d, .v_ld = 3 * d, .v_batch_stride = (size_t) blk->len_k * 3 * d,
      .out = out, .out_ld = d, .out_batch_stride = (size_t) blk->len_q * d,
    };
    b->ops->attention (b, &args); /* warm-up: scratch, page faults */
    for (int it = 0; it < iterations; it++) {
      double t0 = bench_now_ms ();
      b->ops->attention (b, &args);
      t[it] = bench_now_ms () - t0;
    }
    const double ms = bench_median (t, iterations);
    const double gflop = 4.0 * blk->n_seq * blk->len_q * (double) blk->len_k * d / 1e9;
    double sum = 0.0;
    for (size_t j = 0; j < q_n; j++)
      sum += out[j] * (double) ((j % 7) + 1);
    checksum += sum;
    g_print ("block %2d: %4d seq x %d heads x D %3d, len_q %4d len_k %4d: %8.2f ms %6.1f GFLOP/s"
             "  (sum %.6e)\n", i, blk->n_seq, blk->heads, blk->head_dim, blk->len_q, blk->len_k, ms,
             gflop / (ms / 1e3), sum);
    total_ms += ms;
    total_gflop += gflop;
    g_free (qkv);
    g_free (q);
    g_free (out);
  }
  g_print ("attention total: %.1f ms, %.2f GFLOP, %.1f GFLOP/s (checksum %.9e)\n", total_ms,
           total_gflop, total_gflop / (total_ms / 1e3), checksum);
  g_free (t);
  sam2_backend_free (b);
  sam2_model_unref (model);
  return 0;
}
