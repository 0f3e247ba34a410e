#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 200
#
# A night's queue with nobody watching: 50 slides (H&E, KI67 and CK
# phantoms, some with a higher priority) are queued at once on the fast
# simulated microscope with a small sensor, and all of them end done with
# their WSI and analysis, without any intervention.  `slidescan queue
# --all` shows them done; priorities ran first; every calibration was
# taken once per stain and reused.
. "$(dirname "$0")/../support/daemon_env.sh"

N=50
dtest_conf "[simulator]
sensor_w = 512
sensor_h = 384
[microscope]
phantom_w_mm = 0.5
phantom_h_mm = 0.4"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

stains=(HE KI67 CK)
t0=$SECONDS
for i in $(seq 1 $N); do
    prio=0
    [ $((i % 10)) = 0 ] && prio=10
    slidescan scan --slide "N-$i" --stain "${stains[$((i % 3))]}" \
        --priority $prio >/dev/null || nok "queueing slide N-$i"
done
check "$N scans queued" test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM \
    scans")" = $N
finished() {
    test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM scans s JOIN analyses a \
        ON a.scan = s.id WHERE s.state = 'done' AND a.state IN ('done', \
        'failed')")" = $N
}
check "all $N scans and analyses finish unattended" wait_until 170 finished
echo "# $N slides scanned, assembled and analysed in $((SECONDS - t0)) s"

out=$(slidescan queue --all --limit 100)
check "slidescan queue --all shows all $N done" \
    test "$(grep -c ' done ' <<<"$out")" = $N
check "no scan failed or waits" test "$(sqlite3 "$DB" "SELECT COUNT(*) \
    FROM scans WHERE state != 'done'")" = 0
check "every analysis done" test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM \
    analyses WHERE state = 'done'")" = $N
check "every tile of every scan captured" test "$(sqlite3 "$DB" "SELECT \
    COUNT(*) FROM tiles WHERE state != 'captured'")" = 0
check "every slide has its WSI on disk" test "$(sqlite3 "$DB" "SELECT \
    wsi_path FROM slides" | while read -r p; do [ -f "$DATA/$p" ] && \
    echo x; done | wc -l)" = $N
check "the five priority-10 slides ran first" test "$(sqlite3 "$DB" \
    "SELECT group_concat(slide) FROM (SELECT slide FROM scans ORDER BY \
    started, id LIMIT 5)" | tr ',' '\n' | grep -c '0$')" = 5
check "one calibration per stain, reused by every scan" \
    test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM calibrations")" = 3
check "tile files removed after assembly (keep_tiles = no)" \
    test "$(find "$DATA/scans" -name '*.jpg' | wc -l)" = 0
dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
