/* SPDX-License-Identifier: MIT */
/*
 * Whole-slide segmentation by tiles.  The slide is read at the model's
 * resolution in bands, tissue is detected on the result, and every tile
 * whose core holds tissue is predicted with margin_px of real context on
 * each side (white beyond the slide edge, like glass).  Neighbouring
 * cores overlap by overlap_px; their logits are blended with weights that
 * fall linearly to the core edges, so no seam shows where tiles meet.
 * Logits are accumulated one tile row at a time in a band buffer, and
 * rows no later tile can touch are turned into probabilities and labels,
 * so the float state is bounded by the slide width.
 */
#include "worker/analysis/internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define READ_BAND_ROWS 256

void
an_seg_options_default(struct an_seg_options *o)
{
    memset(o, 0, sizeof(*o));
}

void
an_seg_free(struct an_seg *sg)
{
    if (sg == NULL)
        return;
    img_free(sg->rgb);
    img_free(sg->tissue);
    img_free(sg->prob);
    img_free(sg->label);
    free(sg);
}

void
an_background_rgb(const struct img *rgb, double bg[3])
{
    size_t i, n = (size_t)rgb->w * rgb->h, bright = 0;
    long hist[3][256] = { { 0 } };
    int k, v;

    for (i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)rgb->data + i * 3;
        for (k = 0; k < 3; k++)
            hist[k][p[k]]++;
        bright += p[0] >= 200 && p[1] >= 200 && p[2] >= 200;
    }
    for (k = 0; k < 3; k++) {
        long best = -1;
        bg[k] = 255;
        if (bright < n / 20)
            continue;
        for (v = 200; v < 256; v++)
            if (hist[k][v] > best) {
                best = hist[k][v];
                bg[k] = v;
            }
    }
}

/* Optical density against the slide's glass colour, Euclidean over
 * channels, smoothed over AN_GLASS_SIGMA_UM. */
static float *
glass_od(const struct img *rgb, double mpp)
{
    size_t i, n = (size_t)rgb->w * rgb->h;
    float *od = malloc(n * sizeof(float));
    float lut[3][256];
    double bg[3];
    int k, v;

    if (od == NULL)
        return NULL;
    an_background_rgb(rgb, bg);
    for (k = 0; k < 3; k++)
        for (v = 0; v < 256; v++)
            lut[k][v] = (float)fmax(0, log10(bg[k] / (v > 0 ? v : 1)));
    for (i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)rgb->data + i * 3;
        od[i] = sqrtf(lut[0][p[0]] * lut[0][p[0]] + lut[1][p[1]] *
                      lut[1][p[1]] + lut[2][p[2]] * lut[2][p[2]]);
    }
    if (an__gauss_blur(od, rgb->w, rgb->h, AN_GLASS_SIGMA_UM / mpp) < 0) {
        free(od);
        return NULL;
    }
    return od;
}

struct img *
an_tissue_mask(const struct img *rgb, double mpp)
{
    size_t i, n = (size_t)rgb->w * rgb->h;
    struct img *m = img_new(rgb->w, rgb->h, 1, IMG_U8);
    float *od = glass_od(rgb, mpp);
    double r = AN_GLASS_OPEN_UM / mpp;
    uint8_t *g;

    if (od == NULL || m == NULL) {
        free(od);
        img_free(m);
        return NULL;
    }
    /* Glass: clear pixels, opened so that clear stripes narrower than
     * the disc (pale gaps inside stroma) go back to tissue. */
    g = m->data;
    for (i = 0; i < n; i++)
        g[i] = od[i] < AN_GLASS_OD;
    free(od);
    if (an__morph_disc(g, m->w, m->h, -r) < 0 ||
        an__morph_disc(g, m->w, m->h, r) < 0)
        goto fail;
    for (i = 0; i < n; i++)
        g[i] = !g[i];
    if (an__remove_small(g, m->w, m->h,
                         (int64_t)(AN_TISSUE_MIN_AREA_UM2 / (mpp * mpp))) < 0)
        goto fail;
    return m;
fail:
    img_free(m);
    return NULL;
}

