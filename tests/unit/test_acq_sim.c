/* SPDX-License-Identifier: MIT */
/*
 * The acquisition steps on the simulated microscope, measured against its
 * ground truth: flat-field residual shading and field case F2, tissue
 * coverage of the plan, autofocus accuracy and frame count, focus map
 * error on a tilted and bowed slide, depth of field of every tile and the
 * re-take rate, field cases S1 (settle time) and F1 (blank glass), the
 * exposure flags, calibration files, and a restarted session repeating a
 * tile exactly.
 *
 * One whole scan of the default H&E phantom (4 × 3 mm, 20x) runs once in
 * the group setup; the tests read its results.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "drivers/sim/sim.h"
#include "imaging/flatfield.h"
#include "imaging/focus.h"
#include "scan/acq_int.h"

struct tile_truth {
    double dz_um;
    int retakes, flags;
};

struct scan {
    struct microscope *m;
    struct sim *s;
    struct sim_geometry g;
    struct acq_profile p;
    struct acq_options o;
    struct acq_calib *cal;
    struct acq_plan *plan;
    struct acq_focus_map *fm;
    struct tile_truth *tt;
    double t_calib_ms, t_plan_ms, t_map_ms, t_tiles_ms;
};

static struct scan sc;

static int
open_sim(struct sim_config *c, struct microscope **m, struct ss_err *e)
{
    int rc = sim_microscope_new(c, m, e);

    if (rc == 0)
        rc = (*m)->cam->ops->open((*m)->cam, e);
    if (rc == 0)
        rc = (*m)->stage->ops->open((*m)->stage, e);
    if (rc == 0)
        rc = (*m)->stage->ops->home((*m)->stage, e);
    return rc;
}

static int
capture_all(struct scan *x, struct ss_err *e)
{
    struct acq_session *ss;
    struct acq_tile_result r;
    struct sim_truth t;
    int i, rc;

    rc = acq_session_open(x->m, &x->p, x->cal, x->fm, &x->o, &ss, e);
    if (rc != 0)
        return rc;
    x->tt = calloc((size_t)x->plan->ntiles, sizeof(*x->tt));
    for (i = 0; i < x->plan->ntiles && rc == 0; i++) {
        rc = acq_tile_capture(ss, x->plan, &x->plan->tiles[i], &r, e);
        if (rc != 0)
            break;
        sim_truth_last(x->s, &t);
        x->tt[i].dz_um = t.dz_um;
        x->tt[i].retakes = r.retakes;
        x->tt[i].flags = r.flags;
        acq_tile_result_clear(&r);
    }
    acq_session_free(ss);
    return rc;
}

/* The whole scan: calibrate, plan, focus map, every tile. */
static int
setup_scan(void **state)
{
    struct sim_config c;
    struct ss_err e;
    double t;

    sim_config_default(&c);
    if (open_sim(&c, &sc.m, &e) != 0)
        goto fail;
    sc.s = sim_of(sc.m);
    sim_geometry_get(sc.s, &sc.g);
    acq_profile_default(&sc.p, "HE", NULL);
    acq_options_default(&sc.o);
    sc.o.blank_x_um = sc.g.blank_x_um;
    sc.o.blank_y_um = sc.g.blank_y_um;
    t = sim_clock_ms(sc.s);
    if (acq_calibrate(sc.m, &sc.p, &sc.o, &sc.cal, &e) != 0)
        goto fail;
    sc.t_calib_ms = sim_clock_ms(sc.s) - t;
    t = sim_clock_ms(sc.s);
    if (acq_plan_overview(sc.m, &sc.o, &sc.plan, NULL, NULL, &e) != 0)
        goto fail;
    sc.t_plan_ms = sim_clock_ms(sc.s) - t;
    t = sim_clock_ms(sc.s);
    if (acq_focus_map_build(sc.m, &sc.p, sc.plan, &sc.o, &sc.fm, &e) != 0)
        goto fail;
    sc.t_map_ms = sim_clock_ms(sc.s) - t;
    t = sim_clock_ms(sc.s);
    if (capture_all(&sc, &e) != 0)
        goto fail;
    sc.t_tiles_ms = sim_clock_ms(sc.s) - t;
    print_message("# scan: %d tiles, virtual s: calibration %.1f, plan %.1f, "
                  "focus map %.1f (%d frames), tiles %.1f\n",
                  sc.plan->ntiles, sc.t_calib_ms / 1000, sc.t_plan_ms / 1000,
                  sc.t_map_ms / 1000, sc.fm->captures, sc.t_tiles_ms / 1000);
    return 0;
fail:
    print_message("# setup failed: %s\n", e.msg);
    return -1;
}

