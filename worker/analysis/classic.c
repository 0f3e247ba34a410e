/* SPDX-License-Identifier: MIT */
/*
 * The classical baseline: no training, only colour deconvolution and
 * local densities.  Tumour epithelium is packed with nuclei
 * (hematoxylin), stroma is mostly collagen (eosin) with sparse nuclei,
 * glass absorbs almost nothing.  Per pixel, over a box of
 * CL_RADIUS_UM around it:
 *
 *   od   mean optical density magnitude        → glass vs tissue
 *   n    mean hematoxylin                       → nuclear density (H&E)
 *   m    mean eosin                             → collagen (H&E)
 *   f    n / (n + m)                            → tumour vs stroma (H&E)
 *
 * IHC slides have no eosin and a pale counterstained background, so
 * there f is the share of the window covered by nuclei (pixels whose
 * hematoxylin plus DAB exceeds CL_NUC_OD), with threshold CL_F0_IHC.
 * The logits are linear in (od - CL_OD0) and (f - threshold).  The
 * constants were set on the labelled Kather 2016 tumour and stroma
 * patches and on phantom slides (worker/README.md gives the numbers).
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_MPP 2.0                  /* µm per pixel it runs at */
#define CL_RADIUS_UM 16.0           /* density window half-width */
#define CL_OD0 0.10                 /* tissue optical density threshold */
#define CL_OD_GAIN 40.0             /* logit per OD unit */
#define CL_F0 0.59                  /* tumour/stroma nuclear fraction */
#define CL_F_GAIN 25.0              /* logit per unit of f */
#define CL_NUC_OD 0.25              /* nucleus pixel on IHC slides */
#define CL_F0_IHC 0.18              /* nuclear area share, IHC */

struct classic {
    struct an__deconv he, hdab;
};

static int
classic_predict(struct an_model *m, const struct img *in,
                struct img *logits, struct ss_err *err)
{
    struct classic *c = m->priv;
    size_t i, n = (size_t)in->w * in->h;
    float *buf = calloc(n * 6, sizeof(float));
    float *od, *nuc, *mat, *od_s, *nuc_s, *mat_s;
    int r = (int)lround(CL_RADIUS_UM / m->mpp);

    if (buf == NULL)
        return err_set(err, -ENOMEM, "classical model: out of memory");
    od = buf;
    nuc = buf + n;
    mat = buf + 2 * n;
    od_s = buf + 3 * n;
    nuc_s = buf + 4 * n;
    mat_s = buf + 5 * n;
    for (i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)in->data + i * 3;
        float he[3], hd[3];
        an__deconv_px(&c->he, p, he);
        an__deconv_px(&c->hdab, p, hd);
        od[i] = an__od_norm(p);
        if (m->stain == AN_STAIN_HE) {
            nuc[i] = fmaxf(he[0], 0);
            mat[i] = fmaxf(he[1], 0);
        } else {
            nuc[i] = fmaxf(hd[0], 0) + fmaxf(hd[1], 0) > CL_NUC_OD;
            mat[i] = 1 - nuc[i];
        }
    }
    an__box_mean(od, in->w, in->h, r, od_s);
    an__box_mean(nuc, in->w, in->h, r, nuc_s);
    an__box_mean(mat, in->w, in->h, r, mat_s);
    for (i = 0; i < n; i++) {
        float *l = (float *)logits->data + i * AN_NCLASS;
        float f = nuc_s[i] / (nuc_s[i] + mat_s[i] + 1e-6f);
        float t = (float)((od_s[i] - CL_OD0) * CL_OD_GAIN);
        float d = (float)((f - (m->stain == AN_STAIN_HE ? CL_F0
                                : CL_F0_IHC)) * CL_F_GAIN);
        /* Tissue vs glass on t; within tissue, tumour vs stroma on d. */
        l[AN_GLASS] = -t;
        l[AN_TUMOR] = 0.5f * d;
        l[AN_STROMA] = -0.5f * d;
    }
    free(buf);
    return 0;
}

static void
classic_destroy(struct an_model *m)
{
    free(m->priv);
}

static const struct an_model_ops classic_ops = {
    .kind = "classical",
    .predict = classic_predict,
    .destroy = classic_destroy,
};

int
an_model_classical(struct an_model **out, struct ss_err *err)
{
    struct an_model *m = calloc(1, sizeof(*m));
    struct classic *c = calloc(1, sizeof(*c));

    if (m == NULL || c == NULL) {
        free(m);
        free(c);
        return err_set(err, -ENOMEM, "classical model: out of memory");
    }
    an__deconv_init(&c->he, an__vec_hematoxylin, an__vec_eosin, NULL);
    an__deconv_init(&c->hdab, an__vec_hematoxylin, an__vec_dab, NULL);
    m->ops = &classic_ops;
    m->priv = c;
    snprintf(m->name, sizeof(m->name), "classical-baseline-1");
    m->mpp = CL_MPP;
    m->margin_px = (int)lround(2 * CL_RADIUS_UM / CL_MPP);
    m->tile_px = 512;
    m->mask_glass = true;
    *out = m;
    return 0;
}
