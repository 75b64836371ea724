/* gemm-bf16-cpu.c: BF16 GEMMs of float layers through oneDNN's matmul (see gemm-bf16-cpu.h).
 *
 * One matmul primitive per weight (two with accumulation), made for a run-time number of rows so
 * that the decoder's varying token counts reuse it; activations are rounded into a scratch that
 * grows to the largest call. */
#include "gemm-bf16-cpu.h"
#include "backend.h"
#include "bf16-x86.h"

#include <dnnl.h>
#include <string.h>

typedef struct {
  uint16_t *w;                  /* (N, K) bfloat16 */
  int N, K;
  dnnl_primitive_t mm[2];       /* [accumulate]: y = x w^T, y += x w^T; made on first use */
} Bf16Weight;

struct _Sam2GemmBf16 {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  GHashTable *weights;          /* const float * (the float weight) -> Bf16Weight * */
  uint16_t *x;                  /* the activations in bfloat16, (M, K) of the largest call */
  size_t x_elems;
};

#if defined(__x86_64__) && defined(__GNUC__)
/* n floats to bfloat16, round to nearest even. */
__attribute__ ((target (SAM2_BF16_TARGET))) static void
to_bf16 (const float *x, size_t n, uint16_t *out)
{
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i += 16)
    _mm256_mask_storeu_epi16 (out + i, sam2_first_lanes16 ((long) (n - i)),
                              sam2_to_bf16x16 (x + i, (long) (n - i)));
}
#define HAVE_BF16_CONVERSION 1

static void
weight_free (gpointer p)
{
  Bf16Weight *w = p;
  for (int a = 0; a < 2; a++)
    if (w->mm[a] != NULL)
      dnnl_primitive_destroy (w->mm[a]);
  g_free (w->w);
  g_free (w);
}

/* The matmul of bf16 (M, K) x (K, N) -> f32 (M, N), M given at run time; weights as (N, K) row
 * major ("ba"). `accumulate` adds to the destination (a sum post-op). NULL when oneDNN has only
 * its reference implementation for it (too slow to be the point of BF16). */
static dnnl_primitive_t
make_matmul (dnnl_engine_t engine, int N, int K, gboolean accumulate)
{
  const dnnl_dims_t ds = { DNNL_RUNTIME_DIM_VAL, K }, dw = { K, N };
  const dnnl_dims_t dd = { DNNL_RUNTIME_DIM_VAL, N };
  dnnl_memory_desc_t ms, mw, md;
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t post = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t mm = NULL;
  if (dnnl_memory_desc_init_by_tag (&ms, 2, ds, dnnl_bf16, dnnl_ab) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&mw, 2, dw, dnnl_bf16, dnnl_ba) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&md, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success
      || dnnl_matmul_desc_init (&desc, &ms, &mw, NULL, &md) != dnnl_success
      || dnnl_primitive_attr_create (&attr) != dnnl_success)
    return NULL;
  if (accumulate
      && (dnnl_post_ops_create (&post) != dnnl_success
          || dnnl_post_ops_append_sum (post, 1.0f) != dnnl_success
          || dnnl_primitive_attr_set_post_ops (attr, post) != dnnl_success))
    goto out;
  if (dnnl_primitive_desc_create (&pd, &desc, attr, engine, NULL) != dnnl_success)
    goto out;
  const char *impl = NULL;
  dnnl_primitive_desc_query (pd, dnnl_query_impl_info_str, 0, &impl);
  if (impl != NULL && g_str_has_prefix (impl, "ref"))
    goto out;
  if (dnnl_primitive_create (&mm, pd) != dnnl_success)
    mm = NULL;
out:
  if (pd != NULL)
    dnnl_primitive_desc_destroy (pd);
  if (post != NULL)
    dnnl_post_ops_destroy (post);
  dnnl_primitive_attr_destroy (attr);
  return mm;
}
#endif

gboolean
sam2_gemm_bf16_available (void)
{
#ifdef HAVE_BF16_CONVERSION
  static gsize answer = 0;   /* 0: not asked yet, 1: no, 2: yes */
  if (g_once_init_enter (&answer)) {
    /* a matmul of oneDNN's own kernels (not its reference one) for a small shape */
    dnnl_engine_t engine;
    gboolean has = FALSE;
    if (dnnl_engine_create (&engine, dnnl_cpu, 0) == dnnl_success) {
      dnnl_primitive_t probe = make_matmul (engine, 16, 32, FALSE);
      has = probe != NULL;
      if (has)
        dnnl_primitive_destroy (probe);
      dnnl_engine_destroy (engine);
    }
    g_once_init_leave (&answer, has ? 2 : 1);
  }
  return answer == 2;
#else
  return FALSE;
#endif
}

