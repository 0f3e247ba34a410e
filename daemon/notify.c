/* SPDX-License-Identifier: MIT */
/*
 * systemd integration through sd_notify(): READY once the socket listens
 * and start-up recovery is done, STATUS on every change of what the
 * daemon is doing, RELOADING/READY around a SIGHUP, STOPPING at the end,
 * and WATCHDOG from a timer on the loop, so that a stuck loop stops the
 * pings and systemd restarts the service (the timer handle itself is
 * initialised with the loop, in daemon.c).  Without NOTIFY_SOCKET every
 * call is a no-op; errors of sd_notify() are ignored (logged at debug).
 */
#include "daemon/daemon.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

static void
notify(const char *state)
{
    int rc = sd_notify(0, state);

    if (rc < 0)
        log_debug("notify", "sd_notify failed rc=%d state=%s", rc, state);
}

static void
on_watchdog(uv_timer_t *t)
{
    notify("WATCHDOG=1");
}

void
daemon__notify_start(struct daemon *d)
{
    uint64_t usec = 0;
    uint64_t period_ms;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    period_ms = usec / 2000;
    if (period_ms == 0)
        period_ms = 1;
    uv_timer_start(&d->watchdog, on_watchdog, period_ms, period_ms);
    log_notice("notify", "watchdog period_ms=%llu",
               (unsigned long long)period_ms);
}

void
daemon__notify_ready(struct daemon *d)
{
    char msg[320];

    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", d->notify_status);
    notify(msg);
    notify("WATCHDOG=1");
}

void
daemon__notify_status(struct daemon *d, const char *status)
{
    char msg[320];

    if (strcmp(status, d->notify_status) == 0)
        return;
    snprintf(d->notify_status, sizeof(d->notify_status), "%s", status);
    snprintf(msg, sizeof(msg), "STATUS=%s", status);
    notify(msg);
}

void
daemon__notify_reloading(struct daemon *d)
{
    notify("RELOADING=1");
}

void
daemon__notify_stopping(struct daemon *d)
{
    notify("STOPPING=1");
}
