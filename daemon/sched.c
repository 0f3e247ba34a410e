/* SPDX-License-Identifier: MIT */
/*
 * The scheduler on the loop thread: decides what the microscope does
 * next, receives what the scan and assembly threads report, keeps the
 * status that `status` and sd_notify show, and cleans up after a crash at
 * start-up.
 *
 * Order of work: a scan that was on the microscope when the daemon
 * stopped (calibrating .. capturing) resumes first; then queued scans by
 * priority, then queue position.  A scan paused by a device fault holds
 * the queue until someone resumes, requeues or cancels it; devices that
 * cannot be opened keep the queue waiting and are retried every
 * device_retry_s.  A failed scan never stops the queue.
 */
#include "daemon/daemon.h"

#include <dirent.h>
#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/tilestore.h"

struct dmsg *
daemon__msg_new(enum dmsg_kind kind, int64_t scan)
{
    struct dmsg *m = calloc(1, sizeof(*m));

    if (m == NULL)
        abort();
    m->kind = kind;
    m->scan = scan;
    return m;
}

void
daemon__post(struct daemon *d, struct dmsg *m)
{
    pthread_mutex_lock(&d->mq_lock);
    if (d->mq_closed) {
        pthread_mutex_unlock(&d->mq_lock);
        json_decref(m->ev);
        free(m);
        return;
    }
    if (d->mq_tail != NULL)
        d->mq_tail->next = m;
    else
        d->mq_head = m;
    d->mq_tail = m;
    uv_async_send(&d->wake);
    pthread_mutex_unlock(&d->mq_lock);
}

json_t *
daemon__scan_event(int64_t scan, const char *slide, const char *state)
{
    return json_pack("{s:I, s:s, s:s}", "scan", (json_int_t)scan, "slide",
                     slide, "state", state);
}

void
daemon__audit(struct daemon *d, int64_t uid, const char *action,
              int64_t scan, const char *detail)
{
    struct ss_err err;

    if (cat_event(d->cat, uid, action, scan, detail, &err) < 0)
        log_error("catalogue", "audit record lost action=%s cause=\"%s\"",
                  action, err.msg);
}

static int64_t
queued_count(struct daemon *d)
{
    int64_t n = 0;

    cat_query_int(d->cat, &n, "SELECT COUNT(*) FROM scans WHERE state = "
                  "'queued'", "");
    return n;
}

/* The scan on the microscope waits (for disk space) without leaving it. */
static bool
scan_paused(const struct dstatus *s)
{
    return s->scan != 0 && strcmp(s->state, "paused") == 0;
}

/* A retry of devices that did not answer: the scan is on the
 * microscope only to open them, and stays queued in the catalogue until
 * they answer.  Until then every view shows the wait, as between two
 * retries, not a scan that flickers into the microscope and back. */
static bool
retrying_devices(const struct dstatus *s)
{
    return s->scan != 0 && s->device_wait &&
           strcmp(s->state, "queued") == 0;
}

/* The scan the views show on the microscope, 0 for none. */
static int64_t
shown_scan(const struct dstatus *s)
{
    return retrying_devices(s) ? 0 : s->scan;
}

/* Why nothing goes on: a scan paused for space on the microscope, or
 * what the scheduler waits for. */
static const char *
waiting_text(const struct dstatus *s)
{
    return scan_paused(s) ? s->reason : s->waiting;
}

