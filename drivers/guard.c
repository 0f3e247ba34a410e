/* SPDX-License-Identifier: MIT */
/*
 * Guarded devices: each camera or stage call is posted to the device's
 * own thread and the caller waits for it with a deadline.  The thread and
 * the device it drives form a "worker".  A worker whose call misses its
 * deadline is abandoned: the caller returns SS_ETIMEOUT at once, the worker
 * goes on a quarantine list, and nothing touches its device until the
 * stuck call comes back (then the device is closed and freed at the next
 * rebuild or at the end).  Workers are reference counted, so whichever of
 * the guard and the thread finishes last frees the worker; threads are
 * detached and never joined.
 *
 * Results travel in the job, never through the caller's pointers, because
 * an abandoned call may return after its caller has gone.
 */
#include "drivers/guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

#define OP_DESTROY GUARD_NOPS       /* internal: free the device */
#define OP_BEGIN (GUARD_NOPS + 1)   /* internal: the halves of a split */
#define OP_END (GUARD_NOPS + 2)     /* capture, under the capture deadline */

struct gjob {
    int op;
    struct cam_settings settings;
    bool lamp_on;
    double pos[3];
    bool busy;
    struct img *frame;
    int rc;
    struct ss_err err;
};

struct gworker {
    pthread_mutex_t mu;
    pthread_cond_t cv_job;          /* a job was posted, or quit */
    pthread_cond_t cv_done;         /* the job finished */
    int refs;                       /* the guard's and the thread's */
    bool has_job, done, quit;
    bool abandoned;                 /* the caller gave up on the job */
    bool returned;                  /* ... and the job came back since */
    bool orphan;                    /* the guard is gone: touch nothing */
    bool closed;                    /* the device was closed or freed */
    bool is_cam;
    void *dev;                      /* struct camera * or struct stage * */
    double posted_ms;
    struct gjob job;
};

struct gdev {
    const char *kind;               /* "camera", "stage" */
    bool is_cam;
    pthread_mutex_t call_mu;        /* one call at a time per device */
    void *dev;                      /* NULL once lost or never given */
    struct gworker *w;
    bool want_open;                 /* the caller opened it last */
    bool is_open;                   /* ... and that open succeeded */
    bool reopen;                    /* the device said it is gone: close
                                       and open it before the next call */
    struct gworker **quarantine;
    int nquarantine;
};

struct guard {
    pthread_mutex_t mu;             /* policy, counts, settings */
    struct guard_policy pol;
    struct guard_factory fac;
    struct devclock clock;
    struct gdev cam, stage;
    struct cam_ops cam_ops;         /* per guard: optional ops mirror the
                                       wrapped driver's */
    struct stage_ops stage_ops;
    struct guard_counts taken, total;
    bool have_settings;
    struct cam_settings settings;
    int lamp;                       /* -1 unknown, 0 off, 1 on */
    int refs;                       /* one per outer device */
};

static const char *const op_names[GUARD_NOPS] = {
    [GUARD_CAM_OPEN] = "camera_open",
    [GUARD_CAM_CLOSE] = "camera_close",
    [GUARD_CAM_CONFIGURE] = "configure",
    [GUARD_CAM_CAPTURE] = "capture",
    [GUARD_CAM_PREVIEW] = "preview",
    [GUARD_CAM_LAMP] = "lamp",
    [GUARD_STAGE_OPEN] = "stage_open",
    [GUARD_STAGE_CLOSE] = "stage_close",
    [GUARD_STAGE_HOME] = "home",
    [GUARD_STAGE_MOVE] = "move",
    [GUARD_STAGE_POSITION] = "position",
    [GUARD_STAGE_BUSY] = "busy",
    [GUARD_STAGE_STOP] = "stop",
};

const char *
guard_op_name(enum guard_op op)
{
    if ((int)op < 0 || op >= GUARD_NOPS)
        return "?";
    return op_names[op];
}

/* The word for a job in messages: both halves of a split capture are
 * "capture", so a hung readout reads like a hung capture. */
static const char *
job_name(int op)
{
    if (op == OP_BEGIN || op == OP_END)
        return op_names[GUARD_CAM_CAPTURE];
    return op < GUARD_NOPS ? op_names[op] : "destroy";
}

void
guard_policy_default(struct guard_policy *p)
{
    static const double ms[GUARD_NOPS] = {
        [GUARD_CAM_OPEN] = 15000, [GUARD_CAM_CLOSE] = 5000,
        [GUARD_CAM_CONFIGURE] = 5000, [GUARD_CAM_CAPTURE] = 20000,
        [GUARD_CAM_PREVIEW] = 5000, [GUARD_CAM_LAMP] = 5000,
        [GUARD_STAGE_OPEN] = 15000, [GUARD_STAGE_CLOSE] = 5000,
        [GUARD_STAGE_HOME] = 120000, [GUARD_STAGE_MOVE] = 30000,
        [GUARD_STAGE_POSITION] = 2000, [GUARD_STAGE_BUSY] = 2000,
        [GUARD_STAGE_STOP] = 5000,
    };

    memset(p, 0, sizeof(*p));
    memcpy(p->deadline_ms, ms, sizeof(ms));
    p->busy_retries = 3;
    p->busy_backoff_ms = 200;
    p->busy_backoff_max_ms = 2000;
    p->busy_resets = 1;
}

