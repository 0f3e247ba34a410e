/* SPDX-License-Identifier: MIT */
/* slidescan move SCAN POSITION: reorder the queue. */
#include <stdio.h>
#include <stdlib.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan move SCAN POSITION\n"
    "Moves queued scan SCAN to POSITION (1 = next to run) in the queue; it\n"
    "takes the priority of the scans it lands between.\n";

static const struct option opts[] = {
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

int
cmd_move(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "move", usage };
    json_t *res = NULL, *s;
    int64_t id, pos;
    size_t i;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help || argc - optind != 2)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    if (!client__scan_id(argv[optind], &id) ||
        !client__scan_id(argv[optind + 1], &pos))
        return client__fail(&co, EXIT_USAGE, "SCAN and POSITION must be "
                            "positive numbers");
    rc = client__request(&co, "move", json_pack("{s:I, s:I}", "scan",
                                                (json_int_t)id, "position",
                                                (json_int_t)pos), &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        json_array_foreach(json_object_get(res, "scans"), i, s)
            if (json_object_get(s, "position") != NULL)
                printf("%3s. scan %s %s (priority %s)\n",
                       client__str(s, "position"), client__str(s, "id"),
                       client__str(s, "slide"), client__str(s, "priority"));
    json_decref(res);
    return rc;
}
