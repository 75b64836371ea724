/* safetensors.c: reading and writing the safetensors format; see safetensors.h.
 *
 * Reading follows the Rust reference implementation (huggingface/safetensors, tensor.rs): a file
 * it refuses, we refuse. In particular the tensors' data_offsets, sorted, must tile the data
 * section exactly: no overlap, no gap, no trailing bytes. Two tensors sharing bytes would let a
 * writer alias weights behind a reader's back, and the reference never writes such files.
 *
 * json-glib 1.6 is lenient (single quotes, comments, octal numbers, trailing garbage), wraps
 * integers outside 64 bits silently and recurses without a depth limit, so the header is first
 * checked against strict JSON with a nesting limit and only then handed to json-glib.
 *
 * Writing orders the tensors like the reference writer (dtype by decreasing alignment, then name
 * in byte order) so every tensor starts aligned to its element size, and the file is byte for
 * byte what safetensors.torch.save_file writes for the same tensors (and metadata, up to the
 * order of several metadata keys, which the reference leaves to a hash map and we sort).
 */
#include "safetensors.h"
#include "sam2.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference refuses larger headers; a real one is a few hundred bytes per tensor. */
#define SAM2_ST_MAX_HEADER_SIZE 100000000u
/* A valid header nests three deep (root, tensor entry, shape); json-glib recurses per level. */
#define SAM2_ST_MAX_JSON_DEPTH 32
#define SAM2_ST_MEMORY_LABEL "(in memory)"

/* ---- dtypes ---------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  size_t size;
  int rank;                    /* position in the reference's Dtype enum: increasing alignment */
} Sam2DTypeInfo;

static const Sam2DTypeInfo sam2_dtypes[] = {
  [SAM2_DTYPE_F32] = { "F32", 4, 11 },
  [SAM2_DTYPE_F16] = { "F16", 2, 7 },
  [SAM2_DTYPE_BF16] = { "BF16", 2, 8 },
  [SAM2_DTYPE_F64] = { "F64", 8, 12 },
  [SAM2_DTYPE_I64] = { "I64", 8, 13 },
  [SAM2_DTYPE_I32] = { "I32", 4, 9 },
  [SAM2_DTYPE_I16] = { "I16", 2, 5 },
  [SAM2_DTYPE_I8] = { "I8", 1, 2 },
  [SAM2_DTYPE_U8] = { "U8", 1, 1 },
  [SAM2_DTYPE_BOOL] = { "BOOL", 1, 0 },
};

#define SAM2_N_DTYPES ((int) G_N_ELEMENTS (sam2_dtypes))
#define SAM2_SUPPORTED_DTYPES "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL"

/* Dtypes of the format this library does not read: named as such, not as corruption. */
static const char *const sam2_foreign_dtypes[] = {
  "U16", "U32", "U64", "C64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

static gboolean
sam2_dtype_valid (Sam2DType dtype)
{
  return (int) dtype >= 0 && (int) dtype < SAM2_N_DTYPES;
}

size_t
sam2_dtype_size (Sam2DType dtype)
{
  g_return_val_if_fail (sam2_dtype_valid (dtype), 0);
  return sam2_dtypes[dtype].size;
}

const char *
sam2_dtype_name (Sam2DType dtype)
{
  g_return_val_if_fail (sam2_dtype_valid (dtype), "?");
  return sam2_dtypes[dtype].name;
}

gboolean
sam2_dtype_is_float (Sam2DType dtype)
{
  return dtype == SAM2_DTYPE_F32 || dtype == SAM2_DTYPE_F16 || dtype == SAM2_DTYPE_BF16
         || dtype == SAM2_DTYPE_F64;
}

static gboolean
sam2_dtype_from_name (const char *name, Sam2DType *dtype)
{
  for (int i = 0; i < SAM2_N_DTYPES; i++) {
    if (strcmp (sam2_dtypes[i].name, name) == 0) {
      *dtype = (Sam2DType) i;
      return TRUE;
    }
  }
  return FALSE;
}

static gboolean
sam2_dtype_is_foreign (const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS (sam2_foreign_dtypes); i++)
    if (strcmp (sam2_foreign_dtypes[i], name) == 0)
      return TRUE;
  return FALSE;
}

static char *
sam2_st_format_shape (const int64_t *shape, int ndim)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i > 0 ? ", " : "", (gint64) shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* numel and numel * element size without wrapping; FALSE when either leaves int64. */
static gboolean
sam2_st_count (const int64_t *shape, int ndim, size_t elem_size, int64_t *numel, guint64 *nbytes)
{
  guint64 n = 1;
  for (int i = 0; i < ndim; i++)
    if (!g_uint64_checked_mul (&n, n, (guint64) shape[i]))
      return FALSE;
  if (n > (guint64) G_MAXINT64 || !g_uint64_checked_mul (nbytes, n, elem_size)
      || *nbytes > (guint64) G_MAXINT64)
    return FALSE;
  *numel = (int64_t) n;
  return TRUE;
}

/* ---- strict JSON check ----------------------------------------------------------------- */

typedef struct {
  const char *p;
  const char *start;
  const char *end;
  const char *why;             /* what was wrong, for the error message */
} Sam2JsonScan;

static gboolean sam2_json_scan_value (Sam2JsonScan *s, int depth);

static gboolean
sam2_json_fail (Sam2JsonScan *s, const char *why)
{
  s->why = why;
  return FALSE;
}

