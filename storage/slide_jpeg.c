/* SPDX-License-Identifier: MIT */
/*
 * JPEG streams inside TIFF files: what a stream says about its own colour
 * space, and the one stream handed to TurboJPEG, built from the TIFF's
 * shared JPEGTables and a tile's own bytes.
 *
 * The stream decides whenever it says anything: a JFIF marker means
 * YCbCr, an Adobe marker gives its transform, component ids 'R','G','B'
 * mean RGB.  That is what makes the OME-TIFF exports right, which store
 * JFIF (YCbCr) tiles under Photometric=RGB, where libtiff, trusting the
 * tag, shows false colours.  A stream that says nothing (no marker, ids
 * such as 0, 1, 2) would be taken as YCbCr by libjpeg; there the TIFF tag
 * is the only statement, and Aperio SVS relies on it: its Photometric=RGB
 * tiles are such silent streams holding RGB.  For those an Adobe marker
 * saying "RGB, no transform" is added in front, so TurboJPEG, which
 * cannot be told the colour space otherwise, decodes them as RGB.
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

/* The frame header after its length field: precision, height, width,
 * component count, then (id, sampling, table) per component. */
static void
read_sof(const uint8_t *d, int len, struct slide__jpeg_colour *c)
{
    int n, i;

    if (len < 6)
        return;
    n = d[5];
    if (len < 6 + 3 * n)
        return;
    c->ncomp = n;
    if (n != 3)
        return;
    for (i = 0; i < 3; i++)
        if (d[6 + 3 * i] != "RGB"[i])
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
        const uint8_t *d = buf + p + 4;     /* after the length field */

        if (m == 0xff) {                    /* fill byte */
            p++;
            continue;
        }
        if (m == 0xda || m == 0xd9)         /* SOS, EOI: no more header */
            return;
        seg = be16(buf + p + 2);
        if (seg < 2 || p + 2 + seg > len)
            return;
        if (m == 0xe0 && seg >= 7 && memcmp(d, "JFIF", 5) == 0)
            c->jfif = 1;
        else if (m == 0xee && seg >= 14 && memcmp(d, "Adobe", 5) == 0)
            c->adobe_transform = d[11];
        else if (is_sof(m))
            read_sof(d, seg - 2, c);
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
    size_t tab = 0, add = 0;
    uint8_t *b;

    *out = NULL;
    if (ntile < 4 || tile[0] != 0xff || tile[1] != 0xd8) {
        *why = "does not start with a JPEG SOI marker";
        return SS_EFORMAT;
    }
    /* A tables-only stream is SOI, DQT/DHT segments, EOI: its segments
     * go between the tile's SOI and the rest of the tile. */
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
    b = malloc(ntile + tab + add);
    if (b == NULL)
        return -ENOMEM;
    b[0] = 0xff;
    b[1] = 0xd8;
    memcpy(b + 2, adobe_rgb, add);
    if (tab > 0)
        memcpy(b + 2 + add, tables + 2, tab);
    memcpy(b + 2 + add + tab, tile + 2, ntile - 2);
    *out = b;
    *len = ntile + tab + add;
    return 0;
}
