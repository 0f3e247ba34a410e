/* SPDX-License-Identifier: MIT */
/*
 * The slide reader on slides whose tiles are damaged after the file was
 * written: a copy of CMU-1-Small-Region.svs with 300 KB of random bytes
 * over its tile data, and one with the middle of twenty tiles scrambled,
 * so that each tile still starts like a JPEG stream and libjpeg only
 * warns ("Corrupt JPEG data").  Reading the whole slide must fail, through
 * OpenSlide and through libtiff, with an error naming the file, the level,
 * the tile or region, and the cause; grey guesses must never come back as
 * pixels.  A plain JPEG with damaged data is refused at open.  The
 * copies live in the test's temporary directory.  The slide tests skip,
 * saying so, when ../shared/data is absent.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

#include "common/img.h"
#include "storage/slide.h"

#define SRC "wsi/CMU-1-Small-Region.svs"

static unsigned char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void
spill(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Deterministic noise (xorshift), so a failure can be reproduced. */
static void
scramble(unsigned char *b, size_t n, uint32_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        b[i] = (unsigned char)seed;
    }
}

/* The copy with 300 KB of noise at offset 500000 (inside level 0's
 * tiles, which end at 1275950). */
static const char *
noisy_copy(const char *src)
{
    const char *dst = tu_tmp("noisy.svs");
    size_t len;
    unsigned char *b = slurp(src, &len);

    assert_true(len > 500000 + 300 * 1024);
    scramble(b + 500000, 300 * 1024, 12345);
    spill(dst, b, len);
    free(b);
    return dst;
}

/* The copy with the second quarter of level-0 tiles 40..59 scrambled:
 * SOI, tables and the first half of each stream stay intact. */
static const char *
midtile_copy(const char *src)
{
    const char *dst = tu_tmp("midtile.svs");
    size_t len;
    unsigned char *b = slurp(src, &len);
    TIFF *t = TIFFOpen(src, "r");
    uint32_t i;

    assert_non_null(t);
    for (i = 40; i < 60; i++) {
        uint64_t off = TIFFGetStrileOffset(t, i);
        uint64_t n = TIFFGetStrileByteCount(t, i);

        assert_true(n > 1000 && off + n <= len);
        scramble(b + off + n / 2, (size_t)(n / 4), 777 + i);
    }
    TIFFClose(t);
    spill(dst, b, len);
    free(b);
    return dst;
}

/* Reads level 0 in bands of 256 rows as the analysis does; returns the
 * first error (0 when every band read). */
static int
read_all(const char *path, enum slide_backend backend, struct ss_err *e)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct img *im = NULL;
    int64_t w, h, y;
    int rc;

    slide_opts_default(&o);
    o.backend = backend;
    o.need_mpp = false;         /* libtiff does not parse Aperio text */
    err_clear(e);
    rc = slide_open(path, &o, &s, e);
    if (rc != 0)
        print_message("# open: %s\n", e->msg);
    assert_int_equal(rc, 0);
    slide_level_size(s, 0, &w, &h);
    for (y = 0, rc = 0; rc == 0 && y < h; y += 256) {
        rc = slide_read_img(s, 0, 0, y, (int)w, 256, &im, e);
        img_free(im);
        im = NULL;
    }
    slide_close(s);
    if (rc != 0)
        print_message("# %s\n", e->msg);
    return rc;
}

static void
assert_has(const char *msg, const char *frag)
{
    if (strstr(msg, frag) == NULL)
        print_message("# '%s' lacks '%s'\n", msg, frag);
    assert_non_null(strstr(msg, frag));
}

/* The intact file reads: the failures below come from the damage. */
static void
test_intact_copy_reads_both_ways(void **state)
{
    const char *src = tu_data(SRC);
    struct ss_err e;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    assert_int_equal(read_all(src, SLIDE_BACKEND_ANY, &e), 0);
    assert_int_equal(read_all(src, SLIDE_BACKEND_LIBTIFF, &e), 0);
}

static void
test_noise_over_tiles_fails_through_openslide(void **state)
{
    const char *src = tu_data(SRC), *p;
    struct ss_err e;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    p = noisy_copy(src);
    assert_int_equal(read_all(p, SLIDE_BACKEND_ANY, &e), SS_EFORMAT);
    assert_has(e.msg, "noisy.svs: reading pixels at (0, ");
    assert_has(e.msg, " level 0 (a 2220x256 region): ");
    assert_has(e.msg, "Not a JPEG file");
}

static void
test_noise_over_tiles_fails_through_libtiff(void **state)
{
    const char *src = tu_data(SRC), *p;
    struct ss_err e;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    p = noisy_copy(src);
    assert_int_equal(read_all(p, SLIDE_BACKEND_LIBTIFF, &e), SS_EFORMAT);
    assert_has(e.msg, "noisy.svs: tile ");
    assert_has(e.msg, " of level 0: corrupt JPEG: ");
}

