/* SPDX-License-Identifier: MIT */
/*
 * The procedural phantom: H&E, KI67 or CK stained tissue that can be
 * evaluated for any region on demand, with exact ground truth.
 *
 * Geometry comes from smooth random fields (value-noise fBm) sampled on a
 * 4 µm lattice and interpolated bilinearly; the interpolated fields *are*
 * the definition, so the label map and the rendering agree exactly:
 *   tissue   envelope of the section plus fBm (700 µm), minus round gaps
 *            (fBm 160 µm) and thin tears (zero band of fBm 500 µm)
 *   tumour   fBm (260 µm, 4 octaves) above 0.06: irregular nests; the rest
 *            of the tissue is stroma
 * Cells are placed on jittered grids, one candidate per cell, so they
 * never overlap their neighbours: tumour nuclei on a 9.8 µm grid (large,
 * dark, round to oval), stroma nuclei on a 22 µm grid (sparse, elongated
 * along the fibres).  A nucleus belongs to the class at its centre.  KI67
 * positivity is a keyed coin with a probability that varies in hotspots.
 * Colour is Beer–Lambert over the Ruifrok–Johnston optical densities of
 * hematoxylin, eosin and DAB; stroma is eosin fibres along a warped
 * direction field.
 *
 * At pixel sizes above 2.5 µm nuclei and fibres are below the pixel: the
 * renderer then uses their mean optical density and evaluates the fields
 * directly instead of through the lattice.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

#define LAT_UM 4.0                  /* field lattice */
#define COARSE_UM 2.5               /* above: mean-density rendering */
#define TUM_CELL_UM 9.8
#define STR_CELL_UM 22.0
#define NUC_GAP_UM 0.6              /* least gap between two nuclei */
#define FIBRE_UM 14.0               /* fibre bundle period */
#define OD_LUT_N 8192
#define OD_LUT_MAX 4.0
#define SIN_LUT_N 4096
#define TEX_TUM_UM 4.0              /* cytoplasm texture cell */
#define TEX_FIB_UM 2.5              /* fibre texture cell */

/* Optical density per unit stain, R G B: hematoxylin and DAB as given by
 * Ruifrok and Johnston; eosin redder than their vector (more blue
 * absorption), as eosin looks on slides such as CMU-1. */
static const double vec_h[3] = { 0.650, 0.704, 0.286 };
static const double vec_e[3] = { 0.090, 0.850, 0.520 };
static const double vec_d[3] = { 0.268, 0.570, 0.776 };

/* Stain amounts (H, E, DAB) of each part of the tissue, per stain. */
struct look {
    double cyto[3];                 /* tumour cytoplasm */
    double nuc[3];                  /* tumour nucleus, negative */
    double nuc_pos[3];              /* KI67-positive tumour nucleus */
    double fibre[3];                /* stroma fibre at full density */
    double snuc[3];                 /* stroma nucleus */
};

static const struct look looks[3] = {
    [SIM_STAIN_HE] = { { 0.18, 0.22, 0 }, { 0.95, 0.08, 0 },
                       { 0.95, 0.08, 0 }, { 0.03, 0.55, 0 },
                       { 0.85, 0.08, 0 } },
    [SIM_STAIN_KI67] = { { 0.07, 0, 0.03 }, { 0.60, 0, 0 },
                         { 0.25, 0, 0.80 }, { 0.05, 0, 0.01 },
                         { 0.50, 0, 0 } },
    [SIM_STAIN_CK] = { { 0.06, 0, 0.50 }, { 0.60, 0, 0.05 },
                       { 0.60, 0, 0.05 }, { 0.05, 0, 0.01 },
                       { 0.50, 0, 0 } },
};

enum field { F_TISSUE, F_GAP, F_TEAR, F_TUMOR, F_SHADE, F_WARP, F_WARP2,
             F_BUNDLE, F_NF };

struct sim__phantom {
    uint64_t seed;
    int stain;
    double w_um, h_um;
    double fdir[2];                 /* unit vector across the fibres */
    float od_lut[OD_LUT_N];         /* 10^-od */
    float sin_lut[SIN_LUT_N];       /* sin over one turn */
    double fib_lut[SIN_LUT_N];      /* fibre density profile, fibre() */
    uint8_t rgb_lut[3][OD_LUT_N];   /* glass × od_lut as 8-bit values */
    double glass[3];
};

/* floor() without a library call (the hot loops call it per pixel):
 * the same value for every input, -0 and non-finite ones included. */
static inline double
ph_floor(double x)
{
    double t;

    if (!(fabs(x) < 4503599627370496.0))    /* 2^52: already integral */
        return x;
    t = (double)(int64_t)x;
    return t > x ? t - 1 : t == x ? x : t;
}

/* ---- noise -------------------------------------------------------------- */

static inline double
lat_value(uint64_t seed, int64_t i, int64_t j)
{
    uint64_t h = rng_mix64(seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL) ^
                           ((uint64_t)j * 0xc2b2ae3d27d4eb4fULL));

    return sim__u01(h) * 2 - 1;
}

static double
vnoise(uint64_t seed, double x, double y)
{
    double fx = ph_floor(x), fy = ph_floor(y), u = x - fx, v = y - fy;
    int64_t i = (int64_t)fx, j = (int64_t)fy;
    double a = lat_value(seed, i, j), b = lat_value(seed, i + 1, j);
    double c = lat_value(seed, i, j + 1), d = lat_value(seed, i + 1, j + 1);

    u = u * u * (3 - 2 * u);
    v = v * v * (3 - 2 * v);
    return (a + (b - a) * u) * (1 - v) + (c + (d - c) * u) * v;
}

/* Value noise of one cell size over a tile, its lattice values hashed
 * once and kept as floats.  The texture at (x, y): gx = x * inv,
 * u = smoothstep(gx - floor(gx)), likewise v, and with p the stored
 * values of the cell, (p00 + (p10 - p00) u) (1 - v) + (p01 + (p11 - p01)
 * u) v, the differences taken in single precision. */
struct gnoise {
    int64_t i0, j0;
    int nx, ny;
    double inv;
    float *v;
};

static int
gnoise_fill(struct gnoise *g, uint64_t seed, double cell, double x0,
            double y0, double w, double h)
{
    int i, j;

    g->inv = 1.0 / cell;
    g->i0 = (int64_t)ph_floor(x0 * g->inv) - 1;
    g->j0 = (int64_t)ph_floor(y0 * g->inv) - 1;
    g->nx = (int)ceil(w * g->inv) + 4;
    g->ny = (int)ceil(h * g->inv) + 4;
    g->v = malloc((size_t)g->nx * g->ny * sizeof(float));
    if (g->v == NULL)
        return -ENOMEM;
    for (j = 0; j < g->ny; j++)
        for (i = 0; i < g->nx; i++)
            g->v[(size_t)j * g->nx + i] =
                (float)lat_value(seed, g->i0 + i, g->j0 + j);
    return 0;
}

static double
fbm(uint64_t seed, double x, double y, double scale, int octaves)
{
    double sum = 0, amp = 1, norm = 0, f = 1.0 / scale;
    int o;

    for (o = 0; o < octaves; o++) {
        sum += amp * vnoise(seed + (uint64_t)o * 7919, x * f, y * f);
        norm += amp;
        amp *= 0.5;
        f *= 2;
    }
    return sum / norm;
}

/* Scale (µm) and octaves of each field's fBm. */
static const struct {
    double scale;
    int octaves;
} fparm[F_NF] = {
    [F_TISSUE] = { 700, 4 }, [F_GAP] = { 160, 3 }, [F_TEAR] = { 500, 2 },
    [F_TUMOR] = { 260, 4 }, [F_SHADE] = { 1200, 2 }, [F_WARP] = { 110, 3 },
    [F_WARP2] = { 28, 2 }, [F_BUNDLE] = { 60, 2 },
};

static uint64_t
field_seed(const struct sim__phantom *ph, int k)
{
    return ph->seed * 0x100000001b3ULL + (uint64_t)k * 1000003;
}

