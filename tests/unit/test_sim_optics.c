/* SPDX-License-Identifier: MIT */
/*
 * The simulated camera and optics measured against their configuration:
 * sharpness against defocus, vignetting per channel, exposure per stain
 * (well exposed, clipped, underexposed), the dark frame, shot and read
 * noise, settling blur with settle time 0 (S1), geometric agreement of a
 * clean frame with the ideal image, and determinism by seed.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"

static struct microscope *
make(const char *slide, const char *const *kv)
{
    struct microscope *m = NULL;
    struct sim_config c;
    struct ss_err e;

    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "slide", slide, &e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_w", "512", &e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_h", "384", &e), 0);
    for (; kv != NULL && kv[0] != NULL; kv += 2)
        if (sim_config_set(&c, kv[0], kv[1], &e) != 0)
            fail_msg("%s", e.msg);
    if (sim_microscope_new(&c, &m, &e) != 0)
        fail_msg("%s", e.msg);
    return m;
}

static struct img *
snap(struct microscope *m, double x, double y, double dz, double exp_ms,
     double settle_ms)
{
    struct sim *s = sim_of(m);
    struct img *im = NULL;
    struct ss_err e;
    double z = sim_focus_z(s, x + 128, y + 96) + dz;

    if (sim_snap(s, x, y, z, exp_ms, settle_ms, &im, &e) != 0)
        fail_msg("snap: %s", e.msg);
    return im;
}

/* Variance of the 4-neighbour Laplacian of the green channel. */
static double
sharpness(const struct img *im)
{
    double s = 0, ss = 0, n = 0, l;
    int x, y;

    for (y = 1; y < im->h - 1; y++)
        for (x = 1; x < im->w - 1; x++) {
            l = 4.0 * img_u8(im, x, y)[1] - img_u8(im, x - 1, y)[1] -
                img_u8(im, x + 1, y)[1] - img_u8(im, x, y - 1)[1] -
                img_u8(im, x, y + 1)[1];
            s += l;
            ss += l * l;
            n++;
        }
    return ss / n - (s / n) * (s / n);
}

/* Mean of channel c over a k × k patch at (x, y). */
static double
patch(const struct img *im, int x, int y, int k, int c)
{
    double s = 0;
    int i, j;

    for (j = y; j < y + k; j++)
        for (i = x; i < x + k; i++)
            s += img_u8(im, i, j)[c];
    return s / (k * k);
}

static void
tissue_xy(struct microscope *m, double *x, double *y)
{
    struct sim_geometry g;

    sim_geometry_get(sim_of(m), &g);
    *x = g.image_x_um + g.image_w_um / 2 - 128;
    *y = g.image_y_um + g.image_h_um / 2 - 96;
}

static void
test_sharpness_falls_with_defocus(void **state)
{
    static const double dz[] = { 0, 0.5, 1, 2, 3, 5, 8 };
    static const char *const kv[] = { "noise_scale", "0", "repeat_sigma_um",
                                      "0.5,0.5,0", NULL };
    struct microscope *m = make("phantom:HE:seed=3", kv);
    double x, y, prev = INFINITY, v, vm;
    struct img *im;
    size_t i;

    tissue_xy(m, &x, &y);
    for (i = 0; i < sizeof(dz) / sizeof(dz[0]); i++) {
        im = snap(m, x, y, dz[i], 0, 100);
        v = sharpness(im);
        img_free(im);
        im = snap(m, x, y, -dz[i], 0, 100);
        vm = sharpness(im);
        img_free(im);
        print_message("# dz ±%.1f um: sharpness %.2f / %.2f\n", dz[i], v,
                      vm);
        assert_true(v < prev);
        assert_true(vm < prev || dz[i] == 0);
        assert_true(fabs(v - vm) / v < 0.15);       /* symmetric blur */
        prev = fmin(v, vm);
    }
    microscope_free(m);
}

static void
test_vignetting_matches_config_per_channel(void **state)
{
    static const char *const kv[] = { "vignette_corner", "0.80,0.70,0.60",
                                      NULL };
    static const double want[3] = { 0.80, 0.70, 0.60 };
    struct microscope *m = make("phantom:HE", kv);
    struct sim_geometry g;
    struct img *im;
    double c0, k, ratio;
    int c;

    sim_geometry_get(sim_of(m), &g);
    im = snap(m, g.blank_x_um, g.blank_y_um, 0, 0, 100);
    for (c = 0; c < 3; c++) {
        c0 = patch(im, 256 - 4, 192 - 4, 8, c) - 16.1;
        k = (patch(im, 0, 0, 4, c) + patch(im, 508, 0, 4, c) +
             patch(im, 0, 380, 4, c) + patch(im, 508, 380, 4, c)) / 4 -
            16.1;
        ratio = k / c0;
        print_message("# channel %d: corner/centre %.3f (config %.2f)\n", c,
                      ratio, want[c]);
        assert_true(fabs(ratio - want[c]) < 0.02);
    }
    img_free(im);
    microscope_free(m);
}

