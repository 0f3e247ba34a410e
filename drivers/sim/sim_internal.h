/* SPDX-License-Identifier: MIT */
/*
 * Folder-internal parts of the simulated microscope: the shared instrument
 * state, the slide sources, the motion model and the frame pipeline.
 * Functions here are named sim__* and are not for other folders.
 */
#ifndef SS_DRIVERS_SIM_INTERNAL_H
#define SS_DRIVERS_SIM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/err.h"
#include "common/img.h"
#include "drivers/sim/sim.h"

enum { SIM_STAIN_HE = 0, SIM_STAIN_KI67 = 1, SIM_STAIN_CK = 2 };

/* ---- slide sources ----------------------------------------------------- */

/*
 * A slide source delivers transmittance on lattices: level l has lattice
 * points (i * pitch_um[l], j * pitch_um[l]) in image µm (0, 0 = image
 * pixel 0, 0), read as U8 tiles of SIM_TILE × SIM_TILE (255 = fully
 * transparent).  A phantom has no fixed levels: it renders any pitch on
 * demand (level < 0, pitch given).  Points outside the image are glass.
 */
#define SIM_TILE 256

struct sim__source;

struct sim__source_ops {
    /* Fills tile (tx, ty) of a level (or of pitch_um for a phantom) as RGB
     * U8 SIM_TILE × SIM_TILE; rows past the image are glass. */
    int (*tile)(struct sim__source *src, int level, double pitch_um,
                int tx, int ty, uint8_t *rgb, struct ss_err *err);
    void (*destroy)(struct sim__source *src);
};

struct sim__phantom;

struct sim__source {
    const struct sim__source_ops *ops;
    char desc[SIM_SPEC_MAX];        /* file path or phantom spec */
    int stain;                      /* SIM_STAIN_* */
    char slide_id[64];
    double w_um, h_um;              /* image extent */
    double mpp;                     /* level-0 pitch */
    int nlevels;                    /* 0 for a phantom */
    double pitch_um[32];
    int64_t level_w[32], level_h[32];   /* lattice points per level */
    double glass[3];                /* transmittance of glass */
    struct sim__phantom *ph;        /* phantom only */
    void *priv;

    /* Tile cache (LRU), shared by all renders of this source. */
    pthread_mutex_t mu;
    struct sim__cache *cache;
};

int sim__source_open(const char *spec, const struct sim_config *c,
                     struct sim__source **out, struct ss_err *err);
void sim__source_free(struct sim__source *src);

/* Transmittance at points (x0 + i * p, y0 + j * p), image µm, i < w,
 * j < h, into dst (w * h * 3 floats, 0..1, interleaved RGB). */
int sim__source_render(struct sim__source *src, double x0_um, double y0_um,
                       int w, int h, double p_um, float *dst,
                       struct ss_err *err);

int sim__file_open(const char *path, double mpp, const struct sim_config *c,
                   struct sim__source **out, struct ss_err *err);
int sim__phantom_open(const char *spec, const struct sim_config *c,
                      struct sim__source **out, struct ss_err *err);

/* Phantom label at image point (x, y) µm. */
int sim__phantom_label(const struct sim__phantom *ph, double x_um,
                       double y_um);
int sim__phantom_labels(const struct sim__phantom *ph, double x0, double y0,
                        int w, int h, double p, uint8_t *out);
int sim__phantom_truth(const struct sim__phantom *ph, double x0, double y0,
                       double w, double h, struct sim_phantom_truth *t);

struct sim__cache *sim__cache_new(size_t bytes);
void sim__cache_free(struct sim__cache *c);
/* Returns the cached tile for key or NULL; the pointer stays valid until
 * the next put under the same source lock. */
uint8_t *sim__cache_get(struct sim__cache *c, uint64_t k1, uint64_t k2);
uint8_t *sim__cache_put(struct sim__cache *c, uint64_t k1, uint64_t k2);
void sim__cache_drop(struct sim__cache *c, uint64_t k1, uint64_t k2);

/* ---- stage ------------------------------------------------------------- */

/*
 * One axis: a screw (what the controller counts) driving a carriage
 * through a dead band of `backlash` µm: the carriage stays within
 * [screw, screw + backlash].  A move runs a trapezoidal profile from
 * s_from at ts to s_to at te; afterwards the carriage rings (amp, decaying)
 * and carries the repeatability error of the move.
 */
struct sim__axis {
    double s_from, s_to;            /* screw (commanded) move */
    double c_start;                 /* carriage at move start */
    double ts, te;                  /* move start and stop, virtual ms */
    double ta, tc;                  /* accelerating, cruising time, ms */
    double acc, vpk;                /* µm/ms², µm/ms */
    double rep_from, rep_err;       /* repeatability error before/after */
    double amp;                     /* peak settling overshoot, signed */
};

/* ---- faults ------------------------------------------------------------ */

enum sim__fault_type {
    SIM_F_BUSY = 1, SIM_F_TIMEOUT, SIM_F_HANG, SIM_F_UNPLUG, SIM_F_HELD,
    SIM_F_STALL, SIM_F_LOST, SIM_F_STAGE_TIMEOUT,
};

enum sim__counter { SIM_C_CAPTURE, SIM_C_PREVIEW, SIM_C_OPEN, SIM_C_MOVE,
                    SIM_C_N };

