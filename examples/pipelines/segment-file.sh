#!/usr/bin/env bash
# Segments a video file (or a demo image) with sam2seg, draws the masks with sam2overlay and
# writes the result as PNG frames, WebM or MP4, plus the masks as JSON lines (sam2json).
#
#   examples/pipelines/segment-file.sh [-i INPUT] [-o OUTPUT] [-m MODEL] [-p POINTS] [-b BOXES]
#
#   INPUT   a video or image file (anything decodebin reads). Default: examples/demo/shapes-0.png
#           held for 60 frames, with the click on the triangle of examples/demo/prompts.txt
#           and a box (173,0,255,80) around the yellow square.
#   OUTPUT  DIR/%05d.png (one PNG per frame), FILE.webm (VP8, gst-plugins-good) or FILE.mp4
#           (H.264: needs x264enc from gst-plugins-ugly). Default: demo-output/segment/%05d.png
#   MODEL   what sam2seg's model property takes. Default: models/sam2-shapes, the demo model,
#           which knows shapes like the demo images; use tiny (facebook/sam2.1-hiera-tiny, fetch
#           it with `hf download facebook/sam2.1-hiera-tiny`) for real video.
#   POINTS, BOXES  prompts in frame pixels, sam2seg's syntax: "x,y[,label] x,y; x,y" and
#           "x0,y0,x1,y1; x0,y0,x1,y1" (';' separates objects; object i takes entry i of both).
#
# The JSON lines go next to the output (OUTPUT's directory, masks.jsonl).
set -euo pipefail
source "$(dirname "$0")/common.sh"

input="" output="demo-output/segment/%05d.png" model="models/sam2-shapes" points="" boxes=""
while getopts "i:o:m:p:b:h" opt; do
  case $opt in
    i) input=$(caller_path "$OPTARG") ;;
    o) output=$(caller_path "$OPTARG") ;;
    m) model=$(caller_ref "$OPTARG") ;;
    p) points=$OPTARG ;;
    b) boxes=$OPTARG ;;
    *) sed -n '2,18p' "$script"; exit 2 ;;
  esac
done

if [ -z "$input" ]; then
  # a still image is a video of one frame: imagefreeze repeats it
  input=examples/demo/shapes-0.png
  source=(filesrc location="$input" ! pngdec ! imagefreeze num-buffers=60 !
          video/x-raw,framerate=30/1)
  if [ -z "$points$boxes" ]; then
    # the click on the triangle of examples/demo/prompts.txt, and a box around the yellow square
    points="42.5,95.5"
    boxes="; 173,0,255,80"
  fi
else
  source=(filesrc location="\"$input\"" ! decodebin)
fi
if [ -z "$points$boxes" ]; then
  echo "give a prompt: -p X,Y (a click) or -b X0,Y0,X1,Y1 (a box), in frame pixels" >&2
  exit 2
fi

out_dir=$(dirname "$output")
mkdir -p "$out_dir"
case $output in
  *.webm) sink=(videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location="\"$output\"") ;;
  *.mp4)
    if ! have_element x264enc; then
      echo "x264enc is not installed (gst-plugins-ugly): write .webm instead" >&2
      exit 1
    fi
    sink=(videoconvert ! x264enc ! mp4mux ! filesink location="\"$output\"") ;;
  *%*.png) sink=(videoconvert ! pngenc ! multifilesink location="\"$output\"") ;;
  *) echo "OUTPUT must be DIR/%05d.png, FILE.webm or FILE.mp4" >&2; exit 2 ;;
esac

# gst-launch-1.0 joins its arguments and parses them again: values with spaces or ';' keep
# their own quotes. videoconvert before sam2seg: it takes RGB/BGR(A/x) only. sam2json leaves
# the frames alone, sam2overlay draws in place; -e turns Ctrl-C into EOS so files are
# finalised.
seg=(sam2seg model="\"$model\"")
[ -n "$points" ] && seg+=(points="\"$points\"")
[ -n "$boxes" ] && seg+=(boxes="\"$boxes\"")
gst-launch-1.0 -e "${source[@]}" ! videoconvert ! "${seg[@]}" ! \
  sam2json location="\"$out_dir/masks.jsonl\"" ! sam2overlay ! "${sink[@]}"
echo "wrote $output and $out_dir/masks.jsonl"
