/* SPDX-License-Identifier: MIT */
/*
 * worker/nn: model files, architecture errors, inference planning (fused
 * and in-place layers, virtual concatenation) against the plain path,
 * determinism across thread counts, the inference memory bound, training
 * that learns, optimiser rules checked by hand, optimiser state resume,
 * and Grad-CAM style activation gradients.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "worker/nn/nn.h"
#include "worker/nn/nn_internal.h"

static const char *small_arch =
    "{\"format\": \"slidescan-nn\", \"version\": 1, \"name\": \"small\","
    " \"inputs\": [{\"name\": \"image\", \"channels\": 3}],"
    " \"outputs\": [\"head\"], \"meta\": {\"classes\": [\"a\", \"b\"]},"
    " \"layers\": ["
    "  {\"name\": \"e1.conv\", \"type\": \"conv2d\", \"out_channels\": 6,"
    "   \"kernel\": 3, \"padding\": 1, \"bias\": false},"
    "  {\"name\": \"e1.bn\", \"type\": \"batchnorm2d\"},"
    "  {\"name\": \"e1.relu\", \"type\": \"relu\"},"
    "  {\"name\": \"pool\", \"type\": \"maxpool2d\", \"kernel\": 2},"
    "  {\"name\": \"e2.conv\", \"type\": \"conv2d\", \"out_channels\": 8,"
    "   \"kernel\": 3, \"padding\": 1},"
    "  {\"name\": \"e2.relu\", \"type\": \"leaky_relu\"},"
    "  {\"name\": \"drop\", \"type\": \"dropout2d\", \"p\": 0.2},"
    "  {\"name\": \"up\", \"type\": \"conv_transpose2d\", \"out_channels\": 6,"
    "   \"kernel\": 2, \"stride\": 2},"
    "  {\"name\": \"cat\", \"type\": \"concat\", \"inputs\": [\"up\","
    "   \"e1.relu\"]},"
    "  {\"name\": \"d1.conv\", \"type\": \"conv2d\", \"out_channels\": 6,"
    "   \"kernel\": 3, \"padding\": 1, \"bias\": false},"
    "  {\"name\": \"d1.bn\", \"type\": \"batchnorm2d\"},"
    "  {\"name\": \"d1.relu\", \"type\": \"relu\"},"
    "  {\"name\": \"head\", \"type\": \"conv2d\", \"out_channels\": 2,"
    "   \"kernel\": 1}"
    " ]}";

static struct nn_model *
new_model(const char *arch, uint64_t seed)
{
    struct nn_model *m;
    struct ss_err e;

    if (nn_model_new(arch, seed, &m, &e) < 0)
        fail_msg("%s", e.msg);
    return m;
}

static struct nn_tensor *
random_input(int n, int c, int h, int w, uint64_t key)
{
    struct nn_tensor *t = nn_tensor_new4(n, c, h, w);
    struct rng r;
    size_t i;

    rng_init(&r, key);
    for (i = 0; i < t->count; i++)
        t->data[i] = (float)rng_gauss(&r);
    return t;
}

static double
max_abs_diff(const struct nn_tensor *a, const struct nn_tensor *b)
{
    double d = 0;
    size_t i;

    assert_true(nn_tensor_same_shape(a, b));
    for (i = 0; i < a->count; i++)
        d = fmax(d, fabs((double)a->data[i] - b->data[i]));
    return d;
}

/* A labelled toy image: class 1 where the first channel is bright. */
static int32_t *
toy_labels(const struct nn_tensor *x)
{
    size_t hw = (size_t)x->shape[2] * x->shape[3], i;
    int32_t *y = malloc(sizeof(int32_t) * x->shape[0] * hw);
    int n;

    for (n = 0; n < x->shape[0]; n++)
        for (i = 0; i < hw; i++)
            y[n * hw + i] = x->data[(size_t)n * x->shape[1] * hw + i] > 0.3f;
    return y;
}

