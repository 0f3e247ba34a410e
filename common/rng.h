/* SPDX-License-Identifier: MIT */
/*
 * Deterministic random numbers.  Simulated effects draw from streams keyed
 * by what is being done (seed, tile, attempt, ...) rather than by history,
 * so a restarted process reproduces the same frames for the same work.
 */
#ifndef SS_COMMON_RNG_H
#define SS_COMMON_RNG_H

#include <math.h>
#include <stdint.h>

struct rng {
    uint64_t s[4];                  /* xoshiro256** state */
    int have_spare;
    double spare;
};

/* SplitMix64 finaliser: a well-mixed 64-bit hash step. */
static inline uint64_t
rng_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Hash of a seed and up to three keys. */
static inline uint64_t
rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    return rng_mix64(rng_mix64(rng_mix64(rng_mix64(seed) ^ a) ^ b) ^ c);
}

static inline void
rng_init(struct rng *r, uint64_t key)
{
    int i;

    for (i = 0; i < 4; i++) {
        key = rng_mix64(key);
        r->s[i] = key;
    }
    r->have_spare = 0;
}

static inline uint64_t
rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t v = ((s[1] * 5) << 7 | (s[1] * 5) >> 57) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s[3] << 45 | s[3] >> 19;
    return v;
}

/* Uniform in [0, 1). */
static inline double
rng_uniform(struct rng *r)
{
    return (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box–Muller, one spare kept). */
static inline double
rng_gauss(struct rng *r)
{
    double u, v, m;

    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    do {
        u = rng_uniform(r);
    } while (u <= 1e-300);
    v = rng_uniform(r);
    m = sqrt(-2.0 * log(u));
    r->spare = m * sin(2 * M_PI * v);
    r->have_spare = 1;
    return m * cos(2 * M_PI * v);
}

#endif
