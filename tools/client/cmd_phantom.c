/* SPDX-License-Identifier: MIT */
/*
 * slidescan phantom: writes a procedural phantom slide (H&E, KI67 or CK)
 * with its ground truth: the image as a pyramidal TIFF (.tif, .tiff,
 * .svs) or a PNG, the label map as a PNG (0 glass, 1 tumor, 2 stroma) and
 * the truth as JSON.  The same phantom can be placed on the simulated
 * microscope as "phantom:STAIN:seed=N:w_mm=W:h_mm=H".  Each output's
 * name must say what it holds (--out .tif/.tiff/.svs/.png, --labels
 * .png, --truth .json), its directory must exist, and when any output
 * fails none of the files this run wrote is left.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/util.h"
#include "drivers/microscope.h"
#include "drivers/sim/sim.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"

static void
usage(FILE *f)
{
    fprintf(f,
"usage: slidescan phantom --out FILE.tif|FILE.png [options]\n"
"\n"
"Writes a procedural phantom slide and its ground truth.\n"
"  --stain S          HE, KI67 or CK (default HE)\n"
"  --seed N           the phantom's seed (default 1)\n"
"  --size-mm WxH      size of the section image (default 4x3)\n"
"  --mpp M            micrometres per pixel (default 0.5)\n"
"  --out FILE         .tif/.tiff/.svs: pyramidal TIFF; .png: PNG (no\n"
"                     other name)\n"
"  --labels FILE.png  label map: 0 glass, 1 tumor, 2 stroma\n"
"  --truth FILE.json  areas, nuclei, KI67 fraction, CK area\n"
"  --id TEXT          slide id on the label (default PH-STAIN-SEED)\n");
}

struct ph_opts {
    const char *stain, *out, *labels, *truth, *id;
    unsigned long long seed;
    double w_mm, h_mm, mpp;
};

static int
parse_size(const char *v, double *w, double *h)
{
    char *end;

    *w = strtod(v, &end);
    if (end == v || (*end != 'x' && *end != 'X'))
        return -1;
    v = end + 1;
    *h = strtod(v, &end);
    if (end == v || *end != '\0')
        return -1;
    return *w >= 0.05 && *w <= 60 && *h >= 0.05 && *h <= 60 ? 0 : -1;
}

/* Whether path ends in one of the extensions in exts (NULL-terminated),
 * without case; else says which it must end in. */
static bool
named(const char *opt, const char *path, const char *const *exts)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    int i;

    for (i = 0; dot != NULL && (slash == NULL || dot > slash) &&
                exts[i] != NULL; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return true;
    fprintf(stderr, "slidescan phantom: %s '%s' must end in", opt, path);
    for (i = 0; exts[i] != NULL; i++)
        fprintf(stderr, "%s %s", i == 0 ? "" : exts[i + 1] ? "," : " or",
                exts[i]);
    fprintf(stderr, ": the name says what the file holds\n");
    return false;
}

/* The outputs' names and directories, before anything is written. */
static int
check_outputs(const struct ph_opts *o)
{
    static const char *const image[] = { ".tif", ".tiff", ".svs", ".png",
                                         NULL };
    static const char *const png[] = { ".png", NULL };
    static const char *const json[] = { ".json", NULL };
    const char *path[3] = { o->out, o->labels, o->truth };
    int i;

    if ((o->out != NULL && !named("--out", o->out, image)) ||
        (o->labels != NULL && !named("--labels", o->labels, png)) ||
        (o->truth != NULL && !named("--truth", o->truth, json)))
        return EXIT_USAGE;
    for (i = 0; i < 3; i++)
        if (path[i] != NULL && client__out_parent("phantom", path[i]) != 0)
            return EXIT_FAIL;
    return 0;
}

static int
parse(int argc, char **argv, struct ph_opts *o)
{
    static const struct option lo[] = {
        { "stain", 1, NULL, 's' }, { "seed", 1, NULL, 'r' },
        { "size-mm", 1, NULL, 'z' }, { "mpp", 1, NULL, 'm' },
        { "out", 1, NULL, 'o' }, { "labels", 1, NULL, 'l' },
        { "truth", 1, NULL, 't' }, { "id", 1, NULL, 'i' },
        { "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    uint64_t seed;
    char *end;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's': o->stain = optarg; break;
        case 'o': o->out = optarg; break;
        case 'l': o->labels = optarg; break;
        case 't': o->truth = optarg; break;
        case 'i': o->id = optarg; break;
        case 'r':
            if (util_parse_u64(optarg, &seed) < 0) {
                fprintf(stderr, "slidescan phantom: --seed: '%s' is not a "
                        "whole number from 0 to %" PRIu64 "\n", optarg,
                        UINT64_MAX);
                return -1;
            }
            o->seed = seed;
            break;
        case 'z':
            if (parse_size(optarg, &o->w_mm, &o->h_mm) < 0) {
                fprintf(stderr, "slidescan phantom: --size-mm: '%s' is not "
                        "WxH with sides of 0.05 to 60 mm\n", optarg);
                return -1;
            }
            break;
        case 'm':
            o->mpp = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(o->mpp >= 0.1 &&
                                                   o->mpp <= 100)) {
                fprintf(stderr, "slidescan phantom: --mpp: '%s' is not a "
                        "pixel size of 0.1 to 100 um\n", optarg);
                return -1;
            }
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (o->out == NULL && o->labels == NULL && o->truth == NULL) {
        fprintf(stderr, "slidescan phantom: give --out, --labels or "
                "--truth\n");
        return -1;
    }
    return 0;
}

int
cmd_phantom(int argc, char **argv)
{
    struct ph_opts o = { .stain = "HE", .seed = 1, .w_mm = 4, .h_mm = 3,
                         .mpp = 0.5 };
    struct sim_config c;
    struct microscope *m = NULL;
    struct ss_err e;
    int rc;

    rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    rc = check_outputs(&o);
    if (rc != 0)
        return rc;
    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "phantom:%s:seed=%llu:w_mm=%g:"
             "h_mm=%g%s%s", o.stain, o.seed, o.w_mm, o.h_mm,
             o.id != NULL ? ":id=" : "", o.id != NULL ? o.id : "");
    rc = sim_microscope_new(&c, &m, &e);
    if (rc == 0)
        rc = sim_phantom_write(sim_of(m), o.mpp, o.out, o.labels, o.truth,
                               &e);
    microscope_free(m);
    if (rc < 0) {
        fprintf(stderr, "slidescan phantom: %s\n", e.msg);
        return rc == SS_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
    }
    printf("phantom %s %s seed=%llu %gx%g mm mpp=%g\n", o.stain,
           o.out != NULL ? o.out : "-", o.seed, o.w_mm, o.h_mm, o.mpp);
    return EXIT_OK;
}