static void
sam2_json_skip_ws (Sam2JsonScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static gboolean
sam2_json_hex4 (Sam2JsonScan *s, guint *value)
{
  if (s->end - s->p < 4)
    return sam2_json_fail (s, "a truncated \\u escape");
  *value = 0;
  for (int i = 0; i < 4; i++) {
    int d = g_ascii_xdigit_value (s->p[i]);
    if (d < 0)
      return sam2_json_fail (s, "a malformed \\u escape");
    *value = *value * 16 + (guint) d;
  }
  s->p += 4;
  return TRUE;
}

/* \u escapes: NUL would cut names short in C; lone surrogates are not text (serde refuses them). */
static gboolean
sam2_json_unicode_escape (Sam2JsonScan *s)
{
  guint u, low;
  if (!sam2_json_hex4 (s, &u))
    return FALSE;
  if (u == 0)
    return sam2_json_fail (s, "a \\u0000 (NUL) escape in a string");
  if (u >= 0xdc00 && u <= 0xdfff)
    return sam2_json_fail (s, "an unpaired UTF-16 surrogate escape");
  if (u < 0xd800 || u > 0xdbff)
    return TRUE;
  if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
    return sam2_json_fail (s, "an unpaired UTF-16 surrogate escape");
  s->p += 2;
  if (!sam2_json_hex4 (s, &low))
    return FALSE;
  if (low < 0xdc00 || low > 0xdfff)
    return sam2_json_fail (s, "an unpaired UTF-16 surrogate escape");
  return TRUE;
}

static gboolean
sam2_json_scan_string (Sam2JsonScan *s)
{
  s->p++;
  while (s->p < s->end) {
    guchar c = (guchar) *s->p++;
    if (c == '"')
      return TRUE;
    if (c < 0x20)
      return sam2_json_fail (s, "a control character in a string");
    if (c != '\\')
      continue;
    if (s->p == s->end)
      break;
    c = (guchar) *s->p++;
    if (c == 'u') {
      if (!sam2_json_unicode_escape (s))
        return FALSE;
    } else if (strchr ("\"\\/bfnrt", c) == NULL || c == '\0') {
      return sam2_json_fail (s, "an invalid escape in a string");
    }
  }
  return sam2_json_fail (s, "an unterminated string");
}

static gboolean
sam2_json_digits (Sam2JsonScan *s)
{
  const char *begin = s->p;
  while (s->p < s->end && g_ascii_isdigit (*s->p))
    s->p++;
  return s->p > begin;
}

/* Integers must fit int64: json-glib would wrap them, e.g. -9223372036854775809 to INT64_MAX. */
static gboolean
sam2_json_integer_fits (const char *p, const char *end)
{
  gboolean negative = *p == '-';
  guint64 limit = negative ? (guint64) G_MAXINT64 + 1 : (guint64) G_MAXINT64;
  guint64 v = 0;
  for (p += negative; p < end; p++) {
    guint d = (guint) (*p - '0');
    if (v > (limit - d) / 10)
      return FALSE;
    v = v * 10 + d;
  }
  return TRUE;
}

static gboolean
sam2_json_scan_number (Sam2JsonScan *s)
{
  const char *begin = s->p;
  gboolean integral = TRUE;
  if (*s->p == '-')
    s->p++;
  if (s->p == s->end || !g_ascii_isdigit (*s->p))
    return sam2_json_fail (s, "a malformed number");
  if (*s->p == '0' && s->p + 1 < s->end && g_ascii_isdigit (s->p[1]))
    return sam2_json_fail (s, "a number with a leading zero");
  sam2_json_digits (s);
  if (s->p < s->end && *s->p == '.') {
    integral = FALSE;
    s->p++;
    if (!sam2_json_digits (s))
      return sam2_json_fail (s, "a malformed number");
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    integral = FALSE;
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (!sam2_json_digits (s))
      return sam2_json_fail (s, "a malformed number");
  }
  if (integral && !sam2_json_integer_fits (begin, s->p))
    return sam2_json_fail (s, "an integer outside the 64-bit range");
  return TRUE;
}

static gboolean
sam2_json_scan_literal (Sam2JsonScan *s)
{
  static const char *const literals[] = { "true", "false", "null" };
  for (size_t i = 0; i < G_N_ELEMENTS (literals); i++) {
    size_t len = strlen (literals[i]);
    if ((size_t) (s->end - s->p) >= len && memcmp (s->p, literals[i], len) == 0) {
      s->p += len;
      return TRUE;
    }
  }
  return sam2_json_fail (s, "an unexpected character");
}

/* Members of an object (object == TRUE) or elements of an array, after the opening bracket. */
static gboolean
sam2_json_scan_container (Sam2JsonScan *s, int depth, gboolean object)
{
  char close = object ? '}' : ']';
  s->p++;
  sam2_json_skip_ws (s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    return TRUE;
  }
  for (;;) {
    if (object) {
      sam2_json_skip_ws (s);
      if (s->p == s->end || *s->p != '"')
        return sam2_json_fail (s, "an object key that is not a string");
      if (!sam2_json_scan_string (s))
        return FALSE;
      sam2_json_skip_ws (s);
      if (s->p == s->end || *s->p != ':')
        return sam2_json_fail (s, "a missing ':' after an object key");
      s->p++;
    }
    if (!sam2_json_scan_value (s, depth + 1))
      return FALSE;
    sam2_json_skip_ws (s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      continue;
    }
    if (s->p < s->end && *s->p == close) {
      s->p++;
      return TRUE;
    }
    return sam2_json_fail (s, object ? "a missing ',' or '}' in an object"
                                     : "a missing ',' or ']' in an array");
  }
}

static gboolean
sam2_json_scan_value (Sam2JsonScan *s, int depth)
{
  sam2_json_skip_ws (s);
  if (s->p == s->end)
    return sam2_json_fail (s, "an unexpected end");
  switch (*s->p) {
  case '{':
  case '[':
    if (depth >= SAM2_ST_MAX_JSON_DEPTH)
      return sam2_json_fail (s, "nesting deeper than 32 levels");
    return sam2_json_scan_container (s, depth, *s->p == '{');
  case '"':
    return sam2_json_scan_string (s);
  case 't':
  case 'f':
  case 'n':
    return sam2_json_scan_literal (s);
  default:
    if (*s->p == '-' || g_ascii_isdigit (*s->p))
      return sam2_json_scan_number (s);
    return sam2_json_fail (s, "an unexpected character");
  }
}

/* Strict RFC 8259 over valid UTF-8; on failure `why` and the byte offset say what and where. */
static gboolean
sam2_json_check (const char *text, size_t len, const char **why, size_t *where)
{
  Sam2JsonScan s = { text, text, text + len, NULL };
  gboolean ok = sam2_json_scan_value (&s, 0);
  if (ok) {
    sam2_json_skip_ws (&s);
    if (s.p != s.end)
      ok = sam2_json_fail (&s, "text after the end of the JSON value");
  }
  *why = s.why;
  *where = (size_t) (s.p - s.start);
  return ok;
}

/* ---- reading --------------------------------------------------------------------------- */

struct _Sam2Safetensors {
  char *path;                  /* NULL for bytes in memory */
  const char *label;           /* names the file in messages */
  GMappedFile *mapping;        /* NULL for bytes in memory */
  const guint8 *bytes;
  size_t size;
  const guint8 *data;          /* the data section, after the header */
  size_t data_size;
  Sam2StTensor *tensors;       /* (n_tensors) in header order */
  int n_tensors;
  GStringChunk *names;
  GHashTable *by_name;         /* name -> Sam2StTensor* */
  GHashTable *metadata;        /* key -> value, both owned */
};

typedef struct {
  guint64 begin, end;
  int index;
} Sam2StSpan;

/* json-glib keeps the last of two equal keys without a word; the reference refuses the file. */
typedef struct {
  GHashTable *keys_by_object;  /* JsonObject* -> set of member names */
  JsonObject *dup_object;
  char *dup_name;
} Sam2StDupCheck;

static void
sam2_st_on_object_member (JsonParser *parser, JsonObject *object, const char *name,
                          gpointer user_data)
{
  Sam2StDupCheck *check = user_data;
  if (check->dup_name != NULL)
    return;
  GHashTable *keys = g_hash_table_lookup (check->keys_by_object, object);
  if (keys == NULL) {
    keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    g_hash_table_insert (check->keys_by_object, object, keys);
  }
  if (g_hash_table_contains (keys, name)) {
    check->dup_object = object;
    check->dup_name = g_strdup (name);
    return;
  }
  g_hash_table_add (keys, g_strdup (name));
}

static gboolean
sam2_st_fail (GError **error, int code, const Sam2Safetensors *st, const char *format, ...)
  G_GNUC_PRINTF (4, 5);

/* Names come from the file: control characters in them must not reach a terminal or a log. */
static char *
sam2_st_printable (const char *text)
{
  GString *out = g_string_sized_new (strlen (text));
  for (const guchar *p = (const guchar *) text; *p != '\0'; p++) {
    if (*p < 0x20 || *p == 0x7f)
      g_string_append_printf (out, "\\x%02x", *p);
    else
      g_string_append_c (out, (char) *p);
  }
  return g_string_free (out, FALSE);
}

static gboolean
sam2_st_fail (GError **error, int code, const Sam2Safetensors *st, const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *what = g_strdup_vprintf (format, args);
  va_end (args);
  char *shown = sam2_st_printable (what);
  g_set_error (error, SAM2_ERROR, code, "%s: %s", st->label, shown);
  g_free (shown);
  g_free (what);
  return FALSE;
}

static gboolean
sam2_st_check_lengths (Sam2Safetensors *st, guint64 *header_len, GError **error)
{
  if (st->size == 0)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the file is empty, not a safetensors file; download or export it again");
  if (st->size < 8)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the file is only %zu bytes, too short to hold the 8-byte header length; "
                         "it is truncated or not a safetensors file", st->size);
  guint64 n;
  memcpy (&n, st->bytes, 8);
  n = GUINT64_FROM_LE (n);
  if (n > SAM2_ST_MAX_HEADER_SIZE)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header length %" G_GUINT64_FORMAT " is over the 100 MB limit; this is "
                         "not a safetensors file", n);
  if (n > st->size - 8)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header length %" G_GUINT64_FORMAT " goes past the end of the file "
                         "(%zu bytes); the file is truncated or not a safetensors file", n, st->size);
  *header_len = n;
  return TRUE;
}

