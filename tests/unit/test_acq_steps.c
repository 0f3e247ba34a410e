/* SPDX-License-Identifier: MIT */
/*
 * Single acquisition steps on the simulated microscope (a 1024 × 768
 * sensor at 20x, to keep the tests quick): field case S1 (settle time 0
 * shows the sharpness drop), F1 at tile level (blank glass: no focus,
 * low confidence, z from the map, within limits) and at map level (the
 * tile of a focus point on blank glass, and only it, flagged), a
 * restarted session repeating a tile bit for bit, exposure flags,
 * calibration files and staleness, the dark frame without lamp control,
 * refusals with their messages, frames kept intact in memory by saving
 * them, and the focus map of a single column of tiles.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"
#include "imaging/flatfield.h"
#include "imaging/focus.h"
#include "scan/acq_int.h"

struct rig {
    struct microscope *m;
    struct sim *s;
    struct sim_geometry g;
    struct acq_profile p;
    struct acq_options o;
};

static void
rig_open(struct rig *r, int sensor_w, int sensor_h)
{
    struct sim_config c;
    struct ss_err e;

    memset(r, 0, sizeof(*r));
    sim_config_default(&c);
    c.sensor_w = sensor_w;
    c.sensor_h = sensor_h;
    assert_int_equal(sim_microscope_new(&c, &r->m, &e), 0);
    assert_int_equal(r->m->cam->ops->open(r->m->cam, &e), 0);
    assert_int_equal(r->m->stage->ops->open(r->m->stage, &e), 0);
    assert_int_equal(r->m->stage->ops->home(r->m->stage, &e), 0);
    r->s = sim_of(r->m);
    sim_geometry_get(r->s, &r->g);
    acq_profile_default(&r->p, "HE", NULL);
    acq_options_default(&r->o);
    r->o.blank_x_um = r->g.blank_x_um;
    r->o.blank_y_um = r->g.blank_y_um;
}

/* A focus map made from the true surface at 3 × 3 points, as if measured
 * exactly. */
static struct acq_focus_map *
truth_map(struct rig *r)
{
    struct acq_focus_map *fm = calloc(1, sizeof(*fm));
    int i;

    fm->npoints = 9;
    fm->points = calloc(9, sizeof(*fm->points));
    for (i = 0; i < 9; i++) {
        struct acq_focus_point *q = &fm->points[i];
        q->x_um = r->g.image_x_um + r->g.image_w_um * (0.2 + 0.3 * (i % 3));
        q->y_um = r->g.image_y_um + r->g.image_h_um * (0.2 + 0.3 * (i / 3));
        q->z_um = sim_focus_z(r->s, q->x_um, q->y_um);
        q->ok = true;
    }
    assert_int_equal(acq_focus_map_fit(fm, NULL), 0);
    return fm;
}

static struct acq_tile
tile_at(double x, double y)
{
    struct acq_tile t = { 0, 0, 0, x, y, 1.0 };

    return t;
}

static struct acq_plan
plan_of(const struct rig *r, struct acq_tile *tiles, int n)
{
    struct acq_plan p;

    memset(&p, 0, sizeof(p));
    p.frame_w = r->m->cam->frame_w;
    p.frame_h = r->m->cam->frame_h;
    p.pixel_um = r->m->pixel_um;
    p.step_x_um = p.frame_w * p.pixel_um * 0.9;
    p.step_y_um = p.frame_h * p.pixel_um * 0.9;
    p.rows = 1;
    p.cols = p.ntiles = p.cells_total = n;
    p.tiles = tiles;
    return p;
}

/* One frame at pos after a full-speed move, with the given settle time
 * and reading tolerance (a huge one also turns off the verification,
 * which would otherwise see the ringing as lost steps); returns its
 * sharpness and the true motion during the exposure. */
