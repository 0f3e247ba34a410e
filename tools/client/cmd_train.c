/* SPDX-License-Identifier: MIT */
/*
 * slidescan train --out DIR [--slide WSI --labels MASK|GEOJSON]...
 *                 [--patches DIR[@MPP]]... [options]
 *
 * Trains a tumour/stroma segmentation CNN (worker/analysis/train.h) from
 * annotated slides and labelled patch folders and writes
 * DIR/model.safetensors, checkpoints and metrics.jsonl.  --loso instead
 * runs leave-one-source-image-out over the patch groups and prints the
 * pooled patch confusion matrix.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tools/client/client.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/train.h"

#define MAX_INPUTS 64

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: slidescan train --out DIR [--slide WSI --labels MASK] ...\n"
        "                       [--patches DIR[@MPP]] ... [options]\n"
        "\n"
        "  --slide WSI --labels L   an annotated slide: L is a label PNG\n"
        "                           (0 glass, 1 tumour, 2 stroma, 255\n"
        "                           unlabelled) of the slide's size at\n"
        "                           level 0 or at --mpp, or QuPath GeoJSON\n"
        "  --patches DIR[@MPP]      labels.csv folder, µm/px (0.5)\n"
        "  --mpp UM                 model resolution (2.0)\n"
        "  --epochs N (30)  --steps N per epoch (40)  --batch N (8)\n"
        "  --crop PX (96)  --lr X (0.002)  --patience N (6)  --seed N (1)\n"
        "  --val-groups A,B         validation source groups\n"
        "  --val-fraction F         else hold out about F of the sources\n"
        "                           by whole groups (0.2)\n"
        "  --init MODEL  --arch FILE  --name NAME  --resume  --no-augment\n"
        "  --dice W                 weight of the soft Dice loss (0.5)\n"
        "  --slide-mpp UM           pixel size for slides that state none\n"
        "  --loso                   leave-one-source-image-out over the\n"
        "                           patch groups, pooled confusion\n");
}

struct inputs {
    const char *slide[MAX_INPUTS], *labels[MAX_INPUTS];
    const char *patches[MAX_INPUTS];
    int nslide, nlabels, npatches;
    double mpp, slide_mpp, val_fraction;
    const char *val_groups;
    int loso;
};

static int
parse(int argc, char **argv, struct an_train_cfg *c, struct inputs *in)
{
    static const struct option opts[] = {
        { "out", 1, NULL, 'o' }, { "slide", 1, NULL, 's' },
        { "labels", 1, NULL, 'l' }, { "patches", 1, NULL, 'p' },
        { "mpp", 1, NULL, 'M' }, { "epochs", 1, NULL, 'e' },
        { "steps", 1, NULL, 'S' }, { "batch", 1, NULL, 'b' },
        { "crop", 1, NULL, 'c' }, { "lr", 1, NULL, 'r' },
        { "patience", 1, NULL, 'P' }, { "seed", 1, NULL, 'd' },
        { "val-groups", 1, NULL, 'g' }, { "val-fraction", 1, NULL, 'f' },
        { "init", 1, NULL, 'i' }, { "arch", 1, NULL, 'a' },
        { "name", 1, NULL, 'n' }, { "resume", 0, NULL, 'R' },
        { "no-augment", 0, NULL, 'A' }, { "loso", 0, NULL, 'L' },
        { "slide-mpp", 1, NULL, 'm' }, { "dice", 1, NULL, 'D' },
        { "help", 0, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'o': c->out_dir = optarg; break;
        case 's': if (in->nslide < MAX_INPUTS)
                      in->slide[in->nslide++] = optarg;
                  break;
        case 'l': if (in->nlabels < MAX_INPUTS)
                      in->labels[in->nlabels++] = optarg;
                  break;
        case 'p': if (in->npatches < MAX_INPUTS)
                      in->patches[in->npatches++] = optarg;
                  break;
        case 'M': in->mpp = atof(optarg); break;
        case 'm': in->slide_mpp = atof(optarg); break;
        case 'e': c->epochs = atoi(optarg); break;
        case 'S': c->steps_per_epoch = atoi(optarg); break;
        case 'b': c->batch = atoi(optarg); break;
        case 'c': c->crop_px = atoi(optarg); break;
        case 'r': c->lr = atof(optarg); break;
        case 'P': c->patience = atoi(optarg); break;
        case 'd': c->seed = strtoull(optarg, NULL, 10); break;
        case 'g': in->val_groups = optarg; break;
        case 'f': in->val_fraction = atof(optarg); break;
        case 'i': c->init = optarg; break;
        case 'a': c->arch = optarg; break;
        case 'n': c->name = optarg; break;
        case 'R': c->resume = true; break;
        case 'A': c->augment = false; break;
        case 'L': in->loso = 1; break;
        case 'D': c->dice_weight = atof(optarg); break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (c->out_dir == NULL || in->nslide != in->nlabels ||
        in->nslide + in->npatches == 0 || optind != argc || in->mpp <= 0 ||
        c->epochs < 1 || c->steps_per_epoch < 1 || c->batch < 1 ||
        c->crop_px < 16 || c->crop_px % 8 != 0) {
        fprintf(stderr, "slidescan train: need --out, data (--slide with "
                "--labels, or --patches), and sane numbers (crop a "
                "multiple of 8)\n");
        return -1;
    }
    return 0;
}

static int
load(struct an_train_data *d, const struct inputs *in, struct ss_err *err)
{
    int i, rc = 0;

    for (i = 0; i < in->nslide && rc == 0; i++)
        rc = an_train_add_slide(d, in->slide[i], in->labels[i],
                                in->slide_mpp, err);
    for (i = 0; i < in->npatches && rc == 0; i++) {
        char dir[4096];
        const char *at = strrchr(in->patches[i], '@');
        double pm = at != NULL ? atof(at + 1) : 0.5;
        snprintf(dir, sizeof(dir), "%.*s", at != NULL ?
                 (int)(at - in->patches[i]) : (int)strlen(in->patches[i]),
                 in->patches[i]);
        rc = an_train_add_patches(d, dir, pm > 0 ? pm : 0.5, err);
    }
    return rc;
}

static void
print_confusion(const char *title, const struct an_confusion *c)
{
    static const char *names[3] = { "glass", "tumor", "stroma" };
    int k, j;

    printf("%s (rows truth, columns prediction)\n%-8s", title, "");
    for (j = 0; j < 3; j++)
        printf(" %10s", names[j]);
    for (k = 0; k < 3; k++) {
        int64_t row = 0;
        printf("\n%-8s", names[k]);
        for (j = 0; j < 3; j++) {
            printf(" %10lld", (long long)c->m[k][j]);
            row += c->m[k][j];
        }
        if (row > 0)
            printf("   accuracy %.3f", (double)c->m[k][k] / row);
    }
    printf("\n");
}

/* "%.4f", or "n/a" when validation could not score. */
static const char *
score_text(double v, char buf[16])
{
    if (!isfinite(v) || v < 0)
        return "n/a";
    snprintf(buf, 16, "%.4f", v);
    return buf;
}

