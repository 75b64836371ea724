/* GStreamer SAM2 plugin
 *
 * gstsam2prompts.c: see gstsam2prompts.h. Errors quote the offending text and give its
 * position, because these strings are typed on gst-launch command lines.
 */
#include "gstsam2prompts.h"

#include <math.h>
#include <string.h>

G_DEFINE_QUARK (gst-sam2-prompts-error-quark, gst_sam2_prompts_error);

typedef struct
{
  gsize start, len;             /* into the whole string */
} Span;

static gboolean
span_is_blank (const gchar * s, Span sp)
{
  for (gsize i = 0; i < sp.len; i++)
    if (!g_ascii_isspace (s[sp.start + i]))
      return FALSE;
  return TRUE;
}

static Span
span_trim (const gchar * s, Span sp)
{
  while (sp.len > 0 && g_ascii_isspace (s[sp.start])) {
    sp.start++;
    sp.len--;
  }
  while (sp.len > 0 && g_ascii_isspace (s[sp.start + sp.len - 1]))
    sp.len--;
  return sp;
}

/* The ';'-separated entries; a blank string has none and a blank last entry (a trailing ';')
 * is dropped. */
static GArray *
split_objects (const gchar * s)
{
  GArray *spans = g_array_new (FALSE, FALSE, sizeof (Span));
  gsize n = s != NULL ? strlen (s) : 0, start = 0;

  for (gsize i = 0; i <= n; i++) {
    if (i == n || s[i] == ';') {
      Span sp = { start, i - start };
      g_array_append_val (spans, sp);
      start = i + 1;
    }
  }
  if (spans->len > 0 && span_is_blank (s, g_array_index (spans, Span, spans->len - 1)))
    g_array_set_size (spans, spans->len - 1);
  return spans;
}

static gboolean
all_blank (const gchar * s, GArray * spans)
{
  for (guint i = 0; i < spans->len; i++)
    if (!span_is_blank (s, g_array_index (spans, Span, i)))
      return FALSE;
  return TRUE;
}

/* Splits `sp` at `sep` into at most `max` fields (one more signals too many). */
static gint
split_fields (const gchar * s, Span sp, gchar sep, Span * fields, gint max)
{
  gint n = 0;
  gsize start = sp.start, end = sp.start + sp.len;

  for (gsize i = sp.start; i <= end; i++) {
    if (i == end || s[i] == sep) {
      if (n == max + 1)
        return n;
      fields[n].start = start;
      fields[n].len = i - start;
      n++;
      start = i + 1;
    }
  }
  return n;
}

static gboolean
parse_number (const gchar * s, Span sp, gdouble * value)
{
  gchar buf[64];
  gchar *end = NULL;
  gdouble v;

  sp = span_trim (s, sp);
  if (sp.len == 0 || sp.len >= sizeof buf)
    return FALSE;
  memcpy (buf, s + sp.start, sp.len);
  buf[sp.len] = '\0';
  v = g_ascii_strtod (buf, &end);
  /* prompts are stored as floats: a value beyond their range would become infinite */
  if (end != buf + sp.len || !isfinite (v) || fabs (v) > G_MAXFLOAT)
    return FALSE;
  *value = v;
  return TRUE;
}

static void
set_error (GError ** error, gint code, const gchar * what, const gchar * s, Span sp,
    const gchar * fmt, ...) G_GNUC_PRINTF (6, 7);

static void
set_error (GError ** error, gint code, const gchar * what, const gchar * s, Span sp,
    const gchar * fmt, ...)
{
  va_list args;
  gchar *msg, *quoted;

  va_start (args, fmt);
  msg = g_strdup_vprintf (fmt, args);
  va_end (args);
  quoted = g_strndup (s + sp.start, sp.len);
  g_set_error (error, GST_SAM2_PROMPTS_ERROR, code, "%s \"%s\": %s \"%s\" (at character %"
      G_GSIZE_FORMAT ")", what, s, msg, quoted, sp.start + 1);
  g_free (quoted);
  g_free (msg);
}

