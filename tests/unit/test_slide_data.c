/* SPDX-License-Identifier: MIT */
/*
 * The slide reader (storage/slide.h) on every file of the shared data:
 * sizes, levels, pixel sizes and their sources, colours of the OME-TIFF
 * exports (JFIF tiles under Photometric=RGB), pixel identity with a
 * direct decode of the tiles and with OpenSlide, and the field case W6:
 * each broken file fails naming itself and the cause.  Skips, saying so,
 * when ../shared/data is absent.
 */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>

#include "common/img.h"
#include "storage/slide.h"

#define NEED(var, rel)                                                    \
    const char *var = tu_data(rel);                                       \
    if (var == NULL) {                                                    \
        tu_skip("shared data absent: no %s", rel);                       \
        return;                                                           \
    }

static struct slide *
open_ok(const char *path, bool need_mpp)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err e;
    int rc;

    slide_opts_default(&o);
    o.need_mpp = need_mpp;
    err_clear(&e);
    rc = slide_open(path, &o, &s, &e);
    if (rc != 0)
        print_message("# %s\n", e.msg);
    assert_int_equal(rc, 0);
    return s;
}

/* slide_open() fails with SS_EFORMAT and a message holding every one of
 * the NULL-terminated fragments. */
static void
open_fails(const char *path, bool need_mpp, ...)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err e;
    const char *frag;
    va_list ap;

    slide_opts_default(&o);
    o.need_mpp = need_mpp;
    err_clear(&e);
    assert_int_equal(slide_open(path, &o, &s, &e), SS_EFORMAT);
    assert_null(s);
    print_message("# %s\n", e.msg);
    va_start(ap, need_mpp);
    while ((frag = va_arg(ap, const char *)) != NULL)
        assert_non_null(strstr(e.msg, frag));
    va_end(ap);
}

static struct img *
read_level(struct slide *s, int level)
{
    struct img *im = NULL;
    struct ss_err e;
    int64_t w, h;

    slide_level_size(s, level, &w, &h);
    err_clear(&e);
    if (slide_read_img(s, level, 0, 0, (int)w, (int)h, &im, &e) != 0)
        print_message("# %s\n", e.msg);
    assert_non_null(im);
    return im;
}

