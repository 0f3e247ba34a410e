#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# Backup and restore through the real client while slidescand scans:
# `slidescan backup` taken with one slide finished (image and analysis)
# and the next still capturing; `--verify` of the copy; `slidescan restore`
# into an empty data directory gives a working catalogue whose checksums
# all verify, on which a new daemon finishes the interrupted scan; a
# second backup copies only what is new; restore refuses a catalogue in
# use, and an existing one without --force.  A copy damaged or lost in
# the backup is named by --verify (report on stdout, exit 1) and repaired
# by the next backup run (read in full, or with --quick when its size or
# time changed), after which the backup verifies and restores.
. "$(dirname "$0")/../support/daemon_env.sh"

IMAGE=phantom:HE:seed=11:w_mm=1.2:h_mm=0.9
# time_scale: B's capture (about 60 s of device time) sleeps a quarter of
# it, so that it is still capturing when A's analysis is done under load.
EXTRA="[simulator]
seed = 3
time_scale = 0.25
sensor_w = 640
sensor_h = 480
[storage]
reserve_mb = 1
[analysis]
auto = yes"
BK=$T/backup
q() { sqlite3 "$DB" "$1" 2>/dev/null; }

dtest_conf "$EXTRA"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide A --stain HE --image "$IMAGE" >/dev/null
slidescan scan --slide B --stain HE \
    --image phantom:HE:seed=12:w_mm=3:h_mm=3 >/dev/null
check "slide A is done and analysed while B is capturing" wait_until 120 \
    '[ "$(q "SELECT a.state FROM analyses a WHERE a.scan = 1")" = done ] &&
     [ "$(q "SELECT state FROM scans WHERE id = 2")" = capturing ] &&
     [ "$(q "SELECT tiles_done FROM scans WHERE id = 2")" -ge 2 ]'

