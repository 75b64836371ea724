/* test-safetensors.c: the safetensors reader and writer against the reference implementation's
 * byte layout, the fixtures, hostile headers and failing file systems. */
#include "sam2.h"
#include "test-support.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------------- */

/* A file image: 8-byte length, `header` as given (no padding), `data_size` bytes 0, 1, 2, ... */
static GBytes *
make_image (const char *header, size_t data_size)
{
  size_t n = strlen (header);
  guint8 *buf = g_malloc (8 + n + data_size);
  guint64 len = GUINT64_TO_LE ((guint64) n);
  memcpy (buf, &len, 8);
  memcpy (buf + 8, header, n);
  for (size_t i = 0; i < data_size; i++)
    buf[8 + n + i] = (guint8) i;
  return g_bytes_new_take (buf, 8 + n + data_size);
}

static void
assert_message_has (const GError *error, const char *fragment)
{
  if (strstr (error->message, fragment) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", error->message, fragment);
}

/* Opens the bytes in memory and checks the error code and that the message has `fragment`. */
static void
expect_bytes_error (const void *bytes, size_t size, int code, const char *fragment)
{
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open_bytes (bytes, size, &error);
  g_assert_null (st);
  g_assert_error (error, SAM2_ERROR, code);
  g_assert_true (g_str_has_prefix (error->message, "(in memory): "));
  assert_message_has (error, fragment);
  g_error_free (error);
}

static void
expect_header_error (const char *header, size_t data_size, int code, const char *fragment)
{
  GBytes *image = make_image (header, data_size);
  gsize size;
  const void *bytes = g_bytes_get_data (image, &size);
  expect_bytes_error (bytes, size, code, fragment);
  g_bytes_unref (image);
}

static Sam2Safetensors *
open_header (const char *header, size_t data_size, GBytes **keep)
{
  GError *error = NULL;
  *keep = make_image (header, data_size);
  gsize size;
  const void *bytes = g_bytes_get_data (*keep, &size);
  Sam2Safetensors *st = sam2_safetensors_open_bytes (bytes, size, &error);
  g_assert_no_error (error);
  return st;
}

static char *
make_tmp_dir (void)
{
  GError *error = NULL;
  char *dir = g_dir_make_tmp ("sam2-st-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
      g_free (child);
    }
    g_dir_close (dir);
    g_chmod (path, 0700);
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}

static int
count_entries (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  g_assert_nonnull (dir);
  int n = 0;
  while (g_dir_read_name (dir) != NULL)
    n++;
  g_dir_close (dir);
  return n;
}

static void
write_bytes (const char *path, const void *bytes, size_t size)
{
  GError *error = NULL;
  g_file_set_contents (path, bytes, (gssize) size, &error);
  g_assert_no_error (error);
}

static GBytes *
read_bytes (const char *path)
{
  GError *error = NULL;
  char *contents;
  gsize size;
  g_file_get_contents (path, &contents, &size, &error);
  g_assert_no_error (error);
  return g_bytes_new_take (contents, size);
}

static void
add_f32 (Sam2StWriter *w, const char *name, int ndim, const int64_t *shape, const float *data)
{
  GError *error = NULL;
  g_assert_true (sam2_st_writer_add (w, name, SAM2_DTYPE_F32, ndim, shape, data, &error));
  g_assert_no_error (error);
}

static void
write_ok (Sam2StWriter *w, const char *path)
{
  GError *error = NULL;
  g_assert_true (sam2_st_writer_write (w, path, &error));
  g_assert_no_error (error);
}

static guint32
f32_bits (float f)
{
  guint32 b;
  memcpy (&b, &f, 4);
  return b;
}

static Sam2StTensor
make_tensor (const char *name, Sam2DType dtype, const void *data, int64_t numel)
{
  Sam2StTensor t = { .name = name, .dtype = dtype, .ndim = 1, .numel = numel, .data = data,
                     .nbytes = (size_t) numel * sam2_dtype_size (dtype) };
  t.shape[0] = numel;
  return t;
}

/* ---- dtypes ---------------------------------------------------------------------------- */

static void
test_dtype_table (void)
{
  static const struct { Sam2DType dtype; const char *name; size_t size; gboolean is_float; } table[] = {
    { SAM2_DTYPE_F32, "F32", 4, TRUE }, { SAM2_DTYPE_F16, "F16", 2, TRUE },
    { SAM2_DTYPE_BF16, "BF16", 2, TRUE }, { SAM2_DTYPE_F64, "F64", 8, TRUE },
    { SAM2_DTYPE_I64, "I64", 8, FALSE }, { SAM2_DTYPE_I32, "I32", 4, FALSE },
    { SAM2_DTYPE_I16, "I16", 2, FALSE }, { SAM2_DTYPE_I8, "I8", 1, FALSE },
    { SAM2_DTYPE_U8, "U8", 1, FALSE }, { SAM2_DTYPE_BOOL, "BOOL", 1, FALSE },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (table); i++) {
    g_assert_cmpstr (sam2_dtype_name (table[i].dtype), ==, table[i].name);
    g_assert_cmpuint (sam2_dtype_size (table[i].dtype), ==, table[i].size);
    g_assert_cmpint (sam2_dtype_is_float (table[i].dtype), ==, table[i].is_float);
  }
}

/* ---- writer: the reference's own test vectors ------------------------------------------ */

static void
assert_file_is (const char *path, const char *header, const void *data, size_t data_size)
{
  GBytes *expected_image = make_image (header, 0);
  GByteArray *expected = g_byte_array_new ();
  g_byte_array_append (expected, g_bytes_get_data (expected_image, NULL),
                       (guint) g_bytes_get_size (expected_image));
  g_byte_array_append (expected, data, (guint) data_size);
  GBytes *actual = read_bytes (path);
  g_assert_cmpmem (g_bytes_get_data (actual, NULL), g_bytes_get_size (actual), expected->data,
                   expected->len);
  g_bytes_unref (actual);
  g_byte_array_unref (expected);
  g_bytes_unref (expected_image);
}

/* serialize() tests of huggingface/safetensors tensor.rs: empty, metadata, one tensor, padding. */
static void
test_write_reference_bytes (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "ref.safetensors", NULL);
  static const float values[6] = { 0, 1, 2, 3, 4, 5 };

  Sam2StWriter *w = sam2_st_writer_new ();
  write_ok (w, path);
  assert_file_is (path, "{}      ", NULL, 0);
  sam2_st_writer_set_metadata (w, "framework", "pt");
  write_ok (w, path);
  assert_file_is (path, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", NULL, 0);
  sam2_st_writer_free (w);

  w = sam2_st_writer_new ();
  add_f32 (w, "attn.0", 3, (const int64_t[]) { 1, 2, 3 }, values);
  write_ok (w, path);
  assert_file_is (path, "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}",
                  values, sizeof values);
  sam2_st_writer_free (w);

  w = sam2_st_writer_new ();
  add_f32 (w, "attn0", 4, (const int64_t[]) { 1, 1, 2, 3 }, values);
  write_ok (w, path);
  assert_file_is (path, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}"
                  "       ", values, sizeof values);
  sam2_st_writer_free (w);

  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

/* ---- writer + reader round trips ------------------------------------------------------- */

typedef struct {
  const char *name;
  Sam2DType dtype;
  int ndim;
  int64_t shape[3];
} RoundTripCase;

/* Written in this order; the file holds them by decreasing alignment, then name. */
static const RoundTripCase round_trip_cases[] = {
  { "u8", SAM2_DTYPE_U8, 2, { 3, 5 } },
  { "bool", SAM2_DTYPE_BOOL, 1, { 7 } },
  { "f16", SAM2_DTYPE_F16, 2, { 3, 3 } },
  { "i8", SAM2_DTYPE_I8, 1, { 3 } },
  { "f32", SAM2_DTYPE_F32, 3, { 2, 1, 3 } },
  { "bf16", SAM2_DTYPE_BF16, 1, { 5 } },
  { "i16", SAM2_DTYPE_I16, 1, { 1 } },
  { "f64", SAM2_DTYPE_F64, 0, { 0 } },          /* a scalar */
  { "i32", SAM2_DTYPE_I32, 2, { 2, 2 } },
  { "i64", SAM2_DTYPE_I64, 1, { 3 } },
  { "empty", SAM2_DTYPE_F32, 2, { 4, 0 } },     /* zero elements */
};
static const char *const round_trip_order[] = {
  "i64", "f64", "empty", "f32", "i32", "bf16", "f16", "i16", "i8", "u8", "bool",
};

static guint8 *
pattern (size_t n, guint8 seed)
{
  guint8 *p = g_malloc (MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    p[i] = (guint8) (seed * 31 + i * 7 + 1);
  return p;
}

static void
test_round_trip_all_dtypes (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "all.safetensors", NULL);
  GError *error = NULL;
  Sam2StWriter *w = sam2_st_writer_new ();
  for (size_t i = 0; i < G_N_ELEMENTS (round_trip_cases); i++) {
    const RoundTripCase *c = &round_trip_cases[i];
    int64_t numel = 1;
    for (int d = 0; d < c->ndim; d++)
      numel *= c->shape[d];
    guint8 *data = pattern ((size_t) numel * sam2_dtype_size (c->dtype), (guint8) i);
    g_assert_true (sam2_st_writer_add (w, c->name, c->dtype, c->ndim, c->shape, data, &error));
    g_assert_no_error (error);
    g_free (data);
  }
  sam2_st_writer_set_metadata (w, "format", "pt");
  sam2_st_writer_set_metadata (w, "note", "quotes \" backslash \\ newline \n tab \t é");
  write_ok (w, path);
  sam2_st_writer_free (w);

  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (sam2_safetensors_path (st), ==, path);
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, G_N_ELEMENTS (round_trip_cases));
  for (int i = 0; i < sam2_safetensors_n_tensors (st); i++)
    g_assert_cmpstr (sam2_safetensors_nth (st, i)->name, ==, round_trip_order[i]);
  for (size_t i = 0; i < G_N_ELEMENTS (round_trip_cases); i++) {
    const RoundTripCase *c = &round_trip_cases[i];
    const Sam2StTensor *t = sam2_safetensors_find (st, c->name);
    g_assert_nonnull (t);
    g_assert_cmpint (t->dtype, ==, c->dtype);
    g_assert_cmpint (t->ndim, ==, c->ndim);
    int64_t numel = 1;
    for (int d = 0; d < c->ndim; d++) {
      g_assert_cmpint (t->shape[d], ==, c->shape[d]);
      numel *= c->shape[d];
    }
    g_assert_cmpint (t->numel, ==, numel);
    g_assert_cmpuint (t->nbytes, ==, (size_t) numel * sam2_dtype_size (c->dtype));
    /* the mapping is page-aligned, so this is the layout's alignment */
    g_assert_cmpuint ((guintptr) t->data % sam2_dtype_size (c->dtype), ==, 0);
    guint8 *expected = pattern (t->nbytes, (guint8) i);
    g_assert_cmpmem (t->data, t->nbytes, expected, t->nbytes);
    g_free (expected);
  }
  g_assert_null (sam2_safetensors_find (st, "absent"));
  g_assert_cmpstr (sam2_safetensors_metadata (st, "format"), ==, "pt");
  g_assert_cmpstr (sam2_safetensors_metadata (st, "note"), ==,
                   "quotes \" backslash \\ newline \n tab \t é");
  g_assert_null (sam2_safetensors_metadata (st, "absent"));

  /* the header is padded with spaces to a multiple of 8 */
  GBytes *file = read_bytes (path);
  const guint8 *bytes = g_bytes_get_data (file, NULL);
  guint64 n;
  memcpy (&n, bytes, 8);
  n = GUINT64_FROM_LE (n);
  g_assert_cmpuint (n % 8, ==, 0);
  g_assert_cmpuint (sam2_safetensors_file_size (st), ==, g_bytes_get_size (file));
  g_assert_true (bytes[8 + n - 1] == '}' || bytes[8 + n - 1] == ' ');
  g_bytes_unref (file);
  sam2_safetensors_close (st);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

static void
test_round_trip_names (void)
{
  static const char *const names[] = {
    "plain.weight", "quote\"d", "back\\slash", "new\nline", "ctrl\001char", "ünïcödé/😀", "",
  };
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "names.safetensors", NULL);
  Sam2StWriter *w = sam2_st_writer_new ();
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    float v = (float) i;
    add_f32 (w, names[i], 1, (const int64_t[]) { 1 }, &v);
  }
  write_ok (w, path);
  sam2_st_writer_free (w);

  GBytes *file = read_bytes (path);
  const char *header = (const char *) g_bytes_get_data (file, NULL) + 8;
  g_assert_nonnull (g_strstr_len (header, (gssize) g_bytes_get_size (file) - 8, "ctrl\\u0001char"));
  g_bytes_unref (file);
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    float *v = sam2_safetensors_read_f32 (st, names[i], 1, &error);
    g_assert_no_error (error);
    g_assert_cmpfloat (v[0], ==, (float) i);
    g_free (v);
  }
  sam2_safetensors_close (st);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

