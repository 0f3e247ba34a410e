/* SPDX-License-Identifier: MIT */
/*
 * The whole-slide image writer: a streaming, tiled-JPEG, pyramidal TIFF in
 * the Aperio layout that OpenSlide 3.4.1 reads with the right µm per pixel
 * (level 0, thumbnail, reduced levels, label, macro).  Level-0 pixels are
 * fed top to bottom in bands; lower levels are built on the fly, so memory
 * is bounded by the width of the slide, not its area.  The file is written
 * under a temporary name, fsynced and renamed by wsi_writer_finish().
 *
 * Tiles are encoded by TurboJPEG on a pool of threads, each tile a
 * complete JPEG stream (its own tables, no shared JPEGTables tag), YCbCr
 * with the chroma subsampling of wsi_meta.subsamp.  storage/README-wsi.md
 * describes the layout and the checks of wsi_verify().
 */
#ifndef SS_STORAGE_WSI_H
#define SS_STORAGE_WSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

struct wsi_meta {
    double mpp;                     /* µm per pixel at level 0 */
    double app_mag;                 /* objective magnification, e.g. 20 */
    char slide_id[64];
    char stain[16];
    char scanner[64];               /* "slidescan 0.1.0 (sim)" */
    char date_utc[24];              /* "2026-12-04T15:51:02Z"; empty: now */
    int quality;                    /* JPEG quality, default 90 */
    int subsamp;                    /* 444 (default) or 420 */
    int tile_size;                  /* default 256, a multiple of 16 */
    uint8_t background[3];          /* colour of tiles with no tissue */
    const struct img *label;        /* optional, borrowed until finish */
    const struct img *macro;        /* optional, borrowed until finish */
    /* Added after the first version; wsi_meta_default() sets them. */
    int min_level_px;               /* levels halve while the larger side
                                       exceeds this; default 512 */
    int bigtiff;                    /* 0: BigTIFF when the file may pass
                                       4 GiB (wsi_needs_bigtiff), 1: always */
    int threads;                    /* encoder threads; 0: online CPUs
                                       (plus one thread that hands bands
                                       to them) */
};

/* Defaults: mpp 0.5, AppMag 20, quality 90, 256 px tiles, white
 * background (255, 255, 255), levels down to 512 px, automatic BigTIFF,
 * and full-resolution chroma (4:4:4): on H&E (CMU-1-Small-Region) 4:2:0
 * caps the PSNR of a q90 round trip at 33.1 dB whatever the quality,
 * 4:4:4 gives 43.4 dB for 1.5 times the bytes.  Stain colour at nucleus
 * scale is what analysis measures, so it is not thrown away by default. */
void wsi_meta_default(struct wsi_meta *m);

struct wsi_writer;

/* Creates "<path>.XXXXXX.partial" in path's directory and prepares a
 * width × height slide.  Errors: -EINVAL for bad sizes or metadata,
 * -errno when the file cannot be created. */
int wsi_writer_open(const char *path, int width, int height,
                    const struct wsi_meta *meta, struct wsi_writer **out,
                    struct ss_err *err);

/* Appends the next `rows` rows of level 0 (RGB U8, `width` wide, row
 * stride width * 3); rgb == NULL appends background rows.  More rows than
 * the slide has is -EINVAL.  Encoding and writing run on the writer's own
 * threads behind the caller, so a failure while writing one band (disk
 * full, libtiff size limit) is returned by a later call or by finish().
 * After an error the writer only accepts wsi_writer_abort(). */
int wsi_writer_rows(struct wsi_writer *w, const uint8_t *rgb, int rows,
                    struct ss_err *err);

/* The same without a copy: *rows points at the next level-0 row inside
 * the writer's band (row stride *stride bytes, at least width * 3), where
 * up to *max_rows rows may be written, then wsi_writer_rows_commit()
 * appends the first `rows` of them (1..*max_rows).  The pointer is valid
 * until that call.  Errors as wsi_writer_rows(); -EINVAL when the slide
 * is complete. */
int wsi_writer_rows_buffer(struct wsi_writer *w, uint8_t **rows,
                           size_t *stride, int *max_rows,
                           struct ss_err *err);
int wsi_writer_rows_commit(struct wsi_writer *w, int rows,
                           struct ss_err *err);

/* Writes the remaining levels and associated images, fsyncs, renames.
 * Rows never fed are filled with the background colour (a slide cut
 * short still has every tile).  Frees w in every case; on failure the
 * partial file is removed and nothing exists at path. */
int wsi_writer_finish(struct wsi_writer *w, struct ss_err *err);

/* Discards a partial file; NULL is a no-op. */
void wsi_writer_abort(struct wsi_writer *w);

/* An upper bound of the file size: TurboJPEG's worst-case size of every
 * tile of every level, the associated images and the directories. */
uint64_t wsi_estimate_max_bytes(int width, int height,
                                const struct wsi_meta *meta);

/* True when the file may pass the 4 GiB limit of classic TIFF, so it must
 * be BigTIFF (or meta->bigtiff asks for BigTIFF anyway). */
bool wsi_needs_bigtiff(int width, int height, const struct wsi_meta *meta);

/* Number of pyramid levels for a width × height slide (level 0 included). */
int wsi_level_count(int width, int height, const struct wsi_meta *meta);

/* Checks a finished file (levels flagged, every tile present and
 * decodable, JPEG tables consistent, pixel size present and, when
 * expect_mpp > 0, equal to it), then opens it through OpenSlide.  The
 * report names each defect; returns 0 when the file passes, SS_EFORMAT
 * when it has defects (err names the first), -errno when it cannot be
 * read at all (-EISDIR for a directory: "PATH: is a directory, not a
 * slide file"; SS_EFORMAT for another file that is not a regular one). */
int wsi_verify(const char *path, double expect_mpp, char *report,
               size_t report_len, struct ss_err *err);

#endif
