/* SPDX-License-Identifier: MIT */
/*
 * storage/backup: a data directory built with the real catalogue and tile
 * store (a finished scan with its slide image, analysis output and
 * calibration; a scan still capturing with its tiles) is backed up while
 * another thread keeps recording tiles, restored elsewhere and checked;
 * a second backup copies nothing new; damaged sources and backups are
 * named; a copy damaged or lost in the backup is repaired by the next
 * backup run (a quick run trusts size and modification time); a
 * catalogue in use or present is not overwritten.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/backup.h"
#include "storage/catalogue.h"
#include "storage/tilestore.h"

#define TILES 12

static char data[4096], cat_path[4200];

static struct img *
tile_img(int scan, int idx)
{
    struct img *im = img_new(48, 32, 3, IMG_U8);
    uint8_t *p = im->data;
    size_t i;

    for (i = 0; i < img_bytes(im); i++)
        p[i] = (uint8_t)(i * 7 + (size_t)idx * 13 + (size_t)scan * 29);
    return im;
}

static void
put_file(const char *rel, const char *text)
{
    char path[8192], dir[8192];

    snprintf(path, sizeof(path), "%s/%s", data, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(tilestore_mkdir_durable(dir, NULL), 0);
    assert_int_equal(util_write_durable(path, text, strlen(text), NULL), 0);
}

static int64_t
new_scan(struct cat *c, const char *slide)
{
    struct cat_scan_req req = { .slide = slide, .stain = "HE",
                                .image = "" };
    struct acq_tile t[TILES];
    struct acq_plan p;
    int64_t id;
    int i;

    assert_int_equal(cat_scan_add(c, &req, &id, NULL), 0);
    memset(&p, 0, sizeof(p));
    /* Positions left to the stack's garbage could be NaN, which SQLite
     * stores as NULL and the plan's NOT NULL columns refuse. */
    memset(t, 0, sizeof(t));
    p.rows = 3;
    p.cols = 4;
    p.frame_w = 48;
    p.frame_h = 32;
    p.pixel_um = 0.5;
    p.step_x_um = 21.6;
    p.step_y_um = 14.4;
    p.ntiles = p.cells_total = TILES;
    p.tiles = t;
    for (i = 0; i < TILES; i++) {
        t[i].index = i;
        t[i].row = i / 4;
        t[i].col = i % 4;
    }
    assert_int_equal(cat_plan_save(c, id, &p, NULL), 0);
    return id;
}

static void
record_tile(struct cat *c, struct tilestore *ts, int64_t scan, int idx)
{
    struct cat_tile_rec r = { 0 };
    struct img *im = tile_img((int)scan, idx);
    char hex[65], rel[128];
    struct ss_err e;

    assert_int_equal(tilestore_put(ts, idx, im, hex, &e), 0);
    img_free(im);
    tilestore_rel(ts, idx, rel, sizeof(rel));
    r.state = CAT_T_CAPTURED;
    r.file = rel;
    r.checksum = hex;
    assert_int_equal(cat_tile_record(c, scan, idx, &r, &e), 0);
}

/* Scan 1 done (slide image, analysis, calibration), scan 2 capturing with
 * 5 tiles stored. */
