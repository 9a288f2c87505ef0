#!/usr/bin/env bash
# install.sh BUILD -- `cmake --install` into a temporary DESTDIR with prefix
# /usr (what the .deb holds) and check what an operator and an integrator get:
# exactly the expected files; runnable binaries; libtongban exporting only
# tb_* symbols; a program compiled with `pkg-config --cflags --libs tongban`
# against the installed header and library (shared and static) that runs;
# the example configurations pass --check-config; the systemd units carry the
# hardening and pass `systemd-analyze verify` and `security` (when systemd-analyze
# is installed); the sysusers.d file creates the user in a scratch root.
# Touches nothing outside its temporary directory. ctest label: install.
set -euo pipefail
BUILD=$(cd "${1:?usage: install.sh BUILD_DIR}" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tb-install-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

cache() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }
LIBDIR=$(cache CMAKE_INSTALL_LIBDIR)
[ -n "$LIBDIR" ] || LIBDIR=lib
VERSION=$(sed -n 's/^#define TB_VERSION_STRING "\(.*\)"$/\1/p' "$BUILD/include/tongban/version.h")
MAJOR=${VERSION%%.*}

DESTDIR=$ROOT cmake --install "$BUILD" --prefix /usr >"$TMP/install.log" 2>&1 \
  || { cat "$TMP/install.log" >&2; echo "FAIL: cmake --install" >&2; exit 1; }

# ---- the file list, exactly ----
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
usr/$LIBDIR/libtongban.so.$MAJOR
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
(cd "$ROOT" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort) >"$TMP/got"
if diff -u "$TMP/want" "$TMP/got"; then ok "installed file list ($(wc -l <"$TMP/got") files)"; else bad "installed file list differs (- expected, + installed)"; fi

for b in tongban-hub tongban-node tbctl; do
  [ -x "$ROOT/usr/bin/$b" ] || { bad "usr/bin/$b is not executable"; continue; }
  v=$("$ROOT/usr/bin/$b" --version 2>&1) || bad "$b --version failed"
  case "$v" in *"$VERSION"*) ok "$b --version: $v" ;; *) bad "$b --version: '$v' does not name $VERSION" ;; esac
done
if [ "$(readlink "$ROOT/usr/$LIBDIR/libtongban.so")" = "libtongban.so.$MAJOR" ] &&
   [ "$(readlink "$ROOT/usr/$LIBDIR/libtongban.so.$MAJOR")" = "libtongban.so.$VERSION" ]; then
  ok "libtongban.so -> .so.$MAJOR -> .so.$VERSION"
else
  bad "libtongban symlink chain"
fi
soname=$(readelf -d "$ROOT/usr/$LIBDIR/libtongban.so.$VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" = "libtongban.so.$MAJOR" ]; then ok "SONAME $soname"; else bad "SONAME is '$soname'"; fi
exports=$(nm -D --defined-only "$ROOT/usr/$LIBDIR/libtongban.so.$VERSION" | awk '$2 ~ /[TDBR]/ {print $3}' | sort | tr '\n' ' ')
case "$exports" in
  *tb_strerror*tb_version*) ;;
  *) bad "libtongban does not export tb_strerror and tb_version: $exports" ;;
esac
others=$(nm -D --defined-only "$ROOT/usr/$LIBDIR/libtongban.so.$VERSION" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^tb_' || true)
if [ -z "$others" ]; then ok "libtongban exports only tb_*: $exports"; else bad "libtongban exports more than tb_*: $others"; fi

# ---- an integrator's program, built with pkg-config against the installed tree ----
export PKG_CONFIG_PATH=$ROOT/usr/$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$ROOT
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
pcv=$(pkg-config --modversion tongban) || bad "pkg-config --modversion tongban"
if [ "$pcv" = "$VERSION" ]; then ok "pkg-config --modversion tongban: $pcv"; else bad "pkg-config version '$pcv', want $VERSION"; fi
flags=$(pkg-config --cflags --libs tongban)
case "$flags" in
  *"-I$ROOT/usr/include"*"-L$ROOT/usr/$LIBDIR"*"-ltongban"*) ok "pkg-config --cflags --libs tongban: $flags" ;;
  *) bad "pkg-config --cflags --libs tongban: '$flags'" ;;
esac
cat >"$TMP/hello.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tongban/tongban.h>

int main(void)
{
    if (strcmp(tb_version(), TB_VERSION_STRING) != 0) return 1;
    if (strcmp(tb_strerror(TB_OK), "ok") != 0) return 2;
    if (strcmp(tb_strerror(TB_ERR_PERM), "permission problem") != 0) return 3;
    printf("libtongban %s (protocol %d): %s\n", tb_version(), TB_PROTOCOL_VERSION, tb_strerror(TB_ERR_CERT));
    return 0;
}
C
# shellcheck disable=SC2086  # flags are words
if cc -std=c11 -Wall -Wextra -Werror -o "$TMP/hello" "$TMP/hello.c" $flags 2>"$TMP/cc.log"; then
  if out=$(LD_LIBRARY_PATH=$ROOT/usr/$LIBDIR "$TMP/hello"); then
    ok "shared: $out"
    if readelf -d "$TMP/hello" | grep -q "NEEDED.*libtongban.so.$MAJOR"; then
      ok "the program needs libtongban.so.$MAJOR"
    else
      bad "the program does not link libtongban.so.$MAJOR"
    fi
  else
    bad "the program linked against the shared libtongban failed"
  fi
else
  cat "$TMP/cc.log" >&2; bad "compiling against the installed header and libtongban.so"
