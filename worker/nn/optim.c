/* SPDX-License-Identifier: MIT */
/*
 * Optimisers with PyTorch 1.13's exact update rules (the single-tensor
 * code path, float32 arithmetic in the same order):
 *
 *   SGD    d = g + wd * p; buf = momentum * buf + (1 - dampening) * d
 *          (buf = d on the first step); d = nesterov ? d + momentum * buf
 *          : buf; p -= lr * d
 *   Adam   g += wd * p (L2, coupled); m = b1 m + (1 - b1) g;
 *          v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m /
 *          (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   AdamW  p *= 1 - lr * wd (decoupled), then Adam without the L2 term
 *
 * AMSGrad uses the running maximum of v in the denominator.  The state
 * (moments, step) can be saved and loaded for resuming a training run.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn_internal.h"

struct slot {
    struct nn_tensor *p, *g;        /* borrowed from the model */
    const char *name;
    struct nn_tensor *m, *v, *vmax; /* Adam moments / SGD momentum (m) */
};

struct nn_optim {
    struct nn_optim_cfg cfg;
    struct slot *s;
    int n;
    long steps;
};

static const char *const kind_names[] = { "sgd", "adam", "adamw" };

void
nn_optim_cfg_default(struct nn_optim_cfg *cfg, enum nn_optim_kind kind)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    cfg->lr = NN_DEFAULT_LR;
    cfg->momentum = kind == NN_OPTIM_SGD ? 0.9 : 0.0;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = kind == NN_OPTIM_ADAMW ? 0.01 : 0.0;
}

static int
check_cfg(const struct nn_optim_cfg *c, struct ss_err *err)
{
    if (c->kind < NN_OPTIM_SGD || c->kind > NN_OPTIM_ADAMW)
        return err_set(err, -EINVAL, "optimiser: unknown kind %d", c->kind);
    if (!(c->lr >= 0) || !(c->weight_decay >= 0) || !(c->momentum >= 0))
        return err_set(err, -EINVAL, "optimiser: lr, momentum and weight "
                       "decay must be >= 0");
    if (c->kind != NN_OPTIM_SGD && (!(c->beta1 >= 0 && c->beta1 < 1) ||
                                    !(c->beta2 >= 0 && c->beta2 < 1) ||
                                    !(c->eps >= 0)))
        return err_set(err, -EINVAL, "optimiser: betas must be in [0, 1), "
                       "eps >= 0");
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return err_set(err, -EINVAL, "optimiser: Nesterov momentum requires "
                       "momentum > 0 and zero dampening");
    return 0;
}

void
nn_optim_free(struct nn_optim *o)
{
    int i;

    if (!o)
        return;
    for (i = 0; i < o->n; i++) {
        nn_tensor_free(o->s[i].m);
        nn_tensor_free(o->s[i].v);
        nn_tensor_free(o->s[i].vmax);
    }
    free(o->s);
    free(o);
}

static int
make_state(struct nn_optim *o, struct slot *s)
{
    bool adam = o->cfg.kind != NN_OPTIM_SGD;

    if ((adam || o->cfg.momentum > 0) && !(s->m = nn_tensor_new_like(s->p)))
        return -ENOMEM;
    if (adam && !(s->v = nn_tensor_new_like(s->p)))
        return -ENOMEM;
    if (adam && o->cfg.amsgrad && !(s->vmax = nn_tensor_new_like(s->p)))
        return -ENOMEM;
    return 0;
}

int
nn_optim_new(struct nn_model *m, const struct nn_optim_cfg *cfg,
             struct nn_optim **out, struct ss_err *err)
{
    struct nn_optim *o;
    int i, rc = check_cfg(cfg, err);

    *out = NULL;
    if (rc < 0)
        return rc;
    if (nn__ensure_grads(m) < 0)
        return err_set(err, -ENOMEM, "optimiser: out of memory");
    o = calloc(1, sizeof(*o));
    if (!o || !(o->s = calloc((size_t)m->n_params + 1, sizeof(*o->s)))) {
        free(o);
        return err_set(err, -ENOMEM, "optimiser: out of memory");
    }
    o->cfg = *cfg;
    for (i = 0; i < m->n_params; i++) {
        struct slot *s;

        if (!m->pgrads[i])
            continue;
        s = &o->s[o->n++];
        s->p = m->pvals[i];
        s->g = m->pgrads[i];
        s->name = m->pnames[i];
        if (make_state(o, s) < 0) {
            nn_optim_free(o);
            return err_set(err, -ENOMEM, "optimiser: out of memory");
        }
    }
    *out = o;
    return 0;
}

static void
sgd_slot(const struct nn_optim_cfg *c, struct slot *s, bool first)
{
    float lr = (float)c->lr, wd = (float)c->weight_decay;
    float mom = (float)c->momentum, damp = (float)(1.0 - c->dampening);
    size_t i;

    for (i = 0; i < s->p->count; i++) {
        float d = s->g->data[i];

        if (wd != 0.0f)
            d += wd * s->p->data[i];
        if (s->m) {
            float b = first ? d : s->m->data[i] * mom + damp * d;

            s->m->data[i] = b;
            d = c->nesterov ? d + mom * b : b;
        }
        s->p->data[i] += -lr * d;
    }
}

