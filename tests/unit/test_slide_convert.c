/* SPDX-License-Identifier: MIT */
/*
 * `slidescan convert` (tools/client/cmd_convert.c), run in-process: every
 * input the slide reader takes converts, an OME-TIFF keeps its pixel size
 * and colours, and the command refuses what would silently change a
 * slide's meaning: a non-TIFF output name, a quality outside the daemon's
 * 50..100, a --mpp that contradicts the slide (unless --force-mpp).
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/img.h"
#include "storage/slide.h"
#include "tools/client/client.h"

#define NEED(var, rel)                                                    \
    const char *var = tu_data(rel);                                       \
    if (var == NULL) {                                                    \
        tu_skip("shared data absent: no %s", rel);                       \
        return;                                                           \
    }

/* Runs `slidescan convert` with up to 8 arguments (NULL-terminated). */
static int
convert(const char *a0, const char *a1, const char *a2, const char *a3,
        const char *a4)
{
    char *argv[8] = { "convert" };
    const char *in[5] = { a0, a1, a2, a3, a4 };
    int argc = 1, i;

    for (i = 0; i < 5 && in[i] != NULL; i++)
        argv[argc++] = (char *)in[i];
    return cmd_convert(argc, argv);
}

static struct slide *
open_out(const char *path)
{
    struct slide *s = NULL;
    struct ss_err e;

    err_clear(&e);
    if (slide_open(path, NULL, &s, &e) != 0)
        print_message("# %s\n", e.msg);
    assert_non_null(s);
    return s;
}

static void
test_refuses_what_it_would_write_wrongly(void **state)
{
    const char *png = tu_tmp("out.png"), *tif = tu_tmp("out.tif");

    /* Checked before the input is even opened. */
    assert_int_equal(convert("in.svs", png, NULL, NULL, NULL), EXIT_USAGE);
    assert_int_equal(convert("in.svs", tu_tmp("out"), NULL, NULL, NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--quality", "10", NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--quality", "49", NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--quality", "101", NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--quality", "90.5", NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--subsamp", "422", NULL),
                     EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--mpp", "0", NULL), EXIT_USAGE);
    assert_int_equal(convert("in.svs", tif, "--bogus", NULL, NULL),
                     EXIT_USAGE);
    assert_int_equal(access(png, F_OK), -1);
    assert_int_equal(access(tif, F_OK), -1);
    assert_int_equal(convert("/nonexistent/in.svs", tif, "--quality", "50",
                             NULL), EXIT_NOTFOUND);
}

static void
test_png_output_name_refused_on_a_real_slide(void **state)
{
    NEED(p, "wsi/edge_cases/small.svs");
    const char *png = tu_tmp("ph.png");

    assert_int_equal(convert(p, png, NULL, NULL, NULL), EXIT_USAGE);
    assert_int_equal(access(png, F_OK), -1);
}

/* The slide states 0.499 µm/px: another --mpp is refused, the same one
 * accepted, and --force-mpp writes the given one. */
static void
test_mpp_that_contradicts_the_slide(void **state)
{
    NEED(p, "wsi/CMU-1-Small-Region.svs");
    const char *out = tu_tmp("cmu.svs");
    struct slide *s;

    assert_int_equal(convert(p, out, "--mpp", "0.25", NULL), EXIT_USAGE);
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(convert(p, out, "--mpp", "0.4991", NULL), EXIT_OK);
    s = open_out(out);
    assert_true(fabs(slide_mpp(s) - 0.4991) < 1e-6);
    slide_close(s);
    assert_int_equal(convert(p, out, "--mpp", "0.25", "--force-mpp"),
                     EXIT_OK);
    s = open_out(out);
    assert_string_equal(slide_format(s), "aperio");
    assert_true(fabs(slide_mpp(s) - 0.25) < 1e-6);
    slide_close(s);
}

/* The OME-TIFF that could not be read at all converts with its own pixel
 * size, its colours intact (PSNR against the source). */
static void
test_ome_tiff_converts_with_pixel_size_and_colours(void **state)
{
    NEED(p, "ihc_ki67/OS-2-vsi.ome.tif");
    const char *out = tu_tmp("os2.svs");
    struct slide *a, *b;
    struct img *ia = NULL, *ib = NULL;
    struct ss_err e;
    int64_t w, h;
    double psnr;

    assert_int_equal(convert(p, out, "--stain", "KI67", NULL), EXIT_OK);
    a = open_out(p);
    b = open_out(out);
    slide_level_size(b, 0, &w, &h);
    assert_string_equal(slide_format(b), "aperio");
    assert_int_equal(w, 1445);
    assert_int_equal(h, 1445);
    assert_true(slide_level_count(b) >= 2);
    assert_true(fabs(slide_mpp(b) - 0.3461) < 1e-4);
    assert_int_equal(slide_read_img(a, 0, 0, 0, 1445, 1445, &ia, &e), 0);
    assert_int_equal(slide_read_img(b, 0, 0, 0, 1445, 1445, &ib, &e), 0);
    psnr = img_psnr(ia, ib, 0, 0, 1445, 1445);
    print_message("# OS-2-vsi converted: PSNR %.1f dB against the source\n",
                  psnr);
    assert_true(psnr > 38);
    img_free(ia);
    img_free(ib);
    slide_close(a);
    slide_close(b);
}

static void
test_inputs_without_pixel_size_or_pixels(void **state)
{
    NEED(kidney, "wsi/edge_cases/kidney-48-5.tif");
    NEED(bad, "wsi/edge_cases/unreadable.svs");
    const char *out = tu_tmp("k.svs"), *out2 = tu_tmp("u.svs");
    char spec[4200];
    struct slide *s;

    assert_int_equal(convert(kidney, out, NULL, NULL, NULL), EXIT_FAIL);
    assert_int_equal(access(out, F_OK), -1);
    snprintf(spec, sizeof(spec), "%s@2", kidney);
    assert_int_equal(convert(spec, out, NULL, NULL, NULL), EXIT_OK);
    s = open_out(out);
    assert_true(fabs(slide_mpp(s) - 2.0) < 1e-9);
    slide_close(s);
    assert_int_equal(convert(bad, out2, NULL, NULL, NULL), EXIT_FAIL);
    assert_int_equal(access(out2, F_OK), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_what_it_would_write_wrongly),
        cmocka_unit_test(test_png_output_name_refused_on_a_real_slide),
        cmocka_unit_test(test_mpp_that_contradicts_the_slide),
        cmocka_unit_test(test_ome_tiff_converts_with_pixel_size_and_colours),
        cmocka_unit_test(test_inputs_without_pixel_size_or_pixels),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