/* Parses one point "x,y[,label]". */
static gboolean
parse_point (const gchar * s, Span tok, gint object, gint index, Sam2Point * pt,
    GError ** error)
{
  Span f[4];
  gint n = split_fields (s, tok, ',', f, 3);
  gdouble x, y, label = 1;
  gboolean empty_field = FALSE;

  for (gint i = 0; i < n && i < 3; i++)
    empty_field |= f[i].len == 0;
  if (n < 2 || n > 3 || empty_field) {
    set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "points", s, tok,
        "object %d, point %d: a point is x,y or x,y,label (no spaces inside), not", object,
        index);
    return FALSE;
  }
  for (gint i = 0; i < n; i++) {
    gdouble *dst = i == 0 ? &x : i == 1 ? &y : &label;
    if (!parse_number (s, f[i], dst)) {
      set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "points", s, f[i],
          "object %d, point %d: expected a number, found", object, index);
      return FALSE;
    }
  }
  if (x < 0 || y < 0) {
    set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "points", s, tok,
        "object %d, point %d: coordinates are frame pixels and cannot be negative:", object,
        index);
    return FALSE;
  }
  if (label != 0 && label != 1) {
    set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "points", s, f[2],
        "object %d, point %d: the label is 1 (positive) or 0 (negative), not", object, index);
    return FALSE;
  }
  pt->x = (float) x;
  pt->y = (float) y;
  pt->label = label == 1 ? SAM2_LABEL_POSITIVE : SAM2_LABEL_NEGATIVE;
  return TRUE;
}

static gboolean
parse_box (const gchar * s, Span entry, gint object, Sam2Prompt * p, GError ** error)
{
  Span f[5];
  gint n = split_fields (s, entry, ',', f, 4);
  gdouble v[4];

  if (n != 4) {
    set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "boxes", s, span_trim (s, entry),
        "object %d: a box is x0,y0,x1,y1 (one per object, objects separated by ';'), not",
        object);
    return FALSE;
  }
  for (gint i = 0; i < 4; i++) {
    if (!parse_number (s, f[i], &v[i])) {
      set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "boxes", s, span_trim (s, f[i]),
          "object %d: expected a number, found", object);
      return FALSE;
    }
  }
  if (v[0] < 0 || v[1] < 0 || v[0] > v[2] || v[1] > v[3]) {
    set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "boxes", s, span_trim (s, entry),
        "object %d: a box is x0,y0,x1,y1 with 0 <= x0 <= x1 and 0 <= y0 <= y1, not", object);
    return FALSE;
  }
  p->has_box = TRUE;
  for (gint i = 0; i < 4; i++)
    p->box[i] = (float) v[i];
  return TRUE;
}

/* The whitespace-separated tokens of `entry`. */
static GArray *
split_tokens (const gchar * s, Span entry)
{
  GArray *tokens = g_array_new (FALSE, FALSE, sizeof (Span));
  gsize i = entry.start, end = entry.start + entry.len;

  while (i < end) {
    while (i < end && g_ascii_isspace (s[i]))
      i++;
    if (i == end)
      break;
    Span t = { i, 0 };
    while (i < end && !g_ascii_isspace (s[i]))
      i++;
    t.len = i - t.start;
    g_array_append_val (tokens, t);
  }
  return tokens;
}