static void
build_data(void)
{
    struct cat_wsi w = { 0 };
    struct cat_calib k = { 0 };
    struct tilestore *ts;
    struct cat *c;
    char hex[65], path[8192];
    int64_t s1, s2, kid;
    int i;

    snprintf(data, sizeof(data), "%s", tu_tmp("data"));
    snprintf(cat_path, sizeof(cat_path), "%s/catalogue.db", data);
    assert_int_equal(tilestore_mkdir_durable(data, NULL), 0);
    assert_int_equal(cat_open(cat_path, &c, NULL), 0);
    s1 = new_scan(c, "S-1");
    assert_int_equal(cat_scan_transition(c, s1, CAT_BIT(CAT_QUEUED),
                                         CAT_CAPTURING, NULL, NULL), 0);
    put_file("calib/HE-20x-250ms/dark.raw", "dark frame bytes");
    put_file("calib/HE-20x-250ms/meta.json", "{\"stain\":\"HE\"}");
    snprintf(k.stain, sizeof(k.stain), "HE");
    snprintf(k.objective, sizeof(k.objective), "20x");
    k.exposure_ms = 250;
    snprintf(k.dir, sizeof(k.dir), "calib/HE-20x-250ms");
    snprintf(k.taken, sizeof(k.taken), "2026-12-04T10:00:00Z");
    assert_int_equal(cat_calib_add(c, &k, &kid, NULL), 0);

    put_file("slides/S-1/scan-1.tif", "a whole-slide image, pretend");
    snprintf(path, sizeof(path), "%s/slides/S-1/scan-1.tif", data);
    assert_int_equal(util_sha256_file(path, hex, NULL), 0);
    w.path = "slides/S-1/scan-1.tif";
    w.bytes = 28;
    w.width = 100;
    w.height = 80;
    w.mpp = 0.5;
    w.sha256 = hex;
    assert_int_equal(cat_scan_wsi(c, s1, &w, NULL), 0);
    assert_int_equal(cat_analysis_queue(c, s1, NULL), 0);
    assert_int_equal(cat_analysis_started(c, s1, "slides/S-1/analysis-s1",
                                          NULL, NULL), 0);
    put_file("slides/S-1/analysis-s1/overlay.png", "overlay pixels");
    put_file("slides/S-1/analysis-s1/results.json", "{}");
    assert_int_equal(cat_analysis_record(c, s1, "{\"version\":1,"
        "\"tumor_area_mm2\":1.5,\"stroma_area_mm2\":2,\"tissue_area_mm2\":4,"
        "\"tumor_stroma_ratio\":0.75,\"ki67_index\":null,"
        "\"ck_positive_area_mm2\":null,\"files\":{\"overlay\":"
        "\"overlay.png\"}}", NULL), 0);

    s2 = new_scan(c, "S-2");
    assert_int_equal(cat_scan_transition(c, s2, CAT_BIT(CAT_QUEUED),
                                         CAT_CAPTURING, NULL, NULL), 0);
    assert_int_equal(tilestore_open(data, s2, &ts, NULL), 0);
    for (i = 0; i < 5; i++)
        record_tile(c, ts, s2, i);
    tilestore_close(ts);
    cat_close(c);
}

/* Stands for the daemon: stores the rest of scan 2's tiles, one by one,
 * while the backup runs. */
struct scanner {
    pthread_t tid;
    int stored;
};

static void *
scanner_main(void *arg)
{
    struct scanner *s = arg;
    struct tilestore *ts;
    struct cat *c;
    int i;

    assert_int_equal(cat_open(cat_path, &c, NULL), 0);
    assert_int_equal(tilestore_open(data, 2, &ts, NULL), 0);
    for (i = 5; i < TILES; i++) {
        record_tile(c, ts, 2, i);
        s->stored++;
        usleep(2000);
    }
    tilestore_close(ts);
    cat_close(c);
    return NULL;
}

