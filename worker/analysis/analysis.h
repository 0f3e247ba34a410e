/* SPDX-License-Identifier: MIT */
/*
 * Slide analysis: segmentation of a whole-slide image into glass, tumour
 * and stroma, the biomarkers measured on that segmentation, and the files
 * written beside the slide.  The `slidescan-worker analyse` program and the
 * `slidescan analyse` command are thin shells around an_analyse().
 *
 * The pipeline, in order:
 *   1. an_slide_open()        any slide OpenSlide reads, or a plain PNG,
 *                             JPEG or TIFF with a pixel size given
 *   2. read at the model's resolution (an_model.mpp, about 1-2 µm/px)
 *   3. tissue detection at low resolution
 *   4. tiled prediction with context margins; overlapping tile logits are
 *      blended with tapered weights, so tile seams do not show
 *   5. biomarkers: areas, tumour-stroma ratio per slide and per tumour
 *      region, KI67 index (H-DAB deconvolution, nucleus detection), CK
 *      positive area and a CK-guided tumour mask
 *   6. outputs: pyramidal overlay TIFF, PNG thumbnail, heat maps, entropy
 *      map, label map, GeoJSON, and last results.json (written durably)
 *
 * Prefix: an_ for what other folders call, an__ for helpers shared inside
 * worker/analysis (see internal.h).
 */
#ifndef SS_WORKER_ANALYSIS_H
#define SS_WORKER_ANALYSIS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

/* Class indices of every label map and probability map. */
enum {
    AN_GLASS = 0,                   /* background: no tissue */
    AN_TUMOR = 1,
    AN_STROMA = 2,
    AN_NCLASS = 3,
};

enum an_stain { AN_STAIN_HE = 0, AN_STAIN_KI67 = 1, AN_STAIN_CK = 2 };

/* "HE", "KI67", "CK" (case-insensitive; "H&E" accepted) → 0, or -EINVAL. */
int an_stain_parse(const char *s, enum an_stain *out);
const char *an_stain_name(enum an_stain s);

/* ---- slides ------------------------------------------------------------ */

struct an_slide;

/* Opens a slide through OpenSlide, or, when OpenSlide does not recognise
 * the file, as a plain PNG/JPEG/TIFF image.  mpp_override > 0 replaces
 * the pixel size the file states (plain images state none, so they need
 * it).  Errors name the file and the cause: not a slide, unsupported
 * compression, no pixel size. */
int an_slide_open(const char *path, double mpp_override,
                  struct an_slide **out, struct ss_err *err);

/* Pixel sizes a user may give (µm per level-0 pixel), the range the slide
 * reader believes in a file's metadata. */
#define AN_MPP_MIN 0.05
#define AN_MPP_MAX 100.0

/* A pixel size given beyond this fraction of the one the file states
 * contradicts it. */
#define AN_MPP_SAME 0.01

/* Parses a --mpp argument: a finite number in AN_MPP_MIN..AN_MPP_MAX.
 * -EINVAL with the reason (naming the text) otherwise. */
int an_mpp_parse(const char *text, double *mpp, struct ss_err *err);

/* The most analysis threads a slide is segmented with (--threads, and
 * "one per CPU" on a larger machine). */
#define AN_THREADS_MAX 64

/* Parses a --threads argument: a whole number in 0..AN_THREADS_MAX, 0
 * meaning one per CPU (digits only: no sign, space or exponent).
 * -EINVAL with the reason (naming the text as typed) otherwise. */
int an_threads_parse(const char *text, int *threads, struct ss_err *err);

/* Like an_slide_open(), for a pixel size the user gave (0: none); path
 * may end in "@MPP" (storage/slide.h), which counts as given when mpp is
 * 0.  A given size outside AN_MPP_MIN..AN_MPP_MAX is -EINVAL.  When the
 * file states a pixel size that differs by more than AN_MPP_SAME, the
 * open fails with -EDOM naming both values, unless force_mpp: then the
 * given size wins and a warning is logged. */
int an_slide_open_mpp(const char *path, double mpp, bool force_mpp,
                      struct an_slide **out, struct ss_err *err);
void an_slide_close(struct an_slide *s);

/* Level-0 size in pixels and µm per level-0 pixel. */
void an_slide_size(const struct an_slide *s, int64_t *w, int64_t *h);
double an_slide_mpp(const struct an_slide *s);
const char *an_slide_path(const struct an_slide *s);

/* The stain the slide file declares in its metadata (slide_stain()), or
 * NULL.  an_analyse() refuses (-EDOM) a job whose stain contradicts it. */
const char *an_slide_stain(const struct an_slide *s);

