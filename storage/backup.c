/* SPDX-License-Identifier: MIT */
/*
 * Backup and restore (storage/backup.h): the catalogue snapshot through
 * SQLite's online backup API, the files it names copied with their
 * checksums verified, a manifest, and the way back.
 */
#include "storage/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <ini.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "storage/tilestore.h"

#define ROUNDS 3                    /* snapshots before giving up */
#define DMS_OFFSET 128              /* SQLite's "a connection is here"
                                       lock byte in the -shm file */
#define PENDING_BYTE_OFFSET 0x40000000L

/* One file (or directory, expanded into files) the catalogue names. */
struct item {
    char rel[PATH_MAX];
    char sha[65];                   /* the catalogue's, "" when none */
    char kind[16];                  /* wsi, tile, analysis, calibration */
    char stamp[32];                 /* when the directory was finished */
    bool dir;
};

struct items {
    struct item *v;
    int n, cap;
};

/* Appends the formatted text to the "; "-separated list in buf while it
 * fits. */
static void
note(char *buf, size_t len, const char *fmt, va_list ap)
{
    size_t used = strlen(buf);

    if (used + 4 >= len)
        return;
    if (used > 0) {
        snprintf(buf + used, len - used, "; ");
        used += 2;
    }
    vsnprintf(buf + used, len - used, fmt, ap);
}

static void
problem(struct backup_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
problem(struct backup_report *r, const char *fmt, ...)
{
    va_list ap;

    r->problems++;
    va_start(ap, fmt);
    note(r->problem, sizeof(r->problem), fmt, ap);
    va_end(ap);
}

static void
repaired(struct backup_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
repaired(struct backup_report *r, const char *fmt, ...)
{
    va_list ap;

    r->repaired++;
    va_start(ap, fmt);
    note(r->repair, sizeof(r->repair), fmt, ap);
    va_end(ap);
}

static struct item *
items_add(struct items *it)
{
    if (it->n == it->cap) {
        int cap = it->cap ? it->cap * 2 : 64;
        struct item *v = realloc(it->v, sizeof(*v) * (size_t)cap);
        if (v == NULL)
            return NULL;
        it->v = v;
        it->cap = cap;
    }
    memset(&it->v[it->n], 0, sizeof(it->v[0]));
    return &it->v[it->n++];
}

static bool
items_has(const struct items *it, const char *rel)
{
    int i;

    for (i = 0; i < it->n; i++)
        if (strcmp(it->v[i].rel, rel) == 0)
            return true;
    return false;
}

static const char *
nonnull(const char *s)
{
    return s != NULL ? s : "";
}

static const char *
col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    return t != NULL ? (const char *)t : "";
}

/* --- what the catalogue names ------------------------------------------- */

static const char *const named_sql =
    "SELECT wsi_path, checksum, 'wsi', '' FROM slides"
    " WHERE coalesce(wsi_path, '') != ''"
    " UNION SELECT wsi_path, checksum, 'wsi', '' FROM scans"
    " WHERE coalesce(wsi_path, '') != ''"
    " UNION SELECT out_dir, '', 'analysis', coalesce(finished, '')"
    " FROM analyses WHERE state = 'done' AND coalesce(out_dir, '') != ''"
    " UNION SELECT dir, '', 'calibration', taken FROM calibrations"
    " UNION SELECT t.file, t.checksum, 'tile', '' FROM tiles t"
    " JOIN scans s ON s.id = t.scan WHERE t.state = 'captured'"
    " AND coalesce(t.file, '') != ''"
    " AND s.state NOT IN ('done', 'failed', 'cancelled')";

static int
db_err(sqlite3 *db, const char *path, const char *what, struct ss_err *err)
{
    return err_set(err, -EIO, "catalogue %s: %s: %s", path, what,
                   sqlite3_errmsg(db));
}

static int
list_named(sqlite3 *db, const char *path, struct items *it,
           struct ss_err *err)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(db, named_sql, -1, &s, NULL) != SQLITE_OK)
        return db_err(db, path, "listing its files (is this a slidescan "
                      "catalogue?)", err);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct item *x;

        if (items_has(it, col(s, 0)))
            continue;
        x = items_add(it);
        if (x == NULL)
            break;
        snprintf(x->rel, sizeof(x->rel), "%s", col(s, 0));
        snprintf(x->sha, sizeof(x->sha), "%s", col(s, 1));
        snprintf(x->kind, sizeof(x->kind), "%s", col(s, 2));
        snprintf(x->stamp, sizeof(x->stamp), "%s", col(s, 3));
        x->dir = strcmp(x->kind, "analysis") == 0 ||
                 strcmp(x->kind, "calibration") == 0;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? err_set(err, -ENOMEM, "out of memory") :
            db_err(db, path, "listing its files", err);
    return 0;
}

/* Replaces each directory item by the files under it (data_dir/rel). */
static void
expand_dir(const char *data_dir, const struct item *d, struct items *out,
           int depth)
{
    char path[PATH_MAX * 2];
    struct dirent *de;
    struct stat st;
    DIR *dh;

    snprintf(path, sizeof(path), "%s/%s", data_dir, d->rel);
    dh = depth < 8 ? opendir(path) : NULL;
    if (dh == NULL)
        return;
    while ((de = readdir(dh)) != NULL) {
        struct item sub = *d;

        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp") != NULL ||
            strstr(de->d_name, ".partial") != NULL)
            continue;
        snprintf(sub.rel, sizeof(sub.rel), "%s/%s", d->rel, de->d_name);
        snprintf(path, sizeof(path), "%s/%s", data_dir, sub.rel);
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            expand_dir(data_dir, &sub, out, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            struct item *x = items_add(out);
            if (x != NULL) {
                *x = sub;
                x->dir = false;
            }
        }
    }
    closedir(dh);
}

static void
expand(const char *data_dir, const struct items *in, struct items *out)
{
    int i;

    for (i = 0; i < in->n; i++) {
        struct item *x;

        if (in->v[i].dir) {
            expand_dir(data_dir, &in->v[i], out, 0);
            continue;
        }
        x = items_add(out);
        if (x != NULL)
            *x = in->v[i];
    }
}

