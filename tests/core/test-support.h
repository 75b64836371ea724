/* test-support.h: finding the reference fixtures, comparing tensors and checking models against
 * the references, in the core and CUDA tests. */
#ifndef SAM2_TEST_SUPPORT_H
#define SAM2_TEST_SUPPORT_H

#include <glib.h>
#include "check.h"
#include "safetensors.h"

/* $SAM2_FIXTURES, else the build's default (../shared/fixtures next to the project). */
const char *sam2_test_fixtures_dir (void);

/* The absolute path of `relative` inside the fixtures, or NULL after calling g_test_skip() with a
 * message saying which file is missing and how to point the tests at the fixtures. */
char *sam2_test_fixture_path (const char *relative);

/* Opens a fixture safetensors file, or skips (NULL) when absent; fails the test when corrupt. */
Sam2Safetensors *sam2_test_open_fixture (const char *relative);

/* ||a - b||_2 / max(||b||_2, tiny): the relative L2 error used against float64 references. */
double sam2_rel_l2 (const float *a, const float *b, size_t n);
/* max |a - b| */
double sam2_max_abs_diff (const float *a, const float *b, size_t n);


/* Logs every entry of `report` (g_test_message, with the backend that ran) and fails the test,
 * naming the entry and the backend, unless every one passed and there were at least `min_cases`
 * cases. */
void sam2_test_assert_report_passes (Sam2CheckReport *report, int min_cases);

/* sam2-mini-hash (its checkpoint) against its float64 reference on the backend and precision of
 * `options` (NULL: the defaults, as sam2_check_reference): every case passes, at least ten of
 * them (five on the reference pixels, five on the hash pixels), and the 11 block / neck
 * activations were compared too. Returns the report (sam2_check_report_free), or NULL after a
 * skip when the fixtures are absent. */
Sam2CheckReport *sam2_test_check_mini_reference (const Sam2SessionOptions *options);

/* sam2-tiny-hash (the sam2.1-hiera-tiny architecture with hash weights) against its float64
 * references on the backend and precision of `options` (NULL: the defaults): every case passes,
 * at least five. `inspect` (may be NULL) runs on the model before the check. Skips when the
 * fixtures are absent. */
void sam2_test_check_tiny_reference (const Sam2SessionOptions *options,
                                     void (*inspect) (Sam2Model *model));

/* sam2-mini-hash, the float model from its checkpoint, or NULL after a skip when it is absent. */
Sam2Model *sam2_test_load_mini (void);

/* The architecture of the config.json at `config_path` with hash weights (fails the test when
 * the config does not load). */
Sam2Model *sam2_test_hashed_model (const char *config_path);

/* The sam2.1-hiera-tiny architecture (1024x1024) from sam2-tiny-hash/config.json with the
 * fixtures' hash weights, or NULL after a skip when the config is absent. */
Sam2Model *sam2_test_tiny_hashed (void);

/* bfloat16 bits of f, round to nearest even (the upper half of the float's bits, carried from
 * the lower half exactly when it is above half an ulp, or exactly half with the upper half odd;
 * the largest floats overflow to infinity); a NaN stays a quiet NaN (its payload could carry
 * it into infinity otherwise). */
guint16 sam2_test_f32_to_bf16 (float f);
/* f rounded to bfloat16 and back. */
float sam2_test_round_bf16 (float f);

/* n floats of uniform noise over the range of ImageNet-normalised pixels, one sequence per seed. */
void sam2_test_fill_pixels (float *px, size_t n, guint32 seed);

/* `fp` quantized with the recipe at `recipe_path` on `n_frames` frames of sam2_test_fill_pixels
 * (seeds 100, 101, ...), calibrated on the CPU backend. */
Sam2Model *sam2_test_quantize_random (Sam2Model *fp, const char *recipe_path, int n_frames);

/* Bounds of sam2_test_check_batch. FP32: the same ops on the same rows; only a GEMM's blocking
 * may depend on its row count (oneDNN and cuBLAS pick kernels by M), which moves sums by float32
 * rounding, ~1e-7 relative, carried through the model (the float64 references' FP32 bound is
 * 1e-4). W4A8: the integer GEMMs are exact per row, but a float rounding difference before an
 * 8-bit activation quantizer can move a code by one step (test-cuda-model's W4A8_CPU_CUDA_TOL
 * has measurements of such flips). A wrong image or row offset is an error of O(1). */
#define SAM2_TEST_BATCH_FP32_TOL 1e-5
#define SAM2_TEST_BATCH_W4A8_TOL 2e-2

/* `n` random frames encoded in one pass (a session with max_batch n made with `options`) and
 * each alone (a session of one image): for every image, selected out of order, the three
 * feature maps and the decoder's outputs for a point and a box prompt agree within `tol`
 * (relative L2 each). */
void sam2_test_check_batch (Sam2Model *model, const Sam2SessionOptions *options, int n,
                            double tol);

/* The mask decoder with its small layers stacked (session.h's stacks: the hypernetwork MLPs
 * and the two heads block-diagonal, the self-attention projections side by side) and layer by
 * layer (as it runs while an observer is set), on sam2-mini-hash in a session made with
 * `options`: the logits and IoU scores of a point and a box prompt within `tol` (relative L2).
 * Skips without the fixture. The FP32 bound: the same products summed in an order the GEMM
 * picks by K; a block in the wrong place is an error of O(1). */
#define SAM2_TEST_DECODER_STACKS_FP32_TOL 1e-6
void sam2_test_check_decoder_stacks (const Sam2SessionOptions *options, double tol);
/* The same comparison on `m` (any model, float or quantized), without the check that every
 * stack was built. */
void sam2_test_check_decoder_stacks_on (Sam2Model *m, const Sam2SessionOptions *options,
                                        double tol);

/* The start of a CUDA test taking a recipe argument: g_test_init, then 77 (skipped, with the
 * reason) without a CUDA device, 2 (usage) without exactly one argument, else 0 with
 * *recipe_path set to it. */
int sam2_test_cuda_init (int *argc, char ***argv, const char **recipe_path);

#endif
