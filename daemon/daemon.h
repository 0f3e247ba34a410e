/* SPDX-License-Identifier: MIT */
/*
 * slidescand's insides, shared by the files of daemon/ only.
 *
 * Threads (daemon/README.md has the full picture):
 *   loop thread      libuv: control server, scheduler, signals, sd_notify,
 *                    worker supervision, event broadcast.  Owns struct
 *                    daemon and its catalogue connection.
 *   scan thread      runs one scan (or calibration) at a time, blocking on
 *                    the microscope (scanjob.c); own catalogue connection.
 *   assembly thread  stitches captured scans into WSIs (assemble.c); own
 *                    catalogue connection.
 * The threads talk to the loop only by posting struct dmsg to a
 * mutex-protected queue and waking it with uv_async; the loop talks to
 * them through their job slots and atomic request flags.
 */
#ifndef SS_DAEMON_DAEMON_H
#define SS_DAEMON_DAEMON_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "common/err.h"
#include "common/log.h"
#include "drivers/guard.h"
#include "drivers/hw/hw.h"
#include "drivers/sim/sim.h"
#include "protocol/protocol.h"
#include "scan/acquire.h"
#include "storage/catalogue.h"
#include "storage/space.h"

/* ---- configuration (config.c) ---------------------------------------- */

enum { STAIN_HE, STAIN_KI67, STAIN_CK, NSTAINS };

/* Where a key was set in the configuration file, for messages. */
struct dconf_line {
    char key[48];                   /* "section.key" */
    int line;
};

#define DCONF_LINES 256

struct dconf {
    char file[PATH_MAX];            /* where it was read from, "" = none */
    struct dconf_line where[DCONF_LINES];
    int nwhere;

    /* [daemon] */
    char socket_path[PATH_MAX];
    int socket_mode;
    char data_dir[PATH_MAX];
    char catalogue[PATH_MAX];       /* "" = <data_dir>/catalogue.db */
    char group[64];                 /* "" = root and our own uid only */
    char worker[PATH_MAX];          /* "" = next to slidescand */
    enum log_level log_level;
    char debug[256];
    double device_retry_s;
    int watch_drop_kb;              /* a watcher this far behind loses
                                       progress events */
    int watch_close_kb;             /* ... and this far behind is closed */

    /* [microscope] */
    bool simulator;                 /* driver = simulator | hardware */
    char objective[8];
    double phantom_w_mm, phantom_h_mm;

    /* [simulator], [camera], [stage], [deadlines], [storage] */
    struct sim_config sim;
    struct hw_config hw;
    struct guard_policy guard;
    struct space_policy space;

    /* [profile HE], [profile KI67], [profile CK] */
    struct acq_profile profile[NSTAINS];

    /* [scan] */
    struct acq_options acq;
    double calib_max_age_h;
    bool keep_tiles;
    int wsi_quality;
    double glass_w_mm, glass_h_mm;  /* the slide glass, along x and y */
    double max_stage_err_um;

    /* [analysis] */
    bool auto_analyse;
    char model[PATH_MAX];
    int worker_nice;
    int worker_restarts;
};

/* Built-in defaults (the values etc/slidescan.conf documents). */
void daemon__conf_default(struct dconf *c);

/* Reads path over the defaults.  Errors are SS_ECONFIG with "FILE:LINE:
 * [section] key: cause", or name the file when it cannot be read. */
int daemon__conf_load(const char *path, struct dconf *c, struct ss_err *err);

/* The line of the file that set [section] key, 0 when it came from the
 * defaults. */
int daemon__conf_line(const struct dconf *c, const char *section,
                      const char *key);

/* Sets err (SS_ECONFIG) to "FILE:LINE: [section] key: cause", or
 * "FILE: [section] key: cause" for a key the file did not set, or
 * "[section] key: cause" for the defaults.  Returns SS_ECONFIG. */
int daemon__conf_err(const struct dconf *c, struct ss_err *err,
                     const char *section, const char *key, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));

/* What start-up will need of this machine, checked without changing it
 * (check.c): the group exists, the socket path fits a unix socket and is
 * not taken by another kind of file, its directory, data_dir and the
 * catalogue's directory exist or can be created and are writable (probed
 * with a directory made and removed at once), a catalogue file present
 * is a readable and writable regular file, and what
 * daemon__conf_check_analysis checks.  `slidescand --check` and the start
 * both run it. */
