/* SPDX-License-Identifier: MIT */
/*
 * Protocol messages: the command table with its argument schemas, strict
 * request validation, error-code mapping, message builders and the line
 * framer.  Validation is table-driven so that PROTOCOL.md, the daemon and
 * the fuzz target all see one definition of each command.
 */
#include "protocol/protocol.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ftype { F_STR, F_INT, F_BOOL };

struct field {
    const char *name;
    enum ftype type;
    bool required;
    json_int_t min, max;            /* integer range or string length */
    const char *const *choices;     /* allowed strings, NULL-terminated */
    bool (*check)(const char *s);   /* extra check for strings */
    const char *check_msg;          /* what check() or why() requires */
    /* Instead of check(): false with the cause in why when s is bad. */
    bool (*why)(const char *s, char *why, size_t len);
};

struct cmd_spec {
    const char *name;
    const struct field *fields;     /* terminated by a NULL name */
};

/* Largest integer a JSON number carries exactly (IEEE double). */
#define ID_MAX ((json_int_t)9007199254740991LL)

static const char *const stains[] = { "HE", "KI67", "CK", NULL };

static bool
printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

bool
proto_slide_id_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > PROTO_SLIDE_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Length of the plain decimal number at s (optional sign, digits with an
 * optional decimal point, optional exponent), 0 when there is none: hex,
 * "inf" and "nan", which strtod() also takes, are not region values. */
static size_t
decimal_len(const char *s)
{
    size_t n = 0, digits = 0;

    if (s[n] == '+' || s[n] == '-')
        n++;
    for (; s[n] >= '0' && s[n] <= '9'; n++)
        digits++;
    if (s[n] == '.')
        for (n++; s[n] >= '0' && s[n] <= '9'; n++)
            digits++;
    if (digits == 0)
        return 0;
    if (s[n] == 'e' || s[n] == 'E') {
        size_t e = n + 1;

        if (s[e] == '+' || s[e] == '-')
            e++;
        if (s[e] < '0' || s[e] > '9')
            return 0;
        while (s[e] >= '0' && s[e] <= '9')
            e++;
        n = e;
    }
    return n;
}

/* Reads the four comma-separated decimal numbers of region s into v;
 * false with the value at fault in why. */
static bool
region_numbers(const char *s, double v[4], char *why, size_t len)
{
    static const char *const name[] = { "X", "Y", "W", "H" };
    const char *p = s;
    size_t n;
    int i;

    for (i = 0; i < 4; i++) {
        while (*p == ' ')
            p++;
        n = decimal_len(p);
        if (n == 0 || (p[n] != ',' && p[n] != ' ' && p[n] != '\0') ||
            (i < 3 && strchr(p + n, ',') == NULL)) {
            n = strcspn(p, ",");
            snprintf(why, len, "'%.40s': %s '%.*s' is not a decimal number "
                     "(digits with an optional sign, point and exponent)",
                     s, name[i], (int)(n < 20 ? n : 20), p);
            if (i < 3 && p[n] == '\0')
                snprintf(why, len, "'%.40s' is not four numbers", s);
            return false;
        }
        v[i] = strtod(p, NULL);
        p += n;
        while (*p == ' ')
            p++;
        if (i < 3 && *p++ != ',')
            break;
    }
    if (i < 4 || *p != '\0') {
        snprintf(why, len, "'%.40s' is not four numbers", s);
        return false;
    }
    return true;
}

/* A scan region: "X,Y,W,H" in stage micrometres, plain decimal numbers,
 * W and H at least PROTO_REGION_MIN_UM, each value under 1e6 in
 * magnitude; else the first fault in why. */
