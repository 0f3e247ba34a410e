/* SPDX-License-Identifier: MIT */
/* Image rasters and their PNG, JPEG and TIFF file forms. */
#include "common/img.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "storage/slide.h"

struct img *
img_new(int w, int h, int c, enum img_type type)
{
    struct img *im;

    if (w <= 0 || h <= 0 || (c != 1 && c != 3 && c != 4))
        return NULL;
    im = calloc(1, sizeof(*im));
    if (im == NULL)
        return NULL;
    im->w = w;
    im->h = h;
    im->c = c;
    im->type = type;
    im->data = calloc((size_t)w * h * c, (size_t)type);
    if (im->data == NULL) {
        free(im);
        return NULL;
    }
    return im;
}

void
img_free(struct img *im)
{
    if (im == NULL)
        return;
    free(im->data);
    free(im);
}

size_t
img_bytes(const struct img *im)
{
    return (size_t)im->w * im->h * im->c * im->type;
}

struct img *
img_dup(const struct img *im)
{
    struct img *d = img_new(im->w, im->h, im->c, im->type);

    if (d != NULL)
        memcpy(d->data, im->data, img_bytes(im));
    return d;
}

struct img *
img_crop(const struct img *im, int x, int y, int w, int h)
{
    struct img *d = img_new(w, h, im->c, im->type);
    size_t px = (size_t)im->c * im->type;
    int x0, x1, row;

    if (d == NULL)
        return NULL;
    x0 = x < 0 ? 0 : x;
    x1 = x + w > im->w ? im->w : x + w;
    if (x1 <= x0)
        return d;
    for (row = 0; row < h; row++) {
        int sy = y + row;
        if (sy < 0 || sy >= im->h)
            continue;
        memcpy((char *)d->data + ((size_t)row * w + (x0 - x)) * px,
               (char *)im->data + ((size_t)sy * im->w + x0) * px,
               (size_t)(x1 - x0) * px);
    }
    return d;
}

struct img *
img_to_f32(const struct img *im)
{
    struct img *d = img_new(im->w, im->h, im->c, IMG_F32);
    size_t i, n = (size_t)im->w * im->h * im->c;

    if (d == NULL)
        return NULL;
    if (im->type == IMG_F32) {
        memcpy(d->data, im->data, n * sizeof(float));
        return d;
    }
    for (i = 0; i < n; i++)
        ((float *)d->data)[i] = ((uint8_t *)im->data)[i];
    return d;
}

struct img *
img_to_u8(const struct img *im)
{
    struct img *d = img_new(im->w, im->h, im->c, IMG_U8);
    size_t i, n = (size_t)im->w * im->h * im->c;

    if (d == NULL)
        return NULL;
    if (im->type == IMG_U8) {
        memcpy(d->data, im->data, n);
        return d;
    }
    for (i = 0; i < n; i++) {
        float v = ((float *)im->data)[i] + 0.5f;
        ((uint8_t *)d->data)[i] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
    }
    return d;
}

/* Writes the whole of buf to path (created or truncated).  On failure the
 * partial file is removed and the message names path and errno's cause
 * ("No space left on device", "File too large"), which libpng's own
 * "Write Error" does not. */
static int
write_whole(const char *path, const void *buf, size_t len,
            struct ss_err *err)
{
    const char *p = buf;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int e = 0;

