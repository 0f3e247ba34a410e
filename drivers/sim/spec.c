/* SPDX-License-Identifier: MIT */
/*
 * Slide specs: "phantom:STAIN[:seed=N][:w_mm=MM][:h_mm=MM][:id=TEXT]" and
 * "FILE[@MPP][:force_mpp][:stain=S][:id=TEXT]", split into struct
 * sim__spec.  Parsing touches no file, so sim_slide_spec_check() can
 * refuse a bad spec when a scan is queued; sim_load_slide() parses with
 * the same code, so both say the same thing about the same spec.  An
 * @MPP that contradicts the pixel size the file states is refused when
 * the file is opened (sim__spec_mpp_check), unless ":force_mpp".  Every
 * refusal reads
 * "'SPEC': CAUSE; a phantom is ..." (or "a file slide is ...").
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "storage/slide.h"

#define PH_FORM "a phantom is phantom:HE|KI67|CK[:seed=N][:w_mm=MM]" \
                "[:h_mm=MM][:id=TEXT]"
#define FILE_FORM "a file slide is FILE[@MPP][:force_mpp]" \
                  "[:stain=HE|KI67|CK][:id=TEXT]"

static int
refuse(const char *spec, const char *form, struct ss_err *err,
       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
refuse(const char *spec, const char *form, struct ss_err *err,
       const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return err_set(err, SS_ECONFIG, "'%s': %s; %s", spec, why, form);
}

/* A finite number in [lo, hi], the whole text. */
static bool
number_in(const char *text, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) ||
        v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* One "key=value" option of a phantom spec (opt is modified). */
static int
ph_option(const char *spec, char *opt, struct sim__spec *p,
          struct ss_err *err)
{
    static const char *const known[] = { "seed", "w_mm", "h_mm", "id" };
    char *eq = strchr(opt, '=');
    size_t i;
    double v;

    if (eq != NULL)
        *eq++ = '\0';
    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(opt, known[i]) == 0)
            break;
    if (i == sizeof(known) / sizeof(known[0]))
        return refuse(spec, PH_FORM, err, "'%s' is not an option", opt);
    if (eq == NULL)
        return refuse(spec, PH_FORM, err, "%s has no value", opt);
    if (strcmp(opt, "id") == 0) {
        snprintf(p->id, sizeof(p->id), "%s", eq);
        return 0;
    }
    if (strcmp(opt, "seed") == 0) {
        if (util_parse_u64(eq, &p->seed) < 0)
            return refuse(spec, PH_FORM, err, "seed '%s' is not a whole "
                          "number from 0 to %" PRIu64, eq, UINT64_MAX);
        p->has_seed = true;
        return 0;
    }
    if (!number_in(eq, SIM_PHANTOM_MIN_MM, SIM_PHANTOM_MAX_MM, &v))
        return refuse(spec, PH_FORM, err, "%s '%s' is not a number from "
                      "%g to %g", opt, eq, SIM_PHANTOM_MIN_MM,
                      SIM_PHANTOM_MAX_MM);
    *(opt[0] == 'w' ? &p->w_mm : &p->h_mm) = v;
    return 0;
}

static int
phantom_parse(const char *spec, struct sim__spec *p, struct ss_err *err)
{
    char buf[SIM_SPEC_MAX], *colon, *opt, *save = NULL;
    int rc = 0;

    p->phantom = true;
    p->w_mm = 4;
    p->h_mm = 3;
    snprintf(buf, sizeof(buf), "%s", spec + strlen("phantom:"));
    colon = strchr(buf, ':');
    if (colon != NULL)
        *colon = '\0';
    if (buf[0] == '\0')
        return refuse(spec, PH_FORM, err, "no stain");
    p->stain = sim__stain_parse(buf);
    if (p->stain < 0)
        return refuse(spec, PH_FORM, err, "stain '%s' is not HE, KI67 or "
                      "CK", buf);
    if (colon == NULL)
        return 0;
    for (opt = strtok_r(colon + 1, ":", &save); rc == 0 && opt != NULL;
         opt = strtok_r(NULL, ":", &save))
        rc = ph_option(spec, opt, p, err);
    return rc;
}

