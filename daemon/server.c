/* SPDX-License-Identifier: MIT */
/*
 * The control server: a unix stream socket (mode and group from the
 * configuration) on the loop thread.  Each connection is a struct client
 * with its caller's credentials from SO_PEERCRED, a line framer and, once
 * it asked to watch, a place in the event broadcast.
 *
 * Access: root, the daemon's own uid and members of the configured group
 * (primary or supplementary group of the calling process, SO_PEERGROUPS)
 * are admitted; anyone else gets one "refused" answer and is closed.
 *
 * Backlog policy for watchers: events are queued per client by libuv.  A
 * client with more than watch_drop_kb unsent loses progress events (and
 * is told how many with a "dropped" event once it catches up); beyond
 * watch_close_kb it is disconnected.  State events are never dropped
 * silently.  So one slow or stopped watcher costs bounded memory and
 * never blocks the loop.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

struct client {
    uv_pipe_t pipe;
    struct daemon *d;
    struct client *next, **pprev;
    struct caller who;
    bool allowed;
    bool watching;
    bool closing;
    bool close_after_write;
    long dropped;
    struct proto_lines lines;
};

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
    struct client *c;
};

static void
on_closed(uv_handle_t *h)
{
    struct client *c = h->data;

    proto_lines_fini(&c->lines);
    free(c);
}

static void
client_close(struct client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    *c->pprev = c->next;
    if (c->next != NULL)
        c->next->pprev = c->pprev;
    if (c->watching)
        c->d->nwatchers--;
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}

static void
on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct client *c = w->c;

    free(w->buf.base);
    free(w);
    if (c->closing)
        return;
    if (status < 0 || (c->close_after_write &&
                       uv_stream_get_write_queue_size(
                           (uv_stream_t *)&c->pipe) == 0))
        client_close(c);
}

/* Sends line (malloc()ed, taken over) to c. */
static void
client_send(struct client *c, char *line, size_t len)
{
    struct wreq *w;

    if (line == NULL || c->closing) {
        free(line);
        return;
    }
    w = malloc(sizeof(*w));
    if (w == NULL) {
        free(line);
        client_close(c);
        return;
    }
    w->buf = uv_buf_init(line, (unsigned)len);
    w->c = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1,
                 on_written) != 0) {
        free(line);
        free(w);
        client_close(c);
    }
}

static void
send_error(struct client *c, json_int_t id, int code, const char *msg)
{
    size_t len;
    char *line = proto_err_line(id, code, msg, &len);

    client_send(c, line, len);
}

static void
send_ok(struct client *c, json_int_t id, json_t *result)
{
    size_t len;
    char *line = proto_ok_line(id, result, &len);

    client_send(c, line, len);
}

static struct client *
client_find(struct daemon *d, uint64_t serial)
{
    struct client *c;

    for (c = d->clients; c != NULL; c = c->next)
        if (c->who.serial == serial)
            return c;
    return NULL;
}

void
daemon__reply_later(struct daemon *d, uint64_t serial, json_int_t req_id,
                    int rc, json_t *result, const char *msg)
{
    struct client *c = client_find(d, serial);

    if (c == NULL) {
        json_decref(result);
        return;
    }
    if (rc == 0)
        send_ok(c, req_id, result);
    else {
        json_decref(result);
        send_error(c, req_id, rc, msg);
    }
}

static size_t
backlog(struct client *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

static void
send_dropped(struct client *c)
{
    size_t len;
    char *line;

    line = proto_event_line("dropped", json_pack("{s:I}", "count",
                                                 (json_int_t)c->dropped),
                            &len);
    client_send(c, line, len);
    c->dropped = 0;
}

void
daemon__broadcast(struct daemon *d, const char *event, json_t *fields)
{
    size_t drop = (size_t)d->conf.watch_drop_kb * 1024;
    size_t shut = (size_t)d->conf.watch_close_kb * 1024;
    bool droppable = strcmp(event, "progress") == 0;
    struct client *c, *next;
    char *line, *copy;
    size_t len;

    line = proto_event_line(event, fields, &len);
    if (line == NULL)
        return;
    for (c = d->clients; c != NULL; c = next) {
        next = c->next;
        if (!c->watching)
            continue;
        if (backlog(c) > shut) {
            log_warn("server", "watcher closed uid=%u pid=%d backlog_kb=%zu",
                     (unsigned)c->who.uid, (int)c->who.pid,
                     backlog(c) / 1024);
            client_close(c);
            continue;
        }
        if (droppable && backlog(c) > drop) {
            c->dropped++;
            continue;
        }
        if (c->dropped > 0)
            send_dropped(c);
        copy = malloc(len);
        if (copy != NULL)
            memcpy(copy, line, len);
        client_send(c, copy, len);
    }
    free(line);
}

/* LIMIT: only the caller's first 256 supplementary groups are looked at;
 * a member whose group is further down the list is refused. */
static bool
in_peer_groups(int fd, gid_t gid)
{
    gid_t groups[256];
    socklen_t len = sizeof(groups);
    size_t i;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0)
        return false;
    for (i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == gid)
            return true;
    return false;
}

