/* attention-f16.cu: sam2_cuda_attention_16 and its version switch (kernels.h), and the FP16
 * instances of the tensor-core attention kernels (attention-16.cuh says how they work;
 * attention-bf16.cu holds the BF16 ones). */
#include "attention-16.cuh"

namespace {

int kernel_version = 0;   /* 0: not read from the environment yet */

} /* namespace */

int
sam2_attention_16_launch_f16 (const Sam2CudaAttentionArgs &a, bool v2, cudaStream_t stream)
{
  return launch_attention_16<false> (a, v2, stream);
}

extern "C" int
sam2_cuda_attention_16_version (void)
{
  return sam2_kernel_version (&kernel_version, "SAM2_ATTENTION_KERNEL", 2);
}

extern "C" void
sam2_cuda_attention_16_set_version (int version)
{
  sam2_kernel_version_set (&kernel_version, version, 2);
}

namespace {

/* rows of `elements`-aligned halves: the first at byte address `at`, ld and batch_stride */
bool
rows_aligned (uintptr_t at, int ld, size_t batch_stride, unsigned elements)
{
  return at % (2 * elements) == 0 && ld % elements == 0 && batch_stride % elements == 0;
}

/* sam2_cuda_attention_16_reads_16 for q16, k16 and v16 at these byte addresses */
bool
reads_16_at (const Sam2CudaAttentionArgs &a, uintptr_t q, uintptr_t k, uintptr_t v)
{
  return sam2_cuda_attention_16_version () == 2 && a.head_dim % 4 == 0 && a.head_dim >= 4
         && a.head_dim <= SAM2_CUDA_ATTENTION_MAX_HEAD_DIM
         && !sam2_cuda_attention_decode_shape (a) && rows_aligned (q, a.q_ld, a.q_batch_stride, 2)
         && rows_aligned (k, a.k_ld, a.k_batch_stride, 4)
         && rows_aligned (v, a.v_ld, a.v_batch_stride, 4);
}

} /* namespace */

extern "C" int
sam2_cuda_attention_16_reads_16 (const Sam2CudaAttentionArgs *a)
{
  return a != NULL && a->q16 != NULL && a->k16 != NULL && a->v16 != NULL
         && reads_16_at (*a, (uintptr_t) a->q16, (uintptr_t) a->k16, (uintptr_t) a->v16);
}

extern "C" int
sam2_cuda_attention_16_reads_16_at (const Sam2CudaAttentionArgs *a, size_t q_at, size_t k_at,
                                    size_t v_at)
{
  /* a 16-byte aligned start keeps each offset's alignment up to the 8 bytes checked */
  return a != NULL && reads_16_at (*a, 2 * q_at, 2 * k_at, 2 * v_at);
}

extern "C" int
sam2_cuda_attention_16 (const Sam2CudaAttentionArgs *args, Sam2CudaHalf type,
                        cudaStream_t stream)
{
  if (args == NULL || !sam2_half_valid (type))
    return SAM2_CUDA_UNSUPPORTED;
  const Sam2CudaAttentionArgs a = *args;
  const bool in16 = a.q16 != NULL;
  if (!sam2_attention_args_valid (a)
      || (in16 ? !sam2_cuda_attention_16_reads_16 (&a)
               : a.q == NULL || a.k == NULL || a.v == NULL)
      || (a.out16 != NULL && a.out16_type != type))
    return SAM2_CUDA_UNSUPPORTED;
  if (a.batch == 0 || a.len_q == 0)
    return SAM2_CUDA_OK;
  const bool v2 = sam2_cuda_attention_16_version () == 2;
  if (v2 && !in16 && sam2_cuda_attention_decode_shape (a))
    return sam2_cuda_attention (&a, stream);   /* FP32, and faster for this shape */
  return type == SAM2_CUDA_BF16 ? sam2_attention_16_launch_bf16 (a, v2, stream)
                                : sam2_attention_16_launch_f16 (a, v2, stream);
}
