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
#include "imaging/focusmap.h"

/* A stain profile: what the lab sets at the microscope for a stain. */
struct acq_profile {
    char stain[16];                 /* "HE", "KI67", "CK" */
    double exposure_ms;             /* 250 for HE, 600 for KI67 and CK */
    double gain;
    double wb[3];
    char objective[8];              /* "20x" */
};

/* The lab defaults for a stain ("HE", "KI67", "CK"): exposure 250 ms for
 * H&E and 600 ms for KI67 and CK, unity gain and white balance, 20x.
 * etc/ may override any field.  An unknown stain is SS_ECONFIG. */
int acq_profile_default(struct acq_profile *p, const char *stain,
                        struct ss_err *err);

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

    double backlash_z_um;           /* focus drive overshoot, default 2 */
    double settle_tol_um;           /* two readings agree within this */
    double white;                   /* blank glass after flat-field, 240 */
    double focus_z_um;              /* nominal focal plane: where the
                                       first autofocus starts, default 0 */
    double focus_range_um;          /* first autofocus covers ± this, 20 */
    int focus_points;               /* autofocus points, 0: by area */
    double focus_exposure_ms;       /* focus frames: exposure cap with the
                                       gain raised to match, default 40 */
    double refocus_range_um;        /* local refocus of a blurred tile
                                       covers ± this, default 4 */
    int focus_mode;                 /* ACQ_FOCUS_*, default MAP */
};

/* How each tile's z is found. */
enum {
    ACQ_FOCUS_MAP = 0,              /* from the focus map (fast) */
    ACQ_FOCUS_EACH = 1,             /* autofocus at every tile around the
                                       map's z (stop and go) */
    ACQ_FOCUS_SWEEP = 2,            /* 41-step z sweep at every tile */
};

/* Defaults: 10 % overlap, 8 calibration frames, 50 ms settle, 20 µm
 * x/y backlash, 1 re-take, re-take below 0.75 of the expected focus
 * quality (scan/tile.c).
 * blank_x_um/blank_y_um must be set by the caller (a glass-only spot). */
void acq_options_default(struct acq_options *o);

/* Dark and flat frames for one profile and objective, F32 RGB. */
struct acq_calib {
    struct img *dark;
    struct img *flat;
    char stain[16];
    char objective[8];
    double exposure_ms;
    char taken_utc[24];             /* ISO 8601, for staleness checks */
    double gain;
    double wb[3];
    int frames;                     /* averaged per frame */
    char dark_method[16];           /* "lamp-off" or "min-exposure" */
    double falloff;                 /* 1 - min/max of the blank field */
};

/* Takes the flat (calib_frames frames of blank glass at blank_x/y_um) and
 * the dark (the lamp off; without lamp control, the shortest exposure
 * instead), with the profile's settings, and checks them (ff_check).
 * Leaves the lamp on.  *out is the caller's (acq_calib_free). */
int acq_calibrate(struct microscope *m, const struct acq_profile *p,
                  const struct acq_options *o, struct acq_calib **out,
                  struct ss_err *err);
void acq_calib_free(struct acq_calib *c);

/* Stores c in dir (created when missing): dark.tif and flat.tif as 32-bit
 * float RGB TIFF (deflate), then calib.json with the metadata; every file
 * is written durably, calib.json last, so a directory with calib.json is
 * complete. */
int acq_calib_save(const struct acq_calib *c, const char *dir,
                   struct ss_err *err);

/* Loads what acq_calib_save() wrote; errors name the file and the cause. */
int acq_calib_load(const char *dir, struct acq_calib **out,
                   struct ss_err *err);

/* True when c was taken more than max_age_h hours ago (or its date does
 * not parse). */
bool acq_calib_is_stale(const struct acq_calib *c, double max_age_h);

/* True when c was taken for this profile: stain, objective, exposure,
 * gain. */
bool acq_calib_matches(const struct acq_calib *c,
                       const struct acq_profile *p);

/* One planned tile.  Its position is where the frame's top-left pixel
 * lands on the sample, in stage µm. */
struct acq_tile {
    int index;                      /* position in capture order */
    int row, col;                   /* cell in the planned grid */
    double x_um, y_um;
    double tissue_frac;             /* of the frame, 0 when unknown */
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
    double tissue_outside_mm2;      /* tissue seen on the overview that no
                                       planned frame covers: an explicit
                                       region (or the stage travel) cut
                                       it off; 0 when all is covered */
};

/* The tissue mask is grown by this plus the overview's uncertainty
 * (ACQ_PLAN_OV_PX overview pixels: a pixel only partly on tissue reads
 * paler, and the edge of pale tissue fades into the threshold) before
 * the cells are chosen. */
#define ACQ_PLAN_MARGIN_UM 50.0
#define ACQ_PLAN_OV_PX 3.0

/* Captures the overview (and the label, when there is one), detects
 * tissue (imaging/tissue.h) and plans tiles over it: every cell whose
 * share of the grid (its core, below) meets the tissue mask grown by
 * ACQ_PLAN_MARGIN_UM + ACQ_PLAN_OV_PX overview pixels, so all tissue the
 * overview shows lies inside the planned frames with that margin.  With
 * an explicit region in o, plans every cell of that region instead, and
 * sets tissue_outside_mm2 when tissue continues beyond it.  overview and
 * label may be NULL when not wanted; otherwise they are the caller's
 * (NULL when the microscope has none).  A plan with no tile is -ENODATA
 * ("no tissue found"). */
int acq_plan_overview(struct microscope *m, const struct acq_options *o,
                      struct acq_plan **plan, struct img **overview,
                      struct img **label, struct ss_err *err);
void acq_plan_free(struct acq_plan *p);

