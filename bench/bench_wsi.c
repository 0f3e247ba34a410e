/* SPDX-License-Identifier: MIT */
/*
 * The WSI writer benchmark's programs (bench/wsi.sh drives them and the
 * peer, vips tiffsave, on the same input):
 *
 *   bench_wsi write MOSAIC.v OUT.svs [QUALITY [SUBSAMP]]
 *       streams an uncompressed 8-bit RGB vips image (.v) through
 *       storage/wsi.h into a pyramidal WSI, reading it in bands as a
 *       scanner's stitcher would hand them over
 *   bench_wsi assemble TILE.v COLS ROWS OUT.svs [QUALITY [SUBSAMP]]
 *       the same slide assembled on the fly from one tile held in memory
 *       and repeated COLS × ROWS times, rows handed over in bands
 *   bench_wsi floor MOSAIC.v [QUALITY [SUBSAMP]]
 *       the JPEG encoding floor: libjpeg-turbo alone encoding the
 *       256 × 256 tiles of every level on one core (one tile row in
 *       FLOOR_STRIDE sampled, pyramid levels counted by their share of
 *       tiles), printed as seconds for one core and for the cores online
 *
 * Without arguments it writes and verifies a small synthetic slide and
 * prints its throughput, so `make bench` without data still measures.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/img.h"
#include "common/util.h"
#include "storage/wsi.h"

#define READ_ROWS 32
#define FLOOR_STRIDE 4

/* CPU time of this thread, ms: the floor is a property of the code, not
 * of how busy the machine is while it is measured. */
static double
thread_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct vfile {
    FILE *f;
    int w, h;
};

/* An uncompressed vips image: 64-byte header (little-endian magic
 * b6 a6 f2 08, width, height, bands, bits, format, coding), then pixels. */
static int
vfile_open(const char *path, struct vfile *v)
{
    unsigned char hd[64];
    int32_t f[7];

    v->f = fopen(path, "rb");
    if (v->f == NULL || fread(hd, 1, 64, v->f) != 64) {
        fprintf(stderr, "bench_wsi: %s: %s\n", path, strerror(errno));
        return -1;
    }
    memcpy(f, hd, sizeof(f));
    if (memcmp(hd, "\xb6\xa6\xf2\x08", 4) != 0 || f[3] != 3 ||
        f[4] != 8 || f[5] != 0 || f[6] != 0) {
        fprintf(stderr, "bench_wsi: %s: not an uncompressed 8-bit RGB "
                "vips image\n", path);
        return -1;
    }
    v->w = f[1];
    v->h = f[2];
    return 0;
}

static int
do_write(const char *in, const char *out, int quality, int subsamp)
{
    struct vfile v;
    struct wsi_meta m;
    struct wsi_writer *w;
    struct ss_err e;
    uint8_t *buf;
    double t0 = util_now_ms(), t1 = 0;
    int y, n = 0, rc;

    if (vfile_open(in, &v) < 0)
        return 1;
    wsi_meta_default(&m);
    m.mpp = 0.499;
    m.quality = quality;
    m.subsamp = subsamp;
    snprintf(m.slide_id, sizeof(m.slide_id), "bench");
    /* Rows are read straight into the writer's band, as a stitcher
     * rendering into it would: no copy between the two. */
    buf = malloc(1);
    rc = buf ? wsi_writer_open(out, v.w, v.h, &m, &w, &e) : -ENOMEM;
    for (y = 0; rc == 0 && y < v.h; y += n) {
        uint8_t *dst;
        size_t stride;
        int k;

        rc = wsi_writer_rows_buffer(w, &dst, &stride, &n, &e);
        if (rc < 0)
            break;
        n = n < READ_ROWS ? n : READ_ROWS;
        for (k = 0; k < n; k++)
            if (fread(dst + (size_t)k * stride, (size_t)v.w * 3, 1, v.f) != 1) {
                fprintf(stderr, "bench_wsi: %s: short read\n", in);
                wsi_writer_abort(w);
                return 1;
            }
        rc = wsi_writer_rows_commit(w, n, &e);
    }
    t1 = util_now_ms();
    if (rc == 0)
        rc = wsi_writer_finish(w, &e);
    else if (buf != NULL)
        wsi_writer_abort(w);
    fclose(v.f);
    free(buf);
    if (rc < 0) {
        fprintf(stderr, "bench_wsi: %s\n", e.msg);
        return 1;
    }
    printf("write: %dx%d q%d %d, %.2f s (finish %.2f s), bigtiff %d\n",
           v.w, v.h, quality, subsamp, (util_now_ms() - t0) / 1000,
           (util_now_ms() - t1) / 1000, wsi_needs_bigtiff(v.w, v.h, &m));
    return 0;
}

