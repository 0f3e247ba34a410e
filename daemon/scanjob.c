/* SPDX-License-Identifier: MIT */
/*
 * The scan thread: runs one scan at a time on the microscope, blocking on
 * its devices, and persists every result before going on, so that a
 * daemon restarted at any moment resumes at the next tile:
 *
 *   calibrating  reuse the newest matching calibration younger than
 *                calib_max_age_h, or take one (acq_calibrate) and save it
 *                under <data_dir>/calib/ before recording it
 *   planning     overview → tile plan; overview and label PNGs, then the
 *                plan rows in the catalogue
 *   focusing     focus points and model in the catalogue; the map used
 *                for capture is always the one refitted from the stored
 *                points, so a resumed scan uses the same surface
 *   capturing    per planned tile: capture, write the tile durably, then
 *                record it (tiles_done) in one transaction
 *
 * Between tiles the thread looks at the request flags the loop sets
 * (pause, cancel, stop).  Device faults follow guard_fault_action().  All
 * the loop learns comes as posted messages (daemon__post).
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/tilestore.h"

enum { JOB_NONE, JOB_SCAN, JOB_CALIB };

/* Calibrations kept in memory by the scan thread. */
#define CALIB_CACHE 6

struct calib_slot {
    int64_t id;
    struct acq_calib *c;
};

/* Published device facts for `devices`, read by the loop under lock. */
struct devinfo {
    bool open;
    char camera[64], stage[64];
    int frame_w, frame_h;
    double pixel_um;
    char objective[8];
    struct stage_limits limits;
    struct guard_counts totals;
    char slide[SIM_SPEC_MAX + 80];
    char error[SS_ERR_MSG_MAX];
};

/* LIMIT: one microscope per daemon: a second instrument needs a second
 * slidescand with its own socket and data directory. */
struct scanner {
    struct daemon *d;
    pthread_t th;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool quit;                      /* under lock */
    int job;                        /* under lock: JOB_* */
    int64_t job_scan;
    int job_stain;
    uint64_t job_client;
    json_int_t job_req;
    struct dconf conf;              /* under lock: for the next job */
    struct devinfo info;            /* under lock */
    bool busy;                      /* loop thread only */
    int64_t busy_scan;              /* loop thread only */

    atomic_int req;                 /* enum scan_request, 0 = none */
    atomic_bool poke;               /* check free space again now */
    bool space_wait;                /* under lock: paused for space */
    uint64_t space_need_bytes;      /* under lock: what it waits for */

    /* The scan thread's own. */
    struct cat *cat;
    struct microscope *m;
    struct hw_config hw_keep;
    struct dconf jc;                /* configuration of the running job */
    bool homed;                     /* the stage was homed */
    struct calib_slot cache[CALIB_CACHE];
    unsigned cache_next;
};

/* What a step returns besides 0 and errors: a request was seen. */
#define JOB_REQ 1

struct job {
    struct scanner *sc;
    const struct dconf *c;
    struct cat_scan s;
    struct acq_profile p;
    struct acq_options o;
    const struct acq_calib *calib;  /* borrowed from the scanner's cache */
    int64_t calib_id;
    struct acq_plan *plan;
    struct acq_focus_map *fm;
    struct tilestore *ts;
    double v0_ms, w0_ms;            /* device and wall clock at the start */
    double base_v_ms;               /* device time of earlier runs */
    double ck_v_ms, ck_w_ms;        /* clocks at the last time record */
    bool timing;                    /* the clocks above are set */
    bool resumed;                   /* started before this run */
    int tiles_done;
    int failed_in_row;
    bool space_waiting;             /* paused for space, no tile since */
    enum guard_action action;       /* for a failed step */
    bool device_wait;
    struct ss_err err;
};

/* ---- talking to the loop ------------------------------------------------- */

static void
post_state(struct job *j, const char *state, const char *reason)
{
    struct dmsg *m = daemon__msg_new(DMSG_EVENT, j->s.id);

    snprintf(m->text, sizeof(m->text), "scan");
    m->ev = daemon__scan_event(j->s.id, j->s.slide, state);
    if (reason != NULL && reason[0] != '\0')
        json_object_set_new(m->ev, "reason", json_string(reason));
    if (j->plan != NULL) {
        json_object_set_new(m->ev, "tiles_done",
                            json_integer(j->tiles_done));
        json_object_set_new(m->ev, "tiles_total",
                            json_integer(j->plan->ntiles));
    }
    daemon__post(j->sc->d, m);
}

static double
job_virtual_s(struct job *j)
{
    return (j->base_v_ms + mic_now_ms(j->sc->m) - j->v0_ms) / 1000.0;
}

/* The device and wall time since the previous call (or the start). */
static void
time_since_record(struct job *j, double *v_ms, double *w_ms)
{
    double v = j->sc->m != NULL ? mic_now_ms(j->sc->m) : j->ck_v_ms;
    double w = util_now_ms();

    *v_ms = v - j->ck_v_ms;
    *w_ms = w - j->ck_w_ms;
    j->ck_v_ms = v;
    j->ck_w_ms = w;
}

/* Adds the time since the previous record to the scan's totals, so that
 * a run killed later still counts it. */
static void
record_time(struct job *j)
{
    struct ss_err e;
    double v, w;

    if (!j->timing)
        return;
    time_since_record(j, &v, &w);
    if (cat_scan_add_time(j->sc->cat, j->s.id, v, w, &e) < 0)
        log_warn("scan", "time not recorded scan=%lld cause=\"%s\"",
                 (long long)j->s.id, e.msg);
}

static void
post_progress(struct job *j, int idx, int flags)
{
    struct dmsg *m = daemon__msg_new(DMSG_EVENT, j->s.id);

    snprintf(m->text, sizeof(m->text), "progress");
    m->ev = json_pack("{s:I, s:s, s:s, s:i, s:i, s:i, s:i, s:f}", "scan",
                      (json_int_t)j->s.id, "slide", j->s.slide, "state",
                      "capturing", "tile", idx, "flags", flags,
                      "tiles_done", j->tiles_done, "tiles_total",
                      j->plan->ntiles, "virtual_s", job_virtual_s(j));
    daemon__post(j->sc->d, m);
}

/* Moves the scan to state `to` (from any active state) and says so. */
static int
enter(struct job *j, enum cat_state to)
{
    int rc;

    if (j->s.state == to && j->s.reason[0] == '\0')
        return 0;
    rc = cat_scan_transition(j->sc->cat, j->s.id, CAT_ACTIVE_MASK |
                             CAT_BIT(CAT_QUEUED), to, "", &j->err);
    if (rc < 0)
        return rc;
    j->s.state = to;
    j->s.reason[0] = '\0';
    post_state(j, cat_state_name(to), NULL);
    log_info("scan", "state scan=%lld slide=%s state=%s", (long long)j->s.id,
             j->s.slide, cat_state_name(to));
    return 0;
}

