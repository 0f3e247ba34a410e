/* SPDX-License-Identifier: MIT */
/*
 * The catalogue's connection, schema, migrations and transaction retry,
 * and the scan, queue and audit records.  Tiles, plans, focus points,
 * calibrations and analyses are in catalogue_tiles.c; the JSON listings in
 * catalogue_json.c.
 */
#include "storage/catalogue_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

static const char *const state_names[CAT_STATE_COUNT] = {
    "queued", "calibrating", "planning", "focusing", "capturing",
    "assembling", "done", "failed", "paused", "cancelled",
};

static const char *const astate_names[] = {
    "queued", "running", "done", "failed",
};

const char *
cat_state_name(enum cat_state s)
{
    if ((int)s < 0 || s >= CAT_STATE_COUNT)
        return NULL;
    return state_names[s];
}

int
cat_state_parse(const char *s)
{
    int i;

    for (i = 0; s != NULL && i < CAT_STATE_COUNT; i++)
        if (strcmp(state_names[i], s) == 0)
            return i;
    return -1;
}

const char *
cat_astate_name(enum cat_astate s)
{
    if ((int)s < 0 || s > CAT_A_FAILED)
        return "unknown";
    return astate_names[s];
}

/*
 * Schema migrations: entry i brings user_version i to i + 1.  Append only;
 * never edit a released step.
 */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE slides ("
    " id TEXT PRIMARY KEY,"
    " stain TEXT NOT NULL,"
    " created TEXT NOT NULL,"
    " wsi_scan INTEGER, wsi_path TEXT, wsi_bytes INTEGER,"
    " width INTEGER, height INTEGER, mpp REAL, checksum TEXT);"
    "CREATE TABLE calibrations ("
    " id INTEGER PRIMARY KEY,"
    " stain TEXT NOT NULL, objective TEXT NOT NULL,"
    " exposure_ms REAL NOT NULL, dir TEXT NOT NULL, taken TEXT NOT NULL);"
    "CREATE TABLE scans ("
    " id INTEGER PRIMARY KEY,"
    " slide TEXT NOT NULL REFERENCES slides(id),"
    " stain TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued','calibrating',"
    "  'planning','focusing','capturing','assembling','done','failed',"
    "  'paused','cancelled')),"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " queue_pos REAL NOT NULL,"
    " requested_by INTEGER NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '',"
    " image TEXT NOT NULL DEFAULT '',"
    " profile TEXT, options TEXT,"
    " calib INTEGER REFERENCES calibrations(id),"
    " origin_x_um REAL, origin_y_um REAL, step_x_um REAL, step_y_um REAL,"
    " rows INTEGER, cols INTEGER, frame_w INTEGER, frame_h INTEGER,"
    " pixel_um REAL, cells_total INTEGER,"
    " focus_model INTEGER, focus_coef TEXT, focus_rms_um REAL,"
    " tiles_total INTEGER NOT NULL DEFAULT 0,"
    " tiles_done INTEGER NOT NULL DEFAULT 0,"
    " virtual_ms REAL NOT NULL DEFAULT 0,"
    " wall_ms REAL NOT NULL DEFAULT 0,"
    " resumes INTEGER NOT NULL DEFAULT 0,"
    " holds_queue INTEGER NOT NULL DEFAULT 0,"
    " created TEXT NOT NULL, started TEXT, finished TEXT,"
    " wsi_path TEXT, wsi_bytes INTEGER, width INTEGER, height INTEGER,"
    " mpp REAL, checksum TEXT, stitch_rms_px REAL,"
    " pairs_used INTEGER, pairs_total INTEGER);"
    "CREATE INDEX scans_by_state ON scans(state, priority, queue_pos);"
    "CREATE INDEX scans_by_slide ON scans(slide);"
    "CREATE TABLE tiles ("
    " scan INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,"
    " x_um REAL NOT NULL, y_um REAL NOT NULL, tissue_frac REAL,"
    " rx_um REAL, ry_um REAL, rz_um REAL, z_pred_um REAL,"
    " sharpness REAL, quality REAL, sat_frac REAL,"
    " retakes INTEGER NOT NULL DEFAULT 0,"
    " focus_captures INTEGER NOT NULL DEFAULT 0,"
    " busy_retries INTEGER NOT NULL DEFAULT 0,"
    " timeouts INTEGER NOT NULL DEFAULT 0,"
    " resets INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " flags INTEGER NOT NULL DEFAULT 0,"
    " state TEXT NOT NULL DEFAULT 'planned'"
    "  CHECK (state IN ('planned','captured','failed')),"
    " file TEXT, checksum TEXT, captured TEXT,"
    " PRIMARY KEY (scan, idx)) WITHOUT ROWID;"
    "CREATE TABLE focus_points ("
    " scan INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,"
    " n INTEGER NOT NULL,"
    " x_um REAL NOT NULL, y_um REAL NOT NULL, z_um REAL NOT NULL,"
    " score REAL, ok INTEGER NOT NULL,"
    " PRIMARY KEY (scan, n)) WITHOUT ROWID;"
    "CREATE TABLE analyses ("
    " scan INTEGER PRIMARY KEY REFERENCES scans(id) ON DELETE CASCADE,"
    " state TEXT NOT NULL"
    "  CHECK (state IN ('queued','running','done','failed')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " tumor_area_mm2 REAL, stroma_area_mm2 REAL, tissue_area_mm2 REAL,"
    " tumor_stroma_ratio REAL, ki67_index REAL, ck_area_mm2 REAL,"
    " out_dir TEXT, overlay_path TEXT, results TEXT, worker_pid INTEGER,"
    " reason TEXT NOT NULL DEFAULT '',"
    " queued TEXT, started TEXT, finished TEXT);"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY,"
    " time TEXT NOT NULL,"
    " uid INTEGER,"
    " action TEXT NOT NULL,"
    " scan INTEGER,"
    " detail TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX events_by_scan ON events(scan);",
    /* 1 -> 2: a scan's region limit and warnings; each tile's device
     * time (added to the scan's total as the tile is recorded, so a scan
     * killed and resumed still reports all the device time it used). */
    "ALTER TABLE scans ADD COLUMN region TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE scans ADD COLUMN warnings TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tiles ADD COLUMN virtual_ms REAL NOT NULL DEFAULT 0;",
    /* 2 -> 3: a pause or cancel the daemon acknowledged for the scan on
     * the microscope before the scan thread acted on it, so that a stop
     * or crash in between does not lose it (cat_scan_request()). */
    "ALTER TABLE scans ADD COLUMN request TEXT NOT NULL DEFAULT '';",
    /* 3 -> 4: the state a scan left when it paused on the microscope to
     * wait for disk space, so that a restart puts it back there and it
     * resumes by itself (cat_scan_pause_for_space()).  Such pauses of
     * earlier versions are known only by their reason; they go back to
     * the queue. */
    "ALTER TABLE scans ADD COLUMN space_from TEXT NOT NULL DEFAULT '';"
    "UPDATE scans SET space_from = 'queued' WHERE state = 'paused' AND "
    "holds_queue = 0 AND request = '' AND reason LIKE '%; the scan "
    "resumes by itself when space is freed';",
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

void
cat__now(char buf[CAT_TIME_MAX])
{
    struct timespec ts;
    struct tm tm;
    char sec[24];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, CAT_TIME_MAX, "%s.%03ldZ", sec, ts.tv_nsec / 1000000);
}

