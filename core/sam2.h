/* sam2.h: Segment Anything 2 in C.
 *
 * Load a HuggingFace SAM2 / SAM2.1 checkpoint, encode a frame once, then ask for masks from point,
 * box and mask prompts as often as you like.
 *
 *   GError *error = NULL;
 *   Sam2Model *model = sam2_model_load ("tiny", &error);        // a directory, an HF id or a shortcut
 *   if (model == NULL) {
 *     g_printerr ("%s\n", error->message);                      // says which command fetches the files
 *     return 1;
 *   }
 *   Sam2Session *session = sam2_session_new (model, &error);   // per-stream state, allocated once
 *
 *   // once per frame: preprocessing + image encoder
 *   sam2_session_set_image (session, rgb, width, height, stride, SAM2_PIXEL_FORMAT_RGB, &error);
 *
 *   // once per prompt set: prompt encoder + mask decoder + upsampling to the frame
 *   Sam2Point click = { .x = 320.f, .y = 240.f, .label = SAM2_LABEL_POSITIVE };
 *   Sam2Prompt object = { .points = &click, .n_points = 1 };
 *   Sam2PredictOptions options = SAM2_PREDICT_OPTIONS_INIT;
 *   const Sam2Result *result = sam2_session_predict (session, &object, 1, &options, &error);
 *   // result->masks: (n_objects, n_masks, height, width) bytes 0/1; result->boxes, result->iou_scores
 *
 *   sam2_session_free (session);
 *   sam2_model_unref (model);
 *
 * Conventions: fallible calls take `GError **error` last and return FALSE / NULL; nothing here
 * aborts or exits. A model is read-only and may be shared by sessions in several threads; a
 * session is used by one thread at a time. Results point into the session and stay valid until
 * the next call on that session.
 */
#ifndef SAM2_H
#define SAM2_H

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define SAM2_ERROR (sam2_error_quark ())
GQuark sam2_error_quark (void);

typedef enum {
  SAM2_ERROR_IO,              /* a file could not be read or written */
  SAM2_ERROR_FORMAT,          /* a file is corrupt, truncated or not what it claims to be */
  SAM2_ERROR_CONFIG,          /* config.json is missing keys, has wrong types or an unsupported model */
  SAM2_ERROR_WEIGHTS,         /* a tensor is missing, has the wrong shape or an unsupported dtype */
  SAM2_ERROR_NOT_FOUND,       /* a model reference did not resolve to files on this machine */
  SAM2_ERROR_INVALID_ARGUMENT,/* a prompt, image or option the model cannot take */
  SAM2_ERROR_BACKEND,         /* the compute backend failed or is unavailable */
  SAM2_ERROR_VERSION,         /* a file written by an incompatible version of this library */
} Sam2ErrorCode;

typedef struct _Sam2Model Sam2Model;
typedef struct _Sam2Session Sam2Session;

/* ---- models ---------------------------------------------------------------------------- */

/* `reference` is a directory holding config.json and model.safetensors, a HuggingFace id
 * ("facebook/sam2.1-hiera-tiny") found in the standard HF cache, or a shortcut: "tiny", "small",
 * "base" / "base-plus", "large" (the sam2.1 ids). Both Sam2Model ("sam2") and Sam2VideoModel
 * ("sam2_video") checkpoints load; weights only the video model uses are ignored. */
Sam2Model *sam2_model_load (const char *reference, GError **error);

/* The same, from explicit files (config.json text and a safetensors path). */
Sam2Model *sam2_model_load_files (const char *config_json_path, const char *weights_path,
                                  GError **error);

Sam2Model *sam2_model_ref (Sam2Model *model);
void sam2_model_unref (Sam2Model *model);

