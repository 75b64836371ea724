/* common.cuh: helpers shared by the kernels' .cu files (not part of the C contract):
 * launch checking, grid sizing, alignment tests, the activation functions and the 16-bit float
 * conversions. */
#ifndef SAM2_KERNELS_COMMON_CUH
#define SAM2_KERNELS_COMMON_CUH

#include "kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* The SIMT emulator (tests/simt) compiles kernel files as host C++: its header supplies the
 * thread indices, barriers, warp operations, PTX instructions and SAM2_LAUNCH. */
#ifdef SAM2_SIMT_ON_HOST
#include "simt-device.h"
#else
/* kernel<<<grid, block, shared_bytes, stream>>>, spelled SAM2_LAUNCH (grid, block,
 * shared_bytes, stream, kernel) (arguments) so that the emulator can run the launch; the kernel
 * comes last because a template's arguments hold commas. */
#define SAM2_LAUNCH(grid, block, shared_bytes, stream, ...)                                    \
  __VA_ARGS__<<<(grid), (block), (shared_bytes), (stream)>>>
/* The kernel's dynamic shared memory (the launch's shared_bytes), 16-byte aligned. */
#define SAM2_DYNAMIC_SHARED(type, name) extern __shared__ __align__ (16) type name[]
/* A static shared array, 16-byte aligned: SAM2_STATIC_SHARED (int8_t, tile, [4][64]). */
#define SAM2_STATIC_SHARED(type, name, dims) __shared__ __align__ (16) type name dims
#endif

/* Threads per block of the element-wise and data-movement kernels. */
#define SAM2_EW_THREADS 256

/* Grid-stride kernels need no more blocks than keep every SM busy several times over; more only
 * adds scheduling. 132 SMs (H100 SXM) x 16 blocks of 256 threads covers 4 waves at full
 * occupancy, and the cap keeps gridDim.x far below its limit for any n. */
#define SAM2_EW_MAX_BLOCKS 2112

static inline unsigned
sam2_ew_blocks (size_t work_items)
{
  size_t b = (work_items + SAM2_EW_THREADS - 1) / SAM2_EW_THREADS;
  if (b < 1)
    b = 1;
  return (unsigned) (b > SAM2_EW_MAX_BLOCKS ? SAM2_EW_MAX_BLOCKS : b);
}

/* A grid-stride kernel over `work_items` with the element-wise grid on `stream`; used as
 * SAM2_LAUNCH_EW (kernel, n, stream) (arguments), which host-emulation.h turns into a call. */
#define SAM2_LAUNCH_EW(kernel, work_items, stream)                                              \
  SAM2_LAUNCH (sam2_ew_blocks (work_items), SAM2_EW_THREADS, 0, stream, kernel)

/* A C-callable launcher. */
#define SAM2_KERNEL_API extern "C"

/* The status of the launch just made: a configuration the runtime refused (or a sticky error of
 * an earlier kernel) is SAM2_CUDA_DEVICE. */
static inline int
sam2_launch_status (void)
{
  return cudaGetLastError () == cudaSuccess ? SAM2_CUDA_OK : SAM2_CUDA_DEVICE;
}

static inline bool
sam2_aligned16 (const void *p)
{
  return ((uintptr_t) p & 15u) == 0;
}

/* The activations of core/ops-cpu.c in float32. GELU uses CUDA's erff (within 2 ulp) where the
 * CPU uses a rational approximation within 4.7e-7 absolute: the two agree to a few ulp of the
 * output except for x < -4, where GELU itself is below 1e-4 |x| and both are near 0. */
__device__ __forceinline__ float
sam2_act_apply (int act, float x)
{
  switch (act) {
  case SAM2_CUDA_ACT_GELU:
    return 0.5f * x * (1.0f + erff (x * 0.70710678118654752f));
  case SAM2_CUDA_ACT_GELU_TANH: {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf (k * (x + 0.044715f * x * x * x)));
  }
  case SAM2_CUDA_ACT_RELU:
    return x > 0.0f ? x : 0.0f;
  case SAM2_CUDA_ACT_SILU:
    return x / (1.0f + expf (-x));
  case SAM2_CUDA_ACT_SIGMOID:
    return 1.0f / (1.0f + expf (-x));
  default:
    return x;
  }
}

