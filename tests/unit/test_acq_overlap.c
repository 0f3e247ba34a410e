/* SPDX-License-Identifier: MIT */
/*
 * The readout overlap: the simulated camera's split capture (exposure on
 * the clock at begin, readout at end, a second exposure waiting for the
 * readout, the frame independent of what happens after the exposure),
 * and scan/tile.c moving to the next tile during the readout.  A tile
 * sequence taken with the overlap is shorter than the same sequence on
 * a camera without the split capture by exactly min(readout, approach)
 * per tile transition, with frames bit for bit the same; a blurred tile
 * is re-taken at its own position; a readout that never ends misses the
 * guard's deadline and the tile is taken again.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/guard.h"
#include "drivers/sim/sim.h"
#include "scan/acq_int.h"

#define NT 6                        /* tiles: 2 rows of 3, serpentine */

struct rig {
    struct microscope *m;
    struct sim *s;
    struct sim_config c;
    struct sim_geometry g;
    struct acq_profile p;
    struct acq_options o;
    struct cam_ops plain;           /* the camera without split capture */
    struct acq_tile tiles[NT];
    struct acq_plan plan;
};

static int
new_cam(void *ctx, struct camera **out, struct ss_err *err)
{
    return sim_camera_new(ctx, out, err);
}

static int
new_stage(void *ctx, struct stage **out, struct ss_err *err)
{
    return sim_stage_new(ctx, out, err);
}

/* A 256 × 192 sensor at 20x; guard_ms > 0 wraps the devices in a guard
 * with that capture deadline. */
static void
rig_open(struct rig *r, double readout_ms, double guard_ms)
{
    struct guard_factory f = { new_cam, new_stage, NULL };
    struct guard_policy gp;
    struct ss_err e;
    int i;

    memset(r, 0, sizeof(*r));
    sim_config_default(&r->c);
    r->c.sensor_w = 256;
    r->c.sensor_h = 192;
    r->c.readout_ms = readout_ms;
    if (sim_microscope_new(&r->c, &r->m, &e) != 0)
        fail_msg("sim_microscope_new: %s", e.msg);
    r->s = sim_of(r->m);
    if (guard_ms > 0) {
        f.ctx = r->s;
        guard_policy_default(&gp);
        gp.deadline_ms[GUARD_CAM_CAPTURE] = guard_ms;
        assert_int_equal(guard_microscope_wrap(r->m, &gp, &f, &e), 0);
    }
    assert_int_equal(r->m->cam->ops->open(r->m->cam, &e), 0);
    assert_int_equal(r->m->stage->ops->open(r->m->stage, &e), 0);
    assert_int_equal(r->m->stage->ops->home(r->m->stage, &e), 0);
    sim_geometry_get(r->s, &r->g);
    acq_profile_default(&r->p, "HE", NULL);
    acq_options_default(&r->o);
    r->o.blank_x_um = r->g.blank_x_um;
    r->o.blank_y_um = r->g.blank_y_um;
    r->o.focus_z_um = sim_focus_z(r->s, r->g.image_x_um + 1300,
                                  r->g.image_y_um + 1250);
    r->plain = *r->m->cam->ops;
    r->plain.capture_begin = NULL;
    r->plain.capture_end = NULL;

    memset(&r->plan, 0, sizeof(r->plan));
    r->plan.frame_w = r->m->cam->frame_w;
    r->plan.frame_h = r->m->cam->frame_h;
    r->plan.pixel_um = r->m->pixel_um;
    r->plan.step_x_um = r->plan.frame_w * r->plan.pixel_um * 0.9;
    r->plan.step_y_um = r->plan.frame_h * r->plan.pixel_um * 0.9;
    r->plan.rows = 2;
    r->plan.cols = 3;
    r->plan.ntiles = r->plan.cells_total = NT;
    r->plan.origin_x_um = r->g.image_x_um + 1200;
    r->plan.origin_y_um = r->g.image_y_um + 1200;
    for (i = 0; i < NT; i++) {
        struct acq_tile *t = &r->tiles[i];
        t->index = i;
        t->row = i / 3;
        t->col = t->row == 0 ? i % 3 : 2 - i % 3;
        t->x_um = r->plan.origin_x_um + t->col * r->plan.step_x_um;
        t->y_um = r->plan.origin_y_um + t->row * r->plan.step_y_um;
        t->tissue_frac = 1;
    }
    r->plan.tiles = r->tiles;
}

/* The planned tiles in order, each told the next; returns the virtual
 * time, keeps the frames in res and the exposure truths in tr. */
static double
run(struct rig *r, const struct acq_focus_map *fm,
    struct acq_tile_result res[NT], struct sim_truth tr[NT])
{
    struct acq_session *ses;
    struct ss_err e;
    double t0 = sim_clock_ms(r->s);
    int i;

