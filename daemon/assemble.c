/* SPDX-License-Identifier: MIT */
/*
 * The assembly thread: turns a captured scan into its whole-slide image
 * while the scan thread already captures the next slide.
 *
 *   1. checks every captured tile file against its recorded SHA-256; a
 *      lost or damaged tile sends the scan back to capturing
 *   2. registers the tiles (stitch_register) from the stage positions the
 *      stage reported, measuring the glass colour they captured, and
 *      renders the pyramid (stitch_write) with cells never captured
 *      filled with that glass; the WSI writer produces it under a
 *      temporary name, fsyncs and renames.  A region scan writes only
 *      its region (region_crop), not the frames around it
 *   3. verifies the file (wsi_verify, pixel size included), hashes it, and
 *      records path, size, µm/px and SHA-256 as the slide's current image
 *      in one transaction: the scan is done
 *   4. deletes the tile files unless keep_tiles
 *
 * A crash anywhere before step 3 leaves the scan 'assembling', and the
 * next start assembles it again from the same tiles.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/util.h"
#include "imaging/stitch.h"
#include "storage/tilestore.h"
#include "storage/wsi.h"

struct assembler {
    struct daemon *d;
    pthread_t th;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t *q;                     /* under lock: scans to assemble */
    int n, cap;
    bool quit;
    bool busy;
    struct dconf next;              /* under lock: set by the loop */
    unsigned next_gen;              /* under lock: counts the reloads */
    struct dconf conf;              /* copied from next at each job */
    struct cat *cat;                /* the thread's own */
};

enum { ASM_RECAPTURE = 1 };

struct asm_job {
    struct assembler *a;
    struct cat_scan s;
    struct acq_plan *plan;
    struct cat_tile *tiles;
    int ntiles;
    struct tilestore *ts;
    struct stitch_tile *st;
    int nst;
    struct stitch_placement *pl;
    int out[4];                     /* canvas part in the WSI: x, y, w, h */
    char rel[PATH_MAX], abs[2 * PATH_MAX];
    bool analysis_queued;
    struct ss_err err;
};

static void
post_state(struct asm_job *j, const char *state, const char *reason)
{
    struct dmsg *m = daemon__msg_new(DMSG_EVENT, j->s.id);

    snprintf(m->text, sizeof(m->text), "scan");
    m->ev = daemon__scan_event(j->s.id, j->s.slide, state);
    if (reason != NULL && reason[0] != '\0')
        json_object_set_new(m->ev, "reason", json_string(reason));
    if (strcmp(state, "done") == 0) {
        json_object_set_new(m->ev, "wsi", json_string(j->abs));
        if (j->analysis_queued)
            json_object_set_new(m->ev, "analysis", json_string("queued"));
    }
    daemon__post(j->a->d, m);
}

static int
load_tile(void *ctx, int index, struct img **out, struct ss_err *err)
{
    return tilestore_get(ctx, index, out, err);
}

/* Step 1: every captured tile must be intact. */
static int
check_tiles(struct asm_job *j)
{
    struct ss_err e;
    int i, lost = 0, rc;

    for (i = 0; i < j->ntiles; i++) {
        if (j->tiles[i].state != CAT_T_CAPTURED ||
            tilestore_verify(j->ts, j->tiles[i].idx, j->tiles[i].checksum,
                             &e) == 0)
            continue;
        log_warn("assemble", "tile lost scan=%lld cause=\"%s\"",
                 (long long)j->s.id, e.msg);
        rc = cat_tile_reset(j->a->cat, j->s.id, j->tiles[i].idx, &j->err);
        if (rc < 0)
            return rc;
        lost++;
    }
    if (lost == 0)
        return 0;
    if (cat_scan_transition(j->a->cat, j->s.id, CAT_BIT(CAT_ASSEMBLING),
                            CAT_CAPTURING, "", &j->err) < 0)
        return -EIO;
    cat_event(j->a->cat, -1, "tiles_lost", j->s.id, "recapturing", NULL);
    return ASM_RECAPTURE;
}

/* A region scan's image is its region: the rectangle asked for, in stage
 * µm, as canvas pixels (canvas (0, 0) is the plan's origin; each edge
 * rounded to the nearest pixel, so the size is W/µm-per-px within one
 * pixel).  stitch_write() clips it to the canvas. */