static double
train_steps(struct nn_model *m, struct nn_optim *o, const struct nn_tensor *x,
            const int32_t *y, int steps)
{
    const struct nn_tensor *out;
    struct nn_tensor *g = NULL;
    struct ss_err e;
    double loss = 0;
    int s;

    for (s = 0; s < steps; s++) {
        assert_int_equal(nn_model_forward(m, x, NN_MODE_TRAIN, &e), 0);
        out = nn_model_output(m, NULL);
        if (!g)
            g = nn_tensor_new_like(out);
        assert_int_equal(nn_loss_cross_entropy(out, y, NULL, NN_IGNORE_NONE,
                                               &loss, g, &e), 0);
        nn_model_zero_grad(m);
        assert_int_equal(nn_model_backward(m, NULL, g, &e), 0);
        assert_int_equal(nn_optim_step(o, &e), 0);
    }
    nn_tensor_free(g);
    return loss;
}

static void
test_save_load_round_trip(void **state)
{
    struct nn_model *m = new_model(small_arch, 5), *a, *b;
    struct nn_tensor *x = random_input(1, 3, 16, 20, 1), *y0;
    struct ss_err e;

    assert_int_equal(nn_model_save(m, tu_tmp("small.json"),
                                   tu_tmp("small.safetensors"), &e), 0);
    assert_int_equal(nn_model_forward(m, x, NN_MODE_INFER, &e), 0);
    y0 = nn_tensor_dup(nn_model_output(m, NULL));
    assert_int_equal(nn_model_load(NULL, tu_tmp("small.safetensors"), &a,
                                   &e), 0);
    assert_int_equal(nn_model_load(tu_tmp("small.json"),
                                   tu_tmp("small.safetensors"), &b, &e), 0);
    assert_int_equal(nn_model_forward(a, x, NN_MODE_INFER, &e), 0);
    assert_int_equal(nn_model_forward(b, x, NN_MODE_INFER, &e), 0);
    assert_true(max_abs_diff(y0, nn_model_output(a, NULL)) == 0.0);
    assert_true(max_abs_diff(y0, nn_model_output(b, NULL)) == 0.0);
    assert_non_null(strstr(nn_model_meta(a), "\"classes\""));
    assert_string_equal(nn_model_output_name(a, 0), "head");
    assert_null(nn_model_output_name(a, 1));
    assert_int_equal(nn_model_input_channels(a), 3);
    assert_int_equal(nn_model_set_meta(a, "{\"mpp\": 1.0}", &e), 0);
    assert_int_equal(nn_model_save(a, NULL, tu_tmp("meta.safetensors"), &e),
                     0);
    nn_model_free(b);
    assert_int_equal(nn_model_load(NULL, tu_tmp("meta.safetensors"), &b, &e),
                     0);
    assert_string_equal(nn_model_meta(b), "{\"mpp\":1.0}");
    assert_int_equal(nn_model_set_meta(b, "[1]", &e), -EINVAL);
    nn_tensor_free(x);
    nn_tensor_free(y0);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(m);
}

/* Writes a safetensors file by hand: one tensor "t" of the given dtype. */
static void
write_one(const char *path, const char *dtype, const void *data, size_t n,
          size_t esz)
{
    char hdr[256];
    FILE *f = fopen(path, "wb");
    uint64_t len;

    snprintf(hdr, sizeof(hdr), "{\"t\":{\"dtype\":\"%s\",\"shape\":[%zu],"
             "\"data_offsets\":[0,%zu]}}", dtype, n, n * esz);
    len = strlen(hdr);
    fwrite(&len, 8, 1, f);              /* the test host is little-endian */
    fwrite(hdr, 1, len, f);
    fwrite(data, esz, n, f);
    fclose(f);
}

