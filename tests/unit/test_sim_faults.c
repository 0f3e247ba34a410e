/* SPDX-License-Identifier: MIT */
/*
 * Fault injection of the simulated microscope: each fault type gives its
 * error code on the counted call and only there, a hung capture blocks
 * until released (by sim_fault_clear() or the end of the microscope), an
 * unplugged camera comes back, and malformed specs and config keys are
 * refused with a message naming them.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drivers/sim/sim.h"

static struct microscope *
make(void)
{
    struct microscope *m = NULL;
    struct sim_config c;
    struct ss_err e;

    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "sensor_w", "128", &e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_h", "96", &e), 0);
    if (sim_microscope_new(&c, &m, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    assert_int_equal(m->stage->ops->open(m->stage, &e), 0);
    return m;
}

static void
set(struct microscope *m, const char *spec)
{
    struct ss_err e;

    if (sim_fault_set(sim_of(m), spec, &e) != 0)
        fail_msg("%s: %s", spec, e.msg);
}

static int
capture(struct microscope *m, struct ss_err *e)
{
    struct img *im = NULL;
    int rc = m->cam->ops->capture(m->cam, &im, e);

    assert_true((rc == 0) == (im != NULL));
    img_free(im);
    return rc;
}

static int
move(struct microscope *m, double x, struct ss_err *e)
{
    double to[3] = { x, 1000, 0 };

    return m->stage->ops->move_abs(m->stage, to, e);
}

static void
test_camera_busy_once_and_always(void **state)
{
    struct microscope *m = make();
    struct ss_err e;
    int i;

    set(m, "camera_busy@capture=2");
    assert_int_equal(capture(m, &e), 0);
    assert_int_equal(capture(m, &e), SS_EBUSY);
    assert_string_equal(e.msg, "camera busy");
    assert_int_equal(capture(m, &e), 0);
    set(m, "camera_busy@always");
    for (i = 0; i < 5; i++)
        assert_int_equal(capture(m, &e), SS_EBUSY);
    sim_fault_clear(sim_of(m));
    assert_int_equal(capture(m, &e), 0);
    microscope_free(m);
}

static void
test_capture_timeout_costs_virtual_time(void **state)
{
    struct microscope *m = make();
    struct ss_err e;
    double t0;
    int i;

    set(m, "capture_timeout@capture=5");
    for (i = 1; i <= 4; i++)
        assert_int_equal(capture(m, &e), 0);
    t0 = sim_clock_ms(sim_of(m));
    assert_int_equal(capture(m, &e), SS_ETIMEOUT);
    assert_non_null(strstr(e.msg, "timed out"));
    assert_true(sim_clock_ms(sim_of(m)) - t0 >= 5000);
    assert_int_equal(capture(m, &e), 0);
    microscope_free(m);
}

struct hang {
    struct microscope *m;
    int rc;
    volatile int done;
    struct ss_err e;
};

static void *
hang_thread(void *arg)
{
    struct hang *h = arg;

    h->rc = capture(h->m, &h->e);
    h->done = 1;
    return NULL;
}

static void
wait_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static void
test_hung_capture_waits_for_release(void **state)
{
    struct microscope *m = make();
    struct camera *cam2 = NULL;
    struct hang h = { .m = m };
    struct ss_err e;
    pthread_t th;
    int i;

    set(m, "capture_hang@capture=2");
    assert_int_equal(capture(m, &e), 0);
    pthread_create(&th, NULL, hang_thread, &h);
    wait_ms(300);
    assert_int_equal(h.done, 0);                /* still hanging */
    /* A fresh camera (as a guard's factory makes) works meanwhile. */
    assert_int_equal(sim_camera_new(sim_of(m), &cam2, &e), 0);
    assert_int_equal(cam2->ops->open(cam2, &e), 0);
    for (i = 0; i < 2; i++) {
        struct img *im = NULL;

        assert_int_equal(cam2->ops->capture(cam2, &im, &e), 0);
        img_free(im);
    }
    assert_int_equal(h.done, 0);
    sim_fault_clear(sim_of(m));
    pthread_join(th, NULL);
    assert_int_equal(h.rc, SS_ECANCELED);
    cam2->ops->close(cam2);
    camera_free(cam2);
    microscope_free(m);
}

static void
test_hung_capture_released_by_the_end(void **state)
{
    struct microscope *m = make();
    struct camera *cam = NULL;
    struct img *im = NULL;
    struct hang h;
    struct ss_err e;
    pthread_t th;

    /* The hung call runs on a camera that outlives the microscope, as a
     * guard's abandoned device does. */
    assert_int_equal(sim_camera_new(sim_of(m), &cam, &e), 0);
    assert_int_equal(cam->ops->open(cam, &e), 0);
    set(m, "capture_hang@capture=1");
    memset(&h, 0, sizeof(h));
    h.m = m;
    h.rc = 1;
    {
        struct microscope tmp = *m;

        tmp.cam = cam;
        h.m = &tmp;
        pthread_create(&th, NULL, hang_thread, &h);
        wait_ms(200);
        assert_int_equal(h.done, 0);
        microscope_free(m);
        pthread_join(th, NULL);
    }
    assert_int_equal(h.rc, SS_ECANCELED);
    assert_int_equal(cam->ops->capture(cam, &im, &e), 0);
    img_free(im);
    cam->ops->close(cam);
    camera_free(cam);
}

