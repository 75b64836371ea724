/* simt-device.h: what a kernel file sees when it is compiled as host C++ for the SIMT emulator
 * (kernels/common.cuh includes this under SAM2_SIMT_ON_HOST). Every CUDA thread of a block runs
 * as its own fiber on one host thread (simt.cc), so kernels written for the GPU, with shared
 * memory, __syncthreads, warp shuffles and votes, cp.async pipelines, ldmatrix and the INT8
 * tensor-core mma, run unchanged on a machine without a GPU, and tests/simt runs the CUDA
 * suites' own checks against the CPU oracle on them.
 *
 * What it models: thread, warp and block semantics as the PTX ISA defines them (a collective
 * waits for every lane of its mask; a lane of the mask that has exited, a lane outside the mask
 * read by a shuffle, or lanes of one warp at different collectives abort with a message rather
 * than give some value); cp.async copies land only at the cp.async.wait_group that covers them
 * (a read before the wait sees the old bytes); the launch limits (1024 threads, grid.y and z at
 * most 65535, dynamic shared memory above 48 KiB only after cudaFuncSetAttribute). Blocks run
 * one after another; within a block the threads run in turn from barrier to barrier, in thread
 * order on even blocks and in reverse order on odd ones, so a missing barrier shows as a read of
 * data not yet written in one order or the other. What it cannot show: timing, bank conflicts,
 * races between blocks, and the GPU's own rounding where a kernel leaves it to the compiler
 * (nvcc contracts a * b + c into an FMA, the host compiler here does not: kernels that spell
 * their roundings out, __fmul_rn / __fadd_rn, give the GPU's bits; the others agree to the
 * tolerances the suites give them).
 *
 * Static shared arrays, declared with SAM2_STATIC_SHARED, become static variables: one copy,
 * used by one block at a time, refilled with garbage for each block like dynamic shared memory
 * (a plain __shared__, which would keep what the previous block left, does not compile here:
 * GCC ignores a section attribute on a template's static locals, so they could not be found
 * and refilled otherwise). */
#ifndef SAM2_SIMT_DEVICE_H
#define SAM2_SIMT_DEVICE_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

/* The CUDA headers define these as attributes a host compiler ignores (with a warning). */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
/* shared arrays are declared with SAM2_STATIC_SHARED / SAM2_DYNAMIC_SHARED (below), so that each
 * block's starts as garbage; a plain __shared__ fails to compile here */
#define __shared__ sam2_simt_declare_shared_with_SAM2_STATIC_SHARED
#define __launch_bounds__(...)

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

namespace sam2_simt {

/* Block and warp collectives (simt.cc). */
void sync_block ();
void sync_warp (unsigned mask);
enum ShuffleKind { SHFL_IDX, SHFL_XOR, SHFL_DOWN, SHFL_UP };
uint64_t shuffle (unsigned mask, uint64_t value, ShuffleKind kind, int arg, int width);
enum VoteKind { VOTE_ANY, VOTE_ALL, VOTE_BALLOT };
unsigned vote (unsigned mask, VoteKind kind, bool predicate);

/* PTX instructions the kernels use through inline assembly on the GPU (simt.cc). */
void mma_m16n8k32_s8 (int32_t d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                      const int32_t c[4]);
void mma_m16n8k16_f16 (float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                       const float c[4]);
void mma_m16n8k16_bf16 (float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                        const float c[4]);
void ldmatrix_x4 (uint32_t r[4], const void *shared_row);
void ldmatrix_x4_trans (uint32_t r[4], const void *shared_row);
void cp_async (void *shared_dst, const void *global_src, int bytes);
void cp_async_commit ();
void cp_async_wait (int newest_pending);

/* This block's dynamic shared memory (the launch's third argument, in bytes). */
void *dynamic_shared ();
/* The block's first call for `p` fills its `bytes` with garbage (SAM2_STATIC_SHARED). */
void fresh_static_shared (void *p, size_t bytes);

/* Runs body for every thread of every block of the launch, or records a launch error (the
 * next cudaGetLastError's) and runs nothing; while a stream is being captured into a CUDA graph,
 * records the launch for the graph's replays instead. */
void run (const void *kernel, dim3 grid, dim3 block, size_t shared_bytes,
          const std::function<void ()> &body);

/* Host work in stream order (a copy, a cuBLAS call): done now, or recorded while capturing. */
void enqueue (std::function<void ()> work);

template <typename... P> struct Launch {
  void (*kernel) (P...);
  dim3 grid, block;
  size_t shared_bytes;

  template <typename... A>
  void
  operator() (A &&...args) const
  {
    /* the arguments converted once to the parameter types, as the launch does, and kept for a
     * graph's replays; each thread's call copies them into its by-value parameters */
    const auto params = std::make_shared<const std::tuple<std::decay_t<P>...>> (
        std::forward<A> (args)...);
    void (*k) (P...) = kernel;
    run (reinterpret_cast<const void *> (k), grid, block, shared_bytes,
         [params, k] { std::apply (k, *params); });
  }
};

template <typename... P>
Launch<P...>
launch (dim3 grid, dim3 block, size_t shared_bytes, void (*kernel) (P...))
{
  return Launch<P...> { kernel, grid, block, shared_bytes };
}

template <typename T>
uint64_t
to_bits (T v)
{
  static_assert (sizeof (T) <= 8, "shuffles move at most 8 bytes");
  uint64_t u = 0;
  memcpy (&u, &v, sizeof v);
  return u;
}

template <typename T>
T
from_bits (uint64_t u)
{
  T v;
  memcpy (&v, &u, sizeof v);
  return v;
}

}  // namespace sam2_simt

