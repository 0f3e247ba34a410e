/* SPDX-License-Identifier: MIT */
/*
 * The catalogue's acquisition records: the tile plan, focus points, each
 * captured tile, calibrations, the finished slide image and its analysis.
 * Everything the scan thread needs to resume a scan at its next tile
 * without re-planning or re-focusing is stored here.
 */
#include "storage/catalogue_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plan ---------------------------------------------------------------- */

struct plan_ctx {
    int64_t scan;
    const struct acq_plan *p;
};

static int
plan_rows(struct cat *c, int64_t scan, const struct acq_plan *p,
          struct ss_err *err)
{
    sqlite3_stmt *st;
    int i, rc;

    rc = cat__prepare(c, &st, "INSERT INTO tiles (scan, idx, row, col, "
                      "x_um, y_um, tissue_frac) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      "");
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "storing plan");
    for (i = 0; i < p->ntiles && rc == SQLITE_OK; i++) {
        const struct acq_tile *t = &p->tiles[i];
        sqlite3_bind_int64(st, 1, scan);
        sqlite3_bind_int(st, 2, t->index);
        sqlite3_bind_int(st, 3, t->row);
        sqlite3_bind_int(st, 4, t->col);
        sqlite3_bind_double(st, 5, t->x_um);
        sqlite3_bind_double(st, 6, t->y_um);
        sqlite3_bind_double(st, 7, t->tissue_frac);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "storing plan");
    return 0;
}

static int
plan_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct plan_ctx *x = ctx;
    const struct acq_plan *p = x->p;
    int64_t done = 0;

    cat_query_int(c, &done, "SELECT COUNT(*) FROM tiles WHERE scan = ? AND "
                  "state != 'planned'", "i", x->scan);
    if (done > 0)
        return err_set(err, -EALREADY, "scan %lld: %lld tiles of its plan "
                       "are captured already", (long long)x->scan,
                       (long long)done);
    if (cat_exec(c, "DELETE FROM tiles WHERE scan = ?", "i", x->scan) < 0 ||
        cat_exec(c, "UPDATE scans SET origin_x_um = ?, origin_y_um = ?, "
                 "step_x_um = ?, step_y_um = ?, rows = ?, cols = ?, "
                 "frame_w = ?, frame_h = ?, pixel_um = ?, cells_total = ?, "
                 "tiles_total = ?, tiles_done = 0 WHERE id = ?",
                 "ddddiiiidiii", p->origin_x_um, p->origin_y_um,
                 p->step_x_um, p->step_y_um, (int64_t)p->rows,
                 (int64_t)p->cols, (int64_t)p->frame_w, (int64_t)p->frame_h,
                 p->pixel_um, (int64_t)p->cells_total, (int64_t)p->ntiles,
                 x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "storing plan");
    return plan_rows(c, x->scan, p, err);
}

int
cat_plan_save(struct cat *c, int64_t scan, const struct acq_plan *p,
              struct ss_err *err)
{
    struct plan_ctx x = { scan, p };

    return cat_tx(c, CAT_TX_IMMEDIATE, plan_tx, &x, err);
}

