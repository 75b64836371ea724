# Sourced by the pipeline scripts: run from the project root and find the sam2 plugin in the
# build directory ($SAM2_BUILD_DIR, default "build") when it is not installed.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build_dir=${SAM2_BUILD_DIR:-build}
if [ -f "$build_dir/gst/libgstsam2.so" ]; then
  export GST_PLUGIN_PATH="$PWD/$build_dir/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
fi
if ! gst-inspect-1.0 sam2seg >/dev/null 2>&1; then
  echo "sam2seg not found: build the project (meson setup $build_dir && ninja -C $build_dir)" \
       "or set SAM2_BUILD_DIR to your build directory" >&2
  exit 1
fi

# Whether a GStreamer element is installed.
have_element() { gst-inspect-1.0 "$1" >/dev/null 2>&1; }
