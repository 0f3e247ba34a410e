/* SPDX-License-Identifier: MIT */
/*
 * Tensors and the engine's counting allocator.  Every byte of tensor data
 * and kernel scratch goes through nn__alloc(), which records the current
 * and peak totals, so memory bounds can be measured exactly rather than
 * estimated from the process's resident size.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn_internal.h"

#define ALIGN 64

static atomic_size_t mem_current;
static atomic_size_t mem_peak;

/* Each block starts with a 64-byte header holding its size, so that the
 * data stays 64-byte aligned and nn__free() knows what to uncount. */
void *
nn__alloc(size_t bytes)
{
    size_t cur, peak;
    char *p;

    if (bytes > SIZE_MAX - ALIGN)
        return NULL;
    p = aligned_alloc(ALIGN, (bytes + 2 * ALIGN - 1) / ALIGN * ALIGN);
    if (!p)
        return NULL;
    *(size_t *)p = bytes;
    cur = atomic_fetch_add(&mem_current, bytes) + bytes;
    peak = atomic_load(&mem_peak);
    while (cur > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, cur))
        ;
    return p + ALIGN;
}

void
nn__free(void *ptr)
{
    char *p;

    if (!ptr)
        return;
    p = (char *)ptr - ALIGN;
    atomic_fetch_sub(&mem_current, *(size_t *)p);
    free(p);
}

void
nn_mem_stats(size_t *current_bytes, size_t *peak_bytes)
{
    if (current_bytes)
        *current_bytes = atomic_load(&mem_current);
    if (peak_bytes)
        *peak_bytes = atomic_load(&mem_peak);
}

void
nn_mem_reset_peak(void)
{
    atomic_store(&mem_peak, atomic_load(&mem_current));
}

struct nn_tensor *
nn__tensor_raw(int ndim, const int *shape)
{
    struct nn_tensor *t;
    size_t count = 1;
    int i;

    if (ndim < 1 || ndim > NN_MAX_DIMS)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ndim = ndim;
    for (i = 0; i < NN_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? shape[i] : 1;
        if (t->shape[i] < 1 || count > SIZE_MAX / 8 / (size_t)t->shape[i]) {
            free(t);
            return NULL;
        }
        count *= (size_t)t->shape[i];
    }
    t->count = count;
    t->data = nn__alloc(count * sizeof(float));
    if (!t->data) {
        free(t);
        return NULL;
    }
    return t;
}

struct nn_tensor *
nn__tensor_raw4(int n, int c, int h, int w)
{
    int shape[4] = { n, c, h, w };

    return nn__tensor_raw(4, shape);
}

struct nn_tensor *
nn_tensor_new(int ndim, const int *shape)
{
    struct nn_tensor *t = nn__tensor_raw(ndim, shape);

    if (t)
        memset(t->data, 0, t->count * sizeof(float));
    return t;
}

struct nn_tensor *
nn_tensor_new4(int n, int c, int h, int w)
{
    int shape[4] = { n, c, h, w };

    return nn_tensor_new(4, shape);
}

struct nn_tensor *
nn_tensor_new_like(const struct nn_tensor *t)
{
    return nn_tensor_new(t->ndim, t->shape);
}

struct nn_tensor *
nn_tensor_dup(const struct nn_tensor *t)
{
    struct nn_tensor *d = nn__tensor_raw(t->ndim, t->shape);

    if (d)
        memcpy(d->data, t->data, t->count * sizeof(float));
    return d;
}

void
nn_tensor_free(struct nn_tensor *t)
{
    if (!t)
        return;
    nn__free(t->data);
    free(t);
}

void
nn_tensor_fill(struct nn_tensor *t, float v)
{
    size_t i;

    for (i = 0; i < t->count; i++)
        t->data[i] = v;
}

bool
nn_tensor_same_shape(const struct nn_tensor *a, const struct nn_tensor *b)
{
    int i;

    if (a->ndim != b->ndim)
        return false;
    for (i = 0; i < NN_MAX_DIMS; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

int
nn_tensor_axpy(struct nn_tensor *y, float alpha, const struct nn_tensor *x)
{
    size_t i;

    if (!nn_tensor_same_shape(y, x))
        return -EINVAL;
    for (i = 0; i < y->count; i++)
        y->data[i] += alpha * x->data[i];
    return 0;
}

void
nn_tensor_set_rgb8(struct nn_tensor *t, int n, const uint8_t *rgb,
                   size_t stride_bytes, const float *mean, const float *std)
{
    int w = t->shape[3], h = t->shape[2], x, y, c;

    for (c = 0; c < 3 && c < t->shape[1]; c++) {
        float m = mean ? mean[c] : 0.0f;
        float s = std ? 1.0f / std[c] : 1.0f;

        for (y = 0; y < h; y++) {
            const uint8_t *row = rgb + (size_t)y * stride_bytes + c;
            float *dst = nn_tensor_at(t, n, c, y, 0);

            for (x = 0; x < w; x++)
                dst[x] = (row[3 * x] * (1.0f / 255.0f) - m) * s;
        }
    }
}

int
nn_softmax_channels(const struct nn_tensor *in, struct nn_tensor *out)
{
    int n, c, C, N;
    size_t hw, i;

    if (!nn_tensor_same_shape(in, out) || in->ndim != 4)
        return -EINVAL;
    N = in->shape[0];
    C = in->shape[1];
    hw = (size_t)in->shape[2] * in->shape[3];
    for (n = 0; n < N; n++) {
        const float *src = in->data + (size_t)n * C * hw;
        float *dst = out->data + (size_t)n * C * hw;

        for (i = 0; i < hw; i++) {
            float mx = src[i], sum = 0.0f;

            for (c = 1; c < C; c++)
                mx = fmaxf(mx, src[c * hw + i]);
            for (c = 0; c < C; c++) {
                dst[c * hw + i] = expf(src[c * hw + i] - mx);
                sum += dst[c * hw + i];
            }
            for (c = 0; c < C; c++)
                dst[c * hw + i] /= sum;
        }
    }
    return 0;
}
