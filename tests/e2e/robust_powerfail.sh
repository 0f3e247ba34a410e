#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 300
#
# Power-loss test: slidescand (and its analysis worker) run under the
# power-loss model tests/support/powerfail (an LD_PRELOAD library that
# records what each fsync makes durable).  Nine times, at a random moment
# in capture, assembly or analysis, the power is cut: the processes die
# and the data directory is rebuilt from what was durable only (every
# other restore also keeps a random mix of unsynced pages, as a disk that
# wrote some back would).  After each cut the catalogue must pass
# integrity_check and everything it records must be on disk: each captured
# tile's file with its checksum, each finished slide image with its
# checksum.  The daemon is started again each time; at the end every scan
# is done and analysed, no tile is missing or doubled, and tiles and slide
# images are identical to an uninterrupted scan's.  (Slides are added
# when the first two are finished before the last cut.)
#
# When it may, the test runs in a private mount namespace on a tmpfs (gone
# with the test): the model decides what is durable, the disk's real
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

CUTS=${ROBUST_POWERFAIL_CUTS:-9}
SLIDES="A B"
IMAGE=phantom:HE:seed=11:w_mm=1.2:h_mm=0.9
PF=$BUILD/support/powerfail
PFSO=$BUILD/support/powerfail.so
ST=$T/pf-state
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

if [ ! -x "$PF" ] || [ ! -f "$PFSO" ]; then
    skip "the power-loss model is not built (make tests)"; dtest_end; exit 0
fi
if [ -n "${SLIDESCAN_SANITIZE:-}" ]; then
    skip "not under sanitizers (the preload library is not instrumented)"
    dtest_end; exit 0
fi
command -v vips >/dev/null || { skip "vips is not installed"; dtest_end; \
    exit 0; }

q() { sqlite3 "$DB" "$1" 2>/dev/null; }

# --- the reference: one scan without the model ------------------------------
dtest_conf "$EXTRA"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide REF --stain HE --image "$IMAGE" >/dev/null
wait_until 90 '[ "$(q "SELECT a.state FROM scans s JOIN analyses a
    ON a.scan = s.id")" = done ]'
dtest_stop
REF=$T/ref
mkdir -p "$REF"
mv "$DATA" "$REF/data"
REFDB=$REF/data/catalogue.db
ref_tiles=$(sqlite3 "$REFDB" "SELECT tiles_total FROM scans")
vips openslideload "$REF/data/$(sqlite3 "$REFDB" "SELECT wsi_path FROM
    scans")" "$T/ref.v" 2>/dev/null
check "the reference scan completes ($ref_tiles tiles)" test -f "$T/ref.v"

# --- under the power-loss model ---------------------------------------------
mkdir -p "$DATA"
"$PF" baseline --state "$ST" --root "$DATA" >/dev/null
pf_start() {
    LD_PRELOAD=$PFSO POWERFAIL_STATE=$ST POWERFAIL_ROOT=$DATA dtest_start
}
pf_start || { nok "slidescand starts under the model"; dtest_end; exit 1; }
for s in $SLIDES; do
    slidescan scan --slide "$s" --stain HE --image "$IMAGE" >/dev/null
done

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

# Work for the next cuts when the slides so far are all finished.
more_work() {
    local s=S$((cuts + 1))
    SLIDES="$SLIDES $s"
    slidescan scan --slide "$s" --stain HE --image "$IMAGE" >/dev/null
}

# The power goes off: the state stops recording, every process dies.
power_cut() {
    local kids
    "$PF" cut --state "$ST"
    kids=$(ps -o pid= --ppid "$DPID" 2>/dev/null)
    kill -KILL "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
    # shellcheck disable=SC2086
    [ -n "$kids" ] && kill -KILL $kids 2>/dev/null
    DPID=
}

# What the catalogue records is on disk: captured tiles and finished slide
# images with their checksums.  Prints the number of violations.
recorded_is_on_disk() {
    local n=0 f sum want
    while IFS='|' read -r f want; do
        [ -n "$f" ] || continue
        sum=$(sha256sum "$DATA/$f" 2>/dev/null | cut -d' ' -f1)
        [ "$sum" = "$want" ] || { n=$((n + 1)); echo "# lost: $f" >&2; }
    done < <(q "SELECT file, checksum FROM tiles WHERE state = 'captured'
                UNION ALL SELECT wsi_path, checksum FROM scans
                WHERE state = 'done'")
    echo $n
}

phases=(capture assembly analysis)
bad_integrity=0
lost=0
cuts=0
watched=0
while [ $cuts -lt "$CUTS" ]; do
    all_done && more_work
    want=${phases[$((cuts % 3))]}
    wait_until 6 in_phase "$want" || true
    sleep "0.$((RANDOM % 500))"
    syncs=$("$PF" status --state "$ST" |
        sed -n 's/.*, \([0-9]*\) syncs.*/\1/p')
    [ "${syncs:-0}" -gt 0 ] && watched=$((watched + 1))
    power_cut
    cuts=$((cuts + 1))
    if [ $((cuts % 2)) = 0 ]; then
        "$PF" restore --state "$ST" --torn "$cuts" >/dev/null
    else
        "$PF" restore --state "$ST" >/dev/null
    fi
    ic=$(q "PRAGMA integrity_check")
    [ "$ic" = ok ] || { bad_integrity=$((bad_integrity + 1)); \
        echo "# after cut $cuts ($want): integrity_check: $ic"; }
    n=$(recorded_is_on_disk)
    [ "$n" = 0 ] || echo "# after cut $cuts ($want): $n recorded files lost"
    lost=$((lost + n))
    pf_start || { nok "slidescand restarts after cut $cuts"; break; }
done
echo "# $cuts power cuts"
check "the model recorded the daemon's syncs before every cut" \
    test "$watched" = "$cuts"
check "the power was cut $CUTS times" test "$cuts" -ge "$CUTS"
check "integrity_check was ok after every cut" test $bad_integrity = 0
check "everything the catalogue recorded was on disk after every cut" \
    test $lost = 0
check "every scan completes and is analysed after the last restart" \
    wait_until 120 all_done
dtest_stop

for s in $SLIDES; do
    id=$(q "SELECT id FROM scans WHERE slide = '$s'")
    check "slide $s: all $ref_tiles tiles captured, each once" test \
        "$(q "SELECT tiles_total, tiles_done, (SELECT COUNT(*) FROM tiles
              WHERE scan = $id AND state = 'captured') FROM scans
              WHERE id = $id")" = "$ref_tiles|$ref_tiles|$ref_tiles"
    differ=$(q "SELECT COUNT(*) FROM tiles WHERE scan = $id" >/dev/null;
        for i in $(seq 0 $((ref_tiles - 1))); do
            [ "$(sha256sum "$DATA/scans/$id/tiles/$i.jpg" 2>/dev/null |
                cut -d' ' -f1)" = "$(sqlite3 "$REFDB" "SELECT checksum
                FROM tiles WHERE idx = $i")" ] || echo x
        done | wc -l)
    check "slide $s: every tile is byte-identical to the reference's \
($differ differ)" test "$differ" = 0
    rm -f "$T/got.v" "$T/eq.v"
    vips openslideload "$DATA/$(q "SELECT wsi_path FROM scans WHERE
        id = $id")" "$T/got.v" 2>/dev/null &&
        vips relational "$T/ref.v" "$T/got.v" "$T/eq.v" equal 2>/dev/null
    check "slide $s: level 0 is pixel-identical to the reference's" \
        test "$(vips min "$T/eq.v" 2>/dev/null)" = 255.000000
done
dtest_end
