/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the subcommands that talk to slidescand: the options
 * every such command takes (--socket PATH, --json, --help), connecting
 * and calling with the error printed once, output as text or JSON, and
 * following a scan's progress (a redrawn bar on a terminal, one plain line
 * per update otherwise).  Folder-internal to tools/client/.
 */
#ifndef SS_TOOLS_CLIENT_CLI_H
#define SS_TOOLS_CLIENT_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "tools/client/client.h"
#include "tools/client/conn.h"

#define CLIENT_COMMON_OPTIONS \
    { "socket", required_argument, NULL, 'S' }, \
    { "json", no_argument, NULL, 'J' }, \
    { "help", no_argument, NULL, 'h' }

#define CLIENT_COMMON_HELP \
    "  --socket PATH   daemon socket (default $SLIDESCAN_SOCKET or\n" \
    "                  " CLIENT_DEFAULT_SOCKET ")\n" \
    "  --json          print the daemon's answer as JSON\n" \
    "  --help          this text\n"

struct client__opts {
    const char *socket;
    bool json;
    bool help;
    const char *cmd;                /* for messages */
    const char *usage;              /* printed by --help */
};

/* Consumes the common options; false for any other option. */
bool client__common(int opt, struct client__opts *co);

/* Prints the usage to stdout (--help, EXIT_OK) or stderr (EXIT_USAGE). */
int client__usage(const struct client__opts *co, int code);

/* Prints "slidescan CMD: msg" to stderr and returns code. */
int client__fail(const struct client__opts *co, int code, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

/* Connects or prints why not. */
int client__connect(const struct client__opts *co, struct client_conn **c);

/* One request on a new connection; prints errors; *result the caller's. */
int client__request(const struct client__opts *co, const char *cmd,
                    json_t *args, json_t **result);

/* Calls on an open connection; prints errors. */
int client__call(const struct client__opts *co, struct client_conn *c,
                 const char *cmd, json_t *args, json_t **result);

/* Prints v as indented JSON on stdout. */
void client__print_json(json_t *v);

/* Parses the whole number option opt (e.g. "--priority") from text into
 * *out when it lies in lo..hi: EXIT_OK, or EXIT_USAGE after printing
 * "--priority: 'TEXT' is not a whole number" or "... is outside lo..hi",
 * quoting the text as given (a value beyond a long is outside too). */
int client__long_opt(const struct client__opts *co, const char *opt,
                     const char *text, long lo, long hi, long *out);

/* Parses a positive scan id; false when s is not one. */
bool client__scan_id(const char *s, int64_t *id);

/* Member as text ("-" for null or absent); numbers are formatted into one
 * of 16 rotating buffers, so at most 16 of them per printf(). */
const char *client__str(json_t *o, const char *key);

/* The two KI67 index scopes differ by more than this (0.10 = 10
 * percentage points): then the tumour mask, not the stain, decides the
 * number, and it deserves a look. */
#define CLIENT_KI67_SCOPE_WARN 0.10

/* Prints the KI67 index of the scope used (tissue: every nucleus on
 * tissue; else only those on tumour), the other scope's index beside it
 * and, when they differ by more than CLIENT_KI67_SCOPE_WARN, a warning;
 * every line starts with indent, NAN prints as n/a.  With option_hint the
 * other scope's line names the --ki67-scope value that selects it. */
void client__ki67_print(const char *indent, double index, bool tissue,
                        double other, bool option_hint);

/* "1:02:03" or "2:03" for a duration in seconds. */
void client__duration(double s, char *buf, size_t len);

/* Follows scan id (0: whatever is scanning) on a watching connection
 * until it is done, failed, cancelled or paused, and, with analysis,
 * until its analysis ends too.  Draws progress on stderr when it is a
 * terminal, plain lines on stdout otherwise; with json, prints each event
 * as a JSON line instead.  EXIT_OK when the scan (and analysis) ended
 * done, EXIT_FAIL otherwise. */
int client__follow(const struct client__opts *co, struct client_conn *c,
                   int64_t scan, bool analysis, json_t *status);

/* pause/resume/cancel/requeue: "CMD [SCAN]" with the given protocol
 * command; scan_required false lets the daemon pick the running scan. */
int client__scan_op(int argc, char **argv, const char *cmd,
                    bool scan_required, const char *usage);

/* Whether the directory an output at path goes into exists: 0, or
 * EXIT_FAIL after printing "slidescan CMD: PARENT: No such file or
 * directory" (or "Not a directory").  Commands make their own output
 * file or directory, never the missing directories above it. */
int client__out_parent(const char *cmd, const char *path);

#endif
