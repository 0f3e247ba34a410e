/* SPDX-License-Identifier: MIT */
/*
 * The slide reader's libtiff back end on TIFFs written here, one per
 * layout it must handle: JFIF tiles under Photometric=RGB (the OME-TIFF
 * quirk), marker-less RGB streams with shared JPEGTables (Aperio style),
 * libtiff's own YCbCr JPEG, strips, deflate, 16-bit, palette, alpha,
 * grey, SubIFD and reduced-directory pyramids, corrupt and foreign tiles,
 * and every kind of resolution tag.  Regions are checked against the
 * pixels written, at random places, with a cache too small to hold a
 * level and from several threads.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>

#include "common/img.h"
#include "common/rng.h"
#include "storage/slide.h"
#include "storage/slide_internal.h"

/* ---- images and TIFF writers -------------------------------------------- */

/* Smooth colour ramps with a few sharp-edged blocks. */
static struct img *
pattern(int w, int h)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint8_t *p = img_u8(im, x, y);
            int block = ((x / 40) + (y / 40)) % 5 == 0;

            p[0] = (uint8_t)(block ? 200 : x * 255 / w);
            p[1] = (uint8_t)(block ? 40 : y * 255 / h);
            p[2] = (uint8_t)(128 + 100 * sin((x + 2 * y) / 30.0));
        }
    return im;
}

static TIFF *
tiff_new(const char *path, const struct img *im, uint16_t spp,
         uint16_t bps, uint16_t photometric, uint16_t compression)
{
    TIFF *t = TIFFOpen(path, "w");

    assert_non_null(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)im->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)im->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, photometric);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
    return t;
}

/* One sample of pixel (x, y) of im (replicated at the edges) in the
 * layout spp / bps: spp 1 is grey, spp 4 adds alpha = (x % 2) * 255. */
static void
put_px(uint8_t *dst, const struct img *im, int x, int y, uint16_t spp,
       uint16_t bps)
{
    const uint8_t *p = img_u8(im, x < im->w ? x : im->w - 1,
                              y < im->h ? y : im->h - 1);
    uint16_t v[4];
    int k;

    v[0] = spp == 1 ? (uint16_t)((p[0] + p[1] + p[2]) / 3) : p[0];
    v[1] = p[1];
    v[2] = p[2];
    v[3] = (uint16_t)((x % 2) * 255);
    for (k = 0; k < spp; k++) {
        if (bps == 16) {
            uint16_t w = (uint16_t)(v[k] * 257);
            memcpy(dst + 2 * k, &w, 2);
        } else {
            dst[k] = (uint8_t)v[k];
        }
    }
}

/* Writes im through libtiff's encoder, in tiles (tw > 0) or strips. */
static void
write_encoded(TIFF *t, const struct img *im, uint32_t tw, uint32_t th,
              uint16_t spp, uint16_t bps)
{
    size_t px = (size_t)spp * bps / 8;
    uint32_t bx, by, x, y, bw = tw > 0 ? tw : (uint32_t)im->w;
    uint32_t bh = tw > 0 ? th : th, nbx = ((uint32_t)im->w + bw - 1) / bw;
    uint32_t nby = ((uint32_t)im->h + bh - 1) / bh;
    uint8_t *buf = calloc((size_t)bw * bh, px);

    if (tw > 0) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, tw);
        TIFFSetField(t, TIFFTAG_TILELENGTH, th);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, th);
    }
    for (by = 0; by < nby; by++)
        for (bx = 0; bx < nbx; bx++) {
            uint32_t rows = tw > 0 || (by + 1) * bh <= (uint32_t)im->h
                            ? bh : (uint32_t)im->h - by * bh;

            for (y = 0; y < rows; y++)
                for (x = 0; x < bw; x++)
                    put_px(buf + ((size_t)y * bw + x) * px, im,
                           (int)(bx * bw + x), (int)(by * bh + y), spp,
                           bps);
            if (tw > 0)
                assert_true(TIFFWriteEncodedTile(t, by * nbx + bx, buf,
                                                 (tmsize_t)(bw * bh * px))
                            > 0);
            else
                assert_true(TIFFWriteEncodedStrip(t, by, buf,
                                                  (tmsize_t)(bw * rows *
                                                             px)) > 0);
        }
    free(buf);
}

/* Tiles as complete JFIF streams from TurboJPEG (YCbCr 4:2:0), written
 * raw under whatever Photometric the caller set: the OME-TIFF layout. */