static int
max_diff(const struct img *a, const struct img *b)
{
    size_t i, n = img_bytes(a);
    int m = 0;

    assert_int_equal(a->w, b->w);
    assert_int_equal(a->h, b->h);
    for (i = 0; i < n; i++) {
        int d = abs(((uint8_t *)a->data)[i] - ((uint8_t *)b->data)[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* ---- sizes and pixel sizes ------------------------------------------- */

static void
test_cmu_svs_through_openslide(void **state)
{
    NEED(p, "wsi/CMU-1-Small-Region.svs");
    struct slide *s = open_ok(p, true);
    struct img *label = NULL, *macro = NULL;
    struct ss_err e;
    int64_t w, h;

    slide_level_size(s, 0, &w, &h);
    assert_string_equal(slide_format(s), "aperio");
    assert_int_equal(w, 2220);
    assert_int_equal(h, 2967);
    assert_int_equal(slide_level_count(s), 1);
    assert_true(fabs(slide_mpp(s) - 0.499) < 1e-6);
    assert_int_equal(slide_mpp_source(s), SLIDE_MPP_OPENSLIDE);
    assert_int_equal(slide_associated(s, "label", &label, &e), 0);
    assert_int_equal(slide_associated(s, "macro", &macro, &e), 0);
    assert_non_null(label);
    assert_non_null(macro);
    assert_int_equal(label->w, 387);
    assert_int_equal(label->h, 463);
    assert_int_equal(macro->w, 1280);
    assert_int_equal(macro->h, 431);
    img_free(label);
    assert_int_equal(slide_associated(s, "no-such-image", &label, &e), 0);
    assert_null(label);
    img_free(macro);
    slide_close(s);
}

static const struct {
    const char *rel;
    int size;
    double mpp;
} ome[] = {
    { "wsi/OS-1-detail.ome.tif", 1101, 0.2271 },
    { "ihc_ki67/OS-2-ndpi.ome.tif", 2202, 0.2271 },
    { "ihc_ki67/OS-2-vsi.ome.tif", 1445, 0.3461 },
};

static void
test_ome_tiffs_open_with_their_pixel_size(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(ome) / sizeof(ome[0]); i++) {
        NEED(p, ome[i].rel);
        struct slide *s = open_ok(p, true);
        int64_t w, h;

        slide_level_size(s, 0, &w, &h);
        print_message("# %s: %lldx%lld, %.5f um/px from %s\n", ome[i].rel,
                      (long long)w, (long long)h, slide_mpp(s),
                      slide_mpp_source_name(slide_mpp_source(s)));
        assert_string_equal(slide_format(s), "ome-tiff");
        assert_int_equal(w, ome[i].size);
        assert_int_equal(h, ome[i].size);
        assert_int_equal(slide_level_count(s), 1);
        assert_true(fabs(slide_mpp(s) - ome[i].mpp) < 5e-5);
        assert_int_equal(slide_mpp_source(s), SLIDE_MPP_OME);
        slide_close(s);
    }
}

static void
test_override_beats_the_file(void **state)
{
    NEED(p, "wsi/OS-1-detail.ome.tif");
    struct slide_opts o;
    struct slide *s;
    struct ss_err e;
    char spec[4200];

    snprintf(spec, sizeof(spec), "%s@0.5", p);
    assert_int_equal(slide_open_spec(spec, NULL, &s, &e), 0);
    assert_string_equal(slide_path(s), p);
    assert_true(slide_mpp(s) == 0.5);
    assert_int_equal(slide_mpp_source(s), SLIDE_MPP_OVERRIDE);
    slide_close(s);
    slide_opts_default(&o);
    o.mpp = 0.25;                   /* the argument wins over the spec */
    assert_int_equal(slide_open_spec(spec, &o, &s, &e), 0);
    assert_true(slide_mpp(s) == 0.25);
    slide_close(s);
}

/* ---- colours of the OME-TIFF exports ----------------------------------- */

struct tone {
    double dark[3], bright[3];      /* mean of the darkest, brightest 5 % */
    double blue_share;              /* pixels where B > R + 20 */
};

static struct tone
tone_of(const struct img *im)
{
    size_t hist[766] = { 0 }, n = (size_t)im->w * im->h, i, lo = 0, hi = 0;
    size_t want = n / 20, got, blue = 0, cd = 0, cb = 0;
    int tlo = 0, thi = 765, k;
    struct tone t = { { 0 }, { 0 }, 0 };

    for (i = 0; i < n; i++) {
        const uint8_t *p = (uint8_t *)im->data + 3 * i;
        hist[p[0] + p[1] + p[2]]++;
    }
    for (got = 0; got < want; tlo++)
        got += hist[tlo];
    for (got = 0; got < want; thi--)
        got += hist[thi];
    for (i = 0; i < n; i++) {
        const uint8_t *p = (uint8_t *)im->data + 3 * i;
        int sum = p[0] + p[1] + p[2];

        blue += p[2] > p[0] + 20;
        lo = sum < tlo;
        hi = sum > thi;
        for (k = 0; k < 3; k++) {
            t.dark[k] += lo ? p[k] : 0;
            t.bright[k] += hi ? p[k] : 0;
        }
        cd += lo;
        cb += hi;
    }
    for (k = 0; k < 3; k++) {
        t.dark[k] /= cd > 0 ? cd : 1;
        t.bright[k] /= cb > 0 ? cb : 1;
    }
    t.blue_share = (double)blue / n;
    return t;
}

/* Ki67 IHC in true colours: neutral glass, brown (DAB) darkest pixels,
 * blue (hematoxylin) nuclei. */
static bool
looks_like_ki67(const struct img *im, const char *what)
{
    struct tone t = tone_of(im);
    double bmin = fmin(t.bright[0], fmin(t.bright[1], t.bright[2]));
    double bmax = fmax(t.bright[0], fmax(t.bright[1], t.bright[2]));

    print_message("# %s: darkest 5%% RGB %.0f %.0f %.0f, brightest 5%% "
                  "%.0f %.0f %.0f, blue share %.3f\n", what, t.dark[0],
                  t.dark[1], t.dark[2], t.bright[0], t.bright[1],
                  t.bright[2], t.blue_share);
    return bmin > 180 && bmax - bmin < 30 &&       /* glass is grey */
           t.dark[0] > t.dark[1] + 5 &&            /* DAB is brown */
           t.blue_share > 0.05;                    /* hematoxylin blue */
}

/* What libtiff and vips show for these files: the YCbCr planes of the
 * JFIF tiles taken as R, G, B. */
static struct img *
ycbcr_as_rgb(const struct img *im)
{
    struct img *f = img_dup(im);
    size_t i, n = (size_t)im->w * im->h;

    for (i = 0; i < n; i++) {
        uint8_t *p = (uint8_t *)f->data + 3 * i;
        double r = p[0], g = p[1], b = p[2];
        double y = 0.299 * r + 0.587 * g + 0.114 * b;

        p[0] = (uint8_t)lrint(y);
        p[1] = (uint8_t)lrint(fmin(255, fmax(0, 128 + (b - y) / 1.772)));
        p[2] = (uint8_t)lrint(fmin(255, fmax(0, 128 + (r - y) / 1.402)));
    }
    return f;
}

static void
test_ki67_tiles_decode_brown_and_blue(void **state)
{
    const char *rel[] = { "ihc_ki67/OS-2-ndpi.ome.tif",
                          "ihc_ki67/OS-2-vsi.ome.tif" };
    size_t i;

    for (i = 0; i < 2; i++) {
        NEED(p, rel[i]);
        struct slide *s = open_ok(p, true);
        struct img *tile = NULL, *whole, *wrong;
        struct ss_err e;

        assert_int_equal(slide_read_img(s, 0, 0, 0, 512, 512, &tile, &e), 0);
        whole = read_level(s, 0);
        assert_true(looks_like_ki67(tile, "tile 0"));
        assert_true(looks_like_ki67(whole, rel[i]));
        wrong = ycbcr_as_rgb(tile);
        assert_false(looks_like_ki67(wrong, "tile 0 as libtiff shows it"));
        img_free(wrong);
        img_free(whole);
        img_free(tile);
        slide_close(s);
    }
}

/* Tile `idx` decoded straight from its bytes, as djpeg would: TurboJPEG
 * with the accurate IDCT, colour space from the stream. */
static struct img *
direct_tile(const char *path, uint32_t idx)
{
    TIFF *t = TIFFOpen(path, "r");
    tjhandle tj = tjInitDecompress();
    uint64_t n;
    uint8_t *buf;
    struct img *im;
    int w, h, ss, cs;

    assert_non_null(t);
    n = TIFFGetStrileByteCount(t, idx);
    buf = malloc(n);
    assert_int_equal(TIFFReadRawTile(t, idx, buf, (tmsize_t)n), (tmsize_t)n);
    assert_int_equal(tjDecompressHeader3(tj, buf, n, &w, &h, &ss, &cs), 0);
    assert_int_equal(cs, TJCS_YCbCr);
    im = img_new(w, h, 3, IMG_U8);
    assert_int_equal(tjDecompress2(tj, buf, n, im->data, w, 0, h, TJPF_RGB,
                                   TJFLAG_ACCURATEDCT), 0);
    free(buf);
    tjDestroy(tj);
    TIFFClose(t);
    return im;
}

static void
test_tiles_equal_a_direct_decode(void **state)
{
    size_t i;

    for (i = 0; i < sizeof(ome) / sizeof(ome[0]); i++) {
        NEED(p, ome[i].rel);
        struct slide *s = open_ok(p, true);
        uint32_t nx = (uint32_t)(ome[i].size + 511) / 512, k;
        struct img *region = NULL;
        struct ss_err e;

        /* A region across four tiles, against each tile's own decode. */
        assert_int_equal(slide_read_img(s, 0, 256, 256, 512, 512, &region,
                                        &e), 0);
        for (k = 0; k < 4; k++) {
            uint32_t tx = k % 2, ty = k / 2;
            struct img *d = direct_tile(p, ty * nx + tx);
            struct img *part = img_crop(region, (int)(tx * 512) - 256,
                                        (int)(ty * 512) - 256, 512, 512);
            struct img *ref = img_crop(d, 0, 0, 512, 512);
            int x, y, m = 0;

            for (y = 0; y < 512; y++)
                for (x = 0; x < 512; x++) {
                    int gx = (int)(tx * 512) + x - 256;
                    int gy = (int)(ty * 512) + y - 256, c;
                    if (gx < 0 || gy < 0 || gx >= 512 || gy >= 512)
                        continue;
                    for (c = 0; c < 3; c++) {
                        int dc = abs(img_u8(part, x, y)[c] -
                                     img_u8(ref, x, y)[c]);
                        m = dc > m ? dc : m;
                    }
                }
            assert_int_equal(m, 0);
            img_free(part);
            img_free(ref);
            img_free(d);
        }
        img_free(region);
        slide_close(s);
    }
}

/* img_read_any() and the slide reader give the same pixels. */
static void
test_img_read_any_decodes_the_same(void **state)
{
    NEED(p, "ihc_ki67/OS-2-ndpi.ome.tif");
    struct slide *s = open_ok(p, true);
    struct img *a = read_level(s, 0), *b = NULL;
    struct ss_err e;

    assert_int_equal(img_read_any(p, &b, &e), 0);
    assert_int_equal(max_diff(a, b), 0);
    assert_true(looks_like_ki67(b, "img_read_any"));
    img_free(a);
    img_free(b);
    slide_close(s);
}

/* ---- cross-checks with OpenSlide and libtiff ----------------------------- */

/* The libtiff back end on Aperio files (JPEGTables, marker-less RGB
 * streams under Photometric=RGB) gives OpenSlide's pixels exactly. */
static void
test_libtiff_backend_matches_openslide_on_svs(void **state)
{
    const char *rel[] = { "wsi/CMU-1-Small-Region.svs",
                          "wsi/edge_cases/small.svs" };
    size_t i;

    for (i = 0; i < 2; i++) {
        NEED(p, rel[i]);
        struct slide_opts o;
        struct slide *os = open_ok(p, true), *lt = NULL;
        struct img *a, *b;
        struct ss_err e;

        slide_opts_default(&o);
        o.backend = SLIDE_BACKEND_LIBTIFF;
        o.need_mpp = false;
        assert_int_equal(slide_open(p, &o, &lt, &e), 0);
        assert_string_equal(slide_format(lt), "tiff");
        a = read_level(os, 0);
        b = read_level(lt, 0);
        assert_int_equal(max_diff(a, b), 0);
        img_free(a);
        img_free(b);
        slide_close(os);
        slide_close(lt);
    }
}

/* A level's pixels against level 0 area-averaged by its downsample. */
static double
level_error(struct slide *s, const struct img *l0, int level)
{
    struct img *im = read_level(s, level);
    double ds = slide_level_downsample(s, level), err = 0;
    int x, y, c, n = 0;

    for (y = 1; y + 1 < im->h; y++)
        for (x = 1; x + 1 < im->w; x++)
            for (c = 0; c < 3; c++) {
                double sum = 0;
                int i, j, k = 0;

                for (j = (int)(y * ds); j < (int)((y + 1) * ds); j++)
                    for (i = (int)(x * ds); i < (int)((x + 1) * ds); i++)
                        if (i < l0->w && j < l0->h) {
                            sum += img_u8(l0, i, j)[c];
                            k++;
                        }
                if (k == 0)
                    continue;
                err += fabs(sum / k - img_u8(im, x, y)[c]);
                n++;
            }
    img_free(im);
    return n > 0 ? err / n : 1e9;
}

/* Generic tiled pyramids: 4 levels, each the right picture, including
 * those smaller than one tile (which OpenSlide 3.4.1 with libtiff 4.5
 * reads shifted or blank). */
static void
test_generic_pyramids_read_every_level(void **state)
{
    const char *rel[] = { "wsi/edge_cases/boxes.tiff",
                          "wsi/edge_cases/small_HE_levels.tiff" };
    const int64_t dims[4][2] = { { 300, 250 }, { 150, 125 }, { 75, 62 },
                                 { 37, 31 } };
    size_t i;
    int l;

    for (i = 0; i < 2; i++) {
        NEED(p, rel[i]);
        struct slide *s = open_ok(p, false);
        struct img *l0 = read_level(s, 0);

        assert_int_equal(slide_level_count(s), 4);
        for (l = 0; l < 4; l++) {
            int64_t w, h;
            double mae;

            slide_level_size(s, l, &w, &h);
            assert_int_equal(w, dims[l][0]);
            assert_int_equal(h, dims[l][1]);
            if (l == 0)
                continue;
            mae = level_error(s, l0, l);
            print_message("# %s level %d: mean error %.2f against level 0\n",
                          rel[i], l, mae);
            assert_true(mae < 12);
        }
        assert_int_equal(slide_best_level(s, 5.0), 2);
        assert_int_equal(slide_best_level(s, 0.5), 0);
        assert_int_equal(slide_mpp_source(s), SLIDE_MPP_NONE);
        img_free(l0);
        slide_close(s);
        open_fails(p, true, "states no pixel size", "72 or 96 dpi",
                   "--mpp", NULL);
    }
}

/* ---- plain and stripped files -------------------------------------------- */

static void
compare_with_libtiff_rgba(const char *path)
{
    struct slide *s = open_ok(path, false);
    struct img *a = read_level(s, 0), *b = img_new(a->w, a->h, 3, IMG_U8);
    uint32_t *r = malloc((size_t)a->w * a->h * 4);
    TIFF *t = TIFFOpen(path, "r");
    size_t i;

    assert_int_equal(TIFFReadRGBAImageOriented(t, (uint32_t)a->w,
                                               (uint32_t)a->h, r,
                                               ORIENTATION_TOPLEFT, 0), 1);
    for (i = 0; i < (size_t)a->w * a->h; i++) {
        uint8_t *p = (uint8_t *)b->data + 3 * i;
        p[0] = TIFFGetR(r[i]);
        p[1] = TIFFGetG(r[i]);
        p[2] = TIFFGetB(r[i]);
    }
    assert_int_equal(max_diff(a, b), 0);
    TIFFClose(t);
    free(r);
    img_free(a);
    img_free(b);
    slide_close(s);
}

static int
patch_files(const char *dir, char names[][512], int max)
{
    DIR *d = opendir(dir), *sub;
    struct dirent *e, *f;
    int n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL && n < max) {
        char p[512];

        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        sub = opendir(p);
        while (sub != NULL && (f = readdir(sub)) != NULL && n < max)
            if (strstr(f->d_name, ".tif") != NULL)
                snprintf(names[n++], 512, "%s/%s", p, f->d_name);
        if (sub != NULL)
            closedir(sub);
    }
    closedir(d);
    return n;
}

/* The labelled patches (PackBits strips, 72 dpi placeholders) read as
 * libtiff renders them, and state no pixel size. */
static void
test_patches_read_like_libtiff(void **state)
{
    const char *dirs[] = { "patches/kather2016", "patches/nct_crc" };
    const int sizes[] = { 150, 224 }, counts[] = { 19, 9 };
    static char names[64][512];
    int d, i, n;

    for (d = 0; d < 2; d++) {
        NEED(p, dirs[d]);
        n = patch_files(p, names, 64);
        assert_int_equal(n, counts[d]);
        for (i = 0; i < n; i++) {
            struct slide *s = open_ok(names[i], false);
            int64_t w, h;

            slide_level_size(s, 0, &w, &h);
            assert_int_equal(w, sizes[d]);
            assert_int_equal(h, sizes[d]);
            assert_int_equal(slide_mpp_source(s), SLIDE_MPP_NONE);
            slide_close(s);
            compare_with_libtiff_rgba(names[i]);
        }
    }
}

static void
test_pngs_open_as_plain_images(void **state)
{
    const char *rel[] = { "ihc_other/ihc.png",
                          "he_unannotated/tcga-lung-rgb.png" };
    size_t i;

    for (i = 0; i < 2; i++) {
        NEED(p, rel[i]);
        struct slide *s = open_ok(p, false);
        struct img *a = read_level(s, 0), *b = NULL;
        struct ss_err e;

        assert_string_equal(slide_format(s), "png");
        assert_int_equal(a->w, 512);
        assert_int_equal(img_png_read(p, &b, &e), 0);
        assert_int_equal(max_diff(a, b), 0);
        img_free(a);
        img_free(b);
        slide_close(s);
        open_fails(p, true, "states no pixel size", "a plain PNG image",
                   NULL);
    }
}

/* ---- field case W6 and the other broken files ---------------------------- */

static void
test_w6_broken_files_name_file_and_cause(void **state)
{
    NEED(text, "wsi/edge_cases/broken.svs");
    NEED(comp, "wsi/edge_cases/unopenable.tiff");
    NEED(dcm0, "wsi/edge_cases/boxes_0.dcm");
    NEED(dcm1, "wsi/edge_cases/boxes_1.dcm");

    open_fails(text, false, "broken.svs", "not a slide", "text", NULL);
    open_fails(comp, false, "unopenable.tiff",
               "Unsupported TIFF compression: 52479", NULL);
    open_fails(dcm0, false, "boxes_0.dcm", "DICOM", "not supported", NULL);
    open_fails(dcm1, false, "boxes_1.dcm", "DICOM", "not supported", NULL);
}

static void
test_w6_corrupt_tiles_fail_when_read(void **state)
{
    NEED(p, "wsi/edge_cases/unreadable.svs");
    struct slide *s = open_ok(p, true);
    uint8_t rgb[16 * 16 * 3];
    struct ss_err e;

    assert_true(fabs(slide_mpp(s) - 0.499) < 1e-6);
    err_clear(&e);
    assert_int_equal(slide_read(s, 0, 0, 0, 16, 16, rgb, &e), SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "unreadable.svs"));
    assert_non_null(strstr(e.msg, "Bogus marker length"));
    slide_close(s);
}

/* Stripped, uncompressed, no resolution tag: opens, reads (blank glass
 * with one small fragment), and asks for a pixel size. */
static void
test_kidney_stripped_without_resolution(void **state)
{
    NEED(p, "wsi/edge_cases/kidney-48-5.tif");
    struct slide *s = open_ok(p, false);
    struct img *im = read_level(s, 0);
    size_t i, n = (size_t)im->w * im->h, dark = 0;
    struct ss_err e;
    char spec[4200];

    assert_string_equal(slide_format(s), "tiff");
    assert_int_equal(im->w, 1493);
    assert_int_equal(im->h, 901);
    for (i = 0; i < n; i++) {
        const uint8_t *q = (uint8_t *)im->data + 3 * i;
        dark += q[0] + q[1] + q[2] < 3 * 200;
    }
    print_message("# kidney: %.2f %% of pixels are tissue-dark\n",
                  100.0 * dark / n);
    assert_true(dark > 100 && dark < n / 50);
    img_free(im);
    slide_close(s);
    compare_with_libtiff_rgba(p);
    open_fails(p, true, "kidney-48-5.tif", "states no pixel size",
               "no resolution tag", "--mpp", NULL);
    snprintf(spec, sizeof(spec), "%s@2", p);
    assert_int_equal(slide_open_spec(spec, NULL, &s, &e), 0);
    assert_true(slide_mpp(s) == 2.0);
    slide_close(s);
}

static void
test_missing_file_is_enoent(void **state)
{
    struct slide *s = NULL;
    struct ss_err e;

    assert_int_equal(slide_open("/nonexistent/x.svs", NULL, &s, &e),
                     -ENOENT);
    assert_non_null(strstr(e.msg, "/nonexistent/x.svs"));
    assert_non_null(strstr(e.msg, "No such file"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmu_svs_through_openslide),
        cmocka_unit_test(test_ome_tiffs_open_with_their_pixel_size),
        cmocka_unit_test(test_override_beats_the_file),
        cmocka_unit_test(test_ki67_tiles_decode_brown_and_blue),
        cmocka_unit_test(test_tiles_equal_a_direct_decode),
        cmocka_unit_test(test_img_read_any_decodes_the_same),
        cmocka_unit_test(test_libtiff_backend_matches_openslide_on_svs),
        cmocka_unit_test(test_generic_pyramids_read_every_level),
        cmocka_unit_test(test_patches_read_like_libtiff),
        cmocka_unit_test(test_pngs_open_as_plain_images),
        cmocka_unit_test(test_w6_broken_files_name_file_and_cause),
        cmocka_unit_test(test_w6_corrupt_tiles_fail_when_read),
        cmocka_unit_test(test_kidney_stripped_without_resolution),
        cmocka_unit_test(test_missing_file_is_enoent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
