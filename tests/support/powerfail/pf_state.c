/* SPDX-License-Identifier: MIT */
/*
 * The durable-state store of the power-loss model: snapshots of file
 * contents and directory entries taken when a program syncs them, and the
 * rebuild of the root from those snapshots.  Plain libc only, so that it
 * can live inside any program as a preload library.
 */
#include "tests/support/powerfail/pf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_DEPTH 64

static int
path_in(char *buf, size_t len, const char *a, const char *b, const char *c)
{
    int n = snprintf(buf, len, "%s%s%s%s%s", a, b ? "/" : "", b ? b : "",
                     c ? "/" : "", c ? c : "");

    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes text to STATE/name atomically (temporary name, rename). */
static int
put_text(struct pf *pf, const char *name, const char *text)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    int fd, rc;

    if (path_in(path, sizeof(path), pf->state, name, NULL) < 0)
        return -ENAMETOOLONG;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, text, strlen(text));
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static int
get_text(struct pf *pf, const char *name, char *buf, size_t len)
{
    char path[PATH_MAX];
    ssize_t n;
    int fd;

    if (path_in(path, sizeof(path), pf->state, name, NULL) < 0)
        return -ENAMETOOLONG;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return 0;
}

int
pf_open(struct pf *pf, const char *state, const char *root)
{
    char path[PATH_MAX], stored[PATH_MAX];
    int rc;

    memset(pf, 0, sizeof(*pf));
    pf->lockfd = -1;
    snprintf(pf->state, sizeof(pf->state), "%s", state);
    mkdir(state, 0700);
    snprintf(path, sizeof(path), "%s/c", state);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/d", state);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/lock", state);
    pf->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (pf->lockfd < 0)
        return -errno;
    if (root != NULL) {
        if (realpath(root, pf->root) == NULL)
            return -errno;
        rc = get_text(pf, "root", stored, sizeof(stored));
        if (rc == -ENOENT)
            rc = put_text(pf, "root", pf->root);
        else if (rc == 0 && strcmp(stored, pf->root) != 0)
            rc = -EXDEV;            /* one state serves one root */
    } else {
        rc = get_text(pf, "root", pf->root, sizeof(pf->root));
    }
    pf->rootlen = strlen(pf->root);
    return rc;
}

void
pf_close(struct pf *pf)
{
    if (pf->lockfd >= 0)
        close(pf->lockfd);
    pf->lockfd = -1;
}

void
pf_lock(struct pf *pf)
{
    while (flock(pf->lockfd, LOCK_EX) != 0 && errno == EINTR)
        ;
}

void
pf_unlock(struct pf *pf)
{
    flock(pf->lockfd, LOCK_UN);
}

bool
pf_under_root(const struct pf *pf, const char *path)
{
    return pf->rootlen > 0 && strncmp(path, pf->root, pf->rootlen) == 0 &&
           (path[pf->rootlen] == '/' || path[pf->rootlen] == '\0');
}

static void
make_key(const struct statx *s, char key[PF_KEY_MAX])
{
    unsigned long long bs = 0, bn = 0;

    if (s->stx_mask & STATX_BTIME) {
        bs = (unsigned long long)s->stx_btime.tv_sec;
        bn = s->stx_btime.tv_nsec;
    }
    snprintf(key, PF_KEY_MAX, "%x.%x-%llx-%llx.%llx", s->stx_dev_major,
             s->stx_dev_minor, (unsigned long long)s->stx_ino, bs, bn);
}

static int
stat_at(int dirfd, const char *name, int flags, struct statx *s)
{
    if (statx(dirfd, name, flags | AT_SYMLINK_NOFOLLOW,
              STATX_BASIC_STATS | STATX_BTIME, s) != 0)
        return -errno;
    return 0;
}

