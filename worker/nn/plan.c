/* SPDX-License-Identifier: MIT */
/*
 * The memory plan of a pass.  Every activation, activation gradient and
 * per-layer state (batch statistics, max-pool indices, dropout masks) of
 * one forward or backward pass gets a block with the times it is in use;
 * blocks whose lifetimes overlap must not overlap in memory.  Blocks are
 * placed largest first, each at the lowest offset that clears the blocks
 * already placed in its lifetime (greedy by size), in one arena per model.
 *
 * Why: allocating the large activations afresh in every pass made the
 * kernel map and zero their pages every time (measured: more time in
 * page faults than in the element-wise layers themselves), and a planned
 * arena also makes the inference memory bound exact: the arena is the
 * peak of the activations that are live at the same time.
 *
 * Lifetimes: forward step i is time i, the backward of node i is time
 * 2n - 1 - i, the end of the pass is 2n.  In inference an activation lives
 * until its last consumer ran (outputs and kept layers until the end), and
 * an element-wise layer whose input has no other reader writes in place.
 * In training everything forward computes lives to the end; a gradient
 * lives from the backward of its last consumer to the backward of its
 * producer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn_internal.h"

#define BLOCK_ALIGN 64

static size_t
count4(const int *s)
{
    return (size_t)s[0] * s[1] * s[2] * s[3];
}

static int
add_block(struct nn_model *m, size_t bytes, int start, int end)
{
    struct nn__block *b = &m->blocks[m->n_blocks];

    b->bytes = (bytes + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
    b->off = 0;
    b->start = start;
    b->end = end;
    return m->n_blocks++;
}

static bool
elementwise(enum nn__op op)
{
    return op == NN__RELU || op == NN__LEAKY || op == NN__BN ||
           op == NN__DROPOUT || op == NN__DROPOUT2D || op == NN__SOFTMAX;
}

bool
nn__in_place(const struct nn_model *m, int i)
{
    const struct nn__node *nd = &m->nodes[i];
    const struct nn__value *in = &m->vals[nd->in[0]];

    return elementwise(nd->op) && nd->in[0] != 0 && !in->keep &&
           !in->output && in->n_consumers == 1 && !in->virt &&
           nn__runs(m, i, NN_MODE_INFER);
}

static int
last_consumer(const struct nn_model *m, int vid)
{
    int i, j, last = -1;

    for (i = 0; i < m->n_nodes; i++)
        for (j = 0; j < m->nodes[i].n_in; j++)
            if (m->nodes[i].in[j] == vid)
                last = i;
    return last;
}

static void
plan_infer_values(struct nn_model *m, int end)
{
    int i;

    if (m->vals[0].keep)
        m->vals[0].blk = add_block(m, count4(m->vals[0].shape) * 4, 0, end);
    for (i = 0; i < m->n_nodes; i++) {
        const struct nn__node *nd = &m->nodes[i];
        struct nn__value *w = &m->vals[nd->fuse_out];
        int until = w->keep || w->output ? end
                    : w->last_use >= 0 ? w->last_use : i;

        if (!nn__runs(m, i, NN_MODE_INFER))
            continue;
        if (nn__in_place(m, i)) {
            w->blk = m->vals[nd->in[0]].blk;
            if (m->blocks[w->blk].end < until)
                m->blocks[w->blk].end = until;
        } else {
            w->blk = add_block(m, count4(w->shape) * 4, i, until);
        }
    }
}

/* Training and explain: what runs keeps its output to the end; the
 * gradient of a value lives from the backward of its last consumer (or
 * the start of backward for an output) to the backward of the node that
 * wrote it. */
