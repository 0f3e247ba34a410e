/* SPDX-License-Identifier: MIT */
/*
 * Every device fault of the simulated microscope (drivers/sim/sim.h
 * sim_fault_set) through the guard (drivers/guard.h) and, for the stage,
 * the motion layer (drivers/motion.h): the code and message each fault
 * produces, what the guard did about it (retries, deadline, rebuild,
 * reconnect), the scan policy's action, and that the next call works once
 * the fault is over.  The camera's factory is sim_camera_new(), as in the
 * daemon.
 */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "drivers/guard.h"
#include "drivers/motion.h"
#include "drivers/sim/sim.h"

struct rig {
    struct microscope *m;
    struct sim *sim;
    struct motion mo;
};

static int
new_cam(void *ctx, struct camera **out, struct ss_err *err)
{
    return sim_camera_new(ctx, out, err);
}

static int
new_stage(void *ctx, struct stage **out, struct ss_err *err)
{
    return sim_stage_new(ctx, out, err);
}

static void
rig_open(struct rig *r, double deadline_ms)
{
    struct sim_config c;
    struct guard_policy p;
    struct guard_factory f = { new_cam, new_stage, NULL };
    struct cam_settings s = { 250, 1.0, { 1, 1, 1 } };
    struct motion_cfg mc;
    struct ss_err e;

    sim_config_default(&c);
    c.sensor_w = 256;
    c.sensor_h = 192;
    snprintf(c.slide, sizeof(c.slide), "phantom:HE:seed=5:w_mm=1:h_mm=1");
    if (sim_microscope_new(&c, &r->m, &e) != 0)
        fail_msg("sim_microscope_new: %s", e.msg);
    r->sim = sim_of(r->m);
    f.ctx = r->sim;
    guard_policy_default(&p);
    p.deadline_ms[GUARD_CAM_CAPTURE] = deadline_ms;
    p.deadline_ms[GUARD_STAGE_MOVE] = deadline_ms;
    assert_int_equal(guard_microscope_wrap(r->m, &p, &f, &e), 0);
    assert_int_equal(r->m->cam->ops->open(r->m->cam, &e), 0);
    assert_int_equal(r->m->stage->ops->open(r->m->stage, &e), 0);
    assert_int_equal(r->m->stage->ops->home(r->m->stage, &e), 0);
    assert_int_equal(r->m->cam->ops->configure(r->m->cam, &s, &e), 0);
    motion_cfg_default(&mc);
    motion_init(&r->mo, r->m->stage, r->m->clock, &mc);
}

static void
rig_close(struct rig *r)
{
    microscope_free(r->m);
}

static void
fault(struct rig *r, const char *spec)
{
    struct ss_err e;

    if (sim_fault_set(r->sim, spec, &e) != 0)
        fail_msg("sim_fault_set %s: %s", spec, e.msg);
}

static int
snap(struct rig *r, struct ss_err *e)
{
    struct img *fr = NULL;
    int rc = camera_capture(r->m->cam, &fr, e);

    if (rc == 0) {
        assert_non_null(fr);
        assert_int_equal(fr->w, 256);
    }
    img_free(fr);
    return rc;
}

static int
move(struct rig *r, double x, double y, struct ss_err *e)
{
    double to[3] = { x, y, 0 };

    return motion_move_to(&r->mo, to, NULL, e);
}

static enum guard_action
policy(int code, int attempt)
{
    struct guard_fault f = { code, attempt, 0, true };

    return guard_fault_action(&f);
}

/* C1: busy once on the second capture: retried, counted, no error. */
static void
test_camera_busy_once(void **state)
{
    struct rig r;
    struct guard_counts c;
    struct sim_counters sc;
    struct ss_err e;

    rig_open(&r, 5000);
    fault(&r, "camera_busy@capture=2");
    assert_int_equal(snap(&r, &e), 0);
    guard_counts_take(r.m, &c);
    assert_int_equal(snap(&r, &e), 0);
    guard_counts_take(r.m, &c);
    assert_int_equal(c.busy_retries, 1);
    assert_int_equal(c.resets, 0);
    sim_counters_get(r.sim, &sc);
    assert_int_equal(sc.captures, 3);
    rig_close(&r);
}

