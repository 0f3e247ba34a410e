/* SPDX-License-Identifier: MIT */
/*
 * The simulated stage measured against its configuration: backlash on a
 * reversal, repeatability σ, settling after the controller reports idle
 * (field case S1), the trapezoidal timing on the virtual clock, travel
 * limits, and the history-free determinism a restarted daemon relies on.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <time.h>

#include "drivers/sim/sim.h"

static struct microscope *
make(const char *const *kv)
{
    struct microscope *m = NULL;
    struct sim_config c;
    struct ss_err e;

    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "sensor_w", "256", &e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_h", "192", &e), 0);
    for (; kv != NULL && kv[0] != NULL; kv += 2)
        if (sim_config_set(&c, kv[0], kv[1], &e) != 0)
            fail_msg("%s", e.msg);
    if (sim_microscope_new(&c, &m, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(m->stage->ops->open(m->stage, &e), 0);
    assert_int_equal(m->stage->ops->home(m->stage, &e), 0);
    return m;
}

/* Moves and waits (on the virtual clock) until the controller is idle. */
static void
move(struct microscope *m, double x, double y, double z)
{
    double to[3] = { x, y, z };
    struct ss_err e;
    bool busy = true;

    if (m->stage->ops->move_abs(m->stage, to, &e) != 0)
        fail_msg("move: %s", e.msg);
    while (busy) {
        assert_int_equal(m->stage->ops->is_busy(m->stage, &busy, &e), 0);
        if (busy)
            mic_sleep_ms(m, 1);
    }
}

static void
test_reversal_lands_off_by_the_backlash(void **state)
{
    static const char *const kv[] = {
        "backlash_um", "5,12,2", "repeat_sigma_um", "0", "overshoot_um",
        "0", NULL
    };
    struct microscope *m = make(kv);
    struct sim *s = sim_of(m);
    double p[3];

    move(m, 1000, 1000, 10);                    /* approached moving + */
    sim_true_position(s, p);
    assert_true(fabs(p[0] - 1000) < 1e-9 && fabs(p[1] - 1000) < 1e-9 &&
                fabs(p[2] - 10) < 1e-9);
    move(m, 2000, 2000, 20);
    move(m, 1000, 1000, 10);                    /* approached moving − */
    sim_true_position(s, p);
    print_message("# reversal error x %.3f y %.3f z %.3f um\n", p[0] - 1000,
                  p[1] - 1000, p[2] - 10);
    assert_true(fabs(p[0] - 1000 - 5) < 1e-6);
    assert_true(fabs(p[1] - 1000 - 12) < 1e-6);
    assert_true(fabs(p[2] - 10 - 2) < 1e-6);
    move(m, 900, 900, 5);                       /* one-sided approach */
    move(m, 1000, 1000, 10);
    sim_true_position(s, p);
    assert_true(fabs(p[0] - 1000) < 1e-9 && fabs(p[1] - 1000) < 1e-9);
    /* A reversal shorter than the dead band leaves the carriage put. */
    move(m, 997, 1000, 10);
    sim_true_position(s, p);
    assert_true(fabs(p[0] - 1000) < 1e-9);
    microscope_free(m);
}

static void
test_repeatability_sigma_matches_config(void **state)
{
    static const char *const kv[] = { "repeat_sigma_um", "0.5,0.5,0.1",
                                      NULL };
    struct microscope *m = make(kv);
    struct sim *s = sim_of(m);
    double p[3], sx = 0, sxx = 0, again, first = 0, mean, sd;
    int i, n = 400;

    for (i = 0; i < n; i++) {
        move(m, 1000 - 60 - i * 0.37, 1000, 0);
        move(m, 1000, 1000, 0);
        mic_sleep_ms(m, 200);
        sim_true_position(s, p);
        if (i == 0)
            first = p[0];
        sx += p[0] - 1000;
        sxx += (p[0] - 1000) * (p[0] - 1000);
    }
    mean = sx / n;
    sd = sqrt(sxx / n - mean * mean);
    print_message("# repeatability: mean %.3f um, sigma %.3f um (config "
                  "0.5)\n", mean, sd);
    assert_true(fabs(sd - 0.5) < 0.05);
    assert_true(fabs(mean) < 0.08);
    /* The same move gives the same error: keyed, not drawn from history. */
    move(m, 1000 - 60, 1000, 0);
    move(m, 1000, 1000, 0);
    mic_sleep_ms(m, 200);
    sim_true_position(s, p);
    again = p[0];
    assert_true(again == first);
    microscope_free(m);
}

