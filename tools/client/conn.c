/* SPDX-License-Identifier: MIT */
/* A blocking connection to slidescand: framing, requests, kept events. */
#include "tools/client/conn.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "protocol/protocol.h"
#include "tools/client/client.h"

struct kept {
    struct kept *next;
    json_t *msg;
};

struct client_conn {
    int fd;
    json_int_t next_id;
    struct proto_lines lines;
    struct kept *head, *tail;       /* parsed messages not yet taken */
    bool closed;
    char bad[256];                  /* first unreadable message */
};

const char *
client_socket_path(const char *opt)
{
    const char *env = getenv("SLIDESCAN_SOCKET");

    if (opt != NULL && *opt != '\0')
        return opt;
    if (env != NULL && *env != '\0')
        return env;
    return CLIENT_DEFAULT_SOCKET;
}

int
client_exit_for(const char *code)
{
    if (code == NULL)
        return EXIT_FAIL;
    if (strcmp(code, "not_found") == 0)
        return EXIT_NOTFOUND;
    if (strcmp(code, "refused") == 0)
        return EXIT_REFUSED;
    if (strcmp(code, "bad_request") == 0 ||
        strcmp(code, "unknown_command") == 0)
        return EXIT_USAGE;
    return EXIT_FAIL;
}

int
client_conn_open(const char *path, struct client_conn **out, char *msg,
                 size_t len)
{
    struct sockaddr_un sa;
    struct client_conn *c;
    int fd, e;

    *out = NULL;
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(msg, len, "socket path %s is too long", path);
        return EXIT_USAGE;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(msg, len, "socket: %s", strerror(errno));
        return EXIT_FAIL;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        e = errno;
        close(fd);
        if (e == EACCES || e == EPERM) {
            snprintf(msg, len, "%s: permission denied; slidescand admits "
                     "root, its own user and members of its group "
                     "(usually 'slidescan')", path);
            return EXIT_REFUSED;
        }
        snprintf(msg, len, "cannot reach slidescand at %s: %s (is it "
                 "running? --socket or SLIDESCAN_SOCKET choose another "
                 "socket)", path, strerror(e));
        return EXIT_NODAEMON;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        snprintf(msg, len, "out of memory");
        return EXIT_FAIL;
    }
    c->fd = fd;
    c->next_id = 1;
    proto_lines_init(&c->lines, PROTO_REPLY_MAX);
    *out = c;
    return EXIT_OK;
}

void
client_conn_close(struct client_conn *c)
{
    struct kept *k, *next;

    if (c == NULL)
        return;
    for (k = c->head; k != NULL; k = next) {
        next = k->next;
        json_decref(k->msg);
        free(k);
    }
    proto_lines_fini(&c->lines);
    close(c->fd);
    free(c);
}

static int
keep_line(void *ctx, char *line, size_t len)
{
    struct client_conn *c = ctx;
    json_error_t je;
    struct kept *k;
    json_t *msg;

    msg = json_loadb(line, len, 0, &je);
    if (!json_is_object(msg)) {
        json_decref(msg);
        if (c->bad[0] == '\0')
            snprintf(c->bad, sizeof(c->bad), "unreadable message from the "
                     "daemon: %s", je.text);
        return 0;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        json_decref(msg);
        return -ENOMEM;
    }
    k->msg = msg;
    if (c->tail != NULL)
        c->tail->next = k;
    else
        c->head = k;
    c->tail = k;
    return 0;
}

/* Reads what arrives within timeout_ms; false on timeout or close. */
static bool
fill(struct client_conn *c, int timeout_ms)
{
    struct pollfd p = { c->fd, POLLIN, 0 };
    char buf[65536];
    ssize_t n;
    int rc;

    if (c->closed)
        return false;
    rc = poll(&p, 1, timeout_ms);
    if (rc <= 0)
        return false;
    n = read(c->fd, buf, sizeof(buf));
    if (n <= 0) {
        c->closed = true;
        return false;
    }
    return proto_lines_feed(&c->lines, buf, (size_t)n, keep_line, c) == 0;
}