static double
frame_after_move(struct rig *r, double settle_ms, double tol_um,
                 const double pos[3], double *motion_um)
{
    double from[3] = { pos[0] - 1000, pos[1], pos[2] }, sharp;
    struct motion_cfg mc;
    struct motion mo;
    struct sim_truth t;
    struct img *f;
    struct ss_err e;

    r->o.settle_ms = settle_ms;
    r->o.settle_tol_um = tol_um;
    acq__motion_cfg(&r->o, &mc);
    if (tol_um > 100)
        mc.verify_tol_um = tol_um;
    motion_init(&mo, r->m->stage, r->m->clock, &mc);
    assert_int_equal(motion_move_to(&mo, from, NULL, &e), 0);
    assert_int_equal(motion_move_to(&mo, pos, NULL, &e), 0);
    assert_int_equal(r->m->cam->ops->capture(r->m->cam, &f, &e), 0);
    sim_truth_last(r->s, &t);
    *motion_um = t.motion_um;
    sharp = focus_sharpness(f, 1);
    img_free(f);
    return sharp;
}

/* S1: the simulated stage reports idle while an 8 µm overshoot still
 * rings (τ 12 ms, under 0.5 µm after 40 ms).  With the 50 ms settle time
 * the frame is still.  With settle time 0 and a controller whose readings
 * do not show the ringing (tolerance so wide that any two readings
 * agree), the stage moves during the exposure and the frame is visibly
 * less sharp; with settle time 0 but the two-readings check, the ringing
 * the encoder reports holds the capture back part of the way. */
static void
test_s1_settle_time_zero_shows_the_sharpness_drop(void **state)
{
    struct rig r;
    struct ss_err e;
    double pos[3], m0, m50, mr, s0, s50, sr;

    rig_open(&r, 1024, 768);
    pos[0] = r.g.image_x_um + 1500;
    pos[1] = r.g.image_y_um + 1200;
    pos[2] = sim_focus_z(r.s, pos[0] + 256, pos[1] + 192);
    r.p.exposure_ms = 40;
    assert_int_equal(acq__set_camera(r.m, &r.p, &r.o, false, &e), 0);
    s50 = frame_after_move(&r, 50, 0.5, pos, &m50);
    s0 = frame_after_move(&r, 0, 1e9, pos, &m0);
    sr = frame_after_move(&r, 0, 0.5, pos, &mr);
    print_message("# 40 ms exposures: settle 50 ms: motion %.3f um, "
                  "sharpness %.5f; settle 0: %.3f um, %.5f; settle 0 with "
                  "readings: %.3f um, %.5f\n", m50, s50, m0, s0, mr, sr);
    assert_true(m50 < 0.05);
    assert_true(m0 > 0.5);
    assert_true(s0 < 0.9 * s50);
    assert_true(mr < m0);
    microscope_free(r.m);
}

/* F1 at tile level: per-tile autofocus on blank glass gives up within
 * one sweep, keeps the map's z (within the travel) and flags the tile. */
static void
test_f1_blank_glass_tile_is_low_confidence(void **state)
{
    struct rig r;
    struct acq_focus_map *fm;
    struct acq_session *s;
    struct acq_tile t;
    struct acq_plan plan;
    struct acq_tile_result res;
    struct ss_err e;

    rig_open(&r, 1024, 768);
    fm = truth_map(&r);
    r.o.focus_mode = ACQ_FOCUS_EACH;
    t = tile_at(r.g.blank_x_um, r.g.blank_y_um);
    plan = plan_of(&r, &t, 1);
    assert_int_equal(acq_session_open(r.m, &r.p, NULL, fm, &r.o, &s, &e), 0);
    assert_int_equal(acq_tile_capture(s, &plan, &t, &res, &e), 0);
    print_message("# blank glass: %d focus frames, z %.2f (map %.2f), "
                  "flags %d\n", res.focus_captures, res.z_um, res.z_pred_um,
                  res.flags);
    assert_true(res.flags & ACQ_TILE_LOWCONF);
    assert_true(res.focus_captures <= 11);
    assert_true(fabs(res.z_um - res.z_pred_um) < 0.5);
    assert_true(res.z_um >= r.g.limits.min_um[2] &&
                res.z_um <= r.g.limits.max_um[2]);
    acq_tile_result_clear(&res);
    acq_session_free(s);
    acq_focus_map_free(fm);
    microscope_free(r.m);
}

