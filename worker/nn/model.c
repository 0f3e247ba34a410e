/* SPDX-License-Identifier: MIT */
/*
 * Models: creation, loading and saving, and the forward and backward
 * passes over the graph of nodes (layers) and values (activations).
 *
 * Inference plans memory: each activation is freed right after its last
 * consumer ran; a convolution followed by batch norm and an activation is
 * one fused step (batch norm becomes a per-channel scale and shift in the
 * GEMM epilogue, so no folded copy of the weights is held); element-wise
 * layers whose input has no other consumer work in place; a concatenation
 * that only convolutions consume is never materialised (the convolutions
 * read the parts' channel planes directly).  Training keeps every
 * activation for backward.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/util.h"
#include "worker/nn/nn_internal.h"

/* ---- state --------------------------------------------------------- */

/* Forgets what the last forward and backward passes left (the memory
 * stays in the arena for the next pass). */
static void
clear_pass(struct nn_model *m)
{
    int i;

    for (i = 0; i < m->n_vals; i++) {
        m->vals[i].t = m->vals[i].g = NULL;
        m->vals[i].borrowed = false;
    }
    m->have_forward = false;
    m->did_backward = false;
}

void
nn_model_free(struct nn_model *m)
{
    int i;

    if (!m)
        return;
    clear_pass(m);
    nn__plan_free(m);
    for (i = 0; i < m->n_params; i++) {
        free(m->pnames[i]);
        nn_tensor_free(m->pvals[i]);
        nn_tensor_free(m->pgrads[i]);
    }
    for (i = 0; i < m->n_nodes; i++) {
        free(m->nodes[i].name);
        free(m->nodes[i].in);
    }
    for (i = 0; i < m->n_vals; i++)
        free(m->vals[i].name);
    free(m->pnames);
    free(m->pvals);
    free(m->pgrads);
    free(m->pgslot);
    free(m->nodes);
    free(m->vals);
    free(m->outputs);
    free(m->arch_json);
    free(m->meta_json);
    free(m->name);
    free(m);
}

void
nn_model_release_memory(struct nn_model *m)
{
    clear_pass(m);
    nn__plan_free(m);
    nn__scratch_release();
}

/* ---- planning ------------------------------------------------------ */

static int
single_consumer(const struct nn_model *m, int vid)
{
    int i, j, found = -1;

    for (i = 0; i < m->n_nodes; i++)
        for (j = 0; j < m->nodes[i].n_in; j++)
            if (m->nodes[i].in[j] == vid) {
                if (found >= 0)
                    return -1;
                found = i;
            }
    return found;
}

static bool
pinned(const struct nn__value *v)
{
    return v->keep || v->output;
}

/* Conv -> [batch norm] -> [relu | leaky relu] chains become one step. */
static void
plan_fusion(struct nn_model *m, int i)
{
    struct nn__node *nd = &m->nodes[i];
    int j, v = nd->out;

    nd->fuse_bn = -1;
    nd->fuse_act = NN__ACT_NONE;
    nd->fuse_out = nd->out;
    if (nd->op != NN__CONV)
        return;
    j = pinned(&m->vals[v]) ? -1 : single_consumer(m, v);
    if (j >= 0 && m->nodes[j].op == NN__BN) {
        nd->fuse_bn = j;
        m->nodes[j].skip_infer = true;
        nd->fuse_out = v = m->nodes[j].out;
        j = pinned(&m->vals[v]) ? -1 : single_consumer(m, v);
    }
    if (j >= 0 && (m->nodes[j].op == NN__RELU ||
                   m->nodes[j].op == NN__LEAKY)) {
        nd->fuse_act = m->nodes[j].op == NN__RELU ? NN__ACT_RELU
                                                  : NN__ACT_LEAKY;
        nd->fuse_slope = m->nodes[j].slope;
        m->nodes[j].skip_infer = true;
        nd->fuse_out = m->nodes[j].out;
    }
}

/* Batch norm -> [relu | leaky relu with slope >= 0] becomes one step in
 * every mode (unless a convolution already took the batch norm in). */