/* S1: idle is reported while the axis still rings (peaking after the
 * stop); under 0.5 µm within 40 ms; the true position rings along. */
static void
test_settling_after_idle_s1(void **state)
{
    struct microscope *m = make(NULL);
    struct sim *s = sim_of(m);
    double p[3], t[3], t_idle, late = 0, early = 0;
    struct ss_err e;

    move(m, 1000, 1000, 0);
    move(m, 2000, 1000, 0);
    t_idle = sim_clock_ms(s);
    while (sim_clock_ms(s) < t_idle + 200) {
        assert_int_equal(m->stage->ops->get_position(m->stage, p, &e), 0);
        sim_true_position(s, t);
        if (sim_clock_ms(s) < t_idle + 40)
            early = fmax(early, fabs(p[0] - 2000));
        else
            late = fmax(late, fabs(p[0] - 2000));
        assert_true(fabs(t[0] - p[0]) < 1.0);  /* repeatability only */
    }
    print_message("# after idle: overshoot up to %.2f um, then at most "
                  "%.3f um from 40 ms on\n", early, late);
    assert_true(early > 2.0);
    assert_true(late < 0.5);
    microscope_free(m);
}

static void
test_clock_accounts_trapezoid_and_capture(void **state)
{
    static const char *const kv[] = { "query_ms", "0", NULL };
    struct microscope *m = make(kv);
    struct sim *s = sim_of(m);
    double to[3] = { 5000, 0, 0 }, t0, t_end = -1;
    struct cam_settings cs = { 100, 1, { 1, 1, 1 } };
    struct img *im = NULL;
    struct ss_err e;
    bool busy;

    t0 = sim_clock_ms(s);
    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e), 0);
    /* 5 mm at 10 mm/s with 100 mm/s²: 500 ms + 100 ms of ramps. */
    while (t_end < 0) {
        assert_int_equal(m->stage->ops->is_busy(m->stage, &busy, &e), 0);
        if (!busy)
            t_end = sim_clock_ms(s) - t0;
        else
            mic_sleep_ms(m, 0.5);
    }
    print_message("# 5 mm move took %.1f ms virtual\n", t_end);
    assert_true(fabs(t_end - 600) <= 0.6);
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    assert_int_equal(m->cam->ops->configure(m->cam, &cs, &e), 0);
    t0 = sim_clock_ms(s);
    assert_int_equal(m->cam->ops->capture(m->cam, &im, &e), 0);
    assert_true(fabs(sim_clock_ms(s) - t0 - (100 + 80)) < 1e-6);
    img_free(im);
    t0 = sim_clock_ms(s);
    mic_sleep_ms(m, 123.5);
    assert_true(fabs(mic_now_ms(m) - t0 - 123.5) < 1e-9);
    microscope_free(m);
}

static void
test_travel_limits_name_the_axis(void **state)
{
    struct microscope *m = make(NULL);
    double to[3] = { 500, 500, 900 };
    struct ss_err e;

    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e), -ERANGE);
    assert_non_null(strstr(e.msg, "z target 900.0 um"));
    to[2] = 0;
    to[0] = m->stage->limits.max_um[0] + 1;
    assert_int_equal(m->stage->ops->move_abs(m->stage, to, &e), -ERANGE);
    assert_non_null(strstr(e.msg, "x target"));
    microscope_free(m);
}

