/* SPDX-License-Identifier: MIT */
/*
 * The architecture description: parses the JSON (worker/nn/README.md)
 * into the model's nodes and values, checks every field of every layer
 * (unknown fields are errors, so a typo cannot silently fall back to a
 * default), infers channel counts through the graph, and creates the
 * parameter tensors and the parameter table in architecture order.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn_internal.h"

struct op_info {
    const char *type;
    enum nn__op op;
    const char *fields;             /* allowed besides the common ones */
};

/*
 * LIMIT: convolutions are dense (no "groups", so no depthwise layers) and
 * pad with zeros; upsampling is bilinear by an integer factor; batch
 * norm's momentum is a number (PyTorch's momentum=None, a cumulative
 * average, is refused).  An architecture that needs more is refused when
 * it is loaded, naming the layer and the field.
 */
static const struct op_info ops[] = {
    { "conv2d", NN__CONV, "out_channels kernel stride padding dilation bias" },
    { "conv_transpose2d", NN__CONVT, "out_channels kernel stride padding "
      "output_padding dilation bias" },
    { "batchnorm2d", NN__BN, "eps momentum affine" },
    { "relu", NN__RELU, "" },
    { "leaky_relu", NN__LEAKY, "negative_slope" },
    { "maxpool2d", NN__MAXPOOL, "kernel stride padding ceil_mode" },
    { "upsample_bilinear", NN__UPSAMPLE, "scale align_corners" },
    { "concat", NN__CONCAT, "" },
    { "add", NN__ADD, "" },
    { "dropout", NN__DROPOUT, "p" },
    { "dropout2d", NN__DROPOUT2D, "p" },
    { "global_avgpool", NN__GAP, "" },
    { "linear", NN__LINEAR, "out_features in_features bias" },
    { "softmax", NN__SOFTMAX, "" },
};

static const struct op_info *
find_op(const char *type)
{
    size_t i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (!strcmp(ops[i].type, type))
            return &ops[i];
    return NULL;
}

static bool
field_allowed(const struct op_info *oi, const char *key)
{
    char list[192], pat[72];

    if (strlen(key) > 64)
        return false;
    snprintf(pat, sizeof(pat), " %s ", key);
    snprintf(list, sizeof(list), " name type input inputs frozen %s ",
             oi->fields);
    return strstr(list, pat) != NULL;
}

int
nn__find_value(const struct nn_model *m, const char *name)
{
    int i;

    for (i = 0; i < m->n_vals; i++)
        if (m->vals[i].name && !strcmp(m->vals[i].name, name))
            return i;
    return -1;
}

/* An integer or a [h, w] pair, with default and minimum. */
static int
get_pair(json_t *l, const char *key, int def, int min, int *a, int *b,
         const char *lname, struct ss_err *err)
{
    json_t *v = json_object_get(l, key);

    *a = *b = def;
    if (!v)
        return def < 0 ? err_set(err, -EINVAL, "layer %s: %s is required",
                                 lname, key) : 0;
    if (json_is_integer(v)) {
        *a = *b = (int)json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_integer(json_array_get(v, 0)) &&
               json_is_integer(json_array_get(v, 1))) {
        *a = (int)json_integer_value(json_array_get(v, 0));
        *b = (int)json_integer_value(json_array_get(v, 1));
    } else {
        return err_set(err, -EINVAL, "layer %s: %s must be an integer or "
                       "a pair", lname, key);
    }
    if (*a < min || *b < min || *a > 65536 || *b > 65536)
        return err_set(err, -EINVAL, "layer %s: %s out of range (minimum "
                       "%d)", lname, key, min);
    return 0;
}

static int
get_int(json_t *l, const char *key, int def, int min, int *out,
        const char *lname, struct ss_err *err)
{
    json_t *v = json_object_get(l, key);

    *out = def;
    if (!v)
        return def < 0 ? err_set(err, -EINVAL, "layer %s: %s is required",
                                 lname, key) : 0;
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > (1 << 24))
        return err_set(err, -EINVAL, "layer %s: %s must be an integer >= %d",
                       lname, key, min);
    *out = (int)json_integer_value(v);
    return 0;
}

