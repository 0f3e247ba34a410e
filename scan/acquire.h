/* SPDX-License-Identifier: MIT */
/*
 * Acquisition of one slide on one microscope, as steps the scan state
 * machine (daemon/) calls in order and whose results it persists, so that
 * a restarted daemon resumes at the next tile:
 *
 *   1. acq_calibrate()        dark and blank-field frames for the profile
 *   2. acq_plan_overview()    overview image → tissue mask → tile plan
 *   3. acq_focus_map_build()  autofocus at points on tissue → focus surface
 *   4. acq_tile_capture()     per planned tile: move, focus, expose,
 *                             flat-field, sharpness QC, re-take
 *
 * All calls block and use only the microscope's devices and clock; they
 * run on the scan thread.  Nothing here writes files or the catalogue.
 */
#ifndef SS_SCAN_ACQUIRE_H
#define SS_SCAN_ACQUIRE_H

#include <stdbool.h>

#include "common/err.h"
#include "common/img.h"
#include "drivers/microscope.h"

/* A stain profile: what the lab sets at the microscope for a stain. */
struct acq_profile {
    char stain[16];                 /* "HE", "KI67", "CK" */
    double exposure_ms;             /* 250 for HE, 600 for KI67 and CK */
    double gain;
    double wb[3];
    char objective[8];              /* "20x" */
};

struct acq_options {
    double overlap;                 /* tile overlap fraction, default 0.10 */
    int calib_frames;               /* frames averaged per calibration */
    double blank_x_um, blank_y_um;  /* a blank-glass position for flats */
    double settle_ms;               /* stage settle time before capture */
    double backlash_um;             /* overshoot for one-sided approach */
    int max_retakes;                /* bounded re-takes of a blurred tile */
    double sharp_rel_min;           /* a tile below this fraction of the
                                       expected sharpness is re-taken */
    /* Scan region in stage µm; all zero means "the whole overview". */
    double region_x_um, region_y_um, region_w_um, region_h_um;
};

void acq_options_default(struct acq_options *o);

/* Dark and flat frames for one profile and objective, F32 RGB. */
struct acq_calib {
    struct img *dark;
    struct img *flat;
    char stain[16];
    char objective[8];
    double exposure_ms;
    char taken_utc[24];             /* ISO 8601, for staleness checks */
};

int acq_calibrate(struct microscope *m, const struct acq_profile *p,
                  const struct acq_options *o, struct acq_calib **out,
                  struct ss_err *err);
void acq_calib_free(struct acq_calib *c);
int acq_calib_save(const struct acq_calib *c, const char *dir,
                   struct ss_err *err);
int acq_calib_load(const char *dir, struct acq_calib **out,
                   struct ss_err *err);

/* One planned tile.  Its position is where the frame's top-left pixel
 * lands on the sample, in stage µm. */
struct acq_tile {
    int index;                      /* position in capture order */
    int row, col;                   /* cell in the planned grid */
    double x_um, y_um;
};

/* The tile plan: a regular grid over the scan region, keeping only the
 * cells that hold tissue, in serpentine capture order. */
struct acq_plan {
    double origin_x_um, origin_y_um;    /* stage position of cell (0, 0) */
    double step_x_um, step_y_um;
    int rows, cols;
    int frame_w, frame_h;
    double pixel_um;
    int ntiles;
    struct acq_tile *tiles;
    int cells_total;                /* rows × cols, for the report */
};

int acq_plan_overview(struct microscope *m, const struct acq_options *o,
                      struct acq_plan **plan, struct img **overview,
                      struct img **label, struct ss_err *err);
void acq_plan_free(struct acq_plan *p);

/* The focus surface fitted to autofocus points on tissue. */
struct acq_focus_point {
    double x_um, y_um, z_um;
    double score;
    bool ok;                        /* false: no focus found there */
};

struct acq_focus_map {
    int npoints;
    struct acq_focus_point *points;
    int model;                      /* 0 constant, 1 plane, 2 quadratic,
                                       3 thin-plate */
    double coef[6];
    double rms_um;                  /* fit residual */
};

int acq_focus_map_build(struct microscope *m, const struct acq_profile *p,
                        const struct acq_plan *plan,
                        const struct acq_options *o,
                        struct acq_focus_map **out, struct ss_err *err);
/* Refits the surface from points (used on resume from stored points). */
int acq_focus_map_fit(struct acq_focus_map *fm, struct ss_err *err);
double acq_focus_map_z(const struct acq_focus_map *fm, double x_um,
                       double y_um);
void acq_focus_map_free(struct acq_focus_map *fm);

enum {
    ACQ_TILE_SATURATED = 1 << 0,    /* > 0.5 % saturated tissue pixels */
    ACQ_TILE_DARK = 1 << 1,         /* far too dark */
    ACQ_TILE_BLURRED = 1 << 2,      /* still below threshold after re-takes */
    ACQ_TILE_LOWCONF = 1 << 3,      /* focus predicted, not measured */
};

struct acq_tile_result {
    struct img *frame;              /* flat-field corrected, caller frees */
    double x_um, y_um, z_um;        /* position the stage reported */
    double sharpness;
    int retakes;
    int flags;                      /* ACQ_TILE_* */
};

struct acq_session;

/* Borrows m, p, calib and fm for the session's life. */
struct acq_session *acq_session_new(struct microscope *m,
                                    const struct acq_profile *p,
                                    const struct acq_calib *calib,
                                    const struct acq_focus_map *fm,
                                    const struct acq_options *o);
void acq_session_free(struct acq_session *s);

int acq_tile_capture(struct acq_session *s, const struct acq_plan *plan,
                     const struct acq_tile *t, struct acq_tile_result *r,
                     struct ss_err *err);

#endif
