/* SPDX-License-Identifier: MIT */
/*
 * Stitching (imaging/stitch.h): the registration pass and the rendering
 * pass over the tiles of one scan.
 *
 * Registration visits the tiles in grid order and loads each once.  For
 * every pair of grid neighbours the stage positions predict an overlap
 * rectangle; as each tile arrives its grey view of that rectangle is cut
 * out, and once both views of a pair exist they are phase-correlated and
 * freed, so only about one row of overlap strips is held.  The trusted
 * pairs then go to the global least-squares placement.
 *
 * Tiles are loaded on the calling thread while the pairs are registered
 * on one thread per further CPU.
 *
 * LIMIT: registration costs about 25 ms of CPU for the overlap of two
 * 2048 × 1536 frames: a 30 × 30 scan spends some 45 s of CPU registering
 * before the first row is written.  Only grid neighbours (right, below)
 * are paired; diagonal overlaps are not measured.
 *
 * Rendering walks the canvas in bands of BAND_ROWS rows.  A tile is
 * loaded when the first band reaches it, resampled once by its sub-pixel
 * offset, blended into every band it covers, and given back block by
 * block as the bands pass it.
 *
 * LIMIT: all tiles of a grid row are loaded when the bands reach that
 * row, so memory peaks at about one row of frames (canvas width × frame
 * height × 3 bytes: 280 MB for 30 columns of 2048 × 1536 frames) plus the
 * writer's bands.
 */
#include "imaging/stitch.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "imaging/blend.h"
#include "imaging/glass.h"
#include "imaging/place.h"
#include "imaging/register.h"

#define BAND_ROWS 32
#define REG_SIGMA_PX 0.25           /* assumed error of one registration */

struct pair {
    int a, b;                       /* tile slots: a left of or above b */
    int ax, ay, bx, by;             /* crop origins in a and in b */
    int w, h;                       /* crop size */
    float *va, *vb;                 /* grey views, w × h, while waiting */
    struct reg_result r;
    bool tried;
};

