/* SPDX-License-Identifier: MIT */
/*
 * The WSI validator (wsi_verify in storage/wsi.h): reads a finished slide
 * the way libtiff, a plain JPEG decoder and OpenSlide 3.4.1 do and names
 * every defect that makes a reader see something other than what was
 * scanned:
 *
 *   levels     tiled directories after the first are flagged as reduced
 *              images and halve the level above; label and macro are
 *              stripped and named with "\n" descriptions
 *   pixel size MPP in the Aperio description, ResolutionUnit centimetre
 *              and X/YResolution = 10000 / mpp per level; files other
 *              programs wrote (their description does not start with
 *              "Aperio Image Library slidescan") need only the MPP, as
 *              OpenSlide does, and the report says they are not ours
 *   tiles      every tile has bytes and decodes through libtiff
 *   tables     libtiff's decode equals a direct decode of the tile's own
 *              stream (max difference 0); shared JPEGTables agree with
 *              the tiles' own tables or with the declared quality
 *   OpenSlide  vendor aperio, the same levels and mpp, read_region on
 *              every level, tile pixels identical, associated images
 *
 * Every tile is decoded twice (libtiff and TurboJPEG), the tiles of a
 * level shared among one thread per CPU.
 *
 * LIMIT: through OpenSlide only tile (0, 0) of each level is compared
 * pixel for pixel.
 */
#include "storage/wsi.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "storage/wsi_internal.h"

#define MAX_DIRS 64
#define MAX_LISTED 4                /* tile coordinates named per defect */

struct dir {
    int index;
    uint32_t w, h, tw, th;
    int tiled;
    uint32_t subfile;
    uint16_t compression, photometric;
    char desc[2048];
};

struct report {
    char *buf;
    size_t len, used;
    int defects;
    char first[256];
};

/* One reader of the file: a TIFF handle, a JPEG decoder and libtiff's
 * last complaint, so that threads can each read their share of tiles. */
struct reader {
    TIFF *tif;
    tjhandle tj;
    char msg[256];
};

struct verifier {
    const char *path;
    struct reader rd;               /* the main thread's */
    struct dir dirs[MAX_DIRS];
    int ndirs;
    int level_dir[WSI__MAX_LEVELS]; /* directory of each level */
    int nlevels;
    double mpp;                     /* from the description, 0 if absent */
    int quality;                    /* "Q=" of the description, or -1 */
    int nthreads;
    struct report rep;
};

static void
say(struct report *r, int defect, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (defect && r->defects++ == 0)
        snprintf(r->first, sizeof(r->first), "%s", line);
    if (r->buf == NULL || r->len == 0)
        return;
    n = snprintf(r->buf + r->used, r->len - r->used, "%s %s\n",
                 defect ? "FAIL" : "ok  ", line);
    if (n > 0)
        r->used += (size_t)n < r->len - r->used ? (size_t)n
                                                : r->len - r->used - 1;
}