static int
teardown_scan(void **state)
{
    free(sc.tt);
    acq_focus_map_free(sc.fm);
    acq_plan_free(sc.plan);
    acq_calib_free(sc.cal);
    microscope_free(sc.m);
    return 0;
}

/* Mean of channel c over the bs × bs block at (x, y). */
static double
block_mean(const struct img *im, int x, int y, int bs, int c)
{
    double s = 0;
    int i, j;

    for (j = y; j < y + bs; j++)
        for (i = x; i < x + bs; i++)
            s += img_u8(im, i, j)[c];
    return s / (bs * bs);
}

/* A fresh blank-glass frame, raw and corrected: 30 % raw fall-off, at
 * most 2 % max/min after correction (64 × 64 block means), glass at the
 * fixed white. */
static void
test_flatfield_residual_shading(void **state)
{
    struct motion_cfg mc;
    struct motion mo;
    struct img *raw, *out;
    struct ss_err e;
    double pos[3] = { sc.g.blank_x_um, sc.g.blank_y_um, 0 }, raw_r, out_r;

    acq__motion_cfg(&sc.o, &mc);
    motion_init(&mo, sc.m->stage, sc.m->clock, &mc);
    assert_int_equal(acq__set_camera(sc.m, &sc.p, &sc.o, false, &e), 0);
    assert_int_equal(motion_move_to(&mo, pos, NULL, &e), 0);
    assert_int_equal(sc.m->cam->ops->capture(sc.m->cam, &raw, &e), 0);
    assert_int_equal(ff_correct(raw, sc.cal->dark, sc.cal->flat, 240, &out,
                                &e), 0);
    raw_r = ff_shading_ratio(raw, 1, 64);
    out_r = ff_shading_ratio(out, -1, 64);
    print_message("# blank field max/min: raw green %.3f, corrected %.4f, "
                  "centre %.1f\n", raw_r, out_r,
                  block_mean(out, 992, 736, 64, 1));
    assert_true(sc.cal->falloff > 0.28);
    assert_true(out_r <= 1.02);
    assert_true(fabs(block_mean(out, 992, 736, 64, 1) - 240) <= 2);
    img_free(raw);
    img_free(out);
}

/* F2 on the simulator: its calibration has dark 16 and a blank field of
 * 16 + 200 g at the centre and 16 + 140 g at a corner (g: the glass
 * transmittance; 216 and 156 for clear glass).  On a tissue tile, the
 * (I - D) / (F - D) correction matches the true transmittance (the
 * simulator's ideal image) within 3 % at the centre and at a corner;
 * dividing by the flat alone leaves the corner brighter than the centre
 * relative to the truth. */
static void
test_f2_on_the_simulator(void **state)
{
    double g[3], d = img_f32(sc.cal->dark, 1024, 768)[1];
    double fc = img_f32(sc.cal->flat, 1024, 768)[1];
    double fk = img_f32(sc.cal->flat, 4, 4)[1];
    const struct acq_tile *t = &sc.plan->tiles[0];
    struct motion_cfg mc;
    struct motion mo;
    struct img *raw, *ok, *flat_only, *truth;
    struct ss_err e;
    double pos[3], tc, tk, c_ok, k_ok, c_fo, k_fo;
    int i;

    sim_glass_rgb(sc.s, g);
    print_message("# dark %.1f, flat centre %.1f, corner %.1f, glass %.3f\n",
                  d, fc, fk, g[1]);
    assert_true(fabs(d - 16) < 1.0);
    assert_true(fabs(fc - (16 + 200 * g[1])) < 4.0);
    assert_true(fabs(fk - (16 + 140 * g[1])) < 4.0);
    for (i = 0; i < sc.plan->ntiles; i++)
        if (sc.plan->tiles[i].tissue_frac > t->tissue_frac)
            t = &sc.plan->tiles[i];
    pos[0] = t->x_um;
    pos[1] = t->y_um;
    pos[2] = acq_focus_map_z(sc.fm, t->x_um + 512, t->y_um + 384);
    acq__motion_cfg(&sc.o, &mc);
    motion_init(&mo, sc.m->stage, sc.m->clock, &mc);
    assert_int_equal(acq__set_camera(sc.m, &sc.p, &sc.o, false, &e), 0);
    assert_int_equal(motion_approach(&mo, pos, NULL, &e), 0);
    assert_int_equal(sc.m->cam->ops->capture(sc.m->cam, &raw, &e), 0);
    assert_int_equal(ff_correct(raw, sc.cal->dark, sc.cal->flat, 240, &ok,
                                &e), 0);
    assert_int_equal(ff_correct(raw, NULL, sc.cal->flat, 240, &flat_only,
                                &e), 0);
    assert_int_equal(sim_render_truth_white(sc.s, t->x_um, t->y_um, 2048,
                                            1536, 0.5, 240, &truth, &e), 0);
    tc = block_mean(truth, 960, 704, 128, 1);
    tk = block_mean(truth, 0, 0, 128, 1);
    c_ok = block_mean(ok, 960, 704, 128, 1) / tc;
    k_ok = block_mean(ok, 0, 0, 128, 1) / tk;
    c_fo = block_mean(flat_only, 960, 704, 128, 1) / tc;
    k_fo = block_mean(flat_only, 0, 0, 128, 1) / tk;
    print_message("# corrected / truth: centre %.3f corner %.3f; flat "
                  "alone: centre %.3f corner %.3f (truth %.0f, %.0f)\n",
                  c_ok, k_ok, c_fo, k_fo, tc, tk);
    assert_true(fabs(c_ok - 1) < 0.03 && fabs(k_ok - 1) < 0.03);
    assert_true(k_fo / c_fo > 1.02);
    img_free(raw);
    img_free(ok);
    img_free(flat_only);
    img_free(truth);
}

