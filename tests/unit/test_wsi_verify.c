/* SPDX-License-Identifier: MIT */
/*
 * storage/wsi_verify.c against field cases W1 (reduced levels flagged),
 * W2 (pixel size), W3 (no tile unwritten) and W4 (JPEG tables match the
 * tiles): the writer's own files pass, and files broken on purpose with
 * libtiff, one defect each, are refused with the defect named.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>

#include "common/img.h"
#include "storage/wsi.h"

static struct img *
pattern(int w, int h)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint8_t *p = img_u8(im, x, y);
            double s = sin(x * 0.05) * cos(y * 0.043) +
                       0.5 * sin((x + 2 * y) * 0.21);

            p[0] = (uint8_t)(190 + 45 * s);
            p[1] = (uint8_t)(120 + 70 * s);
            p[2] = (uint8_t)(200 + 30 * cos(x * 0.02 + y * 0.03));
        }
    return im;
}

static struct img *
halve(const struct img *a)
{
    struct img *b = img_new(a->w / 2, a->h / 2, 3, IMG_U8);
    int x, y, c;

    for (y = 0; y < b->h; y++)
        for (x = 0; x < b->w; x++)
            for (c = 0; c < 3; c++)
                img_u8(b, x, y)[c] = (uint8_t)((img_u8(a, 2 * x, 2 * y)[c] +
                    img_u8(a, 2 * x + 1, 2 * y)[c] +
                    img_u8(a, 2 * x, 2 * y + 1)[c] +
                    img_u8(a, 2 * x + 1, 2 * y + 1)[c] + 2) >> 2);
    return b;
}

static unsigned char *
encode(const struct img *im, int x, int y, int q, unsigned long *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;

    assert_int_equal(tjCompress2(tj, img_u8(im, x, y), 256, im->w * 3, 256,
                                 TJPF_RGB, &buf, len, TJSAMP_444, q, 0), 0);
    tjDestroy(tj);
    return buf;
}

/* Keeps or drops the DQT and DHT segments of a JPEG stream up to SOS;
 * `tables_only` keeps SOI, DQT, DHT and adds EOI (a JPEGTables blob). */
static size_t
filter_tables(const unsigned char *in, size_t len, unsigned char *out,
              int tables_only)
{
    size_t i = 2, o = 2;

    out[0] = 0xff;
    out[1] = 0xd8;
    while (i + 4 <= len && in[i + 1] != 0xda) {
        size_t seg = 2 + ((size_t)in[i + 2] << 8 | in[i + 3]);
        int table = in[i + 1] == 0xdb || in[i + 1] == 0xc4;

        if (table == tables_only) {
            memcpy(out + o, in + i, seg);
            o += seg;
        }
        i += seg;
    }
    if (tables_only) {
        out[o++] = 0xff;
        out[o++] = 0xd9;
        return o;
    }
    memcpy(out + o, in + i, len - i);
    return o + len - i;
}

struct broken {
    int unflagged;                  /* levels > 0 without SubfileType 1 */
    int skip_tile;                  /* level-0 tile left unwritten */
    int corrupt_tile;               /* level-0 tile of garbage bytes */
    int tables_q;                   /* JPEGTables from this quality */
    int abbreviate;                 /* tiles without their own tables */
    int no_mpp, no_res;
    int tiled_label, crlf_label;
    int generic;                    /* no Aperio description */
    int foreign;                    /* another program's Aperio text */
};

static void
set_common(TIFF *t, int w, int h, int tiled)
{
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    if (tiled) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 256);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 256);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)h);
    }
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
}

static void
write_level(TIFF *t, const struct img *im, int lvl, const struct broken *b)
{
    char desc[512];
    unsigned char *tab = malloc(4096), *buf, *abbr;
    unsigned long len;
    int tx, ty, i = 0;

    set_common(t, im->w, im->h, 1);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
    TIFFSetField(t, TIFFTAG_YCBCRSUBSAMPLING, 1, 1);
    if (lvl > 0 && !b->unflagged)
        TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    snprintf(desc, sizeof(desc), "%s\n%dx%d (256x256) JPEG/YCC Q=90"
             "|AppMag = 20%s", b->generic ? "Test slide" :
             b->foreign ? "Aperio Image Library v11.2.1 " :
             "Aperio Image Library slidescan", im->w, im->h,
             b->no_mpp ? "" : "|MPP = 0.25");
    TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, desc);
    if (!b->no_res) {
        TIFFSetField(t, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
        TIFFSetField(t, TIFFTAG_XRESOLUTION, 40000.0 / (1 << lvl));
        TIFFSetField(t, TIFFTAG_YRESOLUTION, 40000.0 / (1 << lvl));
    }
    if (b->tables_q) {
        unsigned char *q = encode(im, 0, 0, b->tables_q, &len);
        size_t n = filter_tables(q, len, tab, 1);

        TIFFSetField(t, TIFFTAG_JPEGTABLES, (uint32_t)n, tab);
        tjFree(q);
    }
    for (ty = 0; ty < im->h; ty += 256)
        for (tx = 0; tx < im->w; tx += 256, i++) {
            if (lvl == 0 && i == b->skip_tile)
                continue;
            buf = encode(im, tx, ty, 90, &len);
            abbr = malloc(len);
            if (b->abbreviate)
                len = filter_tables(buf, len, abbr, 0);
            else
                memcpy(abbr, buf, len);
            if (lvl == 0 && i == b->corrupt_tile)
                memset(abbr + len / 2, 0x5a, len / 2 - 2);
            assert_int_equal(TIFFWriteRawTile(t, (uint32_t)i, abbr,
                                              (tmsize_t)len), (tmsize_t)len);
            free(abbr);
            tjFree(buf);
        }
    assert_true(TIFFWriteDirectory(t));
    free(tab);
}

