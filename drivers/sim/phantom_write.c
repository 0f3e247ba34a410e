/* SPDX-License-Identifier: MIT */
/*
 * Writing the phantom now on the stage to files: the ideal image of its
 * image area as a pyramidal TIFF (through storage/wsi.h) or a PNG, its
 * label map as an 8-bit PNG, and its ground truth as JSON.  Everything is
 * produced in bands of rows, so memory is bounded by the slide's width.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/wsi.h"

#define BAND 256

/* A streaming PNG writer over libpng (rows in order). */
struct pngw {
    FILE *f;
    png_structp png;
    png_infop info;
    char path[SIM_SPEC_MAX + 16];
    char tmp[SIM_SPEC_MAX + 32];
    int werr;                       /* errno of a failed write, or 0 */
};

/* libpng's own stdio writer fails with a bare "Write Error"; this one
 * keeps errno, so that the message can say why (a full disk, say). */
static void
pngw_write(png_structp png, png_bytep data, size_t len)
{
    struct pngw *p = png_get_io_ptr(png);

    if (fwrite(data, 1, len, p->f) != len) {
        p->werr = errno != 0 ? errno : EIO;
        png_error(png, "write failed");
    }
}

static void
pngw_flush(png_structp png)
{
    struct pngw *p = png_get_io_ptr(png);

    if (fflush(p->f) != 0) {
        p->werr = errno != 0 ? errno : EIO;
        png_error(png, "flush failed");
    }
}

/* libpng's failures become our one message (pngw_fail), not its own
 * line on stderr. */
static void
pngw_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

/* The error of a libpng failure while doing `what`, naming the file the
 * caller asked for (not its temporary name) and the cause when known. */
static int
pngw_fail(const struct pngw *p, struct ss_err *err, const char *what)
{
    if (p->werr != 0)
        return err_set(err, -p->werr, "%s: %s: %s", p->path, what,
                       strerror(p->werr));
    return err_set(err, -EIO, "%s: %s failed", p->path, what);
}

static int
pngw_open(struct pngw *p, const char *path, int w, int h, int ch,
          struct ss_err *err)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->path, sizeof(p->path), "%s", path);
    snprintf(p->tmp, sizeof(p->tmp), "%s.partial", path);
    p->f = fopen(p->tmp, "wb");
    if (p->f == NULL)
        return err_set(err, -errno, "%s: %s", p->path, strerror(errno));
    p->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL,
                                     pngw_error, NULL);
    p->info = p->png != NULL ? png_create_info_struct(p->png) : NULL;
    if (p->info == NULL)
        return err_set(err, -ENOMEM, "%s: PNG encoder: out of memory", path);
    if (setjmp(png_jmpbuf(p->png)))
        return pngw_fail(p, err, "writing the PNG header");
    png_set_write_fn(p->png, p, pngw_write, pngw_flush);
    png_set_compression_level(p->png, 3);
    png_set_IHDR(p->png, p->info, (png_uint_32)w, (png_uint_32)h, 8,
                 ch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p->png, p->info);
    return 0;
}

static int
pngw_rows(struct pngw *p, const uint8_t *data, int rows, size_t stride,
          struct ss_err *err)
{
    int i;

    if (setjmp(png_jmpbuf(p->png)))
        return pngw_fail(p, err, "writing PNG rows");
    for (i = 0; i < rows; i++)
        png_write_row(p->png, (png_const_bytep)(data + (size_t)i * stride));
    return 0;
}

/* Finishes (ok) or abandons the file; frees everything. */
static int
pngw_close(struct pngw *p, bool ok, struct ss_err *err)
{
    int rc = 0;

    if (ok && setjmp(png_jmpbuf(p->png)) == 0)
        png_write_end(p->png, p->info);
    else if (ok)
        rc = pngw_fail(p, err, "finishing the PNG");
    if (p->png != NULL)
        png_destroy_write_struct(&p->png, &p->info);
    if (p->f != NULL && fclose(p->f) != 0 && ok && rc == 0)
        rc = err_set(err, -errno, "%s: %s", p->path, strerror(errno));
    if (ok && rc == 0)
        rc = util_commit_file(p->tmp, p->path, err);
    if (!ok || rc < 0)
        unlink(p->tmp);
    return rc;
}

static bool
is_tiff(const char *path)
{
    const char *dot = strrchr(path, '.');

    return dot != NULL && (strcasecmp(dot, ".tif") == 0 ||
                           strcasecmp(dot, ".tiff") == 0 ||
                           strcasecmp(dot, ".svs") == 0);
}

