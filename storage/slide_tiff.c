/* SPDX-License-Identifier: MIT */
/*
 * The libtiff back end: tiled or stripped TIFFs that OpenSlide does not
 * take, OME-TIFF exports among them.  Level 0 is the first directory;
 * reduced levels are its SubIFDs, else the later directories flagged
 * SubfileType=reduced-image whose size fits a downsample of level 0.
 *
 * Pixels are decoded one block (tile or strip) at a time, when a read
 * needs them, and kept in a small cache (CACHE_BYTES):
 *
 *   - JPEG: the raw bytes (TIFFReadRawTile/Strip) with the JPEGTables in
 *     front, decoded by TurboJPEG, so the stream's own markers decide the
 *     colour space, the Photometric tag only when the stream is silent
 *     (slide_jpeg.c says why);
 *   - 8-bit RGB or grey, any other compression: TIFFReadEncodedTile/Strip;
 *   - everything else libtiff can render (palette, 16-bit, CMYK, YCbCr
 *     without JPEG, alpha, separate planes): TIFFReadRGBATile/Strip.
 *
 * libtiff messages go to a per-handle handler (TIFFOpenExt), so errors
 * carry libtiff's reason without touching the process-wide handlers.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>

#include "common/log.h"

#define CACHE_SLOTS 64
#define CACHE_BYTES ((size_t)64 << 20)
#define BLOCK_MAX_PX ((uint64_t)1 << 26)    /* 64 Mpx, 256 MB as RGBA */

enum dec { DEC_JPEG, DEC_RAW8, DEC_RGBA };

struct tlev {
    int subifd;                     /* 1: reached with TIFFSetSubDirectory */
    uint64_t off;                   /* its IFD offset, for SubIFDs */
    tdir_t dir;                     /* its index in the main chain */
    uint32_t w, h;
    uint32_t bw, bh;                /* block: tile, or full-width strip */
    uint32_t nbx, nby;
    int tiled;
    uint16_t photometric, spp;
    enum dec dec;
    uint8_t *tables;                /* JPEGTables, copied */
    uint32_t ntables;
};

struct block {
    uint8_t *rgb;                   /* bw × rows × 3, NULL: free slot */
    int level;
    uint32_t idx;
    uint32_t rows;
    uint64_t stamp;                 /* last use, for LRU eviction */
};

struct tslide {
    TIFF *t;
    int cur;                        /* level whose directory is current */
    struct tlev lev[SLIDE_MAX_LEVELS];
    int nlev;
    char msg[1024];                 /* libtiff's last error */
    char jpeg_warn[256];            /* libjpeg's last warning inside
                                       libtiff's JPEG codecs */
    struct block cache[CACHE_SLOTS];
    size_t cache_bytes;
    size_t cache_limit;             /* CACHE_BYTES; tests lower it */
    uint64_t clock;
    uint8_t *buf;                   /* raw or encoded block bytes */
    size_t buf_cap;
    tjhandle tj;
};

static int
on_error(TIFF *t, void *ud, const char *mod, const char *fmt, va_list ap)
{
    struct tslide *ts = ud;

    vsnprintf(ts->msg, sizeof(ts->msg), fmt, ap);
    return 1;
}

/* libtiff's JPEG codecs pass libjpeg's warnings on as TIFF warnings
 * (module "JPEGLib", "LibJpeg" for old-style JPEG): "Corrupt JPEG data",
 * "Premature end of JPEG file".  libjpeg then fills the damaged part with
 * grey and carries on, so such a warning means wrong pixels and the
 * block's decode is failed.  Other warnings (odd tags) are harmless. */
static int
on_warning(TIFF *t, void *ud, const char *mod, const char *fmt, va_list ap)
{
    struct tslide *ts = ud;

    if (mod != NULL && strcasestr(mod, "jpeg") != NULL)
        vsnprintf(ts->jpeg_warn, sizeof(ts->jpeg_warn), fmt, ap);
    return 1;
}

static const char *
last_msg(struct tslide *ts)
{
    return ts->msg[0] != '\0' ? ts->msg : "libtiff gave no reason";
}

static int
grow(struct tslide *ts, size_t n)
{
    uint8_t *b;

    if (n <= ts->buf_cap)
        return 0;
    b = realloc(ts->buf, n);
    if (b == NULL)
        return -ENOMEM;
    ts->buf = b;
    ts->buf_cap = n;
    return 0;
}

