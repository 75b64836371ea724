"""PyTorch + transformers on the CPU, for comparison with sam2-bench-cpu on the same machine.

    python benchmarks/bench_torch_cpu.py [--config CONFIG.json] [--threads N] [--iterations N]
                                         [--dtype float32|bfloat16]

Builds transformers' Sam2Model from a config (default: the tiny fixture config; random weights,
the weights do not change the cost), and prints the encoder latency (get_image_embeddings,
median), the decoder latency per prompt (one point, multimask, image embeddings given) and the
peak resident memory, in the same format as sam2-bench-cpu. --dtype bfloat16 casts the model and
its inputs (PyTorch's bf16 eager, next to sam2-bench-cpu --precision bf16). Needs torch and transformers
(`pip install torch transformers==5.17.0`); the project itself never does.
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import Sam2Config, Sam2Model


def median_ms(fn, iterations):
    fn()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="../shared/fixtures/sam2-tiny-hash/config.json")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = Sam2Config.from_json_file(args.config)
    model = Sam2Model(cfg).eval().to(dtype)
    size = cfg.prompt_encoder_config.image_size
    pixels = torch.randn(1, 3, size, size, dtype=dtype)
    print(f"torch {torch.__version__}, {args.dtype}, threads: {torch.get_num_threads()}")
    with torch.inference_mode():
        enc = median_ms(lambda: model.get_image_embeddings(pixels), args.iterations)
        print(f"encoder {size}x{size}: {enc:.1f} ms median of {args.iterations}")
        emb = model.get_image_embeddings(pixels)
        pts = torch.tensor([[[[size * 0.5, size * 0.375]]]], dtype=dtype)
        lab = torch.ones(1, 1, 1, dtype=torch.long)
        dec = median_ms(lambda: model(image_embeddings=emb, input_points=pts, input_labels=lab,
                                      multimask_output=True), 20)
        print(f"decoder: {dec:.2f} ms per prompt (one point, multimask, median of 20)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
