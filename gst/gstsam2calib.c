/* GStreamer SAM2 plugin
 *
 * gstsam2calib.c: sam2calib, W4A8 calibration of a SAM2 model from the frames of a stream.
 */
/**
 * SECTION:element-sam2calib
 * @title: sam2calib
 * @see_also: sam2seg
 *
 * A sink that quantizes a float SAM2 model to W4A8 from the frames that reach it: every
 * #GstSam2Calib:frame-stride th frame runs through the float model with statistics
 * observers (memory does not grow with the number of frames), and once
 * #GstSam2Calib:num-frames frames are in, or at EOS with at least one, the model is quantized
 * per the #GstSam2Calib:config recipe in a worker thread and written to #GstSam2Calib:output
 * as one .safetensors file that sam2seg, sam2q and sam2_model_load read.
 *
 * ## Frames
 *
 * Input is RGB, RGBA, RGBx, BGR, BGRA, BGRx, NV12 or I420 in system memory, 1 to 16384 pixels wide
 * and high, any rate (YUV frames are converted to RGB with a #GstVideoConverter into one reused
 * buffer). The sink does not synchronise to the clock by default (#GstBaseSink:sync is FALSE):
 * frames are taken as fast as the model runs. After #GstSam2Calib:num-frames frames, further
 * buffers are accepted and dropped at once (GST_FLOW_OK, not EOS), so that in a tee the other
 * branches, e.g. a sam2seg segmenting the same stream, keep running.
 *
 * With #GstSam2Calib:batch-size N (or the recipe's calib.batch_size), frames are
 * preprocessed as they come and run through the encoder N at a time; the last, partial batch
 * runs when quantization starts. The statistics are those of one frame per pass (each layer
 * sees each image's rows as a call of its own and draws its samples from its own random
 * stream), so N changes speed and memory, not the model. It is meant for device=cuda (a GPU
 * runs a batch of frames faster per frame); on the CPU it only costs memory.
 *
 * ## Errors, before the first frame
 *
 * The properties are taken, and the recipe, the output location and the model checked, when
 * the element starts (READY to PAUSED; they may change in NULL and READY, and take effect at
 * the next start): a malformed recipe fails with the parser's message, which names the key,
 * line and column; an output directory that cannot be created or written, and a model that
 * cannot be found or is already quantized, fail with a message that says what to change.
 * device=cuda runs the float model and gathers the layer statistics on the GPU; a build without
 * CUDA, or a machine without a GPU, fails at start with the backend's message. precision=bf16
 * runs the float model with bfloat16 GEMM and attention operands (on the GPU, or on a CPU with
 * AVX-512 BF16, where the float model runs about twice as fast and a calibration frame, its
 * statistics included, ~1.4x; elsewhere it fails at start, saying why).
 *
 * EOS before any frame is an error ("no calibration frames arrived before end of stream").
 * The file is written atomically (a temporary file renamed into place): a failure, a full
 * disk or stopping the element never leaves a partial file at the output path.
 *
 * ## End of stream, flushing, stopping
 *
 * EOS is held until the quantized model is written: the sink posts its EOS message only
 * afterwards, so an application (or gst-launch-1.0 -e) that waits for EOS finds the file
 * complete. A flushing seek does not lose work: the statistics of the frames taken so far
 * stay, a quantization in progress goes on, and an EOS after the flush waits for it again.
 * Stopping the element (PAUSED to READY) cancels: the quantizer stops at its next layer (the
 * stop waits for the layer under way, at most seconds with the large checkpoints) and the
 * result is discarded. The model is written under a hidden name
 * beside the output and renamed into place only if no stop came meanwhile: a stop before
 * that rename leaves the output path as it was (an older file there included); after it, the
 * run is complete and reported as such (COMPLETE, "sam2calib-done", #GstSam2Calib::quantized,
 * which the stop waits for). The next run starts from no frames. An
 * application may also stop the pipeline from the #GstSam2Calib::quantized handler or from a
 * sync bus handler on the element's messages, which run in the worker's thread: the stop then
 * does not wait for the worker (it is that thread), which stops at its next layer (or, after
 * the rename, finishes) on its own.
 *
 * ## Statistics cache
 *
 * With #GstSam2Calib:cache-dir, the statistics of a calibration are kept (the core's cache
 * entry, keyed by the model's weights, the frames, the recipe and the precision) with a small
 * index named after the first frame that lists the hashes of all the frames taken. A later run
 * whose first frame matches an index compares frames instead of running the model on them
 * and, when the whole set matched, loads the statistics: re-running a calibration on the same
 * file (e.g. with another output) costs only the quantization. A frame that differs ends the
 * reuse with a warning, and calibration starts from that frame (the frames before it were
 * only compared). EOS in the middle of a reused set is an error (and the index is removed).
 * An index is written only when the statistics were saved (a failed save is a warning), and
 * an index whose statistics are gone is removed at the first frame and the frames run.
 *
 * ## Messages and signal
 *
 * With #GstSam2Calib:post-messages (the default), in this order:
 *
 * - %GST_MESSAGE_PROGRESS with code "sam2calib": START at the first frame, CONTINUE when
 *   quantization starts, after each layer and when the file is being written, COMPLETE when
 *   it is written (ERROR when it failed, CANCELED when the element stopped first).
 * - element message "sam2calib-progress", once per frame taken: frames (guint, taken so
 *   far), total (guint, #GstSam2Calib:num-frames).
 * - element message "sam2calib-layer", once per quantized layer: stage (string, e.g.
 *   "quantizing"), layer (string, the Hugging Face layer name), done (gint), total (gint),
 *   error (gdouble, the layer's relative output error on calibration samples; NaN when
 *   unknown).
 * - element message "sam2calib-done" (posted even when post-messages is FALSE): path
 *   (string), n-frames (guint), seconds (gdouble, from the first frame to the file written),
 *   size (guint64, the file's size in bytes), cached (gboolean, the statistics came from
 *   #GstSam2Calib:cache-dir), backend (string, where the float model ran the frames:
 *   "cpu fp32", or "cuda fp32, " and the GPU).
 *
 * Then the #GstSam2Calib::quantized signal is emitted, from the worker thread, with the
 * path. sam2seg's calibrator / calibrator-name properties use it to switch to the quantized
 * model while the stream runs.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -e filesrc location=video.webm ! decodebin ! videoconvert ! \
 *     sam2calib model=tiny config=configs/hiera_tiny_w4a8.yaml num-frames=64 frame-stride=4 \
 *     output=models/
 * ]| Calibrates sam2.1-hiera-tiny on every fourth of the first 256 frames and writes
 * models/sam2.1-hiera-tiny-hiera_tiny_w4a8.safetensors.
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=300 ! video/x-raw,width=256,height=256 ! \
 *     videoconvert ! tee name=t \
 *     t. ! queue ! sam2calib name=cal model=models/sam2-shapes num-frames=8 output=/tmp/q \
 *     t. ! queue ! sam2seg model=models/sam2-shapes calibrator-name=cal points="128,128" ! \
 *     sam2overlay ! videoconvert ! autovideosink
 * ]| Segments with the float model at once, and with the quantized model from the frame after
 * it is written (sam2seg posts "sam2seg-model-switched").
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstsam2calib.h"
#include "gstsam2util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gst/video/video.h>

#include "recipe.h"
#include "sam2.h"

GST_DEBUG_CATEGORY_STATIC (gst_sam2_calib_debug);
#define GST_CAT_DEFAULT gst_sam2_calib_debug

#define DEFAULT_MODEL "tiny"
#define DEFAULT_CONFIG NULL
#define DEFAULT_OUTPUT "."
#define DEFAULT_NUM_FRAMES 128
#define MAX_NUM_FRAMES 100000   /* the recipe parser's limit for calib.num_samples */
#define DEFAULT_FRAME_STRIDE 1
#define MAX_FRAME_STRIDE 100000
#define DEFAULT_DEVICE GST_SAM2_CALIB_DEVICE_CPU
#define DEFAULT_PRECISION GST_SAM2_CALIB_PRECISION_FP32
#define DEFAULT_POST_MESSAGES TRUE
#define DEFAULT_CACHE_DIR NULL
#define DEFAULT_BATCH_SIZE 0    /* the recipe's calib.batch_size */

#define CACHE_INDEX_MAGIC "sam2calib-cache-index 1"