/* C1: busy on every call: one reset, then SS_EBUSY "camera busy", which
 * pauses the scan; once the camera is free again it captures. */
static void
test_camera_busy_always(void **state)
{
    struct rig r;
    struct guard_counts c;
    struct ss_err e;

    rig_open(&r, 5000);
    fault(&r, "camera_busy@always");
    assert_int_equal(snap(&r, &e), SS_EBUSY);
    assert_non_null(strstr(e.msg, "camera busy"));
    guard_counts_take(r.m, &c);
    assert_int_equal(c.resets, 1);
    assert_int_equal(policy(SS_EBUSY, 0), GUARD_ACT_PAUSE);
    sim_fault_clear(r.sim);
    assert_int_equal(snap(&r, &e), 0);
    rig_close(&r);
}

/* D2: a capture that never returns: the deadline fires on time, the scan
 * retries the tile once on a rebuilt camera, and it works. */
static void
test_capture_hang(void **state)
{
    struct rig r;
    struct guard_counts c;
    struct ss_err e;
    double t0, dt;
    int i;

    rig_open(&r, 400);
    fault(&r, "capture_hang@capture=3");
    assert_int_equal(snap(&r, &e), 0);
    assert_int_equal(snap(&r, &e), 0);
    t0 = util_now_ms();
    assert_int_equal(snap(&r, &e), SS_ETIMEOUT);
    dt = util_now_ms() - t0;
    assert_string_equal(e.msg, "camera: capture did not return within "
                        "400 ms");
    assert_true(dt >= 399 && dt < 2000);
    assert_int_equal(policy(SS_ETIMEOUT, 0), GUARD_ACT_RETRY_TILE);
    assert_int_equal(snap(&r, &e), 0);          /* the retry */
    guard_counts_take(r.m, &c);
    assert_int_equal(c.timeouts, 1);
    assert_int_equal(c.resets, 1);
    assert_int_equal(c.stuck, 1);
    sim_fault_clear(r.sim);                     /* releases the hung call */
    for (i = 0; i < 200 && c.stuck > 0; i++) {
        usleep(10000);
        guard_counts_total(r.m, &c);
    }
    assert_int_equal(c.stuck, 0);
    rig_close(&r);
}

/* A camera that reports its own timeout is answering: no rebuild, the
 * tile is retried and the next capture works. */
static void
test_capture_timeout(void **state)
{
    struct rig r;
    struct guard_counts c;
    struct ss_err e;

    rig_open(&r, 5000);
    fault(&r, "capture_timeout@capture=2");
    assert_int_equal(snap(&r, &e), 0);
    assert_int_equal(snap(&r, &e), SS_ETIMEOUT);
    assert_non_null(strstr(e.msg, "camera: capture timed out after"));
    guard_counts_take(r.m, &c);
    assert_int_equal(c.timeouts, 0);
    assert_int_equal(c.resets, 0);
    assert_int_equal(snap(&r, &e), 0);
    rig_close(&r);
}

/* Unplugged for two calls and back: the capture fails SS_EGONE, the scan
 * waits for the device, the daemon's periodic probe reconnects once the
 * camera is back, and capturing goes on. */
static void
test_camera_unplug_and_back(void **state)
{
    struct rig r;
    struct ss_err e;
    int tries = 0;

    rig_open(&r, 5000);
    fault(&r, "camera_unplug@capture=2:for=3");
    assert_int_equal(snap(&r, &e), 0);
    assert_int_equal(snap(&r, &e), SS_EGONE);
    assert_non_null(strstr(e.msg, "camera: device disconnected"));
    assert_int_equal(policy(SS_EGONE, 0), GUARD_ACT_WAIT_DEVICE);
    while (guard_probe(r.m, &e) != 0) {
        assert_int_equal(e.code, SS_EGONE);
        assert_true(++tries < 5);
    }
    assert_true(tries >= 1);
    assert_int_equal(snap(&r, &e), 0);
    rig_close(&r);
}

