/* SPDX-License-Identifier: MIT */
/*
 * slidescan annotations FILE.geojson... --slide WSI --out DIR [--mpp UM]
 *
 * Imports QuPath GeoJSON annotations of one slide (one file per
 * annotator, or several annotators in one file): rasterises each
 * annotator's labels at --mpp (2.0 µm/px, the model resolution), writes
 * DIR/labels_<annotator>.png, the majority-vote consensus DIR/labels.png
 * (usable as truth for `slidescan eval` and `slidescan train`), and
 * DIR/agreement.json with Dice and Cohen's kappa for each pair.
 * An --mpp so fine that a raster would pass ANN_RASTER_MAX_PX is refused
 * (exit 2) before anything is allocated; a missing input exits 5.  Each
 * feature left out is reported with its cause; when none is left the
 * command fails (exit 1) and writes nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tools/client/client.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/geojson.h"

#define MAX_ANN 32
/* Largest label raster: 256 Mi px, 256 MiB per annotator. */
#define ANN_RASTER_MAX_PX 268435456.0

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: slidescan annotations FILE.geojson... --slide WSI --out DIR"
        " [--mpp UM]\n"
        "\n"
        "Rasterises each annotator's ROI/Tumor/Stroma polygons at --mpp\n"
        "µm/px (2.0), writes labels_<annotator>.png, the majority-vote\n"
        "consensus labels.png (0 glass, 1 tumour, 2 stroma, 255\n"
        "unlabelled) and agreement.json (pairwise Dice, Cohen's kappa).\n"
        "Holes in Tumor/Stroma polygons and the unclaimed inside of an ROI\n"
        "are 0 (background); pixels outside every polygon are 255.\n"
        "An annotator is named by the feature's annotator/author property"
        "\nor else by the file's base name.\n"
        "A raster may hold at most 268435456 px (2^28); a finer --mpp is\n"
        "refused (exit 2), and so is one coarser than the slide's width\n"
        "or height.  A missing FILE or WSI exits 5.\n"
        "Each feature left out (no or another classification, a\n"
        "geometry without area: a point, a line, or a polygon covering\n"
        "less than one raster pixel at --mpp) is reported with its\n"
        "cause; when no\n"
        "usable feature is left the command fails (exit 1) and writes\n"
        "nothing.\n");
}

static void
base_of(const char *path, char *buf, size_t len)
{
    const char *s = strrchr(path, '/'), *dot;

    s = s != NULL ? s + 1 : path;
    dot = strchr(s, '.');
    snprintf(buf, len, "%.*s", dot != NULL ? (int)(dot - s) : (int)strlen(s),
             s);
}

static int
load_all(int n, char **files, struct an_annotations **all,
         struct ss_err *err)
{
    int i, rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        struct an_annotations *a;
        char who[128];
        base_of(files[i], who, sizeof(who));
        rc = an_geojson_read(files[i], who, &a, err);
        if (rc < 0)
            break;
        if (*all == NULL) {
            *all = a;
            continue;
        }
        rc = an_annotations_merge(*all, a, err);
        an_annotations_free(a);
    }
    return rc;
}

/* Says why each skipped feature was left out; with none left, -EDOM naming
 * the files: an empty consensus would be taken for "all unlabelled". */
static int
skips_report(const struct an_annotations *a, int nfiles, char **files,
             struct ss_err *err)
{
    int i;

    for (i = 0; i < a->skipped; i++)
        fprintf(stderr, "slidescan annotations: skipped %s\n",
                a->skip_why[i]);
    if (a->n > 0)
        return 0;
    return err_set(err, -EDOM, "%s%s: no usable feature (a ROI, Tumor or "
                   "Stroma polygon): %d skipped, for the causes above; "
                   "nothing written", files[0], nfiles > 1 ? " ..." : "",
                   a->skipped);
}

static json_t *
agreement_json(struct img **r, const char **names, int k)
{
    char b[3][16];
    json_t *arr = json_array();
    int i, j;

    for (i = 0; i < k; i++)
        for (j = i + 1; j < k; j++) {
            struct an_agreement ag;
            an_agreement(r[i], r[j], &ag);
            printf("%s vs %s: Dice tumour %s, stroma %s, kappa %s "
                   "over %lld px\n", names[i], names[j],
                   an_score_text(ag.dice_tumor, b[0]),
                   an_score_text(ag.dice_stroma, b[1]),
                   an_score_text(ag.kappa, b[2]), (long long)ag.pixels);
            json_array_append_new(arr, json_pack(
                "{s:s, s:s, s:o, s:o, s:o, s:I}", "a", names[i], "b",
                names[j], "dice_tumor", isfinite(ag.dice_tumor) ?
                json_real(ag.dice_tumor) : json_null(), "dice_stroma",
                isfinite(ag.dice_stroma) ? json_real(ag.dice_stroma) :
                json_null(), "kappa", isfinite(ag.kappa) ?
                json_real(ag.kappa) : json_null(), "pixels",
                (json_int_t)ag.pixels));
        }
    return arr;
}

static int
run(struct an_annotations *a, const char *out, int w, int h, double scale,
    struct ss_err *err)
{
    const char *names[MAX_ANN];
    struct img *r[MAX_ANN] = { NULL }, *cons = NULL;
    int k = an_annotators(a, names, MAX_ANN), i, rc = 0;
    char path[4200], *text;
    json_t *o;

