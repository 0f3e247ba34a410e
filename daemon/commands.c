/* SPDX-License-Identifier: MIT */
/*
 * The control commands, one function each, run on the loop thread after
 * protocol/ validated the request.  Commands that change something record
 * the caller's uid in the events table.  Nothing here blocks on a device:
 * work for the microscope goes to the scan thread, and the hardware
 * device report runs on libuv's thread pool.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/slide.h"

typedef int (*cmd_fn)(struct daemon *d, const struct caller *who,
                      const struct proto_req *req, json_t **result,
                      struct ss_err *err);

static int
cmd_ping(struct daemon *d, const struct caller *who,
         const struct proto_req *req, json_t **result, struct ss_err *err)
{
    *result = json_pack("{s:s, s:i, s:i, s:I, s:s}", "version",
                        SLIDESCAN_VERSION, "protocol", PROTO_VERSION, "pid",
                        (int)getpid(), "uid", (json_int_t)who->uid, "driver",
                        d->conf.simulator ? "simulator" : "hardware");
    return 0;
}

static int
scan_result(struct daemon *d, int64_t id, json_t **result,
            struct ss_err *err)
{
    json_t *q = NULL, *s;
    size_t i;
    int rc;

    rc = cat_scan_json(d->cat, id, result, err);
    if (rc < 0)
        return rc;
    if (cat_queue_json(d->cat, false, 100000, &q, NULL) == 0) {
        daemon__live_queue(d, q);
        json_array_foreach(json_object_get(q, "scans"), i, s)
            if (json_integer_value(json_object_get(s, "id")) == id &&
                json_object_get(s, "position") != NULL)
                json_object_set(*result, "position",
                                json_object_get(s, "position"));
    }
    json_decref(q);
    daemon__live_scan(d, *result);
    return 0;
}

/* A region that leaves the stage's x-y travel is refused when queued:
 * the stage could never reach it.  So is one wider or taller than the
 * glass slide ([scan] glass_w_mm, glass_h_mm): it can only be a slip
 * (millimetres typed for micrometres), and scanning it would plan
 * thousands of tiles of nothing and hold the microscope for hours. */
static int
region_in_travel(struct daemon *d, const char *region, struct ss_err *err)
{
    double r[4], lo[2], hi[2];
    struct ss_err e;
    int a;

    if (cat_region_parse(region, r, &e) < 0)
        return err_set(err, SS_EPROTO, "args.region: %s", e.msg);
    for (a = 0; a < 2; a++) {
        lo[a] = d->conf.simulator ? 0 : d->conf.hw.stage.min_um[a];
        hi[a] = d->conf.simulator ? (a == 0 ? d->conf.sim.travel_x_um :
                                              d->conf.sim.travel_y_um)
                                  : d->conf.hw.stage.max_um[a];
    }
    if (r[0] < lo[0] || r[1] < lo[1] || r[0] + r[2] > hi[0] ||
        r[1] + r[3] > hi[1])
        return err_set(err, SS_EPROTO, "args.region: %.0f,%.0f,%.0f,%.0f "
                       "(x,y,w,h in um) leaves the stage travel "
                       "x %.0f..%.0f, y %.0f..%.0f um", r[0], r[1], r[2],
                       r[3], lo[0], hi[0], lo[1], hi[1]);
    if (r[2] > d->conf.glass_w_mm * 1000 || r[3] > d->conf.glass_h_mm * 1000)
        return err_set(err, SS_EPROTO, "args.region: %.0f,%.0f,%.0f,%.0f "
                       "(x,y,w,h in um) is %g x %g mm, larger than the "
                       "%g x %g mm slide glass ([scan] glass_w_mm, "
                       "glass_h_mm); the values are micrometres", r[0], r[1],
                       r[2], r[3], r[2] / 1000, r[3] / 1000,
                       d->conf.glass_w_mm, d->conf.glass_h_mm);
    return 0;
}

