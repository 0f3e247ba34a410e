/* SPDX-License-Identifier: MIT */
/*
 * Slide sources and their tile cache.  A source is a set of pixel
 * lattices (OpenSlide levels, one plain image, or any pitch of the
 * phantom) read as 256 × 256 tiles; tiles are kept in an LRU cache so a
 * scan that revisits a region (overlaps, autofocus, re-takes) reads the
 * file once.  sim__source_render() samples any grid of points from the
 * best lattice with a Catmull-Rom kernel, widened for downsampling so
 * that coarse renders are anti-aliased.
 */
#include "drivers/sim/sim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the cache -------------------------------------------------------- */

struct centry {
    uint64_t k1, k2;
    uint8_t *px;
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
sim__cache_get(struct sim__cache *c, uint64_t k1, uint64_t k2)
{
    struct centry *e;

    for (e = c->hash[hslot(c, k1, k2)]; e != NULL; e = e->hnext) {
        if (e->k1 == k1 && e->k2 == k2) {
            lru_unlink(c, e);
            lru_front(c, e);
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
sim__cache_put(struct sim__cache *c, uint64_t k1, uint64_t k2)
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

/* Splits "PATH[@MPP][:stain=S][:id=ID]" and opens a file slide. */
static int
open_file_spec(const char *spec, const struct sim_config *c,
               struct sim__source **out, struct ss_err *err)
{
    char path[SIM_SPEC_MAX], id[64] = "", stain[16], *colon, *at, *end;
    double mpp = 0;
    int rc, st;

    snprintf(path, sizeof(path), "%s", spec);
    snprintf(stain, sizeof(stain), "%s", c->stain);
    while ((colon = strrchr(path, ':')) != NULL) {
        if (strncmp(colon, ":stain=", 7) == 0)
            snprintf(stain, sizeof(stain), "%s", colon + 7);
        else if (strncmp(colon, ":id=", 4) == 0)
            snprintf(id, sizeof(id), "%s", colon + 4);
        else
            break;
        *colon = '\0';
    }
    st = sim__stain_parse(stain);
    if (st < 0)
        return err_set(err, SS_ECONFIG, "slide '%s': stain '%s' is not "
                       "one of HE, KI67, CK", spec, stain);
    at = strrchr(path, '@');
    if (at != NULL) {
        mpp = strtod(at + 1, &end);
        if (end != at + 1 && *end == '\0') {
            if (!(mpp > 0.01 && mpp < 1000))
                return err_set(err, SS_ECONFIG, "slide '%s': pixel size "
                               "%g um is outside 0.01..1000", spec, mpp);
            *at = '\0';
        } else {
            mpp = 0;
        }
    }
    rc = sim__file_open(path, mpp, c, out, err);
    if (rc < 0)
        return rc;
    (*out)->stain = st;
    if (id[0] != '\0')
        snprintf((*out)->slide_id, sizeof((*out)->slide_id), "%s", id);
    return 0;
}

int
sim__source_open(const char *spec, const struct sim_config *c,
                 struct sim__source **out, struct ss_err *err)
{
    struct sim__source *src = NULL;
    int rc;

    *out = NULL;
    if (spec == NULL || spec[0] == '\0')
        return err_set(err, SS_ECONFIG, "slide: empty slide spec");
    if (strncmp(spec, "phantom:", 8) == 0)
        rc = sim__phantom_open(spec, c, &src, err);
    else
        rc = open_file_spec(spec, c, &src, err);
    if (rc < 0)
        return rc;
    rc = source_init_cache(src, c, err);
    if (rc < 0) {
        sim__source_free(src);
        return rc;
    }
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

/* Copies the lattice rectangle [i0, i0 + nx) × [j0, j0 + ny) as floats
 * (transmittance) into reg, glass outside the lattice. */
static int
gather(struct sim__source *src, int level, double pitch, int64_t i0,
       int64_t j0, int nx, int ny, float *reg, struct ss_err *err)
{
    int64_t lw = level >= 0 ? src->level_w[level] : INT64_MAX / 4;
    int64_t lh = level >= 0 ? src->level_h[level] : INT64_MAX / 4;
    int64_t tx, ty, t0x, t0y;
    uint64_t k1 = pitch_key(level, pitch);
    int rc = 0, x, y, c;
    size_t i;

    for (i = 0; i < (size_t)nx * ny; i++)
        for (c = 0; c < 3; c++)
            reg[i * 3 + c] = (float)src->glass[c];
    t0x = (i0 < 0 ? (i0 - SIM_TILE + 1) : i0) / SIM_TILE;
    t0y = (j0 < 0 ? (j0 - SIM_TILE + 1) : j0) / SIM_TILE;
    for (ty = t0y; rc == 0 && ty * SIM_TILE < j0 + ny; ty++) {
        for (tx = t0x; rc == 0 && tx * SIM_TILE < i0 + nx; tx++) {
            uint8_t *px;
            uint64_t k2;

            if (tx < 0 || ty < 0 || tx * SIM_TILE >= lw ||
                ty * SIM_TILE >= lh)
                continue;
            k2 = (uint64_t)tx << 32 | (uint64_t)ty;
            pthread_mutex_lock(&src->mu);
            px = sim__cache_get(src->cache, k1, k2);
            if (px == NULL) {
                px = sim__cache_put(src->cache, k1, k2);
                rc = px == NULL ? err_set(err, -ENOMEM, "slide: out of "
                                          "memory")
                                : src->ops->tile(src, level, pitch, (int)tx,
                                                 (int)ty, px, err);
                if (rc < 0 && px != NULL)
                    sim__cache_drop(src->cache, k1, k2);
            }
            for (y = 0; rc == 0 && y < SIM_TILE; y++) {
                int64_t gy = ty * SIM_TILE + y - j0, gx;

                if (gy < 0 || gy >= ny)
                    continue;
                for (x = 0; x < SIM_TILE; x++) {
                    const uint8_t *p = px + ((size_t)y * SIM_TILE + x) * 3;
                    float *d;

                    gx = tx * SIM_TILE + x - i0;
                    if (gx < 0 || gx >= nx)
                        continue;
                    if (tx * SIM_TILE + x >= lw || ty * SIM_TILE + y >= lh)
                        continue;
                    d = reg + ((size_t)gy * nx + gx) * 3;
                    d[0] = p[0] * (1.0f / 255);
                    d[1] = p[1] * (1.0f / 255);
                    d[2] = p[2] * (1.0f / 255);
                }
            }
            pthread_mutex_unlock(&src->mu);
        }
    }
    return rc;
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
sim__source_render(struct sim__source *src, double x0, double y0, int w,
                   int h, double p, float *dst, struct ss_err *err)
{
    int level = src->ph != NULL ? -1 : pick_level(src, p), nx, ny, rc;
    double q = level < 0 ? p : src->pitch_um[level], f = p / q;
    double s = fmax(1.0, f), rad = 2 * s + 1;
    double gx0 = x0 / q, gy0 = y0 / q;
    int64_t i0 = (int64_t)floor(gx0 - rad), j0 = (int64_t)floor(gy0 - rad);
    float *reg;

    nx = (int)(ceil(gx0 + (w - 1) * f + rad) - i0) + 1;
    ny = (int)(ceil(gy0 + (h - 1) * f + rad) - j0) + 1;
    reg = sim__scratch((size_t)nx * ny * 3 * sizeof(float));
    if (reg == NULL)
        return err_set(err, -ENOMEM, "slide: out of memory");
    rc = gather(src, level, q, i0, j0, nx, ny, reg, err);
    if (rc == 0)
        rc = sim__resample(reg, nx, ny, gx0 - i0, gy0 - j0, f, dst, w, h);
    sim__scratch_free(reg);
    if (rc == -ENOMEM)
        return err_set(err, rc, "slide: out of memory");
    return rc;
}
