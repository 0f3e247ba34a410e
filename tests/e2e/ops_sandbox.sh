#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# slidescand inside the sandbox of etc/slidescand.service, without
# systemd: the unit is installed into a DESTDIR, its user comes from
# systemd-sysusers run on a copy of this machine's passwd and group, and
# a private mount namespace (unshare -m) rebuilds what systemd would set
# up from the unit's own lines:
#   ExecStart=               run literally from /usr/local (the DESTDIR
#                            bound there), with the shipped configuration
#                            in /etc/slidescan (a read-only overlay)
#   User=, Group=            the sysusers ids; no supplementary groups
#   StateDirectory=, RuntimeDirectory= (+Mode=)   /var/lib/slidescan and
#                            /run/slidescan, bound from this test's dirs
#   ProtectSystem=strict     every other mount read-only
#   ProtectHome=, PrivateTmp=   empty /home and /root, fresh /tmp, /var/tmp
#   ProtectProc=invisible, ProcSubset=pid   a new /proc mounted that way
#   CapabilityBoundingSet=, NoNewPrivileges=, UMask=
#   SystemCallFilter=, SystemCallErrorNumber=, SystemCallArchitectures=,
#   MemoryDenyWriteExecute=, RestrictAddressFamilies=, RestrictNamespaces=,
#   LockPersonality=, RestrictRealtime=   one seccomp filter built with
#                            libseccomp from `systemd-analyze syscall-filter`
#   Type=notify, WatchdogSec=   NOTIFY_SOCKET=/run/systemd/notify
# and the clean environment systemd passes.  Not emulated: the device
# cgroup (DevicePolicy=, DeviceAllow=), IPAddressDeny=/SocketBindDeny=
# (cgroup BPF), RestrictSUIDSGID=, KeyringMode=, RemoveIPC=.
#
# A probe run in the same sandbox first shows the sandbox bites (W+X
# memory, packet sockets, setuid, namespaces, writes outside the state
# directory are refused).  Then the real daemon scans a phantom slide and
# the worker analyses it (OpenBLAS under MemoryDenyWriteExecute=), files
# come out owned by the service user without world access, and the socket
# admits the group and keeps everyone else out.
. "$(dirname "$0")/../support/daemon_env.sh"

if [ "$(id -u)" != 0 ]; then
    skip "needs root (mount namespace, changing uid)"
    dtest_end
    exit 0
fi
for tool in unshare systemd-analyze systemd-sysusers setpriv python3; do
    if ! command -v $tool >/dev/null; then
        skip "$tool is not installed"
        dtest_end
        exit 0
    fi
done
if ! unshare -m --propagation private true 2>/dev/null ||
    ! python3 -c 'import ctypes; ctypes.CDLL("libseccomp.so.2")' \
        2>/dev/null; then
    skip "no mount namespaces here, or libseccomp2 is missing"
    dtest_end
    exit 0
fi

DEST=$T/dest
DESTDIR=$DEST BUILD=$BUILD "$ROOT/tools/install" >/dev/null ||
    { nok "install into DESTDIR"; dtest_end; exit 1; }
UNIT=$DEST/usr/local/lib/systemd/system/slidescand.service

# The service user, as systemd-sysusers would create it here.
SROOT=$T/sroot
mkdir -p "$SROOT/etc" "$SROOT/usr/lib"
cp /etc/passwd /etc/group "$SROOT/etc/"
cp -a "$DEST/usr/local/lib/sysusers.d" "$SROOT/usr/lib/"
systemd-sysusers --root="$SROOT" >/dev/null 2>&1
IFS=: read -r _ _ SUID SGID _ <<<"$(grep '^slidescan:' "$SROOT/etc/passwd")"
if [ -z "${SUID:-}" ]; then
    nok "systemd-sysusers creates slidescan in the private root"
    dtest_end
    exit 1
fi