int
cat__sql_err(struct cat *c, int rc, struct ss_err *err, const char *what)
{
    int code = -EIO;

    if (rc == SQLITE_BUSY || (rc & 0xff) == SQLITE_BUSY)
        code = -EBUSY;
    else if ((rc & 0xff) == SQLITE_FULL)
        code = -ENOSPC;
    else if (rc == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_CONSTRAINT)
        code = -EINVAL;
    c->last_rc = rc;
    return err_set(err, code, "catalogue %s: %s: %s", c->path, what,
                   sqlite3_errmsg(c->db));
}

static int
bind_args(sqlite3_stmt *st, const char *fmt, va_list ap)
{
    int i, rc = SQLITE_OK;
    const char *s;

    for (i = 0; fmt != NULL && fmt[i] != '\0' && rc == SQLITE_OK; i++) {
        switch (fmt[i]) {
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
            break;
        case 's':
            s = va_arg(ap, const char *);
            rc = s == NULL ? sqlite3_bind_null(st, i + 1)
                           : sqlite3_bind_text(st, i + 1, s, -1,
                                               SQLITE_TRANSIENT);
            break;
        default:
            return SQLITE_MISUSE;
        }
    }
    return rc;
}

int
cat__prepare_v(struct cat *c, sqlite3_stmt **st, const char *sql,
               const char *fmt, va_list ap)
{
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
    if (rc == SQLITE_OK) {
        rc = bind_args(*st, fmt, ap);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(*st);
            *st = NULL;
        }
    }
    c->last_rc = rc;
    return rc;
}

int
cat__prepare(struct cat *c, sqlite3_stmt **st, const char *sql,
             const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cat__prepare_v(c, st, sql, fmt, ap);
    va_end(ap);
    return rc;
}

