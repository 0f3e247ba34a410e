#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 200
#
# A night's queue with nobody watching: 50 slides (small H&E, KI67 and CK
# phantoms, some with a higher priority) are queued at once (one client
# connection, protocol/PROTOCOL.md) on the fast
# simulated microscope, and all of them end done with
# their WSI and analysis, without any intervention.  `slidescan queue
# --all` shows them done; priorities ran first; every calibration was
# taken once per stain and reused.
. "$(dirname "$0")/../support/daemon_env.sh"

N=50
if [ -n "${SLIDESCAN_SANITIZE:-}" ]; then
    N=10                        # sanitizer builds are several times slower
    echo "# sanitizer build: $N slides instead of 50"
fi
SIZE=0.4x0.3
# One focus point and no sharpness re-takes per slide keep the run short;
# the queue, not image quality, is under test here.
dtest_conf "[scan]
focus_points = 1
max_retakes = 0"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

# Phantom tissue has gaps, so a section this small may hold no tissue at
# all (a scan that then fails with "no tissue found", rightly).  One seed
# per stain with tissue on at least a quarter of the section is picked
# from the phantom's own ground truth.
tissue_seed() {
    local stain=$1 seed=1 area
    while [ $seed -lt 200 ]; do
        slidescan phantom --stain "$stain" --seed $seed --size-mm $SIZE \
            --mpp 8 --out "$T/probe.png" --truth "$T/probe.json" \
            >/dev/null 2>&1
        area=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["areas_mm2"]["tissue"])' "$T/probe.json")
        if awk -v a="${area:-0}" 'BEGIN { exit !(a >= 0.03) }'; then
            echo $seed
            return
        fi
        seed=$((seed + 1))
    done
}
stains=(HE KI67 CK)
declare -A seed
for s in "${stains[@]}"; do seed[$s]=$(tissue_seed "$s"); done
echo "# phantom seeds with tissue: HE ${seed[HE]} KI67 ${seed[KI67]} CK" \
     "${seed[CK]}"

# All 50 requests on one connection, in a burst: queueing them one client
# process at a time is slower than the daemon scans these slides, and the
# priorities would then have nothing to reorder.
t0=$SECONDS
python3 - "$SOCK" "$N" "$SIZE" "${seed[HE]}" "${seed[KI67]}" \
    "${seed[CK]}" <<'PY' || nok "queueing $N slides"
import json, socket, sys
sock, n, size = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seeds = {"HE": sys.argv[4], "KI67": sys.argv[5], "CK": sys.argv[6]}
w, h = size.split("x")
stains = ["HE", "KI67", "CK"]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rw")
for i in range(1, n + 1):
    st = stains[i % 3]
    args = {"slide": "N-%d" % i, "stain": st,
            "priority": 10 if i % 10 == 0 else 0,
            "image": "phantom:%s:seed=%s:w_mm=%s:h_mm=%s" % (st, seeds[st],
                                                          w, h)}
    f.write(json.dumps({"v": 1, "id": i, "cmd": "scan", "args": args}))
    f.write("\n")
f.flush()
ok = sum(json.loads(f.readline())["ok"] for _ in range(n))
sys.exit(0 if ok == n else 1)
PY
check "$N scans queued" test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM \
    scans")" = $N
# Finished: nothing waiting or running any more (a failure counts too,
# so that a failure shows as such instead of as a timeout).
finished() {
    test "$(sqlite3 "$DB" "SELECT (SELECT COUNT(*) FROM scans WHERE state \
        NOT IN ('done', 'failed', 'cancelled', 'paused')) + (SELECT \
        COUNT(*) FROM analyses WHERE state IN ('queued', 'running')) + \
        (SELECT COUNT(*) FROM scans s WHERE state = 'done' AND NOT EXISTS \
        (SELECT 1 FROM analyses a WHERE a.scan = s.id))")" = 0
}
check "the queue of $N runs to its end unattended" wait_until 170 finished
echo "# $N slides scanned, assembled and analysed in $((SECONDS - t0)) s"

out=$(slidescan queue --all --limit 100)
check "slidescan queue --all shows all $N done" \
    test "$(grep -c ' done ' <<<"$out")" = $N
check "every scan done: none failed, paused or waiting" test "$(sqlite3 "$DB" "SELECT COUNT(*) \
    FROM scans WHERE state != 'done'")" = 0 || sqlite3 "$DB" "SELECT \
    'scan ' || id || ' ' || state || ': ' || reason FROM scans WHERE state \
    != 'done'" | sed 's/^/# /' 
check "every analysis done" test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM \
    analyses WHERE state = 'done'")" = $N
check "every tile of every scan captured" test "$(sqlite3 "$DB" "SELECT \
    COUNT(*) FROM tiles WHERE state != 'captured'")" = 0
check "every slide has its WSI on disk" test "$(sqlite3 "$DB" "SELECT \
    wsi_path FROM slides" | while read -r p; do [ -f "$DATA/$p" ] && \
    echo x; done | wc -l)" = $N
# N-1 starts as soon as it is queued; the priority-10 slides come next.
want="$(for i in $(seq 10 10 $N); do printf 'N-%d ' $i; done)N-2"
check "the priority-10 slides ran right after the first ($want)" \
    test "$(sqlite3 "$DB" "SELECT group_concat(slide, ' ') FROM (SELECT \
    slide FROM scans ORDER BY started, id LIMIT $((N / 10 + 1)) OFFSET 1)")" \
    = "$want"
check "one calibration per stain, reused by every scan" \
    test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM calibrations")" = 3
check "tile files removed after assembly (keep_tiles = no)" \
    test "$(find "$DATA/scans" -name '*.jpg' | wc -l)" = 0
dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
