/* SPDX-License-Identifier: MIT */
/*
 * The simulated instrument as a whole: its life (reference counted, so a
 * device replaced by a guard may outlive the microscope), the virtual
 * clock, the slide on the stage and its geometry, the focal surface, and
 * the ground-truth queries tests use.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/rng.h"

void
sim__ref(struct sim *s)
{
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

static void
sim_destroy(struct sim *s)
{
    pthread_rwlock_destroy(&s->srclock);
    sim__source_free(s->src);
    free(s->noise);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    sim__scratch_users(-1);
}

void
sim__unref(struct sim *s)
{
    int left;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left == 0)
        sim_destroy(s);
}

/* The microscope's owner reference: ending it ends the instrument, so a
 * capture hung in a fault returns even if its camera is never closed. */
static void
sim_owner_free(void *owner)
{
    struct sim *s = owner;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->dying = true;
    s->hang_gen++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sim__unref(s);
}

/* ---- clock ------------------------------------------------------------ */

double
sim__advance(struct sim *s, double ms)
{
    if (ms > 0)
        s->now_ms += ms;
    return ms > 0 ? ms * s->cfg.time_scale : 0;
}

void
sim__sleep_real(double ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - ts.tv_sec * 1000.0) * 1e6);
    while (nanosleep(&ts, &ts) != 0)
        ;
}

double
sim_clock_ms(struct sim *s)
{
    double t;

    pthread_mutex_lock(&s->mu);
    t = s->now_ms;
    pthread_mutex_unlock(&s->mu);
    return t;
}

void
sim_clock_advance(struct sim *s, double ms)
{
    double sl;

    pthread_mutex_lock(&s->mu);
    sl = sim__advance(s, ms);
    pthread_mutex_unlock(&s->mu);
    sim__sleep_real(sl);
}

static double
clock_now(void *ctx)
{
    return sim_clock_ms(ctx);
}

static void
clock_sleep(void *ctx, double ms)
{
    sim_clock_advance(ctx, ms);
}

/* ---- geometry and focus ----------------------------------------------- */

static double
objective_pixel_um(const char *obj)
{
    if (strcmp(obj, "10x") == 0)
        return 1.0;
    if (strcmp(obj, "40x") == 0)
        return 0.25;
    return 0.5;
}

/* The standard glass slide, 75 × 25 mm (ISO 8037-1 allows 75-76 ×
 * 25-26 mm). */
#define GLASS_W_UM 75000.0
#define GLASS_H_UM 25000.0

/* Where slide src lies: the glass corner at stage (0, 0), the image one
 * margin in from it, the blank area right of the image.  The travel is
 * the configured one, whatever the slide.  LIMIT: frames beyond the edge
 * of the glass (still within the travel) show glass, not the holder. */
static void
geometry_of(const struct sim_config *c, double pixel_um,
            const struct sim__source *src, struct sim_geometry *g)
{
    double fw = c->sensor_w * pixel_um, fh = c->sensor_h * pixel_um;
    double fw_max = c->sensor_w * fmax(1.0, pixel_um);
    double fh_max = c->sensor_h * fmax(1.0, pixel_um);
    double blank_w = c->blank_w_um > 0 ? c->blank_w_um : fw_max + 400;

    memset(g, 0, sizeof(*g));
    g->pixel_um = pixel_um;
    g->frame_w = c->sensor_w;
    g->frame_h = c->sensor_h;
    if (blank_w < fw + 100)
        blank_w = fw + 100;
    g->image_x_um = c->margin_um;
    g->image_y_um = c->margin_um;
    g->image_w_um = src->w_um;
    g->image_h_um = src->h_um;
    g->source_mpp = src->mpp;
    snprintf(g->stain, sizeof(g->stain), "%s", sim__stain_name(src->stain));
    snprintf(g->slide_id, sizeof(g->slide_id), "%s", src->slide_id);
    g->phantom = src->ph != NULL;
    g->area_w_um = g->image_x_um + g->image_w_um + c->margin_um + blank_w;
    g->area_h_um = fmax(g->image_h_um + 2 * c->margin_um, fh_max + 400);
    g->glass_w_um = fmax(GLASS_W_UM, g->area_w_um);
    g->glass_h_um = fmax(GLASS_H_UM, g->area_h_um);
    g->blank_x_um = g->image_x_um + g->image_w_um + c->margin_um +
                    (blank_w - fw) / 2;
    g->blank_y_um = (g->area_h_um - fh) / 2;
    g->limits.min_um[0] = 0;
    g->limits.min_um[1] = 0;
    g->limits.min_um[2] = c->z_min_um;
    g->limits.max_um[0] = c->travel_x_um;
    g->limits.max_um[1] = c->travel_y_um;
    g->limits.max_um[2] = c->z_max_um;
}