static gboolean
sam2_st_check_json (Sam2Safetensors *st, const char *header, size_t len, GError **error)
{
  const char *why;
  size_t where;
  if (!g_utf8_validate (header, (gssize) len, NULL))
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header is not UTF-8 text; the file is corrupt or not a safetensors file");
  size_t first = 0;
  while (first < len && strchr (" \t\r\n", header[first]) != NULL && header[first] != '\0')
    first++;
  if (first == len)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header is empty; the file is corrupt or not a safetensors file");
  if (!sam2_json_check (header, len, &why, &where))
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header is not valid JSON: %s at byte %zu; the file is corrupt or not "
                         "a safetensors file", why, where);
  if (header[first] != '{')
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the header is a JSON %s, not an object; this is not a safetensors file",
                         header[first] == '[' ? "array" : "scalar");
  return TRUE;
}

static const char *
sam2_st_json_kind (JsonNode *node)
{
  switch (json_node_get_node_type (node)) {
  case JSON_NODE_OBJECT: return "object";
  case JSON_NODE_ARRAY: return "array";
  case JSON_NODE_NULL: return "null";
  default: break;
  }
  GType type = json_node_get_value_type (node);
  if (type == G_TYPE_STRING)
    return "string";
  if (type == G_TYPE_BOOLEAN)
    return "boolean";
  return type == G_TYPE_INT64 ? "integer" : "number";
}

/* A JSON value node holding an int64 (json-glib types "2.0" as double: not an integer here). */
static gboolean
sam2_st_node_int (JsonNode *node, gint64 *value)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *value = json_node_get_int (node);
  return TRUE;
}