/* The slide at raster resolution, read in bands.
 * LIMIT: the raster (RGB, tissue, probabilities, labels: 8 bytes per pixel,
 * about 450 MB for 15 × 15 mm at 2 µm/px) is held in memory; a much
 * larger section fails with "out of memory for a WxH raster". */
static int
read_raster(struct an_slide *s, struct an_seg *sg, const
            struct an_seg_options *o, int total, struct ss_err *err)
{
    int64_t W0, H0;
    int y, band = 0;

    an_slide_size(s, &W0, &H0);
    sg->rgb = img_new(sg->w, sg->h, 3, IMG_U8);
    if (sg->rgb == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory for a %dx%d "
                       "raster", an_slide_path(s), sg->w, sg->h);
    for (y = 0; y < sg->h; y += READ_BAND_ROWS, band++) {
        int rows = sg->h - y < READ_BAND_ROWS ? sg->h - y : READ_BAND_ROWS;
        int64_t y0 = (int64_t)llround(y * sg->scale);
        int64_t y1 = (int64_t)llround((y + rows) * sg->scale);
        int64_t x1 = (int64_t)llround(sg->w * sg->scale);
        struct img *b;
        int rc = an_slide_read(s, 0, y0, x1, y1 - y0, sg->w, rows, &b, err);
        if (rc < 0)
            return rc;
        memcpy(img_u8(sg->rgb, 0, y), b->data, img_bytes(b));
        img_free(b);
        if (o->progress != NULL)
            o->progress(o->progress_ctx, band + 1, total);
    }
    return 0;
}

/* ---- tiled prediction ---------------------------------------------------- */

struct tiler {
    struct an_seg *sg;
    struct an_model *m;
    int T, S, M, ov;                /* core, stride, margin, overlap */
    int cols, rows;
    float *acc;                     /* T rows × w × (NCLASS + 1) */
    int acc_y0;                     /* raster row of acc row 0 */
    float *wt;                      /* 1-D ramp, T entries */
    /* the current tile row, shared by the threads */
    pthread_mutex_t lock;
    int row, next_col;
    int *todo;                      /* columns to run in this row */
    int ntodo;
    int failed;
    struct ss_err err;
    const struct an_seg_options *o;
    int done, total;
};

static int
tile_has_tissue(const struct tiler *t, int x0, int y0)
{
    const struct img *ti = t->sg->tissue;
    int x, y, x1 = x0 + t->T, y1 = y0 + t->T;

    x1 = x1 > ti->w ? ti->w : x1;
    y1 = y1 > ti->h ? ti->h : y1;
    for (y = y0; y < y1; y += 2)
        for (x = x0; x < x1; x += 2)
            if (*img_u8(ti, x, y))
                return 1;
    return 0;
}

/* The tile with its margins; outside the raster is white (glass). */
static struct img *
tile_input(const struct tiler *t, int x0, int y0)
{
    const struct img *rgb = t->sg->rgb;
    int n = t->T + 2 * t->M, y;
    struct img *in = img_new(n, n, 3, IMG_U8);
    int xs = x0 - t->M, ys = y0 - t->M;
    int a = xs < 0 ? 0 : xs, b = xs + n > rgb->w ? rgb->w : xs + n;

    if (in == NULL)
        return NULL;
    memset(in->data, 255, img_bytes(in));
    for (y = 0; y < n; y++) {
        int sy = ys + y;
        if (sy < 0 || sy >= rgb->h || b <= a)
            continue;
        memcpy(img_u8(in, a - xs, y), img_u8(rgb, a, sy),
               (size_t)(b - a) * 3);
    }
    return in;
}