static int
region_crop(struct asm_job *j, struct stitch_input *in)
{
    const struct acq_plan *p = j->plan;
    double r[4];
    long x0, y0;

    if (j->s.region[0] == '\0')
        return 0;
    if (cat_region_parse(j->s.region, r, &j->err) < 0)
        return -EINVAL;
    x0 = lround((r[0] - p->origin_x_um) / p->pixel_um);
    y0 = lround((r[1] - p->origin_y_um) / p->pixel_um);
    in->crop_x_px = (int)x0;
    in->crop_y_px = (int)y0;
    in->crop_w_px = (int)(lround((r[0] + r[2] - p->origin_x_um) /
                                 p->pixel_um) - x0);
    in->crop_h_px = (int)(lround((r[1] + r[3] - p->origin_y_um) /
                                 p->pixel_um) - y0);
    return 0;
}

static int
build_input(struct asm_job *j, struct stitch_input *in)
{
    const struct acq_plan *p = j->plan;
    int i;

    free(j->st);                    /* a second try after waiting */
    j->nst = 0;
    j->st = calloc(j->ntiles > 0 ? (size_t)j->ntiles : 1, sizeof(*j->st));
    if (j->st == NULL)
        return err_set(&j->err, -ENOMEM, "out of memory");
    for (i = 0; i < j->ntiles; i++) {
        const struct cat_tile *t = &j->tiles[i];
        if (t->state != CAT_T_CAPTURED)
            continue;
        j->st[j->nst].index = t->idx;
        j->st[j->nst].row = t->row;
        j->st[j->nst].col = t->col;
        j->st[j->nst].x_px = (t->rx_um - p->origin_x_um) / p->pixel_um;
        j->st[j->nst].y_px = (t->ry_um - p->origin_y_um) / p->pixel_um;
        j->nst++;
    }
    if (j->nst == 0)
        return err_set(&j->err, -ENODATA, "no tile of the scan was "
                       "captured");
    memset(in, 0, sizeof(*in));
    in->frame_w = p->frame_w;
    in->frame_h = p->frame_h;
    in->rows = p->rows;
    in->cols = p->cols;
    in->step_x_px = p->step_x_um / p->pixel_um;
    in->step_y_px = p->step_y_um / p->pixel_um;
    in->max_stage_err_px = j->a->conf.max_stage_err_um / p->pixel_um;
    in->ntiles = j->nst;
    in->tiles = j->st;
    in->load = load_tile;
    in->ctx = j->ts;
    return region_crop(j, in);
}

static void
read_png(struct asm_job *j, const char *name, struct img **out)
{
    char path[PATH_MAX + 64];

    snprintf(path, sizeof(path), "%s/%s", tilestore_scan_dir(j->ts), name);
    if (img_png_read(path, out, NULL) < 0)
        *out = NULL;
}

static void
fill_meta(struct asm_job *j, struct wsi_meta *m)
{
    const struct dconf *c = &j->a->conf;

    wsi_meta_default(m);
    m->mpp = j->plan->pixel_um;
    m->app_mag = atof(c->objective);
    snprintf(m->slide_id, sizeof(m->slide_id), "%s", j->s.slide);
    snprintf(m->stain, sizeof(m->stain), "%s", j->s.stain);
    snprintf(m->scanner, sizeof(m->scanner), "slidescan %s (%s)",
             SLIDESCAN_VERSION, c->simulator ? "simulator" : "hardware");
    m->quality = c->wsi_quality;
    /* Cells never captured get the glass this scan captured, measured
     * from its tiles during registration: the calibration's target white
     * is only what the blank spot reads, and glass under the coverslip
     * elsewhere on the slide may read several levels brighter or bluer.
     * LIMIT: a scan with no tile holding enough near-grey glass (10 % of
     * a tile; tissue edge to edge in every captured cell) falls back to
     * that white, so its uncaptured cells may show as lighter or darker
     * rectangles. */
    if (j->pl != NULL && j->pl->glass_tiles > 0) {
        memcpy(m->background, j->pl->glass, 3);
    } else {
        m->background[0] = m->background[1] = m->background[2] =
            (uint8_t)(c->acq.white > 0 && c->acq.white <= 255
                      ? c->acq.white : 255);
        log_warn("assemble", "no glass in the tiles scan=%lld "
                 "background=%d (calibration white)", (long long)j->s.id,
                 m->background[0]);
    }
}

