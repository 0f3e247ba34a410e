/* SPDX-License-Identifier: MIT */
/*
 * powerfail.so: an LD_PRELOAD library that watches a program's syncs.
 * fsync() and fdatasync() of a file or directory under POWERFAIL_ROOT, and
 * sync() and syncfs(), record what they make durable in the state
 * directory POWERFAIL_STATE (pf.h); nothing else is intercepted, so the
 * program runs at full speed between syncs.  After a cut (POWERFAIL_CUT_AT
 * = N kills the process at its N-th sync counted over all processes, or
 * "powerfail cut" from a test) every process that reaches a sync is killed
 * before the sync happens, and "powerfail restore" rebuilds the root from
 * what was recorded.  Without POWERFAIL_STATE the library does nothing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/powerfail/pf.h"

/* The intercepted functions are the library's interface. */
int fsync(int fd);
int fdatasync(int fd);
void sync(void);
int syncfs(int fd);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct pf pf;
static bool active;
static long cut_at;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static void (*real_sync)(void);
static int (*real_syncfs)(int);

static void
init(void)
{
    const char *state = getenv("POWERFAIL_STATE");
    const char *root = getenv("POWERFAIL_ROOT");
    const char *at = getenv("POWERFAIL_CUT_AT");
    int rc;

    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_sync = (void (*)(void))dlsym(RTLD_NEXT, "sync");
    real_syncfs = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
    if (state == NULL || *state == '\0')
        return;
    rc = pf_open(&pf, state, root != NULL && *root != '\0' ? root : NULL);
    if (rc == 0)
        rc = pf_baseline(&pf);
    if (rc < 0) {
        fprintf(stderr, "powerfail: state %s: %s; not recording\n", state,
                strerror(-rc));
        return;
    }
    cut_at = at != NULL ? strtol(at, NULL, 10) : 0;
    active = true;
}

__attribute__((constructor)) static void
pf_ctor(void)
{
    pthread_once(&once, init);
}

/* The power is off: this process stops here, as the machine would. */
static void
power_off(void)
{
    kill(getpid(), SIGKILL);
    for (;;)
        pause();
}

static bool
fd_under_root(int fd)
{
    char proc[64], path[PATH_MAX];
    ssize_t n;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    n = readlink(proc, path, sizeof(path) - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    return pf_under_root(&pf, path);
}

/* Counts the sync and kills the process if the power goes now. */
static void
before_sync(void)
{
    long n;

    pthread_mutex_lock(&mu);
    pf_lock(&pf);
    n = pf_count_next(&pf);
    if (pf_is_cut(&pf) || (cut_at > 0 && n >= cut_at)) {
        pf_mark_cut(&pf);
        power_off();
    }
    pf_unlock(&pf);
    pthread_mutex_unlock(&mu);
}

/* Records what the finished sync made durable, unless the power went off
 * meanwhile (then the caller never sees the sync return). */
static void
after_sync(int fd)
{
    int rc;

    pthread_mutex_lock(&mu);
    pf_lock(&pf);
    if (pf_is_cut(&pf))
        power_off();
    rc = fd >= 0 ? pf_snap_fd(&pf, fd) : pf_snap_all(&pf);
    if (rc < 0)
        fprintf(stderr, "powerfail: recording fd %d: %s\n", fd,
                strerror(-rc));
    pf_unlock(&pf);
    pthread_mutex_unlock(&mu);
}

static int
watched(int fd, int (*real)(int))
{
    int rc;

    pthread_once(&once, init);
    if (!active || !fd_under_root(fd))
        return real(fd);
    before_sync();
    rc = real(fd);
    if (rc == 0)
        after_sync(fd);
    return rc;
}

int
fsync(int fd)
{
    pthread_once(&once, init);
    return watched(fd, real_fsync);
}

int
fdatasync(int fd)
{
    pthread_once(&once, init);
    return watched(fd, real_fdatasync);
}

void
sync(void)
{
    pthread_once(&once, init);
    if (!active) {
        real_sync();
        return;
    }
    before_sync();
    real_sync();
    after_sync(-1);
}

int
syncfs(int fd)
{
    int rc;

    pthread_once(&once, init);
    if (!active)
        return real_syncfs(fd);
    before_sync();
    rc = real_syncfs(fd);
    if (rc == 0)
        after_sync(-1);
    return rc;
}
