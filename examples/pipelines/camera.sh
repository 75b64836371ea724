#!/usr/bin/env bash
# Segments what a camera sees, live, with sam2.1-hiera-tiny, and shows it.
#
#   examples/pipelines/camera.sh [-d DEVICE] [-m MODEL] [-p POINTS] [-b BOXES] [-n INTERVAL]
#
#   DEVICE    V4L2 device (default /dev/video0)
#   MODEL     default tiny (facebook/sam2.1-hiera-tiny from the Hugging Face cache: fetch it once
#             with `hf download facebook/sam2.1-hiera-tiny`)
#   POINTS    default the centre of the 640x480 frame ("320,240"); BOXES default none
#   INTERVAL  run the model every N frames (default 1)
#
# On a CPU the tiny model takes seconds per frame at its 1024x1024 input: sam2seg reports that
# time as latency (the picture is shown that much later, in sync), and when frames still come
# too late it skips the model on them (QoS) and carries the last masks over, so the picture
# keeps its frame rate and the masks update as fast as the machine allows. The leaky queue
# keeps only the newest camera frame while the model is busy.
#
# Prompts can change while it runs: from an application with the "set-prompts" action signal,
# or with a "sam2-prompts" custom event (see gst-inspect-1.0 sam2seg).
set -euo pipefail
source "$(dirname "$0")/common.sh"

device=/dev/video0 model=tiny points="320,240" boxes="" interval=1
while getopts "d:m:p:b:n:h" opt; do
  case $opt in
    d) device=$OPTARG ;;
    m) model=$(caller_ref "$OPTARG") ;;
    p) points=$OPTARG ;;
    b) boxes=$OPTARG ;;
    n) interval=$OPTARG ;;
    *) sed -n '2,19p' "$script"; exit 2 ;;
  esac
done
if [ ! -e "$device" ]; then
  echo "no camera at $device (use -d DEVICE)" >&2
  exit 1
fi

seg=(sam2seg model="\"$model\"" interval="$interval")
[ -n "$points" ] && seg+=(points="\"$points\"")
[ -n "$boxes" ] && seg+=(boxes="\"$boxes\"")
gst-launch-1.0 \
  v4l2src device="$device" ! videoconvertscale ! video/x-raw,width=640,height=480 ! \
  queue max-size-buffers=1 leaky=downstream ! videoconvert ! \
  "${seg[@]}" ! sam2overlay ! videoconvert ! autovideosink
