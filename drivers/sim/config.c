/* SPDX-License-Identifier: MIT */
/*
 * The simulator's knobs: defaults and the [simulator] keys of
 * slidescan.conf.  The table below is the single list of keys; the
 * defaults are documented next to each field in sim.h.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void
sim_config_default(struct sim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    snprintf(c->slide, sizeof(c->slide), "phantom:HE");
    snprintf(c->stain, sizeof(c->stain), "HE");
    c->sensor_w = 2048;
    c->sensor_h = 1536;
    snprintf(c->objective, sizeof(c->objective), "20x");
    c->light_dn_per_ms[0] = 0.8;
    c->light_dn_per_ms[1] = 200.0 / 600.0;
    c->light_dn_per_ms[2] = 200.0 / 600.0;
    c->lamp_rgb[0] = c->lamp_rgb[1] = c->lamp_rgb[2] = 1.0;
    c->dark_dn = 16;
    c->dark_current_dn_s = 0.5;
    c->read_noise_dn = 1.2;
    c->e_per_dn = 40;
    c->noise_scale = 1;
    c->vignette_corner[0] = 0.74;
    c->vignette_corner[1] = 0.70;
    c->vignette_corner[2] = 0.65;
    c->readout_ms = 80;
    c->preview_binning = 2;
    c->preview_readout_ms = 15;
    c->psf_px = 0.45;
    c->focus_offset_um = 2.0;
    c->focus_tilt_x = 0.4;
    c->focus_tilt_y = -0.25;
    c->focus_bow_um = 3.0;
    c->margin_um = 1000;
    c->travel_x_um = 120000;
    c->travel_y_um = 80000;
    c->speed_um_s[0] = c->speed_um_s[1] = 10000;
    c->speed_um_s[2] = 1000;
    c->accel_um_s2[0] = c->accel_um_s2[1] = 100000;
    c->accel_um_s2[2] = 20000;
    c->backlash_um[0] = c->backlash_um[1] = 5;
    c->backlash_um[2] = 2;
    c->repeat_sigma_um[0] = c->repeat_sigma_um[1] = 0.5;
    c->repeat_sigma_um[2] = 0.1;
    c->overshoot_um[0] = c->overshoot_um[1] = 8;
    c->overshoot_um[2] = 1;
    c->settle_tau_ms = 10;
    c->settle_hz = 25;
    c->z_min_um = -500;
    c->z_max_um = 500;
    c->query_ms = 2;
    c->home_ms = 3000;
    c->overview_um_per_px = 10;
    c->overview_ms = 400;
    c->cache_mb = 256;
    c->render = 1;
    c->simd = 1;
}

enum kind { K_U64, K_INT, K_DBL, K_DBL3, K_STR, K_SIZE };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    size_t len;                     /* K_STR: buffer size */
    double lo, hi;                  /* accepted range */
};

#define F(field) offsetof(struct sim_config, field)
#define S(field) sizeof(((struct sim_config *)0)->field)