static void
plan_bn_act(struct nn_model *m, int i)
{
    struct nn__node *nd = &m->nodes[i];
    int j;

    nd->train_act = NN__ACT_NONE;
    nd->train_out = nd->out;
    if (nd->op != NN__BN)
        return;
    j = pinned(&m->vals[nd->out]) ? -1 : single_consumer(m, nd->out);
    if (j < 0 || !(m->nodes[j].op == NN__RELU ||
                   (m->nodes[j].op == NN__LEAKY && m->nodes[j].slope >= 0)))
        return;
    nd->train_act = m->nodes[j].op == NN__RELU ? NN__ACT_RELU
                                               : NN__ACT_LEAKY;
    nd->train_slope = m->nodes[j].slope;
    nd->train_out = m->nodes[j].out;
    m->nodes[j].skip_train = true;
    if (!nd->skip_infer) {
        nd->fuse_out = nd->train_out;
        m->nodes[j].skip_infer = true;
    }
}

bool
nn__runs(const struct nn_model *m, int i, enum nn_mode mode)
{
    const struct nn__node *nd = &m->nodes[i];

    if (mode == NN_MODE_INFER)
        return !nd->skip_infer && !m->vals[nd->out].virt;
    return !nd->skip_train;
}

int
nn__exec_out(const struct nn_model *m, int i, enum nn_mode mode)
{
    return mode == NN_MODE_INFER ? m->nodes[i].fuse_out
                                 : m->nodes[i].train_out;
}

static void
plan_virtual_concat(struct nn_model *m, int i)
{
    struct nn__node *nd = &m->nodes[i];
    struct nn__value *v = &m->vals[nd->out];
    int a, b;

    v->virt = false;
    if (nd->op != NN__CONCAT || pinned(v) || v->n_consumers == 0)
        return;
    for (a = i + 1; a < m->n_nodes; a++)
        for (b = 0; b < m->nodes[a].n_in; b++)
            if (m->nodes[a].in[b] == nd->out && m->nodes[a].op != NN__CONV)
                return;
    v->virt = true;
}

/* Recomputes consumers, last uses, fusion and virtual concatenations;
 * run after the graph is built and whenever a layer is kept. */
static void
plan(struct nn_model *m)
{
    int i, j;

    for (i = 0; i < m->n_vals; i++) {
        m->vals[i].n_consumers = 0;
        m->vals[i].last_use = -1;
    }
    for (i = 0; i < m->n_nodes; i++) {
        m->nodes[i].skip_infer = false;
        m->nodes[i].skip_train = false;
        for (j = 0; j < m->nodes[i].n_in; j++) {
            m->vals[m->nodes[i].in[j]].n_consumers++;
            m->vals[m->nodes[i].in[j]].last_use = i;
        }
    }
    for (i = 0; i < m->n_nodes; i++)
        plan_fusion(m, i);
    for (i = 0; i < m->n_nodes; i++)
        plan_bn_act(m, i);
    for (i = 0; i < m->n_nodes; i++) {
        plan_virtual_concat(m, i);
        if (!m->vals[m->nodes[i].out].virt)
            continue;
        for (j = 0; j < m->nodes[i].n_in; j++) {
            struct nn__value *p = &m->vals[m->nodes[i].in[j]];

            if (p->last_use < m->vals[m->nodes[i].out].last_use)
                p->last_use = m->vals[m->nodes[i].out].last_use;
        }
    }
}

/* ---- creation, loading, saving ------------------------------------- */