/* Reads the level-0 rectangle (x0, y0, w0, h0) resampled (area average)
 * to out_w × out_h, as RGB U8.  Pixels outside the slide, and transparent
 * ones, are white.  Decoding failures ("Bogus marker length") name the
 * file and the rectangle. */
int an_slide_read(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0,
                  int64_t h0, int out_w, int out_h, struct img **out,
                  struct ss_err *err);

/* ---- models ------------------------------------------------------------ */

struct an_model;

/* What a model does: maps an RGB tile (core plus margin_px of context on
 * every side) to per-pixel logits for AN_NCLASS classes. */
struct an_model_ops {
    const char *kind;               /* "classical", "cnn" */
    /* in: RGB U8 tile; logits: F32 image of the same size, AN_NCLASS
     * channels, allocated by the caller.  Values in the margin are not
     * used.  Must be safe to call from several threads at once. */
    int (*predict)(struct an_model *m, const struct img *in,
                   struct img *logits, struct ss_err *err);
    void (*destroy)(struct an_model *m);
};

struct an_model {
    const struct an_model_ops *ops;
    char name[96];                  /* reported in results.json */
    double mpp;                     /* µm per pixel the model expects */
    int margin_px;                  /* context needed on each side */
    int tile_px;                    /* preferred core tile size */
    enum an_stain stain;            /* stain of the slide being analysed,
                                       set by the caller before predict */
    void *priv;
    /* True: the tissue mask decides glass against tissue (outside it
     * glass, inside it the model's better tissue class), because it
     * follows edges to the pixel while the model's view is coarser.
     * False: the mask only decides which tiles run and the model's own
     * glass class decides the rest. */
    bool mask_glass;
};

/* Loads a model: the word "classical" gives the colour-deconvolution
 * baseline; a path gives a CNN model file (JSON architecture with its
 * safetensors weights beside it).  NULL picks the default model
 * (an_model_default_path()), or the baseline when none is installed,
 * logging a warning that names every place looked in. */
int an_model_load(const char *path_or_name, struct an_model **out,
                  struct ss_err *err);
void an_model_free(struct an_model *m);

/* The classical baseline (see classic.c for the features and constants). */
int an_model_classical(struct an_model **out, struct ss_err *err);

/* The shipped default model: $SLIDESCAN_MODEL, else
 * $SLIDESCAN_ROOT/models/default.safetensors, else models/ found from the
 * program's path (build tree or installed share directory); NULL when
 * none exists. */
const char *an_model_default_path(void);

/* ---- segmentation ------------------------------------------------------ */

/* A slide segmented at the model's resolution.  Every raster is w × h. */
struct an_seg {
    int w, h;
    double ext_w, ext_h;            /* the slide's extent in raster px
                                       (≤ w, h): the last column and row
                                       cover only part of a pixel */
    double mpp;                     /* µm per raster pixel */
    double slide_mpp;               /* µm per level-0 pixel */
    double scale;                   /* level-0 pixels per raster pixel */
    struct img *rgb;                /* slide, RGB U8 */
    struct img *tissue;             /* U8, 1 = tissue: the detected mask
                                       while predicting, then every pixel
                                       not labelled glass */
    struct img *prob;               /* U8 × AN_NCLASS, probability × 255 */
    struct img *label;              /* U8, AN_GLASS / AN_TUMOR / AN_STROMA */
    int tiles_total, tiles_run;     /* tiles predicted (tissue only) */
};

void an_seg_free(struct an_seg *sg);

/* Progress callback: done of total units of work. */
typedef void (*an_progress_fn)(void *ctx, int done, int total);

struct an_seg_options {
    int threads;                    /* 0: one per CPU */
    int tile_px;                    /* 0: the model's preference */
    int overlap_px;                 /* blending width; 0: tile / 8 */
    an_progress_fn progress;
    void *progress_ctx;
};

void an_seg_options_default(struct an_seg_options *o);

/* Reads the slide at the model's resolution, detects tissue and predicts
 * every tile that holds tissue.  *out is the caller's. */
int an_segment(struct an_slide *s, struct an_model *m,
               const struct an_seg_options *o, struct an_seg **out,
               struct ss_err *err);

/* The same on an image already in memory at the model's resolution
 * (tests, training, evaluation). */
int an_segment_image(const struct img *rgb, double mpp, struct an_model *m,
                     const struct an_seg_options *o, struct an_seg **out,
                     struct ss_err *err);

/* Tissue mask (U8, 1 = tissue) of an RGB image at mpp µm/px.  Glass is
 * where the optical density against the slide's glass colour, smoothed
 * over AN_GLASS_SIGMA_UM, stays under AN_GLASS_OD, opened with a disc of
 * AN_GLASS_OPEN_UM: clear stripes narrower than that inside tissue (pale
 * gaps in stroma, which are as clear as glass pixel by pixel) are tissue,
 * while glass channels and lumens wider than the disc stay glass.  Tissue
 * is the rest, less specks under AN_TISSUE_MIN_AREA_UM2. */
