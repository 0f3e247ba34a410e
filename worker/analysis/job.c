/* SPDX-License-Identifier: MIT */
/*
 * One analysis job from slide to results.json: segment, measure, run the
 * stain's read-outs, write the outputs.  A results.json left by an
 * earlier run is removed first, so that its presence always means this
 * run finished.
 */
#include "worker/analysis/output.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/slide.h"
#include "worker/analysis/geojson.h"

/* Output steps counted in the progress after the segmentation. */
#define OUTPUT_STEPS 6

struct job_progress {
    const struct an_job *j;
    int seg_total;                  /* last total the segmentation gave */
    int done;
};

static void
job_progress_seg(void *ctx, int done, int total)
{
    struct job_progress *p = ctx;

    p->seg_total = total;
    p->done = done;
    if (p->j->progress != NULL)
        p->j->progress(p->j->progress_ctx, done, total + OUTPUT_STEPS);
}

static void
job_progress_step(struct job_progress *p)
{
    p->done = (p->done < p->seg_total ? p->seg_total : p->done) + 1;
    if (p->j->progress != NULL)
        p->j->progress(p->j->progress_ctx, p->done,
                       p->seg_total + OUTPUT_STEPS);
}

void
an_job_default(struct an_job *j)
{
    memset(j, 0, sizeof(*j));
    j->stain = AN_STAIN_HE;
}

static const char *
out_path(const struct an_job *j, const char *name)
{
    static __thread char p[4200];

    snprintf(p, sizeof(p), "%s/%s", j->out_dir, name);
    return p;
}

/* The CK-guided tumour mask replaces the tumour class: tumour where the
 * mask is set, stroma on the rest of the tissue. */
static void
apply_ck_mask(struct an_seg *sg, const struct img *mask)
{
    size_t i, n = (size_t)sg->w * sg->h;

    for (i = 0; i < n; i++) {
        uint8_t *l = (uint8_t *)sg->label->data + i;
        uint8_t *p = (uint8_t *)sg->prob->data + i * AN_NCLASS;
        if (!((uint8_t *)sg->tissue->data)[i])
            continue;
        *l = ((uint8_t *)mask->data)[i] ? AN_TUMOR : AN_STROMA;
        memset(p, 0, AN_NCLASS);
        p[*l] = 255;
    }
}

static int
stain_readouts(const struct an_job *j, struct an_slide *s, struct an_seg *sg,
               struct an_results *r, json_t *files, struct ss_err *err)
{
    struct img *mask = NULL;
    int rc;

    r->ki67_index = r->ki67_tumor_index = r->ki67_tissue_index = NAN;
    r->ck_positive_area_mm2 = NAN;
    if (j->stain == AN_STAIN_KI67)
        return an__ki67(s, sg, j->ki67_scope, r, err);
    if (j->stain != AN_STAIN_CK)
        return 0;
    rc = an__ck(sg, r, &mask, err);
    if (rc < 0)
        return rc;
    apply_ck_mask(sg, mask);
    rc = img_png_write(mask, out_path(j, "ck_tumor_mask.png"), err);
    img_free(mask);
    if (rc == 0)
        json_object_set_new(files, "ck_tumor_mask",
                            json_string("ck_tumor_mask.png"));
    an_results_free(r);
    return rc < 0 ? rc : an_measure(sg, r, err);
}

/* Writes one derived raster as pyramid + thumbnail.
 * LIMIT: overlays and heat maps are pyramids at the analysis resolution
 * (2 µm/px), not the slide's; viewers align them by their pixel size. */
