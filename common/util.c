/* SPDX-License-Identifier: MIT */
/* Clocks, durable files and checksums. */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

double
util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void
util_utc_iso(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
util_mkdir_as(const char *path, unsigned mode, long gid, struct ss_err *err)
{
    char tmp[4096];
    char *p;

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    for (p = tmp + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, (mode_t)mode) == 0) {
                /* mkdir applies the umask: set the mode itself. */
                if (chmod(tmp, (mode_t)mode) != 0 ||
                    (gid >= 0 && chown(tmp, (uid_t)-1, (gid_t)gid) != 0))
                    return err_set(err, -errno, "%s: %s", tmp,
                                   strerror(errno));
            } else if (errno != EEXIST) {
                return err_set(err, -errno, "%s: cannot create: %s", tmp,
                               strerror(errno));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

void
util_parent_dir(const char *path, char *buf, size_t len)
{
    const char *end = path + strlen(path);

    while (end > path + 1 && end[-1] == '/')
        end--;
    while (end > path && end[-1] != '/')
        end--;
    while (end > path + 1 && end[-1] == '/')
        end--;
    if (end == path)
        snprintf(buf, len, ".");
    else
        snprintf(buf, len, "%.*s", (int)(end - path), path);
}

int
util_mkdir_leaf(const char *path, struct ss_err *err)
{
    char parent[4096];
    struct stat st;

    if (mkdir(path, 0750) == 0) {
        if (chmod(path, 0750) != 0)
            return err_set(err, -errno, "%s: %s", path, strerror(errno));
        return 0;
    }
    if (errno == EEXIST) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        return err_set(err, -ENOTDIR, "%s: exists and is not a directory",
                       path);
    }
    if (errno != ENOENT)
        return err_set(err, -errno, "%s: cannot create: %s", path,
                       strerror(errno));
    util_parent_dir(path, parent, sizeof(parent));
    return err_set(err, -ENOENT, "%s: No such file or directory", parent);
}

int
util_mkdir_p(const char *path, struct ss_err *err)
{
    return util_mkdir_as(path, 0750, -1, err);
}

int
util_fsync_dir(const char *dir, struct ss_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return err_set(err, -errno, "%s: %s", dir, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, -e, "%s: fsync: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

static int
fsync_path(const char *path, struct ss_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return err_set(err, -e, "%s: fsync: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

int
util_commit_file(const char *tmp, const char *path, struct ss_err *err)
{
    char dir[4096];
    int rc;

    /* The message names the file the caller asked for, not the
     * temporary one. */
    rc = fsync_path(tmp, err);
    if (rc < 0)
        return err_set(err, rc, "%s: fsync: %s", path, strerror(-rc));
    if (rename(tmp, path) != 0)
        return err_set(err, -errno, "%s: rename: %s", path, strerror(errno));
    snprintf(dir, sizeof(dir), "%s", path);
    return util_fsync_dir(dirname(dir), err);
}

int
util_write_durable(const char *path, const void *data, size_t len,
                   struct ss_err *err)
{
    char tmp[4096];
    const char *p = data;
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
        (int)sizeof(tmp))
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return err_set(err, -e, "%s: write: %s", path, strerror(e));
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return err_set(err, -e, "%s: fsync: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, -e, "%s: rename: %s", path, strerror(e));
    }
    {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", path);
        return util_fsync_dir(dirname(dir), err);
    }
}

int
util_read_file(const char *path, char **buf, size_t *len, struct ss_err *err)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 65536, n = 0, r;
    char *b;

    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    b = malloc(cap + 1);
    while (b != NULL && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (nb == NULL) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    if (b == NULL) {
        fclose(f);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    if (ferror(f)) {
        fclose(f);
        free(b);
        return err_set(err, -EIO, "%s: read error", path);
    }
    fclose(f);
    b[n] = '\0';
    *buf = b;
    if (len != NULL)
        *len = n;
    return 0;
}

int
util_sha256_file(const char *path, char hex[65], struct ss_err *err)
{
    GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
    unsigned char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL) {
        g_checksum_free(ck);
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        g_checksum_update(ck, buf, n);
    if (ferror(f)) {
        fclose(f);
        g_checksum_free(ck);
        return err_set(err, -EIO, "%s: read error", path);
    }
    fclose(f);
    snprintf(hex, 65, "%s", g_checksum_get_string(ck));
    g_checksum_free(ck);
    return 0;
}

int
util_free_bytes(const char *path, uint64_t *bytes, struct ss_err *err)
{
    struct statvfs sv;

    if (statvfs(path, &sv) != 0)
        return err_set(err, -errno, "%s: statvfs: %s", path, strerror(errno));
    *bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
    return 0;
}

static int
remove_entry(const char *path, const struct stat *sb, int flag,
             struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int
util_remove_tree(const char *dir, struct ss_err *err)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 &&
        errno != ENOENT)
        return err_set(err, -errno, "%s: cannot remove: %s", dir,
                       strerror(errno));
    return 0;
}

int
util_parse_u64(const char *text, uint64_t *out)
{
    unsigned long long v;
    const char *p;
    char *end;

    if (text == NULL || text[0] == '\0')
        return -EINVAL;
    /* strtoull() takes a sign (and wraps "-1" to UINT64_MAX) and leading
     * space: only digits are a seed. */
    for (p = text; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end != '\0')
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}