/* Raises the dynamic shared-memory limit of the attention kernels on the current device
 * (attention.cu); sam2_cuda_init calls it, and the attention launcher on its first use per
 * device. */
int sam2_cuda_attention_prepare (void);

/* Raises the dynamic shared-memory limit of the W4A8 GEMM's v3 kernels on the current device and
 * counts the blocks the device holds at once (gemm-w4a8.cu); sam2_cuda_init calls it, and the
 * GEMM launcher on its first v3 use per device. */
int sam2_cuda_w4a8_prepare (void);

/* Whether sam2_cuda_attention runs `a` with its few-queries kernel (decode_kernel: a block per
 * query row, the keys split over its threads). The FP16 variant hands such shapes to it too: with
 * ~7 queries and 4096 keys a flash tile per head leaves the GPU nearly idle. */
bool sam2_cuda_attention_decode_shape (const Sam2CudaAttentionArgs &a);

/* A kernel-version switch (the W4A8 kernels, the FP16 attention): *slot holds 0 until the
 * version is chosen, then 1 .. max_version. sam2_kernel_version reads the environment variable
 * `var` at the first call ("vK" or "K" selects K, for K up to max_version; anything else 2, the
 * default; a race only stores the same value) and returns the choice;
 * sam2_kernel_version_set stores a version in 1 .. max_version, any other value going back to
 * the environment's choice at the next read. */
int sam2_kernel_version (int *slot, const char *var, int max_version);
void sam2_kernel_version_set (int *slot, int version, int max_version);

static inline bool
sam2_act_valid (int act)
{
  return act >= SAM2_CUDA_ACT_NONE && act <= SAM2_CUDA_ACT_SIGMOID;
}

/* The 16-bit formats of the half-precision paths (Sam2CudaHalf; BF16 false is FP16): a float
 * rounded to nearest even as the format's bit pattern, and a pattern widened back (exact). */
template <bool BF16>
__device__ __forceinline__ uint16_t
sam2_to16 (float v)
{
  return BF16 ? __bfloat16_as_ushort (__float2bfloat16_rn (v))
              : __half_as_ushort (__float2half_rn (v));
}

template <bool BF16>
__device__ __forceinline__ float
sam2_from16 (uint16_t bits)
{
  return BF16 ? __uint_as_float ((uint32_t) bits << 16) : __half2float (__ushort_as_half (bits));
}

/* v rounded to the format and widened back: the operand value the tensor cores multiply. */
template <bool BF16>
__device__ __forceinline__ float
sam2_round16 (float v)
{
  return sam2_from16<BF16> (sam2_to16<BF16> (v));
}

static inline bool
sam2_half_valid (Sam2CudaHalf type)
{
  return type == SAM2_CUDA_F16 || type == SAM2_CUDA_BF16;
}

/* The checks of Sam2CudaAttentionArgs that every attention launcher makes: sizes in range, every
 * row wide enough for the heads' columns, and an output given (out, or out16 in a valid format).
 * The inputs are each launcher's own to check (floats, or the 16-bit ones of the FP16 kernels). */
static inline bool
sam2_attention_args_valid (const Sam2CudaAttentionArgs &a)
{
  if (a.batch < 0 || a.heads < 1 || a.head_dim < 1
      || a.head_dim > SAM2_CUDA_ATTENTION_MAX_HEAD_DIM || a.len_q < 0 || a.len_k < 1)
    return false;
  const long long width = (long long) a.heads * a.head_dim;
  return a.q_ld >= width && a.k_ld >= width && a.v_ld >= width && a.out_ld >= width
         && (a.out16 != nullptr ? sam2_half_valid (a.out16_type) : a.out != nullptr);
}

/* Element i of an attention output (Sam2CudaAttentionArgs): a float in out, or, where the caller
 * asked for 16 bits, the float rounded to out16_type in out16; i counts elements either way. */
__device__ __forceinline__ void
sam2_attention_store (const Sam2CudaAttentionArgs &a, size_t i, float v)
{
  if (a.out16 == nullptr)
    a.out[i] = v;
  else if (a.out16_type == SAM2_CUDA_BF16)
    a.out16[i] = sam2_to16<true> (v);
  else
    a.out16[i] = sam2_to16<false> (v);
}

#endif
