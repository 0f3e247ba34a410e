/* SPDX-License-Identifier: MIT */
/*
 * drivers/hw stage: the real libusb code path against USB controllers
 * emulated with umockdev (tests/support/stage_emu.c) in this process.
 * The program re-runs itself under umockdev-wrapper when started
 * without the umockdev preload library.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "drivers/hw/hw.h"
#include "tests/support/fake_camera.h"
#include "tests/support/stage_emu.h"

#define TEST_VID 0x1209             /* pid.codes test id */

static bool in_mock;
static uint16_t next_pid = 0x0001;

static void
pause_ms(double ms)
{
    struct timespec ts = { (time_t)(ms / 1000),
                           (long)(fmod(ms, 1000) * 1e6) };

    nanosleep(&ts, NULL);
}

/* A fresh emulated controller with its own USB id, and a stage driver
 * configured for it. */
static struct stage_emu *
setup(enum se_dialect d, struct hw_stage_config *sc, uint16_t *pid)
{
    struct hw_config c;
    struct stage_emu *e;
    const char *why = NULL;

    if (!in_mock)
        return NULL;
    *pid = next_pid++;
    e = se_new(d, TEST_VID, *pid, &why);
    if (e == NULL) {
        print_message("# umockdev: %s\n", why);
        return NULL;
    }
    hw_config_default(&c);
    hw_config_set(&c, "stage", "driver",
                  d == SE_PROSCAN ? "proscan" : "sangaboard", NULL);
    c.stage.vid = TEST_VID;
    c.stage.pid = *pid;
    c.stage.timeout_ms = 300;
    *sc = c.stage;
    return e;
}

static struct stage *
open_stage(const struct hw_stage_config *sc)
{
    struct stage *st = NULL;
    struct ss_err e;

    assert_int_equal(hw_stage_new(sc, &st, &e), 0);
    if (st->ops->open(st, &e) != 0)
        fail_msg("open: %s", e.msg);
    return st;
}

static void
close_stage(struct stage *st)
{
    st->ops->close(st);
    stage_free(st);
}

static bool
wait_idle(struct stage *st, double max_ms)
{
    double end = util_now_ms() + max_ms;
    struct ss_err e;
    bool busy = true;

    while (util_now_ms() < end) {
        assert_int_equal(st->ops->is_busy(st, &busy, &e), 0);
        if (!busy)
            return true;
        pause_ms(10);
    }
    return false;
}

