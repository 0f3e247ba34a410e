/* SPDX-License-Identifier: MIT */
/*
 * Stage motion with the care a scanner needs, above any stage driver:
 *
 *   limits     a target outside the stage's travel is refused with an
 *              error naming the axis and the value; nothing moves.
 *   backlash   every final approach on an axis runs in that axis's
 *              approach direction.  A move against it first goes past
 *              the target by backlash_um (the overshoot move), then comes
 *              back; the lead screw's play is then always taken up on the
 *              same side, so a position is reached the same way whichever
 *              tile came before.
 *   settle     after the controller reports idle, no capture until
 *              settle_ms have passed AND two consecutive position
 *              readings, poll_ms apart, agree within settle_tol_um.  A
 *              move of the focus drive alone settles for settle_z_ms
 *              (a short z step barely rings, and autofocus makes many).
 *   verify     the settled reading must be within verify_tol_um of the
 *              target on every axis; otherwise steps were lost and the
 *              move fails with SS_ESTALL.
 *
 * Time is the microscope's device clock (virtual on the simulator).  A
 * failed move leaves the position unknown, so the next move always makes
 * the overshoot move.
 */
#ifndef SS_DRIVERS_MOTION_H
#define SS_DRIVERS_MOTION_H

#include <stdbool.h>

#include "common/err.h"
#include "drivers/microscope.h"
#include "drivers/stage.h"

struct motion_cfg {
    double backlash_um[3];          /* overshoot per axis, 0: none */
    int approach[3];                /* +1: final moves toward +, or -1 */
    double settle_ms;               /* minimum wait after idle */
    double settle_z_ms;             /* the same for z-only moves */
    double settle_tol_um;           /* consecutive readings agree within */
    double poll_ms;                 /* between busy and position polls */
    double verify_tol_um;           /* reading vs target: lost steps */
    double move_timeout_ms;         /* still busy after this: timeout */
    double settle_timeout_ms;       /* readings still moving: timeout */
};

/* 20 µm x/y and 2 µm z backlash, approach toward +, 30 ms settle (15 ms
 * for z alone), 0.5 µm settle tolerance, 5 ms polls, 2 µm verification. */
void motion_cfg_default(struct motion_cfg *c);

struct motion {
    struct stage *st;               /* borrowed */
    struct devclock clock;
    struct motion_cfg cfg;
    double cmd_um[3];               /* last target reached */
    bool cmd_known;
    long moves;                     /* move_abs commands issued */
    long overshoots;                /* of which overshoot moves */
    double settle_wait_ms;          /* total time spent settling */
};

/* Binds a motion layer to a stage (borrowed) and a clock. */
void motion_init(struct motion *mo, struct stage *st, struct devclock clock,
                 const struct motion_cfg *cfg);

/* 0 when pos lies within the stage's travel on every axis; otherwise
 * -ERANGE with a message naming the first offending axis and value. */
int motion_check_limits(const struct stage *st, const double pos_um[3],
                        struct ss_err *err);

/* Moves to target with one-sided approach, waits for settle, verifies.
 * reached (may be NULL) gets the settled position the stage reports.
 * Errors: -ERANGE (limits), SS_ETIMEOUT, SS_ESTALL, or the driver's. */
int motion_move_to(struct motion *mo, const double target_um[3],
                   double reached_um[3], struct ss_err *err);

/* As motion_move_to(), but always moves first to the overshoot point on
 * every axis with backlash, whatever the position before.  The final
 * move then depends on the target alone (same start, same distance), so
 * a stage whose small errors depend on the move itself lands the same
 * way every time: what a restarted scan needs to repeat a tile. */
int motion_approach(struct motion *mo, const double target_um[3],
                    double reached_um[3], struct ss_err *err);

/* Forgets the position, so the next move makes its overshoot move. */
void motion_forget(struct motion *mo);

#endif
