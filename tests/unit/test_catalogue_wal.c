/* SPDX-License-Identifier: MIT */
/*
 * Field case D1, "database is locked never fails a scan": a reader holding
 * a read transaction for 3 s does not block the scan loop's writes (WAL);
 * a writer that meets SQLITE_BUSY_SNAPSHOT retries its whole transaction;
 * after a crash in the middle of a tile's transaction, progress equals the
 * last committed tile and the catalogue takes the next write at once.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"
#include "storage/catalogue.h"

#define NTILES 8

static int64_t
setup(const char *path)
{
    struct cat_scan_req r = { "S-D1", "HE", NULL, 0, 0 };
    struct acq_tile tiles[NTILES];
    struct acq_plan p;
    struct cat *c;
    struct ss_err e;
    int64_t id = 0;
    int i;

    memset(&p, 0, sizeof(p));
    memset(tiles, 0, sizeof(tiles));
    for (i = 0; i < NTILES; i++) {
        tiles[i].index = i;
        tiles[i].col = i;
        tiles[i].x_um = 100.0 * i;
    }
    p.rows = 1;
    p.cols = NTILES;
    p.ntiles = NTILES;
    p.tiles = tiles;
    p.pixel_um = 0.5;
    assert_int_equal(cat_open(path, &c, &e), 0);
    assert_int_equal(cat_scan_add(c, &r, &id, &e), 0);
    assert_int_equal(cat_plan_save(c, id, &p, &e), 0);
    cat_close(c);
    return id;
}

static int
record(struct cat *c, int64_t scan, int idx, struct ss_err *e)
{
    struct cat_tile_rec r;

    memset(&r, 0, sizeof(r));
    r.state = CAT_T_CAPTURED;
    r.file = "tile.jpg";
    r.checksum = "00";
    return cat_tile_record(c, scan, idx, &r, e);
}

struct reader {
    const char *path;
    int64_t before, after;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool holding;
};

/* The "worker": a read transaction held open for 3 s. */
static void *
reader_thread(void *arg)
{
    struct reader *r = arg;
    struct cat *c;
    struct ss_err e;

    assert_int_equal(cat_open(r->path, &c, &e), 0);
    cat_exec(c, "BEGIN", "");
    cat_query_int(c, &r->before, "SELECT tiles_done FROM scans", "");
    pthread_mutex_lock(&r->lock);
    r->holding = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    sleep(3);
    cat_query_int(c, &r->after, "SELECT tiles_done FROM scans", "");
    cat_exec(c, "COMMIT", "");
    cat_close(c);
    return NULL;
}

static void
test_long_reader_does_not_block_the_writer(void **state)
{
    const char *path = tu_tmp("d1-reader.db");
    struct reader r = { path, -1, -1, PTHREAD_MUTEX_INITIALIZER,
                        PTHREAD_COND_INITIALIZER, false };
    int64_t scan = setup(path), done = 0;
    double t0, worst = 0;
    pthread_t th;
    struct cat *c;
    struct ss_err e;
    int i;

    assert_int_equal(cat_open(path, &c, &e), 0);
    pthread_create(&th, NULL, reader_thread, &r);
    pthread_mutex_lock(&r.lock);
    while (!r.holding)
        pthread_cond_wait(&r.cond, &r.lock);
    pthread_mutex_unlock(&r.lock);
    for (i = 0; i < NTILES; i++) {
        t0 = util_now_ms();
        assert_int_equal(record(c, scan, i, &e), 0);
        if (util_now_ms() - t0 > worst)
            worst = util_now_ms() - t0;
    }
    pthread_join(th, NULL);
    print_message("# slowest tile commit under a 3 s reader: %.1f ms\n",
                  worst);
    assert_true(worst < 500);
    assert_int_equal(cat_tx_attempts(c), 1);
    assert_int_equal(r.before, 0);
    assert_int_equal(r.after, 0);       /* the reader's snapshot holds */
    cat_query_int(c, &done, "SELECT tiles_done FROM scans", "");
    assert_int_equal(done, NTILES);
    cat_close(c);
}

