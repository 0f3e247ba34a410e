/* SPDX-License-Identifier: MIT */
/*
 * The layers other than convolutions: batch normalisation, ReLU and leaky
 * ReLU, max pooling, bilinear upsampling, concatenation, addition,
 * dropout, global average pooling, fully connected, softmax; their output
 * shapes, forward and backward passes.  Work is split over channel planes
 * (one task per image and channel), so each output element and each
 * per-channel sum is computed by one thread in a fixed order; sums run in
 * double.  Every formula follows the PyTorch layer named in README.md.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/rng.h"
#include "worker/nn/nn_internal.h"

/* ---- shapes --------------------------------------------------------- */

static int
pool_out(int in, int k, int s, int p, bool ceil_mode)
{
    int span = in + 2 * p - k, out;

    if (span < 0)
        return 0;
    out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p)
        out--;                      /* the last window must start inside */
    return out;
}

static int
same_nhw(const struct nn_model *m, const struct nn__node *nd,
         struct ss_err *err)
{
    const int *a = m->vals[nd->in[0]].shape;
    int i;

    for (i = 1; i < nd->n_in; i++) {
        const int *b = m->vals[nd->in[i]].shape;

        if (a[0] != b[0] || a[2] != b[2] || a[3] != b[3])
            return err_set(err, -EINVAL, "inputs %s (%dx%d) and %s (%dx%d) "
                           "differ in size", m->vals[nd->in[0]].name, a[3],
                           a[2], m->vals[nd->in[i]].name, b[3], b[2]);
    }
    return 0;
}

int
nn__out_shape(const struct nn_model *m, const struct nn__node *nd,
              int shape[4], struct ss_err *err)
{
    const int *x = m->vals[nd->in[0]].shape;

    memcpy(shape, x, 4 * sizeof(int));
    shape[1] = m->vals[nd->out].c;
    switch (nd->op) {
    case NN__CONV:
        shape[2] = nn__conv_out(x[2], nd->kh, nd->sh, nd->ph, nd->dh);
        shape[3] = nn__conv_out(x[3], nd->kw, nd->sw, nd->pw, nd->dw);
        break;
    case NN__CONVT:
        shape[2] = (x[2] - 1) * nd->sh - 2 * nd->ph + nd->dh * (nd->kh - 1) +
                   nd->oph + 1;
        shape[3] = (x[3] - 1) * nd->sw - 2 * nd->pw + nd->dw * (nd->kw - 1) +
                   nd->opw + 1;
        break;
    case NN__MAXPOOL:
        shape[2] = pool_out(x[2], nd->kh, nd->sh, nd->ph, nd->ceil_mode);
        shape[3] = pool_out(x[3], nd->kw, nd->sw, nd->pw, nd->ceil_mode);
        break;
    case NN__UPSAMPLE:
        shape[2] = x[2] * nd->scale;
        shape[3] = x[3] * nd->scale;
        break;
    case NN__CONCAT:
    case NN__ADD:
        return same_nhw(m, nd, err);
    case NN__GAP:
        shape[2] = shape[3] = 1;
        break;
    case NN__LINEAR:
        if ((long)x[1] * x[2] * x[3] != nd->in_features)
            return err_set(err, -EINVAL, "input has %d x %d x %d = %ld "
                           "features, the layer takes %d", x[1], x[2], x[3],
                           (long)x[1] * x[2] * x[3], nd->in_features);
        shape[2] = shape[3] = 1;
        break;
    default:
        break;
    }
    if (shape[2] < 1 || shape[3] < 1)
        return err_set(err, -EINVAL, "input %dx%d is too small for the "
                       "window", x[3], x[2]);
    return 0;
}

/* ---- plane-parallel helpers --------------------------------------- */

struct pl {
    struct nn_model *m;
    struct nn__node *nd;
    enum nn_mode mode;
    const float *x;                 /* first input */
    float *y, *dx;                  /* output (of the fused step), dx */
    const float *dy;
    int n, c;
    size_t hw, ohw;
    enum nn__act act;               /* activation fused into this layer */
    float slope;                    /* its negative slope (0 for ReLU) */
};