static int
get_real(json_t *l, const char *key, double def, double lo, double hi,
         double *out, const char *lname, struct ss_err *err)
{
    json_t *v = json_object_get(l, key);

    *out = def;
    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < lo ||
        json_number_value(v) > hi)
        return err_set(err, -EINVAL, "layer %s: %s must be a number in "
                       "[%g, %g]", lname, key, lo, hi);
    *out = json_number_value(v);
    return 0;
}

static int
get_bool(json_t *l, const char *key, bool def, bool *out, const char *lname,
         struct ss_err *err)
{
    json_t *v = json_object_get(l, key);

    *out = def;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return err_set(err, -EINVAL, "layer %s: %s must be true or false",
                       lname, key);
    *out = json_is_true(v);
    return 0;
}

static int
add_value(struct nn_model *m, const char *name, int c, int producer,
          struct ss_err *err)
{
    struct nn__value *v;

    if (nn__find_value(m, name) >= 0)
        return err_set(err, -EINVAL, "layer %s: name used twice", name);
    v = &m->vals[m->n_vals];
    memset(v, 0, sizeof(*v));
    v->name = strdup(name);
    if (!v->name)
        return err_set(err, -ENOMEM, "out of memory");
    v->c = c;
    v->producer = producer;
    return m->n_vals++;
}

static int
parse_inputs(json_t *l, struct nn_model *m, struct nn__node *nd,
             const char *lname, struct ss_err *err)
{
    json_t *one = json_object_get(l, "input"), *many;
    int multi = nd->op == NN__CONCAT || nd->op == NN__ADD;
    size_t i, n;

    many = json_object_get(l, "inputs");
    if (one && many)
        return err_set(err, -EINVAL, "layer %s: both input and inputs",
                       lname);
    if (multi && (!json_is_array(many) || json_array_size(many) < 2))
        return err_set(err, -EINVAL, "layer %s: needs \"inputs\": a list of "
                       "two or more names", lname);
    if (!multi && many)
        return err_set(err, -EINVAL, "layer %s: takes one input (\"input\")",
                       lname);
    n = multi ? json_array_size(many) : 1;
    nd->in = calloc(n, sizeof(int));
    if (!nd->in)
        return err_set(err, -ENOMEM, "out of memory");
    nd->n_in = (int)n;
    for (i = 0; i < n; i++) {
        json_t *s = multi ? json_array_get(many, i) : one;
        const char *src;

        if (!multi && !one) {   /* previous layer, or the first input */
            nd->in[0] = m->n_nodes == 1 ? 0 : m->n_vals - 1;
            continue;
        }
        src = json_string_value(s);
        if (!src)
            return err_set(err, -EINVAL, "layer %s: input names must be "
                           "strings", lname);
        nd->in[i] = nn__find_value(m, src);
        if (nd->in[i] < 0)
            return err_set(err, -EINVAL, "layer %s: input %s is not an "
                           "earlier layer or a model input", lname, src);
    }
    return 0;
}

static int
parse_conv(json_t *l, struct nn__node *nd, const char *ln, struct ss_err *e)
{
    int rc;

    rc = get_int(l, "out_channels", -1, 1, &nd->cout, ln, e);
    if (!rc)
        rc = get_pair(l, "kernel", -1, 1, &nd->kh, &nd->kw, ln, e);
    if (!rc)
        rc = get_pair(l, "stride", 1, 1, &nd->sh, &nd->sw, ln, e);
    if (!rc)
        rc = get_pair(l, "padding", 0, 0, &nd->ph, &nd->pw, ln, e);
    if (!rc)
        rc = get_pair(l, "dilation", 1, 1, &nd->dh, &nd->dw, ln, e);
    if (!rc && nd->op == NN__CONVT)
        rc = get_pair(l, "output_padding", 0, 0, &nd->oph, &nd->opw, ln, e);
    if (!rc && ((nd->oph >= nd->sh && nd->oph >= nd->dh) ||
                (nd->opw >= nd->sw && nd->opw >= nd->dw)))
        rc = err_set(e, -EINVAL, "layer %s: output_padding must be smaller "
                     "than stride or dilation", ln);
    if (!rc)
        rc = get_bool(l, "bias", true, &nd->has_bias, ln, e);
    return rc;
}

