#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 180
#
# A full disk under a running scan, through the real daemon: the data
# directory is a 48 MiB tmpfs in a private mount namespace of this test
# (it vanishes with the test, whatever happens).  The disk is filled while
# the scan captures: the scan pauses with "disk full" (a write failed) or
# "not enough free space" (the check before a tile) as its reason,
# nothing half-written is left and what was stored still verifies; once
# the filler is deleted the scan resumes by itself and completes.  Then
# the disk is filled while the next slide is assembled: it waits in
# assembly; a reload that raises [storage] reserve_mb keeps it waiting
# although the filler is gone, one that lowers it again lets it complete.
# A slide queued on a disk that cannot hold it waits before its first
# tile.
. "$(dirname "$0")/../support/private_ns.sh"
. "$(dirname "$0")/../support/daemon_env.sh"

q() { sqlite3 "$DB" "$1" 2>/dev/null; }
state() { q "SELECT state FROM scans WHERE id = $1"; }
reason() { q "SELECT reason FROM scans WHERE id = $1"; }
FILLER=$DATA/filler

# Fills the data disk, leaving $1 KiB free.
fill() {
    local avail
    avail=$(df -k --output=avail "$DATA" | tail -1)
    if [ "$avail" -gt "$1" ]; then
        fallocate -l "$(( (avail - $1) * 1024 ))" "$FILLER.$2" 2>/dev/null ||
            dd if=/dev/zero of="$FILLER.$2" bs=1k \
                count=$((avail - $1)) 2>/dev/null
    fi
}

FULL="^(disk full on|not enough free space on) $DATA"
# The configuration with [storage] reserve_mb = $1.
conf() {
    dtest_conf "[simulator]
seed = 3
sensor_w = 640
sensor_h = 480
[scan]
keep_tiles = yes
[storage]
reserve_mb = $1
recheck_s = 0.5
[analysis]
auto = no"
}

temp_files() { find "$DATA" -name '*.tmp*' -o -name '*.partial' | wc -l; }

mkdir -p "$DATA"
mount -t tmpfs -o size=48m,mode=0755 tmpfs "$DATA" ||
    { nok "a tmpfs for the data directory"; dtest_end; exit 1; }
conf 1
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

# --- during capture -----------------------------------------------------
slidescan scan --slide A --stain HE \
    --image phantom:HE:seed=11:w_mm=1.2:h_mm=0.9 >/dev/null
wait_until 60 '[ "$(q "SELECT tiles_done FROM scans WHERE id = 1")" -ge 3 ]'
# Held between two tiles while the disk fills, so that the fill lands in
# the capture however fast the machine runs the remaining tiles.
slidescan pause 1 >/dev/null
wait_until 30 '[ "$(state 1)" = paused ]'
fill 512 a
fill 64 a2
slidescan resume 1 >/dev/null
check "capture: the scan pauses when the disk fills" \
    wait_until 30 '[ "$(state 1)" = paused ] &&
                   grep -qE "$FULL" <<<"$(reason 1)"'
r=$(reason 1)
echo "# reason: $r"
check "capture: the reason says the disk is short" grep -qE "$FULL" <<<"$r"
check "capture: the reason says it resumes by itself" \
    grep -q "resumes by itself when space is freed" <<<"$r"
check "capture: the reason says what the rest of the scan needs" \
    grep -qE "\(0\.[01] MiB free; the rest of the scan needs [0-9.]+ \
(MiB|GiB) plus the 1\.0 MiB reserve, \[storage\] reserve_mb\)" <<<"$r"
check "capture: the catalogue passes integrity_check" \
    test "$(q "PRAGMA integrity_check")" = ok
check "capture: nothing half-written is left" test "$(temp_files)" = 0
bad=0
while IFS='|' read -r f sum; do
    [ "$(sha256sum "$DATA/$f" | cut -d' ' -f1)" = "$sum" ] || bad=$((bad + 1))
done < <(q "SELECT file, checksum FROM tiles WHERE state = 'captured'")
check "capture: every stored tile verifies" test $bad = 0
done_before=$(q "SELECT tiles_done FROM scans WHERE id = 1")
sleep 1.5
check "capture: it stays paused while the disk is full" \
    test "$(state 1)" = paused -a \
    "$(q "SELECT tiles_done FROM scans WHERE id = 1")" = "$done_before"
# Half a MiB freed is still short of the 1 MiB reserve: the scan stays
# paused, and its reason shows the space free now.
rm -f "$FILLER.a2"
check "capture: the reason follows the space freed (0.4-0.5 MiB free)" \
    wait_until 10 'grep -qE "\(0\.[45] MiB free;" <<<"$(reason 1)"'
