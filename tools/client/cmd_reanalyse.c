/* SPDX-License-Identifier: MIT */
/* slidescan reanalyse SCAN: run the worker on a finished scan again. */
#include <stdio.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan reanalyse SCAN\n"
    "Queues the analysis of done scan SCAN again (for example after a new\n"
    "model was configured); `slidescan show` reports the new numbers.\n";

int
cmd_reanalyse(int argc, char **argv)
{
    static const struct option opts[] = {
        CLIENT_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct client__opts co = { NULL, false, false, "reanalyse", usage };
    json_t *res = NULL;
    int64_t id = 0;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help)
        return client__usage(&co, EXIT_OK);
    if (argc - optind != 1)
        return client__fail(&co, EXIT_USAGE, "%s (see slidescan reanalyse "
                            "--help)", argc - optind == 0 ? "SCAN missing" :
                            "one SCAN only");
    if (!client__scan_id(argv[optind], &id))
        return client__fail(&co, EXIT_USAGE, "'%s' is not a scan number",
                            argv[optind]);
    /* The daemon's command is "analyse"; messages say "reanalyse", the
     * command the user typed. */
    rc = client__request(&co, "analyse",
                         json_pack("{s:I}", "scan", (json_int_t)id), &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        printf("scan %s: analysis %s\n", client__str(res, "scan"),
               client__str(res, "analysis"));
    json_decref(res);
    return rc;
}
