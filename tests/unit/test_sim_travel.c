/* SPDX-License-Identifier: MIT */
/*
 * The simulated stage is a real stage: its travel is fixed (120 × 80 mm
 * by default) and slides of every size the phantom allows are placed on
 * it, on one microscope that changes slides between scans the way
 * slidescand does.  For each slide the stage the daemon opened once must
 * reach the whole image and a blank-glass spot that sees only glass.
 * Also: slide specs are checked cheaply and refused with one form of
 * message, sim_config_set's messages leave the key to the caller, and
 * the load log states a phantom's resolution as procedural.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/img.h"
#include "drivers/sim/sim.h"

#define PH_FORM "; a phantom is phantom:HE|KI67|CK[:seed=N][:w_mm=MM]" \
                "[:h_mm=MM][:id=TEXT]"

static struct microscope *
make(const char *const *kv)
{
    struct microscope *m = NULL;
    struct sim_config c;
    struct ss_err e;

    sim_config_default(&c);
    for (; kv != NULL && kv[0] != NULL; kv += 2)
        if (sim_config_set(&c, kv[0], kv[1], &e) != 0)
            fail_msg("%s: %s", kv[0], e.msg);
    if (sim_microscope_new(&c, &m, &e) != 0)
        fail_msg("%s", e.msg);
    return m;
}

/* Moves the stage as a scan would and waits until it stops. */
static int
move_to(struct microscope *m, double x, double y, struct ss_err *e)
{
    double p[3] = { x, y, 0 };
    bool busy = true;
    int rc = m->stage->ops->move_abs(m->stage, p, e);

    while (rc == 0 && busy) {
        rc = m->stage->ops->is_busy(m->stage, &busy, e);
        if (busy)
            mic_sleep_ms(m, 20);
    }
    return rc;
}

static bool
inside(const struct stage_limits *l, double x0, double y0, double x1,
       double y1)
{
    return x0 >= l->min_um[0] && y0 >= l->min_um[1] &&
           x1 <= l->max_um[0] && y1 <= l->max_um[1];
}

/* The blank spot's frame, sampled every 8 µm, is glass in the labels and
 * in the ideal image. */
static void
blank_is_glass(struct sim *s, const struct sim_geometry *g,
               const char *spec)
{
    int w = (int)(g->frame_w * g->pixel_um / 8);
    int h = (int)(g->frame_h * g->pixel_um / 8);
    struct img *lab = NULL, *im = NULL;
    struct ss_err e;
    size_t i;
    int lo = 255;

    assert_int_equal(sim_render_labels(s, g->blank_x_um, g->blank_y_um, w,
                                       h, 8, &lab, &e), 0);
    for (i = 0; i < img_bytes(lab); i++)
        if (((uint8_t *)lab->data)[i] != SIM_LABEL_GLASS)
            fail_msg("%s: tissue at the blank spot", spec);
    assert_int_equal(sim_render_truth(s, g->blank_x_um, g->blank_y_um, w, h,
                                      8, &im, &e), 0);
    for (i = 0; i < img_bytes(im); i++)
        lo = ((uint8_t *)im->data)[i] < lo ? ((uint8_t *)im->data)[i] : lo;
    assert_true(lo >= 240);
    img_free(lab);
    img_free(im);
}

/* One microscope, the stage opened and homed once (as slidescand does),
 * then slide after slide: the smallest, the daemon's, the built-in, the
 * tester's 6 × 4, 20 × 1 and 1 × 6 mm, the largest the phantom allows, and
 * back to a small one. */