static int
plan_head(struct cat *c, int64_t scan, struct acq_plan *p,
          struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc;

    rc = cat__prepare(c, &st, "SELECT origin_x_um, origin_y_um, step_x_um, "
                      "step_y_um, rows, cols, frame_w, frame_h, pixel_um, "
                      "cells_total, tiles_total FROM scans WHERE id = ? AND "
                      "rows IS NOT NULL", "i", scan);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading plan");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        p->origin_x_um = sqlite3_column_double(st, 0);
        p->origin_y_um = sqlite3_column_double(st, 1);
        p->step_x_um = sqlite3_column_double(st, 2);
        p->step_y_um = sqlite3_column_double(st, 3);
        p->rows = sqlite3_column_int(st, 4);
        p->cols = sqlite3_column_int(st, 5);
        p->frame_w = sqlite3_column_int(st, 6);
        p->frame_h = sqlite3_column_int(st, 7);
        p->pixel_um = sqlite3_column_double(st, 8);
        p->cells_total = sqlite3_column_int(st, 9);
        p->ntiles = sqlite3_column_int(st, 10);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return err_set(err, -ENOENT, "scan %lld has no plan",
                       (long long)scan);
    if (rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading plan");
    return 0;
}

static int
plan_tiles(struct cat *c, int64_t scan, struct acq_plan *p,
           struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc, n = 0;

    p->tiles = calloc(p->ntiles > 0 ? p->ntiles : 1, sizeof(*p->tiles));
    if (p->tiles == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = cat__prepare(c, &st, "SELECT idx, row, col, x_um, y_um, "
                      "COALESCE(tissue_frac, 0) FROM tiles WHERE scan = ? "
                      "ORDER BY idx", "i", scan);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading plan");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < p->ntiles) {
        struct acq_tile *t = &p->tiles[n++];
        t->index = sqlite3_column_int(st, 0);
        t->row = sqlite3_column_int(st, 1);
        t->col = sqlite3_column_int(st, 2);
        t->x_um = sqlite3_column_double(st, 3);
        t->y_um = sqlite3_column_double(st, 4);
        t->tissue_frac = sqlite3_column_double(st, 5);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading plan");
    if (n != p->ntiles || rc == SQLITE_ROW)
        return err_set(err, SS_EFORMAT, "catalogue %s: scan %lld: plan "
                       "says %d tiles, %d stored", c->path, (long long)scan,
                       p->ntiles, n);
    return 0;
}

int
cat_plan_load(struct cat *c, int64_t scan, struct acq_plan **out,
              struct ss_err *err)
{
    struct acq_plan *p;
    int rc;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = plan_head(c, scan, p, err);
    if (rc == 0)
        rc = plan_tiles(c, scan, p, err);
    if (rc < 0) {
        cat_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void
cat_plan_free(struct acq_plan *p)
{
    if (p == NULL)
        return;
    free(p->tiles);
    free(p);
}

/* ---- focus points -------------------------------------------------------- */

struct focus_ctx {
    int64_t scan;
    const struct acq_focus_map *fm;
};

static int
focus_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct focus_ctx *x = ctx;
    const struct acq_focus_map *fm = x->fm;
    char coef[256];
    int i, rc = 0;

    snprintf(coef, sizeof(coef), "[%.17g,%.17g,%.17g,%.17g,%.17g,%.17g]",
             fm->coef[0], fm->coef[1], fm->coef[2], fm->coef[3],
             fm->coef[4], fm->coef[5]);
    if (cat_exec(c, "DELETE FROM focus_points WHERE scan = ?", "i",
                 x->scan) < 0 ||
        cat_exec(c, "UPDATE scans SET focus_model = ?, focus_coef = ?, "
                 "focus_rms_um = ? WHERE id = ?", "isdi",
                 (int64_t)fm->model, coef, fm->rms_um, x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "storing focus map");
    for (i = 0; i < fm->npoints && rc == 0; i++) {
        const struct acq_focus_point *q = &fm->points[i];
        rc = cat_exec(c, "INSERT INTO focus_points (scan, n, x_um, y_um, "
                      "z_um, score, ok) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      "iiddddi", x->scan, (int64_t)i, q->x_um, q->y_um,
                      q->z_um, q->score, (int64_t)q->ok);
    }
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "storing focus points");
    return 0;
}

int
cat_focus_save(struct cat *c, int64_t scan, const struct acq_focus_map *fm,
               struct ss_err *err)
{
    struct focus_ctx x = { scan, fm };

    return cat_tx(c, CAT_TX_IMMEDIATE, focus_tx, &x, err);
}

static int
focus_head(struct cat *c, int64_t scan, struct acq_focus_map *fm,
           struct ss_err *err)
{
    sqlite3_stmt *st;
    const char *coef;
    int rc;

    rc = cat__prepare(c, &st, "SELECT focus_model, focus_coef, focus_rms_um "
                      "FROM scans WHERE id = ? AND focus_model IS NOT NULL",
                      "i", scan);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading focus map");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        fm->model = sqlite3_column_int(st, 0);
        coef = (const char *)sqlite3_column_text(st, 1);
        if (coef == NULL || sscanf(coef, "[%lf,%lf,%lf,%lf,%lf,%lf]",
                                   &fm->coef[0], &fm->coef[1], &fm->coef[2],
                                   &fm->coef[3], &fm->coef[4],
                                   &fm->coef[5]) != 6)
            rc = SQLITE_CORRUPT;
        fm->rms_um = sqlite3_column_double(st, 2);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return err_set(err, -ENOENT, "scan %lld has no focus map",
                       (long long)scan);
    if (rc == SQLITE_CORRUPT)
        return err_set(err, SS_EFORMAT, "catalogue %s: scan %lld: focus "
                       "coefficients unreadable", c->path, (long long)scan);
    if (rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading focus map");
    return 0;
}

static int
focus_points(struct cat *c, int64_t scan, struct acq_focus_map *fm,
             struct ss_err *err)
{
    sqlite3_stmt *st;
    int64_t n = 0;
    int rc;

    cat_query_int(c, &n, "SELECT COUNT(*) FROM focus_points WHERE scan = ?",
                  "i", scan);
    fm->points = calloc(n > 0 ? (size_t)n : 1, sizeof(*fm->points));
    if (fm->points == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = cat__prepare(c, &st, "SELECT x_um, y_um, z_um, score, ok FROM "
                      "focus_points WHERE scan = ? ORDER BY n", "i", scan);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading focus points");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && fm->npoints < n) {
        struct acq_focus_point *q = &fm->points[fm->npoints++];
        q->x_um = sqlite3_column_double(st, 0);
        q->y_um = sqlite3_column_double(st, 1);
        q->z_um = sqlite3_column_double(st, 2);
        q->score = sqlite3_column_double(st, 3);
        q->ok = sqlite3_column_int(st, 4) != 0;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading focus points");
    return 0;
}

int
cat_focus_load(struct cat *c, int64_t scan, struct acq_focus_map **out,
               struct ss_err *err)
{
    struct acq_focus_map *fm;
    int rc;

    *out = NULL;
    fm = calloc(1, sizeof(*fm));
    if (fm == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = focus_head(c, scan, fm, err);
    if (rc == 0)
        rc = focus_points(c, scan, fm, err);
    if (rc < 0) {
        cat_focus_free(fm);
        return rc;
    }
    *out = fm;
    return 0;
}

void
cat_focus_free(struct acq_focus_map *fm)
{
    if (fm == NULL)
        return;
    free(fm->points);
    free(fm);
}

/* ---- tiles --------------------------------------------------------------- */

static const char *const tstate_names[] = { "planned", "captured",
                                            "failed" };

struct tile_ctx {
    int64_t scan;
    int idx;
    const struct cat_tile_rec *r;
};

static int
tile_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct tile_ctx *x = ctx;
    const struct cat_tile_rec *r = x->r;
    int64_t was = -1;
    char now[CAT_TIME_MAX];

    if (cat_query_int(c, &was, "SELECT state != 'planned' FROM tiles "
                      "WHERE scan = ? AND idx = ?", "ii", x->scan,
                      (int64_t)x->idx) < 0)
        return err_set(err, -ENOENT, "scan %lld has no planned tile %d",
                       (long long)x->scan, x->idx);
    cat__now(now);
    if (cat_exec(c, "UPDATE tiles SET rx_um = ?, ry_um = ?, rz_um = ?, "
                 "z_pred_um = ?, sharpness = ?, quality = ?, sat_frac = ?, "
                 "retakes = ?, focus_captures = ?, busy_retries = ?, "
                 "timeouts = ?, resets = ?, attempts = ?, flags = ?, "
                 "state = ?, file = ?, checksum = ?, captured = ?, "
                 "virtual_ms = ? WHERE scan = ? AND idx = ?",
                 "dddddddiiiiiiissssdii", r->x_um,
                 r->y_um, r->z_um, r->z_pred_um, r->sharpness, r->quality,
                 r->sat_frac, (int64_t)r->retakes,
                 (int64_t)r->focus_captures, (int64_t)r->busy_retries,
                 (int64_t)r->timeouts, (int64_t)r->resets,
                 (int64_t)r->attempts, (int64_t)r->flags,
                 tstate_names[r->state], r->file, r->checksum, now,
                 r->virtual_ms, x->scan, (int64_t)x->idx) < 0 ||
        cat_exec(c, "UPDATE scans SET virtual_ms = virtual_ms + ?, "
                 "wall_ms = wall_ms + ? WHERE id = ?", "ddi", r->virtual_ms,
                 r->wall_ms, x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording tile");
    if (was == 0 && r->state != CAT_T_PLANNED &&
        cat_exec(c, "UPDATE scans SET tiles_done = tiles_done + 1 WHERE "
                 "id = ?", "i", x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "counting tile");
    return 0;
}

int
cat_tile_record(struct cat *c, int64_t scan, int idx,
                const struct cat_tile_rec *r, struct ss_err *err)
{
    struct tile_ctx x = { scan, idx, r };

    return cat_tx(c, CAT_TX_IMMEDIATE, tile_tx, &x, err);
}

static int
reset_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct tile_ctx *x = ctx;
    int64_t was = 0;

    if (cat_query_int(c, &was, "SELECT state != 'planned' FROM tiles "
                      "WHERE scan = ? AND idx = ?", "ii", x->scan,
                      (int64_t)x->idx) < 0)
        return err_set(err, -ENOENT, "scan %lld has no planned tile %d",
                       (long long)x->scan, x->idx);
    if (was == 0)
        return 0;
    if (cat_exec(c, "UPDATE tiles SET state = 'planned', file = NULL, "
                 "checksum = NULL, captured = NULL WHERE scan = ? AND "
                 "idx = ?", "ii", x->scan, (int64_t)x->idx) < 0 ||
        cat_exec(c, "UPDATE scans SET tiles_done = tiles_done - 1 WHERE "
                 "id = ?", "i", x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "resetting tile");
    return 0;
}

int
cat_tile_reset(struct cat *c, int64_t scan, int idx, struct ss_err *err)
{
    struct tile_ctx x = { scan, idx, NULL };

    return cat_tx(c, CAT_TX_IMMEDIATE, reset_tx, &x, err);
}

static enum cat_tstate
tstate_parse(const unsigned char *s)
{
    if (s != NULL && strcmp((const char *)s, "captured") == 0)
        return CAT_T_CAPTURED;
    if (s != NULL && strcmp((const char *)s, "failed") == 0)
        return CAT_T_FAILED;
    return CAT_T_PLANNED;
}

int
cat_tiles_load(struct cat *c, int64_t scan, struct cat_tile **tiles, int *n,
               struct ss_err *err)
{
    struct cat_tile *v;
    sqlite3_stmt *st;
    int64_t total = 0;
    int rc;

    *tiles = NULL;
    *n = 0;
    cat_query_int(c, &total, "SELECT COUNT(*) FROM tiles WHERE scan = ?",
                  "i", scan);
    v = calloc(total > 0 ? (size_t)total : 1, sizeof(*v));
    if (v == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    rc = cat__prepare(c, &st, "SELECT idx, row, col, x_um, y_um, "
                      "COALESCE(rx_um, x_um), COALESCE(ry_um, y_um), state, "
                      "checksum FROM tiles WHERE scan = ? ORDER BY idx", "i",
                      scan);
    if (rc != SQLITE_OK) {
        free(v);
        return cat__sql_err(c, rc, err, "reading tiles");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < total) {
        struct cat_tile *t = &v[(*n)++];
        t->idx = sqlite3_column_int(st, 0);
        t->row = sqlite3_column_int(st, 1);
        t->col = sqlite3_column_int(st, 2);
        t->x_um = sqlite3_column_double(st, 3);
        t->y_um = sqlite3_column_double(st, 4);
        t->rx_um = sqlite3_column_double(st, 5);
        t->ry_um = sqlite3_column_double(st, 6);
        t->state = tstate_parse(sqlite3_column_text(st, 7));
        snprintf(t->checksum, sizeof(t->checksum), "%s",
                 sqlite3_column_text(st, 8) != NULL
                 ? (const char *)sqlite3_column_text(st, 8) : "");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        free(v);
        *n = 0;
        return cat__sql_err(c, rc, err, "reading tiles");
    }
    *tiles = v;
    return 0;
}

int
cat_tile_states(struct cat *c, int64_t scan, uint8_t **states, int *n,
                struct ss_err *err)
{
    sqlite3_stmt *st;
    int64_t total = 0;
    const char *s;
    int rc, idx;

    *states = NULL;
    *n = 0;
    cat_query_int(c, &total, "SELECT tiles_total FROM scans WHERE id = ?",
                  "i", scan);
    *states = calloc(total > 0 ? (size_t)total : 1, 1);
    if (*states == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    *n = (int)total;
    rc = cat__prepare(c, &st, "SELECT idx, state FROM tiles WHERE scan = ?",
                      "i", scan);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading tiles");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        idx = sqlite3_column_int(st, 0);
        s = (const char *)sqlite3_column_text(st, 1);
        if (idx < 0 || idx >= *n || s == NULL)
            continue;
        (*states)[idx] = (uint8_t)tstate_parse((const unsigned char *)s);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cat__sql_err(c, rc, err, "reading tiles");
    return 0;
}

/* ---- calibrations -------------------------------------------------------- */

struct calib_ctx {
    const struct cat_calib *k;
    int64_t id;
};

static int
calib_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct calib_ctx *x = ctx;

    if (cat_exec(c, "INSERT INTO calibrations (stain, objective, "
                 "exposure_ms, dir, taken) VALUES (?, ?, ?, ?, ?)", "ssdss",
                 x->k->stain, x->k->objective, x->k->exposure_ms, x->k->dir,
                 x->k->taken) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording calibration");
    x->id = sqlite3_last_insert_rowid(c->db);
    return 0;
}

int
cat_calib_add(struct cat *c, const struct cat_calib *k, int64_t *id,
              struct ss_err *err)
{
    struct calib_ctx x = { k, 0 };
    int rc;

    rc = cat_tx(c, CAT_TX_IMMEDIATE, calib_tx, &x, err);
    if (rc == 0 && id != NULL)
        *id = x.id;
    return rc;
}

static int
calib_one(struct cat *c, sqlite3_stmt *st, struct cat_calib *out,
          struct ss_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(st, 0);
        snprintf(out->stain, sizeof(out->stain), "%s",
                 sqlite3_column_text(st, 1));
        snprintf(out->objective, sizeof(out->objective), "%s",
                 sqlite3_column_text(st, 2));
        out->exposure_ms = sqlite3_column_double(st, 3);
        snprintf(out->dir, sizeof(out->dir), "%s",
                 sqlite3_column_text(st, 4));
        snprintf(out->taken, sizeof(out->taken), "%s",
                 sqlite3_column_text(st, 5));
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return err_set(err, -ENOENT, "no such calibration");
    if (rc != SQLITE_ROW)
        return cat__sql_err(c, rc, err, "reading calibration");
    return 0;
}

#define CALIB_COLS "id, stain, objective, exposure_ms, dir, taken"

int
cat_calib_latest(struct cat *c, const char *stain, const char *objective,
                 double exposure_ms, struct cat_calib *out,
                 struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc;

    rc = cat__prepare(c, &st, "SELECT " CALIB_COLS " FROM calibrations "
                      "WHERE stain = ? AND objective = ? AND "
                      "abs(exposure_ms - ?) < 0.001 ORDER BY id DESC "
                      "LIMIT 1", "ssd", stain, objective, exposure_ms);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading calibration");
    return calib_one(c, st, out, err);
}

int
cat_calib_get(struct cat *c, int64_t id, struct cat_calib *out,
              struct ss_err *err)
{
    sqlite3_stmt *st;
    int rc;

    rc = cat__prepare(c, &st, "SELECT " CALIB_COLS " FROM calibrations "
                      "WHERE id = ?", "i", id);
    if (rc != SQLITE_OK)
        return cat__sql_err(c, rc, err, "reading calibration");
    return calib_one(c, st, out, err);
}

/* ---- the slide image ----------------------------------------------------- */

struct wsi_ctx {
    int64_t scan;
    const struct cat_wsi *w;
};

static int
wsi_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct wsi_ctx *x = ctx;
    const struct cat_wsi *w = x->w;
    char now[CAT_TIME_MAX];

    cat__now(now);
    if (cat_exec(c, "UPDATE scans SET wsi_path = ?, wsi_bytes = ?, "
                 "width = ?, height = ?, mpp = ?, checksum = ?, "
                 "stitch_rms_px = ?, pairs_used = ?, pairs_total = ?, "
                 "state = 'done', reason = '', finished = ? WHERE id = ?",
                 "siiidsdiisi", w->path, w->bytes, (int64_t)w->width,
                 (int64_t)w->height, w->mpp, w->sha256, w->stitch_rms_px,
                 (int64_t)w->pairs_used, (int64_t)w->pairs_total, now,
                 x->scan) < 0 ||
        cat_exec(c, "UPDATE slides SET wsi_scan = ?, wsi_path = ?, "
                 "wsi_bytes = ?, width = ?, height = ?, mpp = ?, "
                 "checksum = ? WHERE id = (SELECT slide FROM scans WHERE "
                 "id = ?)", "isiiidsi", x->scan, w->path, w->bytes,
                 (int64_t)w->width, (int64_t)w->height, w->mpp, w->sha256,
                 x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording slide image");
    return 0;
}

int
cat_scan_wsi(struct cat *c, int64_t scan, const struct cat_wsi *w,
             struct ss_err *err)
{
    struct wsi_ctx x = { scan, w };

    return cat_tx(c, CAT_TX_IMMEDIATE, wsi_tx, &x, err);
}

/* ---- analyses ------------------------------------------------------------ */

static int
aqueue_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    int64_t scan = *(int64_t *)ctx;
    char now[CAT_TIME_MAX];

    cat__now(now);
    if (cat_exec(c, "INSERT INTO analyses (scan, state, queued) VALUES "
                 "(?, 'queued', ?) ON CONFLICT(scan) DO UPDATE SET "
                 "state = 'queued', attempts = 0, reason = '', queued = "
                 "excluded.queued, started = NULL, finished = NULL", "is",
                 scan, now) < 0)
        return cat__sql_err(c, c->last_rc, err, "queueing analysis");
    return 0;
}

int
cat_analysis_queue(struct cat *c, int64_t scan, struct ss_err *err)
{
    return cat_tx(c, CAT_TX_IMMEDIATE, aqueue_tx, &scan, err);
}

int
cat_analysis_next(struct cat *c, int64_t *scan, struct ss_err *err)
{
    int rc;

    rc = cat_query_int(c, scan, "SELECT scan FROM analyses WHERE state = "
                       "'queued' ORDER BY queued, scan LIMIT 1", "");
    if (rc == -ENOENT)
        return err_set(err, -ENOENT, "no queued analysis");
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "reading analyses");
    return 0;
}

struct aset_ctx {
    int64_t scan;
    enum cat_astate s;
    const char *reason;
    const char *out_dir;
    int attempts;
};

static int
aset_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct aset_ctx *x = ctx;
    const char *name = cat_astate_name(x->s);
    char now[CAT_TIME_MAX];

    cat__now(now);
    if (cat_exec(c, "UPDATE analyses SET state = ?, reason = COALESCE(?, "
                 "reason), finished = CASE WHEN ? IN ('done', 'failed') "
                 "THEN ? ELSE finished END WHERE scan = ?", "ssssi", name,
                 x->reason, name, now, x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording analysis");
    if (sqlite3_changes(c->db) == 0)
        return err_set(err, -ENOENT, "scan %lld has no analysis",
                       (long long)x->scan);
    return 0;
}

int
cat_analysis_set(struct cat *c, int64_t scan, enum cat_astate s,
                 const char *reason, struct ss_err *err)
{
    struct aset_ctx x = { scan, s, reason, NULL, 0 };

    return cat_tx(c, CAT_TX_IMMEDIATE, aset_tx, &x, err);
}

static int
astart_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct aset_ctx *x = ctx;
    int64_t n = 0;
    char now[CAT_TIME_MAX];

    cat__now(now);
    if (cat_exec(c, "UPDATE analyses SET state = 'running', attempts = "
                 "attempts + 1, out_dir = ?, started = ?, reason = '' "
                 "WHERE scan = ?", "ssi", x->out_dir, now, x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "starting analysis");
    if (cat_query_int(c, &n, "SELECT attempts FROM analyses WHERE scan = ?",
                      "i", x->scan) < 0)
        return err_set(err, -ENOENT, "scan %lld has no analysis",
                       (long long)x->scan);
    x->attempts = (int)n;
    return 0;
}

int
cat_analysis_started(struct cat *c, int64_t scan, const char *out_dir,
                     int *attempts, struct ss_err *err)
{
    struct aset_ctx x = { scan, CAT_A_RUNNING, NULL, out_dir, 0 };
    int rc;

    rc = cat_tx(c, CAT_TX_IMMEDIATE, astart_tx, &x, err);
    if (rc == 0 && attempts != NULL)
        *attempts = x.attempts;
    return rc;
}

struct apid_ctx {
    int64_t scan, pid;
};

static int
apid_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct apid_ctx *x = ctx;

    if (cat_exec(c, "UPDATE analyses SET worker_pid = NULLIF(?, 0) WHERE "
                 "scan = ?", "ii", x->pid, x->scan) < 0)
        return cat__sql_err(c, c->last_rc, err, "recording worker pid");
    return 0;
}

int
cat_analysis_set_pid(struct cat *c, int64_t scan, int64_t pid,
                     struct ss_err *err)
{
    struct apid_ctx x = { scan, pid };

    return cat_tx(c, CAT_TX_IMMEDIATE, apid_tx, &x, err);
}

struct arec_ctx {
    int64_t scan;
    const char *text;
    double v[6];
    bool have[6];
    const char *overlay;
};

static const char *const result_keys[6] = {
    "tumor_area_mm2", "stroma_area_mm2", "tissue_area_mm2",
    "tumor_stroma_ratio", "ki67_index", "ck_positive_area_mm2",
};

/* The areas (keys 0..2) are required numbers; the ratio, the KI67 index
 * and the CK area are numbers or null (undefined: no stroma, not a KI67
 * or CK slide). */
static int
read_results(json_t *root, struct arec_ctx *x, struct ss_err *err)
{
    json_t *v;
    int i;

    v = json_object_get(root, "version");
    if (!json_is_integer(v) || json_integer_value(v) != 1)
        return err_set(err, SS_EFORMAT, "results.json: version: must be 1");
    for (i = 0; i < 6; i++) {
        v = json_object_get(root, result_keys[i]);
        if (json_is_number(v)) {
            x->v[i] = json_number_value(v);
            x->have[i] = isfinite(x->v[i]);
        } else if (!(i >= 3 && (v == NULL || json_is_null(v)))) {
            return err_set(err, SS_EFORMAT, "results.json: %s: %s",
                           result_keys[i], v == NULL ? "missing"
                                                     : "must be a number");
        }
    }
    x->overlay = json_string_value(json_object_get(
        json_object_get(root, "files"), "overlay"));
    return 0;
}

static int
arec_tx(struct cat *c, void *ctx, struct ss_err *err)
{
    struct arec_ctx *x = ctx;
    char now[CAT_TIME_MAX];
    int rc, i;

    cat__now(now);
    rc = cat_exec(c, "UPDATE analyses SET state = 'done', results = ?, "
                  "overlay_path = ?, finished = ?, reason = '' WHERE "
                  "scan = ?", "sssi", x->text, x->overlay, now, x->scan);
    for (i = 0; i < 6 && rc == 0; i++) {
        static const char *const cols[6] = {
            "tumor_area_mm2", "stroma_area_mm2", "tissue_area_mm2",
            "tumor_stroma_ratio", "ki67_index", "ck_area_mm2",
        };
        char sql[128];
        snprintf(sql, sizeof(sql), "UPDATE analyses SET %s = ? WHERE "
                 "scan = ?", cols[i]);
        if (x->have[i])
            rc = cat_exec(c, sql, "di", x->v[i], x->scan);
        else
            rc = cat_exec(c, sql, "si", (const char *)NULL, x->scan);
    }
    if (rc < 0)
        return cat__sql_err(c, c->last_rc, err, "recording analysis");
    return 0;
}

int
cat_analysis_record(struct cat *c, int64_t scan, const char *json_text,
                    struct ss_err *err)
{
    struct arec_ctx x;
    json_error_t je;
    json_t *root;
    int rc;

    memset(&x, 0, sizeof(x));
    x.scan = scan;
    x.text = json_text;
    root = json_loads(json_text, 0, &je);
    if (root == NULL)
        return err_set(err, SS_EFORMAT, "results.json: not JSON: %s at "
                       "line %d", je.text, je.line);
    rc = read_results(root, &x, err);
    if (rc == 0)
        rc = cat_tx(c, CAT_TX_IMMEDIATE, arec_tx, &x, err);
    json_decref(root);
    return rc;
}