echo "# reason: $(reason 1)"
check "capture: still paused, no tile stored" test "$(state 1)" = paused -a \
    "$(q "SELECT tiles_done FROM scans WHERE id = 1")" = "$done_before"
rm -f "$FILLER".*
check "capture: with space freed the scan resumes and completes" \
    wait_until 60 '[ "$(state 1)" = done ]'
check "capture: every tile was captured once" \
    test "$(q "SELECT tiles_total = tiles_done FROM scans WHERE id = 1")" = 1

# --- during assembly ----------------------------------------------------
slidescan scan --slide B --stain HE \
    --image phantom:HE:seed=12:w_mm=1.2:h_mm=0.9 >/dev/null
wait_until 60 '[ "$(state 2)" = assembling ]'
fill 64 b
check "assembly: the slide waits in assembly while the disk is full" \
    wait_until 30 'grep -qE "$FULL" <<<"$(reason 2)"'
check "assembly: it is not failed" test "$(state 2)" = assembling
check "assembly: no partial slide image is left" \
    wait_until 10 '[ "$(temp_files)" = 0 ]'
conf 100000000
slidescan reload >/dev/null
rm -f "$FILLER".*
check "assembly: a reload raising the reserve applies to the wait" \
    wait_until 10 'grep -q "plus the 97656.25 GiB reserve" <<<"$(reason 2)"'
sleep 1.5
check "assembly: with space freed but the new reserve, it still waits" \
    test "$(state 2)" = assembling
conf 1
slidescan reload >/dev/null
check "assembly: with the reserve lowered by reload the image is written" \
    wait_until 60 '[ "$(state 2)" = done ]'
wsi=$DATA/$(q "SELECT wsi_path FROM scans WHERE id = 2")
sum=$(sha256sum "$wsi" 2>/dev/null | cut -d' ' -f1)
check "assembly: the slide image matches its checksum" \
    test -n "$sum" -a "$sum" = "$(q "SELECT checksum FROM scans
                                    WHERE id = 2")"

# --- before the first tile ----------------------------------------------
fill 2048 c
slidescan scan --slide C --stain HE \
    --image phantom:HE:seed=13:w_mm=1.2:h_mm=0.9 >/dev/null
check "before: a slide the disk cannot hold waits before its first tile" \
    wait_until 60 '[ "$(state 3)" = paused ] &&
                   grep -qE "$FULL" <<<"$(reason 3)"'
check "before: no tile was stored" \
    test "$(q "SELECT tiles_done FROM scans WHERE id = 3")" = 0
rm -f "$FILLER".*
check "before: with space freed it completes" \
    wait_until 60 '[ "$(state 3)" = done ]'

# --- a really full disk -------------------------------------------------
# With no reserve the disk can fill to its last byte while a scan waits
# for space on the microscope.  A cancel must still take effect: the
# catalogue write that records it uses the ballast the catalogue keeps
# (catalogue.db-ballast).  A fresh start gives SQLite a fresh write-ahead
# log, which must grow for every commit.
dtest_stop
conf 0
dtest_start || { nok "slidescand starts again"; dtest_end; exit 1; }
check "full: the catalogue keeps a 1 MiB ballast" \
    wait_until 10 '[ "$(stat -c %s "$DB-ballast" 2>/dev/null)" = 1048576 ]'
fill 256 d
slidescan scan --slide D --stain HE \
    --image phantom:HE:seed=14:w_mm=1.2:h_mm=0.9 >/dev/null
check "full: the scan waits for space on the microscope" \
    wait_until 60 '[ "$(state 4)" = paused ] &&
                   grep -qE "$FULL" <<<"$(reason 4)"'
fill 0 d2
echo "# free: $(df -k --output=avail "$DATA" | tail -1) KiB"
out=$(slidescan cancel 4 2>&1)
rc=$?
echo "# cancel: $out"
check "full: cancel on a full disk succeeds (exit $rc)" test $rc = 0
check "full: the scan is cancelled" \
    wait_until 10 '[ "$(state 4)" = cancelled ]'
check "full: the catalogue passes integrity_check" \
    test "$(q "PRAGMA integrity_check")" = ok
rm -f "$FILLER".*
slidescan scan --slide E --stain HE \
    --image phantom:HE:seed=15:w_mm=1.2:h_mm=0.9 >/dev/null
check "full: with space freed the next scan runs and completes" \
    wait_until 60 '[ "$(state 5)" = done ]'
check "full: the ballast is made again once there is room" \
    wait_until 15 '[ "$(stat -c %s "$DB-ballast" 2>/dev/null)" = 1048576 ]'
dtest_stop
umount "$DATA"
dtest_end
