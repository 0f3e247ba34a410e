/* SPDX-License-Identifier: MIT */
/*
 * Backup and restore of a scanner's data: the catalogue and every file it
 * names that matters (whole-slide images, analysis output, calibrations,
 * and the tiles of scans not finished yet), while the daemon keeps
 * scanning.
 *
 * A backup runs in the client's process against the catalogue file, not
 * through the daemon: SQLite's online backup API copies a consistent
 * snapshot from a read-only connection, which in WAL mode never blocks the
 * daemon's writers nor is blocked by them.  The files the snapshot names
 * are copied next, each verified: against the catalogue's SHA-256 where it
 * has one (slide images, tiles), and always by reading the copy back.  A
 * file that changed or vanished since the snapshot (the daemon finished a
 * scan and removed its tiles, say) makes the backup take a new snapshot
 * and go again, copying only what it does not have yet; a backup into the
 * same directory later copies only what is new.  Every copy it keeps is
 * first checked against the manifest's SHA-256 (or, when asked for a
 * quick run, against the size and modification time recorded with it);
 * a copy that is missing or damaged is copied again from the data
 * directory ("repaired"), so that a run that succeeds leaves a backup
 * that passes backup_verify().
 *
 * The backup directory:
 *   DEST/catalogue.db     the snapshot, a standalone database
 *   DEST/files/REL        each file at its path relative to the data dir
 *   DEST/MANIFEST.json    {"version":1, "created", "catalogue":{"file",
 *                         "sha256","schema"}, "files":[{"path","sha256",
 *                         "bytes","kind","stamp","mtime_ns"}],
 *                         "problems":[...]}
 * written in that order, each durably, so that an interrupted backup
 * leaves files that restore refuses ("the catalogue does not match the
 * manifest") rather than a silent mix.
 *
 * Restore verifies the whole backup first, refuses to replace a catalogue
 * that a running process has open, and refuses to replace any existing
 * catalogue without force; it then copies the files, then the catalogue
 * (removing a stale WAL first), and checks the result like
 * backup_check().
 */
#ifndef SS_STORAGE_BACKUP_H
#define SS_STORAGE_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define BACKUP_MANIFEST "MANIFEST.json"

struct backup_report {
    int files;                      /* files the catalogue names */
    int copied;                     /* copied by this run */
    int kept;                       /* already in the backup, unchanged */
    int verified;                   /* checksums confirmed */
    int problems;                   /* missing or differing files */
    uint64_t bytes;                 /* bytes copied */
    int snapshots;                  /* catalogue snapshots taken */
    int64_t schema;                 /* the catalogue's user_version */
    char problem[1024];             /* the first problems, "; " between */
    int repaired;                   /* copies already in the backup found
                                       missing or damaged and copied
                                       again (not counted in copied) */
    char repair[1024];              /* the first repairs, "; " between */
};

/* How backup_create_with() treats the copies already in the backup. */
struct backup_options {
    /* false (the default): each copy is read and compared with the
     * manifest's SHA-256.  true: a copy whose size and modification time
     * are those the manifest recorded is trusted without reading it;
     * damage that keeps both (a failing disk's bit rot) is then found
     * only by a full run or backup_verify().
     * LIMIT: a quick run reports success over damage that keeps a copy's
     * size and modification time (bit rot on the backup disk). */
    bool quick;
};

/* Backs up the catalogue at catalogue (data files under data_dir) into
 * dest, creating it (but not its parent).  0 when every named file is in
 * the backup and verified; SS_EFORMAT when some could not be (the report
 * and err say which; the backup holds everything else); -ENOENT, before
 * dest is touched, when there is no file at catalogue or dest's parent
 * directory does not exist ("backup DEST: PARENT: No such file or
 * directory"); -EINVAL, before anything
 * is touched, when dest is data_dir, lies inside it or contains it, or is
 * the catalogue's directory (compared with symbolic links resolved). */
int backup_create(const char *catalogue, const char *data_dir,
                  const char *dest, struct backup_report *r,
                  struct ss_err *err);

/* backup_create() with options (NULL: the defaults, as backup_create()).
 * A copy already in dest whose source is unchanged but which is missing
 * or differs from the manifest is copied again and counted in
 * r->repaired, its path and what was wrong in r->repair; one that cannot
 * be copied again is a problem (SS_EFORMAT naming it). */
int backup_create_with(const char *catalogue, const char *data_dir,
                       const char *dest, const struct backup_options *o,
                       struct backup_report *r, struct ss_err *err);

/* Checks a backup directory: the manifest, the catalogue's checksum and
 * integrity, every file's checksum, and that it is whole (the manifest
 * records no problem from the run that made it, and every file or
 * directory the backup's catalogue names is in it).  0 when whole;
 * -ENOENT when src holds no manifest (no backup there); SS_EFORMAT when
 * it is damaged or incomplete ("backup SRC is incomplete: ..."). */
int backup_verify(const char *src, struct backup_report *r,
                  struct ss_err *err);

/* Restores the backup in src to the catalogue path and data_dir.  Before
 * writing anything it refuses (-EINVAL) a src that overlaps data_dir or
 * is the catalogue's directory as backup_create() does, fails with
 * -ENOENT when src holds no backup,
 * SS_EFORMAT when the backup does not verify ("not restoring: ..."), and
 * refuses (-EBUSY) when a process has the catalogue open, and (-EEXIST)
 * when a catalogue exists there and force is false.  Later failures (a
 * copy, or the restored data not verifying: "restored N files from src,
 * but the result does not verify: ...") are other negative codes, never
 * -ENOENT.  r->copied counts the files written (each checked against the
 * manifest's SHA-256); r->files, r->verified and r->problems are then
 * backup_check()'s: the catalogue's entries (a slide image, a tile, or an
 * analysis or calibration directory holding many files) and how many of
 * them verify. */
int backup_restore(const char *src, const char *catalogue,
                   const char *data_dir, bool force, struct backup_report *r,
                   struct ss_err *err);

/* Checks a data directory against its catalogue: integrity_check, then
 * every slide image's and every unfinished scan's tile's SHA-256, and that
 * each finished analysis and calibration directory exists.  0 when all
 * verify; SS_EFORMAT naming the first problem otherwise. */
int backup_check(const char *catalogue, const char *data_dir,
                 struct backup_report *r, struct ss_err *err);

/* True when some process holds SQLite locks on the catalogue (a daemon
 * has it open in WAL mode); *pid receives the holder (may be NULL). */
bool backup_catalogue_in_use(const char *catalogue, pid_t *pid);

/* The paths a client uses: data_dir and catalogue from the [daemon]
 * section of the configuration file conf (NULL: $SLIDESCAN_CONFIG, then
 * /etc/slidescan/slidescan.conf when it exists), each replaced by the
 * given override when not NULL; catalogue defaults to
 * <data_dir>/catalogue.db.  Buffers of PATH_MAX. */
int backup_paths(const char *conf, const char *data_dir_override,
                 const char *catalogue_override, char *data_dir,
                 char *catalogue, struct ss_err *err);

/* backup_paths(), also writing into origin (may be NULL) where the
 * catalogue path came from, for messages: "given with --catalogue",
 * "under --data-dir DIR", "under [daemon] data_dir of FILE", "the
 * default: no --config, $SLIDESCAN_CONFIG unset and no
 * /etc/slidescan/slidescan.conf", ... */
int backup_paths_origin(const char *conf, const char *data_dir_override,
                        const char *catalogue_override, char *data_dir,
                        char *catalogue, char *origin, size_t origin_len,
                        struct ss_err *err);

#endif