static void
test_sangaboard_dialogue(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double target[3] = { 1000.0, -250.4, 42.0 }, pos[3], raw[3];
    bool busy;
    uint16_t pid;

    if ((emu = setup(SE_SANGABOARD, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    sc.steps_per_um[0] = 2.0;               /* 0.5 µm per step on x */
    st = open_stage(&sc);
    assert_int_equal(se_baud(emu), 115200);
    assert_int_equal(se_line_state(emu), 3);   /* DTR and RTS */

    se_set_move_ms(emu, 300);
    assert_int_equal(st->ops->move_abs(st, target, &e), 0);
    assert_int_equal(st->ops->is_busy(st, &busy, &e), 0);
    assert_true(busy);
    assert_true(wait_idle(st, 2000));
    se_position(emu, raw);
    assert_true(raw[0] == 2000 && raw[1] == -250 && raw[2] == 42);
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    assert_true(fabs(pos[0] - 1000.0) < 1e-9);
    assert_true(fabs(pos[1] - (-250.0)) < 1e-9);   /* whole steps */
    assert_true(fabs(pos[2] - 42.0) < 1e-9);

    assert_int_equal(st->ops->stop(st, &e), 0);
    assert_int_equal(st->ops->home(st, &e), 0);
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    assert_true(pos[0] == 0 && pos[1] == 0 && pos[2] == 0);
    close_stage(st);
    se_free(emu);
}

static void
test_proscan_dialogue(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double target[3] = { 5000, 7000, -30 }, pos[3];
    char last[64];
    bool busy;
    uint16_t pid;

    if ((emu = setup(SE_PROSCAN, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    st = open_stage(&sc);
    assert_int_equal(se_baud(emu), 9600);
    se_set_move_ms(emu, 200);
    assert_int_equal(st->ops->move_abs(st, target, &e), 0);
    se_last_command(emu, last, sizeof(last));
    assert_string_equal(last, "G,5000,7000,-30");
    assert_int_equal(st->ops->is_busy(st, &busy, &e), 0);
    assert_true(busy);
    assert_true(wait_idle(st, 2000));
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    assert_true(pos[0] == 5000 && pos[1] == 7000 && pos[2] == -30);
    assert_int_equal(st->ops->home(st, &e), 0);
    se_last_command(emu, last, sizeof(last));
    assert_string_equal(last, "SIS");
    close_stage(st);
    se_last_command(emu, last, sizeof(last));
    assert_string_equal(last, "J");          /* joystick given back */
    se_free(emu);
}

/* A controller that stops answering: SS_ETIMEOUT after the configured
 * deadline, and once it answers again the next command works (a reply
 * that arrives late is never taken for a later command's). */
static void
test_timeout_then_recovery(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double pos[3], t0, took;
    uint16_t pid;

    if ((emu = setup(SE_SANGABOARD, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    st = open_stage(&sc);
    se_set_mute(emu, true);
    t0 = util_now_ms();
    assert_int_equal(st->ops->get_position(st, pos, &e), SS_ETIMEOUT);
    took = util_now_ms() - t0;
    print_message("# timeout after %.0f ms (deadline 300 ms)\n", took);
    assert_true(took >= 290 && took < 1500);
    assert_non_null(strstr(e.msg, "no reply to 'p?' within 300 ms"));
    se_set_mute(emu, false);
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    close_stage(st);
    se_free(emu);
}

/* Unplugged mid-use: SS_EGONE naming the device; plugged back in, the
 * next call reconnects by itself. */
static void
test_unplug_and_replug(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double pos[3], target[3] = { 10, 20, 30 };
    char id[32];
    uint16_t pid;
    int rc;

    if ((emu = setup(SE_SANGABOARD, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    st = open_stage(&sc);
    se_set_plugged(emu, false);
    rc = st->ops->get_position(st, pos, &e);
    assert_int_equal(rc, SS_EGONE);
    snprintf(id, sizeof(id), "1209:%04x", pid);
    assert_non_null(strstr(e.msg, id));
    rc = st->ops->move_abs(st, target, &e);
    print_message("# unplugged: %s\n", e.msg);
    assert_int_equal(rc, SS_EGONE);
    assert_non_null(strstr(e.msg, "no such device attached"));
    se_set_plugged(emu, true);
    assert_int_equal(st->ops->move_abs(st, target, &e), 0);
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    assert_true(pos[0] == 10 && pos[1] == 20 && pos[2] == 30);
    close_stage(st);
    se_free(emu);
}

static void
test_wrong_dialect_and_missing_device(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st = NULL;
    struct ss_err e;
    uint16_t pid;

    if ((emu = setup(SE_SANGABOARD, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    sc.dialect = HW_STAGE_PROSCAN;
    assert_int_equal(hw_stage_new(&sc, &st, &e), 0);
    assert_int_equal(st->ops->open(st, &e), SS_EPROTO);
    assert_non_null(strstr(e.msg, "not a proscan controller"));
    stage_free(st);

    sc.dialect = HW_STAGE_SANGABOARD;
    sc.pid = 0x00fe;
    assert_int_equal(hw_stage_new(&sc, &st, &e), 0);
    assert_int_equal(st->ops->open(st, &e), SS_EGONE);
    assert_non_null(strstr(e.msg, "USB 1209:00fe: no such device attached"));
    stage_free(st);
    se_free(emu);
}

static void
test_travel_limits_refuse_the_move(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double target[3] = { 0, 80000, 0 };
    uint16_t pid;
    long before;

    if ((emu = setup(SE_PROSCAN, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    sc.max_um[1] = 75000;
    st = open_stage(&sc);
    before = se_commands(emu);
    assert_int_not_equal(st->ops->move_abs(st, target, &e), 0);
    assert_non_null(strstr(e.msg, "y = 80000.00 µm is outside the travel"));
    assert_int_equal(se_commands(emu), before);
    close_stage(st);
    se_free(emu);
}

/* The scripted dialogues in tests/support/hw_stage_*.ioctl: fixed byte
 * streams each dialect must produce and accept, replayed by umockdev's
 * own ioctl tree handler. */
static void
run_tree(enum hw_stage_dialect d, const char *file, uint16_t pid)
{
    char path[1024];
    struct hw_config c;
    struct stage_emu *emu;
    struct stage *st;
    struct ss_err e;
    double target[3] = { 100, 200, 300 }, pos[3];
    const char *why;
    bool busy;

    snprintf(path, sizeof(path), "%s/tests/support/%s", tu_root(), file);
    emu = se_new_tree(TEST_VID, pid, path, &why);
    if (emu == NULL)
        fail_msg("%s: %s", file, why);
    hw_config_default(&c);
    c.stage.dialect = d;
    c.stage.vid = TEST_VID;
    c.stage.pid = pid;
    c.stage.timeout_ms = 500;
    st = open_stage(&c.stage);
    assert_int_equal(st->ops->move_abs(st, target, &e), 0);
    assert_int_equal(st->ops->is_busy(st, &busy, &e), 0);
    assert_true(busy);
    assert_int_equal(st->ops->is_busy(st, &busy, &e), 0);
    assert_false(busy);
    assert_int_equal(st->ops->get_position(st, pos, &e), 0);
    assert_true(pos[0] == 100 && pos[1] == 200 && pos[2] == 300);
    stage_free(st);
    se_free(emu);
}

static void
test_scripted_dialogues(void **state)
{
    if (!in_mock)
        tu_skip("umockdev is not available");
    run_tree(HW_STAGE_SANGABOARD, "hw_stage_sangaboard.ioctl", 0x0020);
    run_tree(HW_STAGE_PROSCAN, "hw_stage_proscan.ioctl", 0x0021);
}

static void
test_devices_report(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct hw_config c;
    struct ss_err e;
    json_t *r, *stages;
    char want[8];
    uint16_t pid;
    size_t i, hits = 0;

    if ((emu = setup(SE_SANGABOARD, &sc, &pid)) == NULL)
        tu_skip("umockdev is not available");
    hw_config_default(&c);
    c.stage = sc;
    assert_int_equal(hw_devices_report(&c, &r, &e), 0);
    stages = json_object_get(r, "stages");
    snprintf(want, sizeof(want), "%04x", pid);
    for (i = 0; i < json_array_size(stages); i++)
        if (!strcmp(json_string_value(json_object_get(
                json_array_get(stages, i), "pid")), want))
            hits++;
    assert_int_equal(hits, 1);
    assert_true(json_is_true(json_object_get(r, "ok")));
    json_decref(r);

    c.stage.pid = 0x00fd;
    assert_int_equal(hw_devices_report(&c, &r, &e), 0);
    assert_true(json_is_false(json_object_get(r, "ok")));
    assert_string_equal(json_string_value(json_array_get(
        json_object_get(r, "problems"), 0)),
        "stage: no USB device 1209:00fd attached at any");
    json_decref(r);

    /* A stage whose USB id is not known says so, not "0000:0000". */
    assert_int_equal(hw_config_set(&c, "stage", "driver", "proscan", &e), 0);
    c.stage.vid = 0;
    c.stage.pid = 0;
    assert_int_equal(hw_devices_report(&c, &r, &e), 0);
    assert_true(json_is_false(json_object_get(r, "ok")));
    assert_string_equal(json_string_value(json_array_get(
        json_object_get(r, "problems"), 0)),
        "stage: driver proscan has no known USB id: set vid and pid in "
        "[stage] to the controller's (4 hex digits each, as lsusb shows "
        "them)");
    json_decref(r);
    se_free(emu);
}

struct watch_seen {
    int arrived, removed;
    uint16_t pid;
};

static void
on_usb(const struct hw_usb_event *ev, void *arg)
{
    struct watch_seen *s = arg;

    if (ev->pid != s->pid)
        return;
    if (ev->arrived)
        s->arrived++;
    else
        s->removed++;
}

static bool
run_until(uv_loop_t *loop, const int *counter, double max_ms)
{
    double end = util_now_ms() + max_ms;

    while (*counter == 0 && util_now_ms() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        pause_ms(20);
    }
    return *counter > 0;
}

/* Removal and arrival reach the loop thread through uv_async. */
static void
test_hotplug_reaches_the_loop(void **state)
{
    struct hw_stage_config sc;
    struct stage_emu *emu;
    struct hw_config c;
    struct hw_watch *w;
    struct watch_seen seen = { 0, 0, 0 };
    struct ss_err e;
    uv_loop_t loop;

    if ((emu = setup(SE_SANGABOARD, &sc, &seen.pid)) == NULL)
        tu_skip("umockdev is not available");
    hw_config_default(&c);
    c.stage = sc;
    uv_loop_init(&loop);
    assert_int_equal(hw_watch_start(&loop, &c, on_usb, &seen, &w, &e), 0);
    se_set_plugged(emu, false);
    assert_true(run_until(&loop, &seen.removed, 5000));
    se_set_plugged(emu, true);
    assert_true(run_until(&loop, &seen.arrived, 5000));
    hw_watch_stop(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    se_free(emu);
}

static void
test_config_errors_name_key_and_cause(void **state)
{
    struct hw_config c;
    struct ss_err e;

    hw_config_default(&c);
    assert_int_equal(hw_config_set(&c, "stage", "driver", "marzhauser", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "[stage] driver = 'marzhauser': must be "
                        "sangaboard, proscan or none");
    assert_int_equal(hw_config_set(&c, "stage", "steps_per_um_q", "2", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "[stage] steps_per_um_q: unknown key");
    assert_int_equal(hw_config_set(&c, "stage", "usb", "1-4", &e),
                     SS_ECONFIG);
    assert_int_equal(hw_config_set(&c, "stage", "usb", "001:004", &e), 0);
    assert_true(c.stage.bus == 1 && c.stage.address == 4);
    assert_int_equal(hw_config_set(&c, "stage", "vid", "0483", &e), 0);
    assert_int_equal(c.stage.vid, 0x0483);
    assert_int_equal(hw_config_set(&c, "stage", "max_y_um", "75000", &e),
                     0);
    assert_true(c.stage.max_um[1] == 75000);
    assert_int_equal(hw_config_set(&c, "camera", "orientation", "upside",
                                   &e), SS_ECONFIG);
    assert_int_equal(hw_config_set(&c, "lamp", "x", "1", &e), SS_ECONFIG);
    assert_int_equal(hw_config_set(&c, "camera", "port",
                                   "ptpip:127.0.0.1:15740:15740", &e), 0);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors_name_key_and_cause),
        cmocka_unit_test(test_sangaboard_dialogue),
        cmocka_unit_test(test_proscan_dialogue),
        cmocka_unit_test(test_timeout_then_recovery),
        cmocka_unit_test(test_unplug_and_replug),
        cmocka_unit_test(test_wrong_dialect_and_missing_device),
        cmocka_unit_test(test_travel_limits_refuse_the_move),
        cmocka_unit_test(test_scripted_dialogues),
        cmocka_unit_test(test_devices_report),
        cmocka_unit_test(test_hotplug_reaches_the_loop),
    };

    fc_reexec_for_lsan(argv);
    in_mock = se_reexec_under_umockdev(argv);
    return cmocka_run_group_tests_name("hw_stage", tests, NULL, NULL);
}
