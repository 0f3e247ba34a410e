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
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/slide.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/train.h"

#define MAX_INPUTS 64
/* Option ranges: beyond them a run would not end in a working day or
 * would not fit in memory, so a larger value is a typing mistake. */
#define TRAIN_EPOCHS_MAX 10000
#define TRAIN_STEPS_MAX 100000
#define TRAIN_BATCH_MAX 256
#define TRAIN_CROP_MAX 1024

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
        "  --mpp UM                 model resolution (2.0; 0.05..100)\n"
        "  --epochs N (30; 1..10000)  --steps N per epoch (40; 1..100000)\n"
        "  --batch N (8; 1..256)  --crop PX (96; 16..1024, a multiple of 8)\n"
        "  --lr X (0.002; above 0, at most 1)  --seed N (1; 0..2^64-1)\n"
        "  --patience N             epochs without improvement before\n"
        "                           stopping (10; 0..10000, 0 never)\n"
        "  --val-groups A,B         validation source groups\n"
        "  --val-fraction F         else hold out about F of the sources\n"
        "                           by whole groups (0.2; 0..0.9)\n"
        "  --init MODEL  --arch FILE  --name NAME  --resume  --no-augment\n"
        "  --dice W                 weight of the soft Dice loss (0.5;\n"
        "                           0..10)\n"
        "  --slide-mpp UM           pixel size for slides that state none\n"
        "  --loso                   leave-one-source-image-out over the\n"
        "                           patch groups, pooled confusion\n"
        "\n"
        "Options are checked before any input is read: a value out of its\n"
        "range exits 2 naming the option, the value and the range; a\n"
        "missing --slide, --labels, --patches, --init or --arch exits 5.\n"
        "A failed run removes the --out directory it created.\n");
}

struct inputs {
    const char *slide[MAX_INPUTS], *labels[MAX_INPUTS];
    const char *patches[MAX_INPUTS];
    int nslide, nlabels, npatches;
    double mpp, slide_mpp, val_fraction;
    const char *val_groups;
    int loso;
};

/* A number option, the whole text, in lo..hi (whole: an integer);
 * otherwise says which option, the value and the range. */
static int
num_arg(const char *opt, const char *text, double lo, double hi,
        bool whole, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (end != text && *end == '\0' && errno == 0 && isfinite(v) &&
        v >= lo && v <= hi && (!whole || v == floor(v))) {
        *out = v;
        return 0;
    }
    fprintf(stderr, "slidescan train: %s: '%s' is not %s from %g to %g\n",
            opt, text, whole ? "a whole number" : "a number", lo, hi);
    return -1;
}

static int
int_arg(const char *opt, const char *text, double lo, double hi, int *out)
{
    double v;

    if (num_arg(opt, text, lo, hi, true, &v) < 0)
        return -1;
    *out = (int)v;
    return 0;
}

/* One option with a value; -1 after saying what is wrong with it. */
static int
option(int o, const char *arg, struct an_train_cfg *c, struct inputs *in)
{
    char *end;

    switch (o) {
    case 'M': return num_arg("--mpp", arg, AN_MPP_MIN, AN_MPP_MAX, false,
                             &in->mpp);
    case 'm': return num_arg("--slide-mpp", arg, AN_MPP_MIN, AN_MPP_MAX,
                             false, &in->slide_mpp);
    case 'e': return int_arg("--epochs", arg, 1, TRAIN_EPOCHS_MAX,
                             &c->epochs);
    case 'S': return int_arg("--steps", arg, 1, TRAIN_STEPS_MAX,
                             &c->steps_per_epoch);
    case 'b': return int_arg("--batch", arg, 1, TRAIN_BATCH_MAX, &c->batch);
    case 'c':
        if (int_arg("--crop", arg, 16, TRAIN_CROP_MAX, &c->crop_px) < 0)
            return -1;
        if (c->crop_px % 8 == 0)
            return 0;
        fprintf(stderr, "slidescan train: --crop: '%s' is not a multiple "
                "of 8 (the network halves it three times)\n", arg);
        return -1;
    case 'P': return int_arg("--patience", arg, 0, TRAIN_EPOCHS_MAX,
                             &c->patience);
    case 'r':
        c->lr = strtod(arg, &end);
        if (end != arg && *end == '\0' && c->lr > 0 && c->lr <= 1)
            return 0;
        fprintf(stderr, "slidescan train: --lr: '%s' is not a learning "
                "rate above 0 and at most 1\n", arg);
        return -1;
    case 'f': return num_arg("--val-fraction", arg, 0, 0.9, false,
                             &in->val_fraction);
    case 'D': return num_arg("--dice", arg, 0, 10, false, &c->dice_weight);
    case 'd':
        if (util_parse_u64(arg, &c->seed) == 0)
            return 0;
        fprintf(stderr, "slidescan train: --seed: '%s' is not a whole "
                "number from 0 to %" PRIu64 "\n", arg, UINT64_MAX);
        return -1;
    default:
        return 0;
    }
}

