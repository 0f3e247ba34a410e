/* SPDX-License-Identifier: MIT */
/*
 * Benchmark of the CNN engine: OpenBLAS's sgemm rate on this machine, the
 * engine's inference throughput and training-step time on a U-Net, and
 * the engine's GFLOP/s against the sgemm rate.  bench/nn.sh runs it beside
 * PyTorch on the same architecture, tile, batch and thread count and
 * prints the ratios.
 *
 *   bench_nn [--arch FILE] [--tile N] [--batch N] [--train-batch N]
 *            [--threads N] [--iters N] [--deterministic] [--print-arch]
 *
 * Without --arch it uses nn_unet_arch(4, 16, 3, 3): 4 levels, 16..128
 * channels, batch norm, 3 classes (tools/nn/nnjson.py unet() is the same).
 * Prints one "key value" line per measurement; times are the best of
 * --iters runs (wall clock, and CPU time of all threads).  --print-arch
 * prints the architecture JSON and exits (bench/nn.sh feeds it to
 * PyTorch).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/rng.h"
#include "common/util.h"
#include "worker/nn/nn.h"

struct opts {
    const char *arch;
    int tile, batch, train_batch, threads, iters;
    bool det, print_arch;
};

/* The fastest run: on a shared machine the other runs measure the other
 * processes as much as the engine. */
static double
best(const double *v, int n)
{
    double b = v[0];
    int i;

    for (i = 1; i < n; i++)
        if (v[i] < b)
            b = v[i];
    return b;
}

/* OpenBLAS sgemm GFLOP/s on n x n matrices with the given threads. */
static double
sgemm_rate(int n, int threads)
{
    float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4);
    float *c = calloc((size_t)n * n, 4);
    double t[5], t0;
    int i;

    for (i = 0; i < n * n; i++) {
        a[i] = (float)(i % 13) * 0.1f;
        b[i] = (float)(i % 7) * 0.1f;
    }
    openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n,
                b, n, 0, c, n);
    for (i = 0; i < 5; i++) {
        t0 = util_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a,
                    n, b, n, 0, c, n);
        t[i] = util_now_ms() - t0;
    }
    openblas_set_num_threads(1);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / (best(t, 5) * 1e6);
}

static void
fill(struct nn_tensor *t, uint64_t key)
{
    struct rng r;
    size_t i;

    rng_init(&r, key);
    for (i = 0; i < t->count; i++)
        t->data[i] = (float)rng_gauss(&r);
}

/* Process CPU time (all threads) in ms. */
static double
cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
bench_infer(struct nn_model *m, const struct opts *o, double *ms,
            double *cpu)
{
    struct nn_tensor *x = nn_tensor_new4(o->batch, 3, o->tile, o->tile);
    double t[64], c[64], t0, c0;
    struct ss_err e;
    int i;

    fill(x, 1);
    if (nn_model_forward(m, x, NN_MODE_INFER, &e) < 0) {
        fprintf(stderr, "bench_nn: %s\n", e.msg);
        return -1;
    }
    for (i = 0; i < o->iters; i++) {
        t0 = util_now_ms();
        c0 = cpu_ms();
        nn_model_forward(m, x, NN_MODE_INFER, &e);
        t[i] = util_now_ms() - t0;
        c[i] = cpu_ms() - c0;
    }
    *ms = best(t, o->iters);
    *cpu = best(c, o->iters);
    nn_tensor_free(x);
    return 0;
}

static int
train_step(struct nn_model *m, struct nn_optim *opt,
           const struct nn_tensor *x, const int32_t *labels,
           struct ss_err *e)
{
    const struct nn_tensor *y;
    struct nn_tensor *g;
    double loss;
    int rc;

    if ((rc = nn_model_forward(m, x, NN_MODE_TRAIN, e)) < 0)
        return rc;
    y = nn_model_output(m, NULL);
    g = nn_tensor_new_like(y);
    rc = nn_loss_cross_entropy(y, labels, NULL, NN_IGNORE_NONE, &loss, g, e);
    nn_model_zero_grad(m);
    if (rc == 0)
        rc = nn_model_backward(m, NULL, g, e);
    if (rc == 0)
        rc = nn_optim_step(opt, e);
    nn_tensor_free(g);
    return rc;
}