static int
file_parse(const char *spec, struct sim__spec *p, struct ss_err *err)
{
    char *colon, *at, *end;
    double mpp;

    snprintf(p->path, sizeof(p->path), "%s", spec);
    p->stain = -1;
    while ((colon = strrchr(p->path, ':')) != NULL) {
        if (strncmp(colon, ":stain=", 7) == 0) {
            p->stain = sim__stain_parse(colon + 7);
            if (p->stain < 0)
                return refuse(spec, FILE_FORM, err, "stain '%s' is not HE, "
                              "KI67 or CK", colon + 7);
        } else if (strncmp(colon, ":id=", 4) == 0) {
            snprintf(p->id, sizeof(p->id), "%s", colon + 4);
        } else if (strcmp(colon, ":force_mpp") == 0) {
            p->force_mpp = true;
        } else {
            break;
        }
        *colon = '\0';
    }
    /* "@MPP" only when it is a number: '@' may be part of a file name. */
    at = strrchr(p->path, '@');
    if (at != NULL) {
        mpp = strtod(at + 1, &end);
        if (end != at + 1 && *end == '\0') {
            if (!(mpp > 0.01 && mpp < 1000))
                return refuse(spec, FILE_FORM, err, "pixel size '%s' um "
                              "must be more than 0.01 and less than 1000",
                              at + 1);
            p->mpp = mpp;
            *at = '\0';
        }
    }
    if (p->path[0] == '\0')
        return refuse(spec, FILE_FORM, err, "no file name");
    if (p->force_mpp && !(p->mpp > 0))
        return refuse(spec, FILE_FORM, err, ":force_mpp without an @MPP "
                      "to force");
    return 0;
}

int
sim__spec_mpp_check(const struct slide *sl, double mpp, bool force_mpp,
                    struct ss_err *err)
{
    char hint[96];

    snprintf(hint, sizeof(hint), "add :force_mpp (FILE@MPP:force_mpp) to "
             "use %.4g µm/px anyway", mpp);
    return slide_mpp_given_check(sl, mpp, force_mpp, hint, err);
}

int
sim__spec_parse(const char *spec, struct sim__spec *p, struct ss_err *err)
{
    memset(p, 0, sizeof(*p));
    if (spec == NULL || spec[0] == '\0')
        return err_set(err, SS_ECONFIG, "no slide: the spec is empty; %s, "
                       "or %s", FILE_FORM, PH_FORM);
    if (strlen(spec) >= SIM_SPEC_MAX)
        return err_set(err, SS_ECONFIG, "'%.40s...': longer than %d "
                       "characters", spec, SIM_SPEC_MAX - 1);
    if (strncmp(spec, "phantom:", 8) == 0)
        return phantom_parse(spec, p, err);
    return file_parse(spec, p, err);
}

int
sim_slide_spec_check(const char *spec, struct ss_err *err)
{
    struct sim__spec p;

    return sim__spec_parse(spec, &p, err);
}

size_t
sim_slide_spec_file_len(const char *spec)
{
    struct sim__spec p;
    struct ss_err e;

    if (sim__spec_parse(spec, &p, &e) < 0 || p.phantom)
        return 0;
    return strlen(p.path);
}

/* The file of a file spec: an absolute path to a regular file. */
static int
file_usable(const char *spec, const char *path, struct ss_err *err)
{
    struct stat st;

    if (path[0] != '/')
        return refuse(spec, FILE_FORM, err, "%s is a relative path, and "
                      "the daemon's working directory is not the caller's; "
                      "give the file's absolute path", path);
    /* A missing file is -ENOENT, so that a daemon answers not_found. */
    if (stat(path, &st) != 0)
        return err_set(err, errno == ENOENT ? -ENOENT : SS_ECONFIG,
                       "'%s': %s: %s", spec, path,
                       errno == ENOENT ? "no such file" : strerror(errno));
    if (S_ISDIR(st.st_mode))
        return err_set(err, SS_ECONFIG, "'%s': %s is a directory, not a "
                       "slide image", spec, path);
    if (!S_ISREG(st.st_mode))
        return err_set(err, SS_ECONFIG, "'%s': %s is not a regular file",
                       spec, path);
    return 0;
}

