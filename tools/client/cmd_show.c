/* SPDX-License-Identifier: MIT */
/* slidescan show SLIDE: one slide, its scans, image and analysis. */
#include <stdio.h>
#include <string.h>

#include "scan/acquire.h"
#include "tools/client/cli.h"

static const char usage[] =
    "usage: slidescan show SLIDE [--tiles]\n"
    "Shows one slide: its whole-slide image (path, size, µm per pixel,\n"
    "SHA-256), every scan with its times, calibration, focus map,\n"
    "stitching and the tiles flagged blurred, dark, saturated, retried or\n"
    "failed, and the analysis with its numbers and files.\n"
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

static void
print_tiles(json_t *tiles)
{
    char flags[96];
    json_t *t;
    size_t i;

    if (json_array_size(tiles) == 0) {
        printf("  flagged tiles: none\n");
        return;
    }
    printf("  %5s %4s %4s %-9s %9s %7s %7s  %s\n", "TILE", "ROW", "COL",
           "STATE", "SHARPNESS", "RETAKES", "RETRIES", "FLAGS");
    json_array_foreach(tiles, i, t) {
        flag_text(json_integer_value(json_object_get(t, "flags")), flags,
                  sizeof(flags));
        printf("  %5s %4s %4s %-9s %9s %7s %7s  %s\n", client__str(t, "idx"),
               client__str(t, "row"), client__str(t, "col"),
               client__str(t, "state"), client__str(t, "sharpness"),
               client__str(t, "retakes"), client__str(t, "busy_retries"),
               flags);
    }
}

static void
print_analysis(json_t *a, const char *dir)
{
    json_t *files, *v;
    const char *k;

    if (!json_is_object(a)) {
        printf("  analysis: none\n");
        return;
    }
    printf("  analysis: %s%s%s\n", client__str(a, "state"),
           strcmp(client__str(a, "reason"), "") ? ": " : "",
           client__str(a, "reason"));
    if (strcmp(client__str(a, "state"), "done") != 0)
        return;
    printf("    tumour %s mm², stroma %s mm², tissue %s mm², tumour-stroma "
           "ratio %s (tumour fraction of tumour+stroma), KI67 index %s, "
           "CK+ %s mm²\n",
           client__str(a, "tumor_area_mm2"),
           client__str(a, "stroma_area_mm2"),
           client__str(a, "tissue_area_mm2"),
           client__str(a, "tumor_stroma_ratio"),
           client__str(a, "ki67_index"),
           client__str(a, "ck_positive_area_mm2"));
    files = json_object_get(json_object_get(a, "results"), "files");
    json_object_foreach(files, k, v)
        printf("    %-15s %s/%s/%s\n", k, dir, client__str(a, "out_dir"),
               json_string_value(v) ? json_string_value(v) : "-");
}

static void
print_scan(json_t *s, const char *dir)
{
    static const char *const models[] = { "constant", "plane",
                                           "quadratic", "thin-plate" };
    json_int_t model = json_integer_value(json_object_get(s, "focus_model"));
    json_t *k = json_object_get(s, "calibration");

    printf("scan %s: %s%s%s\n", client__str(s, "id"),
           client__str(s, "state"), strcmp(client__str(s, "reason"), "")
           ? ": " : "", client__str(s, "reason"));
    printf("  tiles %s/%s, requested by uid %s, created %s, started %s, "
           "finished %s\n", client__str(s, "tiles_done"),
           client__str(s, "tiles_total"), client__str(s, "requested_by"),
           client__str(s, "created"), client__str(s, "started"),
           client__str(s, "finished"));
    printf("  device time %.1f s, wall time %.1f s, resumed %s times\n",
           json_number_value(json_object_get(s, "virtual_ms")) / 1000,
           json_number_value(json_object_get(s, "wall_ms")) / 1000,
           client__str(s, "resumes"));
    if (json_is_object(k))
        printf("  calibration %s: %s %s %s ms, taken %s\n",
               client__str(k, "id"), client__str(k, "stain"),
               client__str(k, "objective"), client__str(k, "exposure_ms"),
               client__str(k, "taken"));
    printf("  plan %sx%s cells, focus model %s over %zu points, rms %s µm\n",
           client__str(s, "rows"), client__str(s, "cols"),
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
    print_tiles(json_object_get(s, "tiles_flagged") != NULL
                ? json_object_get(s, "tiles_flagged")
                : json_object_get(s, "tiles"));
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
