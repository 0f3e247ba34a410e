/* SPDX-License-Identifier: MIT */
/* Optical-density thresholding, morphology and dust removal. */
#include "imaging/tissue.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define OD_BINS 256
#define OD_MAX 3.0

void
tissue_params_default(struct tissue_params *p, double um_per_px)
{
    p->um_per_px = um_per_px > 0 ? um_per_px : 10.0;
    p->od_floor = 0.06;
    p->close_um = 40;
    p->open_um = 10;
    p->min_area_um2 = 1000;
    p->hole_area_um2 = 100000;
    p->stain_chroma_min = 0.06;
    p->stained_area_um2 = 100000;
}

int
tissue_otsu(const long *hist, int nbins)
{
    double total = 0, sum = 0, sum_b = 0, w_b = 0, best = -1;
    int t, best_t = 0;

    for (t = 0; t < nbins; t++) {
        total += hist[t];
        sum += (double)t * hist[t];
    }
    for (t = 0; t < nbins - 1; t++) {
        double w_f, m_b, m_f, between;
        w_b += hist[t];
        sum_b += (double)t * hist[t];
        w_f = total - w_b;
        if (w_b == 0 || w_f == 0)
            continue;
        m_b = sum_b / w_b;
        m_f = (sum - sum_b) / w_f;
        between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
        if (between > best) {
            best = between;
            best_t = t;
        }
    }
    return best_t;
}

/* Glass colour: per channel, the median over the brightest 10 %. */
static void
glass_colour(const struct img *ov, double bg[3])
{
    long hist[768] = { 0 }, want, acc = 0, lhist[3][256] = { { 0 } }, n = 0;
    size_t i, npx = (size_t)ov->w * ov->h;
    const uint8_t *p = ov->data;
    int s, c, v, cut;

    for (i = 0; i < npx; i++)
        hist[p[3 * i] + p[3 * i + 1] + p[3 * i + 2]]++;
    want = (long)(0.10 * (double)npx) + 1;
    for (cut = 765; cut > 0 && acc < want; cut--)
        acc += hist[cut];
    for (i = 0; i < npx; i++) {
        s = p[3 * i] + p[3 * i + 1] + p[3 * i + 2];
        if (s <= cut)
            continue;
        for (c = 0; c < 3; c++)
            lhist[c][p[3 * i + c]]++;
        n++;
    }
    for (c = 0; c < 3; c++) {
        acc = 0;
        for (v = 0; v < 255 && acc * 2 < n; v++)
            acc += lhist[c][v];
        bg[c] = v < 1 ? 1 : v;
    }
}

/* Where glass ends: its OD mode and spread, from a fine histogram of the
 * pixels near zero OD (the glass colour is taken from the brightest
 * pixels, so glass lies there).  The spread is the half width at half
 * maximum above the mode, as a Gaussian sigma. */
#define GLASS_BINS 300
#define GLASS_OD_MAX 0.3
#define GLASS_SIGMAS 8.0

/* A piece of the mask is tissue when this share of its pixels is
 * stained (or its stained pixels cover stained_area_um2). */
#define STAINED_SHARE 0.25

static double
glass_noise(const float *od, size_t npx, double *sigma)
{
    long h[GLASS_BINS] = { 0 };
    double bw = GLASS_OD_MAX / GLASS_BINS;
    size_t i;
    int b, mode = 0;

    for (i = 0; i < npx; i++) {
        b = (int)(od[i] / bw);
        if (b >= 0 && b < GLASS_BINS)
            h[b]++;
    }
    for (b = 1; b < GLASS_BINS; b++)
        if (h[b] > h[mode])
            mode = b;
    for (b = mode; b < GLASS_BINS - 1 && 2 * h[b] > h[mode]; b++)
        ;
    *sigma = h[mode] > 0 ? (b - mode + 0.5) * bw / 1.1774 : 0;
    return (mode + 0.5) * bw;
}