struct outputs {
    struct wsi_writer *wsi;
    struct pngw img, lab;
    bool has_img_png, has_lab;
    bool img_done, lab_done;        /* committed under their names */
    struct img *label;
};

static int
outputs_open(struct sim *s, struct outputs *o, double mpp, int w, int h,
             const char *image_path, const char *labels_path,
             struct ss_err *err)
{
    struct wsi_meta meta;
    int rc = 0;

    if (image_path != NULL && is_tiff(image_path)) {
        wsi_meta_default(&meta);
        meta.mpp = mpp;
        meta.app_mag = mpp <= 0.3 ? 40 : mpp <= 0.7 ? 20 : 10;
        snprintf(meta.slide_id, sizeof(meta.slide_id), "%s",
                 s->src->slide_id);
        snprintf(meta.stain, sizeof(meta.stain), "%s",
                 sim__stain_name(s->src->stain));
        snprintf(meta.scanner, sizeof(meta.scanner), "slidescan phantom");
        o->label = sim__label_render(s->src);
        meta.label = o->label;
        rc = wsi_writer_open(image_path, w, h, &meta, &o->wsi, err);
    } else if (image_path != NULL) {
        rc = pngw_open(&o->img, image_path, w, h, 3, err);
        o->has_img_png = true;
    }
    if (rc == 0 && labels_path != NULL) {
        rc = pngw_open(&o->lab, labels_path, w, h, 1, err);
        o->has_lab = true;
    }
    return rc;
}

/* Finishes every output when ok, else removes them; returns the first
 * failure. */
static int
outputs_close(struct outputs *o, bool ok, struct ss_err *err)
{
    int rc = 0, r;

    if (o->wsi != NULL) {
        if (ok)
            rc = wsi_writer_finish(o->wsi, err);
        else
            wsi_writer_abort(o->wsi);
        o->img_done = ok && rc == 0;
    }
    if (o->has_img_png) {
        r = pngw_close(&o->img, ok && rc == 0, err);
        o->img_done = ok && rc == 0 && r == 0;
        rc = rc == 0 ? r : rc;
    }
    if (o->has_lab) {
        r = pngw_close(&o->lab, ok && rc == 0, err);
        o->lab_done = ok && rc == 0 && r == 0;
        rc = rc == 0 ? r : rc;
    }
    img_free(o->label);
    return rc;
}

static int
write_band(struct sim *s, struct outputs *o, double mpp, int w, int y0,
           int rows, float *buf, uint8_t *rgb, uint8_t *lab,
           struct ss_err *err)
{
    size_t i, n = (size_t)w * rows * 3;
    int rc = 0;

    if (o->wsi != NULL || o->has_img_png) {
        rc = sim__source_render(s->src, 0, y0 * mpp, w, rows, mpp, buf, err);
        for (i = 0; rc == 0 && i < n; i++)
            rgb[i] = (uint8_t)fmin(255, fmax(0, buf[i] * 255 + 0.5));
    }
    if (rc == 0 && o->wsi != NULL)
        rc = wsi_writer_rows(o->wsi, rgb, rows, err);
    if (rc == 0 && o->has_img_png)
        rc = pngw_rows(&o->img, rgb, rows, (size_t)w * 3, err);
    if (rc == 0 && o->has_lab) {
        rc = sim__phantom_labels(s->src->ph, 0, y0 * mpp, w, rows, mpp, lab);
        if (rc < 0)
            return err_set(err, rc, "phantom: out of memory");
        rc = pngw_rows(&o->lab, lab, rows, (size_t)w, err);
    }
    return rc;
}

/* Truth JSON version 2: two tumour-stroma quantities under names that
 * cannot be mistaken for each other, tumor_to_stroma_area_ratio (tumour
 * area / stroma area, unbounded) and tumor_fraction (tumour / (tumour +
 * stroma), what the analysis reports as tumor_stroma_ratio); each null
 * when its denominator is 0.  Version 1 files held only the former, under
 * the key tumor_stroma_ratio. */
static int
write_truth(struct sim *s, double mpp, int w, int h, const char *path,
            struct ss_err *err)
{
    struct sim_phantom_truth t;
    json_t *j, *areas, *nuc;
    char *text;
    int rc;

