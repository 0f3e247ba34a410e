/* SPDX-License-Identifier: MIT */
/*
 * The slide reader's front: recognising a file by its first bytes,
 * choosing the back end (OpenSlide, libtiff, PNG/JPEG), settling the
 * pixel size, and the calls every back end shares (levels, reads with
 * background fill, locking).
 */
#include "storage/slide_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"

void
slide_opts_default(struct slide_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->need_mpp = true;
    o->mpp_hint = "give it with --mpp or as FILE@MPP";
    memset(o->background, 255, sizeof(o->background));
}

int
slide_spec_parse(const char *spec, char *path, size_t path_len, double *mpp,
                 struct ss_err *err)
{
    const char *at = strrchr(spec, '@');
    struct stat st;
    size_t n = strlen(spec);
    char *end;

    *mpp = 0;
    if (at != NULL && at[1] != '\0' && stat(spec, &st) != 0) {
        double v = strtod(at + 1, &end);

        if (*end == '\0' && end != at + 1) {
            if (!(v > 0 && v <= 1000))
                return err_set(err, -EINVAL, "%s: pixel size %s µm is not "
                               "in (0, 1000]", spec, at + 1);
            *mpp = v;
            n = (size_t)(at - spec);
        }
    }
    if (n + 1 > path_len)
        return err_set(err, -ENAMETOOLONG, "%.64s...: path too long", spec);
    memcpy(path, spec, n);
    path[n] = '\0';
    return 0;
}

enum kind { K_UNKNOWN, K_EMPTY, K_TIFF, K_PNG, K_JPEG, K_DICOM, K_TEXT };

/* What the first bytes say the file is. */
static enum kind
sniff(const unsigned char *b, size_t n)
{
    size_t i, text = 0;

    if (n == 0)
        return K_EMPTY;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0 ||
                   memcmp(b, "II+\0", 4) == 0 || memcmp(b, "MM\0+", 4) == 0))
        return K_TIFF;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return K_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return K_JPEG;
    if (n >= 132 && memcmp(b + 128, "DICM", 4) == 0)
        return K_DICOM;
    for (i = 0; i < n; i++)
        if (isprint(b[i]) || isspace(b[i]))
            text++;
    return text == n ? K_TEXT : K_UNKNOWN;
}

static int
refuse(const char *path, enum kind k, struct ss_err *err)
{
    switch (k) {
    case K_EMPTY:
        return err_set(err, SS_EFORMAT, "%s: not a slide: the file is "
                       "empty", path);
    case K_DICOM:
        return err_set(err, SS_EFORMAT, "%s: not a slide we can read: a "
                       "DICOM file, and DICOM whole-slide images are not "
                       "supported; export the slide as TIFF or SVS", path);
    case K_TEXT:
        return err_set(err, SS_EFORMAT, "%s: not a slide: neither OpenSlide "
                       "nor the TIFF, PNG or JPEG readers recognise it (the "
                       "file is text)", path);
    default:
        return err_set(err, SS_EFORMAT, "%s: not a slide: neither OpenSlide "
                       "nor the TIFF, PNG or JPEG readers recognise it",
                       path);
    }
}

/* OpenSlide first; a TIFF it recognises but cannot open is tried with
 * libtiff, and when that fails too OpenSlide's reason is reported.
 * OpenSlide's "generic-tiff" (plain tiled TIFF) goes to libtiff: with
 * libtiff 4.5, OpenSlide 3.4.1 reads levels smaller than one tile wrongly
 * (boxes.tiff: level 2 two rows off, level 3 blank), and plain tiled TIFF
 * is exactly what the libtiff back end is for. */
static int
open_backend(struct slide *s, enum kind k, enum slide_backend b,
             struct ss_err *err)
{
    const char *vendor = b == SLIDE_BACKEND_ANY
                         ? openslide_detect_vendor(s->path) : NULL;
    struct ss_err os_err, tiff_err;
    int rc;

    if (vendor != NULL && strcmp(vendor, "generic-tiff") == 0 &&
        k == K_TIFF)
        vendor = NULL;
    if (vendor != NULL) {
        err_clear(&os_err);
        rc = slide__os_open(s, vendor, &os_err);
        if (rc == 0 || k != K_TIFF) {
            if (rc < 0 && err != NULL)
                *err = os_err;
            return rc;
        }
        log_debug("slide", "openslide refused path=%s vendor=%s "
                  "reason=\"%s\" trying=libtiff", s->path, vendor,
                  os_err.msg);
        if (s->ops != NULL && s->ops->close != NULL)
            s->ops->close(s);
        s->ops = NULL;
        s->priv = NULL;
        err_clear(&tiff_err);
        rc = slide__tiff_open(s, &tiff_err);
        if (rc < 0 && err != NULL)
            *err = os_err;
        return rc;
    }
    if (k == K_TIFF)
        return slide__tiff_open(s, err);
    if (b == SLIDE_BACKEND_ANY && (k == K_PNG || k == K_JPEG))
        return slide__plain_open(s, k == K_PNG, err);
    if (b == SLIDE_BACKEND_LIBTIFF && k != K_TIFF)
        return err_set(err, SS_EFORMAT, "%s: not a TIFF", s->path);
    return refuse(s->path, k, err);
}