# What the namespace shows at /etc (over the real one), /run/slidescan,
# /run/systemd and /var/lib/slidescan.  The socket directory sits in a
# directory every uid may traverse, for the access checks.
ETCADD=$T/etc-add
mkdir -p "$ETCADD/slidescan"
cp "$SROOT/etc/passwd" "$SROOT/etc/group" "$ETCADD/"
conf_merge "$DEST/etc/slidescan/slidescan.conf" \
"# -- merged in by ops_sandbox.sh: the fast simulator, a small phantom
[microscope]
phantom_w_mm = 1.0
phantom_h_mm = 0.8
[simulator]
time_scale = 0
sensor_w = 1024
sensor_h = 768
[scan]
calib_frames = 2" >"$ETCADD/slidescan/slidescan.conf"
PUB=$(mktemp -d /tmp/slidescan-sandbox.XXXXXX)
chmod 755 "$PUB"
RPID=
sandbox_cleanup() {
    if [ -n "$RPID" ]; then
        kill -TERM "$RPID" 2>/dev/null
        wait "$RPID" 2>/dev/null
    fi
    rm -rf "$PUB"
    dtest_cleanup
}
trap sandbox_cleanup EXIT
RUN=$PUB/run
STATE=$T/state
NDIR=$T/notify
mkdir -p "$RUN" "$STATE" "$NDIR"
chown "$SUID:$SGID" "$RUN" "$STATE"
chmod 750 "$RUN" "$STATE"
chmod 755 "$NDIR"
SOCK=$RUN/slidescand.sock
export SLIDESCAN_SOCKET=$SOCK
DB=$STATE/catalogue.db

# The system call allow list: @system-service less @setuid, expanded.
systemd-analyze syscall-filter 2>/dev/null | awk '
    /^@/ { g = $1; next }
    /^ *#/ || NF == 0 { next }
    { print g, $1 }' >"$T/groups"
python3 - "$T/groups" >"$T/allowed" <<'PY'
import sys
members = {}
for line in open(sys.argv[1]):
    g, m = line.split()
    members.setdefault(g, []).append(m)
def expand(g, seen=()):
    out = set()
    for m in members.get(g, []):
        out |= expand(m, seen + (g,)) if m.startswith("@") else {m}
    return out
print("\n".join(sorted(expand("@system-service") - expand("@setuid"))))
PY

cat >"$T/sandbox.py" <<'PY'
# Runs argv in the unit's sandbox; see the comment atop ops_sandbox.sh.
import ctypes, errno, os, subprocess, sys

uid, gid = int(sys.argv[1]), int(sys.argv[2])
etc_add, usr_local, state, run, notify, allowed_file = sys.argv[3:9]
argv = sys.argv[10:]                        # after "--"
libc = ctypes.CDLL(None, use_errno=True)
cap_last = int(open("/proc/sys/kernel/cap_last_cap").read())
allowed = set(open(allowed_file).read().split())

def sh(*a):
    subprocess.run(a, check=True)

def mounts():
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        yield f[4], f[5].split(",")

# Mounts: first everything that comes from this test's directory, then
# PrivateTmp hides that directory.
sh("mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s:/etc" % etc_add,
   "/etc")
sh("mount", "--bind", usr_local, "/usr/local")
sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
for d in ("/run/slidescan", "/run/systemd"):
    os.mkdir(d)
sh("mount", "--bind", run, "/run/slidescan")
sh("mount", "--bind", notify, "/run/systemd")
sh("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/var/lib")
os.mkdir("/var/lib/slidescan")
sh("mount", "--bind", state, "/var/lib/slidescan")
for d in ("/home", "/root"):
    if os.path.isdir(d):
        sh("mount", "-t", "tmpfs", "-o", "ro,mode=755", "tmpfs", d)
for d in ("/tmp", "/var/tmp"):
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", d)
writable = ("/run/slidescan", "/var/lib/slidescan", "/tmp", "/var/tmp")
# Mounts the machine had below the directories covered by a fresh tmpfs
# above (a user's tmpfs in /tmp, say) are hidden by it: nothing reaches
# them, and their paths no longer exist to be remounted.
covered = ("/run/", "/var/lib/", "/home/", "/root/", "/tmp/", "/var/tmp/")
for mp, opts in list(mounts()):
    if mp in writable or "ro" in opts or mp.startswith(("/dev", "/proc")):
        continue
    if mp.startswith(covered) and not mp.startswith(
            ("/run/slidescan", "/run/systemd", "/var/lib/slidescan")):
        continue
    sh("mount", "-o", "remount,bind,ro", mp)
sh("mount", "-t", "proc", "-o", "nosuid,nodev,noexec,hidepid=invisible,"
   "subset=pid", "proc", "/proc")
os.chdir("/")