static gboolean
sam2_st_parse_dtype (Sam2Safetensors *st, const char *name, JsonObject *entry, Sam2DType *dtype,
                     GError **error)
{
  JsonNode *node = json_object_get_member (entry, "dtype");
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' has no \"dtype\" string; the file is corrupt", name);
  const char *s = json_node_get_string (node);
  if (sam2_dtype_from_name (s, dtype))
    return TRUE;
  if (sam2_dtype_is_foreign (s))
    return sam2_st_fail (error, SAM2_ERROR_WEIGHTS, st,
                         "tensor '%s' has dtype %s, which this library does not read (it reads "
                         SAM2_SUPPORTED_DTYPES "); convert the checkpoint", name, s);
  return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                       "tensor '%s' has the unknown dtype \"%s\" (known: " SAM2_SUPPORTED_DTYPES
                       "); the file is corrupt or from an unsupported writer", name, s);
}

static gboolean
sam2_st_parse_shape (Sam2Safetensors *st, const char *name, JsonObject *entry, Sam2StTensor *t,
                     GError **error)
{
  JsonNode *node = json_object_get_member (entry, "shape");
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' has no \"shape\" array; the file is corrupt", name);
  JsonArray *shape = json_node_get_array (node);
  guint ndim = json_array_get_length (shape);
  if (ndim > SAM2_ST_MAX_DIMS)
    return sam2_st_fail (error, SAM2_ERROR_WEIGHTS, st,
                         "tensor '%s' has %u dimensions; at most %d are supported", name, ndim,
                         SAM2_ST_MAX_DIMS);
  t->ndim = (int) ndim;
  for (guint i = 0; i < ndim; i++) {
    gint64 d;
    if (!sam2_st_node_int (json_array_get_element (shape, i), &d))
      return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                           "tensor '%s' has a shape entry (index %u) that is not an integer; the "
                           "file is corrupt", name, i);
    if (d < 0)
      return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                           "tensor '%s' has a negative dimension (%" G_GINT64_FORMAT ") in its "
                           "shape; the file is corrupt", name, d);
    t->shape[i] = d;
  }
  return TRUE;
}

static gboolean
sam2_st_parse_offsets (Sam2Safetensors *st, const char *name, JsonObject *entry, Sam2StSpan *span,
                       GError **error)
{
  JsonNode *node = json_object_get_member (entry, "data_offsets");
  gint64 begin, end;
  JsonArray *offsets = node != NULL && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
  if (offsets == NULL || json_array_get_length (offsets) != 2
      || !sam2_st_node_int (json_array_get_element (offsets, 0), &begin)
      || !sam2_st_node_int (json_array_get_element (offsets, 1), &end) || begin < 0 || end < 0)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' has no \"data_offsets\" pair of non-negative integers; the "
                         "file is corrupt", name);
  if (begin > end)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' has data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                         "] that end before they begin; the file is corrupt", name, begin, end);
  if ((guint64) end > st->data_size)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' has data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                         "] past the end of the data (%zu bytes); the file is truncated or corrupt",
                         name, begin, end, st->data_size);
  span->begin = (guint64) begin;
  span->end = (guint64) end;
  return TRUE;
}

static gboolean
sam2_st_parse_tensor (Sam2Safetensors *st, const char *name, JsonNode *node, Sam2StTensor *t,
                      Sam2StSpan *span, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "tensor '%s' is described by a JSON %s, not an object; the file is corrupt",
                         name, sam2_st_json_kind (node));
  JsonObject *entry = json_node_get_object (node);
  if (!sam2_st_parse_dtype (st, name, entry, &t->dtype, error)
      || !sam2_st_parse_shape (st, name, entry, t, error))
    return FALSE;
  guint64 nbytes;
  if (!sam2_st_count (t->shape, t->ndim, sam2_dtypes[t->dtype].size, &t->numel, &nbytes)) {
    char *shape = sam2_st_format_shape (t->shape, t->ndim);
    sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                  "tensor '%s' has shape %s, whose size in bytes overflows 64 bits; the file is "
                  "corrupt", name, shape);
    g_free (shape);
    return FALSE;
  }
  if (!sam2_st_parse_offsets (st, name, entry, span, error))
    return FALSE;
  if (span->end - span->begin != nbytes) {
    char *shape = sam2_st_format_shape (t->shape, t->ndim);
    sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                  "tensor '%s' has data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] (%"
                  G_GUINT64_FORMAT " bytes) but dtype %s and shape %s take %" G_GUINT64_FORMAT
                  " bytes; the file is corrupt", name, span->begin, span->end,
                  span->end - span->begin, sam2_dtypes[t->dtype].name, shape, nbytes);
    g_free (shape);
    return FALSE;
  }
  t->name = g_string_chunk_insert (st->names, name);
  t->data = st->data + span->begin;
  t->nbytes = (size_t) nbytes;
  return TRUE;
}

static gboolean
sam2_st_parse_metadata (Sam2Safetensors *st, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "\"__metadata__\" is a JSON %s, not an object of strings; the file is "
                         "corrupt", sam2_st_json_kind (node));
  JsonObject *object = json_node_get_object (node);
  GList *keys = json_object_get_members (object);
  gboolean ok = TRUE;
  for (GList *l = keys; l != NULL && ok; l = l->next) {
    JsonNode *value = json_object_get_member (object, l->data);
    if (!JSON_NODE_HOLDS_VALUE (value) || json_node_get_value_type (value) != G_TYPE_STRING)
      ok = sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "\"__metadata__\" entry '%s' is a JSON %s, not a string; the file is "
                         "corrupt", (const char *) l->data, sam2_st_json_kind (value));
    else
      g_hash_table_insert (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (value)));
  }
  g_list_free (keys);
  return ok;
}

