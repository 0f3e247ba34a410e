/* SPDX-License-Identifier: MIT */
/*
 * The whole analysis on the real Ki67 crops (OS-2-ndpi, OS-2-vsi), which
 * reach the worker only through the slide reader's OME-TIFF path: the
 * pixel size comes from the OME-XML and a KI67 index comes out.
 *
 * The index is checked for plausibility only: QuPath's positive cell
 * detection on the same crops (OS-2-*-results.tsv, two nucleus and two
 * DAB thresholds) gives 11.9-20.5 % (ndpi) and 3.7-24.0 % (vsi).  Those
 * are algorithm outputs, not expert counts, so the test asks for the
 * published span 3.7-24.0 %, nothing tighter.
 */
#include "tests/support/testutil.h"

#include <math.h>
#include <stdio.h>

#include "worker/analysis/analysis.h"

#define KI67_MIN 0.037                  /* QuPath, OS-2-vsi, lowest */
#define KI67_MAX 0.240                  /* QuPath, OS-2-vsi, highest */

static void
analyse_ki67(const char *rel, const char *out, double mpp)
{
    const char *p = tu_data(rel);
    struct an_results r;
    struct an_job j;
    struct ss_err e;
    int rc;

    if (p == NULL) {
        tu_skip("shared data absent: no %s", rel);
        return;
    }
    an_job_default(&j);
    j.wsi = p;
    j.out_dir = tu_tmp(out);
    j.stain = AN_STAIN_KI67;
    err_clear(&e);
    rc = an_analyse(&j, &r, &e);
    if (rc != 0)
        print_message("# %s\n", e.msg);
    assert_int_equal(rc, 0);
    print_message("# %s: KI67 index %.3f (%d of %d tumour nuclei positive), "
                  "%.4f um/px, model %s; QuPath span %.3f-%.3f\n", rel,
                  r.ki67_index, r.ki67_positive, r.ki67_nuclei, r.slide_mpp,
                  r.model, KI67_MIN, KI67_MAX);
    assert_true(fabs(r.slide_mpp - mpp) < 5e-5);
    assert_true(r.ki67_nuclei > 300);
    assert_true(isfinite(r.ki67_index));
    assert_true(r.ki67_index >= KI67_MIN);
    assert_true(r.ki67_index <= KI67_MAX);
    an_results_free(&r);
}

static void
test_ki67_index_os2_ndpi(void **state)
{
    analyse_ki67("ihc_ki67/OS-2-ndpi.ome.tif", "ndpi", 0.2271);
}

static void
test_ki67_index_os2_vsi(void **state)
{
    analyse_ki67("ihc_ki67/OS-2-vsi.ome.tif", "vsi", 0.3461);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ki67_index_os2_ndpi),
        cmocka_unit_test(test_ki67_index_os2_vsi),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
