/* SPDX-License-Identifier: MIT */
/*
 * The safetensors file format, read and written here with jansson for the
 * header: an 8-byte little-endian header length L, L bytes of JSON mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets from the end of the header) plus an optional "__metadata__"
 * object of strings, then the raw little-endian data.  Reading checks every
 * offset and size against the file before touching data, converts F16,
 * BF16 and F64 to float32, and names the file and tensor in each error.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "worker/nn/nn_internal.h"

#define MAX_HEADER (100u << 20)

static uint64_t
get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static float
half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v;

    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static float
bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float v;

    memcpy(&v, &u, sizeof(v));
    return v;
}

/* Element size of a supported dtype, 0 when unsupported. */
static size_t
dtype_size(const char *dt)
{
    if (!strcmp(dt, "F32"))
        return 4;
    if (!strcmp(dt, "F16") || !strcmp(dt, "BF16"))
        return 2;
    if (!strcmp(dt, "F64"))
        return 8;
    return 0;
}

static void
convert(const char *dt, const unsigned char *src, float *dst, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const unsigned char *p = src + i * dtype_size(dt);

        if (!strcmp(dt, "F32")) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                         (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&dst[i], &u, 4);
        } else if (!strcmp(dt, "F64")) {
            uint64_t u = get_le64(p);
            double d;

            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        } else if (!strcmp(dt, "F16")) {
            dst[i] = half_to_float((uint16_t)(p[0] | p[1] << 8));
        } else {
            dst[i] = bf16_to_float((uint16_t)(p[0] | p[1] << 8));
        }
    }
}

static int
read_shape(json_t *shape, int *dims, int *ndim, size_t *count)
{
    size_t i;
    json_t *v;

    *count = 1;
    *ndim = (int)json_array_size(shape);
    if (!json_is_array(shape) || *ndim > NN_MAX_DIMS)
        return -1;
    json_array_foreach(shape, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > (1 << 30))
            return -1;
        dims[i] = (int)json_integer_value(v);
        *count *= (size_t)dims[i];
        if (*count > ((size_t)1 << 34))
            return -1;
    }
    if (*ndim == 0) {                   /* a scalar becomes [1] */
        *ndim = 1;
        dims[0] = 1;
    }
    return 0;
}

/* A weight that is NaN or infinite (stored so, or an F64 beyond the float
 * range) would make every prediction NaN, which downstream reads as "no
 * tissue"; such a file is refused, naming the first bad element. */
static int
check_finite(const char *path, const char *name, const struct nn_tensor *t,
             size_t count, struct ss_err *err)
{
    char at[16 * NN_MAX_DIMS] = "";
    size_t i, rest;
    int d, len = 0;

    for (i = 0; i < count && isfinite(t->data[i]); i++)
        ;
    if (i == count)
        return 0;
    rest = i;
    for (d = 0; d < t->ndim; d++) {             /* flat index to [i, j..] */
        size_t stride = 1;
        int e;

        for (e = d + 1; e < t->ndim; e++)
            stride *= (size_t)t->shape[e];
        len += snprintf(at + len, sizeof(at) - (size_t)len, "%s%zu",
                        d ? ", " : "", rest / stride);
        rest %= stride;
    }
    return err_set(err, SS_EFORMAT, "%s: tensor %s: element %zu [%s] is "
                   "%s; the weights must all be finite numbers", path, name,
                   i, at, isnan(t->data[i]) ? "NaN" : t->data[i] > 0 ?
                   "+inf" : "-inf");
}

static int
read_entry(const char *path, const char *name, json_t *d,
           const unsigned char *data, size_t data_len,
           struct nn__st_entry *e, struct ss_err *err)
{
    json_t *offs = json_object_get(d, "data_offsets");
    const char *dt = json_string_value(json_object_get(d, "dtype"));
    int dims[NN_MAX_DIMS], ndim;
    size_t count, esz;
    json_int_t b, en;

    if (!dt || !(esz = dtype_size(dt)))
        return err_set(err, SS_EFORMAT, "%s: tensor %s: unsupported dtype "
                       "%s", path, name, dt ? dt : "(missing)");
    if (read_shape(json_object_get(d, "shape"), dims, &ndim, &count) < 0)
        return err_set(err, SS_EFORMAT, "%s: tensor %s: bad shape", path,
                       name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return err_set(err, SS_EFORMAT, "%s: tensor %s: bad data_offsets",
                       path, name);
    b = json_integer_value(json_array_get(offs, 0));
    en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b || (size_t)en > data_len ||
        (size_t)(en - b) != count * esz)
        return err_set(err, SS_EFORMAT, "%s: tensor %s: data_offsets "
                       "[%lld, %lld] do not fit %zu elements of %s in %zu "
                       "data bytes", path, name, (long long)b, (long long)en,
                       count, dt, data_len);
    e->name = strdup(name);
    e->t = nn__tensor_raw(ndim, dims);
    if (!e->name || !e->t)
        return err_set(err, -ENOMEM, "%s: tensor %s: out of memory", path,
                       name);
    convert(dt, data + b, e->t->data, count);
    return check_finite(path, name, e->t, count, err);
}

static int
read_meta(const char *path, json_t *meta, struct nn__st_file *f,
          struct ss_err *err)
{
    const char *k;
    json_t *v;
    size_t n = json_object_size(meta);

