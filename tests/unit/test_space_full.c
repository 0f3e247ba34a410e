/* SPDX-License-Identifier: MIT */
/*
 * storage/space and every writer of a scan on a full disk.  The disk is
 * an 8 MiB tmpfs mounted in a private mount namespace of this process (it
 * disappears with the process, whatever happens); without the privilege
 * to make one the disk tests skip.  A write that fails for space must say
 * so (-ENOSPC, naming the file), leave nothing half-written and leave
 * what was there before intact; once space is freed the same write works.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/catalogue.h"
#include "storage/space.h"
#include "storage/tilestore.h"
#include "storage/wsi.h"

static char disk[4096];
static bool have_disk;
static char why_not[256];

static int
setup_disk(void **state)
{
    snprintf(disk, sizeof(disk), "%s", tu_tmp("disk"));
    mkdir(disk, 0755);
    if (unshare(CLONE_NEWNS) != 0) {
        snprintf(why_not, sizeof(why_not), "no private mount namespace "
                 "(%s); needs root", strerror(errno));
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", disk, "tmpfs", 0, "size=8m,mode=0755") != 0) {
        snprintf(why_not, sizeof(why_not), "cannot mount a tmpfs: %s",
                 strerror(errno));
        return 0;
    }
    have_disk = true;
    return 0;
}

static int
teardown_disk(void **state)
{
    if (have_disk)
        umount2(disk, MNT_DETACH);
    return 0;
}

static const char *
on_disk(const char *name)
{
    static char path[4][4200];
    static int k;

    k = (k + 1) % 4;
    snprintf(path[k], sizeof(path[k]), "%s/%s", disk, name);
    return path[k];
}

/* Fills the disk with a file until fewer than leave_bytes are free. */
static void
fill(const char *name, uint64_t leave_bytes)
{
    static char block[65536];
    uint64_t avail = 0;
    int fd = open(on_disk(name), O_WRONLY | O_CREAT | O_APPEND, 0600);

    assert_true(fd >= 0);
    memset(block, 0x5a, sizeof(block));
    for (;;) {
        size_t n = sizeof(block);
        assert_int_equal(util_free_bytes(disk, &avail, NULL), 0);
        if (avail <= leave_bytes)
            break;
        if (avail - leave_bytes < n)
            n = (size_t)(avail - leave_bytes);
        if (write(fd, block, n) <= 0)
            break;
    }
    close(fd);
}

static struct img *
noise_tile(int w, int h, unsigned seed)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    uint8_t *p = im->data;
    size_t i;

    for (i = 0; i < img_bytes(im); i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return im;
}

static int
count_temp_files(const char *dir)
{
    char cmd[4400];
    int n = -1;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "find '%s' -name '*.tmp*' -o -name "
             "'*.partial' | wc -l", dir);
    p = popen(cmd, "r");
    if (p != NULL && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p != NULL)
        pclose(p);
    return n;
}

static void
test_estimate_from_plan(void **state)
{
    struct space_policy p;
    struct space_need n;
    struct acq_plan plan;

    space_policy_default(&p);
    memset(&plan, 0, sizeof(plan));
    plan.frame_w = 2048;
    plan.frame_h = 1536;
    plan.pixel_um = 0.5;
    plan.step_x_um = 2048 * 0.5 * 0.9;
    plan.step_y_um = 1536 * 0.5 * 0.9;
    plan.rows = 4;
    plan.cols = 5;
    plan.ntiles = 12;
    plan.cells_total = 20;
    space_estimate(&p, &plan, 12, true, &n);
    assert_int_equal(n.tile_bytes, 2048 * 1536);        /* 1.0 B/px */
    assert_int_equal(n.tiles_bytes, 12ull * 2048 * 1536);
    /* 12 tissue cells of 1843.2 × 1382.4 px at 0.6 B/px (18.35 MB), 8
     * glass cells and the frame margin of the last row and column at
     * 0.02 B/px (0.52 MB). */
    assert_true(n.wsi_bytes > 18700000 && n.wsi_bytes < 19000000);
    assert_int_equal(n.analysis_bytes, n.wsi_bytes);
    assert_int_equal(n.total_bytes, n.tiles_bytes + n.wsi_bytes +
                     n.analysis_bytes);
    space_estimate(&p, &plan, 3, false, &n);
    assert_int_equal(n.total_bytes, 3ull * 2048 * 1536);
}