static int
parse_number(const char *key, const char *value, double lo, double hi,
             double *out, struct ss_err *err)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(value, &end);
    if (end == value || *end != '\0' || errno != 0)
        return err_set(err, SS_ECONFIG, "%s: '%s' is not a number", key,
                       value);
    if (v < lo || v > hi)
        return err_set(err, SS_ECONFIG, "%s: %s is outside %.0f..%.0f", key,
                       value, lo, hi);
    *out = v;
    return 0;
}

int
guard_policy_set(struct guard_policy *p, const char *key, const char *value,
                 struct ss_err *err)
{
    char name[64];
    double v;
    int i, rc;

    for (i = 0; i < GUARD_NOPS; i++) {
        snprintf(name, sizeof(name), "%s_ms", op_names[i]);
        if (strcmp(key, name) == 0)
            return parse_number(key, value, 0, 86400000.0,
                                &p->deadline_ms[i], err);
    }
    if (strcmp(key, "busy_backoff_ms") == 0)
        return parse_number(key, value, 0, 600000, &p->busy_backoff_ms, err);
    if (strcmp(key, "busy_backoff_max_ms") == 0)
        return parse_number(key, value, 0, 600000, &p->busy_backoff_max_ms,
                            err);
    if (strcmp(key, "busy_retries") == 0 || strcmp(key, "busy_resets") == 0) {
        rc = parse_number(key, value, 0, 100, &v, err);
        if (rc == 0 && v != (int)v)
            rc = err_set(err, SS_ECONFIG, "%s: '%s' is not a whole number",
                         key, value);
        if (rc < 0)
            return rc;
        if (strcmp(key, "busy_retries") == 0)
            p->busy_retries = (int)v;
        else
            p->busy_resets = (int)v;
        return 0;
    }
    return err_set(err, SS_ECONFIG, "%s: unknown deadline setting", key);
}

/* --- workers --------------------------------------------------------- */

static void
worker_unref(struct gworker *w)
{
    bool last;

    pthread_mutex_lock(&w->mu);
    last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (!last)
        return;
    pthread_cond_destroy(&w->cv_job);
    pthread_cond_destroy(&w->cv_done);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void
exec_cam(struct camera *cam, struct gjob *j)
{
    switch (j->op) {
    case GUARD_CAM_OPEN:
        j->rc = cam->ops->open(cam, &j->err);
        break;
    case GUARD_CAM_CLOSE:
        cam->ops->close(cam);
        break;
    case GUARD_CAM_CONFIGURE:
        j->rc = cam->ops->configure(cam, &j->settings, &j->err);
        break;
    case GUARD_CAM_CAPTURE:
        j->rc = cam->ops->capture(cam, &j->frame, &j->err);
        break;
    case GUARD_CAM_PREVIEW:
        j->rc = cam->ops->preview(cam, &j->frame, &j->err);
        break;
    case OP_BEGIN:
        j->rc = cam->ops->capture_begin(cam, &j->err);
        break;
    case OP_END:
        j->rc = cam->ops->capture_end(cam, &j->frame, &j->err);
        break;
    case GUARD_CAM_LAMP:
        j->rc = cam->ops->set_lamp(cam, j->lamp_on, &j->err);
        break;
    case OP_DESTROY:
        cam->ops->destroy(cam);
        break;
    }
}

static void
exec_stage(struct stage *st, struct gjob *j)
{
    switch (j->op) {
    case GUARD_STAGE_OPEN:
        j->rc = st->ops->open(st, &j->err);
        break;
    case GUARD_STAGE_CLOSE:
        st->ops->close(st);
        break;
    case GUARD_STAGE_HOME:
        j->rc = st->ops->home(st, &j->err);
        break;
    case GUARD_STAGE_MOVE:
        j->rc = st->ops->move_abs(st, j->pos, &j->err);
        break;
    case GUARD_STAGE_POSITION:
        j->rc = st->ops->get_position(st, j->pos, &j->err);
        break;
    case GUARD_STAGE_BUSY:
        j->rc = st->ops->is_busy(st, &j->busy, &j->err);
        break;
    case GUARD_STAGE_STOP:
        j->rc = st->ops->stop(st, &j->err);
        break;
    case OP_DESTROY:
        st->ops->destroy(st);
        break;
    }
}

static void
worker_came_back(struct gworker *w)
{
    const char *kind = w->is_cam ? "camera" : "stage";
    int op = w->job.op;

    w->returned = true;
    img_free(w->job.frame);
    w->job.frame = NULL;
    if (op == OP_DESTROY)
        w->dev = NULL;
    w->closed = op == GUARD_CAM_CLOSE || op == GUARD_STAGE_CLOSE;
    if (w->orphan)
        return;
    log_notice("guard", "%s abandoned call came back op=%s after_ms=%.0f "
               "rc=%d", kind, job_name(op), util_now_ms() - w->posted_ms,
               w->job.rc);
}

static void *
worker_main(void *arg)
{
    struct gworker *w = arg;
    struct gjob j;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->has_job && !w->quit)
            pthread_cond_wait(&w->cv_job, &w->mu);
        if (!w->has_job)
            break;
        j = w->job;
        pthread_mutex_unlock(&w->mu);

        j.rc = 0;
        err_clear(&j.err);
        if (w->is_cam)
            exec_cam(w->dev, &j);
        else
            exec_stage(w->dev, &j);

        pthread_mutex_lock(&w->mu);
        w->job = j;
        w->has_job = false;
        if (w->abandoned) {
            worker_came_back(w);
            break;
        }
        w->done = true;
        pthread_cond_broadcast(&w->cv_done);
        if (j.op == OP_DESTROY)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    worker_unref(w);
    return NULL;
}

