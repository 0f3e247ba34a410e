/* SPDX-License-Identifier: MIT */
/*
 * slidescan verify FILE [--mpp X]: checks a whole-slide image written by
 * slidescan (storage/wsi.h wsi_verify) and prints one line per check.
 * Aperio files from other scanners pass with their pixel size taken from
 * the description alone, and the report says they are not ours.
 * Runs offline, without the daemon.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/wsi.h"
#include "tools/client/client.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: slidescan verify FILE [--mpp X]\n"
            "\n"
            "Checks a slidescan whole-slide image: pyramid levels flagged,\n"
            "every tile present and decodable, JPEG tables consistent with\n"
            "the tiles, pixel size present (and equal to X µm/px when\n"
            "--mpp is given), and that OpenSlide opens and reads it.\n"
            "The checks are those of slidescan's own files.  An Aperio\n"
            "file from another scanner (its ImageDescription does not\n"
            "start with \"Aperio Image Library slidescan\") states its\n"
            "pixel size only as MPP in the description, as OpenSlide reads\n"
            "it; that is accepted and the report says the file is not a\n"
            "slidescan WSI; its pyramid must still halve level by level.\n"
            "Exit status 0 when it passes, 1 when it has defects, 5 when\n"
            "the file does not exist.\n");
}

int
cmd_verify(int argc, char **argv)
{
    const char *path = NULL;
    double mpp = 0;
    static char report[64 * 1024];
    struct ss_err err;
    char *end;
    int i, rc;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--mpp") == 0 && i + 1 < argc) {
            mpp = strtod(argv[++i], &end);
            if (*end != '\0' || !isfinite(mpp) || !(mpp > 0)) {
                fprintf(stderr, "slidescan verify: --mpp '%s' is not a "
                        "positive number\n", argv[i]);
                return EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' || path != NULL) {
            fprintf(stderr, "slidescan verify: unexpected '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        usage(stderr);
        return EXIT_USAGE;
    }
    err_clear(&err);
    rc = wsi_verify(path, mpp, report, sizeof(report), &err);
    fputs(report, stdout);
    if (rc == -ENOENT) {
        fprintf(stderr, "slidescan verify: %s\n", err.msg);
        return EXIT_NOTFOUND;
    }
    if (rc < 0) {
        fprintf(stderr, "slidescan verify: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("%s: passes\n", path);
    return EXIT_OK;
}