out=$(slidescan backup "$BK" --config "$CONF" --json)
rc=$?
echo "# $out"
check "backup during the scan succeeds (exit 0)" test $rc = 0
files=$(python3 -c "import json,sys; r = json.loads(sys.argv[1]);
print(r['files'], r['verified'], r['problems'])" "$out" 2>/dev/null)
set -- $files
check "backup copied and verified every file it names ($1 files)" \
    test "${1:-0}" -ge 5 -a "${2:-x}" = "${1:-y}" -a "${3:-1}" = 0
check "the scan went on during the backup" \
    test "$(q "SELECT state FROM scans WHERE id = 2")" != failed
check "backup --verify passes" slidescan backup "$BK" --verify
cp -a "$BK" "$T/backup2"
out=$(slidescan backup "$T/backup2" --config "$CONF" --json)
copied=$(python3 -c "import json,sys; r = json.loads(sys.argv[1]);
print(r['copied'], r['kept'])" "$out" 2>/dev/null)
set -- $copied
check "a second backup keeps what is there ($2 kept, $1 copied)" \
    test "${2:-0}" -ge 5

# --- restore on another data directory ------------------------------------
R=$T/restored
RSOCK=$T/r.sock
RCONF=$T/restored.conf
sed -e "s#^socket = .*#socket = $RSOCK#" -e "s#^data_dir = .*#data_dir = $R#" \
    "$CONF" >"$RCONF"
out=$(slidescan restore "$BK" --config "$RCONF" 2>&1)
rc=$?
echo "# $out"
check "restore into an empty data directory succeeds (exit 0)" test $rc = 0
check "restore verified every catalogue entry (0 problems)" \
    grep -Eq "^restored $BK into $R/catalogue.db: [0-9]+ files copied, \
each matching the backup's checksum; ([0-9]+) of \1 catalogue entries \
verified \(slide images and tiles by checksum, analysis and calibration \
directories present\), 0 problems$" <<<"$out"
RDB=$R/catalogue.db
check "the restored catalogue passes integrity_check" \
    test "$(sqlite3 "$RDB" "PRAGMA integrity_check")" = ok
wsi=$(sqlite3 "$RDB" "SELECT wsi_path FROM scans WHERE id = 1")
check "the restored slide image matches its catalogue checksum" \
    test "$(sha256sum "$R/$wsi" | cut -d' ' -f1)" = \
    "$(sqlite3 "$RDB" "SELECT checksum FROM scans WHERE id = 1")"
check "the restored slide image passes slidescan verify" \
    slidescan verify "$R/$wsi" --mpp 0.5
bad=0
while IFS='|' read -r f sum; do
    [ "$(sha256sum "$R/$f" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] ||
        bad=$((bad + 1))
done < <(sqlite3 "$RDB" "SELECT file, checksum FROM tiles
                         WHERE scan = 2 AND state = 'captured'")
check "scan B is restored unfinished, as the backup saw it" \
    test "$(sqlite3 "$RDB" "SELECT state FROM scans WHERE id = 2")" = \
    capturing
check "every restored tile of the unfinished scan matches its checksum" \
    test $bad = 0
dtest_stop

# A daemon on the restored data finishes the interrupted scan.
RLOG=$T/restored.log
slidescand -c "$RCONF" >>"$RLOG" 2>&1 &
RPID=$!
check "a daemon on the restored data finishes scan B" wait_until 120 \
    '[ "$(sqlite3 "$RDB" "SELECT state FROM scans WHERE id = 2")" = done ]'
out=$(SLIDESCAN_SOCKET=$RSOCK slidescan restore "$BK" --config "$RCONF" \
      --force 2>&1)
rc=$?
check "restore refuses a data directory in use, even with --force (exit 4)" \
    test $rc = 4 -a "$out" = "slidescan restore: not restoring from $BK: \
data directory $R is in use by slidescand pid $RPID; stop it before restoring"
kill -TERM "$RPID"
wait "$RPID"
out=$(slidescan restore "$BK" --config "$RCONF" 2>&1)
rc=$?
check "restore refuses to replace a catalogue without --force (exit 4)" \
    test $rc = 4 -a -n "$(grep -- "--force" <<<"$out")"
check "restore --force replaces it" \
    slidescan restore "$BK" --config "$RCONF" --force
mkdir -p "$T/nothing"
check "slidescan restore of a directory without a backup exits 5" \
    test "$(slidescan restore "$T/nothing" --config "$RCONF" >/dev/null 2>&1;
            echo $?)" = 5

# --- one message per failure, and no result line after it ---------------
# restore OUT ERR SRC ARGS...: runs restore into an empty data directory.
restore() {
    local o=$1 e=$2
    shift 2
    slidescan restore "$@" --config "$RCONF" --data-dir "$T/r3" \
        --catalogue "$T/r3/catalogue.db" >"$o" 2>"$e"
}
one_line() { [ ! -s "$1" ] && [ "$(wc -l <"$2")" = 1 ] && grep -q "$3" "$2"; }
cp -a "$BK" "$T/damaged"
victim=$(find "$T/damaged/files" -type f | sort | head -1)
printf 'bitrot' >"$victim"
restore "$T/o1" "$T/e1" "$T/damaged"
rc=$?
echo "# $(cat "$T/e1")"
check "restore of a damaged backup: exit 1, one line naming the file" \
    eval 'test $rc = 1 && one_line "$T/o1" "$T/e1" \
          "not restoring: .*$(basename "$victim"): checksum differs"'
check "... and nothing restored" test ! -e "$T/r3/catalogue.db"
restore "$T/o2" "$T/e2" "$T/no-backup-here"
rc=$?
echo "# $(cat "$T/e2")"
check "restore without a backup: exit 5, one line, no result" \
    eval 'test $rc = 5 && one_line "$T/o2" "$T/e2" "holds no backup"'
slidescan backup "$T/bk-none" --data-dir "$T/nodata" >"$T/o3" 2>"$T/e3"
rc=$?
echo "# $(cat "$T/e3")"
check "backup without a catalogue: exit 5, names it and the options" \
    eval 'test $rc = 5 &&
          one_line "$T/o3" "$T/e3" "no catalogue at $T/nodata/catalogue.db" &&
          grep -q -- "--config FILE" "$T/e3" &&
          grep -q -- "--data-dir DIR" "$T/e3" && test ! -e "$T/bk-none"'
if [ -e /etc/slidescan/slidescan.conf ] ||
   [ -e /var/lib/slidescan/catalogue.db ]; then
    skip "this machine has a configured scanner: the default path exists"
else
    env -u SLIDESCAN_CONFIG slidescan backup "$T/bk-none" >"$T/o4" \
        2>"$T/e4"
    rc=$?
    echo "# $(cat "$T/e4")"
    check "backup with no configuration names the default catalogue" \
        eval 'test $rc = 5 && one_line "$T/o4" "$T/e4" \
              "/var/lib/slidescan/catalogue.db (the default: no --config"'
fi
# --- damage in the backup is found and repaired --------------------------
RP=$T/repair
cp -a "$BK" "$RP"
copy=$RP/files/$wsi
printf 'ZZZZ' | dd of="$copy" bs=1 seek=5000 conv=notrunc 2>/dev/null
n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))
['files']))" "$RP/MANIFEST.json")
slidescan backup "$RP" --verify >"$T/o5" 2>"$T/e5"
rc=$?
echo "# $(cat "$T/o5")"
check "--verify of a damaged backup: exit 1, the report on stdout" \
    eval 'test $rc = 1 && grep -q "^verify $RP: $n files, $((n - 1)) \
verified, 1 problems; catalogue schema [0-9]*$" "$T/o5"'
check "... naming the damaged copy there, and one line on stderr" \
    eval 'grep -q "^problems: $copy: checksum differs from the manifest$" \
          "$T/o5" && test "$(wc -l <"$T/e5")" = 1'
slidescan backup "$RP" --config "$CONF" >"$T/o6" 2>"$T/e6"
rc=$?
echo "# $(cat "$T/o6")"
check "the next backup run repairs it (exit 0, 1 repaired)" \
    eval 'test $rc = 0 && grep -q "^backup $RP: [0-9]* files, [0-9]* \
copied, 1 repaired (.* written), [0-9]* already there, " "$T/o6"'
check "... naming it and what was wrong" \
    grep -qx "repaired: $copy (checksum differs from the manifest)" "$T/o6"
check "... and the repaired backup passes --verify" \
    slidescan backup "$RP" --verify
check "... and restores" slidescan restore "$RP" --config "$RCONF" \
    --data-dir "$T/r4" --catalogue "$T/r4/catalogue.db"
check "the repaired slide image matches its catalogue checksum" \
    test "$(sha256sum "$T/r4/$wsi" | cut -d' ' -f1)" = \
    "$(sqlite3 "$RDB" "SELECT checksum FROM scans WHERE id = 1")"
rm "$copy"
out=$(slidescan backup "$RP" --config "$CONF" --quick --json)
rc=$?
echo "# $out"
check "a --quick run repairs a copy gone from the backup" \
    test $rc = 0 -a "$(python3 -c "import json,sys; r = json.loads(
sys.argv[1]); print(r['repaired'], r['repairs'])" "$out" 2>/dev/null)" = \
    "1 $copy (No such file or directory)"
check "... and the backup passes --verify" slidescan backup "$RP" --verify
check "--quick with --verify is a usage error (exit 2)" \
    test "$(slidescan backup "$RP" --verify --quick >/dev/null 2>&1;
            echo $?)" = 2
dtest_end
