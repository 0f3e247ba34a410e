/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the control protocol: the bytes a client may send
 * to slidescand, taken through the code the server runs on them
 * (daemon/server.c: line framing, request validation, the answer it
 * builds) and through the client's parser of the answer.  Besides
 * sanitizer findings (ASan, UBSan, LeakSanitizer) it aborts when one of
 * these properties breaks:
 *
 *   - framing does not depend on how the bytes arrive: the input fed in
 *     one piece and in 7-byte pieces gives the same lines and result;
 *   - every request gets an answer: proto_err_line()/proto_ok_line()
 *     never return NULL for what proto_req_parse() produced (the server
 *     sends nothing when they do, and the client waits forever);
 *   - the answer reads back with proto_msg_parse() as the same id, ok
 *     flag and wire code, with a message, the same one whenever it was
 *     valid UTF-8 (JSON strings cannot carry anything else);
 *   - a valid request rebuilt with proto_req_line() validates again as
 *     the same command;
 *   - wire error codes map back to themselves.
 *
 * tests/fuzz/run builds it with clang and runs it on tests/fuzz/corpus.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run with a message; libFuzzer saves the input. */
static void
fail(const char *what, const char *line, size_t len)
{
    fprintf(stderr, "fuzz_protocol: %s\n  line (%zu bytes): %.*s\n", what,
            len, (int)(len > 300 ? 300 : len), line);
    abort();
}

/* What one way of feeding the framer produced. */
struct seen {
    size_t nlines;
    uint64_t hash;                  /* FNV-1a over lengths and bytes */
};

static void
seen_add(struct seen *s, const char *line, size_t len)
{
    size_t i;

    s->nlines++;
    s->hash = (s->hash ^ len) * 1099511628211ULL;
    for (i = 0; i < len; i++)
        s->hash = (s->hash ^ (uint8_t)line[i]) * 1099511628211ULL;
}

static int
on_collect(void *ctx, char *line, size_t len)
{
    seen_add(ctx, line, len);
    return 0;
}

static void
check_codes(int rc, const char *line, size_t len)
{
    const char *name = proto_code_name(rc);

    if (name == NULL)
        fail("proto_code_name returned NULL", line, len);
    if (strcmp(proto_code_name(proto_code_value(name)), name) != 0)
        fail("wire code does not map back to itself", line, len);
}

/* True when s is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static bool
utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned int c, min;
    int more;

    while (*p != 0) {
        c = *p++;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1, min = 0x80, c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2, min = 0x800, c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        for (; more > 0; more--, p++) {
            if ((*p & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (*p & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
    }
    return true;
}

/* The client's view of the line the server would send. */
static void
check_answer(char *out, size_t olen, json_int_t id, bool ok,
             const char *code, const char *msg, const char *line,
             size_t len)
{
    struct proto_msg m;
    struct ss_err err;

    if (out == NULL)
        fail("no answer could be built (the client would wait forever)",
             line, len);
    if (olen == 0 || out[olen - 1] != '\n' ||
        memchr(out, '\n', olen - 1) != NULL || olen > PROTO_REPLY_MAX)
        fail("the answer is not exactly one line", line, len);
    err_clear(&err);
    if (proto_msg_parse(out, olen - 1, &m, &err) != 0)
        fail(err.msg, line, len);
    if (m.kind != PROTO_MSG_RESPONSE || m.id != id || m.ok != ok)
        fail("the answer reads back with another id or ok flag", line,
             len);
    if (!ok && strcmp(m.err_code, code) != 0)
        fail("the error reads back with another code", line, len);
    if (!ok && (m.err_msg[0] == '\0' ||
                (utf8_valid(msg) && strcmp(m.err_msg, msg) != 0)))
        fail("the error reads back with another message", line, len);
    proto_msg_fini(&m);
    free(out);
}

/* Typed access to every argument, as the command handlers do it. */
static void
touch_args(const struct proto_req *req, const char *line, size_t len)
{
    const char *key;
    json_t *v;

    json_object_foreach(req->args, key, v) {
        (void)proto_arg_str(req, key, NULL);
        (void)proto_arg_int(req, key, 0);
        (void)proto_arg_bool(req, key, false);
        if (!proto_arg_has(req, key))
            fail("an argument that is there is not found", line, len);
    }
}

/* The client's way of building the same request must validate again. */
static void
check_rebuilt(const struct proto_req *req, const char *line, size_t len)
{
    json_int_t id = req->id >= 0 ? req->id : 0;
    struct proto_req again;
    struct ss_err err;
    size_t n;
    char *out;

    out = proto_req_line(id, proto_cmd_name(req->cmd),
                         json_deep_copy(req->args), &n);
    if (out == NULL)
        fail("proto_req_line failed on a valid request", line, len);
    err_clear(&err);
    if (proto_req_parse(out, n - 1, &again, &err) != 0 ||
        again.cmd != req->cmd || again.id != id)
        fail("a rebuilt request does not validate the same", line, len);
    proto_req_fini(&again);
    free(out);
}

/* What daemon/server.c does with one line (the command itself aside). */
static int
on_line(void *ctx, char *line, size_t len)
{
    struct proto_req req;
    struct proto_msg m;
    struct ss_err err;
    size_t olen = 0;
    char *out;
    int rc;

    seen_add(ctx, line, len);
    err_clear(&err);
    rc = proto_req_parse(line, len, &req, &err);
    check_codes(rc, line, len);
    if (rc == 0) {
        if (proto_cmd_name(req.cmd) == NULL || !json_is_object(req.args))
            fail("a valid request without command or args", line, len);
        touch_args(&req, line, len);
        check_rebuilt(&req, line, len);
        out = proto_ok_line(req.id, json_deep_copy(req.args), &olen);
        check_answer(out, olen, req.id, true, NULL, NULL, line, len);
    } else {
        if (err.msg[0] == '\0')
            fail("a refused request without a message", line, len);
        out = proto_err_line(req.id, rc, err.msg, &olen);
        check_answer(out, olen, req.id, false, proto_code_name(rc),
                     err.msg, line, len);
    }
    proto_req_fini(&req);

    /* The client parses whatever arrives; it must not crash either. */
    if (proto_msg_parse(line, len, &m, &err) == 0 &&
        m.kind == PROTO_MSG_EVENT && m.event == NULL)
        fail("an event without a name", line, len);
    proto_msg_fini(&m);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bytes = (const char *)data;
    struct proto_lines whole, pieces;
    struct seen a = { 0, 14695981039346656037ULL };
    struct seen b = a;
    size_t off, n;
    int rc_a, rc_b = 0;
    char *out;

    proto_lines_init(&whole, PROTO_LINE_MAX);
    rc_a = proto_lines_feed(&whole, bytes, size, on_line, &a);
    if (rc_a == -EMSGSIZE) {
        out = proto_err_line(-1, rc_a, "request line too long", &n);
        check_answer(out, n, -1, false, "too_large",
                     "request line too long", bytes, size);
    }
    proto_lines_fini(&whole);

    proto_lines_init(&pieces, PROTO_LINE_MAX);
    for (off = 0; off < size && rc_b == 0; off += n) {
        n = size - off < 7 ? size - off : 7;
        rc_b = proto_lines_feed(&pieces, bytes + off, n, on_collect, &b);
    }
    proto_lines_fini(&pieces);
    if (rc_a != rc_b || a.nlines != b.nlines || a.hash != b.hash)
        fail("framing depends on how the bytes arrive", bytes, size);
    return 0;
}
