/* SPDX-License-Identifier: MIT */
/*
 * Pixel helpers of the analysis: colour deconvolution, distance
 * transform and disc morphology, connected components, resampling, the
 * glass colour and tissue detection.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/internal.h"

/* Mixing known amounts of H and DAB by Beer-Lambert and unmixing them
 * gives the amounts back (to 8-bit quantisation). */
static void
test_deconvolution_recovers_amounts(void **state)
{
    struct an__deconv d;
    double amounts[4][2] = { { 0.1, 0.0 }, { 0.5, 0.3 }, { 0.0, 0.8 },
                             { 1.0, 0.2 } };
    int i, k;

    an__deconv_init(&d, an__vec_hematoxylin, an__vec_dab, NULL);
    for (i = 0; i < 4; i++) {
        uint8_t px[3];
        float c[3];
        for (k = 0; k < 3; k++) {
            double od = amounts[i][0] * d.fwd[0][k] +
                        amounts[i][1] * d.fwd[1][k];
            px[k] = (uint8_t)lround(255 * pow(10, -od));
        }
        an__deconv_px(&d, px, c);
        assert_true(fabs(c[0] - amounts[i][0]) < 0.02);
        assert_true(fabs(c[1] - amounts[i][1]) < 0.02);
        assert_true(fabs(c[2]) < 0.02);
    }
}

static void
test_edt_matches_brute_force(void **state)
{
    enum { W = 37, H = 23 };
    uint8_t mask[W * H];
    float d2[W * H];
    struct rng r;
    int x, y, i, j;

    rng_init(&r, 3);
    for (i = 0; i < W * H; i++)
        mask[i] = rng_uniform(&r) < 0.03;
    assert_int_equal(an__edt_sq(mask, W, H, d2), 0);
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            float best = 1e20f;
            for (j = 0; j < H; j++)
                for (i = 0; i < W; i++)
                    if (mask[j * W + i]) {
                        float d = (float)((x - i) * (x - i) +
                                          (y - j) * (y - j));
                        best = d < best ? d : best;
                    }
            assert_true(fabsf(d2[y * W + x] - best) < 1e-3f);
        }
}

static int
count_on(const uint8_t *m, size_t n)
{
    size_t i;
    int c = 0;

    for (i = 0; i < n; i++)
        c += m[i] != 0;
    return c;
}

/* A dilated point is a digital disc; closing fills a gap narrower than
 * twice the radius; components are 8-connected. */
static void
test_morphology_and_components(void **state)
{
    enum { W = 41, H = 41 };
    uint8_t m[W * H];
    int32_t lab[W * H];

    memset(m, 0, sizeof(m));
    m[20 * W + 20] = 1;
    assert_int_equal(an__morph_disc(m, W, H, 5.0), 0);
    assert_int_equal(count_on(m, W * H), 81);      /* x² + y² ≤ 25 */
    memset(m, 0, sizeof(m));
    for (int y = 10; y < 30; y++)
        for (int x = 5; x < 36; x++)
            m[y * W + x] = x < 18 || x > 21;
    assert_int_equal(an__components(m, W, H, lab), 2);
    assert_int_equal(an__morph_disc(m, W, H, 3.0), 0);
    assert_int_equal(an__morph_disc(m, W, H, -3.0), 0);
    assert_int_equal(an__components(m, W, H, lab), 1);
    memset(m, 0, sizeof(m));
    m[0] = m[W + 1] = 1;                            /* diagonal touch */
    assert_int_equal(an__components(m, W, H, lab), 1);
    assert_int_equal(an__components_conn(m, W, H, lab, 4), 2);
}

static void
test_resample_area_average(void **state)
{
    struct img *a = img_new(4, 2, 1, IMG_U8), *b;
    uint8_t v[8] = { 0, 100, 200, 50, 100, 200, 0, 50 };

    memcpy(a->data, v, 8);
    b = an__resample(a, 2, 1);
    assert_non_null(b);
    assert_int_equal(((uint8_t *)b->data)[0], 100);  /* (0+100+100+200)/4 */
    assert_int_equal(((uint8_t *)b->data)[1], 75);   /* (200+50+0+50)/4 */
    img_free(b);
    b = an__resample(a, 3, 1);                      /* 4/3 px each */
    /* rows (0 + 100/3) and (100 + 200/3) over 4/3 px: 25 and 125 */
    assert_int_equal(((uint8_t *)b->data)[0], 75);
    img_free(b);
    img_free(a);
}

/* Glass of 240 with a faint 228 square of tissue and a few dark specks:
 * the square is found, the specks are too small, the area is right. */
static void
test_tissue_mask_faint_tissue(void **state)
{
    struct img *im = img_new(200, 200, 3, IMG_U8), *m;
    double bg[3];
    int x, y, on = 0;

    for (y = 0; y < 200; y++)
        for (x = 0; x < 200; x++) {
            uint8_t *p = img_u8(im, x, y);
            int in = x >= 50 && x < 150 && y >= 50 && y < 150;
            p[0] = p[1] = in ? 228 : 240;
            p[2] = in ? 236 : 242;
            if ((x == 10 && y == 10) || (x == 180 && y == 30))
                p[0] = p[1] = p[2] = 60;
        }
    an_background_rgb(im, bg);
    assert_true(bg[0] == 240 && bg[2] == 242);
    m = an_tissue_mask(im, 2.0);
    assert_non_null(m);
    for (y = 0; y < 200; y++)
        for (x = 0; x < 200; x++)
            on += *img_u8(m, x, y);
    assert_true(abs(on - 100 * 100) < 300);
    assert_int_equal(*img_u8(m, 10, 10), 0);
    assert_int_equal(*img_u8(m, 100, 100), 1);
    img_free(m);
    img_free(im);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deconvolution_recovers_amounts),
        cmocka_unit_test(test_edt_matches_brute_force),
        cmocka_unit_test(test_morphology_and_components),
        cmocka_unit_test(test_resample_area_average),
        cmocka_unit_test(test_tissue_mask_faint_tissue),
    };

    return cmocka_run_group_tests_name("analysis pixels", tests, NULL, NULL);
}