json_t *
daemon__status_json(struct daemon *d)
{
    struct dstatus *s = &d->st;
    json_t *o, *scan = json_null(), *an = json_null();
    const char *state = d->stopping ? "stopping"
                        : scan_paused(s) ? "waiting"
                        : shown_scan(s) != 0 ? "scanning"
                        : s->calibrating ? "calibrating"
                        : s->waiting[0] != '\0' ? "waiting" : "idle";

    if (shown_scan(s) != 0)
        scan = json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:f}",
                         "id", (json_int_t)s->scan, "slide", s->slide,
                         "stain", s->stain, "state", s->state, "reason",
                         s->reason, "tiles_done", s->tiles_done,
                         "tiles_total", s->tiles_total, "elapsed_s",
                         (util_now_ms() - s->started_wall_ms) / 1000.0,
                         "virtual_s", s->virtual_ms / 1000.0);
    if (s->analysing != 0)
        an = json_pack("{s:I, s:i, s:i}", "scan", (json_int_t)s->analysing,
                       "done", s->a_done, "total", s->a_total);
    o = json_pack("{s:s, s:s, s:o, s:o, s:o, s:I, s:s, s:i}", "state",
                  state, "driver", d->conf.simulator ? "simulator"
                                                     : "hardware",
                  "scan", scan, "assembling", s->assembling != 0
                  ? json_integer(s->assembling) : json_null(),
                  "analysing", an, "queued", (json_int_t)queued_count(d),
                  "waiting", waiting_text(s), "watchers", d->nwatchers);
    return o;
}

void
daemon__live_scan(struct daemon *d, json_t *scan)
{
    const struct dstatus *s = &d->st;
    const char *now;
    int st;

    if (shown_scan(s) == 0 ||
        json_integer_value(json_object_get(scan, "id")) != s->scan)
        return;
    now = json_string_value(json_object_get(scan, "state"));
    st = cat_state_parse(now);
    if (st == CAT_QUEUED || (st >= 0 && (CAT_ACTIVE_MASK & CAT_BIT(st)))) {
        json_object_set_new(scan, "state", json_string(
            st == CAT_QUEUED && strcmp(s->state, "queued") == 0
            ? "calibrating" : s->state));
        json_object_set_new(scan, "reason", json_string(s->reason));
    }
    json_object_del(scan, "position");
}

void
daemon__live_queue(struct daemon *d, json_t *queue)
{
    json_t *scans = json_object_get(queue, "scans"), *sc;
    size_t i;
    int pos = 1;

    json_array_foreach(scans, i, sc) {
        if (shown_scan(&d->st) != 0 &&
            json_integer_value(json_object_get(sc, "id")) == d->st.scan) {
            json_incref(sc);
            json_array_remove(scans, i);
            json_array_insert_new(scans, 0, sc);
            daemon__live_scan(d, sc);
            break;
        }
    }
    json_array_foreach(scans, i, sc)
        if (json_object_get(sc, "position") != NULL)
            json_object_set_new(sc, "position", json_integer(pos++));
}

void
daemon__status_changed(struct daemon *d)
{
    struct dstatus *s = &d->st;
    char text[256];

    if (d->stopping)
        snprintf(text, sizeof(text), "stopping");
    else if (scan_paused(s))
        snprintf(text, sizeof(text), "paused %s (scan %lld) at %d/%d "
                 "tiles: %.150s", s->slide, (long long)s->scan,
                 s->tiles_done, s->tiles_total, s->reason);
    else if (shown_scan(s) != 0)
        snprintf(text, sizeof(text), "scanning %s (scan %lld) %s %d/%d "
                 "tiles; %lld queued", s->slide, (long long)s->scan,
                 s->state, s->tiles_done, s->tiles_total,
                 (long long)queued_count(d));
    else if (s->waiting[0] != '\0')
        snprintf(text, sizeof(text), "waiting: %.200s", s->waiting);
    else
        snprintf(text, sizeof(text), "idle; %lld queued",
                 (long long)queued_count(d));
    daemon__notify_status(d, text);
}

static void
on_retry(uv_timer_t *t)
{
    struct daemon *d = t->data;

    d->retry_armed = false;
    log_info("sched", "retrying devices");
    daemon__schedule(d);
}

static void
arm_retry(struct daemon *d)
{
    uint64_t ms = (uint64_t)(d->conf.device_retry_s * 1000);

    d->retry_armed = true;
    uv_timer_start(&d->retry, on_retry, ms, 0);
}