static void
write_label(TIFF *t, const struct broken *b)
{
    struct img *im = pattern(256, 256);
    int y;

    set_common(t, 256, 256, b->tiled_label);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, b->crlf_label
                 ? "Aperio Image Library slidescan\r\nlabel 256x256"
                 : "Aperio Image Library slidescan\nlabel 256x256");
    if (b->tiled_label)
        assert_true(TIFFWriteEncodedTile(t, 0, im->data,
                                         (tmsize_t)img_bytes(im)) > 0);
    else
        for (y = 0; y < 256; y++)
            assert_int_equal(TIFFWriteScanline(t, img_u8(im, 0, y),
                                               (uint32_t)y, 0), 1);
    assert_true(TIFFWriteDirectory(t));
    img_free(im);
}

static struct img *levels[3];

/* A 2048² three-level pyramid (2048, 1024, 512) written with libtiff
 * alone, with the defects b asks for. */
static const char *
build(const char *name, const struct broken *b)
{
    const char *path = tu_tmp(name);
    TIFF *t = TIFFOpen(path, "w");
    int k;

    if (levels[0] == NULL) {
        levels[0] = pattern(2048, 2048);
        levels[1] = halve(levels[0]);
        levels[2] = halve(levels[1]);
    }
    for (k = 0; k < 3; k++)
        write_level(t, levels[k], k, b);
    if (b->tiled_label || b->crlf_label)
        write_label(t, b);
    TIFFClose(t);
    return path;
}

static int
free_levels(void **state)
{
    int k;

    for (k = 0; k < 3; k++)
        img_free(levels[k]);
    return 0;
}

static struct broken
clean(void)
{
    struct broken b;

    memset(&b, 0, sizeof(b));
    b.skip_tile = b.corrupt_tile = -1;
    return b;
}

/* Verifies and checks that the report names `defect` (NULL: passes). */
static void
expect(const char *path, double mpp, const char *defect)
{
    char rep[16384];
    struct ss_err e;
    int rc = wsi_verify(path, mpp, rep, sizeof(rep), &e);

    if (defect == NULL) {
        if (rc != 0)
            fail_msg("%s should pass:\n%s", path, rep);
        return;
    }
    print_message("# %s\n", e.msg);
    if (rc != SS_EFORMAT || strstr(rep, defect) == NULL)
        fail_msg("%s: expected a defect \"%s\", rc %d:\n%s", path, defect,
                 rc, rep);
    assert_non_null(strstr(e.msg, path));
}

static int
os_levels(const char *path)
{
    openslide_t *os = openslide_open(path);
    int n;

    assert_non_null(os);
    n = openslide_get_level_count(os);
    openslide_close(os);
    return n;
}

static void
test_w1_writer_pyramid_has_three_levels(void **state)
{
    struct img *im = pattern(2048, 2048);
    struct wsi_writer *w;
    struct wsi_meta m;
    struct ss_err e;
    openslide_t *os;
    const char *p = tu_tmp("w1.svs");

    wsi_meta_default(&m);
    m.mpp = 0.25;
    assert_int_equal(wsi_writer_open(p, 2048, 2048, &m, &w, &e), 0);
    assert_int_equal(wsi_writer_rows(w, im->data, 2048, &e), 0);
    assert_int_equal(wsi_writer_finish(w, &e), 0);
    os = openslide_open(p);
    assert_int_equal(openslide_get_level_count(os), 3);
    assert_float_equal(openslide_get_level_downsample(os, 1), 2.0, 1e-12);
    assert_float_equal(openslide_get_level_downsample(os, 2), 4.0, 1e-12);
    openslide_close(os);
    expect(p, 0.25, NULL);
    img_free(im);
}

