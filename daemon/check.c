/* SPDX-License-Identifier: MIT */
/*
 * What slidescand needs of the machine before it starts, checked without
 * changing anything, so that `slidescand --check` refuses what the start
 * would refuse: the socket's group exists, the socket path fits a unix
 * socket address and is not some other kind of file, and the directories
 * the daemon writes (the socket's, data_dir, the catalogue's) exist or can
 * be created, and can be written.  Writability is probed by making a
 * directory and removing it at once: permission bits say nothing for
 * root, and a file system such as /proc refuses whatever its bits say.
 * The analysis worker must be an executable file and a model given by
 * path a model file the worker can load, or every analysis would fail at
 * its start.
 */
#include "daemon/daemon.h"
#include "worker/analysis/analysis.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The deepest existing ancestor of path (path itself when it exists). */
static void
existing_ancestor(const char *path, char *out, size_t len)
{
    struct stat st;
    char *slash;

    snprintf(out, len, "%s", path);
    while (stat(out, &st) != 0 && errno == ENOENT) {
        slash = strrchr(out, '/');
        if (slash == NULL || slash == out) {
            snprintf(out, len, "/");
            return;
        }
        *slash = '\0';
    }
}

/* 0 when dir exists as a directory (or can be made) and takes new
 * entries; else an errno and a cause in why. */
static int
dir_usable(const char *dir, char *why, size_t len)
{
    char anc[PATH_MAX], probe[PATH_MAX + 64];
    struct stat st;

    existing_ancestor(dir, anc, sizeof(anc));
    if (stat(anc, &st) != 0) {
        snprintf(why, len, "%s: %s", anc, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, len, "%s is not a directory", anc);
        return -ENOTDIR;
    }
    snprintf(probe, sizeof(probe), "%s%s.slidescand-check-%d", anc,
             strcmp(anc, "/") == 0 ? "" : "/", (int)getpid());
    /* A full disk is no reason to refuse: the daemon waits for space. */
    if (mkdir(probe, 0700) != 0 && errno != ENOSPC && errno != EDQUOT) {
        int e = errno;
        snprintf(why, len, "cannot create %s in %s: %s",
                 strcmp(anc, dir) == 0 ? "files" : "it", anc, strerror(e));
        return -e;
    }
    rmdir(probe);
    return 0;
}

static int
check_dir(const struct dconf *c, const char *key, const char *dir,
          struct ss_err *err)
{
    char why[PATH_MAX + 128];

    if (dir_usable(dir, why, sizeof(why)) < 0)
        return daemon__conf_err(c, err, "daemon", key, "%s: %s", dir, why);
    return 0;
}

static int
check_socket(const struct dconf *c, struct ss_err *err)
{
    const char *path = c->socket_path;
    char dir[PATH_MAX];
    struct stat st;

    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return daemon__conf_err(c, err, "daemon", "socket", "'%s' is %zu "
                                "bytes, longer than a unix socket path may "
                                "be (107 bytes)", path, strlen(path));
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        return daemon__conf_err(c, err, "daemon", "socket", "%s exists and "
                                "is not a socket", path);
    snprintf(dir, sizeof(dir), "%s", path);
    return check_dir(c, "socket", dirname(dir), err);
}

static int
check_group(const struct dconf *c, struct ss_err *err)
{
    struct group gr, *res = NULL;
    char buf[16384];

    if (c->group[0] == '\0')
        return 0;
    if (getgrnam_r(c->group, &gr, buf, sizeof(buf), &res) != 0 ||
        res == NULL)
        return daemon__conf_err(c, err, "daemon", "group", "no group named "
                                "'%s' (create it, e.g. with systemd-sysusers, "
                                "or set group = to admit root and the "
                                "daemon's user only)", c->group);
    return 0;
}

/* 0 when path names a regular file this process may open with mode
 * (access(2) flags); else an errno and a cause in why. */