static void
test_backup_during_scan_restores_and_verifies(void **state)
{
    const char *dest = tu_tmp("backup"), *again = tu_tmp("restored");
    char rcat[8192];
    struct backup_report r;
    struct scanner sc = { 0 };
    struct ss_err e;
    struct cat *c;
    struct cat_scan s;
    int first;

    build_data();
    pthread_create(&sc.tid, NULL, scanner_main, &sc);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    pthread_join(sc.tid, NULL);
    print_message("# backup: %d files, %d copied, %d snapshots; %d tiles "
                  "stored meanwhile\n", r.files, r.copied, r.snapshots,
                  sc.stored);
    first = r.files;
    /* WSI + 2 analysis files + 2 calibration files + 5..12 tiles. */
    assert_true(r.files >= 10 && r.files <= 17);
    assert_int_equal(r.copied, r.files);
    assert_int_equal(r.verified, r.files);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.schema, CAT_SCHEMA_VERSION);
    assert_int_equal(backup_verify(dest, &r, &e), 0);

    snprintf(rcat, sizeof(rcat), "%s/catalogue.db", again);
    if (backup_restore(dest, rcat, again, false, &r, &e) != 0)
        fail_msg("restore: %s", e.msg);
    assert_int_equal(r.problems, 0);
    assert_true(r.verified >= 8);
    assert_int_equal(backup_check(rcat, again, &r, &e), 0);
    assert_int_equal(cat_open(rcat, &c, &e), 0);
    assert_int_equal(cat_scan_get(c, 1, &s, &e), 0);
    assert_int_equal(s.state, CAT_DONE);
    assert_string_equal(s.wsi_path, "slides/S-1/scan-1.tif");
    assert_int_equal(cat_scan_get(c, 2, &s, &e), 0);
    assert_int_equal(s.state, CAT_CAPTURING);
    assert_true(s.tiles_done >= 5);
    cat_close(c);

    /* A second backup copies only the tiles stored since, a third
     * nothing. */
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.files, 5 + TILES);
    assert_int_equal(r.copied, 5 + TILES - first);
    assert_int_equal(r.kept, first);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.copied, 0);
    assert_int_equal(r.kept, r.files);
}

static void
test_damage_is_named(void **state)
{
    const char *dest = tu_tmp("backup2");
    char path[8192];
    struct backup_report r;
    struct ss_err e;
    int rc;

    build_data();
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);

    /* A damaged backup file is named by verify, and restore refuses. */
    snprintf(path, sizeof(path), "%s/files/slides/S-1/scan-1.tif", dest);
    assert_int_equal(util_write_durable(path, "bitrot", 6, NULL), 0);
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "scan-1.tif: checksum differs from the "
                           "manifest"));
    rc = backup_restore(dest, tu_tmp("r2/catalogue.db"), tu_tmp("r2"), false,
                        &r, &e);
    print_message("# %s\n", e.msg);
    assert_int_equal(rc, SS_EFORMAT);
    assert_non_null(strstr(e.msg, "not restoring"));
    assert_int_equal(access(tu_tmp("r2/catalogue.db"), F_OK), -1);

    /* A damaged source file is named by check and by backup. */
    snprintf(path, sizeof(path), "%s/slides/S-1/scan-1.tif", data);
    assert_int_equal(util_write_durable(path, "changed!", 8, NULL), 0);
    assert_int_equal(backup_check(cat_path, data, &r, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "scan-1.tif: checksum"));
    assert_int_equal(backup_create(cat_path, data, tu_tmp("backup3"), &r,
                                   &e), SS_EFORMAT);
    assert_int_equal(r.problems, 1);
    assert_int_equal(r.snapshots, 3);
    assert_non_null(strstr(e.msg, "differs from the catalogue's"));

    /* An interrupted backup: manifest and catalogue disagree. */
    snprintf(path, sizeof(path), "%s/catalogue.db", dest);
    assert_int_equal(util_write_durable(path, "x", 1, NULL), 0);
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "does not match the manifest"));
}

/* Overwrites 4 bytes inside the file at path, keeping its size; with
 * keep_time, also its modification time (damage a quick run cannot
 * see), otherwise the time moves on by a second, as after a later write
 * (whatever the file system's timestamp granularity). */
static void
damage_in_place(const char *path, bool keep_time)
{
    struct timespec t[2];
    struct stat st;
    int fd;

    assert_int_equal(stat(path, &st), 0);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "ZZZZ", 4, 3), 4);
    close(fd);
    t[0] = st.st_atim;
    t[1] = st.st_mtim;
    if (!keep_time)
        t[1].tv_sec++;
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

/* A backup run checks the copies already there against the manifest and
 * copies damaged or missing ones again, so that it leaves a backup that
 * verifies; a quick run trusts size and modification time. */
