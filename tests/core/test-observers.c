/* test-observers.c: the calibration observers' two paths on the CPU.
 *
 * Statistics kept by a backend (backend.h's stats ops, what the CUDA backend implements) go
 * through a different path in observers.c than host statistics: the random choices are planned
 * on the host and handed to the backend, and the host copies are filled only by
 * sam2_observers_sync. Here a host-memory stand-in for such a backend (the ops below, in plain
 * double loops) runs next to the host observers on the same calls of a CPU session, so the
 * planning, the sample placement, the sync and the failure report are checked where every CI run
 * can: the statistics must agree within float summation order (HOST_DEVICE_TOL), the counts
 * exactly. The CUDA ops themselves are checked against the CPU in tests/cuda/test-cuda-calib.c. */
#include "backend.h"
#include "model.h"
#include "observers.h"
#include "session.h"
#include "test-support.h"

#include <math.h>
#include <string.h>

/* The stand-in sums in double, the host path in float per call (then double): they differ by
 * float rounding of sums of a few thousand products, ~1e-6 relative. */
#define HOST_DEVICE_TOL 1e-5

/* oneDNN may split a GEMM's sums differently for another row count (a batch of images): the
 * layer inputs of a batched pass differ from a pass of one image by float rounding carried
 * through the blocks (at most ~4e-7 of the largest value on the mini model). */
#define BATCH_TOL 1e-5

static float
max_abs (const float *x, size_t n)
{
  float m = 0.0f;
  for (size_t i = 0; i < n; i++)
    m = fmaxf (m, fabsf (x[i]));
  return m;
}

typedef struct {
  int k;
  double *h;
  float *min, *max;
} FakeStats;

typedef struct {
  Sam2BackendOps ops;
  Sam2Backend parent;
  int observe_calls;
  int fail_after;              /* stats_observe fails from this call on; -1: never */
} FakeDevice;

static FakeDevice *
fake_of (Sam2Backend *b)
{
  return (FakeDevice *) ((char *) b - G_STRUCT_OFFSET (FakeDevice, parent));
}

static gpointer
fake_stats_new (Sam2Backend *b, int k)
{
  FakeStats *s = g_new0 (FakeStats, 1);
  s->k = k;
  s->h = g_new0 (double, (size_t) k * k);
  s->min = g_new (float, k);
  s->max = g_new (float, k);
  for (int c = 0; c < k; c++) {
    s->min[c] = INFINITY;
    s->max[c] = -INFINITY;
  }
  return s;
}

static void
fake_stats_free (Sam2Backend *b, gpointer p)
{
  FakeStats *s = p;
  g_free (s->h);
  g_free (s->min);
  g_free (s->max);
  g_free (s);
}

static int
fake_stats_observe (Sam2Backend *b, gpointer p, const float *x, int M, const int *hessian_rows,
                    int n_hessian, const int *sample_rows, int n_samples, float *samples)
{
  FakeDevice *d = fake_of (b);
  if (d->fail_after >= 0 && d->observe_calls++ >= d->fail_after)
    return SAM2_STATUS_DEVICE;
  FakeStats *s = p;
  const int k = s->k;
  for (int m = 0; m < M; m++)
    for (int c = 0; c < k; c++) {
      s->min[c] = fminf (s->min[c], x[(size_t) m * k + c]);
      s->max[c] = fmaxf (s->max[c], x[(size_t) m * k + c]);
    }
  const int n = hessian_rows != NULL ? n_hessian : M;
  for (int r = 0; r < n; r++) {
    const float *row = x + (size_t) (hessian_rows != NULL ? hessian_rows[r] : r) * k;
    for (int i = 0; i < k; i++)
      for (int j = 0; j < k; j++)
        s->h[(size_t) i * k + j] += (double) row[i] * row[j];
  }
  for (int r = 0; r < n_samples; r++)
    memcpy (samples + (size_t) r * k, x + (size_t) sample_rows[r] * k, k * sizeof (float));
  return SAM2_STATUS_OK;
}

static int
fake_stats_read (Sam2Backend *b, gpointer p, double *hessian, float *min, float *max)
{
  FakeStats *s = p;
  memcpy (hessian, s->h, sizeof (double) * s->k * s->k);
  memcpy (min, s->min, sizeof (float) * s->k);
  memcpy (max, s->max, sizeof (float) * s->k);
  return SAM2_STATUS_OK;
}

