/* attention-bf16.cu: the BF16 instances of the tensor-core attention kernels (attention-16.cuh),
 * launched by attention-f16.cu's sam2_cuda_attention_16. */
#include "attention-16.cuh"

int
sam2_attention_16_launch_bf16 (const Sam2CudaAttentionArgs &a, bool v2, cudaStream_t stream)
{
  return launch_attention_16<true> (a, v2, stream);
}