/* The stage must reach the whole specimen area: every frame a scan of the
 * image may take and the blank area. */
static int
geometry_check(const char *spec, const struct sim_geometry *g,
               struct ss_err *err)
{
    if (g->area_w_um <= g->limits.max_um[0] + 1e-6 &&
        g->area_h_um <= g->limits.max_um[1] + 1e-6)
        return 0;
    return err_set(err, SS_ECONFIG, "'%s': the slide needs %.1f x %.1f mm "
                   "of stage travel (image %.1f x %.1f mm with its margins "
                   "and blank area), the stage travels %.1f x %.1f mm "
                   "(travel_x_um, travel_y_um)", spec, g->area_w_um / 1000,
                   g->area_h_um / 1000, g->image_w_um / 1000,
                   g->image_h_um / 1000, g->limits.max_um[0] / 1000,
                   g->limits.max_um[1] / 1000);
}

static double
config_pixel_um(const struct sim_config *c)
{
    return c->pixel_um > 0 ? c->pixel_um : objective_pixel_um(c->objective);
}

int
sim_slide_spec_fit_check(const struct sim_config *c, const char *spec,
                         char *stain, size_t len, struct ss_err *err)
{
    struct sim__source src;
    struct sim_geometry g;
    int rc;

    memset(&src, 0, sizeof(src));
    rc = sim__spec_extent(spec, &src.w_um, &src.h_um, stain, len, err);
    if (rc < 0)
        return rc;
    geometry_of(c, config_pixel_um(c), &src, &g);
    return geometry_check(spec, &g, err);
}

void
sim_geometry_get(struct sim *s, struct sim_geometry *g)
{
    pthread_mutex_lock(&s->mu);
    *g = s->geo;
    pthread_mutex_unlock(&s->mu);
}

/* The focal surface: offset at the image centre, tilt in µm per mm, and
 * a quadratic bow that puts the centre bow_um above the corners. */
double
sim__focus_z(const struct sim *s, double x_um, double y_um)
{
    const struct sim_config *c = &s->cfg;
    const struct sim_geometry *g = &s->geo;
    double hw = fmax(g->image_w_um / 2, 500), hh = fmax(g->image_h_um / 2,
                                                          500);
    double dx = x_um - (g->image_x_um + g->image_w_um / 2);
    double dy = y_um - (g->image_y_um + g->image_h_um / 2);
    double r2 = (dx * dx / (hw * hw) + dy * dy / (hh * hh)) / 2;

    return c->focus_offset_um + c->focus_tilt_x * dx / 1000 +
           c->focus_tilt_y * dy / 1000 - c->focus_bow_um * r2;
}

double
sim_focus_z(struct sim *s, double x_um, double y_um)
{
    double z;

    pthread_mutex_lock(&s->mu);
    z = sim__focus_z(s, x_um, y_um);
    pthread_mutex_unlock(&s->mu);
    return z;
}

void
sim_true_position(struct sim *s, double pos_um[3])
{
    int i;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < 3; i++)
        sim__axis_pos(s, i, s->now_ms, NULL, &pos_um[i]);
    pthread_mutex_unlock(&s->mu);
}

/* ---- slides ----------------------------------------------------------- */

