/* SPDX-License-Identifier: MIT */
/*
 * A scan on the hardware drivers end to end, without hardware: the
 * microscope comes from hw_microscope_new() with a [camera] and [stage]
 * configuration, as the daemon builds it; the stage is a Sangaboard
 * emulated with umockdev in this process, the camera the fake PTP/IP
 * camera.  The stage emulator writes its position to a file; the camera
 * serves, for that position, a JPEG crop of a real slide
 * (wsi/CMU-1-Small-Region.svs) cut beforehand by this test.  The tiles
 * are planned and captured with the acquisition steps (scan/acquire.h:
 * acq_plan_overview over an explicit region, acq_tile_capture), and the
 * frames are pasted at the stage positions the driver reported; the
 * mosaic must reproduce the slide.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "common/util.h"
#include "drivers/hw/hw.h"
#include "scan/acquire.h"
#include "tests/support/fake_camera.h"
#include "tests/support/stage_emu.h"

#define PX_UM 0.5                   /* slide pixel = camera pixel, µm */
#define FRAME_W 320
#define FRAME_H 240

static bool in_mock;

/* Pre-cuts the frame the camera shows at stage position (x, y) µm. */
static void
cut(const struct img *slide, const char *dir, long x_um, long y_um)
{
    char path[1024];
    struct img *c;
    struct ss_err e;

    snprintf(path, sizeof(path), "%s/%ld_%ld.jpg", dir, x_um, y_um);
    c = img_crop(slide, (int)lround(x_um / PX_UM), (int)lround(y_um / PX_UM),
                 FRAME_W, FRAME_H);
    assert_int_equal(img_jpeg_write(c, path, 95, &e), 0);
    img_free(c);
}

static void
glass(const char *dir)
{
    char path[1024];
    struct img *g = img_new(FRAME_W, FRAME_H, 3, IMG_U8);
    struct ss_err e;

    memset(g->data, 235, img_bytes(g));
    snprintf(path, sizeof(path), "%s/default.jpg", dir);
    assert_int_equal(img_jpeg_write(g, path, 95, &e), 0);
    img_free(g);
}

static void
configure(struct hw_config *c, const struct fake_camera *fc, uint16_t pid)
{
    char v[16];
    struct ss_err e;
    const char *kv[][3] = {
        { "camera", "driver", "gphoto2" },
        { "camera", "port", fc->port_str },
        { "camera", "pixel_um", "0.5" },
        { "camera", "objective", "20x" },
        { "stage", "driver", "sangaboard" },
        { "stage", "vid", "1209" },
        { "stage", "pid", v },
        { "stage", "timeout_ms", "1000" },
        { "stage", "min_x_um", "0" }, { "stage", "max_x_um", "1100" },
        { "stage", "min_y_um", "0" }, { "stage", "max_y_um", "1480" },
        { "stage", "min_z_um", "-100" }, { "stage", "max_z_um", "100" },
    };
    size_t i;

    snprintf(v, sizeof(v), "%04x", pid);
    hw_config_default(c);
    for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (hw_config_set(c, kv[i][0], kv[i][1], kv[i][2], &e) != 0)
            fail_msg("config: %s", e.msg);
}

static void
paste(struct img *mosaic, const struct img *f, int ox, int oy)
{
    int y;

    for (y = 0; y < f->h; y++) {
        int my = oy + y, x0 = ox < 0 ? -ox : 0;
        int x1 = ox + f->w > mosaic->w ? mosaic->w - ox : f->w;

        if (my < 0 || my >= mosaic->h || x1 <= x0)
            continue;
        memcpy(img_u8(mosaic, ox + x0, my), img_u8(f, x0, y),
               (size_t)(x1 - x0) * 3);
    }
}

