/* sam2q segment MODEL IMAGE [prompts] [-o DIR] [--json FILE]
 *
 * Prompts, in image pixels, build objects one at a time:
 *   -p X,Y[,LABEL]       add a point to the current object (LABEL 1 = positive, default; 0 = negative)
 *   -b X0,Y0,X1,Y1       set the box of the current object
 *   -n                   start a new object
 * For every object (and every candidate mask with --multimask) a 0/255 PNG mask is written to
 * the output directory, and a JSON summary (boxes, scores, files) goes to --json or stdout. */
#include "backend-args.h"
#include "commands.h"
#include "image-io.h"
#include "overlay.h"
#include "sam2.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  GArray *points;              /* Sam2Point */
  gboolean has_box;
  float box[4];
} ObjectPrompt;

typedef struct {
  GPtrArray *objects;          /* ObjectPrompt */
  GError *error;
} PromptParser;

static void
object_free (gpointer p)
{
  ObjectPrompt *o = p;
  g_array_unref (o->points);
  g_free (o);
}

static ObjectPrompt *
current_object (PromptParser *pp)
{
  if (pp->objects->len == 0) {
    ObjectPrompt *o = g_new0 (ObjectPrompt, 1);
    o->points = g_array_new (FALSE, FALSE, sizeof (Sam2Point));
    g_ptr_array_add (pp->objects, o);
  }
  return pp->objects->pdata[pp->objects->len - 1];
}

/* "a,b,c" -> up to `max` floats; returns how many, -1 on junk. */
static int
parse_floats (const char *text, float *out, int max)
{
  char **parts = g_strsplit (text, ",", -1);
  int n = 0;
  for (; parts[n] != NULL; n++) {
    char *end = NULL;
    if (n >= max) {
      n = -1;
      break;
    }
    out[n] = strtof (parts[n], &end);
    if (end == parts[n] || *end != '\0') {
      n = -1;
      break;
    }
  }
  g_strfreev (parts);
  return n;
}

static gboolean
on_point (const char *name, const char *value, gpointer data, GError **error)
{
  PromptParser *pp = data;
  float v[3] = { 0, 0, 1 };
  int n = parse_floats (value, v, 3);
  if (n != 2 && n != 3) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--point takes X,Y or X,Y,LABEL in image pixels, not '%s'", value);
    return FALSE;
  }
  /* a label is a class, not a weight: 0.7 is not "mostly positive" */
  if (n == 3 && v[2] != 0.0f && v[2] != 1.0f) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--point '%s': LABEL is 1 (a positive click) or 0 (a negative one)", value);
    return FALSE;
  }
  Sam2Point p = { v[0], v[1], v[2] == 0.0f ? SAM2_LABEL_NEGATIVE : SAM2_LABEL_POSITIVE };
  g_array_append_val (current_object (pp)->points, p);
  return TRUE;
}

static gboolean
on_box (const char *name, const char *value, gpointer data, GError **error)
{
  PromptParser *pp = data;
  ObjectPrompt *o = current_object (pp);
  if (o->has_box) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--box '%s': this object has a box already (an object takes one box); put "
                 "--next-object before a box for another object", value);
    return FALSE;
  }
  if (parse_floats (value, o->box, 4) != 4) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--box takes X0,Y0,X1,Y1 in image pixels, not '%s'", value);
    return FALSE;
  }
  o->has_box = TRUE;
  return TRUE;
}

static gboolean
on_next (const char *name, const char *value, gpointer data, GError **error)
{
  PromptParser *pp = data;
  if (pp->objects->len == 0) {
    /* it did nothing there: the first object starts with the first prompt */
    g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                         "--next-object goes between objects: give the first object's --point "
                         "or --box before it");
    return FALSE;
  }
  ObjectPrompt *o = g_new0 (ObjectPrompt, 1);
  o->points = g_array_new (FALSE, FALSE, sizeof (Sam2Point));
  g_ptr_array_add (pp->objects, o);
  return TRUE;
}

/* NaN compares false with every logit and infinity is above them all: either gave empty masks
 * and exit 0. */
