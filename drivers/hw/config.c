/* SPDX-License-Identifier: MIT */
/*
 * The [camera] and [stage] configuration of the hardware microscope: the
 * defaults and the parser of one key at a time, with messages that name
 * the section, the key and what is wrong with the value.
 */
#include "drivers/hw/hw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/hw/hw_internal.h"

void
hw_config_default(struct hw_config *c)
{
    int i;

    memset(c, 0, sizeof(*c));
    c->cam.enabled = false;
    c->cam.base_iso = 100;
    snprintf(c->cam.capture_target, sizeof(c->cam.capture_target), "sdram");
    c->cam.pixel_um = 0.5;
    snprintf(c->cam.objective, sizeof(c->cam.objective), "20x");
    c->cam.orientation = HW_ORIENT_NONE;
    c->cam.busy_retries = 3;
    c->cam.busy_backoff_ms = 100;
    c->cam.preview = true;
    c->cam.capture_timeout_ms = 30000;

    c->stage.dialect = HW_STAGE_NONE;
    c->stage.timeout_ms = 2000;
    for (i = 0; i < 3; i++) {
        c->stage.steps_per_um[i] = 1.0;
        c->stage.min_um[i] = -1e6;
        c->stage.max_um[i] = 1e6;
    }
}

static int
bad(struct ss_err *err, const char *sec, const char *key, const char *val,
    const char *why)
{
    return err_set(err, SS_ECONFIG, "[%s] %s = '%s': %s", sec, key, val,
                   why);
}