static bool
region_why(const char *s, char *why, size_t len)
{
    static const char *const name[] = { "X", "Y", "W", "H" };
    double v[4];
    int i;

    if (!region_numbers(s, v, why, len))
        return false;
    for (i = 0; i < 4; i++) {
        if (!isfinite(v[i]) || fabs(v[i]) >= 1e6) {
            snprintf(why, len, "'%.40s': %s %g is not under 1e6 um in "
                     "magnitude", s, name[i], v[i]);
            return false;
        }
        if (i >= 2 && v[i] <= 0) {
            snprintf(why, len, "'%.40s': %s %g is not above 0", s, name[i],
                     v[i]);
            return false;
        }
        if (i >= 2 && v[i] < PROTO_REGION_MIN_UM) {
            snprintf(why, len, "'%.40s': %s %g um is under %g um, the "
                     "smallest region side", s, name[i], v[i],
                     PROTO_REGION_MIN_UM);
            return false;
        }
    }
    return true;
}

#define END { NULL, F_STR, false, 0, 0, NULL, NULL, NULL, NULL }
#define SCAN_ID(req) { "scan", F_INT, req, 1, ID_MAX, NULL, NULL, NULL, NULL }
#define SLIDE_ID \
    { "slide", F_STR, true, 1, PROTO_SLIDE_MAX, NULL, proto_slide_id_ok, \
      "1 to 63 of A-Z a-z 0-9 . _ -, not starting with . or -", NULL }
#define STAIN { "stain", F_STR, true, 1, 8, stains, NULL, NULL, NULL }
#define LIMIT_F { "limit", F_INT, false, 1, 100000, NULL, NULL, NULL, NULL }

static const struct field f_none[] = { END };
static const struct field f_scan[] = {
    SLIDE_ID,
    STAIN,
    { "image", F_STR, false, 1, 4096, NULL, printable,
      "printable characters", NULL },
    { "priority", F_INT, false, -100, 100, NULL, NULL, NULL, NULL },
    { "region", F_STR, false, 1, 120, NULL, NULL,
      "X,Y,W,H in stage micrometres, W and H at least 100, each under 1e6 "
      "in magnitude", region_why },
    END
};
static const struct field f_queue[] = {
    { "all", F_BOOL, false, 0, 0, NULL, NULL, NULL, NULL },
    LIMIT_F,
    END
};
static const struct field f_scan_opt[] = { SCAN_ID(false), END };
static const struct field f_scan_req[] = { SCAN_ID(true), END };
static const struct field f_move[] = {
    SCAN_ID(true),
    { "position", F_INT, true, 1, 1000000, NULL, NULL, NULL, NULL },
    END
};
static const struct field f_slides[] = { LIMIT_F, END };
static const struct field f_show[] = {
    SLIDE_ID,
    { "tiles", F_BOOL, false, 0, 0, NULL, NULL, NULL, NULL },
    END
};
static const struct field f_calibrate[] = { STAIN, END };

static const struct cmd_spec cmds[PROTO_CMD_COUNT] = {
    [PROTO_CMD_PING] = { "ping", f_none },
    [PROTO_CMD_SCAN] = { "scan", f_scan },
    [PROTO_CMD_QUEUE] = { "queue", f_queue },
    [PROTO_CMD_STATUS] = { "status", f_none },
    [PROTO_CMD_WATCH] = { "watch", f_none },
    [PROTO_CMD_PAUSE] = { "pause", f_scan_opt },
    [PROTO_CMD_RESUME] = { "resume", f_scan_req },
    [PROTO_CMD_CANCEL] = { "cancel", f_scan_req },
    [PROTO_CMD_REQUEUE] = { "requeue", f_scan_req },
    [PROTO_CMD_MOVE] = { "move", f_move },
    [PROTO_CMD_SLIDES] = { "slides", f_slides },
    [PROTO_CMD_SHOW] = { "show", f_show },
    [PROTO_CMD_CALIBRATE] = { "calibrate", f_calibrate },
    [PROTO_CMD_DEVICES] = { "devices", f_none },
    [PROTO_CMD_RELOAD] = { "reload", f_none },
    [PROTO_CMD_ANALYSE] = { "analyse", f_scan_req },
};

const char *
proto_cmd_name(enum proto_cmd cmd)
{
    if ((int)cmd < 0 || cmd >= PROTO_CMD_COUNT)
        return NULL;
    return cmds[cmd].name;
}

