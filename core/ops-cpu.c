/* ops-cpu.c: see ops-cpu.h. Loops are parallel over rows where the work is large enough for the
 * OpenMP fork to pay off. */
#include "ops-cpu.h"
#include "simd-math.h"

#include <math.h>
#include <string.h>

#define PARALLEL_MIN_FLOATS 65536


float
sam2_cpu_act1 (Sam2Act act, float x)
{
  switch (act) {
  case SAM2_ACT_NONE:
    return x;
  case SAM2_ACT_GELU:
    return 0.5f * x * (1.0f + sam2_erf_approx (x * (float) M_SQRT1_2));
  case SAM2_ACT_GELU_TANH: {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf (k * (x + 0.044715f * x * x * x)));
  }
  case SAM2_ACT_RELU:
    return x > 0.0f ? x : 0.0f;
  case SAM2_ACT_SILU:
    /* as sam2_cpu_act_row */
    return x < -SAM2_EXP_APPROX_MAX ? -0.0f : x / (1.0f + sam2_exp_approx (-x));
  case SAM2_ACT_SIGMOID:
    return 1.0f / (1.0f + sam2_exp_approx (-x));
  }
  return x;
}

void
sam2_cpu_activation (Sam2Act act, float *x, size_t n)
{
  if (act == SAM2_ACT_NONE)
    return;
  const size_t chunk = 4096;
  const long chunks = (long) ((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN_FLOATS)
  for (long c = 0; c < chunks; c++)
    sam2_cpu_act_row (act, x + c * chunk, (int) MIN (chunk, n - c * chunk));
}

void
sam2_cpu_bias_act (float *y, int M, int N, const float *bias, Sam2Act act)
{
  if (bias == NULL && act == SAM2_ACT_NONE)
    return;
#pragma omp parallel for schedule(static) if ((size_t) M * N > PARALLEL_MIN_FLOATS)
  for (int m = 0; m < M; m++) {
    float *row = y + (size_t) m * N;
    if (bias != NULL)
      sam2_cpu_add_row_inplace (row, bias, N);
    sam2_cpu_act_row (act, row, N);
  }
}

/* LayerNorm statistics in double, in two passes: the references are float64, and a one-pass
 * float variance loses digits on the large-mean rows the hash weights produce. Each output is
 * (float) ((x - mean) * rstd) * weight + bias, the product rounded to float first. */
static void
layer_norm_row_scalar (const float *x, int C, const float *weight, const float *bias, float eps,
                       float *y)
{
  double mean = 0.0;
  for (int c = 0; c < C; c++)
    mean += x[c];
  mean /= C;
  double var = 0.0;
  for (int c = 0; c < C; c++) {
    double d = x[c] - mean;
    var += d * d;
  }
  var /= C;
  const double rstd = 1.0 / sqrt (var + eps);
  for (int c = 0; c < C; c++)
    y[c] = (float) ((x[c] - mean) * rstd) * weight[c] + bias[c];
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_LAYER_NORM_AVX2 1

__attribute__ ((target ("avx2"))) static inline double
hsum4 (__m256d v)
{
  __m128d s = _mm_add_pd (_mm256_castpd256_pd128 (v), _mm256_extractf128_pd (v, 1));
  return _mm_cvtsd_f64 (_mm_add_sd (s, _mm_unpackhi_pd (s, s)));
}

/* The same statistics and outputs with the sums spread over 16 double lanes: the scalar form's
 * two sums are chains of dependent double additions (4 cycles each per channel), which made
 * LayerNorm a tenth of the encoder. Only the order of the additions differs (no FMA anywhere:
 * the products are rounded as in the scalar form), so the statistics agree to the last bits of
 * a double and the float outputs almost always bit for bit. */
__attribute__ ((target ("avx2"))) static void
layer_norm_row_avx2 (const float *x, int C, const float *weight, const float *bias, float eps,
                     float *y)
{
  __m256d acc[4] = { _mm256_setzero_pd (), _mm256_setzero_pd (), _mm256_setzero_pd (),
                     _mm256_setzero_pd () };
  int c = 0;
  for (; c + 16 <= C; c += 16)
    for (int j = 0; j < 4; j++)
      acc[j] = _mm256_add_pd (acc[j], _mm256_cvtps_pd (_mm_loadu_ps (x + c + 4 * j)));
  double mean = hsum4 (_mm256_add_pd (_mm256_add_pd (acc[0], acc[1]),
                                      _mm256_add_pd (acc[2], acc[3])));
  for (; c < C; c++)
    mean += x[c];
  mean /= C;

  const __m256d vmean = _mm256_set1_pd (mean);
  for (int j = 0; j < 4; j++)
    acc[j] = _mm256_setzero_pd ();
  c = 0;
  for (; c + 16 <= C; c += 16)
    for (int j = 0; j < 4; j++) {
      const __m256d d = _mm256_sub_pd (_mm256_cvtps_pd (_mm_loadu_ps (x + c + 4 * j)), vmean);
      acc[j] = _mm256_add_pd (acc[j], _mm256_mul_pd (d, d));
    }
  double var = hsum4 (_mm256_add_pd (_mm256_add_pd (acc[0], acc[1]),
                                     _mm256_add_pd (acc[2], acc[3])));
  for (; c < C; c++) {
    const double d = x[c] - mean;
    var += d * d;
  }
  var /= C;
  const double rstd = 1.0 / sqrt (var + eps);

  const __m256d vrstd = _mm256_set1_pd (rstd);
  c = 0;
  for (; c + 8 <= C; c += 8) {
    const __m128 lo = _mm256_cvtpd_ps (_mm256_mul_pd (
        _mm256_sub_pd (_mm256_cvtps_pd (_mm_loadu_ps (x + c)), vmean), vrstd));
    const __m128 hi = _mm256_cvtpd_ps (_mm256_mul_pd (
        _mm256_sub_pd (_mm256_cvtps_pd (_mm_loadu_ps (x + c + 4)), vmean), vrstd));
    const __m256 n = _mm256_insertf128_ps (_mm256_castps128_ps256 (lo), hi, 1);
    _mm256_storeu_ps (y + c, _mm256_add_ps (_mm256_mul_ps (n, _mm256_loadu_ps (weight + c)),
                                            _mm256_loadu_ps (bias + c)));
  }
  for (; c < C; c++)
    y[c] = (float) ((x[c] - mean) * rstd) * weight[c] + bias[c];
}
#endif

void
sam2_cpu_layer_norm_row (const float *x, int C, const float *weight, const float *bias, float eps,
                         float *y)
{
#ifdef HAVE_LAYER_NORM_AVX2
  if (__builtin_cpu_supports ("avx2")) {
    layer_norm_row_avx2 (x, C, weight, bias, eps, y);
    return;
  }
#endif
  layer_norm_row_scalar (x, C, weight, bias, eps, y);
}

void
sam2_cpu_layer_norm (const float *x, int M, int C, const float *weight, const float *bias,
                     float eps, float *y)
{
#pragma omp parallel for schedule(static) if ((size_t) M * C > PARALLEL_MIN_FLOATS)
  for (int m = 0; m < M; m++)
    sam2_cpu_layer_norm_row (x + (size_t) m * C, C, weight, bias, eps, y + (size_t) m * C);
}

void
sam2_cpu_window_partition (const float *x, int H, int W, int C, int ws, float *win)
{
  const int nh = (H + ws - 1) / ws, nw = (W + ws - 1) / ws;
  const size_t row_bytes = (size_t) C * sizeof (float);
#pragma omp parallel for schedule(static) if ((size_t) H * W * C > PARALLEL_MIN_FLOATS)
  for (int wi = 0; wi < nh * nw; wi++) {
    const int y0 = (wi / nw) * ws, x0 = (wi % nw) * ws;
    float *dst = win + (size_t) wi * ws * ws * C;
    for (int dy = 0; dy < ws; dy++)
      for (int dx = 0; dx < ws; dx++) {
        float *d = dst + ((size_t) dy * ws + dx) * C;
        const int yy = y0 + dy, xx = x0 + dx;
        if (yy < H && xx < W)
          memcpy (d, x + ((size_t) yy * W + xx) * C, row_bytes);
        else
          memset (d, 0, row_bytes);
      }
  }
}

void
sam2_cpu_window_unpartition (const float *win, int nh, int nw, int ws, int C, int H, int W,
                             const float *residual, float *x)
{
  const size_t row_bytes = (size_t) C * sizeof (float);
#pragma omp parallel for schedule(static) if ((size_t) H * W * C > PARALLEL_MIN_FLOATS)
  for (int yy = 0; yy < H; yy++)
    for (int xx = 0; xx < W; xx++) {
      const int wi = (yy / ws) * nw + xx / ws;
      const int dy = yy % ws, dx = xx % ws;
      const float *src = win + (((size_t) wi * ws + dy) * ws + dx) * C;
      const size_t o = ((size_t) yy * W + xx) * C;
      if (residual == NULL) {
        memcpy (x + o, src, row_bytes);
      } else {
        /* residual + window value: the add op's operands in its order */
        for (int c = 0; c < C; c++)
          x[o + c] = residual[o + c] + src[c];
      }
    }
}

void
sam2_cpu_max_pool (const float *x, int n_img, int H, int W, int C, int ld, int s, float *y)
{
  const int oh = H / s, ow = W / s;
#pragma omp parallel for schedule(static) if ((size_t) n_img * H * W * C > PARALLEL_MIN_FLOATS)
  for (long o = 0; o < (long) n_img * oh * ow; o++) {
    const int img = (int) (o / ((long) oh * ow));
    const int oy = (int) ((o / ow) % oh), ox = (int) (o % ow);
    const float *base = x + (size_t) img * H * W * ld;
    float *d = y + (size_t) o * C;
    for (int c = 0; c < C; c++)
      d[c] = -INFINITY;
    for (int dy = 0; dy < s; dy++)
      for (int dx = 0; dx < s; dx++) {
        const float *p = base + ((size_t) (oy * s + dy) * W + (ox * s + dx)) * ld;
        /* plain comparison: fmaxf is a libm call here (its NaN rule blocks inlining) */
#pragma omp simd
        for (int c = 0; c < C; c++)
          d[c] = p[c] > d[c] ? p[c] : d[c];
      }
  }
}

static inline int
conv_out_size (int in, int k, int stride, int pad)
{
  return (in + 2 * pad - k) / stride + 1;
}

void
sam2_cpu_im2col_planar (const float *x, int C, int H, int W, int kh, int kw, int stride, int pad,
                        float *cols)
{
  const int oh = conv_out_size (H, kh, stride, pad), ow = conv_out_size (W, kw, stride, pad);
  const int ncol = C * kh * kw;
#pragma omp parallel for schedule(static)
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++) {
      float *col = cols + ((size_t) oy * ow + ox) * ncol;
      for (int c = 0; c < C; c++)
        for (int ky = 0; ky < kh; ky++) {
          const int iy = oy * stride - pad + ky;
          for (int kx = 0; kx < kw; kx++) {
            const int ix = ox * stride - pad + kx;
            *col++ = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((size_t) c * H + iy) * W + ix]
                                                                : 0.0f;
          }
        }
    }
}

