/* SPDX-License-Identifier: MIT */
/*
 * slidescan-worker: the analysis process the daemon starts for each
 * finished slide.
 *
 *   slidescan-worker analyse --wsi PATH --stain HE|KI67|CK --out DIR
 *                            [--model FILE|classical]
 *                            [--mpp UM [--force-mpp]]
 *                            [--threads N] [--explain X,Y,W,H]
 *                            [--ki67-scope tumor|tissue] [-v]
 *
 * stdout carries only "progress DONE TOTAL" lines; stderr carries warnings
 * and, on failure, one last line naming the file and the cause.  Exit 0
 * on success (DIR/results.json exists), 1 on failure, 2 on a bad command
 * line, including a --mpp outside 0.05..100 µm/px and one that
 * contradicts the pixel size the file states (beyond 1 %) without
 * --force-mpp.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/analysis/analysis.h"

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: slidescan-worker analyse --wsi PATH --stain HE|KI67|CK "
        "--out DIR\n"
        "                                [--model FILE|classical]\n"
        "                                [--mpp UM [--force-mpp]] "
        "[--threads N]\n"
        "                                [--explain X,Y,W,H]\n"
        "                                [--ki67-scope tumor|tissue] "
        "[-v]\n"
        "\n"
        "Segments a slide into tumour and stroma and writes the overlay,\n"
        "heat maps and results.json into DIR.  --mpp (0.05..100 µm) gives\n"
        "the pixel size of a file that states none; one that contradicts\n"
        "the file's own by more than 1%% is refused (exit 2) unless\n"
        "--force-mpp is given.  --explain writes a Grad-CAM map of the box\n"
        "(level-0 pixels).  --ki67-scope tissue counts every nucleus on\n"
        "tissue for the KI67 index, not only those on tumour (the default).\n"
        "Without --model the shipped default model runs ($SLIDESCAN_MODEL,\n"
        "else $SLIDESCAN_ROOT/models/default.safetensors, else models/\n"
        "beside the program); when none is found the classical baseline\n"
        "runs instead, with a warning on stderr naming where it looked.\n"
        "--threads N (0..64) segments with N threads; 0, the default, one\n"
        "per CPU (at most 64).  Anything else is refused (exit 2).\n"
        "Progress goes to stdout as 'progress DONE "
        "TOTAL'.\n");
}

static void
print_progress(void *ctx, int done, int total)
{
    int *last = ctx;

    if (done == *last)
        return;
    *last = done;
    printf("progress %d %d\n", done, total);
    fflush(stdout);
}

static int
parse_args(int argc, char **argv, struct an_job *j, int *verbose)
{
    static const struct option opts[] = {
        { "wsi", required_argument, NULL, 'w' },
        { "stain", required_argument, NULL, 's' },
        { "out", required_argument, NULL, 'o' },
        { "model", required_argument, NULL, 'm' },
        { "mpp", required_argument, NULL, 'p' },
        { "force-mpp", no_argument, NULL, 'F' },
        { "threads", required_argument, NULL, 't' },
        { "explain", required_argument, NULL, 'e' },
        { "ki67-scope", required_argument, NULL, 'K' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct ss_err err;
    int c;

    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'w': j->wsi = optarg; break;
        case 'o': j->out_dir = optarg; break;
        case 'm': j->model = optarg; break;
        case 'p':
            err_clear(&err);
            if (an_mpp_parse(optarg, &j->mpp_override, &err) < 0) {
                fprintf(stderr, "slidescan-worker: %s\n", err.msg);
                return -EINVAL;
            }
            break;
        case 'F': j->force_mpp = true; break;
        case 't':
            err_clear(&err);
            if (an_threads_parse(optarg, &j->threads, &err) < 0) {
                fprintf(stderr, "slidescan-worker: %s\n", err.msg);
                return -EINVAL;
            }
            break;
        case 'v': *verbose = 1; break;
        case 's':
            if (an_stain_parse(optarg, &j->stain) < 0) {
                fprintf(stderr, "slidescan-worker: unknown stain '%s' "
                        "(HE, KI67 or CK)\n", optarg);
                return -EINVAL;
            }
            break;
        case 'K':
            if (an_ki67_scope_parse(optarg, &j->ki67_scope) < 0) {
                fprintf(stderr, "slidescan-worker: --ki67-scope is tumor "
                        "or tissue, got '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case 'e':
            if (an_explain_box_parse(optarg, j->explain_box) < 0) {
                fprintf(stderr, "slidescan-worker: --explain wants X,Y,W,H "
                        "in level-0 pixels (whole numbers, X and Y from 0, "
                        "W and H from 1), got '%s'\n", optarg);
                return -EINVAL;
            }
            j->explain = true;
            break;
        case 'h': usage(stdout); exit(0);
        default: return -EINVAL;
        }
    }
    if (j->wsi == NULL || j->out_dir == NULL || optind != argc) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

static int
cmd_analyse(int argc, char **argv)
{
    struct an_job j;
    struct ss_err err;
    int verbose = 0, last = -1;

    an_job_default(&j);
    if (parse_args(argc, argv, &j, &verbose) < 0)
        return 2;
    log_set_level(verbose ? LOG_LVL_INFO : LOG_LVL_WARN);
    j.progress = print_progress;
    j.progress_ctx = &last;
    err_clear(&err);
    if (an_analyse(&j, NULL, &err) < 0) {
        fprintf(stderr, "slidescan-worker: analyse: %s\n", err.msg);
        return err.code == -EDOM ? 2 : 1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "analyse") == 0)
        return cmd_analyse(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("slidescan-worker %s\n", SLIDESCAN_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