/* Step 2: registration and the pyramid. */
static int
write_wsi(struct asm_job *j)
{
    struct img *label = NULL, *macro = NULL;
    struct stitch_input in;
    struct wsi_meta meta;
    char dir[2 * PATH_MAX];
    int rc;

    snprintf(j->rel, sizeof(j->rel), "slides/%s/%s-s%lld.svs", j->s.slide,
             j->s.slide, (long long)j->s.id);
    snprintf(j->abs, sizeof(j->abs), "%s/%s", j->a->conf.data_dir, j->rel);
    snprintf(dir, sizeof(dir), "%s/slides/%s", j->a->conf.data_dir,
             j->s.slide);
    stitch_placement_free(j->pl);
    j->pl = NULL;
    rc = tilestore_mkdir_durable(dir, &j->err);
    if (rc == 0)
        rc = build_input(j, &in);
    if (rc == 0)
        rc = stitch_register(&in, &j->pl, &j->err);
    if (rc < 0)
        return err_prefix(&j->err, "stitching");
    stitch_output_rect(&in, j->pl, j->out);
    read_png(j, "label.png", &label);
    read_png(j, "overview.png", &macro);
    fill_meta(j, &meta);
    meta.label = label;
    meta.macro = macro;
    rc = stitch_write(&in, j->pl, &meta, j->abs, &j->err);
    img_free(label);
    img_free(macro);
    if (rc < 0)
        return err_prefix(&j->err, "writing %s", j->abs);
    return 0;
}

/* Step 3: verify, hash, record. */
static int
record_wsi(struct asm_job *j)
{
    char report[2048], hex[65];
    struct cat_wsi w;
    struct ss_err e;
    struct stat st;
    int rc;

    rc = wsi_verify(j->abs, j->plan->pixel_um, report, sizeof(report),
                    &j->err);
    if (rc < 0)
        return err_prefix(&j->err, "verifying %s", j->abs);
    rc = util_sha256_file(j->abs, hex, &j->err);
    if (rc < 0)
        return rc;
    if (stat(j->abs, &st) != 0)
        return err_set(&j->err, -errno, "%s: %s", j->abs, strerror(errno));
    memset(&w, 0, sizeof(w));
    w.path = j->rel;
    w.bytes = st.st_size;
    w.width = j->out[2];
    w.height = j->out[3];
    w.mpp = j->plan->pixel_um;
    w.sha256 = hex;
    w.stitch_rms_px = j->pl->residual_rms_px;
    w.pairs_used = j->pl->pairs_used;
    w.pairs_total = j->pl->pairs_total;
    rc = cat_scan_wsi(j->a->cat, j->s.id, &w, &j->err);
    if (rc == 0 && j->a->conf.auto_analyse) {
        if (cat_analysis_queue(j->a->cat, j->s.id, &e) == 0)
            j->analysis_queued = true;
        else
            log_error("assemble", "analysis not queued scan=%lld "
                      "cause=\"%s\"", (long long)j->s.id, e.msg);
    }
    return rc;
}

/* Takes the [storage] policy of the latest reload: a wait for space
 * follows it from its next check. */
static void
policy_now(struct assembler *a)
{
    pthread_mutex_lock(&a->lock);
    a->conf.space = a->next.space;
    pthread_mutex_unlock(&a->lock);
}

/* Sleeps s seconds, or less when a reload comes or the daemon stops;
 * true when it stops. */
static bool
nap_or_quit(struct assembler *a, double s)
{
    struct timespec until;
    unsigned gen;
    bool quit;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)s;
    until.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->lock);
    gen = a->next_gen;
    while (!a->quit && gen == a->next_gen && rc == 0)
        rc = pthread_cond_timedwait(&a->cond, &a->lock, &until);
    quit = a->quit;
    pthread_mutex_unlock(&a->lock);
    return quit;
}

/* Waits (on this thread) until the disk holds the image and analysis,
 * by the [storage] policy in force at each check.  cause (may be empty)
 * is a write that failed for space: then it waits at least one
 * recheck_s, since the estimate said there was room. */
