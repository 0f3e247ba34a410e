#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 30
#
# slidescand's configuration checks (`slidescand --check -c FILE`): the
# shipped etc/slidescan.conf is valid, and each kind of mistake stops the
# start with one line naming the file, the line, the section and key, and
# the cause, whether the key is the daemon's own or one a driver checks
# ([simulator], [deadlines], [storage]).
. "$(dirname "$0")/../support/daemon_env.sh"

out=$(slidescand --check -c "$ROOT/etc/slidescan.conf" 2>&1)
check "the shipped etc/slidescan.conf is valid" \
    test "$out" = "$ROOT/etc/slidescan.conf: ok"

# expect NAME 'INI TEXT' 'EXPECTED MESSAGE AFTER "slidescand: FILE"'
expect() {
    local f=$T/$1.conf out rc
    printf '%b' "$2" >"$f"
    out=$(slidescand --check -c "$f" 2>&1)
    rc=$?
    if [ $rc = 1 ] && [ "$out" = "slidescand: $f$3" ]; then
        ok "$1: $3"
    else
        nok "$1: exit $rc, got: $out"
    fi
}

expect unknown-section '[daemon]\n\n[cameras]\nport = x\n' \
    ':4: [cameras] port: unknown section'
expect unknown-key '[scan]\noverlap = 0.1\nover1ap = 0.2\n' \
    ':3: [scan] over1ap: unknown key'
expect out-of-range '[scan]\noverlap = 0.9\n' \
    ':2: [scan] overlap: 0.9 is outside 0.01..0.5'
expect not-a-number '[daemon]\ndevice_retry_s = soon\n' \
    ":2: [daemon] device_retry_s: 'soon' is not a number"
expect bad-bool '[analysis]\nauto = maybe\n' \
    ":2: [analysis] auto: 'maybe' is not yes or no"
expect bad-mode '[daemon]\nsocket_mode = rw\n' \
    ":2: [daemon] socket_mode: 'rw' is not an octal mode like 0660"
expect bad-driver '[microscope]\ndriver = webcam\n' \
    ":2: [microscope] driver: 'webcam' is not simulator or hardware"
expect profile-stain '[profile PAS]\nexposure_ms = 100\n' \
    ':2: [profile PAS] exposure_ms: unknown stain; profiles are HE, KI67 and CK'
expect profile-wb '[profile HE]\nwb = 1, 1\n' \
    ":2: [profile HE] wb: '1, 1' is not three positive multipliers R, G, B like 1.0, 1.0, 1.0"
expect syntax 'not a key\n' ':1: not a section, key = value or comment'
expect relative '[daemon]\ndata_dir = data\n' \
    ": [daemon] data_dir: 'data' is not an absolute path"
expect objective '[profile CK]\nobjective = 40x\n' \
    ': [profile CK] objective: 40x, but the microscope has 20x ([microscope] objective)'
out=$(printf '[simulator]\nwarp = 9\n' >"$T/sim.conf"
      slidescand --check -c "$T/sim.conf" 2>&1)
check "a [simulator] key is checked by the simulator, with file and line" \
    grep -q "^slidescand: $T/sim.conf:2: \[simulator\] warp: " <<<"$out"
out=$(printf '[deadlines]\ncapture_ms = -5\n' >"$T/dl.conf"
      slidescand --check -c "$T/dl.conf" 2>&1)
check "a [deadlines] key is checked by the guard, with file and line" \
    grep -q "^slidescand: $T/dl.conf:2: \[deadlines\] capture_ms: " <<<"$out"
out=$(slidescand --check -c "$T/missing.conf" 2>&1)
check "a missing file given with -c is an error naming it" \
    grep -q "^slidescand: $T/missing.conf: cannot read: No such file" \
    <<<"$out"
dtest_end