/* --- files --------------------------------------------------------------- */

static int
dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL || (size_t)(slash - path) >= len)
        return -EINVAL;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return 0;
}

static int
write_all(int fd, const char *p, size_t len)
{
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

/* Streams src into the open out, hashing what it reads. */
static int
stream(int in, int out, GChecksum *ck, uint64_t *bytes, const char *src,
       const char *dst, struct ss_err *err)
{
    static char buf[1 << 16];
    ssize_t n;
    int rc;

    *bytes = 0;
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set(err, -errno, "%s: read: %s", src,
                           strerror(errno));
        g_checksum_update(ck, (const guchar *)buf, n);
        rc = write_all(out, buf, (size_t)n);
        if (rc < 0)
            return err_set(err, rc, "%s: write: %s", dst, strerror(-rc));
        *bytes += (uint64_t)n;
    }
    return 0;
}

/* Copies src to dst durably (temporary name, fsync, rename, directory
 * fsync), hashing the bytes read into hex, then reads dst back and
 * checks it has the same hash. */
static int
copy_verified(const char *src, const char *dst, char hex[65],
              uint64_t *bytes, struct ss_err *err)
{
    char tmp[PATH_MAX * 2 + 32], dir[PATH_MAX * 2], back[65];
    GChecksum *ck;
    int in, out, rc;

    if (dir_of(dst, dir, sizeof(dir)) == 0) {
        rc = tilestore_mkdir_durable(dir, err);
        if (rc < 0)
            return rc;
    }
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return err_set(err, -errno, "%s: %s", src, strerror(errno));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, (int)getpid());
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        rc = err_set(err, -errno, "%s: %s", dst, strerror(errno));
        close(in);
        return rc;
    }
    ck = g_checksum_new(G_CHECKSUM_SHA256);
    rc = stream(in, out, ck, bytes, src, dst, err);
    snprintf(hex, 65, "%s", g_checksum_get_string(ck));
    g_checksum_free(ck);
    close(in);
    if (rc == 0 && fsync(out) != 0)
        rc = err_set(err, -errno, "%s: fsync: %s", dst, strerror(errno));
    close(out);
    if (rc == 0)
        rc = util_commit_file(tmp, dst, err);
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    rc = util_sha256_file(dst, back, err);
    if (rc == 0 && strcmp(back, hex) != 0)
        rc = err_set(err, -EIO, "%s: reads back with another checksum than "
                     "%s had", dst, src);
    return rc;
}

/* --- the manifest ------------------------------------------------------ */

static json_t *
manifest_load(const char *dir)
{
    char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s/%s", dir, BACKUP_MANIFEST);
    return json_load_file(path, 0, NULL);
}

static json_t *
manifest_file(json_t *m, const char *rel)
{
    json_t *files = json_object_get(m, "files"), *f;
    size_t i;

    json_array_foreach(files, i, f) {
        if (strcmp(nonnull(json_string_value(json_object_get(f, "path"))),
                   rel) == 0)
            return f;
    }
    return NULL;
}

static json_int_t
mtime_ns(const struct stat *st)
{
    return (json_int_t)st->st_mtim.tv_sec * 1000000000 +
        st->st_mtim.tv_nsec;
}

/* The manifest's entry for x, whose copy at dst has the given checksum
 * and size; its modification time is recorded for quick runs. */
static json_t *
file_entry(const struct item *x, const char *dst, const char *sha,
           uint64_t bytes)
{
    struct stat st;
    json_int_t t = stat(dst, &st) == 0 ? mtime_ns(&st) : 0;

    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:I}", "path", x->rel,
                     "sha256", sha, "bytes", (json_int_t)bytes, "kind",
                     x->kind, "stamp", x->stamp, "mtime_ns", t);
}

static int
manifest_save(const char *dest, json_t *m, struct ss_err *err)
{
    char path[PATH_MAX * 2];
    char *text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
    int rc;

    if (text == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    snprintf(path, sizeof(path), "%s/%s", dest, BACKUP_MANIFEST);
    rc = util_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}

/* --- the catalogue snapshot ------------------------------------------- */

static int
open_ro(const char *path, sqlite3 **db, struct ss_err *err)
{
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL);

    if (rc != SQLITE_OK) {
        rc = err_set(err, rc == SQLITE_CANTOPEN ? -ENOENT : -EIO,
                     "catalogue %s: cannot open: %s", path,
                     *db != NULL ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(*db, 10000);
    return 0;
}

static int
integrity(sqlite3 *db, const char *path, struct ss_err *err)
{
    sqlite3_stmt *s;
    char res[256] = "";
    int rc;

    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) !=
        SQLITE_OK)
        return db_err(db, path, "integrity_check", err);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(res, sizeof(res), "%s", col(s, 0));
    sqlite3_finalize(s);
    if (strcmp(res, "ok") != 0)
        return err_set(err, SS_EFORMAT, "catalogue %s: integrity_check: %s",
                       path, res[0] ? res : sqlite3_errmsg(db));
    return 0;
}

static int64_t
user_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) ==
        SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The cause of the last failure on the snapshot being written: the
 * operating system's (No space left on device, ...) when SQLite saw one,
 * else SQLite's own words. */
static const char *
snap_cause(sqlite3 *db, int code)
{
    int os = db != NULL ? sqlite3_system_errno(db) : 0;

    if ((code & 0xff) == SQLITE_FULL)
        return strerror(ENOSPC);
    if (os != 0)
        return strerror(os);
    return db != NULL && code == SQLITE_OK ? sqlite3_errmsg(db) :
        sqlite3_errstr(code);
}

static int
snap_err(sqlite3 *db, int code, const char *shown, const char *what,
         struct ss_err *err)
{
    return err_set(err, -EIO, "backup catalogue %s: %s: %s", shown, what,
                   snap_cause(db, code));
}

