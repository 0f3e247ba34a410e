/* SPDX-License-Identifier: MIT */
/*
 * The USB stage: the stage contract over one command dialect
 * (drivers/hw/dialect.c) and the CDC-ACM line link (usbser.c).  It only
 * relays what the controller does; approach direction, settling and
 * position checks live in drivers/motion.
 *
 * Positions cross the wire as integer controller units:
 * units = round(µm × steps_per_um) per axis.  A device that disappears
 * makes the call fail with SS_EGONE and drops the link; the next call
 * reopens it, so a replugged controller is picked up again.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "drivers/hw/hw_internal.h"

struct hw_stage {
    struct hw_stage_config cfg;
    const struct hw__dialect *d;
    libusb_context *ctx;            /* shared, one reference */
    struct hw__usbser *link;        /* NULL while closed or gone */
    bool opened;                    /* open() succeeded, close() not yet */
};

static int
fail_gone(struct hw_stage *s, int rc)
{
    if (rc == SS_EGONE && s->link != NULL) {
        log_warn("stage", "gone device=\"%s\"", hw__usbser_name(s->link));
        hw__usbser_close(s->link);
        s->link = NULL;
    }
    return rc;
}

/* One command; the reply must start with want (when not NULL) and must
 * not be an error report. */
static int
exchange(struct hw_stage *s, const char *cmd, const char *want, char *reply,
         size_t len, struct ss_err *err)
{
    int rc;

    rc = hw__usbser_cmd(s->link, cmd, s->d->eol, reply, len, err);
    if (rc != 0)
        return fail_gone(s, rc);
    if (s->d->error_prefix != NULL &&
        !strncmp(reply, s->d->error_prefix, strlen(s->d->error_prefix)))
        return err_set(err, SS_EDEVICE, "%s: '%s' refused: controller "
                       "said '%s'", hw__usbser_name(s->link), cmd, reply);
    if (want != NULL && strncmp(reply, want, strlen(want)))
        return err_set(err, SS_EPROTO, "%s: '%s' answered '%s', expected "
                       "'%s'", hw__usbser_name(s->link), cmd, reply, want);
    return 0;
}

