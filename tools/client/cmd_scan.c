/* SPDX-License-Identifier: MIT */
/* slidescan scan: queue a slide for scanning, optionally wait for it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/sim/sim.h"
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan scan --slide ID --stain HE|KI67|CK [--image SPEC]\n"
    "                      [--region X,Y,W,H] [--priority N] [--wait]\n"
    "Queues a scan of slide ID.  On the simulated microscope --image names\n"
    "the physical slide: an image file OpenSlide reads, FILE@MPP for a\n"
    "plain image, or phantom:HE|KI67|CK[:seed=N][:w_mm=W][:h_mm=H]; without\n"
    "it a built-in phantom of the stain is scanned.  A relative FILE is\n"
    "taken from the current directory.  When the scan is queued the\n"
    "daemon refuses a file that is missing or not a slide, a slide larger\n"
    "than the stage travel, a SPEC whose stain (phantom:STAIN, or\n"
    "FILE:stain=STAIN) is not --stain's, and a FILE@MPP more than 1 %\n"
    "off the pixel size the file states, unless the SPEC ends in\n"
    "FILE@MPP:force_mpp.  --region limits the\n"
    "scan to a rectangle of the stage in decimal micrometres (x, y,\n"
    "width, height; width and height at least 100 and at most the\n"
    "slide glass, [scan] glass_w_mm x glass_h_mm, 76 x 26 mm by\n"
    "default): the slide image is\n"
    "that rectangle, W/mpp x H/mpp pixels, cut from the frames that\n"
    "cover it, so the analysis measures only the region.  Tissue found\n"
    "beyond it is reported as a warning by `show`.\n"
    "Higher --priority (-100..100, default 0) runs first.  --wait follows\n"
    "the scan (and its analysis) and exits 0 only when both are done.\n";

static const struct option opts[] = {
    { "slide", required_argument, NULL, 's' },
    { "stain", required_argument, NULL, 't' },
    { "image", required_argument, NULL, 'i' },
    { "priority", required_argument, NULL, 'p' },
    { "region", required_argument, NULL, 'r' },
    { "wait", no_argument, NULL, 'w' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

static int
queue_and_wait(struct client__opts *co, json_t *args)
{
    struct client_conn *c;
    json_t *w = NULL, *res = NULL;
    json_int_t id;
    int rc;

    rc = client__connect(co, &c);
    if (rc != EXIT_OK) {
        json_decref(args);
        return rc;
    }
    rc = client__call(co, c, "watch", NULL, &w);
    if (rc == EXIT_OK)
        rc = client__call(co, c, "scan", args, &res);
    else
        json_decref(args);
    if (rc == EXIT_OK) {
        id = json_integer_value(json_object_get(res, "id"));
        if (!co->json)
            printf("queued scan %" JSON_INTEGER_FORMAT " (slide %s, %s) at "
                   "position %s\n", id, client__str(res, "slide"),
                   client__str(res, "stain"), client__str(res, "position"));
        rc = client__follow(co, c, id, true, json_object_get(w, "status"));
    }
    json_decref(w);
    json_decref(res);
    client_conn_close(c);
    return rc;
}

/* The image spec with its file made absolute (symbolic links resolved
 * when the file exists), "@MPP", ":stain=" and ":id=" kept: the daemon
 * opens the file from its own working directory.  A phantom, or an
 * absolute path, is sent as written.  NULL when out of memory. */
static char *
absolute_image(const char *image)
{
    size_t n = sim_slide_spec_file_len(image);
    char file[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX], *out = NULL;

    if (n == 0 || image[0] == '/' || n >= sizeof(file))
        return strdup(image);
    memcpy(file, image, n);
    file[n] = '\0';
    if (realpath(file, real) != NULL) {
        if (asprintf(&out, "%s%s", real, image + n) < 0)
            out = NULL;
    } else if (getcwd(cwd, sizeof(cwd)) != NULL) {
        if (asprintf(&out, "%s/%s", cwd, image) < 0)
            out = NULL;
    } else {
        out = strdup(image);
    }
    return out;
}

int
cmd_scan(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "scan", usage };
    const char *slide = NULL, *stain = NULL, *image = NULL, *region = NULL;
    bool wait = false;
    json_t *args, *res = NULL;
    long prio = 0;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 's': slide = optarg; break;
        case 't': stain = optarg; break;
        case 'i': image = optarg; break;
        case 'r': region = optarg; break;
        case 'w': wait = true; break;
        case 'p':
            rc = client__long_opt(&co, "--priority", optarg, -100, 100,
                                  &prio);
            if (rc != EXIT_OK)
                return rc;
            break;
        default:
            if (!client__common(o, &co))
                return client__usage(&co, EXIT_USAGE);
        }
    }
    if (co.help)
        return client__usage(&co, EXIT_OK);
    if (optind != argc)
        return client__fail(&co, EXIT_USAGE, "unexpected argument '%s' "
                            "(see slidescan scan --help)", argv[optind]);
    if (slide == NULL || stain == NULL)
        return client__fail(&co, EXIT_USAGE, "%s%s%s missing (see slidescan "
                            "scan --help)", slide == NULL ? "--slide ID" : "",
                            slide == NULL && stain == NULL ? " and " : "",
                            stain == NULL ? "--stain HE|KI67|CK" : "");
    args = json_pack("{s:s, s:s, s:I}", "slide", slide, "stain", stain,
                     "priority", (json_int_t)prio);
    if (image != NULL) {
        char *abs = absolute_image(image);

        if (abs == NULL) {
            json_decref(args);
            return client__fail(&co, EXIT_FAIL, "out of memory");
        }
        json_object_set_new(args, "image", json_string(abs));
        free(abs);
    }
    if (region != NULL)
        json_object_set_new(args, "region", json_string(region));
    if (wait)
        return queue_and_wait(&co, args);
    rc = client__request(&co, "scan", args, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK)
        printf("queued scan %s (slide %s, %s) at position %s\n",
               client__str(res, "id"), client__str(res, "slide"),
               client__str(res, "stain"), client__str(res, "position"));
    json_decref(res);
    return rc;
}