static void
choices_text(const char *const *c, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (; *c != NULL && n < len; c++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s",
                              n > 0 ? ", " : "", *c);
}

static int
check_string(const struct field *f, json_t *v, struct ss_err *err)
{
    const char *s = json_string_value(v);
    json_int_t n = (json_int_t)json_string_length(v);
    char list[128], why[160];
    const char *const *c;
    /* A field with a form says what it wants, not only how long. */
    const char *sep = f->check_msg != NULL ? "; must be " : "";
    const char *form = f->check_msg != NULL ? f->check_msg : "";

    if (n > f->max)
        return err_set(err, SS_EPROTO, "args.%s: too long: %lld characters, "
                       "at most %lld ('%.40s...')%s%s", f->name,
                       (long long)n, (long long)f->max, s, sep, form);
    if (n == 0 && f->min > 0)
        return err_set(err, SS_EPROTO, "args.%s: empty%s%s", f->name, sep,
                       form);
    if (n < f->min)
        return err_set(err, SS_EPROTO, "args.%s: too short: '%s' has %lld "
                       "characters, at least %lld%s%s", f->name, s,
                       (long long)n, (long long)f->min, sep, form);
    if ((size_t)n != strlen(s))
        return err_set(err, SS_EPROTO, "args.%s: contains a NUL character",
                       f->name);
    if (f->check != NULL && !f->check(s))
        return err_set(err, SS_EPROTO, "args.%s: must be %s", f->name,
                       f->check_msg);
    if (f->why != NULL && !f->why(s, why, sizeof(why)))
        return err_set(err, SS_EPROTO, "args.%s: %s; must be %s", f->name,
                       why, f->check_msg);
    if (f->choices == NULL)
        return 0;
    for (c = f->choices; *c != NULL; c++)
        if (strcmp(*c, s) == 0)
            return 0;
    choices_text(f->choices, list, sizeof(list));
    return err_set(err, SS_EPROTO, "args.%s: must be one of %s", f->name,
                   list);
}

static int
check_field(const struct field *f, json_t *v, struct ss_err *err)
{
    json_int_t i;

    switch (f->type) {
    case F_STR:
        if (!json_is_string(v))
            return err_set(err, SS_EPROTO, "args.%s: must be a string",
                           f->name);
        return check_string(f, v, err);
    case F_BOOL:
        if (!json_is_boolean(v))
            return err_set(err, SS_EPROTO, "args.%s: must be true or false",
                           f->name);
        return 0;
    case F_INT:
        if (!json_is_integer(v))
            return err_set(err, SS_EPROTO, "args.%s: must be an integer",
                           f->name);
        i = json_integer_value(v);
        if (i < f->min || i > f->max)
            return err_set(err, SS_EPROTO, "args.%s: %lld is outside "
                           "%lld..%lld", f->name, (long long)i,
                           (long long)f->min, (long long)f->max);
        return 0;
    }
    return err_set(err, SS_EPROTO, "args.%s: unknown type", f->name);
}

static const struct field *
field_find(const struct field *fs, const char *name)
{
    for (; fs->name != NULL; fs++)
        if (strcmp(fs->name, name) == 0)
            return fs;
    return NULL;
}

static int
check_args(const struct cmd_spec *spec, json_t *args, struct ss_err *err)
{
    const struct field *f;
    const char *key;
    json_t *v;
    int rc;

    json_object_foreach(args, key, v) {
        f = field_find(spec->fields, key);
        if (f == NULL)
            return err_set(err, SS_EPROTO, "args.%s: unknown field for "
                           "command '%s'", key, spec->name);
        rc = check_field(f, v, err);
        if (rc < 0)
            return rc;
    }
    for (f = spec->fields; f->name != NULL; f++)
        if (f->required && json_object_get(args, f->name) == NULL)
            return err_set(err, SS_EPROTO, "args.%s: required by command "
                           "'%s'", f->name, spec->name);
    return 0;
}