#define PROGRESS_CODE "sam2calib"

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_CONFIG,
  PROP_OUTPUT,
  PROP_NUM_FRAMES,
  PROP_FRAME_STRIDE,
  PROP_DEVICE,
  PROP_CACHE_DIR,
  PROP_POST_MESSAGES,
  PROP_BATCH_SIZE,
  PROP_PRECISION,
};

enum
{
  SIGNAL_QUANTIZED,
  LAST_SIGNAL
};

static guint gst_sam2_calib_signals[LAST_SIGNAL];

typedef enum
{
  CALIB_COLLECTING,             /* taking frames */
  CALIB_QUANTIZING,             /* the worker runs; frames are dropped */
  CALIB_DONE,                   /* file written, signal emitted */
  CALIB_FAILED,                 /* an error was posted */
  CALIB_CANCELLED,              /* stopped while quantizing: result discarded */
} CalibState;

struct _GstSam2Calib
{
  GstBaseSink parent;

  /* properties; under the object lock */
  gchar *model_ref;
  gchar *config;
  gchar *output;
  guint num_frames;
  guint frame_stride;
  guint batch_size;
  GstSam2CalibDevice device;
  GstSam2CalibPrecision precision;
  gchar *cache_dir;
  gboolean post_messages;
  gboolean started;

  /* fixed between start() and stop() */
  Sam2Model *model;
  Sam2Recipe *recipe;
  Sam2Calibrator *calibrator;
  Sam2SessionOptions run_options;       /* device: every calibrator of the run is built so */
  gchar *out_path;
  guint target, stride;
  gboolean post;
  gchar *cache;                 /* cache-dir, NULL when off */
  gchar *cache_prefix;          /* digest of model, recipe, num-frames, stride */

  /* streaming thread (and the worker, once collecting is over): the statistics cache */
  GPtrArray *frame_hashes;      /* hex sha256 of every frame taken, in order */
  GPtrArray *expected;          /* the cached set's hashes while reusing it, else NULL */
  gchar *index_path;            /* the index naming this stream's set */
  gboolean from_cache;          /* the statistics were loaded, not computed */

  /* streaming thread: the negotiated format and the conversion to RGB */
  GstVideoInfo info;
  Sam2PixelFormat format;       /* what the core reads; RGB after conversion */
  GstVideoConverter *converter; /* NULL when the core reads the input format directly */
  GstVideoInfo rgb_info;
  GstBuffer *rgb;               /* the converter's output, allocated once per caps */

  /* calibration state; under `lock`. The worker also takes the PREROLL_LOCK (to wake an EOS
   * waiting for it), never while holding `lock`. */
  GMutex lock;
  CalibState state;
  guint64 seen;                 /* buffers rendered, for the stride */
  guint collected;
  gint64 t_first;               /* monotonic time of the first frame taken */
  guint run;                    /* counts the starts: a worker's results are its run's only */
  gboolean finished;            /* the worker has done everything, signal included */
  GThread *worker;
  GCancellable *cancellable;    /* the worker's quantizer stops at its next layer when cancelled */
};

#define gst_sam2_calib_parent_class parent_class
G_DEFINE_TYPE (GstSam2Calib, gst_sam2_calib, GST_TYPE_BASE_SINK);
GST_ELEMENT_REGISTER_DEFINE (sam2calib, "sam2calib", GST_RANK_NONE, GST_TYPE_SAM2_CALIB);

#define SAM2_CALIB_FORMATS "{ " GST_SAM2_RGB_FORMATS ", NV12, I420 }"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_SAM2_VIDEO_CAPS_MAKE (SAM2_CALIB_FORMATS)));

GType
gst_sam2_calib_device_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_SAM2_CALIB_DEVICE_CPU, "CPU", "cpu"},
    {GST_SAM2_CALIB_DEVICE_CUDA,
        "CUDA GPU: the float model and the statistics on the GPU", "cuda"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstSam2CalibDevice", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_sam2_calib_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_SAM2_CALIB_PRECISION_FP32, "FP32", "fp32"},
    {GST_SAM2_CALIB_PRECISION_BF16,
          "BF16 GEMM and attention operands, FP32 accumulation (device=cuda, or a CPU with "
          "AVX-512 BF16)", "bf16"},
    {GST_SAM2_CALIB_PRECISION_FP16,
        "FP16 GEMM and attention operands, FP32 accumulation (device=cuda)", "fp16"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstSam2CalibPrecision", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* ---- messages ----------------------------------------------------------------------------- */

/* `percent` < 0: what gst_message_new_progress puts there (0, or 100 when complete) */
static void
post_progress (GstSam2Calib * self, GstProgressType type, const gchar * text, gint percent)
{
  GstMessage *msg;

  if (!self->post)
    return;
  msg = gst_message_new_progress (GST_OBJECT (self), type, PROGRESS_CODE, text);
  /* the message is new and ours alone, so its structure may still change */
  if (percent >= 0)
    gst_structure_set ((GstStructure *) gst_message_get_structure (msg), "percent", G_TYPE_INT,
        CLAMP (percent, 0, 100), NULL);
  gst_element_post_message (GST_ELEMENT (self), msg);
}

static void
post_element (GstSam2Calib * self, GstStructure * s)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

/* ---- output location ---------------------------------------------------------------------- */

static gboolean
is_file_output (const gchar * output)
{
  gsize n = strlen (output);
  return n > 12 && g_ascii_strcasecmp (output + n - 12, ".safetensors") == 0;
}

/* Checks that a file can be made in `dir` (or, where `dir` is missing, that it can be created),
 * creating nothing, so that a wrong output fails before minutes of calibration rather than
 * after. */
static gboolean
check_writable_dir (const gchar * dir, const gchar * what, GError ** error)
{
  gchar *hint = g_strdup_printf ("set %s to a writable directory", what);
  gboolean ok = sam2_check_output_dir (dir, what, hint, error);

  g_free (hint);
  return ok;
}

/* ---- statistics cache ------------------------------------------------------------------------
 *
 * The core caches statistics under a digest of the frames, which a stream only knows once the
 * frames are in; but the point of a cache is to skip the float model on them. So sam2calib
 * keeps a small index per calibration set, found from the first frame: its file lists the
 * hashes of all the set's frames. When the first frame of a run matches an index, the frames
 * are hashed and compared instead of run through the model; if all match, the statistics are
 * loaded from the core's cache. A frame that differs ends the reuse: calibration starts afresh
 * from that frame (the earlier frames were not run), with a warning. Nothing wrong is ever
 * loaded: the core's entry is keyed by the model's weights, the frames and the recipe. */

/* hex sha256 of what the calibrator is given: size, format and the visible pixels */
static gchar *
frame_hash (const guint8 * pixels, gint width, gint height, gint stride, gint bpp)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  const gint dims[3] = { width, height, bpp };
  gchar *hex;

  g_checksum_update (sum, (const guchar *) dims, sizeof dims);
  for (gint y = 0; y < height; y++)
    g_checksum_update (sum, pixels + (gsize) y * stride, (gssize) width * bpp);
  hex = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  return hex;
}

/* Everything but the frames that decides the statistics, as far as the element can tell
 * cheaply (the core's own key adds the weights' digest): the precision too, which the core's
 * key has, or a BF16 run would compare its frames against an FP32 run's index only to miss
 * the core's entry at the end. FP32 adds nothing: indexes of earlier versions stay valid. */
static gchar *
make_cache_prefix (GstSam2Calib * self, const gchar * model_ref)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  gchar *describe = sam2_model_describe (self->model);
  gchar *recipe = sam2_recipe_statistics_yaml (self->recipe);
  gchar *params = g_strdup_printf ("%u/%u", self->target, self->stride);
  gchar *hex;

  g_checksum_update (sum, (const guchar *) model_ref, -1);
  g_checksum_update (sum, (const guchar *) describe, -1);
  g_checksum_update (sum, (const guchar *) recipe, -1);
  g_checksum_update (sum, (const guchar *) params, -1);
  if (self->run_options.precision != SAM2_PRECISION_FP32)
    g_checksum_update (sum,
        (const guchar *) sam2_precision_to_string (self->run_options.precision), -1);
  hex = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  g_free (params);
  g_free (recipe);
  g_free (describe);
  return hex;
}

static gchar *
index_path_for (GstSam2Calib * self, const gchar * first_hash)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  gchar *name, *path;

  g_checksum_update (sum, (const guchar *) self->cache_prefix, -1);
  g_checksum_update (sum, (const guchar *) first_hash, -1);
  name = g_strdup_printf ("sam2calib-%.24s.index", g_checksum_get_string (sum));
  path = g_build_filename (self->cache, name, NULL);
  g_free (name);
  g_checksum_free (sum);
  return path;
}