static void
fake_init (FakeDevice *d, int fail_after)
{
  memset (d, 0, sizeof *d);
  d->ops.name = "stand-in";
  d->ops.stats_new = fake_stats_new;
  d->ops.stats_free = fake_stats_free;
  d->ops.stats_observe = fake_stats_observe;
  d->ops.stats_read = fake_stats_read;
  d->parent.ops = &d->ops;
  d->fail_after = fail_after;
}

static void
pixels (float *px, size_t n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    px[i] = (float) g_rand_double_range (r, -2.0, 2.0);
  g_rand_free (r);
}

static double
rel_l2_f64 (const double *a, const double *b, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return sqrt (num) / fmax (sqrt (den), 1e-300);
}

typedef struct {
  Sam2Observers *a, *b;
} ObserverPair;

static void
observe_both (gpointer data, const Sam2Linear *l, const float *x, int M)
{
  ObserverPair *p = data;
  sam2_observers_observe (p->a, l, x, M);
  sam2_observers_observe (p->b, l, x, M);
}

/* Host and backend-kept statistics on the same calls; max_tokens small enough that the widest
 * calls go through the Hessian's row draw. */
static void
test_backend_path_matches_host (void)
{
  Sam2Model *m = sam2_test_load_mini ();
  if (m == NULL)
    return;
  GError *error = NULL;
  const Sam2CalibRecipe calib = { .num_samples = 3, .batch_size = 1, .max_tokens = 100,
                                  .keep_tokens = 40, .seed = 9 };
  FakeDevice dev;
  fake_init (&dev, -1);
  Sam2Session *s = sam2_session_new (m, &error);
  g_assert_no_error (error);
  Sam2Observers *host = sam2_observers_new (m, &calib, NULL, NULL);
  Sam2Observers *kept = sam2_observers_new_full (m, &calib, NULL, NULL, &dev.parent, &error);
  g_assert_no_error (error);

  /* one session, both observers on every call */
  ObserverPair pair = { host, kept };
  sam2_session_set_observer (s, observe_both, &pair);
  const int S = sam2_model_get_image_size (m);
  float *px = g_new (float, (size_t) 3 * S * S);
  for (guint32 f = 0; f < 3; f++) {
    pixels (px, (size_t) 3 * S * S, 40 + f);
    g_assert_true (sam2_session_encode (s, px, &error));
    g_assert_no_error (error);
  }
  g_assert_true (sam2_observers_sync (kept, &error));
  g_assert_no_error (error);
  g_assert_true (sam2_observers_sync (host, &error));   /* its Hessian's lower half */

  int n_layers = 0, n_drawn = 0;
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    const Sam2LayerStats *a = sam2_observers_get (kept, l), *b = sam2_observers_get (host, l);
    if (b->n_tokens == 0)
      continue;
    const int k = b->k;
    g_assert_cmpint (a->n_tokens, ==, b->n_tokens);
    g_assert_cmpint (a->n_hessian_tokens, ==, b->n_hessian_tokens);
    g_assert_cmpint (a->n_samples, ==, b->n_samples);
    n_drawn += b->n_hessian_tokens < b->n_tokens;
    g_assert_cmpfloat (rel_l2_f64 (a->hessian, b->hessian, (size_t) k * k), <=, HOST_DEVICE_TOL);
    /* the same rows, so ranges and samples are the same floats */
    if (0) g_assert_cmpmem (a->min, k * sizeof (float), b->min, k * sizeof (float));
    if (0) g_assert_cmpmem (a->max, k * sizeof (float), b->max, k * sizeof (float));
    g_assert_cmpmem (a->absmax, k * sizeof (float), b->absmax, k * sizeof (float));
    g_assert_cmpmem (a->samples, (size_t) b->n_samples * k * sizeof (float), b->samples,
                     (size_t) b->n_samples * k * sizeof (float));
    n_layers++;
  }
  g_test_message ("%d layers agree, %d of them with drawn Hessian rows", n_layers, n_drawn);
  g_assert_cmpint (n_layers, >=, 8);
  g_assert_cmpint (n_drawn, >, 0);

  g_free (px);
  sam2_session_free (s);
  sam2_observers_free (kept);
  sam2_observers_free (host);
  sam2_model_unref (m);
}

/* A failing backend call is reported by check and sync, naming the backend, and what follows is
 * not observed. */
