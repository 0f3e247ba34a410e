/* SPDX-License-Identifier: MIT */
/* The error object: one message written at the leaf, context prefixed. */
#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
err_set(struct ss_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int
err_prefix(struct ss_err *err, const char *fmt, ...)
{
    char head[SS_ERR_MSG_MAX];
    char old[SS_ERR_MSG_MAX];
    va_list ap;

    if (err == NULL)
        return 0;
    va_start(ap, fmt);
    vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);

    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
    return err->code;
}

void
err_clear(struct ss_err *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *
err_name(int code)
{
    switch (code) {
    case 0: return "ok";
    case SS_EDEVICE: return "device fault";
    case SS_ETIMEOUT: return "timed out";
    case SS_EBUSY: return "device busy";
    case SS_EGONE: return "device gone";
    case SS_EFORMAT: return "bad format";
    case SS_ENOFOCUS: return "no focus";
    case SS_ECONFIG: return "bad configuration";
    case SS_EPROTO: return "protocol error";
    case SS_ECANCELED: return "cancelled";
    case SS_EHELD: return "held by another program";
    case SS_ESTALL: return "stage stalled";
    default:
        if (code < 0 && code > -4096)
            return strerror(-code);
        return "unknown error";
    }
}