static int
on_tiff_error(TIFF *tif, void *ud, const char *module, const char *fmt,
              va_list ap)
{
    struct reader *rd = ud;
    char *p;

    vsnprintf(rd->msg, sizeof(rd->msg), fmt, ap);
    for (p = rd->msg; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return 1;
}

static int
on_tiff_warning(TIFF *tif, void *ud, const char *module, const char *fmt,
                va_list ap)
{
    return 1;
}

/* The second line of a description, up to its end or a '|'. */
static void
line_two(const char *desc, char *out, size_t len, int *crlf)
{
    const char *p = strpbrk(desc, "\r\n"), *e;

    *crlf = 0;
    out[0] = '\0';
    if (p == NULL)
        return;
    *crlf = p[0] == '\r';
    p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
    e = p + strcspn(p, "|\r\n");
    snprintf(out, len, "%.*s", (int)(e - p), p);
}

static void
read_dirs(struct verifier *v)
{
    do {
        struct dir *d = &v->dirs[v->ndirs];
        char *desc = NULL;

        memset(d, 0, sizeof(*d));
        d->index = v->ndirs;
        TIFFGetField(v->rd.tif, TIFFTAG_IMAGEWIDTH, &d->w);
        TIFFGetField(v->rd.tif, TIFFTAG_IMAGELENGTH, &d->h);
        d->tiled = TIFFIsTiled(v->rd.tif);
        if (d->tiled) {
            TIFFGetField(v->rd.tif, TIFFTAG_TILEWIDTH, &d->tw);
            TIFFGetField(v->rd.tif, TIFFTAG_TILELENGTH, &d->th);
        }
        TIFFGetFieldDefaulted(v->rd.tif, TIFFTAG_SUBFILETYPE, &d->subfile);
        TIFFGetFieldDefaulted(v->rd.tif, TIFFTAG_COMPRESSION, &d->compression);
        TIFFGetFieldDefaulted(v->rd.tif, TIFFTAG_PHOTOMETRIC, &d->photometric);
        if (TIFFGetField(v->rd.tif, TIFFTAG_IMAGEDESCRIPTION, &desc) && desc)
            snprintf(d->desc, sizeof(d->desc), "%s", desc);
        v->ndirs++;
    } while (v->ndirs < MAX_DIRS && TIFFReadDirectory(v->rd.tif));
}

static int
halves(uint32_t small, uint32_t big)
{
    return small == big / 2 || small == (big + 1) / 2;
}

/* An associated (stripped) directory: named by the first word of its
 * description's second line, as OpenSlide 3.4.1 does. */
static void
check_stripped(struct verifier *v, const struct dir *d)
{
    char two[256];
    int crlf;

    if (d->index == 1)
        return;                     /* the thumbnail */
    line_two(d->desc, two, sizeof(two), &crlf);
    if (strncmp(two, "label ", 6) != 0 && strncmp(two, "macro ", 6) != 0) {
        say(&v->rep, 1, "directory %d (%ux%u, stripped) has no label or "
            "macro name in its description%s", d->index, d->w, d->h,
            crlf ? " (its line break is \\r\\n, which OpenSlide 3.4.1 "
            "reads as an empty name)" : "");
        return;
    }
    if (crlf)
        say(&v->rep, 1, "directory %d: the %.5s description uses \\r\\n; "
            "OpenSlide 3.4.1 then loses the image", d->index, two);
    if (strncmp(two, "label", 5) == 0 && d->subfile != 1)
        say(&v->rep, 1, "directory %d: label has SubfileType %u, "
            "expected 1", d->index, d->subfile);
    if (strncmp(two, "macro", 5) == 0 && d->subfile != 9)
        say(&v->rep, 1, "directory %d: macro has SubfileType %u, "
            "expected 9", d->index, d->subfile);
}

static void
check_tiled(struct verifier *v, const struct dir *d)
{
    char two[256];
    int crlf, k = v->nlevels;

    line_two(d->desc, two, sizeof(two), &crlf);
    if (strncmp(two, "label", 5) == 0 || strncmp(two, "macro", 5) == 0)
        say(&v->rep, 1, "directory %d: %.5s image is tiled, so readers "
            "take it for a pyramid level", d->index, two);
    if (d->index > 0 && !(d->subfile & FILETYPE_REDUCEDIMAGE))
        say(&v->rep, 1, "directory %d (%ux%u, tiled) is not flagged as a "
            "reduced-resolution image (SubfileType %u): readers see a "
            "separate image, not level %d", d->index, d->w, d->h,
            d->subfile, k);
    if (k > 0) {
        const struct dir *up = &v->dirs[v->level_dir[k - 1]];

        if (!halves(d->w, up->w) || !halves(d->h, up->h))
            say(&v->rep, 1, "level %d (directory %d) is %ux%u, not half "
                "of level %d (%ux%u)", k, d->index, d->w, d->h, k - 1,
                up->w, up->h);
    }
    if (d->compression != COMPRESSION_JPEG)
        say(&v->rep, 1, "level %d (directory %d) uses TIFF compression "
            "%u, not JPEG", k, d->index, d->compression);
    if (k < WSI__MAX_LEVELS)
        v->level_dir[v->nlevels++] = d->index;
}

static void
check_layout(struct verifier *v)
{
    int before = v->rep.defects, i;
    const char *q;

    if (!v->dirs[0].tiled) {
        say(&v->rep, 1, "directory 0 is not tiled: no pyramid");
        return;
    }
    if (strncmp(v->dirs[0].desc, "Aperio", 6) != 0)
        say(&v->rep, 1, "level-0 description does not start with "
            "\"Aperio\": OpenSlide 3.4.1 reads no pixel size from it");
    q = strstr(v->dirs[0].desc, " Q=");
    v->quality = q != NULL ? atoi(q + 3) : -1;
    for (i = 0; i < v->ndirs; i++) {
        if (v->dirs[i].tiled)
            check_tiled(v, &v->dirs[i]);
        else
            check_stripped(v, &v->dirs[i]);
    }
    if (v->rep.defects == before)
        say(&v->rep, 0, "levels: %d, level 0 %ux%u, each level below "
            "flagged as a reduced image of half the size", v->nlevels,
            v->dirs[0].w, v->dirs[0].h);
}

/* A slidescan WSI says so on the first line of its descriptions. */
static int
is_ours(const struct verifier *v)
{
    return strncmp(v->dirs[0].desc, WSI__DESC_HEAD,
                   strlen(WSI__DESC_HEAD)) == 0;
}

/* Another program's Aperio file (CMU-1 from a ScanScope) states its pixel
 * size only in the description, which is where OpenSlide reads it; our
 * own files must carry the resolution tags too, for libtiff readers. */
static void
foreign_pixel_size(struct verifier *v)
{
    const char *d = v->dirs[0].desc;
    int n = (int)strcspn(d, "\r\n|");

    while (n > 0 && d[n - 1] == ' ')
        n--;

    say(&v->rep, 0, "pixel size: %.6g µm/px from the description's MPP; "
        "not a slidescan WSI (ImageDescription from \"%.*s\"), so "
        "resolution tags are not required", v->mpp, n > 48 ? 48 : n, d);
}

static void
check_pixel_size(struct verifier *v, double expect_mpp)
{
    const char *m = strstr(v->dirs[0].desc, "|MPP = ");
    int before = v->rep.defects, k;

    v->mpp = m != NULL ? strtod(m + 7, NULL) : 0;
    if (!(v->mpp > 0 && isfinite(v->mpp))) {
        say(&v->rep, 1, "no usable pixel size: the level-0 description "
            "has no positive MPP");
        v->mpp = 0;
        return;
    }
    if (expect_mpp > 0 && fabs(v->mpp - expect_mpp) > 1e-9 * expect_mpp)
        say(&v->rep, 1, "pixel size is %.6g µm/px, expected %.6g",
            v->mpp, expect_mpp);
    if (!is_ours(v)) {
        if (v->rep.defects == before)
            foreign_pixel_size(v);
        return;
    }
    for (k = 0; k < v->nlevels; k++) {
        const struct dir *d = &v->dirs[v->level_dir[k]];
        double want = 10000.0 / (v->mpp * (double)(1u << k));
        float xr = 0, yr = 0;
        uint16_t unit = 0;

        TIFFSetDirectory(v->rd.tif, (tdir_t)d->index);
        TIFFGetFieldDefaulted(v->rd.tif, TIFFTAG_RESOLUTIONUNIT, &unit);
        if (!TIFFGetField(v->rd.tif, TIFFTAG_XRESOLUTION, &xr) ||
            !TIFFGetField(v->rd.tif, TIFFTAG_YRESOLUTION, &yr))
            say(&v->rep, 1, "level %d: no resolution tags, expected "
                "ResolutionUnit centimetre and %g px/cm", k, want);
        else if (unit != RESUNIT_CENTIMETER ||
            fabs(xr - want) > 1e-4 * want || fabs(yr - want) > 1e-4 * want)
            say(&v->rep, 1, "level %d: resolution %g x %g per %s, expected "
                "%g px/cm for %g µm/px", k, xr, yr,
                unit == RESUNIT_CENTIMETER ? "cm" :
                unit == RESUNIT_INCH ? "inch" : "unit", want,
                v->mpp * (double)(1u << k));
    }
    if (v->rep.defects == before)
        say(&v->rep, 0, "pixel size: %.6g µm/px in the description and "
            "the resolution tags of every level", v->mpp);
}

struct tally {
    int missing, broken, differ, colour, rgb;
    int max_diff;
    char where[4][128];             /* first tiles of each kind */
    int listed[4];
    char why[160];                  /* the first decoder complaint */
    uint32_t why_tile;              /* ... and its tile */
};

static void
note(struct tally *t, int kind, uint32_t col, uint32_t row)
{
    size_t n = strlen(t->where[kind]);

    if (t->listed[kind]++ < MAX_LISTED)
        snprintf(t->where[kind] + n, sizeof(t->where[kind]) - n, "%s(%u,%u)",
                 n ? " " : "", col, row);
}

static void
broken(struct tally *t, uint32_t tile, uint32_t col, uint32_t row,
       const char *who, const char *why)
{
    note(t, 1, col, row);
    if (t->broken++ == 0) {
        snprintf(t->why, sizeof(t->why), "%s%s", who, why);
        t->why_tile = tile;
    }
}

/* Per-level JPEG context: the shared tables and the buffers. */
struct level_ctx {
    const struct dir *d;
    int k;
    uint8_t *tables;
    uint32_t ntables;
    struct wsi__jpeg_info tinfo;
    uint8_t *raw, *joined, *via_tiff, *direct;
    size_t raw_len;
    int tables_checked;
};

/* The stream a plain JPEG decoder sees for a tile: the tile itself when
 * it carries its own tables, else JPEGTables spliced in front of it. */
static int
direct_stream(struct verifier *v, struct level_ctx *c, size_t len,
              const struct wsi__jpeg_info *ti, const uint8_t **s,
              size_t *slen)
{
    if (ti->ndqt > 0 && ti->ndht > 0) {
        *s = c->raw;
        *slen = len;
        return 0;
    }
    if (c->tables == NULL || c->ntables < 4)
        return -1;
    memcpy(c->joined, c->tables, c->ntables - 2);
    memcpy(c->joined + c->ntables - 2, c->raw + 2, len - 2);
    *s = c->joined;
    *slen = c->ntables - 2 + len - 2;
    return 0;
}

/* Shared tables must be the ones the tiles were encoded with: equal to a
 * complete tile's own tables, or to the declared quality's tables when
 * the tiles are abbreviated. */
static void
check_tables(struct verifier *v, struct level_ctx *c,
             const struct wsi__jpeg_info *ti)
{
    int id, q;

    if (c->tables == NULL || c->tables_checked)
        return;
    c->tables_checked = 1;
    if (ti->ndqt > 0) {
        for (id = 0; id < 4; id++)
            if ((ti->dqt_mask & c->tinfo.dqt_mask & (1u << id)) &&
                memcmp(ti->dqt[id], c->tinfo.dqt[id], 128) != 0)
                say(&v->rep, 1, "level %d: JPEGTables quantisation table "
                    "%d differs from the one inside the tiles", c->k, id);
        return;
    }
    q = wsi__jpeg_guess_quality(&c->tinfo);
    if (v->quality < 0)
        say(&v->rep, 0, "level %d: tiles use shared JPEGTables and the "
            "description states no quality; tables not checked", c->k);
    else if (q != v->quality)
        say(&v->rep, 1, "level %d: JPEGTables hold %s%d tables but the "
            "tiles were written at Q=%d: they decode without error but "
            "wrongly", c->k, q < 0 ? "non-standard tables, not Q=" : "Q=",
            q < 0 ? v->quality : q, v->quality);
}

static int
max_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        int d = abs(a[i] - b[i]);

        if (d > m)
            m = d;
    }
    return m;
}