static int
worker_new(void *dev, bool is_cam, struct gworker **out, struct ss_err *err)
{
    struct gworker *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t tid;
    int rc;

    if (w == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory",
                       is_cam ? "camera" : "stage");
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv_done, &ca);
    pthread_cond_init(&w->cv_job, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2;
    w->dev = dev;
    w->is_cam = is_cam;

    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &ta, worker_main, w);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        w->refs = 1;
        worker_unref(w);
        return err_set(err, -rc, "%s: cannot start a device thread: %s",
                       is_cam ? "camera" : "stage", strerror(rc));
    }
    *out = w;
    return 0;
}

static void
deadline_ts(double ms, struct timespec *ts)
{
    double s;

    clock_gettime(CLOCK_MONOTONIC, ts);
    s = ts->tv_nsec / 1e9 + ms / 1000.0;
    ts->tv_sec += (time_t)s;
    ts->tv_nsec = (long)((s - (double)(time_t)s) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Runs j on w; true when it finished in time (j then holds the results),
 * false when it was abandoned at the deadline. */
static bool
worker_run(struct gworker *w, struct gjob *j, double deadline_ms)
{
    struct timespec ts;
    bool finished;

    deadline_ts(deadline_ms, &ts);
    pthread_mutex_lock(&w->mu);
    w->job = *j;
    w->has_job = true;
    w->done = false;
    w->posted_ms = util_now_ms();
    pthread_cond_signal(&w->cv_job);
    while (!w->done) {
        int rc = deadline_ms > 0 ?
            pthread_cond_timedwait(&w->cv_done, &w->mu, &ts) :
            pthread_cond_wait(&w->cv_done, &w->mu);
        if (rc == ETIMEDOUT && !w->done)
            break;
    }
    finished = w->done;
    if (finished)
        *j = w->job;
    else
        w->abandoned = true;
    pthread_mutex_unlock(&w->mu);
    return finished;
}

/* Tells an idle worker to end; the guard's reference is dropped. */
static void
worker_quit(struct gworker *w)
{
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv_job);
    pthread_mutex_unlock(&w->mu);
    worker_unref(w);
}

/* --- devices ---------------------------------------------------------- */

static void
count(struct guard *g, int busy, int timeouts, int resets)
{
    pthread_mutex_lock(&g->mu);
    g->taken.busy_retries += busy;
    g->total.busy_retries += busy;
    g->taken.timeouts += timeouts;
    g->total.timeouts += timeouts;
    g->taken.resets += resets;
    g->total.resets += resets;
    pthread_mutex_unlock(&g->mu);
}

static double
deadline_of(struct guard *g, int op)
{
    double ms;

    if (op == OP_DESTROY)
        op = GUARD_CAM_CLOSE;
    if (op == OP_BEGIN || op == OP_END)
        op = GUARD_CAM_CAPTURE;
    pthread_mutex_lock(&g->mu);
    ms = g->pol.deadline_ms[op];
    pthread_mutex_unlock(&g->mu);
    return ms;
}

static void
orphan(struct gworker *w)
{
    pthread_mutex_lock(&w->mu);
    w->orphan = true;
    pthread_mutex_unlock(&w->mu);
    worker_unref(w);
}

/* The quarantine list is guarded by g->mu, so that counting stuck calls
 * never waits for a device call in progress. */
static void
quarantine_add(struct guard *g, struct gdev *d, struct gworker *w)
{
    struct gworker **q;

    pthread_mutex_lock(&g->mu);
    q = realloc(d->quarantine, sizeof(*q) * (size_t)(d->nquarantine + 1));
    if (q != NULL) {
        d->quarantine = q;
        d->quarantine[d->nquarantine++] = w;
    }
    pthread_mutex_unlock(&g->mu);
    if (q == NULL)                  /* no room to remember it */
        orphan(w);
}

static void
reap_one(struct gdev *d, struct gworker *w)
{
    if (w->dev != NULL && d->is_cam) {
        struct camera *c = w->dev;
        if (!w->closed)
            c->ops->close(c);
        c->ops->destroy(c);
    } else if (w->dev != NULL) {
        struct stage *s = w->dev;
        if (!w->closed)
            s->ops->close(s);
        s->ops->destroy(s);
    }
    worker_unref(w);
}

/* Closes and frees the devices of quarantined workers whose stuck call has
 * come back.  LIMIT: this close runs on the caller's thread without a
 * deadline; a driver whose close hangs after a hung call hangs the scan. */
static void
quarantine_reap(struct guard *g, struct gdev *d)
{
    struct gworker **back;
    int i, n = 0, nback = 0;

    pthread_mutex_lock(&g->mu);
    back = malloc(sizeof(*back) * (size_t)(d->nquarantine + 1));
    for (i = 0; back != NULL && i < d->nquarantine; i++) {
        struct gworker *w = d->quarantine[i];
        bool returned;

        pthread_mutex_lock(&w->mu);
        returned = w->returned;
        pthread_mutex_unlock(&w->mu);
        if (returned)
            back[nback++] = w;
        else
            d->quarantine[n++] = w;
    }
    if (back != NULL)
        d->nquarantine = n;
    pthread_mutex_unlock(&g->mu);
    for (i = 0; i < nback; i++)
        reap_one(d, back[i]);
    free(back);
}

/* Called with g->mu held. */
static int
stuck_count(struct gdev *d)
{
    int i, n = 0;

    for (i = 0; i < d->nquarantine; i++) {
        pthread_mutex_lock(&d->quarantine[i]->mu);
        n += !d->quarantine[i]->returned;
        pthread_mutex_unlock(&d->quarantine[i]->mu);
    }
    return n;
}

static void
lose_device(struct guard *g, struct gdev *d, int op, double ms)
{
    log_error("guard", "%s call missed its deadline op=%s deadline_ms=%.0f; "
              "device quarantined, rebuilt at the next call", d->kind,
              job_name(op), ms);
    quarantine_add(g, d, d->w);
    d->w = NULL;
    d->dev = NULL;
    d->is_open = false;
    count(g, 0, 1, 0);
}

/* Runs one job on d's current device with the op's deadline. */
static int
dev_run(struct guard *g, struct gdev *d, struct gjob *j, struct ss_err *err)
{
    double ms = deadline_of(g, j->op);

    if (d->w == NULL)
        return err_set(err, SS_EGONE, "%s: no device", d->kind);
    if (!worker_run(d->w, j, ms)) {
        lose_device(g, d, j->op, ms);
        return err_set(err, SS_ETIMEOUT, "%s: %s did not return within "
                       "%.0f ms", d->kind, job_name(j->op), ms);
    }
    if (j->rc < 0 && err != NULL)
        *err = j->err;
    return j->rc;
}

static int
run_simple(struct guard *g, struct gdev *d, int op, struct ss_err *err)
{
    struct gjob j;

    memset(&j, 0, sizeof(j));
    j.op = op;
    return dev_run(g, d, &j, err);
}

static int
dev_open(struct guard *g, struct gdev *d, struct ss_err *err)
{
    int rc = run_simple(g, d, d->is_cam ? GUARD_CAM_OPEN : GUARD_STAGE_OPEN,
                        err);

    d->is_open = rc == 0;
    return rc;
}

/* Re-applies the camera settings and lamp state a new device lacks. */
static int
cam_restore(struct guard *g, struct ss_err *err)
{
    struct gjob j;
    int rc = 0, lamp;

    memset(&j, 0, sizeof(j));
    pthread_mutex_lock(&g->mu);
    j.settings = g->settings;
    lamp = g->lamp;
    j.op = g->have_settings ? GUARD_CAM_CONFIGURE : -1;
    pthread_mutex_unlock(&g->mu);
    if (j.op == GUARD_CAM_CONFIGURE)
        rc = dev_run(g, &g->cam, &j, err);
    if (rc == 0 && lamp >= 0 && ((struct camera *)g->cam.dev)->ops->set_lamp) {
        memset(&j, 0, sizeof(j));
        j.op = GUARD_CAM_LAMP;
        j.lamp_on = lamp == 1;
        rc = dev_run(g, &g->cam, &j, err);
    }
    return rc;
}

/* Frees d's current device on its thread and ends the thread. */
static void
dev_retire(struct guard *g, struct gdev *d, bool close_first)
{
    if (d->w == NULL)
        return;
    if (close_first && d->is_open &&
        run_simple(g, d, d->is_cam ? GUARD_CAM_CLOSE : GUARD_STAGE_CLOSE,
                   NULL) == SS_ETIMEOUT)
        return;
    if (run_simple(g, d, OP_DESTROY, NULL) == SS_ETIMEOUT)
        return;
    worker_unref(d->w);
    d->w = NULL;
    d->dev = NULL;
    d->is_open = false;
}

/* A new device from the factory, on a new thread, opened when the caller
 * wants it open, with the camera settings re-applied. */
static int
dev_rebuild(struct guard *g, struct gdev *d, bool open, struct ss_err *err)
{
    void *dev = NULL;
    int rc;

    quarantine_reap(g, d);
    if (d->is_cam && g->fac.new_camera != NULL) {
        struct camera *cam = NULL;
        rc = g->fac.new_camera(g->fac.ctx, &cam, err);
        dev = cam;
    } else if (!d->is_cam && g->fac.new_stage != NULL) {
        struct stage *st = NULL;
        rc = g->fac.new_stage(g->fac.ctx, &st, err);
        dev = st;
    } else {
        return err_set(err, SS_EGONE, "%s: lost after a missed deadline and "
                       "there is no way to recreate it", d->kind);
    }
    if (rc < 0)
        return err_prefix(err, "%s: recreating the device", d->kind);
    rc = worker_new(dev, d->is_cam, &d->w, err);
    if (rc < 0) {
        if (d->is_cam)
            camera_free(dev);
        else
            stage_free(dev);
        return rc;
    }
    d->dev = dev;
    d->is_open = false;
    count(g, 0, 0, 1);
    log_notice("guard", "%s recreated", d->kind);
    if (!open)
        return 0;
    rc = dev_open(g, d, err);
    if (rc == 0 && d->is_cam)
        rc = cam_restore(g, err);
    return rc;
}

/* Makes d usable for op: rebuilds a lost device, reopens one whose open
 * failed earlier. */
static int
dev_ensure(struct guard *g, struct gdev *d, int op, struct ss_err *err)
{
    bool opening = op == GUARD_CAM_OPEN || op == GUARD_STAGE_OPEN;
    int rc;

    if (d->dev == NULL)
        return dev_rebuild(g, d, d->want_open && !opening, err);
    if (d->reopen && d->is_open && !opening) {
        log_notice("guard", "%s reconnecting after it was gone", d->kind);
        run_simple(g, d, d->is_cam ? GUARD_CAM_CLOSE : GUARD_STAGE_CLOSE,
                   NULL);
        d->is_open = false;
    }
    if (d->want_open && !d->is_open && !opening) {
        rc = dev_open(g, d, err);
        if (rc == 0 && d->is_cam)
            rc = cam_restore(g, err);
        return rc;
    }
    return 0;
}

/* A reset after persistent "busy": a new device from the factory, or the
 * same one closed and opened again. */
static int
dev_reset(struct guard *g, struct gdev *d, struct ss_err *err)
{
    bool has_factory = d->is_cam ? g->fac.new_camera != NULL :
        g->fac.new_stage != NULL;
    int rc;

    log_warn("guard", "%s reset reason=busy", d->kind);
    if (has_factory) {
        dev_retire(g, d, true);     /* a hang here quarantines the device */
        return dev_rebuild(g, d, true, err);
    }
    if (d->is_open)
        run_simple(g, d, d->is_cam ? GUARD_CAM_CLOSE : GUARD_STAGE_CLOSE,
                   NULL);
    d->is_open = false;
    count(g, 0, 0, 1);
    rc = dev_open(g, d, err);
    if (rc == 0 && d->is_cam)
        rc = cam_restore(g, err);
    return rc;
}

static bool
is_busy_code(int rc)
{
    return rc == SS_EBUSY || rc == -EBUSY;
}

static void
backoff(struct guard *g, double ms)
{
    if (ms > 0)
        g->clock.sleep_ms(g->clock.ctx, ms);
}

/* One attempt: the job, asked again while the device says busy. */
static int
call_with_retries(struct guard *g, struct gdev *d, struct gjob *j,
                  int *asked, struct ss_err *err)
{
    struct guard_policy pol;
    struct gjob in = *j;
    double pause;
    int rc, tries;

    pthread_mutex_lock(&g->mu);
    pol = g->pol;
    pthread_mutex_unlock(&g->mu);
    pause = pol.busy_backoff_ms;
    for (tries = 0; ; tries++) {
        *j = in;
        rc = dev_run(g, d, j, err);
        (*asked)++;
        if (!is_busy_code(rc) || tries >= pol.busy_retries)
            return rc;
        log_warn("guard", "%s busy op=%s try=%d backoff_ms=%.0f", d->kind,
                 job_name(j->op), tries + 1, pause);
        count(g, 1, 0, 0);
        backoff(g, pause);
        pause = pause * 2 > pol.busy_backoff_max_ms ?
            pol.busy_backoff_max_ms : pause * 2;
    }
}

static int
guarded_call(struct guard *g, struct gdev *d, struct gjob *j,
             struct ss_err *err)
{
    bool opening = j->op == GUARD_CAM_OPEN || j->op == GUARD_STAGE_OPEN;
    int rc, resets, asked = 0, max_resets;

    pthread_mutex_lock(&d->call_mu);
    if (opening)
        d->want_open = true;
    pthread_mutex_lock(&g->mu);
    max_resets = g->pol.busy_resets;
    pthread_mutex_unlock(&g->mu);
    for (resets = 0; ; resets++) {
        rc = resets == 0 ? dev_ensure(g, d, j->op, err) :
            dev_reset(g, d, err);
        if (rc == 0)
            rc = call_with_retries(g, d, j, &asked, err);
        if (!is_busy_code(rc) || resets >= max_resets)
            break;
        count(g, 1, 0, 0);
    }
    if (is_busy_code(rc))
        rc = err_set(err, SS_EBUSY, "%s busy: %s refused %d times%s",
                     d->kind, job_name(j->op), asked,
                     resets > 0 ? ", also after a reset" : "");
    if (opening)
        d->is_open = rc == 0;
    if (rc == 0 || rc == SS_EGONE || rc == SS_EHELD)
        d->reopen = rc != 0;
    pthread_mutex_unlock(&d->call_mu);
    return rc;
}

/* --- the guarded camera ---------------------------------------------- */

static struct guard *
guard_of_cam(struct camera *cam)
{
    return cam->priv;
}

static int
gcam_open(struct camera *cam, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = GUARD_CAM_OPEN };

    return guarded_call(g, &g->cam, &j, err);
}

