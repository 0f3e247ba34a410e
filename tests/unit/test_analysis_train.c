/* SPDX-License-Identifier: MIT */
/*
 * Training: a few iterations on a small phantom slide lower the loss;
 * validation is stratified by class and takes whole source groups where
 * a class has several; the patch folders load with the
 * documented class mapping; leave-one-source-image-out scores every
 * patch exactly once.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "drivers/sim/sim.h"
#include "worker/analysis/analysis.h"
#include "worker/analysis/train.h"

static const char *
phantom(const char *spec, const char *name)
{
    char tif[512], lab[512];
    struct sim_config c;
    struct microscope *m;
    struct ss_err e;

    snprintf(tif, sizeof(tif), "%s.tif", tu_tmp(name));
    snprintf(lab, sizeof(lab), "%s.labels.png", tu_tmp(name));
    sim_config_default(&c);
    snprintf(c.slide, sizeof(c.slide), "%s", spec);
    assert_int_equal(sim_microscope_new(&c, &m, &e), 0);
    assert_int_equal(sim_phantom_write(sim_of(m), 0.5, tif, lab, NULL, &e),
                     0);
    microscope_free(m);
    return tu_tmp(name);
}

static void
test_loss_falls_on_a_phantom(void **state)
{
    const char *p = phantom("phantom:HE:seed=77:w_mm=0.8:h_mm=0.8", "ph");
    char tif[512], lab[512];
    struct an_train_data d;
    struct an_train_cfg c;
    struct an_train_report r;
    struct ss_err e;

    snprintf(tif, sizeof(tif), "%s.tif", p);
    snprintf(lab, sizeof(lab), "%s.labels.png", p);
    an_train_data_init(&d, 2.0);
    assert_int_equal(an_train_add_slide(&d, tif, lab, 0, &e), 0);
    assert_int_equal(d.s[0].rgb->w, 400);
    an_train_cfg_default(&c);
    c.out_dir = tu_tmp("train");
    c.epochs = 4;
    c.steps_per_epoch = 8;
    c.batch = 4;
    c.crop_px = 64;
    c.lr = 5e-3;
    c.quiet = true;
    assert_int_equal(an_train_split(&d, NULL, 0, 1), 0);
    assert_int_equal(an_train_run(&c, &d, &r, &e), 0);
    print_message("# loss %.4f -> %.4f\n", r.first_loss, r.last_loss);
    assert_int_equal(r.epochs_run, 4);
    assert_true(r.last_loss < 0.85 * r.first_loss);
    an_train_data_free(&d);
}

static void
test_patches_split_by_source_and_loso(void **state)
{
    const char *k = tu_data("patches/kather2016");
    struct an_train_data d;
    struct an_train_cfg c;
    struct an_confusion conf;
    struct ss_err e;
    int i, j, nval, total = 0, seed, ntrain[3], nv[3];

    if (k == NULL)
        tu_skip("shared data absent: no labelled patches");
    an_train_data_init(&d, 2.0);
    assert_int_equal(an_train_add_patches(&d, k, 0.495, &e), 0);
    /* 2 tumour, 2 stroma, 2 complex stroma, 3 background */
    assert_int_equal(d.n, 9);
    /* Stratified by class: each class in both sets; tumour and stroma
     * by whole source images; the 3 background patches come from one
     * image, so one of them alone is held out, and that is flagged. */
    for (seed = 1; seed <= 8; seed++) {
        nval = an_train_split(&d, NULL, 0.2, seed);
        an_train_split_counts(&d, ntrain, nv);
        print_message("# seed %d: validation %d (glass %d, tumour %d, "
                      "stroma %d)\n", seed, nval, nv[0], nv[1], nv[2]);
        for (i = 0; i < 3; i++) {
            assert_true(nv[i] >= 1);
            assert_true(ntrain[i] >= 1);
        }
        assert_int_equal(nv[AN_GLASS], 1);
        assert_int_equal(nval, nv[0] + nv[1] + nv[2]);
        assert_true(d.val_shares_source[AN_GLASS]);
        assert_false(d.val_shares_source[AN_TUMOR]);
        assert_false(d.val_shares_source[AN_STROMA]);
        for (i = 0; i < d.n; i++)
            for (j = 0; j < d.n; j++)
                if (d.s[i].patch_class != AN_GLASS &&
                    strcmp(d.s[i].group, d.s[j].group) == 0)
                    assert_int_equal(d.s[i].val, d.s[j].val);
    }
    /* Without a fraction, nothing is held out. */
    assert_int_equal(an_train_split(&d, NULL, 0, 4), 0);
    an_train_cfg_default(&c);
    c.out_dir = tu_tmp("loso");
    c.epochs = 1;
    c.steps_per_epoch = 2;
    c.batch = 2;
    c.crop_px = 48;
    c.quiet = true;
    assert_int_equal(an_train_loso(&c, &d, &conf, &e), 0);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++)
            total += (int)conf.m[i][j];
    assert_int_equal(total, 9);
    assert_int_equal(conf.m[AN_GLASS][0] + conf.m[AN_GLASS][1] +
                     conf.m[AN_GLASS][2], 3);
    an_train_data_free(&d);
}

