/* SPDX-License-Identifier: MIT */
/*
 * The stain a slide declares: the Aperio ImageDescription field parser,
 * the stain-name comparison, and slide_stain() on a WSI this tree writes
 * with a stain and one written without.
 */
#include "tests/support/testutil.h"

#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "storage/slide.h"
#include "storage/wsi.h"

static void
test_aperio_field(void **state)
{
    char st[32];

    (void)state;
    slide_aperio_stain("Aperio Image Library v10\n100x100 |AppMag = 20"
                       "|Stain = KI67|Slide ID = X", st, sizeof(st));
    assert_string_equal(st, "KI67");
    slide_aperio_stain("Aperio|Stain =  H&E  ", st, sizeof(st));
    assert_string_equal(st, "H&E");
    slide_aperio_stain("Aperio|StainType = CK|MPP = 0.5", st, sizeof(st));
    assert_string_equal(st, "");
    slide_aperio_stain("Aperio|Stain = |MPP = 0.5", st, sizeof(st));
    assert_string_equal(st, "");
    slide_aperio_stain("Aperio|MPP = 0.5", st, sizeof(st));
    assert_string_equal(st, "");
}

static void
test_same(void **state)
{
    (void)state;
    assert_true(slide_stain_same("H&E", "HE"));
    assert_true(slide_stain_same("Ki-67", "KI67"));
    assert_true(slide_stain_same("ck", "CK"));
    assert_false(slide_stain_same("KI67", "HE"));
    assert_false(slide_stain_same("KI67", NULL));
    assert_true(slide_stain_same(NULL, NULL));
}

static void
write_wsi(const char *path, const char *stain)
{
    uint8_t rgb[64 * 64 * 3];
    struct wsi_writer *w = NULL;
    struct wsi_meta m;
    struct ss_err e;

    memset(rgb, 180, sizeof(rgb));
    wsi_meta_default(&m);
    m.mpp = 0.5;
    snprintf(m.stain, sizeof(m.stain), "%s", stain);
    assert_int_equal(wsi_writer_open(path, 64, 64, &m, &w, &e), 0);
    assert_int_equal(wsi_writer_rows(w, rgb, 64, &e), 0);
    assert_int_equal(wsi_writer_finish(w, &e), 0);
}

static void
test_declared_by_file(void **state)
{
    char path[1024];
    struct slide *s = NULL;
    struct ss_err e;

    (void)state;
    snprintf(path, sizeof(path), "%s", tu_tmp("k.svs"));
    write_wsi(path, "KI67");
    assert_int_equal(slide_open(path, NULL, &s, &e), 0);
    assert_non_null(slide_stain(s));
    assert_string_equal(slide_stain(s), "KI67");
    slide_close(s);
    snprintf(path, sizeof(path), "%s", tu_tmp("none.svs"));
    write_wsi(path, "");
    assert_int_equal(slide_open(path, NULL, &s, &e), 0);
    assert_null(slide_stain(s));
    slide_close(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aperio_field),
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_declared_by_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
