/* SPDX-License-Identifier: MIT */
/*
 * Losses on N x K x H x W logits with one class label per pixel:
 * cross-entropy (class weights, an ignored label; PyTorch's
 * CrossEntropyLoss with reduction 'mean') and soft Dice on the softmax
 * probabilities.  Sums run in double so that the loss of a 512 x 512 batch
 * keeps its precision; gradients are written in float.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn_internal.h"

static int
check(const struct nn_tensor *logits, const int32_t *labels,
      int32_t ignore, struct nn_tensor *grad, const char *what,
      struct ss_err *err)
{
    size_t i, n;
    int k = logits->shape[1];

    if (logits->ndim != 4)
        return err_set(err, -EINVAL, "%s: logits must be N x K x H x W",
                       what);
    if (grad && !nn_tensor_same_shape(grad, logits))
        return err_set(err, -EINVAL, "%s: gradient shape differs from the "
                       "logits", what);
    n = (size_t)logits->shape[0] * logits->shape[2] * logits->shape[3];
    for (i = 0; i < n; i++)
        if (labels[i] != ignore && (labels[i] < 0 || labels[i] >= k))
            return err_set(err, -EINVAL, "%s: pixel %zu has label %d, "
                           "outside 0..%d", what, i, (int)labels[i], k - 1);
    return 0;
}

/* Softmax of one pixel (K values at stride hw) into p[K], in double. */
static void
pixel_softmax(const float *x, size_t hw, int k, double *p)
{
    double mx = x[0], sum = 0;
    int c;

    for (c = 1; c < k; c++)
        if (x[c * hw] > mx)
            mx = x[c * hw];
    for (c = 0; c < k; c++) {
        p[c] = exp(x[c * hw] - mx);
        sum += p[c];
    }
    for (c = 0; c < k; c++)
        p[c] /= sum;
}

int
nn_loss_cross_entropy(const struct nn_tensor *logits, const int32_t *labels,
                      const float *class_weight, int32_t ignore_label,
                      double *loss, struct nn_tensor *grad,
                      struct ss_err *err)
{
    int K = logits->shape[1], N = logits->shape[0], n, c;
    size_t hw = (size_t)logits->shape[2] * logits->shape[3], i;
    double *p, sum = 0, wsum = 0;
    int rc = check(logits, labels, ignore_label, grad, "cross-entropy", err);

    if (rc < 0)
        return rc;
    p = malloc(sizeof(double) * K);
    if (!p)
        return err_set(err, -ENOMEM, "out of memory");
    for (n = 0; n < N; n++)
        for (i = 0; i < hw; i++) {
            int32_t y = labels[(size_t)n * hw + i];

            if (y == ignore_label)
                continue;
            pixel_softmax(logits->data + (size_t)n * K * hw + i, hw, K, p);
            wsum += class_weight ? class_weight[y] : 1.0;
            sum -= (class_weight ? class_weight[y] : 1.0) *
                   log(fmax(p[y], 1e-300));
        }
    *loss = wsum > 0 ? sum / wsum : 0.0;
    if (grad)
        memset(grad->data, 0, grad->count * sizeof(float));
    for (n = 0; grad && wsum > 0 && n < N; n++)
        for (i = 0; i < hw; i++) {
            int32_t y = labels[(size_t)n * hw + i];
            double w;
            float *g = grad->data + (size_t)n * K * hw + i;

            if (y == ignore_label)
                continue;
            w = (class_weight ? class_weight[y] : 1.0) / wsum;
            pixel_softmax(logits->data + (size_t)n * K * hw + i, hw, K, p);
            for (c = 0; c < K; c++)
                g[c * hw] = (float)(w * (p[c] - (c == y)));
        }
    free(p);
    return 0;
}

struct dice_sums {
    double *inter, *psum, *gsum;    /* per class */
};

static void
dice_accumulate(const struct nn_tensor *logits, const int32_t *labels,
                int32_t ignore, struct dice_sums *s, double *p)
{
    int K = logits->shape[1], N = logits->shape[0], n, c;
    size_t hw = (size_t)logits->shape[2] * logits->shape[3], i;

    for (n = 0; n < N; n++)
        for (i = 0; i < hw; i++) {
            int32_t y = labels[(size_t)n * hw + i];

            if (y == ignore)
                continue;
            pixel_softmax(logits->data + (size_t)n * K * hw + i, hw, K, p);
            for (c = 0; c < K; c++)
                s->psum[c] += p[c];
            s->inter[y] += p[y];
            s->gsum[y] += 1;
        }
}

int
nn_loss_dice(const struct nn_tensor *logits, const int32_t *labels,
             const float *class_weight, int32_t ignore_label, double smooth,
             double *loss, struct nn_tensor *grad, struct ss_err *err)
{
    int K = logits->shape[1], N = logits->shape[0], n, c;
    size_t hw = (size_t)logits->shape[2] * logits->shape[3], i;
    struct dice_sums s;
    double *buf, *p, *dp, wsum = 0, l = 0;
    int rc = check(logits, labels, ignore_label, grad, "Dice", err);

    if (rc < 0)
        return rc;
    buf = calloc(5 * (size_t)K, sizeof(double));
    if (!buf)
        return err_set(err, -ENOMEM, "out of memory");
    s = (struct dice_sums){ buf, buf + K, buf + 2 * K };
    p = buf + 3 * K;
    dp = buf + 4 * K;
    dice_accumulate(logits, labels, ignore_label, &s, p);
    for (c = 0; c < K; c++) {
        double w = class_weight ? class_weight[c] : 1.0;

        wsum += w;
        l += w * (1.0 - (2 * s.inter[c] + smooth) /
                  (s.psum[c] + s.gsum[c] + smooth));
    }
    *loss = wsum > 0 ? l / wsum : 0.0;
    if (grad)
        memset(grad->data, 0, grad->count * sizeof(float));
    for (n = 0; grad && wsum > 0 && n < N; n++)
        for (i = 0; i < hw; i++) {
            int32_t y = labels[(size_t)n * hw + i];
            float *g = grad->data + (size_t)n * K * hw + i;
            double dot = 0;

            if (y == ignore_label)
                continue;
            pixel_softmax(logits->data + (size_t)n * K * hw + i, hw, K, p);
            for (c = 0; c < K; c++) {       /* dLoss / dp_c */
                double w = (class_weight ? class_weight[c] : 1.0) / wsum;
                double den = s.psum[c] + s.gsum[c] + smooth;

                dp[c] = -w * (2.0 * (c == y) * den -
                              (2 * s.inter[c] + smooth)) / (den * den);
                dot += dp[c] * p[c];
            }
            for (c = 0; c < K; c++)
                g[c * hw] = (float)(p[c] * (dp[c] - dot));
        }
    free(buf);
    return 0;
}