/* Side of the square model input (1024 for the released checkpoints). */
int sam2_model_get_image_size (const Sam2Model *model);
/* Side of the square low-resolution mask logits (image size / 4). */
int sam2_model_get_mask_size (const Sam2Model *model);
/* A human-readable, multi-line summary (architecture, parameter count, size on disk). */
char *sam2_model_describe (const Sam2Model *model);

/* ---- sessions ---------------------------------------------------------------------------- */

typedef enum {
  SAM2_PIXEL_FORMAT_RGB,
  SAM2_PIXEL_FORMAT_RGBA,
  SAM2_PIXEL_FORMAT_RGBX,
  SAM2_PIXEL_FORMAT_BGR,
  SAM2_PIXEL_FORMAT_BGRA,
  SAM2_PIXEL_FORMAT_BGRX,
} Sam2PixelFormat;

/* Point labels as in SAM: positive / negative clicks, box corners, and "not a point". */
typedef enum {
  SAM2_LABEL_PAD = -10,        /* ignored entirely */
  SAM2_LABEL_NOT_A_POINT = -1,
  SAM2_LABEL_NEGATIVE = 0,
  SAM2_LABEL_POSITIVE = 1,
  SAM2_LABEL_BOX_TOP_LEFT = 2,
  SAM2_LABEL_BOX_BOTTOM_RIGHT = 3,
} Sam2Label;

typedef struct {
  float x, y;                  /* pixels; x first */
  int label;                   /* a Sam2Label */
} Sam2Point;

/* Points one object may have. SAM is used with a handful of clicks; the bound keeps a session's
 * token buffers small and allocated once. */
#define SAM2_MAX_POINTS_PER_OBJECT 64

/* One object to segment: up to SAM2_MAX_POINTS_PER_OBJECT points, an optional box, an optional
 * mask. */
typedef struct {
  const Sam2Point *points;
  int n_points;
  gboolean has_box;
  float box[4];                /* x0, y0, x1, y1 in pixels */
  const float *mask_logits;    /* optional (mask_size, mask_size) low-res logits, e.g. a previous
                                  result for the same object (read before the new result is
                                  written: a result's own lowres_logits may be passed); NULL for
                                  none */
} Sam2Prompt;

typedef struct {
  gboolean multimask;          /* three candidate masks per object instead of one */
  float mask_threshold;        /* logit above which a pixel is in the mask (0 in SAM) */
  gboolean frame_masks;        /* upsample to the frame and threshold (FALSE: low-res logits only) */
  gboolean best_only;          /* with multimask: keep each object's candidate of highest
                                  predicted IoU (the first of equals) and only it (n_masks 1),
                                  chosen before upsampling, as SAM's predictors use multimask;
                                  a third of the frame-mask memory and time */
} Sam2PredictOptions;

#define SAM2_PREDICT_OPTIONS_INIT { FALSE, 0.0f, TRUE, FALSE }

typedef struct {
  int x0, y0, x1, y1;          /* inclusive pixel bounds; x1 < x0 when the mask is empty */
} Sam2Box;

typedef struct {
  int n_objects;
  int n_masks;                 /* per object: 3 with multimask, else 1 */
  int width, height;           /* frame size of `masks` */
  int mask_size;               /* side of the low-res logits */
  const float *iou_scores;     /* (n_objects, n_masks) predicted IoU */
  const float *object_scores;  /* (n_objects) object-presence logits (> 0: present) */
  const float *lowres_logits;  /* (n_objects, n_masks, mask_size, mask_size) */
  const guint8 *masks;         /* (n_objects, n_masks, height, width) 0/1; NULL unless frame_masks */
  const Sam2Box *boxes;        /* (n_objects, n_masks); NULL unless frame_masks */
} Sam2Result;

/* Where a session computes. AUTO: the environment variable SAM2_BACKEND (auto, cpu, cuda) when
 * set, else the CUDA backend when this build has it and a CUDA device is present, else the CPU.
 * An explicit CUDA request never falls back: without the backend in the build or without a
 * device, sam2_session_new_full fails and says why. The CUDA backend replays the encoder and
 * each decoder variant as CUDA graphs from their second run on (fewer launches, the same bits);
 * the environment variable SAM2_CUDA_GRAPHS=0 turns that off for sessions created after it. */