/* Takes the first kept message matching pred. */
static json_t *
take(struct client_conn *c, bool (*pred)(json_t *m, json_int_t id),
     json_int_t id)
{
    struct kept **pp, *k, *prev = NULL;
    json_t *m;

    for (pp = &c->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        k = *pp;
        if (!pred(k->msg, id))
            continue;
        *pp = k->next;
        if (c->tail == k)
            c->tail = prev;
        m = k->msg;
        free(k);
        return m;
    }
    return NULL;
}

static bool
is_response(json_t *m, json_int_t id)
{
    json_t *v = json_object_get(m, "id");

    if (json_object_get(m, "event") != NULL)
        return false;
    return json_is_null(v) || json_integer_value(v) == id;
}

static bool
is_event(json_t *m, json_int_t id)
{
    return json_object_get(m, "event") != NULL;
}

static int
wait_for(struct client_conn *c, bool (*pred)(json_t *m, json_int_t id),
         json_int_t id, int timeout_ms, json_t **out)
{
    double deadline = util_now_ms() + timeout_ms;
    int left;

    for (;;) {
        *out = take(c, pred, id);
        if (*out != NULL)
            return 0;
        left = timeout_ms < 0 ? -1 : (int)(deadline - util_now_ms());
        if (timeout_ms >= 0 && left <= 0)
            return -ETIMEDOUT;
        if (!fill(c, left) && (c->closed || timeout_ms >= 0))
            return c->closed ? -EPIPE : -ETIMEDOUT;
    }
}

static int
send_all(struct client_conn *c, const char *buf, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(c->fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
response_result(json_t *m, json_t **result, char *msg, size_t len)
{
    json_t *e = json_object_get(m, "error");
    const char *code;

    if (json_is_true(json_object_get(m, "ok"))) {
        *result = json_incref(json_object_get(m, "result"));
        return *result != NULL ? EXIT_OK : EXIT_FAIL;
    }
    code = json_string_value(json_object_get(e, "code"));
    snprintf(msg, len, "%s: %s", code != NULL ? code : "error",
             json_string_value(json_object_get(e, "message")) != NULL
             ? json_string_value(json_object_get(e, "message")) : "");
    return client_exit_for(code);
}

int
client_conn_call(struct client_conn *c, const char *cmd, json_t *args,
                 int timeout_ms, json_t **result, char *msg, size_t len)
{
    json_int_t id = c->next_id++;
    size_t n;
    char *line = proto_req_line(id, cmd, args, &n);
    json_t *m = NULL;
    int rc, wrc;

    *result = NULL;
    if (line == NULL) {
        snprintf(msg, len, "out of memory");
        return EXIT_FAIL;
    }
    wrc = send_all(c, line, n);
    free(line);
    rc = wait_for(c, is_response, id, timeout_ms, &m);
    if (rc == 0) {
        rc = response_result(m, result, msg, len);
        json_decref(m);
        return rc;
    }
    if (rc == -ETIMEDOUT)
        snprintf(msg, len, "no answer from slidescand within %d ms",
                 timeout_ms);
    else
        snprintf(msg, len, "slidescand closed the connection%s%s",
                 wrc < 0 ? ": " : "", wrc < 0 ? strerror(-wrc) : "");
    return c->closed ? EXIT_NODAEMON : EXIT_FAIL;
}

int
client_conn_event(struct client_conn *c, int timeout_ms, json_t **ev,
                  char *msg, size_t len)
{
    int rc = wait_for(c, is_event, 0, timeout_ms, ev);

    if (rc == 0)
        return EXIT_OK;
    snprintf(msg, len, "%s", rc == -ETIMEDOUT ? "timed out"
                                              : "slidescand closed the "
                                                "connection");
    return EXIT_FAIL;
}
