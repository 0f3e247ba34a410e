/* SPDX-License-Identifier: MIT */
/*
 * One measured scan for the watch benchmark (bench/watch.sh drives it):
 * opens N watcher connections to a running slidescand (raw unix sockets,
 * each sends "watch" and then reads and parses every event line, as
 * `slidescan watch --json` does), queues a scan, and times its capture
 * phase from the catalogue, read-only: the moment the first tile is
 * recorded to the moment the last one is.  The catalogue is polled every
 * POLL_MS in both the watched and the unwatched run, so both are timed
 * the same way.  Waits for the scan to be done (assembled) before it
 * returns, so the next run does not share the CPU with stitching.
 *
 *   bench_watch SOCKET CATALOGUE SLIDE IMAGE WATCHERS [DAEMON_PID]
 *
 * Prints one line of key=value: tiles, capture_s, tiles_per_s; the CPU
 * time per tile over the capture, of slidescand (all its threads, when
 * DAEMON_PID is given) and of this program (the watchers' reading), which
 * a busy machine does not distort as it does wall time; and, for the
 * watchers, the fewest and most progress events one of them got and how
 * many were reported dropped.  Exit status 1 on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common/util.h"
#include "protocol/protocol.h"
#include "tools/client/conn.h"

#define POLL_MS 20
#define LIMIT_MS (30 * 60 * 1000.0)

struct watcher {
    int fd;
    struct proto_lines lines;
    long progress;                  /* progress events seen */
    long dropped;                   /* events the daemon said it dropped */
    long other;                     /* every other event */
    bool answered;                  /* the "watch" response came */
};

struct bench {
    struct watcher *w;
    int nw;
    int ep;
    sqlite3 *db;
    int64_t scan;
    bool failed;
    int daemon_pid;                 /* 0: unknown */
    double cpu_daemon_ms;           /* over the capture */
    double cpu_self_ms;
};

/* CPU time (user + system) of process pid, every thread, in ms; -1 when
 * it cannot be read. */
