/* test-prompts.c: the prompt strings of sam2seg: what they mean, and errors that point at the
 * bad part. */
#include <gst/check/gstcheck.h>
#include <math.h>
#include <string.h>

#include "gstsam2prompts.h"

static GstSam2Prompts *
parse_ok (const gchar * points, const gchar * boxes)
{
  GError *error = NULL;
  GstSam2Prompts *p = gst_sam2_prompts_parse (points, boxes, &error);
  fail_unless (p != NULL, "points \"%s\" boxes \"%s\": %s", points, boxes,
      error ? error->message : "");
  return p;
}

static void
parse_fails (const gchar * points, const gchar * boxes, const gchar * needle)
{
  GError *error = NULL;
  GstSam2Prompts *p = gst_sam2_prompts_parse (points, boxes, &error);
  fail_unless (p == NULL, "points \"%s\" boxes \"%s\" parsed", points, boxes);
  fail_unless (g_error_matches (error, GST_SAM2_PROMPTS_ERROR,
          GST_SAM2_PROMPTS_ERROR_SYNTAX));
  fail_unless (strstr (error->message, needle) != NULL, "\"%s\" not in: %s", needle,
      error->message);
  g_error_free (error);
}

GST_START_TEST (test_empty)
{
  const gchar *empty[] = { NULL, "", "   ", ";", " ; " };
  for (guint i = 0; i < G_N_ELEMENTS (empty); i++) {
    GstSam2Prompts *p = parse_ok (empty[i], empty[G_N_ELEMENTS (empty) - 1 - i]);
    /* blanks and separators alone are no prompts */
    fail_unless_equals_int (p->n_objects, 0);
    gst_sam2_prompts_free (p);
  }
}

GST_END_TEST;

GST_START_TEST (test_points_and_boxes)
{
  GstSam2Prompts *p = parse_ok (" 10,20  30.5,40,0\t;5,6,1; ;",
      "; ; 1,2,3,4; 0, 0 ,7.25,8");

  fail_unless_equals_int (p->n_objects, 4);
  fail_unless_equals_int (p->prompts[0].n_points, 2);
  fail_unless_equals_float (p->prompts[0].points[0].x, 10.0f);
  fail_unless_equals_float (p->prompts[0].points[0].y, 20.0f);
  fail_unless_equals_int (p->prompts[0].points[0].label, SAM2_LABEL_POSITIVE);
  fail_unless_equals_float (p->prompts[0].points[1].x, 30.5f);
  fail_unless_equals_int (p->prompts[0].points[1].label, SAM2_LABEL_NEGATIVE);
  fail_if (p->prompts[0].has_box);
  fail_unless_equals_int (p->prompts[1].n_points, 1);
  fail_unless_equals_float (p->prompts[1].points[0].x, 5.0f);
  /* object 2: an empty point entry and a box */
  fail_unless_equals_int (p->prompts[2].n_points, 0);
  fail_unless (p->prompts[2].points == NULL);
  fail_unless (p->prompts[2].has_box);
  fail_unless_equals_float (p->prompts[2].box[3], 4.0f);
  /* object 3: a box only, spaces around the commas */
  fail_unless (p->prompts[3].has_box);
  fail_unless_equals_float (p->prompts[3].box[2], 7.25f);

  {
    GstSam2Prompts *c = gst_sam2_prompts_copy (p);
    fail_unless_equals_int (c->n_objects, 4);
    fail_unless (c->prompts[0].points != p->prompts[0].points);
    fail_unless_equals_float (c->prompts[0].points[1].x, 30.5f);
    fail_unless_equals_float (c->prompts[1].points[0].x, 5.0f);
    gst_sam2_prompts_free (c);
  }
  gst_sam2_prompts_free (p);
}

GST_END_TEST;

/* floats print and parse back to the same value (what the tests and tools rely on) */
GST_START_TEST (test_exact_floats)
{
  const gfloat v = 123.456789f;
  gchar buf[64];
  GstSam2Prompts *p;

  g_snprintf (buf, sizeof buf, "%.9g,%.9g", v, v / 3);
  p = parse_ok (buf, NULL);
  fail_unless (p->prompts[0].points[0].x == v);
  fail_unless (p->prompts[0].points[0].y == v / 3);
  gst_sam2_prompts_free (p);
}

