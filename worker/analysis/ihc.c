/* SPDX-License-Identifier: MIT */
/*
 * Immunohistochemistry read-outs on hematoxylin-DAB slides.
 *
 * KI67 index: the fraction of tumour nuclei whose DAB stain is positive.
 * The slide is re-read at AN_KI67_MPP where the segmentation found
 * tumour; colour deconvolution with the Ruifrok-Johnston H and DAB
 * vectors gives both stains; nuclei are the local maxima of the smoothed
 * nuclear stain (H + DAB) above KI_NUC_OD, at least KI_SEP_UM apart; a
 * nucleus is positive when the mean DAB in a disc of KI_DISC_UM around it
 * exceeds KI_DAB_OD, the lower of the two DAB thresholds QuPath's positive
 * cell detection is commonly run with.  Only nuclei lying on tumour count
 * (AN_KI67_TUMOR), or every nucleus on tissue (AN_KI67_TISSUE).
 *
 * LIMIT: the tumour scope is only as good as the segmentation.  On the
 * Olympus scan of the OS-2 Ki67 crop (grey glass, different colour) the
 * default model puts a third of the nuclei on tumour and mostly the
 * DAB-positive ones, so the tumour-scope index reads about 50 % where the
 * tissue scope reads 23-25 % on both scanners of the pair.  Both scopes
 * are reported, and `slidescan analyse` warns when they are more than 10
 * points apart.
 *
 * CK: the positive area is where smoothed DAB exceeds CK_DAB_OD on
 * tissue.  The CK-guided tumour mask is that area closed over CK_CLOSE_UM
 * with small specks removed: cytokeratin marks epithelium, so on a CK
 * slide it replaces the model's tumour class (the rest of the tissue is
 * stroma).
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define KI_TILE 512
#define KI_NUC_OD 0.20              /* nuclear stain peak threshold */
#define KI_SEP_UM 4.0               /* closest two nucleus centres */
#define KI_DISC_UM 2.0              /* DAB is averaged over this radius */
#define KI_DAB_OD 0.20              /* positive nucleus threshold */
#define KI_SIGMA_UM 1.0             /* smoothing before peak finding */
#define CK_DAB_OD 0.15
#define CK_CLOSE_UM 6.0
#define CK_MIN_UM2 400.0

struct ki_tile {
    int w, h;
    float *nuc, *dab;
};

static int
ki_tile_fill(struct ki_tile *t, const struct img *im)
{
    struct an__deconv d;
    size_t i, n = (size_t)im->w * im->h;

    t->w = im->w;
    t->h = im->h;
    t->nuc = malloc(n * sizeof(float));
    t->dab = malloc(n * sizeof(float));
    if (t->nuc == NULL || t->dab == NULL)
        return -ENOMEM;
    an__deconv_init(&d, an__vec_hematoxylin, an__vec_dab, NULL);
    for (i = 0; i < n; i++) {
        float c[3];
        an__deconv_px(&d, (const uint8_t *)im->data + i * 3, c);
        t->dab[i] = fmaxf(c[1], 0);
        t->nuc[i] = fmaxf(c[0], 0) + t->dab[i];
    }
    return 0;
}

static int
is_peak(const struct ki_tile *t, int x, int y, int r)
{
    float v = t->nuc[(size_t)y * t->w + x];
    int i, j;

    for (j = -r; j <= r; j++)
        for (i = -r; i <= r; i++) {
            int xx = x + i, yy = y + j;
            float u;
            if ((i == 0 && j == 0) || xx < 0 || yy < 0 || xx >= t->w ||
                yy >= t->h || i * i + j * j > r * r)
                continue;
            u = t->nuc[(size_t)yy * t->w + xx];
            /* ties go to the first in raster order */
            if (u > v || (u == v && (j < 0 || (j == 0 && i < 0))))
                return 0;
        }
    return 1;
}