/* Field k at (x, y) from its fBm value there. */
static double
field_finish(const struct sim__phantom *ph, int k, double x, double y,
             double fb)
{
    double dx, dy, r;

    switch (k) {
    case F_TISSUE:
        dx = (x - ph->w_um / 2) / (0.47 * ph->w_um);
        dy = (y - ph->h_um / 2) / (0.47 * ph->h_um);
        r = sqrt(dx * dx + dy * dy);
        return 0.8 * (1 - r) + 0.55 * fb - (r > 1 ? 10 : 0);
    case F_TEAR:
        return fabs(fb);
    case F_TUMOR:
        return fb - 0.06;
    case F_WARP:
        return fb * 70;
    case F_WARP2:
        return fb * 6;
    default:
        return fb;
    }
}

/* The raw value of field k at point (x, y), µm. */
static double
field_raw(const struct sim__phantom *ph, int k, double x, double y)
{
    return field_finish(ph, k, x, y, fbm(field_seed(ph, k), x, y,
                                         fparm[k].scale,
                                         fparm[k].octaves));
}

/* A block of lattice values of the fields [k0, k1) covering lattice
 * indices i0..i0+nx-1, j0..j0+ny-1. */
struct lat {
    int64_t i0, j0;
    int nx, ny;
    float *v[F_NF];
};

/*
 * fbm() over a grid of points at once.  One octave of value noise at
 * (xs[i] * f, ys[j] * f) needs, per column and per row, a cell index and
 * a smoothed fraction, and the hashed values of the few lattice cells the
 * grid touches; each point then costs only the interpolation.  The
 * arithmetic per point is that of vnoise() and fbm(), term by term, so
 * the values are the same to the last bit.
 */
struct octave {
    int64_t ix0, iy0;               /* first lattice index of the table */
    int tw;                         /* table row length */
    int *ix, *iy;                   /* per column / row: index - ix0/iy0 */
    double *us, *vs;                /* smoothed fractions */
    double *t;                      /* lattice values */
};

/* Cell index (relative to the smallest, *lo) and smoothed fraction of
 * the points xs[i] * f, as vnoise() computes them. */
static void
cell_coords(const double *xs, int n, double f, int *ix, double *us,
            int64_t *lo, int64_t *hi)
{
    int i;

    *lo = *hi = (int64_t)ph_floor(xs[0] * f);
    for (i = 1; i < n; i++) {
        int64_t c = (int64_t)ph_floor(xs[i] * f);

        *lo = c < *lo ? c : *lo;
        *hi = c > *hi ? c : *hi;
    }
    for (i = 0; i < n; i++) {
        double x = xs[i] * f, fx = ph_floor(x), u = x - fx;

        us[i] = u * u * (3 - 2 * u);
        ix[i] = (int)((int64_t)fx - *lo);
    }
}

static void
octave_free(struct octave *o)
{
    free(o->ix);
    free(o->iy);
    free(o->us);
    free(o->vs);
    free(o->t);
}

static int
octave_make(struct octave *o, uint64_t seed, double f, const double *xs,
            int nx, const double *ys, int ny)
{
    int64_t xlo, xhi, ylo, yhi;
    int i, j, th;

    o->ix = malloc((size_t)nx * sizeof(int));
    o->us = malloc((size_t)nx * sizeof(double));
    o->iy = malloc((size_t)ny * sizeof(int));
    o->vs = malloc((size_t)ny * sizeof(double));
    o->t = NULL;
    if (o->ix == NULL || o->us == NULL || o->iy == NULL || o->vs == NULL)
        return -ENOMEM;
    cell_coords(xs, nx, f, o->ix, o->us, &xlo, &xhi);
    cell_coords(ys, ny, f, o->iy, o->vs, &ylo, &yhi);
    o->ix0 = xlo;
    o->iy0 = ylo;
    o->tw = (int)(xhi - xlo) + 2;
    th = (int)(yhi - ylo) + 2;
    o->t = malloc((size_t)o->tw * th * sizeof(double));
    if (o->t == NULL)
        return -ENOMEM;
    for (j = 0; j < th; j++)
        for (i = 0; i < o->tw; i++)
            o->t[(size_t)j * o->tw + i] = lat_value(seed, xlo + i, ylo + j);
    return 0;
}

/* sum[i] += amp * vnoise(...) along row j of the grid. */
static void
octave_row(const struct octave *o, int j, int nx, double amp, double *sum)
{
    const double *t = o->t + (size_t)o->iy[j] * o->tw;
    double v = o->vs[j];
    int i;

    for (i = 0; i < nx; i++) {
        const double *p = t + o->ix[i];
        double u = o->us[i];

        sum[i] += amp * ((p[0] + (p[1] - p[0]) * u) * (1 - v) +
                         (p[o->tw] + (p[o->tw + 1] - p[o->tw]) * u) * v);
    }
}

/* Field k at the lattice points of block L into L->v[k]. */
static int
field_block(const struct sim__phantom *ph, struct lat *L, int k,
            const double *xs, const double *ys, double *sum)
{
    struct octave oc[4];
    double amp = 1, norm = 0, f = 1.0 / fparm[k].scale;
    int no = fparm[k].octaves, o, i, j, rc = 0;

    memset(oc, 0, sizeof(oc));
    for (o = 0; rc == 0 && o < no; o++) {
        rc = octave_make(&oc[o], field_seed(ph, k) + (uint64_t)o * 7919, f,
                         xs, L->nx, ys, L->ny);
        f *= 2;
    }
    for (j = 0; rc == 0 && j < L->ny; j++) {
        memset(sum, 0, (size_t)L->nx * sizeof(double));
        amp = 1;
        norm = 0;
        for (o = 0; o < no; o++) {
            octave_row(&oc[o], j, L->nx, amp, sum);
            norm += amp;
            amp *= 0.5;
        }
        for (i = 0; i < L->nx; i++)
            L->v[k][(size_t)j * L->nx + i] = (float)field_finish(
                ph, k, xs[i], ys[j], sum[i] / norm);
    }
    for (o = 0; o < no; o++)
        octave_free(&oc[o]);
    return rc;
}

static int
lat_fill(const struct sim__phantom *ph, struct lat *L, int64_t i0,
         int64_t j0, int nx, int ny, int k1)
{
    double *xs, *ys, *sum;
    int k, i, rc = 0;

    memset(L, 0, sizeof(*L));
    L->i0 = i0;
    L->j0 = j0;
    L->nx = nx;
    L->ny = ny;
    L->v[0] = malloc((size_t)nx * ny * k1 * sizeof(float));
    xs = malloc((size_t)nx * sizeof(double));
    ys = malloc((size_t)ny * sizeof(double));
    sum = malloc((size_t)nx * sizeof(double));
    if (L->v[0] == NULL || xs == NULL || ys == NULL || sum == NULL)
        rc = -ENOMEM;
    for (i = 0; rc == 0 && i < nx; i++)
        xs[i] = (i0 + i) * LAT_UM;
    for (i = 0; rc == 0 && i < ny; i++)
        ys[i] = (j0 + i) * LAT_UM;
    for (k = 0; rc == 0 && k < k1; k++) {
        L->v[k] = L->v[0] + (size_t)nx * ny * k;
        rc = field_block(ph, L, k, xs, ys, sum);
    }
    free(xs);
    free(ys);
    free(sum);
    return rc;
}

static void
lat_free(struct lat *L)
{
    free(L->v[0]);
}

/* Bilinear interpolation of four lattice values. */
static inline double
bilerp(double a, double b, double c, double d, double u, double v)
{
    return (a + (b - a) * u) * (1 - v) + (c + (d - c) * u) * v;
}

static inline double
lat_at(const struct lat *L, int k, double x, double y)
{
    double gx = x / LAT_UM, gy = y / LAT_UM;
    double fx = ph_floor(gx), fy = ph_floor(gy);
    int i = (int)((int64_t)fx - L->i0), j = (int)((int64_t)fy - L->j0);
    const float *p = L->v[k] + (size_t)j * L->nx + i;

    return bilerp(p[0], p[1], p[L->nx], p[L->nx + 1], gx - fx, gy - fy);
}

/* The defining (interpolated) value of field k at (x, y). */
static double
field_at(const struct sim__phantom *ph, int k, double x, double y)
{
    double gx = x / LAT_UM, gy = y / LAT_UM;
    double fx = ph_floor(gx), fy = ph_floor(gy);

    return bilerp((float)field_raw(ph, k, fx * LAT_UM, fy * LAT_UM),
                  (float)field_raw(ph, k, (fx + 1) * LAT_UM, fy * LAT_UM),
                  (float)field_raw(ph, k, fx * LAT_UM, (fy + 1) * LAT_UM),
                  (float)field_raw(ph, k, (fx + 1) * LAT_UM,
                                   (fy + 1) * LAT_UM),
                  gx - fx, gy - fy);
}