/* Decodes a 16 x 16 pixel sample at the centre of the smallest level and
 * of level 0: a file whose header opens but whose pixel data does not
 * decode ("Bogus marker length") fails here, not at the microscope.  Two
 * tiles at most are decoded, so a large slide is checked as fast as a
 * small one. */
static int
pixels_decode(struct slide *sl, struct ss_err *err)
{
    uint8_t rgb[16 * 16 * 3];
    int levels = slide_level_count(sl), i, level;
    int64_t w, h;
    double ds;
    int rc;

    for (i = 0; i < 2; i++) {
        level = i == 0 ? levels - 1 : 0;
        if (i == 1 && level == levels - 1)
            break;
        slide_level_size(sl, level, &w, &h);
        ds = slide_level_downsample(sl, level);
        rc = slide_read(sl, level, (int64_t)((double)(w / 2) * ds),
                        (int64_t)((double)(h / 2) * ds), 16, 16, rgb, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int
sim__spec_extent(const char *spec, double *w_um, double *h_um, char *stain,
                 size_t len, struct ss_err *err)
{
    struct sim__spec p;
    struct slide_opts o;
    struct slide *sl = NULL;
    struct ss_err why;
    char hint[SIM_SPEC_MAX + 32];
    int64_t w = 0, h = 0;
    int rc;

    if (stain != NULL)
        stain[0] = '\0';
    rc = sim__spec_parse(spec, &p, err);
    if (rc < 0)
        return rc;
    if (p.phantom) {
        *w_um = p.w_mm * 1000;
        *h_um = p.h_mm * 1000;
        return 0;
    }
    rc = file_usable(spec, p.path, err);
    if (rc < 0)
        return rc;
    /* The options the simulator opens the file with (drivers/sim/file.c),
     * so that what is refused here is what the scan would refuse. */
    slide_opts_default(&o);
    o.mpp = p.mpp;
    snprintf(hint, sizeof(hint), "give it as %s@MPP", p.path);
    o.mpp_hint = hint;
    rc = slide_open(p.path, &o, &sl, &why);
    /* A pixel size that contradicts the file's is the caller's mistake,
     * said as such, not "cannot be read". */
    if (rc == 0 && (rc = sim__spec_mpp_check(sl, p.mpp, p.force_mpp,
                                             err)) < 0) {
        slide_close(sl);
        return rc;
    }
    if (rc == 0)
        rc = pixels_decode(sl, &why);
    if (rc == 0) {
        slide_level_size(sl, 0, &w, &h);
        *w_um = (double)w * slide_mpp(sl);
        *h_um = (double)h * slide_mpp(sl);
        if (stain != NULL && slide_stain(sl) != NULL)
            snprintf(stain, len, "%s", slide_stain(sl));
    }
    slide_close(sl);
    if (rc < 0)
        return err_set(err, SS_ECONFIG, "'%s': cannot be read as a slide: "
                       "%s", spec, why.msg);
    return 0;
}

int
sim_slide_spec_open_check(const char *spec, struct ss_err *err)
{
    double w_um, h_um;

    return sim__spec_extent(spec, &w_um, &h_um, NULL, 0, err);
}

const char *
sim_slide_spec_stain(const char *spec)
{
    struct sim__spec p;
    struct ss_err e;

    if (sim__spec_parse(spec, &p, &e) < 0 || p.stain < 0)
        return NULL;
    return sim__stain_name(p.stain);
}

int
sim_slide_spec_file_stain(const char *spec, char *stain, size_t len,
                          struct ss_err *err)
{
    struct sim__spec p;
    struct slide_opts o;
    struct slide *sl = NULL;
    int rc;

    stain[0] = '\0';
    rc = sim__spec_parse(spec, &p, err);
    if (rc < 0 || p.phantom)
        return rc;
    slide_opts_default(&o);
    o.need_mpp = false;
    rc = slide_open(p.path, &o, &sl, err);
    if (rc == 0 && slide_stain(sl) != NULL)
        snprintf(stain, len, "%s", slide_stain(sl));
    slide_close(sl);
    return rc;
}
