/* SPDX-License-Identifier: MIT */
/*
 * The whole analysis on phantom slides with exact ground truth (written
 * by the simulator as pyramidal TIFFs at 0.5 µm/px, like a 20x scan):
 * with the shipped default model, pixel Dice ≥ 0.95 for tumour and for
 * stroma, the KI67 index within 2 percentage points of the truth, the CK
 * area and the tumour-stroma ratio close to theirs.
 */
#include "tests/support/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/eval.h"

struct phantom {
    char tif[512], labels[512], truth[512], out[512];
};

static void
phantom_make(const char *spec, const char *name, struct phantom *p)
{
    struct sim_config c;
    struct microscope *m;
    struct ss_err e;

    snprintf(p->tif, sizeof(p->tif), "%s", tu_tmp(name));
    snprintf(p->labels, sizeof(p->labels), "%s.labels.png", p->tif);
    snprintf(p->truth, sizeof(p->truth), "%s.truth.json", p->tif);
    snprintf(p->out, sizeof(p->out), "%s.analysis", p->tif);
    strcat(p->tif, ".tif");
    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "%s", spec);
    assert_int_equal(sim_microscope_new(&c, &m, &e), 0);
    assert_int_equal(sim_phantom_write(sim_of(m), 0.5, p->tif, p->labels,
                                       p->truth, &e), 0);
    microscope_free(m);
}

static void
analyse(const struct phantom *p, enum an_stain stain, struct an_results *r)
{
    struct an_job j;
    struct ss_err e;

    an_job_default(&j);
    j.wsi = p->tif;
    j.out_dir = p->out;
    j.stain = stain;
    err_clear(&e);
    if (an_analyse(&j, r, &e) != 0)
        fail_msg("%s", e.msg);
    print_message("# %s model=%s tumor=%.4f stroma=%.4f mm² tsr=%.4f "
                  "ki67=%.4f ck=%.4f\n", p->tif, r->model,
                  r->tumor_area_mm2, r->stroma_area_mm2, r->tsr,
                  r->ki67_index, r->ck_positive_area_mm2);
}

static void
scores(const struct phantom *p, double *dice_t, double *dice_s)
{
    struct an_eval ev;
    struct an_class_scores s;
    struct ss_err e;

    an_eval_init(&ev, 20);
    assert_int_equal(an_eval_add(&ev, p->out, p->labels, p->truth, &e), 0);
    an_class_scores(&ev.conf, AN_TUMOR, &s);
    *dice_t = s.dice;
    an_class_scores(&ev.conf, AN_STROMA, &s);
    *dice_s = s.dice;
    print_message("# dice tumor %.4f stroma %.4f\n", *dice_t, *dice_s);
    an_eval_fini(&ev);
}

static double
truth_num(const struct phantom *p, const char *path)
{
    json_t *o = json_load_file(p->truth, 0, NULL), *v = o;
    char key[64];
    const char *s = path;
    double d;

    while (v != NULL && *s != '\0') {
        size_t n = strcspn(s, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, s);
        v = json_object_get(v, key);
        s += n + (s[n] == '.');
    }
    d = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(o);
    return d;
}

static void
test_he_phantom_dice_and_tsr(void **state)
{
    struct phantom p;
    struct an_results r;
    double dt, ds, t, s;

    phantom_make("phantom:HE:seed=101:w_mm=1.6:h_mm=1.6", "he", &p);
    analyse(&p, AN_STAIN_HE, &r);
    assert_string_not_equal(r.model, "classical-baseline-1");
    scores(&p, &dt, &ds);
    assert_true(dt >= 0.95);
    assert_true(ds >= 0.95);
    t = truth_num(&p, "areas_mm2.tumor");
    s = truth_num(&p, "areas_mm2.stroma");
    assert_true(fabs(r.tumor_area_mm2 - t) < 0.05 * t);
    /* The truth's tumor_fraction is the analysis's tumour-stroma ratio:
     * tumour / (tumour + stroma). */
    assert_true(fabs(truth_num(&p, "tumor_fraction") - t / (t + s)) < 1e-9);
    assert_true(fabs(r.tsr - truth_num(&p, "tumor_fraction")) < 0.03);
    an_results_free(&r);
}

static void
test_ki67_phantom_index_within_2_points(void **state)
{
    struct phantom p;
    struct an_results r;
    double dt, ds, truth;

    phantom_make("phantom:KI67:seed=102:w_mm=1.6:h_mm=1.6", "ki67", &p);
    analyse(&p, AN_STAIN_KI67, &r);
    scores(&p, &dt, &ds);
    truth = truth_num(&p, "ki67_fraction");
    print_message("# ki67 measured %.4f truth %.4f nuclei %d\n",
                  r.ki67_index, truth, r.ki67_nuclei);
    assert_true(fabs(r.ki67_index - truth) <= 0.02);
    assert_true(dt >= 0.95);
    assert_true(ds >= 0.95);
    an_results_free(&r);
}

static void
test_ck_phantom_area_and_mask(void **state)
{
    struct phantom p;
    struct an_results r;
    double dt, ds, truth;

    phantom_make("phantom:CK:seed=103:w_mm=1.6:h_mm=1.6", "ck", &p);
    analyse(&p, AN_STAIN_CK, &r);
    scores(&p, &dt, &ds);
    truth = truth_num(&p, "ck_positive_area_mm2");
    assert_true(fabs(r.ck_positive_area_mm2 - truth) < 0.05 * truth);
    assert_true(dt >= 0.95);
    assert_true(ds >= 0.95);
    an_results_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_he_phantom_dice_and_tsr),
        cmocka_unit_test(test_ki67_phantom_index_within_2_points),
        cmocka_unit_test(test_ck_phantom_area_and_mask),
    };

    return cmocka_run_group_tests_name("analysis phantom", tests, NULL,
                                       NULL);
}
