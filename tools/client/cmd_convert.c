/* SPDX-License-Identifier: MIT */
/*
 * slidescan convert IN OUT [--mpp X [--force-mpp]] [--quality Q]
 *                          [--subsamp 420|444] [--bigtiff] [--slide-id ID]
 *                          [--stain S [--force-stain]]:
 * writes any slide the slide reader opens (storage/slide.h: OpenSlide
 * formats, OME-TIFF and other TIFFs, PNG, JPEG) as a slidescan
 * whole-slide image (storage/wsi.h).  Level 0 is streamed in bands, so a
 * tiled or stripped input is never held whole in memory.  Runs offline,
 * without the daemon.
 *
 * Decisions, so that a conversion never silently changes what a slide
 * means:
 *   - OUT must end in .svs, .tif or .tiff: the output is always a tiled,
 *     pyramidal TIFF, and a TIFF under a .png or .jpg name would mislead
 *     every program that trusts the name;
 *   - --quality takes 50..100, the range the daemon accepts for
 *     wsi_quality (below 50 JPEG artefacts reach nucleus scale);
 *   - --mpp (or IN@MPP) is refused when the slide states a different pixel
 *     size (beyond 1 %, as analyse, scan and frame refuse it), unless
 *     --force-mpp is given; then a warning names both values;
 *   - the stain IN declares (Aperio "Stain = KI67") is written to OUT;
 *     --stain labels a slide that declares none, and one that names
 *     another stain than IN's is refused unless --force-stain is given
 *     (a deliberate relabel, e.g. of a slide labelled wrongly at the
 *     scanner); then a warning names both;
 *   - OUT may not be IN itself, under the same name, through a symbolic
 *     link or as another hard link (same device and inode): that would
 *     replace the slide by a lossy re-encode of itself.
 *
 * LIMIT: a plain PNG or JPEG input is decoded whole into memory (the
 * formats cannot be read by region); TIFF inputs are not.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/img.h"
#include "storage/slide.h"
#include "storage/wsi.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"

#define BAND_ROWS 256
#define QUALITY_MIN 50                  /* daemon.conf wsi_quality range */
#define QUALITY_MAX 100

struct convert_args {
    const char *in, *out;
    double mpp;                         /* --mpp or IN@MPP, 0: none */
    bool force_mpp;
    bool mpp_refused;                   /* --mpp contradicted the slide */
    bool force_stain;
    bool stain_refused;                 /* --stain contradicted it */
    struct wsi_meta m;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: slidescan convert IN OUT [--mpp X [--force-mpp]]\n"
            "                         [--quality 50..100] [--subsamp 420|444]\n"
            "                         [--bigtiff] [--slide-id ID]\n"
            "                         [--stain S [--force-stain]]\n"
            "\n"
            "Writes IN (any slide OpenSlide reads, an OME-TIFF or other\n"
            "TIFF, a PNG or JPEG image) as a pyramidal slidescan WSI at OUT,\n"
            "which must end in .svs, .tif or .tiff.  The pixel size is the\n"
            "one IN states; --mpp (or IN@MPP) gives it when IN states none.\n"
            "A --mpp that contradicts the slide is refused unless\n"
            "--force-mpp is given.  OUT keeps the stain IN declares;\n"
            "--stain names it for an IN that declares none, and one that\n"
            "contradicts IN's is refused unless --force-stain is given.\n"
            "OUT may not be IN itself (nor a link\n"
            "to it).  Defaults: quality 90, 4:4:4, BigTIFF when needed.\n");
}

/* The pixel size to write: the slide's own, or the one given when the
 * slide has none, or the one given over the slide's with --force-mpp. */
static int
choose_mpp(struct convert_args *a, struct slide *s, double *mpp,
           struct ss_err *err)
{
    enum slide_mpp_from from;
    double own = slide_mpp(s), stated = slide_stated_mpp(s, &from);
    char hint[96];

