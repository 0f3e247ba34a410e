/* SPDX-License-Identifier: MIT */
/* slidescan calibrate --stain S: new dark and flat frames now. */
#include <stdio.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan calibrate --stain HE|KI67|CK\n"
    "Takes new dark and blank-field frames for the stain's profile on the\n"
    "idle microscope; later scans of that stain use them until they are\n"
    "older than [scan] calib_max_age_h.\n";

static const struct option opts[] = {
    { "stain", required_argument, NULL, 't' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

int
cmd_calibrate(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "calibrate", usage };
    const char *stain = NULL;
    json_t *res = NULL;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 't')
            stain = optarg;
        else if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    }
    if (co.help)
        return client__usage(&co, EXIT_OK);
    if (optind != argc)
        return client__fail(&co, EXIT_USAGE, "unexpected argument '%s' (see "
                            "slidescan calibrate --help)", argv[optind]);
    if (stain == NULL)
        return client__fail(&co, EXIT_USAGE, "--stain HE|KI67|CK missing "
                            "(see slidescan calibrate --help)");
    rc = client__request(&co, "calibrate", json_pack("{s:s}", "stain",
                                                     stain), &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        printf("calibration %s: %s %s at %s ms, %s frames, dark by %s, "
               "vignetting fall-off %s, taken %s\n", client__str(res, "id"),
               client__str(res, "stain"), client__str(res, "objective"),
               client__str(res, "exposure_ms"), client__str(res, "frames"),
               client__str(res, "dark_method"), client__str(res, "falloff"),
               client__str(res, "taken"));
    json_decref(res);
    return rc;
}
