#!/usr/bin/env bash
# federation.sh -- build a small tongban federation on this machine (source it).
# Used by deploy/quickstart.sh and by the integration tests, so both exercise
# the same steps an operator follows: PKI, PostgreSQL, configs, processes.
#
#   fed_setup ROOT BUILD          remember where things go; creates the national CA
#   fed_hub PORT                  hub CURVE keys + config (nodes registered later);
#                                 with $FED_HTTP_PORT, /metrics + /healthz on 127.0.0.1:that port
#   fed_node ID ALG [ROUTE_TO..]  enrol ID, start its PostgreSQL, write its config
#   fed_register ID [TOPIC..]     add ID to the hub's registry, subscribed to TOPICs
#                                 (extra YAML lines for it in $FED_REG_EXTRA)
#   fed_light ID [ALG]            enrol ID only (for light test nodes without PostgreSQL)
#   fed_hub_pg PORT PORT..        high availability: the hubs hub1..hubN of one active /
#                                 standby group on a PostgreSQL store -- $FED_HUB_CONNINFO, or
#                                 a cluster started in pg/hubdb; call instead of fed_hub (the
#                                 registry in etc/hub.yaml is shared); fed_node then writes
#                                 every endpoint into hub.endpoints
#   fed_start_hubs                write etc/hubI.yaml and start hub1 (active), then the others
#   fed_start_hub_i I             (re)start hubI only (log/hubI.log, run/hubI.pid)
#   fed_start_hub / fed_start_node ID / fed_stop_node ID / fed_stop_all
#   fed_psql ID SQL...            psql against ID's database
#   fed_wait_log FILE REGEX SECS  wait until a log line matches
#   fed_wait_sql ID SQL WANT SECS wait until SQL's output equals WANT
#   fed_checksum ID               order-independent checksum of tongban.records

FED_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$FED_LIB_DIR/../tests/lib/pg.sh"

fed_setup() {
  FED_ROOT=$1 FED_BUILD=$2
  mkdir -p "$FED_ROOT"/{pki,etc,log,run}
  chmod 755 "$FED_ROOT"
  [ -f "$FED_ROOT/pki/ca/ca.crt" ] || "$FED_BUILD/tbctl" pki init-ca --dir "$FED_ROOT/pki/ca" >/dev/null
}

fed_hub() {
  FED_HUB_PORT=$1 FED_HUB_PORTS=$1
  [ -f "$FED_ROOT/pki/hub/curve.pub" ] || "$FED_BUILD/tbctl" pki curve --out "$FED_ROOT/pki/hub" >/dev/null
  FED_HUB_PUB=$(cat "$FED_ROOT/pki/hub/curve.pub")
  mkdir -p "$FED_ROOT/hubdata"
  cat >"$FED_ROOT/etc/hub.yaml" <<YAML
# tongban-hub configuration (written by deploy/federation.sh)
hub:
  id: hub
  listen: tcp://127.0.0.1:$FED_HUB_PORT
  curve_secret: $FED_ROOT/pki/hub/curve.key
  ca_certificate: $FED_ROOT/pki/ca/ca.crt
  data_dir: $FED_ROOT/hubdata
limits:
  heartbeat_ms: 1000
  heartbeat_timeout_ms: 5000
  redeliver_ms: 3000
${FED_HTTP_PORT:+http: {listen: '127.0.0.1:$FED_HTTP_PORT'\}}
log:
  level: ${FED_LOG_LEVEL:-info}
  format: logfmt
${FED_TOPICS:-topics: []}
nodes:
YAML
}

fed_hub_pg() {
  fed_hub "$1" || return 1
  FED_HUB_PORTS="$*"
  if [ -z "${FED_HUB_CONNINFO:-}" ]; then
    local d="$FED_ROOT/pg/hubdb" port
    if [ -f "$d/port" ]; then port=$(cat "$d/port"); else
      port=$(pg_free_port); mkdir -p "$d"; echo "$port" >"$d/port"
    fi
    [ -d "$d/pgdata" ] || pg_start "$d" "$port" || return 1
    FED_HUB_CONNINFO=$(pg_conninfo "$d" "$port")
  fi
}