/* Override, else what the back end found, else the TIFF metadata. */
static int
settle_mpp(struct slide *s, const struct slide_opts *o, enum kind k,
           struct ss_err *err)
{
    /* The file's own is read even under an override, so that a caller
     * can tell an override that contradicts the file from one that fills
     * a gap (slide_mpp_given_check). */
    if (s->mpp_from == SLIDE_MPP_NONE && k == K_TIFF && !s->tiff_meta_read)
        slide__tiff_file_mpp(s);
    s->stated_mpp = s->mpp_from != SLIDE_MPP_NONE ? s->mpp : 0;
    s->stated_from = s->mpp_from;
    if (o->mpp > 0) {
        s->mpp = o->mpp;
        s->mpp_from = SLIDE_MPP_OVERRIDE;
    }
    if (s->mpp_from != SLIDE_MPP_NONE || !o->need_mpp)
        return 0;
    return err_set(err, SS_EFORMAT, "%s: the file states no pixel size "
                   "(µm per pixel): %s; %s", s->path,
                   s->mpp_why[0] != '\0' ? s->mpp_why
                   : "no pixel size in its metadata",
                   o->mpp_hint != NULL ? o->mpp_hint : "state one");
}

static int
check_path(const char *path, enum kind *k, struct ss_err *err)
{
    unsigned char b[132];
    struct stat st;
    FILE *f;
    size_t n;

    if (stat(path, &st) != 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, -EINVAL, "%s: not a regular file", path);
    f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    n = fread(b, 1, sizeof(b), f);
    fclose(f);
    *k = sniff(b, n);
    return 0;
}

int
slide_open(const char *path, const struct slide_opts *o, struct slide **out,
           struct ss_err *err)
{
    struct slide_opts def;
    struct slide *s;
    enum kind k = K_UNKNOWN;
    int rc;

    *out = NULL;
    if (o == NULL) {
        slide_opts_default(&def);
        o = &def;
    }
    rc = check_path(path, &k, err);
    if (rc < 0)
        return rc;
    if (strlen(path) >= sizeof(s->path))
        return err_set(err, -ENAMETOOLONG, "%.64s...: path too long", path);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    snprintf(s->path, sizeof(s->path), "%s", path);
    memcpy(s->bg, o->background, 3);
    pthread_mutex_init(&s->lock, NULL);
    rc = k == K_TIFF ? slide__tiff_intact(path, err) : 0;
    if (rc == 0)
        rc = open_backend(s, k, o->backend, err);
    if (rc == 0)
        rc = settle_mpp(s, o, k, err);
    if (rc < 0) {
        slide_close(s);
        return rc;
    }
    log_debug("slide", "open path=%s format=%s levels=%d w=%lld h=%lld "
              "mpp=%.4f mpp_from=%s", s->path, s->format, s->nlevels,
              (long long)s->level[0].w, (long long)s->level[0].h, s->mpp,
              slide_mpp_source_name(s->mpp_from));
    *out = s;
    return 0;
}

int
slide_open_spec(const char *spec, const struct slide_opts *o,
                struct slide **out, struct ss_err *err)
{
    struct slide_opts oo;
    char path[4096];
    double mpp;
    int rc;

    *out = NULL;
    rc = slide_spec_parse(spec, path, sizeof(path), &mpp, err);
    if (rc < 0)
        return rc;
    if (o != NULL)
        oo = *o;
    else
        slide_opts_default(&oo);
    if (!(oo.mpp > 0))
        oo.mpp = mpp;
    return slide_open(path, &oo, out, err);
}