static gboolean
threshold_ok (double threshold, GError **error)
{
  if (isfinite (threshold))
    return TRUE;
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "--threshold %g: give a finite number (a mask logit; 0 by default)", threshold);
  return FALSE;
}

/* -n at the end or twice in a row leaves an object with nothing to segment; found with the
 * other usage errors, not after the model has encoded the image. */
static gboolean
every_object_prompted (const PromptParser *pp, GError **error)
{
  if (pp->objects->len == 0) {
    g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                         "no prompt given: add at least one --point or --box");
    return FALSE;
  }
  for (guint i = 0; i < pp->objects->len; i++) {
    const ObjectPrompt *o = pp->objects->pdata[i];
    if (o->points->len == 0 && !o->has_box) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "object %u has no --point or --box: --next-object (-n) goes between two "
                   "objects' prompts, not at the end or twice in a row", i);
      return FALSE;
    }
  }
  return TRUE;
}

static char *
image_stem (const char *path)
{
  char *base = g_path_get_basename (path);
  char *dot = strrchr (base, '.');
  if (dot != NULL && dot != base)
    *dot = '\0';
  return base;
}

/* A score as JSON: json-glib writes a NaN or an infinity as "nan.0" / "inf.0", which no JSON
 * reader takes; null says there is no number. */
static void
add_score (JsonBuilder *b, double v)
{
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

static JsonNode *
result_json (const Sam2Result *r, const char *image, char **files, double encode_ms,
             double decode_ms)
{
  JsonBuilder *b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "image");
  json_builder_add_string_value (b, image);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, r->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, r->height);
  json_builder_set_member_name (b, "encoder_ms");
  json_builder_add_double_value (b, encode_ms);
  json_builder_set_member_name (b, "decoder_ms");
  json_builder_add_double_value (b, decode_ms);
  json_builder_set_member_name (b, "objects");
  json_builder_begin_array (b);
  for (int o = 0; o < r->n_objects; o++) {
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "id");
    json_builder_add_int_value (b, o);
    json_builder_set_member_name (b, "object_score");
    add_score (b, r->object_scores[o]);
    json_builder_set_member_name (b, "masks");
    json_builder_begin_array (b);
    for (int k = 0; k < r->n_masks; k++) {
      const int i = o * r->n_masks + k;
      const Sam2Box *bx = &r->boxes[i];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "file");
      char *file = g_filename_display_name (files[i]);    /* JSON strings are UTF-8 */
      json_builder_add_string_value (b, file);
      g_free (file);
      json_builder_set_member_name (b, "iou_score");
      add_score (b, r->iou_scores[i]);
      json_builder_set_member_name (b, "box");
      if (bx->x1 < bx->x0) {
        json_builder_add_null_value (b);
      } else {
        json_builder_begin_array (b);
        json_builder_add_int_value (b, bx->x0);
        json_builder_add_int_value (b, bx->y0);
        json_builder_add_int_value (b, bx->x1);
        json_builder_add_int_value (b, bx->y1);
        json_builder_end_array (b);
      }
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  JsonNode *root = json_builder_get_root (b);
  g_object_unref (b);
  return root;
}

/* A run's output files (masks, overlay, a JSON summary file), each written whole under a
 * hidden temporary name beside its destination and renamed into place only when all of them are
 * written: a run that fails on the way leaves the files of an earlier run with the same names as
 * they were (written in place, a re-run's masks replaced them one at a time, and a failure's
 * clean-up then deleted them). */
typedef struct {
  GPtrArray *temps;            /* char *: written, not yet renamed (NULL once renamed) */
  GPtrArray *finals;           /* char *: the destination of each */
} StagedOutputs;

static void
staged_init (StagedOutputs *s)
{
  s->temps = g_ptr_array_new_with_free_func (g_free);
  s->finals = g_ptr_array_new_with_free_func (g_free);
}

/* Takes `temp`. */
static void
staged_add (StagedOutputs *s, char *temp, const char *final)
{
  g_ptr_array_add (s->temps, temp);
  g_ptr_array_add (s->finals, g_strdup (final));
}

