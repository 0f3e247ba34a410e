/* SPDX-License-Identifier: MIT */
/* protocol/: request validation with exact messages, framing, builders,
 * error-code mapping. */
#include "tests/support/testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

/* Parses line; returns the code and copies the message into msg. */
static int
parse(const char *line, struct proto_req *req, char *msg)
{
    struct ss_err e;
    int rc;

    err_clear(&e);
    rc = proto_req_parse(line, strlen(line), req, &e);
    strcpy(msg, e.msg);
    return rc;
}

static void
expect(const char *line, int code, const char *message, json_int_t id)
{
    struct proto_req req;
    char msg[SS_ERR_MSG_MAX];

    assert_int_equal(parse(line, &req, msg), code);
    assert_string_equal(msg, message);
    assert_true(req.id == id);
    proto_req_fini(&req);
}

static void
test_valid_requests(void **state)
{
    struct proto_req req;
    char msg[SS_ERR_MSG_MAX];

    assert_int_equal(parse("{\"v\":1,\"id\":7,\"cmd\":\"scan\",\"args\":"
                           "{\"slide\":\"S-0042\",\"stain\":\"KI67\","
                           "\"priority\":-3,\"image\":\"phantom:KI67\"}}",
                           &req, msg), 0);
    assert_int_equal(req.cmd, PROTO_CMD_SCAN);
    assert_true(req.id == 7);
    assert_string_equal(proto_arg_str(&req, "slide", NULL), "S-0042");
    assert_true(proto_arg_int(&req, "priority", 0) == -3);
    assert_false(proto_arg_has(&req, "wait"));
    proto_req_fini(&req);
    assert_int_equal(parse("{\"cmd\":\"status\",\"v\":1}", &req, msg), 0);
    assert_true(req.id == -1);
    assert_true(json_is_object(req.args));
    assert_true(proto_arg_bool(&req, "all", true));
    proto_req_fini(&req);
    assert_string_equal(proto_cmd_name(PROTO_CMD_MOVE), "move");
    assert_null(proto_cmd_name(PROTO_CMD_COUNT));
}

static void
test_each_defect_is_named(void **state)
{
    expect("{\"v\":1,\"id\":1,\"cmd\":\"scan\",\"args\":{\"slide\":\"A\","
           "\"stain\":\"PAS\"}}", SS_EPROTO,
           "args.stain: must be one of HE, KI67, CK", 1);
    expect("{\"v\":1,\"id\":2,\"cmd\":\"scan\",\"args\":{\"stain\":\"HE\"}}",
           SS_EPROTO, "args.slide: required by command 'scan'", 2);
    expect("{\"v\":1,\"id\":3,\"cmd\":\"scan\",\"args\":{\"slide\":\"A\","
           "\"stain\":\"HE\",\"colour\":1}}", SS_EPROTO,
           "args.colour: unknown field for command 'scan'", 3);
    expect("{\"v\":1,\"id\":4,\"cmd\":\"scan\",\"args\":{\"slide\":\"A\","
           "\"stain\":\"HE\",\"priority\":101}}", SS_EPROTO,
           "args.priority: 101 is outside -100..100", 4);
    expect("{\"v\":1,\"id\":5,\"cmd\":\"scan\",\"args\":{\"slide\":7,"
           "\"stain\":\"HE\"}}", SS_EPROTO, "args.slide: must be a string",
           5);
    expect("{\"v\":1,\"id\":6,\"cmd\":\"scan\",\"args\":{\"slide\":"
           "\"../etc\",\"stain\":\"HE\"}}", SS_EPROTO,
           "args.slide: must be 1 to 63 of A-Z a-z 0-9 . _ -, not starting "
           "with . or -", 6);
    expect("{\"v\":1,\"id\":8,\"cmd\":\"pause\",\"args\":{\"scan\":1.5}}",
           SS_EPROTO, "args.scan: must be an integer", 8);
    expect("{\"v\":1,\"id\":9,\"cmd\":\"queue\",\"args\":{\"all\":1}}",
           SS_EPROTO, "args.all: must be true or false", 9);
    expect("{\"v\":1,\"id\":10,\"cmd\":\"explode\"}", -ENOSYS,
           "cmd: unknown command 'explode'", 10);
    expect("{\"v\":2,\"id\":11,\"cmd\":\"ping\"}", SS_EPROTO,
           "v: unsupported protocol version (this daemon speaks 1)", 11);
    expect("{\"id\":12,\"cmd\":\"ping\"}", SS_EPROTO,
           "v: required (protocol version 1)", 12);
    expect("{\"v\":1,\"id\":13,\"cmd\":\"ping\",\"extra\":true}", SS_EPROTO,
           "extra: unknown field", 13);
    expect("{\"v\":1,\"id\":14,\"cmd\":\"ping\",\"args\":[]}", SS_EPROTO,
           "args: must be an object", 14);
    expect("{\"v\":1,\"id\":-4,\"cmd\":\"ping\"}", SS_EPROTO,
           "id: must be an integer 0..9007199254740991", -1);
    expect("[1,2]", SS_EPROTO, "a message must be a JSON object", -1);
    expect("{\"v\":1,\"v\":1,\"cmd\":\"ping\"}", SS_EPROTO,
           "not JSON: duplicate object key near '\"v\"' at column 10", -1);
    expect("{\"v\":1,\"id\":15,\"cmd\":\"move\",\"args\":{\"scan\":3}}",
           SS_EPROTO, "args.position: required by command 'move'", 15);
}

