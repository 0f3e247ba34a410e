/* SPDX-License-Identifier: MIT */
/*
 * The PNG evaluation report: the confusion matrix as a grid of cells
 * shaded by row share (recall per truth class) with the counts written
 * in a 3 × 5 pixel digit font, beside the first image's error map (see
 * error_colour() in eval.c for its colours).
 */
#include "worker/analysis/eval.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "worker/analysis/internal.h"

#define CELL 96
#define GLYPH_SCALE 3

/* Rows of 3-bit patterns, top to bottom, for '0'-'9', '.' and ' '. */
static const uint8_t font[12][5] = {
    { 7, 5, 5, 5, 7 }, { 2, 6, 2, 2, 7 }, { 7, 1, 7, 4, 7 },
    { 7, 1, 7, 1, 7 }, { 5, 5, 7, 1, 1 }, { 7, 4, 7, 1, 7 },
    { 7, 4, 7, 5, 7 }, { 7, 1, 1, 2, 2 }, { 7, 5, 7, 5, 7 },
    { 7, 5, 7, 1, 7 }, { 0, 0, 0, 0, 2 }, { 0, 0, 0, 0, 0 },
};

static void
put_text(struct img *im, int x, int y, const char *s, uint8_t v)
{
    int i, r, c, a, b;

    for (i = 0; s[i] != '\0'; i++) {
        int g = s[i] >= '0' && s[i] <= '9' ? s[i] - '0'
              : s[i] == '.' ? 10 : 11;
        for (r = 0; r < 5; r++)
            for (c = 0; c < 3; c++) {
                if (!(font[g][r] & (4 >> c)))
                    continue;
                for (a = 0; a < GLYPH_SCALE; a++)
                    for (b = 0; b < GLYPH_SCALE; b++) {
                        int px = x + (i * 4 + c) * GLYPH_SCALE + b;
                        int py = y + r * GLYPH_SCALE + a;
                        if (px < im->w && py < im->h)
                            memset(img_u8(im, px, py), v, 3);
                    }
            }
    }
}

static void
draw_matrix(struct img *im, const struct an_confusion *c, int ox, int oy)
{
    int i, j, x, y;

    for (i = 0; i < c->ncls; i++) {
        double row = 0;
        for (j = 0; j < c->ncls; j++)
            row += (double)c->m[i][j];
        for (j = 0; j < c->ncls; j++) {
            double share = row > 0 ? c->m[i][j] / row : 0;
            uint8_t shade = (uint8_t)(255 - 200 * share);
            char txt[32];
            for (y = 2; y < CELL - 2; y++)
                for (x = 2; x < CELL - 2; x++) {
                    uint8_t *p = img_u8(im, ox + j * CELL + x,
                                        oy + i * CELL + y);
                    p[0] = shade;
                    p[1] = shade;
                    p[2] = 255;
                }
            snprintf(txt, sizeof(txt), "%lld", (long long)c->m[i][j]);
            put_text(im, ox + j * CELL + 6, oy + i * CELL + 20, txt,
                     share > 0.5 ? 255 : 0);
            snprintf(txt, sizeof(txt), "%.3f", share);
            put_text(im, ox + j * CELL + 6, oy + i * CELL + 50, txt,
                     share > 0.5 ? 255 : 0);
        }
    }
}

int
an_eval_png(const struct an_eval *e, const char *path, struct ss_err *err)
{
    int mw = e->conf.ncls * CELL, side = 1024, ew = 0, eh = 0, y, rc;
    struct img *map = NULL, *im;

    if (e->errmap != NULL) {
        double s = (double)(e->errmap->w > e->errmap->h ? e->errmap->w
                                                        : e->errmap->h);
        s = s > side ? side / s : 1;
        ew = (int)(e->errmap->w * s);
        eh = (int)(e->errmap->h * s);
        map = an__resample_nearest(e->errmap, ew > 0 ? ew : 1,
                                   eh > 0 ? eh : 1);
    }
    im = img_new(mw + 16 + ew, (eh > mw ? eh : mw), 3, IMG_U8);
    if (im == NULL || (e->errmap != NULL && map == NULL)) {
        img_free(im);
        img_free(map);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    memset(im->data, 255, img_bytes(im));
    draw_matrix(im, &e->conf, 0, 0);
    for (y = 0; map != NULL && y < eh; y++)
        memcpy(img_u8(im, mw + 16, y), img_u8(map, 0, y), (size_t)ew * 3);
    rc = img_png_write(im, path, err);
    img_free(im);
    img_free(map);
    return rc;
}