    *mpp = own;
    if (!(a->mpp > 0))
        return 0;
    *mpp = a->mpp;
    snprintf(hint, sizeof(hint), "add --force-mpp to write %.4g anyway",
             a->mpp);
    if (slide_mpp_given_check(s, a->mpp, a->force_mpp, hint, err) < 0) {
        a->mpp_refused = true;
        return err->code;
    }
    if (a->force_mpp && stated > 0 &&
        fabs(a->mpp - stated) > SLIDE_MPP_SAME * stated)
        fprintf(stderr, "slidescan convert: warning: writing %.4g µm/px "
                "over the %.4g µm/px that %s states (%s)\n", a->mpp,
                stated, a->in, slide_mpp_source_name(from));
    return 0;
}

/* The stain to write: the slide's own, or the one given when the slide
 * declares none, or the one given over the slide's with --force-stain. */
static int
choose_stain(struct convert_args *a, struct slide *s, struct ss_err *err)
{
    const char *own = slide_stain(s);

    if (own == NULL)
        return 0;
    if (a->m.stain[0] == '\0' || slide_stain_same(own, a->m.stain)) {
        snprintf(a->m.stain, sizeof(a->m.stain), "%s", own);
        return 0;
    }
    a->stain_refused = !a->force_stain;
    if (!a->force_stain)
        return err_set(err, -EINVAL, "%s declares stain %s; --stain %s "
                       "contradicts it; add --force-stain to relabel the "
                       "slide as %s", a->in, own, a->m.stain, a->m.stain);
    fprintf(stderr, "slidescan convert: warning: writing stain %s over the "
            "stain %s that %s declares\n", a->m.stain, own, a->in);
    return 0;
}

static int
stream(struct slide *s, const char *out, const struct wsi_meta *m,
       struct ss_err *err)
{
    int64_t w, h, y;
    uint8_t *rgb;
    struct wsi_writer *wr = NULL;
    int rc;

    slide_level_size(s, 0, &w, &h);
    if (w > INT32_MAX || h > INT32_MAX)
        return err_set(err, -EFBIG, "%s: %lldx%lld pixels is too large",
                       slide_path(s), (long long)w, (long long)h);
    rgb = malloc((size_t)w * BAND_ROWS * 3);
    if (rgb == NULL)
        return err_set(err, -ENOMEM, "out of memory for %lld px rows",
                       (long long)w);
    rc = wsi_writer_open(out, (int)w, (int)h, m, &wr, err);
    for (y = 0; rc == 0 && y < h; y += BAND_ROWS) {
        int n = h - y < BAND_ROWS ? (int)(h - y) : BAND_ROWS;

        rc = slide_read(s, 0, 0, y, (int)w, n, rgb, err);
        if (rc == 0)
            rc = wsi_writer_rows(wr, rgb, n, err);
    }
    if (rc == 0)
        rc = wsi_writer_finish(wr, err);
    else if (wr != NULL)
        wsi_writer_abort(wr);
    free(rgb);
    return rc;
}

static int
convert(struct convert_args *a, struct ss_err *err)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct img *label = NULL, *macro = NULL;
    int rc;

    slide_opts_default(&o);
    o.need_mpp = !(a->mpp > 0);
    o.mpp_hint = "give it with --mpp";
    rc = slide_open(a->in, &o, &s, err);
    if (rc == 0)
        rc = choose_mpp(a, s, &a->m.mpp, err);
    if (rc == 0)
        rc = choose_stain(a, s, err);
    if (rc == 0)
        rc = slide_associated(s, "label", &label, err);
    if (rc == 0)
        rc = slide_associated(s, "macro", &macro, err);
    a->m.label = label;
    a->m.macro = macro;
    if (rc == 0)
        rc = stream(s, a->out, &a->m, err);
    img_free(label);
    img_free(macro);
    slide_close(s);
    return rc;
}

static int
number(const char *s, double *v)
{
    char *end;

    *v = strtod(s, &end);
    return *end == '\0' && end != s && isfinite(*v);
}