static void
pl_init(struct pl *p, struct nn_model *m, struct nn__node *nd,
        enum nn_mode mode)
{
    const int *x = m->vals[nd->in[0]].shape;
    const int *y = m->vals[nd->out].shape;
    int i = (int)(nd - m->nodes);

    memset(p, 0, sizeof(*p));
    p->m = m;
    p->nd = nd;
    p->mode = mode;
    p->x = m->vals[nd->in[0]].t ? m->vals[nd->in[0]].t->data : NULL;
    p->n = x[0];
    p->c = x[1];
    p->hw = (size_t)x[2] * x[3];
    p->ohw = (size_t)y[2] * y[3];
    if (nd->op == NN__BN && nn__exec_out(m, i, mode) != nd->out) {
        p->act = nd->train_act;
        p->slope = nd->train_act == NN__ACT_LEAKY ? (float)nd->train_slope
                                                  : 0.0f;
    }
}

/* ---- batch norm ----------------------------------------------------- */

void
nn__bn_affine(const struct nn__node *bn, float *scale, float *shift)
{
    int c;

    for (c = 0; c < bn->cout; c++) {
        double s = 1.0 / sqrt((double)bn->rvar->data[c] + bn->eps);

        if (bn->w)
            s *= bn->w->data[c];
        scale[c] = (float)s;
        shift[c] = (float)((bn->b ? bn->b->data[c] : 0.0) -
                           bn->rmean->data[c] * s);
    }
}

/* Batch statistics of channel c, the running statistics' update, and
 * y = act((x - mean) / std * weight + bias) as one scale and shift. */
static void
bn_train_task(void *ctx, int c, int thread)
{
    struct pl *p = ctx;
    struct nn__node *nd = p->nd;
    double sum = 0, sq = 0, mean, var, cnt = (double)p->n * p->hw;
    float g = nd->w ? nd->w->data[c] : 1.0f, b = nd->b ? nd->b->data[c] : 0;
    float fm, fi;
    size_t o;
    int n;

    for (n = 0; n < p->n; n++)
        sum += nn__sum(p->x + ((size_t)n * p->c + c) * p->hw, p->hw);
    mean = sum / cnt;
    fm = (float)mean;
    for (n = 0; n < p->n; n++)
        sq += nn__sum_sqdev(p->x + ((size_t)n * p->c + c) * p->hw, p->hw,
                            fm);
    var = sq / cnt;
    fi = (float)(1.0 / sqrt(var + nd->eps));
    nd->bn_mean[c] = fm;
    nd->bn_invstd[c] = fi;
    for (n = 0; n < p->n; n++) {
        o = ((size_t)n * p->c + c) * p->hw;
        nn__affine_act(p->y + o, p->x + o, p->hw, fi * g, b - fm * fi * g,
                       p->act, p->slope);
    }
    nd->rmean->data[c] = (float)((1 - nd->momentum) * nd->rmean->data[c] +
                                 nd->momentum * mean);
    nd->rvar->data[c] = (float)((1 - nd->momentum) * nd->rvar->data[c] +
                                nd->momentum * var *
                                (cnt > 1 ? cnt / (cnt - 1) : 1.0));
}

static void
bn_eval_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    int c = t % p->c;
    size_t o = (size_t)t * p->hw;

    nn__affine_act(p->y + o, p->x + o, p->hw, p->nd->bn_mean[c],
                   p->nd->bn_invstd[c], p->act, p->slope);
}

/* Batch statistics (training) or running statistics; bn_mean/bn_invstd
 * hold the batch mean and 1/std, or in eval the scale and shift. */
