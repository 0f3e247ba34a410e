/* SPDX-License-Identifier: MIT */
/*
 * The catalogue as JSON for the control protocol: the queue, the slide
 * list and one slide in full.  Column names become keys and SQLite types
 * become JSON types, so the listings follow the schema without a second
 * hand-kept copy of every field.
 */
#include "storage/catalogue_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Text that is not valid UTF-8 (a message cut mid-character when it was
 * stored) is passed on with its non-ASCII bytes as '?'. */
static json_t *
text_value(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    char *copy;
    size_t i;

    if (v != NULL)
        return v;
    copy = strndup(s, n);
    if (copy == NULL)
        return json_null();
    for (i = 0; copy[i] != '\0'; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    v = json_string(copy);
    free(copy);
    return v != NULL ? v : json_null();
}

static json_t *
col_value(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return text_value((const char *)sqlite3_column_text(st, i),
                          (size_t)sqlite3_column_bytes(st, i));
    default:
        return json_null();
    }
}

static json_t *
row_obj(sqlite3_stmt *st)
{
    json_t *o = json_object();
    int i, n = sqlite3_column_count(st);

    for (i = 0; o != NULL && i < n; i++)
        json_object_set_new(o, sqlite3_column_name(st, i), col_value(st, i));
    return o;
}

/* Runs sql and appends one object per row to the array *out (created when
 * NULL). */
static int
rows_json(struct cat *c, json_t **out, struct ss_err *err, const char *sql,
          const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cat__prepare_v(c, &st, sql, fmt, ap);
    va_end(ap);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "listing");
    if (*out == NULL)
        *out = json_array();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(*out, row_obj(st));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cat__sql_err(c, rc, err, "listing");
    return 0;
}

#define SCAN_JSON_COLS \
    "s.id, s.slide, s.stain, s.state, s.priority, s.requested_by, " \
    "s.reason, s.image, s.tiles_total, s.tiles_done, s.virtual_ms, " \
    "s.wall_ms, s.resumes, s.created, s.started, s.finished, s.wsi_path, " \
    "s.mpp, s.width, s.height, s.checksum, s.region, s.warnings, " \
    "a.state AS analysis"

#define SCAN_JSON_FROM \
    " FROM scans s LEFT JOIN analyses a ON a.scan = s.id "

int
cat_scan_json(struct cat *c, int64_t id, json_t **out, struct ss_err *err)
{
    json_t *arr = NULL;
    int rc;

    *out = NULL;
    rc = rows_json(c, &arr, err, "SELECT " SCAN_JSON_COLS SCAN_JSON_FROM
                   "WHERE s.id = ?", "i", id);
    if (rc == 0 && json_array_size(arr) == 0)
        rc = err_set(err, -ENOENT, "no scan %lld", (long long)id);
    if (rc == 0)
        *out = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return rc;
}

/* Numbers the queued scans 1, 2, ... in run order. */
static void
number_queue(json_t *scans)
{
    json_t *s;
    size_t i;
    int pos = 1;

    json_array_foreach(scans, i, s) {
        const char *st = json_string_value(json_object_get(s, "state"));
        if (st != NULL && strcmp(st, "queued") == 0)
            json_object_set_new(s, "position", json_integer(pos++));
    }
}

int
cat_queue_json(struct cat *c, bool all, int limit, json_t **out,
               struct ss_err *err)
{
    json_t *scans = NULL;
    int rc;

    *out = NULL;
    rc = rows_json(c, &scans, err, "SELECT " SCAN_JSON_COLS SCAN_JSON_FROM
                   "WHERE s.state NOT IN ('done', 'failed', 'cancelled') "
                   "ORDER BY CASE s.state WHEN 'queued' THEN 1 WHEN "
                   "'paused' THEN 2 ELSE 0 END, s.priority DESC, "
                   "s.queue_pos ASC LIMIT ?", "i", (int64_t)limit);
    if (rc == 0)
        number_queue(scans);
    if (rc == 0 && all && (int)json_array_size(scans) < limit)
        rc = rows_json(c, &scans, err, "SELECT " SCAN_JSON_COLS
                       SCAN_JSON_FROM "WHERE s.state IN ('done', 'failed', "
                       "'cancelled') ORDER BY s.finished DESC, s.id DESC "
                       "LIMIT ?", "i",
                       (int64_t)(limit - (int)json_array_size(scans)));
    if (rc < 0) {
        json_decref(scans);
        return rc;
    }
    *out = json_pack("{s:o}", "scans", scans);
    return 0;
}

int
cat_slides_json(struct cat *c, int limit, json_t **out, struct ss_err *err)
{
    json_t *slides = NULL;
    int rc;

    *out = NULL;
    rc = rows_json(c, &slides, err, "SELECT sl.id, sl.stain, sl.created, "
                   "sl.wsi_path, sl.mpp, sl.width, sl.height, sl.checksum, "
                   "(SELECT COUNT(*) FROM scans WHERE slide = sl.id) AS "
                   "scans, (SELECT state FROM scans WHERE slide = sl.id "
                   "ORDER BY id DESC LIMIT 1) AS last_state, (SELECT "
                   "a.state FROM analyses a WHERE a.scan = sl.wsi_scan) AS "
                   "analysis FROM slides sl ORDER BY sl.created DESC, "
                   "sl.rowid DESC LIMIT ?", "i", (int64_t)limit);
    if (rc < 0) {
        json_decref(slides);
        return rc;
    }
    *out = json_pack("{s:o}", "slides", slides);
    return 0;
}