static void
write_jfif_tiles(TIFF *t, const struct img *im, uint32_t ts)
{
    uint32_t nbx = ((uint32_t)im->w + ts - 1) / ts;
    uint32_t nby = ((uint32_t)im->h + ts - 1) / ts, bx, by;
    struct ss_err e;

    TIFFSetField(t, TIFFTAG_TILEWIDTH, ts);
    TIFFSetField(t, TIFFTAG_TILELENGTH, ts);
    for (by = 0; by < nby; by++)
        for (bx = 0; bx < nbx; bx++) {
            struct img *tile = img_crop(im, (int)(bx * ts), (int)(by * ts),
                                        (int)ts, (int)ts);
            unsigned char *jpg = NULL;
            size_t len = 0;

            assert_int_equal(img_jpeg_encode(tile, 95, 420, &jpg, &len, &e),
                             0);
            assert_true(TIFFWriteRawTile(t, by * nbx + bx, jpg,
                                         (tmsize_t)len) > 0);
            tjFree(jpg);
            img_free(tile);
        }
}

static struct slide *
open_tiff(const char *path)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err e;
    int rc;

    slide_opts_default(&o);
    o.need_mpp = false;
    err_clear(&e);
    rc = slide_open(path, &o, &s, &e);
    if (rc != 0)
        print_message("# %s\n", e.msg);
    assert_int_equal(rc, 0);
    return s;
}