/* Rewriting a fixture gives back the file save_file wrote, byte for byte. */
static void
check_rewrite_identical (const char *fixture, const char *metadata_key)
{
  Sam2Safetensors *st = sam2_test_open_fixture (fixture);
  if (st == NULL)
    return;
  GError *error = NULL;
  Sam2StWriter *w = sam2_st_writer_new ();
  for (int i = 0; i < sam2_safetensors_n_tensors (st); i++) {
    const Sam2StTensor *t = sam2_safetensors_nth (st, i);
    g_assert_true (sam2_st_writer_add (w, t->name, t->dtype, t->ndim, t->shape, t->data, &error));
    g_assert_no_error (error);
  }
  if (metadata_key != NULL)
    sam2_st_writer_set_metadata (w, metadata_key, sam2_safetensors_metadata (st, metadata_key));
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "copy.safetensors", NULL);
  write_ok (w, path);
  sam2_st_writer_free (w);

  char *original_path = sam2_test_fixture_path (fixture);
  GBytes *original = read_bytes (original_path);
  GBytes *copy = read_bytes (path);
  g_assert_true (g_bytes_equal (original, copy));
  g_bytes_unref (copy);
  g_bytes_unref (original);
  g_free (original_path);
  sam2_safetensors_close (st);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

static void
test_rewrite_fixtures_identical (void)
{
  check_rewrite_identical ("sam2-mini-hash/model.safetensors", "format");
  check_rewrite_identical ("preproc.safetensors", NULL);
}

