/* SPDX-License-Identifier: MIT */
/*
 * The power-loss fault layer itself (tests/support/powerfail): what it
 * keeps and drops at a cut, and SQLite in WAL mode surviving a cut at any
 * sync with every acknowledged commit and nothing doubled.  Each scenario
 * runs in a child process (this binary again) under powerfail.so; the
 * parent cuts the power, restores the root and checks it.
 */
#include "tests/support/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

static const char *self_exe;

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

static void
sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* Runs this binary as "--pf-child SCENARIO ROOT" under the layer; returns
 * the wait status. */
static int
run_child(const char *scenario, const char *root, const char *state,
          long cut_at)
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
        execl(self_exe, self_exe, "--pf-child", scenario, root, (char *)0);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void
fresh(const char *root, const char *state)
{
    sh("rm -rf '%s' '%s' && mkdir -p '%s'", root, state, root);
}

static void
baseline(const char *root, const char *state)
{
    sh("'%s' baseline --state '%s' --root '%s' >/dev/null", tool("powerfail"),
       state, root);
}

static void
restore(const char *state, bool torn, unsigned seed)
{
    if (torn)
        sh("'%s' restore --state '%s' --torn %u >/dev/null",
           tool("powerfail"), state, seed);
    else
        sh("'%s' restore --state '%s' >/dev/null", tool("powerfail"), state);
}

static char *
slurp(const char *root, const char *name)
{
    char path[4096];
    char *buf = NULL;
    size_t len;

    snprintf(path, sizeof(path), "%s/%s", root, name);
    if (util_read_file(path, &buf, &len, NULL) < 0)
        return NULL;
    return buf;
}

static void
expect_file(const char *root, const char *name, const char *content)
{
    char *got = slurp(root, name);

    if (content == NULL) {
        if (got != NULL)
            fail_msg("%s should be gone, holds '%s'", name, got);
        return;
    }
    if (got == NULL)
        fail_msg("%s is missing", name);
    assert_string_equal(got, content);
    free(got);
}

/* --- child scenarios ----------------------------------------------------- */

static void
put(const char *root, const char *name, const char *text, bool sync_file)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", root, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        exit(3);
    if (sync_file && fsync(fd) != 0)
        exit(3);
    close(fd);
}

static void
durable(const char *root, const char *name, const char *text)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", root, name);
    if (util_write_durable(path, text, strlen(text), NULL) < 0)
        exit(3);
}

static int
child_files(const char *root)
{
    char path[4096], tmp[4200];

    durable(root, "durable", "kept");
    durable(root, "victim", "old");
    put(root, "file-only", "synced, name not", true);
    snprintf(path, sizeof(path), "%s/sub", root);
    mkdir(path, 0750);
    durable(root, "sub/inside", "in an unsynced directory");
    snprintf(path, sizeof(path), "%s/victim", root);
    snprintf(tmp, sizeof(tmp), "%s/victim.new", root);
    put(root, "victim.new", "new", true);
    if (rename(tmp, path) != 0)     /* the rename is never synced */
        return 3;
    put(root, "volatile", "never synced", false);
    return 0;
}

static int
child_sequence(const char *root)
{
    char name[16], text[16];
    int i;

    for (i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        snprintf(text, sizeof(text), "tile %d", i);
        durable(root, name, text);
    }
    return 0;
}

/* Commits rows 1..200, one transaction each; after each commit returns,
 * appends the id to ROOT/../acked (outside the root: what the program
 * told the world). */
static int
child_sqlite(const char *root)
{
    char path[4096], acked[4096];
    sqlite3 *db;
    FILE *ack;
    int i;

    snprintf(path, sizeof(path), "%s/cat.db", root);
    snprintf(acked, sizeof(acked), "%s.acked", root);
    ack = fopen(acked, "w");
    if (ack == NULL || sqlite3_open(path, &db) != SQLITE_OK)
        return 3;
    if (sqlite3_exec(db, "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;"
                     "PRAGMA wal_autocheckpoint = 20;"
                     "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY,"
                     " v TEXT NOT NULL);", NULL, NULL, NULL) != SQLITE_OK)
        return 3;
    if (util_fsync_dir(root, NULL) < 0)
        return 3;
    for (i = 1; i <= 200; i++) {
        char sql[128];

        snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO t VALUES (%d, "
                 "printf('%%0200d', %d)); COMMIT;", i, i);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return 4;
        fprintf(ack, "%d\n", i);
        fflush(ack);
    }
    sqlite3_close(db);
    fclose(ack);
    return 0;
}

static int
child_main(const char *scenario, const char *root)
{
    if (strcmp(scenario, "files") == 0)
        return child_files(root);
    if (strcmp(scenario, "sequence") == 0)
        return child_sequence(root);
    if (strcmp(scenario, "sqlite") == 0)
        return child_sqlite(root);
    return 2;
}

