/* SPDX-License-Identifier: MIT */
/*
 * Flat-field calibration: taking the dark and blank-field frames for a
 * stain profile, and storing them as a directory of two float TIFFs and a
 * JSON file of metadata.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tiffio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "imaging/flatfield.h"
#include "scan/acq_int.h"

/* Exposure of the fallback dark frame: short enough that the lamp adds
 * well under 0.1 count on any camera we drive.
 * LIMIT: this dark frame misses the dark current of the real exposure
 * (0.1 count at 250 ms on the simulated camera). */
#define DARK_FALLBACK_EXPOSURE_MS 0.05

void
acq_calib_free(struct acq_calib *c)
{
    if (c == NULL)
        return;
    img_free(c->dark);
    img_free(c->flat);
    free(c);
}

/* Averages n captures into *mean (F32). */
static int
average_frames(struct camera *cam, int n, struct img **mean,
               struct ss_err *err)
{
    struct img *sum = NULL, *frame;
    int i, rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        frame = NULL;
        rc = cam->ops->capture(cam, &frame, err);
        if (rc != 0)
            err_prefix(err, "camera %s: frame %d of %d", cam->model, i + 1,
                       n);
        else
            rc = ff_accum_add(&sum, frame, err);
        img_free(frame);
    }
    if (rc != 0) {
        img_free(sum);
        return rc;
    }
    ff_accum_finish(sum, n);
    *mean = sum;
    return 0;
}

/* LIMIT: the flat is taken at one spot, so dust on the glass there is
 * averaged into it and imprinted, inverted, on every tile. */
static int
take_flat(struct microscope *m, const struct acq_options *o,
          struct motion *mo, struct acq_calib *c, struct ss_err *err)
{
    double pos[3] = { o->blank_x_um, o->blank_y_um, o->focus_z_um };
    int rc = motion_move_to(mo, pos, NULL, err);

    if (rc == 0)
        rc = average_frames(m->cam, c->frames, &c->flat, err);
    if (rc != 0)
        err_prefix(err, "flat frames at (%.0f, %.0f) um", o->blank_x_um,
                   o->blank_y_um);
    return rc;
}

/* The dark frame with the lamp off, or at the shortest exposure. */
static int
take_dark(struct microscope *m, const struct acq_profile *p,
          const struct acq_options *o, struct acq_calib *c,
          struct ss_err *err)
{
    struct camera *cam = m->cam;
    struct cam_settings cs = { DARK_FALLBACK_EXPOSURE_MS, 1.0,
                               { 1.0, 1.0, 1.0 } };
    int rc;

    if (cam->ops->set_lamp != NULL) {
        snprintf(c->dark_method, sizeof(c->dark_method), "lamp-off");
        rc = cam->ops->set_lamp(cam, false, err);
        if (rc == 0)
            rc = average_frames(cam, c->frames, &c->dark, err);
        if (rc != 0)
            cam->ops->set_lamp(cam, true, NULL);
        else if ((rc = cam->ops->set_lamp(cam, true, err)) != 0)
            err_prefix(err, "switching the lamp back on");
        if (rc != 0)
            err_prefix(err, "dark frames");
        return rc;
    }
    snprintf(c->dark_method, sizeof(c->dark_method), "min-exposure");
    cs.gain = p->gain > 0 ? p->gain : 1.0;
    memcpy(cs.wb, p->wb, sizeof(cs.wb));
    rc = cam->ops->configure(cam, &cs, err);
    if (rc == 0)
        rc = average_frames(cam, c->frames, &c->dark, err);
    if (rc == 0)
        rc = acq__set_camera(m, p, o, false, err);
    if (rc != 0)
        err_prefix(err, "dark frames (shortest exposure)");
    return rc;
}

static struct acq_calib *
calib_new(const struct acq_profile *p, const struct acq_options *o)
{
    struct acq_calib *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    snprintf(c->stain, sizeof(c->stain), "%s", p->stain);
    snprintf(c->objective, sizeof(c->objective), "%s", p->objective);
    c->exposure_ms = p->exposure_ms;
    c->gain = p->gain > 0 ? p->gain : 1.0;
    memcpy(c->wb, p->wb, sizeof(c->wb));
    c->frames = o->calib_frames > 0 ? o->calib_frames : 1;
    util_utc_iso(c->taken_utc, sizeof(c->taken_utc));
    return c;
}

int
acq_calibrate(struct microscope *m, const struct acq_profile *p,
              const struct acq_options *o, struct acq_calib **out,
              struct ss_err *err)
{
    struct acq_calib *c = calib_new(p, o);
    struct motion_cfg mc;
    struct motion mo;
    struct ff_check chk;
    int rc;