static int
cmd_scan(struct daemon *d, const struct caller *who,
         const struct proto_req *req, json_t **result, struct ss_err *err)
{
    const char *region = proto_arg_str(req, "region", NULL);
    const char *declared;
    char file_stain[32] = "";
    struct cat_scan_req r;
    struct ss_err bad;
    char detail[256];
    int64_t id = 0;
    int rc;

    memset(&r, 0, sizeof(r));
    r.slide = proto_arg_str(req, "slide", NULL);
    r.stain = proto_arg_str(req, "stain", NULL);
    r.image = proto_arg_str(req, "image", NULL);
    r.priority = (int)proto_arg_int(req, "priority", 0);
    r.uid = who->uid;
    /* LIMIT: on the simulator, image may name any file slidescand can
     * read; callers are already trusted members of the group. */
    if (r.image != NULL && !d->conf.simulator)
        return err_set(err, SS_EPROTO, "args.image: only the simulated "
                       "microscope takes a slide image; this one is "
                       "hardware");
    /* The stain a slide spec declares is the slide's; a scan under another
     * stain's profile would be analysed as the wrong stain. */
    declared = r.image != NULL ? sim_slide_spec_stain(r.image) : NULL;
    if (declared != NULL && strcmp(declared, r.stain) != 0)
        return err_set(err, SS_EPROTO, "args.stain: %s, but args.image "
                       "'%.200s' declares stain %s; give the slide's stain, "
                       "or an image that declares %s or no stain", r.stain,
                       r.image, declared, r.stain);
    /* A malformed slide spec, a file that is missing or no slide, or a
     * slide larger than the stage reaches is refused now, not when the
     * scan starts.
     * LIMIT: the check opens the file on the event loop's thread (the
     * reader walks its TIFF directories), so while a large slide on a
     * slow disk is opened every other client waits. */
    if (r.image != NULL &&
        (rc = sim_slide_spec_fit_check(&d->conf.sim, r.image, file_stain,
                                       sizeof(file_stain), &bad)) < 0)
        return err_set(err, rc == -ENOENT ? -ENOENT : SS_EPROTO,
                       "args.image: %s", bad.msg);
    /* The stain the file declares in its own metadata (an Aperio
     * "Stain = KI67", as our own slides carry) is the slide's too. */
    if (file_stain[0] != '\0' && !slide_stain_same(file_stain, r.stain))
        return err_set(err, SS_EPROTO, "args.stain: %s, but the file of "
                       "args.image '%.200s' declares stain %s in its "
                       "metadata; give the slide's stain", r.stain, r.image,
                       file_stain);
    if (region != NULL && (rc = region_in_travel(d, region, err)) < 0)
        return rc;
    rc = cat_scan_add(d->cat, &r, &id, err);
    if (rc == 0 && region != NULL)
        rc = cat_scan_set_region(d->cat, id, region, err);
    if (rc < 0)
        return rc;
    snprintf(detail, sizeof(detail), "slide %s stain %s priority %d%s%.128s",
             r.slide, r.stain, r.priority, r.image != NULL ? " image " : "",
             r.image != NULL ? r.image : "");
    daemon__audit(d, who->uid, "scan", id, detail);
    log_notice("sched", "queued scan=%lld slide=%s stain=%s priority=%d "
               "uid=%u", (long long)id, r.slide, r.stain, r.priority,
               (unsigned)who->uid);
    daemon__broadcast(d, "scan", daemon__scan_event(id, r.slide, "queued"));
    rc = scan_result(d, id, result, err);
    daemon__schedule(d);
    return rc;
}

static int
cmd_queue(struct daemon *d, const struct caller *who,
          const struct proto_req *req, json_t **result, struct ss_err *err)
{
    int rc = cat_queue_json(d->cat, proto_arg_bool(req, "all", false),
                            (int)proto_arg_int(req, "limit", 1000), result,
                            err);

    if (rc == 0)
        daemon__live_queue(d, *result);
    return rc;
}

static int
cmd_status(struct daemon *d, const struct caller *who,
           const struct proto_req *req, json_t **result, struct ss_err *err)
{
    *result = daemon__status_json(d);
    return 0;
}

/* The scan a command names, or the one on the microscope. */
static int
target(struct daemon *d, const struct proto_req *req, struct cat_scan *s,
       struct ss_err *err)
{
    int64_t id = proto_arg_int(req, "scan", 0);

    if (id == 0)
        id = d->st.scan;
    if (id == 0)
        return err_set(err, -ENOENT, "no scan is running; name one with "
                       "args.scan");
    return cat_scan_get(d->cat, id, s, err);
}