/* ---- fixtures -------------------------------------------------------------------------- */

/* The hash weights of the fixtures README, for a 1-D or n-D tensor. */
static float
hash_weight (const char *name, const int64_t *shape, int ndim, int64_t numel, int64_t i)
{
  guint64 h = 0xcbf29ce484222325ull;
  for (const guchar *p = (const guchar *) name; *p != '\0'; p++)
    h = (h ^ *p) * 0x100000001b3ull;
  guint64 z = h + (guint64) (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  double v = 2.0 * ((double) (z >> 11) * 0x1p-53) - 1.0;
  if (ndim >= 2)
    return (float) (v / sqrt ((double) numel / (double) shape[0]));
  return (float) (g_str_has_suffix (name, "weight") ? 1.0 + 0.1 * v : 0.02 * v);
}

static void
test_fixture_mini_model (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("sam2-mini-hash/model.safetensors");
  if (st == NULL)
    return;
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, 249);
  g_assert_cmpstr (sam2_safetensors_metadata (st, "format"), ==, "pt");
  g_assert_cmpstr (sam2_safetensors_nth (st, 0)->name, ==, "mask_decoder.conv_s0.bias");
  static const char *const names[] = { "mask_decoder.conv_s0.bias", "mask_decoder.conv_s0.weight" };
  for (size_t k = 0; k < G_N_ELEMENTS (names); k++) {
    const Sam2StTensor *t = sam2_safetensors_find (st, names[k]);
    g_assert_nonnull (t);
    g_assert_cmpint (t->dtype, ==, SAM2_DTYPE_F32);
    g_assert_cmpint (t->shape[0], ==, 8);
    GError *error = NULL;
    float *v = sam2_safetensors_read_f32 (st, names[k], t->numel, &error);
    g_assert_no_error (error);
    for (int64_t i = 0; i < t->numel; i++)
      g_assert_cmpfloat (v[i], ==, hash_weight (t->name, t->shape, t->ndim, t->numel, i));
    g_free (v);
  }
  const Sam2StTensor *w = sam2_safetensors_find (st, "mask_decoder.conv_s0.weight");
  g_assert_cmpint (w->ndim, ==, 4);
  g_assert_cmpint (w->shape[1], ==, 64);
  g_assert_cmpint (w->numel, ==, 8 * 64);
  sam2_safetensors_close (st);
}

static void
test_fixture_preproc (void)
{
  Sam2Safetensors *st = sam2_test_open_fixture ("preproc.safetensors");
  if (st == NULL)
    return;
  GError *error = NULL;
  g_assert_null (sam2_safetensors_metadata (st, "format"));
  /* header order, which is not name order */
  g_assert_cmpstr (sam2_safetensors_nth (st, 0)->name, ==, "original_sizes");
  const Sam2StTensor *sizes = sam2_safetensors_find (st, "original_sizes");
  g_assert_cmpint (sizes->dtype, ==, SAM2_DTYPE_I64);
  gint64 hw[2];
  memcpy (hw, sizes->data, sizeof hw);
  g_assert_cmpint (GINT64_FROM_LE (hw[0]), ==, 120);
  g_assert_cmpint (GINT64_FROM_LE (hw[1]), ==, 160);

  const Sam2StTensor *rgb = sam2_safetensors_find (st, "image_rgb_u8");
  g_assert_cmpint (rgb->dtype, ==, SAM2_DTYPE_U8);
  g_assert_cmpint (rgb->ndim, ==, 3);
  g_assert_cmpint (rgb->shape[0], ==, 120);
  g_assert_cmpint (rgb->shape[1], ==, 160);
  g_assert_cmpint (rgb->shape[2], ==, 3);
  guint64 rgb_sum = 0;
  for (size_t i = 0; i < rgb->nbytes; i++)
    rgb_sum += ((const guint8 *) rgb->data)[i];
  g_assert_cmpuint (rgb_sum, ==, 7080041);

  /* F16 pixels; the sum is exact in double and was computed with Python's math.fsum */
  const Sam2StTensor *px = sam2_safetensors_find (st, "pixel_values_1024");
  g_assert_cmpint (px->dtype, ==, SAM2_DTYPE_F16);
  g_assert_cmpint (px->numel, ==, 3 * 1024 * 1024);
  float *v = sam2_safetensors_read_f32 (st, "pixel_values_1024", 3 * 1024 * 1024, &error);
  g_assert_no_error (error);
  double sum = 0.0;
  for (int64_t i = 0; i < px->numel; i++)
    sum += v[i];
  g_assert_cmpfloat (v[0], ==, -2.1171875f);
  g_assert_cmpfloat_with_epsilon (sum, 455627.4552574158, 1e-6);
  g_free (v);

  float *iou = sam2_safetensors_read_f32 (st, "mini_iou_scores", 3, &error);
  g_assert_no_error (error);
  g_free (iou);
  sam2_safetensors_close (st);
}

/* ---- conversions ----------------------------------------------------------------------- */

/* binary16 by its definition, independently of the bit manipulation under test */
static float
f16_reference (guint16 h)
{
  int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == 0)
    return (float) (sign * ldexp (mantissa, -24));
  if (exponent == 31)
    return mantissa == 0 ? (float) (sign * INFINITY) : NAN;
  return (float) (sign * ldexp (1024 + mantissa, exponent - 25));
}

