/* SPDX-License-Identifier: MIT */
/*
 * Training data (conventions in train.h): loading annotated slides and
 * labelled patches at the model's resolution, the validation split by
 * group, and drawing augmented crops.
 */
#include "worker/analysis/traindata.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "worker/analysis/geojson.h"
#include "worker/analysis/internal.h"

#define PIX_SAMPLES 50000           /* labelled pixels kept per class */
#define AUG_STAIN_SCALE 0.15        /* σ of each stain's relative amount */
#define AUG_STAIN_SHIFT 0.03        /* σ of each stain's OD offset */
#define AUG_CHANNEL_GAIN 0.06       /* ± per-channel gain (white balance) */

void
an_train_data_init(struct an_train_data *d, double mpp)
{
    memset(d, 0, sizeof(*d));
    d->mpp = mpp;
}

void
an_train_data_free(struct an_train_data *d)
{
    int i, k;

    for (i = 0; i < d->n; i++) {
        img_free(d->s[i].rgb);
        img_free(d->s[i].label);
        for (k = 0; k < 3; k++)
            free(d->s[i].pix[k]);
    }
    free(d->s);
    memset(d, 0, sizeof(*d));
}

static struct an_train_source *
source_new(struct an_train_data *d)
{
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        struct an_train_source *s = realloc(d->s, (size_t)cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        d->s = s;
        d->cap = cap;
    }
    memset(&d->s[d->n], 0, sizeof(d->s[d->n]));
    d->s[d->n].patch_class = -1;
    return &d->s[d->n++];
}

/* Reservoir sample of each class's pixels, for class-balanced crops. */
static int
sample_pixels(struct an_train_source *s, uint64_t seed)
{
    size_t i, n = (size_t)s->label->w * s->label->h;
    long seen[3] = { 0 };
    struct rng r;
    int k;

    rng_init(&r, seed);
    for (k = 0; k < 3; k++) {
        s->pix[k] = malloc(PIX_SAMPLES * sizeof(int32_t));
        if (s->pix[k] == NULL)
            return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        uint8_t l = ((uint8_t *)s->label->data)[i];
        long j;
        if (l >= 3)
            continue;
        j = seen[l]++;
        if (j < PIX_SAMPLES)
            s->pix[l][j] = (int32_t)i;
        else if ((j = (long)(rng_uniform(&r) * (j + 1))) < PIX_SAMPLES)
            s->pix[l][j] = (int32_t)i;
    }
    for (k = 0; k < 3; k++)
        s->npix[k] = seen[k] < PIX_SAMPLES ? (int)seen[k] : PIX_SAMPLES;
    return 0;
}

static const char *
base_name(const char *p)
{
    const char *s = strrchr(p, '/');

    return s != NULL ? s + 1 : p;
}

/* The label mask of a slide onto its w × h training raster: a mask of
 * that size, or one at the slide's level 0 (scale level-0 px per raster
 * px); any other size is an error naming both. */
static int
slide_labels(const char *labels, int w, int h, double scale,
             struct img **out, struct ss_err *err)
{
    size_t n = strlen(labels);
    struct an_annotations *a;
    struct img *rgb, *l;
    size_t i;
    int rc;

    if (n > 8 && strcmp(labels + n - 8, ".geojson") == 0) {
        rc = an_geojson_read(labels, NULL, &a, err);
        if (rc == 0)
            rc = an_annotations_raster(a, NULL, w, h, scale, out, err);
        an_annotations_free(a);
        return rc;
    }
    rc = img_read_any(labels, &rgb, err);
    if (rc < 0)
        return rc;
    l = img_new(rgb->w, rgb->h, 1, IMG_U8);
    for (i = 0; l != NULL && i < (size_t)rgb->w * rgb->h; i++)
        ((uint8_t *)l->data)[i] = ((uint8_t *)rgb->data)[i * 3];
    img_free(rgb);
    rc = l != NULL ? an__labels_fit(l, w, h, scale, 1, out) : -ENOMEM;
    if (rc == -ERANGE)
        rc = err_set(err, rc, "%s is %d×%d px, neither the slide's "
                     "level-0 size (about %.0f×%.0f px) nor its size at the "
                     "training resolution (%d×%d px)", labels, l->w, l->h,
                     w * scale, h * scale, w, h);
    else if (rc < 0)
        rc = err_set(err, rc, "%s: out of memory", labels);
    img_free(l);
    return rc;
}