/* F1 at map level: a plan of three tissue tiles in a column and one on
 * blank glass puts a focus point on each.  The glass point finds no
 * focus and is left out of the map; with tiles at the map's z, its tile
 * is taken at the surface's prediction from the other points, within the
 * z travel, and only it is flagged low-confidence (focus guessed). */
static void
test_f1_blank_glass_focus_point_flags_its_tile(void **state)
{
    struct rig r;
    struct acq_focus_map *fm;
    struct acq_session *s;
    struct acq_tile tiles[4];
    struct acq_plan plan;
    struct acq_tile_result res;
    struct ss_err e;
    int i, flagged = 0;

    rig_open(&r, 1024, 768);
    plan = plan_of(&r, tiles, 4);
    plan.rows = 3;
    plan.cols = 2;
    plan.cells_total = 6;
    for (i = 0; i < 3; i++) {
        tiles[i] = tile_at(r.g.image_x_um + 1500,
                           r.g.image_y_um + 800 + plan.step_y_um * i);
        tiles[i].index = tiles[i].row = i;
    }
    tiles[3] = tile_at(r.g.blank_x_um, r.g.blank_y_um);
    tiles[3].index = 3;
    tiles[3].col = 1;
    assert_int_equal(acq_focus_map_build(r.m, &r.p, &plan, &r.o, &fm, &e),
                     0);
    assert_int_equal(fm->npoints, 4);
    assert_false(fm->points[3].ok);
    for (i = 0; i < 3; i++)
        assert_true(fm->points[i].ok);
    r.o.focus_mode = ACQ_FOCUS_MAP;
    assert_int_equal(acq_session_open(r.m, &r.p, NULL, fm, &r.o, &s, &e), 0);
    for (i = 0; i < 4; i++) {
        assert_int_equal(acq_tile_capture(s, &plan, &tiles[i], &res, &e), 0);
        print_message("# tile %d: z %.2f um (map %.2f), flags %d\n", i,
                      res.z_um, res.z_pred_um, res.flags);
        assert_true(res.z_um >= r.g.limits.min_um[2] &&
                    res.z_um <= r.g.limits.max_um[2]);
        assert_true(res.z_pred_um >= r.g.limits.min_um[2] &&
                    res.z_pred_um <= r.g.limits.max_um[2]);
        if (res.flags & ACQ_TILE_LOWCONF)
            flagged |= 1 << i;
        if (i == 3)
            assert_true(fabs(res.z_um - res.z_pred_um) < 0.5);
        acq_tile_result_clear(&res);
    }
    assert_int_equal(flagged, 1 << 3);
    acq_session_free(s);
    acq_focus_map_free(fm);
    microscope_free(r.m);
}

/* A session that stops after tile 2 and a fresh one that starts over
 * from the stored calibration and focus points, with the stage left
 * elsewhere, give tile 2 bit for bit. */