static int
parse_double(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int
parse_long(const char *s, int base, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, base);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int
parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") ||
        !strcmp(s, "1")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") ||
        !strcmp(s, "0")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int
copy_text(char *dst, size_t len, const char *v)
{
    if (strlen(v) >= len)
        return -1;
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int
set_orientation(struct hw_camera_config *c, const char *v)
{
    static const char *const names[] = {
        "none", "mirror_x", "mirror_y", "rotate_180",
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(v, names[i])) {
            c->orientation = (enum hw_orientation)i;
            return 0;
        }
    return -1;
}

static int
camera_set(struct hw_camera_config *c, const char *k, const char *v,
           struct ss_err *err)
{
    double d;
    long n;

    if (!strcmp(k, "driver")) {
        if (strcmp(v, "gphoto2") && strcmp(v, "none"))
            return bad(err, "camera", k, v, "must be gphoto2 or none");
        c->enabled = !strcmp(v, "gphoto2");
    } else if (!strcmp(k, "model")) {
        if (copy_text(c->model, sizeof(c->model), v))
            return bad(err, "camera", k, v, "too long");
    } else if (!strcmp(k, "port")) {
        if (copy_text(c->port, sizeof(c->port), v))
            return bad(err, "camera", k, v, "too long");
    } else if (!strcmp(k, "base_iso")) {
        if (parse_long(v, 10, 25, 409600, &n))
            return bad(err, "camera", k, v, "must be an ISO 25..409600");
        c->base_iso = (int)n;
    } else if (!strcmp(k, "image_format")) {
        if (copy_text(c->image_format, sizeof(c->image_format), v))
            return bad(err, "camera", k, v, "too long");
    } else if (!strcmp(k, "capture_target")) {
        if (strcmp(v, "sdram") && strcmp(v, "card"))
            return bad(err, "camera", k, v, "must be sdram or card");
        copy_text(c->capture_target, sizeof(c->capture_target), v);
    } else if (!strcmp(k, "pixel_um")) {
        if (parse_double(v, &d) || d <= 0 || d > 100)
            return bad(err, "camera", k, v, "must be a size in µm, 0..100");
        c->pixel_um = d;
    } else if (!strcmp(k, "objective")) {
        if (copy_text(c->objective, sizeof(c->objective), v))
            return bad(err, "camera", k, v, "too long (7 characters)");
    } else if (!strcmp(k, "orientation")) {
        if (set_orientation(c, v))
            return bad(err, "camera", k, v, "must be none, mirror_x, "
                       "mirror_y or rotate_180");
    } else if (!strcmp(k, "frame_w") || !strcmp(k, "frame_h")) {
        if (parse_long(v, 10, 0, 100000, &n))
            return bad(err, "camera", k, v, "must be pixels, 0..100000");
        *(k[6] == 'w' ? &c->frame_w : &c->frame_h) = (int)n;
    } else if (!strcmp(k, "busy_retries")) {
        if (parse_long(v, 10, 0, 20, &n))
            return bad(err, "camera", k, v, "must be 0..20");
        c->busy_retries = (int)n;
    } else if (!strcmp(k, "busy_backoff_ms")) {
        if (parse_double(v, &d) || d < 0 || d > 10000)
            return bad(err, "camera", k, v, "must be 0..10000 ms");
        c->busy_backoff_ms = d;
    } else if (!strcmp(k, "capture_timeout_ms")) {
        if (parse_double(v, &d) || d < 100 || d > 600000)
            return bad(err, "camera", k, v, "must be 100..600000 ms");
        c->capture_timeout_ms = d;
    } else if (!strcmp(k, "preview")) {
        if (parse_bool(v, &c->preview))
            return bad(err, "camera", k, v, "must be yes or no");
    } else {
        return err_set(err, SS_ECONFIG, "[camera] %s: unknown key", k);
    }
    return 0;
}

static int
axis_of(const char *k, const char *prefix, const char *suffix)
{
    size_t lp = strlen(prefix);

    if (strncmp(k, prefix, lp) || strchr("xyz", k[lp]) == NULL ||
        k[lp] == '\0' || strcmp(k + lp + 1, suffix))
        return -1;
    return k[lp] - 'x';
}

static int
set_usb_address(struct hw_stage_config *c, const char *v)
{
    int bus, addr;
    char tail;

    if (sscanf(v, "%d:%d%c", &bus, &addr, &tail) != 2 || bus < 1 ||
        bus > 255 || addr < 1 || addr > 127)
        return -1;
    c->bus = bus;
    c->address = addr;
    return 0;
}

static int
stage_set_axis(struct hw_stage_config *c, const char *k, const char *v,
               struct ss_err *err)
{
    double d;
    int a;

    if (parse_double(v, &d))
        return bad(err, "stage", k, v, "not a number");
    if ((a = axis_of(k, "steps_per_um_", "")) >= 0) {
        if (d == 0 || fabs(d) > 1e6)
            return bad(err, "stage", k, v, "must be non-zero (negative "
                       "reverses the axis)");
        c->steps_per_um[a] = d;
    } else if ((a = axis_of(k, "min_", "_um")) >= 0) {
        c->min_um[a] = d;
    } else if ((a = axis_of(k, "max_", "_um")) >= 0) {
        c->max_um[a] = d;
    } else {
        return err_set(err, SS_ECONFIG, "[stage] %s: unknown key", k);
    }
    return 0;
}

static int
stage_set(struct hw_stage_config *c, const char *k, const char *v,
          struct ss_err *err)
{
    long n;

    if (!strcmp(k, "driver")) {
        const struct hw__dialect *d = hw__dialect_find(v);

        if (d == NULL && strcmp(v, "none"))
            return bad(err, "stage", k, v, "must be sangaboard, proscan "
                       "or none");
        c->dialect = d != NULL ? d->id : HW_STAGE_NONE;
    } else if (!strcmp(k, "vid") || !strcmp(k, "pid")) {
        if (parse_long(v, 16, 1, 0xffff, &n))
            return bad(err, "stage", k, v, "must be 4 hex digits");
        *(k[0] == 'v' ? &c->vid : &c->pid) = (uint16_t)n;
    } else if (!strcmp(k, "serial")) {
        if (copy_text(c->serial, sizeof(c->serial), v))
            return bad(err, "stage", k, v, "too long");
    } else if (!strcmp(k, "usb")) {
        if (set_usb_address(c, v))
            return bad(err, "stage", k, v, "must be BUS:ADDRESS, e.g. "
                       "001:004");
    } else if (!strcmp(k, "baud")) {
        if (parse_long(v, 10, 300, 4000000, &n))
            return bad(err, "stage", k, v, "must be 300..4000000");
        c->baud = (unsigned)n;
    } else if (!strcmp(k, "timeout_ms")) {
        if (parse_long(v, 10, 10, 600000, &n))
            return bad(err, "stage", k, v, "must be 10..600000 ms");
        c->timeout_ms = (int)n;
    } else {
        return stage_set_axis(c, k, v, err);
    }
    return 0;
}

int
hw_config_check(const struct hw_config *c, const char **key,
                struct ss_err *err)
{
    const struct hw_stage_config *s = &c->stage;
    const struct hw__dialect *d = hw__dialect_get(s->dialect);

    if (d == NULL || ((s->vid != 0 || d->vid != 0) &&
                      (s->pid != 0 || d->pid != 0)))
        return 0;
    *key = s->vid == 0 && d->vid == 0 ? "vid" : "pid";
    return err_set(err, SS_ECONFIG, "driver %s has no known USB id: set "
                   "vid and pid in [stage] to the controller's (4 hex "
                   "digits each, as lsusb shows them)", d->name);
}

int
hw_config_set(struct hw_config *c, const char *section, const char *key,
              const char *value, struct ss_err *err)
{
    if (!strcmp(section, "camera"))
        return camera_set(&c->cam, key, value, err);
    if (!strcmp(section, "stage"))
        return stage_set(&c->stage, key, value, err);
    return err_set(err, SS_ECONFIG, "[%s]: not a hardware section (camera "
                   "or stage)", section);
}
