/* SPDX-License-Identifier: MIT */
/*
 * The encoder thread pool of the WSI writer: a fixed set of threads that
 * run one "for i in [0, n)" job at a time, the calling thread included.
 * Indices are handed out by an atomic counter, so uneven tiles (blank
 * glass encodes faster than tissue) balance themselves.
 */
#include "storage/wsi_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct worker {
    struct wsi__pool *pool;
    pthread_t tid;
    int slot;
};

struct wsi__pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int nthreads;                   /* slots, the caller included */
    struct worker *workers;         /* nthreads - 1 */
    unsigned long generation;       /* bumped per job */
    int busy;                       /* pool threads still in the job */
    int quit;
    void (*fn)(void *ctx, int i, int slot);
    void *ctx;
    int n;
    int inline_job;                 /* the caller runs the job alone */
    atomic_int next;
};

static void
drain(struct wsi__pool *p, int slot)
{
    int i;

    while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
        p->fn(p->ctx, i, slot);
}

static void *
worker_main(void *arg)
{
    struct worker *wk = arg;
    struct wsi__pool *p = wk->pool;
    unsigned long seen = 0;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);

        drain(p, wk->slot);

        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int
wsi__pool_new(int nthreads, struct wsi__pool **out, struct ss_err *err)
{
    struct wsi__pool *p = calloc(1, sizeof(*p));
    int i, rc;

    if (p == NULL)
        return err_set(err, -ENOMEM, "encoder pool: out of memory");
    if (nthreads < 1)
        nthreads = 1;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->workers = calloc((size_t)nthreads, sizeof(*p->workers));
    if (p->workers == NULL) {
        p->nthreads = 1;
        wsi__pool_free(p);
        return err_set(err, -ENOMEM, "encoder pool: out of memory");
    }
    for (i = 1; i < nthreads; i++) {
        struct worker *wk = &p->workers[i - 1];

        wk->pool = p;
        wk->slot = i;
        rc = pthread_create(&wk->tid, NULL, worker_main, wk);
        if (rc != 0) {
            p->nthreads = i;
            wsi__pool_free(p);
            return err_set(err, -rc, "encoder pool: cannot start a thread: "
                           "%s", strerror(rc));
        }
    }
    *out = p;
    return 0;
}

int
wsi__pool_size(const struct wsi__pool *p)
{
    return p->nthreads;
}

void
wsi__pool_start(struct wsi__pool *p, int n,
                void (*fn)(void *ctx, int i, int slot), void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n < 0 ? 0 : n;
    atomic_store(&p->next, 0);
    /* One thread or one index: the caller does it all in join. */
    p->inline_job = p->nthreads == 1 || n <= 1;
    if (!p->inline_job) {
        p->busy = p->nthreads - 1;
        p->generation++;
        pthread_cond_broadcast(&p->go);
    }
    pthread_mutex_unlock(&p->mu);
}

void
wsi__pool_join(struct wsi__pool *p)
{
    drain(p, 0);
    pthread_mutex_lock(&p->mu);
    while (!p->inline_job && p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void
wsi__pool_run(struct wsi__pool *p, int n,
              void (*fn)(void *ctx, int i, int slot), void *ctx)
{
    wsi__pool_start(p, n, fn, ctx);
    wsi__pool_join(p);
}

void
wsi__pool_free(struct wsi__pool *p)
{
    int i;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (i = 1; i < p->nthreads; i++)
        pthread_join(p->workers[i - 1].tid, NULL);
    free(p->workers);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
