/* observers.h: statistics of every linear layer's input, gathered while the float model runs
 * on calibration frames.
 *
 * Streaming: memory is bounded by the statistics, not by the number of frames. Per layer with K
 * input channels: the Hessian sum X^T X (K x K, double), per-channel min / max / |max| (K), and a
 * reservoir sample of `keep_tokens` input rows (for measuring output error and searching the
 * smoothing strength). At most `max_tokens` rows of each call (chosen at random, seeded) enter
 * the Hessian: the Hessians of the widest layers would otherwise cost as much as the forward.
 */
#ifndef SAM2_QUANT_OBSERVERS_H
#define SAM2_QUANT_OBSERVERS_H

#include "model.h"
#include "recipe.h"

G_BEGIN_DECLS

typedef struct {
  const Sam2Linear *layer;     /* in the float model */
  int k;
  int64_t n_tokens;            /* rows seen */
  int64_t n_hessian_tokens;    /* rows summed into the Hessian */
  double *hessian;             /* (k, k) sum of x x^T */
  float *absmax;               /* (k) */
  float *min, *max;            /* (k) */
  int keep;                    /* reservoir capacity */
  int n_samples;
  float *samples;              /* (keep, k) rows */
} Sam2LayerStats;

typedef struct _Sam2Observers Sam2Observers;

/* Observers for every layer of `model` (only the layers passing `wanted`, when given). */
Sam2Observers *sam2_observers_new (const Sam2Model *model, const Sam2CalibRecipe *calib,
                                   gboolean (*wanted) (const Sam2Linear *l, gpointer data),
                                   gpointer wanted_data);
void sam2_observers_free (Sam2Observers *obs);

/* A Sam2LinearObserver (session.h): accumulates one call. */
void sam2_observers_observe (gpointer obs, const Sam2Linear *l, const float *x, int M);

/* NULL for a layer that was not observed. */
Sam2LayerStats *sam2_observers_get (Sam2Observers *obs, const Sam2Linear *l);
int sam2_observers_n_frames (const Sam2Observers *obs);
void sam2_observers_frame_done (Sam2Observers *obs);

/* Cache: the statistics as a safetensors file (tensors by layer name) and back. Loading checks
 * that every observed layer is present with the same K. */
gboolean sam2_observers_save (Sam2Observers *obs, const char *path, GError **error);
gboolean sam2_observers_load (Sam2Observers *obs, const char *path, GError **error);

G_END_DECLS

#endif