/* Replaces a JSON-text member by its parsed value. */
static void
parse_member(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    json_t *v;

    if (s == NULL)
        return;
    v = json_loads(s, 0, NULL);
    if (v != NULL)
        json_object_set_new(o, key, v);
}

static int
show_analysis(struct cat *c, int64_t scan, json_t *so, struct ss_err *err)
{
    json_t *rows = NULL, *a;
    int rc;

    rc = rows_json(c, &rows, err, "SELECT state, attempts, tumor_area_mm2, "
                   "stroma_area_mm2, tissue_area_mm2, tumor_stroma_ratio, "
                   "ki67_index, ck_area_mm2 AS ck_positive_area_mm2, "
                   "out_dir, overlay_path, results, reason, queued, "
                   "started, finished FROM analyses WHERE scan = ?", "i",
                   scan);
    if (rc == 0) {
        a = json_array_get(rows, 0);
        if (a != NULL) {
            parse_member(a, "results");
            json_object_set(so, "analysis", a);
        } else {
            json_object_set_new(so, "analysis", json_null());
        }
    }
    json_decref(rows);
    return rc;
}

/* A tile worth showing without --tiles: flagged by the acquisition,
 * failed, re-taken for focus, or retried after a device fault. */
#define TILE_FLAGGED \
    "(flags != 0 OR state = 'failed' OR retakes > 0 OR busy_retries > 0 " \
    "OR timeouts > 0 OR resets > 0 OR attempts > 1)"

/* "retries": the device retries of the scan's tiles, summed. */
static int
show_retries(struct cat *c, int64_t id, json_t *so, struct ss_err *err)
{
    json_t *rows = NULL;
    int rc;

    rc = rows_json(c, &rows, err, "SELECT COUNT(*) AS tiles, "
                   "COALESCE(SUM(busy_retries), 0) AS busy_retries, "
                   "COALESCE(SUM(timeouts), 0) AS timeouts, "
                   "COALESCE(SUM(resets), 0) AS resets, "
                   "COALESCE(SUM(MAX(attempts - 1, 0)), 0) AS "
                   "extra_attempts FROM tiles WHERE scan = ? AND "
                   "(busy_retries > 0 OR timeouts > 0 OR resets > 0 OR "
                   "attempts > 1)", "i", id);
    if (rc == 0)
        json_object_set(so, "retries", json_array_get(rows, 0));
    json_decref(rows);
    return rc;
}

static int
show_scan(struct cat *c, json_t *so, bool all_tiles, struct ss_err *err)
{
    int64_t id = json_integer_value(json_object_get(so, "id"));
    json_t *tiles = NULL, *focus = NULL, *calib = NULL;
    int rc;

    parse_member(so, "profile");
    parse_member(so, "options");
    parse_member(so, "focus_coef");
    rc = rows_json(c, &tiles, err, "SELECT idx, row, col, x_um, y_um, "
                   "rx_um, ry_um, rz_um, sharpness, retakes, busy_retries, "
                   "timeouts, resets, attempts, flags, state, file, "
                   "checksum, virtual_ms FROM tiles WHERE scan = ? AND (? "
                   "OR " TILE_FLAGGED ") ORDER BY idx", "ii", id,
                   (int64_t)all_tiles);
    if (rc == 0)
        rc = show_retries(c, id, so, err);
    if (rc == 0)
        rc = rows_json(c, &focus, err, "SELECT x_um, y_um, z_um, score, ok "
                       "FROM focus_points WHERE scan = ? ORDER BY n", "i",
                       id);
    if (rc == 0)
        rc = rows_json(c, &calib, err, "SELECT k.id, k.stain, k.objective, "
                       "k.exposure_ms, k.dir, k.taken FROM calibrations k "
                       "JOIN scans s ON s.calib = k.id WHERE s.id = ?", "i",
                       id);
    if (rc == 0) {
        json_object_set(so, all_tiles ? "tiles" : "tiles_flagged", tiles);
        json_object_set(so, "focus_points", focus);
        json_object_set(so, "calibration", json_array_size(calib) > 0
                        ? json_array_get(calib, 0) : json_null());
        rc = show_analysis(c, id, so, err);
    }
    json_decref(tiles);
    json_decref(focus);
    json_decref(calib);
    return rc;
}

int
cat_slide_show_json(struct cat *c, const char *slide, bool all_tiles,
                    json_t **out, struct ss_err *err)
{
    json_t *rows = NULL, *scans = NULL, *s, *so;
    size_t i;
    int rc;

    *out = NULL;
    rc = rows_json(c, &rows, err, "SELECT id, stain, created, wsi_scan, "
                   "wsi_path, wsi_bytes, width, height, mpp, checksum FROM "
                   "slides WHERE id = ?", "s", slide);
    if (rc == 0 && json_array_size(rows) == 0)
        rc = err_set(err, -ENOENT, "no slide '%s'", slide);
    if (rc == 0)
        rc = rows_json(c, &scans, err, "SELECT s.*, a.state AS analysis "
                       SCAN_JSON_FROM "WHERE s.slide = ? ORDER BY s.id",
                       "s", slide);
    json_array_foreach(scans, i, s) {
        if (rc == 0)
            rc = show_scan(c, s, all_tiles, err);
    }
    if (rc == 0) {
        so = json_array_get(rows, 0);
        json_object_set(so, "scans", scans);
        *out = json_incref(so);
    }
    json_decref(rows);
    json_decref(scans);
    return rc;
}
