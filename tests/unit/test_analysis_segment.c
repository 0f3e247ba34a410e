/* SPDX-License-Identifier: MIT */
/*
 * Tiled segmentation and the biomarkers measured on it.  Fake models
 * whose answer is known at every pixel show that tiles, margins and
 * blending leave no seam; synthetic label maps and nuclei check areas,
 * tumour regions and the KI67 count.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/internal.h"

#define CTX_R 6                     /* context radius of the fake model */

/* Tumour logit = mean red over a (2 CTX_R + 1)² box minus 128: an answer
 * that needs context, so a tile without its margin would differ. */
static int
ctx_predict(struct an_model *m, const struct img *in, struct img *logits,
            struct ss_err *err)
{
    size_t i, n = (size_t)in->w * in->h;
    float *red = calloc(n, sizeof(float)), *mean = calloc(n, sizeof(float));

    if (red == NULL || mean == NULL) {
        free(red);
        free(mean);
        return err_set(err, -12, "out of memory");
    }
    for (i = 0; i < n; i++)
        red[i] = ((uint8_t *)in->data)[i * 3];
    an__box_mean(red, in->w, in->h, CTX_R, mean);
    for (i = 0; i < n; i++) {
        float *l = (float *)logits->data + i * AN_NCLASS;
        l[AN_GLASS] = -10;
        l[AN_TUMOR] = (mean[i] - 128) / 8;
        l[AN_STROMA] = 0;
    }
    free(red);
    free(mean);
    return 0;
}

static const struct an_model_ops ctx_ops = {
    .kind = "test",
    .predict = ctx_predict,
};

static struct img *
noise_image(int w, int h, uint64_t seed)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    struct rng r;
    size_t i;

    rng_init(&r, seed);
    for (i = 0; i < (size_t)w * h; i++) {
        uint8_t *p = (uint8_t *)im->data + i * 3;
        p[0] = (uint8_t)(rng_uniform(&r) * 256);
        p[1] = 60;
        p[2] = 140;
    }
    return im;
}

/* Every pixel gets what the model gives when it sees the whole image:
 * tile borders, overlaps, threads and the slide edge change nothing. */
static void
test_tiles_leave_no_seam(void **state)
{
    struct an_model m = { .ops = &ctx_ops, .name = "ctx", .mpp = 2.0,
                          .margin_px = 8, .tile_px = 32 };
    struct img *im = noise_image(150, 97, 5);
    struct an_seg_options o;
    struct an_seg *sg;
    struct ss_err e;
    size_t i, n = (size_t)im->w * im->h;
    float *red = calloc(n, sizeof(float)), *mean = calloc(n, sizeof(float));
    int threads, bad = 0;

    for (i = 0; i < n; i++)
        red[i] = ((uint8_t *)im->data)[i * 3];
    for (threads = 1; threads <= 3; threads += 2) {
        an_seg_options_default(&o);
        o.threads = threads;
        o.overlap_px = 8;
        assert_int_equal(an_segment_image(im, 2.0, &m, &o, &sg, &e), 0);
        assert_true(sg->tiles_run > 12);
        for (int y = 0; y < im->h; y++)
            for (int x = 0; x < im->w; x++) {
                /* whole-image answer, with white beyond the edge */
                double s = 0;
                int c = 0;
                for (int dy = -CTX_R; dy <= CTX_R; dy++)
                    for (int dx = -CTX_R; dx <= CTX_R; dx++) {
                        int xx = x + dx, yy = y + dy;
                        s += xx < 0 || yy < 0 || xx >= im->w ||
                             yy >= im->h ? 255 : red[yy * im->w + xx];
                        c++;
                    }
                int want = s / c > 128 ? AN_TUMOR : AN_STROMA;
                if (fabs(s / c - 128) < 0.5)
                    continue;               /* a tie either way */
                bad += *img_u8(sg->label, x, y) != want;
            }
        assert_int_equal(bad, 0);
        an_seg_free(sg);
    }
    free(red);
    free(mean);
    img_free(im);
}

static int
tumor_predict(struct an_model *m, const struct img *in, struct img *logits,
              struct ss_err *err)
{
    size_t i, n = (size_t)in->w * in->h;

    for (i = 0; i < n; i++) {
        float *l = (float *)logits->data + i * AN_NCLASS;
        l[AN_GLASS] = l[AN_STROMA] = -10;
        l[AN_TUMOR] = 10;
    }
    return 0;
}

static const struct an_model_ops tumor_ops = {
    .kind = "test",
    .predict = tumor_predict,
};

/* A small image that is tumour everywhere, 150 × 97 px at 0.495 µm/px,
 * analysed at 2 µm/px: the raster's 38 × 25 px reach past the image
 * (37.1 × 24.0 px), and the areas count only the share of the last
 * column and row that lies inside, so they match the image's own area
 * (3 565.1 µm², not the 3 800 µm² of whole raster pixels). */
