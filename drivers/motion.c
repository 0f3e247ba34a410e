/* SPDX-License-Identifier: MIT */
/* One-sided approach, settle and verification of stage moves. */
#include "drivers/motion.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/log.h"

static const char axis_name[3] = { 'x', 'y', 'z' };

void
motion_cfg_default(struct motion_cfg *c)
{
    int a;

    memset(c, 0, sizeof(*c));
    c->backlash_um[0] = c->backlash_um[1] = 20.0;
    c->backlash_um[2] = 2.0;
    for (a = 0; a < 3; a++)
        c->approach[a] = 1;
    c->settle_ms = 30.0;
    c->settle_z_ms = 15.0;
    c->settle_tol_um = 0.5;
    c->poll_ms = 5.0;
    c->verify_tol_um = 2.0;
    c->move_timeout_ms = 20000.0;
    c->settle_timeout_ms = 2000.0;
}

void
motion_init(struct motion *mo, struct stage *st, struct devclock clock,
            const struct motion_cfg *cfg)
{
    memset(mo, 0, sizeof(*mo));
    mo->st = st;
    mo->clock = clock;
    mo->cfg = *cfg;
}

void
motion_forget(struct motion *mo)
{
    mo->cmd_known = false;
}

int
motion_check_limits(const struct stage *st, const double pos_um[3],
                    struct ss_err *err)
{
    int a;

    for (a = 0; a < 3; a++)
        if (!(pos_um[a] >= st->limits.min_um[a] &&
              pos_um[a] <= st->limits.max_um[a]))
            return err_set(err, -ERANGE, "stage %s: %c=%.2f um is outside "
                           "the travel %.2f..%.2f um", st->model,
                           axis_name[a], pos_um[a], st->limits.min_um[a],
                           st->limits.max_um[a]);
    return 0;
}

static double
now_ms(const struct motion *mo)
{
    return mo->clock.now_ms(mo->clock.ctx);
}

static int
command(struct motion *mo, const double pos[3], struct ss_err *err)
{
    int rc = mo->st->ops->move_abs(mo->st, pos, err);

    mo->moves++;
    if (rc != 0)
        err_prefix(err, "stage %s: move to (%.2f, %.2f, %.2f) um",
                   mo->st->model, pos[0], pos[1], pos[2]);
    return rc;
}

/* Polls is_busy until the controller reports idle. */
static int
wait_idle(struct motion *mo, const double pos[3], struct ss_err *err)
{
    double t0 = now_ms(mo);
    bool busy = true;
    int rc;

    for (;;) {
        rc = mo->st->ops->is_busy(mo->st, &busy, err);
        if (rc != 0) {
            err_prefix(err, "stage %s", mo->st->model);
            return rc;
        }
        if (!busy)
            return 0;
        if (now_ms(mo) - t0 > mo->cfg.move_timeout_ms) {
            mo->st->ops->stop(mo->st, NULL);
            return err_set(err, SS_ETIMEOUT, "stage %s: move to (%.2f, "
                           "%.2f, %.2f) um still busy after %.0f ms",
                           mo->st->model, pos[0], pos[1], pos[2],
                           mo->cfg.move_timeout_ms);
        }
        mo->clock.sleep_ms(mo->clock.ctx, mo->cfg.poll_ms);
    }
}

static double
max_diff(const double a[3], const double b[3])
{
    return fmax(fabs(a[0] - b[0]), fmax(fabs(a[1] - b[1]),
                                        fabs(a[2] - b[2])));
}

static int
read_pos(struct motion *mo, double pos[3], struct ss_err *err)
{
    int rc = mo->st->ops->get_position(mo->st, pos, err);

    if (rc != 0)
        err_prefix(err, "stage %s: reading the position", mo->st->model);
    return rc;
}

/* Waits settle_ms and for two readings in a row within tolerance.  The
 * readings start one poll before settle_ms is up, so that a quiet stage
 * is released right at settle_ms. */
static int
settle(struct motion *mo, double settle_ms, double pos[3],
       struct ss_err *err)
{
    double t0 = now_ms(mo), prev[3], spread;
    int rc;

