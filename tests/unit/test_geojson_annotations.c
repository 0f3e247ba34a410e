/* SPDX-License-Identifier: MIT */
/*
 * QuPath GeoJSON: field case A1 (holes are holes: background, scored by
 * eval), both classification forms, annotators, consensus and agreement,
 * export that reads back to the same pixels, and eval's rule that truth
 * and prediction sizes must map onto each other.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/eval.h"
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

/* A label PNG of w × h: value v inside [0, vw) × [0, vh), else rest. */
static const char *
label_png(const char *name, int w, int h, int vw, int vh, uint8_t v,
          uint8_t rest)
{
    struct img *l = img_new(w, h, 1, IMG_U8);
    const char *p = tu_tmp(name);
    struct ss_err e;
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            *img_u8(l, x, y) = x < vw && y < vh ? v : rest;
    assert_int_equal(img_png_write(l, p, &e), 0);
    img_free(l);
    return p;
}

static const char *
a1_file(void)
{
    return write_text("a1.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":"
        "\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
        A1_RINGS "},\"properties\":{\"classification\":{\"name\":"
        "\"Tumor\",\"color\":[200,0,0]}}}]}");
}

/* A1: the polygon with a hole has area 96 and rasterises to 96 px of
 * tumour; the hole's 4 px are background, not unlabelled; the rest of
 * the image, outside every annotation, stays unlabelled. */
static void
test_a1_polygon_hole(void **state)
{
    const char *p = a1_file();
    struct an_annotations *a;
    struct img *r;
    struct ss_err e;

    assert_int_equal(an_geojson_read(p, "alice", &a, &e), 0);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->f[0].cls, AN_ANN_TUMOR);
    assert_true(fabs(an_polygon_area(&a->f[0].poly[0]) - 96.0) < 1e-9);
    assert_int_equal(an_annotations_raster(a, NULL, 16, 16, 1.0, &r, &e),
                     0);
    assert_int_equal(count(r, AN_TUMOR), 96);
    assert_int_equal(count(r, AN_GLASS), 4);
    assert_int_equal(*img_u8(r, 4, 4), AN_GLASS);
    assert_int_equal(*img_u8(r, 5, 5), AN_GLASS);
    assert_int_equal(count(r, AN_UNLABELLED), 16 * 16 - 100);
    img_free(r);
    an_annotations_free(a);
}

/* A1 through eval: a filled 10 × 10 tumour prediction scores IoU 0.96
 * (1.00 would mean the hole was dropped), the hole being 4 false
 * positives; on a 12 × 12 prediction the 44 px outside the annotation
 * are ignored and the IoU stays 0.96. */
static void
test_a1_eval_iou(void **state)
{
    const char *truth = a1_file();
    struct an_class_scores s;
    struct an_eval ev;
    struct ss_err e;

    an_eval_init(&ev, 20);
    assert_int_equal(an_eval_add(&ev, label_png("full10.png", 10, 10, 10,
                                                10, AN_TUMOR, AN_TUMOR),
                                 truth, NULL, &e), 0);
    an_class_scores(&ev.conf, AN_TUMOR, &s);
    print_message("# A1 eval: IoU %.4f, ignored %lld\n", s.iou,
                  (long long)ev.conf.ignored);
    assert_true(fabs(s.iou - 0.96) < 1e-9);
    assert_int_equal(s.tp, 96);
    assert_int_equal(s.fp, 4);
    assert_int_equal(ev.conf.ignored, 0);
    assert_int_equal(ev.conf.m[AN_GLASS][AN_TUMOR], 4);
    an_eval_fini(&ev);

    an_eval_init(&ev, 20);
    assert_int_equal(an_eval_add(&ev, label_png("full12.png", 12, 12, 12,
                                                12, AN_TUMOR, AN_TUMOR),
                                 truth, NULL, &e), 0);
    an_class_scores(&ev.conf, AN_TUMOR, &s);
    assert_true(fabs(s.iou - 0.96) < 1e-9);
    assert_int_equal(ev.conf.ignored, 12 * 12 - 100);
    an_eval_fini(&ev);
}

/* A hole is background unless another polygon claims it: a stroma
 * polygon drawn in a tumour polygon's hole makes it stroma, a tumour
 * island in it tumour; a hole in an ROI leaves the ROI (unlabelled). */
static void
test_hole_claimed_by_other_polygons(void **state)
{
    const char *p = write_text("claimed.geojson",
        "{\"type\":\"FeatureCollection\",\"features\":["
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[0,0],[10,0],[10,10],[0,10]],"
        "[[2,2],[8,2],[8,8],[2,8]]]},"
        "\"properties\":{\"classification\":\"Tumor\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[2,2],[5,2],[5,8],[2,8]]]},"
        "\"properties\":{\"classification\":\"Stroma\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[6,6],[7,6],[7,7],[6,7]]]},"
        "\"properties\":{\"classification\":\"Tumor\"}},"
        "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\","
        "\"coordinates\":[[[12,0],[20,0],[20,8],[12,8]],"
        "[[14,2],[16,2],[16,4],[14,4]]]},"
        "\"properties\":{\"classification\":\"ROI\"}}]}");
    struct an_annotations *a;
    struct img *r;
    struct ss_err e;

    assert_int_equal(an_geojson_read(p, NULL, &a, &e), 0);
    assert_int_equal(an_annotations_raster(a, NULL, 20, 10, 1.0, &r, &e),
                     0);
    assert_int_equal(count(r, AN_STROMA), 18);      /* 3 × 6 in the hole */
    assert_int_equal(count(r, AN_TUMOR), 100 - 36 + 1);
    assert_int_equal(count(r, AN_GLASS), 36 - 18 - 1 + 64 - 4);
    assert_int_equal(*img_u8(r, 15, 3), AN_UNLABELLED);     /* ROI hole */
    assert_int_equal(*img_u8(r, 11, 3), AN_UNLABELLED);     /* nothing */
    img_free(r);
    an_annotations_free(a);
}

