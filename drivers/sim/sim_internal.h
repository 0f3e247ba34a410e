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

/* A tile is made of 4 × 4 blocks of 64 × 64 samples; block (bx, by) is
 * bit by * 4 + bx of a block mask.  A source may fill only the blocks a
 * render needs (a phantom does: its pixels cost time), and the cache
 * remembers which blocks of each tile are filled. */
#define SIM_BLOCK 64
#define SIM_BLOCKS_ALL 0xffffu

struct sim__source;

struct sim__source_ops {
    /* Fills at least the blocks of mask `blocks` of tile (tx, ty) of a
     * level (or of pitch_um for a phantom), RGB U8 SIM_TILE × SIM_TILE,
     * rows past the image glass; other blocks are left as they are.
     * Returns the mask of the blocks it filled (a superset of blocks) or
     * a negative error. */
    int (*tile)(struct sim__source *src, int level, double pitch_um,
                int tx, int ty, unsigned blocks, uint8_t *rgb,
                struct ss_err *err);
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
    bool wide;                      /* AVX2 loops (sim__simd_wide()) */
    struct sim__phantom *ph;        /* phantom only */
    void *priv;

    /* Tile cache (LRU), shared by all renders of this source. */
    pthread_mutex_t mu;
    struct sim__cache *cache;
};

/* A slide spec taken apart (spec.c); nothing is opened. */
#define SIM_PHANTOM_MIN_MM 0.05     /* phantom w_mm, h_mm */
#define SIM_PHANTOM_MAX_MM 60.0

struct sim__spec {
    bool phantom;
    int stain;                      /* SIM_STAIN_*; -1: the config's */
    char id[64];                    /* "" = the default label */
    /* File slides. */
    char path[SIM_SPEC_MAX];
    double mpp;                     /* stated µm/px; 0 = from the file */
    bool force_mpp;                 /* ":force_mpp": mpp even when it
                                       contradicts the file's own */
    /* Phantoms. */
    uint64_t seed;
    bool has_seed;                  /* else the config's seed */
    double w_mm, h_mm;
};

int sim__spec_parse(const char *spec, struct sim__spec *p,
                    struct ss_err *err);

/* The image extent of a spec, in µm: a phantom's w_mm x h_mm, a file's
 * level-0 size times its pixel size (the file is opened, no pixel is
 * decoded); and, when stain is not NULL, the stain the file declares in
 * its metadata ("" for none or a phantom).  Errors as
 * sim_slide_spec_open_check(). */
int sim__spec_extent(const char *spec, double *w_um, double *h_um,
                     char *stain, size_t len, struct ss_err *err);

int sim__source_open(const char *spec, const struct sim_config *c,
                     struct sim__source **out, struct ss_err *err);
void sim__source_free(struct sim__source *src);

/* Transmittance at points (x0 + i * p, y0 + j * p), image µm, i < w,
 * j < h, into dst (w * h * 3 floats, 0..1, interleaved RGB). */
int sim__source_render(struct sim__source *src, double x0_um, double y0_um,
                       int w, int h, double p_um, float *dst,
                       struct ss_err *err);

/* The same, row by row: rows are asked for in increasing order (any may
 * be skipped), each written to dst (w * 3 floats), so a frame never holds
 * the whole region.  Row values are those of sim__source_render(). */
struct sim__stream;

int sim__stream_open(struct sim__source *src, double x0_um, double y0_um,
                     int w, int h, double p_um, struct sim__stream **out,
                     struct ss_err *err);
int sim__stream_row(struct sim__stream *st, int y, float *dst,
                    struct ss_err *err);
void sim__stream_close(struct sim__stream *st);

int sim__file_open(const char *path, double mpp, bool force_mpp,
                   const struct sim_config *c, struct sim__source **out,
                   struct ss_err *err);

struct slide;

/* The pixel size of a file spec (mpp, 0 for none) against the one the
 * opened file states: -EDOM naming both and how to force it, unless
 * force_mpp or they agree within SLIDE_MPP_SAME (storage/slide.h). */
int sim__spec_mpp_check(const struct slide *sl, double mpp, bool force_mpp,
                        struct ss_err *err);