static inline int
classify(double tissue, double gap, double tear, double tumor)
{
    if (tissue <= 0.2 || gap > 0.42 || tear < 0.012)
        return SIM_LABEL_GLASS;
    return tumor > 0 ? SIM_LABEL_TUMOR : SIM_LABEL_STROMA;
}

int
sim__phantom_label(const struct sim__phantom *ph, double x, double y)
{
    if (x < 0 || y < 0 || x >= ph->w_um || y >= ph->h_um)
        return SIM_LABEL_GLASS;
    if (field_at(ph, F_TISSUE, x, y) <= 0.2)
        return SIM_LABEL_GLASS;
    return classify(1, field_at(ph, F_GAP, x, y),
                    field_at(ph, F_TEAR, x, y), field_at(ph, F_TUMOR, x, y));
}

static inline int
lat_class(const struct sim__phantom *ph, const struct lat *L, double x,
          double y)
{
    if (x < 0 || y < 0 || x >= ph->w_um || y >= ph->h_um)
        return SIM_LABEL_GLASS;
    return classify(lat_at(L, F_TISSUE, x, y), lat_at(L, F_GAP, x, y),
                    lat_at(L, F_TEAR, x, y), lat_at(L, F_TUMOR, x, y));
}

/* Labels of the points (x0 + i p, y0 + j p), row band by row band through
 * lattice blocks, into out (w * h bytes). */
int
sim__phantom_labels(const struct sim__phantom *ph, double x0, double y0,
                    int w, int h, double p, uint8_t *out)
{
    int lx = (int)ceil((w - 1) * p / LAT_UM) + 4, band, j, i, jb;
    struct lat L;

    band = (int)fmax(1, fmin(h, 2e6 / lx / fmax(1, p / LAT_UM)));
    for (jb = 0; jb < h; jb += band) {
        int nb = jb + band > h ? h - jb : band;
        double yt = y0 + jb * p;
        int64_t i0 = (int64_t)ph_floor(x0 / LAT_UM) - 1;
        int64_t j0 = (int64_t)ph_floor(yt / LAT_UM) - 1;
        int ly = (int)ceil((nb - 1) * p / LAT_UM) + 4;

        if (lat_fill(ph, &L, i0, j0, lx, ly, F_TUMOR + 1) < 0) {
            lat_free(&L);
            return -ENOMEM;
        }
        for (j = 0; j < nb; j++)
            for (i = 0; i < w; i++)
                out[(size_t)(jb + j) * w + i] = (uint8_t)lat_class(
                    ph, &L, x0 + i * p, y0 + (jb + j) * p);
        lat_free(&L);
    }
    return 0;
}

/* ---- cells --------------------------------------------------------------- */

struct nucleus {
    double cx, cy;                  /* centre, µm */
    double a, b, ang;               /* semi-axes, µm; orientation */
    bool pos;                       /* DAB positive (KI67) */
    int cls;                        /* class at the centre */
    uint64_t h;                     /* identity and priority */
    double wob[3];                  /* outline: cos 2θ, sin 2θ, sin 3θ */
    double dens;                    /* stain density factor */
};

/* The candidate of grid cell (i, j): present or not, centre anywhere in
 * the cell, size and shape; its priority settles overlaps. */
static bool
candidate(const struct sim__phantom *ph, bool tumour, int64_t i, int64_t j,
          struct nucleus *n, struct rng *r)
{
    double cell = tumour ? TUM_CELL_UM : STR_CELL_UM;

    n->h = rng_key(ph->seed, tumour ? 0x54554dULL : 0x535452ULL,
                   (uint64_t)i, (uint64_t)j);
    rng_init(r, n->h);
    if (rng_uniform(r) > (tumour ? 0.97 : 0.5))
        return false;
    if (tumour) {
        n->a = 2.8 + 1.3 * rng_uniform(r);
        n->b = n->a * (0.70 + 0.30 * rng_uniform(r));
        n->ang = M_PI * rng_uniform(r);
    } else {
        n->a = 4.5 + 3.0 * rng_uniform(r);
        n->b = 1.2 + 0.6 * rng_uniform(r);
        n->ang = 0;
    }
    n->cx = (i + rng_uniform(r)) * cell;
    n->cy = (j + rng_uniform(r)) * cell;
    return true;
}

/* The rest of a nucleus that survived the overlap test and lies in its
 * class: outline, density, orientation (stroma, along the fibres) and
 * KI67 positivity, drawn on from the candidate's stream r. */
static void
nucleus_finish(const struct sim__phantom *ph, bool tumour,
               struct nucleus *n, struct rng *r)
{
    double p;

    n->wob[0] = tumour ? 0.05 * (2 * rng_uniform(r) - 1) : 0;
    n->wob[1] = tumour ? 0.04 * (2 * rng_uniform(r) - 1) : 0;
    n->wob[2] = tumour ? 0.03 * (2 * rng_uniform(r) - 1) : 0;
    n->dens = 0.85 + 0.3 * rng_uniform(r);
    if (!tumour) {
        /* Along the fibres: perpendicular to the phase gradient. */
        double gx = ph->fdir[0] + (field_raw(ph, F_WARP, n->cx + 1, n->cy) -
                                   field_raw(ph, F_WARP, n->cx - 1, n->cy)) /
                                  2;
        double gy = ph->fdir[1] + (field_raw(ph, F_WARP, n->cx, n->cy + 1) -
                                   field_raw(ph, F_WARP, n->cx, n->cy - 1)) /
                                  2;
        n->ang = atan2(gy, gx) + M_PI / 2;
    }
    p = 0.10 + 0.30 * (0.5 + 0.5 * fbm(ph->seed ^ 0x4b49ULL, n->cx, n->cy,
                                       600, 2));
    n->pos = tumour && rng_uniform(r) < p;
}

/* The nucleus of grid cell (i, j) of the tumour (or stroma) grid; false
 * when the cell has none.  A candidate that would come closer than the
 * gap to a neighbour's candidate of higher priority (its hash) is
 * dropped, so nuclei never overlap (their outline stays within 1.12 a, and
 * 2 × 1.12 a_max + gap is less than a cell, so only neighbours can meet)
 * and their arrangement is irregular.  A nucleus belongs to the class at
 * its centre. */
static bool
nucleus_of(const struct sim__phantom *ph, bool tumour, int64_t i, int64_t j,
           struct nucleus *n)
{
    struct nucleus o;
    struct rng r, ro;
    double dx, dy, lim;
    int di, dj;

    if (!candidate(ph, tumour, i, j, n, &r))
        return false;
    for (dj = -1; dj <= 1; dj++) {
        for (di = -1; di <= 1; di++) {
            if ((di == 0 && dj == 0) ||
                !candidate(ph, tumour, i + di, j + dj, &o, &ro) ||
                o.h < n->h)
                continue;
            dx = o.cx - n->cx;
            dy = o.cy - n->cy;
            lim = 1.12 * (n->a + o.a) + NUC_GAP_UM;
            if (dx * dx + dy * dy < lim * lim)
                return false;
        }
    }
    n->cls = sim__phantom_label(ph, n->cx, n->cy);
    if (n->cls != (tumour ? SIM_LABEL_TUMOR : SIM_LABEL_STROMA))
        return false;
    nucleus_finish(ph, tumour, n, &r);
    return true;
}

/* ---- rendering ----------------------------------------------------------- */

/*
 * A tile is rendered as per-pixel stain amounts (optical densities of H,
 * E and DAB), then Beer–Lambert.  Everything that depends on the column
 * only or the row only (the point's coordinate, its lattice cell and
 * fraction, its texture cell) is computed once per column and per row
 * with the same expressions a single point would use, so the pixels are
 * the same as evaluating each point on its own.
 */
struct canvas {
    int n;                          /* SIM_TILE */
    double x0, y0, q;               /* point (i, j) = (x0 + i q, y0 + j q) */
    int c0, c1, r0, r1;             /* pixels rendered: [c0, c1) × [r0, r1) */
    double xs[SIM_TILE], ys[SIM_TILE];  /* those coordinates */
    float *od;                      /* planes of H, E, DAB, n * n each */
};

