#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs the packages, builds, runs every
# test, then runs the core tests again under AddressSanitizer + LeakSanitizer + UBSan and the
# GStreamer element tests under AddressSanitizer + UBSan.
#   scripts/test.sh            # everything
#   SAM2_NO_ASAN=1 scripts/test.sh   # skip the sanitizer pass
# Tests read the reference fixtures from $SAM2_FIXTURES (default: ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

configure() {  # dir, extra meson args...
  local dir=$1; shift
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

configure build --buildtype=release
ninja -C build
meson test -C build --print-errorlogs

if [ "${SAM2_NO_ASAN:-0}" != 1 ]; then
  # Sanitized debug-optimised build of the same tests. Leaks are errors; OpenMP's worker
  # threads and GLib's type system keep some memory for the process lifetime, which LSan
  # counts as reachable, not leaked.
  configure build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false
  ninja -C build-asan
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --suite core --suite fuzz --timeout-multiplier 4
  # The element tests, for invalid accesses and undefined behaviour. Leaks are not checked
  # here: GStreamer and GLib keep registry and type data for the process lifetime, and LSan's
  # tracer crashes in the pipelines' threads when it unwinds fully to tell those apart; the
  # library's own leaks are checked by the core suites above. The registry is scanned in
  # process (GST_REGISTRY_FORK=no): the plugin scanner helper cannot load a sanitized plugin.
  GST_REGISTRY_FORK=no ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --suite gst --timeout-multiplier 4
fi
echo "all tests passed"
