"""Writes a few images of the sam2-shapes evaluation set as PNG demo inputs, with their prompts.

    /work/venv-ref/bin/python tools/extract_demo_images.py ../shared/fixtures/sam2-shapes/eval_dev.safetensors examples/demo

Outputs shapes-<i>.png (256x256 RGB) and prompts.txt ("file x y x0 y0 x1 y1" per line: the
positive point and the box the evaluation protocol uses for that image). Run once; the outputs
are committed so the demo needs neither Python nor the fixtures.
"""
import sys
from pathlib import Path

from PIL import Image
from safetensors.numpy import load_file

PICK = (0, 3, 7, 12)

src, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
t = load_file(src)
lines = []
for i in PICK:
    name = f"shapes-{i}.png"
    Image.fromarray(t["images_rgb_u8"][i]).save(out / name, optimize=True)
    x, y = t["points_xy"][i]
    x0, y0, x1, y1 = t["boxes_xyxy"][i]
    lines.append(f"{name} {x:g} {y:g} {x0:g} {y0:g} {x1:g} {y1:g}")
(out / "prompts.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