/* A restarted daemon re-does the one-sided approach to a tile from
 * somewhere else: the frame must be identical. */
static void
test_restart_reproduces_a_tile_exactly(void **state)
{
    struct microscope *a = make(NULL), *b = make(NULL);
    struct img *fa = NULL, *fb = NULL, *tmp = NULL;
    struct sim_truth ta, tb;
    double x = 1800, y = 1500, z;
    struct ss_err e;

    z = sim_focus_z(sim_of(a), x, y);
    assert_int_equal(sim_snap(sim_of(a), 2900, 2100, z, 0, 50, &tmp, &e), 0);
    img_free(tmp);
    assert_int_equal(sim_snap(sim_of(a), x, y, z, 0, 50, &fa, &e), 0);
    sim_truth_last(sim_of(a), &ta);
    mic_sleep_ms(b, 777);
    assert_int_equal(sim_snap(sim_of(b), x, y, z, 0, 50, &fb, &e), 0);
    sim_truth_last(sim_of(b), &tb);
    assert_true(ta.x_um == tb.x_um && ta.y_um == tb.y_um);
    assert_memory_equal(fa->data, fb->data, img_bytes(fa));
    img_free(fa);
    img_free(fb);
    microscope_free(a);
    microscope_free(b);
}

static double
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
test_time_scale_sleeps_real_time(void **state)
{
    static const char *const kv[] = { "time_scale", "0.05", NULL };
    struct microscope *m = make(kv);
    double t0 = wall_ms(), dt;

    mic_sleep_ms(m, 2000);                      /* 100 ms real */
    dt = wall_ms() - t0;
    print_message("# 2000 virtual ms at time_scale 0.05: %.0f real ms\n",
                  dt);
    assert_true(dt >= 99 && dt < 2000);
    microscope_free(m);
}

struct worker {
    struct microscope *m;
    int errors;
};

static void *
capture_loop(void *arg)
{
    struct worker *w = arg;
    struct img *im;
    int i;

    for (i = 0; i < 40; i++) {
        im = NULL;
        if (w->m->cam->ops->capture(w->m->cam, &im, NULL) != 0)
            w->errors++;
        img_free(im);
    }
    return NULL;
}

/* Camera and stage driven from two threads at once. */
static void
test_camera_and_stage_from_two_threads(void **state)
{
    struct microscope *m = make(NULL);
    struct worker w = { m, 0 };
    double to[3], p[3];
    pthread_t th;
    bool busy;
    int i, errors = 0;

    assert_int_equal(m->cam->ops->open(m->cam, NULL), 0);
    pthread_create(&th, NULL, capture_loop, &w);
    for (i = 0; i < 200; i++) {
        to[0] = 1000 + (i % 7) * 100;
        to[1] = 1000 + (i % 5) * 100;
        to[2] = (i % 3) * 2.0;
        errors += m->stage->ops->move_abs(m->stage, to, NULL) != 0;
        errors += m->stage->ops->is_busy(m->stage, &busy, NULL) != 0;
        errors += m->stage->ops->get_position(m->stage, p, NULL) != 0;
    }
    pthread_join(th, NULL);
    assert_int_equal(errors, 0);
    assert_int_equal(w.errors, 0);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reversal_lands_off_by_the_backlash),
        cmocka_unit_test(test_repeatability_sigma_matches_config),
        cmocka_unit_test(test_settling_after_idle_s1),
        cmocka_unit_test(test_clock_accounts_trapezoid_and_capture),
        cmocka_unit_test(test_travel_limits_name_the_axis),
        cmocka_unit_test(test_restart_reproduces_a_tile_exactly),
        cmocka_unit_test(test_time_scale_sleeps_real_time),
        cmocka_unit_test(test_camera_and_stage_from_two_threads),
    };

    return cmocka_run_group_tests_name("sim stage", tests, NULL, NULL);
}
