/* SPDX-License-Identifier: MIT */
/*
 * One daemon per data directory: slidescand holds an exclusive flock(2)
 * on DATA_DIR/slidescand.lock for its whole life, the file holding its
 * pid for messages.  A second slidescand on the same data directory
 * (another socket, another configuration file) would take the same scans
 * and write the same tiles; it finds the lock taken and refuses to start.
 * The catalogue is locked the same way, by CATALOGUE.slidescand.lock
 * beside it, wherever [daemon] catalogue puts it: two data directories
 * sharing one catalogue would share its scans just as well.
 *
 * flock, not fcntl: an fcntl lock is dropped when the process closes any
 * descriptor of the file, which a library could do behind our back.  The
 * descriptor is close-on-exec, so the worker and other programs we start
 * never hold the lock after we are gone; the kernel drops it when the
 * daemon exits, crashed or not, so a stale file never blocks a start.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* The pid written in the lock file at fd, 0 when there is none yet (a
 * daemon between taking the lock and writing its pid). */
static long
holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/* "THING is in use by slidescand pid N (PATH is locked)". */
static int
in_use(const char *thing, const char *path, int fd, struct ss_err *err)
{
    long pid = holder_pid(fd);

    if (pid > 0)
        return err_set(err, -EBUSY, "%s is in use by slidescand pid %ld "
                       "(%s is locked)", thing, pid, path);
    return err_set(err, -EBUSY, "%s is in use by another slidescand (%s "
                   "is locked)", thing, path);
}

/* Takes the lock file at path for this process, writing our pid. */
static int
lock_path(const char *path, const char *thing, int *fd_out,
          struct ss_err *err)
{
    char line[32];
    int fd, n;

    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int rc = errno == EWOULDBLOCK ? in_use(thing, path, fd, err) :
                 err_set(err, -errno, "%s: cannot lock: %s", path,
                         strerror(errno));

        close(fd);
        return rc;
    }
    n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        int rc = err_set(err, -errno, "%s: cannot write the pid: %s", path,
                         strerror(errno));

        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* LIMIT: the probe takes a shared lock for an instant, so a slidescand
 * starting in that same instant on the same data directory is refused
 * ("in use by another slidescand") and must be started again. */
static int
path_in_use(const char *path, const char *thing, struct ss_err *err)
{
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        rc = in_use(thing, path, fd, err);
    close(fd);
    return rc;
}

/* The catalogue's lock, beside it: CATALOGUE.slidescand.lock (the data
 * directory's catalogue.db when [daemon] catalogue is unset). */
static void
catalogue_lock(const char *data_dir, const char *catalogue, char *path,
               size_t len, char *thing, size_t tlen)
{
    char own[PATH_MAX + 16];

    if (catalogue == NULL || catalogue[0] == '\0') {
        snprintf(own, sizeof(own), "%s/catalogue.db", data_dir);
        catalogue = own;
    }
    snprintf(path, len, "%s.%s", catalogue, DAEMON_LOCK_FILE);
    snprintf(thing, tlen, "catalogue %s", catalogue);
}

int
daemon__lock_data_dir(const char *data_dir, const char *catalogue,
                      int fd[2], struct ss_err *err)
{
    char path[PATH_MAX + 32], thing[PATH_MAX + 32];
    int rc;

    fd[0] = fd[1] = -1;
    snprintf(path, sizeof(path), "%s/%s", data_dir, DAEMON_LOCK_FILE);
    snprintf(thing, sizeof(thing), "data directory %s", data_dir);
    rc = lock_path(path, thing, &fd[0], err);
    catalogue_lock(data_dir, catalogue, path, sizeof(path), thing,
                   sizeof(thing));
    if (rc == 0) {
        rc = lock_path(path, thing, &fd[1], err);
        if (rc < 0) {
            close(fd[0]);
            fd[0] = -1;
        }
    }
    return rc;
}

int
daemon__data_dir_in_use(const char *data_dir, const char *catalogue,
                        struct ss_err *err)
{
    char path[PATH_MAX + 32], thing[PATH_MAX + 32];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", data_dir, DAEMON_LOCK_FILE);
    snprintf(thing, sizeof(thing), "data directory %s", data_dir);
    rc = path_in_use(path, thing, err);
    catalogue_lock(data_dir, catalogue, path, sizeof(path), thing,
                   sizeof(thing));
    if (rc == 0)
        rc = path_in_use(path, thing, err);
    return rc;
}
