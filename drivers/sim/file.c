/* SPDX-License-Identifier: MIT */
/*
 * File slides: anything the slide reader (storage/slide.h) opens, whose
 * pyramid levels become the source's lattices.  The reader settles the
 * format (OpenSlide vendors, OME-TIFF and other TIFFs, PNG, JPEG) and the
 * pixel size (stated as FILE@MPP, else OpenSlide's property, the OME-XML
 * or the TIFF resolution), and decodes tiles on demand, so a large TIFF is
 * never held whole.  A slide is checked when it is placed: its smallest
 * level is decoded then, so a file whose tiles do not decode fails at load
 * with the reader's reason instead of in the middle of a scan.  The colour
 * of the slide's own blank glass is estimated from that level and becomes
 * the reader's background, so the image's surroundings and its
 * transparent pixels are glass.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/slide.h"

_Static_assert(SLIDE_MAX_LEVELS <= 32, "sim__source holds 32 levels");

struct fileslide {
    struct slide *sl;
    char hint[SIM_SPEC_MAX + 32];   /* ends the "no pixel size" error */
};

/* Always the whole tile: the reader decodes whole tiles anyway. */
static int
file_tile(struct sim__source *src, int level, double pitch, int tx, int ty,
          unsigned blocks, uint8_t *rgb, struct ss_err *err)
{
    struct fileslide *fs = src->priv;
    int rc;

    rc = slide_read(fs->sl, level,
                    (int64_t)llround((double)tx * SIM_TILE * pitch /
                                     src->mpp),
                    (int64_t)llround((double)ty * SIM_TILE * pitch /
                                     src->mpp),
                    SIM_TILE, SIM_TILE, rgb, err);
    return rc < 0 ? rc : (int)SIM_BLOCKS_ALL;
}

static void
file_destroy(struct sim__source *src)
{
    struct fileslide *fs = src->priv;

    if (fs == NULL)
        return;
    slide_close(fs->sl);
    free(fs);
}

static const struct sim__source_ops file_ops = {
    .tile = file_tile,
    .destroy = file_destroy,
};

/*
 * The slide's own blank glass: the commonest bright colour.  Glass is a
 * peak of the histogram of R + G + B near its bright end; the brightest
 * pixels are the upper tail of that peak (sensor noise, JPEG ringing), so
 * their mean would be brighter than most of the glass, and the rest of
 * the glass would then render darker than the glass around the image,
 * i.e. as faint tissue.  The peak is searched from 30 below the sum the
 * brightest 2 % of pixels reach upwards, over a window of ±GLASS_WIN, and
 * the glass colour is the mean of the pixels in its window.  No glass is
 * seen when the histogram only falls towards the bright end (the largest
 * window is the lowest searched, as in a detail image that is all
 * tissue), when the peak holds under 2 % of the pixels, or when it is
 * darker than 60 % transmittance: the file's white (255) is then taken
 * as its glass, so its pixels keep the values they have.
 */
#define GLASS_WIN 3

/* The sum R + G + B at the glass peak of hist, or -1 without one. */
static int
glass_peak(const size_t hist[766], size_t n)
{
    size_t want = n / 50 + 1, got = 0, best = 0, in;
    int thr = 765, peak = -1, lo, s, k;

    while (thr > 0 && got + hist[thr] < want)
        got += hist[thr--];
    lo = thr - 30 > 0 ? thr - 30 : 0;
    for (s = lo; s <= 765; s++) {
        in = 0;
        for (k = s - GLASS_WIN; k <= s + GLASS_WIN; k++)
            in += k >= 0 && k <= 765 ? hist[k] : 0;
        if (in > best) {
            best = in;
            peak = s;
        }
    }
    return best >= want && peak > lo ? peak : -1;
}

static void
estimate_glass(const uint8_t *rgb, size_t n, double glass[3])
{
    size_t hist[766] = { 0 }, got = 0, i;
    double sum[3] = { 0, 0, 0 };
    int peak, c;

    for (i = 0; i < n; i++)
        hist[rgb[i * 3] + rgb[i * 3 + 1] + rgb[i * 3 + 2]]++;
    peak = glass_peak(hist, n);
    for (i = 0; peak >= 0 && i < n; i++) {
        const uint8_t *p = rgb + i * 3;

        if (abs(p[0] + p[1] + p[2] - peak) > GLASS_WIN)
            continue;
        for (c = 0; c < 3; c++)
            sum[c] += p[c];
        got++;
    }
    for (c = 0; c < 3; c++)
        glass[c] = got > 0 ? sum[c] / got / 255 : 1.0;
    if (glass[0] + glass[1] + glass[2] < 3 * 0.6)
        glass[0] = glass[1] = glass[2] = 1.0;
}

/* Reads the smallest level (its central 4096 × 4096 pixels at most) over
 * white to check that it decodes and to find the glass colour, which then
 * becomes the background of every later read. */
static int
probe(struct sim__source *src, struct fileslide *fs, struct ss_err *err)
{
    int l = src->nlevels - 1, c;
    int64_t w = src->level_w[l], h = src->level_h[l];
    double ds = src->pitch_um[l] / src->mpp;
    uint8_t *rgb, glass_u8[3];
    int rc;

    while (w * h > 4096 * 4096) {
        w /= 2;
        h /= 2;
    }
    rgb = malloc((size_t)w * h * 3);
    if (rgb == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", src->desc);
    rc = slide_read(fs->sl, l, (int64_t)((src->level_w[l] - w) / 2 * ds),
                    (int64_t)((src->level_h[l] - h) / 2 * ds), (int)w,
                    (int)h, rgb, err);
    if (rc == 0)
        estimate_glass(rgb, (size_t)w * h, src->glass);
    free(rgb);
    if (rc < 0)
        return rc;
    for (c = 0; c < 3; c++)
        glass_u8[c] = (uint8_t)lrint(src->glass[c] * 255);
    slide_set_background(fs->sl, glass_u8);
    return 0;
}

/* Opens the file through the reader and takes its levels. */
static int
open_slide(struct sim__source *src, struct fileslide *fs, double mpp,
           bool force_mpp, struct ss_err *err)
{
    struct slide_opts o;
    int l, rc;

    slide_opts_default(&o);
    o.mpp = mpp;
    snprintf(fs->hint, sizeof(fs->hint), "give it as %s@MPP", src->desc);
    o.mpp_hint = fs->hint;
    rc = slide_open(src->desc, &o, &fs->sl, err);
    if (rc == 0)
        rc = sim__spec_mpp_check(fs->sl, mpp, force_mpp, err);
    if (rc < 0)
        return rc;
    src->mpp = slide_mpp(fs->sl);
    src->nlevels = slide_level_count(fs->sl);
    for (l = 0; l < src->nlevels; l++) {
        slide_level_size(fs->sl, l, &src->level_w[l], &src->level_h[l]);
        src->pitch_um[l] = src->mpp * slide_level_downsample(fs->sl, l);
    }
    src->w_um = src->level_w[0] * src->mpp;
    src->h_um = src->level_h[0] * src->mpp;
    return probe(src, fs, err);
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
sim__file_open(const char *path, double mpp, bool force_mpp,
               const struct sim_config *c, struct sim__source **out,
               struct ss_err *err)
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
    rc = open_slide(src, fs, mpp, force_mpp, err);
    if (rc < 0) {
        sim__source_free(src);
        return rc;
    }
    *out = src;
    return 0;
}