static int
wait_space(struct asm_job *j, const struct ss_err *cause)
{
    const struct space_policy *sp = &j->a->conf.space;
    const char *dir = j->a->conf.data_dir;
    struct space_need need;
    char reason[SS_ERR_MSG_MAX], now[SS_ERR_MSG_MAX];
    bool told = false, failed = cause->msg[0] != '\0';

    reason[0] = '\0';
    for (;;) {
        policy_now(j->a);
        space_estimate(sp, j->plan, 0, true, &need);
        if (space_check(sp, dir, need.total_bytes, NULL, &j->err) !=
            -ENOSPC && !failed)
            break;
        /* Renewed at each check: the reason shows the space free now. */
        space_full_reason(sp, dir, need.total_bytes, cause, now,
                          sizeof(now));
        if (strcmp(now, reason) != 0) {
            snprintf(reason, sizeof(reason), "%s", now);
            if (!told)
                log_error("assemble", "waiting for space scan=%lld "
                          "cause=\"%s\"", (long long)j->s.id, reason);
            cat_scan_set_reason(j->a->cat, j->s.id, reason, NULL);
            post_state(j, "assembling", reason);
            told = true;
        }
        if (nap_or_quit(j->a, sp->recheck_s))
            return -ESHUTDOWN;
        failed = false;
    }
    if (told)
        cat_scan_set_reason(j->a->cat, j->s.id, "", NULL);
    return 0;
}

static int
assemble(struct asm_job *j, int64_t id)
{
    struct space_need need;
    struct ss_err cause;
    int rc;

    rc = cat_scan_get(j->a->cat, id, &j->s, &j->err);
    if (rc == 0)
        rc = cat_plan_load(j->a->cat, id, &j->plan, &j->err);
    if (rc == 0)
        rc = cat_tiles_load(j->a->cat, id, &j->tiles, &j->ntiles, &j->err);
    if (rc == 0)
        rc = tilestore_open(j->a->conf.data_dir, id, &j->ts, &j->err);
    if (rc == 0)
        rc = check_tiles(j);
    if (rc != 0)
        return rc;
    post_state(j, "assembling", NULL);
    err_clear(&cause);
    for (;;) {
        rc = wait_space(j, &cause);
        if (rc == 0)
            rc = write_wsi(j);
        if (rc == 0 || rc == -ESHUTDOWN)
            break;
        space_estimate(&j->a->conf.space, j->plan, 0, true, &need);
        if (!space_write_full(&j->a->conf.space, j->a->conf.data_dir,
                              need.total_bytes, rc))
            break;
        cause = j->err;
    }
    if (rc == 0)
        rc = record_wsi(j);
    return rc;
}

static void
job_free(struct asm_job *j)
{
    stitch_placement_free(j->pl);
    free(j->st);
    free(j->tiles);
    cat_plan_free(j->plan);
    tilestore_close(j->ts);
}

/* A failed assembly, by the scan's fault policy (drivers/guard.h) for a
 * step outside a tile: a disk that fails to read or write (-EIO,
 * -EROFS) pauses the scan and holds the queue; anything else (damaged
 * data, a stitching or writing error) fails this scan, and the queue goes
 * on.  (A full disk never gets here: assemble() waits for space.) */
static void
give_up(struct asm_job *j, int64_t id, int rc)
{
    struct guard_fault f = { rc, 0, 0, false };
    enum guard_action act = guard_fault_action(&f);
    struct ss_err e;

    if (act == GUARD_ACT_PAUSE &&
        cat_scan_hold(j->a->cat, id, j->err.msg, &e) == 0) {
        log_error("assemble", "paused scan=%lld cause=\"%s\"",
                  (long long)id, j->err.msg);
        post_state(j, "paused", j->err.msg);
        return;
    }
    log_error("assemble", "failed scan=%lld cause=\"%s\"", (long long)id,
              j->err.msg);
    cat_scan_transition(j->a->cat, id, CAT_BIT(CAT_ASSEMBLING), CAT_FAILED,
                        j->err.msg, &e);
    post_state(j, "failed", j->err.msg);
}