static void
tile_accumulate(struct tiler *t, int x0, int y0, const struct img *lg)
{
    int w = t->sg->w, x, y, k;

    for (y = 0; y < t->T; y++) {
        int ay = y0 + y - t->acc_y0;
        if (y0 + y >= t->sg->h)
            break;
        for (x = 0; x < t->T && x0 + x < w; x++) {
            const float *l = img_f32(lg, x + t->M, y + t->M);
            float *a = t->acc + ((size_t)ay * w + x0 + x) * (AN_NCLASS + 1);
            float wgt = t->wt[x] * t->wt[y];
            for (k = 0; k < AN_NCLASS; k++)
                a[k] += wgt * l[k];
            a[AN_NCLASS] += wgt;
        }
    }
}

static void *
tile_worker(void *arg)
{
    struct tiler *t = arg;
    int n = t->T + 2 * t->M;
    struct img *lg = img_new(n, n, AN_NCLASS, IMG_F32);

    for (;;) {
        struct ss_err e;
        struct img *in;
        int i, x0, y0, rc;

        pthread_mutex_lock(&t->lock);
        i = t->failed ? t->ntodo : t->next_col++;
        pthread_mutex_unlock(&t->lock);
        if (i >= t->ntodo)
            break;
        x0 = t->todo[i] * t->S;
        y0 = t->row * t->S;
        in = tile_input(t, x0, y0);
        if (in == NULL || lg == NULL)
            rc = err_set(&e, -ENOMEM, "tile (%d, %d): out of memory", x0,
                         y0);
        else
            rc = t->m->ops->predict(t->m, in, lg, &e);
        img_free(in);
        pthread_mutex_lock(&t->lock);
        if (rc < 0 && !t->failed) {
            t->failed = 1;
            t->err = e;
            err_prefix(&t->err, "tile at (%d, %d)", x0, y0);
        } else if (rc == 0) {
            tile_accumulate(t, x0, y0, lg);
            t->done++;
            if (t->o->progress != NULL)
                t->o->progress(t->o->progress_ctx, t->done, t->total);
        }
        pthread_mutex_unlock(&t->lock);
    }
    img_free(lg);
    return NULL;
}

/* Softmax of the blended logits into prob and label for nrows rows
 * starting at acc row 0, then shifts the accumulator up by nrows; fails
 * (t->err set) when the softmax is no number. */
static int
finalise_rows(struct tiler *t, int nrows)
{
    struct an_seg *sg = t->sg;
    int w = sg->w, x, y, k;
    size_t rowf = (size_t)w * (AN_NCLASS + 1);

    for (y = 0; y < nrows && t->acc_y0 + y < sg->h; y++) {
        int gy = t->acc_y0 + y;
        for (x = 0; x < w; x++) {
            float *a = t->acc + (size_t)y * rowf + (size_t)x *
                       (AN_NCLASS + 1);
            uint8_t *p = img_u8(sg->prob, x, gy);
            float mx = -1e30f, e[AN_NCLASS], s = 0;
            int best = AN_GLASS, k0;
            if (a[AN_NCLASS] <= 0 ||
                (t->m->mask_glass && !*img_u8(sg->tissue, x, gy))) {
                memset(p, 0, AN_NCLASS);
                p[AN_GLASS] = 255;
                *img_u8(sg->label, x, gy) = AN_GLASS;
                continue;
            }
            /* Where the tissue mask decides glass, the model only chooses
             * among the tissue classes. */
            k0 = t->m->mask_glass ? AN_GLASS + 1 : AN_GLASS;
            for (k = k0; k < AN_NCLASS; k++)
                if (a[k] > mx) {
                    mx = a[k];
                    best = k;
                }
            for (k = 0; k < AN_NCLASS; k++)
                s += e[k] = k < k0 ? 0 : expf((a[k] - mx) / a[AN_NCLASS]);
            /* A NaN or infinite output of any tile (finite weights can
             * still overflow) reaches every sum it is blended into, so
             * this one check catches it; it would otherwise turn
             * silently into "no tissue". */
            if (!isfinite(s) || !(s > 0))
                return err_set(&t->err, SS_EFORMAT, "model %s gave a "
                               "non-finite output at pixel (%d, %d); its "
                               "probabilities are no numbers", t->m->name,
                               x, gy);
            for (k = 0; k < AN_NCLASS; k++)
                p[k] = (uint8_t)lrintf(255.0f * e[k] / s);
            *img_u8(sg->label, x, gy) = (uint8_t)best;
        }
    }
    memmove(t->acc, t->acc + (size_t)nrows * rowf,
            (size_t)(t->T - nrows) * rowf * sizeof(float));
    memset(t->acc + (size_t)(t->T - nrows) * rowf, 0,
           (size_t)nrows * rowf * sizeof(float));
    t->acc_y0 += nrows;
    return 0;
}