static int
bench_train(struct nn_model *m, const struct opts *o, double *ms,
            double *cpu)
{
    int n = o->train_batch, i;
    struct nn_tensor *x = nn_tensor_new4(n, 3, o->tile, o->tile);
    int32_t *lab = malloc(sizeof(int32_t) * n * o->tile * o->tile);
    struct nn_optim_cfg cfg;
    struct nn_optim *opt;
    double t[64], c[64], t0, c0;
    struct ss_err e;

    fill(x, 2);
    for (i = 0; i < n * o->tile * o->tile; i++)
        lab[i] = (i / 7) % 3;
    nn_optim_cfg_default(&cfg, NN_OPTIM_ADAM);
    if (nn_optim_new(m, &cfg, &opt, &e) < 0 ||
        train_step(m, opt, x, lab, &e) < 0) {
        fprintf(stderr, "bench_nn: %s\n", e.msg);
        return -1;
    }
    for (i = 0; i < o->iters; i++) {
        t0 = util_now_ms();
        c0 = cpu_ms();
        train_step(m, opt, x, lab, &e);
        t[i] = util_now_ms() - t0;
        c[i] = cpu_ms() - c0;
    }
    *ms = best(t, o->iters);
    *cpu = best(c, o->iters);
    nn_optim_free(opt);
    nn_tensor_free(x);
    free(lab);
    return 0;
}

static int
parse(int argc, char **argv, struct opts *o)
{
    int i;

    *o = (struct opts){ NULL, 512, 1, 2, 2, 5, false, false };
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--deterministic")) {
            o->det = true;
            continue;
        }
        if (!strcmp(a, "--print-arch")) {
            o->print_arch = true;
            continue;
        }
        if (!v)
            return -1;
        if (!strcmp(a, "--arch"))
            o->arch = v;
        else if (!strcmp(a, "--tile"))
            o->tile = atoi(v);
        else if (!strcmp(a, "--batch"))
            o->batch = atoi(v);
        else if (!strcmp(a, "--train-batch"))
            o->train_batch = atoi(v);
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--iters"))
            o->iters = atoi(v);
        else
            return -1;
        i++;
    }
    if (o->iters < 1 || o->iters > 64 || o->tile < 16 || o->batch < 1 ||
        o->train_batch < 1)
        return -1;
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct nn_model *m;
    struct ss_err e;
    char *arch = NULL;
    size_t len;
    double inf_ms, train_ms, inf_cpu, train_cpu, macs, sg1, sgn;

    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: bench_nn [--arch FILE] [--tile N] [--batch N]"
                " [--train-batch N] [--threads N] [--iters N]"
                " [--deterministic] [--print-arch]\n");
        return 2;
    }
    if (o.arch ? util_read_file(o.arch, &arch, &len, &e) < 0
               : !(arch = nn_unet_arch(4, 16, 3, 3))) {
        fprintf(stderr, "bench_nn: %s\n", e.msg);
        return 1;
    }
    if (o.print_arch) {
        fputs(arch, stdout);
        free(arch);
        return 0;
    }
    if (nn_model_new(arch, 1, &m, &e) < 0) {
        fprintf(stderr, "bench_nn: %s\n", e.msg);
        return 1;
    }
    o.threads = nn_set_threads(o.threads);
    nn_set_deterministic(o.det);
    sg1 = sgemm_rate(1024, 1);
    sgn = sgemm_rate(1024, o.threads);
    macs = nn_model_macs(m, o.tile, o.tile);
    printf("threads %d\ntile %d\nbatch %d\ntrain_batch %d\n", o.threads,
           o.tile, o.batch, o.train_batch);
    printf("params %zu\ngflop_per_image %.3f\n", nn_model_trainable_count(m),
           2 * macs / 1e9);
    printf("sgemm_gflops_1thread %.1f\nsgemm_gflops %.1f\n", sg1, sgn);
    if (bench_infer(m, &o, &inf_ms, &inf_cpu) < 0 ||
        bench_train(m, &o, &train_ms, &train_cpu) < 0)
        return 1;
    printf("infer_cpu_ms %.2f\ntrain_step_cpu_ms %.2f\n", inf_cpu,
           train_cpu);
    printf("infer_ms %.2f\ninfer_images_per_s %.3f\ninfer_gflops %.1f\n",
           inf_ms, o.batch * 1000.0 / inf_ms,
           2 * macs * o.batch / (inf_ms * 1e6));
    printf("train_step_ms %.2f\ntrain_gflops %.1f\n", train_ms,
           3 * 2 * macs * o.train_batch / (train_ms * 1e6));
    printf("infer_vs_sgemm %.3f\n", 2 * macs * o.batch / (inf_ms * 1e6) /
           sgn);
    nn_model_free(m);
    free(arch);
    return 0;
}