static struct img *
read_all(struct slide *s, int level)
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

    for (i = 0; i < n; i++) {
        int d = abs(((uint8_t *)a->data)[i] - ((uint8_t *)b->data)[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* What libtiff's own RGBA decoder makes of level 0. */
static struct img *
libtiff_rgba(const char *path)
{
    TIFF *t = TIFFOpen(path, "r");
    uint32_t w = 0, h = 0, *r;
    struct img *im;
    size_t i;

    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    r = malloc((size_t)w * h * 4);
    im = img_new((int)w, (int)h, 3, IMG_U8);
    assert_int_equal(TIFFReadRGBAImageOriented(t, w, h, r,
                                               ORIENTATION_TOPLEFT, 0), 1);
    for (i = 0; i < (size_t)w * h; i++) {
        uint8_t *p = (uint8_t *)im->data + 3 * i;
        p[0] = TIFFGetR(r[i]);
        p[1] = TIFFGetG(r[i]);
        p[2] = TIFFGetB(r[i]);
    }
    free(r);
    TIFFClose(t);
    return im;
}

/* ---- JPEG colour --------------------------------------------------------- */

/* JFIF (YCbCr) tiles under Photometric=RGB decode by what the stream
 * says; the OME-XML pixel size in nm is converted. */
static void
test_jfif_tiles_under_an_rgb_tag(void **state)
{
    const char *path = tu_tmp("ome.tif");
    struct img *src = pattern(600, 400), *got;
    struct slide *s;
    TIFF *t = tiff_new(path, src, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_JPEG);
    double psnr;

    TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION,
                 "<?xml version=\"1.0\"?><OME xmlns=\"x\"><Image ID=\"I\">"
                 "<Pixels ID=\"P\" PhysicalSizeX=\"250\" "
                 "PhysicalSizeXUnit=\"nm\" SizeX=\"600\"/></Image></OME>");
    write_jfif_tiles(t, src, 256);
    TIFFClose(t);
    s = open_tiff(path);
    assert_string_equal(slide_format(s), "ome-tiff");
    assert_true(fabs(slide_mpp(s) - 0.25) < 1e-12);
    assert_int_equal(slide_mpp_source(s), SLIDE_MPP_OME);
    got = read_all(s, 0);
    psnr = img_psnr(src, got, 0, 0, 600, 400);
    print_message("# JFIF tiles under Photometric=RGB: PSNR %.1f dB\n", psnr);
    assert_true(psnr > 30);
    img_free(got);
    img_free(src);
    slide_close(s);
}

/* Removes APP14 from a tile and renames its components 0, 1, 2: a JPEG
 * stream that says nothing about its colour space, as Aperio writes. */
static size_t
make_silent(uint8_t *b, size_t n)
{
    size_t p = 2;

    while (p + 4 <= n && b[p] == 0xff) {
        size_t len = (size_t)(b[p + 2] << 8 | b[p + 3]);

        if (b[p + 1] == 0xda) {         /* the scan names components too */
            b[p + 5] = 0;
            b[p + 7] = 1;
            b[p + 9] = 2;
            break;
        }
        if (b[p + 1] == 0xee) {
            memmove(b + p, b + p + 2 + len, n - p - 2 - len);
            n -= 2 + len;
            continue;
        }
        if (b[p + 1] == 0xc0 && b[p + 9] == 3) {
            b[p + 10] = 0;
            b[p + 13] = 1;
            b[p + 16] = 2;
        }
        p += 2 + len;
    }
    return n;
}

/* Rewrites `from` (libtiff JPEG, Photometric=RGB) into `to` with silent
 * tile streams and the same JPEGTables. */
static void
copy_silent(const char *from, const char *to, const struct img *src)
{
    TIFF *a = TIFFOpen(from, "r");
    TIFF *b = tiff_new(to, src, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_JPEG);
    uint32_t ntab = 0, i, n;
    void *tab = NULL;
    struct slide__jpeg_colour c;

    assert_int_equal(TIFFGetField(a, TIFFTAG_JPEGTABLES, &ntab, &tab), 1);
    TIFFSetField(b, TIFFTAG_JPEGTABLES, ntab, tab);
    TIFFSetField(b, TIFFTAG_TILEWIDTH, 128);
    TIFFSetField(b, TIFFTAG_TILELENGTH, 128);
    n = TIFFNumberOfTiles(a);
    for (i = 0; i < n; i++) {
        uint64_t len = TIFFGetStrileByteCount(a, i);
        uint8_t *buf = malloc(len);

        assert_int_equal(TIFFReadRawTile(a, i, buf, (tmsize_t)len),
                         (tmsize_t)len);
        slide__jpeg_colour(buf, len, &c);
        assert_true(c.adobe_transform == 0 || c.rgb_ids);
        len = make_silent(buf, len);
        slide__jpeg_colour(buf, len, &c);
        assert_int_equal(c.ncomp, 3);
        assert_false(c.jfif || c.adobe_transform >= 0 || c.rgb_ids);
        assert_true(TIFFWriteRawTile(b, i, buf, (tmsize_t)len) > 0);
        free(buf);
    }
    TIFFClose(a);
    TIFFClose(b);
}

/* RGB held in marker-less streams with shared JPEGTables decodes as RGB
 * (the tag decides when the stream is silent), as in Aperio SVS. */
static void
test_silent_rgb_streams_follow_the_tag(void **state)
{
    const char *path = tu_tmp("rgbjpeg.tif"), *silent = tu_tmp("silent.tif");
    struct img *src = pattern(300, 200), *got, *ref;
    struct slide *s;
    TIFF *t = tiff_new(path, src, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_JPEG);
    double psnr;

    TIFFSetField(t, TIFFTAG_JPEGQUALITY, 95);
    write_encoded(t, src, 128, 128, 3, 8);
    TIFFClose(t);
    copy_silent(path, silent, src);

    s = open_tiff(path);                /* with libtiff's Adobe markers */
    got = read_all(s, 0);
    ref = libtiff_rgba(path);
    assert_int_equal(max_diff(got, ref), 0);
    img_free(got);
    slide_close(s);

    s = open_tiff(silent);
    got = read_all(s, 0);
    psnr = img_psnr(src, got, 0, 0, 300, 200);
    print_message("# silent RGB streams: PSNR %.1f dB, max diff to the "
                  "marked ones %d\n", psnr, max_diff(got, ref));
    assert_int_equal(max_diff(got, ref), 0);
    assert_true(psnr > 30);
    img_free(ref);
    img_free(got);
    img_free(src);
    slide_close(s);
}

/* libtiff's usual JPEG: Photometric=YCbCr, 2×2 subsampling, tables
 * shared, tiled and stripped (the last strip short). */
static void
test_libtiff_ycbcr_jpeg_tiles_and_strips(void **state)
{
    const char *path[2] = { tu_tmp("ycc-tiles.tif"),
                            tu_tmp("ycc-strips.tif") };
    struct img *src = pattern(333, 250), *got, *ref;
    int i;

    for (i = 0; i < 2; i++) {
        TIFF *t = tiff_new(path[i], src, 3, 8, PHOTOMETRIC_YCBCR,
                           COMPRESSION_JPEG);
        struct slide *s;
        double p1, p2;

        TIFFSetField(t, TIFFTAG_YCBCRSUBSAMPLING, 2, 2);
        TIFFSetField(t, TIFFTAG_JPEGQUALITY, 95);
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        write_encoded(t, src, i == 0 ? 128 : 0, i == 0 ? 128 : 64, 3, 8);
        TIFFClose(t);
        s = open_tiff(path[i]);
        got = read_all(s, 0);
        ref = libtiff_rgba(path[i]);
        p1 = img_psnr(src, got, 0, 0, src->w, src->h);
        p2 = img_psnr(ref, got, 0, 0, src->w, src->h);
        print_message("# libtiff YCbCr JPEG %s: PSNR %.1f dB to the source, "
                      "%.1f dB to libtiff's decode\n",
                      i == 0 ? "tiles" : "strips", p1, p2);
        assert_true(p1 > 30);
        assert_true(p2 > 40);
        img_free(got);
        img_free(ref);
        slide_close(s);
    }
    img_free(src);
}

/* ---- broken tiles ------------------------------------------------------- */

static void
test_corrupt_tile_names_file_tile_and_cause(void **state)
{
    const char *path = tu_tmp("corrupt.ome.tif");
    struct img *src = pattern(512, 512), *ok = NULL, *bad = NULL;
    TIFF *t = tiff_new(path, src, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_JPEG);
    uint32_t i;
    struct slide *s;
    struct ss_err e;

    TIFFSetField(t, TIFFTAG_TILEWIDTH, 256);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 256);
    for (i = 0; i < 4; i++) {
        struct img *tile = img_crop(src, (int)(i % 2) * 256,
                                    (int)(i / 2) * 256, 256, 256);
        unsigned char *jpg = NULL;
        size_t len = 0, p = 2;

        assert_int_equal(img_jpeg_encode(tile, 90, 420, &jpg, &len, &e), 0);
        /* tile 3: a frame header one byte longer than it says */
        while (i == 3 && jpg[p + 1] != 0xc0)
            p += 2 + (size_t)(jpg[p + 2] << 8 | jpg[p + 3]);
        if (i == 3)
            jpg[p + 3]++;
        /* tile 2: not a JPEG stream at all */
        if (i == 2)
            memset(jpg, 0x55, 16);
        assert_true(TIFFWriteRawTile(t, i, jpg, (tmsize_t)len) > 0);
        tjFree(jpg);
        img_free(tile);
    }
    TIFFClose(t);
    s = open_tiff(path);
    assert_int_equal(slide_read_img(s, 0, 10, 10, 300, 200, &ok, &e), 0);
    err_clear(&e);
    assert_int_equal(slide_read_img(s, 0, 300, 300, 100, 100, &bad, &e),
                     SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "tile 3 of level 0: corrupt JPEG: "
                           "Bogus marker length"));
    err_clear(&e);
    assert_int_equal(slide_read_img(s, 0, 0, 300, 100, 100, &bad, &e),
                     SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "tile 2 of level 0: corrupt JPEG: does "
                           "not start with a JPEG SOI marker"));
    assert_null(bad);
    img_free(ok);
    img_free(src);
    slide_close(s);
}

