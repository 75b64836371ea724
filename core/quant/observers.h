/* observers.h: statistics of every linear layer's input, gathered while the float model runs
 * on calibration frames.
 *
 * Streaming: memory is bounded by the statistics, not by the number of frames. Per layer with K
 * input channels: the Hessian sum X^T X (K x K, double), per-channel min / max / |max| (K), and a
 * reservoir sample of `keep_tokens` input rows (for measuring output error and searching the
 * smoothing strength). At most `max_tokens` rows of each call (chosen at random, seeded) enter
 * the Hessian: the Hessians of the widest layers would otherwise cost as much as the forward.
 *
 * Each layer draws from its own random stream, seeded by the recipe's seed and the layer's name,
 * and a call covers one image's rows (the session splits a batched pass per image), so the
 * statistics do not depend on how frames are batched nor on which other layers are observed.
 */
#ifndef SAM2_QUANT_OBSERVERS_H
#define SAM2_QUANT_OBSERVERS_H

#include "backend.h"
#include "model.h"
#include "recipe.h"

G_BEGIN_DECLS

/* Names how statistics are drawn; part of the calibration cache's key, so statistics drawn
 * another way (version 1: one random stream for all layers) are recomputed, not reused. */
#define SAM2_OBSERVERS_SCHEME "sam2-observers 2: per-layer streams, per-image calls"

typedef struct {
  const Sam2Linear *layer;     /* in the float model */
  int k;
  int64_t n_tokens;            /* rows seen */
  int64_t n_hessian_tokens;    /* rows summed into the Hessian */
  double *hessian;             /* (k, k) sum of x x^T; whole after sam2_observers_sync (host
                                * observers add calls to its upper triangle only) */
  float *absmax;               /* (k) */
  float *min, *max;            /* (k) */
  int keep;                    /* reservoir capacity */
  int n_samples;
  float *samples;              /* (keep, k) rows */
  gpointer device;             /* the backend's copy of hessian / min / max, or NULL */
  GRand *rng;                  /* this layer's random choices (reservoir and Hessian rows) */
} Sam2LayerStats;

typedef struct _Sam2Observers Sam2Observers;

/* Observers for every layer of `model` (only the layers passing `wanted`, when given). */
Sam2Observers *sam2_observers_new (const Sam2Model *model, const Sam2CalibRecipe *calib,
                                   gboolean (*wanted) (const Sam2Linear *l, gpointer data),
                                   gpointer wanted_data);
/* The same with the statistics kept on `device` (a backend with stats ops, see backend.h; NULL:
 * host memory): the observed x is then that backend's memory, and hessian / min / max / absmax
 * are up to date on the host only after sam2_observers_sync. The random choices (reservoir rows,
 * Hessian rows) are the same as on the host for the same seed. */
Sam2Observers *sam2_observers_new_full (const Sam2Model *model, const Sam2CalibRecipe *calib,
                                        gboolean (*wanted) (const Sam2Linear *l, gpointer data),
                                        gpointer wanted_data, Sam2Backend *device,
                                        GError **error);
void sam2_observers_free (Sam2Observers *obs);
/* Makes the host copies whole: device statistics read back (reporting a failure of any device
 * call since the last sync), a host Hessian's lower triangle filled from its upper one. Call it
 * before reading hessian / min / max / absmax; it may be called again after more frames. */
gboolean sam2_observers_sync (Sam2Observers *obs, GError **error);
/* Only the report: FALSE with the error when a device call has failed since creation. */
gboolean sam2_observers_check (Sam2Observers *obs, GError **error);

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
