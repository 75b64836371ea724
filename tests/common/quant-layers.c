/* quant-layers.c: random W4A8 layers, inputs and cases for the tests (quant-layers.h). */
#include "quant-layers.h"

#include <math.h>

const char *const sam2_test_mode_names[] = { "none", "token_sym", "token_asym", "tensor_sym",
                                             "tensor_asym" };
const char *const sam2_test_act_names[] = { "none", "gelu", "gelu_tanh", "relu", "silu",
                                            "sigmoid" };

gboolean
sam2_test_mode_asym (Sam2ActQuantMode m)
{
  return m == SAM2_ACT_QUANT_TOKEN_ASYM || m == SAM2_ACT_QUANT_TENSOR_ASYM;
}

gboolean
sam2_test_mode_static (Sam2ActQuantMode m)
{
  return m == SAM2_ACT_QUANT_TENSOR_SYM || m == SAM2_ACT_QUANT_TENSOR_ASYM;
}

double
sam2_test_gauss (GRand *r)
{
  double u1 = g_rand_double_range (r, 1e-12, 1.0), u2 = g_rand_double (r);
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

/* a power of two 2^e, e uniform in [lo, hi] */
static float
pow2 (GRand *r, int lo, int hi)
{
  return ldexpf (1.0f, g_rand_int_range (r, lo, hi + 1));
}

Sam2QuantLinear *
sam2_test_layer_new (GRand *r, const Sam2TestLayerSpec *s)
{
  Sam2QuantLinear *q = g_new0 (Sam2QuantLinear, 1);
  const int N = s->N, K = s->K, G = s->G > 0 ? s->G : K;
  Sam2W4 *w = &q->w;
  w->n = N;
  w->k = K;
  w->group_size = G;
  w->n_groups = sam2_w4_n_groups (K, G);
  w->dtype = s->dtype;
  w->codes = g_new0 (guint8, (size_t) N * sam2_w4_row_bytes (K));  /* (N, (K + 1) / 2) */
  w->scales = g_new (float, (size_t) N * w->n_groups);               /* (N, n_groups) */
  w->zeros = g_new (guint8, (size_t) N * w->n_groups);               /* (N, n_groups) */
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++)
      sam2_w4_set (w->codes, K, n, k, g_rand_int_range (r, 0, 16));
  for (size_t i = 0; i < (size_t) N * w->n_groups; i++) {
    w->scales[i] = s->dyadic ? pow2 (r, -2, 0)
                             : (float) (0.01 * exp (g_rand_double_range (r, -1, 1)));
    w->zeros[i] = s->dtype == SAM2_QTYPE_SINT4 ? SAM2_SINT4_ZERO : g_rand_int_range (r, 0, 16);
  }
  q->act = s->mode;
  if (s->bias) {
    float *b = g_new (float, N);                                     /* (N) */
    for (int n = 0; n < N; n++)
      b[n] = s->dyadic ? g_rand_int_range (r, -16, 17) / 4.0f
                       : (float) g_rand_double_range (r, -1, 1);
    q->bias = b;
  }
  if (s->smooth) {
    q->smooth_inv = g_new (float, K);                                /* (K) */
    for (int k = 0; k < K; k++)
      q->smooth_inv[k] = s->dyadic ? pow2 (r, -1, 1)
                                   : (float) exp (g_rand_double_range (r, -1.4, 1.4));
  }
  q->rank = s->rank;
  if (s->rank > 0) {
    q->lora_down = g_new (float, (size_t) s->rank * K);              /* (rank, K) */
    q->lora_up = g_new (float, (size_t) N * s->rank);                /* (N, rank) */
    for (size_t i = 0; i < (size_t) s->rank * K; i++)
      q->lora_down[i] = s->dyadic ? g_rand_int_range (r, -2, 3) / 2.0f
                                  : (float) (sam2_test_gauss (r) / sqrt (K));
    for (size_t i = 0; i < (size_t) N * s->rank; i++)
      q->lora_up[i] = s->dyadic ? g_rand_int_range (r, -2, 3) / 2.0f
                                : (float) (0.1 * sam2_test_gauss (r) / sqrt (s->rank));
  }
  return q;
}

