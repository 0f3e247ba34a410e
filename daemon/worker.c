/* SPDX-License-Identifier: MIT */
/*
 * Supervision of the analysis worker, on the loop thread.  For each
 * queued analysis, one at a time:
 *
 *   slidescan-worker analyse --wsi PATH --stain S --out DIR [--model F]
 *
 * runs niced (analysis.nice) with stdout and stderr on pipes.  "progress
 * DONE TOTAL" lines on stdout become "analysis" events; the last line on
 * stderr is kept as the cause of a failure.  The worker writes into a
 * fresh sibling of the analysis directory, DIR.new; on exit 0 that set is
 * swapped in for the previous one with one atomic rename (RENAME_EXCHANGE)
 * and its results.json (which the worker writes last) goes into the
 * catalogue; on any failure DIR.new is removed, so the previous results,
 * files and catalogue numbers, stay until an analysis succeeds.  A daemon
 * killed at any moment leaves DIR holding one complete set (where the
 * filesystem cannot exchange, DIR is renamed to DIR.old first and put
 * back by the next run when DIR is missing).  Killed by a signal (a
 * crash): started again, at most analysis.restarts times.  Any other exit
 * status fails the analysis with the worker's own one-line cause.  The
 * scan stays done either way; its analysis has a state of its own.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"
#include "storage/tilestore.h"

struct supervisor {
    struct daemon *d;
    bool running;
    bool stopping;
    uv_process_t proc;
    uv_pipe_t out, errp;
    uv_timer_t kill_timer;
    int open;                       /* handles not yet closed */
    int64_t exit_status;
    int term_signal;
    int64_t scan;
    char slide[64];
    char out_dir[2 * PATH_MAX];     /* the results in place */
    char new_dir[2 * PATH_MAX + 8]; /* out_dir.new, the worker's --out */
    char old_dir[2 * PATH_MAX + 8]; /* out_dir.old, the set being replaced */
    int attempts;
    struct proto_lines outl, errl;
    char last_err[512];
};

static void
post_analysis(struct supervisor *s, const char *state, const char *reason)
{
    json_t *ev = json_pack("{s:I, s:s, s:s}", "scan", (json_int_t)s->scan,
                           "slide", s->slide, "state", state);

    if (reason != NULL && reason[0] != '\0')
        json_object_set_new(ev, "reason", json_string(reason));
    daemon__broadcast(s->d, "analysis", ev);
}

static int
on_out_line(void *ctx, char *line, size_t len)
{
    struct supervisor *s = ctx;
    char buf[128];
    int done, total;
    json_t *ev;

    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (sscanf(buf, "progress %d %d", &done, &total) != 2)
        return 0;
    s->d->st.a_done = done;
    s->d->st.a_total = total;
    ev = json_pack("{s:I, s:s, s:s, s:i, s:i}", "scan", (json_int_t)s->scan,
                   "slide", s->slide, "state", "running", "done", done,
                   "total", total);
    daemon__broadcast(s->d, "analysis", ev);
    return 0;
}

static int
on_err_line(void *ctx, char *line, size_t len)
{
    struct supervisor *s = ctx;

    if (len == 0)
        return 0;
    snprintf(s->last_err, sizeof(s->last_err), "%.*s", (int)len, line);
    log_info("worker", "scan=%lld stderr=\"%s\"", (long long)s->scan,
             s->last_err);
    return 0;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char rbuf[16384];

    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

static void finish(struct supervisor *s);

static void
on_closed(uv_handle_t *h)
{
    struct supervisor *s = h->data;

    if (--s->open == 0)
        finish(s);
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct supervisor *s = st->data;
    bool out = st == (uv_stream_t *)&s->out;
    int rc;

    if (n < 0) {
        uv_close((uv_handle_t *)st, on_closed);
        return;
    }
    rc = proto_lines_feed(out ? &s->outl : &s->errl, buf->base, (size_t)n,
                          out ? on_out_line : on_err_line, s);
    if (rc == -EMSGSIZE)
        proto_lines_init(out ? &s->outl : &s->errl, 4096);
}

static void
on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
    struct supervisor *s = p->data;

    s->exit_status = status;
    s->term_signal = sig;
    uv_timer_stop(&s->kill_timer);
    uv_close((uv_handle_t *)p, on_closed);
}

static int
rename_err(const char *from, const char *to, struct ss_err *err)
{
    return err_set(err, -errno, "cannot rename %s to %s: %s", from, to,
                   strerror(errno));
}

/* How swap_in() put the new set in place, for undo_swap(). */
enum swap_how { SWAP_FRESH, SWAP_EXCHANGED, SWAP_MOVED_OLD };

/* Puts new_dir in place of out_dir.  The previous set, if any, ends in
 * old_dir (or, if that rename fails, in new_dir) until done_swap(), so
 * that once the catalogue says "done" no DIR.new is left to look like a
 * run in progress. */
