/* SPDX-License-Identifier: MIT */
/*
 * The simulated microscope: a camera, an XYZ stage and an overview camera
 * behind the contracts of drivers/camera.h, drivers/stage.h and
 * drivers/microscope.h, looking at a "physical slide" that is a slide or
 * image file (read through storage/slide.h) or a procedural phantom with
 * exact ground truth.  It misbehaves the way real instruments do
 * (defocus, vignetting with colour shading, exposure and clipping, dark
 * offset, shot and read noise, backlash, repeatability error, settling,
 * faults on demand) and reports the truth about each capture, so tests
 * measure errors instead of only finding no crash.
 *
 * Time is virtual: moves, settling, exposure, readout and queries advance
 * the simulator's clock, which is the microscope's devclock; sleep_ms on
 * that clock advances it too.  With time_scale > 0 every advance also
 * sleeps for that fraction of real time, so a demo shows progress.
 *
 * Randomness never depends on history: noise comes from keys (seed, true
 * position, captures since the last move), repeatability errors from
 * (seed, axis, start and target of the move), so a restarted process that
 * repeats a tile's moves and capture gets identical pixels.
 *
 * Coordinates (drivers/stage.h): stage (x, y) in µm is the sample point
 * under the centre of the frame's top-left pixel; frame pixel (u, v) shows
 * (x + u * pixel_um, y + v * pixel_um); image +x is stage +x.  The stage
 * travels a fixed [0, travel_x_um] × [0, travel_y_um] (120 × 80 mm by
 * default), whatever slide is loaded.  The glass slide (75 × 25 mm, larger
 * only for images that need it) lies with its corner at stage (0, 0); the
 * slide's image lies at (image_x_um, image_y_um) (a blank-glass margin of
 * margin_um around it) and a blank-glass area for flat-field frames
 * follows on its right (struct sim_geometry).  z = 0 is the nominal focal
 * plane: the true focal surface lies within a few µm of it (tilt, bow,
 * offset knobs).
 *
 * All functions are safe to call from several threads: camera, stage and
 * these functions share one lock, held only briefly (frames are rendered
 * outside it).
 */
#ifndef SS_DRIVERS_SIM_SIM_H
#define SS_DRIVERS_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/img.h"
#include "drivers/camera.h"
#include "drivers/microscope.h"
#include "drivers/stage.h"

#define SIM_SPEC_MAX 1024
#define SIM_FAULTS_MAX 16

/*
 * Every knob of the simulator, with its INI key in [simulator] (the name
 * after the field's comment) and its default.  sim_config_default() fills
 * the defaults; sim_config_set() sets one from text.
 */
struct sim_config {
    uint64_t seed;              /* seed = 1: every random effect */
    char slide[SIM_SPEC_MAX];   /* slide = phantom:HE: placed at start,
                                   see sim_load_slide() */
    char slide_id[64];          /* slide_id = "" (from the spec): label */
    char stain[16];             /* stain = HE: stain of a file slide
                                   (phantoms carry their own) */

    /* Camera. */
    int sensor_w, sensor_h;     /* sensor_w = 2048, sensor_h = 1536 px */
    char objective[8];          /* objective = 20x: 10x, 20x or 40x */
    double pixel_um;            /* pixel_um = 0: from the objective
                                   (1.0, 0.5, 0.25 µm/px) */
    double light_dn_per_ms[3];  /* light_he = 0.8, light_ki67 = 0.3333,
                                   light_ck = 0.3333: blank-glass signal
                                   above dark at the frame centre, DN per
                                   ms at gain 1, per stain of the slide */
    double lamp_rgb[3];         /* lamp_rgb = 1,1,1: relative channel
                                   response to the lamp */
    double dark_dn;             /* dark_dn = 16: black level, DN */
    double dark_current_dn_s;   /* dark_current_dn_s = 0.5: DN per s */
    double read_noise_dn;       /* read_noise_dn = 1.2: σ, DN */
    double e_per_dn;            /* e_per_dn = 40: electrons per DN at
                                   gain 1 (sets shot noise) */
    double noise_scale;         /* noise_scale = 1: 0 turns noise off */
    double vignette_corner[3];  /* vignette_corner = 0.74,0.70,0.65:
                                   corner / centre gain per channel (one
                                   value sets all three) */
    double readout_ms;          /* readout_ms = 80: readout + transfer of
                                   a full frame */
    int preview_binning;        /* preview_binning = 2: live view is the
                                   sensor binned by this */
    double preview_readout_ms;  /* preview_readout_ms = 15 */

