#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A fake PTP/IP camera for the camera driver's tests (Python stdlib only).

It listens on 127.0.0.1 only, on an ephemeral port that it writes to
--port-file, and speaks enough PTP over PTP/IP for libgphoto2's ptp2 driver
to open a session, capture, download, delete, read and set exposure and ISO,
and (with --vendor sony) fetch live-view frames.  The event channel uses the
same port as the command channel, so the driver's port string is
"ptpip:127.0.0.1:P:P".

Its behaviour is steered by a JSON file (--control) that it re-reads before
every operation, so a test can change it between calls:
  busy_captures    list of capture attempt numbers (1-based) that answer
                   Device Busy
  busy_always      every capture answers Device Busy
  held             new connections get Init Fail (another host is
                   connected, the PTP/IP equivalent of a claimed interface)
  gone             new connections are closed at once and a running
                   session is dropped (camera switched off or unplugged)
  hang             name of an operation that is never answered
                   ("GetObject", "InitiateCapture")
  image            JPEG file served for every capture
  image_dir, position_file
                   serve "<image_dir>/<x>_<y>.jpg" for the stage position
                   "x y z" (µm, rounded) read from position_file, falling
                   back to "<image_dir>/default.jpg"
  preview          JPEG file served as the live-view frame
Every operation is appended to --log as one line "OpName param..." so a
test can check what the driver did.
"""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

OP = {
    0x1001: "GetDeviceInfo", 0x1002: "OpenSession", 0x1003: "CloseSession",
    0x1004: "GetStorageIDs", 0x1005: "GetStorageInfo",
    0x1006: "GetNumObjects", 0x1007: "GetObjectHandles",
    0x1008: "GetObjectInfo", 0x1009: "GetObject", 0x100A: "GetThumb",
    0x100B: "DeleteObject", 0x100E: "InitiateCapture",
    0x1014: "GetDevicePropDesc", 0x1015: "GetDevicePropValue",
    0x1016: "SetDevicePropValue",
}
RC_OK, RC_GENERAL, RC_NOT_SUPPORTED = 0x2001, 0x2002, 0x2005
RC_BAD_HANDLE, RC_BUSY, RC_BAD_PROP = 0x2009, 0x2019, 0x200A
EV_OBJECT_ADDED, EV_CAPTURE_COMPLETE = 0x4002, 0x400D
STORAGE = 0x00010001
PREVIEW_HANDLE = 0xFFFFC002
PROP_EXPOSURE_TIME, PROP_ISO = 0x500D, 0x500F
EXPOSURES = [1, 2, 5, 10, 20, 40, 80, 125, 250, 500, 1000, 2500, 5000,
             10000, 20000, 40000, 80000, 100000]   # 0.1 ms units
ISOS = [100, 200, 400, 800, 1600, 3200]


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


def ptp_str(s):
    if not s:
        return b"\0"
    data = (s + "\0").encode("utf-16-le")
    return struct.pack("<B", len(s) + 1) + data


def ptp_array16(vals):
    return u32(len(vals)) + b"".join(u16(v) for v in vals)


def ptp_array32(vals):
    return u32(len(vals)) + b"".join(u32(v) for v in vals)


def packet(ptype, payload=b""):
    return u32(8 + len(payload)) + u32(ptype) + payload


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def read_packet(sock):
    length, ptype = struct.unpack("<II", read_exact(sock, 8))
    return ptype, read_exact(sock, length - 8)


class Camera:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.sessions = {}
        self.next_conn = 1
        self.captures = 0
        self.next_handle = 1
        self.objects = {}
        self.exposure = 2500
        self.iso = 100
        self.log_lock = threading.Lock()

    def control(self):
        try:
            with open(self.args.control) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def log(self, line):
        with self.log_lock:
            with open(self.args.log, "a") as f:
                f.write(line + "\n")

    def device_info(self):
        vendor = 0x11 if self.args.vendor == "sony" else 0
        ops = sorted(OP)
        return (u16(100) + u32(vendor) + u16(100) + ptp_str("") + u16(0) +
                ptp_array16(ops) +
                ptp_array16([EV_OBJECT_ADDED, EV_CAPTURE_COMPLETE]) +
                ptp_array16([PROP_EXPOSURE_TIME, PROP_ISO]) +
                ptp_array16([0x3801]) + ptp_array16([0x3801]) +
                ptp_str("Slidescan Test") + ptp_str("Fake PTP/IP Camera") +
                ptp_str("1.0") + ptp_str("FAKE0001"))

    def storage_info(self):
        return (u16(4) + u16(2) + u16(0) + struct.pack("<QQ", 1 << 30,
                1 << 29) + u32(1000) + ptp_str("RAM") + ptp_str("RAM"))

    def object_info(self, handle, size, name):
        return (u32(STORAGE) + u16(0x3801) + u16(0) + u32(size) +
                u16(0) + u32(0) + u32(0) + u32(0) + u32(0) + u32(0) +
                u32(0) + u32(0) + u16(0) + u32(0) + u32(0) +
                ptp_str(name) + ptp_str("20240101T000000") +
                ptp_str("20240101T000000") + ptp_str(""))

    def prop_desc(self, code):
        if code == PROP_EXPOSURE_TIME:
            return (u16(code) + u16(0x0006) + struct.pack("<B", 1) +
                    u32(2500) + u32(self.exposure) + struct.pack("<B", 2) +
                    u16(len(EXPOSURES)) +
                    b"".join(u32(v) for v in EXPOSURES))
        if code == PROP_ISO:
            return (u16(code) + u16(0x0004) + struct.pack("<B", 1) +
                    u16(100) + u16(self.iso) + struct.pack("<B", 2) +
                    u16(len(ISOS)) + b"".join(u16(v) for v in ISOS))
        return None

    def capture_image(self, ctl):
        if ctl.get("image_dir") and ctl.get("position_file"):
            try:
                with open(ctl["position_file"]) as f:
                    x, y = [float(v) for v in f.read().split()[:2]]
                path = os.path.join(ctl["image_dir"],
                                    "%d_%d.jpg" % (round(x), round(y)))
                if os.path.exists(path):
                    return path
            except (OSError, ValueError):
                pass
            return os.path.join(ctl["image_dir"], "default.jpg")
        return ctl.get("image") or self.args.image


class Session(threading.Thread):
    def __init__(self, cam, sock, conn):
        super().__init__(daemon=True)
        self.cam, self.sock, self.conn = cam, sock, conn
        self.evt = None
        self.evt_ready = threading.Event()
        self.alive = True

    def send(self, data):
        self.sock.sendall(data)

    def respond(self, code, tid, params=()):
        self.send(packet(7, u16(code) + u32(tid) +
                         b"".join(u32(p) for p in params)))

    def send_data(self, tid, data):
        self.send(packet(9, u32(tid) + struct.pack("<Q", len(data))))
        pos = 0
        while len(data) - pos > 65536:
            self.send(packet(10, u32(tid) + data[pos:pos + 65536]))
            pos += 65536
        self.send(packet(12, u32(tid) + data[pos:]))

    def event(self, code, tid, params=()):
        if self.evt is not None:
            self.evt.sendall(packet(8, u16(code) + u32(tid) +
                                    b"".join(u32(p) for p in params)))

    def receive_data(self):
        ptype, payload = read_packet(self.sock)
        total = struct.unpack("<Q", payload[4:12])[0]
        data = b""
        while len(data) < total:
            ptype, payload = read_packet(self.sock)
            data += payload[4:]
            if ptype == 12:
                break
        return data

    def drop(self):
        self.alive = False
        for s in (self.sock, self.evt):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def run(self):
        try:
            while self.alive:
                ptype, payload = read_packet(self.sock)
                if ptype == 13:
                    self.send(packet(14))
                    continue
                if ptype != 6:
                    continue
                self.operation(payload)
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            self.drop()

    def operation(self, payload):
        dataphase, code, tid = struct.unpack("<IHI", payload[:10])
        nparams = (len(payload) - 10) // 4
        params = struct.unpack("<%dI" % nparams, payload[10:10 + 4 * nparams])
        cam = self.cam
        ctl = cam.control()
        name = OP.get(code, "0x%04x" % code)
        cam.log(" ".join([name] + ["0x%x" % p for p in params]))
        if ctl.get("gone"):
            self.drop()
            return
        if ctl.get("hang") == name:
            while self.alive and cam.control().get("hang") == name:
                time.sleep(0.05)
            return
        handler = getattr(self, "op_" + name, None)
        if handler is None:
            self.respond(RC_NOT_SUPPORTED, tid)
            return
        handler(tid, params, ctl)

    def op_GetDeviceInfo(self, tid, params, ctl):
        self.send_data(tid, self.cam.device_info())
        self.respond(RC_OK, tid)

    def op_OpenSession(self, tid, params, ctl):
        self.respond(RC_OK, tid)

    def op_CloseSession(self, tid, params, ctl):
        self.respond(RC_OK, tid)

    def op_GetStorageIDs(self, tid, params, ctl):
        self.send_data(tid, ptp_array32([STORAGE]))
        self.respond(RC_OK, tid)

    def op_GetStorageInfo(self, tid, params, ctl):
        self.send_data(tid, self.cam.storage_info())
        self.respond(RC_OK, tid)

    def op_GetNumObjects(self, tid, params, ctl):
        self.respond(RC_OK, tid, [len(self.cam.objects)])

    def op_GetObjectHandles(self, tid, params, ctl):
        self.send_data(tid, ptp_array32(sorted(self.cam.objects)))
        self.respond(RC_OK, tid)

    def object_bytes(self, handle, ctl):
        if handle == PREVIEW_HANDLE and self.cam.args.vendor == "sony":
            path = ctl.get("preview") or self.cam.args.image
            with open(path, "rb") as f:
                return f.read(), "preview.jpg"
        obj = self.cam.objects.get(handle)
        if obj is None:
            return None, None
        return obj

    def op_GetObjectInfo(self, tid, params, ctl):
        data, name = self.object_bytes(params[0], ctl)
        if data is None:
            self.respond(RC_BAD_HANDLE, tid)
            return
        self.send_data(tid, self.cam.object_info(params[0], len(data), name))
        self.respond(RC_OK, tid)

    def op_GetObject(self, tid, params, ctl):
        data, name = self.object_bytes(params[0], ctl)
        if data is None:
            self.respond(RC_BAD_HANDLE, tid)
            return
        self.send_data(tid, data)
        self.respond(RC_OK, tid)

    def op_DeleteObject(self, tid, params, ctl):
        if self.cam.objects.pop(params[0], None) is None:
            self.respond(RC_BAD_HANDLE, tid)
            return
        self.respond(RC_OK, tid)

    def op_InitiateCapture(self, tid, params, ctl):
        cam = self.cam
        with cam.lock:
            cam.captures += 1
            attempt = cam.captures
        if ctl.get("busy_always") or attempt in ctl.get("busy_captures", []):
            self.respond(RC_BUSY, tid)
            if ctl.get("busy_event"):
                self.event(EV_CAPTURE_COMPLETE, tid)
            return
        with open(cam.capture_image(ctl), "rb") as f:
            data = f.read()
        with cam.lock:
            handle = cam.next_handle
            cam.next_handle += 1
            cam.objects[handle] = (data, "capt%04d.jpg" % handle)
        self.respond(RC_OK, tid)
        self.event(EV_OBJECT_ADDED, tid, [handle])
        self.event(EV_CAPTURE_COMPLETE, tid)

    def op_GetDevicePropDesc(self, tid, params, ctl):
        desc = self.cam.prop_desc(params[0])
        if desc is None:
            self.respond(RC_BAD_PROP, tid)
            return
        self.send_data(tid, desc)
        self.respond(RC_OK, tid)

    def op_GetDevicePropValue(self, tid, params, ctl):
        if params[0] == PROP_EXPOSURE_TIME:
            self.send_data(tid, u32(self.cam.exposure))
        elif params[0] == PROP_ISO:
            self.send_data(tid, u16(self.cam.iso))
        else:
            self.respond(RC_BAD_PROP, tid)
            return
        self.respond(RC_OK, tid)

    def op_SetDevicePropValue(self, tid, params, ctl):
        data = self.receive_data()
        if params[0] == PROP_EXPOSURE_TIME and len(data) >= 4:
            self.cam.exposure = struct.unpack("<I", data[:4])[0]
            self.cam.log("exposure %d" % self.cam.exposure)
        elif params[0] == PROP_ISO and len(data) >= 2:
            self.cam.iso = struct.unpack("<H", data[:2])[0]
            self.cam.log("iso %d" % self.cam.iso)
        else:
            self.respond(RC_BAD_PROP, tid)
            return
        self.respond(RC_OK, tid)


def handle_connection(cam, sock):
    ctl = cam.control()
    if ctl.get("gone"):
        sock.close()
        return
    ptype, payload = read_packet(sock)
    if ptype == 1:
        if ctl.get("held"):
            cam.log("InitFail held")
            sock.sendall(packet(5, u32(0x2)))
            sock.close()
            return
        with cam.lock:
            conn = cam.next_conn
            cam.next_conn += 1
            sess = Session(cam, sock, conn)
            cam.sessions[conn] = sess
        name = "Fake PTP/IP Camera\0".encode("utf-16-le")
        sock.sendall(packet(2, u32(conn) + b"\x11" * 16 + name +
                            u16(0) + u16(1)))
        cam.log("InitCommand conn=%d" % conn)
        sess.start()
        watch = threading.Thread(target=watch_gone, args=(cam, sess),
                                 daemon=True)
        watch.start()
    elif ptype == 3:
        conn = struct.unpack("<I", payload[:4])[0]
        sess = cam.sessions.get(conn)
        if sess is None:
            sock.sendall(packet(5, u32(1)))
            sock.close()
            return
        sess.evt = sock
        sock.sendall(packet(4))
        cam.log("InitEvent conn=%d" % conn)
    else:
        sock.close()


def watch_gone(cam, sess):
    """Drops a running session as soon as the control says 'gone'."""
    while sess.alive:
        if cam.control().get("gone"):
            cam.log("Gone conn=%d" % sess.conn)
            sess.drop()
            return
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--image", default="")
    ap.add_argument("--vendor", choices=["generic", "sony"],
                    default="generic")
    args = ap.parse_args()
    cam = Camera(args)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.rename(tmp, args.port_file)
    parent = os.getppid()
    srv.settimeout(0.5)
    while True:
        if os.getppid() != parent:
            return 0
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            continue
        sock.settimeout(None)
        threading.Thread(target=guarded, args=(cam, sock),
                         daemon=True).start()


def guarded(cam, sock):
    try:
        handle_connection(cam, sock)
    except (ConnectionError, OSError, struct.error):
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
