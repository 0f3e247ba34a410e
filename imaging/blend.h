/* SPDX-License-Identifier: MIT */
/*
 * Blending tiles into the canvas.  A tile's weight falls linearly from 1
 * in its interior to nearly 0 at its edges over the width of the planned
 * overlap (feathering), so where two tiles overlap the canvas fades from
 * one into the other and no seam shows.  Sub-pixel positions are honoured
 * by resampling a tile once, before blending, by its fractional offset.
 * The canvas is built in bands of rows, each an accumulator of weighted
 * colour and of weight.
 */
#ifndef SS_IMAGING_BLEND_H
#define SS_IMAGING_BLEND_H

#include <stdint.h>

#include "common/err.h"
#include "common/img.h"

enum blend_resample {
    BLEND_NEAREST = 0,              /* round positions to whole pixels */
    BLEND_BILINEAR = 1,
    BLEND_CUBIC = 2,                /* Keys cubic, a = −0.5 */
};

/* Feather weights for n pixels: min(1, (i + 0.5) / ramp, (n − i − 0.5) /
 * ramp); ramp < 1 means 1 (no feathering). */
void blend_ramp(float *w, int n, double ramp);

/* The tile resampled so that out(u, v) = in(u − fx, v − fy), for
 * 0 ≤ fx, fy < 1, edges repeated.  NULL when out of memory. */
struct img *blend_shift(const struct img *in, double fx, double fy,
                        enum blend_resample mode);

/* Whole-pixel position and the fraction left for blend_shift(): with
 * BLEND_NEAREST the position is rounded and the fraction is 0. */
void blend_split(double pos, enum blend_resample mode, int *whole,
                 double *frac);

struct blend_band {
    int w, cap;                     /* canvas width, rows allocated */
    int y0, h;                      /* rows of the canvas held now */
    float *acc;                     /* w × cap × 3 weighted colour */
    float *wsum;                    /* w × cap weights */
};

int blend_band_init(struct blend_band *b, int w, int rows,
                    struct ss_err *err);
void blend_band_fini(struct blend_band *b);

/* Clears the band and makes it hold canvas rows [y0, y0 + h). */
void blend_band_begin(struct blend_band *b, int y0, int h);

/* A tile kept for blending as blocks of BLEND_CHUNK_ROWS rows, so the
 * rows the canvas has passed can be given back while the rest waits for
 * the next bands. */
#define BLEND_CHUNK_ROWS 32

struct blend_tile {
    int w, h;
    int nchunks, first;             /* chunks before `first` are freed */
    uint8_t **chunk;
};

/* Takes the pixels of an RGB U8 image (copied; im stays the caller's). */
struct blend_tile *blend_tile_new(const struct img *im);

/* Frees the chunks that lie wholly above tile row `row`. */
void blend_tile_release_above(struct blend_tile *t, int row);

/* NULL is a no-op. */
void blend_tile_free(struct blend_tile *t);

/* Adds the rows of a tile whose pixel (0, 0) lies at canvas (x, y),
 * weighted by wx[t->w] × wy[t->h]; parts outside the band or the canvas
 * are ignored.  The rows inside the band must not have been released. */
void blend_band_add(struct blend_band *b, const struct blend_tile *t,
                    int x, int y, const float *wx, const float *wy);

/* Writes the band as RGB U8 rows (stride w × 3); pixels no tile covers
 * get bg. */
void blend_band_resolve(const struct blend_band *b, const uint8_t bg[3],
                        uint8_t *rgb);

#endif
