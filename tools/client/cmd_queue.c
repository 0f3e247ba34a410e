/* SPDX-License-Identifier: MIT */
/* slidescan queue: the scans waiting or running, in run order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan queue [--all] [--limit N]\n"
    "Lists unfinished scans in the order they run (running first, then\n"
    "queued by priority and position, then paused); --all adds finished\n"
    "scans, newest first.\n"
    "  --all           include done, failed and cancelled scans\n"
    "  --limit N       at most N scans (default 1000)\n";

static const struct option opts[] = {
    { "all", no_argument, NULL, 'a' },
    { "limit", required_argument, NULL, 'l' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

static void
print_scans(json_t *scans)
{
    json_t *s;
    size_t i;

    printf("%5s  %-20s %-5s %-12s %4s %4s %11s  %s\n", "SCAN", "SLIDE",
           "STAIN", "STATE", "PRI", "POS", "TILES", "REASON");
    json_array_foreach(scans, i, s) {
        char tiles[32];
        snprintf(tiles, sizeof(tiles), "%s/%s", client__str(s, "tiles_done"),
                 client__str(s, "tiles_total"));
        printf("%5s  %-20s %-5s %-12s %4s %4s %11s  %s\n",
               client__str(s, "id"), client__str(s, "slide"),
               client__str(s, "stain"), client__str(s, "state"),
               client__str(s, "priority"), client__str(s, "position"), tiles,
               strcmp(client__str(s, "reason"), "-") ? client__str(s,
                                                                   "reason")
                                                     : "");
    }
}

int
cmd_queue(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "queue", usage };
    json_t *args = json_object(), *res = NULL;
    long n;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            json_object_set_new(args, "all", json_true());
            break;
        case 'l':
            if (client__long_opt(&co, "--limit", optarg, 1, 100000, &n) !=
                EXIT_OK) {
                json_decref(args);
                return EXIT_USAGE;
            }
            json_object_set_new(args, "limit", json_integer(n));
            break;
        default:
            if (!client__common(o, &co)) {
                json_decref(args);
                return client__usage(&co, EXIT_USAGE);
            }
        }
    }
    if (co.help || optind != argc) {
        json_decref(args);
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    }
    rc = client__request(&co, "queue", args, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        print_scans(json_object_get(res, "scans"));
    json_decref(res);
    return rc;
}