static int
exec_v(struct cat *c, const char *sql, const char *fmt, va_list ap)
{
    sqlite3_stmt *st;
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = bind_args(st, fmt, ap);
    if (rc == SQLITE_OK) {
        do {
            rc = sqlite3_step(st);
        } while (rc == SQLITE_ROW);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int
cat_exec(struct cat *c, const char *sql, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = exec_v(c, sql, fmt, ap);
    va_end(ap);
    c->last_rc = rc;
    return rc == SQLITE_OK ? 0 : -EIO;
}

int
cat_query_int(struct cat *c, int64_t *out, const char *sql,
              const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        va_start(ap, fmt);
        rc = bind_args(st, fmt, ap);
        va_end(ap);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            *out = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    c->last_rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : -EIO;
}

struct sqlite3 *
cat_db(struct cat *c)
{
    return c->db;
}

static int
migrate(struct cat *c, struct ss_err *err)
{
    int64_t version = 0;
    char sql[64];
    int rc;

    cat_query_int(c, &version, "PRAGMA user_version", "");
    if (version > NMIGRATIONS)
        return err_set(err, SS_EFORMAT, "catalogue %s: schema version %lld "
                       "is newer than this program (%d); upgrade slidescan",
                       c->path, (long long)version, NMIGRATIONS);
    while (version < NMIGRATIONS) {
        rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db, migrations[version], NULL, NULL, NULL);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld",
                 (long long)version + 1);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            cat__sql_err(c, rc, err, "schema migration");
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return err_prefix(err, "migrating to version %lld",
                              (long long)version + 1);
        }
        log_notice("catalogue", "migrated path=%s version=%lld", c->path,
                   (long long)version + 1);
        version++;
    }
    return 0;
}

