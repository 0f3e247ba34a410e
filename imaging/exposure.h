/* SPDX-License-Identifier: MIT */
/*
 * Exposure checks on raw frames: saturated tissue and far-too-dark frames.
 *
 * With calibration frames, each pixel's transmittance per channel is
 * T = (I - D) / (F - D).  A pixel is tissue when its darkest channel
 * passes less than tissue_t_max of the light glass passes.  A tissue pixel
 * is saturated when any of its channels reads sat_level or more; a pixel
 * clipped in every channel where calibrated glass is not clipped is
 * counted as saturated tissue too (the frame is brighter than glass).
 * Without calibration the glass level of each channel is taken as the
 * frame's 99.5th percentile.
 *
 * A frame is far too dark when its 99th percentile of brightest-channel
 * transmittance is below dark_t_min: even the clearest parts pass a small
 * fraction of the calibrated light (lamp failing, shutter, exposure).
 */
#ifndef SS_IMAGING_EXPOSURE_H
#define SS_IMAGING_EXPOSURE_H

#include "common/img.h"

struct exp_limits {
    double sat_level;               /* raw counts, default 255 */
    double sat_frac_max;            /* default 0.005 (0.5 %) */
    double tissue_t_max;            /* default 0.85 */
    double dark_t_min;              /* default 0.25 */
};

void exp_limits_default(struct exp_limits *l);

enum {
    EXP_SATURATED = 1 << 0,
    EXP_DARK = 1 << 1,
};

struct exp_stats {
    double sat_frac;                /* saturated tissue / tissue pixels */
    double tissue_frac;             /* tissue pixels / all pixels */
    double bright_t;                /* 99th pct of brightest-channel T */
    long sat_px, tissue_px;
    int flags;                      /* EXP_* */
};

/* Checks a raw U8 RGB frame; dark and flat (F32, same size) may be NULL.
 * A frame with fewer tissue pixels than 0.5 % of its area is not judged
 * on saturation (a few clipped specks are not a bad exposure). */
void exposure_check(const struct img *raw, const struct img *dark,
                    const struct img *flat, const struct exp_limits *l,
                    struct exp_stats *out);

#endif
