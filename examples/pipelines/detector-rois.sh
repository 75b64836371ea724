#!/usr/bin/env bash
# A detector's boxes as prompts: facedetect (gst-plugins-bad, OpenCV; Debian package
# gstreamer1.0-opencv) attaches a GstVideoRegionOfInterestMeta of type "face" per face, and
# sam2seg roi-types=face turns each into a box prompt, so every detected face gets a mask.
# Any element that attaches ROI metas works the same way: name its roi types in roi-types
# ("person,car").
#
#   examples/pipelines/detector-rois.sh [-i VIDEO-FILE | -d DEVICE] [-m MODEL] [-n INTERVAL]
#
#   VIDEO-FILE  a video to read; otherwise the camera DEVICE (default /dev/video0)
#   MODEL       default tiny (`hf download facebook/sam2.1-hiera-tiny` fetches it once)
#   INTERVAL    run the model every N frames (default 2); frames between carry the last masks
#
# Object ids follow the faces: an ROI whose box overlaps one of the previous segmented
# frame's by IoU >= 0.3 keeps that object's id (and overlay colour); max-objects bounds the
# number of faces segmented per frame.
set -euo pipefail
source "$(dirname "$0")/common.sh"

input="" device=/dev/video0 model=tiny interval=2
while getopts "i:d:m:n:h" opt; do
  case $opt in
    i) input=$(caller_path "$OPTARG") ;;
    d) device=$OPTARG ;;
    m) model=$(caller_ref "$OPTARG") ;;
    n) interval=$OPTARG ;;
    *) sed -n '2,16p' "$script"; exit 2 ;;
  esac
done
if ! have_element facedetect; then
  echo "facedetect is not installed: apt-get install gstreamer1.0-opencv" \
       "(or use another detector that attaches GstVideoRegionOfInterestMeta)" >&2
  exit 1
fi
if [ -n "$input" ]; then
  source=(filesrc location="\"$input\"" ! decodebin)
elif [ -e "$device" ]; then
  source=(v4l2src device="$device")
else
  echo "no camera at $device: give a video with -i FILE" >&2
  exit 1
fi

# facedetect display=false: boxes as metadata only, the frame stays clean for sam2overlay
gst-launch-1.0 \
  "${source[@]}" ! videoconvertscale ! video/x-raw,width=640,height=480 ! videoconvert ! \
  facedetect display=false ! videoconvert ! \
  sam2seg model="\"$model\"" roi-types=face max-objects=8 interval="$interval" ! \
  sam2overlay ! videoconvert ! autovideosink