static void
set_output_error (GError **error, int code, const char *path, const char *reason)
{
  char *display = g_filename_display_name (path);
  g_set_error (error, G_FILE_ERROR, code, "cannot write %s: %s; choose another output path",
               display, reason);
  g_free (display);
}

/* Every file to its place. A destination that is a directory fails before anything is renamed;
 * after that, only an I/O error can stop a rename within one directory. */
static gboolean
staged_commit (StagedOutputs *s, GError **error)
{
  for (guint i = 0; i < s->finals->len; i++)
    if (g_file_test (s->finals->pdata[i], G_FILE_TEST_IS_DIR)) {
      set_output_error (error, G_FILE_ERROR_ISDIR, s->finals->pdata[i], "it is a directory");
      return FALSE;
    }
  for (guint i = 0; i < s->temps->len; i++) {
    if (g_rename (s->temps->pdata[i], s->finals->pdata[i]) != 0) {
      const int err = errno;
      set_output_error (error, g_file_error_from_errno (err), s->finals->pdata[i],
                        g_strerror (err));
      return FALSE;
    }
    g_clear_pointer (&s->temps->pdata[i], g_free);
  }
  return TRUE;
}

/* Removes what was not renamed into place. */
static void
staged_discard (StagedOutputs *s)
{
  for (guint i = 0; i < s->temps->len; i++)
    if (s->temps->pdata[i] != NULL) {
      g_unlink (s->temps->pdata[i]);
      g_clear_pointer (&s->temps->pdata[i], g_free);
    }
}

static void
staged_free (StagedOutputs *s)
{
  staged_discard (s);
  g_ptr_array_unref (s->temps);
  g_ptr_array_unref (s->finals);
}

/* The masks per object of a --multimask result (Sam2Result.n_masks), known before it runs. */
#define MULTIMASK_CANDIDATES 3

/* DIR/STEM-objN[-maskK].png: the file of mask `i` in the result's order. */
static char *
mask_path (const char *dir, const char *stem, int n_masks, int i)
{
  char *name = n_masks > 1 ? g_strdup_printf ("%s-obj%d-mask%d.png", stem, i / n_masks, i % n_masks)
                           : g_strdup_printf ("%s-obj%d.png", stem, i);
  char *path = g_build_filename (dir, name, NULL);
  g_free (name);
  return path;
}

/* Every mask (all candidates with --multimask) as a 0/255 PNG, staged under its final name
 * (mask_path); the masks are the first entries of `s`, in the result's order. */
static gboolean
stage_masks (const Sam2Result *r, const char *dir, const char *stem, StagedOutputs *s,
             GError **error)
{
  const size_t plane = (size_t) r->width * r->height;
  const int n = r->n_objects * r->n_masks;
  guint8 *grey = g_malloc (plane);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n; i++) {
    const guint8 *mask = r->masks + (size_t) i * plane;
    for (size_t p = 0; p < plane; p++)
      grey[p] = mask[p] ? 255 : 0;
    char *path = mask_path (dir, stem, r->n_masks, i);
    char *temp = sam2q_png_write_temp (path, grey, r->width, r->height, r->width, 1, error);
    ok = temp != NULL;
    if (ok)
      staged_add (s, temp, path);
    g_free (path);
  }
  g_free (grey);
  return ok;
}

/* A FILE option's directory must exist (or be the --output-dir, made before anything is
 * written) and take a new file: checked before the model runs, so that a wrong path fails at
 * once and not after the masks are written. */
static gboolean
check_file_destination (const char *option, const char *path, const char *out_dir,
                        GError **error)
{
  char *dir = g_path_get_dirname (path), *hint = g_strdup_printf ("choose another --%s", option);
  char *dir_abs = g_canonicalize_filename (dir, NULL);
  char *out_abs = out_dir != NULL ? g_canonicalize_filename (out_dir, NULL) : NULL;
  const gboolean in_out_dir = g_strcmp0 (dir_abs, out_abs) == 0;
  g_free (dir_abs);
  g_free (out_abs);
  gboolean ok = FALSE;
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_ISDIR, "--%s %s is a directory; %s",
                 option, path, hint);
  else if (!in_out_dir && !g_file_test (dir, G_FILE_TEST_IS_DIR))
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "--%s %s: the directory %s does not exist; create it or %s", option, path, dir,
                 hint);
  else
    ok = sam2_check_output_dir (dir, option, hint, error);
  g_free (hint);
  g_free (dir);
  return ok;
}