static void
gcam_close(struct camera *cam)
{
    struct guard *g = guard_of_cam(cam);

    pthread_mutex_lock(&g->cam.call_mu);
    g->cam.want_open = false;
    if (g->cam.dev != NULL && g->cam.is_open)
        run_simple(g, &g->cam, GUARD_CAM_CLOSE, NULL);
    g->cam.is_open = false;
    pthread_mutex_unlock(&g->cam.call_mu);
}

static int
gcam_configure(struct camera *cam, const struct cam_settings *s,
               struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = GUARD_CAM_CONFIGURE, .settings = *s };
    int rc = guarded_call(g, &g->cam, &j, err);

    if (rc == 0) {
        pthread_mutex_lock(&g->mu);
        g->settings = *s;
        g->have_settings = true;
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

static int
gcam_capture(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = GUARD_CAM_CAPTURE };
    int rc = guarded_call(g, &g->cam, &j, err);

    *frame = rc == 0 ? j.frame : NULL;
    if (rc < 0)
        img_free(j.frame);
    return rc;
}

static int
gcam_preview(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = GUARD_CAM_PREVIEW };
    int rc = guarded_call(g, &g->cam, &j, err);

    *frame = rc == 0 ? j.frame : NULL;
    if (rc < 0)
        img_free(j.frame);
    return rc;
}