static int
check_envelope(json_t *root, struct ss_err *err)
{
    static const char *const keys[] = { "v", "id", "cmd", "args", NULL };
    const char *key;
    json_t *v;
    int i;

    json_object_foreach(root, key, v) {
        for (i = 0; keys[i] != NULL; i++)
            if (strcmp(keys[i], key) == 0)
                break;
        if (keys[i] == NULL)
            return err_set(err, SS_EPROTO, "%s: unknown field", key);
    }
    v = json_object_get(root, "v");
    if (v == NULL)
        return err_set(err, SS_EPROTO, "v: required (protocol version %d)",
                       PROTO_VERSION);
    if (!json_is_integer(v) || json_integer_value(v) != PROTO_VERSION)
        return err_set(err, SS_EPROTO, "v: unsupported protocol version "
                       "(this daemon speaks %d)", PROTO_VERSION);
    v = json_object_get(root, "id");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 0 ||
                      json_integer_value(v) > ID_MAX))
        return err_set(err, SS_EPROTO, "id: must be an integer 0..%lld",
                       (long long)ID_MAX);
    return 0;
}

static int
find_cmd(json_t *root, enum proto_cmd *out, struct ss_err *err)
{
    json_t *v = json_object_get(root, "cmd");
    const char *name;
    int i;

    if (v == NULL)
        return err_set(err, SS_EPROTO, "cmd: required");
    if (!json_is_string(v))
        return err_set(err, SS_EPROTO, "cmd: must be a string");
    name = json_string_value(v);
    for (i = 0; i < PROTO_CMD_COUNT; i++)
        if (strcmp(cmds[i].name, name) == 0) {
            *out = (enum proto_cmd)i;
            return 0;
        }
    return err_set(err, -ENOSYS, "cmd: unknown command '%.64s'", name);
}

static json_int_t
read_id(json_t *root)
{
    json_t *v = json_object_get(root, "id");

    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= ID_MAX)
        return json_integer_value(v);
    return -1;
}

static int
parse_root(const char *line, size_t len, json_t **out, struct ss_err *err)
{
    json_error_t je;
    json_t *root;

    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return err_set(err, SS_EPROTO, "not JSON: %s at column %d", je.text,
                       je.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, SS_EPROTO, "a message must be a JSON object");
    }
    *out = root;
    return 0;
}

int
proto_req_parse(const char *line, size_t len, struct proto_req *req,
                struct ss_err *err)
{
    json_t *root = NULL, *args;
    int rc;

    memset(req, 0, sizeof(*req));
    req->id = -1;
    rc = parse_root(line, len, &root, err);
    if (rc < 0)
        return rc;
    req->root = root;
    req->id = read_id(root);
    rc = check_envelope(root, err);
    if (rc == 0)
        rc = find_cmd(root, &req->cmd, err);
    if (rc < 0)
        return rc;

    args = json_object_get(root, "args");
    if (args == NULL) {
        args = json_object();
        if (args == NULL || json_object_set_new(root, "args", args) != 0)
            return err_set(err, -ENOMEM, "out of memory");
    }
    if (!json_is_object(args))
        return err_set(err, SS_EPROTO, "args: must be an object");
    req->args = args;
    return check_args(&cmds[req->cmd], args, err);
}

void
proto_req_fini(struct proto_req *req)
{
    if (req == NULL)
        return;
    json_decref(req->root);
    req->root = NULL;
    req->args = NULL;
}

const char *
proto_arg_str(const struct proto_req *r, const char *key, const char *def)
{
    json_t *v = json_object_get(r->args, key);

    return json_is_string(v) ? json_string_value(v) : def;
}

json_int_t
proto_arg_int(const struct proto_req *r, const char *key, json_int_t def)
{
    json_t *v = json_object_get(r->args, key);

    return json_is_integer(v) ? json_integer_value(v) : def;
}

bool
proto_arg_bool(const struct proto_req *r, const char *key, bool def)
{
    json_t *v = json_object_get(r->args, key);

    return json_is_boolean(v) ? json_is_true(v) : def;
}

