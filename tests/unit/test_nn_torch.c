/* SPDX-License-Identifier: MIT */
/*
 * worker/nn against PyTorch: the engine runs the model, input and steps
 * that tools/nn/torch_ref.py ran in PyTorch and compares every tensor.
 * The error of a tensor is max|engine - torch| / max|torch| (so elements
 * near zero do not inflate it); each must be at most 1e-4.
 *
 * The reference tensors come from tests/e2e/nn_torch.sh, which runs
 * torch_ref.py into a directory and then this program with NN_TORCH_REF
 * set to it.  Run alone (no NN_TORCH_REF) it reports one skip.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn.h"
#include "worker/nn/nn_internal.h"

#define MAX_REL 1e-4

static struct nn__st_file ref, in;
static const char *dir;
static int32_t labels[2 * 64 * 64];

static const struct nn_tensor *
find(const struct nn__st_file *f, const char *name)
{
    int i;

    for (i = 0; i < f->n; i++)
        if (!strcmp(f->v[i].name, name))
            return f->v[i].t;
    fail_msg("reference tensor %s is missing", name);
    return NULL;
}

static double
rel_err(const float *a, const struct nn_tensor *b, size_t n)
{
    double md = 0, mb = 0;
    size_t i;

    assert_int_equal(n, b->count);
    for (i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b->data[i]));
        mb = fmax(mb, fabs((double)b->data[i]));
    }
    return mb > 0 ? md / mb : md;
}

static const char *
path(const char *name)
{
    static char buf[4096];

    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static int
setup(void **state)
{
    struct ss_err e;
    const struct nn_tensor *l;
    size_t i;

    dir = getenv("NN_TORCH_REF");
    if (nn__st_read(path("ref.safetensors"), &ref, &e) < 0 ||
        nn__st_read(path("input.safetensors"), &in, &e) < 0) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    l = find(&in, "labels");
    for (i = 0; i < l->count; i++)
        labels[i] = (int32_t)l->data[i];
    return 0;
}

static int
teardown(void **state)
{
    nn__st_clear(&ref);
    nn__st_clear(&in);
    return 0;
}

static struct nn_model *
load(void)
{
    struct nn_model *m;
    struct ss_err e;

    if (nn_model_load(NULL, path("model.safetensors"), &m, &e) < 0)
        fail_msg("%s", e.msg);
    return m;
}

static void
expect(const char *what, const float *a, const char *refname, size_t n)
{
    double r = rel_err(a, find(&ref, refname), n);

    print_message("# %s: relative error %.2e\n", what, r);
    assert_true(r <= MAX_REL);
}

static void
test_eval_outputs_match(void **state)
{
    struct nn_model *m = load();
    const struct nn_tensor *x = find(&in, "x"), *y;
    struct ss_err e;

    assert_int_equal(nn_model_forward(m, x, NN_MODE_INFER, &e), 0);
    y = nn_model_output(m, "seg");
    expect("eval seg (fused inference)", y->data, "eval.seg", y->count);
    y = nn_model_output(m, "cls");
    expect("eval cls", y->data, "eval.cls", y->count);
    assert_int_equal(nn_model_forward(m, x, NN_MODE_EXPLAIN, &e), 0);
    y = nn_model_output(m, "seg");
    expect("eval seg (explain mode)", y->data, "eval.seg", y->count);
    nn_model_free(m);
}

/* Train-mode forward, cross-entropy and backward; returns the model with
 * its gradients. */
static struct nn_model *
train_pass(void)
{
    struct nn_model *m = load();
    const struct nn_tensor *x = find(&in, "x");
    const struct nn_tensor *w = find(&in, "class_weight");
    struct nn_tensor *g;
    struct ss_err e;
    double loss;

    assert_int_equal(nn_model_forward(m, x, NN_MODE_TRAIN, &e), 0);
    g = nn_tensor_new_like(nn_model_output(m, "seg"));
    assert_int_equal(nn_loss_cross_entropy(nn_model_output(m, "seg"), labels,
                                           w->data, 255, &loss, g, &e), 0);
    expect("cross-entropy loss", (float[]){ (float)loss }, "ce.loss", 1);
    nn_model_zero_grad(m);
    if (nn_model_backward(m, "seg", g, &e) < 0)
        fail_msg("%s", e.msg);
    nn_tensor_free(g);
    return m;
}

