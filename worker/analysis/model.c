/* SPDX-License-Identifier: MIT */
/*
 * Choosing and loading a segmentation model: the classical baseline by
 * name, a CNN model file by path, or the shipped default model:
 * $SLIDESCAN_MODEL, else $SLIDESCAN_ROOT/models (set by the test runner),
 * else found beside the program (the source tree's models/ when run from
 * build/bin, share/slidescan/models when installed).
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define DEFAULT_MODEL_FILE "default.safetensors"

static int
exists(const char *p)
{
    return access(p, R_OK) == 0;
}

/* Appends candidate p to the list of places looked in (may be NULL). */
static void
tried_add(char *tried, size_t len, const char *p)
{
    size_t n;

    if (tried == NULL)
        return;
    n = strlen(tried);
    snprintf(tried + n, len - n, "%s%s", n ? ", " : "", p);
}

/* The search of an_model_default_path(), recording where it looked. */
static const char *
default_search(char *tried, size_t len)
{
    static char path[PATH_MAX + 64];
    static const char *rel[] = {
        "../../models/", "../share/slidescan/models/", "../models/",
    };
    const char *env = getenv("SLIDESCAN_MODEL");
    const char *root = getenv("SLIDESCAN_ROOT");
    char exe[PATH_MAX];
    ssize_t n;
    size_t i;

    if (env != NULL && *env != '\0')
        return env;
    tried_add(tried, len, "$SLIDESCAN_MODEL (unset)");
    if (root != NULL && *root != '\0') {
        snprintf(path, sizeof(path), "%s/models/%s", root,
                 DEFAULT_MODEL_FILE);
        if (exists(path))
            return path;
        tried_add(tried, len, path);
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char d[PATH_MAX];
        snprintf(d, sizeof(d), "%s", exe);
        snprintf(path, sizeof(path), "%s/%s%s", dirname(d), rel[i],
                 DEFAULT_MODEL_FILE);
        if (exists(path))
            return path;
        tried_add(tried, len, path);
    }
    return NULL;
}

const char *
an_model_default_path(void)
{
    return default_search(NULL, 0);
}

int
an_model_load(const char *path_or_name, struct an_model **out,
              struct ss_err *err)
{
    const char *p = path_or_name;
    char tried[4 * PATH_MAX + 128] = "";

    *out = NULL;
    if (p == NULL) {
        p = default_search(tried, sizeof(tried));
        /* Results differ several-fold between the two models, so the
         * fallback must not pass unnoticed (results.json names it too). */
        if (p == NULL)
            log_warn("analysis", "default model %s not found (looked in "
                     "%s); using the classical baseline instead",
                     DEFAULT_MODEL_FILE, tried);
    }
    if (p == NULL || strcmp(p, "classical") == 0)
        return an_model_classical(out, err);
    if (!exists(p))
        return err_set(err, -errno, "model %s: %s", p, strerror(errno));
    return an__model_cnn_load(p, out, err);
}

void
an_model_free(struct an_model *m)
{
    if (m == NULL)
        return;
    if (m->ops->destroy != NULL)
        m->ops->destroy(m);
    free(m);
}