bool
proto_arg_has(const struct proto_req *r, const char *key)
{
    return json_object_get(r->args, key) != NULL;
}

struct code_map {
    const char *name;
    int value;
};

static const struct code_map codes[] = {
    { "bad_request", SS_EPROTO },
    { "unknown_command", -ENOSYS },
    { "not_found", -ENOENT },
    { "refused", -EACCES },
    { "conflict", -EALREADY },
    { "too_large", -EMSGSIZE },
    { "config", SS_ECONFIG },
    { "device", SS_EDEVICE },
    { "shutting_down", -ESHUTDOWN },
    { "internal", -EIO },
};

const char *
proto_code_name(int code)
{
    switch (code) {
    case SS_EPROTO: case -EINVAL: return "bad_request";
    case -ENOSYS: return "unknown_command";
    case -ENOENT: return "not_found";
    case -EACCES: case -EPERM: return "refused";
    case -EALREADY: case -EEXIST: case -EBUSY: return "conflict";
    case -EMSGSIZE: return "too_large";
    case SS_ECONFIG: return "config";
    case SS_EDEVICE: case SS_ETIMEOUT: case SS_EBUSY: case SS_EGONE:
    case SS_EHELD: case SS_ESTALL: case -ENODEV: return "device";
    case -ESHUTDOWN: return "shutting_down";
    default: return "internal";
    }
}

int
proto_code_value(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (name != NULL && strcmp(codes[i].name, name) == 0)
            return codes[i].value;
    return -EIO;
}

/* Serialises obj (stolen) as one line; compact, keys in insertion order. */
static char *
dump_line(json_t *obj, size_t *len)
{
    char *s, *line;
    size_t n;

    if (obj == NULL)
        return NULL;
    s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (s == NULL)
        return NULL;
    n = strlen(s);
    line = realloc(s, n + 2);
    if (line == NULL) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    if (len != NULL)
        *len = n + 1;
    return line;
}

static json_t *
envelope(json_int_t id)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "v", json_integer(PROTO_VERSION));
    json_object_set_new(o, "id", id >= 0 ? json_integer(id) : json_null());
    return o;
}

char *
proto_ok_line(json_int_t id, json_t *result, size_t *len)
{
    json_t *o = envelope(id);

    if (result == NULL)
        result = json_object();
    if (o == NULL) {
        json_decref(result);
        return NULL;
    }
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "result", result);
    return dump_line(o, len);
}

/* Bytes a UTF-8 sequence with this lead byte has, 0 for no lead byte. */
static size_t
lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s, or 0.  Reads no further
 * than the first byte that is not a continuation, so never past a NUL. */
static size_t
utf8_len(const unsigned char *s)
{
    size_t n = lead_len(s[0]), i;

    for (i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) ||
        (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) ||
        (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

char *
proto_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n, want;

    while (*p != '\0') {
        n = utf8_len(p);
        if (n > 0) {
            p += n;
            continue;
        }
        want = lead_len(*p);
        if (want > 1 && strnlen((char *)p, want) < want) {
            *p = '\0';             /* a character cut off at the end */
            break;
        }
        *p++ = '?';
    }
    return s;
}

char *
proto_err_line(json_int_t id, int code, const char *msg, size_t *len)
{
    json_t *o = envelope(id), *e;
    char *text = strdup(msg != NULL ? msg : "");

    if (o == NULL || text == NULL) {
        json_decref(o);
        free(text);
        return NULL;
    }
    e = json_pack("{s:s, s:s}", "code", proto_code_name(code), "message",
                  proto_utf8_fix(text));
    free(text);
    if (e == NULL) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", e);
    return dump_line(o, len);
}

char *
proto_event_line(const char *event, json_t *fields, size_t *len)
{
    json_t *o = json_object();
    const char *key;
    json_t *v;

    if (o == NULL) {
        json_decref(fields);
        return NULL;
    }
    json_object_set_new(o, "v", json_integer(PROTO_VERSION));
    json_object_set_new(o, "event", json_string(event));
    if (fields != NULL) {
        json_object_foreach(fields, key, v)
            json_object_set(o, key, v);
        json_decref(fields);
    }
    return dump_line(o, len);
}

char *
proto_req_line(json_int_t id, const char *cmd, json_t *args, size_t *len)
{
    json_t *o = json_object();

    if (args == NULL)
        args = json_object();
    if (o == NULL) {
        json_decref(args);
        return NULL;
    }
    json_object_set_new(o, "v", json_integer(PROTO_VERSION));
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "cmd", json_string(cmd));
    json_object_set_new(o, "args", args);
    return dump_line(o, len);
}