/* OpenSlide 3.4.1's aperio reader takes every tiled directory for a
 * level, flagged or not; its generic-tiff reader (like other TIFF
 * readers) sees an unflagged pyramid as one level.  The validator refuses
 * the file either way. */
static void
test_w1_unflagged_levels_are_refused(void **state)
{
    struct broken b = clean();

    b.generic = 1;
    assert_int_equal(os_levels(build("w1-generic.tif", &b)), 3);
    b.unflagged = 1;
    assert_int_equal(os_levels(build("w1-generic-unflagged.tif", &b)), 1);
    b.generic = 0;
    expect(build("w1-good.svs", &(struct broken){ .skip_tile = -1,
                                                  .corrupt_tile = -1 }),
           0.25, NULL);
    expect(build("w1-unflagged.svs", &b), 0.25,
           "not flagged as a reduced-resolution image");
}

static void
test_w1_label_must_not_look_like_a_level(void **state)
{
    struct broken b = clean();

    b.crlf_label = 1;
    expect(build("w1-crlf.svs", &b), 0.25, "uses \\r\\n");
    b = clean();
    b.tiled_label = 1;
    expect(build("w1-tiled-label.svs", &b), 0.25,
           "label image is tiled, so readers take it for a pyramid level");
}

static void
test_w2_missing_or_wrong_pixel_size_is_refused(void **state)
{
    struct broken b = clean();

    expect(build("w2-good.svs", &b), 0.25, NULL);
    expect(tu_tmp("w2-good.svs"), 0.5, "pixel size is 0.25 µm/px, "
           "expected 0.5");
    b.no_mpp = 1;
    expect(build("w2-no-mpp.svs", &b), 0, "no usable pixel size");
    b = clean();
    b.no_res = 1;
    expect(build("w2-no-res.svs", &b), 0.25, "level 0: no resolution "
           "tags");
}

/* An Aperio scanner's file states its pixel size only in the description
 * (OpenSlide reads it there): it passes, and the report says it is not a
 * slidescan WSI.  A wrong MPP there is still a defect. */
static void
test_foreign_aperio_pixel_size_from_description(void **state)
{
    struct broken b = clean();
    char rep[16384];
    struct ss_err e;

    b.foreign = 1;
    b.no_res = 1;
    err_clear(&e);
    assert_int_equal(wsi_verify(build("foreign.svs", &b), 0.25, rep,
                                sizeof(rep), &e), 0);
    print_message("%s", rep);
    assert_non_null(strstr(rep, "ok   pixel size: 0.25 µm/px from the "
                            "description's MPP; not a slidescan WSI "
                            "(ImageDescription from \"Aperio Image Library "
                            "v11.2.1\"), so resolution tags are not "
                            "required\n"));
    expect(tu_tmp("foreign.svs"), 0.5, "pixel size is 0.25 µm/px, "
           "expected 0.5");
    b.no_mpp = 1;
    expect(build("foreign-no-mpp.svs", &b), 0, "no usable pixel size");
}

static void
test_w3_unwritten_or_corrupt_tile_is_refused(void **state)
{
    struct broken b = clean();

    b.skip_tile = 63;               /* the bottom-right corner */
    expect(build("w3-hole.svs", &b), 0.25, "level 0: 1 of 64 tiles have "
           "no bytes (never written), e.g. (col,row) (7,7)");
    b = clean();
    b.corrupt_tile = 9;
    expect(build("w3-corrupt.svs", &b), 0.25, "level 0: 1 of 64 tiles do "
           "not decode");
}

/* Max |libtiff decode − direct TurboJPEG decode of the raw tile| over
 * every tile of every level of our file. */
static int
libtiff_vs_direct(const char *path)
{
    TIFF *t = TIFFOpen(path, "r");
    tjhandle tj = tjInitDecompress();
    uint8_t *a = malloc(256 * 256 * 3), *b = malloc(256 * 256 * 3);
    uint8_t *raw = malloc(1 << 20);
    int worst = 0, d;
    uint32_t i;
    size_t k;

    do {
        if (!TIFFIsTiled(t))
            continue;
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        for (i = 0; i < TIFFNumberOfTiles(t); i++) {
            tmsize_t n = TIFFReadRawTile(t, i, raw, 1 << 20);

            assert_true(n > 0);
            assert_int_equal(tjDecompress2(tj, raw, (unsigned long)n, b, 256,
                                           0, 256, TJPF_RGB, 0), 0);
            assert_int_equal(TIFFReadEncodedTile(t, i, a, 256 * 256 * 3),
                             256 * 256 * 3);
            for (k = 0; k < 256 * 256 * 3; k++) {
                d = abs(a[k] - b[k]);
                worst = d > worst ? d : worst;
            }
        }
    } while (TIFFReadDirectory(t));
    TIFFClose(t);
    tjDestroy(tj);
    free(a);
    free(b);
    free(raw);
    return worst;
}