static int
bn_forward(struct pl *p)
{
    struct nn__node *nd = p->nd;

    if (!nd->bn_mean)
        return -ENOMEM;                 /* the memory plan gives it */
    if (p->mode == NN_MODE_TRAIN) {
        nn__parallel(p->c, bn_train_task, p);
        return 0;
    }
    nn__bn_affine(nd, nd->bn_mean, nd->bn_invstd);
    nn__parallel(p->n * p->c, bn_eval_task, p);
    return 0;
}

/* The gradient through a fused activation is dy where its output y > 0,
 * slope * dy elsewhere (y has the sign of the batch norm's output since
 * the slope is >= 0). */
static void
bn_train_back_task(void *ctx, int c, int thread)
{
    struct pl *p = ctx;
    struct nn__node *nd = p->nd;
    double sdy = 0, sdyx = 0, cnt = (double)p->n * p->hw;
    float m = nd->bn_mean[c], is = nd->bn_invstd[c];
    float g = nd->w ? nd->w->data[c] : 1.0f;
    const float *y = p->act != NN__ACT_NONE ? p->y : NULL;
    size_t o;
    int n;

    for (n = 0; n < p->n; n++) {
        o = ((size_t)n * p->c + c) * p->hw;
        nn__bn_grad_sums(p->x + o, p->dy + o, y ? y + o : NULL, p->slope,
                         p->hw, m, is, &sdy, &sdyx);
    }
    if (nd->gw)
        nd->gw->data[c] += (float)sdyx;
    if (nd->gb)
        nd->gb->data[c] += (float)sdy;
    if (!p->dx)
        return;
    for (n = 0; n < p->n; n++) {
        o = ((size_t)n * p->c + c) * p->hw;
        nn__bn_grad_dx(p->dx + o, p->x + o, p->dy + o, y ? y + o : NULL,
                       p->slope, p->hw, m, is, g * is, (float)(sdy / cnt),
                       (float)(sdyx / cnt));
    }
}

static void
bn_eval_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    size_t o = (size_t)t * p->hw;
    const float *y = p->act != NN__ACT_NONE ? p->y + o : NULL;

    nn__scale_grad(p->dx + o, p->dy + o, y, p->slope, p->hw,
                   p->nd->bn_mean[t % p->c]);
}

/* ---- activations, dropout, softmax ---------------------------------- */

static void
act_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    size_t o = (size_t)t * p->hw;

    nn__affine_act(p->y + o, p->x + o, p->hw, 1.0f, 0.0f,
                   p->nd->op == NN__RELU ? NN__ACT_RELU : NN__ACT_LEAKY,
                   (float)p->nd->slope);
}

/* Masked by the input: x > 0 exactly where the output took x. */
static void
act_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    size_t o = (size_t)t * p->hw;

    nn__act_grad(p->dx + o, p->dy + o, p->x + o, p->hw,
                 p->nd->op == NN__RELU ? 0.0f : (float)p->nd->slope);
}

/* Masks are drawn per plane from (seed, step, layer, plane), so they do
 * not depend on the thread that draws them. */
static void
dropout_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    struct nn__node *nd = p->nd;
    size_t i, o = (size_t)t * p->hw;
    float scale = (float)(1.0 / (1.0 - nd->p));
    struct rng r;
    uint8_t keep = 1;

    if (p->mode != NN_MODE_TRAIN || nd->p == 0.0) {
        if (p->y != p->x)
            memcpy(p->y + o, p->x + o, p->hw * sizeof(float));
        return;
    }
    rng_init(&r, rng_key(p->m->seed, p->m->step, (uint64_t)(nd - p->m->nodes),
                         (uint64_t)t));
    if (nd->op == NN__DROPOUT2D)
        keep = rng_uniform(&r) >= nd->p;
    for (i = o; i < o + p->hw; i++) {
        if (nd->op == NN__DROPOUT)
            keep = rng_uniform(&r) >= nd->p;
        nd->mask[i] = keep;
        p->y[i] = keep ? p->x[i] * scale : 0.0f;
    }
}

