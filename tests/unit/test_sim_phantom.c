/* SPDX-License-Identifier: MIT */
/*
 * The procedural phantom against its own ground truth: the label map
 * agrees with the rendered tissue classes, the KI67 truth equals the
 * count of rendered DAB-positive nuclei, the CK-positive area is where
 * the DAB is, the two tumour-stroma quantities are what their names say,
 * a seed fixes the slide, a large section is evaluated on demand, and
 * the phantom written to files reads back as rendered.
 */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drivers/sim/sim.h"

static struct microscope *
make(const char *slide)
{
    struct microscope *m = NULL;
    struct sim_config c;
    struct ss_err e;

    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "slide", slide, &e), 0);
    if (sim_microscope_new(&c, &m, &e) != 0)
        fail_msg("%s", e.msg);
    return m;
}

/* A region of the image in stage µm: (x, y) of its top-left. */
static void
region(struct microscope *m, double fx, double fy, double *x, double *y)
{
    struct sim_geometry g;

    sim_geometry_get(sim_of(m), &g);
    *x = g.image_x_um + fx * g.image_w_um;
    *y = g.image_y_um + fy * g.image_h_um;
}

/* Mean colour of the 9 × 9 neighbourhood of (u, v). */
static void
local_mean(const struct img *rgb, int u, int v, double f[3])
{
    int i, j, c;

    f[0] = f[1] = f[2] = 0;
    for (j = -4; j <= 4; j++)
        for (i = -4; i <= 4; i++)
            for (c = 0; c < 3; c++)
                f[c] += img_u8(rgb, u + i, v + j)[c] / 81.0;
}

/* Pixels classified by the nearest class mean of their neighbourhood
 * colour (means learnt on the top half, tested on the bottom half) must
 * agree with the label map. */
static void
test_labels_match_rendered_classes(void **state)
{
    struct microscope *m = make("phantom:HE:seed=11");
    struct img *rgb = NULL, *lab = NULL;
    double x, y, mean[3][3] = { { 0 } }, n[3] = { 0 }, ok = 0, tot = 0;
    double f[3], d, dbest;
    struct ss_err e;
    int w = 1600, h = 1200, u, v, c, k, best;

    region(m, 0.3, 0.3, &x, &y);
    assert_int_equal(sim_render_truth(sim_of(m), x, y, w, h, 0.5, &rgb, &e),
                     0);
    assert_int_equal(sim_render_labels(sim_of(m), x, y, w, h, 0.5, &lab,
                                       &e), 0);
    for (v = 4; v < h / 2; v += 3)
        for (u = 4; u < w - 4; u += 3) {
            k = *img_u8(lab, u, v);
            local_mean(rgb, u, v, f);
            for (c = 0; c < 3; c++)
                mean[k][c] += f[c];
            n[k]++;
        }
    for (k = 0; k < 3; k++) {
        assert_true(n[k] > 100);
        for (c = 0; c < 3; c++)
            mean[k][c] /= n[k];
    }
    for (v = h / 2; v < h - 4; v += 3)
        for (u = 4; u < w - 4; u += 3) {
            local_mean(rgb, u, v, f);
            dbest = 1e30;
            best = 0;
            for (k = 0; k < 3; k++) {
                for (d = 0, c = 0; c < 3; c++)
                    d += (f[c] - mean[k][c]) * (f[c] - mean[k][c]);
                if (d < dbest) {
                    dbest = d;
                    best = k;
                }
            }
            ok += best == *img_u8(lab, u, v);
            tot++;
        }
    print_message("# class means: glass %.0f %.0f %.0f, tumour %.0f %.0f "
                  "%.0f, stroma %.0f %.0f %.0f; agreement %.1f %%\n",
                  mean[0][0], mean[0][1], mean[0][2], mean[1][0],
                  mean[1][1], mean[1][2], mean[2][0], mean[2][1],
                  mean[2][2], 100 * ok / tot);
    assert_true(ok / tot > 0.85);
    assert_true(mean[0][1] > 200);                      /* glass white */
    assert_true(mean[1][0] < mean[2][0] - 20);          /* tumour darker */
    img_free(rgb);
    img_free(lab);
    microscope_free(m);
}

/* Connected components of a mask (4-neighbour flood fill); counts the
 * components of at least min_px whose centroid lies in [0, w) × [0, h)
 * shrunk by `border`. */
