/* SPDX-License-Identifier: MIT */
/*
 * Output files of an analysis (output.c, pyramid.c), internal to
 * worker/analysis.
 */
#ifndef SS_WORKER_ANALYSIS_OUTPUT_H
#define SS_WORKER_ANALYSIS_OUTPUT_H

#include <jansson.h>

#include "worker/analysis/internal.h"

/* The slide with tumour green and stroma red blended over it. */
struct img *an__overlay(const struct img *rgb, const struct img *label);

/* Colour-mapped probability of class cls; glass is white. */
struct img *an__heatmap(const struct an_seg *sg, int cls);

/* Colour-mapped normalised entropy of the class probabilities. */
struct img *an__entropy_map(const struct an_seg *sg);

/* PNG no larger than max_px on its longer side. */
int an__write_thumb(const struct img *im, int max_px, const char *path,
                    struct ss_err *err);

/* A pyramidal, tiled JPEG TIFF of an RGB image at mpp µm/px that
 * OpenSlide opens with that pixel size; written under a temporary name
 * and renamed. */
int an__write_pyramid(const struct img *rgb, double mpp, const char *stain,
                      const char *path, struct ss_err *err);

/* results.json: the measurements plus the files object (borrowed). */
int an__results_write(const char *path, const char *slide,
                      const struct an_results *r, json_t *files,
                      struct ss_err *err);

/* Checks the job's explain box before the analysis runs: -ENOTSUP for a
 * model without a Grad-CAM layer, -EDOM (a usage error) for a box that
 * starts outside the slide (the message gives its level-0 size) or spans
 * more than the largest region (the message gives the limit). */
int an__explain_check(const struct an_job *j, struct an_slide *s,
                      struct an_model *m, struct ss_err *err);

/* Grad-CAM explanation of the job's explain box (explain.c): writes
 * explain.png and adds it to files. */
int an__explain(const struct an_job *j, struct an_slide *s,
                struct an_model *m, const struct an_seg *sg, json_t *files,
                struct ss_err *err);

#endif
