/* SPDX-License-Identifier: MIT */
/*
 * The tethered camera on libgphoto2: any model libgphoto2 drives, on a USB
 * port or over PTP/IP ("ptpip:HOST:CMDPORT:EVTPORT").  A capture is
 * gp_camera_capture() + gp_camera_file_get() into memory + delete from the
 * camera, then a JPEG decode (common/img.h), orientation to stage axes and
 * the white-balance multipliers.
 *
 * What goes wrong, and what this driver does about it:
 *   busy        retried busy_retries times with doubling back-off, each
 *               retry counted and logged; then one session reset and one
 *               more try; then SS_EBUSY "camera busy".
 *   held        another program holds the camera: SS_EHELD with a message
 *               that says so; open() again later.
 *   timeout     SS_ETIMEOUT; the session is dropped and the next call
 *               opens a fresh one.
 *   gone        the session is dropped and reopened once at once; if that
 *               fails, SS_EGONE, and every later call tries to reopen.
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gphoto2/gphoto2.h>

#include "common/img.h"
#include "common/log.h"
#include "common/util.h"
#include "drivers/hw/hw_internal.h"

struct hw_cam {
    struct hw_camera_config cfg;
    GPContext *ctx;
    Camera *gp;                     /* NULL while no session */
    bool opened;                    /* between open() and close() */
    struct hw_camera_stats stats;
    struct cam_settings set;
    bool have_set;
    char detail[256];               /* last error text libgphoto2 gave */
    int log_id, debug_id;
    bool saw_busy;                  /* this call met PTP Device Busy */
    bool saw_init_fail;             /* a PTP/IP camera sent Init Fail */
};

/* Keeps libgphoto2's last error text for our messages, and notes a PTP
 * "Device Busy" answer, which some libgphoto2 paths report only in their
 * log and as a generic error. */
static void
on_gp_log(GPLogLevel level, const char *domain, const char *str, void *data)
{
    struct hw_cam *c = data;

    if (strstr(str, "(0x2019)") != NULL || strstr(str, "Device Busy"))
        c->saw_busy = true;
    if (strstr(domain, "init_command_ack") != NULL &&
        strstr(str, "returned 5") != NULL)
        c->saw_init_fail = true;
    if (!c->saw_busy || strstr(str, "0x2019") != NULL)
        snprintf(c->detail, sizeof(c->detail), "%s: %s", domain, str);
}


static void
on_gp_debug(GPLogLevel level, const char *domain, const char *str,
            void *data)
{
    log_debug("gphoto2", "%s: %s", domain, str);
}

static void
on_ctx_error(GPContext *ctx, const char *str, void *data)
{
    struct hw_cam *c = data;

    snprintf(c->detail, sizeof(c->detail), "%s", str);
}

static void
sleep_ms(double ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - ts.tv_sec * 1000.0) * 1e6);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static const char *
cam_name(const struct hw_cam *c)
{
    return c->cfg.port[0] != '\0' ? c->cfg.port : "camera";
}

/* "Our" error: the camera name, the cause, what libgphoto2 said last.  A
 * PTP/IP camera that already serves another host refuses us with an
 * Init Fail packet (type 5), which libgphoto2 reports only as a generic
 * error; its log names the packet type, so that is where "held" is
 * recognised. */
static int
gp_fail(struct hw_cam *c, int gp_rc, const char *op, struct ss_err *err)
{
    char what[192];

    snprintf(what, sizeof(what), "camera %s: %s", cam_name(c), op);
    if (gp_rc == GP_ERROR && c->saw_init_fail)
        return err_set(err, SS_EHELD, "%s: the camera refused the "
                       "connection because another program is connected "
                       "to it; quit that program and the scanner will "
                       "retry (libgphoto2: %s)", what, c->detail);
    return hw__gp_error(err, gp_rc, what, c->detail);
}

static int
pick_model(struct hw_cam *c, CameraAbilitiesList *al, const char *model,
           struct ss_err *err)
{
    CameraAbilities a;
    int i;

    i = gp_abilities_list_lookup_model(al, model);
    if (i < 0)
        return err_set(err, SS_ECONFIG, "[camera] model = '%s': not a "
                       "model libgphoto2 knows", model);
    gp_abilities_list_get_abilities(al, i, &a);
    return gp_camera_set_abilities(c->gp, a);
}