    if (fd < 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    while (len > 0 && e == 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno != EINTR)
            e = errno;
        else if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    if (close(fd) != 0 && e == 0)
        e = errno;
    if (e == 0)
        return 0;
    unlink(path);
    return err_set(err, -e, "%s: cannot write PNG: %s", path, strerror(e));
}

/* The PNG stream of src in memory: encoding cannot fail on I/O, so a
 * failure to store it is reported by write_whole with its cause. */
static int
png_encode(png_image *p, const struct img *src, void **buf, size_t *len)
{
    png_alloc_size_t n = PNG_IMAGE_PNG_SIZE_MAX(*p);
    void *b = malloc(n);

    if (b == NULL)
        return -ENOMEM;
    if (!png_image_write_to_memory(p, b, &n, 0, src->data, 0, NULL)) {
        free(b);
        return -EIO;
    }
    *buf = b;
    *len = n;
    return 0;
}

int
img_png_write(const struct img *im, const char *path, struct ss_err *err)
{
    png_image p;
    struct img *u8 = NULL;
    const struct img *src = im;
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (im->type != IMG_U8) {
        u8 = img_to_u8(im);
        if (u8 == NULL)
            return err_set(err, -ENOMEM, "%s: out of memory", path);
        src = u8;
    }
    memset(&p, 0, sizeof(p));
    p.version = PNG_IMAGE_VERSION;
    p.width = src->w;
    p.height = src->h;
    p.format = src->c == 1 ? PNG_FORMAT_GRAY
             : src->c == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    rc = png_encode(&p, src, &buf, &len);
    img_free(u8);
    if (rc == -ENOMEM)
        return err_set(err, rc, "%s: out of memory for the PNG", path);
    if (rc < 0)
        return err_set(err, rc, "%s: cannot encode PNG: %s", path,
                       p.message);
    rc = write_whole(path, buf, len, err);
    free(buf);
    return rc;
}

int
img_png_read(const char *path, struct img **out, struct ss_err *err)
{
    png_image p;
    struct img *im;

    memset(&p, 0, sizeof(p));
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path))
        return err_set(err, SS_EFORMAT, "%s: not a readable PNG: %s", path,
                       p.message);
    p.format = PNG_FORMAT_RGB;
    im = img_new(p.width, p.height, 3, IMG_U8);
    if (im == NULL) {
        png_image_free(&p);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    if (!png_image_finish_read(&p, NULL, im->data, 0, NULL)) {
        img_free(im);
        return err_set(err, SS_EFORMAT, "%s: corrupt PNG: %s", path,
                       p.message);
    }
    *out = im;
    return 0;
}