# fed_hub_conf I: etc/hubI.yaml, hub I (1-based) of the group, from etc/hub.yaml
fed_hub_conf() {
  local i=$1 port
  port=$(echo $FED_HUB_PORTS | cut -d' ' -f"$i")
  mkdir -p "$FED_ROOT/hubdata-$i"
  sed -e "s|^  id: hub\$|  id: hub$i|" -e "s|^  listen: .*|  listen: tcp://127.0.0.1:$port|" \
      -e "s|^  data_dir: .*|  data_dir: $FED_ROOT/hubdata-$i|" \
      -e "$( [ "$i" -gt 1 ] && echo '/^http:/d' || echo 's/^//' )" "$FED_ROOT/etc/hub.yaml" >"$FED_ROOT/etc/hub$i.yaml"
  cat >>"$FED_ROOT/etc/hub$i.yaml" <<YAML
store: postgresql
postgresql:
  conninfo: "$FED_HUB_CONNINFO"
  timeout_ms: ${FED_HUB_PG_TIMEOUT_MS:-2000}
  check_ms: 500
YAML
}

fed_start_hub_i() {
  local i=$1
  fed_hub_conf "$i"
  "$FED_BUILD/tongban-hub" -c "$FED_ROOT/etc/hub$i.yaml" >>"$FED_ROOT/log/hub$i.log" 2>&1 &
  echo $! >"$FED_ROOT/run/hub$i.pid"
}

fed_start_hubs() {
  local i n
  n=$(echo $FED_HUB_PORTS | wc -w)
  fed_start_hub_i 1
  fed_wait_log "$FED_ROOT/log/hub1.log" 'event=active ' 20 || return 1
  for ((i = 2; i <= n; i++)); do
    fed_start_hub_i "$i"
    fed_wait_log "$FED_ROOT/log/hub$i.log" 'event=started' 10 || return 1
  done
}

