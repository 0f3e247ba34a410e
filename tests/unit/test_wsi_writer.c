/* SPDX-License-Identifier: MIT */
/*
 * storage/wsi_writer.c: the streaming pyramid writer.  Files are read
 * back through OpenSlide and libtiff and compared with what was written;
 * field cases W2 (pixel size), W3 (no tile left unwritten) and W5
 * (BigTIFF, libtiff size errors fail the job).
 */
#include "tests/support/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <openslide.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tiffio.h>
#include <unistd.h>

#include "common/img.h"
#include "common/rng.h"
#include "storage/wsi.h"
#include "storage/wsi_internal.h"

/* Stain-like texture: smooth purple/pink blobs with pixel noise, so JPEG
 * has real work and misplaced pixels show. */
static struct img *
texture(int w, int h, uint64_t seed)
{
    struct img *im = img_new(w, h, 3, IMG_U8);
    struct rng r;
    int x, y;

    rng_init(&r, seed);
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            uint8_t *p = img_u8(im, x, y);
            double s = sin(x * 0.031 + 0.7 * sin(y * 0.017)) *
                       cos(y * 0.023 - 0.5 * cos(x * 0.011));
            double n = 6 * rng_gauss(&r);

            p[0] = (uint8_t)fmin(255, fmax(0, 200 + 40 * s + n));
            p[1] = (uint8_t)fmin(255, fmax(0, 150 + 60 * s + n));
            p[2] = (uint8_t)fmin(255, fmax(0, 210 + 25 * s + n));
        }
    return im;
}

static int
write_slide(const char *path, const struct img *im, int rows_fed,
            const struct wsi_meta *m, struct ss_err *err)
{
    struct wsi_writer *w;
    int y, rc;

    rc = wsi_writer_open(path, im->w, im->h, m, &w, err);
    if (rc < 0)
        return rc;
    for (y = 0; y < rows_fed; y += 97) {
        int n = rows_fed - y < 97 ? rows_fed - y : 97;

        rc = wsi_writer_rows(w, img_u8(im, 0, y), n, err);
        if (rc < 0) {
            wsi_writer_abort(w);
            return rc;
        }
    }
    return wsi_writer_finish(w, err);
}

/* Level `lvl` region through OpenSlide as RGB (alpha must be opaque). */
static struct img *
os_region(openslide_t *os, int lvl, int x0, int y0, int w, int h)
{
    uint32_t *argb = malloc((size_t)w * h * 4);
    struct img *im = img_new(w, h, 3, IMG_U8);
    double ds = openslide_get_level_downsample(os, lvl);
    int i;

    openslide_read_region(os, argb, (int64_t)(x0 * ds), (int64_t)(y0 * ds),
                          lvl, w, h);
    assert_null(openslide_get_error(os));
    for (i = 0; i < w * h; i++) {
        uint8_t *p = (uint8_t *)im->data + 3 * i;

        assert_int_equal(argb[i] >> 24, 255);
        p[0] = (uint8_t)(argb[i] >> 16);
        p[1] = (uint8_t)(argb[i] >> 8);
        p[2] = (uint8_t)argb[i];
    }
    free(argb);
    return im;
}

/* The 2×2 box filter the writer applies, edge pixels repeated. */
static struct img *
halve(const struct img *a)
{
    struct img *b = img_new((a->w + 1) / 2, (a->h + 1) / 2, 3, IMG_U8);
    int x, y, c;

    for (y = 0; y < b->h; y++)
        for (x = 0; x < b->w; x++) {
            int x1 = 2 * x + 1 < a->w ? 2 * x + 1 : 2 * x;
            int y1 = 2 * y + 1 < a->h ? 2 * y + 1 : 2 * y;

            for (c = 0; c < 3; c++)
                img_u8(b, x, y)[c] = (uint8_t)((img_u8(a, 2 * x, 2 * y)[c] +
                    img_u8(a, x1, 2 * y)[c] + img_u8(a, 2 * x, y1)[c] +
                    img_u8(a, x1, y1)[c] + 2) >> 2);
        }
    return b;
}

static const char *
prop(openslide_t *os, const char *name)
{
    const char *v = openslide_get_property_value(os, name);

    return v != NULL ? v : "(none)";
}

