#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# `slidescan backup DEST` and `slidescan restore SRC` refuse a directory
# that overlaps the live data of a running slidescand: the data directory
# itself, a directory inside it, one that contains it, the catalogue's
# directory (kept outside the data directory here), and each of these
# reached through a symbolic link.  Every refusal exits 4 with one line
# naming both paths, and leaves the live catalogue and the data directory
# as they were: the daemon keeps answering and scanning.
. "$(dirname "$0")/../support/daemon_env.sh"

CATDIR=$T/cat
mkdir -p "$CATDIR" "$DATA"
DB=$CATDIR/catalogue.db
# No analysis: the data directory stays as it is while the refusals run.
dtest_conf "[daemon]
catalogue = $DB
[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
# Small sections (9 tiles, not the 53 of the phantom's default 4 x 3 mm):
# the refusals need a data directory with a finished scan in it, and two
# full-size scans alone took most of this test's time limit on 2 cores.
# These seeds put tissue in the section.
SECTION=w_mm=1.2:h_mm=0.9
slidescan scan --slide P1 --stain HE --image "phantom:HE:seed=11:$SECTION" \
    >/dev/null
wait_until 60 '[ "$(scan_state 1)" = done ]'
check "the first scan is done" test "$(scan_state 1)" = done
ino=$(stat -c %i "$DB")
# The listing once it holds still (the scan's tiles are removed just
# after it is recorded done).
listing() { find "$DATA" | sort; }
listing >"$T/before.list"
for _ in $(seq 50); do
    sleep 0.3
    listing | cmp -s - "$T/before.list" && break
    listing >"$T/before.list"
done
before=$(cd "$DATA" && find . | sort | md5sum)
ln -s "$DATA" "$T/link-to-data"
ln -s "$CATDIR" "$T/link-to-cat"

# refused WHAT DIR REASON: backup into DIR is refused with exit 4 and a
# message naming DIR and the data directory (or the catalogue).
refused() {
    local what=$1 dir=$2 why=$3 out rc
    out=$(slidescan "$what" "$dir" --config "$CONF" 2>&1 >/dev/null)
    rc=$?
    echo "# $out"
    local verb="back up into"
    [ "$what" = restore ] && verb="restore from"
    case $out in
    "slidescan $what: refusing to $verb $dir"*": it $why "*) ;;
    *) nok "$what $dir: message '$out'"; return ;;
    esac
    check "$what $dir is refused (exit $rc, it $why)" test "$rc" = 4
}
refused backup "$DATA" "is the data directory"
refused backup "$DATA/backup" "lies inside the data directory"
refused backup "$DATA/tiles/../new/deeper" "lies inside the data directory"
refused backup "$T" "contains the data directory"
refused backup "$T/link-to-data" "is the data directory"
refused backup "$T/link-to-data/x" "lies inside the data directory"
refused backup "$CATDIR" "is the directory of the live catalogue"
refused backup "$T/link-to-cat" "is the directory of the live catalogue"
refused restore "$DATA" "is the data directory"
refused restore "$DATA/backup" "lies inside the data directory"
refused restore "$CATDIR" "is the directory of the live catalogue"
out=$(slidescan backup "$DATA" --config "$CONF" 2>&1)
check "the message names the data directory" \
    eval '[[ $out == *"it is the data directory $DATA that holds"* ]]'

check "the live catalogue is the same file (inode $ino)" \
    test "$(stat -c %i "$DB")" = "$ino"
check "no manifest or catalogue copy was written into the data directory" \
    test ! -e "$DATA/MANIFEST.json" -a ! -e "$DATA/catalogue.db" \
    -a ! -e "$DATA/files" -a ! -e "$DATA/backup" -a ! -e "$DATA/new"
find "$DATA" | sort | diff "$T/before.list" - | sed 's/^/# /'
check "the data directory holds the same files" \
    test "$(cd "$DATA" && find . | sort | md5sum)" = "$before"
check "the daemon has no deleted catalogue open" \
    eval '! ls -l /proc/$DPID/fd 2>/dev/null | grep -q "(deleted)"'

# A backup outside the data directory still works, and the daemon scans.
out=$(slidescan backup "$T/bk" --config "$CONF" 2>&1)
check "a backup outside the data directory succeeds" \
    test $? = 0 -a -f "$T/bk/MANIFEST.json"
# A relative destination that does not exist yet, one name deep (its
# parent is the working directory).
out=$(cd "$T" && slidescan backup bk-rel --config "$CONF" 2>&1)
rc=$?
check "a backup to a relative new directory succeeds (exit $rc)" \
    test $rc = 0 -a -f "$T/bk-rel/MANIFEST.json"
slidescan scan --slide P2 --stain HE --image "phantom:HE:seed=12:$SECTION" \
    >/dev/null
check "the daemon finishes the next scan" \
    wait_until 60 '[ "$(scan_state 2)" = done ]'
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
