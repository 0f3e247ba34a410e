/* SPDX-License-Identifier: MIT */
/*
 * Segmentation metrics: pixel confusion counts and the per-class scores
 * derived from them, COCO-style mean average precision over connected
 * regions, and errors of continuous measures.
 *
 * Conventions for empty cases (per class, on the pooled counts):
 *   - truth and prediction both empty: precision, recall, F1, IoU and
 *     Dice are undefined (NAN, null in JSON), left out of every mean, and
 *     counted in `both_empty` so a report says how many cases it touched;
 *   - truth empty, prediction not: Dice = IoU = F1 = precision = 0,
 *     recall undefined; every predicted pixel is a false positive;
 *   - prediction empty, truth not: Dice = IoU = F1 = recall = 0,
 *     precision undefined.
 * F1 over pixels equals Dice; both are reported because readers look for
 * either name.
 */
#ifndef SS_WORKER_ANALYSIS_METRICS_H
#define SS_WORKER_ANALYSIS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

#define AN_METRIC_MAXCLS 8

/* Pixel confusion matrix: m[truth][pred]. */
struct an_confusion {
    int ncls;
    int64_t m[AN_METRIC_MAXCLS][AN_METRIC_MAXCLS];
    int64_t ignored;                /* pixels with truth = ignore value */
};

void an_confusion_init(struct an_confusion *c, int ncls);

/* Adds n pixel pairs; truth values equal to ignore (or ≥ ncls) are
 * counted in c->ignored and skipped.  Predictions ≥ ncls are -EINVAL. */
int an_confusion_add(struct an_confusion *c, const uint8_t *truth,
                     const uint8_t *pred, size_t n, int ignore,
                     struct ss_err *err);

struct an_class_scores {
    int64_t tp, fp, fn, tn;
    double precision, recall, f1, iou, dice;    /* NAN when undefined */
    int both_empty;                 /* 1 when truth and prediction empty */
};

void an_class_scores(const struct an_confusion *c, int cls,
                     struct an_class_scores *s);

/* Scores of one binary mask pair (nonzero = the class), for tests and
 * agreement between annotators. */
void an_mask_scores(const uint8_t *truth, const uint8_t *pred, size_t n,
                    struct an_class_scores *s);

/* Cohen's kappa of two label rasters over ncls classes: (po - pe) /
 * (1 - pe); 1 when both raters use a single identical class (pe = 1). */
double an_cohen_kappa(const struct an_confusion *c);

/* ---- region-level average precision (COCO style) -------------------- */

#define AN_AP_NTHR 10               /* IoU thresholds .50:.05:.95 */

struct an_ap_class {
    int ngt;                        /* truth regions */
    int npred, cap;
    double *score;                  /* per prediction */
    uint8_t *hit;                   /* per prediction × threshold */
};

struct an_ap {
    int ncls;                       /* classes 1..ncls-1 are scored */
    int64_t min_px;                 /* regions smaller are ignored */
    struct an_ap_class cls[AN_METRIC_MAXCLS];
};

void an_ap_init(struct an_ap *ap, int ncls, int64_t min_px);
void an_ap_fini(struct an_ap *ap);

/* Adds one image: connected regions of each class in truth and pred
 * (8-connected), matched greedily by descending score at each IoU
 * threshold.  prob (U8 × ncls, may be NULL) gives a region's score as its
 * mean class probability; without it the score is the region's area. */
int an_ap_add(struct an_ap *ap, const uint8_t *truth, const uint8_t *pred,
              const uint8_t *prob, int w, int h, struct ss_err *err);

/* AP of one class at threshold index t (101-point interpolation), NAN
 * when the class has neither truth nor predicted regions; 0 when it has
 * predictions but no truth. */
double an_ap_class(const struct an_ap *ap, int cls, int t);

/* mean over thresholds and scored classes (NAN when none is defined). */
double an_ap_map(const struct an_ap *ap, int *nclasses);

/* ---- continuous measures ------------------------------------------- */

struct an_err_acc {
    int n;
    double sum_abs, sum_sq;
};

/* Adds a pair; pairs with a non-finite value are skipped and counted in
 * *skipped when not NULL. */
void an_err_add(struct an_err_acc *a, double pred, double truth,
                int *skipped);
double an_err_mae(const struct an_err_acc *a);
double an_err_rmse(const struct an_err_acc *a);

#endif
