/* SPDX-License-Identifier: MIT */
/* storage/catalogue: schema, queue order, state rules, plans, tiles,
 * focus points, calibrations, the slide image, analyses, listings. */
#include "tests/support/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "storage/catalogue.h"

static struct cat *
fresh(const char *name)
{
    struct cat *c = NULL;
    struct ss_err e;

    assert_int_equal(cat_open(tu_tmp(name), &c, &e), 0);
    return c;
}

static int64_t
add(struct cat *c, const char *slide, const char *stain, int prio)
{
    struct cat_scan_req r = { slide, stain, NULL, prio, 1000 };
    struct ss_err e;
    int64_t id = 0;

    assert_int_equal(cat_scan_add(c, &r, &id, &e), 0);
    return id;
}

static void
test_schema_is_versioned(void **state)
{
    struct cat *c = fresh("v.db");
    struct ss_err e;
    int64_t v = 0;

    assert_int_equal(cat_query_int(c, &v, "PRAGMA user_version", ""), 0);
    assert_int_equal(v, CAT_SCHEMA_VERSION);
    assert_int_equal(cat_query_int(c, &v, "PRAGMA foreign_keys", ""), 0);
    assert_int_equal(v, 1);
    cat_exec(c, "PRAGMA user_version = 99", "");
    cat_close(c);
    assert_int_equal(cat_open(tu_tmp("v.db"), &c, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "schema version 99 is newer"));
    assert_non_null(strstr(e.msg, "v.db"));
}

static void
test_queue_runs_by_priority_then_position(void **state)
{
    struct cat *c = fresh("q.db");
    int64_t a = add(c, "A", "HE", 0), b = add(c, "B", "HE", 5);
    int64_t d = add(c, "D", "KI67", 0), next = 0;
    struct ss_err e;

    assert_int_equal(cat_scan_next(c, &next, &e), 0);
    assert_int_equal(next, b);
    assert_int_equal(cat_scan_move(c, d, 1, &e), 0);
    assert_int_equal(cat_scan_next(c, &next, &e), 0);
    assert_int_equal(next, d);
    assert_int_equal(cat_scan_move(c, a, 2, &e), 0);
    assert_int_equal(cat_scan_transition(c, d, CAT_BIT(CAT_QUEUED),
                                         CAT_CALIBRATING, "", &e), 0);
    assert_int_equal(cat_scan_next(c, &next, &e), 0);
    assert_int_equal(next, a);
    assert_int_equal(cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED),
                                         CAT_PAUSED, "by hand", &e), 0);
    assert_int_equal(cat_scan_next(c, &next, &e), 0);
    assert_int_equal(next, b);
    cat_close(c);
}

static void
test_state_rules_name_the_state(void **state)
{
    struct cat *c = fresh("s.db");
    int64_t a = add(c, "A", "HE", 0);
    struct cat_scan_req dup = { "A", "HE", NULL, 0, 1 };
    struct cat_scan_req other = { "A", "CK", NULL, 0, 1 };
    struct cat_scan s;
    struct ss_err e;
    int64_t id;

    assert_int_equal(cat_scan_add(c, &dup, &id, &e), -EALREADY);
    assert_string_equal(e.msg, "slide A already has scan 1 that is not "
                        "finished");
    assert_int_equal(cat_scan_add(c, &other, &id, &e), -EEXIST);
    assert_string_equal(e.msg, "slide A is stained HE, not CK");
    assert_int_equal(cat_scan_transition(c, a, CAT_BIT(CAT_PAUSED),
                                         CAT_QUEUED, "", &e), -EALREADY);
    assert_string_equal(e.msg, "scan 1 is queued");
    assert_int_equal(cat_scan_transition(c, 77, CAT_BIT(CAT_QUEUED),
                                         CAT_PAUSED, "", &e), -ENOENT);
    assert_int_equal(cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED),
                                         CAT_FAILED, "camera died", &e), 0);
    assert_int_equal(cat_scan_get(c, a, &s, &e), 0);
    assert_int_equal(s.state, CAT_FAILED);
    assert_string_equal(s.reason, "camera died");
    assert_true(s.finished[0] != '\0');
    assert_int_equal(s.requested_by, 1000);
    assert_int_equal(cat_scan_add(c, &dup, &id, &e), 0);
    cat_close(c);
}