/* A file the run writes: `option` names it on the command line (NULL for a mask). */
typedef struct {
  const char *option;
  char *what;
  char *path;
} Output;

static void
output_clear (gpointer p)
{
  Output *o = p;
  g_free (o->what);
  g_free (o->path);
}

/* Where a file of `path` lands: its directory with symbolic links resolved (realpath), then its
 * name; the absolute form alone where the directory does not exist yet (the --output-dir, made
 * later, whose path then is the one every mask uses). A link named as the file itself is
 * replaced by the rename, not written through, so the name is kept as it is. */
static char *
output_destination (const char *path)
{
  char *abs = g_canonicalize_filename (path, NULL);
  char *dir = g_path_get_dirname (abs), *base = g_path_get_basename (abs);
  char *real = realpath (dir, NULL);
  char *dest = real != NULL ? g_build_filename (real, base, NULL) : g_strdup (abs);
  free (real);
  g_free (dir);
  g_free (base);
  g_free (abs);
  return dest;
}

/* Two outputs with one path: the later rename replaced the earlier file and the run still
 * exited 0 (a --json named like a mask left JSON in the mask's place). Compared where they land
 * (output_destination) before the model runs. Masks differ from one another, so the later of
 * two is an option. */
static gboolean
outputs_distinct (const GArray *outputs, GError **error)
{
  GHashTable *seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean ok = TRUE;
  for (guint i = 0; ok && i < outputs->len; i++) {
    const Output *o = &g_array_index (outputs, Output, i);
    char *abs = output_destination (o->path);
    const Output *earlier = g_hash_table_lookup (seen, abs);
    if (earlier != NULL) {
      char *display = g_filename_display_name (o->path);
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "%s %s is also %s, which it would replace; choose another %s", o->option,
                   display, earlier->what, o->option);
      g_free (display);
      ok = FALSE;
    }
    g_hash_table_insert (seen, abs, (gpointer) o);
  }
  g_hash_table_unref (seen);
  return ok;
}

static void
add_output (GArray *outputs, const char *option, char *what, char *path)
{
  const Output o = { option, what, path };
  g_array_append_val (outputs, o);
}

/* Every file the run will write (masks, --overlay, --json), checked by outputs_distinct. */
static gboolean
check_outputs_distinct (const char *dir, const char *stem, int n_objects, gboolean multimask,
                        const char *overlay_path, const char *json_path, GError **error)
{
  GArray *outputs = g_array_new (FALSE, FALSE, sizeof (Output));
  g_array_set_clear_func (outputs, output_clear);
  const int n_masks = multimask ? MULTIMASK_CANDIDATES : 1;
  for (int i = 0; i < n_objects * n_masks; i++)
    add_output (outputs, NULL,
                n_masks > 1 ? g_strdup_printf ("the file of object %d's mask %d", i / n_masks,
                                               i % n_masks)
                            : g_strdup_printf ("the file of object %d's mask", i),
                mask_path (dir, stem, n_masks, i));
  if (overlay_path != NULL)
    add_output (outputs, "--overlay", g_strdup ("the --overlay image"), g_strdup (overlay_path));
  if (json_path != NULL)
    add_output (outputs, "--json", g_strdup ("the --json file"), g_strdup (json_path));
  const gboolean ok = outputs_distinct (outputs, error);
  g_array_unref (outputs);
  return ok;
}

/* `text` under a new hidden temporary name beside `path`, flushed to the disk, staged. */
static gboolean
stage_text (const char *path, const char *text, StagedOutputs *s, GError **error)
{
  char *temp = sam2q_text_write_temp (path, text, error);
  if (temp != NULL)
    staged_add (s, temp, path);
  return temp != NULL;
}

/* A device or pipe given as the JSON path (/dev/null, /dev/stdout, a fifo) is written in place:
 * a rename would put a file where it was (run as root, --json /dev/null replaced the device). */