int daemon__conf_check_host(const struct dconf *c, struct ss_err *err);

/* The analysis worker (resolved as daemon__worker_path does, a bare name
 * through PATH) is an executable regular file, and [analysis] model, when
 * set and not the built-in "classical", a readable regular file.  Run by
 * daemon__conf_check_host and by a reload, which a failure refuses. */
int daemon__conf_check_analysis(const struct dconf *c, struct ss_err *err);

/* The file in the data directory that slidescand keeps locked (flock) for
 * its whole life, holding its pid (daemon/lock.c). */
#define DAEMON_LOCK_FILE "slidescand.lock"

/* Takes the data directory's lock and the catalogue's (beside it) for
 * this process; fd[0] and fd[1] keep them (close them last).  -EBUSY
 * "data directory DIR (or catalogue FILE) is in use by slidescand pid N"
 * when another process holds one. */
int daemon__lock_data_dir(const char *data_dir, const char *catalogue,
                          int fd[2], struct ss_err *err);

/* -EBUSY with the same message when a daemon holds either lock, 0
 * otherwise; creates nothing (for --check). */
int daemon__data_dir_in_use(const char *data_dir, const char *catalogue,
                            struct ss_err *err);

/* Index of stain ("HE", "KI67", "CK") or -1. */
int daemon__stain_index(const char *stain);

/* What a reload from `now` to `next` changes: appends the names of the
 * reloaded groups to `applied` and of the settings that need a restart to
 * `restart` (comma-separated). */
void daemon__conf_diff(const struct dconf *now, const struct dconf *next,
                       char *applied, size_t alen, char *restart,
                       size_t rlen);

/* The worker program's path (resolving "" to the one next to us). */
void daemon__worker_path(const struct dconf *c, char *buf, size_t len);

/* ---- messages from the threads to the loop ------------------------- */

enum dmsg_kind {
    DMSG_EVENT,                     /* broadcast ev to watchers */
    DMSG_SCAN_END,                  /* the scan thread finished a scan */
    DMSG_CALIB_END,                 /* ... or a calibration */
    DMSG_ASSEMBLY_END,              /* the assembly thread finished */
};

/* How a scan job ended. */
enum scan_outcome {
    SCAN_OUT_ASSEMBLE,              /* captured; assembly queued */
    SCAN_OUT_PAUSED,                /* paused on request */
    SCAN_OUT_HOLD,                  /* paused by a fault: hold the queue */
    SCAN_OUT_CANCELLED,
    SCAN_OUT_FAILED,
    SCAN_OUT_STOPPED,               /* daemon stopping: resumes at start */
    SCAN_OUT_DEVICE_WAIT,           /* devices or space missing: retry */
};

struct dmsg {
    struct dmsg *next;
    enum dmsg_kind kind;
    int64_t scan;
    int outcome;                    /* enum scan_outcome, or an error */
    json_t *ev;                     /* owned: event fields / result */
    uint64_t client;                /* DMSG_CALIB_END: who asked */
    json_int_t req_id;
    char text[SS_ERR_MSG_MAX];
};

/* ---- the daemon ------------------------------------------------------ */

struct client;
struct scanner;
struct assembler;
struct supervisor;

/* What the loop knows about work in progress, for `status`. */
struct dstatus {
    int64_t scan;                   /* on the microscope, 0 = none */
    char slide[64], stain[16], state[16];
    char reason[SS_ERR_MSG_MAX];    /* of its last state event ("disk
                                       full ...", when paused for space) */
    int tiles_done, tiles_total;
    double started_wall_ms;         /* util_now_ms() at job start */
    double virtual_ms;              /* device time of this job so far */
    int64_t assembling;             /* 0 = none */
    int64_t analysing;
    int a_done, a_total;
    bool calibrating;
    char waiting[SS_ERR_MSG_MAX];   /* why nothing starts, "" = nothing */
    bool device_wait;               /* waiting says the devices did not
                                       answer; a retry keeps it on show
                                       until they do */
};

struct daemon {
    uv_loop_t *loop;
    struct dconf conf;
    struct cat *cat;                /* the loop thread's connection */
    char db_path[PATH_MAX + 32];
    gid_t group_gid;
    bool have_group;
    int lock_fd[2];                 /* data directory's and catalogue's
                                       locks, -1 for none */

