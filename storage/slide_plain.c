/* SPDX-License-Identifier: MIT */
/*
 * Plain PNG and JPEG files as one-level slides.  Neither format can be
 * decoded by region, so the image is decoded once, when it is opened, and
 * held in memory; transparent PNG pixels are composited over the
 * background then.  JPEG colour comes from the stream (TurboJPEG).
 *
 * LIMIT: a plain PNG or JPEG is held whole in memory (3 bytes a pixel);
 * images over 2^28 pixels (16384², 768 MB) are refused with that reason.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAIN_MAX_PX ((uint64_t)1 << 28)

static int
plain_read(struct slide *s, int level, int64_t x0, int64_t y0, int64_t lx,
           int64_t ly, int w, int h, uint8_t *rgb, struct ss_err *err)
{
    const struct img *im = s->priv;
    int64_t ax = lx > 0 ? lx : 0, ex = lx + w < im->w ? lx + w : im->w;
    int64_t y;

    if (ax >= ex)
        return 0;
    for (y = ly > 0 ? ly : 0; y < ly + h && y < im->h; y++)
        memcpy(rgb + ((size_t)(y - ly) * w + (size_t)(ax - lx)) * 3,
               img_u8(im, (int)ax, (int)y), (size_t)(ex - ax) * 3);
    return 0;
}

static void
plain_close(struct slide *s)
{
    img_free(s->priv);
    s->priv = NULL;
}

static const struct slide__ops plain_ops = {
    .read = plain_read,
    .close = plain_close,
};

/* RGBA through libpng's simplified API, composited over the background. */
static int
png_load(struct slide *s, struct img **out, struct ss_err *err)
{
    png_image p;
    uint8_t *rgba;
    struct img *im;
    size_t i, n;
    int c;

    memset(&p, 0, sizeof(p));
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, s->path))
        return err_set(err, SS_EFORMAT, "%s: not a readable PNG: %s",
                       s->path, p.message);
    n = (size_t)p.width * p.height;
    if ((uint64_t)p.width * p.height > PLAIN_MAX_PX) {
        png_image_free(&p);
        return err_set(err, -EFBIG, "%s: a %ux%u PNG is too large to hold "
                       "in memory; convert it to a tiled TIFF", s->path,
                       p.width, p.height);
    }
    p.format = PNG_FORMAT_RGBA;
    rgba = malloc(n * 4);
    im = img_new((int)p.width, (int)p.height, 3, IMG_U8);
    if (rgba == NULL || im == NULL) {
        png_image_free(&p);
        free(rgba);
        img_free(im);
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    }
    if (!png_image_finish_read(&p, NULL, rgba, 0, NULL)) {
        free(rgba);
        img_free(im);
        return err_set(err, SS_EFORMAT, "%s: corrupt PNG: %s", s->path,
                       p.message);
    }
    for (i = 0; i < n; i++)
        for (c = 0; c < 3; c++) {
            unsigned a = rgba[4 * i + 3];

            ((uint8_t *)im->data)[3 * i + c] =
                slide__over(rgba[4 * i + c] * a / 255, a, s->bg[c]);
        }
    free(rgba);
    *out = im;
    return 0;
}

int
slide__plain_open(struct slide *s, int is_png, struct ss_err *err)
{
    struct img *im = NULL;
    int rc;

    s->ops = &plain_ops;
    rc = is_png ? png_load(s, &im, err) : img_jpeg_read(s->path, &im, err);
    if (rc < 0)
        return rc;
    s->priv = im;
    snprintf(s->format, sizeof(s->format), "%s", is_png ? "png" : "jpeg");
    s->nlevels = 1;
    s->level[0].w = im->w;
    s->level[0].h = im->h;
    s->level[0].ds = 1;
    snprintf(s->mpp_why, sizeof(s->mpp_why), "a plain %s image",
             is_png ? "PNG" : "JPEG");
    return 0;
}
