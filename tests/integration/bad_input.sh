#!/usr/bin/env bash
# bad_input.sh BUILD -- every kind of bad start-up input gives one clear error
# line naming the file or endpoint and a non-zero exit, never a crash:
# malformed YAML, missing key file, key readable by others, certificate of
# another CA, unreachable PostgreSQL, unreachable hub.
set -euo pipefail
BUILD=$(cd "${1:?usage: bad_input.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-badinput-XXXXXX")
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect NAME WANT_RC REGEX -- CMD...: runs CMD (10 s timeout), checks exit
# code, that stderr matches REGEX, and that it is not a crash (signal).
expect() {
  local name=$1 want=$2 re=$3; shift 4
  local rc=0
  timeout 30 "$@" >"$ROOT/out" 2>"$ROOT/err" || rc=$?
  if [ "$rc" -ge 124 ]; then fail "$name: crashed or hung (rc=$rc)"; cat "$ROOT/err" >&2; return; fi
  [ "$rc" = "$want" ] || { fail "$name: exit $rc, want $want"; cat "$ROOT/err" >&2; return; }
  grep -Eq -- "$re" "$ROOT/err" || { fail "$name: stderr does not match /$re/:"; cat "$ROOT/err" >&2; return; }
  echo "ok   $name: $(grep -E -- "$re" "$ROOT/err" | head -n 1)"
}

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
fed_node 110000 ed25519 440000
fed_register 110000
cfg="$ROOT/etc/110000.yaml"

# 1. malformed YAML: file:line, exit 3 (config invalid)
printf 'node:\n  id: "110000"\n  colour: [unclosed\n' >"$ROOT/etc/broken.yaml"
expect "malformed yaml" 3 "broken.yaml:[0-9]+: " -- "$BUILD/tongban-node" -c "$ROOT/etc/broken.yaml"
sed 's|endpoint: tcp://127.0.0.1:[0-9]*|endpoint: 127.0.0.1|' "$cfg" >"$ROOT/etc/badendpoint.yaml"
expect "bad endpoint" 3 "badendpoint.yaml:[0-9]+: hub.endpoint: " -- "$BUILD/tongban-node" -c "$ROOT/etc/badendpoint.yaml" --check-config
expect "missing config" 3 "nope.yaml" -- "$BUILD/tongban-node" -c "$ROOT/etc/nope.yaml"

# 2. missing key file
sed "s|signing_key: .*|signing_key: $ROOT/pki/110000/absent.key|" "$cfg" >"$ROOT/etc/nokey.yaml"
expect "missing key file" 1 "absent.key: No such file" -- "$BUILD/tongban-node" -c "$ROOT/etc/nokey.yaml"

# 3. key readable by group/others
cp "$ROOT/pki/110000/node.key" "$ROOT/pki/110000/open.key"; chmod 0644 "$ROOT/pki/110000/open.key"
sed "s|signing_key: .*|signing_key: $ROOT/pki/110000/open.key|" "$cfg" >"$ROOT/etc/openkey.yaml"
expect "key too open" 1 "open.key: permissions 0644 are too open" -- "$BUILD/tongban-node" -c "$ROOT/etc/openkey.yaml"
chmod 0640 "$ROOT/pki/110000/curve.key"
expect "curve key too open" 1 "curve.key.*too open" -- "$BUILD/tongban-node" -c "$cfg"
chmod 0600 "$ROOT/pki/110000/curve.key"

# 4. certificate of another CA (node side and hub side)
"$BUILD/tbctl" pki init-ca --dir "$ROOT/pki/otherca" --name "not the national CA" >/dev/null
"$BUILD/tbctl" pki issue --ca "$ROOT/pki/otherca" --node 110000 --out "$ROOT/pki/other110000" >/dev/null
sed -e "s|signing_key: .*|signing_key: $ROOT/pki/other110000/node.key|" \
    -e "s|  certificate: .*|  certificate: $ROOT/pki/other110000/node.crt|" "$cfg" >"$ROOT/etc/otherca.yaml"
expect "node cert of another CA" 1 "node.crt: not issued by the CA" -- "$BUILD/tongban-node" -c "$ROOT/etc/otherca.yaml"
sed "s|certificate: $ROOT/pki/110000/node.crt|certificate: $ROOT/pki/other110000/node.crt|" "$ROOT/etc/hub.yaml" >"$ROOT/etc/hub-otherca.yaml"
expect "hub registry cert of another CA" 1 "other110000/node.crt: not issued by the national CA" -- \
  "$BUILD/tongban-hub" -c "$ROOT/etc/hub-otherca.yaml"

# 5. unreachable PostgreSQL
sed "s|conninfo: .*|conninfo: \"host=127.0.0.1 port=1 dbname=postgres user=postgres connect_timeout=2\"|" "$cfg" >"$ROOT/etc/nopg.yaml"
expect "unreachable postgresql" 1 "127.0.0.1.*port 1|port 1.*127.0.0.1" -- "$BUILD/tongban-node" -c "$ROOT/etc/nopg.yaml"

# 6. unreachable hub (nothing listens on the endpoint)
sed "s|  curve_public: \"|  connect_timeout_ms: 3000\n  curve_public: \"|" "$cfg" >"$ROOT/etc/nohub.yaml"
expect "unreachable hub" 1 "event=hub_unreachable .*endpoint=tcp://127.0.0.1:$FED_HUB_PORT waited_ms=3000" -- "$BUILD/tongban-node" -c "$ROOT/etc/nohub.yaml"
[ "$(grep -c 'level=error' "$ROOT/err")" = 1 ] || fail "unreachable hub: expected exactly one error line"

# 7. hub: unbindable endpoint
sed "s|listen: .*|listen: tcp://192.0.2.1:7|" "$ROOT/etc/hub.yaml" >"$ROOT/etc/hub-nobind.yaml"
expect "hub cannot listen" 1 "cannot listen on tcp://192.0.2.1:7" -- "$BUILD/tongban-hub" -c "$ROOT/etc/hub-nobind.yaml"

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "PASS bad_input"
