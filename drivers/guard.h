/* SPDX-License-Identifier: MIT */
/*
 * Deadlines for device calls.  guard_microscope_wrap() replaces a
 * microscope's camera and stage with guarded ones: every call runs on a
 * thread of its own per device while the caller waits with a deadline per
 * operation (capture, move, ...; each half of a split capture, see
 * drivers/camera.h, has the capture deadline and its name in messages).
 * A call that misses its deadline returns
 * SS_ETIMEOUT ("camera: capture did not return within 20000 ms"); its
 * thread is abandoned, never joined, and the device object it is stuck in
 * is quarantined: nothing touches it again until the call comes back.  The
 * next call recreates the device through a factory callback, opens it and
 * re-applies the last camera settings (a reset).
 *
 * A device that answers "busy" is asked again a bounded number of times
 * with a growing pause measured on the microscope's clock; if it is still
 * busy it is reset once and asked again; then the call fails with
 * SS_EBUSY "camera busy".  Every retry, timeout and reset is counted so the
 * caller can record them with the tile (guard_counts_take()).
 *
 * guard_fault_action() is the scan policy for the codes these calls (and
 * the storage under a scan) return: retry the tile, fail the tile, pause
 * the scan, wait for the device or for disk space.
 */
#ifndef SS_DRIVERS_GUARD_H
#define SS_DRIVERS_GUARD_H

#include <stdbool.h>

#include "common/err.h"
#include "drivers/camera.h"
#include "drivers/microscope.h"
#include "drivers/stage.h"

/* The guarded operations, each with its own deadline. */
enum guard_op {
    GUARD_CAM_OPEN,
    GUARD_CAM_CLOSE,
    GUARD_CAM_CONFIGURE,
    GUARD_CAM_CAPTURE,
    GUARD_CAM_PREVIEW,
    GUARD_CAM_LAMP,
    GUARD_STAGE_OPEN,
    GUARD_STAGE_CLOSE,
    GUARD_STAGE_HOME,
    GUARD_STAGE_MOVE,
    GUARD_STAGE_POSITION,
    GUARD_STAGE_BUSY,
    GUARD_STAGE_STOP,
    GUARD_NOPS
};

struct guard_policy {
    double deadline_ms[GUARD_NOPS];     /* real (wall) milliseconds; 0:
                                           no deadline, the call may
                                           block for ever */
    int busy_retries;                   /* asks after the first "busy" */
    double busy_backoff_ms;             /* first pause, doubled per retry */
    double busy_backoff_max_ms;         /* longest pause */
    int busy_resets;                    /* resets when busy persists */
};

/* Defaults: capture 20 s, preview 5 s, configure 5 s, lamp 5 s, camera
 * open 15 s, close 5 s; home 120 s, move 30 s, position 2 s, busy query
 * 2 s, stop 5 s, stage open 15 s, close 5 s; 3 busy retries from 200 ms
 * up to 2000 ms, 1 reset. */
void guard_policy_default(struct guard_policy *p);

/* Sets one knob from text, as read from the [deadlines] section of
 * slidescan.conf: "<op>_ms" for each operation (camera_open_ms,
 * camera_close_ms, configure_ms, capture_ms, preview_ms, lamp_ms,
 * stage_open_ms, stage_close_ms, home_ms, move_ms, position_ms, busy_ms,
 * stop_ms), busy_retries, busy_backoff_ms, busy_backoff_max_ms,
 * busy_resets.  A deadline of 0 turns that operation's deadline off (a
 * hung device then hangs the scan).  Errors name the key, the value as
 * given and the cause ("capture_ms: -1 is outside 0..86400000"). */
int guard_policy_set(struct guard_policy *p, const char *key,
                     const char *value, struct ss_err *err);

/* The key of an operation in guard_policy_set() without "_ms", and the
 * words used in messages ("capture", "move"). */
const char *guard_op_name(enum guard_op op);

/* How to build a replacement device after a missed deadline or a reset.
 * Each callback returns a new device, not yet opened; the guard opens it.
 * A NULL callback means the device cannot be recreated: a busy reset then
 * closes and reopens the same object, and after a missed deadline every
 * call fails with SS_EGONE. */
