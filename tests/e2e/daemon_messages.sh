#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# The client's wording, exact: `reanalyse` says what it queued and prefixes
# its errors with its own name; a malformed --region says which form it
# wants and what is wrong with it; --priority and --limit quote the text
# given when it is out of range; a too long --image says so; an @MPP at
# the ends of its range says the range is exclusive; `verify` of a
# directory says it is one; `calibrate` without --stain says what is
# missing; `scan --wait` shows the ETA as unknown ("--:--") until the
# tiles are planned; `devices` shows the stage travel; text `watch` shows
# analysis progress as DONE/TOTAL and no line twice in a row; `frame`
# refuses a non-positive exposure, a negative settle time and a bad slide
# spec as usage errors.
. "$(dirname "$0")/../support/daemon_env.sh"

# expect WHAT CODE TEXT CMD...: CMD exits CODE and prints exactly TEXT
# (stdout and stderr together).
expect() {
    local what=$1 code=$2 want=$3 out rc
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    [ "$out" = "$want" ] || echo "# got: $out"
    check "$what (exit $rc)" test "$rc" = "$code" -a "$out" = "$want"
}

dtest_conf "[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

out=$(slidescan devices)
check "devices before any scan says when the travel is known" \
    grep -qx "travel:    known once the stage is opened" <<<"$out"

out=$(slidescan scan --slide E --stain HE --wait 2>/dev/null)
echo "$out" | head -3 | sed 's/^/# /'
check "scan --wait finishes" test "$(scan_state 1)" = done
check "the ETA is --:-- while no tile is planned" \
    grep -Eq "^scan 1 E [a-z]+ 0/0 tiles elapsed [0-9:]+ eta --:--$" \
    <<<"$out"
check "... and never 0:00 then" eval '! grep -q "0/0 tiles.*eta 0:00" <<<"$out"'

out=$(slidescan devices)
check "devices shows the open stage's travel" \
    grep -qx "travel:    x 0..120000 µm, y 0..80000 µm, z -500..500 µm" \
    <<<"$out"

timeout 120 slidescan watch >"$T/watch.txt" 2>&1 &
WATCH=$!
sleep 0.5
expect "reanalyse says what it queued" 0 "scan 1: analysis queued" \
    slidescan reanalyse 1
wait_until 90 'test "$(sqlite3 "$DB" \
    "SELECT state FROM analyses WHERE scan = 1")" = done'
sleep 0.5
kill "$WATCH" 2>/dev/null
wait "$WATCH" 2>/dev/null
sed 's/^/# watch: /' "$T/watch.txt" | head -5
check "watch shows the analysis progress as DONE/TOTAL" \
    grep -Eq "^[0-9:]{8} analysis 1 E running [0-9]+/[0-9]+$" "$T/watch.txt"
check "... and ends at TOTAL/TOTAL" \
    grep -Eq "^[0-9:]{8} analysis 1 E running ([0-9]+)/\1$" "$T/watch.txt"
check "... and never prints the same line twice in a row" \
    test -z "$(cut -c10- "$T/watch.txt" | uniq -d)"
expect "reanalyse errors carry its own name" 5 \
    "slidescan reanalyse: not_found: no scan 99" slidescan reanalyse 99
expect "reanalyse without SCAN says so" 2 \
    "slidescan reanalyse: SCAN missing (see slidescan reanalyse --help)" \
    slidescan reanalyse
form="must be X,Y,W,H in stage micrometres, W and H at least 100, each \
under 1e6 in magnitude"
expect "a short --region says the form it wants" 2 \
    "slidescan scan: bad_request: args.region: '1,2,3' is not four \
numbers; $form" slidescan scan --slide R --stain HE --region=1,2,3
expect "a huge --region width is named as the cause" 2 \
    "slidescan scan: bad_request: args.region: '0,0,1e12,10': W 1e+12 is \
not under 1e6 um in magnitude; $form" \
    slidescan scan --slide R --stain HE --region 0,0,1e12,10
expect "a zero --region height is named as the cause" 2 \
    "slidescan scan: bad_request: args.region: '0,0,100,0': H 0 is not \
above 0; $form" slidescan scan --slide R --stain HE --region 0,0,100,0
expect "a --region narrower than 100 um is refused, naming the side" 2 \
    "slidescan scan: bad_request: args.region: '1500,1500,1,1': W 1 um is \
under 100 um, the smallest region side; $form" \
    slidescan scan --slide R --stain HE --region 1500,1500,1,1
