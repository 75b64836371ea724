#!/usr/bin/env python3
"""Generates tests/data/rle-refs.json, the pycocotools references of tests/core/test-rle.c.

Run with the reference environment (numpy and pycocotools; `pip install pycocotools`):

    /work/venv-ref/bin/python tools/gen_rle_refs.py [output path]

The references were made with pycocotools 2.0.11 and numpy 2. Tests never run Python.

Contents (one JSON object):

    polygons: [{name, height, width, polygons: [[x0, y0, x1, y1, ...], ...],
                counts, area, bbox}]
        counts is the compressed string of maskUtils.merge(maskUtils.frPyObjects(polygons, h, w))
        (what COCO.annToRLE does with a polygon annotation), area and bbox its maskUtils.area
        and maskUtils.toBbox.
    masks: [{name, height, width, runs, counts, area, bbox}]
        runs: the mask as an uncompressed RLE (column-major runs starting with zeros, computed
        here with numpy and checked against maskUtils.decode); counts: maskUtils.encode of the
        mask (compressed string); area and bbox as above.

Masks are stored as runs rather than pixels to keep the file small; the C test decodes them to
pixels and encodes those again, so sam2_rle_encode is still compared with maskUtils.encode.
"""
import json
import math
import sys

import numpy as np
from pycocotools import mask as mask_utils


