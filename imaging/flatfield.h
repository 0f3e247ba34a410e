/* SPDX-License-Identifier: MIT */
/*
 * Flat-field correction of brightfield frames.  A camera frame I is the
 * sample's transmittance T times the illumination and sensor response F,
 * plus the dark offset D (the reading with no light).  Per pixel and
 * channel, T = (I - D) / (F - D), where F is a frame of blank glass and D a
 * frame with the lamp off, both taken at the exposure in use.  Corrected
 * frames are T scaled so that blank glass reads a fixed white (240 by
 * default): tissue, which transmits less than glass, is never clipped.
 *
 * Calibration frames are averages of several captures (ff_accum_*), kept
 * as F32 RGB.  Nothing here touches devices or files.
 */
#ifndef SS_IMAGING_FLATFIELD_H
#define SS_IMAGING_FLATFIELD_H

#include "common/err.h"
#include "common/img.h"

/* Value blank glass maps to in a corrected 8-bit frame. */
#define FF_WHITE_DEFAULT 240.0

/* F - D below this many counts is too little light to divide by. */
#define FF_MIN_SIGNAL 4.0

/* Adds frame (U8 or F32) to the running sum *sum (F32, allocated on the
 * first call).  Frames must all have the same size and channel count. */
int ff_accum_add(struct img **sum, const struct img *frame,
                 struct ss_err *err);

/* Divides the sum by n in place, turning it into the mean frame. */
void ff_accum_finish(struct img *sum, int n);

/* What a pair of calibration frames looks like, for acceptance checks. */
struct ff_check {
    double signal_min[3];           /* smallest F - D per channel */
    double signal_max[3];           /* largest F - D per channel */
    double dark_mean[3];
    double falloff;                 /* 1 - min/max of the smoothed F - D */
    long weak_px;                   /* samples with F - D < FF_MIN_SIGNAL */
    long clipped_px;                /* samples of F at 254 or more */
};

/* Measures dark (may be NULL: zero offset) and flat.  Returns SS_EFORMAT
 * when their sizes differ, when more than 1 % of the samples have too
 * little signal (lamp off, light path blocked, flat taken on tissue), or
 * when more than 1 % are clipped (exposure too long for blank glass). */
int ff_check(const struct img *dark, const struct img *flat,
             struct ff_check *out, struct ss_err *err);

/* The per-pixel gain white / (F - D) as F32, with weak pixels given the
 * median gain of their channel so a dead spot does not blow up. */
struct img *ff_gain_new(const struct img *dark, const struct img *flat,
                        double white);

/* Corrects raw (U8 RGB) into *out (U8 RGB, new): (I - D) * gain, rounded
 * and clamped to 0..255.  dark may be NULL (zero offset). */
int ff_apply(const struct img *raw, const struct img *dark,
             const struct img *gain, struct img **out, struct ss_err *err);

/* ff_gain_new() and ff_apply() in one call. */
int ff_correct(const struct img *raw, const struct img *dark,
               const struct img *flat, double white, struct img **out,
               struct ss_err *err);

/* Transmittance of one reading: (raw - dark) / (flat - dark). */
double ff_transmittance(double raw, double dark, double flat);

/* Block-averaged max/min ratio of one channel (or of the channel mean
 * when ch < 0) over blocks of block × block pixels: the residual shading
 * of a corrected blank field, free of pixel noise. */
double ff_shading_ratio(const struct img *im, int ch, int block);

#endif