static void
test_every_slide_fits_the_fixed_travel(void **state)
{
    static const char *const specs[] = {
        "phantom:HE:w_mm=0.05:h_mm=0.05", "phantom:HE:w_mm=1:h_mm=0.8",
        "phantom:HE", "phantom:HE:w_mm=6:h_mm=4", "phantom:HE:w_mm=20:h_mm=1",
        "phantom:HE:w_mm=1:h_mm=6", "phantom:KI67:w_mm=60:h_mm=60",
        "phantom:CK:w_mm=60:h_mm=0.05", "phantom:HE:w_mm=0.05:h_mm=60",
        "phantom:HE:w_mm=3:h_mm=2",
    };
    static const char *const x10[] = { "objective", "10x", NULL };
    struct microscope *m;
    struct sim_geometry g;
    struct stage_limits opened;
    struct ss_err e;
    double fw, fh;
    size_t i;
    int k;

    for (k = 0; k < 2; k++) {
        m = make(k == 0 ? NULL : x10);
        assert_int_equal(m->stage->ops->open(m->stage, &e), 0);
        assert_int_equal(m->stage->ops->home(m->stage, &e), 0);
        opened = m->stage->limits;
        assert_true(opened.max_um[0] == 120000 && opened.max_um[1] == 80000);
        for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
            if (sim_load_slide(sim_of(m), specs[i], &e) != 0)
                fail_msg("%s: %s", specs[i], e.msg);
            sim_geometry_get(sim_of(m), &g);
            fw = g.frame_w * g.pixel_um;
            fh = g.frame_h * g.pixel_um;
            print_message("# %s %s: glass %.0fx%.0f area %.0fx%.0f blank "
                          "(%.0f, %.0f) um\n", k == 0 ? "20x" : "10x",
                          specs[i], g.glass_w_um, g.glass_h_um, g.area_w_um,
                          g.area_h_um, g.blank_x_um, g.blank_y_um);
            assert_memory_equal(&g.limits, &opened, sizeof(opened));
            assert_memory_equal(&m->stage->limits, &opened, sizeof(opened));
            /* every frame that covers the image, the blank frame and the
             * whole specimen area are within the travel and on glass */
            assert_true(inside(&opened, 0, 0, g.area_w_um, g.area_h_um));
            assert_true(g.area_w_um <= g.glass_w_um &&
                        g.area_h_um <= g.glass_h_um);
            assert_true(g.glass_w_um >= 75000 && g.glass_h_um >= 25000);
            assert_true(inside(&opened, g.image_x_um, g.image_y_um,
                               g.image_x_um + g.image_w_um + fw,
                               g.image_y_um + g.image_h_um + fh));
            assert_true(g.blank_x_um >= g.image_x_um + g.image_w_um + 500);
            assert_true(g.blank_x_um + fw <= g.area_w_um &&
                        g.blank_y_um >= 0 && g.blank_y_um + fh <= g.area_h_um);
            blank_is_glass(sim_of(m), &g, specs[i]);
            if (move_to(m, g.blank_x_um, g.blank_y_um, &e) != 0 ||
                move_to(m, g.image_x_um + g.image_w_um,
                        g.image_y_um + g.image_h_um, &e) != 0)
                fail_msg("%s: %s", specs[i], e.msg);
        }
        m->stage->ops->close(m->stage);
        microscope_free(m);
    }
}

/* A slide bigger than a configured (small) travel is refused naming the
 * slide and the travel; the slide on the stage stays. */
static void
test_a_slide_beyond_the_travel_is_refused(void **state)
{
    static const char *const kv[] = { "travel_x_um", "20000", "travel_y_um",
                                      "10000", NULL };
    struct microscope *m = make(kv);
    struct sim_geometry a, b;
    struct sim_config c;
    struct ss_err e, q;
    int i;

    sim_geometry_get(sim_of(m), &a);
    assert_true(a.limits.max_um[0] == 20000 && a.limits.max_um[1] == 10000);
    assert_int_equal(sim_load_slide(sim_of(m), "phantom:HE:w_mm=20:h_mm=1",
                                     &e), SS_ECONFIG);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "'phantom:HE:w_mm=20:h_mm=1': "));
    assert_non_null(strstr(e.msg, "travels 20.0 x 10.0 mm"));
    /* The check a daemon makes when the scan is queued says the same,
     * from the configuration alone, and passes what the load takes. */
    sim_config_default(&c);
    for (i = 0; kv[i] != NULL; i += 2)
        assert_int_equal(sim_config_set(&c, kv[i], kv[i + 1], &q), 0);
    assert_int_equal(sim_slide_spec_fit_check(&c, "phantom:HE:w_mm=20:"
                                              "h_mm=1", NULL, 0, &q),
                     SS_ECONFIG);
    assert_string_equal(q.msg, e.msg);
    assert_int_equal(sim_slide_spec_fit_check(&c, "phantom:HE:w_mm=1:h_mm=9",
                                              NULL, 0, &q), SS_ECONFIG);
    assert_int_equal(sim_slide_spec_fit_check(&c, "phantom:HE:w_mm=10:"
                                              "h_mm=5", NULL, 0, &q), 0);
    assert_int_equal(sim_load_slide(sim_of(m), "phantom:HE:w_mm=10:h_mm=5",
                                     &e), 0);
    sim_geometry_get(sim_of(m), &a);
    assert_int_equal(sim_load_slide(sim_of(m), "phantom:HE:w_mm=1:h_mm=9",
                                     &e), SS_ECONFIG);
    sim_geometry_get(sim_of(m), &b);
    assert_memory_equal(&a, &b, sizeof(a));
    microscope_free(m);
}

/* The overview images the specimen area; a large slide's overview is
 * coarser instead of huge. */