def runs_of(mask):
    """Uncompressed COCO RLE counts of a (h, w) 0/1 array."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    counts = []
    value, run = 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return counts


def described(rle):
    return {
        "counts": rle["counts"].decode("ascii"),
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


def polygon_case(name, height, width, polygons):
    rles = mask_utils.frPyObjects(polygons, height, width)
    rle = mask_utils.merge(rles)
    case = {"name": name, "height": height, "width": width, "polygons": polygons}
    case.update(described(rle))
    return case


def mask_case(name, mask):
    mask = np.asfortranarray(mask.astype(np.uint8))
    rle = mask_utils.encode(mask)
    runs = runs_of(mask)
    check = mask_utils.decode(mask_utils.frPyObjects({"size": list(mask.shape), "counts": runs},
                                                     *mask.shape))
    assert (check == mask).all(), name
    case = {"name": name, "height": int(mask.shape[0]), "width": int(mask.shape[1]), "runs": runs}
    case.update(described(rle))
    return case


def regular(cx, cy, r, n, phase=0.0):
    out = []
    for i in range(n):
        a = phase + 2 * math.pi * i / n
        out += [round(cx + r * math.cos(a), 3), round(cy + r * math.sin(a), 3)]
    return out


def star(cx, cy, r_out, r_in, n):
    out = []
    for i in range(2 * n):
        r = r_out if i % 2 == 0 else r_in
        a = math.pi * i / n - math.pi / 2
        out += [round(cx + r * math.cos(a), 3), round(cy + r * math.sin(a), 3)]
    return out


def polygon_cases(rng):
    cases = [
        polygon_case("triangle", 40, 50, [[5.0, 5.0, 40.0, 12.0, 18.0, 33.0]]),
        polygon_case("triangle-reversed", 40, 50, [[18.0, 33.0, 40.0, 12.0, 5.0, 5.0]]),
        polygon_case("rectangle-integer", 30, 30, [[3, 4, 20, 4, 20, 25, 3, 25]]),
        polygon_case("rectangle-half-pixels", 30, 30, [[3.5, 4.5, 20.5, 4.5, 20.5, 25.5, 3.5, 25.5]]),
        polygon_case("rotated-rectangle", 64, 64, [[32, 4, 60, 32, 32, 60, 4, 32]]),
        polygon_case("hexagon", 48, 48, [regular(24.3, 23.7, 19.6, 6, 0.2)]),
        polygon_case("circle-64", 80, 90, [regular(45.1, 40.2, 33.3, 64)]),
        polygon_case("star-concave", 60, 60, [star(30, 31, 27, 10, 5)]),
        polygon_case("l-shape-concave", 40, 40, [[2, 2, 12, 2, 12, 28, 35, 28, 35, 37, 2, 37]]),
        polygon_case("u-shape-concave", 40, 40, [[2, 2, 10, 2, 10, 30, 30, 30, 30, 2, 38, 2, 38, 38, 2, 38]]),
        # Two squares sharing one corner: the polygon touches itself at (20, 20).
        polygon_case("self-touching-vertex", 40, 40, [[5, 5, 20, 5, 20, 20, 35, 20, 35, 35, 20, 35, 20, 20, 5, 20]]),
        # A bow tie: two edges cross.
        polygon_case("self-intersecting-bowtie", 40, 40, [[3, 3, 36, 36, 36, 3, 3, 36]]),
        # A ring drawn as one polygon with a slit (a hole reached along a doubled edge).
        polygon_case("slit-ring", 50, 50, [[5, 5, 45, 5, 45, 45, 25, 45, 25, 35, 35, 35, 35, 15, 15, 15,
                                            15, 35, 25, 35, 25, 45, 5, 45]]),
        polygon_case("partly-outside", 30, 40, [[-10.0, -5.0, 25.0, 3.0, 50.0, 40.0, 5.0, 20.0]]),
        polygon_case("negative-fractions", 20, 20, [[-0.15, -0.3, 10.2, -0.09, 4.4, 12.7]]),
        polygon_case("entirely-outside", 20, 20, [[30, 30, 40, 30, 35, 40]]),
        polygon_case("thin-sliver", 30, 30, [[2, 10, 28, 10.3, 2, 10.6]]),
        polygon_case("tiny", 10, 10, [[4.2, 4.2, 4.8, 4.3, 4.5, 4.9]]),
        polygon_case("union-overlapping", 50, 60, [[5, 5, 35, 5, 35, 35, 5, 35], regular(35, 30, 15, 12)]),
        polygon_case("union-disjoint", 50, 60, [[2, 2, 10, 2, 6, 12], star(40, 30, 15, 6, 4), [20, 40, 30, 40, 30, 48, 20, 48]]),
        polygon_case("non-square", 17, 91, [[1, 1, 90, 3, 60, 16, 3, 14]]),
    ]
    for i in range(6):
        h, w = int(rng.integers(8, 70)), int(rng.integers(8, 70))
        n = int(rng.integers(3, 12))
        pts = np.stack([rng.uniform(-5, w + 5, n), rng.uniform(-5, h + 5, n)], 1)
        poly = [round(float(v), 2) for v in pts.flatten()]
        cases.append(polygon_case(f"random-{i}", h, w, [poly]))
    return cases


def mask_cases(rng):
    cases = [
        mask_case("empty", np.zeros((7, 9))),
        mask_case("full", np.ones((7, 9))),
        mask_case("single-pixel", np.zeros((1, 1)) + 1),
        mask_case("first-pixel", np.pad(np.ones((1, 1)), ((0, 5), (0, 4)))),
        mask_case("last-pixel", np.pad(np.ones((1, 1)), ((5, 0), (4, 0)))),
        mask_case("one-column", np.pad(np.ones((6, 1)), ((0, 0), (3, 2)))),
        mask_case("one-row", np.pad(np.ones((1, 5)), ((2, 3), (1, 0)))),
    ]
    for i, p in enumerate((0.05, 0.5, 0.95)):
        h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        cases.append(mask_case(f"noise-{i}", rng.random((h, w)) < p))
    # Blobs: unions of rectangles and discs, with runs long enough for multi-character counts
    # and negative differences between them.
    for i in range(4):
        h, w = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        yy, xx = np.mgrid[0:h, 0:w]
        m = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(1, 6))):
            if rng.random() < 0.5:
                x0, y0 = rng.integers(0, w), rng.integers(0, h)
                m[y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] = True
            else:
                cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, min(h, w) / 2)
                m |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        cases.append(mask_case(f"blobs-{i}", m))
    # A run longer than 2^16 in a tall mask, and a single long diagonal.
    big = np.zeros((1000, 300), bool)
    big[:, 40:200] = True
    big[500, 250] = True
    cases.append(mask_case("long-runs", big))
    cases.append(mask_case("diagonal", np.eye(64, 80, 3, dtype=bool)))
    return cases


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/rle-refs.json"
    rng = np.random.default_rng(20240611)
    data = {"generator": "tools/gen_rle_refs.py", "polygons": polygon_cases(rng),
            "masks": mask_cases(rng)}
    with open(out, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    print(out, len(data["polygons"]), "polygon cases,", len(data["masks"]), "mask cases")


if __name__ == "__main__":
    main()
