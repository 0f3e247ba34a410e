/* SPDX-License-Identifier: MIT */
/*
 * Segmentation metrics (conventions in metrics.h).  Pixel scores come from
 * one pooled confusion matrix; region AP follows COCO: regions are
 * connected components, matched greedily by descending score to the
 * unmatched truth region of highest IoU at each threshold 0.50 ... 0.95,
 * and precision is interpolated at 101 recall points.
 */
#include "worker/analysis/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/analysis/internal.h"

void
an_confusion_init(struct an_confusion *c, int ncls)
{
    memset(c, 0, sizeof(*c));
    c->ncls = ncls;
}

int
an_confusion_add(struct an_confusion *c, const uint8_t *truth,
                 const uint8_t *pred, size_t n, int ignore,
                 struct ss_err *err)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (truth[i] == ignore || truth[i] >= c->ncls) {
            c->ignored++;
            continue;
        }
        if (pred[i] >= c->ncls)
            return err_set(err, -EINVAL, "prediction has class %d at "
                           "pixel %zu; only 0..%d exist", pred[i], i,
                           c->ncls - 1);
        c->m[truth[i]][pred[i]]++;
    }
    return 0;
}

static void
scores_from_counts(struct an_class_scores *s)
{
    double tp = (double)s->tp, fp = (double)s->fp, fn = (double)s->fn;

    s->both_empty = s->tp + s->fp + s->fn == 0;
    s->precision = tp + fp > 0 ? tp / (tp + fp) : NAN;
    s->recall = tp + fn > 0 ? tp / (tp + fn) : NAN;
    s->dice = s->both_empty ? NAN : 2 * tp / (2 * tp + fp + fn);
    s->iou = s->both_empty ? NAN : tp / (tp + fp + fn);
    s->f1 = s->dice;
}

void
an_class_scores(const struct an_confusion *c, int cls,
                struct an_class_scores *s)
{
    int i, j;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < c->ncls; i++)
        for (j = 0; j < c->ncls; j++) {
            int64_t v = c->m[i][j];
            if (i == cls && j == cls)
                s->tp += v;
            else if (i == cls)
                s->fn += v;
            else if (j == cls)
                s->fp += v;
            else
                s->tn += v;
        }
    scores_from_counts(s);
}

void
an_mask_scores(const uint8_t *truth, const uint8_t *pred, size_t n,
               struct an_class_scores *s)
{
    size_t i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < n; i++) {
        int t = truth[i] != 0, p = pred[i] != 0;
        s->tp += t && p;
        s->fp += !t && p;
        s->fn += t && !p;
        s->tn += !t && !p;
    }
    scores_from_counts(s);
}

double
an_cohen_kappa(const struct an_confusion *c)
{
    double total = 0, po = 0, pe = 0;
    int i, j;

    for (i = 0; i < c->ncls; i++)
        for (j = 0; j < c->ncls; j++)
            total += (double)c->m[i][j];
    if (total <= 0)
        return NAN;
    for (i = 0; i < c->ncls; i++) {
        double row = 0, col = 0;
        for (j = 0; j < c->ncls; j++) {
            row += (double)c->m[i][j];
            col += (double)c->m[j][i];
        }
        po += (double)c->m[i][i];
        pe += row * col;
    }
    po /= total;
    pe /= total * total;
    return pe >= 1 ? 1.0 : (po - pe) / (1 - pe);
}

/* ---- region AP --------------------------------------------------------- */

void
an_ap_init(struct an_ap *ap, int ncls, int64_t min_px)
{
    memset(ap, 0, sizeof(*ap));
    ap->ncls = ncls;
    ap->min_px = min_px;
}

void
an_ap_fini(struct an_ap *ap)
{
    int k;

    for (k = 0; k < AN_METRIC_MAXCLS; k++) {
        free(ap->cls[k].score);
        free(ap->cls[k].hit);
    }
    memset(ap, 0, sizeof(*ap));
}

struct region {
    int64_t area;
    double score;
};

/* Overlap of truth region g and predicted region p. */
struct pair {
    int32_t g, p;
    int64_t inter;
};

static int
pair_cmp(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;

    if (x->p != y->p)
        return x->p < y->p ? -1 : 1;
    return x->g < y->g ? -1 : x->g > y->g;
}