static void
changed(struct daemon *d, const struct caller *who, const char *action,
        const struct cat_scan *s, const char *state)
{
    log_notice("sched", "%s scan=%lld uid=%u", action, (long long)s->id,
               (unsigned)who->uid);
    daemon__audit(d, who->uid, action, s->id, NULL);
    daemon__broadcast(d, "scan", daemon__scan_event(s->id, s->slide, state));
}

/* Asks the scan thread for request r on the scan it runs, recording the
 * request in the catalogue first: once acknowledged it survives a stop
 * or crash (applied at the next start, see daemon__recover()).  0 when
 * asked, -ENOENT when s is not the scan on the microscope. */
static int
ask_scanner(struct daemon *d, const struct cat_scan *s, enum scan_request r,
            struct ss_err *err)
{
    const char *name = r == SCAN_REQ_PAUSE ? "pause" : "cancel";
    int rc;

    if (s->id != d->st.scan || !daemon__scanner_busy(d->scanner))
        return -ENOENT;
    /* On a full disk the catalogue spends its ballast on this write. */
    rc = cat_scan_request(d->cat, s->id, name, err);
    if (rc == -ENOSPC)
        return err_prefix(err, "scan %lld: the %s was not recorded (the "
                          "disk holding %s is full and its ballast "
                          "is spent; free some space and ask again)",
                          (long long)s->id, name, d->db_path);
    if (rc < 0)
        return err_prefix(err, "scan %lld: the %s was not recorded",
                          (long long)s->id, name);
    if (daemon__scanner_request(d->scanner, s->id, r))
        return 0;
    cat_scan_request(d->cat, s->id, "", NULL);
    return -ENOENT;
}

static int
cmd_pause(struct daemon *d, const struct caller *who,
          const struct proto_req *req, json_t **result, struct ss_err *err)
{
    struct cat_scan s;
    int rc;

    rc = target(d, req, &s, err);
    if (rc < 0)
        return rc;
    rc = ask_scanner(d, &s, SCAN_REQ_PAUSE, err);
    if (rc != -ENOENT && rc < 0)
        return rc;
    if (rc == 0) {
        changed(d, who, "pause", &s, "pausing");
        *result = json_pack("{s:I, s:s}", "scan", (json_int_t)s.id, "state",
                            "pausing");
        return 0;
    }
    rc = cat_scan_transition(d->cat, s.id, CAT_BIT(CAT_QUEUED), CAT_PAUSED,
                             "paused by request", err);
    if (rc == -EALREADY)
        return err_prefix(err, "only a queued or running scan can be "
                          "paused");
    if (rc < 0)
        return rc;
    changed(d, who, "pause", &s, "paused");
    *result = json_pack("{s:I, s:s}", "scan", (json_int_t)s.id, "state",
                        "paused");
    return 0;
}

/* `resume` of the scan waiting for space on the microscope: it checks
 * the space again now.  With room, the scan goes on at once; still short,
 * the answer (refused) says what is free and what is missing. */
static int
resume_space_wait(struct daemon *d, const struct caller *who,
                  const struct cat_scan *s, uint64_t need_bytes,
                  json_t **result, struct ss_err *err)
{
    char why[SS_ERR_MSG_MAX];

    daemon__scanner_recheck(d->scanner);
    if (space_check(&d->conf.space, d->conf.data_dir, need_bytes, NULL,
                    NULL) == -ENOSPC) {
        space_full_reason(&d->conf.space, d->conf.data_dir, need_bytes,
                          NULL, why, sizeof(why));
        return err_set(err, -EBUSY, "scan %lld waits for space and cannot "
                       "go on yet: %s", (long long)s->id, why);
    }
    changed(d, who, "resume", s, "resuming");
    *result = json_pack("{s:I, s:s, s:s}", "scan", (json_int_t)s->id,
                        "state", "resuming", "note", "free space checked "
                        "again: there is room now; the scan goes on");
    return 0;
}

/* Why a scan on the microscope is not resumed or requeued. */
static int
on_microscope(struct daemon *d, const struct cat_scan *s, const char *action,
              struct ss_err *err)
{
    uint64_t need;

