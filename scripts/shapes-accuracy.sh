#!/usr/bin/env bash
# The README's sam2-shapes accuracy tables, reproduced: the three shipped tiny recipes
# (hiera_tiny_w4only, hiera_tiny_w4a8, hiera_tiny_w4a8_svdquant) calibrated on 128 generated
# shape pictures (`--dataset random`, the recipes' seed 0), then one `sam2q eval` run on the
# fixtures' eval_dev set (48 objects) and one on each further set given: the tuning set
# (tools/gen_shapes_tuning_set.py, 480 objects, seed 2026; the recipes were chosen on it, never
# on eval_dev) and the held-out set (the same tool, --n 960 --seed 90210, made after the recipes
# were fixed and used for nothing but reporting). Each table has the float model as the
# reference: relative mIoU and "changed" (objects whose IoU moved by more than 0.1) are against
# it.
#
#   scripts/shapes-accuracy.sh [EVAL_SET.safetensors ...]
#
# Needs a build (SAM2_BUILD_DIR, default build) and the fixtures (SAM2_FIXTURES, default
# ../shared/fixtures). Models go to SAM2_OUT (default shapes-accuracy/). About 1.5 minutes
# with both extra sets on 2 cores. The calibration's float forward rounds
# differently with oneDNN's AVX-512 kernels: the README's files were made with AVX2 kernels
# (ONEDNN_MAX_CPU_ISA=AVX2 SAM2_CPU_ATTENTION=fused reproduces them on an AVX-512 machine).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SAM2_BUILD_DIR:-build}
fixtures=${SAM2_FIXTURES:-../shared/fixtures}
out=${SAM2_OUT:-shapes-accuracy}
sam2q=$build/examples/sam2q/sam2q
model=$fixtures/sam2-shapes

[ -x "$sam2q" ] || { echo "no $sam2q: build first (meson setup $build && ninja -C $build)" >&2; exit 1; }
[ -f "$model/eval_dev.safetensors" ] || { echo "no sam2-shapes fixture in $fixtures" >&2; exit 1; }
for set in "$@"; do
  [ -f "$set" ] || {
    echo "no eval set at $set (make one: tools/gen_shapes_tuning_set.py OUT.safetensors)" >&2
    exit 1; }
done
mkdir -p "$out"

models=("$model")
for recipe in hiera_tiny_w4only hiera_tiny_w4a8 hiera_tiny_w4a8_svdquant; do
  "$sam2q" quantize --model "$model" --config "configs/$recipe.yaml" --dataset random -n 128 \
    --output-dir "$out" > "$out/$recipe.log" 2>&1 || { cat "$out/$recipe.log" >&2; exit 1; }
  models+=("$out/sam2-shapes-$recipe.safetensors")
done

"$sam2q" eval --eval-set "$model/eval_dev.safetensors" --reference-model "$model" "${models[@]}"
for set in "$@"; do
  echo
  "$sam2q" eval --eval-set "$set" --reference-model "$model" "${models[@]}"
done
