/* SPDX-License-Identifier: MIT */
/*
 * drivers/guard: deadlines, busy retries, resets and the scan policy,
 * against a small fake camera and stage whose faults the tests switch on:
 * busy on chosen calls, a capture or move that never returns until the test
 * releases it, an open refused because another program holds the device.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "drivers/guard.h"

/* What all fake devices of one test share: fault switches and counts. */
struct world {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int captures;                   /* capture calls, all instances */
    int busy_on;                    /* this capture says busy once */
    bool busy_always;
    int hang_on;                    /* this capture never returns ... */
    bool released;                  /* ... until this is set */
    int move_hang_on;
    int moves;
    bool held;                      /* open fails: another program */
    int created, destroyed, opens, closes;
    int in_call;                    /* calls running right now */
    double slept_ms;                /* back-off on the fake clock */
    struct cam_settings last;       /* settings of the newest camera */
};

static struct world W;

struct fake {
    struct world *w;
    bool open;
    struct cam_settings s;
};

static void
world_reset(void)
{
    memset(&W, 0, sizeof(W));
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cv, NULL);
}

static void
world_release(void)
{
    pthread_mutex_lock(&W.mu);
    W.released = true;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void
hang(void)
{
    pthread_mutex_lock(&W.mu);
    while (!W.released)
        pthread_cond_wait(&W.cv, &W.mu);
    pthread_mutex_unlock(&W.mu);
}

static int
fcam_open(struct camera *cam, struct ss_err *err)
{
    struct fake *f = cam->priv;
    bool held;

    pthread_mutex_lock(&W.mu);
    held = W.held;
    W.opens++;
    pthread_mutex_unlock(&W.mu);
    if (held)
        return err_set(err, SS_EHELD, "camera: the USB interface is "
                       "claimed by another program");
    f->open = true;
    return 0;
}

static void
fcam_close(struct camera *cam)
{
    struct fake *f = cam->priv;

    pthread_mutex_lock(&W.mu);
    W.closes++;
    pthread_mutex_unlock(&W.mu);
    f->open = false;
}

static int
fcam_configure(struct camera *cam, const struct cam_settings *s,
               struct ss_err *err)
{
    struct fake *f = cam->priv;

    f->s = *s;
    pthread_mutex_lock(&W.mu);
    W.last = *s;
    pthread_mutex_unlock(&W.mu);
    return 0;
}

static int
fcam_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct fake *f = cam->priv;
    int n, busy = 0, hangs;

    pthread_mutex_lock(&W.mu);
    n = ++W.captures;
    if (W.busy_always || W.busy_on == n)
        busy = 1;                   /* busy_on: once, the retry is n + 1 */
    hangs = W.hang_on == n;
    pthread_mutex_unlock(&W.mu);
    if (!f->open)
        return err_set(err, SS_EDEVICE, "camera: not open");
    if (busy)
        return err_set(err, SS_EBUSY, "camera: device busy");
    if (hangs)
        hang();
    *frame = img_new(8, 6, 3, IMG_U8);
    ((unsigned char *)(*frame)->data)[0] = (unsigned char)f->s.exposure_ms;
    return 0;
}

static int
fcam_lamp(struct camera *cam, bool on, struct ss_err *err)
{
    return 0;
}

static void
fcam_destroy(struct camera *cam)
{
    pthread_mutex_lock(&W.mu);
    W.destroyed++;
    pthread_mutex_unlock(&W.mu);
    free(cam->priv);
    free(cam);
}

static const struct cam_ops fcam_ops = {
    .name = "fake",
    .open = fcam_open,
    .close = fcam_close,
    .configure = fcam_configure,
    .capture = fcam_capture,
    .preview = NULL,
    .set_lamp = fcam_lamp,
    .destroy = fcam_destroy,
};

static int
new_fcam(void *ctx, struct camera **out, struct ss_err *err)
{
    struct camera *c = calloc(1, sizeof(*c));
    struct fake *f = calloc(1, sizeof(*f));

    f->w = &W;
    c->ops = &fcam_ops;
    c->priv = f;
    c->frame_w = 8;
    c->frame_h = 6;
    snprintf(c->model, sizeof(c->model), "fake camera");
    pthread_mutex_lock(&W.mu);
    W.created++;
    pthread_mutex_unlock(&W.mu);
    *out = c;
    return 0;
}

static int
fst_open(struct stage *st, struct ss_err *err)
{
    return 0;
}

static void
fst_close(struct stage *st)
{
}

static int
fst_ok(struct stage *st, struct ss_err *err)
{
    return 0;
}

