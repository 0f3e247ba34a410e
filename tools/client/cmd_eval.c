/* SPDX-License-Identifier: MIT */
/*
 * slidescan eval --pred P --truth T [--ref FILE] [--scale S]
 *                [--pred P --truth T ...] [--json FILE] [--png FILE]
 *                [--min-region PX]
 *
 * Scores predictions against truth (worker/analysis/eval.h says what P
 * and T may be): pixel confusion, precision, recall, F1, IoU and Dice per
 * class, region mAP@[.5:.95], MAE and RMSE of the tumour-stroma ratio and
 * KI67 index.  Prints a text report; --json and --png write the others.
 * A truth whose size does not map onto its prediction's is an error;
 * --scale states the mapping when results.json cannot.  A prediction or
 * truth file that does not exist exits 5 (not found), like analyse.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"
#include "worker/analysis/eval.h"

#define MAX_PAIRS 256

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: slidescan eval --pred P --truth T [--ref FILE] [--scale S]"
        " ...\n"
        "                      [--json FILE] [--png FILE] "
        "[--min-region PX]\n"
        "\n"
        "P: an analysis output directory or a label PNG (0 glass, 1 tumour,"
        "\n   2 stroma).  T: a label PNG (255 = unlabelled), a QuPath "
        "GeoJSON\n   file, or a directory with labels.png or "
        "annotations.geojson and\n   truth.json.  --ref gives reference "
        "TSR (tumour fraction of\n   tumour + stroma) / KI67 values for the "
        "pair before it.  Pairs\n   repeat.  Regions under PX pixels "
        "(default 20) are left out of the\n   mAP.\n"
        "\n"
        "A truth label map must have the prediction's size, or (for an\n"
        "analysis directory) the slide's level-0 size that results.json\n"
        "maps it onto.  --scale S, for the pair before it, says instead\n"
        "that one prediction pixel covers S truth pixels (S level-0 pixels\n"
        "of GeoJSON coordinates); the truth must then span the prediction\n"
        "size × S.  Any other size difference is an error.\n"
        "--ref FILE is a JSON object; the keys that give values are\n"
        "   tumor_stroma_ratio or tumor_fraction (tumour / (tumour +\n"
        "   stroma)), tumor_area_mm2 with stroma_area_mm2, areas_mm2\n"
        "   {\"tumor\", \"stroma\"} (mm²), area_um2 [glass, tumor, stroma]\n"
        "   (µm²), and ki67_index or ki67_fraction; the descriptive keys of\n"
        "   a phantom's truth.json or an analysis's results.json are read\n"
        "   past, and any other key is refused (exit 2), as is a value\n"
        "   key that holds no number (null included; only a KI67 key of\n"
        "   a file whose \"stain\" is not KI67 may be null), a ratio,\n"
        "   fraction or index outside 0..1, a negative area, one of\n"
        "   tumor_area_mm2 and stroma_area_mm2 without the other, a key\n"
        "   given twice, and a file with no reference value.\n"
        "   The KI67 value counts tumour nuclei (as the phantom's does)\n"
        "   unless ki67_scope is \"tissue\" (a results.json used as\n"
        "   reference: its ki67.scope); the prediction's index of that\n"
        "   scope is compared, and the report names it.\n"
        "Exit 5 when a --pred, --truth or --ref file does not exist, 1\n"
        "when --ref is unreadable or not a JSON object.\n");
}

struct pairs {
    const char *pred[MAX_PAIRS], *truth[MAX_PAIRS], *ref[MAX_PAIRS];
    double scale[MAX_PAIRS];        /* 0: the prediction's own */
    int n, npred, ntruth;
};

/* --ref and --scale belong to the pair given before them. */
static int
pair_option(const struct pairs *p, const char *name)
{
    if (p->ntruth > 0)
        return 0;
    fprintf(stderr, "slidescan eval: %s goes after the --pred/--truth pair "
            "it is for\n", name);
    return -1;
}

static int
parse_scale(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !isfinite(v) || !(v > 0)) {
        fprintf(stderr, "slidescan eval: --scale wants a positive number "
                "(truth pixels per prediction pixel), not '%s'\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

static int
parse(int argc, char **argv, struct pairs *p, const char **json_out,
      const char **png_out, long *min_px)
{
    static const struct option opts[] = {
        { "pred", required_argument, NULL, 'p' },
        { "truth", required_argument, NULL, 't' },
        { "ref", required_argument, NULL, 'r' },
        { "scale", required_argument, NULL, 's' },
        { "json", required_argument, NULL, 'j' },
        { "png", required_argument, NULL, 'g' },
        { "min-region", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
        case 't':
            if ((c == 'p' ? p->npred : p->ntruth) == MAX_PAIRS) {
                fprintf(stderr, "slidescan eval: at most %d pairs\n",
                        MAX_PAIRS);
                return -1;
            }
            if (c == 'p')
                p->pred[p->npred++] = optarg;
            else
                p->truth[p->ntruth++] = optarg;
            break;
        case 'r':
            if (pair_option(p, "--ref") < 0)
                return -1;
            p->ref[p->ntruth - 1] = optarg;
            break;
        case 's':
            if (pair_option(p, "--scale") < 0 ||
                parse_scale(optarg, &p->scale[p->ntruth - 1]) < 0)
                return -1;
            break;
        case 'j': *json_out = optarg; break;
        case 'g': *png_out = optarg; break;
        case 'm': *min_px = atol(optarg); break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (p->npred == 0 || p->npred != p->ntruth || optind != argc) {
        fprintf(stderr, "slidescan eval: give --pred and --truth in "
                "pairs\n");
        return -1;
    }
    p->n = p->npred;
    return 0;
}

int
cmd_eval(int argc, char **argv)
{
    static struct pairs p;
    const char *json_out = NULL, *png_out = NULL;
    struct an_eval ev;
    struct ss_err err;
    long min_px = 20;
    int i, rc;

    rc = parse(argc, argv, &p, &json_out, &png_out, &min_px);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    an_eval_init(&ev, min_px);
    for (i = 0; i < p.n; i++) {
        err_clear(&err);
        if (an_eval_add_scaled(&ev, p.pred[i], p.truth[i], p.ref[i],
                               p.scale[i], &err) < 0) {
            fprintf(stderr, "slidescan eval: %s\n", err.msg);
            an_eval_fini(&ev);
            return err.code == -ENOENT ? EXIT_NOTFOUND
                   : err.code == -EDOM ? EXIT_USAGE : EXIT_FAIL;
        }
    }
    if ((json_out != NULL && client__out_parent("eval", json_out) != 0) ||
        (png_out != NULL && client__out_parent("eval", png_out) != 0)) {
        an_eval_fini(&ev);
        return EXIT_FAIL;
    }
    an_eval_print(&ev, stdout);
    rc = 0;
    if (json_out != NULL) {
        json_t *o = an_eval_json(&ev);
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
        rc = text != NULL ? util_write_durable(json_out, text, strlen(text),
                                               &err)
           : err_set(&err, -ENOMEM, "%s: out of memory", json_out);
        free(text);
        json_decref(o);
    }
    if (rc == 0 && png_out != NULL)
        rc = an_eval_png(&ev, png_out, &err);
    an_eval_fini(&ev);
    if (rc < 0) {
        fprintf(stderr, "slidescan eval: %s\n", err.msg);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
