#!/usr/bin/env python3
"""Make a *tuning* or held-out evaluation set for sam2-shapes, disjoint from the fixtures' eval_dev.

Why
---
Recipes are chosen by accuracy, and ``eval_dev`` (48 objects) is the set accuracy is reported
on: tuning on it would report a tuned number. This writes a larger set from the same picture
generator the fixtures used (``generators/train_shapes.py::gen``, run on the CPU with its own
seed, so no picture repeats eval_dev's or the fixtures' CUDA-seeded holdout's), in eval_dev's
format and with the same fp32 reference outputs, for ``sam2q eval --eval-set``.

The README's sets: the tuning set (``--n 480 --seed 2026``, the default), on which recipes were
chosen, and the held-out set (``--n 960 --seed 90210``), made after they were fixed and used
only to report on (scripts/shapes-accuracy.sh takes both).

The generator is taken from the fixtures' own script (read and executed up to its ``main``), not
copied, so the distribution is the one eval_dev was drawn from.

Usage
-----
    python tools/gen_shapes_tuning_set.py OUT.safetensors [--n 480] [--seed 2026]

Needs torch, transformers 5.17 and safetensors (the reference venv); nothing in the build or the
tests depends on it.
"""
import argparse
import os
import sys

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures")


def load_generator(path):
    """The fixtures' train_shapes module namespace on the CPU, without running its main()."""
    src = open(path).read()
    src = src.split("\ntry:\n    main()")[0]
    src = src.replace('dev = "cuda"', 'dev = "cpu"')
    src = src.replace("float(sys.argv[1]) if len(sys.argv) > 1 else 240.0", "0.0")  # training time
    ns = {"__name__": "train_shapes", "__file__": path}
    exec(compile(src, path, "exec"), ns)
    return ns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=480, help="pictures (one object each)")
    ap.add_argument("--seed", type=int, default=2026, help="CPU generator seed (eval_dev: 777 on CUDA)")
    ap.add_argument("--fixtures", default=FIXTURES)
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file
    from transformers import Sam2Model

    ts = load_generator(os.path.join(args.fixtures, "generators", "train_shapes.py"))
    model = Sam2Model.from_pretrained(os.path.join(args.fixtures, "sam2-shapes")).eval()
    g = torch.Generator(device="cpu")
    g.manual_seed(args.seed)
    img, mask, pts, box = ts["gen"](args.n, g)
    t = {"images_rgb_u8": img.permute(0, 2, 3, 1).to(torch.uint8).contiguous(),
         "gt_masks_u8": mask.to(torch.uint8).contiguous(),
         "points_xy": pts.contiguous(), "boxes_xyxy": box.contiguous()}
    miou = {}
    with torch.no_grad():
        for kind in ("point", "box"):
            logits, scores, ious = [], [], []
            for i in range(0, args.n, 48):  # eval_dev's batch: the same reference arithmetic
                s = slice(i, i + 48)
                o = ts["forward"](model, img[s], pts[s] if kind == "point" else None,
                                  box[s] if kind == "box" else None)
                logits.append(o.pred_masks[:, 0, 0].float())
                scores.append(o.iou_scores.float().view(-1))
                ious.append(ts["iou"](ts["up"](o.pred_masks) > 0, mask[s]))
            t[f"fp32_{kind}_lowres_logits"] = torch.cat(logits).contiguous()
            t[f"fp32_{kind}_iou_scores"] = torch.cat(scores).contiguous()
            t[f"fp32_{kind}_iou_vs_gt"] = torch.cat(ious).contiguous()
            miou[kind] = t[f"fp32_{kind}_iou_vs_gt"].mean().item()
    save_file(t, args.out, metadata={"generator": "train_shapes.gen on cpu", "seed": str(args.seed),
                                     "n": str(args.n)})
    print(f"wrote {args.out}: {args.n} pictures, fp32 mIoU point {miou['point']:.4f}, "
          f"box {miou['box']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
