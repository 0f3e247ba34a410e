/* SPDX-License-Identifier: MIT */
/*
 * Least-squares focus surfaces with model choice by leave-one-out error,
 * for any point set: the models are fitted only in the directions the
 * points span, so collinear or repeated points give a surface that
 * follows them instead of a failed or wild fit.
 */
#include "imaging/focusmap.h"

#include <errno.h>
#include <lapack.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TPS_LAMBDA 1e-3             /* thin-plate smoothing, scaled units */
#define MIN_POINTS_FOR_REJECTION 6

/* Points closer than this (RMS about their centre, or across their main
 * axis) do not determine a slope: the stage repeats to about 1 µm. */
#define SPAN_MIN_UM 1.0

/* Points whose RMS spread across their main axis is below this fraction
 * of the spread along it count as one line: the tilt across would rest
 * on a baseline 20 times shorter than the one along, and an autofocus
 * error of 0.3 µm would tilt the surface by 6 µm per spread-length. */
#define LINE_FRAC 0.05

/* Singular values below this fraction of the largest one are directions
 * the points do not determine: the least-squares solution leaves them
 * at zero (the minimum-norm solution). */
#define LSQ_RCOND 1e-7

/* Points in scaled coordinates, and the directions they span: dims 2,
 * or 1 along the unit vector (du, dv), or 0 (all at one spot). */
struct fpts {
    double *u, *v, *z;
    int n;
    int dims;
    double du, dv;
};

static int
model_terms(int model)
{
    static const int terms[] = { 1, 3, 6 };

    return model <= FMAP_QUAD ? terms[model] : 3;
}

static int
model_min_points(int model)
{
    static const int need[] = { 1, 3, 8, 10 };

    return need[model];
}

const char *
fmap_model_name(int model)
{
    static const char *names[] = { "constant", "plane", "quadratic",
                                   "thin-plate" };

    return model >= 0 && model <= FMAP_TPS ? names[model] : "unknown";
}

static void
poly_row(double u, double v, double row[6])
{
    row[0] = 1;
    row[1] = u;
    row[2] = v;
    row[3] = u * u;
    row[4] = u * v;
    row[5] = v * v;
}

/* The fitted basis of a polynomial model at (u, v); returns its size.
 * On a line the basis is 1, t, t^2 in the distance t along it, so the
 * surface is constant across the line. */
static int
basis_row(const struct fpts *p, int model, double u, double v,
          double row[6])
{
    double t = p->du * u + p->dv * v;

    if (p->dims == 2) {
        poly_row(u, v, row);
        return model_terms(model);
    }
    row[0] = 1;
    row[1] = t;
    row[2] = t * t;
    if (p->dims == 0)
        return 1;
    return model < FMAP_QUAD ? model + 1 : 3;
}

/* Coefficients b of basis_row() as the 1, u, v, u^2, u v, v^2
 * coefficients of the surface. */
static void
expand_coef(const struct fpts *p, const double *b, int k, double coef[6])
{
    double du = p->du, dv = p->dv;

    memset(coef, 0, 6 * sizeof(*coef));
    if (p->dims == 2) {
        memcpy(coef, b, (size_t)k * sizeof(*coef));
        return;
    }
    coef[0] = b[0];
    if (k > 1) {
        coef[1] = b[1] * du;
        coef[2] = b[1] * dv;
    }
    if (k > 2) {
        coef[3] = b[2] * du * du;
        coef[4] = 2 * b[2] * du * dv;
        coef[5] = b[2] * dv * dv;
    }
}

static double
tps_phi(double du, double dv)
{
    double r2 = du * du + dv * dv;

    return r2 > 0 ? 0.5 * r2 * log(r2) : 0;
}

/* Least squares for the polynomial models through dgelss (SVD): terms
 * the points do not tell apart share the fit at the smallest norm
 * instead of making the system singular. */
