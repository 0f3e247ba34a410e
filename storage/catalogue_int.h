/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the catalogue's source files (catalogue.c,
 * catalogue_tiles.c, catalogue_json.c); nothing outside storage/catalogue*
 * includes this.
 */
#ifndef SS_STORAGE_CATALOGUE_INT_H
#define SS_STORAGE_CATALOGUE_INT_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>

#include "storage/catalogue.h"

/* How long one statement waits for a lock before SQLITE_BUSY, and how
 * many times cat_tx() runs a whole transaction before giving up. */
#define CAT_BUSY_TIMEOUT_MS 5000
#define CAT_TX_ATTEMPTS 12

struct cat {
    sqlite3 *db;
    char path[4096];
    int last_rc;                    /* last SQLite result, for retries */
    int attempts;                   /* of the last cat_tx() */
    /* A transaction that stops work (a pause or cancel and its record)
     * may use the ballast file when the disk is full (cat_tx()). */
    bool critical;
    double ballast_checked_s;       /* monotonic, of the last re-create */
};

/* Sets err from SQLite's message for rc ("catalogue PATH: WHAT: cause"),
 * remembers rc for cat_tx()'s retry decision; returns the code. */
int cat__sql_err(struct cat *c, int rc, struct ss_err *err,
                 const char *what);

/* Prepares sql and binds parameters as cat_exec() does; returns an SQLite
 * result code. */
int cat__prepare(struct cat *c, sqlite3_stmt **st, const char *sql,
                 const char *fmt, ...);

int cat__prepare_v(struct cat *c, sqlite3_stmt **st, const char *sql,
                   const char *fmt, va_list ap);

/* UTC now as ISO 8601 with milliseconds, "2026-12-04T15:51:02.123Z". */
void cat__now(char buf[CAT_TIME_MAX]);

#endif
