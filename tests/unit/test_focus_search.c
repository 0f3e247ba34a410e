/* SPDX-License-Identifier: MIT */
/*
 * imaging/focus: the sharpness metric and the autofocus search on
 * synthetic z-stacks.  Field case F1: blank glass (grey 230, noise σ 2)
 * gives "no focus" within one 11-frame sweep and never leaves the z
 * limits; a textured field blurred by its distance from frame 6 peaks at
 * frame 6 ± 1.  Also: ±0.5 µm from up to ±20 µm away in at most 8 frames.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/img.h"
#include "common/rng.h"
#include "imaging/focus.h"

#define W 320
#define H 240

/* Nuclei-like dark blobs on a pink, slowly varying background. */
static float *
texture(uint64_t seed)
{
    float *t = calloc(W * H, sizeof(*t));
    struct rng r;
    int i, x, y;

    rng_init(&r, seed);
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++)
            t[y * W + x] = (float)(200 + 15 * sin(x * 0.05) *
                                   cos(y * 0.07));
    for (i = 0; i < 560; i++) {
        double cx = rng_uniform(&r) * W, cy = rng_uniform(&r) * H;
        double rad = 1.5 + 3 * rng_uniform(&r), depth = 60 + 80 *
                     rng_uniform(&r);
        for (y = (int)(cy - rad) - 1; y <= cy + rad + 1; y++)
            for (x = (int)(cx - rad) - 1; x <= cx + rad + 1; x++)
                if (x >= 0 && y >= 0 && x < W && y < H &&
                    hypot(x - cx, y - cy) <= rad)
                    t[y * W + x] = (float)fmax(20, t[y * W + x] - depth);
    }
    return t;
}

/* Separable Gaussian blur of σ px (σ ≤ 0.05: copy; kernel cut at 127 px),
 * clamped edges. */
static void
blur(const float *in, float *out, double sigma)
{
    float *tmp = calloc(W * H, sizeof(*tmp));
    double k[256], s = 0;
    int r = (int)ceil(3 * sigma), x, y, i;

    r = r > 127 ? 127 : r;
    if (sigma <= 0.05) {
        memcpy(out, in, W * H * sizeof(*out));
        free(tmp);
        return;
    }
    for (i = -r; i <= r; i++)
        s += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            double a = 0;
            for (i = -r; i <= r; i++) {
                int xx = x + i < 0 ? 0 : x + i >= W ? W - 1 : x + i;
                a += k[i + r] * in[y * W + xx];
            }
            tmp[y * W + x] = (float)(a / s);
        }
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            double a = 0;
            for (i = -r; i <= r; i++) {
                int yy = y + i < 0 ? 0 : y + i >= H ? H - 1 : y + i;
                a += k[i + r] * tmp[yy * W + x];
            }
            out[y * W + x] = (float)(a / s);
        }
    free(tmp);
}

/* A grey U8 RGB frame from a float field, with Gaussian noise σ. */
static struct img *
frame_of(const float *f, double noise, uint64_t key)
{
    struct img *im = img_new(W, H, 3, IMG_U8);
    struct rng r;
    int i, c;

    rng_init(&r, key);
    for (i = 0; i < W * H; i++)
        for (c = 0; c < 3; c++) {
            double v = f[i] + noise * rng_gauss(&r);
            ((uint8_t *)im->data)[i * 3 + c] = (uint8_t)(v < 0 ? 0 :
                                                         v > 255 ? 255 :
                                                         lround(v));
        }
    return im;
}

/* A simulated focus drive over a textured (or blank) field. */
struct stack {
    float *sharp;                   /* NULL: blank glass, grey 230 */
    double z_true, dof_um;
    double z_min, z_max;
    double snap_um;                 /* > 0: z snaps to this grid */
    int captures;
    bool left_limits;
};

static int
stack_probe(void *ctx, double z, double spacing_um, double *metric,
            struct ss_err *err)
{
    struct stack *s = ctx;
    float *f = calloc(W * H, sizeof(*f));
    struct img *im;
    int i;

    if (z < s->z_min - 1e-9 || z > s->z_max + 1e-9)
        s->left_limits = true;
    if (s->snap_um > 0)
        z = s->z_min + s->snap_um * lround((z - s->z_min) / s->snap_um);
    if (s->sharp != NULL)
        blur(s->sharp, f, hypot(0.45, (z - s->z_true) / s->dof_um));
    else
        for (i = 0; i < W * H; i++)
            f[i] = 230;
    im = frame_of(f, 2.0, (uint64_t)s->captures * 7919 + 1);
    *metric = focus_sharpness(im, spacing_um > 4 ? 8 : 2);
    s->captures++;
    img_free(im);
    free(f);
    return 0;
}

/* The 11-frame sweep of F1: frames 1..11 at z = 0, 2, ..., 20 µm. */
static void
sweep11(struct stack *s, double z[11], double m[11])
{
    int k;

    for (k = 0; k < 11; k++) {
        z[k] = 2.0 * k;
        stack_probe(s, z[k], 2.0, &m[k], NULL);
    }
}

static void
test_f1_blank_glass_sweep_has_no_focus(void **state)
{
    struct stack s = { NULL, 10, 1, 0, 20, 2, 0, false };
    double z[11], m[11], zp = -1;
    struct ss_err e;

    sweep11(&s, z, m);
    assert_int_equal(focus_sweep_peak(z, m, 11, 1.15, &zp, &e),
                     SS_ENOFOCUS);
    assert_non_null(strstr(e.msg, "no focus"));
    assert_true(zp == -1);
}