static void
init_uniform(struct nn_tensor *t, uint64_t key, double bound)
{
    struct rng r;
    size_t i;

    rng_init(&r, key);
    for (i = 0; i < t->count; i++)
        t->data[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
}

/* PyTorch's reset_parameters(): Kaiming-uniform with a = sqrt(5), which
 * is uniform in +-1/sqrt(fan_in), for weights and biases alike. */
static void
init_params(struct nn_model *m)
{
    int i, fan_in;

    for (i = 0; i < m->n_nodes; i++) {
        struct nn__node *nd = &m->nodes[i];
        uint64_t key = rng_key(m->seed, (uint64_t)i, 0x1417, 0);

        if (nd->op == NN__CONV)
            fan_in = nd->cin * nd->kh * nd->kw;
        else if (nd->op == NN__CONVT)
            fan_in = nd->cout * nd->kh * nd->kw;
        else if (nd->op == NN__LINEAR)
            fan_in = nd->cin;
        else
            continue;
        init_uniform(nd->w, key, 1.0 / sqrt((double)fan_in));
        if (nd->b)
            init_uniform(nd->b, key + 1, 1.0 / sqrt((double)fan_in));
    }
}

static int
model_create(const char *arch_json, uint64_t seed, struct nn_model **out,
             struct ss_err *err)
{
    struct nn_model *m = calloc(1, sizeof(*m));
    int rc;

    *out = NULL;
    if (!m)
        return err_set(err, -ENOMEM, "out of memory");
    nn__init();
    m->seed = seed;
    rc = nn__arch_parse(arch_json, m, err);
    if (rc < 0) {
        nn_model_free(m);
        return rc;
    }
    plan(m);
    *out = m;
    return 0;
}

int
nn_model_new(const char *arch_json, uint64_t seed, struct nn_model **out,
             struct ss_err *err)
{
    int rc = model_create(arch_json, seed, out, err);

    if (rc == 0)
        init_params(*out);
    return rc;
}

static int
take_weights(struct nn_model *m, struct nn__st_file *f, const char *path,
             struct ss_err *err)
{
    int i, j, k;

    for (i = 0; i < m->n_params; i++) {
        struct nn_tensor *t = m->pvals[i];

        for (j = 0; j < f->n && strcmp(f->v[j].name, m->pnames[i]); j++)
            ;
        if (j == f->n)
            return err_set(err, SS_EFORMAT, "%s: tensor %s is missing", path,
                           m->pnames[i]);
        if (!nn_tensor_same_shape(t, f->v[j].t))
            return err_set(err, SS_EFORMAT, "%s: tensor %s has shape "
                           "[%d,%d,%d,%d] (rank %d), the architecture needs "
                           "[%d,%d,%d,%d] (rank %d)", path, m->pnames[i],
                           f->v[j].t->shape[0], f->v[j].t->shape[1],
                           f->v[j].t->shape[2], f->v[j].t->shape[3],
                           f->v[j].t->ndim, t->shape[0], t->shape[1],
                           t->shape[2], t->shape[3], t->ndim);
        memcpy(t->data, f->v[j].t->data, t->count * sizeof(float));
    }
    for (j = 0; j < f->n; j++) {
        const char *s = strrchr(f->v[j].name, '.');

        if (s && !strcmp(s, ".num_batches_tracked"))
            continue;
        for (k = 0; k < m->n_params && strcmp(f->v[j].name, m->pnames[k]);
             k++)
            ;
        if (k == m->n_params)
            return err_set(err, SS_EFORMAT, "%s: tensor %s is not a "
                           "parameter of this architecture", path,
                           f->v[j].name);
    }
    return 0;
}

int
nn_model_load(const char *arch_path, const char *weights_path,
              struct nn_model **out, struct ss_err *err)
{
    struct nn__st_file f;
    char *arch = NULL;
    const char *text;
    size_t len;
    int rc;

    *out = NULL;
    rc = nn__st_read(weights_path, &f, err);
    if (rc < 0)
        return rc;
    if (arch_path) {
        rc = util_read_file(arch_path, &arch, &len, err);
        text = arch;
    } else {
        text = nn__st_meta(&f, "slidescan.arch");
        if (!text)
            rc = err_set(err, SS_EFORMAT, "%s: no architecture in the file's "
                         "metadata (slidescan.arch); give the JSON file",
                         weights_path);
    }
    if (rc == 0) {
        rc = model_create(text, 0, out, err);
        if (rc < 0)
            err_prefix(err, "%s", arch_path ? arch_path : weights_path);
    }
    if (rc == 0 && (rc = take_weights(*out, &f, weights_path, err)) < 0) {
        nn_model_free(*out);
        *out = NULL;
    }
    if (rc == 0) {          /* the dropout stream continues where it was */
        text = nn__st_meta(&f, "slidescan.seed");
        (*out)->seed = text ? strtoull(text, NULL, 10) : 0;
        text = nn__st_meta(&f, "slidescan.step");
        (*out)->step = text ? strtoull(text, NULL, 10) : 0;
    }
    free(arch);
    nn__st_clear(&f);
    return rc;
}

/* The architecture text with the current meta object in it. */
static char *
arch_text(const struct nn_model *m)
{
    json_t *root = json_loads(m->arch_json, 0, NULL);
    json_t *meta = json_loads(m->meta_json, 0, NULL);
    char *s = NULL;

    if (root && meta) {
        json_object_set(root, "meta", meta);
        s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    }
    json_decref(root);
    json_decref(meta);
    return s;
}

int
nn_model_save(const struct nn_model *m, const char *arch_path,
              const char *weights_path, struct ss_err *err)
{
    const char *keys[4] = { "slidescan.arch", "slidescan.meta",
                            "slidescan.seed", "slidescan.step" };
    const char *vals[4];
    char *arch = arch_text(m), seed[32], step[32];
    int rc;

    if (!arch)
        return err_set(err, -ENOMEM, "%s: out of memory", weights_path);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)m->seed);
    snprintf(step, sizeof(step), "%llu", (unsigned long long)m->step);
    vals[0] = arch;
    vals[1] = m->meta_json;
    vals[2] = seed;
    vals[3] = step;
    rc = nn__st_write(weights_path, (const char *const *)m->pnames,
                      (const struct nn_tensor *const *)m->pvals, m->n_params,
                      keys, vals, 4, err);
    if (rc == 0 && arch_path)
        rc = util_write_durable(arch_path, arch, strlen(arch), err);
    free(arch);
    return rc;
}

