/* SPDX-License-Identifier: MIT */
/*
 * QuPath GeoJSON: field case A1 (holes are holes), both classification
 * forms, annotators, consensus and agreement, and export that reads back
 * to the same pixels.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/analysis/analysis.h"
#include "worker/analysis/geojson.h"

#define A1_RINGS "[[[0,0],[10,0],[10,10],[0,10],[0,0]]," \
                 "[[4,4],[6,4],[6,6],[4,6],[4,4]]]"

static const char *
write_text(const char *name, const char *text)
{
    const char *p = tu_tmp(name);
    FILE *f = fopen(p, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static int64_t
count(const struct img *r, uint8_t v)
{
    size_t i, n = (size_t)r->w * r->h;
    int64_t c = 0;

    for (i = 0; i < n; i++)
        c += ((uint8_t *)r->data)[i] == v;
    return c;
}

/* A1: the polygon with a hole has area 96 and rasterises to 96 px; IoU
 * against a filled 10 × 10 square is 0.96. */
static void
test_a1_polygon_hole(void **state)
{
    const char *p = write_text("a1.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":"
        "\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
        A1_RINGS "},\"properties\":{\"classification\":{\"name\":"
        "\"Tumor\",\"color\":[200,0,0]}}}]}");
    struct an_annotations *a;
    struct img *r;
    struct ss_err e;
    int64_t inter = 0, uni = 0;
    int x, y;

    assert_int_equal(an_geojson_read(p, "alice", &a, &e), 0);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->f[0].cls, AN_ANN_TUMOR);
    assert_true(fabs(an_polygon_area(&a->f[0].poly[0]) - 96.0) < 1e-9);
    assert_int_equal(an_annotations_raster(a, NULL, 16, 16, 1.0, &r, &e),
                     0);
    assert_int_equal(count(r, AN_TUMOR), 96);
    for (y = 0; y < 16; y++)
        for (x = 0; x < 16; x++) {
            int t = *img_u8(r, x, y) == AN_TUMOR, q = x < 10 && y < 10;
            inter += t && q;
            uni += t || q;
        }
    assert_true(fabs((double)inter / uni - 0.96) < 1e-9);
    img_free(r);
    an_annotations_free(a);
}

/* A1: the shape plus a copy 20 px to the right as a MultiPolygon, in the
 * older classification form with a lower-case name: 192 px. */
static void
test_a1_multipolygon_old_form(void **state)
{
    const char *p = write_text("a1m.geojson",
        "[{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\","
        "\"coordinates\":[" A1_RINGS ",[[[20,0],[30,0],[30,10],[20,10]],"
        "[[24,4],[26,4],[26,6],[24,6]]]]},\"properties\":{"
        "\"classification\":\"tumor\",\"annotator\":\"bob\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\","
        "\"coordinates\":[1,1]},\"properties\":{\"classification\":"
        "\"Stroma\"}},{\"type\":\"Feature\",\"geometry\":{\"type\":"
        "\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1]]]},"
        "\"properties\":{\"classification\":{\"name\":\"Necrosis\"}}}]");
    struct an_annotations *a;
    struct img *r;
    struct ss_err e;
    const char *names[4];

    assert_int_equal(an_geojson_read(p, "file", &a, &e), 0);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->skipped, 2);
    assert_int_equal(an_annotators(a, names, 4), 1);
    assert_string_equal(names[0], "bob");
    assert_int_equal(an_annotations_raster(a, NULL, 40, 12, 1.0, &r, &e),
                     0);
    assert_int_equal(count(r, AN_TUMOR), 192);
    assert_int_equal(count(r, AN_UNLABELLED), 40 * 12 - 192);
    img_free(r);
    an_annotations_free(a);
}

static void
test_bad_files_name_the_cause(void **state)
{
    struct an_annotations *a;
    struct ss_err e;
    const char *p = write_text("bad.geojson", "{\"type\": \"Feature\"");

    assert_int_equal(an_geojson_read(p, NULL, &a, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "bad.geojson"));
    assert_non_null(strstr(e.msg, "not JSON"));
    p = write_text("ring.geojson", "{\"type\":\"Feature\",\"geometry\":{"
                   "\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1]]]},"
                   "\"properties\":{\"classification\":\"Stroma\"}}");
    assert_int_equal(an_geojson_read(p, NULL, &a, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "feature 0"));
}

