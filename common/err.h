/* SPDX-License-Identifier: MIT */
/*
 * The error object.  Fallible functions return 0 or a negative errno and
 * take a `struct ss_err *` last.  The function where a fault is first seen
 * (the leaf) writes one message with err_set(); each caller that adds
 * meaning prefixes its context with err_prefix(), so the final text reads
 * as a path: "scan 12: tile 37: camera: capture timed out after 5000 ms".
 * The message is logged once, where the decision about it is made.
 *
 * Every function accepts err == NULL and then only returns the code.
 */
#ifndef SS_COMMON_ERR_H
#define SS_COMMON_ERR_H

#include <stddef.h>

#define SS_ERR_MSG_MAX 512

struct ss_err {
    int code;                       /* negative errno, 0 when clear */
    char msg[SS_ERR_MSG_MAX];
};

/* Project error codes, negative like errno values, above errno's range. */
enum {
    SS_EDEVICE = -1000,             /* a device reported a fault */
    SS_ETIMEOUT = -1001,            /* a device operation passed its deadline */
    SS_EBUSY = -1002,               /* a device said busy */
    SS_EGONE = -1003,               /* a device disappeared */
    SS_EFORMAT = -1004,             /* an input file is not what it claims */
    SS_ENOFOCUS = -1005,            /* autofocus found no focus */
    SS_ECONFIG = -1006,             /* bad configuration */
    SS_EPROTO = -1007,              /* malformed protocol message */
    SS_ECANCELED = -1008,           /* the operation was cancelled */
    SS_EHELD = -1009,               /* a device is held by another program */
    SS_ESTALL = -1010,              /* a stage axis stalled or lost steps */
};

/* Sets code and message; returns code so a leaf can `return err_set(...)`. */
int err_set(struct ss_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to the message already there; returns err->code. */
int err_prefix(struct ss_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets to no error. */
void err_clear(struct ss_err *err);

/* A short name for a code: "ETIMEDOUT", "device busy", ... never NULL. */
const char *err_name(int code);

#endif
