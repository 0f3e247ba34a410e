/* SPDX-License-Identifier: MIT */
/*
 * Evaluation of predictions against truth over any number of image
 * pairs: pooled pixel confusion and per-class scores, region mAP, and
 * MAE/RMSE of the tumour-stroma ratio and KI67 index against reference
 * values.  Conventions for empty cases are those of metrics.h.
 *
 * A prediction is an analysis output directory (labels.png,
 * probabilities.png, results.json) or a label PNG (0 glass, 1 tumour,
 * 2 stroma).  A truth is a label PNG (255 = unlabelled, ignored), a
 * QuPath GeoJSON file (rasterised at the prediction's resolution, see
 * geojson.h), or a directory holding labels.png or annotations.geojson
 * and optionally truth.json.
 *
 * Sizes.  A truth label map of the prediction's size is compared pixel by
 * pixel.  Otherwise it must map onto the prediction through a scale,
 * truth pixels per prediction pixel: the one given by the caller
 * (`slidescan eval --scale`), else for an analysis directory the one its
 * results.json states (analysis_mpp / mpp: a truth map at the slide's
 * level 0, like the phantom's labels.png).  The truth must then span the
 * prediction's size × scale to within one prediction pixel, and is
 * sampled at the prediction pixels' centres; any other size is an error
 * naming both files and sizes, never a silent stretch.  GeoJSON
 * coordinates are level-0 pixels and are rasterised with the same scale
 * (1 for a label PNG prediction without --scale).
 *
 * Reference values come from a JSON file: "tumor_stroma_ratio" and
 * "ki67_index" in results.json's convention (the ratio is the tumour
 * fraction of tumour + stroma), or tumour and stroma areas from which
 * that fraction is computed ("areas_mm2": {"tumor", "stroma"} as the
 * phantom truth files have, "tumor_area_mm2" and "stroma_area_mm2", or
 * "area_um2": [glass, tumor, stroma]), and "ki67_fraction".  A
 * "tumor_fraction" (the phantom's truth.json, version 2) wins over both.
 * Areas win over a "tumor_stroma_ratio" in the same file: version 1
 * phantom truth files used that key for tumour / stroma (version 2 calls
 * it "tumor_to_stroma_area_ratio", which is never read as the ratio).
 * A KI67 reference counts tumour nuclei unless "ki67_scope" says
 * "tissue"; the prediction's index of the same scope is compared.
 */
#ifndef SS_WORKER_ANALYSIS_EVAL_H
#define SS_WORKER_ANALYSIS_EVAL_H

#include <jansson.h>
#include <stdio.h>

#include "worker/analysis/metrics.h"

struct an_eval {
    struct an_confusion conf;
    struct an_ap ap;
    struct an_err_acc tsr, ki67;
    int tsr_skipped, ki67_skipped;
    int ki67_scopes;                /* bit 1 << enum an_ki67_scope per
                                       KI67 scope compared */
    int images;
    int both_empty[AN_METRIC_MAXCLS];   /* images where a class is absent
                                           from truth and prediction */
    struct img *errmap;             /* error map of the first image */
    json_t *per_image;
};

/* min_region_px: regions smaller than this are left out of the mAP. */
void an_eval_init(struct an_eval *e, int64_t min_region_px);
void an_eval_fini(struct an_eval *e);

/* The keys of a reference JSON object that give values, for messages and
 * help.  Any other key, except the descriptive ones of slidescan's own
 * truth.json and results.json, makes the file an error (-EDOM). */
#define AN_EVAL_REF_KEYS \
    "tumor_stroma_ratio or tumor_fraction (tumour / (tumour + stroma)), " \
    "tumor_area_mm2 with stroma_area_mm2, areas_mm2 {\"tumor\", " \
    "\"stroma\"}, area_um2 [glass, tumor, stroma], ki67_index or " \
    "ki67_fraction (with ki67_scope \"tumor\" or \"tissue\")"

/* Adds one pair; ref (may be NULL) is a JSON file of reference values
 * that overrides the truth directory's truth.json; a key of it that is
 * unknown, a value key whose value is unusable (no number, out of range,
 * an area without its partner), a key given twice or a file without a
 * value is -EDOM naming key, value and why. */
int an_eval_add(struct an_eval *e, const char *pred, const char *truth,
                const char *ref, struct ss_err *err);

/* The same with scale > 0 truth pixels per prediction pixel in place of
 * the prediction's own (see "Sizes" above); scale ≤ 0 is an_eval_add(). */
int an_eval_add_scaled(struct an_eval *e, const char *pred,
                       const char *truth, const char *ref, double scale,
                       struct ss_err *err);

json_t *an_eval_json(const struct an_eval *e);
void an_eval_print(const struct an_eval *e, FILE *f);

/* The confusion matrix (row-normalised shades with counts) beside the
 * first image's error map. */
int an_eval_png(const struct an_eval *e, const char *path,
                struct ss_err *err);

#endif