/* Where a coordinate falls in a grid of cell size 1 / inv: cell index
 * relative to the grid's first and the fraction (smoothed for the
 * texture noise), one per column or row. */
struct axis {
    int lat[SIM_TILE];              /* field lattice cell */
    double lu[SIM_TILE];            /* fraction in it */
    int tum[SIM_TILE], fib[SIM_TILE];   /* texture cells */
    double tu[SIM_TILE], fu[SIM_TILE];  /* smoothed fractions */
    double dir[SIM_TILE];           /* fdir component times coordinate */
    bool in[SIM_TILE];              /* inside the image */
};

static void
axis_make(struct axis *a, const double *cs, int c0, int c1, int64_t lat0,
          const struct gnoise *tum, int64_t tum0, const struct gnoise *fib,
          int64_t fib0, double dir, double extent)
{
    int i;

    for (i = c0; i < c1; i++) {
        double g = cs[i] / LAT_UM, f = ph_floor(g);
        double t = cs[i] * tum->inv, tf = ph_floor(t), tu = t - tf;
        double b = cs[i] * fib->inv, bf = ph_floor(b), fu = b - bf;

        a->lat[i] = (int)((int64_t)f - lat0);
        a->lu[i] = g - f;
        a->tum[i] = (int)((int64_t)tf - tum0);
        a->tu[i] = tu * tu * (3 - 2 * tu);
        a->fib[i] = (int)((int64_t)bf - fib0);
        a->fu[i] = fu * fu * (3 - 2 * fu);
        a->dir[i] = dir * cs[i];
        a->in[i] = cs[i] >= 0 && cs[i] < extent;
    }
}

/* The class of every point of the lattice cell whose lower-left corner
 * is p (field TISSUE; the other fields koff apart), or -1 when it may
 * vary within the cell.  An interpolated value lies between the cell's
 * corner values up to rounding far below eps, so a class decided from
 * the corners is the class of every point. */
static int
cell_class(const float *p, size_t koff, int nx)
{
    const double eps = 1e-6;
    double lo[4], hi[4];
    int k;

    for (k = 0; k < 4; k++) {
        const float *q = p + koff * (size_t)k;
        float a = q[0] < q[1] ? q[0] : q[1], b = q[0] < q[1] ? q[1] : q[0];
        float c = q[nx] < q[nx + 1] ? q[nx] : q[nx + 1];
        float d = q[nx] < q[nx + 1] ? q[nx + 1] : q[nx];

        lo[k] = a < c ? a : c;
        hi[k] = b < d ? d : b;
    }
    if (hi[F_TISSUE] <= 0.2 - eps || lo[F_GAP] > 0.42 + eps ||
        hi[F_TEAR] < 0.012 - eps)
        return SIM_LABEL_GLASS;
    if (lo[F_TISSUE] <= 0.2 + eps || hi[F_GAP] > 0.42 - eps ||
        lo[F_TEAR] < 0.012 + eps)
        return -1;
    if (lo[F_TUMOR] > eps)
        return SIM_LABEL_TUMOR;
    if (hi[F_TUMOR] < -eps)
        return SIM_LABEL_STROMA;
    return -1;
}

/* Everything render_fine() prepares for a tile. */
struct fine {
    struct lat L;
    struct gnoise tum, fib;
    struct axis ax, ay;
    signed char *cls;               /* per lattice cell, cell_class() */
};

/* Lattice block, textures and cell classes covering the canvas's
 * rectangle (values depend on the lattice index only, not on where a
 * block starts, so any block gives the same pixels). */
static int
fine_make(const struct sim__phantom *ph, const struct canvas *cv,
          struct fine *fn)
{
    double x0 = cv->xs[cv->c0], y0 = cv->ys[cv->r0];
    double w = (cv->c1 - cv->c0) * cv->q, h = (cv->r1 - cv->r0) * cv->q;
    int64_t i0 = (int64_t)ph_floor(x0 / LAT_UM) - 1;
    int64_t j0 = (int64_t)ph_floor(y0 / LAT_UM) - 1;
    int nx = (int)ceil(w / LAT_UM) + 4, ny = (int)ceil(h / LAT_UM) + 4;
    int i, j, rc;
    size_t koff = (size_t)nx * ny;

    rc = lat_fill(ph, &fn->L, i0, j0, nx, ny, F_NF);
    if (rc == 0)
        rc = gnoise_fill(&fn->tum, ph->seed ^ 0x7458ULL, TEX_TUM_UM, x0, y0,
                         w, h);
    if (rc == 0)
        rc = gnoise_fill(&fn->fib, ph->seed ^ 0x6669ULL, TEX_FIB_UM, x0, y0,
                         w, h);
    if (rc == 0 && (fn->cls = malloc(koff)) == NULL)
        rc = -ENOMEM;
    if (rc < 0)
        return rc;
    axis_make(&fn->ax, cv->xs, cv->c0, cv->c1, i0, &fn->tum, fn->tum.i0,
              &fn->fib, fn->fib.i0, ph->fdir[0], ph->w_um);
    axis_make(&fn->ay, cv->ys, cv->r0, cv->r1, j0, &fn->tum, fn->tum.j0,
              &fn->fib, fn->fib.j0, ph->fdir[1], ph->h_um);
    for (j = 0; j + 1 < ny; j++)
        for (i = 0; i + 1 < nx; i++)
            fn->cls[(size_t)j * nx + i] = (signed char)cell_class(
                fn->L.v[0] + (size_t)j * nx + i, koff, nx);
    return 0;
}

static void
fine_free(struct fine *fn)
{
    lat_free(&fn->L);
    free(fn->tum.v);
    free(fn->fib.v);
    free(fn->cls);
}

/* bilerp() (or the texture interpolation of struct gnoise) within one
 * cell, its terms that do not depend on the column computed once per
 * cell, with the same operations: a, b - a, c, d - c. */
struct span {
    double a, ba, c, dc;
};

/* A field lattice cell: bilerp(p[0], p[1], p[nx], p[nx + 1], u, v). */
static inline void
span_lat(struct span *sp, const float *p, int nx)
{
    double a = p[0], b = p[1], c = p[nx], d = p[nx + 1];

    sp->a = a;
    sp->ba = b - a;
    sp->c = c;
    sp->dc = d - c;
}

/* A texture cell (struct gnoise), whose differences are of floats. */
static inline void
span_tex(struct span *sp, const float *p, int nx)
{
    sp->a = p[0];
    sp->ba = p[1] - p[0];
    sp->c = p[nx];
    sp->dc = p[nx + 1] - p[nx];
}

/* v1 is 1 - v. */
static inline double
span_at(const struct span *sp, double u, double v, double v1)
{
    return (sp->a + sp->ba * u) * v1 + (sp->c + sp->dc * u) * v;
}

/* What the pixels of one row of a tile share. */
struct trow {
    const struct sim__phantom *ph;
    const struct fine *fn;
    const struct look *lk;
    int j;
    const float *lrow;              /* the row's field lattice row */
    const signed char *crow;        /* its cell classes */
    const float *trow;              /* tumour texture row */
    size_t koff, plane;
    double v, v1, tv, tv1, fv, fv1; /* fractions in the row's cells */
    float *od;                      /* the row in the first stain plane */
    /* The fibre texture cell of each column, spread per column (its
     * cells are not those of the lattice). */
    double fa[SIM_TILE], fba[SIM_TILE], fc[SIM_TILE], fdc[SIM_TILE];
};

