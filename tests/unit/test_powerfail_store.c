/* SPDX-License-Identifier: MIT */
/*
 * Power cuts during a scan's writes, on the real catalogue and tile store:
 * a child process records a plan, stores 24 tiles (tilestore_put, then
 * cat_tile_record) and then the slide image, the way the scan thread does;
 * the power goes off at a chosen sync (tests/support/powerfail); the root
 * is rebuilt from what was durable.  Then: the catalogue passes
 * integrity_check, every tile whose record the child saw committed is
 * there with a file that matches its checksum, a resumed run completes the
 * scan, and at the end every tile is captured exactly once with the exact
 * bytes an uninterrupted run writes.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/img.h"
#include "common/util.h"
#include "storage/catalogue.h"
#include "storage/tilestore.h"

#define NTILES 24
#define TILE_W 64
#define TILE_H 48

static char self_exe[4096];

static const char *
tool(const char *name)
{
    static char path[2][4096];
    int i = strcmp(name, "powerfail") == 0;

    snprintf(path[i], sizeof(path[i]), "%s/support/%s", tu_build(), name);
    return path[i];
}

static bool
have_layer(void)
{
    return access(tool("powerfail.so"), R_OK) == 0 &&
           access(tool("powerfail"), X_OK) == 0;
}

static int
shell(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* The pixels of tile idx: the same in every run. */
static struct img *
pattern(int idx)
{
    struct img *im = img_new(TILE_W, TILE_H, 3, IMG_U8);
    int x, y;

    for (y = 0; y < TILE_H; y++)
        for (x = 0; x < TILE_W; x++) {
            uint8_t *p = img_u8(im, x, y);
            p[0] = (uint8_t)(x * 4 + idx);
            p[1] = (uint8_t)(y * 5 + 3 * idx);
            p[2] = (uint8_t)((x ^ y) + 7 * idx);
        }
    return im;
}

static void
plan_of(struct acq_plan *p, struct acq_tile *t)
{
    int i;

    memset(p, 0, sizeof(*p));
    p->rows = 4;
    p->cols = 6;
    p->frame_w = TILE_W;
    p->frame_h = TILE_H;
    p->pixel_um = 0.5;
    p->step_x_um = 28.8;
    p->step_y_um = 21.6;
    p->ntiles = NTILES;
    p->cells_total = NTILES;
    p->tiles = t;
    for (i = 0; i < NTILES; i++) {
        t[i].index = i;
        t[i].row = i / 6;
        t[i].col = (i / 6) % 2 ? 5 - i % 6 : i % 6;
        t[i].x_um = t[i].col * p->step_x_um;
        t[i].y_um = t[i].row * p->step_y_um;
    }
}

/* --- the child: one scan's writes, resumable -------------------------- */

static void
ack(FILE *f, const char *what, int idx)
{
    fprintf(f, "%s %d\n", what, idx);
    fflush(f);
}

static int
child_setup(struct cat *c, int64_t *scan, struct ss_err *e)
{
    struct cat_scan_req req = { "PF-1", "HE", "", 0, 0 };
    struct acq_tile tiles[NTILES];
    struct acq_plan plan;
    int64_t *ids = NULL;
    int n = 0, rc;

    struct cat_scan sc;

    rc = cat_scans_in(c, ~0u, &ids, &n, e);
    if (rc == 0 && n > 0)
        *scan = ids[0];
    else if (rc == 0)
        rc = cat_scan_add(c, &req, scan, e);
    free(ids);
    if (rc == 0)
        rc = cat_scan_get(c, *scan, &sc, e);
    if (rc == 0 && sc.tiles_total == 0) {   /* cut before the plan */
        plan_of(&plan, tiles);
        rc = cat_plan_save(c, *scan, &plan, e);
    }
    return rc;
}

