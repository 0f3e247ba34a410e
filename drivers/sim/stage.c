/* SPDX-License-Identifier: MIT */
/*
 * The simulated XYZ stage: trapezoidal moves on the virtual clock,
 * backlash as a dead band between screw and carriage, a repeatability
 * error per move keyed by the move itself, and a settling transient that
 * rings after the controller already reports idle.  The controller reports
 * the screw position plus the ringing (what its encoder sees); the true
 * carriage position, with backlash and repeatability error, is ground
 * truth (sim_true_position(), sim_truth_last()).
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rng.h"

static const char axis_name[3] = { 'x', 'y', 'z' };

/* Below this the ringing is taken as exactly zero, so that frames taken
 * after settling do not depend on how long ago the move ended. */
#define RING_EPS_UM 1e-5

static double
screw_at(const struct sim__axis *a, double t)
{
    double d = a->s_to - a->s_from, dir = d < 0 ? -1 : 1, u;

    if (t <= a->ts || d == 0)
        return t <= a->ts ? a->s_from : a->s_to;
    if (t >= a->te)
        return a->s_to;
    u = t - a->ts;
    if (u < a->ta)
        return a->s_from + dir * 0.5 * a->acc * u * u;
    if (u < a->ta + a->tc)
        return a->s_from + dir * (0.5 * a->acc * a->ta * a->ta +
                                  a->vpk * (u - a->ta));
    u = a->te - t;
    return a->s_to - dir * 0.5 * a->acc * u * u;
}

static double
ring_at(const struct sim *s, const struct sim__axis *a, double t)
{
    double tau = s->cfg.settle_tau_ms;
    double w = 2 * M_PI * s->cfg.settle_hz / 1000;     /* rad per ms */
    double u = t - a->te, env, peak_u, k;

    if (a->amp == 0 || u <= 0)
        return 0;
    env = fabs(a->amp) * exp(-u / tau);
    if (env < RING_EPS_UM)
        return 0;
    if (w <= 0)
        return a->amp * exp(-u / tau);
    /* Scaled so that the first peak equals amp. */
    peak_u = atan(w * tau) / w;
    k = 1.0 / (exp(-peak_u / tau) * sin(w * peak_u));
    return a->amp * k * exp(-u / tau) * sin(w * u);
}

void
sim__axis_pos(const struct sim *s, int i, double t, double *reported,
              double *truth)
{
    const struct sim__axis *a = &s->ax[i];
    double b = s->cfg.backlash_um[i];
    double sc = screw_at(a, t), ring = ring_at(s, a, t);
    double c = a->c_start, d = a->s_to - a->s_from, prog;

    if (c < sc)
        c = sc;
    if (c > sc + b)
        c = sc + b;
    prog = d != 0 ? (sc - a->s_from) / d : 1;
    if (reported != NULL)
        *reported = sc + ring;
    if (truth != NULL)
        *truth = c + a->rep_from + (a->rep_err - a->rep_from) * prog + ring;
}

double
sim__move_end(const struct sim *s)
{
    double te = 0;
    int i;

    for (i = 0; i < 3; i++)
        if (s->ax[i].te > te)
            te = s->ax[i].te;
    return te;
}

/* Starts a move of axis i from wherever its screw is now to `to`.
 * LIMIT: a move commanded during another starts from rest at the current
 * screw position; real controllers blend the velocity. */
