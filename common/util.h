/* SPDX-License-Identifier: MIT */
/*
 * Small system helpers: clocks, durable files, checksums.
 *
 * "Durable" means on stable storage before the call returns: the data is
 * written to a temporary name in the same directory, fsync()ed, renamed
 * over the final name, and the directory is fsync()ed, so that after a
 * crash or power cut the file is either absent or whole.
 */
#ifndef SS_COMMON_UTIL_H
#define SS_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Monotonic milliseconds since an arbitrary origin. */
double util_now_ms(void);

/* Wall-clock UTC time as "2026-12-04T15:51:02Z" into buf (≥ 21 bytes). */
void util_utc_iso(char *buf, size_t len);

/* mkdir -p with mode 0750 for new directories. */
int util_mkdir_p(const char *path, struct ss_err *err);

/* The parent directory of path ("." for a bare name, "/" for "/x") into
 * buf. */
void util_parent_dir(const char *path, char *buf, size_t len);

/* Creates the output directory path (mode 0750) when missing, but none of
 * its parents: a command may make its own output directory, while a
 * missing parent is most often a mistyped path.  An existing directory is
 * 0; a missing parent is -ENOENT ("PARENT: No such file or directory"),
 * something else at path -ENOTDIR. */
int util_mkdir_leaf(const char *path, struct ss_err *err);

/* mkdir -p giving each directory it creates exactly mode (whatever the
 * umask) and, when gid >= 0, that group; existing ones are left alone. */
int util_mkdir_as(const char *path, unsigned mode, long gid,
                  struct ss_err *err);

/* fsync() of a directory, so that renames and creations in it persist. */
int util_fsync_dir(const char *dir, struct ss_err *err);

/* Removes dir and everything below it (symbolic links are removed, not
 * followed); a missing dir is no error.  -errno naming dir otherwise. */
int util_remove_tree(const char *dir, struct ss_err *err);

/* Writes len bytes durably to path (temporary name, fsync, rename). */
int util_write_durable(const char *path, const void *data, size_t len,
                       struct ss_err *err);

/* Renames tmp over path durably: fsyncs tmp, renames, fsyncs the dir. */
int util_commit_file(const char *tmp, const char *path, struct ss_err *err);

/* Reads a whole file; *buf is malloc()ed and NUL-terminated. */
int util_read_file(const char *path, char **buf, size_t *len,
                   struct ss_err *err);

/* SHA-256 of a file as 64 lowercase hex digits plus NUL into hex[65]. */
int util_sha256_file(const char *path, char hex[65], struct ss_err *err);

/* Free bytes for unprivileged users on the file system holding path. */
int util_free_bytes(const char *path, uint64_t *bytes, struct ss_err *err);

/* The whole of text as a decimal whole number from 0 to UINT64_MAX (a
 * seed): only digits, no sign, space, exponent or base prefix.  -EINVAL
 * when it is not one, -ERANGE when it is beyond UINT64_MAX; *out is
 * untouched on error, so messages quote what the user typed. */
int util_parse_u64(const char *text, uint64_t *out);

#endif