    if (acq_session_open(r->m, &r->p, NULL, fm, &r->o, &ses, &e) != 0)
        fail_msg("session: %s", e.msg);
    for (i = 0; i < NT; i++) {
        if (acq_tile_capture_next(ses, &r->plan, &r->tiles[i],
                                  i + 1 < NT ? &r->tiles[i + 1] : NULL,
                                  &res[i], &e) != 0)
            fail_msg("tile %d: %s", i, e.msg);
        sim_truth_last(r->s, &tr[i]);
    }
    acq_session_free(ses);
    return sim_clock_ms(r->s) - t0;
}

static void
results_clear(struct acq_tile_result res[NT])
{
    int i;

    for (i = 0; i < NT; i++)
        acq_tile_result_clear(&res[i]);
}

/* The same tiles without and with the overlap, on two identical
 * simulators: the time saved is exactly the sum over tile transitions of
 * min(readout, approach), the approach time read off the sequential
 * run's exposure times; frames and positions are bit for bit the same. */
static void
compare(double readout_ms, double settle_ms, double *saved_ms,
        double *approach_min_ms, double *approach_max_ms)
{
    struct acq_tile_result rs[NT], ro[NT];
    struct sim_truth ts[NT], to[NT];
    struct rig a, b;
    double t_seq, t_ovl, want = 0, mv;
    int i;

    rig_open(&a, readout_ms, 0);
    rig_open(&b, readout_ms, 0);
    a.o.settle_ms = b.o.settle_ms = settle_ms;
    a.m->cam->ops = &a.plain;
    assert_false(camera_overlaps_readout(a.m->cam));
    assert_true(camera_overlaps_readout(b.m->cam));
    t_seq = run(&a, NULL, rs, ts);
    t_ovl = run(&b, NULL, ro, to);
    *approach_min_ms = 1e300;
    *approach_max_ms = 0;
    for (i = 0; i + 1 < NT; i++) {
        mv = ts[i + 1].t_start_ms - (ts[i].t_end_ms + a.c.readout_ms);
        *approach_min_ms = fmin(*approach_min_ms, mv);
        *approach_max_ms = fmax(*approach_max_ms, mv);
        want += fmin(a.c.readout_ms, mv);
    }
    print_message("# readout %.0f ms, settle %.0f ms: %d tiles in %.3f ms "
                  "sequential, %.3f ms overlapped, saved %.3f ms (expected "
                  "%.3f; approaches %.1f..%.1f ms)\n", readout_ms,
                  settle_ms, NT, t_seq, t_ovl, t_seq - t_ovl, want,
                  *approach_min_ms, *approach_max_ms);
    assert_true(fabs((t_seq - t_ovl) - want) < 1e-6);
    for (i = 0; i < NT; i++) {
        assert_int_equal(rs[i].frame->w, ro[i].frame->w);
        assert_memory_equal(rs[i].frame->data, ro[i].frame->data,
                            img_bytes(rs[i].frame));
        assert_true(rs[i].x_um == ro[i].x_um && rs[i].y_um == ro[i].y_um &&
                    rs[i].z_um == ro[i].z_um);
        assert_true(ts[i].x_um == to[i].x_um && ts[i].y_um == to[i].y_um);
        assert_int_equal(rs[i].retakes, 0);
    }
    *saved_ms = t_seq - t_ovl;
    results_clear(rs);
    results_clear(ro);
    microscope_free(a.m);
    microscope_free(b.m);
}

/* Default camera: every approach (about 130 ms) outlasts the 80 ms
 * readout, so each of the 5 transitions saves the whole readout. */
static void
test_overlap_saves_the_readout_per_tile(void **state)
{
    struct sim_config c;
    double saved, lo, hi;

    sim_config_default(&c);
    compare(c.readout_ms, 50, &saved, &lo, &hi);
    assert_true(lo > c.readout_ms);
    assert_true(fabs(saved - (NT - 1) * c.readout_ms) < 1e-6);
}

/* A readout longer than any approach hides the whole approach.  The
 * exposure then starts later after the move than without the overlap, so
 * the settle time is long enough for the ringing to be gone either way
 * and the frames to stay the same. */
static void
test_overlap_hides_a_shorter_approach(void **state)
{
    double saved, lo, hi;

    compare(600, 150, &saved, &lo, &hi);
    assert_true(hi < 600);
    assert_true(saved > (NT - 1) * lo - 1e-6);
}

/* The camera alone: begin costs the exposure, end the readout; a move
 * during the readout overlaps it; a second exposure waits for the
 * readout; the frame equals a plain capture's at the same place; end
 * without begin is refused. */
