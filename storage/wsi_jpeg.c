/* SPDX-License-Identifier: MIT */
/*
 * JPEG stream inspection for the WSI validator: which marker segments a
 * tile or a JPEGTables blob carries and what its quantisation tables are,
 * and the quality that IJG-derived encoders map those tables to.  With
 * this the validator can tell a complete tile from an abbreviated one and
 * notice shared tables that do not belong to the tiles.
 */
#include "storage/wsi_internal.h"

#include <string.h>

/* Position in the 8×8 block (row-major) of the k-th zig-zag coefficient;
 * DQT segments list their values in zig-zag order. */
static const uint8_t zigzag_to_natural[64] = {
     0,  1,  8, 16,  9,  2,  3, 10, 17, 24, 32, 25, 18, 11,  4,  5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,  6,  7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
};

/* The example tables of ITU-T T.81 Annex K, natural order; IJG encoders
 * scale these by quality. */
static const uint8_t annex_k_luma[64] = {
    16, 11, 10, 16,  24,  40,  51,  61,
    12, 12, 14, 19,  26,  58,  60,  55,
    14, 13, 16, 24,  40,  57,  69,  56,
    14, 17, 22, 29,  51,  87,  80,  62,
    18, 22, 37, 56,  68, 109, 103,  77,
    24, 35, 55, 64,  81, 104, 113,  92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103,  99,
};

static const uint8_t annex_k_chroma[64] = {
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
};

static int
be16(const uint8_t *p)
{
    return p[0] << 8 | p[1];
}

static int
parse_dqt(const uint8_t *seg, int len, struct wsi__jpeg_info *info)
{
    int pos = 0, k;

    while (pos < len) {
        int pq = seg[pos] >> 4, tq = seg[pos] & 15;
        int need = 1 + 64 * (pq ? 2 : 1);

        if (tq > 3 || pq > 1 || pos + need > len)
            return -1;
        for (k = 0; k < 64; k++) {
            int v = pq ? be16(seg + pos + 1 + 2 * k) : seg[pos + 1 + k];

            info->dqt[tq][zigzag_to_natural[k]] = (uint16_t)v;
        }
        info->dqt_mask |= 1u << tq;
        pos += need;
    }
    return 0;
}

static int
parse_sof(const uint8_t *seg, int len, struct wsi__jpeg_info *info)
{
    int i;

    if (len < 6)
        return -1;
    info->height = be16(seg + 1);
    info->width = be16(seg + 3);
    info->ncomp = seg[5];
    if (info->ncomp < 1 || info->ncomp > 4 || len < 6 + 3 * info->ncomp)
        return -1;
    for (i = 0; i < info->ncomp; i++) {
        info->hsamp[i] = seg[6 + 3 * i + 1] >> 4;
        info->vsamp[i] = seg[6 + 3 * i + 1] & 15;
    }
    info->has_sof = 1;
    return 0;
}

/* One marker segment at buf[pos] (pos at the marker's 0xFF); advances
 * *pos past it.  Returns 1 at SOS or EOI, 0 to go on, -1 on damage. */
static int
scan_segment(const uint8_t *buf, size_t len, size_t *pos,
             struct wsi__jpeg_info *info, const char **why)
{
    size_t p = *pos;
    int m, seglen;

    while (p < len && buf[p] == 0xff)
        p++;
    if (p >= len) {
        *why = "stream ends inside a marker";
        return -1;
    }
    m = buf[p++];
    if (m == 0xd9) {
        info->has_eoi = 1;
        return 1;
    }
    if ((m >= 0xd0 && m <= 0xd7) || m == 0x01) {
        *pos = p;
        return 0;
    }
    if (p + 2 > len || (seglen = be16(buf + p)) < 2 || p + seglen > len) {
        *why = "marker segment runs past the end of the stream";
        return -1;
    }
    if (m == 0xdb) {
        info->ndqt++;
        if (parse_dqt(buf + p + 2, seglen - 2, info) < 0) {
            *why = "malformed quantisation table (DQT)";
            return -1;
        }
    } else if (m == 0xc4) {
        info->ndht++;
    } else if (m >= 0xc0 && m <= 0xcf && m != 0xc8 && m != 0xcc) {
        if (parse_sof(buf + p + 2, seglen - 2, info) < 0) {
            *why = "malformed frame header (SOF)";
            return -1;
        }
    } else if (m == 0xe0 && seglen >= 7 &&
               memcmp(buf + p + 2, "JFIF", 5) == 0) {
        info->jfif = 1;
    } else if (m == 0xee && seglen >= 14 &&
               memcmp(buf + p + 2, "Adobe", 5) == 0) {
        info->adobe_transform = buf[p + 13];
    } else if (m == 0xda) {
        info->has_sos = 1;
        return 1;
    }
    *pos = p + seglen;
    return 0;
}

int
wsi__jpeg_scan(const uint8_t *buf, size_t len, struct wsi__jpeg_info *info,
               const char **why)
{
    size_t pos = 2;
    int rc;

    memset(info, 0, sizeof(*info));
    info->adobe_transform = -1;
    *why = NULL;
    if (len < 4 || buf[0] != 0xff || buf[1] != 0xd8) {
        *why = "does not start with a JPEG SOI marker";
        return SS_EFORMAT;
    }
    info->has_soi = 1;
    for (;;) {
        if (pos >= len || buf[pos] != 0xff) {
            *why = "expected a marker, found other bytes";
            return SS_EFORMAT;
        }
        rc = scan_segment(buf, len, &pos, info, why);
        if (rc < 0)
            return SS_EFORMAT;
        if (rc > 0)
            break;
    }
    if (info->has_sos)
        info->has_eoi = buf[len - 2] == 0xff && buf[len - 1] == 0xd9;
    return 0;
}

static void
scale_table(const uint8_t *base, int quality, uint16_t out[64])
{
    long scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
    int k;

    for (k = 0; k < 64; k++) {
        long v = (base[k] * scale + 50) / 100;

        out[k] = (uint16_t)(v < 1 ? 1 : v > 255 ? 255 : v);
    }
}

void
wsi__jpeg_ijg_tables(int quality, uint16_t luma[64], uint16_t chroma[64])
{
    if (quality < 1)
        quality = 1;
    if (quality > 100)
        quality = 100;
    scale_table(annex_k_luma, quality, luma);
    scale_table(annex_k_chroma, quality, chroma);
}

int
wsi__jpeg_guess_quality(const struct wsi__jpeg_info *info)
{
    uint16_t luma[64], chroma[64];
    int q;

    if (!(info->dqt_mask & 1))
        return -1;
    for (q = 1; q <= 100; q++) {
        wsi__jpeg_ijg_tables(q, luma, chroma);
        if (memcmp(luma, info->dqt[0], sizeof(luma)) != 0)
            continue;
        if ((info->dqt_mask & 2) &&
            memcmp(chroma, info->dqt[1], sizeof(chroma)) != 0)
            continue;
        return q;
    }
    return -1;
}
