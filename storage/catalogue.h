/* SPDX-License-Identifier: MIT */
/*
 * The catalogue: one SQLite database (WAL) recording every slide, scan,
 * planned and captured tile, focus point, calibration, analysis and every
 * action taken (the events table, an audit trail).  Each thread opens its
 * own connection with cat_open(); connections are not shared.
 *
 * Writes run as whole transactions through cat_tx(): BEGIN IMMEDIATE with
 * a busy timeout, and the whole transaction is retried (bounded, with
 * back-off) when SQLite answers SQLITE_BUSY or SQLITE_BUSY_SNAPSHOT, so a
 * reader holding a long read transaction (the worker, a backup) never
 * fails a scan.  The schema is versioned by PRAGMA user_version and
 * migrated forward at open.  Times are UTC ISO 8601 text with
 * milliseconds.
 *
 * Listings for the control protocol come back as jansson objects so the
 * daemon can hand them to clients unchanged.
 */
#ifndef SS_STORAGE_CATALOGUE_H
#define SS_STORAGE_CATALOGUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "scan/acquire.h"

/* Times are UTC ISO 8601 with milliseconds: "2026-12-04T15:51:02.123Z"
 * (so that events and scan starts order within a second). */
#define CAT_TIME_MAX 32

/* Schema version this code writes (PRAGMA user_version). */
#define CAT_SCHEMA_VERSION 4

/* The states a scan passes through.  A scan is done once its WSI is
 * recorded; its analysis has a state of its own (enum cat_astate). */
enum cat_state {
    CAT_QUEUED,
    CAT_CALIBRATING,
    CAT_PLANNING,
    CAT_FOCUSING,
    CAT_CAPTURING,
    CAT_ASSEMBLING,
    CAT_DONE,
    CAT_FAILED,
    CAT_PAUSED,
    CAT_CANCELLED,
    CAT_STATE_COUNT
};

#define CAT_BIT(s) (1u << (s))

/* States in which the scan thread owns the scan. */
#define CAT_ACTIVE_MASK \
    (CAT_BIT(CAT_CALIBRATING) | CAT_BIT(CAT_PLANNING) | \
     CAT_BIT(CAT_FOCUSING) | CAT_BIT(CAT_CAPTURING))

enum cat_astate { CAT_A_QUEUED, CAT_A_RUNNING, CAT_A_DONE, CAT_A_FAILED };

/* "queued", "capturing", ...; NULL for an out-of-range value. */
const char *cat_state_name(enum cat_state s);
/* The state named s, or -1. */
int cat_state_parse(const char *s);
const char *cat_astate_name(enum cat_astate s);

struct cat;

/* Opens (creating when absent) the catalogue at path, switches it to WAL
 * with foreign keys on, and migrates the schema to CAT_SCHEMA_VERSION.  A
 * database newer than this code is refused (SS_EFORMAT). */
int cat_open(const char *path, struct cat **out, struct ss_err *err);
void cat_close(struct cat *c);

/* Runs fn inside one write transaction; commits when fn returns 0, rolls
 * back otherwise.  On SQLITE_BUSY / SQLITE_BUSY_SNAPSHOT anywhere in the
 * transaction the whole transaction, fn included, is retried up to 12
 * times with back-off; fn must therefore have no effects outside the
 * database.  CAT_TX_DEFERRED starts with a read lock only (BEGIN DEFERRED),
 * which lets SQLite answer SQLITE_BUSY_SNAPSHOT when the transaction
 * later writes.  The writes that stop work (cat_scan_request(),
 * cat_scan_pause_for_space(), cat_scan_transition() to paused or
 * cancelled) that fail with SQLITE_FULL are run once more after the
 * catalogue's 1 MiB ballast file (PATH-ballast) is deleted; a commit made
 * with 16 MiB free makes the ballast again. */
enum { CAT_TX_IMMEDIATE = 0, CAT_TX_DEFERRED = 1 };
typedef int (*cat_tx_fn)(struct cat *c, void *ctx, struct ss_err *err);
int cat_tx(struct cat *c, int mode, cat_tx_fn fn, void *ctx,
           struct ss_err *err);

/* Attempts the last cat_tx() needed (1 when no retry happened). */
int cat_tx_attempts(const struct cat *c);

/* Executes SQL with '?' parameters described by fmt, one character per
 * parameter: 'i' int64_t, 'd' double, 's' const char * (NULL binds NULL).
 * For use inside cat_tx() callbacks and by tests. */