void
sam2_cpu_im2col (const float *x, int H, int W, int C, int kh, int kw, int stride, int pad,
                 float *cols)
{
  const int oh = conv_out_size (H, kh, stride, pad), ow = conv_out_size (W, kw, stride, pad);
  const int ncol = C * kh * kw;
#pragma omp parallel for schedule(static)
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++) {
      float *col = cols + ((size_t) oy * ow + ox) * ncol;
      for (int ky = 0; ky < kh; ky++) {
        const int iy = oy * stride - pad + ky;
        for (int kx = 0; kx < kw; kx++) {
          const int ix = ox * stride - pad + kx;
          const gboolean inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
          /* columns are (c, ky, kx): channel-major like the conv weight */
          if (!inside) {
            for (int c = 0; c < C; c++)
              col[(size_t) c * kh * kw + ky * kw + kx] = 0.0f;
            continue;
          }
          const float *src = x + ((size_t) iy * W + ix) * C;
          for (int c = 0; c < C; c++)
            col[(size_t) c * kh * kw + ky * kw + kx] = src[c];
        }
      }
    }
}

void
sam2_cpu_add_upsample2x (float *y, const float *x, int H, int W, int C)
{
  const int OW = 2 * W;
#pragma omp parallel for schedule(static)
  for (int oy = 0; oy < 2 * H; oy++)
    for (int ox = 0; ox < OW; ox++) {
      float *d = y + ((size_t) oy * OW + ox) * C;
      const float *s = x + ((size_t) (oy / 2) * W + ox / 2) * C;
      for (int c = 0; c < C; c++)
        d[c] += s[c];
    }
}

void
sam2_cpu_depth_to_space2x (const float *x, int x_ld, int H, int W, int C, const float *addend,
                           float *y)
{
  const int OW = 2 * W;
#pragma omp parallel for schedule(static)
  for (int iy = 0; iy < H; iy++)
    for (int ix = 0; ix < W; ix++) {
      const float *s = x + ((size_t) iy * W + ix) * x_ld;
      for (int q = 0; q < 4; q++) {
        const int oy = 2 * iy + q / 2, ox = 2 * ix + q % 2;
        const size_t o = ((size_t) oy * OW + ox) * C;
        for (int c = 0; c < C; c++)
          y[o + c] = s[q * C + c] + (addend != NULL ? addend[o + c] : 0.0f);
      }
    }
}