static int
swap_in(struct supervisor *s, enum swap_how *how, struct ss_err *err)
{
    if (renameat2(AT_FDCWD, s->new_dir, AT_FDCWD, s->out_dir,
                  RENAME_EXCHANGE) == 0) {
        *how = SWAP_EXCHANGED;
        if (rename(s->new_dir, s->old_dir) == 0)
            *how = SWAP_MOVED_OLD;
    } else if (errno == ENOENT) {
        *how = SWAP_FRESH;
        if (rename(s->new_dir, s->out_dir) != 0)
            return rename_err(s->new_dir, s->out_dir, err);
    } else if (errno == EINVAL || errno == ENOSYS) {
        *how = SWAP_MOVED_OLD;
        if (rename(s->out_dir, s->old_dir) != 0)
            return rename_err(s->out_dir, s->old_dir, err);
        if (rename(s->new_dir, s->out_dir) != 0) {
            rename_err(s->new_dir, s->out_dir, err);
            rename(s->old_dir, s->out_dir);
            return err->code;
        }
    } else {
        return rename_err(s->new_dir, s->out_dir, err);
    }
    return 0;
}

/* Puts the previous set back after the catalogue refused the new one. */
static void
undo_swap(struct supervisor *s, enum swap_how how)
{
    if (how == SWAP_EXCHANGED)
        renameat2(AT_FDCWD, s->new_dir, AT_FDCWD, s->out_dir,
                  RENAME_EXCHANGE);
    else if (rename(s->out_dir, s->new_dir) == 0 && how == SWAP_MOVED_OLD)
        rename(s->old_dir, s->out_dir);
}

/* Makes the swap durable and removes the previous set. */
static void
done_swap(struct supervisor *s)
{
    char parent[sizeof(s->out_dir)];
    struct ss_err err;

    util_parent_dir(s->out_dir, parent, sizeof(parent));
    if (util_fsync_dir(parent, &err) < 0)
        log_warn("worker", "scan=%lld %s", (long long)s->scan, err.msg);
    if (util_remove_tree(s->new_dir, &err) < 0 ||
        util_remove_tree(s->old_dir, &err) < 0)
        log_warn("worker", "scan=%lld %s", (long long)s->scan, err.msg);
}

/* The worker succeeded: swap its set in and record its results.json. */
static int
read_results(struct supervisor *s, struct ss_err *err)
{
    char path[sizeof(s->new_dir) + 16];
    enum swap_how how = SWAP_FRESH;
    char *text = NULL;
    size_t len;
    int rc;

    snprintf(path, sizeof(path), "%s/results.json", s->new_dir);
    rc = util_read_file(path, &text, &len, err);
    if (rc == 0)
        rc = swap_in(s, &how, err);
    if (rc == 0) {
        rc = cat_analysis_record(s->d->cat, s->scan, text, err);
        if (rc < 0)
            undo_swap(s, how);
        else
            done_swap(s);
    }
    free(text);
    return rc;
}

/* Before a run: a set moved aside by a swap cut short goes back, and a
 * half-written set of an earlier run goes. */
static int
clear_stale(struct supervisor *s, struct ss_err *err)
{
    struct stat st;

    if (stat(s->out_dir, &st) != 0 && errno == ENOENT &&
        rename(s->old_dir, s->out_dir) == 0)
        log_notice("worker", "scan=%lld previous results put back from %s",
                   (long long)s->scan, s->old_dir);
    if (util_remove_tree(s->old_dir, err) < 0)
        return err->code;
    return util_remove_tree(s->new_dir, err);
}

