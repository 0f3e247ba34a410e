/* SPDX-License-Identifier: MIT */
/*
 * Least-squares tile placement (imaging/place.h).
 *
 * x and y are independent: each minimises
 *     Σ_pairs w (x_b − x_a − dx)² + λ Σ_tiles (x_i − x0_i)²
 * whose normal equations (a weighted graph Laplacian plus λ I) are
 * symmetric positive definite and sparse: conjugate gradients with a
 * Jacobi preconditioner solve them in a few hundred iterations for
 * thousands of tiles, with no dense matrix.
 */
#include "imaging/place.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* y = A x for A = λ I + Σ_used w (e_a − e_b)(e_a − e_b)ᵀ. */
static void
apply(const struct place_problem *p, const double *x, double *y)
{
    int i;

    for (i = 0; i < p->n; i++)
        y[i] = p->prior_weight * x[i];
    for (i = 0; i < p->npairs; i++) {
        const struct place_pair *q = &p->pairs[i];
        double d;

        if (!q->used)
            continue;
        d = q->weight * (x[q->b] - x[q->a]);
        y[q->b] += d;
        y[q->a] -= d;
    }
}

static double
dot(const double *a, const double *b, int n)
{
    double s = 0;
    int i;

    for (i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Conjugate gradients on one axis; x holds the start and the answer. */
static void
solve_axis(const struct place_problem *p, const double *x0, int axis_y,
           double *x, double *work)
{
    int n = p->n, i, it;
    double *r = work, *z = work + n, *d = work + 2 * n, *q = work + 3 * n;
    double *diag = work + 4 * n, rz, rz_new, alpha, beta, bnorm;

    for (i = 0; i < n; i++) {
        r[i] = p->prior_weight * x0[i];
        diag[i] = p->prior_weight;
    }
    for (i = 0; i < p->npairs; i++) {
        const struct place_pair *pp = &p->pairs[i];
        double m = axis_y ? pp->dy : pp->dx;

        if (!pp->used)
            continue;
        r[pp->b] += pp->weight * m;
        r[pp->a] -= pp->weight * m;
        diag[pp->a] += pp->weight;
        diag[pp->b] += pp->weight;
    }
    bnorm = sqrt(dot(r, r, n));
    apply(p, x, q);
    for (i = 0; i < n; i++) {
        r[i] -= q[i];
        z[i] = r[i] / diag[i];
        d[i] = z[i];
    }
    rz = dot(r, z, n);
    for (it = 0; it < 10 * n + 100; it++) {
        if (sqrt(dot(r, r, n)) <= 1e-12 * (bnorm > 0 ? bnorm : 1))
            break;
        apply(p, d, q);
        alpha = rz / dot(d, q, n);
        for (i = 0; i < n; i++) {
            x[i] += alpha * d[i];
            r[i] -= alpha * q[i];
            z[i] = r[i] / diag[i];
        }
        rz_new = dot(r, z, n);
        beta = rz_new / rz;
        rz = rz_new;
        for (i = 0; i < n; i++)
            d[i] = z[i] + beta * d[i];
    }
}

/* Computes residuals; drops each used pair whose residual exceeds
 * outlier_px and is the largest among the pairs touching either of its
 * tiles (an error spreads into the neighbouring pairs, the largest share
 * staying with the culprit).  Returns how many it dropped. */
static int
drop_outliers(struct place_problem *p, const double *x, const double *y,
              double *tile_max, double *rms, bool may_drop)
{
    int i, n = 0, dropped = 0;
    double sum2 = 0;

    for (i = 0; i < p->n; i++)
        tile_max[i] = 0;
    for (i = 0; i < p->npairs; i++) {
        struct place_pair *q = &p->pairs[i];

        q->residual_px = hypot(x[q->b] - x[q->a] - q->dx,
                               y[q->b] - y[q->a] - q->dy);
        if (!q->used)
            continue;
        n++;
        sum2 += q->residual_px * q->residual_px;
        tile_max[q->a] = fmax(tile_max[q->a], q->residual_px);
        tile_max[q->b] = fmax(tile_max[q->b], q->residual_px);
    }
    *rms = n > 0 ? sqrt(sum2 / n) : 0;
    for (i = 0; i < p->npairs; i++) {
        struct place_pair *q = &p->pairs[i];

        if (may_drop && q->used && q->residual_px > p->outlier_px &&
            q->residual_px >= tile_max[q->a] &&
            q->residual_px >= tile_max[q->b]) {
            q->used = false;
            dropped++;
        }
    }
    return dropped;
}

int
place_solve(struct place_problem *p, double *x, double *y, double *rms_px,
            struct ss_err *err)
{
    double *work = malloc(sizeof(double) * ((size_t)6 * p->n + 1));
    int round, i;

    if (work == NULL)
        return err_set(err, -ENOMEM, "placement: out of memory for %d "
                       "tiles", p->n);
    for (i = 0; i < p->n; i++) {
        x[i] = p->x0[i];
        y[i] = p->y0[i];
    }
    for (i = 0; i < p->npairs; i++)
        p->pairs[i].used = true;
    for (round = 0; round <= 50; round++) {
        solve_axis(p, p->x0, 0, x, work);
        solve_axis(p, p->y0, 1, y, work);
        if (drop_outliers(p, x, y, work + 5 * p->n, rms_px, round < 50) ==
            0)
            break;
    }
    free(work);
    return 0;
}