    if (daemon__scanner_space_wait(d->scanner, s->id, &need))
        return err_set(err, -EBUSY, "scan %lld waits on the microscope "
                       "for space and needs no %s: %s (`resume` checks "
                       "again at once; pause or cancel takes it off the "
                       "microscope)", (long long)s->id, action,
                       d->st.reason);
    if (strcmp(action, "resume") == 0 && s->state == CAT_PAUSED)
        return err_set(err, -EBUSY, "scan %lld is pausing after its "
                       "current tile; resume it once it is paused",
                       (long long)s->id);
    if (strcmp(action, "resume") == 0)
        return err_set(err, -EBUSY, "scan %lld is running (%s); only a "
                       "paused scan can be resumed", (long long)s->id,
                       cat_state_name(s->state));
    return err_set(err, -EBUSY, "scan %lld is on the microscope (%s%s%s); "
                   "it goes on by itself", (long long)s->id,
                   cat_state_name(s->state), s->reason[0] ? ": " : "",
                   s->reason);
}

/* Moves a scan back into the queue from the states in mask. */
static int
back_to_queue(struct daemon *d, const struct caller *who,
              const struct proto_req *req, unsigned mask, const char *action,
              bool to_end, json_t **result, struct ss_err *err)
{
    struct cat_scan s;
    uint64_t need;
    int64_t n = 0;
    int rc;

    rc = cat_scan_get(d->cat, proto_arg_int(req, "scan", 0), &s, err);
    if (rc < 0)
        return rc;
    if (s.id == d->st.scan && strcmp(action, "resume") == 0 &&
        daemon__scanner_withdraw(d->scanner, s.id, SCAN_REQ_PAUSE)) {
        if (cat_scan_request(d->cat, s.id, "", err) < 0)
            log_warn("sched", "request not cleared scan=%lld cause=\"%s\"",
                     (long long)s.id, err->msg);
        changed(d, who, "resume", &s, cat_state_name(s.state));
        *result = json_pack("{s:I, s:s, s:s}", "scan", (json_int_t)s.id,
                            "state", cat_state_name(s.state), "note",
                            "the pause asked for was withdrawn; the scan "
                            "goes on");
        return 0;
    }
    if (s.id == d->st.scan && strcmp(action, "resume") == 0 &&
        daemon__scanner_space_wait(d->scanner, s.id, &need))
        return resume_space_wait(d, who, &s, need, result, err);
    if (s.id == d->st.scan)
        return on_microscope(d, &s, action, err);
    rc = cat_scan_transition(d->cat, s.id, mask, CAT_QUEUED, "", err);
    if (rc < 0)
        return rc;
    if (to_end &&
        cat_query_int(d->cat, &n, "SELECT COUNT(*) FROM scans WHERE state "
                      "= 'queued'", "") == 0)
        cat_scan_move(d->cat, s.id, (int)n, NULL);
    changed(d, who, action, &s, "queued");
    rc = scan_result(d, s.id, result, err);
    daemon__schedule(d);
    return rc;
}

static int
cmd_resume(struct daemon *d, const struct caller *who,
           const struct proto_req *req, json_t **result, struct ss_err *err)
{
    int rc = back_to_queue(d, who, req, CAT_BIT(CAT_PAUSED), "resume", false,
                           result, err);

    if (rc == -EALREADY)
        return err_prefix(err, "only a paused scan can be resumed");
    return rc;
}

static int
cmd_requeue(struct daemon *d, const struct caller *who,
            const struct proto_req *req, json_t **result, struct ss_err *err)
{
    int rc = back_to_queue(d, who, req, CAT_BIT(CAT_FAILED) |
                           CAT_BIT(CAT_CANCELLED) | CAT_BIT(CAT_PAUSED),
                           "requeue", true, result, err);

    if (rc == -EALREADY)
        return err_prefix(err, "only a failed, cancelled or paused scan can "
                          "be requeued");
    return rc;
}

