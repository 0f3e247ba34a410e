/* SPDX-License-Identifier: MIT */
/*
 * Grad-CAM (Selvaraju et al. 2017) for a region of a slide.  The region,
 * with the model's margin of context, is run through the CNN in explain
 * mode; the score is the mean logit of the class the segmentation gave
 * most of the region (tumour or stroma) over the region's pixels; its
 * gradient flows back to the model's "gradcam_layer".  Each channel of
 * that layer is weighted by its mean gradient, the weighted sum is
 * rectified, upsampled to the input and drawn over the slide as
 * explain.png, with the region outlined.
 */
#include "worker/analysis/output.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/analysis/cnn.h"

/* LIMIT: regions larger than this (3 mm at 2 µm/px) are refused with a
 * message giving the limit (exit 2, before the analysis runs); Grad-CAM
 * runs the box in one forward pass. */
#define EXPLAIN_MAX_PX 1536         /* largest region side, raster px */

/* The class most of the region was given (tumour when neither). */
static int
region_class(const struct an_seg *sg, int x0, int y0, int w, int h)
{
    int64_t n[AN_NCLASS] = { 0 };
    int x, y;

    for (y = y0; y < y0 + h; y++)
        for (x = x0; x < x0 + w; x++)
            n[*img_u8(sg->label, x, y)]++;
    return n[AN_STROMA] > n[AN_TUMOR] ? AN_STROMA : AN_TUMOR;
}

/* cam (h × w) from activations A and gradients G (1 × K × h × w). */
static float *
gradcam(const struct nn_tensor *A, const struct nn_tensor *G)
{
    int K = A->shape[1], hw = A->shape[2] * A->shape[3], k, i;
    float *cam = calloc((size_t)hw, sizeof(float));

    if (cam == NULL)
        return NULL;
    for (k = 0; k < K; k++) {
        double alpha = 0;
        for (i = 0; i < hw; i++)
            alpha += G->data[(size_t)k * hw + i];
        alpha /= hw;
        for (i = 0; i < hw; i++)
            cam[i] += (float)(alpha * A->data[(size_t)k * hw + i]);
    }
    for (i = 0; i < hw; i++)
        cam[i] = cam[i] > 0 ? cam[i] : 0;
    return cam;
}

/* Draws the cam (ch × cw, bilinear) over the crop, and the box outline. */
static struct img *
render(const struct img *crop, const float *cam, int cw, int ch, int bx,
       int by, int bw, int bh)
{
    struct img *o = img_dup(crop);
    float mx = 1e-12f;
    int x, y, k;

    if (o == NULL)
        return NULL;
    for (k = 0; k < cw * ch; k++)
        mx = cam[k] > mx ? cam[k] : mx;
    for (y = 0; y < o->h; y++)
        for (x = 0; x < o->w; x++) {
            float fx = (x + 0.5f) * cw / o->w - 0.5f;
            float fy = (y + 0.5f) * ch / o->h - 0.5f;
            int x0 = fx < 0 ? 0 : (int)fx, y0 = fy < 0 ? 0 : (int)fy;
            int x1 = x0 + 1 < cw ? x0 + 1 : x0;
            int y1 = y0 + 1 < ch ? y0 + 1 : y0;
            float ax = fx - x0 < 0 ? 0 : fx - x0;
            float ay = fy - y0 < 0 ? 0 : fy - y0;
            float v = ((1 - ax) * cam[y0 * cw + x0] + ax * cam[y0 * cw + x1]) *
                      (1 - ay) + ((1 - ax) * cam[y1 * cw + x0] +
                      ax * cam[y1 * cw + x1]) * ay;
            uint8_t *p = img_u8(o, x, y);
            float t = v / mx;
            /* warm colour for high relevance, weight by relevance */
            float c[3] = { 255, 255 * (1 - t), 0 };
            for (k = 0; k < 3; k++)
                p[k] = (uint8_t)lrintf(p[k] * (1 - 0.5f * t) +
                                       c[k] * 0.5f * t);
            if (((x == bx || x == bx + bw - 1) && y >= by && y < by + bh) ||
                ((y == by || y == by + bh - 1) && x >= bx && x < bx + bw))
                p[0] = p[1] = p[2] = 0;
        }
    return o;
}

