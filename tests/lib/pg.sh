#!/usr/bin/env bash
# pg.sh -- throw-away PostgreSQL 15 clusters for tests (source this file).
#
#   pg_start DIR PORT      initdb + start a cluster in DIR/pgdata, socket in DIR
#   pg_stop DIR            stop it (fast) -- the caller removes DIR
#   pg_conninfo DIR PORT   prints the libpq connection string
#   pg_psql DIR PORT ...   runs psql against it (quiet, ON_ERROR_STOP)
#
# When run as root (CI), the server binaries run as the unprivileged
# `postgres` user (PostgreSQL refuses root); DIR is chowned to it.

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return 0
  fi
  local d
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  echo "pg.sh: no PostgreSQL server binaries (initdb) found; install postgresql-15" >&2
  return 1
}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    local u=${TB_PG_USER:-postgres}
    # runuser keeps our environment minimal and needs no password
    runuser -u "$u" -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local dir=$1 port=$2 bin
  bin=$(pg_bindir) || return 1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown "${TB_PG_USER:-postgres}" "$dir"
    chmod 755 "$dir"
    # every parent must be traversable by the postgres user
    local p=$dir
    while [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  pg_as_owner "$bin/initdb" -D "$dir/pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { echo "pg.sh: initdb failed in $dir:" >&2; cat "$dir/initdb.log" >&2; return 1; }
  cat >>"$dir/pgdata/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
max_connections = 50
shared_buffers = 128MB
fsync = on
synchronous_commit = on
wal_level = replica
log_min_messages = warning
CONF
  pg_as_owner "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { echo "pg.sh: server did not start in $dir:" >&2; cat "$dir/server.log" >&2; return 1; }
}

pg_stop() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  [ -f "$dir/pgdata/postmaster.pid" ] || return 0
  pg_as_owner "$bin/pg_ctl" -D "$dir/pgdata" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

pg_conninfo() {
  echo "host=$1 port=$2 user=postgres dbname=postgres connect_timeout=5"
}

pg_psql() {
  local dir=$1 port=$2; shift 2
  psql -X -q -v ON_ERROR_STOP=1 -At "$(pg_conninfo "$dir" "$port")" "$@"
}

# A free TCP-style port number for the socket name (no TCP listener is used,
# the number only names the socket file); kept distinct per call.
pg_free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 20000 ))
    [ -e "/tmp/.s.PGSQL.$p" ] || { echo "$p"; return; }
  done
}