    uv_pipe_t server;
    bool server_open;
    struct client *clients;
    uint64_t next_client;
    int nwatchers;

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, retry;
    uv_async_t wake;
    pthread_mutex_t mq_lock;
    struct dmsg *mq_head, *mq_tail;
    bool mq_closed;                 /* under mq_lock: wake is closed */

    struct scanner *scanner;
    struct assembler *assembler;
    struct supervisor *worker;

    struct dstatus st;
    bool stopping;
    bool retry_armed;
    int exit_code;
    char notify_status[256];
};

/* Posts m (owned by the loop afterwards) from any thread. */
void daemon__post(struct daemon *d, struct dmsg *m);

/* A new message; aborts on out of memory (there is no sane recovery). */
struct dmsg *daemon__msg_new(enum dmsg_kind kind, int64_t scan);

/* An event about one scan, for DMSG_EVENT: {"scan":N,"slide":..,...}. */
json_t *daemon__scan_event(int64_t scan, const char *slide,
                           const char *state);

/* ---- control server (server.c) --------------------------------------- */

int daemon__server_start(struct daemon *d, struct ss_err *err);
void daemon__server_stop(struct daemon *d);

/* Sends an event to every watcher, within the backlog policy. */
void daemon__broadcast(struct daemon *d, const char *event, json_t *fields);

/* Answers request req_id of client `serial` if it is still connected;
 * result is stolen (ok when rc == 0, else an error with msg). */
void daemon__reply_later(struct daemon *d, uint64_t serial,
                         json_int_t req_id, int rc, json_t *result,
                         const char *msg);

/* Who is asking: filled from SO_PEERCRED. */
struct caller {
    uid_t uid;
    gid_t gid;
    pid_t pid;
    uint64_t serial;                /* the connection */
};

/* ---- commands (commands.c) ------------------------------------------- */

/* Runs one validated request.  Returns 0 with *result set, a negative
 * code with err set, or 1 when the answer comes later (reply_later). */
int daemon__command(struct daemon *d, const struct caller *who,
                    const struct proto_req *req, json_t **result,
                    struct ss_err *err);

/* ---- scheduler (sched.c) -------------------------------------------- */

/* Start-up: cleans what a crash left and queues what must resume. */
int daemon__recover(struct daemon *d, struct ss_err *err);

/* Starts the next scan when the microscope is free and nothing holds
 * the queue; starts the next analysis when the worker is free. */
void daemon__schedule(struct daemon *d);

/* Handles the messages the threads posted (the uv_async callback). */
void daemon__drain(uv_async_t *h);

/* Records an action in the events table and logs a failure to do so. */
void daemon__audit(struct daemon *d, int64_t uid, const char *action,
                   int64_t scan, const char *detail);

/* Ends the loop once nothing runs any more (called while stopping). */
void daemon__maybe_finish(struct daemon *d);

/* Refreshes sd_notify STATUS from d->st. */
void daemon__status_changed(struct daemon *d);

/* The status object for `status`. */
json_t *daemon__status_json(struct daemon *d);

/* Brings catalogue listings up to date with the scan on the microscope,
 * which the catalogue may lag (a pause for space on a disk too full for
 * SQLite to record it, the moment between the start of a scan and its
 * first step): daemon__live_scan() sets that scan's state and reason in
 * one scan object; daemon__live_queue() also lists it first and without
 * a queue position, as `status` describes it. */
void daemon__live_scan(struct daemon *d, json_t *scan);
void daemon__live_queue(struct daemon *d, json_t *queue);

/* ---- scan thread (scanjob.c) ------------------------------------------ */

int daemon__scanner_new(struct daemon *d, struct scanner **out,
                        struct ss_err *err);
/* Stops the thread after its current tile and joins it. */
void daemon__scanner_free(struct scanner *sc);

/* True while a scan or calibration runs: from the start of a job until
 * the loop handled its end message and called daemon__scanner_idle(). */
bool daemon__scanner_busy(struct scanner *sc);
void daemon__scanner_idle(struct scanner *sc);

/* Starts scan `scan` (queued or to be resumed); -EBUSY when busy. */
int daemon__scanner_start(struct scanner *sc, int64_t scan);

