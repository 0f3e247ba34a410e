/* SPDX-License-Identifier: MIT */
/*
 * Pairwise registration of two views of the same patch of sample (the
 * overlap of two neighbouring tiles, cut out where the stage says they
 * overlap) by phase correlation with FFTW.  The normalised cross-power
 * spectrum is weighted by a Gaussian, which turns the correlation peak
 * into a Gaussian of known width whose centre a three-point fit of its
 * logarithm finds to a small fraction of a pixel.  A pair is refused
 * when the peak is not clearly the only one (peak ratio), when the two
 * views do not agree once aligned (normalised cross-correlation of the
 * views smoothed against camera noise), or when the shift is larger than
 * the stage can plausibly be wrong.
 *
 * LIMIT: translation only.  A camera turned against the stage axes, or a
 * magnification that differs from the stated pixel size, is not measured:
 * it shows as larger residuals in the placement (stitch_placement
 * .residual_rms_px) and as blur where tiles overlap.
 */
#ifndef SS_IMAGING_REGISTER_H
#define SS_IMAGING_REGISTER_H

#include <stdbool.h>

#include "common/err.h"

struct reg_params {
    double max_shift_px;            /* larger shifts are refused */
    double min_peak_ratio;          /* peak / best peak elsewhere, 2.0 */
    double min_ncc;                 /* aligned normalised correlation, 0.5 */
    double min_std;                 /* grey-level σ of each view, 1.0 */
    double peak_sigma_px;           /* width of the shaped peak, 1.0 */
};

void reg_params_default(struct reg_params *p);

struct reg_result {
    bool ok;
    double dx, dy;                  /* b(x, y) shows a(x + dx, y + dy) */
    double peak_ratio, ncc;
    const char *why;                /* when refused: a static reason */
};

/*
 * Registers b against a: both are w × h grey images (row stride w).
 * Returns 0 with r->ok telling whether the pair is trusted (r->why says
 * why not), or a negative errno when the work itself fails (memory).
 */
int reg_phase_correlate(const float *a, const float *b, int w, int h,
                        const struct reg_params *p, struct reg_result *r,
                        struct ss_err *err);

/* FFTW's planner is not thread-safe: every FFTW plan made or destroyed in
 * this program goes between these two calls. */
void reg_fftw_lock(void);
void reg_fftw_unlock(void);

#endif
