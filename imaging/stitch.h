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
};

enum {
    STITCH_STAGE_ONLY = 1 << 0,     /* no registration supported this tile */
};

struct stitch_placement {
    int ntiles;
    double *x_px, *y_px;            /* solved positions, canvas pixels */
    int *flags;
    int canvas_w, canvas_h;
    int pairs_total, pairs_used, pairs_rejected;
    double residual_rms_px;
};

int stitch_register(const struct stitch_input *in,
                    struct stitch_placement **out, struct ss_err *err);

/* Renders the canvas with blended overlaps into a WSI at path. */
int stitch_write(const struct stitch_input *in,
                 const struct stitch_placement *pl,
                 const struct wsi_meta *meta, const char *path,
                 struct ss_err *err);

void stitch_placement_free(struct stitch_placement *pl);

#endif
