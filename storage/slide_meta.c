/* SPDX-License-Identifier: MIT */
/*
 * Pixel size from what a TIFF file says about itself: the OME-XML in its
 * ImageDescription (PhysicalSizeX and its unit), else its X resolution.
 * Scanner exports often carry a resolution that is not physical at all
 * (72 or 96 dpi written by a library default, or 1 pixel per unit), so
 * values outside SLIDE_MPP_MIN..SLIDE_MPP_MAX µm/px are not believed and
 * the caller is told to state the pixel size instead.  The stain an
 * Aperio ImageDescription declares ("|Stain = KI67|") comes from here too.
 */
#include "storage/slide_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>

#include "common/log.h"

/* The value of attribute `name` inside the element text [el, end), copied
 * to val; 0 when absent. */
static int
xml_attr(const char *el, const char *end, const char *name, char *val,
         size_t len)
{
    size_t n = strlen(name);
    const char *p = el;

    while ((p = strstr(p, name)) != NULL && p < end) {
        const char *q = p + n;
        char quote;
        size_t k = 0;

        if (p == el || (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n' &&
                        p[-1] != '\r')) {
            p = q;
            continue;
        }
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q++ != '=') {
            p = q;
            continue;
        }
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        quote = *q++;
        if (quote != '"' && quote != '\'')
            return 0;
        while (q < end && *q != quote && k + 1 < len)
            val[k++] = *q++;
        val[k] = '\0';
        return *q == quote;
    }
    return 0;
}

/* µm per unit of an OME UnitsLength symbol, 0 when unknown. */
static double
ome_unit_um(const char *u)
{
    static const struct { const char *sym; double um; } units[] = {
        { "\xc2\xb5m", 1 }, { "\xce\xbcm", 1 }, { "um", 1 },
        { "&#181;m", 1 }, { "&#xB5;m", 1 }, { "&#xb5;m", 1 },
        { "micron", 1 }, { "nm", 1e-3 }, { "pm", 1e-6 },
        { "\xc3\x85", 1e-4 }, { "\xe2\x84\xab", 1e-4 }, { "&#197;", 1e-4 },
        { "&#xC5;", 1e-4 }, { "mm", 1e3 }, { "cm", 1e4 }, { "m", 1e6 },
    };
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(u, units[i].sym) == 0)
            return units[i].um;
    return 0;
}

int
slide_ome_mpp(const char *xml, double *mpp, const char **why)
{
    const char *el = xml != NULL ? strstr(xml, "<Pixels") : NULL;
    const char *end;
    char val[64], unit[32] = "\xc2\xb5m", *e;
    double v, f;

    *mpp = 0;
    if (xml == NULL || strstr(xml, "<OME") == NULL) {
        *why = "no OME-XML";
        return 0;
    }
    if (el == NULL || (end = strchr(el, '>')) == NULL) {
        *why = "OME-XML has no Pixels element";
        return 0;
    }
    if (!xml_attr(el, end, "PhysicalSizeX", val, sizeof(val))) {
        *why = "OME-XML has no PhysicalSizeX";
        return 0;
    }
    xml_attr(el, end, "PhysicalSizeXUnit", unit, sizeof(unit));
    v = strtod(val, &e);
    f = ome_unit_um(unit);
    if (e == val || !isfinite(v) || v <= 0) {
        *why = "OME-XML PhysicalSizeX is not a positive number";
        return 0;
    }
    if (f == 0) {
        *why = "OME-XML PhysicalSizeXUnit is not a length unit we know";
        return 0;
    }
    *mpp = v * f;
    if (*mpp < SLIDE_MPP_MIN || *mpp > SLIDE_MPP_MAX) {
        *why = "OME-XML PhysicalSizeX is outside 0.05..100 µm/px";
        return 0;
    }
    return 1;
}

static int
near(double a, double b)
{
    return fabs(a - b) <= b * 1e-3;
}

int
slide_tiff_res_mpp(double res, int unit, double *mpp, const char **why)
{
    *mpp = 0;
    if (!(res > 0) || !isfinite(res)) {
        *why = "TIFF resolution is not a positive number";
        return 0;
    }
    if (unit != RESUNIT_INCH && unit != RESUNIT_CENTIMETER) {
        *why = "TIFF ResolutionUnit is none, so the resolution is only an "
               "aspect ratio";
        return 0;
    }
    if (unit == RESUNIT_CENTIMETER)
        res *= 2.54;                    /* pixels per inch from here on */
    *mpp = 25400.0 / res;
    if (near(res, 72) || near(res, 96)) {
        *why = "TIFF resolution is the 72 or 96 dpi placeholder of image "
               "software";
        return 0;
    }
    if (*mpp < SLIDE_MPP_MIN || *mpp > SLIDE_MPP_MAX) {
        *why = "TIFF resolution is outside 0.05..100 µm/px";
        return 0;
    }
    return 1;
}

