/* SPDX-License-Identifier: MIT */
/*
 * Slides on the simulated stage, read through the slide reader
 * (storage/slide.h): OpenSlide files and OME-TIFF exports (pixels and
 * pixel size from the file, true colours), images at a stated pixel size,
 * the files that break readers (field case W6: each a clear error naming
 * the file and the cause), the placement geometry with its blank-glass
 * area, and the overview camera with its label.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"
#include "storage/slide.h"
#include "worker/analysis/analysis.h"

static int
make(const char *slide, struct microscope **m, struct ss_err *e)
{
    struct sim_config c;

    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "sensor_w", "320", e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_h", "240", e), 0);
    assert_int_equal(sim_config_set(&c, "slide", slide, e), 0);
    *m = NULL;
    return sim_microscope_new(&c, m, e);
}

/* The load of rel fails with SS_EFORMAT and a message naming the file,
 * the cause and, when where is not NULL, the place (e.g. "reading
 * pixels"). */
static void
expect_error(const char *rel, const char *where, const char *cause)
{
    const char *path = tu_data(rel);
    struct microscope *m;
    struct ss_err e;
    int rc;

    if (path == NULL)
        tu_skip("%s is absent", rel);
    rc = make(path, &m, &e);
    print_message("# %s -> %s\n", rel, e.msg);
    assert_int_equal(rc, SS_EFORMAT);
    assert_null(m);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, cause));
    if (where != NULL)
        assert_non_null(strstr(e.msg, where));
}

static void
test_w6_text_named_svs(void **state)
{
    expect_error("wsi/edge_cases/broken.svs", NULL, "not a slide");
}

static void
test_w6_corrupt_tiles(void **state)
{
    expect_error("wsi/edge_cases/unreadable.svs", "reading pixels",
                 "Bogus marker length");
}

static void
test_w6_unknown_compression(void **state)
{
    expect_error("wsi/edge_cases/unopenable.tiff", NULL,
                 "Unsupported TIFF compression: 52479");
}

static void
test_missing_and_unsized_files(void **state)
{
    const char *kidney = tu_data("wsi/edge_cases/kidney-48-5.tif");
    const char *boxes = tu_data("wsi/edge_cases/boxes.tiff");
    struct microscope *m;
    struct ss_err e;
    char spec[4096];

    assert_int_equal(make("/nonexistent/slide.svs", &m, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "/nonexistent/slide.svs"));
    if (kidney == NULL || boxes == NULL)
        tu_skip("the shared edge cases are absent");
    assert_int_equal(make(kidney, &m, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "states no pixel size"));
    assert_int_equal(make(boxes, &m, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "@MPP"));
    snprintf(spec, sizeof(spec), "%s@2.0:stain=KI67:id=K-48", kidney);
    assert_int_equal(make(spec, &m, &e), 0);
    {
        struct sim_geometry g;

        sim_geometry_get(sim_of(m), &g);
        assert_true(fabs(g.image_w_um - 1493 * 2.0) < 1e-9);
        assert_string_equal(g.stain, "KI67");
        assert_string_equal(g.slide_id, "K-48");
    }
    microscope_free(m);
}