static int
do_assemble(const char *in, int cols, int rows, const char *out, int quality,
            int subsamp)
{
    struct vfile v;
    struct wsi_meta m;
    struct wsi_writer *w;
    struct ss_err e;
    uint8_t *tile, *band;
    size_t trow;
    double t0 = util_now_ms();
    int W, H, y, k, c, rc;

    if (vfile_open(in, &v) < 0)
        return 1;
    trow = (size_t)v.w * 3;
    tile = malloc(trow * v.h);
    if (tile == NULL || fread(tile, trow, (size_t)v.h, v.f) != (size_t)v.h)
        return 1;
    fclose(v.f);
    W = v.w * cols;
    H = v.h * rows;
    band = malloc((size_t)W * 3 * READ_ROWS);
    wsi_meta_default(&m);
    m.mpp = 0.499;
    m.quality = quality;
    m.subsamp = subsamp;
    rc = band ? wsi_writer_open(out, W, H, &m, &w, &e) : -ENOMEM;
    for (y = 0; rc == 0 && y < H; y += READ_ROWS) {
        int n = H - y < READ_ROWS ? H - y : READ_ROWS;

        for (k = 0; k < n; k++)
            for (c = 0; c < cols; c++)
                memcpy(band + (size_t)k * W * 3 + c * trow,
                       tile + (size_t)((y + k) % v.h) * trow, trow);
        rc = wsi_writer_rows(w, band, n, &e);
    }
    if (rc == 0)
        rc = wsi_writer_finish(w, &e);
    else if (band != NULL)
        wsi_writer_abort(w);
    free(tile);
    free(band);
    if (rc < 0) {
        fprintf(stderr, "bench_wsi: %s\n", e.msg);
        return 1;
    }
    printf("assemble: %dx%d from %dx%d tiles, %.2f s\n", W, H, cols, rows,
           (util_now_ms() - t0) / 1000);
    return 0;
}

/* Tiles in all levels over tiles in level 0, as the writer builds them. */
static double
pyramid_factor(int w, int h)
{
    double l0 = 0, all = 0;
    int k = 0;

    for (;;) {
        double n = (double)((w + 255) / 256) * ((h + 255) / 256);

        all += n;
        if (k++ == 0)
            l0 = n;
        if (w <= 512 && h <= 512)
            break;
        w = (w + 1) / 2;
        h = (h + 1) / 2;
    }
    return all / l0;
}

