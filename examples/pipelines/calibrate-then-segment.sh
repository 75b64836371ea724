#!/usr/bin/env bash
# Calibrates and segments in one process: a tee feeds the same frames to sam2calib (W4A8
# calibration) and to sam2seg, which segments with the float model at once and switches to the
# quantized model the moment sam2calib has written it (sam2seg calibrator-name=cal), without
# interrupting the stream. The overlay video shows both parts; of the bus messages (-m) the
# script prints sam2calib-done, sam2seg-model-switched, errors and warnings.
#
#   examples/pipelines/calibrate-then-segment.sh [-i VIDEO] [-m MODEL] [-c RECIPE] [-n FRAMES]
#                                                [-s STRIDE] [-p POINTS] [-b BOXES] [-o DIR]
#
#   VIDEO   default: a 20 s, 256x256 moving-shapes video made with shapes-video (in DIR)
#   MODEL   default models/sam2-shapes; tiny, small, base-plus, large or an HF id for real video
#           (`hf download facebook/sam2.1-hiera-tiny` fetches it once)
#   RECIPE  default configs/hiera_tiny_w4a8.yaml; FRAMES (default 16) every STRIDE-th (4)
#   POINTS, BOXES  prompts in frame pixels, sam2seg's syntax (default: a click at the centre)
#   DIR     where the model, overlay.webm and masks.jsonl go (default demo-output/one-process)
#
# The file is played at its frame rate, as from a camera. With a live source put
# `queue leaky=downstream max-size-buffers=1` before sam2calib, so that calibration takes the
# frames it has time for and never holds the other branch back.
set -euo pipefail
source "$(dirname "$0")/common.sh"

input="" model=models/sam2-shapes recipe=configs/hiera_tiny_w4a8.yaml frames=16 stride=4
points="" boxes="" dir=demo-output/one-process
while getopts "i:m:c:n:s:p:b:o:h" opt; do
  case $opt in
    i) input=$(caller_path "$OPTARG") ;;
    m) model=$(caller_ref "$OPTARG") ;;
    c) recipe=$(caller_ref "$OPTARG") ;;
    n) frames=$OPTARG ;;
    s) stride=$OPTARG ;;
    p) points=$OPTARG ;;
    b) boxes=$OPTARG ;;
    o) dir=$(caller_path "$OPTARG") ;;
    *) sed -n '2,20p' "$script"; exit 2 ;;
  esac
done
mkdir -p "$dir"
if [ -z "$input" ]; then
  input=$dir/shapes.webm
  "$build_dir/examples/shapes-video/shapes-video" --width 256 --height 256 --fps 15 \
    --frames 300 --seed 1 --output "$input"
fi
[ -z "$points$boxes" ] && points="128,128"

seg=(sam2seg model="\"$model\"" calibrator-name=cal)
[ -n "$points" ] && seg+=(points="\"$points\"")
[ -n "$boxes" ] && seg+=(boxes="\"$boxes\"")
# identity sync=true plays the file at its frame rate, as a camera would deliver it: the
# segmentation branch then has frames to segment after the switch (read as fast as possible,
# a short file would be segmented completely before the quantized model is ready)
gst-launch-1.0 -m -e filesrc location="\"$input\"" ! decodebin ! identity sync=true ! \
  videoconvert ! video/x-raw,format=RGB ! tee name=t \
  t. ! queue ! sam2calib name=cal model="\"$model\"" config="\"$recipe\"" \
    num-frames="$frames" frame-stride="$stride" output="\"$dir\"" \
  t. ! queue ! "${seg[@]}" ! \
    sam2json location="\"$dir/masks.jsonl\"" ! sam2overlay ! videoconvert ! \
    vp8enc deadline=1 ! webmmux ! filesink location="\"$dir/overlay.webm\"" |
  grep -E 'sam2calib-done|sam2seg-model-switched|ERROR|WARNING' || true
echo "wrote $dir/overlay.webm and $dir/masks.jsonl; the quantized model is in $dir"
