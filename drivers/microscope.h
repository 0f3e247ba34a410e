/* SPDX-License-Identifier: MIT */
/*
 * A microscope: one camera, one stage, an optional overview camera and the
 * clock their timing is measured on.  With real hardware the clock is the
 * monotonic clock and sleeping sleeps; with the simulated microscope it is
 * the simulator's virtual clock, so a scan runs in seconds and still
 * reports how long it would take on a real instrument.
 */
#ifndef SS_DRIVERS_MICROSCOPE_H
#define SS_DRIVERS_MICROSCOPE_H

#include "common/err.h"
#include "common/img.h"
#include "drivers/camera.h"
#include "drivers/stage.h"

struct devclock {
    double (*now_ms)(void *ctx);
    void (*sleep_ms)(void *ctx, double ms);
    void *ctx;
};

/* Where an overview image lies on the stage: pixel (i, j) shows the
 * sample point (origin_x_um + i * um_per_px, origin_y_um + j * um_per_px). */
struct ov_geometry {
    double origin_x_um, origin_y_um;
    double um_per_px;
};

struct overview;

struct overview_ops {
    /* The whole slide at low resolution, for tissue detection. */
    int (*capture)(struct overview *ov, struct img **slide,
                   struct ov_geometry *geo, struct ss_err *err);
    /* The slide's label (carries the slide id); NULL when absent. */
    int (*label)(struct overview *ov, struct img **label,
                 struct ss_err *err);
    void (*destroy)(struct overview *ov);
};

struct overview {
    const struct overview_ops *ops;
    void *priv;
};

struct microscope {
    struct camera *cam;             /* owned */
    struct stage *stage;            /* owned */
    struct overview *ov;            /* owned, may be NULL */
    struct devclock clock;
    double pixel_um;                /* µm per camera pixel at the sample */
    char objective[8];              /* "20x" */
    void *owner;                    /* the driver family's shared state */
    void (*owner_free)(void *owner);
};

/* Closes and frees every device; NULL is a no-op. */
void microscope_free(struct microscope *m);

/* The monotonic clock and nanosleep(), for real hardware. */
struct devclock devclock_real(void);

static inline double
mic_now_ms(const struct microscope *m)
{
    return m->clock.now_ms(m->clock.ctx);
}

static inline void
mic_sleep_ms(const struct microscope *m, double ms)
{
    m->clock.sleep_ms(m->clock.ctx, ms);
}

#endif