static int
do_floor(const char *in, int quality, int subsamp)
{
    struct vfile v;
    tjhandle tj = tjInitCompress();
    unsigned long sz = tjBufSize(256, 256, TJSAMP_444);
    unsigned char *jpg = malloc(sz);
    uint8_t *band;
    double enc_ms = 0, t0;
    long tiles = 0, rows_total;
    int tr, x, ntr, ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);

    if (vfile_open(in, &v) < 0)
        return 1;
    band = calloc((size_t)v.w * 256 * 3 + 256 * 3, 1);
    ntr = (v.h + 255) / 256;
    for (tr = 0; tr < ntr; tr++) {
        int rows = v.h - tr * 256 < 256 ? v.h - tr * 256 : 256;

        if (fread(band, (size_t)v.w * 3, (size_t)rows, v.f) !=
            (size_t)rows)
            return 1;
        if (tr % FLOOR_STRIDE != 0)
            continue;
        t0 = thread_ms();
        for (x = 0; x + 256 <= v.w; x += 256, tiles++) {
            unsigned long n = sz;

            tjCompress2(tj, band + (size_t)x * 3, 256, v.w * 3, 256,
                        TJPF_RGB, &jpg, &n,
                        subsamp == 444 ? TJSAMP_444 : TJSAMP_420, quality,
                        TJFLAG_NOREALLOC);
        }
        enc_ms += thread_ms() - t0;
    }
    rows_total = (long)((v.w + 255) / 256) * ntr;
    t0 = enc_ms / tiles * rows_total * pyramid_factor(v.w, v.h) / 1000;
    printf("floor: %ld tiles sampled, %.3f ms CPU per tile, all levels "
           "%.2f s on one core, %.2f s on %d\n", tiles, enc_ms / tiles, t0,
           t0 / ncpu, ncpu);
    fclose(v.f);
    free(band);
    free(jpg);
    tjDestroy(tj);
    return 0;
}

/* No data: a synthetic 8192 × 6144 slide, written and verified. */
static int
do_synthetic(void)
{
    const char *out = "/tmp/bench_wsi_synthetic.svs";
    struct img *row = img_new(8192, 64, 3, IMG_U8);
    struct wsi_meta m;
    struct wsi_writer *w;
    struct ss_err e;
    char rep[8192];
    double t0 = util_now_ms(), t1;
    int x, y, k;

    wsi_meta_default(&m);
    if (wsi_writer_open(out, 8192, 6144, &m, &w, &e) < 0)
        return 1;
    for (k = 0; k < 6144 / 64; k++) {
        for (y = 0; y < 64; y++)
            for (x = 0; x < 8192; x++) {
                uint8_t *p = img_u8(row, x, y);
                int v = (x * 7 + (k * 64 + y) * 3) ^ (x >> 3);

                p[0] = (uint8_t)(180 + (v & 63));
                p[1] = (uint8_t)(120 + ((v >> 2) & 63));
                p[2] = (uint8_t)(190 + ((v >> 4) & 31));
            }
        if (wsi_writer_rows(w, row->data, 64, &e) < 0)
            return 1;
    }
    if (wsi_writer_finish(w, &e) < 0)
        return 1;
    t1 = util_now_ms();
    if (wsi_verify(out, 0.5, rep, sizeof(rep), &e) < 0) {
        fprintf(stderr, "%s", rep);
        return 1;
    }
    printf("synthetic 8192x6144: write %.0f ms (%.1f Mpx/s), verify %.0f "
           "ms\n", t1 - t0, 8192.0 * 6144 / 1000 / (t1 - t0),
           util_now_ms() - t1);
    unlink(out);
    img_free(row);
    return 0;
}

int
main(int argc, char **argv)
{
    int q = argc > 4 && strcmp(argv[1], "write") == 0 ? atoi(argv[4])
          : argc > 3 && strcmp(argv[1], "floor") == 0 ? atoi(argv[3]) : 90;
    int ss = argc > 5 && strcmp(argv[1], "write") == 0 ? atoi(argv[5])
           : argc > 4 && strcmp(argv[1], "floor") == 0 ? atoi(argv[4])
           : 444;

    if (argc >= 6 && strcmp(argv[1], "assemble") == 0)
        return do_assemble(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5],
                           argc > 6 ? atoi(argv[6]) : 90,
                           argc > 7 ? atoi(argv[7]) : 444);
    if (argc >= 4 && strcmp(argv[1], "write") == 0)
        return do_write(argv[2], argv[3], q, ss);
    if (argc >= 3 && strcmp(argv[1], "floor") == 0)
        return do_floor(argv[2], q, ss);
    if (argc == 1)
        return do_synthetic();
    fprintf(stderr, "usage: bench_wsi [write MOSAIC.v OUT.svs [Q [SS]] | "
            "assemble TILE.v COLS ROWS OUT.svs [Q [SS]] | floor MOSAIC.v "
            "[Q [SS]]]\n");
    return 2;
}
