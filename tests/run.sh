#!/usr/bin/env bash
# run.sh -- install what is missing, build, and run the whole test suite.
#   ./tests/run.sh                 everything (unit + integration)
#   ./tests/run.sh -L unit         only a ctest label (unit, pg, integration)
#   TB_SANITIZE=1 ./tests/run.sh   build with ASan + UBSan in build-asan/
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/deploy/install-deps.sh"
if [ "${TB_SANITIZE:-0}" = 1 ]; then
  build="$src/build-asan"; flags=(-DTB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
else
  build="$src/build"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
cmake -S "$src" -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 900 "$@"