static int
sam2_st_span_compare (const void *a, const void *b)
{
  const Sam2StSpan *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

/* Sorted by offset, the tensors must tile the data section (see the top of the file). */
static gboolean
sam2_st_check_tiling (Sam2Safetensors *st, Sam2StSpan *spans, GError **error)
{
  qsort (spans, (size_t) st->n_tensors, sizeof *spans, sam2_st_span_compare);
  guint64 cursor = 0;
  for (int i = 0; i < st->n_tensors; i++) {
    const Sam2StSpan *s = &spans[i];
    if (s->begin < cursor)
      return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                           "tensors '%s' and '%s' overlap in the data section (data_offsets [%"
                           G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] and [%" G_GUINT64_FORMAT ", %"
                           G_GUINT64_FORMAT "]); the file is corrupt",
                           st->tensors[spans[i - 1].index].name, st->tensors[s->index].name,
                           spans[i - 1].begin, spans[i - 1].end, s->begin, s->end);
    if (s->begin > cursor)
      return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                           "tensor '%s' starts at byte %" G_GUINT64_FORMAT " of the data section "
                           "but the tensors before it end at byte %" G_GUINT64_FORMAT ", leaving a "
                           "gap; the file is corrupt", st->tensors[s->index].name, s->begin, cursor);
    cursor = s->end;
  }
  if (cursor != st->data_size)
    return sam2_st_fail (error, SAM2_ERROR_FORMAT, st,
                         "the data section has %zu bytes but the tensors cover only %"
                         G_GUINT64_FORMAT "; the file is corrupt", st->data_size, cursor);
  return TRUE;
}

static gboolean
sam2_st_parse_entries (Sam2Safetensors *st, JsonObject *root, GError **error)
{
  GList *names = json_object_get_members (root);
  guint n = g_list_length (names) - (json_object_has_member (root, "__metadata__") ? 1 : 0);
  Sam2StSpan *spans = g_new0 (Sam2StSpan, MAX (n, 1));
  gboolean ok = TRUE;
  st->tensors = g_new0 (Sam2StTensor, MAX (n, 1));
  for (GList *l = names; l != NULL && ok; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (root, name);
    if (strcmp (name, "__metadata__") == 0) {
      ok = sam2_st_parse_metadata (st, node, error);
      continue;
    }
    Sam2StTensor *t = &st->tensors[st->n_tensors];
    ok = sam2_st_parse_tensor (st, name, node, t, &spans[st->n_tensors], error);
    if (ok) {
      spans[st->n_tensors].index = st->n_tensors;
      g_hash_table_insert (st->by_name, (gpointer) t->name, t);
      st->n_tensors++;
    }
  }
  g_list_free (names);
  ok = ok && sam2_st_check_tiling (st, spans, error);
  g_free (spans);
  return ok;
}

static gboolean
sam2_st_parse_header (Sam2Safetensors *st, const char *header, size_t len, GError **error)
{
  if (!sam2_st_check_json (st, header, len, error))
    return FALSE;
  JsonParser *parser = json_parser_new ();
  Sam2StDupCheck check = {
    g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) g_hash_table_unref),
    NULL, NULL };
  g_signal_connect (parser, "object-member", G_CALLBACK (sam2_st_on_object_member), &check);
  GError *json_error = NULL;
  gboolean ok = json_parser_load_from_data (parser, header, (gssize) len, &json_error);
  if (!ok) {
    /* Strict JSON that json-glib still refuses: say so rather than guess. */
    sam2_st_fail (error, SAM2_ERROR_FORMAT, st, "the header could not be parsed (%s); the file is "
                  "corrupt or not a safetensors file", json_error->message);
    g_error_free (json_error);
  } else {
    JsonObject *root = json_node_get_object (json_parser_get_root (parser));
    if (check.dup_name != NULL && check.dup_object == root)
      ok = sam2_st_fail (error, SAM2_ERROR_FORMAT, st, "tensor '%s' appears twice in the header; "
                         "the file is corrupt", check.dup_name);
    else if (check.dup_name != NULL)
      ok = sam2_st_fail (error, SAM2_ERROR_FORMAT, st, "the header has the key '%s' twice in one "
                         "object; the file is corrupt", check.dup_name);
    else
      ok = sam2_st_parse_entries (st, root, error);
  }
  g_hash_table_unref (check.keys_by_object);
  g_free (check.dup_name);
  g_object_unref (parser);
  return ok;
}

static Sam2Safetensors *
sam2_st_new (const char *path, const guint8 *bytes, size_t size)
{
  Sam2Safetensors *st = g_new0 (Sam2Safetensors, 1);
  st->path = g_strdup (path);
  st->label = path != NULL ? st->path : SAM2_ST_MEMORY_LABEL;
  st->bytes = bytes;
  st->size = size;
  st->names = g_string_chunk_new (4096);
  st->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return st;
}

static gboolean
sam2_st_parse (Sam2Safetensors *st, GError **error)
{
  guint64 header_len = 0;
  if (!sam2_st_check_lengths (st, &header_len, error))
    return FALSE;
  st->data = st->bytes + 8 + header_len;
  st->data_size = st->size - 8 - (size_t) header_len;
  return sam2_st_parse_header (st, (const char *) st->bytes + 8, (size_t) header_len, error);
}

Sam2Safetensors *
sam2_safetensors_open_bytes (const void *bytes, size_t size, GError **error)
{
  g_return_val_if_fail (bytes != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  Sam2Safetensors *st = sam2_st_new (NULL, bytes, size);
  if (!sam2_st_parse (st, error)) {
    sam2_safetensors_close (st);
    return NULL;
  }
  return st;
}

Sam2Safetensors *
sam2_safetensors_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  GError *map_error = NULL;
  GMappedFile *mapping = g_mapped_file_new (path, FALSE, &map_error);
  if (mapping == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot read %s: %s", path, map_error->message);
    g_error_free (map_error);
    return NULL;
  }
  Sam2Safetensors *st = sam2_st_new (path, (const guint8 *) g_mapped_file_get_contents (mapping),
                                     g_mapped_file_get_length (mapping));
  st->mapping = mapping;
  if (!sam2_st_parse (st, error)) {
    sam2_safetensors_close (st);
    return NULL;
  }
  return st;
}