static void
adam_slot(const struct nn_optim_cfg *c, struct slot *s, long step)
{
    double bc1 = 1.0 - pow(c->beta1, (double)step);
    double bc2 = 1.0 - pow(c->beta2, (double)step);
    float step_size = (float)(c->lr / bc1), bc2s = (float)sqrt(bc2);
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    float a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
    float wd = (float)c->weight_decay;
    float decay = (float)(1.0 - c->lr * c->weight_decay);
    size_t i;

    for (i = 0; i < s->p->count; i++) {
        float g = s->g->data[i], m, v, den;

        if (c->kind == NN_OPTIM_ADAMW)
            s->p->data[i] *= decay;
        else if (wd != 0.0f)
            g += wd * s->p->data[i];
        m = s->m->data[i] = s->m->data[i] * b1 + g * a1;
        v = s->v->data[i] = s->v->data[i] * b2 + a2 * g * g;
        if (s->vmax) {
            v = s->vmax->data[i] = fmaxf(s->vmax->data[i], v);
        }
        den = sqrtf(v) / bc2s + eps;
        s->p->data[i] += -step_size * m / den;
    }
}

int
nn_optim_step(struct nn_optim *o, struct ss_err *err)
{
    int i;

    o->steps++;
    for (i = 0; i < o->n; i++) {
        if (o->cfg.kind == NN_OPTIM_SGD)
            sgd_slot(&o->cfg, &o->s[i], o->steps == 1);
        else
            adam_slot(&o->cfg, &o->s[i], o->steps);
    }
    return 0;
}

double
nn_optim_set_lr(struct nn_optim *o, double lr)
{
    double old = o->cfg.lr;

    o->cfg.lr = lr;
    return old;
}

long
nn_optim_steps(const struct nn_optim *o)
{
    return o->steps;
}

/* ---- state files ---------------------------------------------------- */

static const char *
suffix(const struct nn_optim *o, int k)
{
    if (k == 0)
        return o->cfg.kind == NN_OPTIM_SGD ? "momentum_buffer" : "exp_avg";
    return k == 1 ? "exp_avg_sq" : "max_exp_avg_sq";
}

static struct nn_tensor **
state_of(struct slot *s, int k)
{
    return k == 0 ? &s->m : k == 1 ? &s->v : &s->vmax;
}

int
nn_optim_save(const struct nn_optim *o, const char *path, struct ss_err *err)
{
    const char *keys[2] = { "slidescan.optim", "slidescan.steps" };
    const char *vals[2];
    const struct nn_tensor **ts = calloc(3 * (size_t)o->n + 1, sizeof(*ts));
    char **names = calloc(3 * (size_t)o->n + 1, sizeof(*names));
    char steps[32];
    int i, k, n = 0, rc = 0;

    if (!ts || !names)
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
    for (i = 0; rc == 0 && i < o->n; i++)
        for (k = 0; k < 3; k++) {
            struct nn_tensor *t = *state_of(&o->s[i], k);

            if (!t)
                continue;
            if (asprintf(&names[n], "%s.%s", o->s[i].name,
                         suffix(o, k)) < 0) {
                names[n] = NULL;
                rc = err_set(err, -ENOMEM, "%s: out of memory", path);
                break;
            }
            ts[n++] = t;
        }
    snprintf(steps, sizeof(steps), "%ld", o->steps);
    vals[0] = kind_names[o->cfg.kind];
    vals[1] = steps;
    if (rc == 0)
        rc = nn__st_write(path, (const char *const *)names, ts, n, keys,
                          vals, 2, err);
    for (i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(ts);
    return rc;
}

static int
load_slot(const struct nn_optim *o, struct slot *s,
          const struct nn__st_file *f, const char *path, struct ss_err *err)
{
    char name[512];
    int k, j;

    for (k = 0; k < 3; k++) {
        struct nn_tensor *t = *state_of(s, k);

        if (!t)
            continue;
        snprintf(name, sizeof(name), "%s.%s", s->name, suffix(o, k));
        for (j = 0; j < f->n && strcmp(f->v[j].name, name); j++)
            ;
        if (j == f->n || !nn_tensor_same_shape(f->v[j].t, t))
            return err_set(err, SS_EFORMAT, "%s: optimiser state %s is %s",
                           path, name, j == f->n ? "missing"
                                                 : "of another shape");
        memcpy(t->data, f->v[j].t->data, t->count * sizeof(float));
    }
    return 0;
}

int
nn_optim_load(struct nn_optim *o, const char *path, struct ss_err *err)
{
    struct nn__st_file f;
    const char *kind, *steps;
    int i, rc = nn__st_read(path, &f, err);

    if (rc < 0)
        return rc;
    kind = nn__st_meta(&f, "slidescan.optim");
    steps = nn__st_meta(&f, "slidescan.steps");
    if (!kind || strcmp(kind, kind_names[o->cfg.kind]) || !steps)
        rc = err_set(err, SS_EFORMAT, "%s: not %s optimiser state", path,
                     kind_names[o->cfg.kind]);
    for (i = 0; rc == 0 && i < o->n; i++)
        rc = load_slot(o, &o->s[i], &f, path, err);
    if (rc == 0)
        o->steps = strtol(steps, NULL, 10);
    nn__st_clear(&f);
    return rc;
}