static void
test_f1_textured_sweep_peaks_at_frame_6(void **state)
{
    struct stack s = { texture(1), 10, 1, 0, 20, 2, 0, false };
    double z[11], m[11], zp;
    struct ss_err e;
    long frame;

    sweep11(&s, z, m);
    assert_int_equal(focus_sweep_peak(z, m, 11, 1.15, &zp, &e), 0);
    frame = lround(zp / 2.0) + 1;
    assert_true(frame >= 5 && frame <= 7);
    free(s.sharp);
}

/* The search on the same blank stack gives up within one sweep's worth
 * of frames and never asks for z outside the limits. */
static void
test_f1_search_gives_up_cleanly_on_blank_glass(void **state)
{
    struct stack s = { NULL, 10, 1, 0, 20, 2, 0, false };
    struct af_params p;
    struct af_result r;
    struct ss_err e;

    af_params_default(&p);
    p.z_min_um = 0;
    p.z_max_um = 20;
    assert_int_equal(focus_search(&p, 4.0, stack_probe, &s, &r, &e),
                     SS_ENOFOCUS);
    assert_false(r.found);
    print_message("# blank glass contrast %.3f after %d frames\n",
                  r.contrast, r.captures);
    assert_true(r.captures <= 11);
    assert_false(s.left_limits);
    assert_true(r.z_um >= 0 && r.z_um <= 20);
}

static void
test_f1_search_finds_frame_6_within_limits(void **state)
{
    struct stack s = { texture(2), 10, 1, 0, 20, 2, 0, false };
    struct af_params p;
    struct af_result r;
    struct ss_err e;

    af_params_default(&p);
    p.z_min_um = 0;
    p.z_max_um = 20;
    assert_int_equal(focus_search(&p, 2.0, stack_probe, &s, &r, &e), 0);
    assert_true(r.found);
    assert_true(fabs(r.z_um - 10) <= 2.0);
    assert_false(s.left_limits);
    free(s.sharp);
}

/* ±0.5 µm from any start within ±20 µm, in at most 8 frames, on a
 * continuous drive with a 1 µm depth of field (20x). */
static void
test_search_lands_within_half_a_micron(void **state)
{
    double offsets[] = { -20, -13.3, -7.1, -2.5, 0, 3.7, 9.4, 15.2, 20 };
    struct af_params p;
    struct af_result r;
    struct ss_err e;
    size_t i;
    double worst = 0;
    float *tex = texture(3);

    af_params_default(&p);
    p.z_min_um = -500;
    p.z_max_um = 500;
    for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        struct stack s = { tex, 5.3, 1, -500, 500, 0, 0, false };
        assert_int_equal(focus_search(&p, 5.3 + offsets[i], stack_probe, &s,
                                      &r, &e), 0);
        assert_true(r.captures <= 8);
        print_message("# start %+.1f: z %.3f captures %d\n", offsets[i],
                      r.z_um, r.captures);
        worst = fmax(worst, fabs(r.z_um - 5.3));
    }
    print_message("# worst autofocus error %.3f um\n", worst);
    assert_true(worst <= 0.5);
    free(tex);
}

/* The search never requests z beyond the travel even when focus lies
 * just past it: it reports the best it can reach. */
static void
test_search_respects_limits_near_travel_end(void **state)
{
    struct stack s = { texture(4), 498, 1, -500, 500, 0, 0, false };
    struct af_params p;
    struct af_result r;
    struct ss_err e;

    af_params_default(&p);
    p.z_min_um = -500;
    p.z_max_um = 500;
    focus_search(&p, 490, stack_probe, &s, &r, &e);
    assert_false(s.left_limits);
    assert_true(r.z_um <= 500);
    free(s.sharp);
}

static void
test_sharpness_falls_with_blur_and_ignores_brightness(void **state)
{
    float *t = texture(5), *b = calloc(W * H, sizeof(*b));
    struct img *sharp, *soft, *dim;
    int i;

    blur(t, b, 2.0);
    sharp = frame_of(t, 0, 1);
    soft = frame_of(b, 0, 1);
    for (i = 0; i < W * H; i++)
        t[i] *= 0.5f;
    dim = frame_of(t, 0, 1);
    assert_true(focus_sharpness(sharp, 1) > 2 * focus_sharpness(soft, 1));
    assert_true(fabs(focus_sharpness(dim, 1) / focus_sharpness(sharp, 1) -
                     1) < 0.05);
    img_free(sharp);
    img_free(soft);
    img_free(dim);
    free(t);
    free(b);
}

static void
test_fit3_finds_the_vertex_of_a_gaussian(void **state)
{
    double z[3] = { -1.5, 0, 1.5 }, m[3], zp;
    int i;

    for (i = 0; i < 3; i++)
        m[i] = exp(-0.5 * (z[i] - 0.4) * (z[i] - 0.4) / 4.0);
    assert_true(focus_fit3(z, m, &zp));
    assert_true(fabs(zp - 0.4) < 1e-9);
    m[1] = 0.1;
    assert_false(focus_fit3(z, m, &zp));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f1_blank_glass_sweep_has_no_focus),
        cmocka_unit_test(test_f1_textured_sweep_peaks_at_frame_6),
        cmocka_unit_test(test_f1_search_gives_up_cleanly_on_blank_glass),
        cmocka_unit_test(test_f1_search_finds_frame_6_within_limits),
        cmocka_unit_test(test_search_lands_within_half_a_micron),
        cmocka_unit_test(test_search_respects_limits_near_travel_end),
        cmocka_unit_test(test_sharpness_falls_with_blur_and_ignores_brightness),
        cmocka_unit_test(test_fit3_finds_the_vertex_of_a_gaussian),
    };

    return cmocka_run_group_tests_name("focus", tests, NULL, NULL);
}
