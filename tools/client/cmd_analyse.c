/* SPDX-License-Identifier: MIT */
/*
 * slidescan analyse FILE [--out DIR] [--stain HE|KI67|CK] [--model M]
 *                        [--mpp UM [--force-mpp]] [--threads N]
 *                        [--explain X,Y,W,H]
 *
 * Analyses any slide OpenSlide reads (or a plain image with --mpp) in
 * this process, like the worker does for scanned slides, and prints the
 * measurements.  Outputs go into the current directory, into FILE's base
 * name with ".analysis" in place of its extension, unless --out says
 * otherwise: slides often sit in read-only or shared folders, which an
 * analysis must not write into.  --mpp takes 0.05..100 µm/px and is
 * refused when the file states a pixel size more than 1 % away, unless
 * --force-mpp is given (as in slidescan convert).  When the analysis
 * fails (a disk that fills up, say), a --out directory this run created
 * is removed with whatever it wrote; one that existed is left without
 * results.json, the file whose presence means the results are complete.
 * The stain is the one the file declares (Aperio "Stain = KI67", which
 * slidescan's own slides carry) when --stain is omitted, HE when it
 * declares none; a --stain that contradicts the file's is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/slide.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"
#include "worker/analysis/analysis.h"

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: slidescan analyse FILE [--out DIR] [--stain HE|KI67|CK]\n"
        "                         [--model FILE|classical]\n"
        "                         [--mpp UM [--force-mpp]] [--threads N]\n"
        "                         [--explain X,Y,W,H]\n"
        "                         [--ki67-scope tumor|tissue]\n"
        "\n"
        "Segments tumour and stroma, measures areas, tumour-stroma ratio,\n"
        "KI67 index or CK area, and writes the overlay, heat maps,\n"
        "uncertainty map, GeoJSON and results.json into DIR, by default\n"
        "./NAME.analysis in the current directory (NAME: FILE's base name\n"
        "without its extension).\n"
        "--mpp gives the pixel size in µm (0.05..100) for files that state\n"
        "none; one that contradicts the file's own by more than 1%% is\n"
        "refused unless --force-mpp is given.  --explain adds a\n"
        "Grad-CAM map of the box (level-0 pixels) as explain.png; a box\n"
        "starting outside the slide or over 1536 analysis px a side is\n"
        "refused (exit 2).\n"
        "Without --stain the stain is the one FILE declares in its\n"
        "metadata (HE when it declares none); a --stain that contradicts\n"
        "FILE's declared stain is refused.\n"
        "Without --model the shipped default model runs ($SLIDESCAN_MODEL,\n"
        "else $SLIDESCAN_ROOT/models/default.safetensors, else models/\n"
        "beside the program); when none is found the classical baseline\n"
        "runs instead, with a warning on stderr naming where it looked.\n"
        "--ki67-scope tissue counts every nucleus on tissue for the KI67\n"
        "index instead of only those on tumour.\n"
        "--threads N (0..64) segments with N threads; 0, the default, one\n"
        "per CPU (at most 64).  Anything else is refused (exit 2).\n"
        "When the analysis fails, a DIR this run created is removed\n"
        "again; an existing DIR is left without results.json (its\n"
        "presence means every other file in DIR is complete).\n");
}

/* Whether --stain was given: the file's declared stain decides
 * otherwise. */
static bool stain_given;
/* Where the stain analysed came from, printed with the results. */
static const char *stain_from = " (the file declares none)";

static void
show_progress(void *ctx, int done, int total)
{
    int *last = ctx, pct = total > 0 ? done * 100 / total : 0;

    if (pct == *last || !isatty(STDERR_FILENO))
        return;
    *last = pct;
    fprintf(stderr, "\ranalysing %3d%%", pct);
    if (done >= total)
        fputc('\n', stderr);
}

static void
print_value(const char *name, double v, const char *unit)
{
    if (isfinite(v))
        printf("%-22s %.4f%s\n", name, v, unit);
    else
        printf("%-22s n/a\n", name);
}

static void
print_results(const struct an_results *r, const char *out)
{
    printf("stain                  %s%s\n", r->stain, stain_from);
    printf("model                  %s\n", r->model);
    print_value("tissue area", r->tissue_area_mm2, " mm²");
    print_value("tumour area", r->tumor_area_mm2, " mm²");
    print_value("stroma area", r->stroma_area_mm2, " mm²");
    print_value("tumour-stroma ratio", r->tsr,
                " (tumour fraction of tumour+stroma)");
    printf("tumour regions         %d", r->nregions);
    if (r->nregions > 0)
        printf(" (TSR min %.3f, max %.3f, mean %.3f)", r->tsr_region_min,
               r->tsr_region_max, r->tsr_region_mean);
    printf("\n");
    client__ki67_print("", r->ki67_index, r->ki67_scope == AN_KI67_TISSUE,
                       r->ki67_scope == AN_KI67_TISSUE ? r->ki67_tumor_index
                                                       : r->ki67_tissue_index,
                       true);
    print_value("CK-positive area", r->ck_positive_area_mm2, " mm²");
    printf("outputs                %s\n", out);
}

/* "dir/name.svs" → "name.analysis", in the current directory
 * ("name.ome.tif" → "name.analysis" too). */
static void
default_out(const char *wsi, char *buf, size_t len)
{
    const char *slash = strrchr(wsi, '/'), *base = slash ? slash + 1 : wsi;
    const char *dot = strrchr(base, '.');
    size_t n = dot != NULL && dot > base ? (size_t)(dot - base)
                                         : strlen(base);

    if (n > 4 && strncasecmp(base + n - 4, ".ome", 4) == 0)
        n -= 4;
    snprintf(buf, len, "%.*s.analysis", (int)n, base);
}

