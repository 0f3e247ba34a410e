/* SPDX-License-Identifier: MIT */
/*
 * The Aperio-style ImageDescription texts of a slidescan WSI.  OpenSlide
 * 3.4.1 reads the pixel size and magnification of a TIFF only from such a
 * description ("Aperio..." first line, then "|key = value" pairs), so
 * every property a reader needs is spelled here: MPP, AppMag, date, time,
 * stain, slide id and scanner.
 *
 * LIMIT: the first line says "Aperio Image Library slidescan" because
 * that is what OpenSlide 3.4.1 looks for; a reader that trusts the name
 * takes slidescan files for Aperio scans (the ScanScope ID property says
 * slidescan and its version).
 */
#include "storage/wsi_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* Copies src into dst, replacing what would break the "|key = value"
 * syntax (bars, line breaks) with '_'. */
static void
clean(char *dst, size_t len, const char *src)
{
    size_t i;

    for (i = 0; i + 1 < len && src[i] != '\0'; i++) {
        char c = src[i];

        dst[i] = (c == '|' || c == '\r' || c == '\n' || c == '\t') ? '_' : c;
    }
    dst[i] = '\0';
}

struct stamp {
    int year, mon, day, hour, min, sec;
};

static void
stamp_of(const struct wsi_meta *m, struct stamp *s)
{
    char now[32];
    const char *iso = m->date_utc;

    if (iso[0] == '\0') {
        util_utc_iso(now, sizeof(now));
        iso = now;
    }
    memset(s, 0, sizeof(*s));
    if (sscanf(iso, "%d-%d-%dT%d:%d:%d", &s->year, &s->mon, &s->day,
               &s->hour, &s->min, &s->sec) < 3) {
        util_utc_iso(now, sizeof(now));
        sscanf(now, "%d-%d-%dT%d:%d:%d", &s->year, &s->mon, &s->day,
               &s->hour, &s->min, &s->sec);
    }
}

void
wsi__tiff_datetime(char *buf, size_t len, const struct wsi_meta *m)
{
    struct stamp s;

    stamp_of(m, &s);
    snprintf(buf, len, "%04d:%02d:%02d %02d:%02d:%02d", s.year, s.mon,
             s.day, s.hour, s.min, s.sec);
}

void
wsi__describe_base(char *buf, size_t len, const struct wsi_meta *m, int w,
                   int h)
{
    char id[64], stain[16], scanner[64];
    struct stamp s;

    clean(id, sizeof(id), m->slide_id);
    clean(stain, sizeof(stain), m->stain);
    clean(scanner, sizeof(scanner), m->scanner);
    stamp_of(m, &s);
    snprintf(buf, len,
             "%s\n%dx%d [0,0 %dx%d] (%dx%d) JPEG/YCC Q=%d"
             "|AppMag = %g|MPP = %.10g|ScanScope ID = %s|Filename = %s"
             "|Date = %02d/%02d/%02d|Time = %02d:%02d:%02d"
             "|Time Zone = GMT+00:00|Stain = %s|Slide ID = %s"
             "|Subsampling = %d",
             WSI__DESC_HEAD, w, h, w, h, m->tile_size, m->tile_size,
             m->quality, m->app_mag, m->mpp, scanner, id, s.mon, s.day,
             s.year % 100, s.hour, s.min, s.sec, stain, id, m->subsamp);
}

void
wsi__describe_reduced(char *buf, size_t len, const struct wsi_meta *m,
                      int w0, int h0, int w, int h)
{
    snprintf(buf, len, "%s\n%dx%d -> %dx%d - |AppMag = %g|MPP = %.10g",
             WSI__DESC_HEAD, w0, h0, w, h, m->app_mag, m->mpp);
}

void
wsi__describe_assoc(char *buf, size_t len, const char *name, int w, int h)
{
    snprintf(buf, len, "%s\n%s %dx%d", WSI__DESC_HEAD, name, w, h);
}