/* Starts a calibration of a stain's profile, answered to client/req. */
int daemon__scanner_calibrate(struct scanner *sc, int stain,
                              uint64_t client, json_int_t req_id);

/* Requests for the running scan, acted on between tiles. */
enum scan_request { SCAN_REQ_PAUSE = 1, SCAN_REQ_CANCEL, SCAN_REQ_STOP };
bool daemon__scanner_request(struct scanner *sc, int64_t scan,
                             enum scan_request r);

/* Takes back request r for the scan on the microscope while the scan
 * has not acted on it yet (a resume right after a pause); false when it
 * already has, or another request replaced it. */
bool daemon__scanner_withdraw(struct scanner *sc, int64_t scan,
                              enum scan_request r);

/* True while scan `scan` is paused on the microscope waiting for free
 * space; *need_bytes receives what the rest of it needs (without the
 * reserve), as of its last check. */
bool daemon__scanner_space_wait(struct scanner *sc, int64_t scan,
                                uint64_t *need_bytes);

/* Asks a scan waiting for space to check again now rather than at its
 * next recheck_s. */
void daemon__scanner_recheck(struct scanner *sc);

/* Describes the microscope for `devices` (runs on the loop: reads only
 * what the scan thread published). */
json_t *daemon__scanner_devices(struct scanner *sc);

/* New configuration for the next scan (profiles, scan options); the
 * [storage] policy applies at once, to the running scan's next check of
 * free space and to a scan waiting for space (which checks again now). */
void daemon__scanner_reconfigure(struct scanner *sc, const struct dconf *c);

/* ---- assembly thread (assemble.c) ----------------------------------- */

int daemon__assembler_new(struct daemon *d, struct assembler **out,
                          struct ss_err *err);
void daemon__assembler_free(struct assembler *a);
void daemon__assembler_push(struct assembler *a, int64_t scan);
bool daemon__assembler_idle(struct assembler *a);
void daemon__assembler_reconfigure(struct assembler *a,
                                   const struct dconf *c);

/* ---- analysis worker (worker.c) ------------------------------------------ */

int daemon__supervisor_new(struct daemon *d, struct supervisor **out,
                           struct ss_err *err);
/* Asks a running worker to end (SIGTERM, SIGKILL after 5 s); its
 * analysis goes back to the queue. */
void daemon__supervisor_stop(struct supervisor *s);
/* At start-up: ends workers a crashed daemon left running (recorded pid
 * still running the worker binary on the recorded output directory). */
void daemon__supervisor_orphans(struct supervisor *s);
/* Closes the supervisor's handles (the loop is ending). */
void daemon__supervisor_close(struct supervisor *s);
void daemon__supervisor_free(struct supervisor *s);
/* Starts the next queued analysis when none runs. */
void daemon__supervisor_kick(struct supervisor *s);
bool daemon__supervisor_busy(struct supervisor *s);

/* ---- systemd (notify.c) ----------------------------------------------- */

void daemon__notify_start(struct daemon *d);
void daemon__notify_ready(struct daemon *d);
void daemon__notify_status(struct daemon *d, const char *status);
void daemon__notify_reloading(struct daemon *d);
void daemon__notify_stopping(struct daemon *d);

/* ---- devices (devices.c) --------------------------------------------- */

/* Builds the configured microscope, guarded by per-operation deadlines;
 * its devices are opened by guard_probe().  hw_keep receives the hardware
 * configuration the guard's factory uses; it must live as long as *out. */
int daemon__microscope_open(const struct dconf *c, struct hw_config *hw_keep,
                            struct microscope **out, struct ss_err *err);

/* Homes the stage (after its devices are open). */
int daemon__microscope_home(struct microscope *m, struct ss_err *err);

/* The simulator slide spec for a scan: its image (or a phantom of its
 * stain seeded from the slide id), with the slide id for the label. */
void daemon__sim_spec(const struct dconf *c, const struct cat_scan *s,
                      char *buf, size_t len);

/* ---- the program (daemon.c) -------------------------------------------- */

/* Re-reads the configuration file (SIGHUP, `reload`): applies what can
 * change while running and names in restart what needs a restart. */
int daemon__reload(struct daemon *d, char *applied, size_t alen,
                   char *restart, size_t rlen, struct ss_err *err);

/* slidescand's main(). */
int daemon_main(int argc, char **argv);

#endif
