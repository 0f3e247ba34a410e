/* SPDX-License-Identifier: MIT */
/* slidescan watch: stream the daemon's events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan watch [--count N]\n"
    "Prints every event (scan states, tile progress, analysis) as it\n"
    "happens, one line each, until interrupted or N events were printed.\n"
    "With --json each line is the event's JSON (protocol/PROTOCOL.md).\n"
    "  --count N       stop after N events\n";

static const struct option opts[] = {
    { "count", required_argument, NULL, 'n' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

static void
print_event(json_t *ev)
{
    const char *name = client__str(ev, "event");
    char stamp[16];
    time_t t = time(NULL);
    struct tm tm;

    localtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
    if (strcmp(name, "progress") == 0)
        printf("%s scan %s %s tile %s: %s/%s tiles\n", stamp,
               client__str(ev, "scan"), client__str(ev, "slide"),
               client__str(ev, "tile"), client__str(ev, "tiles_done"),
               client__str(ev, "tiles_total"));
    else if (strcmp(name, "dropped") == 0)
        printf("%s (%s progress events dropped: this watcher fell "
               "behind)\n", stamp, client__str(ev, "count"));
    else
        printf("%s %s %s %s %s%s%s\n", stamp, name, client__str(ev, "scan"),
               client__str(ev, "slide"), client__str(ev, "state"),
               json_object_get(ev, "reason") ? ": " : "",
               json_object_get(ev, "reason") ? client__str(ev, "reason")
                                             : "");
}

int
cmd_watch(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "watch", usage };
    struct client_conn *c = NULL;
    json_t *res = NULL, *ev;
    long count = -1, n = 0;
    char msg[256], *end;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'n') {
            count = strtol(optarg, &end, 10);
            if (*end != '\0' || count < 1)
                return client__fail(&co, EXIT_USAGE, "--count: '%s' is not "
                                    "a positive number", optarg);
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
            print_event(ev);
        }
        fflush(stdout);
        json_decref(ev);
        n++;
    }
    client_conn_close(c);
    return rc;
}