static int
parse_hyper(json_t *l, struct nn__node *nd, const char *ln, struct ss_err *e)
{
    int rc = 0;

    switch (nd->op) {
    case NN__CONV:
    case NN__CONVT:
        return parse_conv(l, nd, ln, e);
    case NN__BN:
        rc = get_real(l, "eps", 1e-5, 1e-12, 1.0, &nd->eps, ln, e);
        if (!rc)
            rc = get_real(l, "momentum", 0.1, 0.0, 1.0, &nd->momentum, ln, e);
        if (!rc)
            rc = get_bool(l, "affine", true, &nd->affine, ln, e);
        return rc;
    case NN__LEAKY:
        return get_real(l, "negative_slope", 0.01, -1e6, 1e6, &nd->slope, ln,
                        e);
    case NN__MAXPOOL:
        rc = get_pair(l, "kernel", -1, 1, &nd->kh, &nd->kw, ln, e);
        if (!rc)
            rc = get_pair(l, "stride", 0, 1, &nd->sh, &nd->sw, ln, e);
        if (!rc && !json_object_get(l, "stride")) {
            nd->sh = nd->kh;
            nd->sw = nd->kw;
        }
        if (!rc)
            rc = get_pair(l, "padding", 0, 0, &nd->ph, &nd->pw, ln, e);
        if (!rc && (nd->ph * 2 > nd->kh || nd->pw * 2 > nd->kw))
            rc = err_set(e, -EINVAL, "layer %s: padding must be at most half "
                         "the kernel", ln);
        if (!rc)
            rc = get_bool(l, "ceil_mode", false, &nd->ceil_mode, ln, e);
        nd->dh = nd->dw = 1;
        return rc;
    case NN__UPSAMPLE:
        rc = get_int(l, "scale", 2, 1, &nd->scale, ln, e);
        if (!rc)
            rc = get_bool(l, "align_corners", false, &nd->align_corners, ln,
                          e);
        return rc;
    case NN__DROPOUT:
    case NN__DROPOUT2D:
        rc = get_real(l, "p", 0.5, 0.0, 1.0, &nd->p, ln, e);
        if (!rc && nd->p >= 1.0)
            rc = err_set(e, -EINVAL, "layer %s: p must be below 1", ln);
        return rc;
    case NN__LINEAR:
        rc = get_int(l, "out_features", -1, 1, &nd->cout, ln, e);
        if (!rc)
            rc = get_int(l, "in_features", 0, 1, &nd->in_features, ln, e);
        if (!rc)
            rc = get_bool(l, "bias", true, &nd->has_bias, ln, e);
        return rc;
    default:
        return 0;
    }
}

/* Channels of the node's output; checks the inputs agree. */
static int
infer_channels(struct nn_model *m, struct nn__node *nd, const char *ln,
               struct ss_err *err)
{
    int i, c = m->vals[nd->in[0]].c;

    nd->cin = c;
    switch (nd->op) {
    case NN__CONV:
    case NN__CONVT:
        return nd->cout;
    case NN__CONCAT:
        for (i = 1; i < nd->n_in; i++)
            c += m->vals[nd->in[i]].c;
        nd->cin = nd->cout = c;
        return c;
    case NN__ADD:
        for (i = 1; i < nd->n_in; i++)
            if (m->vals[nd->in[i]].c != c)
                return err_set(err, -EINVAL, "layer %s: adds %d channels "
                               "to %d", ln, m->vals[nd->in[i]].c, c);
        break;
    case NN__LINEAR:
        if (!nd->in_features)
            nd->in_features = c;
        nd->cin = nd->in_features;
        return nd->cout;
    default:
        break;
    }
    nd->cout = c;
    return c;
}

static struct nn_tensor *
param(struct nn_model *m, struct nn__node *nd, const char *suffix, int ndim,
      const int *shape, bool trainable, struct nn_tensor **grad)
{
    struct nn_tensor *t = nn_tensor_new(ndim, shape);
    char *name = NULL;
    int i = m->n_params;

    if (!t || asprintf(&name, "%s.%s", nd->name, suffix) < 0) {
        nn_tensor_free(t);
        return NULL;
    }
    m->pnames[i] = name;
    m->pvals[i] = t;
    m->pgrads[i] = NULL;
    /* gradients are made on first use: inference never needs them */
    m->pgslot[i] = trainable && !nd->frozen ? grad : NULL;
    m->n_params++;
    return t;
}

