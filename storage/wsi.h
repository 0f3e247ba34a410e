/* SPDX-License-Identifier: MIT */
/*
 * The whole-slide image writer: a streaming, tiled-JPEG, pyramidal TIFF in
 * the Aperio layout that OpenSlide 3.4.1 reads with the right µm per pixel
 * (level 0, thumbnail, reduced levels, label, macro).  Level-0 pixels are
 * fed top to bottom in bands; lower levels are built on the fly, so memory
 * is bounded by the width of the slide, not its area.  The file is written
 * under a temporary name, fsynced and renamed by wsi_writer_finish().
 */
#ifndef SS_STORAGE_WSI_H
#define SS_STORAGE_WSI_H

#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

struct wsi_meta {
    double mpp;                     /* µm per pixel at level 0 */
    double app_mag;                 /* objective magnification, e.g. 20 */
    char slide_id[64];
    char stain[16];
    char scanner[64];               /* "slidescan 0.1.0 (sim)" */
    char date_utc[24];
    int quality;                    /* JPEG quality, default 90 */
    int subsamp;                    /* 420 (default) or 444 */
    int tile_size;                  /* default 256 */
    uint8_t background[3];          /* colour of tiles with no tissue */
    const struct img *label;        /* optional, borrowed until finish */
    const struct img *macro;        /* optional, borrowed until finish */
};

void wsi_meta_default(struct wsi_meta *m);

struct wsi_writer;

int wsi_writer_open(const char *path, int width, int height,
                    const struct wsi_meta *meta, struct wsi_writer **out,
                    struct ss_err *err);

/* Appends the next `rows` rows of level 0 (RGB U8, `width` wide, row
 * stride width * 3). */
int wsi_writer_rows(struct wsi_writer *w, const uint8_t *rgb, int rows,
                    struct ss_err *err);

/* Writes the remaining levels and associated images, fsyncs, renames. */
int wsi_writer_finish(struct wsi_writer *w, struct ss_err *err);

/* Discards a partial file; NULL is a no-op. */
void wsi_writer_abort(struct wsi_writer *w);

/* Checks a finished file (levels flagged, every tile present and
 * decodable, JPEG tables consistent, pixel size present and, when
 * expect_mpp > 0, equal to it), then opens it through OpenSlide.  The
 * report names each defect; returns 0 when the file passes. */
int wsi_verify(const char *path, double expect_mpp, char *report,
               size_t report_len, struct ss_err *err);

#endif