/* C2: held by another program at open: SS_EHELD with a message that says
 * so; the scan stays queued; the probe succeeds once it is released. */
static void
test_camera_held(void **state)
{
    struct rig r;
    struct ss_err e;

    rig_open(&r, 5000);
    r.m->cam->ops->close(r.m->cam);
    fault(&r, "camera_held@open=1:for=2");
    assert_int_equal(r.m->cam->ops->open(r.m->cam, &e), SS_EHELD);
    assert_non_null(strstr(e.msg, "camera: held by another program"));
    assert_int_equal(policy(SS_EHELD, 0), GUARD_ACT_WAIT_DEVICE);
    assert_int_equal(guard_probe(r.m, &e), SS_EHELD);
    assert_int_equal(guard_probe(r.m, &e), 0);
    assert_int_equal(snap(&r, &e), 0);
    rig_close(&r);
}

/* A stage that stalls mid-move: SS_ESTALL, the tile is retried once (the
 * next move makes its overshoot approach again) and it lands. */
static void
test_stage_stall(void **state)
{
    struct rig r;
    struct ss_err e;

    rig_open(&r, 5000);
    assert_int_equal(move(&r, 2000, 2000, &e), 0);
    fault(&r, "stage_stall@move=1");
    assert_int_equal(move(&r, 2600, 2000, &e), SS_ESTALL);
    assert_non_null(strstr(e.msg, "motor stalled"));
    assert_int_equal(policy(SS_ESTALL, 0), GUARD_ACT_RETRY_TILE);
    assert_int_equal(policy(SS_ESTALL, 1), GUARD_ACT_PAUSE);
    assert_int_equal(move(&r, 2600, 2000, &e), 0);
    rig_close(&r);
}

/* Lost steps: the controller reports where the carriage really is, the
 * motion layer's verification finds it 40 µm short and says so. */
static void
test_lost_steps(void **state)
{
    struct rig r;
    struct ss_err e;

    rig_open(&r, 5000);
    assert_int_equal(move(&r, 2000, 2000, &e), 0);
    fault(&r, "lost_steps@move=1:um=40:axis=x");
    assert_int_equal(move(&r, 3000, 2000, &e), SS_ESTALL);
    assert_non_null(strstr(e.msg, "x axis reads"));
    assert_non_null(strstr(e.msg, "steps lost"));
    assert_int_equal(move(&r, 3000, 2000, &e), 0);
    rig_close(&r);
}

/* The controller times out a move: SS_ETIMEOUT from the device (not the
 * guard's deadline), no rebuild, the retry lands. */
static void
test_stage_timeout(void **state)
{
    struct rig r;
    struct guard_counts c;
    struct ss_err e;

    rig_open(&r, 5000);
    assert_int_equal(move(&r, 2000, 2000, &e), 0);
    guard_counts_take(r.m, &c);
    fault(&r, "stage_timeout@move=1");
    assert_int_equal(move(&r, 2500, 2500, &e), SS_ETIMEOUT);
    assert_non_null(strstr(e.msg, "did not answer the move"));
    guard_counts_take(r.m, &c);
    assert_int_equal(c.timeouts, 0);
    assert_int_equal(policy(SS_ETIMEOUT, 0), GUARD_ACT_RETRY_TILE);
    assert_int_equal(move(&r, 2500, 2500, &e), 0);
    rig_close(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_camera_busy_once),
        cmocka_unit_test(test_camera_busy_always),
        cmocka_unit_test(test_capture_hang),
        cmocka_unit_test(test_capture_timeout),
        cmocka_unit_test(test_camera_unplug_and_back),
        cmocka_unit_test(test_camera_held),
        cmocka_unit_test(test_stage_stall),
        cmocka_unit_test(test_lost_steps),
        cmocka_unit_test(test_stage_timeout),
    };

    return cmocka_run_group_tests_name("guard_sim", tests, NULL, NULL);
}
