/* SPDX-License-Identifier: MIT */
/*
 * slidescan frame: one frame of the simulated microscope to a PNG, so a
 * person can look at what the scanner would see at a stage position, and
 * optionally the ideal image and the phantom labels of the same field.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/img.h"
#include "drivers/sim/sim.h"
#include "storage/slide.h"
#include "tools/client/cli.h"
#include "tools/client/client.h"

static void
usage(FILE *f)
{
    fprintf(f,
"usage: slidescan frame --slide SPEC --out FRAME.png [options]\n"
"\n"
"Captures one frame on the simulated microscope.\n"
"  --slide SPEC       phantom:HE[:seed=N][:w_mm=..][:h_mm=..], a slide\n"
"                     file OpenSlide reads, or IMAGE@MPP; an @MPP more\n"
"                     than 1 %% off the pixel size the file states is\n"
"                     refused unless the spec ends in :force_mpp\n"
"  --x-um X --y-um Y  stage position of the frame's top-left pixel\n"
"                     (default: the frame centred on the image)\n"
"  --z-um Z           focus position (default: the true focal surface)\n"
"  --stain S          HE, KI67 or CK: the exposure profile, and the stain\n"
"                     of a file slide (default: the stain the slide\n"
"                     declares, else HE); one that contradicts the\n"
"                     slide's declared stain is refused\n"
"  --exposure-ms N    exposure, above 0 (default 250 for HE, 600 for KI67\n"
"                     and CK)\n"
"  --objective O      10x, 20x or 40x (default 20x)\n"
"  --settle-ms N      wait after the move, 0 or more (default 100)\n"
"  --seed N           simulator seed (default 1)\n"
"  --set KEY=VALUE    any [simulator] key (repeatable)\n"
"  --truth FILE.png   also write the ideal image of the field\n"
"  --labels FILE.png  also write the phantom labels (0 glass, 1 tumor,\n"
"                     2 stroma, as grey levels 0, 127, 254)\n");
}

struct frame_opts {
    const char *slide, *out, *truth, *labels, *stain;
    double x, y, z, exposure, settle;
    bool have_x, have_y, have_z, have_exposure;
};

static int
parse_num(const char *opt, const char *v, double *out)
{
    char *end;

    *out = strtod(v, &end);
    if (end == v || *end != '\0' || !isfinite(*out)) {
        fprintf(stderr, "slidescan frame: %s: '%s' is not a number\n", opt,
                v);
        return -1;
    }
    return 0;
}

static int
set_kv(struct sim_config *c, const char *kv)
{
    char key[64];
    const char *eq = strchr(kv, '=');
    struct ss_err e;

    if (eq == NULL || eq - kv >= (long)sizeof(key)) {
        fprintf(stderr, "slidescan frame: --set wants KEY=VALUE, not "
                "'%s'\n", kv);
        return -1;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    if (sim_config_set(c, key, eq + 1, &e) < 0) {
        fprintf(stderr, "slidescan frame: --set %s: %s\n", key, e.msg);
        return -1;
    }
    return 0;
}

/* What the options say, checked before anything is opened: a bad value
 * is a usage error, as the same slide spec is for `slidescan scan`. */
