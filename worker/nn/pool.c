/* SPDX-License-Identifier: MIT */
/*
 * The engine's thread pool and process-wide settings.  Kernels split their
 * work into tasks that write disjoint memory and hand them to
 * nn__parallel(); the calling thread works too.  OpenBLAS is kept at one
 * thread (for the whole process).  Why: with our own threads each task is
 * a band of rows with its own im2col, GEMM and epilogue, so the memory-
 * bound parts run in parallel too, and every output element is the result
 * of one single-threaded GEMM of a shape fixed by the layer, which is what
 * makes results reproducible.  Measured on the 2-core development machine
 * (busy with other builds; best of 3), U-Net 4x16 on 512 x 512: inference
 * 637 ms with our 2 threads against 644 ms with OpenBLAS's 2 threads, a
 * training step of batch 2 4.4 s against 6.5 s.
 */
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/nn/nn_internal.h"

#define MAX_THREADS 64

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;

static int want_threads;            /* 0: not resolved yet */
static bool deterministic;
static int n_workers;               /* started, never stopped */
static int active;                  /* workers taking part in this job */
static unsigned long generation;
static int pending;                 /* workers still busy with the job */

static nn__task_fn job_fn;
static void *job_ctx;
static int job_ntasks;
static atomic_int job_next;

static float *scratch[MAX_THREADS];
static size_t scratch_bytes[MAX_THREADS];

static int
online_cpus(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int
nn_set_threads(int n)
{
    pthread_mutex_lock(&call_lock);
    if (n <= 0)
        n = online_cpus();
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    want_threads = n;
    pthread_mutex_unlock(&call_lock);
    return n;
}

int
nn__threads(void)
{
    if (want_threads == 0)
        nn_set_threads(0);
    return want_threads;
}

bool
nn_set_deterministic(bool on)
{
    bool old = deterministic;

    deterministic = on;
    return old;
}

bool
nn__deterministic(void)
{
    return deterministic;
}

static void
run_tasks(int thread)
{
    int t;

    while ((t = atomic_fetch_add(&job_next, 1)) < job_ntasks)
        job_fn(job_ctx, t, thread);
}

static void *
worker_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    unsigned long seen = 0;

    pthread_mutex_lock(&lock);
    for (;;) {
        while (generation == seen)
            pthread_cond_wait(&wake, &lock);
        seen = generation;
        if (idx >= active)
            continue;
        pthread_mutex_unlock(&lock);
        run_tasks(idx + 1);
        pthread_mutex_lock(&lock);
        if (--pending == 0)
            pthread_cond_signal(&done);
    }
    return NULL;
}

/* Starts workers up to n - 1 (the caller is thread 0).  A failed start
 * only means fewer threads. */
static int
ensure_workers(int n)
{
    pthread_t tid;

    while (n_workers < n - 1) {
        if (pthread_create(&tid, NULL, worker_main,
                           (void *)(intptr_t)n_workers) != 0) {
            log_warn("nn", "thread start failed threads=%d", n_workers + 1);
            break;
        }
        pthread_detach(tid);
        n_workers++;
    }
    return n_workers + 1 < n ? n_workers + 1 : n;
}

static void
blas_single(void)
{
    openblas_set_num_threads(1);
}

void
nn__init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, blas_single);
}

void
nn__parallel(int ntasks, nn__task_fn fn, void *ctx)
{
    int n, t;

    if (ntasks <= 0)
        return;
    nn__init();
    n = nn__threads();
    pthread_mutex_lock(&call_lock);
    if (n > ntasks)
        n = ntasks;
    if (n <= 1) {
        for (t = 0; t < ntasks; t++)
            fn(ctx, t, 0);
        pthread_mutex_unlock(&call_lock);
        return;
    }
    n = ensure_workers(n);

    pthread_mutex_lock(&lock);
    job_fn = fn;
    job_ctx = ctx;
    job_ntasks = ntasks;
    atomic_store(&job_next, 0);
    active = n - 1;
    pending = n - 1;
    generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_tasks(0);

    pthread_mutex_lock(&lock);
    while (pending > 0)
        pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&call_lock);
}

float *
nn__scratch(int thread, size_t bytes)
{
    if (thread < 0 || thread >= MAX_THREADS)
        return NULL;
    if (scratch_bytes[thread] < bytes) {
        nn__free(scratch[thread]);
        scratch[thread] = nn__alloc(bytes);
        scratch_bytes[thread] = scratch[thread] ? bytes : 0;
    }
    return scratch[thread];
}

void
nn__scratch_release(void)
{
    int i;

    pthread_mutex_lock(&call_lock);
    for (i = 0; i < MAX_THREADS; i++) {
        nn__free(scratch[i]);
        scratch[i] = NULL;
        scratch_bytes[i] = 0;
    }
    pthread_mutex_unlock(&call_lock);
}
