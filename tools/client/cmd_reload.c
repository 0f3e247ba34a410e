/* SPDX-License-Identifier: MIT */
/* slidescan reload: re-read the daemon's configuration. */
#include <stdio.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan reload\n"
    "Makes slidescand re-read its configuration (like SIGHUP): profiles,\n"
    "log levels, scan, storage, deadline and analysis settings apply to\n"
    "the next scan; the answer names what needs a restart instead.\n";

static const struct option opts[] = {
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

int
cmd_reload(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "reload", usage };
    json_t *res = NULL;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help || optind != argc)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    rc = client__request(&co, "reload", NULL, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        printf("applied: %s\nneeds a restart: %s\n",
               client__str(res, "applied")[0] ? client__str(res, "applied")
                                              : "nothing changed",
               client__str(res, "needs_restart")[0]
               ? client__str(res, "needs_restart") : "nothing");
    json_decref(res);
    return rc;
}
