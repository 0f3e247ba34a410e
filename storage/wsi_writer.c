/* SPDX-License-Identifier: MIT */
/*
 * The streaming pyramid writer (storage/wsi.h).
 *
 * Level-0 rows are gathered into a band one tile high.  A full band is
 * handed to the band thread and the caller goes on filling a second one,
 * so that producing pixels (stitching, reading) overlaps encoding.  The
 * band thread cuts the band into tiles that the thread pool encodes with
 * TurboJPEG, each tile a complete JPEG stream; the same jobs shrink the
 * band 2×2 into the band of the next level, which is processed the same
 * way when it is full.  Memory is therefore two level-0 bands and one band
 * of each smaller level: about 3 × tile_size × width × 3 bytes.
 *
 * TIFF writes one directory at a time and level 0 comes first in the
 * Aperio layout, so level-0 tiles go straight into the file while the
 * tiles of the smaller levels (a third of the data at most) are spooled to
 * an unlinked temporary file beside it and copied in by finish(), behind
 * the thumbnail: dir 0 level 0, dir 1 thumbnail (stripped), dirs 2.. the
 * reduced levels, then label and macro (stripped).
 */
#include "storage/wsi.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <turbojpeg.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#include <tmmintrin.h>
#endif

#include "common/log.h"
#include "common/util.h"
#include "storage/wsi_internal.h"

uint64_t wsi__test_hole_bytes;

struct wsi_writer;
static int start_band_thread(struct wsi_writer *w, struct ss_err *err);

#define THUMB_MAX_PX 1024
#define MAX_TILE_PX 2048            /* largest tile_size accepted */
#define SHRINK_SLACK 64             /* bytes past each band for SIMD */

struct level {
    int w, h;                       /* pixels */
    int ntx, nty;                   /* tiles across and down */
    size_t stride;                  /* band row bytes: ntx * ts * 3 */
    uint8_t *band;                  /* ts rows of the current tile row */
    int band_rows;                  /* rows filled so far */
    int band_row;                   /* tile row held by the band */
    int rows_done;                  /* rows of earlier bands */
    uint64_t *spool_off;            /* levels > 0: each tile in the spool */
    uint32_t *spool_len;
};

struct enc_tile {
    uint8_t *buf;
    uint32_t len;
    int shared;                     /* buf is the writer's background tile */
};

struct wsi_writer {
    char *path, *tmp;
    TIFF *tif;                      /* owns the partial file's descriptor */
    TIFFOpenOptions *opts;
    struct wsi_meta meta;
    int w, h, ts, tjsamp, nlevels, thumb_level, bigtiff;
    struct level lv[WSI__MAX_LEVELS];
    int rows_in;                    /* level-0 rows received */
    uint8_t *fill[2];               /* level-0 bands: one filled by the
                                       caller, one with the band thread */
    int fill_idx, fill_rows;
    pthread_t band_tid;
    int band_thread;                /* started */
    pthread_mutex_t mu;             /* guards the fields below */
    pthread_cond_t cv;
    int job_pending, job_busy, quit;
    uint8_t *job_buf;
    int job_rows;
    int async_failed;               /* the band thread failed: async_err */
    struct ss_err async_err;
    struct wsi__pool *pool;
    tjhandle *tj;                   /* one per pool slot */
    uint8_t **scratch;              /* one per pool slot, scratch_len */
    unsigned long scratch_len;
    struct enc_tile *enc;           /* the band being encoded */
    struct enc_tile *enc0;          /* level-0 tiles not yet written */
    int enc0_row, enc0_pending;     /* their tile row; enc0 holds them */
    int job_level;
    pthread_mutex_t job_mu;
    char job_err[256];              /* first encoder failure of a band */
    uint8_t *thumb;                 /* thumb_level's pixels, kept whole */
    uint8_t *bg_jpeg;               /* a tile of background colour */
    uint32_t bg_len;
    int spool_fd;
    uint64_t spool_end;
    int failed;                     /* sticky, caller's thread only: only
                                       abort() is left */
    int failed_code;
    char tiff_msg[256];             /* last libtiff error */
    int tiff_errno;                 /* errno behind a libtiff write error */
    double t0_ms;
};

void
wsi_meta_default(struct wsi_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->mpp = 0.5;
    m->app_mag = 20;
    snprintf(m->scanner, sizeof(m->scanner), "slidescan %s",
             SLIDESCAN_VERSION);
    m->quality = 90;
    m->subsamp = 444;
    m->tile_size = 256;
    m->background[0] = m->background[1] = m->background[2] = 255;
    m->min_level_px = 512;
}

/* Level sizes: each level halves the one above (rounding up) while the
 * larger side exceeds min_level_px. */
static int
level_sizes(int w, int h, const struct wsi_meta *m, int ws[], int hs[])
{
    int n = 0;

    ws[0] = w;
    hs[0] = h;
    while (n + 1 < WSI__MAX_LEVELS &&
           (ws[n] > m->min_level_px || hs[n] > m->min_level_px)) {
        ws[n + 1] = (ws[n] + 1) / 2;
        hs[n + 1] = (hs[n] + 1) / 2;
        n++;
    }
    return n + 1;
}

int
wsi_level_count(int width, int height, const struct wsi_meta *meta)
{
    int ws[WSI__MAX_LEVELS], hs[WSI__MAX_LEVELS];

    return level_sizes(width, height, meta, ws, hs);
}

static int
tj_subsamp(int subsamp)
{
    return subsamp == 444 ? TJSAMP_444 : TJSAMP_420;
}

