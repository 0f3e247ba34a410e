/* SPDX-License-Identifier: MIT */
/*
 * slidescand from start to stop: command line, configuration, the loop
 * and its handles, the threads, signals (SIGTERM/SIGINT stop cleanly,
 * SIGHUP reloads) and the order of teardown.
 *
 * A clean stop closes the socket, lets the scan thread finish its tile
 * (the scan keeps its state and resumes at the next start), ends the
 * worker, and leaves an assembly in progress to be redone at the next
 * start (stitching cannot be interrupted; its temporary file is removed
 * then).
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/tilestore.h"

#define DEFAULT_CONFIG "/etc/slidescan/slidescan.conf"

/* LIMIT: common/log.h can only add debug categories, so a reload that
 * removes one from [daemon] debug takes effect at the next restart. */
static void
apply_logging(const struct dconf *c)
{
    log_set_level(c->log_level);
    if (c->debug[0] != '\0')
        log_debug_enable(c->debug);
}

/* Keeps what cannot change while running from the old configuration. */
static void
keep_fixed(struct dconf *next, const struct dconf *now)
{
    memcpy(next->socket_path, now->socket_path, sizeof(next->socket_path));
    next->socket_mode = now->socket_mode;
    memcpy(next->data_dir, now->data_dir, sizeof(next->data_dir));
    memcpy(next->catalogue, now->catalogue, sizeof(next->catalogue));
    memcpy(next->group, now->group, sizeof(next->group));
    next->simulator = now->simulator;
    memcpy(next->objective, now->objective, sizeof(next->objective));
    next->sim = now->sim;
    next->hw = now->hw;
}