const char *
nn_model_meta(const struct nn_model *m)
{
    return m->meta_json;
}

int
nn_model_set_meta(struct nn_model *m, const char *meta_json,
                  struct ss_err *err)
{
    json_t *meta = json_loads(meta_json, JSON_REJECT_DUPLICATES, NULL);
    char *s;

    if (!json_is_object(meta)) {
        json_decref(meta);
        return err_set(err, -EINVAL, "model meta: not a JSON object");
    }
    s = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(meta);
    if (!s)
        return err_set(err, -ENOMEM, "out of memory");
    free(m->meta_json);
    m->meta_json = s;
    return 0;
}

/* ---- queries ------------------------------------------------------- */

int
nn_model_input_channels(const struct nn_model *m)
{
    return m->vals[0].c;
}

const char *
nn_model_output_name(const struct nn_model *m, int i)
{
    if (i < 0 || i >= m->n_outputs)
        return NULL;
    return m->vals[m->outputs[i]].name;
}

int
nn_model_keep(struct nn_model *m, const char *name, struct ss_err *err)
{
    int vid = nn__find_value(m, name);

    if (vid < 0)
        return err_set(err, -ENOENT, "model %s: no layer or input named %s",
                       m->name, name);
    if (!m->vals[vid].keep) {
        m->vals[vid].keep = true;
        plan(m);
        m->planned = false;
    }
    return 0;
}

static int
output_vid(const struct nn_model *m, const char *name)
{
    int i;

    if (!name)
        return m->outputs[0];
    for (i = 0; i < m->n_outputs; i++)
        if (!strcmp(m->vals[m->outputs[i]].name, name))
            return m->outputs[i];
    return -1;
}

const struct nn_tensor *
nn_model_output(const struct nn_model *m, const char *name)
{
    int vid = output_vid(m, name);

    return vid >= 0 && m->have_forward ? m->vals[vid].t : NULL;
}

const struct nn_tensor *
nn_model_activation(const struct nn_model *m, const char *name)
{
    int vid = nn__find_value(m, name);

    return vid >= 0 && m->have_forward ? m->vals[vid].t : NULL;
}

const struct nn_tensor *
nn_model_activation_grad(const struct nn_model *m, const char *name)
{
    int vid = nn__find_value(m, name);

    return vid >= 0 && m->did_backward ? m->vals[vid].g : NULL;
}

