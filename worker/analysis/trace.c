/* SPDX-License-Identifier: MIT */
/*
 * Label maps to polygons.  Every boundary between a pixel of the class and
 * one that is not becomes a directed unit edge with the class on its
 * right (walking clockwise around each pixel on screen).  Chaining edges
 * gives closed rings that never cross: where two class pixels touch only
 * at a corner the walk turns towards the class, so they stay separate
 * (4-connected regions).  Outer rings come out with positive shoelace
 * area in raw coordinates (counter-clockwise as RFC 7946 wants), holes
 * negative; each ring belongs to the 4-connected region of the pixel its
 * first edge bounds, which groups holes with their outer ring.
 */
#include "worker/analysis/geojson.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/analysis/internal.h"

/* Directions of unit edges: 0 east (+x), 1 south (+y), 2 west, 3 north. */
static const int dx[4] = { 1, 0, -1, 0 };
static const int dy[4] = { 0, 1, 0, -1 };

struct tracer {
    int w, h;                       /* raster size; vertices (w+1)(h+1) */
    uint8_t *out;                   /* per vertex: bit d = unused edge d */
    int32_t *owner;                 /* per vertex × 4: region of edge */
};

static int
is_cls(const struct img *l, int x, int y, uint8_t cls)
{
    return x >= 0 && y >= 0 && x < l->w && y < l->h &&
           *img_u8(l, x, y) == cls;
}

static void
add_edge(struct tracer *t, int vx, int vy, int d, int32_t region)
{
    size_t v = (size_t)vy * (t->w + 1) + vx;

    t->out[v] |= (uint8_t)(1 << d);
    t->owner[v * 4 + d] = region;
}

static void
collect_edges(struct tracer *t, const struct img *l, uint8_t cls,
              const int32_t *lab)
{
    int x, y;

    for (y = 0; y < l->h; y++)
        for (x = 0; x < l->w; x++) {
            int32_t r = lab[(size_t)y * l->w + x];
            if (!r)
                continue;
            if (!is_cls(l, x, y - 1, cls))
                add_edge(t, x, y, 0, r);
            if (!is_cls(l, x + 1, y, cls))
                add_edge(t, x + 1, y, 1, r);
            if (!is_cls(l, x, y + 1, cls))
                add_edge(t, x + 1, y + 1, 2, r);
            if (!is_cls(l, x - 1, y, cls))
                add_edge(t, x, y + 1, 3, r);
        }
}

/* The direction to leave vertex v by after arriving in direction prev:
 * a right turn if that edge is unused, else straight on, else left.  At
 * the ring's start vertex, the start edge (used already) counts too,
 * and choosing it closes the ring (returns -1). */
static int
next_dir(const struct tracer *t, size_t v, int prev, int start_d)
{
    static const int turn[3] = { 1, 0, 3 };
    int k;

    for (k = 0; k < 3; k++) {
        int nd = (prev + turn[k]) & 3;
        if (nd == start_d)
            return -1;
        if (t->out[v] & (1 << nd))
            return nd;
    }
    return -1;
}

/* Follows unused edges from vertex (vx, vy) in direction d until the ring
 * closes; returns its corner points (collinear ones dropped), closed. */
static json_t *
follow(struct tracer *t, int vx, int vy, int d, double scale)
{
    json_t *ring = json_array();
    int sx = vx, sy = vy, sd = d, prev = -1;

    for (;;) {
        size_t v = (size_t)vy * (t->w + 1) + vx;
        if (prev >= 0) {
            d = next_dir(t, v, prev, vx == sx && vy == sy ? sd : -1);
            if (d < 0)
                break;
        }
        t->out[v] &= (uint8_t)~(1 << d);
        if (d != prev)
            json_array_append_new(ring, json_pack("[f,f]", vx * scale,
                                                  vy * scale));
        prev = d;
        vx += dx[d];
        vy += dy[d];
    }
    json_array_append(ring, json_array_get(ring, 0));
    return ring;
}