static void
test_safetensors_dtypes(void **state)
{
    const uint16_t f16[4] = { 0x3c00, 0xc000, 0x3555, 0x0001 };
    const uint16_t bf16[2] = { 0x3f80, 0xc0a0 };
    const double f64[2] = { 0.1, -1e10 };
    struct nn__st_file f;
    struct ss_err e;

    write_one(tu_tmp("f16"), "F16", f16, 4, 2);
    assert_int_equal(nn__st_read(tu_tmp("f16"), &f, &e), 0);
    assert_true(f.v[0].t->data[0] == 1.0f && f.v[0].t->data[1] == -2.0f);
    assert_true(fabs(f.v[0].t->data[2] - 0.33325195f) < 1e-7);
    assert_true(f.v[0].t->data[3] == ldexpf(1.0f, -24));
    nn__st_clear(&f);
    write_one(tu_tmp("bf16"), "BF16", bf16, 2, 2);
    assert_int_equal(nn__st_read(tu_tmp("bf16"), &f, &e), 0);
    assert_true(f.v[0].t->data[0] == 1.0f && f.v[0].t->data[1] == -5.0f);
    nn__st_clear(&f);
    write_one(tu_tmp("f64"), "F64", f64, 2, 8);
    assert_int_equal(nn__st_read(tu_tmp("f64"), &f, &e), 0);
    assert_true(f.v[0].t->data[0] == 0.1f && f.v[0].t->data[1] == -1e10f);
    nn__st_clear(&f);
    write_one(tu_tmp("i32"), "I32", f64, 4, 4);
    assert_int_equal(nn__st_read(tu_tmp("i32"), &f, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "tensor t: unsupported dtype I32"));
}

static void
expect_load_error(const char *arch_path, const char *weights,
                  const char *needle)
{
    struct nn_model *m = NULL;
    struct ss_err e;

    assert_true(nn_model_load(arch_path, weights, &m, &e) < 0);
    assert_null(m);
    print_message("# %s\n", e.msg);
    if (!strstr(e.msg, needle))
        fail_msg("\"%s\" does not say \"%s\"", e.msg, needle);
}

static void
test_broken_model_files(void **state)
{
    struct nn_model *m = new_model(small_arch, 5);
    struct ss_err e;
    char *buf;
    size_t len;
    FILE *f;

    assert_int_equal(nn_model_save(m, tu_tmp("ok.json"),
                                   tu_tmp("ok.safetensors"), &e), 0);
    assert_int_equal(util_read_file(tu_tmp("ok.safetensors"), &buf, &len,
                                    &e), 0);
    f = fopen(tu_tmp("short.safetensors"), "wb");
    fwrite(buf, 1, len - 100, f);
    fclose(f);
    expect_load_error(NULL, tu_tmp("short.safetensors"), "data_offsets");
    f = fopen(tu_tmp("text.safetensors"), "wb");
    fputs("this is not a model file at all, just text\n", f);
    fclose(f);
    expect_load_error(NULL, tu_tmp("text.safetensors"),
                      "not a safetensors file");
    expect_load_error(NULL, tu_tmp("absent.safetensors"),
                      "absent.safetensors");
    write_one(tu_tmp("other.safetensors"), "F32", buf, 4, 4);
    expect_load_error(tu_tmp("ok.json"), tu_tmp("other.safetensors"),
                      "tensor e1.conv.weight is missing");
    expect_load_error(NULL, tu_tmp("other.safetensors"),
                      "no architecture in the file's metadata");
    free(buf);
    nn_model_free(m);
}

/* Overwrites element elem of tensor name in a safetensors file with v. */
static void
poke_f32(const char *path, const char *name, size_t elem, float v)
{
    uint64_t hlen;
    json_t *hdr, *offs;
    long begin;
    FILE *f = fopen(path, "r+b");

    assert_non_null(f);
    assert_int_equal(fread(&hlen, 8, 1, f), 1);
    {
        char *text = calloc(1, hlen + 1);

        assert_int_equal(fread(text, 1, hlen, f), hlen);
        hdr = json_loads(text, 0, NULL);
        free(text);
    }
    offs = json_object_get(json_object_get(hdr, name), "data_offsets");
    assert_non_null(offs);
    begin = (long)json_integer_value(json_array_get(offs, 0));
    json_decref(hdr);
    assert_int_equal(fseek(f, 8 + (long)hlen + begin + 4 * (long)elem,
                           SEEK_SET), 0);
    assert_int_equal(fwrite(&v, 4, 1, f), 1);
    fclose(f);
}

