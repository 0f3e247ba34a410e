/* SPDX-License-Identifier: MIT */
/*
 * Fault specs: "TYPE@COUNTER=N[:for=K][:ms=T][:um=V][:axis=x]" or
 * "TYPE@always", parsed into struct sim__fault, and lists of them
 * separated by ',' or ';'.  sim.h lists the types.  Messages name the spec
 * and the cause; the caller says that it is a fault.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ftype {
    const char *name;
    enum sim__fault_type type;
    enum sim__counter counter;      /* the usual counter */
};

static const struct ftype ftypes[] = {
    { "camera_busy", SIM_F_BUSY, SIM_C_CAPTURE },
    { "capture_timeout", SIM_F_TIMEOUT, SIM_C_CAPTURE },
    { "capture_hang", SIM_F_HANG, SIM_C_CAPTURE },
    { "camera_unplug", SIM_F_UNPLUG, SIM_C_CAPTURE },
    { "camera_held", SIM_F_HELD, SIM_C_OPEN },
    { "stage_stall", SIM_F_STALL, SIM_C_MOVE },
    { "lost_steps", SIM_F_LOST, SIM_C_MOVE },
    { "stage_timeout", SIM_F_STAGE_TIMEOUT, SIM_C_MOVE },
};

static const char *const counters[SIM_C_N] = {
    "capture", "preview", "open", "move"
};

static int
bad(const char *spec, struct ss_err *err, const char *why)
{
    return err_set(err, SS_ECONFIG, "'%s': %s", spec, why);
}

static int
number(const char *text, double lo, double *out)
{
    char *end;
    double v = strtod(text, &end);

    if (end == text || *end != '\0' || !isfinite(v) || v < lo)
        return -1;
    *out = v;
    return 0;
}

static int
counter_part(const char *spec, char *at, struct sim__fault *f,
             struct ss_err *err)
{
    char *eq = strchr(at, '=');
    double v;
    int i;

    if (strcmp(at, "always") == 0) {
        f->always = true;
        return 0;
    }
    if (eq == NULL)
        return bad(spec, err, "expected COUNTER=N or 'always' after '@'");
    *eq = '\0';
    for (i = 0; i < SIM_C_N; i++)
        if (strcmp(at, counters[i]) == 0)
            break;
    if (i == SIM_C_N)
        return bad(spec, err, "counter must be capture, preview, open or "
                   "move");
    if (f->type >= SIM_F_STALL && i != SIM_C_MOVE)
        return bad(spec, err, "stage faults count moves");
    if (f->type < SIM_F_STALL && i == SIM_C_MOVE)
        return bad(spec, err, "camera faults count capture, preview or "
                   "open calls");
    if (number(eq + 1, 1, &v) < 0 || v != floor(v))
        return bad(spec, err, "N must be a whole number from 1");
    f->counter = i;
    f->at = (long)v;
    return 0;
}

static int
option(const char *spec, char *opt, struct sim__fault *f, struct ss_err *err)
{
    char *eq = strchr(opt, '=');
    double v;

    if (eq == NULL)
        return bad(spec, err, "options are for=K, ms=T, um=V, axis=x|y|z");
    *eq++ = '\0';
    if (strcmp(opt, "axis") == 0) {
        if (strlen(eq) != 1 || strchr("xyz", eq[0]) == NULL)
            return bad(spec, err, "axis must be x, y or z");
        f->axis = eq[0] - 'x';
        return 0;
    }
    if (number(eq, 0, &v) < 0)
        return bad(spec, err, "option value must be a number >= 0");
    if (strcmp(opt, "for") == 0 && v >= 1 && v == floor(v))
        f->count = (long)v;
    else if (strcmp(opt, "ms") == 0)
        f->ms = v;
    else if (strcmp(opt, "um") == 0 && v > 0)
        f->um = v;
    else
        return bad(spec, err, "unknown option or bad value (for=K with "
                   "K >= 1, ms=T, um=V with V > 0, axis=x|y|z)");
    return 0;
}

int
sim__fault_parse(const char *spec, struct sim__fault *f, struct ss_err *err)
{
    char buf[96], *at, *opt, *save = NULL;
    size_t i;
    int rc;

    memset(f, 0, sizeof(*f));
    if (strlen(spec) >= sizeof(buf))
        return bad(spec, err, "too long");
    snprintf(buf, sizeof(buf), "%s", spec);
    snprintf(f->spec, sizeof(f->spec), "%s", spec);
    f->count = 1;
    f->axis = -1;
    f->um = 10;
    at = strchr(buf, '@');
    if (at == NULL)
        return bad(spec, err, "expected TYPE@COUNTER=N");
    *at++ = '\0';
    for (i = 0; i < sizeof(ftypes) / sizeof(ftypes[0]); i++)
        if (strcmp(buf, ftypes[i].name) == 0)
            break;
    if (i == sizeof(ftypes) / sizeof(ftypes[0]))
        return bad(spec, err, "unknown type (camera_busy, capture_timeout, "
                   "capture_hang, camera_unplug, camera_held, stage_stall, "
                   "lost_steps, stage_timeout)");
    f->type = ftypes[i].type;
    f->counter = ftypes[i].counter;
    opt = strtok_r(at, ":", &save);
    if (opt == NULL)
        return bad(spec, err, "expected COUNTER=N or 'always' after '@'");
    rc = counter_part(spec, opt, f, err);
    while (rc == 0 && (opt = strtok_r(NULL, ":", &save)) != NULL)
        rc = option(spec, opt, f, err);
    if (rc == 0 && f->type == SIM_F_HELD && f->counter != SIM_C_OPEN)
        rc = bad(spec, err, "camera_held counts open calls");
    return rc;
}

int
sim__faults_parse(const char *list, struct sim__fault *f, int *n,
                  struct ss_err *err)
{
    char buf[SIM_SPEC_MAX], *part, *save = NULL;
    struct sim__fault one;
    int k = 0, rc;

    if (strlen(list) >= sizeof(buf))
        return err_set(err, SS_ECONFIG, "longer than %zu characters",
                       sizeof(buf) - 1);
    snprintf(buf, sizeof(buf), "%s", list);
    for (part = strtok_r(buf, ",;", &save); part != NULL;
         part = strtok_r(NULL, ",;", &save)) {
        while (*part == ' ')
            part++;
        if (*part == '\0')
            continue;
        if (k == SIM_FAULTS_MAX)
            return err_set(err, SS_ECONFIG, "more than %d faults",
                           SIM_FAULTS_MAX);
        rc = sim__fault_parse(part, f != NULL ? &f[k] : &one, err);
        if (rc < 0)
            return rc;
        k++;
    }
    if (n != NULL)
        *n = k;
    return 0;
}