Sam2GemmBf16 *
sam2_gemm_bf16_new (void)
{
#ifdef HAVE_BF16_CONVERSION
  Sam2GemmBf16 *g = g_new0 (Sam2GemmBf16, 1);
  if (dnnl_engine_create (&g->engine, dnnl_cpu, 0) != dnnl_success) {
    g_free (g);
    return NULL;
  }
  if (dnnl_stream_create (&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy (g->engine);
    g_free (g);
    return NULL;
  }
  g->weights = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, weight_free);
  return g;
#else
  return NULL;
#endif
}

void
sam2_gemm_bf16_free (Sam2GemmBf16 *g)
{
#ifdef HAVE_BF16_CONVERSION
  if (g == NULL)
    return;
  g_hash_table_destroy (g->weights);
  dnnl_stream_destroy (g->stream);
  dnnl_engine_destroy (g->engine);
  g_free (g->x);
  g_free (g);
#else
  g_assert (g == NULL); /* sam2_gemm_bf16_new made none */
#endif
}

#ifdef HAVE_BF16_CONVERSION
static int
run_matmul (Sam2GemmBf16 *g, dnnl_primitive_t mm, const uint16_t *x, int M, const Bf16Weight *w,
            float *y)
{
  const dnnl_dims_t ds = { M, w->K }, dw = { w->K, w->N }, dd = { M, w->N };
  dnnl_memory_desc_t ms, mw, md;
  dnnl_memory_t mem[3] = { NULL, NULL, NULL };
  int status = SAM2_STATUS_UNSUPPORTED;
  if (dnnl_memory_desc_init_by_tag (&ms, 2, ds, dnnl_bf16, dnnl_ab) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&mw, 2, dw, dnnl_bf16, dnnl_ba) != dnnl_success
      || dnnl_memory_desc_init_by_tag (&md, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success
      || dnnl_memory_create (&mem[0], &ms, g->engine, (void *) x) != dnnl_success
      || dnnl_memory_create (&mem[1], &mw, g->engine, w->w) != dnnl_success
      || dnnl_memory_create (&mem[2], &md, g->engine, y) != dnnl_success)
    goto out;
  const dnnl_exec_arg_t args[] = {
    { DNNL_ARG_SRC, mem[0] }, { DNNL_ARG_WEIGHTS, mem[1] }, { DNNL_ARG_DST, mem[2] },
  };
  if (dnnl_primitive_execute (mm, g->stream, 3, args) == dnnl_success
      && dnnl_stream_wait (g->stream) == dnnl_success)
    status = SAM2_STATUS_OK;
out:
  for (int i = 0; i < 3; i++)
    if (mem[i] != NULL)
      dnnl_memory_destroy (mem[i]);
  return status;
}
#endif

int
sam2_gemm_bf16_nt (Sam2GemmBf16 *g, const float *x, int M, const float *w, int N, int K,
                   gboolean accumulate, float *y)
{
#ifdef HAVE_BF16_CONVERSION
  Bf16Weight *bw = g_hash_table_lookup (g->weights, w);
  if (bw == NULL) {
    bw = g_new0 (Bf16Weight, 1);
    bw->w = g_try_new (uint16_t, (size_t) N * K);
    if (bw->w == NULL) {
      g_free (bw);
      return SAM2_STATUS_OUT_OF_MEMORY;
    }
    bw->N = N;
    bw->K = K;
    to_bf16 (w, (size_t) N * K, bw->w);
    g_hash_table_insert (g->weights, (gpointer) w, bw);
  }
  g_return_val_if_fail (bw->N == N && bw->K == K, SAM2_STATUS_UNSUPPORTED);
  if (bw->mm[accumulate != 0] == NULL
      && (bw->mm[accumulate != 0] = make_matmul (g->engine, N, K, accumulate)) == NULL)
    return SAM2_STATUS_UNSUPPORTED;
  const size_t n = (size_t) M * K;
  if (n > g->x_elems) {
    uint16_t *grown = g_try_new (uint16_t, n);
    if (grown == NULL)
      return SAM2_STATUS_OUT_OF_MEMORY;
    g_free (g->x);
    g->x = grown;
    g->x_elems = n;
  }
  to_bf16 (x, n, g->x);
  return run_matmul (g, bw->mm[accumulate != 0], g->x, M, bw, y);
#else
  return SAM2_STATUS_UNSUPPORTED;
#endif
}
