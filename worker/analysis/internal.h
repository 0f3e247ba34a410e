/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared inside worker/analysis: optical density and colour
 * deconvolution, box filters, distance transforms, connected components,
 * resampling.  Pure pixel work on caller-owned buffers, no I/O.
 */
#ifndef SS_WORKER_ANALYSIS_INTERNAL_H
#define SS_WORKER_ANALYSIS_INTERNAL_H

#include <stdint.h>

#include "common/img.h"
#include "worker/analysis/analysis.h"

/* ---- areas ------------------------------------------------------------- */

/* The share of raster pixel i (of n along an axis) that lies inside the
 * slide when the slide spans ext pixels: 1 except for the last pixel,
 * which the raster's whole-pixel size rounds up.  Areas weight each
 * pixel by wx · wy so that they never exceed the slide's own.  An extent
 * of 0 (not set) means the raster is the slide: every weight is 1. */
static inline double
an__edge_weight(double ext, int n, int i)
{
    double f = ext - (n - 1);

    return i < n - 1 || !(ext > 0) || f >= 1 ? 1 : f > 0 ? f : 0;
}

/* Adds to cnt[k] (k < nv) the weighted number of raster pixels of sg
 * whose value in v (sg->w × sg->h) is k. */
void an__weighted_counts(const struct an_seg *sg, const uint8_t *v, int nv,
                         double *cnt);

/* Adds to *cnt the weighted number of non-zero pixels of mask. */
void an__weighted_count_of(const struct an_seg *sg, const uint8_t *mask,
                           double *cnt);

/* ---- colour ------------------------------------------------------------ */

/* Ruifrok & Johnston (2001) stain vectors: optical density per unit of
 * stain in R, G, B, normalised to unit length when loaded. */
extern const double an__vec_hematoxylin[3];
extern const double an__vec_eosin[3];
extern const double an__vec_dab[3];

/* A colour-deconvolution matrix: concentrations = od · inv. */
struct an__deconv {
    float inv[3][3];
    float fwd[3][3];                /* stain vectors (rows), for mixing */
    float lut[256];                 /* OD of an 8-bit value, I0 = 255 */
};

/* Builds the unmixing matrix for stains a, b and a third vector (the
 * cross product of a and b when c is NULL, for the residual channel). */
void an__deconv_init(struct an__deconv *d, const double a[3],
                     const double b[3], const double c[3]);

/* Stain concentrations (optical density units) of one RGB pixel. */
static inline void
an__deconv_px(const struct an__deconv *d, const uint8_t *rgb, float out[3])
{
    float r = d->lut[rgb[0]], g = d->lut[rgb[1]], b = d->lut[rgb[2]];
    int k;

    for (k = 0; k < 3; k++)
        out[k] = r * d->inv[0][k] + g * d->inv[1][k] + b * d->inv[2][k];
}

/* Optical density magnitude of one RGB pixel (Euclidean over channels). */
float an__od_norm(const uint8_t *rgb);

/* ---- filters ----------------------------------------------------------- */

/* Mean over the (2r+1)² box around each pixel, edges clamped to the
 * pixels that exist.  in and out may not alias. */
void an__box_mean(const float *in, int w, int h, int r, float *out);

/* Separable Gaussian blur, sigma in pixels, edges clamped.  In place. */
int an__gauss_blur(float *buf, int w, int h, double sigma);

/* Squared Euclidean distance from each pixel to the nearest pixel where
 * mask != 0 (Felzenszwalb–Huttenlocher); 1e20 when the mask is empty. */
int an__edt_sq(const uint8_t *mask, int w, int h, float *d2);

/* mask grown (radius_px > 0) or shrunk (< 0) by a Euclidean disc;
 * shrinking treats everything beyond the image edge as background. */
int an__morph_disc(uint8_t *mask, int w, int h, double radius_px);

/* Connected components of mask != 0 (8-connected); labels 1..n in lab
 * (int32 per pixel, 0 outside).  Returns n, or -ENOMEM. */
int an__components(const uint8_t *mask, int w, int h, int32_t *lab);

/* The same with conn = 4 or 8 neighbours. */
int an__components_conn(const uint8_t *mask, int w, int h, int32_t *lab,
                        int conn);

/* Removes components smaller than min_px pixels, in place. */
int an__remove_small(uint8_t *mask, int w, int h, int64_t min_px);

/* Fills holes (background components not touching the border) smaller
 * than max_px pixels. */
int an__fill_holes(uint8_t *mask, int w, int h, int64_t max_px);

/* ---- resampling -------------------------------------------------------- */

/* Area-average (downscale) or bilinear (upscale) resampling of an RGB or
 * grey U8 image to out_w × out_h. */
struct img *an__resample(const struct img *in, int out_w, int out_h);

/* Nearest-neighbour resampling, for label maps. */
struct img *an__resample_nearest(const struct img *in, int out_w, int out_h);

/* A truth label map t onto a w × h raster whose pixel (i, j) covers t's
 * pixels from (i * scale, j * scale): a copy when t is already w × h and
 * same_size_ok, else t sampled at the raster pixels' centres when its
 * extent is w × h × scale to within one raster pixel (a map at a slide's
 * level 0 for a raster at the analysis resolution).  -ERANGE when neither
 * holds (the sizes do not map onto each other: the caller names both),
 * -ENOMEM. */
int an__labels_fit(const struct img *t, int w, int h, double scale,
                   int same_size_ok, struct img **out);

/* ---- models ------------------------------------------------------------ */

/* A CNN model file (safetensors with its architecture, see cnn.c). */
int an__model_cnn_load(const char *path, struct an_model **out,
                       struct ss_err *err);

/* ---- immunohistochemistry (ihc.c) ---------------------------------------- */

/* Resolution the KI67 nuclei are counted at (or the slide's, if coarser). */
#define AN_KI67_MPP 1.0

/* Counts the nuclei of the scope (tumour or all tissue) and the
 * DAB-positive ones among them; sets ki67_* in r. */
int an__ki67(struct an_slide *s, const struct an_seg *sg,
             enum an_ki67_scope scope, struct an_results *r,
             struct ss_err *err);

/* CK-positive area into r and the CK-guided tumour mask (U8 0/1, the
 * caller's) into *tumor_mask. */
int an__ck(struct an_seg *sg, struct an_results *r, struct img **tumor_mask,
           struct ss_err *err);

#endif