static void
trow_make(struct trow *r, const struct sim__phantom *ph,
          const struct fine *fn, int j, int c0, int c1, float *od,
          size_t plane)
{
    const struct axis *ax = &fn->ax, *ay = &fn->ay;
    const float *frow = fn->fib.v + (size_t)ay->fib[j] * fn->fib.nx;
    struct span sp = { 0, 0, 0, 0 };
    int i, cur = -1;

    r->ph = ph;
    r->fn = fn;
    r->lk = &looks[ph->stain];
    r->j = j;
    r->lrow = fn->L.v[0] + (size_t)ay->lat[j] * fn->L.nx;
    r->crow = fn->cls + (size_t)ay->lat[j] * fn->L.nx;
    r->trow = fn->tum.v + (size_t)ay->tum[j] * fn->tum.nx;
    r->koff = (size_t)fn->L.nx * fn->L.ny;
    r->plane = plane;
    r->v = ay->lu[j];
    r->v1 = 1 - r->v;
    r->tv = ay->tu[j];
    r->tv1 = 1 - r->tv;
    r->fv = ay->fu[j];
    r->fv1 = 1 - r->fv;
    r->od = od;
    for (i = c0; i < c1; i++) {
        if (ax->fib[i] != cur) {
            cur = ax->fib[i];
            span_tex(&sp, frow + cur, fn->fib.nx);
        }
        r->fa[i] = sp.a;
        r->fba[i] = sp.ba;
        r->fc[i] = sp.c;
        r->fdc[i] = sp.dc;
    }
}

/* The stain amounts of one tissue pixel, column i, whose lattice cell
 * has the spans f (fields TISSUE..TUMOR only when ccls < 0). */
static void
tissue_px(const struct trow *r, int i, const struct span *f, int ccls)
{
    const struct axis *ax = &r->fn->ax, *ay = &r->fn->ay;
    double u = ax->lu[i], v = r->v, v1 = r->v1, shade, t, fib, ph_;
    struct span ts, fs = { r->fa[i], r->fba[i], r->fc[i], r->fdc[i] };
    float *od = r->od + i;
    int cls = ccls, k;

    if (!ax->in[i])
        return;
    if (cls < 0)
        cls = classify(span_at(&f[F_TISSUE], u, v, v1),
                       span_at(&f[F_GAP], u, v, v1),
                       span_at(&f[F_TEAR], u, v, v1),
                       span_at(&f[F_TUMOR], u, v, v1));
    if (cls == SIM_LABEL_GLASS)
        return;
    shade = 1 + 0.12 * span_at(&f[F_SHADE], u, v, v1);
    if (cls == SIM_LABEL_TUMOR) {
        span_tex(&ts, r->trow + ax->tum[i], r->fn->tum.nx);
        t = 1 + 0.22 * span_at(&ts, ax->tu[i], r->tv, r->tv1);
        for (k = 0; k < 3; k++)
            od[r->plane * (size_t)k] = (float)(r->lk->cyto[k] * t * shade);
        return;
    }
    /* Wavy bundles along a warped direction, pale clefts between them,
     * bundle strength varying from place to place. */
    ph_ = (ax->dir[i] + ay->dir[r->j] + span_at(&f[F_WARP], u, v, v1) +
           span_at(&f[F_WARP2], u, v, v1)) / FIBRE_UM;
    fib = r->ph->fib_lut[(int)((ph_ - ph_floor(ph_)) * SIN_LUT_N) &
                         (SIN_LUT_N - 1)];
    fib *= 0.75 + 0.45 * span_at(&f[F_BUNDLE], u, v, v1);
    fib *= 1 + 0.18 * span_at(&fs, ax->fu[i], r->fv, r->fv1);
    for (k = 0; k < 3; k++)
        od[r->plane * (size_t)k] = (float)(r->lk->fibre[k] * fib * shade);
}

/* Two doubles: the SSE2 vector, so these loops vectorise on every
 * x86-64 without target flags. */
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2l __attribute__((vector_size(16)));

/* (float)(amt[k] * a * b) of two pixels into the stain planes at od. */
static inline void
store_od(float *od, size_t plane, const double *amt, v2d a, v2d b)
{
    int k;

    for (k = 0; k < 3; k++) {
        v2d x = amt[k] * a * b;

        od[plane * (size_t)k] = (float)x[0];
        od[plane * (size_t)k + 1] = (float)x[1];
    }
}

/* span_at() of two columns with fractions u. */
static inline v2d
span2(const struct span *sp, v2d u, double v, double v1)
{
    return (sp->a + sp->ba * u) * v1 + (sp->c + sp->dc * u) * v;
}

/* Columns [i, e) of one lattice cell, all tumour: tissue_px() two
 * columns at a time (the tumour texture shares the lattice's cells). */
static int
tumour_run(const struct trow *r, int i, int e, const struct span *f)
{
    const struct axis *ax = &r->fn->ax;
    struct span ts;

    span_tex(&ts, r->trow + ax->tum[i], r->fn->tum.nx);
    for (; i + 2 <= e; i += 2) {
        v2d u, tu, shade, t;

        memcpy(&u, ax->lu + i, sizeof(u));
        memcpy(&tu, ax->tu + i, sizeof(tu));
        shade = 1 + 0.12 * span2(&f[F_SHADE], u, r->v, r->v1);
        t = 1 + 0.22 * span2(&ts, tu, r->tv, r->tv1);
        store_od(r->od + i, r->plane, r->lk->cyto, t, shade);
    }
    return i;
}

/* Columns [i, e) of one lattice cell, all stroma, two at a time. */
static int
stroma_run(const struct trow *r, int i, int e, const struct span *f)
{
    const struct axis *ax = &r->fn->ax;
    const v2d one = { 1, 1 };
    double dirj = r->fn->ay.dir[r->j];
    v2d u, dir, shade, ph_, fl, fib, fu, tex;
    v2l k;

    for (; i + 2 <= e; i += 2) {
        memcpy(&u, ax->lu + i, sizeof(u));
        memcpy(&dir, ax->dir + i, sizeof(dir));
        shade = 1 + 0.12 * span2(&f[F_SHADE], u, r->v, r->v1);
        ph_ = (dir + dirj + span2(&f[F_WARP], u, r->v, r->v1) +
               span2(&f[F_WARP2], u, r->v, r->v1)) / FIBRE_UM;
        if (!(ph_[0] > -1e9 && ph_[0] < 1e9 && ph_[1] > -1e9 &&
              ph_[1] < 1e9))
            break;
        /* floor() through an integer, exact in this range; the phase's
         * fraction, hence the table index, is that of ph_floor(). */
        fl = __builtin_convertvector(__builtin_convertvector(ph_, v2l), v2d);
        fl -= (v2d)((fl > ph_) & (v2l)one);
        k = __builtin_convertvector((ph_ - fl) * SIN_LUT_N, v2l) &
            (SIN_LUT_N - 1);
        fib = (v2d){ r->ph->fib_lut[k[0]], r->ph->fib_lut[k[1]] };
        fib *= 0.75 + 0.45 * span2(&f[F_BUNDLE], u, r->v, r->v1);
        memcpy(&fu, ax->fu + i, sizeof(fu));
        tex = (v2d){ r->fa[i], r->fa[i + 1] } +
              (v2d){ r->fba[i], r->fba[i + 1] } * fu;
        tex = tex * r->fv1 + ((v2d){ r->fc[i], r->fc[i + 1] } +
                              (v2d){ r->fdc[i], r->fdc[i + 1] } * fu) *
                             r->fv;
        fib *= 1 + 0.18 * tex;
        store_od(r->od + i, r->plane, r->lk->fibre, fib, shade);
    }
    return i;
}

/* Stain amounts of the tissue (no nuclei) in columns [c0, c1) of row j
 * of the tile: od is the row in the first plane, the others follow plane
 * floats apart.  A lattice cell whose class is known and whose columns
 * all lie in the image goes two columns at a time; the rest pixel by
 * pixel. */
static void
tissue_row(struct trow *r, const struct sim__phantom *ph,
           const struct fine *fn, int j, int c0, int c1, float *od,
           size_t plane)
{
    const struct axis *ax = &fn->ax;
    struct span f[F_NF] = { { 0, 0, 0, 0 } };
    int i, e, x, k, ccls;
    bool in;

    for (k = 0; k < 3; k++)
        memset(od + plane * (size_t)k + c0, 0,
               (size_t)(c1 - c0) * sizeof(float));
    if (!fn->ay.in[j])
        return;
    trow_make(r, ph, fn, j, c0, c1, od, plane);
    for (i = c0; i < c1; i = e) {
        in = true;
        for (e = i; e < c1 && ax->lat[e] == ax->lat[i]; e++)
            in = in && ax->in[e];
        ccls = r->crow[ax->lat[i]];
        if (ccls == SIM_LABEL_GLASS)
            continue;
        for (k = ccls < 0 ? 0 : F_SHADE; k < F_NF; k++)
            span_lat(&f[k], r->lrow + ax->lat[i] + r->koff * (size_t)k,
                     fn->L.nx);
        x = i;
        if (in && ccls == SIM_LABEL_TUMOR && ax->tum[i] == ax->tum[e - 1])
            x = tumour_run(r, i, e, f);
        else if (in && ccls == SIM_LABEL_STROMA)
            x = stroma_run(r, i, e, f);
        for (; x < e; x++)
            tissue_px(r, x, f, ccls);
    }
}

