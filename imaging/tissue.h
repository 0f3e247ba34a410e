/* SPDX-License-Identifier: MIT */
/*
 * Tissue detection on a low-resolution overview of the slide.
 *
 * Each pixel's optical density relative to blank glass is summed over the
 * channels, OD = sum_c log10(bg_c / I_c), where bg_c is the glass colour
 * (the median of the brightest 10 % of the overview).  Stained tissue
 * absorbs, glass does not.  The threshold lies just above the glass: the
 * mode of the OD histogram near zero plus 8 times its spread (half width
 * at half maximum, as a sigma), and never below od_floor.  Otsu's
 * threshold is not used: an immunostain (KI67, CK) has three classes,
 * glass, pale counterstained stroma (OD about 0.09 on the simulator) and
 * stained tumour (0.6 to 1), and Otsu splits the tissue, not the glass
 * from it, losing the stroma at the tissue's edges.  A closing (radius
 * close_um) joins the gaps of pale tissue, an opening (radius open_um)
 * removes single specks; then a connected piece is kept as tissue when
 * a quarter of its pixels are stained (their optical density falls
 * unequally on the channels, (max - min) / sum at least
 * stain_chroma_min) or its stained pixels cover stained_area_um2:
 * dust, fibres, smudges and pen marks are grey and are dropped whatever
 * their size, while stained fragments of the section are kept down to
 * min_area_um2.  Holes smaller than hole_area_um2 are filled.
 *
 * LIMIT: optical density only: unstained or very pale tissue under the
 * floor is missed (the scan then needs an explicit region).
 */
#ifndef SS_IMAGING_TISSUE_H
#define SS_IMAGING_TISSUE_H

#include "common/err.h"
#include "common/img.h"

struct tissue_params {
    double um_per_px;               /* overview scale */
    double od_floor;                /* default 0.06 */
    double close_um;                /* default 40 */
    double open_um;                 /* default 10 */
    double min_area_um2;            /* smallest piece kept, default 400 */
    double hole_area_um2;           /* default 100000 (0.1 mm^2) */
    double stain_chroma_min;        /* a stained pixel, default 0.06 */
    double stained_area_um2;        /* default 100000 (0.1 mm^2) */
};

void tissue_params_default(struct tissue_params *p, double um_per_px);

struct tissue_stats {
    double bg[3];                   /* glass colour */
    double otsu, threshold;         /* OD; otsu for the record only */
    double glass_od, glass_sigma;   /* glass OD mode and its spread */
    long tissue_px;
    int pieces;                     /* kept connected pieces */
    int dust_removed;               /* pieces dropped: grey or tiny */
};

/* Detects tissue in a U8 RGB overview; *mask is a new 1-channel U8 image
 * of the same size, 255 on tissue, 0 elsewhere. */
int tissue_detect(const struct img *ov, const struct tissue_params *p,
                  struct img **mask, struct tissue_stats *st,
                  struct ss_err *err);

/* Otsu's threshold of a histogram of nbins bins; returns the bin index
 * that the threshold lies above (classes: ≤ t and > t). */
int tissue_otsu(const long *hist, int nbins);

/* Binary morphology on a 0/255 mask, square structuring element of side
 * 2r + 1 (r ≤ 0: no-op). */
void tissue_dilate(struct img *mask, int r);
void tissue_erode(struct img *mask, int r);

#endif
