/* SPDX-License-Identifier: MIT */
/*
 * File slides: anything OpenSlide opens (its levels become the source's
 * lattices, µm per pixel from the file or stated), or a plain PNG, JPEG or
 * TIFF held in memory at a stated pixel size.  A slide is checked when it
 * is placed: a region is decoded then, so a file whose tiles do not decode
 * fails at load with OpenSlide's reason instead of in the middle of a
 * scan.  The colour of the slide's own blank glass is estimated from its
 * smallest level and used for the glass around the image.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fileslide {
    openslide_t *os;                /* NULL for a plain image */
    struct img *im;                 /* plain image */
};

/* Un-premultiplies one OpenSlide ARGB pixel; transparent is glass. */
static void
argb_to_rgb(uint32_t v, const double glass[3], uint8_t *rgb)
{
    unsigned a = v >> 24, c;

    if (a == 0) {
        for (c = 0; c < 3; c++)
            rgb[c] = (uint8_t)lrint(glass[c] * 255);
        return;
    }
    for (c = 0; c < 3; c++) {
        unsigned x = (v >> (16 - 8 * c)) & 0xff;

        rgb[c] = (uint8_t)(a == 255 ? x : (x * 255 + a / 2) / a);
    }
}

static int
os_error(openslide_t *os, const char *path, const char *what,
         struct ss_err *err)
{
    const char *e = openslide_get_error(os);

    return err_set(err, SS_EFORMAT, "%s: %s: %s", path, what,
                   e != NULL ? e : "unknown OpenSlide error");
}

/* Always the whole tile: a file's tiles are read whole anyway. */
static int
file_tile(struct sim__source *src, int level, double pitch, int tx, int ty,
          unsigned blocks, uint8_t *rgb, struct ss_err *err)
{
    struct fileslide *fs = src->priv;
    uint32_t *buf;
    size_t i;
    int y;

    if (fs->os == NULL) {
        for (y = 0; y < SIM_TILE; y++) {
            int64_t sy = (int64_t)ty * SIM_TILE + y, sx = (int64_t)tx *
                                                            SIM_TILE;
            int64_t n = fs->im->w - sx;

            if (sy >= fs->im->h || n <= 0)
                continue;
            if (n > SIM_TILE)
                n = SIM_TILE;
            memcpy(rgb + (size_t)y * SIM_TILE * 3, img_u8(fs->im, (int)sx,
                                                          (int)sy),
                   (size_t)n * 3);
        }
        return (int)SIM_BLOCKS_ALL;
    }
    buf = malloc((size_t)SIM_TILE * SIM_TILE * 4);
    if (buf == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", src->desc);
    openslide_read_region(fs->os, buf,
                          (int64_t)llround((double)tx * SIM_TILE *
                                           pitch / src->mpp),
                          (int64_t)llround((double)ty * SIM_TILE *
                                           pitch / src->mpp),
                          level, SIM_TILE, SIM_TILE);
    if (openslide_get_error(fs->os) != NULL) {
        free(buf);
        return os_error(fs->os, src->desc, "reading pixels", err);
    }
    for (i = 0; i < (size_t)SIM_TILE * SIM_TILE; i++)
        argb_to_rgb(buf[i], src->glass, rgb + i * 3);
    free(buf);
    return (int)SIM_BLOCKS_ALL;
}

static void
file_destroy(struct sim__source *src)
{
    struct fileslide *fs = src->priv;

    if (fs == NULL)
        return;
    if (fs->os != NULL)
        openslide_close(fs->os);
    img_free(fs->im);
    free(fs);
}

static const struct sim__source_ops file_ops = {
    .tile = file_tile,
    .destroy = file_destroy,
};

/* Mean colour of the brightest 2 % of pixels: the slide's blank glass. */
static void
estimate_glass(const uint8_t *rgb, size_t n, double glass[3])
{
    size_t hist[766] = { 0 }, want = n / 50 + 1, got = 0, i;
    double sum[3] = { 0, 0, 0 };
    int thr = 765, c;

    for (i = 0; i < n; i++)
        hist[rgb[i * 3] + rgb[i * 3 + 1] + rgb[i * 3 + 2]]++;
    while (thr > 0 && got + hist[thr] < want)
        got += hist[thr--];
    got = 0;
    for (i = 0; i < n; i++) {
        const uint8_t *p = rgb + i * 3;

        if (p[0] + p[1] + p[2] < thr)
            continue;
        for (c = 0; c < 3; c++)
            sum[c] += p[c];
        got++;
    }
    for (c = 0; c < 3; c++)
        glass[c] = got > 0 ? sum[c] / got / 255 : 0.94;
    if (glass[0] + glass[1] + glass[2] < 3 * 0.6)
        glass[0] = glass[1] = glass[2] = 0.94;
}

/* Reads the smallest level whole (bounded) to check decoding and find the
 * glass colour. */
static int
probe_os(struct sim__source *src, struct fileslide *fs, struct ss_err *err)
{
    int l = src->nlevels - 1;
    int64_t w = src->level_w[l], h = src->level_h[l];
    double ds = src->pitch_um[l] / src->mpp;
    uint32_t *buf;
    uint8_t *rgb;
    size_t n, i;
    double white[3] = { 1, 1, 1 };

    while (w * h > 4096 * 4096) {
        w /= 2;
        h /= 2;
    }
    n = (size_t)w * h;
    buf = malloc(n * 4);
    rgb = malloc(n * 3);
    if (buf == NULL || rgb == NULL) {
        free(buf);
        free(rgb);
        return err_set(err, -ENOMEM, "%s: out of memory", src->desc);
    }
    openslide_read_region(fs->os, buf, (int64_t)((src->level_w[l] - w) / 2 *
                                                 ds),
                          (int64_t)((src->level_h[l] - h) / 2 * ds), l, w,
                          h);
    if (openslide_get_error(fs->os) != NULL) {
        free(buf);
        free(rgb);
        return os_error(fs->os, src->desc, "reading pixels", err);
    }
    for (i = 0; i < n; i++)
        argb_to_rgb(buf[i], white, rgb + i * 3);
    estimate_glass(rgb, n, src->glass);
    free(buf);
    free(rgb);
    return 0;
}

static int
open_os(struct sim__source *src, struct fileslide *fs, double mpp,
        struct ss_err *err)
{
    const char *v;
    int l;

    fs->os = openslide_open(src->desc);
    if (fs->os == NULL)
        return err_set(err, SS_EFORMAT, "%s: OpenSlide cannot open it",
                       src->desc);
    if (openslide_get_error(fs->os) != NULL)
        return os_error(fs->os, src->desc, "opening", err);
    if (mpp <= 0) {
        v = openslide_get_property_value(fs->os, OPENSLIDE_PROPERTY_NAME_MPP_X);
        mpp = v != NULL ? strtod(v, NULL) : 0;
    }
    if (!(mpp > 0))
        return err_set(err, SS_EFORMAT, "%s: the file states no pixel size; "
                       "give it as %s@MPP", src->desc, src->desc);
    src->mpp = mpp;
    src->nlevels = openslide_get_level_count(fs->os);
    if (src->nlevels < 1 || src->nlevels > 32)
        return err_set(err, SS_EFORMAT, "%s: %d levels", src->desc,
                       src->nlevels);
    for (l = 0; l < src->nlevels; l++) {
        openslide_get_level_dimensions(fs->os, l, &src->level_w[l],
                                       &src->level_h[l]);
        src->pitch_um[l] = mpp * openslide_get_level_downsample(fs->os, l);
    }
    src->w_um = src->level_w[0] * mpp;
    src->h_um = src->level_h[0] * mpp;
    return probe_os(src, fs, err);
}

/* "PNG", "JPEG", "TIFF" from the first bytes, or NULL. */
static const char *
sniff(const char *path)
{
    unsigned char b[8] = { 0 };
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL)
        return NULL;
    n = fread(b, 1, sizeof(b), f);
    fclose(f);
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "PNG";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "JPEG";
    if (n >= 4 && (memcmp(b, "II*", 3) == 0 || memcmp(b, "MM\0*", 4) == 0 ||
                   memcmp(b, "II+", 3) == 0 || memcmp(b, "MM\0+", 4) == 0))
        return "TIFF";
    return NULL;
}