static void
test_unplug_and_back(void **state)
{
    struct microscope *m = make();
    struct ss_err e;

    set(m, "camera_unplug@capture=2:for=3");
    assert_int_equal(capture(m, &e), 0);
    assert_int_equal(capture(m, &e), SS_EGONE);
    assert_non_null(strstr(e.msg, "disconnected"));
    assert_int_equal(m->cam->ops->open(m->cam, &e), SS_EGONE);
    assert_int_equal(capture(m, &e), SS_EGONE);
    assert_int_equal(capture(m, &e), 0);        /* back after 3 calls */
    set(m, "camera_unplug@capture=1:ms=1000");
    assert_int_equal(capture(m, &e), SS_EGONE);
    assert_int_equal(capture(m, &e), SS_EGONE);
    mic_sleep_ms(m, 1000);
    assert_int_equal(capture(m, &e), 0);
    microscope_free(m);
}

static void
test_camera_held_by_another_program(void **state)
{
    struct microscope *m = make();
    struct ss_err e;

    set(m, "camera_held@open=1:for=2");
    m->cam->ops->close(m->cam);
    assert_int_equal(m->cam->ops->open(m->cam, &e), SS_EHELD);
    assert_non_null(strstr(e.msg, "held by another program"));
    assert_int_equal(m->cam->ops->open(m->cam, &e), SS_EHELD);
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    microscope_free(m);
}

static void
test_stage_faults(void **state)
{
    struct microscope *m = make();
    struct sim *s = sim_of(m);
    double p[3], t0;
    struct ss_err e;

    set(m, "stage_stall@move=2");
    assert_int_equal(move(m, 1000, &e), 0);
    mic_sleep_ms(m, 1000);
    assert_int_equal(move(m, 3000, &e), SS_ESTALL);
    assert_non_null(strstr(e.msg, "stalled"));
    mic_sleep_ms(m, 1000);
    assert_int_equal(m->stage->ops->get_position(m->stage, p, &e), 0);
    assert_true(fabs(p[0] - 2000) < 1e-6);      /* stopped half way */

    set(m, "lost_steps@move=1:um=40:axis=x");
    assert_int_equal(move(m, 4000, &e), 0);
    mic_sleep_ms(m, 1000);
    assert_int_equal(m->stage->ops->get_position(m->stage, p, &e), 0);
    print_message("# lost steps: commanded 4000, reported %.2f um\n", p[0]);
    assert_true(fabs(p[0] - 3960) < 1e-6);
    assert_true(fabs(p[1] - 1000) < 1e-6);

    set(m, "stage_timeout@move=1");
    t0 = sim_clock_ms(s);
    assert_int_equal(move(m, 1000, &e), SS_ETIMEOUT);
    assert_true(sim_clock_ms(s) - t0 >= 2000);
    assert_int_equal(m->stage->ops->get_position(m->stage, p, &e), 0);
    assert_true(fabs(p[0] - 3960) < 1e-6);      /* did not move */
    assert_int_equal(move(m, 1000, &e), 0);
    microscope_free(m);
}

static void
test_bad_specs_and_keys_are_refused(void **state)
{
    static const char *const bad[] = {
        "camera_busy", "camera_busy@capture", "camera_busy@capture=0",
        "camera_busy@move=2", "stage_stall@capture=1", "melt@capture=1",
        "lost_steps@move=2:um=-4", "lost_steps@move=2:axis=w",
        "camera_busy@capture=2:for=0", "camera_busy@capture=2:colour=red",
    };
    struct microscope *m = make();
    struct sim_config c;
    struct sim_counters sc;
    struct ss_err e;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sim_fault_set(sim_of(m), bad[i], &e), SS_ECONFIG);
        assert_non_null(strstr(e.msg, bad[i]));
        assert_true(strncmp(e.msg, "fault: '", 8) == 0);
        /* the [simulator] fault key is checked when it is set */
        sim_config_default(&c);
        assert_int_equal(sim_config_set(&c, "fault", bad[i], &e),
                         SS_ECONFIG);
        assert_true(e.msg[0] == '\'' && strstr(e.msg, bad[i]) != NULL);
    }
    sim_config_default(&c);
    /* the cause only: the caller names the key */
    assert_int_equal(sim_config_set(&c, "no_such_key", "1", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "unknown key");
    assert_int_equal(sim_config_set(&c, "sensor_w", "wide", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "'wide' is not a number");
    assert_int_equal(sim_config_set(&c, "objective", "63x", &e), SS_ECONFIG);
    assert_int_equal(sim_config_set(&c, "backlash_um", "1,2", &e),
                     SS_ECONFIG);
    assert_int_equal(sim_config_set(&c, "backlash_um", "1,2,3", &e), 0);
    assert_true(c.backlash_um[2] == 3);
    assert_int_equal(sim_config_set(&c, "fault", "camera_busy@capture=2",
                                    &e), 0);
    sim_counters_get(sim_of(m), &sc);
    assert_int_equal(sc.faults_fired, 0);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_camera_busy_once_and_always),
        cmocka_unit_test(test_capture_timeout_costs_virtual_time),
        cmocka_unit_test(test_hung_capture_waits_for_release),
        cmocka_unit_test(test_hung_capture_released_by_the_end),
        cmocka_unit_test(test_unplug_and_back),
        cmocka_unit_test(test_camera_held_by_another_program),
        cmocka_unit_test(test_stage_faults),
        cmocka_unit_test(test_bad_specs_and_keys_are_refused),
    };

    return cmocka_run_group_tests_name("sim faults", tests, NULL, NULL);
}