int
sim_load_slide(struct sim *s, const char *spec, struct ss_err *err)
{
    struct sim__source *src = NULL, *old;
    struct sim_geometry g;
    struct sim_config c;
    char mpp[32];
    int rc;

    /* Opening reads the file: not under the lock the devices share. */
    pthread_mutex_lock(&s->mu);
    c = s->cfg;
    pthread_mutex_unlock(&s->mu);
    rc = sim__source_open(spec, &c, &src, err);
    if (rc < 0)
        return rc;
    geometry_of(&c, s->pixel_um, src, &g);
    rc = geometry_check(spec, &g, err);
    if (rc < 0) {
        sim__source_free(src);
        return rc;
    }
    pthread_rwlock_wrlock(&s->srclock);
    pthread_mutex_lock(&s->mu);
    old = s->src;
    s->src = src;
    s->geo = g;
    s->light_stain = src->stain;
    pthread_mutex_unlock(&s->mu);
    pthread_rwlock_unlock(&s->srclock);
    sim__source_free(old);
    if (src->ph != NULL)
        snprintf(mpp, sizeof(mpp), "procedural");
    else
        snprintf(mpp, sizeof(mpp), "%.4f", src->mpp);
    log_info("sim", "slide loaded spec=%s w_um=%.0f h_um=%.0f mpp=%s "
             "stain=%s id=%s blank_um=%.0f,%.0f", spec, src->w_um,
             src->h_um, mpp, sim__stain_name(src->stain), src->slide_id,
             g.blank_x_um, g.blank_y_um);
    return 0;
}

void
sim_glass_rgb(struct sim *s, double t[3])
{
    pthread_rwlock_rdlock(&s->srclock);
    memcpy(t, s->src->glass, 3 * sizeof(double));
    pthread_rwlock_unlock(&s->srclock);
}

/* ---- faults and counters ---------------------------------------------- */