int sim__phantom_open(const char *spec, const struct sim__spec *p,
                      const struct sim_config *c, struct sim__source **out,
                      struct ss_err *err);

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
 * the next put under the same source lock.  *valid is the tile's mask of
 * filled blocks (0 for a tile just put). */
uint8_t *sim__cache_get(struct sim__cache *c, uint64_t k1, uint64_t k2,
                        unsigned **valid);
uint8_t *sim__cache_put(struct sim__cache *c, uint64_t k1, uint64_t k2,
                        unsigned **valid);
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
/* Parses a list of specs separated by ',' or ';' into f[0..*n) (at most
 * SIM_FAULTS_MAX); f and n may be NULL to only check the list. */
int sim__faults_parse(const char *list, struct sim__fault *f, int *n,
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
    double cam_ready_ms;            /* the sensor's readout ends */
    bool lamp;
    int light_stain;                /* SIM_STAIN_* of the illumination */
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
    bool wide;                      /* AVX2 loops (sim__simd_wide()) */
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

/* A separable filter along one axis: taps (offset in pixels, weight). */
struct sim__kernel {
    int n;
    int off[160];
    float w[160];
};

/* The blur of a shot as one kernel per axis (motion taps convolved with
 * the Gaussian).  Returns false when the shot needs the general path of
 * sim__optics() instead (recursive Gaussian, or a smear too long for one
 * kernel); kx and ky are then unusable. */
bool sim__optics_kernels(const struct sim__shot *sh, struct sim__kernel *kx,
                         struct sim__kernel *ky);
/* One row (row floats) through kx; the first and last samples within the
 * kernel's reach are copied unfiltered. */
void sim__row_filter(const float *in, float *out, size_t row,
                     const struct sim__kernel *k, bool wide);
/* d = sum_t k->w[t] * rows[t] over n floats (rows[t] holds the samples at
 * offset k->off[t]), exactly as sim__optics() mixes rows. */
void sim__mix_kernel(float *d, const float *const *rows,
                     const struct sim__kernel *k, size_t n, bool wide);

/* Four consecutive output rows of the kernel at once: d[k] mixes the
 * rows k + off[t] - off[0] of rows (the kernel's span plus three input
 * rows, consecutive), each exactly as sim__mix_kernel() would. */
void sim__mix_kernel4(float *const *d, const float *const *rows,
                      const struct sim__kernel *k, size_t n, bool wide);
/* Whether sim__mix_kernel4() has a faster path for k than four calls of
 * sim__mix_kernel(). */
bool sim__kernel_blocked(const struct sim__kernel *k);

/* Catmull-Rom taps for n outputs at source coordinates c0 + i * f,
 * clamped to [0, limit): output i mixes k samples from first[i]. */
struct sim__taps {
    int n, k;                       /* outputs, taps per output */
    int *first;
    float *w;
    float *wx;                      /* sim__taps_expand(), or NULL */
    int32_t *idx;                   /* sim__taps_expand() for k != 4:
                                       first source float of each output
                                       float, or NULL */
};

int sim__taps_make(struct sim__taps *t, int n, double c0, double f,
                   int limit);
void sim__taps_free(struct sim__taps *t);
/* Weights per output sample (k rows of n * 3, the three channels of an
 * output alike), so rows with weights varying along them (a step that is
 * not exactly one sample) resample with vectors; with more than four taps
 * (downsampling) also where each output float's samples start, for
 * sim__mix_gather().  Skipped (0, wx stays NULL) when the weights would
 * take over 64 MiB; the scalar loop then resamples. */
int sim__taps_expand(struct sim__taps *t);
/* One source row (interleaved RGB) through the horizontal taps; unit is
 * true for a step of exactly one source sample. */
void sim__resample_row(const struct sim__taps *tx, const float *s, float *m,
                       bool unit, bool wide);

/* Motion smear then defocus blur, in place (margins left unfiltered). */
void sim__optics(float *buf, int w, int h, const struct sim__shot *shot);
/* d = sum_k w[k] * rows[k] over n floats, accumulated in tap order. */
void sim__mix_rows(float *d, const float *const *rows, const float *w,
                   int nk, size_t n, bool wide);

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

/* The same with eight floats, for the loops of loops.h, which simd.c
 * compiles for SSE2 (each vector is then two SSE vectors) and, with GCC
 * on x86-64, a second time for AVX2, chosen at run time by
 * sim__simd_wide().  The helpers take pointers so that no 32-byte vector
 * crosses a function boundary. */
typedef float sim_v8 __attribute__((vector_size(32)));
typedef int32_t sim_v8i __attribute__((vector_size(32)));
typedef int32_t sim_v4i __attribute__((vector_size(16)));
typedef double sim_v4d __attribute__((vector_size(32)));
typedef int64_t sim_v4l __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) void
sim__ld8(sim_v8 *v, const float *p)
{
    memcpy(v, p, sizeof(*v));
}

