/* SPDX-License-Identifier: MIT */
/*
 * Images in memory: a width × height raster of interleaved channels,
 * either 8-bit (IMG_U8) or 32-bit float (IMG_F32).  Camera frames and tiles
 * are 3-channel RGB U8; calibration frames and intermediate pixel work are
 * often F32.  Rows are contiguous: the stride is w * c elements.
 *
 * img_new() returns zeroed pixels; img_free(NULL) is a no-op.  PNG and
 * JPEG helpers wrap libpng and libjpeg-turbo for tools and tests.
 */
#ifndef SS_COMMON_IMG_H
#define SS_COMMON_IMG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum img_type { IMG_U8 = 1, IMG_F32 = 4 };

struct img {
    int w, h, c;                    /* size in pixels, channels (1 or 3) */
    enum img_type type;
    void *data;                     /* w * h * c elements, owned */
};

struct img *img_new(int w, int h, int c, enum img_type type);
void img_free(struct img *im);
struct img *img_dup(const struct img *im);

static inline uint8_t *
img_u8(const struct img *im, int x, int y)
{
    return (uint8_t *)im->data + ((size_t)y * im->w + x) * im->c;
}

static inline float *
img_f32(const struct img *im, int x, int y)
{
    return (float *)im->data + ((size_t)y * im->w + x) * im->c;
}

size_t img_bytes(const struct img *im);

/* Copies the w × h region at (x, y); parts outside the source are zero. */
struct img *img_crop(const struct img *im, int x, int y, int w, int h);

/* U8 ↔ F32 conversions; values are copied unscaled, F32 → U8 rounds and
 * clamps to 0..255. */
struct img *img_to_f32(const struct img *im);
struct img *img_to_u8(const struct img *im);

/* PNG of 1 or 3 channels, 8 bits. */
int img_png_write(const struct img *im, const char *path, struct ss_err *err);
int img_png_read(const char *path, struct img **out, struct ss_err *err);

/* JPEG through TurboJPEG.  quality 1..100; subsamp 444 or 420. */
int img_jpeg_encode(const struct img *im, int quality, int subsamp,
                    unsigned char **buf, size_t *len, struct ss_err *err);
int img_jpeg_decode(const unsigned char *buf, size_t len, struct img **out,
                    struct ss_err *err);
int img_jpeg_write(const struct img *im, const char *path, int quality,
                   struct ss_err *err);
int img_jpeg_read(const char *path, struct img **out, struct ss_err *err);

/* Reads PNG, JPEG or TIFF by content, into 3-channel U8.  TIFFs (plain,
 * stripped, tiled, vendor slides) are read at level 0 through the slide
 * reader (storage/slide.h): JPEG tiles decode in the colour space their
 * own stream states, whatever the Photometric tag says. */
int img_read_any(const char *path, struct img **out, struct ss_err *err);

/* Peak signal-to-noise ratio in dB between two same-size U8 images over
 * the rectangle (x, y, w, h) of both; +inf when identical. */
double img_psnr(const struct img *a, const struct img *b, int x, int y,
                int w, int h);

#endif
