/* SPDX-License-Identifier: MIT */
/*
 * Optical density and colour deconvolution.  A stained section absorbs
 * light by Beer-Lambert: the optical density OD = -log10(I / I0) of each
 * channel is a sum of stain amounts times each stain's OD vector, so the
 * amounts follow from inverting the 3 × 3 matrix of stain vectors
 * (Ruifrok & Johnston, Anal Quant Cytol Histol 2001).
 */
#include "worker/analysis/internal.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/* Measured stain OD vectors (R, G, B) from Ruifrok & Johnston 2001. */
const double an__vec_hematoxylin[3] = { 0.65, 0.70, 0.29 };
const double an__vec_eosin[3] = { 0.07, 0.99, 0.11 };
const double an__vec_dab[3] = { 0.27, 0.57, 0.78 };

static void
normalise(double v[3])
{
    double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    int k;

    if (n <= 0)
        return;
    for (k = 0; k < 3; k++)
        v[k] /= n;
}

static void
invert3(const double m[3][3], float inv[3][3])
{
    double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                 m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                 m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    int i, j;

    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) {
            int a = (j + 1) % 3, b = (j + 2) % 3;
            int c = (i + 1) % 3, d = (i + 2) % 3;
            /* adjugate: cofactor of (j, i) */
            inv[i][j] = (float)((m[a][c] * m[b][d] - m[a][d] * m[b][c]) /
                                det);
        }
}

void
an__deconv_init(struct an__deconv *d, const double a[3], const double b[3],
                const double c[3])
{
    double m[3][3];
    int i;

    memcpy(m[0], a, sizeof(m[0]));
    memcpy(m[1], b, sizeof(m[1]));
    normalise(m[0]);
    normalise(m[1]);
    if (c != NULL) {
        memcpy(m[2], c, sizeof(m[2]));
    } else {
        m[2][0] = m[0][1] * m[1][2] - m[0][2] * m[1][1];
        m[2][1] = m[0][2] * m[1][0] - m[0][0] * m[1][2];
        m[2][2] = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    }
    normalise(m[2]);
    invert3(m, d->inv);
    for (i = 0; i < 9; i++)
        d->fwd[i / 3][i % 3] = (float)m[i / 3][i % 3];
    for (i = 0; i < 256; i++)
        d->lut[i] = (float)-log10((i > 0 ? i : 1) / 255.0);
}

static float od_lut[256];
static pthread_once_t od_once = PTHREAD_ONCE_INIT;

static void
od_lut_fill(void)
{
    int k;

    for (k = 0; k < 256; k++)
        od_lut[k] = (float)-log10((k > 0 ? k : 1) / 255.0);
}

float
an__od_norm(const uint8_t *rgb)
{
    float s = 0;
    int k;

    pthread_once(&od_once, od_lut_fill);
    for (k = 0; k < 3; k++)
        s += od_lut[rgb[k]] * od_lut[rgb[k]];
    return sqrtf(s);
}