static int
cmd_cancel(struct daemon *d, const struct caller *who,
           const struct proto_req *req, json_t **result, struct ss_err *err)
{
    struct cat_scan s;
    int rc;

    rc = cat_scan_get(d->cat, proto_arg_int(req, "scan", 0), &s, err);
    if (rc < 0)
        return rc;
    rc = ask_scanner(d, &s, SCAN_REQ_CANCEL, err);
    if (rc != -ENOENT && rc < 0)
        return rc;
    if (rc == 0) {
        changed(d, who, "cancel", &s, "cancelling");
        *result = json_pack("{s:I, s:s}", "scan", (json_int_t)s.id, "state",
                            "cancelling");
        return 0;
    }
    rc = cat_scan_transition(d->cat, s.id, CAT_BIT(CAT_QUEUED) |
                             CAT_BIT(CAT_PAUSED) | CAT_BIT(CAT_FAILED),
                             CAT_CANCELLED, "cancelled by request", err);
    if (rc == -EALREADY)
        return err_prefix(err, "only a queued, running, paused or failed "
                          "scan can be cancelled");
    if (rc < 0)
        return rc;
    changed(d, who, "cancel", &s, "cancelled");
    daemon__schedule(d);
    *result = json_pack("{s:I, s:s}", "scan", (json_int_t)s.id, "state",
                        "cancelled");
    return 0;
}

static int
cmd_move(struct daemon *d, const struct caller *who,
         const struct proto_req *req, json_t **result, struct ss_err *err)
{
    struct cat_scan s;
    char detail[64];
    int rc;

    rc = cat_scan_get(d->cat, proto_arg_int(req, "scan", 0), &s, err);
    if (rc < 0)
        return rc;
    rc = cat_scan_move(d->cat, s.id, (int)proto_arg_int(req, "position", 1),
                       err);
    if (rc == -EALREADY)
        return err_prefix(err, "only a queued scan can be moved");
    if (rc < 0)
        return rc;
    snprintf(detail, sizeof(detail), "to position %lld",
             (long long)proto_arg_int(req, "position", 1));
    daemon__audit(d, who->uid, "move", s.id, detail);
    daemon__broadcast(d, "queue", json_pack("{s:I}", "scan",
                                            (json_int_t)s.id));
    return cat_queue_json(d->cat, false, 1000, result, err);
}

static int
cmd_slides(struct daemon *d, const struct caller *who,
           const struct proto_req *req, json_t **result, struct ss_err *err)
{
    return cat_slides_json(d->cat, (int)proto_arg_int(req, "limit", 1000),
                           result, err);
}

static int
cmd_show(struct daemon *d, const struct caller *who,
         const struct proto_req *req, json_t **result, struct ss_err *err)
{
    json_t *sc;
    size_t i;
    int rc;

    rc = cat_slide_show_json(d->cat, proto_arg_str(req, "slide", ""),
                             proto_arg_bool(req, "tiles", false), result,
                             err);
    if (rc < 0)
        return rc;
    json_array_foreach(json_object_get(*result, "scans"), i, sc)
        daemon__live_scan(d, sc);
    json_object_set_new(*result, "data_dir", json_string(d->conf.data_dir));
    return rc;
}

static int
cmd_calibrate(struct daemon *d, const struct caller *who,
              const struct proto_req *req, json_t **result,
              struct ss_err *err)
{
    const char *stain = proto_arg_str(req, "stain", "HE");
    int rc;

    if (d->stopping)
        return err_set(err, -ESHUTDOWN, "slidescand is stopping");
    rc = daemon__scanner_calibrate(d->scanner, daemon__stain_index(stain),
                                   who->serial, req->id);
    if (rc == -EBUSY)
        return err_set(err, -EBUSY, "the microscope is busy with scan "
                       "%lld; calibrate when it is idle (pause the scan "
                       "first)", (long long)d->st.scan);
    if (rc < 0)
        return err_set(err, rc, "cannot start calibration");
    d->st.calibrating = true;
    daemon__status_changed(d);
    daemon__audit(d, who->uid, "calibrate", 0, stain);
    return 1;
}

struct devwork {
    uv_work_t req;
    struct daemon *d;
    uint64_t serial;
    json_int_t id;
    struct hw_config hw;
    json_t *report;
    struct ss_err err;
    int rc;
};

static void
devices_work(uv_work_t *w)
{
    struct devwork *dw = w->data;

    err_clear(&dw->err);
    dw->rc = hw_devices_report(&dw->hw, &dw->report, &dw->err);
}

static void
devices_done(uv_work_t *w, int status)
{
    struct devwork *dw = w->data;
    json_t *res = daemon__scanner_devices(dw->d->scanner);

    if (dw->rc == 0)
        json_object_set_new(res, "hardware", dw->report);
    else
        json_object_set_new(res, "hardware_error",
                            json_string(dw->err.msg));
    daemon__reply_later(dw->d, dw->serial, dw->id, 0, res, NULL);
    free(dw);
}

