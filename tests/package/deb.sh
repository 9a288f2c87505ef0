#!/usr/bin/env bash
# deb.sh BUILD -- `cpack -G DEB` into a temporary directory and check the
# package without installing it: name tongban_<version>_<arch>.deb; control
# fields; Depends naming the runtime libraries (libzmq5, libprotobuf-c1, libjansson4,
# libpq5, libssl3, libyaml-0-2, libmicrohttpd12, libisal2) and a way to
# create the user; shlibs and the ldconfig trigger; the file list under /usr,
# owned by root; the units and tongban.pc naming /usr; and the maintainer
# scripts, run against stub commands (PATH holds only stubs that log their
# arguments), so both ways of creating the user are exercised and nothing on
# this machine changes. ctest label: package.
set -euo pipefail
BUILD=$(cd "${1:?usage: deb.sh BUILD_DIR}" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tb-deb-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

for t in cpack dpkg-deb dpkg; do
  command -v "$t" >/dev/null 2>&1 || { echo "skip: $t not installed"; exit 0; }
done
VERSION=$(sed -n 's/^#define TB_VERSION_STRING "\(.*\)"$/\1/p' "$BUILD/include/tongban/version.h")
ARCH=$(dpkg --print-architecture)
DEB=$TMP/out/tongban_${VERSION}_${ARCH}.deb

(cd "$BUILD" && cpack -G DEB -B "$TMP/out" --config "$BUILD/CPackConfig.cmake") >"$TMP/cpack.log" 2>&1 \
  || { cat "$TMP/cpack.log" >&2; echo "FAIL: cpack -G DEB" >&2; exit 1; }
[ -f "$DEB" ] || { ls -l "$TMP/out" >&2; echo "FAIL: no $(basename "$DEB")" >&2; exit 1; }
ok "cpack -G DEB: $(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

# ---- control ----
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = tongban ] || bad "Package: $(field Package)"
[ "$(field Version)" = "$VERSION" ] || bad "Version: $(field Version)"
[ "$(field Architecture)" = "$ARCH" ] || bad "Architecture: $(field Architecture)"
[ -n "$(field Maintainer)" ] || bad "no Maintainer"
DEPENDS=$(field Depends)
for lib in libc6 libzmq5 libprotobuf-c1 libpq5 libssl3 libyaml-0-2 libmicrohttpd12 libisal2 libjansson4; do
  # a package name in a comma-separated list, maybe with a version
  if echo ", $DEPENDS," | grep -Eq "[ ,|]$lib( \([^)]*\))?[ ,|]"; then :; else bad "Depends lacks $lib: $DEPENDS"; fi
done
echo ", $DEPENDS," | grep -q "adduser | systemd-sysusers" || bad "Depends lacks 'adduser | systemd-sysusers'"
ok "Depends: $DEPENDS"

dpkg-deb -e "$DEB" "$TMP/control"
for s in postinst prerm postrm; do
  f=$TMP/control/$s
  if [ -x "$f" ] && sh -n "$f"; then :; else bad "maintainer script $s missing, not executable or not valid sh"; fi
done
grep -qx 'libtongban 0 tongban (= '"$VERSION"')' "$TMP/control/shlibs" 2>/dev/null || bad "shlibs: $(cat "$TMP/control/shlibs" 2>/dev/null)"
grep -qx 'activate-noawait ldconfig' "$TMP/control/triggers" 2>/dev/null || bad "no ldconfig trigger"
ok "control archive: $(cd "$TMP/control" && echo *)"

