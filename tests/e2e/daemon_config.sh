#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 30
#
# slidescand's configuration checks (`slidescand --check -c FILE`): the
# shipped etc/slidescan.conf is valid, and each kind of mistake stops the
# start with one line naming the file, the line, the section and key, and
# the cause, whether the key is the daemon's own or one a driver checks
# ([simulator], [deadlines], [storage]), or what the machine lacks (the
# analysis worker, the model file).
. "$(dirname "$0")/../support/daemon_env.sh"

# The shipped file, with the paths and group it wants of an installed
# machine (/run, /var/lib, group slidescan) moved into the test's own
# directory and group: the rest of it must pass as it is.
sed -e "s|^socket = .*|socket = $T/shipped/s.sock|" \
    -e "s|^data_dir = .*|data_dir = $T/shipped/data|" \
    -e "s|^group = .*|group = $(id -gn)|" \
    "$ROOT/etc/slidescan.conf" >"$T/shipped.conf"
out=$(slidescand --check -c "$T/shipped.conf" 2>&1)
check "the shipped etc/slidescan.conf is valid ($out)" \
    test "$out" = "$T/shipped.conf: ok"
check "... and --check created nothing" test ! -e "$T/shipped"

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
    ":2: [daemon] data_dir: 'data' is not an absolute path"
expect objective '[profile CK]\nobjective = 40x\n' \
    ':2: [profile CK] objective: 40x, but the microscope has 20x ([microscope] objective)'
expect duplicate '[scan]\noverlap = 0.1\n\n[scan]\noverlap = 0.2\n' \
    ':5: [scan] overlap: set again; it is already set on line 2'
expect continuation '[daemon]\nsocket_mode = 0660\n  0600\n' \
    ':3: [daemon] socket_mode: a continuation line (it begins with a blank); write the value on the key'"'"'s line'
expect no-group '[daemon]\ngroup = no-such-group-x\n' \
    ":2: [daemon] group: no group named 'no-such-group-x' (create it, e.g. with systemd-sysusers, or set group = to admit root and the daemon's user only)"
long=$T/$(printf 'd%.0s' $(seq 1 110))/s.sock
expect long-socket "[daemon]\ngroup =\nsocket = $long\n" \
    ":3: [daemon] socket: '$long' is ${#long} bytes, longer than a unix socket path may be (107 bytes)"
# The analysis worker and model: every analysis would fail without them.
here="[daemon]\ngroup =\nsocket = $T/w/s.sock\ndata_dir = $T/w/data\n"
expect worker-missing "${here}worker = /nonexistent/worker\n" \
    ':5: [daemon] worker: /nonexistent/worker: No such file or directory; analyses could not run'
printf '#!/bin/sh\n' >"$T/not-exec"
chmod 0644 "$T/not-exec"
# (root too: execve and access(X_OK) want an execute bit even for root)
expect worker-not-executable "${here}worker = $T/not-exec\n" \
    ":5: [daemon] worker: $T/not-exec: Permission denied; analyses could not run"
expect worker-directory "${here}worker = $T\n" \
    ":5: [daemon] worker: $T is not a file; analyses could not run"
expect worker-not-in-path "${here}worker = no-such-worker-x\n" \
    ":5: [daemon] worker: no program named 'no-such-worker-x' in PATH; analyses could not run"
expect model-missing \
    "$here[analysis]\nmodel = /nonexistent/model.safetensors\n" \
    ':6: [analysis] model: /nonexistent/model.safetensors: No such file or directory; analyses could not run'
echo "not a model" >"$T/text.safetensors"
expect model-not-a-model "$here[analysis]\nmodel = $T/text.safetensors\n" \
    ":6: [analysis] model: $T/text.safetensors: not a safetensors file \
(header length 8029109312199880558, file 12 bytes); analyses could not run"
head -c 100000 "$ROOT/models/default.safetensors" \
    >"$T/short.safetensors"
out=$(printf "$here[analysis]\nmodel = $T/short.safetensors\n" \
      >"$T/short.conf"; slidescand --check -c "$T/short.conf" 2>&1)
check "a model file cut short is refused, naming it ($out)" grep -q \
    "^slidescand: $T/short.conf:6: \[analysis\] model: .*short.safetensors.*; analyses could not run$" \
    <<<"$out"
# The shipped model with its first tensor's data overwritten by NaN: the
# weights are refused at the check, naming the file, tensor and element.
python3 - "$ROOT/models/default.safetensors" "$T/nan.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
lo, hi = min(v["data_offsets"] for k, v in h.items() if k != "__metadata__")
b[8 + n + lo:8 + n + hi] = struct.pack("<I", 0x7fc00000) * ((hi - lo) // 4)
open(sys.argv[2], "wb").write(b)
PY
out=$(printf "$here[analysis]\nmodel = $T/nan.safetensors\n" \
      >"$T/nan.conf"; slidescand --check -c "$T/nan.conf" 2>&1)
rc=$?
check "a model with NaN weights fails the check ($rc)" [ $rc != 0 ]
check "... naming file, tensor and first element ($out)" test "$out" = \
    "slidescand: $T/nan.conf:6: [analysis] model: $T/nan.safetensors: \
tensor e1.conv.weight: element 0 [0, 0, 0, 0] is NaN; the weights must all \
be finite numbers; analyses could not run"
printf "${here}[analysis]\nmodel = classical\n" >"$T/classical.conf"
out=$(slidescand --check -c "$T/classical.conf" 2>&1)
check "model = classical is the built-in model, no file ($out)" \
    test "$out" = "$T/classical.conf: ok"
mkdir -p "$T/a-dir.conf"
out=$(slidescand --check -c "$T/a-dir.conf" 2>&1)
check "a directory given with -c is refused, naming it" \
    test "$out" = "slidescand: $T/a-dir.conf: cannot read: is a directory"
out=$(printf '[simulator]\nwarp = 9\n' >"$T/sim.conf"
      slidescand --check -c "$T/sim.conf" 2>&1)
check "a [simulator] key is checked by the simulator, with file and line" \
    grep -q "^slidescand: $T/sim.conf:2: \[simulator\] warp: " <<<"$out"
out=$(printf '[deadlines]\ncapture_ms = -5\n' >"$T/dl.conf"
      slidescand --check -c "$T/dl.conf" 2>&1)
check "a [deadlines] key is checked by the guard, with file and line" \
    test "$out" = "slidescand: $T/dl.conf:2: [deadlines] capture_ms: -5 is \
outside 0..86400000"
out=$(printf '[deadlines]\nmove_ms = 4000000000\n' >"$T/dl2.conf"
      slidescand --check -c "$T/dl2.conf" 2>&1)
check "... naming the value as written, the key once" \
    test "$out" = "slidescand: $T/dl2.conf:2: [deadlines] move_ms: \
4000000000 is outside 0..86400000"
out=$(printf '[deadlines]\nbusy_ms = soon\n' >"$T/dl3.conf"
      slidescand --check -c "$T/dl3.conf" 2>&1)
check "... and a word as a word" test "$out" = \
    "slidescand: $T/dl3.conf:2: [deadlines] busy_ms: 'soon' is not a number"
out=$(slidescand --check -c "$T/missing.conf" 2>&1)
check "a missing file given with -c is an error naming it" \
    grep -q "^slidescand: $T/missing.conf: cannot read: No such file" \
    <<<"$out"
dtest_end
