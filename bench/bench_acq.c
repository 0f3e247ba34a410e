/* SPDX-License-Identifier: MIT */
/*
 * Acquisition time of a 15 × 15 mm section at 20x on the simulated
 * microscope (its virtual clock), H&E and KI67, for three ways of
 * finding focus, side by side:
 *
 *   focus map     autofocus at 16 points, a fitted surface, every tile at
 *                 the surface's z (slidescan's way)
 *   per tile      autofocus at every tile (stop and go), no map
 *   z sweep       41 frames 1 µm apart at every tile, best one kept
 *
 * and the ratio of the focus-map time to the pure move + settle +
 * exposure time of the planned tiles (goal ≤ 1.3).  The stage moves to
 * the next tile while the sensor reads out (the split capture of
 * drivers/camera.h); the focus-map tile pass is run a second time on a
 * camera without it, to show what the overlap saves.  Frames are rendered
 * only where their pixels matter: calibration, overview, focus map and a
 * sample of tiles.  The full tile passes run on a second, identical
 * simulator with pixel synthesis off (same clock, stage and timing), and
 * the per-tile autofocus time, whose frame count depends on the pixels,
 * is measured on the rendered sample and scaled to all tiles.  The
 * backlash overshoot is the simulated stage's own (5 µm x/y, 2 µm z), as
 * the daemon's configuration would set it for a real stage.
 *
 *   bench_acq [SAMPLE_TILES]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "drivers/sim/sim.h"
#include "scan/acquire.h"

#define SECTION_MM 15.0

struct result {
    int ntiles;
    double t_calib, t_plan, t_map, t_tiles_map;
    double t_each_per_tile, t_sweep, t_pure, t_blocking;
    int map_frames, retakes, sample;
    double worst_dz, map_rms;
};

static int
open_sim(const char *stain, int render, struct microscope **m,
         struct ss_err *e)
{
    struct sim_config c;
    int rc;

    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "phantom:%s:w_mm=%.0f:h_mm=%.0f",
             stain, SECTION_MM, SECTION_MM);
    c.render = render;
    rc = sim_microscope_new(&c, m, e);
    if (rc == 0)
        rc = (*m)->cam->ops->open((*m)->cam, e);
    if (rc == 0)
        rc = (*m)->stage->ops->open((*m)->stage, e);
    if (rc == 0)
        rc = (*m)->stage->ops->home((*m)->stage, e);
    return rc;
}

/* Trapezoidal move time of the simulated stage, the slowest axis. */
static double
move_ms(const struct sim_config *c, const double a[3], const double b[3])
{
    double worst = 0, d, v, acc, t;
    int i;

    for (i = 0; i < 3; i++) {
        d = fabs(b[i] - a[i]);
        v = c->speed_um_s[i] / 1000.0;
        acc = c->accel_um_s2[i] / 1e6;
        t = d >= v * v / acc ? d / v + v / acc : 2 * sqrt(d / acc);
        worst = fmax(worst, t);
    }
    return worst;
}

/* Move + settle + exposure of every planned tile, in capture order. */
static double
pure_ms(const struct acq_plan *p, const struct acq_focus_map *fm,
        const struct acq_options *o, double exposure_ms)
{
    struct sim_config c;
    double prev[3], cur[3], t = 0;
    int i;

    sim_config_default(&c);
    for (i = 0; i < p->ntiles; i++) {
        cur[0] = p->tiles[i].x_um;
        cur[1] = p->tiles[i].y_um;
        cur[2] = acq_focus_map_z(fm, cur[0] + 512, cur[1] + 384);
        if (i > 0)
            t += move_ms(&c, prev, cur);
        t += o->settle_ms + exposure_ms;
        memcpy(prev, cur, sizeof(prev));
    }
    return t;
}

/* Captures the tiles idx[0..n) in one session; returns virtual ms. */
static int
run_tiles(struct microscope *m, const struct acq_profile *p,
          const struct acq_calib *cal, const struct acq_focus_map *fm,
          const struct acq_options *o, const struct acq_plan *plan,
          const int *idx, int n, struct result *res, double *ms,
          struct ss_err *e)
{
    struct sim *s = sim_of(m);
    struct acq_session *ss;
    struct acq_tile_result r;
    struct sim_truth t;
    double t0 = sim_clock_ms(s);
    int i, rc;