static void
test_non_finite_weights_refused(void **state)
{
    struct nn_model *m = new_model(small_arch, 5), *ok = NULL;
    const float f32[6] = { 1, 2, 3, 4, -INFINITY, NAN };
    const double f64[3] = { 0.5, 1e300, -2 };
    struct nn__st_file f;
    struct ss_err e;

    write_one(tu_tmp("inf.safetensors"), "F32", f32, 6, 4);
    assert_int_equal(nn__st_read(tu_tmp("inf.safetensors"), &f, &e),
                     SS_EFORMAT);
    assert_null(f.v);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "inf.safetensors: tensor t: element 4 "
                           "[4] is -inf"));
    write_one(tu_tmp("big.safetensors"), "F64", f64, 3, 8);
    assert_int_equal(nn__st_read(tu_tmp("big.safetensors"), &f, &e),
                     SS_EFORMAT);
    assert_non_null(strstr(e.msg, "tensor t: element 1 [1] is +inf"));
    assert_int_equal(nn_model_save(m, tu_tmp("nan.json"),
                                   tu_tmp("nan.safetensors"), &e), 0);
    poke_f32(tu_tmp("nan.safetensors"), "e1.conv.weight", 0, NAN);
    expect_load_error(NULL, tu_tmp("nan.safetensors"), "nan.safetensors: "
                      "tensor e1.conv.weight: element 0 [0, 0, 0, 0] is NaN");
    poke_f32(tu_tmp("nan.safetensors"), "e1.conv.weight", 0, 0.25f);
    poke_f32(tu_tmp("nan.safetensors"), "e1.conv.weight", 13, INFINITY);
    expect_load_error(NULL, tu_tmp("nan.safetensors"), "tensor "
                      "e1.conv.weight: element 13 [0, 1, 1, 1] is +inf");
    poke_f32(tu_tmp("nan.safetensors"), "e1.conv.weight", 13, 0.25f);
    assert_int_equal(nn_model_load(NULL, tu_tmp("nan.safetensors"), &ok,
                                   &e), 0);
    nn_model_free(ok);
    nn_model_free(m);
    (void)state;
}

static void
test_weights_must_fit_the_architecture(void **state)
{
    struct nn_model *m = new_model(small_arch, 5);
    const char *names[2] = { "a.weight", "e1.conv.weight" };
    const struct nn_tensor *ts[2];
    struct nn_tensor *wrong = nn_tensor_new4(6, 3, 5, 5);
    struct ss_err e;

    assert_int_equal(nn_model_save(m, tu_tmp("a.json"),
                                   tu_tmp("a.safetensors"), &e), 0);
    ts[0] = nn_model_find_param(m, "e1.conv.weight");
    ts[1] = wrong;
    assert_int_equal(nn__st_write(tu_tmp("shape.safetensors"), names + 1,
                                  ts + 1, 1, NULL, NULL, 0, &e), 0);
    expect_load_error(tu_tmp("a.json"), tu_tmp("shape.safetensors"),
                      "e1.conv.weight has shape [6,3,5,5]");
    nn_tensor_free(wrong);
    nn_model_free(m);
}

static void
expect_arch_error(const char *layers, const char *needle)
{
    char buf[2048];
    struct nn_model *m = NULL;
    struct ss_err e;

    snprintf(buf, sizeof(buf), "{\"format\": \"slidescan-nn\", \"version\": "
             "1, \"inputs\": [{\"name\": \"x\", \"channels\": 3}], "
             "\"layers\": [%s]}", layers);
    assert_true(nn_model_new(buf, 1, &m, &e) < 0);
    assert_null(m);
    print_message("# %s\n", e.msg);
    if (!strstr(e.msg, needle))
        fail_msg("\"%s\" does not say \"%s\"", e.msg, needle);
}