static void
test_hold_keeps_the_queue_until_released(void **state)
{
    struct cat *c = fresh("h.db");
    int64_t a = add(c, "A", "HE", 0), held = 0;
    char why[128];
    struct ss_err e;

    add(c, "B", "HE", 0);
    assert_int_equal(cat_queue_holder(c, &held, why, sizeof(why), &e),
                     -ENOENT);
    cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED), CAT_CAPTURING, "", &e);
    assert_int_equal(cat_scan_hold(c, a, "camera busy", &e), 0);
    assert_int_equal(cat_queue_holder(c, &held, why, sizeof(why), &e), 0);
    assert_int_equal(held, a);
    assert_string_equal(why, "camera busy");
    assert_int_equal(cat_scan_transition(c, a, CAT_BIT(CAT_PAUSED),
                                         CAT_QUEUED, "", &e), 0);
    assert_int_equal(cat_queue_holder(c, &held, why, sizeof(why), &e),
                     -ENOENT);
    cat_close(c);
}

static enum cat_state
state_of(struct cat *c, int64_t id, char *reason, size_t len)
{
    struct cat_scan s;
    struct ss_err e;

    assert_int_equal(cat_scan_get(c, id, &s, &e), 0);
    snprintf(reason, len, "%s", s.reason);
    return s.state;
}

/* A pause for space survives a restart as a wait that resumes by itself;
 * a pause a user asked for, or a fault's hold, stays. */
static void
test_space_wait_resumes_after_restart(void **state)
{
    struct cat *c = fresh("sw.db");
    int64_t a = add(c, "A", "HE", 0), b = add(c, "B", "HE", 0);
    int64_t u = add(c, "U", "HE", 0), h = add(c, "H", "HE", 0);
    int64_t q = add(c, "Q", "HE", 0), ids[64];
    char why[512];
    struct ss_err e;
    int n = -1;

    cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED), CAT_CAPTURING, "", &e);
    cat_scan_transition(c, b, CAT_BIT(CAT_QUEUED), CAT_FOCUSING, "", &e);
    cat_scan_transition(c, h, CAT_BIT(CAT_QUEUED), CAT_CAPTURING, "", &e);
    assert_int_equal(cat_scan_pause_for_space(c, a, "short a", &e), 0);
    assert_int_equal(cat_scan_pause_for_space(c, b, "short b", &e), 0);
    assert_int_equal(cat_scan_pause_for_space(c, q, "short q", &e), 0);
    assert_int_equal(cat_scan_request(c, b, "pause", &e), 0);
    assert_int_equal(cat_scan_transition(c, u, CAT_BIT(CAT_QUEUED),
                                         CAT_PAUSED, "paused by request",
                                         &e), 0);
    /* A wait that ended before a fault's hold is no longer a wait. */
    assert_int_equal(cat_scan_pause_for_space(c, h, "short h", &e), 0);
    cat_scan_transition(c, h, CAT_BIT(CAT_PAUSED), CAT_CAPTURING, "", &e);
    assert_int_equal(cat_scan_hold(c, h, "disk error", &e), 0);
    assert_int_equal(state_of(c, a, why, sizeof(why)), CAT_PAUSED);
    assert_string_equal(why, "short a");
    cat_close(c);

    assert_int_equal(cat_open(tu_tmp("sw.db"), &c, &e), 0);
    assert_int_equal(cat_scan_apply_requests(c, ids, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], b);
    assert_int_equal(cat_scan_rewait_space(c, ids, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], a);
    assert_int_equal(ids[1], q);
    assert_int_equal(state_of(c, a, why, sizeof(why)), CAT_CAPTURING);
    assert_string_equal(why, "");
    assert_int_equal(state_of(c, q, why, sizeof(why)), CAT_QUEUED);
    assert_int_equal(state_of(c, b, why, sizeof(why)), CAT_PAUSED);
    assert_string_equal(why, "paused by request");
    assert_int_equal(state_of(c, u, why, sizeof(why)), CAT_PAUSED);
    assert_string_equal(why, "paused by request");
    assert_int_equal(state_of(c, h, why, sizeof(why)), CAT_PAUSED);
    assert_string_equal(why, "disk error");
    /* Done once: a second start finds nothing to resume. */
    assert_int_equal(cat_scan_rewait_space(c, ids, &n, &e), 0);
    assert_int_equal(n, 0);
    cat_close(c);
}