/* A 40000 × 40000 slide (4.8 GB as RGB) whose only decodable tile is
 * tile 0: a region inside it reads, so nothing else was decoded; one
 * that touches tile 1 fails naming it. */
static void
test_big_tiff_is_read_on_demand(void **state)
{
    const char *path = tu_tmp("big.ome.tif");
    struct img *src = pattern(512, 512), *got = NULL, *want;
    static const uint8_t junk[4] = { 0xff, 0xd8, 0xff, 0xd9 };
    struct img big = { 40000, 40000, 3, IMG_U8, NULL };
    TIFF *t = tiff_new(path, &big, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_JPEG);
    unsigned char *jpg = NULL;
    size_t len = 0;
    uint32_t i, n;
    struct slide *s;
    struct ss_err e;

    TIFFSetField(t, TIFFTAG_TILEWIDTH, 512);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 512);
    n = TIFFNumberOfTiles(t);
    assert_int_equal(img_jpeg_encode(src, 90, 420, &jpg, &len, &e), 0);
    assert_true(TIFFWriteRawTile(t, 0, jpg, (tmsize_t)len) > 0);
    for (i = 1; i < n; i++)
        assert_true(TIFFWriteRawTile(t, i, (void *)junk, 4) > 0);
    TIFFClose(t);
    tjFree(jpg);
    s = open_tiff(path);
    assert_int_equal(slide_read_img(s, 0, 100, 100, 400, 400, &got, &e), 0);
    want = img_crop(src, 100, 100, 400, 400);
    assert_true(img_psnr(got, want, 0, 0, 400, 400) > 30);
    img_free(want);
    img_free(got);
    err_clear(&e);
    assert_int_equal(slide_read_img(s, 0, 400, 0, 200, 10, &got, &e),
                     SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "tile 1 of level 0: corrupt JPEG"));
    img_free(src);
    slide_close(s);
}

/* ---- other codecs and layouts -------------------------------------------- */

/* The pixels written, as the reader must return them for a layout: RGB,
 * grey replicated, or alpha composited over bg. */
static struct img *
expected(const struct img *src, uint16_t spp, const uint8_t bg[3])
{
    struct img *im = img_dup(src);
    int x, y, c;

    for (y = 0; y < im->h; y++)
        for (x = 0; x < im->w; x++) {
            uint8_t *p = img_u8(im, x, y), v[4];

            put_px(v, src, x, y, spp, 8);
            for (c = 0; c < 3; c++)
                p[c] = spp == 1 ? v[0] : spp == 4 && x % 2 == 0 ? bg[c]
                                                                : v[c];
        }
    return im;
}

static void
check_layout(const char *name, uint16_t spp, uint16_t bps,
             uint16_t photometric, uint16_t compression, uint32_t tw,
             uint32_t th)
{
    const char *path = tu_tmp(name);
    const uint8_t bg[3] = { 10, 20, 30 };
    struct img *src = pattern(201, 133), *want, *got;
    TIFF *t = tiff_new(path, src, spp, bps, photometric, compression);
    struct slide *s;

    if (spp == 4) {
        uint16_t extra = EXTRASAMPLE_UNASSALPHA;
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
    }
    write_encoded(t, src, tw, th, spp, bps);
    TIFFClose(t);
    s = open_tiff(path);
    slide_set_background(s, bg);
    got = read_all(s, 0);
    want = expected(src, spp, bg);
    print_message("# %s: max diff %d\n", name, max_diff(got, want));
    assert_int_equal(max_diff(got, want), 0);
    img_free(want);
    img_free(got);
    img_free(src);
    slide_close(s);
}