/* Frame and stage facts the planner needs. */
struct acq_frame_geo {
    int frame_w, frame_h;
    double pixel_um;
    struct stage_limits limits;
};

/* Plans tiles over the 255-pixels of a tissue mask placed by geo (cells
 * whose core touches the mask grown by margin_um), or, when mask is
 * NULL, over every cell of the rectangle (x, y, w, h) in stage µm. */
int acq_plan_mask(const struct img *mask, const struct ov_geometry *geo,
                  const struct acq_frame_geo *fg, double overlap,
                  double margin_um, struct acq_plan **plan,
                  struct ss_err *err);
int acq_plan_region(double x_um, double y_um, double w_um, double h_um,
                    const struct acq_frame_geo *fg, double overlap,
                    struct acq_plan **plan, struct ss_err *err);

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
    double coef[6];                 /* in stage µm: z = c0 + c1 x + c2 y
                                       + c3 x^2 + c4 x y + c5 y^2 (for
                                       thin-plate only its plane) */
    double rms_um;                  /* fit residual */
    struct fmap_surface surf;       /* the fitted surface; after loading
                                       points, acq_focus_map_fit() */
    int captures;                   /* autofocus frames taken */
};

/* Autofocus (imaging/focus.h) at points spread over the plan's tissue
 * tiles, then acq_focus_map_fit().  Points are the centres of frames.  A
 * point with no focus gets ok = false and is left out of the fit; when no
 * point has focus the result is SS_ENOFOCUS. */
int acq_focus_map_build(struct microscope *m, const struct acq_profile *p,
                        const struct acq_plan *plan,
                        const struct acq_options *o,
                        struct acq_focus_map **out, struct ss_err *err);

/* Refits the surface from points (used on resume from stored points):
 * the model is chosen by leave-one-out error and outliers get ok = false
 * (imaging/focusmap.h); model, coef and rms_um are updated.  Refitting a
 * fitted map gives the same surface. */
int acq_focus_map_fit(struct acq_focus_map *fm, struct ss_err *err);

/* Predicted best-focus z at stage point (x, y): from the fitted surface,
 * or from coef when the map was loaded without refitting. */
double acq_focus_map_z(const struct acq_focus_map *fm, double x_um,
                       double y_um);

/* Frees fm and its points; NULL is a no-op. */
void acq_focus_map_free(struct acq_focus_map *fm);

enum {
    ACQ_TILE_SATURATED = 1 << 0,    /* > 0.5 % saturated tissue pixels */
    ACQ_TILE_DARK = 1 << 1,         /* far too dark */
    ACQ_TILE_BLURRED = 1 << 2,      /* still below threshold after re-takes */
    ACQ_TILE_LOWCONF = 1 << 3,      /* focus predicted, not measured:
                                       per-tile focus found none, or
                                       the map's point at the tile has
                                       ok = false ("focus-guessed") */
};

struct acq_tile_result {
    struct img *frame;              /* flat-field corrected, caller frees */
    double x_um, y_um, z_um;        /* position the stage reported */
    double sharpness;
    int retakes;
    int flags;                      /* ACQ_TILE_* */
    double z_pred_um;               /* what the focus map predicted */
    double quality;                 /* focus quality / expected, 1 = as
                                       sharp as the focus points */
    double sat_frac;                /* saturated tissue pixels */
    int focus_captures;             /* frames taken to refocus */
    double tissue_frac;             /* of the frame, measured on it */
};

struct acq_session;

/* Borrows m, p, calib and fm for the session's life; copies o.  calib
 * may be NULL (frames are then not flat-field corrected).  Returns NULL
 * when calib does not belong to p or memory is short (the _open form
 * says why). */
struct acq_session *acq_session_new(struct microscope *m,
                                    const struct acq_profile *p,
                                    const struct acq_calib *calib,
                                    const struct acq_focus_map *fm,
                                    const struct acq_options *o);
int acq_session_open(struct microscope *m, const struct acq_profile *p,
                     const struct acq_calib *calib,
                     const struct acq_focus_map *fm,
                     const struct acq_options *o, struct acq_session **out,
                     struct ss_err *err);
void acq_session_free(struct acq_session *s);

/* Captures tile t: moves with one-sided approach to the tile at the
 * focus map's z, settles, verifies, exposes, checks exposure, corrects
 * flat-field, scores focus quality; a tile below sharp_rel_min of the
 * expected quality is refocused locally and taken again, at most
 * max_retakes times.  The result depends only on the tile, the
 * calibration, the focus map and the options, never on tiles taken
 * before, so a restarted session gives the same tile.  r->frame is the
 * caller's. */
int acq_tile_capture(struct acq_session *s, const struct acq_plan *plan,
                     const struct acq_tile *t, struct acq_tile_result *r,
                     struct ss_err *err);

/* As acq_tile_capture(), where next is the tile the caller captures after
 * t (NULL: none, or not known).  When the camera overlaps its readout
 * (camera_overlaps_readout()) and tiles are taken at the focus map's z,
 * the stage approaches next as soon as t's exposure has ended, while the
 * sensor reads out; the call for next then starts with its exposure, and
 * a failed approach is that call's error.  A re-take of t approaches t
 * again.  Frames are the same as without the overlap; only the time
 * differs.  Between the two calls nothing else may move the stage (as
 * for any call on a session). */
int acq_tile_capture_next(struct acq_session *s, const struct acq_plan *plan,
                          const struct acq_tile *t,
                          const struct acq_tile *next,
                          struct acq_tile_result *r, struct ss_err *err);

/* Frees r->frame and clears r. */
void acq_tile_result_clear(struct acq_tile_result *r);

#endif
