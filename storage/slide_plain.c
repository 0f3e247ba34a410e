/* SPDX-License-Identifier: MIT */
/*
 * Plain PNG and JPEG files as one-level slides.  Neither format can be
 * decoded by region, so the image is decoded once, when it is opened, and
 * held in memory (a transparent PNG with its alpha, composited over the
 * background when read).  JPEG colour comes from the stream (TurboJPEG).
 *
 * A JPEG that decodes only with libjpeg warnings (corrupt data, filled
 * with grey) is refused, as damaged tiles are in the other back ends.
 *
 * LIMIT: a plain PNG or JPEG is held whole in memory (3 bytes a pixel, 4
 * with alpha); images over 2^28 pixels (16384²) are refused with that
 * reason.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#define PLAIN_MAX_PX ((uint64_t)1 << 28)

struct plain {
    struct img *rgb;                /* premultiplied by alpha */
    uint8_t *alpha;                 /* one byte a pixel; NULL: opaque */
};

static int
plain_read(struct slide *s, int level, int64_t x0, int64_t y0, int64_t lx,
           int64_t ly, int w, int h, uint8_t *rgb, struct ss_err *err)
{
    const struct plain *p = s->priv;
    const struct img *im = p->rgb;
    int64_t ax = lx > 0 ? lx : 0, ex = lx + w < im->w ? lx + w : im->w;
    int64_t x, y;

    if (ax >= ex)
        return 0;
    for (y = ly > 0 ? ly : 0; y < ly + h && y < im->h; y++) {
        uint8_t *o = rgb + ((size_t)(y - ly) * w + (size_t)(ax - lx)) * 3;
        const uint8_t *a;

        if (p->alpha == NULL) {
            memcpy(o, img_u8(im, (int)ax, (int)y), (size_t)(ex - ax) * 3);
            continue;
        }
        a = p->alpha + (size_t)y * im->w;
        for (x = ax; x < ex; x++, o += 3) {
            const uint8_t *c = img_u8(im, (int)x, (int)y);
            int k;

            for (k = 0; k < 3; k++)
                o[k] = slide__over(c[k], a[x], s->bg[k]);
        }
    }
    return 0;
}

static void
plain_close(struct slide *s)
{
    struct plain *p = s->priv;

    if (p != NULL) {
        img_free(p->rgb);
        free(p->alpha);
        free(p);
    }
    s->priv = NULL;
}

static const struct slide__ops plain_ops = {
    .read = plain_read,
    .close = plain_close,
};

/* RGBA through libpng's simplified API; colour premultiplied, alpha kept
 * apart (dropped when every pixel is opaque). */
static int
png_load(struct slide *s, struct plain *pl, struct ss_err *err)
{
    png_image p;
    uint8_t *rgba;
    size_t i, n, opaque = 0;
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
    pl->rgb = img_new((int)p.width, (int)p.height, 3, IMG_U8);
    pl->alpha = malloc(n);
    if (rgba == NULL || pl->rgb == NULL || pl->alpha == NULL) {
        png_image_free(&p);
        free(rgba);
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    }
    if (!png_image_finish_read(&p, NULL, rgba, 0, NULL)) {
        free(rgba);
        return err_set(err, SS_EFORMAT, "%s: corrupt PNG: %s", s->path,
                       p.message);
    }
    for (i = 0; i < n; i++) {
        unsigned a = rgba[4 * i + 3];

        for (c = 0; c < 3; c++)
            ((uint8_t *)pl->rgb->data)[3 * i + c] =
                (uint8_t)((rgba[4 * i + c] * a + 127) / 255);
        pl->alpha[i] = (uint8_t)a;
        opaque += a == 255;
    }
    free(rgba);
    if (opaque == n) {
        free(pl->alpha);
        pl->alpha = NULL;
    }
    return 0;
}

/* The whole JPEG through TurboJPEG.  Unlike img_jpeg_read(), a libjpeg
 * warning ("Corrupt JPEG data: ...") fails the open: libjpeg has then
 * filled part of the image with grey, which must not pass as pixels. */
static int
jpeg_load(struct slide *s, struct plain *p, struct ss_err *err)
{
    FILE *f = fopen(s->path, "rb");
    uint8_t *buf = NULL;
    tjhandle tj = NULL;
    long n = -1;
    int w, h, ss, cs, rc = 0;

    if (f == NULL)
        return err_set(err, -errno, "%s: %s", s->path, strerror(errno));
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        rc = err_set(err, n > 0 ? -EIO : SS_EFORMAT, "%s: cannot read "
                     "it", s->path);
    fclose(f);
    if (rc == 0 && (tj = tjInitDecompress()) == NULL)
        rc = err_set(err, -ENOMEM, "%s: TurboJPEG: %s", s->path,
                     tjGetErrorStr2(NULL));
    if (rc == 0 && tjDecompressHeader3(tj, buf, (unsigned long)n, &w, &h,
                                       &ss, &cs) != 0)
        rc = err_set(err, SS_EFORMAT, "%s: not a JPEG stream: %s", s->path,
                     tjGetErrorStr2(tj));
    if (rc == 0 && (uint64_t)w * h > PLAIN_MAX_PX)
        rc = err_set(err, -EFBIG, "%s: %dx%d pixels is too large for a "
                     "plain image", s->path, w, h);
    if (rc == 0 && (p->rgb = img_new(w, h, 3, IMG_U8)) == NULL)
        rc = err_set(err, -ENOMEM, "%s: out of memory", s->path);
    if (rc == 0 && tjDecompress2(tj, buf, (unsigned long)n, p->rgb->data,
                                 w, 0, h, TJPF_RGB, TJFLAG_ACCURATEDCT) != 0)
        rc = err_set(err, SS_EFORMAT, "%s: corrupt JPEG: %s", s->path,
                     tjGetErrorStr2(tj));
    if (tj != NULL)
        tjDestroy(tj);
    free(buf);
    return rc;
}

int
slide__plain_open(struct slide *s, int is_png, struct ss_err *err)
{
    struct plain *p = calloc(1, sizeof(*p));
    int rc;

    if (p == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", s->path);
    s->ops = &plain_ops;
    s->priv = p;
    rc = is_png ? png_load(s, p, err) : jpeg_load(s, p, err);
    if (rc < 0)
        return rc;
    snprintf(s->format, sizeof(s->format), "%s", is_png ? "png" : "jpeg");
    s->nlevels = 1;
    s->level[0].w = p->rgb->w;
    s->level[0].h = p->rgb->h;
    s->level[0].ds = 1;
    snprintf(s->mpp_why, sizeof(s->mpp_why), "a plain %s image",
             is_png ? "PNG" : "JPEG");
    return 0;
}
