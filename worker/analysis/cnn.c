/* SPDX-License-Identifier: MIT */
/*
 * CNN segmentation models on the worker/nn engine.  A model file is one
 * safetensors file holding the weights and, in its metadata, the
 * architecture; the architecture's "meta" object tells the analysis how
 * to use it:
 *
 *   "classes": ["glass", "tumor", "stroma"]   output channel order
 *   "mpp": 2.0          µm per pixel the model was trained at
 *   "margin_px": 32     context each side of a tile (≥ receptive radius)
 *   "tile_px": 256      core tile size; tile + 2 margin must suit the
 *                       network's pooling (a multiple of "align")
 *   "align": 8          input sizes must be multiples of this
 *   "mean", "std"       per-channel normalisation of RGB / 255
 *   "gradcam_layer"     layer whose activations Grad-CAM explains
 *   "name"              reported in results.json
 *
 * The engine runs one model on one thread at a time and parallelises
 * inside each call, so predictions are serialised on a lock.
 * LIMIT: one tile is predicted at a time; the tiler's other threads only
 * prepare inputs and blend outputs.
 */
#include "worker/analysis/cnn.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/nn/nn.h"

static int
meta_parse(struct an_cnn *c, struct an_model *m, const char *path,
           struct ss_err *err)
{
    json_error_t je;
    json_t *o = json_loads(nn_model_meta(c->nn), 0, &je), *cl;
    static const char *want[AN_NCLASS] = { "glass", "tumor", "stroma" };
    const char *s;
    int k;

    if (o == NULL)
        return err_set(err, SS_EFORMAT, "model %s: metadata is not JSON",
                       path);
    cl = json_object_get(o, "classes");
    for (k = 0; k < AN_NCLASS; k++)
        if (json_array_size(cl) != AN_NCLASS ||
            (s = json_string_value(json_array_get(cl, (size_t)k))) == NULL ||
            strcmp(s, want[k]) != 0) {
            json_decref(o);
            return err_set(err, SS_EFORMAT, "model %s: meta.classes must be "
                           "[\"glass\", \"tumor\", \"stroma\"]", path);
        }
    m->mpp = json_number_value(json_object_get(o, "mpp"));
    m->margin_px = (int)json_integer_value(json_object_get(o, "margin_px"));
    m->tile_px = (int)json_integer_value(json_object_get(o, "tile_px"));
    c->align = (int)json_integer_value(json_object_get(o, "align"));
    for (k = 0; k < 3; k++) {
        json_t *mu = json_array_get(json_object_get(o, "mean"), (size_t)k);
        json_t *sd = json_array_get(json_object_get(o, "std"), (size_t)k);
        c->mean[k] = mu != NULL ? (float)json_number_value(mu) : 0.5f;
        c->std[k] = sd != NULL ? (float)json_number_value(sd) : 0.25f;
    }
    s = json_string_value(json_object_get(o, "gradcam_layer"));
    snprintf(c->gradcam_layer, sizeof(c->gradcam_layer), "%s", s ? s : "");
    s = json_string_value(json_object_get(o, "name"));
    snprintf(m->name, sizeof(m->name), "%s", s != NULL ? s : "cnn");
    json_decref(o);
    if (!(m->mpp > 0) || m->tile_px <= 0 || m->margin_px < 0 ||
        c->align <= 0 || (m->tile_px + 2 * m->margin_px) % c->align != 0)
        return err_set(err, SS_EFORMAT, "model %s: meta needs mpp > 0, "
                       "tile_px, margin_px and align with (tile_px + 2 "
                       "margin_px) a multiple of align", path);
    return 0;
}

int
an_cnn_logits(struct an_cnn *c, const struct img *in, struct nn_tensor **out,
              enum nn_mode mode, struct ss_err *err)
{
    struct nn_tensor *x = nn_tensor_new4(1, 3, in->h, in->w);
    const struct nn_tensor *y;
    int rc;

    *out = NULL;
    if (x == NULL)
        return err_set(err, -ENOMEM, "CNN input: out of memory");
    nn_tensor_set_rgb8(x, 0, in->data, (size_t)in->w * 3, c->mean, c->std);
    rc = nn_model_forward(c->nn, x, mode, err);
    nn_tensor_free(x);
    if (rc < 0)
        return rc;
    y = nn_model_output(c->nn, NULL);
    if (y == NULL || y->shape[1] != AN_NCLASS || y->shape[2] != in->h ||
        y->shape[3] != in->w)
        return err_set(err, SS_EFORMAT, "CNN output is not %d × %d × %d",
                       AN_NCLASS, in->h, in->w);
    *out = (struct nn_tensor *)y;
    return 0;
}

static int
cnn_predict(struct an_model *m, const struct img *in, struct img *logits,
            struct ss_err *err)
{
    struct an_cnn *c = m->priv;
    struct nn_tensor *y;
    size_t i, n = (size_t)in->w * in->h;
    int k, rc;

    if (in->w % c->align || in->h % c->align)
        return err_set(err, -EINVAL, "CNN input %dx%d is not a multiple of "
                       "%d", in->w, in->h, c->align);
    pthread_mutex_lock(&c->lock);
    rc = an_cnn_logits(c, in, &y, NN_MODE_INFER, err);
    if (rc == 0)
        for (k = 0; k < AN_NCLASS; k++)
            for (i = 0; i < n; i++)
                ((float *)logits->data)[i * AN_NCLASS + k] =
                    y->data[(size_t)k * n + i];
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void
cnn_destroy(struct an_model *m)
{
    struct an_cnn *c = m->priv;

    if (c == NULL)
        return;
    if (!c->borrowed)
        nn_model_free(c->nn);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const struct an_model_ops cnn_ops = {
    .kind = "cnn",
    .predict = cnn_predict,
    .destroy = cnn_destroy,
};

int
an_cnn_wrap(struct nn_model *nn, const char *path, struct an_model **out,
            struct ss_err *err)
{
    struct an_model *m = calloc(1, sizeof(*m));
    struct an_cnn *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (m == NULL || c == NULL) {
        free(m);
        free(c);
        return err_set(err, -ENOMEM, "model %s: out of memory", path);
    }
    c->nn = nn;
    pthread_mutex_init(&c->lock, NULL);
    m->ops = &cnn_ops;
    m->priv = c;
    m->mask_glass = true;
    rc = meta_parse(c, m, path, err);
    if (rc < 0) {
        c->nn = NULL;
        an_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int
an__model_cnn_load(const char *path, struct an_model **out,
                   struct ss_err *err)
{
    struct nn_model *nn;
    int rc = nn_model_load(NULL, path, &nn, err);

    if (rc < 0)
        return err_prefix(err, "model %s", path);
    rc = an_cnn_wrap(nn, path, out, err);
    if (rc < 0)
        nn_model_free(nn);
    return rc;
}

struct an_cnn *
an_cnn_of(struct an_model *m)
{
    return m != NULL && m->ops == &cnn_ops ? m->priv : NULL;
}