static int
make_params(struct nn_model *m, struct nn__node *nd, struct ss_err *err)
{
    int s4[4] = { nd->cout, nd->cin, nd->kh, nd->kw };
    int s1[1] = { nd->cout };
    bool ok = true;

    if (nd->op == NN__CONVT) {
        s4[0] = nd->cin;
        s4[1] = nd->cout;
    }
    if (nd->op == NN__CONV || nd->op == NN__CONVT)
        ok = (nd->w = param(m, nd, "weight", 4, s4, true, &nd->gw)) != NULL;
    else if (nd->op == NN__LINEAR)
        ok = (nd->w = param(m, nd, "weight", 2, s4, true, &nd->gw)) != NULL;
    else if (nd->op == NN__BN && nd->affine)
        ok = (nd->w = param(m, nd, "weight", 1, s1, true, &nd->gw)) != NULL;
    if (ok && (nd->has_bias || (nd->op == NN__BN && nd->affine)))
        ok = (nd->b = param(m, nd, "bias", 1, s1, true, &nd->gb)) != NULL;
    if (ok && nd->op == NN__BN) {
        ok = (nd->rmean = param(m, nd, "running_mean", 1, s1, false, NULL)) &&
             (nd->rvar = param(m, nd, "running_var", 1, s1, false, NULL));
        if (ok)
            nn_tensor_fill(nd->rvar, 1.0f);
        if (ok && nd->w)
            nn_tensor_fill(nd->w, 1.0f);
    }
    return ok ? 0 : err_set(err, -ENOMEM, "layer %s: out of memory for "
                            "parameters", nd->name);
}

static int
parse_layer(json_t *l, struct nn_model *m, struct ss_err *err)
{
    struct nn__node *nd = &m->nodes[m->n_nodes];
    const char *ln = json_string_value(json_object_get(l, "name"));
    const char *type = json_string_value(json_object_get(l, "type"));
    const struct op_info *oi;
    const char *key;
    json_t *v;
    int rc, c;

    if (!json_is_object(l) || !ln || !*ln)
        return err_set(err, -EINVAL, "layer %d: needs a \"name\" string",
                       m->n_nodes);
    if (!type || !(oi = find_op(type)))
        return err_set(err, -EINVAL, "layer %s: unknown type %s", ln,
                       type ? type : "(missing)");
    json_object_foreach(l, key, v) {
        if (!field_allowed(oi, key))
            return err_set(err, -EINVAL, "layer %s: unknown field %s for %s",
                           ln, key, type);
    }
    memset(nd, 0, sizeof(*nd));
    nd->name = strdup(ln);
    nd->op = oi->op;
    nd->fuse_bn = -1;
    m->n_nodes++;
    if (!nd->name)
        return err_set(err, -ENOMEM, "out of memory");
    rc = get_bool(l, "frozen", false, &nd->frozen, ln, err);
    if (!rc)
        rc = parse_inputs(l, m, nd, ln, err);
    if (!rc)
        rc = parse_hyper(l, nd, ln, err);
    if (rc < 0)
        return rc;
    c = infer_channels(m, nd, ln, err);
    if (c < 0)
        return c;
    nd->out = add_value(m, ln, c, m->n_nodes - 1, err);
    if (nd->out < 0)
        return nd->out;
    return make_params(m, nd, err);
}

static int
parse_model_inputs(json_t *root, struct nn_model *m, struct ss_err *err)
{
    json_t *ins = json_object_get(root, "inputs"), *in;
    size_t i;
    int c, rc;

    if (!json_is_array(ins) || json_array_size(ins) < 1)
        return err_set(err, -EINVAL, "\"inputs\" must list at least one "
                       "input");
    json_array_foreach(ins, i, in) {
        const char *name = json_string_value(json_object_get(in, "name"));
        json_t *ch = json_object_get(in, "channels");

        if (!name || !json_is_integer(ch) || json_integer_value(ch) < 1 ||
            json_integer_value(ch) > 65536)
            return err_set(err, -EINVAL, "input %zu: needs \"name\" and "
                           "\"channels\" >= 1", i);
        c = (int)json_integer_value(ch);
        rc = add_value(m, name, c, -1, err);
        if (rc < 0)
            return rc;
        m->n_inputs++;
    }
    return 0;
}

