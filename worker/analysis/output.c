/* SPDX-License-Identifier: MIT */
/*
 * The files an analysis leaves beside the slide: the overlay (tumour
 * green, stroma red, blended over the slide) as a pyramidal TIFF and a PNG
 * thumbnail, colour-mapped probability heat maps and the entropy
 * (uncertainty) map, the lossless label map, and results.json, which is
 * written last and durably: its presence means every other file is
 * complete.
 */
#include "worker/analysis/output.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Overlay colours and opacity. */
static const uint8_t col_tumor[3] = { 0, 200, 0 };
static const uint8_t col_stroma[3] = { 230, 0, 0 };
#define OVERLAY_ALPHA 0.40f

struct img *
an__overlay(const struct img *rgb, const struct img *label)
{
    struct img *o = img_dup(rgb);
    size_t i, n = (size_t)rgb->w * rgb->h;

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        uint8_t l = ((const uint8_t *)label->data)[i];
        uint8_t *p = (uint8_t *)o->data + i * 3;
        const uint8_t *c = l == AN_TUMOR ? col_tumor
                         : l == AN_STROMA ? col_stroma : NULL;
        int k;
        if (c == NULL)
            continue;
        for (k = 0; k < 3; k++)
            p[k] = (uint8_t)lrintf((1 - OVERLAY_ALPHA) * p[k] +
                                   OVERLAY_ALPHA * c[k]);
    }
    return o;
}

/* A perceptually ordered dark-blue → teal → yellow ramp, t in [0, 1]. */
static void
colormap(float t, uint8_t out[3])
{
    static const float stops[5][3] = {
        { 40, 20, 90 }, { 50, 90, 150 }, { 40, 150, 140 },
        { 120, 200, 80 }, { 250, 230, 40 },
    };
    float f = t <= 0 ? 0 : t >= 1 ? 4 : t * 4;
    int i = f >= 4 ? 3 : (int)f, k;

    f -= i;
    for (k = 0; k < 3; k++)
        out[k] = (uint8_t)lrintf(stops[i][k] * (1 - f) +
                                 stops[i + 1][k] * f);
}

struct img *
an__heatmap(const struct an_seg *sg, int cls)
{
    struct img *o = img_new(sg->w, sg->h, 3, IMG_U8);
    size_t i, n = (size_t)sg->w * sg->h;

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)sg->prob->data + i * AN_NCLASS;
        uint8_t *q = (uint8_t *)o->data + i * 3;
        if (!((const uint8_t *)sg->tissue->data)[i])
            memset(q, 255, 3);
        else
            colormap(p[cls] / 255.0f, q);
    }
    return o;
}

struct img *
an__entropy_map(const struct an_seg *sg)
{
    struct img *o = img_new(sg->w, sg->h, 3, IMG_U8);
    size_t i, n = (size_t)sg->w * sg->h;
    float norm = logf(AN_NCLASS);

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)sg->prob->data + i * AN_NCLASS;
        uint8_t *q = (uint8_t *)o->data + i * 3;
        float h = 0;
        int k;
        if (!((const uint8_t *)sg->tissue->data)[i]) {
            memset(q, 255, 3);
            continue;
        }
        for (k = 0; k < AN_NCLASS; k++) {
            float pk = p[k] / 255.0f;
            if (pk > 0)
                h -= pk * logf(pk);
        }
        colormap(h / norm, q);
    }
    return o;
}

int
an__write_thumb(const struct img *im, int max_px, const char *path,
                struct ss_err *err)
{
    double s = (double)(im->w > im->h ? im->w : im->h) / max_px;
    struct img *t;
    int rc;

    if (s <= 1)
        return img_png_write(im, path, err);
    t = an__resample(im, (int)fmax(1, lround(im->w / s)),
                     (int)fmax(1, lround(im->h / s)));
    if (t == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    rc = img_png_write(t, path, err);
    img_free(t);
    return rc;
}

static json_t *
num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *
regions_json(const struct an_results *r)
{
    json_t *o = json_object(), *a = json_array();
    int i;

    json_object_set_new(o, "count", json_integer(r->nregions));
    json_object_set_new(o, "tsr_min", num_or_null(r->tsr_region_min));
    json_object_set_new(o, "tsr_max", num_or_null(r->tsr_region_max));
    json_object_set_new(o, "tsr_mean", num_or_null(r->tsr_region_mean));
    for (i = 0; i < r->nregions; i++) {
        const struct an_region *g = &r->regions[i];
        json_array_append_new(a, json_pack(
            "{s:i, s:[f,f,f,f], s:f, s:f, s:f, s:o}", "id", g->id,
            "bbox_um", g->x * r->analysis_mpp, g->y * r->analysis_mpp,
            g->w * r->analysis_mpp, g->h * r->analysis_mpp,
            "area_mm2", g->area_mm2, "tumor_area_mm2", g->tumor_mm2,
            "stroma_area_mm2", g->stroma_mm2, "tsr", num_or_null(g->tsr)));
    }
    json_object_set_new(o, "regions", a);
    return o;
}

int
an__results_write(const char *path, const char *slide,
                  const struct an_results *r, json_t *files,
                  struct ss_err *err)
{
    json_t *o = json_object();
    char now[32], *text;
    int rc;

    util_utc_iso(now, sizeof(now));
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "slide", json_string(slide));
    json_object_set_new(o, "stain", json_string(r->stain));
    json_object_set_new(o, "tissue_area_mm2", json_real(r->tissue_area_mm2));
    json_object_set_new(o, "tumor_area_mm2", json_real(r->tumor_area_mm2));
    json_object_set_new(o, "stroma_area_mm2", json_real(r->stroma_area_mm2));
    json_object_set_new(o, "tumor_stroma_ratio", num_or_null(r->tsr));
    json_object_set_new(o, "tumor_stroma_ratio_definition",
                        json_string("tumor / (tumor + stroma)"));
    json_object_set_new(o, "tsr_regions", regions_json(r));
    json_object_set_new(o, "ki67_index", num_or_null(r->ki67_index));
    if (isfinite(r->ki67_index) || r->ki67_nuclei > 0)
        json_object_set_new(o, "ki67", json_pack("{s:s, s:i, s:i, s:{s:o, "
                            "s:i, s:i}, s:{s:o, s:i, s:i}}",
                            "scope", r->ki67_scope == AN_KI67_TISSUE ?
                            "tissue" : "tumor", r->ki67_scope ==
                            AN_KI67_TISSUE ? "nuclei" : "tumor_nuclei",
                            r->ki67_nuclei, "positive_nuclei",
                            r->ki67_positive, "tumor", "index",
                            num_or_null(r->ki67_tumor_index), "nuclei",
                            r->ki67_tumor_nuclei, "positive_nuclei",
                            r->ki67_tumor_positive, "tissue", "index",
                            num_or_null(r->ki67_tissue_index), "nuclei",
                            r->ki67_tissue_nuclei, "positive_nuclei",
                            r->ki67_tissue_positive));
    json_object_set_new(o, "ck_positive_area_mm2",
                        num_or_null(r->ck_positive_area_mm2));
    json_object_set_new(o, "files", json_incref(files));
    json_object_set_new(o, "model", json_string(r->model));
    json_object_set_new(o, "mpp", json_real(r->slide_mpp));
    json_object_set_new(o, "analysis_mpp", json_real(r->analysis_mpp));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "created_utc", json_string(now));
    text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(o);
    if (text == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    rc = util_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}
