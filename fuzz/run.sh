#!/usr/bin/env bash
# run.sh [SECONDS_PER_TARGET] -- build the libFuzzer targets (build-fuzz/,
# clang, ASan + UBSan) and run each for SECONDS_PER_TARGET (default 60) on a
# temporary copy of its seed corpus (fuzz/corpus/<target>, never modified).
#
# Prints per target: executions, exec/s, coverage (cov: edges, ft: features
# from libFuzzer's final stats line) and crashes found. Exits non-zero when a
# target crashed, leaked, timed out or ran out of memory; the input is kept
# in build-fuzz/artifacts/<target>/ and the log in build-fuzz/logs/<target>.log.
# Reproduce with: build-fuzz/fuzz/<target> build-fuzz/artifacts/<target>/crash-...
#
# Environment: TB_FUZZ_TARGETS="fuzz_frame ..." to run a subset;
# TB_FUZZ_TMPDIR for the targets' scratch files (default /dev/shm).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
case "$secs" in ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
targets=${TB_FUZZ_TARGETS:-"fuzz_frame fuzz_config fuzz_journal fuzz_validate fuzz_api fuzz_client"}
build="$src/build-fuzz"
cc=${CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz/run.sh: $cc not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

CC=$cc cmake -S "$src" -B "$build" -DTB_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $targets >"$build/build.log" 2>&1 \
  || { tail -40 "$build/build.log" >&2; echo "fuzz/run.sh: build failed" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tbfuzz-run-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/logs"
# A failing UBSan check aborts (the build uses -fno-sanitize-recover); libFuzzer
# reports leaks itself.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
printf '%-14s %12s %9s %8s %8s %8s\n' target executions exec/s cov ft crashes
for t in $targets; do
  corpus="$work/$t"
  art="$build/artifacts/$t"
  log="$build/logs/$t.log"
  mkdir -p "$corpus" "$art"
  cp "$src/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
  dict=()
  [ -f "$src/fuzz/$t.dict" ] && dict=(-dict="$src/fuzz/$t.dict")
  before=$(find "$art" -type f | wc -l)
  rc=0
  "$build/fuzz/$t" "$corpus" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 \
    -print_final_stats=1 -artifact_prefix="$art/" >"$log" 2>&1 || rc=$?
  after=$(find "$art" -type f | wc -l)
  found=$((after - before))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  line=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
  if [ "$rc" != 0 ] && [ "$found" = 0 ]; then found=1; fi   # died without an artifact
  printf '%-14s %12s %9s %8s %8s %8s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$found"
  if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
    status=1
    echo "--- $t: libFuzzer exit $rc; log $log" >&2
    grep -E 'ERROR: |SUMMARY: |FUZZ_ASSERT|runtime error|Test unit written' "$log" | head -20 >&2 || true
  fi
done
exit $status
