/* SPDX-License-Identifier: MIT */
/*
 * Folder-internal pieces of the hardware drivers: the stage command
 * dialects as data, the USB CDC-ACM line transport under the stage, the
 * shared libusb context with its event thread, and the libgphoto2 error
 * mapping.
 */
#ifndef SS_DRIVERS_HW_INTERNAL_H
#define SS_DRIVERS_HW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libusb.h>

#include "common/err.h"
#include "drivers/hw/hw.h"

/* How a controller answers "are you moving?". */
enum hw__busy_kind {
    HW__BUSY_WORD,                  /* "true" / "false" */
    HW__BUSY_MASK,                  /* decimal bit mask, 0 = idle */
};

/* One command and the reply that acknowledges it.  A NULL reply means
 * "any line that is not an error"; otherwise the reply must start with
 * it. */
struct hw__exchange {
    const char *cmd;
    const char *reply;
};

/* A stage controller's command set.  Positions travel as integers in
 * controller units (steps or the controller's own µm). */
struct hw__dialect {
    enum hw_stage_dialect id;
    const char *name;               /* "sangaboard", "proscan" */
    const char *eol;                /* what ends a command line */
    unsigned baud;                  /* default line rate */
    uint16_t vid, pid;              /* default USB ids, 0 = none known */
    struct hw__exchange hello;      /* identification on open */
    const char *hello_chars;        /* NULL, or all the reply may hold */
    struct hw__exchange init[3];    /* set-up after hello, cmd NULL ends */
    struct hw__exchange bye;        /* on close; cmd NULL = nothing */
    const char *move_cmd;           /* then sep and x, sep and y, ... */
    char move_sep;
    const char *move_ok;
    const char *pos_query;          /* answered by "x<sep>y<sep>z" */
    char pos_sep;
    const char *busy_query;
    enum hw__busy_kind busy_kind;
    struct hw__exchange stop;
    struct hw__exchange home;
    const char *error_prefix;       /* a reply starting so is an error */
};

/* The dialect called name ("sangaboard", "proscan"), or NULL. */
const struct hw__dialect *hw__dialect_find(const char *name);
const struct hw__dialect *hw__dialect_get(enum hw_stage_dialect id);

/* Known controller USB ids, for detection and the udev rule. */
struct hw__known_usb {
    uint16_t vid, pid;
    enum hw_stage_dialect dialect;
    const char *what;
};

extern const struct hw__known_usb hw__known_usb[];
extern const size_t hw__known_usb_count;

/* A process-wide libusb context with one event thread, shared by every
 * stage; reference counted. */
int hw__usb_get(libusb_context **ctx, struct ss_err *err);
void hw__usb_put(void);

/* Which USB device to open. */
struct hw__usb_match {
    uint16_t vid, pid;
    const char *serial;             /* NULL or "" = any */
    int bus, address;               /* 0 = any */
};

/* A line-oriented link to a CDC-ACM controller over libusb bulk
 * endpoints. */
struct hw__usbser;

int hw__usbser_open(libusb_context *ctx, const struct hw__usb_match *m,
                    unsigned baud, int timeout_ms, struct hw__usbser **out,
                    struct ss_err *err);
void hw__usbser_close(struct hw__usbser *s);

/* Sends cmd + eol and reads one reply line (without its end) into
 * reply.  SS_ETIMEOUT when no full line arrives within the timeout,
 * SS_EGONE when the device was unplugged. */
int hw__usbser_cmd(struct hw__usbser *s, const char *cmd, const char *eol,
                   char *reply, size_t len, struct ss_err *err);

/* "USB 1209:0001 at 001:002", for messages. */
const char *hw__usbser_name(const struct hw__usbser *s);

/* Maps a libusb error to SS_E* / -errno. */
int hw__usb_code(int rc);

/* Maps a libgphoto2 result to SS_E* and writes the message "what: cause"
 * where cause explains the code in an operator's words.  detail is the
 * last error text libgphoto2 logged, or NULL. */
int hw__gp_error(struct ss_err *err, int gp_rc, const char *what,
                 const char *detail);

#endif