static void
test_cmu_round_trip_through_openslide(void **state)
{
    const char *src = tu_data("wsi/CMU-1-Small-Region.svs");
    const char *out = tu_tmp("cmu.svs");
    struct img *im = NULL, *back, *label, *macro;
    struct wsi_meta m;
    struct ss_err e;
    openslide_t *os;
    char rep[8192];
    const char *const *names;
    double psnr;

    if (src == NULL)
        tu_skip("../shared/data/wsi/CMU-1-Small-Region.svs is absent");
    assert_int_equal(img_read_any(src, &im, &e), 0);
    label = texture(387, 463, 3);
    macro = texture(1280, 431, 4);
    wsi_meta_default(&m);
    m.mpp = 0.499;
    snprintf(m.slide_id, sizeof(m.slide_id), "CMU-1");
    snprintf(m.stain, sizeof(m.stain), "HE");
    m.label = label;
    m.macro = macro;
    assert_int_equal(write_slide(out, im, im->h, &m, &e), 0);

    os = openslide_open(out);
    assert_non_null(os);
    assert_null(openslide_get_error(os));
    assert_string_equal(prop(os, "openslide.vendor"), "aperio");
    assert_string_equal(prop(os, "openslide.mpp-x"), "0.499");
    assert_string_equal(prop(os, "openslide.mpp-y"), "0.499");
    assert_string_equal(prop(os, "openslide.objective-power"), "20");
    assert_string_equal(prop(os, "aperio.Slide ID"), "CMU-1");
    assert_int_equal(openslide_get_level_count(os), 4);
    names = openslide_get_associated_image_names(os);
    assert_string_equal(names[0], "label");
    assert_string_equal(names[1], "macro");
    assert_string_equal(names[2], "thumbnail");

    /* Colours read back equal what was written within JPEG error. */
    back = os_region(os, 0, 0, 0, im->w, im->h);
    psnr = img_psnr(im, back, 0, 0, im->w, im->h);
    print_message("# level-0 PSNR through OpenSlide %.2f dB\n", psnr);
    assert_true(psnr >= 40.0);
    openslide_close(os);
    assert_int_equal(wsi_verify(out, 0.499, rep, sizeof(rep), &e), 0);
    img_free(back);
    img_free(im);
    img_free(label);
    img_free(macro);
}

static void
test_odd_size_levels_are_box_filtered(void **state)
{
    const char *out = tu_tmp("odd.svs");
    struct img *im = texture(1001, 777, 5), *l1, *l2, *b1, *b2;
    struct wsi_meta m;
    struct ss_err e;
    openslide_t *os;
    int64_t w, h;
    double p0, p1, p2;

    wsi_meta_default(&m);
    m.subsamp = 420;
    m.quality = 95;
    m.threads = 3;
    assert_int_equal(write_slide(out, im, im->h, &m, &e), 0);
    os = openslide_open(out);
    assert_non_null(os);
    assert_int_equal(openslide_get_level_count(os), 2);
    openslide_get_level_dimensions(os, 1, &w, &h);
    assert_int_equal(w, 501);
    assert_int_equal(h, 389);
    b1 = os_region(os, 0, 0, 0, 1001, 777);
    l1 = halve(im);
    l2 = halve(l1);
    b2 = os_region(os, 1, 0, 0, 501, 389);
    p0 = img_psnr(im, b1, 0, 0, 1001, 777);
    p1 = img_psnr(l1, b2, 0, 0, 501, 389);
    /* The right and bottom edges come from repeated padding. */
    p2 = img_psnr(l1, b2, 480, 370, 21, 19);
    print_message("# 4:2:0 q95 PSNR level 0 %.2f, level 1 %.2f, edge %.2f "
                  "dB\n", p0, p1, p2);
    assert_true(p0 >= 40.0);
    assert_true(p1 >= 40.0);
    assert_true(p2 >= 38.0);
    openslide_close(os);
    img_free(im);
    img_free(l1);
    img_free(l2);
    img_free(b1);
    img_free(b2);
}