    rc = acq_session_open(m, p, cal, fm, o, &ss, e);
    for (i = 0; i < n && rc == 0; i++) {
        rc = acq_tile_capture_next(ss, plan, &plan->tiles[idx[i]],
                                   i + 1 < n ? &plan->tiles[idx[i + 1]]
                                             : NULL, &r, e);
        if (rc != 0)
            break;
        sim_truth_last(s, &t);
        if (res != NULL) {
            res->retakes += r.retakes;
            res->worst_dz = fmax(res->worst_dz, fabs(t.dz_um));
        }
        acq_tile_result_clear(&r);
    }
    acq_session_free(ss);
    *ms = sim_clock_ms(s) - t0;
    return rc;
}

/* RMS of the map against the true surface at the tile centres. */
static double
map_rms(struct sim *s, const struct acq_plan *p,
        const struct acq_focus_map *fm)
{
    double ss = 0, d, x, y;
    int i;

    for (i = 0; i < p->ntiles; i++) {
        x = p->tiles[i].x_um + 0.5 * p->frame_w * p->pixel_um;
        y = p->tiles[i].y_um + 0.5 * p->frame_h * p->pixel_um;
        d = acq_focus_map_z(fm, x, y) - sim_focus_z(s, x, y);
        ss += d * d;
    }
    return sqrt(ss / p->ntiles);
}

/* The rendered part: calibration, plan, focus map, the tile sample. */
static int
rendered(const char *stain, int sample, struct acq_calib **cal,
         struct acq_plan **plan, struct acq_focus_map **fm,
         struct acq_options *o, struct result *res, struct ss_err *e)
{
    struct microscope *m;
    struct sim_geometry g;
    struct acq_profile p;
    struct acq_options each;
    struct sim_config c;
    struct sim *s;
    double t, t_each;
    int *idx = NULL, i, rc;

    rc = open_sim(stain, 1, &m, e);
    if (rc != 0)
        return rc;
    s = sim_of(m);
    sim_geometry_get(s, &g);
    acq_profile_default(&p, stain, NULL);
    acq_options_default(o);
    sim_config_default(&c);
    o->backlash_um = c.backlash_um[0];
    o->backlash_z_um = c.backlash_um[2];
    o->blank_x_um = g.blank_x_um;
    o->blank_y_um = g.blank_y_um;
    o->region_x_um = g.image_x_um;
    o->region_y_um = g.image_y_um;
    o->region_w_um = g.image_w_um;
    o->region_h_um = g.image_h_um;
    t = sim_clock_ms(s);
    rc = acq_calibrate(m, &p, o, cal, e);
    res->t_calib = sim_clock_ms(s) - t;
    t = sim_clock_ms(s);
    if (rc == 0)
        rc = acq_plan_overview(m, o, plan, NULL, NULL, e);
    res->t_plan = sim_clock_ms(s) - t;
    t = sim_clock_ms(s);
    if (rc == 0)
        rc = acq_focus_map_build(m, &p, *plan, o, fm, e);
    res->t_map = sim_clock_ms(s) - t;
    if (rc == 0) {
        res->ntiles = (*plan)->ntiles;
        res->map_frames = (*fm)->captures;
        res->map_rms = map_rms(s, *plan, *fm);
        res->sample = sample < res->ntiles ? sample : res->ntiles;
        idx = calloc((size_t)res->sample, sizeof(int));
        for (i = 0; i < res->sample; i++)
            idx[i] = (int)((i + 0.5) * res->ntiles / res->sample);
        rc = run_tiles(m, &p, *cal, *fm, o, *plan, idx, res->sample, res,
                       &t, e);
    }
    each = *o;
    each.focus_mode = ACQ_FOCUS_EACH;
    if (rc == 0)
        rc = run_tiles(m, &p, *cal, NULL, &each, *plan, idx, res->sample,
                       NULL, &t_each, e);
    res->t_each_per_tile = rc == 0 ? t_each / res->sample : 0;
    free(idx);
    microscope_free(m);
    return rc;
}