/* Copies everything readable from in to a new file at path. */
static int
copy_to(int in, const char *path)
{
    char tmp[PATH_MAX + 32], buf[65536];
    off_t off = 0;
    int out, rc = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    for (;;) {
        ssize_t n = pread(in, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        rc = write_all(out, buf, (size_t)n);
        if (rc < 0)
            break;
        off += n;
    }
    close(out);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static int
snap_content(struct pf *pf, int readable_fd, const char *key)
{
    char path[PATH_MAX];

    if (path_in(path, sizeof(path), pf->state, "c", key) < 0)
        return -ENAMETOOLONG;
    return copy_to(readable_fd, path);
}

static void
hex(const char *s, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[(unsigned char)s[i] >> 4];
        out[2 * i + 1] = digits[(unsigned char)s[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One listing line for entry name of the open directory dfd; 0 with an
 * empty line for entries the model ignores. */
static int
entry_line(struct pf *pf, int dfd, const char *name, char *line, size_t len)
{
    char ref[2 * PATH_MAX + 1], hname[2 * NAME_MAX + 3], target[PATH_MAX];
    struct statx s;
    char type;
    int rc;

    line[0] = '\0';
    if (strncmp(name, ".pf-restore.", 12) == 0)
        return 0;
    rc = stat_at(dfd, name, 0, &s);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc;  /* gone meanwhile */
    if (S_ISREG(s.stx_mode)) {
        type = 'f';
        make_key(&s, ref);
    } else if (S_ISDIR(s.stx_mode)) {
        type = 'd';
        make_key(&s, ref);
    } else if (S_ISLNK(s.stx_mode)) {
        ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
        if (n < 0)
            return 0;
        type = 'l';
        hex(target, (size_t)n, ref);
    } else {
        return 0;                   /* sockets, fifos: not data */
    }
    hex(name, strlen(name), hname);
    snprintf(line, len, "%c %o %s %s\n", type, s.stx_mode & 07777, ref,
             hname);
    return 0;
}

static int
snap_dir(struct pf *pf, int readable_dfd, const char *key)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32], line[4 * PATH_MAX];
    struct dirent *de;
    DIR *d;
    int fd, out, rc = 0;

    if (path_in(path, sizeof(path), pf->state, "d", key) < 0)
        return -ENAMETOOLONG;
    fd = dup(readable_dfd);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    rewinddir(d);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        closedir(d);
        return -errno;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = entry_line(pf, dirfd(d), de->d_name, line, sizeof(line));
        if (rc == 0 && line[0] != '\0')
            rc = write_all(out, line, strlen(line));
    }
    closedir(d);
    close(out);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int
pf_snap_fd(struct pf *pf, int fd)
{
    char proc[64], key[PF_KEY_MAX];
    struct statx s;
    int rfd, rc;

    rc = stat_at(fd, "", AT_EMPTY_PATH, &s);
    if (rc < 0)
        return rc;
    make_key(&s, key);
    /* A descriptor of our own: the caller's may be write-only, and its
     * file offset must not move. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    rfd = open(proc, O_RDONLY | O_CLOEXEC |
               (S_ISDIR(s.stx_mode) ? O_DIRECTORY : 0));
    if (rfd < 0)
        return -errno;
    if (S_ISDIR(s.stx_mode))
        rc = snap_dir(pf, rfd, key);
    else if (S_ISREG(s.stx_mode))
        rc = snap_content(pf, rfd, key);
    close(rfd);
    return rc;
}

/* Snapshots dfd's entries and, recursively, every file and directory. */
static int
snap_tree(struct pf *pf, int dfd, int depth)
{
    char key[PF_KEY_MAX];
    struct dirent *de;
    struct statx s;
    DIR *d;
    int fd, rc;

    if (depth > MAX_DEPTH)
        return -ELOOP;
    rc = stat_at(dfd, "", AT_EMPTY_PATH, &s);
    if (rc < 0)
        return rc;
    make_key(&s, key);
    rc = snap_dir(pf, dfd, key);
    if (rc < 0)
        return rc;
    fd = dup(dfd);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    rewinddir(d);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        int cfd;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strncmp(de->d_name, ".pf-restore.", 12) == 0)
            continue;
        if (stat_at(dirfd(d), de->d_name, 0, &s) < 0)
            continue;
        if (!S_ISDIR(s.stx_mode) && !S_ISREG(s.stx_mode))
            continue;
        cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC |
                     O_NOFOLLOW | (S_ISDIR(s.stx_mode) ? O_DIRECTORY : 0));
        if (cfd < 0)
            continue;               /* removed meanwhile */
        if (S_ISDIR(s.stx_mode)) {
            rc = snap_tree(pf, cfd, depth + 1);
        } else {
            make_key(&s, key);
            rc = snap_content(pf, cfd, key);
        }
        close(cfd);
    }
    closedir(d);
    return rc;
}

int
pf_snap_all(struct pf *pf)
{
    int fd = open(pf->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -errno;
    rc = snap_tree(pf, fd, 0);
    close(fd);
    return rc;
}

int
pf_baseline(struct pf *pf)
{
    char key[PF_KEY_MAX];
    struct statx s;
    int rc;

    pf_lock(pf);
    if (get_text(pf, "rootkey", key, sizeof(key)) == 0) {
        pf_unlock(pf);
        return 0;
    }
    rc = stat_at(AT_FDCWD, pf->root, 0, &s);
    if (rc == 0)
        rc = pf_snap_all(pf);
    if (rc == 0) {
        make_key(&s, key);
        rc = put_text(pf, "rootkey", key);
    }
    pf_unlock(pf);
    return rc;
}

long
pf_count_next(struct pf *pf)
{
    char buf[32];
    long n = 0;

    if (get_text(pf, "count", buf, sizeof(buf)) == 0)
        n = strtol(buf, NULL, 10);
    n++;
    snprintf(buf, sizeof(buf), "%ld\n", n);
    put_text(pf, "count", buf);
    return n;
}

void
pf_mark_cut(struct pf *pf)
{
    put_text(pf, "cut", "1\n");
}

bool
pf_is_cut(struct pf *pf)
{
    char buf[8];

    return get_text(pf, "cut", buf, sizeof(buf)) == 0;
}

/* --- restore ----------------------------------------------------------- */

struct live {
    char key[PF_KEY_MAX];
    char path[PATH_MAX];
};

struct restore {
    struct pf *pf;
    bool torn;
    uint64_t seed;
    struct live *live;
    int nlive, cap;
    int nfiles;
};

static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void
live_add(struct restore *r, const char *key, const char *path)
{
    if (r->nlive == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        struct live *l = realloc(r->live, sizeof(*l) * (size_t)cap);
        if (l == NULL)
            return;
        r->live = l;
        r->cap = cap;
    }
    snprintf(r->live[r->nlive].key, PF_KEY_MAX, "%s", key);
    snprintf(r->live[r->nlive].path, PATH_MAX, "%s", path);
    r->nlive++;
}

/* Maps the keys of the live files under dir to their paths (torn mode). */
static void
live_scan(struct restore *r, const char *dir, int depth)
{
    char path[PATH_MAX], key[PF_KEY_MAX];
    struct dirent *de;
    struct statx s;
    DIR *d;

    if (depth > MAX_DEPTH || (d = opendir(dir)) == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            path_in(path, sizeof(path), dir, de->d_name, NULL) < 0 ||
            stat_at(AT_FDCWD, path, 0, &s) < 0)
            continue;
        if (S_ISDIR(s.stx_mode)) {
            live_scan(r, path, depth + 1);
        } else if (S_ISREG(s.stx_mode)) {
            make_key(&s, key);
            live_add(r, key, path);
        }
    }
    closedir(d);
}

static const char *
live_path(struct restore *r, const char *key)
{
    int i;

    for (i = 0; i < r->nlive; i++)
        if (strcmp(r->live[i].key, key) == 0)
            return r->live[i].path;
    return NULL;
}

static int
unhex(const char *h, char *out, size_t len)
{
    size_t n = strlen(h) / 2, i;

    if (n + 1 > len)
        return -ENAMETOOLONG;
    for (i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -EINVAL;
        out[i] = (char)v;
    }
    out[n] = '\0';
    return 0;
}

/* Fills fd with a page-wise random mix of the durable copy and the live
 * file, as a disk that wrote back some unsynced pages would hold. */
static int
write_torn(struct restore *r, int out, int dur, int live, const char *key)
{
    struct stat ds, ls;
    uint64_t h = r->seed, size, off;
    char a[PAGE], b[PAGE];
    size_t i;

    for (i = 0; key[i] != '\0'; i++)
        h = mix64(h ^ (unsigned char)key[i]);
    if (fstat(dur, &ds) != 0 || fstat(live, &ls) != 0)
        return -errno;
    h = mix64(h);
    size = (h & 1) ? (uint64_t)ls.st_size : (uint64_t)ds.st_size;
    for (off = 0; off < size; off += PAGE) {
        ssize_t na = pread(dur, a, PAGE, (off_t)off);
        ssize_t nb = pread(live, b, PAGE, (off_t)off);
        size_t want = size - off < PAGE ? (size_t)(size - off) : PAGE;
        char *src;

        h = mix64(h);
        na = na < 0 ? 0 : na;
        nb = nb < 0 ? 0 : nb;
        memset(a + na, 0, PAGE - (size_t)na);
        memset(b + nb, 0, PAGE - (size_t)nb);
        src = ((h & 1) && nb > 0) || na == 0 ? b : a;
        if (pwrite(out, src, want, (off_t)off) != (ssize_t)want)
            return -EIO;
    }
    return 0;
}

static int
make_file(struct restore *r, int dfd, const char *name, unsigned mode,
          const char *key)
{
    char path[PATH_MAX];
    const char *lp;
    int out, in, rc = 0;

    out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    path_in(path, sizeof(path), r->pf->state, "c", key);
    in = open(path, O_RDONLY | O_CLOEXEC);
    lp = r->torn && in >= 0 ? live_path(r, key) : NULL;
    if (lp != NULL) {
        int lfd = open(lp, O_RDONLY | O_CLOEXEC);
        rc = lfd >= 0 ? write_torn(r, out, in, lfd, key) : -errno;
        if (lfd >= 0)
            close(lfd);
    } else if (in >= 0) {
        char buf[65536];
        ssize_t n;
        while (rc == 0 && (n = read(in, buf, sizeof(buf))) > 0)
            rc = write_all(out, buf, (size_t)n);
    }
    if (in >= 0)
        close(in);
    fchmod(out, mode);
    close(out);
    r->nfiles++;
    return rc;
}

static int
build_dir(struct restore *r, int dfd, const char *key, int depth)
{
    char path[PATH_MAX], line[4 * PATH_MAX];
    char ref[2 * PATH_MAX + 1], hname[2 * NAME_MAX + 3];
    char name[NAME_MAX + 2], target[PATH_MAX];
    unsigned mode;
    char type;
    FILE *f;
    int rc = 0;

    if (depth > MAX_DEPTH)
        return -ELOOP;
    path_in(path, sizeof(path), r->pf->state, "d", key);
    f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;    /* never synced: empty */
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%c %o %s %s", &type, &mode, ref, hname) != 4 ||
            unhex(hname, name, sizeof(name)) < 0)
            continue;
        if (type == 'f') {
            rc = make_file(r, dfd, name, mode, ref);
        } else if (type == 'd') {
            int cfd;
            if (mkdirat(dfd, name, mode) != 0) {
                rc = -errno;
                break;
            }
            cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (cfd < 0) {
                rc = -errno;
                break;
            }
            rc = build_dir(r, cfd, ref, depth + 1);
            fchmod(cfd, mode);
            close(cfd);
        } else if (type == 'l' && unhex(ref, target, sizeof(target)) == 0) {
            if (symlinkat(target, dfd, name) != 0)
                rc = -errno;
        }
    }
    fclose(f);
    return rc;
}