static void
check_tile(struct verifier *v, struct reader *rd, struct level_ctx *c,
           uint32_t t, uint64_t bytes, struct tally *ta)
{
    const struct dir *d = c->d;
    uint32_t ntx = (d->w + d->tw - 1) / d->tw, col = t % ntx, row = t / ntx;
    size_t px = (size_t)d->tw * d->th * 3;
    struct wsi__jpeg_info ti;
    const uint8_t *s;
    const char *why;
    size_t slen;
    tmsize_t n;
    int diff;

    if (bytes == 0) {
        note(ta, 0, col, row);
        ta->missing++;
        return;
    }
    rd->msg[0] = '\0';
    n = TIFFReadRawTile(rd->tif, t, c->raw, (tmsize_t)bytes);
    if (n != (tmsize_t)bytes ||
        TIFFReadEncodedTile(rd->tif, t, c->via_tiff, (tmsize_t)px) !=
        (tmsize_t)px) {
        broken(ta, t, col, row, "libtiff: ", rd->msg);
        return;
    }
    if (d->compression != COMPRESSION_JPEG)
        return;
    why = NULL;
    if (wsi__jpeg_scan(c->raw, (size_t)n, &ti, &why) != 0 ||
        direct_stream(v, c, (size_t)n, &ti, &s, &slen) != 0) {
        broken(ta, t, col, row, "", why ? why : "no tables to decode with");
        return;
    }
    if (tjDecompress2(rd->tj, s, (unsigned long)slen, c->direct,
                      (int)d->tw, 0, (int)d->th, TJPF_RGB, 0) != 0 ||
        ti.width != (int)d->tw || ti.height != (int)d->th) {
        broken(ta, t, col, row, "JPEG decoder: ", tjGetErrorStr2(rd->tj));
        return;
    }
    check_tables(v, c, &ti);
    if (d->photometric == PHOTOMETRIC_RGB) {
        /* A JFIF or Adobe-transform stream is YCbCr whatever the TIFF
         * says; libtiff then decodes false colours.  Without either
         * marker the stream is RGB by the TIFF's word, which a plain
         * JPEG decoder cannot be told, so there is nothing to compare. */
        if (ti.jfif || ti.adobe_transform == 1) {
            note(ta, 3, col, row);
            ta->colour++;
        }
        ta->rgb++;
        return;
    }
    if (ti.adobe_transform == 0) {
        note(ta, 3, col, row);
        ta->colour++;
        return;
    }
    diff = max_diff(c->via_tiff, c->direct, px);
    if (diff > ta->max_diff)
        ta->max_diff = diff;
    if (diff > 0) {
        note(ta, 2, col, row);
        ta->differ++;
    }
}