/* Removes the snapshot at path with the journal, WAL and shared-memory
 * files SQLite may have left beside it. */
static void
snap_remove(const char *path)
{
    static const char *const side[] = { "", "-journal", "-wal", "-shm" };
    char p[PATH_MAX * 2 + 16];
    size_t i;

    for (i = 0; i < sizeof(side) / sizeof(side[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, side[i]);
        unlink(p);
    }
}

/* Copies the live catalogue into a standalone database at dst in one
 * read transaction, and checks the copy.  Messages name shown (the
 * backup's catalogue.db) rather than the temporary dst. */
static int
snapshot(const char *catalogue, const char *dst, const char *shown,
         int64_t *schema, struct ss_err *err)
{
    sqlite3 *src = NULL, *out = NULL;
    sqlite3_backup *b;
    int rc;

    snap_remove(dst);
    rc = open_ro(catalogue, &src, err);
    if (rc < 0)
        return rc;
    rc = sqlite3_open(dst, &out);
    if (rc != SQLITE_OK) {
        rc = snap_err(out, rc, shown, "cannot create", err);
        goto done;
    }
    sqlite3_extended_result_codes(out, 1);
    b = sqlite3_backup_init(out, "main", src, "main");
    if (b == NULL) {
        rc = snap_err(out, SQLITE_OK, shown, "copying", err);
        goto done;
    }
    while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY ||
           rc == SQLITE_LOCKED)
        sqlite3_sleep(50);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        rc = snap_err(out, rc, shown, "writing the snapshot", err);
        goto done;
    }
    rc = sqlite3_exec(out, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    rc = rc == SQLITE_OK ? integrity(out, shown, err) :
        snap_err(out, rc, shown, "writing the snapshot", err);
    *schema = user_version(out);
done:
    sqlite3_close(out);
    sqlite3_close(src);
    if (rc < 0)
        snap_remove(dst);
    return rc;
}

/* --- backup ------------------------------------------------------------- */

struct round {
    const char *data_dir, *dest;
    json_t *old, *files;
    json_t *made;                   /* paths this run wrote into dest */
    json_t *fixed;                  /* path: "DEST/files/path (what was
                                       wrong)" for each copy this run
                                       repaired */
    struct backup_report *r;
    int changed;                    /* named files that moved meanwhile */
    bool quick;                     /* trust size and time of kept copies */
};

/* The old manifest's entry for x when it was copied from the same
 * source: the same checksum, or for directory contents (which the
 * catalogue has no checksum for) the directory's same finish time. */
static json_t *
backed_up_before(struct round *rd, const struct item *x)
{
    json_t *f = manifest_file(rd->old, x->rel);
    const char *sha, *stamp;

    if (f == NULL)
        return NULL;
    sha = nonnull(json_string_value(json_object_get(f, "sha256")));
    stamp = nonnull(json_string_value(json_object_get(f, "stamp")));
    if (x->sha[0] != '\0' ? strcmp(sha, x->sha) != 0 :
        x->stamp[0] == '\0' || strcmp(stamp, x->stamp) != 0)
        return NULL;
    return f;
}

/* Whether the copy at dst is still the one the manifest entry f
 * describes: its size, then (unless a quick run finds the recorded size
 * and modification time) its SHA-256, read in full.  Returns 1 when it
 * was read and matches, 2 when trusted by size and time, 0 with why
 * filled when it is missing or damaged. */
static int
copy_intact(const struct round *rd, json_t *f, const char *dst,
            char *why, size_t len)
{
    json_int_t bytes = json_integer_value(json_object_get(f, "bytes"));
    json_t *t = json_object_get(f, "mtime_ns");
    struct stat st;
    struct ss_err e;
    char hex[65];

    if (stat(dst, &st) != 0) {
        snprintf(why, len, "%s", strerror(errno));
        return 0;
    }
    if ((json_int_t)st.st_size != bytes) {
        snprintf(why, len, "%lld bytes, the manifest says %lld",
                 (long long)st.st_size, (long long)bytes);
        return 0;
    }
    if (rd->quick && json_is_integer(t) &&
        json_integer_value(t) == mtime_ns(&st))
        return 2;
    if (util_sha256_file(dst, hex, &e) < 0) {
        snprintf(why, len, "%s", e.msg);
        return 0;
    }
    if (strcmp(hex, nonnull(json_string_value(json_object_get(f,
                                                          "sha256")))) != 0) {
        snprintf(why, len, "checksum differs from the manifest");
        return 0;
    }
    return 1;
}

/* Keeps the old copy of x at dst when it is intact (its entry carried
 * over with the copy's current modification time); false when x must
 * be copied, *damaged set when an old copy was there to stand for it
 * but is missing or damaged (why says how). */
static bool
keep_old(struct round *rd, const struct item *x, const char *dst,
         bool *damaged, char *why, size_t len)
{
    json_t *f = backed_up_before(rd, x), *kept, *fix;
    struct stat st;
    int how;

    *damaged = false;
    if (f == NULL)
        return false;
    how = copy_intact(rd, f, dst, why, len);
    if (how == 0) {
        *damaged = true;
        return false;
    }
    kept = json_deep_copy(f);
    if (stat(dst, &st) == 0)
        json_object_set_new(kept, "mtime_ns", json_integer(mtime_ns(&st)));
    json_array_append_new(rd->files, kept);
    /* A copy repaired in an earlier round of this run stays a repair. */
    fix = json_object_get(rd->fixed, x->rel);
    if (fix != NULL)
        repaired(rd->r, "%s", json_string_value(fix));
    else
        rd->r->kept++;
    if (how == 1)
        rd->r->verified++;
    return true;
}

