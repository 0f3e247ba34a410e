/* SPDX-License-Identifier: MIT */
/*
 * The training loop (what it does is described in train.h): batches of
 * augmented crops, cross-entropy with Adam, validation through the same
 * tiled segmentation the analysis uses, checkpoints that resume exactly
 * (the random stream is keyed by epoch and step, not by history), and
 * early stopping.
 */
#include "worker/analysis/train.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/analysis/cnn.h"
#include "worker/analysis/geojson.h"
#include "worker/analysis/traindata.h"

#define TILE_PX 256
#define MARGIN_PX 32
#define ALIGN 8
#define LR_PLATEAU 3

void
an_train_cfg_default(struct an_train_cfg *c)
{
    memset(c, 0, sizeof(*c));
    c->epochs = 30;
    c->steps_per_epoch = 40;
    c->batch = 8;
    c->crop_px = 96;
    c->patience = 10;
    c->lr = 2e-3;
    c->seed = 1;
    c->augment = true;
    c->patch_share = 0.25;
    c->dice_weight = 0.5;
    c->name = "slidescan-unet";
}

/* Small U-Net: three poolings, a dilated bottleneck, bilinear upsampling
 * with skip connections; receptive field about 68 px, inside the 32 px
 * margin on each side. */
char *
an_train_default_arch(double mpp, const char *name)
{
    static const char *layers =
        "["
        "{\"name\":\"e1.conv\",\"type\":\"conv2d\",\"out_channels\":16,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"e1.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"e1.relu\",\"type\":\"relu\"},"
        "{\"name\":\"p1\",\"type\":\"maxpool2d\",\"kernel\":2},"
        "{\"name\":\"e2.conv\",\"type\":\"conv2d\",\"out_channels\":32,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"e2.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"e2.relu\",\"type\":\"relu\"},"
        "{\"name\":\"p2\",\"type\":\"maxpool2d\",\"kernel\":2},"
        "{\"name\":\"e3.conv\",\"type\":\"conv2d\",\"out_channels\":48,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"e3.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"e3.relu\",\"type\":\"relu\"},"
        "{\"name\":\"p3\",\"type\":\"maxpool2d\",\"kernel\":2},"
        "{\"name\":\"b.conv\",\"type\":\"conv2d\",\"out_channels\":64,"
        "\"kernel\":3,\"padding\":2,\"dilation\":2,\"bias\":false},"
        "{\"name\":\"b.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"b.relu\",\"type\":\"relu\"},"
        "{\"name\":\"u3\",\"type\":\"upsample_bilinear\",\"scale\":2},"
        "{\"name\":\"c3\",\"type\":\"concat\",\"inputs\":[\"u3\","
        "\"e3.relu\"]},"
        "{\"name\":\"d3.conv\",\"type\":\"conv2d\",\"out_channels\":32,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"d3.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"d3.relu\",\"type\":\"relu\"},"
        "{\"name\":\"u2\",\"type\":\"upsample_bilinear\",\"scale\":2},"
        "{\"name\":\"c2\",\"type\":\"concat\",\"inputs\":[\"u2\","
        "\"e2.relu\"]},"
        "{\"name\":\"d2.conv\",\"type\":\"conv2d\",\"out_channels\":16,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"d2.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"d2.relu\",\"type\":\"relu\"},"
        "{\"name\":\"u1\",\"type\":\"upsample_bilinear\",\"scale\":2},"
        "{\"name\":\"c1\",\"type\":\"concat\",\"inputs\":[\"u1\","
        "\"e1.relu\"]},"
        "{\"name\":\"d1.conv\",\"type\":\"conv2d\",\"out_channels\":16,"
        "\"kernel\":3,\"padding\":1,\"bias\":false},"
        "{\"name\":\"d1.bn\",\"type\":\"batchnorm2d\"},"
        "{\"name\":\"d1.relu\",\"type\":\"relu\"},"
        "{\"name\":\"logits\",\"type\":\"conv2d\",\"out_channels\":3,"
        "\"kernel\":1}]";
    json_error_t je;
    json_t *o = json_pack("{s:s, s:i, s:s, s:[{s:s, s:i}], s:[s], "
                          "s:{s:[s,s,s], s:f, s:i, s:i, s:i, s:[f,f,f], "
                          "s:[f,f,f], s:s, s:s}, s:o}",
                          "format", "slidescan-nn", "version", 1,
                          "name", name, "inputs", "name", "image",
                          "channels", 3, "outputs", "logits", "meta",
                          "classes", "glass", "tumor", "stroma", "mpp", mpp,
                          "tile_px", TILE_PX, "margin_px", MARGIN_PX,
                          "align", ALIGN, "mean", 0.5, 0.5, 0.5, "std",
                          0.25, 0.25, 0.25, "gradcam_layer", "b.relu",
                          "name", name, "layers",
                          json_loads(layers, 0, &je));
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

/* Training state that a checkpoint carries. */
struct state {
    int epoch;                      /* epochs completed */
    int best_epoch, bad_epochs;
    double best_score, first_loss;
    double lr;                      /* current learning rate */
};

struct trainer {
    const struct an_train_cfg *cfg;
    struct an_train_data *d;
    struct nn_model *nn;
    struct nn_optim *opt;
    struct an_model *view;          /* analysis view of nn (borrowed) */
    struct state st;
    int *train_slides, ntrain_slides, *train_patches, ntrain_patches;
};

static const char *
out_file(const struct an_train_cfg *c, const char *name)
{
    static __thread char p[4200];

    snprintf(p, sizeof(p), "%s/%s", c->out_dir, name);
    return p;
}

static int
model_create(struct trainer *t, struct ss_err *err)
{
    char *arch = NULL;
    int rc;

    if (t->cfg->init != NULL)
        return nn_model_load(NULL, t->cfg->init, &t->nn, err);
    if (t->cfg->arch != NULL) {
        rc = util_read_file(t->cfg->arch, &arch, NULL, err);
        if (rc < 0)
            return rc;
    } else {
        arch = an_train_default_arch(t->d->mpp, t->cfg->name);
        if (arch == NULL)
            return err_set(err, -ENOMEM, "architecture: out of memory");
    }
    rc = nn_model_new(arch, t->cfg->seed, &t->nn, err);
    free(arch);
    return rc;
}

static int
view_create(struct trainer *t, struct ss_err *err)
{
    struct an_cnn *c;
    int rc = an_cnn_wrap(t->nn, "training model", &t->view, err);

    if (rc < 0)
        return rc;
    c = an_cnn_of(t->view);
    c->borrowed = true;
    if (fabs(t->view->mpp - t->d->mpp) > 1e-6)
        return err_set(err, -EINVAL, "model works at %.3f µm/px but the data "
                       "was loaded at %.3f", t->view->mpp, t->d->mpp);
    return 0;
}

static int
index_sources(struct trainer *t)
{
    int i;

    t->train_slides = malloc(((size_t)t->d->n + 1) * sizeof(int));
    t->train_patches = malloc(((size_t)t->d->n + 1) * sizeof(int));
    if (t->train_slides == NULL || t->train_patches == NULL)
        return -ENOMEM;
    for (i = 0; i < t->d->n; i++) {
        if (t->d->s[i].val)
            continue;
        if (t->d->s[i].patch_class >= 0)
            t->train_patches[t->ntrain_patches++] = i;
        else
            t->train_slides[t->ntrain_slides++] = i;
    }
    return t->ntrain_slides + t->ntrain_patches > 0 ? 0 : -EINVAL;
}

/* One optimisation step on a fresh batch; *loss gets its loss. */
static int
train_step(struct trainer *t, int step, double *loss, struct ss_err *err)
{
    const struct an_train_cfg *c = t->cfg;
    int B = c->batch, C = c->crop_px, b, rc = 0;
    struct nn_tensor *x = nn_tensor_new4(B, 3, C, C), *g = NULL, *gd = NULL;
    double dice = 0;
    int32_t *lab = malloc((size_t)B * C * C * sizeof(int32_t));
    uint8_t *rgb = malloc((size_t)C * C * 3);
    const struct nn_tensor *y;
    struct rng r;

    if (x == NULL || lab == NULL || rgb == NULL) {
        rc = err_set(err, -ENOMEM, "training batch: out of memory");
        goto out;
    }
    rng_init(&r, rng_key(c->seed, (uint64_t)t->st.epoch, (uint64_t)step,
                         11));
    for (b = 0; b < B && rc == 0; b++) {
        int use_patch = t->ntrain_slides == 0 ||
                        (t->ntrain_patches > 0 &&
                         rng_uniform(&r) < c->patch_share);
        int src = use_patch
            ? t->train_patches[(int)(rng_uniform(&r) * t->ntrain_patches)]
            : t->train_slides[(int)(rng_uniform(&r) * t->ntrain_slides)];
        rc = an__train_draw(&t->d->s[src], C, &r, c->augment, rgb,
                            lab + (size_t)b * C * C);
        nn_tensor_set_rgb8(x, b, rgb, (size_t)C * 3, an_cnn_of(t->view)->mean,
                           an_cnn_of(t->view)->std);
    }
    if (rc == 0)
        rc = nn_model_forward(t->nn, x, NN_MODE_TRAIN, err);
    if (rc == 0) {
        y = nn_model_output(t->nn, NULL);
        g = nn_tensor_new_like(y);
        gd = nn_tensor_new_like(y);
        rc = g != NULL && gd != NULL
             ? nn_loss_cross_entropy(y, lab, NULL, AN_UNLABELLED, loss, g,
                                     err)
             : err_set(err, -ENOMEM, "out of memory");
    }
    /* Plus dice_weight × soft Dice, which weighs each class by its own
     * size and so sharpens small regions and thin structures. */
    if (rc == 0 && c->dice_weight > 0)
        rc = nn_loss_dice(y, lab, NULL, AN_UNLABELLED, 1.0, &dice, gd, err);
    if (rc == 0 && c->dice_weight > 0) {
        *loss += c->dice_weight * dice;
        rc = nn_tensor_axpy(g, (float)c->dice_weight, gd);
    }
    if (rc == 0) {
        nn_model_zero_grad(t->nn);
        rc = nn_model_backward(t->nn, NULL, g, err);
    }
    if (rc == 0)
        rc = nn_optim_step(t->opt, err);
out:
    nn_tensor_free(x);
    nn_tensor_free(g);
    nn_tensor_free(gd);
    free(lab);
    free(rgb);
    return rc;
}

/* The class most of a patch's pixels get (mirrored out to the crop). */
static int
patch_predict(struct trainer *t, const struct an_train_source *s,
              struct ss_err *err)
{
    int C = t->cfg->crop_px, n[3] = { 0, 0, 0 }, x, y, k, rc;
    uint8_t *rgb = malloc((size_t)C * C * 3);
    int32_t *lab = malloc((size_t)C * C * sizeof(int32_t));
    struct img im = { C, C, 3, IMG_U8, rgb };
    struct nn_tensor *out;
    struct rng r;

    if (rgb == NULL || lab == NULL) {
        free(rgb);
        free(lab);
        return err_set(err, -ENOMEM, "validation: out of memory");
    }
    rng_init(&r, 5);
    an__train_draw(s, C, &r, false, rgb, lab);
    rc = an_cnn_logits(an_cnn_of(t->view), &im, &out, NN_MODE_INFER, err);
    for (y = 0; rc == 0 && y < s->rgb->h && y < C; y++)
        for (x = 0; x < s->rgb->w && x < C; x++) {
            int best = 0;
            for (k = 1; k < 3; k++)
                if (*nn_tensor_at(out, 0, k, y, x) >
                    *nn_tensor_at(out, 0, best, y, x))
                    best = k;
            n[best]++;
        }
    free(rgb);
    free(lab);
    if (rc < 0)
        return rc;
    return n[1] >= n[0] && n[1] >= n[2] ? 1 : n[2] >= n[0] ? 2 : 0;
}

/* Validation: pixel confusion over validation slides (through the tiled
 * segmentation), patch confusion over validation patches. */
static int
validate(struct trainer *t, struct an_confusion *px, struct an_confusion *pt,
         struct ss_err *err)
{
    struct an_seg_options so;
    int i, rc;

    an_confusion_init(px, 3);
    an_confusion_init(pt, 3);
    an_seg_options_default(&so);
    so.threads = 1;
    nn_model_params_changed(t->nn);
    for (i = 0; i < t->d->n; i++) {
        const struct an_train_source *s = &t->d->s[i];
        struct an_seg *sg;
        if (!s->val)
            continue;
        if (s->patch_class >= 0) {
            rc = patch_predict(t, s, err);
            if (rc < 0)
                return rc;
            pt->m[s->patch_class][rc]++;
            continue;
        }
        rc = an_segment_image(s->rgb, t->d->mpp, t->view, &so, &sg, err);
        if (rc == 0)
            rc = an_confusion_add(px, s->label->data, sg->label->data,
                                  (size_t)s->label->w * s->label->h,
                                  AN_UNLABELLED, err);
        an_seg_free(sg);
        if (rc < 0)
            return err_prefix(err, "validation %s", s->name);
    }
    return 0;
}

static double
val_score(const struct an_confusion *px, const struct an_confusion *pt,
          double *dice_t, double *dice_s, double *acc)
{
    struct an_class_scores a, b;
    int64_t ok = 0, all = 0;
    double sum = 0;
    int k, j, n = 0;

    an_class_scores(px, 1, &a);
    an_class_scores(px, 2, &b);
    *dice_t = a.dice;
    *dice_s = b.dice;
    for (k = 0; k < 3; k++)
        for (j = 0; j < 3; j++) {
            all += pt->m[k][j];
            ok += k == j ? pt->m[k][j] : 0;
        }
    *acc = all > 0 ? (double)ok / all : NAN;
    /* Pixels of whole validation slides outweigh a handful of patches:
     * patch accuracy decides only when there is no validation slide. */
    if (isfinite(a.dice) && isfinite(b.dice)) {
        sum += (a.dice + b.dice) / 2;
        n++;
    } else if (isfinite(*acc)) {
        sum += *acc;
        n++;
    }
    return n > 0 ? sum / n : NAN;
}

static int
state_save(const struct trainer *t, struct ss_err *err)
{
    json_t *o = json_pack("{s:i, s:i, s:i, s:f, s:f, s:f}", "epoch",
                          t->st.epoch, "best_epoch", t->st.best_epoch,
                          "bad_epochs", t->st.bad_epochs, "best_score",
                          isfinite(t->st.best_score) ? t->st.best_score : -1,
                          "first_loss", t->st.first_loss, "lr", t->st.lr);
    char *s = json_dumps(o, JSON_COMPACT);
    int rc;

    json_decref(o);
    rc = nn_model_save(t->nn, NULL, out_file(t->cfg,
                       "checkpoint.safetensors"), err);
    if (rc == 0)
        rc = nn_optim_save(t->opt, out_file(t->cfg, "checkpoint.optim"),
                           err);
    if (rc == 0)
        rc = util_write_durable(out_file(t->cfg, "checkpoint.json"), s,
                                strlen(s), err);
    free(s);
    return rc;
}

static int
state_load(struct trainer *t, struct ss_err *err)
{
    json_t *o = json_load_file(out_file(t->cfg, "checkpoint.json"), 0, NULL);

    if (o == NULL)
        return err_set(err, -ENOENT, "%s: no checkpoint to resume from",
                       out_file(t->cfg, "checkpoint.json"));
    t->st.epoch = (int)json_integer_value(json_object_get(o, "epoch"));
    t->st.best_epoch = (int)json_integer_value(json_object_get(o,
                                                               "best_epoch"));
    t->st.bad_epochs = (int)json_integer_value(json_object_get(o,
                                                               "bad_epochs"));
    t->st.best_score = json_number_value(json_object_get(o, "best_score"));
    t->st.first_loss = json_number_value(json_object_get(o, "first_loss"));
    t->st.lr = json_number_value(json_object_get(o, "lr"));
    json_decref(o);
    return 0;
}

static void
log_epoch(struct trainer *t, double loss, double score, double dt,
          double dp, double acc, double secs)
{
    char b[4][16];

    char line[512];

    snprintf(line, sizeof(line), "{\"epoch\":%d,\"train_loss\":%.6f,"
             "\"val_score\":%.6f,\"val_dice_tumor\":%.6f,"
             "\"val_dice_stroma\":%.6f,\"val_patch_accuracy\":%.6f,"
             "\"seconds\":%.1f}\n", t->st.epoch, loss,
             isfinite(score) ? score : -1, isfinite(dt) ? dt : -1,
             isfinite(dp) ? dp : -1, isfinite(acc) ? acc : -1, secs);
    if (!t->cfg->quiet) {
        printf("epoch %3d  loss %.4f  val %s  dice tumour %s stroma "
               "%s  patch acc %s  %.1f s\n", t->st.epoch, loss,
               an_score_text(score, b[0]), an_score_text(dt, b[1]),
               an_score_text(dp, b[2]), an_score_text(acc, b[3]), secs);
        fflush(stdout);
    }
    {
        /* The per-epoch log is a convenience: training goes on without
         * it, but says why it is missing. */
        const char *path = out_file(t->cfg, "metrics.jsonl");
        FILE *f = fopen(path, "a");
        int bad = f == NULL;

        if (f != NULL) {
            bad = fputs(line, f) == EOF;
            bad |= fclose(f) != 0;
        }
        if (bad)
            log_warn("train", "epoch log not written path=%s: %s", path,
                     strerror(errno));
    }
}

static int
run_epoch(struct trainer *t, struct an_train_report *rep, struct ss_err *err)
{
    struct an_confusion px, pt;
    double sum = 0, loss = 0, t0 = util_now_ms(), score, dt, ds, acc;
    int s, rc = 0;

    for (s = 0; s < t->cfg->steps_per_epoch && rc == 0; s++) {
        rc = train_step(t, s, &loss, err);
        sum += loss;
    }
    if (rc < 0)
        return rc;
    t->st.epoch++;
    loss = sum / t->cfg->steps_per_epoch;
    if (t->st.epoch == 1)
        t->st.first_loss = loss;
    rep->first_loss = t->st.first_loss;
    rep->last_loss = loss;
    rc = validate(t, &px, &pt, err);
    if (rc < 0)
        return rc;
    rep->last_val_patches = pt;
    score = val_score(&px, &pt, &dt, &ds, &acc);
    log_epoch(t, loss, score, dt, ds, acc, (util_now_ms() - t0) / 1e3);
    /* With no validation data every epoch counts as the best. */
    if (!isfinite(score) || !(score <= t->st.best_score) ||
        t->st.best_epoch == 0) {
        t->st.best_score = isfinite(score) ? score : t->st.best_score;
        t->st.best_epoch = t->st.epoch;
        t->st.bad_epochs = 0;
        rep->val_pixels = px;
        rep->val_patches = pt;
        rc = nn_model_save(t->nn, NULL, out_file(t->cfg, "best.safetensors"),
                           err);
    } else {
        t->st.bad_epochs++;
        /* Plateau: halve the learning rate every LR_PLATEAU bad epochs. */
        if (t->st.bad_epochs % LR_PLATEAU == 0) {
            t->st.lr *= 0.5;
            nn_optim_set_lr(t->opt, t->st.lr);
        }
    }
    return rc == 0 ? state_save(t, err) : rc;
}

static int
trainer_open(struct trainer *t, const struct an_train_cfg *cfg,
             struct an_train_data *d, struct ss_err *err)
{
    struct nn_optim_cfg oc;
    int rc;

    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->d = d;
    t->st.best_score = NAN;
    rc = util_mkdir_leaf(cfg->out_dir, err);
    if (rc == 0 && cfg->resume) {
        rc = state_load(t, err);
        if (rc == 0)
            rc = nn_model_load(NULL, out_file(cfg, "checkpoint.safetensors"),
                               &t->nn, err);
    } else if (rc == 0) {
        unlink(out_file(cfg, "metrics.jsonl"));
        rc = model_create(t, err);
    }
    if (rc == 0)
        rc = view_create(t, err);
    if (rc == 0 && index_sources(t) < 0)
        rc = err_set(err, -EINVAL, "no training data left after the "
                     "validation split");
    if (!(t->st.lr > 0))
        t->st.lr = cfg->lr;
    nn_optim_cfg_default(&oc, NN_OPTIM_ADAM);
    oc.lr = t->st.lr;
    if (rc == 0)
        rc = nn_optim_new(t->nn, &oc, &t->opt, err);
    if (rc == 0 && cfg->resume)
        rc = nn_optim_load(t->opt, out_file(cfg, "checkpoint.optim"), err);
    return rc;
}

static void
trainer_close(struct trainer *t)
{
    nn_optim_free(t->opt);
    an_model_free(t->view);
    nn_model_free(t->nn);
    free(t->train_slides);
    free(t->train_patches);
}

int
an_train_run(const struct an_train_cfg *cfg, struct an_train_data *d,
             struct an_train_report *rep, struct ss_err *err)
{
    struct trainer t;
    int rc;

    memset(rep, 0, sizeof(*rep));
    an_confusion_init(&rep->val_pixels, 3);
    an_confusion_init(&rep->val_patches, 3);
    rc = trainer_open(&t, cfg, d, err);
    while (rc == 0 && t.st.epoch < cfg->epochs) {
        if (cfg->patience > 0 && t.st.bad_epochs >= cfg->patience) {
            rep->stopped_early = true;
            break;
        }
        rc = run_epoch(&t, rep, err);
        rep->epochs_run++;
    }
    rep->best_epoch = t.st.best_epoch;
    rep->best_score = t.st.best_score;
    trainer_close(&t);
    if (rc == 0) {
        char *buf;
        size_t len;
        rc = util_read_file(out_file(cfg, "best.safetensors"), &buf, &len,
                            err);
        if (rc == 0)
            rc = util_write_durable(out_file(cfg, "model.safetensors"), buf,
                                    len, err);
        if (rc == 0)
            free(buf);
    }
    return rc;
}

int
an_train_loso(const struct an_train_cfg *cfg, struct an_train_data *d,
              struct an_confusion *conf, struct ss_err *err)
{
    char groups[64][128];
    int ng = 0, i, j, rc = 0;

    an_confusion_init(conf, 3);
    for (i = 0; i < d->n && ng < 64; i++) {
        if (d->s[i].patch_class < 0)
            continue;
        for (j = 0; j < ng && strcmp(groups[j], d->s[i].group); j++)
            ;
        if (j == ng)
            snprintf(groups[ng++], sizeof(groups[0]), "%s", d->s[i].group);
    }
    for (j = 0; j < ng && rc == 0; j++) {
        struct an_train_cfg fc = *cfg;
        struct an_train_report rep;
        int k, m;
        an_train_split(d, groups[j], 0, 0);
        /* The held-out group is a test set: no early stopping on it, and
         * the last epoch's predictions count. */
        fc.patience = 0;
        rc = an_train_run(&fc, d, &rep, err);
        for (k = 0; k < 3; k++)
            for (m = 0; m < 3; m++)
                conf->m[k][m] += rep.last_val_patches.m[k][m];
        if (!cfg->quiet)
            printf("fold %d/%d held out %s\n", j + 1, ng, groups[j]);
    }
    for (i = 0; i < d->n; i++)
        d->s[i].val = false;
    return rc;
}
