/* SPDX-License-Identifier: MIT */
/*
 * Region annotations: QuPath GeoJSON in and out, rasterisation, several
 * annotators per slide, their majority-vote consensus and agreement.
 *
 * Coordinates are level-0 slide pixels, as QuPath writes them.  A feature
 * counts when its geometry is a Polygon or MultiPolygon (rings after the
 * first are holes) and its classification names ROI, Tumor or Stroma
 * (case-insensitive; "Tumour" too, and QuPath's "Region*" for an ROI),
 * given either as QuPath 0.3+ does,
 * "classification": {"name": ..., "color": [...]}, or as older files do,
 * "classification": "Tumor".  The annotator is the feature's "annotator",
 * "author" or "creator" property, else the name the caller gives (the
 * file's base name, usually).
 *
 * Rasterised truth: a pixel is labelled by the polygons that contain its
 * centre (tumour over stroma where both do); a polygon contains the
 * pixels inside its outer ring and outside its holes.  A hole in a tumour
 * or stroma polygon is the annotator saying "not this class": its pixels
 * are glass/background (0), counted as such by evaluation and training,
 * unless another polygon claims them (a stroma polygon drawn in the hole,
 * a tumour island inside it).  Inside an ROI, pixels no polygon claims
 * are glass/background too; a hole in an ROI takes its pixels out of the
 * ROI.  Every other pixel (outside all polygons, or the whole image
 * outside the polygons when a file has no ROI) is unlabelled
 * (AN_UNLABELLED) and ignored by training and evaluation.
 */
#ifndef SS_WORKER_ANALYSIS_GEOJSON_H
#define SS_WORKER_ANALYSIS_GEOJSON_H

#include <stdint.h>

#include "common/err.h"
#include "common/img.h"
#include "worker/analysis/metrics.h"

#define AN_UNLABELLED 255

enum an_ann_class { AN_ANN_ROI = 0, AN_ANN_TUMOR = 1, AN_ANN_STROMA = 2 };

struct an_ring {
    int n;                          /* points, first == last not needed */
    double *xy;                     /* x0, y0, x1, y1, ... */
};

struct an_polygon {
    int nrings;                     /* ring 0 outer, then holes */
    struct an_ring *rings;
};

#define AN_ORIGIN_TEXT 128

struct an_feature {
    enum an_ann_class cls;
    char origin[AN_ORIGIN_TEXT];    /* "FILE: feature I", for messages */
    char annotator[64];
    int npoly;
    struct an_polygon *poly;
};

/* Why a feature was left out: "FILE: feature I (class X): CAUSE". */
#define AN_SKIP_TEXT 320

struct an_annotations {
    int n;
    struct an_feature *f;
    int skipped;                    /* features of other classes/types */
    char (*skip_why)[AN_SKIP_TEXT]; /* skipped entries, one per skip */
};

/* Reads a FeatureCollection, a bare array of features or one feature.
 * Errors name the file, and the feature index for bad geometry; a file
 * that cannot be opened is -errno (-ENOENT when it does not exist),
 * text that is not JSON SS_EFORMAT. */
int an_geojson_read(const char *path, const char *default_annotator,
                    struct an_annotations **out, struct ss_err *err);
void an_annotations_free(struct an_annotations *a);

/* Appends b's features to a (several files of one slide). */
int an_annotations_merge(struct an_annotations *a,
                         const struct an_annotations *b,
                         struct ss_err *err);

/* Distinct annotator names, in order of first appearance; returns the
 * count (≤ max). */
int an_annotators(const struct an_annotations *a, const char **names,
                  int max);

/* Leaves out every feature whose polygons together cover less than
 * min_area_px level-0 px² (one label raster pixel) or nothing at all, as
 * skipped with the cause "no area": it would label no pixel.  -ENOMEM
 * only. */
int an_annotations_drop_small(struct an_annotations *a, double min_area_px,
                              struct ss_err *err);

/* Area in level-0 px² of one polygon (outer minus holes, shoelace). */
double an_polygon_area(const struct an_polygon *p);

/* Truth raster (U8, w × h) of one annotator (NULL: everyone's features
 * together) with raster pixel (i, j) covering level-0 pixels from
 * (i * scale, j * scale): values AN_GLASS, AN_TUMOR, AN_STROMA,
 * AN_UNLABELLED. */
int an_annotations_raster(const struct an_annotations *a,
                          const char *annotator, int w, int h, double scale,
                          struct img **out, struct ss_err *err);

/* Majority vote over k rasters: the class most annotators gave a pixel
 * (unlabelled votes do not count); ties and pixels nobody labelled are
 * AN_UNLABELLED. */
struct img *an_consensus(const struct img *const *r, int k);

/* Agreement of two annotators over the pixels both labelled. */
struct an_agreement {
    double dice_tumor, dice_stroma; /* NAN when both empty */
    double kappa;
    int64_t pixels;                 /* labelled by both */
};

void an_agreement(const struct img *a, const struct img *b,
                  struct an_agreement *out);

/* Writes a label map as a QuPath-loadable FeatureCollection: one feature
 * per class present (MultiPolygon traced along pixel edges, holes
 * included), coordinates in level-0 pixels (raster pixels × scale),
 * classified "Tumor" (green) and "Stroma" (red). */
int an_geojson_write(const char *path, const struct img *label,
                     double scale, struct ss_err *err);

#endif