static int
pick_port(struct hw_cam *c, GPPortInfoList *pl, const char *port,
          struct ss_err *err)
{
    GPPortInfo pi;
    int i;

    i = gp_port_info_list_lookup_path(pl, port);
    if (i < 0)
        return err_set(err, SS_ECONFIG, "[camera] port = '%s': not a port "
                       "libgphoto2 can use", port);
    gp_port_info_list_get_info(pl, i, &pi);
    return gp_camera_set_port_info(c->gp, pi);
}

/* With no model or port configured, the first camera autodetect finds;
 * with only a port, the camera found on it. */
static int
autodetect(struct hw_cam *c, char *model, size_t mlen, char *port,
           size_t plen, struct ss_err *err)
{
    CameraList *list;
    const char *m, *p;
    int i, n;

    gp_list_new(&list);
    n = gp_camera_autodetect(list, c->ctx);
    for (i = 0; i < n; i++) {
        gp_list_get_name(list, i, &m);
        gp_list_get_value(list, i, &p);
        if (port[0] == '\0' || !strcmp(port, p)) {
            snprintf(model, mlen, "%s", m);
            snprintf(port, plen, "%s", p);
            gp_list_free(list);
            return 0;
        }
    }
    gp_list_free(list);
    return err_set(err, SS_EGONE, "camera%s%s: none attached (libgphoto2 "
                   "autodetect found %d)", port[0] ? " on " : "", port,
                   n < 0 ? 0 : n);
}

/* libgphoto2's model and port lists, loaded once per process: loading
 * opens every camera library and probes every port library, which takes
 * a noticeable time and is the same for every camera. */
static pthread_mutex_t lists_lock = PTHREAD_MUTEX_INITIALIZER;
static CameraAbilitiesList *all_models;
static GPPortInfoList *all_ports;

static void
load_lists(GPContext *ctx)
{
    pthread_mutex_lock(&lists_lock);
    if (all_models == NULL) {
        gp_abilities_list_new(&all_models);
        gp_abilities_list_load(all_models, ctx);
    }
    if (all_ports == NULL) {
        gp_port_info_list_new(&all_ports);
        gp_port_info_list_load(all_ports);
    }
    pthread_mutex_unlock(&lists_lock);
}

static int
choose_device(struct hw_cam *c, struct ss_err *err)
{
    char model[128], port[128];
    int rc;

    snprintf(model, sizeof(model), "%s", c->cfg.model);
    snprintf(port, sizeof(port), "%s", c->cfg.port);
    if (model[0] == '\0' && !strncmp(port, "ptpip:", 6))
        snprintf(model, sizeof(model), "PTP/IP Camera");
    if (model[0] == '\0') {
        rc = autodetect(c, model, sizeof(model), port, sizeof(port), err);
        if (rc != 0)
            return rc;
    }
    load_lists(c->ctx);
    rc = pick_model(c, all_models, model, err);
    if (rc < 0)
        return rc == SS_ECONFIG ? rc : gp_fail(c, rc, "model", err);
    if (port[0] == '\0')
        return 0;
    rc = pick_port(c, all_ports, port, err);
    if (rc < 0 && rc != SS_ECONFIG)
        rc = gp_fail(c, rc, "port", err);
    return rc < 0 ? rc : 0;
}

static void
session_close(struct hw_cam *c)
{
    if (c->gp == NULL)
        return;
    gp_camera_exit(c->gp, c->ctx);
    gp_camera_unref(c->gp);
    c->gp = NULL;
}

static int apply_settings(struct hw_cam *c, struct ss_err *err);
static void apply_target(struct hw_cam *c);

static int
session_open(struct hw_cam *c, struct ss_err *err)
{
    int rc;

    c->detail[0] = '\0';
    c->saw_init_fail = false;
    gp_camera_new(&c->gp);
    rc = choose_device(c, err);
    if (rc == 0) {
        rc = gp_camera_init(c->gp, c->ctx);
        if (rc < 0)
            rc = gp_fail(c, rc, "open", err);
    }
    if (rc == 0) {
        apply_target(c);
        if (c->have_set)
            rc = apply_settings(c, err);
    }
    if (rc != 0) {
        gp_camera_unref(c->gp);
        c->gp = NULL;
    }
    return rc;
}

