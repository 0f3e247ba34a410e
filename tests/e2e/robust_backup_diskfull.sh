#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 180
#
# `slidescan backup` onto a disk too small for the data, through the real
# client: DEST is a small tmpfs in a private mount namespace of this test
# (it vanishes with the test).  With room for part of the data the backup
# fails (exit 1) saying it is incomplete; `backup --verify` of what it
# kept fails too, naming what is missing, and `restore` from it refuses
# and writes nothing.  With almost no room the error names DEST's
# catalogue.db (not a temporary file) and "No space left on device",
# copy failures are not reported as files that changed, and no
# temporary file is left behind.
. "$(dirname "$0")/../support/private_ns.sh"
. "$(dirname "$0")/../support/daemon_env.sh"

q() { sqlite3 "$DB" "$1" 2>/dev/null; }
DISK=$T/disk
BK=$DISK/backup
temp_files() {
    find "$DISK" -name '*.tmp*' -o -name '*-wal' -o -name '*-shm' \
        -o -name '*-journal' | wc -l
}

dtest_conf "[simulator]
seed = 3
sensor_w = 640
sensor_h = 480
[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide A --stain HE \
    --image phantom:HE:seed=11:w_mm=1.2:h_mm=0.9 >/dev/null
slidescan scan --slide B --stain HE \
    --image phantom:HE:seed=12:w_mm=1.2:h_mm=0.9 >/dev/null
check "two slides are scanned" wait_until 120 \
    '[ "$(q "SELECT count(*) FROM scans WHERE state = '"'done'"'")" = 2 ]'
dtest_stop
# Room for the catalogue and one slide image, not both.
a=$(stat -c %s "$DATA/$(q "SELECT wsi_path FROM scans WHERE id = 1")")
c=$(stat -c %s "$DB")
kb=$(( (a + c + c) / 1024 + 64 ))
echo "# slide image $a bytes, catalogue $c bytes, disk $kb KiB"

mkdir -p "$DISK"
mount -t tmpfs -o size=${kb}k,mode=0755 tmpfs "$DISK" ||
    { nok "a tmpfs for the backup"; dtest_end; exit 1; }

# --- room for part of the data ------------------------------------------
out=$(slidescan backup "$BK" --config "$CONF" 2>&1)
rc=$?
echo "# rc=$rc $out"
check "a partial backup fails (exit 1)" test $rc = 1
check "it says the backup is incomplete and why" \
    grep -q "is incomplete: .*No space left on device" <<<"$out"
check "no copy failure is taken for a changed file" \
    eval '! grep -q "files changed during the backup" <<<"$out"'
check "no temporary file is left in the backup" test "$(temp_files)" = 0
out=$(slidescan backup "$BK" --verify 2>&1)
rc=$?
echo "# rc=$rc $out"
check "backup --verify of the partial backup fails (exit 1)" test $rc = 1
check "--verify names a slide image missing from it" \
    grep -q "is incomplete: [1-9][0-9]* of the [0-9]* entries its \
catalogue names are missing: slides/.* (wsi) is not in the backup" \
    <<<"$out"
out=$(slidescan restore "$BK" --data-dir "$T/new" 2>&1)
rc=$?
echo "# rc=$rc $out"
check "restore from the partial backup fails (exit 1)" test $rc = 1
check "restore says it is not restoring an incomplete backup" \
    grep -q "not restoring: backup .* is incomplete" <<<"$out"
check "restore wrote nothing" test ! -e "$T/new"

# --- almost no room -----------------------------------------------------
rm -rf "$BK"
# Less room than the catalogue needs.
free=$(df -k --output=avail "$DISK" | tail -1)
fallocate -l $(( (free - 16) * 1024 )) "$DISK/filler" 2>/dev/null ||
    dd if=/dev/zero of="$DISK/filler" bs=1k count=$((free - 16)) 2>/dev/null
echo "# free: $(df -k --output=avail "$DISK" | tail -1) KiB"
out=$(slidescan backup "$BK" --config "$CONF" 2>&1)
rc=$?
echo "# rc=$rc $out"
check "a backup onto a full disk fails (exit 1)" test $rc = 1
check "the error names DEST's catalogue.db and the cause" \
    grep -q "$BK/catalogue.db: .*No space left on device" <<<"$out"
check "the error names no temporary file" \
    eval '! grep -q "catalogue.db.tmp" <<<"$out"'
check "no copy failure is taken for a changed file" \
    eval '! grep -q "files changed during the backup" <<<"$out"'
check "nothing is left of the failed backup" test ! -e "$BK"
check "no temporary file is left on the disk" test "$(temp_files)" = 0
umount "$DISK"
dtest_end
