/* SPDX-License-Identifier: MIT */
/*
 * drivers/motion against a small recording fake stage (and camera):
 * field case S2 (backlash on a serpentine grid), S1 (a stage that says
 * "idle" before it has settled), limits, lost steps and timeouts.
 *
 * The fake stage models a lead screw with play: the carriage stays within
 * [motor, motor + backlash] on each axis, so an approach moving + ends
 * exactly on the command and one moving − ends backlash above it.  After
 * each move the carriage rings: it sits ring_um past the target and the
 * offset decays with time constant tau_ms, while the controller already
 * reports idle.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/motion.h"
#include "scan/acquire.h"

#define MAX_EVENTS 256

enum ev_type { EV_MOVE, EV_CAPTURE };

struct event {
    enum ev_type type;
    double cmd[3];                  /* move target / last command */
    double truth[3];                /* carriage (with ringing) */
    double t_ms;
};

struct fake {
    struct stage st;
    struct camera cam;
    struct microscope m;
    double now_ms;
    double motor[3], carriage[3], backlash[3];
    double move_end_ms, ring_um, tau_ms, dir[3];
    bool report_transient;          /* get_position shows the ringing */
    bool busy_forever;
    int lost_steps_move;            /* 1-based move that ends 40 µm short */
    int nmoves;
    int nev;
    struct event ev[MAX_EVENTS];
};

static double
fk_now(void *ctx)
{
    return ((struct fake *)ctx)->now_ms;
}

static void
fk_sleep(void *ctx, double ms)
{
    ((struct fake *)ctx)->now_ms += ms;
}

/* Where the carriage really is now. */
static void
fk_truth(struct fake *f, double pos[3])
{
    double left = f->now_ms < f->move_end_ms ? 1.0 :
                  exp(-(f->now_ms - f->move_end_ms) / f->tau_ms);
    int a;

    for (a = 0; a < 3; a++)
        pos[a] = f->carriage[a] + f->dir[a] * f->ring_um * left;
}

static void
record(struct fake *f, enum ev_type type, const double cmd[3])
{
    struct event *e;

    if (f->nev >= MAX_EVENTS)
        return;
    e = &f->ev[f->nev++];
    e->type = type;
    memcpy(e->cmd, cmd, sizeof(e->cmd));
    fk_truth(f, e->truth);
    e->t_ms = f->now_ms;
}

static int
fk_open(struct stage *st, struct ss_err *err)
{
    return 0;
}

static void
fk_close(struct stage *st)
{
}

static int
fk_home(struct stage *st, struct ss_err *err)
{
    return 0;
}

static int
fk_move(struct stage *st, const double pos[3], struct ss_err *err)
{
    struct fake *f = st->priv;
    double dist = 0;
    int a;

    f->now_ms += 1;
    f->nmoves++;
    record(f, EV_MOVE, pos);
    for (a = 0; a < 3; a++) {
        double m = pos[a];
        if (f->nmoves == f->lost_steps_move && a == 0)
            m -= 40.0;
        dist = fmax(dist, fabs(m - f->motor[a]));
        f->dir[a] = m > f->motor[a] ? 1 : m < f->motor[a] ? -1 : 0;
        f->motor[a] = m;
        f->carriage[a] = fmin(fmax(f->carriage[a], m), m + f->backlash[a]);
    }
    f->move_end_ms = f->now_ms + dist / 10.0;    /* 10 mm/s */
    return 0;
}

static int
fk_get_position(struct stage *st, double pos[3], struct ss_err *err)
{
    struct fake *f = st->priv;

    f->now_ms += 1;
    if (f->report_transient)
        fk_truth(f, pos);
    else
        memcpy(pos, f->motor, sizeof(f->motor));
    return 0;
}

static int
fk_is_busy(struct stage *st, bool *busy, struct ss_err *err)
{
    struct fake *f = st->priv;

    f->now_ms += 1;
    *busy = f->busy_forever || f->now_ms < f->move_end_ms;
    return 0;
}

static int
fk_stop(struct stage *st, struct ss_err *err)
{
    ((struct fake *)st->priv)->busy_forever = false;
    return 0;
}

static void
fk_destroy(struct stage *st)
{
}

static const struct stage_ops fake_stage_ops = {
    "fake", fk_open, fk_close, fk_home, fk_move, fk_get_position,
    fk_is_busy, fk_stop, fk_destroy,
};