static void
report_level(struct verifier *v, int k, uint32_t nt, const struct tally *t)
{
    const struct dir *d = &v->dirs[v->level_dir[k]];

    if (t->missing)
        say(&v->rep, 1, "level %d: %d of %u tiles have no bytes (never "
            "written), e.g. (col,row) %s", k, t->missing, nt, t->where[0]);
    if (t->broken)
        say(&v->rep, 1, "level %d: %d of %u tiles do not decode (%s), "
            "e.g. %s", k, t->broken, nt, t->why, t->where[1]);
    if (t->differ)
        say(&v->rep, 1, "level %d: %d of %u tiles decode differently "
            "through libtiff than as their own JPEG stream (max "
            "difference %d), e.g. %s", k, t->differ, nt, t->max_diff,
            t->where[2]);
    if (t->colour)
        say(&v->rep, 1, "level %d: %d of %u tiles hold %s JPEG data but "
            "the TIFF says %s: readers show false colours, e.g. %s", k,
            t->colour, nt, d->photometric == PHOTOMETRIC_RGB ? "YCbCr" :
            "RGB", d->photometric == PHOTOMETRIC_RGB ? "RGB" : "YCbCr",
            t->where[3]);
    if (t->missing || t->broken || t->differ || t->colour)
        return;
    if (t->rgb)
        say(&v->rep, 0, "level %d: %u tiles of %ux%u present and "
            "decodable; RGB JPEG, so no direct-decode comparison", k, nt,
            d->tw, d->th);
    else
        say(&v->rep, 0, "level %d: %u tiles of %ux%u present and "
            "decodable; libtiff decode equals direct decode (max "
            "difference %d)", k, nt, d->tw, d->th, t->max_diff);
}