static void
test_damaged_copy_is_repaired(void **state)
{
    const char *dest = tu_tmp("backup6");
    struct backup_options quick = { .quick = true };
    char wsi[8192], res[8192], away[8192];
    struct backup_report r;
    struct ss_err e;

    (void)state;
    build_data();
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.files, 10);
    assert_int_equal(r.copied, 10);
    snprintf(wsi, sizeof(wsi), "%s/files/slides/S-1/scan-1.tif", dest);
    snprintf(res, sizeof(res), "%s/files/slides/S-1/analysis-s1/"
             "results.json", dest);

    /* Same size, other bytes: found by the checksum, copied again. */
    damage_in_place(wsi, false);
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    print_message("# repaired: %s\n", r.repair);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(r.copied, 0);
    assert_int_equal(r.kept, 9);
    assert_int_equal(r.verified, 10);
    assert_int_equal(r.problems, 0);
    assert_int_equal(r.bytes, 28);
    assert_non_null(strstr(r.repair, "scan-1.tif (checksum differs from "
                           "the manifest)"));
    assert_int_equal(backup_verify(dest, &r, &e), 0);
    assert_int_equal(r.verified, 10);

    /* A copy gone from the backup (directory contents too). */
    assert_int_equal(unlink(res), 0);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.repaired, 1);
    assert_non_null(strstr(r.repair, "results.json (No such file or "
                           "directory)"));
    assert_int_equal(backup_verify(dest, &r, &e), 0);

    /* A quick run reads nothing whose size and time are as recorded... */
    assert_int_equal(backup_create_with(cat_path, data, dest, &quick, &r,
                                        &e), 0);
    assert_int_equal(r.kept, 10);
    assert_int_equal(r.verified, 0);
    /* ... repairs what a write changed ... */
    damage_in_place(wsi, false);
    assert_int_equal(backup_create_with(cat_path, data, dest, &quick, &r,
                                        &e), 0);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(r.kept, 9);
    assert_int_equal(r.verified, 1);
    assert_int_equal(backup_verify(dest, &r, &e), 0);
    /* ... but not damage that kept both, which a full run repairs. */
    damage_in_place(wsi, true);
    assert_int_equal(backup_create_with(cat_path, data, dest, &quick, &r,
                                        &e), 0);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.repaired, 1);
    assert_int_equal(backup_verify(dest, &r, &e), 0);

    /* A run that goes round again (a directory the catalogue names is
     * gone from the data) still reports its one repair. */
    damage_in_place(wsi, false);
    snprintf(res, sizeof(res), "%s/slides/S-1/analysis-s1", data);
    snprintf(away, sizeof(away), "%s/away", data);
    assert_int_equal(rename(res, away), 0);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e),
                     SS_EFORMAT);
    assert_int_equal(r.snapshots, 3);
    assert_int_equal(r.problems, 1);
    assert_int_equal(r.repaired, 1);
    assert_non_null(strstr(r.repair, "scan-1.tif (checksum differs from "
                           "the manifest)"));
    assert_null(strstr(r.repair, "; "));
    assert_int_equal(rename(away, res), 0);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(backup_verify(dest, &r, &e), 0);

    /* A damaged copy whose source is damaged too cannot be repaired: the
     * run fails naming it, and the backup does not pass for whole. */
    damage_in_place(wsi, false);
    snprintf(res, sizeof(res), "%s/slides/S-1/scan-1.tif", data);
    damage_in_place(res, false);
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e),
                     SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_int_equal(r.repaired, 0);
    assert_int_equal(r.problems, 1);
    assert_non_null(strstr(e.msg, "scan-1.tif: checksum"));
    assert_non_null(strstr(e.msg, "differs from the catalogue's"));
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
}

/* A catalogue in use by another process is never replaced; an existing
 * one only with force, which also drops its stale WAL. */