static void
test_convert_f16 (void)
{
  static const struct { guint16 bits; float value; } special[] = {
    { 0x0000, 0.0f }, { 0x3c00, 1.0f }, { 0xc000, -2.0f }, { 0x7bff, 65504.0f },
    { 0x0001, 0x1p-24f }, { 0x03ff, 0x1.ff8p-15f }, { 0x0400, 0x1p-14f }, { 0x3555, 0x1.554p-2f },
    { 0x7c00, INFINITY }, { 0xfc00, -INFINITY },
  };
  /* unaligned on purpose: one byte into the buffer */
  guint8 *buf = g_malloc (1 + 2 * 65536);
  for (guint i = 0; i < 65536; i++) {
    guint16 le = GUINT16_TO_LE ((guint16) i);
    memcpy (buf + 1 + 2 * i, &le, 2);
  }
  Sam2StTensor t = make_tensor ("half", SAM2_DTYPE_F16, buf + 1, 65536);
  float *out = g_new (float, 65536);
  GError *error = NULL;
  g_assert_true (sam2_st_tensor_to_f32 (&t, out, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < 65536; i++) {
    float ref = f16_reference ((guint16) i);
    if (isnan (ref)) {
      /* quiet or signalling, the payload and sign survive */
      g_assert_true (isnan (out[i]));
      g_assert_cmphex (f32_bits (out[i]), ==, ((i & 0x8000u) << 16) | 0x7f800000u | ((i & 0x3ffu) << 13));
    } else {
      g_assert_cmphex (f32_bits (out[i]), ==, f32_bits (ref));
    }
  }
  for (size_t k = 0; k < G_N_ELEMENTS (special); k++)
    g_assert_cmphex (f32_bits (out[special[k].bits]), ==, f32_bits (special[k].value));
  g_assert_true (signbit (out[0x8000]) && out[0x8000] == 0.0f);
  g_assert_true (isnan (out[0x7e00]));
  g_free (out);
  g_free (buf);
}

static void
test_convert_bf16 (void)
{
  static const struct { guint16 bits; float value; } special[] = {
    { 0x3f80, 1.0f }, { 0xc000, -2.0f }, { 0x0001, 0x1p-133f }, { 0x7f7f, 0x1.fep127f },
    { 0x0080, 0x1p-126f }, { 0x7f80, INFINITY }, { 0xff80, -INFINITY }, { 0x3eab, 0x1.56p-2f },
  };
  guint8 *buf = g_malloc (1 + 2 * 65536);
  for (guint i = 0; i < 65536; i++) {
    guint16 le = GUINT16_TO_LE ((guint16) i);
    memcpy (buf + 1 + 2 * i, &le, 2);
  }
  Sam2StTensor t = make_tensor ("brain", SAM2_DTYPE_BF16, buf + 1, 65536);
  float *out = g_new (float, 65536);
  g_assert_true (sam2_st_tensor_to_f32 (&t, out, NULL));
  for (guint i = 0; i < 65536; i++)
    g_assert_cmphex (f32_bits (out[i]), ==, i << 16);
  for (size_t k = 0; k < G_N_ELEMENTS (special); k++)
    g_assert_cmphex (f32_bits (out[special[k].bits]), ==, f32_bits (special[k].value));
  g_assert_true (isnan (out[0x7fc0]) && isnan (out[0xffc1]));
  g_assert_true (signbit (out[0x8000]) && out[0x8000] == 0.0f);
  g_free (out);
  g_free (buf);
}

static void
test_convert_f64_and_f32 (void)
{
  static const struct { double in; float out; } cases[] = {
    { 1.0, 1.0f }, { -0.0, -0.0f }, { 0.1, 0x1.99999ap-4f }, { 1e300, INFINITY },
    { -1e300, -INFINITY }, { 1e-300, 0.0f }, { INFINITY, INFINITY },
    { 1.0 + 0x1p-24, 1.0f },                     /* a tie rounds to even */
    { 1.0 + 0x1.8p-23, 1.0f + 0x1p-22f },
    { 0x1p-149, 0x1p-149f },                     /* the smallest float subnormal */
  };
  size_t n = G_N_ELEMENTS (cases);
  guint8 *buf = g_malloc (3 + 8 * (n + 1));
  for (size_t i = 0; i < n; i++)
    memcpy (buf + 3 + 8 * i, &cases[i].in, 8);
  double nan_in = NAN;
  memcpy (buf + 3 + 8 * n, &nan_in, 8);
  Sam2StTensor t = make_tensor ("double", SAM2_DTYPE_F64, buf + 3, (int64_t) n + 1);
  float out[G_N_ELEMENTS (cases) + 1];
  g_assert_true (sam2_st_tensor_to_f32 (&t, out, NULL));
  for (size_t i = 0; i < n; i++)
    g_assert_cmphex (f32_bits (out[i]), ==, f32_bits (cases[i].out));
  g_assert_true (isnan (out[n]));

  float in32[3] = { 1.5f, -0.0f, 0x1p-149f };
  memcpy (buf + 1, in32, sizeof in32);
  t = make_tensor ("single", SAM2_DTYPE_F32, buf + 1, 3);
  g_assert_true (sam2_st_tensor_to_f32 (&t, out, NULL));
  g_assert_cmpmem (out, sizeof in32, in32, sizeof in32);
  g_free (buf);
}

static void
test_convert_not_float (void)
{
  static const Sam2DType dtypes[] = {
    SAM2_DTYPE_I64, SAM2_DTYPE_I32, SAM2_DTYPE_I16, SAM2_DTYPE_I8, SAM2_DTYPE_U8, SAM2_DTYPE_BOOL,
  };
  gint64 zeros[2] = { 0, 0 };
  float out[2];
  for (size_t i = 0; i < G_N_ELEMENTS (dtypes); i++) {
    GError *error = NULL;
    Sam2StTensor t = make_tensor ("ids", dtypes[i], zeros, 2);
    g_assert_false (sam2_st_tensor_to_f32 (&t, out, &error));
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS);
    assert_message_has (error, "tensor 'ids'");
    assert_message_has (error, sam2_dtype_name (dtypes[i]));
    g_error_free (error);
  }
}