/* ---- describing a directory ------------------------------------------ */

static enum dec
choose_dec(TIFF *t, const struct tlev *l, uint16_t compression,
           uint16_t bps, uint16_t planar)
{
    uint16_t fmt = SAMPLEFORMAT_UINT;

    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
    if (bps != 8 || planar != PLANARCONFIG_CONTIG || fmt != SAMPLEFORMAT_UINT)
        return DEC_RGBA;
    if (compression == COMPRESSION_JPEG && (l->spp == 3 || l->spp == 1))
        return DEC_JPEG;
    if (compression == COMPRESSION_OJPEG || compression == COMPRESSION_JPEG)
        return DEC_RGBA;
    if ((l->photometric == PHOTOMETRIC_RGB && l->spp == 3) ||
        (l->photometric == PHOTOMETRIC_MINISBLACK && l->spp == 1))
        return DEC_RAW8;
    return DEC_RGBA;
}

static int
block_geometry(TIFF *t, struct tlev *l)
{
    uint32_t rps = 0;

    l->tiled = TIFFIsTiled(t);
    if (l->tiled) {
        TIFFGetField(t, TIFFTAG_TILEWIDTH, &l->bw);
        TIFFGetField(t, TIFFTAG_TILELENGTH, &l->bh);
    } else {
        TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rps);
        l->bw = l->w;
        l->bh = rps == 0 || rps > l->h ? l->h : rps;
    }
    if (l->bw == 0 || l->bh == 0 || (uint64_t)l->bw * l->bh > BLOCK_MAX_PX)
        return -1;
    l->nbx = (uint32_t)(((uint64_t)l->w + l->bw - 1) / l->bw);
    l->nby = (uint32_t)(((uint64_t)l->h + l->bh - 1) / l->bh);
    return 0;
}

/* Fills l from the current directory; the error names what we cannot
 * read (the caller prefixes the file). */
static int
describe(struct tslide *ts, struct tlev *l, struct ss_err *err)
{
    TIFF *t = ts->t;
    uint16_t compression = COMPRESSION_NONE, bps = 1;
    uint16_t planar = PLANARCONFIG_CONTIG;
    char emsg[1024];
    uint8_t *tab = NULL;

    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &l->w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &l->h);
    if (l->w == 0 || l->h == 0 || l->w > INT32_MAX || l->h > INT32_MAX)
        return err_set(err, SS_EFORMAT, "unusable TIFF size %ux%u", l->w,
                       l->h);
    TIFFGetFieldDefaulted(t, TIFFTAG_COMPRESSION, &compression);
    if (!TIFFIsCODECConfigured(compression))
        return err_set(err, SS_EFORMAT, "Unsupported TIFF compression: %u",
                       compression);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &l->spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    if (TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &l->photometric) != 1)
        l->photometric = l->spp >= 3 ? PHOTOMETRIC_RGB
                                     : PHOTOMETRIC_MINISBLACK;
    if (block_geometry(t, l) < 0)
        return err_set(err, SS_EFORMAT, "%s of %ux%u pixels are too large "
                       "to decode", TIFFIsTiled(t) ? "tiles" : "strips",
                       l->bw, l->bh);
    l->dec = choose_dec(t, l, compression, bps, planar);
    if (l->dec == DEC_RGBA && !TIFFRGBAImageOK(t, emsg))
        return err_set(err, SS_EFORMAT, "libtiff cannot decode its pixels: "
                       "%s", emsg);
    if (l->dec == DEC_JPEG &&
        TIFFGetField(t, TIFFTAG_JPEGTABLES, &l->ntables, &tab) == 1 &&
        l->ntables > 0 && tab != NULL) {
        l->tables = malloc(l->ntables);
        if (l->tables == NULL)
            return err_set(err, -ENOMEM, "out of memory");
        memcpy(l->tables, tab, l->ntables);
    } else {
        l->ntables = 0;
    }
    return 0;
}

/* ---- the pyramid -------------------------------------------------------- */

/* A reduced directory fits when it is smaller than the level above and
 * its width and height shrink by about the same factor. */