static void
test_architecture_errors(void **state)
{
    struct nn_model *m = NULL;
    struct ss_err e;

    expect_arch_error("{\"name\": \"c\", \"type\": \"conv2d\", "
                      "\"out_channels\": 4, \"kernal\": 3}",
                      "layer c: unknown field kernal for conv2d");
    expect_arch_error("{\"name\": \"c\", \"type\": \"conv3d\"}",
                      "layer c: unknown type conv3d");
    expect_arch_error("{\"name\": \"c\", \"type\": \"conv2d\", "
                      "\"kernel\": 3}", "layer c: out_channels is required");
    expect_arch_error("{\"name\": \"c\", \"type\": \"relu\", "
                      "\"input\": \"y\"}",
                      "layer c: input y is not an earlier layer");
    expect_arch_error("{\"name\": \"c\", \"type\": \"concat\", "
                      "\"inputs\": [\"x\"]}", "layer c: needs \"inputs\"");
    expect_arch_error("{\"name\": \"x\", \"type\": \"relu\"}",
                      "layer x: name used twice");
    expect_arch_error("{\"name\": \"c\", \"type\": \"dropout\", \"p\": 1}",
                      "layer c: p must be below 1");
    expect_arch_error("{\"name\": \"c\", \"type\": \"conv2d\", "
                      "\"out_channels\": 2, \"kernel\": 1}, {\"name\": \"s\","
                      " \"type\": \"add\", \"inputs\": [\"x\", \"c\"]}",
                      "layer s: adds 2 channels to 3");
    assert_true(nn_model_new("{\"format\": \"onnx\"}", 1, &m, &e) < 0);
    assert_non_null(strstr(e.msg, "format is not \"slidescan-nn\""));
    assert_true(nn_model_new("{\"format\": ", 1, &m, &e) < 0);
    assert_non_null(strstr(e.msg, "architecture: line 1"));
}

static void
test_input_size_errors_name_the_layer(void **state)
{
    struct nn_model *m = new_model(small_arch, 5);
    struct nn_tensor *odd = random_input(1, 3, 15, 16, 1);
    struct nn_tensor *bad = random_input(1, 4, 16, 16, 1);
    struct ss_err e;

    assert_int_equal(nn_model_forward(m, odd, NN_MODE_INFER, &e), -EINVAL);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "layer cat: inputs up (16x14) and "
                                  "e1.relu (16x15) differ in size"));
    assert_int_equal(nn_model_forward(m, bad, NN_MODE_INFER, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "input must be N x 3 x H x W"));
    assert_int_equal(nn_model_backward(m, NULL, odd, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "backward needs a fresh training"));
    nn_tensor_free(odd);
    nn_tensor_free(bad);
    nn_model_free(m);
}

/* Inference fuses conv + BN + ReLU, works in place and never builds the
 * concatenation; explain mode runs every layer plainly.  Same numbers. */
static void
test_planned_inference_equals_plain_path(void **state)
{
    struct nn_model *m = new_model(small_arch, 9);
    struct nn_tensor *x = random_input(2, 3, 24, 32, 2), *y;
    struct nn_optim_cfg cfg;
    struct nn_optim *o;
    struct ss_err e;
    int32_t *lab = toy_labels(x);

    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAM);
    cfg.lr = 1e-2;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    train_steps(m, o, x, lab, 3);       /* non-trivial running statistics */
    assert_int_equal(nn_model_forward(m, x, NN_MODE_EXPLAIN, &e), 0);
    y = nn_tensor_dup(nn_model_output(m, NULL));
    assert_int_equal(nn_model_forward(m, x, NN_MODE_INFER, &e), 0);
    print_message("# max |infer - explain| = %.2e\n",
                  max_abs_diff(y, nn_model_output(m, NULL)));
    assert_true(max_abs_diff(y, nn_model_output(m, NULL)) < 1e-5);
    assert_null(nn_model_activation(m, "e1.bn"));   /* fused away */
    assert_null(nn_model_activation(m, "cat"));     /* never built */
    assert_non_null(nn_model_activation(m, "head"));
    nn_tensor_free(y);
    nn_tensor_free(x);
    free(lab);
    nn_optim_free(o);
    nn_model_free(m);
}

static void
weights_after_training(int threads, struct nn_tensor **out)
{
    struct nn_model *m = new_model(small_arch, 3);
    struct nn_tensor *x = random_input(2, 3, 32, 32, 4);
    int32_t *lab = toy_labels(x);
    struct nn_optim_cfg cfg;
    struct nn_optim *o;
    struct ss_err e;
    int i;

    nn_set_threads(threads);
    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAMW);
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    train_steps(m, o, x, lab, 3);
    for (i = 0; i < nn_model_param_count(m); i++) {
        struct nn_tensor *v;

        nn_model_param(m, i, NULL, &v, NULL);
        out[i] = nn_tensor_dup(v);
    }
    nn_set_threads(0);
    nn_tensor_free(x);
    free(lab);
    nn_optim_free(o);
    nn_model_free(m);
}