static int
fst_move(struct stage *st, const double pos[3], struct ss_err *err)
{
    double *p = st->priv;
    int n, hangs;

    pthread_mutex_lock(&W.mu);
    n = ++W.moves;
    hangs = W.move_hang_on == n;
    pthread_mutex_unlock(&W.mu);
    if (hangs)
        hang();
    memcpy(p, pos, 3 * sizeof(double));
    return 0;
}

static int
fst_pos(struct stage *st, double pos[3], struct ss_err *err)
{
    memcpy(pos, st->priv, 3 * sizeof(double));
    return 0;
}

static int
fst_busy(struct stage *st, bool *busy, struct ss_err *err)
{
    *busy = false;
    return 0;
}

static void
fst_destroy(struct stage *st)
{
    pthread_mutex_lock(&W.mu);
    W.destroyed++;
    pthread_mutex_unlock(&W.mu);
    free(st->priv);
    free(st);
}

static const struct stage_ops fst_ops = {
    .name = "fake",
    .open = fst_open,
    .close = fst_close,
    .home = fst_ok,
    .move_abs = fst_move,
    .get_position = fst_pos,
    .is_busy = fst_busy,
    .stop = fst_ok,
    .destroy = fst_destroy,
};

static int
new_fst(void *ctx, struct stage **out, struct ss_err *err)
{
    struct stage *s = calloc(1, sizeof(*s));

    s->ops = &fst_ops;
    s->priv = calloc(3, sizeof(double));
    pthread_mutex_lock(&W.mu);
    W.created++;
    pthread_mutex_unlock(&W.mu);
    *out = s;
    return 0;
}

static double
fake_now(void *ctx)
{
    return util_now_ms();
}

static void
fake_sleep(void *ctx, double ms)
{
    pthread_mutex_lock(&W.mu);
    W.slept_ms += ms;
    pthread_mutex_unlock(&W.mu);
}

/* A microscope of fake devices, opened, guarded with short deadlines. */
static struct microscope *
scope(bool factory, double capture_ms)
{
    struct microscope *m = calloc(1, sizeof(*m));
    struct guard_factory f = { new_fcam, new_fst, NULL };
    struct guard_policy p;
    struct cam_settings s = { 250, 1.0, { 1, 1, 1 } };
    struct ss_err e;

    new_fcam(NULL, &m->cam, &e);
    new_fst(NULL, &m->stage, &e);
    m->clock.now_ms = fake_now;
    m->clock.sleep_ms = fake_sleep;
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    guard_policy_default(&p);
    p.deadline_ms[GUARD_CAM_CAPTURE] = capture_ms;
    p.deadline_ms[GUARD_STAGE_MOVE] = capture_ms;
    assert_int_equal(guard_microscope_wrap(m, &p, factory ? &f : NULL, &e),
                     0);
    assert_true(guard_is_wrapped(m));
    assert_int_equal(m->cam->ops->configure(m->cam, &s, &e), 0);
    return m;
}

static int
capture(struct microscope *m, struct ss_err *e)
{
    struct img *fr = NULL;
    int rc = camera_capture(m->cam, &fr, e);

    if (rc == 0) {
        assert_non_null(fr);
        assert_int_equal(fr->w, 8);
        assert_int_equal(((unsigned char *)fr->data)[0], 250);
    } else {
        assert_null(fr);
    }
    img_free(fr);
    return rc;
}

static void
wait_until_unstuck(struct microscope *m)
{
    struct guard_counts c;
    int i;

    for (i = 0; i < 200; i++) {
        guard_counts_total(m, &c);
        if (c.stuck == 0)
            return;
        usleep(10000);
    }
    assert_int_equal(c.stuck, 0);
}

/* D2: a capture that never returns.  The deadline fires on time, the stuck
 * thread is left alone, the next call works on a rebuilt camera that has
 * the same settings, and the abandoned device is freed once it returns. */
static void
test_hung_capture_times_out_and_camera_is_rebuilt(void **state)
{
    struct microscope *m;
    struct guard_counts c;
    struct ss_err e;
    double t0, dt;
    int i;

    world_reset();
    m = scope(true, 150);
    W.hang_on = 37;
    for (i = 1; i < 37; i++)
        assert_int_equal(capture(m, &e), 0);
    guard_counts_take(m, &c);
    assert_int_equal(c.timeouts, 0);

    t0 = util_now_ms();
    assert_int_equal(capture(m, &e), SS_ETIMEOUT);
    dt = util_now_ms() - t0;
    assert_string_equal(e.msg, "camera: capture did not return within "
                        "150 ms");
    assert_true(dt >= 149.0);
    assert_true(dt < 1000.0);
    guard_counts_take(m, &c);
    assert_int_equal(c.timeouts, 1);
    assert_int_equal(c.stuck, 1);

    /* Tile 37 again: a new camera from the factory, configured as before. */
    memset(&W.last, 0, sizeof(W.last));
    assert_int_equal(capture(m, &e), 0);
    assert_int_equal(W.created, 3);             /* camera, stage, new one */
    assert_true(W.last.exposure_ms == 250.0);
    guard_counts_take(m, &c);
    assert_int_equal(c.resets, 1);
    assert_int_equal(c.stuck, 1);
    for (i = 39; i <= 100; i++)
        assert_int_equal(capture(m, &e), 0);

    world_release();
    wait_until_unstuck(m);
    guard_counts_total(m, &c);
    assert_int_equal(c.timeouts, 1);
    microscope_free(m);
    assert_int_equal(W.destroyed, 3);
    assert_int_equal(W.destroyed, W.created);
}

