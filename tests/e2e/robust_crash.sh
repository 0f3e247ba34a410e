#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 300
#
# Crash test: slidescand is killed with SIGKILL 30 times, at random
# moments in capture, assembly and analysis (taken in turn), while it
# works through three slides of the same phantom on the fast simulated
# microscope (fixed seed; more slides are queued when these finish before
# the last kill).  Each time it is started again.  Its children
# (the analysis worker) go with it, as systemd's control-group kill would
# do.  Then: every scan is done and analysed; the catalogue passes
# integrity_check after every kill; no tile is missing or doubled; every
# tile is byte-identical to the same tile of an uninterrupted scan, and
# every slide image's level 0 is pixel-identical to the uninterrupted
# scan's.
#
# When it may, the test runs in a private mount namespace on a tmpfs (gone
# with the test): the kills do not depend on the disk, and the disk's
# fsync()s would only make the test slow.
if [ -z "${ROBUST_FS:-}" ] && [ "$(id -u)" = 0 ] &&
    unshare --mount --propagation private true 2>/dev/null; then
    ROBUST_FS=$(mktemp -d "${TMPDIR:-/tmp}/robust-fs.XXXXXX")
    export ROBUST_FS
    unshare --mount --propagation private "$0" "$@"
    rc=$?
    rmdir "$ROBUST_FS"
    exit $rc
fi
if [ -n "${ROBUST_FS:-}" ]; then
    mount -t tmpfs -o size=2g,mode=0700 tmpfs "$ROBUST_FS" || exit 1
    export TMPDIR=$ROBUST_FS
fi
. "$(dirname "$0")/../support/daemon_env.sh"

KILLS=${ROBUST_CRASH_KILLS:-30}
SLIDES="A B C"
IMAGE=phantom:HE:seed=11:w_mm=1.2:h_mm=0.9
EXTRA="[simulator]
seed = 3
sensor_w = 640
sensor_h = 480
[scan]
keep_tiles = yes
[storage]
reserve_mb = 1
[analysis]
auto = yes"

if ! command -v vips >/dev/null; then
    skip "vips is not installed"; dtest_end; exit 0
fi

q() { sqlite3 "$DB" "$1" 2>/dev/null; }

# --- the reference: one uninterrupted scan ---------------------------------
dtest_conf "$EXTRA"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide REF --stain HE --image "$IMAGE" >/dev/null
check "the uninterrupted reference scan completes and is analysed" \
    wait_until 90 '[ "$(q "SELECT a.state FROM scans s JOIN analyses a
        ON a.scan = s.id WHERE s.slide = '"'REF'"'")" = done ]'
dtest_stop
REF=$T/ref
mkdir -p "$REF"
mv "$DATA" "$REF/data"
REFDB=$REF/data/catalogue.db
REF_WSI=$REF/data/$(sqlite3 "$REFDB" "SELECT wsi_path FROM scans")
ref_tiles=$(sqlite3 "$REFDB" "SELECT tiles_total FROM scans")
vips openslideload "$REF_WSI" "$T/ref.v" 2>/dev/null
echo "# reference: $ref_tiles tiles, $REF_WSI"

# --- the crash run ---------------------------------------------------------
rm -f "$LOG"
dtest_start || { nok "slidescand starts on an empty data dir"; dtest_end; \
    exit 1; }
for s in $SLIDES; do
    slidescan scan --slide "$s" --stain HE --image "$IMAGE" >/dev/null
done

# True while some scan or analysis is in the phase named $1.
in_phase() {
    case $1 in
    capture) [ "$(q "SELECT COUNT(*) FROM scans WHERE state IN
        ('calibrating','planning','focusing','capturing')")" -gt 0 ] ;;
    assembly) [ "$(q "SELECT COUNT(*) FROM scans
        WHERE state = 'assembling'")" -gt 0 ] ;;
    analysis) [ "$(q "SELECT COUNT(*) FROM analyses
        WHERE state = 'running'")" -gt 0 ] ;;
    esac
}

all_done() {
    [ "$(q "SELECT COUNT(*) FROM scans s JOIN analyses a ON a.scan = s.id
        WHERE s.state = 'done' AND a.state = 'done'")" = "$(wc -w \
        <<<"$SLIDES")" ]
}

# Work for the remaining kills when the slides so far are all finished
# (a slower build finishes them in fewer kills).
more_work() {
    local s=S$((kills + 1))
    SLIDES="$SLIDES $s"
    slidescan scan --slide "$s" --stain HE --image "$IMAGE" >/dev/null
}