struct sim__fault {
    enum sim__fault_type type;
    enum sim__counter counter;
    bool always;
    long at;                        /* counter value that fires it */
    long count;                     /* calls it lasts (for=) */
    double ms;                      /* unplug duration, virtual ms */
    double um;                      /* lost steps */
    int axis;                       /* -1: every moving axis */
    long base;                      /* counter value when set */
    long fired;                     /* calls taken so far */
    double until_ms;                /* unplugged until (ms mode) */
    char spec[96];
};

int sim__fault_parse(const char *spec, struct sim__fault *f,
                     struct ss_err *err);

/* ---- the instrument ---------------------------------------------------- */

struct sim {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_rwlock_t srclock;       /* held for reading while rendering */
    int refs;
    bool dying;
    unsigned hang_gen;              /* bumped to release hung captures */

    struct sim_config cfg;
    struct sim__source *src;
    double pixel_um, dof_um;
    struct sim_geometry geo;

    double now_ms;                  /* virtual clock */

    /* Stage. */
    struct sim__axis ax[3];
    bool homed;
    int attempt;                    /* captures since the last move */

    /* Camera. */
    struct cam_settings cam;
    bool lamp;
    bool unplugged;
    double unplug_until_ms;
    long unplug_calls;              /* failing calls left (for= mode) */

    long counters[SIM_C_N];
    long overviews, faults_fired;
    struct sim__fault faults[SIM_FAULTS_MAX];
    int nfaults;

    struct sim_truth truth;

    float *noise;                   /* N(0, 1) table, SIM_NOISE_N */
};

#define SIM_NOISE_N (1 << 17)

void sim__ref(struct sim *s);
void sim__unref(struct sim *s);

/* Advances the clock; the caller holds s->mu.  Returns the real time to
 * sleep (time_scale), to be slept after unlocking. */
double sim__advance(struct sim *s, double ms);
void sim__sleep_real(double ms);

/* Stage model, s->mu held. */
void sim__axis_pos(const struct sim *s, int a, double t, double *reported,
                   double *truth);
void sim__stage_reset(struct sim *s);
double sim__move_end(const struct sim *s);
struct stage *sim__stage_make(struct sim *s);
struct camera *sim__camera_make(struct sim *s);
struct overview *sim__overview_make(struct sim *s);

/* Takes the fault for the next call on counter, if any (s->mu held);
 * returns the fault's type or 0, and copies the fault into *f. */
int sim__fault_take(struct sim *s, enum sim__counter ctr,
                    struct sim__fault *f);

/* Geometry after a slide or objective change (s->mu held). */
void sim__geometry_update(struct sim *s);
double sim__focus_z(const struct sim *s, double x_um, double y_um);

/* Frame synthesis. */
struct sim__shot {
    int w, h;                       /* output pixels */
    double pixel_um;
    double x_um, y_um;              /* true mean position (top-left px) */
    double blur_px;                 /* Gaussian σ, px */
    int ntaps[2];                   /* motion PSF taps (x, y) */
    int tap_off[2][64];
    float tap_w[2][64];
    double scale[3];                /* DN for T = 1 at the centre */
    double gain_rgb[3];             /* analogue gain × wb per channel */
    double dark_dn;
    double noise_mul;               /* noise_scale / binning */
    bool lamp;
    uint64_t noise_key;
};

int sim__shoot(struct sim *s, struct sim__source *src,
               const struct sim__shot *shot, struct img **out,
               double *saturated_frac, struct ss_err *err);

/* Reusable large buffers (optics.c); users count live simulators so the
 * pool is emptied when the last one ends. */
void *sim__scratch(size_t bytes);
void sim__scratch_free(void *p);
void sim__scratch_users(int delta);

/* Image helpers (optics.c). */
/* Motion smear then defocus blur, in place (margins left unfiltered). */
void sim__optics(float *buf, int w, int h, const struct sim__shot *shot);
int sim__resample(const float *src, int sw, int sh, double x0, double y0,
                  double step, float *dst, int dw, int dh);

/* The slide label: id, stain, maker (camera.c). */
struct img *sim__label_render(const struct sim__source *src);

/* Text (font.c): draws s with 5×7 glyphs scaled by k at (x, y). */
void sim__text(struct img *im, int x, int y, int k, const char *s,
               const uint8_t rgb[3]);

/* Four floats at a time through GCC/Clang vector extensions: the hot
 * loops then vectorise at -O2 without target flags.  Loads and stores go
 * through memcpy, so no alignment is assumed. */
typedef float sim_v4 __attribute__((vector_size(16)));

static inline sim_v4
sim__ld(const float *p)
{
    sim_v4 v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void
sim__st(float *p, sim_v4 v)
{
    memcpy(p, &v, sizeof(v));
}

static inline sim_v4
sim__splat(float f)
{
    sim_v4 v = { f, f, f, f };

    return v;
}

/* Hash helpers. */
static inline double
sim__u01(uint64_t h)
{
    return (h >> 11) * (1.0 / 9007199254740992.0);
}

/* Stain of a name, or -1. */
int sim__stain_parse(const char *name);
const char *sim__stain_name(int stain);

#endif