void
sam2_test_layer_free (Sam2QuantLinear *q)
{
  if (q->kernel != NULL)
    q->kernel_free (q->kernel);
  g_free (q->w.codes);
  g_free (q->w.scales);
  g_free (q->w.zeros);
  g_free ((float *) q->bias);
  g_free (q->smooth_inv);
  g_free (q->lora_down);
  g_free (q->lora_up);
  g_free (q);
}

float *
sam2_test_input_new (GRand *r, const Sam2QuantLinear *q, int M)
{
  const int K = q->w.k;
  float *x = g_new (float, (size_t) M * K);                          /* (M, K) */
  for (int m = 0; m < M; m++) {
    float *xr = x + (size_t) m * K;
    const int kind = M == 1 ? 0 : m % 8;
    for (int k = 0; k < K; k++) {
      double v = sam2_test_gauss (r);
      switch (kind) {
      case 1:
        v *= k % 13 == 0 ? 20.0 : 1.0;
        break;
      case 2:
        v = 0.5 * v * (1.0 + erf (v / sqrt (2.0)));
        break;
      case 3:
        v = 0.0;
        break;
      case 4:
        v = fabs (v) + 0.1;
        break;
      case 5:
        v = -fabs (v) - 0.1;
        break;
      case 6: {
        /* v / s is a multiple of 1/16 plus 1/32: with the row's range set by two entries to a
         * scale of exactly 1/16 (symmetric: max 127/16; asymmetric: -za/16 .. (255 - za)/16) */
        const gboolean asym = sam2_test_mode_asym (q->act);
        if (k == 0)
          v = asym ? -40.0 / 16 : 127.0 / 16;
        else if (k == 1)
          v = asym ? 215.0 / 16 : -100.0 / 16;
        else
          v = (g_rand_int_range (r, asym ? -40 : -127, asym ? 215 : 127) + 0.5) / 16.0;
        if (q->smooth_inv != NULL)
          v /= q->smooth_inv[k];
        break;
      }
      case 7:
        v *= 100.0;
        break;
      default:
        break;
      }
      xr[k] = (float) v;
    }
  }
  return x;
}

void
sam2_test_set_static_params (Sam2QuantLinear *q, const float *x, int M)
{
  if (!sam2_test_mode_static (q->act))
    return;
  const int K = q->w.k;
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < (size_t) M * K; i++) {
    const float v = q->smooth_inv != NULL ? x[i] * q->smooth_inv[i % K] : x[i];
    lo = MIN (lo, v);
    hi = MAX (hi, v);
  }
  if (sam2_test_mode_asym (q->act)) {
    q->act_scale = 0.8f * (hi - lo) / 255.0f;
    q->act_zero = q->act_scale > 0.0f ? roundf (-0.8f * lo / q->act_scale) : 0.0f;
  } else {
    q->act_scale = 0.8f * MAX (hi, -lo) / 127.0f;
    q->act_zero = 0.0f;
  }
}

Sam2QuantLinear *
sam2_test_case_new (const Sam2TestCase *c, float **x, float **residual)
{
  GRand *r = g_rand_new_with_seed (c->seed);
  Sam2QuantLinear *q = sam2_test_layer_new (r, &c->spec);
  const size_t MN = (size_t) c->M * c->spec.N;
  *x = sam2_test_input_new (r, q, c->M);
  sam2_test_set_static_params (q, *x, c->M);
  *residual = NULL;
  if (c->res != SAM2_TEST_RES_NONE) {
    *residual = g_new (float, MN);
    for (size_t i = 0; i < MN; i++)
      (*residual)[i] = (float) sam2_test_gauss (r);
  }
  g_rand_free (r);
  return q;
}

char *
sam2_test_case_name (const Sam2TestCase *c)
{
  const Sam2TestLayerSpec *s = &c->spec;
  return g_strdup_printf ("M %d K %d N %d g %d %s %s%s%s r %d %s res %d", c->M, s->K, s->N,
                          s->G > 0 ? s->G : s->K, s->dtype == SAM2_QTYPE_SINT4 ? "s4" : "u4",
                          sam2_test_mode_names[s->mode], s->bias ? " bias" : "",
                          s->smooth ? " smooth" : "", s->rank, sam2_test_act_names[c->act],
                          c->res);
}