# Kills the daemon and the processes it started, by PID.
crash() {
    local kids
    kids=$(ps -o pid= --ppid "$DPID" 2>/dev/null)
    kill -KILL "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -KILL $kids 2>/dev/null
    DPID=
}

phases=(capture assembly analysis)
declare -A hits=([capture]=0 [assembly]=0 [analysis]=0 [other]=0)
bad_integrity=0
kills=0
t_start=$SECONDS
while [ $kills -lt "$KILLS" ]; do
    all_done && more_work
    want=${phases[$((kills % 3))]}
    # Wait (briefly) for the wanted phase, then a random moment in it.
    wait_until 6 in_phase "$want" || true
    sleep "0.$((RANDOM % 400))"
    if in_phase "$want"; then hit=$want; else hit=other; fi
    crash
    kills=$((kills + 1))
    hits[$hit]=$((hits[$hit] + 1))
    ic=$(q "PRAGMA integrity_check")
    [ "$ic" = ok ] || { bad_integrity=$((bad_integrity + 1)); \
        echo "# after kill $kills: integrity_check: $ic"; }
    dtest_start || { nok "slidescand restarts after kill $kills"; break; }
done
echo "# $kills kills in $((SECONDS - t_start)) s: capture ${hits[capture]}," \
     "assembly ${hits[assembly]}, analysis ${hits[analysis]}," \
     "other ${hits[other]}"
check "slidescand was killed $KILLS times" test "$kills" -ge "$KILLS"
check "kills landed in capture, assembly and analysis" \
    test "${hits[capture]}" -gt 0 -a "${hits[assembly]}" -gt 0 \
    -a "${hits[analysis]}" -gt 0
check "integrity_check was ok after every kill" test $bad_integrity = 0
check "every scan completes and is analysed after the last restart" \
    wait_until 120 all_done
dtest_stop

# --- nothing lost, nothing doubled, identical pixels -----------------------
check "integrity_check ok at the end" test "$(q "PRAGMA integrity_check")" = ok
for s in $SLIDES; do
    id=$(q "SELECT id FROM scans WHERE slide = '$s'")
    check "slide $s: $ref_tiles tiles planned, all captured once" test \
        "$(q "SELECT tiles_total, tiles_done, (SELECT COUNT(*) FROM tiles
              WHERE scan = $id AND state = 'captured') FROM scans
              WHERE id = $id")" = "$ref_tiles|$ref_tiles|$ref_tiles"
    differ=0
    missing=0
    for i in $(seq 0 $((ref_tiles - 1))); do
        f=$DATA/scans/$id/tiles/$i.jpg
        [ -f "$f" ] || { missing=$((missing + 1)); continue; }
        want=$(sqlite3 "$REFDB" "SELECT checksum FROM tiles WHERE idx = $i")
        got=$(sha256sum "$f" | cut -d' ' -f1)
        rec=$(q "SELECT checksum FROM tiles WHERE scan = $id AND idx = $i")
        [ "$got" = "$want" ] && [ "$rec" = "$want" ] || differ=$((differ + 1))
    done
    check "slide $s: every tile file is there ($missing missing)" \
        test $missing = 0
    check "slide $s: every tile is byte-identical to the uninterrupted \
scan's ($differ differ)" test $differ = 0
    wsi=$DATA/$(q "SELECT wsi_path FROM scans WHERE id = $id")
    rm -f "$T/got.v" "$T/eq.v"
    vips openslideload "$wsi" "$T/got.v" 2>/dev/null &&
        vips relational "$T/ref.v" "$T/got.v" "$T/eq.v" equal 2>/dev/null
    check "slide $s: the slide image's level 0 is pixel-identical to the \
uninterrupted scan's" test "$(vips min "$T/eq.v" 2>/dev/null)" = 255.000000
    check "slide $s: the analysis matches the uninterrupted one" test \
        "$(q "SELECT round(tumor_area_mm2, 6), round(stroma_area_mm2, 6)
              FROM analyses WHERE scan = $id")" = \
        "$(sqlite3 "$REFDB" "SELECT round(tumor_area_mm2, 6),
              round(stroma_area_mm2, 6) FROM analyses")"
done
left=$(cd "$DATA" && find . -name '*.tmp*' -o -name '*.partial')
[ -n "$left" ] && sed 's/^/# left behind: /' <<<"$left"
check "no temporary file is left behind" test -z "$left"
resumes=$(q "SELECT SUM(resumes) FROM scans")
echo "# scans resumed $resumes times"
dtest_end