static bool
tiff_name(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');

    if (dot == NULL || (slash != NULL && dot < slash))
        return false;
    return strcasecmp(dot, ".svs") == 0 || strcasecmp(dot, ".tif") == 0 ||
           strcasecmp(dot, ".tiff") == 0;
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
bad(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "slidescan convert: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return -EINVAL;
}

/* One option at argv[*i]; 0, or -EINVAL after saying why. */
static int
option(int argc, char **argv, int *i, struct convert_args *a)
{
    const char *o = argv[*i], *next = *i + 1 < argc ? argv[*i + 1] : NULL;
    double v;

    if (strcmp(o, "--bigtiff") == 0) {
        a->m.bigtiff = 1;
        return 0;
    }
    if (strcmp(o, "--force-mpp") == 0) {
        a->force_mpp = true;
        return 0;
    }
    if (strcmp(o, "--force-stain") == 0) {
        a->force_stain = true;
        return 0;
    }
    if (next == NULL)
        return bad("bad argument '%s'", o);
    (*i)++;
    if (strcmp(o, "--mpp") == 0) {
        if (!number(next, &v) || !(v > 0 && v <= 1000))
            return bad("--mpp wants a pixel size in (0, 1000] µm, not '%s'",
                       next);
        a->mpp = v;
    } else if (strcmp(o, "--quality") == 0) {
        if (!number(next, &v) || v != floor(v) || v < QUALITY_MIN ||
            v > QUALITY_MAX)
            return bad("--quality wants a whole number in 50..100 (the "
                       "daemon's wsi_quality range), not '%s'", next);
        a->m.quality = (int)v;
    } else if (strcmp(o, "--subsamp") == 0) {
        if (!number(next, &v) || (v != 420 && v != 444))
            return bad("--subsamp wants 420 or 444, not '%s'", next);
        a->m.subsamp = (int)v;
    } else if (strcmp(o, "--slide-id") == 0) {
        snprintf(a->m.slide_id, sizeof(a->m.slide_id), "%s", next);
    } else if (strcmp(o, "--stain") == 0) {
        snprintf(a->m.stain, sizeof(a->m.stain), "%s", next);
    } else {
        return bad("bad argument '%s'", o);
    }
    return 0;
}

static int
parse(int argc, char **argv, struct convert_args *a)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *o = argv[i];

        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (o[0] == '-' && o[1] != '\0') {
            if (option(argc, argv, &i, a) < 0)
                return -EINVAL;
        } else if (a->in == NULL) {
            a->in = o;
        } else if (a->out == NULL) {
            a->out = o;
        } else {
            return bad("bad argument '%s'", o);
        }
    }
    if (a->in == NULL || a->out == NULL)
        return bad("needs IN and OUT");
    if (!tiff_name(a->out))
        return bad("OUT '%s' must end in .svs, .tif or .tiff: convert "
                   "writes a pyramidal TIFF, never PNG or JPEG", a->out);
    return 0;
}

/* OUT names the file IN names (symbolic links followed, hard links
 * compared by inode).  An OUT that does not exist yet cannot be IN. */
static bool
same_file(const char *in, const char *out)
{
    struct stat si, so;

    return stat(in, &si) == 0 && stat(out, &so) == 0 &&
           si.st_dev == so.st_dev && si.st_ino == so.st_ino;
}

int
cmd_convert(int argc, char **argv)
{
    struct convert_args a;
    struct ss_err err;
    char path[4096];
    double spec_mpp;
    int rc;

    memset(&a, 0, sizeof(a));
    wsi_meta_default(&a.m);
    rc = parse(argc, argv, &a);
    if (rc != 0) {
        if (rc < 0)
            usage(stderr);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    err_clear(&err);
    if (slide_spec_parse(a.in, path, sizeof(path), &spec_mpp, &err) < 0) {
        fprintf(stderr, "slidescan convert: %s\n", err.msg);
        return EXIT_USAGE;
    }
    a.in = path;
    if (same_file(a.in, a.out)) {
        fprintf(stderr, "slidescan convert: OUT '%s' is the same file as "
                "IN '%s': converting would replace the slide with a lossy "
                "re-encode of itself; choose another OUT\n", a.out, a.in);
        return EXIT_USAGE;
    }
    if (access(a.in, F_OK) == 0 && client__out_parent("convert", a.out) != 0)
        return EXIT_FAIL;
    if (!(a.mpp > 0))
        a.mpp = spec_mpp;
    if (convert(&a, &err) < 0) {
        fprintf(stderr, "slidescan convert: %s\n", err.msg);
        return err.code == -ENOENT ? EXIT_NOTFOUND
             : a.mpp_refused || a.stain_refused ? EXIT_USAGE : EXIT_FAIL;
    }
    return EXIT_OK;
}