static const struct key keys[] = {
    { "seed", K_U64, F(seed), 0, 0, 0 },
    { "slide", K_STR, F(slide), S(slide), 0, 0 },
    { "slide_id", K_STR, F(slide_id), S(slide_id), 0, 0 },
    { "stain", K_STR, F(stain), S(stain), 0, 0 },
    { "sensor_w", K_INT, F(sensor_w), 0, 16, 16384 },
    { "sensor_h", K_INT, F(sensor_h), 0, 16, 16384 },
    { "objective", K_STR, F(objective), S(objective), 0, 0 },
    { "pixel_um", K_DBL, F(pixel_um), 0, 0, 100 },
    { "light_he", K_DBL, F(light_dn_per_ms[0]), 0, 0, 1e6 },
    { "light_ki67", K_DBL, F(light_dn_per_ms[1]), 0, 0, 1e6 },
    { "light_ck", K_DBL, F(light_dn_per_ms[2]), 0, 0, 1e6 },
    { "lamp_rgb", K_DBL3, F(lamp_rgb), 0, 0, 10 },
    { "dark_dn", K_DBL, F(dark_dn), 0, 0, 255 },
    { "dark_current_dn_s", K_DBL, F(dark_current_dn_s), 0, 0, 1000 },
    { "read_noise_dn", K_DBL, F(read_noise_dn), 0, 0, 100 },
    { "e_per_dn", K_DBL, F(e_per_dn), 0, 0.01, 1e6 },
    { "noise_scale", K_DBL, F(noise_scale), 0, 0, 100 },
    { "vignette_corner", K_DBL3, F(vignette_corner), 0, 0.05, 1.5 },
    { "readout_ms", K_DBL, F(readout_ms), 0, 0, 1e6 },
    { "preview_binning", K_INT, F(preview_binning), 0, 1, 16 },
    { "preview_readout_ms", K_DBL, F(preview_readout_ms), 0, 0, 1e6 },
    { "dof_um", K_DBL, F(dof_um), 0, 0, 1000 },
    { "psf_px", K_DBL, F(psf_px), 0, 0, 20 },
    { "focus_offset_um", K_DBL, F(focus_offset_um), 0, -400, 400 },
    { "focus_tilt_x", K_DBL, F(focus_tilt_x), 0, -100, 100 },
    { "focus_tilt_y", K_DBL, F(focus_tilt_y), 0, -100, 100 },
    { "focus_bow_um", K_DBL, F(focus_bow_um), 0, -200, 200 },
    { "margin_um", K_DBL, F(margin_um), 0, 0, 20000 },
    { "blank_w_um", K_DBL, F(blank_w_um), 0, 0, 50000 },
    { "travel_x_um", K_DBL, F(travel_x_um), 0, 1000, 1e6 },
    { "travel_y_um", K_DBL, F(travel_y_um), 0, 1000, 1e6 },
    { "speed_um_s", K_DBL3, F(speed_um_s), 0, 1, 1e7 },
    { "accel_um_s2", K_DBL3, F(accel_um_s2), 0, 1, 1e9 },
    { "backlash_um", K_DBL3, F(backlash_um), 0, 0, 1000 },
    { "repeat_sigma_um", K_DBL3, F(repeat_sigma_um), 0, 0, 1000 },
    { "overshoot_um", K_DBL3, F(overshoot_um), 0, 0, 1000 },
    { "settle_tau_ms", K_DBL, F(settle_tau_ms), 0, 0.01, 10000 },
    { "settle_hz", K_DBL, F(settle_hz), 0, 0, 10000 },
    { "z_min_um", K_DBL, F(z_min_um), 0, -1e5, 1e5 },
    { "z_max_um", K_DBL, F(z_max_um), 0, -1e5, 1e5 },
    { "query_ms", K_DBL, F(query_ms), 0, 0, 10000 },
    { "home_ms", K_DBL, F(home_ms), 0, 0, 1e6 },
    { "overview_um_per_px", K_DBL, F(overview_um_per_px), 0, 1, 1000 },
    { "overview_ms", K_DBL, F(overview_ms), 0, 0, 1e6 },
    { "time_scale", K_DBL, F(time_scale), 0, 0, 100 },
    { "fault", K_STR, F(faults), S(faults), 0, 0 },
    { "cache_mb", K_SIZE, F(cache_mb), 0, 16, 65536 },
    { "render", K_INT, F(render), 0, 0, 1 },
    { "simd", K_INT, F(simd), 0, 0, 1 },
};

static int
parse_double(const char *text, double lo, double hi, double *out,
             struct ss_err *err)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v))
        return err_set(err, SS_ECONFIG, "'%s' is not a number", text);
    if (v < lo || v > hi)
        return err_set(err, SS_ECONFIG, "%g is outside %g..%g", v, lo,
                       hi);
    *out = v;
    return 0;
}

static int
parse_triple(const struct key *k, const char *value, double *dst,
             struct ss_err *err)
{
    char buf[128], *part, *save = NULL;
    double v[3];
    int n = 0, rc;