typedef enum {
  SAM2_BACKEND_AUTO,
  SAM2_BACKEND_CPU,
  SAM2_BACKEND_CUDA,
} Sam2BackendKind;

/* Arithmetic of the model's float layers. FP16 (CUDA only): GEMMs of float layers and
 * attention's two products take FP16 operands and accumulate in FP32; softmax, norms and
 * activations stay FP32 (outputs within ~1e-2 relative of FP32). BF16 (CUDA, and the CPU where it
 * has AVX-512 BF16: sam2_precision_available): the same with bfloat16 operands, which keep
 * float's exponent range (no overflow past 65504) for 3 fewer significand bits (~8x FP16's
 * rounding error: PyTorch's usual dtype for SAM2); on such a CPU about twice FP32's speed.
 * Quantized layers of a W4A8 model run W4A8 in every precision. AUTO: FP32 for a float
 * checkpoint (what it holds); for a quantized model on CUDA, FP16 (its float layers are stored in
 * 16 bits, and its 8-bit activations already bound the accuracy far below FP16's rounding), on
 * the CPU FP32 (AUTO never picks BF16 on the CPU, so whether a CPU has BF16 changes no result
 * unless BF16 is asked for). */
typedef enum {
  SAM2_PRECISION_AUTO,
  SAM2_PRECISION_FP32,
  SAM2_PRECISION_FP16,
  SAM2_PRECISION_BF16,
} Sam2Precision;

typedef struct {
  Sam2BackendKind backend;
  Sam2Precision precision;
  /* The most images one encoder pass takes (sam2_session_encode_batch, sam2_session_set_images);
   * 0 means 1. The encoder's buffers scale with it (sam2.1-hiera-tiny at 1024x1024: ~500 MB per
   * image, the growth of peak memory from one image to two on the CPU), the decoder's do not. */
  int max_batch;
} Sam2SessionOptions;

/* The largest max_batch a session accepts: 32 images keep every row count of the largest model's
 * first stage (32 x 65536 tokens) within the CUDA kernels' grid limits. */
#define SAM2_SESSION_MAX_BATCH 32

#define SAM2_SESSION_OPTIONS_INIT { SAM2_BACKEND_AUTO, SAM2_PRECISION_AUTO, 1 }

/* The default session: SAM2_SESSION_OPTIONS_INIT. */
Sam2Session *sam2_session_new (Sam2Model *model, GError **error);
/* `options` NULL: the defaults. */
Sam2Session *sam2_session_new_full (Sam2Model *model, const Sam2SessionOptions *options,
                                    GError **error);
void sam2_session_free (Sam2Session *session);

/* What a session resolved AUTO to: the backend ("cpu" or "cuda") and the precision (FP32, FP16
 * or BF16, never AUTO). */
Sam2BackendKind sam2_session_get_backend (const Sam2Session *session);
Sam2Precision sam2_session_get_precision (const Sam2Session *session);
/* One line for tools and logs, e.g. "cuda fp16, NVIDIA H200 (device 0, ...)", "cpu fp32" or, for
 * a quantized model, "cuda w4a8 + fp16, ..." / "cpu w4a8 + fp32" / "cpu w4a8 + bf16". */
const char *sam2_session_describe_backend (const Sam2Session *session);

/* Names as tools and properties spell them: "auto", "cpu", "cuda"; "auto", "fp32", "fp16",
 * "bf16". */
const char *sam2_backend_kind_to_string (Sam2BackendKind kind);
const char *sam2_precision_to_string (Sam2Precision precision);
/* Parses either name (NULL leaves that field as it is); FALSE with a GError listing the valid
 * names otherwise. */