/* The scan to run next: one interrupted on the microscope, else the
 * first queued. */
static int
pick(struct daemon *d, int64_t *id)
{
    int64_t *ids = NULL;
    int n = 0;

    if (cat_scans_in(d->cat, CAT_ACTIVE_MASK, &ids, &n, NULL) == 0 &&
        n > 0) {
        *id = ids[0];
        free(ids);
        return 0;
    }
    free(ids);
    return cat_scan_next(d->cat, id, NULL);
}

static bool
queue_held(struct daemon *d)
{
    char reason[512];
    int64_t id;

    if (cat_queue_holder(d->cat, &id, reason, sizeof(reason), NULL) != 0)
        return false;
    snprintf(d->st.waiting, sizeof(d->st.waiting), "queue held by scan "
             "%lld (paused: %.300s); resume, requeue or cancel it",
             (long long)id, reason);
    return true;
}

/* The queue no longer waits: a scan left it, or nothing is left to
 * start. */
static void
drop_waiting(struct daemon *d)
{
    d->st.waiting[0] = '\0';
    d->st.device_wait = false;
}

static void
start_scan(struct daemon *d, int64_t id)
{
    struct cat_scan s;

    if (cat_scan_get(d->cat, id, &s, NULL) < 0)
        return;
    if (daemon__scanner_start(d->scanner, id) < 0)
        return;
    memset(&d->st.slide, 0, sizeof(d->st.slide));
    d->st.scan = id;
    snprintf(d->st.slide, sizeof(d->st.slide), "%s", s.slide);
    snprintf(d->st.stain, sizeof(d->st.stain), "%s", s.stain);
    snprintf(d->st.state, sizeof(d->st.state), "%s",
             cat_state_name(s.state));
    d->st.tiles_done = s.tiles_done;
    d->st.tiles_total = s.tiles_total;
    d->st.started_wall_ms = util_now_ms();
    d->st.virtual_ms = s.virtual_ms;
    if (s.state != CAT_QUEUED)
        drop_waiting(d);
    snprintf(d->st.reason, sizeof(d->st.reason), "%s", s.reason);
}

void
daemon__schedule(struct daemon *d)
{
    int64_t id;

    if (d->stopping) {
        daemon__maybe_finish(d);
        return;
    }
    daemon__supervisor_kick(d->worker);
    if (daemon__scanner_busy(d->scanner) || d->retry_armed) {
        daemon__status_changed(d);
        return;
    }
    if (queue_held(d)) {
        d->st.device_wait = false;
        daemon__status_changed(d);
        return;
    }
    /* After devices that did not answer, the wait stays on show while
     * the next scan opens them (see retrying_devices()). */
    if (!d->st.device_wait)
        drop_waiting(d);
    if (pick(d, &id) == 0)
        start_scan(d, id);
    if (d->st.scan == 0)
        drop_waiting(d);
    daemon__status_changed(d);
}

static void
on_event(struct daemon *d, struct dmsg *m)
{
    const char *state = json_string_value(json_object_get(m->ev, "state"));
    json_t *v;

    if (m->scan != 0 && m->scan == d->st.scan) {
        if (state != NULL)
            snprintf(d->st.state, sizeof(d->st.state), "%s", state);
        if (state != NULL && strcmp(state, "queued") != 0)
            drop_waiting(d);
        v = json_object_get(m->ev, "reason");
        snprintf(d->st.reason, sizeof(d->st.reason), "%s",
                 json_is_string(v) ? json_string_value(v) : "");
        if ((v = json_object_get(m->ev, "tiles_done")) != NULL)
            d->st.tiles_done = (int)json_integer_value(v);
        if ((v = json_object_get(m->ev, "tiles_total")) != NULL)
            d->st.tiles_total = (int)json_integer_value(v);
        if ((v = json_object_get(m->ev, "virtual_s")) != NULL)
            d->st.virtual_ms = json_number_value(v) * 1000;
    }
    if (strcmp(m->text, "scan") == 0 && state != NULL &&
        strcmp(state, "assembling") == 0)
        d->st.assembling = m->scan;
    daemon__broadcast(d, m->text, m->ev);
    m->ev = NULL;
    daemon__status_changed(d);
}

