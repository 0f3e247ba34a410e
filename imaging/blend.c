/* SPDX-License-Identifier: MIT */
/*
 * Feathered blending and sub-pixel resampling (imaging/blend.h).  The
 * resampling is separable: each output row combines up to four rows that
 * were filtered horizontally, kept in a small ring so a tile is resampled
 * with a few rows of scratch instead of a second full-size copy.
 */
#include "imaging/blend.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
blend_ramp(float *w, int n, double ramp)
{
    int i;

    for (i = 0; i < n; i++) {
        double a = (i + 0.5) / ramp, b = (n - i - 0.5) / ramp;

        w[i] = ramp < 1 ? 1.0f : (float)fmin(1.0, fmin(a, b));
    }
}

void
blend_split(double pos, enum blend_resample mode, int *whole, double *frac)
{
    if (mode == BLEND_NEAREST) {
        *whole = (int)floor(pos + 0.5);
        *frac = 0;
        return;
    }
    *whole = (int)floor(pos);
    *frac = pos - *whole;
}

/* Keys cubic convolution kernel, a = −0.5. */
static double
keys(double t)
{
    t = fabs(t);
    if (t < 1)
        return (1.5 * t - 2.5) * t * t + 1;
    if (t < 2)
        return ((-0.5 * t + 2.5) * t - 4) * t + 2;
    return 0;
}

/* Taps for sampling at k − f: offsets off[j] from k and weights. */
static int
taps(double f, enum blend_resample mode, int off[4], float wt[4])
{
    int j;

    if (f == 0 || mode == BLEND_NEAREST) {
        off[0] = 0;
        wt[0] = 1;
        return 1;
    }
    if (mode == BLEND_BILINEAR) {
        off[0] = 0;
        wt[0] = (float)(1 - f);
        off[1] = -1;
        wt[1] = (float)f;
        return 2;
    }
    /* Sample between k − 1 and k at fraction s = 1 − f past k − 1. */
    for (j = 0; j < 4; j++) {
        off[j] = j - 2;
        wt[j] = (float)keys((1 - f) - (j - 1));
    }
    return 4;
}

static int
clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* One row filtered horizontally: dst[k] = Σ_j wt[j] src[k + 3 off[j]]
 * over the row's bytes, with the pixels past either end repeated.  The
 * interior runs without bounds checks, as one flat loop per tap. */
static void
filter_row(const struct img *in, int row, int n, const int *off,
           const float *wt, float *dst)
{
    const uint8_t *src = img_u8(in, 0, row);
    int w = in->w, lo = 2, hi = w - 2, x, j, c, k;

    if (hi < lo)
        lo = hi = w;
    for (k = 3 * lo; k < 3 * hi; k++)
        dst[k] = wt[0] * src[k + 3 * off[0]];
    for (j = 1; j < n; j++) {
        const uint8_t *s = src + 3 * off[j];
        float f = wt[j];

        for (k = 3 * lo; k < 3 * hi; k++)
            dst[k] += f * s[k];
    }
    for (x = 0; x < w; x++) {
        if (x == lo && hi > lo)
            x = hi;
        for (c = 0; c < 3; c++) {
            float v = 0;

            for (j = 0; j < n; j++)
                v += wt[j] * src[3 * clampi(x + off[j], 0, w - 1) + c];
            dst[3 * x + c] = v;
        }
    }
}

struct img *
blend_shift(const struct img *in, double fx, double fy,
            enum blend_resample mode)
{
    int ox[4], oy[4], nx, ny, ring_row[4] = { -1, -1, -1, -1 }, y, x, j;
    float wx[4], wy[4], *ring;
    struct img *out;
    size_t rowf = (size_t)in->w * 3;

    nx = taps(fx, mode, ox, wx);
    ny = taps(fy, mode, oy, wy);
    out = img_new(in->w, in->h, 3, IMG_U8);
    ring = malloc(sizeof(float) * rowf * 4);
    if (out == NULL || ring == NULL) {
        img_free(out);
        free(ring);
        return NULL;
    }
    for (y = 0; y < in->h; y++) {
        uint8_t *o = img_u8(out, 0, y);
        const float *rows[4];

        for (j = 0; j < ny; j++) {
            int r = clampi(y + oy[j], 0, in->h - 1);

            if (ring_row[r & 3] != r) {
                filter_row(in, r, nx, ox, wx, ring + (size_t)(r & 3) * rowf);
                ring_row[r & 3] = r;
            }
            rows[j] = ring + (size_t)(r & 3) * rowf;
        }
        for (x = 0; x < in->w * 3; x++) {
            float s = wy[0] * rows[0][x];

            if (ny == 4)
                s += wy[1] * rows[1][x] + wy[2] * rows[2][x] +
                     wy[3] * rows[3][x];
            else
                for (j = 1; j < ny; j++)
                    s += wy[j] * rows[j][x];
            o[x] = (uint8_t)(s <= 0 ? 0 : s >= 255 ? 255 : s + 0.5f);
        }
    }
    free(ring);
    return out;
}

