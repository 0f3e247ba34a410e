/* SPDX-License-Identifier: MIT */
/* slidescan show SLIDE: one slide, its scans, image and analysis. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "scan/acquire.h"
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan show SLIDE [--tiles]\n"
    "Shows one slide: its whole-slide image (path, size, µm per pixel,\n"
    "SHA-256), every scan with its times, calibration, focus map,\n"
    "stitching, warnings, the device retries, the tiles flagged blurred,\n"
    "dark, saturated, focus-guessed (z predicted because no focus was\n"
    "found at the tile), retried (busy retries, missed deadlines,\n"
    "resets, attempts) or failed, and the analysis with its numbers and\n"
    "files (the KI67 index on tumour and on all tissue, with a warning\n"
    "when they are over 10 points apart); an analysis that failed or\n"
    "runs again shows the last good one's, which stay until one\n"
    "succeeds.\n"
    "  --tiles         list every tile, not only the flagged ones\n";

static const struct option opts[] = {
    { "tiles", no_argument, NULL, 't' },
    CLIENT_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

static void
flag_text(json_int_t flags, char *buf, size_t len)
{
    static const struct { int bit; const char *name; } names[] = {
        { ACQ_TILE_SATURATED, "saturated" }, { ACQ_TILE_DARK, "dark" },
        { ACQ_TILE_BLURRED, "blurred" }, { ACQ_TILE_LOWCONF, "focus-guessed" },
    };
    size_t i, n = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (flags & names[i].bit)
            n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s",
                                  n ? "," : "", names[i].name);
}

static json_int_t
num(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* "2 attempts: 1 timeout, 1 reset", "-" for a tile taken at once. */
static void
retry_text(json_t *t, char *buf, size_t len)
{
    static const char *const keys[3] = { "busy_retries", "timeouts",
                                         "resets" };
    static const char *const one[3] = { "busy retry", "timeout", "reset" };
    static const char *const many[3] = { "busy retries", "timeouts",
                                         "resets" };
    char parts[96] = "";
    json_int_t a = num(t, "attempts"), v;
    size_t n = 0;
    int k;

    for (k = 0; k < 3; k++) {
        v = num(t, keys[k]);
        if (v > 0 && n < sizeof(parts))
            n += (size_t)snprintf(parts + n, sizeof(parts) - n, "%s%lld %s",
                                  n > 0 ? ", " : "", (long long)v,
                                  v == 1 ? one[k] : many[k]);
    }
    if (a > 1)
        snprintf(buf, len, "%lld attempts%s%s", (long long)a,
                 n > 0 ? ": " : "", parts);
    else
        snprintf(buf, len, "%s", n > 0 ? parts : "-");
}

static void
print_tiles(json_t *tiles, bool all)
{
    char flags[96], retries[96];
    json_t *t;
    size_t i;

    if (json_array_size(tiles) == 0) {
        printf("  %s tiles: none\n", all ? "planned" : "flagged");
        return;
    }
    if (!all)
        printf("  flagged tiles (%zu): saturated, dark, blurred or "
               "focus-guessed, re-taken, retried or failed\n",
               json_array_size(tiles));
    printf("  %5s %4s %4s %-9s %9s %7s  %-32s %s\n", "TILE", "ROW", "COL",
           "STATE", "SHARPNESS", "RETAKES", "RETRIES", "FLAGS");
    json_array_foreach(tiles, i, t) {
        flag_text(num(t, "flags"), flags, sizeof(flags));
        retry_text(t, retries, sizeof(retries));
        /* A tile re-taken sharp, or retried after a device fault, keeps
         * no flag of its final frame: say why it is listed. */
        if (flags[0] == '\0')
            snprintf(flags, sizeof(flags), "%s",
                     num(t, "retakes") > 0 ? "re-taken sharp" :
                     strcmp(retries, "-") != 0 ? "device retry" : "-");
        printf("  %5s %4s %4s %-9s %9s %7s  %-32s %s\n",
               client__str(t, "idx"), client__str(t, "row"),
               client__str(t, "col"), client__str(t, "state"),
               client__str(t, "sharpness"), client__str(t, "retakes"),
               retries, flags);
    }
}

