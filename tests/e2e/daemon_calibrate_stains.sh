#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# `slidescan calibrate --stain KI67|CK` on the simulated microscope images
# the blank field under that stain's illumination, whatever slide the
# microscope holds: on a fresh daemon (the configured H&E phantom) and
# after an H&E scan, both stains calibrate (exit 0, the client names the
# calibration) and each calibration is recorded in the catalogue with its
# stain and exposure.  Under the H&E slide's light a 600 ms exposure clips
# the whole blank field.  A second H&E slide, a file that declares no
# stain, scans with the H&E profile: it reuses the H&E calibration and its
# glass comes out white.  A KI67 phantom with the H&E profile is refused
# when queued (exit 2): the slide's stain and the scan's must agree.
. "$(dirname "$0")/../support/daemon_env.sh"

dtest_conf
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
q() { sqlite3 "$DB" "$1"; }

calibrate() {   # calibrate STAIN WHEN
    local out rc
    out=$(slidescan calibrate --stain "$1" 2>&1)
    rc=$?
    echo "# $out"
    check "$2: calibrate --stain $1 exits 0 (exit $rc)" test $rc = 0
    check "$2: the client names the $1 calibration at 600 ms" \
        grep -q "^calibration [0-9]*: $1 20x at 600 ms" <<<"$out"
}

calibrate KI67 "fresh daemon"
calibrate CK "fresh daemon"
check "two calibrations recorded: KI67 and CK at 600 ms" \
    test "$(q "SELECT group_concat(stain || ' ' || exposure_ms, ',') FROM \
    (SELECT stain, exposure_ms FROM calibrations ORDER BY id)")" = \
    "KI67 600.0,CK 600.0"

slidescan scan --slide H --stain HE --image phantom:HE:w_mm=0.6:h_mm=0.5 \
    --wait >"$T/scan.out" 2>&1
check "an H&E scan completes" test $? = 0
calibrate KI67 "after an H&E scan"
calibrate CK "after an H&E scan"
check "the H&E scan's calibration and two more recorded (5 in all)" \
    test "$(q "SELECT COUNT(*) FROM calibrations WHERE stain IN \
    ('KI67', 'CK') AND exposure_ms = 600")-$(q "SELECT COUNT(*) FROM \
    calibrations WHERE stain = 'HE'")" = "4-1"

# A slide whose stain is not the profile's is refused when queued.
out=$(slidescan scan --slide K --stain HE \
      --image phantom:KI67:w_mm=0.6:h_mm=0.5 2>&1)
rc=$?
echo "# $out"
check "a KI67 phantom with the H&E profile is refused (exit $rc)" \
    test $rc = 2
check "... naming both stains" grep -q "args.stain: HE, but args.image \
'phantom:KI67:w_mm=0.6:h_mm=0.5' declares stain KI67" <<<"$out"

# A file slide that declares no stain takes the profile's: the lamp and
# exposure are the H&E profile's, so the H&E calibration still maps glass
# to white.
slidescan phantom --out "$T/k.png" --size-mm 0.6x0.5 --seed 5 >/dev/null
slidescan scan --slide K --stain HE --image "$T/k.png@0.5" \
    --wait >"$T/scan2.out" 2>&1
check "a second H&E slide scans with the H&E profile" test $? = 0
check "it reused the H&E calibration" test "$(q "SELECT calib FROM scans \
    WHERE slide = 'K'")" = "$(q "SELECT calib FROM scans WHERE slide = 'H'")"
if command -v vips >/dev/null; then
    wsi=$DATA/$(q "SELECT wsi_path FROM slides WHERE id = 'K'")
    vips openslideload "$wsi" "$T/k.v" --level 0 2>/dev/null &&
        vips extract_band "$T/k.v" "$T/k3.v" 0 --n 3 2>/dev/null
    # Glass is at least a tenth of the scan; its 95th percentile is glass.
    glass=$(vips percent "$T/k3.v" 95 2>/dev/null)
    check "glass of the second slide is white (95th percentile ${glass:-?} \
>= 200 of 255)" test "${glass:-0}" -ge 200
else
    skip "vips is not installed"
fi

dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
