/* SPDX-License-Identifier: MIT */
/*
 * Inside the slide reader (storage/slide*.c): the handle every back end
 * fills in, the back-end contract, and helpers the back ends share.
 * Nothing outside storage/slide*.c and its tests includes this.
 */
#ifndef SS_STORAGE_SLIDE_INTERNAL_H
#define SS_STORAGE_SLIDE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/slide.h"

struct slide__level {
    int64_t w, h;                   /* pixels of this level */
    double ds;                      /* level-0 pixels per level pixel */
};

/* One back end.  read() gets the rectangle twice: (x0, y0) in level-0
 * pixels for OpenSlide, (lx, ly) in level pixels for the others; rgb is
 * already filled with the background.  Called with s->lock held. */
struct slide__ops {
    int (*read)(struct slide *s, int level, int64_t x0, int64_t y0,
                int64_t lx, int64_t ly, int w, int h, uint8_t *rgb,
                struct ss_err *err);
    int (*associated)(struct slide *s, const char *name, struct img **out,
                      struct ss_err *err);
    void (*background)(struct slide *s);    /* s->bg changed; may be NULL */
    void (*close)(struct slide *s);
};

struct slide {
    const struct slide__ops *ops;
    void *priv;                     /* the back end's state */
    char path[4096];
    char format[32];
    int nlevels;
    struct slide__level level[SLIDE_MAX_LEVELS];
    double mpp;
    enum slide_mpp_from mpp_from;
    char mpp_why[160];              /* why the metadata gave none */
    double stated_mpp;              /* the file's own, even when
                                       overridden; 0 when it states none */
    enum slide_mpp_from stated_from;
    int tiff_meta_read;             /* TIFF metadata already consulted */
    char stain[32];                 /* the stain the file declares, "" */
    uint8_t bg[3];
    pthread_mutex_t lock;
};

/* Back ends: each fills ops, priv, format, levels and, when the file
 * states one, mpp/mpp_from (or mpp_why).  On failure the caller closes. */
int slide__os_open(struct slide *s, const char *vendor, struct ss_err *err);
int slide__tiff_open(struct slide *s, struct ss_err *err);
int slide__plain_open(struct slide *s, int is_png, struct ss_err *err);

/* Sets the decoded-block cache of a libtiff slide to `bytes` (default
 * 64 MiB; at least one block is always kept).  No-op for other back ends.
 * For tests of the eviction path. */
void slide__tiff_cache_limit(struct slide *s, size_t bytes);

/* Pixel size from the current directory of a libtiff handle (OME-XML,
 * then resolution tags) into s->mpp and s->mpp_from, else s->mpp_why;
 * and the stain an Aperio description declares into s->stain. */
struct tiff;
void slide__tiff_mpp(struct slide *s, struct tiff *t);

/* The same for a TIFF file's first directory, for slides OpenSlide
 * opened without openslide.mpp-x. */
void slide__tiff_file_mpp(struct slide *s);

/* Whether the TIFF at path is whole: every image directory of its chain
 * can be read, and every tile or strip lies inside the file.  A file cut
 * short (a copy or transfer that stopped) fails with SS_EFORMAT, naming
 * the directory and the file's size; other readers would silently drop
 * the levels or tiles that are missing. */
int slide__tiff_intact(const char *path, struct ss_err *err);

/* Composites premultiplied ARGB (OpenSlide) or RGBA over the background:
 * out = c + (255 - a) · bg / 255. */
static inline uint8_t
slide__over(unsigned c, unsigned a, unsigned bg)
{
    unsigned v = c + ((255 - a) * bg + 127) / 255;

    return (uint8_t)(v > 255 ? 255 : v);
}

/* ---- JPEG streams (slide_jpeg.c) ---------------------------------------- */

/* What a JPEG stream says about its own colour space, up to SOS. */
struct slide__jpeg_colour {
    int ncomp;                      /* frame components, 0 when no SOF */
    int jfif;                       /* APP0 JFIF: YCbCr */
    int adobe_transform;            /* APP14 Adobe: 0 RGB, 1 YCbCr; -1 */
    int rgb_ids;                    /* component ids 'R', 'G', 'B' */
};

/* Scans the markers of buf (which starts with SOI) up to SOS. */
void slide__jpeg_colour(const uint8_t *buf, size_t len,
                        struct slide__jpeg_colour *c);

/* The one stream to decode from a TIFF's JPEGTables (may be NULL) and a
 * tile's or strip's own bytes: the tables' segments go in front of the
 * tile's; when the stream is silent about its colour space (no JFIF, no
 * Adobe marker, no 'R','G','B' ids) and the TIFF says RGB, an Adobe
 * marker with transform 0 goes first, so the decoder does not convert.
 * *out is malloc'd.  Returns 0, -ENOMEM, or SS_EFORMAT with why set. */
int slide__jpeg_assemble(const uint8_t *tables, size_t ntables,
                         const uint8_t *tile, size_t ntile,
                         int photometric_rgb, uint8_t **out, size_t *len,
                         const char **why);

#endif