static int
ctx_buffers(struct level_ctx *c, uint64_t most)
{
    size_t px = (size_t)c->d->tw * c->d->th * 3;

    c->raw = malloc(most + 16);
    c->joined = malloc(most + c->ntables + 16);
    c->via_tiff = malloc(px);
    c->direct = malloc(px);
    return c->raw && c->joined && c->via_tiff && c->direct ? 0 : -ENOMEM;
}

static void
ctx_free(struct level_ctx *c)
{
    free(c->raw);
    free(c->joined);
    free(c->via_tiff);
    free(c->direct);
}

static int
reader_open(const char *path, const struct dir *d, struct reader *rd)
{
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();

    memset(rd, 0, sizeof(*rd));
    if (opts == NULL)
        return -ENOMEM;
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_tiff_error, rd);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_tiff_warning, rd);
    /* "m": read(), not mmap(), so the whole file is not counted as the
     * process's memory once every tile has been looked at. */
    rd->tif = TIFFOpenExt(path, "rm", opts);
    TIFFOpenOptionsFree(opts);
    rd->tj = tjInitDecompress();
    if (rd->tif == NULL || rd->tj == NULL ||
        !TIFFSetDirectory(rd->tif, (tdir_t)d->index))
        return -EIO;
    if (d->photometric == PHOTOMETRIC_YCBCR &&
        d->compression == COMPRESSION_JPEG)
        TIFFSetField(rd->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    return 0;
}

static void
reader_close(struct reader *rd)
{
    if (rd->tif != NULL)
        TIFFClose(rd->tif);
    if (rd->tj != NULL)
        tjDestroy(rd->tj);
    rd->tif = NULL;
    rd->tj = NULL;
}

/* A share of one level's tiles, checked on a thread of its own. */
struct share {
    struct verifier *v;
    struct level_ctx c;             /* a copy with its own buffers */
    const uint64_t *counts;
    uint64_t most;
    uint32_t first, step, nt;
    struct tally t;
    int rc;
};