static void
test_split_capture_on_the_clock(void **state)
{
    struct cam_settings cs = { 100, 1.0, { 1, 1, 1 } };
    struct rig a, b;
    struct img *fa = NULL, *fb = NULL;
    struct ss_err e;
    double pos[3], far[3], t0;
    bool busy = true;

    rig_open(&a, 80, 0);
    rig_open(&b, 80, 0);
    pos[0] = a.g.image_x_um + 1500;
    pos[1] = a.g.image_y_um + 1500;
    pos[2] = a.o.focus_z_um;
    memcpy(far, pos, sizeof(far));
    far[0] += 3000;
    assert_int_equal(a.m->cam->ops->configure(a.m->cam, &cs, &e), 0);
    assert_int_equal(b.m->cam->ops->configure(b.m->cam, &cs, &e), 0);
    assert_int_equal(a.m->stage->ops->move_abs(a.m->stage, pos, &e), 0);
    assert_int_equal(b.m->stage->ops->move_abs(b.m->stage, pos, &e), 0);
    mic_sleep_ms(a.m, 1000);
    mic_sleep_ms(b.m, 1000);

    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 100)) < 1e-9);
    assert_int_equal(a.m->stage->ops->move_abs(a.m->stage, far, &e), 0);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), 0);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 180)) < 1e-9);
    assert_int_equal(b.m->cam->ops->capture(b.m->cam, &fb, &e), 0);
    assert_memory_equal(fa->data, fb->data, img_bytes(fa));
    img_free(fa);
    img_free(fb);
    fa = NULL;

    /* The stage keeps moving: a move longer than the readout ends on the
     * clock after it, and end does not wait for it. */
    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_int_equal(a.m->stage->ops->move_abs(a.m->stage, pos, &e), 0);
    while (busy)
        assert_int_equal(a.m->stage->ops->is_busy(a.m->stage, &busy, &e), 0);
    assert_true(sim_clock_ms(a.s) > t0 + 180);
    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), 0);
    assert_true(sim_clock_ms(a.s) == t0);
    img_free(fa);

    /* A second exposure waits for the first one's readout. */
    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 280)) < 1e-9);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), 0);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 360)) < 1e-9);
    img_free(fa);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "no capture begun"));
    assert_null(fa);

    /* A camera without the split capture: begin takes the whole frame. */
    a.m->cam->ops = &a.plain;
    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 180)) < 1e-9);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), 0);
    assert_non_null(fa);
    img_free(fa);
    assert_int_equal(camera_capture_end(a.m->cam, &fa, &e), -EINVAL);
    microscope_free(a.m);
    microscope_free(b.m);
}

/* A timed-out frame costs exposure, readout and the 5 s the camera
 * takes to give up, counted from the exposure; the code comes at end. */
static void
test_split_capture_timeout_at_the_end(void **state)
{
    struct cam_settings cs = { 100, 1.0, { 1, 1, 1 } };
    struct img *f = NULL;
    struct ss_err e;
    struct rig a;
    double t0;

    rig_open(&a, 80, 0);
    assert_int_equal(a.m->cam->ops->configure(a.m->cam, &cs, &e), 0);
    assert_int_equal(sim_fault_set(a.s, "capture_timeout@capture=1", &e),
                     0);
    t0 = sim_clock_ms(a.s);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_int_equal(camera_capture_end(a.m->cam, &f, &e), SS_ETIMEOUT);
    assert_null(f);
    assert_true(fabs(sim_clock_ms(a.s) - (t0 + 5180)) < 1e-9);
    assert_int_equal(camera_capture_begin(a.m->cam, &e), 0);
    assert_int_equal(camera_capture_end(a.m->cam, &f, &e), 0);
    img_free(f);
    microscope_free(a.m);
}

/* The map's z 3 µm off (beyond the depth of field) and a reference
 * quality measured in focus: the tile is blurred after the stage has
 * already gone on to the next one, so the re-take goes back to it. */
