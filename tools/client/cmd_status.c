/* SPDX-License-Identifier: MIT */
/* slidescan status: what the scanner is doing, live on a terminal. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan status [--follow | --once]\n"
    "Shows what slidescand is doing: the scan on the microscope with its\n"
    "tiles, elapsed time and ETA, assembly, analysis, the queue and why it\n"
    "waits.  On a terminal a running scan is followed with a live progress\n"
    "bar until it ends; otherwise the status is printed once.\n"
    "  --follow        follow the running scan even when not a terminal\n"
    "                  (one plain line per tile)\n"
    "  --once          print the status once and exit\n";

static const struct option opts[] = {
    { "follow", no_argument, NULL, 'f' },
    { "once", no_argument, NULL, '1' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

static void
print_status(json_t *st)
{
    json_t *s = json_object_get(st, "scan");
    json_t *a = json_object_get(st, "analysing");
    char el[32], eta[32];
    double elapsed, rate;
    int done, total;

    printf("slidescand: %s (%s microscope)\n", client__str(st, "state"),
           client__str(st, "driver"));
    if (json_is_object(s)) {
        done = (int)json_integer_value(json_object_get(s, "tiles_done"));
        total = (int)json_integer_value(json_object_get(s, "tiles_total"));
        elapsed = json_number_value(json_object_get(s, "elapsed_s"));
        rate = done > 0 ? elapsed / done : 0;
        client__duration(elapsed, el, sizeof(el));
        if (rate > 0)
            client__duration(rate * (total - done), eta, sizeof(eta));
        else
            snprintf(eta, sizeof(eta), "-");
        printf("scan %s: slide %s %s, %s, %d/%d tiles, elapsed %s, ETA %s "
               "(device time %.1f s)\n", client__str(s, "id"),
               client__str(s, "slide"), client__str(s, "stain"),
               client__str(s, "state"), done, total, el, eta,
               json_number_value(json_object_get(s, "virtual_s")));
        if (strcmp(client__str(s, "reason"), "") != 0 &&
            strcmp(client__str(s, "reason"), "-") != 0 &&
            strcmp(client__str(s, "reason"), client__str(st, "waiting")))
            printf("  %s\n", client__str(s, "reason"));
    }
    if (!json_is_null(json_object_get(st, "assembling")))
        printf("assembling: scan %s\n", client__str(st, "assembling"));
    if (json_is_object(a))
        printf("analysing: scan %s (%s/%s)\n", client__str(a, "scan"),
               client__str(a, "done"), client__str(a, "total"));
    printf("queued: %s\n", client__str(st, "queued"));
    if (strcmp(client__str(st, "waiting"), "") != 0)
        printf("waiting: %s\n", client__str(st, "waiting"));
}

int
cmd_status(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "status", usage };
    struct client_conn *c;
    json_t *res = NULL, *w = NULL;
    int follow = -1, o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'f')
            follow = 1;
        else if (o == '1')
            follow = 0;
        else if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    }
    if (co.help || optind != argc)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    if (follow < 0)
        follow = !co.json && isatty(STDOUT_FILENO);
    rc = client__connect(&co, &c);
    if (rc != EXIT_OK)
        return rc;
    rc = client__call(&co, c, follow ? "watch" : "status", NULL, &res);
    if (rc == EXIT_OK && follow)
        w = json_incref(json_object_get(res, "status"));
    else if (rc == EXIT_OK)
        w = json_incref(res);
    if (rc == EXIT_OK && co.json)
        client__print_json(w);
    else if (rc == EXIT_OK)
        print_status(w);
    if (rc == EXIT_OK && follow &&
        json_is_object(json_object_get(w, "scan")))
        rc = client__follow(&co, c, 0, false, w);
    json_decref(w);
    json_decref(res);
    client_conn_close(c);
    return rc;
}
