/* SPDX-License-Identifier: MIT */
/*
 * The stage contract: a motorised X, Y, Z stage (Z is the focus drive).
 * Positions are micrometres in stage coordinates; the sample point under
 * the top-left pixel of the camera frame is the stage position (x, y).
 *
 * A driver only relays what the controller does: move_abs() returns once
 * the controller accepted the command; is_busy() and get_position() report
 * what the controller says, which may be "idle" while the mechanics still
 * settle.  Approach direction (backlash), settle checks and position
 * verification live above the drivers, in drivers/motion.h, so every
 * driver gets them.
 */
#ifndef SS_DRIVERS_STAGE_H
#define SS_DRIVERS_STAGE_H

#include <stdbool.h>

#include "common/err.h"

struct stage;

struct stage_limits {
    double min_um[3];               /* x, y, z travel */
    double max_um[3];
};

struct stage_ops {
    const char *name;               /* "sim", "sangaboard", "proscan" */

    int (*open)(struct stage *st, struct ss_err *err);
    void (*close)(struct stage *st);

    /* Finds the reference switches and zeroes the axes. */
    int (*home)(struct stage *st, struct ss_err *err);

    /* Commands an absolute move of all three axes. */
    int (*move_abs)(struct stage *st, const double pos_um[3],
                    struct ss_err *err);

    /* The position the controller reports. */
    int (*get_position)(struct stage *st, double pos_um[3],
                        struct ss_err *err);

    /* True while the controller reports motion. */
    int (*is_busy)(struct stage *st, bool *busy, struct ss_err *err);

    /* Stops all axes at once. */
    int (*stop)(struct stage *st, struct ss_err *err);

    void (*destroy)(struct stage *st);
};

struct stage {
    const struct stage_ops *ops;
    void *priv;
    char model[64];
    struct stage_limits limits;
};

static inline void
stage_free(struct stage *st)
{
    if (st != NULL)
        st->ops->destroy(st);
}

#endif