static void
test_retake_goes_back_to_the_tile(void **state)
{
    struct acq_tile_result rs[NT], ro[NT];
    struct sim_truth ts[NT], to[NT];
    struct acq_focus_map fm;
    struct acq_focus_point pt;
    struct motion_cfg mc;
    struct motion mo;
    struct img *f;
    struct ss_err e;
    struct rig a, b;
    double pos[3];
    int i;

    rig_open(&a, 80, 0);
    rig_open(&b, 80, 0);
    a.m->cam->ops = &a.plain;
    /* The reference: R of tile 0 in focus, taken like a tile. */
    pos[0] = a.tiles[0].x_um;
    pos[1] = a.tiles[0].y_um;
    pos[2] = sim_focus_z(a.s, pos[0] + 64, pos[1] + 48);
    acq__motion_cfg(&a.o, &mc);
    motion_init(&mo, a.m->stage, a.m->clock, &mc);
    assert_int_equal(acq__set_camera(a.m, &a.p, &a.o, false, &e), 0);
    assert_int_equal(motion_approach(&mo, pos, NULL, &e), 0);
    assert_int_equal(a.m->cam->ops->capture(a.m->cam, &f, &e), 0);
    memset(&pt, 0, sizeof(pt));
    pt.x_um = pos[0];
    pt.y_um = pos[1];
    pt.z_um = pos[2] + 3;
    pt.score = acq__quality(f);
    pt.ok = true;
    img_free(f);
    memset(&fm, 0, sizeof(fm));
    fm.npoints = 1;
    fm.points = &pt;
    fm.model = 0;
    fm.coef[0] = pt.z_um;
    mic_sleep_ms(b.m, sim_clock_ms(a.s) - sim_clock_ms(b.s));

    run(&a, &fm, rs, ts);
    run(&b, &fm, ro, to);
    for (i = 0; i < NT; i++) {
        print_message("# tile %d: re-takes %d/%d, z %.2f/%.2f um (true "
                      "%.2f), quality %.2f/%.2f\n", i, rs[i].retakes,
                      ro[i].retakes, rs[i].z_um, ro[i].z_um,
                      ts[i].focus_z_um, rs[i].quality, ro[i].quality);
        assert_int_equal(ro[i].retakes, rs[i].retakes);
        assert_true(fabs(ro[i].x_um - b.tiles[i].x_um) < 2);
        assert_true(fabs(ro[i].y_um - b.tiles[i].y_um) < 2);
        assert_true(fabs(to[i].x_um - ts[i].x_um) < 1e-3);
        assert_true(fabs(to[i].y_um - ts[i].y_um) < 1e-3);
        assert_true(fabs(to[i].dz_um) < 0.5);
    }
    assert_true(rs[0].retakes == 1);
    results_clear(rs);
    results_clear(ro);
    microscope_free(a.m);
    microscope_free(b.m);
}

/* Through the guard: the readout of tile 1 never ends; the call misses
 * its deadline while the stage is already at tile 2, and the retry
 * (as the scan's fault policy says) takes tile 1 at its own place. */
static void
test_hung_readout_misses_its_deadline(void **state)
{
    struct acq_tile_result r;
    struct acq_session *ses;
    struct guard_fault gf = { 0, 0, 0, true };
    struct sim_truth t;
    struct ss_err e;
    struct rig a;
    int i;

    rig_open(&a, 80, 400);
    assert_true(camera_overlaps_readout(a.m->cam));
    assert_int_equal(sim_fault_set(a.s, "capture_hang@capture=2", &e), 0);
    assert_int_equal(acq_session_open(a.m, &a.p, NULL, NULL, &a.o, &ses,
                                      &e), 0);
    assert_int_equal(acq_tile_capture_next(ses, &a.plan, &a.tiles[0],
                                           &a.tiles[1], &r, &e), 0);
    acq_tile_result_clear(&r);
    gf.code = acq_tile_capture_next(ses, &a.plan, &a.tiles[1], &a.tiles[2],
                                    &r, &e);
    assert_int_equal(gf.code, SS_ETIMEOUT);
    assert_non_null(strstr(e.msg, "capture did not return within 400 ms"));
    assert_int_equal(guard_fault_action(&gf), GUARD_ACT_RETRY_TILE);
    for (i = 1; i < 3; i++) {
        assert_int_equal(acq_tile_capture_next(ses, &a.plan, &a.tiles[i],
                                               &a.tiles[i + 1], &r, &e), 0);
        sim_truth_last(a.s, &t);
        assert_true(fabs(r.x_um - a.tiles[i].x_um) < 2);
        assert_true(fabs(t.x_um - a.tiles[i].x_um) < 2);
        assert_true(fabs(t.y_um - a.tiles[i].y_um) < 2);
        acq_tile_result_clear(&r);
    }
    acq_session_free(ses);
    sim_fault_clear(a.s);
    microscope_free(a.m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlap_saves_the_readout_per_tile),
        cmocka_unit_test(test_overlap_hides_a_shorter_approach),
        cmocka_unit_test(test_split_capture_on_the_clock),
        cmocka_unit_test(test_split_capture_timeout_at_the_end),
        cmocka_unit_test(test_retake_goes_back_to_the_tile),
        cmocka_unit_test(test_hung_readout_misses_its_deadline),
    };

    return cmocka_run_group_tests_name("acq_overlap", tests, NULL, NULL);
}