fed_register() {
  local id=$1; shift
  local subs=""
  if [ $# -gt 0 ]; then subs=$(printf '"%s", ' "$@"); subs="    subscribe: [${subs%, }]"; fi
  cat >>"$FED_ROOT/etc/hub.yaml" <<YAML
  - id: "$id"
    curve_public: "$(cat "$FED_ROOT/pki/$id/curve.pub")"
    certificate: $FED_ROOT/pki/$id/node.crt
$subs
${FED_REG_EXTRA:-}
YAML
}

fed_light() {
  local id=$1 alg=${2:-ed25519}
  [ -f "$FED_ROOT/pki/$id/node.crt" ] || \
    "$FED_BUILD/tbctl" pki issue --ca "$FED_ROOT/pki/ca" --node "$id" --alg "$alg" --out "$FED_ROOT/pki/$id" >/dev/null
}

# fed_lightnode MODE ID [ARGS...]: run tb_lightnode as ID against the hub.
fed_lightnode() {
  local mode=$1 id=$2; shift 2
  "$FED_BUILD/tb_lightnode" "$mode" --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
    --curve-dir "$FED_ROOT/pki/$id" --node "$id" --ca "$FED_ROOT/pki/ca/ca.crt" \
    $( [ "$mode" != subscribe ] && echo --key "$FED_ROOT/pki/$id/node.key" --cert "$FED_ROOT/pki/$id/node.crt" ) "$@"
}

# fed_node ID ALG [DEST ...]: every catalog ("*") of ID goes to each DEST.
fed_node() {
  local id=$1 alg=$2; shift 2
  [ -f "$FED_ROOT/pki/$id/node.crt" ] || \
    "$FED_BUILD/tbctl" pki issue --ca "$FED_ROOT/pki/ca" --node "$id" --alg "$alg" --out "$FED_ROOT/pki/$id" >/dev/null
  local pgdir="$FED_ROOT/pg/$id" port
  if [ -f "$pgdir/port" ]; then port=$(cat "$pgdir/port"); else
    port=$(pg_free_port); mkdir -p "$pgdir"; echo "$port" >"$pgdir/port"
  fi
  if [ ! -d "$pgdir/pgdata" ]; then pg_start "$pgdir" "$port" || return 1
  elif [ ! -f "$pgdir/pgdata/postmaster.pid" ]; then
    pg_as_owner "$(pg_bindir)/pg_ctl" -D "$pgdir/pgdata" -l "$pgdir/server.log" -w start >/dev/null || return 1
  fi
  local routes="routes: []" hubep="endpoint: tcp://127.0.0.1:$FED_HUB_PORT" p
  if [ "$(echo ${FED_HUB_PORTS:-} | wc -w)" -gt 1 ]; then
    hubep="endpoints: [$(for p in $FED_HUB_PORTS; do printf 'tcp://127.0.0.1:%s, ' "$p"; done)"
    hubep="${hubep%, }]"
  fi
  if [ $# -gt 0 ]; then
    local to; to=$(printf '"%s", ' "$@"); to="[${to%, }]"
    routes=$(printf 'routes:\n  - catalog: "*"\n    to: %s' "$to")
  fi
  cat >"$FED_ROOT/etc/$id.yaml" <<YAML
# tongban-node configuration for $id (written by deploy/federation.sh)
node:
  id: "$id"
  admin: $FED_ROOT/run/$id.admin.sock
keys:
  signing_key: $FED_ROOT/pki/$id/node.key
  certificate: $FED_ROOT/pki/$id/node.crt
  ca_certificate: $FED_ROOT/pki/ca/ca.crt
  curve_secret: $FED_ROOT/pki/$id/curve.key
  curve_public: $FED_ROOT/pki/$id/curve.pub
hub:
  $hubep
  curve_public: "$FED_HUB_PUB"
postgresql:
  conninfo: "$(pg_conninfo "$pgdir" "$port")"
batch:
  max_entries: 1000
  max_delay_ms: 5
  window: 8
  poll_ms: 1000
  resend_ms: 3000
log:
  level: ${FED_LOG_LEVEL:-info}
  format: logfmt
$routes
YAML
}

fed_start_hub() {
  "$FED_BUILD/tongban-hub" -c "$FED_ROOT/etc/hub.yaml" >>"$FED_ROOT/log/hub.log" 2>&1 &
  echo $! >"$FED_ROOT/run/hub.pid"
  fed_wait_log "$FED_ROOT/log/hub.log" 'event=started' 10
}

fed_start_node() {
  local id=$1
  "$FED_BUILD/tongban-node" -c "$FED_ROOT/etc/$id.yaml" >>"$FED_ROOT/log/$id.log" 2>&1 &
  echo $! >"$FED_ROOT/run/$id.pid"
}

fed_pid() { cat "$FED_ROOT/run/$1.pid" 2>/dev/null; }

# fed_stop_proc NAME [SIGNAL]: stop and wait (SIGTERM by default).
fed_stop_proc() {
  local name=$1 sig=${2:-TERM} pid
  pid=$(fed_pid "$name") || return 0
  [ -n "$pid" ] || return 0
  pkill "-$sig" -P "$pid" 2>/dev/null || true   # a backgrounded shell function's children
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$FED_ROOT/run/$name.pid"
}

fed_stop_all() {
  local f
  for f in "$FED_ROOT"/run/*.pid; do
    [ -e "$f" ] || continue
    fed_stop_proc "$(basename "$f" .pid)"
  done
  for f in "$FED_ROOT"/pg/*/; do
    [ -d "$f" ] && pg_stop "${f%/}"
  done
  return 0
}

fed_psql() {
  local id=$1; shift
  local pgdir="$FED_ROOT/pg/$id"
  pg_psql "$pgdir" "$(cat "$pgdir/port")" "$@"
}

fed_wait_log() {
  local file=$1 re=$2 secs=$3 i
  for i in $(seq 1 $((secs * 10))); do
    grep -Eq -- "$re" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out after ${secs}s waiting for /$re/ in $file" >&2
  return 1
}

fed_wait_sql() {
  local id=$1 sql=$2 want=$3 secs=$4 got=
  for _ in $(seq 1 $((secs * 10))); do
    got=$(fed_psql "$id" -c "$sql" 2>/dev/null)
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  echo "timed out after ${secs}s: $id: '$sql' gave '$got', want '$want'" >&2
  return 1
}

fed_checksum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(catalog || '|' || key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY catalog, key)), '-') FROM tongban.records"
}