void
sam2_safetensors_close (Sam2Safetensors *st)
{
  if (st == NULL)
    return;
  g_hash_table_unref (st->metadata);
  g_hash_table_unref (st->by_name);
  g_string_chunk_free (st->names);
  g_free (st->tensors);
  if (st->mapping != NULL)
    g_mapped_file_unref (st->mapping);
  g_free (st->path);
  g_free (st);
}

const char *
sam2_safetensors_path (const Sam2Safetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->path;
}

size_t
sam2_safetensors_file_size (const Sam2Safetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->size;
}

int
sam2_safetensors_n_tensors (const Sam2Safetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const Sam2StTensor *
sam2_safetensors_nth (const Sam2Safetensors *st, int i)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (i >= 0 && i < st->n_tensors, NULL);
  return &st->tensors[i];
}

const Sam2StTensor *
sam2_safetensors_find (const Sam2Safetensors *st, const char *name)
{
  g_return_val_if_fail (st != NULL && name != NULL, NULL);
  return g_hash_table_lookup (st->by_name, name);
}

const char *
sam2_safetensors_metadata (const Sam2Safetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL && key != NULL, NULL);
  return g_hash_table_lookup (st->metadata, key);
}

/* ---- conversion ------------------------------------------------------------------------ */

/* The format is little-endian and Sam2StTensor.data hands the bytes out in place. */
G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);

static float
sam2_st_bits_to_f32 (guint32 bits)
{
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/* IEEE binary16 -> binary32, exact for every input; NaN payloads are kept. */
static float
sam2_st_f16_to_f32 (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000u) << 16;
  guint32 exponent = (h >> 10) & 0x1fu;
  guint32 mantissa = h & 0x3ffu;
  if (exponent == 0) {
    /* zero or subnormal: mantissa * 2^-24, exact since the mantissa has 10 bits */
    float v = (float) mantissa * 0x1p-24f;
    return sign != 0 ? -v : v;
  }
  if (exponent == 31)
    return sam2_st_bits_to_f32 (sign | 0x7f800000u | (mantissa << 13));
  return sam2_st_bits_to_f32 (sign | ((exponent + 112) << 23) | (mantissa << 13));
}

gboolean
sam2_st_tensor_to_f32 (const Sam2StTensor *t, float *dst, GError **error)
{
  g_return_val_if_fail (t != NULL && (dst != NULL || t->numel == 0), FALSE);
  const guint8 *src = t->data;
  switch (t->dtype) {
  case SAM2_DTYPE_F32:
    if (t->numel > 0)
      memcpy (dst, src, (size_t) t->numel * sizeof (float));
    return TRUE;
  case SAM2_DTYPE_F16:
  case SAM2_DTYPE_BF16:
    for (int64_t i = 0; i < t->numel; i++) {
      guint16 v;
      memcpy (&v, src + 2 * i, 2);
      v = GUINT16_FROM_LE (v);
      dst[i] = t->dtype == SAM2_DTYPE_F16 ? sam2_st_f16_to_f32 (v)
                                          : sam2_st_bits_to_f32 ((guint32) v << 16);
    }
    return TRUE;
  case SAM2_DTYPE_F64:
    for (int64_t i = 0; i < t->numel; i++) {
      double v;
      memcpy (&v, src + 8 * i, 8);
      dst[i] = (float) v;
    }
    return TRUE;
  default: {
    char *name = sam2_st_printable (t->name);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "tensor '%s' has dtype %s, which cannot be converted to float32 (only F32, F16, "
                 "BF16 and F64 can)", name, sam2_dtype_name (t->dtype));
    g_free (name);
    return FALSE;
  }
  }
}

float *
sam2_safetensors_read_f32 (const Sam2Safetensors *st, const char *name, int64_t numel,
                           GError **error)
{
  g_return_val_if_fail (st != NULL && name != NULL, NULL);
  const Sam2StTensor *t = sam2_safetensors_find (st, name);
  if (t == NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS, "%s: there is no tensor '%s'", st->label,
                 name);
    return NULL;
  }
  if (numel >= 0 && t->numel != numel) {
    char *shape = sam2_st_format_shape (t->shape, t->ndim);
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS,
                 "%s: tensor '%s' has shape %s (%" G_GINT64_FORMAT " elements), expected %"
                 G_GINT64_FORMAT " elements", st->label, name, shape, (gint64) t->numel,
                 (gint64) numel);
    g_free (shape);
    return NULL;
  }
  /* Never NULL on success, even for an empty tensor. */
  float *values = g_new (float, MAX (t->numel, 1));
  GError *convert_error = NULL;
  if (!sam2_st_tensor_to_f32 (t, values, &convert_error)) {
    g_set_error (error, SAM2_ERROR, convert_error->code, "%s: %s", st->label,
                 convert_error->message);
    g_error_free (convert_error);
    g_free (values);
    return NULL;
  }
  return values;
}

/* ---- writing --------------------------------------------------------------------------- */

typedef struct {
  char *name;
  Sam2DType dtype;
  int ndim;
  int64_t shape[SAM2_ST_MAX_DIMS];
  guint8 *data;
  size_t nbytes;
} Sam2StEntry;

struct _Sam2StWriter {
  GPtrArray *entries;          /* Sam2StEntry*, in the order added */
  GHashTable *names;           /* set of entry names (owned by the entries) */
  GHashTable *metadata;        /* key -> value, both owned */
};

static void
sam2_st_entry_free (gpointer p)
{
  Sam2StEntry *e = p;
  g_free (e->name);
  g_free (e->data);
  g_free (e);
}

Sam2StWriter *
sam2_st_writer_new (void)
{
  Sam2StWriter *w = g_new0 (Sam2StWriter, 1);
  w->entries = g_ptr_array_new_with_free_func (sam2_st_entry_free);
  w->names = g_hash_table_new (g_str_hash, g_str_equal);
  w->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return w;
}