/* One line on the device faults the scan's tiles met, when they did. */
static void
print_retries(json_t *r)
{
    if (num(r, "tiles") == 0)
        return;
    printf("  device retries: %lld tile%s retried (%lld busy retries, %lld "
           "timeouts, %lld resets, %lld extra attempts)\n",
           (long long)num(r, "tiles"), num(r, "tiles") == 1 ? "" : "s",
           (long long)num(r, "busy_retries"), (long long)num(r, "timeouts"),
           (long long)num(r, "resets"), (long long)num(r, "extra_attempts"));
}

static double
num_or_nan(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The KI67 index with its scope and the other scope's index, from
 * results.json's "ki67" object; the catalogue's index alone when the
 * results carry none. */
static void
print_ki67(json_t *a)
{
    json_t *k = json_object_get(json_object_get(a, "results"), "ki67");
    bool tissue = strcmp(client__str(k, "scope"), "tissue") == 0;

    if (!json_is_object(k)) {
        if (json_is_number(json_object_get(a, "ki67_index")))
            printf("    KI67 index %s\n", client__str(a, "ki67_index"));
        return;
    }
    client__ki67_print("    ", num_or_nan(a, "ki67_index"), tissue,
                       num_or_nan(json_object_get(k, tissue ? "tumor"
                                                            : "tissue"),
                                  "index"), false);
}

static void
print_numbers(json_t *a, const char *dir)
{
    json_t *files, *v;
    const char *k;

    printf("    tumour %s mm², stroma %s mm², tissue %s mm², tumour-stroma "
           "ratio %s (tumour fraction of tumour+stroma), CK+ %s mm²\n",
           client__str(a, "tumor_area_mm2"),
           client__str(a, "stroma_area_mm2"),
           client__str(a, "tissue_area_mm2"),
           client__str(a, "tumor_stroma_ratio"),
           client__str(a, "ck_positive_area_mm2"));
    print_ki67(a);
    files = json_object_get(json_object_get(a, "results"), "files");
    json_object_foreach(files, k, v)
        printf("    %-15s %s/%s/%s\n", k, dir, client__str(a, "out_dir"),
               json_string_value(v) ? json_string_value(v) : "-");
}

/* The analysis state and its numbers.  An analysis that failed or runs
 * again keeps the results of the last one that succeeded, files and
 * numbers: they are shown under that heading. */
static void
print_analysis(json_t *a, const char *dir)
{
    bool done;

    if (!json_is_object(a)) {
        printf("  analysis: none\n");
        return;
    }
    done = strcmp(client__str(a, "state"), "done") == 0;
    printf("  analysis: %s%s%s\n", client__str(a, "state"),
           strcmp(client__str(a, "reason"), "") ? ": " : "",
           client__str(a, "reason"));
    if (!json_is_object(json_object_get(a, "results")))
        return;
    if (!done)
        printf("  previous analysis (kept until one succeeds):\n");
    print_numbers(a, dir);
}

/* The scan's region, and whether its image is that rectangle: images
 * are cut to the region since the assembly did so; one assembled before
 * still holds the whole frames around it, and `show` says which. */
static void
print_region(json_t *s)
{
    const char *region = client__str(s, "region");
    double r[4], mpp = json_number_value(json_object_get(s, "mpp"));
    json_t *w = json_object_get(s, "width"), *h = json_object_get(s, "height");
    const char *what = "the image and its analysis cover only this "
                       "rectangle";

    if (strcmp(region, "") == 0 || strcmp(region, "-") == 0)
        return;
    if (sscanf(region, "%lf,%lf,%lf,%lf", &r[0], &r[1], &r[2], &r[3]) == 4 &&
        json_is_integer(w) && json_is_integer(h) && mpp > 0 &&
        (fabs((double)json_integer_value(w) * mpp - r[2]) > 1.5 * mpp ||
         fabs((double)json_integer_value(h) * mpp - r[3]) > 1.5 * mpp))
        what = "the image, assembled before images were cut to their "
               "region, covers the whole frames around it";
    printf("  region %s µm (x, y, width, height on the stage; %s)\n",
           region, what);
}

static void
print_scan(json_t *s, const char *dir)
{
    static const char *const models[] = { "constant", "plane",
                                           "quadratic", "thin-plate" };
    json_int_t model = json_integer_value(json_object_get(s, "focus_model"));
    json_t *k = json_object_get(s, "calibration");

    json_int_t resumes = num(s, "resumes");
    const char *warn = client__str(s, "warnings");

    printf("scan %s: %s%s%s\n", client__str(s, "id"),
           client__str(s, "state"), strcmp(client__str(s, "reason"), "")
           ? ": " : "", client__str(s, "reason"));
    if (strcmp(warn, "") != 0 && strcmp(warn, "-") != 0)
        printf("  warning: %s\n", warn);
    printf("  tiles %s/%s, requested by uid %s, created %s",
           client__str(s, "tiles_done"), client__str(s, "tiles_total"),
           client__str(s, "requested_by"), client__str(s, "created"));
    if (json_is_string(json_object_get(s, "started")))
        printf(", started %s", client__str(s, "started"));
    if (json_is_string(json_object_get(s, "finished")))
        printf(", finished %s", client__str(s, "finished"));
    printf("\n  device time %.1f s, wall time %.1f s",
           json_number_value(json_object_get(s, "virtual_ms")) / 1000,
           json_number_value(json_object_get(s, "wall_ms")) / 1000);
    if (resumes == 1)
        printf(", resumed once");
    else if (resumes > 1)
        printf(", resumed %lld times", (long long)resumes);
    printf("\n");
    print_region(s);
    if (json_is_object(k))
        printf("  calibration %s: %s %s %s ms, taken %s\n",
               client__str(k, "id"), client__str(k, "stain"),
               client__str(k, "objective"), client__str(k, "exposure_ms"),
               client__str(k, "taken"));
    if (json_is_integer(json_object_get(s, "rows")))
        printf("  plan %sx%s cells, %s tiles\n", client__str(s, "rows"),
               client__str(s, "cols"), client__str(s, "tiles_total"));
    if (json_is_integer(json_object_get(s, "focus_model")))
        printf("  focus model %s over %zu points, rms %s µm\n",
               model >= 0 && model < 4 ? models[model] : "-",
               json_array_size(json_object_get(s, "focus_points")),
               client__str(s, "focus_rms_um"));
    if (strcmp(client__str(s, "wsi_path"), "-") != 0)
        printf("  image %s/%s\n  %sx%s px, %s µm/px, %s bytes, sha256 %s\n"
               "  stitching: %s of %s overlaps used, residual %s px\n", dir,
               client__str(s, "wsi_path"), client__str(s, "width"),
               client__str(s, "height"), client__str(s, "mpp"),
               client__str(s, "wsi_bytes"), client__str(s, "checksum"),
               client__str(s, "pairs_used"), client__str(s, "pairs_total"),
               client__str(s, "stitch_rms_px"));
    print_retries(json_object_get(s, "retries"));
    if (json_object_get(s, "tiles_flagged") != NULL)
        print_tiles(json_object_get(s, "tiles_flagged"), false);
    else
        print_tiles(json_object_get(s, "tiles"), true);
    print_analysis(json_object_get(s, "analysis"), dir);
}

int
cmd_show(int argc, char **argv)
{
    struct client__opts co = { NULL, false, false, "show", usage };
    json_t *res = NULL, *s;
    bool tiles = false;
    const char *dir;
    size_t i;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 't')
            tiles = true;
        else if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    }
    if (co.help || argc - optind != 1)
        return client__usage(&co, co.help ? EXIT_OK : EXIT_USAGE);
    rc = client__request(&co, "show", json_pack("{s:s, s:b}", "slide",
                                                argv[optind], "tiles",
                                                tiles), &res);
    if (rc == EXIT_OK && co.json) {
        client__print_json(res);
    } else if (rc == EXIT_OK) {
        dir = client__str(res, "data_dir");
        printf("slide %s (%s), created %s\n", client__str(res, "id"),
               client__str(res, "stain"), client__str(res, "created"));
        if (strcmp(client__str(res, "wsi_path"), "-") != 0)
            printf("current image %s/%s (scan %s)\n", dir,
                   client__str(res, "wsi_path"),
                   client__str(res, "wsi_scan"));
        json_array_foreach(json_object_get(res, "scans"), i, s)
            print_scan(s, dir);
    }
    json_decref(res);
    return rc;
}