int cat_exec(struct cat *c, const char *sql, const char *fmt, ...);

/* Runs a query with one integer column; *out is the first row's value,
 * -ENOENT when there is no row. */
int cat_query_int(struct cat *c, int64_t *out, const char *sql,
                  const char *fmt, ...);

/* The raw SQLite handle, for tests and the backup code. */
struct sqlite3 *cat_db(struct cat *c);

/* ---- scans --------------------------------------------------------------- */

struct cat_scan {
    int64_t id;
    char slide[64];
    char stain[16];
    enum cat_state state;
    int priority;
    double queue_pos;
    int64_t requested_by;           /* uid */
    char reason[512];
    char image[4100];               /* simulator slide spec, "" for none */
    int64_t calib_id;               /* 0 until calibrated */
    int tiles_total, tiles_done;
    double virtual_ms, wall_ms;
    int resumes;
    char created[CAT_TIME_MAX], started[CAT_TIME_MAX];
    char finished[CAT_TIME_MAX];
    char wsi_path[4096];
    char region[128];               /* "X,Y,W,H" in stage µm, "" = the
                                       whole overview */
    char warnings[512];             /* "; "-separated, "" = none */
};

struct cat_scan_req {
    const char *slide;
    const char *stain;
    const char *image;              /* NULL or "" */
    int priority;
    int64_t uid;
};

/* Parses a scan region "X,Y,W,H" (stage µm; W and H positive) into
 * out[4].  -EINVAL with a message naming the text and the cause. */
int cat_region_parse(const char *text, double out[4], struct ss_err *err);

/* Adds the slide when new and a queued scan for it at the end of its
 * priority; -EEXIST when the slide exists with another stain, -EALREADY
 * when the slide already has a scan that is not finished. */
int cat_scan_add(struct cat *c, const struct cat_scan_req *r, int64_t *id,
                 struct ss_err *err);

int cat_scan_get(struct cat *c, int64_t id, struct cat_scan *out,
                 struct ss_err *err);

/* The queued scan to run next (highest priority, then queue position);
 * -ENOENT when none is queued. */
int cat_scan_next(struct cat *c, int64_t *id, struct ss_err *err);

/* Moves scan id to state `to` when its state is in from_mask (CAT_BIT()s);
 * reason NULL keeps the old one, "" clears it.  -ENOENT for no such scan,
 * -EALREADY (message naming the present state) when the state does not
 * allow it.  Sets started/finished as the states imply and releases a
 * queue hold (cat_scan_hold()). */
int cat_scan_transition(struct cat *c, int64_t id, unsigned from_mask,
                        enum cat_state to, const char *reason,
                        struct ss_err *err);

/* Pauses an active (or queued) scan on the microscope to wait for disk
 * space (reason says how much is missing), remembering the state it
 * left: a restart puts it back there (cat_scan_rewait_space()).  Any
 * other state change forgets it. */
int cat_scan_pause_for_space(struct cat *c, int64_t id, const char *reason,
                             struct ss_err *err);

/* At start-up, after cat_scan_apply_requests(): every scan paused for
 * space by cat_scan_pause_for_space() (no user asked for that pause)
 * goes back to the state it left, its reason cleared, so that it
 * resumes by itself with the tiles it has; ids (up to 64) and *n
 * receive the scans changed.  A scan paused by request stays paused. */
int cat_scan_rewait_space(struct cat *c, int64_t ids[64], int *n,
                          struct ss_err *err);

/* Pauses an active (or assembling) scan because of a fault (reason says
 * which) and marks it as holding the queue: no other scan starts until
 * it is resumed, requeued or cancelled. */
int cat_scan_hold(struct cat *c, int64_t id, const char *reason,
                  struct ss_err *err);

/* Records a request for the scan on the microscope ("pause", "cancel";
 * "" takes it back) before the daemon acknowledges it, so that a stop or
 * crash before the scan thread acts on it does not lose it.  A request
 * lapses when the scan is queued, assembling or finished. */
int cat_scan_request(struct cat *c, int64_t id, const char *request,
                     struct ss_err *err);

/* At start-up: every scan still on the microscope (or paused there for
 * space) with a recorded request becomes paused ("paused by request") or
 * cancelled, as asked; ids (up to 64) and *n receive the scans changed.
 * Requests on any other scan are dropped. */
int cat_scan_apply_requests(struct cat *c, int64_t ids[64], int *n,
                            struct ss_err *err);

