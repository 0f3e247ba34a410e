/* SPDX-License-Identifier: MIT */
/*
 * One daemon per data directory: slidescand holds an exclusive flock(2)
 * on DATA_DIR/slidescand.lock for its whole life, the file holding its
 * pid for messages.  A second slidescand on the same data directory
 * (another socket, another configuration file) would take the same scans
 * and write the same tiles; it finds the lock taken and refuses to start.
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

static int
in_use(const char *data_dir, int fd, struct ss_err *err)
{
    long pid = holder_pid(fd);

    if (pid > 0)
        return err_set(err, -EBUSY, "data directory %s is in use by "
                       "slidescand pid %ld (%s/%s is locked)", data_dir,
                       pid, data_dir, DAEMON_LOCK_FILE);
    return err_set(err, -EBUSY, "data directory %s is in use by another "
                   "slidescand (%s/%s is locked)", data_dir, data_dir,
                   DAEMON_LOCK_FILE);
}

int
daemon__lock_data_dir(const char *data_dir, int *fd_out, struct ss_err *err)
{
    char path[PATH_MAX + 32], line[32];
    int fd, n;

    snprintf(path, sizeof(path), "%s/%s", data_dir, DAEMON_LOCK_FILE);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int rc = errno == EWOULDBLOCK ? in_use(data_dir, fd, err) :
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
int
daemon__data_dir_in_use(const char *data_dir, struct ss_err *err)
{
    char path[PATH_MAX + 32];
    int fd, rc = 0;

    snprintf(path, sizeof(path), "%s/%s", data_dir, DAEMON_LOCK_FILE);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        rc = in_use(data_dir, fd, err);
    close(fd);
    return rc;
}
