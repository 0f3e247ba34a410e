/* SPDX-License-Identifier: MIT */
/*
 * Slide sources and their tile cache.  A source is a set of pixel
 * lattices (the levels of a file slide, or any pitch of the phantom)
 * read as 256 × 256 tiles; tiles are kept in an LRU cache so a
 * scan that revisits a region (overlaps, autofocus, re-takes) reads the
 * file once.  sim__source_render() samples any grid of points from the
 * best lattice with a Catmull-Rom kernel, widened for downsampling so
 * that coarse renders are anti-aliased.
 */
#include "drivers/sim/sim_internal.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cache -------------------------------------------------------- */

struct centry {
    uint64_t k1, k2;
    uint8_t *px;
    unsigned valid;                 /* blocks filled */
    struct centry *prev, *next;     /* LRU list, most recent first */
    struct centry *hnext;           /* hash chain */
    bool used;
};

struct sim__cache {
    size_t cap, n;
    struct centry *ents;
    struct centry **hash;
    size_t nhash;
    struct centry *head, *tail;
};

#define TILE_BYTES ((size_t)SIM_TILE * SIM_TILE * 3)

struct sim__cache *
sim__cache_new(size_t bytes)
{
    struct sim__cache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->cap = bytes / TILE_BYTES;
    if (c->cap < 16)
        c->cap = 16;
    c->nhash = c->cap * 2 + 1;
    c->ents = calloc(c->cap, sizeof(*c->ents));
    c->hash = calloc(c->nhash, sizeof(*c->hash));
    if (c->ents == NULL || c->hash == NULL) {
        sim__cache_free(c);
        return NULL;
    }
    return c;
}

void
sim__cache_free(struct sim__cache *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; c->ents != NULL && i < c->cap; i++)
        free(c->ents[i].px);
    free(c->ents);
    free(c->hash);
    free(c);
}

static size_t
hslot(const struct sim__cache *c, uint64_t k1, uint64_t k2)
{
    uint64_t h = k1 * 0x9e3779b97f4a7c15ULL ^ (k2 + 0x632be59bd9b4e019ULL);

    h ^= h >> 29;
    return (size_t)(h % c->nhash);
}