static double
saturated(struct microscope *m)
{
    struct sim_truth t;

    sim_truth_last(sim_of(m), &t);
    return t.saturated_frac;
}

static void
exposure_case(const char *slide, double exp_ms, double *glass, double *sat)
{
    struct microscope *m = make(slide, NULL);
    struct sim_geometry g;
    double x, y;
    struct img *im;

    sim_geometry_get(sim_of(m), &g);
    im = snap(m, g.blank_x_um, g.blank_y_um, 0, exp_ms, 100);
    *glass = patch(im, 256 - 8, 192 - 8, 16, 1);
    img_free(im);
    tissue_xy(m, &x, &y);
    im = snap(m, x, y, 0, exp_ms, 100);
    *sat = saturated(m);
    img_free(im);
    microscope_free(m);
}

static void
test_exposure_per_stain(void **state)
{
    double glass, sat;

    exposure_case("phantom:HE", 250, &glass, &sat);
    print_message("# HE@250: glass %.1f DN, saturated %.4f %%\n", glass,
                  sat * 100);
    assert_true(glass >= 200 && glass <= 230 && sat < 0.001);
    exposure_case("phantom:HE", 600, &glass, &sat);
    print_message("# HE@600: glass %.1f DN, saturated %.2f %%\n", glass,
                  sat * 100);
    assert_true(sat > 0.005);
    exposure_case("phantom:KI67", 600, &glass, &sat);
    print_message("# KI67@600: glass %.1f DN, saturated %.4f %%\n", glass,
                  sat * 100);
    assert_true(glass >= 200 && glass <= 230 && sat < 0.001);
    exposure_case("phantom:CK", 600, &glass, &sat);
    assert_true(glass >= 200 && glass <= 230 && sat < 0.001);
    exposure_case("phantom:KI67", 250, &glass, &sat);
    print_message("# KI67@250: glass %.1f DN (underexposed)\n", glass);
    assert_true(glass < 120);
}

static void
test_dark_frame_and_noise(void **state)
{
    struct microscope *m = make("phantom:HE", NULL);
    struct sim_geometry g;
    struct ss_err e;
    struct img *im;
    double s = 0, ss = 0, mean, sd, want;
    int i, n;

    sim_geometry_get(sim_of(m), &g);
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    assert_int_equal(m->cam->ops->set_lamp(m->cam, false, &e), 0);
    im = snap(m, g.blank_x_um, g.blank_y_um, 0, 250, 100);
    n = (int)(img_bytes(im));
    for (i = 0; i < n; i++) {
        s += ((uint8_t *)im->data)[i];
        ss += (double)((uint8_t *)im->data)[i] * ((uint8_t *)im->data)[i];
    }
    mean = s / n;
    sd = sqrt(ss / n - mean * mean);
    print_message("# dark frame: mean %.2f DN, sd %.2f DN (config 16 + "
                  "0.125, read noise 1.2)\n", mean, sd);
    assert_true(fabs(mean - 16.125) < 0.1);
    assert_true(fabs(sd - 1.2) < 0.12);
    img_free(im);
    assert_int_equal(m->cam->ops->set_lamp(m->cam, true, &e), 0);
    /* Blank glass at the centre: shot noise of ~200 DN at 40 e/DN. */
    im = snap(m, g.blank_x_um, g.blank_y_um, 0, 250, 100);
    s = ss = 0;
    n = 0;
    for (i = 0; i < 32 * 32; i++) {
        double v = img_u8(im, 240 + i % 32, 176 + i / 32)[1];
        s += v;
        ss += v * v;
        n++;
    }
    mean = s / n;
    sd = sqrt(ss / n - mean * mean);
    want = sqrt((mean - 16.125) / 40 + 1.2 * 1.2 + 1.0 / 12);
    print_message("# glass: mean %.1f DN, sd %.2f DN (model %.2f)\n", mean,
                  sd, want);
    assert_true(fabs(sd - want) / want < 0.15);
    img_free(im);
    microscope_free(m);
}

