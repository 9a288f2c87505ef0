#!/usr/bin/env bash
# run.sh -- install what is missing, build, and run the whole test suite.
#   ./tests/run.sh                 everything but valgrind (unit + integration + ...)
#   ./tests/run.sh -L unit         only a ctest label (unit, pg, integration, faults, slow, valgrind)
#   ./tests/run.sh -L valgrind     the unit tests under valgrind memcheck (tests/valgrind.sh)
#   TB_SANITIZE=1 ./tests/run.sh   build with ASan + UBSan in build-asan/ and run there
#
# With TB_SANITIZE=1 every ASan/LSan/UBSan report of any of our processes --
# tests, and the daemons and tools they start, whose exit status a script may
# not look at -- goes to build-asan/sanitizer/; the run fails if any is there.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/deploy/install-deps.sh"
san=
if [ "${TB_SANITIZE:-0}" = 1 ]; then
  # Optimised like the normal build (-O2 -g; -fno-omit-frame-pointer keeps the
  # stacks): twice as fast as -O0 under ASan, and gcc's -Wformat-truncation,
  # which depends on the optimisation level, judges both builds alike.
  build="$src/build-asan"; flags=(-DTB_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  san="$build/sanitizer"
  rm -rf "$san"
  mkdir -p "$san"
  # Inherited by every test and the daemons they start. Only our binaries
  # carry the ASan runtime; PostgreSQL, psql, openssl etc. ignore these
  # variables. Nothing is LD_PRELOADed.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}:log_path=$san/asan"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$san/ubsan"
else
  build="$src/build"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
# Without arguments, everything except the slow valgrind pass and label slow
# (soak, long fault run: ./tests/run.sh -L slow).
[ $# -eq 0 ] && set -- -LE 'valgrind|slow'
cmake -S "$src" -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
rc=0
ctest --output-on-failure --timeout 900 "$@" || rc=$?
if [ -n "$san" ] && [ -n "$(ls -A "$san")" ]; then
  echo "run.sh: sanitizer reports in $san:" >&2
  for f in "$san"/*; do echo "--- $f" >&2; head -n 40 "$f" >&2; done
  rc=1
fi
exit $rc