struct snap {
    struct cat *other;
    int64_t scan;
    int calls;
    int first_rc;
};

/* Reads, lets another connection commit, then writes: the first attempt
 * meets SQLITE_BUSY_SNAPSHOT. */
static int
read_then_write(struct cat *c, void *ctx, struct ss_err *err)
{
    struct snap *s = ctx;
    struct ss_err e;
    int64_t n = 0;

    s->calls++;
    cat_query_int(c, &n, "SELECT tiles_done FROM scans WHERE id = ?", "i",
                  s->scan);
    if (s->calls == 1)
        assert_int_equal(record(s->other, s->scan, 0, &e), 0);
    if (cat_exec(c, "UPDATE scans SET reason = 'seen ' || ? WHERE id = ?",
                 "ii", n, s->scan) < 0) {
        if (s->calls == 1)
            s->first_rc = sqlite3_extended_errcode(cat_db(c));
        return err_set(err, -EBUSY, "busy");
    }
    return 0;
}

static void
test_busy_snapshot_retries_the_whole_transaction(void **state)
{
    const char *path = tu_tmp("d1-snapshot.db");
    int64_t scan = setup(path);
    struct snap s = { NULL, scan, 0, 0 };
    struct cat_scan got;
    struct cat *c;
    struct ss_err e;

    assert_int_equal(cat_open(path, &c, &e), 0);
    assert_int_equal(cat_open(path, &s.other, &e), 0);
    assert_int_equal(cat_tx(c, CAT_TX_DEFERRED, read_then_write, &s, &e), 0);
    assert_int_equal(s.first_rc, SQLITE_BUSY_SNAPSHOT);
    assert_int_equal(s.calls, 2);
    assert_int_equal(cat_tx_attempts(c), 2);
    assert_int_equal(cat_scan_get(c, scan, &got, &e), 0);
    assert_string_equal(got.reason, "seen 1");  /* saw the other commit */
    assert_int_equal(got.tiles_done, 1);
    cat_close(s.other);
    cat_close(c);
}

static void
test_crash_mid_tile_keeps_committed_progress(void **state)
{
    const char *path = tu_tmp("d1-crash.db");
    int64_t scan = setup(path), done = -1, captured = -1, ok = 0;
    int status, i;
    struct cat *c;
    struct ss_err e;
    char *res = NULL;
    pid_t pid;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (cat_open(path, &c, &e) < 0)
            _exit(2);
        for (i = 0; i < 5; i++)
            if (record(c, scan, i, &e) < 0)
                _exit(3);
        cat_exec(c, "BEGIN IMMEDIATE", "");
        cat_exec(c, "UPDATE tiles SET state = 'captured' WHERE idx = 5", "");
        cat_exec(c, "UPDATE scans SET tiles_done = tiles_done + 1", "");
        raise(SIGKILL);
        _exit(4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    assert_int_equal(cat_open(path, &c, &e), 0);
    cat_query_int(c, &done, "SELECT tiles_done FROM scans", "");
    cat_query_int(c, &captured, "SELECT COUNT(*) FROM tiles WHERE state = "
                  "'captured'", "");
    assert_int_equal(done, 5);
    assert_int_equal(captured, 5);
    assert_int_equal(sqlite3_exec(cat_db(c), "PRAGMA integrity_check",
                                  NULL, NULL, &res), SQLITE_OK);
    sqlite3_free(res);
    cat_query_int(c, &ok, "SELECT COUNT(*) FROM pragma_integrity_check "
                  "WHERE integrity_check = 'ok'", "");
    assert_int_equal(ok, 1);
    assert_int_equal(record(c, scan, 5, &e), 0);
    assert_int_equal(cat_tx_attempts(c), 1);
    cat_query_int(c, &done, "SELECT tiles_done FROM scans", "");
    assert_int_equal(done, 6);
    cat_close(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_reader_does_not_block_the_writer),
        cmocka_unit_test(test_busy_snapshot_retries_the_whole_transaction),
        cmocka_unit_test(test_crash_mid_tile_keeps_committed_progress),
    };

    return cmocka_run_group_tests_name("catalogue_wal", tests, NULL, NULL);
}