/* S1: with settle time 0 the exposure catches the ringing. */
static void
test_settle_zero_blurs(void **state)
{
    static const char *const kv[] = { "repeat_sigma_um", "0", NULL };
    struct microscope *m = make("phantom:HE:seed=5", kv);
    struct sim_truth t;
    double x, y, s0, s80;
    struct img *im;

    tissue_xy(m, &x, &y);
    im = snap(m, x, y, 0, 100, 80);
    s80 = sharpness(im);
    sim_truth_last(sim_of(m), &t);
    assert_true(t.motion_um < 0.05);
    img_free(im);
    im = snap(m, x + 0.001, y, 0, 100, 0);
    s0 = sharpness(im);
    sim_truth_last(sim_of(m), &t);
    print_message("# sharpness settled %.1f, settle 0 %.1f (-%.0f %%), "
                  "motion %.2f um rms\n", s80, s0, 100 * (1 - s0 / s80),
                  t.motion_um);
    assert_true(t.motion_um > 0.3);
    assert_true(s0 < 0.9 * s80);
    img_free(im);
    microscope_free(m);
}

/* PSNR of a frame against 200/255 of an ideal image (250 ms at 0.8 DN
 * per ms is 200 DN for full transmittance), inside an 8 px border. */
static double
psnr_scaled(const struct img *f, const struct img *ideal)
{
    double se = 0, d;
    size_t n = 0;
    int x, y, c;

    for (y = 8; y < f->h - 8; y++)
        for (x = 8; x < f->w - 8; x++)
            for (c = 0; c < 3; c++) {
                d = img_u8(f, x, y)[c] - img_u8(ideal, x, y)[c] * 200.0 /
                                         255;
                se += d * d;
                n++;
            }
    return 10 * log10(255.0 * 255 / (se / n));
}

/* With noise, blur and vignetting off, a frame is the ideal image times
 * the exposure: the truth position is where the pixels come from. */
static void
test_clean_frame_matches_ideal_image(void **state)
{
    static const char *const kv[] = {
        "noise_scale", "0", "psf_px", "0", "vignette_corner", "1",
        "dark_dn", "0", "dark_current_dn_s", "0", NULL
    };
    struct microscope *m = make("phantom:HE:seed=9", kv);
    struct sim *s = sim_of(m);
    struct img *im, *ideal = NULL;
    struct sim_truth t;
    struct ss_err e;
    double x, y, psnr;

    tissue_xy(m, &x, &y);
    im = snap(m, x + 0.3, y + 0.7, 0, 250, 200);
    sim_truth_last(s, &t);
    assert_true(fabs(t.x_um - x - 0.3) < 2.5);
    assert_int_equal(sim_render_truth(s, t.x_um, t.y_um, im->w, im->h,
                                      t.pixel_um, &ideal, &e), 0);
    psnr = psnr_scaled(im, ideal);
    print_message("# clean frame vs ideal image: %.1f dB\n", psnr);
    assert_true(psnr > 40);
    img_free(ideal);
    /* Half a pixel off, the agreement collapses: the check can fail. */
    assert_int_equal(sim_render_truth(s, t.x_um + 0.25, t.y_um, im->w,
                                      im->h, t.pixel_um, &ideal, &e), 0);
    print_message("# shifted by half a pixel: %.1f dB\n",
                  psnr_scaled(im, ideal));
    assert_true(psnr_scaled(im, ideal) < psnr - 6);
    img_free(ideal);
    img_free(im);
    microscope_free(m);
}

static void
test_same_seed_same_frame_other_seed_differs(void **state)
{
    static const char *const s7[] = { "seed", "7", NULL };
    static const char *const s8[] = { "seed", "8", NULL };
    struct microscope *a = make("phantom:HE", s7), *b = make("phantom:HE",
                                                             s7);
    struct microscope *c = make("phantom:HE", s8);
    struct img *fa, *fb, *fc, *fa2;
    double x, y;

    tissue_xy(a, &x, &y);
    fa = snap(a, x, y, 0.3, 0, 60);
    fb = snap(b, x, y, 0.3, 0, 60);
    fc = snap(c, x, y, 0.3, 0, 60);
    assert_memory_equal(fa->data, fb->data, img_bytes(fa));
    assert_true(memcmp(fa->data, fc->data, img_bytes(fa)) != 0);
    /* Captures without moving: new noise each time, the same content. */
    assert_int_equal(a->cam->ops->open(a->cam, NULL), 0);
    assert_int_equal(a->cam->ops->capture(a->cam, &fa2, NULL), 0);
    img_free(fb);
    assert_int_equal(a->cam->ops->capture(a->cam, &fb, NULL), 0);
    assert_true(memcmp(fa2->data, fb->data, img_bytes(fb)) != 0);
    assert_true(img_psnr(fa2, fb, 0, 0, fb->w, fb->h) > 35);
    img_free(fa2);
    img_free(fa);
    img_free(fb);
    img_free(fc);
    microscope_free(a);
    microscope_free(b);
    microscope_free(c);
}

