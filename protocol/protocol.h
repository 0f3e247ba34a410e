/* SPDX-License-Identifier: MIT */
/*
 * The control protocol between slidescand and its clients: versioned JSON
 * lines over a unix stream socket (protocol/PROTOCOL.md is the reference).
 *
 *   request   {"v":1,"id":7,"cmd":"scan","args":{...}}
 *   response  {"v":1,"id":7,"ok":true,"result":{...}}
 *             {"v":1,"id":7,"ok":false,"error":{"code":"...","message":..}}
 *   event     {"v":1,"event":"progress",...}
 *
 * This module owns the framing (lines of at most PROTO_LINE_MAX bytes), the
 * command table with each command's argument schema, strict validation of
 * requests (types, ranges, choices, unknown fields, each error naming the
 * field), the mapping between internal error codes and wire error codes,
 * and the builders both sides use.  It does no I/O.
 */
#ifndef SS_PROTOCOL_PROTOCOL_H
#define SS_PROTOCOL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/err.h"

#define PROTO_VERSION 1

/* Longest request line the daemon accepts, newline included. */
#define PROTO_LINE_MAX (64 * 1024)

/* Longest response or event line a client accepts. */
#define PROTO_REPLY_MAX (16 * 1024 * 1024)

/* Slide ids become directory names: 1..63 of [A-Za-z0-9._-], not starting
 * with '.' or '-'. */
#define PROTO_SLIDE_MAX 63

/* The smallest side of a scan region, µm.  The slide image of a region
 * scan is the region itself, and the analysis reads it at 2 µm/px and
 * drops tissue specks under 2000 µm²: a narrower region would give an
 * image of a few pixels whose analysis cannot find tissue at all. */
#define PROTO_REGION_MIN_UM 100.0

enum proto_cmd {
    PROTO_CMD_PING,
    PROTO_CMD_SCAN,
    PROTO_CMD_QUEUE,
    PROTO_CMD_STATUS,
    PROTO_CMD_WATCH,
    PROTO_CMD_PAUSE,
    PROTO_CMD_RESUME,
    PROTO_CMD_CANCEL,
    PROTO_CMD_REQUEUE,
    PROTO_CMD_MOVE,
    PROTO_CMD_SLIDES,
    PROTO_CMD_SHOW,
    PROTO_CMD_CALIBRATE,
    PROTO_CMD_DEVICES,
    PROTO_CMD_RELOAD,
    PROTO_CMD_ANALYSE,
    PROTO_CMD_COUNT
};

/* A validated request.  args is always an object (empty when the request
 * had none) and every member has the type and range of its schema. */
struct proto_req {
    json_int_t id;                  /* -1 when the request had none */
    enum proto_cmd cmd;
    json_t *args;                   /* borrowed from root */
    json_t *root;                   /* owned */
};

/* Parses and validates one request line (without its newline).  On
 * failure returns SS_EPROTO (or -ENOSYS for an unknown command) with a
 * message naming the field and the cause, e.g. "args.stain: must be one
 * of HE, KI67, CK"; req->id is set whenever the id itself was readable so
 * the error can still be matched to the request. */
int proto_req_parse(const char *line, size_t len, struct proto_req *req,
                    struct ss_err *err);

/* Releases what proto_req_parse() kept; safe on a zeroed or failed req. */
void proto_req_fini(struct proto_req *req);

/* The command's wire name ("scan"), or NULL for an out-of-range value. */
const char *proto_cmd_name(enum proto_cmd cmd);

/* Typed access to validated arguments; def when the field is absent. */
const char *proto_arg_str(const struct proto_req *r, const char *key,
                          const char *def);
json_int_t proto_arg_int(const struct proto_req *r, const char *key,
                         json_int_t def);
bool proto_arg_bool(const struct proto_req *r, const char *key, bool def);
bool proto_arg_has(const struct proto_req *r, const char *key);

/* True when s is a valid slide id (see PROTO_SLIDE_MAX). */
bool proto_slide_id_ok(const char *s);

/* The wire error code for an internal code: "bad_request" (SS_EPROTO,
 * -EINVAL), "unknown_command" (-ENOSYS), "not_found" (-ENOENT), "refused"
 * (-EACCES, -EPERM), "conflict" (-EALREADY, -EEXIST, -EBUSY), "too_large"
 * (-EMSGSIZE), "config" (SS_ECONFIG), "device" (device faults, -ENODEV),
 * "shutting_down" (-ESHUTDOWN), otherwise "internal".  Never NULL. */
const char *proto_code_name(int code);

/* The inverse, for clients: a representative internal code. */
int proto_code_value(const char *name);

/* Makes s valid UTF-8 in place: a sequence cut at the end (a message
 * truncated mid-character) is dropped, any other invalid byte becomes
 * '?'.  Error messages quote what clients sent, so they pass through here
 * before they are serialised.  Returns s. */
char *proto_utf8_fix(char *s);

/* Serialised messages, each one line ending in '\n', malloc()ed, *len set
 * when len is non-NULL.  The json_t arguments are stolen (NULL allowed:
 * an empty object).  NULL only when out of memory. */
char *proto_ok_line(json_int_t id, json_t *result, size_t *len);
char *proto_err_line(json_int_t id, int code, const char *msg, size_t *len);
char *proto_event_line(const char *event, json_t *fields, size_t *len);
char *proto_req_line(json_int_t id, const char *cmd, json_t *args,
                     size_t *len);

/* A response or event as the client reads it. */
enum proto_msg_kind { PROTO_MSG_RESPONSE = 1, PROTO_MSG_EVENT = 2 };

struct proto_msg {
    enum proto_msg_kind kind;
    json_int_t id;                  /* responses */
    bool ok;
    json_t *result;                 /* borrowed from root; ok responses */
    const char *err_code;           /* borrowed; failed responses */
    const char *err_msg;
    const char *event;              /* borrowed; events */
    json_t *root;                   /* owned; events are root itself */
};

/* Parses a response or event line; SS_EPROTO with the cause otherwise. */
int proto_msg_parse(const char *line, size_t len, struct proto_msg *m,
                    struct ss_err *err);
void proto_msg_fini(struct proto_msg *m);

/* Line framing over a byte stream.  Bytes are fed as they arrive; each
 * complete line (newline removed, a trailing '\r' kept as data) is handed
 * to the callback.  A line longer than max bytes, newline included, makes
 * proto_lines_feed() return -EMSGSIZE; the buffered part is discarded and
 * the caller decides (the daemon answers "too_large" and closes). */
struct proto_lines {
    char *buf;
    size_t len, cap, max;
};

typedef int (*proto_line_fn)(void *ctx, char *line, size_t len);

void proto_lines_init(struct proto_lines *l, size_t max);
void proto_lines_fini(struct proto_lines *l);

/* Calls fn for each complete line; stops and returns fn's value when it
 * is non-zero; -ENOMEM or -EMSGSIZE on framing failure; 0 otherwise. */
int proto_lines_feed(struct proto_lines *l, const char *data, size_t n,
                     proto_line_fn fn, void *ctx);

#endif
