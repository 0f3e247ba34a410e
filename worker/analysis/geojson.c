/* SPDX-License-Identifier: MIT */
/*
 * QuPath GeoJSON annotations (conventions in geojson.h): parsing with
 * jansson, scanline rasterisation at pixel centres with the even-odd rule
 * over each polygon's rings (so holes are background, not the polygon's
 * class, and not unlabelled either), consensus and
 * agreement of annotators, and export of label maps as polygons traced
 * along pixel edges.
 */
#include "worker/analysis/geojson.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "worker/analysis/internal.h"

static void
feature_free(struct an_feature *f)
{
    int j, k;

    for (j = 0; j < f->npoly; j++) {
        for (k = 0; k < f->poly[j].nrings; k++)
            free(f->poly[j].rings[k].xy);
        free(f->poly[j].rings);
    }
    free(f->poly);
}

void
an_annotations_free(struct an_annotations *a)
{
    int i;

    if (a == NULL)
        return;
    for (i = 0; i < a->n; i++)
        feature_free(&a->f[i]);
    free(a->f);
    free(a->skip_why);
    free(a);
}

/* "Tumor" etc. from either classification form; NULL when absent. */
static const char *
class_name(json_t *props)
{
    json_t *c = json_object_get(props, "classification");

    if (json_is_string(c))
        return json_string_value(c);
    if (json_is_object(c))
        return json_string_value(json_object_get(c, "name"));
    return NULL;
}

static int
class_of(const char *name, enum an_ann_class *out)
{
    if (name == NULL)
        return -1;
    if (strcasecmp(name, "ROI") == 0 || strcasecmp(name, "Region*") == 0)
        *out = AN_ANN_ROI;
    else if (strcasecmp(name, "Tumor") == 0 ||
             strcasecmp(name, "Tumour") == 0)
        *out = AN_ANN_TUMOR;
    else if (strcasecmp(name, "Stroma") == 0)
        *out = AN_ANN_STROMA;
    else
        return -1;
    return 0;
}

static int
ring_parse(json_t *arr, struct an_ring *r)
{
    size_t i, n = json_array_size(arr);

    if (!json_is_array(arr) || n < 3)
        return -EINVAL;
    r->xy = malloc(n * 2 * sizeof(double));
    if (r->xy == NULL)
        return -ENOMEM;
    r->n = 0;
    for (i = 0; i < n; i++) {
        json_t *pt = json_array_get(arr, i);
        json_t *x = json_array_get(pt, 0), *y = json_array_get(pt, 1);
        if (!json_is_number(x) || !json_is_number(y))
            return -EINVAL;
        r->xy[2 * r->n] = json_number_value(x);
        r->xy[2 * r->n + 1] = json_number_value(y);
        r->n++;
    }
    /* Drop the closing point that repeats the first. */
    if (r->n > 1 && r->xy[0] == r->xy[2 * r->n - 2] &&
        r->xy[1] == r->xy[2 * r->n - 1])
        r->n--;
    return r->n >= 3 ? 0 : -EINVAL;
}