static void
test_policy_keys(void **state)
{
    struct space_policy p;
    struct ss_err e;
    char buf[32];

    space_policy_default(&p);
    assert_int_equal(p.reserve_bytes, 512ull << 20);
    assert_int_equal(space_policy_set(&p, "reserve_mb", "2", &e), 0);
    assert_int_equal(p.reserve_bytes, 2ull << 20);
    assert_int_equal(space_policy_set(&p, "recheck_s", "0", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "recheck_s: 0 is outside 0.1..86400");
    assert_int_equal(space_policy_set(&p, "reserve", "1", &e), SS_ECONFIG);
    assert_string_equal(e.msg, "reserve: unknown storage setting");
    space_fmt(1536ull << 20, buf, sizeof(buf));
    assert_string_equal(buf, "1.50 GiB");
    space_fmt(12, buf, sizeof(buf));
    assert_string_equal(buf, "12 B");
    assert_true(space_is_full(-ENOSPC) && space_is_full(-EDQUOT));
    assert_false(space_is_full(-EIO));
}

/* The check before a scan: need plus reserve against what is free. */
static void
test_check_refuses_a_scan_that_cannot_finish(void **state)
{
    struct space_policy p;
    struct ss_err e;
    uint64_t avail = 0;

    if (!have_disk)
        tu_skip("%s", why_not);
    space_policy_default(&p);
    p.reserve_bytes = 1 << 20;
    assert_int_equal(space_check(&p, disk, 4 << 20, &avail, &e), 0);
    assert_true(avail > (7 << 20));
    assert_int_equal(space_check(&p, disk, 15 << 19, NULL, &e), -ENOSPC);
    assert_non_null(strstr(e.msg, disk));
    assert_non_null(strstr(e.msg, "MiB free; the scan needs 7.5 MiB more "
                           "plus a 1.0 MiB reserve"));
}

/* A shortfall against the estimate and the reserve, on a disk with room
 * (the working directory), or after a write that failed otherwise, is
 * "not enough free space ... for this scan" naming the reserve's key;
 * never "disk full". */
static void
test_reason_for_a_reserve_shortfall(void **state)
{
    struct space_policy pol;
    char reason[1024], want[700];
    struct ss_err e;

    space_policy_default(&pol);
    assert_int_equal(space_policy_set(&pol, "reserve_mb", "100000000", &e),
                     0);
    space_full_reason(&pol, ".", 35 << 20, NULL, reason, sizeof(reason));
    assert_null(strstr(reason, "disk full"));
    assert_true(strncmp(reason, "not enough free space on . for this scan "
                        "(", 41) == 0);
    snprintf(want, sizeof(want), " free; the rest of the scan needs 35.0 "
             "MiB plus the 97656.25 GiB reserve, [storage] reserve_mb); "
             "the scan resumes by itself when space is freed");
    assert_non_null(strstr(reason, want));
    assert_int_equal(strlen(strstr(reason, want)), strlen(want));

    err_set(&e, -EIO, "slide.svs: writing a tile: Input/output error");
    space_full_reason(&pol, ".", 1 << 20, &e, reason, sizeof(reason));
    assert_true(strncmp(reason, "not enough free space on . ", 27) == 0);
    assert_non_null(strstr(reason, "reserve_mb): slide.svs: writing a tile: "
                           "Input/output error; the scan resumes"));
    err_set(&e, -ENOSPC, "tile 3: No space left on device");
    space_full_reason(&pol, ".", 1 << 20, &e, reason, sizeof(reason));
    assert_true(strncmp(reason, "disk full on . (", 16) == 0);
    (void)state;
}

/* Tiles: ENOSPC names the tile, leaves no temporary file and no broken
 * tile; the tiles stored before still verify; freeing space lets the same
 * tile be stored. */
static void
test_tile_store_on_a_full_disk(void **state)
{
    char hex[8][65], reason[1024];
    struct space_policy pol;
    struct tilestore *ts;
    struct img *im;
    struct ss_err e;
    int i, rc = 0, stored = 0;

    if (!have_disk)
        tu_skip("%s", why_not);
    assert_int_equal(tilestore_open(on_disk("data"), 1, &ts, &e), 0);
    fill("filler", 900 << 10);
    for (i = 0; i < 8; i++) {
        im = noise_tile(256, 192, (unsigned)i);
        rc = tilestore_put(ts, i, im, hex[i], &e);
        img_free(im);
        if (rc < 0)
            break;
        stored++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(stored >= 1 && stored < 8);
    assert_non_null(strstr(e.msg, "tile "));
    assert_non_null(strstr(e.msg, ".jpg"));
    assert_non_null(strstr(e.msg, "No space left on device"));
    assert_int_equal(count_temp_files(disk), 0);
    for (i = 0; i < stored; i++)
        assert_int_equal(tilestore_verify(ts, i, hex[i], &e), 0);
    assert_int_equal(access(on_disk("data/scans/1/tiles/7.jpg"), F_OK), -1);

    space_policy_default(&pol);
    assert_int_equal(e.code, -ENOSPC);
    space_full_reason(&pol, disk, 3 << 20, &e, reason, sizeof(reason));
    assert_true(strncmp(reason, "disk full on ", 13) == 0);
    assert_non_null(strstr(reason, " free; the rest of the scan needs "
                           "3.0 MiB plus the 512.0 MiB reserve, [storage] "
                           "reserve_mb): "));
    assert_non_null(strstr(reason, "No space left on device; the scan "
                           "resumes by itself when space is freed"));

    unlink(on_disk("filler"));
    for (i = stored; i < 8; i++) {
        im = noise_tile(256, 192, (unsigned)i);
        assert_int_equal(tilestore_put(ts, i, im, hex[i], &e), 0);
        img_free(im);
    }
    for (i = 0; i < 8; i++)
        assert_int_equal(tilestore_verify(ts, i, hex[i], &e), 0);
    tilestore_close(ts);
}

static int
insert_rows(sqlite3 *db, int from, int to)
{
    char sql[256];
    int i, rc = SQLITE_OK;

    for (i = from; i < to && rc == SQLITE_OK; i++) {
        snprintf(sql, sizeof(sql), "INSERT INTO events (time, action, "
                 "detail) VALUES ('t', 'fill', printf('%%.*c', 4000, "
                 "'x') || %d)", i);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    return rc;
}

/* The catalogue: a write that meets a full disk fails with -ENOSPC and
 * the database stays whole; after freeing space writes work again. */
static void
test_catalogue_on_a_full_disk(void **state)
{
    struct cat *c;
    struct ss_err e;
    sqlite3_stmt *s;
    int64_t n = 0;
    int rc;

    if (!have_disk)
        tu_skip("%s", why_not);
    mkdir(on_disk("cat"), 0750);
    assert_int_equal(cat_open(on_disk("cat/catalogue.db"), &c, &e), 0);
    assert_int_equal(cat_event(c, -1, "start", 0, "", &e), 0);
    fill("filler2", 200 << 10);
    rc = insert_rows((sqlite3 *)cat_db(c), 0, 400);
    assert_int_equal(rc & 0xff, SQLITE_FULL);
    rc = cat_event(c, -1, "after", 0, "detail", &e);
    if (rc == 0) {
        /* A small write may still fit; a large one cannot. */
        rc = insert_rows((sqlite3 *)cat_db(c), 400, 800);
        assert_int_equal(rc & 0xff, SQLITE_FULL);
    } else {
        assert_int_equal(rc, -ENOSPC);
        assert_non_null(strstr(e.msg, "catalogue.db"));
    }
    assert_int_equal(sqlite3_prepare_v2((sqlite3 *)cat_db(c),
                     "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    unlink(on_disk("filler2"));
    assert_int_equal(cat_event(c, -1, "freed", 0, "", &e), 0);
    assert_int_equal(cat_query_int(c, &n, "SELECT COUNT(*) FROM events "
                                   "WHERE action = 'freed'", ""), 0);
    assert_int_equal(n, 1);
    cat_close(c);
}

static int
write_wsi(const char *path, int w, int h, struct ss_err *e)
{
    struct wsi_writer *wr;
    struct wsi_meta meta;
    struct img *band;
    int rc, y;

    wsi_meta_default(&meta);
    meta.threads = 1;
    rc = wsi_writer_open(path, w, h, &meta, &wr, e);
    if (rc < 0)
        return rc;
    for (y = 0; y < h && rc == 0; y += 64) {
        band = noise_tile(w, 64, (unsigned)y);
        rc = wsi_writer_rows(wr, band->data, h - y < 64 ? h - y : 64, e);
        img_free(band);
    }
    if (rc < 0) {
        wsi_writer_abort(wr);
        return rc;
    }
    return wsi_writer_finish(wr, e);
}

/* Assembly: the WSI writer on a full disk says "no space", leaves neither
 * a partial file nor anything at the final name; with space it works. */
static void
test_wsi_writer_on_a_full_disk(void **state)
{
    struct space_policy p;
    struct wsi_meta meta;
    struct ss_err e;
    int rc;

    if (!have_disk)
        tu_skip("%s", why_not);
    mkdir(on_disk("slides"), 0750);
    fill("filler3", 1 << 20);
    err_clear(&e);
    rc = write_wsi(on_disk("slides/s.tif"), 1024, 768, &e);
    print_message("# wsi on a full disk: rc %d: %s\n", rc, e.msg);
    assert_true(rc < 0);
    /* The daemon's decision: a failure for space, so wait for space. */
    space_policy_default(&p);
    p.reserve_bytes = 0;
    wsi_meta_default(&meta);
    assert_true(space_write_full(&p, disk, wsi_estimate_max_bytes(1024, 768,
                                 &meta), rc));
    assert_non_null(strstr(e.msg, "No space left on device"));
    assert_non_null(strstr(e.msg, "slides/s.tif"));
    assert_int_equal(access(on_disk("slides/s.tif"), F_OK), -1);
    assert_int_equal(count_temp_files(disk), 0);
    unlink(on_disk("filler3"));
    assert_int_equal(write_wsi(on_disk("slides/s.tif"), 1024, 768, &e), 0);
    assert_int_equal(count_temp_files(disk), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_from_plan),
        cmocka_unit_test(test_policy_keys),
        cmocka_unit_test(test_check_refuses_a_scan_that_cannot_finish),
        cmocka_unit_test(test_reason_for_a_reserve_shortfall),
        cmocka_unit_test(test_tile_store_on_a_full_disk),
        cmocka_unit_test(test_catalogue_on_a_full_disk),
        cmocka_unit_test(test_wsi_writer_on_a_full_disk),
    };

    return cmocka_run_group_tests_name("space", tests, setup_disk,
                                       teardown_disk);
}