    rc = sim__phantom_truth(s->src->ph, 0, 0, w * mpp, h * mpp, &t);
    if (rc < 0)
        return err_set(err, rc, "phantom: out of memory");
    areas = json_pack("{s:f, s:f, s:f, s:f}",
                      "glass", t.area_um2[0] / 1e6,
                      "tumor", t.area_um2[1] / 1e6,
                      "stroma", t.area_um2[2] / 1e6,
                      "tissue", (t.area_um2[1] + t.area_um2[2]) / 1e6);
    nuc = json_pack("{s:I, s:I, s:I}", "tumor",
                    (json_int_t)t.nuclei[1], "stroma",
                    (json_int_t)t.nuclei[2], "tumor_positive",
                    (json_int_t)t.tumor_pos);
    j = json_pack("{s:i, s:s, s:s, s:s, s:f, s:i, s:i, s:f, s:f, s:o, s:o,"
                  " s:o, s:o, s:o, s:o, s:s}",
                  "version", 2, "slide_id", s->src->slide_id,
                  "spec", s->src->desc, "stain",
                  sim__stain_name(s->src->stain), "mpp", mpp,
                  "width", w, "height", h, "w_mm", w * mpp / 1000,
                  "h_mm", h * mpp / 1000, "areas_mm2", areas,
                  "tumor_to_stroma_area_ratio",
                  t.area_um2[SIM_LABEL_STROMA] > 0
                  ? json_real(t.tumor_to_stroma_area_ratio) : json_null(),
                  "tumor_fraction",
                  t.area_um2[SIM_LABEL_TUMOR] +
                  t.area_um2[SIM_LABEL_STROMA] > 0
                  ? json_real(t.tumor_fraction) : json_null(),
                  "nuclei", nuc,
                  "ki67_fraction", s->src->stain == SIM_STAIN_KI67
                                   ? json_real(t.ki67_fraction) : json_null(),
                  "ck_positive_area_mm2", s->src->stain == SIM_STAIN_CK
                                   ? json_real(t.ck_positive_um2 / 1e6)
                                   : json_null(),
                  "labels", "0 glass, 1 tumor, 2 stroma");
    if (j == NULL)
        return err_set(err, -ENOMEM, "%s: cannot build the JSON", path);
    text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (text == NULL)
        return err_set(err, -ENOMEM, "%s: cannot build the JSON", path);
    rc = util_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}

int
sim_phantom_write(struct sim *s, double mpp, const char *image_path,
                  const char *labels_path, const char *truth_path,
                  struct ss_err *err)
{
    struct outputs o;
    float *buf = NULL;
    uint8_t *rgb = NULL, *lab = NULL;
    int w, h, y, rc = 0;

    if (!(mpp >= 0.1 && mpp <= 100))
        return err_set(err, -EINVAL, "phantom: pixel size %g um is outside "
                       "0.1..100", mpp);
    memset(&o, 0, sizeof(o));
    pthread_rwlock_rdlock(&s->srclock);
    if (s->src->ph == NULL) {
        pthread_rwlock_unlock(&s->srclock);
        return err_set(err, -ENOTSUP, "phantom: the slide on the stage is "
                       "not a phantom");
    }
    w = (int)lround(s->src->w_um / mpp);
    h = (int)lround(s->src->h_um / mpp);
    buf = malloc((size_t)w * BAND * 3 * sizeof(float));
    rgb = malloc((size_t)w * BAND * 3);
    lab = malloc((size_t)w * BAND);
    if (buf == NULL || rgb == NULL || lab == NULL)
        rc = err_set(err, -ENOMEM, "phantom: out of memory");
    if (rc == 0)
        rc = outputs_open(s, &o, mpp, w, h, image_path, labels_path, err);
    for (y = 0; rc == 0 && y < h; y += BAND)
        rc = write_band(s, &o, mpp, w, y, y + BAND > h ? h - y : BAND, buf,
                        rgb, lab, err);
    y = outputs_close(&o, rc == 0, err);
    rc = rc == 0 ? y : rc;
    if (rc == 0 && truth_path != NULL)
        rc = write_truth(s, mpp, w, h, truth_path, err);
    /* One output failed (a full disk under the labels, say): the ones
     * already committed go too, so that no half set is left behind. */
    if (rc < 0 && o.img_done)
        unlink(image_path);
    if (rc < 0 && o.lab_done)
        unlink(labels_path);
    pthread_rwlock_unlock(&s->srclock);
    free(buf);
    free(rgb);
    free(lab);
    if (rc == 0)
        log_info("sim", "phantom written w_px=%d h_px=%d mpp=%.3f", w, h,
                 mpp);
    return rc;
}