static inline __attribute__((always_inline)) void
sim__st8(float *p, const sim_v8 *v)
{
    memcpy(p, v, sizeof(*v));
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIM_AVX2 1
#else
#define SIM_AVX2 0
#endif

/* Whether the frame loops should use AVX2: the CPU has it and the
 * configuration allows it (simd = 1). */
bool sim__simd_wide(const struct sim_config *c);

/* Four outputs d[k] = sum_t w[t] * rows[k + t] (nk + 3 input rows,
 * nk >= 4), each in tap order as sim__mix_rows() sums. */
void sim__mix_rows4(float *const *d, const float *const *rows,
                    const float *w, int nk, size_t n, bool wide);

/* d[i] = sum_k w[k][i] * rows[k][i] (a weight per sample), in tap
 * order, over n floats. */
void sim__mix_var(float *d, const float *const *rows, const float *const *w,
                  int nk, size_t n, bool wide);

/* d[i] = sum_k w[k * n + i] * s[idx[i] + 3 * k] (a weight per sample,
 * the samples of output float i gathered from idx[i] on in steps of 3,
 * one pixel of interleaved RGB), in tap order starting from 0, over n
 * floats. */
void sim__mix_gather(float *d, const float *s, const int32_t *idx,
                     const float *w, int nk, size_t n, bool wide);

/* d = w[0] * c + sum_k w[k] * (lo[k] + hi[k]) over n floats. */
void sim__mix_sym(float *d, const float *c, const float *const *lo,
                  const float *const *hi, const float *w, int nk, size_t n,
                  bool wide);

/* The sensor's inputs for one row of samples (interleaved RGB):
 * transmittance t, per-sample constants, this row's normal deviates. */
struct sim__sensor_row {
    const float *scale;             /* DN for T = 1 at the centre */
    const float *cvig;              /* 1 - corner ratio */
    const float *cx;                /* vignetting term of the column */
    const float *kvar;              /* shot-noise variance per DN */
    const float *noise;             /* N(0, 1) × noise scale */
    const float *t;                 /* transmittance */
    float *dn;                      /* 16 floats of scratch */
    float cy;                       /* vignetting term of the row */
    float dark;                     /* dark level, DN */
    float rd2;                      /* read noise variance, DN² */
};

/* Exposes n samples (every array holds n rounded up to 16, the lanes past
 * n are computed and dropped) into 8-bit out; returns how many
 * saturated. */
long sim__sensor_row(const struct sim__sensor_row *r, size_t n,
                     uint8_t *out, bool wide);

/* Beer–Lambert to 8 bits for n pixels of stain amounts in planes h, e,
 * a: per channel c the optical density d = h·m[c][0] + e·m[c][1] +
 * a·m[c][2] (double), its bin (int)(d·scale + 0.5) clamped to
 * [0, nbins), and rgb[3i + c] = lut[c·nbins + bin]. */
/* d[i] = s[i] / 255 (as (float)s[i] * (1.0f / 255)) for n samples. */
void sim__u8_unit(const uint8_t *s, size_t n, float *d, bool wide);

void sim__od_rgb(const float *h, const float *e, const float *a, size_t n,
                 const double m[3][3], double scale, const uint8_t *lut,
                 int nbins, uint8_t *rgb, bool wide);

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