static int
fits_pyramid(const struct slide *s, const struct tlev *l, int n)
{
    double dx = (double)s->level[0].w / l->w, dy = (double)s->level[0].h /
                                                  l->h;

    if (l->w >= s->level[n - 1].w || l->h >= s->level[n - 1].h)
        return 0;
    return fabs(dx - dy) <= 0.05 * fmax(dx, dy) + 1.0 / fmin(l->w, l->h) *
           fmax(dx, dy);
}

static void
add_level(struct slide *s, struct tslide *ts, struct tlev *l)
{
    int n = ts->nlev;
    struct ss_err e;

    err_clear(&e);
    if (n >= SLIDE_MAX_LEVELS || describe(ts, l, &e) < 0 ||
        !fits_pyramid(s, l, n)) {
        if (e.msg[0] != '\0')
            log_info("slide", "level skipped path=%s reason=\"%s\"",
                     s->path, e.msg);
        free(l->tables);
        return;
    }
    ts->lev[n] = *l;
    s->level[n].w = l->w;
    s->level[n].h = l->h;
    s->level[n].ds = ((double)s->level[0].w / l->w +
                      (double)s->level[0].h / l->h) / 2;
    ts->nlev = s->nlevels = n + 1;
}

static void
find_subifd_levels(struct slide *s, struct tslide *ts)
{
    uint16_t n = 0, i;
    uint64_t *p = NULL, offs[SLIDE_MAX_LEVELS];

    if (TIFFGetField(ts->t, TIFFTAG_SUBIFD, &n, &p) != 1 || n == 0)
        return;
    if (n > SLIDE_MAX_LEVELS - 1)
        n = SLIDE_MAX_LEVELS - 1;
    memcpy(offs, p, n * sizeof(offs[0]));
    for (i = 0; i < n; i++) {
        struct tlev l = { .subifd = 1, .off = offs[i] };

        if (TIFFSetSubDirectory(ts->t, offs[i]))
            add_level(s, ts, &l);
    }
}

/* The main chain after level 0, read in order (stops at 4096 images). */
static void
find_reduced_levels(struct slide *s, struct tslide *ts)
{
    tdir_t d;

    if (!TIFFSetDirectory(ts->t, 0))
        return;
    for (d = 1; d < 4096 && TIFFReadDirectory(ts->t); d++) {
        uint32_t type = 0;
        struct tlev l = { .dir = TIFFCurrentDirectory(ts->t) };

        TIFFGetField(ts->t, TIFFTAG_SUBFILETYPE, &type);
        if (type & FILETYPE_REDUCEDIMAGE)
            add_level(s, ts, &l);
    }
}

/* ---- blocks ------------------------------------------------------------- */

static int
select_level(struct slide *s, struct tslide *ts, int level,
             struct ss_err *err)
{
    const struct tlev *l = &ts->lev[level];
    int ok;

    if (ts->cur == level)
        return 0;
    ts->msg[0] = '\0';
    ok = l->subifd ? TIFFSetSubDirectory(ts->t, l->off)
                   : TIFFSetDirectory(ts->t, l->dir);
    if (!ok) {
        ts->cur = -1;
        return err_set(err, SS_EFORMAT, "%s: level %d: cannot read its TIFF "
                       "directory: %s", s->path, level, last_msg(ts));
    }
    ts->cur = level;
    return 0;
}

