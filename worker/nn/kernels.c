/* SPDX-License-Identifier: MIT */
/*
 * Vectorised element-wise primitives shared by the layers and the
 * convolution epilogue: scale-shift-activate, activation gradients, sums
 * and the batch-norm gradient pieces.  Each is compiled for AVX-512, AVX2
 * and baseline x86-64 (vec.h).  Sums run in float over 16 lanes within
 * blocks of 4096 elements and in double across blocks and lanes, always
 * in the same order, so they do not depend on threads or machine.
 *
 * A lane select is written as bit operations on the comparison mask:
 * (mask & a) | (~mask & b).
 */
#include <string.h>

#include "worker/nn/nn_internal.h"
#include "worker/nn/vec.h"

#define BLOCK 4096
#define VSZ sizeof(nn__v16)

NN__CLONES void
nn__affine_act(float *y, const float *x, size_t n, float s, float b,
               enum nn__act act, float slope)
{
    const nn__v16 z = { 0 };
    float neg = act == NN__ACT_LEAKY ? slope : 0.0f;
    nn__v16 v;
    nn__v16i pos;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&v, x + i, VSZ);
        v = v * s + b;
        if (act != NN__ACT_NONE) {
            pos = v > z;
            v = (nn__v16)((pos & (nn__v16i)v) | (~pos & (nn__v16i)(v * neg)));
        }
        memcpy(y + i, &v, VSZ);
    }
    for (; i < n; i++) {
        float u = x[i] * s + b;

        y[i] = act == NN__ACT_NONE || u > 0.0f ? u : u * neg;
    }
}

NN__CLONES void
nn__act_grad(float *dx, const float *dy, const float *y, size_t n,
             float slope)
{
    const nn__v16 z = { 0 };
    nn__v16 g, a, d;
    nn__v16i pos;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&g, dy + i, VSZ);
        memcpy(&a, y + i, VSZ);
        memcpy(&d, dx + i, VSZ);
        pos = a > z;
        d += (nn__v16)((pos & (nn__v16i)g) | (~pos & (nn__v16i)(g * slope)));
        memcpy(dx + i, &d, VSZ);
    }
    for (; i < n; i++)
        dx[i] += y[i] > 0.0f ? dy[i] : dy[i] * slope;
}

NN__CLONES void
nn__add(float *y, const float *x, size_t n)
{
    nn__v16 a, b;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&a, y + i, VSZ);
        memcpy(&b, x + i, VSZ);
        a += b;
        memcpy(y + i, &a, VSZ);
    }
    for (; i < n; i++)
        y[i] += x[i];
}

NN__CLONES double
nn__sum(const float *x, size_t n)
{
    double total = 0;
    size_t b, i;
    int l;

    for (b = 0; b < n; b += BLOCK) {
        size_t e = b + BLOCK < n ? b + BLOCK : n;
        nn__v16 acc = { 0 }, v;

        for (i = b; i + 16 <= e; i += 16) {
            memcpy(&v, x + i, VSZ);
            acc += v;
        }
        for (; i < e; i++)
            total += x[i];
        for (l = 0; l < 16; l++)
            total += acc[l];
    }
    return total;
}

NN__CLONES double
nn__sum_sqdev(const float *x, size_t n, float mean)
{
    double total = 0;
    size_t b, i;
    int l;

    for (b = 0; b < n; b += BLOCK) {
        size_t e = b + BLOCK < n ? b + BLOCK : n;
        nn__v16 acc = { 0 }, v;

        for (i = b; i + 16 <= e; i += 16) {
            memcpy(&v, x + i, VSZ);
            v -= mean;
            acc += v * v;
        }
        for (; i < e; i++)
            total += (double)(x[i] - mean) * (x[i] - mean);
        for (l = 0; l < 16; l++)
            total += acc[l];
    }
    return total;
}

/* In the two batch-norm kernels y, when not NULL, is the output of the
 * activation fused after the batch norm: dy passes where y > 0, is scaled
 * by slope elsewhere. */
NN__CLONES void
nn__bn_grad_sums(const float *x, const float *dy, const float *y,
                 float slope, size_t n, float mean, float invstd,
                 double *sdy, double *sdyx)
{
    const nn__v16 z = { 0 };
    size_t b, i;
    int l;

    for (b = 0; b < n; b += BLOCK) {
        size_t e = b + BLOCK < n ? b + BLOCK : n;
        nn__v16 a1 = { 0 }, a2 = { 0 }, g, v, a;
        nn__v16i pos;

        for (i = b; i + 16 <= e; i += 16) {
            memcpy(&g, dy + i, VSZ);
            memcpy(&v, x + i, VSZ);
            if (y) {
                memcpy(&a, y + i, VSZ);
                pos = a > z;
                g = (nn__v16)((pos & (nn__v16i)g) |
                              (~pos & (nn__v16i)(g * slope)));
            }
            a1 += g;
            a2 += g * ((v - mean) * invstd);
        }
        for (; i < e; i++) {
            float h = !y || y[i] > 0.0f ? dy[i] : dy[i] * slope;

            *sdy += h;
            *sdyx += h * ((x[i] - mean) * invstd);
        }
        for (l = 0; l < 16; l++) {
            *sdy += a1[l];
            *sdyx += a2[l];
        }
    }
}

NN__CLONES void
nn__bn_grad_dx(float *dx, const float *x, const float *dy, const float *y,
               float slope, size_t n, float mean, float invstd, float k1,
               float k2, float k3)
{
    const nn__v16 z = { 0 };
    nn__v16 g, v, a, d;
    nn__v16i pos;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&g, dy + i, VSZ);
        memcpy(&v, x + i, VSZ);
        memcpy(&d, dx + i, VSZ);
        if (y) {
            memcpy(&a, y + i, VSZ);
            pos = a > z;
            g = (nn__v16)((pos & (nn__v16i)g) |
                          (~pos & (nn__v16i)(g * slope)));
        }
        d += k1 * (g - k2 - (v - mean) * invstd * k3);
        memcpy(dx + i, &d, VSZ);
    }
    for (; i < n; i++) {
        float h = !y || y[i] > 0.0f ? dy[i] : dy[i] * slope;

        dx[i] += k1 * (h - k2 - (x[i] - mean) * invstd * k3);
    }
}

NN__CLONES void
nn__scale_grad(float *dx, const float *dy, const float *y, float slope,
               size_t n, float s)
{
    const nn__v16 z = { 0 };
    nn__v16 g, a, d;
    nn__v16i pos;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&g, dy + i, VSZ);
        memcpy(&d, dx + i, VSZ);
        if (y) {
            memcpy(&a, y + i, VSZ);
            pos = a > z;
            g = (nn__v16)((pos & (nn__v16i)g) |
                          (~pos & (nn__v16i)(g * slope)));
        }
        d += g * s;
        memcpy(dx + i, &d, VSZ);
    }
    for (; i < n; i++)
        dx[i] += (!y || y[i] > 0.0f ? dy[i] : dy[i] * slope) * s;
}