/* What the options say, checked before anything is read or created. */
static int
check_set(const struct an_train_cfg *c, const struct inputs *in,
          int argc, char **argv)
{
    if (optind != argc) {
        fprintf(stderr, "slidescan train: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (c->out_dir == NULL) {
        fprintf(stderr, "slidescan train: --out DIR is required\n");
        return -1;
    }
    if (in->nslide != in->nlabels) {
        fprintf(stderr, "slidescan train: --slide and --labels come in "
                "pairs: %d --slide, %d --labels\n", in->nslide,
                in->nlabels);
        return -1;
    }
    if (in->nslide + in->npatches == 0) {
        fprintf(stderr, "slidescan train: no data: give --slide WSI "
                "--labels L, or --patches DIR\n");
        return -1;
    }
    return 0;
}

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
        case 'g': in->val_groups = optarg; break;
        case 'i': c->init = optarg; break;
        case 'a': c->arch = optarg; break;
        case 'n': c->name = optarg; break;
        case 'R': c->resume = true; break;
        case 'A': c->augment = false; break;
        case 'L': in->loso = 1; break;
        case 'h': usage(stdout); return 1;
        case '?': usage(stderr); return -1;
        default:
            if (option(o, optarg, c, in) < 0)
                return -1;
        }
    }
    return check_set(c, in, argc, argv);
}

/* An input that does not exist, said as such. */
static bool
missing(const char *opt, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
        return false;
    fprintf(stderr, "slidescan train: %s %s: %s\n", opt, path,
            strerror(errno));
    return true;
}

/* A --patches DIR[@MPP] taken apart; -1 after saying why not. */
static int
patches_arg(const char *arg, char *dir, size_t len, double *mpp)
{
    const char *at = strrchr(arg, '@');

    *mpp = 0.5;
    snprintf(dir, len, "%.*s", at != NULL ? (int)(at - arg)
             : (int)strlen(arg), arg);
    if (at == NULL)
        return 0;
    return num_arg("--patches DIR@MPP", at + 1, AN_MPP_MIN, AN_MPP_MAX,
                   false, mpp);
}

/* Every input exists (else "not found", exit 5) and every --patches
 * @MPP is sane (else a usage error), before anything is loaded. */
static int
inputs_exist(const struct an_train_cfg *c, const struct inputs *in)
{
    char path[4096];
    struct ss_err e;
    double mpp;
    int i;

    for (i = 0; i < in->nslide; i++) {
        if (slide_spec_parse(in->slide[i], path, sizeof(path), &mpp,
                             &e) < 0) {
            fprintf(stderr, "slidescan train: --slide %s\n", e.msg);
            return EXIT_USAGE;
        }
        if (missing("--slide", path) || missing("--labels", in->labels[i]))
            return EXIT_NOTFOUND;
    }
    for (i = 0; i < in->npatches; i++) {
        if (patches_arg(in->patches[i], path, sizeof(path), &mpp) < 0)
            return EXIT_USAGE;
        if (missing("--patches", path))
            return EXIT_NOTFOUND;
    }
    if ((c->init != NULL && missing("--init", c->init)) ||
        (c->arch != NULL && missing("--arch", c->arch)))
        return EXIT_NOTFOUND;
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
        double pm;

        patches_arg(in->patches[i], dir, sizeof(dir), &pm);
        rc = an_train_add_patches(d, dir, pm, err);
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
    struct ss_err err, rm;
    bool created, loaded;
    char sc[16];
    int rc, nval;

    an_train_cfg_default(&cfg);
    in.mpp = 2.0;
    in.val_fraction = 0.2;
    rc = parse(argc, argv, &cfg, &in);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    rc = inputs_exist(&cfg, &in);
    if (rc != 0)
        return rc;
    /* A missing parent of --out is the output's failure (1), said before
     * the inputs are loaded. */
    if (client__out_parent("train", cfg.out_dir) != 0)
        return EXIT_FAIL;
    /* An --out this run creates goes again when the run fails. */
    created = access(cfg.out_dir, F_OK) != 0;
    log_set_level(LOG_LVL_WARN);
    an_train_data_init(&d, in.mpp);
    err_clear(&err);
    rc = load(&d, &in, &err);
    loaded = rc == 0;
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
        if (created && access(cfg.out_dir, F_OK) == 0 &&
            util_remove_tree(cfg.out_dir, &rm) < 0)
            fprintf(stderr, "slidescan train: %s\n", rm.msg);
        return !loaded && rc == -ENOENT ? EXIT_NOTFOUND : EXIT_FAIL;
    }
    return EXIT_OK;
}
