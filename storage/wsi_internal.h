/* SPDX-License-Identifier: MIT */
/*
 * Shared by the WSI writer and validator only (storage/wsi_*.c): the
 * Aperio description text, JPEG stream inspection, the pool of encoder
 * threads and a test hook.  Nothing outside storage/wsi_*.c and the wsi
 * unit tests includes this.
 */
#ifndef SS_STORAGE_WSI_INTERNAL_H
#define SS_STORAGE_WSI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "storage/wsi.h"

#define WSI__MAX_LEVELS 24

/* The first line of every description: OpenSlide 3.4.1 recognises an
 * Aperio slide by a description that starts with "Aperio". */
#define WSI__DESC_HEAD "Aperio Image Library slidescan"

/* Level-0 ImageDescription in the Aperio form:
 * "<head>\n<w>x<h> [0,0 <w>x<h>] (<ts>x<ts>) JPEG/YCC Q=<q>|AppMag = ..|
 * MPP = ..|...".  Values are cleaned of '|' and line breaks. */
void wsi__describe_base(char *buf, size_t len, const struct wsi_meta *m,
                        int w, int h);

/* Description of a reduced level or the thumbnail:
 * "<head>\n<W>x<H> -> <w>x<h> - |AppMag = ..|MPP = ..". */
void wsi__describe_reduced(char *buf, size_t len, const struct wsi_meta *m,
                           int w0, int h0, int w, int h);

/* "<head>\n<name> <w>x<h>" with "\n" only: OpenSlide 3.4.1 names
 * stripped images by the first word of the second line and loses them
 * when the line break is "\r\n". */
void wsi__describe_assoc(char *buf, size_t len, const char *name, int w,
                         int h);

/* TIFF DateTime "YYYY:MM:DD HH:MM:SS" from meta->date_utc (or now). */
void wsi__tiff_datetime(char *buf, size_t len, const struct wsi_meta *m);

/* What the marker segments of a JPEG stream (or a tables-only stream)
 * say, up to the first SOS. */
struct wsi__jpeg_info {
    int has_soi, has_sof, has_sos, has_eoi;
    int ndqt, ndht;                 /* segments seen */
    unsigned dqt_mask;              /* which of tables 0..3 were defined */
    uint16_t dqt[4][64];            /* natural (row-major) order */
    int width, height, ncomp;
    int hsamp[4], vsamp[4];
    int jfif;                       /* APP0 "JFIF": components are YCbCr */
    int adobe_transform;            /* APP14 "Adobe" transform, -1 none */
};

/* Parses markers; returns 0, or SS_EFORMAT with *why set to a static
 * description of the first malformation. */
int wsi__jpeg_scan(const uint8_t *buf, size_t len,
                   struct wsi__jpeg_info *info, const char **why);

/* The baseline tables an IJG-derived encoder (libjpeg, TurboJPEG,
 * libtiff, vips) uses at a quality 1..100, natural order. */
void wsi__jpeg_ijg_tables(int quality, uint16_t luma[64],
                          uint16_t chroma[64]);

/* The quality whose IJG tables equal tables 0 and 1 of info, or -1. */
int wsi__jpeg_guess_quality(const struct wsi__jpeg_info *info);

/* A fixed set of threads that run one indexed job at a time with the
 * caller taking part.  fn runs for every i in [0, n); slot names the
 * thread (0 = the caller, 1..nthreads-1 the pool) so callers can keep
 * per-thread scratch. */
/* One output row of the writer's 2×2 box shrink (storage/wsi_writer.c):
 * `half` RGB pixels into o, each (sum of its 2×2 block + 2) >> 2, from
 * the 2 × half pixels of rows a and b.  half is a multiple of 8; a and b
 * may be read up to 3 bytes past their 6 × half. */
void wsi__shrink_row(const uint8_t *a, const uint8_t *b, uint8_t *o,
                     int half);

struct wsi__pool;

int wsi__pool_new(int nthreads, struct wsi__pool **out, struct ss_err *err);
int wsi__pool_size(const struct wsi__pool *p);
void wsi__pool_run(struct wsi__pool *p, int n,
                   void (*fn)(void *ctx, int i, int slot), void *ctx);
/* The same in two steps: start sets the pool threads going, join has
 * the caller take part and returns when every index is done.  Between
 * the two the caller may do other work; one job at a time. */
void wsi__pool_start(struct wsi__pool *p, int n,
                     void (*fn)(void *ctx, int i, int slot), void *ctx);
void wsi__pool_join(struct wsi__pool *p);
void wsi__pool_free(struct wsi__pool *p);

/* Test hook: extends the partial file to offset bytes (a sparse hole)
 * right after it is opened, so a test can drive libtiff into its 4 GiB
 * limit without writing 4 GiB.  0 (the default) disables it. */
extern uint64_t wsi__test_hole_bytes;

#endif