static void *
share_main(void *arg)
{
    struct share *sh = arg;
    struct reader rd;
    uint32_t i;

    sh->rc = reader_open(sh->v->path, sh->c.d, &rd);
    if (sh->rc == 0)
        sh->rc = ctx_buffers(&sh->c, sh->most);
    for (i = sh->first; sh->rc == 0 && i < sh->nt; i += sh->step)
        check_tile(sh->v, &rd, &sh->c, i, sh->counts[i], &sh->t);
    ctx_free(&sh->c);
    reader_close(&rd);
    return NULL;
}

static void
merge_list(char *dst, size_t len, int *listed, const char *src, int n)
{
    size_t used = strlen(dst);

    if (*src == '\0' || *listed >= MAX_LISTED)
        return;
    snprintf(dst + used, len - used, "%s%s", used ? " " : "", src);
    *listed += n;
}

static void
merge(struct tally *t, const struct tally *o)
{
    int k;

    if (o->broken && (t->broken == 0 || o->why_tile < t->why_tile)) {
        snprintf(t->why, sizeof(t->why), "%s", o->why);
        t->why_tile = o->why_tile;
    }
    t->missing += o->missing;
    t->broken += o->broken;
    t->differ += o->differ;
    t->colour += o->colour;
    t->rgb += o->rgb;
    t->max_diff = o->max_diff > t->max_diff ? o->max_diff : t->max_diff;
    for (k = 0; k < 4; k++)
        merge_list(t->where[k], sizeof(t->where[k]), &t->listed[k],
                   o->where[k], o->listed[k]);
}

/* Checks every tile of level k: the main thread takes tile 0 (and with
 * it the shared tables), then the tiles are dealt round-robin to
 * v->nthreads threads, the main one included. */