static void
test_deterministic_across_thread_counts(void **state)
{
    struct nn_tensor *a[64] = { 0 }, *b[64] = { 0 }, *c[64] = { 0 };
    size_t keep = nn__band_bytes;
    int i;

    nn_set_deterministic(true);
    nn__band_bytes = 4096;              /* many bands and groups */
    weights_after_training(1, a);
    weights_after_training(2, b);
    weights_after_training(3, c);
    for (i = 0; a[i]; i++) {
        assert_memory_equal(a[i]->data, b[i]->data, a[i]->count * 4);
        assert_memory_equal(a[i]->data, c[i]->data, a[i]->count * 4);
        nn_tensor_free(a[i]);
        nn_tensor_free(b[i]);
        nn_tensor_free(c[i]);
    }
    nn__band_bytes = keep;
    nn_set_deterministic(false);
}

static void
test_training_learns(void **state)
{
    struct nn_model *m = new_model(small_arch, 11);
    struct nn_tensor *x = random_input(2, 3, 32, 32, 6);
    int32_t *lab = toy_labels(x);
    struct nn_optim_cfg cfg;
    struct nn_optim *o;
    struct ss_err e;
    double first, last;

    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAM);
    cfg.lr = 1e-2;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    first = train_steps(m, o, x, lab, 1);
    last = train_steps(m, o, x, lab, 40);
    print_message("# cross-entropy %.4f -> %.4f after 40 Adam steps\n",
                  first, last);
    assert_true(last < 0.3 * first);
    nn_tensor_free(x);
    free(lab);
    nn_optim_free(o);
    nn_model_free(m);
}

/* One weight, gradient set by hand, the update computed here in double. */
static void
test_optimiser_rules(void **state)
{
    const char *arch = "{\"format\": \"slidescan-nn\", \"version\": 1, "
        "\"inputs\": [{\"name\": \"x\", \"channels\": 1}], \"layers\": "
        "[{\"name\": \"fc\", \"type\": \"linear\", \"out_features\": 1, "
        "\"bias\": false}]}";
    struct nn_model *m = new_model(arch, 1);
    struct nn_tensor *w, *g;
    struct nn_optim_cfg cfg;
    struct nn_optim *o;
    struct ss_err e;
    double p = 0.5, buf, m1, v1, expect;

    nn_model_param(m, 0, NULL, &w, &g);
    /* SGD, momentum 0.9, dampening 0.1, weight decay 0.01, two steps */
    w->data[0] = 0.5f;
    nn_optim_cfg_default(&cfg, NN_OPTIM_SGD);
    cfg.lr = 0.1;
    cfg.dampening = 0.1;
    cfg.weight_decay = 0.01;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    g->data[0] = 2.0f;
    nn_optim_step(o, &e);
    buf = 2.0 + 0.01 * p;               /* first step: buf = d */
    p -= 0.1 * buf;
    assert_true(fabs(w->data[0] - p) < 1e-6);
    g->data[0] = -1.0f;
    nn_optim_step(o, &e);
    buf = 0.9 * buf + 0.9 * (-1.0 + 0.01 * p);
    p -= 0.1 * buf;
    assert_true(fabs(w->data[0] - p) < 1e-6);
    nn_optim_free(o);

    /* Adam (L2) and AdamW (decoupled) first step */
    w->data[0] = 0.5f;
    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAM);
    cfg.lr = 0.01;
    cfg.weight_decay = 0.1;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    g->data[0] = 0.2f;
    nn_optim_step(o, &e);
    m1 = 0.1 * (0.2 + 0.05);
    v1 = 0.001 * (0.25 * 0.25);
    expect = 0.5 - 0.01 / 0.1 * m1 / (sqrt(v1) / sqrt(0.001) + 1e-8);
    assert_true(fabs(w->data[0] - expect) < 1e-6);
    nn_optim_free(o);
    w->data[0] = 0.5f;
    cfg.kind = NN_OPTIM_ADAMW;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), 0);
    nn_optim_step(o, &e);
    expect = 0.5 * (1 - 0.01 * 0.1) - 0.01 * 0.2 / (0.2 + 1e-8);
    assert_true(fabs(w->data[0] - expect) < 1e-6);
    assert_int_equal(nn_optim_steps(o), 1);
    assert_true(nn_optim_set_lr(o, 0.5) == 0.01);
    nn_optim_free(o);
    cfg.beta1 = 1.0;
    assert_int_equal(nn_optim_new(m, &cfg, &o, &e), -EINVAL);
    nn_model_free(m);
}