static void
test_w2_pixel_size_0_25_survives(void **state)
{
    const char *out = tu_tmp("w2.svs");
    struct img *im = texture(1200, 900, 6);
    struct wsi_meta m;
    struct ss_err e;
    openslide_t *os;
    TIFF *t;
    float xr, yr;
    uint16_t unit;

    wsi_meta_default(&m);
    m.mpp = 0.25;
    m.app_mag = 40;
    assert_int_equal(write_slide(out, im, im->h, &m, &e), 0);
    os = openslide_open(out);
    assert_string_equal(prop(os, "openslide.mpp-x"), "0.25");
    assert_string_equal(prop(os, "openslide.mpp-y"), "0.25");
    assert_string_equal(prop(os, "openslide.objective-power"), "40");
    openslide_close(os);

    t = TIFFOpen(out, "r");
    assert_non_null(t);
    assert_true(TIFFGetField(t, TIFFTAG_RESOLUTIONUNIT, &unit));
    assert_int_equal(unit, RESUNIT_CENTIMETER);
    assert_true(TIFFGetField(t, TIFFTAG_XRESOLUTION, &xr));
    assert_true(TIFFGetField(t, TIFFTAG_YRESOLUTION, &yr));
    assert_float_equal(xr, 40000.0, 1e-3);
    assert_float_equal(yr, 40000.0, 1e-3);
    assert_true(TIFFSetDirectory(t, 2));  /* level 1, behind the thumbnail */
    assert_true(TIFFGetField(t, TIFFTAG_XRESOLUTION, &xr));
    assert_float_equal(xr, 20000.0, 1e-3);
    TIFFClose(t);
    img_free(im);
}

/* A scan cut short and finalised: every tile of every level exists and
 * the never-captured corner has the background colour. */
static void
test_w3_short_scan_still_has_every_tile(void **state)
{
    const char *out = tu_tmp("w3.svs");
    struct img *im = texture(1500, 1300, 7), *corner;
    struct wsi_meta m;
    struct ss_err e;
    openslide_t *os;
    char rep[8192];
    TIFF *t;
    uint64_t *bc;
    uint32_t i, n;
    int d, x, y;

    wsi_meta_default(&m);
    m.background[0] = 242;
    m.background[1] = 240;
    m.background[2] = 245;
    assert_int_equal(write_slide(out, im, 700, &m, &e), 0);
    t = TIFFOpen(out, "r");
    for (d = 0; d < (int)TIFFNumberOfDirectories(t); d++) {
        assert_true(TIFFSetDirectory(t, (tdir_t)d));
        if (!TIFFIsTiled(t))
            continue;
        n = TIFFNumberOfTiles(t);
        assert_true(TIFFGetField(t, TIFFTAG_TILEBYTECOUNTS, &bc));
        for (i = 0; i < n; i++)
            assert_true(bc[i] > 0);
    }
    TIFFClose(t);
    os = openslide_open(out);
    corner = os_region(os, 0, 1500 - 256, 1300 - 256, 256, 256);
    for (y = 0; y < 256; y++)
        for (x = 0; x < 256; x++) {
            assert_true(abs(img_u8(corner, x, y)[0] - 242) <= 2);
            assert_true(abs(img_u8(corner, x, y)[2] - 245) <= 2);
        }
    openslide_close(os);
    assert_int_equal(wsi_verify(out, 0.5, rep, sizeof(rep), &e), 0);
    img_free(corner);
    img_free(im);
}

static void
test_w5_bigtiff_decision(void **state)
{
    struct wsi_meta m;

    wsi_meta_default(&m);
    /* The benchmark slide: 18 × 10 CMU-1-Small-Region. */
    assert_true(wsi_needs_bigtiff(39960, 29670, &m));
    assert_false(wsi_needs_bigtiff(2220, 2967, &m));
    /* 15 × 15 mm at 0.5 µm: TurboJPEG's worst case is 6 bytes a pixel at
     * 4:4:4, 3 at 4:2:0, so only the former may pass 4 GiB. */
    assert_true(wsi_needs_bigtiff(30000, 30000, &m));
    assert_false(wsi_needs_bigtiff(20000, 15000, &m));
    m.subsamp = 420;
    assert_false(wsi_needs_bigtiff(30000, 30000, &m));
    assert_true(wsi_needs_bigtiff(39960, 29670, &m));
    m.bigtiff = 1;
    assert_true(wsi_needs_bigtiff(100, 100, &m));
    assert_int_equal(wsi_level_count(2048, 2048, &m), 3);
    assert_int_equal(wsi_level_count(39960, 29670, &m), 8);
}