    if (!json_is_object(meta))
        return err_set(err, SS_EFORMAT, "%s: __metadata__ is not an object",
                       path);
    f->meta_keys = calloc(n + 1, sizeof(char *));
    f->meta_vals = calloc(n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return err_set(err, SS_EFORMAT, "%s: __metadata__ %s is not a "
                           "string", path, k);
        f->meta_keys[f->n_meta] = strdup(k);
        f->meta_vals[f->n_meta] = strdup(json_string_value(v));
        if (!f->meta_keys[f->n_meta++] || !f->meta_vals[f->n_meta - 1])
            return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

static int
parse(const char *path, const unsigned char *buf, size_t len,
      struct nn__st_file *f, struct ss_err *err)
{
    json_error_t je;
    json_t *hdr, *v;
    const char *k;
    uint64_t hlen;
    int rc = 0;

    if (len < 8)
        return err_set(err, SS_EFORMAT, "%s: not a safetensors file (%zu "
                       "bytes)", path, len);
    hlen = get_le64(buf);
    if (hlen > MAX_HEADER || hlen > len - 8)
        return err_set(err, SS_EFORMAT, "%s: not a safetensors file (header "
                       "length %llu, file %zu bytes)", path,
                       (unsigned long long)hlen, len);
    hdr = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES,
                     &je);
    if (!json_is_object(hdr)) {
        json_decref(hdr);
        return err_set(err, SS_EFORMAT, "%s: safetensors header: %s", path,
                       hdr ? "not an object" : je.text);
    }
    f->v = calloc(json_object_size(hdr) + 1, sizeof(*f->v));
    if (!f->v)
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
    json_object_foreach(hdr, k, v) {
        if (rc < 0)
            break;
        if (!strcmp(k, "__metadata__"))
            rc = read_meta(path, v, f, err);
        else if (!json_is_object(v))
            rc = err_set(err, SS_EFORMAT, "%s: tensor %s: not an object",
                         path, k);
        else                            /* counted even when it fails, */
            rc = read_entry(path, k, v, buf + 8 + hlen,  /* to be freed */
                            len - 8 - hlen, &f->v[f->n++], err);
    }
    json_decref(hdr);
    return rc;
}

int
nn__st_read(const char *path, struct nn__st_file *f, struct ss_err *err)
{
    char *buf;
    size_t len;
    int rc;

    memset(f, 0, sizeof(*f));
    rc = util_read_file(path, &buf, &len, err);
    if (rc < 0)
        return rc;
    rc = parse(path, (const unsigned char *)buf, len, f, err);
    free(buf);
    if (rc < 0)
        nn__st_clear(f);
    return rc;
}

void
nn__st_clear(struct nn__st_file *f)
{
    int i;

    for (i = 0; i < f->n; i++) {
        free(f->v[i].name);
        nn_tensor_free(f->v[i].t);
    }
    for (i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->v);
    free(f->meta_keys);
    free(f->meta_vals);
    memset(f, 0, sizeof(*f));
}

const char *
nn__st_meta(const struct nn__st_file *f, const char *key)
{
    int i;

    for (i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key))
            return f->meta_vals[i];
    return NULL;
}

static json_t *
header_json(const char *const *names, const struct nn_tensor *const *ts,
            int n, const char *const *mk, const char *const *mv, int nm)
{
    json_t *hdr = json_object(), *meta, *d, *shape;
    size_t off = 0;
    int i, j;

    if (nm > 0) {
        meta = json_object();
        for (j = 0; j < nm; j++)
            json_object_set_new(meta, mk[j], json_string(mv[j]));
        json_object_set_new(hdr, "__metadata__", meta);
    }
    for (i = 0; i < n; i++) {
        d = json_object();
        shape = json_array();
        for (j = 0; j < ts[i]->ndim; j++)
            json_array_append_new(shape, json_integer(ts[i]->shape[j]));
        json_object_set_new(d, "dtype", json_string("F32"));
        json_object_set_new(d, "shape", shape);
        json_object_set_new(d, "data_offsets",
                            json_pack("[I, I]", (json_int_t)off,
                                      (json_int_t)(off + ts[i]->count * 4)));
        json_object_set_new(hdr, names[i], d);
        off += ts[i]->count * 4;
    }
    return hdr;
}

int
nn__st_write(const char *path, const char *const *names,
             const struct nn_tensor *const *tensors, int n,
             const char *const *meta_keys, const char *const *meta_vals,
             int n_meta, struct ss_err *err)
{
    json_t *hdr = header_json(names, tensors, n, meta_keys, meta_vals,
                              n_meta);
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t hlen, total, off, i;
    unsigned char *buf;
    int rc, k;

    json_decref(hdr);
    if (!text)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    hlen = (strlen(text) + 7) / 8 * 8;  /* data starts 8-byte aligned */
    total = 8 + hlen;
    for (k = 0; k < n; k++)
        total += tensors[k]->count * 4;
    buf = malloc(total);
    if (!buf) {
        free(text);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    for (i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memset(buf + 8, ' ', hlen);
    memcpy(buf + 8, text, strlen(text));
    free(text);
    off = 8 + hlen;
    for (k = 0; k < n; k++) {
        for (i = 0; i < tensors[k]->count; i++) {
            uint32_t u;

            memcpy(&u, &tensors[k]->data[i], 4);
            buf[off++] = (unsigned char)u;
            buf[off++] = (unsigned char)(u >> 8);
            buf[off++] = (unsigned char)(u >> 16);
            buf[off++] = (unsigned char)(u >> 24);
        }
    }
    rc = util_write_durable(path, buf, total, err);
    free(buf);
    return rc;
}