int
nn__ensure_grads(struct nn_model *m)
{
    int i;

    for (i = 0; i < m->n_params; i++) {
        if (!m->pgslot[i] || m->pgrads[i])
            continue;
        m->pgrads[i] = nn_tensor_new_like(m->pvals[i]);
        if (!m->pgrads[i])
            return -ENOMEM;
        *m->pgslot[i] = m->pgrads[i];
    }
    return 0;
}

void
nn_model_zero_grad(struct nn_model *m)
{
    int i;

    nn__ensure_grads(m);
    for (i = 0; i < m->n_params; i++)
        if (m->pgrads[i])
            nn_tensor_fill(m->pgrads[i], 0.0f);
}

int
nn_model_param_count(const struct nn_model *m)
{
    return m->n_params;
}

int
nn_model_param(const struct nn_model *m, int i, const char **name,
               struct nn_tensor **value, struct nn_tensor **grad)
{
    if (i < 0 || i >= m->n_params)
        return -ENOENT;
    /* gradients are created lazily; that does not change the model */
    if (grad && nn__ensure_grads((struct nn_model *)m) < 0)
        return -ENOMEM;
    if (name)
        *name = m->pnames[i];
    if (value)
        *value = m->pvals[i];
    if (grad)
        *grad = m->pgrads[i];
    return 0;
}

struct nn_tensor *
nn_model_find_param(const struct nn_model *m, const char *name)
{
    int i;

    for (i = 0; i < m->n_params; i++)
        if (!strcmp(m->pnames[i], name))
            return m->pvals[i];
    return NULL;
}

void
nn_model_params_changed(struct nn_model *m)
{
    /* Batch norm is applied from the parameters at every inference pass
     * (scale and shift in the epilogue), so nothing is cached. */
    (void)m;
}

size_t
nn_model_trainable_count(const struct nn_model *m)
{
    size_t n = 0;
    int i;

    for (i = 0; i < m->n_params; i++)
        if (m->pgslot[i])
            n += m->pvals[i]->count;
    return n;
}

/* ---- shapes -------------------------------------------------------- */

bool
nn__needs_grad(const struct nn_model *m, int vid)
{
    return m->vals[vid].producer >= 0 || m->vals[vid].keep;
}

/* Sets every value's shape for an N x C x H x W input; checks sizes. */
static int
propagate(struct nn_model *m, const int *in_shape, struct ss_err *err)
{
    int i, rc;

    memcpy(m->vals[0].shape, in_shape, sizeof(m->vals[0].shape));
    for (i = 0; i < m->n_nodes; i++) {
        rc = nn__out_shape(m, &m->nodes[i], m->vals[m->nodes[i].out].shape,
                           err);
        if (rc < 0)
            return err_prefix(err, "model %s: layer %s", m->name,
                              m->nodes[i].name);
    }
    return 0;
}

double
nn_model_macs(const struct nn_model *m, int h, int w)
{
    struct nn_model *mm = (struct nn_model *)m;
    int in[4] = { 1, m->vals[0].c, h, w };
    double macs = 0;
    int i;

    if (propagate(mm, in, NULL) < 0)
        return 0;
    for (i = 0; i < m->n_nodes; i++) {
        const struct nn__node *nd = &m->nodes[i];
        const int *o = m->vals[nd->out].shape;
        const int *x = m->vals[nd->in[0]].shape;

        if (nd->op == NN__CONV)
            macs += (double)o[1] * o[2] * o[3] * nd->cin * nd->kh * nd->kw;
        else if (nd->op == NN__CONVT)
            macs += (double)x[1] * x[2] * x[3] * nd->cout * nd->kh * nd->kw;
        else if (nd->op == NN__LINEAR)
            macs += (double)nd->cin * nd->cout;
    }
    return macs;
}

/* ---- forward ------------------------------------------------------- */