/* C1: busy once on the second capture is retried and recorded. */
static void
test_busy_once_is_retried_and_counted(void **state)
{
    struct microscope *m;
    struct guard_counts c;
    struct ss_err e;

    world_reset();
    m = scope(true, 2000);
    W.busy_on = 2;
    assert_int_equal(capture(m, &e), 0);
    guard_counts_take(m, &c);
    assert_int_equal(c.busy_retries, 0);
    assert_int_equal(capture(m, &e), 0);
    guard_counts_take(m, &c);
    assert_int_equal(c.busy_retries, 1);
    assert_int_equal(c.resets, 0);
    assert_int_equal(W.captures, 3);
    assert_true(W.slept_ms == 200.0);
    assert_int_equal(capture(m, &e), 0);
    guard_counts_take(m, &c);
    assert_int_equal(c.busy_retries, 0);
    microscope_free(m);
    assert_int_equal(W.destroyed, W.created);
}

/* C1: busy on every call: bounded retries with growing pauses, one reset,
 * then SS_EBUSY "camera busy". */
static void
test_busy_always_resets_once_then_fails(void **state)
{
    struct microscope *m;
    struct guard_counts c;
    struct ss_err e;

    world_reset();
    m = scope(true, 2000);
    W.busy_always = true;
    assert_int_equal(capture(m, &e), SS_EBUSY);
    assert_non_null(strstr(e.msg, "camera busy"));
    assert_non_null(strstr(e.msg, "after a reset"));
    guard_counts_take(m, &c);
    assert_int_equal(c.resets, 1);
    assert_int_equal(W.captures, 8);            /* 4 asks, reset, 4 asks */
    assert_int_equal(c.busy_retries, 7);
    assert_true(W.slept_ms == 2 * (200.0 + 400.0 + 800.0));
    assert_int_equal(W.created, 3);
    W.busy_always = false;
    assert_int_equal(capture(m, &e), 0);
    microscope_free(m);
    assert_int_equal(W.destroyed, W.created);
}

/* Without a factory a reset reopens the same camera, and a camera lost to
 * a missed deadline stays lost with a clear message. */
static void
test_without_factory(void **state)
{
    struct microscope *m;
    struct guard_counts c;
    struct ss_err e;

    world_reset();
    m = scope(false, 100);
    W.busy_always = true;
    assert_int_equal(capture(m, &e), SS_EBUSY);
    guard_counts_take(m, &c);
    assert_int_equal(c.resets, 1);
    assert_int_equal(W.created, 2);
    assert_int_equal(W.closes, 1);
    assert_int_equal(W.opens, 2);
    W.busy_always = false;

    W.hang_on = W.captures + 1;
    assert_int_equal(capture(m, &e), SS_ETIMEOUT);
    assert_int_equal(capture(m, &e), SS_EGONE);
    assert_non_null(strstr(e.msg, "no way to recreate"));
    world_release();
    wait_until_unstuck(m);
    microscope_free(m);
    assert_int_equal(W.destroyed, W.created);
}

/* A stage move that never returns: "stage: move did not return within",
 * and the next stage call runs on a rebuilt stage. */
static void
test_hung_move(void **state)
{
    struct microscope *m;
    struct ss_err e;
    double to[3] = { 100, 200, 5 }, at[3];

    world_reset();
    m = scope(true, 120);
    W.move_hang_on = 2;
    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e), 0);
    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e),
                     SS_ETIMEOUT);
    assert_string_equal(e.msg, "stage: move did not return within 120 ms");
    assert_int_equal(m->stage->ops->get_position(m->stage, at, &e), 0);
    assert_true(at[0] == 0.0);      /* a new stage: nothing moved it yet */
    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e), 0);
    assert_int_equal(m->stage->ops->get_position(m->stage, at, &e), 0);
    assert_true(at[0] == 100.0 && at[1] == 200.0 && at[2] == 5.0);
    assert_int_equal(capture(m, &e), 0);
    world_release();
    wait_until_unstuck(m);
    microscope_free(m);
    assert_int_equal(W.destroyed, W.created);
}