/* Whether stage point (x, y) lies in some planned frame. */
static bool
covered(const struct acq_plan *p, double x, double y)
{
    double fw = p->frame_w * p->pixel_um, fh = p->frame_h * p->pixel_um;
    int i;

    for (i = 0; i < p->ntiles; i++)
        if (x >= p->tiles[i].x_um && x < p->tiles[i].x_um + fw &&
            y >= p->tiles[i].y_um && y < p->tiles[i].y_um + fh)
            return true;
    return false;
}

static bool
planned(const struct acq_plan *p, int row, int col)
{
    int i;

    for (i = 0; i < p->ntiles; i++)
        if (p->tiles[i].row == row && p->tiles[i].col == col)
            return true;
    return false;
}

/* Tissue area covered ≥ 99 %; of the cells of the plan's grid, extended
 * over the whole glass, those whose frame holds no tissue are ≥ 90 %
 * skipped. */
static void
test_plan_covers_tissue_and_skips_glass(void **state)
{
    const struct acq_plan *p = sc.plan;
    double fw = p->frame_w * p->pixel_um, fh = p->frame_h * p->pixel_um;
    struct img *lab, *cell;
    struct ss_err e;
    long tis = 0, cov = 0, blank = 0, blank_kept = 0;
    int x, y, r, c, k;

    assert_int_equal(sim_render_labels(sc.s, sc.g.image_x_um,
                                       sc.g.image_y_um,
                                       (int)(sc.g.image_w_um / 10),
                                       (int)(sc.g.image_h_um / 10), 10, &lab,
                                       &e), 0);
    for (y = 0; y < lab->h; y++)
        for (x = 0; x < lab->w; x++)
            if (*img_u8(lab, x, y) != SIM_LABEL_GLASS) {
                tis++;
                cov += covered(p, sc.g.image_x_um + 10 * x + 5,
                               sc.g.image_y_um + 10 * y + 5);
            }
    img_free(lab);
    for (r = -10; r < p->rows + 10; r++)
        for (c = -10; c < p->cols + 10; c++) {
            double cx = p->origin_x_um + c * p->step_x_um;
            double cy = p->origin_y_um + r * p->step_y_um;
            bool any = false;
            if (cx < 0 || cy < 0 || cx + fw > sc.g.glass_w_um ||
                cy + fh > sc.g.glass_h_um)
                continue;
            assert_int_equal(sim_render_labels(sc.s, cx, cy, (int)(fw / 8),
                                               (int)(fh / 8), 8, &cell, &e),
                             0);
            for (k = 0; k < cell->w * cell->h && !any; k++)
                any = ((uint8_t *)cell->data)[k] != SIM_LABEL_GLASS;
            img_free(cell);
            blank += !any;
            blank_kept += !any && planned(p, r, c);
        }
    print_message("# tissue covered %.4f; glass-only cells skipped %ld of "
                  "%ld\n", (double)cov / tis, blank - blank_kept, blank);
    assert_true(tis > 0);
    assert_true((double)cov / tis >= 0.99);
    assert_true(blank >= 10);
    assert_true(blank - blank_kept >= 0.90 * blank);
}

/* ±0.5 µm from up to ±20 µm away, at most 8 frames (counted by the
 * simulator too), at three places. */
