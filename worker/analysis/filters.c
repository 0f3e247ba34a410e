/* SPDX-License-Identifier: MIT */
/*
 * Raster helpers for the analysis: box and Gaussian filters, the exact
 * Euclidean distance transform (Felzenszwalb & Huttenlocher 2012) and the
 * disc morphology built on it, connected components by union-find, and
 * separable resampling.
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
an__box_mean(const float *in, int w, int h, int r, float *out)
{
    float *tmp = malloc((size_t)w * h * sizeof(float));
    int x, y;

    if (tmp == NULL) {
        memcpy(out, in, (size_t)w * h * sizeof(float));
        return;
    }
    for (y = 0; y < h; y++) {
        const float *row = in + (size_t)y * w;
        double s = 0;
        int lo = 0, hi = -1;
        for (x = 0; x < w; x++) {
            int a = x - r < 0 ? 0 : x - r;
            int b = x + r >= w ? w - 1 : x + r;
            while (hi < b)
                s += row[++hi];
            while (lo < a)
                s -= row[lo++];
            tmp[(size_t)y * w + x] = (float)(s / (b - a + 1));
        }
    }
    for (x = 0; x < w; x++) {
        double s = 0;
        int lo = 0, hi = -1;
        for (y = 0; y < h; y++) {
            int a = y - r < 0 ? 0 : y - r;
            int b = y + r >= h ? h - 1 : y + r;
            while (hi < b)
                s += tmp[(size_t)++hi * w + x];
            while (lo < a)
                s -= tmp[(size_t)lo++ * w + x];
            out[(size_t)y * w + x] = (float)(s / (b - a + 1));
        }
    }
    free(tmp);
}

static void
gauss_line(const float *src, float *dst, int n, int stride,
           const float *k, int r)
{
    int i, j;

    for (i = 0; i < n; i++) {
        double s = 0;
        for (j = -r; j <= r; j++) {
            int t = i + j < 0 ? 0 : i + j >= n ? n - 1 : i + j;
            s += k[j + r] * src[(size_t)t * stride];
        }
        dst[i] = (float)s;
    }
}

int
an__gauss_blur(float *buf, int w, int h, double sigma)
{
    int r = (int)ceil(3 * sigma), x, y, n = w > h ? w : h;
    float *k, *line, *col;
    double sum = 0;

    if (sigma <= 0)
        return 0;
    k = malloc((size_t)(2 * r + 1) * sizeof(float));
    line = malloc((size_t)n * sizeof(float));
    col = malloc((size_t)n * sizeof(float));
    if (k == NULL || line == NULL || col == NULL) {
        free(k);
        free(line);
        free(col);
        return -ENOMEM;
    }
    for (x = -r; x <= r; x++)
        sum += k[x + r] = (float)exp(-x * x / (2 * sigma * sigma));
    for (x = 0; x <= 2 * r; x++)
        k[x] = (float)(k[x] / sum);
    for (y = 0; y < h; y++) {
        gauss_line(buf + (size_t)y * w, line, w, 1, k, r);
        memcpy(buf + (size_t)y * w, line, (size_t)w * sizeof(float));
    }
    for (x = 0; x < w; x++) {
        gauss_line(buf + x, col, h, w, k, r);
        for (y = 0; y < h; y++)
            buf[(size_t)y * w + x] = col[y];
    }
    free(k);
    free(line);
    free(col);
    return 0;
}

/* Where the parabolas rooted at q and p intersect. */
static inline float
parabola_cut(const float *f, int q, int p)
{
    return ((f[q] + (float)q * q) - (f[p] + (float)p * p)) /
           (2.0f * (float)(q - p));
}

/* One-dimensional squared-distance transform of f (lower envelope of
 * parabolas); v, z are scratch of n and n + 1 elements. */
static void
edt_1d(const float *f, int n, float *d, int *v, float *z)
{
    int k = 0, q;

    v[0] = 0;
    z[0] = -1e30f;
    z[1] = 1e30f;
    for (q = 1; q < n; q++) {
        float s = parabola_cut(f, q, v[k]);
        while (s <= z[k]) {
            k--;
            s = parabola_cut(f, q, v[k]);
        }
        k++;
        v[k] = q;
        z[k] = s;
        z[k + 1] = 1e30f;
    }
    k = 0;
    for (q = 0; q < n; q++) {
        float dq;
        while (z[k + 1] < q)
            k++;
        dq = (float)(q - v[k]);
        d[q] = dq * dq + f[v[k]];
    }
}