static int
fit_poly(const struct fpts *p, int model, struct fmap_surface *s)
{
    int n = p->n, i, j, info, nrhs = 1, rank, lwork = 16 * (n + 6) + 64;
    double *a, *b, *work, sv[6], rcond = LSQ_RCOND, row[6];
    int k = basis_row(p, model, 0, 0, row);

    if (n < k || n == 0)
        return -1;
    a = calloc((size_t)n * k, sizeof(*a));
    b = calloc((size_t)n, sizeof(*b));
    work = calloc((size_t)lwork, sizeof(*work));
    if (a == NULL || b == NULL || work == NULL) {
        free(a);
        free(b);
        free(work);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        basis_row(p, model, p->u[i], p->v[i], row);
        for (j = 0; j < k; j++)
            a[(size_t)j * n + i] = row[j];
        b[i] = p->z[i];
    }
    LAPACK_dgelss(&n, &k, &nrhs, a, &n, b, &n, sv, &rcond, &rank, work,
                  &lwork, &info);
    expand_coef(p, b, info == 0 ? k : 0, s->coef);
    free(a);
    free(b);
    free(work);
    s->model = model;
    return info == 0 ? 0 : -EDOM;
}

/* The thin-plate spline with a plane as its affine part, via dgesv.  The
 * smoothing keeps the system regular with repeated points; the plane
 * needs points that span both directions. */
static int
fit_tps(const struct fpts *p, struct fmap_surface *s)
{
    int n = p->n, m = n + 3, i, j, info, nrhs = 1, *ipiv;
    double *a, *b;

    if (p->dims < 2)
        return -EDOM;
    a = calloc((size_t)m * m, sizeof(*a));
    b = calloc((size_t)m, sizeof(*b));
    ipiv = calloc((size_t)m, sizeof(*ipiv));
    if (n > FMAP_TPS_MAX || !a || !b || !ipiv) {
        free(a);
        free(b);
        free(ipiv);
        return n > FMAP_TPS_MAX ? -E2BIG : -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++)
            a[(size_t)j * m + i] = tps_phi(p->u[i] - p->u[j],
                                           p->v[i] - p->v[j]);
        a[(size_t)i * m + i] += TPS_LAMBDA;
        a[(size_t)n * m + i] = a[(size_t)i * m + n] = 1;
        a[(size_t)(n + 1) * m + i] = a[(size_t)i * m + n + 1] = p->u[i];
        a[(size_t)(n + 2) * m + i] = a[(size_t)i * m + n + 2] = p->v[i];
        b[i] = p->z[i];
    }
    LAPACK_dgesv(&m, &nrhs, a, &m, ipiv, b, &m, &info);
    for (i = 0; i < n && info == 0; i++) {
        s->tu[i] = p->u[i];
        s->tv[i] = p->v[i];
        s->tw[i] = b[i];
    }
    memset(s->coef, 0, sizeof(s->coef));
    for (j = 0; j < 3 && info == 0; j++)
        s->coef[j] = b[n + j];
    s->ntps = n;
    s->model = FMAP_TPS;
    free(a);
    free(b);
    free(ipiv);
    return info == 0 ? 0 : -EDOM;
}

static void
release_tps(struct fmap_surface *s)
{
    s->ntps = 0;
}

static int
fit_model(const struct fpts *p, int model, struct fmap_surface *s)
{
    release_tps(s);
    if (model == FMAP_TPS)
        return fit_tps(p, s);
    return fit_poly(p, model, s);
}

/* z at scaled coordinates (u, v). */
static double
eval_scaled(const struct fmap_surface *s, double u, double v)
{
    double row[6], z = 0;
    int j, k = model_terms(s->model);

    poly_row(u, v, row);
    for (j = 0; j < k; j++)
        z += s->coef[j] * row[j];
    for (j = 0; j < s->ntps; j++)
        z += s->tw[j] * tps_phi(u - s->tu[j], v - s->tv[j]);
    return z;
}

double
fmap_eval(const struct fmap_surface *s, double x, double y)
{
    return eval_scaled(s, (x - s->cx) / s->scale, (y - s->cy) / s->scale);
}

void
fmap_surface_clear(struct fmap_surface *s)
{
    release_tps(s);
    memset(s, 0, sizeof(*s));
}

static int
fpts_alloc(struct fpts *p, int n)
{
    p->n = n;
    p->u = calloc((size_t)n + 1, sizeof(double));
    p->v = calloc((size_t)n + 1, sizeof(double));
    p->z = calloc((size_t)n + 1, sizeof(double));
    return p->u && p->v && p->z ? 0 : -ENOMEM;
}

static void
fpts_free(struct fpts *p)
{
    free(p->u);
    free(p->v);
    free(p->z);
}