/* At the file's own pixel size and grid, the ideal image is the file. */
static void
test_openslide_slide_renders_its_pixels(void **state)
{
    const char *path = tu_data("wsi/CMU-1-Small-Region.svs");
    struct sim_geometry g;
    struct microscope *m;
    struct img *im = NULL;
    struct ss_err e;
    openslide_t *os;
    uint32_t *ref;
    int i, diff = 0;

    if (path == NULL)
        tu_skip("CMU-1-Small-Region.svs is absent");
    assert_int_equal(make(path, &m, &e), 0);
    sim_geometry_get(sim_of(m), &g);
    assert_true(fabs(g.source_mpp - 0.499) < 1e-9);
    assert_true(fabs(g.image_w_um - 2220 * 0.499) < 1e-6);
    assert_int_equal(sim_render_truth(sim_of(m), g.image_x_um + 700 * 0.499,
                                      g.image_y_um + 900 * 0.499, 200, 150,
                                      0.499, &im, &e), 0);
    os = openslide_open(path);
    ref = malloc(200 * 150 * 4);
    openslide_read_region(os, ref, 700, 900, 0, 200, 150);
    for (i = 0; i < 200 * 150; i++) {
        const uint8_t *p = (uint8_t *)im->data + (size_t)i * 3;

        diff += p[0] != ((ref[i] >> 16) & 0xff) ||
                p[1] != ((ref[i] >> 8) & 0xff) || p[2] != (ref[i] & 0xff);
    }
    assert_int_equal(diff, 0);
    free(ref);
    openslide_close(os);
    img_free(im);
    /* Downsampled 20 times (a 10 um overview pixel), the slide keeps its
     * mean colour: every source pixel is weighed in. */
    {
        int ow = (int)(2220 * 0.499 / 10) - 2, oh = (int)(2967 * 0.499 / 10)
                                                   - 2, u, v, n = 0;
        double ideal = 0, file = 0;
        uint32_t *all = malloc((size_t)2220 * 2967 * 4);

        assert_int_equal(sim_render_truth(sim_of(m), g.image_x_um + 15,
                                          g.image_y_um + 15, ow, oh, 10.0,
                                          &im, &e), 0);
        for (v = 0; v < oh; v++)
            for (u = 0; u < ow; u++)
                ideal += img_u8(im, u, v)[1];
        ideal /= (double)ow * oh;
        os = openslide_open(path);
        openslide_read_region(os, all, 0, 0, 0, 2220, 2967);
        for (v = 0; v < 2967; v++)
            for (u = 0; u < 2220; u++) {
                double xu = u * 0.499, yu = v * 0.499;

                if (xu < 10 || yu < 10 || xu >= 10 + ow * 10.0 ||
                    yu >= 10 + oh * 10.0)
                    continue;
                file += (all[(size_t)v * 2220 + u] >> 8) & 0xff;
                n++;
            }
        file /= n;
        print_message("# CMU-1 at 10 um/px: mean green %.2f, file %.2f\n",
                      ideal, file);
        assert_true(fabs(ideal - file) < 1.0);
        openslide_close(os);
        free(all);
        img_free(im);
    }
    microscope_free(m);
}

/* The file's own blank glass renders at the level of the glass around
 * the image (the glass colour the simulator estimates from the file), as
 * the analysis measures it: the commonest bright value per channel (within
 * 1.5 DN; the old estimate, the brightest 2 %, was 4 DN above in green).  A
 * brighter estimate would make the glass inside the image faint tissue.
 * A detail image without glass keeps its values (glass = 255). */
static void
test_file_glass_matches_glass_around_the_image(void **state)
{
    const char *path = tu_data("wsi/CMU-1-Small-Region.svs");
    const char *detail = tu_data("wsi/OS-1-detail.ome.tif");
    struct sim_geometry g;
    struct microscope *m;
    struct img *im = NULL, *in;
    struct ss_err e;
    double glass[3], bg[3];
    int c, w, h;

    if (path == NULL || detail == NULL)
        tu_skip("CMU-1-Small-Region.svs or OS-1-detail.ome.tif is absent");
    assert_int_equal(make(path, &m, &e), 0);
    sim_geometry_get(sim_of(m), &g);
    sim_glass_rgb(sim_of(m), glass);
    w = (int)(g.image_w_um / 2);
    h = (int)(g.image_h_um / 2);
    /* 50 µm of margin on every side, the image inside. */
    assert_int_equal(sim_render_truth(sim_of(m), g.image_x_um - 50,
                                      g.image_y_um - 50, w + 50, h + 50,
                                      2.0, &im, &e), 0);
    in = img_new(w - 2, h - 2, 3, IMG_U8);
    for (int v = 0; v < h - 2; v++)
        memcpy(img_u8(in, 0, v), img_u8(im, 26, 26 + v), (size_t)in->w * 3);
    an_background_rgb(in, bg);
    print_message("# CMU-1 glass around the image %.1f %.1f %.1f, inside "
                  "%.0f %.0f %.0f\n", (double)img_u8(im, 2, 2)[0],
                  (double)img_u8(im, 2, 2)[1], (double)img_u8(im, 2, 2)[2],
                  bg[0], bg[1], bg[2]);
    for (c = 0; c < 3; c++) {
        assert_true(fabs(img_u8(im, 2, 2)[c] - glass[c] * 255) <= 0.5);
        assert_true(fabs(glass[c] * 255 - bg[c]) <= 1.5);
    }
    img_free(in);
    img_free(im);
    microscope_free(m);
    assert_int_equal(make(detail, &m, &e), 0);
    sim_glass_rgb(sim_of(m), glass);
    for (c = 0; c < 3; c++)
        assert_true(glass[c] == 1.0);
    microscope_free(m);
}