fi
# shellcheck disable=SC2046
if cc -std=c11 -Wall -Wextra -Werror -o "$TMP/hello-static" "$TMP/hello.c" $(pkg-config --cflags tongban) \
     $(pkg-config --libs-only-L tongban) -Wl,-Bstatic -ltongban -Wl,-Bdynamic 2>"$TMP/cc.log" \
   && out=$(env -u LD_LIBRARY_PATH "$TMP/hello-static"); then
  if readelf -d "$TMP/hello-static" | grep -q "NEEDED.*libtongban"; then
    bad "the static program still needs libtongban.so"
  else
    ok "static: $out"
  fi
else
  cat "$TMP/cc.log" >&2; bad "compiling against libtongban.a"
fi
# the client examples, as an integrator builds them from the installed tree
SRC=$(cd "$(dirname "$0")/../.." && pwd)
for ex in "$SRC"/client/examples/*.c; do
  name=$(basename "$ex" .c)
  # shellcheck disable=SC2086
  if cc -std=c11 -Wall -Wextra -Werror -o "$TMP/$name" "$ex" $flags 2>"$TMP/cc.log"; then
    ok "example $name builds with pkg-config tongban"
  else
    cat "$TMP/cc.log" >&2; bad "example $name does not build against the installed tree"
  fi
done
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# ---- example configurations ----
ex=$ROOT/usr/share/doc/tongban/examples
for d in hub node; do
  if "$ROOT/usr/bin/tongban-$d" --check-config -c "$ex/$d.yaml" >/dev/null; then
    ok "examples/$d.yaml passes tongban-$d --check-config"
  else
    bad "examples/$d.yaml fails tongban-$d --check-config"
  fi
done

# ---- systemd units ----
units=$ROOT/usr/lib/systemd/system
for u in tongban-hub.service tongban-node@.service; do
  f=$units/$u
  for d in User=tongban Group=tongban ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
           ProtectKernelTunables=yes ProtectKernelModules=yes ProtectControlGroups=yes RestrictNamespaces=yes \
           LockPersonality=yes MemoryDenyWriteExecute=yes SystemCallArchitectures=native CapabilityBoundingSet= \
           Restart=on-failure 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'RuntimeDirectory=tongban/'; do
    grep -q "^$d" "$f" || bad "$u: no line starting with '$d'"
  done
  grep -q '^ExecStartPre=/usr/bin/tongban-[a-z]* --check-config -c /etc/tongban/' "$f" || bad "$u: ExecStartPre --check-config"
  [ "$(stat -c %a "$f")" = 644 ] || bad "$u: mode $(stat -c %a "$f")"
done
# shellcheck disable=SC2016  # $MAINPID is the unit's, not ours
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$units/tongban-hub.service" || bad "hub unit: ExecReload"
grep -q '^StateDirectory=tongban$' "$units/tongban-hub.service" || bad "hub unit: StateDirectory=tongban"
grep -q '^ExecStart=/usr/bin/tongban-node -c /etc/tongban/node-%i.yaml$' "$units/tongban-node@.service" || bad "node unit: ExecStart"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$units/tongban-node@.service" || bad "node unit: ExecReload"
ok "unit directives"

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify checks that ExecStart's binary exists: point the copies at the DESTDIR.
  mkdir -p "$TMP/units"
  for u in tongban-hub.service tongban-node@.service; do
    sed "s#/usr/bin/#$ROOT/usr/bin/#g" "$units/$u" >"$TMP/units/$u"
  done
  ln -s tongban-node@.service "$TMP/units/tongban-node@110000.service"
  if (cd "$TMP/units" && systemd-analyze verify ./tongban-hub.service ./tongban-node@110000.service) >"$TMP/verify.log" 2>&1 \
     && [ ! -s "$TMP/verify.log" ]; then
    ok "systemd-analyze verify: no complaint"
  else
    cat "$TMP/verify.log" >&2; bad "systemd-analyze verify"
  fi
  for u in tongban-hub.service tongban-node@110000.service; do
    # --threshold is in tenths: 20 = exposure 2.0 ("OK" is below 4.0)
    if (cd "$TMP/units" && systemd-analyze security --offline=yes --threshold=20 "./$u") >"$TMP/sec.log" 2>&1; then
      ok "systemd-analyze security $u: $(grep -o 'exposure level.*' "$TMP/sec.log")"
    else
      tail -n 25 "$TMP/sec.log" >&2; bad "systemd-analyze security $u: exposure above 2.0"
    fi
  done
else
  echo "skip: systemd-analyze not installed (package systemd)"
fi

# ---- sysusers.d: the user the units run as ----
if command -v systemd-sysusers >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  mkdir -p "$TMP/sysroot/etc"
  systemd-sysusers --root="$TMP/sysroot" "$ROOT/usr/lib/sysusers.d/tongban.conf" >/dev/null 2>&1 || bad "systemd-sysusers"
  if grep -q '^tongban:x:[0-9]*:[0-9]*:[^:]*:/var/lib/tongban:/usr/sbin/nologin$' "$TMP/sysroot/etc/passwd"; then
    ok "sysusers.d/tongban.conf creates the system user tongban"
  else
    bad "sysusers.d: $(cat "$TMP/sysroot/etc/passwd")"
  fi
else
  echo "skip: systemd-sysusers not installed or not root"
fi

if [ "$fails" -ne 0 ]; then echo "install.sh: $fails check(s) failed" >&2; exit 1; fi
echo "install.sh: all checks passed"