static void
test_lossless_layouts_read_exactly(void **state)
{
    /* 8-bit RGB and grey through TIFFReadEncoded*, the rest through
     * TIFFRGBAImage; 201 × 133 leaves partial tiles and a short strip. */
    check_layout("deflate-strips.tif", 3, 8, PHOTOMETRIC_RGB,
                 COMPRESSION_ADOBE_DEFLATE, 0, 7);
    check_layout("lzw-tiles.tif", 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW,
                 64, 32);
    check_layout("grey-tiles.tif", 1, 8, PHOTOMETRIC_MINISBLACK,
                 COMPRESSION_PACKBITS, 64, 64);
    check_layout("rgb16-tiles.tif", 3, 16, PHOTOMETRIC_RGB,
                 COMPRESSION_NONE, 128, 128);
    check_layout("rgb16-strips.tif", 3, 16, PHOTOMETRIC_RGB,
                 COMPRESSION_NONE, 0, 50);
    check_layout("alpha-tiles.tif", 4, 8, PHOTOMETRIC_RGB,
                 COMPRESSION_ADOBE_DEFLATE, 256, 256);
}

/* Transparent pixels take the background set last, also after they
 * were read (and cached) over another one; the same for PNG. */
static void
test_background_can_change_after_reads(void **state)
{
    const char *tif = tu_tmp("alpha-bg.tif"), *png = tu_tmp("alpha-bg.png");
    const uint8_t grey[3] = { 100, 100, 100 }, red[3] = { 250, 0, 0 };
    const uint8_t white[3] = { 255, 255, 255 };
    struct img *src = pattern(40, 30), *rgba = img_new(40, 30, 4, IMG_U8);
    const char *paths[2] = { tif, png };
    struct ss_err e;
    TIFF *t = tiff_new(tif, src, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE);
    uint16_t extra = EXTRASAMPLE_UNASSALPHA;
    int i, x, y;

    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
    write_encoded(t, src, 16, 16, 4, 8);
    TIFFClose(t);
    for (y = 0; y < 30; y++)
        for (x = 0; x < 40; x++)
            put_px((uint8_t *)rgba->data + (y * 40 + x) * 4, src, x, y, 4, 8);
    assert_int_equal(img_png_write(rgba, png, &e), 0);
    for (i = 0; i < 2; i++) {
        struct slide *s = open_tiff(paths[i]);
        struct img *a = read_all(s, 0), *b;

        assert_memory_equal(img_u8(a, 0, 0), white, 3);
        assert_memory_equal(img_u8(a, 1, 0), img_u8(src, 1, 0), 3);
        slide_set_background(s, grey);
        b = read_all(s, 0);
        assert_memory_equal(img_u8(b, 0, 0), grey, 3);
        assert_memory_equal(img_u8(b, 1, 0), img_u8(src, 1, 0), 3);
        img_free(b);
        slide_set_background(s, red);
        b = read_all(s, 0);
        assert_memory_equal(img_u8(b, 2, 5), red, 3);
        img_free(b);
        img_free(a);
        slide_close(s);
    }
    img_free(rgba);
    img_free(src);
}

static void
test_palette_image(void **state)
{
    const char *path = tu_tmp("palette.tif");
    struct img *src = img_new(70, 50, 3, IMG_U8), *got;
    uint16_t r[256], g[256], b[256];
    uint8_t row[70];
    struct slide *s;
    TIFF *t;
    int x, y, i;

    for (i = 0; i < 256; i++) {
        r[i] = (uint16_t)(i * 257);
        g[i] = (uint16_t)((255 - i) * 257);
        b[i] = (uint16_t)((i * 7 % 256) * 257);
    }
    t = tiff_new(path, src, 1, 8, PHOTOMETRIC_PALETTE, COMPRESSION_LZW);
    TIFFSetField(t, TIFFTAG_COLORMAP, r, g, b);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 50);
    for (y = 0; y < 50; y++) {
        for (x = 0; x < 70; x++) {
            uint8_t *p = img_u8(src, x, y);
            row[x] = (uint8_t)(x + y);
            p[0] = row[x];
            p[1] = (uint8_t)(255 - row[x]);
            p[2] = (uint8_t)(row[x] * 7 % 256);
        }
        assert_int_equal(TIFFWriteScanline(t, row, (uint32_t)y, 0), 1);
    }
    TIFFClose(t);
    s = open_tiff(path);
    got = read_all(s, 0);
    assert_int_equal(max_diff(got, src), 0);
    img_free(got);
    img_free(src);
    slide_close(s);
}

/* ---- pyramids ------------------------------------------------------------ */

/* Level k of a pyramid: the source reduced by 2^k, by taking every
 * 2^k-th pixel (exact, so reads can be compared byte for byte). */