static int
msg_response(struct proto_msg *m, struct ss_err *err)
{
    json_t *ok = json_object_get(m->root, "ok");
    json_t *id = json_object_get(m->root, "id");
    json_t *e;

    if (!json_is_boolean(ok))
        return err_set(err, SS_EPROTO, "ok: must be true or false");
    m->kind = PROTO_MSG_RESPONSE;
    m->id = json_is_integer(id) ? json_integer_value(id) : -1;
    m->ok = json_is_true(ok);
    if (m->ok) {
        m->result = json_object_get(m->root, "result");
        if (!json_is_object(m->result))
            return err_set(err, SS_EPROTO, "result: must be an object");
        return 0;
    }
    e = json_object_get(m->root, "error");
    m->err_code = json_string_value(json_object_get(e, "code"));
    m->err_msg = json_string_value(json_object_get(e, "message"));
    if (m->err_code == NULL || m->err_msg == NULL)
        return err_set(err, SS_EPROTO, "error: needs code and message");
    return 0;
}

int
proto_msg_parse(const char *line, size_t len, struct proto_msg *m,
                struct ss_err *err)
{
    json_t *v;
    int rc;

    memset(m, 0, sizeof(*m));
    m->id = -1;
    rc = parse_root(line, len, &m->root, err);
    if (rc < 0)
        return rc;
    v = json_object_get(m->root, "v");
    if (!json_is_integer(v) || json_integer_value(v) != PROTO_VERSION)
        return err_set(err, SS_EPROTO, "v: unsupported protocol version "
                       "(this client speaks %d)", PROTO_VERSION);
    v = json_object_get(m->root, "event");
    if (v != NULL) {
        if (!json_is_string(v))
            return err_set(err, SS_EPROTO, "event: must be a string");
        m->kind = PROTO_MSG_EVENT;
        m->event = json_string_value(v);
        return 0;
    }
    return msg_response(m, err);
}

void
proto_msg_fini(struct proto_msg *m)
{
    if (m == NULL)
        return;
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

void
proto_lines_init(struct proto_lines *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void
proto_lines_fini(struct proto_lines *l)
{
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

static int
append(struct proto_lines *l, const char *data, size_t n)
{
    size_t cap;
    char *p;

    if (l->len + n > l->max) {
        l->len = 0;
        return -EMSGSIZE;
    }
    if (l->len + n > l->cap) {
        cap = l->cap != 0 ? l->cap : 4096;
        while (cap < l->len + n)
            cap *= 2;
        if (cap > l->max)
            cap = l->max;
        p = realloc(l->buf, cap);
        if (p == NULL)
            return -ENOMEM;
        l->buf = p;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, data, n);
    l->len += n;
    return 0;
}

int
proto_lines_feed(struct proto_lines *l, const char *data, size_t n,
                 proto_line_fn fn, void *ctx)
{
    const char *nl;
    size_t take;
    int rc;

    while (n > 0) {
        nl = memchr(data, '\n', n);
        take = nl != NULL ? (size_t)(nl - data) + 1 : n;
        rc = append(l, data, take);
        if (rc < 0)
            return rc;
        data += take;
        n -= take;
        if (nl == NULL)
            break;
        l->len--;                   /* drop the newline */
        take = l->len;
        l->len = 0;
        rc = fn(ctx, l->buf != NULL ? l->buf : (char *)"", take);
        if (rc != 0)
            return rc;
    }
    return 0;
}
