/* SPDX-License-Identifier: MIT */
/*
 * The client side of the control protocol (protocol/PROTOCOL.md): a
 * connection to slidescand's unix socket, requests answered in order,
 * and the events a watching connection receives meanwhile.  Used by the
 * daemon-talking subcommands and by the watch benchmark.
 *
 * Errors come back as the client's exit codes (tools/client/client.h)
 * with a message meant for the user: EXIT_NODAEMON when nothing listens,
 * EXIT_REFUSED when the socket or the daemon refuses the caller,
 * EXIT_NOTFOUND for "not_found", EXIT_USAGE for "bad_request", EXIT_FAIL
 * otherwise.
 */
#ifndef SS_TOOLS_CLIENT_CONN_H
#define SS_TOOLS_CLIENT_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define CLIENT_DEFAULT_SOCKET "/run/slidescan/slidescand.sock"

struct client_conn;

/* The socket to use: opt (--socket) if set, else $SLIDESCAN_SOCKET, else
 * CLIENT_DEFAULT_SOCKET. */
const char *client_socket_path(const char *opt);

/* Connects; on failure returns an exit code and writes msg. */
int client_conn_open(const char *path, struct client_conn **out, char *msg,
                     size_t len);
void client_conn_close(struct client_conn *c);

/* Sends cmd with args (stolen; NULL for none) and waits up to timeout_ms
 * (< 0: forever) for its response; events arriving first are kept for
 * client_conn_event().  EXIT_OK with *result (the caller's), or an exit
 * code with msg set ("<code>: <message>" from the daemon). */
int client_conn_call(struct client_conn *c, const char *cmd, json_t *args,
                     int timeout_ms, json_t **result, char *msg,
                     size_t len);

/* The next event (the whole message object, the caller's), waiting up to
 * timeout_ms (< 0: forever).  EXIT_OK with *ev; EXIT_FAIL with *ev NULL
 * on timeout (msg "timed out") or a closed connection (msg says so). */
int client_conn_event(struct client_conn *c, int timeout_ms, json_t **ev,
                      char *msg, size_t len);

/* The exit code for a wire error code ("not_found" → EXIT_NOTFOUND). */
int client_exit_for(const char *code);

#endif