static void
test_scan_on_emulated_stage_and_fake_camera(void **state)
{
    const char *svs = tu_data("wsi/CMU-1-Small-Region.svs");
    struct img *slide = NULL, *mosaic, *ref;
    struct fake_camera fc;
    struct stage_emu *emu;
    struct hw_config c;
    struct microscope *m = NULL;
    struct acq_options o;
    struct acq_profile p = { "HE", 250, 1.0, { 1, 1, 1 }, "20x" };
    struct acq_plan *plan = NULL;
    struct acq_session *s = NULL;
    struct hw_camera_stats st;
    struct ss_err e;
    char ctl[2048], imgdir[512], posfile[512];
    double t0, psnr, worst = INFINITY;
    const char *why;
    int i, mx0, my0;

    if (svs == NULL)
        tu_skip("../shared/data is absent");
    if (!in_mock)
        tu_skip("umockdev is not available");
    assert_int_equal(img_read_any(svs, &slide, &e), 0);
    emu = se_new(SE_SANGABOARD, 0x1209, 0x0042, &why);
    if (emu == NULL)
        tu_skip("umockdev: %s", why);
    se_set_move_ms(emu, 20);
    snprintf(posfile, sizeof(posfile), "%s", tu_tmp("stage.pos"));
    se_set_position_file(emu, posfile);
    snprintf(imgdir, sizeof(imgdir), "%s", tu_tmp("crops"));
    util_mkdir_p(imgdir, &e);
    glass(imgdir);
    cut(slide, imgdir, 0, 0);               /* where the stage starts */
    if (fc_start(&fc, tu_tmp("camera"), tu_tmp("crops/0_0.jpg"),
                 "generic") != 0)
        tu_skip("the fake PTP/IP camera cannot run here");
    snprintf(ctl, sizeof(ctl), "{\"image_dir\": \"%s\", \"position_file\": "
             "\"%s\"}", imgdir, posfile);
    fc_control(&fc, ctl);

    configure(&c, &fc, 0x0042);
    if (hw_microscope_new(&c, &m, &e) != 0)
        fail_msg("microscope: %s", e.msg);
    assert_int_equal(m->cam->frame_w, FRAME_W);
    assert_int_equal(m->cam->frame_h, FRAME_H);
    assert_null(m->ov);

    acq_options_default(&o);
    o.region_x_um = 200;
    o.region_y_um = 300;
    o.region_w_um = 420;
    o.region_h_um = 320;
    o.settle_ms = 5;
    if (acq_plan_overview(m, &o, &plan, NULL, NULL, &e) != 0)
        fail_msg("plan: %s", e.msg);
    print_message("# plan: %d x %d = %d tiles, step %.1f x %.1f um\n",
                  plan->rows, plan->cols, plan->ntiles, plan->step_x_um,
                  plan->step_y_um);
    assert_true(plan->ntiles >= 4);
    for (i = 0; i < plan->ntiles; i++)
        cut(slide, imgdir, lround(plan->tiles[i].x_um),
            lround(plan->tiles[i].y_um));

    if (acq_session_open(m, &p, NULL, NULL, &o, &s, &e) != 0)
        fail_msg("session: %s", e.msg);
    mx0 = (int)floor(plan->origin_x_um / PX_UM);
    my0 = (int)floor(plan->origin_y_um / PX_UM);
    mosaic = img_new((int)ceil(plan->cols * plan->step_x_um / PX_UM) +
                     FRAME_W, (int)ceil(plan->rows * plan->step_y_um /
                                        PX_UM) + FRAME_H, 3, IMG_U8);
    t0 = util_now_ms();
    for (i = 0; i < plan->ntiles; i++) {
        const struct acq_tile *t = &plan->tiles[i];
        struct acq_tile_result r;
        struct img *want;
        int sx, sy;

        if (acq_tile_capture(s, plan, t, &r, &e) != 0)
            fail_msg("capture: %s", e.msg);
        assert_true(fabs(r.x_um - t->x_um) <= 0.5);
        assert_true(fabs(r.y_um - t->y_um) <= 0.5);
        sx = (int)lround(lround(r.x_um) / PX_UM);
        sy = (int)lround(lround(r.y_um) / PX_UM);
        want = img_crop(slide, sx, sy, FRAME_W, FRAME_H);
        psnr = img_psnr(r.frame, want, 0, 0, FRAME_W, FRAME_H);
        worst = psnr < worst ? psnr : worst;
        paste(mosaic, r.frame, sx - mx0, sy - my0);
        img_free(want);
        acq_tile_result_clear(&r);
    }
    print_message("# %d tiles in %.0f ms (%.0f ms per tile), worst tile "
                  "PSNR %.1f dB\n", plan->ntiles, util_now_ms() - t0,
                  (util_now_ms() - t0) / plan->ntiles, worst);
    assert_true(worst > 35.0);

    /* The mosaic over the planned region is the slide there. */
    ref = img_crop(slide, mx0, my0, mosaic->w, mosaic->h);
    psnr = img_psnr(mosaic, ref, 0, 0,
                    (int)(plan->cols > 1 ? (plan->cols - 1) *
                          plan->step_x_um / PX_UM + FRAME_W : FRAME_W),
                    (int)(plan->rows > 1 ? (plan->rows - 1) *
                          plan->step_y_um / PX_UM + FRAME_H : FRAME_H));
    print_message("# mosaic PSNR %.1f dB\n", psnr);
    assert_true(psnr > 35.0);
    assert_int_equal(hw_camera_stats(m->cam, &st), 0);
    assert_int_equal(st.captures, plan->ntiles + 1);   /* + size probe */
    assert_int_equal(fc_count(&fc, "DeleteObject"), plan->ntiles + 1);

    img_free(ref);
    img_free(mosaic);
    acq_session_free(s);
    acq_plan_free(plan);
    microscope_free(m);
    fc_stop(&fc);
    se_free(emu);
    img_free(slide);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_on_emulated_stage_and_fake_camera),
    };

    fc_reexec_for_lsan(argv);
    in_mock = se_reexec_under_umockdev(argv);
    setenv("HOME", tu_tmpdir(), 1);
    return cmocka_run_group_tests_name("hw_scan", tests, NULL, NULL);
}