static int
remove_tree(int dfd, const char *skip, int depth)
{
    struct dirent *de;
    DIR *d;
    int fd = dup(dfd), rc = 0;

    if (depth > MAX_DEPTH)
        return -ELOOP;
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            (skip != NULL && strcmp(de->d_name, skip) == 0))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            continue;
        if (errno == EISDIR || errno == EPERM) {
            int cfd = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd >= 0) {
                remove_tree(cfd, NULL, depth + 1);
                close(cfd);
            }
            if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0)
                rc = -errno;
        } else if (errno != ENOENT) {
            rc = -errno;
        }
    }
    closedir(d);
    return rc;
}

static int
move_up(int rootfd, const char *staging)
{
    struct dirent *de;
    DIR *d;
    int sfd, rc = 0;

    sfd = openat(rootfd, staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0 || (d = fdopendir(sfd)) == NULL) {
        if (sfd >= 0)
            close(sfd);
        return -errno;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (renameat(dirfd(d), de->d_name, rootfd, de->d_name) != 0)
            rc = -errno;
    }
    closedir(d);
    if (unlinkat(rootfd, staging, AT_REMOVEDIR) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* Empties the state so the next run takes a new baseline. */
static void
clear_state(struct pf *pf)
{
    static const char *const files[] = { "rootkey", "count", "cut" };
    char path[PATH_MAX];
    size_t i;
    int fd;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        path_in(path, sizeof(path), pf->state, files[i], NULL);
        unlink(path);
    }
    for (i = 0; i < 2; i++) {
        path_in(path, sizeof(path), pf->state, i ? "d" : "c", NULL);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            remove_tree(fd, NULL, 0);
            close(fd);
        }
    }
}