static double
proc_cpu_ms(int pid)
{
    unsigned long long ut = 0, st = 0;
    char path[64], buf[1024], *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strrchr(buf, ')');          /* the name may hold spaces */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
                            "%*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

static double
self_cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
           ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

static int
on_event_line(void *ctx, char *line, size_t len)
{
    struct watcher *w = ctx;
    struct proto_msg m;
    struct ss_err err;

    if (proto_msg_parse(line, len, &m, &err) != 0) {
        fprintf(stderr, "bench_watch: bad line from slidescand: %s\n",
                err.msg);
        return -EPROTO;
    }
    if (m.kind == PROTO_MSG_RESPONSE) {
        w->answered = m.ok;
    } else if (strcmp(m.event, "progress") == 0) {
        w->progress++;
    } else if (strcmp(m.event, "dropped") == 0) {
        w->dropped += (long)json_integer_value(json_object_get(m.root,
                                                               "count"));
    } else {
        w->other++;
    }
    proto_msg_fini(&m);
    return 0;
}

static int
watcher_open(struct watcher *w, const char *path, int ep)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct epoll_event ev = { .events = EPOLLIN };
    static const char req[] = "{\"v\":1,\"id\":1,\"cmd\":\"watch\"}\n";

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    proto_lines_init(&w->lines, PROTO_REPLY_MAX);
    w->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w->fd < 0 || connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || write(w->fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
        fprintf(stderr, "bench_watch: watcher on %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
    ev.data.ptr = w;
    return epoll_ctl(ep, EPOLL_CTL_ADD, w->fd, &ev);
}

/* Reads what one watcher has; false when its connection ended. */
static bool
watcher_read(struct watcher *w)
{
    char buf[65536];
    ssize_t n;

    for (;;) {
        n = read(w->fd, buf, sizeof(buf));
        if (n > 0) {
            if (proto_lines_feed(&w->lines, buf, (size_t)n, on_event_line,
                                 w) != 0)
                return false;
            continue;
        }
        return n < 0 && (errno == EAGAIN || errno == EINTR);
    }
}

/* Reads every watcher that has data, for up to ms milliseconds. */
static void
pump(struct bench *b, int ms)
{
    struct epoll_event evs[64];
    int i, n;

    n = epoll_wait(b->ep, evs, 64, ms);
    for (i = 0; i < n; i++) {
        struct watcher *w = evs[i].data.ptr;

        if (!watcher_read(w)) {
            fprintf(stderr, "bench_watch: a watcher was disconnected\n");
            epoll_ctl(b->ep, EPOLL_CTL_DEL, w->fd, NULL);
            b->failed = true;
        }
    }
}

/* The scan's state and tile counts from the catalogue. */
static int
scan_progress(struct bench *b, char *state, size_t len, int *done,
              int *total)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(b->db, "SELECT state, tiles_done, tiles_total "
                            "FROM scans WHERE id = ?", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, b->scan);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(state, len, "%s", sqlite3_column_text(st, 0));
        *done = sqlite3_column_int(st, 1);
        *total = sqlite3_column_int(st, 2);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_BUSY ? 0 : -1;
}

static int
queue_scan(struct bench *b, const char *sock, const char *slide,
           const char *image)
{
    struct client_conn *c = NULL;
    json_t *res = NULL;
    char msg[512];
    int rc;

    rc = client_conn_open(sock, &c, msg, sizeof(msg));
    if (rc == 0)
        rc = client_conn_call(c, "scan", json_pack("{s:s, s:s, s:s}",
                                                   "slide", slide, "stain",
                                                   "HE", "image", image),
                              10000, &res, msg, sizeof(msg));
    client_conn_close(c);
    if (rc != 0) {
        fprintf(stderr, "bench_watch: scan %s: %s\n", slide, msg);
        return -1;
    }
    b->scan = json_integer_value(json_object_get(res, "id"));
    json_decref(res);
    return b->scan > 0 ? 0 : -1;
}

/* Polls until the capture is over; returns its duration in ms and in
 * *timed the tiles captured within it. */
static double
time_capture(struct bench *b, int *tiles, int *timed)
{
    double start = util_now_ms(), t, first = 0, last = 0;
    int done = 0, total = 0, done_first = 0;
    char state[32] = "";

    while (!b->failed && (t = util_now_ms()) - start < LIMIT_MS) {
        if (scan_progress(b, state, sizeof(state), &done, &total) < 0)
            return -1;
        if (done >= 1 && first == 0) {
            first = t;
            done_first = done;
            b->cpu_self_ms = -self_cpu_ms();
            b->cpu_daemon_ms = -proc_cpu_ms(b->daemon_pid);
        }
        if (total > 0 && done == total) {
            last = t;
            b->cpu_self_ms += self_cpu_ms();
            b->cpu_daemon_ms += proc_cpu_ms(b->daemon_pid);
            break;
        }
        if (strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0)
            return -1;
        pump(b, POLL_MS);
    }
    *tiles = total;
    *timed = total - done_first;
    return last > first ? last - first : -1;
}

/* Keeps reading until the scan is done, so that no watcher falls behind
 * meanwhile and the next run starts on an idle machine. */
static int
wait_done(struct bench *b)
{
    double start = util_now_ms();
    int done, total;
    char state[32] = "";

    while (util_now_ms() - start < LIMIT_MS) {
        if (scan_progress(b, state, sizeof(state), &done, &total) < 0)
            return -1;
        if (strcmp(state, "done") == 0)
            return 0;
        if (strcmp(state, "failed") == 0)
            return -1;
        pump(b, 100);
    }
    return -1;
}

static void
report(const struct bench *b, int tiles, int timed, double ms)
{
    long pmin = 0, pmax = 0, dropped = 0;
    int i;

    for (i = 0; i < b->nw; i++) {
        const struct watcher *w = &b->w[i];

        if (i == 0 || w->progress < pmin)
            pmin = w->progress;
        if (w->progress > pmax)
            pmax = w->progress;
        dropped += w->dropped;
    }
    printf("watchers=%d scan=%lld tiles=%d capture_s=%.3f tiles_per_s=%.4f "
           "daemon_cpu_ms_per_tile=%.1f watchers_cpu_ms_per_tile=%.2f "
           "progress_min=%ld progress_max=%ld dropped=%ld\n", b->nw,
           (long long)b->scan, tiles, ms / 1e3, timed / (ms / 1e3),
           b->daemon_pid > 0 ? b->cpu_daemon_ms / timed : 0.0,
           b->cpu_self_ms / timed, pmin, pmax, dropped);
}

int
main(int argc, char **argv)
{
    struct bench b = { 0 };
    double ms;
    int i, tiles = 0, timed = 0;

    if (argc < 6 || argc > 7 || atoi(argv[5]) < 0) {
        fprintf(stderr, "usage: bench_watch SOCKET CATALOGUE SLIDE IMAGE "
                "WATCHERS [DAEMON_PID]\n");
        return 2;
    }
    b.nw = atoi(argv[5]);
    b.daemon_pid = argc == 7 ? atoi(argv[6]) : 0;
    b.w = calloc((size_t)b.nw + 1, sizeof(*b.w));
    b.ep = epoll_create1(EPOLL_CLOEXEC);
    if (b.w == NULL || b.ep < 0)
        return 1;
    for (i = 0; i < b.nw; i++)
        if (watcher_open(&b.w[i], argv[1], b.ep) < 0)
            return 1;
    for (i = 0; i < b.nw; i++)
        while (!b.w[i].answered && !b.failed)
            pump(&b, 1000);
    if (sqlite3_open_v2(argv[2], &b.db, SQLITE_OPEN_READONLY, NULL) != 0) {
        fprintf(stderr, "bench_watch: %s: %s\n", argv[2],
                sqlite3_errmsg(b.db));
        return 1;
    }
    sqlite3_busy_timeout(b.db, 1000);
    if (queue_scan(&b, argv[1], argv[3], argv[4]) < 0)
        return 1;
    ms = time_capture(&b, &tiles, &timed);
    if (ms <= 0 || timed < 1 || wait_done(&b) < 0 || b.failed) {
        fprintf(stderr, "bench_watch: scan %lld of %s did not complete\n",
                (long long)b.scan, argv[3]);
        return 1;
    }
    report(&b, tiles, timed, ms);
    for (i = 0; i < b.nw; i++) {
        close(b.w[i].fd);
        proto_lines_fini(&b.w[i].lines);
    }
    sqlite3_close(b.db);
    free(b.w);
    close(b.ep);
    return 0;
}
