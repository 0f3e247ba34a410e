/* SPDX-License-Identifier: MIT */
/* Durable per-tile JPEG files of a scan, and their clean-up. */
#include "storage/tilestore.h"

#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/util.h"

struct tilestore {
    int64_t scan;
    char scan_dir[4096];
    char tiles_dir[4200];
};

int
tilestore_mkdir_durable(const char *path, struct ss_err *err)
{
    char tmp[4096];
    char *p;
    int rc;

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    for (p = tmp + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0750) == 0) {
            /* The new directory's entry lives in its parent: ".", "/" or
             * the path up to the last slash. */
            char *slash = strrchr(tmp, '/');
            if (slash == NULL) {
                rc = util_fsync_dir(".", err);
            } else {
                *slash = '\0';
                rc = util_fsync_dir(slash == tmp ? "/" : tmp, err);
                *slash = '/';
            }
            if (rc < 0)
                return rc;
        } else if (errno != EEXIST) {
            return err_set(err, -errno, "%s: cannot create: %s", tmp,
                           strerror(errno));
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

int
tilestore_open(const char *data_dir, int64_t scan, struct tilestore **out,
               struct ss_err *err)
{
    struct tilestore *ts;
    int rc;

    *out = NULL;
    ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    ts->scan = scan;
    snprintf(ts->scan_dir, sizeof(ts->scan_dir), "%s/scans/%lld", data_dir,
             (long long)scan);
    snprintf(ts->tiles_dir, sizeof(ts->tiles_dir), "%s/tiles", ts->scan_dir);
    rc = tilestore_mkdir_durable(ts->tiles_dir, err);
    if (rc < 0) {
        free(ts);
        return err_prefix(err, "tile store of scan %lld", (long long)scan);
    }
    *out = ts;
    return 0;
}

void
tilestore_close(struct tilestore *ts)
{
    free(ts);
}

const char *
tilestore_scan_dir(const struct tilestore *ts)
{
    return ts->scan_dir;
}

void
tilestore_rel(const struct tilestore *ts, int idx, char *buf, size_t len)
{
    snprintf(buf, len, "scans/%lld/tiles/%d.jpg", (long long)ts->scan, idx);
}

static void
tile_path(const struct tilestore *ts, int idx, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%d.jpg", ts->tiles_dir, idx);
}

void
tilestore_sha256(const void *data, size_t len, char hex[65])
{
    GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);

    g_checksum_update(ck, data, (gssize)len);
    snprintf(hex, 65, "%s", g_checksum_get_string(ck));
    g_checksum_free(ck);
}

int
tilestore_put(struct tilestore *ts, int idx, const struct img *tile,
              char hex[65], struct ss_err *err)
{
    unsigned char *buf = NULL;
    char path[4300];
    size_t len = 0;
    int rc;

    tile_path(ts, idx, path, sizeof(path));
    rc = img_jpeg_encode(tile, TILESTORE_QUALITY, 444, &buf, &len, err);
    if (rc == 0) {
        tilestore_sha256(buf, len, hex);
        rc = util_write_durable(path, buf, len, err);
    }
    tjFree(buf);
    if (rc < 0)
        return err_prefix(err, "tile %d", idx);
    return 0;
}

int
tilestore_get(struct tilestore *ts, int idx, struct img **out,
              struct ss_err *err)
{
    char path[4300];
    int rc;

    tile_path(ts, idx, path, sizeof(path));
    rc = img_jpeg_read(path, out, err);
    if (rc < 0)
        return err_prefix(err, "tile %d", idx);
    return 0;
}

int
tilestore_verify(struct tilestore *ts, int idx, const char *hex,
                 struct ss_err *err)
{
    char path[4300], got[65];
    int rc;

    tile_path(ts, idx, path, sizeof(path));
    rc = util_sha256_file(path, got, err);
    if (rc < 0)
        return err_prefix(err, "tile %d", idx);
    if (strcmp(got, hex) != 0)
        return err_set(err, SS_EFORMAT, "tile %d: %s: checksum %.12s... "
                       "differs from the recorded %.12s...", idx, path, got,
                       hex);
    return 0;
}

/* Removes the entries of dir that pred() selects; counts them in *n. */
static int
remove_matching(const char *dir, bool (*pred)(const char *name), int *n,
                struct ss_err *err)
{
    struct dirent *de;
    char path[4400];
    DIR *d;

    d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : err_set(err, -errno, "%s: %s", dir,
                                             strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (!pred(de->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (unlink(path) == 0)
            (*n)++;
        else if (errno != ENOENT) {
            int rc = err_set(err, -errno, "%s: %s", path, strerror(errno));
            closedir(d);
            return rc;
        }
    }
    closedir(d);
    return 0;
}

static bool
is_temp(const char *name)
{
    return strstr(name, ".tmp") != NULL;
}

static bool
is_tile(const char *name)
{
    return name[0] != '.';
}

int
tilestore_clean(struct tilestore *ts, int *n, struct ss_err *err)
{
    int rc;

    *n = 0;
    rc = remove_matching(ts->tiles_dir, is_temp, n, err);
    if (rc == 0)
        rc = remove_matching(ts->scan_dir, is_temp, n, err);
    return rc;
}

int
tilestore_remove_tiles(struct tilestore *ts, struct ss_err *err)
{
    int n = 0, rc;

    rc = remove_matching(ts->tiles_dir, is_tile, &n, err);
    if (rc == 0 && rmdir(ts->tiles_dir) != 0 && errno != ENOENT)
        rc = err_set(err, -errno, "%s: %s", ts->tiles_dir, strerror(errno));
    return rc;
}