static gboolean
json_path_is_special (const char *path)
{
  return g_file_test (path, G_FILE_TEST_EXISTS) && !g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

static gboolean
write_in_place (const char *path, const char *text, GError **error)
{
  FILE *f = fopen (path, "w");
  gboolean ok = f != NULL && fputs (text, f) >= 0;
  int err = errno;
  if (f != NULL && fclose (f) != 0 && ok) {
    ok = FALSE;
    err = errno;
  }
  if (!ok)
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err), "cannot write %s: %s",
                 path, g_strerror (err));
  return ok;
}

/* The first (or only) mask of every object drawn over the image. */
static gboolean
stage_overlay (const Sam2Result *r, const Sam2qImage *image, const char *path, StagedOutputs *s,
               GError **error)
{
  const size_t plane = (size_t) r->width * r->height;
  guint8 *canvas = g_memdup2 (image->pixels, (size_t) image->stride * image->height);
  for (int o = 0; o < r->n_objects; o++) {
    const int i = o * r->n_masks;
    sam2_overlay_draw_mask (canvas, image->width, image->height, image->stride,
                            SAM2_PIXEL_FORMAT_RGB, r->masks + (size_t) i * plane, r->width,
                            &r->boxes[i], o, NULL);
  }
  char *temp = sam2q_png_write_temp (path, canvas, image->width, image->height, image->stride,
                                     3, error);
  g_free (canvas);
  if (temp != NULL)
    staged_add (s, temp, path);
  return temp != NULL;
}

