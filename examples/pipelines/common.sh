# Sourced by the pipeline scripts: run from the project root and find the sam2 plugin in the
# build directory ($SAM2_BUILD_DIR, default "build") when it is not installed. Paths the user
# gives are taken from where the script was started (caller_path, caller_ref), not from the root.
caller_dir=$PWD
script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")    # for its usage text, after the cd
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# A file the user named (input or output), relative to the directory the script started in.
caller_path() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller_dir/$1" ;; esac; }
# A model or recipe: a path when it exists from the starting directory, else as given (a
# shortcut such as tiny, a hub id, or a path from the project root such as configs/...).
caller_ref() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) if [ -e "$caller_dir/$1" ]; then printf '%s\n' "$caller_dir/$1"; else printf '%s\n' "$1"; fi ;;
  esac
}
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
