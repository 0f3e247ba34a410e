/* SPDX-License-Identifier: MIT */
/*
 * Slides as the analysis sees them: a level-0 raster with a pixel size,
 * read by rectangles resampled to any resolution.  OpenSlide reads
 * scanner formats and our own pyramids; files OpenSlide does not
 * recognise are tried as plain PNG, JPEG or TIFF images held in memory.
 * Every failure names the file and the cause, since a worker error ends
 * up on a lab operator's screen.
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct an_slide {
    openslide_t *os;                /* NULL for a plain image */
    struct img *plain;              /* the whole image, plain files only */
    char path[4096];
    int64_t w, h;
    double mpp;
};

int
an_stain_parse(const char *s, enum an_stain *out)
{
    if (strcasecmp(s, "HE") == 0 || strcasecmp(s, "H&E") == 0)
        *out = AN_STAIN_HE;
    else if (strcasecmp(s, "KI67") == 0 || strcasecmp(s, "Ki-67") == 0)
        *out = AN_STAIN_KI67;
    else if (strcasecmp(s, "CK") == 0)
        *out = AN_STAIN_CK;
    else
        return -EINVAL;
    return 0;
}

const char *
an_stain_name(enum an_stain s)
{
    return s == AN_STAIN_KI67 ? "KI67" : s == AN_STAIN_CK ? "CK" : "HE";
}

static double
prop_double(openslide_t *os, const char *name)
{
    const char *v = openslide_get_property_value(os, name);
    char *end;
    double d;

    if (v == NULL)
        return 0;
    d = strtod(v, &end);
    return end != v && d > 0 && isfinite(d) ? d : 0;
}

static int
open_openslide(struct an_slide *s, struct ss_err *err)
{
    const char *e;

    s->os = openslide_open(s->path);
    if (s->os == NULL)
        return err_set(err, SS_EFORMAT, "%s: cannot open slide", s->path);
    e = openslide_get_error(s->os);
    if (e != NULL)
        return err_set(err, SS_EFORMAT, "%s: %s", s->path, e);
    openslide_get_level0_dimensions(s->os, &s->w, &s->h);
    if (s->w <= 0 || s->h <= 0)
        return err_set(err, SS_EFORMAT, "%s: slide has no pixels", s->path);
    s->mpp = prop_double(s->os, OPENSLIDE_PROPERTY_NAME_MPP_X);
    return 0;
}

static int
open_plain(struct an_slide *s, struct ss_err *err)
{
    struct ss_err e2;
    int rc = img_read_any(s->path, &s->plain, &e2);

    if (rc == SS_EFORMAT && strstr(e2.msg, "not a PNG, JPEG or TIFF"))
        return err_set(err, SS_EFORMAT, "%s: not a slide: neither OpenSlide "
                       "nor the PNG/JPEG/TIFF readers recognise it",
                       s->path);
    if (rc < 0) {
        if (err != NULL)
            *err = e2;
        return rc;
    }
    s->w = s->plain->w;
    s->h = s->plain->h;
    return 0;
}

int
an_slide_open(const char *path, double mpp_override, struct an_slide **out,
              struct ss_err *err)
{
    struct an_slide *s;
    struct stat st;
    int rc;