static int
fc_open(struct camera *cam, struct ss_err *err)
{
    return 0;
}

static void
fc_close(struct camera *cam)
{
}

static int
fc_configure(struct camera *cam, const struct cam_settings *s,
             struct ss_err *err)
{
    return 0;
}

/* A tiny grey frame; the capture event records where the carriage was. */
static int
fc_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct fake *f = cam->priv;

    record(f, EV_CAPTURE, f->motor);
    f->now_ms += 250;
    *frame = img_new(8, 8, 3, IMG_U8);
    memset((*frame)->data, 200, img_bytes(*frame));
    return 0;
}

static void
fc_destroy(struct camera *cam)
{
}

static const struct cam_ops fake_cam_ops = {
    "fake", fc_open, fc_close, fc_configure, fc_capture, NULL, NULL,
    fc_destroy, NULL, NULL,
};

static struct fake *
fake_new(double backlash_x)
{
    struct fake *f = calloc(1, sizeof(*f));
    int a;

    f->st.ops = &fake_stage_ops;
    f->st.priv = f;
    snprintf(f->st.model, sizeof(f->st.model), "fake");
    for (a = 0; a < 3; a++) {
        f->st.limits.min_um[a] = a == 2 ? -100 : 0;
        f->st.limits.max_um[a] = a == 2 ? 100 : 50000;
    }
    f->backlash[0] = backlash_x;
    f->tau_ms = 12;
    f->cam.ops = &fake_cam_ops;
    f->cam.priv = f;
    f->cam.frame_w = 4000;
    f->cam.frame_h = 4000;
    snprintf(f->cam.model, sizeof(f->cam.model), "fake");
    f->m.cam = &f->cam;
    f->m.stage = &f->st;
    f->m.clock.now_ms = fk_now;
    f->m.clock.sleep_ms = fk_sleep;
    f->m.clock.ctx = f;
    f->m.pixel_um = 0.25;
    return f;
}

static struct devclock
fk_clock(struct fake *f)
{
    return f->m.clock;
}

/* The S2 grid: 3 columns × 2 rows, 1000 µm apart, serpentine. */
static const int grid_col[6] = { 0, 1, 2, 2, 1, 0 };
static const int grid_row[6] = { 0, 0, 0, 1, 1, 1 };

static void
grid_pos(int k, double pos[3])
{
    pos[0] = 5000 + 1000.0 * grid_col[k];
    pos[1] = 5000 + 1000.0 * grid_row[k];
    pos[2] = 0;
}

/* Visits the grid through the motion layer and captures at each cell;
 * err_px[k] is the carriage's x error at capture k in 0.25 µm pixels. */
static void
run_grid(struct fake *f, double backlash_um, double err_px[6])
{
    struct motion_cfg c;
    struct motion mo;
    struct img *frame;
    double pos[3];
    int k, n = 0;

    motion_cfg_default(&c);
    c.backlash_um[0] = c.backlash_um[1] = backlash_um;
    c.backlash_um[2] = 0;
    c.settle_ms = 50;
    motion_init(&mo, &f->st, fk_clock(f), &c);
    for (k = 0; k < 6; k++) {
        grid_pos(k, pos);
        assert_int_equal(motion_move_to(&mo, pos, NULL, NULL), 0);
        assert_int_equal(fc_capture(&f->cam, &frame, NULL), 0);
        img_free(frame);
    }
    for (k = 0; k < f->nev; k++)
        if (f->ev[k].type == EV_CAPTURE) {
            grid_pos(n, pos);
            err_px[n++] = (f->ev[k].truth[0] - pos[0]) / 0.25;
        }
    assert_int_equal(n, 6);
}

static void
test_s2_without_compensation_row_two_is_80_px_off(void **state)
{
    struct fake *f = fake_new(20);
    double err_px[6];
    int k;

    run_grid(f, 0, err_px);
    for (k = 0; k < 3; k++)
        assert_true(fabs(err_px[k]) < 0.01);
    assert_true(fabs(err_px[4] - 80) < 0.01);
    assert_true(fabs(err_px[5] - 80) < 0.01);
    free(f);
}

/* Moves issued before capture number cap (0-based), as indices. */
static int
moves_before(const struct fake *f, int cap, int *idx)
{
    int k, n = 0, seen = 0;

    for (k = 0; k < f->nev && seen <= cap; k++) {
        if (f->ev[k].type == EV_CAPTURE)
            seen++;
        else if (seen == cap)
            idx[n++] = k;
    }
    return n;
}