GST_END_TEST;

GST_START_TEST (test_errors_point_at_the_bad_part)
{
  parse_fails ("10,20 30", NULL, "object 0, point 1: a point is x,y or x,y,label");
  parse_fails ("10,20 30", NULL, "\"30\" (at character 7)");
  parse_fails ("10, 20", NULL, "\"10,\"");
  parse_fails ("1,2; 3,4 5,y", NULL, "object 1, point 1: expected a number, found \"y\"");
  parse_fails ("1,2,3,4", NULL, "\"1,2,3,4\"");
  parse_fails ("1,2,0.5", NULL, "label is 1 (positive) or 0 (negative), not \"0.5\"");
  parse_fails ("1,-2", NULL, "cannot be negative");
  parse_fails ("1,nan", NULL, "\"nan\"");
  parse_fails ("1,inf", NULL, "\"inf\"");
  parse_fails ("1e300,5", NULL, "\"1e300\"");      /* finite, but no float holds it */
  parse_fails (NULL, "0,0,1e39,5", "\"1e39\"");
  parse_fails ("1,2;;3,4", NULL, "object 1 has neither points nor a box");
  parse_fails (NULL, "1,2,3", "object 0: a box is x0,y0,x1,y1");
  parse_fails (NULL, "1,2,3,4; 5,6,7,x", "object 1: expected a number, found \"x\"");
  parse_fails (NULL, "1,2,3,4 5,6,7,8", "not \"1,2,3,4 5,6,7,8\"");
  parse_fails (NULL, "1,2,3 4,5", "expected a number, found \"3 4\"");
  parse_fails (NULL, "5,2,3,4", "x0 <= x1");
  parse_fails (NULL, "1,6,3,4", "y0 <= y1");
}

GST_END_TEST;

GST_START_TEST (test_too_many_points)
{
  GString *s = g_string_new (NULL);
  for (gint i = 0; i <= SAM2_MAX_POINTS_PER_OBJECT; i++)
    g_string_append_printf (s, "%d,%d ", i, i);
  parse_fails (s->str, NULL, "at most 64");
  g_string_free (s, TRUE);
}

GST_END_TEST;

GST_START_TEST (test_check_frame)
{
  GstSam2Prompts *p = parse_ok ("10,20; 99.5,5", "; ; 90,90,300,300");
  GError *error = NULL;

  fail_unless (gst_sam2_prompts_check_frame (p, 100, 100, &error));
  fail_if (gst_sam2_prompts_check_frame (p, 99, 100, &error));
  fail_unless (g_error_matches (error, GST_SAM2_PROMPTS_ERROR,
          GST_SAM2_PROMPTS_ERROR_OUTSIDE));
  fail_unless (strstr (error->message, "object 1, point 0 at (99.5, 5)") != NULL, "%s",
      error->message);
  g_clear_error (&error);
  fail_if (gst_sam2_prompts_check_frame (p, 100, 90, &error));
  fail_unless (strstr (error->message, "object 2: box") != NULL, "%s", error->message);
  g_clear_error (&error);
  gst_sam2_prompts_free (p);
}

GST_END_TEST;

/* Two prompt sets are the same objects, points, labels and boxes, to the bit. */
static void
check_same (const GstSam2Prompts * a, const GstSam2Prompts * b)
{
  fail_unless_equals_int (a->n_objects, b->n_objects);
  for (gint o = 0; o < a->n_objects; o++) {
    const Sam2Prompt *pa = &a->prompts[o], *pb = &b->prompts[o];
    fail_unless_equals_int (pa->n_points, pb->n_points);
    fail_unless_equals_int (pa->has_box, pb->has_box);
    for (gint i = 0; i < pa->n_points; i++) {
      fail_unless (pa->points[i].x == pb->points[i].x && pa->points[i].y == pb->points[i].y,
          "object %d point %d: %g,%g vs %g,%g", o, i, pa->points[i].x, pa->points[i].y,
          pb->points[i].x, pb->points[i].y);
      fail_unless_equals_int (pa->points[i].label, pb->points[i].label);
    }
    for (gint i = 0; pa->has_box && i < 4; i++)
      fail_unless (pa->box[i] == pb->box[i], "object %d box[%d]: %g vs %g", o, i, pa->box[i],
          pb->box[i]);
  }
}

