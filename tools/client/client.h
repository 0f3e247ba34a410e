/* SPDX-License-Identifier: MIT */
/*
 * The `slidescan` client: one program, many subcommands.  Commands that
 * talk to the daemon go through its unix socket; offline commands (verify,
 * phantom, analyse, eval, train, ...) run in this process.
 *
 * Exit codes, the same for every command:
 */
#ifndef SS_TOOLS_CLIENT_H
#define SS_TOOLS_CLIENT_H

enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,                  /* the operation failed */
    EXIT_USAGE = 2,                 /* bad command line */
    EXIT_NODAEMON = 3,              /* the daemon cannot be reached */
    EXIT_REFUSED = 4,               /* the daemon refused the caller */
    EXIT_NOTFOUND = 5,              /* no such slide, scan or file */
};

#define CMD(fn, name, summary) int cmd_##fn(int argc, char **argv);
#include "tools/client/commands.def"
#undef CMD

/* Prints the command table to stdout. */
void client_usage(void);

#endif