/* Mean stain amounts of a class, for pixels larger than the cells.
 * LIMIT: overviews of a phantom (above 2.5 µm/px) show flat class colours
 * without texture. */
static void
mean_pixel(const struct sim__phantom *ph, double x, double y, float *od)
{
    const struct look *lk = &looks[ph->stain];
    int cls = sim__phantom_label(ph, x, y), k;
    double ftum = 0.40, fstr = 0.04;
    double pos = 0.10 + 0.30 * (0.5 + 0.5 * fbm(ph->seed ^ 0x4b49ULL, x, y,
                                                600, 2));
    double shade;

    od[0] = od[1] = od[2] = 0;
    if (cls == SIM_LABEL_GLASS)
        return;
    shade = 1 + 0.12 * field_raw(ph, F_SHADE, x, y);
    for (k = 0; k < 3; k++) {
        double v;

        if (cls == SIM_LABEL_TUMOR)
            v = lk->cyto[k] * (1 - ftum) +
                ftum * (lk->nuc[k] * (1 - pos) + lk->nuc_pos[k] * pos);
        else
            v = lk->fibre[k] * 0.55 * (1 - fstr) + lk->snuc[k] * fstr;
        od[k] = (float)(v * shade);
    }
}

/* The label at a nucleus centre: from the tile's lattice block when the
 * point's cell lies in it (the same values sim__phantom_label() computes
 * there), else by sim__phantom_label(). */
static int
label_near(const struct sim__phantom *ph, const struct lat *L, double x,
           double y)
{
    double gx = x / LAT_UM, gy = y / LAT_UM;
    int64_t i = (int64_t)ph_floor(gx) - L->i0;
    int64_t j = (int64_t)ph_floor(gy) - L->j0;

    if (x < 0 || y < 0 || x >= ph->w_um || y >= ph->h_um)
        return SIM_LABEL_GLASS;
    if (i < 0 || j < 0 || i + 1 >= L->nx || j + 1 >= L->ny)
        return sim__phantom_label(ph, x, y);
    if (lat_at(L, F_TISSUE, x, y) <= 0.2)
        return SIM_LABEL_GLASS;
    return classify(1, lat_at(L, F_GAP, x, y), lat_at(L, F_TEAR, x, y),
                    lat_at(L, F_TUMOR, x, y));
}

/* The candidates of a rectangle of grid cells, drawn once for a tile
 * (each is needed by up to nine cells). */
struct cand {
    bool ok;
    struct nucleus n;
    struct rng r;                   /* as candidate() left it */
};

struct cands {
    int64_t i0, j0;
    int nx, ny;
    struct cand *c;
};

static int
cands_make(const struct sim__phantom *ph, bool tumour, int64_t i0,
           int64_t j0, int nx, int ny, struct cands *cs)
{
    int i, j;

    cs->i0 = i0;
    cs->j0 = j0;
    cs->nx = nx;
    cs->ny = ny;
    cs->c = malloc((size_t)nx * ny * sizeof(*cs->c));
    if (cs->c == NULL)
        return -ENOMEM;
    for (j = 0; j < ny; j++)
        for (i = 0; i < nx; i++) {
            struct cand *c = &cs->c[(size_t)j * nx + i];

            c->ok = candidate(ph, tumour, i0 + i, j0 + j, &c->n, &c->r);
        }
    return 0;
}

static const struct cand *
cand_at(const struct cands *cs, int64_t i, int64_t j)
{
    return &cs->c[(size_t)(j - cs->j0) * cs->nx + (size_t)(i - cs->i0)];
}

/* nucleus_of() for a cell whose neighbours all lie in cs, with labels
 * from the tile's lattice block where it reaches. */
static bool
nucleus_in(const struct sim__phantom *ph, bool tumour,
           const struct cands *cs, const struct lat *L, int64_t i,
           int64_t j, struct nucleus *n)
{
    const struct cand *me = cand_at(cs, i, j);
    struct rng r;
    double dx, dy, lim;
    int di, dj;

    if (!me->ok)
        return false;
    *n = me->n;
    r = me->r;
    for (dj = -1; dj <= 1; dj++) {
        for (di = -1; di <= 1; di++) {
            const struct cand *o = cand_at(cs, i + di, j + dj);

            if ((di == 0 && dj == 0) || !o->ok || o->n.h < n->h)
                continue;
            dx = o->n.cx - n->cx;
            dy = o->n.cy - n->cy;
            lim = 1.12 * (n->a + o->n.a) + NUC_GAP_UM;
            if (dx * dx + dy * dy < lim * lim)
                return false;
        }
    }
    n->cls = label_near(ph, L, n->cx, n->cy);
    if (n->cls != (tumour ? SIM_LABEL_TUMOR : SIM_LABEL_STROMA))
        return false;
    nucleus_finish(ph, tumour, n, &r);
    return true;
}

/* The pixels a nucleus may cover, columns [*i0, *i1] and rows [*j0, *j1]
 * within the canvas's rectangle (a box of 1.3 a plus a pixel around the
 * centre); false when none. */
static bool
splat_box(const struct canvas *cv, const struct nucleus *n, int *i0,
          int *i1, int *j0, int *j1)
{
    double r = n->a * 1.3 + cv->q;

    *i0 = (int)ph_floor((n->cx - r - cv->x0) / cv->q);
    *i1 = (int)ceil((n->cx + r - cv->x0) / cv->q);
    *j0 = (int)ph_floor((n->cy - r - cv->y0) / cv->q);
    *j1 = (int)ceil((n->cy + r - cv->y0) / cv->q);
    *i0 = *i0 < cv->c0 ? cv->c0 : *i0;
    *i1 = *i1 < cv->c1 - 1 ? *i1 : cv->c1 - 1;
    *j0 = *j0 < cv->r0 ? cv->r0 : *j0;
    *j1 = *j1 < cv->r1 - 1 ? *j1 : cv->r1 - 1;
    return *i0 <= *i1 && *j0 <= *j1;
}

/* A nucleus composited over the tissue: a soft-edged, wobbly ellipse
 * with a textured, darker-rimmed stain.  Pixels certainly outside the
 * outline (alpha <= 0) are skipped by a bound before the exact test; the
 * bound has a wide margin, so it never skips a pixel the exact test
 * would keep. */