static float
disc_mean(const float *a, int w, int h, int x, int y, int r)
{
    double s = 0;
    int i, j, n = 0;

    for (j = -r; j <= r; j++)
        for (i = -r; i <= r; i++) {
            if (x + i < 0 || y + j < 0 || x + i >= w || y + j >= h ||
                i * i + j * j > r * r)
                continue;
            s += a[(size_t)(y + j) * w + x + i];
            n++;
        }
    return n > 0 ? (float)(s / n) : 0;
}

/* Counts nuclei in the core of one tile (margin m on every side): those
 * on tumour and those on any tissue. */
static void
ki_count(const struct ki_tile *t, int m, double mpp,
         const struct an_seg *sg, double x0_l0, double y0_l0,
         double l0_per_px, struct an_results *r)
{
    int sep = (int)lround(KI_SEP_UM / mpp), disc = (int)lround(KI_DISC_UM /
                                                                mpp);
    int x, y, pos, cls;

    for (y = m; y < t->h - m; y++)
        for (x = m; x < t->w - m; x++) {
            int lx, ly;
            if (t->nuc[(size_t)y * t->w + x] < KI_NUC_OD ||
                !is_peak(t, x, y, sep))
                continue;
            lx = (int)((x0_l0 + (x + 0.5) * l0_per_px) / sg->scale);
            ly = (int)((y0_l0 + (y + 0.5) * l0_per_px) / sg->scale);
            if (lx < 0 || ly < 0 || lx >= sg->w || ly >= sg->h)
                continue;
            cls = *img_u8(sg->label, lx, ly);
            if (cls == AN_GLASS)
                continue;
            pos = disc_mean(t->dab, t->w, t->h, x, y, disc) > KI_DAB_OD;
            r->ki67_tissue_nuclei++;
            r->ki67_tissue_positive += pos;
            if (cls == AN_TUMOR) {
                r->ki67_tumor_nuclei++;
                r->ki67_tumor_positive += pos;
            }
        }
}

/* Whether any raster pixel in [x0, x1) × [y0, y1) is tissue. */
static int
raster_has(const struct an_seg *sg, int x0, int y0, int x1, int y1)
{
    int x, y;

    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > sg->w ? sg->w : x1;
    y1 = y1 > sg->h ? sg->h : y1;
    for (y = y0; y < y1; y++)
        for (x = x0; x < x1; x++)
            if (*img_u8(sg->label, x, y) != AN_GLASS)
                return 1;
    return 0;
}

/* One tile: read, deconvolve, smooth, count. */
static int
ki_tile_run(struct an_slide *s, const struct an_seg *sg, double mpp,
            int64_t x0, int64_t y0, int m, struct an_results *r,
            struct ss_err *err)
{
    double l0 = mpp / sg->slide_mpp;
    int n = KI_TILE + 2 * m, rc;
    struct img *im;
    struct ki_tile t = { 0 };

    rc = an_slide_read(s, x0 - (int64_t)(m * l0), y0 - (int64_t)(m * l0),
                       (int64_t)llround(n * l0), (int64_t)llround(n * l0),
                       n, n, &im, err);
    if (rc < 0)
        return err_prefix(err, "KI67");
    rc = ki_tile_fill(&t, im);
    img_free(im);
    if (rc == 0)
        rc = an__gauss_blur(t.nuc, n, n, KI_SIGMA_UM / mpp);
    if (rc == 0)
        ki_count(&t, m, mpp, sg, x0 - m * l0, y0 - m * l0, l0, r);
    free(t.nuc);
    free(t.dab);
    return rc < 0 ? err_set(err, rc, "KI67: out of memory") : 0;
}

int
an__ki67(struct an_slide *s, const struct an_seg *sg,
         enum an_ki67_scope scope, struct an_results *r, struct ss_err *err)
{
    double mpp = fmax(AN_KI67_MPP, sg->slide_mpp), l0 = mpp / sg->slide_mpp;
    int64_t W0, H0, x0, y0, step = (int64_t)llround(KI_TILE * l0);
    int m = (int)ceil((KI_SEP_UM + 3 * KI_SIGMA_UM) / mpp) + 1;