/* Summed optical density per pixel, as an F32 1-channel image. */
static struct img *
od_image(const struct img *ov, const double bg[3])
{
    struct img *od = img_new(ov->w, ov->h, 1, IMG_F32);
    double lut[3][256];
    size_t i, npx = (size_t)ov->w * ov->h;
    const uint8_t *p = ov->data;
    int c, v;

    if (od == NULL)
        return NULL;
    for (c = 0; c < 3; c++)
        for (v = 0; v < 256; v++)
            lut[c][v] = fmax(0.0, log10(bg[c] / (v < 1 ? 1.0 : v)));
    for (i = 0; i < npx; i++)
        ((float *)od->data)[i] = (float)(lut[0][p[3 * i]] +
                                         lut[1][p[3 * i + 1]] +
                                         lut[2][p[3 * i + 2]]);
    return od;
}

/* One pass of a square window along rows (dx = 1) or columns: out is 255
 * where any (dilate) or every (erode) in-image pixel of the window is. */
static void
window_pass(struct img *mask, int r, bool along_rows, bool dilate)
{
    int len = along_rows ? mask->w : mask->h;
    int lines = along_rows ? mask->h : mask->w, l, i, lo, hi, cnt;
    uint8_t *m = mask->data;
    int *pre = calloc((size_t)len + 1, sizeof(*pre));
    size_t step = along_rows ? 1 : (size_t)mask->w;

    if (pre == NULL)
        return;
    for (l = 0; l < lines; l++) {
        uint8_t *base = m + (along_rows ? (size_t)l * mask->w : (size_t)l);
        for (i = 0; i < len; i++)
            pre[i + 1] = pre[i] + (base[i * step] != 0);
        for (i = 0; i < len; i++) {
            lo = i - r < 0 ? 0 : i - r;
            hi = i + r + 1 > len ? len : i + r + 1;
            cnt = pre[hi] - pre[lo];
            base[i * step] = (dilate ? cnt > 0 : cnt == hi - lo) ? 255 : 0;
        }
    }
    free(pre);
}

void
tissue_dilate(struct img *mask, int r)
{
    if (r <= 0)
        return;
    window_pass(mask, r, true, true);
    window_pass(mask, r, false, true);
}

void
tissue_erode(struct img *mask, int r)
{
    if (r <= 0)
        return;
    window_pass(mask, r, true, false);
    window_pass(mask, r, false, false);
}

/* Stained pixels of a piece of the mask: pixels whose optical density
 * falls unequally on the three channels, (max - min) / sum at least
 * chroma_min.  Stains absorb some colours more than others (pale
 * counterstained stroma about 0.2, pure stains 0.25 to 0.5); dust,
 * fibres, smudges and pen marks on the glass are grey (under 0.05). */
static size_t
piece_stained(const struct img *ov, const double bg[3], double chroma_min,
              const size_t *px, size_t n)
{
    const uint8_t *p;
    double od[3], lo, hi, sum;
    size_t i, k = 0;
    int c;

    for (i = 0; i < n; i++) {
        p = (const uint8_t *)ov->data + 3 * px[i];
        for (c = 0; c < 3; c++)
            od[c] = fmax(0.0, log10(bg[c] / (p[c] < 1 ? 1.0 : p[c])));
        lo = fmin(od[0], fmin(od[1], od[2]));
        hi = fmax(od[0], fmax(od[1], od[2]));
        sum = od[0] + od[1] + od[2];
        k += sum > 0 && hi - lo >= chroma_min * sum;
    }
    return k;
}

/* What makes a piece of the mask debris rather than tissue (NULL for
 * holes): too small, or too few stained pixels. */
struct dust_test {
    const struct img *ov;
    const double *bg;
    const struct tissue_params *p;
};

static bool
is_debris(const struct dust_test *d, const size_t *px, size_t n)
{
    double a = d->p->um_per_px * d->p->um_per_px;
    size_t k;

    if ((double)n * a < d->p->min_area_um2)
        return true;
    k = piece_stained(d->ov, d->bg, d->p->stain_chroma_min, px, n);
    return k < STAINED_SHARE * n && (double)k * a < d->p->stained_area_um2;
}

/* Flips 8-connected pieces of value v: holes (v = 0, dust NULL) smaller
 * than min_px that do not touch the border; tissue pieces (v = 255) that
 * dust says are debris.  Returns the number flipped; *kept counts the
 * others. */
