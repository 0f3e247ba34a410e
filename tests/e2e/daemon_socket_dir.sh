#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# The directories slidescand creates for its socket admit whoever the
# socket admits: with `group = users` and socket_mode 0660, a socket at
# DIR/new/sub/s.sock gets new/ and sub/ with mode 0750 and group users, so
# a member of the group reaches the socket through them while others are
# stopped at the directory.  Directories that already exist are left as
# they are.
. "$(dirname "$0")/../support/daemon_env.sh"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    skip "needs root and setpriv to run as another uid"
    dtest_end
    exit 0
fi
GROUP=users
gid=$(getent group "$GROUP" | cut -d: -f3)
dtest_public_socket
SOCK=$SOCKDIR/new/sub/s.sock
export SLIDESCAN_SOCKET=$SOCK
dtest_conf "[daemon]
socket = $SOCK
group = $GROUP
socket_mode = 0660"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
for d in "$SOCKDIR/new" "$SOCKDIR/new/sub"; do
    check "${d#"$SOCKDIR"/} was made with mode 0750 and group $GROUP" \
        test "$(stat -c '%a %G' "$d")" = "750 $GROUP"
done
check "the directory that existed keeps its mode (755)" \
    test "$(stat -c %a "$SOCKDIR")" = 755
out=$(setpriv --reuid=65534 --regid=65534 --groups="$gid" \
    "$BUILD/bin/slidescan" ping 2>&1)
check "a member of the group reaches the socket through them" \
    grep -q "you are uid 65534" <<<"$out"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$BUILD/bin/slidescan" ping 2>&1)
rc=$?
check "a caller outside the group is stopped (exit $rc)" test $rc = 4
check "slidescand stops on SIGTERM" dtest_stop
rm -rf "$SOCKDIR"
dtest_end
