/* fuzz-prompts.c: sam2seg's prompt strings (gst/gstsam2prompts.c) on arbitrary bytes.
 *
 * Built two ways: by run-fuzz.sh with libFuzzer and ASan/UBSan, and by meson with corpus-main.c,
 * which replays the committed corpus as a regression test. The input is the `points` string, a
 * newline, then the `boxes` string (no newline: boxes NULL). Besides crashes it checks the
 * parser's promises: a GST_SAM2_PROMPTS_ERROR with a message exactly when parsing fails, and for
 * accepted prompts: every object has a point or a box, coordinates are finite and not negative,
 * labels are positive or negative, boxes are ordered, the copy is equal, and the frame check
 * answers with an error exactly when it refuses.
 */
#include "gstsam2prompts.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
fuzz_require (gboolean condition)
{
  if (!condition)
    abort ();
}

static gboolean
coordinate_ok (float v)
{
  return isfinite (v) && v >= 0.0f;
}

static void
fuzz_check_accepted (const GstSam2Prompts *p)
{
  fuzz_require (p->n_objects >= 0);
  int total_points = 0;
  for (int i = 0; i < p->n_objects; i++) {
    const Sam2Prompt *o = &p->prompts[i];
    fuzz_require (o->n_points >= 0 && (o->n_points > 0 || o->has_box));
    for (int j = 0; j < o->n_points; j++) {
      const Sam2Point *pt = &o->points[j];
      fuzz_require (pt == &p->points[total_points + j]);
      fuzz_require (coordinate_ok (pt->x) && coordinate_ok (pt->y));
      fuzz_require (pt->label == SAM2_LABEL_POSITIVE || pt->label == SAM2_LABEL_NEGATIVE);
    }
    total_points += o->n_points;
    if (o->has_box) {
      for (int k = 0; k < 4; k++)
        fuzz_require (coordinate_ok (o->box[k]));
      fuzz_require (o->box[0] <= o->box[2] && o->box[1] <= o->box[3]);
    }
  }

  GstSam2Prompts *copy = gst_sam2_prompts_copy (p);
  fuzz_require (copy->n_objects == p->n_objects);
  for (int i = 0; i < p->n_objects; i++) {
    const Sam2Prompt *a = &p->prompts[i], *b = &copy->prompts[i];
    fuzz_require (a->n_points == b->n_points && a->has_box == b->has_box);
    fuzz_require (a->n_points == 0 || memcmp (a->points, b->points,
                                              sizeof (Sam2Point) * a->n_points) == 0);
    fuzz_require (!a->has_box || memcmp (a->box, b->box, sizeof a->box) == 0);
  }
  gst_sam2_prompts_free (copy);

  const int sizes[][2] = { { 1, 1 }, { 640, 480 }, { 65536, 65536 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    GError *error = NULL;
    const gboolean inside = gst_sam2_prompts_check_frame (p, sizes[s][0], sizes[s][1], &error);
    fuzz_require (inside == (error == NULL));
    fuzz_require (inside || (error->domain == GST_SAM2_PROMPTS_ERROR
                             && error->message != NULL && error->message[0] != '\0'));
    g_clear_error (&error);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  const char *newline = memchr (text, '\n', size);
  char *points = g_strndup (text, newline != NULL ? (gsize) (newline - text) : size);
  char *boxes = newline != NULL ? g_strndup (newline + 1, size - (newline - text) - 1) : NULL;

  GError *error = NULL;
  GstSam2Prompts *p = gst_sam2_prompts_parse (points, boxes, &error);
  if (p != NULL) {
    fuzz_require (error == NULL);
    fuzz_check_accepted (p);
    gst_sam2_prompts_free (p);
  } else {
    fuzz_require (error != NULL && error->domain == GST_SAM2_PROMPTS_ERROR);
    fuzz_require (error->message != NULL && error->message[0] != '\0');
    g_clear_error (&error);
  }
  g_free (points);
  g_free (boxes);
  return 0;
}
