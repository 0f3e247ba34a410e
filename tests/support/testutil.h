/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the unit tests (cmocka).  Tests that need the real
 * data in ../shared/data call tu_data() and skip() when it returns NULL,
 * saying so; CI always has the data.
 */
#ifndef SS_TESTS_TESTUTIL_H
#define SS_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Absolute path of "<shared data>/<rel>", or NULL when the shared data
 * folder is absent.  Returned strings live until exit. */
const char *tu_data(const char *rel);

/* A fresh empty directory for this test process, removed at exit unless
 * SLIDESCAN_KEEP_TMP is set. */
const char *tu_tmpdir(void);

/* "<tu_tmpdir()>/<name>", live until exit. */
const char *tu_tmp(const char *name);

/* The repository root and build directory (from the test runner). */
const char *tu_root(void);
const char *tu_build(void);

/* Skips the current test with a reason printed on the TAP stream. */
#define tu_skip(...) \
    do { \
        print_message("# SKIP " __VA_ARGS__); \
        print_message("\n"); \
        skip(); \
    } while (0)

#endif