static const struct {
    const char *rel;
    int size;                       /* square, level 0 */
    double mpp;                     /* PhysicalSizeX of the OME-XML */
} ome[] = {
    { "wsi/OS-1-detail.ome.tif", 1101, 0.2271 },
    { "ihc_ki67/OS-2-ndpi.ome.tif", 2202, 0.2271 },
    { "ihc_ki67/OS-2-vsi.ome.tif", 1445, 0.3461 },
};

/* OME-TIFF exports place without "@MPP": the pixel size comes from their
 * OME-XML, and at the file's own grid the ideal image is the reader's
 * decoded pixels exactly.  "@MPP" still overrides the file. */
static void
test_ome_tiffs_place_with_their_pixel_size(void **state)
{
    struct sim_geometry g;
    struct microscope *m;
    struct ss_err e;
    char spec[4200];
    size_t i;

    for (i = 0; i < sizeof(ome) / sizeof(ome[0]); i++) {
        const char *path = tu_data(ome[i].rel);
        struct img *im = NULL, *ref = NULL;
        struct slide *sl;

        if (path == NULL)
            tu_skip("%s is absent", ome[i].rel);
        assert_int_equal(make(path, &m, &e), 0);
        sim_geometry_get(sim_of(m), &g);
        print_message("# %s: %.5f um/px, %.1f x %.1f um\n", ome[i].rel,
                      g.source_mpp, g.image_w_um, g.image_h_um);
        assert_true(fabs(g.source_mpp - ome[i].mpp) < 5e-5);
        assert_true(fabs(g.image_w_um - ome[i].size * g.source_mpp) < 1e-6);
        assert_true(fabs(g.image_h_um - ome[i].size * g.source_mpp) < 1e-6);
        assert_int_equal(sim_render_truth(sim_of(m), g.image_x_um + 300 *
                                          g.source_mpp, g.image_y_um + 400 *
                                          g.source_mpp, 200, 150,
                                          g.source_mpp, &im, &e), 0);
        assert_int_equal(slide_open(path, NULL, &sl, &e), 0);
        assert_int_equal(slide_read_img(sl, 0, 300, 400, 200, 150, &ref, &e),
                         0);
        assert_memory_equal(im->data, ref->data, img_bytes(ref));
        slide_close(sl);
        img_free(ref);
        img_free(im);
        microscope_free(m);
        /* An @MPP that contradicts the file's own is refused, naming
         * both; :force_mpp insists. */
        snprintf(spec, sizeof(spec), "%s@0.5", path);
        assert_int_equal(make(spec, &m, &e), -EDOM);
        assert_non_null(strstr(e.msg, "µm/px (ome-xml); the 0.5 µm/px "
                               "given contradicts it"));
        snprintf(spec, sizeof(spec), "%s@0.5:force_mpp", path);
        assert_int_equal(make(spec, &m, &e), 0);
        sim_geometry_get(sim_of(m), &g);
        assert_true(g.source_mpp == 0.5);
        microscope_free(m);
    }
}

struct tone {
    double dark[3];                 /* mean of the darkest 5 % */
    double blue_share;              /* pixels with B > R + 20 */
};