static int
run_row(struct tiler *t, int nthreads)
{
    pthread_t th[64];
    int c, i, started = 0;

    t->ntodo = 0;
    for (c = 0; c < t->cols; c++)
        if (tile_has_tissue(t, c * t->S, t->row * t->S))
            t->todo[t->ntodo++] = c;
    t->next_col = 0;
    t->sg->tiles_run += t->ntodo;
    for (i = 0; i < nthreads - 1 && i < t->ntodo - 1; i++)
        if (pthread_create(&th[i], NULL, tile_worker, t) == 0)
            started++;
    tile_worker(t);
    for (i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return t->failed ? t->err.code : 0;
}

static int
grid_count(int len, int T, int S)
{
    return len <= T ? 1 : 1 + (len - T + S - 1) / S;
}

static int
tiler_init(struct tiler *t, struct an_seg *sg, struct an_model *m,
           const struct an_seg_options *o)
{
    int i;

    memset(t, 0, sizeof(*t));
    t->sg = sg;
    t->m = m;
    t->o = o;
    t->T = o->tile_px > 0 ? o->tile_px : m->tile_px;
    t->ov = o->overlap_px > 0 ? o->overlap_px : t->T / 8;
    if (t->ov >= t->T)
        t->ov = t->T / 2;
    t->S = t->T - t->ov;
    t->M = m->margin_px;
    t->cols = grid_count(sg->w, t->T, t->S);
    t->rows = grid_count(sg->h, t->T, t->S);
    t->acc = calloc((size_t)t->T * sg->w * (AN_NCLASS + 1), sizeof(float));
    t->wt = malloc((size_t)t->T * sizeof(float));
    t->todo = malloc((size_t)t->cols * sizeof(int));
    if (t->acc == NULL || t->wt == NULL || t->todo == NULL)
        return -ENOMEM;
    for (i = 0; i < t->T; i++) {
        float a = (i + 0.5f) / (t->ov + 1), b = (t->T - i - 0.5f) /
                                                 (t->ov + 1);
        float v = a < b ? a : b;
        t->wt[i] = v > 1 ? 1 : v < 1e-3f ? 1e-3f : v;
    }
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

static void
tiler_fini(struct tiler *t)
{
    free(t->acc);
    free(t->wt);
    free(t->todo);
    pthread_mutex_destroy(&t->lock);
}

static int
nthreads_of(const struct an_seg_options *o)
{
    long n = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > AN_THREADS_MAX ? AN_THREADS_MAX : (int)n;
}

/* Tissue, then the tiles, then the final rows. */
static int
predict_all(struct an_seg *sg, struct an_model *m,
            const struct an_seg_options *o, int done, int total,
            struct ss_err *err)
{
    struct tiler t;
    int rc, nth = nthreads_of(o);
    size_t i;

    memset(&t, 0, sizeof(t));
    sg->tissue = an_tissue_mask(sg->rgb, sg->mpp);
    sg->prob = img_new(sg->w, sg->h, AN_NCLASS, IMG_U8);
    sg->label = img_new(sg->w, sg->h, 1, IMG_U8);
    if (sg->tissue == NULL || sg->prob == NULL || sg->label == NULL ||
        tiler_init(&t, sg, m, o) < 0) {
        tiler_fini(&t);
        return err_set(err, -ENOMEM, "segmentation: out of memory");
    }
    t.done = done;
    t.total = total;
    sg->tiles_total = t.cols * t.rows;
    for (t.row = 0; t.row < t.rows; t.row++) {
        rc = run_row(&t, nth);
        if (rc == 0)
            rc = finalise_rows(&t, t.row + 1 < t.rows ? t.S : t.T);
        if (rc < 0) {
            if (err != NULL)
                *err = t.err;
            tiler_fini(&t);
            return rc;
        }
    }
    tiler_fini(&t);
    for (i = 0; i < (size_t)sg->w * sg->h; i++)
        ((uint8_t *)sg->tissue->data)[i] =
            ((uint8_t *)sg->label->data)[i] != AN_GLASS;
    return 0;
}

static struct an_seg *
seg_new(int w, int h, double mpp, double slide_mpp)
{
    struct an_seg *sg = calloc(1, sizeof(*sg));

    if (sg == NULL)
        return NULL;
    sg->w = w;
    sg->h = h;
    sg->ext_w = w;
    sg->ext_h = h;
    sg->mpp = mpp;
    sg->slide_mpp = slide_mpp;
    sg->scale = mpp / slide_mpp;
    return sg;
}

/* Upper bound of progress units: read bands plus tiles. */
static int
progress_total(const struct an_seg *sg, const struct an_model *m,
               const struct an_seg_options *o, int *bands)
{
    int T = o->tile_px > 0 ? o->tile_px : m->tile_px;
    int ov = o->overlap_px > 0 ? o->overlap_px : T / 8;

    *bands = (sg->h + READ_BAND_ROWS - 1) / READ_BAND_ROWS;
    if (ov >= T)
        ov = T / 2;
    return *bands + grid_count(sg->w, T, T - ov) *
                    grid_count(sg->h, T, T - ov);
}

int
an_segment(struct an_slide *s, struct an_model *m,
           const struct an_seg_options *o, struct an_seg **out,
           struct ss_err *err)
{
    int64_t W0, H0;
    double slide_mpp = an_slide_mpp(s), t0 = util_now_ms();
    double scale = m->mpp / slide_mpp;
    struct an_seg *sg;
    int rc, bands, total;

    *out = NULL;
    an_slide_size(s, &W0, &H0);
    sg = seg_new((int)ceil(W0 / scale), (int)ceil(H0 / scale), m->mpp,
                 slide_mpp);
    if (sg == NULL)
        return err_set(err, -ENOMEM, "segmentation: out of memory");
    /* The raster rounds the slide up to whole pixels; areas count the
     * last column and row by the share they really cover. */
    sg->ext_w = W0 / scale;
    sg->ext_h = H0 / scale;
    total = progress_total(sg, m, o, &bands);
    rc = read_raster(s, sg, o, total, err);
    if (rc == 0)
        log_info("analysis", "read w=%d h=%d mpp=%.3f ms=%.0f", sg->w,
                 sg->h, sg->mpp, util_now_ms() - t0);
    if (rc == 0)
        rc = predict_all(sg, m, o, bands, total, err);
    if (rc < 0) {
        an_seg_free(sg);
        return rc;
    }
    log_info("analysis", "segmented tiles=%d of=%d ms=%.0f", sg->tiles_run,
             sg->tiles_total, util_now_ms() - t0);
    *out = sg;
    return 0;
}

int
an_segment_image(const struct img *rgb, double mpp, struct an_model *m,
                 const struct an_seg_options *o, struct an_seg **out,
                 struct ss_err *err)
{
    struct an_seg *sg;
    int rc, bands, total;

    *out = NULL;
    if (rgb->type != IMG_U8 || rgb->c != 3)
        return err_set(err, -EINVAL, "segmentation needs an RGB U8 image");
    sg = seg_new(rgb->w, rgb->h, mpp, mpp);
    if (sg == NULL || (sg->rgb = img_dup(rgb)) == NULL) {
        an_seg_free(sg);
        return err_set(err, -ENOMEM, "segmentation: out of memory");
    }
    total = progress_total(sg, m, o, &bands);
    rc = predict_all(sg, m, o, 0, total - bands, err);
    if (rc < 0) {
        an_seg_free(sg);
        return rc;
    }
    *out = sg;
    return 0;
}