void
slide__tiff_mpp(struct slide *s, TIFF *t)
{
    const char *desc = NULL, *why_ome, *why_res = "TIFF has no resolution tag";
    float xres = 0;
    uint16_t unit = RESUNIT_INCH;
    double v;

    s->tiff_meta_read = 1;
    if (TIFFGetField(t, TIFFTAG_IMAGEDESCRIPTION, &desc) != 1)
        desc = NULL;
    if (desc != NULL && strncmp(desc, "Aperio", 6) == 0)
        slide_aperio_stain(desc, s->stain, sizeof(s->stain));
    if (slide_ome_mpp(desc, &v, &why_ome)) {
        s->mpp = v;
        s->mpp_from = SLIDE_MPP_OME;
        return;
    }
    if (TIFFGetField(t, TIFFTAG_XRESOLUTION, &xres) == 1) {
        TIFFGetFieldDefaulted(t, TIFFTAG_RESOLUTIONUNIT, &unit);
        if (slide_tiff_res_mpp(xres, unit, &v, &why_res)) {
            s->mpp = v;
            s->mpp_from = SLIDE_MPP_TIFF;
            return;
        }
    }
    snprintf(s->mpp_why, sizeof(s->mpp_why), "%s; %s",
             desc != NULL && strstr(desc, "<OME") != NULL ? why_ome
             : "no OME-XML", why_res);
}

static int
quiet(TIFF *t, void *ud, const char *mod, const char *fmt, va_list ap)
{
    return 1;
}

/* Keeps libtiff's first error message. */
static int
first_error(TIFF *t, void *ud, const char *mod, const char *fmt, va_list ap)
{
    char *msg = ud;

    if (msg[0] == '\0')
        vsnprintf(msg, 256, fmt, ap);
    return 1;
}

/* The end of the furthest tile or strip of the current directory. */
static uint64_t
blocks_end(TIFF *t)
{
    uint64_t *off = NULL, *len = NULL, end = 0;
    uint32_t i, n;
    int tiled = TIFFIsTiled(t);

    if (!TIFFGetField(t, tiled ? TIFFTAG_TILEOFFSETS : TIFFTAG_STRIPOFFSETS,
                      &off) ||
        !TIFFGetField(t, tiled ? TIFFTAG_TILEBYTECOUNTS :
                      TIFFTAG_STRIPBYTECOUNTS, &len) || off == NULL ||
        len == NULL)
        return 0;
    n = tiled ? TIFFNumberOfTiles(t) : TIFFNumberOfStrips(t);
    for (i = 0; i < n; i++)
        if (len[i] > 0 && off[i] + len[i] > end)
            end = off[i] + len[i];
    return end;
}

int
slide__tiff_intact(const char *path, struct ss_err *err)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    char msg[256] = "";
    struct stat st;
    uint64_t end;
    TIFF *t;
    int d = 0, rc = 0;

    if (o == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    if (stat(path, &st) != 0) {
        TIFFOpenOptionsFree(o);
        return err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    TIFFOpenOptionsSetErrorHandlerExtR(o, first_error, msg);
    TIFFOpenOptionsSetWarningHandlerExtR(o, quiet, NULL);
    t = TIFFOpenExt(path, "r", o);
    TIFFOpenOptionsFree(o);
    if (t == NULL)
        return 0;                   /* the backends say why */
    do {
        end = blocks_end(t);
        if (end > (uint64_t)st.st_size) {
            rc = err_set(err, SS_EFORMAT, "%s: the file is cut short: image "
                         "%d needs %llu bytes, the file has %lld", path, d,
                         (unsigned long long)end, (long long)st.st_size);
            break;
        }
        d++;
    } while (TIFFReadDirectory(t));
    if (rc == 0 && msg[0] != '\0')
        rc = err_set(err, SS_EFORMAT, "%s: the file is cut short or damaged "
                     "after image %d of its chain (%lld bytes): %s", path,
                     d - 1, (long long)st.st_size, msg);
    TIFFClose(t);
    return rc;
}

void
slide__tiff_file_mpp(struct slide *s)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    TIFF *t;

    if (o == NULL)
        return;
    TIFFOpenOptionsSetErrorHandlerExtR(o, quiet, NULL);
    TIFFOpenOptionsSetWarningHandlerExtR(o, quiet, NULL);
    t = TIFFOpenExt(s->path, "r", o);
    TIFFOpenOptionsFree(o);
    if (t == NULL)
        return;
    slide__tiff_mpp(s, t);
    TIFFClose(t);
}

void
slide_aperio_stain(const char *desc, char *stain, size_t len)
{
    const char *p = desc, *v, *end;

    stain[0] = '\0';
    while (p != NULL && (p = strstr(p, "|Stain")) != NULL) {
        v = p + 6;
        while (*v == ' ')
            v++;
        p = v;
        if (*v != '=')
            continue;
        for (v++; *v == ' '; v++)
            ;
        end = v + strcspn(v, "|\r\n");
        while (end > v && end[-1] == ' ')
            end--;
        snprintf(stain, len, "%.*s", (int)(end - v), v);
        return;
    }
}
