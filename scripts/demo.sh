#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs the packages, builds, and segments the demo
# images with the demo model (models/sam2-shapes), writing masks, overlays and JSON to
# demo-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build --buildtype=release >/dev/null; fi
ninja -C build examples/sam2q/sam2q >/dev/null

out=demo-output
mkdir -p "$out"
while read -r image x y x0 y0 x1 y1; do
  stem=${image%.png}
  # object 0 from a click, object 1 from a box around the same shape
  ./build/examples/sam2q/sam2q segment models/sam2-shapes "examples/demo/$image" \
    --point "$x,$y" --next-object --box "$x0,$y0,$x1,$y1" \
    --output-dir "$out" --overlay "$out/$stem-overlay.png" --json "$out/$stem.json"
  echo "segmented examples/demo/$image -> $out/$stem-overlay.png"
done < examples/demo/prompts.txt
echo "done: masks, overlays and JSON are in $(pwd)/$out"