/* The frame hashes an index lists; NULL when it is absent, not an index or longer than the
 * sets this run makes (then the run calibrates as without a cache). */
static GPtrArray *
read_index (const gchar * path, guint max_frames)
{
  gchar *text = NULL;
  gchar **lines;
  GPtrArray *hashes = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  lines = g_strsplit (text, "\n", -1);
  if (lines[0] != NULL && strcmp (lines[0], CACHE_INDEX_MAGIC) == 0) {
    hashes = g_ptr_array_new_with_free_func (g_free);
    for (gchar ** l = lines + 1; *l != NULL; l++)
      if (strlen (*l) == 64)
        g_ptr_array_add (hashes, g_strdup (*l));
    if (hashes->len == 0 || hashes->len > max_frames)
      g_clear_pointer (&hashes, g_ptr_array_unref);
  }
  g_strfreev (lines);
  g_free (text);
  return hashes;
}

/* Written after the model, atomically (g_file_set_contents): a later run finds the set. */
static void
write_index (GstSam2Calib * self, const gchar * index_path, GPtrArray * hashes)
{
  GString *text = g_string_new (CACHE_INDEX_MAGIC "\n");
  GError *error = NULL;

  for (guint i = 0; i < hashes->len; i++)
    g_string_append_printf (text, "%s\n", (const gchar *) hashes->pdata[i]);
  if (!g_file_set_contents (index_path, text->str, text->len, &error)) {
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
        ("Could not write the calibration cache index %s: %s", index_path,
            error->message), (NULL));
    g_clear_error (&error);
  }
  g_string_free (text, TRUE);
}

/* The identity of the frames taken: what the core's cache is keyed by. */
static gchar *
set_digest (GPtrArray * hashes)
{
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  gchar *hex;

  for (guint i = 0; i < hashes->len; i++)
    g_checksum_update (sum, hashes->pdata[i], -1);
  hex = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  return hex;
}

/* Points `calibrator` at the cache entry for the frames `hashes`: it loads the statistics if
 * they are there (*hit), and saves them there when it quantizes otherwise. */
static gboolean
calibrator_use_cache (Sam2Calibrator * calibrator, const gchar * cache, GPtrArray * hashes,
    gboolean * hit, GError ** error)
{
  gchar *digest = set_digest (hashes);
  gboolean ok = sam2_calibrator_use_cache (calibrator, cache, digest, hit, error);

  g_free (digest);
  return ok;
}

/* The same for the streaming thread's calibrator and frames. */
static gboolean
use_cache (GstSam2Calib * self, gboolean * hit, GError ** error)
{
  gboolean ok = calibrator_use_cache (self->calibrator, self->cache, self->frame_hashes, hit,
      error);

  if (ok && *hit)
    self->from_cache = TRUE;
  return ok;
}

/* ---- the worker --------------------------------------------------------------------------- */

/* What a quantization worker works on, its own: the run it belongs to may be torn down while
 * it works, also from its own thread (an application that stops the pipeline from the
 * "quantized" handler or from a sync bus handler on one of the worker's messages). */
typedef struct
{
  GstSam2Calib *self;           /* a reference */
  guint run;                    /* self->run when it started */
  Sam2Calibrator *calibrator;   /* taken over from the streaming thread */
  gchar *out_path;
  gchar *cache;                 /* NULL: no statistics cache */
  gboolean save_statistics;     /* computed (not loaded) statistics, for the cache */
  gchar *index_path;
  GPtrArray *frame_hashes;      /* taken over from the streaming thread */
  gboolean from_cache;
  gchar *recipe_name;
  gint64 t_first;
  GCancellable *cancellable;    /* cancelled by a stop (cancel_worker) */
} CalibJob;

static void
calib_job_free (CalibJob * job)
{
  sam2_calibrator_free (job->calibrator);
  g_free (job->out_path);
  g_free (job->cache);
  g_free (job->index_path);
  g_ptr_array_unref (job->frame_hashes);
  g_free (job->recipe_name);
  g_object_unref (job->cancellable);
  gst_object_unref (job->self);
  g_free (job);
}

/* Whether the run the job belongs to was stopped (or is over and another one started). */
static gboolean
job_cancelled_locked (CalibJob * job)
{
  return g_cancellable_is_cancelled (job->cancellable) || job->self->run != job->run;
}

static gboolean
job_cancelled (CalibJob * job)
{
  gboolean cancelled;

  g_mutex_lock (&job->self->lock);
  cancelled = job_cancelled_locked (job);
  g_mutex_unlock (&job->self->lock);
  return cancelled;
}

static void
on_quant_progress (gpointer data, const char *stage, int done, int total, const char *item,
    double error)
{
  GstSam2Calib *self = ((CalibJob *) data)->self;
  gchar *text;

  GST_DEBUG_OBJECT (self, "%s %d/%d %s error %g", stage, done, total, item ? item : "", error);
  if (!self->post)
    return;
  post_element (self, gst_structure_new ("sam2calib-layer",
          "stage", G_TYPE_STRING, stage, "layer", G_TYPE_STRING, item ? item : "",
          "done", G_TYPE_INT, done, "total", G_TYPE_INT, total,
          "error", G_TYPE_DOUBLE, error, NULL));
  text = g_strdup_printf ("%s %d/%d: %s", stage, done, total, item ? item : "");
  post_progress (self, GST_PROGRESS_TYPE_CONTINUE, text, total > 0 ? 100 * done / total : -1);
  g_free (text);
}

/* The worker's last word on its run (none once that run is over), then it lets go. */
static void
worker_finish (CalibJob * job, CalibState state)
{
  GstSam2Calib *self = job->self;
  GstBaseSink *sink = GST_BASE_SINK (self);

  g_mutex_lock (&self->lock);
  if (self->run == job->run) {
    self->state = state;
    self->finished = TRUE;
  }
  g_mutex_unlock (&self->lock);
  /* an EOS may be waiting in the event handler, on the preroll condition */
  GST_BASE_SINK_PREROLL_LOCK (sink);
  GST_BASE_SINK_PREROLL_SIGNAL (sink);
  GST_BASE_SINK_PREROLL_UNLOCK (sink);
  calib_job_free (job);
}

/* Saves `q` (atomically, by the core) to a new hidden file beside `path`; its name, or NULL. */
static gchar *
save_staging (Sam2Model * q, const gchar * path, GError ** error)
{
  gchar *dir = g_path_get_dirname (path);
  gchar *base = g_path_get_basename (path);
  gchar *name = g_strdup_printf (".%.200s.sam2calib-XXXXXX", base);
  gchar *staging = g_build_filename (dir, name, NULL);
  gint fd = g_mkstemp (staging);

  g_free (name);
  g_free (base);
  g_free (dir);
  if (fd < 0) {
    const gint err = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err),
        "cannot create a file beside it: %s", g_strerror (err));
    g_free (staging);
    return NULL;
  }
  close (fd);
  if (!sam2_model_save (q, staging, error)) {
    g_unlink (staging);
    g_free (staging);
    return NULL;
  }
  return staging;
}

/* The rename is durable once the directory is synced (the core syncs it for its own rename). */
static void
sync_directory (GstSam2Calib * self, const gchar * path)
{
  gchar *dir = g_path_get_dirname (path);
  gint fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd >= 0) {
    if (fsync (fd) != 0 && errno != EINVAL)
      GST_WARNING_OBJECT (self, "could not sync %s: %s; %s may not survive a power loss",
          dir, g_strerror (errno), path);
    close (fd);
  }
  g_free (dir);
}