static void
test_preview_is_binned(void **state)
{
    struct microscope *m = make("phantom:HE", NULL);
    struct sim_truth t;
    struct ss_err e;
    struct img *im = NULL;

    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    assert_int_equal(m->cam->ops->preview(m->cam, &im, &e), 0);
    sim_truth_last(sim_of(m), &t);
    assert_int_equal(im->w, 256);
    assert_int_equal(im->h, 192);
    assert_true(t.preview && fabs(t.pixel_um - 1.0) < 1e-9);
    img_free(im);
    microscope_free(m);
}

/* Gain and white balance multiply the signal above the dark level. */
static void
test_gain_and_white_balance(void **state)
{
    struct microscope *m = make("phantom:HE", NULL);
    struct cam_settings cs = { 125, 2.0, { 1.0, 0.8, 0.5 } };
    struct sim_geometry g;
    struct ss_err e;
    struct img *im = NULL;
    double v[3];
    int c;

    sim_geometry_get(sim_of(m), &g);
    assert_int_equal(m->cam->ops->open(m->cam, &e), 0);
    assert_int_equal(m->cam->ops->configure(m->cam, &cs, &e), 0);
    assert_int_equal(m->stage->ops->open(m->stage, &e), 0);
    assert_int_equal(m->stage->ops->move_abs(m->stage, (double[3]){
                         g.blank_x_um, g.blank_y_um, 0 }, &e), 0);
    mic_sleep_ms(m, 2000);
    assert_int_equal(m->cam->ops->capture(m->cam, &im, &e), 0);
    for (c = 0; c < 3; c++)
        v[c] = patch(im, 256 - 8, 192 - 8, 16, c) - 16.06;
    print_message("# gain 2, wb 1/0.8/0.5 at 125 ms: %.1f %.1f %.1f DN\n",
                  v[0], v[1], v[2]);
    /* 0.8 DN/ms × 125 ms × 2 × glass 0.955 (blue 0.965) × wb */
    assert_true(fabs(v[0] - 191.0) < 3);
    assert_true(fabs(v[1] / v[0] - 0.8) < 0.02);
    assert_true(fabs(v[2] / v[0] - 0.5 * 0.965 / 0.955) < 0.02);
    cs.exposure_ms = -1;
    assert_int_equal(m->cam->ops->configure(m->cam, &cs, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "exposure"));
    img_free(im);
    microscope_free(m);
}

/* render = 0: no pixels synthesised, everything else accounted. */
static void
test_timing_run_without_pixels(void **state)
{
    static const char *const kv[] = { "render", "0", NULL };
    struct microscope *m = make("phantom:HE", kv);
    struct sim_truth t;
    struct img *im;
    double x, y, t0 = sim_clock_ms(sim_of(m));

    tissue_xy(m, &x, &y);
    im = snap(m, x, y, 1.5, 250, 50);
    sim_truth_last(sim_of(m), &t);
    assert_true(fabs(t.dz_um - 1.5) < 0.5);
    assert_true(sim_clock_ms(sim_of(m)) - t0 > 250 + 80 + 50);
    assert_int_equal(img_u8(im, 0, 0)[1], img_u8(im, 300, 200)[1]);
    assert_true(abs(img_u8(im, 300, 200)[1] - 207) <= 1);
    img_free(im);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sharpness_falls_with_defocus),
        cmocka_unit_test(test_vignetting_matches_config_per_channel),
        cmocka_unit_test(test_exposure_per_stain),
        cmocka_unit_test(test_dark_frame_and_noise),
        cmocka_unit_test(test_settle_zero_blurs),
        cmocka_unit_test(test_clean_frame_matches_ideal_image),
        cmocka_unit_test(test_same_seed_same_frame_other_seed_differs),
        cmocka_unit_test(test_preview_is_binned),
        cmocka_unit_test(test_gain_and_white_balance),
        cmocka_unit_test(test_timing_run_without_pixels),
    };

    return cmocka_run_group_tests_name("sim optics", tests, NULL, NULL);
}