    if (settle_ms > mo->cfg.poll_ms)
        mo->clock.sleep_ms(mo->clock.ctx, settle_ms - mo->cfg.poll_ms);
    rc = read_pos(mo, prev, err);
    while (rc == 0) {
        mo->clock.sleep_ms(mo->clock.ctx, mo->cfg.poll_ms);
        rc = read_pos(mo, pos, err);
        if (rc != 0)
            break;
        spread = max_diff(prev, pos);
        if (spread <= mo->cfg.settle_tol_um &&
            now_ms(mo) - t0 >= settle_ms)
            break;
        if (now_ms(mo) - t0 > mo->cfg.settle_timeout_ms)
            rc = err_set(err, SS_ETIMEOUT, "stage %s: not settled after "
                         "%.0f ms (readings %.2f um apart)", mo->st->model,
                         mo->cfg.settle_timeout_ms, spread);
        memcpy(prev, pos, sizeof(prev));
    }
    mo->settle_wait_ms += now_ms(mo) - t0;
    return rc;
}

static int
verify(const struct motion *mo, const double target[3], const double pos[3],
       struct ss_err *err)
{
    int a;

    for (a = 0; a < 3; a++)
        if (fabs(pos[a] - target[a]) > mo->cfg.verify_tol_um)
            return err_set(err, SS_ESTALL, "stage %s: %c axis reads %.2f um "
                           "after a move to %.2f um (%.2f um off): steps "
                           "lost", mo->st->model, axis_name[a], pos[a],
                           target[a], pos[a] - target[a]);
    return 0;
}

/* The overshoot point: past the target, against the approach direction,
 * on each axis whose move would otherwise end the wrong way.  Returns
 * false when no axis needs it. */
static bool
overshoot_point(const struct motion *mo, const double target[3],
                double pre[3])
{
    const struct stage_limits *lim = &mo->st->limits;
    bool any = false;
    int a;

    for (a = 0; a < 3; a++) {
        double b = mo->cfg.backlash_um[a], dir = mo->cfg.approach[a];
        double delta = target[a] - mo->cmd_um[a];

        pre[a] = target[a];
        if (b <= 0)
            continue;
        if (mo->cmd_known && (delta * dir >= 0))
            continue;
        pre[a] = fmin(fmax(target[a] - dir * b, lim->min_um[a]),
                      lim->max_um[a]);
        any = any || pre[a] != target[a];
    }
    return any;
}

static int
move(struct motion *mo, const double target_um[3], double reached_um[3],
     bool always, struct ss_err *err)
{
    double pre[3], pos[3];
    bool z_only = mo->cmd_known && !always &&
                  target_um[0] == mo->cmd_um[0] &&
                  target_um[1] == mo->cmd_um[1];
    int rc;

    rc = motion_check_limits(mo->st, target_um, err);
    if (rc != 0)
        return rc;
    if (always)
        mo->cmd_known = false;
    if (overshoot_point(mo, target_um, pre)) {
        mo->cmd_known = false;
        mo->overshoots++;
        rc = command(mo, pre, err);
        if (rc == 0)
            rc = wait_idle(mo, pre, err);
        if (rc != 0)
            return rc;
    }
    mo->cmd_known = false;
    rc = command(mo, target_um, err);
    if (rc == 0)
        rc = wait_idle(mo, target_um, err);
    if (rc == 0)
        rc = settle(mo, z_only ? mo->cfg.settle_z_ms : mo->cfg.settle_ms,
                    pos, err);
    if (rc == 0)
        rc = verify(mo, target_um, pos, err);
    if (rc != 0)
        return rc;
    memcpy(mo->cmd_um, target_um, sizeof(mo->cmd_um));
    mo->cmd_known = true;
    if (reached_um != NULL)
        memcpy(reached_um, pos, sizeof(pos));
    log_debug("stage", "moved x_um=%.2f y_um=%.2f z_um=%.2f",
              pos[0], pos[1], pos[2]);
    return 0;
}

int
motion_move_to(struct motion *mo, const double target_um[3],
               double reached_um[3], struct ss_err *err)
{
    return move(mo, target_um, reached_um, false, err);
}

int
motion_approach(struct motion *mo, const double target_um[3],
                double reached_um[3], struct ss_err *err)
{
    return move(mo, target_um, reached_um, true, err);
}
