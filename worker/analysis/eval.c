/* SPDX-License-Identifier: MIT */
/*
 * Evaluation over image pairs (conventions in eval.h and metrics.h).
 */
#include "worker/analysis/eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "worker/analysis/geojson.h"
#include "worker/analysis/internal.h"

static const char *cls_name[AN_NCLASS] = { "glass", "tumor", "stroma" };

void
an_eval_init(struct an_eval *e, int64_t min_region_px)
{
    memset(e, 0, sizeof(*e));
    an_confusion_init(&e->conf, AN_NCLASS);
    an_ap_init(&e->ap, AN_NCLASS, min_region_px);
    e->per_image = json_array();
}

void
an_eval_fini(struct an_eval *e)
{
    an_ap_fini(&e->ap);
    img_free(e->errmap);
    json_decref(e->per_image);
    memset(e, 0, sizeof(*e));
}

static int
is_dir(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int
exists(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0;
}

/* Channel 0 of a PNG/TIFF as a one-channel U8 raster. */
static int
read_labels(const char *path, struct img **out, struct ss_err *err)
{
    struct img *rgb, *l;
    size_t i, n;
    int rc = img_read_any(path, &rgb, err);

    if (rc < 0)
        return rc;
    l = img_new(rgb->w, rgb->h, 1, IMG_U8);
    if (l == NULL) {
        img_free(rgb);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    n = (size_t)rgb->w * rgb->h;
    for (i = 0; i < n; i++)
        ((uint8_t *)l->data)[i] = ((uint8_t *)rgb->data)[i * 3];
    img_free(rgb);
    *out = l;
    return 0;
}

struct pred {
    char path[4200];                /* the label map */
    struct img *label, *prob;
    double scale;                   /* level-0 px per raster px */
    int scale_given;                /* scale is the caller's, not ours */
    double tsr;
    double ki67[2];                 /* by enum an_ki67_scope */
};

static void
pred_free(struct pred *p)
{
    img_free(p->label);
    img_free(p->prob);
}

static double
num_or_nan(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Both KI67 scopes of results.json ("ki67": {"tumor": {"index"},
 * "tissue": {"index"}}); a file without them has only "ki67_index", of
 * the scope "ki67"."scope" names, else the tumour's. */
static void
pred_ki67(json_t *r, double *ki67)
{
    json_t *k = json_object_get(r, "ki67");
    enum an_ki67_scope sc = AN_KI67_TUMOR;
    const char *name = json_string_value(json_object_get(k, "scope"));

    ki67[AN_KI67_TUMOR] = num_or_nan(json_object_get(json_object_get(k,
                                     "tumor"), "index"));
    ki67[AN_KI67_TISSUE] = num_or_nan(json_object_get(json_object_get(k,
                                      "tissue"), "index"));
    if (json_object_get(k, "tumor") || json_object_get(k, "tissue"))
        return;
    if (name != NULL && an_ki67_scope_parse(name, &sc) < 0)
        sc = AN_KI67_TUMOR;
    ki67[sc] = num_or_nan(json_object_get(r, "ki67_index"));
}

static int
pred_load(const char *path, struct pred *p, struct ss_err *err)
{
    char f[4200];
    json_t *r;
    int rc;

    memset(p, 0, sizeof(*p));
    p->scale = 1;
    p->tsr = p->ki67[AN_KI67_TUMOR] = p->ki67[AN_KI67_TISSUE] = NAN;
    snprintf(p->path, sizeof(p->path), is_dir(path) ? "%s/labels.png"
             : "%s", path);
    rc = read_labels(p->path, &p->label, err);
    if (rc < 0 || !is_dir(path))
        return rc;
    snprintf(f, sizeof(f), "%s/probabilities.png", path);
    if (exists(f) && img_read_any(f, &p->prob, err) < 0)
        return -EIO;
    if (p->prob != NULL && (p->prob->w != p->label->w ||
                            p->prob->h != p->label->h))
        return err_set(err, SS_EFORMAT, "%s is %d×%d px but %s is %d×%d px",
                       f, p->prob->w, p->prob->h, p->path, p->label->w,
                       p->label->h);
    snprintf(f, sizeof(f), "%s/results.json", path);
    r = json_load_file(f, 0, NULL);
    if (r == NULL)
        return err_set(err, SS_EFORMAT, "%s: missing or not JSON", f);
    p->scale = json_number_value(json_object_get(r, "analysis_mpp")) /
               json_number_value(json_object_get(r, "mpp"));
    if (!(p->scale > 0))
        p->scale = 1;
    p->tsr = json_is_number(json_object_get(r, "tumor_stroma_ratio")) ?
             json_number_value(json_object_get(r, "tumor_stroma_ratio"))
             : NAN;
    pred_ki67(r, p->ki67);
    json_decref(r);
    return 0;
}

static int
is_geojson(const char *path)
{
    size_t n = strlen(path);

    return (n > 8 && strcmp(path + n - 8, ".geojson") == 0) ||
           (n > 5 && strcmp(path + n - 5, ".json") == 0);
}

/* The error for a truth map whose size does not map onto the
 * prediction's. */
static int
size_mismatch(const char *path, const struct img *t, const struct pred *p,
              struct ss_err *err)
{
    char cover[160] = "";

    if (p->scale != 1)
        snprintf(cover, sizeof(cover), ", which at %s%.6g truth px per "
                 "px spans %.0f×%.0f", p->scale_given ? "--scale " : "",
                 p->scale, p->label->w * p->scale, p->label->h * p->scale);
    return err_set(err, -ERANGE, "sizes differ: truth %s is %d×%d px, "
                   "prediction %s is %d×%d px%s; %s", path, t->w, t->h,
                   p->path, p->label->w, p->label->h, cover,
                   p->scale_given ? "the truth must span the prediction "
                   "× scale to within one prediction pixel"
                   : "give --scale (truth pixels per prediction pixel) "
                   "when one maps onto the other");
}

static int
truth_raster(const char *path, const struct pred *p, struct img **out,
             struct ss_err *err)
{
    struct an_annotations *a;
    struct img *t;
    int rc;

    if (is_geojson(path)) {
        rc = an_geojson_read(path, NULL, &a, err);
        if (rc < 0)
            return rc;
        rc = an_annotations_raster(a, NULL, p->label->w, p->label->h,
                                   p->scale, out, err);
        an_annotations_free(a);
        return rc;
    }
    rc = read_labels(path, &t, err);
    if (rc < 0)
        return rc;
    rc = an__labels_fit(t, p->label->w, p->label->h, p->scale,
                        !p->scale_given, out);
    if (rc == -ERANGE)
        rc = size_mismatch(path, t, p, err);
    else if (rc < 0)
        rc = err_set(err, rc, "%s: out of memory", path);
    img_free(t);
    return rc;
}

/* The reference file as a JSON object: -ENOENT when it does not exist,
 * another negative errno when it cannot be read, SS_EFORMAT when it is
 * not a JSON object; each message names the file as --ref's. */
static int
ref_open(const char *path, json_t **out, struct ss_err *err)
{
    json_error_t je;
    char *text = NULL;
    size_t len;
    int rc;

    *out = NULL;
    rc = util_read_file(path, &text, &len, err);
    if (rc < 0)
        return err_prefix(err, "reference values (--ref)");
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (*out == NULL && json_error_code(&je) == json_error_duplicate_key)
        return err_set(err, -EDOM, "reference values (--ref): %s: %s at "
                       "line %d: a key may be given once", path, je.text,
                       je.line);
    if (*out == NULL)
        return err_set(err, SS_EFORMAT, "reference values (--ref): %s: not "
                       "JSON: %s at line %d", path, je.text, je.line);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return err_set(err, SS_EFORMAT, "reference values (--ref): %s: not "
                       "a JSON object", path);
    }
    return 0;
}

/* The keys of a reference file that give values (AN_EVAL_REF_KEYS), and
 * the descriptive ones slidescan's own truth.json and results.json carry,
 * which are read past; any other key is a misspelt value (a "TSR" that
 * would silently score nothing). */
static const char *const ref_values[] = {
    "tumor_stroma_ratio", "tumor_fraction", "tumor_area_mm2",
    "stroma_area_mm2", "areas_mm2", "area_um2", "ki67_index",
    "ki67_fraction",
};
static const char *const ref_described[] = {
    "version", "slide", "slide_id", "spec", "stain", "mpp", "analysis_mpp",
    "width", "height", "w_mm", "h_mm", "labels", "nuclei",
    "tumor_to_stroma_area_ratio", "ck_positive_area_mm2",
    "tissue_area_mm2", "tumor_stroma_ratio_definition", "tsr_regions",
    "ki67", "files", "model", "seconds", "created_utc",
};

static bool
key_in(const char *key, const char *const *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

/* The value keys that are fractions (0..1) and those that are areas
 * (≥ 0); "areas_mm2" and "area_um2" hold areas. */
static const char *const ref_fractions[] = {
    "tumor_stroma_ratio", "tumor_fraction", "ki67_index", "ki67_fraction",
};

#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

static int
ref_refuse(const char *path, const char *key, json_t *v, const char *why,
           struct ss_err *err)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT |
                            JSON_REAL_PRECISION(10));
    int rc = err_set(err, -EDOM, "reference values (--ref): %s: \"%s\" is "
                     "%s: %s", path, key, text ? text : "?", why);

    free(text);
    return rc;
}

/* An area: a number ≥ 0. */
static int
ref_area_check(const char *path, const char *key, json_t *v,
               struct ss_err *err)
{
    if (!json_is_number(v))
        return ref_refuse(path, key, v, "an area must be a number",
                          err);
    if (json_number_value(v) < 0)
        return ref_refuse(path, key, v, "an area cannot be negative",
                          err);
    return 0;
}

/* "areas_mm2" {"tumor", "stroma", ...} or "area_um2" [glass, tumor,
 * stroma]: areas, the tumour's and the stroma's present. */
static int
ref_areas_check(const char *path, const char *key, json_t *v,
                struct ss_err *err)
{
    char name[96];
    const char *k;
    json_t *a;
    size_t i;
    int rc = 0;

    if (json_is_object(v) && strcmp(key, "areas_mm2") == 0) {
        if (!json_object_get(v, "tumor") || !json_object_get(v, "stroma"))
            return ref_refuse(path, key, v, "it needs \"tumor\" and "
                              "\"stroma\"", err);
        json_object_foreach(v, k, a) {
            snprintf(name, sizeof(name), "%s.%s", key, k);
            if (rc == 0)
                rc = ref_area_check(path, name, a, err);
        }
        return rc;
    }
    if (json_is_array(v) && strcmp(key, "area_um2") == 0) {
        if (json_array_size(v) != AN_NCLASS)
            return ref_refuse(path, key, v, "it needs [glass, tumor, "
                              "stroma]", err);
        json_array_foreach(v, i, a) {
            snprintf(name, sizeof(name), "%s[%zu]", key, i);
            if (rc == 0)
                rc = ref_area_check(path, name, a, err);
        }
        return rc;
    }
    return ref_refuse(path, key, v, strcmp(key, "areas_mm2") == 0 ?
                      "it must be an object {\"tumor\", \"stroma\"}" :
                      "it must be an array [glass, tumor, stroma]", err);
}

/* slidescan's own truth.json and results.json write the KI67 value as
 * null on a slide that is not KI67-stained: no reference, not an error. */
static bool
ref_null_allowed(json_t *r, const char *key)
{
    const char *stain = json_string_value(json_object_get(r, "stain"));

    return (strcmp(key, "ki67_index") == 0 ||
            strcmp(key, "ki67_fraction") == 0) &&
           stain != NULL && strcmp(stain, "KI67") != 0;
}

/* One value key: a number in its range (a fraction in 0..1, an area
 * ≥ 0), or the areas' object or array.  *given counts usable values. */
static int
ref_value_check(const char *path, json_t *r, const char *key, json_t *v,
                int *given, struct ss_err *err)
{
    double x = json_number_value(v);

    if (json_is_null(v) && ref_null_allowed(r, key))
        return 0;
    if (json_is_null(v))
        return ref_refuse(path, key, v, "a value key must hold a number "
                          "(leave the key out when there is no reference "
                          "value)", err);
    (*given)++;
    if (strcmp(key, "areas_mm2") == 0 || strcmp(key, "area_um2") == 0)
        return ref_areas_check(path, key, v, err);
    if (!json_is_number(v))
        return ref_refuse(path, key, v, "not a number", err);
    if (key_in(key, ref_fractions, NKEYS(ref_fractions)) &&
        !(x >= 0 && x <= 1))
        return ref_refuse(path, key, v, "a fraction must be in 0..1", err);
    return key_in(key, ref_fractions, NKEYS(ref_fractions)) ? 0 :
           ref_area_check(path, key, v, err);
}

/* -EDOM naming the first key that is neither a value nor descriptive, a
 * value key whose value is unusable (see ref_value_check), an area of
 * tumour without the stroma's or the reverse, a "ki67_scope" other than
 * "tumor" or "tissue", or a file that gives no value at all. */
static int
ref_keys_check(const char *path, json_t *r, struct ss_err *err)
{
    enum an_ki67_scope scope;
    const char *key, *sc;
    int given = 0, rc;
    json_t *v;

    json_object_foreach(r, key, v) {
        if (key_in(key, ref_values, NKEYS(ref_values))) {
            rc = ref_value_check(path, r, key, v, &given, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (strcmp(key, "ki67_scope") == 0) {
            sc = json_string_value(v);
            if (sc == NULL || an_ki67_scope_parse(sc, &scope) < 0)
                return ref_refuse(path, key, v, "it must be \"tumor\" or "
                                  "\"tissue\"", err);
            continue;
        }
        if (!key_in(key, ref_described, NKEYS(ref_described)))
            return err_set(err, -EDOM, "reference values (--ref): %s: "
                           "unknown key \"%s\"; the keys are %s",
                           path, key, AN_EVAL_REF_KEYS);
    }
    if ((json_object_get(r, "tumor_area_mm2") == NULL) !=
        (json_object_get(r, "stroma_area_mm2") == NULL))
        return err_set(err, -EDOM, "reference values (--ref): %s: \"%s\" "
                       "is given without \"%s\"; the two go together",
                       path, json_object_get(r, "tumor_area_mm2") ?
                       "tumor_area_mm2" : "stroma_area_mm2",
                       json_object_get(r, "tumor_area_mm2") ?
                       "stroma_area_mm2" : "tumor_area_mm2");
    if (given == 0)
        return err_set(err, -EDOM, "reference values (--ref): no reference "
                       "value in %s; the keys are %s", path,
                       AN_EVAL_REF_KEYS);
    return 0;
}

/* The nuclei a reference KI67 value counts: "ki67_scope" when given, else
 * the scope a results.json used as reference records, else the tumour's
 * (a phantom's ki67_fraction is tumour positive / tumour nuclei). */
static enum an_ki67_scope
ref_ki67_scope(json_t *r)
{
    const char *sc = json_string_value(json_object_get(r, "ki67_scope"));
    enum an_ki67_scope scope = AN_KI67_TUMOR;

    if (sc == NULL)
        sc = json_string_value(json_object_get(json_object_get(r, "ki67"),
                                               "scope"));
    if (sc != NULL && an_ki67_scope_parse(sc, &scope) < 0)
        scope = AN_KI67_TUMOR;
    return scope;
}

/* Reference TSR and KI67 (with the KI67 value's scope) from a JSON file
 * (see eval.h). */
static int
ref_load(const char *path, double *tsr, double *ki67,
         enum an_ki67_scope *scope, struct ss_err *err)
{
    json_t *r, *v, *a;
    double t = NAN, s = NAN;
    int rc;

    *tsr = *ki67 = NAN;
    rc = ref_open(path, &r, err);
    if (rc < 0)
        return rc;
    rc = ref_keys_check(path, r, err);
    if (rc < 0) {
        json_decref(r);
        return rc;
    }
    if ((v = json_object_get(r, "tumor_stroma_ratio")) != NULL &&
        json_object_get(r, "area_um2") == NULL &&
        json_object_get(r, "areas_mm2") == NULL)
        *tsr = json_is_number(v) ? json_number_value(v) : NAN;
    if ((a = json_object_get(r, "areas_mm2")) != NULL) {
        t = json_number_value(json_object_get(a, "tumor"));
        s = json_number_value(json_object_get(a, "stroma"));
    } else if ((a = json_object_get(r, "area_um2")) != NULL) {
        t = json_number_value(json_array_get(a, AN_TUMOR));
        s = json_number_value(json_array_get(a, AN_STROMA));
    } else if (json_object_get(r, "tumor_area_mm2") != NULL) {
        t = json_number_value(json_object_get(r, "tumor_area_mm2"));
        s = json_number_value(json_object_get(r, "stroma_area_mm2"));
    }
    if (t + s > 0)
        *tsr = t / (t + s);
    if (json_is_number(v = json_object_get(r, "tumor_fraction")))
        *tsr = json_number_value(v);
    if ((v = json_object_get(r, "ki67_index")) != NULL ||
        (v = json_object_get(r, "ki67_fraction")) != NULL)
        *ki67 = json_is_number(v) ? json_number_value(v) : NAN;
    *scope = ref_ki67_scope(r);
    json_decref(r);
    return 0;
}

/* Error-map colours: agreement in light shades of the truth class,
 * disagreement by kind. */
static void
error_colour(uint8_t t, uint8_t p, uint8_t *c)
{
    static const uint8_t ok[AN_NCLASS][3] = {
        { 245, 245, 245 }, { 170, 225, 170 }, { 240, 180, 180 } };
    static const uint8_t tumor_as_stroma[3] = { 200, 0, 200 };
    static const uint8_t stroma_as_tumor[3] = { 0, 170, 220 };
    static const uint8_t tissue_missed[3] = { 230, 200, 0 };
    static const uint8_t glass_as_tissue[3] = { 40, 40, 160 };
    const uint8_t *s;

    if (t >= AN_NCLASS)
        s = ok[AN_GLASS];
    else if (t == p)
        s = ok[t];
    else if (t == AN_TUMOR && p == AN_STROMA)
        s = tumor_as_stroma;
    else if (t == AN_STROMA && p == AN_TUMOR)
        s = stroma_as_tumor;
    else if (p == AN_GLASS)
        s = tissue_missed;
    else
        s = glass_as_tissue;
    memcpy(c, s, 3);
}

static struct img *
error_map(const struct img *t, const struct img *p)
{
    struct img *m = img_new(t->w, t->h, 3, IMG_U8);
    size_t i, n = (size_t)t->w * t->h;

    if (m == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        error_colour(((uint8_t *)t->data)[i], ((uint8_t *)p->data)[i],
                     (uint8_t *)m->data + i * 3);
    return m;
}

static json_t *
num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *
image_scores(const char *pred, const char *truth, const struct img *t,
             const struct img *p, struct an_eval *e)
{
    json_t *o = json_pack("{s:s, s:s}", "pred", pred, "truth", truth);
    struct an_confusion c;
    int k;

    an_confusion_init(&c, AN_NCLASS);
    an_confusion_add(&c, t->data, p->data, (size_t)t->w * t->h,
                     AN_UNLABELLED, NULL);
    for (k = 0; k < AN_NCLASS; k++) {
        struct an_class_scores s;
        an_class_scores(&c, k, &s);
        e->both_empty[k] += s.both_empty;
        json_object_set_new(o, cls_name[k], json_pack("{s:o, s:o}", "dice",
                            num_or_null(s.dice), "iou", num_or_null(s.iou)));
    }
    return o;
}

static int
add_pair(struct an_eval *e, const char *pred, const char *truth,
         const char *ref, struct pred *p, struct img *t, struct ss_err *err)
{
    static const char *const scope_name[] = { "tumor", "tissue" };
    enum an_ki67_scope sc = AN_KI67_TUMOR;
    double rt = NAN, rk = NAN;
    size_t n = (size_t)t->w * t->h;
    json_t *im;
    int rc;

    if (ref != NULL && ref_load(ref, &rt, &rk, &sc, err) < 0)
        return err->code;
    rc = an_confusion_add(&e->conf, t->data, p->label->data, n,
                          AN_UNLABELLED, err);
    if (rc < 0)
        return err_prefix(err, "%s", pred);
    rc = an_ap_add(&e->ap, t->data, p->label->data,
                   p->prob != NULL ? p->prob->data : NULL, t->w, t->h, err);
    if (rc < 0)
        return rc;
    im = image_scores(pred, truth, t, p->label, e);
    an_err_add(&e->tsr, p->tsr, rt, &e->tsr_skipped);
    an_err_add(&e->ki67, p->ki67[sc], rk, &e->ki67_skipped);
    if (isfinite(p->ki67[sc]) && isfinite(rk))
        e->ki67_scopes |= 1 << sc;
    json_object_set_new(im, "tsr", json_pack("{s:o, s:o}", "pred",
                        num_or_null(p->tsr), "ref", num_or_null(rt)));
    json_object_set_new(im, "ki67_index", json_pack("{s:o, s:o, s:s}",
                        "pred", num_or_null(p->ki67[sc]), "ref",
                        num_or_null(rk), "scope", scope_name[sc]));
    json_array_append_new(e->per_image, im);
    if (e->errmap == NULL)
        e->errmap = error_map(t, p->label);
    e->images++;
    return 0;
}

int
an_eval_add(struct an_eval *e, const char *pred, const char *truth,
            const char *ref, struct ss_err *err)
{
    return an_eval_add_scaled(e, pred, truth, ref, 0, err);
}

int
an_eval_add_scaled(struct an_eval *e, const char *pred, const char *truth,
                   const char *ref, double scale, struct ss_err *err)
{
    char tl[4200], tr[4200];
    const char *tpath = truth, *rpath = ref;
    struct pred p;
    struct img *t = NULL;
    int rc;

    if (is_dir(truth)) {
        snprintf(tl, sizeof(tl), "%s/labels.png", truth);
        if (!exists(tl))
            snprintf(tl, sizeof(tl), "%s/annotations.geojson", truth);
        snprintf(tr, sizeof(tr), "%s/truth.json", truth);
        tpath = tl;
        if (rpath == NULL && exists(tr))
            rpath = tr;
    }
    rc = pred_load(pred, &p, err);
    if (rc == 0 && scale > 0) {
        p.scale = scale;
        p.scale_given = 1;
    }
    if (rc == 0)
        rc = truth_raster(tpath, &p, &t, err);
    if (rc == 0)
        rc = add_pair(e, pred, truth, rpath, &p, t, err);
    pred_free(&p);
    img_free(t);
    return rc;
}

/* The KI67 scopes compared: "tumor", "tissue" or "tumor+tissue". */
static const char *
scopes_text(const struct an_eval *e)
{
    static const char *const text[] = { "n/a", "tumor", "tissue",
                                        "tumor+tissue" };

    return text[e->ki67_scopes & 3];
}

json_t *
an_eval_json(const struct an_eval *e)
{
    json_t *o = json_object(), *cls = json_object(), *cm = json_array();
    int k, j, n;

    for (k = 0; k < AN_NCLASS; k++) {
        struct an_class_scores s;
        json_t *row = json_array();
        an_class_scores(&e->conf, k, &s);
        json_object_set_new(cls, cls_name[k], json_pack(
            "{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:i}",
            "tp", (json_int_t)s.tp, "fp", (json_int_t)s.fp,
            "fn", (json_int_t)s.fn, "tn", (json_int_t)s.tn,
            "precision", num_or_null(s.precision),
            "recall", num_or_null(s.recall), "f1", num_or_null(s.f1),
            "iou", num_or_null(s.iou), "dice", num_or_null(s.dice),
            "images_both_empty", e->both_empty[k]));
        for (j = 0; j < AN_NCLASS; j++)
            json_array_append_new(row, json_integer(e->conf.m[k][j]));
        json_array_append_new(cm, row);
    }
    json_object_set_new(o, "images", json_integer(e->images));
    json_object_set_new(o, "classes", cls);
    json_object_set_new(o, "confusion_truth_by_pred", cm);
    json_object_set_new(o, "ignored_pixels", json_integer(e->conf.ignored));
    json_object_set_new(o, "kappa", num_or_null(an_cohen_kappa(&e->conf)));
    json_object_set_new(o, "map_50_95", num_or_null(an_ap_map(&e->ap, &n)));
    json_object_set_new(o, "map_classes", json_integer(n));
    json_object_set_new(o, "tsr", json_pack("{s:i, s:o, s:o, s:i}", "n",
                        e->tsr.n, "mae", num_or_null(an_err_mae(&e->tsr)),
                        "rmse", num_or_null(an_err_rmse(&e->tsr)), "skipped",
                        e->tsr_skipped));
    json_object_set_new(o, "ki67_index", json_pack("{s:i, s:o, s:o, s:i, "
                        "s:o}", "n", e->ki67.n, "mae",
                        num_or_null(an_err_mae(&e->ki67)), "rmse",
                        num_or_null(an_err_rmse(&e->ki67)), "skipped",
                        e->ki67_skipped, "scope",
                        e->ki67_scopes ? json_string(scopes_text(e))
                        : json_null()));
    json_object_set_new(o, "per_image", json_incref(e->per_image));
    return o;
}

static void
print_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, " %9.4f", v);
    else
        fprintf(f, " %9s", "n/a");
}

void
an_eval_print(const struct an_eval *e, FILE *f)
{
    int k, j, n;
    double map = an_ap_map(&e->ap, &n);

    fprintf(f, "images %d, ignored pixels %lld\n\n", e->images,
            (long long)e->conf.ignored);
    fprintf(f, "%-8s %9s %9s %9s %9s %9s %12s %12s %12s  both-empty\n",
            "class", "precision", "recall", "F1", "IoU", "Dice", "TP", "FP",
            "FN");
    for (k = 0; k < AN_NCLASS; k++) {
        struct an_class_scores s;
        an_class_scores(&e->conf, k, &s);
        fprintf(f, "%-8s", cls_name[k]);
        print_num(f, s.precision);
        print_num(f, s.recall);
        print_num(f, s.f1);
        print_num(f, s.iou);
        print_num(f, s.dice);
        fprintf(f, " %12lld %12lld %12lld  %d\n", (long long)s.tp,
                (long long)s.fp, (long long)s.fn, e->both_empty[k]);
    }
    fprintf(f, "\nconfusion (rows truth, columns prediction)\n%-8s", "");
    for (j = 0; j < AN_NCLASS; j++)
        fprintf(f, " %12s", cls_name[j]);
    for (k = 0; k < AN_NCLASS; k++) {
        fprintf(f, "\n%-8s", cls_name[k]);
        for (j = 0; j < AN_NCLASS; j++)
            fprintf(f, " %12lld", (long long)e->conf.m[k][j]);
    }
    fprintf(f, "\n\nkappa");
    print_num(f, an_cohen_kappa(&e->conf));
    fprintf(f, "\nregion mAP@[.5:.95]");
    print_num(f, map);
    fprintf(f, " over %d classes\nTSR (tumour fraction of tumour+stroma)"
            "\n      MAE", n);
    print_num(f, an_err_mae(&e->tsr));
    fprintf(f, " RMSE");
    print_num(f, an_err_rmse(&e->tsr));
    fprintf(f, " (n=%d)\nKI67  MAE", e->tsr.n);
    print_num(f, an_err_mae(&e->ki67));
    fprintf(f, " RMSE");
    print_num(f, an_err_rmse(&e->ki67));
    fprintf(f, " (n=%d, scope %s)\n", e->ki67.n,
            e->ki67_scopes ? scopes_text(e) : "n/a");
}