/* A truth label map must map onto its prediction: same size, or through
 * an explicit scale; a 10 × 10 prediction against a 40 × 40 map is an
 * error naming both files and sizes, never a silent stretch. */
static void
test_eval_sizes_must_map(void **state)
{
    const char *pred = label_png("p10.png", 10, 10, 5, 10, AN_TUMOR,
                                 AN_STROMA);
    const char *big = label_png("t40.png", 40, 40, 20, 40, AN_TUMOR,
                                AN_STROMA);
    struct an_class_scores s;
    struct an_eval ev;
    struct ss_err e;

    an_eval_init(&ev, 20);
    err_clear(&e);
    assert_int_equal(an_eval_add(&ev, pred, big, NULL, &e), -ERANGE);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "t40.png is 40×40 px"));
    assert_non_null(strstr(e.msg, "p10.png is 10×10 px"));
    assert_int_equal(ev.images, 0);
    /* With the scale stated, the map is sampled at pixel centres. */
    assert_int_equal(an_eval_add_scaled(&ev, pred, big, NULL, 4, &e), 0);
    an_class_scores(&ev.conf, AN_TUMOR, &s);
    assert_true(fabs(s.iou - 1.0) < 1e-9);
    assert_int_equal(s.tp, 50);
    /* A scale that does not span the map is refused as well. */
    err_clear(&e);
    assert_int_equal(an_eval_add_scaled(&ev, pred, big, NULL, 3, &e),
                     -ERANGE);
    assert_non_null(strstr(e.msg, "--scale 3"));
    an_eval_fini(&ev);
}

/* An analysis directory states its scale (analysis_mpp / mpp): a truth
 * map at the slide's level 0 (ceil(38 / 4) = 10) is accepted, one of
 * another size is not. */
static void
test_eval_analysis_dir_scale(void **state)
{
    const char *dir = tu_tmp("an.analysis");
    char path[600];
    struct an_class_scores s;
    struct an_eval ev;
    struct ss_err e;

    assert_int_equal(util_mkdir_p(dir, &e), 0);
    snprintf(path, sizeof(path), "%s/labels.png", dir);
    assert_int_equal(rename(label_png("d10.png", 10, 10, 5, 10, AN_TUMOR,
                                      AN_STROMA), path), 0);
    write_text("an.analysis/results.json", "{\"mpp\": 0.5, "
               "\"analysis_mpp\": 2.0, \"tumor_stroma_ratio\": 0.5}");
    an_eval_init(&ev, 20);
    assert_int_equal(an_eval_add(&ev, dir, label_png("l0.png", 38, 38, 20,
                                                     38, AN_TUMOR, AN_STROMA),
                                 NULL, &e), 0);
    an_class_scores(&ev.conf, AN_TUMOR, &s);
    assert_true(fabs(s.iou - 1.0) < 1e-9);
    err_clear(&e);
    assert_int_equal(an_eval_add(&ev, dir, label_png("l1.png", 60, 60, 30,
                                                     60, AN_TUMOR, AN_STROMA),
                                 NULL, &e), -ERANGE);
    assert_non_null(strstr(e.msg, "l1.png is 60×60 px"));
    assert_non_null(strstr(e.msg, "spans 40×40"));
    an_eval_fini(&ev);
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
    assert_int_equal(count(r, AN_GLASS), 8);        /* the two holes */
    assert_int_equal(count(r, AN_UNLABELLED), 40 * 12 - 200);
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
 * exactly the same pixels, at a scale of 4 level-0 px per raster px.
 * Glass a polygon encloses is a hole and reads back as glass (the 2 px
 * in the tumour block); glass outside every polygon, including the
 * diagonal glass lines between stroma polygons that touch only at
 * corners, reads back unlabelled. */
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
    *img_u8(l, 10, 10) = AN_GLASS;                  /* a 2 px hole */
    *img_u8(l, 11, 10) = AN_GLASS;
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
        int hole = i == 10 * W + 10 || i == 10 * W + 11;
        uint8_t want = ((uint8_t *)l->data)[i];
        uint8_t got = ((uint8_t *)back->data)[i];
        if (want == AN_GLASS && !hole)
            want = AN_UNLABELLED;
        assert_int_equal(got, want);
    }
    assert_int_equal(count(back, AN_GLASS), 2);
    img_free(back);
    img_free(l);
    an_annotations_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a1_polygon_hole),
        cmocka_unit_test(test_a1_eval_iou),
        cmocka_unit_test(test_hole_claimed_by_other_polygons),
        cmocka_unit_test(test_eval_sizes_must_map),
        cmocka_unit_test(test_eval_analysis_dir_scale),
        cmocka_unit_test(test_a1_multipolygon_old_form),
        cmocka_unit_test(test_bad_files_name_the_cause),
        cmocka_unit_test(test_roi_annotators_consensus),
        cmocka_unit_test(test_export_round_trip),
    };

    return cmocka_run_group_tests_name("geojson", tests, NULL, NULL);
}