/* --- tests ---------------------------------------------------------------- */

/* What survives: only synced data under synced names. */
static void
test_only_synced_data_under_synced_names_survives(void **state)
{
    const char *root = tu_tmp("files"), *st = tu_tmp("files.state");
    int status;

    if (!have_layer())
        tu_skip("powerfail.so not built (make tests)");
    fresh(root, st);
    baseline(root, st);
    status = run_child("files", root, st, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect_file(root, "volatile", "never synced");
    restore(st, false, 0);
    expect_file(root, "volatile", NULL);        /* name and data unsynced */
    expect_file(root, "durable", "kept");
    expect_file(root, "file-only", NULL);       /* name never synced */
    expect_file(root, "sub/inside", NULL);      /* "sub" never synced */
    expect_file(root, "victim", "old");         /* rename never synced */
    expect_file(root, "victim.new", NULL);
}

/* A cut at the Nth sync kills the process before that sync: with two syncs
 * per durable file, a cut at sync 7 keeps files 0..2 exactly. */
static void
test_cut_at_sync_n_keeps_what_synced_before(void **state)
{
    const char *root = tu_tmp("seq"), *st = tu_tmp("seq.state");
    char name[16], text[16];
    int status, i;

    if (!have_layer())
        tu_skip("powerfail.so not built (make tests)");
    fresh(root, st);
    baseline(root, st);
    status = run_child("sequence", root, st, 7);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    restore(st, false, 0);
    for (i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        snprintf(text, sizeof(text), "tile %d", i);
        expect_file(root, name, i < 3 ? text : NULL);
    }
}

static int
count_rows(const char *root, int *max_id, char *check, size_t len)
{
    char path[4096];
    sqlite3 *db;
    sqlite3_stmt *s;
    int n = -1;

    snprintf(path, sizeof(path), "%s/cat.db", root);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) ==
        SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        snprintf(check, len, "%s", sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT id), "
                           "coalesce(max(id), 0) FROM t WHERE v = printf("
                           "'%0200d', id)", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_int(s, 0) == sqlite3_column_int(s, 1)) {
        n = sqlite3_column_int(s, 0);
        *max_id = sqlite3_column_int(s, 2);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static int
last_acked(const char *root)
{
    char path[4096];
    FILE *f;
    int v, last = 0;

    snprintf(path, sizeof(path), "%s.acked", root);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fscanf(f, "%d", &v) == 1)
        last = v;
    fclose(f);
    return last;
}

/* SQLite in WAL mode with synchronous=FULL, cut at many syncs, restored
 * strictly or torn: integrity_check is ok, every acknowledged commit is
 * there, rows are 1..n with none doubled, at most one unacknowledged. */
static void
test_sqlite_wal_survives_cuts(void **state)
{
    const char *root = tu_tmp("sql"), *st = tu_tmp("sql.state");
    static const long cuts[] = { 3, 9, 40, 117, 171, 236 };
    char check[256];
    size_t i;

    if (!have_layer())
        tu_skip("powerfail.so not built (make tests)");
    for (i = 0; i < 2 * sizeof(cuts) / sizeof(cuts[0]); i++) {
        bool torn = i % 2 == 1;
        int status, acked, rows, max_id = 0;

        fresh(root, st);
        baseline(root, st);
        status = run_child("sqlite", root, st, cuts[i / 2]);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        acked = last_acked(root);
        restore(st, torn, (unsigned)i);
        check[0] = '\0';
        rows = count_rows(root, &max_id, check, sizeof(check));
        print_message("# cut at sync %ld%s: %d acknowledged, %d rows\n",
                      cuts[i / 2], torn ? " (torn)" : "", acked, rows);
        if (acked == 0 && rows < 0)
            continue;               /* cut before the table was durable */
        assert_string_equal(check, "ok");
        assert_int_equal(rows, max_id);         /* 1..n, nothing doubled */
        assert_true(rows >= acked);             /* nothing acked is lost */
        assert_true(rows <= acked + 1);
    }
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
        cmocka_unit_test(test_only_synced_data_under_synced_names_survives),
        cmocka_unit_test(test_cut_at_sync_n_keeps_what_synced_before),
        cmocka_unit_test(test_sqlite_wal_survives_cuts),
    };
    static char exe[4096];
    ssize_t n;

    if (argc == 4 && strcmp(argv[1], "--pf-child") == 0)
        return child_main(argv[2], argv[3]);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    self_exe = exe;
    return cmocka_run_group_tests_name("powerfail", tests, ramdisk,
                                       ramdisk_off);
}