static void
test_restart_repeats_a_tile_exactly(void **state)
{
    struct rig r;
    struct acq_calib *cal, *cal2;
    struct acq_focus_map *fm, fm2;
    struct acq_session *s;
    struct acq_tile tiles[3];
    struct acq_plan plan;
    struct acq_tile_result res, again;
    struct ss_err e;
    int i;

    rig_open(&r, 1024, 768);
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    fm = truth_map(&r);
    for (i = 0; i < 3; i++)
        tiles[i] = tile_at(r.g.image_x_um + 1200 + 460.8 * i,
                           r.g.image_y_um + 1200);
    plan = plan_of(&r, tiles, 3);
    assert_int_equal(acq_session_open(r.m, &r.p, cal, fm, &r.o, &s, &e), 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(acq_tile_capture(s, &plan, &tiles[i], &res, &e), 0);
        if (i < 2)
            acq_tile_result_clear(&res);
    }
    acq_session_free(s);

    assert_int_equal(acq_calib_save(cal, tu_tmp("calib"), &e), 0);
    assert_int_equal(acq_calib_load(tu_tmp("calib"), &cal2, &e), 0);
    memset(&fm2, 0, sizeof(fm2));
    fm2.npoints = fm->npoints;
    fm2.points = calloc(9, sizeof(*fm2.points));
    memcpy(fm2.points, fm->points, 9 * sizeof(*fm2.points));
    assert_int_equal(acq_focus_map_fit(&fm2, &e), 0);
    assert_int_equal(acq_session_open(r.m, &r.p, cal2, &fm2, &r.o, &s, &e),
                     0);
    assert_int_equal(acq_tile_capture(s, &plan, &tiles[0], &again, &e), 0);
    acq_tile_result_clear(&again);
    assert_int_equal(acq_tile_capture(s, &plan, &tiles[2], &again, &e), 0);
    assert_memory_equal(res.frame->data, again.frame->data,
                        img_bytes(res.frame));
    assert_true(res.x_um == again.x_um && res.z_um == again.z_um);
    assert_int_equal(res.flags, again.flags);
    acq_tile_result_clear(&res);
    acq_tile_result_clear(&again);
    acq_session_free(s);
    free(fm2.points);
    acq_focus_map_free(fm);
    acq_calib_free(cal);
    acq_calib_free(cal2);
    microscope_free(r.m);
}

/* A tile exposed as calibrated has no flags; the same tile with the
 * camera left at 4× the exposure is flagged saturated, at a tenth far
 * too dark. */
static void
test_exposure_flags_on_the_simulator(void **state)
{
    struct rig r;
    struct acq_calib *cal;
    struct acq_focus_map *fm;
    struct acq_session *s;
    struct acq_tile t;
    struct acq_plan plan;
    struct acq_tile_result res;
    struct cam_settings cs = { 1000, 1, { 1, 1, 1 } };
    struct ss_err e;

    rig_open(&r, 1024, 768);
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    fm = truth_map(&r);
    t = tile_at(r.g.image_x_um + 1500, r.g.image_y_um + 1200);
    plan = plan_of(&r, &t, 1);
    assert_int_equal(acq_session_open(r.m, &r.p, cal, fm, &r.o, &s, &e), 0);
    assert_int_equal(acq_tile_capture(s, &plan, &t, &res, &e), 0);
    assert_int_equal(res.flags & (ACQ_TILE_SATURATED | ACQ_TILE_DARK), 0);
    assert_true(res.tissue_frac > 0.2);
    acq_tile_result_clear(&res);
    assert_int_equal(r.m->cam->ops->configure(r.m->cam, &cs, &e), 0);
    assert_int_equal(acq_tile_capture(s, &plan, &t, &res, &e), 0);
    print_message("# at 1000 ms: %.1f %% of tissue saturated\n",
                  100 * res.sat_frac);
    assert_true(res.flags & ACQ_TILE_SATURATED);
    acq_tile_result_clear(&res);
    cs.exposure_ms = 25;
    assert_int_equal(r.m->cam->ops->configure(r.m->cam, &cs, &e), 0);
    assert_int_equal(acq_tile_capture(s, &plan, &t, &res, &e), 0);
    assert_true(res.flags & ACQ_TILE_DARK);
    acq_tile_result_clear(&res);
    acq_session_free(s);
    acq_focus_map_free(fm);
    acq_calib_free(cal);
    microscope_free(r.m);
}