static void
axis_start(struct sim *s, int i, double to)
{
    struct sim__axis *a = &s->ax[i], n;
    double now = s->now_ms, d, dist, vmax, acc, b = s->cfg.backlash_um[i];
    double prog;
    struct rng r;

    memset(&n, 0, sizeof(n));
    n.s_from = screw_at(a, now);
    n.c_start = a->c_start;
    if (n.c_start < n.s_from)
        n.c_start = n.s_from;
    if (n.c_start > n.s_from + b)
        n.c_start = n.s_from + b;
    prog = a->s_to != a->s_from ? (n.s_from - a->s_from) /
                                  (a->s_to - a->s_from) : 1;
    n.rep_from = a->rep_from + (a->rep_err - a->rep_from) * prog;
    n.s_to = to;
    n.ts = n.te = now;
    n.rep_err = n.rep_from;
    d = to - n.s_from;
    dist = fabs(d);
    if (dist > 0) {
        vmax = s->cfg.speed_um_s[i] / 1000.0;
        acc = s->cfg.accel_um_s2[i] / 1e6;
        n.acc = acc;
        if (dist >= vmax * vmax / acc) {
            n.ta = vmax / acc;
            n.tc = (dist - vmax * vmax / acc) / vmax;
            n.vpk = vmax;
        } else {
            n.ta = sqrt(dist / acc);
            n.tc = 0;
            n.vpk = acc * n.ta;
        }
        n.te = n.ts + 2 * n.ta + n.tc;
        n.amp = (d > 0 ? 1 : -1) * s->cfg.overshoot_um[i] * n.vpk / vmax;
        rng_init(&r, rng_key(s->cfg.seed, 0x5354414745ULL + (uint64_t)i,
                             (uint64_t)llround(n.s_from * 1000),
                             (uint64_t)llround(to * 1000)));
        n.rep_err = rng_gauss(&r) * s->cfg.repeat_sigma_um[i];
    }
    *a = n;
}

void
sim__stage_reset(struct sim *s)
{
    int i;

    memset(s->ax, 0, sizeof(s->ax));
    for (i = 0; i < 3; i++)
        s->ax[i].c_start = s->cfg.backlash_um[i] / 2;
}

/* ---- stage operations ------------------------------------------------- */

struct sim_stage {
    struct sim *s;
    bool open;
};

static struct sim *
st_sim(struct stage *st)
{
    return ((struct sim_stage *)st->priv)->s;
}

static int
st_open(struct stage *st, struct ss_err *err)
{
    struct sim_stage *p = st->priv;
    struct sim *s = p->s;
    double sl;

    pthread_mutex_lock(&s->mu);
    sl = sim__advance(s, s->cfg.query_ms);
    p->open = true;
    st->limits = s->geo.limits;
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    return 0;
}

static void
st_close(struct stage *st)
{
    ((struct sim_stage *)st->priv)->open = false;
}

static int
not_open(struct stage *st, struct ss_err *err)
{
    if (((struct sim_stage *)st->priv)->open)
        return 0;
    return err_set(err, -ENODEV, "stage: not open");
}

static int
st_home(struct stage *st, struct ss_err *err)
{
    struct sim *s = st_sim(st);
    double sl;
    int rc = not_open(st, err);

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    sim__stage_reset(s);
    for (rc = 0; rc < 3; rc++)
        s->ax[rc].c_start = 0;
    sl = sim__advance(s, s->cfg.home_ms);
    s->homed = true;
    s->attempt = 0;
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    log_debug("sim", "stage homed t_ms=%.0f", sim_clock_ms(s));
    return 0;
}

static int
check_limits(struct sim *s, const double pos[3], struct ss_err *err)
{
    const struct stage_limits *l = &s->geo.limits;
    int i;

    for (i = 0; i < 3; i++) {
        if (!isfinite(pos[i]))
            return err_set(err, -EINVAL, "stage: %c target is not a "
                           "number", axis_name[i]);
        if (pos[i] < l->min_um[i] - 1e-6 || pos[i] > l->max_um[i] + 1e-6)
            return err_set(err, -ERANGE, "stage: %c target %.1f um is "
                           "outside the travel %.1f..%.1f um", axis_name[i],
                           pos[i], l->min_um[i], l->max_um[i]);
    }
    return 0;
}

/* Applies a move fault to the targets; returns the code to report. */
static int
move_fault(struct sim *s, const struct sim__fault *f, double to[3],
           struct ss_err *err)
{
    double now = s->now_ms, from;
    int i;