static void
test_areas_stop_at_the_image_edge(void **state)
{
    struct an_model m = { .ops = &tumor_ops, .name = "tumor", .mpp = 2.0,
                          .margin_px = 4, .tile_px = 32 };
    struct img *im = img_new(150, 97, 3, IMG_U8);
    double true_mm2 = 150 * 97 * 0.495 * 0.495 * 1e-6;
    struct an_seg_options o;
    struct an_results r = { 0 };
    struct an_slide *s;
    struct an_seg *sg;
    struct ss_err e;
    size_t i;

    for (i = 0; i < img_bytes(im); i += 3)
        memcpy((uint8_t *)im->data + i, "\xc8\x64\x96", 3);
    assert_int_equal(img_png_write(im, tu_tmp("edge.png"), &e), 0);
    assert_int_equal(an_slide_open(tu_tmp("edge.png"), 0.495, &s, &e), 0);
    an_seg_options_default(&o);
    o.threads = 1;
    assert_int_equal(an_segment(s, &m, &o, &sg, &e), 0);
    assert_int_equal(sg->w, 38);
    assert_int_equal(sg->h, 25);
    assert_int_equal(an_measure(sg, &r, &e), 0);
    print_message("tissue %.7f mm², tumour %.7f mm², image %.7f mm²\n",
                  r.tissue_area_mm2, r.tumor_area_mm2, true_mm2);
    assert_true(r.tissue_area_mm2 <= true_mm2 * (1 + 1e-9));
    assert_true(r.tissue_area_mm2 >= true_mm2 * 0.99);
    assert_true(fabs(r.tumor_area_mm2 - r.tissue_area_mm2) < 1e-12);
    assert_true(r.stroma_area_mm2 == 0);
    an_results_free(&r);
    an_seg_free(sg);
    an_slide_close(s);
    img_free(im);
}

/* A label map drawn here, 200 × 100 px at 4 µm/px: two tumour nests
 * 10 px apart (closer than AN_REGION_CLOSE_UM) form one region, a third
 * nest 460 µm away another. */
static void
test_measure_areas_and_regions(void **state)
{
    struct an_seg sg;
    struct an_results r;
    struct ss_err e;
    int x, y;

    memset(&sg, 0, sizeof(sg));
    sg.w = 200;
    sg.h = 100;
    sg.mpp = sg.slide_mpp = 4.0;
    sg.scale = 1;
    sg.label = img_new(200, 100, 1, IMG_U8);
    sg.tissue = img_new(200, 100, 1, IMG_U8);
    memset(&r, 0, sizeof(r));
    for (y = 0; y < 100; y++)
        for (x = 0; x < 200; x++) {
            uint8_t l = AN_STROMA;
            if (y >= 20 && y < 40 && ((x >= 10 && x < 30) ||
                                      (x >= 40 && x < 60)))
                l = AN_TUMOR;
            if (y >= 20 && y < 80 && x >= 175 && x < 195)
                l = AN_TUMOR;
            *img_u8(sg.label, x, y) = l;
            *img_u8(sg.tissue, x, y) = 1;
        }
    assert_int_equal(an_measure(&sg, &r, &e), 0);
    /* 4 µm px = 16e-6 mm² */
    assert_true(fabs(r.tissue_area_mm2 - 20000 * 16e-6) < 1e-9);
    assert_true(fabs(r.tumor_area_mm2 - (800 + 1200) * 16e-6) < 1e-9);
    assert_true(fabs(r.tsr - 2000.0 / 20000) < 1e-9);
    assert_int_equal(r.nregions, 2);
    /* 800 tumour px of about 1000: the discrete closing leaves the gap's
     * corner rows out (940 px measured) */
    assert_true(r.regions[0].tsr > 0.78 && r.regions[0].tsr < 0.87);
    assert_true(fabs(r.regions[0].area_mm2 - 1000 * 16e-6) < 80 * 16e-6);
    assert_true(fabs(r.regions[1].tumor_mm2 - 1200 * 16e-6) < 1e-9);
    assert_true(r.tsr_region_min <= r.tsr_region_mean &&
                r.tsr_region_mean <= r.tsr_region_max);
    an_results_free(&r);
    img_free(sg.label);
    img_free(sg.tissue);
}

/* Draws a disc nucleus of stain amounts (h, dab). */
static void
nucleus(struct img *im, const struct an__deconv *d, int cx, int cy, int rad,
        double h, double dab)
{
    int x, y, k;

    for (y = cy - rad; y <= cy + rad; y++)
        for (x = cx - rad; x <= cx + rad; x++) {
            uint8_t *p;
            if ((x - cx) * (x - cx) + (y - cy) * (y - cy) > rad * rad)
                continue;
            p = img_u8(im, x, y);
            for (k = 0; k < 3; k++)
                p[k] = (uint8_t)lround(235 * pow(10, -(h * d->fwd[0][k] +
                                                      dab * d->fwd[1][k])));
        }
}

