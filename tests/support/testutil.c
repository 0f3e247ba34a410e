/* SPDX-License-Identifier: MIT */
/* Paths and temporary directories for the unit tests. */
#include "tests/support/testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];

/* Strings handed out live until exit; they are kept here and freed then,
 * so leak checkers stay quiet. */
static char **kept;
static size_t nkept;

static void
free_kept(void)
{
    size_t i;

    for (i = 0; i < nkept; i++)
        free(kept[i]);
    free(kept);
    kept = NULL;
    nkept = 0;
}

static char *
keep(const char *s)
{
    char *d = strdup(s);
    char **k = realloc(kept, (nkept + 1) * sizeof(*kept));

    if (d == NULL || k == NULL)
        abort();
    if (nkept == 0)
        atexit(free_kept);
    kept = k;
    kept[nkept++] = d;
    return d;
}

const char *
tu_root(void)
{
    const char *r = getenv("SLIDESCAN_ROOT");

    return r != NULL ? r : ".";
}

const char *
tu_build(void)
{
    const char *b = getenv("SLIDESCAN_BUILD");

    return b != NULL ? b : "build";
}

const char *
tu_data(const char *rel)
{
    const char *d = getenv("SLIDESCAN_DATA");
    char path[PATH_MAX];
    struct stat st;

    if (d == NULL || *d == '\0') {
        snprintf(path, sizeof(path), "%s/../shared/data", tu_root());
        if (stat(path, &st) != 0)
            return NULL;
        d = keep(path);
    }
    snprintf(path, sizeof(path), "%s/%s", d, rel);
    if (stat(path, &st) != 0)
        return NULL;
    return keep(path);
}

static void
cleanup(void)
{
    char cmd[PATH_MAX + 16];

    if (tmpdir[0] == '\0' || getenv("SLIDESCAN_KEEP_TMP") != NULL)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", tmpdir);
}

const char *
tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");

    if (tmpdir[0] != '\0')
        return tmpdir;
    snprintf(tmpdir, sizeof(tmpdir), "%s/slidescan-test.XXXXXX",
             base != NULL ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(cleanup);
    return tmpdir;
}

const char *
tu_tmp(const char *name)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", tu_tmpdir(), name);
    return keep(path);
}