static int
configure(struct cat *c, struct ss_err *err)
{
    static const char *const pragmas[] = {
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "PRAGMA foreign_keys = ON",
    };
    size_t i;
    int rc;

    sqlite3_busy_timeout(c->db, CAT_BUSY_TIMEOUT_MS);
    for (i = 0; i < sizeof(pragmas) / sizeof(pragmas[0]); i++) {
        rc = sqlite3_exec(c->db, pragmas[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return cat__sql_err(c, rc, err, pragmas[i]);
    }
    return 0;
}

int
cat_open(const char *path, struct cat **out, struct ss_err *err)
{
    struct cat *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return err_set(err, -ENOMEM, "catalogue %s: out of memory", path);
    snprintf(c->path, sizeof(c->path), "%s", path);
    rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE |
                         SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = err_set(err, -EIO, "catalogue %s: cannot open: %s", path,
                     c->db != NULL ? sqlite3_errmsg(c->db)
                                   : sqlite3_errstr(rc));
        cat_close(c);
        return rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = configure(c, err);
    if (rc == 0)
        rc = migrate(c, err);
    if (rc < 0) {
        cat_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void
cat_close(struct cat *c)
{
    if (c == NULL)
        return;
    sqlite3_close(c->db);
    free(c);
}

static bool
is_busy(int rc)
{
    return rc == SQLITE_BUSY || rc == SQLITE_BUSY_SNAPSHOT ||
           rc == SQLITE_BUSY_RECOVERY || rc == SQLITE_LOCKED;
}

static void
backoff(int attempt)
{
    struct timespec ts;
    long ms = 5L << (attempt < 7 ? attempt : 7);

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* The ballast: CAT_BALLAST_BYTES of reserved space next to the catalogue
 * ("catalogue.db-ballast").  When the disk is so full that a pause or a
 * cancel cannot be committed (SQLITE_FULL), cat_tx() deletes the ballast
 * and commits again: stopping a scan never fails for want of space.  It
 * is made again once the disk has CAT_BALLAST_ROOM_BYTES free. */
#define CAT_BALLAST_BYTES (1 << 20)
#define CAT_BALLAST_ROOM_BYTES (16ull << 20)
#define CAT_BALLAST_RECHECK_S 5.0

static void
ballast_path(const struct cat *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s-ballast", c->path);
}

/* Deletes the ballast; true when there was one to free. */
static bool
ballast_release(struct cat *c)
{
    char path[sizeof(c->path) + 16];

    ballast_path(c, path, sizeof(path));
    if (unlink(path) < 0)
        return false;
    log_warn("catalogue", "disk full: ballast released path=%s bytes=%d; "
             "it is made again when %llu MiB are free", path,
             CAT_BALLAST_BYTES, CAT_BALLAST_ROOM_BYTES >> 20);
    return true;
}

/* Makes the ballast when it is missing and the disk has room for it and
 * more; at most every CAT_BALLAST_RECHECK_S.  Best effort: a failure
 * leaves no partial file. */
static void
ballast_keep(struct cat *c)
{
    char path[sizeof(c->path) + 16];
    struct timespec now;
    struct statvfs vfs;
    struct stat st;
    double t;
    int fd;

    clock_gettime(CLOCK_MONOTONIC, &now);
    t = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    if (c->ballast_checked_s > 0 &&
        t - c->ballast_checked_s < CAT_BALLAST_RECHECK_S)
        return;
    c->ballast_checked_s = t;
    ballast_path(c, path, sizeof(path));
    /* A short file (a crash between its creation and its allocation) is
     * made whole again rather than taken for the ballast. */
    if ((stat(path, &st) == 0 && st.st_size >= CAT_BALLAST_BYTES) ||
        statvfs(c->path, &vfs) < 0 ||
        (unsigned long long)vfs.f_bavail * vfs.f_frsize <
        CAT_BALLAST_ROOM_BYTES)
        return;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (posix_fallocate(fd, 0, CAT_BALLAST_BYTES) != 0) {
        unlink(path);
        log_warn("catalogue", "ballast not made path=%s", path);
    } else {
        log_info("catalogue", "ballast made path=%s bytes=%d", path,
                 CAT_BALLAST_BYTES);
    }
    close(fd);
}

int
cat_tx(struct cat *c, int mode, cat_tx_fn fn, void *ctx, struct ss_err *err)
{
    const char *begin = mode == CAT_TX_DEFERRED ? "BEGIN DEFERRED"
                                                : "BEGIN IMMEDIATE";
    int attempt, rc, frc;

    for (attempt = 0; attempt < CAT_TX_ATTEMPTS; attempt++) {
        c->attempts = attempt + 1;
        c->last_rc = SQLITE_OK;
        rc = sqlite3_exec(c->db, begin, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            c->last_rc = rc;
            frc = cat__sql_err(c, rc, err, "begin");
        } else {
            frc = fn(c, ctx, err);
            if (frc == 0) {
                rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
                if (rc == SQLITE_OK) {
                    ballast_keep(c);
                    return 0;
                }
                frc = cat__sql_err(c, rc, err, "commit");
            }
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        }
        if ((c->last_rc & 0xff) == SQLITE_FULL && c->critical &&
            ballast_release(c))
            continue;
        if (!is_busy(c->last_rc))
            return frc;
        log_debug("catalogue", "retry attempt=%d rc=%d", attempt + 1,
                  c->last_rc);
        backoff(attempt);
    }
    return err_prefix(err, "gave up after %d attempts", CAT_TX_ATTEMPTS);
}

int
cat_tx_attempts(const struct cat *c)
{
    return c->attempts;
}

/* ---- scans --------------------------------------------------------------- */

struct add_ctx {
    const struct cat_scan_req *r;
    int64_t id;
};

static int
add_slide(struct cat *c, const struct cat_scan_req *r, struct ss_err *err)
{
    char now[CAT_TIME_MAX], stain[16] = "";
    sqlite3_stmt *st;
    int64_t n;
    int rc;

    rc = cat__prepare(c, &st, "SELECT stain FROM slides WHERE id = ?", "s",
                      r->slide);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading slide");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(stain, sizeof(stain), "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    c->last_rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return cat__sql_err(c, rc, err, "reading slide");
    if (stain[0] != '\0' && strcmp(stain, r->stain) != 0)
        return err_set(err, -EEXIST, "slide %s is stained %s, not %s",
                       r->slide, stain, r->stain);
    if (cat_query_int(c, &n, "SELECT id FROM scans WHERE slide = ? AND "
                      "state NOT IN ('done','failed','cancelled') LIMIT 1",
                      "s", r->slide) == 0)
        return err_set(err, -EALREADY, "slide %s already has scan %lld "
                       "that is not finished", r->slide, (long long)n);
    if (stain[0] != '\0')
        return 0;
    cat__now(now);
    if (cat_exec(c, "INSERT INTO slides (id, stain, created) VALUES "
                 "(?, ?, ?)", "sss", r->slide, r->stain, now) < 0)
        return cat__sql_err(c, c->last_rc, err, "adding slide");
    return 0;
}

static int
add_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct add_ctx *a = ctx;
    const struct cat_scan_req *r = a->r;
    int64_t pos = 0;
    char now[CAT_TIME_MAX];
    int rc;

    rc = add_slide(c, r, err);
    if (rc < 0)
        return rc;
    cat_query_int(c, &pos, "SELECT CAST(COALESCE(MAX(queue_pos), 0) AS "
                  "INTEGER) + 1 FROM scans", "");
    cat__now(now);
    if (cat_exec(c, "INSERT INTO scans (slide, stain, state, priority, "
                 "queue_pos, requested_by, image, created) VALUES "
                 "(?, ?, 'queued', ?, ?, ?, ?, ?)", "ssiiiss", r->slide,
                 r->stain, (int64_t)r->priority, pos, r->uid,
                 r->image != NULL ? r->image : "", now) < 0)
        return cat__sql_err(c, c->last_rc, err, "adding scan");
    a->id = sqlite3_last_insert_rowid(c->db);
    return 0;
}

int
cat_region_parse(const char *text, double out[4], struct ss_err *err)
{
    int n = 0;

    if (sscanf(text, "%lf , %lf , %lf , %lf %n", &out[0], &out[1], &out[2],
               &out[3], &n) != 4 || text[n] != '\0')
        return err_set(err, -EINVAL, "region '%s': not X,Y,W,H in stage "
                       "micrometres", text);
    if (!(isfinite(out[0]) && isfinite(out[1]) && out[2] > 0 &&
          out[3] > 0 && out[2] < 1e6 && out[3] < 1e6 &&
          fabs(out[0]) < 1e6 && fabs(out[1]) < 1e6))
        return err_set(err, -EINVAL, "region '%s': the width and height "
                       "must be positive and every value under 1e6 um",
                       text);
    return 0;
}

int
cat_scan_add(struct cat *c, const struct cat_scan_req *r, int64_t *id,
             struct ss_err *err)
{
    struct add_ctx a = { r, 0 };
    int rc;

    rc = cat_tx(c, CAT_TX_IMMEDIATE, add_tx, &a, err);
    if (rc == 0)
        *id = a.id;
    return rc;
}

static void
copy_col(char *dst, size_t len, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);

    snprintf(dst, len, "%s", s != NULL ? (const char *)s : "");
}

#define SCAN_COLS \
    "id, slide, stain, state, priority, queue_pos, requested_by, reason, " \
    "image, COALESCE(calib, 0), tiles_total, tiles_done, virtual_ms, " \
    "wall_ms, resumes, created, started, finished, wsi_path, region, " \
    "warnings"

static void
scan_from_row(sqlite3_stmt *st, struct cat_scan *s)
{
    char state[16];

    memset(s, 0, sizeof(*s));
    s->id = sqlite3_column_int64(st, 0);
    copy_col(s->slide, sizeof(s->slide), st, 1);
    copy_col(s->stain, sizeof(s->stain), st, 2);
    copy_col(state, sizeof(state), st, 3);
    s->state = (enum cat_state)cat_state_parse(state);
    s->priority = sqlite3_column_int(st, 4);
    s->queue_pos = sqlite3_column_double(st, 5);
    s->requested_by = sqlite3_column_int64(st, 6);
    copy_col(s->reason, sizeof(s->reason), st, 7);
    copy_col(s->image, sizeof(s->image), st, 8);
    s->calib_id = sqlite3_column_int64(st, 9);
    s->tiles_total = sqlite3_column_int(st, 10);
    s->tiles_done = sqlite3_column_int(st, 11);
    s->virtual_ms = sqlite3_column_double(st, 12);
    s->wall_ms = sqlite3_column_double(st, 13);
    s->resumes = sqlite3_column_int(st, 14);
    copy_col(s->created, sizeof(s->created), st, 15);
    copy_col(s->started, sizeof(s->started), st, 16);
    copy_col(s->finished, sizeof(s->finished), st, 17);
    copy_col(s->wsi_path, sizeof(s->wsi_path), st, 18);
    copy_col(s->region, sizeof(s->region), st, 19);
    copy_col(s->warnings, sizeof(s->warnings), st, 20);
}

int
cat_scan_get(struct cat *c, int64_t id, struct cat_scan *out,
             struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc;

    rc = cat__prepare(c, &st, "SELECT " SCAN_COLS " FROM scans WHERE id = ?",
                      "i", id);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading scan");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        scan_from_row(st, out);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return err_set(err, -ENOENT, "no scan %lld", (long long)id);
    if (rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading scan");
    return 0;
}

int
cat_scan_next(struct cat *c, int64_t *id, struct ss_err *err)
{
    int rc;

    rc = cat_query_int(c, id, "SELECT id FROM scans WHERE state = 'queued' "
                       "ORDER BY priority DESC, queue_pos ASC LIMIT 1", "");
    if (rc == -ENOENT)
        return err_set(err, -ENOENT, "no queued scan");
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "reading the queue");
    return 0;
}

struct trans_ctx {
    int64_t id;
    unsigned from;
    enum cat_state to;
    const char *reason;
    bool hold;
    bool space;                     /* a pause to wait for space */
};

static int
trans_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct trans_ctx *t = ctx;
    struct cat_scan s;
    char now[CAT_TIME_MAX];
    int rc;

    rc = cat_scan_get(c, t->id, &s, err);
    if (rc < 0)
        return rc;
    if (!(t->from & CAT_BIT(s.state)))
        return err_set(err, -EALREADY, "scan %lld is %s", (long long)t->id,
                       cat_state_name(s.state));
    cat__now(now);
    /* Any change but a pause for space ends a wait for space. */
    rc = cat_exec(c, "UPDATE scans SET state = ?, reason = COALESCE(?, "
                  "reason), holds_queue = ?, space_from = ? WHERE id = ?",
                  "ssisi", cat_state_name(t->to), t->reason,
                  (int64_t)t->hold, t->space ? cat_state_name(s.state) : "",
                  t->id);
    if (rc == 0 && s.started[0] == '\0' && (CAT_ACTIVE_MASK &
                                            CAT_BIT(t->to)))
        rc = cat_exec(c, "UPDATE scans SET started = ? WHERE id = ?", "si",
                      now, t->id);
    if (rc == 0 && (t->to == CAT_DONE || t->to == CAT_FAILED ||
                    t->to == CAT_CANCELLED))
        rc = cat_exec(c, "UPDATE scans SET finished = ? WHERE id = ?", "si",
                      now, t->id);
    if (rc == 0 && t->to == CAT_QUEUED)
        rc = cat_exec(c, "UPDATE scans SET finished = NULL WHERE id = ?",
                      "i", t->id);
    /* A request lapses once the scan leaves the microscope; a pause for
     * space keeps it: the scan is still on the microscope. */
    if (rc == 0 && !t->space && !(CAT_ACTIVE_MASK & CAT_BIT(t->to)))
        rc = cat_exec(c, "UPDATE scans SET request = '' WHERE id = ?", "i",
                      t->id);
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "changing scan state");
    return 0;
}

int
cat_scan_transition(struct cat *c, int64_t id, unsigned from_mask,
                    enum cat_state to, const char *reason,
                    struct ss_err *err)
{
    struct trans_ctx t = { id, from_mask, to, reason, false, false };
    int rc;

    /* Stopping work must not fail for want of space (see the ballast). */
    c->critical = to == CAT_PAUSED || to == CAT_CANCELLED;
    rc = cat_tx(c, CAT_TX_IMMEDIATE, trans_tx, &t, err);
    c->critical = false;
    return rc;
}

int
cat_scan_pause_for_space(struct cat *c, int64_t id, const char *reason,
                         struct ss_err *err)
{
    struct trans_ctx t = { id, CAT_ACTIVE_MASK | CAT_BIT(CAT_QUEUED),
                           CAT_PAUSED, reason, false, true };
    int rc;

    c->critical = true;
    rc = cat_tx(c, CAT_TX_IMMEDIATE, trans_tx, &t, err);
    c->critical = false;
    return rc;
}

struct rewait_ctx {
    int64_t *ids;
    int n;
};

static int
rewait_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct rewait_ctx *r = ctx;
    sqlite3_stmt *st;
    int rc;

    rc = cat__prepare(c, &st, "SELECT id FROM scans WHERE state = 'paused' "
                      "AND space_from != '' ORDER BY id", "");
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading waits for space");
    while (r->n < 64 && sqlite3_step(st) == SQLITE_ROW)
        r->ids[r->n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    /* The reason goes: it told the free space of a check long past, and
     * the scan checks again before its next step. */
    if (cat_exec(c, "UPDATE scans SET state = space_from, space_from = '', "
                 "reason = '' WHERE state = 'paused' AND space_from != ''",
                 "") < 0)
        return cat__sql_err(c, c->last_rc, err, "resuming waits for space");
    return 0;
}

int
cat_scan_rewait_space(struct cat *c, int64_t ids[64], int *n,
                      struct ss_err *err)
{
    struct rewait_ctx r = { ids, 0 };
    int rc;

    rc = cat_tx(c, CAT_TX_IMMEDIATE, rewait_tx, &r, err);
    *n = rc == 0 ? r.n : 0;
    return rc;
}

struct request_ctx {
    int64_t id;
    const char *request;
};

static int
request_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct request_ctx *r = ctx;

    if (cat_exec(c, "UPDATE scans SET request = ? WHERE id = ?", "si",
                 r->request, r->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording the request");
    if (sqlite3_changes(c->db) == 0)
        return err_set(err, -ENOENT, "scan %lld: no such scan",
                       (long long)r->id);
    return 0;
}

int
cat_scan_request(struct cat *c, int64_t id, const char *request,
                 struct ss_err *err)
{
    struct request_ctx r = { id, request != NULL ? request : "" };
    int rc;

    c->critical = true;
    rc = cat_tx(c, CAT_TX_IMMEDIATE, request_tx, &r, err);
    c->critical = false;
    return rc;
}

struct pending_ctx {
    int64_t *ids;
    int n;
};

/* The scans with a request the scan thread never acted on become what
 * was asked: a pause, or a cancel. */
static int
pending_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    static const char *const sql[] = {
        "UPDATE scans SET state = 'paused', reason = 'paused by request', "
        "holds_queue = 0, request = '', space_from = '' WHERE request = "
        "'pause' AND state IN ('calibrating','planning','focusing',"
        "'capturing','paused')",
        "UPDATE scans SET state = 'cancelled', reason = 'cancelled by "
        "request', holds_queue = 0, request = '', space_from = '', "
        "finished = ?1 WHERE request = 'cancel' AND state IN "
        "('calibrating','planning','focusing','capturing','paused')",
        "UPDATE scans SET request = '' WHERE request != ''",
    };
    struct pending_ctx *p = ctx;
    char now[CAT_TIME_MAX];
    sqlite3_stmt *st;
    int rc, i;

    rc = cat__prepare(c, &st, "SELECT id FROM scans WHERE request != '' "
                      "AND state IN ('calibrating','planning','focusing',"
                      "'capturing','paused') ORDER BY id", "");
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading requests");
    while (p->n < 64 && sqlite3_step(st) == SQLITE_ROW)
        p->ids[p->n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    cat__now(now);
    for (i = 0; i < 3; i++)
        if (cat_exec(c, sql[i], i == 1 ? "s" : "", now) < 0)
            return cat__sql_err(c, c->last_rc, err, "applying requests");
    return 0;
}

int
cat_scan_apply_requests(struct cat *c, int64_t ids[64], int *n,
                        struct ss_err *err)
{
    struct pending_ctx p = { ids, 0 };
    int rc;

    rc = cat_tx(c, CAT_TX_IMMEDIATE, pending_tx, &p, err);
    *n = rc == 0 ? p.n : 0;
    return rc;
}

int
cat_scan_hold(struct cat *c, int64_t id, const char *reason,
              struct ss_err *err)
{
    struct trans_ctx t = { id, CAT_ACTIVE_MASK | CAT_BIT(CAT_ASSEMBLING),
                           CAT_PAUSED, reason, true, false };

    return cat_tx(c, CAT_TX_IMMEDIATE, trans_tx, &t, err);
}

int
cat_queue_holder(struct cat *c, int64_t *id, char *reason, size_t len,
                 struct ss_err *err)
{
    struct cat_scan s;
    int rc;

    rc = cat_query_int(c, id, "SELECT id FROM scans WHERE state = 'paused' "
                       "AND holds_queue != 0 ORDER BY id LIMIT 1", "");
    if (rc == -ENOENT)
        return -ENOENT;
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "reading the queue");
    rc = cat_scan_get(c, *id, &s, err);
    if (rc == 0 && reason != NULL)
        snprintf(reason, len, "%s", s.reason);
    return rc;
}

struct move_ctx {
    int64_t id;
    int pos;
};

struct qent {
    int64_t id, prio;
    double pos;
};

/* Queue order of queued scans: priority first, then position. */
static int
queued_order(struct cat *c, struct qent **out, int *n, struct ss_err *err)
{
    struct qent *q = NULL, *nq;
    sqlite3_stmt *st;
    int rc, cap = 0;

    *n = 0;
    rc = cat__prepare(c, &st, "SELECT id, priority, queue_pos FROM scans "
                      "WHERE state = 'queued' ORDER BY priority DESC, "
                      "queue_pos ASC", "");
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading the queue");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            nq = realloc(q, cap * sizeof(*q));
            if (nq == NULL)
                break;
            q = nq;
        }
        q[*n].id = sqlite3_column_int64(st, 0);
        q[*n].prio = sqlite3_column_int64(st, 1);
        q[*n].pos = sqlite3_column_double(st, 2);
        (*n)++;
    }
    sqlite3_finalize(st);
    *out = q;
    if (rc == SQLITE_ROW)
        return err_set(err, -ENOMEM, "out of memory");
    if (rc != SQLITE_DONE)
        return cat__sql_err(c, rc, err, "reading the queue");
    return 0;
}

