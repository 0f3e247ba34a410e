/* SPDX-License-Identifier: MIT */
/*
 * slidescan convert IN OUT [--mpp X] [--quality Q] [--subsamp 420|444]
 *                          [--bigtiff] [--slide-id ID] [--stain S]:
 * writes any slide OpenSlide reads, or a PNG, JPEG or TIFF image, as a
 * slidescan whole-slide image (storage/wsi.h).  OpenSlide slides are
 * streamed in bands, so their size is not limited by memory.  Runs
 * offline, without the daemon.
 *
 * LIMIT: a plain PNG, JPEG or TIFF is read whole into memory (3 bytes a
 * pixel), and only the first directory of a TIFF that OpenSlide does not
 * recognise is read.
 */
#include <errno.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "storage/wsi.h"
#include "tools/client/client.h"

#define BAND_ROWS 256

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: slidescan convert IN OUT [--mpp X] [--quality Q]\n"
            "                         [--subsamp 420|444] [--bigtiff]\n"
            "                         [--slide-id ID] [--stain S]\n"
            "\n"
            "Writes IN (a slide OpenSlide reads, or a PNG, JPEG or TIFF\n"
            "image) as a pyramidal slidescan WSI at OUT.  The pixel size\n"
            "comes from --mpp or from the slide; a plain image needs\n"
            "--mpp.  Defaults: quality 90, 4:4:4, BigTIFF when needed.\n");
}

/* OpenSlide's premultiplied ARGB rows as RGB (opaque slides). */
static void
argb_to_rgb(const uint32_t *argb, uint8_t *rgb, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        rgb[3 * i] = (uint8_t)(argb[i] >> 16);
        rgb[3 * i + 1] = (uint8_t)(argb[i] >> 8);
        rgb[3 * i + 2] = (uint8_t)argb[i];
    }
}

static int
stream_openslide(openslide_t *os, const char *out, struct wsi_meta *m,
                 struct ss_err *err)
{
    int64_t w, h, y;
    uint32_t *argb;
    uint8_t *rgb;
    struct wsi_writer *wr;
    int rc;

    openslide_get_level0_dimensions(os, &w, &h);
    argb = malloc((size_t)w * BAND_ROWS * 4);
    rgb = malloc((size_t)w * BAND_ROWS * 3);
    if (argb == NULL || rgb == NULL) {
        free(argb);
        free(rgb);
        return err_set(err, -ENOMEM, "out of memory for %lld px rows",
                       (long long)w);
    }
    rc = wsi_writer_open(out, (int)w, (int)h, m, &wr, err);
    for (y = 0; rc == 0 && y < h; y += BAND_ROWS) {
        int n = h - y < BAND_ROWS ? (int)(h - y) : BAND_ROWS;

        openslide_read_region(os, argb, 0, y, 0, w, n);
        if (openslide_get_error(os) != NULL) {
            rc = err_set(err, SS_EFORMAT, "reading rows %lld..: %s",
                         (long long)y, openslide_get_error(os));
            break;
        }
        argb_to_rgb(argb, rgb, (size_t)w * n);
        rc = wsi_writer_rows(wr, rgb, n, err);
    }
    if (rc == 0)
        rc = wsi_writer_finish(wr, err);
    else if (wr != NULL)
        wsi_writer_abort(wr);
    free(argb);
    free(rgb);
    return rc;
}

/* The slide's label or macro image as RGB, or NULL. */
static struct img *
associated(openslide_t *os, const char *name)
{
    int64_t w = 0, h = 0;
    uint32_t *argb;
    struct img *im;

    openslide_get_associated_image_dimensions(os, name, &w, &h);
    if (w <= 0 || h <= 0 || w * h > 64 << 20)
        return NULL;
    argb = malloc((size_t)(w * h) * 4);
    im = img_new((int)w, (int)h, 3, IMG_U8);
    if (argb != NULL && im != NULL) {
        openslide_read_associated_image(os, name, argb);
        argb_to_rgb(argb, im->data, (size_t)(w * h));
    }
    free(argb);
    return im;
}

static int
convert(const char *in, const char *out, struct wsi_meta *m,
        struct ss_err *err)
{
    openslide_t *os = openslide_detect_vendor(in) ? openslide_open(in)
                                                   : NULL;
    struct wsi_writer *wr;
    struct img *im = NULL;
    int rc;

    if (os != NULL && openslide_get_error(os) == NULL) {
        const char *mpp = openslide_get_property_value(os,
                              OPENSLIDE_PROPERTY_NAME_MPP_X);

        struct img *label = associated(os, "label");
        struct img *macro = associated(os, "macro");

        if (m->mpp <= 0 && mpp != NULL)
            m->mpp = strtod(mpp, NULL);
        m->label = label;
        m->macro = macro;
        rc = m->mpp > 0 ? stream_openslide(os, out, m, err)
                        : err_set(err, -EINVAL, "%s: no pixel size in the "
                                  "slide; give --mpp", in);
        openslide_close(os);
        img_free(label);
        img_free(macro);
        return rc;
    }
    if (os != NULL)
        openslide_close(os);
    if (m->mpp <= 0)
        return err_set(err, -EINVAL, "%s: a plain image needs --mpp", in);
    rc = img_read_any(in, &im, err);
    if (rc < 0)
        return rc;
    rc = wsi_writer_open(out, im->w, im->h, m, &wr, err);
    if (rc == 0)
        rc = wsi_writer_rows(wr, im->data, im->h, err);
    if (rc == 0)
        rc = wsi_writer_finish(wr, err);
    else if (wr != NULL)
        wsi_writer_abort(wr);
    img_free(im);
    return rc;
}

static int
number(const char *s, double *v)
{
    char *end;

    *v = strtod(s, &end);
    return *end == '\0' && end != s;
}

int
cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    struct wsi_meta m;
    struct ss_err err;
    double v;
    int i;

    wsi_meta_default(&m);
    m.mpp = 0;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--bigtiff") == 0) {
            m.bigtiff = 1;
        } else if (next != NULL && strcmp(a, "--mpp") == 0 &&
                   number(next, &v) && v > 0) {
            m.mpp = v;
            i++;
        } else if (next != NULL && strcmp(a, "--quality") == 0 &&
                   number(next, &v)) {
            m.quality = (int)v;
            i++;
        } else if (next != NULL && strcmp(a, "--subsamp") == 0 &&
                   number(next, &v)) {
            m.subsamp = (int)v;
            i++;
        } else if (next != NULL && strcmp(a, "--slide-id") == 0) {
            snprintf(m.slide_id, sizeof(m.slide_id), "%s", argv[++i]);
        } else if (next != NULL && strcmp(a, "--stain") == 0) {
            snprintf(m.stain, sizeof(m.stain), "%s", argv[++i]);
        } else if (a[0] != '-' && in == NULL) {
            in = a;
        } else if (a[0] != '-' && out == NULL) {
            out = a;
        } else {
            fprintf(stderr, "slidescan convert: bad argument '%s'\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (in == NULL || out == NULL) {
        usage(stderr);
        return EXIT_USAGE;
    }
    err_clear(&err);
    if (convert(in, out, &m, &err) < 0) {
        fprintf(stderr, "slidescan convert: %s\n", err.msg);
        return err.code == -ENOENT ? EXIT_NOTFOUND : EXIT_FAIL;
    }
    return EXIT_OK;
}