# Identity and privileges.
for cap in range(cap_last + 1):
    if libc.prctl(24, cap, 0, 0, 0) != 0:          # PR_CAPBSET_DROP
        sys.exit("sandbox: cannot drop capability %d" % cap)
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
if libc.prctl(38, 1, 0, 0, 0) != 0:                # PR_SET_NO_NEW_PRIVS
    sys.exit("sandbox: PR_SET_NO_NEW_PRIVS failed")
os.umask(0o027)

# The seccomp filter.
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
sc = ctypes.CDLL("libseccomp.so.2")
sc.seccomp_init.restype = ctypes.c_void_p
sc.seccomp_init.argtypes = [ctypes.c_uint32]
sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
sc.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                      ctypes.c_int, ctypes.c_uint,
                                      ctypes.POINTER(Cmp)]
sc.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, EQ, MASKED_EQ = 0x7fff0000, 4, 7
def ERRNO(e):
    return 0x00050000 | e
ctx = sc.seccomp_init(ERRNO(errno.EPERM))          # SystemCallErrorNumber=

def rule(action, name, *conds):
    if name not in allowed:
        return
    nr = sc.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return
    arr = (Cmp * max(1, len(conds)))(*[Cmp(*c) for c in conds])
    rc = sc.seccomp_rule_add_array(ctx, action, nr, len(conds), arr)
    if rc != 0:
        sys.exit("sandbox: seccomp rule for %s: %d" % (name, rc))

PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000
NS = 0x7e020080                 # every CLONE_NEW* flag
special = {"socket", "mmap", "mprotect", "pkey_mprotect", "shmat", "clone",
           "clone3", "unshare", "setns", "personality", "sched_setscheduler"}
for name in allowed - special:
    rule(ALLOW, name)
for fam in range(46):           # RestrictAddressFamilies=
    ok = fam in (1, 2, 10, 16)  # AF_UNIX AF_INET AF_INET6 AF_NETLINK
    rule(ALLOW if ok else ERRNO(errno.EAFNOSUPPORT), "socket", (0, EQ, fam, 0))
for v in (0, PROT_WRITE, PROT_EXEC):                # MemoryDenyWriteExecute=
    rule(ALLOW, "mmap", (2, MASKED_EQ, PROT_WRITE | PROT_EXEC, v))
rule(ALLOW, "mprotect", (2, MASKED_EQ, PROT_EXEC, 0))
rule(ALLOW, "pkey_mprotect", (2, MASKED_EQ, PROT_EXEC, 0))
rule(ALLOW, "shmat", (2, MASKED_EQ, SHM_EXEC, 0))
rule(ALLOW, "clone", (0, MASKED_EQ, NS, 0))         # RestrictNamespaces=
rule(ALLOW, "unshare", (0, MASKED_EQ, NS, 0))
rule(ERRNO(errno.ENOSYS), "clone3")                 # (flags unreadable)
rule(ALLOW, "personality", (0, EQ, 0, 0))           # LockPersonality=
rule(ALLOW, "personality", (0, EQ, 0xffffffff, 0))
for pol in (0, 3, 5):           # RestrictRealtime=: OTHER, BATCH, IDLE
    rule(ALLOW, "sched_setscheduler", (1, EQ, pol, 0))
if sc.seccomp_load(ctx) != 0:
    sys.exit("sandbox: seccomp_load failed")

env = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/var/lib/slidescan", "USER": "slidescan",
    "LOGNAME": "slidescan", "SHELL": "/usr/sbin/nologin",
    "INVOCATION_ID": os.urandom(16).hex(),
    "RUNTIME_DIRECTORY": "/run/slidescan",
    "STATE_DIRECTORY": "/var/lib/slidescan",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "WATCHDOG_USEC": os.environ.get("WATCHDOG_USEC", "30000000"),
    "WATCHDOG_PID": str(os.getpid()),
}
# Under `make sanitize`: ASan and UBSan keep working in the sandbox, but
# LeakSanitizer stops the process with ptrace at exit, which the
# sandbox's seccomp filter refuses (as systemd's would).  Leaks are
# checked by every other daemon test, outside the sandbox.
for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
    if k in os.environ:
        env[k] = os.environ[k]
if "ASAN_OPTIONS" in env:
    env["ASAN_OPTIONS"] += ":detect_leaks=0"
os.execve(argv[0], argv, env)
PY

