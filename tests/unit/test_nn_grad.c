/* SPDX-License-Identifier: MIT */
/*
 * worker/nn: finite-difference gradient checks for every layer and loss.
 * Each check builds a one- or two-layer model, takes L = sum(y * R) for a
 * fixed random R, and compares the backward pass's gradients w.r.t. the
 * input and every parameter with central differences of L (the sum in
 * double).  The error of a tensor is max|analytic - numeric| / max|numeric|
 * and must stay below 1e-3 (float forward passes, step 1e-2 or 1e-3).
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/nn/nn.h"
#include "worker/nn/nn_internal.h"

#define TOL 1e-3

static void
fill_random(struct nn_tensor *t, uint64_t key, double margin)
{
    struct rng r;
    size_t i;

    rng_init(&r, key);
    for (i = 0; i < t->count; i++) {
        double v = rng_gauss(&r);

        /* keep values off kinks (ReLU at 0) and apart from each other */
        if (fabs(v) < margin)
            v = v < 0 ? v - margin : v + margin;
        t->data[i] = (float)(v + 1e-3 * (double)(i % 97));
    }
}

static double
loss_of(struct nn_model *m, const struct nn_tensor *x,
        const struct nn_tensor *r, enum nn_mode mode)
{
    const struct nn_tensor *y;
    struct ss_err e;
    double s = 0;
    size_t i;

    m->step = 41;                   /* the same dropout masks every time */
    assert_int_equal(nn_model_forward(m, x, mode, &e), 0);
    y = nn_model_output(m, NULL);
    assert_non_null(y);
    for (i = 0; i < y->count; i++)
        s += (double)y->data[i] * r->data[i];
    return s;
}

/* max|a - num| / max|num| over the elements of a, numeric derivative by
 * central differences of v[i] with step h. */
static double
check_tensor(struct nn_model *m, struct nn_tensor *x, struct nn_tensor *v,
             const struct nn_tensor *analytic, const struct nn_tensor *r,
             enum nn_mode mode, double h)
{
    double maxdiff = 0, maxnum = 0;
    size_t i;

    for (i = 0; i < v->count; i++) {
        float keep = v->data[i];
        double lp, lm, num;

        v->data[i] = (float)(keep + h);
        lp = loss_of(m, x, r, mode);
        v->data[i] = (float)(keep - h);
        lm = loss_of(m, x, r, mode);
        v->data[i] = keep;
        num = (lp - lm) / (2 * h);
        maxdiff = fmax(maxdiff, fabs(num - analytic->data[i]));
        maxnum = fmax(maxnum, fabs(num));
    }
    return maxnum > 0 ? maxdiff / maxnum : maxdiff;
}

/* Runs the whole check for a model with input "x" of the given shape. */
static void
grad_check(const char *arch, int n, int c, int h, int w, enum nn_mode mode,
           double step, double margin)
{
    struct nn_model *m;
    struct nn_tensor *x = nn_tensor_new4(n, c, h, w), *r, *gx;
    struct ss_err e;
    double rel;
    int i;

    if (nn_model_new(arch, 7, &m, &e) < 0)
        fail_msg("%s", e.msg);
    assert_int_equal(nn_model_keep(m, "x", &e), 0);
    fill_random(x, 1, margin);
    assert_int_equal(nn_model_forward(m, x, mode, &e), 0);
    r = nn_tensor_new_like(nn_model_output(m, NULL));
    fill_random(r, 2, 0.0);

    loss_of(m, x, r, mode);
    nn_model_zero_grad(m);
    if (nn_model_backward(m, NULL, r, &e) < 0)
        fail_msg("%s", e.msg);
    gx = nn_tensor_dup(nn_model_activation_grad(m, "x"));
    rel = check_tensor(m, x, x, gx, r, mode, step);
    print_message("# input gradient: relative error %.2e\n", rel);
    assert_true(rel < TOL);
    for (i = 0; mode == NN_MODE_TRAIN && i < nn_model_param_count(m); i++) {
        struct nn_tensor *p, *g;
        const char *name;

        nn_model_param(m, i, &name, &p, &g);
        if (!g)
            continue;
        g = nn_tensor_dup(g);
        rel = check_tensor(m, x, p, g, r, mode, step);
        print_message("# %s gradient: relative error %.2e\n", name, rel);
        assert_true(rel < TOL);
        nn_tensor_free(g);
    }
    nn_tensor_free(gx);
    nn_tensor_free(r);
    nn_tensor_free(x);
    nn_model_free(m);
}