# ---- contents ----
dpkg-deb -c "$DEB" >"$TMP/contents"
owners=$(awk '{print $2}' "$TMP/contents" | sort -u | tr '\n' ' ')
[ "$owners" = "root/root " ] || bad "files not all owned by root/root: $owners"
awk '$1 !~ /^d/ {print $6}' "$TMP/contents" | sed 's|^\./||' | sort >"$TMP/files"
LIBDIR=$(sed -n 's|^usr/\(.*\)/libtongban\.a$|\1|p' "$TMP/files")
cat >"$TMP/want" <<EOF
usr/bin/tbctl
usr/bin/tongban-hub
usr/bin/tongban-node
usr/include/tongban/client.h
usr/include/tongban/tongban.h
usr/include/tongban/validate.h
usr/include/tongban/version.h
usr/$LIBDIR/libtongban.a
usr/$LIBDIR/libtongban.so
usr/$LIBDIR/libtongban.so.${VERSION%%.*}
usr/$LIBDIR/libtongban.so.$VERSION
usr/$LIBDIR/pkgconfig/tongban.pc
usr/lib/systemd/system/tongban-hub.service
usr/lib/systemd/system/tongban-node@.service
usr/lib/sysusers.d/tongban.conf
usr/share/doc/tongban/README.md
usr/share/doc/tongban/decisions.md
usr/share/doc/tongban/examples/hub.yaml
usr/share/doc/tongban/examples/node.yaml
usr/share/doc/tongban/integrator-guide.md
usr/share/doc/tongban/metrics.md
usr/share/doc/tongban/operator-guide.md
usr/share/doc/tongban/protocol.md
EOF
sort -o "$TMP/want" "$TMP/want"
if diff -u "$TMP/want" "$TMP/files"; then ok "contents ($(wc -l <"$TMP/files") files under /usr)"; else bad "contents differ (- expected, + in the package)"; fi

dpkg-deb -x "$DEB" "$TMP/x"
grep -q '^ExecStart=/usr/bin/tongban-hub -c /etc/tongban/hub.yaml$' "$TMP/x/usr/lib/systemd/system/tongban-hub.service" \
  || bad "hub unit does not run /usr/bin/tongban-hub"
grep -q '^ExecStart=/usr/bin/tongban-node -c /etc/tongban/node-%i.yaml$' "$TMP/x/usr/lib/systemd/system/tongban-node@.service" \
  || bad "node unit does not run /usr/bin/tongban-node"
grep -qx 'prefix=/usr' "$TMP/x/usr/$LIBDIR/pkgconfig/tongban.pc" || bad "tongban.pc: $(head -1 "$TMP/x/usr/$LIBDIR/pkgconfig/tongban.pc")"
for b in tongban-hub tongban-node tbctl; do
  if readelf -S "$TMP/x/usr/bin/$b" | grep -q '\.symtab'; then bad "usr/bin/$b is not stripped"; fi
done
ok "units and tongban.pc name /usr"

# ---- maintainer scripts against stubs ----
# run_script SCRIPT ARGS...: PATH holds only stubs; each logs "name args" to $TMP/calls.
STUBS=$TMP/stubs
mkdir -p "$STUBS"
stub() { printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit %s\n' "$1" "$TMP/calls" "${2:-0}" >"$STUBS/$1"; chmod +x "$STUBS/$1"; }
for c in adduser install systemctl awk rm; do stub "$c"; done
run_script() { : >"$TMP/calls"; env -i PATH="$STUBS" /bin/sh "$TMP/control/$1" "${@:2}" >"$TMP/out.log" 2>&1; }

stub systemd-sysusers
run_script postinst configure "" || bad "postinst configure (systemd-sysusers) failed: $(cat "$TMP/out.log")"
grep -qx 'systemd-sysusers /usr/lib/sysusers.d/tongban.conf' "$TMP/calls" \
  || bad "postinst does not run systemd-sysusers on the package's file: $(cat "$TMP/calls")"
grep -q '^adduser' "$TMP/calls" && bad "postinst ran adduser although systemd-sysusers is there"
ok "postinst with systemd-sysusers: $(tr '\n' ';' <"$TMP/calls")"

rm -f "$STUBS/systemd-sysusers"
stub getent 2                       # no user tongban yet
run_script postinst configure "" || bad "postinst configure (adduser) failed: $(cat "$TMP/out.log")"
grep -q '^adduser --system --group --home /var/lib/tongban .*tongban$' "$TMP/calls" \
  || bad "postinst without systemd-sysusers does not run adduser --system: $(cat "$TMP/calls")"
ok "postinst with adduser: $(grep '^adduser' "$TMP/calls")"
stub getent 0                       # the user exists
run_script postinst configure 0.0.9 || bad "postinst configure on upgrade failed"
grep -q '^adduser' "$TMP/calls" && bad "postinst runs adduser although the user exists"
run_script prerm remove || bad "prerm remove failed"
run_script prerm upgrade "$VERSION" || bad "prerm upgrade failed"
run_script postrm remove || bad "postrm remove failed"
run_script postrm purge || bad "postrm purge failed"
ok "prerm and postrm exit 0 (remove, upgrade, purge)"

if [ "$fails" -ne 0 ]; then echo "deb.sh: $fails check(s) failed" >&2; exit 1; fi
echo "deb.sh: all checks passed"