static void
dropout_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    struct nn__node *nd = p->nd;
    float scale = (float)(1.0 / (1.0 - nd->p));
    size_t i, o = (size_t)t * p->hw;

    for (i = o; i < o + p->hw; i++)
        p->dx[i] += nd->mask && !nd->mask[i] ? 0.0f
                    : nd->mask ? p->dy[i] * scale : p->dy[i];
}

static void
softmax_task(void *ctx, int n, int thread)
{
    struct pl *p = ctx;
    size_t i, base = (size_t)n * p->c * p->hw, hw = p->hw;
    const float *x = p->x + base;
    float *y = p->y + base;
    int c;

    for (i = 0; i < hw; i++) {
        float mx = x[i], sum = 0.0f;

        for (c = 1; c < p->c; c++)
            mx = fmaxf(mx, x[c * hw + i]);
        for (c = 0; c < p->c; c++) {
            y[c * hw + i] = expf(x[c * hw + i] - mx);
            sum += y[c * hw + i];
        }
        for (c = 0; c < p->c; c++)
            y[c * hw + i] /= sum;
    }
}

static void
softmax_back_task(void *ctx, int n, int thread)
{
    struct pl *p = ctx;
    size_t i, base = (size_t)n * p->c * p->hw, hw = p->hw;
    const float *y = p->y + base, *dy = p->dy + base;
    float *dx = p->dx + base;
    int c;

    for (i = 0; i < hw; i++) {
        float dot = 0.0f;

        for (c = 0; c < p->c; c++)
            dot += dy[c * hw + i] * y[c * hw + i];
        for (c = 0; c < p->c; c++)
            dx[c * hw + i] += y[c * hw + i] * (dy[c * hw + i] - dot);
    }
}

/* ---- pooling and upsampling ----------------------------------------- */

/* The common 2 x 2, stride 2 window without padding, unrolled. */
static void
maxpool22(const float *x, int w, float *y, int32_t *am, int oh, int ow)
{
    int oy, ox;

    for (oy = 0; oy < oh; oy++) {
        const float *r0 = x + (size_t)(2 * oy) * w, *r1 = r0 + w;

        for (ox = 0; ox < ow; ox++) {
            float v[4] = { r0[2 * ox], r0[2 * ox + 1], r1[2 * ox],
                           r1[2 * ox + 1] };
            int b = 0, i;

            for (i = 1; i < 4; i++)
                if (v[i] > v[b] || isnan(v[i]))
                    b = i;
            y[oy * ow + ox] = v[b];
            if (am)
                am[oy * ow + ox] = (2 * oy + (b >> 1)) * w + 2 * ox + (b & 1);
        }
    }
}

static void
maxpool_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    const struct nn__node *nd = p->nd;
    const int *xs = p->m->vals[nd->in[0]].shape;
    const int *ys = p->m->vals[nd->out].shape;
    const float *x = p->x + (size_t)t * p->hw;
    float *y = p->y + (size_t)t * p->ohw;
    int32_t *am = nd->argmax ? nd->argmax + (size_t)t * p->ohw : NULL;
    int oy, ox, ky, kx;

    if (nd->kh == 2 && nd->kw == 2 && nd->sh == 2 && nd->sw == 2 &&
        nd->ph == 0 && nd->pw == 0 && 2 * ys[2] <= xs[2] &&
        2 * ys[3] <= xs[3]) {
        maxpool22(x, xs[3], y, am, ys[2], ys[3]);
        return;
    }
    for (oy = 0; oy < ys[2]; oy++)
        for (ox = 0; ox < ys[3]; ox++) {
            float best = -INFINITY;
            int bi = -1;

            for (ky = 0; ky < nd->kh; ky++) {
                int iy = oy * nd->sh - nd->ph + ky;

                if (iy < 0 || iy >= xs[2])
                    continue;
                for (kx = 0; kx < nd->kw; kx++) {
                    int ix = ox * nd->sw - nd->pw + kx;
                    float v;

                    if (ix < 0 || ix >= xs[3])
                        continue;
                    v = x[iy * xs[3] + ix];
                    if (v > best || bi < 0 || isnan(v)) {
                        best = v;
                        bi = iy * xs[3] + ix;
                    }
                }
            }
            y[oy * ys[3] + ox] = best;
            if (am)
                am[oy * ys[3] + ox] = bi;
        }
}

