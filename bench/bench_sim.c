/* SPDX-License-Identifier: MIT */
/*
 * Frame synthesis speed of the simulated microscope: 2048 × 1536 frames
 * with every effect on (defocus, optics blur, settling, vignetting, shot
 * and read noise), CPU time of one thread, for a phantom and, when the
 * shared data is present, for a real slide through OpenSlide.  Cases:
 *   scan cold   a new field each frame (the source is read or rendered),
 *               dz 0.5 µm, 50 ms settle: a tile of a scan
 *   scan warm   the same field again (the tile cache serves it)
 *   worst warm  dz 2 µm and settle 0 (ringing smear), same field
 * Prints frames/s and the ratio to the goal of 10 frames/s.
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

/* CPU time of this thread: the machine may be shared, and the goal is
 * per core. */
static double
cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double
run(struct microscope *m, int frames, bool same_field, double dz_um,
    double settle_ms)
{
    struct sim *s = sim_of(m);
    struct sim_geometry g;
    double t0, total = 0, x, y, z;
    struct img *im = NULL;
    struct ss_err e;
    int i;

    sim_geometry_get(s, &g);
    for (i = 0; i < frames; i++) {
        int k = same_field ? 0 : i;

        x = g.image_x_um + fmod(k * 613.0, fmax(1, g.image_w_um - 1024));
        y = g.image_y_um + fmod(k * 419.0, fmax(1, g.image_h_um - 768));
        z = sim_focus_z(s, x + 512, y + 384) + dz_um;
        if (same_field && i == 0) {
            if (sim_snap(s, x, y, z, 0, settle_ms, &im, &e) < 0)
                goto fail;
            img_free(im);
        }
        t0 = cpu_ms();
        if (sim_snap(s, x, y, z, 0, settle_ms, &im, &e) < 0)
            goto fail;
        total += cpu_ms() - t0;
        img_free(im);
    }
    return frames * 1000.0 / total;
fail:
    fprintf(stderr, "bench_sim: %s\n", e.msg);
    exit(1);
}

static void
bench_slide(const char *name, const char *spec, int frames)
{
    struct sim_config c;
    struct microscope *m;
    struct ss_err e;
    double cold, warm, worst;

    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "%s", spec);
    if (sim_microscope_new(&c, &m, &e) < 0) {
        fprintf(stderr, "bench_sim: %s\n", e.msg);
        exit(1);
    }
    cold = run(m, frames, false, 0.5, 50);
    warm = run(m, frames, true, 0.5, 50);
    worst = run(m, frames, true, 2.0, 0);
    printf("sim %-8s 2048x1536 scan cold %.2f frames/s (%.2fx goal), "
           "scan warm %.2f frames/s (%.2fx goal), worst warm %.2f frames/s "
           "(%.2fx goal)\n", name, cold, cold / GOAL_FPS, warm,
           warm / GOAL_FPS, worst, worst / GOAL_FPS);
    microscope_free(m);
}

int
main(int argc, char **argv)
{
    int frames = argc > 1 ? atoi(argv[1]) : 8;
    const char *data = getenv("SLIDESCAN_DATA");
    char path[4096];

    if (frames < 1)
        frames = 8;
    printf("# simulated camera frame synthesis, CPU time of one thread, all "
           "effects on; goal %.0f frames/s\n", GOAL_FPS);
    bench_slide("phantom", "phantom:HE:w_mm=5:h_mm=4", frames);
    if (data == NULL)
        data = "../shared/data";
    snprintf(path, sizeof(path), "%s/wsi/CMU-1-Small-Region.svs", data);
    if (access(path, R_OK) == 0)
        bench_slide("CMU-1", path, frames);
    else
        printf("sim CMU-1 skipped: %s not found\n", path);
    return 0;
}