static void
lru_unlink(struct sim__cache *c, struct centry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void
lru_front(struct sim__cache *c, struct centry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

uint8_t *
sim__cache_get(struct sim__cache *c, uint64_t k1, uint64_t k2,
               unsigned **valid)
{
    struct centry *e;

    for (e = c->hash[hslot(c, k1, k2)]; e != NULL; e = e->hnext) {
        if (e->k1 == k1 && e->k2 == k2) {
            lru_unlink(c, e);
            lru_front(c, e);
            *valid = &e->valid;
            return e->px;
        }
    }
    return NULL;
}

static void
hash_remove(struct sim__cache *c, struct centry *e)
{
    struct centry **pp = &c->hash[hslot(c, e->k1, e->k2)];

    while (*pp != NULL && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp == e)
        *pp = e->hnext;
    e->hnext = NULL;
}

uint8_t *
sim__cache_put(struct sim__cache *c, uint64_t k1, uint64_t k2,
               unsigned **valid)
{
    struct centry *e;
    size_t slot;

    if (c->n < c->cap) {
        e = &c->ents[c->n++];
        e->px = malloc(TILE_BYTES);
        if (e->px == NULL) {
            c->n--;
            return NULL;
        }
    } else {
        e = c->tail;
        lru_unlink(c, e);
        hash_remove(c, e);
    }
    e->k1 = k1;
    e->k2 = k2;
    e->valid = 0;
    *valid = &e->valid;
    slot = hslot(c, k1, k2);
    e->hnext = c->hash[slot];
    c->hash[slot] = e;
    lru_front(c, e);
    return e->px;
}

void
sim__cache_drop(struct sim__cache *c, uint64_t k1, uint64_t k2)
{
    struct centry *e;

    for (e = c->hash[hslot(c, k1, k2)]; e != NULL; e = e->hnext) {
        if (e->k1 == k1 && e->k2 == k2) {
            hash_remove(c, e);
            lru_unlink(c, e);
            e->k1 = e->k2 = ~0ULL;
            e->next = NULL;
            e->prev = c->tail;
            if (c->tail != NULL)
                c->tail->next = e;
            c->tail = e;
            if (c->head == NULL)
                c->head = e;
            return;
        }
    }
}

/* ---- sources ---------------------------------------------------------- */

static int
source_init_cache(struct sim__source *src, const struct sim_config *c,
                  struct ss_err *err)
{
    pthread_mutex_init(&src->mu, NULL);
    src->cache = sim__cache_new(c->cache_mb << 20);
    if (src->cache == NULL)
        return err_set(err, -ENOMEM, "slide: out of memory for the cache");
    return 0;
}

/* Opens the file slide of a parsed spec. */
static int
open_file(const struct sim__spec *p, const struct sim_config *c,
          struct sim__source **out, struct ss_err *err)
{
    int rc = sim__file_open(p->path, p->mpp, p->force_mpp, c, out,
                            err);

    if (rc < 0)
        return rc;
    (*out)->stain = p->stain >= 0 ? p->stain : sim__stain_parse(c->stain);
    if ((*out)->stain < 0)
        (*out)->stain = SIM_STAIN_HE;
    if (p->id[0] != '\0')
        snprintf((*out)->slide_id, sizeof((*out)->slide_id), "%s", p->id);
    return 0;
}

int
sim__source_open(const char *spec, const struct sim_config *c,
                 struct sim__source **out, struct ss_err *err)
{
    struct sim__source *src = NULL;
    struct sim__spec p;
    int rc;

    *out = NULL;
    rc = sim__spec_parse(spec, &p, err);
    if (rc < 0)
        return rc;
    if (p.phantom)
        rc = sim__phantom_open(spec, &p, c, &src, err);
    else
        rc = open_file(&p, c, &src, err);
    if (rc < 0)
        return rc;
    rc = source_init_cache(src, c, err);
    if (rc < 0) {
        sim__source_free(src);
        return rc;
    }
    src->wide = sim__simd_wide(c);
    if (c->slide_id[0] != '\0' && strcmp(spec, c->slide) == 0)
        snprintf(src->slide_id, sizeof(src->slide_id), "%s", c->slide_id);
    *out = src;
    return 0;
}

void
sim__source_free(struct sim__source *src)
{
    if (src == NULL)
        return;
    if (src->ops != NULL && src->ops->destroy != NULL)
        src->ops->destroy(src);
    if (src->cache != NULL) {
        sim__cache_free(src->cache);
        pthread_mutex_destroy(&src->mu);
    }
    free(src);
}

/* ---- rendering -------------------------------------------------------- */

static uint64_t
pitch_key(int level, double pitch)
{
    uint64_t u;

    if (level >= 0)
        return (uint64_t)level;
    memcpy(&u, &pitch, sizeof(u));
    return u;
}

/*
 * A render streams row by row: each lattice row the taps need is read
 * from the tiles (glass outside the lattice), resampled along x into a
 * ring of ty.k rows, and each output row mixes its rows of the ring along
 * y.  The frame pipeline consumes rows as they come, so no buffer of the
 * whole region is ever made.
 */
struct sim__stream {
    struct sim__source *src;
    int level;
    double q, f;
    int64_t i0, j0;                 /* lattice point of region (0, 0) */
    int nx, ny;                     /* region size, lattice points */
    int64_t lw, lh;                 /* lattice size */
    uint64_t k1;                    /* cache key of the lattice */
    int w, h;                       /* output size */
    struct sim__taps tx, ty;
    float *reg;                     /* one region row, nx * 3 */
    float *mid;                     /* ring of ty.k rows of w * 3 */
    const float **rows;             /* ty.k pointers into the ring */
    int next;                       /* next region row to resample */
    int out_next;                   /* next output row allowed */
    float glass[3];
};

/* The blocks of tile (tx, ty) that the region [i0, i0 + nx) ×
 * [j0, j0 + ny) of lattice points covers. */
static unsigned
blocks_needed(const struct sim__stream *st, int64_t tx, int64_t ty)
{
    int64_t x0 = st->i0 - tx * SIM_TILE, x1 = x0 + st->nx;
    int64_t y0 = st->j0 - ty * SIM_TILE, y1 = y0 + st->ny;
    unsigned mask = 0;
    int bx, by;

    for (by = 0; by < SIM_TILE / SIM_BLOCK; by++)
        for (bx = 0; bx < SIM_TILE / SIM_BLOCK; bx++)
            if ((bx + 1) * SIM_BLOCK > x0 && bx * SIM_BLOCK < x1 &&
                (by + 1) * SIM_BLOCK > y0 && by * SIM_BLOCK < y1)
                mask |= 1u << (by * (SIM_TILE / SIM_BLOCK) + bx);
    return mask;
}

/* Tile (tx, ty) into *px with at least the blocks this render needs
 * filled; the source lock is held. */
static int
tile_get(struct sim__stream *st, int64_t tx, int64_t ty, const uint8_t **px,
         struct ss_err *err)
{
    struct sim__source *src = st->src;
    uint64_t k2 = (uint64_t)tx << 32 | (uint64_t)ty;
    unsigned need = blocks_needed(st, tx, ty), *valid;
    uint8_t *p = sim__cache_get(src->cache, st->k1, k2, &valid);
    int rc;

    if (p == NULL)
        p = sim__cache_put(src->cache, st->k1, k2, &valid);
    if (p == NULL)
        return err_set(err, -ENOMEM, "slide: out of memory");
    if ((*valid & need) != need) {
        rc = src->ops->tile(src, st->level, st->q, (int)tx, (int)ty,
                            need & ~*valid, p, err);
        if (rc < 0) {
            if (*valid == 0)
                sim__cache_drop(src->cache, st->k1, k2);
            return rc;
        }
        *valid |= (unsigned)rc;
    }
    *px = p;
    return 0;
}

/* Samples [a, b) of lattice row gj (inside the lattice) from the tiles
 * into d. */
static int
tile_span(struct sim__stream *st, int64_t gj, int64_t a, int64_t b,
          float *d, struct ss_err *err)
{
    struct sim__source *src = st->src;
    int64_t ty = gj / SIM_TILE, tx, x0, x1;
    const uint8_t *px = NULL;
    int rc = 0;

    for (tx = a / SIM_TILE; rc == 0 && tx * SIM_TILE < b; tx++) {
        pthread_mutex_lock(&src->mu);
        rc = tile_get(st, tx, ty, &px, err);
        if (rc == 0) {
            x0 = a > tx * SIM_TILE ? a : tx * SIM_TILE;
            x1 = b < (tx + 1) * SIM_TILE ? b : (tx + 1) * SIM_TILE;
            sim__u8_unit(px + ((size_t)(gj - ty * SIM_TILE) * SIM_TILE +
                               (size_t)(x0 - tx * SIM_TILE)) * 3,
                         (size_t)(x1 - x0) * 3, d + (size_t)(x0 - a) * 3,
                         src->wide);
        }
        pthread_mutex_unlock(&src->mu);
    }
    return rc;
}

/* Region row j as transmittance: tile samples inside the lattice, glass
 * outside it. */
static int
region_row(struct sim__stream *st, int j, struct ss_err *err)
{
    int64_t gj = st->j0 + j, a = st->i0 > 0 ? st->i0 : 0;
    int64_t b = st->i0 + st->nx < st->lw ? st->i0 + st->nx : st->lw;
    int64_t i;

    if (gj < 0 || gj >= st->lh || a >= b)
        a = b = st->i0;
    for (i = st->i0; i < st->i0 + st->nx; i++)
        if (i < a || i >= b)
            memcpy(st->reg + (size_t)(i - st->i0) * 3, st->glass,
                   sizeof(st->glass));
    if (a >= b)
        return 0;
    return tile_span(st, gj, a, b, st->reg + (size_t)(a - st->i0) * 3, err);
}

/* The coarsest level whose pitch is still at most p (a little slack so
 * that 0.499 µm files serve 0.5 µm frames from level 0). */
static int
pick_level(const struct sim__source *src, double p)
{
    int l, best = 0;

    for (l = 0; l < src->nlevels; l++)
        if (src->pitch_um[l] <= p * 1.02)
            best = l;
    return best;
}

int
sim__stream_open(struct sim__source *src, double x0, double y0, int w,
                 int h, double p, struct sim__stream **out,
                 struct ss_err *err)
{
    int level = src->ph != NULL ? -1 : pick_level(src, p), c;
    double q = level < 0 ? p : src->pitch_um[level], f = p / q;
    double s = fmax(1.0, f), rad = 2 * s + 1;
    double gx0 = x0 / q, gy0 = y0 / q;
    struct sim__stream *st = calloc(1, sizeof(*st));

    *out = NULL;
    if (st == NULL)
        return err_set(err, -ENOMEM, "slide: out of memory");
    st->src = src;
    st->level = level;
    st->q = q;
    st->f = f;
    st->w = w;
    st->h = h;
    st->i0 = (int64_t)floor(gx0 - rad);
    st->j0 = (int64_t)floor(gy0 - rad);
    st->nx = (int)(ceil(gx0 + (w - 1) * f + rad) - st->i0) + 1;
    st->ny = (int)(ceil(gy0 + (h - 1) * f + rad) - st->j0) + 1;
    st->lw = level >= 0 ? src->level_w[level] : INT64_MAX / 4;
    st->lh = level >= 0 ? src->level_h[level] : INT64_MAX / 4;
    st->k1 = pitch_key(level, q);
    for (c = 0; c < 3; c++)
        st->glass[c] = (float)src->glass[c];
    if (sim__taps_make(&st->tx, w, gx0 - st->i0, f, st->nx) < 0 ||
        sim__taps_make(&st->ty, h, gy0 - st->j0, f, st->ny) < 0 ||
        (st->reg = malloc(((size_t)st->nx * 3 + 4) * sizeof(float))) ==
            NULL ||
        (st->mid = malloc((size_t)st->ty.k * (w * 3 + 4) *
                          sizeof(float))) == NULL ||
        (st->rows = malloc((size_t)st->ty.k * sizeof(*st->rows))) ==
            NULL ||
        (f != 1.0 && sim__taps_expand(&st->tx) < 0)) {
        sim__stream_close(st);
        return err_set(err, -ENOMEM, "slide: out of memory");
    }
    *out = st;
    return 0;
}

void
sim__stream_close(struct sim__stream *st)
{
    if (st == NULL)
        return;
    sim__taps_free(&st->tx);
    sim__taps_free(&st->ty);
    free(st->reg);
    free(st->mid);
    free(st->rows);
    free(st);
}

static float *
mid_row(struct sim__stream *st, int j)
{
    return st->mid + (size_t)(j % st->ty.k) * (st->w * 3 + 4);
}

int
sim__stream_row(struct sim__stream *st, int y, float *dst,
                struct ss_err *err)
{
    int first, j, k = st->ty.k, rc;

    assert(y >= st->out_next && y < st->h);
    first = st->ty.first[y];
    if (st->next < first)
        st->next = first;
    for (; st->next < first + k; st->next++) {
        rc = region_row(st, st->next, err);
        if (rc < 0)
            return rc;
        sim__resample_row(&st->tx, st->reg, mid_row(st, st->next),
                          st->f == 1.0, st->src->wide);
    }
    for (j = 0; j < k; j++)
        st->rows[j] = mid_row(st, first + j);
    sim__mix_rows(dst, st->rows, st->ty.w + (size_t)y * k, k,
                  (size_t)st->w * 3, st->src->wide);
    st->out_next = y;
    return 0;
}

int
sim__source_render(struct sim__source *src, double x0, double y0, int w,
                   int h, double p, float *dst, struct ss_err *err)
{
    struct sim__stream *st;
    int rc, y;

    rc = sim__stream_open(src, x0, y0, w, h, p, &st, err);
    for (y = 0; rc == 0 && y < h; y++)
        rc = sim__stream_row(st, y, dst + (size_t)y * w * 3, err);
    sim__stream_close(st);
    return rc;
}
