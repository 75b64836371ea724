#!/usr/bin/env python3
"""How close each point (or box) prompt of a sam2-shapes evaluation set sits to SAM2's mask switch.

Why
---
For one point (or a box) and ``multimask_output=False``, SAM2's mask decoder keeps its single-mask output
(token 0) only when that mask's stability score (IoU of the low-res logits thresholded at +delta
and at -delta, delta 0.05) is at least 0.98; otherwise it falls back to the multimask candidate
with the highest predicted IoU (transformers' ``Sam2MaskDecoder._dynamic_multimask_via_stability``).
On a 64x64 low-res mask of a small shape, one pixel moves the stability score by ~0.005, so a
prompt whose float score is within ~0.01 of 0.98 can switch masks under any perturbation of the
weights (FP16 rounding included), and when the fallback candidates are poor the object's IoU
collapses. This prints, with the float model of transformers 5.17 (the reference), each prompt's
stability score, the four predicted IoUs, the float IoU against the ground truth, and how many
prompts lie within 0.01 of the switch.

Usage
-----
    /work/venv-ref/bin/python tools/shapes_point_stability.py \
        [--model ../shared/fixtures/sam2-shapes] [--eval-set .../eval_dev.safetensors]
        [--prompt point|box]

Needs torch, transformers 5.17 and safetensors (the reference venv); nothing in the build or the
tests depends on it.
"""
import argparse
import os

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import Sam2Model
from transformers.models.sam2 import modeling_sam2

SHAPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures",
                      "sam2-shapes")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
NEAR = 0.01     # "near the switch": within this of the threshold


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=SHAPES)
    ap.add_argument("--eval-set", default=os.path.join(SHAPES, "eval_dev.safetensors"))
    ap.add_argument("--prompt", choices=("point", "box"), default="point",
                    help="the eval set's point prompts (points_xy) or its boxes (boxes_xyxy)")
    args = ap.parse_args()

    model = Sam2Model.from_pretrained(args.model).eval()
    decoder_cls = modeling_sam2.Sam2MaskDecoder
    seen = {}
    original = decoder_cls._dynamic_multimask_via_stability

    def recording(self, masks, ious):     # masks (B, P, 4, h, w), ious (B, P, 4)
        seen["stability"] = float(self._get_stability_scores(masks[:, :, 0:1]).flatten()[0])
        seen["threshold"] = float(self.dynamic_multimask_stability_thresh)
        seen["ious"] = [float(v) for v in ious.flatten()]
        return original(self, masks, ious)

    decoder_cls._dynamic_multimask_via_stability = recording
    ev = load_file(args.eval_set)
    images = ev["images_rgb_u8"]                     # (N, H, W, 3)
    near = 0
    print("object  stability  predicted IoU (token 0 | 1 2 3)  float IoU vs gt")
    for i in range(images.shape[0]):
        x = (images[i] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        pixels = torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None]
        with torch.no_grad():
            if args.prompt == "box":
                box = torch.tensor(ev["boxes_xyxy"][i], dtype=torch.float32).view(1, 1, 4)
                model(pixel_values=pixels, input_boxes=box, multimask_output=False)
            else:
                point = torch.tensor(ev["points_xy"][i], dtype=torch.float32).view(1, 1, 1, 2)
                model(pixel_values=pixels, input_points=point,
                      input_labels=torch.ones(1, 1, 1, dtype=torch.long), multimask_output=False)
        s, t = seen["stability"], seen["threshold"]
        close = abs(s - t) < NEAR
        near += close
        ious = seen["ious"]
        print(f"{i:6d}  {s:9.4f}{' *' if close else '  '}  {ious[0]:.3f} | "
              f"{ious[1]:.3f} {ious[2]:.3f} {ious[3]:.3f}  "
              f"{float(ev[f'fp32_{args.prompt}_iou_vs_gt'][i]):.2f}")
    print(f"{near} of {images.shape[0]} prompts (*) have a stability score within {NEAR} of "
          f"the {seen['threshold']} switch")


if __name__ == "__main__":
    main()