struct reg_job {
    const struct stitch_input *in;
    int *cell;                      /* rows × cols → slot or −1 */
    struct pair *pairs;
    int npairs;
    int *order;                     /* slots in grid order */
    uint8_t (*glass)[3];            /* glass colours of the tiles with */
    int nglass;                     /* enough glass, in grid order */
    struct reg_params rp;
    /* Pairs whose two views are cut wait in a queue for the registering
     * threads while the calling thread loads the next tiles. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int *queue, head, tail;
    int quit, failed;
    struct ss_err qerr;
};

static int
check_input(const struct stitch_input *in, struct ss_err *err)
{
    int i;

    if (in->frame_w < 16 || in->frame_h < 16 || in->rows < 1 ||
        in->cols < 1 || !(in->step_x_px > 0) || !(in->step_y_px > 0) ||
        in->ntiles < 0 || (in->ntiles > 0 && in->tiles == NULL) ||
        in->load == NULL)
        return err_set(err, -EINVAL, "stitch: bad geometry: frame %dx%d, "
                       "grid %dx%d, step %gx%g px, %d tiles", in->frame_w,
                       in->frame_h, in->cols, in->rows, in->step_x_px,
                       in->step_y_px, in->ntiles);
    for (i = 0; i < in->ntiles; i++) {
        const struct stitch_tile *t = &in->tiles[i];

        if (t->row < 0 || t->row >= in->rows || t->col < 0 ||
            t->col >= in->cols || !isfinite(t->x_px) || !isfinite(t->y_px))
            return err_set(err, -EINVAL, "stitch: tile %d: cell (%d, %d) "
                           "or position (%g, %g) outside the %dx%d grid",
                           t->index, t->col, t->row, t->x_px, t->y_px,
                           in->cols, in->rows);
    }
    return 0;
}

static int
canvas_size(double step, int n, int frame)
{
    return (int)ceil((n - 1) * step + frame - 1e-9);
}

/* Cell → tile slot; a cell captured twice is an error. */
static int
map_cells(const struct stitch_input *in, int *cell, struct ss_err *err)
{
    int i;

    for (i = 0; i < in->rows * in->cols; i++)
        cell[i] = -1;
    for (i = 0; i < in->ntiles; i++) {
        int *c = &cell[in->tiles[i].row * in->cols + in->tiles[i].col];

        if (*c >= 0)
            return err_set(err, -EINVAL, "stitch: tiles %d and %d both "
                           "claim cell (%d, %d)", in->tiles[*c].index,
                           in->tiles[i].index, in->tiles[i].col,
                           in->tiles[i].row);
        *c = i;
    }
    return 0;
}

/* The overlap the stage positions predict for tiles a and b, as crop
 * origins in each and a common size; false when it is too thin. */
static bool
plan_pair(const struct stitch_input *in, int a, int b, struct pair *p)
{
    const struct stitch_tile *ta = &in->tiles[a], *tb = &in->tiles[b];
    double x0 = fmax(ta->x_px, tb->x_px), y0 = fmax(ta->y_px, tb->y_px);
    double x1 = fmin(ta->x_px, tb->x_px) + in->frame_w;
    double y1 = fmin(ta->y_px, tb->y_px) + in->frame_h;

    memset(p, 0, sizeof(*p));
    p->a = a;
    p->b = b;
    p->ax = (int)lround(x0 - ta->x_px);
    p->ay = (int)lround(y0 - ta->y_px);
    p->bx = (int)lround(x0 - tb->x_px);
    p->by = (int)lround(y0 - tb->y_px);
    p->w = (int)floor(x1 - x0);
    p->h = (int)floor(y1 - y0);
    p->w = p->w < in->frame_w - p->ax ? p->w : in->frame_w - p->ax;
    p->w = p->w < in->frame_w - p->bx ? p->w : in->frame_w - p->bx;
    p->h = p->h < in->frame_h - p->ay ? p->h : in->frame_h - p->ay;
    p->h = p->h < in->frame_h - p->by ? p->h : in->frame_h - p->by;
    return p->ax >= 0 && p->ay >= 0 && p->bx >= 0 && p->by >= 0 &&
           p->w >= 8 && p->h >= 8;
}

static int
plan_pairs(struct reg_job *j, struct ss_err *err)
{
    const struct stitch_input *in = j->in;
    int r, c, k;

    j->pairs = calloc((size_t)2 * in->rows * in->cols + 1,
                      sizeof(*j->pairs));
    if (j->pairs == NULL)
        return err_set(err, -ENOMEM, "stitch: out of memory");
    for (r = 0; r < in->rows; r++)
        for (c = 0; c < in->cols; c++) {
            int a = j->cell[r * in->cols + c];
            int nb[2] = {
                c + 1 < in->cols ? j->cell[r * in->cols + c + 1] : -1,
                r + 1 < in->rows ? j->cell[(r + 1) * in->cols + c] : -1,
            };

            for (k = 0; k < 2; k++)
                if (a >= 0 && nb[k] >= 0 &&
                    plan_pair(in, a, nb[k], &j->pairs[j->npairs]))
                    j->npairs++;
        }
    return 0;
}

/* Grey view (Rec. 601 luma) of a w × h window of an RGB tile. */
static float *
grey_view(const struct img *im, int x0, int y0, int w, int h)
{
    float *v = malloc(sizeof(float) * (size_t)w * h);
    int x, y;

    if (v == NULL)
        return NULL;
    for (y = 0; y < h; y++) {
        const uint8_t *p = img_u8(im, x0, y0 + y);

        for (x = 0; x < w; x++, p += 3)
            v[(size_t)y * w + x] = 0.299f * p[0] + 0.587f * p[1] +
                                   0.114f * p[2];
    }
    return v;
}

static int
load_tile(const struct stitch_input *in, int slot, struct img **out,
          struct ss_err *err)
{
    const struct stitch_tile *t = &in->tiles[slot];
    struct img *im = NULL;
    int rc = in->load(in->ctx, t->index, &im, err);