/* Distinct (g, p) overlaps with their pixel counts, sorted by p then g. */
static struct pair *
overlaps(const int32_t *lg, const int32_t *lp, size_t n, int *npairs)
{
    size_t i, cnt = 0, cap = 1024;
    struct pair *v = malloc(cap * sizeof(*v)), *out;
    int k = 0;
    size_t j;

    if (v == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (lg[i] == 0 || lp[i] == 0)
            continue;
        if (cnt == cap) {
            struct pair *nv = realloc(v, cap * 2 * sizeof(*v));
            if (nv == NULL) {
                free(v);
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[cnt].g = lg[i];
        v[cnt].p = lp[i];
        v[cnt].inter = 1;
        cnt++;
        /* Runs along a row repeat the same pair: fold them at once. */
        if (cnt >= 2 && v[cnt - 2].g == lg[i] && v[cnt - 2].p == lp[i]) {
            v[cnt - 2].inter++;
            cnt--;
        }
    }
    qsort(v, cnt, sizeof(*v), pair_cmp);
    out = v;
    for (j = 0; j < cnt; j++) {
        if (k > 0 && out[k - 1].g == v[j].g && out[k - 1].p == v[j].p)
            out[k - 1].inter += v[j].inter;
        else
            out[k++] = v[j];
    }
    *npairs = k;
    return out;
}

static struct region *
region_table(const int32_t *lab, size_t n, int count, const uint8_t *prob,
             int ncls, int cls)
{
    struct region *r = calloc((size_t)count + 1, sizeof(*r));
    size_t i;
    int k;

    if (r == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (lab[i] == 0)
            continue;
        r[lab[i]].area++;
        if (prob != NULL)
            r[lab[i]].score += prob[i * ncls + cls] / 255.0;
    }
    for (k = 1; k <= count; k++)
        r[k].score = prob != NULL && r[k].area > 0 ?
                     r[k].score / r[k].area : (double)r[k].area;
    return r;
}

static int
ap_class_grow(struct an_ap_class *c, int more)
{
    int cap = c->cap;
    double *s;
    uint8_t *h;

    if (c->npred + more <= cap)
        return 0;
    while (cap < c->npred + more)
        cap = cap ? cap * 2 : 64;
    s = realloc(c->score, (size_t)cap * sizeof(double));
    if (s == NULL)
        return -ENOMEM;
    c->score = s;
    h = realloc(c->hit, (size_t)cap * AN_AP_NTHR);
    if (h == NULL)
        return -ENOMEM;
    c->hit = h;
    c->cap = cap;
    return 0;
}

struct ap_image {
    int ng, np;
    struct region *rg, *rp;
    struct pair *pairs;
    int npairs;
};

static int
score_order(const void *a, const void *b, void *ctx)
{
    const struct region *rp = ctx;
    int x = *(const int *)a, y = *(const int *)b;

    if (rp[x].score != rp[y].score)
        return rp[x].score > rp[y].score ? -1 : 1;
    return x - y;
}

/* Greedy matching at every threshold; appends the predictions. */
static int
ap_match(struct an_ap_class *c, const struct ap_image *im, int64_t min_px)
{
    int *order = malloc(((size_t)im->np + 1) * sizeof(int));
    uint8_t *taken = malloc((size_t)im->ng + 1);
    int i, t, k, n = 0;

    if (order == NULL || taken == NULL || ap_class_grow(c, im->np) < 0) {
        free(order);
        free(taken);
        return -ENOMEM;
    }
    for (i = 1; i <= im->ng; i++)
        c->ngt += im->rg[i].area >= min_px;
    for (i = 1; i <= im->np; i++)
        if (im->rp[i].area >= min_px)
            order[n++] = i;
    qsort_r(order, (size_t)n, sizeof(int), score_order, im->rp);
    for (t = 0; t < AN_AP_NTHR; t++) {
        double thr = 0.5 + 0.05 * t;
        memset(taken, 0, (size_t)im->ng + 1);
        for (i = 0; i < n; i++) {
            int p = order[i], best = 0;
            double best_iou = thr - 1e-12;
            for (k = 0; k < im->npairs; k++) {
                const struct pair *q = &im->pairs[k];
                double iou;
                if (q->p != p || taken[q->g] || im->rg[q->g].area < min_px)
                    continue;
                iou = (double)q->inter / (double)(im->rg[q->g].area +
                      im->rp[p].area - q->inter);
                if (iou >= best_iou) {
                    best_iou = iou;
                    best = q->g;
                }
            }
            if (best)
                taken[best] = 1;
            c->hit[(size_t)(c->npred + i) * AN_AP_NTHR + t] = best != 0;
        }
    }
    for (i = 0; i < n; i++)
        c->score[c->npred + i] = im->rp[order[i]].score;
    c->npred += n;
    free(order);
    free(taken);
    return 0;
}

static int
ap_add_class(struct an_ap *ap, int cls, const uint8_t *truth,
             const uint8_t *pred, const uint8_t *prob, int w, int h,
             int32_t *lg, int32_t *lp, uint8_t *mask)
{
    size_t i, n = (size_t)w * h;
    struct ap_image im = { 0 };
    int rc = -ENOMEM;

    for (i = 0; i < n; i++)
        mask[i] = truth[i] == cls;
    im.ng = an__components(mask, w, h, lg);
    for (i = 0; i < n; i++)
        mask[i] = pred[i] == cls;
    im.np = an__components(mask, w, h, lp);
    if (im.ng < 0 || im.np < 0)
        return -ENOMEM;
    im.rg = region_table(lg, n, im.ng, NULL, ap->ncls, cls);
    im.rp = region_table(lp, n, im.np, prob, ap->ncls, cls);
    im.pairs = overlaps(lg, lp, n, &im.npairs);
    if (im.rg != NULL && im.rp != NULL && im.pairs != NULL)
        rc = ap_match(&ap->cls[cls], &im, ap->min_px);
    free(im.rg);
    free(im.rp);
    free(im.pairs);
    return rc;
}

int
an_ap_add(struct an_ap *ap, const uint8_t *truth, const uint8_t *pred,
          const uint8_t *prob, int w, int h, struct ss_err *err)
{
    size_t n = (size_t)w * h;
    int32_t *lg = malloc(n * sizeof(int32_t));
    int32_t *lp = malloc(n * sizeof(int32_t));
    uint8_t *mask = malloc(n);
    int k, rc = lg && lp && mask ? 0 : -ENOMEM;

    for (k = 1; rc == 0 && k < ap->ncls; k++)
        rc = ap_add_class(ap, k, truth, pred, prob, w, h, lg, lp, mask);
    free(lg);
    free(lp);
    free(mask);
    return rc < 0 ? err_set(err, rc, "region AP: out of memory") : 0;
}

static int
desc_score(const void *a, const void *b, void *ctx)
{
    const double *s = ctx;
    int x = *(const int *)a, y = *(const int *)b;

    if (s[x] != s[y])
        return s[x] > s[y] ? -1 : 1;
    return x - y;
}

double
an_ap_class(const struct an_ap *ap, int cls, int t)
{
    const struct an_ap_class *c = &ap->cls[cls];
    double *prec, *rec, ap_sum = 0;
    int *order, i, tp = 0, r;

    if (c->ngt == 0)
        return c->npred == 0 ? NAN : 0.0;
    if (c->npred == 0)
        return 0.0;
    order = malloc((size_t)c->npred * sizeof(int));
    prec = malloc((size_t)c->npred * sizeof(double));
    rec = malloc((size_t)c->npred * sizeof(double));
    if (order == NULL || prec == NULL || rec == NULL) {
        free(order);
        free(prec);
        free(rec);
        return NAN;
    }
    for (i = 0; i < c->npred; i++)
        order[i] = i;
    qsort_r(order, (size_t)c->npred, sizeof(int), desc_score, c->score);
    for (i = 0; i < c->npred; i++) {
        tp += c->hit[(size_t)order[i] * AN_AP_NTHR + t];
        prec[i] = (double)tp / (i + 1);
        rec[i] = (double)tp / c->ngt;
    }
    /* Precision envelope, then sample at recall 0, 0.01, ..., 1. */
    for (i = c->npred - 2; i >= 0; i--)
        if (prec[i + 1] > prec[i])
            prec[i] = prec[i + 1];
    for (r = 0, i = 0; r <= 100; r++) {
        while (i < c->npred && rec[i] < r / 100.0 - 1e-12)
            i++;
        if (i < c->npred)
            ap_sum += prec[i];
    }
    free(order);
    free(prec);
    free(rec);
    return ap_sum / 101.0;
}

double
an_ap_map(const struct an_ap *ap, int *nclasses)
{
    double sum = 0;
    int k, t, n = 0;

    for (k = 1; k < ap->ncls; k++) {
        double s = 0;
        if (isnan(an_ap_class(ap, k, 0)))
            continue;
        for (t = 0; t < AN_AP_NTHR; t++)
            s += an_ap_class(ap, k, t);
        sum += s / AN_AP_NTHR;
        n++;
    }
    if (nclasses != NULL)
        *nclasses = n;
    return n > 0 ? sum / n : NAN;
}

void
an_err_add(struct an_err_acc *a, double pred, double truth, int *skipped)
{
    double d = pred - truth;

    if (!isfinite(d)) {
        if (skipped != NULL)
            (*skipped)++;
        return;
    }
    a->n++;
    a->sum_abs += fabs(d);
    a->sum_sq += d * d;
}

double
an_err_mae(const struct an_err_acc *a)
{
    return a->n > 0 ? a->sum_abs / a->n : NAN;
}

double
an_err_rmse(const struct an_err_acc *a)
{
    return a->n > 0 ? sqrt(a->sum_sq / a->n) : NAN;
}