static void
on_scan_end(struct daemon *d, struct dmsg *m)
{
    daemon__scanner_idle(d->scanner);
    d->st.scan = 0;
    d->st.reason[0] = '\0';
    d->st.calibrating = false;
    d->st.device_wait = false;
    switch (m->outcome) {
    case SCAN_OUT_ASSEMBLE:
        daemon__assembler_push(d->assembler, m->scan);
        break;
    case SCAN_OUT_DEVICE_WAIT:
        snprintf(d->st.waiting, sizeof(d->st.waiting), "%s", m->text);
        d->st.device_wait = true;
        log_warn("sched", "waiting retry_s=%g cause=\"%s\"",
                 d->conf.device_retry_s, m->text);
        arm_retry(d);
        break;
    default:
        break;
    }
    daemon__schedule(d);
}

static void
on_calib_end(struct daemon *d, struct dmsg *m)
{
    daemon__scanner_idle(d->scanner);
    d->st.calibrating = false;
    daemon__reply_later(d, m->client, m->req_id, m->outcome, m->ev,
                        m->text);
    m->ev = NULL;
    daemon__schedule(d);
}

static void
on_assembly_end(struct daemon *d, struct dmsg *m)
{
    if (d->st.assembling == m->scan)
        d->st.assembling = 0;
    daemon__schedule(d);
}

void
daemon__drain(uv_async_t *h)
{
    struct daemon *d = h->data;
    struct dmsg *m, *next;

    pthread_mutex_lock(&d->mq_lock);
    m = d->mq_head;
    d->mq_head = d->mq_tail = NULL;
    pthread_mutex_unlock(&d->mq_lock);
    for (; m != NULL; m = next) {
        next = m->next;
        switch (m->kind) {
        case DMSG_EVENT: on_event(d, m); break;
        case DMSG_SCAN_END: on_scan_end(d, m); break;
        case DMSG_CALIB_END: on_calib_end(d, m); break;
        case DMSG_ASSEMBLY_END: on_assembly_end(d, m); break;
        }
        json_decref(m->ev);
        free(m);
    }
}

/* True for the names our writers give files before they are committed:
 * "*.partial" (WSI writer), "*.tmp" and "*.tmp.<pid>" (durable writes,
 * calibration frames, backups). */
static bool
is_temporary(const char *name)
{
    size_t len = strlen(name);
    const char *t;

    if (len > 8 && strcmp(name + len - 8, ".partial") == 0)
        return true;
    t = strstr(name, ".tmp");
    if (t == NULL || t == name)
        return false;
    t += 4;
    if (*t == '\0')
        return true;
    if (*t++ != '.' || *t == '\0')
        return false;
    while (*t >= '0' && *t <= '9')
        t++;
    return *t == '\0';
}

static int swept;

static int
sweep_one(const char *path, const struct stat *st, int flag,
          struct FTW *ftw)
{
    if (flag == FTW_F && S_ISREG(st->st_mode) &&
        is_temporary(path + ftw->base) && unlink(path) == 0) {
        log_debug("recover", "removed %s", path);
        swept++;
    }
    return 0;
}

/* Removes every temporary file left anywhere under the data directory by
 * a process that died before committing it.  Only this daemon writes
 * there and it runs once per data directory, so at start-up no temporary
 * file can belong to a live writer: leftover workers are stopped first. */
static void
clean_temporaries(struct daemon *d)
{
    swept = 0;
    if (nftw(d->conf.data_dir, sweep_one, 16, FTW_PHYS) != 0)
        log_warn("recover", "cannot walk data_dir=%s cause=\"%s\"",
                 d->conf.data_dir, strerror(errno));
    if (swept > 0)
        log_notice("recover", "removed temporary files count=%d", swept);
}