static void
splat(const struct sim__phantom *ph, struct canvas *cv,
      const struct nucleus *n)
{
    const struct look *lk = &looks[ph->stain];
    const double *amt = n->cls == SIM_LABEL_STROMA ? lk->snuc
                        : n->pos ? lk->nuc_pos : lk->nuc;
    double ca = cos(n->ang), sa = sin(n->ang), edge = fmax(cv->q, 0.4);
    double wmax = 1 + fabs(n->wob[0]) + fabs(n->wob[1]) + fabs(n->wob[2]);
    double out = wmax * (1 + 0.5 * edge / n->b) * (1 + 1e-6);
    double ia2 = 1 / (n->a * n->a), ib2 = 1 / (n->b * n->b);
    double dxca[SIM_TILE], mdxsa[SIM_TILE];
    int64_t tx[SIM_TILE];
    size_t plane = (size_t)cv->n * cv->n;
    int i, j, k, ia, ib, j0, j1;

    if (!splat_box(cv, n, &ia, &ib, &j0, &j1))
        return;
    out *= out;
    for (i = ia; i <= ib; i++) {
        double dx = cv->xs[i] - n->cx;

        dxca[i - ia] = dx * ca;
        mdxsa[i - ia] = -dx * sa;
        tx[i - ia] = (int64_t)ph_floor(dx / 0.6) * 131;
    }
    for (j = j0; j <= j1; j++) {
        double dy = cv->ys[j] - n->cy, dysa = dy * sa, dyca = dy * ca;
        int64_t ty = (int64_t)ph_floor(dy / 0.6) * 7919;

        for (i = ia; i <= ib; i++) {
            double pu = dxca[i - ia] + dysa, pv = mdxsa[i - ia] + dyca;
            double u, v, d2, d, alpha, tex, wob;
            float *od;

            if (pu * pu * ia2 + pv * pv * ib2 > out)
                continue;
            u = pu / n->a;
            v = pv / n->b;
            d2 = u * u + v * v;
            d = sqrt(d2);
            /* An irregular outline: the radius varies with cos 2θ,
             * sin 2θ and sin 3θ, from u and v without trigonometry. */
            if (d2 > 1e-12) {
                double c2 = (u * u - v * v) / d2, s2 = 2 * u * v / d2;
                double s1 = v / d, s3 = 3 * s1 - 4 * s1 * s1 * s1;

                wob = 1 + n->wob[0] * c2 + n->wob[1] * s2 + n->wob[2] * s3;
                d /= wob;
            }

            /* Soft edge about one pixel (or 0.4 µm) wide. */
            alpha = (1 - d) * n->b / edge + 0.5;
            if (alpha <= 0)
                continue;
            if (alpha > 1)
                alpha = 1;
            tex = 0.85 + 0.3 * sim__u01(rng_mix64(n->h ^ (uint64_t)(
                      tx[i - ia] + ty)));
            tex *= n->dens * (1.0 + 0.15 * d);  /* darker rim */
            od = cv->od + (size_t)j * cv->n + i;
            for (k = 0; k < 3; k++, od += plane)
                *od = (float)(*od * (1 - alpha) + amt[k] * tex * alpha);
        }
    }
}

static int
splat_grid(const struct sim__phantom *ph, struct canvas *cv,
           const struct lat *L, bool tumour)
{
    double cell = tumour ? TUM_CELL_UM : STR_CELL_UM, pad = cell;
    double x1 = cv->x0 + cv->n * cv->q, y1 = cv->y0 + cv->n * cv->q;
    int64_t ia = (int64_t)ph_floor((cv->x0 - pad) / cell);
    int64_t ib = (int64_t)ph_floor((x1 + pad) / cell);
    int64_t ja = (int64_t)ph_floor((cv->y0 - pad) / cell);
    int64_t jb = (int64_t)ph_floor((y1 + pad) / cell), i, j;
    struct cands cs;
    struct nucleus n;

    if (cands_make(ph, tumour, ia - 1, ja - 1, (int)(ib - ia) + 3,
                   (int)(jb - ja) + 3, &cs) < 0)
        return -ENOMEM;
    for (j = ja; j <= jb; j++)
        for (i = ia; i <= ib; i++) {
            const struct cand *c = cand_at(&cs, i, j);
            int b0, b1, b2, b3;

            /* Candidates that cannot reach the rectangle are skipped
             * before their (costlier) class and shape are settled. */
            if (c->ok && splat_box(cv, &c->n, &b0, &b1, &b2, &b3) &&
                nucleus_in(ph, tumour, &cs, L, i, j, &n))
                splat(ph, cv, &n);
        }
    free(cs.c);
    return 0;
}

/* Fibre density across a bundle at phase sine t: dense bundles with
 * pale clefts between them. */
static double
fibre(double t)
{
    return t < -0.55 ? 0.08 : t < -0.25 ? 0.08 + (t + 0.55) * 2.4
                                         : 0.8 + 0.2 * t;
}

/* The 8-bit value of each channel for each index of od_lut: what
 * to_rgb() writes for an optical density in that bin. */
static void
rgb_lut_make(struct sim__phantom *ph)
{
    int c, k;

    for (c = 0; c < 3; c++)
        for (k = 0; k < OD_LUT_N; k++) {
            double t = ph->glass[c] * ph->od_lut[k];

            ph->rgb_lut[c][k] = (uint8_t)(t * 255 + 0.5);
        }
}

/* Beer–Lambert for n pixels of the stain planes (plane floats apart). */
static void
to_rgb(const struct sim__phantom *ph, const float *od, size_t plane, int n,
       uint8_t *rgb, bool wide)
{
    const double m[3][3] = { { vec_h[0], vec_e[0], vec_d[0] },
                             { vec_h[1], vec_e[1], vec_d[1] },
                             { vec_h[2], vec_e[2], vec_d[2] } };

    sim__od_rgb(od, od + plane, od + 2 * plane, (size_t)n, m,
                OD_LUT_N / OD_LUT_MAX, &ph->rgb_lut[0][0], OD_LUT_N, rgb,
                wide);
}

static int
render_fine(const struct sim__phantom *ph, struct canvas *cv)
{
    struct trow *row;
    struct fine fn;
    int j, rc;

    memset(&fn, 0, sizeof(fn));
    rc = fine_make(ph, cv, &fn);
    row = malloc(sizeof(*row));
    if (rc == 0 && row == NULL)
        rc = -ENOMEM;
    for (j = cv->r0; rc == 0 && j < cv->r1; j++)
        tissue_row(row, ph, &fn, j, cv->c0, cv->c1,
                   cv->od + (size_t)j * cv->n, (size_t)cv->n * cv->n);
    free(row);
    if (rc == 0)
        rc = splat_grid(ph, cv, &fn.L, true);
    if (rc == 0)
        rc = splat_grid(ph, cv, &fn.L, false);
    fine_free(&fn);
    return rc;
}

/* True when every lattice point near the square [x0, x0 + span]² lies
 * outside the section's ellipse (where the tissue field is below -9), so
 * the whole square is glass. */
static bool
outside_section(const struct sim__phantom *ph, double x0, double y0,
                double span)
{
    double cx = ph->w_um / 2, cy = ph->h_um / 2, pad = 2 * LAT_UM;
    double nx = fmax(x0 - pad, fmin(cx, x0 + span + pad));
    double ny = fmax(y0 - pad, fmin(cy, y0 + span + pad));
    double dx = (nx - cx) / (0.47 * ph->w_um);
    double dy = (ny - cy) / (0.47 * ph->h_um);

    return sqrt(dx * dx + dy * dy) > 1.0;
}

/* The rectangle of pixels covering the blocks of mask, as blocks: the
 * columns [*bx0, *bx1) and rows [*by0, *by1). */
static void
block_rect(unsigned mask, int *bx0, int *bx1, int *by0, int *by1)
{
    int nb = SIM_TILE / SIM_BLOCK, b;

    *bx0 = *by0 = nb;
    *bx1 = *by1 = 0;
    for (b = 0; b < nb * nb; b++) {
        if (!(mask & (1u << b)))
            continue;
        *bx0 = b % nb < *bx0 ? b % nb : *bx0;
        *bx1 = b % nb + 1 > *bx1 ? b % nb + 1 : *bx1;
        *by0 = b / nb < *by0 ? b / nb : *by0;
        *by1 = b / nb + 1 > *by1 ? b / nb + 1 : *by1;
    }
}

/* The stain planes of the canvas's rectangle. */
static int
render_canvas(const struct sim__phantom *ph, struct canvas *cv)
{
    size_t plane = (size_t)cv->n * cv->n;
    int i, j;

    if (cv->x0 >= ph->w_um || cv->y0 >= ph->h_um ||
        cv->x0 + cv->n * cv->q <= 0 || cv->y0 + cv->n * cv->q <= 0 ||
        outside_section(ph, cv->x0, cv->y0, cv->n * cv->q)) {
        /* All glass: zero density. */
        memset(cv->od, 0, plane * 3 * sizeof(float));
        return 0;
    }
    if (cv->q <= COARSE_UM)
        return render_fine(ph, cv);
    for (j = cv->r0; j < cv->r1; j++)
        for (i = cv->c0; i < cv->c1; i++) {
            size_t at = (size_t)j * cv->n + i;
            float od[3];

            mean_pixel(ph, cv->xs[i], cv->ys[j], od);
            cv->od[at] = od[0];
            cv->od[at + plane] = od[1];
            cv->od[at + 2 * plane] = od[2];
        }
    return 0;
}

/* Renders the rectangle of tile pixels that covers the blocks asked for
 * (pixels are computed from the tile's origin exactly as for a whole
 * tile, so a tile filled in parts equals one filled at once). */