/* The crop: the region plus margin, rounded up to the model's alignment,
 * white outside the raster. */
static struct img *
crop_input(const struct an_seg *sg, int x0, int y0, int w, int h, int M,
           int align)
{
    int cw = (w + 2 * M + align - 1) / align * align;
    int chh = (h + 2 * M + align - 1) / align * align;
    struct img *c = img_new(cw, chh, 3, IMG_U8);
    int x, y;

    if (c == NULL)
        return NULL;
    for (y = 0; y < chh; y++)
        for (x = 0; x < cw; x++) {
            int sx = x0 - M + x, sy = y0 - M + y;
            uint8_t *p = img_u8(c, x, y);
            if (sx < 0 || sy < 0 || sx >= sg->w || sy >= sg->h)
                memset(p, 255, 3);
            else
                memcpy(p, img_u8(sg->rgb, sx, sy), 3);
        }
    return c;
}

static int
explain_run(struct an_cnn *c, const struct img *crop, int cls, int M,
            int w, int h, float **cam, int *cw, int *ch, struct ss_err *err)
{
    struct nn_tensor *y, *g;
    const struct nn_tensor *A, *G;
    int rc, x, yy;

    rc = nn_model_keep(c->nn, c->gradcam_layer, err);
    if (rc == 0)
        rc = an_cnn_logits(c, crop, &y, NN_MODE_EXPLAIN, err);
    if (rc < 0)
        return rc;
    g = nn_tensor_new_like(y);
    if (g == NULL)
        return err_set(err, -ENOMEM, "explain: out of memory");
    for (yy = M; yy < M + h; yy++)
        for (x = M; x < M + w; x++)
            *nn_tensor_at(g, 0, cls, yy, x) = 1.0f / ((float)w * h);
    rc = nn_model_backward(c->nn, NULL, g, err);
    nn_tensor_free(g);
    if (rc < 0)
        return rc;
    A = nn_model_activation(c->nn, c->gradcam_layer);
    G = nn_model_activation_grad(c->nn, c->gradcam_layer);
    if (A == NULL || G == NULL)
        return err_set(err, -ENOENT, "explain: layer %s kept no activation",
                       c->gradcam_layer);
    *cw = A->shape[3];
    *ch = A->shape[2];
    *cam = gradcam(A, G);
    return *cam != NULL ? 0 : err_set(err, -ENOMEM, "explain: out of memory");
}

int
an_explain_box_parse(const char *text, int64_t box[4])
{
    double v[4];
    int n = 0, k;

    if (sscanf(text, "%lf,%lf,%lf,%lf%n", &v[0], &v[1], &v[2], &v[3], &n)
        != 4 || text[n] != '\0')
        return -EINVAL;
    for (k = 0; k < 4; k++)
        if (!isfinite(v[k]) || v[k] < (k < 2 ? 0 : 1) ||
            v[k] > AN_EXPLAIN_COORD_MAX || v[k] != floor(v[k]))
            return -EINVAL;
    for (k = 0; k < 4; k++)
        box[k] = (int64_t)v[k];
    return 0;
}

/* The box clipped to the slide, in raster px at the analysis scale. */
static void
box_raster(const int64_t box[4], int64_t W0, int64_t H0, double scale,
           int r[4])
{
    double x1 = fmin((double)box[0] + box[2], (double)W0);
    double y1 = fmin((double)box[1] + box[3], (double)H0);

    r[0] = (int)(box[0] / scale);
    r[1] = (int)(box[1] / scale);
    r[2] = (int)ceil(x1 / scale) - r[0];
    r[3] = (int)ceil(y1 / scale) - r[1];
}

