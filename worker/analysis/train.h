/* SPDX-License-Identifier: MIT */
/*
 * Training segmentation CNNs from annotated slides (label masks or QuPath
 * GeoJSON, phantom slides included) and from folders of labelled patches
 * (labels.csv: file, class_id, class_name, source_image).
 *
 * Every source belongs to a group: a slide's group is its file name, a
 * patch's is its source_image (its own file name when that is
 * "unknown").  Validation takes whole groups, so no source image is in
 * both sets.  Patch classes map by class_id: 1 tumour; 2 stroma, 3
 * complex stroma and 10 smooth muscle → stroma; 8 background → glass;
 * the others (lymphocytes, debris, mucosa, adipose, mucus) are not
 * tumour/stroma/glass and are left out.
 *
 * One epoch is steps_per_epoch batches of crops: each slide crop is
 * centred on a labelled pixel of a class drawn uniformly from those the
 * slide has (so rare classes are seen), each patch is resampled to the
 * model's resolution and mirrored out to the crop size, all of it
 * labelled with the patch's class.  Augmentation: flips, 90° rotations,
 * stain jitter in hematoxylin-eosin space, per-channel gain (white
 * balance), brightness and contrast jitter.  Loss: cross-entropy plus
 * dice_weight (0.5) × the soft Dice loss, unlabelled pixels ignored;
 * Adam, the learning rate halved after every 3 epochs without
 * improvement.  After each
 * epoch: validation scores, a line in metrics.jsonl, a
 * checkpoint (model and optimiser state, resumable), best.safetensors
 * when the validation score improved (mean validation Dice of tumour
 * and stroma; patch accuracy when no slide is held out); training stops
 * early after `patience` epochs without improvement.
 */
#ifndef SS_WORKER_ANALYSIS_TRAIN_H
#define SS_WORKER_ANALYSIS_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"
#include "worker/analysis/metrics.h"

struct an_train_source {
    char name[256];
    char group[128];
    struct img *rgb;                /* at the model's resolution */
    struct img *label;              /* U8: 0, 1, 2, 255 unlabelled */
    int patch_class;                /* -1 for slides */
    int32_t *pix[3];                /* sampled labelled pixels by class */
    int npix[3];
    bool val;
};

struct an_train_data {
    int n, cap;
    struct an_train_source *s;
    double mpp;                     /* the model's resolution */
    bool val_shares_source[3];      /* by class: a validation patch of it
                                       shares its source image with
                                       training patches (an_train_split) */
};

void an_train_data_init(struct an_train_data *d, double mpp);
void an_train_data_free(struct an_train_data *d);

/* A slide with its labels: a label PNG (any size, resampled) or QuPath
 * GeoJSON.  mpp_override > 0 replaces the slide's pixel size. */
int an_train_add_slide(struct an_train_data *d, const char *wsi,
                       const char *labels, double mpp_override,
                       struct ss_err *err);

/* Every usable patch listed in dir/labels.csv, at patch_mpp µm/px. */
int an_train_add_patches(struct an_train_data *d, const char *dir,
                         double patch_mpp, struct ss_err *err);

/* Marks validation sources: the groups named in `groups`
 * (comma-separated), or, when NULL and fraction > 0, a split stratified
 * by class: slides by whole groups, picked by a seeded hash, until about
 * `fraction` of the slides; then, for each class with at least 2
 * patches, whole source groups until about `fraction` of that class's
 * patches (at least 1), never taking a class's last training patch (nor
 * another class's).  A class whose patches all come from one source
 * image has one patch held out alone, and d->val_shares_source says so.
 * Returns the number of validation sources. */
int an_train_split(struct an_train_data *d, const char *groups,
                   double fraction, uint64_t seed);

/* Examples of each class (AN_GLASS, AN_TUMOR, AN_STROMA) in training and
 * in validation: patches of the class, and slides with labelled pixels
 * of it.  For warning about a class validation cannot score. */
void an_train_split_counts(const struct an_train_data *d, int train[3],
                           int val[3]);

struct an_train_cfg {
    const char *out_dir;            /* checkpoints, metrics, model */
    const char *init;               /* start from this model, or NULL */
    const char *arch;               /* architecture JSON file, or NULL
                                       for the built-in small U-Net */
    int epochs, steps_per_epoch, batch, crop_px, patience;
    double lr;
    uint64_t seed;
    bool resume;
    bool augment;
    double patch_share;             /* fraction of each batch from
                                       patches, when both kinds exist */
    double dice_weight;             /* soft Dice term of the loss */
    const char *name;               /* model name in its metadata */
    bool quiet;                     /* no per-epoch lines on stdout */
};

void an_train_cfg_default(struct an_train_cfg *c);

struct an_train_report {
    int epochs_run;
    int best_epoch;
    double first_loss, last_loss;   /* mean training loss, epochs 1/last */
    double best_score;              /* mean val Dice tumour/stroma or
                                       patch accuracy */
    struct an_confusion val_pixels; /* at the best epoch */
    struct an_confusion val_patches;
    struct an_confusion last_val_patches;   /* at the last epoch */
    bool stopped_early;
};

/* Trains; writes out_dir/model.safetensors (the best epoch's weights). */
int an_train_run(const struct an_train_cfg *cfg, struct an_train_data *d,
                 struct an_train_report *rep, struct ss_err *err);

/* Leave-one-source-image-out over the patch groups: for each group,
 * train from cfg->init on everything else and classify the group's
 * patches; the pooled patch confusion goes into *conf. */
int an_train_loso(const struct an_train_cfg *cfg, struct an_train_data *d,
                  struct an_confusion *conf, struct ss_err *err);

/* The built-in architecture (small U-Net, 3 poolings) for mpp µm/px. */
char *an_train_default_arch(double mpp, const char *name);

#endif
