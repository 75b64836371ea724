/* ops-cpu.h: the element-wise and data-movement kernels of the CPU backend, in plain C.
 * They are also the reference that device kernels are tested against. Layouts as in backend.h. */
#ifndef SAM2_OPS_CPU_H
#define SAM2_OPS_CPU_H

#include "config.h"
#include <stddef.h>

G_BEGIN_DECLS

/* One row in place (vectorised; the default case falls back to sam2_cpu_act1). */
void sam2_cpu_act_row (Sam2Act act, float *x, int n);
/* row (N) += bias (N). */
void sam2_cpu_add_row_inplace (float *row, const float *bias, int N);
/* y (M, N) += bias, then act. */
void sam2_cpu_bias_act (float *y, int M, int N, const float *bias, Sam2Act act);
void sam2_cpu_activation (Sam2Act act, float *x, size_t n);
float sam2_cpu_act1 (Sam2Act act, float x);
/* Row-wise LayerNorm (biased variance, as torch); y may be x. */
void sam2_cpu_layer_norm (const float *x, int M, int C, const float *weight, const float *bias,
                          float eps, float *y);
/* One row of it (C channels); y may be x. The fused quantized MLP normalises row by row. */
void sam2_cpu_layer_norm_row (const float *x, int C, const float *weight, const float *bias,
                              float eps, float *y);
/* In-place softmax of each of M rows of N. */
void sam2_cpu_softmax_rows (float *x, int M, int N);
/* exp(x - row max) in place, and 1 / row sum into inv_sum (M): a softmax whose normalisation is
 * applied later to a smaller product. */
void sam2_cpu_softmax_rows_unnormalized (float *x, int M, int N, float *inv_sum);
/* Row m of x (M rows of N, `ld` apart) times scale[m]. */
void sam2_cpu_scale_rows (float *x, int M, int N, int ld, const float *scale);
void sam2_cpu_window_partition (const float *x, int H, int W, int C, int ws, float *windows);
/* x = residual + the map of the windows (residual NULL: the map; residual may be x). */
void sam2_cpu_window_unpartition (const float *windows, int n_win_h, int n_win_w, int ws, int C,
                                  int H, int W, const float *residual, float *x);
void sam2_cpu_max_pool (const float *x, int n_img, int H, int W, int C, int ld, int s, float *y);
void sam2_cpu_im2col_planar (const float *x, int C, int H, int W, int kh, int kw, int stride,
                             int pad, float *cols);
void sam2_cpu_im2col (const float *x, int H, int W, int C, int kh, int kw, int stride, int pad,
                      float *cols);
void sam2_cpu_add_upsample2x (float *y, const float *x, int H, int W, int C);
/* x (H * W, 4 C) rows x_ld floats apart, columns (dy, dx, c) -> y (2H, 2W, C), plus addend (may
 * be y) when not NULL. */
void sam2_cpu_depth_to_space2x (const float *x, int x_ld, int H, int W, int C,
                                const float *addend, float *y);

G_END_DECLS

#endif