static int
write_map(const struct an_job *j, struct img *im, const char *base,
          const char *key, double mpp, json_t *files, struct ss_err *err)
{
    char tif[128], png[128], key_png[64];
    int rc;

    if (im == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", base);
    snprintf(tif, sizeof(tif), "%s.tif", base);
    snprintf(png, sizeof(png), "%s.png", base);
    snprintf(key_png, sizeof(key_png), "%s_png", key);
    rc = an__write_pyramid(im, mpp, an_stain_name(j->stain),
                           out_path(j, tif), err);
    if (rc == 0)
        rc = an__write_thumb(im, 2048, out_path(j, png), err);
    img_free(im);
    if (rc < 0)
        return rc;
    json_object_set_new(files, key, json_string(tif));
    json_object_set_new(files, key_png, json_string(png));
    return 0;
}

static int
write_outputs(const struct an_job *j, const struct an_seg *sg,
              json_t *files, struct job_progress *pg, struct ss_err *err)
{
    int rc;

    rc = write_map(j, an__overlay(sg->rgb, sg->label), "overlay", "overlay",
                   sg->mpp, files, err);
    job_progress_step(pg);
    if (rc == 0)
        rc = write_map(j, an__heatmap(sg, AN_TUMOR), "heat_tumor",
                       "heat_tumor", sg->mpp, files, err);
    job_progress_step(pg);
    if (rc == 0)
        rc = write_map(j, an__heatmap(sg, AN_STROMA), "heat_stroma",
                       "heat_stroma", sg->mpp, files, err);
    job_progress_step(pg);
    if (rc == 0)
        rc = write_map(j, an__entropy_map(sg), "uncertainty", "uncertainty",
                       sg->mpp, files, err);
    job_progress_step(pg);
    if (rc == 0)
        rc = img_png_write(sg->label, out_path(j, "labels.png"), err);
    if (rc == 0)
        json_object_set_new(files, "labels", json_string("labels.png"));
    if (rc == 0)
        rc = img_png_write(sg->prob, out_path(j, "probabilities.png"), err);
    if (rc == 0)
        json_object_set_new(files, "probabilities",
                            json_string("probabilities.png"));
    if (rc == 0)
        rc = an_geojson_write(out_path(j, "predictions.geojson"), sg->label,
                              sg->scale, err);
    if (rc == 0)
        json_object_set_new(files, "geojson",
                            json_string("predictions.geojson"));
    job_progress_step(pg);
    return rc;
}

static int
run(const struct an_job *j, struct an_slide *s, struct an_model *m,
    struct an_results *r, json_t *files, struct ss_err *err)
{
    struct job_progress pg = { .j = j };
    struct an_seg_options so;
    struct an_seg *sg = NULL;
    double t0 = util_now_ms();
    int rc;

    an_seg_options_default(&so);
    so.threads = j->threads;
    so.progress = job_progress_seg;
    so.progress_ctx = &pg;
    m->stain = j->stain;
    rc = an_segment(s, m, &so, &sg, err);
    if (rc == 0)
        rc = an_measure(sg, r, err);
    if (rc == 0)
        rc = stain_readouts(j, s, sg, r, files, err);
    if (rc == 0)
        rc = write_outputs(j, sg, files, &pg, err);
    if (rc == 0 && j->explain)
        rc = an__explain(j, s, m, sg, files, err);
    if (rc == 0) {
        snprintf(r->model, sizeof(r->model), "%s", m->name);
        snprintf(r->stain, sizeof(r->stain), "%s", an_stain_name(j->stain));
        r->seconds = (util_now_ms() - t0) / 1e3;
        rc = an__results_write(out_path(j, "results.json"), j->wsi, r,
                               files, err);
    }
    job_progress_step(&pg);
    an_seg_free(sg);
    return rc;
}

int
an_analyse(const struct an_job *j, struct an_results *res,
           struct ss_err *err)
{
    struct an_results r = { 0 };
    struct an_slide *s = NULL;
    struct an_model *m = NULL;
    json_t *files = json_object();
    int rc;

    /* The input first, so that a missing slide is reported as such; then
     * the output directory, made here but never its parents (a missing
     * parent is a mistyped path, -ENOENT naming it). */
    rc = an_slide_open_mpp(j->wsi, j->mpp_override, j->force_mpp, &s, err);
    if (rc == 0 && an_slide_stain(s) != NULL &&
        !slide_stain_same(an_slide_stain(s), an_stain_name(j->stain)))
        rc = err_set(err, -EDOM, "%s declares stain %s; analysing it as %s "
                     "would measure the wrong stain", j->wsi,
                     an_slide_stain(s), an_stain_name(j->stain));
    if (rc == 0)
        rc = util_mkdir_leaf(j->out_dir, err);
    if (rc == 0 && unlink(out_path(j, "results.json")) != 0 &&
        errno != ENOENT)
        rc = err_set(err, -errno, "%s: %s", out_path(j, "results.json"),
                     strerror(errno));
    if (rc == 0)
        rc = an_model_load(j->model, &m, err);
    if (rc == 0 && j->explain)
        rc = an__explain_check(j, s, m, err);
    if (rc == 0)
        rc = run(j, s, m, &r, files, err);
    if (rc == 0)
        log_info("analysis", "done slide=%s tumor_mm2=%.4f stroma_mm2=%.4f "
                 "s=%.1f", j->wsi, r.tumor_area_mm2, r.stroma_area_mm2,
                 r.seconds);
    json_decref(files);
    an_model_free(m);
    an_slide_close(s);
    if (res != NULL && rc == 0)
        *res = r;
    else
        an_results_free(&r);
    return rc;
}