    /* Optics. */
    double dof_um;              /* dof_um = 0: from the objective (2, 1,
                                   0.5 µm for 10x, 20x, 40x); defocus σ
                                   in pixels is |dz| / dof_um */
    double psf_px;              /* psf_px = 0.45: in-focus optical blur σ,
                                   px (diffraction; 0 turns it off) */
    double focus_offset_um;     /* focus_offset_um = 2.0: true surface z
                                   at the image centre */
    double focus_tilt_x;        /* focus_tilt_x = 0.4: µm per mm along x */
    double focus_tilt_y;        /* focus_tilt_y = -0.25: µm per mm, y */
    double focus_bow_um;        /* focus_bow_um = 3: the image centre lies
                                   this much above its corners (quadratic
                                   bow) */

    /* Slide placement and stage travel. */
    double margin_um;           /* margin_um = 1000: glass around image */
    double blank_w_um;          /* blank_w_um = 0: width of the blank area
                                   right of the image; 0 = a 10x frame
                                   width plus 400 µm */
    double travel_x_um;         /* travel_x_um = 120000: stage x travel
                                   from 0, the same for every slide */
    double travel_y_um;         /* travel_y_um = 80000: stage y travel */

    /* Stage (per axis x, y, z; one value sets all three). */
    double speed_um_s[3];       /* speed_um_s = 10000,10000,1000 */
    double accel_um_s2[3];      /* accel_um_s2 = 100000,100000,20000 */
    double backlash_um[3];      /* backlash_um = 5,5,2: dead band; an
                                   approach moving +  is exact, one moving
                                   − leaves the carriage this far above
                                   the command */
    double repeat_sigma_um[3];  /* repeat_sigma_um = 0.5,0.5,0.1 */
    double overshoot_um[3];     /* overshoot_um = 8,8,1: settling
                                   overshoot after a full-speed stop */
    double settle_tau_ms;       /* settle_tau_ms = 10: decay constant */
    double settle_hz;           /* settle_hz = 25: ringing frequency */
    double z_min_um, z_max_um;  /* z_min_um = -500, z_max_um = 500 */
    double query_ms;            /* query_ms = 2: one controller query
                                   (is_busy, get_position, command) */
    double home_ms;             /* home_ms = 3000: homing time */

    /* Overview camera. */
    double overview_um_per_px;  /* overview_um_per_px = 10 */
    double overview_ms;         /* overview_ms = 400: capture time */

    /* Clock and faults. */
    double time_scale;          /* time_scale = 0: real seconds slept per
                                   virtual second (0 = none, 1 = real) */
    char faults[SIM_SPEC_MAX];  /* fault = "": fault specs separated by
                                   ',' or ';' (see sim_fault_set()) */
    size_t cache_mb;            /* cache_mb = 256: source tile cache */
    int render;                 /* render = 1: 0 skips pixel synthesis
                                   (frames are flat blank glass) while
                                   clock, stage and truth run as usual,
                                   for timing studies */
    int simd;                   /* simd = 1: the frame loops use AVX2
                                   when the CPU has it; 0 keeps them to
                                   SSE2.  Frames are the same bits either
                                   way (only the speed differs) */
};