static int
handshake(struct hw_stage *s, struct ss_err *err)
{
    char reply[128];
    int i, rc;

    rc = exchange(s, s->d->hello.cmd, s->d->hello.reply, reply,
                  sizeof(reply), err);
    if (rc == 0 && s->d->hello_chars != NULL &&
        (reply[0] == '\0' || strspn(reply, s->d->hello_chars) !=
         strlen(reply)))
        rc = err_set(err, SS_EPROTO, "%s: '%s' answered '%s'",
                     hw__usbser_name(s->link), s->d->hello.cmd, reply);
    if (rc == SS_EPROTO || rc == SS_EDEVICE)
        err_prefix(err, "not a %s controller", s->d->name);
    if (rc != 0)
        return rc;
    log_notice("stage", "attached device=\"%s\" dialect=%s id=\"%s\"",
               hw__usbser_name(s->link), s->d->name, reply);
    for (i = 0; i < 3 && s->d->init[i].cmd != NULL; i++) {
        rc = exchange(s, s->d->init[i].cmd, s->d->init[i].reply, reply,
                      sizeof(reply), err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
connect_link(struct hw_stage *s, struct ss_err *err)
{
    struct hw__usb_match m = {
        .vid = s->cfg.vid ? s->cfg.vid : s->d->vid,
        .pid = s->cfg.pid ? s->cfg.pid : s->d->pid,
        .serial = s->cfg.serial,
        .bus = s->cfg.bus,
        .address = s->cfg.address,
    };
    unsigned baud = s->cfg.baud ? s->cfg.baud : s->d->baud;
    int rc;

    if (m.vid == 0 || m.pid == 0)
        return err_set(err, SS_ECONFIG, "%s stage: no USB id known; set "
                       "vid and pid in [stage]", s->d->name);
    rc = hw__usbser_open(s->ctx, &m, baud, s->cfg.timeout_ms, &s->link,
                         err);
    if (rc == 0)
        rc = handshake(s, err);
    if (rc != 0) {
        hw__usbser_close(s->link);
        s->link = NULL;
        err_prefix(err, "%s stage", s->d->name);
    }
    return rc;
}

static int
ensure_link(struct hw_stage *s, struct ss_err *err)
{
    int rc;

    if (!s->opened)
        return err_set(err, -9, "%s stage: not open", s->d->name);
    if (s->link != NULL)
        return 0;
    rc = connect_link(s, err);
    if (rc == 0)
        log_notice("stage", "reconnected dialect=%s", s->d->name);
    return rc;
}

static int
st_open(struct stage *st, struct ss_err *err)
{
    struct hw_stage *s = st->priv;
    int rc;

    if (s->opened)
        return 0;
    rc = connect_link(s, err);
    if (rc == 0)
        s->opened = true;
    return rc;
}

static void
st_close(struct stage *st)
{
    struct hw_stage *s = st->priv;
    char reply[64];

    if (s->link != NULL && s->d->bye.cmd != NULL)
        exchange(s, s->d->bye.cmd, s->d->bye.reply, reply, sizeof(reply),
                 NULL);
    hw__usbser_close(s->link);
    s->link = NULL;
    s->opened = false;
}

static long
to_units(const struct hw_stage *s, int axis, double um)
{
    return lround(um * s->cfg.steps_per_um[axis]);
}

static int
st_move_abs(struct stage *st, const double pos_um[3], struct ss_err *err)
{
    struct hw_stage *s = st->priv;
    char cmd[128], reply[64];
    int a, rc;

    for (a = 0; a < 3; a++)
        if (!isfinite(pos_um[a]) || pos_um[a] < st->limits.min_um[a] ||
            pos_um[a] > st->limits.max_um[a])
            return err_set(err, -33, "%s stage: %c = %.2f µm is outside "
                           "the travel %.1f..%.1f µm", s->d->name, 'x' + a,
                           pos_um[a], st->limits.min_um[a],
                           st->limits.max_um[a]);
    rc = ensure_link(s, err);
    if (rc != 0)
        return rc;
    snprintf(cmd, sizeof(cmd), "%s%c%ld%c%ld%c%ld", s->d->move_cmd,
             s->d->move_sep, to_units(s, 0, pos_um[0]), s->d->move_sep,
             to_units(s, 1, pos_um[1]), s->d->move_sep,
             to_units(s, 2, pos_um[2]));
    return exchange(s, cmd, s->d->move_ok, reply, sizeof(reply), err);
}

static int
parse_position(const struct hw_stage *s, const char *reply, double pos[3])
{
    const char *p = reply;
    char *end;
    int a;

    for (a = 0; a < 3; a++) {
        long v = strtol(p, &end, 10);

        if (end == p)
            return -1;
        pos[a] = v / s->cfg.steps_per_um[a];
        p = end;
        while (*p == ' ' || *p == s->d->pos_sep)
            p++;
    }
    return *p == '\0' ? 0 : -1;
}

static int
st_get_position(struct stage *st, double pos_um[3], struct ss_err *err)
{
    struct hw_stage *s = st->priv;
    char reply[128];
    int rc;

    rc = ensure_link(s, err);
    if (rc == 0)
        rc = exchange(s, s->d->pos_query, NULL, reply, sizeof(reply), err);
    if (rc != 0)
        return rc;
    if (parse_position(s, reply, pos_um) != 0)
        return err_set(err, SS_EPROTO, "%s: position reply '%s' is not "
                       "three integers", hw__usbser_name(s->link), reply);
    return 0;
}

static int
st_is_busy(struct stage *st, bool *busy, struct ss_err *err)
{
    struct hw_stage *s = st->priv;
    char reply[64], *end;
    long mask;
    int rc;

    rc = ensure_link(s, err);
    if (rc == 0)
        rc = exchange(s, s->d->busy_query, NULL, reply, sizeof(reply), err);
    if (rc != 0)
        return rc;
    if (s->d->busy_kind == HW__BUSY_WORD) {
        if (strcmp(reply, "true") && strcmp(reply, "false"))
            goto bad;
        *busy = !strcmp(reply, "true");
        return 0;
    }
    mask = strtol(reply, &end, 10);
    if (end == reply || *end != '\0' || mask < 0)
        goto bad;
    *busy = mask != 0;
    return 0;
bad:
    return err_set(err, SS_EPROTO, "%s: status reply '%s' to '%s' not "
                   "understood", hw__usbser_name(s->link), reply,
                   s->d->busy_query);
}

static int
st_simple(struct stage *st, const struct hw__exchange *x,
          struct ss_err *err)
{
    struct hw_stage *s = st->priv;
    char reply[64];
    int rc;

    rc = ensure_link(s, err);
    if (rc == 0)
        rc = exchange(s, x->cmd, x->reply, reply, sizeof(reply), err);
    return rc;
}

static int
st_home(struct stage *st, struct ss_err *err)
{
    struct hw_stage *s = st->priv;

    log_notice("stage", "home dialect=%s command=\"%s\"", s->d->name,
               s->d->home.cmd);
    return st_simple(st, &s->d->home, err);
}

static int
st_stop(struct stage *st, struct ss_err *err)
{
    struct hw_stage *s = st->priv;

    return st_simple(st, &s->d->stop, err);
}

static void
st_destroy(struct stage *st)
{
    struct hw_stage *s = st->priv;

    hw__usbser_close(s->link);
    hw__usb_put();
    free(s);
    free(st);
}

static const struct stage_ops hw_stage_ops_sangaboard = {
    "sangaboard", st_open, st_close, st_home, st_move_abs, st_get_position,
    st_is_busy, st_stop, st_destroy,
};

static const struct stage_ops hw_stage_ops_proscan = {
    "proscan", st_open, st_close, st_home, st_move_abs, st_get_position,
    st_is_busy, st_stop, st_destroy,
};

int
hw_stage_new(const struct hw_stage_config *c, struct stage **out,
             struct ss_err *err)
{
    const struct hw__dialect *d = hw__dialect_get(c->dialect);
    struct hw_stage *s;
    struct stage *st;
    int rc;

    *out = NULL;
    if (d == NULL)
        return err_set(err, SS_ECONFIG, "[stage] driver: no stage "
                       "configured");
    s = calloc(1, sizeof(*s));
    st = calloc(1, sizeof(*st));
    if (s == NULL || st == NULL) {
        free(s);
        free(st);
        return err_set(err, -12, "out of memory");
    }
    rc = hw__usb_get(&s->ctx, err);
    if (rc != 0) {
        free(s);
        free(st);
        return rc;
    }
    s->cfg = *c;
    s->d = d;
    st->ops = d->id == HW_STAGE_PROSCAN ? &hw_stage_ops_proscan
                                        : &hw_stage_ops_sangaboard;
    st->priv = s;
    snprintf(st->model, sizeof(st->model), "%s", d->name);
    memcpy(st->limits.min_um, c->min_um, sizeof(c->min_um));
    memcpy(st->limits.max_um, c->max_um, sizeof(c->max_um));
    *out = st;
    return 0;
}