/* With compensation every capture lands exactly; the final move to each
 * cell runs toward +x; the first cell of the reversed row that moves in
 * −x is preceded by the overshoot move to 20 µm below its target.  (The
 * reversed row's first cell sits in the column the row above ended in,
 * so reaching it moves only y, toward +.) */
static void
test_s2_with_compensation_every_approach_from_below(void **state)
{
    struct fake *f = fake_new(20);
    double err_px[6], pos[3];
    int k, idx[8], n, overshoots = 0;

    run_grid(f, 20, err_px);
    for (k = 0; k < 6; k++)
        assert_true(fabs(err_px[k]) < 1e-9);
    for (k = 1; k < 6; k++) {
        n = moves_before(f, k, idx);
        assert_true(n >= 1);
        grid_pos(k, pos);
        assert_true(f->ev[idx[n - 1]].cmd[0] == pos[0]);
        if (n == 2) {
            assert_true(f->ev[idx[0]].cmd[0] == pos[0] - 20);
            overshoots++;
        }
        if (k == 4)
            assert_int_equal(n, 2);
    }
    assert_int_equal(overshoots, 2);
    free(f);
}

/* The same through the acquisition steps: acq_tile_capture() on a plan
 * of the S2 grid, with the overshoot before the reversed row's tiles. */
static void
test_s2_through_tile_capture(void **state)
{
    struct fake *f = fake_new(20);
    struct acq_tile tiles[6];
    struct acq_plan plan;
    struct acq_profile p;
    struct acq_options o;
    struct acq_session *s;
    struct acq_tile_result r;
    struct ss_err e;
    double pos[3];
    int k, n = 0;

    acq_profile_default(&p, "HE", NULL);
    acq_options_default(&o);
    o.backlash_z_um = 0;
    memset(&plan, 0, sizeof(plan));
    plan.rows = 2;
    plan.cols = 3;
    plan.step_x_um = plan.step_y_um = 1000;
    plan.frame_w = plan.frame_h = 4000;
    plan.pixel_um = 0.25;
    plan.ntiles = plan.cells_total = 6;
    plan.tiles = tiles;
    for (k = 0; k < 6; k++) {
        grid_pos(k, pos);
        tiles[k] = (struct acq_tile){ k, grid_row[k], grid_col[k], pos[0],
                                      pos[1], 1.0 };
    }
    assert_int_equal(acq_session_open(&f->m, &p, NULL, NULL, &o, &s, &e), 0);
    for (k = 0; k < 6; k++) {
        assert_int_equal(acq_tile_capture(s, &plan, &tiles[k], &r, &e), 0);
        assert_true(r.flags & ACQ_TILE_LOWCONF);
        acq_tile_result_clear(&r);
    }
    for (k = 0; k < f->nev; k++)
        if (f->ev[k].type == EV_CAPTURE) {
            grid_pos(n++, pos);
            assert_true(fabs(f->ev[k].truth[0] - pos[0]) < 1e-9);
        }
    assert_int_equal(n, 6);
    acq_session_free(s);
    free(f);
}

/* Moves once with the given settle time and returns how far the carriage
 * still was from the target when the capture started. */
static double
ringing_at_capture(double settle_ms, bool report_transient, double *t_ms)
{
    struct fake *f = fake_new(0);
    struct motion_cfg c;
    struct motion mo;
    struct img *frame;
    double a[3] = { 1000, 1000, 0 }, b[3] = { 2000, 1000, 0 }, d;

    f->ring_um = 8;
    f->report_transient = report_transient;
    motion_cfg_default(&c);
    c.settle_ms = settle_ms;
    motion_init(&mo, &f->st, fk_clock(f), &c);
    assert_int_equal(motion_move_to(&mo, a, NULL, NULL), 0);
    f->now_ms += 1000;
    assert_int_equal(motion_move_to(&mo, b, NULL, NULL), 0);
    *t_ms = f->now_ms - f->move_end_ms;
    assert_int_equal(fc_capture(&f->cam, &frame, NULL), 0);
    img_free(frame);
    d = fabs(f->ev[f->nev - 1].truth[0] - b[0]);
    free(f);
    return d;
}