static int
polygon_parse(json_t *rings, struct an_polygon *p)
{
    size_t i, n = json_array_size(rings);
    int rc;

    if (!json_is_array(rings) || n == 0)
        return -EINVAL;
    p->rings = calloc(n, sizeof(*p->rings));
    if (p->rings == NULL)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        rc = ring_parse(json_array_get(rings, i), &p->rings[i]);
        p->nrings = (int)i + 1;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
geometry_parse(json_t *g, struct an_feature *f)
{
    const char *type = json_string_value(json_object_get(g, "type"));
    json_t *coords = json_object_get(g, "coordinates");
    size_t i, n;
    int rc;

    if (type == NULL || coords == NULL)
        return -EINVAL;
    if (strcmp(type, "Polygon") == 0) {
        f->poly = calloc(1, sizeof(*f->poly));
        if (f->poly == NULL)
            return -ENOMEM;
        f->npoly = 1;
        return polygon_parse(coords, f->poly);
    }
    if (strcmp(type, "MultiPolygon") != 0)
        return -ENOTSUP;
    n = json_array_size(coords);
    f->poly = calloc(n + 1, sizeof(*f->poly));
    if (f->poly == NULL)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        rc = polygon_parse(json_array_get(coords, i), &f->poly[i]);
        f->npoly = (int)i + 1;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const char *
annotator_of(json_t *props, const char *dflt)
{
    static const char *keys[] = { "annotator", "author", "creator" };
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = json_string_value(json_object_get(props, keys[i]));
        if (v != NULL && *v != '\0')
            return v;
    }
    return dflt != NULL ? dflt : "";
}

/* Parses feature i; 1 when it was skipped (not one of our classes, or
 * no area), with the cause in why. */
static int
feature_parse(json_t *ft, const char *dflt, const char *origin,
              struct an_annotations *a, char *why, size_t len)
{
    json_t *props = json_object_get(ft, "properties");
    const char *name = class_name(props);
    struct an_feature *f = &a->f[a->n];
    enum an_ann_class cls;
    int rc;

    if (class_of(name, &cls) < 0) {
        if (name == NULL)
            snprintf(why, len, "no classification (ROI, Tumor or Stroma)");
        else
            snprintf(why, len, "class '%.60s' is not ROI, Tumor or Stroma",
                     name);
        return 1;
    }
    memset(f, 0, sizeof(*f));
    f->cls = cls;
    snprintf(f->origin, sizeof(f->origin), "%s", origin);
    snprintf(f->annotator, sizeof(f->annotator), "%s",
             annotator_of(props, dflt));
    a->n++;
    rc = geometry_parse(json_object_get(ft, "geometry"), f);
    if (rc != -ENOTSUP)
        return rc;
    /* Points, lines and other geometries carry no area: skip them. */
    free(f->poly);
    a->n--;
    snprintf(why, len, "class %s, but a %.40s geometry has no area", name,
             json_string_value(json_object_get(json_object_get(ft,
                               "geometry"), "type")));
    return 1;
}

static json_t *
features_of(json_t *root)
{
    const char *type = json_string_value(json_object_get(root, "type"));

    if (json_is_array(root))
        return json_incref(root);
    if (type != NULL && strcmp(type, "FeatureCollection") == 0)
        return json_incref(json_object_get(root, "features"));
    if (type != NULL && strcmp(type, "Feature") == 0) {
        json_t *arr = json_array();
        json_array_append(arr, root);
        return arr;
    }
    return NULL;
}

int
an_geojson_read(const char *path, const char *default_annotator,
                struct an_annotations **out, struct ss_err *err)
{
    json_error_t je;
    json_t *root, *feats;
    struct an_annotations *a;
    size_t i, n;
    int rc = 0;
    FILE *f;

    *out = NULL;
    /* Opened here so that a missing or unreadable file is reported as
     * such (-ENOENT, -EACCES), not as a JSON syntax error. */
    f = fopen(path, "r");
    if (f == NULL)
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    root = json_loadf(f, 0, &je);
    fclose(f);
    if (root == NULL)
        return err_set(err, SS_EFORMAT, "%s: not JSON: %s (line %d)", path,
                       je.text, je.line);
    feats = features_of(root);
    json_decref(root);
    if (!json_is_array(feats)) {
        json_decref(feats);
        return err_set(err, SS_EFORMAT, "%s: not GeoJSON: no Feature or "
                       "FeatureCollection", path);
    }
    n = json_array_size(feats);
    a = calloc(1, sizeof(*a));
    if (a == NULL || (a->f = calloc(n + 1, sizeof(*a->f))) == NULL ||
        (a->skip_why = calloc(n + 1, sizeof(*a->skip_why))) == NULL) {
        if (a != NULL)
            free(a->f);
        free(a);
        json_decref(feats);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    for (i = 0; i < n && rc >= 0; i++) {
        char why[200], origin[AN_ORIGIN_TEXT];

        snprintf(origin, sizeof(origin), "%.100s: feature %zu", path, i);
        rc = feature_parse(json_array_get(feats, i), default_annotator,
                           origin, a, why, sizeof(why));
        if (rc == 1)
            snprintf(a->skip_why[a->skipped++], AN_SKIP_TEXT,
                     "%.100s: feature %zu: %s", path, i, why);
    }
    json_decref(feats);
    if (rc < 0) {
        an_annotations_free(a);
        return err_set(err, rc == -ENOMEM ? rc : SS_EFORMAT,
                       "%s: feature %zu: %s", path, i - 1,
                       rc == -ENOMEM ? "out of memory"
                       : "bad polygon coordinates");
    }
    *out = a;
    return 0;
}

static int
ring_copy(struct an_ring *d, const struct an_ring *s)
{
    d->n = s->n;
    d->xy = malloc((size_t)s->n * 2 * sizeof(double));
    if (d->xy == NULL)
        return -ENOMEM;
    memcpy(d->xy, s->xy, (size_t)s->n * 2 * sizeof(double));
    return 0;
}

static int
feature_copy(struct an_feature *d, const struct an_feature *s)
{
    int i, j;

    *d = *s;
    d->poly = calloc((size_t)s->npoly + 1, sizeof(*d->poly));
    if (d->poly == NULL)
        return -ENOMEM;
    for (i = 0; i < s->npoly; i++) {
        d->poly[i].rings = calloc((size_t)s->poly[i].nrings,
                                  sizeof(struct an_ring));
        if (d->poly[i].rings == NULL)
            return -ENOMEM;
        d->poly[i].nrings = s->poly[i].nrings;
        for (j = 0; j < s->poly[i].nrings; j++)
            if (ring_copy(&d->poly[i].rings[j], &s->poly[i].rings[j]) < 0)
                return -ENOMEM;
    }
    return 0;
}

int
an_annotations_merge(struct an_annotations *a,
                     const struct an_annotations *b, struct ss_err *err)
{
    struct an_feature *f = realloc(a->f, (size_t)(a->n + b->n + 1) *
                                   sizeof(*f));
    char (*why)[AN_SKIP_TEXT];
    int i;

    if (f == NULL)
        return err_set(err, -ENOMEM, "annotations: out of memory");
    a->f = f;
    why = realloc(a->skip_why, (size_t)(a->skipped + b->skipped + 1) *
                  sizeof(*why));
    if (why == NULL)
        return err_set(err, -ENOMEM, "annotations: out of memory");
    a->skip_why = why;
    if (b->skipped > 0)
        memcpy(a->skip_why[a->skipped], b->skip_why[0],
               (size_t)b->skipped * sizeof(*why));
    for (i = 0; i < b->n; i++) {
        memset(&a->f[a->n], 0, sizeof(a->f[a->n]));
        a->n++;
        if (feature_copy(&a->f[a->n - 1], &b->f[i]) < 0)
            return err_set(err, -ENOMEM, "annotations: out of memory");
    }
    a->skipped += b->skipped;
    return 0;
}

int
an_annotators(const struct an_annotations *a, const char **names, int max)
{
    int i, j, n = 0;

    for (i = 0; i < a->n; i++) {
        for (j = 0; j < n; j++)
            if (strcmp(names[j], a->f[i].annotator) == 0)
                break;
        if (j == n && n < max)
            names[n++] = a->f[i].annotator;
    }
    return n;
}

static double
ring_area(const struct an_ring *r)
{
    double s = 0;
    int i;

    for (i = 0; i < r->n; i++) {
        int j = (i + 1) % r->n;
        s += r->xy[2 * i] * r->xy[2 * j + 1] - r->xy[2 * j] * r->xy[2 * i + 1];
    }
    return fabs(s) / 2;
}

double
an_polygon_area(const struct an_polygon *p)
{
    double a = 0;
    int k;

    for (k = 0; k < p->nrings; k++)
        a += k == 0 ? ring_area(&p->rings[k]) : -ring_area(&p->rings[k]);
    return a;
}

static const char *const ann_class_name[] = { "ROI", "Tumor", "Stroma" };

int
an_annotations_drop_small(struct an_annotations *a, double min_area_px,
                          struct ss_err *err)
{
    char (*why)[AN_SKIP_TEXT] = realloc(a->skip_why,
                                        (size_t)(a->skipped + a->n + 1) *
                                        sizeof(*why));
    int i, j, kept = 0;

    if (why == NULL)
        return err_set(err, -ENOMEM, "annotations: out of memory");
    a->skip_why = why;
    for (i = 0; i < a->n; i++) {
        struct an_feature *f = &a->f[i];
        double area = 0;

        for (j = 0; j < f->npoly; j++)
            area += an_polygon_area(&f->poly[j]);
        if (area >= min_area_px && area > 0) {
            a->f[kept++] = *f;
            continue;
        }
        snprintf(a->skip_why[a->skipped++], AN_SKIP_TEXT, "%s: class %s, "
                 "but no area (%.3g level-0 px², one raster pixel is "
                 "%.3g)", f->origin, (unsigned)f->cls < 3 ?
                 ann_class_name[f->cls] : "?", area, min_area_px);
        feature_free(f);
    }
    a->n = kept;
    return 0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Paints value v into every raster pixel whose centre lies inside p
 * (even-odd over all its rings). */
static int
polygon_paint(const struct an_polygon *p, struct img *r, double scale,
              uint8_t v)
{
    int k, i, j, total = 0, nx;
    double *xs;

    for (k = 0; k < p->nrings; k++)
        total += p->rings[k].n;
    xs = malloc((size_t)(total + 1) * sizeof(double));
    if (xs == NULL)
        return -ENOMEM;
    for (j = 0; j < r->h; j++) {
        double yc = (j + 0.5) * scale;
        nx = 0;
        for (k = 0; k < p->nrings; k++) {
            const struct an_ring *g = &p->rings[k];
            for (i = 0; i < g->n; i++) {
                int i2 = (i + 1) % g->n;
                double x1 = g->xy[2 * i], y1 = g->xy[2 * i + 1];
                double x2 = g->xy[2 * i2], y2 = g->xy[2 * i2 + 1];
                if ((y1 <= yc && yc < y2) || (y2 <= yc && yc < y1))
                    xs[nx++] = x1 + (yc - y1) * (x2 - x1) / (y2 - y1);
            }
        }
        qsort(xs, (size_t)nx, sizeof(double), cmp_double);
        /* Clipped to the raster in double: a span reaching beyond an
         * int (coordinates past about 2^31 pixels) still paints. */
        for (k = 0; k + 1 < nx; k += 2) {
            double a = fmax(ceil(xs[k] / scale - 0.5), 0);
            double b = fmin(ceil(xs[k + 1] / scale - 0.5), r->w);
            if (b > a)
                memset(img_u8(r, (int)a, j), v, (size_t)(b - a));
        }
    }
    free(xs);
    return 0;
}

static int
paint_class(const struct an_annotations *a, const char *who,
            enum an_ann_class cls, struct img *r, double scale, uint8_t v)
{
    int i, k, rc, any = 0;

    for (i = 0; i < a->n; i++) {
        const struct an_feature *f = &a->f[i];
        if (f->cls != cls || (who != NULL && strcmp(who, f->annotator)))
            continue;
        any = 1;
        for (k = 0; k < f->npoly; k++) {
            rc = polygon_paint(&f->poly[k], r, scale, v);
            if (rc < 0)
                return rc;
        }
    }
    return any;
}

/* Paints AN_GLASS over the outer ring of every tumour or stroma polygon
 * that has holes, before the classes are painted: what the rings cut out
 * stays background unless another polygon claims it. */
static int
paint_holes(const struct an_annotations *a, const char *who, struct img *r,
            double scale)
{
    int i, k, rc;

    for (i = 0; i < a->n; i++) {
        const struct an_feature *f = &a->f[i];
        if (f->cls == AN_ANN_ROI || (who != NULL && strcmp(who, f->annotator)))
            continue;
        for (k = 0; k < f->npoly; k++) {
            struct an_polygon outer = { 1, f->poly[k].rings };
            if (f->poly[k].nrings < 2)
                continue;
            rc = polygon_paint(&outer, r, scale, AN_GLASS);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int
an_annotations_raster(const struct an_annotations *a,
                      const char *annotator, int w, int h, double scale,
                      struct img **out, struct ss_err *err)
{
    struct img *r = img_new(w, h, 1, IMG_U8);
    int rc;

    *out = NULL;
    if (r == NULL)
        return err_set(err, -ENOMEM, "annotations: out of memory");
    memset(r->data, AN_UNLABELLED, img_bytes(r));
    rc = paint_class(a, annotator, AN_ANN_ROI, r, scale, AN_GLASS);
    if (rc >= 0)
        rc = paint_holes(a, annotator, r, scale);
    if (rc >= 0)
        rc = paint_class(a, annotator, AN_ANN_STROMA, r, scale, AN_STROMA);
    if (rc >= 0)
        rc = paint_class(a, annotator, AN_ANN_TUMOR, r, scale, AN_TUMOR);
    if (rc < 0) {
        img_free(r);
        return err_set(err, rc, "annotations: out of memory");
    }
    *out = r;
    return 0;
}

struct img *
an_consensus(const struct img *const *r, int k)
{
    struct img *o = img_new(r[0]->w, r[0]->h, 1, IMG_U8);
    size_t i, n = (size_t)r[0]->w * r[0]->h;
    int j, c;

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        int votes[AN_NCLASS] = { 0 }, best = -1, bestv = 0, tie = 0;
        for (j = 0; j < k; j++) {
            uint8_t v = ((const uint8_t *)r[j]->data)[i];
            if (v < AN_NCLASS)
                votes[v]++;
        }
        for (c = 0; c < AN_NCLASS; c++) {
            if (votes[c] > bestv) {
                bestv = votes[c];
                best = c;
                tie = 0;
            } else if (votes[c] == bestv && bestv > 0) {
                tie = 1;
            }
        }
        ((uint8_t *)o->data)[i] = best < 0 || tie ? AN_UNLABELLED
                                                  : (uint8_t)best;
    }
    return o;
}

void
an_agreement(const struct img *a, const struct img *b,
             struct an_agreement *out)
{
    size_t i, n = (size_t)a->w * a->h;
    const uint8_t *pa = a->data, *pb = b->data;
    struct an_confusion c;
    struct an_class_scores s;

    an_confusion_init(&c, AN_NCLASS);
    for (i = 0; i < n; i++)
        if (pa[i] < AN_NCLASS && pb[i] < AN_NCLASS)
            c.m[pa[i]][pb[i]]++;
    out->pixels = 0;
    for (i = 0; i < AN_NCLASS * AN_NCLASS; i++)
        out->pixels += c.m[i / AN_NCLASS][i % AN_NCLASS];
    an_class_scores(&c, AN_TUMOR, &s);
    out->dice_tumor = s.dice;
    an_class_scores(&c, AN_STROMA, &s);
    out->dice_stroma = s.dice;
    out->kappa = an_cohen_kappa(&c);
}
