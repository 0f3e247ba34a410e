/* SPDX-License-Identifier: MIT */
/* Space estimates for a scan and the free-space check against them. */
#include "storage/space.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MIB (1024.0 * 1024.0)

void
space_policy_default(struct space_policy *p)
{
    /* Measured on the simulator's H&E phantom at 2048 x 1536: a stored
     * tile (JPEG q95 4:4:4) 0.61 B/px, the slide image (q90 4:4:4 with its
     * pyramid) 0.41 B/px of level 0, to which the writer's spool of the
     * smaller levels adds up to a third while it writes; analysis output
     * 0.74 of the image.  Real H&E (CMU-1-Small-Region) compresses better:
     * 0.43 B/px at q95, 0.31 at q90. */
    p->reserve_bytes = 512ull << 20;
    p->tile_bytes_per_px = 1.0;
    p->wsi_bytes_per_px = 0.6;
    p->glass_bytes_per_px = 0.02;
    p->analysis_ratio = 1.0;
    p->recheck_s = 10;
}

static int
number(const char *key, const char *value, double lo, double hi, double *out,
       struct ss_err *err)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(value, &end);
    if (end == value || *end != '\0' || errno != 0 || !isfinite(v))
        return err_set(err, SS_ECONFIG, "%s: '%s' is not a number", key,
                       value);
    if (v < lo || v > hi)
        return err_set(err, SS_ECONFIG, "%s: %g is outside %g..%g", key, v,
                       lo, hi);
    *out = v;
    return 0;
}

int
space_policy_set(struct space_policy *p, const char *key, const char *value,
                 struct ss_err *err)
{
    double v;
    int rc;

    if (strcmp(key, "reserve_mb") == 0) {
        rc = number(key, value, 0, 1e9, &v, err);
        if (rc == 0)
            p->reserve_bytes = (uint64_t)(v * MIB);
        return rc;
    }
    if (strcmp(key, "tile_bytes_per_px") == 0)
        return number(key, value, 0.01, 16, &p->tile_bytes_per_px, err);
    if (strcmp(key, "wsi_bytes_per_px") == 0)
        return number(key, value, 0.01, 16, &p->wsi_bytes_per_px, err);
    if (strcmp(key, "glass_bytes_per_px") == 0)
        return number(key, value, 0, 16, &p->glass_bytes_per_px, err);
    if (strcmp(key, "analysis_ratio") == 0)
        return number(key, value, 0, 16, &p->analysis_ratio, err);
    if (strcmp(key, "recheck_s") == 0)
        return number(key, value, 0.1, 86400, &p->recheck_s, err);
    return err_set(err, SS_ECONFIG, "%s: unknown storage setting", key);
}

static void
sum(struct space_need *n)
{
    n->total_bytes = n->tiles_bytes + n->wsi_bytes + n->analysis_bytes;
}

void
space_estimate_tiles(const struct space_policy *p, int frame_w, int frame_h,
                     int ntiles, struct space_need *out)
{
    double px = (double)frame_w * frame_h;

    memset(out, 0, sizeof(*out));
    out->tile_bytes = (uint64_t)ceil(px * p->tile_bytes_per_px);
    out->tiles_bytes = out->tile_bytes * (uint64_t)(ntiles > 0 ? ntiles : 0);
    /* Without a plan every tile counts as tissue with no overlap. */
    out->wsi_bytes = (uint64_t)ceil(px * (ntiles > 0 ? ntiles : 0) *
                                    p->wsi_bytes_per_px);
    out->analysis_bytes = (uint64_t)ceil(out->wsi_bytes * p->analysis_ratio);
    sum(out);
}

void
space_estimate(const struct space_policy *p, const struct acq_plan *plan,
               int tiles_left, bool with_wsi, struct space_need *out)
{
    double cell_px, tissue, glass;
    int cells;

    space_estimate_tiles(p, plan->frame_w, plan->frame_h, tiles_left, out);
    out->wsi_bytes = 0;
    out->analysis_bytes = 0;
    if (with_wsi && plan->pixel_um > 0) {
        /* Each grid cell adds one step of canvas in x and y; the last row
         * and column add a whole frame, counted here as a full cell. */
        cell_px = (plan->step_x_um / plan->pixel_um) *
                  (plan->step_y_um / plan->pixel_um);
        cells = plan->rows * plan->cols;
        if (cells < plan->ntiles)
            cells = plan->ntiles;
        tissue = (double)plan->ntiles * cell_px;
        glass = (double)(cells - plan->ntiles) * cell_px +
                ((double)plan->frame_w * plan->frame_h - cell_px) *
                (plan->rows + plan->cols);
        out->wsi_bytes = (uint64_t)ceil(tissue * p->wsi_bytes_per_px +
                                        glass * p->glass_bytes_per_px);
        out->analysis_bytes = (uint64_t)ceil(out->wsi_bytes *
                                             p->analysis_ratio);
    }
    sum(out);
}

void
space_fmt(uint64_t bytes, char *buf, size_t len)
{
    if (bytes < 1024)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else if (bytes < (1ull << 30))
        snprintf(buf, len, "%.1f MiB", bytes / MIB);
    else
        snprintf(buf, len, "%.2f GiB", bytes / (MIB * 1024.0));
}

int
space_check(const struct space_policy *p, const char *dir,
            uint64_t need_bytes, uint64_t *free_bytes, struct ss_err *err)
{
    char have[32], need[32], reserve[32];
    uint64_t avail;
    int rc;

    rc = util_free_bytes(dir, &avail, err);
    if (rc < 0)
        return rc;
    if (free_bytes != NULL)
        *free_bytes = avail;
    if (avail >= need_bytes && avail - need_bytes >= p->reserve_bytes)
        return 0;
    space_fmt(avail, have, sizeof(have));
    space_fmt(need_bytes, need, sizeof(need));
    space_fmt(p->reserve_bytes, reserve, sizeof(reserve));
    return err_set(err, -ENOSPC, "%s: %s free; the scan needs %s more plus "
                   "a %s reserve", dir, have, need, reserve);
}

bool
space_is_full(int code)
{
    return code == -ENOSPC || code == -EDQUOT;
}

bool
space_write_full(const struct space_policy *p, const char *dir,
                 uint64_t need_bytes, int code)
{
    if (space_is_full(code))
        return true;
    return code == -EIO && space_check(p, dir, need_bytes, NULL, NULL) ==
           -ENOSPC;
}

void
space_full_reason(const struct space_policy *p, const char *dir,
                  uint64_t need_bytes, const struct ss_err *cause, char *buf,
                  size_t len)
{
    char have[32] = "unknown", need[32], reserve[32];
    uint64_t avail;
    bool why = cause != NULL && cause->msg[0] != '\0';
    /* "Disk full" only when a write found it so; a check against the
     * estimate and the reserve is a shortfall of this scan's policy. */
    bool full = why && space_is_full(cause->code);

    if (util_free_bytes(dir, &avail, NULL) == 0)
        space_fmt(avail, have, sizeof(have));
    space_fmt(need_bytes, need, sizeof(need));
    space_fmt(p->reserve_bytes, reserve, sizeof(reserve));
    snprintf(buf, len, "%s %s%s (%s free; the rest of the scan needs %s "
             "plus the %s reserve, [storage] reserve_mb)%s%s; the scan "
             "resumes by itself when space is freed",
             full ? "disk full on" : "not enough free space on", dir,
             full ? "" : " for this scan", have, need, reserve,
             why ? ": " : "", why ? cause->msg : "");
}