static struct tone
tone_of(const struct img *im)
{
    size_t hist[766] = { 0 }, n = (size_t)im->w * im->h, i, got = 0;
    size_t nd = 0, blue = 0;
    struct tone t = { { 0, 0, 0 }, 0 };
    int thr = 0, c;

    for (i = 0; i < n; i++) {
        const uint8_t *p = (uint8_t *)im->data + 3 * i;

        hist[p[0] + p[1] + p[2]]++;
    }
    while (got < n / 20)
        got += hist[thr++];
    for (i = 0; i < n; i++) {
        const uint8_t *p = (uint8_t *)im->data + 3 * i;

        blue += p[2] > p[0] + 20;
        if (p[0] + p[1] + p[2] >= thr)
            continue;
        for (c = 0; c < 3; c++)
            t.dark[c] += p[c];
        nd++;
    }
    for (c = 0; c < 3; c++)
        t.dark[c] /= nd > 0 ? (double)nd : 1;
    t.blue_share = (double)blue / n;
    return t;
}

/* The darkest pixels brown (DAB: red above green, and at least 10 DN
 * above blue) and at least 5 % of the pixels blue (hematoxylin). */
static bool
looks_like_ki67(const struct img *im, const char *what)
{
    struct tone t = tone_of(im);

    print_message("# %s: darkest 5%% RGB %.1f %.1f %.1f, blue share "
                  "%.3f\n", what, t.dark[0], t.dark[1], t.dark[2],
                  t.blue_share);
    return t.dark[0] > t.dark[1] && t.dark[0] > t.dark[2] + 10 &&
           t.blue_share > 0.05;
}

/* The view of the tiles that a YCbCr decode taken as RGB gives (what
 * libtiff and vips show for these files): the check must refuse it. */
static void
as_ycbcr(struct img *im)
{
    size_t i, n = (size_t)im->w * im->h;

    for (i = 0; i < n; i++) {
        uint8_t *p = (uint8_t *)im->data + 3 * i;
        double r = p[0], gr = p[1], b = p[2];
        double y = 0.299 * r + 0.587 * gr + 0.114 * b;

        p[0] = (uint8_t)lrint(y);
        p[1] = (uint8_t)lrint(fmin(255, fmax(0, 128 + (b - y) / 1.772)));
        p[2] = (uint8_t)lrint(fmin(255, fmax(0, 128 + (r - y) / 1.402)));
    }
}

/* A camera frame of the Ki67 OME-TIFF, with noise, vignetting and the
 * KI67 exposure: brown DAB and blue hematoxylin reach the sensor. */
static void
test_ki67_ome_frame_shows_brown_dab_and_blue_nuclei(void **state)
{
    const char *path = tu_data("ihc_ki67/OS-2-ndpi.ome.tif");
    struct sim_config c;
    struct sim_geometry g;
    struct microscope *m;
    struct img *im = NULL;
    struct ss_err e;
    struct sim *s;
    char spec[4200];
    double x, y;

    if (path == NULL)
        tu_skip("OS-2-ndpi.ome.tif is absent");
    snprintf(spec, sizeof(spec), "%s:stain=KI67", path);
    sim_config_default(&c);
    assert_int_equal(sim_config_set(&c, "sensor_w", "900", &e), 0);
    assert_int_equal(sim_config_set(&c, "sensor_h", "900", &e), 0);
    assert_int_equal(sim_config_set(&c, "slide", spec, &e), 0);
    assert_int_equal(sim_microscope_new(&c, &m, &e), 0);
    s = sim_of(m);
    sim_geometry_get(s, &g);
    assert_string_equal(g.stain, "KI67");
    x = g.image_x_um + (g.image_w_um - 900 * g.pixel_um) / 2;
    y = g.image_y_um + (g.image_h_um - 900 * g.pixel_um) / 2;
    assert_int_equal(sim_snap(s, x, y, sim_focus_z(s, x + 225, y + 225), 0,
                              100, &im, &e), 0);
    assert_true(looks_like_ki67(im, "OS-2-ndpi frame"));
    as_ycbcr(im);
    assert_false(looks_like_ki67(im, "the frame as YCbCr taken for RGB"));
    img_free(im);
    microscope_free(m);
}