static int
cmd_devices(struct daemon *d, const struct caller *who,
            const struct proto_req *req, json_t **result, struct ss_err *err)
{
    struct devwork *dw;

    if (d->conf.simulator) {
        *result = daemon__scanner_devices(d->scanner);
        return 0;
    }
    dw = calloc(1, sizeof(*dw));
    if (dw == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    dw->d = d;
    dw->serial = who->serial;
    dw->id = req->id;
    dw->hw = d->conf.hw;
    dw->req.data = dw;
    if (uv_queue_work(d->loop, &dw->req, devices_work, devices_done) != 0) {
        free(dw);
        return err_set(err, -EIO, "cannot start the device report");
    }
    return 1;
}

static int
cmd_reload(struct daemon *d, const struct caller *who,
           const struct proto_req *req, json_t **result, struct ss_err *err)
{
    char applied[1024], restart[1024];
    int rc;

    rc = daemon__reload(d, applied, sizeof(applied), restart,
                        sizeof(restart), err);
    daemon__audit(d, who->uid, "reload", 0, rc == 0 ? applied : err->msg);
    if (rc < 0)
        return rc;
    *result = json_pack("{s:s, s:s}", "applied", applied, "needs_restart",
                        restart);
    return 0;
}

static int
cmd_analyse(struct daemon *d, const struct caller *who,
            const struct proto_req *req, json_t **result, struct ss_err *err)
{
    struct cat_scan s;
    int rc;

    rc = cat_scan_get(d->cat, proto_arg_int(req, "scan", 0), &s, err);
    if (rc < 0)
        return rc;
    if (s.state != CAT_DONE)
        return err_set(err, -EALREADY, "scan %lld is %s; only a done scan "
                       "(with its WSI) can be analysed", (long long)s.id,
                       cat_state_name(s.state));
    if (d->st.analysing == s.id)
        return err_set(err, -EALREADY, "scan %lld is being analysed now",
                       (long long)s.id);
    rc = cat_analysis_queue(d->cat, s.id, err);
    if (rc < 0)
        return rc;
    daemon__audit(d, who->uid, "analyse", s.id, NULL);
    daemon__supervisor_kick(d->worker);
    *result = json_pack("{s:I, s:s}", "scan", (json_int_t)s.id, "analysis",
                        "queued");
    return 0;
}

static const cmd_fn handlers[PROTO_CMD_COUNT] = {
    [PROTO_CMD_PING] = cmd_ping,
    [PROTO_CMD_SCAN] = cmd_scan,
    [PROTO_CMD_QUEUE] = cmd_queue,
    [PROTO_CMD_STATUS] = cmd_status,
    [PROTO_CMD_PAUSE] = cmd_pause,
    [PROTO_CMD_RESUME] = cmd_resume,
    [PROTO_CMD_CANCEL] = cmd_cancel,
    [PROTO_CMD_REQUEUE] = cmd_requeue,
    [PROTO_CMD_MOVE] = cmd_move,
    [PROTO_CMD_SLIDES] = cmd_slides,
    [PROTO_CMD_SHOW] = cmd_show,
    [PROTO_CMD_CALIBRATE] = cmd_calibrate,
    [PROTO_CMD_DEVICES] = cmd_devices,
    [PROTO_CMD_RELOAD] = cmd_reload,
    [PROTO_CMD_ANALYSE] = cmd_analyse,
};

int
daemon__command(struct daemon *d, const struct caller *who,
                const struct proto_req *req, json_t **result,
                struct ss_err *err)
{
    cmd_fn fn = handlers[req->cmd];
    int rc;

    *result = NULL;
    if (fn == NULL)
        return err_set(err, -ENOSYS, "cmd: '%s' is not handled here",
                       proto_cmd_name(req->cmd));
    rc = fn(d, who, req, result, err);
    if (rc == 0 && *result == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    if (rc < 0 && rc != SS_EPROTO)
        log_info("server", "refused cmd=%s uid=%u cause=\"%s\"",
                 proto_cmd_name(req->cmd), (unsigned)who->uid, err->msg);
    return rc;
}
