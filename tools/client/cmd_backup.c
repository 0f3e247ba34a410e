/* SPDX-License-Identifier: MIT */
/*
 * slidescan backup DEST: copies the catalogue (a consistent snapshot,
 * taken while the daemon keeps scanning) and every slide image, analysis
 * output, calibration and unfinished scan's tile not yet in DEST, each
 * verified by its checksum (storage/backup.h).  Runs in this process
 * against the catalogue file; the daemon is not involved.  Copies already
 * in DEST are checked first (read in full, or with --quick by size and
 * modification time) and copied again when missing or damaged.  With
 * --verify it only checks an existing backup.  The report goes to stdout
 * whenever DEST was examined, naming the repairs and problems; a failure
 * also writes one line on stderr saying what is wrong.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/backup.h"
#include "storage/space.h"
#include "tools/client/client.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: slidescan backup DEST [--config FILE] [--data-dir DIR]\n"
            "                        [--catalogue FILE] [--quick] [--verify]\n"
            "                        [--json]\n"
            "\n"
            "Backs up the catalogue and every slide image, analysis output,\n"
            "calibration and tile of an unfinished scan into the directory\n"
            "DEST, copying only what DEST does not hold yet and checking\n"
            "every copy against its checksum.  Safe while slidescand scans.\n"
            "Each copy already in DEST is read and compared with the\n"
            "checksum in DEST's manifest; one that is missing or damaged is\n"
            "copied again from the data directory and reported as\n"
            "repaired, so a backup that exits 0 passes --verify.  --quick\n"
            "trusts a copy already there whose size and modification time\n"
            "are those the manifest recorded, without reading it: much less\n"
            "reading on a large backup, but damage that keeps both (a\n"
            "failing disk) is found only by a full run or --verify.\n"
            "Paths come from the [daemon] section of the configuration\n"
            "($SLIDESCAN_CONFIG or /etc/slidescan/slidescan.conf) unless\n"
            "given; without them the catalogue is\n"
            "/var/lib/slidescan/catalogue.db.  --verify checks DEST instead\n"
            "of writing to it: every file against its checksum, and that\n"
            "DEST holds everything its catalogue names.  The report goes to\n"
            "stdout, also when the backup or the check fails (then naming\n"
            "the problems; one line on stderr says what failed).  Exit\n"
            "status 0 when everything is backed up (or verifies), 1\n"
            "when some files could not be (DEST keeps the rest, marked\n"
            "incomplete) or DEST is damaged or incomplete, 4 when DEST is\n"
            "refused because it is, lies inside or contains the data\n"
            "directory or is the catalogue's directory, 5 when the\n"
            "catalogue or the backup in DEST is not there (one line on\n"
            "stderr says which).\n");
}

static void
print_report(const char *what, const char *dir,
             const struct backup_report *r, bool verify, bool json)
{
    char bytes[32];

    if (json) {
        json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:I, "
                              "s:i, s:I, s:s, s:s}", what, dir, "files",
                              r->files, "copied", r->copied, "kept",
                              r->kept, "repaired", r->repaired, "verified",
                              r->verified, "problems", r->problems, "bytes",
                              (json_int_t)r->bytes, "snapshots",
                              r->snapshots, "schema", (json_int_t)r->schema,
                              "problem", r->problem, "repairs", r->repair);
        json_dumpf(o, stdout, JSON_SORT_KEYS);
        putchar('\n');
        json_decref(o);
        return;
    }
    space_fmt(r->bytes, bytes, sizeof(bytes));
    if (verify)
        printf("verify %s: %d files, %d verified, %d problems; catalogue "
               "schema %lld\n", dir, r->files, r->verified, r->problems,
               (long long)r->schema);
    else
        printf("%s %s: %d files, %d copied, %d repaired (%s written), %d "
               "already there, %d verified, %d problems; catalogue schema "
               "%lld, %d snapshot%s\n", what, dir, r->files, r->copied,
               r->repaired, bytes, r->kept, r->verified, r->problems,
               (long long)r->schema, r->snapshots,
               r->snapshots == 1 ? "" : "s");
    if (r->repaired > 0)
        printf("repaired: %s\n", r->repair);
    if (r->problems > 0)
        printf("problems: %s\n", r->problem);
}

struct args {
    const char *dir, *conf, *data_dir, *catalogue;
    bool verify, quick, json;
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
        } else if (strcmp(o, "--verify") == 0) {
            a->verify = true;
        } else if (strcmp(o, "--quick") == 0) {
            a->quick = true;
        } else if (strcmp(o, "--json") == 0) {
            a->json = true;
        } else if (o[0] == '-' || a->dir != NULL) {
            fprintf(stderr, "slidescan backup: unexpected '%s'\n", o);
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
    if (a->quick && a->verify) {
        fprintf(stderr, "slidescan backup: --quick applies to a backup "
                "run, not to --verify (which reads every file)\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* One line naming the catalogue looked for, where that path came from
 * and how to point elsewhere. */
static int
no_catalogue(const char *catalogue, const char *origin)
{
    struct stat st;

    if (stat(catalogue, &st) == 0)
        return 0;
    fprintf(stderr, "slidescan backup: no catalogue at %s (%s); give the "
            "scanner's configuration with --config FILE, its data "
            "directory with --data-dir DIR, or the catalogue with "
            "--catalogue FILE\n", catalogue, origin);
    return 1;
}

int
cmd_backup(int argc, char **argv)
{
    char data_dir[PATH_MAX], catalogue[PATH_MAX], origin[PATH_MAX + 96];
    struct args a = { 0 };
    struct backup_options opts = { 0 };
    struct backup_report r;
    struct ss_err err;
    int rc;

    rc = parse(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    err_clear(&err);
    if (a.verify) {
        rc = backup_verify(a.dir, &r, &err);
    } else {
        rc = backup_paths_origin(a.conf, a.data_dir, a.catalogue, data_dir,
                                 catalogue, origin, sizeof(origin), &err);
        opts.quick = a.quick;
        if (rc == 0)
            rc = backup_create_with(catalogue, data_dir, a.dir, &opts, &r,
                                    &err);
        if (rc == -ENOENT && no_catalogue(catalogue, origin))
            return EXIT_NOTFOUND;
    }
    /* SS_EFORMAT: DEST was examined and the report says what is wrong. */
    if (rc == 0 || rc == SS_EFORMAT)
        print_report("backup", a.dir, &r, a.verify, a.json);
    if (rc == 0)
        return EXIT_OK;
    fprintf(stderr, "slidescan backup: %s\n", err.msg);
    if (rc == -EINVAL)
        return EXIT_REFUSED;
    /* With the catalogue there, -ENOENT is DEST's missing parent: an
     * output that cannot be written, not an input not found. */
    if (rc == -ENOENT && !a.verify && access(catalogue, F_OK) == 0)
        return EXIT_FAIL;
    return rc == -ENOENT ? EXIT_NOTFOUND : EXIT_FAIL;
}
