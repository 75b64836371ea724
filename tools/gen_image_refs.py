#!/usr/bin/env python3
"""Generates tests/data/image-refs.safetensors, the PyTorch references of tests/core/test-image.c.

Run with the reference environment (torch, torchvision, transformers, safetensors):

    /work/venv-ref/bin/python tools/gen_image_refs.py [output path]

The references were made with torch 2.15 (CPU, AVX2 kernels), torchvision 0.29 and
transformers 5.17. Tests never run Python: they regenerate the same inputs in C and compare.

Inputs are not stored, only outputs: every input byte or float is a pure function of
(seed, index) that test-image.c computes too (keep the two in sync):

    z = (seed << 40) ^ index                     (uint64, index = byte offset in the frame buffer
    z += 0x9E3779B97F4A7C15                       or element offset in the float plane)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9      (mod 2^64; the splitmix64 finaliser)
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z ^= z >> 31
    byte  = z >> 56
    float = ((z >> 40) - 2^23) / 2^20             (exact in float32, in [-8, 8))

A frame is `stride * height` bytes in one of the Sam2PixelFormat layouts (RGB, RGBA, RGBX, BGR,
BGRA, BGRX = 0..5), `stride = width * bpp + pad`; alpha, X and the padding bytes are filled too, so
a C implementation that read them would fail. Kinds: "noise" (every byte from the hash),
"white" (R, G and B bytes 255: checks the clamp after each pass), "checker" (R, G and B bytes
255 * ((x + y) & 1)); in every kind the other bytes (alpha, X, padding) come from the hash.

Contents (metadata strings, then tensors):

    resize_cases / upsample_cases / processor_cases: comma-separated case names
    resize.<name>    "kind seed in_w in_h out_w out_h format pad row_step sha256"
        torchvision resize (BILINEAR, antialias) of the frame's RGB to (out_h, out_w), as the
        processor runs it; sha256 of all (out_h, out_w, 3) bytes; tensor resize/<name> holds rows
        0, row_step, 2 * row_step, ... (uint8, (n, out_w * 3)) for readable failures.
    upsample.<name>  "seed in_w in_h out_w out_h row_step sha256"
        F.interpolate(bilinear, align_corners=False) of a (1, 1, in_h, in_w) float32 plane;
        sha256 of all float32 bytes (little-endian); tensor upsample/<name> holds sampled rows.
    processor.<name> "kind seed in_w in_h size format pad"
        tensor processor/<name>: Sam2ImageProcessor(size=size x size) pixel_values (3, size, size).
    normalize_lut    (3, 256) float32: what the processor's rescale + normalise makes of each byte.
"""
import hashlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.transforms.v2 import functional as tvF
from transformers import Sam2ImageProcessor

FORMATS = {  # Sam2PixelFormat: (bytes per pixel, byte offset of R, G, B)
    0: (3, 0, 1, 2), 1: (4, 0, 1, 2), 2: (4, 0, 1, 2),
    3: (3, 2, 1, 0), 4: (4, 2, 1, 0), 5: (4, 2, 1, 0),
}

# name: (kind, seed, in_w, in_h, out_w, out_h, format, pad, row_step)
RESIZE_CASES = {
    "up_97x61_256": ("noise", 1, 97, 61, 256, 256, 0, 0, 16),
    "down_300x200_128_bgrx": ("noise", 2, 300, 200, 128, 128, 5, 12, 1),
    "down_517x389_256_bgr": ("noise", 3, 517, 389, 256, 256, 3, 5, 16),
    "hd_1920x1080_1024_rgbx": ("noise", 4, 1920, 1080, 1024, 1024, 2, 0, 128),
    "odd_33x17_256_rgba": ("noise", 5, 33, 17, 256, 256, 1, 3, 16),
    "width_only_1000x64_bgra": ("noise", 6, 1000, 64, 256, 64, 4, 0, 1),
    "height_only_64x700_bgr": ("noise", 7, 64, 700, 64, 256, 3, 7, 1),
    "identity_40x30_rgbx": ("noise", 8, 40, 30, 40, 30, 2, 4, 1),
    "white_640x480_1024": ("white", 9, 640, 480, 1024, 1024, 0, 0, 128),
    "checker_1280x720_1024_bgrx": ("checker", 10, 1280, 720, 1024, 1024, 5, 8, 128),
    "tiny_1x1_4x4": ("noise", 11, 1, 1, 4, 4, 0, 0, 1),
    "wide_333x77_450x100": ("noise", 12, 333, 77, 450, 100, 0, 1, 10),
}