    if (rc < 0)
        return err_prefix(err, "tile %d", t->index);
    if (im == NULL || im->type != IMG_U8 || im->c != 3 ||
        im->w != in->frame_w || im->h != in->frame_h) {
        rc = err_set(err, SS_EFORMAT, "tile %d: loaded %dx%d, %d channels; "
                     "expected %dx%d RGB", t->index, im ? im->w : 0,
                     im ? im->h : 0, im ? im->c : 0, in->frame_w,
                     in->frame_h);
        img_free(im);
        return rc;
    }
    *out = im;
    return 0;
}

static void
reg_params_for(const struct stitch_input *in, struct reg_params *rp)
{
    reg_params_default(rp);
    /* The crops sit on whole pixels, so allow the rounding on top. */
    rp->max_shift_px = fmax(in->max_stage_err_px, 1.0) + 1.0;
}

static void
run_pair(struct reg_job *j, struct pair *p)
{
    struct ss_err e;
    int rc = reg_phase_correlate(p->va, p->vb, p->w, p->h, &j->rp, &p->r,
                                 &e);

    p->tried = true;
    free(p->va);
    free(p->vb);
    p->va = p->vb = NULL;
    if (rc < 0) {
        pthread_mutex_lock(&j->mu);
        if (!j->failed) {
            j->failed = 1;
            j->qerr = e;
        }
        pthread_mutex_unlock(&j->mu);
    }
}

/* Takes the next queued pair, or returns NULL (mu held by the caller). */
static struct pair *
pop_pair(struct reg_job *j)
{
    if (j->head == j->tail)
        return NULL;
    return &j->pairs[j->queue[j->head++]];
}

static void *
reg_worker(void *arg)
{
    struct reg_job *j = arg;
    struct pair *p;

    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->quit && j->head == j->tail)
            pthread_cond_wait(&j->cv, &j->mu);
        p = pop_pair(j);
        if (p == NULL)
            break;
        pthread_mutex_unlock(&j->mu);
        run_pair(j, p);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Queues a pair whose views are both cut.  When more pairs wait than the
 * threads can take, the caller registers one itself, which keeps the
 * views held in memory to a few pairs. */
static void
push_pair(struct reg_job *j, int i, int nthreads)
{
    struct pair *p = NULL;

    pthread_mutex_lock(&j->mu);
    j->queue[j->tail++] = i;
    pthread_cond_signal(&j->cv);
    if (j->tail - j->head > 2 * nthreads)
        p = pop_pair(j);
    pthread_mutex_unlock(&j->mu);
    if (p != NULL)
        run_pair(j, p);
}

/* Cuts tile `slot`'s views for its pairs and queues the pairs whose other
 * view is already there. */
static int
take_views(struct reg_job *j, int slot, const struct img *im, int nthreads,
           struct ss_err *err)
{
    int i;