    an_slide_size(s, &W0, &H0);
    r->ki67_tumor_nuclei = r->ki67_tumor_positive = 0;
    r->ki67_tissue_nuclei = r->ki67_tissue_positive = 0;
    r->ki67_scope = scope;
    /* Both scopes in one pass: the other one is reported beside the
     * chosen index, so a tumour mask that is off on this slide shows. */
    for (y0 = 0; y0 < H0; y0 += step)
        for (x0 = 0; x0 < W0; x0 += step) {
            int rc;
            if (!raster_has(sg, (int)(x0 / sg->scale), (int)(y0 / sg->scale),
                            (int)ceil((x0 + step) / sg->scale),
                            (int)ceil((y0 + step) / sg->scale)))
                continue;
            rc = ki_tile_run(s, sg, mpp, x0, y0, m, r, err);
            if (rc < 0)
                return rc;
        }
    r->ki67_tumor_index = r->ki67_tumor_nuclei > 0 ?
        (double)r->ki67_tumor_positive / r->ki67_tumor_nuclei : NAN;
    r->ki67_tissue_index = r->ki67_tissue_nuclei > 0 ?
        (double)r->ki67_tissue_positive / r->ki67_tissue_nuclei : NAN;
    if (scope == AN_KI67_TISSUE) {
        r->ki67_nuclei = r->ki67_tissue_nuclei;
        r->ki67_positive = r->ki67_tissue_positive;
        r->ki67_index = r->ki67_tissue_index;
    } else {
        r->ki67_nuclei = r->ki67_tumor_nuclei;
        r->ki67_positive = r->ki67_tumor_positive;
        r->ki67_index = r->ki67_tumor_index;
    }
    log_info("analysis", "ki67 scope=%s nuclei=%d positive=%d "
             "tissue_nuclei=%d tissue_positive=%d mpp=%.2f",
             scope == AN_KI67_TISSUE ? "tissue" : "tumor", r->ki67_nuclei,
             r->ki67_positive, r->ki67_tissue_nuclei,
             r->ki67_tissue_positive, mpp);
    return 0;
}

int
an__ck(struct an_seg *sg, struct an_results *r, struct img **tumor_mask,
       struct ss_err *err)
{
    size_t i, n = (size_t)sg->w * sg->h;
    float *dab = malloc(n * sizeof(float));
    struct img *mk = img_new(sg->w, sg->h, 1, IMG_U8);
    const uint8_t *tis = sg->tissue->data;
    struct an__deconv d;
    double pos = 0;
    uint8_t *m;

    if (dab == NULL || mk == NULL)
        goto nomem;
    an__deconv_init(&d, an__vec_hematoxylin, an__vec_dab, NULL);
    for (i = 0; i < n; i++) {
        float c[3];
        an__deconv_px(&d, (const uint8_t *)sg->rgb->data + i * 3, c);
        dab[i] = c[1];
    }
    if (an__gauss_blur(dab, sg->w, sg->h, 1.0) < 0)
        goto nomem;
    m = mk->data;
    for (i = 0; i < n; i++)
        m[i] = tis[i] && dab[i] > CK_DAB_OD;
    free(dab);
    dab = NULL;
    an__weighted_count_of(sg, m, &pos);
    r->ck_positive_area_mm2 = pos * sg->mpp * sg->mpp * 1e-6;
    if (an__morph_disc(m, sg->w, sg->h, CK_CLOSE_UM / sg->mpp) < 0 ||
        an__morph_disc(m, sg->w, sg->h, -CK_CLOSE_UM / sg->mpp) < 0 ||
        an__remove_small(m, sg->w, sg->h,
                         (int64_t)(CK_MIN_UM2 / (sg->mpp * sg->mpp))) < 0)
        goto nomem;
    for (i = 0; i < n; i++)
        m[i] = m[i] && tis[i];
    *tumor_mask = mk;
    return 0;
nomem:
    free(dab);
    img_free(mk);
    return err_set(err, -ENOMEM, "CK: out of memory");
}