static void
back_up_one(struct round *rd, const struct item *x)
{
    char src[PATH_MAX * 2], dst[PATH_MAX * 2], hex[65], why[512];
    struct ss_err e;
    uint64_t bytes = 0;
    bool damaged;

    snprintf(src, sizeof(src), "%s/%s", rd->data_dir, x->rel);
    snprintf(dst, sizeof(dst), "%s/files/%s", rd->dest, x->rel);
    if (keep_old(rd, x, dst, &damaged, why, sizeof(why)))
        return;
    if (damaged)
        log_warn("backup", "damaged copy path=%s cause=\"%s\"; copying it "
                 "again", dst, why);
    if (copy_verified(src, dst, hex, &bytes, &e) < 0) {
        /* Only a source gone meanwhile is a change worth a new snapshot;
         * a copy that cannot be written (a full disk) stays a problem. */
        if (access(src, R_OK) != 0)
            rd->changed++;
        if (damaged)
            problem(rd->r, "%s: %s, and copying it again failed: %s", dst,
                    why, e.msg);
        else
            problem(rd->r, "%s", e.msg);
        return;
    }
    json_array_append_new(rd->made, json_string(x->rel));
    if (x->sha[0] != '\0' && strcmp(hex, x->sha) != 0) {
        rd->changed++;
        problem(rd->r, "%s: checksum %.12s... differs from the catalogue's "
                "%.12s...", src, hex, x->sha);
        return;
    }
    json_array_append_new(rd->files, file_entry(x, dst, hex, bytes));
    if (damaged) {
        repaired(rd->r, "%s (%s)", dst, why);
        json_object_set_new(rd->fixed, x->rel, json_sprintf("%s (%s)", dst,
                                                            why));
    } else {
        rd->r->copied++;
    }
    rd->r->verified++;
    rd->r->bytes += bytes;
}

/* Directories whose contents were copied must still be what the snapshot
 * described (an analysis re-run meanwhile rewrites its directory). */