#define AN_GLASS_OD 0.012
#define AN_GLASS_SIGMA_UM 1.0
#define AN_GLASS_OPEN_UM 7.0
#define AN_TISSUE_MIN_AREA_UM2 2000.0
struct img *an_tissue_mask(const struct img *rgb, double mpp);

/* The glass colour: per channel, the most frequent value of 200 or more
 * when at least 5 % of the pixels are that bright, else 255. */
void an_background_rgb(const struct img *rgb, double bg[3]);

/* ---- biomarkers -------------------------------------------------------- */

/* One tumour region: a connected component of the tumour mask closed
 * over AN_REGION_CLOSE_UM, restricted to tissue. */
struct an_region {
    int id;
    int x, y, w, h;                 /* bounding box, raster pixels */
    double area_mm2;                /* tumour + stroma inside the region */
    double tumor_mm2, stroma_mm2;
    double tsr;                     /* tumor / (tumor + stroma) */
};

#define AN_REGION_CLOSE_UM 100.0
#define AN_REGION_MIN_MM2 0.01

/* Which nuclei a KI67 index counts.  TUMOR, the lab's definition, counts
 * the nuclei the segmentation puts on tumour; TISSUE counts every nucleus
 * on tissue, as a positive-cell count over a hand-drawn tumour region
 * does (QuPath's positive cell detection on an annotation, say). */
enum an_ki67_scope { AN_KI67_TUMOR, AN_KI67_TISSUE };

/* "tumor" or "tissue" → 0, or -EINVAL. */
int an_ki67_scope_parse(const char *s, enum an_ki67_scope *out);

/* A score printed "%.4f" into buf, or "n/a" when it could not be
 * computed (NaN: a class nobody drew, no validation example). */
const char *an_score_text(double v, char buf[16]);

struct an_results {
    double slide_mpp, analysis_mpp;
    double tissue_area_mm2, tumor_area_mm2, stroma_area_mm2;
    double tsr;                     /* tumor / (tumor + stroma); NAN none */
    int nregions;
    struct an_region *regions;
    double tsr_region_min, tsr_region_max, tsr_region_mean;   /* NAN */
    /* KI67: counts of tumour nuclei; index = positive / total (NAN when
     * not a KI67 slide or no tumour nuclei were found). */
    int ki67_nuclei, ki67_positive;
    enum an_ki67_scope ki67_scope;
    double ki67_index;
    /* Both scopes, whichever was chosen: nuclei on tumour, and on any
     * tissue; their indices (NAN when none). */
    int ki67_tumor_nuclei, ki67_tumor_positive;
    int ki67_tissue_nuclei, ki67_tissue_positive;
    double ki67_tumor_index, ki67_tissue_index;
    /* CK: DAB-positive area (NAN when not a CK slide). */
    double ck_positive_area_mm2;
    char model[96];
    char stain[8];
    double seconds;
};

void an_results_free(struct an_results *r);

/* Areas, TSR and regions from a segmentation. */
int an_measure(const struct an_seg *sg, struct an_results *r,
               struct ss_err *err);

/* ---- the whole job ----------------------------------------------------- */

struct an_job {
    const char *wsi;                /* input slide */
    const char *out_dir;            /* created when missing */
    enum an_stain stain;
    const char *model;              /* NULL: default (see an_model_load) */
    double mpp_override;            /* > 0: replaces the file's pixel size */
    bool force_mpp;                 /* even when it contradicts the file's
                                       (else an_analyse fails with -EDOM) */
    int threads;
    enum an_ki67_scope ki67_scope;  /* default AN_KI67_TUMOR */
    bool explain;                   /* write a Grad-CAM map for the box */
    int64_t explain_box[4];         /* x, y, w, h in level-0 pixels */
    an_progress_fn progress;
    void *progress_ctx;
};

void an_job_default(struct an_job *j);

/* Largest coordinate --explain accepts, level-0 px. */
#define AN_EXPLAIN_COORD_MAX 1e12

/* Parses --explain's "X,Y,W,H" (level-0 px, whole numbers, 1e9 notation
 * allowed): X, Y >= 0, W, H >= 1, none above AN_EXPLAIN_COORD_MAX;
 * -EINVAL otherwise.  Whether the box fits the slide is checked by
 * an_analyse (-EDOM). */
int an_explain_box_parse(const char *text, int64_t box[4]);

/* Runs the pipeline and writes every output into out_dir, results.json
 * last.  *res (optional) receives the measurements. */
int an_analyse(const struct an_job *j, struct an_results *res,
               struct ss_err *err);

#endif