# sandbox CMD...: runs CMD in the sandbox (exec: the pid is CMD's).
sandbox() {
    exec unshare -m --propagation private python3 "$T/sandbox.py" \
        "$SUID" "$SGID" "$ETCADD" "$DEST/usr/local" "$STATE" "$RUN" \
        "$NDIR" "$T/allowed" -- "$@"
}

# The probe: what the sandbox allows and refuses, as JSON.
cat >"$T/probe.py" <<'PY'
import ctypes, errno, json, mmap, os, socket
r = {}
def attempt(key, fn):
    try:
        fn()
        r[key] = "ok"
    except OSError as e:
        r[key] = errno.errorcode.get(e.errno, str(e.errno))
attempt("wx_mmap", lambda: mmap.mmap(-1, 4096, prot=7))
attempt("rw_mmap", lambda: mmap.mmap(-1, 4096, prot=3))
attempt("af_packet", lambda: socket.socket(17, socket.SOCK_RAW).close())
attempt("af_inet", lambda: socket.socket(socket.AF_INET).close())
attempt("setuid", lambda: os.setuid(os.getuid()))
libc = ctypes.CDLL(None, use_errno=True)
def unshare():
    if libc.unshare(0x20000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
attempt("unshare_mnt", unshare)
attempt("write_etc", lambda: open("/etc/slidescan/probe", "w"))
attempt("write_usr", lambda: open("/usr/local/bin/probe", "w"))
attempt("write_state", lambda: open("/var/lib/slidescan/probe", "w"))
os.unlink("/var/lib/slidescan/probe") if r["write_state"] == "ok" else None
r["tmp_entries"] = len(os.listdir("/tmp"))
r["home_entries"] = len(os.listdir("/home"))
r["proc_cpuinfo"] = os.path.exists("/proc/cpuinfo")
r["proc_pid1"] = os.path.exists("/proc/1")
r["uid"], r["gid"], r["groups"] = os.getuid(), os.getgid(), os.getgroups()
r["umask"] = oct(os.umask(0o022))
st = dict(l.split(":", 1) for l in open("/proc/self/status"))
for k in ("NoNewPrivs", "Seccomp", "CapBnd", "CapEff"):
    r[k] = st[k].strip()
print(json.dumps(r))
PY
# The probe script must be inside the namespace: the state dir is.
cp "$T/probe.py" "$STATE/probe.py"
chmod 644 "$STATE/probe.py"
probe=$( (sandbox /usr/bin/python3 /var/lib/slidescan/probe.py) 2>&1)
rm -f "$STATE/probe.py"
echo "# probe: $probe"
pj() {      # pj KEY: the probe's value for KEY
    python3 -c 'import json, sys
print(json.loads(sys.argv[1])[sys.argv[2]])' "$probe" "$1" 2>/dev/null
}
check "probe runs in the sandbox" test -n "$(pj uid)"
check "runs as the sysusers uid/gid $SUID/$SGID, no groups, umask 0o27" \
    test "$(pj uid) $(pj gid) $(pj groups) $(pj umask)" = \
    "$SUID $SGID [] 0o27"
check "no capabilities, NoNewPrivs, seccomp filter mode" \
    test "$(pj CapBnd) $(pj CapEff) $(pj NoNewPrivs) $(pj Seccomp)" = \
    "0000000000000000 0000000000000000 1 2"
check "W+X mapping refused (EPERM), RW mapping allowed" \
    test "$(pj wx_mmap) $(pj rw_mmap)" = "EPERM ok"
check "AF_PACKET refused (EAFNOSUPPORT), AF_INET allowed" \
    test "$(pj af_packet) $(pj af_inet)" = "EAFNOSUPPORT ok"
check "setuid and a new mount namespace refused (EPERM)" \
    test "$(pj setuid) $(pj unshare_mnt)" = "EPERM EPERM"
check "/etc and /usr read-only (EROFS), the state directory writable" \
    test "$(pj write_etc) $(pj write_usr) $(pj write_state)" = \
    "EROFS EROFS ok"
check "private empty /tmp, empty /home" \
    test "$(pj tmp_entries) $(pj home_entries)" = "0 0"
check "/proc shows neither /proc/cpuinfo nor other users' processes" \
    test "$(pj proc_cpuinfo) $(pj proc_pid1)" = "False False"

# The notify socket systemd would offer, writable by the service.
python3 - "$NDIR/notify" "$T/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
out = open(sys.argv[2], "a", buffering=1)
out.write("# listening\n")
while True:
    out.write(s.recv(4096).decode("utf-8", "replace").replace("\n", "|")
              + "\n")
PY
RPID=$!
wait_until 10 "grep -q listening '$T/notify.log'"

read -r -a execstart <<<"$(sed -n 's/^ExecStart=//p' "$UNIT")"
echo "# ExecStart: ${execstart[*]}"
(sandbox "${execstart[@]}") >>"$LOG" 2>&1 &
DPID=$!
if ! wait_until 30 "grep -q '^READY=1' '$T/notify.log'"; then
    nok "READY=1 from slidescand in the sandbox"
    kill -0 "$DPID" 2>/dev/null || DPID=
    tail -5 "$LOG" | sed 's/^/# log: /'
    dtest_end
    exit 1
fi
ok "READY=1 from slidescand in the sandbox"
quiet() { "$@" >/dev/null 2>&1; }
check "root reaches the socket and is admitted" quiet slidescan ping
check "the daemon runs as uid $SUID with the seccomp filter" test \
    "$(awk '/^Uid:/ { print $2 } /^Seccomp:/ { print $2 }' \
    "/proc/$DPID/status" | tr '\n' ' ')" = "$SUID 2 "
check "socket is srw-rw---- slidescan:slidescan, directory 0750" test \
    "$(stat -c '%A %u:%g' "$SOCK") $(stat -c %a "$RUN")" = \
    "srw-rw---- $SUID:$SGID 750"
client=$(command -v slidescan)
out=$(setpriv --reuid=65534 --regid=65534 --groups="$SGID" \
    "$client" ping 2>&1)
check "a member of group slidescan is admitted" test $? = 0
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$client" ping 2>&1)
rc=$?
echo "# non-member: $out"
check "anyone else is kept out by the socket directory (exit $rc)" \
    test $rc != 0 -a -n "$(grep -i 'permission denied' <<<"$out")"

out=$(slidescan scan --slide SANDBOX-1 --stain HE)
check "a scan is queued" grep -q '^queued scan 1' <<<"$out"
check "the scan is done (WSI written)" wait_until 150 \
    'test "$(scan_state 1)" = done'
analysis() { sqlite3 "$DB" "SELECT state FROM analyses WHERE scan = 1"; }
check "the worker analysed it" \
    wait_until 120 'test "$(analysis)" = done'
model=$(sqlite3 "$DB" "SELECT json_extract(results, '\$.model') FROM
    analyses WHERE scan = 1")
# The worker falls back to the classical baseline when it finds no model
# file; with a clean environment only share/slidescan/models beside the
# installed worker can provide the CNN.
check "... the CNN from share/slidescan/models ($model), not the fallback" \
    test -n "$model" -a "${model#classical}" = "$model"
wsi=$(sqlite3 "$DB" "SELECT wsi_path FROM scans WHERE id = 1")
check "the slide image is in the state directory ($wsi)" \
    test -n "$wsi" -a -s "$STATE/${wsi#/var/lib/slidescan/}"
foreign=$(find "$STATE" ! -uid "$SUID" | head -3)
worldly=$(find "$STATE" -perm /o=rwx | head -3)
check "every file belongs to the service user (${foreign:-all})" \
    test -z "$foreign"
check "no file or directory is open to others (UMask=0027)" \
    test -z "$worldly"
grep -c . "$T/notify.log" | sed 's/^/# notify messages: /'

# PrivateTmp: a slide image under the machine's /tmp is not there for
# the service (etc/README.md, LIMIT).
: >"$PUB/hidden.svs"
chmod 644 "$PUB/hidden.svs"
reason=$(slidescan scan --slide SANDBOX-2 --stain HE \
         --image "$PUB/hidden.svs" 2>&1 >/dev/null)
echo "# scan of $PUB/hidden.svs: $reason"
check "an image under /tmp is invisible to the service (refused, named)" \
    grep -q "$PUB/hidden.svs: no such file" <<<"$reason"

kill -TERM "$DPID"
wait "$DPID"
rc=$?
DPID=
check "SIGTERM stops it with status 0" test $rc = 0
check "STOPPING=1 was sent" grep -q '^STOPPING=1' "$T/notify.log"
if [ "$tap_failed" -gt 0 ]; then
    grep -iE 'error|warn|denied|permission|EPERM' "$LOG" | head -20 |
        sed 's/^/# log: /'
fi
dtest_end