/* Fills every knob with its default (listed in struct sim_config). */
void sim_config_default(struct sim_config *c);

/* Sets one knob from text, as read from the [simulator] section of
 * slidescan.conf; key names are given in struct sim_config.  Per-axis and
 * per-channel keys take one number or three separated by commas; "slide"
 * is checked with sim_slide_spec_check() and "fault" as sim_fault_set()
 * would parse it.  An unknown key or a bad value is SS_ECONFIG and c is
 * left as it was.  The message is the cause only ("unknown key", "'wide'
 * is not a number"): the caller names the key and where it came from, as
 * slidescan.conf's reader does ("FILE:LINE: [simulator] KEY: cause"). */
int sim_config_set(struct sim_config *c, const char *key, const char *value,
                   struct ss_err *err);

struct sim;

/* A microscope (drivers/microscope.h) whose camera, stage and overview
 * camera are simulated and whose clock is the simulator's virtual clock.
 * Loads c->slide and sets c->faults.  Devices start closed and unhomed, at
 * stage (0, 0, 0).  The struct sim lives as long as the microscope or the
 * longest-lived device made by sim_camera_new()/sim_stage_new(). */
int sim_microscope_new(const struct sim_config *c, struct microscope **out,
                       struct ss_err *err);

/* The simulator behind m, or NULL when m is not simulated. */
struct sim *sim_of(struct microscope *m);

/* A fresh camera or stage on the same simulated instrument (same slide,
 * clock, stage state and fault counters), not yet opened: the factory a
 * device guard uses to replace a device after a reset.  Each holds a
 * reference on s. */
int sim_camera_new(struct sim *s, struct camera **out, struct ss_err *err);
int sim_stage_new(struct sim *s, struct stage **out, struct ss_err *err);

/*
 * Checks a slide spec (the forms of sim_load_slide()) without opening
 * anything: the phantom's stain and options, a file spec's @MPP, :stain=
 * and :id= parts.  Whether a file exists and is a slide is only known when
 * it is loaded.  Cheap (no file access, no rendering), so a daemon can
 * refuse a bad spec when a scan is queued.  A bad spec is SS_ECONFIG with
 * one message naming the spec, the cause and the accepted form, e.g.
 *   'phantom:HE:w_mm=0': w_mm '0' is not a number from 0.05 to 60; a
 *   phantom is phantom:HE|KI67|CK[:seed=N][:w_mm=MM][:h_mm=MM][:id=TEXT]
 * sim_load_slide() refuses the same specs with the same message. */
int sim_slide_spec_check(const char *spec, struct ss_err *err);

/* sim_slide_spec_check(), and for a file spec also what only the file can
 * say, as the scan would find it: its path is absolute (a daemon's working
 * directory is not its client's), it exists, is a regular file and opens
 * as a slide with a pixel size (storage/slide.h) and a 16 x 16 sample at
 * the centre of its smallest level and of level 0 decodes.
 * SS_ECONFIG naming the spec, the file and the cause, e.g.
 *   '/data/x.svs': /data/x.svs: no such file
 * (-ENOENT for a missing file), and -EDOM when FILE@MPP is more than
 * SLIDE_MPP_SAME off the pixel size the file states and the spec does not
 * end in ":force_mpp", as sim_load_slide() refuses it:
 *   /data/x.svs states 0.3461 µm/px (openslide); the 0.25 µm/px given
 *   contradicts it; add :force_mpp (FILE@MPP:force_mpp) to use 0.25 µm/px
 *   anyway */
int sim_slide_spec_open_check(const char *spec, struct ss_err *err);