/* The worker is gone and its pipes are closed: record the outcome. */
static void
finish(struct supervisor *s)
{
    struct daemon *d = s->d;
    char reason[700];
    struct ss_err err;

    s->running = false;
    d->st.analysing = 0;
    err_clear(&err);
    cat_analysis_set_pid(d->cat, s->scan, 0, NULL);
    proto_lines_fini(&s->outl);
    proto_lines_fini(&s->errl);
    reason[0] = '\0';
    if (s->stopping) {
        cat_analysis_set(d->cat, s->scan, CAT_A_QUEUED, "daemon stopped",
                         NULL);
        log_notice("worker", "stopped scan=%lld; the analysis runs again at "
                   "the next start", (long long)s->scan);
    } else if (s->term_signal != 0 &&
               s->attempts <= d->conf.worker_restarts) {
        snprintf(reason, sizeof(reason), "worker killed by signal %d; "
                 "restarting", s->term_signal);
        log_warn("worker", "crashed scan=%lld signal=%d attempt=%d",
                 (long long)s->scan, s->term_signal, s->attempts);
        cat_analysis_set(d->cat, s->scan, CAT_A_QUEUED, reason, NULL);
        post_analysis(s, "queued", reason);
    } else if (s->term_signal != 0) {
        snprintf(reason, sizeof(reason), "worker killed by signal %d, %d "
                 "times; giving up", s->term_signal, s->attempts);
    } else if (s->exit_status != 0) {
        snprintf(reason, sizeof(reason), "worker exited with status %lld: "
                 "%s", (long long)s->exit_status, s->last_err[0] != '\0'
                 ? s->last_err : "(no message)");
    } else if (read_results(s, &err) < 0) {
        snprintf(reason, sizeof(reason), "%s", err.msg);
    } else {
        log_notice("worker", "done scan=%lld slide=%s out=%s",
                   (long long)s->scan, s->slide, s->out_dir);
        post_analysis(s, "done", NULL);
    }
    /* The half-written set goes before the catalogue says "failed". */
    if (reason[0] != '\0' || s->stopping)
        util_remove_tree(s->new_dir, &err);
    if (reason[0] != '\0' && strstr(reason, "restarting") == NULL &&
        !s->stopping) {
        log_error("worker", "failed scan=%lld cause=\"%s\"",
                  (long long)s->scan, reason);
        cat_analysis_set(d->cat, s->scan, CAT_A_FAILED, reason, NULL);
        post_analysis(s, "failed", reason);
    }
    daemon__schedule(d);
}

static int
prepare(struct supervisor *s, int64_t scan, struct cat_scan *cs,
        struct ss_err *err)
{
    struct daemon *d = s->d;
    char rel[PATH_MAX];
    int rc;

    rc = cat_scan_get(d->cat, scan, cs, err);
    if (rc < 0)
        return rc;
    if (cs->wsi_path[0] == '\0')
        return err_set(err, -ENOENT, "scan %lld has no slide image",
                       (long long)scan);
    snprintf(rel, sizeof(rel), "slides/%s/analysis-s%lld", cs->slide,
             (long long)scan);
    snprintf(s->out_dir, sizeof(s->out_dir), "%s/%s", d->conf.data_dir,
             rel);
    snprintf(s->new_dir, sizeof(s->new_dir), "%s.new", s->out_dir);
    snprintf(s->old_dir, sizeof(s->old_dir), "%s.old", s->out_dir);
    s->scan = scan;
    rc = clear_stale(s, err);
    if (rc == 0)
        rc = tilestore_mkdir_durable(s->new_dir, err);
    if (rc == 0)
        rc = cat_analysis_started(d->cat, scan, rel, &s->attempts, err);
    return rc;
}

static int
spawn(struct supervisor *s, const struct cat_scan *cs, struct ss_err *err)
{
    struct daemon *d = s->d;
    char worker[PATH_MAX], wsi[2 * PATH_MAX];
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    char *argv[12];
    int n = 0, rc;

    daemon__worker_path(&d->conf, worker, sizeof(worker));
    snprintf(wsi, sizeof(wsi), "%s/%s", d->conf.data_dir, cs->wsi_path);
    argv[n++] = worker;
    argv[n++] = "analyse";
    argv[n++] = "--wsi";
    argv[n++] = wsi;
    argv[n++] = "--stain";
    argv[n++] = (char *)cs->stain;
    argv[n++] = "--out";
    argv[n++] = s->new_dir;
    if (d->conf.model[0] != '\0') {
        argv[n++] = "--model";
        argv[n++] = d->conf.model;
    }
    argv[n] = NULL;

    uv_pipe_init(d->loop, &s->out, 0);
    uv_pipe_init(d->loop, &s->errp, 0);
    s->out.data = s->errp.data = s->proc.data = s;
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&s->out;
    io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[2].data.stream = (uv_stream_t *)&s->errp;
    memset(&o, 0, sizeof(o));
    o.file = worker;
    o.args = argv;
    o.exit_cb = on_proc_exit;
    o.stdio = io;
    o.stdio_count = 3;
    s->open = 3;
    rc = uv_spawn(d->loop, &s->proc, &o);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->proc, on_closed);
        uv_close((uv_handle_t *)&s->out, on_closed);
        uv_close((uv_handle_t *)&s->errp, on_closed);
        s->term_signal = 0;
        s->exit_status = 127;
        snprintf(s->last_err, sizeof(s->last_err), "cannot start %s: %s",
                 worker, uv_strerror(rc));
        return err_set(err, rc, "%s", s->last_err);
    }
    if (setpriority(PRIO_PROCESS, (id_t)s->proc.pid, d->conf.worker_nice))
        log_warn("worker", "cannot renice pid=%d", s->proc.pid);
    cat_analysis_set_pid(d->cat, cs->id, s->proc.pid, NULL);
    uv_read_start((uv_stream_t *)&s->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&s->errp, on_alloc, on_read);
    log_notice("worker", "started scan=%lld pid=%d attempt=%d wsi=%s",
               (long long)cs->id, s->proc.pid, s->attempts, wsi);
    return 0;
}