static gpointer
quantize_thread (gpointer data)
{
  CalibJob *job = data;
  GstSam2Calib *self = job->self;
  GError *error = NULL;
  Sam2Model *q;
  gchar *staging;
  gboolean cancelled = FALSE;
  gchar *out_dir, *created = NULL;
  guint n;
  GStatBuf st;
  gdouble seconds;

  if (job->save_statistics) {
    /* computed statistics: saved to the cache when quantizing (a hit loads the same ones) */
    gboolean hit = FALSE;
    if (!calibrator_use_cache (job->calibrator, job->cache, job->frame_hashes, &hit, &error)) {
      GST_ELEMENT_WARNING (self, RESOURCE, WRITE, ("Not caching the statistics: %s",
              error->message), (NULL));
      g_clear_error (&error);
    }
  }
  n = (guint) sam2_calibrator_get_n_frames (job->calibrator);
  GST_INFO_OBJECT (self, "quantizing from %u frames with recipe \"%s\"%s", n,
      job->recipe_name, job->from_cache ? " (statistics from the cache)" : "");
  q = sam2_calibrator_quantize_cancellable (job->calibrator, on_quant_progress, job,
      job->cancellable, &error);

  if (job_cancelled (job)) {
    /* stop() came while the quantizer ran: nothing was written, nothing is */
    GST_INFO_OBJECT (self, "stopped while quantizing: discarding the result");
    post_progress (self, GST_PROGRESS_TYPE_CANCELED, "calibration cancelled", -1);
    g_clear_error (&error);
    if (q)
      sam2_model_unref (q);
    worker_finish (job, CALIB_CANCELLED);
    return NULL;
  }
  if (q == NULL) {
    GST_ELEMENT_ERROR (self, LIBRARY, FAILED, ("Quantization failed: %s", error->message),
        ("sam2_calibrator_quantize: %s %d", g_quark_to_string (error->domain), error->code));
    post_progress (self, GST_PROGRESS_TYPE_ERROR, error->message, -1);
    g_clear_error (&error);
    worker_finish (job, CALIB_FAILED);
    return NULL;
  }
  /* Written beside the output under another name, and renamed into place only if no stop
   * came meanwhile (the rename under the lock cancel_worker takes): a stop during the write
   * leaves nothing at the output path, not even the loss of an older file there. */
  post_progress (self, GST_PROGRESS_TYPE_CONTINUE, "writing the quantized model", 100);
  out_dir = g_path_get_dirname (job->out_path);
  staging = sam2_output_dir_create (out_dir, &created, &error)
      ? save_staging (q, job->out_path, &error) : NULL;
  sam2_model_unref (q);
  if (staging != NULL) {
    g_mutex_lock (&self->lock);
    cancelled = job_cancelled_locked (job);
    if (!cancelled && g_rename (staging, job->out_path) != 0) {
      const gint err = errno;
      g_set_error (&error, G_FILE_ERROR, g_file_error_from_errno (err),
          "cannot rename %s to it: %s", staging, g_strerror (err));
    }
    g_mutex_unlock (&self->lock);
    if (cancelled || error != NULL)
      g_unlink (staging);
    g_free (staging);
  }
  /* nothing written: the directories made for it go too */
  if (cancelled || error != NULL)
    sam2_output_dir_remove_created (out_dir, created);
  g_free (created);
  g_free (out_dir);
  if (cancelled) {
    GST_INFO_OBJECT (self, "stopped while writing: %s not written", job->out_path);
    post_progress (self, GST_PROGRESS_TYPE_CANCELED, "calibration cancelled", -1);
    worker_finish (job, CALIB_CANCELLED);
    return NULL;
  }
  if (error != NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
        ("Could not write the quantized model to %s: %s", job->out_path, error->message),
        (NULL));
    post_progress (self, GST_PROGRESS_TYPE_ERROR, error->message, -1);
    g_clear_error (&error);
    worker_finish (job, CALIB_FAILED);
    return NULL;
  }
  sync_directory (self, job->out_path);
  /* an index only beside its statistics: one without them sent the next run over the same
   * frames into comparing them instead of running the model, for nothing */
  if (job->cache != NULL && sam2_calibrator_statistics_cached (job->calibrator))
    write_index (self, job->index_path, job->frame_hashes);
  else if (job->cache != NULL)
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
        ("The calibration statistics could not be saved in %s (see the log): the next run "
            "over these frames calibrates again", job->cache), (NULL));

  seconds = (g_get_monotonic_time () - job->t_first) / 1e6;
  if (g_stat (job->out_path, &st) != 0)
    st.st_size = 0;
  GST_INFO_OBJECT (self, "wrote %s (%" G_GINT64_FORMAT " bytes) from %u frames in %.1f s",
      job->out_path, (gint64) st.st_size, n, seconds);
  post_progress (self, GST_PROGRESS_TYPE_COMPLETE, job->out_path, -1);
  post_element (self, gst_structure_new ("sam2calib-done",
          "path", G_TYPE_STRING, job->out_path, "n-frames", G_TYPE_UINT, n,
          "seconds", G_TYPE_DOUBLE, seconds, "size", G_TYPE_UINT64, (guint64) st.st_size,
          "cached", G_TYPE_BOOLEAN, job->from_cache,
          "backend", G_TYPE_STRING, sam2_calibrator_describe_backend (job->calibrator),
          NULL));
  g_signal_emit (self, gst_sam2_calib_signals[SIGNAL_QUANTIZED], 0, job->out_path);
  worker_finish (job, CALIB_DONE);
  return NULL;
}

/* Called with `lock` held, state just set to CALIB_QUANTIZING: the calibrator and the frame
 * hashes go to the worker (no frame is taken any more in this run). */
static gboolean
start_worker_locked (GstSam2Calib * self)
{
  GError *error = NULL;
  CalibJob *job = g_new0 (CalibJob, 1);

  job->self = gst_object_ref (self);
  job->run = self->run;
  job->calibrator = g_steal_pointer (&self->calibrator);
  job->out_path = g_strdup (self->out_path);
  job->cache = g_strdup (self->cache);
  job->save_statistics = self->cache != NULL && self->expected == NULL;
  job->index_path = g_strdup (self->index_path);
  job->frame_hashes = self->frame_hashes;
  self->frame_hashes = g_ptr_array_new_with_free_func (g_free);
  job->from_cache = self->from_cache;
  job->recipe_name = g_strdup (self->recipe->name);
  job->t_first = self->t_first;
  job->cancellable = g_cancellable_new ();
  g_clear_object (&self->cancellable);
  self->cancellable = g_object_ref (job->cancellable);

  self->worker = g_thread_try_new ("sam2calib", quantize_thread, job, &error);
  if (self->worker == NULL) {
    self->state = CALIB_FAILED;
    g_mutex_unlock (&self->lock);
    calib_job_free (job);
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
        ("Could not start the quantization thread: %s", error->message), (NULL));
    g_clear_error (&error);
    g_mutex_lock (&self->lock);
    return FALSE;
  }
  return TRUE;
}

/* ---- streaming ---------------------------------------------------------------------------- */

static gboolean
gst_sam2_calib_set_caps (GstBaseSink * sink, GstCaps * caps)
{
  GstSam2Calib *self = GST_SAM2_CALIB (sink);
  GstVideoInfo info;
  GstVideoFormat f;

  if (!gst_video_info_from_caps (&info, caps)) {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, caps);
    return FALSE;
  }
  g_clear_pointer (&self->converter, gst_video_converter_free);
  gst_clear_buffer (&self->rgb);
  f = GST_VIDEO_INFO_FORMAT (&info);
  if (!gst_sam2_pixel_format_from_video (f, &self->format)) {
    if (f != GST_VIDEO_FORMAT_NV12 && f != GST_VIDEO_FORMAT_I420) {
      GST_ERROR_OBJECT (self, "unsupported format in %" GST_PTR_FORMAT, caps);
      return FALSE;
    }
    /* the core reads packed RGB only: YUV goes through one converter and one buffer,
     * both made here, once per caps */
    gst_video_info_set_format (&self->rgb_info, GST_VIDEO_FORMAT_RGB,
        GST_VIDEO_INFO_WIDTH (&info), GST_VIDEO_INFO_HEIGHT (&info));
    /* the converter scales nothing and insists on equal rates and interlacing */
    GST_VIDEO_INFO_FPS_N (&self->rgb_info) = GST_VIDEO_INFO_FPS_N (&info);
    GST_VIDEO_INFO_FPS_D (&self->rgb_info) = GST_VIDEO_INFO_FPS_D (&info);
    GST_VIDEO_INFO_PAR_N (&self->rgb_info) = GST_VIDEO_INFO_PAR_N (&info);
    GST_VIDEO_INFO_PAR_D (&self->rgb_info) = GST_VIDEO_INFO_PAR_D (&info);
    GST_VIDEO_INFO_INTERLACE_MODE (&self->rgb_info) = GST_VIDEO_INFO_INTERLACE_MODE (&info);
    self->converter = gst_video_converter_new (&info, &self->rgb_info, NULL);
    if (self->converter == NULL) {
      GST_ERROR_OBJECT (self, "no conversion from %s to RGB", GST_VIDEO_INFO_NAME (&info));
      return FALSE;
    }
    /* tried: gst_buffer_new_allocate aborts the process when memory runs out */
    const gsize size = GST_VIDEO_INFO_SIZE (&self->rgb_info);
    gpointer data = g_try_malloc (size);
    if (data == NULL) {
      GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Out of memory for the RGB copy of %dx%d "
              "frames (%" G_GSIZE_FORMAT " bytes).", GST_VIDEO_INFO_WIDTH (&info),
              GST_VIDEO_INFO_HEIGHT (&info), size), (NULL));
      g_clear_pointer (&self->converter, gst_video_converter_free);
      return FALSE;
    }
    self->rgb = gst_buffer_new_wrapped_full (0, data, size, 0, size, data, g_free);
    self->format = SAM2_PIXEL_FORMAT_RGB;
  }
  self->info = info;
  GST_DEBUG_OBJECT (self, "%dx%d %s%s", GST_VIDEO_INFO_WIDTH (&info),
      GST_VIDEO_INFO_HEIGHT (&info), GST_VIDEO_INFO_NAME (&info),
      self->converter ? " (converted to RGB)" : "");
  return TRUE;
}

