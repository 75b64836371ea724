"""PyTorch + transformers on a CUDA GPU: the anchors our CUDA backend is compared with.

    python benchmarks/bench_torch_gpu.py [--sizes tiny,large] [--batches 1,8] [--dtype bfloat16]
                                         [--compile tiny] [--compile-batches first|all]
                                         [--save-dir DIR] [--json FILE]

For each SAM2.1 Hiera size (the architecture of the hub checkpoints facebook/sam2.1-hiera-*,
random weights: the weights do not change the cost), at 1024x1024:
  encoder  get_image_embeddings (Hiera + FPN + high-resolution convs), eager, in --dtype;
  decoder  prompt encoder + mask decoder for one point per image, multimask, embeddings given;
  compile  the encoder under torch.compile (default mode), for the sizes in --compile, at the
           first batch size only, or at every one with --compile-batches all (each batch size
           compiles anew, ~30 s);
  memory   peak GPU memory allocated by PyTorch during the eager encoder (tensors only:
           max_memory_allocated), what its caching allocator reserved for them
           (max_memory_reserved), and the growth of the device's used memory from before the
           model was loaded to after the encoder and decoder runs (cudaMemGetInfo: also cuBLAS's
           workspaces and the kernels loaded, as sam2-bench-gpu's GPU memory counts; kernels
           loaded for an earlier size of the same run are not counted again).
Median of --iterations CUDA-event timings after warm-up. With --save-dir, each size's float32
weights are saved there first (DIR/SIZE, as save_pretrained writes them) so the C benchmark can
run the very same model. Needs torch and transformers; the project itself never does.
"""
import argparse
import json
import os
import time

import torch
from transformers import Sam2Config, Sam2HieraDetConfig, Sam2Model, Sam2VisionConfig

# Backbone hyper-parameters of the four hub checkpoints (their config.json); the rest is
# Sam2Config's defaults, which are the hub's.
HIERA = {
    "tiny": {},
    "small": dict(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13]),
    "base-plus": dict(hidden_size=112, num_attention_heads=2, embed_dim_per_stage=[112, 224, 448, 896],
                      num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 3, 16, 3],
                      global_attention_blocks=[12, 16, 20],
                      window_positional_embedding_background_size=[14, 14]),
    "large": dict(hidden_size=144, num_attention_heads=2, embed_dim_per_stage=[144, 288, 576, 1152],
                  num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
                  global_attention_blocks=[23, 33, 43],
                  window_positional_embedding_background_size=[7, 7],
                  window_size_per_stage=[8, 4, 16, 8]),
}


def config_for(size):
    hd = HIERA[size]
    channels = hd.get("embed_dim_per_stage", [96, 192, 384, 768])[::-1]
    return Sam2Config(vision_config=Sam2VisionConfig(backbone_config=Sam2HieraDetConfig(**hd),
                                                     backbone_channel_list=channels))


def median_ms(fn, warmup, iterations):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def bench_size(size, args, dtype):
    rows = []
    model = Sam2Model(config_for(size)).eval()
    if args.save_dir:
        path = os.path.join(args.save_dir, size)
        model.save_pretrained(path, safe_serialization=True)
        print(f"saved {size} float32 weights to {path}", flush=True)
    free_before = torch.cuda.mem_get_info()[0]
    model = model.to("cuda", dtype)
    for batch in args.batches:
        pixels = torch.randn(batch, 3, 1024, 1024, device="cuda", dtype=dtype)
        points = torch.tensor([[[[500.0, 375.0]]]] * batch, device="cuda", dtype=dtype)
        labels = torch.ones(batch, 1, 1, dtype=torch.long, device="cuda")
        with torch.inference_mode():
            torch.cuda.reset_peak_memory_stats()
            encoder = median_ms(lambda: model.get_image_embeddings(pixels), 2, args.iterations)
            memory = torch.cuda.max_memory_allocated()
            reserved = torch.cuda.max_memory_reserved()
            embeddings = model.get_image_embeddings(pixels)
            decoder = median_ms(lambda: model(image_embeddings=embeddings, input_points=points,
                                              input_labels=labels, multimask_output=True),
                                3, args.iterations)
            torch.cuda.synchronize()
            device_used = free_before - torch.cuda.mem_get_info()[0]
        rows.append(dict(model=size, path="torch eager", dtype=str(dtype).split(".")[-1],
                         batch=batch, encoder_ms=round(encoder, 3),
                         decoder_ms_per_prompt=round(decoder / batch, 3),
                         gpu_memory_mb=round(memory / 2**20, 1),
                         gpu_reserved_mb=round(reserved / 2**20, 1),
                         gpu_device_mb=round(device_used / 2**20, 1)))
        print(json.dumps(rows[-1]), flush=True)
        if size in args.compile and (args.compile_batches == "all" or batch == args.batches[0]):
            compiled = torch.compile(model.get_image_embeddings)
            with torch.inference_mode():
                t0 = time.time()
                compiled(pixels)
                torch.cuda.synchronize()
                compile_s = time.time() - t0
                encoder = median_ms(lambda: compiled(pixels), 3, args.iterations)
            rows.append(dict(model=size, path="torch.compile", dtype=str(dtype).split(".")[-1],
                             batch=batch, encoder_ms=round(encoder, 3),
                             compile_s=round(compile_s, 1)))
            print(json.dumps(rows[-1]), flush=True)
    del model
    torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,small,base-plus,large")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--compile", default="tiny", help="sizes whose encoder is also torch.compiled")
    ap.add_argument("--compile-batches", default="first", choices=["first", "all"],
                    help="compile at the first batch size only, or at each")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--save-dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.compile = set(s for s in args.compile.split(",") if s)
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    rows = []
    for size in args.sizes.split(","):
        rows += bench_size(size, args, dtype)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