/* Parses libgphoto2's shutter speed texts: "1/250", "0.5", "2", "30s". */
static double
shutter_s(const char *t)
{
    double a, b;
    char tail[8] = "";

    if (sscanf(t, "%lf/%lf", &a, &b) == 2 && b > 0)
        return a / b;
    if (sscanf(t, "%lf%7s", &a, tail) >= 1 && (tail[0] == '\0' ||
                                               !strcmp(tail, "s")))
        return a;
    return NAN;
}

static double
iso_value(const char *t)
{
    char *end;
    double v = strtod(t, &end);

    return end != t && *end == '\0' ? v : NAN;
}

/* Sets a radio or menu setting to the choice closest (on a log scale) to
 * want.  A camera without the setting keeps its own and says so once. */
static int
set_nearest(struct hw_cam *c, const char *name, double want,
            double (*value_of)(const char *), struct ss_err *err)
{
    CameraWidget *w = NULL;
    const char *ch, *best = NULL;
    double dist, best_dist = INFINITY;
    int i, n, rc;

    if (gp_camera_get_single_config(c->gp, name, &w, c->ctx) < 0) {
        log_warn("camera", "no_setting name=%s camera=\"%s\" "
                 "effect=\"left to the camera\"", name, cam_name(c));
        return 0;
    }
    n = gp_widget_count_choices(w);
    for (i = 0; i < n; i++) {
        double v;

        if (gp_widget_get_choice(w, i, &ch) < 0)
            continue;
        v = value_of(ch);
        if (!(v > 0))
            continue;
        dist = fabs(log(v / want));
        if (dist < best_dist) {
            best_dist = dist;
            best = ch;
        }
    }
    rc = best == NULL ? GP_ERROR_NOT_SUPPORTED : gp_widget_set_value(w, best);
    if (rc >= 0)
        rc = gp_camera_set_single_config(c->gp, name, w, c->ctx);
    if (rc >= 0)
        log_info("camera", "set name=%s value=\"%s\" wanted=%g", name, best,
                 want);
    gp_widget_free(w);
    return rc < 0 ? gp_fail(c, rc, name, err) : 0;
}

static int
set_text_choice(struct hw_cam *c, const char *name, const char *want,
                bool substring)
{
    CameraWidget *w = NULL;
    const char *ch;
    int i, n, rc = GP_ERROR_NOT_SUPPORTED;

    if (gp_camera_get_single_config(c->gp, name, &w, c->ctx) < 0)
        return GP_ERROR_NOT_SUPPORTED;
    n = gp_widget_count_choices(w);
    for (i = 0; i < n; i++) {
        if (gp_widget_get_choice(w, i, &ch) < 0)
            continue;
        if (substring ? strcasestr(ch, want) != NULL : !strcmp(ch, want)) {
            rc = gp_widget_set_value(w, ch);
            break;
        }
    }
    if (rc >= 0)
        rc = gp_camera_set_single_config(c->gp, name, w, c->ctx);
    gp_widget_free(w);
    return rc;
}

/* Capture target and image format: a camera that lacks them (a generic
 * PTP camera has neither) keeps its own, with a log line. */
static void
apply_target(struct hw_cam *c)
{
    const char *t = !strcmp(c->cfg.capture_target, "card") ? "card" : "RAM";

    if (set_text_choice(c, "capturetarget", t, true) < 0)
        log_debug("camera", "no_setting name=capturetarget camera=\"%s\"",
                  cam_name(c));
    if (c->cfg.image_format[0] != '\0' &&
        set_text_choice(c, "imageformat", c->cfg.image_format, false) < 0)
        log_warn("camera", "setting_refused name=imageformat value=\"%s\" "
                 "camera=\"%s\"", c->cfg.image_format, cam_name(c));
}

static int
apply_settings(struct hw_cam *c, struct ss_err *err)
{
    int rc;

    rc = set_nearest(c, "shutterspeed", c->set.exposure_ms / 1000.0,
                     shutter_s, err);
    if (rc == 0)
        rc = set_nearest(c, "iso", c->cfg.base_iso * c->set.gain,
                         iso_value, err);
    return rc;
}