int
sam2q_cmd_segment (int argc, char **argv)
{
  PromptParser pp = { g_ptr_array_new_with_free_func (object_free), NULL };
  char *out_dir = NULL, *json_path = NULL, *overlay_path = NULL;
  gboolean multimask = FALSE;
  double threshold = 0.0;
  int threads = SAM2Q_UNSET;
  Sam2qBackendArgs bargs = { NULL, NULL };
  Sam2SessionOptions sopts;
  GOptionEntry entries[] = {
    { "point", 'p', 0, G_OPTION_ARG_CALLBACK, on_point,
      "add a point to the current object (label 1 positive, 0 negative)", "X,Y[,LABEL]" },
    { "box", 'b', 0, G_OPTION_ARG_CALLBACK, on_box, "set the box of the current object",
      "X0,Y0,X1,Y1" },
    { "next-object", 'n', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, on_next,
      "start a new object", NULL },
    { "multimask", 'm', 0, G_OPTION_ARG_NONE, &multimask,
      "write all three candidate masks per object", NULL },
    { "threshold", 0, 0, G_OPTION_ARG_DOUBLE, &threshold, "mask logit threshold (default 0)", "T" },
    { "output-dir", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir,
      "directory for the mask PNGs (default: current directory)", "DIR" },
    { "json", 'j', 0, G_OPTION_ARG_FILENAME, &json_path,
      "write the JSON summary here instead of stdout", "FILE" },
    { "overlay", 0, 0, G_OPTION_ARG_FILENAME, &overlay_path,
      "also write the image with the masks, boxes and ids drawn on it (PNG)", "FILE" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "threads (default: one per core)", "N" },
    SAM2Q_BACKEND_ENTRIES (bargs),
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("MODEL IMAGE - segment an image from prompts");
  GOptionGroup *group = g_option_group_new ("segment", "", "", &pp, NULL);
  g_option_group_add_entries (group, entries);
  g_option_context_set_main_group (ctx, group);
  GError *error = NULL;
  int rc = 1;
  Sam2Model *model = NULL;
  Sam2Session *session = NULL;
  Sam2qImage *image = NULL;
  Sam2Prompt *prompts = NULL;
  StagedOutputs staged;
  staged_init (&staged);
  char *stem = NULL, *created = NULL;

  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 3
      || !every_object_prompted (&pp, &error) || !threshold_ok (threshold, &error)) {
    if (error == NULL)
      g_set_error_literal (&error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                           "expected MODEL and IMAGE (see sam2q segment --help)");
    rc = SAM2Q_EXIT_USAGE;
    sam2q_fail ("segment", error);
    goto out;
  }
  if (!sam2q_set_threads (threads, &error))
    goto fail;
  if (!sam2q_backend_args_resolve (&bargs, &sopts, &error))
    goto fail;
  /* the current directory too, where the masks go by default */
  stem = image_stem (argv[2]);
  if (!sam2_check_output_dir (out_dir ? out_dir : ".", "output", "choose another --output-dir",
                              &error)
      || (json_path != NULL && !check_file_destination ("json", json_path, out_dir, &error))
      || (overlay_path != NULL
          && !check_file_destination ("overlay", overlay_path, out_dir, &error))
      || !check_outputs_distinct (out_dir ? out_dir : ".", stem, (int) pp.objects->len, multimask,
                                  overlay_path, json_path, &error))
    goto fail;
  if ((image = sam2q_image_load (argv[2], &error)) == NULL)
    goto fail;
  if ((model = sam2_model_load (argv[1], &error)) == NULL)
    goto fail;
  if ((session = sam2_session_new_full (model, &sopts, &error)) == NULL)
    goto fail;

  gint64 t0 = g_get_monotonic_time ();
  if (!sam2_session_set_image (session, image->pixels, image->width, image->height, image->stride,
                               SAM2_PIXEL_FORMAT_RGB, &error))
    goto fail;
  gint64 t1 = g_get_monotonic_time ();
  prompts = g_new0 (Sam2Prompt, pp.objects->len);
  for (guint o = 0; o < pp.objects->len; o++) {
    ObjectPrompt *op = pp.objects->pdata[o];
    prompts[o].points = (const Sam2Point *) op->points->data;
    prompts[o].n_points = (int) op->points->len;
    prompts[o].has_box = op->has_box;
    memcpy (prompts[o].box, op->box, sizeof op->box);
  }
  Sam2PredictOptions opts = SAM2_PREDICT_OPTIONS_INIT;
  opts.multimask = multimask;
  opts.mask_threshold = (float) threshold;
  const Sam2Result *r = sam2_session_predict (session, prompts, (int) pp.objects->len, &opts,
                                              &error);
  gint64 t2 = g_get_monotonic_time ();
  if (r == NULL)
    goto fail;

  if (out_dir != NULL && !sam2_output_dir_create (out_dir, &created, &error))
    goto fail;
  if (!stage_masks (r, out_dir ? out_dir : ".", stem, &staged, &error))
    goto fail;
  if (overlay_path != NULL && !stage_overlay (r, image, overlay_path, &staged, &error))
    goto fail;
  /* JSON strings are UTF-8; a file name need not be */
  char *image_name = g_filename_display_name (argv[2]);
  JsonNode *root = result_json (r, image_name, (char **) staged.finals->pdata, (t1 - t0) / 1e3,
                                (t2 - t1) / 1e3);
  g_free (image_name);
  json_object_set_string_member (json_node_get_object (root), "backend",
                                 sam2_session_describe_backend (session));
  char *text = json_to_string (root, TRUE);
  json_node_unref (root);
  /* A summary file is staged with the rest; stdout, a device or a pipe cannot be, so it is
   * written before the files are put in place: if it fails, nothing has changed. */
  gboolean written;
  if (json_path == NULL)
    written = sam2q_print_json (text, &error);
  else if (json_path_is_special (json_path))
    written = write_in_place (json_path, text, &error);
  else
    written = stage_text (json_path, text, &staged, &error);
  g_free (text);
  if (!written || !staged_commit (&staged, &error))
    goto fail;
  rc = 0;
  goto out;

fail:
  staged_discard (&staged);
  sam2_output_dir_remove_created (out_dir, created);
  rc = sam2q_fail ("segment", error);
out:
  g_clear_error (&error);
  staged_free (&staged);
  g_free (stem);
  g_free (created);
  g_free (prompts);
  sam2_session_free (session);
  sam2_model_unref (model);
  sam2q_image_free (image);
  g_ptr_array_unref (pp.objects);
  g_option_context_free (ctx);
  g_free (out_dir);
  g_free (json_path);
  g_free (overlay_path);
  sam2q_backend_args_clear (&bargs);
  return rc;
}