static double
ring_signed_area(json_t *ring)
{
    size_t i, n = json_array_size(ring);
    double s = 0;

    for (i = 0; i + 1 < n; i++) {
        json_t *a = json_array_get(ring, i), *b = json_array_get(ring, i + 1);
        s += json_real_value(json_array_get(a, 0)) *
             json_real_value(json_array_get(b, 1)) -
             json_real_value(json_array_get(b, 0)) *
             json_real_value(json_array_get(a, 1));
    }
    return s / 2;
}

/* Rings grouped into polygons by region: polys[r] = [outer, holes...]. */
static int
trace_class(const struct img *l, uint8_t cls, double scale, json_t *multi)
{
    size_t i, n = (size_t)l->w * l->h, nv = (size_t)(l->w + 1) * (l->h + 1);
    uint8_t *mask = malloc(n);
    int32_t *lab = malloc(n * sizeof(int32_t));
    struct tracer t = { l->w, l->h, calloc(nv, 1),
                        malloc(nv * 4 * sizeof(int32_t)) };
    json_t **polys = NULL;
    int count = 0, rc = -ENOMEM, x, y, d, r;

    if (mask == NULL || lab == NULL || t.out == NULL || t.owner == NULL)
        goto out;
    for (i = 0; i < n; i++)
        mask[i] = ((const uint8_t *)l->data)[i] == cls;
    count = an__components_conn(mask, l->w, l->h, lab, 4);
    polys = calloc((size_t)count + 1, sizeof(json_t *));
    if (count < 0 || polys == NULL)
        goto out;
    collect_edges(&t, l, cls, lab);
    for (y = 0; y <= l->h; y++)
        for (x = 0; x <= l->w; x++)
            for (d = 0; d < 4; d++) {
                size_t v = (size_t)y * (l->w + 1) + x;
                json_t *ring;
                if (!(t.out[v] & (1 << d)))
                    continue;
                r = t.owner[v * 4 + d];
                ring = follow(&t, x, y, d, scale);
                if (polys[r] == NULL)
                    polys[r] = json_array();
                if (ring_signed_area(ring) > 0)
                    json_array_insert_new(polys[r], 0, ring);
                else
                    json_array_append_new(polys[r], ring);
            }
    for (r = 1; r <= count; r++)
        if (polys[r] != NULL)
            json_array_append_new(multi, polys[r]);
    rc = 0;
out:
    free(mask);
    free(lab);
    free(t.out);
    free(t.owner);
    free(polys);
    return rc;
}

static json_t *
feature(const char *name, const int rgb[3], json_t *multi)
{
    return json_pack("{s:s, s:{s:s, s:o}, s:{s:s, s:{s:s, s:[i,i,i]}, "
                     "s:b}}", "type", "Feature", "geometry", "type",
                     "MultiPolygon", "coordinates", multi, "properties",
                     "objectType", "annotation", "classification", "name",
                     name, "color", rgb[0], rgb[1], rgb[2], "isLocked", 0);
}

int
an_geojson_write(const char *path, const struct img *label, double scale,
                 struct ss_err *err)
{
    static const int green[3] = { 0, 200, 0 }, red[3] = { 230, 0, 0 };
    json_t *feats = json_array(), *root;
    char *text;
    int cls, rc = 0;

    for (cls = AN_TUMOR; cls <= AN_STROMA && rc == 0; cls++) {
        json_t *multi = json_array();
        rc = trace_class(label, (uint8_t)cls, scale, multi);
        if (rc == 0 && json_array_size(multi) > 0)
            json_array_append_new(feats, feature(cls == AN_TUMOR ? "Tumor"
                                                 : "Stroma",
                                                 cls == AN_TUMOR ? green
                                                 : red, multi));
        else
            json_decref(multi);
    }
    root = json_pack("{s:s, s:o}", "type", "FeatureCollection", "features",
                     feats);
    text = rc == 0 ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10))
                   : NULL;
    json_decref(root);
    if (text == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    rc = util_write_durable(path, text, strlen(text), err);
    free(text);
    return rc;
}
