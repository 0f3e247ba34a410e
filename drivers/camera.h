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
};

struct camera {
    const struct cam_ops *ops;
    void *priv;                     /* driver state */
    char model[64];
    int frame_w, frame_h;           /* full-resolution frame size */
};

/* Convenience wrappers that check for optional operations. */
static inline int
camera_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    return cam->ops->capture(cam, frame, err);
}

static inline void
camera_free(struct camera *cam)
{
    if (cam != NULL)
        cam->ops->destroy(cam);
}

#endif