int
blend_band_init(struct blend_band *b, int w, int rows, struct ss_err *err)
{
    memset(b, 0, sizeof(*b));
    b->w = w;
    b->cap = rows;
    b->acc = malloc(sizeof(float) * (size_t)w * rows * 3);
    b->wsum = malloc(sizeof(float) * (size_t)w * rows);
    if (b->acc == NULL || b->wsum == NULL) {
        blend_band_fini(b);
        return err_set(err, -ENOMEM, "blending: out of memory for a "
                       "%dx%d band", w, rows);
    }
    return 0;
}

void
blend_band_fini(struct blend_band *b)
{
    free(b->acc);
    free(b->wsum);
    b->acc = NULL;
    b->wsum = NULL;
}

void
blend_band_begin(struct blend_band *b, int y0, int h)
{
    b->y0 = y0;
    b->h = h < b->cap ? h : b->cap;
    memset(b->acc, 0, sizeof(float) * (size_t)b->w * b->h * 3);
    memset(b->wsum, 0, sizeof(float) * (size_t)b->w * b->h);
}

struct blend_tile *
blend_tile_new(const struct img *im)
{
    struct blend_tile *t = calloc(1, sizeof(*t));
    size_t row = (size_t)im->w * 3;
    int k;

    if (t == NULL)
        return NULL;
    t->w = im->w;
    t->h = im->h;
    t->nchunks = (im->h + BLEND_CHUNK_ROWS - 1) / BLEND_CHUNK_ROWS;
    t->chunk = calloc((size_t)t->nchunks, sizeof(*t->chunk));
    if (t->chunk == NULL) {
        free(t);
        return NULL;
    }
    for (k = 0; k < t->nchunks; k++) {
        int r0 = k * BLEND_CHUNK_ROWS;
        int n = im->h - r0 < BLEND_CHUNK_ROWS ? im->h - r0
                                               : BLEND_CHUNK_ROWS;

        t->chunk[k] = malloc(row * n);
        if (t->chunk[k] == NULL) {
            blend_tile_free(t);
            return NULL;
        }
        memcpy(t->chunk[k], img_u8(im, 0, r0), row * n);
    }
    return t;
}

void
blend_tile_release_above(struct blend_tile *t, int row)
{
    while (t->first < t->nchunks &&
           (t->first + 1) * BLEND_CHUNK_ROWS <= row) {
        free(t->chunk[t->first]);
        t->chunk[t->first++] = NULL;
    }
}

void
blend_tile_free(struct blend_tile *t)
{
    int k;

    if (t == NULL)
        return;
    for (k = 0; k < t->nchunks; k++)
        free(t->chunk[k]);
    free(t->chunk);
    free(t);
}

static const uint8_t *
tile_row(const struct blend_tile *t, int v)
{
    return t->chunk[v / BLEND_CHUNK_ROWS] +
           (size_t)(v % BLEND_CHUNK_ROWS) * t->w * 3;
}

void
blend_band_add(struct blend_band *b, const struct blend_tile *t, int x,
               int y, const float *wx, const float *wy)
{
    int r0 = y > b->y0 ? y : b->y0;
    int r1 = y + t->h < b->y0 + b->h ? y + t->h : b->y0 + b->h;
    int c0 = x > 0 ? x : 0, c1 = x + t->w < b->w ? x + t->w : b->w;
    int r, c;

    for (r = r0; r < r1; r++) {
        const uint8_t *src = tile_row(t, r - y) + (size_t)(c0 - x) * 3;
        float *acc = b->acc + ((size_t)(r - b->y0) * b->w + c0) * 3;
        float *ws = b->wsum + (size_t)(r - b->y0) * b->w + c0;
        const float *wxr = wx + (c0 - x);
        float wyr = wy[r - y];

        for (c = c0; c < c1; c++, src += 3, acc += 3, ws++, wxr++) {
            float w = *wxr * wyr;

            acc[0] += w * src[0];
            acc[1] += w * src[1];
            acc[2] += w * src[2];
            *ws += w;
        }
    }
}

void
blend_band_resolve(const struct blend_band *b, const uint8_t bg[3],
                   uint8_t *rgb)
{
    size_t n = (size_t)b->w * b->h, i;

    for (i = 0; i < n; i++, rgb += 3) {
        float w = b->wsum[i];
        int c;

        if (w <= 0) {
            memcpy(rgb, bg, 3);
            continue;
        }
        for (c = 0; c < 3; c++) {
            float v = b->acc[3 * i + c] / w + 0.5f;

            rgb[c] = (uint8_t)(v >= 255 ? 255 : v <= 0 ? 0 : v);
        }
    }
}