static int
ph_tile(struct sim__source *src, int level, double q, int tx, int ty,
        unsigned blocks, uint8_t *rgb, struct ss_err *err)
{
    const struct sim__phantom *ph = src->ph;
    struct canvas *cv = malloc(sizeof(*cv));
    size_t plane = (size_t)SIM_TILE * SIM_TILE;
    int i, j, bx0, bx1, by0, by1, rc = 0;
    unsigned done = 0;

    if (cv == NULL)
        return err_set(err, -ENOMEM, "phantom: out of memory");
    block_rect(blocks, &bx0, &bx1, &by0, &by1);
    cv->n = SIM_TILE;
    cv->q = q;
    cv->x0 = (double)tx * SIM_TILE * q;
    cv->y0 = (double)ty * SIM_TILE * q;
    cv->c0 = bx0 * SIM_BLOCK;
    cv->c1 = bx1 * SIM_BLOCK;
    cv->r0 = by0 * SIM_BLOCK;
    cv->r1 = by1 * SIM_BLOCK;
    for (i = 0; i < SIM_TILE; i++) {
        cv->xs[i] = cv->x0 + i * q;
        cv->ys[i] = cv->y0 + i * q;
    }
    cv->od = sim__scratch(plane * 3 * sizeof(float));
    rc = cv->od == NULL ? -ENOMEM : render_canvas(ph, cv);
    for (j = cv->r0; rc == 0 && j < cv->r1; j++)
        to_rgb(ph, cv->od + (size_t)j * SIM_TILE + cv->c0, plane,
               cv->c1 - cv->c0, rgb + ((size_t)j * SIM_TILE + cv->c0) * 3,
               src->wide);
    for (j = by0; j < by1; j++)
        for (i = bx0; i < bx1; i++)
            done |= 1u << (j * (SIM_TILE / SIM_BLOCK) + i);
    sim__scratch_free(cv->od);
    free(cv);
    if (rc < 0)
        return err_set(err, rc, "phantom: out of memory");
    return (int)done;
}

/* ---- truth --------------------------------------------------------------- */

static void
count_nuclei(const struct sim__phantom *ph, bool tumour, double x0,
             double y0, double w, double h, struct sim_phantom_truth *t)
{
    double cell = tumour ? TUM_CELL_UM : STR_CELL_UM;
    int64_t i, j;
    struct nucleus n;

    for (j = (int64_t)ph_floor(y0 / cell) - 1;
         j <= (int64_t)ph_floor((y0 + h) / cell) + 1; j++) {
        for (i = (int64_t)ph_floor(x0 / cell) - 1;
             i <= (int64_t)ph_floor((x0 + w) / cell) + 1; i++) {
            if (!nucleus_of(ph, tumour, i, j, &n))
                continue;
            if (n.cx < x0 || n.cy < y0 || n.cx >= x0 + w || n.cy >= y0 + h)
                continue;
            t->nuclei[n.cls]++;
            if (n.pos)
                t->tumor_pos++;
        }
    }
}

/* Areas from labels sampled at the centres of a 2 µm grid, band by band
 * through lattice blocks. */
static int
count_areas(const struct sim__phantom *ph, double x0, double y0, double w,
            double h, struct sim_phantom_truth *t)
{
    const double step = 2.0, band = 256.0;
    int nx = (int)ceil(w / step), ny = (int)ceil(h / step), i, j;
    double yb;
    struct lat L;

    for (yb = 0; yb < ny * step; yb += band) {
        double ytop = y0 + yb, ybot = fmin(y0 + ny * step, ytop + band);
        int64_t i0 = (int64_t)ph_floor(x0 / LAT_UM) - 1;
        int64_t j0 = (int64_t)ph_floor(ytop / LAT_UM) - 1;
        int lx = (int)ceil((w + step) / LAT_UM) + 4;
        int ly = (int)ceil((ybot - ytop) / LAT_UM) + 4;

        if (lat_fill(ph, &L, i0, j0, lx, ly, F_TUMOR + 1) < 0) {
            lat_free(&L);
            return -ENOMEM;
        }
        for (j = 0; ytop + (j + 0.5) * step < ybot; j++)
            for (i = 0; i < nx; i++)
                t->area_um2[lat_class(ph, &L, x0 + (i + 0.5) * step,
                                      ytop + (j + 0.5) * step)] +=
                    step * step;
        lat_free(&L);
    }
    return 0;
}

int
sim__phantom_truth(const struct sim__phantom *ph, double x0, double y0,
                   double w, double h, struct sim_phantom_truth *t)
{
    int rc;

    memset(t, 0, sizeof(*t));
    rc = count_areas(ph, x0, y0, w, h, t);
    if (rc < 0)
        return rc;
    count_nuclei(ph, true, x0, y0, w, h, t);
    count_nuclei(ph, false, x0, y0, w, h, t);
    t->ki67_fraction = t->nuclei[SIM_LABEL_TUMOR] > 0
                       ? (double)t->tumor_pos / t->nuclei[SIM_LABEL_TUMOR]
                       : 0;
    t->ck_positive_um2 = t->area_um2[SIM_LABEL_TUMOR];
    t->tumor_to_stroma_area_ratio = t->area_um2[SIM_LABEL_STROMA] > 0
                                    ? t->area_um2[SIM_LABEL_TUMOR] /
                                      t->area_um2[SIM_LABEL_STROMA]
                                    : 0;
    t->tumor_fraction = t->area_um2[SIM_LABEL_TUMOR] +
                        t->area_um2[SIM_LABEL_STROMA] > 0
                        ? t->area_um2[SIM_LABEL_TUMOR] /
                          (t->area_um2[SIM_LABEL_TUMOR] +
                           t->area_um2[SIM_LABEL_STROMA])
                        : 0;
    if (ph->stain != SIM_STAIN_KI67) {
        t->tumor_pos = 0;
        t->ki67_fraction = 0;
    }
    return 0;
}

/* ---- the source ---------------------------------------------------------- */

static void
ph_destroy(struct sim__source *src)
{
    free(src->ph);
}

static const struct sim__source_ops ph_ops = {
    .tile = ph_tile,
    .destroy = ph_destroy,
};

int
sim__phantom_open(const char *spec, const struct sim__spec *p,
                  const struct sim_config *c, struct sim__source **out,
                  struct ss_err *err)
{
    uint64_t seed = p->has_seed ? p->seed : c->seed;
    int stain = p->stain, i;
    struct sim__source *src;
    struct sim__phantom *ph;
    double ang;

    src = calloc(1, sizeof(*src));
    ph = calloc(1, sizeof(*ph));
    if (src == NULL || ph == NULL) {
        free(src);
        free(ph);
        return err_set(err, -ENOMEM, "phantom: out of memory");
    }
    ph->seed = seed;
    ph->stain = stain;
    ph->w_um = p->w_mm * 1000;
    ph->h_um = p->h_mm * 1000;
    ang = M_PI * sim__u01(rng_key(seed, 0x444952ULL, 0, 0));
    ph->fdir[0] = cos(ang);
    ph->fdir[1] = sin(ang);
    ph->glass[0] = 0.955;
    ph->glass[1] = 0.955;
    ph->glass[2] = 0.965;
    for (i = 0; i < OD_LUT_N; i++)
        ph->od_lut[i] = (float)pow(10, -(double)i * OD_LUT_MAX / OD_LUT_N);
    rgb_lut_make(ph);
    for (i = 0; i < SIN_LUT_N; i++) {
        ph->sin_lut[i] = (float)sin(2 * M_PI * (i + 0.5) / SIN_LUT_N);
        ph->fib_lut[i] = fibre(ph->sin_lut[i]);
    }
    src->ops = &ph_ops;
    src->ph = ph;
    src->stain = stain;
    src->w_um = ph->w_um;
    src->h_um = ph->h_um;
    src->mpp = 0;
    memcpy(src->glass, ph->glass, sizeof(src->glass));
    snprintf(src->desc, sizeof(src->desc), "%s", spec);
    if (p->id[0] != '\0')
        snprintf(src->slide_id, sizeof(src->slide_id), "%s", p->id);
    else
        snprintf(src->slide_id, sizeof(src->slide_id), "PH-%s-%llu",
                 sim__stain_name(stain), (unsigned long long)seed);
    *out = src;
    return 0;
}