static int
parse_outputs(json_t *root, struct nn_model *m, struct ss_err *err)
{
    json_t *outs = json_object_get(root, "outputs"), *o;
    size_t i, n = outs ? json_array_size(outs) : 1;

    if (outs && (!json_is_array(outs) || n < 1))
        return err_set(err, -EINVAL, "\"outputs\" must be a list of layer "
                       "names");
    m->outputs = calloc(n, sizeof(int));
    if (!m->outputs)
        return err_set(err, -ENOMEM, "out of memory");
    m->n_outputs = (int)n;
    if (!outs) {
        m->outputs[0] = m->n_vals - 1;
        m->vals[m->n_vals - 1].output = true;
        return 0;
    }
    json_array_foreach(outs, i, o) {
        int vid = json_is_string(o) ? nn__find_value(m, json_string_value(o))
                                    : -1;

        if (vid < m->n_inputs)
            return err_set(err, -EINVAL, "output %zu is not a layer name", i);
        m->outputs[i] = vid;
        m->vals[vid].output = true;
    }
    return 0;
}

static int
parse_header(json_t *root, struct nn_model *m, struct ss_err *err)
{
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *ver = json_object_get(root, "version");
    json_t *meta = json_object_get(root, "meta");
    const char *name = json_string_value(json_object_get(root, "name"));
    const char *key;
    json_t *v;

    if (!fmt || strcmp(fmt, "slidescan-nn"))
        return err_set(err, SS_EFORMAT, "format is not \"slidescan-nn\"");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return err_set(err, SS_EFORMAT, "unsupported version (this engine "
                       "reads version 1)");
    json_object_foreach(root, key, v) {
        if (strcmp(key, "format") && strcmp(key, "version") &&
            strcmp(key, "name") && strcmp(key, "inputs") &&
            strcmp(key, "outputs") && strcmp(key, "meta") &&
            strcmp(key, "layers"))
            return err_set(err, -EINVAL, "unknown top-level field %s", key);
    }
    if (meta && !json_is_object(meta))
        return err_set(err, -EINVAL, "\"meta\" must be an object");
    m->meta_json = meta ? json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER)
                        : strdup("{}");
    m->name = strdup(name ? name : "");
    if (!m->meta_json || !m->name)
        return err_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int
alloc_tables(struct nn_model *m, size_t n_layers, size_t n_inputs,
             struct ss_err *err)
{
    m->nodes = calloc(n_layers, sizeof(*m->nodes));
    m->vals = calloc(n_layers + n_inputs, sizeof(*m->vals));
    m->pnames = calloc(4 * n_layers, sizeof(char *));
    m->pvals = calloc(4 * n_layers, sizeof(struct nn_tensor *));
    m->pgrads = calloc(4 * n_layers, sizeof(struct nn_tensor *));
    m->pgslot = calloc(4 * n_layers, sizeof(struct nn_tensor **));
    if (!m->nodes || !m->vals || !m->pnames || !m->pvals || !m->pgrads ||
        !m->pgslot)
        return err_set(err, -ENOMEM, "out of memory");
    return 0;
}

int
nn__arch_parse(const char *json, struct nn_model *m, struct ss_err *err)
{
    json_t *root, *layers, *l;
    json_error_t je;
    size_t i;
    int rc;

    root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, SS_EFORMAT, "architecture: line %d: %s", je.line,
                       root ? "not an object" : je.text);
    }
    layers = json_object_get(root, "layers");
    rc = parse_header(root, m, err);
    if (!rc && (!json_is_array(layers) || json_array_size(layers) < 1))
        rc = err_set(err, -EINVAL, "\"layers\" must be a non-empty list");
    if (!rc)
        rc = alloc_tables(m, json_array_size(layers),
                          json_array_size(json_object_get(root, "inputs")),
                          err);
    if (!rc)
        rc = parse_model_inputs(root, m, err);
    json_array_foreach(layers, i, l) {
        if (rc < 0)
            break;
        rc = parse_layer(l, m, err);
    }
    if (!rc)
        rc = parse_outputs(root, m, err);
    if (!rc) {
        m->arch_json = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        if (!m->arch_json)
            rc = err_set(err, -ENOMEM, "out of memory");
    }
    json_decref(root);
    if (rc < 0)
        err_prefix(err, "architecture");
    return rc;
}
