/* SPDX-License-Identifier: MIT */
/*
 * Segmentation metrics on cases small enough to count by hand, including
 * field case M1 (empty masks) and the documented empty-case conventions.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/analysis/analysis.h"
#include "worker/analysis/metrics.h"

/* M1: truth empty, prediction one pixel → Dice 0, IoU 0, one FP. */
static void
test_m1_empty_truth_one_false_positive(void **state)
{
    uint8_t truth[16] = { 0 }, pred[16] = { 0 };
    struct an_class_scores s;

    pred[5] = 1;
    an_mask_scores(truth, pred, 16, &s);
    assert_int_equal(s.fp, 1);
    assert_int_equal(s.tp, 0);
    assert_int_equal(s.fn, 0);
    assert_false(isnan(s.dice));
    assert_false(isnan(s.iou));
    assert_true(s.dice == 0.0);
    assert_true(s.iou == 0.0);
    assert_true(s.precision == 0.0);
    assert_true(isnan(s.recall));
    assert_int_equal(s.both_empty, 0);
}

/* M1: truth 4 px, prediction 2 px inside it → Dice 0.667, IoU 0.5. */
static void
test_m1_half_inside(void **state)
{
    uint8_t truth[16] = { 0 }, pred[16] = { 0 };
    struct an_class_scores s;

    truth[0] = truth[1] = truth[4] = truth[5] = 1;
    pred[0] = pred[1] = 1;
    an_mask_scores(truth, pred, 16, &s);
    assert_int_equal(s.tp, 2);
    assert_int_equal(s.fn, 2);
    assert_int_equal(s.fp, 0);
    assert_true(fabs(s.dice - 2.0 / 3.0) < 1e-9);
    assert_true(fabs(s.iou - 0.5) < 1e-9);
    assert_true(fabs(s.precision - 1.0) < 1e-9);
    assert_true(fabs(s.recall - 0.5) < 1e-9);
}

/* M1: both empty → undefined (NAN) and flagged, so reports count it. */
static void
test_m1_both_empty_is_flagged_undefined(void **state)
{
    uint8_t truth[16] = { 0 }, pred[16] = { 0 };
    struct an_class_scores s;

    an_mask_scores(truth, pred, 16, &s);
    assert_int_equal(s.both_empty, 1);
    assert_true(isnan(s.dice));
    assert_true(isnan(s.iou));
    assert_int_equal(s.tn, 16);
}

static void
test_empty_prediction_gives_zero_recall(void **state)
{
    uint8_t truth[9] = { 1, 1, 1, 0, 0, 0, 0, 0, 0 }, pred[9] = { 0 };
    struct an_class_scores s;

    an_mask_scores(truth, pred, 9, &s);
    assert_true(s.recall == 0.0);
    assert_true(isnan(s.precision));
    assert_true(s.dice == 0.0);
    assert_int_equal(s.fn, 3);
}

/* Three classes; stroma never in the truth but predicted once. */
static void
test_confusion_class_without_truth(void **state)
{
    uint8_t truth[6] = { 0, 0, 1, 1, 1, 255 };
    uint8_t pred[6] = { 0, 1, 1, 1, 2, 2 };
    struct an_confusion c;
    struct an_class_scores t, s;
    struct ss_err e;

    an_confusion_init(&c, 3);
    assert_int_equal(an_confusion_add(&c, truth, pred, 6, 255, &e), 0);
    assert_int_equal(c.ignored, 1);
    assert_int_equal(c.m[1][1], 2);
    assert_int_equal(c.m[0][1], 1);
    assert_int_equal(c.m[1][2], 1);
    an_class_scores(&c, 1, &t);
    assert_true(fabs(t.precision - 2.0 / 3) < 1e-9);
    assert_true(fabs(t.recall - 2.0 / 3) < 1e-9);
    assert_true(fabs(t.iou - 0.5) < 1e-9);
    an_class_scores(&c, 2, &s);
    assert_int_equal(s.fp, 1);
    assert_true(s.dice == 0.0);
    assert_true(isnan(s.recall));
    /* kappa: po = 3/5; row sums 2,3,0; col sums 1,3,1 → pe = 11/25 */
    assert_true(fabs(an_cohen_kappa(&c) - (0.6 - 0.44) / 0.56) < 1e-9);
}