static void
test_calibration_files_and_staleness(void **state)
{
    struct rig r;
    struct acq_calib *cal, *back;
    struct ss_err e;
    FILE *f;

    rig_open(&r, 256, 192);
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    assert_string_equal(cal->dark_method, "lamp-off");
    assert_int_equal(acq_calib_save(cal, tu_tmp("c1"), &e), 0);
    assert_int_equal(acq_calib_load(tu_tmp("c1"), &back, &e), 0);
    assert_memory_equal(cal->flat->data, back->flat->data,
                        img_bytes(cal->flat));
    assert_memory_equal(cal->dark->data, back->dark->data,
                        img_bytes(cal->dark));
    assert_string_equal(back->stain, "HE");
    assert_string_equal(back->taken_utc, cal->taken_utc);
    assert_true(back->exposure_ms == 250);
    assert_true(acq_calib_matches(back, &r.p));
    assert_false(acq_calib_is_stale(back, 24));
    snprintf(back->taken_utc, sizeof(back->taken_utc),
             "2020-01-01T00:00:00Z");
    assert_true(acq_calib_is_stale(back, 24));
    snprintf(back->taken_utc, sizeof(back->taken_utc), "yesterday");
    assert_true(acq_calib_is_stale(back, 1e9));
    acq_calib_free(back);

    assert_int_equal(acq_calib_load(tu_tmp("absent"), &back, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "absent/calib.json"));
    f = fopen(tu_tmp("c1/flat.tif"), "w");
    fputs("not a tiff", f);
    fclose(f);
    assert_int_equal(acq_calib_load(tu_tmp("c1"), &back, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "c1/flat.tif"));
    assert_null(back);
    acq_calib_free(cal);
    microscope_free(r.m);
}

/* Without lamp control the dark frame comes from the shortest exposure,
 * and still reads the black level. */
static void
test_dark_frame_without_lamp_control(void **state)
{
    struct rig r;
    struct cam_ops ops;
    struct acq_calib *cal;
    struct ss_err e;

    rig_open(&r, 256, 192);
    ops = *r.m->cam->ops;
    ops.set_lamp = NULL;
    r.m->cam->ops = &ops;
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    assert_string_equal(cal->dark_method, "min-exposure");
    assert_true(fabs(img_f32(cal->dark, 128, 96)[1] - 16) < 1.0);
    acq_calib_free(cal);
    microscope_free(r.m);
}

static void
test_refusals_name_the_cause(void **state)
{
    struct rig r;
    struct acq_calib *cal;
    struct acq_profile ki67;
    struct acq_session *s;
    struct acq_plan *plan;
    struct overview *ov;
    struct ss_err e;

    rig_open(&r, 256, 192);
    assert_int_equal(acq_profile_default(&ki67, "KI67", &e), 0);
    assert_true(ki67.exposure_ms == 600);
    assert_int_equal(acq_profile_default(&ki67, "PAS", &e), SS_ECONFIG);
    assert_non_null(strstr(e.msg, "'PAS'"));
    acq_profile_default(&ki67, "KI67", NULL);
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    assert_int_equal(acq_session_open(r.m, &ki67, cal, NULL, &r.o, &s, &e),
                     SS_ECONFIG);
    assert_non_null(strstr(e.msg, "does not fit profile KI67"));
    acq_calib_free(cal);
    r.p.exposure_ms = 2000;
    /* The profile's exposure is wrong for the lamp: a configuration
     * error ("config" to a client), not an internal one. */
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), SS_ECONFIG);
    assert_non_null(strstr(e.msg, "clipped (exposure too long"));
    assert_null(cal);
    ov = r.m->ov;
    r.m->ov = NULL;
    assert_int_equal(acq_plan_overview(r.m, &r.o, &plan, NULL, NULL, &e),
                     SS_ECONFIG);
    assert_non_null(strstr(e.msg, "scan region"));
    r.o.region_x_um = 1000;
    r.o.region_y_um = 1000;
    r.o.region_w_um = 500;
    r.o.region_h_um = 300;
    assert_int_equal(acq_plan_overview(r.m, &r.o, &plan, NULL, NULL, &e), 0);
    assert_true(plan->ntiles >= 4);
    acq_plan_free(plan);
    r.m->ov = ov;
    microscope_free(r.m);
}

/* Saving a calibration leaves its frames as they were in memory (the
 * daemon goes on correcting tiles with the frames it has just stored):
 * byte for byte, and a blank frame corrected with them after the save is
 * the flat-field white, not a white-out. */
