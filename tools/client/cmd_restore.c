/* SPDX-License-Identifier: MIT */
/*
 * slidescan restore SRC: brings a scanner's catalogue and data files back
 * from a backup made by `slidescan backup` (storage/backup.h).  The backup
 * is verified first; a catalogue that a running slidescand has open is
 * never replaced, an existing one only with --force.  Afterwards every
 * slide image and tile is checked against the restored catalogue.  Each
 * outcome is one message: the result on stdout when the restored data
 * verifies, otherwise one line on stderr saying why nothing was written
 * (a refusal) or what went wrong after writing.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "storage/backup.h"
#include "tools/client/client.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: slidescan restore SRC [--config FILE] [--data-dir DIR]\n"
            "                         [--catalogue FILE] [--force] [--json]\n"
            "\n"
            "Restores the catalogue and data files from the backup directory\n"
            "SRC into the data directory (from the [daemon] section of the\n"
            "configuration, $SLIDESCAN_CONFIG or\n"
            "/etc/slidescan/slidescan.conf, unless given).  The backup is\n"
            "verified before anything is written.  Stop slidescand first: a\n"
            "catalogue in use is never replaced, an existing one only with\n"
            "--force.  Exit status 0 when the restored data verifies (the\n"
            "result on stdout, as JSON with --json), 1 when the backup is\n"
            "damaged or incomplete (nothing is written) or the restore\n"
            "failed, 4 when refused (also when SRC\n"
            "overlaps the data directory), 5 when SRC holds no backup; on\n"
            "failure one line on stderr says why.\n");
}

struct args {
    const char *dir, *conf, *data_dir, *catalogue;
    bool force, json;
};

/* 0 to go on, or the exit status. */
static int
parse(int argc, char **argv, struct args *a)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool more = i + 1 < argc;

        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(o, "--config") == 0 && more) {
            a->conf = argv[++i];
        } else if (strcmp(o, "--data-dir") == 0 && more) {
            a->data_dir = argv[++i];
        } else if (strcmp(o, "--catalogue") == 0 && more) {
            a->catalogue = argv[++i];
        } else if (strcmp(o, "--force") == 0) {
            a->force = true;
        } else if (strcmp(o, "--json") == 0) {
            a->json = true;
        } else if (o[0] == '-' || a->dir != NULL) {
            fprintf(stderr, "slidescan restore: unexpected '%s'\n", o);
            usage(stderr);
            return EXIT_USAGE;
        } else {
            a->dir = o;
        }
    }
    if (a->dir == NULL) {
        usage(stderr);
        return EXIT_USAGE;
    }
    return 0;
}

static void
print_result(const char *src, const char *catalogue,
             const struct backup_report *r, bool json)
{
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:i, s:i, s:i, s:s}",
                              "restored", src, "catalogue", catalogue,
                              "files", r->copied, "bytes",
                              (json_int_t)r->bytes, "entries", r->files,
                              "verified", r->verified, "problems",
                              r->problems, "problem", r->problem);
        json_dumpf(o, stdout, JSON_SORT_KEYS);
        putchar('\n');
        json_decref(o);
        return;
    }
    /* Files and catalogue entries differ in number: an analysis or a
     * calibration is one entry and a directory of several files. */
    printf("restored %s into %s: %d files copied, each matching the "
           "backup's checksum; %d of %d catalogue entries verified (slide "
           "images and tiles by checksum, analysis and calibration "
           "directories present), %d problems\n", src, catalogue,
           r->copied, r->verified, r->files, r->problems);
}

int
cmd_restore(int argc, char **argv)
{
    char data_dir[PATH_MAX], catalogue[PATH_MAX];
    struct args a = { 0 };
    struct backup_report r;
    struct ss_err err;
    int rc;

    rc = parse(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    err_clear(&err);
    memset(&r, 0, sizeof(r));
    rc = backup_paths(a.conf, a.data_dir, a.catalogue, data_dir, catalogue,
                      &err);
    if (rc == 0)
        rc = backup_restore(a.dir, catalogue, data_dir, a.force, &r, &err);
    if (rc == 0) {
        print_result(a.dir, catalogue, &r, a.json);
        return EXIT_OK;
    }
    fprintf(stderr, "slidescan restore: %s\n", err.msg);
    if (rc == -EBUSY || rc == -EEXIST || rc == -EINVAL)
        return EXIT_REFUSED;
    return rc == -ENOENT ? EXIT_NOTFOUND : EXIT_FAIL;
}