gboolean sam2_session_options_parse (Sam2SessionOptions *options, const char *backend,
                                     const char *precision, GError **error);
/* Whether a backend can run here (AUTO and CPU: always); FALSE with the reason otherwise. */
gboolean sam2_backend_available (Sam2BackendKind kind, GError **error);
/* Whether a backend (AUTO: the one a session would pick, SAM2_BACKEND included) can compute in
 * `precision` here (AUTO: always, where the backend can run): the CUDA backend in every
 * precision; the CPU backend in FP32, and in BF16 where the CPU has AVX-512 BF16 (and the
 * environment variable SAM2_CPU_BF16 is not "0"). FALSE with the reason otherwise; callers say
 * what to use instead in their own terms (sam2_session_new_full's error does). */
gboolean sam2_precision_available (Sam2BackendKind kind, Sam2Precision precision,
                                   GError **error);

/* Frames wider or taller than this are refused (larger pictures are not video; the resampler's
 * integer accumulators and tap tables are sized for it). The elements' caps say so too. */
#define SAM2_MAX_FRAME_SIZE 16384

/* Preprocesses (resize to the model's square input exactly as Sam2ImageProcessor does: bilinear
 * with antialiasing on 8-bit pixels, then ImageNet normalisation) and runs the image encoder.
 * width and height 1 to SAM2_MAX_FRAME_SIZE. */
gboolean sam2_session_set_image (Sam2Session *session, const guint8 *pixels, int width, int height,
                                 int stride, Sam2PixelFormat format, GError **error);

/* Batches: `n` frames of the same size and format (1 <= n <= the session's max_batch) through
 * one encoder pass, each of its kernels working on all n images instead of n passes of one
 * frame (for a GPU; a CPU gains nothing). Image 0 is then the selected one;
 * sam2_session_select_image moves to another. */
gboolean sam2_session_set_images (Sam2Session *session, const guint8 *const *pixels, int n,
                                  int width, int height, int stride, Sam2PixelFormat format,
                                  GError **error);
/* Makes image `index` of the last encoder pass the one that predict, decode and get_features
 * use (it runs the decoder's per-image part, a small fraction of the encoder). */
gboolean sam2_session_select_image (Sam2Session *session, int index, GError **error);
/* Images of the last encoder pass (0 before the first), and the most one pass takes. */
int sam2_session_get_n_images (const Sam2Session *session);
int sam2_session_get_max_batch (const Sam2Session *session);

/* Prompts in frame pixels (of the selected image). One result entry per prompt (object). */
const Sam2Result *sam2_session_predict (Sam2Session *session, const Sam2Prompt *prompts,
                                        int n_prompts, const Sam2PredictOptions *options,
                                        GError **error);

/* ---- lower level: model-input space, for checks, calibration and tools --------------------- */

/* Runs the image encoder on already preprocessed pixels, (3, S, S) float, S the image size. */
gboolean sam2_session_encode (Sam2Session *session, const float *pixel_values, GError **error);
/* The same for `n` images, (n, 3, S, S) float, in one pass (see sam2_session_set_images). */
gboolean sam2_session_encode_batch (Sam2Session *session, const float *pixel_values, int n,
                                    GError **error);

/* The encoder outputs the mask decoder uses, channels-last (h, w, c): level 0 and 1 are the
 * high-resolution features after conv_s0 / conv_s1, level 2 the image embedding (with the
 * "no memory" embedding added), i.e. HF's `image_embeddings` transposed to (H, W, C). */
const float *sam2_session_get_features (Sam2Session *session, int level, int *height, int *width,
                                        int *channels);

/* Prompts in model-input pixels (what HF's processor produces); low-res logits only. */
const Sam2Result *sam2_session_decode (Sam2Session *session, const Sam2Prompt *prompts,
                                       int n_prompts, gboolean multimask, GError **error);

/* ---- quantization (W4A8) ---------------------------------------------------------------- */