static char *
arch1(int c, const char *layer)
{
    static char buf[2048];

    snprintf(buf, sizeof(buf), "{\"format\": \"slidescan-nn\", \"version\": 1,"
             " \"inputs\": [{\"name\": \"x\", \"channels\": %d}],"
             " \"layers\": [%s]}", c, layer);
    return buf;
}

static void
test_conv3_pad(void **state)
{
    grad_check(arch1(3, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 4, \"kernel\": 3, \"padding\": 1}"),
               2, 3, 6, 7, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_conv3_stride2(void **state)
{
    grad_check(arch1(3, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": 3, \"stride\": 2, "
                     "\"padding\": 1, \"bias\": false}"),
               2, 3, 7, 8, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_conv3_dilated(void **state)
{
    grad_check(arch1(2, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": [3, 2], "
                     "\"dilation\": 2, \"padding\": [2, 1]}"),
               1, 2, 8, 7, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_conv1(void **state)
{
    grad_check(arch1(5, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": 1}"),
               2, 5, 4, 5, NN_MODE_TRAIN, 1e-2, 0);
}

/* Tiny bands: many bands per image and the even/odd scatter passes. */
static void
test_conv_many_bands(void **state)
{
    size_t keep = nn__band_bytes;

    nn__band_bytes = 64;
    grad_check(arch1(3, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 2, \"kernel\": 3, \"padding\": 1}"),
               2, 3, 9, 5, NN_MODE_TRAIN, 1e-2, 0);
    grad_check(arch1(2, "{\"name\": \"c\", \"type\": \"conv2d\", "
                     "\"out_channels\": 2, \"kernel\": 3, \"stride\": 2}"),
               1, 2, 11, 5, NN_MODE_TRAIN, 1e-2, 0);
    grad_check(arch1(3, "{\"name\": \"c\", \"type\": \"conv_transpose2d\", "
                     "\"out_channels\": 2, \"kernel\": 3, \"stride\": 2, "
                     "\"padding\": 1}"),
               1, 3, 7, 4, NN_MODE_TRAIN, 1e-2, 0);
    nn__band_bytes = keep;
}

static void
test_convt2(void **state)
{
    grad_check(arch1(4, "{\"name\": \"c\", \"type\": \"conv_transpose2d\", "
                     "\"out_channels\": 3, \"kernel\": 2, \"stride\": 2}"),
               2, 4, 4, 5, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_convt3_outpad(void **state)
{
    grad_check(arch1(3, "{\"name\": \"c\", \"type\": \"conv_transpose2d\", "
                     "\"out_channels\": 2, \"kernel\": 3, \"stride\": 2, "
                     "\"padding\": 1, \"output_padding\": 1, "
                     "\"bias\": false}"),
               2, 3, 4, 3, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_batchnorm_train(void **state)
{
    grad_check(arch1(3, "{\"name\": \"b\", \"type\": \"batchnorm2d\"}"),
               2, 3, 4, 5, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_batchnorm_explain(void **state)
{
    grad_check(arch1(3, "{\"name\": \"b\", \"type\": \"batchnorm2d\"}"),
               2, 3, 4, 5, NN_MODE_EXPLAIN, 1e-2, 0);
}

static void
test_relu(void **state)
{
    grad_check(arch1(2, "{\"name\": \"a\", \"type\": \"relu\"}"),
               2, 2, 5, 5, NN_MODE_TRAIN, 1e-2, 0.05);
    grad_check(arch1(2, "{\"name\": \"a\", \"type\": \"leaky_relu\", "
                     "\"negative_slope\": 0.1}"),
               2, 2, 5, 5, NN_MODE_TRAIN, 1e-2, 0.05);
}

static void
test_maxpool(void **state)
{
    grad_check(arch1(2, "{\"name\": \"p\", \"type\": \"maxpool2d\", "
                     "\"kernel\": 2}"),
               2, 2, 6, 7, NN_MODE_TRAIN, 1e-3, 0);
    grad_check(arch1(2, "{\"name\": \"p\", \"type\": \"maxpool2d\", "
                     "\"kernel\": 3, \"stride\": 2, \"padding\": 1, "
                     "\"ceil_mode\": true}"),
               1, 2, 6, 7, NN_MODE_TRAIN, 1e-3, 0);
}

static void
test_upsample(void **state)
{
    grad_check(arch1(2, "{\"name\": \"u\", \"type\": \"upsample_bilinear\"}"),
               2, 2, 3, 4, NN_MODE_TRAIN, 1e-2, 0);
    grad_check(arch1(2, "{\"name\": \"u\", \"type\": \"upsample_bilinear\", "
                     "\"scale\": 3, \"align_corners\": true}"),
               1, 2, 3, 4, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_concat_add(void **state)
{
    grad_check(arch1(2, "{\"name\": \"a\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": 1},"
                     "{\"name\": \"cat\", \"type\": \"concat\", "
                     "\"inputs\": [\"a\", \"x\"]},"
                     "{\"name\": \"b\", \"type\": \"conv2d\", \"input\": "
                     "\"x\", \"out_channels\": 5, \"kernel\": 1},"
                     "{\"name\": \"s\", \"type\": \"add\", "
                     "\"inputs\": [\"cat\", \"b\"]}"),
               2, 2, 3, 4, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_dropout(void **state)
{
    grad_check(arch1(3, "{\"name\": \"d\", \"type\": \"dropout\", "
                     "\"p\": 0.4}"),
               2, 3, 4, 4, NN_MODE_TRAIN, 1e-2, 0);
    grad_check(arch1(3, "{\"name\": \"d\", \"type\": \"dropout2d\", "
                     "\"p\": 0.5}"),
               2, 3, 4, 4, NN_MODE_TRAIN, 1e-2, 0);
}

static void
test_gap_linear_softmax(void **state)
{
    grad_check(arch1(4, "{\"name\": \"g\", \"type\": \"global_avgpool\"},"
                     "{\"name\": \"fc\", \"type\": \"linear\", "
                     "\"out_features\": 3},"
                     "{\"name\": \"sm\", \"type\": \"softmax\"}"),
               3, 4, 3, 5, NN_MODE_TRAIN, 1e-2, 0);
    grad_check(arch1(2, "{\"name\": \"fc\", \"type\": \"linear\", "
                     "\"in_features\": 24, \"out_features\": 3}"),
               2, 2, 3, 4, NN_MODE_TRAIN, 1e-2, 0);
}

/*
 * conv -> bn -> act -> strided conv -> conv -> up -> concat -> conv, end to
 * end.  The activation is a leaky ReLU of slope 1 and the downsampling a
 * strided convolution, so that the function has no kinks and every
 * element can be checked (ReLU and max pooling are checked alone above).
 */
static void
test_small_unet(void **state)
{
    grad_check(arch1(2, "{\"name\": \"e\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": 3, \"padding\": 1, "
                     "\"bias\": false},"
                     "{\"name\": \"bn\", \"type\": \"batchnorm2d\"},"
                     "{\"name\": \"r\", \"type\": \"leaky_relu\", "
                     "\"negative_slope\": 1.0},"
                     "{\"name\": \"p\", \"type\": \"conv2d\", "
                     "\"out_channels\": 3, \"kernel\": 2, \"stride\": 2},"
                     "{\"name\": \"m\", \"type\": \"conv2d\", "
                     "\"out_channels\": 4, \"kernel\": 3, \"padding\": 1},"
                     "{\"name\": \"u\", \"type\": \"conv_transpose2d\", "
                     "\"out_channels\": 3, \"kernel\": 2, \"stride\": 2},"
                     "{\"name\": \"cat\", \"type\": \"concat\", "
                     "\"inputs\": [\"u\", \"r\"]},"
                     "{\"name\": \"o\", \"type\": \"conv2d\", "
                     "\"out_channels\": 2, \"kernel\": 1}"),
               2, 2, 6, 6, NN_MODE_TRAIN, 1e-2, 0);
}

/* ---- losses ---------------------------------------------------------- */

typedef int (*loss_fn)(const struct nn_tensor *, const int32_t *,
                       const float *, int32_t, struct nn_tensor *,
                       double *);

static int
ce(const struct nn_tensor *l, const int32_t *y, const float *w, int32_t ig,
   struct nn_tensor *g, double *loss)
{
    return nn_loss_cross_entropy(l, y, w, ig, loss, g, NULL);
}

static int
dice(const struct nn_tensor *l, const int32_t *y, const float *w, int32_t ig,
     struct nn_tensor *g, double *loss)
{
    return nn_loss_dice(l, y, w, ig, 1.0, loss, g, NULL);
}

static void
loss_check(loss_fn fn, const float *w)
{
    struct nn_tensor *l = nn_tensor_new4(2, 3, 3, 4), *g;
    int32_t y[24];
    double lp, lm, loss, maxd = 0, maxn = 0;
    size_t i;

    fill_random(l, 5, 0);
    for (i = 0; i < 24; i++)
        y[i] = i % 7 == 3 ? 9 : (int32_t)((i * 5) % 3);   /* 9: ignored */
    g = nn_tensor_new_like(l);
    assert_int_equal(fn(l, y, w, 9, g, &loss), 0);
    assert_true(loss > 0);
    for (i = 0; i < l->count; i++) {
        float keep = l->data[i];

        l->data[i] = keep + 1e-3f;
        fn(l, y, w, 9, NULL, &lp);
        l->data[i] = keep - 1e-3f;
        fn(l, y, w, 9, NULL, &lm);
        l->data[i] = keep;
        lp = (lp - lm) / (2 * 1e-3);
        maxd = fmax(maxd, fabs(lp - g->data[i]));
        maxn = fmax(maxn, fabs(lp));
    }
    print_message("# loss gradient: relative error %.2e\n", maxd / maxn);
    assert_true(maxd / maxn < TOL);
    for (i = 0; i < 24; i++)            /* ignored pixels get no gradient */
        if (y[i] == 9)
            assert_true(g->data[(i / 12) * 36 + i % 12] == 0.0f);
    nn_tensor_free(g);
    nn_tensor_free(l);
}

static void
test_cross_entropy(void **state)
{
    const float w[3] = { 0.2f, 1.0f, 3.0f };

    loss_check(ce, NULL);
    loss_check(ce, w);
}

static void
test_dice(void **state)
{
    const float w[3] = { 0.0f, 1.0f, 2.0f };

    loss_check(dice, NULL);
    loss_check(dice, w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv3_pad),
        cmocka_unit_test(test_conv3_stride2),
        cmocka_unit_test(test_conv3_dilated),
        cmocka_unit_test(test_conv1),
        cmocka_unit_test(test_conv_many_bands),
        cmocka_unit_test(test_convt2),
        cmocka_unit_test(test_convt3_outpad),
        cmocka_unit_test(test_batchnorm_train),
        cmocka_unit_test(test_batchnorm_explain),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_concat_add),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_gap_linear_softmax),
        cmocka_unit_test(test_small_unet),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_dice),
    };

    nn_set_deterministic(true);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