static void
identify(struct client *c)
{
    struct daemon *d = c->d;
    struct ucred cr;
    socklen_t len = sizeof(cr);
    uv_os_fd_t fd;

    c->allowed = false;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return;
    c->who.uid = cr.uid;
    c->who.gid = cr.gid;
    c->who.pid = cr.pid;
    if (cr.uid == 0 || cr.uid == geteuid())
        c->allowed = true;
    else if (d->have_group && (cr.gid == d->group_gid ||
                               in_peer_groups(fd, d->group_gid)))
        c->allowed = true;
}

static void
refuse(struct client *c)
{
    struct daemon *d = c->d;
    char msg[512], detail[128];

    if (d->have_group)
        snprintf(msg, sizeof(msg), "uid %u is not in group '%s'; slidescand "
                 "admits root, its own user and members of that group",
                 (unsigned)c->who.uid, d->conf.group);
    else
        snprintf(msg, sizeof(msg), "uid %u may not use this slidescand; it "
                 "admits root and its own user only (no group configured)",
                 (unsigned)c->who.uid);
    log_warn("server", "refused uid=%u pid=%d", (unsigned)c->who.uid,
             (int)c->who.pid);
    snprintf(detail, sizeof(detail), "pid %d", (int)c->who.pid);
    daemon__audit(d, c->who.uid, "refused", 0, detail);
    send_error(c, -1, -EACCES, msg);
    c->close_after_write = true;
}