static int
count_blobs(uint8_t *mask, int w, int h, int min_px, int border)
{
    int *stack = malloc(sizeof(int) * (size_t)w * h), count = 0, i;

    for (i = 0; i < w * h; i++) {
        long sx = 0, sy = 0, npx = 0;
        int top = 0;

        if (mask[i] != 1)
            continue;
        stack[top++] = i;
        mask[i] = 2;
        while (top > 0) {
            int p = stack[--top], px = p % w, py = p / w, q, k;
            static const int dx[4] = { 1, -1, 0, 0 }, dy[4] = { 0, 0, 1, -1 };

            sx += px;
            sy += py;
            npx++;
            for (k = 0; k < 4; k++) {
                if (px + dx[k] < 0 || px + dx[k] >= w || py + dy[k] < 0 ||
                    py + dy[k] >= h)
                    continue;
                q = p + dx[k] + dy[k] * w;
                if (mask[q] == 1) {
                    mask[q] = 2;
                    stack[top++] = q;
                }
            }
        }
        if (npx >= min_px && sx / (double)npx >= border &&
            sx / (double)npx < w - border && sy / (double)npx >= border &&
            sy / (double)npx < h - border)
            count++;
    }
    free(stack);
    return count;
}

static void
test_ki67_truth_equals_rendered_positive_nuclei(void **state)
{
    struct microscope *m = make("phantom:KI67:seed=4");
    struct sim_phantom_truth t;
    struct img *rgb = NULL;
    struct ss_err e;
    double x, y, p = 0.5, frac;
    int w = 1400, h = 1400, bd = 20, i, blobs;
    uint8_t *mask;

    region(m, 0.35, 0.3, &x, &y);
    assert_int_equal(sim_render_truth(sim_of(m), x, y, w, h, p, &rgb, &e),
                     0);
    assert_int_equal(sim_phantom_truth(sim_of(m), x + bd * p, y + bd * p,
                                       (w - 2 * bd) * p, (h - 2 * bd) * p,
                                       &t, &e), 0);
    mask = malloc((size_t)w * h);
    for (i = 0; i < w * h; i++) {
        const uint8_t *q = (uint8_t *)rgb->data + (size_t)i * 3;

        /* DAB brown: red well above blue, and dark. */
        mask[i] = q[0] > q[2] + 25 && q[0] + q[1] + q[2] < 450;
    }
    blobs = count_blobs(mask, w, h, 12, bd);
    frac = t.nuclei[SIM_LABEL_TUMOR] > 0
           ? (double)blobs / t.nuclei[SIM_LABEL_TUMOR] : 0;
    print_message("# KI67: %d brown nuclei counted, truth %ld positive of "
                  "%ld tumour nuclei (%.4f vs %.4f)\n", blobs, t.tumor_pos,
                  t.nuclei[SIM_LABEL_TUMOR], frac, t.ki67_fraction);
    assert_true(t.tumor_pos > 100);
    assert_true(labs(blobs - t.tumor_pos) <= 2 + t.tumor_pos / 100);
    assert_true(fabs(frac - t.ki67_fraction) < 0.005);
    free(mask);
    img_free(rgb);
    microscope_free(m);
}

static void
test_ck_positive_area_is_tumour_epithelium(void **state)
{
    struct microscope *m = make("phantom:CK:seed=4");
    struct img *rgb = NULL, *lab = NULL;
    struct sim_phantom_truth t;
    struct ss_err e;
    double x, y, in = 0, nin = 0, out = 0, nout = 0;
    int w = 1000, h = 1000, i;

    region(m, 0.35, 0.3, &x, &y);
    assert_int_equal(sim_render_truth(sim_of(m), x, y, w, h, 0.5, &rgb, &e),
                     0);
    assert_int_equal(sim_render_labels(sim_of(m), x, y, w, h, 0.5, &lab, &e),
                     0);
    assert_int_equal(sim_phantom_truth(sim_of(m), x, y, w * 0.5, h * 0.5, &t,
                                       &e), 0);
    for (i = 0; i < w * h; i++) {
        const uint8_t *q = (uint8_t *)rgb->data + (size_t)i * 3;
        bool brown = q[0] > q[2] + 25;

        if (((uint8_t *)lab->data)[i] == SIM_LABEL_TUMOR) {
            in += brown;
            nin++;
        } else {
            out += brown;
            nout++;
        }
    }
    print_message("# CK: brown in tumour %.1f %%, elsewhere %.2f %%; truth "
                  "CK area %.0f um2 = tumour area %.0f um2\n",
                  100 * in / nin, 100 * out / nout, t.ck_positive_um2,
                  t.area_um2[SIM_LABEL_TUMOR]);
    assert_true(nin > 1000 && in / nin > 0.5);
    assert_true(out / nout < 0.03);
    assert_true(fabs(t.ck_positive_um2 - nin * 0.25) / (nin * 0.25) < 0.03);
    img_free(rgb);
    img_free(lab);
    microscope_free(m);
}

