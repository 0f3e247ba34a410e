/* SPDX-License-Identifier: MIT */
/*
 * The focus surface: z of best focus as a smooth function of stage x, y,
 * fitted to autofocus points.  Models, in order of complexity:
 *
 *   constant     the mean z                          (1 or 2 points)
 *   plane        z = a + b x + c y                   (3 or more)
 *   quadratic    plane + d x^2 + e x y + f y^2       (8 or more)
 *   thin-plate   plane + sum w_i r_i^2 log r_i       (10 or more)
 *
 * Coordinates are centred and scaled to about ±1 before fitting, so the
 * least-squares systems (LAPACK dgels, dgesv) stay well conditioned with
 * stage coordinates of tens of millimetres.  Among the models the points
 * allow, the one with the smallest leave-one-out error is chosen; a more
 * complex model must beat a simpler one by 10 %.  Points whose
 * leave-one-out residual exceeds both 4 robust sigmas and outlier_um are
 * dropped one at a time (an autofocus that locked onto dust or a fold), so
 * refitting the kept points finds the same surface.
 *
 * Point sets that span fewer directions never fail: points all at one
 * spot give the constant; points on one line (spread across under 5 % of
 * the spread along, or under 1 µm) give the models in the distance along
 * the line, constant across it (no thin-plate); terms the points cannot
 * tell apart are solved at the minimum norm; and a model that still does
 * not solve steps down to the next simpler one.
 */
#ifndef SS_IMAGING_FOCUSMAP_H
#define SS_IMAGING_FOCUSMAP_H

#include <stdbool.h>

#include "common/err.h"

/* Thin-plate fits use at most this many points (above: quadratic). */
#define FMAP_TPS_MAX 64

enum {
    FMAP_CONST = 0,
    FMAP_PLANE = 1,
    FMAP_QUAD = 2,
    FMAP_TPS = 3,
};

struct fmap_surface {
    int model;                      /* FMAP_* */
    double cx, cy, scale;           /* u = (x - cx) / scale, likewise v */
    double coef[6];                 /* 1, u, v, u^2, u v, v^2 */
    int ntps;                       /* thin-plate centres */
    double tu[FMAP_TPS_MAX];        /* their u, v and weights */
    double tv[FMAP_TPS_MAX];
    double tw[FMAP_TPS_MAX];
    double rms_um;                  /* residual of the kept points */
    double loo_rms_um;              /* leave-one-out error of the model */
    int nused;                      /* points kept */
    int dims;                       /* directions the kept points span:
                                       2 spread, 1 on a line (fitted
                                       along it, constant across), 0 all
                                       at one spot */
};

/* Fits z(x, y) to the n points whose use[i] is true (use may be NULL:
 * all).  Outliers get use[i] = false when use is given.  max_model caps
 * the model (FMAP_TPS allows all).  outlier_um ≤ 0 disables rejection.
 * Returns SS_ENOFOCUS when no point is usable.  s is overwritten; it owns
 * no memory, so it may be copied and dropped freely. */
int fmap_fit(const double *x, const double *y, const double *z, bool *use,
             int n, int max_model, double outlier_um,
             struct fmap_surface *s, struct ss_err *err);

double fmap_eval(const struct fmap_surface *s, double x, double y);

/* The polynomial part in unscaled stage µm: z = r[0] + r[1] x + r[2] y +
 * r[3] x^2 + r[4] x y + r[5] y^2.  Exact for the constant, plane and
 * quadratic models; for a thin-plate surface it is only its plane. */
void fmap_poly_raw(const struct fmap_surface *s, double r[6]);

/* Evaluates fmap_poly_raw() coefficients at (x, y). */
double fmap_poly_raw_eval(const double r[6], double x, double y);

/* Zeroes s. */
void fmap_surface_clear(struct fmap_surface *s);

/* Name of a model: "constant", "plane", "quadratic", "thin-plate". */
const char *fmap_model_name(int model);

#endif