int
an__explain_check(const struct an_job *j, struct an_slide *s,
                  struct an_model *m, struct ss_err *err)
{
    struct an_cnn *c = an_cnn_of(m);
    const int64_t *b = j->explain_box;
    double scale = m->mpp / an_slide_mpp(s), rw, rh;
    int64_t W0, H0;

    an_slide_size(s, &W0, &H0);
    if (b[0] >= W0 || b[1] >= H0)
        return err_set(err, -EDOM, "--explain %lld,%lld,%lld,%lld: the "
                       "region starts outside the slide, which is "
                       "%lldx%lld level-0 px", (long long)b[0],
                       (long long)b[1], (long long)b[2], (long long)b[3],
                       (long long)W0, (long long)H0);
    /* The box as asked, not as clipped to the slide: a region past the
     * limit is refused whatever part of it the slide holds. */
    rw = ceil(b[2] / scale);
    rh = ceil(b[3] / scale);
    if (rw > EXPLAIN_MAX_PX || rh > EXPLAIN_MAX_PX)
        return err_set(err, -EDOM, "--explain %lld,%lld,%lld,%lld: the "
                       "region is %.0fx%.0f px at the analysis' %g µm/px; "
                       "at most %d px (%.0f µm, %.0f level-0 px) per side",
                       (long long)b[0], (long long)b[1], (long long)b[2],
                       (long long)b[3], rw, rh, m->mpp, EXPLAIN_MAX_PX,
                       EXPLAIN_MAX_PX * m->mpp, floor(EXPLAIN_MAX_PX *
                                                      scale));
    if (c == NULL || c->gradcam_layer[0] == '\0')
        return err_set(err, -ENOTSUP, "explain: model %s has no layer to "
                       "explain (Grad-CAM needs a CNN with meta.gradcam_layer)",
                       m->name);
    return 0;
}

int
an__explain(const struct an_job *j, struct an_slide *s, struct an_model *m,
            const struct an_seg *sg, json_t *files, struct ss_err *err)
{
    struct an_cnn *c = an_cnn_of(m);
    int64_t W0, H0;
    int r[4], x0, y0, w, h;
    struct img *crop, *pic;
    float *cam = NULL;
    int cls, cw = 0, ch = 0, rc;

    rc = an__explain_check(j, s, m, err);
    if (rc < 0)
        return rc;
    an_slide_size(s, &W0, &H0);
    box_raster(j->explain_box, W0, H0, sg->scale, r);
    x0 = r[0];
    y0 = r[1];
    w = x0 + r[2] > sg->w ? sg->w - x0 : r[2];
    h = y0 + r[3] > sg->h ? sg->h - y0 : r[3];
    if (x0 >= sg->w || y0 >= sg->h || w < 1 || h < 1)
        return err_set(err, -EINVAL, "explain: region at %d,%d raster px "
                       "is outside the %dx%d px analysis raster", x0, y0,
                       sg->w, sg->h);
    cls = region_class(sg, x0, y0, w, h);
    crop = crop_input(sg, x0, y0, w, h, m->margin_px, c->align);
    if (crop == NULL)
        return err_set(err, -ENOMEM, "explain: out of memory");
    pthread_mutex_lock(&c->lock);
    rc = explain_run(c, crop, cls, m->margin_px, w, h, &cam, &cw, &ch, err);
    pthread_mutex_unlock(&c->lock);
    pic = rc == 0 ? render(crop, cam, cw, ch, m->margin_px, m->margin_px, w,
                           h) : NULL;
    if (rc == 0 && pic == NULL)
        rc = err_set(err, -ENOMEM, "explain: out of memory");
    if (rc == 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/explain.png", j->out_dir);
        rc = img_png_write(pic, path, err);
    }
    if (rc == 0)
        json_object_set_new(files, "explain", json_string("explain.png"));
    log_info("analysis", "explain class=%s layer=%s w=%d h=%d",
             cls == AN_TUMOR ? "tumor" : "stroma", c->gradcam_layer, w, h);
    free(cam);
    img_free(crop);
    img_free(pic);
    return rc < 0 ? err_prefix(err, "%s", an_slide_path(s)) : 0;
}