GstSam2Prompts *
gst_sam2_prompts_parse (const gchar * points, const gchar * boxes, GError ** error)
{
  GArray *pe = split_objects (points), *be = split_objects (boxes);
  GstSam2Prompts *p = g_new0 (GstSam2Prompts, 1);
  GArray *all_points = g_array_new (FALSE, FALSE, sizeof (Sam2Point));
  gint *first = NULL;
  gboolean ok = TRUE;

  p->n_objects = MAX (pe->len, be->len);
  /* only blanks and separators ("; ;"): no prompts, like an empty string */
  if (all_blank (points, pe) && all_blank (boxes, be))
    p->n_objects = 0;
  p->prompts = g_new0 (Sam2Prompt, MAX (p->n_objects, 1));
  first = g_new0 (gint, MAX (p->n_objects, 1));

  for (gint o = 0; ok && o < p->n_objects; o++) {
    Sam2Prompt *pr = &p->prompts[o];
    first[o] = all_points->len;
    if ((guint) o < pe->len) {
      GArray *tokens = split_tokens (points, g_array_index (pe, Span, o));
      if (tokens->len > SAM2_MAX_POINTS_PER_OBJECT) {
        set_error (error, GST_SAM2_PROMPTS_ERROR_SYNTAX, "points", points,
            span_trim (points, g_array_index (pe, Span, o)),
            "object %d has %u points; an object takes at most %d:", o, tokens->len,
            SAM2_MAX_POINTS_PER_OBJECT);
        ok = FALSE;
      }
      for (guint t = 0; ok && t < tokens->len; t++) {
        Sam2Point pt;
        ok = parse_point (points, g_array_index (tokens, Span, t), o, (gint) t, &pt, error);
        if (ok)
          g_array_append_val (all_points, pt);
      }
      pr->n_points = (gint) tokens->len;
      g_array_unref (tokens);
    }
    if (ok && (guint) o < be->len && !span_is_blank (boxes, g_array_index (be, Span, o)))
      ok = parse_box (boxes, g_array_index (be, Span, o), o, pr, error);
    if (ok && pr->n_points == 0 && !pr->has_box) {
      g_set_error (error, GST_SAM2_PROMPTS_ERROR, GST_SAM2_PROMPTS_ERROR_SYNTAX,
          "object %d has neither points nor a box (points \"%s\", boxes \"%s\"): remove the "
          "empty ';' entry or give it a point or a box", o, points ? points : "",
          boxes ? boxes : "");
      ok = FALSE;
    }
  }

  if (ok) {
    p->points = (Sam2Point *) g_array_free (all_points, FALSE);
    for (gint o = 0; o < p->n_objects; o++)
      p->prompts[o].points = p->prompts[o].n_points > 0 ? p->points + first[o] : NULL;
  } else {
    g_array_unref (all_points);
    gst_sam2_prompts_free (p);
    p = NULL;
  }
  g_free (first);
  g_array_unref (pe);
  g_array_unref (be);
  return p;
}

void
gst_sam2_prompts_free (GstSam2Prompts * prompts)
{
  if (prompts == NULL)
    return;
  g_free (prompts->prompts);
  g_free (prompts->points);
  gst_sam2_prompts_free (prompts->base);
  g_free (prompts);
}

GstSam2Prompts *
gst_sam2_prompts_copy (const GstSam2Prompts * prompts)
{
  GstSam2Prompts *c;
  gint n_points = 0;

  if (prompts == NULL)
    return NULL;
  c = g_new0 (GstSam2Prompts, 1);
  c->n_objects = prompts->n_objects;
  c->prompts = g_new0 (Sam2Prompt, MAX (c->n_objects, 1));
  for (gint o = 0; o < c->n_objects; o++)
    n_points += prompts->prompts[o].n_points;
  c->points = g_new0 (Sam2Point, MAX (n_points, 1));
  n_points = 0;
  for (gint o = 0; o < c->n_objects; o++) {
    const Sam2Prompt *src = &prompts->prompts[o];
    c->prompts[o] = *src;
    c->prompts[o].points = src->n_points > 0 ? c->points + n_points : NULL;
    if (src->n_points > 0)
      memcpy (c->points + n_points, src->points, sizeof (Sam2Point) * src->n_points);
    n_points += src->n_points;
  }
  c->base = gst_sam2_prompts_copy (prompts->base);
  c->base_width = prompts->base_width;
  c->base_height = prompts->base_height;
  return c;
}

gboolean
gst_sam2_prompts_check_frame (const GstSam2Prompts * prompts, gint width, gint height,
    GError ** error)
{
  for (gint o = 0; prompts != NULL && o < prompts->n_objects; o++) {
    const Sam2Prompt *p = &prompts->prompts[o];
    for (gint i = 0; i < p->n_points; i++) {
      const Sam2Point *pt = &p->points[i];
      if (pt->x >= width || pt->y >= height) {
        g_set_error (error, GST_SAM2_PROMPTS_ERROR, GST_SAM2_PROMPTS_ERROR_OUTSIDE,
            "object %d, point %d at (%g, %g) lies outside the %dx%d frame; points are "
            "frame pixels, 0 <= x < %d and 0 <= y < %d", o, i, pt->x, pt->y, width, height,
            width, height);
        return FALSE;
      }
    }
    if (p->has_box && (p->box[0] >= width || p->box[1] >= height)) {
      g_set_error (error, GST_SAM2_PROMPTS_ERROR, GST_SAM2_PROMPTS_ERROR_OUTSIDE,
          "object %d: box (%g, %g, %g, %g) lies outside the %dx%d frame; boxes are frame "
          "pixels", o, p->box[0], p->box[1], p->box[2], p->box[3], width, height);
      return FALSE;
    }
  }
  return TRUE;
}