/* JPEG tile or strip idx into b (bw wide, b->rows high). */
static int
decode_jpeg(struct slide *s, struct tslide *ts, const struct tlev *l,
            uint32_t idx, struct block *b, const char **why)
{
    uint64_t n = TIFFGetStrileByteCount(ts->t, idx);
    tmsize_t got;
    uint8_t *jpg = NULL, *tmp = NULL;
    size_t len = 0;
    int jw, jh, ss, cs, rc, y;

    if (n == 0) {
        *why = "no bytes stored (byte count 0)";
        return SS_EFORMAT;
    }
    if (n > ((uint64_t)1 << 30) || grow(ts, (size_t)n) < 0)
        return -ENOMEM;
    ts->msg[0] = '\0';
    got = l->tiled ? TIFFReadRawTile(ts->t, idx, ts->buf, (tmsize_t)n)
                   : TIFFReadRawStrip(ts->t, idx, ts->buf, (tmsize_t)n);
    if (got <= 0) {
        *why = last_msg(ts);
        return SS_EFORMAT;
    }
    rc = slide__jpeg_assemble(l->tables, l->ntables, ts->buf, (size_t)got,
                              l->photometric == PHOTOMETRIC_RGB, &jpg, &len,
                              why);
    if (rc < 0)
        return rc;
    if (tjDecompressHeader3(ts->tj, jpg, len, &jw, &jh, &ss, &cs) != 0) {
        *why = tjGetErrorStr2(ts->tj);
        free(jpg);
        return SS_EFORMAT;
    }
    if ((uint64_t)jw * jh > 4 * (uint64_t)l->bw * l->bh) {
        *why = "the JPEG stream is far larger than its tile or strip";
        free(jpg);
        return SS_EFORMAT;
    }
    /* Tiles and strips decode straight into the block; a stream of
     * another size goes through a buffer and is cut or padded. */
    if (jw != (int)l->bw || jh != (int)b->rows) {
        tmp = malloc((size_t)jw * jh * 3);
        if (tmp == NULL) {
            free(jpg);
            return -ENOMEM;
        }
    }
    rc = tjDecompress2(ts->tj, jpg, len, tmp != NULL ? tmp : b->rgb, jw, 0,
                       jh, TJPF_RGB, TJFLAG_ACCURATEDCT);
    free(jpg);
    /* Warnings too ("Corrupt JPEG data: premature end of data segment"):
     * libjpeg has then guessed part of the tile. */
    if (rc != 0) {
        *why = tjGetErrorStr2(ts->tj);
        free(tmp);
        return SS_EFORMAT;
    }
    for (y = 0; tmp != NULL && y < jh && y < (int)b->rows; y++)
        memcpy(b->rgb + (size_t)y * l->bw * 3, tmp + (size_t)y * jw * 3,
               (size_t)(jw < (int)l->bw ? jw : (int)l->bw) * 3);
    free(tmp);
    return 0;
}

/* 8-bit RGB or grey through libtiff's decoder. */
static int
decode_raw8(struct tslide *ts, const struct tlev *l, uint32_t idx,
            struct block *b, const char **why)
{
    size_t row = (size_t)l->bw * l->spp, need = row * l->bh, i, n;
    tmsize_t got;

    if (grow(ts, need) < 0)
        return -ENOMEM;
    ts->msg[0] = '\0';
    ts->jpeg_warn[0] = '\0';
    got = l->tiled ? TIFFReadEncodedTile(ts->t, idx, ts->buf, (tmsize_t)need)
                   : TIFFReadEncodedStrip(ts->t, idx, ts->buf,
                                          (tmsize_t)need);
    if (got < 0 || ts->jpeg_warn[0] != '\0') {
        *why = got < 0 ? last_msg(ts) : ts->jpeg_warn;
        return SS_EFORMAT;
    }
    n = (size_t)got / row;
    if (n > b->rows)
        n = b->rows;
    if (l->spp == 3) {
        memcpy(b->rgb, ts->buf, n * row);
        return 0;
    }
    for (i = 0; i < n * l->bw; i++)
        memset(b->rgb + 3 * i, ts->buf[i], 3);
    return 0;
}

/* Anything TIFFRGBAImage renders.  The part of the block inside the
 * image is asked for with a top-left origin, so the raster's layout does
 * not depend on how libtiff treats tiles that overhang the image. */
static int
decode_rgba(struct slide *s, struct tslide *ts, const struct tlev *l,
            uint32_t bx, uint32_t by, struct block *b, const char **why)
{
    uint32_t col = bx * l->bw, row = by * l->bh;
    uint32_t rw = l->w - col < l->bw ? l->w - col : l->bw;
    uint32_t rh = l->h - row < b->rows ? l->h - row : b->rows;
    uint32_t *r = malloc((size_t)rw * rh * 4), x, y;
    TIFFRGBAImage img;
    int ok;

    if (r == NULL)
        return -ENOMEM;
    ts->msg[0] = '\0';
    ts->jpeg_warn[0] = '\0';
    ok = TIFFRGBAImageBegin(&img, ts->t, 0, ts->msg);
    if (ok) {
        img.req_orientation = ORIENTATION_TOPLEFT;
        img.row_offset = (int)row;
        img.col_offset = (int)col;
        ok = TIFFRGBAImageGet(&img, r, rw, rh);
        TIFFRGBAImageEnd(&img);
    }
    if (!ok || ts->jpeg_warn[0] != '\0') {
        free(r);
        *why = ok ? ts->jpeg_warn : last_msg(ts);
        return SS_EFORMAT;
    }
    for (y = 0; y < rh; y++)
        for (x = 0; x < rw; x++) {
            uint32_t p = r[(size_t)y * rw + x];
            uint8_t *o = b->rgb + ((size_t)y * l->bw + x) * 3;
            unsigned a = TIFFGetA(p);

            o[0] = slide__over(TIFFGetR(p), a, s->bg[0]);
            o[1] = slide__over(TIFFGetG(p), a, s->bg[1]);
            o[2] = slide__over(TIFFGetB(p), a, s->bg[2]);
        }
    free(r);
    return 0;
}

