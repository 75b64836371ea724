/* layernorm-row.cuh: one warp's LayerNorm of one row, shared by the LayerNorm kernels
 * (elementwise.cu) and the LayerNorm fused with a W4A8 layer's activation quantization
 * (layernorm-quant.cu), and the row map of a window partition that both can fold in.
 *
 * Both must give the same floats for the same row, so that the fused kernel's codes are those of
 * the LayerNorm kernel's output quantized by sam2_cuda_quantize_rows: the arithmetic lives here
 * once, and every step that nvcc could otherwise contract into an FMA (its default) is an explicit
 * IEEE intrinsic, so the result does not depend on the kernel it is inlined into. Two passes in
 * double as sam2_cpu_layer_norm (the references are float64, and rows with a large mean lose
 * digits in a float one-pass variance); the output is rounded as there:
 * (float) ((x - mean) rstd), times weight, plus bias, each in float. */
#ifndef SAM2_KERNELS_LAYERNORM_ROW_CUH
#define SAM2_KERNELS_LAYERNORM_ROW_CUH

#include "kernels.h"

#include <cuda_runtime.h>

/* The sum of the warp's 32 values, the same in every lane (a butterfly: the order of the
 * additions is fixed by the lane pattern, not by scheduling). */
__device__ __forceinline__ double
sam2_warp_sum_double (double v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

struct Sam2RowNormStats {
  double mean, rstd;
};

/* The mean and 1 / sqrt (var + eps) of the C floats at xr, every lane of the warp calling with
 * its lane index; every lane gets the same two values. */
__device__ __forceinline__ Sam2RowNormStats
sam2_row_norm_stats (const float *xr, int C, float eps, int lane)
{
  double s = 0.0;
  for (int c = lane; c < C; c += 32)
    s = __dadd_rn (s, (double) xr[c]);
  const double mean = sam2_warp_sum_double (s) / C;
  double v = 0.0;
  for (int c = lane; c < C; c += 32) {
    const double d = __dsub_rn ((double) xr[c], mean);
    v = __dadd_rn (v, __dmul_rn (d, d));
  }
  const double var = sam2_warp_sum_double (v) / C;
  Sam2RowNormStats st;
  st.mean = mean;
  st.rstd = 1.0 / sqrt (__dadd_rn (var, (double) eps));
  return st;
}

/* One normalised element: (float) ((x - mean) rstd) * weight + bias, each step rounded. */
__device__ __forceinline__ float
sam2_row_norm_value (float x, const Sam2RowNormStats &st, float weight, float bias)
{
  const float t = (float) __dmul_rn (__dsub_rn ((double) x, st.mean), st.rstd);
  return __fadd_rn (__fmul_rn (t, weight), bias);
}

/* The row of x behind output row m when a window partition follows the LayerNorm: m itself
 * without windows (ws 0), else the map position window_partition_kernel (window.cu) reads for
 * output row m of the partition of each image in turn, or -1 for a padding row (zeros after the
 * LayerNorm). */
__device__ __forceinline__ long long
sam2_window_source_row (const Sam2CudaRowWindows &win, int m)
{
  if (win.ws == 0)
    return m;
  const int ws = win.ws, nw = (win.w + ws - 1) / ws, nh = (win.h + ws - 1) / ws;
  const int per_img = nh * nw * ws * ws;
  const int img = m / per_img, pos = m % per_img;            /* pos: (wi, dy, dx) */
  const int dx = pos % ws, dy = (pos / ws) % ws, wi = pos / (ws * ws);
  const int yy = (wi / nw) * ws + dy, xx = (wi % nw) * ws + dx;
  return yy < win.h && xx < win.w ? ((long long) img * win.h + yy) * win.w + xx : -1;
}

#endif