static void
test_slide_ids(void **state)
{
    assert_true(proto_slide_id_ok("S-0042"));
    assert_true(proto_slide_id_ok("a.b_c-9"));
    assert_false(proto_slide_id_ok(""));
    assert_false(proto_slide_id_ok(".hidden"));
    assert_false(proto_slide_id_ok("-x"));
    assert_false(proto_slide_id_ok("a/b"));
    assert_false(proto_slide_id_ok("a b"));
    assert_false(proto_slide_id_ok("0123456789012345678901234567890123456789"
                                   "012345678901234567890123"));
}

struct collected {
    int n;
    char lines[8][64];
};

static int
collect(void *ctx, char *line, size_t len)
{
    struct collected *c = ctx;

    assert_true(len < 64);
    memcpy(c->lines[c->n], line, len);
    c->lines[c->n][len] = '\0';
    c->n++;
    return 0;
}

static void
test_framing_across_reads_and_limits(void **state)
{
    struct collected c = { 0 };
    struct proto_lines l;
    char big[100];

    proto_lines_init(&l, 32);
    assert_int_equal(proto_lines_feed(&l, "ab", 2, collect, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(proto_lines_feed(&l, "c\ndef\n\ng", 8, collect, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.lines[0], "abc");
    assert_string_equal(c.lines[1], "def");
    assert_string_equal(c.lines[2], "");
    assert_int_equal(proto_lines_feed(&l, "h\r\n", 3, collect, &c), 0);
    assert_string_equal(c.lines[3], "gh\r");
    memset(big, 'x', sizeof(big));
    assert_int_equal(proto_lines_feed(&l, big, 33, collect, &c), -EMSGSIZE);
    assert_int_equal(proto_lines_feed(&l, "ok\n", 3, collect, &c), 0);
    assert_string_equal(c.lines[4], "ok");
    memset(big, 'y', 31);
    big[31] = '\n';
    assert_int_equal(proto_lines_feed(&l, big, 32, collect, &c), 0);
    assert_int_equal(c.n, 6);
    proto_lines_fini(&l);
}

static void
test_builders_round_trip(void **state)
{
    struct proto_msg m;
    struct ss_err e;
    size_t len;
    char *line;

    line = proto_ok_line(9, json_pack("{s:i}", "scan", 4), &len);
    assert_int_equal(line[len - 1], '\n');
    assert_int_equal(proto_msg_parse(line, len - 1, &m, &e), 0);
    assert_int_equal(m.kind, PROTO_MSG_RESPONSE);
    assert_true(m.ok && m.id == 9);
    assert_int_equal(json_integer_value(json_object_get(m.result, "scan")),
                     4);
    proto_msg_fini(&m);
    free(line);

    line = proto_err_line(-1, -ENOENT, "no scan 5", &len);
    assert_string_equal(line, "{\"v\":1,\"id\":null,\"ok\":false,\"error\":"
                        "{\"code\":\"not_found\",\"message\":\"no scan 5\"}}"
                        "\n");
    assert_int_equal(proto_msg_parse(line, len - 1, &m, &e), 0);
    assert_false(m.ok);
    assert_string_equal(m.err_code, "not_found");
    assert_int_equal(proto_code_value(m.err_code), -ENOENT);
    proto_msg_fini(&m);
    free(line);

    line = proto_event_line("progress", json_pack("{s:i}", "tiles_done", 3),
                            &len);
    assert_string_equal(line, "{\"v\":1,\"event\":\"progress\","
                        "\"tiles_done\":3}\n");
    assert_int_equal(proto_msg_parse(line, len - 1, &m, &e), 0);
    assert_int_equal(m.kind, PROTO_MSG_EVENT);
    assert_string_equal(m.event, "progress");
    proto_msg_fini(&m);
    free(line);

    line = proto_req_line(3, "queue", NULL, &len);
    assert_string_equal(line, "{\"v\":1,\"id\":3,\"cmd\":\"queue\","
                        "\"args\":{}}\n");
    free(line);
}

static void
test_error_codes(void **state)
{
    assert_string_equal(proto_code_name(SS_EPROTO), "bad_request");
    assert_string_equal(proto_code_name(-ENOSYS), "unknown_command");
    assert_string_equal(proto_code_name(-EACCES), "refused");
    assert_string_equal(proto_code_name(-EALREADY), "conflict");
    assert_string_equal(proto_code_name(-EBUSY), "conflict");
    assert_string_equal(proto_code_name(-EMSGSIZE), "too_large");
    assert_string_equal(proto_code_name(SS_EHELD), "device");
    assert_string_equal(proto_code_name(-EIO), "internal");
    assert_int_equal(proto_code_value("refused"), -EACCES);
    assert_int_equal(proto_code_value("whatever"), -EIO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_requests),
        cmocka_unit_test(test_each_defect_is_named),
        cmocka_unit_test(test_slide_ids),
        cmocka_unit_test(test_framing_across_reads_and_limits),
        cmocka_unit_test(test_builders_round_trip),
        cmocka_unit_test(test_error_codes),
    };

    return cmocka_run_group_tests_name("protocol_requests", tests, NULL,
                                       NULL);
}