static void
test_geometry_and_blank_glass(void **state)
{
    struct microscope *m;
    struct sim_geometry g;
    struct img *im = NULL;
    struct ss_err e;
    size_t i;
    int lo = 255;

    assert_int_equal(make("phantom:HE:w_mm=2:h_mm=1.5", &m, &e), 0);
    sim_geometry_get(sim_of(m), &g);
    assert_true(g.image_x_um == 1000 && g.image_y_um == 1000);
    assert_true(g.area_h_um >= g.image_h_um + 2000);
    assert_true(g.blank_x_um >= g.image_x_um + g.image_w_um + 500);
    assert_true(g.blank_x_um + g.frame_w * g.pixel_um <= g.area_w_um);
    assert_true(g.glass_w_um == 75000 && g.glass_h_um == 25000);
    assert_true(g.limits.max_um[0] == 120000);  /* the default travel */
    assert_true(m->stage->limits.max_um[1] == 80000);
    assert_int_equal(sim_render_truth(sim_of(m), g.blank_x_um, g.blank_y_um,
                                      g.frame_w, g.frame_h, g.pixel_um, &im,
                                      &e), 0);
    for (i = 0; i < img_bytes(im); i++)
        lo = ((uint8_t *)im->data)[i] < lo ? ((uint8_t *)im->data)[i] : lo;
    assert_true(lo >= 240);                     /* nothing but glass */
    img_free(im);
    microscope_free(m);
}

static void
test_overview_shows_the_slide_with_geometry(void **state)
{
    struct microscope *m;
    struct sim_geometry g;
    struct ov_geometry geo;
    struct img *ov = NULL, *lab = NULL, *lm = NULL;
    struct ss_err e;
    double agree = 0, n = 0;
    int u, v, dark = 0;

    assert_int_equal(make("phantom:HE:seed=3:id=S-0042", &m, &e), 0);
    sim_geometry_get(sim_of(m), &g);
    assert_int_equal(m->ov->ops->capture(m->ov, &ov, &geo, &e), 0);
    assert_true(fabs(ov->w * geo.um_per_px - g.area_w_um) <
                geo.um_per_px);
    assert_true(fabs(ov->h * geo.um_per_px - g.area_h_um) <
                geo.um_per_px);
    assert_int_equal(sim_render_labels(sim_of(m), geo.origin_x_um,
                                       geo.origin_y_um, ov->w, ov->h,
                                       geo.um_per_px, &lm, &e), 0);
    for (v = 0; v < ov->h; v++)
        for (u = 0; u < ov->w; u++) {
            bool tissue = img_u8(ov, u, v)[1] < 200;

            agree += tissue == (*img_u8(lm, u, v) != SIM_LABEL_GLASS);
            n++;
        }
    print_message("# overview %dx%d at %.0f um/px: tissue agrees with "
                  "labels on %.1f %% of pixels\n", ov->w, ov->h,
                  geo.um_per_px, 100 * agree / n);
    assert_true(agree / n > 0.97);
    assert_int_equal(m->ov->ops->label(m->ov, &lab, &e), 0);
    for (v = 0; v < lab->h; v++)
        for (u = 0; u < lab->w; u++)
            dark += img_u8(lab, u, v)[0] < 100;
    assert_true(dark > 1000);                   /* the id is printed */
    img_free(ov);
    img_free(lab);
    img_free(lm);
    microscope_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_w6_text_named_svs),
        cmocka_unit_test(test_w6_corrupt_tiles),
        cmocka_unit_test(test_w6_unknown_compression),
        cmocka_unit_test(test_missing_and_unsized_files),
        cmocka_unit_test(test_openslide_slide_renders_its_pixels),
        cmocka_unit_test(test_file_glass_matches_glass_around_the_image),
        cmocka_unit_test(test_ome_tiffs_place_with_their_pixel_size),
        cmocka_unit_test(test_ki67_ome_frame_shows_brown_dab_and_blue_nuclei),
        cmocka_unit_test(test_geometry_and_blank_glass),
        cmocka_unit_test(test_overview_shows_the_slide_with_geometry),
    };

    return cmocka_run_group_tests_name("sim slides", tests, NULL, NULL);
}
