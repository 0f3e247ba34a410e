/* SPDX-License-Identifier: MIT */
/*
 * What hardware is attached, what the configuration expects, and what
 * does not match, for `slidescan devices`.  Cameras come from
 * libgphoto2's autodetect (USB and serial ports; network cameras are only
 * found by opening them), stage controllers from libusb's device list,
 * filtered to the known ids and the configured one.  Nothing is opened.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <gphoto2/gphoto2.h>

#include "drivers/hw/hw_internal.h"

static void problem(json_t *problems, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
problem(json_t *problems, const char *fmt, ...)
{
    char buf[320];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(buf));
}

static json_t *
detect_cameras(void)
{
    GPContext *ctx = gp_context_new();
    CameraList *list;
    json_t *arr = json_array();
    const char *m, *p;
    int i, n;

    gp_list_new(&list);
    n = gp_camera_autodetect(list, ctx);
    for (i = 0; i < n; i++) {
        gp_list_get_name(list, i, &m);
        gp_list_get_value(list, i, &p);
        json_array_append_new(arr, json_pack("{s:s, s:s}", "model", m,
                                             "port", p));
    }
    gp_list_free(list);
    gp_context_unref(ctx);
    return arr;
}

static const char *
dialect_of(uint16_t vid, uint16_t pid, const struct hw_stage_config *sc)
{
    const struct hw__dialect *d = hw__dialect_get(sc->dialect);
    size_t i;

    if (d != NULL && vid == (sc->vid ? sc->vid : d->vid) &&
        pid == (sc->pid ? sc->pid : d->pid))
        return d->name;
    for (i = 0; i < hw__known_usb_count; i++)
        if (hw__known_usb[i].vid == vid && hw__known_usb[i].pid == pid)
            return hw__dialect_get(hw__known_usb[i].dialect)->name;
    return NULL;
}

static json_t *
detect_stages(const struct hw_stage_config *sc, struct ss_err *err)
{
    libusb_context *ctx;
    libusb_device **list;
    json_t *arr;
    ssize_t n, i;

    if (hw__usb_get(&ctx, err) != 0)
        return NULL;
    arr = json_array();
    n = libusb_get_device_list(ctx, &list);
    for (i = 0; i < n; i++) {
        struct libusb_device_descriptor dd;
        char vid[8], pid[8];
        const char *d;

        if (libusb_get_device_descriptor(list[i], &dd) != 0)
            continue;
        d = dialect_of(dd.idVendor, dd.idProduct, sc);
        if (d == NULL)
            continue;
        snprintf(vid, sizeof(vid), "%04x", dd.idVendor);
        snprintf(pid, sizeof(pid), "%04x", dd.idProduct);
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:i, s:i, s:s}", "vid", vid, "pid", pid,
            "bus", libusb_get_bus_number(list[i]),
            "address", libusb_get_device_address(list[i]), "dialect", d));
    }
    if (n >= 0)
        libusb_free_device_list(list, 1);
    hw__usb_put();
    return arr;
}

static void
check_camera(const struct hw_camera_config *cc, json_t *cams,
             json_t *expected, json_t *problems)
{
    size_t i, hits = 0;

    if (!cc->enabled) {
        json_object_set_new(expected, "camera", json_null());
        return;
    }
    json_object_set_new(expected, "camera", json_pack(
        "{s:s, s:s, s:s}", "driver", "gphoto2", "model", cc->model,
        "port", cc->port));
    if (!strncmp(cc->port, "ptpip:", 6))
        return;
    for (i = 0; i < json_array_size(cams); i++) {
        json_t *c = json_array_get(cams, i);
        const char *m = json_string_value(json_object_get(c, "model"));
        const char *p = json_string_value(json_object_get(c, "port"));

        if ((cc->model[0] == '\0' || !strcmp(cc->model, m)) &&
            (cc->port[0] == '\0' || !strcmp(cc->port, p)))
            hits++;
    }
    if (hits == 0)
        problem(problems, "camera: none attached matches model '%s' port "
                "'%s'", cc->model[0] ? cc->model : "any",
                cc->port[0] ? cc->port : "any");
}

static void
check_stage(const struct hw_stage_config *sc, json_t *stages,
            json_t *expected, json_t *problems)
{
    const struct hw__dialect *d = hw__dialect_get(sc->dialect);
    struct hw_config only = { .stage = *sc };
    char id[16], where[16] = "any";
    const char *key;
    struct ss_err e;
    size_t i, hits = 0;

    if (d == NULL) {
        json_object_set_new(expected, "stage", json_null());
        return;
    }
    /* With no USB id to look for, searching the bus would only report
     * the placeholder id 0000 as missing. */
    if (hw_config_check(&only, &key, &e) < 0) {
        json_object_set_new(expected, "stage", json_pack(
            "{s:s, s:n}", "driver", d->name, "usb_id"));
        problem(problems, "stage: %s", e.msg);
        return;
    }
    snprintf(id, sizeof(id), "%04x:%04x", sc->vid ? sc->vid : d->vid,
             sc->pid ? sc->pid : d->pid);
    if (sc->bus != 0)
        snprintf(where, sizeof(where), "%03d:%03d", sc->bus, sc->address);
    json_object_set_new(expected, "stage", json_pack(
        "{s:s, s:s, s:s, s:s}", "driver", d->name, "usb_id", id, "usb",
        where, "serial", sc->serial));
    for (i = 0; i < json_array_size(stages); i++) {
        json_t *s = json_array_get(stages, i);
        char sid[16];

        snprintf(sid, sizeof(sid), "%s:%s",
                 json_string_value(json_object_get(s, "vid")),
                 json_string_value(json_object_get(s, "pid")));
        if (strcmp(sid, id) || (sc->bus != 0 && (json_integer_value(
                json_object_get(s, "bus")) != sc->bus || json_integer_value(
                json_object_get(s, "address")) != sc->address)))
            continue;
        hits++;
    }
    if (hits == 0)
        problem(problems, "stage: no USB device %s attached at %s", id,
                where);
    else if (hits > 1 && sc->bus == 0 && sc->serial[0] == '\0')
        problem(problems, "stage: %s USB devices %s attached; set [stage] "
                "usb or serial to choose one", "several", id);
}

int
hw_devices_report(const struct hw_config *c, json_t **out,
                  struct ss_err *err)
{
    json_t *cams, *stages, *expected, *problems;
    bool ok;

    *out = NULL;
    struct ss_err e;

    stages = detect_stages(&c->stage, &e);
    if (stages == NULL) {
        if (err != NULL)
            *err = e;
        return e.code;
    }
    cams = detect_cameras();
    expected = json_object();
    problems = json_array();
    check_camera(&c->cam, cams, expected, problems);
    check_stage(&c->stage, stages, expected, problems);
    ok = json_array_size(problems) == 0;
    *out = json_pack("{s:o, s:o, s:o, s:o, s:b}", "cameras", cams,
                     "stages", stages, "expected", expected, "problems",
                     problems, "ok", ok);
    return *out != NULL ? 0 : err_set(err, -12, "out of memory");
}