static int
child_wsi(const char *root, struct cat *c, struct tilestore *ts,
          int64_t scan, struct ss_err *e)
{
    char path[4096], hex[65], rel[64];
    struct cat_wsi w = { 0 };
    char *buf = NULL, *all = NULL;
    size_t len, total = 0;
    int i, rc = 0;

    /* The "slide image" stands for the stitcher's output: every tile
     * file's bytes in order, written durably under its final name. */
    for (i = 0; i < NTILES && rc == 0; i++) {
        snprintf(path, sizeof(path), "%s/scans/%lld/tiles/%d.jpg", root,
                 (long long)scan, i);
        rc = util_read_file(path, &buf, &len, e);
        if (rc == 0) {
            all = realloc(all, total + len);
            memcpy(all + total, buf, len);
            total += len;
            free(buf);
        }
    }
    snprintf(rel, sizeof(rel), "slides/PF-1.tif");
    snprintf(path, sizeof(path), "%s/slides", root);
    if (rc == 0)
        rc = tilestore_mkdir_durable(path, e);
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (rc == 0)
        rc = util_write_durable(path, all, total, e);
    if (rc == 0)
        rc = util_sha256_file(path, hex, e);
    w.path = rel;
    w.bytes = (int64_t)total;
    w.width = TILE_W * 6;
    w.height = TILE_H * 4;
    w.mpp = 0.5;
    w.sha256 = hex;
    if (rc == 0)
        rc = cat_scan_wsi(c, scan, &w, e);
    free(all);
    (void)ts;
    return rc;
}

static int
child_scan(const char *root)
{
    char path[4096], hex[65], rel[128];
    struct tilestore *ts = NULL;
    struct cat *c = NULL;
    uint8_t *states = NULL;
    struct ss_err e;
    int64_t scan = 0;
    int i, n = 0, cleaned = 0, rc;
    FILE *acks;

    snprintf(path, sizeof(path), "%s.acked", root);
    acks = fopen(path, "a");
    snprintf(path, sizeof(path), "%s/catalogue.db", root);
    rc = acks == NULL ? -errno : cat_open(path, &c, &e);
    if (rc == 0)
        rc = child_setup(c, &scan, &e);
    if (rc == 0)
        rc = tilestore_open(root, scan, &ts, &e);
    if (rc == 0)
        rc = tilestore_clean(ts, &cleaned, &e);
    if (rc == 0)
        rc = cat_tile_states(c, scan, &states, &n, &e);
    for (i = 0; rc == 0 && i < n; i++) {
        struct cat_tile_rec r = { 0 };
        struct img *im;

        if (states[i] == CAT_T_CAPTURED)
            continue;
        im = pattern(i);
        rc = tilestore_put(ts, i, im, hex, &e);
        img_free(im);
        tilestore_rel(ts, i, rel, sizeof(rel));
        r.state = CAT_T_CAPTURED;
        r.file = rel;
        r.checksum = hex;
        if (rc == 0)
            rc = cat_tile_record(c, scan, i, &r, &e);
        if (rc == 0)
            ack(acks, "tile", i);
    }
    if (rc == 0)
        rc = child_wsi(root, c, ts, scan, &e);
    if (rc == 0)
        ack(acks, "wsi", 0);
    if (rc < 0)
        fprintf(stderr, "child: %s\n", e.msg);
    free(states);
    tilestore_close(ts);
    cat_close(c);
    if (acks != NULL)
        fclose(acks);
    return rc < 0 ? 1 : 0;
}

/* --- the parent ---------------------------------------------------------- */

static int
run_child(const char *root, const char *state, long cut_at)
{
    char at[32];
    pid_t pid;
    int st;

    snprintf(at, sizeof(at), "%ld", cut_at);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("LD_PRELOAD", tool("powerfail.so"), 1);
        setenv("POWERFAIL_STATE", state, 1);
        setenv("POWERFAIL_ROOT", root, 1);
        setenv("POWERFAIL_CUT_AT", at, 1);
        execl(self_exe, self_exe, "--pf-child", root, (char *)0);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static long
syncs_recorded(const char *state)
{
    char cmd[8192], line[512];
    long files, dirs, syncs = -1;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "'%s' status --state '%s'", tool("powerfail"),
             state);
    p = popen(cmd, "r");
    if (p != NULL && fgets(line, sizeof(line), p) != NULL)
        sscanf(strstr(line, ": ") + 2, "%ld durable files, %ld durable "
               "directories, %ld syncs", &files, &dirs, &syncs);
    if (p != NULL)
        pclose(p);
    return syncs;
}

