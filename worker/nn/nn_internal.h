/* SPDX-License-Identifier: MIT */
/*
 * Folder-internal declarations of the CNN engine: the counting allocator,
 * the thread pool, safetensors reading and writing, the model graph (nodes
 * and values) and the layer kernels that model.c dispatches to.  Nothing
 * here is used outside worker/nn/.
 */
#ifndef SS_WORKER_NN_INTERNAL_H
#define SS_WORKER_NN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/nn/nn.h"

/* ---- memory -------------------------------------------------------- */

/* 64-byte aligned, counted in nn_mem_stats(); not zeroed.  NULL on OOM. */
void *nn__alloc(size_t bytes);
void nn__free(void *p);

/* A tensor whose data is left uninitialised (overwritten at once). */
struct nn_tensor *nn__tensor_raw(int ndim, const int *shape);
struct nn_tensor *nn__tensor_raw4(int n, int c, int h, int w);

/* ---- threads -------------------------------------------------------- */

/* Sets OpenBLAS to one thread (the engine splits work itself); once per
 * process, from model creation and every parallel call. */
void nn__init(void);

/* Threads in force (resolved, >= 1) and the determinism setting. */
int nn__threads(void);
bool nn__deterministic(void);

/*
 * Runs fn(ctx, task, thread) for task = 0..ntasks-1 on the pool; thread is
 * 0..nn__threads()-1 and identifies per-thread scratch.  Tasks must write
 * disjoint memory.  Returns when all are done.  Calls are serialised.
 */
typedef void (*nn__task_fn)(void *ctx, int task, int thread);
void nn__parallel(int ntasks, nn__task_fn fn, void *ctx);

/*
 * Per-thread scratch of at least bytes (counted), kept between calls and
 * grown on demand; NULL on OOM.  Valid inside a task for that thread.
 * nn__scratch_release() returns it all (after inference, for the
 * memory bound).
 */
float *nn__scratch(int thread, size_t bytes);
void nn__scratch_release(void);

/* ---- safetensors --------------------------------------------------- */

struct nn__st_entry {
    char *name;
    struct nn_tensor *t;            /* converted to float32 */
};

struct nn__st_file {
    struct nn__st_entry *v;
    int n;
    char **meta_keys, **meta_vals;  /* __metadata__ */
    int n_meta;
};

int nn__st_read(const char *path, struct nn__st_file *f, struct ss_err *err);
void nn__st_clear(struct nn__st_file *f);
const char *nn__st_meta(const struct nn__st_file *f, const char *key);

/* Writes tensors (borrowed) as F32 with metadata pairs, durably. */
int nn__st_write(const char *path, const char *const *names,
                 const struct nn_tensor *const *tensors, int n,
                 const char *const *meta_keys, const char *const *meta_vals,
                 int n_meta, struct ss_err *err);

/* ---- the graph ----------------------------------------------------- */

enum nn__op {
    NN__CONV,
    NN__CONVT,
    NN__BN,
    NN__RELU,
    NN__LEAKY,
    NN__MAXPOOL,
    NN__UPSAMPLE,
    NN__CONCAT,
    NN__ADD,
    NN__DROPOUT,
    NN__DROPOUT2D,
    NN__GAP,
    NN__LINEAR,
    NN__SOFTMAX,
};

enum nn__act {
    NN__ACT_NONE,
    NN__ACT_RELU,
    NN__ACT_LEAKY,
};

/* One layer. */
struct nn__node {
    char *name;
    enum nn__op op;
    int *in;                        /* value ids */
    int n_in;
    int out;                        /* value id */
    bool frozen;

    /* conv, convt, pooling */
    int cin, cout;
    int kh, kw, sh, sw, ph, pw, dh, dw, oph, opw;
    bool has_bias;
    bool ceil_mode;
    /* bn */
    double eps, momentum;
    bool affine;
    /* leaky, dropout, upsample */
    double slope, p;
    int scale;
    bool align_corners;
    int in_features;

