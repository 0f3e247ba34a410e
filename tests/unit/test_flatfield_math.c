/* SPDX-License-Identifier: MIT */
/*
 * imaging/flatfield and imaging/exposure on synthetic frames: field case
 * F2 (the dark frame matters), averaging, weak-pixel handling, shading
 * measurement, saturation and darkness flags.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "imaging/exposure.h"
#include "imaging/flatfield.h"

static struct img *
flat_f32(int w, int h, float v)
{
    struct img *im = img_new(w, h, 3, IMG_F32);
    size_t i;

    for (i = 0; i < (size_t)w * h * 3; i++)
        ((float *)im->data)[i] = v;
    return im;
}

static struct img *
const_u8(int w, int h, uint8_t v)
{
    struct img *im = img_new(w, h, 3, IMG_U8);

    memset(im->data, v, img_bytes(im));
    return im;
}

/* F2: dark 16, blank 216 at the centre and 156 at a corner, a sample of
 * transmittance 0.2 reads 56 and 44. */
static void
test_f2_dark_frame_is_needed(void **state)
{
    double centre = ff_transmittance(56, 16, 216);
    double corner = ff_transmittance(44, 16, 156);
    double flat_only_centre = 56.0 / 216, flat_only_corner = 44.0 / 156;

    assert_true(fabs(centre - 0.200) < 5e-4);
    assert_true(fabs(corner - 0.200) < 5e-4);
    assert_true(fabs(flat_only_corner / flat_only_centre - 1.088) < 1e-3);
}

/* F2 through the image path: two pixels, dark 16, flat 216 and 156. */
static void
test_f2_correct_maps_both_to_the_same_value(void **state)
{
    struct img *dark = flat_f32(2, 1, 16), *flat = flat_f32(2, 1, 216);
    struct img *raw = const_u8(2, 1, 56), *out = NULL, *nodark = NULL;
    struct ss_err e;
    int c;

    for (c = 0; c < 3; c++) {
        img_f32(flat, 1, 0)[c] = 156;
        img_u8(raw, 1, 0)[c] = 44;
    }
    assert_int_equal(ff_correct(raw, dark, flat, 240, &out, &e), 0);
    for (c = 0; c < 3; c++) {
        assert_int_equal(img_u8(out, 0, 0)[c], 48);     /* 0.2 × 240 */
        assert_int_equal(img_u8(out, 1, 0)[c], 48);
    }
    assert_int_equal(ff_correct(raw, NULL, flat, 240, &nodark, &e), 0);
    assert_int_equal(img_u8(nodark, 0, 0)[0], 62);      /* 56/216 × 240 */
    assert_int_equal(img_u8(nodark, 1, 0)[0], 68);      /* 8.8 % more */
    img_free(dark);
    img_free(flat);
    img_free(raw);
    img_free(out);
    img_free(nodark);
}

static void
test_accumulate_averages_and_rejects_other_sizes(void **state)
{
    struct img *a = const_u8(4, 4, 10), *b = const_u8(4, 4, 30);
    struct img *c = const_u8(5, 4, 30), *sum = NULL;
    struct ss_err e;

    assert_int_equal(ff_accum_add(&sum, a, &e), 0);
    assert_int_equal(ff_accum_add(&sum, b, &e), 0);
    assert_int_equal(ff_accum_add(&sum, c, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "5x4x3"));
    ff_accum_finish(sum, 2);
    assert_true(fabs(img_f32(sum, 3, 3)[2] - 20.0f) < 1e-6);
    img_free(a);
    img_free(b);
    img_free(c);
    img_free(sum);
}

/* A vignetted blank field: 30 % fall-off raw, flat within 2 % after. */
static void
test_vignetted_blank_field_becomes_flat(void **state)
{
    int w = 256, h = 192, x, y, c;
    struct img *dark = flat_f32(w, h, 16), *flat = flat_f32(w, h, 0);
    struct img *raw = img_new(w, h, 3, IMG_U8), *out = NULL;
    struct ff_check chk;
    struct ss_err e;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            double dx = (x - w / 2.0) / (w / 2.0), dy = (y - h / 2.0) /
                        (h / 2.0);
            double g = 1.0 - 0.3 * (dx * dx + dy * dy) / 2.0;
            for (c = 0; c < 3; c++) {
                img_f32(flat, x, y)[c] = (float)(16 + 200 * g);
                img_u8(raw, x, y)[c] = (uint8_t)lround(16 + 200 * g +
                                                       ((x * 7 + y * 3) %
                                                        5 - 2));
            }
        }
    assert_true(ff_shading_ratio(raw, 1, 16) > 1.3);
    assert_int_equal(ff_check(dark, flat, &chk, &e), 0);
    assert_true(chk.falloff > 0.25 && chk.falloff < 0.31);
    assert_int_equal(ff_correct(raw, dark, flat, 240, &out, &e), 0);
    assert_true(ff_shading_ratio(out, -1, 16) <= 1.02);
    assert_true(abs(img_u8(out, w / 2, h / 2)[1] - 240) <= 3);
    img_free(dark);
    img_free(flat);
    img_free(raw);
    img_free(out);
}