void
sam2_st_writer_free (Sam2StWriter *w)
{
  if (w == NULL)
    return;
  g_hash_table_unref (w->names);
  g_ptr_array_unref (w->entries);
  g_hash_table_unref (w->metadata);
  g_free (w);
}

static gboolean
sam2_st_writer_check (Sam2StWriter *w, const char *name, Sam2DType dtype, int ndim,
                      const int64_t *shape, GError **error)
{
  const char *why = NULL;
  if (!g_utf8_validate (name, -1, NULL))
    why = "the name is not UTF-8";
  else if (strcmp (name, "__metadata__") == 0)
    why = "the name is reserved for the metadata";
  else if (g_hash_table_contains (w->names, name))
    why = "a tensor of that name was already added";
  else if (!sam2_dtype_valid (dtype))
    why = "the dtype is not a Sam2DType";
  else if (ndim < 0 || ndim > SAM2_ST_MAX_DIMS)
    why = "the number of dimensions is not between 0 and 8";
  for (int i = 0; why == NULL && i < ndim; i++)
    if (shape[i] < 0)
      why = "the shape has a negative dimension";
  if (why != NULL)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT, "cannot add tensor '%s': %s",
                 name, why);
  return why == NULL;
}

gboolean
sam2_st_writer_add (Sam2StWriter *w, const char *name, Sam2DType dtype, int ndim,
                    const int64_t *shape, const void *data, GError **error)
{
  g_return_val_if_fail (w != NULL && name != NULL, FALSE);
  g_return_val_if_fail (shape != NULL || ndim == 0, FALSE);
  if (!sam2_st_writer_check (w, name, dtype, ndim, shape, error))
    return FALSE;
  int64_t numel;
  guint64 nbytes;
  if (!sam2_st_count (shape, ndim, sam2_dtypes[dtype].size, &numel, &nbytes) || nbytes > G_MAXSIZE) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "cannot add tensor '%s': its size in bytes overflows", name);
    return FALSE;
  }
  g_return_val_if_fail (data != NULL || nbytes == 0, FALSE);
  Sam2StEntry *e = g_new0 (Sam2StEntry, 1);
  e->name = g_strdup (name);
  e->dtype = dtype;
  e->ndim = ndim;
  if (ndim > 0)
    memcpy (e->shape, shape, (size_t) ndim * sizeof *shape);
  e->nbytes = (size_t) nbytes;
  e->data = g_malloc (MAX (e->nbytes, 1));
  if (e->nbytes > 0)
    memcpy (e->data, data, e->nbytes);
  g_ptr_array_add (w->entries, e);
  g_hash_table_add (w->names, e->name);
  return TRUE;
}

void
sam2_st_writer_set_metadata (Sam2StWriter *w, const char *key, const char *value)
{
  g_return_if_fail (w != NULL && key != NULL && value != NULL);
  g_return_if_fail (g_utf8_validate (key, -1, NULL) && g_utf8_validate (value, -1, NULL));
  g_hash_table_insert (w->metadata, g_strdup (key), g_strdup (value));
}

/* As serde_json escapes, so that headers match the reference writer's byte for byte. */
static void
sam2_st_append_json_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const guchar *p = (const guchar *) s; *p != '\0'; p++) {
    switch (*p) {
    case '"': g_string_append (out, "\\\""); break;
    case '\\': g_string_append (out, "\\\\"); break;
    case '\b': g_string_append (out, "\\b"); break;
    case '\f': g_string_append (out, "\\f"); break;
    case '\n': g_string_append (out, "\\n"); break;
    case '\r': g_string_append (out, "\\r"); break;
    case '\t': g_string_append (out, "\\t"); break;
    default:
      if (*p < 0x20)
        g_string_append_printf (out, "\\u%04x", *p);
      else
        g_string_append_c (out, (char) *p);
    }
  }
  g_string_append_c (out, '"');
}

static int
sam2_st_entry_compare (gconstpointer a, gconstpointer b)
{
  const Sam2StEntry *x = *(Sam2StEntry *const *) a, *y = *(Sam2StEntry *const *) b;
  int rx = sam2_dtypes[x->dtype].rank, ry = sam2_dtypes[y->dtype].rank;
  if (rx != ry)
    return ry - rx;
  return strcmp (x->name, y->name);
}

static int
sam2_st_string_compare (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
sam2_st_append_metadata (GString *out, GHashTable *metadata)
{
  guint n;
  gpointer *keys = g_hash_table_get_keys_as_array (metadata, &n);
  qsort (keys, n, sizeof *keys, sam2_st_string_compare);
  sam2_st_append_json_string (out, "__metadata__");
  g_string_append (out, ":{");
  for (guint i = 0; i < n; i++) {
    if (i > 0)
      g_string_append_c (out, ',');
    sam2_st_append_json_string (out, keys[i]);
    g_string_append_c (out, ':');
    sam2_st_append_json_string (out, g_hash_table_lookup (metadata, keys[i]));
  }
  g_string_append_c (out, '}');
  g_free (keys);
}

/* The header, padded with spaces to a multiple of 8 so the data section starts aligned;
 * `order` receives the entries in file order (owned by the writer's array). */
static GString *
sam2_st_build_header (Sam2StWriter *w, GPtrArray **order)
{
  GPtrArray *sorted = g_ptr_array_new ();
  for (guint i = 0; i < w->entries->len; i++)
    g_ptr_array_add (sorted, w->entries->pdata[i]);
  g_ptr_array_sort (sorted, sam2_st_entry_compare);
  GString *h = g_string_new ("{");
  if (g_hash_table_size (w->metadata) > 0)
    sam2_st_append_metadata (h, w->metadata);
  guint64 offset = 0;
  for (guint i = 0; i < sorted->len; i++) {
    const Sam2StEntry *e = sorted->pdata[i];
    if (h->len > 1)
      g_string_append_c (h, ',');
    sam2_st_append_json_string (h, e->name);
    g_string_append_printf (h, ":{\"dtype\":\"%s\",\"shape\":[", sam2_dtypes[e->dtype].name);
    for (int d = 0; d < e->ndim; d++)
      g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d > 0 ? "," : "", (gint64) e->shape[d]);
    g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                            offset, offset + e->nbytes);
    offset += e->nbytes;
  }
  g_string_append_c (h, '}');
  while (h->len % 8 != 0)
    g_string_append_c (h, ' ');
  *order = sorted;
  return h;
}