    *out = NULL;
    if (c == NULL)
        return err_set(err, -ENOMEM, "calibration: no memory");
    acq__motion_cfg(o, &mc);
    motion_init(&mo, m->stage, m->clock, &mc);
    rc = acq__set_camera(m, p, o, false, err);
    if (rc == 0)
        rc = take_flat(m, o, &mo, c, err);
    if (rc == 0)
        rc = take_dark(m, p, o, c, err);
    if (rc == 0)
        rc = ff_check(c->dark, c->flat, &chk, err);
    if (rc != 0) {
        acq_calib_free(c);
        err_prefix(err, "calibration %s %s %.0f ms", p->stain,
                   p->objective, p->exposure_ms);
        return rc;
    }
    c->falloff = chk.falloff;
    log_notice("scan", "calibrated stain=%s objective=%s exposure_ms=%.0f "
               "frames=%d dark=%s dark_dn=%.1f signal_min_dn=%.1f "
               "falloff=%.3f", c->stain, c->objective, c->exposure_ms,
               c->frames, c->dark_method, chk.dark_mean[1],
               chk.signal_min[1], chk.falloff);
    *out = c;
    return 0;
}

bool
acq_calib_matches(const struct acq_calib *c, const struct acq_profile *p)
{
    double gain = p->gain > 0 ? p->gain : 1.0;

    return strcmp(c->stain, p->stain) == 0 &&
           strcmp(c->objective, p->objective) == 0 &&
           fabs(c->exposure_ms - p->exposure_ms) < 1e-6 &&
           fabs(c->gain - gain) < 1e-6;
}

bool
acq_calib_is_stale(const struct acq_calib *c, double max_age_h)
{
    struct tm tm;
    const char *end;
    time_t taken;

    memset(&tm, 0, sizeof(tm));
    end = strptime(c->taken_utc, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0')
        return true;
    taken = timegm(&tm);
    return difftime(time(NULL), taken) > max_age_h * 3600.0;
}

/* One F32 image as a deflate-compressed float TIFF, written durably.
 * Rows go through a copy: libtiff's floating-point predictor encodes the
 * buffer it is given in place. */
static int
write_float_tiff(const struct img *im, const char *path, struct ss_err *err)
{
    size_t row_bytes = (size_t)im->w * im->c * sizeof(float);
    float *row = malloc(row_bytes);
    char tmp[4096];
    TIFF *t;
    int y, ok = 1;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    t = row != NULL ? TIFFOpen(tmp, "w") : NULL;
    if (t == NULL) {
        free(row);
        return err_set(err, -EIO, "calibration %s: cannot create", tmp);
    }
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)im->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)im->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)im->c);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, im->c == 3 ? PHOTOMETRIC_RGB :
                 PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(t, TIFFTAG_PREDICTOR, PREDICTOR_FLOATINGPOINT);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, TIFFDefaultStripSize(t, 0));
    for (y = 0; y < im->h && ok; y++) {
        memcpy(row, img_f32(im, 0, y), row_bytes);
        ok = TIFFWriteScanline(t, row, (uint32_t)y, 0) == 1;
    }
    TIFFClose(t);
    free(row);
    if (!ok) {
        unlink(tmp);
        return err_set(err, -EIO, "calibration %s: write failed", tmp);
    }
    return util_commit_file(tmp, path, err);
}

static int
read_float_tiff(const char *path, struct img **out, struct ss_err *err)
{
    uint32_t w = 0, h = 0, y;
    uint16_t spp = 0, bps = 0, fmt = 0, planar = 0;
    TIFF *t;
    int ok = 1;

    *out = NULL;
    if (access(path, R_OK) != 0)
        return err_set(err, -errno, "calibration %s: %s", path,
                       strerror(errno));
    t = TIFFOpen(path, "r");
    if (t == NULL)
        return err_set(err, SS_EFORMAT, "calibration %s: not a TIFF", path);
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    if (spp != 3 || bps != 32 || fmt != SAMPLEFORMAT_IEEEFP ||
        planar != PLANARCONFIG_CONTIG || w == 0 || h == 0 ||
        w > 65536 || h > 65536) {
        TIFFClose(t);
        return err_set(err, SS_EFORMAT, "calibration %s: not a 32-bit "
                       "float RGB TIFF (%u samples of %u bits, format %u)",
                       path, spp, bps, fmt);
    }
    *out = img_new((int)w, (int)h, 3, IMG_F32);
    for (y = 0; *out != NULL && y < h && ok; y++)
        ok = TIFFReadScanline(t, img_f32(*out, 0, (int)y), y, 0) == 1;
    TIFFClose(t);
    if (*out == NULL || !ok) {
        img_free(*out);
        *out = NULL;
        return err_set(err, ok ? -ENOMEM : SS_EFORMAT, "calibration %s: %s",
                       path, ok ? "no memory" : "pixel data unreadable");
    }
    return 0;
}