static void
test_check_refuses_a_flat_taken_without_light(void **state)
{
    struct img *dark = flat_f32(32, 32, 16), *flat = flat_f32(32, 32, 18);
    struct ff_check chk;
    struct ss_err e;

    assert_int_equal(ff_check(dark, flat, &chk, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "lamp off"));
    assert_int_equal(chk.weak_px, 32 * 32 * 3);
    img_free(dark);
    img_free(flat);
}

/* A dead spot in the flat gets the median gain, not a division by ~0. */
static void
test_weak_flat_pixel_gets_median_gain(void **state)
{
    struct img *dark = flat_f32(8, 8, 16), *flat = flat_f32(8, 8, 216);
    struct img *raw = const_u8(8, 8, 116), *out = NULL;
    struct ss_err e;

    img_f32(flat, 3, 3)[0] = 17;
    assert_int_equal(ff_correct(raw, dark, flat, 240, &out, &e), 0);
    assert_int_equal(img_u8(out, 3, 3)[0], 120);
    assert_int_equal(img_u8(out, 0, 0)[0], 120);
    img_free(dark);
    img_free(flat);
    img_free(raw);
    img_free(out);
}

/* Tissue pixels of transmittance ~0.5 with the red channel clipped on
 * 1 % of them: flagged; on 0.2 %: not. */
static void
test_saturated_tissue_is_flagged_above_half_a_percent(void **state)
{
    struct img *dark = flat_f32(100, 100, 16), *flat = flat_f32(100, 100, 216);
    struct img *raw = const_u8(100, 100, 116);
    struct exp_limits l;
    struct exp_stats st;
    int i;

    exp_limits_default(&l);
    for (i = 0; i < 100; i++)
        img_u8(raw, i, 0)[0] = 255;
    exposure_check(raw, dark, flat, &l, &st);
    assert_true(st.flags & EXP_SATURATED);
    assert_true(fabs(st.sat_frac - 0.01) < 1e-9);
    for (i = 20; i < 100; i++)
        img_u8(raw, i, 0)[0] = 116;
    exposure_check(raw, dark, flat, &l, &st);
    assert_false(st.flags & EXP_SATURATED);
    assert_false(st.flags & EXP_DARK);
    img_free(dark);
    img_free(flat);
    img_free(raw);
}

/* Glass clipped where the calibration says it should read 216: the frame
 * is brighter than calibrated and counts as saturated. */
static void
test_overexposed_glass_counts_as_saturated(void **state)
{
    struct img *dark = flat_f32(50, 50, 16), *flat = flat_f32(50, 50, 216);
    struct img *raw = const_u8(50, 50, 255);
    struct exp_limits l;
    struct exp_stats st;

    exp_limits_default(&l);
    exposure_check(raw, dark, flat, &l, &st);
    assert_true(st.flags & EXP_SATURATED);
    img_free(dark);
    img_free(flat);
    img_free(raw);
}

/* A frame at a fifth of the calibrated light is far too dark; an
 * uncalibrated frame of plain glass is not. */
static void
test_far_too_dark_frame_is_flagged(void **state)
{
    struct img *dark = flat_f32(50, 50, 16), *flat = flat_f32(50, 50, 216);
    struct img *raw = const_u8(50, 50, 56), *glass = const_u8(50, 50, 230);
    struct exp_limits l;
    struct exp_stats st;

    exp_limits_default(&l);
    exposure_check(raw, dark, flat, &l, &st);
    assert_true(st.flags & EXP_DARK);
    assert_true(fabs(st.bright_t - 0.2) < 0.01);
    exposure_check(glass, NULL, NULL, &l, &st);
    assert_int_equal(st.flags, 0);
    img_free(dark);
    img_free(flat);
    img_free(raw);
    img_free(glass);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f2_dark_frame_is_needed),
        cmocka_unit_test(test_f2_correct_maps_both_to_the_same_value),
        cmocka_unit_test(test_accumulate_averages_and_rejects_other_sizes),
        cmocka_unit_test(test_vignetted_blank_field_becomes_flat),
        cmocka_unit_test(test_check_refuses_a_flat_taken_without_light),
        cmocka_unit_test(test_weak_flat_pixel_gets_median_gain),
        cmocka_unit_test(test_saturated_tissue_is_flagged_above_half_a_percent),
        cmocka_unit_test(test_overexposed_glass_counts_as_saturated),
        cmocka_unit_test(test_far_too_dark_frame_is_flagged),
    };

    return cmocka_run_group_tests_name("flatfield", tests, NULL, NULL);
}