/* A catalogue of schema 3 knows a pause for space only by its reason:
 * the migration sends such a scan back to the queue at the next start. */
static void
test_space_wait_of_schema_3_migrates(void **state)
{
    struct cat *c = fresh("sw3.db");
    int64_t a = add(c, "A", "HE", 0), u = add(c, "U", "HE", 0), ids[64];
    char why[512];
    struct ss_err e;
    int n = -1;

    assert_int_equal(cat_scan_transition(c, u, CAT_BIT(CAT_QUEUED),
                                         CAT_PAUSED, "paused by request",
                                         &e), 0);
    assert_int_equal(cat_exec(c, "ALTER TABLE scans DROP COLUMN "
                              "space_from", ""), 0);
    assert_int_equal(cat_exec(c, "PRAGMA user_version = 3", ""), 0);
    assert_int_equal(cat_exec(c, "UPDATE scans SET state = 'paused', "
                              "reason = 'not enough free space on /d for "
                              "this scan (1 GiB free); the scan resumes by "
                              "itself when space is freed' WHERE id = ?",
                              "i", a), 0);
    cat_close(c);
    assert_int_equal(cat_open(tu_tmp("sw3.db"), &c, &e), 0);
    assert_int_equal(cat_scan_rewait_space(c, ids, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], a);
    assert_int_equal(state_of(c, a, why, sizeof(why)), CAT_QUEUED);
    assert_int_equal(state_of(c, u, why, sizeof(why)), CAT_PAUSED);
    cat_close(c);
}

static struct acq_plan *
plan3(void)
{
    struct acq_plan *p = calloc(1, sizeof(*p));
    int i;

    p->origin_x_um = 1000.25;
    p->origin_y_um = 2000.5;
    p->step_x_um = 921.6;
    p->step_y_um = 691.2;
    p->rows = 1;
    p->cols = 3;
    p->frame_w = 2048;
    p->frame_h = 1536;
    p->pixel_um = 0.5;
    p->ntiles = 3;
    p->cells_total = 3;
    p->tiles = calloc(3, sizeof(*p->tiles));
    for (i = 0; i < 3; i++) {
        p->tiles[i].index = i;
        p->tiles[i].col = i;
        p->tiles[i].x_um = p->origin_x_um + i * p->step_x_um;
        p->tiles[i].y_um = p->origin_y_um;
        p->tiles[i].tissue_frac = 0.25 * i;
    }
    return p;
}

