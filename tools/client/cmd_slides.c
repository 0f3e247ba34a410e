/* SPDX-License-Identifier: MIT */
/* slidescan slides: every slide with its current image. */
#include <stdio.h>
#include <stdlib.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan slides [--limit N]\n"
    "Lists slides, newest first: stain, scans, state of the last scan,\n"
    "the current whole-slide image with its size and µm per pixel, and\n"
    "the state of its analysis.\n"
    "  --limit N       at most N slides (default 1000)\n";

static const struct option opts[] = {
    { "limit", required_argument, NULL, 'l' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

int
cmd_slides(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "slides", usage };
    json_t *args = json_object(), *res = NULL, *s;
    char size[48];
    size_t i;
    long n;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'l') {
            if (client__long_opt(&co, "--limit", optarg, 1, 100000, &n) !=
                EXIT_OK) {
                json_decref(args);
                return EXIT_USAGE;
            }
            json_object_set_new(args, "limit", json_integer(n));
        } else if (!client__common(o, &co)) {
            json_decref(args);
            return client__usage(&co, EXIT_USAGE);
        }
    }
    if (co.help || optind != argc) {
        json_decref(args);
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    }
    rc = client__request(&co, "slides", args, &res);
    if (rc == EXIT_OK && co.json) {
        client__print_json(res);
    } else if (rc == EXIT_OK) {
        printf("%-20s %-5s %5s %-10s %-11s %6s %-9s %s\n", "SLIDE", "STAIN",
               "SCANS", "LAST", "SIZE", "MPP", "ANALYSIS", "IMAGE");
        json_array_foreach(json_object_get(res, "slides"), i, s) {
            snprintf(size, sizeof(size), "%sx%s", client__str(s, "width"),
                     client__str(s, "height"));
            printf("%-20s %-5s %5s %-10s %-11s %6s %-9s %s\n",
                   client__str(s, "id"), client__str(s, "stain"),
                   client__str(s, "scans"), client__str(s, "last_state"),
                   size, client__str(s, "mpp"), client__str(s, "analysis"),
                   client__str(s, "wsi_path"));
        }
    }
    json_decref(res);
    return rc;
}