static int
ensure_session(struct hw_cam *c, struct ss_err *err)
{
    int rc;

    if (!c->opened)
        return err_set(err, -9, "camera %s: not open", cam_name(c));
    if (c->gp != NULL)
        return 0;
    rc = session_open(c, err);
    if (rc == SS_EHELD || rc == SS_ECONFIG)
        return rc;
    if (rc != 0) {
        err_prefix(err, "camera gone, reconnect failed");
        if (err != NULL)
            err->code = SS_EGONE;
        return SS_EGONE;
    }
    c->stats.reconnects++;
    log_notice("camera", "reconnected camera=\"%s\" reconnects=%ld",
               cam_name(c), c->stats.reconnects);
    return 0;
}

static void
orient(struct img *im, enum hw_orientation o)
{
    bool fx = o == HW_ORIENT_MIRROR_X || o == HW_ORIENT_ROTATE_180;
    bool fy = o == HW_ORIENT_MIRROR_Y || o == HW_ORIENT_ROTATE_180;
    struct img *src = img_dup(im);
    int x, y;

    if (src == NULL)
        return;
    for (y = 0; y < im->h; y++)
        for (x = 0; x < im->w; x++)
            memcpy(img_u8(im, x, y), img_u8(src, fx ? im->w - 1 - x : x,
                                            fy ? im->h - 1 - y : y), 3);
    img_free(src);
}

static void
white_balance(struct img *im, const double wb[3])
{
    size_t i, n = (size_t)im->w * im->h;
    uint8_t *p = im->data;
    int ch;

    if (wb[0] == 1.0 && wb[1] == 1.0 && wb[2] == 1.0)
        return;
    for (i = 0; i < n; i++, p += 3)
        for (ch = 0; ch < 3; ch++) {
            double v = p[ch] * wb[ch];

            p[ch] = (uint8_t)(v > 255 ? 255 : v + 0.5);
        }
}

/* JPEG bytes → an RGB frame in stage orientation. */
static int
decode(struct hw_cam *c, const char *data, unsigned long size,
       struct img **frame, struct ss_err *err)
{
    struct img *im = NULL;
    int rc;

    rc = img_jpeg_decode((const unsigned char *)data, size, &im, err);
    if (rc != 0)
        return err_prefix(err, "camera %s: frame is not a JPEG (set "
                          "[camera] image_format to a JPEG setting)",
                          cam_name(c));
    if (im->c != 3) {
        img_free(im);
        return err_set(err, SS_EFORMAT, "camera %s: frame has %d "
                       "channels, not RGB", cam_name(c), im->c);
    }
    if (c->cfg.orientation != HW_ORIENT_NONE)
        orient(im, c->cfg.orientation);
    if (c->have_set)
        white_balance(im, c->set.wb);
    *frame = im;
    return 0;
}

static int
download(struct hw_cam *c, const CameraFilePath *path, struct img **frame,
         struct ss_err *err)
{
    CameraFile *f;
    const char *data;
    unsigned long size;
    int rc;

    gp_file_new(&f);
    rc = gp_camera_file_get(c->gp, path->folder, path->name,
                            GP_FILE_TYPE_NORMAL, f, c->ctx);
    if (rc < 0) {
        gp_file_unref(f);
        return gp_fail(c, rc, "download", err);
    }
    gp_file_get_data_and_size(f, &data, &size);
    rc = gp_camera_file_delete(c->gp, path->folder, path->name, c->ctx);
    if (rc < 0)
        log_warn("camera", "delete_failed file=%s/%s result=\"%s\"",
                 path->folder, path->name, gp_result_as_string(rc));
    rc = decode(c, data, size, frame, err);
    gp_file_unref(f);
    return rc;
}

/* Waits for the new file after a trigger: libgphoto2 turns the camera's
 * ObjectAdded event into GP_EVENT_FILE_ADDED.  Bounded by the capture
 * timeout, so a camera that never reports its picture cannot hang us. */
static int
wait_new_file(struct hw_cam *c, CameraFilePath *path, struct ss_err *err)
{
    double end = util_now_ms() + c->cfg.capture_timeout_ms;
    CameraEventType type;
    void *data;
    bool got = false;
    int rc, left;

    while ((left = (int)(end - util_now_ms())) > 0) {
        data = NULL;
        rc = gp_camera_wait_for_event(c->gp, left < 1000 ? left : 1000,
                                      &type, &data, c->ctx);
        if (rc < 0)
            return gp_fail(c, rc, "capture: waiting for the picture", err);
        if (type == GP_EVENT_FILE_ADDED && data != NULL && !got) {
            *path = *(CameraFilePath *)data;
            got = true;
        }
        free(data);
        if (got && (type == GP_EVENT_CAPTURE_COMPLETE ||
                    type == GP_EVENT_TIMEOUT || type == GP_EVENT_FILE_ADDED))
            return 0;
    }
    return err_set(err, SS_ETIMEOUT, "camera %s: capture: no picture "
                   "reported within %.0f ms", cam_name(c),
                   c->cfg.capture_timeout_ms);
}