/* sim_slide_spec_open_check(), and whether the slide fits the stage of a
 * simulator configured as c: its specimen area (image, margins, blank
 * area) within travel_x_um x travel_y_um, as sim_load_slide() requires.
 * A slide that does not fit is SS_ECONFIG with sim_load_slide()'s
 * message, e.g.
 *   '/data/lung.png@999': the slide needs 515.9 x 513.5 mm of stage
 *   travel (image ...), the stage travels 120.0 x 80.0 mm (travel_x_um,
 *   travel_y_um)
 * so a daemon can refuse the slide when its scan is queued.  When stain
 * is not NULL it receives the stain the file declares in its metadata
 * (see sim_slide_spec_file_stain()), from the same one opening. */
int sim_slide_spec_fit_check(const struct sim_config *c, const char *spec,
                             char *stain, size_t len, struct ss_err *err);

/* The stain a spec declares: a phantom's own stain ("phantom:KI67") or a
 * file spec's ":stain="; "HE", "KI67" or "CK".  NULL when the spec
 * declares none (a file without ":stain=") or does not parse. */
const char *sim_slide_spec_stain(const char *spec);

/* The stain the FILE of a file spec declares in its own metadata (an
 * Aperio "Stain = KI67", see slide_stain()) into stain, "" when it
 * declares none or spec is a phantom.  Opens the file (a relative path
 * is taken from the working directory): the errors of slide_open(),
 * -ENOENT when it is missing. */
int sim_slide_spec_file_stain(const char *spec, char *stain, size_t len,
                              struct ss_err *err);

/* The length of the FILE part of a file spec (its beginning, before any
 * "@MPP", ":stain=" or ":id="), so that a client can make it absolute and
 * keep the rest as written; 0 for a phantom or a spec that does not
 * parse. */
size_t sim_slide_spec_file_len(const char *spec);

/*
 * Places a physical slide, replacing the previous one:
 *   "FILE"            any slide the slide reader (storage/slide.h)
 *                     opens: OpenSlide formats, OME-TIFF and other tiled
 *                     or stripped TIFFs, PNG, JPEG; µm/px from the file
 *                     (openslide.mpp-x, OME-XML, TIFF resolution)
 *   "FILE@0.5"        the same at the stated µm/px, for files that state
 *                     none or a wrong one
 *   "phantom:HE[:seed=N][:w_mm=4][:h_mm=3]"   procedural H&E, KI67 or CK
 *                     tissue (seed defaults to the config seed, size to
 *                     4 × 3 mm; w_mm and h_mm from 0.05 to 60)
 * File specs may end in ":stain=KI67" and any spec in ":id=S-0042" (the
 * label's slide id).  Errors name the file and the cause: a file that is
 * not a slide, an unsupported TIFF compression, tiles that do not decode
 * (read at load time), a missing pixel size.  The placement on the stage
 * (struct sim_geometry) follows the slide; the stage travel does not.  A
 * slide whose specimen area (image, margins, blank area) does not fit the
 * travel is refused with SS_ECONFIG, and the previous slide stays. */
int sim_load_slide(struct sim *s, const char *spec, struct ss_err *err);

/* Where things are on the stage, for the slide now loaded. */
struct sim_geometry {
    double glass_w_um, glass_h_um;      /* the glass slide spans [0, w] ×
                                           [0, h]: 75 × 25 mm, or the
                                           specimen area if larger */
    double area_w_um, area_h_um;        /* the specimen area [0, w] × [0,
                                           h]: image, margins, blank area;
                                           the overview camera's field */
    double image_x_um, image_y_um;      /* image pixel (0, 0) */
    double image_w_um, image_h_um;
    double source_mpp;                  /* µm per source pixel (level 0);
                                           0 for a phantom (procedural) */
    double blank_x_um, blank_y_um;      /* a frame here sees only glass,
                                           inside the travel */
    double pixel_um;                    /* camera pixel at the sample */
    int frame_w, frame_h;
    char stain[16];                     /* "HE", "KI67", "CK" */
    char slide_id[64];
    bool phantom;
    struct stage_limits limits;         /* stage travel: fixed by
                                           travel_x_um, travel_y_um, z_min_um
                                           and z_max_um, not by the slide */
};