    if (f->type == SIM_F_STAGE_TIMEOUT) {
        sim__advance(s, 2000);
        return err_set(err, SS_ETIMEOUT, "stage: controller did not "
                       "answer the move within 2000 ms");
    }
    for (i = 0; i < 3; i++) {
        from = screw_at(&s->ax[i], now);
        if (f->axis >= 0 && f->axis != i)
            continue;
        if (f->type == SIM_F_STALL) {
            to[i] = from + (to[i] - from) / 2;
        } else if (fabs(to[i] - from) > 0) {
            double lost = fmin(f->um, fabs(to[i] - from));
            to[i] -= (to[i] > from ? 1 : -1) * lost;
        }
    }
    if (f->type == SIM_F_STALL)
        return err_set(err, SS_ESTALL, "stage: motor stalled, axes stopped "
                       "at %.1f, %.1f, %.1f um", to[0], to[1], to[2]);
    return 0;
}

static int
st_move_abs(struct stage *st, const double pos_um[3], struct ss_err *err)
{
    struct sim *s = st_sim(st);
    struct sim__fault f;
    double to[3], sl;
    int rc = not_open(st, err), i;

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    s->counters[SIM_C_MOVE]++;
    rc = check_limits(s, pos_um, err);
    if (rc == 0) {
        memcpy(to, pos_um, sizeof(to));
        sim__advance(s, s->cfg.query_ms);
        if (sim__fault_take(s, SIM_C_MOVE, &f) != 0)
            rc = move_fault(s, &f, to, err);
        if (rc == 0 || rc == SS_ESTALL) {
            for (i = 0; i < 3; i++)
                if (fabs(to[i] - screw_at(&s->ax[i], s->now_ms)) > 1e-9 ||
                    s->ax[i].te > s->now_ms)
                    axis_start(s, i, to[i]);
            s->attempt = 0;
        }
    }
    sl = sim__advance(s, 0);
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    if (rc == 0)
        log_debug("sim", "move x_um=%.2f y_um=%.2f z_um=%.2f", pos_um[0],
                  pos_um[1], pos_um[2]);
    return rc;
}

static int
st_get_position(struct stage *st, double pos_um[3], struct ss_err *err)
{
    struct sim *s = st_sim(st);
    double sl;
    int rc = not_open(st, err), i;

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    sl = sim__advance(s, s->cfg.query_ms);
    for (i = 0; i < 3; i++)
        sim__axis_pos(s, i, s->now_ms, &pos_um[i], NULL);
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    return 0;
}

static int
st_is_busy(struct stage *st, bool *busy, struct ss_err *err)
{
    struct sim *s = st_sim(st);
    double sl;
    int rc = not_open(st, err);

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    sl = sim__advance(s, s->cfg.query_ms);
    *busy = s->now_ms < sim__move_end(s);
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
    return 0;
}

static int
st_stop(struct stage *st, struct ss_err *err)
{
    struct sim *s = st_sim(st);
    double here;
    int rc = not_open(st, err), i;

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    sim__advance(s, s->cfg.query_ms);
    for (i = 0; i < 3; i++) {
        struct sim__axis *a = &s->ax[i];

        if (a->te <= s->now_ms)
            continue;
        here = screw_at(a, s->now_ms);
        a->s_to = here;
        a->te = s->now_ms;
        a->amp = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void
st_destroy(struct stage *st)
{
    struct sim_stage *p;

    if (st == NULL)
        return;
    p = st->priv;
    sim__unref(p->s);
    free(p);
    free(st);
}

static const struct stage_ops sim_stage_ops = {
    .name = "sim",
    .open = st_open,
    .close = st_close,
    .home = st_home,
    .move_abs = st_move_abs,
    .get_position = st_get_position,
    .is_busy = st_is_busy,
    .stop = st_stop,
    .destroy = st_destroy,
};

struct stage *
sim__stage_make(struct sim *s)
{
    struct stage *st = calloc(1, sizeof(*st));
    struct sim_stage *p = calloc(1, sizeof(*p));

    if (st == NULL || p == NULL) {
        free(st);
        free(p);
        return NULL;
    }
    p->s = s;
    sim__ref(s);
    st->ops = &sim_stage_ops;
    st->priv = p;
    snprintf(st->model, sizeof(st->model), "slidescan simulated stage");
    pthread_mutex_lock(&s->mu);
    st->limits = s->geo.limits;
    pthread_mutex_unlock(&s->mu);
    return st;
}