/* LIMIT: requests are looked at between steps and tiles only; a stop
 * during a long step (calibration, overview, focus map; seconds on the
 * simulator, up to minutes on hardware) waits for that step to end. */
static int
requested(struct job *j)
{
    return atomic_load(&j->sc->req) != 0 ? JOB_REQ : 0;
}

/* Sleeps up to s seconds in short steps: JOB_REQ when a request came,
 * 0 at the end or when the loop asks for a new check of free space (a
 * reload, a resume). */
static int
nap(struct job *j, double s)
{
    struct timespec ts = { 0, 100 * 1000000L };
    int i, n = (int)(s * 10);

    for (i = 0; i < n || i == 0; i++) {
        if (requested(j))
            return JOB_REQ;
        if (atomic_exchange(&j->sc->poke, false))
            return 0;
        nanosleep(&ts, NULL);
    }
    return requested(j);
}

/* ---- preparing ----------------------------------------------------------- */

static void
publish_devices(struct scanner *sc, const char *slide, const char *error)
{
    struct devinfo *in = &sc->info;
    struct microscope *m = sc->m;

    pthread_mutex_lock(&sc->lock);
    in->open = m != NULL;
    if (m != NULL) {
        snprintf(in->camera, sizeof(in->camera), "%s",
                 m->cam != NULL ? m->cam->model : "");
        snprintf(in->stage, sizeof(in->stage), "%s",
                 m->stage != NULL ? m->stage->model : "");
        in->frame_w = m->cam != NULL ? m->cam->frame_w : 0;
        in->frame_h = m->cam != NULL ? m->cam->frame_h : 0;
        in->pixel_um = m->pixel_um;
        snprintf(in->objective, sizeof(in->objective), "%s", m->objective);
        if (m->stage != NULL)
            in->limits = m->stage->limits;
        guard_counts_total(m, &in->totals);
    }
    if (slide != NULL)
        snprintf(in->slide, sizeof(in->slide), "%s", slide);
    snprintf(in->error, sizeof(in->error), "%s", error != NULL ? error : "");
    pthread_mutex_unlock(&sc->lock);
}

/* Opens the devices of a microscope just built (through the guard), each
 * of them even when the other fails, so that guard_probe() later has
 * only the failed one to open again.  The first error is reported. */
static int
open_devices(struct microscope *m, struct ss_err *err)
{
    struct ss_err e2;
    int rc = 0, rc2 = 0;

    if (m->cam != NULL)
        rc = m->cam->ops->open(m->cam, err);
    if (m->stage != NULL)
        rc2 = m->stage->ops->open(m->stage, rc == 0 ? err : &e2);
    return rc != 0 ? rc : rc2;
}

/* Builds the microscope once and keeps it: devices that could not be
 * opened (held by another program, unplugged) are opened again by
 * guard_probe() at the next try, and the stage is homed once they
 * answer. */
static int
ensure_microscope(struct job *j)
{
    struct scanner *sc = j->sc;
    int rc = 0;

    if (sc->m == NULL) {
        rc = daemon__microscope_open(j->c, &sc->hw_keep, &sc->m, &j->err);
        sc->homed = false;
        if (rc == 0 && j->c->simulator)
            rc = open_devices(sc->m, &j->err);
    } else {
        rc = guard_probe(sc->m, &j->err);
    }
    if (rc == 0 && !sc->homed) {
        rc = daemon__microscope_home(sc->m, &j->err);
        sc->homed = rc == 0;
    }
    if (rc < 0) {
        j->device_wait = true;
        publish_devices(sc, NULL, j->err.msg);
        return rc;
    }
    publish_devices(sc, NULL, NULL);
    return 0;
}

static int
load_slide(struct job *j)
{
    char spec[SIM_SPEC_MAX + 80];
    struct sim *sim;
    int rc;

    if (!j->c->simulator)
        return 0;
    sim = sim_of(j->sc->m);
    if (sim == NULL)
        return err_set(&j->err, -EINVAL, "the simulated microscope is not "
                       "a simulator");
    daemon__sim_spec(j->c, &j->s, spec, sizeof(spec));
    rc = sim_load_slide(sim, spec, &j->err);
    if (rc < 0)
        return err_prefix(&j->err, "slide image");
    /* The lamp and filter are settings of the acquisition: the profile's
     * stain chooses them, as when its calibration was taken, whatever
     * stain the slide itself carries. */
    rc = sim_illumination_set(sim, j->p.stain, &j->err);
    if (rc < 0)
        return rc;
    publish_devices(j->sc, spec, NULL);
    log_info("scan", "slide loaded scan=%lld spec=%s", (long long)j->s.id,
             spec);
    return 0;
}

/* Fills in the blank-glass position: configured, or the simulator's. */
static int
blank_position(struct scanner *sc, struct acq_options *o, struct ss_err *err)
{
    struct sim_geometry g;
    struct sim *sim;

    if (o->blank_x_um != 0 || o->blank_y_um != 0)
        return 0;
    sim = sc->jc.simulator ? sim_of(sc->m) : NULL;
    if (sim == NULL)
        return err_set(err, SS_ECONFIG, "[scan] blank_x_um, blank_y_um: "
                       "set a blank-glass position for flat-field frames");
    sim_geometry_get(sim, &g);
    o->blank_x_um = g.blank_x_um;
    o->blank_y_um = g.blank_y_um;
    return 0;
}

static int
prepare(struct job *j, int64_t id)
{
    int i, rc;

    rc = cat_scan_get(j->sc->cat, id, &j->s, &j->err);
    if (rc < 0)
        return rc;
    i = daemon__stain_index(j->s.stain);
    if (i < 0)
        return err_set(&j->err, SS_ECONFIG, "scan %lld: no profile for "
                       "stain '%s'", (long long)id, j->s.stain);
    j->p = j->c->profile[i];
    j->o = j->c->acq;
    j->w0_ms = util_now_ms();
    j->base_v_ms = j->s.virtual_ms;
    j->tiles_done = j->s.tiles_done;
    j->resumed = j->s.state != CAT_QUEUED || j->s.tiles_done > 0;
    /* The scan stays queued in the catalogue until the devices answer:
     * while a camera or stage is missing it waits on the queue with the
     * reason, and no retry flips it through calibrating.  Meanwhile
     * `queue` and `status` show it as the one on the microscope (see
     * daemon__live_scan()). */
    rc = ensure_microscope(j);
    if (rc < 0)
        return rc;
    if (j->s.state == CAT_QUEUED && (rc = enter(j, CAT_CALIBRATING)) < 0)
        return rc;
    j->v0_ms = mic_now_ms(j->sc->m);
    j->ck_v_ms = j->v0_ms;
    j->ck_w_ms = j->w0_ms;
    j->timing = true;
    rc = load_slide(j);
    if (rc == 0)
        rc = blank_position(j->sc, &j->o, &j->err);
    if (rc == 0)
        rc = tilestore_open(j->c->data_dir, id, &j->ts, &j->err);
    return rc;
}

/* ---- calibration --------------------------------------------------------- */