/* The full tile passes without pixel synthesis. */
static int
timed(const char *stain, const struct acq_calib *cal,
      const struct acq_plan *plan, const struct acq_focus_map *fm,
      const struct acq_options *o, struct result *res, struct ss_err *e)
{
    struct microscope *m = NULL;
    struct acq_profile p;
    struct acq_options sweep = *o;
    struct cam_ops blocking;
    const struct cam_ops *split;
    int *idx = calloc((size_t)plan->ntiles, sizeof(int)), i, rc;

    for (i = 0; i < plan->ntiles; i++)
        idx[i] = i;
    acq_profile_default(&p, stain, NULL);
    /* The focus-map pass on a camera without the split capture, from the
     * same start as the pass with it. */
    rc = open_sim(stain, 0, &m, e);
    if (rc == 0) {
        split = m->cam->ops;
        blocking = *split;
        blocking.capture_begin = NULL;
        blocking.capture_end = NULL;
        m->cam->ops = &blocking;
        rc = run_tiles(m, &p, cal, fm, o, plan, idx, plan->ntiles, NULL,
                       &res->t_blocking, e);
        m->cam->ops = split;
    }
    microscope_free(m);
    m = NULL;
    if (rc == 0)
        rc = open_sim(stain, 0, &m, e);
    if (rc == 0)
        rc = run_tiles(m, &p, cal, fm, o, plan, idx, plan->ntiles, NULL,
                       &res->t_tiles_map, e);
    sweep.focus_mode = ACQ_FOCUS_SWEEP;
    if (rc == 0)
        rc = run_tiles(m, &p, cal, NULL, &sweep, plan, idx, plan->ntiles,
                       NULL, &res->t_sweep, e);
    res->t_pure = pure_ms(plan, fm, o, p.exposure_ms);
    free(idx);
    microscope_free(m);
    return rc;
}

static void
report(const char *stain, double exposure_ms, const struct result *r)
{
    double map = r->t_map + r->t_tiles_map, each = r->t_each_per_tile *
                 r->ntiles;

    printf("acq %s (%.0f ms exposure): %.0f x %.0f mm at 20x, %d tiles\n",
           stain, exposure_ms, SECTION_MM, SECTION_MM, r->ntiles);
    printf("  calibration            %7.1f s  (once per profile)\n",
           r->t_calib / 1000);
    printf("  overview and plan      %7.1f s\n", r->t_plan / 1000);
    printf("  focus map strategy     %7.1f s  (map %.1f s from %d frames,"
           " RMS %.2f um; tiles %.1f s)\n", map / 1000, r->t_map / 1000,
           r->map_frames, r->map_rms, r->t_tiles_map / 1000);
    printf("  per-tile autofocus     %7.1f s  (%.2f x focus map; %.2f s a "
           "tile over %d rendered tiles)\n", each / 1000, each / map,
           r->t_each_per_tile / 1000, r->sample);
    printf("  41-step z sweep        %7.1f s  (%.2f x focus map)\n",
           r->t_sweep / 1000, r->t_sweep / map);
    printf("  pure move+settle+exp.  %7.1f s\n", r->t_pure / 1000);
    printf("  ratio focus map / pure %7.2f    (goal <= 1.30; tiles alone "
           "%.2f)\n", map / r->t_pure, r->t_tiles_map / r->t_pure);
    printf("  blocking capture       %7.2f    (tiles %.1f s when the move "
           "waits for the\n                                   readout; the "
           "overlap saves %.0f ms a tile)\n",
           (r->t_map + r->t_blocking) / r->t_pure, r->t_blocking / 1000,
           (r->t_blocking - r->t_tiles_map) / r->ntiles);
    printf("  rendered sample: %d re-takes in %d tiles, worst |dz| %.2f "
           "um\n", r->retakes, r->sample, r->worst_dz);
}

int
main(int argc, char **argv)
{
    static const char *stains[] = { "HE", "KI67" };
    int sample = argc > 1 ? atoi(argv[1]) : 12, i, status = 0;

    log_set_level(LOG_LVL_WARN);
    for (i = 0; i < 2; i++) {
        struct acq_calib *cal = NULL;
        struct acq_plan *plan = NULL;
        struct acq_focus_map *fm = NULL;
        struct acq_options o;
        struct acq_profile p;
        struct result r;
        struct ss_err e;
        int rc;

        memset(&r, 0, sizeof(r));
        acq_profile_default(&p, stains[i], NULL);
        rc = rendered(stains[i], sample, &cal, &plan, &fm, &o, &r, &e);
        if (rc == 0)
            rc = timed(stains[i], cal, plan, fm, &o, &r, &e);
        if (rc == 0)
            report(stains[i], p.exposure_ms, &r);
        else {
            fprintf(stderr, "bench_acq %s: %s\n", stains[i], e.msg);
            status = 1;
        }
        acq_focus_map_free(fm);
        acq_plan_free(plan);
        acq_calib_free(cal);
    }
    printf("  literature: commercial whole-slide scanners take 2-4 min for "
           "15 x 15 mm at 20x\n");
    return status;
}
