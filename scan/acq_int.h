/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the files of scan/: camera settings for tiles and for
 * focus frames, the motion settings from the options, and autofocus at a
 * stage position through the microscope.
 */
#ifndef SS_SCAN_ACQ_INT_H
#define SS_SCAN_ACQ_INT_H

#include <stdbool.h>

#include "drivers/motion.h"
#include "imaging/focus.h"
#include "scan/acquire.h"

void acq__motion_cfg(const struct acq_options *o, struct motion_cfg *c);

/* Applies the profile's settings (focus = false) or the focus-frame
 * settings: exposure capped at focus_exposure_ms, gain raised to keep the
 * signal. */
int acq__set_camera(struct microscope *m, const struct acq_profile *p,
                    const struct acq_options *o, bool focus,
                    struct ss_err *err);

/* Autofocus at one stage position. */
struct acq__focuser {
    struct microscope *m;
    struct motion *mo;
    const struct acq_options *o;
    double x_um, y_um;              /* frame top-left on the stage */
    int captures;                   /* frames taken, accumulated */
};

/* Runs focus_search() from z_start for a focus up to range_um away with
 * coarse_n coarse probes and fine steps of 4 pixel sizes, within the
 * stage's z travel.  The camera must hold the focus settings. */
int acq__autofocus(struct acq__focuser *f, double z_start_um,
                   double range_um, int coarse_n, struct af_result *r,
                   struct ss_err *err);

/* Measures the metric at n evenly spaced z from z_lo to z_hi (within
 * the z travel) and returns the peak (focus_sweep_peak()). */
int acq__focus_sweep(struct acq__focuser *f, double z_lo_um, double z_hi_um,
                     int n, double *z_peak, struct ss_err *err);

/* Focus quality of a corrected frame: sharpness at full resolution over
 * sharpness binned 2 × 2 (scan/tile.c explains why). */
double acq__quality(const struct img *frame);

/* Median of n values (n ≥ 1); the array is reordered. */
double acq__median(double *v, int n);

#endif