static json_t *
calib_json(const struct acq_calib *c)
{
    return json_pack("{s:i, s:s, s:s, s:f, s:f, s:[f,f,f], s:s, s:i, s:s, "
                     "s:f, s:i, s:i}", "format", 1, "stain", c->stain,
                     "objective", c->objective, "exposure_ms",
                     c->exposure_ms, "gain", c->gain, "wb", c->wb[0],
                     c->wb[1], c->wb[2], "taken_utc", c->taken_utc,
                     "frames", c->frames, "dark_method", c->dark_method,
                     "falloff", c->falloff, "width", c->flat->w, "height",
                     c->flat->h);
}

int
acq_calib_save(const struct acq_calib *c, const char *dir,
               struct ss_err *err)
{
    char path[4096];
    json_t *j;
    char *text;
    int rc;

    rc = util_mkdir_p(dir, err);
    snprintf(path, sizeof(path), "%s/dark.tif", dir);
    if (rc == 0)
        rc = write_float_tiff(c->dark, path, err);
    snprintf(path, sizeof(path), "%s/flat.tif", dir);
    if (rc == 0)
        rc = write_float_tiff(c->flat, path, err);
    if (rc != 0)
        return rc;
    j = calib_json(c);
    text = j != NULL ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (text == NULL)
        return err_set(err, -ENOMEM, "calibration %s: no memory for the "
                       "metadata", dir);
    snprintf(path, sizeof(path), "%s/calib.json", dir);
    rc = util_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}

static int
parse_meta(const char *path, struct acq_calib *c, int *w, int *h,
           struct ss_err *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    const char *stain, *obj, *taken, *method = "";
    int format = 0, rc;

    if (j == NULL && access(path, R_OK) != 0)
        return err_set(err, -errno, "calibration %s: %s", path,
                       strerror(errno));
    if (j == NULL)
        return err_set(err, SS_EFORMAT, "calibration %s: %s (line %d)",
                       path, je.text, je.line);
    rc = json_unpack_ex(j, &je, 0, "{s:i, s:s, s:s, s:F, s:F, s:[FFF], "
                        "s:s, s:i, s?s, s?F, s:i, s:i}", "format", &format,
                        "stain", &stain, "objective", &obj, "exposure_ms",
                        &c->exposure_ms, "gain", &c->gain, "wb", &c->wb[0],
                        &c->wb[1], &c->wb[2], "taken_utc", &taken,
                        "frames", &c->frames, "dark_method", &method,
                        "falloff", &c->falloff, "width", w, "height", h);
    if (rc == 0 && format == 1) {
        snprintf(c->stain, sizeof(c->stain), "%s", stain);
        snprintf(c->objective, sizeof(c->objective), "%s", obj);
        snprintf(c->taken_utc, sizeof(c->taken_utc), "%s", taken);
        snprintf(c->dark_method, sizeof(c->dark_method), "%s", method);
    }
    json_decref(j);
    if (rc != 0)
        return err_set(err, SS_EFORMAT, "calibration %s: %s", path,
                       je.text);
    if (format != 1)
        return err_set(err, SS_EFORMAT, "calibration %s: format %d, this "
                       "version reads format 1", path, format);
    return 0;
}

static int
load_frame(const char *dir, const char *name, int w, int h,
           struct img **out, struct ss_err *err)
{
    char path[4096];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    rc = read_float_tiff(path, out, err);
    if (rc == 0 && ((*out)->w != w || (*out)->h != h))
        return err_set(err, SS_EFORMAT, "calibration %s: %dx%d, the "
                       "metadata says %dx%d", path, (*out)->w, (*out)->h,
                       w, h);
    return rc;
}

int
acq_calib_load(const char *dir, struct acq_calib **out, struct ss_err *err)
{
    struct acq_calib *c = calloc(1, sizeof(*c));
    char path[4096];
    int w = 0, h = 0, rc;

    *out = NULL;
    if (c == NULL)
        return err_set(err, -ENOMEM, "calibration %s: no memory", dir);
    snprintf(path, sizeof(path), "%s/calib.json", dir);
    rc = parse_meta(path, c, &w, &h, err);
    if (rc == 0)
        rc = load_frame(dir, "dark.tif", w, h, &c->dark, err);
    if (rc == 0)
        rc = load_frame(dir, "flat.tif", w, h, &c->flat, err);
    if (rc != 0) {
        acq_calib_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