/* A fresh calibrator on the device the run was started with (run_options), with no frame
 * hashed and no cached set to compare with. */
static gboolean
new_calibrator (GstSam2Calib * self, GError ** error)
{
  g_clear_pointer (&self->calibrator, sam2_calibrator_free);
  g_ptr_array_set_size (self->frame_hashes, 0);
  g_clear_pointer (&self->expected, g_ptr_array_unref);
  self->calibrator = sam2_calibrator_new_full (self->model, self->recipe, &self->run_options,
      error);
  if (self->calibrator != NULL)
    GST_INFO_OBJECT (self, "calibrator on %s",
        sam2_calibrator_describe_backend (self->calibrator));
  return self->calibrator != NULL;
}

/* Sets the state, under the lock. */
static void
set_state (GstSam2Calib * self, CalibState state)
{
  g_mutex_lock (&self->lock);
  self->state = state;
  g_mutex_unlock (&self->lock);
}

/* A new calibration for the frames from now on: after a frame that breaks the reuse of a
 * cached set (the frames before it were only hashed). */
static gboolean
restart_collection (GstSam2Calib * self, GError ** error)
{
  new_calibrator (self, error);
  g_mutex_lock (&self->lock);
  self->collected = 0;
  g_mutex_unlock (&self->lock);
  return self->calibrator != NULL;
}

/* Whether the core's cache holds the statistics of the set self->expected lists. */
static gboolean
index_statistics_present (GstSam2Calib * self)
{
  gchar *digest = set_digest (self->expected);
  gboolean present = sam2_calibrator_cache_contains (self->calibrator, self->cache, digest);

  g_free (digest);
  return present;
}

/* With a cache, for the frame hashed `hash`: the first frame looks up the cached set it starts;
 * while one is reused, *matched says whether this frame is the set's next. A frame that is not
 * ends the reuse and calibration restarts from it; FALSE when that restart fails. */
static gboolean
match_cached_set (GstSam2Calib * self, const gchar * hash, gboolean * matched, GError ** error)
{
  const guint k = self->frame_hashes->len;

  *matched = FALSE;
  if (k == 0) {
    /* the first frame names the set: a run over the same frames finds its index */
    g_free (self->index_path);
    self->index_path = index_path_for (self, hash);
    self->expected = read_index (self->index_path, self->target);
    if (self->expected != NULL && !index_statistics_present (self)) {
      /* the statistics were deleted (to free space) or never saved: comparing the frames
       * would end in a restart at the set's last frame, with the stream gone by then */
      GST_INFO_OBJECT (self, "the cached calibration set %s has no statistics in %s: "
          "removing it and calibrating", self->index_path, self->cache);
      g_unlink (self->index_path);
      g_clear_pointer (&self->expected, g_ptr_array_unref);
    }
    if (self->expected != NULL)
      GST_INFO_OBJECT (self, "the first frame starts the cached calibration set %s (%u "
          "frames): comparing frames instead of running the model", self->index_path,
          self->expected->len);
  }
  if (self->expected == NULL)
    return TRUE;
  if (k < self->expected->len && strcmp (hash, self->expected->pdata[k]) == 0) {
    *matched = TRUE;
    return TRUE;
  }
  if (k == self->expected->len)
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("The stream goes on past the cached calibration set %s, which an end of stream cut "
            "at %u frames (num-frames=%u): calibrating from this frame on (the %u frames "
            "before it were only compared, not run)", self->index_path, k, self->target, k),
        (NULL));
  else
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("Frame %u differs from the cached calibration set %s: calibrating from this frame "
            "on (the %u frames before it were only compared, not run)", k + 1,
            self->index_path, k), (NULL));
  if (!restart_collection (self, error))
    return FALSE;
  g_free (self->index_path);
  self->index_path = index_path_for (self, hash);
  return TRUE;
}

/* Takes one frame: hashes it when caching; while reusing a cached set, compares it with the
 * set's next frame; otherwise runs the float model with observers on it. */
static gboolean
take_frame (GstSam2Calib * self, GstBuffer * buf, GError ** error)
{
  GstVideoFrame in, rgb;
  GstVideoFrame *f = &in;       /* the frame the core reads: `in`, or `rgb` when converted */
  const guint8 *pixels;
  gint width, height, stride;
  gchar *hash = NULL;
  gboolean ok = TRUE, matched = FALSE;

  if (!gst_video_frame_map (&in, &self->info, buf, GST_MAP_READ)) {
    g_set_error (error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
        "could not map the video frame for reading");
    return FALSE;
  }
  if (self->converter != NULL) {
    if (!gst_video_frame_map (&rgb, &self->rgb_info, self->rgb, GST_MAP_WRITE)) {
      gst_video_frame_unmap (&in);
      g_set_error (error, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
          "could not map the RGB conversion buffer");
      return FALSE;
    }
    gst_video_converter_frame (self->converter, &in, &rgb);
    gst_video_frame_unmap (&in);
    f = &rgb;
  }
  pixels = GST_VIDEO_FRAME_PLANE_DATA (f, 0);
  width = GST_VIDEO_FRAME_WIDTH (f);
  height = GST_VIDEO_FRAME_HEIGHT (f);
  stride = GST_VIDEO_FRAME_PLANE_STRIDE (f, 0);

  if (self->cache != NULL) {
    hash = frame_hash (pixels, width, height, stride, GST_VIDEO_FRAME_COMP_PSTRIDE (f, 0));
    ok = match_cached_set (self, hash, &matched, error);
  }
  if (ok && !matched)
    ok = sam2_calibrator_add_image (self->calibrator, pixels, width, height, stride,
        self->format, error);
  if (ok && hash != NULL) {
    g_ptr_array_add (self->frame_hashes, hash);
    hash = NULL;
  }
  gst_video_frame_unmap (f);
  g_free (hash);
  return ok;
}

/* Whether a reused cached set is complete: all its frames seen (a set cut short by EOS in the
 * run that made it is complete at that length). */
static gboolean
cached_set_complete (GstSam2Calib * self)
{
  return self->expected != NULL && self->frame_hashes->len == self->expected->len;
}