/* LIMIT: the whole slide is held at the model's resolution (4 bytes per
 * pixel with its labels) for the whole training run. */
int
an_train_add_slide(struct an_train_data *d, const char *wsi,
                   const char *labels, double mpp_override,
                   struct ss_err *err)
{
    struct an_slide *sl;
    struct an_train_source *s;
    int64_t W0, H0;
    double scale;
    int w, h, rc;

    rc = an_slide_open(wsi, mpp_override, &sl, err);
    if (rc < 0)
        return rc;
    an_slide_size(sl, &W0, &H0);
    scale = d->mpp / an_slide_mpp(sl);
    w = (int)ceil(W0 / scale);
    h = (int)ceil(H0 / scale);
    s = source_new(d);
    if (s == NULL) {
        an_slide_close(sl);
        return err_set(err, -ENOMEM, "%s: out of memory", wsi);
    }
    snprintf(s->name, sizeof(s->name), "%s", wsi);
    snprintf(s->group, sizeof(s->group), "%s", base_name(wsi));
    rc = an_slide_read(sl, 0, 0, (int64_t)llround(w * scale),
                       (int64_t)llround(h * scale), w, h, &s->rgb, err);
    an_slide_close(sl);
    if (rc == 0)
        rc = slide_labels(labels, w, h, scale, &s->label, err);
    if (rc == 0 && sample_pixels(s, rng_key(7, (uint64_t)d->n, 0, 0)) < 0)
        rc = err_set(err, -ENOMEM, "%s: out of memory", wsi);
    if (rc == 0 && s->npix[0] + s->npix[1] + s->npix[2] == 0)
        rc = err_set(err, -EINVAL, "%s: no labelled pixel (all "
                     "unlabelled)", labels);
    if (rc < 0) {
        d->n--;
        img_free(s->rgb);
        img_free(s->label);
        free(s->pix[0]);
        free(s->pix[1]);
        free(s->pix[2]);
    }
    return rc;
}

/* class_id of labels.csv → our class, or -1 to leave the patch out.
 * LIMIT: lymphocytes, debris, mucosa, adipose tissue and mucus have no
 * class here, so the model never sees them and calls them tumour or
 * stroma. */
static int
patch_class_of(int id)
{
    switch (id) {
    case 1: return AN_TUMOR;
    case 2: case 3: case 10: return AN_STROMA;
    case 8: return AN_GLASS;
    default: return -1;
    }
}