/* A quantization recipe (YAML, see configs/ and core/quant/recipe.h for the keys). */
typedef struct _Sam2Recipe Sam2Recipe;
Sam2Recipe *sam2_recipe_load (const char *path, GError **error);
void sam2_recipe_free (Sam2Recipe *recipe);

/* The file name a quantized model is saved under, "<model>-<recipe>.safetensors" (no directory),
 * as `sam2q quantize` and the sam2calib element both name it. <model> is the last component of
 * `model_ref` after expanding a shortcut, without an "@revision" ("facebook/sam2.1-hiera-tiny",
 * "tiny" -> "sam2.1-hiera-tiny"; a directory, or one of its files (model.safetensors,
 * config.json) -> the directory's name); <recipe> is the recipe's name, its
 * file name without directory and extension ("default" for `recipe` NULL or the built-in
 * recipe). Free with g_free. */
char *sam2_quantized_file_name (const char *model_ref, const Sam2Recipe *recipe);

/* Collects calibration statistics from frames (streaming: memory does not grow with the number
 * of frames) and turns a float model into a quantized one. */
typedef struct _Sam2Calibrator Sam2Calibrator;

/* `recipe` NULL: the default recipe (W4 GPTQ g128 + per-token A8). The model must be a float
 * model; it is kept referenced. */
Sam2Calibrator *sam2_calibrator_new (Sam2Model *model, const Sam2Recipe *recipe, GError **error);
/* The same with the float model run on the backend `options` choose (NULL: the CPU, as
 * sam2_calibrator_new). On CUDA the layer statistics stay on the GPU while frames are added
 * (the Hessians through cuBLAS), so only the quantization step reads them back; AUTO means the
 * CPU here (calibration is offline work whose cost users choose). FP16 precision runs the
 * float model's GEMMs in FP16; statistics are accumulated in FP32 / double either way. */
Sam2Calibrator *sam2_calibrator_new_full (Sam2Model *model, const Sam2Recipe *recipe,
                                          const Sam2SessionOptions *options, GError **error);
/* The backend the calibrator runs on, as sam2_session_describe_backend words it. */
const char *sam2_calibrator_describe_backend (const Sam2Calibrator *calibrator);
void sam2_calibrator_free (Sam2Calibrator *calibrator);

/* One calibration frame, preprocessed as sam2_session_set_image does; runs the float model, or
 * with the recipe's calib.batch_size above 1 keeps the frame until a batch is full (an error
 * of that batch's pass is then reported by the call that completes it). */
gboolean sam2_calibrator_add_image (Sam2Calibrator *calibrator, const guint8 *pixels, int width,
                                    int height, int stride, Sam2PixelFormat format,
                                    GError **error);
/* The same from preprocessed (3, S, S) pixels. */
gboolean sam2_calibrator_add_pixels (Sam2Calibrator *calibrator, const float *pixel_values,
                                     GError **error);
/* Frames added so far, those waiting for a full batch included (the recipe's calib.batch_size
 * frames go through the encoder in one pass). */
int sam2_calibrator_get_n_frames (const Sam2Calibrator *calibrator);
/* Runs the frames still waiting for a full batch now (sam2_calibrator_quantize does it too): for
 * callers that time the frames apart from the quantization, or want a failure reported with
 * the frames. */
gboolean sam2_calibrator_flush (Sam2Calibrator *calibrator, GError **error);

/* Statistics cache for tools that know their calibration set in advance: `set_digest`
 * identifies the frames (e.g. a hash of their pixels); the cache entry is keyed by the model's
 * digest, set_digest, the recipe and the precision the float model runs in (FP32, BF16, FP16).
 * *hit tells whether statistics were loaded, in which case no frame needs to be added.
 * Statistics are saved there when sam2_calibrator_quantize runs. */
gboolean sam2_calibrator_use_cache (Sam2Calibrator *calibrator, const char *dir,
                                    const char *set_digest, gboolean *hit, GError **error);