void
slide_close(struct slide *s)
{
    if (s == NULL)
        return;
    if (s->ops != NULL && s->ops->close != NULL)
        s->ops->close(s);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *
slide_path(const struct slide *s)
{
    return s->path;
}

const char *
slide_format(const struct slide *s)
{
    return s->format;
}

const char *
slide_stain(const struct slide *s)
{
    return s->stain[0] != '\0' ? s->stain : NULL;
}

/* The letters and digits of name, upper-cased, into buf. */
static void
stain_key(const char *name, char *buf, size_t len)
{
    size_t n = 0;

    for (; *name != '\0' && n + 1 < len; name++)
        if (isalnum((unsigned char)*name))
            buf[n++] = (char)toupper((unsigned char)*name);
    buf[n] = '\0';
}

bool
slide_stain_same(const char *a, const char *b)
{
    char ka[32], kb[32];

    if (a == NULL || b == NULL)
        return a == b;
    stain_key(a, ka, sizeof(ka));
    stain_key(b, kb, sizeof(kb));
    return strcmp(ka, kb) == 0;
}

double
slide_mpp(const struct slide *s)
{
    return s->mpp;
}

enum slide_mpp_from
slide_mpp_source(const struct slide *s)
{
    return s->mpp_from;
}

double
slide_stated_mpp(const struct slide *s, enum slide_mpp_from *from)
{
    if (from != NULL)
        *from = s->stated_from;
    return s->stated_mpp;
}

int
slide_mpp_given_check(const struct slide *s, double given, bool force,
                      const char *force_hint, struct ss_err *err)
{
    enum slide_mpp_from from;
    double own = slide_stated_mpp(s, &from);

    if (!(own > 0) || !(given > 0) ||
        fabs(given - own) <= SLIDE_MPP_SAME * own)
        return 0;
    if (!force)
        return err_set(err, -EDOM, "%s states %.4g µm/px (%s); the %.4g "
                       "µm/px given contradicts it; %s", s->path, own,
                       slide_mpp_source_name(from), given, force_hint);
    log_warn("slide", "path=%s given_mpp=%.4g stated_mpp=%.4g from=%s "
             "forced", s->path, given, own, slide_mpp_source_name(from));
    return 0;
}

const char *
slide_mpp_source_name(enum slide_mpp_from f)
{
    switch (f) {
    case SLIDE_MPP_OVERRIDE: return "override";
    case SLIDE_MPP_OPENSLIDE: return "openslide";
    case SLIDE_MPP_OME: return "ome-xml";
    case SLIDE_MPP_TIFF: return "tiff-resolution";
    default: return "none";
    }
}

int
slide_level_count(const struct slide *s)
{
    return s->nlevels;
}

void
slide_level_size(const struct slide *s, int level, int64_t *w, int64_t *h)
{
    if (level < 0 || level >= s->nlevels) {
        *w = *h = 0;
        return;
    }
    *w = s->level[level].w;
    *h = s->level[level].h;
}

double
slide_level_downsample(const struct slide *s, int level)
{
    return level >= 0 && level < s->nlevels ? s->level[level].ds : 0;
}

int
slide_best_level(const struct slide *s, double ds)
{
    int i, best = 0;

    for (i = 1; i < s->nlevels; i++)
        if (s->level[i].ds <= ds * 1.0001 &&
            s->level[i].ds > s->level[best].ds)
            best = i;
    return best;
}

void
slide_set_background(struct slide *s, const uint8_t rgb[3])
{
    pthread_mutex_lock(&s->lock);
    if (memcmp(s->bg, rgb, 3) != 0) {
        memcpy(s->bg, rgb, 3);
        if (s->ops->background != NULL)
            s->ops->background(s);
    }
    pthread_mutex_unlock(&s->lock);
}

static void
fill_bg(uint8_t *rgb, size_t n, const uint8_t bg[3])
{
    size_t i;

    for (i = 0; i < n; i++)
        memcpy(rgb + 3 * i, bg, 3);
}

int
slide_read(struct slide *s, int level, int64_t x0, int64_t y0, int w, int h,
           uint8_t *rgb, struct ss_err *err)
{
    int64_t lx, ly;
    int rc;

    if (level < 0 || level >= s->nlevels)
        return err_set(err, -EINVAL, "%s: no level %d (the slide has %d)",
                       s->path, level, s->nlevels);
    if (w <= 0 || h <= 0)
        return err_set(err, -EINVAL, "%s: empty region %dx%d", s->path, w,
                       h);
    lx = (int64_t)floor((double)x0 / s->level[level].ds);
    ly = (int64_t)floor((double)y0 / s->level[level].ds);
    pthread_mutex_lock(&s->lock);
    fill_bg(rgb, (size_t)w * h, s->bg);
    rc = s->ops->read(s, level, x0, y0, lx, ly, w, h, rgb, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int
slide_read_img(struct slide *s, int level, int64_t x0, int64_t y0, int w,
               int h, struct img **out, struct ss_err *err)
{
    struct img *im;
    int rc;

    *out = NULL;
    if (w <= 0 || h <= 0)
        return err_set(err, -EINVAL, "%s: empty region %dx%d", s->path, w,
                       h);
    im = img_new(w, h, 3, IMG_U8);
    if (im == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory for a %dx%d "
                       "region", s->path, w, h);
    rc = slide_read(s, level, x0, y0, w, h, im->data, err);
    if (rc < 0) {
        img_free(im);
        return rc;
    }
    *out = im;
    return 0;
}

int
slide_associated(struct slide *s, const char *name, struct img **out,
                 struct ss_err *err)
{
    int rc;

    *out = NULL;
    if (s->ops->associated == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    rc = s->ops->associated(s, name, out, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}