static void
maxpool_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    const int32_t *am = p->nd->argmax + (size_t)t * p->ohw;
    const float *dy = p->dy + (size_t)t * p->ohw;
    float *dx = p->dx + (size_t)t * p->hw;
    size_t i;

    for (i = 0; i < p->ohw; i++)
        dx[am[i]] += dy[i];
}

/* Source index and weight of output index o along an axis, as PyTorch's
 * area_pixel_compute_source_index for linear interpolation. */
static void
bilinear_src(int o, int in, int out, bool align, int *i0, int *i1,
             float *l1)
{
    float src;

    if (align)
        src = out > 1 ? (float)(in - 1) / (float)(out - 1) * o : 0.0f;
    else
        src = fmaxf((float)in / (float)out * (o + 0.5f) - 0.5f, 0.0f);
    *i0 = (int)src;
    if (*i0 > in - 1)
        *i0 = in - 1;
    *i1 = *i0 < in - 1 ? *i0 + 1 : *i0;
    *l1 = src - *i0;
}

static void
upsample_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    const int *xs = p->m->vals[p->nd->in[0]].shape;
    const int *ys = p->m->vals[p->nd->out].shape;
    bool al = p->nd->align_corners;
    const float *x = p->x + (size_t)t * p->hw;
    float *y = p->y + (size_t)t * p->ohw;
    int oy, ox, y0, y1, x0, x1;
    float ly, lx;

    for (oy = 0; oy < ys[2]; oy++) {
        bilinear_src(oy, xs[2], ys[2], al, &y0, &y1, &ly);
        for (ox = 0; ox < ys[3]; ox++) {
            bilinear_src(ox, xs[3], ys[3], al, &x0, &x1, &lx);
            y[oy * ys[3] + ox] =
                (1 - ly) * ((1 - lx) * x[y0 * xs[3] + x0] +
                            lx * x[y0 * xs[3] + x1]) +
                ly * ((1 - lx) * x[y1 * xs[3] + x0] + lx * x[y1 * xs[3] + x1]);
        }
    }
}

static void
upsample_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    const int *xs = p->m->vals[p->nd->in[0]].shape;
    const int *ys = p->m->vals[p->nd->out].shape;
    bool al = p->nd->align_corners;
    const float *dy = p->dy + (size_t)t * p->ohw;
    float *dx = p->dx + (size_t)t * p->hw;
    int oy, ox, y0, y1, x0, x1;
    float ly, lx, g;

    for (oy = 0; oy < ys[2]; oy++) {
        bilinear_src(oy, xs[2], ys[2], al, &y0, &y1, &ly);
        for (ox = 0; ox < ys[3]; ox++) {
            bilinear_src(ox, xs[3], ys[3], al, &x0, &x1, &lx);
            g = dy[oy * ys[3] + ox];
            dx[y0 * xs[3] + x0] += (1 - ly) * (1 - lx) * g;
            dx[y0 * xs[3] + x1] += (1 - ly) * lx * g;
            dx[y1 * xs[3] + x0] += ly * (1 - lx) * g;
            dx[y1 * xs[3] + x1] += ly * lx * g;
        }
    }
}

static void
gap_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    const float *x = p->x + (size_t)t * p->hw;
    double s = 0;
    size_t i;

    for (i = 0; i < p->hw; i++)
        s += x[i];
    p->y[t] = (float)(s / (double)p->hw);
}

static void
gap_back_task(void *ctx, int t, int thread)
{
    struct pl *p = ctx;
    float g = p->dy[t] / (float)p->hw;
    float *dx = p->dx + (size_t)t * p->hw;
    size_t i;

    for (i = 0; i < p->hw; i++)
        dx[i] += g;
}