static void
test_kappa_perfect_and_chance(void **state)
{
    struct an_confusion c;

    an_confusion_init(&c, 2);
    c.m[0][0] = 10;
    c.m[1][1] = 10;
    assert_true(fabs(an_cohen_kappa(&c) - 1.0) < 1e-12);
    c.m[0][1] = 10;
    c.m[1][0] = 10;
    assert_true(fabs(an_cohen_kappa(&c)) < 1e-12);
}

static void
fill_rect(uint8_t *m, int w, int x0, int y0, int rw, int rh, uint8_t v)
{
    int x, y;

    for (y = y0; y < y0 + rh; y++)
        for (x = x0; x < x0 + rw; x++)
            m[y * w + x] = v;
}

/* Two truth regions; one predicted exactly, one at IoU 0.6 → the AP is 1
 * at thresholds 0.50..0.60 and 0.5 (one of two found, precision 1 at
 * recall 0.5) above. */
static void
test_region_ap_by_hand(void **state)
{
    enum { W = 40, H = 20 };
    static uint8_t truth[W * H], pred[W * H];
    struct an_ap ap;
    struct ss_err e;
    double expect = 0, map;
    int t, ncls;

    fill_rect(truth, W, 2, 2, 10, 10, 1);
    fill_rect(pred, W, 2, 2, 10, 10, 1);
    fill_rect(truth, W, 20, 2, 10, 10, 1);
    fill_rect(pred, W, 20, 2, 6, 10, 1);     /* IoU 60/100 */
    an_ap_init(&ap, 2, 1);
    assert_int_equal(an_ap_add(&ap, truth, pred, NULL, W, H, &e), 0);
    for (t = 0; t < AN_AP_NTHR; t++) {
        double v = an_ap_class(&ap, 1, t), want = t <= 2 ? 1.0 : 51 / 101.0;
        assert_true(fabs(v - want) < 1e-9);
        expect += want;
    }
    map = an_ap_map(&ap, &ncls);
    assert_int_equal(ncls, 1);
    assert_true(fabs(map - expect / AN_AP_NTHR) < 1e-9);
    an_ap_fini(&ap);
}

/* No truth regions: AP undefined with no predictions, 0 with one. */
static void
test_region_ap_empty_cases(void **state)
{
    enum { W = 10, H = 10 };
    static uint8_t truth[W * H], pred[W * H];
    struct an_ap ap;
    struct ss_err e;

    an_ap_init(&ap, 3, 1);
    assert_int_equal(an_ap_add(&ap, truth, pred, NULL, W, H, &e), 0);
    assert_true(isnan(an_ap_class(&ap, 1, 0)));
    assert_true(isnan(an_ap_map(&ap, NULL)));
    an_ap_fini(&ap);
    pred[0] = 2;
    an_ap_init(&ap, 3, 1);
    assert_int_equal(an_ap_add(&ap, truth, pred, NULL, W, H, &e), 0);
    assert_true(an_ap_class(&ap, 2, 0) == 0.0);
    an_ap_fini(&ap);
}

static void
test_mae_rmse(void **state)
{
    struct an_err_acc a = { 0 };
    int skipped = 0;

    an_err_add(&a, 0.5, 0.2, &skipped);
    an_err_add(&a, 0.1, 0.2, &skipped);
    an_err_add(&a, NAN, 0.2, &skipped);
    assert_int_equal(a.n, 2);
    assert_int_equal(skipped, 1);
    assert_true(fabs(an_err_mae(&a) - 0.2) < 1e-12);
    assert_true(fabs(an_err_rmse(&a) - sqrt((0.09 + 0.01) / 2)) < 1e-12);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_m1_empty_truth_one_false_positive),
        cmocka_unit_test(test_m1_half_inside),
        cmocka_unit_test(test_m1_both_empty_is_flagged_undefined),
        cmocka_unit_test(test_empty_prediction_gives_zero_recall),
        cmocka_unit_test(test_confusion_class_without_truth),
        cmocka_unit_test(test_kappa_perfect_and_chance),
        cmocka_unit_test(test_region_ap_by_hand),
        cmocka_unit_test(test_region_ap_empty_cases),
        cmocka_unit_test(test_mae_rmse),
    };

    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
