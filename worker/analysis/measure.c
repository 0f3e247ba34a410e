/* SPDX-License-Identifier: MIT */
/*
 * Biomarkers measured on a segmentation: tissue, tumour and stroma areas,
 * the tumour-stroma ratio of the slide and of each tumour region.
 *
 * The tumour-stroma ratio here is the tumour share of the tumour plus
 * stroma area, tumor / (tumor + stroma), in [0, 1]; the stroma
 * percentage pathologists score is 100 × (1 - tsr).  It is null (NAN)
 * when neither class is present.
 *
 * A tumour region is a connected component of the tumour mask after a
 * morphological closing with a disc of AN_REGION_CLOSE_UM, restricted to
 * tissue: nests of one tumour lying closer than that merge into one
 * region, together with the stroma between them.  Regions whose tumour
 * plus stroma area is under AN_REGION_MIN_MM2 are left out.
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
an_results_free(struct an_results *r)
{
    if (r == NULL)
        return;
    free(r->regions);
    r->regions = NULL;
    r->nregions = 0;
}

void
an__weighted_counts(const struct an_seg *sg, const uint8_t *v, int nv,
                    double *cnt)
{
    int x, y, k, last = sg->w - 1;

    for (y = 0; y < sg->h; y++) {
        const uint8_t *p = v + (size_t)y * sg->w;
        double wy = an__edge_weight(sg->ext_h, sg->h, y);
        int64_t row[256] = { 0 };

        for (x = 0; x < last; x++)
            row[p[x]]++;
        for (k = 0; k < nv; k++)
            cnt[k] += (double)row[k] * wy;
        if (p[last] < nv)
            cnt[p[last]] += wy * an__edge_weight(sg->ext_w, sg->w, last);
    }
}

void
an__weighted_count_of(const struct an_seg *sg, const uint8_t *mask,
                      double *cnt)
{
    int x, y, last = sg->w - 1;

    for (y = 0; y < sg->h; y++) {
        const uint8_t *p = mask + (size_t)y * sg->w;
        double wy = an__edge_weight(sg->ext_h, sg->h, y);
        int64_t on = 0;

        for (x = 0; x < last; x++)
            on += p[x] != 0;
        *cnt += (double)on * wy;
        if (p[last] != 0)
            *cnt += wy * an__edge_weight(sg->ext_w, sg->w, last);
    }
}

static double
ratio_or_nan(double t, double s)
{
    return t + s > 0 ? t / (t + s) : NAN;
}

struct region_acc {
    double tumor, stroma;           /* raster px, edge pixels weighted */
    int seen;                       /* any pixel yet (bbox started) */
    int x0, y0, x1, y1;
};

static void
regions_stats(struct an_results *r)
{
    double sum = 0;
    int i;

    r->tsr_region_min = r->tsr_region_max = r->tsr_region_mean = NAN;
    for (i = 0; i < r->nregions; i++) {
        double t = r->regions[i].tsr;
        if (i == 0 || t < r->tsr_region_min)
            r->tsr_region_min = t;
        if (i == 0 || t > r->tsr_region_max)
            r->tsr_region_max = t;
        sum += t;
    }
    if (r->nregions > 0)
        r->tsr_region_mean = sum / r->nregions;
}

/* Keeps the regions big enough and turns counts into areas. */
static int
regions_collect(struct an_results *r, const struct region_acc *acc,
                int n, double px_mm2)
{
    int i, k = 0;

    r->regions = calloc((size_t)n + 1, sizeof(*r->regions));
    if (r->regions == NULL)
        return -ENOMEM;
    for (i = 1; i <= n; i++) {
        const struct region_acc *a = &acc[i];
        struct an_region *g = &r->regions[k];
        double area = (a->tumor + a->stroma) * px_mm2;
        if (area < AN_REGION_MIN_MM2 || !(a->tumor > 0))
            continue;
        g->id = k + 1;
        g->x = a->x0;
        g->y = a->y0;
        g->w = a->x1 - a->x0 + 1;
        g->h = a->y1 - a->y0 + 1;
        g->area_mm2 = area;
        g->tumor_mm2 = a->tumor * px_mm2;
        g->stroma_mm2 = a->stroma * px_mm2;
        g->tsr = ratio_or_nan(g->tumor_mm2, g->stroma_mm2);
        k++;
    }
    r->nregions = k;
    regions_stats(r);
    return 0;
}

static int
measure_regions(const struct an_seg *sg, struct an_results *r)
{
    size_t i, n = (size_t)sg->w * sg->h;
    const uint8_t *lab = sg->label->data, *tis = sg->tissue->data;
    uint8_t *mask = malloc(n);
    int32_t *cc = malloc(n * sizeof(int32_t));
    struct region_acc *acc = NULL;
    double rad = AN_REGION_CLOSE_UM / sg->mpp;
    int count, rc = -ENOMEM, x, y;

    if (mask == NULL || cc == NULL)
        goto out;
    for (i = 0; i < n; i++)
        mask[i] = lab[i] == AN_TUMOR;
    if (an__morph_disc(mask, sg->w, sg->h, rad) < 0 ||
        an__morph_disc(mask, sg->w, sg->h, -rad) < 0)
        goto out;
    for (i = 0; i < n; i++)
        mask[i] = (mask[i] || lab[i] == AN_TUMOR) && tis[i];
    count = an__components(mask, sg->w, sg->h, cc);
    if (count < 0)
        goto out;
    acc = calloc((size_t)count + 1, sizeof(*acc));
    if (acc == NULL)
        goto out;
    for (y = 0; y < sg->h; y++)
        for (x = 0; x < sg->w; x++) {
            size_t j = (size_t)y * sg->w + x;
            struct region_acc *a = &acc[cc[j]];
            double wt = an__edge_weight(sg->ext_w, sg->w, x) *
                        an__edge_weight(sg->ext_h, sg->h, y);
            if (cc[j] == 0)
                continue;
            if (!a->seen) {
                a->seen = 1;
                a->x0 = a->x1 = x;
                a->y0 = a->y1 = y;
            }
            a->tumor += (lab[j] == AN_TUMOR) * wt;
            a->stroma += (lab[j] == AN_STROMA) * wt;
            a->x0 = x < a->x0 ? x : a->x0;
            a->x1 = x > a->x1 ? x : a->x1;
            a->y1 = y;
        }
    rc = regions_collect(r, acc, count, sg->mpp * sg->mpp * 1e-6);
out:
    free(mask);
    free(cc);
    free(acc);
    return rc;
}

int
an_measure(const struct an_seg *sg, struct an_results *r,
           struct ss_err *err)
{
    const uint8_t *lab = sg->label->data, *tis = sg->tissue->data;
    double cnt[AN_NCLASS] = { 0 }, tissue = 0;
    double px_mm2 = sg->mpp * sg->mpp * 1e-6;

    r->slide_mpp = sg->slide_mpp;
    r->analysis_mpp = sg->mpp;
    an__weighted_counts(sg, lab, AN_NCLASS, cnt);
    an__weighted_count_of(sg, tis, &tissue);
    r->tissue_area_mm2 = tissue * px_mm2;
    r->tumor_area_mm2 = cnt[AN_TUMOR] * px_mm2;
    r->stroma_area_mm2 = cnt[AN_STROMA] * px_mm2;
    r->tsr = ratio_or_nan(r->tumor_area_mm2, r->stroma_area_mm2);
    if (measure_regions(sg, r) < 0)
        return err_set(err, -ENOMEM, "tumour regions: out of memory");
    return 0;
}