static void
calib_dir(const struct dconf *c, const struct acq_calib *k, char *rel,
          size_t len)
{
    char stamp[24];
    size_t i, n = 0;

    for (i = 0; k->taken_utc[i] != '\0' && n + 1 < sizeof(stamp); i++)
        if (k->taken_utc[i] != ':' && k->taken_utc[i] != '-')
            stamp[n++] = k->taken_utc[i];
    stamp[n] = '\0';
    snprintf(rel, len, "calib/%s-%s-%gms-%s", k->stain, k->objective,
             k->exposure_ms, stamp);
}

/* Keeps c as calibration id in the scanner's cache (it takes c; jobs
 * borrow it), dropping the oldest one kept. */
static const struct acq_calib *
calib_keep(struct scanner *sc, int64_t id, struct acq_calib *c)
{
    struct calib_slot *slot = &sc->cache[sc->cache_next++ % CALIB_CACHE];

    acq_calib_free(slot->c);
    slot->id = id;
    slot->c = c;
    return c;
}

/* The calibration recorded as k, loaded from its directory once and then
 * kept. */
static int
calib_cached(struct scanner *sc, const struct cat_calib *k,
             const struct acq_calib **out, struct ss_err *err)
{
    char abs[PATH_MAX + 4200];
    struct acq_calib *c;
    int i, rc;

    for (i = 0; i < CALIB_CACHE; i++)
        if (sc->cache[i].c != NULL && sc->cache[i].id == k->id) {
            *out = sc->cache[i].c;
            return 0;
        }
    snprintf(abs, sizeof(abs), "%s/%s", sc->jc.data_dir, k->dir);
    rc = acq_calib_load(abs, &c, err);
    if (rc < 0)
        return rc;
    *out = calib_keep(sc, k->id, c);
    return 0;
}

/* Takes a new calibration, saves it durably, records it and keeps it in
 * memory.  A scan resumed after a restart loads the stored one, which is
 * the same to the bit (lossless float TIFF; acq_calib_save() leaves the
 * frames it writes untouched), so its tiles are corrected exactly as
 * before. */
static int
calib_take(struct scanner *sc, const struct acq_profile *p,
           const struct acq_options *o, const struct acq_calib **out,
           int64_t *id, struct ss_err *err)
{
    struct acq_calib *taken = NULL;
    struct cat_calib k;
    char abs[PATH_MAX + 600];
    int rc;

    rc = acq_calibrate(sc->m, p, o, &taken, err);
    if (rc < 0)
        return err_prefix(err, "calibration");
    memset(&k, 0, sizeof(k));
    calib_dir(&sc->jc, taken, k.dir, sizeof(k.dir));
    snprintf(k.stain, sizeof(k.stain), "%s", taken->stain);
    snprintf(k.objective, sizeof(k.objective), "%s", taken->objective);
    k.exposure_ms = taken->exposure_ms;
    snprintf(k.taken, sizeof(k.taken), "%s", taken->taken_utc);
    snprintf(abs, sizeof(abs), "%s/%s", sc->jc.data_dir, k.dir);
    rc = tilestore_mkdir_durable(abs, err);
    if (rc == 0)
        rc = acq_calib_save(taken, abs, err);
    if (rc == 0)
        rc = cat_calib_add(sc->cat, &k, &k.id, err);
    if (rc != 0) {
        acq_calib_free(taken);
        return err_prefix(err, "calibration");
    }
    *out = calib_keep(sc, k.id, taken);
    *id = k.id;
    log_notice("scan", "calibrated id=%lld stain=%s exposure_ms=%g "
               "falloff=%.3f dark=%s dir=%s", (long long)k.id, p->stain,
               p->exposure_ms, (*out)->falloff, (*out)->dark_method, k.dir);
    return 0;
}

/* A recorded calibration that still fits the profile, or -ENOENT. */
static int
calib_reuse(struct scanner *sc, const struct acq_profile *p,
            const struct acq_calib **out, int64_t *id)
{
    struct cat_calib k;

    if (cat_calib_latest(sc->cat, p->stain, p->objective, p->exposure_ms,
                         &k, NULL) < 0 ||
        calib_cached(sc, &k, out, NULL) < 0)
        return -ENOENT;
    if (!acq_calib_matches(*out, p) ||
        acq_calib_is_stale(*out, sc->jc.calib_max_age_h)) {
        *out = NULL;
        return -ENOENT;
    }
    *id = k.id;
    return 0;
}

static json_t *
profile_json(const struct acq_profile *p)
{
    return json_pack("{s:s, s:f, s:f, s:[f, f, f], s:s}", "stain", p->stain,
                     "exposure_ms", p->exposure_ms, "gain", p->gain, "wb",
                     p->wb[0], p->wb[1], p->wb[2], "objective",
                     p->objective);
}

static json_t *
options_json(const struct acq_options *o)
{
    return json_pack("{s:f, s:i, s:f, s:f, s:i, s:f, s:f, s:f, s:f}",
                     "overlap", o->overlap, "calib_frames", o->calib_frames,
                     "settle_ms", o->settle_ms, "backlash_um",
                     o->backlash_um, "max_retakes", o->max_retakes,
                     "sharp_rel_min", o->sharp_rel_min, "blank_x_um",
                     o->blank_x_um, "blank_y_um", o->blank_y_um, "white",
                     o->white);
}

static int
record_profile(struct job *j)
{
    const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER |
                         JSON_REAL_PRECISION(10);
    json_t *pj = profile_json(&j->p), *oj = options_json(&j->o);
    char *prof = json_dumps(pj, flags), *opts = json_dumps(oj, flags);
    int rc;

    rc = cat_scan_set_profile(j->sc->cat, j->s.id, prof, opts, j->calib_id,
                              &j->err);
    json_decref(pj);
    json_decref(oj);
    free(prof);
    free(opts);
    return rc;
}

static int
step_calibrate(struct job *j)
{
    struct cat_calib k;
    int rc;

    if (j->s.calib_id != 0 &&
        cat_calib_get(j->sc->cat, j->s.calib_id, &k, NULL) == 0 &&
        calib_cached(j->sc, &k, &j->calib, NULL) == 0) {
        j->calib_id = k.id;
        return 0;
    }
    if (calib_reuse(j->sc, &j->p, &j->calib, &j->calib_id) < 0) {
        rc = enter(j, CAT_CALIBRATING);
        if (rc == 0)
            rc = calib_take(j->sc, &j->p, &j->o, &j->calib, &j->calib_id,
                            &j->err);
        if (rc < 0)
            return rc;
    }
    return record_profile(j);
}

/* ---- plan and focus ------------------------------------------------------ */

