/* SPDX-License-Identifier: MIT */
/*
 * drivers/sim: what a daemon checks of a slide spec when a scan is queued
 * (sim_slide_spec_open_check): a relative, missing, directory or
 * non-slide file is refused with a message naming the file and the
 * cause; a readable image is accepted.  And the FILE part of a spec that
 * a client makes absolute (sim_slide_spec_file_len).
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/img.h"
#include "drivers/sim/sim.h"

static void
test_file_part_of_a_spec(void **state)
{
    assert_int_equal(sim_slide_spec_file_len("a/b.svs"), 7);
    assert_int_equal(sim_slide_spec_file_len("b.png@0.5"), 5);
    assert_int_equal(sim_slide_spec_file_len("b.png@0.5:stain=KI67:id=X"),
                     5);
    assert_int_equal(sim_slide_spec_file_len("me@lab.tif"), 10);
    assert_int_equal(sim_slide_spec_file_len("phantom:HE:seed=3"), 0);
    assert_int_equal(sim_slide_spec_file_len("phantom:PAS"), 0);
    assert_int_equal(sim_slide_spec_file_len(""), 0);
}

/* The stain a spec declares: a phantom's own, a file's ":stain=". */
static void
test_declared_stain_of_a_spec(void **state)
{
    assert_string_equal(sim_slide_spec_stain("phantom:KI67:seed=3"), "KI67");
    assert_string_equal(sim_slide_spec_stain("/a/b.svs:stain=CK:id=X"),
                        "CK");
    assert_string_equal(sim_slide_spec_stain("/a/b.png@0.5:stain=HE"), "HE");
    assert_null(sim_slide_spec_stain("/a/b.svs"));
    assert_null(sim_slide_spec_stain("/a/b.svs:id=X"));
    assert_null(sim_slide_spec_stain("phantom:PAS"));
}

static void
refused(const char *spec, const char *want)
{
    struct ss_err e;

    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), SS_ECONFIG);
    assert_string_equal(e.msg, want);
}

static void
test_open_check_names_file_and_cause(void **state)
{
    char spec[1024], want[2048], png[1024];
    const char *dir = tu_tmpdir();
    struct img *im = img_new(64, 48, 3, IMG_U8);
    struct ss_err e;
    FILE *f;

    refused("slide.svs@0.5", "'slide.svs@0.5': slide.svs is a relative "
            "path, and the daemon's working directory is not the caller's; "
            "give the file's absolute path; a file slide is "
            "FILE[@MPP][:force_mpp][:stain=HE|KI67|CK][:id=TEXT]");
    snprintf(spec, sizeof(spec), "%s/none.svs:stain=HE", dir);
    snprintf(want, sizeof(want), "'%s': %s/none.svs: no such file", spec,
             dir);
    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), -ENOENT);
    assert_string_equal(e.msg, want);
    snprintf(want, sizeof(want), "'%s': %s is a directory, not a slide "
             "image", dir, dir);
    refused(dir, want);
    f = fopen(tu_tmp("notes.txt"), "w");
    assert_non_null(f);
    fputs("not a slide\n", f);
    fclose(f);
    snprintf(spec, sizeof(spec), "%s", tu_tmp("notes.txt"));
    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), SS_ECONFIG);
    snprintf(want, sizeof(want), "'%s': cannot be read as a slide: %s", spec,
             spec);
    assert_memory_equal(e.msg, want, strlen(want));
    /* A plain image needs its pixel size: refused without, taken with. */
    memset(im->data, 200, 64 * 48 * 3);
    snprintf(png, sizeof(png), "%s", tu_tmp("plain.png"));
    assert_int_equal(img_png_write(im, png, &e), 0);
    img_free(im);
    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(png, &e), SS_ECONFIG);
    assert_non_null(strstr(e.msg, "give it as"));
    snprintf(spec, sizeof(spec), "%s@0.5:stain=KI67", png);
    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), 0);
    assert_int_equal(sim_slide_spec_open_check("phantom:CK:seed=2", &e), 0);
}

/* An @MPP more than 1 % off the pixel size the file states (CMU-1-Small-
 * Region: 0.499 µm/px, from OpenSlide) is refused with both values and
 * how to insist; within 1 % or with :force_mpp it is taken. */
static void
test_contradicting_mpp_is_refused_unless_forced(void **state)
{
    const char *svs = tu_data("wsi/CMU-1-Small-Region.svs");
    char spec[4200], want[4400];
    struct ss_err e;

    if (svs == NULL)
        skip();
    snprintf(spec, sizeof(spec), "%s@0.25:stain=HE", svs);
    snprintf(want, sizeof(want), "%s states 0.499 µm/px (openslide); the "
             "0.25 µm/px given contradicts it; add :force_mpp "
             "(FILE@MPP:force_mpp) to use 0.25 µm/px anyway", svs);
    err_clear(&e);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), -EDOM);
    assert_string_equal(e.msg, want);
    /* 0.506 is 1.4 % off: refused; 0.503 (0.8 %) is taken. */
    snprintf(spec, sizeof(spec), "%s@0.506", svs);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), -EDOM);
    snprintf(spec, sizeof(spec), "%s@0.503", svs);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), 0);
    snprintf(spec, sizeof(spec), "%s@0.25:force_mpp:id=X", svs);
    assert_int_equal(sim_slide_spec_open_check(spec, &e), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_part_of_a_spec),
        cmocka_unit_test(test_declared_stain_of_a_spec),
        cmocka_unit_test(test_open_check_names_file_and_cause),
        cmocka_unit_test(test_contradicting_mpp_is_refused_unless_forced),
    };

    return cmocka_run_group_tests_name("sim_spec_open", tests, NULL, NULL);
}