uint64_t
wsi_estimate_max_bytes(int width, int height, const struct wsi_meta *meta)
{
    int ws[WSI__MAX_LEVELS], hs[WSI__MAX_LEVELS];
    int n = level_sizes(width, height, meta, ws, hs), i, ts = meta->tile_size;
    int ss = tj_subsamp(meta->subsamp);
    uint64_t tile = tjBufSize(ts, ts, ss), total = 16;

    for (i = 0; i < n; i++) {
        uint64_t nt = (uint64_t)((ws[i] + ts - 1) / ts) *
                      (uint64_t)((hs[i] + ts - 1) / ts);

        /* tiles, their offset and byte-count entries, the directory */
        total += nt * (tile + 16) + 8192;
    }
    total += tjBufSize(THUMB_MAX_PX, THUMB_MAX_PX, ss) + 8192;
    if (meta->label != NULL)
        total += 2 * (uint64_t)img_bytes(meta->label) + 8192;
    if (meta->macro != NULL)
        total += tjBufSize(meta->macro->w, meta->macro->h, ss) + 8192;
    return total;
}

bool
wsi_needs_bigtiff(int width, int height, const struct wsi_meta *meta)
{
    return meta->bigtiff == 1 ||
           wsi_estimate_max_bytes(width, height, meta) >= (1ull << 32);
}

static int
check_meta(const struct wsi_meta *m, int w, int h, struct ss_err *err)
{
    const struct img *a[2] = { m->label, m->macro };
    int i;

    if (w < 1 || h < 1 || w > (1 << 22) || h > (1 << 22))
        return err_set(err, -EINVAL, "slide size %dx%d out of range", w, h);
    if (!(m->mpp > 0 && isfinite(m->mpp)))
        return err_set(err, -EINVAL, "pixel size %g µm is not positive",
                       m->mpp);
    if (m->quality < 1 || m->quality > 100)
        return err_set(err, -EINVAL, "JPEG quality %d not in 1..100",
                       m->quality);
    if (m->subsamp != 420 && m->subsamp != 444)
        return err_set(err, -EINVAL, "chroma subsampling %d is neither 420 "
                       "nor 444", m->subsamp);
    if (m->tile_size < 64 || m->tile_size > MAX_TILE_PX || m->tile_size % 16)
        return err_set(err, -EINVAL, "tile size %d is not a multiple of 16 "
                       "in 64..2048", m->tile_size);
    if (m->min_level_px < 16 || m->min_level_px > THUMB_MAX_PX)
        return err_set(err, -EINVAL, "smallest level size %d not in "
                       "16..%d", m->min_level_px, THUMB_MAX_PX);
    for (i = 0; i < 2; i++)
        if (a[i] != NULL && (a[i]->type != IMG_U8 || a[i]->c != 3))
            return err_set(err, -EINVAL, "%s image is not 8-bit RGB",
                           i == 0 ? "label" : "macro");
    return 0;
}

static int
on_tiff_error(TIFF *tif, void *ud, const char *module, const char *fmt,
              va_list ap)
{
    struct wsi_writer *w = ud;
    int e = errno;
    char msg[200];

    /* libtiff's write errors ("Write error at ...", "Error writing TIFF
     * header", ...) do not say why; errno does (ENOSPC, EFBIG). */
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (e != 0 && strcasestr(msg, "writ") != NULL) {
        snprintf(w->tiff_msg, sizeof(w->tiff_msg), "%s (%s)", msg,
                 strerror(e));
        w->tiff_errno = e;
    } else
        snprintf(w->tiff_msg, sizeof(w->tiff_msg), "%s", msg);
    return 1;
}

static int
on_tiff_warning(TIFF *tif, void *ud, const char *module, const char *fmt,
                va_list ap)
{
    char msg[200];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_warn("wsi", "libtiff warning module=%s: %s", module ? module : "",
             msg);
    return 1;
}

/* The message of a libtiff failure, naming the file the caller asked for
 * (the temporary name is ours); returns the code.  A write error is
 * reported by the errno behind it (-ENOSPC, -EFBIG, ...): libtiff's own
 * text adds nothing but a scanline number that means nothing for tiles.
 * Other failures keep libtiff's message and are -EIO. */
static int
tiff_fail(struct wsi_writer *w, struct ss_err *err, const char *what)
{
    if (w->tiff_errno != 0)
        return err_set(err, -w->tiff_errno, "%s: %s: %s", w->path, what,
                       strerror(w->tiff_errno));
    return err_set(err, -EIO, "%s: %s: libtiff: %s", w->path, what,
                   w->tiff_msg[0] ? w->tiff_msg : "unknown error");
}