/* The paused scan holding the queue and its reason; -ENOENT when none. */
int cat_queue_holder(struct cat *c, int64_t *id, char *reason, size_t len,
                     struct ss_err *err);

/* Limits a queued scan to a region of the slide, "X,Y,W,H" in stage µm
 * (checked with cat_region_parse(); "" = the whole overview). */
int cat_scan_set_region(struct cat *c, int64_t id, const char *region,
                        struct ss_err *err);

/* Sets the scan's reason without changing its state ("" clears it). */
int cat_scan_set_reason(struct cat *c, int64_t id, const char *reason,
                        struct ss_err *err);

/* Adds a warning to the scan's warnings (once: a warning it already has
 * is not repeated), e.g. "tissue continues beyond the scanned region". */
int cat_scan_add_warning(struct cat *c, int64_t id, const char *warning,
                         struct ss_err *err);

/* Puts queued scan id at 1-based position pos of the queue order (taking
 * the priority of the scan it lands beside). */
int cat_scan_move(struct cat *c, int64_t id, int pos, struct ss_err *err);

/* Records the profile and options used (JSON text) and the calibration. */
int cat_scan_set_profile(struct cat *c, int64_t id, const char *profile,
                         const char *options, int64_t calib_id,
                         struct ss_err *err);

/* Adds elapsed virtual (device) and wall time to the scan's totals: the
 * scan thread calls it after each step and at the end of a run, and
 * cat_tile_record() adds each tile's share, so a run cut short by a
 * crash loses at most the time since its last record. */
int cat_scan_add_time(struct cat *c, int64_t id, double virtual_ms,
                      double wall_ms, struct ss_err *err);

/* Counts one more resume of the scan after a restart. */
int cat_scan_count_resume(struct cat *c, int64_t id, struct ss_err *err);

/* Ids of scans in any state of mask, oldest first; *ids malloc()ed. */
int cat_scans_in(struct cat *c, unsigned mask, int64_t **ids, int *n,
                 struct ss_err *err);

/* ---- plan, focus points, tiles ------------------------------------------- */

/* Stores the plan (grid geometry and one 'planned' row per tile) and the
 * scan's tiles_total in one transaction; replaces a previous plan only
 * when no tile of it was captured (-EALREADY otherwise). */
int cat_plan_save(struct cat *c, int64_t scan, const struct acq_plan *p,
                  struct ss_err *err);

/* Loads the stored plan; -ENOENT when the scan has none.  Free with
 * cat_plan_free(). */
int cat_plan_load(struct cat *c, int64_t scan, struct acq_plan **out,
                  struct ss_err *err);
void cat_plan_free(struct acq_plan *p);

/* Stores the focus points and the fitted model of the focus map. */
int cat_focus_save(struct cat *c, int64_t scan,
                   const struct acq_focus_map *fm, struct ss_err *err);

/* Loads the stored points and model into a new map (points malloc()ed,
 * coefficients as stored); -ENOENT when none.  Free with
 * cat_focus_free(). */
int cat_focus_load(struct cat *c, int64_t scan, struct acq_focus_map **out,
                   struct ss_err *err);
void cat_focus_free(struct acq_focus_map *fm);

enum cat_tstate { CAT_T_PLANNED, CAT_T_CAPTURED, CAT_T_FAILED };

struct cat_tile_rec {
    double x_um, y_um, z_um;        /* reported by the stage */
    double z_pred_um;               /* focus map prediction */
    double sharpness;
    double quality;                 /* sharpness / expected */
    double sat_frac;                /* saturated tissue pixels */
    int retakes;                    /* re-takes for sharpness */
    int focus_captures;             /* frames taken to refocus */
    int busy_retries, timeouts, resets;     /* device retries (guard) */
    int attempts;                   /* captures of the tile after faults */
    int flags;                      /* ACQ_TILE_* */
    enum cat_tstate state;
    const char *file;               /* relative to the data dir */
    const char *checksum;           /* SHA-256 hex of the file */
    double virtual_ms, wall_ms;     /* device and wall time since the
                                       scan's previous record (this tile
                                       with its retries); stored with
                                       the tile and added to the scan */
};

/* Records one tile, advances the scan's tiles_done and adds the tile's
 * time to the scan's totals, in one transaction.  Recording a tile twice
 * counts it once in tiles_done (its time both times: it was spent). */
int cat_tile_record(struct cat *c, int64_t scan, int idx,
                    const struct cat_tile_rec *r, struct ss_err *err);

