/* SPDX-License-Identifier: MIT */
/*
 * imaging/glass.c and the glass colour stitch_register() measures: the
 * colour cells never captured are filled with must be the glass the
 * tiles show (within 1 level per channel here), not a fixed white, with
 * pale tissue, dense tissue, camera noise and clipping in the way.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "common/rng.h"
#include "imaging/glass.h"
#include "imaging/stitch.h"

static const uint8_t GLASS[3] = { 250, 248, 253 };
static const uint8_t PALE[3] = { 236, 214, 226 };   /* luma 222 */
static const uint8_t DENSE[3] = { 150, 90, 170 };

#define TW 256
#define TH 192

/* A tile whose first glass_pct % of rows are glass, the next pale_pct %
 * pale eosin, the rest dense tissue, all with Gaussian noise sigma. */
static struct img *
tile_new(int glass_pct, int pale_pct, double sigma, uint64_t seed)
{
    struct img *im = img_new(TW, TH, 3, IMG_U8);
    struct rng r;
    int x, y, c;

    rng_init(&r, seed);
    for (y = 0; y < TH; y++) {
        const uint8_t *base = y * 100 < glass_pct * TH ? GLASS
                              : y * 100 < (glass_pct + pale_pct) * TH
                              ? PALE : DENSE;

        for (x = 0; x < TW; x++)
            for (c = 0; c < 3; c++) {
                double v = base[c] + sigma * rng_gauss(&r);

                img_u8(im, x, y)[c] = (uint8_t)fmin(255, fmax(0, v + 0.5));
            }
    }
    return im;
}

static void
assert_near(const uint8_t got[3], const uint8_t want[3], int tol)
{
    int c;

    for (c = 0; c < 3; c++)
        if (abs(got[c] - want[c]) > tol)
            fail_msg("channel %d: %d, want %d ± %d (got %d, %d, %d)", c,
                     got[c], want[c], tol, got[0], got[1], got[2]);
}

static void
test_tile_glass_among_tissue(void **state)
{
    struct img *im = tile_new(30, 40, 2.0, 1);
    uint8_t rgb[3];

    assert_true(glass_tile_colour(im, rgb));
    assert_near(rgb, GLASS, 1);
    img_free(im);
}

/* 3 % glass is too little to say; the tile gives no colour. */
static void
test_tile_without_enough_glass(void **state)
{
    struct img *im = tile_new(3, 0, 2.0, 2);
    uint8_t rgb[3] = { 1, 2, 3 };

    assert_false(glass_tile_colour(im, rgb));
    assert_int_equal(rgb[0], 1);
    img_free(im);
}

/* Glass brighter than the sensor's range reads 255 in that channel. */
static void
test_tile_clipped_glass(void **state)
{
    static const uint8_t clipped[3] = { 255, 253, 255 };
    struct img *im = tile_new(100, 0, 0, 3);
    uint8_t rgb[3];
    int i;

    for (i = 0; i < TW * TH; i++)
        memcpy((uint8_t *)im->data + 3 * i, clipped, 3);
    assert_true(glass_tile_colour(im, rgb));
    assert_near(rgb, clipped, 0);
    img_free(im);
}

/* A tile of pale eosin and one of dense tissue: their brightest
 * populations are stained, so neither gives a glass colour. */
static void
test_tile_of_tissue_only(void **state)
{
    struct img *pale = tile_new(0, 100, 2.0, 4);
    struct img *dense = tile_new(0, 0, 2.0, 5);
    uint8_t rgb[3];

    assert_false(glass_tile_colour(pale, rgb));
    assert_false(glass_tile_colour(dense, rgb));
    img_free(pale);
    img_free(dense);
}

static void
test_median_any_order(void **state)
{
    uint8_t a[5][3] = { { 10, 20, 30 }, { 250, 1, 9 }, { 240, 2, 8 },
                        { 245, 3, 7 }, { 0, 255, 6 } };
    uint8_t b[5][3], m1[3], m2[3];
    int i;

    for (i = 0; i < 5; i++)
        memcpy(b[i], a[4 - i], 3);
    glass_median((const uint8_t (*)[3])a, 5, m1);
    glass_median((const uint8_t (*)[3])b, 5, m2);
    assert_memory_equal(m1, m2, 3);
    assert_int_equal(m1[0], 240);
    assert_int_equal(m1[1], 3);
    assert_int_equal(m1[2], 8);
}

/* A 3 × 3 grid with two cells never captured: tiles of mostly tissue,
 * two of them all pale eosin and one all dense tissue, whose brightest
 * populations are tissue, not glass.  The placement's glass is the
 * glass of the other four. */
static int
load_cell(void *ctx, int index, struct img **out, struct ss_err *err)
{
    static const int mix[9][2] = {
        { 60, 20 }, { 20, 50 }, { 0, 0 }, { 15, 0 }, { 0, 100 },
        { 0, 0 }, { 0, 0 }, { 0, 100 }, { 90, 10 },
    };

    (void)ctx;
    (void)err;
    *out = tile_new(mix[index][0], mix[index][1], 2.5, 100 + index);
    return 0;
}

static void
test_register_measures_glass(void **state)
{
    struct stitch_tile t[7];
    struct stitch_input in;
    struct stitch_placement *pl = NULL;
    struct ss_err e;
    int i, n = 0;

    for (i = 0; i < 9; i++) {
        if (i == 2 || i == 6)       /* never captured */
            continue;
        t[n].index = i;
        t[n].row = i / 3;
        t[n].col = i % 3;
        t[n].x_px = t[n].col * 230.0;
        t[n].y_px = t[n].row * 172.0;
        n++;
    }
    memset(&in, 0, sizeof(in));
    in.frame_w = TW;
    in.frame_h = TH;
    in.rows = in.cols = 3;
    in.step_x_px = 230;
    in.step_y_px = 172;
    in.max_stage_err_px = 10;
    in.ntiles = n;
    in.tiles = t;
    in.load = load_cell;
    assert_int_equal(stitch_register(&in, &pl, &e), 0);
    assert_int_equal(pl->glass_tiles, 4);
    assert_near(pl->glass, GLASS, 1);
    stitch_placement_free(pl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_glass_among_tissue),
        cmocka_unit_test(test_tile_without_enough_glass),
        cmocka_unit_test(test_tile_clipped_glass),
        cmocka_unit_test(test_tile_of_tissue_only),
        cmocka_unit_test(test_median_any_order),
        cmocka_unit_test(test_register_measures_glass),
    };

    return cmocka_run_group_tests_name("stitch_glass", tests, NULL, NULL);
}