static void
clean_scan(struct daemon *d, int64_t id)
{
    struct tilestore *ts;
    struct ss_err err;
    int n = 0;

    if (tilestore_open(d->conf.data_dir, id, &ts, &err) < 0) {
        log_warn("recover", "scan=%lld cause=\"%s\"", (long long)id,
                 err.msg);
        return;
    }
    if (tilestore_clean(ts, &n, &err) < 0)
        log_warn("recover", "scan=%lld cause=\"%s\"", (long long)id,
                 err.msg);
    else if (n > 0)
        log_notice("recover", "removed temporary files scan=%lld count=%d",
                   (long long)id, n);
    tilestore_close(ts);
}

/* A pause or cancel acknowledged for the scan on the microscope before
 * the daemon stopped or crashed takes effect now, before that scan would
 * resume. */
static int
apply_requests(struct daemon *d, struct ss_err *err)
{
    int64_t ids[64];
    int n = 0, i, rc;

    rc = cat_scan_apply_requests(d->cat, ids, &n, err);
    if (rc < 0)
        return err_prefix(err, "catalogue: applying requests");
    for (i = 0; i < n; i++) {
        struct cat_scan s;
        if (cat_scan_get(d->cat, ids[i], &s, NULL) < 0)
            continue;
        log_notice("recover", "request applied scan=%lld state=%s",
                   (long long)s.id, cat_state_name(s.state));
        daemon__audit(d, -1, s.state == CAT_CANCELLED ? "cancel" : "pause",
                      s.id, "asked before the daemon stopped");
    }
    return 0;
}

/* A scan that was waiting on the microscope for space (not paused by a
 * user) goes back to the state it left, to resume by itself once there
 * is room, with the tiles it has. */
static int
rewait_space(struct daemon *d, struct ss_err *err)
{
    int64_t ids[64];
    int n = 0, i;

    if (cat_scan_rewait_space(d->cat, ids, &n, err) < 0)
        return err_prefix(err, "catalogue: resuming waits for space");
    for (i = 0; i < n; i++) {
        log_notice("recover", "waiting for space again scan=%lld",
                   (long long)ids[i]);
        daemon__audit(d, -1, "resume", ids[i], "was waiting for space "
                      "when the daemon stopped");
    }
    return 0;
}

int
daemon__recover(struct daemon *d, struct ss_err *err)
{
    int64_t *ids = NULL;
    int n = 0, i, rc;

    daemon__supervisor_orphans(d->worker);
    clean_temporaries(d);
    rc = apply_requests(d, err);
    if (rc == 0)
        rc = rewait_space(d, err);
    if (rc < 0)
        return rc;
    rc = cat_scans_in(d->cat, CAT_ACTIVE_MASK | CAT_BIT(CAT_ASSEMBLING),
                      &ids, &n, err);
    if (rc < 0)
        return rc;
    for (i = 0; i < n; i++) {
        struct cat_scan s;
        clean_scan(d, ids[i]);
        if (cat_scan_get(d->cat, ids[i], &s, err) < 0)
            continue;
        log_notice("recover", "resuming scan=%lld slide=%s state=%s "
                   "tiles_done=%d tiles_total=%d", (long long)s.id, s.slide,
                   cat_state_name(s.state), s.tiles_done, s.tiles_total);
        daemon__audit(d, -1, "resume", s.id, cat_state_name(s.state));
        if (s.state == CAT_ASSEMBLING)
            daemon__assembler_push(d->assembler, s.id);
    }
    free(ids);
    if (cat_exec(d->cat, "UPDATE analyses SET state = 'queued' WHERE "
                 "state = 'running'", "") < 0)
        return err_set(err, -EIO, "catalogue: cannot requeue analyses");
    return 0;
}
