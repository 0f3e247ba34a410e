/* SPDX-License-Identifier: MIT */
/*
 * Glass colour estimation (imaging/glass.h): a luma histogram finds the
 * glass population of a tile, per-channel histograms of that population
 * give its colour, and a per-channel median combines the tiles.
 */
#include "imaging/glass.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static int
luma(const uint8_t *p)
{
    return (299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000;
}

/* The level below which `frac` of the n samples in hist lie. */
static int
percentile(const uint32_t *hist, uint32_t n, double frac)
{
    uint64_t need = (uint64_t)(frac * n), sum = 0;
    int v;

    for (v = 0; v < 255; v++) {
        sum += hist[v];
        if (sum > need)
            break;
    }
    return v;
}

/* The tallest 3-bin sum in [top − GLASS_WINDOW, top]. */
static int
glass_mode(const uint32_t *hist, int top)
{
    int v, best = top, lo = top - GLASS_WINDOW > 1 ? top - GLASS_WINDOW : 1;
    uint32_t most = 0;

    for (v = top; v >= lo; v--) {
        uint32_t s = hist[v - 1] + hist[v] + (v < 255 ? hist[v + 1] : 0);

        if (s > most) {
            most = s;
            best = v;
        }
    }
    return best;
}

/* Spread between the largest and the smallest channel. */
static int
chroma(const int v[3])
{
    int hi = v[0] > v[1] ? v[0] : v[1], lo = v[0] < v[1] ? v[0] : v[1];

    hi = hi > v[2] ? hi : v[2];
    lo = lo < v[2] ? lo : v[2];
    return hi - lo;
}

static int
median_of(const uint32_t *hist, uint32_t n)
{
    return percentile(hist, n, 0.5);
}

bool
glass_tile_colour(const struct img *tile, uint8_t rgb[3])
{
    uint32_t hl[256], hc[3][256], n = 0, nb = 0;
    int x, y, c, mode, med[3];

    if (tile == NULL || tile->type != IMG_U8 || tile->c != 3)
        return false;
    memset(hl, 0, sizeof(hl));
    memset(hc, 0, sizeof(hc));
    for (y = GLASS_STEP / 2; y < tile->h; y += GLASS_STEP)
        for (x = GLASS_STEP / 2; x < tile->w; x += GLASS_STEP, n++)
            hl[luma(img_u8(tile, x, y))]++;
    if (n == 0)
        return false;
    mode = glass_mode(hl, percentile(hl, n, 0.99));
    for (y = GLASS_STEP / 2; y < tile->h; y += GLASS_STEP)
        for (x = GLASS_STEP / 2; x < tile->w; x += GLASS_STEP) {
            const uint8_t *p = img_u8(tile, x, y);

            if (abs(luma(p) - mode) > GLASS_BAND)
                continue;
            for (c = 0; c < 3; c++)
                hc[c][p[c]]++;
            nb++;
        }
    if (mode < GLASS_MIN_LUMA || nb < GLASS_MIN_FRACTION * n)
        return false;
    for (c = 0; c < 3; c++)
        med[c] = median_of(hc[c], nb);
    if (chroma(med) > GLASS_MAX_CHROMA)
        return false;
    for (c = 0; c < 3; c++)
        rgb[c] = (uint8_t)med[c];
    return true;
}

void
glass_median(const uint8_t (*colours)[3], int n, uint8_t rgb[3])
{
    uint32_t h[256];
    int i, c;

    for (c = 0; c < 3; c++) {
        memset(h, 0, sizeof(h));
        for (i = 0; i < n; i++)
            h[colours[i][c]]++;
        rgb[c] = (uint8_t)median_of(h, (uint32_t)n);
    }
}
