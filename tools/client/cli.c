/* SPDX-License-Identifier: MIT */
/* Options, errors, output and progress shared by the daemon commands. */
#include "tools/client/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

bool
client__common(int opt, struct client__opts *co)
{
    switch (opt) {
    case 'S': co->socket = optarg; return true;
    case 'J': co->json = true; return true;
    case 'h': co->help = true; return true;
    default: return false;
    }
}

int
client__usage(const struct client__opts *co, int code)
{
    FILE *f = code == EXIT_OK ? stdout : stderr;

    fputs(co->usage, f);
    fputs(CLIENT_COMMON_HELP, f);
    return code;
}

int
client__fail(const struct client__opts *co, int code, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "slidescan %s: ", co->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int
client__connect(const struct client__opts *co, struct client_conn **c)
{
    char msg[512];
    int rc;

    rc = client_conn_open(client_socket_path(co->socket), c, msg,
                          sizeof(msg));
    if (rc != EXIT_OK)
        return client__fail(co, rc, "%s", msg);
    return EXIT_OK;
}

int
client__call(const struct client__opts *co, struct client_conn *c,
             const char *cmd, json_t *args, json_t **result)
{
    char msg[1024];
    int rc;

    rc = client_conn_call(c, cmd, args, -1, result, msg, sizeof(msg));
    if (rc != EXIT_OK)
        return client__fail(co, rc, "%s", msg);
    return EXIT_OK;
}

int
client__request(const struct client__opts *co, const char *cmd,
                json_t *args, json_t **result)
{
    struct client_conn *c;
    int rc;

    *result = NULL;
    rc = client__connect(co, &c);
    if (rc != EXIT_OK) {
        json_decref(args);
        return rc;
    }
    rc = client__call(co, c, cmd, args, result);
    client_conn_close(c);
    return rc;
}

void
client__print_json(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

int
client__long_opt(const struct client__opts *co, const char *opt,
                 const char *text, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0')
        return client__fail(co, EXIT_USAGE, "%s: '%s' is not a whole number",
                            opt, text);
    if (errno == ERANGE || v < lo || v > hi)
        return client__fail(co, EXIT_USAGE, "%s: '%s' is outside %ld..%ld",
                            opt, text, lo, hi);
    *out = v;
    return EXIT_OK;
}

bool
client__scan_id(const char *s, int64_t *id)
{
    char *end;

    errno = 0;
    *id = strtoll(s, &end, 10);
    return errno == 0 && *s != '\0' && *end == '\0' && *id > 0;
}

const char *
client__str(json_t *o, const char *key)
{
    static char buf[16][64];
    static int next;
    json_t *v = json_object_get(o, key);
    char *b;

    if (json_is_string(v))
        return json_string_value(v);
    if (v == NULL || json_is_null(v))
        return "-";
    b = buf[next++ % 16];
    if (json_is_integer(v))
        snprintf(b, 64, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(b, 64, "%.4g", json_real_value(v));
    else
        snprintf(b, 64, "%s", json_is_true(v) ? "yes" : "no");
    return b;
}

void
client__duration(double s, char *buf, size_t len)
{
    long t = s < 0 ? 0 : (long)(s + 0.5);

    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* ---- following a scan ---------------------------------------------------- */

struct follow {
    const struct client__opts *co;
    int64_t scan;
    bool analysis;
    bool tty;
    bool drawn;
    double start_ms;                /* when the scan started (elapsed) */
    double t0_ms;                   /* first tile seen (tile rate, ETA) */
    int done0;
    int done, total;
    char slide[64], state[24];
    bool scan_over, analysis_over, ok;
    bool wait_analysis;
};

static void
draw(struct follow *f)
{
    char el[32], eta[32], bar[41];
    double elapsed = (util_now_ms() - f->start_ms) / 1000;
    double tiles_s = (util_now_ms() - f->t0_ms) / 1000;
    int n = f->total > 0 ? f->done * 40 / f->total : 0, i;
    double rate = (f->done - f->done0) / (tiles_s > 0 ? tiles_s : 1);

    client__duration(elapsed, el, sizeof(el));
    if (rate > 0 && f->total > f->done)
        client__duration((f->total - f->done) / rate, eta, sizeof(eta));
    else
        /* Before planning the total is 0: nothing is known yet. */
        snprintf(eta, sizeof(eta), "%s", f->total > 0 &&
                 f->done >= f->total ? "0:00" : "--:--");
    for (i = 0; i < 40; i++)
        bar[i] = i < n ? '#' : '-';
    bar[40] = '\0';
    if (f->tty) {
        fprintf(stderr, "\r%s %-10s [%s] %d/%d tiles  elapsed %s  ETA %s ",
                f->slide, f->state, bar, f->done, f->total, el, eta);
        f->drawn = true;
    } else {
        printf("scan %" PRId64 " %s %s %d/%d tiles elapsed %s eta %s\n",
               f->scan, f->slide, f->state, f->done, f->total, el, eta);
        fflush(stdout);
    }
}

static void
say(struct follow *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
say(struct follow *f, const char *fmt, ...)
{
    va_list ap;

    if (f->co->json)
        return;
    if (f->drawn) {
        fputc('\n', stderr);
        f->drawn = false;
    }
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void
on_scan_event(struct follow *f, json_t *ev)
{
    const char *state = client__str(ev, "state");
    const char *reason = client__str(ev, "reason");

    snprintf(f->state, sizeof(f->state), "%s", state);
    if (strcmp(state, "done") == 0) {
        f->scan_over = true;
        f->ok = true;
        f->wait_analysis = f->analysis &&
                           json_object_get(ev, "analysis") != NULL;
        say(f, "scan %" PRId64 " %s done: %s\n", f->scan, f->slide,
            client__str(ev, "wsi"));
    } else if (strcmp(state, "failed") == 0 ||
               strcmp(state, "cancelled") == 0 ||
               strcmp(state, "paused") == 0) {
        f->scan_over = true;
        f->ok = false;
        say(f, "scan %" PRId64 " %s %s%s%s\n", f->scan, f->slide, state,
            strcmp(reason, "-") != 0 ? ": " : "",
            strcmp(reason, "-") != 0 ? reason : "");
    } else if (!f->co->json) {
        draw(f);
    }
}

static void
on_event(struct follow *f, json_t *ev)
{
    const char *name = client__str(ev, "event");
    json_int_t scan = json_integer_value(json_object_get(ev, "scan"));

    if (f->scan == 0 && scan != 0 && strcmp(name, "dropped") != 0)
        f->scan = scan;
    if (scan != f->scan)
        return;
    if (f->co->json) {
        json_dumpf(ev, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        fflush(stdout);
    }
    snprintf(f->slide, sizeof(f->slide), "%s", client__str(ev, "slide"));
    if (strcmp(name, "progress") == 0) {
        if (f->done0 < 0) {
            f->done0 = (int)json_integer_value(json_object_get(
                ev, "tiles_done")) - 1;
            f->t0_ms = util_now_ms();
        }
        f->done = (int)json_integer_value(json_object_get(ev, "tiles_done"));
        f->total = (int)json_integer_value(json_object_get(ev,
                                                           "tiles_total"));
        snprintf(f->state, sizeof(f->state), "capturing");
        if (!f->co->json)
            draw(f);
    } else if (strcmp(name, "scan") == 0) {
        on_scan_event(f, ev);
    } else if (strcmp(name, "analysis") == 0 && f->wait_analysis) {
        const char *st = client__str(ev, "state");
        if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0) {
            f->analysis_over = true;
            f->ok = strcmp(st, "done") == 0;
            if (!f->co->json)
                say(f, "analysis of scan %" PRId64 " %s%s%s\n", f->scan, st,
                    f->ok ? "" : ": ", f->ok ? "" : client__str(ev,
                                                                "reason"));
        }
    }
}

int
client__follow(const struct client__opts *co, struct client_conn *c,
               int64_t scan, bool analysis, json_t *status)
{
    struct follow f;
    char msg[256];
    json_t *ev, *s = json_object_get(status, "scan");
    int rc;

    memset(&f, 0, sizeof(f));
    f.co = co;
    f.scan = scan;
    f.analysis = analysis;
    f.tty = !co->json && isatty(STDERR_FILENO) && isatty(STDOUT_FILENO);
    f.t0_ms = f.start_ms = util_now_ms();
    f.done0 = -1;
    if (json_is_object(s) && (scan == 0 || json_integer_value(
            json_object_get(s, "id")) == scan)) {
        f.scan = json_integer_value(json_object_get(s, "id"));
        f.done = (int)json_integer_value(json_object_get(s, "tiles_done"));
        f.total = (int)json_integer_value(json_object_get(s,
                                                          "tiles_total"));
        snprintf(f.slide, sizeof(f.slide), "%s", client__str(s, "slide"));
        snprintf(f.state, sizeof(f.state), "%s", client__str(s, "state"));
        f.start_ms -= json_number_value(json_object_get(s, "elapsed_s")) *
                      1000;
    }
    while (!(f.scan_over && (!f.wait_analysis || f.analysis_over))) {
        rc = client_conn_event(c, -1, &ev, msg, sizeof(msg));
        if (rc != EXIT_OK) {
            say(&f, "%s", "");
            return client__fail(co, EXIT_NODAEMON, "%s", msg);
        }
        on_event(&f, ev);
        json_decref(ev);
    }
    return f.ok ? EXIT_OK : EXIT_FAIL;
}

/* ---- commands on one scan ------------------------------------------------ */

int
client__scan_op(int argc, char **argv, const char *cmd, bool scan_required,
                const char *usage)
{
    static const struct option opts[] = {
        CLIENT_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct client__opts co = { NULL, false, false, cmd, usage };
    json_t *args, *res = NULL;
    int64_t id = 0;
    int o, rc;

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
        if (!client__common(o, &co))
            return client__usage(&co, EXIT_USAGE);
    if (co.help)
        return client__usage(&co, EXIT_OK);
    if (argc - optind > 1 || (scan_required && argc - optind != 1))
        return client__usage(&co, EXIT_USAGE);
    if (argc - optind == 1 && !client__scan_id(argv[optind], &id))
        return client__fail(&co, EXIT_USAGE, "'%s' is not a scan number",
                            argv[optind]);
    args = id > 0 ? json_pack("{s:I}", "scan", (json_int_t)id) : NULL;
    rc = client__request(&co, cmd, args, &res);
    if (rc == EXIT_OK && co.json)
        client__print_json(res);
    else if (rc == EXIT_OK && json_object_get(res, "note") != NULL)
        printf("scan %s: %s (%s)\n", client__str(res, "scan"),
               client__str(res, "state"), client__str(res, "note"));
    else if (rc == EXIT_OK)
        printf("scan %s: %s\n", client__str(res, json_object_get(res, "id")
                                             != NULL ? "id" : "scan"),
               client__str(res, "state"));
    json_decref(res);
    return rc;
}

int
client__out_parent(const char *cmd, const char *path)
{
    char parent[4096];
    struct stat st;

    const char *why;

    util_parent_dir(path, parent, sizeof(parent));
    if (stat(parent, &st) != 0)
        why = strerror(errno);
    else if (!S_ISDIR(st.st_mode))
        why = strerror(ENOTDIR);
    else
        return 0;
    fprintf(stderr, "slidescan %s: %s: %s\n", cmd, parent, why);
    return EXIT_FAIL;
}

static void
ki67_value(const char *indent, const char *name, double v, const char *note)
{
    int w = 22 - (int)strlen(indent);

    if (isfinite(v))
        printf("%s%-*s %.4f%s\n", indent, w, name, v, note);
    else
        printf("%s%-*s n/a\n", indent, w, name);
}

void
client__ki67_print(const char *indent, double index, bool tissue,
                   double other, bool option_hint)
{
    char ind2[32];

    ki67_value(indent, "KI67 index", index, tissue ? " (nuclei on tissue)"
                                                   : " (nuclei on tumour)");
    if (!isfinite(index) && !isfinite(other))
        return;
    snprintf(ind2, sizeof(ind2), "%s  ", indent);
    ki67_value(ind2, tissue ? "on tumour only" : "on all tissue", other,
               !option_hint ? "" : tissue ? " (--ki67-scope tumor)"
                                          : " (--ki67-scope tissue)");
    if (isfinite(index) && isfinite(other) &&
        fabs(index - other) > CLIENT_KI67_SCOPE_WARN)
        printf("%swarning: the KI67 index on tumour and on all tissue "
               "differ by %.1f points;\n%s         check the tumour overlay "
               "before using either\n", indent, 100 * fabs(index - other),
               indent);
}