int
img_jpeg_encode(const struct img *im, int quality, int subsamp,
                unsigned char **buf, size_t *len, struct ss_err *err)
{
    tjhandle tj;
    unsigned long sz = 0;
    int ss, pf, rc;

    if (im->type != IMG_U8 || (im->c != 3 && im->c != 1))
        return err_set(err, -EINVAL, "JPEG encode needs 8-bit gray or RGB");
    tj = tjInitCompress();
    if (tj == NULL)
        return err_set(err, -ENOMEM, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    ss = im->c == 1 ? TJSAMP_GRAY : subsamp == 444 ? TJSAMP_444 : TJSAMP_420;
    pf = im->c == 1 ? TJPF_GRAY : TJPF_RGB;
    *buf = NULL;
    rc = tjCompress2(tj, im->data, im->w, 0, im->h, pf, buf, &sz, ss,
                     quality, TJFLAG_ACCURATEDCT);
    if (rc != 0) {
        err_set(err, -EIO, "JPEG encode: %s", tjGetErrorStr2(tj));
        tjFree(*buf);
        *buf = NULL;
        tjDestroy(tj);
        return -EIO;
    }
    *len = sz;
    tjDestroy(tj);
    return 0;
}

int
img_jpeg_decode(const unsigned char *buf, size_t len, struct img **out,
                struct ss_err *err)
{
    tjhandle tj = tjInitDecompress();
    int w, h, ss, cs;
    struct img *im;

    if (tj == NULL)
        return err_set(err, -ENOMEM, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    if (tjDecompressHeader3(tj, buf, len, &w, &h, &ss, &cs) != 0) {
        err_set(err, SS_EFORMAT, "not a JPEG stream: %s", tjGetErrorStr2(tj));
        tjDestroy(tj);
        return SS_EFORMAT;
    }
    im = img_new(w, h, 3, IMG_U8);
    if (im == NULL) {
        tjDestroy(tj);
        return err_set(err, -ENOMEM, "JPEG decode: out of memory");
    }
    /* A warning ("Corrupt JPEG data", "Premature end of JPEG file") means
     * pixels were made up: a damaged file or a cut-short camera transfer
     * is an error, not a grey patch. */
    if (tjDecompress2(tj, buf, len, im->data, w, 0, h, TJPF_RGB,
                      TJFLAG_ACCURATEDCT) != 0) {
        err_set(err, SS_EFORMAT, "corrupt JPEG: %s", tjGetErrorStr2(tj));
        img_free(im);
        tjDestroy(tj);
        return SS_EFORMAT;
    }
    tjDestroy(tj);
    *out = im;
    return 0;
}

static int
read_whole(const char *path, unsigned char **buf, size_t *len,
           struct ss_err *err)
{
    FILE *f = fopen(path, "rb");
    long n;

    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return err_set(err, -EIO, "%s: cannot seek", path);
    }
    *buf = malloc(n > 0 ? (size_t)n : 1);
    if (*buf == NULL) {
        fclose(f);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    if (fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        free(*buf);
        fclose(f);
        return err_set(err, -EIO, "%s: short read", path);
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

int
img_jpeg_write(const struct img *im, const char *path, int quality,
               struct ss_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int rc = img_jpeg_encode(im, quality, 444, &buf, &len, err);

    if (rc < 0)
        return err_prefix(err, "%s", path);
    f = fopen(path, "wb");
    if (f == NULL) {
        tjFree(buf);
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    if (fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        tjFree(buf);
        return err_set(err, -EIO, "%s: write failed", path);
    }
    tjFree(buf);
    return 0;
}

int
img_jpeg_read(const char *path, struct img **out, struct ss_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = read_whole(path, &buf, &len, err);

    if (rc < 0)
        return rc;
    rc = img_jpeg_decode(buf, len, out, err);
    free(buf);
    if (rc < 0)
        return err_prefix(err, "%s", path);
    return 0;
}

/* TIFFs go through the slide reader (storage/slide.h), so every caller
 * gets the same decoding: JPEG tiles with the colour space their own
 * stream states, stripped and tiled layouts, libtiff's other codecs.  The
 * image is level 0 (for OpenSlide slides, level 0 as OpenSlide sees it). */
static int
tiff_read_rgb(const char *path, struct img **out, struct ss_err *err)
{
    struct slide_opts o;
    struct slide *s = NULL;
    int64_t w, h;
    int rc;

    slide_opts_default(&o);
    o.need_mpp = false;
    rc = slide_open(path, &o, &s, err);
    if (rc < 0)
        return rc;
    slide_level_size(s, 0, &w, &h);
    if (w * h > ((int64_t)1 << 28))
        rc = err_set(err, -EFBIG, "%s: a %lldx%lld image is too large to "
                     "read whole; read it by regions (storage/slide.h)",
                     path, (long long)w, (long long)h);
    else
        rc = slide_read_img(s, 0, 0, 0, (int)w, (int)h, out, err);
    slide_close(s);
    return rc;
}

int
img_read_any(const char *path, struct img **out, struct ss_err *err)
{
    unsigned char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    n = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    if (n >= 8 && memcmp(magic, "\x89PNG", 4) == 0)
        return img_png_read(path, out, err);
    if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8)
        return img_jpeg_read(path, out, err);
    if (n >= 4 && (memcmp(magic, "II", 2) == 0 || memcmp(magic, "MM", 2) == 0))
        return tiff_read_rgb(path, out, err);
    return err_set(err, SS_EFORMAT,
                   "%s: not a PNG, JPEG or TIFF image", path);
}

double
img_psnr(const struct img *a, const struct img *b, int x, int y, int w, int h)
{
    double se = 0;
    size_t n = 0;
    int i, j, k;

    for (j = y; j < y + h; j++)
        for (i = x; i < x + w; i++) {
            const uint8_t *pa = img_u8(a, i, j), *pb = img_u8(b, i, j);
            for (k = 0; k < a->c; k++) {
                double d = (double)pa[k] - pb[k];
                se += d * d;
                n++;
            }
        }
    if (n == 0 || se == 0)
        return INFINITY;
    return 10.0 * log10(255.0 * 255.0 / (se / n));
}
