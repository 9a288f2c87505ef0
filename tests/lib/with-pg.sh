#!/usr/bin/env bash
# with-pg.sh CMD [ARGS...] -- run CMD with a throw-away PostgreSQL cluster.
# Exports TB_TEST_PG_CONNINFO (libpq string) and TB_TEST_PG_DIR; the cluster
# is stopped and removed whatever CMD does.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/pg.sh"
dir=$(mktemp -d "${TMPDIR:-/tmp}/tbpg-XXXXXX")
port=$(pg_free_port)
cleanup() { pg_stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
pg_start "$dir" "$port" || exit 1
export TB_TEST_PG_CONNINFO="$(pg_conninfo "$dir" "$port")"
export TB_TEST_PG_DIR="$dir"
"$@"