/* One capture: trigger, wait for the new file, download, delete.
 * gp_camera_capture() is not used because libgphoto2's generic PTP
 * capture does not return a refused trigger (Device Busy): it waits for
 * capture events that never come. */
static int
capture_once(struct hw_cam *c, struct img **frame, struct ss_err *err)
{
    CameraFilePath path;
    int rc;

    rc = ensure_session(c, err);
    if (rc != 0)
        return rc;
    c->detail[0] = '\0';
    c->saw_busy = false;
    rc = gp_camera_trigger_capture(c->gp, c->ctx);
    if (rc < 0 && c->saw_busy)
        rc = GP_ERROR_CAMERA_BUSY;
    if (rc < 0)
        return gp_fail(c, rc, "capture", err);
    rc = wait_new_file(c, &path, err);
    if (rc != 0)
        return rc;
    return download(c, &path, frame, err);
}

static int
check_size(struct camera *cam, struct img *im, struct ss_err *err)
{
    if (cam->frame_w == 0 && cam->frame_h == 0) {
        cam->frame_w = im->w;
        cam->frame_h = im->h;
    }
    if (im->w == cam->frame_w && im->h == cam->frame_h)
        return 0;
    return err_set(err, SS_EDEVICE, "camera %s: frame is %dx%d, expected "
                   "%dx%d (was the image format changed on the camera?)",
                   cam->model, im->w, im->h, cam->frame_w, cam->frame_h);
}

/* Busy: bounded retries with back-off, then one reset, then give up. */
static int
capture_busy(struct hw_cam *c, struct img **frame, struct ss_err *err)
{
    double backoff = c->cfg.busy_backoff_ms;
    int rc, tries = 0;
    bool reset = false;

    for (;;) {
        rc = capture_once(c, frame, err);
        if (rc != SS_EBUSY)
            return rc;
        if (tries < c->cfg.busy_retries) {
            tries++;
            c->stats.busy_retries++;
            log_warn("camera", "busy_retry camera=\"%s\" attempt=%d "
                     "backoff_ms=%.0f", cam_name(c), tries, backoff);
            sleep_ms(backoff);
            backoff *= 2;
        } else if (!reset) {
            reset = true;
            c->stats.resets++;
            log_warn("camera", "busy_reset camera=\"%s\" retries=%d",
                     cam_name(c), tries);
            session_close(c);
        } else {
            return err_set(err, SS_EBUSY, "camera busy: %s still busy "
                           "after %d retries and a reset", cam_name(c),
                           tries);
        }
    }
}

static int
cam_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct hw_cam *c = cam->priv;
    int rc;

    *frame = NULL;
    rc = capture_busy(c, frame, err);
    if (rc == SS_ETIMEOUT) {
        c->stats.resets++;
        session_close(c);
    } else if (rc != 0 && rc != SS_EBUSY && rc != SS_EHELD &&
               rc != SS_EFORMAT && c->gp != NULL) {
        /* The session broke (camera switched off, cable, PTP/IP link):
         * reopen once at once; SS_EGONE when that fails too. */
        log_warn("camera", "session_lost camera=\"%s\" cause=\"%s\"",
                 cam_name(c), err != NULL ? err->msg : "");
        session_close(c);
        rc = capture_busy(c, frame, err);
    }
    if (rc == 0)
        rc = check_size(cam, *frame, err);
    if (rc == 0) {
        c->stats.captures++;
        return 0;
    }
    img_free(*frame);
    *frame = NULL;
    return rc;
}