/* ROI makes unclaimed pixels glass; two annotators, consensus, agreement. */
static void
test_roi_annotators_consensus(void **state)
{
    const char *p = write_text("two.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":["
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[0,0],[20,0],[20,10],[0,10]]]},\"properties\":"
        "{\"classification\":{\"name\":\"ROI\"},\"annotator\":\"a\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[0,0],[10,0],[10,10],[0,10]]]},\"properties\":"
        "{\"classification\":{\"name\":\"Tumor\"},\"annotator\":\"a\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[0,0],[20,0],[20,10],[0,10]]]},\"properties\":"
        "{\"classification\":{\"name\":\"ROI\"},\"annotator\":\"b\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[0,0],[5,0],[5,10],[0,10]]]},\"properties\":"
        "{\"classification\":{\"name\":\"TUMOR\"},\"annotator\":\"b\"}}]}");
    struct an_annotations *an;
    struct img *ra, *rb, *c;
    const struct img *both[2];
    struct an_agreement ag;
    struct ss_err e;

    assert_int_equal(an_geojson_read(p, NULL, &an, &e), 0);
    assert_int_equal(an_annotations_raster(an, "a", 24, 10, 1.0, &ra, &e),
                     0);
    assert_int_equal(an_annotations_raster(an, "b", 24, 10, 1.0, &rb, &e),
                     0);
    assert_int_equal(count(ra, AN_TUMOR), 100);
    assert_int_equal(count(ra, AN_GLASS), 100);
    assert_int_equal(count(ra, AN_UNLABELLED), 40);
    an_agreement(ra, rb, &ag);
    assert_int_equal(ag.pixels, 200);
    assert_true(fabs(ag.dice_tumor - 2.0 * 50 / 150) < 1e-9);
    assert_true(isnan(ag.dice_stroma));
    /* po = 150/200; pe = (100·50 + 100·150) / 200² = 0.5 → κ = 0.5 */
    assert_true(fabs(ag.kappa - 0.5) < 1e-9);
    both[0] = ra;
    both[1] = rb;
    c = an_consensus(both, 2);
    assert_int_equal(count(c, AN_TUMOR), 50);
    assert_int_equal(count(c, AN_GLASS), 100);
    assert_int_equal(count(c, AN_UNLABELLED), 90);  /* 50 ties + 40 */
    img_free(c);
    img_free(ra);
    img_free(rb);
    an_annotations_free(an);
}

/* Export traces polygons (holes, diagonal touches) that rasterise back to
 * exactly the same pixels, at a scale of 4 level-0 px per raster px. */
static void
test_export_round_trip(void **state)
{
    enum { W = 32, H = 24 };
    struct img *l = img_new(W, H, 1, IMG_U8), *back;
    struct an_annotations *a;
    struct ss_err e;
    size_t i;
    int x, y;

    for (y = 2; y < 14; y++)
        for (x = 2; x < 14; x++)
            *img_u8(l, x, y) = (x >= 6 && x < 9 && y >= 6 && y < 9) ?
                               AN_STROMA : AN_TUMOR;
    *img_u8(l, 14, 14) = AN_TUMOR;                  /* corner touch */
    *img_u8(l, 20, 3) = AN_TUMOR;
    for (y = 10; y < 20; y++)
        for (x = 18; x < 30; x++)
            *img_u8(l, x, y) = (x + y) % 7 == 0 ? AN_GLASS : AN_STROMA;
    assert_int_equal(an_geojson_write(tu_tmp("pred.geojson"), l, 4.0, &e),
                     0);
    assert_int_equal(an_geojson_read(tu_tmp("pred.geojson"), NULL, &a, &e),
                     0);
    assert_int_equal(a->n, 2);
    assert_int_equal(an_annotations_raster(a, NULL, W, H, 4.0, &back, &e),
                     0);
    for (i = 0; i < (size_t)W * H; i++) {
        uint8_t want = ((uint8_t *)l->data)[i];
        uint8_t got = ((uint8_t *)back->data)[i];
        assert_int_equal(got == AN_UNLABELLED ? AN_GLASS : got, want);
    }
    img_free(back);
    img_free(l);
    an_annotations_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a1_polygon_hole),
        cmocka_unit_test(test_a1_multipolygon_old_form),
        cmocka_unit_test(test_bad_files_name_the_cause),
        cmocka_unit_test(test_roi_annotators_consensus),
        cmocka_unit_test(test_export_round_trip),
    };

    return cmocka_run_group_tests_name("geojson", tests, NULL, NULL);
}