static struct block *
cache_find(struct tslide *ts, int level, uint32_t idx)
{
    int i;

    for (i = 0; i < CACHE_SLOTS; i++)
        if (ts->cache[i].rgb != NULL && ts->cache[i].level == level &&
            ts->cache[i].idx == idx) {
            ts->cache[i].stamp = ++ts->clock;
            return &ts->cache[i];
        }
    return NULL;
}

static size_t
block_bytes(const struct tslide *ts, const struct block *b)
{
    return (size_t)ts->lev[b->level].bw * b->rows * 3;
}

/* A free slot, evicting the least recently used blocks until `bytes`
 * more fit in the cache. */
static struct block *
cache_slot(struct tslide *ts, size_t bytes)
{
    for (;;) {
        struct block *old = NULL, *free_slot = NULL;
        int i;

        for (i = 0; i < CACHE_SLOTS; i++) {
            struct block *b = &ts->cache[i];

            if (b->rgb == NULL)
                free_slot = free_slot != NULL ? free_slot : b;
            else if (old == NULL || b->stamp < old->stamp)
                old = b;
        }
        if (free_slot != NULL &&
            (ts->cache_bytes + bytes <= ts->cache_limit || old == NULL))
            return free_slot;
        ts->cache_bytes -= block_bytes(ts, old);
        free(old->rgb);
        old->rgb = NULL;
    }
}

