/* SPDX-License-Identifier: MIT */
/*
 * drivers/hw camera: the real libgphoto2 and its ptp2 driver against the
 * fake PTP/IP camera (tests/support/fake_ptpip_camera.py) on an ephemeral
 * 127.0.0.1 port.  $HOME points into the test's directory so libgphoto2's
 * settings file is the test's own.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "common/util.h"
#include "drivers/hw/hw.h"
#include "tests/support/fake_camera.h"

static struct img *served;          /* what the fake camera serves */
static char served_path[512], preview_path[512];
static int ncase;

static struct img *
pattern(int w, int h, int seed)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint8_t *p = img_u8(im, x, y);

            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x / 16 + y / 16 + seed) % 2 ? 200 : 40);
        }
    return im;
}

static int
setup_group(void **state)
{
    struct img *a = pattern(320, 240, 0), *b = pattern(160, 120, 1);
    struct ss_err e;

    setenv("HOME", tu_tmpdir(), 1);
    snprintf(served_path, sizeof(served_path), "%s", tu_tmp("frame.jpg"));
    snprintf(preview_path, sizeof(preview_path), "%s", tu_tmp("live.jpg"));
    if (img_jpeg_write(a, served_path, 92, &e) != 0 ||
        img_jpeg_write(b, preview_path, 80, &e) != 0)
        return -1;
    img_free(a);
    img_free(b);
    return img_jpeg_read(served_path, &served, &e);
}

static int
teardown_group(void **state)
{
    img_free(served);
    return 0;
}

/* A fake camera of its own for each test, and a camera configured for
 * it.  The frame size is left to be learnt from a first frame. */
static struct camera *
start(struct fake_camera *fc, const char *vendor, int busy_retries)
{
    char dir[64];
    struct hw_camera_config cc;
    struct hw_config c;
    struct camera *cam = NULL;
    struct ss_err e;

    snprintf(dir, sizeof(dir), "cam%d", ++ncase);
    if (fc_start(fc, tu_tmp(dir), served_path, vendor) != 0)
        return NULL;
    hw_config_default(&c);
    assert_int_equal(hw_config_set(&c, "camera", "driver", "gphoto2", &e),
                     0);
    assert_int_equal(hw_config_set(&c, "camera", "port", fc->port_str, &e),
                     0);
    cc = c.cam;
    cc.busy_retries = busy_retries;
    cc.busy_backoff_ms = 20;
    assert_int_equal(hw_camera_new(&cc, &cam, &e), 0);
    return cam;
}

static void
stop(struct fake_camera *fc, struct camera *cam)
{
    if (cam != NULL) {
        cam->ops->close(cam);
        camera_free(cam);
    }
    fc_stop(fc);
}

static void
open_ok(struct camera *cam)
{
    struct ss_err e;

    if (cam->ops->open(cam, &e) != 0)
        fail_msg("open: %s", e.msg);
}

static struct hw_camera_stats
stats_of(struct camera *cam)
{
    struct hw_camera_stats s;

    assert_int_equal(hw_camera_stats(cam, &s), 0);
    return s;
}

static void
test_capture_download_delete(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;
    int i;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    open_ok(cam);
    assert_int_equal(cam->frame_w, 320);
    assert_int_equal(cam->frame_h, 240);
    for (i = 0; i < 3; i++) {
        assert_int_equal(camera_capture(cam, &f, &e), 0);
        assert_int_equal(f->w, 320);
        /* The very bytes the camera holds, decoded the same way. */
        assert_true(isinf(img_psnr(f, served, 0, 0, 320, 240)));
        img_free(f);
    }
    /* Every frame, the size probe included, was deleted on the camera. */
    assert_int_equal(fc_count(&fc, "InitiateCapture"), 4);
    assert_int_equal(fc_count(&fc, "GetObject "), 4);
    assert_int_equal(fc_count(&fc, "DeleteObject"), 4);
    assert_int_equal(stats_of(cam).captures, 4);
    stop(&fc, cam);
}

static void
test_configure_sets_shutter_and_iso(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct cam_settings s = { 250.0, 4.0, { 1, 1, 1 } };
    struct ss_err e;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    open_ok(cam);
    if (cam->ops->configure(cam, &s, &e) != 0)
        fail_msg("configure: %s", e.msg);
    /* PTP ExposureTime is in 0.1 ms: 250 ms = 2500; ISO = 100 × 4. */
    assert_int_equal(fc_count(&fc, "exposure 2500"), 1);
    assert_int_equal(fc_count(&fc, "iso 400"), 1);
    s.exposure_ms = 600;
    s.gain = 1.0;
    assert_int_equal(cam->ops->configure(cam, &s, &e), 0);
    assert_int_equal(fc_count(&fc, "exposure 5000"), 1);   /* nearest */
    assert_int_equal(fc_count(&fc, "iso 100"), 1);
    s.gain = 0;
    assert_int_equal(cam->ops->configure(cam, &s, &e), -22);
    stop(&fc, cam);
}