static void
test_restore_refuses_live_catalogue(void **state)
{
    const char *dest = tu_tmp("backup4");
    char target[8192], wal[8300];
    struct backup_report r;
    struct ss_err e;
    struct cat *c;
    int pipefd[2], st;
    pid_t pid, holder = 0;
    char ok;

    build_data();
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    snprintf(target, sizeof(target), "%s", cat_path);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    if (pid == 0) {
        struct cat *held;
        if (cat_open(target, &held, NULL) != 0)
            _exit(3);
        if (write(pipefd[1], "y", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    assert_int_equal(read(pipefd[0], &ok, 1), 1);
    assert_true(backup_catalogue_in_use(target, &holder));
    assert_int_equal(holder, pid);
    assert_int_equal(backup_restore(dest, target, data, true, &r, &e),
                     -EBUSY);
    assert_non_null(strstr(e.msg, "is in use by process"));
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    close(pipefd[0]);
    close(pipefd[1]);

    assert_false(backup_catalogue_in_use(target, NULL));
    assert_int_equal(backup_restore(dest, target, data, false, &r, &e),
                     -EEXIST);
    assert_non_null(strstr(e.msg, "use --force"));
    snprintf(wal, sizeof(wal), "%s-wal", target);
    assert_int_equal(util_write_durable(wal, "stale", 5, NULL), 0);
    assert_int_equal(backup_restore(dest, target, data, true, &r, &e), 0);
    assert_int_equal(access(wal, F_OK), -1);
    assert_int_equal(cat_open(target, &c, &e), 0);
    cat_close(c);
}

/* Each failure is one outcome with its own code: no backup in SRC
 * (-ENOENT, nothing written), no catalogue to back up (-ENOENT, DEST not
 * created), a directory the catalogue names but the data lacks (a backup
 * problem, not a silent gap), and a backup lacking what its catalogue
 * names or recording problems (does not verify; restore writes nothing). */
static void
test_failures_are_named_once(void **state)
{
    const char *dest = tu_tmp("backup5"), *to = tu_tmp("r5");
    char path[8192], cmd[8400], rcat[8192];
    struct backup_report r;
    struct ss_err e;
    json_t *m, *files, *kept;
    size_t i;
    int rc;

    build_data();
    assert_int_equal(backup_verify(tu_tmp("nothing"), &r, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "holds no backup"));
    snprintf(rcat, sizeof(rcat), "%s/catalogue.db", to);
    assert_int_equal(backup_restore(tu_tmp("nothing"), rcat, to, false, &r,
                                    &e), -ENOENT);
    assert_non_null(strstr(e.msg, "not restoring"));
    assert_int_equal(access(to, F_OK), -1);
    assert_int_equal(backup_create(tu_tmp("nodata/catalogue.db"), data,
                                   dest, &r, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "nodata/catalogue.db: no such file"));
    assert_int_equal(access(dest, F_OK), -1);

    /* The backup lacks the analysis its catalogue names (its manifest
     * agrees): it does not verify, and restore writes nothing. */
    assert_int_equal(backup_create(cat_path, data, dest, &r, &e), 0);
    snprintf(path, sizeof(path), "%s/MANIFEST.json", dest);
    m = json_load_file(path, 0, NULL);
    assert_non_null(m);
    files = json_object_get(m, "files");
    kept = json_array();
    for (i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        if (strstr(json_string_value(json_object_get(f, "path")),
                   "analysis-s1") == NULL)
            json_array_append(kept, f);
    }
    assert_true(json_array_size(kept) < json_array_size(files));
    json_object_set_new(m, "files", kept);
    assert_int_equal(json_dump_file(m, path, 0), 0);
    json_decref(m);
    assert_int_equal(backup_verify(dest, &r, &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "is incomplete: 1 of the"));
    assert_non_null(strstr(e.msg, "analysis-s1 (analysis) is not in the "
                           "backup"));
    rc = backup_restore(dest, rcat, to, false, &r, &e);
    print_message("# %s\n", e.msg);
    assert_int_equal(rc, SS_EFORMAT);
    assert_non_null(strstr(e.msg, "not restoring"));
    assert_non_null(strstr(e.msg, "analysis-s1 (analysis) is not in the "
                           "backup"));
    assert_int_equal(r.copied, 0);
    assert_int_equal(access(to, F_OK), -1);

    /* The same gap in the source is a backup problem. */
    snprintf(cmd, sizeof(cmd), "rm -r '%s/slides/S-1/analysis-s1'", data);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(backup_create(cat_path, data, tu_tmp("backup6"), &r,
                                   &e), SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "analysis-s1: analysis directory "
                           "missing"));
    /* That backup is kept, marked incomplete: verify and restore say so
     * (from its manifest) and nothing is written. */
    assert_int_equal(backup_verify(tu_tmp("backup6"), &r, &e), SS_EFORMAT);
    print_message("# %s\n", e.msg);
    assert_non_null(strstr(e.msg, "is incomplete"));
    assert_non_null(strstr(e.msg, "the backup recorded when it was made"));
    assert_non_null(strstr(e.msg, "analysis directory missing"));
    assert_int_equal(backup_restore(tu_tmp("backup6"), rcat, to, false, &r,
                                    &e), SS_EFORMAT);
    assert_non_null(strstr(e.msg, "not restoring"));
    assert_int_equal(access(to, F_OK), -1);
}

static void
test_paths_from_config(void **state)
{
    char d[4096], cat[4096], origin[4200];
    const char *conf = tu_tmp("slidescan.conf");
    struct ss_err e;
    FILE *f = fopen(conf, "w");

    fputs("[daemon]\ndata_dir = /srv/scans\nsocket = /run/x.sock\n"
          "[simulator]\nseed = 3\n", f);
    fclose(f);
    assert_int_equal(backup_paths(conf, NULL, NULL, d, cat, &e), 0);
    assert_string_equal(d, "/srv/scans");
    assert_string_equal(cat, "/srv/scans/catalogue.db");
    assert_int_equal(backup_paths(conf, "/data", "/db/c.db", d, cat, &e), 0);
    assert_string_equal(d, "/data");
    assert_string_equal(cat, "/db/c.db");
    assert_int_equal(backup_paths(tu_tmp("missing.conf"), NULL, NULL, d, cat,
                                  &e), SS_ECONFIG);
    assert_non_null(strstr(e.msg, "missing.conf: cannot read"));

    /* Where the catalogue path came from, for the message when it is not
     * there. */
    assert_int_equal(backup_paths_origin(conf, NULL, NULL, d, cat, origin,
                                         sizeof(origin), &e), 0);
    assert_non_null(strstr(origin, "[daemon] data_dir of"));
    assert_non_null(strstr(origin, "slidescan.conf"));
    assert_int_equal(backup_paths_origin(conf, "/data", NULL, d, cat,
                                         origin, sizeof(origin), &e), 0);
    assert_string_equal(origin, "under --data-dir /data");
    assert_int_equal(backup_paths_origin(conf, NULL, "/db/c.db", d, cat,
                                         origin, sizeof(origin), &e), 0);
    assert_string_equal(origin, "given with --catalogue");
    f = fopen(conf, "w");
    fputs("[simulator]\nseed = 3\n", f);
    fclose(f);
    assert_int_equal(backup_paths_origin(conf, NULL, NULL, d, cat, origin,
                                         sizeof(origin), &e), 0);
    assert_string_equal(cat, "/var/lib/slidescan/catalogue.db");
    assert_non_null(strstr(origin, "the default"));
}

static int
fresh_tmp(void **state)
{
    char cmd[8300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", tu_tmpdir());
    return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_backup_during_scan_restores_and_verifies,
                               fresh_tmp),
        cmocka_unit_test_setup(test_damage_is_named, fresh_tmp),
        cmocka_unit_test_setup(test_damaged_copy_is_repaired, fresh_tmp),
        cmocka_unit_test_setup(test_restore_refuses_live_catalogue,
                               fresh_tmp),
        cmocka_unit_test_setup(test_failures_are_named_once, fresh_tmp),
        cmocka_unit_test(test_paths_from_config),
    };

    return cmocka_run_group_tests_name("backup", tests, NULL, NULL);
}