static GstFlowReturn
gst_sam2_calib_render (GstBaseSink * sink, GstBuffer * buf)
{
  GstSam2Calib *self = GST_SAM2_CALIB (sink);
  GError *error = NULL;
  CalibState state;
  gboolean take, full;
  guint n;

  g_mutex_lock (&self->lock);
  state = self->state;
  take = state == CALIB_COLLECTING && self->seen % self->stride == 0;
  if (state == CALIB_COLLECTING)
    self->seen++;
  g_mutex_unlock (&self->lock);
  if (state == CALIB_FAILED)
    return GST_FLOW_ERROR;
  if (!take) {
    /* past num-frames (or between strides): dropped, and OK so that a tee keeps feeding the
     * other branches */
    GST_LOG_OBJECT (self, "dropping %" GST_PTR_FORMAT, buf);
    return GST_FLOW_OK;
  }

  if (!take_frame (self, buf, &error)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Could not run the float model on a calibration frame: %s", error->message),
        (NULL));
    g_clear_error (&error);
    set_state (self, CALIB_FAILED);
    return GST_FLOW_ERROR;
  }

  g_mutex_lock (&self->lock);
  n = ++self->collected;
  if (n == 1)
    self->t_first = g_get_monotonic_time ();
  full = n >= self->target;
  g_mutex_unlock (&self->lock);

  GST_DEBUG_OBJECT (self, "calibration frame %u/%u (%" GST_TIME_FORMAT ")", n, self->target,
      GST_TIME_ARGS (GST_BUFFER_PTS (buf)));
  if (n == 1)
    post_progress (self, GST_PROGRESS_TYPE_START, "collecting calibration frames", -1);
  if (self->post)
    post_element (self, gst_structure_new ("sam2calib-progress",
            "frames", G_TYPE_UINT, n, "total", G_TYPE_UINT, self->target, NULL));

  if (full && self->expected != NULL) {
    gboolean hit = FALSE;
    if (!use_cache (self, &hit, &error) || !hit) {
      /* the statistics are gone (or the weights changed under the same name): the frames
       * were only compared, so start over from the next one */
      GST_ELEMENT_WARNING (self, RESOURCE, NOT_FOUND,
          ("The cached calibration set %s matched, but its statistics are not in %s%s%s: "
              "calibrating from the next frame on", self->index_path, self->cache,
              error ? ": " : "", error ? error->message : ""), (NULL));
      g_clear_error (&error);
      g_unlink (self->index_path);
      if (!restart_collection (self, &error)) {
        GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Cannot calibrate again: %s",
                error->message), (NULL));
        g_clear_error (&error);
        set_state (self, CALIB_FAILED);
        return GST_FLOW_ERROR;
      }
      return GST_FLOW_OK;
    }
  }
  if (full) {
    gboolean ok;
    post_progress (self, GST_PROGRESS_TYPE_CONTINUE, "quantizing", 0);
    g_mutex_lock (&self->lock);
    self->state = CALIB_QUANTIZING;
    ok = start_worker_locked (self);
    g_mutex_unlock (&self->lock);
    if (!ok)
      return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

static gboolean
gst_sam2_calib_event (GstBaseSink * sink, GstEvent * event)
{
  GstSam2Calib *self = GST_SAM2_CALIB (sink);
  CalibState state;
  guint collected;

  if (GST_EVENT_TYPE (event) != GST_EVENT_EOS)
    return GST_BASE_SINK_CLASS (parent_class)->event (sink, event);

  /* Called with the PREROLL_LOCK held (serialized event). */
  g_mutex_lock (&self->lock);
  collected = self->collected;
  if (self->state == CALIB_COLLECTING && collected > 0 && self->expected != NULL) {
    /* reusing a cached set: its statistics or nothing (the frames were only compared) */
    gboolean hit = FALSE;
    GError *error = NULL;
    g_mutex_unlock (&self->lock);
    if (!cached_set_complete (self) || !use_cache (self, &hit, &error) || !hit) {
      GST_ELEMENT_ERROR (self, STREAM, FAILED,
          ("The stream ended after %u frames matching the cached calibration set %s (%u "
              "frames), %s; those frames were only compared, not run. The index is removed: "
              "run again to calibrate from the frames.", collected, self->index_path,
              self->expected->len, cached_set_complete (self) ?
              "but its statistics are missing" : "before the set was complete"),
          ("%s", error ? error->message : ""));
      g_clear_error (&error);
      g_unlink (self->index_path);
      set_state (self, CALIB_FAILED);
      gst_event_unref (event);
      return FALSE;
    }
    g_mutex_lock (&self->lock);
  }
  if (self->state == CALIB_COLLECTING && collected > 0) {
    GST_INFO_OBJECT (self, "EOS after %u of %u frames: quantizing from those", collected,
        self->target);
    self->state = CALIB_QUANTIZING;
    g_mutex_unlock (&self->lock);
    post_progress (self, GST_PROGRESS_TYPE_CONTINUE, "quantizing", 0);
    g_mutex_lock (&self->lock);
    if (!start_worker_locked (self)) {
      g_mutex_unlock (&self->lock);
      gst_event_unref (event);
      return FALSE;
    }
  }
  state = self->state;
  g_mutex_unlock (&self->lock);

  if (state == CALIB_FAILED) {
    /* the error is on the bus already */
    gst_event_unref (event);
    return FALSE;
  }
  if (state == CALIB_COLLECTING) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("no calibration frames arrived before end of stream: sam2calib needs at least one "
            "frame (num-frames=%u); check that the source produces video and that "
            "frame-stride (%u) is not larger than the stream", self->target, self->stride),
        (NULL));
    gst_event_unref (event);
    return FALSE;
  }

  /* GstBaseSink marks the EOS received, then holds it in wait_event (below) until the file is
   * written */
  return GST_BASE_SINK_CLASS (parent_class)->event (sink, event);
}

/* Holds EOS until the file is written: GstBaseSink posts the EOS message when this returns OK,
 * and an application waiting for it must find the model there. Here, after GstBaseSink has
 * marked the EOS received, and not in the event handler before it: a sink that has not seen
 * EOS still needs preroll, so a PLAYING to PAUSED change during the wait went ASYNC until the
 * quantization ended. The wait releases the PREROLL_LOCK like GstBaseSink's own preroll wait,
 * so state changes and flushes are not blocked; a flush or stop wakes it through the same
 * condition. */