static void
test_w4_writer_tiles_decode_identically(void **state)
{
    const char *p = tu_tmp("w1.svs");   /* from the W1 test */
    openslide_t *os;
    uint32_t *argb = malloc(256 * 256 * 4);
    TIFF *t;
    uint8_t *via_tiff = malloc(256 * 256 * 3);
    int i, c, worst = 0;

    assert_int_equal(libtiff_vs_direct(p), 0);
    /* OpenSlide's pixels of a tile equal libtiff's, and so the direct
     * decode. */
    t = TIFFOpen(p, "r");
    TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    assert_int_equal(TIFFReadEncodedTile(t, 9, via_tiff, 256 * 256 * 3),
                     256 * 256 * 3);
    TIFFClose(t);
    os = openslide_open(p);
    openslide_read_region(os, argb, 256, 256, 0, 256, 256);
    for (i = 0; i < 256 * 256; i++)
        for (c = 0; c < 3; c++) {
            int d = abs((int)((argb[i] >> (16 - 8 * c)) & 255) -
                        via_tiff[3 * i + c]);

            worst = d > worst ? d : worst;
        }
    assert_int_equal(worst, 0);
    openslide_close(os);
    free(argb);
    free(via_tiff);
}

static void
test_w4_foreign_tables_are_refused(void **state)
{
    struct broken b = clean();
    TIFF *t;
    uint8_t *via_tiff = malloc(256 * 256 * 3);
    double psnr_wrong;
    struct img tile = { 256, 256, 3, IMG_U8, via_tiff };
    struct img *want;

    /* Positive control: abbreviated Q=90 tiles with Q=90 tables. */
    b.abbreviate = 1;
    b.tables_q = 90;
    expect(build("w4-q90.svs", &b), 0.25, NULL);

    /* Q=75 tables with Q=90 abbreviated tiles: no decoder error, wrong
     * pixels. */
    b.tables_q = 75;
    build("w4-q75.svs", &b);
    want = img_crop(levels[0], 0, 0, 256, 256);
    t = TIFFOpen(tu_tmp("w4-q75.svs"), "r");
    TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    assert_int_equal(TIFFReadEncodedTile(t, 0, via_tiff, 256 * 256 * 3),
                     256 * 256 * 3);
    TIFFClose(t);
    psnr_wrong = img_psnr(want, &tile, 0, 0, 256, 256);
    print_message("# Q=75 tables on Q=90 tiles decode at %.1f dB\n",
                  psnr_wrong);
    assert_true(psnr_wrong < 30);
    expect(tu_tmp("w4-q75.svs"), 0.25, "JPEGTables hold Q=75 tables but "
           "the tiles were written at Q=90");

    /* Complete tiles beside foreign shared tables. */
    b.abbreviate = 0;
    expect(build("w4-shadow.svs", &b), 0.25, "JPEGTables quantisation "
           "table 0 differs from the one inside the tiles");
    free(via_tiff);
    img_free(want);
}

static void
test_not_a_slide(void **state)
{
    const char *p = tu_tmp("text.svs");
    FILE *f = fopen(p, "w");
    char rep[1024];
    struct ss_err e;

    fputs("not a tiff\n", f);
    fclose(f);
    assert_int_equal(wsi_verify(p, 0, rep, sizeof(rep), &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "text.svs"));
    assert_non_null(strstr(rep, "not a readable TIFF"));
    assert_int_equal(wsi_verify(tu_tmp("none.svs"), 0, rep, sizeof(rep),
                                &e), -2);
    assert_non_null(strstr(e.msg, "none.svs"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_w1_writer_pyramid_has_three_levels),
        cmocka_unit_test(test_w1_unflagged_levels_are_refused),
        cmocka_unit_test(test_w1_label_must_not_look_like_a_level),
        cmocka_unit_test(test_w2_missing_or_wrong_pixel_size_is_refused),
        cmocka_unit_test(test_foreign_aperio_pixel_size_from_description),
        cmocka_unit_test(test_w3_unwritten_or_corrupt_tile_is_refused),
        cmocka_unit_test(test_w4_writer_tiles_decode_identically),
        cmocka_unit_test(test_w4_foreign_tables_are_refused),
        cmocka_unit_test(test_not_a_slide),
    };

    return cmocka_run_group_tests_name("wsi_verify", tests, NULL,
                                       free_levels);
}