static struct img *
reduce(const struct img *src, int k)
{
    int f = 1 << k, w = (src->w + f - 1) / f, h = (src->h + f - 1) / f;
    struct img *im = img_new(w, h, 3, IMG_U8);
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            memcpy(img_u8(im, x, y), img_u8(src, x * f, y * f), 3);
    return im;
}

static void
write_level(TIFF *t, const struct img *im, uint32_t subfile)
{
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)im->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)im->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(t, TIFFTAG_SUBFILETYPE, subfile);
    write_encoded(t, im, 64, 64, 3, 8);
}

static void
check_pyramid(const char *path, const struct img *src, int nlevels)
{
    struct slide *s = open_tiff(path);
    struct img *got = NULL, *want;
    struct ss_err e;
    int l;

    assert_int_equal(slide_level_count(s), nlevels);
    for (l = 0; l < nlevels; l++) {
        int64_t w, h;

        want = reduce(src, l);
        slide_level_size(s, l, &w, &h);
        assert_int_equal(w, want->w);
        assert_int_equal(h, want->h);
        assert_true(fabs(slide_level_downsample(s, l) - (1 << l)) <
                    0.01 * (1 << l));
        img_free(want);
    }
    /* (400, 200) in level-0 pixels is (100, 50) at level 2. */
    want = reduce(src, 2);
    assert_int_equal(slide_read_img(s, 2, 400, 200, 40, 30, &got, &e), 0);
    for (l = 0; l < 30; l++)
        assert_memory_equal(img_u8(got, 0, l), img_u8(want, 100, 50 + l),
                            40 * 3);
    assert_int_equal(slide_best_level(s, 3.9), 1);
    assert_int_equal(slide_best_level(s, 4.0), 2);
    img_free(got);
    img_free(want);
    slide_close(s);
}

/* OME-TIFF pyramids: reduced levels as SubIFDs of level 0. */
static void
test_subifd_pyramid(void **state)
{
    const char *path = tu_tmp("subifd.tif");
    struct img *src = pattern(1000, 800), *l1 = reduce(src, 1);
    struct img *l2 = reduce(src, 2);
    uint64_t offs[2] = { 0, 0 };
    TIFF *t = TIFFOpen(path, "w");

    TIFFSetField(t, TIFFTAG_SUBIFD, 2, offs);
    write_level(t, src, 0);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, l1, FILETYPE_REDUCEDIMAGE);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, l2, FILETYPE_REDUCEDIMAGE);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    TIFFClose(t);
    check_pyramid(path, src, 3);
    img_free(l1);
    img_free(l2);
    img_free(src);
}

/* Reduced directories in the main chain; a label (not reduced) and a
 * reduced image of another shape are not levels. */
static void
test_reduced_directory_pyramid(void **state)
{
    const char *path = tu_tmp("reduced.tif");
    struct img *src = pattern(1000, 800), *l1 = reduce(src, 1);
    struct img *l2 = reduce(src, 2), *label = pattern(120, 60);
    struct img *odd = pattern(200, 30);
    TIFF *t = TIFFOpen(path, "w");

    write_level(t, src, 0);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, l1, FILETYPE_REDUCEDIMAGE);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, label, 0);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, odd, FILETYPE_REDUCEDIMAGE);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    write_level(t, l2, FILETYPE_REDUCEDIMAGE);
    assert_int_equal(TIFFWriteDirectory(t), 1);
    TIFFClose(t);
    check_pyramid(path, src, 3);
    img_free(l1);
    img_free(l2);
    img_free(label);
    img_free(odd);
    img_free(src);
}

/* ---- regions ------------------------------------------------------------- */

struct reader_job {
    struct slide *s;
    const struct img *src;
    uint64_t seed;
    int reads, bad;
};

/* Random rectangles, partly outside the image, against the source with
 * background beyond its edges. */
static void *
random_reads(void *arg)
{
    struct reader_job *j = arg;
    struct rng r;
    int i;

    rng_init(&r, j->seed);
    for (i = 0; i < j->reads; i++) {
        int w = 1 + (int)(rng_uniform(&r) * 300);
        int h = 1 + (int)(rng_uniform(&r) * 300);
        int x0 = (int)(rng_uniform(&r) * (j->src->w + 200)) - 150;
        int y0 = (int)(rng_uniform(&r) * (j->src->h + 200)) - 150;
        struct img *got = NULL, *want = img_crop(j->src, x0, y0, w, h);
        struct ss_err e;
        int x, y;

        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++)
                if (x0 + x < 0 || y0 + y < 0 || x0 + x >= j->src->w ||
                    y0 + y >= j->src->h)
                    memset(img_u8(want, x, y), 255, 3);
        if (slide_read_img(j->s, 0, x0, y0, w, h, &got, &e) != 0 ||
            memcmp(got->data, want->data, img_bytes(want)) != 0)
            j->bad++;
        img_free(got);
        img_free(want);
    }
    return NULL;
}