/* New priority and position for a scan landing at index `at` of the queue
 * order q[0..n) from which the moved scan was taken out. */
static void
slot_between(const struct qent *q, int n, int at, int64_t *p, double *pos)
{
    if (n == 0) {
        *p = 0;
        *pos = 1;
    } else if (at <= 0) {
        *p = q[0].prio;
        *pos = q[0].pos - 1;
    } else if (at >= n) {
        *p = q[n - 1].prio;
        *pos = q[n - 1].pos + 1;
    } else if (q[at - 1].prio == q[at].prio) {
        *p = q[at].prio;
        *pos = (q[at - 1].pos + q[at].pos) / 2;
    } else {
        *p = q[at].prio;
        *pos = q[at].pos - 1;
    }
}

static int
move_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct move_ctx *m = ctx;
    struct qent *q = NULL;
    int n, i, j, rc, found = 0;
    int64_t p;
    double pos;

    rc = queued_order(c, &q, &n, err);
    for (i = 0, j = 0; rc == 0 && i < n; i++) {
        if (q[i].id == m->id)
            found = 1;
        else
            q[j++] = q[i];
    }
    if (rc == 0 && !found)
        rc = err_set(err, -EALREADY, "scan %lld is not queued",
                     (long long)m->id);
    if (rc == 0) {
        slot_between(q, j, m->pos - 1, &p, &pos);
        if (cat_exec(c, "UPDATE scans SET priority = ?, queue_pos = ? "
                     "WHERE id = ?", "idi", p, pos, m->id) < 0)
            rc = cat__sql_err(c, c->last_rc, err, "moving scan");
    }
    free(q);
    return rc;
}

