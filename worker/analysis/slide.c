/* SPDX-License-Identifier: MIT */
/*
 * Slides as the analysis sees them: a level-0 raster with a pixel size,
 * read by rectangles resampled to any resolution.  Files are opened by
 * content through the slide reader (storage/slide.h): OpenSlide for
 * scanner formats and our own pyramids, libtiff for other tiled or
 * stripped TIFFs (OME-TIFF exports), and plain PNG or JPEG.  Every
 * failure names the file and the cause, since a worker error ends up on a
 * lab operator's screen.
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/slide.h"

struct an_slide {
    struct slide *sl;
    int64_t w, h;
    double mpp;
};

int
an_stain_parse(const char *s, enum an_stain *out)
{
    if (strcasecmp(s, "HE") == 0 || strcasecmp(s, "H&E") == 0)
        *out = AN_STAIN_HE;
    else if (strcasecmp(s, "KI67") == 0 || strcasecmp(s, "Ki-67") == 0)
        *out = AN_STAIN_KI67;
    else if (strcasecmp(s, "CK") == 0)
        *out = AN_STAIN_CK;
    else
        return -EINVAL;
    return 0;
}

int
an_ki67_scope_parse(const char *s, enum an_ki67_scope *out)
{
    if (strcmp(s, "tumor") == 0)
        *out = AN_KI67_TUMOR;
    else if (strcmp(s, "tissue") == 0)
        *out = AN_KI67_TISSUE;
    else
        return -EINVAL;
    return 0;
}

const char *
an_score_text(double v, char buf[16])
{
    if (!isfinite(v))
        return "n/a";
    snprintf(buf, 16, "%.4f", v);
    return buf;
}

const char *
an_stain_name(enum an_stain s)
{
    return s == AN_STAIN_KI67 ? "KI67" : s == AN_STAIN_CK ? "CK" : "HE";
}

int
an_mpp_parse(const char *text, double *mpp, struct ss_err *err)
{
    char *end;
    double v = strtod(text, &end);

    if (end == text || *end != '\0' || !isfinite(v) || v < AN_MPP_MIN ||
        v > AN_MPP_MAX)
        return err_set(err, -EINVAL, "--mpp wants a pixel size in %g..%g "
                       "µm/px, not '%s'", AN_MPP_MIN, AN_MPP_MAX, text);
    *mpp = v;
    return 0;
}

int
an_threads_parse(const char *text, int *threads, struct ss_err *err)
{
    uint64_t v;

    if (util_parse_u64(text, &v) < 0 || v > AN_THREADS_MAX)
        return err_set(err, -EINVAL, "--threads wants a whole number of "
                       "threads in 0..%d (0: one per CPU), not '%s'",
                       AN_THREADS_MAX, text);
    *threads = (int)v;
    return 0;
}

/* The given pixel size against the one the file states. */
static int
check_given_mpp(const struct slide *sl, double mpp, bool force,
                struct ss_err *err)
{
    double own = slide_mpp(sl);
    const char *from = slide_mpp_source_name(slide_mpp_source(sl));

    if (!(own > 0) || fabs(mpp - own) <= AN_MPP_SAME * own)
        return 0;
    if (!force)
        return err_set(err, -EDOM, "%s states %.4g µm/px (%s); the %.4g "
                       "µm/px given contradicts it; add --force-mpp to "
                       "analyse at %.4g anyway", slide_path(sl), own, from,
                       mpp, mpp);
    log_warn("analysis", "analysing at %.4g µm/px over the %.4g µm/px "
             "that %s states (%s)", mpp, own, slide_path(sl), from);
    return 0;
}

int
an_slide_open_mpp(const char *spec, double mpp, bool force_mpp,
                  struct an_slide **out, struct ss_err *err)
{
    struct slide_opts o;
    struct an_slide *s;
    char path[4096];
    double spec_mpp;
    int rc;

    *out = NULL;
    rc = slide_spec_parse(spec, path, sizeof(path), &spec_mpp, err);
    if (rc < 0)
        return rc;
    mpp = mpp > 0 ? mpp : spec_mpp;
    if (mpp != 0 && !(mpp >= AN_MPP_MIN && mpp <= AN_MPP_MAX))
        return err_set(err, -EINVAL, "%s: a pixel size of %g µm/px is not "
                       "in %g..%g", path, mpp, AN_MPP_MIN, AN_MPP_MAX);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    slide_opts_default(&o);
    o.need_mpp = !(mpp > 0);
    o.mpp_hint = "give it with --mpp";
    rc = slide_open(path, &o, &s->sl, err);
    if (rc == 0 && mpp > 0)
        rc = check_given_mpp(s->sl, mpp, force_mpp, err);
    if (rc < 0) {
        an_slide_close(s);
        return rc;
    }
    slide_level_size(s->sl, 0, &s->w, &s->h);
    s->mpp = mpp > 0 ? mpp : slide_mpp(s->sl);
    *out = s;
    return 0;
}

/* Training data and older callers: a given pixel size always wins. */
int
an_slide_open(const char *path, double mpp_override, struct an_slide **out,
              struct ss_err *err)
{
    return an_slide_open_mpp(path, mpp_override > 0 ? mpp_override : 0,
                             true, out, err);
}

void
an_slide_close(struct an_slide *s)
{
    if (s == NULL)
        return;
    slide_close(s->sl);
    free(s);
}

void
an_slide_size(const struct an_slide *s, int64_t *w, int64_t *h)
{
    *w = s->w;
    *h = s->h;
}

const char *
an_slide_stain(const struct an_slide *s)
{
    return slide_stain(s->sl);
}

double
an_slide_mpp(const struct an_slide *s)
{
    return s->mpp;
}

const char *
an_slide_path(const struct an_slide *s)
{
    return slide_path(s->sl);
}

/* The level-0 rectangle at the coarsest level no coarser than want_ds. */
static int
read_level(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0,
           int64_t h0, double want_ds, struct img **out, struct ss_err *err)
{
    int level = slide_best_level(s->sl, want_ds);
    double ds = slide_level_downsample(s->sl, level);
    int64_t lw = (int64_t)ceil(w0 / ds), lh = (int64_t)ceil(h0 / ds);

    if (lw * lh > ((int64_t)1 << 28))
        return err_set(err, -EFBIG, "%s: region %lldx%lld too large to "
                       "read at once", slide_path(s->sl), (long long)lw,
                       (long long)lh);
    return slide_read_img(s->sl, level, x0, y0, (int)lw, (int)lh, out, err);
}

int
an_slide_read(struct an_slide *s, int64_t x0, int64_t y0, int64_t w0,
              int64_t h0, int out_w, int out_h, struct img **out,
              struct ss_err *err)
{
    struct img *raw = NULL, *res;
    int rc;

    *out = NULL;
    if (w0 <= 0 || h0 <= 0 || out_w <= 0 || out_h <= 0)
        return err_set(err, -EINVAL, "%s: empty region", slide_path(s->sl));
    rc = read_level(s, x0, y0, w0, h0,
                    fmin((double)w0 / out_w, (double)h0 / out_h), &raw, err);
    if (rc < 0)
        return rc;
    res = an__resample(raw, out_w, out_h);
    img_free(raw);
    if (res == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", slide_path(s->sl));
    *out = res;
    return 0;
}
