#!/bin/sh
# test-sam2q-options.sh SAM2Q: numbers out of range on sam2q's command line are errors that name
# the option and the range (they used to be taken as "not given" or passed on: -n 0 calibrated on
# the recipe's 128 frames, -t 100000 asked OpenMP for 100000 threads), and so is a missing
# evaluation set (it was blamed on the first model, after loading it). The options are checked
# before any model is read, so the model here does not exist. TAP output.
set -u
sam2q=$1
n=0
failed=0

expect () {   # expect MESSAGE ARGS...: sam2q ARGS fails with MESSAGE in its output
  message=$1
  shift
  n=$((n + 1))
  out=$("$sam2q" "$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -qF -- "$message"; then
    echo "ok $n - sam2q $*"
  else
    echo "not ok $n - sam2q $*: exit $rc, output: $out"
    failed=1
  fi
}

expect_absent () {   # expect_absent PATH WHAT: PATH must not exist
  n=$((n + 1))
  if [ -e "$1" ]; then
    echo "not ok $n - $2: $1 exists"
    failed=1
  else
    echo "ok $n - $2"
  fi
}

m=/nonexistent-model
expect "--num-calib-samples 0: give a number from 1 to 100000" quantize -m $m -n 0
expect "--num-calib-samples -5: give a number from 1 to 100000" quantize -m $m -n -5
expect "--batch-size 0: give a number from 1 to 32" quantize -m $m -b 0
expect "--frame-stride 0: give a number from 1" quantize -m $m --dataset video --data /v.mp4 --frame-stride 0
expect "--threads 100000: give a number from 1 to 1024" quantize -m $m -t 100000
expect "--threads -3: give a number from 1 to 1024" quantize -m $m -t -3
expect "--num-samples 0: give a number from 1" eval --eval-set /nonexistent.safetensors -n 0 $m
expect "--threads 0: give a number from 1 to 1024" eval --eval-set /nonexistent.safetensors -t 0 $m
expect "--threads 0: give a number from 1 to 1024" segment -t 0 -p 1,1 $m /nonexistent.png
expect "--threads -1: give a number from 1 to 1024" check -t -1 $m /nonexistent.safetensors
expect "--eval-set /nonexistent.safetensors: no such file" eval --eval-set /nonexistent.safetensors $m
# the float model's precision: float16 only on CUDA, bfloat16 on CUDA and CPUs with AVX-512 BF16
# (SAM2_CPU_BF16=0 makes any CPU answer as one without), and only the three names
SAM2_CPU_BF16=0 expect "--dtype bfloat16: precision bf16 is not available on the CPU: the environment variable SAM2_CPU_BF16=0 turns it off; use --dtype float32" \
  quantize -m $m --dtype bfloat16
# the same for --precision, before the model is looked for
SAM2_CPU_BF16=0 expect "--precision bf16: precision bf16 is not available on the CPU: the environment variable SAM2_CPU_BF16=0 turns it off; use --precision auto or fp32" \
  segment --backend cpu --precision bf16 -p 1,1 $m /nonexistent.png
expect "--precision fp16: precision fp16 needs the CUDA backend" \
  segment --backend cpu --precision fp16 -p 1,1 $m /nonexistent.png
expect "--dtype float16: the CPU backend computes in float32 or bfloat16" quantize -m $m --dtype float16
expect "--dtype fp8: use float32, float16 or bfloat16" quantize -m $m --dtype fp8
# the dataset kind first, and options its kind does not read refused, not ignored
expect "unknown --dataset 'cocoa'; the kinds are random" quantize -m $m --dataset cocoa
expect "--dataset coco needs --coco-root DIR" quantize -m $m --dataset coco
expect "--coco-root is read only with --dataset coco (the dataset is sa1b)" \
  quantize -m $m --dataset sa1b --sa1b-root /x --coco-root /y
expect "--sa1b-root is read only with --dataset sa1b (the dataset is random)" \
  quantize -m $m --sa1b-root /x
expect "--frame-stride is read only with --dataset video (the dataset is images)" \
  quantize -m $m --dataset images --data /x --frame-stride 2
expect "--data is read only with --dataset images or video (the dataset is coco)" \
  quantize -m $m --dataset coco --coco-root /x --data /y
# and a valid count gets past the check to the missing model
expect "/nonexistent-model" quantize -m $m -n 4 -t 2

# a run that fails leaves no output directory behind, not even an empty one: it is made only
# to write the model
tmp=$(mktemp -d)
expect "/nonexistent-model" quantize -m $m -n 4 -t 2 -o "$tmp/new/models"
expect_absent "$tmp/new" "a failed quantize leaves no output directory"

# eval: an option the source does not read is an error (it was ignored)
expect "--num-samples does not apply to --eval-set" eval --eval-set /x.safetensors -n 2 $m
expect "--seed does not apply to --dataset coco" eval --dataset coco --coco-root /x --seed 3 $m
expect "--coco-root does not apply to --dataset random" eval --dataset random --coco-root /x $m
expect "--sa1b-root does not apply to --dataset coco" eval --dataset coco --coco-root /x \
  --sa1b-root /y $m
expect "--eval-set $tmp: not a file" eval --eval-set "$tmp" $m

# segment: a label is 0 or 1 (0.7 was taken as 0, a negative click), one box per object (a
# second replaced the first), and a --json or --overlay path that cannot be written fails before
# the model runs (it failed after the masks were written, and left them)
expect "LABEL is 1 (a positive click) or 0" segment $m /x.png -p 1,1,0.7
expect "LABEL is 1 (a positive click) or 0" segment $m /x.png -p 1,1,-1
expect "this object has a box already" segment $m /x.png -b 0,0,4,4 -b 1,1,5,5
expect "--next-object goes between objects" segment $m /x.png -n -p 1,1
expect "the directory $tmp/none does not exist" segment $m /x.png -p 1,1 -o "$tmp/masks" \
  --json "$tmp/none/x.json"
expect "--overlay $tmp is a directory" segment $m /x.png -p 1,1 --overlay "$tmp"
expect_absent "$tmp/masks" "a failed segment leaves no output directory"
rm -rf "$tmp"

# sam2q eval --json with a reference model reports the changed-object counts: a model against
# itself changes none (needs the fixtures' sam2-shapes; skipped without them)
shapes=${SAM2_FIXTURES:-${SAM2_FIXTURES_DEFAULT:-}}/sam2-shapes
n=$((n + 1))
if [ -f "$shapes/eval_dev.safetensors" ]; then
  out=$("$sam2q" eval --json -t 2 --eval-set "$shapes/eval_dev.safetensors" \
        --reference-model "$shapes" "$shapes" 2>&1)
  if printf '%s\n' "$out" | grep -q '"changed_point" : 0,' \
     && printf '%s\n' "$out" | grep -q '"changed_box" : 0,'; then
    echo "ok $n - eval --json reports changed objects"
  else
    echo "not ok $n - eval --json reports changed objects: $out"
    failed=1
  fi
else
  echo "ok $n # SKIP no sam2-shapes fixture at $shapes"
fi

# a recipe that quantizes nothing (every layer skipped, kept in float32): the size line says
# "larger than FP16" (it said "0.50x smaller") and a warning says no layer was quantized
n=$((n + 1))
if [ -f "$shapes/config.json" ]; then
  tmp=$(mktemp -d)
  printf 'skips: {patterns: ["*"], dtype: float32}\n' > "$tmp/none.yaml"
  out=$("$sam2q" quantize -t 2 -m "$shapes" -c "$tmp/none.yaml" -n 1 --no-save-model 2>&1)
  if printf '%s\n' "$out" | grep -q 'x larger than FP16' \
     && printf '%s\n' "$out" | grep -q 'quantized no layer'; then
    echo "ok $n - quantize says when its file is larger than FP16"
  else
    echo "not ok $n - quantize with every layer skipped: $out"
    failed=1
  fi
  rm -rf "$tmp"
else
  echo "ok $n # SKIP no sam2-shapes fixture at $shapes"
fi

# segment on the demo model: non-ASCII file names reach the JSON intact (they came out as '?'),
# and a run that fails after writing its masks (here: standard output closed) removes them
n=$((n + 1))
if [ -f "$shapes/config.json" ]; then
  tmp=$(mktemp -d)
  cp "$(dirname "$0")/../../examples/demo/shapes-0.png" "$tmp/forme-é.png"
  # (and an --overlay in the --output-dir that the run makes)
  out=$("$sam2q" segment -t 2 "$shapes" "$tmp/forme-é.png" -p 100,100 -o "$tmp/masks" \
        --overlay "$tmp/masks/overlay.png" 2>&1)
  if printf '%s\n' "$out" | grep -qF '"file" : "'"$tmp"'/masks/forme-é-obj0.png"' \
     && [ -f "$tmp/masks/overlay.png" ]; then
    echo "ok $n - segment's JSON keeps non-ASCII names"
  else
    echo "not ok $n - segment's JSON keeps non-ASCII names: $out"
    failed=1
  fi
  # a fifo given to --json is written in place, not replaced by a file (as /dev/null was)
  n=$((n + 1))
  mkfifo "$tmp/pipe"
  timeout 20 cat "$tmp/pipe" > "$tmp/from-pipe" &    # bounded: a replaced fifo has no writer
  "$sam2q" segment -t 2 "$shapes" "$tmp/forme-é.png" -p 100,100 -o "$tmp/masks" \
    --json "$tmp/pipe" 2>/dev/null
  rc=$?
  wait
  if [ $rc -eq 0 ] && [ -p "$tmp/pipe" ] && grep -q '"objects"' "$tmp/from-pipe"; then
    echo "ok $n - segment --json writes into a fifo in place"
  else
    echo "not ok $n - segment --json to a fifo: exit $rc, $(ls -l "$tmp/pipe" 2>&1)"
    failed=1
  fi
  n=$((n + 1))
  "$sam2q" segment -t 2 "$shapes" "$tmp/forme-é.png" -p 100,100 -o "$tmp/gone" >&- 2>/dev/null
  rc=$?
  if [ $rc -ne 0 ] && [ ! -e "$tmp/gone" ]; then
    echo "ok $n - a segment that fails after its masks removes them"
  else
    echo "not ok $n - segment with stdout closed: exit $rc, $(ls -R "$tmp/gone" 2>&1)"
    failed=1
  fi
  # a re-run that fails late (stdout closed) leaves the earlier run's masks, overlay and JSON
  # file as they were, and no temporary file: its masks replaced them one by one before, and the
  # clean-up then deleted them
  n=$((n + 1))
  "$sam2q" segment -t 2 "$shapes" "$tmp/forme-é.png" -p 60,60 -n -p 200,180 -o "$tmp/keep" \
    --overlay "$tmp/keep/overlay.png" --json "$tmp/keep/summary.json" 2>/dev/null
  cp -r "$tmp/keep" "$tmp/before"
  "$sam2q" segment -t 2 "$shapes" "$tmp/forme-é.png" -p 128,128 -n -p 30,220 -o "$tmp/keep" \
    --overlay "$tmp/keep/overlay.png" >&- 2>/dev/null
  rc=$?
  if [ $rc -ne 0 ] && diff -r "$tmp/before" "$tmp/keep" >/dev/null \
     && [ "$(ls -A "$tmp/keep" | wc -l)" -eq 4 ]; then
    echo "ok $n - a failed segment leaves an earlier run's outputs as they were"
  else
    echo "not ok $n - failed re-run into an earlier run's outputs: exit $rc, $(ls -lA "$tmp/keep")"
    failed=1
  fi
  rm -rf "$tmp"
else
  echo "ok $n # SKIP no sam2-shapes fixture at $shapes"
  for i in 1 2 3; do
    n=$((n + 1))
    echo "ok $n # SKIP no sam2-shapes fixture at $shapes"
  done
fi
echo "1..$n"
exit $failed