void
nn__planes(const struct nn_model *m, int vid, int n, const float **planes)
{
    const struct nn__value *v = &m->vals[vid];
    const struct nn__node *cat;
    int c, i, k = 0;

    if (!v->virt || v->t) {
        size_t hw = (size_t)v->shape[2] * v->shape[3];

        for (c = 0; c < v->c; c++)
            planes[c] = v->t->data + ((size_t)n * v->c + c) * hw;
        return;
    }
    cat = &m->nodes[v->producer];
    for (i = 0; i < cat->n_in; i++) {
        nn__planes(m, cat->in[i], n, planes + k);
        k += m->vals[cat->in[i]].c;
    }
}

struct nn_tensor *
nn__grad_of(struct nn_model *m, int vid)
{
    struct nn__value *v = &m->vals[vid];

    if (!v->g && v->gblk >= 0) {
        v->g = &v->tg;
        memset(v->g->data, 0, v->g->count * sizeof(float));
    }
    return v->g;
}

/* Scale and shift of a fused conv + batch norm step, into buf[2 * C]. */
static void
fused_epilogue(const struct nn_model *m, const struct nn__node *nd,
               float *buf, struct nn__epilogue *ep)
{
    int c;

    ep->scale = NULL;
    ep->shift = nd->b ? nd->b->data : NULL;
    ep->act = nd->fuse_act;
    ep->slope = (float)nd->fuse_slope;
    if (nd->fuse_bn < 0)
        return;
    nn__bn_affine(&m->nodes[nd->fuse_bn], buf, buf + nd->cout);
    for (c = 0; nd->b && c < nd->cout; c++)
        buf[nd->cout + c] += buf[c] * nd->b->data[c];
    ep->scale = buf;
    ep->shift = buf + nd->cout;
}

static int
run_node(struct nn_model *m, struct nn__node *nd, enum nn_mode mode,
         struct ss_err *err)
{
    bool infer = mode == NN_MODE_INFER;
    int vid = nn__exec_out(m, (int)(nd - m->nodes), mode);
    struct nn__epilogue ep = { NULL, NULL, NN__ACT_NONE, 0.0f };
    struct nn_tensor *y = &m->vals[vid].tv;
    float *buf = NULL;
    int rc;

    if (nd->op == NN__CONV) {
        if (infer) {
            buf = malloc(2 * sizeof(float) * (size_t)nd->cout);
            if (!buf)
                return err_set(err, -ENOMEM, "out of memory");
            fused_epilogue(m, nd, buf, &ep);
        } else {
            ep.shift = nd->b ? nd->b->data : NULL;
        }
        rc = nn__conv_forward(m, nd, y, &ep, err);
        free(buf);
    } else if (nd->op == NN__CONVT) {
        rc = nn__convt_forward(m, nd, y, err);
    } else {
        rc = nn__layer_forward(m, nd, y, mode, err);
    }
    if (rc < 0)
        return rc;
    if (infer && nn__in_place(m, (int)(nd - m->nodes)))
        m->vals[nd->in[0]].t = NULL;    /* overwritten */
    m->vals[vid].t = y;
    return 0;
}

/* Inference: forgets what no later layer reads. */
static void
release_after(struct nn_model *m, int i)
{
    int v;

    for (v = 0; v < m->n_vals; v++) {
        struct nn__value *val = &m->vals[v];

        if (val->last_use == i && !pinned(val) && !val->borrowed)
            val->t = NULL;              /* its block may be reused now */
    }
}

static int
set_input(struct nn_model *m, const struct nn_tensor *x, enum nn_mode mode,
          struct ss_err *err)
{
    struct nn__value *v = &m->vals[0];

    if (mode == NN_MODE_INFER && !v->keep) {
        v->t = (struct nn_tensor *)x;
        v->borrowed = true;
        return 0;
    }
    v->t = &v->tv;
    memcpy(v->t->data, x->data, x->count * sizeof(float));
    return 0;
}

