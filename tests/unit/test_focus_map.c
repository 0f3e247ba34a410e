/* SPDX-License-Identifier: MIT */
/*
 * imaging/focusmap and the acquisition's focus map: model choice,
 * accuracy on a tilted, bowed slide, outlier rejection, refitting stored
 * points (resume) to the same surface, and point sets that determine
 * fewer directions than the model has (collinear points, duplicates, one
 * or two points, two rows), which must still give a usable surface.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "imaging/focusmap.h"
#include "scan/acquire.h"

/* A slide 15 × 15 mm, tilted 0.4 µm/mm in x and -0.25 µm/mm in y, its
 * centre bowed 3 µm above its corners, 2 µm above nominal focus. */
static double
true_z(double x, double y)
{
    double u = (x - 7500) / 7500, v = (y - 7500) / 7500;

    return 2.0 + 0.4e-3 * (x - 7500) - 0.25e-3 * (y - 7500) +
           3.0 * (1 - 0.5 * (u * u + v * v));
}

/* n × n points on the slide with autofocus noise σ. */
static int
grid_points(int n, double sigma, double *x, double *y, double *z)
{
    struct rng r;
    int i, j, k = 0;

    rng_init(&r, 42);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++, k++) {
            x[k] = 900 + 13200.0 * j / (n - 1);
            y[k] = 1100 + 12800.0 * i / (n - 1);
            z[k] = true_z(x[k], y[k]) + sigma * rng_gauss(&r);
        }
    return k;
}

static double
rms_error(const struct fmap_surface *s)
{
    double ss = 0, d;
    int i, j;

    for (i = 0; i <= 30; i++)
        for (j = 0; j <= 30; j++) {
            d = fmap_eval(s, 500 + 14000.0 * j / 30, 500 + 14000.0 * i / 30) -
                true_z(500 + 14000.0 * j / 30, 500 + 14000.0 * i / 30);
            ss += d * d;
        }
    return sqrt(ss / (31 * 31));
}