/* Returns a recorded tile to 'planned' (its file was lost or damaged) and
 * takes it off tiles_done, so it is captured again. */
int cat_tile_reset(struct cat *c, int64_t scan, int idx,
                   struct ss_err *err);

/* The state of every planned tile, by index; *states malloc()ed with
 * *n entries (the plan's tile count). */
int cat_tile_states(struct cat *c, int64_t scan, uint8_t **states, int *n,
                    struct ss_err *err);

/* A tile as stored, for assembly. */
struct cat_tile {
    int idx, row, col;
    double x_um, y_um;              /* planned */
    double rx_um, ry_um;            /* reported; planned when not taken */
    enum cat_tstate state;
    char checksum[65];
};

/* Every tile of the scan by index; *tiles malloc()ed, *n entries. */
int cat_tiles_load(struct cat *c, int64_t scan, struct cat_tile **tiles,
                   int *n, struct ss_err *err);

/* ---- calibrations -------------------------------------------------------- */

struct cat_calib {
    int64_t id;
    char stain[16];
    char objective[8];
    double exposure_ms;
    char dir[4096];                 /* relative to the data dir */
    char taken[24];
};

int cat_calib_add(struct cat *c, const struct cat_calib *k, int64_t *id,
                  struct ss_err *err);
/* The newest calibration for stain, objective and exposure; -ENOENT. */
int cat_calib_latest(struct cat *c, const char *stain, const char *objective,
                     double exposure_ms, struct cat_calib *out,
                     struct ss_err *err);
int cat_calib_get(struct cat *c, int64_t id, struct cat_calib *out,
                  struct ss_err *err);

/* ---- the slide image and its analysis ------------------------------------ */

struct cat_wsi {
    const char *path;               /* relative to the data dir */
    int64_t bytes;
    int width, height;
    double mpp;
    const char *sha256;
    double stitch_rms_px;
    int pairs_used, pairs_total;
};

/* Records the finished WSI on the scan and as the slide's current image,
 * and marks the scan done, in one transaction. */
int cat_scan_wsi(struct cat *c, int64_t scan, const struct cat_wsi *w,
                 struct ss_err *err);

/* Queues (or re-queues) the analysis of a done scan. */
int cat_analysis_queue(struct cat *c, int64_t scan, struct ss_err *err);
/* The oldest queued analysis; -ENOENT when none. */
int cat_analysis_next(struct cat *c, int64_t *scan, struct ss_err *err);
int cat_analysis_set(struct cat *c, int64_t scan, enum cat_astate s,
                     const char *reason, struct ss_err *err);
/* Counts one more worker start; *attempts is the new count. */
int cat_analysis_started(struct cat *c, int64_t scan, const char *out_dir,
                         int *attempts, struct ss_err *err);
/* Records the pid of the worker process analysing scan (0 when none), so
 * that a daemon restarted after a crash can end a worker left behind. */
int cat_analysis_set_pid(struct cat *c, int64_t scan, int64_t pid,
                         struct ss_err *err);

/* Stores the worker's results.json text (version 1) and its numbers, and
 * marks the analysis done.  SS_EFORMAT names a missing or mistyped key. */
int cat_analysis_record(struct cat *c, int64_t scan, const char *json_text,
                        struct ss_err *err);

/* ---- audit trail --------------------------------------------------------- */

/* Appends an event (uid -1 for the daemon itself, scan 0 for none). */
int cat_event(struct cat *c, int64_t uid, const char *action, int64_t scan,
              const char *detail, struct ss_err *err);

/* ---- listings for the protocol ------------------------------------------- */

/* One scan as an object (id, slide, stain, state, priority, reason, tiles,
 * times, wsi, analysis state). */
int cat_scan_json(struct cat *c, int64_t id, json_t **out,
                  struct ss_err *err);
/* {"scans":[...]}: unfinished scans in run order, then, with all, the
 * finished ones newest first; at most limit. */
int cat_queue_json(struct cat *c, bool all, int limit, json_t **out,
                   struct ss_err *err);
/* {"slides":[...]}: slides newest first with their current image. */
int cat_slides_json(struct cat *c, int limit, json_t **out,
                    struct ss_err *err);
/* One slide: its fields, every scan with flagged tiles (blurred, dark,
 * saturated, focus-guessed, failed; all tiles when all_tiles), the focus
 * map, the calibration, and the analysis with its numbers and files. */
int cat_slide_show_json(struct cat *c, const char *slide, bool all_tiles,
                        json_t **out, struct ss_err *err);

#endif
