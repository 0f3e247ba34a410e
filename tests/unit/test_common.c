/* SPDX-License-Identifier: MIT */
/* common/: errors, images and their files, durable writes, checksums. */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "common/err.h"
#include "common/img.h"
#include "common/rng.h"
#include "common/util.h"

static void
test_err_prefix_composes_a_path(void **state)
{
    struct ss_err e;

    err_clear(&e);
    assert_int_equal(err_set(&e, SS_ETIMEOUT, "capture timed out after %d ms",
                             5000), SS_ETIMEOUT);
    err_prefix(&e, "tile %d", 37);
    err_prefix(&e, "scan %d", 12);
    assert_string_equal(e.msg, "scan 12: tile 37: capture timed out after "
                        "5000 ms");
    assert_int_equal(e.code, SS_ETIMEOUT);
    assert_string_equal(err_name(SS_EBUSY), "device busy");
    assert_int_equal(err_set(NULL, -5, "ignored"), -5);
}

static struct img *
gradient(int w, int h)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint8_t *p = img_u8(im, x, y);
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)((x + y) & 0xff);
        }
    return im;
}

static void
test_png_round_trip_is_exact(void **state)
{
    struct img *a = gradient(67, 45), *b = NULL;
    struct ss_err e;

    assert_int_equal(img_png_write(a, tu_tmp("g.png"), &e), 0);
    assert_int_equal(img_read_any(tu_tmp("g.png"), &b, &e), 0);
    assert_int_equal(b->w, 67);
    assert_int_equal(b->h, 45);
    assert_memory_equal(a->data, b->data, img_bytes(a));
    assert_true(isinf(img_psnr(a, b, 0, 0, 67, 45)));
    img_free(a);
    img_free(b);
}

/* A JPEG cut short (a camera transfer that stopped, a damaged file)
 * decodes only with a libjpeg warning: that is an error naming the cause,
 * never an image with made-up grey rows. */
static void
test_jpeg_cut_short_is_an_error(void **state)
{
    struct img *a = gradient(256, 128), *b = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    struct ss_err e;

    assert_int_equal(img_jpeg_encode(a, 95, 444, &buf, &len, &e), 0);
    assert_int_equal(img_jpeg_decode(buf, len, &b, &e), 0);
    img_free(b);
    b = NULL;
    err_clear(&e);
    assert_int_equal(img_jpeg_decode(buf, len / 2, &b, &e), SS_EFORMAT);
    assert_null(b);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "corrupt JPEG: "));
    assert_non_null(strstr(e.msg, "Premature end of JPEG"));
    tjFree(buf);
    img_free(a);
}

static void
test_jpeg_q95_round_trip_is_close(void **state)
{
    struct img *a = gradient(256, 128), *b = NULL;
    struct ss_err e;
    double psnr;

    assert_int_equal(img_jpeg_write(a, tu_tmp("g.jpg"), 95, &e), 0);
    assert_int_equal(img_read_any(tu_tmp("g.jpg"), &b, &e), 0);
    psnr = img_psnr(a, b, 0, 0, 256, 128);
    assert_true(psnr > 38.0);
    assert_true(psnr < 80.0);
    img_free(a);
    img_free(b);
}

static void
test_read_any_names_the_file_and_cause(void **state)
{
    struct img *im = NULL;
    struct ss_err e;
    FILE *f = fopen(tu_tmp("text.svs"), "w");

    fputs("not an image at all\n", f);
    fclose(f);
    assert_int_equal(img_read_any(tu_tmp("text.svs"), &im, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "text.svs"));
    assert_non_null(strstr(e.msg, "not a PNG, JPEG or TIFF"));
    assert_int_equal(img_read_any(tu_tmp("missing.png"), &im, &e), -2);
    assert_null(im);
}

static void
test_crop_pads_outside_with_zero(void **state)
{
    struct img *a = gradient(10, 10);
    struct img *c = img_crop(a, -2, 8, 4, 4);

    assert_int_equal(img_u8(c, 0, 0)[0], 0);
    assert_memory_equal(img_u8(c, 2, 0), img_u8(a, 0, 8), 3);
    assert_int_equal(img_u8(c, 3, 3)[1], 0);
    img_free(a);
    img_free(c);
}

/* Seeds: digits only, the whole uint64 range, and nothing written on a
 * refusal (so a message quotes the user's text, not a wrapped value). */
static void
test_parse_u64_takes_digits_only(void **state)
{
    static const char *const bad[] = {
        "-1", "+5", " 5", "5 ", "1e3", "0x10", "1.5", "", "abc",
    };
    uint64_t v = 7;
    size_t i;

    (void)state;
    assert_int_equal(util_parse_u64("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(util_parse_u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(util_parse_u64("007", &v), 0);
    assert_true(v == 7);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 42;
        assert_int_equal(util_parse_u64(bad[i], &v), -EINVAL);
        assert_true(v == 42);
    }
    assert_int_equal(util_parse_u64("18446744073709551616", &v), -ERANGE);
    assert_int_equal(util_parse_u64("99999999999999999999", &v), -ERANGE);
    assert_true(v == 42);
}

static void
test_durable_write_and_sha256(void **state)
{
    char hex[65];
    char *buf;
    size_t len;
    struct ss_err e;

    assert_int_equal(util_write_durable(tu_tmp("abc"), "abc", 3, &e), 0);
    assert_int_equal(util_read_file(tu_tmp("abc"), &buf, &len, &e), 0);
    assert_int_equal(len, 3);
    assert_string_equal(buf, "abc");
    free(buf);
    assert_int_equal(util_sha256_file(tu_tmp("abc"), hex, &e), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(util_mkdir_p(tu_tmp("a/b/c"), &e), 0);
}

static void
test_rng_is_keyed_not_historical(void **state)
{
    struct rng a, b;
    double sum = 0, sq = 0;
    int i;

    rng_init(&a, rng_key(7, 1, 2, 3));
    rng_init(&b, rng_key(7, 1, 2, 3));
    for (i = 0; i < 1000; i++)
        assert_true(rng_next(&a) == rng_next(&b));
    rng_init(&b, rng_key(7, 1, 2, 4));
    assert_true(rng_next(&a) != rng_next(&b));
    for (i = 0; i < 100000; i++) {
        double g = rng_gauss(&a);
        sum += g;
        sq += g * g;
    }
    assert_true(fabs(sum / 1e5) < 0.02);
    assert_true(fabs(sq / 1e5 - 1.0) < 0.02);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_prefix_composes_a_path),
        cmocka_unit_test(test_png_round_trip_is_exact),
        cmocka_unit_test(test_jpeg_q95_round_trip_is_close),
        cmocka_unit_test(test_jpeg_cut_short_is_an_error),
        cmocka_unit_test(test_read_any_names_the_file_and_cause),
        cmocka_unit_test(test_crop_pads_outside_with_zero),
        cmocka_unit_test(test_durable_write_and_sha256),
        cmocka_unit_test(test_parse_u64_takes_digits_only),
        cmocka_unit_test(test_rng_is_keyed_not_historical),
    };

    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