static void
recheck_stamps(struct round *rd, const char *catalogue,
               const struct items *named)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s;
    int i;

    if (open_ro(catalogue, &db, NULL) < 0)
        return;
    for (i = 0; i < named->n; i++) {
        const struct item *x = &named->v[i];
        const char *sql = strcmp(x->kind, "analysis") == 0 ?
            "SELECT coalesce(finished, '') FROM analyses WHERE out_dir = ? "
            "AND state = 'done'" :
            "SELECT taken FROM calibrations WHERE dir = ?";

        if (!x->dir || sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
            continue;
        sqlite3_bind_text(s, 1, x->rel, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_ROW || strcmp(col(s, 0), x->stamp)) {
            rd->changed++;
            problem(rd->r, "%s: changed during the backup", x->rel);
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

/* A directory the catalogue names but the data directory lacks would
 * make the restored data fail its check: it is a problem now. */
static void
missing_dirs(struct round *rd, const struct items *named)
{
    char path[PATH_MAX * 2];
    struct stat st;
    int i;

    for (i = 0; i < named->n; i++) {
        const struct item *x = &named->v[i];

        snprintf(path, sizeof(path), "%s/%s", rd->data_dir, x->rel);
        if (!x->dir || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
            continue;
        rd->changed++;
        problem(rd->r, "%s: %s directory missing", path, x->kind);
    }
}

static int
one_round(struct round *rd, const char *catalogue, const char *snap,
          struct ss_err *err)
{
    struct items named = { 0 }, all = { 0 };
    char shown[PATH_MAX * 2];
    sqlite3 *db = NULL;
    int rc, i;

    snprintf(shown, sizeof(shown), "%s/catalogue.db", rd->dest);
    rc = snapshot(catalogue, snap, shown, &rd->r->schema, err);
    rd->r->snapshots++;
    if (rc == 0)
        rc = open_ro(snap, &db, err);
    if (rc == 0)
        rc = list_named(db, snap, &named, err);
    sqlite3_close(db);
    if (rc == 0) {
        missing_dirs(rd, &named);
        expand(rd->data_dir, &named, &all);
        rd->r->files = all.n;
        for (i = 0; i < all.n; i++)
            back_up_one(rd, &all.v[i]);
        recheck_stamps(rd, catalogue, &named);
    }
    free(named.v);
    free(all.v);
    return rc;
}

/* --- where a backup may be -------------------------------------------- */

/* Appends the path component comp (of length n) to the absolute path out,
 * "." and ".." taken lexically: out's components past the existing
 * prefix are directories still to be created, never symbolic links. */
static int
append_component(char *out, const char *comp, size_t n)
{
    size_t len = strlen(out);

    if (n == 0 || (n == 1 && comp[0] == '.'))
        return 0;
    if (n == 2 && comp[0] == '.' && comp[1] == '.') {
        char *slash = strrchr(out, '/');

        if (slash != NULL)
            slash[slash == out ? 1 : 0] = '\0';
        return 0;
    }
    if (len + n + 2 > PATH_MAX)
        return -ENAMETOOLONG;
    if (len > 1)
        out[len++] = '/';
    memcpy(out + len, comp, n);
    out[len + n] = '\0';
    return 0;
}

/* path made absolute with every symbolic link resolved, also when its
 * last components do not exist yet (a backup directory to be made): the
 * longest existing prefix goes through realpath(), the rest is appended
 * to it.  out holds PATH_MAX bytes. */
static int
resolve_path(const char *path, char *out, struct ss_err *err)
{
    char head[PATH_MAX];
    size_t cut;
    int rc = 0;

    if (snprintf(head, sizeof(head), "%s", path) >= (int)sizeof(head))
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    cut = strlen(head);
    for (;;) {
        if (realpath(cut > 0 ? head : ".", out) != NULL)
            break;
        if ((errno != ENOENT && errno != ENOTDIR) || cut == 0)
            return err_set(err, -errno, "%s: %s", path, strerror(errno));
        while (cut > 0 && head[cut - 1] == '/')
            head[--cut] = '\0';
        while (cut > 0 && head[cut - 1] != '/')
            cut--;
        head[cut] = '\0';
    }
    while (rc == 0 && path[cut] != '\0') {
        size_t n = strcspn(path + cut, "/");

        rc = append_component(out, path + cut, n);
        cut += n + (path[cut + n] == '/');
    }
    if (rc < 0)
        return err_set(err, rc, "%s: path too long", path);
    return 0;
}

/* True when the resolved path a is b or lies under it. */
static bool
path_within(const char *a, const char *b)
{
    size_t n = strlen(b);

    if (strcmp(b, "/") == 0)
        return true;
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* Three format arguments: " (= RESOLVED)" when a path given resolves to
 * another one, nothing when it is the same. */
#define AKA(given, resolved) \
    strcmp(given, resolved) != 0 ? " (= " : "", \
    strcmp(given, resolved) != 0 ? resolved : "", \
    strcmp(given, resolved) != 0 ? ")" : ""

/* Refuses (-EINVAL) a backup directory dir that overlaps the live data:
 * that is the data directory, lies inside it or contains it, or is the
 * directory of the catalogue.  Writing a backup there replaces the
 * catalogue a running daemon has open and mixes copies with originals;
 * restoring from there copies files onto themselves.  Paths are compared
 * after resolving symbolic links.  what: "back up into", "restore from". */
static int
refuse_overlap(const char *what, const char *dir, const char *data_dir,
               const char *catalogue, struct ss_err *err)
{
    char d[PATH_MAX], data[PATH_MAX], cat[PATH_MAX];
    const char *how = NULL;
    int rc;

    rc = resolve_path(dir, d, err);
    if (rc == 0)
        rc = resolve_path(data_dir, data, err);
    if (rc == 0)
        rc = resolve_path(catalogue, cat, err);
    if (rc < 0)
        return err_prefix(err, "cannot %s %s", what, dir);
    *strrchr(cat, '/') = '\0';
    if (strcmp(d, data) == 0)
        how = "is the data directory";
    else if (path_within(d, data))
        how = "lies inside the data directory";
    else if (path_within(data, d))
        how = "contains the data directory";
    if (how != NULL)
        return err_set(err, -EINVAL, "refusing to %s %s%s%s%s: it %s %s%s%s%s "
                       "that holds the scanner's live files; use a "
                       "directory outside it", what, dir, AKA(dir, d), how,
                       data_dir, AKA(data_dir, data));
    if (strcmp(d, cat[0] != '\0' ? cat : "/") == 0)
        return err_set(err, -EINVAL, "refusing to %s %s%s%s%s: it is the "
                       "directory of the live catalogue %s; use a directory "
                       "outside it", what, dir, AKA(dir, d), catalogue);
    return 0;
}

#undef AKA

static void
report_reset(struct backup_report *r)
{
    int snapshots = r->snapshots;

    memset(r, 0, sizeof(*r));
    r->snapshots = snapshots;
}

static int
commit_backup(const char *dest, const char *snap, struct round *rd,
              struct ss_err *err)
{
    char path[PATH_MAX * 2], hex[65], now[32];
    json_t *m, *problems;
    int rc;

    snprintf(path, sizeof(path), "%s/catalogue.db", dest);
    rc = util_commit_file(snap, path, err);
    if (rc == 0)
        rc = util_sha256_file(path, hex, err);
    if (rc < 0)
        return rc;
    util_utc_iso(now, sizeof(now));
    problems = json_array();
    if (rd->r->problems > 0)
        json_array_append_new(problems, json_string(rd->r->problem));
    m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:O, s:o}", "version", 1,
                  "created", now, "catalogue", "file", "catalogue.db",
                  "sha256", hex, "schema", (json_int_t)rd->r->schema,
                  "files", rd->files, "problems", problems);
    rc = m != NULL ? manifest_save(dest, m, err) :
        err_set(err, -ENOMEM, "out of memory");
    json_decref(m);
    return rc;
}

/* Removes empty directories under dir, and dir itself when empty. */
static void
prune_empty(const char *dir, int depth)
{
    char path[PATH_MAX * 2];
    struct dirent *de;
    DIR *dh = depth < 16 ? opendir(dir) : NULL;

    if (dh == NULL)
        return;
    while ((de = readdir(dh)) != NULL) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
            strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        prune_empty(path, depth + 1);
    }
    closedir(dh);
    rmdir(dir);
}

/* After a run that failed before its manifest was written: the copies
 * it made that the previous manifest does not name are removed (nothing
 * would ever refer to them), then the directories left empty, and dest
 * itself when this run created it and it is empty.  The previous
 * backup, if any, stays as it was. */
static void
discard_run(struct round *rd, bool created)
{
    char path[PATH_MAX * 2];
    json_t *rel;
    size_t i;

    json_array_foreach(rd->made, i, rel) {
        if (manifest_file(rd->old, json_string_value(rel)) != NULL)
            continue;
        snprintf(path, sizeof(path), "%s/files/%s", rd->dest,
                 json_string_value(rel));
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/files", rd->dest);
    prune_empty(path, 0);
    if (created)
        rmdir(rd->dest);
}

int
backup_create(const char *catalogue, const char *data_dir, const char *dest,
              struct backup_report *r, struct ss_err *err)
{
    return backup_create_with(catalogue, data_dir, dest, NULL, r, err);
}

int
backup_create_with(const char *catalogue, const char *data_dir,
                   const char *dest, const struct backup_options *o,
                   struct backup_report *r, struct ss_err *err)
{
    struct round rd = { data_dir, dest, NULL, NULL, NULL, NULL, r, 0,
                        o != NULL && o->quick };
    char path[PATH_MAX * 2], snap[PATH_MAX * 2];
    bool created;
    int rc, round;

    memset(r, 0, sizeof(*r));
    rc = refuse_overlap("back up into", dest, data_dir, catalogue, err);
    if (rc < 0)
        return rc;
    /* Read-only SQLite cannot say "no such file"; and DEST is left
     * alone when there is nothing to back up. */
    if (access(catalogue, F_OK) != 0)
        return err_set(err, errno == ENOENT ? -ENOENT : -errno,
                       "catalogue %s: %s", catalogue, errno == ENOENT ?
                       "no such file" : strerror(errno));
    /* DEST is made here, never the directories above it: a missing
     * parent is most often a mistyped path. */
    util_parent_dir(dest, path, sizeof(path));
    if (access(path, F_OK) != 0)
        return err_set(err, -errno, "backup %s: %s: %s", dest, path,
                       strerror(errno));
    created = access(dest, F_OK) != 0;
    snprintf(path, sizeof(path), "%s/files", dest);
    rc = tilestore_mkdir_durable(path, err);
    if (rc < 0)
        return err_prefix(err, "backup %s", dest);
    rd.made = json_array();
    rd.fixed = json_object();
    snprintf(snap, sizeof(snap), "%s/catalogue.db.tmp", dest);
    rd.old = manifest_load(dest);
    for (round = 0; round < ROUNDS; round++) {
        report_reset(r);
        json_decref(rd.files);
        rd.files = json_array();
        rd.changed = 0;
        rc = one_round(&rd, catalogue, snap, err);
        if (rc < 0 || rd.changed == 0 || round + 1 == ROUNDS)
            break;
        log_notice("backup", "files changed during the backup changed=%d "
                   "round=%d; taking a new snapshot", rd.changed, round + 1);
        json_decref(rd.old);
        rd.old = manifest_load(dest);
    }
    if (rc == 0)
        rc = commit_backup(dest, snap, &rd, err);
    snap_remove(snap);
    if (rc < 0)
        discard_run(&rd, created);
    else if (r->problems > 0)
        prune_empty(path, 0);
    json_decref(rd.made);
    json_decref(rd.fixed);
    json_decref(rd.old);
    json_decref(rd.files);
    if (rc == 0 && r->problems > 0)
        rc = err_set(err, SS_EFORMAT, "backup %s is incomplete: %d "
                     "problem%s (it holds the %d files it could copy): %s",
                     dest, r->problems, r->problems == 1 ? "" : "s",
                     r->copied + r->kept + r->repaired, r->problem);
    return rc;
}

/* --- verify and restore ----------------------------------------------- */

static int
verify_catalogue(const char *src, json_t *m, struct ss_err *err)
{
    const char *want = json_string_value(json_object_get(
        json_object_get(m, "catalogue"), "sha256"));
    char path[PATH_MAX * 2], hex[65];
    sqlite3 *db = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/catalogue.db", src);
    rc = util_sha256_file(path, hex, err);
    if (rc < 0)
        return rc;
    if (want == NULL || strcmp(want, hex) != 0)
        return err_set(err, SS_EFORMAT, "%s: the catalogue does not match "
                       "the manifest (an interrupted backup?); run the "
                       "backup again", path);
    rc = open_ro(path, &db, err);
    if (rc == 0)
        rc = integrity(db, path, err);
    sqlite3_close(db);
    return rc;
}

/* Every path of the manifest's files and each directory above them. */
static GHashTable *
manifest_paths(json_t *m)
{
    GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          NULL);
    json_t *f;
    size_t i;

    json_array_foreach(json_object_get(m, "files"), i, f) {
        char *p = g_strdup(nonnull(json_string_value(json_object_get(f,
                                                                "path"))));
        char *slash;

        g_hash_table_add(h, g_strdup(p));
        while ((slash = strrchr(p, '/')) != NULL) {
            *slash = '\0';
            g_hash_table_add(h, g_strdup(p));
        }
        g_free(p);
    }
    return h;
}

/* A backup is whole only when its manifest records no problem from the
 * run that made it and holds every file (or, for an analysis or
 * calibration, some file of the directory) its catalogue names: a run
 * that could not copy everything leaves a consistent but partial
 * backup, which must not pass for a whole one.
 * LIMIT: an analysis or calibration directory that was empty when backed
 * up counts as missing: such a backup fails verify and restore. */
static int
verify_complete(const char *src, json_t *m, struct backup_report *r,
                struct ss_err *err)
{
    char path[PATH_MAX * 2];
    struct items named = { 0 };
    json_t *recorded = json_object_get(m, "problems"), *p;
    GHashTable *have;
    sqlite3 *db = NULL;
    size_t i;
    int rc, j, missing = 0;

    snprintf(path, sizeof(path), "%s/catalogue.db", src);
    rc = open_ro(path, &db, err);
    if (rc == 0)
        rc = list_named(db, path, &named, err);
    sqlite3_close(db);
    if (rc < 0) {
        free(named.v);
        return rc;
    }
    have = manifest_paths(m);
    for (j = 0; j < named.n; j++) {
        if (g_hash_table_contains(have, named.v[j].rel))
            continue;
        if (missing++ < 3)
            problem(r, "%s (%s) is not in the backup", named.v[j].rel,
                    named.v[j].kind);
        else
            r->problems++;
    }
    g_hash_table_destroy(have);
    free(named.v);
    json_array_foreach(recorded, i, p) {
        if (json_string_value(p) != NULL)
            problem(r, "the backup recorded when it was made: %s",
                    json_string_value(p));
    }
    if (r->problems == 0)
        return 0;
    if (missing == 0)
        return err_set(err, SS_EFORMAT, "backup %s is incomplete: %s", src,
                       r->problem);
    return err_set(err, SS_EFORMAT, "backup %s is incomplete: %d of the "
                   "%d entries its catalogue names are missing: %s", src,
                   missing, named.n, r->problem);
}

int
backup_verify(const char *src, struct backup_report *r, struct ss_err *err)
{
    char path[PATH_MAX * 2], hex[65];
    json_t *m, *f;
    struct ss_err e;
    size_t i;
    int rc;

    memset(r, 0, sizeof(*r));
    snprintf(path, sizeof(path), "%s/%s", src, BACKUP_MANIFEST);
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return err_set(err, -ENOENT, "%s holds no backup (no %s)", src,
                       BACKUP_MANIFEST);
    m = manifest_load(src);
    if (m == NULL || json_integer_value(json_object_get(m, "version")) != 1)
        rc = err_set(err, SS_EFORMAT, "%s: no readable %s of version 1",
                     src, BACKUP_MANIFEST);
    else
        rc = verify_catalogue(src, m, err);
    if (rc < 0) {
        /* The report names what failed too. */
        if (err != NULL)
            problem(r, "%s", err->msg);
        json_decref(m);
        return rc;
    }
    r->schema = json_integer_value(json_object_get(json_object_get(m,
                                   "catalogue"), "schema"));
    json_array_foreach(json_object_get(m, "files"), i, f) {
        const char *rel = json_string_value(json_object_get(f, "path"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));

        r->files++;
        snprintf(path, sizeof(path), "%s/files/%s", src, nonnull(rel));
        if (util_sha256_file(path, hex, &e) < 0)
            problem(r, "%s", e.msg);
        else if (sha == NULL || strcmp(sha, hex) != 0)
            problem(r, "%s: checksum differs from the manifest", path);
        else
            r->verified++;
    }
    if (r->problems > 0) {
        json_decref(m);
        return err_set(err, SS_EFORMAT, "backup %s: %s", src, r->problem);
    }
    rc = verify_complete(src, m, r, err);
    json_decref(m);
    return rc;
}

static int
lock_holder(const char *path, off_t start, off_t len, pid_t *pid)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                        .l_start = start, .l_len = len };
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) {
        close(fd);
        return 0;
    }
    close(fd);
    if (pid != NULL)
        *pid = fl.l_pid;
    return 1;
}