int
pf_restore(struct pf *pf, bool torn, uint64_t seed, int *nfiles)
{
    struct restore r = { .pf = pf, .torn = torn, .seed = seed };
    char key[PF_KEY_MAX], staging[64];
    int rootfd, sfd, rc;

    pf_lock(pf);
    rc = get_text(pf, "rootkey", key, sizeof(key));
    if (rc < 0) {
        pf_unlock(pf);
        return rc;
    }
    if (torn)
        live_scan(&r, pf->root, 0);
    rootfd = open(pf->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        rc = -errno;
        goto out;
    }
    snprintf(staging, sizeof(staging), ".pf-restore.%d", (int)getpid());
    if (mkdirat(rootfd, staging, 0700) != 0) {
        rc = -errno;
        goto out;
    }
    sfd = openat(rootfd, staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = sfd < 0 ? -errno : build_dir(&r, sfd, key, 0);
    if (sfd >= 0)
        close(sfd);
    if (rc == 0)
        rc = remove_tree(rootfd, staging, 0);
    if (rc == 0)
        rc = move_up(rootfd, staging);
    if (rc == 0)
        clear_state(pf);
out:
    if (rootfd >= 0)
        close(rootfd);
    free(r.live);
    if (nfiles != NULL)
        *nfiles = r.nfiles;
    pf_unlock(pf);
    return rc;
}

static long
count_entries(const char *dir)
{
    struct dirent *de;
    DIR *d = opendir(dir);
    long n = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.' && strstr(de->d_name, ".tmp.") == NULL;
    closedir(d);
    return n;
}

void
pf_status(struct pf *pf, long *files, long *dirs, long *syncs)
{
    char path[PATH_MAX], buf[32];

    path_in(path, sizeof(path), pf->state, "c", NULL);
    *files = count_entries(path);
    path_in(path, sizeof(path), pf->state, "d", NULL);
    *dirs = count_entries(path);
    *syncs = get_text(pf, "count", buf, sizeof(buf)) == 0 ?
        strtol(buf, NULL, 10) : 0;
}