static void
test_autofocus_within_half_a_micron_in_8_frames(void **state)
{
    static const double off[] = { -20, -11, -4, 0, 6, 13, 20 };
    struct motion_cfg mc;
    struct motion mo;
    struct af_result r;
    struct ss_err e;
    double worst = 0;
    int i, k, most = 0;

    acq__motion_cfg(&sc.o, &mc);
    motion_init(&mo, sc.m->stage, sc.m->clock, &mc);
    assert_int_equal(acq__set_camera(sc.m, &sc.p, &sc.o, true, &e), 0);
    for (i = 0; i < 3; i++) {
        const struct acq_tile *t = &sc.plan->tiles[(i * 5 + 2) %
                                                   sc.plan->ntiles];
        double zt = sim_focus_z(sc.s, t->x_um + 512, t->y_um + 384);
        for (k = 0; k < (int)(sizeof(off) / sizeof(off[0])); k++) {
            struct acq__focuser f = { sc.m, &mo, &sc.o, t->x_um, t->y_um,
                                      0 };
            struct sim_counters c0, c1;
            sim_counters_get(sc.s, &c0);
            assert_int_equal(acq__autofocus(&f, zt + off[k], 20, 5, &r, &e),
                             0);
            sim_counters_get(sc.s, &c1);
            assert_int_equal(c1.captures + c1.previews - c0.captures -
                             c0.previews, r.captures);
            worst = fmax(worst, fabs(r.z_um - zt));
            most = r.captures > most ? r.captures : most;
        }
    }
    print_message("# autofocus: worst error %.3f um, at most %d frames\n",
                  worst, most);
    assert_true(worst <= 0.5);
    assert_true(most <= 8);
}

/* The fitted surface against the simulator's true focal surface over the
 * planned tiles: RMS ≤ 0.5 µm. */
static void
test_focus_map_rms_against_true_surface(void **state)
{
    const struct acq_plan *p = sc.plan;
    double ss = 0, d;
    int i, j, n = 0;

    for (i = 0; i < p->ntiles; i++)
        for (j = 0; j < 9; j++) {
            double x = p->tiles[i].x_um + (j % 3) * 0.5 * p->frame_w *
                       p->pixel_um;
            double y = p->tiles[i].y_um + (j / 3) * 0.5 * p->frame_h *
                       p->pixel_um;
            d = acq_focus_map_z(sc.fm, x, y) - sim_focus_z(sc.s, x, y);
            ss += d * d;
            n++;
        }
    for (i = 0; i < sc.fm->npoints; i++)
        print_message("#   point %d (%.0f, %.0f): error %+.3f um\n", i,
                      sc.fm->points[i].x_um, sc.fm->points[i].y_um,
                      sc.fm->points[i].z_um - sim_focus_z(sc.s,
                      sc.fm->points[i].x_um, sc.fm->points[i].y_um));
    print_message("# focus map %s from %d points: RMS error %.3f um\n",
                  fmap_model_name(sc.fm->model), sc.fm->surf.nused,
                  sqrt(ss / n));
    assert_true(sc.fm->surf.nused >= 8);
    assert_true(sqrt(ss / n) <= 0.5);
}

/* Every tile within the depth of field (1 µm at 20x) of its true focus,
 * at most 5 % of the tiles re-taken. */
static void
test_every_tile_within_depth_of_field(void **state)
{
    double worst = 0;
    int i, retaken = 0;

    for (i = 0; i < sc.plan->ntiles; i++) {
        worst = fmax(worst, fabs(sc.tt[i].dz_um));
        retaken += sc.tt[i].retakes > 0;
        assert_false(sc.tt[i].flags & (ACQ_TILE_BLURRED |
                                       ACQ_TILE_SATURATED | ACQ_TILE_DARK));
    }
    print_message("# tiles: worst |dz| %.3f um, re-taken %d of %d\n", worst,
                  retaken, sc.plan->ntiles);
    assert_true(worst <= 1.0);
    assert_true(retaken <= 0.05 * sc.plan->ntiles);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatfield_residual_shading),
        cmocka_unit_test(test_f2_on_the_simulator),
        cmocka_unit_test(test_plan_covers_tissue_and_skips_glass),
        cmocka_unit_test(test_autofocus_within_half_a_micron_in_8_frames),
        cmocka_unit_test(test_focus_map_rms_against_true_surface),
        cmocka_unit_test(test_every_tile_within_depth_of_field),
    };

    return cmocka_run_group_tests_name("acq_sim", tests, setup_scan,
                                       teardown_scan);
}