static void
test_train_forward_and_gradients_match(void **state)
{
    struct nn_model *m = train_pass();
    const struct nn_tensor *y = nn_model_output(m, "seg");
    char name[256];
    double worst = 0;
    int i;

    expect("train seg", y->data, "train.seg", y->count);
    for (i = 0; i < nn_model_param_count(m); i++) {
        struct nn_tensor *v, *g;
        const char *pn;

        nn_model_param(m, i, &pn, &v, &g);
        if (strstr(pn, "running_")) {
            snprintf(name, sizeof(name), "running.%s", pn);
            expect(pn, v->data, name, v->count);
            continue;
        }
        snprintf(name, sizeof(name), "grad.%s", pn);
        worst = fmax(worst, rel_err(g->data, find(&ref, name), g->count));
        expect(name, g->data, name, g->count);
    }
    print_message("# worst parameter gradient: relative error %.2e\n",
                  worst);
    nn_model_free(m);
}

static void
optimiser_step(enum nn_optim_kind kind, double lr, double wd,
               const char *tag)
{
    struct nn_model *m = train_pass();
    struct nn_optim_cfg cfg;
    struct nn_optim *o;
    struct ss_err e;
    char name[256];
    double worst = 0, r;
    int i;

    nn_optim_cfg_default(&cfg, kind);
    cfg.lr = lr;
    cfg.weight_decay = wd;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    assert_int_equal(nn_optim_step(o, &e), 0);
    for (i = 0; i < nn_model_param_count(m); i++) {
        struct nn_tensor *v, *g;
        const char *pn;

        nn_model_param(m, i, &pn, &v, &g);
        if (!g)
            continue;
        snprintf(name, sizeof(name), "%s.%s", tag, pn);
        r = rel_err(v->data, find(&ref, name), v->count);
        worst = fmax(worst, r);
        if (r > MAX_REL)
            fail_msg("%s: relative error %.2e", name, r);
    }
    print_message("# %s: worst weight after one step: relative error "
                  "%.2e\n", tag, worst);
    nn_optim_free(o);
    nn_model_free(m);
}

static void
test_adam_step_matches(void **state)
{
    optimiser_step(NN_OPTIM_ADAM, NN_DEFAULT_LR, 1e-4, "adam");
}

static void
test_adamw_step_matches(void **state)
{
    optimiser_step(NN_OPTIM_ADAMW, NN_DEFAULT_LR, 1e-2, "adamw");
}

static void
test_sgd_step_matches(void **state)
{
    optimiser_step(NN_OPTIM_SGD, 1e-2, 1e-4, "sgd");
}

static void
test_dice_matches(void **state)
{
    struct nn_model *m = load();
    const struct nn_tensor *w = find(&in, "class_weight"), *y;
    struct nn_tensor *g;
    struct ss_err e;
    double loss;

    assert_int_equal(nn_model_forward(m, find(&in, "x"), NN_MODE_INFER, &e),
                     0);
    y = nn_model_output(m, "seg");
    g = nn_tensor_new_like(y);
    assert_int_equal(nn_loss_dice(y, labels, w->data, 255, 1.0, &loss, g, &e),
                     0);
    expect("Dice loss", (float[]){ (float)loss }, "dice.loss", 1);
    expect("Dice gradient", g->data, "dice.grad", g->count);
    nn_tensor_free(g);
    nn_model_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_outputs_match),
        cmocka_unit_test(test_train_forward_and_gradients_match),
        cmocka_unit_test(test_adam_step_matches),
        cmocka_unit_test(test_adamw_step_matches),
        cmocka_unit_test(test_sgd_step_matches),
        cmocka_unit_test(test_dice_matches),
    };

    if (!getenv("NN_TORCH_REF")) {
        printf("ok 1 # SKIP no reference tensors: tests/e2e/nn_torch.sh "
               "makes them with PyTorch and runs this test\n");
        return 0;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