/* LIMIT: a plain image is decoded whole into memory; very large plain
 * images need an OpenSlide format instead. */
static int
open_plain(struct sim__source *src, struct fileslide *fs, double mpp,
           struct ss_err *err)
{
    const char *kind = sniff(src->desc);
    int rc;

    if (mpp <= 0 && kind == NULL)
        return err_set(err, SS_EFORMAT, "%s: not a slide: OpenSlide does "
                       "not recognise it and it is not a PNG, JPEG or TIFF "
                       "image", src->desc);
    if (mpp <= 0)
        return err_set(err, SS_EFORMAT, "%s: a plain %s image that states "
                       "no pixel size; give it as %s@MPP", src->desc, kind,
                       src->desc);
    rc = img_read_any(src->desc, &fs->im, err);
    if (rc < 0)
        return rc;
    src->mpp = mpp;
    src->nlevels = 1;
    src->level_w[0] = fs->im->w;
    src->level_h[0] = fs->im->h;
    src->pitch_um[0] = mpp;
    src->w_um = fs->im->w * mpp;
    src->h_um = fs->im->h * mpp;
    estimate_glass(fs->im->data, (size_t)fs->im->w * fs->im->h, src->glass);
    return 0;
}

static void
default_id(struct sim__source *src)
{
    const char *base = strrchr(src->desc, '/');
    char *dot;

    snprintf(src->slide_id, sizeof(src->slide_id), "%s",
             base != NULL ? base + 1 : src->desc);
    dot = strrchr(src->slide_id, '.');
    if (dot != NULL && dot != src->slide_id)
        *dot = '\0';
}

int
sim__file_open(const char *path, double mpp, const struct sim_config *c,
               struct sim__source **out, struct ss_err *err)
{
    struct sim__source *src = calloc(1, sizeof(*src));
    struct fileslide *fs = calloc(1, sizeof(*fs));
    int rc;

    if (src == NULL || fs == NULL) {
        free(src);
        free(fs);
        return err_set(err, -ENOMEM, "slide: out of memory");
    }
    src->ops = &file_ops;
    src->priv = fs;
    snprintf(src->desc, sizeof(src->desc), "%s", path);
    default_id(src);
    if (access(path, R_OK) != 0)
        rc = err_set(err, -errno, "%s: %s", path, strerror(errno));
    else if (openslide_detect_vendor(path) != NULL)
        rc = open_os(src, fs, mpp, err);
    else
        rc = open_plain(src, fs, mpp, err);
    if (rc < 0) {
        sim__source_free(src);
        return rc;
    }
    *out = src;
    return 0;
}
