#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# `slidescan scan --image FILE` with a relative FILE: the client sends the
# absolute path (its "@MPP" and ":stain=" parts kept), so the daemon,
# whose working directory is elsewhere, scans the file the user meant.
# The daemon refuses at queue time a file that is missing (not_found), a
# directory or not a slide, a slide (file or phantom) larger than the
# stage travel, a FILE@MPP that contradicts the file's own pixel size
# (unless FILE@MPP:force_mpp), and a spec or a file whose declared stain
# is not the scan's --stain, with the spec and the cause, and queues
# nothing.
. "$(dirname "$0")/../support/daemon_env.sh"

W=$T/work
mkdir -p "$W/sub"
dtest_conf
# The daemon's working directory is /, as under systemd.
cd / || exit 1
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan phantom --out "$W/p.png" --size-mm 0.6x0.5 --seed 3 >/dev/null
check "a phantom PNG to scan" test -s "$W/p.png"

out=$(cd "$W/sub" && slidescan scan --slide R1 --stain HE \
      --image ../p.png@0.5:stain=HE 2>&1)
check "a relative file is queued ($out)" test $? = 0
check "the catalogue holds its absolute path, suffixes kept" \
    test "$(sqlite3 "$DB" "SELECT image FROM scans WHERE id = 1")" = \
    "$W/p.png@0.5:stain=HE"
check "the daemon scans it" wait_until 60 '[ "$(scan_state 1)" = done ]'

# refused SPEC WANT: queueing SPEC from $W is refused as a bad request
# (exit 2, as for a malformed spec) with WANT.
refused() {
    local out rc want="slidescan scan: bad_request: args.image: $2"
    out=$(cd "$W" && slidescan scan --slide R2 --stain HE --image "$1" 2>&1)
    rc=$?
    echo "# $out"
    check "--image $1 is refused (exit $rc)" test "$rc" = 2
    check "... with: $2" eval '[[ $out == "$want"* ]]'
}
# A missing file is not found (exit 5), as README's exit codes say.
out=$(cd "$W" && slidescan scan --slide R2 --stain HE --image missing.svs \
      2>&1)
rc=$?
echo "# $out"
check "--image missing.svs is not found (exit $rc)" test "$rc" = 5
check "... naming the file" test "$out" = "slidescan scan: not_found: \
args.image: '$W/missing.svs': $W/missing.svs: no such file"
refused sub "'$W/sub': $W/sub is a directory, not a slide image"
echo "not a slide" >"$W/notes.txt"
refused notes.txt "'$W/notes.txt': cannot be read as a slide: $W/notes.txt"
# The phantom PNG is 1200 x 1000 px: at 400 um/px it is 480 x 400 mm, far
# beyond the 120 x 80 mm the stage travels; the scan would only fail on
# the microscope, so it is refused now with the load's message.
refused p.png@400 "'$W/p.png@400': the slide needs 483.4 x 402.0 mm of \
stage travel (image 480.0 x 400.0 mm with its margins and blank area), \
the stage travels 120.0 x 80.0 mm (travel_x_um, travel_y_um)"
refused p.png@400:stain=HE:id=BIG "'$W/p.png@400:stain=HE:id=BIG': the \
slide needs 483.4 x 402.0 mm of stage travel"

# stain_refused STAIN SPEC DECLARED: --stain STAIN with a spec declaring
# another stain is a bad request (exit 2) naming both.
stain_refused() {
    local out rc want="slidescan scan: bad_request: args.stain: $1, but \
args.image '$4' declares stain $3"
    out=$(cd "$W" && slidescan scan --slide R3 --stain "$1" --image "$2" \
          2>&1)
    rc=$?
    echo "# $out"
    check "--stain $1 --image $2 is refused (exit $rc)" test "$rc" = 2
    check "... naming both stains: $want" eval '[[ $out == "$want"* ]]'
}
stain_refused KI67 p.png@0.5:stain=HE HE "$W/p.png@0.5:stain=HE"
stain_refused HE phantom:KI67:w_mm=0.6 KI67 phantom:KI67:w_mm=0.6
# A slide file that declares its stain in its own metadata (Aperio
# "Stain = KI67", as slidescan's phantoms and scans write) is refused
# under another stain, with or without a spec suffix.
slidescan phantom --stain KI67 --out "$W/k.tif" --size-mm 0.6x0.5 \
    >/dev/null
check "a KI67 phantom TIFF to scan" test -s "$W/k.tif"
file_refused() {
    local out rc want="slidescan scan: bad_request: args.stain: $1, but \
the file of args.image '$W/$2' declares stain KI67 in its metadata"
    out=$(cd "$W" && slidescan scan --slide R5 --stain "$1" --image "$2" \
          2>&1)
    rc=$?
    echo "# $out"
    check "--stain $1 --image $2 (a KI67 file) is refused (exit $rc)" \
        test "$rc" = 2
    check "... naming both stains: $want" eval '[[ $out == "$want"* ]]'
}
file_refused HE k.tif
file_refused CK k.tif:id=K1
# An @MPP more than 1 % off the 0.5 um/px the file states would scan a
# slide of the wrong size; it is refused unless forced, and the daemon
# keeps serving.
refused k.tif@0.25 "$W/k.tif states 0.5 µm/px (openslide); the 0.25 \
µm/px given contradicts it; add :force_mpp (FILE@MPP:force_mpp) to use \
0.25 µm/px anyway"
refused k.tif@0.506:id=K2 "$W/k.tif states 0.5 µm/px (openslide); the \
0.506 µm/px given contradicts it"
# A slide whose header opens but whose pixel data does not decode is no
# slide to scan: the queue reads a sample of its pixels and refuses it.
U=${SLIDESCAN_DATA:-/nonexistent}/wsi/edge_cases/unreadable.svs
if [ -r "$U" ]; then
    refused "$U" "'$U': cannot be read as a slide: $U: reading pixels at \
(8, 8) level 0 (a 16x16 region): Bogus marker length"
else
    skip "--image unreadable.svs is refused" "$U is not available"
fi
check "slidescand still answers after the refusals" \
    eval 'slidescan ping >/dev/null'
check "nothing else was queued" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM scans")" = 1
out=$(cd "$W" && slidescan scan --slide R4 --stain KI67 \
      --image phantom:KI67:w_mm=0.6:h_mm=0.5 2>&1)
check "a phantom whose stain is --stain's is queued ($out)" test $? = 0
out=$(cd "$W" && slidescan scan --slide R6 --stain KI67 --image k.tif 2>&1)
check "a KI67 file under --stain KI67 is queued ($out)" test $? = 0
out=$(cd "$W" && slidescan scan --slide R7 --stain KI67 \
      --image k.tif@0.504 2>&1)
check "an @MPP within 1 % of the file's is queued ($out)" test $? = 0
out=$(cd "$W" && slidescan scan --slide R8 --stain KI67 \
      --image k.tif@0.25:force_mpp 2>&1)
check "a contradicting @MPP with :force_mpp is queued ($out)" test $? = 0
check "... the catalogue keeps :force_mpp" \
    test "$(sqlite3 "$DB" "SELECT image FROM scans WHERE slide = 'R8'")" = \
    "$W/k.tif@0.25:force_mpp"
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