static gboolean
sam2_st_write_all (int fd, const void *buf, size_t len, int *err)
{
  const guint8 *p = buf;
  while (len > 0) {
    ssize_t n = write (fd, p, MIN (len, (size_t) 1 << 30));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      /* write() returning 0 for a non-empty buffer only happens when the device is full */
      *err = n < 0 ? errno : ENOSPC;
      return FALSE;
    }
    p += n;
    len -= (size_t) n;
  }
  return TRUE;
}

static const char *
sam2_st_write_advice (int err)
{
  switch (err) {
  case ENOSPC:
  case EDQUOT:
    return "free some space or write to another directory";
  case EFBIG:
    return "the file is larger than this process may write (see ulimit -f) or the file system "
           "allows; raise the limit or write to another directory";
  case EACCES:
  case EPERM:
  case EROFS:
    return "check the directory's permissions or write to another directory";
  default:
    return "write to another directory";
  }
}

static gboolean
sam2_st_write_fail (GError **error, const char *path, const char *step, int err)
{
  g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot write %s: %s%s; %s", path, step,
               g_strerror (err), sam2_st_write_advice (err));
  return FALSE;
}

/* The destination's directory must exist; said plainly rather than as mkstemp's ENOENT. */
static gboolean
sam2_st_check_destination (const char *path, const char *dir, GError **error)
{
  struct stat sb;
  const char *why = NULL;
  if (stat (dir, &sb) != 0) {
    if (errno == ENOENT)
      why = "does not exist; create it or write to another directory";
    else if (errno == ENOTDIR)
      why = "is not a directory; write to a directory";
    else
      return sam2_st_write_fail (error, path, "", errno);
  } else if (!S_ISDIR (sb.st_mode)) {
    why = "is not a directory; write to a directory";
  }
  if (why != NULL) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot write %s: %s %s", path, dir, why);
    return FALSE;
  }
  if (stat (path, &sb) == 0 && S_ISDIR (sb.st_mode)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot write %s: it is a directory; choose a "
                 "file name", path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
sam2_st_write_contents (int fd, const GString *header, GPtrArray *order, int *err)
{
  guint64 n = GUINT64_TO_LE ((guint64) header->len);
  if (!sam2_st_write_all (fd, &n, 8, err) || !sam2_st_write_all (fd, header->str, header->len, err))
    return FALSE;
  for (guint i = 0; i < order->len; i++) {
    const Sam2StEntry *e = order->pdata[i];
    if (!sam2_st_write_all (fd, e->data, e->nbytes, err))
      return FALSE;
  }
  if (fsync (fd) != 0) {
    *err = errno;
    return FALSE;
  }
  return TRUE;
}

/* After the rename the file is complete; the directory sync makes the new name durable. File
 * systems that cannot sync a directory (EINVAL) have nothing to lose here. */
static gboolean
sam2_st_sync_directory (const char *path, const char *dir, GError **error)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return TRUE;
  gboolean ok = fsync (fd) == 0 || errno == EINVAL;
  int err = errno;
  close (fd);
  if (!ok)
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "wrote %s but could not sync its directory: %s; "
                 "the file may not survive a power loss, write it again", path, g_strerror (err));
  return ok;
}

/* "<dir>/.<name>.XXXXXX", the name shortened so the whole stays within NAME_MAX. */
static char *
sam2_st_temp_template (const char *dir, const char *base)
{
  char *hidden = g_strdup_printf (".%.200s.XXXXXX", base);
  char *tmpl = g_build_filename (dir, hidden, NULL);
  g_free (hidden);
  return tmpl;
}

static gboolean
sam2_st_write_file (const char *path, const char *dir, const GString *header, GPtrArray *order,
                    GError **error)
{
  char *base = g_path_get_basename (path);
  char *tmp = sam2_st_temp_template (dir, base);
  g_free (base);
  int fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, 0666);
  if (fd < 0) {
    int err = errno;
    g_free (tmp);
    return sam2_st_write_fail (error, path, "cannot create a file beside it: ", err);
  }
  int err = 0;
  const char *step = "";
  gboolean ok = sam2_st_write_contents (fd, header, order, &err);
  if (close (fd) != 0 && ok) {
    err = errno;
    ok = FALSE;
  }
  if (ok && rename (tmp, path) != 0) {
    err = errno;
    step = "cannot rename the temporary file over it: ";
    ok = FALSE;
  }
  if (!ok) {
    unlink (tmp);
    g_free (tmp);
    return sam2_st_write_fail (error, path, step, err);
  }
  g_free (tmp);
  return sam2_st_sync_directory (path, dir, error);
}

gboolean
sam2_st_writer_write (Sam2StWriter *w, const char *path, GError **error)
{
  g_return_val_if_fail (w != NULL && path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  GPtrArray *order;
  GString *header = sam2_st_build_header (w, &order);
  char *dir = g_path_get_dirname (path);
  gboolean ok;
  if (header->len > SAM2_ST_MAX_HEADER_SIZE) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT,
                 "cannot write %s: the header would be %zu bytes, over the format's 100 MB limit; "
                 "write fewer tensors or shorter names", path, header->len);
    ok = FALSE;
  } else {
    ok = sam2_st_check_destination (path, dir, error)
         && sam2_st_write_file (path, dir, header, order, error);
  }
  g_free (dir);
  g_ptr_array_unref (order);
  g_string_free (header, TRUE);
  return ok;
}
