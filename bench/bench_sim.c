/* SPDX-License-Identifier: MIT */
/*
 * Frame synthesis speed of the simulated microscope: 2048 × 1536 frames
 * with every effect on (defocus, optics blur, settling, vignetting, shot
 * and read noise), CPU time of one thread, for a phantom and, when the
 * shared data is present, for a real slide through OpenSlide.  Cases:
 *   scan cold   a new field each frame (the source is read or rendered),
 *               dz 0.5 µm, 50 ms settle: a tile of a scan
 *   scan warm   the same field again (the tile cache serves it)
 *   worst cold  a new field each frame, dz 2 µm and settle 0 (the ringing
 *               smear joins the blur kernel): the slowest frames there are
 *   worst warm  dz 2 µm and settle 0, same field
 * Each cold case starts from a fresh microscope (empty caches).  Prints
 * frames/s and the ratio to the goal of 10 frames/s per case, the worst
 * cold case again with the SSE2 loops only (simd = 0, as on a CPU without
 * AVX2), then the slowest case.
 *
 *   bench_sim [FRAMES]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <time.h>

#include "common/img.h"
#include "drivers/sim/sim.h"

#define GOAL_FPS 10.0

struct bcase {
    const char *name;
    bool same_field;
    double dz_um, settle_ms;
    int simd;                       /* sim_config.simd */
};

static const struct bcase cases[] = {
    { "scan cold", false, 0.5, 50, 1 },
    { "scan warm", true, 0.5, 50, 1 },
    { "worst cold", false, 2.0, 0, 1 },
    { "worst warm", true, 2.0, 0, 1 },
};

/* The slowest case again with the SSE2 loops only, as on a CPU without
 * AVX2 (information; frames are the same). */
static const struct bcase sse2_case = { "worst cold", false, 2.0, 0, 0 };

/* CPU time of this thread: the machine may be shared, and the goal is
 * per core. */
static double
cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct microscope *
open_slide(const char *spec, int simd)
{
    struct sim_config c;
    struct microscope *m;
    struct ss_err e;

    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "%s", spec);
    c.simd = simd;
    if (sim_microscope_new(&c, &m, &e) < 0) {
        fprintf(stderr, "bench_sim: %s\n", e.msg);
        exit(1);
    }
    return m;
}

/* Frames/s of one case: frames at fields k = 0, 1, ... (cold) or all at
 * field 0 after one untimed frame there (warm). */
static double
run(const char *spec, const struct bcase *bc, int frames)
{
    struct microscope *m = open_slide(spec, bc->simd);
    struct sim *s = sim_of(m);
    struct sim_geometry g;
    double t0, total = 0, x, y, z;
    struct img *im = NULL;
    struct ss_err e;
    int i;

    sim_geometry_get(s, &g);
    for (i = bc->same_field ? -1 : 0; i < frames; i++) {
        int k = bc->same_field ? 0 : i;

        x = g.image_x_um + fmod(k * 613.0, fmax(1, g.image_w_um - 1024));
        y = g.image_y_um + fmod(k * 419.0, fmax(1, g.image_h_um - 768));
        z = sim_focus_z(s, x + 512, y + 384) + bc->dz_um;
        t0 = cpu_ms();
        if (sim_snap(s, x, y, z, 0, bc->settle_ms, &im, &e) < 0) {
            fprintf(stderr, "bench_sim: %s\n", e.msg);
            exit(1);
        }
        if (i >= 0)
            total += cpu_ms() - t0;
        img_free(im);
    }
    microscope_free(m);
    return frames * 1000.0 / total;
}

/* Runs every case of one slide; returns the slowest frames/s. */
static double
bench_slide(const char *name, const char *spec, int frames)
{
    double fps, slowest = INFINITY;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fps = run(spec, &cases[i], frames);
        printf("sim %-8s %-10s %6.2f frames/s  %5.2fx goal  "
               "(dz %.1f um, settle %.0f ms)\n", name, cases[i].name, fps,
               fps / GOAL_FPS, cases[i].dz_um, cases[i].settle_ms);
        fflush(stdout);
        slowest = fmin(slowest, fps);
    }
    fps = run(spec, &sse2_case, frames);
    printf("# sim %s %s with simd = 0 (SSE2 loops only): %.2f frames/s "
           "(%.2fx goal)\n", name, sse2_case.name, fps, fps / GOAL_FPS);
    return slowest;
}

int
main(int argc, char **argv)
{
    int frames = argc > 1 ? atoi(argv[1]) : 8;
    const char *data = getenv("SLIDESCAN_DATA");
    double slowest;
    char path[4096];

    if (frames < 1)
        frames = 8;
    printf("# simulated camera frame synthesis, 2048x1536, every effect "
           "on, CPU time of one thread, %d frames per case; goal %.0f "
           "frames/s\n", frames, GOAL_FPS);
    slowest = bench_slide("phantom", "phantom:HE:w_mm=5:h_mm=4", frames);
    if (data == NULL)
        data = "../shared/data";
    snprintf(path, sizeof(path), "%s/wsi/CMU-1-Small-Region.svs", data);
    if (access(path, R_OK) == 0)
        slowest = fmin(slowest, bench_slide("CMU-1", path, frames));
    else
        printf("sim CMU-1 skipped: %s not found\n", path);
    printf("sim slowest case %.2f frames/s (%.2fx goal)\n", slowest,
           slowest / GOAL_FPS);
    return 0;
}