void sim_geometry_get(struct sim *s, struct sim_geometry *g);

/*
 * Fault injection, "TYPE@COUNTER=N[:for=K][:ms=T][:um=V][:axis=x]" or
 * "TYPE@always".  Counters count calls on this instrument from the moment
 * the fault is set (1 = the next call): capture (capture()), preview,
 * open (camera open()), move (move_abs()).
 *   camera_busy@capture=2           SS_EBUSY "camera busy"
 *   camera_busy@always              every capture busy until cleared
 *   capture_timeout@capture=5       SS_ETIMEOUT after readout_ms + 5 s
 *   capture_hang@capture=37         blocks until sim_fault_clear(), the
 *                                   camera's close() or the sim's end,
 *                                   then SS_ECANCELED
 *   camera_unplug@capture=3:for=2   captures and opens fail SS_EGONE for
 *                                   K calls (or :ms=T virtual ms), then
 *                                   the camera is back
 *   camera_held@open=1:for=3        open() fails SS_EHELD (another program
 *                                   holds the camera)
 *   stage_stall@move=4              move_abs() fails SS_ESTALL; the axes
 *                                   stop half way
 *   lost_steps@move=6:um=40         the move ends um short on each moving
 *                                   axis (or :axis=x); the controller
 *                                   reports where it really is
 *   stage_timeout@move=8            move_abs() fails SS_ETIMEOUT after 2 s
 *                                   virtual; the stage does not move
 * "for=K" repeats a fault on K consecutive calls.  Several faults may be
 * set; each call takes at most one (the first set).  A malformed spec is
 * SS_ECONFIG naming the spec and the cause. */
int sim_fault_set(struct sim *s, const char *spec, struct ss_err *err);

/* Removes every fault and releases hung captures. */
void sim_fault_clear(struct sim *s);

/* Calls counted since the sim was made (all, including failed ones). */
struct sim_counters {
    long captures, previews, opens, moves, overviews;
    long faults_fired;
};

void sim_counters_get(struct sim *s, struct sim_counters *c);

/* The truth about the last capture (or preview). */
struct sim_truth {
    double x_um, y_um, z_um;    /* true stage position at exposure (mean
                                   over the exposure) */
    double focus_z_um;          /* true focal surface z at frame centre */
    double dz_um;               /* z_um - focus_z_um */
    double cmd_um[3];           /* last commanded position */
    double reported_um[3];      /* what get_position said at exposure
                                   start */
    double motion_um;           /* RMS displacement during the exposure
                                   (settling or moving) */
    double blur_px;             /* total blur σ (defocus + optics), px */
    double pixel_um;            /* of this frame (preview: binned) */
    double exposure_ms, gain;
    double t_start_ms, t_end_ms;    /* virtual clock */
    double saturated_frac;      /* fraction of samples at 255 */
    bool lamp;
    bool preview;
    int attempt;                /* captures since the last move */
    long index;                 /* capture count, 1 = first */
    int w, h;
};

/* Zeroes t when there was no capture yet. */
void sim_truth_last(struct sim *s, struct sim_truth *t);

/* The true focal surface z (µm) at stage point (x, y). */
double sim_focus_z(struct sim *s, double x_um, double y_um);

/* The true stage position now (with backlash, repeatability error and
 * settling transient), which get_position does not report. */
void sim_true_position(struct sim *s, double pos_um[3]);

/* Virtual time in ms since the sim was made. */
double sim_clock_ms(struct sim *s);

/* Advances the virtual clock (what the microscope's sleep_ms does). */
void sim_clock_advance(struct sim *s, double ms);

/*
 * The ideal image of the sample at stage rectangle (x, y) with w × h pixels
 * of pixel_um: what a perfect scanner would record, no blur, noise,
 * vignetting or exposure error.  Values are 255 × transmittance, so a file
 * slide renders its own pixels (outside the image: the glass colour).
 * Tests compute PSNR against it.  *out is RGB U8, the caller's.
 */