static int
cam_preview(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct hw_cam *c = cam->priv;
    CameraFile *f;
    const char *data;
    unsigned long size;
    int rc;

    *frame = NULL;
    rc = ensure_session(c, err);
    if (rc != 0)
        return rc;
    gp_file_new(&f);
    rc = gp_camera_capture_preview(c->gp, f, c->ctx);
    if (rc == GP_ERROR_NOT_SUPPORTED)
        rc = err_set(err, -95, "camera %s: has no live view", cam_name(c));
    else if (rc < 0)
        rc = gp_fail(c, rc, "preview", err);
    if (rc == 0) {
        gp_file_get_data_and_size(f, &data, &size);
        rc = decode(c, data, size, frame, err);
    }
    gp_file_unref(f);
    if (rc == SS_ETIMEOUT || rc == SS_EGONE)
        session_close(c);
    return rc;
}

static int
cam_configure(struct camera *cam, const struct cam_settings *s,
              struct ss_err *err)
{
    struct hw_cam *c = cam->priv;
    int rc;

    if (!(s->exposure_ms > 0) || !(s->gain > 0) || !(s->wb[0] > 0) ||
        !(s->wb[1] > 0) || !(s->wb[2] > 0))
        return err_set(err, -22, "camera %s: exposure, gain and white "
                       "balance must be positive", cam_name(c));
    c->set = *s;
    c->have_set = true;
    rc = ensure_session(c, err);
    if (rc == 0)
        rc = apply_settings(c, err);
    return rc;
}

static int
cam_open(struct camera *cam, struct ss_err *err)
{
    struct hw_cam *c = cam->priv;
    struct img *probe = NULL;
    int rc;

    if (c->opened)
        return 0;
    rc = session_open(c, err);
    if (rc != 0)
        return rc;
    c->opened = true;
    log_notice("camera", "attached camera=\"%s\" model=\"%s\"", cam_name(c),
               cam->model);
    if (cam->frame_w > 0 && cam->frame_h > 0)
        return 0;
    /* The frame size is only known from a frame. */
    rc = cam_capture(cam, &probe, err);
    img_free(probe);
    if (rc != 0) {
        err_prefix(err, "first frame");
        session_close(c);
        c->opened = false;
    }
    return rc;
}

static void
cam_close(struct camera *cam)
{
    struct hw_cam *c = cam->priv;

    session_close(c);
    c->opened = false;
}

static void
cam_destroy(struct camera *cam)
{
    struct hw_cam *c = cam->priv;

    session_close(c);
    gp_log_remove_func(c->log_id);
    if (c->debug_id >= 0)
        gp_log_remove_func(c->debug_id);
    gp_context_unref(c->ctx);
    free(c);
    free(cam);
}

/* No split capture: libgphoto2 hands a capture over only once the file
 * is on the host.
 * LIMIT: the next tile's move cannot overlap this camera's readout and
 * transfer; each tile waits for them. */
static const struct cam_ops ops_live = {
    "gphoto2", cam_open, cam_close, cam_configure, cam_capture,
    cam_preview, NULL, cam_destroy, NULL, NULL,
};

static const struct cam_ops ops_still = {
    "gphoto2", cam_open, cam_close, cam_configure, cam_capture, NULL, NULL,
    cam_destroy, NULL, NULL,
};

int
hw_camera_new(const struct hw_camera_config *cfg, struct camera **out,
              struct ss_err *err)
{
    struct camera *cam = calloc(1, sizeof(*cam));
    struct hw_cam *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (cam == NULL || c == NULL) {
        free(cam);
        free(c);
        return err_set(err, -12, "out of memory");
    }
    c->cfg = *cfg;
    c->ctx = gp_context_new();
    gp_context_set_error_func(c->ctx, on_ctx_error, c);
    c->log_id = gp_log_add_func(GP_LOG_ERROR, on_gp_log, c);
    c->debug_id = log_debug_on("gphoto2") ?
        gp_log_add_func(GP_LOG_DEBUG, on_gp_debug, c) : -1;
    cam->ops = cfg->preview ? &ops_live : &ops_still;
    cam->priv = c;
    snprintf(cam->model, sizeof(cam->model), "%s",
             cfg->model[0] ? cfg->model : cfg->port[0] ? cfg->port
                                                       : "gphoto2");
    cam->frame_w = cfg->frame_w;
    cam->frame_h = cfg->frame_h;
    *out = cam;
    return 0;
}

int
hw_camera_stats(const struct camera *cam, struct hw_camera_stats *out)
{
    const struct hw_cam *c;

    if (cam == NULL || (cam->ops != &ops_live && cam->ops != &ops_still))
        return -22;
    c = cam->priv;
    *out = c->stats;
    return 0;
}
