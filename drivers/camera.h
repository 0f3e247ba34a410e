/* SPDX-License-Identifier: MIT */
/*
 * The camera contract.  One small operations table per driver (the
 * simulated camera in sim/, the libgphoto2 camera in hw/), like one vendor
 * file per format.  The scanner sees only `struct camera`.
 *
 * Calls block until the device answers; they run on a device thread, never
 * on the event loop.  drivers/guard.h wraps any camera so that each call
 * has a deadline.  Every function returns 0 or a negative code (errno or
 * SS_E*) and writes one message into err.
 *
 * Frames are 3-channel RGB U8, frame_w × frame_h pixels, with image x
 * along stage +x and image y along stage +y (a driver flips or rotates
 * what its sensor delivers to match).
 *
 * A sensor with a frame buffer may offer a split capture: capture_begin()
 * returns when the exposure has ended, and the sample may move from then
 * on while the sensor reads out; capture_end() waits for the readout and
 * returns the frame.  The frame shows only what the exposure saw.  A
 * driver offers both or neither; camera_capture_begin() and
 * camera_capture_end() give every camera the split form (without it,
 * begin captures the whole frame and end hands it over: no overlap).
 */
#ifndef SS_DRIVERS_CAMERA_H
#define SS_DRIVERS_CAMERA_H

#include <stdbool.h>

#include "common/err.h"
#include "common/img.h"

struct camera;

struct cam_settings {
    double exposure_ms;             /* shutter time */
    double gain;                    /* analogue gain, 1.0 = unity */
    double wb[3];                   /* white-balance multipliers R, G, B */
};

struct cam_ops {
    const char *name;               /* "sim", "gphoto2" */

    /* Connects to the device; a second open() after close() reconnects. */
    int (*open)(struct camera *cam, struct ss_err *err);
    void (*close)(struct camera *cam);

    /* Applies exposure, gain and white balance for the next captures. */
    int (*configure)(struct camera *cam, const struct cam_settings *s,
                     struct ss_err *err);

    /* Captures one full-resolution frame; *frame is the caller's. */
    int (*capture)(struct camera *cam, struct img **frame,
                   struct ss_err *err);

    /* Fast, possibly lower-resolution live-view frame for focusing;
     * NULL when the device has none. */
    int (*preview)(struct camera *cam, struct img **frame,
                   struct ss_err *err);

    /* Switches the transmitted light on or off, for dark frames; NULL
     * when the light is not under software control. */
    int (*set_lamp)(struct camera *cam, bool on, struct ss_err *err);

    /* Frees the driver's state; the camera must be closed. */
    void (*destroy)(struct camera *cam);

    /* Optional split capture (both or neither; NULL when the device
     * cannot overlap its readout with a stage move).  capture_begin()
     * exposes and returns when the exposure has ended; it first waits
     * for the readout of an earlier frame, and drops such a frame if it
     * was never collected.  capture_end() waits for the readout of the
     * frame begun last and returns it (*frame is the caller's); without
     * a begun frame it fails with -EINVAL.  Between the two the caller
     * may move the stage, but make no other camera call. */
    int (*capture_begin)(struct camera *cam, struct ss_err *err);
    int (*capture_end)(struct camera *cam, struct img **frame,
                       struct ss_err *err);
};

struct camera {
    const struct cam_ops *ops;
    void *priv;                     /* driver state */
    char model[64];
    int frame_w, frame_h;           /* full-resolution frame size */
    struct img *held;               /* camera_capture_begin() on a device
                                       without split capture: the frame,
                                       until camera_capture_end() */
};

/* Convenience wrappers that check for optional operations. */
static inline int
camera_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    return cam->ops->capture(cam, frame, err);
}

/* True when the sample may move during the readout: the camera has the
 * split capture operations. */
static inline bool
camera_overlaps_readout(const struct camera *cam)
{
    return cam->ops->capture_begin != NULL && cam->ops->capture_end != NULL;
}

/* Exposes one full-resolution frame and returns when the exposure has
 * ended (with the split operations) or when the whole frame is in
 * (without them: the frame is held in cam->held).  Pair every successful
 * call with camera_capture_end().  A frame held from a begin that was
 * never ended is dropped. */
int camera_capture_begin(struct camera *cam, struct ss_err *err);

/* The frame of the last camera_capture_begin(), after its readout;
 * *frame is the caller's.  -EINVAL "camera <model>: no capture begun"
 * without one. */
int camera_capture_end(struct camera *cam, struct img **frame,
                       struct ss_err *err);

static inline void
camera_free(struct camera *cam)
{
    if (cam != NULL) {
        img_free(cam->held);
        cam->held = NULL;
        cam->ops->destroy(cam);
    }
}

#endif