static int
fail(struct wsi_writer *w, struct ss_err *err, int code, const char *fmt,
     ...)
{
    char msg[SS_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return err_set(err, code, "%s: %s", w->path, msg);
}

/* The TIFF tags every pyramid level carries. */
static int
set_level_tags(struct wsi_writer *w, int lvl)
{
    const struct level *l = &w->lv[lvl];
    double res = 10000.0 / (w->meta.mpp * (double)(1u << lvl));
    char desc[1024], when[32], soft[64];
    int ok = 1;

    if (lvl == 0)
        wsi__describe_base(desc, sizeof(desc), &w->meta, w->w, w->h);
    else
        wsi__describe_reduced(desc, sizeof(desc), &w->meta, w->w, w->h,
                              l->w, l->h);
    wsi__tiff_datetime(when, sizeof(when), &w->meta);
    snprintf(soft, sizeof(soft), "slidescan %s", SLIDESCAN_VERSION);
    ok &= TIFFSetField(w->tif, TIFFTAG_SUBFILETYPE,
                       lvl == 0 ? 0 : FILETYPE_REDUCEDIMAGE);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEWIDTH, (uint32_t)l->w);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGELENGTH, (uint32_t)l->h);
    ok &= TIFFSetField(w->tif, TIFFTAG_TILEWIDTH, (uint32_t)w->ts);
    ok &= TIFFSetField(w->tif, TIFFTAG_TILELENGTH, (uint32_t)w->ts);
    ok &= TIFFSetField(w->tif, TIFFTAG_BITSPERSAMPLE, 8);
    ok &= TIFFSetField(w->tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    ok &= TIFFSetField(w->tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    ok &= TIFFSetField(w->tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
    ok &= TIFFSetField(w->tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
    ok &= w->meta.subsamp == 444
        ? TIFFSetField(w->tif, TIFFTAG_YCBCRSUBSAMPLING, 1, 1)
        : TIFFSetField(w->tif, TIFFTAG_YCBCRSUBSAMPLING, 2, 2);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEDESCRIPTION, desc);
    ok &= TIFFSetField(w->tif, TIFFTAG_SOFTWARE, soft);
    ok &= TIFFSetField(w->tif, TIFFTAG_DATETIME, when);
    ok &= TIFFSetField(w->tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
    ok &= TIFFSetField(w->tif, TIFFTAG_XRESOLUTION, res);
    ok &= TIFFSetField(w->tif, TIFFTAG_YRESOLUTION, res);
    return ok ? 0 : -EIO;
}

static int
open_files(struct wsi_writer *w, struct ss_err *err)
{
    char dir[4096];
    int fd;

    fd = mkostemps(w->tmp, 8, O_CLOEXEC);
    if (fd < 0)
        return err_set(err, -errno, "%s: cannot create: %s", w->path,
                       strerror(errno));
    if (fchmod(fd, 0640) != 0 ||
        (wsi__test_hole_bytes > 0 &&
         ftruncate(fd, (off_t)wsi__test_hole_bytes) != 0)) {
        int e = errno;

        close(fd);
        return err_set(err, -e, "%s: %s", w->path, strerror(e));
    }
    w->opts = TIFFOpenOptionsAlloc();
    if (w->opts == NULL) {
        close(fd);
        return err_set(err, -ENOMEM, "%s: out of memory", w->path);
    }
    TIFFOpenOptionsSetErrorHandlerExtR(w->opts, on_tiff_error, w);
    TIFFOpenOptionsSetWarningHandlerExtR(w->opts, on_tiff_warning, w);
    w->tif = TIFFFdOpenExt(fd, w->tmp, w->bigtiff ? "w8" : "w", w->opts);
    if (w->tif == NULL) {
        close(fd);
        return tiff_fail(w, err, "starting the TIFF");
    }

    /* The spool for the smaller levels, unlinked from the start so that
     * nothing is left behind whatever happens. */
    snprintf(dir, sizeof(dir), "%s", w->path);
    w->spool_fd = open(dirname(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (w->spool_fd < 0) {
        char tmpl[4200];

        snprintf(tmpl, sizeof(tmpl), "%s.spool.XXXXXX", w->path);
        w->spool_fd = mkostemp(tmpl, O_CLOEXEC);
        if (w->spool_fd >= 0)
            unlink(tmpl);
    }
    if (w->spool_fd < 0)
        return err_set(err, -errno, "%s: cannot create a spool file: %s",
                       w->path, strerror(errno));
    return 0;
}

static int
alloc_levels(struct wsi_writer *w, struct ss_err *err)
{
    int ws[WSI__MAX_LEVELS], hs[WSI__MAX_LEVELS], i;

    w->nlevels = level_sizes(w->w, w->h, &w->meta, ws, hs);
    w->thumb_level = w->nlevels - 1;
    for (i = w->nlevels - 1; i >= 0; i--)
        if (ws[i] <= THUMB_MAX_PX && hs[i] <= THUMB_MAX_PX)
            w->thumb_level = i;
    for (i = 0; i < w->nlevels; i++) {
        struct level *l = &w->lv[i];
        size_t nt;

        l->w = ws[i];
        l->h = hs[i];
        l->ntx = (l->w + w->ts - 1) / w->ts;
        l->nty = (l->h + w->ts - 1) / w->ts;
        l->stride = (size_t)l->ntx * w->ts * 3;
        l->band = malloc(l->stride * w->ts + SHRINK_SLACK);
        if (i == 0) {
            w->fill[0] = l->band;
            w->fill[1] = malloc(l->stride * w->ts + SHRINK_SLACK);
            if (w->fill[1] == NULL)
                return err_set(err, -ENOMEM, "%s: out of memory for "
                               "level 0 (%dx%d)", w->path, l->w, l->h);
        }
        nt = (size_t)l->ntx * l->nty;
        if (i > 0) {
            l->spool_off = calloc(nt, sizeof(*l->spool_off));
            l->spool_len = calloc(nt, sizeof(*l->spool_len));
        }
        if (l->band == NULL ||
            (i > 0 && (l->spool_off == NULL || l->spool_len == NULL)))
            return err_set(err, -ENOMEM, "%s: out of memory for level %d "
                           "(%dx%d)", w->path, i, l->w, l->h);
    }
    w->thumb = malloc((size_t)ws[w->thumb_level] * hs[w->thumb_level] * 3);
    w->enc = calloc((size_t)w->lv[0].ntx, sizeof(*w->enc));
    w->enc0 = calloc((size_t)w->lv[0].ntx, sizeof(*w->enc0));
    if (w->thumb == NULL || w->enc == NULL || w->enc0 == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", w->path);
    return 0;
}

static int
alloc_encoders(struct wsi_writer *w, struct ss_err *err)
{
    int n = w->meta.threads, i, rc;
    unsigned long sz;
    uint8_t *bg;

    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > 16 ? 16 : n;
    rc = wsi__pool_new(n, &w->pool, err);
    if (rc < 0)
        return rc;
    n = wsi__pool_size(w->pool);
    w->tj = calloc((size_t)n, sizeof(*w->tj));
    w->scratch = calloc((size_t)n, sizeof(*w->scratch));
    if (w->tj == NULL || w->scratch == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", w->path);
    w->scratch_len = tjBufSize(w->ts, w->ts, w->tjsamp);
    for (i = 0; i < n; i++) {
        w->tj[i] = tjInitCompress();
        w->scratch[i] = malloc(w->scratch_len);
        if (w->tj[i] == NULL || w->scratch[i] == NULL)
            return err_set(err, -ENOMEM, "%s: cannot set up JPEG encoder",
                           w->path);
    }

    /* One encoded tile of background colour serves every blank tile. */
    bg = malloc((size_t)w->ts * w->ts * 3);
    if (bg == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", w->path);
    for (i = 0; i < w->ts * w->ts; i++)
        memcpy(bg + 3 * i, w->meta.background, 3);
    sz = w->scratch_len;
    rc = tjCompress2(w->tj[0], bg, w->ts, 0, w->ts, TJPF_RGB,
                     &w->scratch[0], &sz, w->tjsamp, w->meta.quality,
                     TJFLAG_NOREALLOC);
    free(bg);
    if (rc != 0)
        return err_set(err, -EIO, "%s: JPEG encoder: %s", w->path,
                       tjGetErrorStr2(w->tj[0]));
    w->bg_jpeg = malloc(sz);
    if (w->bg_jpeg == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", w->path);
    memcpy(w->bg_jpeg, w->scratch[0], sz);
    w->bg_len = (uint32_t)sz;
    return 0;
}

static void
stop_band_thread(struct wsi_writer *w)
{
    if (!w->band_thread)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->band_tid, NULL);
    w->band_thread = 0;
}

static void
writer_free(struct wsi_writer *w)
{
    int i;

    stop_band_thread(w);
    if (w->tif != NULL)
        TIFFClose(w->tif);
    if (w->opts != NULL)
        TIFFOpenOptionsFree(w->opts);
    if (w->spool_fd >= 0)
        close(w->spool_fd);
    free(w->fill[0]);
    free(w->fill[1]);
    for (i = 1; i < w->nlevels; i++)
        free(w->lv[i].band);
    for (i = 0; i < w->nlevels; i++) {
        free(w->lv[i].spool_off);
        free(w->lv[i].spool_len);
    }
    if (w->pool != NULL) {
        for (i = 0; i < wsi__pool_size(w->pool); i++) {
            if (w->tj != NULL && w->tj[i] != NULL)
                tjDestroy(w->tj[i]);
            if (w->scratch != NULL)
                free(w->scratch[i]);
        }
    }
    wsi__pool_free(w->pool);
    free(w->tj);
    free(w->scratch);
    free(w->enc);
    if (w->enc0 != NULL)
        for (i = 0; i < w->lv[0].ntx; i++)
            if (!w->enc0[i].shared)
                free(w->enc0[i].buf);
    free(w->enc0);
    free(w->thumb);
    free(w->bg_jpeg);
    pthread_mutex_destroy(&w->job_mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->path);
    free(w->tmp);
    free(w);
}

int
wsi_writer_open(const char *path, int width, int height,
                const struct wsi_meta *meta, struct wsi_writer **out,
                struct ss_err *err)
{
    struct wsi_writer *w;
    size_t n = strlen(path);
    int rc;

    *out = NULL;
    rc = check_meta(meta, width, height, err);
    if (rc < 0)
        return err_prefix(err, "%s", path);
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    pthread_mutex_init(&w->job_mu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->spool_fd = -1;
    w->meta = *meta;
    w->w = width;
    w->h = height;
    w->ts = meta->tile_size;
    w->tjsamp = tj_subsamp(meta->subsamp);
    w->bigtiff = wsi_needs_bigtiff(width, height, meta);
    w->t0_ms = util_now_ms();
    w->path = strdup(path);
    w->tmp = malloc(n + 16);
    if (w->path == NULL || w->tmp == NULL) {
        writer_free(w);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    snprintf(w->tmp, n + 16, "%s.XXXXXX.partial", path);

    rc = open_files(w, err);
    if (rc == 0)
        rc = alloc_levels(w, err);
    if (rc == 0)
        rc = alloc_encoders(w, err);
    if (rc == 0)
        rc = start_band_thread(w, err);
    if (rc == 0 && set_level_tags(w, 0) < 0)
        rc = err_set(err, -EIO, "%s: cannot set TIFF tags: %s", w->path,
                     w->tiff_msg);
    if (rc < 0) {
        wsi_writer_abort(w);
        return rc;
    }
    log_debug("wsi", "open path=%s w=%d h=%d levels=%d bigtiff=%d "
              "threads=%d", path, width, height, w->nlevels, w->bigtiff,
              wsi__pool_size(w->pool));
    *out = w;
    return 0;
}

/* Fills the band's padding: columns past the level's width repeat its
 * last column and rows past `rows` repeat the last row, so edge tiles
 * encode cleanly and the 2×2 shrink of an odd edge equals the edge. */
static void
pad_band(const struct wsi_writer *w, struct level *l, int rows)
{
    size_t used = (size_t)l->w * 3;
    int y, x;

    if (used < l->stride) {
        for (y = 0; y < rows; y++) {
            uint8_t *row = l->band + (size_t)y * l->stride;
            const uint8_t *last = row + used - 3;

            for (x = l->w; x < l->ntx * w->ts; x++)
                memcpy(row + (size_t)x * 3, last, 3);
        }
    }
    for (y = rows; y < w->ts; y++)
        memcpy(l->band + (size_t)y * l->stride,
               l->band + (size_t)(rows - 1) * l->stride, l->stride);
}

static bool
is_background(const struct wsi_writer *w, const uint8_t *px, size_t stride)
{
    const uint8_t *bg = w->meta.background;
    int x, y;

    for (y = 0; y < w->ts; y++) {
        const uint8_t *p = px + (size_t)y * stride;

        for (x = 0; x < w->ts; x++, p += 3)
            if (p[0] != bg[0] || p[1] != bg[1] || p[2] != bg[2])
                return false;
    }
    return true;
}

static void
job_failed(struct wsi_writer *w, const char *what, const char *detail)
{
    pthread_mutex_lock(&w->job_mu);
    if (w->job_err[0] == '\0')
        snprintf(w->job_err, sizeof(w->job_err), "%s%s", what, detail);
    pthread_mutex_unlock(&w->job_mu);
}

static void
encode_tile(struct wsi_writer *w, const uint8_t *px, size_t stride, int i,
            int slot)
{
    struct enc_tile *e = &w->enc[i];
    unsigned long sz = w->scratch_len;

    if (is_background(w, px, stride)) {
        e->buf = w->bg_jpeg;
        e->len = w->bg_len;
        e->shared = 1;
        return;
    }
    if (tjCompress2(w->tj[slot], px, w->ts, (int)stride, w->ts, TJPF_RGB,
                    &w->scratch[slot], &sz, w->tjsamp, w->meta.quality,
                    TJFLAG_NOREALLOC) != 0) {
        job_failed(w, "JPEG encoder: ", tjGetErrorStr2(w->tj[slot]));
        return;
    }
    e->buf = malloc(sz);
    if (e->buf == NULL) {
        job_failed(w, "out of memory for a tile", "");
        return;
    }
    memcpy(e->buf, w->scratch[slot], sz);
    e->len = (uint32_t)sz;
    e->shared = 0;
}

/* One output row of the 2×2 box shrink: half pixels from the source rows
 * a and b, each the rounded mean of a 2×2 block.  With SSE2
 * and SSSE3 (checked at run time) 16 byte positions at a time:
 * t[k] = (a[k] + a[k+3] + b[k] + b[k+3] + 2) >> 2 is the pixel pair's mean
 * wherever k is the first byte of a pair (k mod 6 < 3), and byte shuffles
 * gather those, 48 source bytes at a time; else one pixel at a time.  The
 * loads reach 3 bytes past the row, inside the band or its SHRINK_SLACK. */
#ifdef __SSE2__
static inline __m128i
pair_means(const uint8_t *a, const uint8_t *b)
{
    const __m128i z = _mm_setzero_si128(), two = _mm_set1_epi16(2);
    __m128i a0 = _mm_loadu_si128((const __m128i *)(const void *)a);
    __m128i a3 = _mm_loadu_si128((const __m128i *)(const void *)(a + 3));
    __m128i b0 = _mm_loadu_si128((const __m128i *)(const void *)b);
    __m128i b3 = _mm_loadu_si128((const __m128i *)(const void *)(b + 3));
    __m128i lo = _mm_add_epi16(
        _mm_add_epi16(_mm_unpacklo_epi8(a0, z), _mm_unpacklo_epi8(a3, z)),
        _mm_add_epi16(_mm_unpacklo_epi8(b0, z), _mm_unpacklo_epi8(b3, z)));
    __m128i hi = _mm_add_epi16(
        _mm_add_epi16(_mm_unpackhi_epi8(a0, z), _mm_unpackhi_epi8(a3, z)),
        _mm_add_epi16(_mm_unpackhi_epi8(b0, z), _mm_unpackhi_epi8(b3, z)));

    lo = _mm_srli_epi16(_mm_add_epi16(lo, two), 2);
    hi = _mm_srli_epi16(_mm_add_epi16(hi, two), 2);
    return _mm_packus_epi16(lo, hi);
}

/* 48 source bytes (16 pixels) per step into 24 output bytes. */
__attribute__((target("ssse3"))) static void
shrink_row_ssse3(const uint8_t *a, const uint8_t *b, uint8_t *o, int half)
{
#define X (-128)
    const __m128i m00 = _mm_setr_epi8(0, 1, 2, 6, 7, 8, 12, 13, 14,
                                      X, X, X, X, X, X, X);
    const __m128i m01 = _mm_setr_epi8(X, X, X, X, X, X, X, X, X,
                                      2, 3, 4, 8, 9, 10, 14);
    const __m128i m11 = _mm_setr_epi8(15, X, X, X, X, X, X, X,
                                      X, X, X, X, X, X, X, X);
    const __m128i m12 = _mm_setr_epi8(X, 0, 4, 5, 6, 10, 11, 12,
                                      X, X, X, X, X, X, X, X);
#undef X
    int n = half * 6, k;

    for (k = 0; k < n; k += 48, o += 24) {
        __m128i r0 = pair_means(a + k, b + k);
        __m128i r1 = pair_means(a + k + 16, b + k + 16);
        __m128i r2 = pair_means(a + k + 32, b + k + 32);

        _mm_storeu_si128((__m128i *)(void *)o,
                         _mm_or_si128(_mm_shuffle_epi8(r0, m00),
                                      _mm_shuffle_epi8(r1, m01)));
        _mm_storel_epi64((__m128i *)(void *)(o + 16),
                         _mm_or_si128(_mm_shuffle_epi8(r1, m11),
                                      _mm_shuffle_epi8(r2, m12)));
    }
}
#endif

void
wsi__shrink_row(const uint8_t *a, const uint8_t *b, uint8_t *o, int half)
{
    int x;
#ifdef __SSE2__
    static int ssse3 = -1;

    if (ssse3 < 0)
        ssse3 = __builtin_cpu_supports("ssse3") ? 1 : 0;
    if (ssse3 && half % 8 == 0) {
        shrink_row_ssse3(a, b, o, half);
        return;
    }
#endif
    for (x = 0; x < half; x++, a += 6, b += 6, o += 3) {
        o[0] = (uint8_t)((a[0] + a[3] + b[0] + b[3] + 2) >> 2);
        o[1] = (uint8_t)((a[1] + a[4] + b[1] + b[4] + 2) >> 2);
        o[2] = (uint8_t)((a[2] + a[5] + b[2] + b[5] + 2) >> 2);
    }
}

/* Shrinks tile column i of level lvl's band 2×2 into the band of the next
 * level, below the rows it already holds. */
static void
shrink_column(struct wsi_writer *w, int lvl, int i)
{
    const struct level *s = &w->lv[lvl];
    struct level *d = &w->lv[lvl + 1];
    int half = w->ts / 2, out_rows = (s->band_rows + 1) / 2, y;

    for (y = 0; y < out_rows; y++) {
        const uint8_t *a = s->band + (size_t)(2 * y) * s->stride +
                           (size_t)i * w->ts * 3;

        wsi__shrink_row(a, a + s->stride, d->band + (size_t)(d->band_rows + y) *
                   d->stride + (size_t)i * half * 3, half);
    }
}

static void
band_job(void *ctx, int i, int slot)
{
    struct wsi_writer *w = ctx;
    const struct level *l = &w->lv[w->job_level];

    encode_tile(w, l->band + (size_t)i * w->ts * 3, l->stride, i, slot);
    if (w->job_level + 1 < w->nlevels)
        shrink_column(w, w->job_level, i);
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Level 0 goes into the TIFF, smaller levels into the spool; the tiles
 * are freed either way. */
static int
store_band(struct wsi_writer *w, int lvl, struct enc_tile *enc, int band_row,
           struct ss_err *err)
{
    struct level *l = &w->lv[lvl];
    int i, rc = 0;

    for (i = 0; i < l->ntx && rc == 0; i++) {
        struct enc_tile *e = &enc[i];
        uint32_t tile = (uint32_t)(band_row * l->ntx + i);

        if (lvl == 0) {
            if (TIFFWriteRawTile(w->tif, tile, e->buf, e->len) !=
                (tmsize_t)e->len)
                rc = tiff_fail(w, err, "writing a level-0 tile");
            continue;
        }
        rc = write_all(w->spool_fd, e->buf, e->len);
        if (rc < 0) {
            rc = fail(w, err, rc, "spool of level %d: %s", lvl,
                      strerror(-rc));
            continue;
        }
        l->spool_off[tile] = w->spool_end;
        l->spool_len[tile] = e->len;
        w->spool_end += e->len;
    }
    for (i = 0; i < l->ntx; i++) {
        if (!enc[i].shared)
            free(enc[i].buf);
        enc[i].buf = NULL;
    }
    return rc;
}

/* Writes the level-0 tile row left pending by the previous band, if any.
 * Then starts writing it back to disk while encoding goes on, so that the
 * fsync in finish() has little left to wait for (advisory: a failure
 * shows at that fsync). */
static int
store_pending(struct wsi_writer *w, struct ss_err *err)
{
    int rc;

    if (!w->enc0_pending)
        return 0;
    w->enc0_pending = 0;
    rc = store_band(w, 0, w->enc0, w->enc0_row, err);
    if (rc == 0)
        (void)sync_file_range(TIFFFileno(w->tif), 0, 0,
                              SYNC_FILE_RANGE_WRITE);
    return rc;
}

static int
process_band(struct wsi_writer *w, int lvl, struct ss_err *err)
{
    struct level *l = &w->lv[lvl];
    struct enc_tile *t;
    int rows = l->band_rows, rc = 0;

    pad_band(w, l, rows);
    w->job_level = lvl;
    w->job_err[0] = '\0';
    memset(w->enc, 0, sizeof(*w->enc) * (size_t)l->ntx);
    /* Level 0's previous tile row is written while this one encodes. */
    wsi__pool_start(w->pool, l->ntx, band_job, w);
    if (lvl == 0)
        rc = store_pending(w, err);
    wsi__pool_join(w->pool);
    if (rc == 0 && w->job_err[0] != '\0')
        rc = fail(w, err, -EIO, "level %d tile row %d: %s", lvl,
                  l->band_row, w->job_err);
    if (rc < 0) {
        store_band(w, lvl, w->enc, l->band_row, NULL);
        return rc;
    }
    if (lvl == 0) {
        t = w->enc0;
        w->enc0 = w->enc;
        w->enc = t;
        w->enc0_row = l->band_row;
        w->enc0_pending = 1;
    } else {
        rc = store_band(w, lvl, w->enc, l->band_row, err);
        if (rc < 0)
            return rc;
    }
    if (lvl == w->thumb_level) {
        int y;

        for (y = 0; y < rows; y++)
            memcpy(w->thumb + (size_t)(l->rows_done + y) * l->w * 3,
                   l->band + (size_t)y * l->stride, (size_t)l->w * 3);
    }
    l->rows_done += rows;
    l->band_row++;
    l->band_rows = 0;
    if (lvl + 1 < w->nlevels) {
        struct level *n = &w->lv[lvl + 1];

        n->band_rows += (rows + 1) / 2;
        if (n->band_rows == w->ts || n->rows_done + n->band_rows == n->h)
            return process_band(w, lvl + 1, err);
    }
    return 0;
}

/* The band thread: processes each level-0 band the caller hands over
 * (encoding, shrinking, the smaller levels it completes, writing). */
static void *
band_main(void *arg)
{
    struct wsi_writer *w = arg;
    struct ss_err e;
    int rc, skip;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && !w->job_pending)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->job_pending)
            break;
        w->lv[0].band = w->job_buf;
        w->lv[0].band_rows = w->job_rows;
        w->job_pending = 0;
        w->job_busy = 1;
        /* After a failure, or when abandoned, bands are only drained. */
        skip = w->async_failed || w->quit;
        pthread_mutex_unlock(&w->mu);

        err_clear(&e);
        rc = skip ? 0 : process_band(w, 0, &e);

        pthread_mutex_lock(&w->mu);
        if (rc < 0 && !w->async_failed) {
            w->async_failed = 1;
            w->async_err = e;
        }
        w->job_busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int
start_band_thread(struct wsi_writer *w, struct ss_err *err)
{
    int rc = pthread_create(&w->band_tid, NULL, band_main, w);

    if (rc != 0)
        return err_set(err, -rc, "%s: cannot start the band thread: %s",
                       w->path, strerror(rc));
    w->band_thread = 1;
    return 0;
}

/* Waits until the band thread is idle; returns its failure, if any. */
static int
wait_idle(struct wsi_writer *w, struct ss_err *err)
{
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    while (w->job_pending || w->job_busy)
        pthread_cond_wait(&w->cv, &w->mu);
    if (w->async_failed) {
        if (err != NULL)
            *err = w->async_err;
        rc = w->async_err.code < 0 ? w->async_err.code : -EIO;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Hands the filled band over and switches to the other buffer, once the
 * band thread is done with it. */
static int
hand_off(struct wsi_writer *w, struct ss_err *err)
{
    int rc = wait_idle(w, err);

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&w->mu);
    w->job_buf = w->fill[w->fill_idx];
    w->job_rows = w->fill_rows;
    w->job_pending = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    w->fill_idx ^= 1;
    w->fill_rows = 0;
    return 0;
}

/* Counts `rows` rows just placed in the fill band, handing the band over
 * when it is full or the slide complete. */
static int
advance(struct wsi_writer *w, int rows, struct ss_err *err)
{
    int rc;

    w->fill_rows += rows;
    w->rows_in += rows;
    if (w->fill_rows == w->ts || w->rows_in == w->h) {
        rc = hand_off(w, err);
        if (rc < 0) {
            w->failed = 1;
            w->failed_code = rc;
            return rc;
        }
    }
    return 0;
}

/* Rows that fit in the fill band before it is handed over. */
static int
band_room(const struct wsi_writer *w)
{
    int room = w->ts - w->fill_rows;

    return room < w->h - w->rows_in ? room : w->h - w->rows_in;
}

/* Appends rows to level 0: copied from rgb, or background when NULL. */
static int
feed(struct wsi_writer *w, const uint8_t *rgb, int rows, struct ss_err *err)
{
    size_t row_bytes = (size_t)w->w * 3, stride = w->lv[0].stride;
    int rc, x;

    while (rows > 0) {
        uint8_t *dst = w->fill[w->fill_idx] + (size_t)w->fill_rows * stride;

        if (rgb != NULL) {
            memcpy(dst, rgb, row_bytes);
            rgb += row_bytes;
        } else {
            for (x = 0; x < w->w; x++)
                memcpy(dst + (size_t)x * 3, w->meta.background, 3);
        }
        rows--;
        rc = advance(w, 1, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
wsi_writer_rows(struct wsi_writer *w, const uint8_t *rgb, int rows,
                struct ss_err *err)
{
    if (w->failed)
        return err_set(err, w->failed_code, "%s: writer already failed",
                       w->path);
    if (rows < 0 || rows > w->h - w->rows_in)
        return err_set(err, -EINVAL, "%s: %d rows given, %d of %d left",
                       w->path, rows, w->h - w->rows_in, w->h);
    return feed(w, rgb, rows, err);
}

int
wsi_writer_rows_buffer(struct wsi_writer *w, uint8_t **rows, size_t *stride,
                       int *max_rows, struct ss_err *err)
{
    if (w->failed)
        return err_set(err, w->failed_code, "%s: writer already failed",
                       w->path);
    if (w->rows_in == w->h)
        return err_set(err, -EINVAL, "%s: all %d rows already given",
                       w->path, w->h);
    *stride = w->lv[0].stride;
    *rows = w->fill[w->fill_idx] + (size_t)w->fill_rows * *stride;
    *max_rows = band_room(w);
    return 0;
}

int
wsi_writer_rows_commit(struct wsi_writer *w, int rows, struct ss_err *err)
{
    if (w->failed)
        return err_set(err, w->failed_code, "%s: writer already failed",
                       w->path);
    if (rows < 1 || rows > band_room(w))
        return err_set(err, -EINVAL, "%s: %d rows committed, %d fit in the "
                       "band", w->path, rows, band_room(w));
    return advance(w, rows, err);
}

/* A stripped JPEG image (thumbnail, macro): one strip holding one
 * complete JPEG stream, YCbCr like the levels. */
static int
write_jpeg_strip_dir(struct wsi_writer *w, const uint8_t *px, int iw, int ih,
                     const char *desc, int subfile, struct ss_err *err)
{
    unsigned char *jpg = NULL;
    unsigned long sz = 0;
    int ok = 1;

    if (tjCompress2(w->tj[0], px, iw, 0, ih, TJPF_RGB, &jpg, &sz, w->tjsamp,
                    w->meta.quality, 0) != 0) {
        tjFree(jpg);
        return fail(w, err, -EIO, "JPEG encoder: %s",
                    tjGetErrorStr2(w->tj[0]));
    }
    ok &= TIFFSetField(w->tif, TIFFTAG_SUBFILETYPE, subfile);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEWIDTH, (uint32_t)iw);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGELENGTH, (uint32_t)ih);
    ok &= TIFFSetField(w->tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)ih);
    ok &= TIFFSetField(w->tif, TIFFTAG_BITSPERSAMPLE, 8);
    ok &= TIFFSetField(w->tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    ok &= TIFFSetField(w->tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    ok &= TIFFSetField(w->tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
    ok &= TIFFSetField(w->tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
    ok &= w->meta.subsamp == 444
        ? TIFFSetField(w->tif, TIFFTAG_YCBCRSUBSAMPLING, 1, 1)
        : TIFFSetField(w->tif, TIFFTAG_YCBCRSUBSAMPLING, 2, 2);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEDESCRIPTION, desc);
    if (ok && TIFFWriteRawStrip(w->tif, 0, jpg, (tmsize_t)sz) !=
        (tmsize_t)sz)
        ok = 0;
    tjFree(jpg);
    if (!ok || !TIFFWriteDirectory(w->tif))
        return tiff_fail(w, err, "writing a stripped image");
    return 0;
}

/* The label keeps its exact pixels: LZW, RGB, 16 rows per strip. */
static int
write_label_dir(struct wsi_writer *w, const struct img *im,
                struct ss_err *err)
{
    char desc[256];
    int ok = 1, y;

    wsi__describe_assoc(desc, sizeof(desc), "label", im->w, im->h);
    ok &= TIFFSetField(w->tif, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEWIDTH, (uint32_t)im->w);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGELENGTH, (uint32_t)im->h);
    ok &= TIFFSetField(w->tif, TIFFTAG_ROWSPERSTRIP, 16);
    ok &= TIFFSetField(w->tif, TIFFTAG_BITSPERSAMPLE, 8);
    ok &= TIFFSetField(w->tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    ok &= TIFFSetField(w->tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    ok &= TIFFSetField(w->tif, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
    ok &= TIFFSetField(w->tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    ok &= TIFFSetField(w->tif, TIFFTAG_IMAGEDESCRIPTION, desc);
    for (y = 0; ok && y < im->h; y++)
        ok = TIFFWriteScanline(w->tif, img_u8(im, 0, y), (uint32_t)y, 0) == 1;
    if (!ok || !TIFFWriteDirectory(w->tif))
        return tiff_fail(w, err, "writing the label");
    return 0;
}

static int
copy_level(struct wsi_writer *w, int lvl, struct ss_err *err)
{
    const struct level *l = &w->lv[lvl];
    size_t nt = (size_t)l->ntx * l->nty, t;
    uint8_t *buf = w->scratch[0];

    if (set_level_tags(w, lvl) < 0)
        return tiff_fail(w, err, "setting level tags");
    for (t = 0; t < nt; t++) {
        ssize_t n = pread(w->spool_fd, buf, l->spool_len[t],
                          (off_t)l->spool_off[t]);

        if (n != (ssize_t)l->spool_len[t])
            return fail(w, err, n < 0 ? -errno : -EIO, "reading back "
                        "level %d tile %zu from the spool: %s", lvl, t,
                        n < 0 ? strerror(errno) : "short read");
        if (TIFFWriteRawTile(w->tif, (uint32_t)t, buf, n) != n)
            return tiff_fail(w, err, "writing a reduced-level tile");
    }
    if (!TIFFWriteDirectory(w->tif))
        return tiff_fail(w, err, "writing a level directory");
    return 0;
}

static int
write_rest(struct wsi_writer *w, struct ss_err *err)
{
    const struct level *tl = &w->lv[w->thumb_level];
    char desc[1024];
    int rc, i;

    if (!TIFFWriteDirectory(w->tif))
        return tiff_fail(w, err, "writing the level-0 directory");
    wsi__describe_reduced(desc, sizeof(desc), &w->meta, w->w, w->h, tl->w,
                          tl->h);
    rc = write_jpeg_strip_dir(w, w->thumb, tl->w, tl->h, desc, 0, err);
    for (i = 1; rc == 0 && i < w->nlevels; i++)
        rc = copy_level(w, i, err);
    if (rc == 0 && w->meta.label != NULL)
        rc = write_label_dir(w, w->meta.label, err);
    if (rc == 0 && w->meta.macro != NULL) {
        const struct img *m = w->meta.macro;

        wsi__describe_assoc(desc, sizeof(desc), "macro", m->w, m->h);
        rc = write_jpeg_strip_dir(w, m->data, m->w, m->h, desc,
                                  FILETYPE_REDUCEDIMAGE | 8, err);
    }
    return rc;
}

/* Flushes, fsyncs and closes the TIFF, then renames it into place. */
static int
commit(struct wsi_writer *w, struct ss_err *err)
{
    int fd = TIFFFileno(w->tif), rc;

    if (!TIFFFlush(w->tif))
        return tiff_fail(w, err, "flushing");
    if (fsync(fd) != 0)
        return fail(w, err, -errno, "fsync: %s", strerror(errno));
    TIFFClose(w->tif);
    w->tif = NULL;
    rc = util_commit_file(w->tmp, w->path, err);
    if (rc < 0) {
        struct stat st;

        /* Renamed but not durable: do not leave it looking complete. */
        if (stat(w->tmp, &st) != 0 && stat(w->path, &st) == 0)
            unlink(w->path);
        w->failed = 1;
        return rc;
    }
    return 0;
}

int
wsi_writer_finish(struct wsi_writer *w, struct ss_err *err)
{
    int missing = w->h - w->rows_in, rc;
    struct stat st;

    if (w->failed) {
        rc = err_set(err, w->failed_code, "%s: writer already failed",
                     w->path);
        wsi_writer_abort(w);
        return rc;
    }
    if (missing > 0)
        log_notice("wsi", "finish path=%s rows_missing=%d filled=background",
                   w->path, missing);
    rc = feed(w, NULL, missing, err);
    if (rc == 0)
        rc = wait_idle(w, err);
    stop_band_thread(w);
    if (rc == 0)
        rc = store_pending(w, err);
    if (rc == 0)
        rc = write_rest(w, err);
    if (rc == 0)
        rc = commit(w, err);
    if (rc < 0) {
        /* Every message above already starts with w->path. */
        wsi_writer_abort(w);
        return rc;
    }
    if (stat(w->path, &st) == 0)
        log_info("wsi", "written path=%s w=%d h=%d levels=%d bigtiff=%d "
                 "bytes=%lld ms=%.0f", w->path, w->w, w->h, w->nlevels,
                 w->bigtiff, (long long)st.st_size,
                 util_now_ms() - w->t0_ms);
    writer_free(w);
    return 0;
}

void
wsi_writer_abort(struct wsi_writer *w)
{
    if (w == NULL)
        return;
    stop_band_thread(w);
    if (w->tif != NULL) {
        TIFFClose(w->tif);
        w->tif = NULL;
    }
    if (w->tmp != NULL && strstr(w->tmp, "XXXXXX") == NULL)
        unlink(w->tmp);
    writer_free(w);
}