static int
patch_load(struct an_train_data *d, const char *dir, const char *file,
           int cls, const char *source, double patch_mpp,
           struct ss_err *err)
{
    char path[4200];
    struct img *im, *r;
    struct an_train_source *s;
    int rc, w, h;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    rc = img_read_any(path, &im, err);
    if (rc < 0)
        return rc;
    w = (int)lround(im->w * patch_mpp / d->mpp);
    h = (int)lround(im->h * patch_mpp / d->mpp);
    r = an__resample(im, w > 0 ? w : 1, h > 0 ? h : 1);
    img_free(im);
    s = r != NULL ? source_new(d) : NULL;
    if (s == NULL) {
        img_free(r);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    s->rgb = r;
    s->label = img_new(r->w, r->h, 1, IMG_U8);
    if (s->label == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    memset(s->label->data, cls, img_bytes(s->label));
    s->patch_class = cls;
    snprintf(s->name, sizeof(s->name), "%s", path);
    snprintf(s->group, sizeof(s->group), "%s", strcmp(source, "unknown") ?
             source : base_name(file));
    return 0;
}

int
an_train_add_patches(struct an_train_data *d, const char *dir,
                     double patch_mpp, struct ss_err *err)
{
    char path[4200], line[1024];
    FILE *f;
    int rc = 0, lineno = 0, n0 = d->n;

    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    f = fopen(path, "r");
    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        char file[512], name[64], source[128];
        int id;
        if (++lineno == 1)
            continue;
        line[strcspn(line, "\r\n")] = '\0';
        if (sscanf(line, "%511[^,],%d,%63[^,],%127s", file, &id, name,
                   source) != 4) {
            rc = err_set(err, SS_EFORMAT, "%s:%d: expected file, class_id, "
                         "class_name, source_image", path, lineno);
            break;
        }
        if (patch_class_of(id) >= 0)
            rc = patch_load(d, dir, file, patch_class_of(id), source,
                            patch_mpp, err);
    }
    fclose(f);
    if (rc == 0 && d->n == n0)
        rc = err_set(err, -EINVAL, "%s: no tumour, stroma or background "
                     "patch", path);
    return rc;
}

/* FNV-1a, for a seeded order of group names. */
static uint64_t
str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void
mark_group(struct an_train_data *d, const char *group, bool val)
{
    int i;

    for (i = 0; i < d->n; i++)
        if (strcmp(d->s[i].group, group) == 0)
            d->s[i].val = val;
}

/* Examples of each class in training and validation: patches of the
 * class and, unless patches_only, slides with labelled pixels of it. */
static void
tally(const struct an_train_data *d, bool patches_only, int train[3],
      int val[3])
{
    int i, k;

    for (k = 0; k < 3; k++)
        train[k] = val[k] = 0;
    for (i = 0; i < d->n; i++) {
        const struct an_train_source *s = &d->s[i];

        for (k = 0; k < 3; k++)
            if (s->patch_class == k ||
                (!patches_only && s->patch_class < 0 && s->npix[k] > 0))
                (s->val ? val : train)[k]++;
    }
}

/* Moving group g to validation leaves every class that had a training
 * patch with at least one. */
static bool
group_can_go(struct an_train_data *d, const char *g)
{
    int before[3], after[3], v[3], i, k;
    bool ok = true;

    tally(d, false, before, v);
    for (i = 0; i < d->n; i++)
        if (strcmp(d->s[i].group, g) == 0 && d->s[i].val)
            return false;
    mark_group(d, g, true);
    tally(d, false, after, v);
    for (k = 0; k < 3; k++)
        ok = ok && !(before[k] > 0 && after[k] == 0);
    mark_group(d, g, false);
    return ok;
}

/* Slides: whole groups in hash order until about `fraction` of them. */
static void
split_slides(struct an_train_data *d, double fraction, uint64_t seed)
{
    int i, nslides = 0, nval = 0;

    for (i = 0; i < d->n; i++)
        nslides += d->s[i].patch_class < 0;
    while (nval < fraction * nslides) {
        uint64_t best = UINT64_MAX, h;
        int pick = -1;

        for (i = 0; i < d->n; i++) {
            h = rng_key(seed, str_hash(d->s[i].group), 0, 0);
            if (d->s[i].patch_class < 0 && !d->s[i].val && h < best) {
                best = h;
                pick = i;
            }
        }
        if (pick < 0)
            break;
        mark_group(d, d->s[pick].group, true);
        for (nval = 0, i = 0; i < d->n; i++)
            nval += d->s[i].patch_class < 0 && d->s[i].val;
    }
}

/* The class-k patch whose group comes first in hash order among those
 * groups still allowed to go (or any not yet in validation when
 * any_group); -1 when none. */
static int
next_patch_of(struct an_train_data *d, int k, uint64_t seed, bool any_group)
{
    uint64_t best = UINT64_MAX;
    int i, pick = -1;

    for (i = 0; i < d->n; i++) {
        const struct an_train_source *s = &d->s[i];
        uint64_t h = rng_key(seed, str_hash(s->group),
                             any_group ? str_hash(s->name) : 0, 0);

        if (s->patch_class != k || s->val || h >= best)
            continue;
        if (!any_group && !group_can_go(d, s->group))
            continue;
        best = h;
        pick = i;
    }
    return pick;
}

/* Patches: per class, whole source groups until about `fraction` of the
 * class's patches, at least one, always leaving one for training.  A
 * class whose patches all come from one source image gets one patch
 * held out alone (flagged in d->val_shares_source). */
static void
split_patches(struct an_train_data *d, double fraction, uint64_t seed)
{
    int train[3], val[3], n[3], k, pick;

    tally(d, true, train, val);
    for (k = 0; k < 3; k++)
        n[k] = train[k] + val[k];
    for (k = 0; k < 3; k++) {
        int want = (int)lround(fraction * n[k]);

        want = want < 1 ? 1 : want > n[k] - 1 ? n[k] - 1 : want;
        for (;;) {
            tally(d, true, train, val);
            if (n[k] < 2 || val[k] >= want)
                break;
            pick = next_patch_of(d, k, seed, false);
            if (pick < 0)
                break;
            mark_group(d, d->s[pick].group, true);
        }
        tally(d, true, train, val);
        if (n[k] >= 2 && val[k] == 0 && train[k] >= 2) {
            pick = next_patch_of(d, k, seed, true);
            if (pick >= 0) {
                d->s[pick].val = true;
                d->val_shares_source[k] = true;
            }
        }
    }
}

int
an_train_split(struct an_train_data *d, const char *groups,
               double fraction, uint64_t seed)
{
    int i, k, nval = 0;

    for (i = 0; i < d->n; i++)
        d->s[i].val = false;
    for (k = 0; k < 3; k++)
        d->val_shares_source[k] = false;
    if (groups != NULL) {
        for (i = 0; i < d->n; i++) {
            const char *g = d->s[i].group, *p = groups;
            size_t len = strlen(g);
            while ((p = strstr(p, g)) != NULL) {
                if ((p == groups || p[-1] == ',') &&
                    (p[len] == ',' || p[len] == '\0'))
                    break;
                p++;
            }
            d->s[i].val = p != NULL;
            nval += d->s[i].val;
        }
        return nval;
    }
    if (!(fraction > 0))
        return 0;
    split_slides(d, fraction, seed);
    split_patches(d, fraction, seed);
    for (i = 0; i < d->n; i++)
        nval += d->s[i].val;
    return nval;
}

void
an_train_split_counts(const struct an_train_data *d, int train[3],
                      int val[3])
{
    tally(d, false, train, val);
}

/* ---- drawing examples ---------------------------------------------------- */

static int
mirror(int v, int n)
{
    int p = 2 * n;

    v %= p;
    if (v < 0)
        v += p;
    return v < n ? v : p - 1 - v;
}

/* A crop of a slide centred near a labelled pixel of a random class;
 * outside the slide is white and unlabelled. */
static void
draw_slide(const struct an_train_source *s, int C, struct rng *r,
           uint8_t *rgb, int32_t *lab)
{
    int cls[3], nc = 0, k, x, y, cx, cy, x0, y0;
    int32_t p;

    for (k = 0; k < 3; k++)
        if (s->npix[k] > 0)
            cls[nc++] = k;
    k = cls[(int)(rng_uniform(r) * nc)];
    p = s->pix[k][(int)(rng_uniform(r) * s->npix[k])];
    cx = p % s->label->w + (int)((rng_uniform(r) - 0.5) * C / 2);
    cy = p / s->label->w + (int)((rng_uniform(r) - 0.5) * C / 2);
    x0 = cx - C / 2;
    y0 = cy - C / 2;
    for (y = 0; y < C; y++)
        for (x = 0; x < C; x++) {
            int sx = x0 + x, sy = y0 + y;
            size_t o = (size_t)y * C + x;
            if (sx < 0 || sy < 0 || sx >= s->rgb->w || sy >= s->rgb->h) {
                memset(rgb + o * 3, 255, 3);
                lab[o] = AN_UNLABELLED;
                continue;
            }
            memcpy(rgb + o * 3, img_u8(s->rgb, sx, sy), 3);
            lab[o] = *img_u8(s->label, sx, sy);
        }
}

/* A patch mirrored out to C × C from a random offset, all one class. */
static void
draw_patch(const struct an_train_source *s, int C, struct rng *r,
           uint8_t *rgb, int32_t *lab)
{
    int ox = (int)(rng_uniform(r) * s->rgb->w);
    int oy = (int)(rng_uniform(r) * s->rgb->h);
    int x, y;

    for (y = 0; y < C; y++)
        for (x = 0; x < C; x++) {
            size_t o = (size_t)y * C + x;
            memcpy(rgb + o * 3, img_u8(s->rgb, mirror(x + ox, s->rgb->w),
                                       mirror(y + oy, s->rgb->h)), 3);
            lab[o] = s->patch_class;
        }
}

/* One of the 8 symmetries of the square, in place. */
static void
dihedral(uint8_t *rgb, int32_t *lab, int C, int t, uint8_t *trgb,
         int32_t *tlab)
{
    int x, y;

    for (y = 0; y < C; y++)
        for (x = 0; x < C; x++) {
            int sx = t & 1 ? C - 1 - x : x, sy = t & 2 ? C - 1 - y : y;
            size_t o = (size_t)y * C + x, i;
            if (t & 4) {
                int tmp = sx;
                sx = sy;
                sy = tmp;
            }
            i = (size_t)sy * C + sx;
            memcpy(trgb + o * 3, rgb + i * 3, 3);
            tlab[o] = lab[i];
        }
    memcpy(rgb, trgb, (size_t)C * C * 3);
    memcpy(lab, tlab, (size_t)C * C * sizeof(int32_t));
}

static struct an__deconv d;
static pthread_once_t he_once = PTHREAD_ONCE_INIT;

static void
he_init(void)
{
    an__deconv_init(&d, an__vec_hematoxylin, an__vec_eosin, NULL);
}

/* Stain jitter in H-E space, then brightness and contrast. */
static void
colour_jitter(uint8_t *rgb, int n, struct rng *r)
{
    float a[3], b[3], gain[3];
    float con = (float)(1 + 0.1 * (2 * rng_uniform(r) - 1));
    float bri = (float)(12 * (2 * rng_uniform(r) - 1));
    int i, k, j;

    pthread_once(&he_once, he_init);
    for (k = 0; k < 3; k++) {
        a[k] = (float)(1 + AUG_STAIN_SCALE * rng_gauss(r));
        b[k] = (float)(AUG_STAIN_SHIFT * rng_gauss(r));
        gain[k] = (float)(1 + AUG_CHANNEL_GAIN * (2 * rng_uniform(r) - 1));
    }
    for (i = 0; i < n; i++) {
        uint8_t *p = rgb + (size_t)i * 3;
        float c[3], od[3] = { 0, 0, 0 };
        an__deconv_px(&d, p, c);
        for (k = 0; k < 3; k++)
            for (j = 0; j < 3; j++)
                od[j] += (c[k] * a[k] + b[k]) * d.fwd[k][j];
        for (j = 0; j < 3; j++) {
            float v = 255.0f * gain[j] * powf(10.0f, -od[j]);
            v = (v - 128) * con + 128 + bri;
            p[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
        }
    }
}

int
an__train_draw(const struct an_train_source *s, int C, struct rng *r,
               bool augment, uint8_t *rgb, int32_t *lab)
{
    uint8_t *trgb;
    int32_t *tlab;

    if (s->patch_class >= 0)
        draw_patch(s, C, r, rgb, lab);
    else
        draw_slide(s, C, r, rgb, lab);
    if (!augment)
        return 0;
    trgb = malloc((size_t)C * C * 3);
    tlab = malloc((size_t)C * C * sizeof(int32_t));
    if (trgb == NULL || tlab == NULL) {
        free(trgb);
        free(tlab);
        return -ENOMEM;
    }
    dihedral(rgb, lab, C, (int)(rng_uniform(r) * 8), trgb, tlab);
    free(trgb);
    free(tlab);
    colour_jitter(rgb, C * C, r);
    return 0;
}
