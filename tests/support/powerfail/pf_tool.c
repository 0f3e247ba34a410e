/* SPDX-License-Identifier: MIT */
/*
 * powerfail: the test's side of the power-loss model.
 *
 *   powerfail baseline --state DIR --root DIR   everything under root is
 *                                               on stable storage now
 *   powerfail cut --state DIR                   the power goes off: any
 *                                               watched process that syncs
 *                                               from now on dies first
 *   powerfail restore --state DIR [--torn SEED] rebuild the root as the
 *                                               disk holds it (kill the
 *                                               watched processes first)
 *   powerfail status --state DIR                what is recorded
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/powerfail/pf.h"

static int
usage(void)
{
    fprintf(stderr, "usage: powerfail baseline|cut|restore|status "
            "--state DIR [--root DIR] [--torn SEED]\n");
    return 2;
}

static int
fail(const char *what, const char *state, int rc)
{
    fprintf(stderr, "powerfail %s: state %s: %s\n", what, state,
            strerror(-rc));
    return 1;
}

int
main(int argc, char **argv)
{
    const char *state = NULL, *root = NULL, *cmd;
    unsigned long long seed = 0;
    bool torn = false;
    long files, dirs, syncs;
    struct pf pf;
    int i, rc, n = 0;

    if (argc < 2)
        return usage();
    cmd = argv[1];
    for (i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--state") == 0)
            state = argv[i + 1];
        else if (strcmp(argv[i], "--root") == 0)
            root = argv[i + 1];
        else if (strcmp(argv[i], "--torn") == 0) {
            torn = true;
            seed = strtoull(argv[i + 1], NULL, 0);
        } else
            return usage();
    }
    if (state == NULL || i != argc)
        return usage();
    rc = pf_open(&pf, state, root);
    if (rc < 0)
        return fail(cmd, state, rc);
    if (strcmp(cmd, "baseline") == 0) {
        rc = pf_baseline(&pf);
    } else if (strcmp(cmd, "cut") == 0) {
        pf_lock(&pf);
        pf_mark_cut(&pf);
        pf_unlock(&pf);
    } else if (strcmp(cmd, "restore") == 0) {
        rc = pf_restore(&pf, torn, seed, &n);
        if (rc == 0)
            printf("restored %s: %d files\n", pf.root, n);
    } else if (strcmp(cmd, "status") == 0) {
        pf_status(&pf, &files, &dirs, &syncs);
        printf("root %s: %ld durable files, %ld durable directories, "
               "%ld syncs%s\n", pf.root, files, dirs, syncs,
               pf_is_cut(&pf) ? ", power off" : "");
    } else {
        pf_close(&pf);
        return usage();
    }
    pf_close(&pf);
    return rc < 0 ? fail(cmd, state, rc) : 0;
}
