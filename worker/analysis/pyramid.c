/* SPDX-License-Identifier: MIT */
/*
 * Pyramidal TIFFs of analysis rasters (overlay, heat maps) through the
 * slide writer of storage/wsi.h, so they have the same Aperio layout as
 * the slides themselves and open in the same viewers at the right pixel
 * size.  The raster is fed in bands; the writer builds the lower levels.
 */
#include "worker/analysis/output.h"

#include <stdio.h>

#include "common/util.h"
#include "storage/wsi.h"

#define PYR_BAND_ROWS 256

int
an__write_pyramid(const struct img *rgb, double mpp, const char *stain,
                  const char *path, struct ss_err *err)
{
    struct wsi_meta meta;
    struct wsi_writer *w;
    int y, rc;

    wsi_meta_default(&meta);
    meta.mpp = mpp;
    meta.app_mag = 10.0 / mpp;
    meta.quality = 85;
    snprintf(meta.stain, sizeof(meta.stain), "%s", stain);
    snprintf(meta.scanner, sizeof(meta.scanner), "slidescan %s analysis",
             SLIDESCAN_VERSION);
    rc = wsi_writer_open(path, rgb->w, rgb->h, &meta, &w, err);
    for (y = 0; rc == 0 && y < rgb->h; y += PYR_BAND_ROWS) {
        int rows = rgb->h - y < PYR_BAND_ROWS ? rgb->h - y : PYR_BAND_ROWS;
        rc = wsi_writer_rows(w, img_u8(rgb, 0, y), rows, err);
        if (rc < 0)
            wsi_writer_abort(w);
    }
    if (rc == 0)
        rc = wsi_writer_finish(w, err);
    /* The writer's messages name path already. */
    return rc;
}