static int
file_usable(const char *path, int mode, char *why, size_t len)
{
    struct stat st;
    int e;

    if (stat(path, &st) != 0 || access(path, mode) != 0) {
        e = errno;
        snprintf(why, len, "%s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, len, "%s is not a file", path);
        return -EISDIR;
    }
    return 0;
}

/* A worker named without a slash is looked up in PATH, as the spawn
 * (execvp) does; full is set to the file found. */
static int
find_in_path(const char *name, char *full, size_t len)
{
    const char *env = getenv("PATH"), *p, *end;

    for (p = env != NULL ? env : "/usr/bin:/bin"; *p != '\0'; p = end) {
        end = strchrnul(p, ':');
        snprintf(full, len, "%.*s/%s", (int)(end - p), p, name);
        if (access(full, X_OK) == 0)
            return 0;
        if (*end == ':')
            end++;
    }
    return -ENOENT;
}

static int
check_worker(const struct dconf *c, struct ss_err *err)
{
    char name[PATH_MAX], path[2 * PATH_MAX], why[2 * PATH_MAX + 128];

    daemon__worker_path(c, name, sizeof(name));
    snprintf(path, sizeof(path), "%s", name);
    if (strchr(name, '/') == NULL && find_in_path(name, path,
                                                  sizeof(path)) < 0)
        return daemon__conf_err(c, err, "daemon", "worker", "no program "
                                "named '%s' in PATH; analyses could not "
                                "run", name);
    if (file_usable(path, X_OK, why, sizeof(why)) < 0)
        return daemon__conf_err(c, err, "daemon", "worker", "%s; analyses "
                                "could not run", why);
    return 0;
}

/* "" leaves the choice to the worker; "classical" is its built-in
 * model, which needs no file.  A file is loaded as the worker would load
 * it (safetensors weights with the architecture and meta data the
 * segmenter needs), so a file of another kind, or a model cut short, is
 * refused here rather than failing every analysis later. */
static int
check_model(const struct dconf *c, struct ss_err *err)
{
    char why[2 * PATH_MAX + 128], lead[PATH_MAX + 16];
    struct an_model *m = NULL;
    struct ss_err e;
    const char *msg;

    if (c->model[0] == '\0' || strcmp(c->model, "classical") == 0)
        return 0;
    if (file_usable(c->model, R_OK, why, sizeof(why)) < 0)
        return daemon__conf_err(c, err, "analysis", "model", "%s; analyses "
                                "could not run", why);
    if (an_model_load(c->model, &m, &e) == 0) {
        an_model_free(m);
        return 0;
    }
    /* The loader names the model first; the key already does. */
    msg = e.msg;
    snprintf(lead, sizeof(lead), "model %s: ", c->model);
    if (strncmp(msg, lead, strlen(lead)) == 0)
        msg += strlen(lead);
    return daemon__conf_err(c, err, "analysis", "model", "%s; analyses "
                            "could not run", msg);
}

int
daemon__conf_check_analysis(const struct dconf *c, struct ss_err *err)
{
    int rc = check_worker(c, err);

    return rc == 0 ? check_model(c, err) : rc;
}

static int
check_catalogue(const struct dconf *c, struct ss_err *err)
{
    char dir[PATH_MAX];
    struct stat st;

    if (c->catalogue[0] == '\0')
        return 0;
    if (stat(c->catalogue, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return daemon__conf_err(c, err, "daemon", "catalogue", "%s is "
                                    "not a file", c->catalogue);
        if (access(c->catalogue, R_OK | W_OK) != 0)
            return daemon__conf_err(c, err, "daemon", "catalogue", "%s: %s",
                                    c->catalogue, strerror(errno));
    }
    snprintf(dir, sizeof(dir), "%s", c->catalogue);
    return check_dir(c, "catalogue", dirname(dir), err);
}

int
daemon__conf_check_host(const struct dconf *c, struct ss_err *err)
{
    int rc;

    rc = check_group(c, err);
    if (rc == 0)
        rc = check_socket(c, err);
    if (rc == 0)
        rc = check_dir(c, "data_dir", c->data_dir, err);
    if (rc == 0)
        rc = check_catalogue(c, err);
    if (rc == 0)
        rc = daemon__conf_check_analysis(c, err);
    return rc;
}