static void
test_seed_fixes_the_slide(void **state)
{
    struct microscope *a = make("phantom:HE:seed=21");
    struct microscope *b = make("phantom:HE:seed=21");
    struct microscope *c = make("phantom:HE:seed=22");
    struct img *ia, *ib, *ic;
    struct ss_err e;
    double x, y;

    region(a, 0.4, 0.4, &x, &y);
    assert_int_equal(sim_render_truth(sim_of(a), x, y, 300, 200, 0.5, &ia,
                                      &e), 0);
    assert_int_equal(sim_render_truth(sim_of(b), x, y, 300, 200, 0.5, &ib,
                                      &e), 0);
    assert_int_equal(sim_render_truth(sim_of(c), x, y, 300, 200, 0.5, &ic,
                                      &e), 0);
    assert_memory_equal(ia->data, ib->data, img_bytes(ia));
    assert_true(memcmp(ia->data, ic->data, img_bytes(ia)) != 0);
    img_free(ia);
    img_free(ib);
    img_free(ic);
    microscope_free(a);
    microscope_free(b);
    microscope_free(c);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A 15 × 15 mm section is 30000 px square at 0.5 µm/px: any region is
 * rendered on demand, with no whole-slide raster. */
static void
test_large_section_on_demand(void **state)
{
    struct microscope *m = make("phantom:HE:seed=2:w_mm=15:h_mm=15");
    struct sim_geometry g;
    struct img *im = NULL;
    struct ss_err e;
    double t0 = now_s(), x, y;

    sim_geometry_get(sim_of(m), &g);
    assert_true(fabs(g.image_w_um - 15000) < 1e-9);
    region(m, 0.62, 0.55, &x, &y);
    assert_int_equal(sim_render_truth(sim_of(m), x, y, 512, 512, 0.5, &im,
                                      &e), 0);
    print_message("# 512 px at (%.0f, %.0f) um of a 15 mm section: %.2f s\n",
                  x, y, now_s() - t0);
    img_free(im);
    microscope_free(m);
}

/* tumor_to_stroma_area_ratio is tumour / stroma (unbounded), and
 * tumor_fraction is tumour / (tumour + stroma), the analysis's
 * tumour-stroma ratio, in [0, 1]; both 0 where there is no tissue. */
static void
test_tumour_fraction_and_area_ratio(void **state)
{
    struct microscope *m = make("phantom:HE:seed=8");
    struct sim_phantom_truth t;
    struct ss_err e;
    double x, y, tu, st;

    region(m, 0.25, 0.25, &x, &y);
    assert_int_equal(sim_phantom_truth(sim_of(m), x, y, 1500, 1200, &t, &e),
                     0);
    tu = t.area_um2[SIM_LABEL_TUMOR];
    st = t.area_um2[SIM_LABEL_STROMA];
    print_message("# tumour %.0f um2, stroma %.0f um2: area ratio %.4f, "
                  "tumour fraction %.4f\n", tu, st,
                  t.tumor_to_stroma_area_ratio, t.tumor_fraction);
    assert_true(tu > 10000 && st > 10000);
    assert_true(t.tumor_to_stroma_area_ratio == tu / st);
    assert_true(t.tumor_fraction == tu / (tu + st));
    assert_true(t.tumor_fraction > 0 && t.tumor_fraction < 1);
    assert_true(fabs(t.tumor_fraction - t.tumor_to_stroma_area_ratio /
                     (1 + t.tumor_to_stroma_area_ratio)) < 1e-12);
    /* The image's corner lies outside the tissue ellipse: glass only. */
    region(m, 0, 0, &x, &y);
    assert_int_equal(sim_phantom_truth(sim_of(m), x, y, 100, 100, &t, &e),
                     0);
    assert_true(t.area_um2[SIM_LABEL_TUMOR] + t.area_um2[SIM_LABEL_STROMA]
                == 0);
    assert_true(t.tumor_fraction == 0 && t.tumor_to_stroma_area_ratio == 0);
    microscope_free(m);
}

static void
test_written_phantom_reads_back(void **state)
{
    struct microscope *m = make("phantom:KI67:seed=6:w_mm=0.6:h_mm=0.5");
    struct sim *s = sim_of(m);
    struct img *png = NULL, *lab = NULL, *ideal = NULL, *ilab = NULL;
    struct sim_geometry g;
    const char *tif = tu_tmp("ph.tif");
    json_t *j;
    json_error_t je;
    openslide_t *os;
    struct ss_err e;
    double tot;
    int i;

    sim_geometry_get(s, &g);
    assert_int_equal(sim_phantom_write(s, 1.0, tu_tmp("ph.png"),
                                       tu_tmp("lab.png"), tu_tmp("t.json"),
                                       &e), 0);
    assert_int_equal(img_read_any(tu_tmp("ph.png"), &png, &e), 0);
    assert_int_equal(img_png_read(tu_tmp("lab.png"), &lab, &e), 0);
    assert_int_equal(png->w, 600);
    assert_int_equal(png->h, 500);
    assert_int_equal(sim_render_truth(s, g.image_x_um, g.image_y_um, 600,
                                      500, 1.0, &ideal, &e), 0);
    assert_int_equal(sim_render_labels(s, g.image_x_um, g.image_y_um, 600,
                                       500, 1.0, &ilab, &e), 0);
    assert_memory_equal(png->data, ideal->data, img_bytes(ideal));
    for (i = 0; i < 600 * 500; i++)             /* read back as RGB */
        if (((uint8_t *)lab->data)[i * 3] != ((uint8_t *)ilab->data)[i])
            fail_msg("label pixel %d differs", i);
    j = json_load_file(tu_tmp("t.json"), 0, &je);
    assert_non_null(j);
    tot = json_real_value(json_object_get(json_object_get(j, "areas_mm2"),
                                          "glass")) +
          json_real_value(json_object_get(json_object_get(j, "areas_mm2"),
                                          "tissue"));
    assert_true(fabs(tot - 0.3) < 1e-6);
    {
        json_t *a = json_object_get(j, "areas_mm2");
        double tu = json_real_value(json_object_get(a, "tumor"));
        double st = json_real_value(json_object_get(a, "stroma"));
        double fr = json_real_value(json_object_get(j, "tumor_fraction"));
        double ra = json_real_value(json_object_get(j,
                                    "tumor_to_stroma_area_ratio"));

        print_message("# truth.json: tumour %.5f mm2, stroma %.5f mm2, "
                      "tumor_fraction %.5f, tumor_to_stroma_area_ratio "
                      "%.5f\n", tu, st, fr, ra);
        assert_int_equal(json_integer_value(json_object_get(j, "version")),
                         2);
        assert_true(tu > 0 && st > 0);
        assert_true(fabs(fr - tu / (tu + st)) < 1e-12);
        assert_true(fabs(ra - tu / st) < 1e-9 * ra);
        assert_null(json_object_get(j, "tumor_stroma_ratio"));
    }
    assert_true(json_real_value(json_object_get(j, "ki67_fraction")) > 0);
    assert_true(json_is_null(json_object_get(j, "ck_positive_area_mm2")));
    json_decref(j);
    /* The pyramidal TIFF opens in OpenSlide with its pixel size. */
    assert_int_equal(sim_phantom_write(s, 0.5, tif, NULL, NULL, &e), 0);
    os = openslide_open(tif);
    assert_non_null(os);
    assert_null(openslide_get_error(os));
    assert_string_equal(openslide_get_property_value(os, "openslide.mpp-x"),
                        "0.5");
    openslide_close(os);
    img_free(png);
    img_free(lab);
    img_free(ideal);
    img_free(ilab);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_match_rendered_classes),
        cmocka_unit_test(test_ki67_truth_equals_rendered_positive_nuclei),
        cmocka_unit_test(test_ck_positive_area_is_tumour_epithelium),
        cmocka_unit_test(test_tumour_fraction_and_area_ratio),
        cmocka_unit_test(test_seed_fixes_the_slide),
        cmocka_unit_test(test_large_section_on_demand),
        cmocka_unit_test(test_written_phantom_reads_back),
    };

    return cmocka_run_group_tests_name("sim phantom", tests, NULL, NULL);
}
