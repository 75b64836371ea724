#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs the packages, builds, then runs the video
# path end to end with the demo model (models/sam2-shapes), everything in GStreamer pipelines:
#
#   1. shapes-video writes a video of moving shapes (VP8/WebM) and its annotations (per frame,
#      each visible shape's box);
#   2. sam2calib calibrates a W4A8 model from every 3rd of its first 60 frames
#      (configs/hiera_tiny_w4a8.yaml) and writes it atomically;
#   3. sam2seg segments the video with that quantized model. The prompts are the annotated boxes,
#      attached to each frame as GstVideoRegionOfInterestMeta by annotation-rois (standing in
#      for a detector; sam2seg roi-types=shape turns them into box prompts and keeps each
#      shape's id across frames). sam2json writes the masks as JSON lines, sam2overlay draws
#      them, and the result is written as a WebM video plus one PNG per second.
#
# Output in demo-output/ (printed at the end). SAM2_BUILD_DIR picks the build directory
# (default build); SAM2_SKIP_APT=1 skips the package installation.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

build=${SAM2_BUILD_DIR:-build}
if [ -d "$build" ]; then
  meson setup --reconfigure "$build" >/dev/null
else
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" gst/libgstsam2.so examples/shapes-video/shapes-video \
  examples/pipelines/annotation-rois >/dev/null
build=$(cd "$build" && pwd)

# the elements from the build tree, with a registry of their own (a stale one would hide them)
export GST_PLUGIN_PATH="$build/gst"
export GST_REGISTRY="$build/demo-registry.bin"
# idle OpenMP threads sleep: the pipelines interleave model runs with decoding and encoding
export OMP_WAIT_POLICY=passive

out=demo-output
model=models/sam2-shapes
recipe=configs/hiera_tiny_w4a8.yaml
mkdir -p "$out"
rm -rf "$out/frames"
mkdir -p "$out/frames"

echo "1/3 writing a video of moving shapes"
# 256x256 is the demo model's input size; 6 s at 15 fps
"$build/examples/shapes-video/shapes-video" --width 256 --height 256 --fps 15 --frames 90 \
  --seed 1 --shapes 4 --output "$out/shapes.webm"
echo "    $out/shapes.webm, annotations $out/shapes.json"

echo "2/3 calibrating W4A8 from the video with sam2calib ($recipe)"
# -m prints the bus messages; sam2calib-done carries the path, frames, seconds and size. The
# pipeline ends when sam2calib lets EOS through, i.e. once the file is written.
gst-launch-1.0 -m filesrc location="$out/shapes.webm" ! decodebin ! videoconvert ! \
  sam2calib model="$model" config="$recipe" num-frames=20 frame-stride=3 output="$out" \
  > "$out/calibration.log" 2>&1 || { cat "$out/calibration.log" >&2; exit 1; }
grep -o 'sam2calib-done.*' "$out/calibration.log" | sed 's/^/    /'
quantized="$out/sam2-shapes-hiera_tiny_w4a8.safetensors"
[ -f "$quantized" ] || { echo "no quantized model at $quantized" >&2; exit 1; }

echo "3/3 segmenting the video with the quantized model (sam2seg ! sam2json ! sam2overlay)"
"$build/examples/pipelines/annotation-rois" --annotations "$out/shapes.json" \
  filesrc location="$out/shapes.webm" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! \
  sam2seg model="$quantized" roi-types=shape ! \
  sam2json location="$out/masks.jsonl" ! sam2overlay boxes=false ! tee name=t \
  t. ! queue ! videoscale ! video/x-raw,width=512,height=512 ! videoconvert ! \
    vp8enc deadline=1 cpu-used=4 ! webmmux ! filesink location="$out/segmented.webm" \
  t. ! queue ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! videoconvert ! \
    pngenc ! multifilesink location="$out/frames/%03d.png"

cat <<EOF
done. In $(pwd)/$out:
  shapes.webm                               the input video (shapes.json: its annotations)
  $(basename "$quantized")   the W4A8 model sam2calib wrote (calibration.log: its messages)
  segmented.webm                            the masks drawn on the video, 512x512
  frames/*.png                              one overlay frame per second
  masks.jsonl                               one JSON line per frame: objects, boxes, scores, RLE masks
EOF