static void
test_random_regions_with_a_small_cache_and_threads(void **state)
{
    const char *path = tu_tmp("regions.tif");
    struct img *src = pattern(1200, 900);
    TIFF *t = tiff_new(path, src, 3, 8, PHOTOMETRIC_RGB,
                       COMPRESSION_ADOBE_DEFLATE);
    struct reader_job j[4];
    pthread_t th[4];
    struct slide *s;
    int i;

    write_encoded(t, src, 128, 64, 3, 8);
    TIFFClose(t);
    s = open_tiff(path);
    /* three blocks' worth: every read evicts */
    slide__tiff_cache_limit(s, 3 * 128 * 64 * 3);
    for (i = 0; i < 4; i++) {
        j[i] = (struct reader_job){ s, src, 17 + (uint64_t)i, 60, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, random_reads, &j[i]),
                         0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(j[i].bad, 0);
    }
    slide_close(s);
    img_free(src);
}

/* ---- pixel size metadata ------------------------------------------------- */

static void
tiny_tiff(const char *path, double res, int unit, const char *desc)
{
    struct img *src = pattern(16, 16);
    TIFF *t = tiff_new(path, src, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE);

    if (res > 0) {
        TIFFSetField(t, TIFFTAG_XRESOLUTION, (float)res);
        TIFFSetField(t, TIFFTAG_YRESOLUTION, (float)res);
        TIFFSetField(t, TIFFTAG_RESOLUTIONUNIT, (uint16_t)unit);
    }
    if (desc != NULL)
        TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, desc);
    write_encoded(t, src, 0, 16, 3, 8);
    TIFFClose(t);
    img_free(src);
}

static void
test_resolution_tags(void **state)
{
    static const struct {
        double res;
        int unit;
        double mpp;                 /* 0: not believed */
        const char *why;
    } c[] = {
        { 40000, RESUNIT_CENTIMETER, 0.25, NULL },
        { 101600, RESUNIT_INCH, 0.25, NULL },
        { 20040.08, RESUNIT_CENTIMETER, 0.499, NULL },
        { 72, RESUNIT_INCH, 0, "72 or 96 dpi placeholder" },
        { 96, RESUNIT_INCH, 0, "72 or 96 dpi placeholder" },
        { 28.3465, RESUNIT_CENTIMETER, 0, "72 or 96 dpi placeholder" },
        { 40000, RESUNIT_NONE, 0, "ResolutionUnit is none" },
        { 10, RESUNIT_CENTIMETER, 0, "outside 0.05..100" },
        { 1e6, RESUNIT_CENTIMETER, 0, "outside 0.05..100" },
        { 0, 0, 0, "no resolution tag" },
    };
    size_t i;

    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char name[32];
        const char *path;
        struct slide *s;
        struct slide_opts o;
        struct ss_err e;

        snprintf(name, sizeof(name), "res%zu.tif", i);
        path = tu_tmp(name);
        tiny_tiff(path, c[i].res, c[i].unit, NULL);
        s = open_tiff(path);
        if (c[i].mpp > 0) {
            assert_true(fabs(slide_mpp(s) - c[i].mpp) < 1e-4);
            assert_int_equal(slide_mpp_source(s), SLIDE_MPP_TIFF);
        } else {
            assert_int_equal(slide_mpp_source(s), SLIDE_MPP_NONE);
            slide_close(s);
            slide_opts_default(&o);
            o.mpp_hint = "give it with --mpp";
            err_clear(&e);
            assert_int_equal(slide_open(path, &o, &s, &e), SS_EFORMAT);
            print_message("# %s\n", e.msg);
            assert_non_null(strstr(e.msg, "states no pixel size"));
            assert_non_null(strstr(e.msg, c[i].why));
            assert_non_null(strstr(e.msg, "give it with --mpp"));
            s = NULL;
        }
        slide_close(s);
    }
}

/* OME-XML wins over the resolution tags. */
static void
test_ome_before_resolution(void **state)
{
    const char *path = tu_tmp("ome-res.tif");
    struct slide *s;

    tiny_tiff(path, 40000, RESUNIT_CENTIMETER,
              "<OME><Image><Pixels PhysicalSizeXUnit='mm' "
              "PhysicalSizeX='0.0005' PhysicalSizeY='0.0005'/></Image></OME>");
    s = open_tiff(path);
    assert_true(fabs(slide_mpp(s) - 0.5) < 1e-12);
    assert_int_equal(slide_mpp_source(s), SLIDE_MPP_OME);
    slide_close(s);
}