static int
check_level_tiles(struct verifier *v, int k)
{
    struct share sh[8];
    struct level_ctx c;
    struct tally t;
    pthread_t th[8];
    uint64_t *counts = NULL, *mine, most = 0;
    uint32_t nt, i;
    const char *why;
    int n, started = 0, rc = 0;

    memset(&c, 0, sizeof(c));
    memset(&t, 0, sizeof(t));
    c.k = k;
    c.d = &v->dirs[v->level_dir[k]];
    if (!TIFFSetDirectory(v->rd.tif, (tdir_t)c.d->index))
        return -EIO;
    if (c.d->photometric == PHOTOMETRIC_YCBCR &&
        c.d->compression == COMPRESSION_JPEG)
        TIFFSetField(v->rd.tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    nt = TIFFNumberOfTiles(v->rd.tif);
    if (!TIFFGetField(v->rd.tif, TIFFTAG_TILEBYTECOUNTS, &counts))
        return -EIO;
    mine = malloc(sizeof(uint64_t) * ((size_t)nt + 1));
    if (mine == NULL)
        return -ENOMEM;
    for (i = 0; i < nt; i++) {
        mine[i] = counts[i];
        most = counts[i] > most ? counts[i] : most;
    }
    if (TIFFGetField(v->rd.tif, TIFFTAG_JPEGTABLES, &c.ntables, &c.tables) &&
        c.tables != NULL &&
        wsi__jpeg_scan(c.tables, c.ntables, &c.tinfo, &why) != 0) {
        say(&v->rep, 1, "level %d: JPEGTables are damaged: %s", k, why);
        c.tables = NULL;
    }
    if (ctx_buffers(&c, most) < 0) {
        ctx_free(&c);
        free(mine);
        return -ENOMEM;
    }
    if (nt > 0)
        check_tile(v, &v->rd, &c, 0, mine[0], &t);
    c.tables_checked = 1;
    n = nt < 64 ? 1 : v->nthreads;
    for (i = 1; i < (uint32_t)n; i++) {
        memset(&sh[started], 0, sizeof(sh[started]));
        sh[started].v = v;
        sh[started].c = c;
        sh[started].c.raw = sh[started].c.joined = NULL;
        sh[started].c.via_tiff = sh[started].c.direct = NULL;
        sh[started].counts = mine;
        sh[started].most = most;
        sh[started].first = 1 + i;
        sh[started].step = (uint32_t)n;
        sh[started].nt = nt;
        if (pthread_create(&th[started], NULL, share_main, &sh[started]) !=
            0)
            break;
        started++;
    }
    /* Tiles 1, 1 + n, ... here; a share that did not start is done here
     * too. */
    for (i = 1; i < nt; i++) {
        uint32_t owner = (i - 1) % (uint32_t)n;

        if (owner == 0 || owner > (uint32_t)started)
            check_tile(v, &v->rd, &c, i, mine[i], &t);
    }
    for (i = 0; i < (uint32_t)started; i++) {
        pthread_join(th[i], NULL);
        if (sh[i].rc < 0)
            rc = sh[i].rc;
        merge(&t, &sh[i].t);
    }
    if (rc == 0)
        report_level(v, k, nt, &t);
    ctx_free(&c);
    free(mine);
    return rc;
}

/* Level k's tile (0, 0) through OpenSlide against libtiff's decode,
 * which check_level_tiles() already found equal to the direct decode. */
static int
openslide_tile_diff(struct verifier *v, openslide_t *os, int k,
                    uint32_t *argb, uint8_t *rgb)
{
    const struct dir *d = &v->dirs[v->level_dir[k]];
    int w = (int)(d->w < d->tw ? d->w : d->tw);
    int h = (int)(d->h < d->th ? d->h : d->th), x, y, m = 0, c;

    TIFFSetDirectory(v->rd.tif, (tdir_t)d->index);
    if (d->photometric == PHOTOMETRIC_YCBCR)
        TIFFSetField(v->rd.tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    if (TIFFReadEncodedTile(v->rd.tif, 0, rgb,
                            (tmsize_t)d->tw * d->th * 3) < 0)
        return -1;
    openslide_read_region(os, argb, 0, 0, k, w, h);
    if (openslide_get_error(os) != NULL)
        return -1;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint32_t p = argb[(size_t)y * w + x];
            const uint8_t *q = rgb + ((size_t)y * d->tw + x) * 3;

            for (c = 0; c < 3; c++) {
                int dd = abs((int)((p >> (16 - 8 * c)) & 255) - q[c]);

                m = dd > m ? dd : m;
            }
            if ((p >> 24) != 255)
                m = 256;
        }
    return m;
}

static void
check_openslide_levels(struct verifier *v, openslide_t *os)
{
    int32_t n = openslide_get_level_count(os), k;
    size_t most = 0;
    uint32_t *argb;
    uint8_t *rgb;

    for (k = 0; k < v->nlevels; k++) {
        const struct dir *d = &v->dirs[v->level_dir[k]];

        if ((size_t)d->tw * d->th > most)
            most = (size_t)d->tw * d->th;
    }
    argb = malloc(most * 4);
    rgb = malloc(most * 3);

    if (n != v->nlevels)
        say(&v->rep, 1, "OpenSlide sees %d levels, the file has %d", n,
            v->nlevels);
    for (k = 0; k < n && k < v->nlevels && argb && rgb; k++) {
        const struct dir *d = &v->dirs[v->level_dir[k]];
        int64_t lw, lh;
        int diff;

        openslide_get_level_dimensions(os, k, &lw, &lh);
        if (lw != d->w || lh != d->h)
            say(&v->rep, 1, "OpenSlide level %d is %lldx%lld, directory "
                "%d is %ux%u", k, (long long)lw, (long long)lh, d->index,
                d->w, d->h);
        diff = openslide_tile_diff(v, os, k, argb, rgb);
        if (diff != 0)
            say(&v->rep, 1, "level %d: OpenSlide %s", k, diff < 0 ?
                "cannot read tile (0,0)" : "reads tile (0,0) with "
                "different pixels than libtiff");
    }
    free(argb);
    free(rgb);
}

static void
check_openslide_assoc(struct verifier *v, openslide_t *os)
{
    const char *const *names = openslide_get_associated_image_names(os);
    int want_thumb = v->ndirs > 1 && !v->dirs[1].tiled, got_thumb = 0, i;

    for (i = 0; names != NULL && names[i] != NULL; i++) {
        int64_t w = 0, h = 0;
        uint32_t *buf;

        got_thumb |= strcmp(names[i], "thumbnail") == 0;
        openslide_get_associated_image_dimensions(os, names[i], &w, &h);
        buf = w > 0 && h > 0 && w * h <= 8192 * 8192
            ? malloc((size_t)(w * h) * 4) : NULL;
        if (buf == NULL) {
            say(&v->rep, 1, "associated image %s: size %lldx%lld", names[i],
                (long long)w, (long long)h);
            continue;
        }
        openslide_read_associated_image(os, names[i], buf);
        free(buf);
        if (openslide_get_error(os) != NULL)
            return;
    }
    if (want_thumb && !got_thumb)
        say(&v->rep, 1, "OpenSlide finds no thumbnail in directory 1");
}

static void
check_openslide(struct verifier *v)
{
    const char *vendor = openslide_detect_vendor(v->path), *mpp, *err;
    int before = v->rep.defects;
    openslide_t *os;

    if (vendor == NULL || strcmp(vendor, "aperio") != 0) {
        say(&v->rep, 1, "OpenSlide detects vendor %s, not aperio: it "
            "reads no pixel size", vendor ? vendor : "(none)");
        if (vendor == NULL)
            return;
    }
    os = openslide_open(v->path);
    if (os == NULL || (err = openslide_get_error(os)) != NULL) {
        say(&v->rep, 1, "OpenSlide cannot open the file%s%s",
            os ? ": " : "", os ? openslide_get_error(os) : "");
        if (os != NULL)
            openslide_close(os);
        return;
    }
    mpp = openslide_get_property_value(os, OPENSLIDE_PROPERTY_NAME_MPP_X);
    if (v->mpp > 0 && (mpp == NULL ||
                       fabs(strtod(mpp, NULL) - v->mpp) > 1e-9 * v->mpp))
        say(&v->rep, 1, "OpenSlide reports mpp-x %s, the file says %g",
            mpp ? mpp : "(none)", v->mpp);
    check_openslide_levels(v, os);
    check_openslide_assoc(v, os);
    if ((err = openslide_get_error(os)) != NULL)
        say(&v->rep, 1, "OpenSlide fails reading: %s", err);
    else if (v->rep.defects == before)
        say(&v->rep, 0, "OpenSlide: vendor aperio, %d levels, mpp %s, "
            "tile pixels identical, associated images readable",
            v->nlevels, mpp ? mpp : "(none)");
    openslide_close(os);
}

int
wsi_verify(const char *path, double expect_mpp, char *report,
           size_t report_len, struct ss_err *err)
{
    struct verifier *v = calloc(1, sizeof(*v));
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    struct stat st;
    int k, rc = 0;

    if (report != NULL && report_len > 0)
        report[0] = '\0';
    if (v == NULL || opts == NULL) {
        free(v);
        TIFFOpenOptionsFree(opts);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    if (stat(path, &st) != 0) {
        rc = -errno;
        free(v);
        TIFFOpenOptionsFree(opts);
        return err_set(err, rc, "%s: %s", path, strerror(-rc));
    }
    /* libtiff would report a directory as a bad header, and would block
     * reading a FIFO. */
    if (!S_ISREG(st.st_mode)) {
        free(v);
        TIFFOpenOptionsFree(opts);
        return err_set(err, S_ISDIR(st.st_mode) ? -EISDIR : SS_EFORMAT,
                       "%s: %s, not a slide file", path,
                       S_ISDIR(st.st_mode) ? "is a directory"
                                           : "is not a regular file");
    }
    v->path = path;
    v->nthreads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    v->nthreads = v->nthreads < 1 ? 1 : v->nthreads > 8 ? 8 : v->nthreads;
    v->rep.buf = report;
    v->rep.len = report_len;
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_tiff_error, &v->rd);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_tiff_warning, &v->rd);
    /* "m": read(), not mmap(), so the whole file is not counted as the
     * process's memory once every tile has been looked at. */
    v->rd.tif = TIFFOpenExt(path, "rm", opts);
    v->rd.tj = tjInitDecompress();
    if (v->rd.tif == NULL || v->rd.tj == NULL) {
        say(&v->rep, 1, "not a readable TIFF: %s", v->rd.msg);
        rc = SS_EFORMAT;
        goto out;
    }
    read_dirs(v);
    check_layout(v);
    if (!v->dirs[0].tiled) {
        rc = SS_EFORMAT;
        goto out;
    }
    check_pixel_size(v, expect_mpp);
    for (k = 0; k < v->nlevels && rc == 0; k++)
        rc = check_level_tiles(v, k);
    if (rc < 0)
        say(&v->rep, 1, "cannot read level %d: %s", k - 1,
            v->rd.msg[0] ? v->rd.msg : strerror(-rc));
    check_openslide(v);
out:
    if (v->rep.defects > 0)
        rc = err_set(err, SS_EFORMAT, "%s: %d defect%s: %s", path,
                     v->rep.defects, v->rep.defects > 1 ? "s" : "",
                     v->rep.first);
    if (v->rd.tif != NULL)
        TIFFClose(v->rd.tif);
    if (v->rd.tj != NULL)
        tjDestroy(v->rd.tj);
    TIFFOpenOptionsFree(opts);
    free(v);
    return rc;
}