int
an__edt_sq(const uint8_t *mask, int w, int h, float *d2)
{
    int n = w > h ? w : h, x, y;
    float *f = calloc((size_t)n, sizeof(float));
    float *d = malloc((size_t)n * sizeof(float));
    float *z = malloc((size_t)(n + 1) * sizeof(float));
    int *v = malloc((size_t)n * sizeof(int));

    if (f == NULL || d == NULL || z == NULL || v == NULL) {
        free(f);
        free(d);
        free(z);
        free(v);
        return -ENOMEM;
    }
    for (x = 0; x < w; x++) {
        for (y = 0; y < h; y++)
            f[y] = mask[(size_t)y * w + x] ? 0.0f : 1e20f;
        edt_1d(f, h, d, v, z);
        for (y = 0; y < h; y++)
            d2[(size_t)y * w + x] = d[y];
    }
    for (y = 0; y < h; y++) {
        memcpy(f, d2 + (size_t)y * w, (size_t)w * sizeof(float));
        edt_1d(f, w, d2 + (size_t)y * w, v, z);
    }
    free(f);
    free(d);
    free(z);
    free(v);
    return 0;
}

int
an__morph_disc(uint8_t *mask, int w, int h, double radius_px)
{
    size_t i, n = (size_t)w * h;
    float *d2 = malloc(n * sizeof(float));
    float r2 = (float)(radius_px * radius_px);
    int rc;

    if (d2 == NULL)
        return -ENOMEM;
    if (radius_px >= 0) {
        rc = an__edt_sq(mask, w, h, d2);
        for (i = 0; rc == 0 && i < n; i++)
            mask[i] = d2[i] <= r2;
    } else {
        /* Erosion: distance to the background must exceed the radius;
         * beyond the image edge counts as background. */
        for (i = 0; i < n; i++)
            mask[i] = !mask[i];
        rc = an__edt_sq(mask, w, h, d2);
        for (i = 0; rc == 0 && i < n; i++) {
            int x = (int)(i % (size_t)w), y = (int)(i / (size_t)w);
            int e = x + 1;
            e = y + 1 < e ? y + 1 : e;
            e = w - x < e ? w - x : e;
            e = h - y < e ? h - y : e;
            mask[i] = d2[i] > r2 && (float)e * e > r2;
        }
    }
    free(d2);
    return rc;
}

static int32_t
uf_find(int32_t *p, int32_t a)
{
    while (p[a] != a) {
        p[a] = p[p[a]];
        a = p[a];
    }
    return a;
}

static void
uf_union(int32_t *p, int32_t a, int32_t b)
{
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a < b)
        p[b] = a;
    else if (b < a)
        p[a] = b;
}

/* First pass: provisional labels joined through the upper-left
 * neighbours; returns the number of provisional labels. */
static int32_t
cc_first_pass(const uint8_t *mask, int w, int h, int32_t *lab,
              int32_t *par, int conn8)
{
    int32_t next = 1;
    int x, y;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int32_t nb[4];
            int k, cnt = 0;
            lab[i] = 0;
            if (!mask[i])
                continue;
            if (x > 0 && lab[i - 1])
                nb[cnt++] = lab[i - 1];
            if (conn8 && y > 0 && x > 0 && lab[i - w - 1])
                nb[cnt++] = lab[i - w - 1];
            if (y > 0 && lab[i - w])
                nb[cnt++] = lab[i - w];
            if (conn8 && y > 0 && x + 1 < w && lab[i - w + 1])
                nb[cnt++] = lab[i - w + 1];
            if (cnt == 0) {
                par[next] = next;
                lab[i] = next++;
                continue;
            }
            lab[i] = nb[0];
            for (k = 1; k < cnt; k++)
                uf_union(par, nb[0], nb[k]);
        }
    return next;
}

int
an__components(const uint8_t *mask, int w, int h, int32_t *lab)
{
    return an__components_conn(mask, w, h, lab, 8);
}

