/* hash-weights.c: fnv1a-64 of the name, splitmix64 finaliser of the index. */
#include "hash-weights.h"

#include <math.h>

uint64_t
sam2_hash_name (const char *name)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3ull;
  }
  return h;
}

double
sam2_hash_uniform (uint64_t name_hash, uint64_t index)
{
  uint64_t z = name_hash + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return 2.0 * ((double) (z >> 11) * 0x1.0p-53) - 1.0;
}

void
sam2_hash_fill_weight (const char *name, int ndim, const int64_t *shape, float *dst)
{
  uint64_t h = sam2_hash_name (name);
  int64_t numel = 1;
  for (int d = 0; d < ndim; d++)
    numel *= shape[d];

  gboolean is_weight = g_str_has_suffix (name, "weight");
  /* Divide (not multiply by a reciprocal) as the generator does, so every float rounds alike. */
  double fan = ndim >= 2 ? sqrt ((double) numel / (double) shape[0]) : 1.0;
  for (int64_t i = 0; i < numel; i++) {
    double v = sam2_hash_uniform (h, (uint64_t) i);
    if (ndim >= 2)
      v /= fan;
    else if (ndim == 1)
      v = is_weight ? 1.0 + 0.1 * v : 0.02 * v;
    else
      v = 1.0;
    dst[i] = (float) v;
  }
}

void
sam2_hash_fill_pixels (float *dst, size_t n)
{
  uint64_t h = sam2_hash_name ("pixel_values");
  for (size_t i = 0; i < n; i++)
    dst[i] = (float) (2.0 * sam2_hash_uniform (h, i));
}
