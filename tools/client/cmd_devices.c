/* SPDX-License-Identifier: MIT */
/* slidescan devices: the microscope the daemon drives. */
#include <stdio.h>
#include <string.h>

#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan devices\n"
    "Shows the microscope: driver, camera, stage, pixel size, travel, the\n"
    "device faults counted so far, and for hardware what is attached and\n"
    "what the configuration expects.\n";

static const struct option opts[] = {
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

/* "x MIN..MAX µm, y ..., z ..." from stage_limits_um. */
static void
print_travel(json_t *r)
{
    json_t *lim = json_object_get(r, "stage_limits_um");
    json_t *lo = json_object_get(lim, "min"), *hi = json_object_get(lim,
                                                                    "max");
    static const char axis[3] = { 'x', 'y', 'z' };
    size_t i;

    if (json_array_size(lo) != 3 || json_array_size(hi) != 3) {
        printf("travel:    not reported by the daemon\n");
        return;
    }
    printf("travel:   ");
    for (i = 0; i < 3; i++)
        printf(" %c %g..%g µm%s", axis[i],
               json_number_value(json_array_get(lo, i)),
               json_number_value(json_array_get(hi, i)), i < 2 ? "," : "\n");
}

static void
print_devices(json_t *r)
{
    json_t *f = json_object_get(r, "faults"), *hw, *p;
    json_t *c = json_object_get(r, "configured");
    bool open = json_is_true(json_object_get(r, "open"));
    size_t i;

    printf("driver:    %s (%s)\n", client__str(r, "driver"),
           open ? "open" : "not open yet");
    if (open) {
        printf("camera:    %s, %sx%s px, %s µm/px, objective %s\n",
               client__str(r, "camera"), client__str(r, "frame_w"),
               client__str(r, "frame_h"), client__str(r, "pixel_um"),
               client__str(r, "objective"));
        printf("stage:     %s\n", client__str(r, "stage"));
        print_travel(r);
    } else {
        printf("camera:    not opened yet (the first scan or calibration "
               "opens it); configured: %s, ", client__str(c, "camera"));
        if (json_integer_value(json_object_get(c, "frame_w")) > 0)
            printf("%sx%s px, ", client__str(c, "frame_w"),
                   client__str(c, "frame_h"));
        if (json_number_value(json_object_get(c, "pixel_um")) > 0)
            printf("%s µm/px, ", client__str(c, "pixel_um"));
        printf("objective %s\n", client__str(c, "objective"));
        printf("stage:     not opened yet; configured: %s\n",
               client__str(c, "stage"));
        printf("travel:    known once the stage is opened\n");
    }
    if (strcmp(client__str(r, "slide"), "") != 0)
        printf("slide:     %s\n", client__str(r, "slide"));
    printf("faults:    %s busy retries, %s timeouts, %s resets, %s stuck\n",
           client__str(f, "busy_retries"), client__str(f, "timeouts"),
           client__str(f, "resets"), client__str(f, "stuck"));
    if (strcmp(client__str(r, "error"), "") != 0)
        printf("error:     %s\n", client__str(r, "error"));
    hw = json_object_get(r, "hardware");
    json_array_foreach(json_object_get(hw, "problems"), i, p)
        printf("problem:   %s\n", json_string_value(p));
    if (json_object_get(r, "hardware_error") != NULL)
        printf("problem:   %s\n", client__str(r, "hardware_error"));
}

int
cmd_devices(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "devices", usage };
    json_t *res = NULL;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help || optind != argc)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    rc = client__request(&co, "devices", NULL, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        print_devices(res);
    json_decref(res);
    return rc;
}