static void
run(struct assembler *a, int64_t id)
{
    struct dmsg *m = daemon__msg_new(DMSG_ASSEMBLY_END, id);
    double t0 = util_now_ms();
    struct ss_err e;
    struct asm_job j;
    int rc;

    memset(&j, 0, sizeof(j));
    j.a = a;
    rc = assemble(&j, id);
    if (rc == 0) {
        log_notice("assemble", "done scan=%lld slide=%s wsi=%s w=%d h=%d "
                   "pairs_used=%d rms_px=%.3f wall_s=%.1f", (long long)id,
                   j.s.slide, j.abs, j.out[2], j.out[3],
                   j.pl->pairs_used, j.pl->residual_rms_px,
                   (util_now_ms() - t0) / 1000);
        if (!a->conf.keep_tiles && tilestore_remove_tiles(j.ts, &e) < 0)
            log_warn("assemble", "tiles kept scan=%lld cause=\"%s\"",
                     (long long)id, e.msg);
        post_state(&j, "done", NULL);
    } else if (rc == ASM_RECAPTURE) {
        post_state(&j, "capturing", "tiles lost; recapturing");
        rc = 0;
        m->outcome = ASM_RECAPTURE;
    } else if (rc != -ESHUTDOWN) {
        give_up(&j, id, rc);
    }
    if (rc < 0) {
        m->outcome = rc;
        snprintf(m->text, sizeof(m->text), "%s", j.err.msg);
    }
    job_free(&j);
    daemon__post(a->d, m);
}

static void *
asm_thread(void *arg)
{
    struct assembler *a = arg;
    int64_t id;

    for (;;) {
        pthread_mutex_lock(&a->lock);
        while (!a->quit && a->n == 0)
            pthread_cond_wait(&a->cond, &a->lock);
        if (a->quit) {
            pthread_mutex_unlock(&a->lock);
            break;
        }
        id = a->q[0];
        memmove(a->q, a->q + 1, (size_t)(a->n - 1) * sizeof(*a->q));
        a->n--;
        a->busy = true;
        a->conf = a->next;
        pthread_mutex_unlock(&a->lock);
        run(a, id);
        pthread_mutex_lock(&a->lock);
        a->busy = false;
        pthread_mutex_unlock(&a->lock);
    }
    return NULL;
}

int
daemon__assembler_new(struct daemon *d, struct assembler **out,
                      struct ss_err *err)
{
    struct assembler *a;
    int rc;

    *out = NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    a->d = d;
    a->next = d->conf;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    rc = cat_open(d->db_path, &a->cat, err);
    if (rc == 0 && pthread_create(&a->th, NULL, asm_thread, a) != 0)
        rc = err_set(err, -EAGAIN, "cannot start the assembly thread");
    if (rc < 0) {
        cat_close(a->cat);
        free(a);
        return rc;
    }
    a->started = true;
    *out = a;
    return 0;
}

bool
daemon__assembler_idle(struct assembler *a)
{
    bool idle;

    pthread_mutex_lock(&a->lock);
    idle = !a->busy && a->n == 0;
    pthread_mutex_unlock(&a->lock);
    return idle;
}

void
daemon__assembler_free(struct assembler *a)
{
    bool busy;

    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->quit = true;
    busy = a->busy;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
    if (busy) {
        /* LIMIT: stitch_write() cannot be interrupted; a stop during
         * assembly exits under it (the scan stays 'assembling') and the
         * next start assembles the scan again from the start. */
        log_notice("assemble", "assembly interrupted; it restarts at the "
                   "next start");
        pthread_detach(a->th);
        return;
    }
    if (a->started)
        pthread_join(a->th, NULL);
    cat_close(a->cat);
    free(a->q);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    free(a);
}

void
daemon__assembler_push(struct assembler *a, int64_t scan)
{
    int i;

    pthread_mutex_lock(&a->lock);
    for (i = 0; i < a->n; i++)
        if (a->q[i] == scan)
            break;
    if (i == a->n) {
        if (a->n == a->cap) {
            int cap = a->cap ? a->cap * 2 : 8;
            int64_t *q = realloc(a->q, (size_t)cap * sizeof(*q));
            if (q == NULL)
                abort();
            a->q = q;
            a->cap = cap;
        }
        a->q[a->n++] = scan;
        pthread_cond_signal(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
}

void
daemon__assembler_reconfigure(struct assembler *a, const struct dconf *c)
{
    pthread_mutex_lock(&a->lock);
    a->next = *c;
    a->next_gen++;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}