    *out = NULL;
    if (stat(path, &st) != 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, -EINVAL, "%s: not a regular file", path);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    snprintf(s->path, sizeof(s->path), "%s", path);
    if (openslide_detect_vendor(path) != NULL)
        rc = open_openslide(s, err);
    else
        rc = open_plain(s, err);
    if (rc == 0 && mpp_override > 0)
        s->mpp = mpp_override;
    if (rc == 0 && !(s->mpp > 0))
        rc = err_set(err, SS_EFORMAT, "%s: the file states no pixel size "
                     "(µm per pixel); give it with --mpp", path);
    if (rc < 0) {
        an_slide_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
an_slide_close(struct an_slide *s)
{
    if (s == NULL)
        return;
    if (s->os != NULL)
        openslide_close(s->os);
    img_free(s->plain);
    free(s);
}

void
an_slide_size(const struct an_slide *s, int64_t *w, int64_t *h)
{
    *w = s->w;
    *h = s->h;
}

double
an_slide_mpp(const struct an_slide *s)
{
    return s->mpp;
}

const char *
an_slide_path(const struct an_slide *s)
{
    return s->path;
}

/* ARGB (premultiplied, native endian) to RGB over a white background. */
static void
argb_to_rgb(const uint32_t *src, size_t n, uint8_t *dst)
{
    size_t i;

    for (i = 0; i < n; i++) {
        uint32_t p = src[i];
        unsigned a = p >> 24, k;
        unsigned c[3] = { (p >> 16) & 0xff, (p >> 8) & 0xff, p & 0xff };
        for (k = 0; k < 3; k++)
            dst[i * 3 + k] = (uint8_t)(a == 255 ? c[k]
                                       : c[k] + (255 - a));
    }
}

/* The level whose downsample is the largest not above `want`. */
static int
pick_level(openslide_t *os, double want)
{
    int32_t n = openslide_get_level_count(os), i, best = 0;

    for (i = 1; i < n; i++) {
        double d = openslide_get_level_downsample(os, i);
        if (d <= want * 1.0001 && d > openslide_get_level_downsample(os,
                                                                    best))
            best = i;
    }
    return best;
}

static int
read_os(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0, int64_t h0,
        struct img **out, double want_ds, struct ss_err *err)
{
    int level = pick_level(s->os, want_ds);
    double ds = openslide_get_level_downsample(s->os, level);
    int64_t lw = (int64_t)ceil(w0 / ds), lh = (int64_t)ceil(h0 / ds);
    uint32_t *buf;
    struct img *im;
    const char *e;

    if (lw * lh > ((int64_t)1 << 28))
        return err_set(err, -EFBIG, "%s: region %lldx%lld too large to "
                       "read at once", s->path, (long long)lw,
                       (long long)lh);
    buf = malloc((size_t)lw * lh * 4);
    im = img_new((int)lw, (int)lh, 3, IMG_U8);
    if (buf == NULL || im == NULL) {
        free(buf);
        img_free(im);
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    }
    openslide_read_region(s->os, buf, x0, y0, level, lw, lh);
    e = openslide_get_error(s->os);
    if (e != NULL) {
        free(buf);
        img_free(im);
        return err_set(err, SS_EFORMAT, "%s: reading pixels at (%lld, %lld) "
                       "level %d: %s", s->path, (long long)x0,
                       (long long)y0, level, e);
    }
    argb_to_rgb(buf, (size_t)lw * lh, im->data);
    free(buf);
    *out = im;
    return 0;
}

static struct img *
read_plain(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0,
           int64_t h0)
{
    struct img *im = img_crop(s->plain, (int)x0, (int)y0, (int)w0, (int)h0);
    int x, y;

    if (im == NULL)
        return NULL;
    for (y = 0; y < im->h; y++)
        for (x = 0; x < im->w; x++)
            if (x0 + x < 0 || y0 + y < 0 || x0 + x >= s->w ||
                y0 + y >= s->h)
                memset(img_u8(im, x, y), 255, 3);
    return im;
}

int
an_slide_read(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0,
              int64_t h0, int out_w, int out_h, struct img **out,
              struct ss_err *err)
{
    struct img *raw = NULL, *res;
    int rc;

    *out = NULL;
    if (w0 <= 0 || h0 <= 0 || out_w <= 0 || out_h <= 0)
        return err_set(err, -EINVAL, "%s: empty region", s->path);
    if (s->os != NULL) {
        rc = read_os(s, x0, y0, w0, h0, &raw,
                     fmin((double)w0 / out_w, (double)h0 / out_h), err);
        if (rc < 0)
            return rc;
    } else {
        raw = read_plain(s, x0, y0, w0, h0);
        if (raw == NULL)
            return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    }
    res = an__resample(raw, out_w, out_h);
    img_free(raw);
    if (res == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    *out = res;
    return 0;
}