/* A caps change moves the prompts to the same places of the new frame, in two-decimal
 * coordinates that the strings carry exactly; points stay inside the frame. */
GST_START_TEST (test_scale_and_strings)
{
  GstSam2Prompts *p = parse_ok ("42.5,95.5 10,10,0; ; 255.999,0", "; 10,20,100,200");
  GstSam2Prompts *back;
  gchar *points, *boxes;

  gst_sam2_prompts_to_strings (p, &points, &boxes);
  fail_unless_equals_string (points, "42.5,95.5 10,10,0; ; 256,0");
  fail_unless_equals_string (boxes, "; 10,20,100,200");
  g_free (points);
  g_free (boxes);

  gst_sam2_prompts_scale (p, 256, 256, 160, 120);
  fail_unless (gst_sam2_prompts_check_frame (p, 160, 120, NULL));
  gst_sam2_prompts_to_strings (p, &points, &boxes);
  /* 255.999 * 160 / 256 rounds to 160.00, outside: kept at 159.99 */
  fail_unless_equals_string (points, "26.56,44.77 6.25,4.69,0; ; 159.99,0");
  fail_unless_equals_string (boxes, "; 6.25,9.38,62.5,93.75");
  back = parse_ok (points, boxes);
  check_same (p, back);
  gst_sam2_prompts_free (back);
  g_free (points);
  g_free (boxes);

  /* and back up: the same places again, to the rounding */
  gst_sam2_prompts_scale (p, 160, 120, 256, 256);
  fail_unless (fabsf (p->prompts[0].points[0].x - 42.5f) < 0.02f);
  fail_unless (fabsf (p->prompts[0].points[0].y - 95.5f) < 0.02f);
  fail_unless (p->prompts[2].points[0].x < 256.0f);
  gst_sam2_prompts_free (p);

  /* through a tiny frame and back (and through a copy, as sam2seg keeps them): the prompts as
   * given, exactly; each scale starts from them (from the last scale's clamped values, a point
   * at (639, 479) came back at (637.26, 478.08)) */
  p = parse_ok ("639,479", "600,400,639,479");
  gst_sam2_prompts_scale (p, 640, 480, 2, 3);
  back = gst_sam2_prompts_copy (p);
  gst_sam2_prompts_free (p);
  gst_sam2_prompts_scale (back, 2, 3, 320, 240);
  gst_sam2_prompts_scale (back, 320, 240, 640, 480);
  gst_sam2_prompts_to_strings (back, &points, &boxes);
  fail_unless_equals_string (points, "639,479");
  fail_unless_equals_string (boxes, "600,400,639,479");
  g_free (points);
  g_free (boxes);
  gst_sam2_prompts_free (back);

  /* no prompts: empty strings */
  p = parse_ok ("", "");
  gst_sam2_prompts_to_strings (p, &points, &boxes);
  fail_unless_equals_string (points, "");
  fail_unless_equals_string (boxes, "");
  g_free (points);
  g_free (boxes);
  gst_sam2_prompts_free (p);
}

GST_END_TEST;

static Suite *
prompts_suite (void)
{
  Suite *s = suite_create ("sam2-prompts");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_empty);
  tcase_add_test (tc, test_points_and_boxes);
  tcase_add_test (tc, test_exact_floats);
  tcase_add_test (tc, test_errors_point_at_the_bad_part);
  tcase_add_test (tc, test_too_many_points);
  tcase_add_test (tc, test_check_frame);
  tcase_add_test (tc, test_scale_and_strings);
  return s;
}

GST_CHECK_MAIN (prompts);