int
cat_scan_move(struct cat *c, int64_t id, int pos, struct ss_err *err)
{
    struct move_ctx m = { id, pos };
    struct cat_scan s;
    int rc;

    rc = cat_scan_get(c, id, &s, err);
    if (rc < 0)
        return rc;
    return cat_tx(c, CAT_TX_IMMEDIATE, move_tx, &m, err);
}

struct reason_ctx {
    int64_t id;
    const char *reason;
};

static int
reason_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct reason_ctx *r = ctx;

    if (cat_exec(c, "UPDATE scans SET reason = ? WHERE id = ?", "si",
                 r->reason, r->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording reason");
    return 0;
}

int
cat_scan_set_reason(struct cat *c, int64_t id, const char *reason,
                    struct ss_err *err)
{
    struct reason_ctx r = { id, reason != NULL ? reason : "" };

    return cat_tx(c, CAT_TX_IMMEDIATE, reason_tx, &r, err);
}

static int
region_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct reason_ctx *r = ctx;

    if (cat_exec(c, "UPDATE scans SET region = ? WHERE id = ? AND state = "
                 "'queued'", "si", r->reason, r->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording region");
    if (sqlite3_changes(c->db) == 0)
        return err_set(err, -EALREADY, "scan %lld is not queued",
                       (long long)r->id);
    return 0;
}

int
cat_scan_set_region(struct cat *c, int64_t id, const char *region,
                    struct ss_err *err)
{
    struct reason_ctx r = { id, region != NULL ? region : "" };
    double v[4];

    if (r.reason[0] != '\0' && cat_region_parse(r.reason, v, err) < 0)
        return -EINVAL;
    return cat_tx(c, CAT_TX_IMMEDIATE, region_tx, &r, err);
}

static int
warning_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct reason_ctx *r = ctx;

    if (cat_exec(c, "UPDATE scans SET warnings = CASE WHEN warnings = '' "
                 "THEN ?1 WHEN instr(warnings, ?1) > 0 THEN warnings ELSE "
                 "warnings || '; ' || ?1 END WHERE id = ?2", "si",
                 r->reason, r->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording warning");
    return 0;
}

int
cat_scan_add_warning(struct cat *c, int64_t id, const char *warning,
                     struct ss_err *err)
{
    struct reason_ctx r = { id, warning };

    if (warning == NULL || warning[0] == '\0')
        return 0;
    return cat_tx(c, CAT_TX_IMMEDIATE, warning_tx, &r, err);
}

struct profile_ctx {
    int64_t id;
    const char *profile, *options;
    int64_t calib;
};

static int
profile_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct profile_ctx *p = ctx;

    if (cat_exec(c, "UPDATE scans SET profile = ?, options = ?, calib = "
                 "NULLIF(?, 0) WHERE id = ?", "ssii", p->profile, p->options,
                 p->calib, p->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording profile");
    return 0;
}

int
cat_scan_set_profile(struct cat *c, int64_t id, const char *profile,
                     const char *options, int64_t calib_id,
                     struct ss_err *err)
{
    struct profile_ctx p = { id, profile, options, calib_id };

    return cat_tx(c, CAT_TX_IMMEDIATE, profile_tx, &p, err);
}

struct time_ctx {
    int64_t id;
    double v, w;
};

static int
time_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct time_ctx *t = ctx;

    if (cat_exec(c, "UPDATE scans SET virtual_ms = virtual_ms + ?, "
                 "wall_ms = wall_ms + ? WHERE id = ?", "ddi", t->v, t->w,
                 t->id) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording time");
    return 0;
}

int
cat_scan_add_time(struct cat *c, int64_t id, double virtual_ms,
                  double wall_ms, struct ss_err *err)
{
    struct time_ctx t = { id, virtual_ms, wall_ms };

    return cat_tx(c, CAT_TX_IMMEDIATE, time_tx, &t, err);
}

static int
resume_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    int64_t *id = ctx;

    if (cat_exec(c, "UPDATE scans SET resumes = resumes + 1 WHERE id = ?",
                 "i", *id) < 0)
        return cat__sql_err(c, c->last_rc, err, "counting resume");
    return 0;
}

int
cat_scan_count_resume(struct cat *c, int64_t id, struct ss_err *err)
{
    return cat_tx(c, CAT_TX_IMMEDIATE, resume_tx, &id, err);
}

int
cat_scans_in(struct cat *c, unsigned mask, int64_t **ids, int *n,
             struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc, cap = 0, s;
    int64_t *v = NULL, *nv;

    *n = 0;
    *ids = NULL;
    rc = cat__prepare(c, &st, "SELECT id, state FROM scans ORDER BY id", "");
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "listing scans");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s = cat_state_parse((const char *)sqlite3_column_text(st, 1));
        if (s < 0 || !(mask & CAT_BIT(s)))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                free(v);
                sqlite3_finalize(st);
                return err_set(err, -ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[(*n)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(v);
        *n = 0;
        return cat__sql_err(c, rc, err, "listing scans");
    }
    *ids = v;
    return 0;
}

/* ---- audit trail --------------------------------------------------------- */

struct event_ctx {
    int64_t uid;
    const char *action;
    int64_t scan;
    const char *detail;
};

static int
event_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct event_ctx *e = ctx;
    char now[CAT_TIME_MAX];

    cat__now(now);
    if (cat_exec(c, "INSERT INTO events (time, uid, action, scan, detail) "
                 "VALUES (?, NULLIF(?, -1), ?, NULLIF(?, 0), ?)", "sisis",
                 now, e->uid, e->action, e->scan,
                 e->detail != NULL ? e->detail : "") < 0)
        return cat__sql_err(c, c->last_rc, err, "recording event");
    return 0;
}

int
cat_event(struct cat *c, int64_t uid, const char *action, int64_t scan,
          const char *detail, struct ss_err *err)
{
    struct event_ctx e = { uid, action, scan, detail };

    return cat_tx(c, CAT_TX_IMMEDIATE, event_tx, &e, err);
}
