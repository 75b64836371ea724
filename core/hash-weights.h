/* hash-weights.h: the deterministic "hash" weights of the reference fixtures.
 *
 * Every weight is a pure function of (tensor name, element index) (see the fixtures README), so a
 * model of any architecture can be rebuilt in C from its config and key list alone, and compared
 * with what transformers computed from the very same numbers.
 */
#ifndef SAM2_HASH_WEIGHTS_H
#define SAM2_HASH_WEIGHTS_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The value in [-1, 1) for element `index` of tensor `name`, before scaling. */
double sam2_hash_uniform (uint64_t name_hash, uint64_t index);
uint64_t sam2_hash_name (const char *name);

/* Fills `dst` (numel = prod(shape)) with the weight of tensor `name`: v / sqrt(numel / shape[0])
 * for ndim >= 2, 1 + 0.1 v for 1-d "...weight", 0.02 v for other 1-d tensors. */
void sam2_hash_fill_weight (const char *name, int ndim, const int64_t *shape, float *dst);

/* The "hashpix" input: 2 v of the name "pixel_values", n values. */
void sam2_hash_fill_pixels (float *dst, size_t n);

G_END_DECLS

#endif
