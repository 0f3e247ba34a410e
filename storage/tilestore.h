/* SPDX-License-Identifier: MIT */
/*
 * The tile store: every corrected tile of a scan as its own durable file,
 * <data_dir>/scans/<scan>/tiles/<idx>.jpg, JPEG quality 95 with 4:4:4
 * chroma (close enough to lossless for stitching and PSNR ≥ 40 dB on
 * tissue, a tenth of the size of raw RGB).  A tile is on stable storage
 * (temporary name, fsync, rename, directory fsync) before tilestore_put()
 * returns, which is what lets the catalogue mark it captured and a
 * restarted daemon trust it.  A file whose catalogue row never committed
 * is simply captured again.
 */
#ifndef SS_STORAGE_TILESTORE_H
#define SS_STORAGE_TILESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

#define TILESTORE_QUALITY 95

struct tilestore;

/* Opens the store of scan `scan` under data_dir, creating its directory. */
int tilestore_open(const char *data_dir, int64_t scan,
                   struct tilestore **out, struct ss_err *err);
void tilestore_close(struct tilestore *ts);

/* The scan's directory, <data_dir>/scans/<scan> (absolute when data_dir
 * is). */
const char *tilestore_scan_dir(const struct tilestore *ts);

/* Tile idx's path relative to data_dir, "scans/<scan>/tiles/<idx>.jpg". */
void tilestore_rel(const struct tilestore *ts, int idx, char *buf,
                   size_t len);

/* Encodes and writes tile idx durably; hex receives the SHA-256 of the
 * file's bytes. */
int tilestore_put(struct tilestore *ts, int idx, const struct img *tile,
                  char hex[65], struct ss_err *err);

/* Reads tile idx back as RGB U8; -ENOENT when absent. */
int tilestore_get(struct tilestore *ts, int idx, struct img **out,
                  struct ss_err *err);

/* Checks tile idx's file against the SHA-256 the catalogue recorded;
 * SS_EFORMAT naming the file when it differs. */
int tilestore_verify(struct tilestore *ts, int idx, const char *hex,
                     struct ss_err *err);

/* Removes temporary files a crash left in the scan's directories; *n
 * receives how many. */
int tilestore_clean(struct tilestore *ts, int *n, struct ss_err *err);

/* Deletes the tile files and their directory (after the WSI is safe). */
int tilestore_remove_tiles(struct tilestore *ts, struct ss_err *err);

/* mkdir -p that makes each directory it creates durable: the parent of
 * every new directory is fsync()ed, so a power cut cannot lose a directory
 * whose files were written durably. */
int tilestore_mkdir_durable(const char *path, struct ss_err *err);

/* SHA-256 of a memory buffer as 64 hex digits. */
void tilestore_sha256(const void *data, size_t len, char hex[65]);

#endif