static void
test_read_f32 (void)
{
  GBytes *keep;
  Sam2Safetensors *st = open_header ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                                     "\"ids\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                                     "\"none\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[20,20]}}",
                                     20, &keep);
  GError *error = NULL;
  g_assert_null (sam2_safetensors_path (st));
  float *v = sam2_safetensors_read_f32 (st, "w", -1, &error);
  g_assert_no_error (error);
  g_free (v);
  v = sam2_safetensors_read_f32 (st, "none", 0, &error);
  g_assert_no_error (error);
  g_assert_nonnull (v);
  g_free (v);

  g_assert_null (sam2_safetensors_read_f32 (st, "absent", -1, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS);
  assert_message_has (error, "'absent'");
  g_clear_error (&error);
  g_assert_null (sam2_safetensors_read_f32 (st, "w", 5, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS);
  assert_message_has (error, "tensor 'w' has shape [2, 2] (4 elements), expected 5 elements");
  g_clear_error (&error);
  g_assert_null (sam2_safetensors_read_f32 (st, "ids", 1, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_WEIGHTS);
  assert_message_has (error, "(in memory): tensor 'ids' has dtype I32");
  g_clear_error (&error);
  sam2_safetensors_close (st);
  sam2_safetensors_close (NULL);
  g_bytes_unref (keep);
}

/* ---- reading: valid corner cases ------------------------------------------------------- */

static void
test_read_corner_cases (void)
{
  GBytes *keep;
  /* no tensors at all, and an empty metadata object */
  Sam2Safetensors *st = open_header ("{}", 0, &keep);
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, 0);
  sam2_safetensors_close (st);
  g_bytes_unref (keep);
  st = open_header (" {\"__metadata__\":{}} ", 0, &keep);
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, 0);
  sam2_safetensors_close (st);
  g_bytes_unref (keep);

  /* escapes in names, unknown keys ignored, zero-size tensors anywhere, offsets in any order */
  st = open_header ("{\"b\\u00e9\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3],"
                    "\"future\":[1,{}]},"
                    "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0,5],\"data_offsets\":[3,3]},"
                    "\"a\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[0,1]},"
                    "\"z0\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]}}", 3, &keep);
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, 4);
  const Sam2StTensor *t = sam2_safetensors_find (st, "bé😀");
  g_assert_nonnull (t);
  g_assert_cmpint (((const guint8 *) t->data)[0], ==, 1);
  t = sam2_safetensors_find (st, "a");
  g_assert_cmpint (t->ndim, ==, 0);
  g_assert_cmpint (t->numel, ==, 1);
  g_assert_cmpint (sam2_safetensors_find (st, "z")->numel, ==, 0);
  g_assert_cmpstr (sam2_safetensors_nth (st, 2)->name, ==, "a");
  sam2_safetensors_close (st);
  g_bytes_unref (keep);
}

/* ---- reading: errors ------------------------------------------------------------------- */