/* A KI67 slide as a plain image at 0.5 µm/px: a grid of nuclei, every
 * third one DAB-positive, inside a tumour label map. */
static void
test_ki67_counts_positive_nuclei(void **state)
{
    struct img *im = img_new(800, 800, 3, IMG_U8);
    struct an__deconv d;
    struct an_slide *s;
    struct an_seg sg;
    struct an_results r;
    struct ss_err e;
    int i, j, n = 0, pos = 0;

    memset(im->data, 235, img_bytes(im));
    an__deconv_init(&d, an__vec_hematoxylin, an__vec_dab, NULL);
    for (j = 0; j < 30; j++)
        for (i = 0; i < 30; i++) {
            int p = (i + j * 30) % 3 == 0;
            nucleus(im, &d, 20 + i * 26, 20 + j * 26, 9, p ? 0.2 : 0.6,
                    p ? 0.7 : 0.0);
            n++;
            pos += p;
        }
    assert_int_equal(img_png_write(im, tu_tmp("ki67.png"), &e), 0);
    assert_int_equal(an_slide_open(tu_tmp("ki67.png"), 0.5, &s, &e), 0);
    memset(&sg, 0, sizeof(sg));
    sg.w = sg.h = 200;
    sg.mpp = 2.0;
    sg.slide_mpp = 0.5;
    sg.scale = 4;
    sg.label = img_new(200, 200, 1, IMG_U8);
    memset(sg.label->data, AN_TUMOR, img_bytes(sg.label));
    memset(&r, 0, sizeof(r));
    assert_int_equal(an__ki67(s, &sg, AN_KI67_TUMOR, &r, &e), 0);
    assert_int_equal(r.ki67_nuclei, n);
    assert_int_equal(r.ki67_positive, pos);
    assert_true(fabs(r.ki67_index - (double)pos / n) < 1e-9);
    /* Nuclei on stroma do not count. */
    memset(sg.label->data, AN_STROMA, img_bytes(sg.label));
    assert_int_equal(an__ki67(s, &sg, AN_KI67_TUMOR, &r, &e), 0);
    assert_int_equal(r.ki67_nuclei, 0);
    assert_true(isnan(r.ki67_index));
    /* ... unless the tissue scope counts every nucleus on tissue; glass
     * counts in neither. */
    assert_int_equal(an__ki67(s, &sg, AN_KI67_TISSUE, &r, &e), 0);
    assert_int_equal(r.ki67_nuclei, n);
    assert_int_equal(r.ki67_positive, pos);
    memset(sg.label->data, AN_GLASS, img_bytes(sg.label));
    assert_int_equal(an__ki67(s, &sg, AN_KI67_TISSUE, &r, &e), 0);
    assert_int_equal(r.ki67_nuclei, 0);
    an_slide_close(s);
    img_free(sg.label);
    img_free(im);
}

static void
test_stain_names(void **state)
{
    enum an_stain s;

    assert_int_equal(an_stain_parse("h&e", &s), 0);
    assert_int_equal(s, AN_STAIN_HE);
    assert_int_equal(an_stain_parse("Ki67", &s), 0);
    assert_int_equal(s, AN_STAIN_KI67);
    assert_int_equal(an_stain_parse("PAS", &s), -22);
    assert_string_equal(an_stain_name(AN_STAIN_CK), "CK");
}

static void
test_ki67_scope_names_and_score_text(void **state)
{
    enum an_ki67_scope k = AN_KI67_TUMOR;
    char b[16];

    assert_int_equal(an_ki67_scope_parse("tissue", &k), 0);
    assert_int_equal(k, AN_KI67_TISSUE);
    assert_int_equal(an_ki67_scope_parse("tumor", &k), 0);
    assert_int_equal(k, AN_KI67_TUMOR);
    assert_int_equal(an_ki67_scope_parse("stroma", &k), -22);
    assert_int_equal(k, AN_KI67_TUMOR);
    assert_string_equal(an_score_text(0.5, b), "0.5000");
    assert_string_equal(an_score_text(NAN, b), "n/a");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiles_leave_no_seam),
        cmocka_unit_test(test_measure_areas_and_regions),
        cmocka_unit_test(test_areas_stop_at_the_image_edge),
        cmocka_unit_test(test_ki67_counts_positive_nuclei),
        cmocka_unit_test(test_stain_names),
        cmocka_unit_test(test_ki67_scope_names_and_score_text),
    };

    return cmocka_run_group_tests_name("analysis segment", tests, NULL,
                                       NULL);
}
