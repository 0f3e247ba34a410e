/* SPDX-License-Identifier: MIT */
/* Journal-friendly line logging with per-category debug switches. */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static char debug_cats[512];
static int max_level = LOG_LVL_INFO;
static bool to_journal;

static void
log_setup(void)
{
    const char *env = getenv("SLIDESCAN_DEBUG");

    to_journal = getenv("JOURNAL_STREAM") != NULL;
    if (env != NULL && *env != '\0')
        snprintf(debug_cats, sizeof(debug_cats), ",%s,", env);
}

void
log_debug_enable(const char *cats)
{
    size_t n;

    pthread_once(&log_once, log_setup);
    pthread_mutex_lock(&log_lock);
    n = strlen(debug_cats);
    if (n == 0)
        snprintf(debug_cats, sizeof(debug_cats), ",%s,", cats);
    else
        snprintf(debug_cats + n, sizeof(debug_cats) - n, "%s,", cats);
    pthread_mutex_unlock(&log_lock);
}

bool
log_debug_on(const char *cat)
{
    char key[64];

    pthread_once(&log_once, log_setup);
    if (debug_cats[0] == '\0')
        return false;
    if (strstr(debug_cats, ",all,") != NULL)
        return true;
    snprintf(key, sizeof(key), ",%s,", cat);
    return strstr(debug_cats, key) != NULL;
}

void
log_set_level(enum log_level max)
{
    pthread_once(&log_once, log_setup);
    max_level = max;
}

static const char *
level_name(enum log_level lvl)
{
    switch (lvl) {
    case LOG_LVL_ERROR: return "error";
    case LOG_LVL_WARN: return "warn";
    case LOG_LVL_NOTICE: return "notice";
    case LOG_LVL_INFO: return "info";
    default: return "debug";
    }
}

void
log_msg(enum log_level lvl, const char *cat, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    struct timespec ts;
    struct tm tm;
    char stamp[32];

    pthread_once(&log_once, log_setup);
    if ((int)lvl > max_level && lvl != LOG_LVL_DEBUG)
        return;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    flockfile(stderr);
    if (to_journal) {
        fprintf(stderr, "<%d>%s: %s\n", (int)lvl, cat, line);
    } else {
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ld %-6s %s: %s\n", stamp,
                ts.tv_nsec / 1000000, level_name(lvl), cat, line);
    }
    fflush(stderr);
    funlockfile(stderr);
}