    /* parameters (NULL when absent) and their gradients */
    struct nn_tensor *w, *b, *rmean, *rvar;
    struct nn_tensor *gw, *gb;

    /* state from the forward pass that backward needs, in the arena */
    float *bn_mean, *bn_invstd;     /* [C], batch statistics */
    int32_t *argmax;                /* maxpool, per output element */
    uint8_t *mask;                  /* dropout */
    int ablk;                       /* arena block of the above, or -1 */

    /* inference fusion: this conv also applies the following batch norm
     * and activation and writes fuse_out; those nodes are skipped */
    int fuse_bn;                    /* node index or -1 */
    enum nn__act fuse_act;
    double fuse_slope;
    int fuse_out;                   /* value id written */
    bool skip_infer;

    /* training and explain fusion: this batch norm also applies the
     * following activation, writing (and back-propagating from) train_out;
     * the activation node is skipped */
    enum nn__act train_act;
    double train_slope;
    int train_out;
    bool skip_train;
};

/* One activation: a model input or a layer output. */
struct nn__value {
    char *name;
    int c;                          /* channels, known from the graph */
    int producer;                   /* node index, -1 for an input */
    int n_consumers;
    int last_use;                   /* last consuming node (inference) */
    bool keep, output;
    bool borrowed;                  /* t is the caller's input */
    bool virt;                      /* inference concat kept as parts */
    int shape[4];                   /* NCHW of the last forward pass */
    struct nn_tensor *t;            /* &tv while valid, else NULL */
    struct nn_tensor *g;            /* &tg while valid, else NULL */
    struct nn_tensor tv, tg;        /* views into the arena */
    int blk, gblk;                  /* arena blocks, or -1 */
};

/* A piece of the arena with the pass times during which it is in use:
 * forward step i is time i, backward of node i is time 2n - 1 - i. */
struct nn__block {
    size_t bytes, off;
    int start, end;
};

struct nn_model {
    char *arch_json;                /* canonical text, saved with weights */
    char *meta_json;
    char *name;
    struct nn__node *nodes;
    int n_nodes;
    struct nn__value *vals;
    int n_vals;
    int n_inputs;
    int *outputs;                   /* value ids */
    int n_outputs;

    /* parameter table in architecture order */
    char **pnames;
    struct nn_tensor **pvals, **pgrads;
    struct nn_tensor ***pgslot;     /* the node's gw/gb field, or NULL
                                       for buffers and frozen layers */
    int n_params;

    /* memory plan of the last pass: every activation, gradient and
     * layer state lives in one arena at a planned offset */
    struct nn__block *blocks;
    int n_blocks;
    bool planned;
    enum nn_mode plan_mode;
    int plan_shape[4];
    char *arena;
    size_t arena_bytes;
    float *partial;                 /* weight-gradient partial sums */
    size_t partial_bytes;

    uint64_t seed;
    uint64_t step;                  /* training forward passes */
    enum nn_mode mode;              /* of the last forward pass */
    bool have_forward, did_backward;
    bool fused;                     /* fusion plan made */
};

/* Creates the parameter gradients (zeroed) if not there yet. */
int nn__ensure_grads(struct nn_model *m);

/* Value id of a layer or input name, -1 when unknown. */
int nn__find_value(const struct nn_model *m, const char *name);

/* Parses the architecture and creates the parameters (zeroed). */
int nn__arch_parse(const char *json, struct nn_model *m, struct ss_err *err);

/* Plans the arena for a pass of this mode on an input of this shape
 * (value shapes already propagated), allocates it, and points every
 * value, gradient and layer state at its place.  Reuses the last plan
 * when mode and shape repeat. */
int nn__plan_pass(struct nn_model *m, const int *in_shape, enum nn_mode mode,
                  struct ss_err *err);

/* Frees the arena and the plan. */
void nn__plan_free(struct nn_model *m);

/* True when node i's output reuses its input's memory (inference). */
bool nn__in_place(const struct nn_model *m, int i);

