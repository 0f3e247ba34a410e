/* SPDX-License-Identifier: MIT */
/*
 * Stage controller command sets as data.  Each dialect says what to send
 * for identify, move, position, busy, stop and home, and what the
 * controller answers; drivers/hw/stage.c interprets the table, so a new
 * controller with a simple text protocol is one more entry here.
 *
 * Sangaboard (OpenFlexure): lines end in "\n", 115200 baud; moves are
 * made non-blocking at open so that "moving?" reports motion.
 * Prior ProScan: lines end in "\r", 9600 baud; "H" disables the joystick
 * while we drive the stage and "J" gives it back on close; "$" answers a
 * bit mask of moving axes; errors come back as "E,<n>".
 */
#include <string.h>

#include "drivers/hw/hw_internal.h"

static const struct hw__dialect dialects[] = {
    {
        .id = HW_STAGE_SANGABOARD,
        .name = "sangaboard",
        .eol = "\n",
        .baud = 115200,
        .vid = 0x2341, .pid = 0x8036,
        .hello = { "version", "Sangaboard" },
        .init = { { "blocking_moves false", "done" } },
        .bye = { NULL, NULL },
        .move_cmd = "move_abs",
        .move_sep = ' ',
        .move_ok = "done",
        .pos_query = "p?",
        .pos_sep = ' ',
        .busy_query = "moving?",
        .busy_kind = HW__BUSY_WORD,
        .stop = { "stop", "done" },
        .home = { "zero", "done" },
        .error_prefix = "error",
    },
    {
        .id = HW_STAGE_PROSCAN,
        .name = "proscan",
        .eol = "\r",
        .baud = 9600,
        .vid = 0, .pid = 0,
        .hello = { "VERSION", NULL },
        .hello_chars = "0123456789",
        .init = { { "COMP 0", "0" }, { "H", "0" } },
        .bye = { "J", "0" },
        .move_cmd = "G",
        .move_sep = ',',
        .move_ok = "R",
        .pos_query = "P",
        .pos_sep = ',',
        .busy_query = "$",
        .busy_kind = HW__BUSY_MASK,
        .stop = { "I", "R" },
        .home = { "SIS", "R" },
        .error_prefix = "E,",
    },
};

/* LIMIT: the only id known out of the box is the Arduino Leonardo id
 * that Sangaboard v0.3/v0.4 boards enumerate with; any other controller
 * (every ProScan) needs vid and pid in [stage], and `slidescan devices`
 * lists it only once configured. */
const struct hw__known_usb hw__known_usb[] = {
    { 0x2341, 0x8036, HW_STAGE_SANGABOARD,
      "Arduino Leonardo (Sangaboard v0.3/v0.4)" },
};
const size_t hw__known_usb_count =
    sizeof(hw__known_usb) / sizeof(hw__known_usb[0]);

const struct hw__dialect *
hw__dialect_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(dialects) / sizeof(dialects[0]); i++)
        if (!strcmp(dialects[i].name, name))
            return &dialects[i];
    return NULL;
}

const struct hw__dialect *
hw__dialect_get(enum hw_stage_dialect id)
{
    size_t i;

    for (i = 0; i < sizeof(dialects) / sizeof(dialects[0]); i++)
        if (dialects[i].id == id)
            return &dialects[i];
    return NULL;
}