static void
test_resume_equals_uninterrupted(void **state)
{
    struct nn_model *a = new_model(small_arch, 21), *b;
    struct nn_tensor *x = random_input(2, 3, 16, 16, 8);
    int32_t *lab = toy_labels(x);
    struct nn_optim_cfg cfg;
    struct nn_optim *oa, *ob;
    struct ss_err e;
    int i;

    nn_set_deterministic(true);
    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAM);
    assert_int_equal(nn_optim_new(a, &cfg, &oa, &e), 0);
    train_steps(a, oa, x, lab, 2);
    assert_int_equal(nn_model_save(a, NULL, tu_tmp("ck.safetensors"), &e), 0);
    assert_int_equal(nn_optim_save(oa, tu_tmp("ck.optim"), &e), 0);
    train_steps(a, oa, x, lab, 2);

    assert_int_equal(nn_model_load(NULL, tu_tmp("ck.safetensors"), &b, &e),
                     0);
    assert_int_equal(nn_optim_new(b, &cfg, &ob, &e), 0);
    assert_int_equal(nn_optim_load(ob, tu_tmp("ck.optim"), &e), 0);
    assert_int_equal(nn_optim_steps(ob), 2);
    train_steps(b, ob, x, lab, 2);
    for (i = 0; i < nn_model_param_count(a); i++) {
        struct nn_tensor *va, *vb;

        nn_model_param(a, i, NULL, &va, NULL);
        nn_model_param(b, i, NULL, &vb, NULL);
        assert_memory_equal(va->data, vb->data, va->count * 4);
    }
    nn_optim_free(ob);
    cfg.kind = NN_OPTIM_SGD;
    assert_int_equal(nn_optim_new(b, &cfg, &ob, &e), 0);
    assert_int_equal(nn_optim_load(ob, tu_tmp("ck.optim"), &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "not sgd optimiser state"));
    nn_set_deterministic(false);
    nn_tensor_free(x);
    free(lab);
    nn_optim_free(oa);
    nn_optim_free(ob);
    nn_model_free(a);
    nn_model_free(b);
}

/* Grad-CAM: gradient of one class score summed over the image w.r.t. a
 * kept layer, compared with the change of that score when the layer's
 * activation is nudged (the model after the layer is a function of it). */
static void
test_explain_gradients(void **state)
{
    struct nn_model *m = new_model(small_arch, 13);
    struct nn_tensor *x = random_input(1, 3, 16, 16, 3), *sel;
    const struct nn_tensor *a, *ga, *y;
    struct nn_tensor *w0;
    struct ss_err e;
    size_t i, hw = 16 * 16;

    assert_int_equal(nn_model_keep(m, "e2.relu", &e), 0);
    assert_int_equal(nn_model_keep(m, "nope", &e), -ENOENT);
    w0 = nn_tensor_dup(nn_model_find_param(m, "e1.conv.weight"));
    assert_int_equal(nn_model_forward(m, x, NN_MODE_EXPLAIN, &e), 0);
    y = nn_model_output(m, NULL);
    sel = nn_tensor_new_like(y);
    for (i = 0; i < hw; i++)
        sel->data[hw + i] = 1.0f;       /* d(sum of class-1 logits) */
    assert_int_equal(nn_model_backward(m, NULL, sel, &e), 0);
    a = nn_model_activation(m, "e2.relu");
    ga = nn_model_activation_grad(m, "e2.relu");
    assert_non_null(a);
    assert_non_null(ga);
    assert_true(nn_tensor_same_shape(a, ga));
    assert_null(nn_model_activation_grad(m, "e1.conv"));
    /* explain mode leaves the parameters and their gradients alone */
    assert_true(max_abs_diff(w0, nn_model_find_param(m, "e1.conv.weight"))
                == 0.0);
    for (i = 0; i < ga->count; i++)
        assert_true(isfinite(ga->data[i]));
    assert_int_equal(nn_model_backward(m, NULL, sel, &e), -EINVAL);
    nn_tensor_free(sel);
    nn_tensor_free(w0);
    nn_tensor_free(x);
    nn_model_free(m);
}