# Region values are decimal numbers only: strtod() would also read hex,
# inf and nan.
for bad in "1500,1500,0x100,200:W '0x100'" "0x5DC,1500,200,200:X '0x5DC'" \
           "inf,0,200,200:X 'inf'" "0,nan,200,200:Y 'nan'" \
           "0,0,200,1e:H '1e'" "0,0,+,200:W '+'"; do
    r=${bad%%:*}
    expect "--region $r is refused as not decimal, naming the value" 2 \
        "slidescan scan: bad_request: args.region: '$r': ${bad#*:} is not \
a decimal number (digits with an optional sign, point and exponent); \
$form" slidescan scan --slide R --stain HE --region "$r"
done
# A region larger than the 76 x 26 mm glass slide (millimetres typed as
# micrometres) is refused when queued, not planned into thousands of
# tiles.
expect "a --region larger than the slide glass is refused, naming both" 2 \
    "slidescan scan: bad_request: args.region: 0,0,100000,70000 (x,y,w,h \
in um) is 100 x 70 mm, larger than the 76 x 26 mm slide glass ([scan] \
glass_w_mm, glass_h_mm); the values are micrometres" \
    slidescan scan --slide R --stain HE --region 0,0,100000,70000
expect "a --region 1 um taller than the glass is refused" 2 \
    "slidescan scan: bad_request: args.region: 0,0,200,26001 (x,y,w,h in \
um) is 0.2 x 26.001 mm, larger than the 76 x 26 mm slide glass ([scan] \
glass_w_mm, glass_h_mm); the values are micrometres" \
    slidescan scan --slide R --stain HE --region 0,0,200,26001
expect "--priority beyond a long is quoted as given" 2 \
    "slidescan scan: --priority: '-9999999999999999999' is outside \
-100..100" slidescan scan --slide R --stain HE \
    --priority -9999999999999999999
expect "--priority 101 is outside the range" 2 \
    "slidescan scan: --priority: '101' is outside -100..100" \
    slidescan scan --slide R --stain HE --priority 101
expect "--priority abc is not a number" 2 \
    "slidescan scan: --priority: 'abc' is not a whole number" \
    slidescan scan --slide R --stain HE --priority abc
expect "queue --limit beyond a long is quoted as given" 2 \
    "slidescan queue: --limit: '99999999999999999999' is outside \
1..100000" slidescan queue --limit 99999999999999999999
long=/$(printf 'a%.0s' $(seq 1 4107))
expect "a 4108-character --image is too long, not unprintable" 2 \
    "slidescan scan: bad_request: args.image: too long: 4108 characters, \
at most 4096 ('${long:0:40}...'); must be printable characters" \
    slidescan scan --slide R --stain HE --image "$long"
for mpp in 1000 0.01; do
    expect "--image @$mpp: the ends of the range are refused, and said so" \
        2 "slidescan scan: bad_request: args.image: '/no/lung.png@$mpp': \
pixel size '$mpp' um must be more than 0.01 and less than 1000; a file \
slide is FILE[@MPP][:force_mpp][:stain=HE|KI67|CK][:id=TEXT]" \
        slidescan scan --slide R --stain HE --image /no/lung.png@$mpp
done
mkdir -p "$T/adir"
expect "verify of a directory says it is one" 1 \
    "slidescan verify: $T/adir: is a directory, not a slide file" \
    slidescan verify "$T/adir"
check "none of the refused scans was queued" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM scans")" = 1
expect "calibrate without --stain says what is missing" 2 \
    "slidescan calibrate: --stain HE|KI67|CK missing (see slidescan \
calibrate --help)" slidescan calibrate
frame="slidescan frame --slide phantom:HE --out $T/f.png"
expect "frame --exposure-ms 0 is refused, not the stain's default" 2 \
    "slidescan frame: --exposure-ms: 0 is not a positive exposure (leave \
it out for the stain's)" $frame --exposure-ms 0
expect "frame --settle-ms -1 is refused" 2 \
    "slidescan frame: --settle-ms: -1 is negative" $frame --settle-ms -1
expect "frame with a bad --slide spec is a usage error" 2 \
    "slidescan frame: --slide 'phantom:XX': stain 'XX' is not HE, KI67 or \
CK; a phantom is phantom:HE|KI67|CK[:seed=N][:w_mm=MM][:h_mm=MM][:id=TEXT]" \
    slidescan frame --slide phantom:XX --out "$T/f.png"
check "... and none of them wrote the frame" test ! -e "$T/f.png"
out=$($frame --exposure-ms 40 --settle-ms 0 2>/dev/null)
check "frame with a given exposure uses it and writes the frame" \
    test -s "$T/f.png" -a -n "$(grep " exposure_ms=40 " <<<"$out")"
expect "--region in decimal with sign, point and exponent is accepted" 0 \
    "" eval 'slidescan scan --slide RD --stain HE --region \
    "+1500.5,1.5e3,2E2,200" --priority -100 >/dev/null'
check "... and stored as given" test "$(sqlite3 "$DB" \
    "SELECT region FROM scans WHERE id = 2")" = "+1500.5,1.5e3,2E2,200"
slidescan cancel 2 >/dev/null
wait_until 30 'test "$(scan_state 2)" = cancelled'
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
