#!/usr/bin/env bash
# Soak test of the GStreamer elements: 10 000 frames of videotestsrc's bouncing ball through
# sam2seg (the demo model, a point prompt, the model on every frame) and sam2json, printing the
# pipeline's resident memory (VmRSS) every 1000 frames and a verdict: PASS when RSS grew by
# less than the bound between frame 1000 (everything allocated once by then) and the end.
#
#   tools/soak.sh [-n FRAMES] [-i INTERVAL] [-s WIDTHxHEIGHT] [-g MAX_GROWTH_KIB]
#
# Defaults: 10000 frames, interval 1, 160x120, 8192 KiB. Frames are counted from the JSON
# lines sam2json flushes one per frame; skipped model runs from sam2seg's DEBUG log (there
# are none unless the interval is above 1: nothing sends QoS here). Finishes in about 6
# minutes on 2 cores. Uses the build in $SAM2_BUILD_DIR (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."

frames=10000 interval=1 size=160x120 max_growth_kib=8192
while getopts "n:i:s:g:h" opt; do
  case $opt in
    n) frames=$OPTARG ;;
    i) interval=$OPTARG ;;
    s) size=$OPTARG ;;
    g) max_growth_kib=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
width=${size%x*} height=${size#*x}
build_dir=${SAM2_BUILD_DIR:-build}
if [ ! -f "$build_dir/gst/libgstsam2.so" ]; then
  echo "no $build_dir/gst/libgstsam2.so: build first or set SAM2_BUILD_DIR" >&2
  exit 1
fi
export GST_PLUGIN_PATH="$PWD/$build_dir/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
json=$work/soak.jsonl
: > "$json"

GST_DEBUG="sam2seg:5" GST_DEBUG_NO_COLOR=1 GST_DEBUG_FILE=$work/debug.log \
  gst-launch-1.0 -q videotestsrc pattern=ball num-buffers="$frames" ! \
  "video/x-raw,width=$width,height=$height,framerate=30/1" ! videoconvert ! \
  sam2seg model=models/sam2-shapes points="$((width / 2)),$((height / 2))" \
    interval="$interval" ! \
  sam2json location="$json" ! fakesink &
pid=$!

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0; }

start=$(date +%s)
next=1000 rss_first=0 rss_last=0 frames_last=0
printf "%8s %10s %8s\n" frames "VmRSS KiB" seconds
while kill -0 "$pid" 2>/dev/null; do
  done_frames=$(wc -l < "$json")
  rss=$(rss_kib)
  # the last reading taken while the pipeline is alive (it exits right after the last frame)
  if [ "${rss:-0}" -gt 0 ]; then
    rss_last=$rss frames_last=$done_frames
  fi
  if [ "$done_frames" -ge "$next" ] && [ "$next" -le "$frames" ] && [ "${rss:-0}" -gt 0 ]; then
    printf "%8d %10d %8d\n" "$done_frames" "$rss" "$(($(date +%s) - start))"
    [ "$next" -eq 1000 ] && rss_first=$rss
    next=$((next + 1000))
  fi
  sleep 0.2
done
if [ "$next" -le "$frames" ]; then
  printf "%8d %10d %8s  (last reading before the pipeline exited)\n" "$frames_last" \
    "$rss_last" "-"
fi
wait "$pid" && status=0 || status=$?
done_frames=$(wc -l < "$json")
skipped=$(grep -c "skipping frame" "$work/debug.log" || true)
empty=$(grep -c '"objects": \[\]' "$json" || true)

echo "frames: $done_frames of $frames, model skipped on $skipped (interval $interval)," \
     "frames without an object: $empty, gst-launch exit status $status," \
     "$(($(date +%s) - start)) s"
growth=$((rss_last - rss_first))
echo "VmRSS growth from frame 1000 to frame $frames_last: $growth KiB (bound $max_growth_kib KiB)"
if [ "$status" -ne 0 ] || [ "$done_frames" -ne "$frames" ] || [ "$rss_first" -eq 0 ]; then
  echo "FAIL: the pipeline did not run to the end"
  exit 1
fi
if [ "$growth" -ge "$max_growth_kib" ]; then
  echo "FAIL: memory grows"
  exit 1
fi
echo "PASS"