static void
plan_train_values(struct nn_model *m, enum nn_mode mode, int end)
{
    int n = m->n_nodes, i, v, lc, start, stop, by;

    m->vals[0].blk = add_block(m, count4(m->vals[0].shape) * 4, 0, end);
    for (i = 0; i < n; i++) {
        struct nn__value *w;

        if (!nn__runs(m, i, mode))
            continue;
        w = &m->vals[nn__exec_out(m, i, mode)];
        w->blk = add_block(m, count4(w->shape) * 4, i, end);
    }
    for (v = 0; v < m->n_vals; v++) {
        struct nn__value *w = &m->vals[v];

        lc = last_consumer(m, v);
        if ((w->blk < 0 && v != 0) || !nn__needs_grad(m, v) ||
            (lc < 0 && !w->output))
            continue;
        start = w->output ? n : 2 * n - 1 - lc;
        if (lc >= 0 && 2 * n - 1 - lc < start)
            start = 2 * n - 1 - lc;
        for (by = -1, i = 0; i < n; i++)
            if (nn__runs(m, i, mode) && nn__exec_out(m, i, mode) == v)
                by = i;
        stop = w->keep || by < 0 ? end : 2 * n - 1 - by;
        w->gblk = add_block(m, count4(w->shape) * 4, start, stop);
    }
}

static void
plan_aux(struct nn_model *m, enum nn_mode mode)
{
    int n = m->n_nodes, i;

    for (i = 0; i < n; i++) {
        struct nn__node *nd = &m->nodes[i];
        const int *in = m->vals[nd->in[0]].shape;
        int stop = mode == NN_MODE_INFER ? i : 2 * n - 1 - i;
        size_t bytes = 0;

        if (!nn__runs(m, i, mode))
            continue;
        if (nd->op == NN__BN)
            bytes = 2 * sizeof(float) * (size_t)nd->cout;
        else if (nd->op == NN__MAXPOOL && mode != NN_MODE_INFER)
            bytes = sizeof(int32_t) * count4(m->vals[nd->out].shape);
        else if ((nd->op == NN__DROPOUT || nd->op == NN__DROPOUT2D) &&
                 mode == NN_MODE_TRAIN && nd->p > 0.0)
            bytes = count4(in);
        if (bytes)
            nd->ablk = add_block(m, bytes, i, stop);
    }
}

static int
by_size(const void *a, const void *b)
{
    const struct nn__block *x = *(struct nn__block *const *)a;
    const struct nn__block *y = *(struct nn__block *const *)b;

    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return x->start - y->start;
}

static int
by_offset(const void *a, const void *b)
{
    const struct nn__block *x = *(struct nn__block *const *)a;
    const struct nn__block *y = *(struct nn__block *const *)b;

    return x->off < y->off ? -1 : x->off > y->off;
}

/* Greedy by size; returns the arena size. */
static size_t
place(struct nn_model *m, struct nn__block **order, struct nn__block **tmp)
{
    size_t total = 0, off;
    int i, j, k;

    for (i = 0; i < m->n_blocks; i++)
        order[i] = &m->blocks[i];
    qsort(order, (size_t)m->n_blocks, sizeof(*order), by_size);
    for (i = 0; i < m->n_blocks; i++) {
        struct nn__block *b = order[i];

        for (j = 0, k = 0; j < i; j++)
            if (order[j]->start <= b->end && b->start <= order[j]->end)
                tmp[k++] = order[j];
        qsort(tmp, (size_t)k, sizeof(*tmp), by_offset);
        off = 0;
        for (j = 0; j < k; j++) {
            if (off + b->bytes <= tmp[j]->off)
                break;
            if (tmp[j]->off + tmp[j]->bytes > off)
                off = tmp[j]->off + tmp[j]->bytes;
        }
        b->off = off;
        if (off + b->bytes > total)
            total = off + b->bytes;
    }
    return total;
}

static void
view(struct nn_tensor *t, char *data, const int *shape)
{
    t->ndim = 4;
    memcpy(t->shape, shape, 4 * sizeof(int));
    t->count = count4(shape);
    t->data = (float *)data;
}