/* S1: an 8 µm overshoot decaying with τ = 12 ms (under 0.5 µm after
 * 40 ms) while the controller reports idle and the target position.  With
 * a 50 ms settle time the capture starts within 0.5 µm; with settle time
 * 0 it starts while the carriage is still several µm off, which is what
 * blurs the frame (the simulator test shows the sharpness drop). */
static void
test_s1_settle_time_guards_an_early_idle(void **state)
{
    double t_ms, good = ringing_at_capture(50, false, &t_ms);
    double bad;

    assert_true(t_ms >= 50);
    assert_true(good < 0.5);
    bad = ringing_at_capture(0, false, &t_ms);
    print_message("# carriage off by %.2f um with settle 50 ms, %.2f um "
                  "with settle 0\n", good, bad);
    assert_true(bad > 2.0);
}

/* When the controller does report the ringing, two consecutive readings
 * within 0.5 µm hold the capture back even with settle time 0. */
static void
test_s1_two_readings_must_agree(void **state)
{
    double t_blind, t_seen, blind, seen;

    blind = ringing_at_capture(0, false, &t_blind);
    seen = ringing_at_capture(0, true, &t_seen);
    assert_true(t_seen > t_blind + 10);
    assert_true(seen < blind / 2);
}

static void
test_limits_name_the_axis_and_move_nothing(void **state)
{
    struct fake *f = fake_new(0);
    struct motion_cfg c;
    struct motion mo;
    struct ss_err e;
    double x_out[3] = { 60000, 10, 0 }, z_out[3] = { 10, 10, -150 };

    motion_cfg_default(&c);
    motion_init(&mo, &f->st, fk_clock(f), &c);
    assert_int_equal(motion_move_to(&mo, x_out, NULL, &e), -ERANGE);
    assert_non_null(strstr(e.msg, "x=60000.00 um"));
    assert_non_null(strstr(e.msg, "0.00..50000.00"));
    assert_int_equal(motion_move_to(&mo, z_out, NULL, &e), -ERANGE);
    assert_non_null(strstr(e.msg, "z=-150.00 um"));
    assert_int_equal(f->nmoves, 0);
    free(f);
}

static void
test_lost_steps_are_a_stall_and_forget_the_position(void **state)
{
    struct fake *f = fake_new(0);
    struct motion_cfg c;
    struct motion mo;
    struct ss_err e;
    double a[3] = { 1000, 1000, 0 }, b[3] = { 3000, 1000, 0 };

    motion_cfg_default(&c);
    motion_init(&mo, &f->st, fk_clock(f), &c);
    assert_int_equal(motion_move_to(&mo, a, NULL, &e), 0);
    f->lost_steps_move = f->nmoves + 1;
    assert_int_equal(motion_move_to(&mo, b, NULL, &e), SS_ESTALL);
    assert_non_null(strstr(e.msg, "x axis reads 2960.00 um"));
    assert_non_null(strstr(e.msg, "steps lost"));
    assert_false(mo.cmd_known);
    f->nmoves = 100;
    assert_int_equal(motion_move_to(&mo, b, NULL, &e), 0);
    assert_true(mo.overshoots >= 2);
    free(f);
}

static void
test_a_stage_that_stays_busy_times_out(void **state)
{
    struct fake *f = fake_new(0);
    struct motion_cfg c;
    struct motion mo;
    struct ss_err e;
    double a[3] = { 1000, 1000, 0 };

    f->busy_forever = true;
    motion_cfg_default(&c);
    c.move_timeout_ms = 500;
    motion_init(&mo, &f->st, fk_clock(f), &c);
    assert_int_equal(motion_move_to(&mo, a, NULL, &e), SS_ETIMEOUT);
    assert_non_null(strstr(e.msg, "still busy after 500 ms"));
    assert_false(f->busy_forever);
    free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_s2_without_compensation_row_two_is_80_px_off),
        cmocka_unit_test(test_s2_with_compensation_every_approach_from_below),
        cmocka_unit_test(test_s2_through_tile_capture),
        cmocka_unit_test(test_s1_settle_time_guards_an_early_idle),
        cmocka_unit_test(test_s1_two_readings_must_agree),
        cmocka_unit_test(test_limits_name_the_axis_and_move_nothing),
        cmocka_unit_test(test_lost_steps_are_a_stall_and_forget_the_position),
        cmocka_unit_test(test_a_stage_that_stays_busy_times_out),
    };

    return cmocka_run_group_tests_name("motion", tests, NULL, NULL);
}