static int
check_opts(const struct frame_opts *o)
{
    struct ss_err e;

    if (o->have_exposure && o->exposure <= 0) {
        fprintf(stderr, "slidescan frame: --exposure-ms: %g is not a "
                "positive exposure (leave it out for the stain's)\n",
                o->exposure);
        return -1;
    }
    if (o->settle < 0) {
        fprintf(stderr, "slidescan frame: --settle-ms: %g is negative\n",
                o->settle);
        return -1;
    }
    if (sim_slide_spec_check(o->slide, &e) < 0) {
        fprintf(stderr, "slidescan frame: --slide %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int
parse(int argc, char **argv, struct frame_opts *o, struct sim_config *c)
{
    static const struct option lo[] = {
        { "slide", 1, NULL, 's' }, { "x-um", 1, NULL, 'x' },
        { "y-um", 1, NULL, 'y' }, { "z-um", 1, NULL, 'z' },
        { "stain", 1, NULL, 'S' }, { "exposure-ms", 1, NULL, 'e' },
        { "objective", 1, NULL, 'O' }, { "settle-ms", 1, NULL, 't' },
        { "seed", 1, NULL, 'r' }, { "set", 1, NULL, 'k' },
        { "out", 1, NULL, 'o' }, { "truth", 1, NULL, 'T' },
        { "labels", 1, NULL, 'L' }, { "help", 0, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct ss_err e;
    int ch, rc = 0;

    optind = 1;
    while (rc == 0 && (ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's': o->slide = optarg; break;
        case 'x': rc = parse_num("--x-um", optarg, &o->x); o->have_x = 1;
                  break;
        case 'y': rc = parse_num("--y-um", optarg, &o->y); o->have_y = 1;
                  break;
        case 'z': rc = parse_num("--z-um", optarg, &o->z); o->have_z = 1;
                  break;
        case 'e': rc = parse_num("--exposure-ms", optarg, &o->exposure);
                  o->have_exposure = 1; break;
        case 't': rc = parse_num("--settle-ms", optarg, &o->settle); break;
        case 'S': o->stain = optarg;
                  rc = sim_config_set(c, "stain", optarg, &e); break;
        case 'O': rc = sim_config_set(c, "objective", optarg, &e); break;
        case 'r': rc = sim_config_set(c, "seed", optarg, &e); break;
        case 'k': rc = set_kv(c, optarg); break;
        case 'o': o->out = optarg; break;
        case 'T': o->truth = optarg; break;
        case 'L': o->labels = optarg; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (rc < 0 && (ch == 'S' || ch == 'O' || ch == 'r'))
            fprintf(stderr, "slidescan frame: %s: %s\n",
                    ch == 'S' ? "--stain" : ch == 'O' ? "--objective"
                                                     : "--seed", e.msg);
    }
    if (rc == 0 && (o->slide == NULL || o->out == NULL)) {
        fprintf(stderr, "slidescan frame: --slide and --out are required\n");
        rc = -1;
    }
    return rc == 0 ? check_opts(o) : rc;
}

static int
write_extras(struct sim *s, const struct frame_opts *o,
             const struct sim_truth *t, struct ss_err *e)
{
    struct img *im = NULL;
    size_t i;
    int rc = 0;

    if (o->truth != NULL) {
        rc = sim_render_truth(s, t->x_um, t->y_um, t->w, t->h, t->pixel_um,
                              &im, e);
        if (rc == 0)
            rc = img_png_write(im, o->truth, e);
        img_free(im);
        im = NULL;
    }
    if (rc == 0 && o->labels != NULL) {
        rc = sim_render_labels(s, t->x_um, t->y_um, t->w, t->h, t->pixel_um,
                               &im, e);
        for (i = 0; rc == 0 && i < img_bytes(im); i++)
            ((uint8_t *)im->data)[i] = (uint8_t)(((uint8_t *)im->data)[i] *
                                                 127);
        if (rc == 0)
            rc = img_png_write(im, o->labels, e);
        img_free(im);
    }
    return rc;
}

static int
snap(struct sim *s, struct frame_opts *o, struct ss_err *e)
{
    struct sim_geometry g;
    struct sim_truth t;
    struct img *im = NULL;
    int rc;

    sim_geometry_get(s, &g);
    if (!o->have_x)
        o->x = g.image_x_um + g.image_w_um / 2 - g.frame_w * g.pixel_um / 2;
    if (!o->have_y)
        o->y = g.image_y_um + g.image_h_um / 2 - g.frame_h * g.pixel_um / 2;
    if (!o->have_z)
        o->z = sim_focus_z(s, o->x + g.frame_w * g.pixel_um / 2,
                           o->y + g.frame_h * g.pixel_um / 2);
    rc = sim_snap(s, o->x, o->y, o->z, o->exposure, o->settle, &im, e);
    if (rc == 0)
        rc = img_png_write(im, o->out, e);
    img_free(im);
    if (rc < 0)
        return rc;
    sim_truth_last(s, &t);
    printf("frame %s %dx%d pixel_um=%.3f x_um=%.2f y_um=%.2f z_um=%.2f "
           "dz_um=%.2f blur_px=%.2f exposure_ms=%.0f saturated=%.4f\n",
           o->out, t.w, t.h, t.pixel_um, t.x_um, t.y_um, t.z_um, t.dz_um,
           t.blur_px, t.exposure_ms, t.saturated_frac);
    return write_extras(s, o, &t, e);
}

/* The stain the slide declares (its spec's, else its file's metadata)
 * decides when --stain is omitted, and a --stain that contradicts it is
 * refused: the frame would be exposed and coloured as the wrong stain.
 * Returns 0, -EDOM after saying why, or the error opening the file. */
static int
settle_stain(const struct frame_opts *o, struct sim_config *c,
             struct ss_err *e)
{
    const char *spec = sim_slide_spec_stain(o->slide);
    char file[32];
    int rc;

    rc = sim_slide_spec_file_stain(o->slide, file, sizeof(file), e);
    if (rc < 0)
        return rc;
    if (spec == NULL && file[0] == '\0')
        return 0;
    if (spec == NULL)
        spec = file;
    if (o->stain != NULL && !slide_stain_same(spec, o->stain)) {
        fprintf(stderr, "slidescan frame: --stain %s, but the slide %s "
                "declares stain %s; give the slide's stain, or omit "
                "--stain\n", o->stain, o->slide, spec);
        return -EDOM;
    }
    if (o->stain == NULL && sim_config_set(c, "stain", spec, e) < 0) {
        fprintf(stderr, "slidescan frame: the slide %s declares stain %s, "
                "which the simulator does not know (HE, KI67, CK)\n",
                o->slide, spec);
        return -EDOM;
    }
    return 0;
}

int
cmd_frame(int argc, char **argv)
{
    struct frame_opts o = { .settle = 100 };
    struct sim_config c;
    struct microscope *m = NULL;
    struct ss_err e;
    int rc;

    sim_config_default(&c);
    rc = parse(argc, argv, &o, &c);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    snprintf(c.slide, sizeof(c.slide), "%s", o.slide);
    err_clear(&e);
    rc = settle_stain(&o, &c, &e);
    if (rc == -EDOM)
        return EXIT_USAGE;
    if (rc == 0)
        rc = sim_microscope_new(&c, &m, &e);
    if (rc < 0) {
        fprintf(stderr, "slidescan frame: %s\n", e.msg);
        return rc == -ENOENT ? EXIT_NOTFOUND : rc == -EDOM ? EXIT_USAGE
               : EXIT_FAIL;
    }
    /* From here on every failure is an output's (or the simulator's):
     * a missing directory of --out is a failure, not an input not found. */
    if (client__out_parent("frame", o.out) != 0 ||
        (o.truth != NULL && client__out_parent("frame", o.truth) != 0) ||
        (o.labels != NULL && client__out_parent("frame", o.labels) != 0)) {
        microscope_free(m);
        return EXIT_FAIL;
    }
    rc = snap(sim_of(m), &o, &e);
    microscope_free(m);
    if (rc < 0) {
        fprintf(stderr, "slidescan frame: %s\n", e.msg);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
