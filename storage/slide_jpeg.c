/* SPDX-License-Identifier: MIT */
/*
 * JPEG streams inside TIFF files: what a stream says about its colour
 * space, and the one stream handed to TurboJPEG, built from the TIFF's
 * shared JPEGTables and a tile's own bytes.
 *
 * libjpeg decides the colour space of a 3-component stream from the
 * stream alone: JFIF means YCbCr, an Adobe marker gives its transform,
 * component ids 'R','G','B' mean RGB, anything else is taken as YCbCr.
 * That is right for the OME-TIFF exports that store JFIF (YCbCr) tiles
 * under Photometric=RGB, where libtiff, trusting the tag, shows false
 * colours.  It is wrong for the opposite case, RGB data in a stream with
 * no marker at all under Photometric=RGB; there the TIFF tag is the only
 * statement, so an Adobe marker saying "RGB, no transform" is added.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int
be16(const uint8_t *p)
{
    return p[0] << 8 | p[1];
}

static int
is_sof(int m)
{
    return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

/* The frame header's component ids: 'R','G','B' mark an RGB stream. */
static void
read_sof(const uint8_t *seg, int len, struct slide__jpeg_colour *c)
{
    int n, i;

    if (len < 6)
        return;
    n = seg[5];
    if (len < 6 + 3 * n)
        return;
    c->ncomp = n;
    if (n != 3)
        return;
    for (i = 0; i < 3; i++)
        if (seg[6 + 3 * i] != "RGB"[i])
            return;
    c->rgb_ids = 1;
}

void
slide__jpeg_colour(const uint8_t *buf, size_t len,
                   struct slide__jpeg_colour *c)
{
    size_t p = 2;

    memset(c, 0, sizeof(*c));
    c->adobe_transform = -1;
    while (p + 4 <= len && buf[p] == 0xff) {
        int m = buf[p + 1], seg;

        if (m == 0xff) {                /* fill byte */
            p++;
            continue;
        }
        if (m == 0xda || m == 0xd9)     /* SOS, EOI: nothing more to say */
            return;
        seg = be16(buf + p + 2);
        if (seg < 2 || p + 2 + seg > len)
            return;
        if (m == 0xe0 && seg >= 7 && memcmp(buf + p + 4, "JFIF", 5) == 0)
            c->jfif = 1;
        else if (m == 0xee && seg >= 12 &&
                 memcmp(buf + p + 4, "Adobe", 5) == 0)
            c->adobe_transform = buf[p + 2 + 11];
        else if (is_sof(m))
            read_sof(buf + p + 2, seg, c);
        p += 2 + (size_t)seg;
    }
}

/* APP14 "Adobe", version 100, no flags, transform 0 (RGB as stored). */
static const uint8_t adobe_rgb[16] = {
    0xff, 0xee, 0x00, 0x0e, 'A', 'd', 'o', 'b', 'e',
    0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00,
};

int
slide__jpeg_assemble(const uint8_t *tables, size_t ntables,
                     const uint8_t *tile, size_t ntile, int photometric_rgb,
                     uint8_t **out, size_t *len, const char **why)
{
    struct slide__jpeg_colour c, ct;
    size_t tab = 0, add = 0, n = 2;
    uint8_t *b;

    *out = NULL;
    if (ntile < 4 || tile[0] != 0xff || tile[1] != 0xd8) {
        *why = "does not start with a JPEG SOI marker";
        return SS_EFORMAT;
    }
    /* A tables-only stream: SOI, DQT/DHT segments, EOI. */
    if (tables != NULL && ntables >= 4 && tables[0] == 0xff &&
        tables[1] == 0xd8 && tables[ntables - 2] == 0xff &&
        tables[ntables - 1] == 0xd9)
        tab = ntables - 4;
    slide__jpeg_colour(tile, ntile, &c);
    if (tab > 0) {
        slide__jpeg_colour(tables, ntables, &ct);
        c.jfif |= ct.jfif;
        if (c.adobe_transform < 0)
            c.adobe_transform = ct.adobe_transform;
    }
    if (photometric_rgb && c.ncomp == 3 && !c.jfif &&
        c.adobe_transform < 0 && !c.rgb_ids)
        add = sizeof(adobe_rgb);
    b = malloc(2 + add + tab + ntile - 2);
    if (b == NULL)
        return -ENOMEM;
    b[0] = 0xff;
    b[1] = 0xd8;
    memcpy(b + n, adobe_rgb, add);
    n += add;
    if (tab > 0)
        memcpy(b + n, tables + 2, tab);
    n += tab;
    memcpy(b + n, tile + 2, ntile - 2);
    *out = b;
    *len = n + ntile - 2;
    return 0;
}
