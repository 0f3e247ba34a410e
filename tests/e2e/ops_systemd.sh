#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# The service as installed: `make install` into a DESTDIR under this
# test's directory (never the real /etc or /usr), then offline checks of
# what landed there:
#   - files, modes, ExecStart matching PREFIX (two prefixes), an edited
#     configuration surviving a second install;
#   - `systemd-analyze verify` of the installed unit prints nothing (bad
#     keys are only warnings, so any output fails), and a broken copy does
#     print something (the check can fail);
#   - the exposure score of `systemd-analyze security --offline=true`,
#     printed and held to at most 3.0;
#   - systemd-sysusers and systemd-tmpfiles applied to a private root (a
#     copy of this machine's passwd and group): user and group slidescan,
#     the data and socket directories with owner and mode; the machine's
#     own /etc/passwd is compared before and after;
#   - the shipped configuration agrees with the unit (socket inside
#     RuntimeDirectory, data_dir = StateDirectory, group = Group) and
#     passes `slidescand --check`;
#   - MemoryDenyWriteExecute= cannot break loading: no program or library
#     slidescand and the worker load (libgphoto2's camera and port
#     drivers included, which it loads at run time) asks for an
#     executable stack or text relocations.
. "$(dirname "$0")/../support/daemon_env.sh"

DEST=$T/dest
VROOT=$T/vroot
UNIT_REL=usr/local/lib/systemd/system/slidescand.service
UNIT=$DEST/$UNIT_REL

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles readelf; do
    if ! command -v $tool >/dev/null; then
        skip "$tool is not installed (package systemd / binutils)"
        dtest_end
        exit 0
    fi
done

out=$(DESTDIR=$DEST BUILD=$BUILD "$ROOT/tools/install" 2>&1)
check "install into DESTDIR succeeds" test $? = 0
missing=
for f in usr/local/bin/slidescand usr/local/bin/slidescan \
    usr/local/bin/slidescan-worker \
    usr/local/share/slidescan/models/default.safetensors \
    usr/local/share/doc/slidescan/service.md \
    etc/slidescan/slidescan.conf etc/udev/rules.d/60-slidescan-usb.rules \
    $UNIT_REL usr/local/lib/sysusers.d/slidescan.conf \
    usr/local/lib/tmpfiles.d/slidescan.conf; do
    [ -f "$DEST/$f" ] || missing="$missing $f"
done
check "every file is installed (missing:${missing:- none})" \
    test -z "$missing"
check "programs are 0755, configuration 0644" test \
    "$(stat -c %a "$DEST/usr/local/bin/slidescand")-$(stat -c %a \
    "$DEST/etc/slidescan/slidescan.conf")" = 755-644
exec_start() {
    sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$1"
}
check "ExecStart is PREFIX/bin/slidescand and is installed there" \
    test "$(exec_start "$UNIT")" = /usr/local/bin/slidescand -a \
    -x "$DEST/$(exec_start "$UNIT")"
PREFIX=/usr DESTDIR=$T/dest-usr BUILD=$BUILD "$ROOT/tools/install" \
    >/dev/null 2>&1
u2=$T/dest-usr/usr/lib/systemd/system/slidescand.service
check "PREFIX=/usr: unit in /usr/lib/systemd/system, ExecStart /usr/bin" \
    test -f "$u2" -a "$(exec_start "$u2")" = /usr/bin/slidescand -a \
    -x "$T/dest-usr/usr/bin/slidescand"
check "no /usr/local left in the PREFIX=/usr unit" \
    test "$(grep -c '/usr/local/' "$u2")" = 0

echo "# edited by the site" >>"$DEST/etc/slidescan/slidescan.conf"
before=$(sha256sum <"$DEST/etc/slidescan/slidescan.conf")
DESTDIR=$DEST BUILD=$BUILD "$ROOT/tools/install" >/dev/null 2>&1
check "a second install keeps the edited configuration" \
    test "$before" = "$(sha256sum <"$DEST/etc/slidescan/slidescan.conf")"
check "... and puts the shipped one beside it as .dist" \
    cmp -s "$ROOT/etc/slidescan.conf" \
    "$DEST/etc/slidescan/slidescan.conf.dist"
out=$(PREFIX='/opt/a b' DESTDIR=$T/x BUILD=$BUILD "$ROOT/tools/install" \
    2>&1)
check "a PREFIX with a space is refused with a message naming it" \
    grep -q "PREFIX '/opt/a b'" <<<"$out"

# systemd-analyze --root needs the machine's own units (sysinit.target
# and so on) and `kill` (ExecReload) beside the installed tree.
cp -a "$DEST" "$VROOT"
mkdir -p "$VROOT/usr/lib/systemd" "$VROOT/usr/bin"
cp -a /usr/lib/systemd/system "$VROOT/usr/lib/systemd/"
cp "$(type -P kill)" "$VROOT/usr/bin/kill"
out=$(systemd-analyze verify --root="$VROOT" slidescand.service 2>&1)
rc=$?
[ -n "$out" ] && sed 's/^/#   verify: /' <<<"$out"
check "systemd-analyze verify: exit 0 and no output at all" \
    test $rc = 0 -a -z "$out"
mkdir -p "$VROOT/etc/systemd/system"
sed 's/^WatchdogSec=/WatchdogSecs=/' "$UNIT" \
    >"$VROOT/etc/systemd/system/slidescand-broken.service"