static void
save_png(struct job *j, const struct img *im, const char *name)
{
    char path[PATH_MAX + 64], tmp[PATH_MAX + 80];
    struct ss_err err;

    if (im == NULL)
        return;
    snprintf(path, sizeof(path), "%s/%s", tilestore_scan_dir(j->ts), name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (img_png_write(im, tmp, &err) < 0 ||
        util_commit_file(tmp, path, &err) < 0) {
        unlink(tmp);
        log_warn("scan", "image not kept scan=%lld cause=\"%s\"",
                 (long long)j->s.id, err.msg);
    }
}

/* The scan's region limit, if it has one, into the options. */
static int
scan_region(struct job *j)
{
    double r[4];
    int rc;

    if (j->s.region[0] == '\0')
        return 0;
    rc = cat_region_parse(j->s.region, r, &j->err);
    if (rc < 0)
        return err_prefix(&j->err, "scan %lld", (long long)j->s.id);
    j->o.region_x_um = r[0];
    j->o.region_y_um = r[1];
    j->o.region_w_um = r[2];
    j->o.region_h_um = r[3];
    return 0;
}

/* Tissue the plan leaves out (a region that cuts it, or the end of the
 * stage travel) becomes a warning on the scan that `show` prints. */
static void
warn_outside(struct job *j, double mm2)
{
    char text[160];
    struct ss_err e;

    snprintf(text, sizeof(text), "tissue continues beyond the scanned "
             "region (%.3f mm2 seen on the overview is not scanned)", mm2);
    log_warn("scan", "scan=%lld %s", (long long)j->s.id, text);
    if (cat_scan_add_warning(j->sc->cat, j->s.id, text, &e) < 0)
        log_warn("scan", "warning not recorded scan=%lld cause=\"%s\"",
                 (long long)j->s.id, e.msg);
}

static int
step_plan(struct job *j)
{
    struct img *ov = NULL, *label = NULL;
    struct acq_plan *p = NULL;
    int rc;

    rc = cat_plan_load(j->sc->cat, j->s.id, &j->plan, NULL);
    if (rc == 0)
        return 0;
    rc = enter(j, CAT_PLANNING);
    if (rc == 0)
        rc = scan_region(j);
    if (rc < 0)
        return rc;
    rc = acq_plan_overview(j->sc->m, &j->o, &p, &ov, &label, &j->err);
    if (rc < 0)
        return err_prefix(&j->err, "planning");
    if (p->tissue_outside_mm2 > 0)
        warn_outside(j, p->tissue_outside_mm2);
    save_png(j, ov, "overview.png");
    save_png(j, label, "label.png");
    img_free(ov);
    img_free(label);
    rc = cat_plan_save(j->sc->cat, j->s.id, p, &j->err);
    log_info("scan", "planned scan=%lld tiles=%d cells=%d rows=%d cols=%d",
             (long long)j->s.id, p->ntiles, p->cells_total, p->rows,
             p->cols);
    acq_plan_free(p);
    if (rc == 0)
        rc = cat_plan_load(j->sc->cat, j->s.id, &j->plan, &j->err);
    return rc;
}

static int
step_focus(struct job *j)
{
    struct acq_focus_map *fm = NULL;
    int rc;

    if (cat_focus_load(j->sc->cat, j->s.id, &j->fm, NULL) != 0) {
        rc = enter(j, CAT_FOCUSING);
        if (rc < 0)
            return rc;
        rc = acq_focus_map_build(j->sc->m, &j->p, j->plan, &j->o, &fm,
                                 &j->err);
        if (rc < 0)
            return rc;
        rc = cat_focus_save(j->sc->cat, j->s.id, fm, &j->err);
        log_info("scan", "focus map scan=%lld points=%d model=%d "
                 "rms_um=%.3f captures=%d", (long long)j->s.id, fm->npoints,
                 fm->model, fm->rms_um, fm->captures);
        acq_focus_map_free(fm);
        if (rc < 0)
            return rc;
        rc = cat_focus_load(j->sc->cat, j->s.id, &j->fm, &j->err);
        if (rc < 0)
            return rc;
    }
    return acq_focus_map_fit(j->fm, &j->err);
}

/* ---- waiting for space --------------------------------------------------- */

/* What the rest of the scan needs on disk: from the plan, or before it
 * nothing but the reserve. */
static void
space_need(struct job *j, int tiles_left, struct space_need *need)
{
    struct scanner *sc = j->sc;

    /* The [storage] policy follows a reload even within a scan: the
     * next check, and a scan waiting for space, use it at once. */
    pthread_mutex_lock(&sc->lock);
    sc->jc.space = sc->conf.space;
    pthread_mutex_unlock(&sc->lock);
    if (j->plan != NULL)
        space_estimate(&j->c->space, j->plan, tiles_left, true, need);
    else
        space_estimate_tiles(&j->c->space, 0, 0, 0, need);
}

static int
space_need_check(struct job *j, int tiles_left)
{
    struct space_need need;

    space_need(j, tiles_left, &need);
    return space_check(&j->c->space, j->c->data_dir, need.total_bytes, NULL,
                       &j->err);
}

static bool
short_of_space(struct job *j, int tiles_left)
{
    return space_is_full(space_need_check(j, tiles_left));
}

/* True when a write failed for want of space (libraries report some of
 * these as -EIO). */
static bool
write_full(struct job *j, int tiles_left, int code)
{
    struct space_need need;

    space_need(j, tiles_left, &need);
    return space_write_full(&j->c->space, j->c->data_dir, need.total_bytes,
                            code);
}

/* Tells the loop whether the scan waits for space and for how much, so
 * that `resume` can check again at once and say what is missing. */
static void
publish_space_wait(struct job *j, bool waiting, int tiles_left)
{
    struct space_need need = { 0, 0, 0, 0, 0 };

    if (waiting)
        space_need(j, tiles_left, &need);
    pthread_mutex_lock(&j->sc->lock);
    j->sc->space_wait = waiting;
    j->sc->space_need_bytes = need.total_bytes;
    pthread_mutex_unlock(&j->sc->lock);
}

/* Records the pause for space in the catalogue, with the state the scan
 * leaves: a restart puts it back there, so that the scan resumes by
 * itself as its reason says.  On a disk so full that
 * SQLite cannot write, it fails: the caller tries again at each recheck
 * (clients learn the state from the daemon meanwhile). */
static int
record_pause(struct job *j, const char *reason, int first)
{
    struct ss_err e;
    int rc;

    rc = cat_scan_pause_for_space(j->sc->cat, j->s.id, reason, &e);
    if (rc < 0 && first)
        log_warn("scan", "pause not recorded yet scan=%lld cause=\"%s\"",
                 (long long)j->s.id, e.msg);
    else if (rc == 0 && !first)
        log_notice("scan", "pause recorded scan=%lld", (long long)j->s.id);
    return rc;
}

/* The pause reason with the space free now and what the rest of the
 * scan needs; cause is the write that failed, if one did. */
static void
space_reason(struct job *j, int tiles_left, const struct ss_err *cause,
             char *buf, size_t len)
{
    struct space_need need;

    space_need(j, tiles_left, &need);
    space_full_reason(&j->c->space, j->c->data_dir, need.total_bytes, cause,
                      buf, len);
}

/* Pauses the scan until the disk has room for the rest of it (failed:
 * the error in j->err is a write that failed for space; else the check
 * before a step found too little), checking
 * every recheck_s (at least once, so a write that failed although the
 * estimate said there was room is not retried at once).  The reason is
 * renewed at each check, so it shows the space free now.  On a disk so
 * full that the catalogue itself cannot record the pause, the scan waits
 * all the same.  The pause is logged once per episode: until a tile is
 * stored again. */
static int
wait_for_space(struct job *j, int tiles_left, bool failed)
{
    enum cat_state was = j->s.state;
    char reason[SS_ERR_MSG_MAX], now[SS_ERR_MSG_MAX];
    struct ss_err e, cause = j->err;
    int rc, recorded;

    if (!failed)
        cause.msg[0] = '\0';
    space_reason(j, tiles_left, &cause, reason, sizeof(reason));
    if (!j->space_waiting)
        log_error("scan", "paused for space scan=%lld cause=\"%s\"",
                  (long long)j->s.id, reason);
    j->space_waiting = true;
    post_state(j, "paused", reason);
    recorded = record_pause(j, reason, 1);
    atomic_store(&j->sc->poke, false);
    publish_space_wait(j, true, tiles_left);
    for (;;) {
        /* recheck_s as configured now: a reload may have changed it. */
        rc = nap(j, j->c->space.recheck_s);
        if (rc != 0 || !short_of_space(j, tiles_left))
            break;
        publish_space_wait(j, true, tiles_left);
        space_reason(j, tiles_left, &cause, now, sizeof(now));
        if (strcmp(now, reason) != 0) {
            snprintf(reason, sizeof(reason), "%s", now);
            post_state(j, "paused", reason);
            if (recorded == 0)
                cat_scan_set_reason(j->sc->cat, j->s.id, reason, NULL);
        }
        if (recorded < 0 && recorded != -EALREADY)
            recorded = record_pause(j, reason, 0);
    }
    publish_space_wait(j, false, 0);
    if (recorded == 0 &&
        cat_scan_transition(j->sc->cat, j->s.id, CAT_BIT(CAT_PAUSED), was,
                            "", &e) < 0)
        return err_set(&j->err, -EIO, "%s", e.msg);
    if (rc == 0) {
        log_info("scan", "trying again after a pause for space scan=%lld",
                 (long long)j->s.id);
        post_state(j, cat_state_name(was), NULL);
    }
    return rc;
}

/* ---- capture ------------------------------------------------------------- */

/* Tiles the catalogue counts as captured whose files are gone or damaged
 * (a power cut, a disk error) go back to 'planned'. */
static int
verify_tiles(struct job *j, uint8_t *states)
{
    struct cat_tile *t = NULL;
    struct ss_err e;
    int n = 0, i, lost = 0, rc;

    rc = cat_tiles_load(j->sc->cat, j->s.id, &t, &n, &j->err);
    for (i = 0; rc == 0 && i < n; i++) {
        if (t[i].state != CAT_T_CAPTURED ||
            tilestore_verify(j->ts, t[i].idx, t[i].checksum, &e) == 0)
            continue;
        log_warn("scan", "tile recaptured scan=%lld cause=\"%s\"",
                 (long long)j->s.id, e.msg);
        rc = cat_tile_reset(j->sc->cat, j->s.id, t[i].idx, &j->err);
        if (t[i].idx < j->plan->ntiles)
            states[t[i].idx] = CAT_T_PLANNED;
        lost++;
    }
    free(t);
    if (lost > 0) {
        char detail[64];
        snprintf(detail, sizeof(detail), "%d tiles lost, recapturing", lost);
        cat_event(j->sc->cat, -1, "tiles_lost", j->s.id, detail, NULL);
    }
    return rc;
}

static int
record_tile(struct job *j, int idx, const struct acq_tile_result *r,
            const struct guard_counts *gc, int attempt)
{
    struct cat_tile_rec rec;
    char rel[256], hex[65] = "";
    int rc = 0;

    memset(&rec, 0, sizeof(rec));
    rec.state = r->frame != NULL ? CAT_T_CAPTURED : CAT_T_FAILED;
    if (r->frame != NULL) {
        rc = tilestore_put(j->ts, idx, r->frame, hex, &j->err);
        if (rc < 0)
            return rc;
        tilestore_rel(j->ts, idx, rel, sizeof(rel));
        rec.file = rel;
        rec.checksum = hex;
    }
    rec.x_um = r->x_um;
    rec.y_um = r->y_um;
    rec.z_um = r->z_um;
    rec.z_pred_um = r->z_pred_um;
    rec.sharpness = r->sharpness;
    rec.quality = r->quality;
    rec.sat_frac = r->sat_frac;
    rec.retakes = r->retakes;
    rec.focus_captures = r->focus_captures;
    rec.busy_retries = gc->busy_retries;
    rec.timeouts = gc->timeouts;
    rec.resets = gc->resets;
    rec.attempts = attempt + 1;
    rec.flags = r->flags;
    time_since_record(j, &rec.virtual_ms, &rec.wall_ms);
    return cat_tile_record(j->sc->cat, j->s.id, idx, &rec, &j->err);
}

static void
add_counts(struct guard_counts *sum, const struct guard_counts *c)
{
    sum->busy_retries += c->busy_retries;
    sum->timeouts += c->timeouts;
    sum->resets += c->resets;
}

/* Takes one tile, retrying or failing it as the fault policy says;
 * *flags receives its ACQ_TILE_* flags.  next is the tile planned after
 * it (or -1), which the stage approaches during the readout. */
static int
capture_one(struct job *j, struct acq_session *ses, int i, int next,
            int *flags)
{
    const struct acq_tile *t = &j->plan->tiles[i];
    const struct acq_tile *nt = next >= 0 ? &j->plan->tiles[next] : NULL;
    struct guard_counts gc, sum = { 0, 0, 0, 0 };
    struct acq_tile_result r;
    struct guard_fault f;
    int attempt = 0, rc;

    for (;;) {
        memset(&r, 0, sizeof(r));
        guard_counts_take(j->sc->m, &gc);
        rc = acq_tile_capture_next(ses, j->plan, t, nt, &r, &j->err);
        guard_counts_take(j->sc->m, &gc);
        add_counts(&sum, &gc);
        if (rc == 0) {
            *flags = r.flags;
            rc = record_tile(j, t->index, &r, &sum, attempt);
            acq_tile_result_clear(&r);
            if (rc < 0)
                return rc;
            j->failed_in_row = 0;
            return 0;
        }
        acq_tile_result_clear(&r);
        f.code = rc;
        f.attempt = attempt;
        f.failed_in_row = j->failed_in_row;
        f.in_tile = true;
        j->action = guard_fault_action(&f);
        log_warn("scan", "tile fault scan=%lld tile=%d attempt=%d action=%s "
                 "cause=\"%s\"", (long long)j->s.id, t->index, attempt,
                 guard_action_name(j->action), j->err.msg);
        if (j->action == GUARD_ACT_RETRY_TILE) {
            attempt++;
            continue;
        }
        if (j->action != GUARD_ACT_FAIL_TILE)
            return rc;
        j->failed_in_row++;
        r.x_um = t->x_um;
        r.y_um = t->y_um;
        return record_tile(j, t->index, &r, &sum, attempt);
    }
}

/* The first tile after i still to be captured, or -1. */
static int
next_planned(const struct job *j, const uint8_t *states, int i)
{
    for (i++; i < j->plan->ntiles; i++)
        if (states[i] == CAT_T_PLANNED)
            return i;
    return -1;
}

static int
capture_loop(struct job *j, struct acq_session *ses, uint8_t *states)
{
    int i, rc, left = 0, flags;

    for (i = 0; i < j->plan->ntiles; i++)
        left += states[i] == CAT_T_PLANNED;
    for (i = 0; i < j->plan->ntiles; i++) {
        if (states[i] != CAT_T_PLANNED)
            continue;
        rc = requested(j);
        while (rc == 0 && short_of_space(j, left))
            rc = wait_for_space(j, left, false);
        flags = 0;
        if (rc == 0)
            rc = capture_one(j, ses, i, next_planned(j, states, i),
                             &flags);
        if (rc < 0 && write_full(j, left, rc)) {
            j->action = 0;
            rc = wait_for_space(j, left, true);
            if (rc == 0)
                i--;
            if (rc == 0)
                continue;
        }
        if (rc != 0)
            return rc;
        states[i] = CAT_T_CAPTURED;
        left--;
        j->tiles_done++;
        if (j->space_waiting)
            log_notice("scan", "space freed, resuming scan=%lld",
                       (long long)j->s.id);
        j->space_waiting = false;
        post_progress(j, j->plan->tiles[i].index, flags);
    }
    return 0;
}

static int
step_capture(struct job *j)
{
    struct acq_session *ses = NULL;
    uint8_t *states = NULL;
    int n = 0, rc;

    rc = cat_tile_states(j->sc->cat, j->s.id, &states, &n, &j->err);
    if (rc == 0 && n != j->plan->ntiles)
        rc = err_set(&j->err, SS_EFORMAT, "scan %lld: %d tile states for "
                     "%d planned tiles", (long long)j->s.id, n,
                     j->plan->ntiles);
    if (rc == 0 && j->s.tiles_done > 0)
        rc = verify_tiles(j, states);
    if (rc == 0)
        rc = enter(j, CAT_CAPTURING);
    if (rc == 0)
        rc = cat_scan_get(j->sc->cat, j->s.id, &j->s, &j->err);
    j->tiles_done = j->s.tiles_done;
    if (rc == 0)
        rc = acq_session_open(j->sc->m, &j->p, j->calib, j->fm, &j->o, &ses,
                              &j->err);
    if (rc == 0)
        rc = capture_loop(j, ses, states);
    acq_session_free(ses);
    free(states);
    return rc;
}

/* ---- the job ------------------------------------------------------------- */

/* What to do about a step (calibration, plan, focus map) that failed
 * with rc at its attempt-th try, by the one fault policy of
 * drivers/guard.h: its verdict for a tile says whether the step is worth
 * another try (a missed deadline, a device error, no focus: once; the
 * guard has rebuilt the device meanwhile), whether to wait for the
 * device or for space; past that, its verdict outside a tile decides
 * (a device that failed again pauses the scan and holds the queue,
 * anything else fails the scan and the queue goes on). */
static enum guard_action
step_action(int rc, int attempt)
{
    struct guard_fault f = { rc, attempt, 0, true };
    enum guard_action a = guard_fault_action(&f);

    if (a == GUARD_ACT_RETRY_TILE || a == GUARD_ACT_WAIT_DEVICE ||
        a == GUARD_ACT_WAIT_SPACE)
        return a;
    f.in_tile = false;
    return guard_fault_action(&f);
}

typedef int (*step_fn)(struct job *j);

/* Runs one step under the fault policy; records its time when it
 * succeeds.  Returns 0, JOB_REQ, or the error with j->action set. */
static int
run_step(struct job *j, step_fn fn, const char *name)
{
    int attempt = 0, rc;

    for (;;) {
        rc = fn(j);
        if (rc >= 0) {
            record_time(j);
            return rc;
        }
        if (j->device_wait)
            return rc;
        j->action = step_action(rc, attempt);
        log_warn("scan", "step fault scan=%lld step=%s attempt=%d "
                 "action=%s cause=\"%s\"", (long long)j->s.id, name,
                 attempt, guard_action_name(j->action), j->err.msg);
        if (j->action == GUARD_ACT_WAIT_SPACE)
            rc = wait_for_space(j, j->plan != NULL ? j->plan->ntiles : 0,
                                true);
        else if (j->action == GUARD_ACT_RETRY_TILE)
            rc = requested(j);
        else
            return rc;
        if (rc != 0)
            return rc;
        /* A wait for space is not a try: the step starts afresh. */
        attempt = j->action == GUARD_ACT_WAIT_SPACE ? 0 : attempt + 1;
        j->action = 0;
    }
}

static int
run_steps(struct job *j)
{
    int rc;

    rc = run_step(j, step_calibrate, "calibration");
    if (rc == 0)
        rc = requested(j);
    if (rc == 0)
        rc = run_step(j, step_plan, "plan");
    if (rc == 0)
        rc = requested(j);
    while (rc == 0 && short_of_space(j, j->plan->ntiles))
        rc = wait_for_space(j, j->plan->ntiles, false);
    if (rc == 0)
        rc = run_step(j, step_focus, "focus map");
    if (rc == 0)
        rc = requested(j);
    if (rc == 0)
        rc = step_capture(j);
    return rc;
}

static int
finish_request(struct job *j)
{
    int r = atomic_exchange(&j->sc->req, 0);
    enum cat_state to = r == SCAN_REQ_CANCEL ? CAT_CANCELLED : CAT_PAUSED;

    if (r == SCAN_REQ_STOP) {
        log_notice("scan", "stopped scan=%lld tiles_done=%d; it resumes at "
                   "the next start", (long long)j->s.id, j->tiles_done);
        return SCAN_OUT_STOPPED;
    }
    if (cat_scan_transition(j->sc->cat, j->s.id, CAT_ACTIVE_MASK |
                            CAT_BIT(CAT_QUEUED), to, to == CAT_CANCELLED
                            ? "cancelled by request" : "paused by request",
                            &j->err) < 0)
        log_error("scan", "scan=%lld cause=\"%s\"", (long long)j->s.id,
                  j->err.msg);
    post_state(j, cat_state_name(to), NULL);
    return to == CAT_CANCELLED ? SCAN_OUT_CANCELLED : SCAN_OUT_PAUSED;
}

/* A pause or cancel asked for while the job was failing to start: the
 * scan goes back to the queue to wait, and the request still applies. */
static bool
user_request_pending(struct job *j)
{
    int r = atomic_load(&j->sc->req);

    return r == SCAN_REQ_PAUSE || r == SCAN_REQ_CANCEL;
}

static int
finish_fault(struct job *j, int rc, char *text, size_t len)
{
    struct guard_fault f = { rc, 0, 0, false };
    struct ss_err e;

    snprintf(text, len, "%s", j->err.msg);
    if (j->action == 0 && !j->device_wait)
        j->action = guard_fault_action(&f);
    if (j->action == GUARD_ACT_WAIT_SPACE || space_is_full(rc)) {
        space_reason(j, j->plan != NULL ? j->plan->ntiles - j->tiles_done
                     : 0, &j->err, text, len);
        log_error("scan", "waiting for space scan=%lld cause=\"%s\"",
                  (long long)j->s.id, text);
        cat_scan_set_reason(j->sc->cat, j->s.id, text, &e);
        post_state(j, cat_state_name(j->s.state), text);
        return user_request_pending(j) ? finish_request(j)
                                       : SCAN_OUT_DEVICE_WAIT;
    }
    if (j->device_wait || j->action == GUARD_ACT_WAIT_DEVICE) {
        snprintf(text, len, "waiting for the microscope: %s", j->err.msg);
        log_error("scan", "waiting scan=%lld cause=\"%s\"",
                  (long long)j->s.id, j->err.msg);
        cat_scan_transition(j->sc->cat, j->s.id, CAT_ACTIVE_MASK |
                            CAT_BIT(CAT_QUEUED), CAT_QUEUED, text, &e);
        post_state(j, "queued", text);
        return user_request_pending(j) ? finish_request(j)
                                       : SCAN_OUT_DEVICE_WAIT;
    }
    if (j->action == GUARD_ACT_PAUSE) {
        log_error("scan", "paused scan=%lld cause=\"%s\"",
                  (long long)j->s.id, j->err.msg);
        cat_scan_hold(j->sc->cat, j->s.id, j->err.msg, &e);
        post_state(j, "paused", j->err.msg);
        return SCAN_OUT_HOLD;
    }
    log_error("scan", "failed scan=%lld slide=%s cause=\"%s\"",
              (long long)j->s.id, j->s.slide, j->err.msg);
    cat_scan_transition(j->sc->cat, j->s.id, CAT_ACTIVE_MASK |
                        CAT_BIT(CAT_QUEUED), CAT_FAILED, j->err.msg, &e);
    post_state(j, "failed", j->err.msg);
    return SCAN_OUT_FAILED;
}

static int
finish(struct job *j, int rc, char *text, size_t len)
{
    text[0] = '\0';
    record_time(j);
    if (j->sc->m != NULL)
        publish_devices(j->sc, NULL, NULL);
    if (rc == JOB_REQ)
        return finish_request(j);
    if (rc < 0)
        return finish_fault(j, rc, text, len);
    if (cat_scan_transition(j->sc->cat, j->s.id, CAT_BIT(CAT_CAPTURING),
                            CAT_ASSEMBLING, "", &j->err) < 0)
        return finish_fault(j, -EIO, text, len);
    log_notice("scan", "captured scan=%lld slide=%s tiles=%d virtual_s=%.1f "
               "wall_s=%.1f", (long long)j->s.id, j->s.slide,
               j->plan->ntiles, job_virtual_s(j),
               (util_now_ms() - j->w0_ms) / 1000);
    post_state(j, "assembling", NULL);
    return SCAN_OUT_ASSEMBLE;
}

static void
run_scan(struct scanner *sc, int64_t id)
{
    struct dmsg *m;
    struct job j;
    int rc;

    memset(&j, 0, sizeof(j));
    j.sc = sc;
    j.c = &sc->jc;
    err_clear(&j.err);
    rc = prepare(&j, id);
    if (rc == 0 && j.resumed)
        cat_scan_count_resume(sc->cat, id, NULL);
    if (rc == 0)
        rc = run_steps(&j);
    m = daemon__msg_new(DMSG_SCAN_END, id);
    m->outcome = finish(&j, rc, m->text, sizeof(m->text));
    cat_plan_free(j.plan);
    cat_focus_free(j.fm);
    tilestore_close(j.ts);
    daemon__post(sc->d, m);
}

static void
run_calibration(struct scanner *sc, int stain, uint64_t client,
                json_int_t req)
{
    struct dmsg *m = daemon__msg_new(DMSG_CALIB_END, 0);
    struct acq_profile p = sc->jc.profile[stain];
    struct acq_options o = sc->jc.acq;
    const struct acq_calib *k = NULL;
    struct job j;
    int64_t id = 0;
    int rc;

    memset(&j, 0, sizeof(j));
    j.sc = sc;
    j.c = &sc->jc;
    m->client = client;
    m->req_id = req;
    rc = ensure_microscope(&j);
    /* The simulator's light follows the stain imaged: calibrate under the
     * illumination of this stain, not of the slide it holds. */
    if (rc == 0 && sc->jc.simulator && sim_of(sc->m) != NULL)
        rc = sim_illumination_set(sim_of(sc->m), p.stain, &j.err);
    if (rc == 0)
        rc = blank_position(sc, &o, &j.err);
    if (rc == 0)
        rc = calib_take(sc, &p, &o, &k, &id, &j.err);
    m->outcome = rc;
    if (rc == 0)
        m->ev = json_pack("{s:I, s:s, s:s, s:f, s:s, s:i, s:s, s:f}", "id",
                          (json_int_t)id, "stain", k->stain, "objective",
                          k->objective, "exposure_ms", k->exposure_ms,
                          "taken", k->taken_utc, "frames", k->frames,
                          "dark_method", k->dark_method, "falloff",
                          k->falloff);
    else
        snprintf(m->text, sizeof(m->text), "%s", j.err.msg);
    daemon__post(sc->d, m);
}

static void *
scan_thread(void *arg)
{
    struct scanner *sc = arg;
    int job, stain;
    int64_t scan;
    uint64_t client;
    json_int_t req;

    for (;;) {
        pthread_mutex_lock(&sc->lock);
        while (!sc->quit && sc->job == JOB_NONE)
            pthread_cond_wait(&sc->cond, &sc->lock);
        if (sc->quit) {
            pthread_mutex_unlock(&sc->lock);
            break;
        }
        job = sc->job;
        scan = sc->job_scan;
        stain = sc->job_stain;
        client = sc->job_client;
        req = sc->job_req;
        sc->jc = sc->conf;
        pthread_mutex_unlock(&sc->lock);
        if (sc->m != NULL)
            guard_policy_update(sc->m, &sc->jc.guard);
        if (job == JOB_SCAN)
            run_scan(sc, scan);
        else
            run_calibration(sc, stain, client, req);
        pthread_mutex_lock(&sc->lock);
        sc->job = JOB_NONE;
        pthread_mutex_unlock(&sc->lock);
    }
    microscope_free(sc->m);
    sc->m = NULL;
    for (job = 0; job < CALIB_CACHE; job++)
        acq_calib_free(sc->cache[job].c);
    return NULL;
}

/* ---- the loop's side ----------------------------------------------------- */

int
daemon__scanner_new(struct daemon *d, struct scanner **out,
                    struct ss_err *err)
{
    struct scanner *sc;
    int rc;

    *out = NULL;
    sc = calloc(1, sizeof(*sc));
    if (sc == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    sc->d = d;
    sc->conf = d->conf;
    pthread_mutex_init(&sc->lock, NULL);
    pthread_cond_init(&sc->cond, NULL);
    rc = cat_open(d->db_path, &sc->cat, err);
    if (rc == 0 && pthread_create(&sc->th, NULL, scan_thread, sc) != 0)
        rc = err_set(err, -EAGAIN, "cannot start the scan thread");
    if (rc < 0) {
        cat_close(sc->cat);
        free(sc);
        return rc;
    }
    sc->started = true;
    *out = sc;
    return 0;
}

void
daemon__scanner_free(struct scanner *sc)
{
    int none = 0;

    if (sc == NULL)
        return;
    atomic_compare_exchange_strong(&sc->req, &none, SCAN_REQ_STOP);
    pthread_mutex_lock(&sc->lock);
    sc->quit = true;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
    if (sc->started)
        pthread_join(sc->th, NULL);
    cat_close(sc->cat);
    pthread_mutex_destroy(&sc->lock);
    pthread_cond_destroy(&sc->cond);
    free(sc);
}

bool
daemon__scanner_busy(struct scanner *sc)
{
    return sc->busy;
}

void
daemon__scanner_idle(struct scanner *sc)
{
    sc->busy = false;
    sc->busy_scan = 0;
}

static int
post_job(struct scanner *sc, int job, int64_t scan, int stain,
         uint64_t client, json_int_t req)
{
    if (sc->busy)
        return -EBUSY;
    pthread_mutex_lock(&sc->lock);
    sc->job = job;
    sc->job_scan = scan;
    sc->job_stain = stain;
    sc->job_client = client;
    sc->job_req = req;
    atomic_store(&sc->req, 0);
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
    sc->busy = true;
    sc->busy_scan = scan;
    return 0;
}

int
daemon__scanner_start(struct scanner *sc, int64_t scan)
{
    return post_job(sc, JOB_SCAN, scan, 0, 0, 0);
}

int
daemon__scanner_calibrate(struct scanner *sc, int stain, uint64_t client,
                          json_int_t req_id)
{
    if (stain < 0 || stain >= NSTAINS)
        return -EINVAL;
    return post_job(sc, JOB_CALIB, 0, stain, client, req_id);
}

bool
daemon__scanner_request(struct scanner *sc, int64_t scan,
                        enum scan_request r)
{
    int none = 0;

    if (!sc->busy || (scan != 0 && sc->busy_scan != scan))
        return false;
    /* A stop leaves a pause or cancel already asked for in place: the
     * scan thread acts on it, then ends, as a stop would. */
    if (r == SCAN_REQ_STOP)
        atomic_compare_exchange_strong(&sc->req, &none, (int)r);
    else
        atomic_store(&sc->req, (int)r);
    return true;
}

bool
daemon__scanner_space_wait(struct scanner *sc, int64_t scan,
                           uint64_t *need_bytes)
{
    bool waiting;

    if (!sc->busy || sc->busy_scan != scan)
        return false;
    pthread_mutex_lock(&sc->lock);
    waiting = sc->space_wait;
    *need_bytes = sc->space_need_bytes;
    pthread_mutex_unlock(&sc->lock);
    return waiting;
}

void
daemon__scanner_recheck(struct scanner *sc)
{
    atomic_store(&sc->poke, true);
}

bool
daemon__scanner_withdraw(struct scanner *sc, int64_t scan,
                         enum scan_request r)
{
    int want = (int)r;

    if (!sc->busy || sc->busy_scan != scan)
        return false;
    return atomic_compare_exchange_strong(&sc->req, &want, 0);
}

void
daemon__scanner_reconfigure(struct scanner *sc, const struct dconf *c)
{
    pthread_mutex_lock(&sc->lock);
    sc->conf = *c;
    pthread_mutex_unlock(&sc->lock);
    atomic_store(&sc->poke, true);
}

/* What the configuration asks for, shown before the devices are open. */
static json_t *
configured_json(const struct dconf *c)
{
    static const char *const stages[] = { "none", "sangaboard", "proscan" };
    const struct hw_camera_config *hc = &c->hw.cam;
    double px = c->sim.pixel_um;
    char cam[300];

    if (c->simulator) {
        if (px <= 0)
            px = strcmp(c->objective, "10x") == 0 ? 1.0
                 : strcmp(c->objective, "40x") == 0 ? 0.25 : 0.5;
        return json_pack("{s:s, s:s, s:i, s:i, s:f, s:s}", "camera",
                         "simulated camera", "stage", "simulated stage",
                         "frame_w", c->sim.sensor_w, "frame_h",
                         c->sim.sensor_h, "pixel_um", px, "objective",
                         c->objective);
    }
    snprintf(cam, sizeof(cam), "%s%s%s%s", hc->enabled ? "gphoto2 "
             : "none", hc->enabled ? (hc->model[0] ? hc->model
                                      : "(first found)") : "",
             hc->port[0] ? " on " : "", hc->port);
    return json_pack("{s:s, s:s, s:i, s:i, s:f, s:s}", "camera", cam,
                     "stage", stages[c->hw.stage.dialect <= 2 ?
                                     c->hw.stage.dialect : 0],
                     "frame_w", hc->frame_w, "frame_h", hc->frame_h,
                     "pixel_um", hc->pixel_um, "objective", c->objective);
}

json_t *
daemon__scanner_devices(struct scanner *sc)
{
    struct devinfo in;
    json_t *o;

    pthread_mutex_lock(&sc->lock);
    in = sc->info;
    pthread_mutex_unlock(&sc->lock);
    o = json_pack("{s:s, s:b, s:s, s:s, s:i, s:i, s:f, s:s, s:s, s:s}",
                  "driver", sc->conf.simulator ? "simulator" : "hardware",
                  "open", in.open, "camera", in.camera, "stage", in.stage,
                  "frame_w", in.frame_w, "frame_h", in.frame_h, "pixel_um",
                  in.pixel_um, "objective", in.objective, "slide", in.slide,
                  "error", in.error);
    json_object_set_new(o, "stage_limits_um", json_pack(
        "{s:[f,f,f], s:[f,f,f]}", "min", in.limits.min_um[0],
        in.limits.min_um[1], in.limits.min_um[2], "max", in.limits.max_um[0],
        in.limits.max_um[1], in.limits.max_um[2]));
    json_object_set_new(o, "faults", json_pack(
        "{s:i, s:i, s:i, s:i}", "busy_retries", in.totals.busy_retries,
        "timeouts", in.totals.timeouts, "resets", in.totals.resets,
        "stuck", in.totals.stuck));
    pthread_mutex_lock(&sc->lock);
    json_object_set_new(o, "configured", configured_json(&sc->conf));
    pthread_mutex_unlock(&sc->lock);
    return o;
}