int sim_render_truth(struct sim *s, double x_um, double y_um, int w, int h,
                     double pixel_um, struct img **out, struct ss_err *err);

/* As sim_render_truth(), scaled so that blank glass renders as white_dn:
 * what a flat-field correction that maps glass to white_dn gives. */
int sim_render_truth_white(struct sim *s, double x_um, double y_um, int w,
                           int h, double pixel_um, double white_dn,
                           struct img **out, struct ss_err *err);

/*
 * Selects the illumination of stain (HE, KI67, CK): the lamp's light level
 * (light_he, light_ki67, light_ck) for the exposures that follow, as a
 * lamp and filter setting of the acquisition, whatever slide is on the
 * stage.  Loading a slide selects its own stain's.  slidescand calls it
 * before calibrating a stain on whatever slide the microscope holds, and
 * after loading a scan's slide, with the stain of the scan's profile.
 * -EINVAL for another stain name.
 */
int sim_illumination_set(struct sim *s, const char *stain,
                         struct ss_err *err);

/* Transmittance (0..1) of blank glass per channel. */
void sim_glass_rgb(struct sim *s, double t[3]);

/* Phantom ground-truth labels. */
enum sim_label {
    SIM_LABEL_GLASS = 0,        /* background, glass, gaps */
    SIM_LABEL_TUMOR = 1,
    SIM_LABEL_STROMA = 2,
};

/* The label map (1 channel U8, enum sim_label) of the stage rectangle,
 * sampled at the same points as sim_render_truth().  -ENOTSUP when the
 * slide is not a phantom. */
int sim_render_labels(struct sim *s, double x_um, double y_um, int w, int h,
                      double pixel_um, struct img **out, struct ss_err *err);

/* Ground truth of a phantom over a stage rectangle (µm). */
struct sim_phantom_truth {
    double area_um2[3];         /* by enum sim_label, from labels at the
                                   centres of a 2 µm grid */
    long nuclei[3];             /* nuclei whose centre lies in the
                                   rectangle, by the class at the centre */
    long tumor_pos;             /* DAB-positive tumour nuclei (KI67) */
    double ki67_fraction;       /* tumor_pos / nuclei[TUMOR]; 0 if none */
    double ck_positive_um2;     /* CK-positive area: tumour epithelium */
    double tumor_to_stroma_area_ratio;  /* tumour area / stroma area,
                                           unbounded; 0 without stroma */
    double tumor_fraction;      /* tumour / (tumour + stroma) area, in
                                   [0, 1]; 0 without either.  What the
                                   analysis reports as tumor_stroma_ratio */
};

int sim_phantom_truth(struct sim *s, double x_um, double y_um, double w_um,
                      double h_um, struct sim_phantom_truth *t,
                      struct ss_err *err);

/* Writes the phantom now loaded as an image file: a pyramidal TIFF
 * (".tif", ".tiff", ".svs") or a PNG, at mpp µm/px, covering the image
 * area only; optionally a label PNG (values 0, 1, 2 as enum sim_label)
 * and a truth JSON (areas, nuclei counts, KI67 fraction, CK area).  Any of
 * the three paths may be NULL.  Memory stays bounded by the width. */
int sim_phantom_write(struct sim *s, double mpp, const char *image_path,
                      const char *labels_path, const char *truth_path,
                      struct ss_err *err);

/* One call for tools and tests: a simulated frame at stage (x, y, z) with
 * the given exposure (≤ 0: the stain's default, 250 or 600 ms), after a
 * one-sided approach and settle_ms of settling.  Advances the clock like a
 * real move and capture.  *out is the caller's. */
int sim_snap(struct sim *s, double x_um, double y_um, double z_um,
             double exposure_ms, double settle_ms, struct img **out,
             struct ss_err *err);

#endif