/* libjpeg only warns on these tiles; OpenSlide makes that an error. */
static void
test_scrambled_tile_middles_fail_through_openslide(void **state)
{
    const char *src = tu_data(SRC), *p;
    struct ss_err e;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    p = midtile_copy(src);
    assert_int_equal(read_all(p, SLIDE_BACKEND_ANY, &e), SS_EFORMAT);
    assert_has(e.msg, "midtile.svs: reading pixels at (0, ");
    assert_has(e.msg, "level 0 (a 2220x256 region): Corrupt JPEG data");
}

/* The same through libtiff and TurboJPEG, where the warning used to be
 * ignored and the grey fill came back as pixels.  Tile 40 is the first
 * damaged one (the tiles are 240 px, 10 to a row: row 4). */
static void
test_scrambled_tile_middles_fail_through_libtiff(void **state)
{
    const char *src = tu_data(SRC), *p;
    struct ss_err e;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    p = midtile_copy(src);
    assert_int_equal(read_all(p, SLIDE_BACKEND_LIBTIFF, &e), SS_EFORMAT);
    assert_has(e.msg, "midtile.svs: tile 40 of level 0: corrupt JPEG: ");
}

/* A plain JPEG whose entropy-coded data is scrambled halfway through:
 * libjpeg only warns, and the open must fail instead of returning a
 * half-grey image.  The intact file opens. */
static void
test_plain_jpeg_with_damaged_data_is_refused(void **state)
{
    struct img *im = img_new(512, 512, 3, IMG_U8);
    const char *good = tu_tmp("plain.jpg"), *bad = tu_tmp("plain-bad.jpg");
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err e;
    unsigned char *b;
    size_t len, i;

    assert_non_null(im);
    for (i = 0; i < img_bytes(im); i++)
        ((uint8_t *)im->data)[i] = (uint8_t)(i * 7 / 3 + (i >> 11));
    err_clear(&e);
    assert_int_equal(img_jpeg_write(im, good, 90, &e), 0);
    img_free(im);
    b = slurp(good, &len);
    /* Without 0xff bytes there are no markers: only Huffman garbage,
     * which libjpeg reports as warnings. */
    scramble(b + len / 2, len / 8, 99);
    for (i = len / 2; i < len / 2 + len / 8; i++)
        b[i] = b[i] == 0xff ? 0x00 : b[i];
    spill(bad, b, len);
    free(b);
    slide_opts_default(&o);
    o.need_mpp = false;
    assert_int_equal(slide_open(good, &o, &s, &e), 0);
    slide_close(s);
    s = NULL;
    err_clear(&e);
    assert_int_equal(slide_open(bad, &o, &s, &e), SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_null(s);
    assert_has(e.msg, "plain-bad.jpg: corrupt JPEG: Corrupt JPEG data");
}

/* A copy cut short: the last 100 kB gone (the end of a transfer), then
 * half the file.  Opening fails through either backend, naming the cut:
 * otherwise the levels and tiles past the cut would silently go
 * missing. */
static void
test_cut_short_copy_is_refused_at_open(void **state)
{
    static const enum slide_backend backends[2] = { SLIDE_BACKEND_ANY,
                                                    SLIDE_BACKEND_LIBTIFF };
    const char *src = tu_data(SRC), *p = tu_tmp("cut.svs");
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err e;
    unsigned char *b;
    size_t len, keep[2];
    int i, k;

    if (src == NULL) {
        tu_skip("shared data absent: no %s", SRC);
        return;
    }
    b = slurp(src, &len);
    keep[0] = len - 100000;
    keep[1] = len / 2;
    for (k = 0; k < 2; k++) {
        spill(p, b, keep[k]);
        for (i = 0; i < 2; i++) {
            slide_opts_default(&o);
            o.backend = backends[i];
            o.need_mpp = false;
            err_clear(&e);
            assert_int_equal(slide_open(p, &o, &s, &e), SS_EFORMAT);
            assert_null(s);
            print_message("# %zu of %zu bytes: %s\n", keep[k], len, e.msg);
            assert_has(e.msg, "cut.svs: ");
            assert_true(strstr(e.msg, "cut short") != NULL ||
                        strstr(e.msg, "not a readable TIFF") != NULL);
        }
    }
    free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intact_copy_reads_both_ways),
        cmocka_unit_test(test_noise_over_tiles_fails_through_openslide),
        cmocka_unit_test(test_noise_over_tiles_fails_through_libtiff),
        cmocka_unit_test(test_scrambled_tile_middles_fail_through_openslide),
        cmocka_unit_test(test_scrambled_tile_middles_fail_through_libtiff),
        cmocka_unit_test(test_plain_jpeg_with_damaged_data_is_refused),
        cmocka_unit_test(test_cut_short_copy_is_refused_at_open),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