int
an__components_conn(const uint8_t *mask, int w, int h, int32_t *lab,
                    int conn)
{
    size_t i, n = (size_t)w * h;
    /* A new label needs an unlabelled left neighbour: ≤ ⌈w/2⌉ per row. */
    int32_t *par = malloc(((size_t)(w + 1) / 2 * h + 2) * sizeof(int32_t));
    int32_t *map, next, k, count = 0;

    if (par == NULL)
        return -ENOMEM;
    next = cc_first_pass(mask, w, h, lab, par, conn == 8);
    map = calloc((size_t)next, sizeof(int32_t));
    if (map == NULL) {
        free(par);
        return -ENOMEM;
    }
    for (k = 1; k < next; k++) {
        int32_t r = uf_find(par, k);
        if (map[r] == 0)
            map[r] = ++count;
        map[k] = map[r];
    }
    for (i = 0; i < n; i++)
        if (lab[i])
            lab[i] = map[lab[i]];
    free(map);
    free(par);
    return count;
}

/* Clears (value 0) or sets (value 1) every component of `mask == want`
 * whose size is below min_px and, when skip_border, that does not touch
 * the image border. */
static int
drop_components(uint8_t *mask, int w, int h, int want, int64_t min_px,
                int skip_border)
{
    size_t i, n = (size_t)w * h;
    uint8_t *sel = malloc(n);
    int32_t *lab = malloc(n * sizeof(int32_t));
    int64_t *size = NULL;
    uint8_t *border = NULL;
    int count, x, y;

    if (sel == NULL || lab == NULL)
        goto nomem;
    for (i = 0; i < n; i++)
        sel[i] = (mask[i] != 0) == want;
    count = an__components(sel, w, h, lab);
    if (count < 0)
        goto nomem;
    size = calloc((size_t)count + 1, sizeof(int64_t));
    border = calloc((size_t)count + 1, 1);
    if (size == NULL || border == NULL)
        goto nomem;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            int32_t l = lab[(size_t)y * w + x];
            size[l]++;
            if (x == 0 || y == 0 || x == w - 1 || y == h - 1)
                border[l] = 1;
        }
    for (i = 0; i < n; i++) {
        int32_t l = lab[i];
        if (l && size[l] < min_px && !(skip_border && border[l]))
            mask[i] = (uint8_t)!want;
    }
    free(sel);
    free(lab);
    free(size);
    free(border);
    return 0;
nomem:
    free(sel);
    free(lab);
    free(size);
    free(border);
    return -ENOMEM;
}

int
an__remove_small(uint8_t *mask, int w, int h, int64_t min_px)
{
    return drop_components(mask, w, h, 1, min_px, 0);
}

int
an__fill_holes(uint8_t *mask, int w, int h, int64_t max_px)
{
    return drop_components(mask, w, h, 0, max_px, 1);
}

/* Per output index: the first source index and its weights. */
struct taps {
    int *first, *count;
    float *wt;                      /* out × maxn */
    int maxn;
};

static void
taps_free(struct taps *t)
{
    free(t->first);
    free(t->count);
    free(t->wt);
}

static int
taps_make(struct taps *t, int in, int out)
{
    double s = (double)in / out;
    int i;

    t->maxn = s > 1 ? (int)ceil(s) + 2 : 2;
    t->first = malloc((size_t)out * sizeof(int));
    t->count = malloc((size_t)out * sizeof(int));
    t->wt = calloc((size_t)out * t->maxn, sizeof(float));
    if (t->first == NULL || t->count == NULL || t->wt == NULL) {
        taps_free(t);
        return -ENOMEM;
    }
    for (i = 0; i < out; i++) {
        float *wt = t->wt + (size_t)i * t->maxn;
        if (s > 1) {
            double a = i * s, b = (i + 1) * s;
            int j, j0 = (int)floor(a), j1 = (int)ceil(b);
            if (j1 > in)
                j1 = in;
            t->first[i] = j0;
            t->count[i] = j1 - j0;
            for (j = j0; j < j1; j++) {
                double lo = j > a ? j : a, hi = j + 1 < b ? j + 1 : b;
                wt[j - j0] = (float)((hi - lo) / s);
            }
        } else {
            double c = (i + 0.5) * s - 0.5;
            int j0 = (int)floor(c);
            float f = (float)(c - j0);
            if (j0 < 0) {
                j0 = 0;
                f = 0;
            }
            if (j0 >= in - 1) {
                j0 = in - 1;
                f = 0;
            }
            t->first[i] = j0;
            t->count[i] = f > 0 ? 2 : 1;
            wt[0] = 1 - f;
            wt[1] = f;
        }
    }
    return 0;
}