    snprintf(buf, sizeof(buf), "%s", value);
    for (part = strtok_r(buf, ",", &save); part != NULL;
         part = strtok_r(NULL, ",", &save)) {
        while (*part == ' ')
            part++;
        if (n == 3)
            return err_set(err, SS_ECONFIG, "more than three values in "
                           "'%s'", value);
        rc = parse_double(part, k->lo, k->hi, &v[n], err);
        if (rc < 0)
            return rc;
        n++;
    }
    if (n != 1 && n != 3)
        return err_set(err, SS_ECONFIG, "give one value or three "
                       "separated by commas, not '%s'", value);
    dst[0] = v[0];
    dst[1] = n == 3 ? v[1] : v[0];
    dst[2] = n == 3 ? v[2] : v[0];
    return 0;
}

static int
set_key(struct sim_config *c, const struct key *k, const char *value,
        struct ss_err *err)
{
    char *base = (char *)c + k->off, *end;
    unsigned long long u;
    double d;
    int rc = 0;

    switch (k->kind) {
    case K_U64:
        errno = 0;
        u = strtoull(value, &end, 0);
        if (end == value || *end != '\0' || errno != 0 || *value == '-')
            return err_set(err, SS_ECONFIG, "'%s' is not an unsigned "
                           "integer", value);
        *(uint64_t *)(void *)base = u;
        return 0;
    case K_STR:
        if (strlen(value) >= k->len)
            return err_set(err, SS_ECONFIG, "longer than %zu characters",
                           k->len - 1);
        memcpy(base, value, strlen(value) + 1);
        return 0;
    case K_DBL3:
        return parse_triple(k, value, (double *)(void *)base, err);
    default:
        break;
    }
    rc = parse_double(value, k->lo, k->hi, &d, err);
    if (rc < 0)
        return rc;
    if (k->kind == K_DBL) {
        *(double *)(void *)base = d;
    } else if (d != floor(d)) {
        return err_set(err, SS_ECONFIG, "'%s' is not an integer", value);
    } else if (k->kind == K_INT) {
        *(int *)(void *)base = (int)d;
    } else {
        *(size_t *)(void *)base = (size_t)d;
    }
    return 0;
}

/* Values that must be one of a set or parse as a spec; the slide and the
 * faults are checked here so a bad one is reported with its file line
 * instead of when the microscope is made. */
static int
check_choice(const struct sim_config *c, const char *key,
             struct ss_err *err)
{
    if (strcmp(key, "objective") == 0 && strcmp(c->objective, "10x") != 0 &&
        strcmp(c->objective, "20x") != 0 && strcmp(c->objective, "40x") != 0)
        return err_set(err, SS_ECONFIG, "'%s' is not one of 10x, 20x, 40x",
                       c->objective);
    if (strcmp(key, "stain") == 0 && sim__stain_parse(c->stain) < 0)
        return err_set(err, SS_ECONFIG, "'%s' is not one of HE, KI67, CK",
                       c->stain);
    if (strcmp(key, "slide") == 0)
        return sim_slide_spec_check(c->slide, err);
    if (strcmp(key, "fault") == 0)
        return sim__faults_parse(c->faults, NULL, NULL, err);
    return 0;
}

int
sim_config_set(struct sim_config *c, const char *key, const char *value,
               struct ss_err *err)
{
    struct sim_config tmp = *c;
    size_t i;
    int rc;

    if (key == NULL || value == NULL)
        return err_set(err, SS_ECONFIG, "missing key or value");
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(keys[i].name, key) != 0)
            continue;
        rc = set_key(&tmp, &keys[i], value, err);
        if (rc == 0)
            rc = check_choice(&tmp, key, err);
        if (rc == 0)
            *c = tmp;
        return rc;
    }
    return err_set(err, SS_ECONFIG, "unknown key");
}

int
sim__stain_parse(const char *name)
{
    if (strcasecmp(name, "HE") == 0 || strcasecmp(name, "H&E") == 0)
        return SIM_STAIN_HE;
    if (strcasecmp(name, "KI67") == 0)
        return SIM_STAIN_KI67;
    if (strcasecmp(name, "CK") == 0)
        return SIM_STAIN_CK;
    return -1;
}

const char *
sim__stain_name(int stain)
{
    static const char *const names[] = { "HE", "KI67", "CK" };

    return stain >= 0 && stain <= 2 ? names[stain] : "HE";
}