static int
flip_small(struct img *mask, uint8_t v, long min_px, bool holes,
           const struct dust_test *dust, int *kept)
{
    size_t npx = (size_t)mask->w * mask->h, i, head, tail;
    uint8_t *m = mask->data, *seen = calloc(npx, 1);
    size_t *queue = malloc(npx * sizeof(*queue));
    int flipped = 0, dx, dy;

    *kept = 0;
    if (seen == NULL || queue == NULL) {
        free(seen);
        free(queue);
        return 0;
    }
    for (i = 0; i < npx; i++) {
        bool border = false;
        if (m[i] != v || seen[i])
            continue;
        head = tail = 0;
        queue[tail++] = i;
        seen[i] = 1;
        while (head < tail) {
            size_t k = queue[head++];
            int x = (int)(k % mask->w), y = (int)(k / mask->w);
            if (x == 0 || y == 0 || x == mask->w - 1 || y == mask->h - 1)
                border = true;
            for (dy = -1; dy <= 1; dy++)
                for (dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy;
                    size_t q;
                    if (nx < 0 || ny < 0 || nx >= mask->w || ny >= mask->h)
                        continue;
                    q = (size_t)ny * mask->w + nx;
                    if (m[q] == v && !seen[q]) {
                        seen[q] = 1;
                        queue[tail++] = q;
                    }
                }
        }
        if (dust != NULL ? is_debris(dust, queue, tail)
                         : (long)tail < min_px && !(holes && border)) {
            for (head = 0; head < tail; head++)
                m[queue[head]] = v ? 0 : 255;
            flipped++;
        } else {
            (*kept)++;
        }
    }
    free(seen);
    free(queue);
    return flipped;
}

static int
radius_px(double um, double um_per_px)
{
    return (int)lround(um / um_per_px);
}

int
tissue_detect(const struct img *ov, const struct tissue_params *p,
              struct img **mask, struct tissue_stats *st, struct ss_err *err)
{
    long hist[OD_BINS] = { 0 };
    size_t i, npx = (size_t)ov->w * ov->h;
    double area_px = p->um_per_px * p->um_per_px;
    struct dust_test dust = { ov, st->bg, p };
    struct img *od;
    float *o;
    int holes_kept;

    memset(st, 0, sizeof(*st));
    *mask = NULL;
    if (ov->c != 3 || ov->type != IMG_U8)
        return err_set(err, SS_EFORMAT, "tissue: overview must be RGB "
                       "8-bit, got %d channels of %d bytes", ov->c,
                       (int)ov->type);
    glass_colour(ov, st->bg);
    od = od_image(ov, st->bg);
    *mask = img_new(ov->w, ov->h, 1, IMG_U8);
    if (od == NULL || *mask == NULL) {
        img_free(od);
        img_free(*mask);
        *mask = NULL;
        return err_set(err, -ENOMEM, "tissue: no memory for a %dx%d "
                       "overview", ov->w, ov->h);
    }
    o = od->data;
    for (i = 0; i < npx; i++) {
        int b = (int)(o[i] / OD_MAX * OD_BINS);
        hist[b >= OD_BINS ? OD_BINS - 1 : b]++;
    }
    st->otsu = (tissue_otsu(hist, OD_BINS) + 1) * OD_MAX / OD_BINS;
    st->glass_od = glass_noise(o, npx, &st->glass_sigma);
    st->threshold = fmax(p->od_floor, st->glass_od + GLASS_SIGMAS *
                         st->glass_sigma);
    for (i = 0; i < npx; i++)
        ((uint8_t *)(*mask)->data)[i] = o[i] > st->threshold ? 255 : 0;
    img_free(od);

    tissue_dilate(*mask, radius_px(p->close_um, p->um_per_px));
    tissue_erode(*mask, radius_px(p->close_um, p->um_per_px));
    tissue_erode(*mask, radius_px(p->open_um, p->um_per_px));
    tissue_dilate(*mask, radius_px(p->open_um, p->um_per_px));
    st->dust_removed = flip_small(*mask, 255, 0, false, &dust,
                                  &st->pieces);
    flip_small(*mask, 0, (long)ceil(p->hole_area_um2 / area_px), true,
               NULL, &holes_kept);
    for (i = 0; i < npx; i++)
        st->tissue_px += ((uint8_t *)(*mask)->data)[i] != 0;
    return 0;
}
