/* SPDX-License-Identifier: MIT */
/* slidescan ping: is the daemon there, and who are we to it. */
#include <stdio.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan ping\n"
    "Asks slidescand for its version, pid and microscope driver; exit 0\n"
    "when it answers, 3 when it cannot be reached, 4 when it refuses us.\n";

static const struct option opts[] = {
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

int
cmd_ping(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "ping", usage };
    json_t *res = NULL;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help || optind != argc)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    rc = client__request(&co, "ping", NULL, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        printf("slidescand %s, pid %s, protocol %s, %s microscope; you are "
               "uid %s\n", client__str(res, "version"),
               client__str(res, "pid"), client__str(res, "protocol"),
               client__str(res, "driver"), client__str(res, "uid"));
    json_decref(res);
    return rc;
}