/* The inference memory bound on a 512 x 512 tile with the benchmark's
 * U-Net (4 levels, 16..128 channels) and 2 threads (the scanner PC's
 * cores): the engine's peak (weights, planned activations, band scratch;
 * not the caller's input tensor) at most twice the weights plus the
 * largest "pair": the biggest inputs-plus-output of one layer (a
 * concatenation counts as the input of its consumer).  Each further
 * thread adds its band scratch, about 0.35 MiB here. */
static void
test_inference_memory_bound(void **state)
{
    char *arch = nn_unet_arch(4, 16, 3, 3);
    struct nn_model *m = new_model(arch, 1);
    struct nn_tensor *x = random_input(1, 3, 512, 512, 1);
    size_t before, peak, weights = 0, pair = 0, in_bytes;
    struct ss_err e;
    int i, j;

    nn_set_threads(2);
    nn__scratch_release();
    for (i = 0; i < nn_model_param_count(m); i++) {
        struct nn_tensor *v;

        nn_model_param(m, i, NULL, &v, NULL);
        weights += v->count * 4;
    }
    nn_mem_stats(&before, NULL);
    nn_mem_reset_peak();
    assert_int_equal(nn_model_forward(m, x, NN_MODE_INFER, &e), 0);
    nn_mem_stats(NULL, &peak);
    for (i = 0; i < m->n_nodes; i++) {
        const struct nn__node *nd = &m->nodes[i];
        const int *o = m->vals[nd->out].shape;

        if (nd->op == NN__CONCAT)       /* only a view: its consumer's */
            continue;                   /* input is the pair member */
        in_bytes = 0;
        for (j = 0; j < nd->n_in; j++) {
            const int *s = m->vals[nd->in[j]].shape;

            in_bytes += (size_t)s[0] * s[1] * s[2] * s[3] * 4;
        }
        in_bytes += (size_t)o[0] * o[1] * o[2] * o[3] * 4;
        if (in_bytes > pair)
            pair = in_bytes;
    }
    peak = peak - before + weights;
    print_message("# weights %.2f MiB, largest pair %.2f MiB, peak %.2f MiB"
                  " (arena %.2f MiB), bound %.2f MiB\n", weights / 1048576.0,
                  pair / 1048576.0, peak / 1048576.0,
                  m->arena_bytes / 1048576.0,
                  (2 * weights + pair) / 1048576.0);
    assert_true(peak <= 2 * weights + pair);
    nn_model_release_memory(m);
    nn_mem_stats(&peak, NULL);
    assert_true(peak <= before);
    nn_set_threads(0);
    nn_tensor_free(x);
    nn_model_free(m);
    free(arch);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_safetensors_dtypes),
        cmocka_unit_test(test_broken_model_files),
        cmocka_unit_test(test_non_finite_weights_refused),
        cmocka_unit_test(test_weights_must_fit_the_architecture),
        cmocka_unit_test(test_architecture_errors),
        cmocka_unit_test(test_input_size_errors_name_the_layer),
        cmocka_unit_test(test_planned_inference_equals_plain_path),
        cmocka_unit_test(test_deterministic_across_thread_counts),
        cmocka_unit_test(test_training_learns),
        cmocka_unit_test(test_optimiser_rules),
        cmocka_unit_test(test_resume_equals_uninterrupted),
        cmocka_unit_test(test_explain_gradients),
        cmocka_unit_test(test_inference_memory_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