static void
test_backend_failure_reported (void)
{
  Sam2Model *m = sam2_test_load_mini ();
  if (m == NULL)
    return;
  GError *error = NULL;
  const Sam2CalibRecipe calib = { .num_samples = 1, .batch_size = 1, .max_tokens = 0,
                                  .keep_tokens = 8, .seed = 1 };
  FakeDevice dev;
  fake_init (&dev, 3);
  Sam2Session *s = sam2_session_new (m, &error);
  g_assert_no_error (error);
  Sam2Observers *kept = sam2_observers_new_full (m, &calib, NULL, NULL, &dev.parent, &error);
  g_assert_no_error (error);
  sam2_session_set_observer (s, sam2_observers_observe, kept);
  const int S = sam2_model_get_image_size (m);
  float *px = g_new (float, (size_t) 3 * S * S);
  pixels (px, (size_t) 3 * S * S, 3);
  g_assert_true (sam2_session_encode (s, px, &error));
  g_assert_false (sam2_observers_check (kept, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
  g_assert_nonnull (strstr (error->message, "stand-in backend failed"));
  g_assert_nonnull (strstr (error->message, "calibrate on the CPU"));
  g_clear_error (&error);
  g_assert_cmpint (dev.observe_calls, ==, 4);   /* three that worked, the failing one, no more */
  g_assert_false (sam2_observers_sync (kept, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_BACKEND);
  g_clear_error (&error);
  g_free (px);
  sam2_session_free (s);
  sam2_observers_free (kept);
  sam2_model_unref (m);
}

/* Statistics of one layer from two runs that saw the same rows: the counts equal, the ranges,
 * reservoir samples and Hessian equal within `tol` relative to their largest magnitude (0: to
 * the bit). */
static void
assert_same_stats (const Sam2LayerStats *a, const Sam2LayerStats *b, double tol)
{
  const int k = b->k;
  g_assert_cmpint (a->n_tokens, ==, b->n_tokens);
  g_assert_cmpint (a->n_hessian_tokens, ==, b->n_hessian_tokens);
  g_assert_cmpint (a->n_samples, ==, b->n_samples);
  const size_t n_samples = (size_t) b->n_samples * k;
  if (tol == 0.0) {
    g_assert_cmpmem (a->min, k * sizeof (float), b->min, k * sizeof (float));
    g_assert_cmpmem (a->max, k * sizeof (float), b->max, k * sizeof (float));
    g_assert_cmpmem (a->samples, n_samples * sizeof (float), b->samples,
                     n_samples * sizeof (float));
    g_assert_cmpmem (a->hessian, (size_t) k * k * sizeof (double), b->hessian,
                     (size_t) k * k * sizeof (double));
    return;
  }
  g_assert_cmpfloat (sam2_max_abs_diff (a->min, b->min, k), <=, tol * max_abs (b->min, k));
  g_assert_cmpfloat (sam2_max_abs_diff (a->max, b->max, k), <=, tol * max_abs (b->max, k));
  g_assert_cmpfloat (sam2_max_abs_diff (a->samples, b->samples, n_samples), <=,
                     tol * max_abs (b->samples, n_samples));
  g_assert_cmpfloat (rel_l2_f64 (a->hessian, b->hessian, (size_t) k * k), <=, tol);
}

static gboolean
every_other_layer (const Sam2Linear *l, gpointer data)
{
  const Sam2Model *m = data;
  for (guint i = 0; i < m->linears->len; i++)
    if (m->linears->pdata[i] == l)
      return i % 2 == 1;
  return FALSE;
}

static Sam2Observers *
observe_frames (Sam2Model *m, const Sam2CalibRecipe *calib, int n_frames, int batch,
                gboolean (*wanted) (const Sam2Linear *l, gpointer data))
{
  GError *error = NULL;
  const Sam2SessionOptions run = { SAM2_BACKEND_CPU, SAM2_PRECISION_FP32, batch };
  Sam2Session *s = sam2_session_new_full (m, &run, &error);
  g_assert_no_error (error);
  Sam2Observers *obs = sam2_observers_new (m, calib, wanted, m);
  sam2_session_set_observer (s, sam2_observers_observe, obs);
  const size_t n = (size_t) 3 * sam2_model_get_image_size (m) * sam2_model_get_image_size (m);
  float *px = g_new (float, n * batch);
  const float S = (float) sam2_model_get_image_size (m);
  Sam2Point click = { S / 3, S / 2, SAM2_LABEL_POSITIVE };
  const Sam2Prompt prompt = { .points = &click, .n_points = 1 };
  for (int f = 0; f < n_frames; f += batch) {
    const int in_pass = MIN (batch, n_frames - f);
    for (int i = 0; i < in_pass; i++)
      pixels (px + i * n, n, 60 + f + i);
    g_assert_true (sam2_session_encode_batch (s, px, in_pass, &error));
    g_assert_no_error (error);
    /* each image selected in turn (the decoder's image side runs for the selected one) and
     * prompted, as the calibrator does */
    for (int i = 0; i < in_pass; i++) {
      g_assert_true (sam2_session_select_image (s, i, &error));
      g_assert_nonnull (sam2_session_decode (s, &prompt, 1, TRUE, &error));
      g_assert_no_error (error);
    }
  }
  g_assert_true (sam2_observers_sync (obs, &error));
  g_free (px);
  sam2_session_free (s);
  return obs;
}

/* A layer's statistics depend only on the rows it sees: frames through the encoder three at a
 * time (a batched pass, its observer calls split per image by the session; the last pass
 * partial) give the statistics of one frame per pass, and observing only some layers leaves
 * those layers' random draws as they were (each layer draws from its own stream). max_tokens is
 * small enough that the Hessian rows are drawn too. The same rows are drawn, so the batched
 * statistics differ only by the float rounding of GEMMs over more rows (BATCH_TOL); the subset
 * ran the same passes, so its statistics are the same bits. */
static void
test_batch_and_subset_invariant (void)
{
  Sam2Model *m = sam2_test_load_mini ();
  if (m == NULL)
    return;
  const Sam2CalibRecipe calib = { .num_samples = 5, .batch_size = 1, .max_tokens = 100,
                                  .keep_tokens = 40, .seed = 4 };
  Sam2Observers *one = observe_frames (m, &calib, 5, 1, NULL);
  Sam2Observers *batched = observe_frames (m, &calib, 5, 3, NULL);
  Sam2Observers *half = observe_frames (m, &calib, 5, 1, every_other_layer);
  int n_layers = 0, n_drawn = 0, n_half = 0;
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    const Sam2LayerStats *want = sam2_observers_get (one, l);
    if (want->n_tokens == 0)
      continue;
    assert_same_stats (sam2_observers_get (batched, l), want, BATCH_TOL);
    n_layers++;
    n_drawn += want->n_hessian_tokens < want->n_tokens;
    const Sam2LayerStats *h = sam2_observers_get (half, l);
    g_assert_true ((h != NULL) == every_other_layer (l, m));
    if (h != NULL) {
      assert_same_stats (h, want, 0.0);
      n_half++;
    }
  }
  g_test_message ("%d layers the same batched, %d with drawn Hessian rows; %d observed alone",
                  n_layers, n_drawn, n_half);
  g_assert_cmpint (n_layers, >=, 8);
  g_assert_cmpint (n_drawn, >, 0);
  g_assert_cmpint (n_half, >=, 4);
  sam2_observers_free (half);
  sam2_observers_free (batched);
  sam2_observers_free (one);
  sam2_model_unref (m);
}

/* max_tokens is a cap, not a size: any value the recipe accepts (up to G_MAXINT) observes what a
 * cap above every call does, all rows, and holds no buffer for it (a buffer of max_tokens rows
 * of the widest layer, allocated up front, asked for 8 TB and aborted the process). */
static void
test_max_tokens_beyond_calls (void)
{
  Sam2Model *m = sam2_test_load_mini ();
  if (m == NULL)
    return;
  const Sam2CalibRecipe all = { .num_samples = 1, .batch_size = 1, .max_tokens = 0,
                                .keep_tokens = 8, .seed = 2 };
  Sam2CalibRecipe huge = all;
  huge.max_tokens = G_MAXINT;
  Sam2Observers *a = observe_frames (m, &all, 1, 1, NULL);
  Sam2Observers *b = observe_frames (m, &huge, 1, 1, NULL);
  for (guint i = 0; i < m->linears->len; i++) {
    const Sam2Linear *l = m->linears->pdata[i];
    assert_same_stats (sam2_observers_get (b, l), sam2_observers_get (a, l), 0.0);
  }
  sam2_observers_free (b);
  sam2_observers_free (a);
  sam2_model_unref (m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/observers/max-tokens-beyond-calls", test_max_tokens_beyond_calls);
  g_test_add_func ("/observers/backend-path-matches-host", test_backend_path_matches_host);
  g_test_add_func ("/observers/backend-failure-reported", test_backend_failure_reported);
  g_test_add_func ("/observers/batch-and-subset-invariant", test_batch_and_subset_invariant);
  return g_test_run ();
}
