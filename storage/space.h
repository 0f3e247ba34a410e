/* SPDX-License-Identifier: MIT */
/*
 * Free space for scans.  A scan writes its tiles (JPEG q95 4:4:4, one file
 * each), then the whole-slide image (a pyramid of JPEG tiles) while the
 * tiles still exist, then the analysis overlay and heat maps.  The daemon
 * estimates what a scan still has to write from its plan, checks that much
 * plus a reserve before the scan starts and before every tile, and pauses
 * the scan with a clear reason when the disk is short or a write fails with
 * ENOSPC; it checks again every recheck_s and resumes by itself once space
 * has been freed.  Writes are durable and atomic (temporary name, fsync,
 * rename), so a write that fails for space leaves the previous state whole.
 *
 * The sizes per pixel are measured upper bounds for tissue at the store's
 * JPEG settings (see storage/README-robustness.md); they err on the large
 * side so that a scan never starts when it cannot finish.
 */
#ifndef SS_STORAGE_SPACE_H
#define SS_STORAGE_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "scan/acquire.h"

struct space_policy {
    uint64_t reserve_bytes;         /* always left free */
    double tile_bytes_per_px;       /* a stored tile, per frame pixel */
    double wsi_bytes_per_px;        /* the WSI with its pyramid, per
                                       level-0 pixel of tissue */
    double glass_bytes_per_px;      /* ... per level-0 pixel of blank
                                       background cells */
    double analysis_ratio;          /* overlay and heat maps / WSI */
    double recheck_s;               /* how often a scan paused for space
                                       checks again */
};

/* Defaults: reserve 512 MiB, tile 1.0 B/px, WSI 0.6 B/px (with the
 * writer's spool), glass 0.02 B/px, analysis 1.0 of the WSI, recheck every
 * 10 s: measured sizes with a margin (see space.c). */
void space_policy_default(struct space_policy *p);

/* Sets one knob from text, as read from the [storage] section of
 * slidescan.conf: reserve_mb, tile_bytes_per_px, wsi_bytes_per_px,
 * glass_bytes_per_px, analysis_ratio, recheck_s.  Errors name the key and
 * the cause. */
int space_policy_set(struct space_policy *p, const char *key,
                     const char *value, struct ss_err *err);

/* What a scan still has to write, in bytes. */
struct space_need {
    uint64_t tile_bytes;            /* one tile */
    uint64_t tiles_bytes;           /* the tiles not yet stored */
    uint64_t wsi_bytes;
    uint64_t analysis_bytes;
    uint64_t total_bytes;           /* the sum (no reserve) */
};

/* The estimate for a plan of which tiles_left tiles are not yet stored.
 * The WSI counts the plan's tissue cells at wsi_bytes_per_px and the rest
 * of its grid at glass_bytes_per_px.  with_wsi false leaves out WSI and
 * analysis (a scan whose image is already written). */
void space_estimate(const struct space_policy *p, const struct acq_plan *plan,
                    int tiles_left, bool with_wsi, struct space_need *out);

/* The estimate before a plan exists: a frame_w × frame_h camera and a
 * guess of the tile count (from the slide's size). */
void space_estimate_tiles(const struct space_policy *p, int frame_w,
                          int frame_h, int ntiles, struct space_need *out);

/* 0 when the file system holding dir has need_bytes plus the reserve free
 * for unprivileged writers; -ENOSPC otherwise, with a message such as
 * "/var/lib/slidescan: 310 MiB free; the scan needs 820 MiB more plus a
 * 512 MiB reserve".  *free_bytes (may be NULL) receives the free space. */
int space_check(const struct space_policy *p, const char *dir,
                uint64_t need_bytes, uint64_t *free_bytes,
                struct ss_err *err);

/* True for the codes that mean "out of space": -ENOSPC, -EDQUOT. */
bool space_is_full(int code);

/* True when a write that failed with code failed for want of space: the
 * codes above, or -EIO (libraries such as libtiff report every failed
 * write as an I/O error) while dir has less than need_bytes plus the
 * reserve free, need_bytes being what the failed step had to write. */
bool space_write_full(const struct space_policy *p, const char *dir,
                      uint64_t need_bytes, int code);

/* The reason a scan waits for space.  After a write that failed for
 * space (cause->code -ENOSPC or -EDQUOT): "disk full on DIR (N MiB free;
 * the rest of the scan needs M MiB plus the R MiB reserve, [storage]
 * reserve_mb): <cause>; the scan resumes by itself when space is freed".
 * Otherwise (the check before a step, or another failed write) it says
 * "not enough free space on DIR for this scan (...)" with the same
 * figures, since the disk may have room and only the estimate plus the
 * configured reserve does not fit.  need_bytes is what the rest of the
 * scan will write; cause (NULL or empty: none) the write that failed.
 * Waiters build it again at each recheck, so the free space shown is
 * current. */
void space_full_reason(const struct space_policy *p, const char *dir,
                       uint64_t need_bytes, const struct ss_err *cause,
                       char *buf, size_t len);

/* Bytes as text with a binary unit: "512 B", "12.3 MiB", "1.50 GiB". */
void space_fmt(uint64_t bytes, char *buf, size_t len);

#endif