# name: (seed, in_w, in_h, out_w, out_h, row_step)
UPSAMPLE_CASES = {
    "up_64x64_97x61": (21, 64, 64, 97, 61, 1),
    "small_16x16_60x50": (22, 16, 16, 60, 50, 1),       # out_h + out_w <= 128: other kernel
    "small_down_64x64_30x40": (23, 64, 64, 30, 40, 1),
    "down_200x300_100x150": (24, 200, 300, 100, 150, 1),
    "same_height_64x64_100x64": (25, 64, 64, 100, 64, 1),
    "frame_256x256_1920x1080": (26, 256, 256, 1920, 1080, 135),
}

# name: (kind, seed, in_w, in_h, size, format, pad)
PROCESSOR_CASES = {
    "proc_33x17_64_bgrx": ("noise", 31, 33, 17, 64, 5, 3),
}


def hash_u64(seed, n):
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) << np.uint64(40)) ^ np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_bytes(seed, n):
    return (hash_u64(seed, n) >> np.uint64(56)).astype(np.uint8)


def hash_floats(seed, n):
    v = (hash_u64(seed, n) >> np.uint64(40)).astype(np.int64) - (1 << 23)
    return (v.astype(np.float64) / (1 << 20)).astype(np.float32)


def frame_rgb(kind, seed, w, h, fmt, pad):
    """The (h, w, 3) RGB image a C test's frame buffer holds."""
    bpp, ro, go, bo = FORMATS[fmt]
    stride = w * bpp + pad
    buf = hash_bytes(seed, stride * h).reshape(h, stride)
    px = buf[:, : w * bpp].reshape(h, w, bpp)
    rgb = np.stack([px[..., ro], px[..., go], px[..., bo]], -1)
    if kind == "white":
        rgb[:] = 255
    elif kind == "checker":
        yy, xx = np.mgrid[0:h, 0:w]
        rgb[:] = (((xx + yy) & 1) * 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(rgb)


def resize_like_processor(rgb, out_w, out_h):
    # What TorchvisionBackend.process_image + resize do: HWC -> contiguous CHW uint8, batched.
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()[None]
    out = tvF.resize(chw, [out_h, out_w], interpolation=tvF.InterpolationMode.BILINEAR,
                     antialias=True)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/image-refs.safetensors"
    torch.set_num_threads(2)
    tensors, meta = {}, {}

    for name, (kind, seed, w, h, ow, oh, fmt, pad, step) in RESIZE_CASES.items():
        rs = resize_like_processor(frame_rgb(kind, seed, w, h, fmt, pad), ow, oh)
        digest = hashlib.sha256(rs.tobytes()).hexdigest()
        meta[f"resize.{name}"] = f"{kind} {seed} {w} {h} {ow} {oh} {fmt} {pad} {step} {digest}"
        tensors[f"resize/{name}"] = torch.from_numpy(rs[::step].reshape(-1, ow * 3).copy())

    for name, (seed, w, h, ow, oh, step) in UPSAMPLE_CASES.items():
        x = torch.from_numpy(hash_floats(seed, w * h).reshape(1, 1, h, w))
        up = F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False)[0, 0].numpy()
        digest = hashlib.sha256(up.astype("<f4").tobytes()).hexdigest()
        meta[f"upsample.{name}"] = f"{seed} {w} {h} {ow} {oh} {step} {digest}"
        tensors[f"upsample/{name}"] = torch.from_numpy(up[::step].copy())

    for name, (kind, seed, w, h, size, fmt, pad) in PROCESSOR_CASES.items():
        proc = Sam2ImageProcessor(size={"height": size, "width": size})
        pv = proc(images=frame_rgb(kind, seed, w, h, fmt, pad), return_tensors="pt")["pixel_values"]
        meta[f"processor.{name}"] = f"{kind} {seed} {w} {h} {size} {fmt} {pad}"
        tensors[f"processor/{name}"] = pv[0].contiguous()

    # Every byte value through the processor's own rescale + normalise (a 2 x 256 image keeps
    # its size, so only normalisation runs; 2 rows keep the channel axis unambiguous).
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(2, axis=0)
    proc = Sam2ImageProcessor(size={"height": 2, "width": 256})
    pv = proc(images=ramp, return_tensors="pt")["pixel_values"]
    tensors["normalize_lut"] = pv[0, :, 0, :].contiguous()

    meta["resize_cases"] = ",".join(RESIZE_CASES)
    meta["upsample_cases"] = ",".join(UPSAMPLE_CASES)
    meta["processor_cases"] = ",".join(PROCESSOR_CASES)
    meta["generator"] = (f"tools/gen_image_refs.py; torch {torch.__version__} "
                         f"({torch.backends.cpu.get_cpu_capability()})")
    save_file(tensors, out_path, metadata=meta)
    print(out_path, sum(t.numel() * t.element_size() for t in tensors.values()), "bytes of tensors")


if __name__ == "__main__":
    main()