static void
test_error_missing_file (void)
{
  GError *error = NULL;
  g_assert_null (sam2_safetensors_open ("/nonexistent/sam2/model.safetensors", &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  assert_message_has (error, "/nonexistent/sam2/model.safetensors");
  g_clear_error (&error);

  char *dir = make_tmp_dir ();
  g_assert_null (sam2_safetensors_open (dir, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  assert_message_has (error, dir);
  g_clear_error (&error);
  remove_tree (dir);
  g_free (dir);
}

static void
test_error_empty_file (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "empty.safetensors", NULL);
  write_bytes (path, "", 0);
  GError *error = NULL;
  g_assert_null (sam2_safetensors_open (path, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  g_assert_true (g_str_has_prefix (error->message, path));
  assert_message_has (error, "the file is empty");
  g_error_free (error);
  expect_bytes_error ("", 0, SAM2_ERROR_FORMAT, "the file is empty");
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

static void
test_error_short_file (void)
{
  expect_bytes_error ("\x10\0\0\0\0", 5, SAM2_ERROR_FORMAT, "only 5 bytes");
  expect_bytes_error ("\0\0\0\0\0\0\0", 7, SAM2_ERROR_FORMAT, "only 7 bytes");
}

static void
test_error_header_length (void)
{
  guint8 image[16] = { 0xe8, 0x03 };           /* 1000 */
  memcpy (image + 8, "{}      ", 8);
  expect_bytes_error (image, sizeof image, SAM2_ERROR_FORMAT,
                      "header length 1000 goes past the end of the file (16 bytes)");
  guint64 huge = GUINT64_TO_LE (G_MAXUINT64);
  memcpy (image, &huge, 8);
  expect_bytes_error (image, sizeof image, SAM2_ERROR_FORMAT, "over the 100 MB limit");
  guint64 limit = GUINT64_TO_LE (100000001);
  memcpy (image, &limit, 8);
  expect_bytes_error (image, sizeof image, SAM2_ERROR_FORMAT, "over the 100 MB limit");
  /* a header length exactly at the end of the file leaves an empty header */
  guint64 eight = GUINT64_TO_LE (8);
  memcpy (image, &eight, 8);
  memcpy (image + 8, "        ", 8);
  expect_bytes_error (image, sizeof image, SAM2_ERROR_FORMAT, "the header is empty");
  expect_header_error ("", 0, SAM2_ERROR_FORMAT, "the header is empty");
}

static void
test_error_header_not_utf8 (void)
{
  expect_header_error ("{\"\xff\":1}", 0, SAM2_ERROR_FORMAT, "not UTF-8");
  GBytes *image = make_image ("{\"a\":1}", 0);
  guint8 *copy = g_malloc (g_bytes_get_size (image));
  memcpy (copy, g_bytes_get_data (image, NULL), g_bytes_get_size (image));
  copy[10] = '\0';                             /* a NUL byte inside the header */
  expect_bytes_error (copy, g_bytes_get_size (image), SAM2_ERROR_FORMAT, "not UTF-8");
  g_free (copy);
  g_bytes_unref (image);
}

static void
test_error_header_not_json (void)
{
  static const struct { const char *header; const char *why; } cases[] = {
    { "{hello", "an object key that is not a string" },
    { "{'a':1}", "an object key that is not a string" },
    { "{\"a\":1} {\"b\":2}", "text after the end of the JSON value" },
    { "/* c */ {}", "an unexpected character" },
    { "{\"a\":[01]}", "a number with a leading zero" },
    { "{\"a\":[0x10]}", "a missing ',' or ']' in an array" },
    { "{\"a\":[1,]}", "an unexpected character" },
    { "{\"a\":1,}", "an object key that is not a string" },
    { "{\"a\":[1.]}", "a malformed number" },
    { "{\"a\":[-]}", "a malformed number" },
    { "{\"a\":tru}", "an unexpected character" },
    { "{\"a\" 1}", "a missing ':'" },
    { "{\"a\":\"x", "an unterminated string" },
    { "{\"a\":\"tab\there\"}", "a control character in a string" },
    { "{\"a\":\"\\q\"}", "an invalid escape" },
    { "{\"a\":\"\\u12\"}", "a malformed \\u escape" },
    { "{\"a\\u0000b\":1}", "a \\u0000 (NUL) escape" },
    { "{\"\\ud800\":1}", "an unpaired UTF-16 surrogate" },
    { "{\"\\udc00x\":1}", "an unpaired UTF-16 surrogate" },
    { "{\"\\ud800\\u0041\":1}", "an unpaired UTF-16 surrogate" },
    { "{\"a\":[9223372036854775808]}", "an integer outside the 64-bit range" },
    { "{\"a\":[-9223372036854775809]}", "an integer outside the 64-bit range" },
    { "{\"a\":[99999999999999999999999]}", "an integer outside the 64-bit range" },
    { "{\"a\":1", "a missing ',' or '}' in an object" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *fragment = g_strdup_printf ("the header is not valid JSON: %s", cases[i].why);
    expect_header_error (cases[i].header, 0, SAM2_ERROR_FORMAT, fragment);
    g_free (fragment);
  }
  /* json-glib recurses per level and would overflow the stack on this */
  GString *deep = g_string_new ("{\"a\":");
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  expect_header_error (deep->str, 0, SAM2_ERROR_FORMAT, "nesting deeper than 32 levels");
  g_string_free (deep, TRUE);
}

static void
test_error_header_not_object (void)
{
  expect_header_error ("[1, 2]", 0, SAM2_ERROR_FORMAT, "the header is a JSON array, not an object");
  expect_header_error ("  42 ", 0, SAM2_ERROR_FORMAT, "the header is a JSON scalar, not an object");
  expect_header_error ("\"x\"", 0, SAM2_ERROR_FORMAT, "not an object");
}

static void
test_error_entry (void)
{
  expect_header_error ("{\"x\":[1]}", 0, SAM2_ERROR_FORMAT, "tensor 'x' is described by a JSON array");
  expect_header_error ("{\"x\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, SAM2_ERROR_FORMAT,
                       "tensor 'x' has no \"dtype\" string");
  expect_header_error ("{\"x\":{\"dtype\":4,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_FORMAT, "tensor 'x' has no \"dtype\" string");
}

static void
test_error_dtype (void)
{
  expect_header_error ("{\"x\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_FORMAT, "tensor 'x' has the unknown dtype \"F17\"");
  expect_header_error ("{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_FORMAT, "unknown dtype");
  expect_header_error ("{\"x\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_WEIGHTS, "tensor 'x' has dtype U16, which this library does not read");
  expect_header_error ("{\"x\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_WEIGHTS, "F8_E4M3");
}

static void
test_error_shape (void)
{
  expect_header_error ("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,0]}}", 0,
                       SAM2_ERROR_FORMAT, "tensor 'x' has a negative dimension (-3)");
  static const char *const not_integers[] = { "1.5", "2.0", "\"2\"", "null", "[2]", "1e2", "true" };
  for (size_t i = 0; i < G_N_ELEMENTS (not_integers); i++) {
    char *header = g_strdup_printf ("{\"x\":{\"dtype\":\"U8\",\"shape\":[1,%s],\"data_offsets\":[0,2]}}",
                                    not_integers[i]);
    expect_header_error (header, 2, SAM2_ERROR_FORMAT, "tensor 'x' has a shape entry (index 1) that is "
                         "not an integer");
    g_free (header);
  }
  expect_header_error ("{\"x\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3,
                       SAM2_ERROR_FORMAT, "tensor 'x' has no \"shape\" array");
  expect_header_error ("{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
                       1, SAM2_ERROR_WEIGHTS, "tensor 'x' has 9 dimensions; at most 8");
  /* numel overflows; numel fits but its bytes do not; bytes fit uint64 but not int64 */
  expect_header_error ("{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,0]}}",
                       0, SAM2_ERROR_FORMAT, "tensor 'x' has shape [4294967296, 4294967296, 2], whose "
                       "size in bytes overflows 64 bits");
  expect_header_error ("{\"x\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}",
                       0, SAM2_ERROR_FORMAT, "overflows 64 bits");
  expect_header_error ("{\"x\":{\"dtype\":\"I16\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                       0, SAM2_ERROR_FORMAT, "overflows 64 bits");
  /* zero in the shape makes the rest irrelevant, as in the reference */
  GBytes *keep;
  Sam2Safetensors *st = open_header ("{\"x\":{\"dtype\":\"F64\",\"shape\":[9223372036854775807,0],"
                                     "\"data_offsets\":[0,0]}}", 0, &keep);
  g_assert_cmpint (sam2_safetensors_find (st, "x")->numel, ==, 0);
  sam2_safetensors_close (st);
  g_bytes_unref (keep);
}

static void
test_error_offsets (void)
{
  static const char *const malformed[] = { "", "\"data_offsets\":[0],", "\"data_offsets\":[0,4,8],",
                                           "\"data_offsets\":[-4,0],", "\"data_offsets\":[0,4.0],",
                                           "\"data_offsets\":{\"a\":0},", };
  for (size_t i = 0; i < G_N_ELEMENTS (malformed); i++) {
    char *header = g_strdup_printf ("{\"x\":{%s\"dtype\":\"F32\",\"shape\":[1]}}", malformed[i]);
    expect_header_error (header, 4, SAM2_ERROR_FORMAT, "tensor 'x' has no \"data_offsets\" pair");
    g_free (header);
  }
  expect_header_error ("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
                       SAM2_ERROR_FORMAT, "tensor 'x' has data_offsets [4, 0] that end before they begin");
  expect_header_error ("{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}", 64,
                       SAM2_ERROR_FORMAT, "tensor 'x.weight' has data_offsets [0, 100] past the end of "
                       "the data (64 bytes); the file is truncated or corrupt");
  expect_header_error ("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,9223372036854775807]}}",
                       4, SAM2_ERROR_FORMAT, "past the end of the data (4 bytes)");
  expect_header_error ("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                       SAM2_ERROR_FORMAT, "tensor 'x' has data_offsets [0, 20] (20 bytes) but dtype F32 "
                       "and shape [2, 3] take 24 bytes");
}

static void
test_error_tiling (void)
{
  expect_header_error ("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6,
                       SAM2_ERROR_FORMAT, "tensors 'a' and 'b' overlap in the data section "
                       "(data_offsets [0, 4] and [2, 6])");
  expect_header_error ("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                       SAM2_ERROR_FORMAT, "overlap");
  expect_header_error ("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}", 8,
                       SAM2_ERROR_FORMAT, "tensor 'b' starts at byte 6 of the data section but the tensors before it end at byte 4");
  expect_header_error ("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 9,
                       SAM2_ERROR_FORMAT, "the data section has 9 bytes but the tensors cover only 4");
  expect_header_error ("{}", 3, SAM2_ERROR_FORMAT, "the data section has 3 bytes but the tensors cover only 0");
}

static void
test_error_truncated_data (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "model.safetensors", NULL);
  float values[16] = { 0 };
  Sam2StWriter *w = sam2_st_writer_new ();
  add_f32 (w, "a", 1, (const int64_t[]) { 8 }, values);
  add_f32 (w, "b", 1, (const int64_t[]) { 8 }, values);
  write_ok (w, path);
  sam2_st_writer_free (w);
  GBytes *file = read_bytes (path);
  size_t size = g_bytes_get_size (file);
  write_bytes (path, g_bytes_get_data (file, NULL), size - 5);
  GError *error = NULL;
  g_assert_null (sam2_safetensors_open (path, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_FORMAT);
  char *expected = g_strdup_printf ("%s: tensor 'b' has data_offsets [32, 64] past the end of the data "
                                    "(59 bytes); the file is truncated or corrupt", path);
  g_assert_cmpstr (error->message, ==, expected);
  g_free (expected);
  g_clear_error (&error);
  /* cut inside the header */
  expect_bytes_error (g_bytes_get_data (file, NULL), 20, SAM2_ERROR_FORMAT, "goes past the end of the file");
  g_bytes_unref (file);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

static void
test_error_duplicates (void)
{
  expect_header_error ("{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                       SAM2_ERROR_FORMAT, "tensor 'x' appears twice in the header");
  expect_header_error ("{\"x\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                       SAM2_ERROR_FORMAT, "the header has the key 'dtype' twice in one object");
  expect_header_error ("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, SAM2_ERROR_FORMAT,
                       "the key 'a' twice");
  expect_header_error ("{\"__metadata__\":{},\"__metadata__\":{}}", 0, SAM2_ERROR_FORMAT,
                       "'__metadata__' appears twice");
  /* a hostile name cannot put control characters (terminal escapes) into a message */
  expect_header_error ("{\"a\\u001b[2J\\nb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"a\\u001b[2J\\nb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                       SAM2_ERROR_FORMAT, "tensor 'a\\x1b[2J\\x0ab' appears twice");
}

static void
test_error_metadata (void)
{
  expect_header_error ("{\"__metadata__\":[\"a\"]}", 0, SAM2_ERROR_FORMAT,
                       "\"__metadata__\" is a JSON array, not an object of strings");
  expect_header_error ("{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0, SAM2_ERROR_FORMAT,
                       "\"__metadata__\" entry 'epoch' is a JSON integer, not a string");
  expect_header_error ("{\"__metadata__\":{\"nested\":{}}}", 0, SAM2_ERROR_FORMAT,
                       "entry 'nested' is a JSON object");
  expect_header_error ("{\"__metadata__\":{\"none\":null}}", 0, SAM2_ERROR_FORMAT, "entry 'none'");
}

/* ---- writer: errors and atomicity ------------------------------------------------------ */

static Sam2StWriter *
small_writer (float value, int64_t numel)
{
  float *data = g_new (float, numel);
  for (int64_t i = 0; i < numel; i++)
    data[i] = value;
  Sam2StWriter *w = sam2_st_writer_new ();
  add_f32 (w, "w", 1, &numel, data);
  g_free (data);
  return w;
}

static void
expect_write_error (Sam2StWriter *w, const char *path, const char *fragment)
{
  GError *error = NULL;
  g_assert_false (sam2_st_writer_write (w, path, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  assert_message_has (error, path);
  assert_message_has (error, fragment);
  g_error_free (error);
  g_assert_false (g_file_test (path, G_FILE_TEST_IS_REGULAR));
}

static void
test_write_bad_directories (void)
{
  char *dir = make_tmp_dir ();
  Sam2StWriter *w = small_writer (1.0f, 4);

  char *missing = g_build_filename (dir, "missing", "out.safetensors", NULL);
  expect_write_error (w, missing, "does not exist; create it");
  g_free (missing);

  /* a regular file where a directory should be: fails for root too */
  char *file = g_build_filename (dir, "file", NULL);
  write_bytes (file, "x", 1);
  char *under_file = g_build_filename (file, "out.safetensors", NULL);
  expect_write_error (w, under_file, "is not a directory");
  char *deeper = g_build_filename (file, "sub", "out.safetensors", NULL);
  expect_write_error (w, deeper, "is not a directory");
  g_free (deeper);
  g_free (under_file);
  g_free (file);

  char *subdir = g_build_filename (dir, "subdir", NULL);
  g_assert_cmpint (g_mkdir (subdir, 0700), ==, 0);
  GError *error = NULL;
  g_assert_false (sam2_st_writer_write (w, subdir, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  assert_message_has (error, "it is a directory");
  g_clear_error (&error);
  g_free (subdir);
  g_assert_cmpint (count_entries (dir), ==, 2);

  sam2_st_writer_free (w);
  remove_tree (dir);
  g_free (dir);
}

/* /proc refuses new files even to root; a read-only directory refuses everyone else. */
static void
test_write_unwritable_directory (void)
{
  Sam2StWriter *w = small_writer (1.0f, 4);
  if (g_file_test ("/proc/self", G_FILE_TEST_IS_DIR))
    expect_write_error (w, "/proc/sam2-test.safetensors", "cannot create a file beside it");
  if (geteuid () != 0) {
    char *dir = make_tmp_dir ();
    g_assert_cmpint (g_chmod (dir, 0500), ==, 0);
    char *path = g_build_filename (dir, "out.safetensors", NULL);
    expect_write_error (w, path, "check the directory's permissions");
    g_assert_cmpint (count_entries (dir), ==, 0);
    g_free (path);
    remove_tree (dir);
    g_free (dir);
  }
  sam2_st_writer_free (w);
}

static gboolean
lower_file_size_limit (rlim_t limit, struct rlimit *saved)
{
  struct rlimit lowered;
  if (getrlimit (RLIMIT_FSIZE, saved) != 0)
    return FALSE;
  lowered = *saved;
  lowered.rlim_cur = limit;
  return setrlimit (RLIMIT_FSIZE, &lowered) == 0;
}

/* A write that fails half way (here: past RLIMIT_FSIZE, which binds root as well) leaves neither
 * a temporary file nor a partial file, and an existing destination keeps its old contents. */
static void
test_write_failure_leaves_nothing (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "model.safetensors", NULL);
  Sam2StWriter *small = small_writer (1.0f, 4);
  Sam2StWriter *big = small_writer (2.0f, 64 * 1024);
  void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
  struct rlimit saved;

  if (!lower_file_size_limit (16 * 1024, &saved)) {
    g_test_skip ("cannot lower RLIMIT_FSIZE");
  } else {
    GError *error = NULL;
    g_assert_false (sam2_st_writer_write (big, path, &error));
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
    assert_message_has (error, path);
    assert_message_has (error, "ulimit -f");
    g_clear_error (&error);
    g_assert_cmpint (count_entries (dir), ==, 0);

    write_ok (small, path);
    GBytes *before = read_bytes (path);
    g_assert_false (sam2_st_writer_write (big, path, &error));
    g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
    g_clear_error (&error);
    g_assert_cmpint (count_entries (dir), ==, 1);
    GBytes *after = read_bytes (path);
    g_assert_true (g_bytes_equal (before, after));
    g_bytes_unref (after);
    g_bytes_unref (before);
    g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &saved), ==, 0);
  }
  signal (SIGXFSZ, old_handler);
  sam2_st_writer_free (big);
  sam2_st_writer_free (small);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

/* Replacing a file swaps it whole: a reader of the old file keeps seeing the old tensors. */
static void
test_write_overwrite_atomic (void)
{
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "model.safetensors", NULL);
  GError *error = NULL;
  Sam2StWriter *first = small_writer (1.0f, 1000);
  write_ok (first, path);
  Sam2Safetensors *old = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);

  Sam2StWriter *second = small_writer (2.0f, 10);
  write_ok (second, path);
  Sam2Safetensors *fresh = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  float *old_values = sam2_safetensors_read_f32 (old, "w", 1000, &error);
  g_assert_no_error (error);
  float *new_values = sam2_safetensors_read_f32 (fresh, "w", 10, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (old_values[999], ==, 1.0f);
  g_assert_cmpfloat (new_values[9], ==, 2.0f);
  g_assert_cmpint (count_entries (dir), ==, 1);

  /* the new file is created like any other, not with mkstemp's 0600 */
  mode_t mask = umask (0);
  umask (mask);
  struct stat sb;
  g_assert_cmpint (g_stat (path, &sb), ==, 0);
  g_assert_cmpint (sb.st_mode & 0777, ==, 0666 & ~mask);

  g_free (new_values);
  g_free (old_values);
  sam2_safetensors_close (fresh);
  sam2_safetensors_close (old);
  sam2_st_writer_free (second);
  sam2_st_writer_free (first);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

static void
expect_add_error (Sam2StWriter *w, const char *name, Sam2DType dtype, int ndim, const int64_t *shape,
                  const char *fragment)
{
  static const guint8 data[64];
  GError *error = NULL;
  g_assert_false (sam2_st_writer_add (w, name, dtype, ndim, shape, data, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_INVALID_ARGUMENT);
  assert_message_has (error, fragment);
  g_error_free (error);
}

static void
test_writer_add_errors (void)
{
  Sam2StWriter *w = small_writer (0.0f, 2);
  int64_t shape[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  expect_add_error (w, "w", SAM2_DTYPE_F32, 1, shape, "already added");
  expect_add_error (w, "__metadata__", SAM2_DTYPE_F32, 1, shape, "reserved");
  expect_add_error (w, "bad\xff", SAM2_DTYPE_F32, 1, shape, "not UTF-8");
  expect_add_error (w, "nine", SAM2_DTYPE_F32, 9, shape, "between 0 and 8");
  expect_add_error (w, "neg", SAM2_DTYPE_F32, 2, (const int64_t[]) { 2, -1 }, "negative dimension");
  expect_add_error (w, "huge", SAM2_DTYPE_F64, 2, (const int64_t[]) { G_MAXINT64, 2 }, "overflows");
  sam2_st_writer_set_metadata (w, "k", "first");
  sam2_st_writer_set_metadata (w, "k", "second");
  char *dir = make_tmp_dir ();
  char *path = g_build_filename (dir, "m.safetensors", NULL);
  write_ok (w, path);
  GError *error = NULL;
  Sam2Safetensors *st = sam2_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sam2_safetensors_n_tensors (st), ==, 1);
  g_assert_cmpstr (sam2_safetensors_metadata (st, "k"), ==, "second");
  sam2_safetensors_close (st);
  sam2_st_writer_free (w);
  sam2_st_writer_free (NULL);
  g_free (path);
  remove_tree (dir);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/safetensors/dtype/table", test_dtype_table);
  g_test_add_func ("/safetensors/write/reference-bytes", test_write_reference_bytes);
  g_test_add_func ("/safetensors/round-trip/all-dtypes", test_round_trip_all_dtypes);
  g_test_add_func ("/safetensors/round-trip/names", test_round_trip_names);
  g_test_add_func ("/safetensors/round-trip/fixtures-identical", test_rewrite_fixtures_identical);
  g_test_add_func ("/safetensors/fixture/mini-model", test_fixture_mini_model);
  g_test_add_func ("/safetensors/fixture/preproc", test_fixture_preproc);
  g_test_add_func ("/safetensors/convert/f16", test_convert_f16);
  g_test_add_func ("/safetensors/convert/bf16", test_convert_bf16);
  g_test_add_func ("/safetensors/convert/f64-f32", test_convert_f64_and_f32);
  g_test_add_func ("/safetensors/convert/not-float", test_convert_not_float);
  g_test_add_func ("/safetensors/read/read-f32", test_read_f32);
  g_test_add_func ("/safetensors/read/corner-cases", test_read_corner_cases);
  g_test_add_func ("/safetensors/error/missing-file", test_error_missing_file);
  g_test_add_func ("/safetensors/error/empty-file", test_error_empty_file);
  g_test_add_func ("/safetensors/error/short-file", test_error_short_file);
  g_test_add_func ("/safetensors/error/header-length", test_error_header_length);
  g_test_add_func ("/safetensors/error/header-not-utf8", test_error_header_not_utf8);
  g_test_add_func ("/safetensors/error/header-not-json", test_error_header_not_json);
  g_test_add_func ("/safetensors/error/header-not-object", test_error_header_not_object);
  g_test_add_func ("/safetensors/error/entry", test_error_entry);
  g_test_add_func ("/safetensors/error/dtype", test_error_dtype);
  g_test_add_func ("/safetensors/error/shape", test_error_shape);
  g_test_add_func ("/safetensors/error/offsets", test_error_offsets);
  g_test_add_func ("/safetensors/error/tiling", test_error_tiling);
  g_test_add_func ("/safetensors/error/truncated-data", test_error_truncated_data);
  g_test_add_func ("/safetensors/error/duplicates", test_error_duplicates);
  g_test_add_func ("/safetensors/error/metadata", test_error_metadata);
  g_test_add_func ("/safetensors/write/bad-directories", test_write_bad_directories);
  g_test_add_func ("/safetensors/write/unwritable-directory", test_write_unwritable_directory);
  g_test_add_func ("/safetensors/write/failure-leaves-nothing", test_write_failure_leaves_nothing);
  g_test_add_func ("/safetensors/write/overwrite-atomic", test_write_overwrite_atomic);
  g_test_add_func ("/safetensors/write/add-errors", test_writer_add_errors);

  return g_test_run ();
}