bool
backup_catalogue_in_use(const char *catalogue, pid_t *pid)
{
    char shm[PATH_MAX + 8];

    snprintf(shm, sizeof(shm), "%s-shm", catalogue);
    return lock_holder(shm, DMS_OFFSET, 1, pid) ||
           lock_holder(catalogue, PENDING_BYTE_OFFSET, 512 + 2, pid);
}

/* The pid in data_dir's daemon lock file when a process holds its lock
 * (slidescand keeps DATA_DIR/slidescand.lock locked with flock for its
 * whole life, daemon/lock.c), 0 when free; -1 when held without a pid. */
static long
data_dir_holder(const char *data_dir)
{
    char path[PATH_MAX + 32], buf[32];
    long pid = 0;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/slidescand.lock", data_dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        pid = strtol(buf, NULL, 10);
        pid = pid > 0 ? pid : -1;
    }
    close(fd);
    return pid;
}

static int
restore_refuse(const char *catalogue, const char *data_dir, bool force,
               struct ss_err *err)
{
    long holder = data_dir_holder(data_dir);
    pid_t pid = 0;

    if (holder != 0)
        return err_set(err, -EBUSY, "data directory %s is in use by "
                       "slidescand pid %ld; stop it before restoring",
                       data_dir, holder);
    if (backup_catalogue_in_use(catalogue, &pid))
        return err_set(err, -EBUSY, "%s is in use by process %d (a running "
                       "slidescand?); stop it before restoring", catalogue,
                       (int)pid);
    if (!force && access(catalogue, F_OK) == 0)
        return err_set(err, -EEXIST, "%s exists; restoring would replace "
                       "it (use --force to replace it)", catalogue);
    return 0;
}