/* Points the value views and layer states at their blocks. */
static void
bind(struct nn_model *m)
{
    int i;

    for (i = 0; i < m->n_vals; i++) {
        struct nn__value *v = &m->vals[i];

        if (v->blk >= 0)
            view(&v->tv, m->arena + m->blocks[v->blk].off, v->shape);
        if (v->gblk >= 0)
            view(&v->tg, m->arena + m->blocks[v->gblk].off, v->shape);
    }
    for (i = 0; i < m->n_nodes; i++) {
        struct nn__node *nd = &m->nodes[i];
        char *p = nd->ablk >= 0 ? m->arena + m->blocks[nd->ablk].off : NULL;

        nd->bn_mean = nd->bn_invstd = NULL;
        nd->argmax = NULL;
        nd->mask = NULL;
        if (!p)
            continue;
        if (nd->op == NN__BN) {
            nd->bn_mean = (float *)p;
            nd->bn_invstd = nd->bn_mean + nd->cout;
        } else if (nd->op == NN__MAXPOOL) {
            nd->argmax = (int32_t *)p;
        } else {
            nd->mask = (uint8_t *)p;
        }
    }
}

static int
make_plan(struct nn_model *m, enum nn_mode mode, size_t *need)
{
    struct nn__block **order;
    int i, end = 2 * m->n_nodes;

    free(m->blocks);
    m->n_blocks = 0;
    m->blocks = calloc(2 * (size_t)m->n_vals + m->n_nodes + 1,
                       sizeof(*m->blocks));
    order = calloc(2 * (2 * (size_t)m->n_vals + m->n_nodes + 1),
                   sizeof(*order));
    if (!m->blocks || !order) {
        free(order);
        return -ENOMEM;
    }
    for (i = 0; i < m->n_vals; i++)
        m->vals[i].blk = m->vals[i].gblk = -1;
    for (i = 0; i < m->n_nodes; i++)
        m->nodes[i].ablk = -1;
    if (mode == NN_MODE_INFER)
        plan_infer_values(m, end);
    else
        plan_train_values(m, mode, end);
    plan_aux(m, mode);
    *need = place(m, order, order + m->n_blocks);
    free(order);
    return 0;
}

int
nn__plan_pass(struct nn_model *m, const int *in_shape, enum nn_mode mode,
              struct ss_err *err)
{
    size_t need;

    if (m->planned && m->plan_mode == mode &&
        !memcmp(m->plan_shape, in_shape, sizeof(m->plan_shape))) {
        bind(m);
        return 0;
    }
    m->planned = false;
    if (make_plan(m, mode, &need) < 0)
        return err_set(err, -ENOMEM, "model %s: out of memory for the "
                       "memory plan", m->name);
    if (need > m->arena_bytes || need < m->arena_bytes / 4 * 3) {
        nn__free(m->arena);
        m->arena_bytes = 0;
        m->arena = nn__alloc(need ? need : 64);
        if (!m->arena)
            return err_set(err, -ENOMEM, "model %s: out of memory for %zu "
                           "MiB of activations", m->name, need >> 20);
        m->arena_bytes = need;
    }
    m->planned = true;
    m->plan_mode = mode;
    memcpy(m->plan_shape, in_shape, sizeof(m->plan_shape));
    bind(m);
    return 0;
}

void
nn__plan_free(struct nn_model *m)
{
    nn__free(m->arena);
    nn__free(m->partial);
    free(m->blocks);
    m->arena = NULL;
    m->partial = NULL;
    m->blocks = NULL;
    m->arena_bytes = m->partial_bytes = 0;
    m->n_blocks = 0;
    m->planned = false;
}

float *
nn__partial(struct nn_model *m, size_t bytes)
{
    if (m->partial_bytes < bytes) {
        nn__free(m->partial);
        m->partial = nn__alloc(bytes);
        m->partial_bytes = m->partial ? bytes : 0;
    }
    return m->partial;
}