/* The bound holds for the worst content JPEG meets: pure noise. */
static void
test_w5_estimate_bounds_a_noise_slide(void **state)
{
    const char *out = tu_tmp("noise.svs");
    struct img *im = img_new(1300, 1100, 3, IMG_U8);
    struct wsi_meta m;
    struct ss_err e;
    struct rng r;
    FILE *f;
    long size;
    size_t i;

    rng_init(&r, 11);
    for (i = 0; i < img_bytes(im); i++)
        ((uint8_t *)im->data)[i] = (uint8_t)rng_next(&r);
    wsi_meta_default(&m);
    m.quality = 100;
    m.subsamp = 444;
    assert_int_equal(write_slide(out, im, im->h, &m, &e), 0);
    f = fopen(out, "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fclose(f);
    print_message("# noise slide %ld bytes, bound %llu\n", size,
                  (unsigned long long)wsi_estimate_max_bytes(1300, 1100, &m));
    assert_true((uint64_t)size <= wsi_estimate_max_bytes(1300, 1100, &m));
    img_free(im);
}

static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A classic TIFF that would pass 4 GiB: libtiff refuses the write, the
 * job fails naming the cause, and no file is left, complete-looking or
 * partial.  The 4 GiB are a sparse hole, not written data. */
static void
test_w5_libtiff_size_error_fails_the_job(void **state)
{
    const char *dir = tu_tmp("w5");
    char out[4096];
    struct img *im = texture(1024, 1024, 8);
    struct wsi_meta m;
    struct ss_err e;
    int rc;

    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(out, sizeof(out), "%s/big.svs", dir);
    wsi_meta_default(&m);
    assert_false(wsi_needs_bigtiff(1024, 1024, &m));
    wsi__test_hole_bytes = (1ull << 32) - 100000;
    rc = write_slide(out, im, im->h, &m, &e);
    wsi__test_hole_bytes = 0;
    print_message("# %s\n", e.msg);
    assert_int_equal(rc, -EIO);
    assert_non_null(strstr(e.msg, "Maximum TIFF file size exceeded"));
    assert_non_null(strstr(e.msg, "big.svs"));
    assert_int_equal(count_entries(dir), 0);

    /* The same slide forced to BigTIFF passes the 4 GiB mark. */
    m.bigtiff = 1;
    wsi__test_hole_bytes = (1ull << 32) - 100000;
    rc = write_slide(out, im, im->h, &m, &e);
    wsi__test_hole_bytes = 0;
    assert_int_equal(rc, 0);
    assert_int_equal(count_entries(dir), 1);
    unlink(out);
    img_free(im);
}

/* A write error (here the file-size limit, as a full disk would give)
 * fails the job and leaves nothing behind. */
static void
test_write_error_fails_and_leaves_nothing(void **state)
{
    const char *dir = tu_tmp("efbig");
    pid_t pid;
    int status;

    assert_int_equal(mkdir(dir, 0700), 0);
    pid = fork();
    if (pid == 0) {
        struct rlimit rl = { 200000, 200000 };
        struct img *im = texture(1500, 1500, 9);
        struct wsi_meta m;
        struct ss_err e;
        char out[4096];
        int rc;

        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        snprintf(out, sizeof(out), "%s/s.svs", dir);
        wsi_meta_default(&m);
        rc = write_slide(out, im, im->h, &m, &e);
        fprintf(stderr, "# %s\n", e.msg);
        _exit(rc < 0 && strstr(e.msg, "s.svs") != NULL ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_entries(dir), 0);
}

/* The vectorised shrink equals the 2×2 box formula on every byte, for
 * every row width a tile size allows, and writes nothing past its row
 * (the next tile column belongs to another thread). */
static void
test_shrink_row_is_the_exact_box_mean(void **state)
{
    uint8_t a[2048 * 3 + 16], b[2048 * 3 + 16], o[1024 * 3 + 8];
    struct rng r;
    int half, i, c, bad = 0;

    rng_init(&r, 11);
    for (half = 1; half <= 1024; half++) {
        for (i = 0; i < (int)sizeof(a); i++) {
            a[i] = (uint8_t)rng_next(&r);
            b[i] = (uint8_t)rng_next(&r);
        }
        /* extremes: every sum 0, 1020, and rounding at .5 */
        a[0] = a[3] = b[0] = b[3] = 255;
        a[1] = a[4] = b[1] = 0;
        b[4] = 2;
        memset(o, 0xA5, sizeof(o));
        wsi__shrink_row(a, b, o, half);
        for (i = 0; i < half; i++)
            for (c = 0; c < 3; c++)
                bad += o[3 * i + c] != (uint8_t)((a[6 * i + c] +
                    a[6 * i + 3 + c] + b[6 * i + c] + b[6 * i + 3 + c] + 2)
                    >> 2);
        for (i = half * 3; i < (int)sizeof(o); i++)
            bad += o[i] != 0xA5;
    }
    assert_int_equal(bad, 0);
    assert_int_equal(o[0], 255);
    assert_int_equal(o[1], 1);
}

static void
count_index(void *ctx, int i, int slot)
{
    atomic_int *hits = ctx;

    atomic_fetch_add(&hits[i], 1);
}

/* The encoder pool in two steps: every index runs exactly once, whether
 * the pool has threads or the caller does it all in join (one thread, or
 * one index), and the caller's own work between start and join is free
 * to run meanwhile. */
static void
test_pool_start_join_runs_every_index_once(void **state)
{
    static atomic_int hits[500];
    int sizes[3] = { 1, 2, 4 }, ns[3] = { 0, 1, 500 }, s, k, i, bad = 0;
    struct wsi__pool *p;
    struct ss_err e;

    for (s = 0; s < 3; s++) {
        assert_int_equal(wsi__pool_new(sizes[s], &p, &e), 0);
        assert_int_equal(wsi__pool_size(p), sizes[s]);
        for (k = 0; k < 3; k++) {
            for (i = 0; i < 500; i++)
                atomic_store(&hits[i], 0);
            wsi__pool_start(p, ns[k], count_index, hits);
            usleep(1000);           /* the caller's own work */
            wsi__pool_join(p);
            for (i = 0; i < 500; i++)
                bad += atomic_load(&hits[i]) != (i < ns[k]);
        }
        wsi__pool_free(p);
    }
    assert_int_equal(bad, 0);
}

/* Raw tile i of directory dir, as stored. */
static tmsize_t
raw_tile(TIFF *t, int dir, uint32_t i, uint8_t *buf, tmsize_t len)
{
    assert_int_equal(TIFFSetDirectory(t, (tdir_t)dir), 1);
    return TIFFReadRawTile(t, i, buf, len);
}

/* Rows written in place through rows_buffer/rows_commit make the same
 * tiles, byte for byte, as rows copied in by wsi_writer_rows(). */
static void
test_rows_in_place_equal_rows_copied(void **state)
{
    const char *p1 = tu_tmp("copied.svs"), *p2 = tu_tmp("inplace.svs");
    struct img *im = texture(1001, 777, 8);
    struct wsi_meta m;
    struct wsi_writer *w;
    struct ss_err e;
    static uint8_t t1[1 << 20], t2[1 << 20];
    uint8_t *dst;
    size_t stride;
    TIFF *a, *b;
    int y = 0, n, k, dir, tiles = 0;

    wsi_meta_default(&m);
    m.min_level_px = 256;
    assert_int_equal(write_slide(p1, im, im->h, &m, &e), 0);
    assert_int_equal(wsi_writer_open(p2, im->w, im->h, &m, &w, &e), 0);
    while (y < im->h) {
        assert_int_equal(wsi_writer_rows_buffer(w, &dst, &stride, &n, &e),
                         0);
        assert_true(stride >= (size_t)im->w * 3);
        /* a band is 256 rows: 97 fit, then the band's rest */
        assert_int_equal(n, im->h - y < 256 - y % 256 ? im->h - y
                                                      : 256 - y % 256);
        n = n < 97 ? n : 97;
        for (k = 0; k < n; k++)
            memcpy(dst + (size_t)k * stride, img_u8(im, 0, y + k),
                   (size_t)im->w * 3);
        assert_int_equal(wsi_writer_rows_commit(w, n, &e), 0);
        y += n;
    }
    assert_int_equal(wsi_writer_rows_buffer(w, &dst, &stride, &n, &e),
                     -EINVAL);
    assert_non_null(strstr(e.msg, "all 777 rows already given"));
    assert_int_equal(wsi_writer_finish(w, &e), 0);

    a = TIFFOpen(p1, "r");
    b = TIFFOpen(p2, "r");
    assert_non_null(a);
    assert_non_null(b);
    for (dir = 0; dir < 4; dir += dir == 0 ? 2 : 1) {
        uint32_t i, nt;

        assert_int_equal(TIFFSetDirectory(a, (tdir_t)dir), 1);
        nt = TIFFNumberOfTiles(a);
        for (i = 0; i < nt; i++, tiles++) {
            tmsize_t l1 = raw_tile(a, dir, i, t1, sizeof(t1));
            tmsize_t l2 = raw_tile(b, dir, i, t2, sizeof(t2));

            assert_true(l1 > 0);
            assert_int_equal(l1, l2);
            assert_memory_equal(t1, t2, (size_t)l1);
        }
    }
    /* levels 1001x777 (4x4 tiles), 501x389 (2x2), 251x195 (1) */
    assert_int_equal(tiles, 16 + 4 + 1);
    TIFFClose(a);
    TIFFClose(b);
    img_free(im);
}

/* Committing no rows, or more than the band holds, is refused by name. */
static void
test_rows_commit_bounds_are_named(void **state)
{
    struct img *im = texture(300, 300, 9);
    struct wsi_meta m;
    struct wsi_writer *w;
    struct ss_err e;
    uint8_t *dst;
    size_t stride;
    int n;

    wsi_meta_default(&m);
    assert_int_equal(wsi_writer_open(tu_tmp("bounds.svs"), 300, 300, &m, &w,
                                     &e), 0);
    assert_int_equal(wsi_writer_rows_buffer(w, &dst, &stride, &n, &e), 0);
    assert_int_equal(n, 256);
    assert_int_equal(stride, 2 * 256 * 3);
    assert_int_equal(wsi_writer_rows_commit(w, 0, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "0 rows committed, 256 fit in the band"));
    assert_int_equal(wsi_writer_rows_commit(w, 257, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "257 rows committed, 256 fit in the "
                                  "band"));
    assert_int_equal(wsi_writer_rows(w, im->data, 200, &e), 0);
    assert_int_equal(wsi_writer_rows_buffer(w, &dst, &stride, &n, &e), 0);
    assert_int_equal(n, 56);
    assert_int_equal(wsi_writer_rows_commit(w, 56, &e), 0);
    assert_int_equal(wsi_writer_rows_buffer(w, &dst, &stride, &n, &e), 0);
    assert_int_equal(n, 44);
    wsi_writer_abort(w);
    img_free(im);
}

static void
test_bad_arguments_are_named(void **state)
{
    struct img *im = texture(64, 64, 1);
    const char *dir = tu_tmp("args"), *a = tu_tmp("args/a.svs");
    struct wsi_writer *w = NULL;
    struct wsi_meta m;
    struct ss_err e;

    assert_int_equal(mkdir(dir, 0700), 0);
    wsi_meta_default(&m);
    m.quality = 0;
    assert_int_equal(wsi_writer_open(a, 64, 64, &m, &w, &e),
                     -EINVAL);
    assert_non_null(strstr(e.msg, "quality 0"));
    wsi_meta_default(&m);
    m.mpp = -1;
    assert_int_equal(wsi_writer_open(a, 64, 64, &m, &w, &e),
                     -EINVAL);
    assert_non_null(strstr(e.msg, "pixel size"));
    wsi_meta_default(&m);
    assert_int_equal(wsi_writer_open("/nonexistent-dir/a.svs", 64, 64, &m,
                                     &w, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/a.svs"));
    assert_null(w);

    assert_int_equal(wsi_writer_open(a, 64, 64, &m, &w, &e), 0);
    assert_int_equal(wsi_writer_rows(w, im->data, 65, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "65 rows"));
    wsi_writer_abort(w);
    wsi_writer_abort(NULL);
    assert_int_equal(count_entries(dir), 0);
    img_free(im);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmu_round_trip_through_openslide),
        cmocka_unit_test(test_odd_size_levels_are_box_filtered),
        cmocka_unit_test(test_w2_pixel_size_0_25_survives),
        cmocka_unit_test(test_w3_short_scan_still_has_every_tile),
        cmocka_unit_test(test_w5_bigtiff_decision),
        cmocka_unit_test(test_w5_estimate_bounds_a_noise_slide),
        cmocka_unit_test(test_w5_libtiff_size_error_fails_the_job),
        cmocka_unit_test(test_write_error_fails_and_leaves_nothing),
        cmocka_unit_test(test_shrink_row_is_the_exact_box_mean),
        cmocka_unit_test(test_pool_start_join_runs_every_index_once),
        cmocka_unit_test(test_rows_in_place_equal_rows_copied),
        cmocka_unit_test(test_rows_commit_bounds_are_named),
        cmocka_unit_test(test_bad_arguments_are_named),
    };

    return cmocka_run_group_tests_name("wsi_writer", tests, NULL, NULL);
}
