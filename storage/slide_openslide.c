/* SPDX-License-Identifier: MIT */
/*
 * The OpenSlide back end: every vendor format OpenSlide recognises,
 * including slidescan's own Aperio-layout pyramids.  OpenSlide returns
 * premultiplied ARGB; pixels are composited over the slide's background,
 * so transparent areas (outside a scanned region, beyond the edge) take
 * that colour.  OpenSlide's errors are sticky: after one failed read the
 * handle stays failed, and every later read reports the same cause.
 * OpenSlide 3.4.1 turns libjpeg's warnings ("Corrupt JPEG data: ...")
 * into errors, so a damaged tile fails the read instead of coming back
 * grey; the error is checked after every read_region.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
argb_over(const uint32_t *argb, size_t n, const uint8_t bg[3], uint8_t *rgb)
{
    size_t i;
    int c;

    for (i = 0; i < n; i++) {
        uint32_t p = argb[i];
        unsigned a = p >> 24;

        for (c = 0; c < 3; c++) {
            unsigned v = (p >> (16 - 8 * c)) & 0xff;

            rgb[3 * i + c] = a == 255 ? (uint8_t)v : slide__over(v, a, bg[c]);
        }
    }
}

static int
os_read(struct slide *s, int level, int64_t x0, int64_t y0, int64_t lx,
        int64_t ly, int w, int h, uint8_t *rgb, struct ss_err *err)
{
    openslide_t *os = s->priv;
    uint32_t *argb = malloc((size_t)w * h * 4);
    const char *e;

    if (argb == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory for a %dx%d region",
                       s->path, w, h);
    openslide_read_region(os, argb, x0, y0, level, w, h);
    e = openslide_get_error(os);
    if (e != NULL) {
        free(argb);
        return err_set(err, SS_EFORMAT, "%s: reading pixels at (%lld, %lld) "
                       "level %d (a %dx%d region): %s", s->path,
                       (long long)x0, (long long)y0, level, w, h, e);
    }
    argb_over(argb, (size_t)w * h, s->bg, rgb);
    free(argb);
    return 0;
}

static int
os_associated(struct slide *s, const char *name, struct img **out,
              struct ss_err *err)
{
    openslide_t *os = s->priv;
    int64_t w = -1, h = -1;
    uint32_t *argb;
    struct img *im;
    const char *e;

    openslide_get_associated_image_dimensions(os, name, &w, &h);
    if (w <= 0 || h <= 0)
        return 0;
    if (w * h > ((int64_t)1 << 26))
        return err_set(err, -EFBIG, "%s: %s image %lldx%lld is too large",
                       s->path, name, (long long)w, (long long)h);
    argb = malloc((size_t)(w * h) * 4);
    im = img_new((int)w, (int)h, 3, IMG_U8);
    if (argb == NULL || im == NULL) {
        free(argb);
        img_free(im);
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    }
    openslide_read_associated_image(os, name, argb);
    e = openslide_get_error(os);
    if (e != NULL) {
        free(argb);
        img_free(im);
        return err_set(err, SS_EFORMAT, "%s: reading the %s image: %s",
                       s->path, name, e);
    }
    argb_over(argb, (size_t)(w * h), s->bg, im->data);
    free(argb);
    *out = im;
    return 0;
}

static void
os_close(struct slide *s)
{
    if (s->priv != NULL)
        openslide_close(s->priv);
    s->priv = NULL;
}

static const struct slide__ops os_ops = {
    .read = os_read,
    .associated = os_associated,
    .close = os_close,
};

/* openslide.mpp-x when present and plausible. */
static void
os_mpp(struct slide *s, openslide_t *os)
{
    const char *v = openslide_get_property_value(os,
                                                 OPENSLIDE_PROPERTY_NAME_MPP_X);
    char *end;
    double d;

    if (v == NULL)
        return;
    d = strtod(v, &end);
    if (end != v && isfinite(d) && d >= SLIDE_MPP_MIN && d <= SLIDE_MPP_MAX) {
        s->mpp = d;
        s->mpp_from = SLIDE_MPP_OPENSLIDE;
        return;
    }
    snprintf(s->mpp_why, sizeof(s->mpp_why), "openslide.mpp-x '%s' is not "
             "in %g..%g µm/px", v, SLIDE_MPP_MIN, SLIDE_MPP_MAX);
}

/* The stain an Aperio description declares ("|Stain = KI67|"), which
 * OpenSlide lists as the property aperio.Stain. */
static void
os_stain(struct slide *s, openslide_t *os)
{
    const char *v = openslide_get_property_value(os, "aperio.Stain");

    if (v != NULL)
        snprintf(s->stain, sizeof(s->stain), "%s", v);
}

int
slide__os_open(struct slide *s, const char *vendor, struct ss_err *err)
{
    openslide_t *os = openslide_open(s->path);
    const char *e;
    int32_t n, l;

    if (os == NULL)
        return err_set(err, SS_EFORMAT, "%s: OpenSlide (%s) cannot open it",
                       s->path, vendor);
    s->ops = &os_ops;
    s->priv = os;
    e = openslide_get_error(os);
    if (e != NULL)
        return err_set(err, SS_EFORMAT, "%s: %s", s->path, e);
    snprintf(s->format, sizeof(s->format), "%s", vendor);
    n = openslide_get_level_count(os);
    if (n < 1 || n > SLIDE_MAX_LEVELS)
        return err_set(err, SS_EFORMAT, "%s: %d levels", s->path, n);
    s->nlevels = n;
    for (l = 0; l < n; l++) {
        openslide_get_level_dimensions(os, l, &s->level[l].w,
                                       &s->level[l].h);
        s->level[l].ds = openslide_get_level_downsample(os, l);
        if (s->level[l].w <= 0 || s->level[l].h <= 0 ||
            !(s->level[l].ds >= 1))
            return err_set(err, SS_EFORMAT, "%s: level %d has no pixels",
                           s->path, l);
    }
    os_mpp(s, os);
    os_stain(s, os);
    return 0;
}
