#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# A scan whose --region lies on glass fails while planning, saying that
# the region (named as given) holds no tissue the overview could find and
# how much the overview saw elsewhere, instead of failing later at the
# focus map; a region over the tissue still scans; a region beyond the
# stage travel is refused when queued.
. "$(dirname "$0")/../support/daemon_env.sh"

dtest_conf "[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide G --stain HE --region 6000,2000,500,500 >/dev/null
check "a region on glass fails" \
    wait_until 60 '[ "$(scan_state 1)" = failed ]'
reason=$(sqlite3 "$DB" "SELECT reason FROM scans WHERE id = 1")
echo "# $reason"
check "... naming the region and the cause" grep -Eqx "planning: plan: \
the region 6000,2000,500,500 \(x,y,w,h in um\) holds no tissue the \
overview could find; the overview shows [0-9]+\.[0-9]{2} mm2 of tissue \
elsewhere on the slide" <<<"$reason"
check "... and the overview saw tissue elsewhere" \
    grep -Eq "shows 0\.[0-9][1-9] mm2|shows [1-9][0-9.]* mm2" <<<"$reason"
check "... before any focus point was taken" \
    eval '! grep -q "focus map scan=1" "$LOG"'
slidescan scan --slide T --stain HE --region 900,1000,600,500 >/dev/null
check "a region over the tissue scans" \
    wait_until 60 '[ "$(scan_state 2)" = done ]'
# A region the stage cannot reach (the simulated stage travels 120 x 80
# mm) is refused when queued, naming the travel; nothing is queued.
out=$(slidescan scan --slide F --stain HE --region 119000,20000,5000,1000 2>&1)
rc=$?
echo "# $out"
check "a region beyond the stage travel is refused when queued (exit $rc)" \
    test $rc = 2
check "... naming the region and the travel" grep -qF \
    "119000,20000,5000,1000 (x,y,w,h in um) leaves the stage travel x 0..120000, y 0..80000 um" \
    <<<"$out"
check "... and nothing was queued" \
    test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM scans")" = 2
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