/* ---- multi-input layers and linear ---------------------------------- */

static void
concat_forward(struct pl *p, struct nn_tensor *y)
{
    const struct nn__node *nd = p->nd;
    int n, i, off;

    for (n = 0; n < p->n; n++)
        for (i = 0, off = 0; i < nd->n_in; i++) {
            const struct nn__value *v = &p->m->vals[nd->in[i]];
            size_t len = (size_t)v->c * p->hw;

            memcpy(y->data + ((size_t)n * y->shape[1] + off) * p->hw,
                   v->t->data + (size_t)n * len, len * sizeof(float));
            off += v->c;
        }
}

static int
concat_backward(struct pl *p)
{
    const struct nn__node *nd = p->nd;
    const struct nn__value *out = &p->m->vals[nd->out];
    int n, i, off;

    for (i = 0, off = 0; i < nd->n_in; i++) {
        const struct nn__value *v = &p->m->vals[nd->in[i]];
        struct nn_tensor *g;
        size_t len = (size_t)v->c * p->hw;

        if (nn__needs_grad(p->m, nd->in[i])) {
            if (!(g = nn__grad_of(p->m, nd->in[i])))
                return -ENOMEM;
            for (n = 0; n < p->n; n++)
                nn__add(g->data + (size_t)n * len,
                        p->dy + ((size_t)n * out->c + off) * p->hw, len);
        }
        off += v->c;
    }
    return 0;
}

static void
add_forward(struct pl *p, struct nn_tensor *y)
{
    int i;

    memcpy(y->data, p->x, y->count * sizeof(float));
    for (i = 1; i < p->nd->n_in; i++)
        nn__add(y->data, p->m->vals[p->nd->in[i]].t->data, y->count);
}

static int
add_backward(struct pl *p)
{
    struct nn_tensor *g;
    size_t count = (size_t)p->n * p->c * p->hw;
    int i;

    for (i = 0; i < p->nd->n_in; i++) {
        if (!nn__needs_grad(p->m, p->nd->in[i]))
            continue;
        if (!(g = nn__grad_of(p->m, p->nd->in[i])))
            return -ENOMEM;
        nn__add(g->data, p->dy, count);
    }
    return 0;
}

static void
linear_forward(struct pl *p, struct nn_tensor *y)
{
    const struct nn__node *nd = p->nd;
    int n, o;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->n, nd->cout,
                nd->in_features, 1.0f, p->x, nd->in_features, nd->w->data,
                nd->in_features, 0.0f, y->data, nd->cout);
    for (n = 0; nd->b && n < p->n; n++)
        for (o = 0; o < nd->cout; o++)
            y->data[n * nd->cout + o] += nd->b->data[o];
}

static void
linear_backward(struct pl *p, bool param_grads)
{
    const struct nn__node *nd = p->nd;
    int n, o, f = nd->in_features;

    if (param_grads && nd->gw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nd->cout, f,
                    p->n, 1.0f, p->dy, nd->cout, p->x, f, 1.0f,
                    nd->gw->data, f);
    for (o = 0; param_grads && nd->gb && o < nd->cout; o++) {
        double s = 0;

        for (n = 0; n < p->n; n++)
            s += p->dy[n * nd->cout + o];
        nd->gb->data[o] += (float)s;
    }
    if (p->dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->n, f,
                    nd->cout, 1.0f, p->dy, nd->cout, nd->w->data, f, 1.0f,
                    p->dx, f);
}

/* ---- dispatch ------------------------------------------------------- */

/* The memory plan provides the state backward needs; check it did. */
static int
forward_aux(struct pl *p)
{
    struct nn__node *nd = p->nd;

    if (nd->op == NN__MAXPOOL && p->mode != NN_MODE_INFER && !nd->argmax)
        return -ENOMEM;
    if ((nd->op == NN__DROPOUT || nd->op == NN__DROPOUT2D) &&
        p->mode == NN_MODE_TRAIN && nd->p > 0.0 && !nd->mask)
        return -ENOMEM;
    return 0;
}