static int
restore_files(const char *src, const char *data_dir, json_t *m,
              struct backup_report *r, struct ss_err *err)
{
    char from[PATH_MAX * 2], to[PATH_MAX * 2], hex[65];
    uint64_t bytes;
    json_t *f;
    size_t i;
    int rc;

    json_array_foreach(json_object_get(m, "files"), i, f) {
        const char *rel = json_string_value(json_object_get(f, "path"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));

        snprintf(from, sizeof(from), "%s/files/%s", src, nonnull(rel));
        snprintf(to, sizeof(to), "%s/%s", data_dir, nonnull(rel));
        rc = copy_verified(from, to, hex, &bytes, err);
        if (rc == 0 && (sha == NULL || strcmp(sha, hex) != 0))
            rc = err_set(err, SS_EFORMAT, "%s: checksum differs from the "
                         "manifest", from);
        if (rc < 0)
            return rc;
        r->copied++;
        r->bytes += bytes;
    }
    return 0;
}

static int
restore_catalogue(const char *src, const char *catalogue, struct ss_err *err)
{
    char from[PATH_MAX * 2], side[PATH_MAX + 8], hex[65];
    uint64_t bytes;

    /* A WAL left beside the old catalogue would be replayed into the new
     * one: it goes first. */
    snprintf(side, sizeof(side), "%s-wal", catalogue);
    if (unlink(side) != 0 && errno != ENOENT)
        return err_set(err, -errno, "%s: %s", side, strerror(errno));
    snprintf(side, sizeof(side), "%s-shm", catalogue);
    if (unlink(side) != 0 && errno != ENOENT)
        return err_set(err, -errno, "%s: %s", side, strerror(errno));
    snprintf(from, sizeof(from), "%s/catalogue.db", src);
    return copy_verified(from, catalogue, hex, &bytes, err);
}

/* -ENOENT means "no backup in src" to callers; a file missing later,
 * under a backup that verified, is an I/O failure. */
static int
not_enoent(int rc, struct ss_err *err)
{
    char msg[SS_ERR_MSG_MAX];

    if (rc != -ENOENT)
        return rc;
    snprintf(msg, sizeof(msg), "%s", err != NULL ? err->msg : "");
    return err_set(err, -EIO, "%s", msg);
}

int
backup_restore(const char *src, const char *catalogue, const char *data_dir,
               bool force, struct backup_report *r, struct ss_err *err)
{
    struct backup_report check;
    json_t *m;
    int rc, copied;

    memset(r, 0, sizeof(*r));
    rc = refuse_overlap("restore from", src, data_dir, catalogue, err);
    if (rc < 0)
        return rc;
    rc = backup_verify(src, r, err);
    if (rc < 0)
        return err_prefix(err, "not restoring");
    rc = restore_refuse(catalogue, data_dir, force, err);
    if (rc < 0)
        return err_prefix(err, "not restoring from %s", src);
    m = manifest_load(src);
    r->copied = 0;
    rc = tilestore_mkdir_durable(data_dir, err);
    if (rc == 0)
        rc = restore_files(src, data_dir, m, r, err);
    json_decref(m);
    if (rc == 0)
        rc = restore_catalogue(src, catalogue, err);
    if (rc < 0)
        return not_enoent(err_prefix(err, "restore from %s failed after "
                                     "%d files", src, r->copied), err);
    copied = r->copied;
    rc = backup_check(catalogue, data_dir, &check, err);
    r->files = check.files;
    r->verified = check.verified;
    r->problems = check.problems;
    snprintf(r->problem, sizeof(r->problem), "%s", check.problem);
    if (rc < 0)
        return not_enoent(err_prefix(err, "restored %d files from %s, but "
                                     "the result does not verify", copied,
                                     src), err);
    return 0;
}

