/* SPDX-License-Identifier: MIT */
/*
 * Global tile placement: the positions that best agree, in the least
 * squares sense, with every trusted pairwise registration, held to the
 * stage positions by a weak prior so that tiles (or groups of tiles) with
 * no registration keep where the stage put them.  Pairs that disagree
 * with the solution are dropped one batch at a time and the system solved
 * again, so one bad registration cannot bend a whole row.
 */
#ifndef SS_IMAGING_PLACE_H
#define SS_IMAGING_PLACE_H

#include <stdbool.h>

#include "common/err.h"

struct place_pair {
    int a, b;                       /* tile indices */
    double dx, dy;                  /* measured position of b minus a */
    double weight;                  /* 1 / σ² of the measurement, px⁻² */
    bool used;                      /* out: kept by the outlier rejection */
    double residual_px;             /* out: disagreement with the solution */
};

struct place_problem {
    int n;                          /* tiles */
    const double *x0, *y0;          /* stage positions, px */
    double prior_weight;            /* 1 / σ² of a stage position, px⁻² */
    int npairs;
    struct place_pair *pairs;
    double outlier_px;              /* residuals above this may be dropped */
};

/*
 * Solves for x[n], y[n].  Sets used and residual_px of every pair and, in
 * *rms_px, the RMS residual of the pairs kept.  Each round drops the pairs
 * whose residual exceeds outlier_px and is the largest at both of its
 * tiles, then solves again; at most 50 rounds.  Two pairs that only ever
 * appear in the same loop cannot be told apart and are dropped together.
 */
int place_solve(struct place_problem *p, double *x, double *y,
                double *rms_px, struct ss_err *err);

#endif