static GstFlowReturn
gst_sam2_calib_wait_event (GstBaseSink * sink, GstEvent * event)
{
  GstSam2Calib *self = GST_SAM2_CALIB (sink);
  GstFlowReturn ret = GST_BASE_SINK_CLASS (parent_class)->wait_event (sink, event);
  CalibState state;

  if (ret != GST_FLOW_OK || GST_EVENT_TYPE (event) != GST_EVENT_EOS)
    return ret;
  for (;;) {
    gboolean finished;
    g_mutex_lock (&self->lock);
    finished = self->finished;
    state = self->state;
    g_mutex_unlock (&self->lock);
    if (finished || sink->flushing)
      break;
    GST_DEBUG_OBJECT (self, "EOS waits for the quantization to finish");
    GST_BASE_SINK_PREROLL_WAIT (sink);
  }
  if (sink->flushing) {
    GST_DEBUG_OBJECT (self, "EOS not forwarded: flushing");
    return GST_FLOW_FLUSHING;
  }
  if (state != CALIB_DONE) {
    GST_DEBUG_OBJECT (self, "EOS not forwarded: calibration failed or was cancelled");
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

/* ---- start / stop ------------------------------------------------------------------------- */

/* Releases what setup_run() set up: calibrator, model, recipe and the output and cache
 * locations. */
static void
clear_run (GstSam2Calib * self)
{
  g_clear_pointer (&self->calibrator, sam2_calibrator_free);
  g_clear_pointer (&self->model, sam2_model_unref);
  g_clear_pointer (&self->recipe, sam2_recipe_free);
  g_clear_pointer (&self->out_path, g_free);
  g_clear_pointer (&self->cache, g_free);
  g_clear_pointer (&self->cache_prefix, g_free);
}

/* READY -> PAUSED, before the sink pad is activated: takes the properties and checks all of
 * them, so that a wrong setting fails before the first frame. Not GstBaseSink's start(),
 * which runs at NULL -> READY: the properties stay settable in READY, as their flags say. */
static gboolean
setup_run (GstSam2Calib * self)
{
  gchar *model_ref, *config, *output, *dir = NULL;
  GstSam2CalibDevice device;
  GstSam2CalibPrecision precision;
  guint batch_size;
  GError *error = NULL;

  GST_OBJECT_LOCK (self);
  model_ref = g_strdup (self->model_ref);
  config = g_strdup (self->config);
  output = g_strdup (self->output);
  self->cache = self->cache_dir && *self->cache_dir ? g_strdup (self->cache_dir) : NULL;
  device = self->device;
  precision = self->precision;
  self->target = self->num_frames;
  self->stride = self->frame_stride;
  self->post = self->post_messages;
  batch_size = self->batch_size;
  /* from here on a property change would not be used: refused, with a warning */
  self->started = TRUE;
  GST_OBJECT_UNLOCK (self);

  /* recipe first: the cheapest check, and its errors name key, line and column */
  if (config != NULL && *config != '\0') {
    self->recipe = sam2_recipe_load (config, &error);
    if (self->recipe == NULL) {
      if (g_error_matches (error, SAM2_ERROR, SAM2_ERROR_IO))
        GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
            ("Could not read the recipe %s: %s", config, error->message), (NULL));
      else
        GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
            ("Invalid calibration recipe: %s", error->message),
            ("fix the key named above, or leave config unset for the default recipe"));
      g_clear_error (&error);
      goto fail;
    }
  } else {
    self->recipe = g_new0 (Sam2Recipe, 1);
    sam2_recipe_init_defaults (self->recipe);
  }
  /* num-frames decides, and the file's provenance records it */
  self->recipe->calib.num_samples = (int) self->target;
  if (batch_size > 0)
    self->recipe->calib.batch_size = (int) batch_size;

  if (!gst_sam2_model_ref_check (GST_ELEMENT (self), GST_CAT_DEFAULT, model_ref))
    goto fail;

  if (output == NULL || *output == '\0') {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("No output given: set output to a directory or a .safetensors file path."), (NULL));
    goto fail;
  }
  if (is_file_output (output)) {
    dir = g_path_get_dirname (output);
    self->out_path = g_strdup (output);
  } else {
    /* named as `sam2q quantize` names its files */
    gchar *file = sam2_quantized_file_name (model_ref, self->recipe);
    dir = g_strdup (output);
    self->out_path = g_build_filename (output, file, NULL);
    g_free (file);
  }
  if (g_file_test (self->out_path, G_FILE_TEST_IS_DIR)) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
        ("The output %s is a directory; a .safetensors output must name a file.",
            self->out_path), (NULL));
    goto fail;
  }
  if (!check_writable_dir (dir, "output", &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE, ("%s", error->message), (NULL));
    g_clear_error (&error);
    goto fail;
  }

  /* on CUDA the float model and the layer statistics stay on the GPU; every calibrator of
   * this run (a restart after a cached set broke off included) is built with these */
  self->run_options.backend = device == GST_SAM2_CALIB_DEVICE_CUDA ? SAM2_BACKEND_CUDA
      : SAM2_BACKEND_CPU;
  self->run_options.precision = precision == GST_SAM2_CALIB_PRECISION_BF16 ? SAM2_PRECISION_BF16
      : precision == GST_SAM2_CALIB_PRECISION_FP16 ? SAM2_PRECISION_FP16 : SAM2_PRECISION_FP32;
  self->run_options.max_batch = 1;
  /* a 16-bit precision the device cannot give: said as such (an unavailable device=cuda is
   * the calibrator's to report, below) */
  if (precision != GST_SAM2_CALIB_PRECISION_FP32
      && sam2_backend_available (self->run_options.backend, NULL)
      && !sam2_precision_available (self->run_options.backend,
          self->run_options.precision, &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("precision=%s: %s. Use precision=fp32, or "
            "device=cuda.", sam2_precision_to_string (self->run_options.precision),
            error->message), (NULL));
    g_clear_error (&error);
    goto fail;
  }
  self->model = gst_sam2_load_model (GST_ELEMENT (self), GST_CAT_DEFAULT, model_ref);
  if (self->model == NULL)
    goto fail;
  if (!new_calibrator (self, &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot calibrate \"%s\": %s", model_ref, error->message), (NULL));
    g_clear_error (&error);
    goto fail;
  }
  if (self->cache != NULL) {
    /* a cache directory is made at once: it outlives runs, failed ones too */
    gchar *created = NULL;
    gboolean made = sam2_output_dir_create (self->cache, &created, &error);

    g_free (created);
    if (!made || !check_writable_dir (self->cache, "cache-dir", &error)) {
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE, ("%s", error->message), (NULL));
      g_clear_error (&error);
      goto fail;
    }
    self->cache_prefix = make_cache_prefix (self, model_ref);
  }
  g_ptr_array_set_size (self->frame_hashes, 0);
  g_clear_pointer (&self->expected, g_ptr_array_unref);
  g_clear_pointer (&self->index_path, g_free);
  self->from_cache = FALSE;

  g_mutex_lock (&self->lock);
  self->run++;
  self->state = CALIB_COLLECTING;
  self->seen = 0;
  self->collected = 0;
  self->finished = FALSE;
  self->worker = NULL;
  g_mutex_unlock (&self->lock);
  GST_INFO_OBJECT (self, "calibrating \"%s\" with recipe \"%s\" on %u frames (every %u%s), "
      "writing %s", model_ref, self->recipe->name, self->target, self->stride,
      self->stride == 1 ? "" : " frames", self->out_path);

  g_free (model_ref);
  g_free (config);
  g_free (output);
  g_free (dir);
  return TRUE;

fail:
  clear_run (self);
  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  GST_OBJECT_UNLOCK (self);
  g_free (model_ref);
  g_free (config);
  g_free (output);
  g_free (dir);
  return FALSE;
}

/* Cancels a quantization under way and waits for it: the quantizer stops at its next layer
 * (the core's cancellation points), and the worker checks its cancellable before writing
 * anything. */
static void
cancel_worker (GstSam2Calib * self)
{
  GThread *worker;

  g_mutex_lock (&self->lock);
  worker = self->worker;
  self->worker = NULL;
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_mutex_unlock (&self->lock);
  if (worker == NULL)
    return;
  if (worker == g_thread_self ()) {
    /* The stop comes from the worker itself: an application that stops the pipeline from the
     * "quantized" handler or from a sync bus handler on one of the worker's messages. Joining
     * would wait for this very thread. The worker works on its own job and holds a reference
     * to the element, so it finishes (its quantizer at the next layer) after the run is torn
     * down; dropping the last reference to its GThread before it ends detaches it, so nothing
     * is left to join. */
    GST_DEBUG_OBJECT (self, "stopped from the quantization thread: not waiting for itself");
    g_thread_unref (worker);
    return;
  }
  GST_DEBUG_OBJECT (self, "waiting for the quantization thread");
  g_thread_join (worker);
}

/* PAUSED -> READY, once streaming has stopped (the sink pad is deactivated): a quantization
 * still running is cancelled, and everything of the run goes; the next start takes the
 * properties afresh and starts from no frames. Builds nothing and cannot fail: a pipeline can
 * always shut down. */
static void
teardown_run (GstSam2Calib * self)
{
  cancel_worker (self);
  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  GST_OBJECT_UNLOCK (self);
  clear_run (self);
  g_ptr_array_set_size (self->frame_hashes, 0);
  g_clear_pointer (&self->expected, g_ptr_array_unref);
  g_clear_pointer (&self->index_path, g_free);
  self->from_cache = FALSE;
  g_clear_pointer (&self->converter, gst_video_converter_free);
  gst_clear_buffer (&self->rgb);
  gst_video_info_init (&self->info);
}

static GstStateChangeReturn
gst_sam2_calib_change_state (GstElement * element, GstStateChange transition)
{
  GstSam2Calib *self = GST_SAM2_CALIB (element);
  GstStateChangeReturn ret;

  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && !setup_run (self))
    return GST_STATE_CHANGE_FAILURE;
  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY
      || (transition == GST_STATE_CHANGE_READY_TO_PAUSED
          && ret == GST_STATE_CHANGE_FAILURE))
    teardown_run (self);
  return ret;
}

/* ---- GObject ------------------------------------------------------------------------------ */

static gboolean
refuse_while_running (GstSam2Calib * self, const gchar * name)
{
  gboolean started;

  GST_OBJECT_LOCK (self);
  started = self->started;
  GST_OBJECT_UNLOCK (self);
  if (started)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("The %s property cannot change while sam2calib runs; set it in the NULL or READY "
            "state. Keeping the current value.", name), (NULL));
  return started;
}