static void
test_three_points_give_the_exact_plane(void **state)
{
    double x[3] = { 0, 1000, 0 }, y[3] = { 0, 0, 1000 }, z[3] = { 1, 2, 0 };
    struct fmap_surface s;
    struct ss_err e;

    assert_int_equal(fmap_fit(x, y, z, NULL, 3, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_PLANE);
    assert_true(fabs(fmap_eval(&s, 500, 500) - 1.0) < 1e-9);
    assert_true(fabs(fmap_eval(&s, 2000, -1000) - 4.0) < 1e-9);
}

static void
test_tilted_bowed_slide_within_half_a_micron(void **state)
{
    double x[16], y[16], z[16], rms, raw[6];
    struct fmap_surface s;
    struct ss_err e;
    int n = grid_points(4, 0.15, x, y, z);

    assert_int_equal(fmap_fit(x, y, z, NULL, n, FMAP_TPS, 2.0, &s, &e), 0);
    rms = rms_error(&s);
    print_message("# model %s rms %.3f um loo %.3f um\n",
                  fmap_model_name(s.model), rms, s.loo_rms_um);
    assert_int_equal(s.model, FMAP_QUAD);
    assert_true(rms <= 0.5);
    fmap_poly_raw(&s, raw);
    assert_true(fabs(fmap_poly_raw_eval(raw, 3210, 8765) -
                     fmap_eval(&s, 3210, 8765)) < 1e-6);
}

/* A plane cannot follow the bow: the quadratic must win by far. */
static void
test_plane_alone_misses_the_bow(void **state)
{
    double x[16], y[16], z[16];
    struct fmap_surface s;
    struct ss_err e;
    int n = grid_points(4, 0.0, x, y, z);

    assert_int_equal(fmap_fit(x, y, z, NULL, n, FMAP_PLANE, 0, &s, &e), 0);
    assert_true(rms_error(&s) > 0.5);
}

static void
test_outlier_is_dropped_and_refit_is_stable(void **state)
{
    double x[16], y[16], z[16];
    bool use[16];
    struct fmap_surface s, s2;
    struct ss_err e;
    int n = grid_points(4, 0.1, x, y, z), i, kept = 0;

    z[5] += 8.0;
    for (i = 0; i < n; i++)
        use[i] = true;
    assert_int_equal(fmap_fit(x, y, z, use, n, FMAP_TPS, 2.0, &s, &e), 0);
    assert_false(use[5]);
    for (i = 0; i < n; i++)
        kept += use[i];
    assert_int_equal(kept, 15);
    assert_true(rms_error(&s) <= 0.5);
    assert_int_equal(fmap_fit(x, y, z, use, n, FMAP_TPS, 2.0, &s2, &e), 0);
    assert_int_equal(s2.model, s.model);
    assert_memory_equal(s2.coef, s.coef, sizeof(s.coef));
}

/* A local bump a quadratic cannot follow: thin-plate wins, and with it
 * the error at the points' scale drops. */
static void
test_thin_plate_follows_a_local_bump(void **state)
{
    double x[36], y[36], z[36];
    struct fmap_surface s;
    struct ss_err e;
    int i, n = grid_points(6, 0.0, x, y, z);

    for (i = 0; i < n; i++)
        z[i] += 4.0 * exp(-(pow(x[i] - 4000, 2) + pow(y[i] - 4000, 2)) /
                          (2 * 2500.0 * 2500.0));
    assert_int_equal(fmap_fit(x, y, z, NULL, n, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_TPS);
    assert_true(s.loo_rms_um < 0.5);
}

static void
test_no_usable_point_is_no_focus(void **state)
{
    double x[2] = { 0, 1 }, y[2] = { 0, 1 }, z[2] = { 0, 0 };
    bool use[2] = { false, false };
    struct fmap_surface s;
    struct ss_err e;

    assert_int_equal(fmap_fit(x, y, z, use, 2, FMAP_TPS, 0, &s, &e),
                     SS_ENOFOCUS);
    assert_non_null(strstr(e.msg, "none of 2 points"));
}

/* The acquisition map: a point without focus is left out; a map loaded
 * with only the stored coefficients predicts the same z (quadratic), and
 * refitting stored points gives the same surface. */
static void
test_acq_map_refit_from_stored_points(void **state)
{
    double x[16], y[16], z[16];
    struct acq_focus_map fm, loaded;
    struct ss_err e;
    int i, n = grid_points(4, 0.1, x, y, z);

    memset(&fm, 0, sizeof(fm));
    fm.npoints = n;
    fm.points = calloc((size_t)n, sizeof(*fm.points));
    for (i = 0; i < n; i++) {
        fm.points[i].x_um = x[i];
        fm.points[i].y_um = y[i];
        fm.points[i].z_um = z[i];
        fm.points[i].ok = i != 7;
    }
    fm.points[7].z_um = 0;
    assert_int_equal(acq_focus_map_fit(&fm, &e), 0);
    assert_int_equal(fm.surf.nused, 15);
    assert_true(fabs(acq_focus_map_z(&fm, 7000, 6000) - true_z(7000, 6000))
                < 0.5);
    memset(&loaded, 0, sizeof(loaded));
    loaded.model = fm.model;
    memcpy(loaded.coef, fm.coef, sizeof(fm.coef));
    assert_true(fabs(acq_focus_map_z(&loaded, 7000, 6000) -
                     acq_focus_map_z(&fm, 7000, 6000)) < 1e-6);
    loaded.npoints = n;
    loaded.points = fm.points;
    assert_int_equal(acq_focus_map_fit(&loaded, &e), 0);
    assert_true(acq_focus_map_z(&loaded, 1234, 5678) ==
                acq_focus_map_z(&fm, 1234, 5678));
    free(fm.points);
}

/* The fitted surface at a point d µm across the line through (x, y) in
 * direction (ux, uy) minus its value at (x, y). */
static double
across_change(const struct fmap_surface *s, double x, double y, double ux,
              double uy, double d)
{
    return fmap_eval(s, x - uy * d, y + ux * d) - fmap_eval(s, x, y);
}

/* Three focus points in one column of tiles (a 1 × 3 plan): the surface
 * follows z along the column and stays constant across it, so the
 * neighbouring columns get the column's z, not an extrapolated tilt. */
static void
test_three_collinear_points_fit_along_the_line(void **state)
{
    double x[3] = { 5000, 5000, 5000 }, y[3] = { 1000, 1691.2, 2382.4 };
    double z[3] = { 2.0, 2.5, 3.0 };
    struct fmap_surface s;
    struct ss_err e;
    int i;

    assert_int_equal(fmap_fit(x, y, z, NULL, 3, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_PLANE);
    assert_int_equal(s.dims, 1);
    for (i = 0; i < 3; i++)
        assert_true(fabs(fmap_eval(&s, x[i], y[i]) - z[i]) < 1e-9);
    assert_true(fabs(across_change(&s, 5000, 1691.2, 0, 1, 3000)) < 1e-9);
    assert_true(fabs(fmap_eval(&s, 5000, 3073.6) - 3.5) < 1e-9);
}

/* Points on a diagonal line, z tilted along it and bowed: the fit along
 * the line holds within the noise, and across it the surface is flat. */
static void
test_diagonal_line_with_noise_is_flat_across(void **state)
{
    double x[12], y[12], z[12], t, ux = 0.8, uy = 0.6;
    bool use[12];
    struct fmap_surface s;
    struct ss_err e;
    struct rng r;
    int i;

    rng_init(&r, 7);
    for (i = 0; i < 12; i++) {
        t = -6000 + 12000.0 * i / 11;
        x[i] = 7000 + ux * t;
        y[i] = 7000 + uy * t;
        z[i] = 1.0 + 0.3e-3 * t + 2.0 * (t / 6000) * (t / 6000) +
               0.1 * rng_gauss(&r);
        use[i] = true;
    }
    assert_int_equal(fmap_fit(x, y, z, use, 12, FMAP_TPS, 2.0, &s, &e), 0);
    print_message("# diagonal line: model %s dims %d loo %.3f um\n",
                  fmap_model_name(s.model), s.dims, s.loo_rms_um);
    assert_int_equal(s.dims, 1);
    assert_int_equal(s.model, FMAP_QUAD);
    for (i = 0; i < 12; i++)
        assert_true(use[i]);
    assert_true(s.rms_um < 0.2);
    for (i = 0; i < 12; i += 3)
        assert_true(fabs(across_change(&s, x[i], y[i], ux, uy, 4000)) <
                    1e-6);
}

/* A column of tiles whose points wander 2 µm off the line (stage
 * repeatability): they are on a line for the fit, so 5 mm to the side
 * the surface is not tilted by 1 µm of autofocus noise over 2 µm. */
static void
test_nearly_collinear_points_do_not_tilt_across(void **state)
{
    double x[4] = { 3000, 3002, 2999, 3001 }, y[4] = { 0, 700, 1400, 2100 };
    double z[4] = { 1.0, 1.3, 0.9, 1.2 };
    struct fmap_surface s;
    struct ss_err e;

    assert_int_equal(fmap_fit(x, y, z, NULL, 4, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.dims, 1);
    assert_true(fabs(fmap_eval(&s, 8000, 1050) - fmap_eval(&s, 3000, 1050))
                < 0.01);
    assert_true(fabs(fmap_eval(&s, 3000, 1050) - 1.1) < 0.3);
}

/* One point, two points, points all at one spot: a constant, the mean
 * of their z; duplicates on two spots: the line through them. */
static void
test_one_two_and_duplicate_points(void **state)
{
    double x[4] = { 100, 100, 100, 100 }, y[4] = { 200, 200, 200, 200 };
    double z[4] = { 1.0, 2.0, 3.0, 6.0 };
    struct fmap_surface s;
    struct ss_err e;

    assert_int_equal(fmap_fit(x, y, z, NULL, 1, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_CONST);
    assert_true(fabs(fmap_eval(&s, 9000, 9000) - 1.0) < 1e-12);
    assert_int_equal(fmap_fit(x, y, z, NULL, 3, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_CONST);
    assert_int_equal(s.dims, 0);
    assert_true(fabs(fmap_eval(&s, -500, 700) - 2.0) < 1e-12);
    assert_int_equal(fmap_fit(x, y, z, NULL, 4, FMAP_TPS, 0, &s, &e), 0);
    assert_true(fabs(fmap_eval(&s, 100, 200) - 3.0) < 1e-12);

    x[2] = x[3] = 1100;
    z[0] = z[1] = 1.0;
    z[2] = z[3] = 2.0;
    assert_int_equal(fmap_fit(x, y, z, NULL, 2, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.model, FMAP_CONST);
    assert_int_equal(fmap_fit(x, y, z, NULL, 4, FMAP_TPS, 0, &s, &e), 0);
    assert_int_equal(s.dims, 1);
    assert_true(fabs(fmap_eval(&s, 600, 200) - 1.5) < 1e-9);
    assert_true(fabs(fmap_eval(&s, 600, 5200) - 1.5) < 1e-9);
}

/* Two rows of points (a plan two tiles high): the quadratic's y^2 term
 * cannot be told from the plane's terms there; the undetermined part is
 * left at its smallest, so the surface follows the rows and does not
 * blow up away from them. */
static void
test_two_rows_do_not_break_the_quadratic(void **state)
{
    double x[16], y[16], z[16];
    struct fmap_surface s;
    struct ss_err e;
    int i;

    for (i = 0; i < 16; i++) {
        x[i] = 1000 + 1800.0 * (i % 8);
        y[i] = i < 8 ? 4000 : 4700;
        z[i] = true_z(x[i], y[i]);
    }
    assert_int_equal(fmap_fit(x, y, z, NULL, 16, FMAP_QUAD, 0, &s, &e), 0);
    print_message("# two rows: model %s dims %d rms %.3f um, 10 mm away "
                  "%.2f um off\n", fmap_model_name(s.model), s.dims,
                  s.rms_um, fmap_eval(&s, 8000, 14000) - true_z(8000, 14000));
    assert_int_equal(s.dims, 2);
    for (i = 0; i < 16; i++)
        assert_true(fabs(fmap_eval(&s, x[i], y[i]) - z[i]) < 0.1);
    assert_true(fabs(fmap_eval(&s, 8000, 14000) - true_z(8000, 14000)) < 3);
    assert_true(fabs(fmap_eval(&s, 8000, 500) - true_z(8000, 500)) < 3);
}

/* Thin-plate candidates with a point measured twice (a refocus at the
 * same tile) and with a collinear subset: the fit succeeds and stays
 * within the noise at the points. */
static void
test_thin_plate_with_duplicate_points(void **state)
{
    double x[38], y[38], z[38];
    struct fmap_surface s;
    struct ss_err e;
    int i, n = grid_points(6, 0.05, x, y, z);

    x[n] = x[14];
    y[n] = y[14];
    z[n++] = z[14] + 0.1;
    x[n] = x[14];
    y[n] = y[14];
    z[n++] = z[14] - 0.1;
    assert_int_equal(fmap_fit(x, y, z, NULL, n, FMAP_TPS, 0, &s, &e), 0);
    print_message("# duplicates: model %s rms %.3f um\n",
                  fmap_model_name(s.model), s.rms_um);
    assert_true(s.rms_um < 0.3);
    for (i = 0; i < n; i++)
        assert_true(fabs(fmap_eval(&s, x[i], y[i]) - true_z(x[i], y[i]))
                    < 0.5);
}

/* The acquisition map of a single column of three tiles, fitted and
 * refitted from stored points as the daemon does. */
static void
test_acq_map_of_one_column(void **state)
{
    struct acq_focus_map fm;
    struct ss_err e;
    int i;

    memset(&fm, 0, sizeof(fm));
    fm.npoints = 3;
    fm.points = calloc(3, sizeof(*fm.points));
    for (i = 0; i < 3; i++) {
        fm.points[i].x_um = 3512;
        fm.points[i].y_um = 2384 + 691.2 * i;
        fm.points[i].z_um = true_z(3512, fm.points[i].y_um);
        fm.points[i].ok = true;
    }
    assert_int_equal(acq_focus_map_fit(&fm, &e), 0);
    for (i = 0; i < 3; i++)
        assert_true(fabs(acq_focus_map_z(&fm, 3000, fm.points[i].y_um) -
                         fm.points[i].z_um) < 0.05);
    free(fm.points);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_points_give_the_exact_plane),
        cmocka_unit_test(test_tilted_bowed_slide_within_half_a_micron),
        cmocka_unit_test(test_plane_alone_misses_the_bow),
        cmocka_unit_test(test_outlier_is_dropped_and_refit_is_stable),
        cmocka_unit_test(test_thin_plate_follows_a_local_bump),
        cmocka_unit_test(test_no_usable_point_is_no_focus),
        cmocka_unit_test(test_acq_map_refit_from_stored_points),
        cmocka_unit_test(test_three_collinear_points_fit_along_the_line),
        cmocka_unit_test(test_diagonal_line_with_noise_is_flat_across),
        cmocka_unit_test(test_nearly_collinear_points_do_not_tilt_across),
        cmocka_unit_test(test_one_two_and_duplicate_points),
        cmocka_unit_test(test_two_rows_do_not_break_the_quadratic),
        cmocka_unit_test(test_thin_plate_with_duplicate_points),
        cmocka_unit_test(test_acq_map_of_one_column),
    };

    return cmocka_run_group_tests_name("focus_map", tests, NULL, NULL);
}