static void
test_calibration_save_keeps_the_frames_in_memory(void **state)
{
    struct rig r;
    struct acq_calib *cal;
    struct img *dark, *flat, *raw = NULL, *out = NULL;
    struct ss_err e;
    const uint8_t *px;
    double sum = 0, mean;
    size_t i, n;

    rig_open(&r, 1024, 768);
    assert_int_equal(acq_calibrate(r.m, &r.p, &r.o, &cal, &e), 0);
    dark = img_dup(cal->dark);
    flat = img_dup(cal->flat);
    assert_int_equal(acq_calib_save(cal, tu_tmp("kept"), &e), 0);
    assert_memory_equal(dark->data, cal->dark->data, img_bytes(dark));
    assert_memory_equal(flat->data, cal->flat->data, img_bytes(flat));
    assert_int_equal(r.m->cam->ops->capture(r.m->cam, &raw, &e), 0);
    assert_int_equal(ff_correct(raw, cal->dark, cal->flat, r.o.white, &out,
                                &e), 0);
    px = out->data;
    n = (size_t)out->w * out->h * out->c;
    for (i = 0; i < n; i++)
        sum += px[i];
    mean = sum / n;
    print_message("# blank glass corrected after the save: mean %.1f\n",
                  mean);
    assert_true(fabs(mean - r.o.white) < 3);
    img_free(raw);
    img_free(out);
    img_free(dark);
    img_free(flat);
    acq_calib_free(cal);
    microscope_free(r.m);
}

/* A plan of one column of three tiles puts its three focus points on a
 * line: the map is built (it used to fail "plane fit to 3 points") and
 * predicts every tile within the depth of field. */
static void
test_focus_map_of_one_column_on_the_simulator(void **state)
{
    struct rig r;
    struct acq_focus_map *fm;
    struct acq_tile tiles[3];
    struct acq_plan plan;
    struct ss_err e;
    double cx, cy, dz, worst = 0;
    int i;

    rig_open(&r, 1024, 768);
    plan = plan_of(&r, tiles, 3);
    plan.rows = 3;
    plan.cols = 1;
    for (i = 0; i < 3; i++) {
        tiles[i] = tile_at(r.g.image_x_um + 1500,
                           r.g.image_y_um + 800 + plan.step_y_um * i);
        tiles[i].index = tiles[i].row = i;
    }
    assert_int_equal(acq_focus_map_build(r.m, &r.p, &plan, &r.o, &fm, &e),
                     0);
    for (i = 0; i < 3; i++) {
        cx = tiles[i].x_um + 0.5 * plan.frame_w * plan.pixel_um;
        cy = tiles[i].y_um + 0.5 * plan.frame_h * plan.pixel_um;
        dz = acq_focus_map_z(fm, cx, cy) - sim_focus_z(r.s, cx, cy);
        worst = fmax(worst, fabs(dz));
    }
    print_message("# one column: model %s on a %s, worst |dz| %.2f um\n",
                  fmap_model_name(fm->model),
                  fm->surf.dims == 1 ? "line" : "area", worst);
    assert_int_equal(fm->surf.dims, 1);
    assert_true(worst < 0.5);
    acq_focus_map_free(fm);
    microscope_free(r.m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_s1_settle_time_zero_shows_the_sharpness_drop),
        cmocka_unit_test(test_f1_blank_glass_tile_is_low_confidence),
        cmocka_unit_test(test_f1_blank_glass_focus_point_flags_its_tile),
        cmocka_unit_test(test_restart_repeats_a_tile_exactly),
        cmocka_unit_test(test_exposure_flags_on_the_simulator),
        cmocka_unit_test(test_calibration_files_and_staleness),
        cmocka_unit_test(test_dark_frame_without_lamp_control),
        cmocka_unit_test(test_refusals_name_the_cause),
        cmocka_unit_test(test_calibration_save_keeps_the_frames_in_memory),
        cmocka_unit_test(test_focus_map_of_one_column_on_the_simulator),
    };

    return cmocka_run_group_tests_name("acq_steps", tests, NULL, NULL);
}