/* Leave-one-out residuals of one model into res; their RMS. */
static double
loo_residuals(const struct fpts *p, int model, double *res)
{
    struct fmap_surface t = { 0 };
    struct fpts q;
    double ss = 0;
    int i, j, k;

    if (fpts_alloc(&q, p->n - 1) != 0) {
        fpts_free(&q);
        return INFINITY;
    }
    q.dims = p->dims;
    q.du = p->du;
    q.dv = p->dv;
    for (i = 0; i < p->n; i++) {
        for (j = 0, k = 0; j < p->n; j++) {
            if (j == i)
                continue;
            q.u[k] = p->u[j];
            q.v[k] = p->v[j];
            q.z[k++] = p->z[j];
        }
        if (fit_model(&q, model, &t) != 0) {
            ss = INFINITY;
            break;
        }
        res[i] = p->z[i] - eval_scaled(&t, p->u[i], p->v[i]);
        ss += res[i] * res[i];
    }
    fmap_surface_clear(&t);
    fpts_free(&q);
    return sqrt(ss / p->n);
}

/* The model with the smallest leave-one-out error, simpler ones winning
 * unless beaten by 10 %. */
static int
choose_model(const struct fpts *p, int max_model, double *loo_rms)
{
    double *res, e, best_e;
    int m, best;

    *loo_rms = INFINITY;
    if (p->dims == 0)
        max_model = FMAP_CONST;
    else if (p->dims == 1 && max_model > FMAP_QUAD)
        max_model = FMAP_QUAD;
    if (p->n < 4)
        return p->n >= 3 && max_model >= FMAP_PLANE ? FMAP_PLANE : FMAP_CONST;
    res = calloc((size_t)p->n, sizeof(*res));
    if (res == NULL)
        return FMAP_CONST;
    best = FMAP_CONST;
    best_e = loo_residuals(p, FMAP_CONST, res);
    for (m = FMAP_PLANE; m <= max_model && m <= FMAP_TPS; m++) {
        if (p->n < model_min_points(m) ||
            (m == FMAP_TPS && p->n > FMAP_TPS_MAX))
            break;
        e = loo_residuals(p, m, res);
        if (e < 0.9 * best_e) {
            best = m;
            best_e = e;
        }
    }
    free(res);
    *loo_rms = best_e;
    return best;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Index (into p) of an outlier of model, or -1. */
static int
find_outlier(const struct fpts *p, int model, double outlier_um)
{
    double *res = calloc((size_t)p->n, sizeof(*res));
    double *mag = calloc((size_t)p->n, sizeof(*mag)), sigma;
    int i, worst = 0;

    if (res == NULL || mag == NULL || !isfinite(loo_residuals(p, model,
                                                              res))) {
        free(res);
        free(mag);
        return -1;
    }
    for (i = 0; i < p->n; i++) {
        mag[i] = fabs(res[i]);
        if (mag[i] > mag[worst])
            worst = i;
    }
    qsort(mag, (size_t)p->n, sizeof(*mag), cmp_double);
    sigma = 1.4826 * mag[p->n / 2];
    if (!(fabs(res[worst]) > fmax(4 * sigma, outlier_um)))
        worst = -1;
    free(res);
    free(mag);
    return worst;
}

/* Scaled copies of the kept points; idx[k] is the caller's index. */
static int
gather(const double *x, const double *y, const double *z, const bool *use,
       int n, struct fpts *p, int *idx, struct fmap_surface *s)
{
    double ext = 1;
    int i, k = 0;

    s->cx = s->cy = 0;
    for (i = 0; i < n; i++)
        if ((use == NULL || use[i]) && isfinite(z[i])) {
            s->cx += x[i];
            s->cy += y[i];
            idx[k++] = i;
        }
    if (k == 0)
        return 0;
    s->cx /= k;
    s->cy /= k;
    for (i = 0; i < k; i++)
        ext = fmax(ext, fmax(fabs(x[idx[i]] - s->cx),
                             fabs(y[idx[i]] - s->cy)));
    s->scale = ext;
    p->n = k;
    for (i = 0; i < k; i++) {
        p->u[i] = (x[idx[i]] - s->cx) / ext;
        p->v[i] = (y[idx[i]] - s->cy) / ext;
        p->z[i] = z[idx[i]];
    }
    return k;
}

/* The directions the points span (struct fpts), from the eigenvalues of
 * their scatter: RMS spread along the main axis and across it, in µm. */
static void
find_span(struct fpts *p, double scale)
{
    double suu = 0, svv = 0, suv = 0, h, l1, l2, ax, ay, bx, by, len;
    int i;

    for (i = 0; i < p->n; i++) {
        suu += p->u[i] * p->u[i] / p->n;
        svv += p->v[i] * p->v[i] / p->n;
        suv += p->u[i] * p->v[i] / p->n;
    }
    h = hypot(0.5 * (suu - svv), suv);
    l1 = 0.5 * (suu + svv) + h;
    l2 = fmax(0.5 * (suu + svv) - h, 0);
    ax = l1 - svv;
    ay = suv;
    bx = suv;
    by = l1 - suu;
    if (hypot(bx, by) > hypot(ax, ay)) {
        ax = bx;
        ay = by;
    }
    len = hypot(ax, ay);
    p->du = len > 0 ? ax / len : 1;
    p->dv = len > 0 ? ay / len : 0;
    if (sqrt(l1) * scale < SPAN_MIN_UM)
        p->dims = 0;
    else if (sqrt(l2) < fmax(SPAN_MIN_UM / scale, LINE_FRAC * sqrt(l1)))
        p->dims = 1;
    else
        p->dims = 2;
}

static void
residual_rms(const struct fpts *p, struct fmap_surface *s)
{
    double ss = 0, r;
    int i;

    for (i = 0; i < p->n; i++) {
        r = p->z[i] - eval_scaled(s, p->u[i], p->v[i]);
        ss += r * r;
    }
    s->rms_um = p->n > 0 ? sqrt(ss / p->n) : 0;
    s->nused = p->n;
}

int
fmap_fit(const double *x, const double *y, const double *z, bool *use,
         int n, int max_model, double outlier_um, struct fmap_surface *s,
         struct ss_err *err)
{
    struct fpts p;
    int *idx = calloc((size_t)n + 1, sizeof(*idx)), model, out, rc;
    double loo;

    fmap_surface_clear(s);
    if (idx == NULL || fpts_alloc(&p, n) != 0) {
        free(idx);
        fpts_free(&p);
        return err_set(err, -ENOMEM, "focus map: no memory for %d points",
                       n);
    }
    for (;;) {
        if (gather(x, y, z, use, n, &p, idx, s) == 0) {
            rc = err_set(err, SS_ENOFOCUS, "focus map: none of %d points "
                         "has a focus", n);
            goto out;
        }
        find_span(&p, s->scale);
        model = choose_model(&p, max_model, &loo);
        if (use == NULL || outlier_um <= 0 ||
            p.n < MIN_POINTS_FOR_REJECTION)
            break;
        out = find_outlier(&p, model, outlier_um);
        if (out < 0)
            break;
        use[idx[out]] = false;
    }
    /* A model that still cannot be fitted steps down: the constant
     * always can, so a slide never fails for its point geometry. */
    while ((rc = fit_model(&p, model, s)) != 0 && model > FMAP_CONST) {
        if (rc == -ENOMEM)
            break;
        model--;
        loo = INFINITY;
    }
    if (rc != 0) {
        rc = err_set(err, rc == -ENOMEM ? -ENOMEM : -EDOM, "focus map: "
                     "%s fit to %d points failed", fmap_model_name(model),
                     p.n);
        goto out;
    }
    s->dims = p.dims;
    s->loo_rms_um = loo;
    residual_rms(&p, s);
out:
    free(idx);
    fpts_free(&p);
    return rc;
}

void
fmap_poly_raw(const struct fmap_surface *s, double r[6])
{
    const double *c = s->coef;
    double k = s->scale > 0 ? s->scale : 1, k2 = k * k;
    double cx = s->cx, cy = s->cy;

    r[3] = c[3] / k2;
    r[4] = c[4] / k2;
    r[5] = c[5] / k2;
    r[1] = c[1] / k - 2 * c[3] * cx / k2 - c[4] * cy / k2;
    r[2] = c[2] / k - 2 * c[5] * cy / k2 - c[4] * cx / k2;
    r[0] = c[0] - c[1] * cx / k - c[2] * cy / k + c[3] * cx * cx / k2 +
           c[4] * cx * cy / k2 + c[5] * cy * cy / k2;
}

double
fmap_poly_raw_eval(const double r[6], double x, double y)
{
    return r[0] + r[1] * x + r[2] * y + r[3] * x * x + r[4] * x * y +
           r[5] * y * y;
}
