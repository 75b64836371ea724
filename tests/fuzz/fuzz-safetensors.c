/* fuzz-safetensors.c: the safetensors reader on arbitrary bytes.
 *
 * Built two ways: by run-fuzz.sh with libFuzzer and ASan/UBSan, and by meson with corpus-main.c,
 * which replays the committed corpus as a regression test. Besides crashes it checks the
 * reader's promises: an error exactly when NULL is returned, every tensor inside the input and
 * consistent with its shape, float tensors convertible and the others refused.
 */
#include "safetensors.h"
#include "sam2.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Floats converted per call: enough for every tensor a small input can describe in full, and
 * for a head and a tail window of anything larger. */
#define FUZZ_MAX_FLOATS 4096

static float fuzz_scratch[FUZZ_MAX_FLOATS];
static volatile guint8 fuzz_sink;

static void
fuzz_require (gboolean condition)
{
  if (!condition)
    abort ();
}

static void
fuzz_check_shape (const Sam2StTensor *t, const uint8_t *data, size_t size)
{
  /* a zero anywhere makes the product 0 even when the other dimensions' product would overflow */
  guint64 numel = 1;
  gboolean zero = FALSE;
  fuzz_require (t->ndim >= 0 && t->ndim <= SAM2_ST_MAX_DIMS);
  for (int d = 0; d < t->ndim; d++) {
    fuzz_require (t->shape[d] >= 0);
    zero = zero || t->shape[d] == 0;
  }
  for (int d = 0; d < t->ndim && !zero; d++)
    fuzz_require (g_uint64_checked_mul (&numel, numel, (guint64) t->shape[d]));
  fuzz_require ((guint64) t->numel == (zero ? 0 : numel));
  fuzz_require ((size_t) t->numel * sam2_dtype_size (t->dtype) == t->nbytes);
  const uint8_t *begin = t->data;
  fuzz_require (begin >= data && t->nbytes <= size && (size_t) (begin - data) <= size - t->nbytes);
}

/* Converts `numel` elements from element `first` of `t`. */
static void
fuzz_convert_window (const Sam2StTensor *t, int64_t first, int64_t numel)
{
  Sam2StTensor window = *t;
  size_t elem = sam2_dtype_size (t->dtype);
  window.data = (const uint8_t *) t->data + (size_t) first * elem;
  window.numel = numel;
  window.nbytes = (size_t) numel * elem;
  GError *error = NULL;
  gboolean ok = sam2_st_tensor_to_f32 (&window, fuzz_scratch, &error);
  if (sam2_dtype_is_float (t->dtype)) {
    fuzz_require (ok && error == NULL);
  } else {
    fuzz_require (!ok && error != NULL && g_error_matches (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS));
    g_error_free (error);
  }
}

static void
fuzz_touch_tensor (const Sam2Safetensors *st, const Sam2StTensor *t, const uint8_t *data,
                   size_t size)
{
  fuzz_require (sam2_safetensors_find (st, t->name) == t);
  fuzz_check_shape (t, data, size);
  guint8 acc = 0;
  for (size_t i = 0; i < t->nbytes; i++)
    acc ^= ((const guint8 *) t->data)[i];
  fuzz_sink = acc;
  int64_t head = MIN (t->numel, FUZZ_MAX_FLOATS);
  fuzz_convert_window (t, 0, head);
  if (t->numel > head)
    fuzz_convert_window (t, t->numel - head, head);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open_bytes (data, size, &error);
  if (st == NULL) {
    fuzz_require (error != NULL && error->domain == SAM2_ERROR && error->message[0] != '\0');
    g_error_free (error);
    return 0;
  }
  fuzz_require (error == NULL);
  fuzz_require (sam2_safetensors_file_size (st) == size);
  for (int i = 0; i < sam2_safetensors_n_tensors (st); i++)
    fuzz_touch_tensor (st, sam2_safetensors_nth (st, i), data, size);
  const char *format = sam2_safetensors_metadata (st, "format");
  if (format != NULL)
    fuzz_sink = (guint8) strlen (format);
  sam2_safetensors_close (st);
  return 0;
}
