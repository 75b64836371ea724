/* ptx.cuh: the PTX instructions the kernels reach through inline assembly (the W4A8 GEMM's
 * asynchronous copies, INT8 tensor-core products and fragment loads; the half-precision
 * attention's products and transposed loads), one definition each. Under
 * the SIMT emulator (tests/simt, SAM2_SIMT_ON_HOST) the same functions run the emulator's model
 * of each instruction, so the kernels that use them run unchanged on the host. */
#ifndef SAM2_KERNELS_PTX_CUH
#define SAM2_KERNELS_PTX_CUH

#include "common.cuh"

#include <stdint.h>

/* cp.async.cg: 16 bytes from global to shared memory, landing at the cp_async_wait that covers
 * its commit group. */
__device__ __forceinline__ void
cp_async16 (void *smem, const void *gmem)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::cp_async (smem, gmem, 16);
#else
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
#endif
}

__device__ __forceinline__ void
cp_async_commit ()
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::cp_async_commit ();
#else
  asm volatile ("cp.async.commit_group;\n" ::: "memory");
#endif
}

/* Waits until at most N of this thread's newest commit groups are still in flight. */
template <int N>
__device__ __forceinline__ void
cp_async_wait ()
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::cp_async_wait (N);
#else
  asm volatile ("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* c (16 x 8, s32) += a (16 x 32, s8, row) b (32 x 8, s8, col). */
__device__ __forceinline__ void
mma_s8 (int32_t c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::mma_m16n8k32_s8 (c, a, b0, b1, c);
#else
  asm volatile ("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* c (16 x 8, s32) = a (16 x 32, s8, row) b (32 x 8, s8, col) + c0 (every element). */
__device__ __forceinline__ void
mma_s8_from (int32_t c[4], const uint32_t a[4], uint32_t b0, uint32_t b1, int32_t c0)
{
#ifdef SAM2_SIMT_ON_HOST
  const int32_t c_in[4] = { c0, c0, c0, c0 };
  sam2_simt::mma_m16n8k32_s8 (c, a, b0, b1, c_in);
#else
  asm volatile ("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %10, %10, %10};\n"
                : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0));
#endif
}

/* A hint: the line holding gmem into L1 (the emulator has no caches). */
__device__ __forceinline__ void
prefetch_l1 (const void *gmem)
{
#ifdef SAM2_SIMT_ON_HOST
  (void) gmem;
#else
  asm volatile ("prefetch.global.L1 [%0];\n" ::"l"(gmem));
#endif
}

/* ldmatrix.x4 (b16): lane l gives the address of row l % 8 of matrix l / 8; r[j] is word l % 4
 * of row l / 4 of matrix j. */
__device__ __forceinline__ void
ldmatrix_x4 (uint32_t r[4], const void *smem)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::ldmatrix_x4 (r, smem);
#else
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                : "r"(s));
#endif
}

/* c (16 x 8, f32) += a (16 x 16, f16, row) b (16 x 8, f16, col): the FP16 attention's products;
 * fragments as the INT8 form's with two halves per register (attention-16.cuh). */
__device__ __forceinline__ void
mma_16816 (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::mma_m16n8k16_f16 (c, a, b0, b1, c);
#else
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* The same with bfloat16 operands (the BF16 precision's attention). */
__device__ __forceinline__ void
mma_16816_bf16 (float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::mma_m16n8k16_bf16 (c, a, b0, b1, c);
#else
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* Four 8 x 8 matrices of halves from shared memory, transposed: lanes 8 i .. 8 i + 7 give the row
 * addresses of matrix i (16 bytes each, 16-byte aligned); r[i] gets rows 2t, 2t+1 of column g. */
__device__ __forceinline__ void
ldmatrix_x4_trans (uint32_t r[4], const void *row)
{
#ifdef SAM2_SIMT_ON_HOST
  sam2_simt::ldmatrix_x4_trans (r, row);
#else
  const unsigned addr = (unsigned) __cvta_generic_to_shared (row);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                : "r"(addr));
#endif
}

#endif