/* C2: another program holds the camera.  Every call names the cause; the
 * probe a daemon runs periodically succeeds once the camera is free. */
static void
test_held_camera_recovers_by_probe(void **state)
{
    struct microscope *m;
    struct ss_err e;

    world_reset();
    m = scope(true, 2000);
    m->cam->ops->close(m->cam);
    W.held = true;
    assert_int_equal(m->cam->ops->open(m->cam, &e), SS_EHELD);
    assert_non_null(strstr(e.msg, "claimed by another program"));
    assert_int_equal(capture(m, &e), SS_EHELD);
    assert_int_equal(guard_probe(m, &e), SS_EHELD);
    W.held = false;
    assert_int_equal(guard_probe(m, &e), 0);
    assert_int_equal(capture(m, &e), 0);
    assert_true(W.last.exposure_ms == 250.0);
    microscope_free(m);
    assert_int_equal(W.destroyed, W.created);
}

static void
test_policy_keys(void **state)
{
    struct guard_policy p;
    struct ss_err e;

    guard_policy_default(&p);
    assert_true(p.deadline_ms[GUARD_CAM_CAPTURE] == 20000.0);
    assert_int_equal(guard_policy_set(&p, "capture_ms", "5000", &e), 0);
    assert_true(p.deadline_ms[GUARD_CAM_CAPTURE] == 5000.0);
    assert_int_equal(guard_policy_set(&p, "move_ms", "750", &e), 0);
    assert_true(p.deadline_ms[GUARD_STAGE_MOVE] == 750.0);
    assert_int_equal(guard_policy_set(&p, "busy_retries", "5", &e), 0);
    assert_int_equal(p.busy_retries, 5);
    assert_int_equal(guard_policy_set(&p, "busy_resets", "2", &e), 0);
    assert_int_equal(p.busy_resets, 2);
    assert_int_equal(guard_policy_set(&p, "busy_retries", "2.5", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "busy_retries: '2.5' is not a whole number");
    assert_int_equal(guard_policy_set(&p, "capture_ms", "soon", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "capture_ms: 'soon' is not a number");
    assert_int_equal(guard_policy_set(&p, "captur_ms", "1", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "captur_ms: unknown deadline setting");
    assert_string_equal(guard_op_name(GUARD_STAGE_HOME), "home");
}

static enum guard_action
act(int code, int attempt, int in_row, bool in_tile)
{
    struct guard_fault f = { code, attempt, in_row, in_tile };

    return guard_fault_action(&f);
}

/* The scan policy of D2, C1, C2 and a full disk. */
static void
test_fault_actions(void **state)
{
    assert_int_equal(act(SS_ETIMEOUT, 0, 0, true), GUARD_ACT_RETRY_TILE);
    assert_int_equal(act(SS_ETIMEOUT, 1, 0, true), GUARD_ACT_FAIL_TILE);
    assert_int_equal(act(SS_ETIMEOUT, 1, 3, true), GUARD_ACT_PAUSE);
    assert_int_equal(act(SS_EBUSY, 0, 0, true), GUARD_ACT_PAUSE);
    assert_int_equal(act(SS_EHELD, 0, 0, false), GUARD_ACT_WAIT_DEVICE);
    assert_int_equal(act(SS_EGONE, 0, 0, true), GUARD_ACT_WAIT_DEVICE);
    assert_int_equal(act(SS_ESTALL, 0, 0, true), GUARD_ACT_RETRY_TILE);
    assert_int_equal(act(SS_ESTALL, 1, 0, true), GUARD_ACT_PAUSE);
    assert_int_equal(act(-ENOSPC, 0, 0, true), GUARD_ACT_WAIT_SPACE);
    assert_int_equal(act(-ENOSPC, 0, 0, false), GUARD_ACT_WAIT_SPACE);
    assert_int_equal(act(SS_ETIMEOUT, 0, 0, false), GUARD_ACT_PAUSE);
    assert_int_equal(act(SS_EFORMAT, 0, 0, false), GUARD_ACT_FAIL_SCAN);
    assert_int_equal(act(-EIO, 0, 0, true), GUARD_ACT_PAUSE);
    assert_string_equal(guard_action_name(GUARD_ACT_WAIT_SPACE),
                        "wait for space");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hung_capture_times_out_and_camera_is_rebuilt),
        cmocka_unit_test(test_busy_once_is_retried_and_counted),
        cmocka_unit_test(test_busy_always_resets_once_then_fails),
        cmocka_unit_test(test_without_factory),
        cmocka_unit_test(test_hung_move),
        cmocka_unit_test(test_held_camera_recovers_by_probe),
        cmocka_unit_test(test_policy_keys),
        cmocka_unit_test(test_fault_actions),
    };

    return cmocka_run_group_tests_name("guard", tests, NULL, NULL);
}