static int
parse(int argc, char **argv, struct an_job *j)
{
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },
        { "stain", required_argument, NULL, 's' },
        { "model", required_argument, NULL, 'm' },
        { "mpp", required_argument, NULL, 'p' },
        { "force-mpp", no_argument, NULL, 'F' },
        { "threads", required_argument, NULL, 't' },
        { "explain", required_argument, NULL, 'e' },
        { "ki67-scope", required_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct ss_err err;
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': j->out_dir = optarg; break;
        case 'm': j->model = optarg; break;
        case 'p':
            err_clear(&err);
            if (an_mpp_parse(optarg, &j->mpp_override, &err) < 0) {
                fprintf(stderr, "slidescan analyse: %s\n", err.msg);
                return -EINVAL;
            }
            break;
        case 'F': j->force_mpp = true; break;
        case 't':
            err_clear(&err);
            if (an_threads_parse(optarg, &j->threads, &err) < 0) {
                fprintf(stderr, "slidescan analyse: %s\n", err.msg);
                return -EINVAL;
            }
            break;
        case 's':
            if (an_stain_parse(optarg, &j->stain) < 0) {
                fprintf(stderr, "slidescan analyse: unknown stain '%s'\n",
                        optarg);
                return -EINVAL;
            }
            stain_given = true;
            break;
        case 'K':
            if (an_ki67_scope_parse(optarg, &j->ki67_scope) < 0) {
                fprintf(stderr, "slidescan analyse: --ki67-scope is tumor "
                        "or tissue, got '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'e':
            if (an_explain_box_parse(optarg, j->explain_box) < 0) {
                fprintf(stderr, "slidescan analyse: --explain wants "
                        "X,Y,W,H in level-0 pixels (whole numbers, X and "
                        "Y from 0, W and H from 1), got '%s'\n", optarg);
                return -EINVAL;
            }
            j->explain = true;
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -EINVAL;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return -EINVAL;
    }
    j->wsi = argv[optind];
    return 0;
}

/* Empties and removes a directory this run created: everything in it is
 * this run's (the analysis writes no subdirectories), and a failed run
 * leaves no half-written results behind.  A directory that existed
 * before keeps what the run wrote, but no results.json (an_analyse
 * deletes the old one first and writes the new one last), so it never
 * looks complete. */
static void
remove_created(const char *dir)
{
    struct ss_err e;

    (void)util_remove_tree(dir, &e);
}

/* Reconciles j->stain with the stain the slide declares.  Returns 0
 * (the stain chosen, where it came from in stain_from), 1 when the slide
 * cannot be opened here (an_analyse reports why), or -EDOM after saying
 * why the stain is refused. */
static int
settle_stain(struct an_job *j)
{
    struct slide_opts o;
    struct slide *s = NULL;
    struct ss_err err;
    enum an_stain own;
    const char *declared;
    int rc = 0;

    slide_opts_default(&o);
    o.need_mpp = false;
    err_clear(&err);
    if (slide_open_spec(j->wsi, &o, &s, &err) < 0)
        return 1;
    declared = slide_stain(s);
    if (declared != NULL && an_stain_parse(declared, &own) < 0)
        rc = -EDOM;
    else if (declared != NULL && stain_given && own != j->stain)
        rc = -EDOM;
    if (rc < 0 && stain_given)
        fprintf(stderr, "slidescan analyse: --stain %s, but %s declares "
                "stain %s; give the slide's stain, or omit --stain\n",
                an_stain_name(j->stain), slide_path(s), declared);
    else if (rc < 0)
        fprintf(stderr, "slidescan analyse: %s declares stain %s, which "
                "is not one analyse measures (HE, KI67, CK)\n",
                slide_path(s), declared);
    else if (declared != NULL && !stain_given)
        j->stain = own;
    if (rc == 0 && stain_given)
        stain_from = " (--stain)";
    else if (rc == 0 && declared != NULL)
        stain_from = " (declared by the file)";
    slide_close(s);
    return rc;
}

int
cmd_analyse(int argc, char **argv)
{
    char out[4096];
    struct an_job j;
    struct an_results r;
    struct ss_err err;
    int rc, last = -1;
    bool existed;

    an_job_default(&j);
    rc = parse(argc, argv, &j);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (j.out_dir == NULL) {
        char path[4096];
        double spec_mpp;

        err_clear(&err);
        if (slide_spec_parse(j.wsi, path, sizeof(path), &spec_mpp,
                             &err) < 0) {
            fprintf(stderr, "slidescan analyse: %s\n", err.msg);
            return EXIT_USAGE;
        }
        default_out(path, out, sizeof(out));
        j.out_dir = out;
    }
    log_set_level(LOG_LVL_WARN);
    rc = settle_stain(&j);
    if (rc < 0)
        return EXIT_USAGE;
    /* The slide opened: an output directory whose parent is missing is
     * this run's failure (an unreadable slide is reported first). */
    if (rc == 0 && client__out_parent("analyse", j.out_dir) != 0)
        return EXIT_FAIL;
    j.progress = show_progress;
    j.progress_ctx = &last;
    err_clear(&err);
    existed = access(j.out_dir, F_OK) == 0;
    if (an_analyse(&j, &r, &err) < 0) {
        fprintf(stderr, "slidescan analyse: %s\n", err.msg);
        if (!existed)
            remove_created(j.out_dir);
        return err.code == -ENOENT ? EXIT_NOTFOUND
             : err.code == -EDOM ? EXIT_USAGE : EXIT_FAIL;
    }
    print_results(&r, j.out_dir);
    an_results_free(&r);
    return EXIT_OK;
}