static void
test_plan_and_tiles_round_trip(void **state)
{
    struct cat *c = fresh("p.db");
    int64_t a = add(c, "A", "HE", 0);
    struct acq_plan *p = plan3(), *q = NULL;
    struct cat_tile_rec r = { 0 };
    struct cat_tile *t = NULL;
    uint8_t *st = NULL;
    struct cat_scan s;
    struct ss_err e;
    int n = 0;

    assert_int_equal(cat_plan_load(c, a, &q, &e), -ENOENT);
    assert_int_equal(cat_plan_save(c, a, p, &e), 0);
    assert_int_equal(cat_plan_load(c, a, &q, &e), 0);
    assert_int_equal(q->ntiles, 3);
    assert_true(q->tiles[2].x_um == p->tiles[2].x_um);
    assert_true(q->tiles[2].tissue_frac == 0.5);
    assert_true(q->step_y_um == 691.2 && q->pixel_um == 0.5);

    r.state = CAT_T_CAPTURED;
    r.file = "scans/1/tiles/1.jpg";
    r.checksum = "ab";
    r.x_um = 1922;
    r.flags = 4;
    assert_int_equal(cat_tile_record(c, a, 1, &r, &e), 0);
    assert_int_equal(cat_tile_record(c, a, 1, &r, &e), 0);
    assert_int_equal(cat_tile_record(c, a, 7, &r, &e), -ENOENT);
    assert_int_equal(cat_scan_get(c, a, &s, &e), 0);
    assert_int_equal(s.tiles_done, 1);
    assert_int_equal(s.tiles_total, 3);
    assert_int_equal(cat_plan_save(c, a, p, &e), -EALREADY);
    assert_int_equal(cat_tile_states(c, a, &st, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(st[0], CAT_T_PLANNED);
    assert_int_equal(st[1], CAT_T_CAPTURED);
    assert_int_equal(cat_tiles_load(c, a, &t, &n, &e), 0);
    assert_true(t[1].rx_um == 1922 && t[0].rx_um == t[0].x_um);
    assert_string_equal(t[1].checksum, "ab");
    assert_int_equal(cat_tile_reset(c, a, 1, &e), 0);
    assert_int_equal(cat_scan_get(c, a, &s, &e), 0);
    assert_int_equal(s.tiles_done, 0);
    free(st);
    free(t);
    cat_plan_free(q);
    cat_plan_free(p);
    cat_close(c);
}

static void
test_focus_points_round_trip(void **state)
{
    struct cat *c = fresh("f.db");
    int64_t a = add(c, "A", "HE", 0);
    struct acq_focus_point pts[2] = { { 1, 2, 3.25, 9, true },
                                      { 4, 5, 6.5, 1, false } };
    struct acq_focus_map fm, *back = NULL;
    struct ss_err e;

    memset(&fm, 0, sizeof(fm));
    fm.npoints = 2;
    fm.points = pts;
    fm.model = 1;
    fm.coef[0] = 0.1;
    fm.coef[2] = -1.0 / 3;
    fm.rms_um = 0.25;
    assert_int_equal(cat_focus_load(c, a, &back, &e), -ENOENT);
    assert_int_equal(cat_focus_save(c, a, &fm, &e), 0);
    assert_int_equal(cat_focus_load(c, a, &back, &e), 0);
    assert_int_equal(back->npoints, 2);
    assert_int_equal(back->model, 1);
    assert_true(back->coef[2] == -1.0 / 3);
    assert_true(back->points[0].z_um == 3.25 && back->points[0].ok);
    assert_false(back->points[1].ok);
    cat_focus_free(back);
    cat_close(c);
}

static void
test_image_and_analysis_records(void **state)
{
    struct cat *c = fresh("a.db");
    int64_t a = add(c, "A", "KI67", 0), q = 0;
    struct cat_wsi w = { "slides/A/A-s1.svs", 12345, 400, 300, 0.5, "ff",
                         0.2, 3, 4 };
    json_t *show = NULL, *scan, *an;
    struct ss_err e;

    cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED), CAT_ASSEMBLING, "", &e);
    assert_int_equal(cat_scan_wsi(c, a, &w, &e), 0);
    assert_int_equal(cat_analysis_queue(c, a, &e), 0);
    assert_int_equal(cat_analysis_next(c, &q, &e), 0);
    assert_int_equal(q, a);
    assert_int_equal(cat_analysis_record(c, a, "{\"version\":1}", &e),
                     SS_EFORMAT);
    assert_string_equal(e.msg, "results.json: tumor_area_mm2: missing");
    assert_int_equal(cat_analysis_record(c, a, "{\"version\":1,"
        "\"tumor_area_mm2\":1.5,\"stroma_area_mm2\":0.5,"
        "\"tissue_area_mm2\":2.5,\"tumor_stroma_ratio\":0.75,"
        "\"ki67_index\":0.3,\"ck_positive_area_mm2\":null,"
        "\"files\":{\"overlay\":\"overlay.tif\"}}", &e), 0);
    assert_int_equal(cat_analysis_next(c, &q, &e), -ENOENT);
    assert_int_equal(cat_slide_show_json(c, "A", false, &show, &e), 0);
    assert_string_equal(json_string_value(json_object_get(show,
                                                          "wsi_path")),
                        w.path);
    assert_true(json_real_value(json_object_get(show, "mpp")) == 0.5);
    scan = json_array_get(json_object_get(show, "scans"), 0);
    assert_string_equal(json_string_value(json_object_get(scan, "state")),
                        "done");
    an = json_object_get(scan, "analysis");
    assert_string_equal(json_string_value(json_object_get(an, "state")),
                        "done");
    assert_true(json_real_value(json_object_get(an, "ki67_index")) == 0.3);
    assert_true(json_is_null(json_object_get(an, "ck_positive_area_mm2")));
    assert_string_equal(json_string_value(json_object_get(an,
                                                          "overlay_path")),
                        "overlay.tif");
    json_decref(show);
    assert_int_equal(cat_slide_show_json(c, "nope", false, &show, &e),
                     -ENOENT);
    cat_close(c);
}