    for (i = 0; i < k && rc == 0; i++) {
        rc = an_annotations_raster(a, names[i], w, h, scale, &r[i], err);
        snprintf(path, sizeof(path), "%s/labels_%s.png", out, names[i]);
        if (rc == 0)
            rc = img_png_write(r[i], path, err);
    }
    if (rc == 0 && k > 0) {
        cons = an_consensus((const struct img *const *)r, k);
        snprintf(path, sizeof(path), "%s/labels.png", out);
        rc = cons != NULL ? img_png_write(cons, path, err)
                          : err_set(err, -ENOMEM,
                                           "consensus: out of memory");
    }
    if (rc == 0) {
        printf("annotators %d, features %d, skipped %d\n", k, a->n,
               a->skipped);
        o = json_pack("{s:i, s:f, s:o}", "annotators", k, "mpp_scale",
                      scale, "pairs", agreement_json(r, names, k));
        text = json_dumps(o, JSON_INDENT(2));
        snprintf(path, sizeof(path), "%s/agreement.json", out);
        rc = util_write_durable(path, text, strlen(text), err);
        free(text);
        json_decref(o);
    }
    for (i = 0; i < k; i++)
        img_free(r[i]);
    img_free(cons);
    return rc;
}

/* The raster size --mpp implies for the slide, refused (-EFBIG, with the
 * size, the limit and the smallest --mpp that fits) past
 * ANN_RASTER_MAX_PX: each annotator's raster is held in memory at once;
 * refused too (-EDOM, with the largest --mpp) when one raster pixel would
 * be wider or taller than the slide, leaving less than a pixel. */
static int
raster_size(struct an_slide *s, double mpp, int *w, int *h, double *scale,
            struct ss_err *err)
{
    int64_t W0, H0;
    double rw, rh, min_mpp, max_mpp;

    an_slide_size(s, &W0, &H0);
    *scale = mpp / an_slide_mpp(s);
    max_mpp = an_slide_mpp(s) * (double)(W0 < H0 ? W0 : H0);
    if (!(W0 / *scale >= 1 && H0 / *scale >= 1))
        return err_set(err, -EDOM, "--mpp %g: %s is %lldx%lld px at %g "
                       "µm/px (%.6gx%.6g µm): a label raster pixel of %g "
                       "µm is larger than the slide, leaving less than 1 "
                       "px; give --mpp %.6g or less", mpp, an_slide_path(s),
                       (long long)W0, (long long)H0, an_slide_mpp(s),
                       W0 * an_slide_mpp(s), H0 * an_slide_mpp(s), mpp,
                       floor(max_mpp * 1000) / 1000);
    rw = ceil(W0 / *scale);
    rh = ceil(H0 / *scale);
    if (rw * rh <= ANN_RASTER_MAX_PX) {
        *w = (int)rw;
        *h = (int)rh;
        return 0;
    }
    min_mpp = an_slide_mpp(s) * sqrt((double)W0 * H0 / ANN_RASTER_MAX_PX);
    return err_set(err, -EFBIG, "--mpp %g: %s is %lldx%lld px at %g µm/px, "
                   "a %.0fx%.0f px label raster at --mpp, more than the "
                   "limit of %.0f px; give --mpp %.3g or more", mpp,
                   an_slide_path(s), (long long)W0, (long long)H0,
                   an_slide_mpp(s), rw, rh, ANN_RASTER_MAX_PX,
                   ceil(min_mpp * 1000) / 1000);
}

static int
parse_mpp(const char *s, double *mpp)
{
    char *end;

    *mpp = strtod(s, &end);
    if (end != s && *end == '\0' && isfinite(*mpp) && *mpp > 0)
        return 0;
    fprintf(stderr, "slidescan annotations: --mpp wants a positive pixel "
            "size in µm, not '%s'\n", s);
    return -1;
}

int
cmd_annotations(int argc, char **argv)
{
    static const struct option opts[] = {
        { "slide", 1, NULL, 's' }, { "out", 1, NULL, 'o' },
        { "mpp", 1, NULL, 'm' }, { "help", 0, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *slide = NULL, *out = NULL;
    struct an_annotations *a = NULL;
    struct an_slide *s = NULL;
    struct ss_err err;
    double mpp = 2.0, scale = 1;
    int c, rc, w = 0, h = 0, code = EXIT_FAIL;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': slide = optarg; break;
        case 'o': out = optarg; break;
        case 'm':
            if (parse_mpp(optarg, &mpp) < 0)
                return EXIT_USAGE;
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (slide == NULL || out == NULL || optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    err_clear(&err);
    /* Inputs first: a missing one is "not found" (5), a --mpp too fine
     * for the slide a usage error (2); output failures are 1. */
    rc = an_slide_open(slide, 0, &s, &err);
    if (rc == 0)
        rc = load_all(argc - optind, argv + optind, &a, &err);
    if (rc == -ENOENT)
        code = EXIT_NOTFOUND;
    if (rc == 0 && (rc = raster_size(s, mpp, &w, &h, &scale, &err)) < 0)
        code = EXIT_USAGE;
    /* A polygon under one raster pixel labels nothing: left out, so that
     * a file of such polygons fails rather than "agreeing over 0 px". */
    if (rc == 0)
        rc = an_annotations_drop_small(a, scale * scale, &err);
    if (rc == 0)
        rc = skips_report(a, argc - optind, argv + optind, &err);
    if (rc == 0)
        rc = util_mkdir_leaf(out, &err);
    if (rc == 0)
        rc = run(a, out, w, h, scale, &err);
    an_annotations_free(a);
    an_slide_close(s);
    if (rc < 0) {
        fprintf(stderr, "slidescan annotations: %s\n", err.msg);
        return code;
    }
    return EXIT_OK;
}