static int
on_line(void *ctx, char *line, size_t len)
{
    struct client *c = ctx;
    struct proto_req req;
    json_t *result = NULL;
    struct ss_err err;
    int rc;

    if (!c->allowed) {
        refuse(c);
        return 1;
    }
    err_clear(&err);
    rc = proto_req_parse(line, len, &req, &err);
    if (rc == 0 && req.cmd == PROTO_CMD_WATCH) {
        if (!c->watching)
            c->d->nwatchers++;
        c->watching = true;
        result = json_pack("{s:b, s:o}", "watching", 1, "status",
                           daemon__status_json(c->d));
    } else if (rc == 0) {
        rc = daemon__command(c->d, &c->who, &req, &result, &err);
    }
    if (rc == 0)
        send_ok(c, req.id, result);
    else if (rc < 0)
        send_error(c, req.id, rc, err.msg);
    proto_req_fini(&req);
    return c->closing ? 1 : 0;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char rbuf[65536];

    buf->base = rbuf;
    buf->len = sizeof(rbuf);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = s->data;
    char msg[128];
    int rc;

    if (nread < 0) {
        client_close(c);
        return;
    }
    if (c->close_after_write || c->closing)
        return;
    rc = proto_lines_feed(&c->lines, buf->base, (size_t)nread, on_line, c);
    if (rc == -EMSGSIZE) {
        snprintf(msg, sizeof(msg), "request line longer than %d bytes",
                 PROTO_LINE_MAX);
        send_error(c, -1, -EMSGSIZE, msg);
        c->close_after_write = true;
    } else if (rc < 0 && rc != 1) {
        client_close(c);
    } else if (!c->watching &&
               backlog(c) > (size_t)c->d->conf.watch_close_kb * 1024) {
        client_close(c);
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct daemon *d = server->data;
    struct client *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->d = d;
    c->who.serial = ++d->next_client;
    proto_lines_init(&c->lines, PROTO_LINE_MAX);
    uv_pipe_init(d->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = d->clients;
    c->pprev = &d->clients;
    if (d->clients != NULL)
        d->clients->pprev = &c->next;
    d->clients = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        client_close(c);
        return;
    }
    identify(c);
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* A socket file left by a daemon that died is removed; one that answers
 * belongs to a running daemon and is an error. */
static int
clear_stale(const char *path, struct ss_err *err)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return err_set(err, -EEXIST, "socket %s: exists and is not a "
                       "socket", path);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(err, -errno, "socket: %s", strerror(errno));
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (rc == 0)
        return err_set(err, -EADDRINUSE, "socket %s: another slidescand is "
                       "running there", path);
    if (unlink(path) != 0)
        return err_set(err, -errno, "socket %s: cannot remove stale "
                       "socket: %s", path, strerror(errno));
    log_notice("server", "removed stale socket path=%s", path);
    return 0;
}

static int
resolve_group(struct daemon *d, struct ss_err *err)
{
    struct group gr, *res = NULL;
    char buf[16384];

    d->have_group = false;
    if (d->conf.group[0] == '\0')
        return 0;
    if (getgrnam_r(d->conf.group, &gr, buf, sizeof(buf), &res) != 0 ||
        res == NULL)
        return err_set(err, SS_ECONFIG, "[daemon] group: no group named "
                       "'%s' (create it, e.g. with systemd-sysusers, or set "
                       "group = to admit root and the daemon's user only)",
                       d->conf.group);
    d->group_gid = gr.gr_gid;
    d->have_group = true;
    return 0;
}

static int
bind_socket(struct daemon *d, const char *path, struct ss_err *err)
{
    mode_t old;
    int rc;

    uv_pipe_init(d->loop, &d->server, 0);
    d->server.data = d;
    d->server_open = true;
    old = umask(0177);
    rc = uv_pipe_bind(&d->server, path);
    umask(old);
    if (rc != 0)
        return err_set(err, rc, "socket %s: bind: %s", path,
                       uv_strerror(rc));
    if (chmod(path, (mode_t)d->conf.socket_mode) != 0)
        return err_set(err, -errno, "socket %s: chmod: %s", path,
                       strerror(errno));
    if (d->have_group && chown(path, (uid_t)-1, d->group_gid) != 0)
        return err_set(err, -errno, "socket %s: cannot give it to group "
                       "'%s': %s", path, d->conf.group, strerror(errno));
    rc = uv_listen((uv_stream_t *)&d->server, 64, on_connection);
    if (rc != 0)
        return err_set(err, rc, "socket %s: listen: %s", path,
                       uv_strerror(rc));
    return 0;
}

/* Creates the missing directories of the socket's path.  Those it makes
 * are traversable by whoever the socket admits (socket_mode's group and
 * other bits) and belong to the socket's group, so that a group member
 * reaches the socket through them; existing directories are left as they
 * are. */
static int
make_socket_dir(struct daemon *d, const char *dir, struct ss_err *err)
{
    unsigned mode = 0700;

    if (d->conf.socket_mode & 0060)
        mode |= 0050;
    if (d->conf.socket_mode & 0006)
        mode |= 0005;
    return util_mkdir_as(dir, mode, d->have_group ? (long)d->group_gid : -1,
                         err);
}

int
daemon__server_start(struct daemon *d, struct ss_err *err)
{
    const char *path = d->conf.socket_path;
    char dir[PATH_MAX];
    char *slash;
    int rc;

    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return err_set(err, SS_ECONFIG, "[daemon] socket: '%s' is longer "
                       "than a unix socket path may be (107 bytes)", path);
    rc = resolve_group(d, err);
    if (rc < 0)
        return rc;
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        rc = make_socket_dir(d, dir, err);
        if (rc < 0)
            return err_prefix(err, "socket directory");
    }
    rc = clear_stale(path, err);
    if (rc < 0)
        return rc;
    rc = bind_socket(d, path, err);
    if (rc < 0)
        return rc;
    log_notice("server", "listening socket=%s mode=%04o group=%s", path,
               d->conf.socket_mode, d->have_group ? d->conf.group : "-");
    return 0;
}

void
daemon__server_stop(struct daemon *d)
{
    while (d->clients != NULL)
        client_close(d->clients);
    if (d->server_open) {
        uv_close((uv_handle_t *)&d->server, NULL);
        d->server_open = false;
        unlink(d->conf.socket_path);
    }
}