static void
test_preview_sony_and_generic(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;
    char ctl[700];

    if ((cam = start(&fc, "sony", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    snprintf(ctl, sizeof(ctl), "{\"preview\": \"%s\"}", preview_path);
    fc_control(&fc, ctl);
    open_ok(cam);
    assert_non_null(cam->ops->preview);
    if (cam->ops->preview(cam, &f, &e) != 0)
        fail_msg("preview: %s", e.msg);
    assert_int_equal(f->w, 160);
    assert_int_equal(f->h, 120);
    img_free(f);
    assert_int_equal(fc_count(&fc, "GetObject 0xffffc002"), 1);
    stop(&fc, cam);

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    open_ok(cam);
    assert_int_equal(cam->ops->preview(cam, &f, &e), -95);
    assert_non_null(strstr(e.msg, "has no live view"));
    stop(&fc, cam);
}

/* Field case C1: busy once on the 2nd capture → retried and recorded. */
static void
test_c1_busy_once_is_retried_and_recorded(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    cam->frame_w = 320;                     /* no size probe */
    cam->frame_h = 240;
    fc_control(&fc, "{\"busy_captures\": [2]}");
    open_ok(cam);
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    assert_int_equal(stats_of(cam).busy_retries, 0);
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    assert_int_equal(stats_of(cam).busy_retries, 1);
    assert_int_equal(stats_of(cam).resets, 0);
    assert_int_equal(stats_of(cam).captures, 2);
    assert_int_equal(fc_count(&fc, "InitiateCapture"), 3);
    stop(&fc, cam);
}

/* Field case C1: busy on every call → bounded retries, one reset, then
 * SS_EBUSY "camera busy". */
static void
test_c1_busy_always_resets_once_then_gives_up(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;
    int rc;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    cam->frame_w = 320;
    cam->frame_h = 240;
    open_ok(cam);
    fc_control(&fc, "{\"busy_always\": true}");
    rc = camera_capture(cam, &f, &e);
    assert_int_equal(rc, SS_EBUSY);
    assert_null(f);
    assert_non_null(strstr(e.msg, "camera busy"));
    assert_int_equal(stats_of(cam).busy_retries, 3);
    assert_int_equal(stats_of(cam).resets, 1);
    /* 1 + 3 retries, then 1 after the reset (a new session). */
    assert_int_equal(fc_count(&fc, "InitiateCapture"), 5);
    assert_int_equal(fc_count(&fc, "OpenSession"), 2);
    stop(&fc, cam);
}

/* Field case C2: another program holds the camera → SS_EHELD with a
 * message that says so; once it is free, a retry succeeds. */
static void
test_c2_held_then_free(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    fc_control(&fc, "{\"held\": true}");
    assert_int_equal(cam->ops->open(cam, &e), SS_EHELD);
    print_message("# held: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "another program"));
    assert_non_null(strstr(e.msg, fc.port_str));
    fc_control(&fc, "{}");
    open_ok(cam);
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    stop(&fc, cam);
}

/* No answer to GetObject: SS_ETIMEOUT, then the next capture runs on a
 * fresh session. */
static void
test_timeout_then_fresh_session(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;
    double t0, took;
    int rc;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    cam->frame_w = 320;
    cam->frame_h = 240;
    open_ok(cam);
    fc_control(&fc, "{\"hang\": \"GetObject\"}");
    t0 = util_now_ms();
    rc = camera_capture(cam, &f, &e);
    took = util_now_ms() - t0;
    print_message("# hang: rc=%d after %.0f ms: %s\n", rc, took, e.msg);
    assert_true(rc == SS_ETIMEOUT || rc == SS_EGONE);
    assert_true(took < 20000);
    fc_control(&fc, "{}");
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    assert_true(fc_count(&fc, "OpenSession") >= 2);
    stop(&fc, cam);
}

/* The camera disappears mid-scan: SS_EGONE; when it is back, the next
 * capture reconnects by itself. */
static void
test_gone_mid_scan_then_reconnect(void **state)
{
    struct fake_camera fc;
    struct camera *cam;
    struct img *f = NULL;
    struct ss_err e;

    if ((cam = start(&fc, "generic", 3)) == NULL)
        tu_skip("the fake PTP/IP camera cannot run here");
    cam->frame_w = 320;
    cam->frame_h = 240;
    open_ok(cam);
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    fc_control(&fc, "{\"gone\": true}");
    assert_int_equal(camera_capture(cam, &f, &e), SS_EGONE);
    print_message("# gone: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "camera gone"));
    assert_int_equal(camera_capture(cam, &f, &e), SS_EGONE);
    fc_control(&fc, "{}");
    assert_int_equal(camera_capture(cam, &f, &e), 0);
    img_free(f);
    assert_true(stats_of(cam).reconnects >= 1);
    stop(&fc, cam);
}

static void
test_missing_camera_is_an_error_naming_it(void **state)
{
    struct hw_config c;
    struct microscope *m = NULL;
    struct ss_err e;

    hw_config_default(&c);
    assert_int_equal(hw_microscope_new(&c, &m, &e), SS_ECONFIG);
    /* Port 9 on loopback: the discard port, nothing listens there. */
    hw_config_set(&c, "camera", "driver", "gphoto2", &e);
    hw_config_set(&c, "camera", "port", "ptpip:127.0.0.1:9:9", &e);
    assert_int_not_equal(hw_microscope_new(&c, &m, &e), 0);
    assert_null(m);
    print_message("# missing: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "ptpip:127.0.0.1:9:9"));
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture_download_delete),
        cmocka_unit_test(test_configure_sets_shutter_and_iso),
        cmocka_unit_test(test_preview_sony_and_generic),
        cmocka_unit_test(test_c1_busy_once_is_retried_and_recorded),
        cmocka_unit_test(test_c1_busy_always_resets_once_then_gives_up),
        cmocka_unit_test(test_c2_held_then_free),
        cmocka_unit_test(test_timeout_then_fresh_session),
        cmocka_unit_test(test_gone_mid_scan_then_reconnect),
        cmocka_unit_test(test_missing_camera_is_an_error_naming_it),
    };

    fc_reexec_for_lsan(argv);
    return cmocka_run_group_tests_name("hw_camera", tests, setup_group,
                                       teardown_group);
}