int
sim_fault_set(struct sim *s, const char *spec, struct ss_err *err)
{
    struct sim__fault f[SIM_FAULTS_MAX];
    int n = 0, i;

    if (sim__faults_parse(spec, f, &n, err) < 0)
        return err_prefix(err, "fault");
    pthread_mutex_lock(&s->mu);
    if (s->nfaults + n > SIM_FAULTS_MAX) {
        pthread_mutex_unlock(&s->mu);
        return err_set(err, SS_ECONFIG, "fault: more than %d faults set",
                       SIM_FAULTS_MAX);
    }
    for (i = 0; i < n; i++) {
        f[i].base = s->counters[f[i].counter];
        s->faults[s->nfaults++] = f[i];
        log_notice("sim", "fault set spec=%s", f[i].spec);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void
sim_fault_clear(struct sim *s)
{
    pthread_mutex_lock(&s->mu);
    s->nfaults = 0;
    s->unplugged = false;
    s->hang_gen++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int
sim__fault_take(struct sim *s, enum sim__counter ctr, struct sim__fault *out)
{
    int i;

    for (i = 0; i < s->nfaults; i++) {
        struct sim__fault *f = &s->faults[i];
        long n = s->counters[ctr] - f->base;
        long span = f->type == SIM_F_UNPLUG ? 1 : f->count;

        if (f->counter != ctr)
            continue;
        if (!f->always && (n < f->at || n >= f->at + span))
            continue;
        f->fired++;
        s->faults_fired++;
        *out = *f;
        log_notice("sim", "fault fired spec=%s call=%ld", f->spec, n);
        return f->type;
    }
    return 0;
}

void
sim_counters_get(struct sim *s, struct sim_counters *c)
{
    pthread_mutex_lock(&s->mu);
    c->captures = s->counters[SIM_C_CAPTURE];
    c->previews = s->counters[SIM_C_PREVIEW];
    c->opens = s->counters[SIM_C_OPEN];
    c->moves = s->counters[SIM_C_MOVE];
    c->overviews = s->overviews;
    c->faults_fired = s->faults_fired;
    pthread_mutex_unlock(&s->mu);
}

void
sim_truth_last(struct sim *s, struct sim_truth *t)
{
    pthread_mutex_lock(&s->mu);
    *t = s->truth;
    pthread_mutex_unlock(&s->mu);
}

/* ---- construction ----------------------------------------------------- */

static int
noise_table(struct sim *s)
{
    struct rng r;
    int i;

    s->noise = malloc(SIM_NOISE_N * sizeof(float));
    if (s->noise == NULL)
        return -ENOMEM;
    rng_init(&r, rng_key(s->cfg.seed, 0x4e4f495345ULL, 0, 0));
    for (i = 0; i < SIM_NOISE_N; i++)
        s->noise[i] = (float)rng_gauss(&r);
    return 0;
}

static int
sim_new(const struct sim_config *c, struct sim **out, struct ss_err *err)
{
    struct sim *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return err_set(err, -ENOMEM, "simulator: out of memory");
    sim__scratch_users(1);
    s->cfg = *c;
    s->refs = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_rwlock_init(&s->srclock, NULL);
    s->pixel_um = config_pixel_um(c);
    s->dof_um = c->dof_um > 0 ? c->dof_um : 2.0 * s->pixel_um;
    s->cam.exposure_ms = 250;
    s->cam.gain = 1;
    s->cam.wb[0] = s->cam.wb[1] = s->cam.wb[2] = 1;
    s->lamp = true;
    sim__stage_reset(s);
    if (noise_table(s) < 0) {
        sim_destroy(s);
        return err_set(err, -ENOMEM, "simulator: out of memory");
    }
    rc = sim_load_slide(s, c->slide, err);
    if (rc == 0 && c->faults[0] != '\0')
        rc = sim_fault_set(s, c->faults, err);
    if (rc < 0) {
        sim_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* LIMIT: the objective is fixed for the life of the microscope; changing
 * it means making a new one. */
int
sim_microscope_new(const struct sim_config *c, struct microscope **out,
                   struct ss_err *err)
{
    struct microscope *m;
    struct sim *s = NULL;
    int rc;

    *out = NULL;
    rc = sim_new(c, &s, err);
    if (rc < 0)
        return rc;
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        sim_owner_free(s);
        return err_set(err, -ENOMEM, "simulator: out of memory");
    }
    m->owner = s;
    m->owner_free = sim_owner_free;
    m->cam = sim__camera_make(s);
    m->stage = sim__stage_make(s);
    m->ov = sim__overview_make(s);
    if (m->cam == NULL || m->stage == NULL || m->ov == NULL) {
        microscope_free(m);
        return err_set(err, -ENOMEM, "simulator: out of memory");
    }
    m->clock.now_ms = clock_now;
    m->clock.sleep_ms = clock_sleep;
    m->clock.ctx = s;
    m->pixel_um = s->pixel_um;
    snprintf(m->objective, sizeof(m->objective), "%s", c->objective);
    log_notice("sim", "microscope ready objective=%s pixel_um=%.3f "
               "frame=%dx%d seed=%llu", c->objective, s->pixel_um,
               c->sensor_w, c->sensor_h, (unsigned long long)c->seed);
    *out = m;
    return 0;
}

struct sim *
sim_of(struct microscope *m)
{
    if (m == NULL || m->owner_free != sim_owner_free)
        return NULL;
    return m->owner;
}

int
sim_camera_new(struct sim *s, struct camera **out, struct ss_err *err)
{
    *out = sim__camera_make(s);
    if (*out == NULL)
        return err_set(err, -ENOMEM, "simulator: out of memory");
    return 0;
}

int
sim_stage_new(struct sim *s, struct stage **out, struct ss_err *err)
{
    *out = sim__stage_make(s);
    if (*out == NULL)
        return err_set(err, -ENOMEM, "simulator: out of memory");
    return 0;
}

int
sim_illumination_set(struct sim *s, const char *stain, struct ss_err *err)
{
    int k = sim__stain_parse(stain);

    if (k < 0)
        return err_set(err, -EINVAL, "illumination: stain '%s' is not HE, "
                       "KI67 or CK", stain);
    pthread_mutex_lock(&s->mu);
    s->light_stain = k;
    pthread_mutex_unlock(&s->mu);
    return 0;
}