out=$(systemd-analyze verify --root="$VROOT" slidescand-broken.service 2>&1)
check "verify does complain about a misspelt key (the check can fail)" \
    grep -q "WatchdogSecs" <<<"$out"
rm -f "$VROOT/etc/systemd/system/slidescand-broken.service"

sec=$(systemd-analyze security --offline=true --root="$VROOT" \
    slidescand.service 2>&1)
score=$(sed -n 's/.*Overall exposure level for slidescand.service: //p' \
    <<<"$sec" | grep -oE '^[0-9.]+ [A-Z]+')
echo "# systemd-analyze security --offline=true: exposure ${score:-?}"
grep '✗' <<<"$sec" | sed 's/  */ /g; s/^/#   /'
check "exposure score ${score:-unknown} is at most 3.0" \
    awk -v s="${score%% *}" 'BEGIN { exit !(s != "" && s + 0 <= 3.0) }'

# sysusers and tmpfiles in a private root seeded with this machine's
# users, so the ids chosen are the ones an install here would get.
SROOT=$T/sroot
mkdir -p "$SROOT/etc" "$SROOT/usr/local/lib"
cp /etc/passwd /etc/group "$SROOT/etc/"
cp -a "$DEST/usr/local/lib/sysusers.d" "$DEST/usr/local/lib/tmpfiles.d" \
    "$SROOT/usr/local/lib/"
host_passwd=$(sha256sum </etc/passwd)
host_group=$(sha256sum </etc/group)
out=$(systemd-sysusers --root="$SROOT" 2>&1)
check "systemd-sysusers applies slidescan.conf" test $? = 0
pw=$(grep '^slidescan:' "$SROOT/etc/passwd")
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
check "user slidescan: system uid ($uid), home /var/lib/slidescan, nologin" \
    test -n "$pw" -a "${uid:-9999}" -lt 1000 -a \
    "$home" = /var/lib/slidescan -a "${shell##*/}" = nologin
check "group slidescan is the user's primary group" \
    test "$(grep '^slidescan:' "$SROOT/etc/group" | cut -d: -f3)" = \
    "$gid"
out=$(systemd-tmpfiles --root="$SROOT" --create 2>&1)
check "systemd-tmpfiles --create succeeds" test $? = 0
for d in var/lib/slidescan run/slidescan; do
    check "/$d is slidescan:slidescan 0750" test \
        "$(stat -c '%u:%g %a' "$SROOT/$d" 2>/dev/null)" = "$uid:$gid 750"
done
check "this machine's /etc/passwd and /etc/group are untouched" \
    test "$(sha256sum </etc/passwd) $(sha256sum </etc/group)" = \
    "$host_passwd $host_group"

# The shipped configuration and the unit describe the same service.
ini() {     # ini SECTION KEY: the value in the installed configuration
    awk -v s="[$1]" -v k="$2" '
        /^\[/ { in_s = ($0 == s) }
        in_s && $0 ~ "^" k " *=" { sub("^[^=]*= *", ""); print; exit }' \
        "$DEST/etc/slidescan/slidescan.conf.dist"
}
unit_val() { sed -n "s/^$1=//p" "$UNIT" | head -1; }
check "socket ($(ini daemon socket)) lies in RuntimeDirectory" test \
    "$(dirname "$(ini daemon socket)")" = "/run/$(unit_val RuntimeDirectory)"
check "data_dir ($(ini daemon data_dir)) is the StateDirectory" test \
    "$(ini daemon data_dir)" = "/var/lib/$(unit_val StateDirectory)"
check "the socket's group is the service's group" \
    test "$(ini daemon group)" = "$(unit_val Group)"
# The paths and group it wants exist only on an installed machine (the
# unit's RuntimeDirectory and StateDirectory, sysusers' group): moved into
# this test's directory and group, the rest must pass as installed.
sed -e "s|^socket = .*|socket = $T/inst/s.sock|" \
    -e "s|^data_dir = .*|data_dir = $T/inst/data|" \
    -e "s|^group = .*|group = $(id -gn)|" \
    "$DEST/etc/slidescan/slidescan.conf.dist" >"$T/inst.conf"
out=$("$DEST/usr/local/bin/slidescand" --check -c "$T/inst.conf" 2>&1)
check "slidescand --check accepts the installed configuration ($out)" \
    test $? = 0

# MemoryDenyWriteExecute=: the dynamic loader needs executable memory
# that was writable only for an executable stack or text relocations.
objs=$( (ldd "$DEST/usr/local/bin/slidescand";
         ldd "$DEST/usr/local/bin/slidescan-worker") |
       sed -n 's/.*=> \(\/[^ ]*\).*/\1/p' | sort -u)
gp=$(pkg-config --variable=driverdir libgphoto2 2>/dev/null)
gpp=$(pkg-config --variable=driverdir libgphoto2_port 2>/dev/null)
plugins=$(find ${gp:+"$gp"} ${gpp:+"$gpp"} -name '*.so' 2>/dev/null)
bad=
nobj=0
for o in "$DEST/usr/local/bin/slidescand" \
    "$DEST/usr/local/bin/slidescan-worker" $objs $plugins; do
    nobj=$((nobj + 1))
    if readelf -lW "$o" 2>/dev/null | grep -q 'GNU_STACK.* RWE ' ||
        readelf -dW "$o" 2>/dev/null | grep -q TEXTREL; then
        bad="$bad $o"
    fi
done
check "none of $nobj objects loaded needs W+X memory (bad:${bad:- none})" \
    test -z "$bad" -a "$nobj" -gt 20

dtest_end
