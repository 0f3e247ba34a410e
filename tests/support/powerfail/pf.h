/* SPDX-License-Identifier: MIT */
/*
 * The power-loss model shared by the preload library (powerfail.so) and
 * the command-line tool (powerfail).  The state directory records what is
 * on stable storage under one root directory:
 *
 *   STATE/root        the root's absolute path
 *   STATE/rootkey     the key of the root directory
 *   STATE/c/KEY       the content of file KEY as of its last fsync
 *   STATE/d/KEY       the entries of directory KEY as of its last fsync,
 *                     one per line: "TYPE MODE REF NAME" with TYPE f, d or
 *                     l, MODE octal, REF the entry's key (a symlink's
 *                     target in hex) and NAME in hex
 *   STATE/count       sync calls seen so far (all processes)
 *   STATE/cut         present once the power is off
 *   STATE/lock        flock()ed around every change
 *
 * A key names one inode for its whole life: device, inode number and birth
 * time, so a reused inode number is a different key.  See README.md for
 * the model and its limits.
 */
#ifndef SS_TESTS_POWERFAIL_PF_H
#define SS_TESTS_POWERFAIL_PF_H

#include <limits.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#define PF_KEY_MAX 80

struct pf {
    char state[PATH_MAX];
    char root[PATH_MAX];
    size_t rootlen;
    int lockfd;
};

/* Opens the state directory (creating it); root is given for a new state
 * and read back from STATE/root otherwise (then it may be NULL). */
int pf_open(struct pf *pf, const char *state, const char *root);
void pf_close(struct pf *pf);

void pf_lock(struct pf *pf);
void pf_unlock(struct pf *pf);

/* Records the whole tree under root as durable, unless already done. */
int pf_baseline(struct pf *pf);

/* True when path (absolute, resolved) lies under the root. */
bool pf_under_root(const struct pf *pf, const char *path);

/* Records a durable copy of the open file or directory fd (whose resolved
 * path is under the root): a file's content, a directory's entries. */
int pf_snap_fd(struct pf *pf, int fd);

/* Records every file and directory under the root (sync(), syncfs()). */
int pf_snap_all(struct pf *pf);

/* Adds one to the shared sync counter and returns the new value. */
long pf_count_next(struct pf *pf);

/* The power is cut: marks it in the state. */
void pf_mark_cut(struct pf *pf);
bool pf_is_cut(struct pf *pf);

/* Rebuilds the root as a power cut would leave it: only what the state
 * records as durable.  With torn, each file that has a durable copy and
 * still exists takes every 4 KiB page, and its length, at random from
 * either the durable copy or the live file (seeded), as a disk that wrote
 * back some unsynced pages would.  Then empties the state so that the next
 * run starts from the restored tree.  *nfiles receives the files made. */
int pf_restore(struct pf *pf, bool torn, uint64_t seed, int *nfiles);

/* Counts of what the state holds, for the tool's status. */
void pf_status(struct pf *pf, long *files, long *dirs, long *syncs);

#endif