struct img *
an__resample(const struct img *in, int out_w, int out_h)
{
    struct taps tx, ty;
    struct img *out;
    float *mid;
    int c = in->c, x, y, k, j;

    if (in->type != IMG_U8)
        return NULL;
    if (out_w == in->w && out_h == in->h)
        return img_dup(in);
    if (taps_make(&tx, in->w, out_w) < 0)
        return NULL;
    if (taps_make(&ty, in->h, out_h) < 0) {
        taps_free(&tx);
        return NULL;
    }
    mid = malloc((size_t)out_w * in->h * c * sizeof(float));
    out = img_new(out_w, out_h, c, IMG_U8);
    if (mid == NULL || out == NULL) {
        free(mid);
        img_free(out);
        taps_free(&tx);
        taps_free(&ty);
        return NULL;
    }
    for (y = 0; y < in->h; y++)
        for (x = 0; x < out_w; x++) {
            const float *wt = tx.wt + (size_t)x * tx.maxn;
            for (k = 0; k < c; k++) {
                float s = 0;
                for (j = 0; j < tx.count[x]; j++)
                    s += wt[j] * img_u8(in, tx.first[x] + j, y)[k];
                mid[((size_t)y * out_w + x) * c + k] = s;
            }
        }
    for (y = 0; y < out_h; y++) {
        const float *wt = ty.wt + (size_t)y * ty.maxn;
        for (x = 0; x < out_w * c; x++) {
            float s = 0.5f;
            for (j = 0; j < ty.count[y]; j++)
                s += wt[j] * mid[(size_t)(ty.first[y] + j) * out_w * c + x];
            ((uint8_t *)out->data)[(size_t)y * out_w * c + x] =
                s >= 255 ? 255 : s <= 0 ? 0 : (uint8_t)s;
        }
    }
    free(mid);
    taps_free(&tx);
    taps_free(&ty);
    return out;
}

struct img *
an__resample_nearest(const struct img *in, int out_w, int out_h)
{
    struct img *out = img_new(out_w, out_h, in->c, in->type);
    size_t px = (size_t)in->c * in->type;
    int x, y;

    if (out == NULL)
        return NULL;
    for (y = 0; y < out_h; y++) {
        int sy = (int)(((double)y + 0.5) * in->h / out_h);
        if (sy >= in->h)
            sy = in->h - 1;
        for (x = 0; x < out_w; x++) {
            int sx = (int)(((double)x + 0.5) * in->w / out_w);
            if (sx >= in->w)
                sx = in->w - 1;
            memcpy((char *)out->data + ((size_t)y * out_w + x) * px,
                   (char *)in->data + ((size_t)sy * in->w + sx) * px, px);
        }
    }
    return out;
}

/* Within one raster pixel: the analysis raster is ceil(level-0 / scale)
 * and scales are stored to 8 digits. */
static int
extent_fits(int t_px, int px, double scale)
{
    return fabs((double)t_px / scale - px) < 1.0;
}

int
an__labels_fit(const struct img *t, int w, int h, double scale,
               int same_size_ok, struct img **out)
{
    int x, y;

    *out = NULL;
    if (same_size_ok && t->w == w && t->h == h)
        scale = 1;
    else if (!(scale > 0) || !extent_fits(t->w, w, scale) ||
             !extent_fits(t->h, h, scale))
        return -ERANGE;
    *out = img_new(w, h, 1, IMG_U8);
    if (*out == NULL)
        return -ENOMEM;
    for (y = 0; y < h; y++) {
        int sy = (int)((y + 0.5) * scale);
        const uint8_t *row = img_u8(t, 0, sy < t->h ? sy : t->h - 1);
        for (x = 0; x < w; x++) {
            int sx = (int)((x + 0.5) * scale);
            *img_u8(*out, x, y) = row[sx < t->w ? sx : t->w - 1];
        }
    }
    return 0;
}
