/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per event, "category: event key=value", on stderr.
 *
 *   error   an operator must act
 *   warn    degraded but continuing
 *   notice  state changes (scan started, device attached)
 *   info    per-slide summaries
 *   debug   per tile or command; off unless its category is switched on
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with the journal's
 * "<N>" priority prefix and carries no timestamp; otherwise lines start
 * with a local timestamp and the level name.  Debug categories come from
 * SLIDESCAN_DEBUG ("sim,stage" or "all") or from log_debug_enable().
 * Safe to call from any thread.
 */
#ifndef SS_COMMON_LOG_H
#define SS_COMMON_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LVL_ERROR = 3,              /* values are syslog priorities */
    LOG_LVL_WARN = 4,
    LOG_LVL_NOTICE = 5,
    LOG_LVL_INFO = 6,
    LOG_LVL_DEBUG = 7,
};

void log_msg(enum log_level lvl, const char *cat, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds categories (comma-separated, "all" for every one) to debug output. */
void log_debug_enable(const char *cats);

/* True when debug lines of this category would be printed. */
bool log_debug_on(const char *cat);

/* Messages below this level are dropped (default LOG_LVL_INFO). */
void log_set_level(enum log_level max);

#define log_error(cat, ...)  log_msg(LOG_LVL_ERROR, cat, __VA_ARGS__)
#define log_warn(cat, ...)   log_msg(LOG_LVL_WARN, cat, __VA_ARGS__)
#define log_notice(cat, ...) log_msg(LOG_LVL_NOTICE, cat, __VA_ARGS__)
#define log_info(cat, ...)   log_msg(LOG_LVL_INFO, cat, __VA_ARGS__)
#define log_debug(cat, ...) \
    do { \
        if (log_debug_on(cat)) \
            log_msg(LOG_LVL_DEBUG, cat, __VA_ARGS__); \
    } while (0)

#endif
