#!/usr/bin/env bash
# Prepares .devpack/ for scripts/device-check.sh on a lent GPU machine (the workplace's device
# tool copies the working tree there; .devpack/ is git-ignored, so the call names it in `carry`).
#
#   scripts/device-pack.sh [BUILD_DIR]      (default build-dev, configured with -Dcuda=enabled)
#
# The GPU machine is bare (no GLib, GStreamer, oneDNN or LAPACK; CUDA and PyTorch are there), so
# the pack holds one xz tarball of the CUDA test and benchmark programs and sam2q, stripped, and
# of the shared libraries they need that a stock system lacks (everything but glibc, libstdc++
# and CUDA's own: cuSOLVER, several hundred MB and loaded only when calibration's GPTQ runs on
# the GPU, comes from the machine's CUDA wheels too); and
# the fixtures the checks read that do not travel with the tree (sam2-shapes' eval set, the
# whole mini-hash fixture: 12 MB packed). The tiny-hash float64 reference is not packed (27 MB): device-check.sh regenerates it there with the
# fixtures' own generator, which fits the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-dev}
fixtures=${SAM2_FIXTURES:-../shared/fixtures}

if [ ! -d "$build" ]; then
  meson setup "$build" -Dcuda=enabled --buildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null

grep -qx '/.devpack/' .git/info/exclude || echo '/.devpack/' >> .git/info/exclude
rm -rf .devpack
mkdir -p .devpack/fixtures/sam2-tiny-hash .devpack/fixtures/sam2-shapes
stage=$(mktemp -d)
mkdir "$stage/bin" "$stage/devlibs"

programs=("$build/examples/sam2q/sam2q")
for f in "$build"/tests/cuda/test-cuda-* "$build"/benchmarks/*; do
  if [ -f "$f" ] && [ -x "$f" ]; then programs+=("$f"); fi
done
for p in "${programs[@]}"; do
  cp "$p" "$stage/bin/"
  strip "$stage/bin/$(basename "$p")"
done

# GStreamer: gst-launch-1.0, our plugin and the few stock elements the pipeline check uses.
mkdir "$stage/gstplugins"
cp "$(command -v gst-launch-1.0)" "$stage/bin/"
cp "$build/gst/libgstsam2.so" "$stage/gstplugins/"
cp -L "$build/gst/libgstsam2meta.so.0" "$stage/devlibs/"
gst_dir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
for plugin in coreelements videotestsrc videoconvertscale; do
  cp "$gst_dir/libgst$plugin.so" "$stage/gstplugins/"
done

# Libraries: what the programs load, minus what every Linux system with CUDA has.
for p in "$stage"/bin/* "$stage"/gstplugins/*; do LD_LIBRARY_PATH=$build/gst ldd "$p"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
  grep -v -E '/(libcuda|libcudart|libcublas|libcublasLt)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/devlibs/"; done
ls -la "$stage/bin"
# One xz stream with a dictionary larger than the tarball: every program links the same kernels
# (a fatbin of several MB each), which a window that holds the whole tar stores once: 42 MB with
# xz -6's 8 MiB window, 19 MB with this one (2026-11-28; ~2.5 min on one core here, seconds to
# unpack, 256 MiB of memory there).
tar -C "$stage" -cf - bin devlibs gstplugins | xz -T1 --lzma2=preset=6,dict=256MiB \
  > .devpack/programs.tar.xz
rm -rf "$stage"

mkdir -p .devpack/fixtures/sam2-mini-hash
cp "$fixtures"/sam2-mini-hash/config.json .devpack/fixtures/sam2-mini-hash/
tar -C "$fixtures"/sam2-mini-hash -cf - model.safetensors reference.safetensors | xz -6 -T0 \
  > .devpack/fixtures/sam2-mini-hash/files.tar.xz
cp "$fixtures"/sam2-tiny-hash/config.json .devpack/fixtures/sam2-tiny-hash/
cp "$fixtures"/sam2-shapes/config.json .devpack/fixtures/sam2-shapes/
xz -6 -T0 -c "$fixtures"/sam2-shapes/eval_dev.safetensors > .devpack/fixtures/sam2-shapes/eval_dev.safetensors.xz
cp "$fixtures"/generators/fixtures.py .devpack/fixtures/

du -sh .devpack