int
nn__layer_forward(struct nn_model *m, struct nn__node *nd,
                  struct nn_tensor *y, enum nn_mode mode, struct ss_err *err)
{
    struct pl p;
    int planes;

    pl_init(&p, m, nd, mode);
    p.y = y->data;
    planes = p.n * p.c;
    if (forward_aux(&p) < 0)
        return err_set(err, -ENOMEM, "no memory planned for the layer's "
                       "state");
    switch (nd->op) {
    case NN__BN:
        if (bn_forward(&p) < 0)
            return err_set(err, -ENOMEM, "out of memory");
        break;
    case NN__RELU:
    case NN__LEAKY:
        nn__parallel(planes, act_task, &p);
        break;
    case NN__DROPOUT:
    case NN__DROPOUT2D:
        nn__parallel(planes, dropout_task, &p);
        break;
    case NN__SOFTMAX:
        nn__parallel(p.n, softmax_task, &p);
        break;
    case NN__MAXPOOL:
        nn__parallel(planes, maxpool_task, &p);
        break;
    case NN__UPSAMPLE:
        nn__parallel(planes, upsample_task, &p);
        break;
    case NN__GAP:
        nn__parallel(planes, gap_task, &p);
        break;
    case NN__CONCAT:
        concat_forward(&p, y);
        break;
    case NN__ADD:
        add_forward(&p, y);
        break;
    case NN__LINEAR:
        linear_forward(&p, y);
        break;
    default:
        return err_set(err, -EINVAL, "not a plain layer");
    }
    return 0;
}

int
nn__layer_backward(struct nn_model *m, struct nn__node *nd,
                   enum nn_mode mode, struct ss_err *err)
{
    struct pl p;
    int planes, rc = 0;

    pl_init(&p, m, nd, mode);
    p.y = m->vals[nn__exec_out(m, (int)(nd - m->nodes), mode)].t->data;
    p.dy = m->vals[nn__exec_out(m, (int)(nd - m->nodes), mode)].g->data;
    planes = p.n * p.c;
    if (nd->op != NN__CONCAT && nd->op != NN__ADD &&
        nn__needs_grad(m, nd->in[0])) {
        if (!nn__grad_of(m, nd->in[0]))
            return err_set(err, -ENOMEM, "out of memory");
        p.dx = m->vals[nd->in[0]].g->data;
    }
    switch (nd->op) {
    case NN__BN:
        if (mode == NN_MODE_TRAIN)
            nn__parallel(p.c, bn_train_back_task, &p);
        else if (p.dx)
            nn__parallel(planes, bn_eval_back_task, &p);
        break;
    case NN__RELU:
    case NN__LEAKY:
        if (p.dx)
            nn__parallel(planes, act_back_task, &p);
        break;
    case NN__DROPOUT:
    case NN__DROPOUT2D:
        if (p.dx)
            nn__parallel(planes, dropout_back_task, &p);
        break;
    case NN__SOFTMAX:
        if (p.dx)
            nn__parallel(p.n, softmax_back_task, &p);
        break;
    case NN__MAXPOOL:
        if (p.dx)
            nn__parallel(planes, maxpool_back_task, &p);
        break;
    case NN__UPSAMPLE:
        if (p.dx)
            nn__parallel(planes, upsample_back_task, &p);
        break;
    case NN__GAP:
        if (p.dx)
            nn__parallel(planes, gap_back_task, &p);
        break;
    case NN__CONCAT:
        rc = concat_backward(&p);
        break;
    case NN__ADD:
        rc = add_backward(&p);
        break;
    case NN__LINEAR:
        linear_backward(&p, mode == NN_MODE_TRAIN && !nd->frozen);
        break;
    default:
        return err_set(err, -EINVAL, "not a plain layer");
    }
    return rc < 0 ? err_set(err, rc, "out of memory") : 0;
}