static void
test_ome_units(void **state)
{
    static const struct {
        const char *xml;
        double mpp;
    } c[] = {
        { "<OME><Pixels PhysicalSizeX=\"0.2271\"/></OME>", 0.2271 },
        { "<OME><Pixels PhysicalSizeX=\"0.5\" PhysicalSizeXUnit=\"\xc2\xb5m\""
          "/></OME>", 0.5 },
        { "<OME><Pixels PhysicalSizeX=\"0.5\" PhysicalSizeXUnit=\"um\"/>"
          "</OME>", 0.5 },
        { "<OME><Pixels PhysicalSizeX=\"346\" PhysicalSizeXUnit=\"nm\"/>"
          "</OME>", 0.346 },
        { "<OME><Pixels PhysicalSizeX=\"2500\" PhysicalSizeXUnit="
          "\"\xc3\x85\"/></OME>", 0.25 },
        { "<OME><Pixels\n  PhysicalSizeX = '0.001'\n  PhysicalSizeXUnit = "
          "'mm'/></OME>", 1.0 },
        { "<OME><Pixels PhysicalSizeY=\"0.5\"/></OME>", 0 },
        { "<OME><Pixels PhysicalSizeX=\"0.5\" PhysicalSizeXUnit=\"furlong\""
          "/></OME>", 0 },
        { "<OME><Pixels PhysicalSizeX=\"1\" PhysicalSizeXUnit=\"mm\"/>"
          "</OME>", 0 },
        { "<OME><Pixels PhysicalSizeX=\"-1\"/></OME>", 0 },
        { "<Pixels PhysicalSizeX=\"0.5\"/>", 0 },
        { "Aperio Image Library|MPP = 0.4990", 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        const char *why = NULL;
        double mpp = -1;
        int found = slide_ome_mpp(c[i].xml, &mpp, &why);

        if (c[i].mpp > 0) {
            assert_int_equal(found, 1);
            assert_true(fabs(mpp - c[i].mpp) < 1e-9);
        } else {
            assert_int_equal(found, 0);
            assert_non_null(why);
        }
    }
}

static void
test_spec_parse(void **state)
{
    const char *real = tu_tmp("a@0.5.tif");
    char path[64], spec[600];
    struct ss_err e;
    double mpp;
    FILE *f = fopen(real, "w");

    fclose(f);
    assert_int_equal(slide_spec_parse("x.tif@0.25", path, sizeof(path),
                                      &mpp, &e), 0);
    assert_string_equal(path, "x.tif");
    assert_true(mpp == 0.25);
    assert_int_equal(slide_spec_parse("dir@2/x.tif", path, sizeof(path),
                                      &mpp, &e), 0);
    assert_string_equal(path, "dir@2/x.tif");
    assert_true(mpp == 0);
    assert_int_equal(slide_spec_parse("x.tif@0", path, sizeof(path), &mpp,
                                      &e), -EINVAL);
    assert_non_null(strstr(e.msg, "x.tif@0"));
    assert_int_equal(slide_spec_parse("x.tif@-1", path, sizeof(path), &mpp,
                                      &e), -EINVAL);
    /* an existing file whose name holds "@" is taken whole */
    snprintf(spec, sizeof(spec), "%s", real);
    {
        char big[600];
        assert_int_equal(slide_spec_parse(spec, big, sizeof(big), &mpp, &e),
                         0);
        assert_string_equal(big, real);
        assert_true(mpp == 0);
    }
    assert_int_equal(slide_spec_parse("a-very-long-name.tif", path, 8, &mpp,
                                      &e), -ENAMETOOLONG);
}

static void
test_level_and_region_arguments_are_checked(void **state)
{
    const char *path = tu_tmp("args.tif");
    uint8_t rgb[3];
    struct slide *s;
    struct ss_err e;

    tiny_tiff(path, 0, 0, NULL);
    s = open_tiff(path);
    assert_int_equal(slide_read(s, 1, 0, 0, 1, 1, rgb, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "no level 1"));
    assert_int_equal(slide_read(s, 0, 0, 0, 0, 1, rgb, &e), -EINVAL);
    assert_int_equal(slide_read(s, 0, -5, -5, 1, 1, rgb, &e), 0);
    assert_int_equal(rgb[0], 255);
    slide_close(s);
    slide_close(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jfif_tiles_under_an_rgb_tag),
        cmocka_unit_test(test_silent_rgb_streams_follow_the_tag),
        cmocka_unit_test(test_libtiff_ycbcr_jpeg_tiles_and_strips),
        cmocka_unit_test(test_corrupt_tile_names_file_tile_and_cause),
        cmocka_unit_test(test_big_tiff_is_read_on_demand),
        cmocka_unit_test(test_lossless_layouts_read_exactly),
        cmocka_unit_test(test_background_can_change_after_reads),
        cmocka_unit_test(test_palette_image),
        cmocka_unit_test(test_subifd_pyramid),
        cmocka_unit_test(test_reduced_directory_pyramid),
        cmocka_unit_test(test_random_regions_with_a_small_cache_and_threads),
        cmocka_unit_test(test_resolution_tags),
        cmocka_unit_test(test_ome_before_resolution),
        cmocka_unit_test(test_ome_units),
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_level_and_region_arguments_are_checked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