struct guard_factory {
    int (*new_camera)(void *ctx, struct camera **out, struct ss_err *err);
    int (*new_stage)(void *ctx, struct stage **out, struct ss_err *err);
    void *ctx;
};

/* Wraps m->cam and m->stage (either may be NULL) in guarded devices that
 * own the originals.  Device state is not changed: an open device stays
 * open.  The factory is copied; its ctx is borrowed for m's life.  The
 * overview camera is not guarded. */
int guard_microscope_wrap(struct microscope *m, const struct guard_policy *p,
                          const struct guard_factory *f, struct ss_err *err);

/* True when m's camera is guarded by this module. */
bool guard_is_wrapped(const struct microscope *m);

/* The device a guarded camera or stage drives now (it changes at a
 * rebuild), for driver-specific calls such as hw_camera_stats(); the
 * argument itself when it is not guarded; NULL while the device is lost.
 * Call it from the thread that makes the device calls. */
struct camera *guard_camera_inner(struct camera *cam);
struct stage *guard_stage_inner(struct stage *st);

/* Replaces the policy of a wrapped microscope (a SIGHUP reload); takes
 * effect at the next call. */
void guard_policy_update(struct microscope *m, const struct guard_policy *p);

struct guard_counts {
    int busy_retries;               /* calls repeated after "busy" */
    int timeouts;                   /* calls abandoned at their deadline */
    int resets;                     /* devices closed and reopened/rebuilt */
    int stuck;                      /* abandoned calls that have not come
                                       back (a gauge, not reset by take) */
};

/* The counts since the previous take (or since wrapping), then zeroes them:
 * take before a tile and after it to record that tile's retries.  All zero
 * when m is not wrapped. */
void guard_counts_take(struct microscope *m, struct guard_counts *out);

/* Counts since wrapping, not zeroed by guard_counts_take(). */
void guard_counts_total(struct microscope *m, struct guard_counts *out);

/* Checks that the devices answer: rebuilds a device lost after a deadline,
 * reconnects (closes and opens) one that said it was gone or held by
 * another program, opens one whose open failed, re-applies the camera's
 * settings to a new or reopened camera, then reads the stage position.
 * For a daemon that waits for a device that was held, unplugged or hung:
 * call it every retry period; 0 means the scan may resume.  (Any guarded
 * call after SS_EGONE or SS_EHELD reconnects the same way first.) */
int guard_probe(struct microscope *m, struct ss_err *err);

/* What a scan does about a failed step (see guard_fault_action()). */
enum guard_action {
    GUARD_ACT_RETRY_TILE = 1,       /* take the same tile again */
    GUARD_ACT_FAIL_TILE,            /* mark the tile failed, go on */
    GUARD_ACT_PAUSE,                /* pause with the message as reason;
                                       start no other slide meanwhile */
    GUARD_ACT_WAIT_DEVICE,          /* keep the scan (and queue) waiting,
                                       retry with guard_probe() */
    GUARD_ACT_WAIT_SPACE,           /* pause until space_check() passes */
    GUARD_ACT_FAIL_SCAN,            /* fail this scan, go on with the queue */
};

struct guard_fault {
    int code;                       /* what the step returned */
    int attempt;                    /* 0 for the first try of this tile */
    int failed_in_row;              /* tiles failed just before this one */
    bool in_tile;                   /* false: calibration, plan, focus,
                                       assembly or opening the devices */
};

/* The policy, as a table: SS_ETIMEOUT and SS_EDEVICE retry the tile once,
 * then fail it; SS_ESTALL retries once, then pauses; SS_EBUSY (already
 * retried and reset by the guard) pauses; SS_EHELD and SS_EGONE wait for
 * the device; -ENOSPC and -EDQUOT wait for space; -EIO and -EROFS pause.
 * More than GUARD_FAILED_IN_ROW_MAX tiles failed in a row pause the scan,
 * so a dead camera does not fail a whole slide tile by tile.  Outside a
 * tile a device fault pauses; anything else fails the scan. */
enum guard_action guard_fault_action(const struct guard_fault *f);

#define GUARD_FAILED_IN_ROW_MAX 3

/* "retry tile", "fail tile", "pause", "wait for device", "wait for
 * space", "fail scan". */
const char *guard_action_name(enum guard_action a);

#endif
