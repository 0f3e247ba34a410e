/* SPDX-License-Identifier: MIT */
/*
 * Focus: a sharpness metric and the autofocus search built on it.
 *
 * The metric is the normalised Brenner gradient of the luminance
 * L = (R + 2G + B) / 4, optionally averaged over bin × bin blocks first:
 *
 *     S = mean[(L(x+2,y) - L(x,y))^2 + (L(x,y+2) - L(x,y))^2] / mean(L)^2
 *
 * Defocus removes fine detail, so S peaks at best focus.  Dividing by the
 * squared mean makes S independent of exposure and lamp brightness.  Pixel
 * noise of σ counts adds a floor of 4σ²/mean², which is why blank glass
 * gives a flat curve: the search reports "no focus" when the largest
 * metric of a sweep is less than min_contrast times the smallest.  Binning
 * widens the focus curve (a blur of b pixels looks like b/bin), so each
 * probe is told the spacing of its phase and measures S on frames binned
 * enough that the curve is a few spacings wide: sampled that way, the
 * logarithm of S is close to a parabola near its peak.
 *
 * The search (focus_search) is coarse to fine: coarse_n probes spread
 * evenly over start ± R, where R = range_um (n - 1) / (n - 2) so that a
 * focus up to range_um away lies half a spacing inside the outer probes;
 * a Gaussian fit (a parabola through the logarithm of the metric at the
 * best probe and its two neighbours); then fine_n probes fine_step_um
 * apart around that estimate and a second fit.  Probes are issued in
 * ascending z within each phase, so the focus drive reverses at most once
 * per phase; the motion layer adds the one-sided approach.  No probe is
 * ever requested outside [z_min_um, z_max_um].
 */
#ifndef SS_IMAGING_FOCUS_H
#define SS_IMAGING_FOCUS_H

#include <stdbool.h>

#include "common/err.h"
#include "common/img.h"

/* Normalised Brenner sharpness of a U8 or F32 image (1 or 3 channels),
 * after bin × bin block averaging (bin ≥ 1).  0 for an empty image. */
double focus_sharpness(const struct img *im, int bin);

/* Measures the metric at z, binned for a focus curve a few spacing_um
 * wide (spacing_um: the distance between the probes of this phase).
 * Returns 0 or a negative code. */
typedef int (*focus_probe_fn)(void *ctx, double z_um, double spacing_um,
                              double *metric, struct ss_err *err);

struct af_params {
    double z_min_um, z_max_um;      /* hard limits, never left */
    double range_um;                /* focus found up to this far away */
    int coarse_n;                   /* coarse probes (≥ 3) */
    double fine_step_um;            /* spacing of the fine probes */
    int fine_n;                     /* fine probes (3) */
    int max_captures;               /* budget, including an extra fine
                                       probe when the peak is at an edge */
    double min_contrast;            /* max/min of the coarse sweep below
                                       this: no focus */
};

void af_params_default(struct af_params *p);

struct af_result {
    double z_um;                    /* best focus, or start when none */
    double metric;                  /* fine metric at the best probe */
    double contrast;                /* max/min of the coarse sweep */
    int captures;                   /* probes made */
    bool found;
};

/* Searches for best focus around z_start_um.  Returns 0 with r->found,
 * SS_ENOFOCUS when the sweep shows no focus peak (r->z_um is then the
 * start, clamped to the limits), or the probe's error. */
int focus_search(const struct af_params *p, double z_start_um,
                 focus_probe_fn probe, void *ctx, struct af_result *r,
                 struct ss_err *err);

/* Peak of a finished sweep of n metrics at ascending z: 0 and *z_peak, or
 * SS_ENOFOCUS when max/min < min_contrast.  The peak is refined by the
 * Gaussian fit through the best sample and its neighbours. */
int focus_sweep_peak(const double *z_um, const double *metric, int n,
                     double min_contrast, double *z_peak,
                     struct ss_err *err);

/* Vertex of the parabola through three points of log(metric); returns
 * false when they do not form a maximum. */
bool focus_fit3(const double z[3], const double metric[3], double *z_peak);

#endif