static int
gcam_capture_begin(struct camera *cam, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = OP_BEGIN };

    return guarded_call(g, &g->cam, &j, err);
}

static int
gcam_capture_end(struct camera *cam, struct img **frame, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = OP_END };
    int rc = guarded_call(g, &g->cam, &j, err);

    *frame = rc == 0 ? j.frame : NULL;
    if (rc < 0)
        img_free(j.frame);
    return rc;
}

static int
gcam_set_lamp(struct camera *cam, bool on, struct ss_err *err)
{
    struct guard *g = guard_of_cam(cam);
    struct gjob j = { .op = GUARD_CAM_LAMP, .lamp_on = on };
    int rc = guarded_call(g, &g->cam, &j, err);

    if (rc == 0) {
        pthread_mutex_lock(&g->mu);
        g->lamp = on;
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

static void guard_unref(struct guard *g);

static void
gdev_shutdown(struct guard *g, struct gdev *d)
{
    int i;

    pthread_mutex_lock(&d->call_mu);
    dev_retire(g, d, true);         /* a hang here quarantines the device */
    quarantine_reap(g, d);
    for (i = 0; i < d->nquarantine; i++) {
        log_warn("guard", "%s leaving a stuck call behind at exit",
                 d->kind);
        orphan(d->quarantine[i]);
    }
    free(d->quarantine);
    d->quarantine = NULL;
    d->nquarantine = 0;
    pthread_mutex_unlock(&d->call_mu);
}

static void
gcam_destroy(struct camera *cam)
{
    struct guard *g = guard_of_cam(cam);

    gdev_shutdown(g, &g->cam);
    free(cam);
    guard_unref(g);
}

static const struct cam_ops gcam_ops = {
    .name = "guard",
    .open = gcam_open,
    .close = gcam_close,
    .configure = gcam_configure,
    .capture = gcam_capture,
    .preview = gcam_preview,
    .set_lamp = gcam_set_lamp,
    .destroy = gcam_destroy,
    .capture_begin = gcam_capture_begin,
    .capture_end = gcam_capture_end,
};

/* --- the guarded stage ------------------------------------------------ */

static struct guard *
guard_of_stage(struct stage *st)
{
    return st->priv;
}

static int
gst_open(struct stage *st, struct ss_err *err)
{
    struct guard *g = guard_of_stage(st);
    struct gjob j = { .op = GUARD_STAGE_OPEN };

    return guarded_call(g, &g->stage, &j, err);
}

static void
gst_close(struct stage *st)
{
    struct guard *g = guard_of_stage(st);

    pthread_mutex_lock(&g->stage.call_mu);
    g->stage.want_open = false;
    if (g->stage.dev != NULL && g->stage.is_open)
        run_simple(g, &g->stage, GUARD_STAGE_CLOSE, NULL);
    g->stage.is_open = false;
    pthread_mutex_unlock(&g->stage.call_mu);
}

static int
gst_simple(struct stage *st, int op, struct ss_err *err)
{
    struct guard *g = guard_of_stage(st);
    struct gjob j = { .op = op };

    return guarded_call(g, &g->stage, &j, err);
}

static int
gst_home(struct stage *st, struct ss_err *err)
{
    return gst_simple(st, GUARD_STAGE_HOME, err);
}

static int
gst_stop(struct stage *st, struct ss_err *err)
{
    return gst_simple(st, GUARD_STAGE_STOP, err);
}

static int
gst_move_abs(struct stage *st, const double pos_um[3], struct ss_err *err)
{
    struct guard *g = guard_of_stage(st);
    struct gjob j = { .op = GUARD_STAGE_MOVE };

    memcpy(j.pos, pos_um, sizeof(j.pos));
    return guarded_call(g, &g->stage, &j, err);
}

static int
gst_get_position(struct stage *st, double pos_um[3], struct ss_err *err)
{
    struct guard *g = guard_of_stage(st);
    struct gjob j = { .op = GUARD_STAGE_POSITION };
    int rc = guarded_call(g, &g->stage, &j, err);

    if (rc == 0)
        memcpy(pos_um, j.pos, sizeof(j.pos));
    return rc;
}

static int
gst_is_busy(struct stage *st, bool *busy, struct ss_err *err)
{
    struct guard *g = guard_of_stage(st);
    struct gjob j = { .op = GUARD_STAGE_BUSY };
    int rc = guarded_call(g, &g->stage, &j, err);

    if (rc == 0)
        *busy = j.busy;
    return rc;
}

static void
gst_destroy(struct stage *st)
{
    struct guard *g = guard_of_stage(st);

    gdev_shutdown(g, &g->stage);
    free(st);
    guard_unref(g);
}

static const struct stage_ops gst_ops = {
    .name = "guard",
    .open = gst_open,
    .close = gst_close,
    .home = gst_home,
    .move_abs = gst_move_abs,
    .get_position = gst_get_position,
    .is_busy = gst_is_busy,
    .stop = gst_stop,
    .destroy = gst_destroy,
};

/* --- wrapping --------------------------------------------------------- */

static void
guard_unref(struct guard *g)
{
    bool last;

    pthread_mutex_lock(&g->mu);
    last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&g->cam.call_mu);
    pthread_mutex_destroy(&g->stage.call_mu);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int
wrap_camera(struct guard *g, struct microscope *m, struct ss_err *err)
{
    struct camera *inner = m->cam, *outer;
    int rc;

    outer = calloc(1, sizeof(*outer));
    if (outer == NULL)
        return err_set(err, -ENOMEM, "camera: out of memory");
    rc = worker_new(inner, true, &g->cam.w, err);
    if (rc < 0) {
        free(outer);
        return rc;
    }
    g->cam_ops = gcam_ops;
    g->cam_ops.name = inner->ops->name;
    if (inner->ops->preview == NULL)
        g->cam_ops.preview = NULL;
    if (inner->ops->set_lamp == NULL)
        g->cam_ops.set_lamp = NULL;
    if (!camera_overlaps_readout(inner)) {
        g->cam_ops.capture_begin = NULL;
        g->cam_ops.capture_end = NULL;
    }
    g->cam.dev = inner;
    g->cam.want_open = true;        /* assumed open, or opened later */
    g->cam.is_open = true;
    outer->ops = &g->cam_ops;
    outer->priv = g;
    memcpy(outer->model, inner->model, sizeof(outer->model));
    outer->frame_w = inner->frame_w;
    outer->frame_h = inner->frame_h;
    m->cam = outer;
    g->refs++;
    return 0;
}

static int
wrap_stage(struct guard *g, struct microscope *m, struct ss_err *err)
{
    struct stage *inner = m->stage, *outer;
    int rc;

    outer = calloc(1, sizeof(*outer));
    if (outer == NULL)
        return err_set(err, -ENOMEM, "stage: out of memory");
    rc = worker_new(inner, false, &g->stage.w, err);
    if (rc < 0) {
        free(outer);
        return rc;
    }
    g->stage_ops = gst_ops;
    g->stage_ops.name = inner->ops->name;
    g->stage.dev = inner;
    g->stage.want_open = true;
    g->stage.is_open = true;
    outer->ops = &g->stage_ops;
    outer->priv = g;
    memcpy(outer->model, inner->model, sizeof(outer->model));
    outer->limits = inner->limits;
    m->stage = outer;
    g->refs++;
    return 0;
}

static struct guard *
guard_of(const struct microscope *m)
{
    if (m == NULL)
        return NULL;
    if (m->cam != NULL && m->cam->ops->open == gcam_open)
        return m->cam->priv;
    if (m->stage != NULL && m->stage->ops->open == gst_open)
        return m->stage->priv;
    return NULL;
}

int
guard_microscope_wrap(struct microscope *m, const struct guard_policy *p,
                      const struct guard_factory *f, struct ss_err *err)
{
    struct guard *g;
    int rc = 0;

    if (guard_of(m) != NULL)
        return err_set(err, -EALREADY, "microscope: already guarded");
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return err_set(err, -ENOMEM, "microscope: out of memory");
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->cam.call_mu, NULL);
    pthread_mutex_init(&g->stage.call_mu, NULL);
    g->cam.kind = "camera";
    g->cam.is_cam = true;
    g->stage.kind = "stage";
    g->pol = *p;
    if (f != NULL)
        g->fac = *f;
    g->clock = m->clock;
    g->lamp = -1;
    g->refs = 1;                    /* held while wrapping */

    if (m->cam != NULL)
        rc = wrap_camera(g, m, err);
    if (rc == 0 && m->stage != NULL)
        rc = wrap_stage(g, m, err);
    if (rc < 0 && m->cam != NULL && m->cam->ops == &g->cam_ops) {
        /* Undo the camera: hand the original back. */
        struct camera *outer = m->cam;
        m->cam = g->cam.dev;
        g->cam.w->dev = NULL;
        worker_quit(g->cam.w);
        free(outer);
        g->refs--;
    }
    guard_unref(g);
    return rc;
}

bool
guard_is_wrapped(const struct microscope *m)
{
    return guard_of(m) != NULL;
}

struct camera *
guard_camera_inner(struct camera *cam)
{
    if (cam == NULL || cam->ops->open != gcam_open)
        return cam;
    return ((struct guard *)cam->priv)->cam.dev;
}

struct stage *
guard_stage_inner(struct stage *st)
{
    if (st == NULL || st->ops->open != gst_open)
        return st;
    return ((struct guard *)st->priv)->stage.dev;
}

void
guard_policy_update(struct microscope *m, const struct guard_policy *p)
{
    struct guard *g = guard_of(m);

    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->pol = *p;
    pthread_mutex_unlock(&g->mu);
}

void
guard_counts_take(struct microscope *m, struct guard_counts *out)
{
    struct guard *g = guard_of(m);

    memset(out, 0, sizeof(*out));
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    *out = g->taken;
    memset(&g->taken, 0, sizeof(g->taken));
    out->stuck = stuck_count(&g->cam) + stuck_count(&g->stage);
    pthread_mutex_unlock(&g->mu);
}

void
guard_counts_total(struct microscope *m, struct guard_counts *out)
{
    struct guard *g = guard_of(m);

    memset(out, 0, sizeof(*out));
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    *out = g->total;
    out->stuck = stuck_count(&g->cam) + stuck_count(&g->stage);
    pthread_mutex_unlock(&g->mu);
}

static int
probe_dev(struct guard *g, struct gdev *d, struct ss_err *err)
{
    int rc;

    pthread_mutex_lock(&d->call_mu);
    d->want_open = true;
    rc = dev_ensure(g, d, -1, err);
    if (rc == 0 && !d->is_cam) {
        struct gjob j = { .op = GUARD_STAGE_POSITION };
        rc = dev_run(g, d, &j, err);
    }
    if (rc == 0 || rc == SS_EGONE || rc == SS_EHELD)
        d->reopen = rc != 0;
    pthread_mutex_unlock(&d->call_mu);
    return rc;
}

int
guard_probe(struct microscope *m, struct ss_err *err)
{
    struct guard *g = guard_of(m);
    int rc = 0;

    if (g == NULL)
        return err_set(err, -EINVAL, "microscope: not guarded");
    if (m->cam != NULL)
        rc = probe_dev(g, &g->cam, err);
    if (rc == 0 && m->stage != NULL)
        rc = probe_dev(g, &g->stage, err);
    return rc;
}

/* --- scan policy ------------------------------------------------------ */

static enum guard_action
tile_action(const struct guard_fault *f)
{
    switch (f->code) {
    case SS_ETIMEOUT:
    case SS_EDEVICE:
    case SS_ENOFOCUS:
        return f->attempt == 0 ? GUARD_ACT_RETRY_TILE : GUARD_ACT_FAIL_TILE;
    case SS_ESTALL:
        return f->attempt == 0 ? GUARD_ACT_RETRY_TILE : GUARD_ACT_PAUSE;
    default:
        return 0;
    }
}

enum guard_action
guard_fault_action(const struct guard_fault *f)
{
    enum guard_action a;

    switch (f->code) {
    case SS_EBUSY:
        return GUARD_ACT_PAUSE;
    case SS_EHELD:
    case SS_EGONE:
        return GUARD_ACT_WAIT_DEVICE;
    case -ENOSPC:
    case -EDQUOT:
        return GUARD_ACT_WAIT_SPACE;
    case -EIO:
    case -EROFS:
        return GUARD_ACT_PAUSE;
    default:
        break;
    }
    if (!f->in_tile) {
        if (f->code == SS_ETIMEOUT || f->code == SS_EDEVICE ||
            f->code == SS_ESTALL)
            return GUARD_ACT_PAUSE;
        return GUARD_ACT_FAIL_SCAN;
    }
    a = tile_action(f);
    if (a == 0)
        return GUARD_ACT_FAIL_SCAN;
    if (a == GUARD_ACT_FAIL_TILE &&
        f->failed_in_row + 1 > GUARD_FAILED_IN_ROW_MAX)
        return GUARD_ACT_PAUSE;
    return a;
}

const char *
guard_action_name(enum guard_action a)
{
    switch (a) {
    case GUARD_ACT_RETRY_TILE: return "retry tile";
    case GUARD_ACT_FAIL_TILE: return "fail tile";
    case GUARD_ACT_PAUSE: return "pause";
    case GUARD_ACT_WAIT_DEVICE: return "wait for device";
    case GUARD_ACT_WAIT_SPACE: return "wait for space";
    case GUARD_ACT_FAIL_SCAN: return "fail scan";
    }
    return "?";
}