/* Takes the next queued analysis; false when there is none to start. */
static bool
start_next(struct supervisor *s)
{
    struct daemon *d = s->d;
    struct cat_scan cs;
    struct ss_err err;
    int64_t scan;

    if (cat_analysis_next(d->cat, &scan, NULL) < 0)
        return false;
    s->scan = scan;
    s->last_err[0] = '\0';
    s->exit_status = 0;
    s->term_signal = 0;
    s->stopping = false;
    if (prepare(s, scan, &cs, &err) < 0) {
        log_error("worker", "cannot analyse scan=%lld cause=\"%s\"",
                  (long long)scan, err.msg);
        cat_analysis_set(d->cat, scan, CAT_A_FAILED, err.msg, NULL);
        return true;
    }
    snprintf(s->slide, sizeof(s->slide), "%s", cs.slide);
    proto_lines_init(&s->outl, 4096);
    proto_lines_init(&s->errl, 4096);
    s->running = true;
    d->st.analysing = scan;
    d->st.a_done = d->st.a_total = 0;
    post_analysis(s, "running", NULL);
    spawn(s, &cs, &err);
    return true;
}

void
daemon__supervisor_kick(struct supervisor *s)
{
    while (!s->running && !s->d->stopping && start_next(s))
        ;
}

bool
daemon__supervisor_busy(struct supervisor *s)
{
    return s->running;
}

static void
on_kill_timer(uv_timer_t *t)
{
    struct supervisor *s = t->data;

    if (s->running)
        uv_process_kill(&s->proc, SIGKILL);
}

void
daemon__supervisor_stop(struct supervisor *s)
{
    if (!s->running)
        return;
    s->stopping = true;
    if (uv_process_kill(&s->proc, SIGTERM) == 0)
        uv_timer_start(&s->kill_timer, on_kill_timer, 5000, 0);
}

int
daemon__supervisor_new(struct daemon *d, struct supervisor **out,
                       struct ss_err *err)
{
    struct supervisor *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    s->d = d;
    uv_timer_init(d->loop, &s->kill_timer);
    s->kill_timer.data = s;
    *out = s;
    return 0;
}

void
daemon__supervisor_close(struct supervisor *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->kill_timer))
        uv_close((uv_handle_t *)&s->kill_timer, NULL);
}

void
daemon__supervisor_free(struct supervisor *s)
{
    free(s);
}

/* True when pid runs the worker binary with out_dir as its --out. */
static bool
is_our_worker(pid_t pid, const char *worker, const char *out_dir)
{
    char path[64], exe[PATH_MAX], want[PATH_MAX], cmd[8192];
    ssize_t n;
    size_t i;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    n = readlink(path, exe, sizeof(exe) - 1);
    if (n <= 0 || realpath(worker, want) == NULL)
        return false;
    exe[n] = '\0';
    if (strcmp(exe, want) != 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return false;
    n = (ssize_t)fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    for (i = 0; n > 0 && i < (size_t)n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n > 0 ? n : 0] = '\0';
    return strstr(cmd, out_dir) != NULL;
}

void
daemon__supervisor_orphans(struct supervisor *s)
{
    struct daemon *d = s->d;
    char worker[PATH_MAX], out[2 * PATH_MAX];
    struct timespec ts = { 0, 50 * 1000000L };
    int64_t scan = 0, pid = 0;
    sqlite3_stmt *st;
    int i;

    daemon__worker_path(&d->conf, worker, sizeof(worker));
    if (sqlite3_prepare_v2(cat_db(d->cat), "SELECT scan, worker_pid, "
                           "out_dir FROM analyses WHERE worker_pid IS NOT "
                           "NULL", -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        scan = sqlite3_column_int64(st, 0);
        pid = sqlite3_column_int64(st, 1);
        snprintf(out, sizeof(out), "%s/%s", d->conf.data_dir,
                 sqlite3_column_text(st, 2) != NULL
                 ? (const char *)sqlite3_column_text(st, 2) : "");
        if (pid <= 1 || !is_our_worker((pid_t)pid, worker, out))
            continue;
        log_notice("worker", "ending a worker left by the previous daemon "
                   "scan=%lld pid=%lld", (long long)scan, (long long)pid);
        kill((pid_t)pid, SIGKILL);
        for (i = 0; i < 40 && kill((pid_t)pid, 0) == 0; i++)
            nanosleep(&ts, NULL);
    }
    sqlite3_finalize(st);
    cat_exec(d->cat, "UPDATE analyses SET worker_pid = NULL", "");
}