#define SAM2_LAUNCH(grid, block, shared_bytes, stream, ...)                                    \
  ((void) (stream), sam2_simt::launch ((grid), (block), (shared_bytes), __VA_ARGS__))
#define SAM2_DYNAMIC_SHARED(type, name)                                                        \
  type *const name = static_cast<type *> (sam2_simt::dynamic_shared ())
/* One static copy, refilled with garbage by the first thread of each block that reaches it
 * (every thread passes the declaration before touching the array), as on the GPU, where a
 * block's shared memory starts with whatever was there. */
#define SAM2_STATIC_SHARED(type, name, dims)                                                   \
  static __align__ (16) type name dims;                                                        \
  sam2_simt::fresh_static_shared (&name, sizeof name)

/* ---- intrinsics ------------------------------------------------------------------------------
 * The host's float and double operations are IEEE, round to nearest, one rounding each (x86-64
 * SSE; the build does not contract into FMAs): the _rn intrinsics are the plain operations. */
static inline float __fadd_rn (float a, float b) { return a + b; }
static inline float __fsub_rn (float a, float b) { return a - b; }
static inline float __fmul_rn (float a, float b) { return a * b; }
static inline float __fdiv_rn (float a, float b) { return a / b; }
static inline float __fmaf_rn (float a, float b, float c) { return fmaf (a, b, c); }
static inline double __dadd_rn (double a, double b) { return a + b; }
static inline double __dsub_rn (double a, double b) { return a - b; }
static inline double __dmul_rn (double a, double b) { return a * b; }
static inline double __ddiv_rn (double a, double b) { return a / b; }
static inline float __int_as_float (int x) { return sam2_simt::from_bits<float> ((uint32_t) x); }
static inline int __float_as_int (float x) { return (int) (uint32_t) sam2_simt::to_bits (x); }
static inline float __uint_as_float (unsigned x) { return sam2_simt::from_bits<float> (x); }
static inline unsigned __float_as_uint (float x) { return (unsigned) sam2_simt::to_bits (x); }

/* cvt.rzi.s32.f32: toward zero, saturating, NaN to 0 (a C cast is undefined out of range) */
static inline int
__float2int_rz (float x)
{
  if (isnan (x))
    return 0;
  if (x >= 2147483648.0f)
    return INT32_MAX;
  if (x <= -2147483648.0f)
    return INT32_MIN;
  return (int) x;
}

/* cvt.rni.s32.f32: to nearest even, saturating, NaN to 0 */
static inline int
__float2int_rn (float x)
{
  return __float2int_rz (nearbyintf (x));
}

static inline void __syncthreads () { sam2_simt::sync_block (); }
static inline void __syncwarp (unsigned mask = 0xffffffffu) { sam2_simt::sync_warp (mask); }
static inline void __threadfence () {}
static inline void __threadfence_block () {}

template <typename T>
static inline T
__shfl_sync (unsigned mask, T v, int src, int width = 32)
{
  return sam2_simt::from_bits<T> (
      sam2_simt::shuffle (mask, sam2_simt::to_bits (v), sam2_simt::SHFL_IDX, src, width));
}

template <typename T>
static inline T
__shfl_xor_sync (unsigned mask, T v, int lane_mask, int width = 32)
{
  return sam2_simt::from_bits<T> (
      sam2_simt::shuffle (mask, sam2_simt::to_bits (v), sam2_simt::SHFL_XOR, lane_mask, width));
}

template <typename T>
static inline T
__shfl_down_sync (unsigned mask, T v, unsigned delta, int width = 32)
{
  return sam2_simt::from_bits<T> (sam2_simt::shuffle (mask, sam2_simt::to_bits (v),
                                                      sam2_simt::SHFL_DOWN, (int) delta, width));
}

template <typename T>
static inline T
__shfl_up_sync (unsigned mask, T v, unsigned delta, int width = 32)
{
  return sam2_simt::from_bits<T> (sam2_simt::shuffle (mask, sam2_simt::to_bits (v),
                                                      sam2_simt::SHFL_UP, (int) delta, width));
}

static inline int
__any_sync (unsigned mask, int p)
{
  return (int) sam2_simt::vote (mask, sam2_simt::VOTE_ANY, p != 0);
}

static inline int
__all_sync (unsigned mask, int p)
{
  return (int) sam2_simt::vote (mask, sam2_simt::VOTE_ALL, p != 0);
}

static inline unsigned
__ballot_sync (unsigned mask, int p)
{
  return sam2_simt::vote (mask, sam2_simt::VOTE_BALLOT, p != 0);
}

/* One fiber runs at a time: an atomic is the plain read-modify-write. */
template <typename T>
static inline T
atomicAdd (T *address, T v)
{
  const T old = *address;
  *address = old + v;
  return old;
}

/* atomicInc: old >= limit ? 0 : old + 1 stored, old returned */
static inline unsigned int
atomicInc (unsigned int *address, unsigned int limit)
{
  const unsigned int old = *address;
  *address = old >= limit ? 0u : old + 1u;
  return old;
}

template <typename T>
static inline T
atomicMin (T *address, T v)
{
  const T old = *address;
  *address = v < old ? v : old;
  return old;
}

template <typename T>
static inline T
atomicMax (T *address, T v)
{
  const T old = *address;
  *address = v > old ? v : old;
  return old;
}

static inline int min (int a, int b) { return a < b ? a : b; }
static inline int max (int a, int b) { return a > b ? a : b; }
static inline unsigned min (unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max (unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min (long long a, long long b) { return a < b ? a : b; }
static inline long long max (long long a, long long b) { return a > b ? a : b; }
static inline size_t min (size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max (size_t a, size_t b) { return a > b ? a : b; }

#endif