static int
get_block(struct slide *s, struct tslide *ts, int level, uint32_t bx,
          uint32_t by, struct block **out, struct ss_err *err)
{
    const struct tlev *l = &ts->lev[level];
    uint32_t idx = l->tiled ? by * l->nbx + bx : by;
    uint32_t rows = l->tiled ? l->bh : (by + 1) * l->bh > l->h
                                       ? l->h - by * l->bh : l->bh;
    const char *why = "out of memory";
    struct block *b = cache_find(ts, level, idx);
    int rc;

    if (b != NULL) {
        *out = b;
        return 0;
    }
    b = cache_slot(ts, (size_t)l->bw * rows * 3);
    b->rgb = malloc((size_t)l->bw * rows * 3);
    if (b->rgb == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    memset(b->rgb, 255, (size_t)l->bw * rows * 3);
    b->level = level;
    b->idx = idx;
    b->rows = rows;
    rc = l->dec == DEC_JPEG ? decode_jpeg(s, ts, l, idx, b, &why)
       : l->dec == DEC_RAW8 ? decode_raw8(ts, l, idx, b, &why)
       : decode_rgba(s, ts, l, bx, by, b, &why);
    if (rc < 0) {
        free(b->rgb);
        b->rgb = NULL;
        return err_set(err, rc, "%s: %s %u of level %d: %s%s", s->path,
                       l->tiled ? "tile" : "strip", idx, level,
                       l->dec == DEC_JPEG && rc == SS_EFORMAT
                       ? "corrupt JPEG: " : "",
                       rc == -ENOMEM ? "out of memory" : why);
    }
    b->stamp = ++ts->clock;
    ts->cache_bytes += block_bytes(ts, b);
    *out = b;
    return 0;
}

static int
tiff_read(struct slide *s, int level, int64_t x0, int64_t y0, int64_t lx,
          int64_t ly, int w, int h, uint8_t *rgb, struct ss_err *err)
{
    struct tslide *ts = s->priv;
    const struct tlev *l = &ts->lev[level];
    int64_t ax = lx > 0 ? lx : 0, ay = ly > 0 ? ly : 0;
    int64_t ex = lx + w < l->w ? lx + w : l->w;
    int64_t ey = ly + h < l->h ? ly + h : l->h;
    int64_t bx, by, y;
    int rc;

    if (ax >= ex || ay >= ey)
        return 0;
    rc = select_level(s, ts, level, err);
    for (by = ay / l->bh; rc == 0 && by <= (ey - 1) / l->bh; by++)
        for (bx = ax / l->bw; rc == 0 && bx <= (ex - 1) / l->bw; bx++) {
            struct block *b = NULL;
            int64_t ix0 = bx * l->bw > ax ? bx * l->bw : ax;
            int64_t ix1 = (bx + 1) * l->bw < ex ? (bx + 1) * l->bw : ex;
            int64_t iy0 = by * l->bh > ay ? by * l->bh : ay;
            int64_t iy1 = by * l->bh + l->bh < ey ? by * l->bh + l->bh : ey;

            rc = get_block(s, ts, level, (uint32_t)bx, (uint32_t)by, &b,
                           err);
            for (y = iy0; rc == 0 && y < iy1; y++)
                memcpy(rgb + ((size_t)(y - ly) * w + (size_t)(ix0 - lx)) *
                       3, b->rgb + ((size_t)(y - by * l->bh) * l->bw +
                                    (size_t)(ix0 - bx * l->bw)) * 3,
                       (size_t)(ix1 - ix0) * 3);
        }
    return rc;
}

static void
tiff_close(struct slide *s)
{
    struct tslide *ts = s->priv;
    int i;

    if (ts == NULL)
        return;
    if (ts->t != NULL)
        TIFFClose(ts->t);
    for (i = 0; i < SLIDE_MAX_LEVELS; i++)
        free(ts->lev[i].tables);
    for (i = 0; i < CACHE_SLOTS; i++)
        free(ts->cache[i].rgb);
    if (ts->tj != NULL)
        tjDestroy(ts->tj);
    free(ts->buf);
    free(ts);
    s->priv = NULL;
}

/* Blocks with alpha were composited over the old background. */
static void
tiff_background(struct slide *s)
{
    struct tslide *ts = s->priv;
    int i;

    for (i = 0; i < CACHE_SLOTS; i++) {
        free(ts->cache[i].rgb);
        ts->cache[i].rgb = NULL;
    }
    ts->cache_bytes = 0;
}

static const struct slide__ops tiff_ops = {
    .read = tiff_read,
    .background = tiff_background,
    .close = tiff_close,
};

void
slide__tiff_cache_limit(struct slide *s, size_t bytes)
{
    struct tslide *ts = s->priv;

    if (s->ops == &tiff_ops)
        ts->cache_limit = bytes;
}

static int
open_handle(struct slide *s, struct tslide *ts, struct ss_err *err)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();

    if (o == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_error, ts);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_warning, ts);
    ts->t = TIFFOpenExt(s->path, "r", o);
    TIFFOpenOptionsFree(o);
    if (ts->t == NULL)
        return err_set(err, SS_EFORMAT, "%s: not a readable TIFF: %s",
                       s->path, last_msg(ts));
    ts->tj = tjInitDecompress();
    if (ts->tj == NULL)
        return err_set(err, -ENOMEM, "%s: TurboJPEG: %s", s->path,
                       tjGetErrorStr2(NULL));
    return 0;
}

int
slide__tiff_open(struct slide *s, struct ss_err *err)
{
    struct tslide *ts = calloc(1, sizeof(*ts));
    const char *desc = NULL;
    int rc;

    if (ts == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    s->ops = &tiff_ops;
    s->priv = ts;
    ts->cur = -1;
    ts->cache_limit = CACHE_BYTES;
    rc = open_handle(s, ts, err);
    if (rc < 0)
        return rc;
    rc = describe(ts, &ts->lev[0], err);
    if (rc < 0) {
        err_prefix(err, "%s", s->path);
        return rc;
    }
    ts->nlev = s->nlevels = 1;
    s->level[0].w = ts->lev[0].w;
    s->level[0].h = ts->lev[0].h;
    s->level[0].ds = 1;
    if (TIFFGetField(ts->t, TIFFTAG_IMAGEDESCRIPTION, &desc) == 1 &&
        desc != NULL && strstr(desc, "<OME") != NULL)
        snprintf(s->format, sizeof(s->format), "ome-tiff");
    else
        snprintf(s->format, sizeof(s->format), "tiff");
    slide__tiff_mpp(s, ts->t);
    find_subifd_levels(s, ts);
    if (ts->nlev == 1)
        find_reduced_levels(s, ts);
    return 0;
}