    for (i = 0; i < j->npairs; i++) {
        struct pair *p = &j->pairs[i];

        if (p->a == slot)
            p->va = grey_view(im, p->ax, p->ay, p->w, p->h);
        else if (p->b == slot)
            p->vb = grey_view(im, p->bx, p->by, p->w, p->h);
        else
            continue;
        if ((p->a == slot && p->va == NULL) ||
            (p->b == slot && p->vb == NULL))
            return err_set(err, -ENOMEM, "stitch: out of memory");
        if (p->va != NULL && p->vb != NULL)
            push_pair(j, i, nthreads);
    }
    return 0;
}

static int
cmp_grid(const void *x, const void *y, void *ctx)
{
    const struct stitch_tile *t = ctx;
    const struct stitch_tile *a = &t[*(const int *)x];
    const struct stitch_tile *b = &t[*(const int *)y];

    if (a->row != b->row)
        return a->row - b->row;
    return a->col - b->col;
}

static int
load_all(struct reg_job *j, int nthreads, struct ss_err *err)
{
    const struct stitch_input *in = j->in;
    int i, rc;

    for (i = 0; i < in->ntiles; i++) {
        struct img *im = NULL;

        if (in->progress != NULL &&
            in->progress(in->ctx, i, 2 * in->ntiles) != 0)
            return err_set(err, SS_ECANCELED, "stitch: cancelled while "
                           "registering");
        rc = load_tile(in, j->order[i], &im, err);
        if (rc == 0 && glass_tile_colour(im, j->glass[j->nglass]))
            j->nglass++;
        if (rc == 0)
            rc = take_views(j, j->order[i], im, nthreads, err);
        img_free(im);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Loads the tiles in grid order on this thread and registers the pairs on
 * the others (one per online CPU beyond this one). */
static int
register_all(struct reg_job *j, struct ss_err *err)
{
    const struct stitch_input *in = j->in;
    int n = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1, started = 0, i, rc;
    pthread_t th[8];

    n = n < 0 ? 0 : n > 8 ? 8 : n;
    for (i = 0; i < in->ntiles; i++)
        j->order[i] = i;
    qsort_r(j->order, (size_t)in->ntiles, sizeof(int), cmp_grid,
            (void *)in->tiles);
    reg_params_for(in, &j->rp);
    j->queue = malloc(sizeof(int) * ((size_t)j->npairs + 1));
    if (j->queue == NULL)
        return err_set(err, -ENOMEM, "stitch: out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    while (started < n &&
           pthread_create(&th[started], NULL, reg_worker, j) == 0)
        started++;
    rc = load_all(j, started + 1, err);

    /* Drain: the workers finish the queue, the caller helps. */
    pthread_mutex_lock(&j->mu);
    j->quit = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    reg_worker(j);
    for (i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (rc == 0 && j->failed) {
        if (err != NULL)
            *err = j->qerr;
        rc = j->qerr.code < 0 ? j->qerr.code : -ENOMEM;
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->queue);
    return rc;
}

static double
max_err_px(const struct stitch_input *in)
{
    return in->max_stage_err_px > 0 ? in->max_stage_err_px : 20.0;
}

/* Trusted registrations as placement constraints: position of b minus
 * position of a, refused when it corrects the stage by more than it can
 * plausibly be wrong. */
static int
collect_constraints(struct reg_job *j, struct place_pair *pp)
{
    const struct stitch_input *in = j->in;
    int i, n = 0;

    for (i = 0; i < j->npairs; i++) {
        const struct pair *p = &j->pairs[i];
        const struct stitch_tile *ta = &in->tiles[p->a];
        const struct stitch_tile *tb = &in->tiles[p->b];
        double dx, dy;

        if (!p->tried || !p->r.ok) {
            log_debug("stitch", "pair tiles=%d,%d refused=\"%s\" "
                      "peak_ratio=%.2f ncc=%.3f", ta->index, tb->index,
                      p->r.why ? p->r.why : "not registered",
                      p->r.peak_ratio, p->r.ncc);
            continue;
        }
        dx = p->ax - p->bx + p->r.dx;
        dy = p->ay - p->by + p->r.dy;
        if (hypot(dx - (tb->x_px - ta->x_px), dy - (tb->y_px - ta->y_px)) >
            max_err_px(in)) {
            log_debug("stitch", "pair tiles=%d,%d refused=\"correction "
                      "beyond stage error\" dx=%.2f dy=%.2f", ta->index,
                      tb->index, dx, dy);
            continue;
        }
        log_debug("stitch", "pair tiles=%d,%d dx=%.3f dy=%.3f peak_ratio=%.2f "
                  "ncc=%.3f", ta->index, tb->index, dx, dy, p->r.peak_ratio,
                  p->r.ncc);
        pp[n].a = p->a;
        pp[n].b = p->b;
        pp[n].dx = dx;
        pp[n].dy = dy;
        pp[n].weight = 1.0 / (REG_SIGMA_PX * REG_SIGMA_PX);
        n++;
    }
    return n;
}

static int
solve(struct reg_job *j, struct stitch_placement *pl, struct ss_err *err)
{
    const struct stitch_input *in = j->in;
    struct place_problem pb;
    struct place_pair *pp = calloc((size_t)j->npairs + 1, sizeof(*pp));
    double *x0 = malloc(sizeof(double) * ((size_t)in->ntiles + 1));
    double *y0 = malloc(sizeof(double) * ((size_t)in->ntiles + 1));
    double sigma_stage = fmax(max_err_px(in) / 3, 0.5);
    int i, rc = -ENOMEM;

    if (pp == NULL || x0 == NULL || y0 == NULL)
        goto out;
    for (i = 0; i < in->ntiles; i++) {
        x0[i] = in->tiles[i].x_px;
        y0[i] = in->tiles[i].y_px;
    }
    memset(&pb, 0, sizeof(pb));
    pb.n = in->ntiles;
    pb.x0 = x0;
    pb.y0 = y0;
    pb.prior_weight = 1.0 / (sigma_stage * sigma_stage);
    pb.pairs = pp;
    pb.npairs = collect_constraints(j, pp);
    pb.outlier_px = 1.0;
    rc = place_solve(&pb, pl->x_px, pl->y_px, &pl->residual_rms_px, err);
    if (rc < 0)
        goto out;
    for (i = 0; i < in->ntiles; i++)
        pl->flags[i] = STITCH_STAGE_ONLY;
    for (i = 0; i < pb.npairs; i++) {
        if (!pp[i].used)
            continue;
        pl->pairs_used++;
        pl->flags[pp[i].a] &= ~STITCH_STAGE_ONLY;
        pl->flags[pp[i].b] &= ~STITCH_STAGE_ONLY;
    }
    pl->pairs_total = j->npairs;
    pl->pairs_rejected = j->npairs - pl->pairs_used;
out:
    if (rc == -ENOMEM)
        err_set(err, rc, "stitch: out of memory");
    free(pp);
    free(x0);
    free(y0);
    return rc;
}

void
stitch_placement_free(struct stitch_placement *pl)
{
    if (pl == NULL)
        return;
    free(pl->x_px);
    free(pl->y_px);
    free(pl->flags);
    free(pl);
}

static struct stitch_placement *
placement_new(const struct stitch_input *in)
{
    struct stitch_placement *pl = calloc(1, sizeof(*pl));
    size_t n = (size_t)in->ntiles + 1;

    if (pl == NULL)
        return NULL;
    pl->ntiles = in->ntiles;
    pl->x_px = calloc(n, sizeof(double));
    pl->y_px = calloc(n, sizeof(double));
    pl->flags = calloc(n, sizeof(int));
    pl->canvas_w = canvas_size(in->step_x_px, in->cols, in->frame_w);
    pl->canvas_h = canvas_size(in->step_y_px, in->rows, in->frame_h);
    if (pl->x_px == NULL || pl->y_px == NULL || pl->flags == NULL) {
        stitch_placement_free(pl);
        return NULL;
    }
    return pl;
}

int
stitch_register(const struct stitch_input *in,
                struct stitch_placement **out, struct ss_err *err)
{
    struct reg_job j;
    struct stitch_placement *pl = NULL;
    double t0 = util_now_ms();
    int rc, i, stage_only = 0;

    *out = NULL;
    rc = check_input(in, err);
    if (rc < 0)
        return rc;
    memset(&j, 0, sizeof(j));
    j.in = in;
    j.cell = malloc(sizeof(int) * (size_t)in->rows * in->cols);
    j.order = malloc(sizeof(int) * ((size_t)in->ntiles + 1));
    j.glass = malloc(sizeof(*j.glass) * ((size_t)in->ntiles + 1));
    pl = placement_new(in);
    if (j.cell == NULL || j.order == NULL || j.glass == NULL || pl == NULL)
        rc = err_set(err, -ENOMEM, "stitch: out of memory");
    if (rc == 0)
        rc = map_cells(in, j.cell, err);
    if (rc == 0)
        rc = plan_pairs(&j, err);
    if (rc == 0)
        rc = register_all(&j, err);
    if (rc == 0)
        rc = solve(&j, pl, err);
    if (rc == 0 && j.nglass > 0) {
        glass_median((const uint8_t (*)[3])j.glass, j.nglass, pl->glass);
        pl->glass_tiles = j.nglass;
    }
    for (i = 0; i < j.npairs; i++) {
        free(j.pairs[i].va);
        free(j.pairs[i].vb);
    }
    free(j.pairs);
    free(j.cell);
    free(j.order);
    free(j.glass);
    if (rc < 0) {
        stitch_placement_free(pl);
        return rc;
    }
    for (i = 0; i < pl->ntiles; i++)
        stage_only += (pl->flags[i] & STITCH_STAGE_ONLY) != 0;
    log_info("stitch", "registered tiles=%d pairs=%d used=%d rejected=%d "
             "stage_only=%d residual_rms_px=%.3f glass=%d,%d,%d "
             "glass_tiles=%d ms=%.0f", pl->ntiles, pl->pairs_total,
             pl->pairs_used, pl->pairs_rejected, stage_only,
             pl->residual_rms_px, pl->glass[0], pl->glass[1], pl->glass[2],
             pl->glass_tiles, util_now_ms() - t0);
    *out = pl;
    return 0;
}

static enum blend_resample
resample_mode(const struct stitch_input *in)
{
    switch (in->resample) {
    case STITCH_RESAMPLE_NEAREST:
        return BLEND_NEAREST;
    case STITCH_RESAMPLE_BILINEAR:
        return BLEND_BILINEAR;
    default:
        return BLEND_CUBIC;
    }
}

struct render {
    const struct stitch_input *in;
    const struct stitch_placement *pl;
    enum blend_resample mode;
    int rect[4];                    /* canvas part written: x, y, w, h */
    int *x, *y;                     /* whole-pixel positions in rect */
    double *fx, *fy;                /* fractions left for resampling */
    int *order;                     /* slots by y */
    int next;                       /* first slot in order not yet live */
    struct blend_tile **tile;       /* live, resampled tiles */
    int *live;                      /* slots now live */
    int nlive;
    float *wx, *wy;
    struct blend_band band;
    uint8_t *rgb;
};

static int
cmp_y(const void *a, const void *b, void *ctx)
{
    const int *y = ctx;

    return y[*(const int *)a] - y[*(const int *)b];
}

static int
render_init(struct render *r, struct ss_err *err)
{
    const struct stitch_input *in = r->in;
    size_t n = (size_t)in->ntiles + 1;
    int i;

    r->x = malloc(n * sizeof(int));
    r->y = malloc(n * sizeof(int));
    r->fx = malloc(n * sizeof(double));
    r->fy = malloc(n * sizeof(double));
    r->order = malloc(n * sizeof(int));
    r->live = malloc(n * sizeof(int));
    r->tile = calloc(n, sizeof(struct blend_tile *));
    r->wx = malloc(sizeof(float) * (size_t)in->frame_w);
    r->wy = malloc(sizeof(float) * (size_t)in->frame_h);
    r->rgb = malloc((size_t)r->rect[2] * BAND_ROWS * 3);
    if (!r->x || !r->y || !r->fx || !r->fy || !r->order || !r->live ||
        !r->tile || !r->wx || !r->wy || !r->rgb)
        return err_set(err, -ENOMEM, "stitch: out of memory");
    for (i = 0; i < in->ntiles; i++) {
        blend_split(r->pl->x_px[i], r->mode, &r->x[i], &r->fx[i]);
        blend_split(r->pl->y_px[i], r->mode, &r->y[i], &r->fy[i]);
        r->x[i] -= r->rect[0];
        r->y[i] -= r->rect[1];
        r->order[i] = i;
    }
    qsort_r(r->order, (size_t)in->ntiles, sizeof(int), cmp_y, r->y);
    blend_ramp(r->wx, in->frame_w, in->frame_w - in->step_x_px);
    blend_ramp(r->wy, in->frame_h, in->frame_h - in->step_y_px);
    return blend_band_init(&r->band, r->rect[2], BAND_ROWS, err);
}

static void
render_fini(struct render *r)
{
    int i;

    for (i = 0; r->tile != NULL && i < r->in->ntiles; i++)
        blend_tile_free(r->tile[i]);
    free(r->x);
    free(r->y);
    free(r->fx);
    free(r->fy);
    free(r->order);
    free(r->live);
    free(r->tile);
    free(r->wx);
    free(r->wy);
    free(r->rgb);
    blend_band_fini(&r->band);
}

/* Makes live every tile that starts above the end of band [y0, y1). */
static int
admit_tiles(struct render *r, int y0, int y1, struct ss_err *err)
{
    const struct stitch_input *in = r->in;

    while (r->next < in->ntiles && r->y[r->order[r->next]] < y1) {
        int s = r->order[r->next++];
        struct img *im = NULL, *sh;
        int rc;

        if (r->y[s] + in->frame_h <= y0 || r->x[s] >= r->rect[2] ||
            r->x[s] + in->frame_w <= 0)
            continue;               /* entirely off the canvas */
        rc = load_tile(in, s, &im, err);
        if (rc < 0)
            return rc;
        if (r->fx[s] != 0 || r->fy[s] != 0) {
            sh = blend_shift(im, r->fx[s], r->fy[s], r->mode);
            img_free(im);
            if (sh == NULL)
                return err_set(err, -ENOMEM, "stitch: out of memory");
            im = sh;
        }
        r->tile[s] = blend_tile_new(im);
        img_free(im);
        if (r->tile[s] == NULL)
            return err_set(err, -ENOMEM, "stitch: out of memory");
        r->live[r->nlive++] = s;
    }
    return 0;
}

/* Frees live tiles that end within the band just written, and the rows
 * of the others that the canvas has passed: with about one row of tiles
 * live, this keeps little more than one row's worth of pixels. */
static void
retire_tiles(struct render *r, int y1)
{
    int i, k = 0;

    for (i = 0; i < r->nlive; i++) {
        int s = r->live[i];

        if (r->y[s] + r->in->frame_h <= y1) {
            blend_tile_free(r->tile[s]);
            r->tile[s] = NULL;
        } else {
            blend_tile_release_above(r->tile[s], y1 - r->y[s]);
            r->live[k++] = s;
        }
    }
    r->nlive = k;
}

static int
render_band(struct render *r, struct wsi_writer *w, int y0, int h,
            const uint8_t bg[3], struct ss_err *err)
{
    int i, rc;

    rc = admit_tiles(r, y0, y0 + h, err);
    if (rc < 0)
        return rc;
    blend_band_begin(&r->band, y0, h);
    for (i = 0; i < r->nlive; i++) {
        int s = r->live[i];

        blend_band_add(&r->band, r->tile[s], r->x[s], r->y[s], r->wx,
                       r->wy);
    }
    blend_band_resolve(&r->band, bg, r->rgb);
    rc = wsi_writer_rows(w, r->rgb, h, err);
    retire_tiles(r, y0 + h);
    return rc;
}

void
stitch_output_rect(const struct stitch_input *in,
                   const struct stitch_placement *pl, int rect[4])
{
    int x0 = 0, y0 = 0, x1 = pl->canvas_w, y1 = pl->canvas_h;

    if (in->crop_w_px > 0 && in->crop_h_px > 0) {
        x0 = in->crop_x_px > 0 ? in->crop_x_px : 0;
        y0 = in->crop_y_px > 0 ? in->crop_y_px : 0;
        if (in->crop_x_px + in->crop_w_px < x1)
            x1 = in->crop_x_px + in->crop_w_px;
        if (in->crop_y_px + in->crop_h_px < y1)
            y1 = in->crop_y_px + in->crop_h_px;
    }
    rect[0] = x0;
    rect[1] = y0;
    rect[2] = x1 > x0 ? x1 - x0 : 0;
    rect[3] = y1 > y0 ? y1 - y0 : 0;
}

int
stitch_write(const struct stitch_input *in,
             const struct stitch_placement *pl, const struct wsi_meta *meta,
             const char *path, struct ss_err *err)
{
    struct render r;
    struct wsi_writer *w = NULL;
    double t0 = util_now_ms();
    int rc, y0;

    rc = check_input(in, err);
    if (rc < 0)
        return rc;
    if (pl == NULL || pl->ntiles != in->ntiles)
        return err_set(err, -EINVAL, "stitch: placement has %d tiles, "
                       "input %d", pl ? pl->ntiles : 0, in->ntiles);
    memset(&r, 0, sizeof(r));
    r.in = in;
    r.pl = pl;
    r.mode = resample_mode(in);
    stitch_output_rect(in, pl, r.rect);
    if (r.rect[2] == 0 || r.rect[3] == 0)
        return err_set(err, -EINVAL, "stitch: crop %dx%d at (%d, %d) px "
                       "misses the %dx%d canvas", in->crop_w_px,
                       in->crop_h_px, in->crop_x_px, in->crop_y_px,
                       pl->canvas_w, pl->canvas_h);
    rc = render_init(&r, err);
    if (rc == 0)
        rc = wsi_writer_open(path, r.rect[2], r.rect[3], meta, &w, err);
    for (y0 = 0; rc == 0 && y0 < r.rect[3]; y0 += BAND_ROWS) {
        int h = r.rect[3] - y0 < BAND_ROWS ? r.rect[3] - y0 : BAND_ROWS;

        rc = render_band(&r, w, y0, h, meta->background, err);
        if (rc == 0 && in->progress != NULL &&
            in->progress(in->ctx, in->ntiles + (int)((double)in->ntiles *
                         (y0 + h) / r.rect[3]), 2 * in->ntiles) != 0)
            rc = err_set(err, SS_ECANCELED, "stitch: cancelled while "
                         "writing %s", path);
    }
    render_fini(&r);
    if (rc < 0) {
        wsi_writer_abort(w);
        return rc;
    }
    rc = wsi_writer_finish(w, err);
    if (rc == 0)
        log_info("stitch", "written path=%s canvas=%dx%d written=%dx%d+%d+%d "
                 "tiles=%d ms=%.0f", path, pl->canvas_w, pl->canvas_h,
                 r.rect[2], r.rect[3], r.rect[0], r.rect[1], in->ntiles,
                 util_now_ms() - t0);
    return rc;
}