/* The model's weight-gradient scratch of at least bytes, kept between
 * calls; NULL on OOM. */
float *nn__partial(struct nn_model *m, size_t bytes);

/* Per-image accessor of a value's channel planes (virtual concats too). */
void nn__planes(const struct nn_model *m, int vid, int n,
                const float **planes);

/* Whether node i runs in this mode, and the value it writes (its own
 * output, or the last output of the fused step it heads). */
bool nn__runs(const struct nn_model *m, int i, enum nn_mode mode);
int nn__exec_out(const struct nn_model *m, int i, enum nn_mode mode);

/* ---- element-wise primitives (kernels.c) ---------------------------- */

/* y = act(x * s + b); y may be x. */
void nn__affine_act(float *y, const float *x, size_t n, float s, float b,
                    enum nn__act act, float slope);
/* dx += (y > 0 ? dy : slope * dy) */
void nn__act_grad(float *dx, const float *dy, const float *y, size_t n,
                  float slope);
/* y += x */
void nn__add(float *y, const float *x, size_t n);
double nn__sum(const float *x, size_t n);
double nn__sum_sqdev(const float *x, size_t n, float mean);
/* Batch-norm backward pieces; y (the activation's output) may be NULL
 * when no activation is fused, else dy is masked by y > 0. */
void nn__bn_grad_sums(const float *x, const float *dy, const float *y,
                      float slope, size_t n, float mean, float invstd,
                      double *sdy, double *sdyx);
void nn__bn_grad_dx(float *dx, const float *x, const float *dy,
                    const float *y, float slope, size_t n, float mean,
                    float invstd, float k1, float k2, float k3);
/* dx += masked(dy) * s */
void nn__scale_grad(float *dx, const float *dy, const float *y, float slope,
                    size_t n, float s);

/* ---- kernels (conv.c, layers.c) ------------------------------------ */

struct nn__epilogue {
    const float *scale;             /* per output channel, NULL: 1 */
    const float *shift;             /* per output channel, NULL: 0 */
    enum nn__act act;
    float slope;
};

/* Bytes of band buffers per thread (256 KiB; measured best of 128, 256
 * and 512 KiB on the U-Net benchmark). */
extern size_t nn__band_bytes;

/* Output size of a convolution-like window along one axis (<= 0 bad). */
int nn__conv_out(int in, int k, int s, int p, int d);

int nn__conv_forward(struct nn_model *m, struct nn__node *nd,
                     struct nn_tensor *y, const struct nn__epilogue *ep,
                     struct ss_err *err);
int nn__conv_backward(struct nn_model *m, struct nn__node *nd,
                      bool param_grads, struct ss_err *err);
int nn__convt_forward(struct nn_model *m, struct nn__node *nd,
                      struct nn_tensor *y, struct ss_err *err);
int nn__convt_backward(struct nn_model *m, struct nn__node *nd,
                       bool param_grads, struct ss_err *err);

/* The layers in layers.c follow one pattern: forward reads the input
 * values' tensors and writes y; backward reads the output gradient and
 * adds into the input values' gradients (allocated on demand). */
int nn__layer_forward(struct nn_model *m, struct nn__node *nd,
                      struct nn_tensor *y, enum nn_mode mode,
                      struct ss_err *err);
int nn__layer_backward(struct nn_model *m, struct nn__node *nd,
                       enum nn_mode mode, struct ss_err *err);

/* Output shape of a node from its inputs' value shapes (checks sizes). */
int nn__out_shape(const struct nn_model *m, const struct nn__node *nd,
                  int shape[4], struct ss_err *err);

/* True when backward must produce the gradient of value vid. */
bool nn__needs_grad(const struct nn_model *m, int vid);

/* The gradient tensor of value vid, created zeroed with the value's
 * shape on first use; NULL on OOM. */
struct nn_tensor *nn__grad_of(struct nn_model *m, int vid);

/* BN inference transform: y = x * scale + shift per channel. */
void nn__bn_affine(const struct nn__node *bn, float *scale, float *shift);

#endif