/* --- checking a data directory ----------------------------------------- */

static void
check_item(const char *data_dir, const struct item *x,
           struct backup_report *r)
{
    char path[PATH_MAX * 2], hex[65];
    struct stat st;
    struct ss_err e;

    snprintf(path, sizeof(path), "%s/%s", data_dir, x->rel);
    r->files++;
    if (x->dir) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            r->verified++;
        else
            problem(r, "%s: %s directory missing", path, x->kind);
        return;
    }
    if (util_sha256_file(path, hex, &e) < 0)
        problem(r, "%s", e.msg);
    else if (x->sha[0] != '\0' && strcmp(hex, x->sha) != 0)
        problem(r, "%s: checksum %.12s... differs from the catalogue's "
                "%.12s...", path, hex, x->sha);
    else
        r->verified++;
}

int
backup_check(const char *catalogue, const char *data_dir,
             struct backup_report *r, struct ss_err *err)
{
    struct items named = { 0 };
    sqlite3 *db = NULL;
    int rc, i;

    memset(r, 0, sizeof(*r));
    rc = open_ro(catalogue, &db, err);
    if (rc == 0)
        rc = integrity(db, catalogue, err);
    if (rc == 0) {
        r->schema = user_version(db);
        rc = list_named(db, catalogue, &named, err);
    }
    sqlite3_close(db);
    for (i = 0; rc == 0 && i < named.n; i++)
        check_item(data_dir, &named.v[i], r);
    free(named.v);
    if (rc == 0 && r->problems > 0)
        rc = err_set(err, SS_EFORMAT, "%s: %d of %d files do not verify: %s",
                     data_dir, r->problems, r->files, r->problem);
    return rc;
}

/* --- paths -------------------------------------------------------------- */

#define DEFAULT_CONF "/etc/slidescan/slidescan.conf"

struct conf_paths {
    char data_dir[PATH_MAX];
    char catalogue[PATH_MAX];
    bool data_dir_set, catalogue_set;   /* by the configuration file */
};

static int
on_conf(void *user, const char *section, const char *key, const char *value)
{
    struct conf_paths *p = user;

    if (strcmp(section, "daemon") != 0)
        return 1;
    if (strcmp(key, "data_dir") == 0) {
        snprintf(p->data_dir, sizeof(p->data_dir), "%s", value);
        p->data_dir_set = true;
    } else if (strcmp(key, "catalogue") == 0) {
        snprintf(p->catalogue, sizeof(p->catalogue), "%s", value);
        p->catalogue_set = true;
    }
    return 1;
}

/* Where the catalogue path came from, in words a user can act on. */
static void
describe_origin(const struct conf_paths *p, const char *conf,
                const char *data_dir_override,
                const char *catalogue_override, char *out, size_t len)
{
    if (catalogue_override != NULL)
        snprintf(out, len, "given with --catalogue");
    else if (p->catalogue_set)
        snprintf(out, len, "[daemon] catalogue in %s", conf);
    else if (data_dir_override != NULL)
        snprintf(out, len, "under --data-dir %s", data_dir_override);
    else if (p->data_dir_set)
        snprintf(out, len, "under [daemon] data_dir of %s", conf);
    else if (conf != NULL)
        snprintf(out, len, "the default: %s sets no [daemon] data_dir",
                 conf);
    else
        snprintf(out, len, "the default: no --config, $SLIDESCAN_CONFIG "
                 "unset and no %s", DEFAULT_CONF);
}

int
backup_paths_origin(const char *conf, const char *data_dir_override,
                    const char *catalogue_override, char *data_dir,
                    char *catalogue, char *origin, size_t origin_len,
                    struct ss_err *err)
{
    struct conf_paths p = { "/var/lib/slidescan", "", false, false };
    int line;

    if (conf == NULL)
        conf = getenv("SLIDESCAN_CONFIG");
    if (conf == NULL && access(DEFAULT_CONF, R_OK) == 0)
        conf = DEFAULT_CONF;
    if (conf != NULL && (line = ini_parse(conf, on_conf, &p)) != 0)
        return err_set(err, SS_ECONFIG, line < 0 ? "%s: cannot read" :
                       "%s:%d: not valid INI", conf, line);
    if (origin != NULL && origin_len > 0)
        describe_origin(&p, conf, data_dir_override, catalogue_override,
                        origin, origin_len);
    if (data_dir_override != NULL)
        snprintf(p.data_dir, sizeof(p.data_dir), "%s", data_dir_override);
    if (catalogue_override != NULL)
        snprintf(p.catalogue, sizeof(p.catalogue), "%s", catalogue_override);
    if (p.catalogue[0] == '\0' &&
        snprintf(p.catalogue, sizeof(p.catalogue), "%s/catalogue.db",
                 p.data_dir) >= (int)sizeof(p.catalogue))
        return err_set(err, -ENAMETOOLONG, "%s: path too long", p.data_dir);
    memcpy(data_dir, p.data_dir, PATH_MAX);
    memcpy(catalogue, p.catalogue, PATH_MAX);
    return 0;
}

int
backup_paths(const char *conf, const char *data_dir_override,
             const char *catalogue_override, char *data_dir,
             char *catalogue, struct ss_err *err)
{
    return backup_paths_origin(conf, data_dir_override, catalogue_override,
                               data_dir, catalogue, NULL, 0, err);
}
