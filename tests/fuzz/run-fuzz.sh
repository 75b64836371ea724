#!/bin/sh
# run-fuzz.sh [SECONDS]: builds every tests/fuzz/fuzz-*.c with libFuzzer, ASan and UBSan and runs
# each for SECONDS (default 60) on its corpus. Exits non-zero if a target does not build or a
# fuzzer found a crash, a leak, undefined behaviour or a timeout; see tests/fuzz/README.md.
#
# Environment: CC (default clang), FUZZ_OUT (default fuzz-out/ in the project, git-ignored),
# FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=4 -workers=4").
set -u

# Core sources compiled into every target; each target links only the objects it uses. A source
# that does not compile is skipped with a warning, so a target that needs it fails to link.
CORE_SOURCES="core/errors.c core/safetensors.c core/config.c core/hub.c core/quant/recipe.c
  core/rle.c gst/gstsam2prompts.c"
PKGS="glib-2.0 gio-2.0 json-glib-1.0 yaml-0.1"

SECONDS_PER_TARGET=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/fuzz-out}
CC=${CC:-clang}
FUZZ_ARGS=${FUZZ_ARGS:-}

case $SECONDS_PER_TARGET in
  ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
command -v "$CC" >/dev/null 2>&1 || {
  echo "$CC not found; install it (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
PKG_CFLAGS=$(pkg-config --cflags $PKGS) && PKG_LIBS=$(pkg-config --libs $PKGS) || {
  echo "pkg-config cannot find $PKGS; install their -dev packages" >&2; exit 2; }

SANITIZE="address,undefined"
CFLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all -D_GNU_SOURCE
  -DG_LOG_DOMAIN=\"sam2\" -I$ROOT/core -I$ROOT/core/quant -I$ROOT/gst $PKG_CFLAGS"
mkdir -p "$OUT/obj" "$OUT/bin" || exit 2
rm -f "$OUT"/obj/*.o "$OUT/libcore.a"

for src in $CORE_SOURCES; do
  obj="$OUT/obj/$(basename "$src" .c).o"
  if ! $CC $CFLAGS -fsanitize=fuzzer-no-link,$SANITIZE -c "$ROOT/$src" -o "$obj" \
      2>"$obj.log"; then
    echo "warning: $src does not compile, left out (see $obj.log)" >&2
    rm -f "$obj"
  fi
done
ar rcs "$OUT/libcore.a" "$OUT"/obj/*.o || exit 2

failed=""
found_target=no
for target_src in "$ROOT"/tests/fuzz/fuzz-*.c; do
  [ -e "$target_src" ] || continue
  found_target=yes
  name=$(basename "$target_src" .c)
  short=${name#fuzz-}
  bin="$OUT/bin/$name"
  if ! $CC $CFLAGS -fsanitize=fuzzer,$SANITIZE "$target_src" "$OUT/libcore.a" $PKG_LIBS -lm \
      -o "$bin"; then
    echo "FAIL $name: does not build" >&2
    failed="$failed $name"
    continue
  fi
  seeds="$ROOT/tests/fuzz/corpus/$short"
  work="$OUT/corpus/$short"           # new inputs land here, not in the committed corpus
  artifacts="$OUT/artifacts/$short"
  mkdir -p "$work" "$artifacts"
  rm -f "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*
  dict=""
  [ -f "$ROOT/tests/fuzz/$short.dict" ] && dict="-dict=$ROOT/tests/fuzz/$short.dict"
  [ -d "$seeds" ] || echo "warning: no seed corpus at $seeds" >&2
  echo "== $name: ${SECONDS_PER_TARGET}s, log $OUT/$name.log"
  # G_SLICE: json-glib allocates nodes with g_slice; plain malloc lets ASan see their misuse.
  G_SLICE=always-malloc ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" $dict $FUZZ_ARGS \
      "$work" $( [ -d "$seeds" ] && echo "$seeds" ) >"$OUT/$name.log" 2>&1
  status=$?
  grep -E "^stat::number_of_executed_units|^Done [0-9]+ runs" "$OUT/$name.log" | sed "s/^/   /"
  if [ $status -ne 0 ] || ls "$artifacts" | grep -q .; then
    echo "FAIL $name: exit $status; reproducers in $artifacts, details in $OUT/$name.log" >&2
    failed="$failed $name"
  else
    echo "ok   $name"
  fi
done

[ $found_target = yes ] || { echo "no fuzz-*.c targets in tests/fuzz" >&2; exit 2; }
if [ -n "$failed" ]; then
  echo "fuzzing failed:$failed" >&2
  exit 1
fi
echo "all fuzz targets ran ${SECONDS_PER_TARGET}s without a finding"