/* Rounded to 1/100 pixel, and below `limit` when `below` (a point, or a box's top-left
 * corner, must lie inside the frame). round (v * 100) / 100 in double is the double nearest
 * to the two-decimal number, as g_ascii_strtod reads it back. */
static gfloat
scale_coord (gfloat v, gint from, gint to, gboolean below)
{
  gdouble s = round ((gdouble) v * to / from * 100.0) / 100.0;

  if (below && s >= to)
    s = (to * 100.0 - 1.0) / 100.0;
  return (gfloat) MAX (s, 0.0);
}

void
gst_sam2_prompts_scale (GstSam2Prompts * prompts, gint from_width, gint from_height,
    gint to_width, gint to_height)
{
  const GstSam2Prompts *b;
  gint bw, bh;

  g_return_if_fail (from_width > 0 && from_height > 0 && to_width > 0 && to_height > 0);
  if (prompts == NULL)
    return;
  if (prompts->base == NULL) {
    prompts->base = gst_sam2_prompts_copy (prompts);
    prompts->base_width = from_width;
    prompts->base_height = from_height;
  }
  b = prompts->base;
  bw = prompts->base_width;
  bh = prompts->base_height;

  for (gint o = 0, first = 0; o < prompts->n_objects; o++) {
    Sam2Prompt *p = &prompts->prompts[o];
    const Sam2Prompt *bp = &b->prompts[o];
    /* the object's points, in the arrays the prompts own */
    Sam2Point *pts = prompts->points + first;
    const Sam2Point *bpts = b->points + first;
    for (gint i = 0; i < p->n_points; i++) {
      pts[i].x = scale_coord (bpts[i].x, bw, to_width, TRUE);
      pts[i].y = scale_coord (bpts[i].y, bh, to_height, TRUE);
    }
    first += p->n_points;
    if (p->has_box) {
      p->box[0] = scale_coord (bp->box[0], bw, to_width, TRUE);
      p->box[1] = scale_coord (bp->box[1], bh, to_height, TRUE);
      p->box[2] = MAX (scale_coord (bp->box[2], bw, to_width, FALSE), p->box[0]);
      p->box[3] = MAX (scale_coord (bp->box[3], bh, to_height, FALSE), p->box[1]);
    }
  }
}

/* A coordinate as the parser reads it: "%.2f" without trailing zeros. */
static void
append_coord (GString * s, gfloat v)
{
  /* up to G_MAXFLOAT (39 digits) with its decimals: G_ASCII_DTOSTR_BUF_SIZE cut it short */
  gchar buf[64];
  gchar *end;

  g_ascii_formatd (buf, sizeof buf, "%.2f", v);
  end = buf + strlen (buf);
  while (end > buf && end[-1] == '0')
    *--end = '\0';
  if (end > buf && end[-1] == '.')
    *--end = '\0';
  g_string_append (s, buf);
}

void
gst_sam2_prompts_to_strings (const GstSam2Prompts * prompts, gchar ** points, gchar ** boxes)
{
  GString *ps = g_string_new (NULL), *bs = g_string_new (NULL);
  gint last_points = -1, last_box = -1;

  for (gint o = 0; prompts != NULL && o < prompts->n_objects; o++) {
    if (prompts->prompts[o].n_points > 0)
      last_points = o;
    if (prompts->prompts[o].has_box)
      last_box = o;
  }
  /* entries up to the last object that has some (a missing trailing entry means none) */
  for (gint o = 0; o <= last_points; o++) {
    const Sam2Prompt *p = &prompts->prompts[o];
    if (o > 0)
      g_string_append (ps, "; ");
    for (gint i = 0; i < p->n_points; i++) {
      if (i > 0)
        g_string_append_c (ps, ' ');
      append_coord (ps, p->points[i].x);
      g_string_append_c (ps, ',');
      append_coord (ps, p->points[i].y);
      if (p->points[i].label == SAM2_LABEL_NEGATIVE)
        g_string_append (ps, ",0");
    }
  }
  for (gint o = 0; o <= last_box; o++) {
    const Sam2Prompt *p = &prompts->prompts[o];
    if (o > 0)
      g_string_append (bs, "; ");
    if (p->has_box)
      for (gint i = 0; i < 4; i++) {
        if (i > 0)
          g_string_append_c (bs, ',');
        append_coord (bs, p->box[i]);
      }
  }
  *points = g_string_free (ps, FALSE);
  *boxes = g_string_free (bs, FALSE);
}
