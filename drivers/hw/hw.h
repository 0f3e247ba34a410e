/* SPDX-License-Identifier: MIT */
/*
 * The hardware microscope: a tethered camera driven through libgphoto2
 * and a USB stage controller (OpenFlexure Sangaboard or Prior ProScan
 * command dialect) driven through libusb, both behind the camera and stage
 * contracts.  The daemon builds a struct hw_config from the [camera] and
 * [stage] sections of its configuration, then calls hw_microscope_new().
 *
 * A device that the configuration asks for and that is not there is an
 * error naming it; nothing here falls back to the simulator.
 *
 * Error codes a caller should act on:
 *   SS_EBUSY     the camera stayed busy through the bounded retries and
 *                one reset ("camera busy"); pause the scan.
 *   SS_EHELD     another program holds the camera's USB interface (or,
 *                over PTP/IP, the camera refused a second host); retry
 *                open() later, the device is not broken.
 *   SS_EGONE     the device disappeared; the next call reopens it.
 *   SS_ETIMEOUT  the device did not answer in time; the next call resets
 *                the session.
 */
#ifndef SS_DRIVERS_HW_H
#define SS_DRIVERS_HW_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "common/err.h"
#include "drivers/camera.h"
#include "drivers/microscope.h"
#include "drivers/stage.h"

enum hw_orientation {
    HW_ORIENT_NONE = 0,             /* sensor x, y = stage x, y */
    HW_ORIENT_MIRROR_X,             /* flip left-right */
    HW_ORIENT_MIRROR_Y,             /* flip top-bottom */
    HW_ORIENT_ROTATE_180,
};

/* [camera] */
struct hw_camera_config {
    bool enabled;                   /* driver = gphoto2 | none */
    char model[128];                /* libgphoto2 model; "" = first found */
    char port[128];                 /* "usb:001,005", "ptpip:H:P:P"; "" =
                                       the port the model is found on */
    int base_iso;                   /* ISO at gain 1.0 (default 100) */
    char image_format[64];          /* "imageformat" choice; "" = keep */
    char capture_target[16];        /* "sdram" (default) or "card" */
    double pixel_um;                /* µm per pixel at the sample */
    char objective[8];              /* "20x" */
    enum hw_orientation orientation;
    int frame_w, frame_h;           /* 0 = learnt from a first frame */
    int busy_retries;               /* retries of a busy capture (3) */
    double busy_backoff_ms;         /* first back-off, doubling (100) */
    bool preview;                   /* use live view when present (yes) */
    double capture_timeout_ms;      /* longest capture wait (30000) */
};

enum hw_stage_dialect {
    HW_STAGE_NONE = 0,
    HW_STAGE_SANGABOARD,
    HW_STAGE_PROSCAN,
};

/* [stage] */
struct hw_stage_config {
    enum hw_stage_dialect dialect;  /* driver = sangaboard | proscan | none */
    uint16_t vid, pid;              /* 0 = the dialect's known ids */
    char serial[64];                /* USB serial number; "" = any */
    int bus, address;               /* usb = BUS:ADDR; 0 = any */
    unsigned baud;                  /* 0 = the dialect's default */
    double steps_per_um[3];         /* controller units per µm, x y z */
    double min_um[3], max_um[3];    /* travel, reported as stage limits */
    int timeout_ms;                 /* reply deadline per command (2000) */
};

struct hw_config {
    struct hw_camera_config cam;
    struct hw_stage_config stage;
};

/* Fills c with the defaults: no camera, no stage, the values above. */
void hw_config_default(struct hw_config *c);

/* Sets one key of section "camera" or "stage" from its text value.  An
 * unknown section or key, or a bad value, is SS_ECONFIG with a message
 * naming section, key and the cause. */
int hw_config_set(struct hw_config *c, const char *section, const char *key,
                  const char *value, struct ss_err *err);

/* Checks what hw_config_set() cannot see key by key, once the whole
 * configuration is read: a stage driver whose controller has no USB id
 * known to slidescan (proscan) needs vid and pid.  0, or SS_ECONFIG with
 * *key the [stage] key to set ("vid" or "pid") and err the cause, e.g.
 *   driver proscan has no known USB id: set vid and pid in [stage] to the
 *   controller's (4 hex digits each, as lsusb shows them) */
int hw_config_check(const struct hw_config *c, const char **key,
                    struct ss_err *err);

/* Builds the hardware microscope from the configuration: opens the camera
 * and the stage that are configured.  A configured device that is missing
 * is an error naming it (never a silent simulator); SS_EHELD when another
 * program holds the camera.  With neither device configured: SS_ECONFIG.
 * The microscope has no overview camera (m->ov == NULL). */
int hw_microscope_new(const struct hw_config *c, struct microscope **out,
                      struct ss_err *err);

/* What is attached (libgphoto2 autodetect, libusb devices with a known or
 * configured VID:PID), what the configuration expects, and what does not
 * match, for `slidescan devices`:
 *   { "cameras": [{"model","port"}...],
 *     "stages": [{"vid","pid","bus","address","serial","dialect"}...],
 *     "expected": {"camera": {...} | null, "stage": {...} | null},
 *     "problems": ["stage: no USB device 0483:5740 attached", ...],
 *     "ok": true|false }
 * *out is a new reference. */
int hw_devices_report(const struct hw_config *c, json_t **out,
                      struct ss_err *err);

/* Counters a camera keeps for the scan record.  Only for cameras made by
 * this driver family (hw_camera_new, hw_microscope_new). */
struct hw_camera_stats {
    long captures;                  /* frames delivered */
    long busy_retries;              /* busy answers that were retried */
    long resets;                    /* session resets (busy, timeout) */
    long reconnects;                /* reopen after the camera was gone */
};

int hw_camera_stats(const struct camera *cam, struct hw_camera_stats *out);

/* A camera or stage alone, unopened; the caller calls ops->open(). */
int hw_camera_new(const struct hw_camera_config *c, struct camera **out,
                  struct ss_err *err);
int hw_stage_new(const struct hw_stage_config *c, struct stage **out,
                 struct ss_err *err);

/* USB hot-plug notices for the configured and known stage controllers,
 * delivered on the loop thread.  libusb's events run in a thread of the
 * watch's own; its hot-plug callbacks reach the loop through uv_async.
 * Where libusb has no hot-plug support, the thread compares the device
 * list every second instead. */
struct hw_usb_event {
    bool arrived;                   /* false: removed */
    uint16_t vid, pid;
    int bus, address;
};

typedef void (*hw_watch_cb)(const struct hw_usb_event *ev, void *arg);

struct hw_watch;

int hw_watch_start(uv_loop_t *loop, const struct hw_config *c,
                   hw_watch_cb cb, void *arg, struct hw_watch **out,
                   struct ss_err *err);

/* Stops the thread and closes the uv handle; the memory is released in
 * the handle's close callback, so the loop must run once more.  NULL is a
 * no-op. */
void hw_watch_stop(struct hw_watch *w);

#endif
