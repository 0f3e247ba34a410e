/* SPDX-License-Identifier: MIT */
/*
 * Stitching: register overlapping tiles by phase correlation, solve their
 * positions globally, and blend them into a canvas that is streamed into
 * the WSI writer band by band.  The canvas comes from the planned grid,
 * not from whichever tiles were captured; cells never captured are filled
 * with the background colour.
 */
#ifndef SS_IMAGING_STITCH_H
#define SS_IMAGING_STITCH_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"
#include "storage/wsi.h"

struct stitch_tile {
    int index;                      /* caller's id, passed to load() */
    int row, col;                   /* planned grid cell */
    double x_px, y_px;              /* stage position, canvas pixels */
};

struct stitch_input {
    int frame_w, frame_h;
    int rows, cols;                 /* planned grid */
    double step_x_px, step_y_px;    /* planned grid step */
    double max_stage_err_px;        /* larger corrections are rejected */
    int ntiles;
    const struct stitch_tile *tiles;
    /* Loads tile `index` as RGB U8; *out is the caller's to free. */
    int (*load)(void *ctx, int index, struct img **out, struct ss_err *err);
    void *ctx;
    /* Added after the first version; zero means the default. */
    int resample;                   /* STITCH_RESAMPLE_*, 0 = default */
    /* Called after each band of rows written and between registrations;
     * a non-zero return cancels with SS_ECANCELED.  May be NULL. */
    int (*progress)(void *ctx, int done, int total);
    /* Added later: the part of the canvas stitch_write() writes, in
     * canvas pixels (a region scan writes only its region); crop_w_px or
     * crop_h_px 0 writes the whole canvas.  Clipped to the canvas. */
    int crop_x_px, crop_y_px, crop_w_px, crop_h_px;
};

enum {
    STITCH_RESAMPLE_DEFAULT = 0,    /* cubic */
    STITCH_RESAMPLE_NEAREST = 1,    /* positions rounded to whole pixels */
    STITCH_RESAMPLE_BILINEAR = 2,
    STITCH_RESAMPLE_CUBIC = 3,
};

enum {
    STITCH_STAGE_ONLY = 1 << 0,     /* no registration supported this tile */
};

/* What stitch_register() found; x_px, y_px and flags have ntiles entries
 * in the order of stitch_input.tiles. */
struct stitch_placement {
    int ntiles;
    double *x_px, *y_px;            /* solved positions, canvas pixels */
    int *flags;
    int canvas_w, canvas_h;
    int pairs_total, pairs_used, pairs_rejected;
    double residual_rms_px;
    /* Added after the first version: the colour of blank glass in the
     * captured tiles (imaging/glass.h), what cells never captured should
     * be filled with; glass_tiles is how many tiles held enough glass to
     * measure it, 0 when none did (glass is then 0, 0, 0: unknown). */
    uint8_t glass[3];
    int glass_tiles;
};

/*
 * Loads every tile once, registers each pair of grid neighbours over the
 * overlap the stage positions predict, and solves all positions at once
 * (imaging/register.h, imaging/place.h).  A pair is trusted only with a
 * clear correlation peak, views that agree once aligned, and a correction
 * of at most max_stage_err_px; a tile with no trusted pair keeps its stage
 * position and is flagged STITCH_STAGE_ONLY.  While the tiles are loaded
 * the colour of their blank glass is measured too (glass, glass_tiles),
 * the same for the same tiles in any order.  Errors: -EINVAL for an
 * inconsistent input (named), a failing load() (prefixed with the tile),
 * SS_ECANCELED from progress().
 */
int stitch_register(const struct stitch_input *in,
                    struct stitch_placement **out, struct ss_err *err);

/* The rectangle of the canvas stitch_write() writes, {x, y, w, h} in
 * canvas pixels: in's crop clipped to the canvas, or the whole canvas
 * when in has no crop.  w or h is 0 when the crop misses the canvas. */
void stitch_output_rect(const struct stitch_input *in,
                        const struct stitch_placement *pl, int rect[4]);

/* Renders the canvas ((cols − 1) step + frame, from the planned grid)
 * with feathered overlaps, band by band, into a WSI at path; cells with
 * no tile, gaps no tile reaches and rows never rendered get
 * meta->background (pl->glass for a scan's own glass colour).  Each tile
 * is loaded once while memory holds about one row of tiles.  With a crop
 * in `in`, only stitch_output_rect() is written, its pixels the same as
 * at that place of the whole canvas; tiles wholly outside are never
 * loaded.  A crop that misses the canvas is -EINVAL. */
int stitch_write(const struct stitch_input *in,
                 const struct stitch_placement *pl,
                 const struct wsi_meta *meta, const char *path,
                 struct ss_err *err);

void stitch_placement_free(struct stitch_placement *pl);

#endif
