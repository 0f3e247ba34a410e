/* SPDX-License-Identifier: MIT */
/*
 * The colour of blank glass as a scan captured it, measured from the
 * corrected tiles themselves.  The stitched image fills cells that were
 * never captured (no tissue there) with this colour, so they match the
 * glass around the tissue instead of showing as rectangles.
 *
 * Per tile: luma (Rec. 601) of every GLASS_STEP-th pixel in x and y;
 * the glass population is the tallest luma bin (3-bin sums) among the
 * GLASS_WINDOW levels below the tile's 99th luma percentile, since glass
 * is the brightest large population on a bright-field slide.  Pixels
 * within GLASS_BAND luma levels of that mode are glass; when they are at
 * least GLASS_MIN_FRACTION of the samples their per-channel median is
 * the tile's glass colour, provided it looks like glass: luma at least
 * GLASS_MIN_LUMA and channels within GLASS_MAX_CHROMA of each other
 * (flat-field makes the blank field grey, and glass elsewhere on the
 * slide stays close to grey, while stained tissue does not).  Otherwise
 * the tile has too little glass to say.  Over a scan the colour is the
 * per-channel median of the tiles' colours, which outvotes the odd tile
 * whose brightest population is pale, unstained tissue.
 */
#ifndef SS_IMAGING_GLASS_H
#define SS_IMAGING_GLASS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/img.h"

#define GLASS_STEP 4                /* px between samples */
#define GLASS_WINDOW 16             /* luma levels searched for the mode */
#define GLASS_BAND 4                /* luma levels either side of it */
#define GLASS_MIN_FRACTION 0.10     /* of the samples, to count as glass */
#define GLASS_MIN_LUMA 128          /* darker is not glass */
#define GLASS_MAX_CHROMA 16         /* max − min channel, levels */

/* The glass colour of one RGB U8 tile; false (rgb untouched) when the
 * tile holds too little glass or is not RGB U8. */
bool glass_tile_colour(const struct img *tile, uint8_t rgb[3]);

/* Per-channel median of n tile colours (n ≥ 1), deterministic for a
 * given set whatever its order; the upper middle when n is even. */
void glass_median(const uint8_t (*colours)[3], int n, uint8_t rgb[3]);

#endif