static void
test_calibrations_newest_matching(void **state)
{
    struct cat *c = fresh("k.db");
    struct cat_calib k = { 0, "HE", "20x", 250, "calib/1", "2026-01-01T"
                           "00:00:00Z" }, got;
    struct ss_err e;
    int64_t id1, id2;

    assert_int_equal(cat_calib_add(c, &k, &id1, &e), 0);
    snprintf(k.dir, sizeof(k.dir), "calib/2");
    assert_int_equal(cat_calib_add(c, &k, &id2, &e), 0);
    k.exposure_ms = 600;
    assert_int_equal(cat_calib_add(c, &k, NULL, &e), 0);
    assert_int_equal(cat_calib_latest(c, "HE", "20x", 250, &got, &e), 0);
    assert_int_equal(got.id, id2);
    assert_string_equal(got.dir, "calib/2");
    assert_int_equal(cat_calib_latest(c, "HE", "40x", 250, &got, &e),
                     -ENOENT);
    cat_close(c);
}

static void
test_listings_and_events(void **state)
{
    struct cat *c = fresh("l.db");
    int64_t a = add(c, "A", "HE", 0), b = add(c, "B", "HE", 0), n = 0;
    json_t *q = NULL, *s;
    struct ss_err e;

    cat_scan_transition(c, a, CAT_BIT(CAT_QUEUED), CAT_CANCELLED, "x", &e);
    assert_int_equal(cat_queue_json(c, false, 10, &q, &e), 0);
    assert_int_equal(json_array_size(json_object_get(q, "scans")), 1);
    s = json_array_get(json_object_get(q, "scans"), 0);
    assert_int_equal(json_integer_value(json_object_get(s, "id")), b);
    assert_int_equal(json_integer_value(json_object_get(s, "position")), 1);
    json_decref(q);
    assert_int_equal(cat_queue_json(c, true, 10, &q, &e), 0);
    assert_int_equal(json_array_size(json_object_get(q, "scans")), 2);
    json_decref(q);
    assert_int_equal(cat_event(c, 1000, "cancel", a, "by hand", &e), 0);
    assert_int_equal(cat_event(c, -1, "started", 0, NULL, &e), 0);
    assert_int_equal(cat_query_int(c, &n, "SELECT COUNT(*) FROM events "
                                   "WHERE uid = 1000 AND scan = ? AND "
                                   "action = 'cancel'", "i", a), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cat_query_int(c, &n, "SELECT COUNT(*) FROM events "
                                   "WHERE uid IS NULL AND scan IS NULL",
                                   ""), 0);
    assert_int_equal(n, 1);
    cat_close(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_is_versioned),
        cmocka_unit_test(test_queue_runs_by_priority_then_position),
        cmocka_unit_test(test_state_rules_name_the_state),
        cmocka_unit_test(test_hold_keeps_the_queue_until_released),
        cmocka_unit_test(test_space_wait_resumes_after_restart),
        cmocka_unit_test(test_space_wait_of_schema_3_migrates),
        cmocka_unit_test(test_plan_and_tiles_round_trip),
        cmocka_unit_test(test_focus_points_round_trip),
        cmocka_unit_test(test_image_and_analysis_records),
        cmocka_unit_test(test_calibrations_newest_matching),
        cmocka_unit_test(test_listings_and_events),
    };

    return cmocka_run_group_tests_name("catalogue_queue", tests, NULL,
                                       NULL);
}
