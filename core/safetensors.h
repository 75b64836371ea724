/* safetensors.h: the safetensors file format (https://github.com/huggingface/safetensors).
 *
 * Reading maps the file and parses the JSON header with json-glib; every dtype, shape and offset
 * is checked against the file before a tensor is handed out, so a truncated or hostile file is an
 * error, never an out-of-bounds read. Writing collects tensors and metadata and writes them to a
 * temporary file in the destination directory, fsyncs it and renames it into place, so a crash or
 * a full disk never leaves a half-written file under the final name.
 */
#ifndef SAM2_SAFETENSORS_H
#define SAM2_SAFETENSORS_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define SAM2_ST_MAX_DIMS 8

typedef enum {
  SAM2_DTYPE_F32,
  SAM2_DTYPE_F16,
  SAM2_DTYPE_BF16,
  SAM2_DTYPE_F64,
  SAM2_DTYPE_I64,
  SAM2_DTYPE_I32,
  SAM2_DTYPE_I16,
  SAM2_DTYPE_I8,
  SAM2_DTYPE_U8,
  SAM2_DTYPE_BOOL,
} Sam2DType;

typedef struct {
  const char *name;
  Sam2DType dtype;
  int ndim;
  int64_t shape[SAM2_ST_MAX_DIMS];
  int64_t numel;
  const void *data;            /* into the mapping; not necessarily aligned */
  size_t nbytes;
} Sam2StTensor;

typedef struct _Sam2Safetensors Sam2Safetensors;

/* Maps and validates the whole header (8-byte little-endian length, JSON object of tensors and
 * an optional "__metadata__" object of strings). As in the reference implementation, the
 * tensors' data_offsets must tile the data section exactly: overlaps, gaps and trailing bytes are
 * errors, as are duplicate keys, non-strict JSON and integers outside int64. Errors are
 * SAM2_ERROR_IO (cannot read), SAM2_ERROR_FORMAT (corrupt, truncated, not safetensors) or
 * SAM2_ERROR_WEIGHTS (a dtype of the format this library does not read, more than
 * SAM2_ST_MAX_DIMS dimensions); messages start with the path. */
Sam2Safetensors *sam2_safetensors_open (const char *path, GError **error);
/* The same on bytes in memory (not copied; must outlive the handle). Used by the fuzzer. */
Sam2Safetensors *sam2_safetensors_open_bytes (const void *bytes, size_t size, GError **error);
void sam2_safetensors_close (Sam2Safetensors *st);

/* NULL for sam2_safetensors_open_bytes (whose messages say "(in memory)"). */
const char *sam2_safetensors_path (const Sam2Safetensors *st);
size_t sam2_safetensors_file_size (const Sam2Safetensors *st);
int sam2_safetensors_n_tensors (const Sam2Safetensors *st);
/* In header order. */
const Sam2StTensor *sam2_safetensors_nth (const Sam2Safetensors *st, int i);
/* NULL when absent. */
const Sam2StTensor *sam2_safetensors_find (const Sam2Safetensors *st, const char *name);
/* NULL when absent. */
const char *sam2_safetensors_metadata (const Sam2Safetensors *st, const char *key);

size_t sam2_dtype_size (Sam2DType dtype);
const char *sam2_dtype_name (Sam2DType dtype);   /* "F32", "BF16", ... as in the format */
gboolean sam2_dtype_is_float (Sam2DType dtype);

/* Converts a F32 / F16 / BF16 / F64 tensor to float32 into `dst` (numel floats). Error for other
 * dtypes, naming the tensor. */
gboolean sam2_st_tensor_to_f32 (const Sam2StTensor *t, float *dst, GError **error);

/* Convenience for tests and tools: the tensor `name` as a newly allocated float array (g_free),
 * checked to have exactly `numel` elements when numel >= 0. */
float *sam2_safetensors_read_f32 (const Sam2Safetensors *st, const char *name, int64_t numel,
                                  GError **error);

/* ---- writing ---- */

typedef struct _Sam2StWriter Sam2StWriter;

Sam2StWriter *sam2_st_writer_new (void);
void sam2_st_writer_free (Sam2StWriter *w);
/* `data` is copied. Names must be unique UTF-8 other than "__metadata__"; shape may have ndim 0
 * (a scalar). SAM2_ERROR_INVALID_ARGUMENT otherwise. */
gboolean sam2_st_writer_add (Sam2StWriter *w, const char *name, Sam2DType dtype, int ndim,
                             const int64_t *shape, const void *data, GError **error);
void sam2_st_writer_set_metadata (Sam2StWriter *w, const char *key, const char *value);
/* Atomic: temp file in the same directory, fsync, rename, fsync of the directory. On any
 * failure the temp file is removed and `path` is untouched (SAM2_ERROR_IO, saying what to do).
 * Tensors are laid out as safetensors' own writer does, not in the order added: by decreasing
 * dtype alignment, then by name, so each starts aligned to its element size; metadata keys are
 * sorted. The result is byte-identical to safetensors.torch.save_file for the same input (with
 * at most one metadata key: the reference orders several at random). */
gboolean sam2_st_writer_write (Sam2StWriter *w, const char *path, GError **error);

G_END_DECLS

#endif