static void
gst_sam2_calib_set_property (GObject * object, guint prop_id, const GValue * value,
    GParamSpec * pspec)
{
  GstSam2Calib *self = GST_SAM2_CALIB (object);

  if (refuse_while_running (self, pspec->name))
    return;
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_free (self->model_ref);
      self->model_ref = g_value_dup_string (value);
      break;
    case PROP_CONFIG:
      g_free (self->config);
      self->config = g_value_dup_string (value);
      break;
    case PROP_OUTPUT:
      g_free (self->output);
      self->output = g_value_dup_string (value);
      break;
    case PROP_NUM_FRAMES:
      self->num_frames = g_value_get_uint (value);
      break;
    case PROP_FRAME_STRIDE:
      self->frame_stride = g_value_get_uint (value);
      break;
    case PROP_DEVICE:
      self->device = g_value_get_enum (value);
      break;
    case PROP_PRECISION:
      self->precision = g_value_get_enum (value);
      break;
    case PROP_CACHE_DIR:
      g_free (self->cache_dir);
      self->cache_dir = g_value_dup_string (value);
      break;
    case PROP_POST_MESSAGES:
      self->post_messages = g_value_get_boolean (value);
      break;
    case PROP_BATCH_SIZE:
      self->batch_size = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sam2_calib_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstSam2Calib *self = GST_SAM2_CALIB (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model_ref);
      break;
    case PROP_CONFIG:
      g_value_set_string (value, self->config);
      break;
    case PROP_OUTPUT:
      g_value_set_string (value, self->output);
      break;
    case PROP_NUM_FRAMES:
      g_value_set_uint (value, self->num_frames);
      break;
    case PROP_FRAME_STRIDE:
      g_value_set_uint (value, self->frame_stride);
      break;
    case PROP_DEVICE:
      g_value_set_enum (value, self->device);
      break;
    case PROP_PRECISION:
      g_value_set_enum (value, self->precision);
      break;
    case PROP_CACHE_DIR:
      g_value_set_string (value, self->cache_dir);
      break;
    case PROP_POST_MESSAGES:
      g_value_set_boolean (value, self->post_messages);
      break;
    case PROP_BATCH_SIZE:
      g_value_set_uint (value, self->batch_size);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sam2_calib_finalize (GObject * object)
{
  GstSam2Calib *self = GST_SAM2_CALIB (object);

  g_free (self->model_ref);
  g_free (self->config);
  g_free (self->output);
  g_free (self->cache_dir);
  g_ptr_array_unref (self->frame_hashes);
  g_clear_object (&self->cancellable);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_sam2_calib_init (GstSam2Calib * self)
{
  self->model_ref = g_strdup (DEFAULT_MODEL);
  self->config = g_strdup (DEFAULT_CONFIG);
  self->output = g_strdup (DEFAULT_OUTPUT);
  self->num_frames = DEFAULT_NUM_FRAMES;
  self->batch_size = DEFAULT_BATCH_SIZE;
  self->frame_stride = DEFAULT_FRAME_STRIDE;
  self->device = DEFAULT_DEVICE;
  self->precision = DEFAULT_PRECISION;
  self->post_messages = DEFAULT_POST_MESSAGES;
  self->cache_dir = g_strdup (DEFAULT_CACHE_DIR);
  self->frame_hashes = g_ptr_array_new_with_free_func (g_free);
  g_mutex_init (&self->lock);
  gst_video_info_init (&self->info);

  /* calibration wants every frame as fast as the model takes them, not at clock time */
  gst_base_sink_set_sync (GST_BASE_SINK (self), FALSE);
  gst_base_sink_set_qos_enabled (GST_BASE_SINK (self), FALSE);
  /* holding on to the last frame would only keep a buffer from its pool */
  gst_base_sink_set_last_sample_enabled (GST_BASE_SINK (self), FALSE);
}

static void
gst_sam2_calib_class_init (GstSam2CalibClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSinkClass *sink_class = GST_BASE_SINK_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sam2_calib_debug, "sam2calib", 0,
      "SAM2 W4A8 calibration (frames taken, quantization progress)");

  gobject_class->set_property = gst_sam2_calib_set_property;
  gobject_class->get_property = gst_sam2_calib_get_property;
  gobject_class->finalize = gst_sam2_calib_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Float SAM2 model to calibrate, as sam2seg's model property takes it: a directory "
          "with config.json and model.safetensors (e.g. models/sam2-shapes), a Hugging Face "
          "id in the local HF cache (facebook/sam2.1-hiera-tiny) or a shortcut: tiny, small, "
          "base (or base-plus), large. Read at start",
          DEFAULT_MODEL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_CONFIG,
      g_param_spec_string ("config", "Recipe",
          "Quantization recipe YAML (configs/*.yaml, keys in core/quant/recipe.h); unset = "
          "the built-in default recipe (W4 GPTQ groups of 128 + per-token A8, named "
          "\"default\"). Checked at start: errors name the key, line and column. The "
          "recipe's calib.num_samples is replaced by num-frames",
          DEFAULT_CONFIG,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_OUTPUT,
      g_param_spec_string ("output", "Output",
          "Where the quantized model goes: a directory (created if needed; the file is "
          "<model>-<recipe>.safetensors, as sam2q quantize names it) or a path ending in "
          ".safetensors. Checked for writing at start; written atomically",
          DEFAULT_OUTPUT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_NUM_FRAMES,
      g_param_spec_uint ("num-frames", "Number of frames",
          "Calibration frames to take; quantization starts when they are in (or at EOS "
          "with fewer) and later buffers are dropped", 1, MAX_NUM_FRAMES, DEFAULT_NUM_FRAMES,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_FRAME_STRIDE,
      g_param_spec_uint ("frame-stride", "Frame stride",
          "Take every Nth frame (the 1st, N+1th, ...): spreads the calibration set over a "
          "longer stretch of video, where neighbouring frames are nearly alike",
          1, MAX_FRAME_STRIDE, DEFAULT_FRAME_STRIDE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_BATCH_SIZE,
      g_param_spec_uint ("batch-size", "Batch size",
          "Frames per encoder pass, as the recipe's calib.batch_size (0 = the recipe's): "
          "frames wait until the batch is full (the last one runs at quantization). The "
          "statistics are those of one frame per pass; meant for device=cuda, memory grows "
          "with it (~500 MB per frame for sam2.1-hiera-tiny)",
          0, SAM2_SESSION_MAX_BATCH, DEFAULT_BATCH_SIZE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_enum ("device", "Device",
          "Where the float model runs and the layer statistics are gathered during "
          "calibration, and GPTQ too where cuSOLVER loads (SAM2_CUDA_GPTQ=0: on the CPU); cuda "
          "fails at start without a GPU",
          GST_TYPE_SAM2_CALIB_DEVICE, DEFAULT_DEVICE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision",
          "Arithmetic of the float model while it runs the calibration frames (sam2q "
          "quantize's --dtype): bf16 runs its GEMMs and attention with bfloat16 operands "
          "(on a CPU with AVX-512 BF16 a frame of tiny took 0.7x the time of fp32); the "
          "statistics stay FP32 / double. A precision the device cannot give fails at start",
          GST_TYPE_SAM2_CALIB_PRECISION, DEFAULT_PRECISION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_CACHE_DIR,
      g_param_spec_string ("cache-dir", "Cache directory",
          "Keep the calibration statistics here and reuse them when a run sees the same "
          "frames (same model, recipe apart from its batch size, num-frames, frame-stride "
          "and precision): the frames are then hashed and compared instead of run through the "
          "model. A frame that differs ends the reuse and calibration starts from it. "
          "Unset = no cache",
          DEFAULT_CACHE_DIR,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_POST_MESSAGES,
      g_param_spec_boolean ("post-messages", "Post messages",
          "Post progress messages (GST_MESSAGE_PROGRESS, code \"sam2calib\") and the "
          "\"sam2calib-progress\" (per frame) and \"sam2calib-layer\" (per quantized layer) "
          "element messages. \"sam2calib-done\" and errors are posted regardless",
          DEFAULT_POST_MESSAGES,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));

  /**
   * GstSam2Calib::quantized:
   * @sam2calib: the element
   * @path: the quantized model file, complete on disk
   *
   * Emitted from the quantization thread once the file is written, after the
   * "sam2calib-done" message. A handler may load the model (sam2seg does); it runs before
   * the sink lets EOS through.
   */
  gst_sam2_calib_signals[SIGNAL_QUANTIZED] =
      g_signal_new ("quantized", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
      NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_set_static_metadata (element_class,
      "SAM2 W4A8 calibration", "Sink/Video/Analyzer",
      "Quantizes a float Segment Anything 2 model to W4A8 (4-bit weights, 8-bit "
      "activations) from num-frames frames of the stream (every frame-stride th) per a "
      "recipe, in a worker thread, and writes it atomically to output "
      "(<model>-<recipe>.safetensors in a directory, or a .safetensors path); EOS waits for "
      "the file. Messages: progress (code sam2calib), sam2calib-progress (frames, total), "
      "sam2calib-layer (stage, layer, done, total, error), sam2calib-done (path, n-frames, "
      "seconds, size, cached, backend); signal quantized (path). Example: gst-launch-1.0 -e filesrc "
      "location=in.webm ! decodebin ! videoconvert ! sam2calib model=tiny "
      "config=configs/hiera_tiny_w4a8.yaml num-frames=64 frame-stride=4 output=models/",
      "sam2-gst developers");

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_sam2_calib_change_state);
  sink_class->set_caps = GST_DEBUG_FUNCPTR (gst_sam2_calib_set_caps);
  sink_class->render = GST_DEBUG_FUNCPTR (gst_sam2_calib_render);
  sink_class->event = GST_DEBUG_FUNCPTR (gst_sam2_calib_event);
  sink_class->wait_event = GST_DEBUG_FUNCPTR (gst_sam2_calib_wait_event);

  gst_type_mark_as_plugin_api (GST_TYPE_SAM2_CALIB_DEVICE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_SAM2_CALIB_PRECISION, 0);
}
