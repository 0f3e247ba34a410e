/* SPDX-License-Identifier: MIT */
/*
 * Analysis throughput: a phantom H&E section (default 15 × 15 mm) is
 * written as a 20x pyramidal TIFF (0.5 µm/px) first, then analysed end to
 * end with the default model (reading, tissue detection, tiled CNN,
 * biomarkers, every output file).  Prints the time, mm² of slide per
 * minute and level-0 and model-resolution megapixels per second, and the
 * CNN's own rate on one tile for comparison with the engine's benchmark.
 *
 *   bench_analysis [SIZE_MM] [MODEL]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/util.h"
#include "drivers/sim/sim.h"
#include "worker/analysis/analysis.h"

static int
write_phantom(double mm, const char *path, struct ss_err *err)
{
    struct sim_config c;
    struct microscope *m;
    int rc;

    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "phantom:HE:seed=7:w_mm=%g:h_mm=%g",
             mm, mm);
    rc = sim_microscope_new(&c, &m, err);
    if (rc == 0)
        rc = sim_phantom_write(sim_of(m), 0.5, path, NULL, NULL, err);
    microscope_free(m);
    return rc;
}

/* CPU seconds (user + system) of this process so far. */
static double
cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Model-resolution rate of bare prediction on one 320 px tile. */
static double
tile_rate(struct an_model *m)
{
    int n = m->tile_px + 2 * m->margin_px, i, reps = 5;
    struct img *in = img_new(n, n, 3, IMG_U8);
    struct img *lg = img_new(n, n, AN_NCLASS, IMG_F32);
    struct ss_err e;
    double t0;

    memset(in->data, 180, img_bytes(in));
    m->ops->predict(m, in, lg, &e);
    t0 = util_now_ms();
    for (i = 0; i < reps; i++)
        m->ops->predict(m, in, lg, &e);
    img_free(in);
    img_free(lg);
    return (double)n * n * reps / ((util_now_ms() - t0) * 1e3);
}

int
main(int argc, char **argv)
{
    double mm = argc > 1 ? atof(argv[1]) : 15.0, t0, secs, w_secs, cpu0;
    double load[3] = { 0, 0, 0 };
    const char *model = argc > 2 ? argv[2] : NULL;
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char path[1024], out[1024];
    struct an_results r;
    struct an_model *m;
    struct an_job j;
    struct ss_err e;
    double l0_mp = pow(mm * 1000 / 0.5, 2) / 1e6;

    snprintf(path, sizeof(path), "%s/bench-analysis-%d.tif", tmp,
             (int)getpid());
    snprintf(out, sizeof(out), "%s.out", path);
    t0 = util_now_ms();
    if (write_phantom(mm, path, &e) < 0) {
        fprintf(stderr, "bench_analysis: %s\n", e.msg);
        return 1;
    }
    w_secs = (util_now_ms() - t0) / 1e3;
    an_job_default(&j);
    j.wsi = path;
    j.out_dir = out;
    j.model = model;
    t0 = util_now_ms();
    cpu0 = cpu_seconds();
    if (an_analyse(&j, &r, &e) < 0) {
        fprintf(stderr, "bench_analysis: %s\n", e.msg);
        unlink(path);
        return 1;
    }
    secs = (util_now_ms() - t0) / 1e3;
    getloadavg(load, 3);
    printf("analysis %gx%g mm phantom at 20x (%.0f MP level 0), "
           "written in %.1f s\n", mm, mm, l0_mp, w_secs);
    printf("  model %s at %.2f µm/px: %.1f s wall (limit 600 s), %.1f s "
           "CPU, load average %.1f\n", r.model, r.analysis_mpp, secs,
           cpu_seconds() - cpu0, load[0]);
    printf("  throughput %.1f mm²/min, %.2f MP/s level 0, %.2f MP/s at "
           "the model's resolution\n", mm * mm / (secs / 60), l0_mp / secs,
           l0_mp * pow(0.5 / r.analysis_mpp, 2) / secs);
    printf("  tissue %.2f mm², tumour %.2f mm², stroma %.2f mm²\n",
           r.tissue_area_mm2, r.tumor_area_mm2, r.stroma_area_mm2);
    if (an_model_load(model, &m, &e) == 0) {
        printf("  bare prediction %.2f MP/s (one tile, compare with the "
               "engine's PyTorch ratio in bench_nn)\n", tile_rate(m));
        an_model_free(m);
    }
    an_results_free(&r);
    unlink(path);
    return 0;
}
