#!/usr/bin/env bash
# valgrind.sh [BUILD_DIR] -- run every unit test binary (BUILD_DIR/test_*,
# default build/) under valgrind memcheck and report per test.
#
#   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1
#
# Tests named test_*_pg get a throw-away PostgreSQL cluster through
# tests/lib/with-pg.sh (the server itself is not run under valgrind).
# TB_SKIP_PERF=1 is set (test_journal skips its throughput measurement).
# A test fails when it fails on its own or valgrind reports an error or a
# definite leak; its valgrind log is kept in BUILD_DIR/valgrind/<test>.log.
# Registered as the ctest `valgrind_unit` (label valgrind): ./tests/run.sh -L valgrind
# Needs a normal build (not TB_SANITIZE: ASan and valgrind do not mix).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd) || { echo "valgrind.sh: no build directory" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not installed (apt-get install valgrind)" >&2; exit 2; }
if grep -q '^TB_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "valgrind.sh: $build is an ASan build; use a normal build" >&2
  exit 2
fi
export TB_SKIP_PERF=1
logs="$build/valgrind"
mkdir -p "$logs"
vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1
    --num-callers=30 --track-fds=no)

pass=0 fail=0 failed=()
shopt -s nullglob
for t in "$build"/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  log="$logs/$name.log"
  start=$SECONDS
  if [[ $name == *_pg ]]; then
    "$src/tests/lib/with-pg.sh" "${vg[@]}" --log-file="$log" "$t" >"$logs/$name.out" 2>&1
  else
    "${vg[@]}" --log-file="$log" "$t" >"$logs/$name.out" 2>&1
  fi
  rc=$?
  secs=$((SECONDS - start))
  summary=$(grep -E 'ERROR SUMMARY' "$log" | tail -1 | sed 's/^==[0-9]*== //')
  leaks=$(grep -E 'definitely lost:' "$log" | tail -1 | sed 's/^==[0-9]*== *//')
  if [ $rc = 0 ]; then
    pass=$((pass + 1))
    printf 'PASS %-18s %4ss  %s\n' "$name" "$secs" "${summary:-}"
  else
    fail=$((fail + 1))
    failed+=("$name")
    printf 'FAIL %-18s %4ss  exit %s  %s  %s\n' "$name" "$secs" "$rc" "${summary:-}" "${leaks:-}"
    # the first errors, and the test's own failure lines
    grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|[0-9,]+ bytes in [0-9,]+ blocks are definitely)' \
      "$log" | head -10 | sed 's/^/     /'
    grep -E '^FAIL ' "$logs/$name.out" | head -10 | sed 's/^/     /'
    echo "     log: $log"
  fi
done
echo "valgrind: $pass passed, $fail failed"
[ $fail = 0 ]