/* Whether `dir` holds the entry sam2_calibrator_use_cache would load for `set_digest`, without
 * loading it (for a caller that would otherwise skip the float model on frames it compares). */
gboolean sam2_calibrator_cache_contains (Sam2Calibrator *calibrator, const char *dir,
                                         const char *set_digest);
/* After sam2_calibrator_quantize with a cache: whether the statistics are in it (loaded from
 * it, or saved there; a save that failed, e.g. on a full disk, is a warning, and FALSE here). */
gboolean sam2_calibrator_statistics_cached (const Sam2Calibrator *calibrator);

/* Progress of a long operation: a stage name ("smoothing", "quantizing"), `done` of `total`
 * items, the item (a layer name) and, when known, its relative output error (else a NaN). */
typedef void (*Sam2ProgressFunc) (gpointer user_data, const char *stage, int done, int total,
                                  const char *item, double error);

/* Quantizes the model per the recipe from the statistics gathered so far. Error when no frame
 * was added. The returned model is ready to use and to save. */
Sam2Model *sam2_calibrator_quantize (Sam2Calibrator *calibrator, Sam2ProgressFunc progress,
                                     gpointer user_data, GError **error);
/* The same, stopping when `cancellable` (may be NULL) is cancelled, from any thread, the
 * progress callback included: checked before each layer group's smoothing, each layer's
 * quantization (GPTQ, the error measurement) and the model's assembly, so a cancel takes
 * effect within one layer's work; then NULL with G_IO_ERROR_CANCELLED. Statistics saved to the
 * cache before the layers (sam2_calibrator_use_cache) stay saved. */
Sam2Model *sam2_calibrator_quantize_cancellable (Sam2Calibrator *calibrator,
                                                 Sam2ProgressFunc progress, gpointer user_data,
                                                 GCancellable *cancellable, GError **error);

gboolean sam2_model_is_quantized (const Sam2Model *model);
/* Writes a quantized model to one .safetensors file, atomically: a crash or a full disk never
 * leaves a partial file at `path`. Creates the missing directories of `path`, and removes them
 * again if the write fails. sam2_model_load reads it back. */
gboolean sam2_model_save (const Sam2Model *model, const char *path, GError **error);
/* Checks, creating nothing, that a model can be written in `dir`: in `dir` when it exists (a
 * probe file, removed at once), else in its nearest existing ancestor, where `dir` would be
 * made; so that a tool saving a model there fails before minutes of calibration rather than
 * after, and a failed run leaves no empty directory. On failure a G_FILE_ERROR: "cannot write to
 * the <what> directory <dir>: <reason>; <hint>" or "cannot create the <what> directory <dir>:
 * <ancestor>: <reason>; <hint>". */
gboolean sam2_check_output_dir (const char *dir, const char *what, const char *hint,
                                GError **error);
/* Creates `dir` with its missing parents; *created receives the topmost directory made (NULL
 * when `dir` existed), which sam2_output_dir_remove_created takes to undo it after a failed
 * write. Free *created with g_free. */
gboolean sam2_output_dir_create (const char *dir, char **created, GError **error);
/* Removes the empty directories from `dir` up to `created` (from sam2_output_dir_create);
 * nothing when `created` is NULL. A directory something was written to stays. */
void sam2_output_dir_remove_created (const char *dir, const char *created);

/* ---- process-wide --------------------------------------------------------------------- */

/* Threads for BLAS and for our own parallel loops; 0 = one per core. Process-wide: it holds for
 * sessions and calibrators driven from any thread (a GStreamer streaming thread too), applied
 * when they start work. Never called: OpenMP's default (OMP_NUM_THREADS, else one per core). */
void sam2_set_num_threads (int n_threads);
int sam2_get_num_threads (void);

G_END_DECLS

#endif /* SAM2_H */