/* Classes the validation split cannot score, or scores on a patch from a
 * source image training also sees. */
static void
warn_split(const struct an_train_data *d)
{
    static const char *const name[3] = { "background", "tumour",
                                         "stroma" };
    int train[3], val[3], k;

    an_train_split_counts(d, train, val);
    for (k = 0; k < 3; k++) {
        if (val[k] == 0 && train[k] > 0)
            fprintf(stderr, "slidescan train: warning: no validation "
                    "example of class %s (%d for training%s): its scores "
                    "are n/a\n", name[k], train[k],
                    train[k] < 2 ? ", too few to hold one out" : "");
        if (d->val_shares_source[k])
            fprintf(stderr, "slidescan train: warning: the patches of "
                    "class %s all come from one source image; one is held "
                    "out for validation, so validation shares that image "
                    "with training\n", name[k]);
    }
}

int
cmd_train(int argc, char **argv)
{
    static struct inputs in;
    struct an_train_cfg cfg;
    struct an_train_data d;
    struct an_train_report rep;
    struct an_confusion cv;
    struct ss_err err;
    char sc[16];
    int rc, nval;

    an_train_cfg_default(&cfg);
    in.mpp = 2.0;
    in.val_fraction = 0.2;
    rc = parse(argc, argv, &cfg, &in);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    log_set_level(LOG_LVL_WARN);
    an_train_data_init(&d, in.mpp);
    err_clear(&err);
    rc = load(&d, &in, &err);
    if (rc == 0 && in.loso) {
        rc = an_train_loso(&cfg, &d, &cv, &err);
        if (rc == 0)
            print_confusion("leave-one-source-image-out patches", &cv);
    } else if (rc == 0) {
        nval = an_train_split(&d, in.val_groups, in.val_fraction, cfg.seed);
        printf("sources %d, validation %d\n", d.n, nval);
        if (nval > 0)
            warn_split(&d);
        rc = an_train_run(&cfg, &d, &rep, &err);
        if (rc == 0) {
            printf("epochs %d, best %d (score %s)%s, loss %.4f -> %.4f\n",
                   rep.epochs_run, rep.best_epoch,
                   score_text(rep.best_score, sc),
                   rep.stopped_early ? ", stopped early" : "",
                   rep.first_loss, rep.last_loss);
            print_confusion("validation pixels", &rep.val_pixels);
            print_confusion("validation patches", &rep.val_patches);
            printf("model %s/model.safetensors\n", cfg.out_dir);
        }
    }
    an_train_data_free(&d);
    if (rc < 0) {
        fprintf(stderr, "slidescan train: %s\n", err.msg);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