/* The acknowledgements the child wrote: tiles (bit per index), wsi. */
static void
read_acks(const char *root, bool acked[NTILES], bool *wsi)
{
    char path[4096], what[16];
    FILE *f;
    int idx;

    memset(acked, 0, NTILES * sizeof(bool));
    *wsi = false;
    snprintf(path, sizeof(path), "%s.acked", root);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fscanf(f, "%15s %d", what, &idx) == 2) {
        if (strcmp(what, "tile") == 0 && idx >= 0 && idx < NTILES)
            acked[idx] = true;
        else if (strcmp(what, "wsi") == 0)
            *wsi = true;
    }
    fclose(f);
}

static void
expected_sha(int idx, char hex[65])
{
    struct img *im = pattern(idx);
    unsigned char *buf = NULL;
    size_t len = 0;

    assert_int_equal(img_jpeg_encode(im, TILESTORE_QUALITY, 444, &buf, &len,
                                     NULL), 0);
    tilestore_sha256(buf, len, hex);
    tjFree(buf);
    img_free(im);
}

/* A scan marked done has its image, with the recorded checksum. */
static void
check_wsi(struct cat *c, const char *root, long cut)
{
    char path[4096], want[65] = "", got[65];
    sqlite3_stmt *s;
    struct ss_err e;

    assert_int_equal(sqlite3_prepare_v2((sqlite3 *)cat_db(c),
                     "SELECT wsi_path, checksum FROM scans WHERE id = 1", -1,
                     &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    snprintf(path, sizeof(path), "%s/%s", root, sqlite3_column_text(s, 0));
    snprintf(want, sizeof(want), "%s", sqlite3_column_text(s, 1));
    sqlite3_finalize(s);
    if (util_sha256_file(path, got, &e) != 0)
        fail_msg("cut at sync %ld: the scan is done and its image is "
                 "gone: %s", cut, e.msg);
    assert_string_equal(got, want);
}

/* After a restore: what the catalogue says is true on disk, and every
 * acknowledged tile is there.  Returns the captured count. */
static int
check_after_cut(const char *root, long cut)
{
    char path[4096], check[64] = "";
    bool acked[NTILES], wsi;
    struct tilestore *ts;
    struct cat_scan sc;
    struct ss_err e;
    sqlite3 *db;
    sqlite3_stmt *s;
    struct cat *c;
    int captured = 0, nacked = 0, i;

    read_acks(root, acked, &wsi);
    for (i = 0; i < NTILES; i++)
        nacked += acked[i];
    snprintf(path, sizeof(path), "%s/catalogue.db", root);
    if (access(path, F_OK) != 0) {
        if (nacked > 0)
            fail_msg("cut at sync %ld: catalogue lost with %d tiles "
                     "acknowledged", cut, nacked);
        return 0;
    }
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) ==
        SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        snprintf(check, sizeof(check), "%s", sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_string_equal(check, "ok");

    assert_int_equal(cat_open(path, &c, &e), 0);
    if (cat_scan_get(c, 1, &sc, &e) != 0) {
        if (nacked > 0)
            fail_msg("cut at sync %ld: scan lost with %d tiles "
                     "acknowledged", cut, nacked);
        cat_close(c);
        return 0;
    }
    assert_int_equal(tilestore_open(root, 1, &ts, &e), 0);
    assert_int_equal(sqlite3_prepare_v2((sqlite3 *)cat_db(c),
                     "SELECT idx, checksum FROM tiles WHERE scan = 1 AND "
                     "state = 'captured'", -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int idx = sqlite3_column_int(s, 0);
        const char *hex = (const char *)sqlite3_column_text(s, 1);

        if (tilestore_verify(ts, idx, hex, &e) != 0)
            fail_msg("cut at sync %ld: tile %d recorded but its file "
                     "is not there: %s", cut, idx, e.msg);
        acked[idx] = false;
        captured++;
    }
    sqlite3_finalize(s);
    for (i = 0; i < NTILES; i++)
        if (acked[i])
            fail_msg("cut at sync %ld: tile %d was acknowledged and is "
                     "not recorded", cut, i);
    assert_int_equal(sc.tiles_done, captured);
    if (wsi)
        assert_int_equal(sc.state, CAT_DONE);
    if (sc.state == CAT_DONE)
        check_wsi(c, root, cut);
    tilestore_close(ts);
    cat_close(c);
    return captured;
}

static void
check_final(const char *root)
{
    char path[4096], want[65], hex[65];
    struct tilestore *ts;
    struct cat_scan sc;
    struct ss_err e;
    struct cat *c;
    int i;

    snprintf(path, sizeof(path), "%s/catalogue.db", root);
    assert_int_equal(cat_open(path, &c, &e), 0);
    assert_int_equal(cat_scan_get(c, 1, &sc, &e), 0);
    assert_int_equal(sc.state, CAT_DONE);
    assert_int_equal(sc.tiles_done, NTILES);
    assert_int_equal(sc.tiles_total, NTILES);
    assert_int_equal(tilestore_open(root, 1, &ts, &e), 0);
    for (i = 0; i < NTILES; i++) {
        expected_sha(i, want);
        assert_int_equal(tilestore_verify(ts, i, want, &e), 0);
    }
    snprintf(path, sizeof(path), "%s/%s", root, sc.wsi_path);
    assert_int_equal(util_sha256_file(path, hex, &e), 0);
    tilestore_close(ts);
    cat_close(c);
    assert_int_equal(shell("test -z \"$(find '%s' -name '*.tmp*')\"", root),
                     0);
}

static void
one_cut(const char *root, const char *state, long cut, bool torn)
{
    int st, captured;

    assert_int_equal(shell("rm -rf '%s' '%s' '%s.acked' && mkdir -p '%s' && "
                           "'%s' baseline --state '%s' --root '%s'", root,
                           state, root, root, tool("powerfail"), state, root),
                     0);
    st = run_child(root, state, cut);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    if (torn)
        st = shell("'%s' restore --state '%s' --torn %ld >/dev/null",
                   tool("powerfail"), state, cut);
    else
        st = shell("'%s' restore --state '%s' >/dev/null",
                   tool("powerfail"), state);
    assert_int_equal(st, 0);
    captured = check_after_cut(root, cut);
    print_message("# cut at sync %ld%s: %d tiles recorded\n", cut,
                  torn ? " (torn)" : "", captured);
    st = run_child(root, state, 0);     /* resume, power stays on */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    check_final(root);
}

static void
test_scan_writes_survive_power_cuts(void **state)
{
    const char *root = tu_tmp("data"), *st = tu_tmp("data.state");
    long total, cut;
    int k;

    if (!have_layer())
        tu_skip("powerfail.so not built (make tests)");
    assert_int_equal(shell("mkdir -p '%s' && '%s' baseline --state '%s' "
                           "--root '%s'", root, tool("powerfail"), st, root),
                     0);
    assert_int_equal(WEXITSTATUS(run_child(root, st, 0)), 0);
    check_final(root);
    total = syncs_recorded(st);
    print_message("# an uninterrupted scan makes %ld syncs\n", total);
    assert_true(total > 2 * NTILES);
    /* Every early sync (catalogue creation, plan), then a spread. */
    for (cut = 1; cut <= 12; cut++)
        one_cut(root, st, cut, false);
    for (k = 1; k <= 9; k++)
        one_cut(root, st, 12 + k * (total - 12) / 10, k % 3 == 0);
    for (cut = total - 4; cut <= total; cut++)  /* the image, the end */
        one_cut(root, st, cut, false);
}

/* The model needs no real durability, so when the test may it runs on a
 * tmpfs in a private mount namespace (gone with the process), which spares
 * the disk thousands of fsync()s; otherwise on the disk as it is. */
static bool on_ramdisk;

static int
ramdisk(void **state)
{
    on_ramdisk = unshare(CLONE_NEWNS) == 0 &&
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
        mount("tmpfs", tu_tmpdir(), "tmpfs", 0, "size=512m,mode=0700") == 0;
    return 0;
}

static int
ramdisk_off(void **state)
{
    if (on_ramdisk)
        umount2(tu_tmpdir(), MNT_DETACH);
    return 0;
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_writes_survive_power_cuts),
    };
    ssize_t n;

    if (argc == 3 && strcmp(argv[1], "--pf-child") == 0)
        return child_scan(argv[2]);
    n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n > 0)
        self_exe[n] = '\0';
    return cmocka_run_group_tests_name("powerfail_store", tests, ramdisk,
                                       ramdisk_off);
}