int
daemon__reload(struct daemon *d, char *applied, size_t alen, char *restart,
               size_t rlen, struct ss_err *err)
{
    struct dconf *next;
    int rc = 0;

    applied[0] = restart[0] = '\0';
    next = malloc(sizeof(*next));
    if (next == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    daemon__conf_default(next);
    if (d->conf.file[0] != '\0')
        rc = daemon__conf_load(d->conf.file, next, err);
    if (rc == 0)
        rc = daemon__conf_check_analysis(next, err);
    if (rc < 0) {
        free(next);
        log_error("daemon", "reload refused; keeping the running "
                  "configuration cause=\"%s\"", err->msg);
        return rc;
    }
    daemon__conf_diff(&d->conf, next, applied, alen, restart, rlen);
    keep_fixed(next, &d->conf);
    snprintf(next->file, sizeof(next->file), "%s", d->conf.file);
    d->conf = *next;
    free(next);
    apply_logging(&d->conf);
    daemon__scanner_reconfigure(d->scanner, &d->conf);
    daemon__assembler_reconfigure(d->assembler, &d->conf);
    log_notice("daemon", "reloaded applied=\"%s\" needs_restart=\"%s\"",
               applied, restart);
    return 0;
}

static void
begin_stop(struct daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    log_notice("daemon", "stopping cause=%s", why);
    daemon__notify_stopping(d);
    daemon__server_stop(d);
    daemon__scanner_request(d->scanner, 0, SCAN_REQ_STOP);
    daemon__supervisor_stop(d->worker);
    daemon__maybe_finish(d);
}

static void
close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void
daemon__maybe_finish(struct daemon *d)
{
    if (daemon__scanner_busy(d->scanner) ||
        daemon__supervisor_busy(d->worker))
        return;
    close_handle((uv_handle_t *)&d->sig_term);
    close_handle((uv_handle_t *)&d->sig_int);
    close_handle((uv_handle_t *)&d->sig_hup);
    close_handle((uv_handle_t *)&d->retry);
    close_handle((uv_handle_t *)&d->watchdog);
    daemon__supervisor_close(d->worker);
    pthread_mutex_lock(&d->mq_lock);
    d->mq_closed = true;
    pthread_mutex_unlock(&d->mq_lock);
    daemon__drain(&d->wake);
    close_handle((uv_handle_t *)&d->wake);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    char applied[1024], restart[1024];
    struct ss_err err;

    if (signum != SIGHUP) {
        begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
        return;
    }
    daemon__notify_reloading(d);
    if (daemon__reload(d, applied, sizeof(applied), restart,
                       sizeof(restart), &err) == 0)
        daemon__audit(d, -1, "reload", 0, applied);
    daemon__notify_ready(d);
}

static int
init_loop(struct daemon *d, struct ss_err *err)
{
    d->loop = malloc(sizeof(*d->loop));
    if (d->loop == NULL || uv_loop_init(d->loop) != 0)
        return err_set(err, -ENOMEM, "cannot create the event loop");
    pthread_mutex_init(&d->mq_lock, NULL);
    uv_async_init(d->loop, &d->wake, daemon__drain);
    d->wake.data = d;
    uv_timer_init(d->loop, &d->retry);
    d->retry.data = d;
    uv_timer_init(d->loop, &d->watchdog);
    uv_signal_init(d->loop, &d->sig_term);
    uv_signal_init(d->loop, &d->sig_int);
    uv_signal_init(d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int
start(struct daemon *d, struct ss_err *err)
{
    int rc;

    rc = tilestore_mkdir_durable(d->conf.data_dir, err);
    if (rc < 0)
        return err_prefix(err, "[daemon] data_dir");
    rc = daemon__lock_data_dir(d->conf.data_dir, d->conf.catalogue,
                               d->lock_fd, err);
    if (rc < 0)
        return rc;
    if (d->conf.catalogue[0] != '\0')
        snprintf(d->db_path, sizeof(d->db_path), "%s", d->conf.catalogue);
    else
        snprintf(d->db_path, sizeof(d->db_path), "%s/catalogue.db",
                 d->conf.data_dir);
    rc = cat_open(d->db_path, &d->cat, err);
    if (rc == 0)
        rc = init_loop(d, err);
    if (rc == 0)
        rc = daemon__scanner_new(d, &d->scanner, err);
    if (rc == 0)
        rc = daemon__assembler_new(d, &d->assembler, err);
    if (rc == 0)
        rc = daemon__supervisor_new(d, &d->worker, err);
    if (rc == 0)
        rc = daemon__server_start(d, err);
    if (rc == 0)
        rc = daemon__recover(d, err);
    return rc;
}

static void
walk_close(uv_handle_t *h, void *arg)
{
    close_handle(h);
}

/* Frees everything; returns false when a thread still runs (the assembly
 * thread under stitching) so that d must outlive us. */
static bool
teardown(struct daemon *d)
{
    bool asm_idle = d->assembler == NULL ||
                    daemon__assembler_idle(d->assembler);

    if (d->loop != NULL) {
        if (d->server_open)
            daemon__server_stop(d);
        if (!d->stopping) {
            d->stopping = true;
            if (d->worker != NULL)
                daemon__supervisor_stop(d->worker);
        }
        if (d->scanner != NULL && d->worker != NULL)
            daemon__maybe_finish(d);
        uv_walk(d->loop, walk_close, NULL);
        uv_run(d->loop, UV_RUN_DEFAULT);
    }
    daemon__scanner_free(d->scanner);
    daemon__assembler_free(d->assembler);
    daemon__supervisor_free(d->worker);
    cat_close(d->cat);
    if (d->loop != NULL && uv_loop_close(d->loop) == 0)
        free(d->loop);
    /* An assembly thread still stitching writes into the data
     * directory: the lock goes with the process then. */
    if (d->lock_fd[1] >= 0 && asm_idle)
        close(d->lock_fd[1]);
    if (d->lock_fd[0] >= 0 && asm_idle)
        close(d->lock_fd[0]);
    return asm_idle;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: slidescand [-c FILE] [--check]\n"
            "  -c, --config FILE  configuration (default %s, or\n"
            "                     $SLIDESCAN_CONFIG)\n"
            "      --check        check the configuration, and this machine\n"
            "                     for it (group, socket, directories), as\n"
            "                     the start would, then exit\n"
            "      --version      print the version\n", DEFAULT_CONFIG);
}

static int
parse_args(int argc, char **argv, const char **config, bool *check)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check", no_argument, NULL, 'k' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;

    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': *config = optarg; break;
        case 'k': *check = true; break;
        case 'V': printf("slidescand %s\n", SLIDESCAN_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "slidescand: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    return 0;
}

static int
load_config(struct daemon *d, const char *path, bool explicit,
            struct ss_err *err)
{
    int rc;

    daemon__conf_default(&d->conf);
    rc = daemon__conf_load(path, &d->conf, err);
    if (rc == -ENOENT && !explicit) {
        daemon__conf_default(&d->conf);
        log_notice("daemon", "no configuration at %s; built-in defaults",
                   path);
        return 0;
    }
    return rc;
}

int
daemon_main(int argc, char **argv)
{
    const char *config = getenv("SLIDESCAN_CONFIG");
    bool explicit = config != NULL, check = false, idle;
    struct daemon *d;
    struct ss_err err;
    int rc;

    rc = parse_args(argc, argv, &config, &check);
    if (rc != 0)
        return rc;
    explicit = explicit || config != NULL;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return 1;
    d->lock_fd[0] = d->lock_fd[1] = -1;
    err_clear(&err);
    rc = load_config(d, config != NULL ? config : DEFAULT_CONFIG, explicit,
                     &err);
    if (rc == 0)
        rc = daemon__conf_check_host(&d->conf, &err);
    if (rc < 0 || check) {
        if (rc < 0)
            fprintf(stderr, "slidescand: %s\n", err.msg);
        else
            printf("%s: ok\n", d->conf.file[0] ? d->conf.file : "defaults");
        /* Not a failure: checking a changed file while the daemon runs,
         * before a reload, is what --check is for. */
        if (rc == 0 && daemon__data_dir_in_use(d->conf.data_dir,
                                                d->conf.catalogue, &err) < 0)
            printf("note: %s; a second start on it would be refused\n",
                   err.msg);
        free(d);
        return rc < 0 ? 1 : 0;
    }
    apply_logging(&d->conf);
    rc = start(d, &err);
    if (rc == 0) {
        daemon__notify_start(d);
        daemon__schedule(d);
        daemon__notify_ready(d);
        log_notice("daemon", "started version=%s pid=%d config=%s "
                   "data_dir=%s", SLIDESCAN_VERSION, (int)getpid(),
                   d->conf.file[0] ? d->conf.file : "(defaults)",
                   d->conf.data_dir);
        uv_run(d->loop, UV_RUN_DEFAULT);
    } else {
        log_error("daemon", "cannot start cause=\"%s\"", err.msg);
        d->exit_code = 1;
    }
    rc = d->exit_code;
    idle = teardown(d);
    log_notice("daemon", "stopped");
    if (idle)
        free(d);
    return rc;
}