static void
test_bad_inputs_name_the_cause(void **state)
{
    struct an_train_data d;
    struct ss_err e;
    FILE *f;

    an_train_data_init(&d, 2.0);
    assert_true(an_train_add_patches(&d, tu_tmp("none"), 0.5, &e) < 0);
    assert_non_null(strstr(e.msg, "labels.csv"));
    assert_int_equal(util_mkdir_p(tu_tmp("p"), &e), 0);
    f = fopen(tu_tmp("p/labels.csv"), "w");
    fputs("file,class_id,class_name,source_image\nbroken line\n", f);
    fclose(f);
    assert_int_equal(an_train_add_patches(&d, tu_tmp("p"), 0.5, &e),
                     SS_EFORMAT);
    assert_non_null(strstr(e.msg, "labels.csv:2"));
    an_train_data_free(&d);
}

/* A label mask must be the slide's size at level 0 or at the training
 * resolution: a 10 × 10 mask for a 40 × 40 slide at 2 µm/px is an error
 * naming the mask and both sizes, not a stretched mask. */
static void
test_label_mask_size_must_match(void **state)
{
    struct img *rgb = img_new(40, 40, 3, IMG_U8);
    struct img *lab = img_new(10, 10, 1, IMG_U8);
    char slide[512], mask[512];
    struct an_train_data d;
    struct ss_err e;

    snprintf(slide, sizeof(slide), "%s", tu_tmp("slide40.png"));
    snprintf(mask, sizeof(mask), "%s", tu_tmp("mask10.png"));
    memset(rgb->data, 128, img_bytes(rgb));
    memset(lab->data, AN_TUMOR, img_bytes(lab));
    assert_int_equal(img_png_write(rgb, slide, &e), 0);
    assert_int_equal(img_png_write(lab, mask, &e), 0);
    an_train_data_init(&d, 2.0);
    err_clear(&e);
    assert_int_equal(an_train_add_slide(&d, slide, mask, 2.0, &e), -ERANGE);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "mask10.png is 10×10 px"));
    assert_non_null(strstr(e.msg, "(40×40 px)"));
    assert_int_equal(d.n, 0);
    /* The mask of the right size is taken. */
    img_free(lab);
    lab = img_new(40, 40, 1, IMG_U8);
    memset(lab->data, AN_TUMOR, img_bytes(lab));
    assert_int_equal(img_png_write(lab, mask, &e), 0);
    assert_int_equal(an_train_add_slide(&d, slide, mask, 2.0, &e), 0);
    assert_int_equal(d.n, 1);
    an_train_data_free(&d);
    img_free(rgb);
    img_free(lab);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_on_a_phantom),
        cmocka_unit_test(test_patches_split_by_source_and_loso),
        cmocka_unit_test(test_bad_inputs_name_the_cause),
        cmocka_unit_test(test_label_mask_size_must_match),
    };

    return cmocka_run_group_tests_name("analysis train", tests, NULL, NULL);
}