static void
test_overview_of_a_long_slide_is_bounded(void **state)
{
    struct microscope *m = make(NULL);
    struct sim_geometry g;
    struct ov_geometry og;
    struct img *ov = NULL;
    struct ss_err e;

    assert_int_equal(sim_load_slide(sim_of(m), "phantom:HE:w_mm=60:"
                                    "h_mm=0.05", &e), 0);
    sim_geometry_get(sim_of(m), &g);
    assert_int_equal(m->ov->ops->capture(m->ov, &ov, &og, &e), 0);
    print_message("# overview %dx%d at %.2f um/px\n", ov->w, ov->h,
                  og.um_per_px);
    assert_true(ov->w <= 4096 && ov->h <= 4096);
    assert_true(og.um_per_px > 10);
    assert_true(fabs(ov->w * og.um_per_px - g.area_w_um) < og.um_per_px);
    img_free(ov);
    microscope_free(m);
}

/* Every bad phantom spec gets one kind of message, from the check and
 * from the load alike. */
static void
test_bad_specs_get_one_message(void **state)
{
    static const struct {
        const char *spec, *cause;
    } bad[] = {
        { "phantom:XX", "stain 'XX' is not HE, KI67 or CK" },
        { "phantom:", "no stain" },
        { "phantom:HE:w_mm=0", "w_mm '0' is not a number from 0.05 to 60" },
        { "phantom:HE:w_mm=-3", "w_mm '-3' is not a number from 0.05 to 60" },
        { "phantom:HE:w_mm=abc",
          "w_mm 'abc' is not a number from 0.05 to 60" },
        { "phantom:HE:h_mm=61", "h_mm '61' is not a number from 0.05 to 60" },
        { "phantom:HE:seed=1.5", "seed '1.5' is not a whole number from 0 "
          "to 18446744073709551615" },
        { "phantom:HE:seed=-2", "seed '-2' is not a whole number from 0 to "
          "18446744073709551615" },
        { "phantom:HE:seed=18446744073709551616", "seed "
          "'18446744073709551616' is not a whole number from 0 to "
          "18446744073709551615" },
        { "phantom:HE:seed=1e3", "seed '1e3' is not a whole number from 0 "
          "to 18446744073709551615" },
        { "phantom:HE:colour=red", "'colour' is not an option" },
        { "phantom:HE:w_mm", "w_mm has no value" },
    };
    struct microscope *m = make(NULL);
    char want[512];
    struct ss_err e, l;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(want, sizeof(want), "'%s': %s" PH_FORM, bad[i].spec,
                 bad[i].cause);
        assert_int_equal(sim_slide_spec_check(bad[i].spec, &e), SS_ECONFIG);
        assert_string_equal(e.msg, want);
        assert_int_equal(sim_load_slide(sim_of(m), bad[i].spec, &l),
                         SS_ECONFIG);
        assert_string_equal(l.msg, want);
    }
    assert_int_equal(sim_slide_spec_check("", &e), SS_ECONFIG);
    assert_int_equal(sim_slide_spec_check("slide.svs:stain=PAS", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "'slide.svs:stain=PAS': stain 'PAS' is not "
                        "HE, KI67 or CK; a file slide is FILE[@MPP]"
                        "[:force_mpp][:stain=HE|KI67|CK][:id=TEXT]");
    /* :force_mpp forces a given pixel size, so it needs one. */
    assert_int_equal(sim_slide_spec_check("plain.png:force_mpp:id=A", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "'plain.png:force_mpp:id=A': :force_mpp "
                        "without an @MPP to force; a file slide is "
                        "FILE[@MPP][:force_mpp][:stain=HE|KI67|CK]"
                        "[:id=TEXT]");
    assert_int_equal(sim_slide_spec_check("plain.png@0", &e), SS_ECONFIG);
    print_message("# %s\n", e.msg);
    /* The ends of the pixel size range are refused, and said so; the
     * value is quoted as written. */
    for (i = 0; i < 3; i++) {
        static const char *const mpp[] = { "1000", "0.01", "1e400" };
        char spec[64];

        snprintf(want, sizeof(want), "'plain.png@%s': pixel size '%s' um "
                 "must be more than 0.01 and less than 1000; a file slide "
                 "is FILE[@MPP][:force_mpp][:stain=HE|KI67|CK][:id=TEXT]",
                 mpp[i], mpp[i]);
        snprintf(spec, sizeof(spec), "plain.png@%s", mpp[i]);
        assert_int_equal(sim_slide_spec_check(spec, &e), SS_ECONFIG);
        assert_string_equal(e.msg, want);
    }
    microscope_free(m);
}

/* Good specs pass the check, including what slidescand appends; a file is
 * not opened (a missing one passes, its load names it). */
static void
test_good_specs_pass_without_opening_anything(void **state)
{
    static const char *const good[] = {
        "phantom:HE", "phantom:ki67:seed=7", "phantom:CK:w_mm=60:h_mm=0.05",
        "phantom:HE:seed=18446744073709551615",
        "/nonexistent/plain.png@0.5:force_mpp:stain=HE",
        "phantom:HE:seed=12:w_mm=3:h_mm=3:id=A", "phantom:HE:w_mm=1e1",
        "/nonexistent/slide.svs", "/nonexistent/slide.svs:stain=KI67:id=S-1",
        "/nonexistent/plain.png@0.5", "/nonexistent/a@b.tif",
    };
    struct microscope *m = make(NULL);
    struct ss_err e;
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (sim_slide_spec_check(good[i], &e) != 0)
            fail_msg("%s: %s", good[i], e.msg);
    assert_int_not_equal(sim_load_slide(sim_of(m), "/nonexistent/slide.svs",
                                        &e), 0);
    assert_non_null(strstr(e.msg, "/nonexistent/slide.svs"));
    microscope_free(m);
}

/* sim_config_set says the cause; the caller names the key (slidescand:
 * "FILE:LINE: [simulator] KEY: cause"), so no context is said twice. */
static void
test_config_messages_leave_the_key_to_the_caller(void **state)
{
    struct sim_config c, before;
    struct ss_err e;

    sim_config_default(&c);
    before = c;
    assert_int_equal(sim_config_set(&c, "nosuchkey", "1", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "unknown key");
    assert_int_equal(sim_config_set(&c, "sensor_w", "wide", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "'wide' is not a number");
    assert_int_equal(sim_config_set(&c, "margin_um", "30000", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "30000 is outside 0..20000");
    assert_int_equal(sim_config_set(&c, "objective", "63x", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "'63x' is not one of 10x, 20x, 40x");
    assert_int_equal(sim_config_set(&c, "slide", "phantom:XX", &e),
                     SS_ECONFIG);
    assert_string_equal(e.msg, "'phantom:XX': stain 'XX' is not HE, KI67 or "
                        "CK" PH_FORM);
    assert_int_equal(sim_config_set(&c, "fault", "melt@capture=1", &e),
                     SS_ECONFIG);
    assert_null(strstr(e.msg, "fault:"));
    assert_non_null(strstr(e.msg, "'melt@capture=1': unknown type"));
    assert_memory_equal(&c, &before, sizeof(c));
    assert_int_equal(sim_config_set(&c, "travel_x_um", "76000", &e), 0);
    assert_true(c.travel_x_um == 76000);
}

/* Reads what fn logs to stderr while it runs. */
static void
logged(void (*fn)(void *), void *arg, char *out, size_t len)
{
    const char *path = tu_tmp("stderr.log");
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600), keep;
    ssize_t n;

    assert_true(fd >= 0);
    fflush(stderr);
    keep = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(keep, 2);
    close(keep);
    n = pread(fd, out, len - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void
load(void *arg)
{
    void **a = arg;
    struct ss_err e;

    if (sim_load_slide(a[0], a[1], &e) != 0)
        fail_msg("%s", e.msg);
}

static void
test_load_log_states_the_resolution(void **state)
{
    struct microscope *m = make(NULL);
    struct img *im = img_new(64, 48, 3, IMG_U8);
    const char *png = tu_tmp("plain.png");
    char spec[512], text[4096];
    void *arg[2] = { sim_of(m), "phantom:KI67:w_mm=2:h_mm=1" };
    struct ss_err e;

    logged(load, arg, text, sizeof(text));
    print_message("# %s", text);
    assert_non_null(strstr(text, "spec=phantom:KI67:w_mm=2:h_mm=1 "));
    assert_non_null(strstr(text, " mpp=procedural "));
    assert_null(strstr(text, "mpp=0.0000"));
    memset(im->data, 200, img_bytes(im));
    assert_int_equal(img_png_write(im, png, &e), 0);
    snprintf(spec, sizeof(spec), "%s@0.25", png);
    arg[1] = spec;
    logged(load, arg, text, sizeof(text));
    print_message("# %s", text);
    assert_non_null(strstr(text, " mpp=0.2500 "));
    img_free(im);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_slide_fits_the_fixed_travel),
        cmocka_unit_test(test_a_slide_beyond_the_travel_is_refused),
        cmocka_unit_test(test_overview_of_a_long_slide_is_bounded),
        cmocka_unit_test(test_bad_specs_get_one_message),
        cmocka_unit_test(test_good_specs_pass_without_opening_anything),
        cmocka_unit_test(test_config_messages_leave_the_key_to_the_caller),
        cmocka_unit_test(test_load_log_states_the_resolution),
    };

    return cmocka_run_group_tests_name("sim travel", tests, NULL, NULL);
}
