/* SPDX-License-Identifier: MIT */
/* slidescan watch: stream the daemon's events. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan watch [--count N]\n"
    "Prints every event (scan states, tile progress, analysis progress as\n"
    "DONE/TOTAL) as it happens, one line each, until interrupted or N\n"
    "events arrived.  An event whose line would repeat the previous one\n"
    "exactly is not printed again.  With --json each line is the event's\n"
    "JSON (protocol/PROTOCOL.md), every one of them.\n"
    "  --count N       stop after N events\n";

static const struct option opts[] = {
    { "count", required_argument, NULL, 'n' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

/* The text of one event, without its time stamp. */
static void
format_event(json_t *ev, char *buf, size_t len)
{
    const char *name = client__str(ev, "event");
    json_t *reason = json_object_get(ev, "reason");

    if (strcmp(name, "progress") == 0)
        snprintf(buf, len, "scan %s %s tile %s: %s/%s tiles",
                 client__str(ev, "scan"), client__str(ev, "slide"),
                 client__str(ev, "tile"), client__str(ev, "tiles_done"),
                 client__str(ev, "tiles_total"));
    else if (strcmp(name, "dropped") == 0)
        snprintf(buf, len, "(%s progress events dropped: this watcher fell "
                 "behind)", client__str(ev, "count"));
    else if (strcmp(name, "analysis") == 0 &&
             json_object_get(ev, "total") != NULL)
        snprintf(buf, len, "analysis %s %s %s %s/%s",
                 client__str(ev, "scan"), client__str(ev, "slide"),
                 client__str(ev, "state"), client__str(ev, "done"),
                 client__str(ev, "total"));
    else
        snprintf(buf, len, "%s %s %s %s%s%s", name, client__str(ev, "scan"),
                 client__str(ev, "slide"), client__str(ev, "state"),
                 reason != NULL ? ": " : "",
                 reason != NULL ? client__str(ev, "reason") : "");
}

/* Prints ev after a time stamp, unless its text is the previous line's
 * (last, updated): a line says something new or is not printed. */
static void
print_event(json_t *ev, char *last, size_t len)
{
    char text[1024], stamp[16];
    time_t t = time(NULL);
    struct tm tm;

    format_event(ev, text, sizeof(text));
    if (strcmp(text, last) == 0)
        return;
    snprintf(last, len, "%s", text);
    localtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
    printf("%s %s\n", stamp, text);
}

int
cmd_watch(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "watch", usage };
    struct client_conn *c = NULL;
    json_t *res = NULL, *ev;
    long count = -1, n = 0;
    char msg[256], last[1024] = "";
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'n') {
            rc = client__long_opt(&co, "--count", optarg, 1, LONG_MAX,
                                  &count);
            if (rc != EXIT_OK)
                return rc;
        } else if (!client__common(o, &co)) {
            return client__usage(&co, EXIT_USAGE);
        }
    }
    if (co.help || optind != argc)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    rc = client__connect(&co, &c);
    if (rc == EXIT_OK)
        rc = client__call(&co, c, "watch", NULL, &res);
    json_decref(res);
    while (rc == EXIT_OK && (count < 0 || n < count)) {
        rc = client_conn_event(c, -1, &ev, msg, sizeof(msg));
        if (rc != EXIT_OK) {
            rc = client__fail(&co, EXIT_NODAEMON, "%s", msg);
            break;
        }
        if (co.json) {
            json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
        } else {
            print_event(ev, last, sizeof(last));
        }
        fflush(stdout);
        json_decref(ev);
        n++;
    }
    client_conn_close(c);
    return rc;
}