static int
check_input(struct nn_model *m, const struct nn_tensor *x,
            struct ss_err *err)
{
    if (x->ndim != 4 || x->shape[1] != m->vals[0].c)
        return err_set(err, -EINVAL, "model %s: input must be N x %d x H x "
                       "W, got rank %d with %d channels", m->name,
                       m->vals[0].c, x->ndim, x->shape[1]);
    /* LIMIT: nn_model_forward() feeds one input; an architecture with
     * several inputs loads but refuses to run, with this message. */
    if (m->n_inputs != 1)
        return err_set(err, -EINVAL, "model %s: has %d inputs; "
                       "nn_model_forward() feeds one", m->name, m->n_inputs);
    return 0;
}

int
nn_model_forward(struct nn_model *m, const struct nn_tensor *x,
                 enum nn_mode mode, struct ss_err *err)
{
    int i, rc;

    clear_pass(m);
    m->mode = mode;
    rc = check_input(m, x, err);
    if (rc == 0)
        rc = propagate(m, x->shape, err);
    if (rc == 0)
        rc = nn__plan_pass(m, x->shape, mode, err);
    if (rc == 0)
        rc = set_input(m, x, mode, err);
    if (rc == 0 && mode == NN_MODE_TRAIN && nn__ensure_grads(m) < 0)
        rc = err_set(err, -ENOMEM, "model %s: out of memory for gradients",
                     m->name);
    if (mode == NN_MODE_TRAIN)
        m->step++;
    for (i = 0; rc == 0 && i < m->n_nodes; i++) {
        struct nn__node *nd = &m->nodes[i];

        double t0 = util_now_ms();

        if (!nn__runs(m, i, mode))
            continue;
        rc = run_node(m, nd, mode, err);
        log_debug("nn", "forward layer=%s ms=%.2f", nd->name,
                  util_now_ms() - t0);
        if (rc < 0)
            err_prefix(err, "model %s: layer %s", m->name, nd->name);
        else if (mode == NN_MODE_INFER)
            release_after(m, i);
    }
    if (rc < 0) {
        clear_pass(m);
        return rc;
    }
    m->have_forward = true;
    return 0;
}

/* ---- backward ------------------------------------------------------ */

int
nn_model_backward(struct nn_model *m, const char *output,
                  const struct nn_tensor *grad, struct ss_err *err)
{
    int vid = output_vid(m, output), i, rc = 0;
    struct nn__value *v;

    /* LIMIT: one backward pass per forward pass, from one output; a loss
     * over two outputs at once is not supported (a second call is refused
     * here). */
    if (!m->have_forward || m->mode == NN_MODE_INFER || m->did_backward)
        return err_set(err, -EINVAL, "model %s: backward needs a fresh "
                       "training or explain forward pass", m->name);
    if (vid < 0)
        return err_set(err, -EINVAL, "model %s: no output %s", m->name,
                       output);
    v = &m->vals[vid];
    if (grad->ndim != 4 || memcmp(grad->shape, v->shape, sizeof(v->shape)))
        return err_set(err, -EINVAL, "model %s: gradient shape differs from "
                       "output %s", m->name, v->name);
    if (!nn__grad_of(m, vid))
        return err_set(err, -ENOMEM, "out of memory");
    memcpy(v->g->data, grad->data, grad->count * sizeof(float));

    for (i = m->n_nodes - 1; rc == 0 && i >= 0; i--) {
        struct nn__node *nd = &m->nodes[i];
        bool pg = m->mode == NN_MODE_TRAIN && !nd->frozen;
        double t0 = util_now_ms();
        int gid = nn__exec_out(m, i, m->mode);

        if (!nn__runs(m, i, m->mode) || !m->vals[gid].g)
            continue;
        if (nd->op == NN__CONV)
            rc = nn__conv_backward(m, nd, pg, err);
        else if (nd->op == NN__CONVT)
            rc = nn__convt_backward(m, nd, pg, err);
        else
            rc = nn__layer_backward(m, nd, m->mode, err);
        if (rc < 0)
            err_prefix(err, "model %s: backward: layer %s", m->name,
                       nd->name);
        log_debug("nn", "backward layer=%s ms=%.2f", nd->name,
                  util_now_ms() - t0);
        if (!m->vals[gid].keep)
            m->vals[gid].g = NULL;      /* its block may be reused now */
    }
    m->did_backward = true;
    return rc;
}
